//! `Accept-Encoding: gzip` on the real binaries, inflated by the system's
//! own `gzip -dc` (an independent decoder): every answer that may be
//! compressed is, inflates to the plain answer's bytes, and names itself
//! with a tag of its own.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

/// `data` inflated by `gzip -dc`, which also checks the CRC and length.
fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gzip on the PATH");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "gzip -dc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const GZIP: (&str, &str) = ("Accept-Encoding", "gzip, deflate, br");

/// The plain and gzip answers to `path` about the same snapshot (retried
/// if a new one arrived in between).
fn both(addr: std::net::SocketAddr, path: &str, extra: &[(&str, &str)]) -> (Reply, Reply) {
    eventually(&format!("{path}: two answers about one snapshot"), || {
        let plain = get_with(addr, path, extra);
        let mut headers = extra.to_vec();
        headers.push(GZIP);
        let gz = get_with(addr, path, &headers);
        let id = |r: &Reply| r.header("etag").map(|t| t.trim_matches('"').to_string());
        let same = id(&gz)
            .zip(id(&plain))
            .is_some_and(|(g, p)| g.strip_suffix("-gz") == Some(p.as_str()));
        same.then_some((plain, gz))
    })
}

/// Checks one pair; `age` blanks what legitimately differs between them.
fn check(path: &str, plain: &Reply, gz: &Reply, same: impl Fn(&[u8]) -> Vec<u8>) -> usize {
    assert_eq!(plain.status, 200, "{path}");
    assert_eq!(gz.status, 200, "{path}");
    assert_eq!(plain.header("content-encoding"), None, "{path}");
    assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
    assert!(
        gz.header("vary").unwrap_or("").contains("Accept-Encoding"),
        "{path}"
    );
    assert_eq!(
        gz.header("content-length").and_then(|l| l.parse().ok()),
        Some(gz.body.len()),
        "{path}"
    );
    let inflated = gunzip(&gz.body);
    assert!(
        same(&inflated) == same(&plain.body),
        "{path}: gzip inflates to another body"
    );
    assert!(
        gz.body.len() * 2 < plain.body.len(),
        "{path}: {} bytes gzip for {} plain",
        gz.body.len(),
        plain.body.len()
    );
    gz.body.len()
}

/// A JSON body with `age_ms` taken out (it moves between two requests).
fn ageless(body: &[u8]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["age_ms"] = serde_json::Value::Null;
    v.to_string().into_bytes()
}

#[test]
fn every_big_answer_comes_in_gzip_when_asked() {
    let ds = data_server(&["--switches", "2000", "--interval-sec", "3600"]);
    let ms = metrics_server(&format!("http://{}/counters", ds.addr), &[]);
    eventually("a snapshot", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 200).then_some(())
    });
    let (plain, gz) = both(ds.addr, "/counters", &[]);
    check("/counters", &plain, &gz, |b| b.to_vec());
    for path in [
        "/telemetry/ListMetrics",
        "/telemetry/ListMetrics?sort=-cpu_util_pct&limit=500",
    ] {
        let (plain, gz) = both(ms.addr, path, &[]);
        check(path, &plain, &gz, ageless);
    }
    for (path, accept) in [
        ("/telemetry/ListMetrics?format=csv", None),
        ("/telemetry/ListMetrics", Some("text/csv")),
        (
            "/telemetry/ListMetrics?fields=temperature_c&format=csv",
            None,
        ),
    ] {
        let extra: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let (plain, gz) = both(ms.addr, path, &extra);
        assert_eq!(
            gz.header("etag").map(|t| t.ends_with("-csv-gz\"")),
            Some(true)
        );
        check(path, &plain, &gz, |b| b.to_vec());
    }
    // /metrics: no tags, but gzip all the same; only our clocks move.
    let clockless = |b: &[u8]| -> Vec<u8> {
        String::from_utf8_lossy(b)
            .lines()
            .filter(|l| !l.starts_with("fabric_") || l.contains("switch_id="))
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    };
    for addr in [ms.addr, ds.addr] {
        let plain = get(addr, "/metrics");
        let gz = get_with(addr, "/metrics", &[GZIP]);
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
        let inflated = gunzip(&gz.body);
        assert_eq!(clockless(&inflated), clockless(&plain.body));
        if addr == ms.addr {
            assert!(
                gz.body.len() * 4 < plain.body.len(),
                "{} of {}",
                gz.body.len(),
                plain.body.len()
            );
        }
    }
    // A conditional request names the form it holds.
    let gz = get_with(ms.addr, "/telemetry/ListMetrics", &[GZIP]);
    let tag = gz.header("etag").unwrap().to_string();
    let again = get_with(
        ms.addr,
        "/telemetry/ListMetrics",
        &[GZIP, ("If-None-Match", &tag)],
    );
    assert_eq!(again.status, 304);
    let plain = get_with(
        ms.addr,
        "/telemetry/ListMetrics",
        &[("If-None-Match", &tag)],
    );
    assert_eq!(plain.status, 200);
}
