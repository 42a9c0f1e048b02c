//! TLS on the listeners (`TLS_CERT_FILE` / `TLS_KEY_FILE`), through the
//! real binaries, with a CA and certificates made by the test (tests/it/pki.rs).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::pki::{self, Pair, Pki};
use crate::support::*;

/// A server of `bin` speaking TLS with `pair`, plus `args` and `env`.
fn tls_server(bin: &str, pair: &Pair, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let [cert, key] = pair.env();
    let mut all: Vec<(&str, &str)> = vec![(cert.0, &cert.1), (key.0, &key.1)];
    all.extend_from_slice(env);
    spawn(bin, args, &all)
}

/// `curl` over HTTPS trusting `ca`: (status, body bytes).
fn curl(ca: &std::path::Path, url: &str, extra: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(extra)
        .args(["-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let mut body = out.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[split + 1..])
        .parse()
        .unwrap_or(0);
    body.truncate(split);
    (status, body)
}

fn https(addr: SocketAddr, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", addr.port())
}

#[test]
fn counters_and_get_metric_over_https_with_the_ca() {
    let pki = Pki::new("lab-ca");
    let pair = pki.server("server", "0A01");
    let client = pki::client_config(&pki.ca);

    let ds = tls_server(DATA_SERVER, &pair, &["--interval-sec", "0.2"], &[]);
    let startup = ds.wait_log(|v| v["event"] == "startup");
    assert_eq!(startup["tls"], true);
    assert_eq!(startup["tls_serial"], "0A01");
    assert!(
        startup["tls_not_after"].as_str().unwrap().ends_with('Z'),
        "{startup}"
    );
    // The test's certificates last two days: the server says so.
    let expiring = ds.wait_log(|v| v["event"] == "tls.expiring");
    assert_eq!(expiring["level"], "WARN");
    let days_left = expiring["days_left"].as_u64();
    assert!(matches!(days_left, Some(1 | 2)), "{expiring}");
    assert_eq!(expiring["not_after"], startup["tls_not_after"]);
    // /metrics says when it expires, as Unix time (openssl's -days 2).
    let (status, page) = pki::get(ds.addr, &client, "/metrics", &[]).unwrap();
    assert_eq!(status, 200);
    let expiry = expiry_sample(&page, "0A01");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (expiry - now - 2.0 * 86_400.0).abs() < 120.0,
        "{expiry} vs {now}"
    );

    let (status, body) = pki::get(ds.addr, &client, "/counters", &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("switch_id,"), "{body}");

    // The same through curl, which checks the name too (127.0.0.1 and
    // localhost are in the certificate).
    let (status, body) = curl(&pki.ca, &https(ds.addr, "/counters"), &[]);
    assert_eq!(status, 200);
    assert!(body.starts_with(b"switch_id,"));
    let url = format!("https://localhost:{}/health", ds.addr.port());
    assert_eq!(curl(&pki.ca, &url, &[]).0, 200);

    // The image's health check probes the TLS port (unverified: it only
    // asks whether the server answers).
    let probe = |url: &str| {
        Command::new(DATA_SERVER)
            .args(["--probe", url])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(probe(&https(ds.addr, "/health")), Some(0));
    assert_eq!(probe(&format!("http://{}/health", ds.addr)), Some(1));

    // A metrics_server with TLS of its own, polling the plain side of
    // another data_server.
    let plain = data_server(&["--interval-sec", "0.2"]);
    let ms = tls_server(
        METRICS_SERVER,
        &pair,
        &["--upstream-url", &plain.url("/counters"), "--poll-ms", "50"],
        &[],
    );
    let got = eventually("GetMetric over HTTPS", || {
        let (status, body) = pki::get(
            ms.addr,
            &client,
            "/telemetry/GetMetric?switch_id=sw-001&metric=latency_us",
            &[],
        )
        .ok()?;
        (status == 200).then_some(body)
    });
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(v["switch_id"], "sw-001");
    assert!(v["value"].is_number(), "{v}");
    let (_, page) = pki::get(ms.addr, &client, "/metrics", &[]).unwrap();
    assert_eq!(expiry_sample(&page, "0A01"), expiry);
    // Without TLS, no such family.
    assert!(!get(plain.addr, "/metrics").text().contains("fabric_tls_"));
}

/// The value of `/metrics`' certificate-expiry sample for `serial`.
fn expiry_sample(page: &str, serial: &str) -> f64 {
    let prefix = format!("fabric_tls_cert_not_after_timestamp_seconds{{serial=\"{serial}\"}} ");
    let line = page
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{page}"));
    line[prefix.len()..].parse().unwrap()
}

#[test]
fn big_answers_gzip_and_streams_work_over_tls() {
    let pki = Pki::new("big");
    let pair = pki.server("server", "0B01");
    let ds = tls_server(
        DATA_SERVER,
        &pair,
        &["--switches", "20000", "--interval-sec", "0.5"],
        &[],
    );
    // ~900 KB of CSV, in many TLS records.
    let (status, body) = curl(&pki.ca, &https(ds.addr, "/counters"), &[]);
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text.lines().count(), 20_001, "a header and every switch");
    assert!(text.len() > 500_000);
    let (status, gz) = curl(&pki.ca, &https(ds.addr, "/counters"), &["--compressed"]);
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(gz).unwrap().lines().count(), 20_001);

    // Keep-alive: several answers on one TLS connection (curl reuses it).
    let url = https(ds.addr, "/counters");
    let (status, both) = curl(&pki.ca, &url, &["-o", "/dev/null", &url]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&both));

    // Server-Sent Events from a TLS metrics_server.
    let stream = data_stream(&pki, &pair);
    assert!(stream.contains("\ndata: {"), "{stream}");
}

