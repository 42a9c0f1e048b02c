//! The running figures `/stats` and `/metrics` report: per-endpoint
//! latency percentiles (a sorted ring each) and each poller's counts.
//!
//! Requests are recorded after their answer is written (see
//! `http::Handler::observe`) without taking a lock: each goes into a
//! bounded queue, folded into the rings by whoever reads them (`/stats`,
//! `/metrics`), or by the recorder that finds the queue full. Poll figures
//! change once per poll.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use crate::percentile::SortedRing;
use crate::prometheus::Histogram;

/// Every kind of failed poll, in `/stats` order (the poller names each
/// failure with one of these).
pub const KINDS: [&str; 7] = [
    "connect",
    "timeout",
    "http_status",
    "body_too_large",
    "invalid_csv",
    "transport",
    "tls",
];

/// Requests the percentiles are computed over, per endpoint.
pub const WINDOW: usize = 1000;

/// The endpoints `/stats` reports percentiles for, in order.
pub const TRACKED: [&str; 2] = ["/telemetry/GetMetric", "/telemetry/ListMetrics"];

/// Every endpoint counted for `/metrics` (tracked ones first); any other
/// path counts as `other`, so that label stays bounded.
pub const ENDPOINTS: [&str; 8] = [
    "/telemetry/GetMetric",
    "/telemetry/ListMetrics",
    "/telemetry/History",
    "/stats",
    "/health",
    "/ready",
    "/metrics",
    "other",
];

/// One endpoint's traffic: the percentile window, answers by status, and
/// the latency histogram.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub ring: SortedRing,
    pub by_status: std::collections::BTreeMap<u16, u64>,
    pub latency: Histogram,
}

/// The poller's running figures.
#[derive(Debug, Clone, Default)]
pub struct PollFigures {
    /// Duration of the last poll cycle (request, read, parse, swap).
    pub last_cycle: Option<Duration>,
    /// Polls answered 200 whose body was accepted.
    pub updated: u64,
    /// Polls answered 304.
    pub not_modified: u64,
    /// Polls answered 200 with the body already held (an upstream without
    /// entity tags): nothing new.
    pub unchanged: u64,
    /// Failed polls (each is retried at the next period).
    pub failed: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// Failed polls by kind, in [`KINDS`] order.
    pub errors_by_kind: [u64; KINDS.len()],
    /// How long until the next poll, as last scheduled.
    pub backoff: Duration,
    /// The circuit breaker's state: closed, open or half_open.
    pub breaker: &'static str,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    pub last_success_ms: Option<u64>,
}

impl PollFigures {
    /// Counts one failure of `kind` (one of [`KINDS`]).
    pub fn count_error(&mut self, kind: &str) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind) {
            self.errors_by_kind[i] += 1;
        }
    }
}

/// One answered request, as queued: its endpoint's index in [`ENDPOINTS`],
/// its status and its duration in microseconds.
#[derive(Debug, Clone, Copy)]
struct Sample {
    endpoint: u8,
    status: u16,
    micros: u32,
}

/// Requests recorded but not yet folded in, at most; a recorder that finds
/// the queue full folds it in itself.
const QUEUED_MAX: usize = 4096;

/// Every endpoint's traffic, and the requests queued for it.
struct Folded {
    queued: Receiver<Sample>,
    endpoints: [Traffic; ENDPOINTS.len()],
}

impl Folded {
    fn add(&mut self, s: Sample) {
        let t = &mut self.endpoints[usize::from(s.endpoint)];
        t.ring.record(s.micros);
        *t.by_status.entry(s.status).or_default() += 1;
        t.latency.observe(f64::from(s.micros) / 1e6);
    }

    fn fold_queued(&mut self) {
        while let Ok(s) = self.queued.try_recv() {
            self.add(s);
        }
    }
}

pub struct Stats {
    started: Instant,
    queue: SyncSender<Sample>,
    traffic: Mutex<Folded>,
    /// One per upstream, in `UPSTREAM_URLS` order.
    poll: Vec<Mutex<PollFigures>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(1)
    }
}

