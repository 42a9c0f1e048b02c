//! The HTTP server both binaries run: a tiny_http listener, a pool of worker
//! threads feeding requests to a [`Handler`], one `http.access` log line per
//! request written after the answer is sent, and a clean stop.
//!
//! It also carries the workarounds tiny_http 0.12 needs to stay up against
//! hostile clients, each explained where it is done: declared request bodies
//! are refused without being drained, and a nudger keeps tiny_http's
//! connection pool from leaving new connections queued behind idle ones.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::{JSON, Request, Response, tiny_headers};
use crate::json;
use crate::lifecycle::Stop;
use crate::log::{Event, Level};

/// What a server does with requests. Implementations hold their state behind
/// `&self` (they are shared by every worker thread).
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Must not panic; if it does, the client gets a 500
    /// and the worker carries on.
    fn handle(&self, req: &Request) -> Response;

    /// Called after the answer was written, with how long the whole request
    /// took; the place to record latency.
    fn observe(&self, _req: &Request, _status: u16, _elapsed: Duration) {}
}

/// Binds a TCP listener on `host:port` (port 0 picks a free port).
pub fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    TcpListener::bind(&addrs[..])
}

/// A running worker pool serving one listener.
pub struct Server {
    inner: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    /// Disconnects once every worker has returned (each holds a sender).
    workers_done: Receiver<()>,
    stopping: Arc<AtomicBool>,
    nudger: (Stop, JoinHandle<()>),
    addr: SocketAddr,
}

impl Server {
    /// Serves `listener` with `threads` workers calling `handler`.
    pub fn start(
        listener: TcpListener,
        threads: usize,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let inner = tiny_http::Server::from_listener(listener, None)
            .map(Arc::new)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(threads);
        let (done_tx, workers_done) = sync_channel::<()>(0);
        for i in 0..threads.max(1) {
            let (inner, handler, stopping) = (inner.clone(), handler.clone(), stopping.clone());
            let done = done_tx.clone();
            let worker = std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    work(&inner, &handler, &stopping);
                    drop(done);
                })?;
            workers.push(worker);
        }
        let nudge_stop = Stop::new();
        let nudger = {
            let stop = nudge_stop.clone();
            std::thread::Builder::new()
                .name("http-nudger".into())
                .spawn(move || nudge(addr, &stop))?
        };
        Ok(Server {
            inner,
            workers,
            workers_done,
            stopping,
            nudger: (nudge_stop, nudger),
            addr,
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lets every worker finish the request it is on, then joins them;
    /// waits at most `grace` (a client that stopped reading must not hold
    /// the process). Returns how many workers were still busy.
    pub fn stop(self, grace: Duration) -> usize {
        self.nudger.0.stop();
        let _ = self.nudger.1.join();
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.inner.unblock();
        }
        let deadline = Instant::now() + grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.workers_done.recv_timeout(left) {
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    return self.workers.iter().filter(|w| !w.is_finished()).count();
                }
                Ok(()) => {}
            }
        }
        for w in self.workers {
            let _ = w.join();
        }
        0
    }
}

/// How often the nudger connects to its own listener.
const NUDGE_EVERY: Duration = Duration::from_millis(20);

