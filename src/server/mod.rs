//! The HTTP server both binaries run: a tiny_http listener, a pool of worker
//! threads feeding requests through the [`front::Front`] to a [`Handler`],
//! one `http.access` log line per request written after the answer is sent,
//! and a clean, bounded stop.
//!
//! The listener carries what tiny_http's accepted sockets inherit on Linux:
//! `TCP_NODELAY` (no 40 ms Nagle stalls) and per-call read and write
//! timeouts (`IDLE_TIMEOUT_MS`: an idle or non-reading client is let go).
//! The open-file limit is set from `MAX_CONNECTIONS`, so beyond it new
//! connections wait in the kernel's queue. tiny_http's accept thread dies on
//! the first accept error (running out of descriptors is one); a supervisor
//! then starts a new one on the same listener, so the server never goes
//! deaf. The other tiny_http workarounds are in [`guards`].

pub mod front;
pub mod guards;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
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
use guards::{DRAIN_MAX, Detached, INLINE_BODY_MAX};
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

/// Descriptors kept free beyond two per connection: the poller's upstream
/// connection, the nudger, a listener copy for a restart, log and /proc.
const SPARE_FDS: u64 = 64;

/// What every worker of every generation shares.
struct Shared {
    handler: Arc<dyn Handler>,
    front: Front,
    threads: usize,
    stopping: AtomicBool,
    /// Our own copy of the listener, to start a new accept thread on.
    listener: TcpListener,
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
    /// Connections with an answer in progress, by client address, in
    /// shards (see [`Shared::dispatch`]).
    lanes: Box<[Mutex<HashMap<SocketAddr, Lane>>]>,
}

/// Answers larger than this are written off the worker pool.
const OFFLOAD_BYTES: usize = 64 * 1024;

/// A worker's claim on a connection's lane, released when its answer has
/// been written (see [`Shared::dispatch`]).
struct LaneGuard {
    shared: Arc<Shared>,
    remote: SocketAddr,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        let mut lanes = lock(self.shared.lane_shard(self.remote));
        if let Some(lane) = lanes.get_mut(&self.remote) {
            lane.busy = lane.busy.saturating_sub(1);
            if lane.busy == 0 && lane.queue.is_empty() && !lane.drainer {
                lanes.remove(&self.remote);
            }
        }
    }
}

