//! The HTTP server both binaries run. Clients connect to the front
//! ([`relay`]): our own accept loop and a thread per connection that reads
//! every request head under hard bounds ([`head`]) and passes valid
//! requests on to tiny_http over a private Unix socket. tiny_http's pool
//! of worker threads then feeds them through the [`front::Front`] checks
//! (rate limit, in-flight cap, token) to a [`Handler`]; the answer goes
//! back through the front, which writes one `http.access` line per request
//! once it is out. The stop is clean and bounded.
//!
//! The listener carries what accepted sockets inherit on Linux:
//! `TCP_NODELAY` (no 40 ms Nagle stalls) and per-call read and write
//! timeouts (`IDLE_TIMEOUT_MS`: an idle or non-reading client is let go).
//! The open-file limit is raised to what `MAX_CONNECTIONS` need. tiny_http's
//! accept thread dies on the first accept error; a supervisor then starts a
//! new one on the same listener, so the server never goes deaf. The other
//! tiny_http workarounds are in [`guards`].

pub mod accept;
pub mod front;
pub mod guards;
pub mod head;
pub mod internal;
pub mod relay;
pub mod wire;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::{Request, Response};
use crate::json;
use crate::lifecycle::Stop;
use crate::log::{Event, Level};
use crate::sys;
use front::Front;
use guards::Detached;
use relay::Relay;
use wire::Persistence;

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

/// A sensible worker count: twice the cores, within 4..=32.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(4, 32)
}

/// Descriptors kept free beyond those of the connections: the poller's
/// upstream connection, the nudger, a listener copy for a restart, log and
/// /proc.
const SPARE_FDS: u64 = 64;

/// Descriptors one client connection takes: its socket, the front's end of
/// the Unix socket, and tiny_http's end (which it duplicates).
const FDS_PER_CONNECTION: u64 = 4;

/// What every worker of every generation shares.
struct Shared {
    handler: Arc<dyn Handler>,
    front: Front,
    /// What proves a request came through the front.
    secret: String,
    /// The front's client connections, for answers written straight to them.
    clients: Arc<internal::Clients>,
    threads: usize,
    stopping: AtomicBool,
    /// Our own copy of tiny_http's listener, to start a new accept thread on.
    listener: UnixListener,
    /// One tiny_http server per accept thread started, with its worker count.
    generations: Mutex<Vec<(Arc<tiny_http::Server>, usize)>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Cloned into each worker; disconnects when all have returned.
    workers_alive: Mutex<Option<SyncSender<()>>>,
    /// A worker reports here that an accept thread ended.
    accept_died: Mutex<Sender<String>>,
    /// When the last request arrived, in ms since `born`.
    last_request_ms: AtomicU64,
    born: Instant,
}

/// Answers larger than this are written off the worker pool.
const OFFLOAD_BYTES: usize = 64 * 1024;

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    relay: Arc<Relay>,
    workers_done: Receiver<()>,
    accept: JoinHandle<()>,
    supervisor: (Stop, JoinHandle<()>),
    nudger: (Stop, JoinHandle<()>),
    addr: SocketAddr,
    /// The open-file limit set for `MAX_CONNECTIONS`, or why it was not.
    fd_limit: Result<u64, String>,
}

impl Server {
    /// Serves `listener` with `threads` workers calling `handler`, behind
    /// `front`.
    pub fn start(
        listener: TcpListener,
        threads: usize,
        front: Front,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let limits = front.limits().clone();
        sys::set_listener_options(&listener, limits.idle_timeout)?;
        let (fd_limit, max_connections) = cap_connections(limits.max_connections);
        let (internal, internal_addr) = internal::internal_listener()?;
        let secret = internal::new_secret();
        let clients = Arc::new(internal::Clients::default());
        let (alive_tx, workers_done) = sync_channel(0);
        let (died_tx, died_rx) = channel();
        let shared = Arc::new(Shared {
            handler: handler.clone(),
            front,
            secret: secret.clone(),
            clients: clients.clone(),
            threads: threads.max(1),
            stopping: AtomicBool::new(false),
            listener: internal.try_clone()?,
            generations: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            workers_alive: Mutex::new(Some(alive_tx)),
            accept_died: Mutex::new(died_tx),
            last_request_ms: AtomicU64::new(0),
            born: Instant::now(),
        });
        shared.start_generation(internal)?;
        let supervisor = spawn_with_stop("http-supervisor", {
            let shared = shared.clone();
            move |stop| supervise(&shared, &died_rx, stop)
        })?;
        let nudger = spawn_with_stop("http-nudger", {
            let (shared, target) = (shared.clone(), internal_addr.clone());
            move |stop| guards::nudge(&target, stop, || shared.since_last_request())
        })?;
        let relay = Arc::new(Relay::new(
            internal_addr,
            secret,
            &limits,
            max_connections,
            handler,
            clients,
        )?);
        let accept = std::thread::Builder::new()
            .name("http-accept".into())
            .spawn({
                let relay = relay.clone();
                move || accept::accept_loop(&relay, &listener)
            })?;
        Ok(Server {
            shared,
            relay,
            workers_done,
            accept,
            supervisor,
            nudger,
            addr,
            fd_limit,
        })
    }

