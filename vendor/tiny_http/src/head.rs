//! Reading a request head under hard bounds.
//!
//! 0.12 read a head byte by byte into buffers that grew for as long as the
//! client sent: one endless header line could take all the memory there
//! was. Here a head is read from a `BufRead` a buffer at a time, within
//! [`Limits`]: a request line over `max_request_line` is refused with 414,
//! headers over `max_header_bytes` in all or more than `max_headers` fields
//! with 431, anything else malformed with 400. What is accepted is what
//! RFC 9112 allows: ASCII without control characters (but tab in values),
//! lines ending in CRLF or a lone LF, up to four empty lines before the
//! request line, no obsolete line folding.
//!
//! Versions other than 1.0 and 1.1 are refused with 505 right after the
//! request line (0.12 answered `HTTP/2.0` only after the whole head, from
//! a writer that waited forever behind the request's own: each such
//! request wedged a connection thread for good).
//!
//! [`read_head`] is public so that fuzzers and property tests can drive the
//! very code the server runs.

use std::cell::Cell;
use std::io::{self, BufRead};
use std::str::FromStr;

use crate::{HTTPVersion, Header, Limits, Method};

/// A request head as it came off the wire.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: Method,
    pub url: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
}

/// Why no head was read.
#[derive(Debug)]
pub enum HeadError {
    /// The stream ended (or timed out) before the head's first byte: the
    /// client is done, nothing needs an answer.
    Closed,
    /// The head is refused with this status and message.
    Refused(u16, &'static str),
    /// Reading failed (for a timeout: after the head's first byte).
    Io(io::Error),
}

/// Empty lines tolerated before a request line (RFC 9112 §2.2).
const MAX_LEADING_EMPTY: usize = 4;

const BAD_LINE: HeadError = HeadError::Refused(400, "malformed request line");
const BAD_HEADER: HeadError = HeadError::Refused(400, "malformed header");
const INCOMPLETE: HeadError = HeadError::Refused(400, "incomplete request head");
const LINE_TOO_LONG: HeadError = HeadError::Refused(414, "request line too long");
const HEADERS_TOO_LARGE: HeadError = HeadError::Refused(431, "request headers too large");

/// Reads one request head from `source` within `limits`. `first_byte` is
/// called once, when the head's first byte has arrived.
pub fn read_head<R: BufRead>(
    source: &mut R,
    limits: &Limits,
    first_byte: impl FnMut(),
) -> Result<Head, HeadError> {
    // A connection's thread reads many heads: its line buffer is kept
    // (one allocation a request fewer), unless a long line grew it.
    thread_local! {
        static LINE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }
    let mut line = LINE.with(Cell::take);
    let head = read_head_into(source, limits, first_byte, &mut line);
    if line.capacity() <= 1024 {
        LINE.with(|l| l.set(line));
    }
    head
}

fn read_head_into<R: BufRead>(
    source: &mut R,
    limits: &Limits,
    mut first_byte: impl FnMut(),
    line: &mut Vec<u8>,
) -> Result<Head, HeadError> {
    let mut started = false;
    let mut empty = 0;
    loop {
        let limit = limits.max_request_line;
        if !read_line(
            source,
            line,
            limit,
            &mut started,
            &mut first_byte,
            LINE_TOO_LONG,
        )? {
            return Err(if started {
                INCOMPLETE
            } else {
                HeadError::Closed
            });
        }
        if !line.is_empty() {
            break;
        }
        empty += 1;
        if empty > MAX_LEADING_EMPTY {
            return Err(BAD_LINE);
        }
    }
    let (method, url, version) = parse_request_line(text(line, BAD_LINE)?)?;
    let mut headers = Vec::new();
    let mut header_bytes = 0;
    loop {
        let left = limits.max_header_bytes.saturating_sub(header_bytes);
        if !read_line(
            source,
            line,
            left,
            &mut started,
            &mut first_byte,
            HEADERS_TOO_LARGE,
        )? {
            return Err(INCOMPLETE);
        }
        if line.is_empty() {
            break;
        }
        header_bytes += line.len() + 2;
        if headers.len() == limits.max_headers {
            return Err(HEADERS_TOO_LARGE);
        }
        headers.push(parse_header(line)?);
    }
    Ok(Head {
        method,
        url,
        version,
        headers,
    })
}

/// Reads a line into `line` (without its CRLF or LF). `Ok(false)`: the
/// stream ended first. A line longer than `limit` is `too_long`.
fn read_line<R: BufRead>(
    source: &mut R,
    line: &mut Vec<u8>,
    limit: usize,
    started: &mut bool,
    first_byte: &mut impl FnMut(),
    too_long: HeadError,
) -> Result<bool, HeadError> {
    line.clear();
    loop {
        let buf = match source.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if !*started && is_timeout(&e) => return Err(HeadError::Closed),
            Err(e) => return Err(HeadError::Io(e)),
        };
        if buf.is_empty() {
            return Ok(false);
        }
        if !*started {
            *started = true;
            first_byte();
        }
        let (take, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        // The line end is not counted against the limit.
        if line.len() + take > limit + 2 {
            return Err(too_long);
        }
        line.extend_from_slice(&buf[..take]);
        source.consume(take);
        if end {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > limit {
                return Err(too_long);
            }
            return Ok(true);
        }
    }
}

/// Checks how `head` frames its body, within `limits.max_body`: a
/// malformed or conflicting `Content-Length`, or one with
/// `Transfer-Encoding`, is 400 (the next request's start would be in
/// doubt: request smuggling); with `max_body` set, a longer or chunked body
/// is 413; an `Expect` other than `100-continue` is 417.
pub fn check_framing(head: &Head, limits: &Limits) -> Result<(), HeadError> {
    let named = |name: &'static str| head.headers.iter().filter(move |h| h.field.equiv(name));
    let mut length: Option<&str> = None;
    for h in named("Content-Length") {
        let value = h.value.as_str();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadError::Refused(400, "malformed Content-Length"));
        }
        if length.map_or(false, |l| l != value) {
            return Err(HeadError::Refused(400, "conflicting Content-Length"));
        }
        length = Some(value);
    }
    let chunked = named("Transfer-Encoding").next().is_some();
    if chunked && length.is_some() {
        return Err(HeadError::Refused(
            400,
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if let Some(max) = limits.max_body {
        // Past usize is simply too large.
        let length = length.map_or(Some(0), |l| l.parse::<usize>().ok());
        if chunked || length.map_or(true, |l| l > max) {
            return Err(HeadError::Refused(413, "request body not accepted"));
        }
    }
    if named("Expect").any(|h| !h.value.as_str().eq_ignore_ascii_case("100-continue")) {
        return Err(HeadError::Refused(417, "expectation not supported"));
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The line as text: printable ASCII and tabs only.
fn text(line: &[u8], bad: HeadError) -> Result<&str, HeadError> {
    if line
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        std::str::from_utf8(line).map_err(|_| bad)
    } else {
        Err(bad)
    }
}

/// `METHOD SP target SP HTTP/x.y`, with single spaces.
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), HeadError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(url), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD_LINE);
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token(method) || !token(url) {
        return Err(BAD_LINE);
    }
    let method = Method::from_str(method).map_err(|_| BAD_LINE)?;
    // Only 1.0 and 1.1 are spoken; any other version is refused as soon
    // as the request line is read.
    let version = match version.as_bytes() {
        b"HTTP/1.0" => HTTPVersion(1, 0),
        b"HTTP/1.1" => HTTPVersion(1, 1),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HeadError::Refused(505, "HTTP version not supported"));
        }
        _ => return Err(BAD_LINE),
    };
    Ok((method, url.to_owned(), version))
}

/// `name: value`; the name a token (RFC 9110 §5.1), the value without
/// surrounding blanks.
fn parse_header(line: &[u8]) -> Result<Header, HeadError> {
    let name_len = line.iter().position(|&b| b == b':').ok_or(BAD_HEADER)?;
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    // This also refuses obsolete line folding (a line starting with a blank).
    if name_len == 0 || !line[..name_len].iter().all(tchar) {
        return Err(BAD_HEADER);
    }
    Header::from_str(text(line, BAD_HEADER)?).map_err(|_| BAD_HEADER)
}
