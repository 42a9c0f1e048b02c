//! The HTTP server both binaries run: tiny_http (patched, `vendor/tiny_http`)
//! with our routes behind it. tiny_http enforces the connection caps and
//! every bound on a request head, and answers what it refuses through
//! [`refusal`] (our JSON, a request id, an `http.access` line). Each request
//! is handled on its connection's own pool thread as soon as it is read
//! (`serve_inline`): the [`front::Front`] checks, the [`Handler`], then the
//! answer straight to the socket ([`wire`]) and its log line. A slow answer,
//! a big one or a stream holds only its own connection.

pub mod front;
pub mod tls;
pub mod wire;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::http::{Request, Response};
use crate::json;
use crate::log::{Event, Level};
use crate::request_id;
use crate::sys;
use front::Front;
use wire::Persistence;

/// What a server does with requests. Implementations hold their state behind
/// `&self` (they are shared by every connection's thread).
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Must not panic; if it does, the client gets a 500
    /// and the server carries on.
    fn handle(&self, req: &Request) -> Response;

    /// Called after the answer was written, with how long the whole request
    /// took; the place to record latency.
    fn observe(&self, _req: &Request, _status: u16, _elapsed: Duration) {}
}

/// Declared request bodies up to this size are read with the head and
/// dropped, so the request gets its route's answer (no endpoint takes a
/// body: 405 where the method is wrong); larger or chunked ones get 413.
pub const BODY_READ_MAX: usize = 1024;

/// The longest a route may hold its answer back (`FAULT_SLOW_MS` at most).
pub const MAX_DELAY: Duration = Duration::from_secs(600);

/// What every connection's thread shares.
struct Shared {
    handler: Arc<dyn Handler>,
    front: Front,
    stopping: AtomicBool,
    /// Requests between a complete head and a written answer now.
    busy: AtomicUsize,
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    http: tiny_http::Server,
    addr: SocketAddr,
    max_connections: usize,
    /// The open-file limit set for `MAX_CONNECTIONS`, or why it was not.
    fd_limit: Result<u64, String>,
    /// The certificate served, when the listener speaks TLS.
    tls: Option<Arc<tls::Certs>>,
}

impl Server {
    /// Serves `listener`, each request through `front` to `handler`; over
    /// TLS with the certificate of `tls` when given.
    pub fn start(
        listener: TcpListener,
        front: Front,
        handler: Arc<dyn Handler>,
        tls: Option<Arc<tls::Certs>>,
    ) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let limits = front.limits().clone();
        let (fd_limit, max_connections) = sys::cap_connections(limits.max_connections);
        let shared = Arc::new(Shared {
            handler,
            front,
            stopping: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
        });
        let refused = shared.clone();
        let bounds = tiny_http::Limits {
            max_body: Some(BODY_READ_MAX),
            idle_timeout: Some(limits.idle_timeout),
            head_timeout: Some(limits.idle_timeout),
            max_connections: Some(max_connections),
            max_connections_per_ip: (limits.max_connections_per_ip > 0)
                .then_some(limits.max_connections_per_ip),
            keepalive_requests: Some(limits.keepalive_requests),
            on_refusal: Some(Arc::new(move |r| refusal(&refused, r))),
            on_accept_error: Some(Arc::new(accept_failed)),
            ..tiny_http::Limits::default()
        };
        let serving = shared.clone();
        let serve = move |rq| serving.serve(rq);
        let http = match &tls {
            None => tiny_http::Server::serve_inline(listener, None, bounds, serve),
            Some(certs) => {
                let config = certs.server_config().map_err(io::Error::other)?;
                tiny_http::Server::serve_inline_tls(listener, config, bounds, serve)
            }
        }
        .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Server {
            shared,
            http,
            addr,
            max_connections,
            fd_limit,
            tls,
        })
    }

    /// Adds the server's address and limits to an event (the `startup` line).
    pub fn describe(&self, event: Event) -> Event {
        let limits = self.shared.front.limits();
        let fd_limit = match &self.fd_limit {
            Ok(n) => n.to_string(),
            Err(e) => format!("unchanged: {e}"),
        };
        let event = event
            .str("addr", &self.addr.to_string())
            .uint("max_connections", self.max_connections as u64)
            .uint(
                "max_connections_per_ip",
                limits.max_connections_per_ip as u64,
            )
            .str("fd_limit", &fd_limit)
            .uint("idle_timeout_ms", limits.idle_timeout.as_millis() as u64)
            .uint("keepalive_requests", u64::from(limits.keepalive_requests))
            .float("rate_limit_rps", limits.rate_rps)
            .uint("max_inflight", limits.max_inflight as u64)
            .bool("auth", self.shared.front.requires_token());
        match &self.tls {
            None => event.bool("tls", false),
            Some(certs) => {
                let about = certs.about();
                event
                    .bool("tls", true)
                    .str("tls_serial", &about.serial)
                    .str("tls_not_after", &about.not_after)
            }
        }
    }

    /// Re-reads the TLS certificate and key (on SIGHUP): see
    /// [`tls::Certs::reload`]. Without TLS there is nothing to do; that is
    /// logged too.
    pub fn reload(&self) {
        match &self.tls {
            Some(certs) => {
                let _ = certs.reload();
            }
            None => Event::new(Level::Info, "reload")
                .str("result", "nothing to reload: TLS is off")
                .emit(),
        }
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets every request in progress finish (each answer
    /// then says `Connection: close`), waiting at most `grace`: a client
    /// that stopped reading must not hold the process. Returns how many
    /// requests were still being answered.
    pub fn stop(self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        self.shared.stopping.store(true, Ordering::SeqCst);
        // tiny_http's Drop ends its accept loop.
        drop(self.http);
        while self.shared.busy.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.shared.busy.load(Ordering::SeqCst)
    }
}

/// Counts a request as busy until dropped.
struct Busy<'a>(&'a AtomicUsize);
impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Answers one request, on its connection's thread.
    fn serve(&self, rq: tiny_http::Request) {
        let started = Instant::now();
        self.busy.fetch_add(1, Ordering::SeqCst);
        let _busy = Busy(&self.busy);
        let req = Request::from_tiny(&rq);
        // An in-flight slot is held until the answer is written.
        let (mut resp, inflight) = match self.front.admit(&req, started) {
            Err(refused) => (refused, None),
            Ok(inflight) => {
                let resp = catch_unwind(AssertUnwindSafe(|| self.handler.handle(&req)))
                    .unwrap_or_else(|_| {
                        Event::new(Level::Error, "http.panic")
                            .str("path", json::clip(&req.path, 256))
                            .emit();
                        Response::error(500, "internal error")
                    });
                (resp, inflight)
            }
        };
        resp.headers.push(("X-Request-Id", req.id.clone().into()));
        std::thread::sleep(resp.delay.min(MAX_DELAY));
        // A stream has no length: its end is the connection's.
        if self.stopping.load(Ordering::SeqCst) || resp.stream.is_some() {
            rq.close_connection();
        }
        let persistence = match (rq.keep_alive(), *rq.http_version() == (1, 0)) {
            (false, _) => Persistence::Close,
            (true, true) => Persistence::KeepAlive10,
            (true, false) => Persistence::KeepAlive,
        };
        let mut writer = rq.into_writer();
        let sent = wire::write(&mut *writer, &req.method, &resp, persistence);
        drop(inflight);
        if let (Ok(_), Some(stream)) = (&sent, resp.stream.take()) {
            if req.method != "HEAD" {
                stream(&mut *writer);
            }
        }
        let elapsed = started.elapsed();
        self.handler.observe(&req, resp.status, elapsed);
        let (bytes, err) = match sent {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e)),
        };
        access_log(&req, resp.status, bytes, elapsed, err.as_ref());
    }
}

