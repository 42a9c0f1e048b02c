//! Properties that must hold whatever the input: one source of truth for the
//! fuzz targets (`fuzz/fuzz_targets/*`) and the seeded property test
//! (`tests/it/props.rs` includes this file with `#[path]`).
//!
//! Every check returns `Err(reason)` instead of panicking, so the caller can
//! name the input that broke it. Depends only on `fabric_telemetry` and
//! `serde_json`, which both the fuzz crate and the test binary have.

use std::borrow::Cow;

use fabric_telemetry::consumer::store::snapshot::{Limits, Origin};
use fabric_telemetry::consumer::store::value::Num;
use fabric_telemetry::consumer::{Fabric, Snapshot};
use fabric_telemetry::csv;
use fabric_telemetry::http::{CSV, JSON, Request, Response, TEXT};
use fabric_telemetry::producer;
use fabric_telemetry::query;
use serde_json::Value;

/// Turns a failed condition into an `Err` naming it.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// An error body echoes at most 128 bytes of hostile input, each escaped to
/// at most 6 bytes of JSON, plus a short message.
pub const MAX_ERROR_BODY: usize = 1024;

/// RFC 9110 `tchar`: what a header name may be made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Well-formedness every answer of either server must have.
///
/// `json_errors`: every answer with status >= 400 must be a JSON error
/// (false only for data_server's injected 500, which is plain text).
pub fn check_response(resp: &Response, json_errors: bool) -> Result<(), String> {
    ensure!(
        (100..=599).contains(&resp.status),
        "status {} outside 100..=599",
        resp.status
    );
    for (i, (name, value)) in resp.headers.iter().enumerate() {
        ensure!(
            !name.is_empty() && name.bytes().all(is_tchar),
            "header name {name:?} is not an HTTP token"
        );
        ensure!(
            value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b)),
            "header {name}: value {value:?} holds a byte that is not visible ASCII, SP or HTAB"
        );
        ensure!(
            value.trim_matches([' ', '\t']).len() == value.len(),
            "header {name}: value {value:?} has leading or trailing whitespace"
        );
        ensure!(
            !resp.headers[..i]
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name)),
            "header {name} is sent twice"
        );
    }
    let body = resp.body_bytes();
    ensure!(
        body.len() == resp.body_len(),
        "body_len() {} but {} body bytes",
        resp.body_len(),
        body.len()
    );
    let content_type = resp.header_value("Content-Type");
    ensure!(
        body.is_empty() || content_type.is_some(),
        "a {}-byte body without Content-Type",
        body.len()
    );
    let is_json = content_type.is_some_and(|ct| ct.starts_with(JSON));
    if is_json {
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "Content-Type is JSON but the body is not ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if resp.status >= 400 {
            ensure!(
                matches!(v.get("error"), Some(Value::String(s)) if !s.is_empty()),
                "error answer {} without a non-empty string \"error\": {v}",
                resp.status
            );
        }
    }
    if resp.status >= 400 && json_errors {
        ensure!(
            is_json,
            "error answer {} with Content-Type {content_type:?}, not JSON",
            resp.status
        );
        ensure!(
            body.len() <= MAX_ERROR_BODY,
            "error body of {} bytes: hostile input is echoed unclipped",
            body.len()
        );
    }
    if resp.status == 405 {
        let allow = resp.header_value("Allow");
        ensure!(
            allow.is_some_and(|a| {
                let methods: Vec<&str> = a.split(',').map(str::trim).collect();
                methods.contains(&"GET") && methods.contains(&"HEAD")
            }),
            "405 without an Allow header naming GET and HEAD: {allow:?}"
        );
    }
    Ok(())
}

/// The JSON body of an answer (after `check_response` said it is JSON).
fn json_body(resp: &Response) -> Result<Value, String> {
    serde_json::from_slice(&resp.body_bytes()).map_err(|e| format!("body is not JSON: {e}"))
}

/// `status` must be `want`.
fn status_is(resp: &Response, want: u16, why: &str) -> Result<(), String> {
    ensure!(
        resp.status == want,
        "{why}: status {} where {want} was due; body {:?}",
        resp.status,
        String::from_utf8_lossy(&resp.body_bytes())
    );
    Ok(())
}

/// The value of `name` as both servers must read it: the first pair named
/// `name` (empty counts as missing), computed with the reference decoder.
fn wanted_param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

