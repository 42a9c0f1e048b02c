//! metrics_server against a scripted fake upstream.

use std::time::Duration;

use crate::support::*;

const CSV: &str = "switch_id,bandwidth_gbps,cpu_util_pct,packet_errors\nsw-000,121.5,34.1,0\nsw-001,118.30,36.5,12\n";

/// The ListMetrics document once ms serves the snapshot the upstream
/// tagged `tag` (its id is `<tag>-<body hash>`).
fn serving(ms: &Proc, tag: &str) -> serde_json::Value {
    eventually(&format!("snapshot {tag}-…"), || {
        let r = get(ms.addr, "/telemetry/ListMetrics");
        (r.status == 200 && id_of_tag(&r.json()["snapshot_id"], tag)).then(|| r.json())
    })
}

#[test]
fn no_snapshot_yet_is_503_json() {
    let up = FakeUpstream::start(Script::status(500));
    let ms = metrics_server(&up.url(), &[]);
    ms.wait_log(|v| v["event"] == "poll.error" && v["kind"] == "http_status");
    for path in [
        "/telemetry/ListMetrics",
        "/telemetry/GetMetric?switch_id=sw-000&metric=x",
    ] {
        let r = get(ms.addr, path);
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.json(), serde_json::json!({"error": "no snapshot yet"}));
    }
    assert_eq!(
        get(ms.addr, "/health").json(),
        serde_json::json!({"ok": true})
    );
    let stats = get(ms.addr, "/stats").json();
    assert!(stats["poll_retry_count"].as_u64().unwrap() >= 1);
    // The upstream's own words come along (its body was "nope").
    assert_eq!(
        stats["poll"]["last_error"],
        "http: upstream answered 500: nope"
    );
}

#[test]
fn serves_the_upstream_table_with_identity_and_age() {
    let up = FakeUpstream::start(
        Script::csv("\"v1\"", CSV).with_header("X-Snapshot-Ts", "1000000000000"),
    );
    let ms = metrics_server(&up.url(), &[]);
    let list = serving(&ms, "v1");
    // Our id is the upstream's tag and the XXH64 of the body it came with.
    let id = list["snapshot_id"].as_str().unwrap().to_string();
    let hash = fabric_telemetry::xxh64::hash(CSV.as_bytes(), 0);
    assert_eq!(id, format!("v1-{hash:016x}"));
    assert_eq!(
        list["fields"],
        serde_json::json!(["bandwidth_gbps", "cpu_util_pct", "packet_errors"])
    );
    assert_eq!(
        list["items"][1],
        serde_json::json!({"switch_id":"sw-001","bandwidth_gbps":118.30,"cpu_util_pct":36.5,"packet_errors":12})
    );
    let r = get(
        ms.addr,
        "/telemetry/GetMetric?switch_id=sw-000&metric=packet_errors",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["snapshot_id"], id.as_str());
    assert_eq!(r.header("etag"), Some(format!("\"{id}\"").as_str()));
    // Age counts from the producer's timestamp (2001: long ago).
    let age: u64 = r.header("x-data-age-ms").unwrap().parse().unwrap();
    assert!(age > 700_000_000_000, "{age}");
    // Numbers are the CSV's own: 0 stays 0, 118.30 stays 118.30.
    assert!(r.text().contains("\"value\":0,"), "{}", r.text());
    let r = get(
        ms.addr,
        "/telemetry/GetMetric?switch_id=sw-001&metric=bandwidth_gbps",
    );
    assert!(r.text().contains("\"value\":118.30,"), "{}", r.text());
    let list = get(ms.addr, "/telemetry/ListMetrics").text();
    assert!(list.contains("\"bandwidth_gbps\":121.5,"));
}

/// The upstream's `ETag` goes back to it verbatim in `If-None-Match`, in
/// every form; ours names it (unquoted, not weak) before the body's hash.
#[test]
fn the_etag_is_echoed_verbatim_in_every_form() {
    for (sent, tag) in [
        ("\"q-1\"", "q-1"),
        ("bare-2", "bare-2"),
        ("W/\"weak-3\"", "weak-3"),
    ] {
        let up = FakeUpstream::start(Script::csv(sent, CSV));
        let ms = metrics_server(&up.url(), &["--log-level", "debug"]);
        serving(&ms, tag);
        eventually("a conditional poll", || {
            (up.last_if_none_match().as_deref() == Some(sent)).then_some(())
        });
        ms.wait_log(|v| v["event"] == "poll.run" && v["status"] == 304);
        let r = get(ms.addr, "/telemetry/ListMetrics");
        let id = r.json()["snapshot_id"].clone();
        assert!(id_of_tag(&id, tag), "{sent}: {id}");
        let ours = format!("\"{}\"", id.as_str().unwrap());
        assert_eq!(r.header("etag"), Some(ours.as_str()), "{sent}");
    }
}