/// The answer to a request tiny_http refused before it reached us: our
/// JSON error with a request id (the client's, when its head was read),
/// logged and counted like any other answer.
fn refusal(shared: &Shared, refused: &tiny_http::Refusal<'_>) -> Vec<u8> {
    let started = Instant::now();
    let sent_id = refused
        .headers
        .iter()
        .find(|h| h.field.equiv(request_id::HEADER))
        .map(|h| h.value.as_str());
    let req = Request {
        remote: refused.remote_addr,
        id: request_id::from_header(sent_id),
        ..Request::default()
    };
    let mut resp =
        Response::error(refused.status, refused.message).header("X-Request-Id", req.id.clone());
    if refused.status == 503 {
        resp = resp.header("Retry-After", "1");
    }
    let mut answer = Vec::with_capacity(256);
    let _ = wire::write(&mut answer, "GET", &resp, Persistence::Close);
    shared.handler.observe(&req, resp.status, started.elapsed());
    access_log(&req, resp.status, resp.body_len(), started.elapsed(), None);
    answer
}

/// tiny_http could not accept a connection (out of descriptors, say); it
/// retries after `pause`.
fn accept_failed(e: &io::Error, pause: Duration) {
    Event::new(Level::Error, "http.accept_failed")
        .str("error", &e.to_string())
        .uint("retry_in_ms", pause.as_millis() as u64)
        .emit();
}

/// One `http.access` line: DEBUG for successes (a busy server answers
/// thousands a second), INFO for client errors, WARN for server errors.
fn access_log(
    req: &Request,
    status: u16,
    bytes: usize,
    elapsed: Duration,
    err: Option<&io::Error>,
) {
    let level = match status {
        500.. => Level::Warn,
        400..=499 => Level::Info,
        _ => Level::Debug,
    };
    if !crate::log::enabled(level) {
        return;
    }
    let mut event = Event::new(level, "http.access")
        .str("method", json::clip(&req.method, 32))
        .str("path", json::clip(&req.path, 256))
        .str("query", &req.loggable_query())
        .uint("status", u64::from(status))
        .ms("duration_ms", elapsed)
        .uint("bytes", bytes as u64)
        .str("request_id", &req.id);
    if let Some(remote) = req.remote {
        event = event.str("remote", &remote.to_string());
    }
    if let Some(err) = err {
        event = event.str("write_error", &err.to_string());
    }
    event.emit();
}
