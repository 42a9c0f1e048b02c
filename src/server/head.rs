//! Reading a request head under hard bounds, before anything else sees it.
//!
//! tiny_http reads a head line by line into buffers that grow for as long
//! as the client sends, wedges a connection on a request line naming
//! `HTTP/2.0`, and closes without an answer on a header it cannot store.
//! So the front (see `relay`) parses every head here first, from the bytes
//! it has read so far: a head is either incomplete, complete (and then
//! re-sent to tiny_http in a canonical form it always accepts), or refused
//! with the status a client deserves: 400, 414 (request line over
//! [`MAX_URI_BYTES`]), 431 (headers over [`MAX_HEADER_BYTES`] or
//! [`MAX_HEADERS`] fields) or 505 (an HTTP version other than 1.0 or 1.1).
//! What is accepted is what RFC 9112 allows and tiny_http can carry:
//! ASCII only, no obsolete line folding, a line may end in CRLF or LF.

/// A request line longer than this is answered 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Headers larger than this in all are answered 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// More header fields than this are answered 431.
pub const MAX_HEADERS: usize = 100;
/// Empty lines tolerated before a request line (RFC 9112 §2.2).
const MAX_LEADING_EMPTY: usize = 4;

/// A complete, valid request head, borrowed from the bytes it was read from.
#[derive(Debug, PartialEq)]
pub struct Head<'a> {
    pub method: &'a str,
    /// In origin form (`/path?query`) or `*`; an absolute-form target
    /// (`http://host/path`) is reduced to its path.
    pub target: &'a str,
    /// The `x` of `HTTP/1.x`: 0 or 1.
    pub minor: u8,
    /// Names and values, values without surrounding whitespace.
    pub headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Head<'a> {
    /// Every value of the header `name` (ASCII case-insensitive), in order.
    pub fn values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + '_ {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// True if any `name` header lists `token` (comma-separated,
    /// case-insensitive), as `Connection: keep-alive, close` does.
    pub fn lists(&self, name: &'a str, token: &str) -> bool {
        self.values(name)
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Why a head is refused, as the answer says it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reject {
    pub status: u16,
    pub message: &'static str,
}

const fn reject(status: u16, message: &'static str) -> Reject {
    Reject { status, message }
}

const BAD_LINE: Reject = reject(400, "malformed request line");
const BAD_HEADER: Reject = reject(400, "malformed header");
const URI_TOO_LONG: Reject = reject(414, "request line too long");
const HEADERS_TOO_LARGE: Reject = reject(431, "request headers too large");

/// How much header a head may carry.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub header_bytes: usize,
    pub headers: usize,
}

