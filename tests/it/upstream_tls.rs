//! metrics_server polling `https://` upstreams (issue 14): the CA file, the
//! bundled roots, insecure mode, Basic credentials, TLS errors, and the
//! settings that exit 2. The upstream is the fake of `support`, speaking
//! TLS through rustls with certificates `pki` makes at test time.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use crate::pki::{Pair, Pki};
use crate::support::*;

const CSV: &str = "switch_id,cpu_util_pct,temperature_c\nsw-000,41.5,50\nsw-001,12,47.25\n";

/// `ufm-reader:s3cr3t:Pa55w0rd!` in base64, worked out apart from the
/// code under test (Python's `base64.b64encode`).
const USER: &str = "ufm-reader";
const PASSWORD: &str = "s3cr3t:Pa55w0rd!";
const BASIC: &str = "Basic dWZtLXJlYWRlcjpzM2NyM3Q6UGE1NXcwcmQh";

/// A rustls server configuration presenting `pair`.
fn server_config(pair: &Pair) -> Arc<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(&pair.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pair.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

/// The fake upstream of `support`, speaking TLS with `pair`: each
/// connection's handshake is done before its request is read; one that
/// fails (the poller refused the certificate) is dropped.
fn tls_upstream(pair: &Pair, script: Script) -> FakeUpstream {
    let config = server_config(pair);
    let wrap: Wrap = Arc::new(move |sock: std::net::TcpStream| {
        let conn = rustls::ServerConnection::new(config.clone()).ok()?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).ok()?;
        }
        Some(Box::new(tls) as Box<dyn Conn>)
    });
    FakeUpstream::start_with("https", script, wrap)
}