    /// Adds the server's address and front settings to an event (the
    /// `startup` line).
    pub fn describe(&self, event: Event) -> Event {
        let limits = self.shared.front.limits();
        let fd_limit = match &self.fd_limit {
            Ok(n) => n.to_string(),
            Err(e) => format!("unchanged: {e}"),
        };
        event
            .str("addr", &self.addr.to_string())
            .uint("workers", self.shared.threads as u64)
            .uint("max_connections", self.relay.max_connections as u64)
            .str("fd_limit", &fd_limit)
            .uint("idle_timeout_ms", limits.idle_timeout.as_millis() as u64)
            .uint("keepalive_requests", u64::from(limits.keepalive_requests))
            .float("rate_limit_rps", limits.rate_rps)
            .uint("max_inflight", limits.max_inflight as u64)
            .bool("auth", self.shared.front.requires_token())
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets every request in progress finish, then joins
    /// the workers; waits at most `grace` (a client that stopped reading
    /// must not hold the process). Returns how many requests were still
    /// being answered.
    pub fn stop(self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        self.relay.stop();
        // Wake the accept loop with a connection of our own.
        let wake = SocketAddr::new(guards::connectable(self.addr.ip()), self.addr.port());
        let _ = TcpStream::connect_timeout(&wake, Duration::from_millis(200));
        let _ = self.accept.join();
        while self.relay.busy() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let busy = self.relay.busy();
        for (stop, thread) in [self.supervisor, self.nudger] {
            stop.stop();
            let _ = thread.join();
        }
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        drop(lock(&shared.workers_alive).take());
        for (server, workers) in lock(&shared.generations).iter() {
            for _ in 0..*workers {
                server.unblock();
            }
        }
        // Workers are idle once the front is; give them a moment to return
        // even when the front used up the grace.
        let deadline = deadline.max(Instant::now() + Duration::from_millis(500));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.workers_done.recv_timeout(left) {
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let stuck = lock(&shared.workers)
                        .iter()
                        .filter(|w| !w.is_finished())
                        .count();
                    return busy.max(stuck);
                }
                Ok(()) => {}
            }
        }
        for w in lock(&shared.workers).drain(..) {
            let _ = w.join();
        }
        busy
    }
}

/// A mutex's contents even if a thread panicked holding it (every value
/// guarded here stays consistent between statements).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn spawn_with_stop(
    name: &str,
    body: impl FnOnce(&Stop) + Send + 'static,
) -> io::Result<(Stop, JoinHandle<()>)> {
    let stop = Stop::new();
    let thread = std::thread::Builder::new().name(name.into()).spawn({
        let stop = stop.clone();
        move || body(&stop)
    })?;
    Ok((stop, thread))
}

/// Raises the soft open-file limit to what `max` connections need plus
/// spares. Returns the limit set (or why not) and how many connections it
/// allows: `max`, or fewer if the hard limit is lower, so that the front's
/// cap is always reached before descriptors run out.
fn cap_connections(max: usize) -> (Result<u64, String>, usize) {
    let open = sys::open_fds().unwrap_or(16);
    let wanted = open + FDS_PER_CONNECTION * max as u64 + SPARE_FDS;
    let limit = sys::set_nofile_soft(wanted)
        .or_else(|e| sys::nofile_limit().map(|(soft, _)| soft).map_err(|_| e))
        .map_err(|e| e.to_string());
    let allowed = match &limit {
        Ok(limit) => (limit.saturating_sub(open + SPARE_FDS) / FDS_PER_CONNECTION) as usize,
        Err(_) => max,
    };
    (limit, max.min(allowed.max(1)))
}

