//! `GET /`: the live page, served by the binary, open without the token
//! (it asks for it), under a policy that allows nothing but itself.

use crate::support::*;

#[test]
fn the_page_is_served_open_under_a_strict_policy() {
    let up = FakeUpstream::start(Script::csv("\"p1\"", "switch_id,a\nsw-000,1\n"));
    let ms = spawn(
        METRICS_SERVER,
        &["--upstream-url", &up.url(), "--ready-max-age-ms", "4321"],
        &[("METRICS_AUTH_TOKEN", "s3cret-token-value")],
    );
    let r = get(ms.addr, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'self'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains('*'),
        "{csp}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let html = r.text();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("data-ready-max-age-ms=\"4321\""));
    assert!(!html.contains("s3cret-token-value"));
    // What scripts/e2e_browser.py reads: the page's figures on <body>, and
    // where a switch's cell is.
    for attr in [
        "data-snapshot-id=",
        "data-cells=",
        "data-switches=",
        "data-redraw-ms=",
        "data-spark-points=",
        "data-stream=",
        "window.fabricPage",
        "cellCentre(",
    ] {
        assert!(html.contains(attr), "{attr}");
    }
    // The stream is read with fetch() (EventSource cannot send the token),
    // the token kept in sessionStorage only; nothing the policy forbids.
    assert!(html.contains("fetch(\"/telemetry/stream\""));
    assert!(html.contains("sessionStorage") && !html.contains("localStorage"));
    assert!(!html.contains("new EventSource"));
    assert!(!html.contains(" style=") && !html.contains(" onclick="));
    // The data it shows still needs the token.
    assert_eq!(get(ms.addr, "/stats").status, 401);
    let auth = [("Authorization", "Bearer s3cret-token-value")];
    assert_eq!(get_with(ms.addr, "/stats", &auth).status, 200);
    // Like every other endpoint, it takes no parameters and only GET/HEAD.
    assert_eq!(get(ms.addr, "/?x=1").status, 400);
    assert_eq!(request(ms.addr, "POST", "/").status, 405);
    assert_eq!(request(ms.addr, "HEAD", "/").status, 200);
}
