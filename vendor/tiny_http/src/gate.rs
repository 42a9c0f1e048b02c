//! The connection caps: how many connections may be open at once, in all
//! and from one client address, and how a connection over a cap is turned
//! away (0.12 had no cap: each connection takes a thread, so a flood of
//! them took the process's threads and descriptors).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::limits::{Limits, Refusal};

/// Counts open connections against `Limits::max_connections` and
/// `Limits::max_connections_per_ip`.
pub(crate) struct Gate {
    open: AtomicUsize,
    /// Open connections per client address (IPv6: per /64, what one host
    /// usually has to itself), when there is a per-address cap.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max: Option<usize>,
    max_per_ip: Option<usize>,
}

/// One admitted connection; it stops counting when dropped.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    ip: Option<IpAddr>,
}

impl Gate {
    pub(crate) fn new(limits: &Limits) -> Arc<Gate> {
        Arc::new(Gate {
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            max: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
        })
    }

    /// Admits a connection from `peer`, or says why not.
    pub(crate) fn enter(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
    ) -> Result<Ticket, &'static str> {
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        let mut ticket = Ticket {
            gate: self.clone(),
            ip: None,
        };
        if self.max.map_or(false, |max| open >= max) {
            return Err("too many connections");
        }
        if let (Some(max), Some(peer)) = (self.max_per_ip, peer) {
            let ip = client_key(peer.ip());
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= max {
                return Err("too many connections from this address");
            }
            *count += 1;
            ticket.ip = Some(ip);
        }
        Ok(ticket)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut per_ip = self.gate.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

/// IPv4 addresses as they are; IPv6 ones by their /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut bits = v6.octets();
                bits[8..].fill(0);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

/// Connections being turned away at once, at most; past that one is
/// answered without waiting and closed at once.
const TURNING_AWAY_MAX: usize = 64;
static TURNING_AWAY: AtomicUsize = AtomicUsize::new(0);

/// A connection being turned away: its socket, or a TLS session on it.
pub(crate) trait Farewell: Read + Write + Send {
    /// Sets the read and the write timeout.
    fn set_timeouts(&mut self, timeout: Duration) -> std::io::Result<()>;
    /// Ends what we send (with TLS, after a close_notify).
    fn close_write(&mut self);
}

impl Farewell for Connection {
    fn set_timeouts(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.set_write_timeout(Some(timeout))?;
        self.set_read_timeout(Some(timeout))
    }

    fn close_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Starts TLS on a connection being turned away (the handshake happens
/// on the turn-away thread, within its second).
pub(crate) type Secure = Box<dyn FnOnce(Connection) -> std::io::Result<Box<dyn Farewell>> + Send>;

/// Answers a connection over a cap with 503 and closes it, off the accept
/// thread. The client's request is read and dropped for up to a second
/// first: closing with it unread would reset the connection, and the reset
/// could destroy the answer before the client reads it. On a TLS listener
/// (`secure`) the answer goes through a handshake on that thread; when too
/// many are being turned away already, a TLS connection is just closed.
pub(crate) fn turn_away(
    sock: Connection,
    peer: Option<SocketAddr>,
    why: &'static str,
    limits: &Limits,
    secure: Option<Secure>,
) {
    let answer = Refusal {
        status: 503,
        message: why,
        remote_addr: peer,
        headers: &[],
    }
    .render(limits);
    if TURNING_AWAY.fetch_add(1, Ordering::AcqRel) >= TURNING_AWAY_MAX {
        TURNING_AWAY.fetch_sub(1, Ordering::AcqRel);
        if secure.is_none() {
            let mut sock = sock;
            let _ = sock.set_write_timeout(Some(Duration::from_millis(1)));
            let _ = sock.write_all(&answer);
        }
        return;
    }
    // A TLS handshake needs more stack than a plain write.
    let stack = if secure.is_some() { 256 } else { 64 } * 1024;
    let spawned = thread::Builder::new()
        .name("tiny-http-turn-away".into())
        .stack_size(stack)
        .spawn(move || {
            match secure {
                None => linger(Box::new(sock), &answer),
                Some(secure) => {
                    if let Ok(stream) = secure(sock) {
                        linger(stream, &answer);
                    }
                }
            }
            TURNING_AWAY.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        TURNING_AWAY.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Writes `answer`, then reads and drops what the client sends for up to
/// a second (or until it closes).
fn linger(mut sock: Box<dyn Farewell>, answer: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let _ = sock.set_timeouts(Duration::from_secs(1));
    let _ = sock.write_all(answer).and_then(|()| sock.flush());
    sock.close_write();
    let mut scratch = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || sock.set_timeouts(left).is_err() {
            break;
        }
        match sock.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