impl PollFigures {
    /// The figures of several pollers as one: counts summed, the worst
    /// state (most failures, an open breaker, the longest wait, the oldest
    /// last success), the latest error. Of one poller, its own.
    pub fn total(all: &[PollFigures]) -> PollFigures {
        let mut t = PollFigures::default();
        let rank = |b: &str| match b {
            "open" => 2,
            "half_open" => 1,
            _ => 0,
        };
        for p in all {
            t.last_cycle = t.last_cycle.max(p.last_cycle);
            t.updated += p.updated;
            t.not_modified += p.not_modified;
            t.unchanged += p.unchanged;
            t.failed += p.failed;
            t.consecutive_failures = t.consecutive_failures.max(p.consecutive_failures);
            for (a, b) in t.errors_by_kind.iter_mut().zip(p.errors_by_kind) {
                *a += b;
            }
            t.backoff = t.backoff.max(p.backoff);
            if rank(p.breaker) >= rank(t.breaker) {
                t.breaker = p.breaker;
            }
            if p.last_error_ms >= t.last_error_ms && p.last_error.is_some() {
                t.last_error = p.last_error.clone();
                t.last_error_ms = p.last_error_ms;
            }
        }
        // The oldest success: none until every poller has had one.
        t.last_success_ms = all.iter().map(|p| p.last_success_ms).min().flatten();
        t
    }
}

impl Stats {
    /// Stats for `upstreams` pollers (at least one).
    pub fn new(upstreams: usize) -> Stats {
        let (queue, queued) = sync_channel(QUEUED_MAX);
        Stats {
            started: Instant::now(),
            queue,
            traffic: Mutex::new(Folded {
                queued,
                endpoints: std::array::from_fn(|_| Traffic {
                    ring: SortedRing::new(WINDOW),
                    by_status: Default::default(),
                    latency: Histogram::default(),
                }),
            }),
            poll: (0..upstreams.max(1))
                .map(|_| Mutex::new(PollFigures::default()))
                .collect(),
        }
    }

    /// Records one answered request: queued, no lock taken (unless the
    /// queue is full, when this call folds it in).
    pub fn record_request(&self, path: &str, status: u16, elapsed: Duration) {
        let endpoint = ENDPOINTS
            .iter()
            .position(|&p| p == path)
            .unwrap_or(ENDPOINTS.len() - 1);
        let sample = Sample {
            endpoint: endpoint as u8,
            status,
            micros: u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX),
        };
        if let Err(TrySendError::Full(sample) | TrySendError::Disconnected(sample)) =
            self.queue.try_send(sample)
        {
            let mut folded = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
            folded.fold_queued();
            folded.add(sample);
        }
    }

    /// A copy of every endpoint's traffic, in [`ENDPOINTS`] order, with
    /// every request recorded so far.
    pub fn traffic(&self) -> Vec<Traffic> {
        let mut folded = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
        folded.fold_queued();
        folded.endpoints.to_vec()
    }

    /// Seconds since the server started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Updates upstream `shard`'s poll figures under their lock.
    pub fn update_poll(&self, shard: usize, f: impl FnOnce(&mut PollFigures)) {
        if let Some(p) = self.poll.get(shard) {
            f(&mut p.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// A copy of every upstream's poll figures, in order.
    pub fn polls(&self) -> Vec<PollFigures> {
        self.poll
            .iter()
            .map(|p| p.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Every upstream's poll figures as one ([`PollFigures::total`]).
    pub fn poll(&self) -> PollFigures {
        PollFigures::total(&self.polls())
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_is_folded_in_and_nothing_is_lost() {
        let stats = Stats::new(1);
        let n = QUEUED_MAX * 3 + 7;
        for i in 0..n {
            let status = if i % 2 == 0 { 200 } else { 404 };
            stats.record_request("/telemetry/ListMetrics", status, Duration::from_micros(5));
        }
        let t = &stats.traffic()[1];
        assert_eq!(t.ring.count(), n as u64);
        assert_eq!(t.by_status[&200] + t.by_status[&404], n as u64);
        assert_eq!(t.ring.len(), WINDOW);
    }
}