/// metrics_server: what the answer to `req` must be, given the snapshot its
/// store holds (`None` before the first one). Checks well-formedness first.
pub fn check_consumer(req: &Request, resp: &Response, snap: Option<&Fabric>) -> Result<(), String> {
    check_response(resp, true)?;
    const PATHS: [&str; 9] = [
        "/telemetry/ListMetrics",
        "/telemetry/GetMetric",
        "/telemetry/History",
        "/stats",
        "/health",
        "/ready",
        "/metrics",
        "/telemetry/stream",
        "/",
    ];
    if !PATHS.contains(&req.path.as_str()) {
        return status_is(resp, 404, "unknown path");
    }
    if req.method != "GET" && req.method != "HEAD" {
        return status_is(resp, 405, "a method other than GET/HEAD");
    }
    let Ok(pairs) = reference_pairs(&req.query) else {
        return status_is(resp, 400, "a malformed query string");
    };
    let known: &[&str] = match req.path.as_str() {
        "/telemetry/ListMetrics" | "/telemetry/stream" => &FILTERS,
        "/telemetry/GetMetric" | "/telemetry/History" => &["switch_id", "metric"],
        _ => &[],
    };
    if !strict_ok(&pairs, known) {
        status_is(resp, 400, "an unknown or repeated query parameter")?;
        return json_body(resp).map(drop);
    }
    match req.path.as_str() {
        "/" => {
            // The page: HTML under a policy that allows only itself.
            status_is(resp, 200, "the page")?;
            ensure!(
                resp.header_value("Content-Type") == Some("text/html; charset=utf-8"),
                "page content type {:?}",
                resp.header_value("Content-Type")
            );
            ensure!(
                resp.header_value("Content-Security-Policy")
                    .is_some_and(|c| c.starts_with("default-src 'self';")),
                "page CSP {:?}",
                resp.header_value("Content-Security-Policy")
            );
        }
        "/health" => {
            status_is(resp, 200, "/health")?;
            ensure!(
                resp.body_bytes() == b"{\"ok\":true}",
                "/health body {:?}",
                String::from_utf8_lossy(&resp.body_bytes())
            );
        }
        "/metrics" => check_exposition(resp)?,
        "/telemetry/stream" => {
            // An event stream, or a JSON 400 for a query ListMetrics would refuse.
            if resp.status == 200 {
                ensure!(resp.stream.is_some(), "a 200 stream without a stream");
                ensure!(
                    resp.header_value("Content-Type") == Some("text/event-stream"),
                    "stream content type {:?}",
                    resp.header_value("Content-Type")
                );
            } else {
                status_is(resp, 400, "a stream request that is not 200")?;
                json_body(resp)?;
            }
        }
        "/ready" => {
            // Ready exactly when a snapshot exists (the test state never
            // opens the breaker, and its data is well within the default age).
            let v = json_body(resp)?;
            match snap {
                None => {
                    status_is(resp, 503, "/ready before the first snapshot")?;
                    ensure!(
                        v["ready"] == false && v["error"] == "no snapshot yet",
                        "/ready {v}"
                    );
                }
                Some(_) => {
                    status_is(resp, 200, "/ready with a snapshot")?;
                    ensure!(v["ready"] == true && v["age_ms"].is_u64(), "/ready {v}");
                }
            }
        }
        "/stats" => {
            status_is(resp, 200, "/stats")?;
            let v = json_body(resp)?;
            ensure!(
                v["endpoints"].is_object() && v["uptime_s"].is_u64(),
                "/stats lacks endpoints or uptime_s: {v}"
            );
        }
        "/telemetry/ListMetrics" => {
            // Anything but the plain whole table is checked as a page. The
            // substring test for text/csv in Accept is looser than the
            // server's media-range parsing, and a page check accepts a
            // whole table too, so a garbled `…text/csvX` range is fine.
            if !is_plain_list(req, &pairs) {
                return check_list_filtered(req, resp, snap, &pairs);
            }
            let Some(snap) = snap else {
                return status_is(resp, 503, "ListMetrics before the first snapshot");
            };
            ok_or_not_modified(req, resp, &snap.etag, "ListMetrics")?;
            data_headers(resp, snap)?;
            let v = json_body(resp)?;
            check_list_json(&v, snap)?;
            let header_age = resp.header_value("X-Data-Age-Ms").unwrap_or_default();
            ensure!(
                v["age_ms"].as_u64().map(|a| a.to_string()).as_deref() == Some(header_age),
                "body age_ms {} differs from X-Data-Age-Ms {header_age}",
                v["age_ms"]
            );
        }
        "/telemetry/History" => check_history(req, resp, snap)?,
        _ => check_get_metric(req, resp, snap)?,
    }
    Ok(())
}

/// The `ListMetrics` query parameters, all of which change its answer.
const FILTERS: [&str; 8] = [
    "fields",
    "switch_id",
    "switch_prefix",
    "where",
    "sort",
    "limit",
    "offset",
    "format",
];

/// True if a `ListMetrics` request asks for the whole table as JSON: no
/// filter or paging parameter, and no CSV by `format` or `Accept`.
fn is_plain_list(req: &Request, pairs: &[(String, String)]) -> bool {
    let formats: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
        .collect();
    let others = pairs
        .iter()
        .any(|(k, _)| k != "format" && FILTERS.contains(&k.as_str()));
    let accept_csv = req
        .headers_named("Accept")
        .any(|a| a.to_ascii_lowercase().contains("text/csv"));
    let json = formats.len() == 1 && formats[0].eq_ignore_ascii_case("json");
    !others && (json || (formats.is_empty() && !accept_csv))
}