/// Two seconds of `/telemetry/stream` from a TLS metrics_server fed by a
/// plain data_server.
fn data_stream(pki: &Pki, pair: &Pair) -> String {
    let ds = data_server(&["--interval-sec", "0.2"]);
    let ms = tls_server(
        METRICS_SERVER,
        pair,
        &["--upstream-url", &ds.url("/counters"), "--poll-ms", "50"],
        &[],
    );
    eventually("a first snapshot", || {
        let client = pki::client_config(&pki.ca);
        let (s, _) = pki::get(ms.addr, &client, "/telemetry/ListMetrics", &[]).ok()?;
        (s == 200).then_some(())
    });
    let out = Command::new("curl")
        .args(["-sSN", "--max-time", "2", "--cacert"])
        .arg(&pki.ca)
        .arg(https(ms.addr, "/telemetry/stream?fields=latency_us"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn plain_http_to_a_tls_port_is_answered_400_and_closed_at_once() {
    let pki = Pki::new("plain");
    let pair = pki.server("server", "0C01");
    let ds = tls_server(DATA_SERVER, &pair, &[], &[]);
    for _ in 0..50 {
        let started = Instant::now();
        let reply = raw(ds.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        // raw() read until the server closed: no thread waits on it.
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(reply.status, 400);
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(reply.text().contains("HTTPS"), "{}", reply.text());
    }
    // Every one logged like any refusal, and the server still serves.
    ds.wait_log(|v| v["event"] == "http.access" && v["status"] == 400);
    let client = pki::client_config(&pki.ca);
    assert_eq!(pki::get(ds.addr, &client, "/health", &[]).unwrap().0, 200);
    assert!(ds.threads() < 40, "threads: {}", ds.threads());
}

#[test]
fn silent_and_stalled_handshakes_do_not_stop_a_normal_client() {
    let pki = Pki::new("silent");
    let pair = pki.server("server", "0D01");
    let ds = tls_server(DATA_SERVER, &pair, &["--idle-timeout-ms", "1000"], &[]);
    let client = pki::client_config(&pki.ca);

    // 100 clients that connect and never start a handshake, and one that
    // sends half a ClientHello record and stops.
    let silent: Vec<TcpStream> = (0..100).map(|_| connect(ds.addr)).collect();
    let mut stalled = connect(ds.addr);
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();

    let started = Instant::now();
    let (status, _) = pki::get(ds.addr, &client, "/health", &[]).unwrap();
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    // The handshake deadline (the idle timeout here) lets them all go.
    for mut s in silent.into_iter().chain([stalled]) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 64];
        let ended = matches!(s.read(&mut buf), Ok(0) | Err(_));
        assert!(ended && t.elapsed() < Duration::from_secs(4));
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    eventually("threads back", || (ds.threads() < 40).then_some(()));
}

#[test]
fn connection_caps_count_tls_connections_and_refuse_through_tls() {
    let pki = Pki::new("caps");
    let pair = pki.server("server", "0E01");
    let ds = tls_server(DATA_SERVER, &pair, &["--max-connections", "16"], &[]);
    let client = pki::client_config(&pki.ca);
    // 16 connections with a finished handshake, held open.
    let held: Vec<_> = (0..16)
        .map(|_| pki::connect(ds.addr, &client).unwrap())
        .collect();
    // The next one gets its 503 as an HTTPS answer.
    let (status, body) = pki::get(ds.addr, &client, "/health", &[]).unwrap();
    assert_eq!(status, 503, "{body}");
    drop(held);
    eventually("served again once the held ones closed", || {
        let (status, _) = pki::get(ds.addr, &client, "/health", &[]).ok()?;
        (status == 200).then_some(())
    });
}

#[test]
fn idle_tls_connections_are_closed_and_versions_before_1_2_refused() {
    let pki = Pki::new("idle");
    let pair = pki.server("server", "0F01");
    let ds = tls_server(DATA_SERVER, &pair, &["--idle-timeout-ms", "500"], &[]);
    let client = pki::client_config(&pki.ca);
    let mut tls = pki::connect(ds.addr, &client).unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tls.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Then silence: the server ends the connection after the idle timeout.
    let t = Instant::now();
    let ended = loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break t.elapsed(),
            Ok(_) => {}
        }
    };
    assert!(
        ended >= Duration::from_millis(400) && ended < Duration::from_secs(3),
        "{ended:?}"
    );

    // TLS 1.1 is refused; 1.2 and 1.3 are served.
    let url = https(ds.addr, "/health");
    assert_eq!(curl(&pki.ca, &url, &["--tls-max", "1.1"]).0, 0);
    assert_eq!(
        curl(&pki.ca, &url, &["--tlsv1.2", "--tls-max", "1.2"]).0,
        200
    );
    assert_eq!(curl(&pki.ca, &url, &["--tlsv1.3"]).0, 200);
}

#[test]
fn rsa_keys_in_pkcs1_files_are_served() {
    let pki = Pki::new("rsa");
    let pair = pki.server_rsa("rsa", "1A01");
    let ds = tls_server(DATA_SERVER, &pair, &[], &[]);
    let client = pki::client_config(&pki.ca);
    assert_eq!(pki::get(ds.addr, &client, "/health", &[]).unwrap().0, 200);
}

/// Replaces `dst` with `src`'s bytes in one rename, as deploy tools do.
fn install(src: &std::path::Path, dst: &std::path::Path) {
    let tmp = dst.with_extension("tmp");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

const SIGHUP: i32 = 1;

#[test]
fn sighup_rotates_the_certificate_and_a_bad_pair_keeps_the_old_one() {
    let pki = Pki::new("rotate");
    let first = pki.server("first", "01AA");
    let second = pki.server("second", "02BB");
    let other = pki.server("other", "03CC");
    // The files the server is told about; rotated in place.
    let live = Pair {
        cert: pki.dir.join("live.pem"),
        key: pki.dir.join("live.key"),
    };
    install(&first.cert, &live.cert);
    install(&first.key, &live.key);
    let ds = tls_server(DATA_SERVER, &live, &[], &[]);
    let client = pki::client_config(&pki.ca);
    let seen = |addr| -> Vec<u8> {
        let tls = pki::connect(addr, &client).unwrap();
        tls.conn.peer_certificates().unwrap()[0].to_vec()
    };
    assert_eq!(seen(ds.addr), first.der());

    // A connection opened before the rotation.
    let mut before = pki::connect(ds.addr, &client).unwrap();

    install(&second.cert, &live.cert);
    install(&second.key, &live.key);
    ds.signal(SIGHUP);
    let line = ds.wait_log(|v| v["event"] == "tls.reload");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["serial"], "02BB");
    assert_eq!(line["previous_serial"], "01AA");
    assert_eq!(seen(ds.addr), second.der(), "new connections, new pair");
    let (_, page) = pki::get(ds.addr, &client, "/metrics", &[]).unwrap();
    expiry_sample(&page, "02BB");
    assert!(!page.contains("01AA"), "{page}");

    // The old connection is undisturbed.
    before
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = before.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(
        before.conn.peer_certificates().unwrap()[0].to_vec(),
        first.der()
    );

    // A key that does not belong to the certificate: refused, old kept.
    install(&other.key, &live.key);
    ds.signal(SIGHUP);
    let line = ds.wait_log(|v| v["event"] == "tls.reload" && v["level"] == "ERROR");
    assert_eq!(line["kept_serial"], "02BB", "{line}");
    assert!(
        line["error"].as_str().unwrap().contains("TLS_KEY_FILE"),
        "{line}"
    );
    assert_eq!(seen(ds.addr), second.der());

    // A missing certificate file: the same.
    std::fs::remove_file(&live.cert).unwrap();
    ds.signal(SIGHUP);
    eventually("a second ERROR", || {
        let errors = ds
            .logs()
            .into_iter()
            .filter(|v| v["event"] == "tls.reload" && v["level"] == "ERROR")
            .count();
        (errors == 2).then_some(())
    });
    assert_eq!(seen(ds.addr), second.der());

    // Repaired: the next SIGHUP takes it.
    install(&other.cert, &live.cert);
    ds.signal(SIGHUP);
    ds.wait_log(|v| v["event"] == "tls.reload" && v["serial"] == "03CC");
    assert_eq!(seen(ds.addr), other.der());
}

#[test]
fn sighup_without_tls_is_logged_and_harmless() {
    let mut ds = data_server(&[]);
    ds.signal(SIGHUP);
    ds.wait_log(|v| v["event"] == "reload");
    assert!(ds.is_running());
    assert_eq!(get(ds.addr, "/health").status, 200);
}

#[test]
fn bad_tls_knobs_exit_2_with_one_line_naming_the_knob() {
    let pki = Pki::new("knobs");
    let pair = pki.server("server", "0101");
    let other = pki.server("other", "0202");
    let garbage = pki.file("garbage.pem", b"not a certificate\n");
    let cert = pair.cert.to_str().unwrap();
    let key = pair.key.to_str().unwrap();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("TLS_CERT_FILE", cert)], "TLS_KEY_FILE"),
        (vec![("TLS_KEY_FILE", key)], "TLS_CERT_FILE"),
        (
            vec![
                ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
                ("TLS_KEY_FILE", key),
            ],
            "TLS_CERT_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", garbage.to_str().unwrap()),
                ("TLS_KEY_FILE", key),
            ],
            "TLS_CERT_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", cert),
                ("TLS_KEY_FILE", garbage.to_str().unwrap()),
            ],
            "TLS_KEY_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", cert),
                ("TLS_KEY_FILE", other.key.to_str().unwrap()),
            ],
            "private key of the certificate",
        ),
        // A certificate given as the key.
        (
            vec![("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", cert)],
            "TLS_KEY_FILE",
        ),
    ];
    for bin in [DATA_SERVER, METRICS_SERVER] {
        for (env, expect) in &cases {
            let mut p = spawn_raw(bin, &["--port", "0"], env);
            let status = p.wait_exit();
            let err = p.stderr_text();
            assert_eq!(status.code(), Some(2), "{env:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{env:?}: {err}");
            assert!(err.contains(expect), "{env:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn metrics_server_polls_a_tls_data_server_and_fails_cleanly_on_a_wrong_ca() {
    let pki = Pki::new("upstream");
    let pair = pki.server("producer", "5A01");
    let ds = tls_server(DATA_SERVER, &pair, &["--interval-sec", "0.2"], &[]);
    let upstream = https(ds.addr, "/counters");
    let ca = pki.ca.to_str().unwrap();

    // Trusting the CA: served, as over plain HTTP.
    let ms = metrics_server(&upstream, &["--upstream-ca-file", ca]);
    let v = eventually("a value polled over HTTPS", || {
        let r = get(
            ms.addr,
            "/telemetry/GetMetric?switch_id=sw-003&metric=cpu_util_pct",
        );
        (r.status == 200).then(|| r.json())
    });
    assert!(v["value"].is_number(), "{v}");
    // Conditional polls work over TLS too: 304s follow.
    eventually("a 304 over HTTPS", || {
        let s = get(ms.addr, "/stats").json();
        (s["poll"]["not_modified_304"].as_u64() > Some(0)).then_some(())
    });

    // Another CA: every poll fails as kind tls, naming the reason, and the
    // server goes on answering.
    let other = Pki::new("other-ca");
    let mut wrong = metrics_server(
        &upstream,
        &["--upstream-ca-file", other.ca.to_str().unwrap()],
    );
    let line = wrong.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(line["kind"], "tls", "{line}");
    assert!(
        line["reason"].as_str().unwrap().contains("UnknownIssuer"),
        "{line}"
    );
    eventually("tls errors counted", || {
        let s = get(wrong.addr, "/stats").json();
        (s["poll"]["errors_by_kind"]["tls"].as_u64() >= Some(2)).then_some(())
    });
    assert_eq!(get(wrong.addr, "/ready").status, 503);
    assert!(wrong.is_running());

    // The bundled Mozilla roots do not know a lab CA either.
    let bundled = metrics_server(&upstream, &[]);
    let line = bundled.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(line["kind"], "tls", "{line}");

    // http:// to the TLS port: the producer's 400 says why.
    let plain = metrics_server(&format!("http://{}/counters", ds.addr), &[]);
    let line = plain.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(
        line["reason"], "http: upstream answered 400: plain HTTP sent to an HTTPS port",
        "{line}"
    );
}

#[test]
fn garbage_handshakes_are_refused_and_the_server_carries_on() {
    let pki = Pki::new("garbage");
    let pair = pki.server("server", "0777");
    let ds = tls_server(DATA_SERVER, &pair, &["--idle-timeout-ms", "2000"], &[]);
    let client = pki::client_config(&pki.ca);
    let mut rng = fastrand::Rng::with_seed(14);
    let mut cases: Vec<Vec<u8>> = vec![
        // A handshake record claiming 64 KiB.
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01],
        // A record of an unknown type, one of application data too early,
        // an alert, and a ClientHello of zeros.
        vec![0x42, 0x03, 0x03, 0x00, 0x01, 0x00],
        vec![0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5],
        vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
        [&[0x16, 0x03, 0x01, 0x00, 0x40][..], &[0u8; 0x40][..]].concat(),
    ];
    for _ in 0..100 {
        let len = rng.usize(1..600);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        bytes[0] = 0x16;
        cases.push(bytes);
    }
    for bytes in &cases {
        let mut s = connect(ds.addr);
        let _ = s.write_all(bytes);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        // Refused at once, or (a record cut short) at the handshake deadline.
        assert!(t.elapsed() < Duration::from_secs(4), "{bytes:02x?}");
    }
    assert_eq!(pki::get(ds.addr, &client, "/health", &[]).unwrap().0, 200);
    eventually("threads back", || (ds.threads() < 40).then_some(()));
}