#[test]
fn a_bad_body_never_replaces_good_data() {
    let up = FakeUpstream::start(Script::csv("\"good\"", CSV));
    let ms = metrics_server(&up.url(), &[]);
    let good = serving(&ms, "good")["snapshot_id"].clone();
    let bad_bodies: &[(&[u8], &str)] = &[
        (
            b"switch_id,a,b\nsw-000,1\n",
            "fields where the header has 3",
        ),
        (
            b"switch_id,a\nsw-000,NaN\n",
            "a is \"NaN\", not a finite number",
        ),
        (
            b"switch_id,a\nx,1e999\n",
            "a is \"1e999\", not a finite number",
        ),
        (b"switch_id,a\nx,1\nx,2\n", "duplicate switch_id"),
        (b"switch_id,a,a\nx,1,2\n", "duplicate column"),
        (b"switch_id,a\n,1\n", "empty switch_id"),
        (b"", "empty body"),
        (b"name,a\nx,1\n", "first column"),
        (b"\xff\xfe\x00\x01garbage,\"\n", "not UTF-8"),
        (b"switch_id,a\n\"x,1\n", "never closed"),
        (b"switch_id\nsw-000\n", "no metric columns"),
        (b"switch_id,a\rsw-1,5\r", "control character"),
    ];
    for (i, (body, reason)) in bad_bodies.iter().enumerate() {
        let mut script = Script::csv(&format!("\"bad-{i}\""), "");
        script.body = body.to_vec();
        up.set(script);
        let err = ms.wait_log(|v| {
            v["event"] == "poll.error"
                && v["kind"] == "invalid_csv"
                && v["reason"].as_str().unwrap_or("").contains(reason)
        });
        assert!(
            err["reason"].as_str().unwrap().starts_with("csv: "),
            "{err}"
        );
        let r = get(
            ms.addr,
            "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
        );
        assert_eq!(r.status, 200, "{reason}");
        assert_eq!(r.json()["snapshot_id"], good, "{reason}");
        assert_eq!(r.json()["value"], 34.1);
    }
    // A header with no rows is no error: a valid, empty table.
    up.set(Script::csv("\"empty\"", "switch_id,a,b\n"));
    let list = serving(&ms, "empty");
    assert_eq!(
        (&list["total"], &list["fields"], &list["items"]),
        (
            &serde_json::json!(0),
            &serde_json::json!(["a", "b"]),
            &serde_json::json!([])
        )
    );
    let r = get(ms.addr, "/telemetry/GetMetric?switch_id=sw-000&metric=a");
    assert_eq!(r.status, 404, "{}", r.text());
    // The next good body is taken, and a rejected tag was never remembered.
    up.set(Script::csv("\"good-2\"", CSV));
    serving(&ms, "good-2");
    let stats = get(ms.addr, "/stats").json();
    assert!(stats["poll_retry_count"].as_u64().unwrap() >= bad_bodies.len() as u64);
    assert_eq!(stats["poll"]["consecutive_failures"], 0);
}

#[test]
fn a_new_upstream_column_appears_without_a_code_change() {
    let up = FakeUpstream::start(Script::csv("\"c1\"", "switch_id,a\nx,1\n"));
    let ms = metrics_server(&up.url(), &[]);
    serving(&ms, "c1");
    up.set(Script::csv(
        "\"c2\"",
        "switch_id,a,optics_rx_dbm\nx,1,-3.5\n",
    ));
    let list = serving(&ms, "c2");
    assert_eq!(list["fields"], serde_json::json!(["a", "optics_rx_dbm"]));
    let r = get(
        ms.addr,
        "/telemetry/GetMetric?switch_id=x&metric=optics_rx_dbm",
    );
    assert_eq!(r.json()["value"], -3.5);
}

