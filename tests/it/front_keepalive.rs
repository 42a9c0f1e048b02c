//! tiny_http's pool starvation: a burst of keep-alive clients must all be
//! answered promptly, on every fresh start.

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::support::*;

/// Opens `clients` keep-alive connections at once; each sends requests in a
/// loop (reconnecting when asked to) until `run` has passed. Returns, per
/// client, when its first answer came, counted from the common start.
fn burst(addr: std::net::SocketAddr, clients: usize, run: Duration) -> Vec<Option<Duration>> {
    let barrier = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut first = None;
                let mut conn: Option<TcpStream> = None;
                barrier.wait();
                let start = Instant::now();
                while start.elapsed() < run {
                    let s = match &mut conn {
                        Some(s) => s,
                        None => {
                            let s = TcpStream::connect(addr).unwrap();
                            s.set_read_timeout(Some(run)).unwrap();
                            conn.insert(s)
                        }
                    };
                    let sent = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
                    let reply = sent.ok().and_then(|()| try_read_reply(s));
                    match reply {
                        Some(r) => {
                            assert_eq!(r.status, 200);
                            first.get_or_insert(start.elapsed());
                            if r.header("connection") == Some("close") {
                                conn = None;
                            }
                        }
                        None => conn = None,
                    }
                }
                first
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn a_hundred_keepalive_clients_are_all_answered_within_a_second() {
    // Every fresh start: three of them in a row.
    for round in 0..3 {
        let ms = metrics_server("http://127.0.0.1:9/counters", &["--poll-ms", "60000"]);
        let firsts = burst(ms.addr, 100, Duration::from_millis(1500));
        let served = firsts
            .iter()
            .filter(|f| f.is_some_and(|d| d < Duration::from_secs(1)))
            .count();
        let slowest = firsts.iter().flatten().max();
        let mut sorted: Vec<u128> = firsts
            .iter()
            .map(|f| f.map_or(9999, |d| d.as_millis()))
            .collect();
        sorted.sort();
        eprintln!("round {round}: first-answer ms {:?}", &sorted[..]);
        assert_eq!(
            served, 100,
            "round {round}: {served}/100 answered within 1 s (slowest {slowest:?})"
        );
    }
}