impl Shared {
    /// Starts a tiny_http server (its own accept thread) on `listener`, with
    /// a full set of workers.
    fn start_generation(self: &Arc<Self>, listener: UnixListener) -> io::Result<()> {
        let server = tiny_http::Server::from_listener(listener, None)
            .map(Arc::new)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // tiny_http's `Drop` unwraps the listener's path, which an abstract
        // socket has none of: it must never run. The server lives as long
        // as the process anyway.
        std::mem::forget(server.clone());
        let alive = lock(&self.workers_alive).clone();
        let Some(alive) = alive else {
            return Ok(()); // stopping
        };
        let generation = lock(&self.generations).len();
        // Workers of earlier generations retire once their connections are gone.
        lock(&self.workers).retain(|w| !w.is_finished());
        let mut started = 0;
        for i in 0..self.threads {
            let (shared, server, alive) = (self.clone(), server.clone(), alive.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("http-{generation}-{i}"))
                .spawn(move || {
                    shared.work(&server, generation);
                    drop(alive);
                });
            match spawned {
                Ok(w) => {
                    lock(&self.workers).push(w);
                    started += 1;
                }
                Err(e) if started == 0 => return Err(e),
                Err(_) => break,
            }
        }
        lock(&self.generations).push((server, started));
        Ok(())
    }

    /// Serves one generation's requests. Once a newer generation took over
    /// accepting, its workers retire after twice the idle timeout without a
    /// request: by then every connection of theirs has been closed.
    fn work(self: &Arc<Self>, server: &tiny_http::Server, generation: usize) {
        let mut last_request = Instant::now();
        loop {
            match server.recv_timeout(Duration::from_secs(1)) {
                Ok(Some(rq)) => {
                    last_request = Instant::now();
                    self.serve(rq);
                }
                Ok(None) | Err(_) if self.stopping.load(Ordering::SeqCst) => return,
                Ok(None) => {
                    let superseded = lock(&self.generations).len() > generation + 1;
                    let quiet = last_request.elapsed() > 2 * self.front.limits().idle_timeout;
                    if superseded && quiet {
                        return;
                    }
                }
                Err(e) => {
                    // tiny_http hands out an accept error once, as its accept
                    // thread ends; this worker's server accepts no more.
                    let _ = lock(&self.accept_died).send(e.to_string());
                }
            }
        }
    }

