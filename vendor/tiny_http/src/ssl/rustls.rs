//! TLS through rustls 0.23 (0.12 used rustls 0.20, unmaintained).
//!
//! A connection's two halves (the reader and the writer tiny_http splits
//! every connection into) share one [`rustls::ServerConnection`] behind a
//! mutex, but each has its own handle on the socket, and the lock is never
//! held while waiting for the client: a reader blocked on a silent client
//! does not hold the writer up (0.12 wrapped a blocking `StreamOwned` in
//! the mutex, hence the "deadlock" hand-off its queue mode needed).
//!
//! The handshake is driven by the first read (or write) on the pool
//! thread, never on the accept thread, and must be over within
//! `Limits::head_timeout` (else `idle_timeout`) of the accept: a client
//! that connects and never finishes its hello is let go like a slow head.
//! Every later read gives up after the read timeout last set (the idle
//! timeout, or what is left of a head's deadline), however the client
//! spreads its records. A client that speaks plain HTTP to the port is
//! answered 400 in plain HTTP, through `Limits::on_refusal`, and closed.

use crate::connection::Connection;
use crate::gate::{Farewell, Secure};
use crate::limits::{Limits, Refusal};
use crate::util::refined_tcp_stream::Stream as RefinedStream;
use std::error::Error;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// What both halves of a connection share.
struct Session {
    conn: rustls::ServerConnection,
    /// When the handshake must be over.
    handshake_by: Option<Instant>,
    /// Bytes read from the socket that rustls could not take yet.
    pending: Vec<u8>,
    /// The first bytes from the client were looked at.
    sniffed: bool,
}

impl Session {
    /// Writes out whatever TLS records rustls has queued.
    fn send(&mut self, sock: &mut Connection) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(sock)? == 0 {
                return Err(ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Hands `bytes` (and any left over from before) to rustls; what it
    /// cannot take yet is kept for later.
    fn take(&mut self, bytes: &[u8], sock: &mut Connection) -> io::Result<()> {
        if !bytes.is_empty() {
            self.pending.extend_from_slice(bytes);
        }
        let mut at = 0;
        while at < self.pending.len() {
            let mut rest = &self.pending[at..];
            let before = rest.len();
            match self.conn.read_tls(&mut rest) {
                Ok(_) => {}
                // Its plaintext buffer is full: the application reads first.
                Err(e) if e.kind() == ErrorKind::Other => break,
                Err(e) => return Err(e),
            }
            let took = before - rest.len();
            at += took;
            if let Err(e) = self.conn.process_new_packets() {
                // Tell the client why (rustls queued an alert).
                let _ = self.send(sock);
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
            if took == 0 {
                break;
            }
        }
        self.pending.drain(..at);
        if self.pending.len() > MAX_PENDING {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "TLS records pile up unread",
            ));
        }
        Ok(())
    }
}

/// One half of a TLS connection.
pub(crate) struct RustlsStream {
    session: Arc<Mutex<Session>>,
    /// This half's own handle on the socket.
    sock: Connection,
    limits: Arc<Limits>,
    /// The read timeout set by tiny_http (idle, or a head's deadline).
    read_timeout: Option<Duration>,
}

fn lock(session: &Mutex<Session>) -> io::Result<MutexGuard<'_, Session>> {
    session
        .lock()
        .map_err(|_| io::Error::other("TLS session poisoned"))
}

/// How much is read from the socket at a time: one full TLS record.
const READ_CHUNK: usize = 16 * 1024 + 256;

/// Bytes from the client that rustls has not taken yet, at most.
const MAX_PENDING: usize = 4 * READ_CHUNK;

impl RustlsStream {
    pub(crate) fn peer_addr(&mut self) -> io::Result<Option<SocketAddr>> {
        self.sock.peer_addr()
    }

