//! Conditional requests on metrics_server's data endpoints, over a real
//! socket: `If-None-Match` with the current tag gets a bodiless 304 that
//! carries the 200's headers, the JSON and CSV forms have tags of their own,
//! and a precondition never turns an error (400, 404, 503) into a 304.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::*;

const CSV: &str = "switch_id,bandwidth_gbps,cpu_util_pct\nsw-000,121.5,34.1\nsw-001,118.30,36.5\n";

/// A producer time far ahead, so the age is always 0 and two answers
/// have the same length.
const FUTURE_TS: &str = "4000000000000";

fn upstream(etag: &str) -> FakeUpstream {
    FakeUpstream::start(Script::csv(etag, CSV).with_header("X-Snapshot-Ts", FUTURE_TS))
}

/// A metrics_server serving the snapshot the upstream tagged `tag`, and
/// that snapshot's id (`<tag>-<body hash>`).
fn serving(up: &FakeUpstream, tag: &str, args: &[&str]) -> (Proc, String) {
    let ms = metrics_server(&up.url(), args);
    let id = eventually(&format!("snapshot {tag}-…"), || {
        let r = get(ms.addr, "/telemetry/ListMetrics");
        let id = r.json()["snapshot_id"].clone();
        (r.status == 200 && id_of_tag(&id, tag)).then(|| id.as_str().unwrap().to_string())
    });
    (ms, id)
}

/// The headers a 304 must repeat from its 200.
const REPEATED: [&str; 6] = [
    "etag",
    "x-data-age-ms",
    "cache-control",
    "vary",
    "content-type",
    "content-length",
];

fn assert_not_modified(r: &Reply, ok: &Reply, why: &str) {
    assert_eq!(r.status, 304, "{why}: {}", r.text());
    assert!(r.body.is_empty(), "{why}: a 304 with a body");
    for name in REPEATED {
        assert_eq!(r.header(name), ok.header(name), "{why}: {name}");
    }
}

#[test]
fn the_current_tag_gets_a_304_in_every_form() {
    let up = upstream("\"v1\"");
    let (ms, id) = serving(&up, "v1", &[]);
    let json_tag = format!("\"{id}\"");
    let csv_tag = format!("\"{id}-csv\"");
    let (json_tag, csv_tag) = (json_tag.as_str(), csv_tag.as_str());
    for (path, accept, tag) in [
        ("/telemetry/ListMetrics", None, json_tag),
        (
            "/telemetry/ListMetrics?fields=cpu_util_pct&limit=1",
            None,
            json_tag,
        ),
        ("/telemetry/ListMetrics", Some("text/csv"), csv_tag),
        (
            "/telemetry/ListMetrics?format=csv&switch_prefix=sw-",
            None,
            csv_tag,
        ),
        (
            "/telemetry/GetMetric?switch_id=sw-001&metric=bandwidth_gbps",
            None,
            json_tag,
        ),
    ] {
        let with = |inm: Option<&str>| {
            let mut headers = Vec::new();
            if let Some(a) = accept {
                headers.push(("Accept", a));
            }
            if let Some(v) = inm {
                headers.push(("If-None-Match", v));
            }
            get_with(ms.addr, path, &headers)
        };
        let why = format!("{path} Accept {accept:?}");
        let ok = with(None);
        assert_eq!(ok.status, 200, "{why}");
        assert_eq!(ok.header("etag"), Some(tag), "{why}");
        if tag == json_tag {
            // The JSON names the snapshot its ETag stands for.
            assert_eq!(ok.json()["snapshot_id"], id.as_str(), "{why}");
        }
        assert_eq!(ok.header("cache-control"), Some("no-cache"), "{why}");
        let weak = format!("W/{tag}");
        let listed = format!("\"v0\", {tag}");
        for inm in [tag, weak.as_str(), "*", listed.as_str()] {
            assert_not_modified(&with(Some(inm)), &ok, &format!("{why} If-None-Match {inm}"));
        }
        // The upstream's own tag is not ours: it never validates.
        let other_form = format!("\"{id}-json\"");
        for inm in ["\"v0\"", "\"v1\"", "W/\"v1\"", &other_form, "W/\"v2\""] {
            assert_eq!(with(Some(inm)).status, 200, "{why} If-None-Match {inm}");
        }
    }
    // JSON and CSV are told apart: a cache holding both asks with both.
    let both_tags = format!("{json_tag}, {csv_tag}");
    let both = [("If-None-Match", both_tags.as_str())];
    let r = get_with(ms.addr, "/telemetry/ListMetrics", &both);
    assert_eq!((r.status, r.header("etag")), (304, Some(json_tag)));
    let csv = [both[0], ("Accept", "text/csv")];
    let r = get_with(ms.addr, "/telemetry/ListMetrics", &csv);
    assert_eq!((r.status, r.header("etag")), (304, Some(csv_tag)));
    let r = get_with(
        ms.addr,
        "/telemetry/ListMetrics",
        &[("If-None-Match", json_tag), ("Accept", "text/csv")],
    );
    assert_eq!(r.status, 200, "the JSON tag does not validate the CSV");
    assert_eq!(r.text(), CSV);
}