/// One connection's answers in progress.
#[derive(Default)]
struct Lane {
    /// Workers answering its requests right now.
    busy: u32,
    /// A thread of its own is answering the queued ones, in order.
    drainer: bool,
    queue: VecDeque<tiny_http::Request>,
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    workers_done: Receiver<()>,
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
        sys::set_listener_options(&listener, front.limits().idle_timeout)?;
        let fd_limit = cap_connections(front.limits().max_connections);
        let (alive_tx, workers_done) = sync_channel(0);
        let (died_tx, died_rx) = channel();
        let shared = Arc::new(Shared {
            handler,
            front,
            threads: threads.max(1),
            stopping: AtomicBool::new(false),
            listener: listener.try_clone()?,
            generations: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            workers_alive: Mutex::new(Some(alive_tx)),
            accept_died: Mutex::new(died_tx),
            last_request_ms: AtomicU64::new(0),
            born: Instant::now(),
            lanes: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
        });
        shared.start_generation(listener)?;
        let supervisor = spawn_with_stop("http-supervisor", {
            let shared = shared.clone();
            move |stop| supervise(&shared, &died_rx, stop)
        })?;
        let nudger = spawn_with_stop("http-nudger", {
            let shared = shared.clone();
            move |stop| guards::nudge(addr, stop, || shared.since_last_request())
        })?;
        Ok(Server {
            shared,
            workers_done,
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
            .uint("max_connections", limits.max_connections as u64)
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

    /// Lets every worker finish the request it is on, then joins them;
    /// waits at most `grace` (a client that stopped reading must not hold
    /// the process). Returns how many workers were still busy.
    pub fn stop(self, grace: Duration) -> usize {
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
        let deadline = Instant::now() + grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.workers_done.recv_timeout(left) {
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    return lock(&shared.workers)
                        .iter()
                        .filter(|w| !w.is_finished())
                        .count();
                }
                Ok(()) => {}
            }
        }
        for w in lock(&shared.workers).drain(..) {
            let _ = w.join();
        }
        0
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

/// Sets the soft open-file limit to what `max` connections need (two
/// descriptors each in tiny_http) plus spares; returns the limit set.
fn cap_connections(max: usize) -> Result<u64, String> {
    let open = sys::open_fds().map_err(|e| e.to_string())?;
    sys::set_nofile_soft(open + 2 * max as u64 + SPARE_FDS).map_err(|e| e.to_string())
}

impl Shared {
    /// Starts a tiny_http server (its own accept thread) on `listener`, with
    /// a full set of workers.
    fn start_generation(self: &Arc<Self>, listener: TcpListener) -> io::Result<()> {
        let server = tiny_http::Server::from_listener(listener, None)
            .map(Arc::new)
            .map_err(|e| io::Error::other(e.to_string()))?;
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
                    self.dispatch(rq);
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

    /// Serves a request on this worker, unless its connection already has
    /// an answer in progress (a pipelining client). tiny_http writes a
    /// connection's answers in order, so a later one waits until the client
    /// has read the earlier ones, for as long as it likes: a client that
    /// pipelines and never reads would pin every worker. Its later requests
    /// are queued instead, and one thread of its own (bounded in number)
    /// answers them in order. Should none be free, the worker does.
    fn dispatch(self: &Arc<Self>, rq: tiny_http::Request) {
        let Some(remote) = rq.remote_addr().copied() else {
            return self.serve(rq, None);
        };
        let rq = {
            let mut lanes = lock(self.lane_shard(remote));
            let lane = lanes.entry(remote).or_default();
            if lane.busy > 0 || lane.drainer {
                lane.queue.push_back(rq);
                if lane.drainer {
                    return;
                }
                match Detached::take() {
                    Some(slot) => {
                        lane.drainer = true;
                        drop(lanes);
                        return self.spawn_drainer(remote, slot);
                    }
                    // No thread to spare: this worker answers, in order.
                    None => match lane.queue.pop_front() {
                        Some(rq) => {
                            lane.busy += 1;
                            rq
                        }
                        None => return,
                    },
                }
            } else {
                lane.busy += 1;
                rq
            }
        };
        let guard = LaneGuard {
            shared: self.clone(),
            remote,
        };
        self.serve(rq, Some(guard));
    }

    fn lane_shard(&self, remote: SocketAddr) -> &Mutex<HashMap<SocketAddr, Lane>> {
        &self.lanes[front::connection_slot(remote, self.lanes.len())]
    }

    fn spawn_drainer(self: &Arc<Self>, remote: SocketAddr, slot: Detached) {
        let shared = self.clone();
        let spawned = std::thread::Builder::new()
            .name("http-lane".into())
            .spawn(move || {
                loop {
                    let next = {
                        let mut lanes = lock(shared.lane_shard(remote));
                        let Some(lane) = lanes.get_mut(&remote) else {
                            break;
                        };
                        match lane.queue.pop_front() {
                            Some(rq) => rq,
                            None => {
                                lane.drainer = false;
                                if lane.busy == 0 {
                                    lanes.remove(&remote);
                                }
                                break;
                            }
                        }
                    };
                    shared.serve(next, None);
                }
                drop(slot);
            });
        if let Err(e) = spawned {
            // The queued requests are dropped (tiny_http answers them 500).
            lock(self.lane_shard(remote)).remove(&remote);
            Event::new(Level::Error, "http.error")
                .str("error", &format!("cannot start a thread: {e}"))
                .emit();
        }
    }

    /// Answers one request. `lane` is set when a worker serves it: the
    /// answer is then written off the worker if it may take long (a delay,
    /// or a body over [`OFFLOAD_BYTES`] that a client which does not read
    /// could leave half-written until the write timeout), and the lane is
    /// released once it is written.
    fn serve(&self, rq: tiny_http::Request, lane: Option<LaneGuard>) {
        let started = Instant::now();
        let ms = started.duration_since(self.born).as_millis() as u64;
        // One store per request, skipped when another made it this millisecond.
        if self.last_request_ms.load(Ordering::Relaxed) != ms {
            self.last_request_ms.store(ms, Ordering::Relaxed);
        }
        let req = Request::from_tiny(&rq);
        let declared = rq.body_length().unwrap_or(0);
        if declared > INLINE_BODY_MAX {
            self.refuse_body(rq, req, declared, started);
            return;
        }
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
        let slow = !resp.delay.is_zero();
        let big = lane.is_some() && resp.body_len() > OFFLOAD_BYTES;
        // A deliberately slow answer waits on a thread of its own, so that
        // it delays only itself and never the other endpoints; so is a big
        // one written. Should too many be out already, it goes at once.
        let slot = if slow || big { Detached::take() } else { None };
        let Some(slot) = slot else {
            finish(rq, &req, resp, close, started, self.handler.as_ref());
            return drop((lane, inflight));
        };
        let handler = self.handler.clone();
        let spawned = std::thread::Builder::new()
            .name("http-answer".into())
            .spawn(move || {
                std::thread::sleep(resp.delay);
                finish(rq, &req, resp, close, started, handler.as_ref());
                drop((lane, slot, inflight));
            });
        if let Err(e) = spawned {
            Event::new(Level::Error, "http.error")
                .str("error", &format!("cannot start a delay thread: {e}"))
                .emit();
        }
    }

    /// No endpoint takes a body. A modest one is refused like any answer,
    /// but off the worker, since dropping the request drains the body and
    /// that waits on the client. A huge one cannot be drained safely at all
    /// (see `guards::refuse_body`).
    fn refuse_body(&self, rq: tiny_http::Request, req: Request, declared: usize, started: Instant) {
        let slot = if declared <= DRAIN_MAX {
            Detached::take()
        } else {
            None
        };
        let Some(slot) = slot else {
            let bytes = guards::refuse_body(rq, &req);
            self.handler.observe(&req, 413, started.elapsed());
            access_log(&req, 413, bytes, started.elapsed(), None);
            return;
        };
        let mut resp = Response::error(413, "request body not accepted");
        self.front.seal(&req, &mut resp, true);
        let handler = self.handler.clone();
        let spawned = std::thread::Builder::new()
            .name("http-drain".into())
            .spawn(move || {
                let sent = guards::respond_then_drain(rq, &resp);
                handler.observe(&req, 413, started.elapsed());
                let bytes = *sent.as_ref().unwrap_or(&0);
                access_log(&req, 413, bytes, started.elapsed(), sent.err());
                drop(slot);
            });
        if let Err(e) = spawned {
            Event::new(Level::Error, "http.error")
                .str("error", &format!("cannot start a drain thread: {e}"))
                .emit();
        }
    }
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

/// Writes the answer, then records and logs the request. A streamed answer
/// goes on writing on a thread of its own (the route bounds how many).
fn finish(
    rq: tiny_http::Request,
    req: &Request,
    mut resp: Response,
    close: bool,
    started: Instant,
    handler: &dyn Handler,
) {
    let http10 = *rq.http_version() == (1, 0);
    let persistence = match (close, http10) {
        (true, _) => Persistence::Close,
        // tiny_http keeps an HTTP/1.0 connection only if it asked to.
        (false, true) if asked_keep_alive(req) => Persistence::KeepAlive10,
        (false, true) => Persistence::Close,
        (false, false) => Persistence::KeepAlive,
    };
    let status = resp.status;
    let mut writer = rq.into_writer();
    let sent = wire::write(&mut *writer, &req.method, &resp, persistence);
    let stream = resp.stream.take();
    let elapsed = started.elapsed();
    handler.observe(req, status, elapsed);
    let bytes = *sent.as_ref().unwrap_or(&0);
    let failed = sent.is_err();
    access_log(req, status, bytes, elapsed, sent.err());
    let Some(stream) = stream.filter(|_| !failed && req.method != "HEAD") else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("http-stream".into())
        .spawn(move || stream(&mut *writer));
    if let Err(e) = spawned {
        Event::new(Level::Error, "http.error")
            .str("error", &format!("cannot start a stream thread: {e}"))
            .emit();
    }
}

fn asked_keep_alive(req: &Request) -> bool {
    req.headers_named("Connection").any(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"))
    })
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