    fn since_last_request(&self) -> Duration {
        let last = Duration::from_millis(self.last_request_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    /// What the front says of the client if `rq` came through it (its
    /// address, and its connection's number), or `None`.
    fn through_front(&self, rq: &tiny_http::Request) -> Option<(Option<SocketAddr>, Option<u64>)> {
        let mut secret = None;
        let mut peer = None;
        let mut conn = None;
        for h in rq.headers() {
            if h.field.equiv(internal::FRONT_HEADER) {
                secret = Some(h.value.as_str());
            } else if h.field.equiv(internal::PEER_HEADER) {
                peer = h.value.as_str().parse().ok();
            } else if h.field.equiv(internal::CONN_HEADER) {
                conn = h.value.as_str().parse().ok();
            }
        }
        (secret == Some(self.secret.as_str())).then_some((peer, conn))
    }

    /// Answers one request. An answer that may take long (a delay, or a
    /// body over [`OFFLOAD_BYTES`] that a client which does not read could
    /// leave half-written until the write timeout) is written off the
    /// worker.
    fn serve(&self, rq: tiny_http::Request) {
        let started = Instant::now();
        let ms = started.duration_since(self.born).as_millis() as u64;
        // One store per request, skipped when another made it this millisecond.
        if self.last_request_ms.load(Ordering::Relaxed) != ms {
            self.last_request_ms.store(ms, Ordering::Relaxed);
        }
        let Some((remote, conn)) = self.through_front(&rq) else {
            return bypassed(rq);
        };
        let req = Request::from_tiny(&rq, remote);
        // An in-flight slot is held until the answer is written.
        let (mut resp, close, inflight) = match self.front.admit(&req, started) {
            Err(refusal) => (refusal.response, refusal.close, None),
            Ok(inflight) => {
                let resp = catch_unwind(AssertUnwindSafe(|| self.handler.handle(&req)))
                    .unwrap_or_else(|_| {
                        Event::new(Level::Error, "http.panic")
                            .str("path", json::clip(&req.path, 256))
                            .emit();
                        Response::error(500, "internal error")
                    });
                (resp, false, inflight)
            }
        };
        let close = self.front.seal(&req, &mut resp, close);
        resp.delay = resp.delay.min(relay::MAX_DELAY);
        let slow = !resp.delay.is_zero();
        let big = resp.body_len() > OFFLOAD_BYTES;
        // A deliberately slow answer waits on a thread of its own, so that
        // it delays only itself and never the other endpoints; so is a big
        // one written. Should too many be out already, it goes at once.
        let slot = if slow || big { Detached::take() } else { None };
        let Some(slot) = slot else {
            finish(rq, &req, resp, close);
            return drop(inflight);
        };
        // A big one goes straight to the client, not through the front.
        let client = conn.filter(|_| big).and_then(|id| self.clients.get(id));
        let spawned = std::thread::Builder::new()
            .name("http-answer".into())
            .spawn(move || {
                std::thread::sleep(resp.delay);
                match client {
                    Some(client) => finish_direct(rq, &req, &resp, close, &client),
                    None => finish(rq, &req, resp, close),
                }
                drop((slot, inflight));
            });
        if let Err(e) = spawned {
            Event::new(Level::Error, "http.error")
                .str("error", &format!("cannot start a delay thread: {e}"))
                .emit();
        }
    }
}

/// A request that did not come through the front (another local process
/// found the internal socket): refused. Its body, if it declared one, is
/// never read or dropped, since tiny_http would allocate its whole declared
/// length to discard it.
fn bypassed(rq: tiny_http::Request) {
    if rq.body_length().unwrap_or(0) > 0 {
        std::mem::forget(rq);
    } else {
        let mut resp = Response::error(403, "connect to the server's TCP address");
        let mut writer = rq.into_writer();
        resp.headers.push(("X-Request-Id", String::new()));
        let _ = wire::write(&mut *writer, "GET", &resp, Persistence::Close);
    }
    Event::new(Level::Warn, "http.refused")
        .str("reason", "request bypassed the front")
        .emit();
}

/// Starts a new accept thread whenever one dies (reported by a worker, or
/// seen as a panic in tiny_http's accept code), backing off while it keeps
/// failing, e.g. while descriptors are exhausted.
fn supervise(shared: &Arc<Shared>, died: &Receiver<String>, stop: &Stop) {
    let mut panics_seen = guards::accept_panics();
    let mut backoff = Duration::from_millis(50);
    let mut last_death = Instant::now();
    while !stop.is_stopped() {
        let reason = match died.recv_timeout(Duration::from_millis(100)) {
            Ok(reason) => reason,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let panics = guards::accept_panics();
                if panics == panics_seen {
                    continue;
                }
                panics_seen = panics;
                "accept thread panicked (out of file descriptors?)".to_string()
            }
        };
        if last_death.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(50);
        }
        last_death = Instant::now();
        Event::new(Level::Error, "http.accept_failed")
            .str("error", &reason)
            .uint("retry_in_ms", backoff.as_millis() as u64)
            .emit();
        loop {
            if stop.wait(backoff) {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
            let restarted = shared
                .listener
                .try_clone()
                .and_then(|l| shared.start_generation(l));
            match restarted {
                Ok(()) => {
                    Event::new(Level::Warn, "http.listener_restarted")
                        .uint("generations", lock(&shared.generations).len() as u64)
                        .emit();
                    break;
                }
                Err(e) => Event::new(Level::Error, "http.accept_failed")
                    .str("error", &format!("restart failed: {e}"))
                    .uint("retry_in_ms", backoff.as_millis() as u64)
                    .emit(),
            }
        }
    }
}

/// Writes the answer back to the front. A streamed answer goes on writing
/// on a thread of its own (the route bounds how many).
fn finish(rq: tiny_http::Request, req: &Request, mut resp: Response, close: bool) {
    let persistence = persistence(&rq, close);
    let mut writer = rq.into_writer();
    let sent = wire::write(&mut *writer, &req.method, &resp, persistence);
    let Some(stream) = resp.stream.take() else {
        return;
    };
    if sent.is_err() || req.method == "HEAD" {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("http-stream".into())
        .spawn(move || stream(&mut *writer));
    if let Err(e) = spawned {
        Event::new(Level::Error, "http.error")
            .str("error", &format!("cannot start a stream thread: {e}"))
            .emit();
    }
}

/// How the client's connection goes on after this answer (the front keeps
/// an HTTP/1.0 client's connection only when it asked, and said so).
fn persistence(rq: &tiny_http::Request, close: bool) -> Persistence {
    match (close, *rq.http_version() == (1, 0)) {
        (true, _) => Persistence::Close,
        (false, true) => Persistence::KeepAlive10,
        (false, false) => Persistence::KeepAlive,
    }
}

/// Writes the answer straight to the client's connection, then tells the
/// front, which waits for that receipt before it uses the connection again.
fn finish_direct(
    rq: tiny_http::Request,
    req: &Request,
    resp: &Response,
    close: bool,
    client: &std::net::TcpStream,
) {
    let persistence = persistence(&rq, close);
    let sent = wire::write(&mut &*client, &req.method, resp, persistence);
    let sent = sent.map_or_else(|_| "failed".to_string(), |n| n.to_string());
    let receipt = format!(
        "HTTP/1.1 {} {}\r\n{}: {sent}\r\nContent-Length: 0\r\n\r\n",
        resp.status,
        wire::reason(resp.status),
        internal::SENT_HEADER,
    );
    let mut writer = rq.into_writer();
    let _ = writer
        .write_all(receipt.as_bytes())
        .and_then(|()| writer.flush());
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
