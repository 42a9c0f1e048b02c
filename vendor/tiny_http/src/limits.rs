//! What a server bounds, and how it refuses what it will not serve.
//!
//! [`Limits`] gathers every bound of the patched server in one value,
//! given to [`Server::with_limits`](crate::Server::with_limits); its
//! `Default` keeps 0.12's behaviour wherever a bound would change what a
//! well-behaved client sees.
//!
//! A request refused before it reaches the application (a malformed or
//! oversized head, a body that will not be read, a version we do not
//! speak, a slow head, too many connections) is answered through one
//! helper, [`Refusal::answer`]: a short JSON body naming the problem and
//! `Connection: close`, since after such a request nobody knows where the
//! next one would start. An application can render the answer itself
//! (to add its own headers or log it) with [`Limits::on_refusal`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Header, StatusCode};

/// Renders the whole answer (head and body) to a refused request.
pub type RefusalHook = Arc<dyn Fn(&Refusal<'_>) -> Vec<u8> + Send + Sync>;

/// Told of a failed `accept()` (or of a connection dropped because its
/// socket could not be duplicated) and of the pause before the next try.
pub type AcceptErrorHook = Arc<dyn Fn(&std::io::Error, Duration) + Send + Sync>;

/// The bounds a server enforces. See each field for its default.
#[derive(Clone)]
pub struct Limits {
    /// The longest request line (without its line end): 8 KiB. Longer: 414.
    pub max_request_line: usize,
    /// All header lines together: 16 KiB. More: 431.
    pub max_header_bytes: usize,
    /// Header fields: 100. More: 431.
    pub max_headers: usize,
    /// Request bodies longer than this, or chunked, are refused with 413
    /// before a byte of them is read (`None`: any, as 0.12 did).
    pub max_body: Option<usize>,
    /// Every read and write on a connection gives up after this (`None`:
    /// never, as 0.12 did). A connection silent this long between
    /// requests is closed without a word; a client that stops reading
    /// its answer is let go.
    pub idle_timeout: Option<Duration>,
    /// A request head (and a small body read with it) must arrive whole
    /// within this of its first byte, else 408 (slowloris). `None`: no
    /// deadline but `idle_timeout` per read.
    pub head_timeout: Option<Duration>,
    /// Connections open at once; past it a new one is answered 503 (with
    /// `Retry-After: 1`) and closed (`None`: no cap, as 0.12).
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address (IPv6: one /64),
    /// so that one host cannot take all of `max_connections`.
    pub max_connections_per_ip: Option<usize>,
    /// Requests one connection may make; its last answer says
    /// `Connection: close` (`None`: any number).
    pub keepalive_requests: Option<u32>,
    /// Renders refusals instead of [`Refusal::answer`].
    pub on_refusal: Option<RefusalHook>,
    /// Told of accept errors (the accept thread carries on after them).
    pub on_accept_error: Option<AcceptErrorHook>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body: None,
            idle_timeout: None,
            head_timeout: None,
            max_connections: None,
            max_connections_per_ip: None,
            keepalive_requests: None,
            on_refusal: None,
            on_accept_error: None,
        }
    }
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("max_request_line", &self.max_request_line)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_headers", &self.max_headers)
            .field("max_body", &self.max_body)
            .field("idle_timeout", &self.idle_timeout)
            .field("head_timeout", &self.head_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("keepalive_requests", &self.keepalive_requests)
            .field("on_refusal", &self.on_refusal.is_some())
            .field("on_accept_error", &self.on_accept_error.is_some())
            .finish()
    }
}

/// A request the server answers itself, with an error, and then closes
/// the connection.
#[derive(Debug)]
pub struct Refusal<'a> {
    /// 400, 408, 413, 414, 417, 431, 503 or 505.
    pub status: u16,
    /// What is wrong, in a few words (no client bytes in it).
    pub message: &'static str,
    pub remote_addr: Option<SocketAddr>,
    /// The request's headers when its head was read whole (a refused body
    /// or expectation), else empty.
    pub headers: &'a [Header],
}

impl Refusal<'_> {
    /// The default answer: a JSON body `{"error":"<message>"}` and
    /// `Connection: close`.
    pub fn answer(&self) -> Vec<u8> {
        let body = format!("{{\"error\":\"{}\"}}", self.message);
        let retry = if self.status == 503 {
            "Retry-After: 1\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{}",
            self.status,
            StatusCode(self.status).default_reason_phrase(),
            body.len(),
            retry,
            body
        )
        .into_bytes()
    }

    /// The answer as `limits` renders it.
    pub(crate) fn render(&self, limits: &Limits) -> Vec<u8> {
        match &limits.on_refusal {
            Some(hook) => hook(self),
            None => self.answer(),
        }
    }
}

/// When the head being read must be whole: shared by a connection and the
/// socket it reads from, which shortens its read timeout to what is left.
pub(crate) struct Deadline {
    base: Instant,
    /// Nanoseconds after `base`; 0 when no head is being read.
    at: AtomicU64,
    /// The read timeout outside a head.
    pub(crate) idle: Option<Duration>,
}

impl Deadline {
    pub(crate) fn new(idle: Option<Duration>) -> Deadline {
        Deadline {
            base: Instant::now(),
            at: AtomicU64::new(0),
            idle,
        }
    }

    /// From now, reads must be done within `within`.
    pub(crate) fn arm(&self, within: Duration) {
        let at = (self.base.elapsed() + within).as_nanos().max(1);
        self.at
            .store(at.min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub(crate) fn disarm(&self) {
        self.at.store(0, Ordering::Relaxed);
    }

    /// What is left, when armed.
    pub(crate) fn left(&self) -> Option<Duration> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_nanos(at).saturating_sub(self.base.elapsed())),
        }
    }
}