impl Bounds {
    /// What a client may send.
    pub const CLIENT: Bounds = Bounds {
        header_bytes: MAX_HEADER_BYTES,
        headers: MAX_HEADERS,
    };
    /// What the front may pass on: a client's head plus the few fields the
    /// front adds (request id, secret, address, connection).
    pub const FORWARDED: Bounds = Bounds {
        header_bytes: MAX_HEADER_BYTES + 512,
        headers: MAX_HEADERS + 8,
    };
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete
/// (read more, then call again with everything), `Ok(Some((head, n)))` once
/// complete, `n` being the bytes it took, or the refusal. Bounds are
/// checked on incomplete input too, so a head can never grow past them.
pub fn parse(buf: &[u8]) -> Result<Option<(Head<'_>, usize)>, Reject> {
    parse_within(buf, Bounds::CLIENT)
}

/// [`parse`] with other bounds on the headers.
pub fn parse_within(buf: &[u8], bounds: Bounds) -> Result<Option<(Head<'_>, usize)>, Reject> {
    let mut pos = 0;
    let mut empty = 0;
    let (line, mut pos) = loop {
        let Some((line, next)) = next_line(buf, pos, MAX_URI_BYTES, URI_TOO_LONG)? else {
            return Ok(None);
        };
        if !line.is_empty() {
            break (line, next);
        }
        empty += 1;
        if empty > MAX_LEADING_EMPTY {
            return Err(BAD_LINE);
        }
        pos = next;
    };
    let (method, target, minor) = request_line(line)?;
    let headers_start = pos;
    let mut headers = Vec::with_capacity(12);
    loop {
        let limit = bounds.header_bytes - (pos - headers_start).min(bounds.header_bytes);
        let Some((line, next)) = next_line(buf, pos, limit, HEADERS_TOO_LARGE)? else {
            return Ok(None);
        };
        pos = next;
        if line.is_empty() {
            break;
        }
        if headers.len() == bounds.headers {
            return Err(HEADERS_TOO_LARGE);
        }
        headers.push(header(line)?);
    }
    let head = Head {
        method,
        target,
        minor,
        headers,
    };
    Ok(Some((head, pos)))
}

/// The line starting at `start`, without its CRLF or LF, and where the next
/// one starts; `None` if it has not ended yet. A line (with its ending)
/// longer than `limit`, ended or not, is `too_long`; a CR anywhere but
/// before the LF is malformed.
fn next_line(
    buf: &[u8],
    start: usize,
    limit: usize,
    too_long: Reject,
) -> Result<Option<(&[u8], usize)>, Reject> {
    let rest = &buf[start.min(buf.len())..];
    let window = &rest[..rest.len().min(limit)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if rest.len() >= limit {
            Err(too_long)
        } else {
            Ok(None)
        };
    };
    let line = window[..lf].strip_suffix(b"\r").unwrap_or(&window[..lf]);
    if line.contains(&b'\r') {
        return Err(reject(400, "bare CR in request head"));
    }
    Ok(Some((line, start + lf + 1)))
}

/// `method SP target SP HTTP/1.x`, exactly.
fn request_line(line: &[u8]) -> Result<(&str, &str, u8), Reject> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD_LINE);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(reject(400, "malformed method"));
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(reject(505, "HTTP version not supported"));
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => {
            return Err(reject(505, "HTTP version not supported"));
        }
        _ => return Err(BAD_LINE),
    };
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(reject(400, "malformed request target"));
    }
    let target = origin_form(target).ok_or(reject(400, "malformed request target"))?;
    Ok((ascii(method), ascii(target), minor))
}

/// The origin-form of a request target: itself if it is one (or `*`), the
/// path of an absolute-form target, `None` for anything else.
fn origin_form(target: &[u8]) -> Option<&[u8]> {
    if target[0] == b'/' || target == b"*" {
        return Some(target);
    }
    let lower = |n: usize| target.get(..n).map(|p| p.to_ascii_lowercase());
    let after_scheme = if lower(7).as_deref() == Some(b"http://") {
        &target[7..]
    } else if lower(8).as_deref() == Some(b"https://") {
        &target[8..]
    } else {
        return None;
    };
    if after_scheme.is_empty() {
        return None;
    }
    match after_scheme.iter().position(|&b| b == b'/') {
        Some(slash) => Some(&after_scheme[slash..]),
        None => Some(b"/"),
    }
}

