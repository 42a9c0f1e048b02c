//! Command line, exit codes, signals and logs of both binaries.

use crate::support::*;

const DATA_KNOBS: [(&str, &str); 8] = [
    ("DATA_HOST", "--host"),
    ("DATA_PORT", "--port"),
    ("DATA_SWITCHES", "--switches"),
    ("DATA_INTERVAL_SEC", "--interval-sec"),
    ("DATA_SEED", "--seed"),
    ("FAULT_500_PCT", "--fault-500-pct"),
    ("FAULT_SLOW_MS", "--fault-slow-ms"),
    ("LOG_LEVEL", "--log-level"),
];

const METRICS_KNOBS: [(&str, &str); 5] = [
    ("METRICS_HOST", "--host"),
    ("METRICS_PORT", "--port"),
    ("UPSTREAM_URL", "--upstream-url"),
    ("POLL_MS", "--poll-ms"),
    ("LOG_LEVEL", "--log-level"),
];

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_to_end(bin, args, env)
}

#[test]
fn help_lists_every_knob_with_its_default() {
    for (bin, knobs) in [
        (DATA_SERVER, &DATA_KNOBS[..]),
        (METRICS_SERVER, &METRICS_KNOBS[..]),
    ] {
        let (code, out, err) = run(bin, &["--help"], &[]);
        assert_eq!(code, 0, "{bin}: {err}");
        for (env, flag) in knobs {
            assert!(
                out.contains(env) && out.contains(flag),
                "{bin} --help lacks {env}/{flag}:\n{out}"
            );
        }
    }
    for bin in [DATA_SERVER, METRICS_SERVER] {
        let (_, out, _) = run(bin, &["--help"], &[]);
        assert!(out.contains("MAX_CONNECTIONS_PER_IP") && out.contains("--max-connections-per-ip"));
        // The ENV column starts at the same place on every knob's line,
        // however long its flag.
        let starts: std::collections::BTreeSet<usize> = out
            .lines()
            .filter(|l| l.starts_with("  --") && !l.contains("--probe"))
            .map(|l| {
                let after_flag = 2 + l[2..].find(' ').unwrap();
                after_flag + l[after_flag..].find(|c: char| c != ' ').unwrap()
            })
            .collect();
        assert_eq!(starts.len(), 1, "{bin} --help columns: {starts:?}\n{out}");
    }
    let (_, out, _) = run(DATA_SERVER, &["-h"], &[]);
    assert!(out.contains("9001") && out.contains("64"));
    let (_, out, _) = run(METRICS_SERVER, &["--help"], &[]);
    assert!(out.contains("http://127.0.0.1:9001/counters") && out.contains("1500"));
}

#[test]
fn version_prints_the_package_version() {
    for bin in [DATA_SERVER, METRICS_SERVER] {
        let (code, out, _) = run(bin, &["--version"], &[]);
        assert_eq!(code, 0);
        assert!(out.trim().ends_with(env!("CARGO_PKG_VERSION")), "{out}");
    }
}

#[test]
fn bad_values_exit_2_with_one_line_naming_the_knob() {
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (DATA_SERVER, &["--port", "http"], &[], "DATA_PORT"),
        (DATA_SERVER, &[], &[("DATA_SWITCHES", "0")], "DATA_SWITCHES"),
        (
            DATA_SERVER,
            &[],
            &[("DATA_SWITCHES", "lots")],
            "DATA_SWITCHES",
        ),
        (
            DATA_SERVER,
            &["--interval-sec", "0"],
            &[],
            "DATA_INTERVAL_SEC",
        ),
        (
            DATA_SERVER,
            &[],
            &[("FAULT_500_PCT", "150")],
            "FAULT_500_PCT",
        ),
        (
            DATA_SERVER,
            &[],
            &[("FAULT_SLOW_MS", "-1")],
            "FAULT_SLOW_MS",
        ),
        (DATA_SERVER, &[], &[("DATA_SEED", "x")], "DATA_SEED"),
        (DATA_SERVER, &[], &[("LOG_LEVEL", "LOUD")], "LOG_LEVEL"),
        (DATA_SERVER, &["--bogus"], &[], "--bogus"),
        (DATA_SERVER, &["--switches"], &[], "--switches"),
        (DATA_SERVER, &["stray"], &[], "stray"),
        (METRICS_SERVER, &[], &[("POLL_MS", "fast")], "POLL_MS"),
        (
            METRICS_SERVER,
            &[],
            &[("METRICS_PORT", "99999")],
            "METRICS_PORT",
        ),
        (
            METRICS_SERVER,
            &["--upstream-url", "ftp://x/"],
            &[],
            "UPSTREAM_URL",
        ),
        (
            METRICS_SERVER,
            &["--log-level", "verbose"],
            &[],
            "LOG_LEVEL",
        ),
        (
            METRICS_SERVER,
            &["--max-connections-per-ip", "-1"],
            &[],
            "MAX_CONNECTIONS_PER_IP",
        ),
        (
            DATA_SERVER,
            &[],
            &[("MAX_CONNECTIONS_PER_IP", "many")],
            "MAX_CONNECTIONS_PER_IP",
        ),
    ];
    for (bin, args, env, knob) in cases {
        let (code, out, err) = run(bin, args, env);
        assert_eq!(code, 2, "{bin} {args:?} {env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(knob), "{err} should name {knob}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.is_empty());
    }
}

