//! The few operating-system calls std does not expose, wrapped safely.
//!
//! The open-file limit is raised to what the connection cap needs; glibc
//! is told to hand large freed blocks back to the system. All
//! `unsafe` in the crate lives
//! here, each block with the reason it is sound. Linux only, like the
//! deployment target; elsewhere the calls report `Unsupported`.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Lets up to `backlog` connections wait to be accepted (the kernel caps
/// it at `net.core.somaxconn`). std's `bind` asks for 128: a burst of 500
/// clients overflowed that, and each connection the kernel dropped cost its
/// client a one-second retry.
pub fn set_listen_backlog(listener: &TcpListener, backlog: i32) -> io::Result<()> {
    // SAFETY: listen() on a socket that is already listening only changes
    // its backlog; an invalid descriptor yields EBADF.
    check(unsafe { libc::listen(listener.as_raw_fd(), backlog) })
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

/// Descriptors kept free beyond those of the connections: the poller's
/// upstream connection, log and /proc, a turned-away client or two.
const SPARE_FDS: u64 = 64;

/// Descriptors one client connection takes: its socket and the copy
/// tiny_http reads from.
const FDS_PER_CONNECTION: u64 = 2;

/// Raises the soft open-file limit to what `max` connections need plus
/// spares. Returns the limit set (or why not) and how many connections it
/// allows: `max`, or fewer if the hard limit is lower, so that the cap is
/// always reached before descriptors run out.
pub fn cap_connections(max: usize) -> (Result<u64, String>, usize) {
    let open = open_fds().unwrap_or(16);
    let wanted = open + FDS_PER_CONNECTION * max as u64 + SPARE_FDS;
    let limit = set_nofile_soft(wanted)
        .or_else(|e| nofile_limit().map(|(soft, _)| soft).map_err(|_| e))
        .map_err(|e| e.to_string());
    let allowed = match &limit {
        Ok(limit) => (limit.saturating_sub(open + SPARE_FDS) / FDS_PER_CONNECTION) as usize,
        Err(_) => max,
    };
    (limit, max.min(allowed.max(1)))
}

/// Keeps the process's memory from ratcheting up under glibc.
///
/// The big blocks metrics_server allocates (snapshot pieces, the upstream
/// body, a filtered answer, a `/metrics` block, each 128 KiB to tens of MB)
/// live for one swap or one request. glibc serves such a block with its own
/// `mmap`, unmapped when freed, but on each free it raises that threshold to
/// the freed block's size (up to 32 MiB): from then on blocks that size come
/// from the per-thread heaps, which keep what is freed. Measured at 100k
/// switches with `/metrics` scraped every 0.2 s through six swaps, RSS grew
/// to 200 MB that way; with the threshold pinned at glibc's own starting
/// value (128 KiB), which turns the raising off, it stayed at 28 MB, and
/// parse and request times did not change measurably. musl, the static
/// builds' allocator, maps large blocks this way already (a no-op there).
/// Call it first thing in `main`, before any thread starts.
pub fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; it takes no
        // pointers, and is called before any other thread allocates.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        let (limit, allowed) = cap_connections(100);
        assert!((1..=100).contains(&allowed));
        if let Ok(limit) = limit {
            assert!(allowed as u64 * FDS_PER_CONNECTION <= limit);
        }
    }

    #[test]
    fn the_listen_backlog_can_be_raised() {
        // Connections that complete without an accept(), 300 tried.
        let waiting = |raise: bool| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            if raise {
                set_listen_backlog(&listener, 4096).unwrap();
            }
            let addr = listener.local_addr().unwrap();
            let timeout = std::time::Duration::from_millis(10);
            let held: Vec<_> = (0..300)
                .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, timeout).ok())
                .collect();
            held.len()
        };
        let (std_default, raised) = (waiting(false), waiting(true));
        assert!(
            std_default <= 130 && raised >= 200,
            "{std_default} -> {raised}"
        );
    }

    #[test]
    fn nofile_limits_read_back() {
        let (soft, hard) = nofile_limit().unwrap();
        assert!(soft <= hard && soft > 0);
        assert!(open_fds().unwrap() >= 3);
    }
}
