//! Both real binaries together: what the consumer serves is what the
//! producer emitted, and a dying producer is survived.

use std::collections::HashMap;

use crate::support::*;

/// The producer's table for its current ETag: switch → metric → CSV text.
fn producer_table(ds: &Proc) -> (String, Vec<String>, HashMap<String, Vec<String>>) {
    let r = get(ds.addr, "/counters");
    let etag = r.header("etag").unwrap().trim_matches('"').to_string();
    let text = r.text();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .skip(1)
        .map(String::from)
        .collect();
    let rows = lines
        .map(|l| {
            let mut cells = l.split(',').map(String::from);
            (cells.next().unwrap(), cells.collect())
        })
        .collect();
    (etag, header, rows)
}

#[test]
fn the_consumer_serves_exactly_what_the_producer_emitted() {
    let ds = data_server(&["--switches", "40", "--interval-sec", "60"]);
    let (etag, fields, rows) = producer_table(&ds);
    let ms = metrics_server(&format!("http://{}/counters", ds.addr), &[]);
    let list = eventually("the snapshot", || {
        let r = get(ms.addr, "/telemetry/ListMetrics");
        (r.status == 200).then_some(r)
    });
    // Our id is the producer's tag, then the XXH64 of the body it emitted.
    let v = list.json();
    assert!(
        id_of_tag(&v["snapshot_id"], &etag),
        "{} from {etag}",
        v["snapshot_id"]
    );
    let id = v["snapshot_id"].as_str().unwrap();
    assert_eq!(list.header("etag"), Some(format!("\"{id}\"").as_str()));
    assert_eq!(v["fields"], serde_json::json!(fields));
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 40);
    let text = list.text();
    for (i, item) in items.iter().enumerate() {
        let id = format!("sw-{i:03}");
        assert_eq!(item["switch_id"], id.as_str(), "row order is kept");
        for (f, csv_text) in fields.iter().zip(&rows[&id]) {
            // The exact CSV spelling is in the JSON (no 0.0, no 121.50000001).
            let want: f64 = csv_text.parse().unwrap();
            assert_eq!(item[f].as_f64(), Some(want), "{id} {f}");
        }
        let first = &fields[0];
        assert!(text.contains(&format!(
            "\"switch_id\":\"{id}\",\"{first}\":{},",
            rows[&id][0]
        )));
    }
    for f in &fields {
        let r = get(
            ms.addr,
            &format!("/telemetry/GetMetric?switch_id=sw-007&metric={f}"),
        );
        assert_eq!(r.status, 200);
        let col = fields.iter().position(|x| x == f).unwrap();
        assert!(
            r.text()
                .contains(&format!("\"value\":{},", rows["sw-007"][col])),
            "{}",
            r.text()
        );
    }
}

#[test]
fn a_dead_upstream_keeps_the_last_snapshot_ageing_until_it_returns() {
    let ds = data_server(&["--interval-sec", "60"]);
    let port = ds.addr.port().to_string();
    let upstream = format!("http://{}/counters", ds.addr);
    let ms = metrics_server(&upstream, &[]);
    let before = eventually("a snapshot", || {
        let r = get(
            ms.addr,
            "/telemetry/GetMetric?switch_id=sw-001&metric=cpu_util_pct",
        );
        (r.status == 200).then(|| r.json())
    });
    drop(ds); // killed

    let err = ms.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(err["kind"], "connect", "{err}");
    let age = |ms: &Proc| -> u64 {
        let r = get(
            ms.addr,
            "/telemetry/GetMetric?switch_id=sw-001&metric=cpu_util_pct",
        );
        assert_eq!(r.status, 200, "the last good snapshot is still served");
        assert_eq!(r.json()["value"], before["value"]);
        assert_eq!(r.json()["snapshot_id"], before["snapshot_id"]);
        r.header("x-data-age-ms").unwrap().parse().unwrap()
    };
    let first_age = age(&ms);
    eventually("the age to grow", || {
        (age(&ms) > first_age + 100).then_some(())
    });
    let stats = get(ms.addr, "/stats").json();
    assert!(stats["poll_retry_count"].as_u64().unwrap() >= 1);
    assert!(
        stats["poll"]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("connect: ")
    );

    // The producer comes back on the same port with a new identity.
    let _ds = spawn(DATA_SERVER, &["--host", "127.0.0.1", "--port", &port], &[]);
    let after = eventually("recovery", || {
        let r = get(
            ms.addr,
            "/telemetry/GetMetric?switch_id=sw-001&metric=cpu_util_pct",
        );
        (r.json()["snapshot_id"] != before["snapshot_id"]).then_some(r)
    });
    assert!(
        after
            .header("x-data-age-ms")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            < first_age + 10_000
    );
    let stats = get(ms.addr, "/stats").json();
    assert_eq!(stats["poll"]["consecutive_failures"], 0);
}

#[test]
fn fault_injection_upstream_is_ridden_out() {
    let ds = data_server(&[
        "--interval-sec",
        "0.2",
        "--fault-500-pct",
        "50",
        "--fault-slow-ms",
        "100",
    ]);
    let ms = metrics_server(&format!("http://{}/counters", ds.addr), &[]);
    ms.wait_log(|v| v["event"] == "poll.error" && v["kind"] == "http_status");
    // Through the faults, snapshots keep arriving and the API keeps answering.
    let first = eventually("a snapshot", || {
        let r = get(ms.addr, "/telemetry/ListMetrics");
        (r.status == 200).then(|| r.json()["snapshot_id"].clone())
    });
    eventually("a later snapshot", || {
        let r = get(ms.addr, "/telemetry/ListMetrics");
        assert_eq!(r.status, 200);
        (r.json()["snapshot_id"] != first).then_some(())
    });
}
