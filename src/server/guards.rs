//! Workarounds for tiny_http 0.12's defects, reachable from its public API
//! (its code is neither copied nor patched). Each is pinned by a test in
//! `tests/it/front.rs` that fails without it.
//!
//! - The nudger: tiny_http's connection pool can strand a new connection
//!   behind an idle one; a connection of our own every few milliseconds
//!   frees it. It also keeps `accept()` from timing out now that the
//!   listener carries a read timeout for its accepted sockets.
//! - Declared request bodies: tiny_http drains an unread body on drop by
//!   allocating the whole declared length at once; we never let it.
//! - Accept-thread deaths: tiny_http's accept thread ends for good on the
//!   first `accept()` error and panics if it cannot duplicate a socket
//!   (both happen when file descriptors run out); the panic hook tells the
//!   server's supervisor, which starts a new accept thread.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::http::{JSON, Request};
use crate::json;
use crate::lifecycle::Stop;
use crate::log::{Event, Level};
use crate::sys;

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
/// stays open (an idle keep-alive client, a slowloris), and a burst of
/// keep-alive clients leaves most of them queued. A connection that finds no
/// idle thread gets a new one, which, once done, serves the queue. This loop
/// provides exactly that: every [`NUDGE_EVERY`] it opens a connection to our
/// own listener and resets it at once (no TIME_WAIT left behind), so a
/// stranded connection waits at most that long (a second on a server that
/// has been quiet; `since_last_request` says how long it has been).
pub fn nudge(addr: SocketAddr, stop: &Stop, since_last_request: impl Fn() -> Duration) {
    let target = SocketAddr::new(connectable(addr.ip()), addr.port());
    loop {
        let every = if since_last_request() < QUIET_AFTER {
            NUDGE_EVERY
        } else {
            NUDGE_EVERY_QUIET
        };
        if stop.wait(every) {
            return;
        }
        if let Ok(stream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            let _ = sys::set_linger_zero(&stream);
        }
    }
}

/// The address to reach our own listener at: a wildcard bind is reached on
/// loopback.
fn connectable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Bodies up to this size are read by tiny_http into memory before we see
/// the request; larger ones are left on the socket.
pub const INLINE_BODY_MAX: usize = 1024;

/// Declared bodies up to this size are drained when refused (tiny_http
/// allocates the declared size to do it, lazily backed, so this bounds it).
pub const DRAIN_MAX: usize = 1024 * 1024;

/// Answers 413 to a request whose declared body cannot be drained safely
/// (over [`DRAIN_MAX`], or no thread left to drain it on), without ever
/// dropping its body reader. Returns the bytes of the answer.
///
/// tiny_http 0.12 drains an unread body when the request is dropped, and it
/// does so by allocating a buffer of the whole declared remainder at once
/// (`vec![0; remaining]`) and then blocking on the socket until the client
/// sends it. A `Content-Length: 99999999999` therefore aborts the process on
/// allocation failure. So such a request is refused through `upgrade`, which
/// hands us the raw stream (body reader included); the stream is leaked, so
/// the reader is never dropped, and the connection's sockets are then shut
/// and closed under it, so that the leak costs no descriptor or connection
/// slot, only the leaked objects' few hundred bytes.
///
/// `upgrade` insists on printing a head of its own, without a length; it is
/// made an interim `100` (which clients skip) and the real answer follows,
/// complete with `Content-Length`, written by us.
pub fn refuse_body(rq: tiny_http::Request, req: &Request) -> usize {
    let server = tiny_http::Header::from_bytes(&b"Server"[..], &b"fabric-telemetry"[..]);
    let interim = tiny_http::Response::new(
        tiny_http::StatusCode(100),
        server.into_iter().collect(),
        io::empty(),
        Some(0),
        None,
    );
    let mut stream = rq.upgrade("none", interim);
    let body = json::error_body("request body not accepted");
    let answer = format!(
        "HTTP/1.1 413 Content Too Large\r\nServer: fabric-telemetry\r\n\
         Content-Type: {JSON}\r\nContent-Length: {}\r\nConnection: close\r\n\
         X-Request-Id: {}\r\n\r\n{body}",
        body.len(),
        req.id,
    );
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.flush();
    std::mem::forget(stream);
    let closed = req.remote.map_or(0, sys::close_leaked_connection);
    Event::new(Level::Warn, "http.refused")
        .str("reason", "declared body too large to drain")
        .str("path", json::clip(&req.path, 256))
        .uint("sockets_closed", closed as u64)
        .emit();
    body.len()
}

/// Answers through tiny_http's own writer, which sends the answer first and
/// drains the request's body after (our own writer, reached through
/// `into_writer`, drains first). For modest declared bodies only (see
/// [`DRAIN_MAX`]), on a thread of their own: the drain waits on the client,
/// for at most the idle timeout per read. tiny_http will not send the
/// `Connection: close` such an answer deserves; the stream is in step once
/// drained, so nothing is lost. Returns the body bytes sent.
pub fn respond_then_drain(
    rq: tiny_http::Request,
    resp: &crate::http::Response,
) -> io::Result<usize> {
    let body = resp.body_bytes();
    let len = body.len();
    let headers = [("Server", "fabric-telemetry")]
        .into_iter()
        .chain(resp.headers.iter().map(|(n, v)| (*n, v.as_str())))
        .filter_map(|(n, v)| tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
        .collect();
    let answer = tiny_http::Response::new(
        tiny_http::StatusCode(resp.status),
        headers,
        io::Cursor::new(body),
        Some(len),
        None,
    );
    rq.respond(answer).map(|()| len)
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
