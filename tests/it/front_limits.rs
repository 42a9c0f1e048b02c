//! The HTTP front's limits: Nagle, oversize requests, idle connections, the
//! connection cap, and saying `Connection: close`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn large_keepalive_answers_do_not_stall_on_nagle() {
    // 2,500 switches: a /counters body of ~110 KB.
    let ds = data_server(&["--switches", "2500", "--interval-sec", "60"]);
    let mut s = TcpStream::connect(ds.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let t = Instant::now();
    for _ in 0..25 {
        s.write_all(b"GET /counters HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let r = read_reply(&mut s);
        assert_eq!(r.status, 200);
        assert!(r.body.len() > 90_000);
        assert!(
            r.header("transfer-encoding").is_none(),
            "a length, never chunked"
        );
    }
    // A Nagle/delayed-ACK stall costs 40 ms per answer: 1 s for 25.
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn oversize_request_lines_and_headers_are_refused_and_closed() {
    let ms = metrics_server("http://127.0.0.1:9/counters", &[]);
    let long = format!("/health?{}", "a".repeat(9000));
    let r = get(ms.addr, &long);
    assert_eq!(r.status, 414);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.json()["error"], "request line too long");
    let big = "b".repeat(17 * 1024);
    let r = get_with(ms.addr, "/health", &[("X-Big", &big)]);
    assert_eq!(r.status, 431);
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn connection_close_is_answered_in_kind_and_keepalive_is_rotated() {
    let ms = metrics_server(
        "http://127.0.0.1:9/counters",
        &["--keepalive-requests", "3"],
    );
    let r = get(ms.addr, "/health"); // sends Connection: close
    assert_eq!(r.header("connection"), Some("close"));
    let mut s = TcpStream::connect(ms.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut said = Vec::new();
    for _ in 0..3 {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        said.push(read_reply(&mut s).header("connection").map(str::to_string));
    }
    assert_eq!(said, [None, None, Some("close".to_string())]);
    // HTTP/1.0 without keep-alive is told it ends; with it, that it holds.
    let r = raw(ms.addr, b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("connection"), Some("close"));
    let mut s = TcpStream::connect(ms.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut s).header("connection"), Some("keep-alive"));
}

#[test]
fn idle_connections_are_closed_after_the_timeout() {
    let ms = metrics_server("http://127.0.0.1:9/counters", &["--idle-timeout-ms", "300"]);
    let mut silent = TcpStream::connect(ms.addr).unwrap();
    let mut half = TcpStream::connect(ms.addr).unwrap();
    half.write_all(b"GET /heal").unwrap();
    for s in [&mut silent, &mut half] {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 64];
        // The server closes (0) or resets (error); either way, promptly.
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}

#[test]
fn beyond_max_connections_clients_wait_and_the_server_recovers() {
    let mut ms = metrics_server(
        "http://127.0.0.1:9/counters",
        &[
            "--max-connections",
            "16",
            "--idle-timeout-ms",
            "700",
            "--log-level",
            "debug",
        ],
    );
    let baseline = ms.threads();
    // Far more idle connections than the cap (and than the file limit it sets).
    // (connect_timeout: a full listen queue makes connect wait on SYN retries)
    let held: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect_timeout(&ms.addr, Duration::from_secs(1)).ok())
        .collect();
    assert!(
        held.len() >= 60,
        "the kernel queues connections beyond the cap"
    );
    // Once the idle ones time out, the server serves again, on its own:
    // each batch the file limit admits must idle out (700 ms) and the accept
    // thread's restart back off (at most 2 s), so allow a generous bound.
    let slow = Duration::from_secs(40);
    eventually_within("service after the cap", slow, || {
        let mut s = TcpStream::connect_timeout(&ms.addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        try_read_reply(&mut s).filter(|r| r.status == 200)
    });
    assert!(ms.is_running());
    ms.wait_log(|v| v["event"] == "http.accept_failed");
    ms.wait_log(|v| v["event"] == "http.listener_restarted");
    drop(held);
    // Superseded accept threads' workers and pools retire: threads go back
    // near where they started instead of growing with every restart.
    eventually_within("threads back to normal", slow, || {
        (ms.threads() <= baseline + 12).then_some(())
    });
}

#[test]
fn pipelining_clients_that_never_read_pin_no_worker() {
    // ~100 KB answers; each hog pipelines 50 of them and reads none.
    let rows: String = (0..2500).map(|i| format!("sw-{i:04},1.5,2.5\n")).collect();
    let up = FakeUpstream::start(Script::csv("\"p\"", &format!("switch_id,a,b\n{rows}")));
    let ms = metrics_server(&up.url(), &[]);
    eventually("a snapshot", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 200).then_some(())
    });
    let hogs: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(ms.addr).unwrap();
            let burst = "GET /telemetry/ListMetrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50);
            s.write_all(burst.as_bytes()).unwrap();
            s
        })
        .collect();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(ms.addr, "/health").status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(hogs);
}
