//! The HTTP glue both servers share, around `tiny_http`.
//!
//! Routes are plain functions from a [`Request`] to a [`Response`]: our own
//! small types, so they can be unit-tested and fuzzed without a socket. This
//! module binds the listener, runs the worker pool that feeds requests to a
//! [`Handler`], turns the handler's `Response` into bytes on the wire (with a
//! `Content-Length`, never chunked), writes one `http.access` log line per
//! request after the answer is sent, and stops the pool on request.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::json;
use crate::log::{Event, Level};

pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The methods every endpoint of ours accepts.
pub const ALLOW_READ: &str = "GET, HEAD";

/// A request as the routes see it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// The path, before any `?`, exactly as sent.
    pub path: String,
    /// The raw query string after `?` (empty if none).
    pub query: String,
    /// Header names and values as sent (look them up with [`Request::header`]).
    pub headers: Vec<(String, String)>,
    pub remote: Option<SocketAddr>,
}

impl Request {
    /// A `GET` for `target` (path and optional query): handy in tests.
    pub fn get(target: &str) -> Request {
        Request::new("GET", target)
    }

    pub fn new(method: &str, target: &str) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            ..Request::default()
        }
    }

    /// Adds a header (builder style, for tests).
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// GET or HEAD: the only methods our endpoints serve.
    pub fn is_read(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }

    fn from_tiny(rq: &tiny_http::Request) -> Request {
        let (path, query) = rq.url().split_once('?').unwrap_or((rq.url(), ""));
        Request {
            method: rq.method().as_str().to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers: rq
                .headers()
                .iter()
                .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
                .collect(),
            remote: rq.remote_addr().copied(),
        }
    }
}

/// One piece of a response body. Pre-rendered snapshot bodies are `Shared`
/// so a request sends them without copying.
#[derive(Debug, Clone)]
pub enum Chunk {
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Static(b) => b,
            Chunk::Shared(b) => b,
            Chunk::Owned(b) => b,
        }
    }
}

impl From<String> for Chunk {
    fn from(s: String) -> Chunk {
        Chunk::Owned(s.into_bytes())
    }
}

impl From<&'static str> for Chunk {
    fn from(s: &'static str) -> Chunk {
        Chunk::Static(s.as_bytes())
    }
}

impl From<Arc<[u8]>> for Chunk {
    fn from(b: Arc<[u8]>) -> Chunk {
        Chunk::Shared(b)
    }
}

/// An answer: status, headers and a body made of chunks.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<Chunk>,
}

impl Response {
    /// An empty answer with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, body: impl Into<Chunk>) -> Response {
        Response::new(status)
            .header("Content-Type", JSON)
            .chunk(body)
    }

    /// A JSON answer whose body is already in pieces.
    pub fn json_chunks(status: u16, body: Vec<Chunk>) -> Response {
        let mut resp = Response::new(status).header("Content-Type", JSON);
        resp.body = body;
        resp
    }

    /// A JSON error: `{"error":"<msg>"}`.
    pub fn error(status: u16, msg: &str) -> Response {
        Response::json(status, json::error_body(msg))
    }

    /// 404 for a path we do not serve (the path is echoed, clipped).
    pub fn unknown_path(path: &str) -> Response {
        Response::error(404, &format!("unknown path: {}", json::clip(path, 128)))
    }

    /// 405 for a method other than GET/HEAD on a path we serve.
    pub fn method_not_allowed(method: &str) -> Response {
        Response::error(
            405,
            &format!("method not allowed: {}", json::clip(method, 32)),
        )
        .header("Allow", ALLOW_READ)
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Appends a chunk to the body.
    pub fn chunk(mut self, chunk: impl Into<Chunk>) -> Response {
        self.body.push(chunk.into());
        self
    }

    /// The body's length in bytes.
    pub fn body_len(&self) -> usize {
        self.body.iter().map(|c| c.bytes().len()).sum()
    }

    /// The body as one byte vector (tests and small answers).
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body
            .iter()
            .flat_map(|c| c.bytes().iter().copied())
            .collect()
    }

    /// The first header called `name` (ASCII case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn into_tiny(self) -> tiny_http::Response<BodyReader> {
        let len = self.body_len();
        let headers = tiny_headers(self.headers.iter().map(|(n, v)| (*n, v.as_str())));
        tiny_http::Response::new(
            tiny_http::StatusCode(self.status),
            headers,
            BodyReader {
                chunks: self.body,
                index: 0,
                offset: 0,
            },
            Some(len),
            None,
        )
        // A known length goes out as Content-Length, never chunked.
        .with_chunked_threshold(usize::MAX)
    }
}

