//! The invariants of request-head reading in the patched tiny_http
//! (`tiny_http::read_head` and `check_framing`, the code the servers run),
//! shared by the `head_parse` fuzz target and the seeded property test in
//! `tests/it/head_props.rs`.
//!
//! For any bytes: no panic; a refusal is one of the statuses the head
//! reader sends, with a message; a head cut short is within the bounds; an
//! accepted head reads the same from its own bytes alone, holds only sane
//! tokens, and written out again in canonical form reads back the same
//! (and that form is its own canonical form); body framing is accepted or
//! refused with 400, 413 or 417.

use tiny_http::{Head, HeadError, Limits};

/// The limits the servers run with, for what heads are concerned.
pub fn server_limits() -> Limits {
    Limits {
        max_body: Some(1024),
        ..Limits::default()
    }
}

/// What became of some bytes: the head and the bytes it took, or the
/// refusal (status 0: the stream ended before a byte).
pub fn read(bytes: &[u8], limits: &Limits) -> Result<(Head, usize), (u16, &'static str)> {
    let mut rest = bytes;
    match tiny_http::read_head(&mut rest, limits, || {}) {
        Ok(head) => Ok((head, bytes.len() - rest.len())),
        Err(HeadError::Closed) => Err((0, "closed")),
        Err(HeadError::Refused(status, message)) => Err((status, message)),
        // Bytes in memory cannot fail to be read.
        Err(HeadError::Io(_)) => Err((1, "io error")),
    }
}

/// The head written out in canonical form: CRLF line ends, `name: value`.
pub fn canonical(head: &Head) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/{}\r\n", head.method, head.url, head.version).into_bytes();
    for h in &head.headers {
        out.extend_from_slice(format!("{}: {}\r\n", h.field, h.value).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Which way the reader went with some bytes, for counting that every way
/// is exercised.
pub fn outcome(bytes: &[u8]) -> String {
    let limits = server_limits();
    match read(bytes, &limits) {
        Err((400, "incomplete request head")) => "incomplete".into(),
        Err((status, _)) => format!("refused {status}"),
        Ok((head, _)) => match tiny_http::check_framing(&head, &limits) {
            Ok(()) => "accepted".into(),
            Err(HeadError::Refused(status, _)) => format!("refused {status}"),
            Err(e) => format!("framing error {e:?}"),
        },
    }
}

pub fn check_head(bytes: &[u8]) -> Result<(), String> {
    let limits = server_limits();
    let bound = limits.max_request_line + limits.max_header_bytes + 2 * (limits.max_headers + 8);
    let (head, used) = match read(bytes, &limits) {
        Err((0, _)) if bytes.is_empty() => return Ok(()),
        Err((400, "incomplete request head")) if bytes.len() <= bound => return Ok(()),
        Err((400, "incomplete request head")) => {
            return Err(format!("{} bytes still incomplete", bytes.len()));
        }
        Err((status, message)) if [400, 414, 431, 505].contains(&status) && !message.is_empty() => {
            return Ok(());
        }
        Err(other) => return Err(format!("unexpected refusal {other:?}")),
        Ok(read) => read,
    };
    if used == 0 || used > bytes.len() || used > bound {
        return Err(format!("used {used} of {}", bytes.len()));
    }
    match read(&bytes[..used], &limits) {
        Ok((again, n)) if format!("{again:?}") == format!("{head:?}") && n == used => {}
        other => return Err(format!("the head alone reads differently: {other:?}")),
    }
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token(head.method.as_str()) || !token(&head.url) {
        return Err(format!("request line tokens: {head:?}"));
    }
    if ![(1, 0), (1, 1)].contains(&(head.version.0, head.version.1)) {
        return Err(format!("version {:?} accepted", head.version));
    }
    if head.headers.len() > limits.max_headers {
        return Err(format!("{} headers accepted", head.headers.len()));
    }
    for h in &head.headers {
        let (name, value) = (h.field.as_str().as_str(), h.value.as_str());
        if !token(name) || name.contains(':') {
            return Err(format!("header name {name:?}"));
        }
        if value.trim() != value
            || value
                .bytes()
                .any(|b| b != b'\t' && !(b' '..=b'~').contains(&b))
        {
            return Err(format!("header value {value:?}"));
        }
    }
    let written = canonical(&head);
    match read(&written, &limits) {
        Ok((back, n)) if n == written.len() && canonical(&back) == written => {}
        other => {
            return Err(format!(
                "canonical form {:?} reads back as {other:?}",
                String::from_utf8_lossy(&written)
            ));
        }
    }
    match tiny_http::check_framing(&head, &limits) {
        Ok(()) => Ok(()),
        Err(HeadError::Refused(400 | 413 | 417, message)) if !message.is_empty() => Ok(()),
        Err(other) => Err(format!("unexpected framing refusal {other:?}")),
    }
}