    pub(crate) fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read {
            if let Ok(mut session) = lock(&self.session) {
                if !session.conn.is_handshaking() {
                    session.conn.send_close_notify();
                    let _ = session.send(&mut self.sock);
                }
            }
        }
        self.sock.shutdown(how)
    }

    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            session: self.session.clone(),
            sock: self.sock.try_clone()?,
            limits: self.limits.clone(),
            read_timeout: self.read_timeout,
        })
    }

    pub(crate) fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout = timeout;
        Ok(())
    }

    /// Reads plaintext into `buf`; with an empty `buf`, only finishes the
    /// handshake. Returns 0 at the end of the stream.
    fn pump(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = Instant::now();
        loop {
            let wait = {
                let mut session = lock(&self.session)?;
                let handshaking = session.conn.is_handshaking();
                if buf.is_empty() && !handshaking {
                    return Ok(0);
                }
                if !buf.is_empty() {
                    match session.conn.reader().read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        // The peer closed without close_notify: the end.
                        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                        Err(e) => return Err(e),
                    }
                }
                session.send(&mut self.sock)?;
                let left = self
                    .read_timeout
                    .map(|t| t.saturating_sub(started.elapsed()));
                let left = match (handshaking, session.handshake_by) {
                    (true, Some(by)) => {
                        let by = by.saturating_duration_since(Instant::now());
                        Some(left.map_or(by, |left| left.min(by)))
                    }
                    _ => left,
                };
                if left == Some(Duration::ZERO) {
                    return Err(io::Error::new(ErrorKind::TimedOut, "TLS read timed out"));
                }
                left
            };
            // Both halves share the socket's timeout: set it every time.
            self.sock.set_read_timeout(wait)?;
            let mut chunk = [0u8; READ_CHUNK];
            let n = self.sock.read(&mut chunk)?;
            if n == 0 {
                return Ok(0);
            }
            let mut session = lock(&self.session)?;
            if !session.sniffed {
                session.sniffed = true;
                if chunk[0].is_ascii_alphabetic() {
                    drop(session);
                    return Err(self.refuse_plain_http());
                }
            }
            session.take(&chunk[..n], &mut self.sock)?;
        }
    }

    /// A plain HTTP request to a TLS port: answered in plain HTTP, so that
    /// `curl http://` says what is wrong instead of hanging or failing
    /// with a cryptic error.
    fn refuse_plain_http(&mut self) -> io::Error {
        let refusal = Refusal {
            status: 400,
            message: "plain HTTP sent to an HTTPS port",
            remote_addr: self.sock.peer_addr().ok().flatten(),
            headers: &[],
        };
        let answer = refusal.render(&self.limits);
        let _ = self.sock.write_all(&answer);
        let _ = self.sock.shutdown(Shutdown::Write);
        io::Error::new(ErrorKind::InvalidData, "plain HTTP on a TLS port")
    }
}

impl Read for RustlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.pump(buf)
    }
}

impl Write for RustlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.pump(&mut [])?;
        let mut session = lock(&self.session)?;
        let mut n = session.conn.writer().write(buf)?;
        session.send(&mut self.sock)?;
        if n == 0 {
            n = session.conn.writer().write(buf)?;
            session.send(&mut self.sock)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut session = lock(&self.session)?;
        session.conn.writer().flush()?;
        session.send(&mut self.sock)?;
        self.sock.flush()
    }
}

/// The server side's TLS configuration.
pub(crate) struct RustlsContext(Arc<rustls::ServerConfig>);

impl RustlsContext {
    /// From a PEM certificate chain and key (0.12's `SslConfig`), with the
    /// process's default crypto provider and TLS 1.2 and 1.3.
    pub(crate) fn from_pem(
        certificates: Vec<u8>,
        private_key: Zeroizing<Vec<u8>>,
    ) -> Result<Self, Box<dyn Error + Send + Sync>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let chain = CertificateDer::pem_slice_iter(&certificates).collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            return Err("no certificate in the PEM given".into());
        }
        let key = PrivateKeyDer::from_pem_slice(&private_key)?;
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .ok_or("no rustls crypto provider installed (CryptoProvider::install_default)")?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
        Ok(Self(Arc::new(config)))
    }

    /// A configuration the application built (its own certificate
    /// resolver, say, to rotate certificates without a restart).
    pub(crate) fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Self(config)
    }

    /// Starts a TLS session on an accepted socket; no I/O happens here.
    pub(crate) fn accept(
        &self,
        sock: Connection,
        limits: &Arc<Limits>,
    ) -> Result<RustlsStream, Box<dyn Error + Send + Sync + 'static>> {
        let within = limits.head_timeout.or(limits.idle_timeout);
        self.accept_within(sock, limits, within)
    }

    /// How a connection over a cap gets its 503 through TLS: a handshake
    /// that must be over within a second.
    pub(crate) fn farewell(&self, limits: &Arc<Limits>) -> Secure {
        let context = Self(self.0.clone());
        let limits = limits.clone();
        Box::new(move |sock| {
            let within = Some(Duration::from_secs(1));
            match context.accept_within(sock, &limits, within) {
                Ok(stream) => Ok(Box::new(stream) as Box<dyn Farewell>),
                Err(e) => Err(io::Error::other(e.to_string())),
            }
        })
    }

    fn accept_within(
        &self,
        sock: Connection,
        limits: &Arc<Limits>,
        within: Option<Duration>,
    ) -> Result<RustlsStream, Box<dyn Error + Send + Sync + 'static>> {
        let conn = rustls::ServerConnection::new(self.0.clone())?;
        let session = Session {
            conn,
            handshake_by: within.map(|w| Instant::now() + w),
            pending: Vec::new(),
            sniffed: false,
        };
        Ok(RustlsStream {
            session: Arc::new(Mutex::new(session)),
            sock,
            limits: limits.clone(),
            read_timeout: limits.idle_timeout,
        })
    }
}

impl Farewell for RustlsStream {
    fn set_timeouts(&mut self, timeout: Duration) -> io::Result<()> {
        self.read_timeout = Some(timeout);
        self.sock.set_write_timeout(Some(timeout))
    }

    fn close_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl From<RustlsStream> for RefinedStream {
    fn from(stream: RustlsStream) -> Self {
        Self::Https(stream)
    }
}
