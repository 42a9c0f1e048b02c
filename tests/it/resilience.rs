//! metrics_server against a sick upstream: backoff spacing, the circuit
//! breaker, the staleness policy, /ready, and the upstream limits.

use std::time::{Duration, Instant};

use crate::support::*;

const CSV: &str = "switch_id,a,b\nsw-000,1,2\nsw-001,3,4\n";

fn serving(ms: &Proc) {
    eventually("a snapshot", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 200).then_some(())
    });
}

#[test]
fn failed_polls_back_off_with_jitter_under_the_cap() {
    let up = FakeUpstream::start(Script::status(500));
    let _ms = metrics_server(
        &up.url(),
        &[
            "--poll-ms",
            "20",
            "--poll-backoff-max-ms",
            "320",
            "--breaker-failures",
            "1000",
        ],
    );
    eventually("14 polls", || (up.arrivals().len() >= 14).then_some(()));
    let t = up.arrivals();
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    for (k, gap) in gaps.iter().take(13).enumerate() {
        // After k+1 failures: at most min(cap, period × 2^(k+1)), plus slack.
        let bound = Duration::from_millis((20u64 << (k + 1)).min(320) + 60);
        assert!(*gap <= bound, "gap {k} = {gap:?} > {bound:?}: {gaps:?}");
    }
    // Jitter spreads them; capped ones average about half the cap.
    let late: Duration = gaps[5..13].iter().sum::<Duration>() / 8;
    assert!(
        late >= Duration::from_millis(60),
        "backed off too little: {gaps:?}"
    );
    let early: Duration = gaps[..3].iter().sum::<Duration>() / 3;
    assert!(late > early, "no growth: {gaps:?}");
}

#[test]
fn a_reused_tag_with_another_snapshot_time_is_fetched_again() {
    // A producer restarted: tag "2" again, but other data from another time.
    let up = FakeUpstream::start(
        Script::csv("\"2\"", CSV).with_header("X-Snapshot-Ts", "1796000000000"),
    );
    let ms = metrics_server(&up.url(), &["--poll-ms", "50"]);
    serving(&ms);
    let old = get(ms.addr, "/telemetry/ListMetrics").json()["snapshot_id"].clone();
    assert!(id_of_tag(&old, "2"), "{old}");
    let fresh = "switch_id,a,b\nsw-000,7,8\n";
    up.set(Script::csv("\"2\"", fresh).with_header("X-Snapshot-Ts", "1796000005000"));
    let reused = ms.wait_log(|v| v["event"] == "poll.tag_reused");
    assert_eq!(reused["etag"], "\"2\"");
    assert_eq!(reused["held_ts_ms"], 1796000000000u64);
    assert_eq!(reused["ts_ms"], 1796000005000u64);
    let new = eventually("the new data served", || {
        let v = get(ms.addr, "/telemetry/ListMetrics").json();
        (v["items"][0]["a"] == 7).then(|| v["snapshot_id"].clone())
    });
    // The upstream kept its tag, ours did not: a client holding the old
    // one gets the new data, never a 304.
    assert!(id_of_tag(&new, "2"), "{new}");
    assert_ne!(new, old);
    let old_tag = format!("\"{}\"", old.as_str().unwrap());
    let r = get_with(
        ms.addr,
        "/telemetry/ListMetrics",
        &[("If-None-Match", old_tag.as_str())],
    );
    assert_eq!(r.status, 200);
    let new_tag = format!("\"{}\"", new.as_str().unwrap());
    assert_eq!(r.header("etag"), Some(new_tag.as_str()));
    // Then polls go on with the tag again, and 304s confirm the new data.
    let confirmed = |v: serde_json::Value| v["poll"]["not_modified_304"].as_u64();
    let before = confirmed(get(ms.addr, "/stats").json()).unwrap();
    eventually("a conditional poll answered 304", || {
        (confirmed(get(ms.addr, "/stats").json())? > before).then_some(())
    });
    assert_eq!(up.last_if_none_match().as_deref(), Some("\"2\""));
    assert_eq!(
        get(ms.addr, "/telemetry/ListMetrics").json()["snapshot_id"],
        new
    );
}

#[test]
fn an_open_breaker_probes_when_its_cooldown_ends_whatever_the_backoff() {
    // Backoff after two failures: up to 2 s x 2^2 = 8 s; the cooldown is
    // 300 ms. The probe must follow the cooldown, not the backoff.
    let up = FakeUpstream::start(Script::csv("\"g1\"", CSV));
    let ms = metrics_server(
        &up.url(),
        &[
            "--poll-ms",
            "2000",
            "--poll-backoff-max-ms",
            "60000",
            "--breaker-failures",
            "2",
            "--breaker-cooldown-ms",
            "300",
        ],
    );
    serving(&ms);
    up.set(Script::status(503));
    // The number of breaker transitions `from` -> `to` logged so far.
    let count = |from: &str, to: &str| {
        ms.logs()
            .iter()
            .filter(|v| v["event"] == "poll.breaker" && v["from"] == from && v["to"] == to)
            .count()
    };
    for round in 0..3 {
        // Opened: by the failures (round 0), then by each failed probe.
        let (from, times) = if round == 0 {
            ("closed", 1)
        } else {
            ("half_open", round)
        };
        eventually("the breaker open", || {
            (count(from, "open") >= times).then_some(())
        });
        let opened = Instant::now();
        eventually("a probe", || {
            (count("open", "half_open") > round).then_some(())
        });
        let waited = opened.elapsed();
        assert!(
            waited < Duration::from_millis(1500),
            "round {round}: probe {waited:?} after opening (cooldown 300 ms)"
        );
    }
}

