//! Load shedding: a token bucket per client address ([`RateLimiter`]) and a
//! cap on requests being answered at once ([`Inflight`]).
//!
//! The buckets live in a few independently locked shards, picked by a keyed
//! hash of the client, so worker threads rarely wait for each other and a
//! client cannot choose which shard it lands in. Memory is bounded: a shard
//! that fills up first forgets buckets that have refilled (a full bucket is
//! the same as no bucket), then, if a flood of new clients keeps it full, the
//! fullest buckets, so the clients being throttled hardest stay throttled.
//! IPv6 clients are counted per /64, the block one host usually holds, so
//! rotating addresses inside it does not buy a fresh bucket.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How many independently locked maps the buckets are spread over.
const SHARDS: usize = 16;

/// The most buckets one shard holds, so at most `SHARDS * SHARD_CAP`
/// (65,536) clients are tracked at once: a few megabytes.
const SHARD_CAP: usize = 4096;

/// What a crowded shard is cut back to, so the cost of a cut is spread over
/// the next `SHARD_CAP - SHARD_LOW` new clients.
const SHARD_LOW: usize = SHARD_CAP * 3 / 4;

/// The shortest wait [`RateLimiter::check`] reports.
const MIN_RETRY: Duration = Duration::from_millis(1);

/// The longest gap between tokens: rates below one a day count as one a day
/// (so every sum of instants and intervals below stays far from overflow).
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// A token bucket per client: `burst` requests at once, refilled at `rps`
/// per second.
///
/// It is kept in the GCRA form: each client's bucket is one instant, the
/// time at which it would be full again (its "theoretical arrival time").
/// Taking a token pushes that time one `interval` later; a request is refused
/// while it lies more than `tolerance` (the time to refill `burst - 1`
/// tokens) ahead of now. That is the same bucket, with integer arithmetic
/// that does not drift, and a bucket whose instant has passed is full.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time for one token to come back.
    interval: Duration,
    /// Time for `burst - 1` tokens to come back.
    tolerance: Duration,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<IpAddr, Instant>>]>,
}

