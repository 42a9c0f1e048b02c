//! Rate limiting (429) and load shedding (503), and request ids.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::*;

#[test]
fn a_client_over_its_rate_gets_429_with_retry_after() {
    let ms = metrics_server(
        "http://127.0.0.1:9/counters",
        &["--rate-limit-rps", "2", "--rate-limit-burst", "5"],
    );
    let statuses: Vec<u16> = (0..8).map(|_| get(ms.addr, "/health").status).collect();
    assert_eq!(&statuses[..5], &[200; 5]);
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let r = get(ms.addr, "/health");
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait));
    assert_eq!(r.json()["error"], "rate limit exceeded");
}

#[test]
fn requests_beyond_max_inflight_get_503() {
    // One slot; a big answer that its client never reads holds it.
    let ds = data_server(&[
        "--switches",
        "300000",
        "--interval-sec",
        "60",
        "--max-inflight",
        "1",
    ]);
    let mut hog = TcpStream::connect(ds.addr).unwrap();
    hog.write_all(b"GET /counters HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 64];
    hog.read_exact(&mut head).unwrap();
    let r = get(ds.addr, "/health");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(hog);
    eventually("the slot back", || {
        (get(ds.addr, "/health").status == 200).then_some(())
    });
}

#[test]
fn request_ids_are_echoed_or_made_and_logged() {
    let ms = metrics_server("http://127.0.0.1:9/counters", &["--log-level", "debug"]);
    let r = get_with(ms.addr, "/health", &[("X-Request-Id", "trace-42.a:b")]);
    assert_eq!(r.header("x-request-id"), Some("trace-42.a:b"));
    ms.wait_log(|v| v["event"] == "http.access" && v["request_id"] == "trace-42.a:b");
    // The query is logged, without secrets.
    get(ms.addr, "/health?token=t0p&probe=1");
    ms.wait_log(|v| v["event"] == "http.access" && v["query"] == "token=REDACTED&probe=1");
    for hostile in ["", "has space", "<script>", &"x".repeat(65)] {
        let r = get_with(ms.addr, "/health", &[("X-Request-Id", hostile)]);
        let id = r.header("x-request-id").unwrap();
        assert_eq!(id.len(), 16, "replaced: {hostile:?} -> {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let a = get(ms.addr, "/nope")
        .header("x-request-id")
        .unwrap()
        .to_string();
    let b = get(ms.addr, "/nope")
        .header("x-request-id")
        .unwrap()
        .to_string();
    assert_ne!(a, b);
}