/// A filtered, paged or CSV `ListMetrics` answer: a 400 for a bad query, or
/// a subset of the snapshot's rows (in upstream order) and columns, with the
/// snapshot's numbers.
fn check_list_filtered(
    req: &Request,
    resp: &Response,
    snap: Option<&Fabric>,
    pairs: &[(String, String)],
) -> Result<(), String> {
    if resp.status == 400 {
        return Ok(());
    }
    let Some(snap) = snap else {
        return status_is(resp, 503, "filtered ListMetrics before the first snapshot");
    };
    ok_or_not_modified(req, resp, due_etag(resp, snap), "filtered ListMetrics")?;
    data_headers(resp, snap)?;
    // (row, column name, value text) of every cell, in body order.
    let mut ids: Vec<String> = Vec::new();
    let mut cells: Vec<(usize, String, String)> = Vec::new();
    if resp.header_value("Content-Type") == Some(CSV) {
        let rows = read_all_records(&resp.body_bytes())?
            .map_err(|e| format!("CSV ListMetrics does not read back: {e}"))?;
        let header = rows.first().ok_or("CSV ListMetrics without a header")?;
        ensure!(
            header.first().map(String::as_str) == Some("switch_id"),
            "CSV header {header:?}"
        );
        for (i, row) in rows.iter().enumerate().skip(1) {
            ids.push(row[0].clone());
            for (name, text) in header.iter().zip(row).skip(1) {
                cells.push((i - 1, name.clone(), text.clone()));
            }
        }
    } else {
        let v = json_body(resp)?;
        ensure!(
            v["snapshot_id"] == snap.id() && v["age_ms"].is_u64() && v["total"].is_u64(),
            "filtered ListMetrics head {v}"
        );
        ensure!(
            v["next_offset"].is_null() || v["next_offset"].is_u64(),
            "next_offset {}",
            v["next_offset"]
        );
        let items = v["items"].as_array().ok_or("items is not an array")?;
        ensure!(
            v["total"].as_u64() >= Some(items.len() as u64),
            "total {} below {} items",
            v["total"],
            items.len()
        );
        for (i, item) in items.iter().enumerate() {
            let obj = item.as_object().ok_or("an item is not an object")?;
            ids.push(item["switch_id"].as_str().unwrap_or_default().to_string());
            for (k, val) in obj.iter().filter(|(k, _)| *k != "switch_id") {
                cells.push((i, k.clone(), val.to_string()));
            }
        }
    }
    let rows: Vec<usize> = ids
        .iter()
        .map(|id| {
            snap.row(id)
                .ok_or(format!("unknown switch_id {id:?} listed"))
        })
        .collect::<Result<_, _>>()?;
    // Upstream order, or the order `sort` asks for with ties in upstream
    // order.
    let sort = pairs
        .iter()
        .find(|(k, _)| k == "sort")
        .map(|(_, v)| v.as_str());
    let descending = sort.is_some_and(|s| s.starts_with('-'));
    let key = sort.map(|s| s.strip_prefix('-').unwrap_or(s));
    let col = key.and_then(|k| snap.column(k));
    let in_order = |a: usize, b: usize| {
        let by_key = match (key, col) {
            (Some("switch_id"), _) => snap.switch_id(a).cmp(snap.switch_id(b)),
            // Numbers exactly; what is not a number last either way.
            (_, Some(col)) => {
                let (x, y) = (snap.value(a, col), snap.value(b, col));
                match (x.is_some(), y.is_some()) {
                    (true, true) => x.cmp_exact(y).unwrap_or(std::cmp::Ordering::Equal),
                    (p, q) => {
                        let o = q.cmp(&p);
                        if descending { o.reverse() } else { o }
                    }
                }
            }
            _ => std::cmp::Ordering::Equal,
        };
        let by_key = if descending { by_key.reverse() } else { by_key };
        by_key.then(a.cmp(&b)).is_lt()
    };
    ensure!(
        rows.windows(2).all(|w| in_order(w[0], w[1])),
        "rows out of order (sort {sort:?}): {ids:?}"
    );
    for (i, name, text) in cells {
        let col = snap
            .column(&name)
            .ok_or(format!("unknown field {name:?} listed"))?;
        let due = snap.value(rows[i], col);
        let got = Num::of(&text);
        let same = match (got, due) {
            (Num::None, Num::None) => text == "null",
            (Num::Int(g), Num::Int(d)) => g == d,
            (g, d) => match (as_f64(g), as_f64(d)) {
                (Some(g), Some(d)) => close(g, d),
                _ => false,
            },
        };
        ensure!(same, "{}.{name} is {text} where {due:?} was due", ids[i]);
    }
    Ok(())
}

/// A number as a float, for comparing what JSON readers round.
fn as_f64(n: Num) -> Option<f64> {
    match n {
        Num::Int(i) => Some(i as f64),
        Num::Float(f) => Some(f),
        Num::None => None,
    }
}

/// The entity tag an answer about `snap` must carry: the CSV form's own,
/// or the snapshot's.
fn due_etag<'a>(resp: &Response, snap: &'a Fabric) -> &'a str {
    if resp.header_value("Content-Type") == Some(CSV) {
        &snap.csv_etag
    } else {
        &snap.etag
    }
}

/// A data answer whose due status is 200: a 304 is right when an
/// `If-None-Match` of `req` names `etag` (the quoted tag of the answer),
/// and only then.
fn ok_or_not_modified(req: &Request, resp: &Response, etag: &str, why: &str) -> Result<(), String> {
    let inm: Vec<&str> = req.headers_named("If-None-Match").collect();
    // Exactly the tag, weak or strong, or `*`: always a match.
    let must_match = inm.iter().any(|h| {
        let h = h.trim();
        h == etag || h == format!("W/{etag}") || h == "*"
    });
    // Without the tag's text or a `*` somewhere, never a match.
    let may_match = inm
        .iter()
        .any(|h| h.contains(etag.trim_matches('"')) || h.contains('*'));
    match resp.status {
        304 => ensure!(
            may_match,
            "{why}: 304 for If-None-Match {inm:?}, tag {etag}"
        ),
        200 => ensure!(
            !must_match,
            "{why}: 200 for If-None-Match {inm:?} naming the current tag {etag}"
        ),
        _ => status_is(resp, 200, why)?,
    }
    Ok(())
}

/// `ETag`, `X-Data-Age-Ms` and `Cache-Control` on an answer about `snap`.
fn data_headers(resp: &Response, snap: &Fabric) -> Result<(), String> {
    data_headers_tagged(resp, due_etag(resp, snap))
}

/// The same, the `ETag` due being `due`.
fn data_headers_tagged(resp: &Response, due: &str) -> Result<(), String> {
    ensure!(
        resp.header_value("ETag") == Some(due),
        "ETag {:?} where {due:?} was due",
        resp.header_value("ETag"),
    );
    ensure!(
        resp.header_value("Cache-Control") == Some("no-cache"),
        "Cache-Control {:?} on a data answer",
        resp.header_value("Cache-Control")
    );
    ensure!(
        resp.header_value("X-Data-Age-Ms")
            .is_some_and(|a| a.parse::<u64>().is_ok()),
        "X-Data-Age-Ms missing or not a number: {:?}",
        resp.header_value("X-Data-Age-Ms")
    );
    Ok(())
}

