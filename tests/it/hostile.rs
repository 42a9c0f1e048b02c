//! Hostile and malformed requests: none may crash a server or stall others.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

/// Both servers, the metrics one fed by the data one.
fn servers() -> (Proc, Proc) {
    let ds = data_server(&["--switches", "8"]);
    let ms = metrics_server(&format!("http://{}/counters", ds.addr), &[]);
    eventually("a first snapshot", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 200).then_some(())
    });
    (ds, ms)
}

/// A normal request is answered quickly, and the process still runs.
fn assert_serving(p: &mut Proc, what: &str) {
    let t = Instant::now();
    let r = get(p.addr, "/health");
    assert_eq!(r.status, 200, "after {what}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "after {what}: took {:?}",
        t.elapsed()
    );
    assert!(p.is_running(), "died after {what}");
}

/// Sends bytes and reads whatever comes back (possibly nothing) for a while.
fn throw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn garbage_bytes_and_broken_request_lines_get_json_answers() {
    let (mut ds, mut ms) = servers();
    let mut rng = fastrand::Rng::with_seed(11);
    let random: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("random bytes", random, 400),
        ("nul bytes", vec![0; 1024], 400),
        (
            "a TLS hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n".to_vec(),
            400,
        ),
        ("no version", b"GET /health\r\n\r\n".to_vec(), 400),
        ("bad version", b"GET /health HTTP/9.9\r\n\r\n".to_vec(), 505),
        ("HTTP/2.0", b"GET /health HTTP/2.0\r\n\r\n".to_vec(), 505),
        (
            "h2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            505,
        ),
        ("lone LF", b"GET /health HTTP/1.1\n\n".to_vec(), 200),
        (
            "cut short",
            b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec(),
            400,
        ),
        (
            "binary path",
            b"GET /\xff\xfe\x00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "header without colon",
            b"GET /health HTTP/1.1\r\nnonsense\r\n\r\n".to_vec(),
            400,
        ),
        (
            "negative content-length",
            b"GET /health HTTP/1.1\r\nContent-Length: -5\r\n\r\n".to_vec(),
            400,
        ),
        (
            "content-length abc",
            b"GET /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunked body",
            b"POST /stats HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            413,
        ),
        (
            "odd expectation",
            b"GET /health HTTP/1.1\r\nExpect: teapot\r\n\r\n".to_vec(),
            417,
        ),
        (
            "http/1.0 no host",
            b"GET /health HTTP/1.0\r\n\r\n".to_vec(),
            200,
        ),
    ];
    for (what, bytes, status) in &cases {
        for p in [&mut ds, &mut ms] {
            let answer = throw(p.addr, bytes);
            let Some(r) = parse_reply(&answer) else {
                panic!("{what}: no answer: {:?}", String::from_utf8_lossy(&answer));
            };
            assert_eq!(r.status, *status, "{what}");
            if *status != 200 {
                assert!(r.json()["error"].is_string(), "{what}: JSON error");
                assert_eq!(r.header("connection"), Some("close"), "{what}");
                assert!(r.header("x-request-id").is_some(), "{what}");
            }
            assert_serving(p, what);
        }
    }
}

