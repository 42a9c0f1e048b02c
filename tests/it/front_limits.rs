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
    // A connection silent between requests is closed without a word; a
    // head that does not arrive whole in time is answered 408, then closed.
    for (s, status) in [(&mut silent, None), (&mut half, Some(408))] {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let t = Instant::now();
        if let Some(status) = status {
            let r = read_reply(s);
            assert_eq!(r.status, status);
            assert_eq!(r.header("connection"), Some("close"));
        }
        let mut buf = [0u8; 64];
        // The server closes (0) or resets (error); either way, promptly.
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}

#[test]
fn beyond_max_connections_clients_get_503_and_service_resumes() {
    let ms = metrics_server(
        "http://127.0.0.1:9/counters",
        // Long enough that the held connections outlive a loaded test
        // machine's pause between opening them and the request over the cap.
        &["--max-connections", "16", "--idle-timeout-ms", "6000"],
    );
    // Warm: one request, so its pooled connection to tiny_http (and that
    // connection's thread) is part of the baseline.
    assert_eq!(get(ms.addr, "/health").status, 200);
    let baseline = ms.threads();
    for round in ["closed by the clients", "timed out by the server"] {
        // The cap's worth of silent connections, each proven accepted.
        let held: Vec<TcpStream> = (0..16)
            .map(|_| TcpStream::connect(ms.addr).unwrap())
            .collect();
        let over = raw(ms.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(over.status, 503, "{round}");
        assert_eq!(over.json()["error"], "too many connections");
        assert_eq!(over.header("retry-after"), Some("1"));
        assert_eq!(over.header("connection"), Some("close"));
        // Kept open by the client in the second round: the server must
        // close them itself.
        let kept = (round == "timed out by the server").then_some(held);
        eventually(round, || {
            (get(ms.addr, "/health").status == 200).then_some(())
        });
        drop(kept);
    }
    // Their threads are gone again.
    eventually("threads back to normal", || {
        (ms.threads() <= baseline + 4).then_some(())
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

#[test]
fn an_endless_header_is_cut_off_at_its_bound() {
    // tiny_http would buffer a header line for as long as it is sent.
    let ms = metrics_server("http://127.0.0.1:9/counters", &[]);
    let rss = ms.rss_kb();
    let mut s = TcpStream::connect(ms.addr).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nX-Endless: ").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 256 << 20 && s.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    // Refused once past 16 KiB: the server stops reading after a brief
    // linger, so what got out is at most that plus socket buffers.
    assert!(sent < 32 << 20, "{sent} bytes accepted");
    assert!(
        ms.rss_kb() < rss + 8 * 1024,
        "{} kB -> {} kB",
        rss,
        ms.rss_kb()
    );
    let log = ms.wait_log(|v| v["event"] == "http.access" && v["status"] == 431);
    assert!(log["request_id"].is_string());
    assert_eq!(get(ms.addr, "/health").status, 200);
}

#[test]
fn a_head_trickled_byte_by_byte_gets_408_within_the_idle_timeout() {
    // Each byte arrives well within the idle timeout, but the head as a
    // whole does not (slowloris).
    let ms = metrics_server("http://127.0.0.1:9/counters", &["--idle-timeout-ms", "600"]);
    let mut s = TcpStream::connect(ms.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let t = Instant::now();
    let mut answer = Vec::new();
    for b in b"GET /health HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        if s.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(5) {
            break;
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if parse_reply(&answer).is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = parse_reply(&answer).expect("an answer");
    assert_eq!(r.status, 408);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn huge_declared_bodies_are_refused_without_parking_threads() {
    // tiny_http allocates a declared body's whole length to discard it, so
    // such requests used to be leaked, each parking a thread for good.
    let ms = metrics_server("http://127.0.0.1:9/counters", &[]);
    // Warm: one request, so its pooled connection to tiny_http (and that
    // connection's thread) is part of the baseline.
    assert_eq!(get(ms.addr, "/health").status, 200);
    let baseline = ms.threads();
    for _ in 0..50 {
        let r = raw(
            ms.addr,
            b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc",
        );
        assert_eq!(r.status, 413);
        assert_eq!(r.header("connection"), Some("close"));
    }
    eventually("threads back to normal", || {
        (ms.threads() <= baseline + 4).then_some(())
    });
}

#[test]
fn one_address_cannot_take_every_connection() {
    let ms = metrics_server(
        "http://127.0.0.1:9/counters",
        &["--max-connections", "64", "--max-connections-per-ip", "4"],
    );
    let startup = ms.wait_log(|v| v["event"] == "startup");
    assert_eq!(startup["max_connections_per_ip"], 4);
    // Four connections from 127.0.0.1, each proven served.
    let held = hold_served(ms.addr, 4);
    let over = raw(ms.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(over.status, 503);
    assert_eq!(
        over.json()["error"],
        "too many connections from this address"
    );
    assert_eq!(over.header("retry-after"), Some("1"));
    assert!(over.header("x-request-id").is_some());
    ms.wait_log(|v| v["event"] == "http.access" && v["status"] == 503);
    drop(held);
    eventually("served again", || {
        (get(ms.addr, "/health").status == 200).then_some(())
    });
}
