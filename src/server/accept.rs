//! Taking client connections: the accept loop, the connection cap
//! (`MAX_CONNECTIONS`: beyond it a client is answered 503 at once, and its
//! connection closed a moment later by [`closer`]), and the threads that
//! serve connections, reused from one connection to the next.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::relay::{self, Relay};
use super::wire::{self, Persistence};
use crate::http::Response;
use crate::log::{Event, Level};

/// Per-connection threads need little stack: buffers live on the heap.
const CONNECTION_STACK: usize = 128 * 1024;

/// Accepts client connections until the relay stops. Errors (running out of
/// descriptors, say) are logged and retried with a growing pause: this
/// loop never ends on its own.
pub fn accept_loop(relay: &Arc<Relay>, listener: &TcpListener) {
    let mut pause = Duration::from_millis(10);
    loop {
        let accepted = listener.accept();
        if relay.stopping() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                pause = Duration::from_millis(10);
                admit(relay, stream, peer);
            }
            // The listener's read timeout also bounds accept(): nothing came.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                Event::new(Level::Error, "http.accept_failed")
                    .str("error", &e.to_string())
                    .uint("retry_in_ms", pause.as_millis() as u64)
                    .emit();
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Counts a connection as open until dropped.
struct Open(Arc<Relay>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves a new connection on a thread of its own, or answers 503 at once
/// when `MAX_CONNECTIONS` are open already.
fn admit(relay: &Arc<Relay>, stream: TcpStream, peer: SocketAddr) {
    let open = Open(relay.clone());
    if relay.open.fetch_add(1, Ordering::SeqCst) >= relay.max_connections {
        drop(open);
        return refuse_connection(relay, stream, peer);
    }
    let job = Job { stream, peer, open };
    // A thread that is waiting for a connection takes it; else a new one.
    // Each queued connection has a waiting thread of its own: the count of
    // waiting threads is only lowered by a thread that takes one.
    let job = {
        let mut free = super::lock(&relay.free);
        if free.waiting > free.queue.len() {
            free.queue.push_back(job);
            relay.wake.notify_one();
            return;
        }
        job
    };
    let relay = relay.clone();
    let spawned = std::thread::Builder::new()
        .name("http-conn".into())
        .stack_size(CONNECTION_STACK)
        .spawn(move || serve_connections(&relay, job));
    if let Err(e) = spawned {
        Event::new(Level::Error, "http.error")
            .str("error", &format!("cannot start a connection thread: {e}"))
            .emit();
    }
}

/// A connection waiting for a thread.
pub(super) struct Job {
    stream: TcpStream,
    peer: SocketAddr,
    open: Open,
}

/// Connections waiting for a thread, and threads waiting for a connection.
#[derive(Default)]
pub(super) struct Free {
    queue: VecDeque<Job>,
    waiting: usize,
}

/// A connection thread waits this long for another connection before it
/// ends: threads are reused, since creating and ending one per connection
/// cost more than the rest of a short connection's work.
const THREAD_KEEP: Duration = Duration::from_secs(10);

/// Serves `job`, then every connection handed to this thread after it.
fn serve_connections(relay: &Relay, mut job: Job) {
    loop {
        relay::serve(relay, job.stream, job.peer);
        drop(job.open);
        match next_job(relay) {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// The next connection for a thread that is free, or `None` once it has
/// waited [`THREAD_KEEP`] in vain (or the server stops).
fn next_job(relay: &Relay) -> Option<Job> {
    let deadline = Instant::now() + THREAD_KEEP;
    let mut free = super::lock(&relay.free);
    free.waiting += 1;
    loop {
        if let Some(job) = free.queue.pop_front() {
            free.waiting -= 1;
            return Some(job);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || relay.stopping() {
            free.waiting -= 1;
            return None;
        }
        free = relay
            .wake
            .wait_timeout(free, left)
            .map_or_else(|p| p.into_inner().0, |(guard, _)| guard);
    }
}

/// The answer to a connection over the cap, written without waiting; the
/// connection is then closed by [`closer`].
fn refuse_connection(relay: &Relay, stream: TcpStream, peer: SocketAddr) {
    let resp = Response::error(503, "too many connections").header("Retry-After", "1");
    let mut answer = Vec::new();
    let _ = wire::write(&mut answer, "GET", &resp, Persistence::Close);
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(&answer);
    let _ = stream.shutdown(Shutdown::Write);
    // Closing now, with the client's request unread, would reset the
    // connection and could destroy the answer before the client reads it.
    if let Ok(closing) = relay.closing.lock() {
        let _ = closing.try_send(stream);
    }
    Event::new(Level::Warn, "http.refused")
        .str("reason", "too many connections")
        .str("remote", &peer.to_string())
        .emit();
}

/// Connections refused at the cap, waiting to be closed, at most.
pub(super) const CLOSING_MAX: usize = 256;

/// How long a refused connection is given to read its answer.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// Closes refused connections once their clients have had the answer:
/// whatever they send meanwhile is read and dropped, without waiting.
pub(super) fn closer(incoming: Receiver<TcpStream>) {
    let mut pending: Vec<(TcpStream, Instant)> = Vec::new();
    let mut scratch = [0u8; 4096];
    loop {
        let next = if pending.is_empty() {
            incoming.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            incoming.recv_timeout(Duration::from_millis(50))
        };
        match next {
            Ok(stream) => pending.push((stream, Instant::now() + CLOSING_GRACE)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        pending.retain_mut(|(stream, deadline)| {
            loop {
                match stream.read(&mut scratch) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Instant::now() < *deadline;
                    }
                    Err(_) => return false,
                }
            }
        });
    }
}