#[test]
fn http2_request_lines_cannot_wedge_connections() {
    // tiny_http answered `HTTP/2.0` with a 505 that waited forever for its
    // turn to write: each such request held a thread and a connection slot
    // for good, so a cap's worth of them left the server deaf.
    let ms = metrics_server("http://127.0.0.1:9/counters", &["--max-connections", "16"]);
    // Warm: one request, so its pooled connection to tiny_http (and that
    // connection's thread) is part of the baseline.
    assert_eq!(get(ms.addr, "/health").status, 200);
    let baseline = ms.threads();
    for _ in 0..40 {
        let mut s = TcpStream::connect(ms.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_reply(&mut s).status, 505);
    }
    let t = Instant::now();
    assert_eq!(get(ms.addr, "/health").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    eventually("threads back to normal", || {
        (ms.threads() <= baseline + 4).then_some(())
    });
}

#[test]
fn huge_headers_and_urls() {
    let (mut ds, mut ms) = servers();
    let big = "x".repeat(64 * 1024);
    let long_query = format!(
        "/telemetry/GetMetric?switch_id={}&metric=y",
        "a".repeat(100_000)
    );
    for p in [&mut ds, &mut ms] {
        let r = get_with(p.addr, "/health", &[("X-Big", &big)]);
        assert_eq!(r.status, 431);
        assert_serving(p, "a 64 KiB header");
        let many: Vec<(String, String)> =
            (0..1000).map(|i| (format!("X-H{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(get_with(p.addr, "/health", &many).status, 431);
        assert_serving(p, "a thousand headers");
        assert_eq!(get(p.addr, &long_query).status, 414);
        assert_serving(p, "a 100 KB URL");
    }
}

#[test]
fn idle_and_half_open_connections_do_not_stall_others() {
    // Connections are opened one by one with a request in between: a burst
    // of them at once trips tiny_http's thread-pool accounting (connections
    // queued behind busy threads), which the HTTP-front work fixes and tests.
    let (mut ds, mut ms) = servers();
    for p in [&mut ds, &mut ms] {
        let mut held = Vec::new();
        for i in 0..60 {
            let mut s = TcpStream::connect(p.addr).unwrap();
            if i % 2 == 0 {
                // Half a request line, then silence (slowloris).
                s.write_all(b"GET /telemetry/ListMe").unwrap();
            }
            held.push(s);
            assert_serving(p, &format!("{} idle connections", i + 1));
        }
        drop(held);
        assert_serving(p, "the idle connections closed");
    }
}

#[test]
fn hostile_query_strings_get_json_400s() {
    let (_ds, ms) = servers();
    for q in [
        "switch_id=%&metric=x",
        "switch_id=%G1&metric=x",
        "switch_id=%FF%FE&metric=x",
        "switch_id=sw-000&metric=%C3",
    ] {
        let r = get(ms.addr, &format!("/telemetry/GetMetric?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("malformed query string"),
            "{q}"
        );
    }
    // Injection attempts come back as data, safely escaped in JSON.
    let r = get(
        ms.addr,
        "/telemetry/GetMetric?switch_id=%22%7D%0A%3Cscript%3E&metric=x",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "unknown switch_id: \"}\n<script>");
    let r = get(
        ms.addr,
        "/telemetry/GetMetric?&&&=&switch_id=sw-000&metric=cpu_util_pct",
    );
    assert_eq!(r.status, 200);
    // A second value is refused, not silently dropped.
    let r = get(
        ms.addr,
        "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct&switch_id=other",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "repeated query parameter: switch_id");
}

#[test]
fn many_parallel_clients_are_all_served() {
    let (_ds, ms) = servers();
    let addr = ms.addr;
    let workers: Vec<_> = (0..32)
        .map(|i| {
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let path = if i % 2 == 0 {
                        "/telemetry/GetMetric?switch_id=sw-001&metric=temperature_c"
                    } else {
                        "/telemetry/ListMetrics"
                    };
                    assert_eq!(get(addr, path).status, 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let s = get(addr, "/stats").json();
    let gm = s["endpoints"]["/telemetry/GetMetric"]["count"]
        .as_u64()
        .unwrap();
    let lm = s["endpoints"]["/telemetry/ListMetrics"]["count"]
        .as_u64()
        .unwrap();
    assert_eq!(gm, 320);
    assert!(lm >= 320);
}

#[test]
fn declared_bodies_can_neither_crash_nor_pin_a_worker() {
    let (mut ds, mut ms) = servers();
    for p in [&mut ds, &mut ms] {
        let mut held = Vec::new();
        // A body claimed far beyond memory, and modest ones that never come:
        // more of them than there are workers.
        let huge = ["99999999999", "18446744073709551615"];
        for len in huge.into_iter().chain(std::iter::repeat_n("5000", 34)) {
            let mut s = TcpStream::connect(p.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let req =
                format!("POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\nabc");
            s.write_all(req.as_bytes()).unwrap();
            let r = read_reply(&mut s);
            assert_eq!(r.status, 413, "Content-Length: {len}");
            assert_eq!(r.json()["error"], "request body not accepted");
            held.push(s);
        }
        assert_serving(p, "declared bodies");
    }
    // A small body (tiny_http reads it itself) is just a 405.
    let r = raw(
        ms.addr,
        b"POST /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(r.status, 405);
}
