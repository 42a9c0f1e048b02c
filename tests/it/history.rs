//! `/telemetry/History` on the real binaries: a ticking data_server's
//! values kept snapshot by snapshot, bounded by `--history-snapshots`,
//! GetMetric's errors and tag, off at 0, and per shard.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const SW0_CPU: &str = "/telemetry/History?switch_id=sw-000&metric=cpu_util_pct";

/// The text of `column` on `switch`'s line of a `/counters` CSV body.
fn csv_value(csv: &str, switch: &str, column: &str) -> Option<String> {
    let mut lines = csv.lines();
    let col = lines.next()?.split(',').position(|c| c == column)?;
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&switch))
        .and_then(|cells| cells.get(col).map(|c| c.to_string()))
}

/// Every snapshot of `ds` seen while `until` is false: X-Snapshot-Ts → body.
fn record_ticks(ds: &Proc, mut until: impl FnMut() -> bool) -> BTreeMap<u64, String> {
    let mut seen = BTreeMap::new();
    let started = Instant::now();
    while !until() {
        assert!(started.elapsed() < PATIENCE, "the ticks never came");
        let r = get(ds.addr, "/counters");
        if let Some(ts) = r.header("x-snapshot-ts").and_then(|t| t.parse().ok()) {
            seen.entry(ts).or_insert_with(|| r.text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

/// The points of a History answer, with each value's text as sent.
fn points(body: &str) -> Vec<(u64, String)> {
    let v: Value = serde_json::from_str(body).unwrap();
    let Some(from) = body.find("\"points\":[") else {
        panic!("no points in {body}");
    };
    let texts = body[from + 10..body.len() - 2].to_string();
    let out: Vec<(u64, String)> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .zip(texts.split("],["))
        .map(|(p, text)| {
            let ts = p[0].as_u64().unwrap();
            let value = text.trim_matches(['[', ']']).split_once(',').unwrap().1;
            assert_eq!(value.parse::<f64>().ok(), p[1].as_f64(), "{body}");
            (ts, value.to_string())
        })
        .collect();
    out
}

fn stats_history(ms: &Proc) -> Value {
    get(ms.addr, "/stats").json()["history"].clone()
}

#[test]
fn history_keeps_the_last_snapshots_values_as_the_csv_wrote_them() {
    let ds = data_server(&["--switches", "16", "--interval-sec", "0.2"]);
    let ms = metrics_server(
        &format!("http://{}/counters", ds.addr),
        &["--history-snapshots", "5"],
    );
    // Bytes as the ring fills, then while it is full.
    let mut filling: Vec<(u64, u64)> = Vec::new();
    let ticks = record_ticks(&ds, || {
        let h = stats_history(&ms);
        let (entries, bytes) = (h["entries"].as_u64().unwrap(), h["bytes"].as_u64().unwrap());
        if filling.last().map(|l| l.0) != Some(entries) || entries == 5 {
            filling.push((entries, bytes));
        }
        get(ms.addr, "/stats").json()["poll"]["updated_200"].as_u64() >= Some(8)
    });
    let r = get(ms.addr, SW0_CPU);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(r.header("x-data-age-ms").is_some());
    let v = r.json();
    assert_eq!(
        (v["switch_id"].as_str(), v["metric"].as_str()),
        (Some("sw-000"), Some("cpu_util_pct"))
    );
    let pts = points(&r.text());
    assert_eq!(pts.len(), 5, "{}", r.text());
    assert!(pts.windows(2).all(|w| w[0].0 < w[1].0), "{pts:?}");
    for (ts, value) in &pts {
        // Each point is the data_server's snapshot of that time, as written.
        let Some(csv) = ticks.get(ts) else {
            // A tick the recorder missed (it polls every 20 ms): rare.
            continue;
        };
        assert_eq!(
            csv_value(csv, "sw-000", "cpu_util_pct").as_ref(),
            Some(value),
            "at {ts}"
        );
    }
    let matched = pts.iter().filter(|(ts, _)| ticks.contains_key(ts)).count();
    assert!(
        matched >= 4,
        "only {matched} of {pts:?} among {:?}",
        ticks.keys()
    );
    // The newest point is what GetMetric says now (no tick in between, or
    // the tag changed: then ask both again).
    eventually("History and GetMetric of one snapshot", || {
        let h = get(ms.addr, SW0_CPU);
        let g = get(
            ms.addr,
            "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
        );
        // History's tag is the data's and a hash of its points.
        let data = g.header("etag")?.trim_end_matches('"').to_string();
        let hist = h.header("etag")?;
        let hex = hist.strip_prefix(&format!("{data}-h"))?.strip_suffix('"')?;
        (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
        let last = points(&h.text()).pop()?;
        let value = g.json()["value"].as_f64();
        assert_eq!(last.1.parse::<f64>().ok(), value);
        Some(())
    });
    // Conditional: its tag is the fabric's; a later tick changes it.
    let tag = r.header("etag").unwrap().to_string();
    let again = get_with(ms.addr, SW0_CPU, &[("If-None-Match", &tag)]);
    assert!(
        again.status == 304 || again.header("etag") != Some(&tag),
        "{}",
        again.status
    );
    let cur = get(ms.addr, SW0_CPU);
    let cur_tag = cur.header("etag").unwrap();
    let nm = get_with(ms.addr, SW0_CPU, &[("If-None-Match", cur_tag)]);
    assert!(nm.status == 304 || nm.header("etag") != Some(cur_tag));
    // Bounded: it grew with each entry, then stayed put once full.
    let h = stats_history(&ms);
    assert_eq!(
        (h["snapshots"].as_u64(), h["entries"].as_u64()),
        (Some(5), Some(5))
    );
    let grew: Vec<u64> = filling.iter().map(|f| f.1).collect();
    let full: Vec<u64> = filling.iter().filter(|f| f.0 == 5).map(|f| f.1).collect();
    assert!(!full.is_empty() && filling.len() >= 3, "{filling:?}");
    assert!(
        grew.windows(2).take_while(|w| w[1] > w[0]).count() >= 1,
        "{filling:?}"
    );
    let (lo, hi) = (full.iter().min().unwrap(), full.iter().max().unwrap());
    assert!(hi - lo <= 64, "full ring bytes vary: {full:?}");
    // 16 switches × 8 metrics × 4 bytes × 5 entries, the ids once.
    assert!((2_560..20_000).contains(hi), "{hi}");
}

#[test]
fn history_refuses_as_get_metric_does() {
    let ds = data_server(&["--switches", "4", "--interval-sec", "3600"]);
    let ms = metrics_server(
        &format!("http://{}/counters", ds.addr),
        &["--history-snapshots", "3"],
    );
    eventually("a snapshot", || {
        (get(ms.addr, "/ready").status == 200).then_some(())
    });
    for (q, status, msg) in [
        ("switch_id=sw-000", 400, "missing query parameter: metric"),
        (
            "metric=cpu_util_pct",
            400,
            "missing query parameter: switch_id",
        ),
        (
            "switch_id=sw-000&metric=cpu_util_pct&x=1",
            400,
            "unknown query parameter: x (want one of id, switch_id, metric)",
        ),
        (
            "switch_id=sw-999&metric=cpu_util_pct",
            404,
            "unknown switch_id: sw-999",
        ),
        ("switch_id=sw-000&metric=nope", 404, "unknown metric: nope"),
    ] {
        let r = get(ms.addr, &format!("/telemetry/History?{q}"));
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (status, Some(msg)),
            "{q}"
        );
    }
    // A producer that does not tick: one point, repeated polls (304s) add none.
    std::thread::sleep(Duration::from_millis(300));
    let r = get(ms.addr, SW0_CPU);
    assert_eq!(r.json()["points"].as_array().map(Vec::len), Some(1));
    let tag = r.header("etag").unwrap();
    assert_eq!(
        get_with(ms.addr, SW0_CPU, &[("If-None-Match", tag)]).status,
        304
    );
    assert_eq!(
        get_with(ms.addr, SW0_CPU, &[("If-None-Match", "\"other\"")]).status,
        200
    );
    assert_eq!(stats_history(&ms)["entries"], 1);
    // Needs the token like GetMetric.
    let token = spawn(
        METRICS_SERVER,
        &[
            "--upstream-url",
            &format!("http://{}/counters", ds.addr),
            "--poll-ms",
            "50",
        ],
        &[("METRICS_AUTH_TOKEN", "s3cret")],
    );
    assert_eq!(get(token.addr, SW0_CPU).status, 401);
    eventually("a snapshot behind the token", || {
        let r = get_with(token.addr, SW0_CPU, &[("Authorization", "Bearer s3cret")]);
        (r.status == 200).then_some(())
    });
    // No snapshot yet: 503.
    let dead = FakeUpstream::start(Script::status(500));
    let none = metrics_server(&dead.url(), &[]);
    let r = get(none.addr, SW0_CPU);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (503, Some("no snapshot yet"))
    );
}

#[test]
fn history_snapshots_0_keeps_nothing() {
    let ds = data_server(&["--switches", "4", "--interval-sec", "0.2"]);
    let ms = metrics_server(
        &format!("http://{}/counters", ds.addr),
        &["--history-snapshots", "0"],
    );
    eventually("two snapshots", || {
        let v = get(ms.addr, "/stats").json();
        (v["poll"]["updated_200"].as_u64() >= Some(2)).then_some(())
    });
    let r = get(ms.addr, SW0_CPU);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"error":"history is off (HISTORY_SNAPSHOTS=0)"})
    );
    assert_eq!(
        stats_history(&ms),
        json!({"snapshots":0,"entries":0,"bytes":0})
    );
    // Still a 400 for a bad request.
    let r = get(ms.addr, "/telemetry/History?switch_id=sw-000");
    assert_eq!(r.status, 400);
}