fn csv() -> Script {
    Script::csv("\"v1\"", CSV)
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// GetMetric's value for sw-000's CPU, once there is one.
fn cpu_of_sw000(ms: &Proc) -> Value {
    eventually("GetMetric over https", || {
        let r = get(
            ms.addr,
            "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
        );
        (r.status == 200).then(|| r.json()["value"].clone())
    })
}

fn stats(ms: &Proc) -> Value {
    get(ms.addr, "/stats").json()
}

/// Every line metrics_server wrote, stdout and stderr.
fn everything_said(ms: &Proc) -> String {
    let out: Vec<String> = ms.logs().iter().map(Value::to_string).collect();
    format!("{}\n{}", out.join("\n"), ms.stderr_text())
}

#[test]
fn polls_an_https_upstream_trusting_the_ca_file() {
    let pki = Pki::new("upstream-ca");
    let up = tls_upstream(&pki.server("up", "01"), csv());
    let ms = metrics_server(&up.url(), &["--upstream-ca-file", path(&pki.ca)]);
    let startup = ms.wait_log(|v| v["event"] == "startup");
    assert_eq!(startup["upstream_tls_roots"], "file");
    assert_eq!(startup["upstream_ca_file"], path(&pki.ca));
    assert_eq!(startup["upstream_auth"], "none");
    assert_eq!(cpu_of_sw000(&ms), serde_json::json!(41.5));
    // Later polls carry the tag and are answered 304, over TLS too.
    eventually("a 304 over https", || {
        (up.last_if_none_match().as_deref() == Some("\"v1\"")).then_some(())
    });
    let s = stats(&ms);
    assert_eq!(
        s["upstream_tls"],
        serde_json::json!({"roots": "file", "ca_file": path(&pki.ca), "insecure_skip_verify": false})
    );
    assert_eq!(s["poll"]["errors"], 0);
    assert!(ms.logs().iter().all(|v| v["event"] != "upstream.insecure"));
}

#[test]
fn an_untrusted_certificate_is_a_tls_error_and_polling_goes_on() {
    let pki = Pki::new("upstream-ca");
    let other = Pki::new("other-ca");
    let up = tls_upstream(&pki.server("up", "02"), csv());
    let ms = metrics_server(&up.url(), &["--upstream-ca-file", path(&other.ca)]);
    let e = ms.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(e["kind"], "tls", "{e}");
    assert_eq!(e["level"], "WARN");
    assert_eq!(
        e["reason"], "tls: invalid peer certificate: UnknownIssuer",
        "{e}"
    );
    // It keeps polling (and keeps failing) without dying.
    ms.wait_log(|v| v["event"] == "poll.error" && v["consecutive_failures"] == 3);
    let s = stats(&ms);
    assert!(
        s["poll"]["errors_by_kind"]["tls"].as_u64() >= Some(3),
        "{s}"
    );
    assert_eq!(
        s["poll"]["last_error"],
        "tls: invalid peer certificate: UnknownIssuer"
    );
    let metrics = get(ms.addr, "/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("fabric_poll_errors_total{kind=\"tls\"} ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let r = get(
        ms.addr,
        "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
    );
    assert_eq!(r.status, 503);
    // No request went through: every handshake was refused.
    assert!(up.requests().is_empty());

    // The bundled Mozilla roots do not know a private CA either.
    let bundled = metrics_server(&up.url(), &[]);
    let startup = bundled.wait_log(|v| v["event"] == "startup");
    assert_eq!(startup["upstream_tls_roots"], "bundled");
    let e = bundled.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(
        (&e["kind"], &e["reason"]),
        (
            &serde_json::json!("tls"),
            &serde_json::json!("tls: invalid peer certificate: UnknownIssuer")
        )
    );
    assert_eq!(stats(&bundled)["upstream_tls"]["roots"], "bundled");
}

#[test]
fn a_ca_certificate_served_as_the_leaf_is_named() {
    // What `openssl req -x509` makes unless told CA:FALSE: trusted as the
    // root, refused as the server's own certificate.
    let pki = Pki::new("lab");
    let ca_as_leaf = Pair {
        cert: pki.ca.clone(),
        key: pki.dir.join("ca.key"),
    };
    let up = tls_upstream(&ca_as_leaf, csv());
    let ms = metrics_server(&up.url(), &["--upstream-ca-file", path(&pki.ca)]);
    let e = ms.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(e["kind"], "tls", "{e}");
    assert!(
        e["reason"].as_str().is_some_and(|r| {
            r.starts_with("tls: invalid peer certificate: CaUsedAsEndEntity (")
                && r.contains("CA:FALSE")
        }),
        "{e}"
    );
}

#[test]
fn insecure_skip_verify_accepts_any_certificate_and_says_so() {
    let unknown = Pki::new("unknown-ca");
    let up = tls_upstream(&unknown.server("up", "03"), csv());
    let ms = metrics_server(&up.url(), &["--upstream-insecure-skip-verify", "true"]);
    let warn = ms.wait_log(|v| v["event"] == "upstream.insecure");
    assert_eq!(warn["level"], "WARN");
    assert_eq!(warn["upstreams"], up.url());
    let startup = ms.wait_log(|v| v["event"] == "startup");
    assert_eq!(startup["upstream_tls_roots"], "none");
    assert_eq!(cpu_of_sw000(&ms), serde_json::json!(41.5));
    let s = stats(&ms);
    assert_eq!(s["upstream_tls"]["insecure_skip_verify"], true);
    assert_eq!(s["upstream_tls"]["roots"], "none");
}

#[test]
fn basic_credentials_are_sent_exactly_and_never_shown() {
    let pki = Pki::new("upstream-ca");
    let up = tls_upstream(&pki.server("up", "04"), csv());
    let pw = pki.file("password", format!("{PASSWORD}\n").as_bytes());
    let ms = metrics_server(
        &up.url(),
        &[
            "--upstream-ca-file",
            path(&pki.ca),
            "--upstream-basic-auth-user",
            USER,
            "--upstream-basic-auth-password-file",
            path(&pw),
            "--log-level",
            "debug",
        ],
    );
    assert_eq!(cpu_of_sw000(&ms), serde_json::json!(41.5));
    let requests = up.requests();
    assert!(!requests.is_empty());
    for headers in &requests {
        let auth: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(auth, [BASIC], "{headers:?}");
    }
    let startup = ms.wait_log(|v| v["event"] == "startup");
    assert_eq!(startup["upstream_auth"], "basic");
    // Debug logs every request and poll: still nothing of the secret.
    get(ms.addr, "/stats");
    let said = format!("{}\n{}", everything_said(&ms), stats(&ms));
    for secret in [PASSWORD, "s3cr3t", "Pa55w0rd", &BASIC[6..]] {
        assert!(!said.contains(secret), "{secret:?} shown:\n{said}");
    }
    // Over https, no warning about credentials in clear.
    assert!(
        ms.logs()
            .iter()
            .all(|v| v["event"] != "upstream.cleartext_credentials")
    );
}

#[test]
fn basic_credentials_over_plain_http_are_warned_about() {
    let pki = Pki::new("pw-dir");
    let pw = pki.file("password", PASSWORD.as_bytes());
    let up = FakeUpstream::start(csv());
    let ms = metrics_server(
        &up.url(),
        &[
            "--upstream-basic-auth-user",
            USER,
            "--upstream-basic-auth-password-file",
            path(&pw),
        ],
    );
    let warn = ms.wait_log(|v| v["event"] == "upstream.cleartext_credentials");
    assert_eq!(warn["level"], "WARN");
    assert_eq!(warn["upstreams"], up.url());
    assert!(!warn.to_string().contains("s3cr3t"), "{warn}");
    cpu_of_sw000(&ms);
    assert!(up.requests().iter().all(|h| {
        h.iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("authorization") && v == BASIC)
    }));
}

#[test]
fn redirects_are_not_followed_so_credentials_stay_put() {
    let pki = Pki::new("pw-dir");
    let pw = pki.file("password", PASSWORD.as_bytes());
    let elsewhere = FakeUpstream::start(csv());
    let up = FakeUpstream::start(Script::status(302).with_header("Location", &elsewhere.url()));
    let ms = metrics_server(
        &up.url(),
        &[
            "--upstream-basic-auth-user",
            USER,
            "--upstream-basic-auth-password-file",
            path(&pw),
        ],
    );
    let e = ms.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(e["kind"], "http_status", "{e}");
    assert!(
        e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("302") && r.contains("redirects are not followed")),
        "{e}"
    );
    ms.wait_log(|v| v["event"] == "poll.error" && v["consecutive_failures"] == 2);
    assert!(elsewhere.requests().is_empty(), "the redirect was followed");
}

