//! One fabric from several producers (`UPSTREAM_URLS`), on the real
//! binaries: shards composed in order, fields united, duplicates settled,
//! a shard down without taking the others with it, and 304s per shard.

use serde_json::{Value, json};

use crate::support::*;

/// A metrics_server over these upstreams.
fn composing(urls: &[String], args: &[&str]) -> Proc {
    metrics_server_of("--upstream-urls", &urls.join(","), args)
}

#[test]
fn three_shards_compose_in_order_with_the_union_of_fields() {
    let a = FakeUpstream::start(Script::csv("\"a1\"", "switch_id,x,y\na0,1,2\na1,3,4\n"));
    let b = FakeUpstream::start(Script::csv("\"b1\"", "switch_id,y,z\nb0,5,6\na1,50,60\n"));
    let c = FakeUpstream::start(Script::csv("\"c1\"", "switch_id,x,y\nc0,7,8\n"));
    let ms = composing(&[a.url(), b.url(), c.url()], &[]);
    let v = eventually("all three shards", || {
        let v = get(ms.addr, "/telemetry/ListMetrics").json();
        (v["total"] == 4).then_some(v)
    });
    assert_eq!(item_ids(&v), ["a0", "a1", "b0", "c0"]);
    assert_eq!(v["fields"], json!(["x", "y", "z"]));
    assert_eq!(
        v["items"][2],
        json!({"switch_id":"b0","x":null,"y":5,"z":6})
    );
    // a1 is the first shard's; the second's a1 is a conflict of the second.
    assert_eq!(
        v["items"][1],
        json!({"switch_id":"a1","x":3,"y":4,"z":null})
    );
    assert!(v.get("missing_shards").is_none(), "{v}");
    let id = v["snapshot_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("f-"), "{id}");
    // GetMetric: a field the switch's shard lacks is not reported.
    let r = get(ms.addr, "/telemetry/GetMetric?switch_id=b0&metric=x");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "metric x not reported for b0");
    let r = get(ms.addr, "/telemetry/GetMetric?switch_id=b0&metric=z");
    assert_eq!((r.status, r.json()["value"].as_i64()), (200, Some(6)));
    // Filters, sorting and CSV see the composed table.
    let v = get(ms.addr, "/telemetry/ListMetrics?sort=-y&limit=2&fields=y").json();
    assert_eq!(item_ids(&v), ["c0", "b0"]);
    let csv = get(ms.addr, "/telemetry/ListMetrics?format=csv").text();
    assert_eq!(csv, "switch_id,x,y,z\na0,1,2,\na1,3,4,\nb0,,5,6\nc0,7,8,\n");
    // /stats: a line per shard, the conflict counted for the later one.
    let s = get(ms.addr, "/stats").json();
    let shards = s["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    assert_eq!(shards[1]["url"], b.url());
    assert_eq!(shards[1]["snapshot_id"], "b1");
    assert_eq!(
        shards
            .iter()
            .map(|s| s["conflicts"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 0]
    );
    assert_eq!(shards[0]["switches"], 2);
    assert_eq!(s["snapshot"]["switches"], 4);
    // Logged once for b's snapshot (lines reach the test a little later).
    let conflicts = || {
        ms.logs()
            .iter()
            .filter(|l| l["event"] == "shard.conflict")
            .count()
    };
    eventually("the conflict logged", || (conflicts() > 0).then_some(()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(conflicts(), 1, "logged once for the shard's snapshot");
    assert_eq!(get(ms.addr, "/ready").status, 200);
    // /metrics: a poll family per upstream; the fabric as one.
    let m = get(ms.addr, "/metrics").text();
    for up in [&a, &b, &c] {
        let line = format!("fabric_upstream_up{{upstream=\"{}\"}} 1\n", up.url());
        assert!(m.contains(&line), "{line}");
    }
    assert!(m.contains("fabric_y{switch_id=\"b0\"} 5\n"), "{m}");
    assert!(
        !m.contains("fabric_x{switch_id=\"b0\"}"),
        "no sample for a missing value"
    );
    // One shard changes: only the id and its rows move.
    c.set(Script::csv("\"c2\"", "switch_id,x,y\nc0,70,80\n"));
    let v = eventually("the new shard", || {
        let v = get(ms.addr, "/telemetry/ListMetrics").json();
        (v["snapshot_id"] != id.as_str()).then_some(v)
    });
    assert_eq!(
        v["items"][3],
        json!({"switch_id":"c0","x":70,"y":80,"z":null})
    );
    assert_eq!(
        v["items"][0],
        json!({"switch_id":"a0","x":1,"y":2,"z":null})
    );
    // The first shard starts sending c0: c's unchanged row is now the
    // conflict, counted and logged for c.
    a.set(Script::csv(
        "\"a2\"",
        "switch_id,x,y\na0,1,2\na1,3,4\nc0,9,9\n",
    ));
    let s = eventually("c's conflict", || {
        let s = get(ms.addr, "/stats").json();
        (s["shards"][2]["conflicts"] == 1).then_some(s)
    });
    assert_eq!(s["snapshot"]["switches"], 4);
    let v = get(ms.addr, "/telemetry/ListMetrics?switch_id=c0").json();
    assert_eq!(v["items"][0]["x"], 9, "the earlier shard's c0");
    let c_url = c.url();
    eventually("the conflict logged for c", || {
        ms.logs()
            .iter()
            .any(|l| l["event"] == "shard.conflict" && l["upstream"] == c_url.as_str())
            .then_some(())
    });
}

#[test]
fn a_shard_down_leaves_the_others_serving_and_says_which() {
    let a = FakeUpstream::start(Script::csv("\"a1\"", "switch_id,v\na0,1\n"));
    let b = FakeUpstream::start(Script::status(500));
    let ms = composing(&[a.url(), b.url()], &["--max-stale-ms", "1000"]);
    // b never delivered: the fabric is a's, and b is named.
    let v = eventually("a's rows", || {
        let v = get(ms.addr, "/telemetry/ListMetrics").json();
        (v["total"] == 1).then_some(v)
    });
    assert_eq!(
        v["missing_shards"],
        json!([{"upstream": b.url(), "error": "no snapshot yet"}])
    );
    let r = get(ms.addr, "/ready");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["shards_not_ready"],
        json!([{"upstream": b.url(), "error": "no snapshot yet"}])
    );
    let s = eventually("b's failed polls counted", || {
        let s = get(ms.addr, "/stats").json();
        (s["shards"][1]["errors"].as_u64() > Some(0)).then_some(s)
    });
    assert_eq!(s["shards"][1]["snapshot_id"], Value::Null);
    // b comes, then goes stale (its data is a minute old) while a keeps
    // updating: b's switches are 503, its rows left out and named.
    let old = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 60_000)
        .to_string();
    b.set(Script::csv("\"b1\"", "switch_id,v\nb0,2\n").with_header("X-Snapshot-Ts", &old));
    a.set(Script::csv("\"a2\"", "switch_id,v\na0,10\n"));
    let v = eventually("b stale and a updated", || {
        let v = get(ms.addr, "/telemetry/ListMetrics").json();
        (v["items"][0]["v"] == 10 && v["missing_shards"][0]["error"] == "data stale").then_some(v)
    });
    assert_eq!(v["total"], 1);
    assert_eq!(v["missing_shards"][0]["upstream"], b.url());
    let r = get(ms.addr, "/telemetry/GetMetric?switch_id=b0&metric=v");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "data stale");
    assert!(r.json()["age_ms"].as_u64().unwrap() >= 60_000);
    let r = get(ms.addr, "/telemetry/GetMetric?switch_id=a0&metric=v");
    assert_eq!((r.status, r.json()["value"].as_i64()), (200, Some(10)));
    assert!(r.json()["age_ms"].as_u64().unwrap() < 60_000, "a's own age");
    let csv = get(ms.addr, "/telemetry/ListMetrics?format=csv").text();
    assert_eq!(csv, "switch_id,v\na0,10\n");
    // Every shard stale: then ListMetrics itself is 503.
    a.set(Script::csv("\"a3\"", "switch_id,v\na0,11\n").with_header("X-Snapshot-Ts", &old));
    eventually("all stale", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 503).then_some(())
    });
}

