//! metrics_server's `/metrics`: the fabric as Prometheus gauges, and the
//! server's own health.
//!
//! Each CSV column becomes a gauge labelled by `switch_id`, named by the
//! exposition conventions from its unit suffix: `_gbps` → bytes per second
//! (the base unit is bytes; × 1.25e8), `_us` → seconds, `_pct` → a 0–1
//! ratio, `_c` → celsius, `_per_s` → per second; any other column is
//! exported under its sanitised name. That block depends on the snapshot
//! only, so it is rendered once per snapshot and reused by every scrape.

use std::sync::{Arc, Mutex};

use super::State;
use super::poller::KINDS;
use super::snapshot::Snapshot;
use super::stats::ENDPOINTS;
use crate::prometheus::{self, Exposition};

/// The fabric block of the last snapshot rendered: (snapshot id, text).
pub type FabricCache = Mutex<Option<(String, Arc<str>)>>;

/// A column with a known unit suffix: its metric name, the unit for the
/// help text, and how to bring it to the base unit.
pub fn family_of(column: &str) -> Option<(String, &'static str, Scale)> {
    let rules: [(&str, &str, &str, Scale); 5] = [
        (
            "_gbps",
            "_bytes_per_second",
            "bytes per second",
            Scale::Factor(1.25e8),
        ),
        ("_us", "_seconds", "seconds", Scale::Pow10(-6)),
        ("_pct", "_ratio", "a 0-1 ratio", Scale::Pow10(-2)),
        ("_c", "_celsius", "degrees Celsius", Scale::Same),
        ("_per_s", "_per_second", "events per second", Scale::Same),
    ];
    rules.into_iter().find_map(|(suffix, unit, help, scale)| {
        let stem = column.strip_suffix(suffix).filter(|s| !s.is_empty())?;
        Some((
            format!("fabric_{}{unit}", prometheus::sanitize(stem)),
            help,
            scale,
        ))
    })
}

/// Columns with no unit suffix go into one family, labelled by column, so
/// an upstream column can never clash with a name of ours or trip the
/// naming rules (`packet_errors` → `fabric_switch_value{column="packet_errors"}`).
pub const OTHER: &str = "fabric_switch_value";

/// Families of our own that no upstream column may take.
const RESERVED: [&str; 13] = [
    "fabric_build_info",
    "fabric_http_requests_total",
    "fabric_http_request_duration_seconds",
    "fabric_polls_total",
    "fabric_poll_errors_total",
    "fabric_upstream_up",
    "fabric_breaker_open",
    "fabric_poll_duration_seconds",
    "fabric_snapshot_age_seconds",
    "fabric_snapshot_switches",
    "fabric_uptime_seconds",
    "process_start_time_seconds",
    OTHER,
];

/// How a column's value becomes its base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Already in it.
    Same,
    /// Times ten to this power: written as the CSV's own decimal text with
    /// an exponent (`14.1` µs → `14.1e-6`), which scrapers read exactly,
    /// instead of a computed `1.4099999999999999e-5`.
    Pow10(i32),
    /// Times this factor, computed (Gbit/s → bytes/s: × 1.25e8).
    Factor(f64),
}

/// Appends the value at (`row`, `col`) of `snap` in its base unit.
fn push_scaled(out: &mut String, snap: &Snapshot, row: usize, col: usize, scale: Scale) {
    let text = snap.number(row, col);
    match scale {
        Scale::Same => out.push_str(text),
        Scale::Pow10(p) if !text.contains(['e', 'E']) => {
            out.push_str(text);
            out.push_str(&format!("e{p}"));
        }
        Scale::Pow10(p) => prometheus::push_value(out, snap.value(row, col) * 10f64.powi(p)),
        Scale::Factor(f) => prometheus::push_value(out, snap.value(row, col) * f),
    }
}

/// The per-switch gauges of `snap`.
pub fn render_fabric(snap: &Snapshot) -> String {
    let mut exp = Exposition::new();
    let mut seen: std::collections::HashSet<String> =
        RESERVED.iter().map(|s| s.to_string()).collect();
    let mut others = Vec::new();
    for (col, column) in snap.fields.iter().enumerate() {
        let Some((name, unit, scale)) = family_of(column) else {
            others.push(col);
            continue;
        };
        if !seen.insert(name.clone()) {
            others.push(col);
            continue;
        }
        exp.family(
            &name,
            "gauge",
            &format!("Upstream column {column} per switch, in {unit}."),
        );
        for (row, id) in snap.switch_ids.iter().enumerate() {
            exp.sample_with(&name, &[("switch_id", id)], |out| {
                push_scaled(out, snap, row, col, scale)
            });
        }
    }
    if !others.is_empty() {
        exp.family(
            OTHER,
            "gauge",
            "Upstream columns without a known unit, per switch, as sent.",
        );
        for col in others {
            let column = &snap.fields[col];
            for (row, id) in snap.switch_ids.iter().enumerate() {
                exp.sample(
                    OTHER,
                    &[("switch_id", id), ("column", column)],
                    snap.value(row, col),
                );
            }
        }
    }
    exp.finish()
}

