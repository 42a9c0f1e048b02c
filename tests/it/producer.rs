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

/// The first cell of every row (the header skipped).
fn ids(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn shards_split_the_table_every_switch_in_exactly_one() {
    let ds = data_server(&["--switches", "50", "--interval-sec", "3600"]);
    let whole = get(ds.addr, "/counters");
    let text = whole.text();
    let header = text.lines().next().unwrap();
    let all: Vec<&str> = text.lines().skip(1).collect();
    for n in [1usize, 3, 16] {
        let mut seen = Vec::new();
        for k in 0..n {
            let r = get(ds.addr, &format!("/counters?num_shards={n}&shard={k}"));
            assert_eq!(r.status, 200, "shard {k} of {n}");
            assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
            assert_eq!(r.header("cache-control"), Some("no-store"));
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
            assert_eq!(r.header("x-snapshot-ts"), whole.header("x-snapshot-ts"));
            let shard = r.text();
            let lines: Vec<&str> = shard.lines().collect();
            assert_eq!(lines[0], header, "shard {k} of {n}");
            // Rows k, k + n, …: in the table's order.
            let want: Vec<&str> = all.iter().skip(k).step_by(n).copied().collect();
            assert_eq!(lines[1..], want[..], "shard {k} of {n}");
            seen.extend(ids(&shard));
        }
        seen.sort();
        let mut every = ids(&text);
        every.sort();
        assert_eq!(seen, every, "{n} shards: every switch exactly once");
    }
    // One shard of one is the whole table, byte for byte, under its tag.
    let one = get(ds.addr, "/counters?num_shards=1&shard=0");
    assert_eq!(one.body, whole.body);
    assert_eq!(one.header("etag"), whole.header("etag"));
    // More shards than switches: some are the header alone.
    let empty = get(ds.addr, "/counters?num_shards=1024&shard=1023");
    assert_eq!(empty.status, 200);
    assert_eq!(empty.text(), format!("{header}\n"));
}

#[test]
fn a_switch_keeps_its_shard_as_the_fleet_grows() {
    for switches in ["8", "100"] {
        let ds = data_server(&["--switches", switches]);
        let shard = ids(&get(ds.addr, "/counters?num_shards=4&shard=1").text());
        assert_eq!(shard[..2], ["sw-001", "sw-005"], "{switches} switches");
        assert_eq!(shard.len(), switches.parse::<usize>().unwrap() / 4);
    }
}

#[test]
fn bad_shard_parameters_are_400_naming_the_parameter() {
    let ds = data_server(&["--switches", "8"]);
    for (query, want) in [
        (
            "num_shards=4",
            "missing query parameter: shard (num_shards and shard go together)",
        ),
        (
            "shard=1",
            "missing query parameter: num_shards (num_shards and shard go together)",
        ),
        (
            "num_shards=four&shard=1",
            "invalid num_shards: four (want an integer 1..=1024)",
        ),
        (
            "num_shards=4&shard=-1",
            "invalid shard: -1 (want an integer 0..=3 for num_shards=4)",
        ),
        (
            "num_shards=4&shard=%201",
            "invalid shard:  1 (want an integer 0..=3 for num_shards=4)",
        ),
        (
            "num_shards=4&shard=4",
            "invalid shard: 4 (want an integer 0..=3 for num_shards=4)",
        ),
        (
            "num_shards=0&shard=0",
            "invalid num_shards: 0 (want an integer 1..=1024)",
        ),
        (
            "num_shards=1025&shard=0",
            "invalid num_shards: 1025 (want an integer 1..=1024)",
        ),
        (
            "num_shards=4&shard=1&shard=2",
            "repeated query parameter: shard",
        ),
        (
            "num_shards=4&shard=1&shards=2",
            "unknown query parameter: shards (want one of num_shards, shard, sharding_field)",
        ),
    ] {
        let r = get(ds.addr, &format!("/counters?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{query}"
        );
        assert_eq!(r.json(), serde_json::json!({ "error": want }), "{query}");
    }
    // A long value is clipped in the message.
    let r = get(
        ds.addr,
        &format!("/counters?num_shards={}&shard=0", "7".repeat(4000)),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.len() < 300, "{}", r.text());
    // The other endpoints still take nothing.
    let r = get(ds.addr, "/health?num_shards=1&shard=0");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        "unknown query parameter: num_shards (this endpoint takes none)"
    );
}

#[test]
fn each_shard_has_its_own_tag_and_304() {
    let ds = data_server(&["--switches", "30", "--interval-sec", "0.2"]);
    let shard = |k: usize, inm: &str| {
        let path = format!("/counters?num_shards=3&shard={k}");
        if inm.is_empty() {
            get(ds.addr, &path)
        } else {
            get_with(ds.addr, &path, &[("If-None-Match", inm)])
        }
    };
    // Three shards and the table, read within one snapshot.
    let (whole, tags) = eventually("four answers from one snapshot", || {
        let whole = get(ds.addr, "/counters");
        let answers: Vec<Reply> = (0..3).map(|k| shard(k, "")).collect();
        let ts = whole.header("x-snapshot-ts");
        answers
            .iter()
            .all(|r| r.header("x-snapshot-ts") == ts)
            .then(|| {
                let tags: Vec<String> = answers
                    .iter()
                    .map(|r| r.header("etag").unwrap().to_string())
                    .collect();
                (whole, tags)
            })
    });
    let table = whole.header("etag").unwrap().to_string();
    let id = table.trim_matches('"');
    for (k, tag) in tags.iter().enumerate() {
        assert_eq!(*tag, format!("\"{id}-s{k}of3\""));
    }
    // 304 for the shard's own tag (while its snapshot lasts); 200 for
    // another shard's or the table's.
    let not_modified = eventually("a 304 within one snapshot", || {
        let first = shard(1, "");
        let tag = first.header("etag")?.to_string();
        let r = shard(1, &tag);
        (r.status == 304).then_some((first, r, tag))
    });
    let (first, r, tag) = not_modified;
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(tag.as_str()));
    assert_eq!(r.header("content-length"), first.header("content-length"));
    assert_eq!(r.header("x-snapshot-ts"), first.header("x-snapshot-ts"));
    let other = tag.replace("-s1of3", "-s2of3");
    assert_eq!(shard(1, &other).status, 200);
    assert_eq!(shard(1, &table).status, 200);
    assert_eq!(
        get_with(ds.addr, "/counters", &[("If-None-Match", &tag)]).status,
        200
    );
    // The next tick: a new tag for every shard.
    let next = eventually("a new snapshot", || {
        let r = shard(1, &tag);
        (r.status == 200).then_some(r)
    });
    let next_tag = next.header("etag").unwrap();
    assert_ne!(next_tag, tag);
    assert!(next_tag.ends_with("-s1of3\""), "{next_tag}");
}

#[test]
fn a_shard_in_gzip_inflates_to_the_shard() {
    use std::io::Read;
    let ds = data_server(&["--switches", "200", "--interval-sec", "3600"]);
    let path = "/counters?num_shards=16&shard=5";
    let plain = get(ds.addr, path);
    let gz = get_with(ds.addr, path, &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    let tag = plain.header("etag").unwrap();
    let gz_tag = gz.header("etag").unwrap();
    assert_eq!(gz_tag, format!("{}-gz\"", tag.trim_end_matches('"')));
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut body)
        .unwrap();
    assert_eq!(body, plain.body);
    let again = get_with(
        ds.addr,
        path,
        &[("Accept-Encoding", "gzip"), ("If-None-Match", gz_tag)],
    );
    assert_eq!(again.status, 304);
    // The plain tag does not name the gzip form.
    let r = get_with(
        ds.addr,
        path,
        &[("Accept-Encoding", "gzip"), ("If-None-Match", tag)],
    );
    assert_eq!(r.status, 200);
}