impl RateLimiter {
    /// A limiter allowing `rps` requests per second per client, with bursts
    /// of up to `burst` (0 means `max(1, ceil(rps))`). `None` means no limit:
    /// `rps` is 0 (the "off" setting), or not a positive finite number, which
    /// the config layer is expected to have refused already.
    pub fn new(rps: f64, burst: u32) -> Option<RateLimiter> {
        if !(rps.is_finite() && rps > 0.0) {
            return None;
        }
        let burst = if burst == 0 {
            // The cast saturates, so a huge rate gives u32::MAX.
            (rps.ceil() as u32).max(1)
        } else {
            burst
        };
        let interval = Duration::try_from_secs_f64(1.0 / rps)
            .unwrap_or(MAX_INTERVAL)
            .min(MAX_INTERVAL);
        Some(RateLimiter {
            interval,
            tolerance: interval.saturating_mul(burst - 1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    /// Takes a token from `ip`'s bucket as of `now`. `Err` carries how long
    /// until one is available (at least 1 ms); the request should be refused.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(ip);
        let mut shard = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        if !shard.contains_key(&key) && shard.len() >= SHARD_CAP {
            self.evict(&mut shard, now);
        }
        // A new client's bucket is full: due at `now`.
        let due = shard.entry(key).or_insert(now);
        // Threads race to the lock with `now`s taken before it, so time may
        // appear to step back; `max` keeps that from refilling anything.
        let start = (*due).max(now);
        let ahead = start.saturating_duration_since(now);
        if ahead > self.tolerance {
            return Err((ahead - self.tolerance).max(MIN_RETRY));
        }
        match start.checked_add(self.interval) {
            Some(next) => {
                *due = next;
                Ok(())
            }
            // Unreachable with MAX_INTERVAL's bound; refuse rather than panic.
            None => Err(self.interval.max(MIN_RETRY)),
        }
    }

    fn shard(&self, key: &IpAddr) -> &Mutex<HashMap<IpAddr, Instant>> {
        let i = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[i]
    }

    /// Makes room in a full shard: forgets full buckets (due by `now`), then,
    /// if the shard is still above [`SHARD_LOW`], the fullest ones (due
    /// soonest) until it is not.
    fn evict(&self, shard: &mut HashMap<IpAddr, Instant>, now: Instant) {
        shard.retain(|_, due| *due > now);
        if shard.len() <= SHARD_LOW {
            return;
        }
        let mut by_due: Vec<(Instant, IpAddr)> = shard.iter().map(|(k, d)| (*d, *k)).collect();
        // Afterwards the buckets due latest (emptiest) come first.
        by_due.select_nth_unstable_by(SHARD_LOW, |a, b| b.0.cmp(&a.0));
        for (_, key) in &by_due[SHARD_LOW..] {
            shard.remove(key);
        }
    }

    #[cfg(test)]
    fn shard_lens(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .collect()
    }
}

/// The address a client is counted under: IPv4 as it is, IPv6 by its /64.
/// An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4
/// client) counts as the IPv4 address, not as part of `::ffff:0:0/96`.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// Whole seconds for a `Retry-After` header: `d` rounded up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    secs.max(1)
}

/// A cap on requests being answered at once, across all clients.
#[derive(Debug)]
pub struct Inflight {
    max: usize,
    current: std::sync::Arc<AtomicUsize>,
}

/// A place taken in an [`Inflight`]; gives it back when dropped. Owned, so
/// it can travel with an answer written on another thread.
#[derive(Debug)]
pub struct InflightGuard {
    current: std::sync::Arc<AtomicUsize>,
}

impl Inflight {
    /// A cap of `max` requests at once; `None` when `max` is 0 (no cap).
    pub fn new(max: usize) -> Option<Inflight> {
        (max > 0).then(|| Inflight {
            max,
            current: std::sync::Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Takes a place, or `None` if all `max` are taken (refuse the request).
    /// The count never goes above `max`, even for a moment.
    pub fn try_enter(&self) -> Option<InflightGuard> {
        self.current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| InflightGuard {
                current: self.current.clone(),
            })
    }

    /// How many places are taken now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.current.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn zero_or_nonsense_rate_is_off() {
        assert!(RateLimiter::new(0.0, 5).is_none());
        assert!(RateLimiter::new(-1.0, 5).is_none());
        assert!(RateLimiter::new(f64::NAN, 5).is_none());
        assert!(RateLimiter::new(f64::INFINITY, 5).is_none());
        assert!(RateLimiter::new(0.5, 0).is_some());
    }

    /// How many requests `rl` lets one new client make at one instant.
    fn burst_of(rl: &RateLimiter) -> u32 {
        let (ip, t0) = (v4(10, 9, 9, 9), Instant::now());
        let mut n = 0;
        while rl.check(ip, t0).is_ok() && n < 1000 {
            n += 1;
        }
        n
    }

    #[test]
    fn burst_zero_defaults_to_ceil_rps() {
        let cases = [(0.2, 1), (1.0, 1), (2.5, 3), (10.0, 10)];
        for (rps, burst) in cases {
            assert_eq!(burst_of(&RateLimiter::new(rps, 0).unwrap()), burst, "{rps}");
        }
        assert_eq!(burst_of(&RateLimiter::new(10.0, 3).unwrap()), 3);
        assert_eq!(burst_of(&RateLimiter::new(0.5, 7).unwrap()), 7);
        // A rate beyond a token per nanosecond never refuses.
        assert_eq!(burst_of(&RateLimiter::new(1e12, 0).unwrap()), 1000);
    }

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(10.0, 5).unwrap();
        let ip = v4(10, 0, 0, 1);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(rl.check(ip, t0), Ok(()), "request {i}");
        }
        // Empty: one token takes 1/10 s to come back.
        assert_eq!(rl.check(ip, t0), Err(ms(100)));
        // Refused requests take nothing, and the wait shrinks as time passes.
        assert_eq!(rl.check(ip, t0 + ms(40)), Err(ms(60)));
        assert_eq!(rl.check(ip, t0 + ms(100)), Ok(()));
        assert_eq!(rl.check(ip, t0 + ms(100)), Err(ms(100)));
        // A long pause refills to `burst`, not beyond.
        let later = t0 + Duration::from_secs(60);
        for i in 0..5 {
            assert_eq!(rl.check(ip, later), Ok(()), "request {i}");
        }
        assert!(rl.check(ip, later).is_err());
    }

    #[test]
    fn time_stepping_back_neither_refills_nor_panics() {
        let rl = RateLimiter::new(1.0, 1).unwrap();
        let ip = v4(10, 0, 0, 2);
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(rl.check(ip, t0), Ok(()));
        assert!(rl.check(ip, t0 - ms(500)).is_err());
        assert_eq!(rl.check(ip, t0 + ms(999)), Err(ms(1)));
        assert_eq!(rl.check(ip, t0 + ms(1000)), Ok(()));
    }

    #[test]
    fn retry_is_at_least_a_millisecond() {
        let rl = RateLimiter::new(1e6, 1).unwrap();
        let ip = v4(10, 0, 0, 3);
        let t0 = Instant::now();
        assert_eq!(rl.check(ip, t0), Ok(()));
        assert_eq!(rl.check(ip, t0), Err(MIN_RETRY));
    }

    #[test]
    fn tiny_rates_do_not_overflow_the_wait() {
        let rl = RateLimiter::new(1e-300, u32::MAX).unwrap();
        let ip = v4(10, 0, 0, 4);
        let t0 = Instant::now();
        assert_eq!(rl.check(ip, t0), Ok(()));
        let rl = RateLimiter::new(1e-300, 1).unwrap();
        assert_eq!(rl.check(ip, t0), Ok(()));
        assert_eq!(rl.check(ip, t0), Err(MAX_INTERVAL));
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let rl = RateLimiter::new(1.0, 2).unwrap();
        let t0 = Instant::now();
        let (a, b) = (v4(192, 0, 2, 1), v4(192, 0, 2, 2));
        assert!(rl.check(a, t0).is_ok());
        assert!(rl.check(a, t0).is_ok());
        assert!(rl.check(a, t0).is_err());
        assert!(rl.check(b, t0).is_ok());
        assert!(rl.check(b, t0).is_ok());
        assert!(rl.check(b, t0).is_err());
        // Other /64s are other clients.
        assert!(rl.check(v6("2001:db8:0:1::1"), t0).is_ok());
        assert!(rl.check(v6("2001:db8:0:2::1"), t0).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let rl = RateLimiter::new(1.0, 2).unwrap();
        let t0 = Instant::now();
        assert!(rl.check(v6("2001:db8:1:2::1"), t0).is_ok());
        assert!(rl.check(v6("2001:db8:1:2:ffff:ffff:ffff:ffff"), t0).is_ok());
        assert!(rl.check(v6("2001:db8:1:2:dead:beef::7"), t0).is_err());
        assert_eq!(client_key(v6("2001:db8:1:2:3:4:5:6")), v6("2001:db8:1:2::"));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        assert_eq!(client_key(v6("::ffff:192.0.2.7")), v4(192, 0, 2, 7));
        // Two IPv4 clients seen through a dual-stack socket stay apart.
        let rl = RateLimiter::new(1.0, 1).unwrap();
        let t0 = Instant::now();
        assert!(rl.check(v6("::ffff:192.0.2.7"), t0).is_ok());
        assert!(rl.check(v6("::ffff:192.0.2.8"), t0).is_ok());
        assert!(rl.check(v4(192, 0, 2, 7), t0).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_clients() {
        let rl = RateLimiter::new(1.0, 2).unwrap();
        let t0 = Instant::now();
        // One client is being throttled when the flood starts.
        let hog = v4(198, 51, 100, 1);
        assert!(rl.check(hog, t0).is_ok());
        assert!(rl.check(hog, t0).is_ok());
        assert!(rl.check(hog, t0).is_err());
        for i in 0..100_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            assert!(rl.check(ip, t0).is_ok());
        }
        let lens = rl.shard_lens();
        assert!(lens.iter().all(|&n| n <= SHARD_CAP), "{lens:?}");
        assert!(lens.iter().sum::<usize>() <= SHARDS * SHARD_CAP);
        // The flood did not buy the throttled client a fresh bucket: the
        // fullest buckets went first.
        assert!(rl.check(hog, t0).is_err());
    }

    #[test]
    fn refilled_buckets_are_forgotten_first() {
        let rl = RateLimiter::new(1.0, 2).unwrap();
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            assert!(rl.check(ip, t0).is_ok());
        }
        // A second later every old bucket is full again; new clients then
        // push the old ones out rather than each other.
        let t1 = t0 + Duration::from_secs(1);
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            assert!(rl.check(ip, t1).is_ok());
        }
        let lens = rl.shard_lens();
        assert!(lens.iter().all(|&n| n <= SHARD_CAP), "{lens:?}");
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            assert!(rl.check(ip, t1).is_ok(), "second token for {ip}");
            assert!(rl.check(ip, t1).is_err(), "third token for {ip}");
        }
    }