/// The whole `/metrics` body at `now_ms`.
pub fn render(state: &State, cache: &FabricCache, now_ms: u64) -> String {
    let mut exp = Exposition::new();
    exp.family(
        "fabric_build_info",
        "gauge",
        "Build of the running server; always 1.",
    )
    .sample(
        "fabric_build_info",
        &[("service", "metrics_server"), ("version", crate::VERSION)],
        1.0,
    );

    let snap = state.store.load();
    if let Some(snap) = &snap {
        let fabric = {
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            match &*cache {
                Some((id, text)) if id == snap.id() => text.clone(),
                _ => {
                    let text: Arc<str> = Arc::from(render_fabric(snap));
                    *cache = Some((snap.id().to_string(), text.clone()));
                    text
                }
            }
        };
        exp.raw(&fabric);
    }

    exp.family(
        "fabric_http_requests_total",
        "counter",
        "Requests answered, by endpoint and status.",
    );
    let traffic = state.stats.traffic();
    for (endpoint, t) in ENDPOINTS.iter().zip(&traffic) {
        for (status, n) in &t.by_status {
            let code = status.to_string();
            exp.sample(
                "fabric_http_requests_total",
                &[("endpoint", endpoint), ("code", &code)],
                *n as f64,
            );
        }
    }
    exp.family(
        "fabric_http_request_duration_seconds",
        "histogram",
        "Time to answer a request, write included, by endpoint.",
    );
    for (endpoint, t) in ENDPOINTS.iter().zip(&traffic) {
        t.latency.write(
            &mut exp,
            "fabric_http_request_duration_seconds",
            &[("endpoint", endpoint)],
        );
    }

    let poll = state.stats.poll();
    exp.family(
        "fabric_polls_total",
        "counter",
        "Polls of the upstream, by result.",
    );
    for (result, n) in [
        ("updated", poll.updated),
        ("not_modified", poll.not_modified),
        ("error", poll.failed),
    ] {
        exp.sample("fabric_polls_total", &[("result", result)], n as f64);
    }
    exp.family(
        "fabric_poll_errors_total",
        "counter",
        "Failed polls, by kind.",
    );
    for (kind, n) in KINDS.iter().zip(poll.errors_by_kind) {
        exp.sample("fabric_poll_errors_total", &[("kind", kind)], n as f64);
    }
    let up = poll.consecutive_failures == 0 && poll.last_success_ms.is_some();
    exp.family(
        "fabric_upstream_up",
        "gauge",
        "1 if the last poll succeeded, else 0.",
    )
    .sample("fabric_upstream_up", &[], f64::from(u8::from(up)));
    exp.family(
        "fabric_breaker_open",
        "gauge",
        "1 while the circuit breaker is open or half-open.",
    )
    .sample(
        "fabric_breaker_open",
        &[],
        f64::from(u8::from(matches!(poll.breaker, "open" | "half_open"))),
    );
    if let Some(cycle) = poll.last_cycle {
        exp.family(
            "fabric_poll_duration_seconds",
            "gauge",
            "Duration of the last poll cycle.",
        )
        .sample("fabric_poll_duration_seconds", &[], cycle.as_secs_f64());
    }
    if let Some(snap) = &snap {
        exp.family(
            "fabric_snapshot_age_seconds",
            "gauge",
            "Age of the data being served.",
        )
        .sample(
            "fabric_snapshot_age_seconds",
            &[],
            snap.age_ms(now_ms) as f64 / 1000.0,
        );
        exp.family(
            "fabric_snapshot_switches",
            "gauge",
            "Switches in the data being served.",
        )
        .sample("fabric_snapshot_switches", &[], snap.rows() as f64);
    }
    exp.family(
        "fabric_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    )
    .sample(
        "fabric_uptime_seconds",
        &[],
        state.stats.uptime().as_secs_f64(),
    );
    exp.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::snapshot::{Limits, Origin};
    use std::time::Duration;

    fn state() -> State {
        let state = State::default();
        let csv = "switch_id,bandwidth_gbps,latency_us,cpu_util_pct,temperature_c,egress_drops_per_s,packet_errors,fan rpm\n\
                   sw-000,121.5,11.2,34.1,46.7,3,0,9000\n\"odd\"\"id\",1,2,3,4,5,6,7\n";
        let origin = Origin {
            id: "s1".into(),
            producer_ts_ms: Some(1_000),
            fetched_ms: 1_000,
        };
        let snap = Snapshot::parse(csv.as_bytes(), origin, Limits { max_rows: 10 }).unwrap();
        state.store.store(Arc::new(snap));
        state
    }

    #[test]
    fn units_follow_the_conventions() {
        let name = |c: &str| family_of(c).map(|f| f.0);
        assert_eq!(family_of("latency_us").map(|f| f.2), Some(Scale::Pow10(-6)));
        assert_eq!(
            name("bandwidth_gbps").unwrap(),
            "fabric_bandwidth_bytes_per_second"
        );
        assert_eq!(name("latency_us").unwrap(), "fabric_latency_seconds");
        assert_eq!(name("cpu_util_pct").unwrap(), "fabric_cpu_util_ratio");
        assert_eq!(name("temperature_c").unwrap(), "fabric_temperature_celsius");
        assert_eq!(
            name("egress_drops_per_s").unwrap(),
            "fabric_egress_drops_per_second"
        );
        assert_eq!(name("packet_errors"), None);
        assert_eq!(name("_c"), None);
    }

    #[test]
    fn fabric_values_are_scaled_and_labels_escaped() {
        let s = state();
        let text = render(&s, &FabricCache::default(), 3_000);
        let has = |line: &str| assert!(text.contains(line), "{line} missing in:\n{text}");
        has("fabric_bandwidth_bytes_per_second{switch_id=\"sw-000\"} 15187500000\n");
        has("fabric_latency_seconds{switch_id=\"sw-000\"} 11.2e-6\n");
        has("fabric_cpu_util_ratio{switch_id=\"sw-000\"} 34.1e-2\n");
        has("fabric_temperature_celsius{switch_id=\"odd\\\"id\"} 4\n");
        has("fabric_switch_value{switch_id=\"sw-000\",column=\"packet_errors\"} 0\n");
        has("fabric_switch_value{switch_id=\"sw-000\",column=\"fan rpm\"} 9000\n");
        has("fabric_snapshot_age_seconds 2\n");
        has("fabric_upstream_up 0\n");
        has("fabric_build_info{service=\"metrics_server\",version=");
    }

    #[test]
    fn upstream_columns_never_take_our_names() {
        let state = State::default();
        let csv = "switch_id,poll_duration_us,snapshot_age_us,x_us\nsw-1,1,2,3\n";
        let origin = Origin::default();
        let snap = Snapshot::parse(csv.as_bytes(), origin, Limits { max_rows: 10 }).unwrap();
        state.store.store(Arc::new(snap));
        let text = render(&state, &FabricCache::default(), 0);
        assert_eq!(
            text.matches("# TYPE fabric_poll_duration_seconds ").count(),
            0,
            "no poll yet"
        );
        assert!(
            text.contains(
                "fabric_switch_value{switch_id=\"sw-1\",column=\"poll_duration_us\"} 1\n"
            )
        );
        assert!(text.contains("fabric_x_seconds{switch_id=\"sw-1\"} 3e-6\n"));
        assert_eq!(
            text.matches("# TYPE fabric_snapshot_age_seconds ").count(),
            1
        );
    }

    #[test]
    fn requests_and_polls_are_counted() {
        let s = state();
        s.stats
            .record_request("/telemetry/GetMetric", 200, Duration::from_micros(300));
        s.stats
            .record_request("/telemetry/GetMetric", 404, Duration::from_micros(300));
        s.stats
            .record_request("/nope", 404, Duration::from_micros(300));
        s.stats.update_poll(|p| {
            p.updated = 2;
            p.last_success_ms = Some(1);
        });
        let text = render(&s, &FabricCache::default(), 3_000);
        assert!(text.contains(
            "fabric_http_requests_total{endpoint=\"/telemetry/GetMetric\",code=\"404\"} 1\n"
        ));
        assert!(text.contains("fabric_http_requests_total{endpoint=\"other\",code=\"404\"} 1\n"));
        assert!(text.contains(
            "fabric_http_request_duration_seconds_count{endpoint=\"/telemetry/GetMetric\"} 2\n"
        ));
        assert!(text.contains("fabric_polls_total{result=\"updated\"} 2\n"));
        assert!(text.contains("fabric_upstream_up 1\n"));
        // Every family is declared exactly once.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let unique: std::collections::HashSet<&&str> = types.iter().collect();
        assert_eq!(types.len(), unique.len());
    }

    #[test]
    fn the_fabric_block_is_rendered_once_per_snapshot() {
        let s = state();
        let cache = FabricCache::default();
        render(&s, &cache, 0);
        let first = cache.lock().unwrap().clone().unwrap().1;
        render(&s, &cache, 0);
        let second = cache.lock().unwrap().clone().unwrap().1;
        assert!(Arc::ptr_eq(&first, &second));
    }
}