#[test]
fn https_to_a_plain_http_server_is_a_tls_error() {
    let ds = data_server(&[]);
    let url = format!("https://{}/counters", ds.addr);
    let ms = metrics_server(&url, &["--upstream-timeout-ms", "2000"]);
    let e = ms.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(e["kind"], "tls", "{e}");
    assert_eq!(
        e["reason"], "tls: upstream does not speak TLS (a plain http:// server?)",
        "{e}"
    );
}

#[test]
fn plain_http_to_a_tls_server_fails_as_transport() {
    let pki = Pki::new("upstream-ca");
    let up = tls_upstream(&pki.server("up", "05"), csv());
    let url = up.url().replacen("https://", "http://", 1);
    let ms = metrics_server(&url, &["--upstream-timeout-ms", "2000"]);
    let e = ms.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(e["kind"], "transport", "{e}");
    assert!(
        e["reason"].as_str().is_some_and(
            |r| r.ends_with("(not HTTP: if the upstream speaks TLS, poll its https:// URL)")
        ),
        "{e}"
    );
}

/// Runs metrics_server with `args` and this PKI's files; it must exit 2
/// with one line on stderr naming `knob`. The line is returned.
fn exits_2(args: &[&str], knob: &str) -> String {
    let out = std::process::Command::new(METRICS_SERVER)
        .env_clear()
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(knob), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn bad_tls_and_credential_settings_exit_2_naming_the_knob() {
    let pki = Pki::new("upstream-ca");
    let pw = pki.file("password", PASSWORD.as_bytes());
    let url = "https://127.0.0.1:1/counters";
    exits_2(
        &["--upstream-url", url, "--upstream-basic-auth-user", USER],
        "UPSTREAM_BASIC_AUTH_PASSWORD_FILE",
    );
    exits_2(
        &["--upstream-basic-auth-password-file", path(&pw)],
        "UPSTREAM_BASIC_AUTH_USER",
    );
    exits_2(
        &["--upstream-ca-file", "/nonexistent/ca.pem"],
        "UPSTREAM_CA_FILE",
    );
    let unreadable = pki.file("unreadable.pem", b"");
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    // (root reads it anyway, and then finds no certificate: exit 2 still.)
    exits_2(
        &["--upstream-ca-file", path(&unreadable)],
        "UPSTREAM_CA_FILE",
    );
    let key_only = pki.server("up", "06").key;
    let err = exits_2(&["--upstream-ca-file", path(&key_only)], "UPSTREAM_CA_FILE");
    assert!(err.contains("CERTIFICATE"), "{err}");
    exits_2(
        &[
            "--upstream-ca-file",
            path(&pki.ca),
            "--upstream-insecure-skip-verify",
            "true",
        ],
        "UPSTREAM_INSECURE_SKIP_VERIFY",
    );
    // A password file that is wrong says so without quoting it.
    let bad = pki.file("bad-password", format!("{PASSWORD}\n\n").as_bytes());
    let err = exits_2(
        &[
            "--upstream-basic-auth-user",
            USER,
            "--upstream-basic-auth-password-file",
            path(&bad),
        ],
        "UPSTREAM_BASIC_AUTH_PASSWORD_FILE",
    );
    assert!(!err.contains("s3cr3t"), "{err}");
}
