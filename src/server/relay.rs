//! The front's connections: a thread per client connection (`accept` says
//! how they are taken and capped), so that tiny_http never reads a byte a
//! client sent.
//!
//! tiny_http 0.12 trusts its clients: it buffers a request head for as
//! long as one is sent, wedges a connection thread for good on `HTTP/2.0`,
//! allocates a declared body's whole length to discard it, and has no head
//! deadline. So each connection's thread here reads every request head
//! under the bounds of [`head`], within one `IDLE_TIMEOUT_MS` from its
//! first byte (slowloris), answers what it refuses itself (JSON 400, 408,
//! 413, 414, 417, 431, 505, with `Connection: close`), reads and discards a
//! modest body (a larger one is refused), and re-sends the request in a
//! canonical form to tiny_http over a private Unix socket, one request at a
//! time per client connection (so answers keep their order). That
//! connection to tiny_http is taken from a pool at the client's first
//! request and put back when the client's connection ends. The answer
//! comes back framed by its `Content-Length` (or, for a stream, until the
//! socket closes) and is copied to the client; a big one is written to the
//! client directly and only a receipt comes back. The front counts a
//! connection's requests (`KEEPALIVE_REQUESTS`), decides when it ends, and
//! writes the `http.access` line once the answer is out.
//!
//! The hop to tiny_http itself (socket, canonical form, answer heads, the
//! register of client connections) is in `internal`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::accept::{self, Free};
use super::head::{self, Head};
use super::internal::{self, AnswerHead, Clients, Ours};
use super::wire::{self, Persistence};
use super::{Handler, access_log};
use crate::http::{Request, Response};
use crate::log::{Event, Level};
use crate::request_id;

/// Declared request bodies up to this size are read and discarded, so
/// the request gets the answer its route gives (no endpoint takes a body:
/// 405 where a method is wrong); larger ones are refused with 413 at once.
pub const BODY_READ_MAX: u64 = 1024;

/// The longest a route may hold its answer back (`FAULT_SLOW_MS` at most).
pub const MAX_DELAY: Duration = Duration::from_secs(600);

/// The longest a streamed answer may go without a byte (streams send one
/// every second).
const STREAM_SILENCE: Duration = Duration::from_secs(30);

/// An answer's head from our own side of the socket is never larger.
const ANSWER_HEAD_MAX: usize = 64 * 1024;

/// A fresh connection to tiny_http whose first answer has not begun after
/// this long may be stranded; it is nudged, at most this many times.
const STRANDED_AFTER: Duration = Duration::from_millis(5);
const STRANDED_NUDGES: u32 = 40;

/// Idle connections to tiny_http kept for reuse, at most. Each holds one of
/// its threads; beyond this, connections opened for a burst are closed.
const POOL_IDLE_MAX: usize = 128;

/// A connection's read buffer: the most one read takes in.
const SCRATCH_BYTES: usize = 32 * 1024;

/// What every connection thread shares.
pub struct Relay {
    pub upstream: UnixAddr,
    pub secret: String,
    pub idle: Duration,
    pub keepalive_requests: u32,
    pub max_connections: usize,
    pub handler: Arc<dyn Handler>,
    pub clients: Arc<Clients>,
    pub(super) open: AtomicUsize,
    busy: AtomicUsize,
    stopping: AtomicBool,
    /// Idle connections to tiny_http, most recently used last.
    pool: Mutex<Vec<UnixStream>>,
    /// Connection threads waiting for a connection.
    pub(super) free: Mutex<Free>,
    pub(super) wake: Condvar,
    /// Refused connections on their way to [`accept::closer`].
    pub(super) closing: Mutex<SyncSender<TcpStream>>,
}

impl Relay {
    pub fn new(
        upstream: UnixAddr,
        secret: String,
        limits: &super::front::Limits,
        max_connections: usize,
        handler: Arc<dyn Handler>,
        clients: Arc<Clients>,
    ) -> io::Result<Relay> {
        let (closing, incoming) = sync_channel(accept::CLOSING_MAX);
        std::thread::Builder::new()
            .name("http-closer".into())
            .spawn(move || accept::closer(incoming))?;
        Ok(Relay {
            upstream,
            secret,
            idle: limits.idle_timeout,
            keepalive_requests: limits.keepalive_requests,
            max_connections,
            handler,
            clients,
            open: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            pool: Mutex::new(Vec::new()),
            free: Mutex::new(Free::default()),
            wake: Condvar::new(),
            closing: Mutex::new(closing),
        })
    }