#[test]
fn without_an_etag_the_id_is_a_content_hash_and_age_counts_from_fetch() {
    let up = FakeUpstream::start(Script::csv("", CSV));
    let ms = metrics_server(&up.url(), &["--log-level", "debug"]);
    let list = eventually("a snapshot", || {
        let r = get(ms.addr, "/telemetry/ListMetrics");
        (r.status == 200).then(|| r.json())
    });
    let id = list["snapshot_id"].clone();
    assert!(id_of_tag(&id, "h"), "{id}");
    let hash = fabric_telemetry::xxh64::hash(CSV.as_bytes(), 0);
    assert_eq!(id, format!("h-{hash:016x}").as_str());
    assert!(list["age_ms"].as_u64().unwrap() < 10_000);
    // The same body again is no new snapshot: a 304 in all but name.
    let unchanged = || {
        ms.logs()
            .into_iter()
            .filter(|v| v["event"] == "poll.run" && v["unchanged"] == true)
            .collect::<Vec<_>>()
    };
    let seen = eventually("three unchanged polls", || {
        let seen = unchanged();
        (seen.len() >= 3).then_some(seen)
    });
    for run in &seen {
        assert_eq!(run["status"], 200, "{run}");
        assert_eq!(run["level"], "DEBUG", "{run}");
        assert_eq!(run["snapshot_id"], id, "{run}");
    }
    assert_eq!(
        get(ms.addr, "/telemetry/ListMetrics").json()["snapshot_id"],
        id
    );
    let stats = get(ms.addr, "/stats").json();
    assert_eq!(stats["poll"]["updated_200"], 1, "{stats}");
    assert!(
        stats["poll"]["unchanged_200"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    // Never a conditional request: there is no tag to send.
    let requests = up.requests();
    assert!(requests.len() >= 4);
    assert!(
        requests.iter().all(|h| !h
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("if-none-match"))),
        "{requests:?}"
    );
    // Another body is another snapshot, with another id.
    up.set(Script::csv("", "switch_id,a\nsw-000,1\n"));
    let list = eventually("the new body's snapshot", || {
        let v = get(ms.addr, "/telemetry/ListMetrics").json();
        (v["snapshot_id"] != id).then_some(v)
    });
    assert!(id_of_tag(&list["snapshot_id"], "h"), "{list}");
    assert_eq!(list["fields"], serde_json::json!(["a"]));
}

#[test]
fn get_metric_errors_name_the_bad_value() {
    let up = FakeUpstream::start(Script::csv("\"v\"", CSV));
    let ms = metrics_server(&up.url(), &[]);
    serving(&ms, "v");
    for (q, status, error) in [
        ("", 400, "missing query parameter: switch_id"),
        ("?switch_id=sw-000", 400, "missing query parameter: metric"),
        (
            "?switch_id=sw-000&metric=",
            400,
            "missing query parameter: metric",
        ),
        (
            "?switch_id=sw-9&metric=cpu_util_pct",
            404,
            "unknown switch_id: sw-9",
        ),
        (
            "?switch_id=sw-000&metric=fan_rpm",
            404,
            "unknown metric: fan_rpm",
        ),
        ("?switch_id=%E2%9C%93&metric=x", 404, "unknown switch_id: ✓"),
        (
            "?switch_id=%ZZ&metric=x",
            400,
            "malformed query string: bad %-escape",
        ),
    ] {
        let r = get(ms.addr, &format!("/telemetry/GetMetric{q}"));
        assert_eq!(r.status, status, "{q}");
        assert_eq!(r.json(), serde_json::json!({"error": error}), "{q}");
    }
    let r = get(ms.addr, "/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "unknown path: /nope");
    let r = request(ms.addr, "PUT", "/telemetry/ListMetrics");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn a_hung_upstream_times_out_and_the_api_keeps_answering() {
    let up = FakeUpstream::start(Script::csv("\"h1\"", CSV));
    let ms = metrics_server(&up.url(), &[]);
    let h1 = serving(&ms, "h1")["snapshot_id"].clone();
    let mut hung = Script::csv("\"h2\"", CSV);
    hung.delay = Duration::from_secs(30);
    up.set(hung);
    // While the poller waits, the API answers at once from the last snapshot.
    for _ in 0..5 {
        let r = get(
            ms.addr,
            "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
        );
        assert_eq!(r.json()["snapshot_id"], h1);
    }
    let err = ms.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(err["kind"], "timeout", "{err}");
    up.set(Script::csv("\"h3\"", CSV));
    serving(&ms, "h3");
}

#[test]
fn stats_reports_percentiles_and_poller_figures() {
    let up = FakeUpstream::start(Script::csv("\"s\"", CSV));
    let ms = metrics_server(&up.url(), &[]);
    serving(&ms, "s");
    for _ in 0..20 {
        get(
            ms.addr,
            "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
        );
    }
    let s = get(ms.addr, "/stats").json();
    let gm = &s["endpoints"]["/telemetry/GetMetric"];
    assert_eq!(gm["count"], 20);
    for k in ["p50_ms", "p95_ms", "p99_ms", "max_ms"] {
        let v = gm[k].as_f64().unwrap();
        assert!(
            v > 0.0 && v < 1000.0,
            "{k}={v}: sub-millisecond, not rounded to 0"
        );
    }
    assert!(gm["p50_ms"].as_f64() <= gm["p99_ms"].as_f64());
    assert!(
        s["endpoints"]["/telemetry/ListMetrics"]["count"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(s["poll_last_cycle_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(s["poll_retry_count"], 0);
    assert!(s["uptime_s"].is_u64());
    assert!(s["poll"]["updated_200"].as_u64().unwrap() >= 1);
}
