//! data_server against the contract.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn counters_is_a_csv_matrix_with_freshness_headers() {
    let ds = data_server(&["--switches", "64"]);
    let r = get(ds.addr, "/counters");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let etag = r.header("etag").unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    let ts: u64 = r.header("x-snapshot-ts").unwrap().parse().unwrap();
    let now = fabric_telemetry::clock::epoch_ms();
    assert!(ts <= now && now - ts < 60_000);
    let text = r.text();
    assert!(!text.contains('\r'));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "switch_id,bandwidth_gbps,latency_us,packet_errors,cpu_util_pct,mem_util_pct,buffer_occupancy_pct,egress_drops_per_s,temperature_c"
    );
    assert_eq!(lines.len(), 65);
    assert!(lines[1].starts_with("sw-000,"));
    assert!(lines[64].starts_with("sw-063,"));
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 9, "{line}");
        for (i, c) in cells[1..].iter().enumerate() {
            let v: f64 = c.parse().unwrap();
            assert!(v.is_finite() && v >= 0.0, "{line}");
            if i == 2 || i == 6 {
                assert!(!c.contains('.'), "integer column in {line}");
            }
        }
    }
}

#[test]
fn ids_keep_three_digits_as_the_fleet_grows() {
    let ds = data_server(&["--switches", "1200"]);
    let text = get(ds.addr, "/counters").text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1201);
    assert!(lines[1].starts_with("sw-000,"));
    assert!(lines[1000].starts_with("sw-999,"));
    assert!(lines[1001].starts_with("sw-1000,"));
    assert!(lines[1200].starts_with("sw-1199,"));
}

#[test]
fn packet_errors_count_up_on_a_few_switches_only() {
    let ds = data_server(&["--switches", "400", "--interval-sec", "0.05", "--seed", "7"]);
    let errors = |text: &str| -> Vec<u64> {
        text.lines()
            .skip(1)
            .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
            .collect()
    };
    let first = get(ds.addr, "/counters");
    let (mut tag, mut prev) = (
        first.header("etag").unwrap().to_string(),
        errors(&first.text()),
    );
    for _ in 0..20 {
        let (new_tag, cur) = eventually("a new snapshot", || {
            let r = get(ds.addr, "/counters");
            let t = r.header("etag")?.to_string();
            (t != tag).then(|| (t, errors(&r.text())))
        });
        assert!(
            cur.iter().zip(&prev).all(|(c, p)| c >= p),
            "never decreases"
        );
        (tag, prev) = (new_tag, cur);
    }
    let zero = prev.iter().filter(|&&e| e == 0).count();
    assert!(
        zero >= 340,
        "most switches count no errors: {zero} of 400 at 0"
    );
}

#[test]
fn if_none_match_in_every_form_gives_304() {
    let ds = data_server(&["--interval-sec", "60"]);
    let first = get(ds.addr, "/counters");
    let etag = first.header("etag").unwrap().to_string();
    let bare = etag.trim_matches('"').to_string();
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        "*".to_string(),
        format!("\"other\", {etag}"),
        bare,
    ] {
        let r = get_with(ds.addr, "/counters", &[("If-None-Match", &inm)]);
        assert_eq!(r.status, 304, "If-None-Match: {inm}");
        assert!(r.body.is_empty());
        // RFC 9110: a 304's Content-Length, if any, is the 200's.
        assert_eq!(r.header("content-length"), first.header("content-length"));
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("x-snapshot-ts"), first.header("x-snapshot-ts"));
    }
    let r = get_with(ds.addr, "/counters", &[("If-None-Match", "\"stale\"")]);
    assert_eq!(r.status, 200);
}

