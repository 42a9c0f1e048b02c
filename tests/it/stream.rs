//! GET /telemetry/stream: Server-Sent Events on the real binaries.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

/// Opens a stream and reads until `events` events arrived; returns the head
/// and the event ids.
fn events(addr: SocketAddr, extra: &str, events: usize) -> (String, Vec<String>) {
    let (head, found) = stream_events(addr, "", extra, events);
    (head, found.into_iter().map(|(id, _)| id).collect())
}

/// A stream request for `query`, sent; the answer is for the caller to read.
fn open_stream(addr: SocketAddr, query: &str) -> TcpStream {
    let mut s = connect(addr);
    let req = format!("GET /telemetry/stream?{query} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s
}

#[test]
fn one_event_per_snapshot_with_resume_and_a_cap() {
    let ds = data_server(&["--interval-sec", "0.3", "--switches", "5"]);
    let ms = metrics_server(
        &format!("http://{}/counters", ds.addr),
        &["--stream-max-subscribers", "8"],
    );
    eventually("a snapshot", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 200).then_some(())
    });
    let (head, ids) = events(ms.addr, "", 2);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Type: text/event-stream"));
    assert!(head.contains("Connection: close") && !head.contains("Content-Length"));
    assert_ne!(ids[0], ids[1], "each event is a new snapshot");
    // Resuming at the current snapshot: the first event is a newer one.
    let current = get(ms.addr, "/telemetry/ListMetrics").json()["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, ids) = events(ms.addr, &format!("Last-Event-ID: {current}\r\n"), 1);
    assert_ne!(ids[0], current);
    // A filtered stream.
    let mut s = open_stream(ms.addr, "fields=cpu_util_pct&switch_id=sw-001");
    let mut got = String::new();
    let mut chunk = [0u8; 8192];
    while !got.contains("\"items\":[{\"switch_id\":\"sw-001\",\"cpu_util_pct\":") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "{got}");
        got.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    assert!(got.contains("\"total\":1"), "{got}");
    drop(s);
    // Top-N and value filters, as ListMetrics takes them.
    let mut s = open_stream(
        ms.addr,
        "sort=-cpu_util_pct&limit=2&fields=cpu_util_pct&where=cpu_util_pct%3E%3D0",
    );
    let mut got = String::new();
    let data = loop {
        if let Some(line) = got
            .lines()
            .find(|l| l.starts_with("data: {") && l.ends_with('}'))
        {
            break line["data: ".len()..].to_string();
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "{got}");
        got.push_str(&String::from_utf8_lossy(&chunk[..n]));
    };
    let v: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        (v["total"].as_u64(), v["next_offset"].as_u64()),
        (Some(5), Some(2)),
        "{v}"
    );
    let top: Vec<f64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["cpu_util_pct"].as_f64().unwrap())
        .collect();
    assert!(top.len() == 2 && top[0] >= top[1], "{v}");
    drop(s);
    for bad in [
        "fields=nope",
        "sort=nope",
        "where=cpu_util_pct~1",
        "feilds=x",
        "limit=1&limit=2",
    ] {
        let r = get(ms.addr, &format!("/telemetry/stream?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
    }
}

#[test]
fn subscribers_are_capped_and_never_take_the_workers() {
    let ds = data_server(&["--interval-sec", "60"]);
    let ms = metrics_server(
        &format!("http://{}/counters", ds.addr),
        &["--stream-max-subscribers", "12"],
    );
    eventually("a snapshot", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 200).then_some(())
    });
    // More streams than workers, all open at once.
    let streams: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = TcpStream::connect(ms.addr).unwrap();
            s.write_all(b"GET /telemetry/stream HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut first = [0u8; 15];
            s.read_exact(&mut first).unwrap();
            assert_eq!(&first, b"HTTP/1.1 200 OK");
            s
        })
        .collect();
    let t = Instant::now();
    assert_eq!(get(ms.addr, "/health").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    let r = get(ms.addr, "/telemetry/stream");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "too many stream subscribers");
    drop(streams);
    let left = Instant::now();
    eventually("a seat freed", || {
        let mut s = TcpStream::connect(ms.addr).ok()?;
        s.write_all(b"GET /telemetry/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut first = [0u8; 15];
        s.read_exact(&mut first).ok()?;
        (&first == b"HTTP/1.1 200 OK").then_some(())
    });
    // Gone clients are noticed within seconds, not a heartbeat or two.
    assert!(
        left.elapsed() < Duration::from_secs(5),
        "{:?}",
        left.elapsed()
    );
}
