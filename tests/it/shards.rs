//! One fabric from several producers (`UPSTREAM_URLS`), on the real
//! binaries: shards composed in order, fields united, duplicates settled,
//! a shard down without taking the others with it, and 304s per shard.
//! And data_server's shards by a field (`sharding_field`): every row in
//! the shard its cell's hash names, tick after tick, under tags of their
//! own.

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
    for (shard, tag) in shards.iter().zip(["a1", "b1", "c1"]) {
        assert!(id_of_tag(&shard["snapshot_id"], tag), "{shard}");
    }
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

/// FNV-1a 64 of `s`, written out here apart from the server's.
fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Shard `k` of `n` of data_server's table by `field`.
fn by_field(n: usize, k: usize, field: &str) -> String {
    format!("/counters?num_shards={n}&shard={k}&sharding_field={field}")
}

/// The switch ids of a `/counters` body (or shard of one).
fn switch_ids(body: &str) -> Vec<String> {
    body.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn shards_by_switch_id_hold_every_row_once_where_its_hash_says() {
    let ds = data_server(&["--switches", "100", "--interval-sec", "3600"]);
    let whole = get(ds.addr, "/counters");
    let text = whole.text();
    let header = text.lines().next().unwrap();
    let id = whole.header("etag").unwrap().trim_matches('"').to_string();
    assert_eq!(fnv1a64("sw-000"), 0xeda7_2eb9_3596_6c52);
    for n in [2usize, 3, 16] {
        let mut rows: Vec<String> = Vec::new();
        for k in 0..n {
            let r = get(ds.addr, &by_field(n, k, "switch_id"));
            assert_eq!(r.status, 200, "shard {k} of {n}");
            assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
            assert_eq!(r.header("x-snapshot-ts"), whole.header("x-snapshot-ts"));
            assert_eq!(
                r.header("etag"),
                Some(format!("\"{id}-s{k}of{n}-by-switch_id\"").as_str())
            );
            let shard = r.text();
            assert_eq!(shard.lines().next(), Some(header), "shard {k} of {n}");
            for sw in switch_ids(&shard) {
                assert_eq!(
                    fnv1a64(&sw) % n as u64,
                    k as u64,
                    "{sw} in shard {k} of {n}"
                );
            }
            // In the table's order.
            let at: Vec<usize> = shard
                .lines()
                .skip(1)
                .map(|l| text.find(l).unwrap())
                .collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "shard {k} of {n}");
            rows.extend(shard.lines().skip(1).map(str::to_string));
        }
        // The union is the table, every row exactly once, byte for byte.
        rows.sort();
        let mut all: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
        all.sort();
        assert_eq!(rows, all, "{n} shards by switch_id");
    }
    // One shard of one by a field is the whole table, under its tag.
    let one = get(ds.addr, &by_field(1, 0, "switch_id"));
    assert_eq!(one.body, whole.body);
    assert_eq!(one.header("etag"), whole.header("etag"));
    // Any column shards: by temperature, equal readings share a shard.
    let mut rows = 0;
    for k in 0..4 {
        let shard = get(ds.addr, &by_field(4, k, "temperature_c")).text();
        for line in shard.lines().skip(1) {
            let t = line.rsplit(',').next().unwrap();
            assert_eq!(fnv1a64(t) % 4, k as u64, "{line}");
            rows += 1;
        }
    }
    assert_eq!(rows, 100);
}

#[test]
fn a_switch_stays_in_its_shard_by_switch_id_tick_after_tick() {
    let ds = data_server(&["--switches", "40", "--interval-sec", "0.1"]);
    let path = by_field(4, 3, "switch_id");
    let want: Vec<String> = (0..40)
        .map(|i| format!("sw-{i:03}"))
        .filter(|sw| fnv1a64(sw) % 4 == 3)
        .collect();
    assert!(!want.is_empty());
    let first = get(ds.addr, &path);
    let mut tag = first.header("etag").unwrap().to_string();
    let mut bodies = vec![first.text()];
    for _ in 0..3 {
        let r = eventually("a new snapshot", || {
            let r = get(ds.addr, &path);
            (r.header("etag")? != tag).then_some(r)
        });
        tag = r.header("etag").unwrap().to_string();
        assert!(tag.ends_with("-s3of4-by-switch_id\""), "{tag}");
        bodies.push(r.text());
    }
    for body in &bodies {
        assert_eq!(switch_ids(body), want);
    }
    assert_ne!(bodies[0], bodies[3], "the values moved, the rows stayed");
}