/// Keeps tiny_http's connection pool from stranding new connections.
///
/// tiny_http 0.12 runs each connection on a pooled thread. When a connection
/// arrives, the pool queues it if its count of idle threads is non-zero, but
/// a thread that was just woken for the previous connection still counts as
/// idle until it runs. So a connection that lands right behind another is
/// queued for a thread that will never come back if the earlier connection
/// stays open and quiet (an idle keep-alive client, a slowloris): the new
/// client waits until some other connection ends. A connection that finds
/// no idle thread gets a new one, which, once done, serves the queue. This
/// thread provides exactly that: every [`NUDGE_EVERY`] it opens and at once
/// closes a connection to our own listener, so a stranded connection waits
/// at most that long. The cost is a few dozen microseconds of CPU per nudge.
fn nudge(addr: SocketAddr, stop: &Stop) {
    let target = SocketAddr::new(connectable(addr.ip()), addr.port());
    while !stop.wait(NUDGE_EVERY) {
        // The connection is dropped (closed) as soon as it is made.
        let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
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

/// A sensible worker count: twice the cores, within 4..=32.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(4, 32)
}

fn work(server: &tiny_http::Server, handler: &Arc<dyn Handler>, stopping: &AtomicBool) {
    loop {
        let rq = match server.recv() {
            Ok(rq) => rq,
            Err(_) if stopping.load(Ordering::SeqCst) => return,
            Err(e) => {
                Event::new(Level::Warn, "http.error")
                    .str("error", &e.to_string())
                    .emit();
                continue;
            }
        };
        let started = Instant::now();
        let req = Request::from_tiny(&rq);
        let declared = rq.body_length().unwrap_or(0);
        if declared > INLINE_BODY_MAX {
            // No endpoint takes a body. A modest one is refused like any
            // answer, but off the worker: dropping the request drains the
            // body, which waits for the client. A huge one cannot be
            // drained safely at all (see `refuse_body`).
            let slot = if declared <= DRAIN_MAX {
                Detached::take()
            } else {
                None
            };
            match slot {
                Some(slot) => {
                    let resp = Response::error(413, "request body not accepted");
                    let handler = handler.clone();
                    let spawned =
                        std::thread::Builder::new()
                            .name("http-drain".into())
                            .spawn(move || {
                                finish(rq, &req, resp, started, handler.as_ref());
                                drop(slot);
                            });
                    if let Err(e) = spawned {
                        Event::new(Level::Error, "http.error")
                            .str("error", &format!("cannot start a drain thread: {e}"))
                            .emit();
                    }
                }
                None => {
                    let bytes = refuse_body(rq, &req);
                    handler.observe(&req, 413, started.elapsed());
                    access_log(&req, 413, bytes, started.elapsed(), None);
                }
            }
            continue;
        }
        let resp = catch_unwind(AssertUnwindSafe(|| handler.handle(&req))).unwrap_or_else(|_| {
            Event::new(Level::Error, "http.panic")
                .str("path", json::clip(&req.path, 256))
                .emit();
            Response::error(500, "internal error")
        });
        if resp.delay.is_zero() {
            finish(rq, &req, resp, started, handler.as_ref());
            continue;
        }
        // A deliberately slow answer waits on a thread of its own, so that
        // it delays only itself and never the other endpoints. Should too
        // many be waiting already, it goes out at once instead.
        match Detached::take() {
            Some(slot) => {
                let handler = handler.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("http-delay".into())
                        .spawn(move || {
                            std::thread::sleep(resp.delay);
                            finish(rq, &req, resp, started, handler.as_ref());
                            drop(slot);
                        });
                if let Err(e) = spawned {
                    Event::new(Level::Error, "http.error")
                        .str("error", &format!("cannot start a delay thread: {e}"))
                        .emit();
                }
            }
            None => finish(rq, &req, resp, started, handler.as_ref()),
        }
    }
}

/// Writes the answer, then records and logs the request.
fn finish(
    rq: tiny_http::Request,
    req: &Request,
    resp: Response,
    started: Instant,
    handler: &dyn Handler,
) {
    let status = resp.status;
    // What goes on the wire after the head: nothing for HEAD, 1xx, 204, 304.
    let bodyless = req.method == "HEAD" || matches!(status, 100..=199 | 204 | 304);
    let bytes = if bodyless { 0 } else { resp.body_len() };
    let sent = rq.respond(resp.into_tiny());
    let elapsed = started.elapsed();
    handler.observe(req, status, elapsed);
    access_log(req, status, bytes, elapsed, sent.err());
}

/// Threads that answer off the worker pool (delayed answers, drained
/// bodies), bounded so that a flood of them cannot exhaust the process.
struct Detached;

/// At most this many such threads at once.
const DETACHED_MAX: usize = 256;

static DETACHED: AtomicUsize = AtomicUsize::new(0);

impl Detached {
    /// A slot, released when dropped; `None` when all are taken.
    fn take() -> Option<Detached> {
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

/// Bodies up to this size are read by tiny_http into memory before we see
/// the request; larger ones are left on the socket.
const INLINE_BODY_MAX: usize = 1024;

/// Declared bodies up to this size are drained when refused (tiny_http
/// allocates the declared size to do it, lazily backed, so this bounds it).
const DRAIN_MAX: usize = 1024 * 1024;

/// Answers 413 to a request whose declared body cannot be drained safely
/// (over [`DRAIN_MAX`], or no thread left to drain it on), without ever
/// dropping its body reader. Returns the bytes of the answer.
///
/// tiny_http 0.12 drains an unread body when the request is dropped, and it
/// does so by allocating a buffer of the whole declared remainder at once
/// (`vec![0; remaining]`) and then blocking on the socket until the client
/// sends it. A `Content-Length: 99999999999` therefore aborts the process on
/// allocation failure, and a modest one that never arrives pins a worker
/// forever. No endpoint of ours takes a body, so such a request is refused
/// through `upgrade`, which hands us the raw stream (body reader included),
/// and the stream is then deliberately leaked: that connection is never read
/// again. It costs one idle connection per offending request instead of the
/// process; bounding connections is the HTTP-front hardening work.
///
/// `upgrade` insists on printing a head of its own, without a length; it is
/// made an interim `100` (which clients skip) and the real answer follows,
/// complete with `Content-Length`, written by us.
fn refuse_body(rq: tiny_http::Request, req: &Request) -> usize {
    let interim = tiny_http::Response::new(
        tiny_http::StatusCode(100),
        tiny_headers(std::iter::empty()),
        io::empty(),
        Some(0),
        None,
    );
    let mut stream = rq.upgrade("none", interim);
    let body = json::error_body("request body not accepted");
    let answer = format!(
        "HTTP/1.1 413 Content Too Large\r\nServer: fabric-telemetry\r\n\
         Content-Type: {JSON}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.flush();
    std::mem::forget(stream);
    Event::new(Level::Warn, "http.refused")
        .str("reason", "declared body too large to drain")
        .str("path", json::clip(&req.path, 256))
        .emit();
    body.len()
}

/// One `http.access` line: DEBUG for successes (a busy server answers
/// thousands a second), INFO for client errors, WARN for server errors.
fn access_log(req: &Request, status: u16, bytes: usize, elapsed: Duration, err: Option<io::Error>) {
    let level = match status {
        500.. => Level::Warn,
        400..=499 => Level::Info,
        _ => Level::Debug,
    };
    let mut event = Event::new(level, "http.access")
        .str("method", json::clip(&req.method, 32))
        .str("path", json::clip(&req.path, 256))
        .uint("status", u64::from(status))
        .ms("duration_ms", elapsed)
        .uint("bytes", bytes as u64);
    if let Some(remote) = req.remote {
        event = event.str("remote", &remote.to_string());
    }
    if let Some(err) = err {
        event = event.str("write_error", &err.to_string());
    }
    event.emit();
}