#[test]
fn with_shards_a_switchs_history_is_its_own_shards() {
    // Shard a ticks, shard b does not: a's switch has a point per tick,
    // b's one; a switch both send is a's.
    let body = |v: u32| format!("switch_id,m\na,{v}.5\nboth,{v}\n");
    // Producer times: now (an implausible one would be ignored).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let t0 = now.unwrap().as_millis() as u64;
    let t = |i: u64| t0 + i * 100;
    let a = FakeUpstream::start(
        Script::csv("\"a0\"", &body(0)).with_header("X-Snapshot-Ts", &t0.to_string()),
    );
    let b = FakeUpstream::start(
        Script::csv("\"b0\"", "switch_id,m\nb,7\nboth,99\n")
            .with_header("X-Snapshot-Ts", &(t0 - 500).to_string()),
    );
    let ms = spawn(
        METRICS_SERVER,
        &[
            "--upstream-urls",
            &format!("{},{}", a.url(), b.url()),
            "--poll-ms",
            "50",
            "--history-snapshots",
            "3",
        ],
        &[],
    );
    let hist = |sw: &str| {
        let r = get(
            ms.addr,
            &format!("/telemetry/History?switch_id={sw}&metric=m"),
        );
        assert_eq!(r.status, 200, "{sw}: {}", r.text());
        r.json()["points"].clone()
    };
    eventually("both shards", || {
        (get(ms.addr, "/ready").status == 200).then_some(())
    });
    for i in 1..=4u32 {
        let ts = t(u64::from(i)).to_string();
        a.set(Script::csv(&format!("\"a{i}\""), &body(i)).with_header("X-Snapshot-Ts", &ts));
        eventually("shard a's new snapshot", || {
            let v = get(ms.addr, "/stats").json();
            id_of_tag(&v["shards"][0]["snapshot_id"], &format!("a{i}")).then_some(())
        });
    }
    assert_eq!(hist("a"), json!([[t(2), 2.5], [t(3), 3.5], [t(4), 4.5]]));
    assert_eq!(hist("both"), json!([[t(2), 2], [t(3), 3], [t(4), 4]]));
    assert_eq!(hist("b"), json!([[t0 - 500, 7]]));
    let h = stats_history(&ms);
    assert_eq!(
        (h["snapshots"].as_u64(), h["entries"].as_u64()),
        (Some(3), Some(4))
    );
}
