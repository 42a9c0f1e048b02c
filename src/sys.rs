//! The few operating-system calls std does not expose, wrapped safely.
//!
//! tiny_http owns the sockets it accepts, so the only way to give them
//! `TCP_NODELAY` and read/write timeouts is to set those on the listening
//! socket, which Linux copies into every socket it accepts. The connection
//! cap is the process's open-file limit. All `unsafe` in the crate lives
//! here, each block with the reason it is sound. Linux only, like the
//! deployment target; elsewhere the calls report `Unsupported`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_opt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised T and its exact size is passed;
    // the kernel only reads that many bytes. An invalid fd yields EBADF.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
}

fn timeval(d: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

/// Sets on a listening socket what its accepted sockets inherit:
/// `TCP_NODELAY`, and per-call read and write timeouts (zero = none). Note
/// that the read timeout also bounds `accept()` on the listener itself.
pub fn set_listener_options(listener: &TcpListener, timeout: Duration) -> io::Result<()> {
    let fd = listener.as_raw_fd();
    set_opt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        &(1 as libc::c_int),
    )?;
    set_opt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeval(timeout))?;
    set_opt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &timeval(timeout))
}

/// Makes closing `stream` send a reset instead of a FIN, so that the closing
/// side keeps no TIME_WAIT state.
pub fn set_linger_zero(stream: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_opt(
        stream.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        &linger,
    )
}

/// Reads back an integer socket option (tests use it to check inheritance).
pub fn socket_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals; the kernel writes at most
    // `len` bytes into `value` and updates `len`.
    check(unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) })?;
    Ok(value)
}

/// The open-file limit: (soft, hard).
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live local the kernel fills in.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Sets the soft open-file limit (clamped to the hard one); returns it.
pub fn set_nofile_soft(soft: u64) -> io::Result<u64> {
    let (_, hard) = nofile_limit()?;
    let lim = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit read by the kernel.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(soft.min(hard))
}

/// How many file descriptors the process has open.
pub fn open_fds() -> io::Result<u64> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count() as u64)
}

/// The peer of socket `fd`, if it is a connected IPv4/IPv6 socket.
fn peer(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data for which all-zero is valid.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` is large enough for any address family and `len` says
    // so; the kernel writes at most `len` bytes.
    let ret = unsafe { libc::getpeername(fd, (&raw mut addr).cast(), &mut len) };
    if ret != 0 {
        return None;
    }
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: libc::sockaddr_in = unsafe { std::ptr::read((&raw const addr).cast()) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const addr).cast()) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

/// Shuts down and closes every socket of this process connected to `peer`;
/// returns how many it closed.
///
/// Only for connections whose Rust owners were deliberately leaked (see
/// `server::refuse_body`): nothing will ever use or close those descriptors
/// again, so closing them here cannot pull a socket from under live code.
pub fn close_leaked_connection(peer_addr: SocketAddr) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // Find every match first: once one is shut down, a peer that closes
    // makes `getpeername` fail on its twin.
    let matches: Vec<RawFd> = fds
        .into_iter()
        .filter(|&fd| peer(fd) == Some(peer_addr))
        .collect();
    for &fd in &matches {
        // SAFETY: `fd` is a socket connected to `peer_addr`, owned only by
        // leaked objects that never touch it again (see above).
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
            libc::close(fd);
        }
    }
    matches.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn accepted_sockets_inherit_the_listener_options() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_listener_options(&listener, Duration::from_millis(1500)).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let nodelay = socket_option(accepted.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY);
        assert_eq!(nodelay.unwrap(), 1);
        assert_eq!(
            accepted.read_timeout().unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            accepted.write_timeout().unwrap(),
            Some(Duration::from_millis(1500))
        );
        drop(client);
    }

    #[test]
    fn nofile_limits_read_back() {
        let (soft, hard) = nofile_limit().unwrap();
        assert!(soft <= hard && soft > 0);
        assert!(open_fds().unwrap() >= 3);
    }

    #[test]
    fn finds_a_connection_by_its_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(
            peer(accepted.as_raw_fd()),
            Some(client.local_addr().unwrap())
        );
        assert_eq!(peer(listener.as_raw_fd()), None);
        set_linger_zero(&client).unwrap();
        // Leak the accepted side, as the server does, then close it by peer.
        let leaked = std::mem::ManuallyDrop::new(accepted);
        assert_eq!(close_leaked_connection(client.local_addr().unwrap()), 1);
        let _ = leaked;
        let mut buf = [0u8; 1];
        use std::io::Read;
        let n = (&client).read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the peer saw the connection close");
    }
}