fn check_get_metric(req: &Request, resp: &Response, snap: Option<&Fabric>) -> Result<(), String> {
    let Ok(pairs) = reference_pairs(&req.query) else {
        return status_is(resp, 400, "a malformed query string");
    };
    if !strict_ok(&pairs, &["switch_id", "metric"]) {
        return status_is(resp, 400, "an unknown or repeated query parameter");
    }
    let (Some(switch_id), Some(metric)) = (
        wanted_param(&pairs, "switch_id"),
        wanted_param(&pairs, "metric"),
    ) else {
        return status_is(resp, 400, "a missing or empty parameter");
    };
    let Some(snap) = snap else {
        return status_is(resp, 503, "GetMetric before the first snapshot");
    };
    let row = snap.switch_ids().position(|s| s == switch_id);
    let col = snap.fields.iter().position(|f| *f == metric);
    let (Some(row), Some(col)) = (row, col) else {
        status_is(resp, 404, "an unknown switch or metric")?;
        return data_headers(resp, snap);
    };
    ok_or_not_modified(req, resp, &snap.etag, "a known switch and metric")?;
    data_headers(resp, snap)?;
    let v = json_body(resp)?;
    ensure!(
        v["switch_id"] == *switch_id && v["metric"] == *metric && v["snapshot_id"] == snap.id(),
        "GetMetric names the wrong thing: {v}"
    );
    ensure!(v["age_ms"].is_u64(), "GetMetric age_ms {}", v["age_ms"]);
    // The number exactly as rendered: `,"value":` cannot occur inside a JSON
    // string (a quote there is always escaped), so the first one is the key.
    let body = String::from_utf8_lossy(&resp.body_bytes()).into_owned();
    let text = body
        .split_once(",\"value\":")
        .and_then(|(_, rest)| rest.split(',').next())
        .unwrap_or_default();
    ensure!(
        text == snap.number(row, col),
        "GetMetric value {text:?} where the snapshot spells {:?}",
        snap.number(row, col)
    );
    ensure!(
        Num::of(text) == snap.value(row, col),
        "GetMetric value {text:?} does not read back as {:?}",
        snap.value(row, col)
    );
    Ok(())
}

/// `/telemetry/History` of a state whose history is on: refused as
/// GetMetric is; else points `[ts_ms, value]`, oldest first, the newest
/// the snapshot served (its producer time, the value as it spells it).
fn check_history(req: &Request, resp: &Response, snap: Option<&Fabric>) -> Result<(), String> {
    let Ok(pairs) = reference_pairs(&req.query) else {
        return status_is(resp, 400, "a malformed query string");
    };
    let (Some(switch_id), Some(metric)) = (
        wanted_param(&pairs, "switch_id"),
        wanted_param(&pairs, "metric"),
    ) else {
        return status_is(resp, 400, "a missing or empty parameter");
    };
    let Some(snap) = snap else {
        return status_is(resp, 503, "History before the first snapshot");
    };
    let row = snap.switch_ids().position(|s| s == switch_id);
    let col = snap.fields.iter().position(|f| *f == metric);
    let (Some(row), Some(col)) = (row, col) else {
        status_is(resp, 404, "an unknown switch or metric")?;
        return data_headers(resp, snap);
    };
    // Its tag is the data's and a hash of its points: `"<id>-h<16 hex>"`.
    let tag = resp.header_value("ETag").unwrap_or_default().to_string();
    let stem = format!("{}-h", snap.etag.trim_end_matches('"'));
    ensure!(
        tag.strip_prefix(&stem)
            .and_then(|h| h.strip_suffix('"'))
            .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit())),
        "History ETag {tag:?} where {stem}<16 hex>\" was due"
    );
    ok_or_not_modified(req, resp, &tag, "History of a known switch and metric")?;
    data_headers_tagged(resp, &tag)?;
    let v = json_body(resp)?;
    ensure!(
        v["switch_id"] == *switch_id && v["metric"] == *metric,
        "History names the wrong thing: {v}"
    );
    let points = v["points"]
        .as_array()
        .ok_or(format!("History points: {v}"))?;
    let mut last_ts = None;
    for p in points {
        let ts = p[0].as_u64();
        ensure!(
            p.as_array().map(Vec::len) == Some(2) && ts.is_some() && p[1].is_number(),
            "History point {p}"
        );
        ensure!(ts > last_ts, "History points out of order: {v}");
        last_ts = ts;
    }
    let want = snap.number(row, col);
    if want != "null" {
        let body = String::from_utf8_lossy(&resp.body_bytes()).into_owned();
        let text = body
            .strip_suffix("]]}")
            .and_then(|b| b.rsplit_once(','))
            .map(|(_, t)| t)
            .unwrap_or_default();
        ensure!(
            text == want,
            "History's newest value {text:?} where the snapshot spells {want:?}"
        );
        ensure!(
            last_ts.is_some() && last_ts == snap.producer_ts_ms().or(last_ts),
            "History's newest time {last_ts:?}, the snapshot's {:?}",
            snap.producer_ts_ms()
        );
    }
    Ok(())
}

/// A `/metrics` answer: 200, the exposition content type, and every line a
/// comment or `name{labels} value` with a parseable value.
pub fn check_exposition(resp: &Response) -> Result<(), String> {
    status_is(resp, 200, "/metrics")?;
    ensure!(
        resp.header_value("Content-Type") == Some("text/plain; version=0.0.4; charset=utf-8"),
        "/metrics content type {:?}",
        resp.header_value("Content-Type")
    );
    let body =
        String::from_utf8(resp.body_bytes()).map_err(|_| "/metrics is not UTF-8".to_string())?;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit_once(' ').map(|(_, v)| v).unwrap_or_default();
        let ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
        ensure!(ok && line.starts_with("fabric_"), "/metrics line {line:?}");
    }
    Ok(())
}