#[test]
fn every_tick_changes_the_etag_and_the_values_move_smoothly() {
    let ds = data_server(&["--interval-sec", "0.1", "--switches", "20"]);
    let first = get(ds.addr, "/counters");
    let etag = first.header("etag").unwrap().to_string();
    let second = eventually("a new snapshot", || {
        let r = get_with(ds.addr, "/counters", &[("If-None-Match", &etag)]);
        (r.status == 200).then_some(r)
    });
    assert_ne!(second.header("etag"), Some(etag.as_str()));
    let ts1: u64 = first.header("x-snapshot-ts").unwrap().parse().unwrap();
    let ts2: u64 = second.header("x-snapshot-ts").unwrap().parse().unwrap();
    assert!(ts2 > ts1);
    ds.wait_log(|v| v["event"] == "gen.tick" && v["switches"] == 20);
}

#[test]
fn a_seed_makes_values_reproducible_but_never_the_etag() {
    let a = data_server(&["--seed", "42", "--switches", "10", "--interval-sec", "60"]);
    let b = spawn(
        DATA_SERVER,
        &["--switches", "10", "--interval-sec", "60"],
        &[("DATA_SEED", "42")],
    );
    let (ra, rb) = (get(a.addr, "/counters"), get(b.addr, "/counters"));
    assert_eq!(ra.body, rb.body);
    assert_ne!(ra.header("etag"), rb.header("etag"));
    let c = data_server(&["--seed", "43", "--switches", "10"]);
    assert_ne!(get(c.addr, "/counters").body, ra.body);
}

#[test]
fn fault_500_answers_text_and_is_logged() {
    let ds = data_server(&["--fault-500-pct", "100"]);
    let r = get(ds.addr, "/counters");
    assert_eq!(r.status, 500);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(!r.body.is_empty() && r.body.len() < 100);
    ds.wait_log(|v| v["event"] == "gen.inject_fault" && v["kind"] == "http_500");
    // Only /counters misbehaves.
    assert_eq!(get(ds.addr, "/health").status, 200);
}

#[test]
fn fault_500_pct_is_a_share() {
    let ds = spawn(DATA_SERVER, &[], &[("FAULT_500_PCT", "50")]);
    let fails = (0..200)
        .filter(|_| get(ds.addr, "/counters").status == 500)
        .count();
    // Binomial(200, 0.5): outside 60..=140 has odds below 1e-8.
    assert!((60..=140).contains(&fails), "{fails} of 200 failed");
}

#[test]
fn a_slow_fault_delays_only_its_own_request() {
    let ds = data_server(&["--fault-slow-ms", "60000"]);
    let addr = ds.addr;
    // Far more requests than workers; about a fifth will hang for a minute.
    let _hanging: Vec<_> = (0..40)
        .map(|_| std::thread::spawn(move || get(addr, "/counters")))
        .collect();
    ds.wait_log(|v| v["event"] == "gen.inject_fault" && v["kind"] == "slow");
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(get(addr, "/health").status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    // The threads are left hanging; the server is killed on drop.
}

#[test]
fn fault_slow_delays_about_a_fifth() {
    let ds = data_server(&["--fault-slow-ms", "150"]);
    let mut slow = 0;
    for _ in 0..40 {
        let t = Instant::now();
        assert_eq!(get(ds.addr, "/counters").status, 200);
        if t.elapsed() >= Duration::from_millis(150) {
            slow += 1;
        }
    }
    // Binomial(40, 0.2): 0 or more than 24 has odds below 1e-3 combined.
    assert!((1..=24).contains(&slow), "{slow} of 40 were slow");
    let v = ds.wait_log(|v| v["event"] == "gen.inject_fault" && v["kind"] == "slow");
    assert_eq!(v["delay_ms"], 150);
}

#[test]
fn health_unknown_paths_and_methods() {
    let ds = data_server(&[]);
    let r = get(ds.addr, "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"ok": true}));
    let r = get(ds.addr, "/nope");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("/nope"));
    let r = request(ds.addr, "POST", "/counters");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert!(r.json()["error"].is_string());
    let r = request(ds.addr, "HEAD", "/counters");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(r.header("etag").is_some());
    let full: usize = r.header("content-length").unwrap().parse().unwrap();
    assert!(full > 100, "HEAD tells the length of the GET");
}