#[test]
fn a_new_snapshot_answers_the_old_tag_in_full() {
    let up = upstream("\"v1\"");
    let (ms, v1) = serving(&up, "v1", &[]);
    let old_tag = format!("\"{v1}\"");
    let inm = [("If-None-Match", old_tag.as_str())];
    assert_eq!(
        get_with(ms.addr, "/telemetry/ListMetrics", &inm).status,
        304
    );
    // The upstream's new tag, for the very same body and time.
    up.set(Script::csv("\"v2\"", CSV).with_header("X-Snapshot-Ts", FUTURE_TS));
    let r = eventually("the v2 snapshot", || {
        let r = get_with(ms.addr, "/telemetry/ListMetrics", &inm);
        (r.status == 200).then_some(r)
    });
    let v2 = r.json()["snapshot_id"].clone();
    assert!(id_of_tag(&v2, "v2"), "{v2}");
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", v2.as_str().unwrap()).as_str())
    );
    // The same body: the same hash after the new tag, as any other
    // metrics_server polling that upstream now would say.
    assert_eq!(v2.as_str().unwrap(), format!("v2{}", &v1["v1".len()..]));
}

#[test]
fn a_304_sends_no_body_on_a_kept_alive_connection() {
    let up = upstream("\"v1\"");
    let (ms, id) = serving(&up, "v1", &[]);
    let mut s = TcpStream::connect(ms.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let target = "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct";
    let requests = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"{id}\"\r\n\r\n\
         HEAD {target} HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/\"{id}\"\r\n\r\n\
         GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    s.write_all(requests.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{text}");
    for a in &answers[..2] {
        assert!(a.starts_with("304 "), "{a}");
        assert!(a.ends_with("\r\n\r\n"), "a 304 with a body: {a:?}");
    }
    assert!(answers[2].starts_with("200 "), "{}", answers[2]);
    assert!(answers[2].contains("\"value\":34.1,"), "{}", answers[2]);
}

#[test]
fn preconditions_never_hide_an_error() {
    // No snapshot yet.
    let down = FakeUpstream::start(Script::status(500));
    let ms = metrics_server(&down.url(), &[]);
    ms.wait_log(|v| v["event"] == "poll.error");
    let any = [("If-None-Match", "*")];
    for path in [
        "/telemetry/ListMetrics",
        "/telemetry/ListMetrics?format=csv",
        "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
    ] {
        let r = get_with(ms.addr, path, &any);
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.json()["error"], "no snapshot yet");
    }

    // Bad or unknown names.
    let up = upstream("\"v1\"");
    let (ms, id) = serving(&up, "v1", &[]);
    let (json_tag, csv_tag) = (format!("\"{id}\""), format!("\"{id}-csv\""));
    for (path, status) in [
        ("/telemetry/ListMetrics?limit=0", 400),
        ("/telemetry/ListMetrics?format=csv&fields=nope", 400),
        ("/telemetry/GetMetric?switch_id=sw-000", 400),
        (
            "/telemetry/GetMetric?switch_id=sw-999&metric=cpu_util_pct",
            404,
        ),
    ] {
        for inm in ["*", json_tag.as_str(), csv_tag.as_str()] {
            let r = get_with(ms.addr, path, &[("If-None-Match", inm)]);
            assert_eq!(r.status, status, "{path} {inm}");
        }
    }

    // Stale data: an old producer time and MAX_STALE_MS.
    let old = FakeUpstream::start(
        Script::csv("\"v9\"", CSV).with_header("X-Snapshot-Ts", "1000000000000"),
    );
    let ms = metrics_server(&old.url(), &["--max-stale-ms", "1000"]);
    let run = ms.wait_log(|v| v["event"] == "poll.run" && v["status"] == 200);
    assert!(id_of_tag(&run["snapshot_id"], "v9"), "{run}");
    let id = run["snapshot_id"].as_str().unwrap();
    let (json_tag, csv_tag) = (format!("\"{id}\""), format!("\"{id}-csv\""));
    for (path, inm) in [
        ("/telemetry/ListMetrics", json_tag.as_str()),
        ("/telemetry/ListMetrics?format=csv", csv_tag.as_str()),
        (
            "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
            "*",
        ),
    ] {
        let r = get_with(ms.addr, path, &[("If-None-Match", inm)]);
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.json()["error"], "data stale", "{path}");
    }
}