/// data_server: what the answer to `req` must be. `failing`: the routes were
/// built to answer every `/counters` request 500.
pub fn check_producer(
    req: &Request,
    resp: &Response,
    snap: &producer::Snapshot,
    failing: bool,
) -> Result<(), String> {
    let injected = failing && req.path == "/counters" && resp.status == 500;
    check_response(resp, !injected)?;
    if !["/counters", "/health", "/metrics"].contains(&req.path.as_str()) {
        return status_is(resp, 404, "unknown path");
    }
    if req.method != "GET" && req.method != "HEAD" {
        return status_is(resp, 405, "a method other than GET/HEAD");
    }
    // Only /counters takes parameters: a shard, `num_shards` and `shard`,
    // maybe by a field, `sharding_field`.
    let known: &[&str] = if req.path == "/counters" {
        &["num_shards", "shard", "sharding_field"]
    } else {
        &[]
    };
    let Some(pairs) = reference_pairs(&req.query)
        .ok()
        .filter(|p| strict_ok(p, known))
    else {
        return status_is(resp, 400, "a query string data_server refuses");
    };
    if req.path == "/metrics" {
        return check_exposition(resp);
    }
    if req.path == "/health" {
        status_is(resp, 200, "/health")?;
        ensure!(
            resp.body_bytes() == b"{\"ok\":true}",
            "/health body {:?}",
            String::from_utf8_lossy(&resp.body_bytes())
        );
        return Ok(());
    }
    // A bad shard is refused before any fault is injected.
    let text = String::from_utf8_lossy(&snap.csv);
    let columns: Vec<&str> = text.lines().next().unwrap_or("").split(',').collect();
    let Ok(shard) = reference_shard(&pairs, &columns) else {
        status_is(resp, 400, "a bad num_shards/shard pair or sharding_field")?;
        let body = json_body(resp)?;
        let error = body["error"].as_str().unwrap_or("");
        ensure!(
            error.contains("shard"),
            "a shard refusal that names no parameter: {error:?}"
        );
        return Ok(());
    };
    if failing {
        status_is(resp, 500, "fault injection at 100%")?;
        ensure!(
            resp.header_value("Content-Type") == Some(TEXT),
            "injected 500 is not plain text"
        );
        return Ok(());
    }
    // The whole table (one shard of one is the whole table, under its
    // tag), or the header and every n-th row from the k-th, or the rows
    // whose cell in the field's column hashes to k.
    let (etag, body) = match shard {
        Some((n, k, None)) if n > 1 => {
            let mut lines = text.split_inclusive('\n');
            let mut body = lines.next().unwrap_or("").to_string();
            body.extend(lines.skip(k).step_by(n));
            (format!("\"{}-s{k}of{n}\"", snap.id), body.into_bytes())
        }
        Some((n, k, Some(col))) if n > 1 => {
            let mut lines = text.split_inclusive('\n');
            let mut body = lines.next().unwrap_or("").to_string();
            body.extend(lines.filter(|l| {
                let cell = l.trim_end_matches('\n').split(',').nth(col).unwrap_or("");
                reference_fnv1a64(cell) % n as u64 == k as u64
            }));
            let tag = format!("\"{}-s{k}of{n}-by-{}\"", snap.id, columns[col]);
            (tag, body.into_bytes())
        }
        _ => (snap.etag.clone(), snap.csv.to_vec()),
    };
    let inm: Vec<&str> = req.headers_named("If-None-Match").collect();
    // Exactly the tag we sent out, or `*`: always a match.
    let must_match = inm.iter().any(|h| {
        let h = h.trim();
        h == etag || h == format!("W/{etag}") || h == "*"
    });
    // Without the id or a `*` somewhere, never a match.
    let may_match = inm
        .iter()
        .any(|h| h.contains(snap.id.as_str()) || h.contains('*'));
    match resp.status {
        304 => ensure!(may_match, "304 for If-None-Match {inm:?}, tag {etag}"),
        200 => ensure!(
            !must_match,
            "200 for If-None-Match {inm:?} naming the current tag {etag}"
        ),
        s => return Err(format!("/counters answered {s}")),
    }
    ensure!(
        resp.header_value("Content-Type") == Some(CSV),
        "/counters Content-Type {:?}",
        resp.header_value("Content-Type")
    );
    ensure!(
        resp.header_value("ETag") == Some(etag.as_str()),
        "/counters ETag {:?} where {etag} was due",
        resp.header_value("ETag")
    );
    ensure!(
        resp.header_value("X-Snapshot-Ts") == Some(snap.ts_ms.to_string().as_str()),
        "/counters X-Snapshot-Ts {:?}",
        resp.header_value("X-Snapshot-Ts")
    );
    let got = resp.body_bytes();
    ensure!(
        got.split(|&b| b == b'\n').next() == snap.csv.split(|&b| b == b'\n').next(),
        "/counters body does not start with the header"
    );
    ensure!(
        got == body,
        "/counters body is not the snapshot's CSV or shard {shard:?} of it"
    );
    Ok(())
}

/// FNV-1a, 64 bits, written out apart from data_server's.
pub fn reference_fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard data_server must read from its checked `pairs`, as
/// `(num_shards, shard, the sharding_field's index in columns)`:
/// `Ok(None)` for none of them, `Err` for one of the pair without the
/// other, a value that is not plain decimal digits in range
/// (`1 <= num_shards <= 1024`, `shard < num_shards`), or a
/// `sharding_field` without the pair or not exactly one of `columns`.
pub fn reference_shard(
    pairs: &[(String, String)],
    columns: &[&str],
) -> Result<Option<(usize, usize, Option<usize>)>, ()> {
    let value = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let number = |v: &str| -> Result<usize, ()> {
        let digits = v.trim_start_matches('0');
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 5 {
            return Err(());
        }
        Ok(digits.parse().unwrap_or(0))
    };
    let field = value("sharding_field");
    match (value("num_shards"), value("shard")) {
        (None, None) if field.is_none() => Ok(None),
        (Some(n), Some(k)) => {
            let (n, k) = (number(n)?, number(k)?);
            if !((1..=1024).contains(&n) && k < n) {
                return Err(());
            }
            let col = match field {
                None => None,
                Some(f) => Some(columns.iter().position(|c| c == f).ok_or(())?),
            };
            Ok(Some((n, k, col)))
        }
        _ => Err(()),
    }
}