/// Reads a body's chunks in order without copying them first.
struct BodyReader {
    chunks: Vec<Chunk>,
    index: usize,
    offset: usize,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(chunk) = self.chunks.get(self.index) {
            let rest = &chunk.bytes()[self.offset..];
            if rest.is_empty() {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.offset += n;
            return Ok(n);
        }
        Ok(0)
    }
}

/// True if an `If-None-Match` header value names the entity tag `tag`
/// (given without quotes): `*`, a comma-separated list, weak `W/"…"` tags
/// and, leniently, bare unquoted tags all count (weak comparison, RFC 9110).
pub fn if_none_match(header: &str, tag: &str) -> bool {
    let mut rest = header.trim_start();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        if let Some(after) = rest.strip_prefix('*') {
            if after.trim_start().is_empty() || after.trim_start().starts_with(',') {
                return true;
            }
        }
        rest = rest.strip_prefix("W/").unwrap_or(rest);
        let (candidate, after) = match rest.strip_prefix('"') {
            // A quoted tag runs to the next quote (it may hold commas).
            Some(q) => match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => return false, // malformed: never a match
            },
            None => {
                let end = rest.find([',', ' ', '\t']).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        if candidate == tag {
            return true;
        }
        rest = after;
    }
    false
}

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
    stopping: Arc<AtomicBool>,
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
        for i in 0..threads.max(1) {
            let (inner, handler, stopping) = (inner.clone(), handler.clone(), stopping.clone());
            let worker = std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || work(&inner, handler.as_ref(), &stopping))?;
            workers.push(worker);
        }
        Ok(Server {
            inner,
            workers,
            stopping,
            addr,
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lets every worker finish the request it is on, then joins them.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.inner.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// A sensible worker count: twice the cores, within 4..=32.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(4, 32)
}

fn work(server: &tiny_http::Server, handler: &dyn Handler, stopping: &AtomicBool) {
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
        if rq.body_length().is_some_and(|n| n > INLINE_BODY_MAX) {
            refuse_body(rq, &req);
            handler.observe(&req, 413, started.elapsed());
            access_log(&req, 413, 0, started.elapsed(), None);
            continue;
        }
        let resp = catch_unwind(AssertUnwindSafe(|| handler.handle(&req))).unwrap_or_else(|_| {
            Event::new(Level::Error, "http.panic")
                .str("path", json::clip(&req.path, 256))
                .emit();
            Response::error(500, "internal error")
        });
        let (status, bytes) = (resp.status, resp.body_len());
        let sent = rq.respond(resp.into_tiny());
        let elapsed = started.elapsed();
        handler.observe(&req, status, elapsed);
        access_log(&req, status, bytes, elapsed, sent.err());
    }
}

/// Bodies up to this size are read by tiny_http into memory before we see
/// the request; larger ones are left on the socket.
const INLINE_BODY_MAX: usize = 1024;