/// `name: value`, the name a token, the value visible ASCII, spaces and tabs.
fn header(line: &[u8]) -> Result<(&str, &str), Reject> {
    if matches!(line[0], b' ' | b'\t') {
        return Err(reject(400, "obsolete header line folding"));
    }
    let colon = line.iter().position(|&b| b == b':').ok_or(BAD_HEADER)?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(BAD_HEADER);
    }
    let value = trim(&line[colon + 1..]);
    if !value
        .iter()
        .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b))
    {
        return Err(reject(400, "header value is not plain ASCII"));
    }
    Ok((ascii(name), ascii(value)))
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes already checked to be ASCII, as text.
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (Head<'_>, usize) {
        parse(raw.as_bytes()).unwrap().unwrap()
    }

    fn status(raw: &[u8]) -> u16 {
        match parse(raw) {
            Err(r) => r.status,
            Ok(Some(_)) => 200,
            Ok(None) => 0,
        }
    }

    #[test]
    fn a_plain_head() {
        let raw = "GET /telemetry/GetMetric?a=b HTTP/1.1\r\nHost: x\r\nAccept:  */* \r\n\r\nNEXT";
        let (head, used) = ok(raw);
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/telemetry/GetMetric?a=b");
        assert_eq!(head.minor, 1);
        assert_eq!(head.headers, [("Host", "x"), ("Accept", "*/*")]);
        assert_eq!(&raw[used..], "NEXT");
    }

    #[test]
    fn bare_lf_leading_empty_lines_and_http10() {
        let (head, used) = ok("\r\n\nHEAD / HTTP/1.0\nX-A: 1\n\n");
        assert_eq!((head.method, head.minor, used), ("HEAD", 0, 27));
        assert!(head.values("x-a").eq(["1"]));
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        let full = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for n in 0..full.len() {
            assert_eq!(status(&full[..n]), 0, "{n} bytes");
        }
        assert_eq!(status(full), 200);
    }

    #[test]
    fn absolute_form_is_reduced_to_its_path() {
        assert_eq!(ok("GET http://h:1/a?b HTTP/1.1\r\n\r\n").0.target, "/a?b");
        assert_eq!(ok("GET HTTPS://h HTTP/1.1\r\n\r\n").0.target, "/");
        assert_eq!(ok("OPTIONS * HTTP/1.1\r\n\r\n").0.target, "*");
        assert_eq!(status(b"GET http:// HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"CONNECT h:443 HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn other_versions_are_505_and_garbage_400() {
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/3\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/0.9\r\n\r\n"), 505);
        for bad in [
            &b"GET / HTTP/1.1 x\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET /\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTPS/1.1\r\n\r\n",
            b"GET /a\xc3\xa9 HTTP/1.1\r\n\r\n",
            b"GET /a\rb HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
            b"\r\n\r\n\r\n\r\n\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn malformed_headers_are_400() {
        for bad in [
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
            "GET / HTTP/1.1\r\nName : v\r\n\r\n",
            "GET / HTTP/1.1\r\n: v\r\n\r\n",
            "GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nA: caf\u{e9}\r\n\r\n",
            "GET / HTTP/1.1\r\nA: x\0y\r\n\r\n",
        ] {
            assert_eq!(status(bad.as_bytes()), 400, "{bad:?}");
        }
        assert_eq!(
            ok("GET / HTTP/1.1\r\nA:\r\nB:\tv\tw\r\n\r\n").0.headers,
            [("A", ""), ("B", "v\tw")]
        );
    }

    #[test]
    fn bounds_hold_before_the_head_ends() {
        let long_line = format!("GET /{} HTTP/1.1", "a".repeat(MAX_URI_BYTES));
        assert_eq!(status(long_line.as_bytes()), 414, "unterminated");
        assert_eq!(status(format!("{long_line}\r\n\r\n").as_bytes()), 414);
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(MAX_HEADER_BYTES));
        assert_eq!(status(endless.as_bytes()), 431, "unterminated header");
        let many = format!("GET / HTTP/1.1\r\n{}", "A: 1\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(status(many.as_bytes()), 431);
        let total = format!(
            "GET / HTTP/1.1\r\n{}",
            format!("A: {}\r\n", "v".repeat(200)).repeat(90)
        );
        assert_eq!(status(total.as_bytes()), 431);
        let fits = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES - 20));
        assert_eq!(status(fits.as_bytes()), 200);
    }

    #[test]
    fn token_lists() {
        let (head, _) = ok("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(head.lists("connection", "close"));
        assert!(head.lists("Connection", "keep-alive"));
        assert!(!head.lists("Connection", "upgrade"));
    }
}
