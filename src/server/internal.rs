//! The hop between the front and tiny_http: the private socket tiny_http
//! listens on, the canonical form a request is passed on in (with the
//! fields only the front sets), the answer heads that come back, and the
//! register of client connections a big answer is written to directly.
//!
//! The socket is in Linux's abstract namespace, reachable only from this
//! network namespace; every request passed on carries a per-process secret
//! that the server checks, so nothing that bypasses the front is served.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::head::Head;
use crate::request_id;

/// The header that proves a request came through the front.
pub const FRONT_HEADER: &str = "X-Fabric-Front";
/// The header the front passes the client's address in.
pub const PEER_HEADER: &str = "X-Fabric-Peer";
/// The header that says the client's connection ends after this request.
pub const CLOSE_HEADER: &str = "X-Fabric-Close";
/// The header naming the client's connection (see [`Clients`]).
pub const CONN_HEADER: &str = "X-Fabric-Conn";
/// The header of a receipt: the answer went straight to the client, this
/// many body bytes of it, or `failed`.
pub const SENT_HEADER: &str = "X-Fabric-Sent";

/// The client connections open now, by a number of their own, so that a
/// big answer can be written straight to its client instead of being
/// copied through the front (three copies of every byte instead of one).
/// The answering side then sends the front a receipt: a head with
/// [`SENT_HEADER`] and no body. The front waits for it before it touches
/// the connection again, so the two never write at once.
#[derive(Default)]
pub struct Clients {
    open: Mutex<HashMap<u64, Arc<TcpStream>>>,
    next: AtomicU64,
}

impl Clients {
    /// The connection numbered `id`, if it is still open.
    pub fn get(&self, id: u64) -> Option<Arc<TcpStream>> {
        super::lock(&self.open).get(&id).cloned()
    }

    pub(super) fn add(&self, stream: Arc<TcpStream>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        super::lock(&self.open).insert(id, stream);
        id
    }

    pub(super) fn remove(&self, id: u64) {
        super::lock(&self.open).remove(&id);
    }
}

/// Request headers that concern one hop only, or that the front sets
/// itself: never passed on.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "x-request-id",
];

/// The prefix of the headers only the front may set.
const OURS: &[u8] = b"x-fabric-";

/// True for a header only the front may set (`X-Fabric-…`): never passed
/// on from a client, never shown to a route.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.len() > OURS.len() && name.as_bytes()[..OURS.len()].eq_ignore_ascii_case(OURS)
}

/// A private Unix listener for tiny_http, and its address.
pub fn internal_listener() -> io::Result<(UnixListener, UnixAddr)> {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "fabric-telemetry/{}/{:016x}",
            std::process::id(),
            fastrand::u64(..)
        );
        let addr = UnixAddr::from_abstract_name(name.as_bytes())?;
        let listener = UnixListener::bind_addr(&addr)?;
        Ok((listener, addr))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the front needs Linux (abstract Unix sockets)",
        ))
    }
}

/// 128 bits from the kernel's generator (falling back to fastrand), hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        bytes = fastrand::u128(..).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the front adds to a request it passes on.
pub(super) struct Ours<'a> {
    pub(super) request_id: &'a str,
    pub(super) secret: &'a str,
    pub(super) peer: &'a str,
    pub(super) conn: u64,
    /// The client's connection ends after this request.
    pub(super) close: bool,
}

pub(super) fn forwarded(head: &Head, ours: &Ours, out: &mut Vec<u8>) {
    let mut put = |parts: &[&str]| {
        for p in parts {
            out.extend_from_slice(p.as_bytes());
        }
    };
    let version = if head.minor == 0 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    put(&[head.method, " ", head.target, " ", version, "\r\n"]);
    for (name, value) in &head.headers {
        if !is_reserved(name) && !NOT_FORWARDED.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            put(&[name, ": ", value, "\r\n"]);
        }
    }
    put(&[
        request_id::HEADER,
        ": ",
        ours.request_id,
        "\r\n",
        FRONT_HEADER,
        ": ",
        ours.secret,
        "\r\n",
        PEER_HEADER,
        ": ",
        ours.peer,
        "\r\n",
        CONN_HEADER,
        ": ",
        &ours.conn.to_string(),
        "\r\n",
    ]);
    // The connection to tiny_http outlives the client's: it is pooled.
    // Whether the client's ends travels in a header of ours.
    if head.minor == 0 {
        put(&["Connection: keep-alive\r\n"]);
    }
    if ours.close {
        put(&[CLOSE_HEADER, ": 1\r\n"]);
    }
    put(&["\r\n"]);
}

/// An answer's head as our own writer (`wire`) produced it.
#[derive(Debug, PartialEq)]
pub(super) struct AnswerHead {
    pub(super) head_len: usize,
    pub(super) status: u16,
    /// `None`: a stream, ending when the connection does.
    pub(super) length: Option<u64>,
    pub(super) close: bool,
    /// A receipt: the answer was written straight to the client (`Ok`:
    /// its body bytes), or that failed.
    pub(super) sent: Option<Result<u64, ()>>,
}

/// The head at the start of `buf`, once it is complete.
pub(super) fn answer_head(buf: &[u8]) -> Option<AnswerHead> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.get(9..12)?.parse().ok()?;
    let mut head = AnswerHead {
        head_len: end,
        status,
        length: None,
        close: false,
        sent: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            head.length = value.trim().parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.trim().eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case(SENT_HEADER) {
            head.sent = Some(value.trim().parse().map_err(|_| ()));
        }
    }
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Response;
    use crate::server::head;
    use crate::server::wire::{self, Persistence};

    fn head(raw: &str) -> Head<'_> {
        head::parse(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn the_forwarded_head_is_canonical_and_carries_ours() {
        let raw = "GET /stats HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nX-Fabric-Front: forged\r\n\
                   X-Fabric-Peer: 6.6.6.6:6\r\nX-Request-Id: theirs\r\nX-fabric-close: 1\r\nAccept: */*\r\n\r\n";
        let mut ours = Ours {
            request_id: "rid",
            secret: "s3",
            peer: "10.0.0.1:5",
            conn: 7,
            close: false,
        };
        let mut out = Vec::new();
        forwarded(&head(raw), &ours, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /stats HTTP/1.0\r\nHost: h\r\nAccept: */*\r\nX-Request-Id: rid\r\n\
             X-Fabric-Front: s3\r\nX-Fabric-Peer: 10.0.0.1:5\r\nX-Fabric-Conn: 7\r\n\
             Connection: keep-alive\r\n\r\n"
        );
        ours.close = true;
        let mut out = Vec::new();
        forwarded(&head("GET / HTTP/1.1\r\n\r\n"), &ours, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\nX-Fabric-Close: 1\r\n\r\n"), "{text}");
        assert!(
            !text.contains("Connection:"),
            "tiny_http keeps its end open"
        );
    }

    #[test]
    fn answer_heads_as_wire_writes_them() {
        let resp = Response::json(200, "{}").header("X-Request-Id", "r");
        let mut buf = Vec::new();
        wire::write(&mut buf, "GET", &resp, Persistence::Close).unwrap();
        let head = answer_head(&buf).unwrap();
        assert_eq!(head.head_len, buf.len() - 2);
        assert_eq!((head.status, head.length, head.close), (200, Some(2), true));
        assert_eq!(answer_head(&buf[..head.head_len - 1]), None);
        let stream =
            answer_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n").unwrap();
        assert_eq!((stream.length, stream.close), (None, false));
    }
}