    #[test]
    fn threads_share_one_bucket_exactly() {
        let rl = Arc::new(RateLimiter::new(1.0, 1000).unwrap());
        let granted = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let ip = v4(203, 0, 113, 9);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (rl, granted) = (rl.clone(), granted.clone());
                std::thread::spawn(move || {
                    for i in 0..2000u32 {
                        if rl.check(ip, t0).is_ok() {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                        // Other clients, to exercise the other shards too.
                        let _ = rl.check(IpAddr::V4(Ipv4Addr::from(i)), t0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(granted.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(ms(1)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
        assert_eq!(retry_after_secs(Duration::new(30, 1)), 31);
    }

    #[test]
    fn inflight_zero_is_off() {
        assert!(Inflight::new(0).is_none());
    }

    #[test]
    fn inflight_caps_and_releases() {
        let cap = Inflight::new(2).unwrap();
        assert_eq!(cap.max(), 2);
        let a = cap.try_enter().unwrap();
        let b = cap.try_enter().unwrap();
        assert!(cap.try_enter().is_none());
        assert_eq!(cap.current(), 2);
        drop(a);
        assert_eq!(cap.current(), 1);
        let c = cap.try_enter().unwrap();
        assert!(cap.try_enter().is_none());
        drop((b, c));
        assert_eq!(cap.current(), 0);
    }

    #[test]
    fn inflight_never_exceeds_the_cap_across_threads() {
        let cap = Arc::new(Inflight::new(3).unwrap());
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (cap, peak) = (cap.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(_guard) = cap.try_enter() {
                            peak.fetch_max(cap.current(), Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(cap.current(), 0);
    }
}