#[test]
fn sixteen_shards_of_one_producer_are_the_whole_fleet_with_304s_each() {
    let ds = data_server(&["--switches", "100", "--interval-sec", "3600"]);
    let urls: Vec<String> = (0..16)
        .map(|k| format!("http://{}/counters?num_shards=16&shard={k}", ds.addr))
        .collect();
    let ms = composing(&urls, &[]);
    let v = eventually("every shard", || {
        let v = get(ms.addr, "/telemetry/ListMetrics").json();
        (v["total"] == 100).then_some(v)
    });
    assert!(v.get("missing_shards").is_none());
    // Shard order: 0, 16, 32, … then 1, 17, …: every switch exactly once.
    let got = item_ids(&v);
    let mut sorted = got.clone();
    sorted.sort();
    let want: Vec<String> = (0..100).map(|i| format!("sw-{i:03}")).collect();
    assert_eq!(sorted, want);
    assert_eq!(&got[..3], ["sw-000", "sw-016", "sw-032"]);
    // The numbers are the producer's.
    let table = get(ds.addr, "/counters").text();
    let line = table.lines().find(|l| l.starts_with("sw-017,")).unwrap();
    let csv = get(
        ms.addr,
        "/telemetry/ListMetrics?format=csv&switch_id=sw-017",
    )
    .text();
    assert_eq!(csv.lines().nth(1), Some(line));
    // Each shard is re-polled with its own tag: 304s, per upstream.
    let s = eventually("304s on every shard", || {
        let s = get(ms.addr, "/stats").json();
        let all = s["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|sh| sh["not_modified_304"].as_u64() > Some(0) && sh["updated_200"] == 1);
        all.then_some(s)
    });
    assert_eq!(s["poll"]["updated_200"], 16, "the totals are sums");
    assert_eq!(get(ms.addr, "/ready").status, 200);
}

#[test]
fn both_upstream_knobs_is_one_clear_line_and_exit_2() {
    let out = std::process::Command::new(METRICS_SERVER)
        .env_clear()
        .env("UPSTREAM_URL", "http://127.0.0.1:9/counters")
        .env("UPSTREAM_URLS", "http://127.0.0.1:9/counters")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("UPSTREAM_URLS") && err.contains("not both"),
        "{err}"
    );
}