    /// Requests between a complete head and a written answer now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// Stops accepting (the accept loop must then be woken by a connection)
    /// and lets each connection end after its request in progress.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// An idle connection to tiny_http, if the pool has one.
    fn take_upstream(&self) -> Option<UnixStream> {
        self.pool.lock().ok()?.pop()
    }

    /// Puts a connection whose last answer was read whole back in the
    /// pool, unless it holds [`POOL_IDLE_MAX`] already.
    fn give_upstream(&self, upstream: UnixStream) {
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < POOL_IDLE_MAX {
                pool.push(upstream);
            }
        }
    }
}

/// Serves one client connection to its end.
pub(super) fn serve(relay: &Relay, stream: TcpStream, peer: SocketAddr) {
    Connection::new(relay, stream, peer).run();
}

/// What the front needs of a request once its head has been passed on.
struct Exchange {
    req: Request,
    /// The connection ends after this answer.
    close: bool,
    started: Instant,
}

/// How an exchange ended.
enum Next {
    /// Read the next request.
    Continue,
    /// Close the connection.
    Close,
    /// Close, letting the client's remaining bytes drain first (it may
    /// still be sending what was refused).
    Linger,
}

/// Decrements the relay's busy count when dropped.
struct Busy<'r>(&'r Relay);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Connection<'r> {
    relay: &'r Relay,
    client: Arc<TcpStream>,
    /// Its number among [`Clients`].
    id: u64,
    peer: SocketAddr,
    peer_text: String,
    /// Bytes read from the client and not yet used.
    input: Vec<u8>,
    /// The connection to tiny_http, from the pool at the first request.
    upstream: Option<UnixStream>,
    served: u32,
    /// Scratch for the head passed on, and for the answer coming back.
    out: Vec<u8>,
    answer: Vec<u8>,
    /// What every read goes through.
    scratch: Box<[u8]>,
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        self.relay.clients.remove(self.id);
    }
}

