//! Workarounds for tiny_http 0.12's defects that remain behind the front,
//! reachable from its public API (its code is neither copied nor patched).
//! Each is pinned by a test in `tests/it/front_*.rs` that fails without it.
//!
//! - The nudger: tiny_http's connection pool can strand a new connection
//!   (the front's, opened when its pool of them runs short) behind busy
//!   ones; a connection of our own every few milliseconds frees it (and a
//!   fresh connection whose first answer is slow nudges for itself, see
//!   `relay`).
//! - Accept-thread deaths: tiny_http's accept thread ends for good on the
//!   first `accept()` error and panics if it cannot duplicate a socket
//!   (both happen when file descriptors run out); the panic hook tells the
//!   server's supervisor, which starts a new accept thread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::lifecycle::Stop;

/// How often the nudger connects to its own listener while requests flow.
pub const NUDGE_EVERY: Duration = Duration::from_millis(20);

/// How often it does once the server has been quiet for [`QUIET_AFTER`]: a
/// pool thread that is never woken for 5 s exits, so a quiet server's pool
/// shrinks back instead of keeping every thread a burst made.
pub const NUDGE_EVERY_QUIET: Duration = Duration::from_secs(1);

/// See [`NUDGE_EVERY_QUIET`].
pub const QUIET_AFTER: Duration = Duration::from_secs(2);

/// Keeps tiny_http's connection pool from stranding new connections.
///
/// tiny_http runs each connection on a pooled thread. When a connection
/// arrives, the pool queues it if its count of idle threads is non-zero, but
/// a thread that was just woken for the previous connection still counts as
/// idle until it runs. So a connection that lands right behind another is
/// queued for a thread that will not come back while the earlier connection
/// stays open (an idle keep-alive client), and a burst of keep-alive
/// clients leaves most of them queued. A connection that finds no idle
/// thread gets a new one, which, once done, serves the queue. This loop
/// provides exactly that: every [`NUDGE_EVERY`] it opens a connection to
/// tiny_http's listener and closes it at once, so a stranded connection
/// waits at most that long (a second on a server that has been quiet;
/// `since_last_request` says how long it has been).
pub fn nudge(target: &UnixAddr, stop: &Stop, since_last_request: impl Fn() -> Duration) {
    loop {
        let every = if since_last_request() < QUIET_AFTER {
            NUDGE_EVERY
        } else {
            NUDGE_EVERY_QUIET
        };
        if stop.wait(every) {
            return;
        }
        drop(UnixStream::connect_addr(target));
    }
}

/// The address to reach our own listener at: a wildcard bind is reached on
/// loopback.
pub fn connectable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Threads that answer off the worker pool (delayed answers, drained
/// bodies), bounded so that a flood of them cannot exhaust the process.
pub struct Detached;

/// At most this many such threads at once.
const DETACHED_MAX: usize = 256;

static DETACHED: AtomicUsize = AtomicUsize::new(0);

impl Detached {
    /// A slot, released when dropped; `None` when all are taken.
    pub fn take() -> Option<Detached> {
        DETACHED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < DETACHED_MAX).then_some(n + 1)
            })
            .ok()
            .map(|_| Detached)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        DETACHED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Panics seen in tiny_http's accept thread since the process started.
static ACCEPT_PANICS: AtomicU64 = AtomicU64::new(0);

/// Called by the process's panic hook with the panic's source file. The one
/// panic site that kills tiny_http's accept thread is its `try_clone()` of a
/// just-accepted socket, in `refined_tcp_stream.rs`.
pub fn note_panic(file: &str) {
    if file.contains("tiny_http") && file.ends_with("refined_tcp_stream.rs") {
        ACCEPT_PANICS.fetch_add(1, Ordering::SeqCst);
    }
}

/// See [`note_panic`].
pub fn accept_panics() -> u64 {
    ACCEPT_PANICS.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_accept_panic_site_counts() {
        let before = accept_panics();
        note_panic("/x/src/server/mod.rs");
        note_panic("/x/tiny_http-0.12.0/src/client.rs");
        assert_eq!(accept_panics(), before);
        note_panic("/root/.cargo/registry/src/i/tiny_http-0.12.0/src/util/refined_tcp_stream.rs");
        assert_eq!(accept_panics(), before + 1);
    }

    #[test]
    fn detached_slots_are_bounded_and_returned() {
        let slots: Vec<Detached> = std::iter::from_fn(Detached::take).take(10_000).collect();
        assert!(slots.len() <= DETACHED_MAX);
        assert!(Detached::take().is_none());
        drop(slots);
        assert!(Detached::take().is_some());
    }

    #[test]
    fn wildcards_are_reached_on_loopback() {
        assert_eq!(
            connectable("0.0.0.0".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            connectable("::".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            connectable("10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