#[test]
fn a_flag_beats_the_environment() {
    let ds = spawn(DATA_SERVER, &["--switches", "5"], &[("DATA_SWITCHES", "9")]);
    assert_eq!(get(ds.addr, "/counters").text().lines().count(), 6);
    let ds = spawn(DATA_SERVER, &[], &[("DATA_SWITCHES", "9")]);
    assert_eq!(get(ds.addr, "/counters").text().lines().count(), 10);
}

#[test]
fn sigterm_and_sigint_exit_0_after_logging_shutdown() {
    for (sig, name) in [(15, "SIGTERM"), (2, "SIGINT")] {
        for bin in [DATA_SERVER, METRICS_SERVER] {
            let mut p = spawn(bin, &[], &[]);
            get(p.addr, "/health");
            p.signal(sig);
            let status = p.wait_exit();
            assert_eq!(status.code(), Some(0), "{bin} on {name}");
            let logs = p.logs();
            let last = logs.last().unwrap();
            assert_eq!(last["event"], "shutdown", "{bin}");
            assert_eq!(last["signal"], name);
        }
    }
}

#[test]
fn every_log_line_is_ndjson_with_ts_level_event() {
    let ds = spawn(
        DATA_SERVER,
        &["--interval-sec", "0.05"],
        &[("LOG_LEVEL", "debug")],
    );
    let ms = metrics_server(
        &format!("http://{}/counters", ds.addr),
        &["--log-level", "DEBUG"],
    );
    for _ in 0..3 {
        get(ms.addr, "/telemetry/ListMetrics");
    }
    ms.wait_log(|v| v["event"] == "poll.run" && v["status"] == 200);
    let access =
        ms.wait_log(|v| v["event"] == "http.access" && v["path"] == "/telemetry/ListMetrics");
    for k in ["method", "path", "status", "duration_ms", "bytes"] {
        assert!(!access[k].is_null(), "http.access lacks {k}: {access}");
    }
    ds.wait_log(|v| v["event"] == "http.access" && v["path"] == "/counters");
    let head = request(ms.addr, "HEAD", "/telemetry/ListMetrics");
    assert!(head.body.is_empty());
    let v = ms.wait_log(|v| v["event"] == "http.access" && v["method"] == "HEAD");
    assert_eq!(v["bytes"], 0, "nothing but the head went out");
    for p in [&ds, &ms] {
        assert_eq!(
            p.logs()[0]["event"],
            "startup",
            "the first line a script reads"
        );
        for v in p.logs() {
            let ts = v["ts"].as_str().unwrap();
            assert!(
                ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "{ts}"
            );
            assert!(["DEBUG", "INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap()));
            assert!(v["event"].is_string());
        }
    }
}

#[test]
fn log_level_filters_but_startup_is_always_written() {
    let ds = spawn(
        DATA_SERVER,
        &[
            "--interval-sec",
            "0.02",
            "--log-level",
            "warn",
            "--fault-500-pct",
            "100",
        ],
        &[],
    );
    // Several ticks and INFO-level requests happen first...
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_millis(200) {
        assert_eq!(get(ds.addr, "/nope").status, 404);
    }
    // ...then a 500, whose access line is WARN: once it is out, so is all before it.
    assert_eq!(get(ds.addr, "/counters").status, 500);
    ds.wait_log(|v| v["event"] == "http.access" && v["status"] == 500 && v["level"] == "WARN");
    let events: Vec<String> = ds
        .logs()
        .iter()
        .map(|v| v["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("startup"));
    assert_eq!(
        events.len(),
        2,
        "only startup and the WARN line: {events:?}"
    );
}

#[test]
fn a_taken_port_exits_1_with_a_message() {
    let first = data_server(&[]);
    let port = first.addr.port().to_string();
    let (code, _, err) = run(DATA_SERVER, &["--host", "127.0.0.1", "--port", &port], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot listen"), "{err}");
}

#[test]
fn a_client_that_stops_reading_cannot_hold_up_shutdown() {
    use std::io::{Read, Write};
    // ~18 MB of CSV: more than loopback socket buffers hold.
    let mut p = data_server(&["--switches", "300000", "--interval-sec", "60"]);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.write_all(b"GET /counters HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read the first bytes (the worker is writing), then never again.
    let mut head = [0u8; 64];
    s.read_exact(&mut head).unwrap();
    let t = std::time::Instant::now();
    p.signal(15);
    let status = p.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    let last = p.logs().pop().unwrap();
    assert_eq!(last["event"], "shutdown");
    // The big answer is written off the worker pool, so no worker is busy.
    assert!(last["busy_workers_abandoned"].as_u64().unwrap() <= 1);
    drop(s);
}

#[test]
fn probe_is_a_health_check_for_images_without_curl() {
    let ms = metrics_server("http://127.0.0.1:9/counters", &[]);
    let health = format!("http://{}/health", ms.addr);
    let ready = format!("http://{}/ready", ms.addr);
    assert_eq!(run(METRICS_SERVER, &["--probe", &health], &[]).0, 0);
    let (code, _, err) = run(METRICS_SERVER, &["--probe", &ready], &[]);
    assert_eq!(code, 1, "no snapshot yet: not ready");
    assert!(err.contains("503"), "{err}");
    assert_eq!(
        run(DATA_SERVER, &["--probe", "http://127.0.0.1:9/health"], &[]).0,
        1
    );
    assert_eq!(run(DATA_SERVER, &["--probe"], &[]).0, 2);
    assert_eq!(
        run(DATA_SERVER, &["--probe", "ftp://x/"], &[]).0,
        2,
        "not a URL: usage"
    );
}