#[test]
fn the_breaker_opens_holds_off_and_closes_and_ready_follows() {
    let up = FakeUpstream::start(Script::csv("\"g1\"", CSV));
    let ms = metrics_server(
        &up.url(),
        &[
            "--poll-ms",
            "20",
            "--poll-backoff-max-ms",
            "20",
            "--breaker-failures",
            "3",
            "--breaker-cooldown-ms",
            "600",
            "--log-level",
            "debug",
        ],
    );
    serving(&ms);
    assert_eq!(get(ms.addr, "/ready").status, 200);
    up.set(Script::status(503));
    let opened = ms.wait_log(|v| v["event"] == "poll.breaker" && v["to"] == "open");
    assert_eq!(opened["from"], "closed");
    assert_eq!(opened["consecutive_failures"], 3);
    let opened_at = Instant::now();
    // The poller records the state just after logging the transition.
    let r = eventually("/ready to see the open breaker", || {
        let r = get(ms.addr, "/ready");
        (r.status == 503).then_some(r)
    });
    assert_eq!(r.json()["error"], "upstream circuit open");
    // Data is still served meanwhile (no MAX_STALE_MS).
    assert_eq!(get(ms.addr, "/telemetry/ListMetrics").status, 200);
    let stats = get(ms.addr, "/stats").json();
    assert_eq!(stats["poll"]["breaker"], "open");
    assert!(
        stats["poll"]["errors_by_kind"]["http_status"]
            .as_u64()
            .unwrap()
            >= 3
    );
    // Nothing goes upstream during the cooldown, then one probe.
    let before = up.arrivals().len();
    ms.wait_log(|v| v["event"] == "poll.breaker" && v["to"] == "half_open");
    assert!(
        opened_at.elapsed() >= Duration::from_millis(400),
        "{:?}",
        opened_at.elapsed()
    );
    assert!(
        up.arrivals().len() <= before + 1,
        "requests went out while open"
    );
    // The failed probe reopens it; a healthy upstream then closes it.
    ms.wait_log(|v| v["event"] == "poll.breaker" && v["from"] == "half_open" && v["to"] == "open");
    up.set(Script::csv("\"g2\"", CSV));
    ms.wait_log(|v| {
        v["event"] == "poll.breaker" && v["from"] == "half_open" && v["to"] == "closed"
    });
    eventually("ready again", || {
        (get(ms.addr, "/ready").status == 200).then_some(())
    });
    assert_eq!(get(ms.addr, "/stats").json()["poll"]["breaker"], "closed");
}

#[test]
fn stale_data_is_refused_past_max_stale_and_ready_says_so() {
    let up = FakeUpstream::start(Script::csv("\"s1\"", CSV));
    let ms = metrics_server(
        &up.url(),
        &["--max-stale-ms", "400", "--ready-max-age-ms", "300"],
    );
    serving(&ms);
    eventually("ready", || {
        (get(ms.addr, "/ready").json()["ready"] == true).then_some(())
    });
    up.set(Script::status(500));
    let stale = eventually("a stale answer", || {
        let r = get(ms.addr, "/telemetry/GetMetric?switch_id=sw-000&metric=a");
        (r.status == 503).then_some(r)
    });
    let v = stale.json();
    assert_eq!(v["error"], "data stale");
    assert!(v["age_ms"].as_u64().unwrap() > 400);
    assert_eq!(v["max_stale_ms"], 400);
    assert!(stale.header("x-data-age-ms").is_some());
    let r = get(ms.addr, "/ready");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "data stale");
    up.set(Script::csv("\"s2\"", CSV));
    eventually("fresh again", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 200).then_some(())
    });
}

#[test]
fn ready_before_any_snapshot_and_health_stays_pure() {
    let up = FakeUpstream::start(Script::status(500));
    let ms = metrics_server(&up.url(), &[]);
    let r = get(ms.addr, "/ready");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        serde_json::json!({"ready": false, "error": "no snapshot yet"})
    );
    assert_eq!(get(ms.addr, "/health").status, 200);
}

#[test]
fn upstream_limits_are_clean_poll_errors() {
    let big = format!(
        "switch_id,a\n{}",
        (0..200).map(|i| format!("sw-{i},1\n")).collect::<String>()
    );
    let up = FakeUpstream::start(Script::csv("\"big\"", &big));
    let ms = metrics_server(&up.url(), &["--upstream-max-bytes", "1024"]);
    ms.wait_log(|v| v["event"] == "poll.error" && v["kind"] == "body_too_large");
    let ms = metrics_server(&up.url(), &["--upstream-max-rows", "10"]);
    ms.wait_log(|v| v["event"] == "poll.error" && v["reason"] == "csv: more than 10 rows");
    let mut slow = Script::csv("\"slow\"", CSV);
    slow.delay = Duration::from_secs(3);
    let up = FakeUpstream::start(slow);
    let t = Instant::now();
    let ms = metrics_server(&up.url(), &["--upstream-timeout-ms", "200"]);
    ms.wait_log(|v| v["event"] == "poll.error" && v["kind"] == "timeout");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(
        get(ms.addr, "/stats").json()["poll"]["errors_by_kind"]["timeout"]
            .as_u64()
            .unwrap()
            >= 1
    );
}
