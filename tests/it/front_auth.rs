//! Bearer-token auth on both servers, and the poller sending its token.

use crate::support::*;

const TOKEN: &str = "t0ps3cret-abc123";

#[test]
fn metrics_server_requires_the_token_except_on_health() {
    let ds = spawn(DATA_SERVER, &[], &[]);
    let ms = spawn(
        METRICS_SERVER,
        &[
            "--upstream-url",
            &format!("http://{}/counters", ds.addr),
            "--poll-ms",
            "50",
        ],
        &[("METRICS_AUTH_TOKEN", TOKEN)],
    );
    let r = get(ms.addr, "/stats");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"fabric-telemetry\"")
    );
    assert!(r.json()["error"].is_string());
    for wrong in [
        "Bearer nope",
        "Basic dDBwczNjcmV0",
        &format!("Bearer {TOKEN}x"),
        "Bearer",
    ] {
        assert_eq!(
            get_with(ms.addr, "/stats", &[("Authorization", wrong)]).status,
            401,
            "{wrong}"
        );
    }
    let auth = format!("Bearer {TOKEN}");
    assert_eq!(
        get_with(ms.addr, "/stats", &[("Authorization", &auth)]).status,
        200
    );
    eventually("data behind the token", || {
        let r = get_with(
            ms.addr,
            "/telemetry/ListMetrics",
            &[("Authorization", &auth)],
        );
        (r.status == 200).then_some(())
    });
    assert_eq!(get(ms.addr, "/health").status, 200, "liveness stays open");
    assert_eq!(get(ms.addr, "/telemetry/ListMetrics").status, 401);
    std::thread::sleep(std::time::Duration::from_millis(100));
    for line in ms.logs() {
        assert!(
            !line.to_string().contains(TOKEN),
            "the token was logged: {line}"
        );
    }
}

#[test]
fn data_server_token_and_the_pollers_token() {
    let dir = std::env::temp_dir().join(format!("ft-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let ds = spawn(
        DATA_SERVER,
        &["--auth-token-file", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(get(ds.addr, "/counters").status, 401);
    assert_eq!(get(ds.addr, "/health").status, 200);
    let upstream = format!("http://{}/counters", ds.addr);
    // Without the token the poller is refused, and says so.
    let bare = metrics_server(&upstream, &[]);
    bare.wait_log(|v| {
        v["event"] == "poll.error"
            && v["reason"] == "http: upstream answered 401: missing or invalid bearer token"
    });
    // With it, data flows.
    let ms = spawn(
        METRICS_SERVER,
        &["--upstream-url", &upstream, "--poll-ms", "50"],
        &[("UPSTREAM_AUTH_TOKEN", TOKEN)],
    );
    eventually("a snapshot through the token", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 200).then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_token_setting_exits_2_without_echoing_it() {
    let out = std::process::Command::new(METRICS_SERVER)
        .env_clear()
        .env("METRICS_AUTH_TOKEN", "has space")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("METRICS_AUTH_TOKEN") && !err.contains("has space"),
        "{err}"
    );
    let out = std::process::Command::new(DATA_SERVER)
        .env_clear()
        .args(["--auth-token-file", "/nonexistent/token"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATA_AUTH_TOKEN_FILE"));
}