impl<'r> Connection<'r> {
    fn new(relay: &'r Relay, client: TcpStream, peer: SocketAddr) -> Connection<'r> {
        let client = Arc::new(client);
        Connection {
            relay,
            id: relay.clients.add(client.clone()),
            client,
            peer,
            peer_text: peer.to_string(),
            input: Vec::new(),
            upstream: None,
            served: 0,
            out: Vec::new(),
            answer: Vec::new(),
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
        }
    }

    fn run(mut self) {
        loop {
            if self.relay.stopping() && self.input.is_empty() {
                break;
            }
            match self.exchange() {
                Next::Continue => {}
                Next::Close => break,
                Next::Linger => {
                    self.linger();
                    break;
                }
            }
        }
        let _ = self.client.shutdown(Shutdown::Both);
        // Its connection to tiny_http can serve the next client.
        if let Some(upstream) = self.upstream.take() {
            self.relay.give_upstream(upstream);
        }
    }

    /// Reads one request, has it answered and sends the answer.
    fn exchange(&mut self) -> Next {
        let exchange = match self.read_request() {
            Ok(Some(exchange)) => exchange,
            Ok(None) => return Next::Close,
            Err(next) => return next,
        };
        self.relay.busy.fetch_add(1, Ordering::SeqCst);
        let busy = Busy(self.relay);
        let next = self.relay_answer(&exchange);
        drop(busy);
        self.served += 1;
        next
    }

    /// Reads a head (and any body) and passes the request on. `Ok(None)`:
    /// the client closed or stayed idle; `Err`: refused and answered.
    fn read_request(&mut self) -> Result<Option<Exchange>, Next> {
        let idle = self.relay.idle;
        let mut first_byte = (!self.input.is_empty()).then(Instant::now);
        let mut shortened = false;
        loop {
            match head::parse(&self.input) {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(r) => return Err(self.refuse(r.status, r.message, None)),
            }
            // A head must be whole within `idle` of its first byte.
            if let Some(first) = first_byte {
                let left = idle.saturating_sub(first.elapsed());
                if left.is_zero() {
                    return Err(self.refuse(408, "request head not received in time", None));
                }
                shortened = true;
                let _ = self.client.set_read_timeout(Some(left));
            }
            match fill(&mut &*self.client, &mut self.input, &mut self.scratch) {
                Ok(0) if first_byte.is_some() => {
                    return Err(self.refuse(400, "incomplete request head", None));
                }
                Ok(0) => return Ok(None),
                Ok(_) => {
                    first_byte.get_or_insert_with(Instant::now);
                }
                Err(e) if is_timeout(&e) && first_byte.is_some() => {
                    return Err(self.refuse(408, "request head not received in time", None));
                }
                Err(_) => return Ok(None),
            }
        }
        let Ok(Some((head, used))) = head::parse(&self.input) else {
            return Ok(None); // cannot be: the same bytes parsed a moment ago
        };
        let started = Instant::now();
        if shortened {
            let _ = self.client.set_read_timeout(Some(idle));
        }
        let id = request_id::from_header(head.values("X-Request-Id").next());
        let (path, _) = head.target.split_once('?').unwrap_or((head.target, ""));
        let req = Request {
            method: head.method.to_string(),
            path: path.to_string(),
            remote: Some(self.peer),
            id,
            ..Request::default()
        };
        let body = match body_length(&head) {
            Ok(n) => n,
            Err((status, message)) => return Err(self.refuse(status, message, Some(&req))),
        };
        let close = self.relay.stopping()
            || head.lists("Connection", "close")
            || (head.minor == 0 && !head.lists("Connection", "keep-alive"))
            || self.served + 1 >= self.relay.keepalive_requests;
        self.out.clear();
        let ours = Ours {
            request_id: &req.id,
            secret: &self.relay.secret,
            peer: &self.peer_text,
            conn: self.id,
            close,
        };
        internal::forwarded(&head, &ours, &mut self.out);
        let expects_continue = head.values("Expect").next().is_some();
        drop(head);
        self.input.drain(..used);
        if body > 0 {
            if expects_continue {
                let _ = (&*self.client).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            if let Err(status) = self.discard_body(body) {
                let message = "request body not received in time";
                return Err(match status {
                    408 => self.refuse(408, message, Some(&req)),
                    _ => Next::Close,
                });
            }
        }
        Ok(Some(Exchange {
            req,
            close,
            started,
        }))
    }

    /// Reads and drops `len` body bytes within one idle timeout in all;
    /// `Err(408)` on a timeout, `Err(0)` if the client went away.
    fn discard_body(&mut self, len: u64) -> Result<(), u16> {
        let buffered = (self.input.len() as u64).min(len);
        self.input.drain(..buffered as usize);
        let mut left = len - buffered;
        let deadline = Instant::now() + self.relay.idle;
        while left > 0 {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Err(408);
            }
            let _ = self.client.set_read_timeout(Some(wait));
            let want = self.scratch.len().min(left as usize);
            match (&*self.client).read(&mut self.scratch[..want]) {
                Ok(0) => return Err(0),
                Ok(n) => left -= n as u64,
                Err(e) if is_timeout(&e) => return Err(408),
                Err(_) => return Err(0),
            }
        }
        let _ = self.client.set_read_timeout(Some(self.relay.idle));
        Ok(())
    }

    /// Passes the request on, then copies its answer to the client.
    fn relay_answer(&mut self, ex: &Exchange) -> Next {
        let answer = match self.forward() {
            Ok(answer) => answer,
            Err(e) => {
                self.upstream = None;
                Event::new(Level::Error, "http.error")
                    .str("error", &format!("internal relay: {e}"))
                    .str("request_id", &ex.req.id)
                    .emit();
                let next = self.refuse(502, "internal error", Some(&ex.req));
                return match next {
                    Next::Linger => Next::Close,
                    other => other,
                };
            }
        };
        let body_len = match answer.length {
            _ if wire::bodyless(&ex.req.method, answer.status) => Some(0),
            length => length,
        };
        let (sent, error) = match answer.sent {
            Some(Ok(sent)) => (sent as usize, None),
            Some(Err(())) => {
                let failed = io::Error::other("written straight to the client: failed");
                (0, Some(failed))
            }
            None => self.copy_answer(answer.head_len, body_len),
        };
        // Unless its answer was read whole, the connection is unusable.
        if error.is_some() || body_len.is_none() {
            self.upstream = None;
        }
        let elapsed = ex.started.elapsed();
        self.relay.handler.observe(&ex.req, answer.status, elapsed);
        access_log(&ex.req, answer.status, sent, elapsed, error.as_ref());
        if error.is_some() || body_len.is_none() || answer.close || ex.close {
            return Next::Close;
        }
        Next::Continue
    }

    /// Sends `self.out` to tiny_http, on a pooled connection or a new one,
    /// and reads the answer's head into `self.answer`. A pooled connection
    /// found closed is replaced once.
    fn forward(&mut self) -> io::Result<AnswerHead> {
        let mut fresh = false;
        for attempt in 0..2 {
            if self.upstream.is_none() {
                self.upstream = self.relay.take_upstream();
            }
            if self.upstream.is_none() {
                self.upstream = Some(connect(&self.relay.upstream, self.relay.idle)?);
                fresh = true;
            }
            let Some(upstream) = &mut self.upstream else {
                continue;
            };
            match upstream.write_all(&self.out) {
                Ok(()) => break,
                Err(e) if attempt == 1 => return Err(e),
                Err(_) => self.upstream = None,
            }
        }
        let Some(upstream) = &mut self.upstream else {
            return Err(io::Error::other("no connection"));
        };
        self.answer.clear();
        // A new connection may be stranded in tiny_http's pool (see
        // `guards::nudge`): if its first answer is slow to start, each
        // nudge gives it the chance of a fresh thread.
        let mut nudges = if fresh { STRANDED_NUDGES } else { 0 };
        if nudges > 0 {
            upstream.set_read_timeout(Some(STRANDED_AFTER))?;
        }
        let head = loop {
            if let Some(head) = internal::answer_head(&self.answer) {
                break head;
            }
            if self.answer.len() > ANSWER_HEAD_MAX {
                return Err(io::Error::other("answer head too large"));
            }
            match fill(upstream, &mut self.answer, &mut self.scratch) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed before answering",
                    ));
                }
                Ok(_) => {}
                Err(e) if nudges > 0 && is_timeout(&e) => {
                    nudges -= 1;
                    drop(UnixStream::connect_addr(&self.relay.upstream));
                    if nudges == 0 {
                        upstream.set_read_timeout(Some(MAX_DELAY + self.relay.idle))?;
                    }
                }
                Err(e) => return Err(e),
            }
        };
        if fresh && nudges > 0 {
            upstream.set_read_timeout(Some(MAX_DELAY + self.relay.idle))?;
        }
        Ok(head)
    }

    /// Writes the answer (its head is in `self.answer`, with whatever body
    /// came along) to the client, then copies the rest of its body: `len`
    /// bytes, or until the stream ends when `None`. Returns the body bytes
    /// sent and the error that cut it short.
    fn copy_answer(&mut self, head_len: usize, len: Option<u64>) -> (usize, Option<io::Error>) {
        let have = (self.answer.len() - head_len) as u64;
        let first = match len {
            Some(len) => head_len + have.min(len) as usize,
            None => self.answer.len(),
        };
        if let Err(e) = (&*self.client).write_all(&self.answer[..first]) {
            return (0, Some(e));
        }
        let mut sent = (first - head_len) as u64;
        let Some(upstream) = &mut self.upstream else {
            return (sent as usize, None);
        };
        if len.is_none() {
            let _ = upstream.set_read_timeout(Some(STREAM_SILENCE.max(self.relay.idle)));
        }
        let chunk = &mut self.scratch;
        while len.is_none_or(|len| sent < len) {
            let want = len.map_or(chunk.len(), |len| chunk.len().min((len - sent) as usize));
            let n = match upstream.read(&mut chunk[..want]) {
                Ok(0) if len.is_none() => break,
                Ok(0) => return (sent as usize, Some(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) => return (sent as usize, Some(e)),
            };
            if let Err(e) = (&*self.client).write_all(&chunk[..n]) {
                return (sent as usize, Some(e));
            }
            sent += n as u64;
        }
        (sent as usize, None)
    }

    /// Answers a refused request with a JSON error and `Connection: close`,
    /// and logs it. `req` is `None` when the head could not be read.
    fn refuse(&mut self, status: u16, message: &str, req: Option<&Request>) -> Next {
        let unread;
        let req = match req {
            Some(req) => req,
            None => {
                unread = Request {
                    remote: Some(self.peer),
                    id: request_id::generate(),
                    ..Request::default()
                };
                &unread
            }
        };
        let resp = Response::error(status, message).header("X-Request-Id", req.id.clone());
        let started = Instant::now();
        let sent = wire::write(&mut &*self.client, &req.method, &resp, Persistence::Close);
        let elapsed = started.elapsed();
        self.relay.handler.observe(req, status, elapsed);
        let bytes = *sent.as_ref().unwrap_or(&0);
        access_log(req, status, bytes, elapsed, sent.err().as_ref());
        Next::Linger
    }

    /// Ends a connection whose client may still be sending: closing with
    /// unread bytes would reset it and could destroy the answer in flight,
    /// so the write side is shut and the rest read for a moment first.
    fn linger(&mut self) {
        let _ = self.client.shutdown(Shutdown::Write);
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut budget = 1024 * 1024;
        while budget > 0 {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() || self.client.set_read_timeout(Some(wait)).is_err() {
                return;
            }
            match (&*self.client).read(&mut self.scratch) {
                Ok(0) | Err(_) => return,
                Ok(n) => budget -= n.min(budget),
            }
        }
    }
}

