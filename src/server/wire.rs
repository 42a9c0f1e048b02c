//! Putting an answer on the wire ourselves.
//!
//! tiny_http's own response writer copies a body through a reader and
//! writes a head in many small pieces; ours are shared chunks prepared once
//! per snapshot. So answers are written through the raw stream tiny_http
//! hands out (`Request::into_writer`): one buffer with the status line and
//! every header (and a small body), then the body's chunks as they are. The framing rules are HTTP/1.1's: a `Content-Length`
//! always (never chunked), no body after HEAD, 1xx, 204 or 304, and a 304
//! or HEAD carrying the length the full answer would have.

use std::cell::RefCell;
use std::io::{self, Write};

use crate::clock;
use crate::http::Response;

/// How the connection goes on after this answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Persistence {
    /// HTTP/1.1 default: nothing to say.
    KeepAlive,
    /// An HTTP/1.0 client that asked for keep-alive must be told it holds.
    KeepAlive10,
    /// The connection ends after this answer.
    Close,
}

/// Appends the `Date` header value, formatted once per second per thread.
fn put_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = clock::epoch_ms() / 1000;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            *c = (now, clock::http_date(now));
        }
        out.extend_from_slice(c.1.as_bytes());
    })
}

/// Appends `n` in decimal (no formatting machinery: this is per request).
fn put_number(out: &mut Vec<u8>, n: usize) {
    if n >= 10 {
        put_number(out, n / 10);
    }
    out.push(b'0' + (n % 10) as u8);
}

/// True if nothing may follow the head (RFC 9110 §6.4.1).
pub fn bodyless(method: &str, status: u16) -> bool {
    method == "HEAD" || matches!(status, 100..=199 | 204 | 304)
}

/// The head of `resp`: status line, `Date`, `Server`, its headers,
/// `Content-Length` and `Connection` as `persistence` says.
pub fn head(resp: &Response, persistence: Persistence) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + resp.headers.len() * 40);
    let reason = tiny_http::StatusCode(resp.status).default_reason_phrase();
    out.extend_from_slice(b"HTTP/1.1 ");
    put_number(&mut out, usize::from(resp.status));
    for piece in [" ", reason, "\r\nDate: "] {
        out.extend_from_slice(piece.as_bytes());
    }
    put_date(&mut out);
    out.extend_from_slice(b"\r\nServer: fabric-telemetry\r\n");
    for (name, value) in &resp.headers {
        // Values are ours, but a stray line break must never split a header.
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        for piece in [name, ": ", value.as_ref(), "\r\n"] {
            out.extend_from_slice(piece.as_bytes());
        }
    }
    // A streamed body has no length: it ends when the connection closes.
    if !matches!(resp.status, 100..=199 | 204) && resp.stream.is_none() {
        out.extend_from_slice(b"Content-Length: ");
        put_number(&mut out, resp.body_len());
        out.extend_from_slice(b"\r\n");
    }
    match persistence {
        Persistence::KeepAlive => {}
        Persistence::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes `resp` to `w` and flushes; returns the body bytes sent. A
/// streamed answer's head is written here, its body by its own stream.
pub fn write(
    w: &mut dyn Write,
    method: &str,
    resp: &Response,
    persistence: Persistence,
) -> io::Result<usize> {
    let persistence = if resp.stream.is_some() {
        Persistence::Close
    } else {
        persistence
    };
    let mut head = head(resp, persistence);
    let mut sent = 0;
    if bodyless(method, resp.status) {
        w.write_all(&head)?;
    } else {
        // A small body rides in the same write as the head.
        let small = resp.body_len() <= 16 * 1024;
        if small {
            for chunk in &resp.body {
                head.extend_from_slice(chunk.bytes());
            }
        }
        w.write_all(&head)?;
        if !small {
            for chunk in &resp.body {
                w.write_all(chunk.bytes())?;
            }
        }
        sent = resp.body_len();
    }
    w.flush()?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn text(method: &str, resp: &Response, p: Persistence) -> String {
        let mut out = Vec::new();
        write(&mut out, method, resp, p).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_json_answer_with_every_header() {
        let resp = Response::json(200, "{\"ok\":true}").header("ETag", "\"x\"");
        let t = text("GET", &resp, Persistence::KeepAlive);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{t}");
        assert!(t.contains("\r\nServer: fabric-telemetry\r\n"));
        assert!(t.contains("\r\nContent-Type: application/json\r\nETag: \"x\"\r\n"));
        assert!(
            t.ends_with("\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"),
            "{t}"
        );
        assert!(!t.contains("Connection"));
    }

    #[test]
    fn connection_close_and_http10_keepalive_are_said() {
        let resp = Response::error(429, "slow down");
        let t = text("GET", &resp, Persistence::Close);
        assert!(t.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(t.contains("\r\nConnection: close\r\n\r\n{"));
        let t = text("GET", &resp, Persistence::KeepAlive10);
        assert!(t.contains("\r\nConnection: keep-alive\r\n"));
    }

    #[test]
    fn head_and_304_carry_the_length_but_no_body() {
        let big: Arc<[u8]> = Arc::from(vec![b'x'; 100_000]);
        let resp = Response::new(200).chunk(big.clone());
        let t = text("HEAD", &resp, Persistence::KeepAlive);
        assert!(t.ends_with("Content-Length: 100000\r\n\r\n"), "{t}");
        let resp = Response::new(304).chunk(big);
        let t = text("GET", &resp, Persistence::KeepAlive);
        assert!(t.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(t.ends_with("Content-Length: 100000\r\n\r\n"));
    }

    #[test]
    fn large_bodies_follow_the_head_whole() {
        let big: Arc<[u8]> = Arc::from(vec![b'y'; 50_000]);
        let resp = Response::new(200).chunk("[").chunk(big).chunk("]");
        let mut out = Vec::new();
        assert_eq!(
            write(&mut out, "GET", &resp, Persistence::KeepAlive).unwrap(),
            50_002
        );
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(out.len() - split, 50_002);
        assert_eq!(out[split], b'[');
        assert_eq!(*out.last().unwrap(), b']');
    }

    #[test]
    fn a_header_value_with_a_line_break_is_dropped() {
        let resp = Response::new(200).header("X-Evil", "a\r\nSet-Cookie: x");
        assert!(!text("GET", &resp, Persistence::KeepAlive).contains("Set-Cookie"));
    }
}