#[test]
fn a_bad_sharding_field_is_400_naming_it() {
    let ds = data_server(&["--switches", "8"]);
    let columns = "switch_id, bandwidth_gbps, latency_us, packet_errors, cpu_util_pct, \
                   mem_util_pct, buffer_occupancy_pct, egress_drops_per_s, temperature_c";
    for (query, want) in [
        (
            "num_shards=4&shard=1&sharding_field=port_guid".to_string(),
            format!("unknown sharding_field: port_guid (want one of {columns})"),
        ),
        (
            "num_shards=1&shard=0&sharding_field=Switch_Id".into(),
            format!("unknown sharding_field: Switch_Id (want one of {columns})"),
        ),
        (
            "sharding_field=switch_id".into(),
            "missing query parameter: num_shards (sharding_field goes with num_shards and shard)"
                .into(),
        ),
        (
            "num_shards=4&sharding_field=switch_id".into(),
            "missing query parameter: shard (num_shards and shard go together)".into(),
        ),
        (
            "num_shards=4&shard=1&sharding_field=".into(),
            "invalid sharding_field: empty (want a column of the header)".into(),
        ),
        (
            "num_shards=4&shard=1&sharding_field=switch_id&sharding_field=switch_id".into(),
            "repeated query parameter: sharding_field".into(),
        ),
    ] {
        let r = get(ds.addr, &format!("/counters?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{query}"
        );
        assert_eq!(r.json(), json!({ "error": want }), "{query}");
    }
    // A long name is clipped in the message.
    let r = get(
        ds.addr,
        &format!(
            "/counters?num_shards=2&shard=0&sharding_field={}",
            "x".repeat(4000)
        ),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.len() < 400, "{}", r.text());
}

#[test]
fn a_shard_by_a_field_has_its_own_tag_and_304() {
    let ds = data_server(&["--switches", "30", "--interval-sec", "3600"]);
    let path = by_field(3, 1, "switch_id");
    let first = get(ds.addr, &path);
    let tag = first.header("etag").unwrap().to_string();
    assert!(tag.ends_with("-s1of3-by-switch_id\""), "{tag}");
    let r = get_with(ds.addr, &path, &[("If-None-Match", &tag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(tag.as_str()));
    assert_eq!(r.header("content-length"), first.header("content-length"));
    assert_eq!(r.header("x-snapshot-ts"), first.header("x-snapshot-ts"));
    // The index shard's tag is another representation's, and the other
    // way round; so is another field's.
    let index = get(ds.addr, "/counters?num_shards=3&shard=1");
    let index_tag = index.header("etag").unwrap();
    assert_ne!(index_tag, tag);
    assert_eq!(
        get_with(ds.addr, &path, &[("If-None-Match", index_tag)]).status,
        200
    );
    assert_eq!(
        get_with(
            ds.addr,
            "/counters?num_shards=3&shard=1",
            &[("If-None-Match", &tag)]
        )
        .status,
        200
    );
    assert_eq!(
        get_with(
            ds.addr,
            &by_field(3, 1, "latency_us"),
            &[("If-None-Match", &tag)]
        )
        .status,
        200
    );
    // gzip: its own tag, -gz after the field, and a 304 for it.
    let gz = get_with(ds.addr, &path, &[("Accept-Encoding", "gzip")]);
    let gz_tag = gz.header("etag").unwrap();
    assert_eq!(gz_tag, format!("{}-gz\"", tag.trim_end_matches('"')));
    let again = get_with(
        ds.addr,
        &path,
        &[("Accept-Encoding", "gzip"), ("If-None-Match", gz_tag)],
    );
    assert_eq!(again.status, 304);
}

#[test]
fn four_shards_by_switch_id_compose_into_the_whole_fleet() {
    let ds = data_server(&["--switches", "60", "--interval-sec", "3600"]);
    let urls: Vec<String> = (0..4)
        .map(|k| format!("http://{}{}", ds.addr, by_field(4, k, "switch_id")))
        .collect();
    let ms = composing(&urls, &[]);
    let v = eventually("every shard", || {
        let v = get(ms.addr, "/telemetry/ListMetrics").json();
        (v["total"] == 60).then_some(v)
    });
    assert!(v.get("missing_shards").is_none(), "{v}");
    let mut got = item_ids(&v);
    got.sort();
    let want: Vec<String> = (0..60).map(|i| format!("sw-{i:03}")).collect();
    assert_eq!(got, want);
    let s = get(ms.addr, "/stats").json();
    assert!(
        s["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|sh| sh["conflicts"] == 0),
        "{s}"
    );
}