/// Reads what is available (at most `scratch.len()` bytes) and appends it
/// to `buf`; returns the bytes read. Reading through a buffer kept for the
/// connection's life spares zeroing fresh room on every read.
fn fill(source: &mut impl Read, buf: &mut Vec<u8>, scratch: &mut [u8]) -> io::Result<usize> {
    let n = source.read(scratch)?;
    buf.extend_from_slice(&scratch[..n]);
    Ok(n)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn connect(addr: &UnixAddr, idle: Duration) -> io::Result<UnixStream> {
    let stream = UnixStream::connect_addr(addr)?;
    // The answer may be held back by a route (fault injection) first.
    stream.set_read_timeout(Some(MAX_DELAY + idle))?;
    stream.set_write_timeout(Some(idle))?;
    Ok(stream)
}

/// The declared body length: 0 without one; refused when it is malformed
/// (400), chunked or too large to discard (413), or expects something other
/// than `100-continue` (417).
fn body_length(head: &Head) -> Result<u64, (u16, &'static str)> {
    let mut declared: Option<u64> = None;
    for value in head.values("Content-Length") {
        for part in value.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err((400, "malformed Content-Length"));
            }
            // Anything past u64 is simply too large.
            let n = part.parse::<u64>().unwrap_or(u64::MAX);
            if declared.is_some_and(|d| d != n) {
                return Err((400, "conflicting Content-Length"));
            }
            declared = Some(n);
        }
    }
    if head.values("Transfer-Encoding").next().is_some() {
        return Err(match declared {
            Some(_) => (400, "both Content-Length and Transfer-Encoding"),
            None => (413, "request body not accepted"),
        });
    }
    if head
        .values("Expect")
        .any(|v| !v.eq_ignore_ascii_case("100-continue"))
    {
        return Err((417, "expectation not supported"));
    }
    let declared = declared.unwrap_or(0);
    if declared > BODY_READ_MAX {
        return Err((413, "request body not accepted"));
    }
    Ok(declared)
}