/// Every record of `body`, or the first error. Checks that the reader makes
/// progress (at most one record per byte, plus one).
pub fn read_all_records(body: &[u8]) -> Result<Result<Vec<Vec<String>>, csv::Error>, String> {
    let mut reader = match csv::Reader::new(body) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let mut rows = Vec::new();
    let mut fields: Vec<Cow<'_, str>> = Vec::new();
    loop {
        match reader.read_record(&mut fields) {
            Ok(true) => {
                ensure!(!fields.is_empty(), "a record with no fields");
                ensure!(
                    rows.len() <= body.len(),
                    "more records than bytes: the reader is not making progress"
                );
                rows.push(fields.iter().map(|f| f.to_string()).collect());
            }
            Ok(false) => return Ok(Ok(rows)),
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// Records that `csv::push_record` cannot write so that they read back: a
/// lone empty field is written as a blank line, which the reader skips; a
/// leading U+FEFF in the body's first field is read as a byte order mark.
pub fn writer_cannot_round_trip(rows: &[Vec<String>]) -> bool {
    rows.iter().any(|r| r.len() == 1 && r[0].is_empty())
        || rows
            .first()
            .and_then(|r| r.first())
            .is_some_and(|f| f.starts_with('\u{feff}'))
}

/// The CSV reader on arbitrary bytes: it must not panic, must make progress,
/// and what it reads the writer must write back to the same records.
pub fn check_csv_reader(body: &[u8]) -> Result<(), String> {
    let Ok(rows) = read_all_records(body)? else {
        return Ok(());
    };
    if let Some(first) = rows.first() {
        ensure!(
            rows.iter().all(|r| r.len() == first.len()),
            "rows of different widths accepted"
        );
    }
    if writer_cannot_round_trip(&rows) {
        return Ok(());
    }
    let mut out = String::new();
    for r in &rows {
        csv::push_record(&mut out, r);
    }
    match read_all_records(out.as_bytes())? {
        Ok(again) => ensure!(
            again == rows,
            "write then read changed the records: {rows:?} became {again:?} via {out:?}"
        ),
        Err(e) => return Err(format!("the writer produced unreadable CSV ({e}): {out:?}")),
    }
    Ok(())
}

/// The origin the CSV checks use: an id that needs JSON escaping.
pub fn test_origin(now_ms: u64) -> Origin {
    Origin {
        id: "fz-\"q\"\\b\u{1}\u{7f}é-7".into(),
        producer_ts_ms: Some(now_ms.saturating_sub(1_234)),
        fetched_ms: now_ms,
    }
}

/// `Snapshot::parse` on arbitrary bytes, with a generous and a small row
/// limit: no panic, the two agree, and an accepted snapshot is consistent
/// (indexes, numbers, the `ListMetrics` JSON) with the records the CSV
/// reader sees. Returns the accepted snapshot, if any.
/// `body` read by the poller's dialects (the header picks: matrix, UFM,
/// or refused; and keyed by its first two columns, as `UPSTREAM_KEY`
/// would): never a panic, and what is accepted is whole: each row's id is
/// its key cells joined with `:`, found again by the index, every cell is
/// JSON of its kind, and a value cell is a number or `null`.
pub fn check_dialects(body: &[u8]) -> Result<(), String> {
    use fabric_telemetry::consumer::poll::dialect::Rules;
    use fabric_telemetry::consumer::store::snapshot::Kind;
    let header = csv::Reader::new(body).ok().and_then(|mut r| {
        let mut rec = Vec::new();
        r.read_record(&mut rec).ok()?;
        Some(rec.iter().map(|c| c.to_string()).collect::<Vec<_>>())
    });
    let mut rules = vec![Rules::default()];
    if let Some(h) = header.filter(|h| h.len() >= 2) {
        rules.push(Rules {
            key: Some(h[..2].to_vec()),
            labels: Some(vec![h[h.len() - 1].clone()]),
        });
    }
    for rule in &rules {
        let limits = Limits { max_rows: 1 << 20 };
        let Ok(snap) = Snapshot::parse_as(body, test_origin(0), limits, |h| rule.layout(h)) else {
            continue;
        };
        for (r, id) in snap.switch_ids().enumerate() {
            ensure!(!id.is_empty(), "row {r}: empty id");
            ensure!(snap.row(id) == Some(r), "row({id:?}) != {r}");
            for (c, kind) in snap.kinds.iter().enumerate() {
                let text = snap.number(r, c);
                let json = serde_json::from_str::<Value>(text)
                    .map_err(|e| format!("({r},{c}): {text:?} is not JSON: {e}"))?;
                let fits = match kind {
                    Kind::Value => json.is_number() || json.is_null(),
                    Kind::Key | Kind::Label => json.is_string(),
                };
                ensure!(fits, "({r},{c}) of kind {kind:?}: {text:?}");
            }
        }
    }
    Ok(())
}

pub fn check_snapshot_parse(body: &[u8]) -> Result<Option<Fabric>, String> {
    const NOW: u64 = 1_700_000_000_000;
    const SMALL: usize = 2;
    check_dialects(body)?;
    let big = Snapshot::parse(body, test_origin(NOW), Limits { max_rows: 1 << 20 });
    let small = Snapshot::parse(body, test_origin(NOW), Limits { max_rows: SMALL });
    match (&big, &small) {
        (Ok(b), Ok(s)) => ensure!(
            b.rows() <= SMALL && b.switch_ids().eq(s.switch_ids()),
            "row limit {SMALL} let {} rows through",
            s.rows()
        ),
        (Ok(b), Err(e)) => ensure!(
            b.rows() > SMALL
                && *e
                    == fabric_telemetry::consumer::store::snapshot::Error::TooManyRows {
                        limit: SMALL
                    },
            "{} rows accepted without a limit, refused with limit {SMALL}: {e}",
            b.rows()
        ),
        (Err(e), Ok(_)) => return Err(format!("refused without a limit ({e}), accepted with one")),
        (Err(_), Err(_)) => {}
    }
    if let Err(e) = &big {
        ensure!(
            e.to_string().len() <= MAX_ERROR_BODY,
            "error message of {} bytes: {e}",
            e.to_string().len()
        );
    }
    let Ok(snap) = big else { return Ok(None) };
    ensure!(snap.csv_bytes == body.len(), "csv_bytes {}", snap.csv_bytes);
    // Served alone, as metrics_server serves one upstream.
    let snap = Fabric::from(snap);

    // A header with no rows is a valid, empty table (the CSV reader must
    // then see the header alone: the record count below says so).
    ensure!(
        snap.rows() == snap.switch_ids().len(),
        "rows() != switch_ids().len()"
    );
    ensure!(!snap.fields.is_empty(), "a snapshot with no fields");
    ensure!(
        snap.etag == format!("\"{}\"", snap.id()),
        "etag {:?}",
        snap.etag
    );
    ensure!(
        snap.csv_etag == format!("\"{}-csv\"", snap.id()),
        "csv_etag {:?}",
        snap.csv_etag
    );
    let records = match read_all_records(body)? {
        Ok(r) => r,
        Err(e) => return Err(format!("snapshot accepted, CSV reader refuses: {e}")),
    };
    ensure!(
        records.len() == snap.rows() + 1,
        "{} records but {} rows",
        records.len(),
        snap.rows()
    );
    ensure!(
        records[0][0] == "switch_id" && records[0][1..] == snap.fields[..],
        "header {:?} but fields {:?}",
        records[0],
        snap.fields
    );
    ensure!(snap.column("switch_id").is_none(), "switch_id is a metric");
    for (j, f) in snap.fields.iter().enumerate() {
        ensure!(snap.column(f) == Some(j), "column({f:?}) != {j}");
    }
    for (r, id) in snap.switch_ids().enumerate() {
        ensure!(!id.is_empty(), "row {r}: empty switch_id");
        ensure!(records[r + 1][0] == id, "row {r}: switch_id {id:?}");
        ensure!(snap.row(id) == Some(r), "row({id:?}) != {r}");
        for c in 0..snap.fields.len() {
            let text = snap.number(r, c);
            let cell = records[r + 1][c + 1].trim();
            // An empty cell is null; any other is a finite number.
            if cell.is_empty() {
                ensure!(
                    text == "null",
                    "({r},{c}): empty cell is {text:?}, not null"
                );
                continue;
            }
            let value = snap.value(r, c);
            ensure!(value.is_some(), "({r},{c}): {text:?} is not a number");
            let read = as_f64(value).unwrap_or(f64::NAN);
            ensure!(
                text.parse::<f64>().ok() == Some(read),
                "({r},{c}): {text:?} does not read back as {value:?}"
            );
            ensure!(
                cell.parse::<f64>().ok() == Some(read),
                "({r},{c}): CSV cell {cell:?} is not {value:?}"
            );
            let json = serde_json::from_str::<Value>(text)
                .map_err(|e| format!("({r},{c}): {text:?} is not a JSON number: {e}"))?;
            ensure!(
                json.as_f64().is_some_and(f64::is_finite),
                "({r},{c}): {text:?} is not a finite JSON number"
            );
        }
    }
    let v = list_json(&snap, NOW)?;
    check_list_json(&v, &snap)?;
    ensure!(
        v["age_ms"] == 1_234,
        "age_ms {} where 1234 was due",
        v["age_ms"]
    );
    Ok(Some(snap))
}

/// The `ListMetrics` body of `snap` at `now_ms`, parsed.
pub fn list_json(snap: &Fabric, now_ms: u64) -> Result<Value, String> {
    let body = Response::json_chunks(200, snap.list_body(now_ms, &[], "")).body_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        format!(
            "list_body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// A `ListMetrics` document says exactly what `snap` holds.
pub fn check_list_json(v: &Value, snap: &Fabric) -> Result<(), String> {
    ensure!(
        v["snapshot_id"] == snap.id(),
        "snapshot_id {}",
        v["snapshot_id"]
    );
    ensure!(v["age_ms"].is_u64(), "age_ms {}", v["age_ms"]);
    let fields: Vec<&str> = v["fields"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ensure!(
        fields == snap.fields,
        "fields {} vs {:?}",
        v["fields"],
        snap.fields
    );
    let items = v["items"].as_array().ok_or("items is not an array")?;
    ensure!(
        items.len() == snap.rows(),
        "{} items for {} rows",
        items.len(),
        snap.rows()
    );
    for (r, item) in items.iter().enumerate() {
        let obj = item.as_object().ok_or("an item is not an object")?;
        ensure!(
            obj.len() == snap.fields.len() + 1,
            "item {r} has {} keys for {} fields",
            obj.len(),
            snap.fields.len()
        );
        ensure!(
            item["switch_id"] == snap.switch_id(r),
            "item {r}: switch_id {}",
            item["switch_id"]
        );
        for (c, f) in snap.fields.iter().enumerate() {
            let got = item[f.as_str()].as_f64();
            let due = as_f64(snap.value(r, c));
            let same = match (got, due) {
                (Some(g), Some(d)) => close(g, d),
                (None, None) => item[f.as_str()].is_null(),
                _ => false,
            };
            ensure!(
                same,
                "item {r}: {f} is {} where {:?} was due",
                item[f.as_str()],
                snap.value(r, c)
            );
        }
    }
    Ok(())
}

/// Equal up to serde_json's float parsing, which without its
/// `float_roundtrip` feature may be a few ulps off (and flushes values below
/// the normal range less carefully).
fn close(a: f64, b: f64) -> bool {
    a == b
        || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
        || (a.abs() < 1e-300 && b.abs() < 1e-300)
}

/// The reference decoder: form decoding written the obvious way, to compare
/// `query::decode` against.
pub fn reference_decode(s: &str) -> Result<String, query::Error> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(query::Error::BadEscape)?;
                out.push(byte);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| query::Error::NotUtf8)
}

/// The reference `pairs`: split on `&`, skip empty pairs, split on the first
/// `=`, decode name then value; the first failure is the answer.
pub fn reference_pairs(q: &str) -> Result<Vec<(String, String)>, query::Error> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((reference_decode(k)?, reference_decode(v)?))
        })
        .collect()
}

/// True if the decoded `pairs` name only `known` parameters, each at most
/// once (a bare `=` is nothing, as a bare `&` is): what every endpoint
/// demands before it reads a value.
pub fn strict_ok(pairs: &[(String, String)], known: &[&str]) -> bool {
    let named: Vec<&str> = pairs
        .iter()
        .filter(|(k, v)| !(k.is_empty() && v.is_empty()))
        .map(|(k, _)| k.as_str())
        .collect();
    named.iter().all(|k| known.contains(k))
        && named
            .iter()
            .enumerate()
            .all(|(i, k)| !named[..i].contains(k))
}

/// Form-encodes one component so that it decodes back to `s`.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `query::decode`, `pairs` and `param` agree with the reference on `q`, and
/// what they decode re-encodes and decodes to the same pairs.
pub fn check_query(q: &str) -> Result<(), String> {
    let got = query::decode(q).map(Cow::into_owned);
    ensure!(
        got == reference_decode(q),
        "decode({q:?}) = {got:?}, reference {:?}",
        reference_decode(q)
    );
    if !q.contains(['%', '+']) {
        ensure!(
            matches!(query::decode(q), Ok(Cow::Borrowed(d)) if d == q),
            "decode({q:?}) copies or changes a string with nothing to decode"
        );
    }
    let got: Result<Vec<(String, String)>, _> = query::pairs(q).map(|ps| {
        ps.into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    });
    let want = reference_pairs(q);
    ensure!(got == want, "pairs({q:?}) = {got:?}, reference {want:?}");
    let mut names = vec!["switch_id".to_string(), "metric".to_string(), String::new()];
    if let Ok(ps) = &want {
        names.extend(ps.iter().take(4).map(|(k, _)| k.clone()));
        let encoded: Vec<String> = ps
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let again = reference_pairs(&encoded.join("&"));
        ensure!(
            again.as_ref() == Ok(ps),
            "encode then decode changed {ps:?} into {again:?}"
        );
    }
    for name in &names {
        let got = query::param(q, name).map(|v| v.map(Cow::into_owned));
        let want = want
            .as_ref()
            .map_err(Clone::clone)
            .map(|ps| ps.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
        ensure!(
            got == want,
            "param({q:?}, {name:?}) = {got:?}, reference {want:?}"
        );
    }
    Ok(())
}

/// The CSV behind the consumer fixture: quoted ids and names, a control
/// character in an id, numbers in spellings JSON does not share.
/// UFM Telemetry's CSV as the dialects read it: its header, u64 edges,
/// a down port's empty cells, a quoted label.
pub const UFM_FIXTURE_CSV: &str = "timestamp,source_id,tag,Node_GUID,port_guid,Port_Number,PortXmitDataExtended,SymbolErrorCounterExtended,Module_Temperature,node_description\n\
1709652347161873,0x0c42a1030077e800,,0x0c42a1030077e800,0x0c42a1030077e800,1,18446744073709551615,0,45.5,\"leaf, \"\"01\"\"\"\n\
1709652347161873,0x0c42a1030077e800,,0x0c42a1030077e800,0x0c42a1030077e800,2,9007199254740993,,,leaf-01\n\
1709652347161873,0x0c42a1030077e900,,0x0c42a1030077e900,0x0c42a1030077e900,1,-9223372036854775808,3,51.0,spine-01\n";

pub const FIXTURE_CSV: &str = "switch_id,bandwidth_gbps,cpu_util_pct,packet_errors,\"odd, name\",é✓\n\
sw-000,121.5,34.1,0,1e3,-0.25\n\
sw-001,118.30,36.5,7,.5,+2\n\
\"quoted \"\"id\"\", with comma\",1,2,3,4,5\n\
sw\u{1}ctl,-0,0.0001,1E-7,99999999999999999999,4.\n";

/// Both servers' routes, as pure handlers: a metrics_server holding a
/// snapshot of [`FIXTURE_CSV`], one with an empty store, a data_server and
/// one whose faults fail every `/counters` request.
pub struct Servers {
    pub consumer_state: std::sync::Arc<fabric_telemetry::consumer::State>,
    pub consumer: fabric_telemetry::consumer::Routes,
    pub empty_consumer: fabric_telemetry::consumer::Routes,
    pub producer_cell: std::sync::Arc<fabric_telemetry::swap::Swap<producer::Snapshot>>,
    pub producer: producer::Routes,
    pub failing_producer: producer::Routes,
}

impl Servers {
    pub fn new() -> Servers {
        use fabric_telemetry::consumer::{Routes, State};
        use std::sync::Arc;
        let now = fabric_telemetry::clock::epoch_ms();
        let origin = Origin {
            id: "19ad1e6c2a01f3c-42".into(),
            producer_ts_ms: Some(now.saturating_sub(2_000)),
            fetched_ms: now,
        };
        let snap = Snapshot::parse(FIXTURE_CSV.as_bytes(), origin, Limits { max_rows: 100 })
            .unwrap_or_else(|e| panic!("the fixture CSV is refused: {e}"));
        let consumer_state = Arc::new(State::default());
        consumer_state.publish(0, Arc::new(snap));
        let generator = producer::Generator::new(3, Some(1), std::time::Duration::from_secs(3600));
        let producer_cell = generator.cell();
        let failing = producer::routes::Faults {
            fail_pct: 100.0,
            slow: std::time::Duration::ZERO,
        };
        Servers {
            consumer: Routes::new(consumer_state.clone(), Default::default()),
            consumer_state,
            empty_consumer: Routes::new(Arc::new(State::default()), Default::default()),
            producer: producer::Routes::new(
                producer_cell.clone(),
                Default::default(),
                Default::default(),
            ),
            failing_producer: producer::Routes::new(
                producer_cell.clone(),
                failing,
                Default::default(),
            ),
            producer_cell,
        }
    }

    /// Sends `req` to every handler and checks every answer; `observe`s the
    /// consumer's answer so `/stats` has figures to render.
    pub fn check(&self, req: &Request, elapsed: std::time::Duration) -> Result<(), String> {
        use fabric_telemetry::server::Handler;
        let snap = self.consumer_state.store.load();
        let resp = self.consumer.handle(req);
        check_consumer(req, &resp, snap.as_deref()).map_err(|e| format!("metrics_server: {e}"))?;
        self.consumer.observe(req, resp.status, elapsed);
        let resp = self.empty_consumer.handle(req);
        check_consumer(req, &resp, None)
            .map_err(|e| format!("metrics_server, no snapshot: {e}"))?;
        let psnap = self
            .producer_cell
            .load()
            .ok_or("the generator published no snapshot")?;
        let resp = self.producer.handle(req);
        check_producer(req, &resp, &psnap, false).map_err(|e| format!("data_server: {e}"))?;
        let resp = self.failing_producer.handle(req);
        check_producer(req, &resp, &psnap, true)
            .map_err(|e| format!("data_server, failing: {e}"))?;
        Ok(())
    }
}

impl Default for Servers {
    fn default() -> Servers {
        Servers::new()
    }
}
