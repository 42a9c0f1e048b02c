//! `GET /stats`: the figures the store keeps (request percentiles, poll
//! counts, what history holds), rendered as one JSON object.

use serde_json::{Value, json};

use crate::consumer::store::fabric::Fabric;
use crate::consumer::store::figures::{KINDS, PollFigures, Stats, TRACKED};
use crate::consumer::store::history;

/// The `/stats` body; with several upstreams (`urls`), a `shards`
/// member says how each one is doing. `history` is what history holds,
/// `tls` how `https://` upstreams are checked (as `/stats` shows it).
pub fn render(
    stats: &Stats,
    snapshot: Option<&Fabric>,
    now_ms: u64,
    urls: &[String],
    history: history::Figures,
    tls: &Value,
) -> String {
    let mut endpoints = serde_json::Map::new();
    let traffic = stats.traffic();
    for (path, t) in TRACKED.iter().zip(&traffic) {
        let ring = &t.ring;
        let ms = |p: f64| ring.percentile(p).map(|us| f64::from(us) / 1000.0);
        endpoints.insert(
            path.to_string(),
            json!({
                "p50_ms": ms(50.0),
                "p95_ms": ms(95.0),
                "p99_ms": ms(99.0),
                "max_ms": ms(100.0),
                "count": ring.count(),
                "window": ring.len(),
            }),
        );
    }
    let polls = stats.polls();
    let poll = PollFigures::total(&polls);
    let mut body: Value = json!({
        "endpoints": endpoints,
        "poll_last_cycle_ms": poll.last_cycle.map(|d| d.as_micros() as f64 / 1000.0),
        "poll_retry_count": poll.failed,
        "uptime_s": stats.uptime().as_secs(),
        "poll": {
            "updated_200": poll.updated,
            "not_modified_304": poll.not_modified,
            "unchanged_200": poll.unchanged,
            "errors": poll.failed,
            "errors_by_kind": KINDS.iter().zip(poll.errors_by_kind).map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "consecutive_failures": poll.consecutive_failures,
            "backoff_ms": poll.backoff.as_millis() as u64,
            "breaker": if poll.breaker.is_empty() { "closed" } else { poll.breaker },
            "last_error": poll.last_error,
            "last_error_at": poll.last_error_ms.map(crate::clock::rfc3339_ms),
            "last_success_at": poll.last_success_ms.map(crate::clock::rfc3339_ms),
        },
        "upstream_tls": tls,
        "history": {
            "snapshots": history.snapshots,
            "entries": history.entries,
            "bytes": history.bytes,
        },
        "snapshot": snapshot.map(|s| json!({
            "snapshot_id": s.id(),
            "age_ms": s.age_ms(now_ms),
            "switches": s.rows(),
            "fields": s.fields.len(),
        })),
    });
    if urls.len() > 1 {
        let shards: Vec<Value> = urls
            .iter()
            .zip(&polls)
            .enumerate()
            .map(|(i, (url, p))| {
                let part = snapshot.and_then(|f| f.parts().iter().find(|p| p.shard == i));
                json!({
                    "url": url,
                    "snapshot_id": part.map(|p| p.snap.id()),
                    "age_ms": part.map(|p| p.snap.age_ms(now_ms)),
                    "switches": part.map(|p| p.rows()),
                    "conflicts": part.map_or(0, |p| p.conflicts()),
                    "breaker": if p.breaker.is_empty() { "closed" } else { p.breaker },
                    "consecutive_failures": p.consecutive_failures,
                    "last_error": p.last_error,
                    "updated_200": p.updated,
                    "not_modified_304": p.not_modified,
                    "unchanged_200": p.unchanged,
                    "errors": p.failed,
                })
            })
            .collect();
        body["shards"] = Value::Array(shards);
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `/stats` of `stats` with no snapshot, history or upstream settings.
    fn rendered(stats: &Stats) -> Value {
        let text = render(
            stats,
            None,
            0,
            &[],
            Default::default(),
            &json!({"roots": "bundled", "insecure_skip_verify": false, "ca_file": null}),
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn reports_sub_millisecond_percentiles_per_endpoint() {
        let stats = Stats::new(1);
        for us in 1..=100u64 {
            stats.record_request("/telemetry/GetMetric", 200, Duration::from_micros(us * 10));
        }
        stats.record_request("/health", 200, Duration::from_secs(1));
        let v = rendered(&stats);
        let gm = &v["endpoints"]["/telemetry/GetMetric"];
        assert_eq!(gm["p50_ms"], 0.5);
        assert_eq!(gm["p95_ms"], 0.95);
        assert_eq!(gm["p99_ms"], 0.99);
        assert_eq!(gm["max_ms"], 1.0);
        assert_eq!(gm["count"], 100);
        let lm = &v["endpoints"]["/telemetry/ListMetrics"];
        assert_eq!(lm["count"], 0);
        assert!(lm["p50_ms"].is_null());
        assert!(v["endpoints"].get("/health").is_none());
        assert_eq!(v["poll_retry_count"], 0);
        assert!(v["poll_last_cycle_ms"].is_null());
        assert!(v["uptime_s"].is_u64());
    }

    #[test]
    fn poll_figures_show_up() {
        let stats = Stats::new(1);
        stats.update_poll(0, |p| {
            p.failed = 3;
            p.consecutive_failures = 2;
            p.last_cycle = Some(Duration::from_micros(1500));
            p.last_error = Some("connect: refused".into());
            p.last_error_ms = Some(0);
            p.count_error("connect");
            p.count_error("invalid_csv");
            p.count_error("connect");
            p.breaker = "open";
            p.backoff = Duration::from_millis(1234);
        });
        let v = rendered(&stats);
        assert_eq!(v["poll_retry_count"], 3);
        assert_eq!(v["poll_last_cycle_ms"], 1.5);
        assert_eq!(v["poll"]["last_error"], "connect: refused");
        assert_eq!(v["poll"]["last_error_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["poll"]["consecutive_failures"], 2);
        assert_eq!(v["poll"]["errors_by_kind"]["connect"], 2);
        assert_eq!(v["poll"]["errors_by_kind"]["invalid_csv"], 1);
        assert_eq!(v["poll"]["errors_by_kind"]["timeout"], 0);
        assert_eq!(v["poll"]["errors_by_kind"]["tls"], 0);
        assert_eq!(
            v["poll"]["errors_by_kind"].as_object().map(|o| o.len()),
            Some(KINDS.len())
        );
        assert_eq!(v["upstream_tls"]["roots"], "bundled");
        assert_eq!(v["upstream_tls"]["insecure_skip_verify"], false);
        assert_eq!(v["poll"]["breaker"], "open");
        assert_eq!(v["poll"]["backoff_ms"], 1234);
    }
}