/// The request as tiny_http gets it: the request line, the client's
/// end-to-end headers, then ours (request id, secret, client address, and
/// whether the client's connection ends).
/// What the front makes of a complete head: the request tiny_http is
/// handed (with placeholder id, secret and address), or the refusal's
/// status and message. For the fuzz target and property tests.
pub fn canonical(head: &Head) -> Result<Vec<u8>, (u16, &'static str)> {
    body_length(head)?;
    let ours = Ours {
        request_id: "rid",
        secret: "secret",
        peer: "127.0.0.1:1",
        conn: 0,
        close: false,
    };
    let mut out = Vec::new();
    internal::forwarded(head, &ours, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head<'_> {
        head::parse(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn body_lengths() {
        let len = |extra: &str| {
            body_length(&head(&format!("POST / HTTP/1.1\r\n{extra}\r\n"))).map_err(|e| e.0)
        };
        assert_eq!(len(""), Ok(0));
        assert_eq!(len("Content-Length: 12\r\n"), Ok(12));
        assert_eq!(
            len("Content-Length: 12, 12\r\nContent-Length: 12\r\n"),
            Ok(12)
        );
        assert_eq!(
            len("Content-Length: 12\r\nContent-Length: 13\r\n"),
            Err(400)
        );
        assert_eq!(len("Content-Length: 1 2\r\n"), Err(400));
        assert_eq!(len("Content-Length: abc\r\n"), Err(400));
        assert_eq!(len("Content-Length: -1\r\n"), Err(400));
        assert_eq!(len("Content-Length: 99999999999999999999\r\n"), Err(413));
        assert_eq!(len("Content-Length: 1025\r\n"), Err(413));
        assert_eq!(len("Content-Length: 99999999999\r\n"), Err(413));
        assert_eq!(len("Transfer-Encoding: chunked\r\n"), Err(413));
        assert_eq!(
            len("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"),
            Err(400)
        );
        assert_eq!(len("Expect: 100-continue\r\nContent-Length: 3\r\n"), Ok(3));
        assert_eq!(len("Expect: teapot\r\n"), Err(417));
    }
}
