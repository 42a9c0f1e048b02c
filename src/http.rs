//! The HTTP vocabulary both servers share: our own small [`Request`] and
//! [`Response`] types, so routes are plain functions that can be unit-tested
//! and fuzzed without a socket, plus the conditional-request rule
//! ([`if_none_match`]). `server` puts them on the wire through tiny_http.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::json;

pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const HTML: &str = "text/html; charset=utf-8";

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
    /// The client's `X-Request-Id` if it is sane, else a new one; echoed on
    /// the answer and logged with it.
    pub id: String,
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

    /// Sets `id` from the `X-Request-Id` header, or a new one.
    fn with_id(mut self) -> Request {
        self.id = crate::request_id::from_header(self.header("X-Request-Id"));
        self
    }

    /// Adds a header (builder style, for tests).
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).next()
    }

    /// Every header called `name`, in order: a header sent on several
    /// lines is one comma-separated list (RFC 9110 §5.3).
    pub fn headers_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query string as `http.access` logs it: at most 256 bytes, and
    /// the value of any parameter whose name suggests a secret (token, key,
    /// password, secret, auth, signature) replaced by `REDACTED`.
    pub fn loggable_query(&self) -> String {
        const SECRETS: [&str; 6] = ["token", "key", "pass", "secret", "auth", "sig"];
        let mut out = String::new();
        for pair in self.query.split('&') {
            if out.len() > 256 {
                break;
            }
            if !out.is_empty() {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _))
                    if SECRETS
                        .iter()
                        .any(|s| name.to_ascii_lowercase().contains(s)) =>
                {
                    out.push_str(name);
                    out.push_str("=REDACTED");
                }
                _ => out.push_str(pair),
            }
        }
        json::clip(&out, 256).to_string()
    }

    /// GET or HEAD: the only methods our endpoints serve.
    pub fn is_read(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }

    /// The request as tiny_http read it. An absolute-form target
    /// (`http://host/path`) is reduced to its path.
    pub(crate) fn from_tiny(rq: &tiny_http::Request) -> Request {
        let url = rq.url();
        let url = match url.split_once("://") {
            Some((_, rest)) if !url.starts_with('/') => {
                &rest[rest.find('/').unwrap_or(rest.len())..]
            }
            _ => url,
        };
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let headers = rq
            .headers()
            .iter()
            .map(|h| (h.field.as_str().to_string(), h.value.to_string()))
            .collect();
        Request {
            method: rq.method().as_str().to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers,
            remote: rq.remote_addr().copied(),
            id: String::new(),
        }
        .with_id()
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
    pub fn bytes(&self) -> &[u8] {
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

/// A body written over time after the head (Server-Sent Events): given the
/// connection, it writes until it is done or the client goes away.
pub type Stream = Box<dyn FnOnce(&mut dyn std::io::Write) + Send>;

/// An answer: status, headers and a body made of chunks.
pub struct Response {
    pub status: u16,
    /// Names and values; a fixed value costs no allocation.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Vec<Chunk>,
    /// Hold the answer back this long (fault injection). The server waits
    /// on the request's own connection thread, so it delays only itself.
    pub delay: Duration,
    /// A streamed body instead of `body`: sent without a length on the
    /// connection's thread, the connection closing when it ends.
    pub stream: Option<Stream>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body_len())
            .field("delay", &self.delay)
            .field("stream", &self.stream.is_some())
            .finish()
    }
}

impl Response {
    /// An empty answer with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::with_capacity(8),
            body: Vec::with_capacity(1),
            delay: Duration::ZERO,
            stream: None,
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
    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// A streamed answer (see [`Response::stream`]).
    pub fn streaming(status: u16, content_type: &'static str, stream: Stream) -> Response {
        let mut resp = Response::new(status)
            .header("Content-Type", content_type)
            .header("Cache-Control", "no-store");
        resp.stream = Some(stream);
        resp
    }

    /// Holds the answer back for `d` (see [`Response::delay`]).
    pub fn delayed(mut self, d: Duration) -> Response {
        self.delay = d;
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
            .map(|(_, v)| v.as_ref())
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

/// True if two answers' bodies share every big piece: the same layout,
/// and each `Shared` chunk the very same allocation (nothing shared was
/// rendered again), with at least `shared` of them.
#[cfg(test)]
pub fn shares_pieces(a: &[Chunk], b: &[Chunk], shared: usize) -> bool {
    let same = |x: &Chunk, y: &Chunk| match (x, y) {
        (Chunk::Shared(x), Chunk::Shared(y)) => Arc::ptr_eq(x, y),
        (Chunk::Shared(_), _) | (_, Chunk::Shared(_)) => false,
        _ => true,
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| same(x, y))
        && a.iter().filter(|c| matches!(c, Chunk::Shared(_))).count() >= shared
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
    fn logged_queries_are_bounded_and_hide_secrets() {
        let r = Request::get("/x?switch_id=sw-1&access_token=s3cret&API-Key=k&metric=a");
        assert_eq!(
            r.loggable_query(),
            "switch_id=sw-1&access_token=REDACTED&API-Key=REDACTED&metric=a"
        );
        let long = Request::get(&format!("/x?a={}", "b".repeat(10_000)));
        assert!(long.loggable_query().len() <= 256);
        assert_eq!(Request::get("/x").loggable_query(), "");
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