/// Answers 413 to a request that declared a body larger than
/// [`INLINE_BODY_MAX`], without ever dropping its body reader.
///
/// tiny_http 0.12 drains an unread body when the request is dropped, and it
/// does so by allocating a buffer of the whole declared remainder at once
/// (`vec![0; remaining]`) and then blocking on the socket until the client
/// sends it. A `Content-Length: 99999999999` therefore aborts the process on
/// allocation failure, and a modest one that never arrives pins a worker
/// forever. No endpoint of ours takes a body, so such a request is answered
/// through `upgrade` (which hands us the stream, reader included) and the
/// stream is then deliberately leaked: its connection is never read again.
/// This costs one idle connection per offending request instead of the
/// process; the connection-level front that bounds this is the HTTP-front
/// hardening work.
fn refuse_body(rq: tiny_http::Request, req: &Request) {
    let resp = Response::error(413, "request body not accepted");
    let body = resp.body_bytes();
    let len = body.len().to_string();
    let headers = resp.headers.iter().map(|(n, v)| (*n, v.as_str()));
    let headers = tiny_headers(headers.chain([("Content-Length", len.as_str())]));
    let head = tiny_http::Response::new(
        tiny_http::StatusCode(413),
        headers,
        io::empty(),
        Some(0),
        None,
    );
    let mut stream = rq.upgrade("none", head);
    let _ = stream.write_all(&body);
    let _ = stream.flush();
    std::mem::forget(stream);
    Event::new(Level::Warn, "http.refused")
        .str("reason", "declared body too large")
        .str("path", json::clip(&req.path, 256))
        .emit();
}

/// tiny_http headers, with our `Server` name first; a pair that is not a
/// valid header (never one of ours) is left out rather than panicking.
fn tiny_headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<tiny_http::Header> {
    [("Server", "fabric-telemetry")]
        .into_iter()
        .chain(pairs)
        .filter_map(|(n, v)| tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_splits_path_and_query() {
        let r = Request::get("/telemetry/GetMetric?switch_id=sw-000&metric=x");
        assert_eq!(r.path, "/telemetry/GetMetric");
        assert_eq!(r.query, "switch_id=sw-000&metric=x");
        let r = Request::new("HEAD", "/health").with_header("If-None-Match", "\"a\"");
        assert!(r.is_read());
        assert_eq!(r.header("if-none-match"), Some("\"a\""));
        assert!(!Request::new("POST", "/x").is_read());
    }

    #[test]
    fn body_reader_streams_every_chunk() {
        let shared: Arc<[u8]> = Arc::from(&b"middle-"[..]);
        let resp = Response::json(200, "{\"a\":")
            .chunk(shared)
            .chunk(String::new())
            .chunk(String::from("end}"));
        assert_eq!(resp.body_len(), 16);
        let mut reader = resp.into_tiny().into_reader();
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"{\"a\":middle-end}");
    }

    #[test]
    fn if_none_match_forms() {
        let tag = "18c2f0a1b2c3-7";
        for yes in [
            "\"18c2f0a1b2c3-7\"",
            "W/\"18c2f0a1b2c3-7\"",
            "*",
            " * ",
            "\"old\", \"18c2f0a1b2c3-7\"",
            "\"a,b\",W/\"18c2f0a1b2c3-7\"",
            "18c2f0a1b2c3-7",
            "old,18c2f0a1b2c3-7",
        ] {
            assert!(if_none_match(yes, tag), "{yes}");
        }
        for no in [
            "",
            "\"18c2f0a1b2c3-6\"",
            "\"18c2f0a1b2c3-7",
            "\"x\", \"18c2f0a1b2c3\"",
            "\"*\"",
            "*x",
            "\"18c2f0a1b2c3-7,\"",
            "W/",
        ] {
            assert!(!if_none_match(no, tag), "{no}");
        }
    }

    #[test]
    fn errors_are_json_with_allow_on_405() {
        let r = Response::method_not_allowed("DELETE");
        assert_eq!(r.status, 405);
        assert_eq!(r.header_value("allow"), Some(ALLOW_READ));
        let v: serde_json::Value = serde_json::from_slice(&r.body_bytes()).unwrap();
        assert_eq!(v["error"], "method not allowed: DELETE");
        let long = "/x".repeat(1000);
        let r = Response::unknown_path(&long);
        assert!(r.body_len() < 200);
    }
}
