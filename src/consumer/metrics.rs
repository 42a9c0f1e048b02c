//! metrics_server's `/metrics`: the fabric as Prometheus gauges, and the
//! server's own health.
//!
//! Each CSV column becomes a gauge labelled by `switch_id`, named by the
//! exposition conventions from its unit suffix: `_gbps` → bytes per second
//! (the base unit is bytes; × 1.25e8), `_us` → seconds, `_pct` → a 0–1
//! ratio, `_c` → celsius, `_per_s` → per second; any other column is
//! exported under its sanitised name.
//!
//! That fabric block depends on the snapshot only, and it can be big: some
//! 460 bytes a switch, 46 MB at 100k switches, twice the snapshot itself.
//! So it is rendered when a scrape asks for it, in one pass over the rows,
//! as shared pieces that the answer sends without copying. A block up to
//! [`KEEP_MAX_BYTES`] (some 18k switches) is kept while its snapshot is
//! current, for the next scrape; a bigger one is rendered for each scrape
//! and freed once sent, so a large fleet does not keep a second copy of its
//! data between scrapes (Prometheus scrapes every 15 s or more, so a scrape
//! usually finds a new snapshot anyway).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use super::State;
use super::pieces::{PIECE_BYTES, Pieces};
use super::poller::KINDS;
use super::snapshot::Snapshot;
use super::stats::ENDPOINTS;
use crate::http::Chunk;
use crate::prometheus::{self, Exposition};

/// Fabric blocks up to this size are kept for their snapshot's life.
pub const KEEP_MAX_BYTES: usize = 8 << 20;

/// A rendered fabric block: its text, in pieces.
type Block = Vec<Arc<[u8]>>;

/// The fabric block of the snapshot last scraped, if it is small enough
/// to keep.
pub struct FabricCache {
    keep_max: usize,
    /// The snapshot it renders (compared by address; the `Weak` keeps the
    /// address from being reused) and the block.
    kept: Mutex<Option<(Weak<Snapshot>, Block)>>,
}

impl Default for FabricCache {
    fn default() -> FabricCache {
        FabricCache::new(KEEP_MAX_BYTES)
    }
}

impl FabricCache {
    /// A cache keeping blocks up to `keep_max` bytes.
    pub fn new(keep_max: usize) -> FabricCache {
        FabricCache {
            keep_max,
            kept: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Weak<Snapshot>, Block)>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fabric block of `snap`: the kept one if it renders `snap`, else
    /// rendered now (with no lock held) and kept if it is small enough.
    pub fn block(&self, snap: &Arc<Snapshot>) -> Block {
        if let Some((of, block)) = &*self.lock() {
            if std::ptr::eq(of.as_ptr(), Arc::as_ptr(snap)) {
                return block.clone();
            }
        }
        let block: Block = render_fabric(snap)
            .into_iter()
            .map(Arc::<[u8]>::from)
            .collect();
        let size: usize = block.iter().map(|p| p.len()).sum();
        // An old block goes either way: kept blocks are of the current data.
        *self.lock() = (size <= self.keep_max).then(|| (Arc::downgrade(snap), block.clone()));
        block
    }
}

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

/// Appends `text`, a value spelled as JSON, in its base unit; `exponent`
/// is `e<p>` for [`Scale::Pow10`]`(p)`.
fn push_scaled(out: &mut String, text: &str, scale: Scale, exponent: &str) {
    let value = || text.parse::<f64>().unwrap_or(f64::NAN);
    match scale {
        Scale::Same => out.push_str(text),
        Scale::Pow10(_) if !text.contains(['e', 'E']) => {
            out.push_str(text);
            out.push_str(exponent);
        }
        Scale::Pow10(p) => prometheus::push_value(out, value() * 10f64.powi(p)),
        Scale::Factor(f) => prometheus::push_value(out, value() * f),
    }
}

/// One column's samples as they are rendered.
struct Column {
    col: usize,
    /// The family's name.
    name: String,
    scale: Scale,
    /// `e<p>` for [`Scale::Pow10`]`(p)`.
    exponent: String,
    /// What follows the switch id in each sample's labels: `"} ` or
    /// `",column="…"} `.
    close: String,
    out: Pieces,
}

/// The per-switch gauges of `snap`, in pieces: every family in column
/// order, then [`OTHER`] with the columns that have no unit. One pass over
/// the rows fills one output per column; the outputs are then joined.
pub fn render_fabric(snap: &Snapshot) -> Vec<Arc<str>> {
    let mut seen: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
    let mut columns = Vec::with_capacity(snap.fields.len());
    let mut others = Vec::new();
    // Each output buffers one piece: keep their sum near 2 MB.
    let piece = (PIECE_BYTES * 8 / snap.fields.len().max(1)).clamp(16 << 10, PIECE_BYTES);
    for (col, column) in snap.fields.iter().enumerate() {
        let Some((name, unit, scale)) = family_of(column) else {
            others.push(col);
            continue;
        };
        if !seen.insert(name.clone()) {
            others.push(col);
            continue;
        }
        let mut head = Exposition::new();
        head.family(
            &name,
            "gauge",
            &format!("Upstream column {column} per switch, in {unit}."),
        );
        let mut out = Pieces::new(piece);
        out.text().push_str(&head.finish());
        let exponent = match scale {
            Scale::Pow10(p) => format!("e{p}"),
            _ => String::new(),
        };
        columns.push(Column {
            col,
            name,
            scale,
            exponent,
            close: "\"} ".to_string(),
            out,
        });
    }
    for (i, &col) in others.iter().enumerate() {
        let mut out = Pieces::new(piece);
        if i == 0 {
            let mut head = Exposition::new();
            head.family(
                OTHER,
                "gauge",
                "Upstream columns without a known unit, per switch, as sent.",
            );
            out.text().push_str(&head.finish());
        }
        let mut close = String::from("\",column=\"");
        prometheus::push_label_value(&mut close, &snap.fields[col]);
        close.push_str("\"} ");
        columns.push(Column {
            col,
            name: OTHER.to_string(),
            scale: Scale::Same,
            exponent: String::new(),
            close,
            out,
        });
    }
    let mut label = String::new();
    for row in 0..snap.rows() {
        label.clear();
        label.push_str("{switch_id=\"");
        prometheus::push_label_value(&mut label, snap.switch_id(row));
        let cells = snap.cells(row);
        for c in &mut columns {
            let out = c.out.text();
            out.push_str(&c.name);
            out.push_str(&label);
            out.push_str(&c.close);
            push_scaled(out, cells.get(c.col), c.scale, &c.exponent);
            out.push('\n');
            c.out.cut_if_full();
        }
    }
    columns.into_iter().flat_map(|c| c.out.finish()).collect()
}

/// The whole `/metrics` body at `now_ms`, in chunks: our build, the
/// fabric block (shared), then the server's own health.
pub fn render(state: &State, cache: &FabricCache, now_ms: u64) -> Vec<Chunk> {
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
    let mut body = vec![Chunk::from(exp.finish())];

    let snap = state.store.load();
    if let Some(snap) = &snap {
        body.extend(cache.block(snap).into_iter().map(Chunk::Shared));
    }

    let mut exp = Exposition::new();
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
    body.push(Chunk::from(exp.finish()));
    body
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

    fn text(body: Vec<Chunk>) -> String {
        let bytes: Vec<u8> = body.iter().flat_map(|c| c.bytes().to_vec()).collect();
        String::from_utf8(bytes).unwrap()
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
        let text = text(render(&s, &FabricCache::default(), 3_000));
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
        let text = text(render(&state, &FabricCache::default(), 0));
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
        let text = text(render(&s, &FabricCache::default(), 3_000));
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
    fn a_small_fabric_block_is_rendered_once_per_snapshot() {
        let s = state();
        let cache = FabricCache::default();
        let snap = s.store.load().unwrap();
        let first = cache.block(&snap);
        let second = cache.block(&snap);
        assert!(first.iter().zip(&second).all(|(a, b)| Arc::ptr_eq(a, b)));
        drop((first, second));
        assert!(Arc::ptr_eq(&cache.block(&snap)[0], &cache.block(&snap)[0]));
        // A new snapshot, even under the same id, gets its own block.
        let again = Snapshot::parse(
            b"switch_id,temperature_c\nsw-000,99\n",
            snap.origin.clone(),
            Limits { max_rows: 10 },
        )
        .unwrap();
        s.store.store(Arc::new(again));
        let t = text(render(&s, &cache, 0));
        assert!(t.contains("fabric_temperature_celsius{switch_id=\"sw-000\"} 99\n"));
        assert!(!t.contains("fabric_latency_seconds{"), "{t}");
    }

    #[test]
    fn a_big_fabric_block_is_freed_once_sent() {
        let s = state();
        let cache = FabricCache::new(0);
        let snap = s.store.load().unwrap();
        let first = cache.block(&snap);
        let weak = Arc::downgrade(&first[0]);
        let second = cache.block(&snap);
        assert!(!Arc::ptr_eq(&first[0], &second[0]), "rendered per scrape");
        assert_eq!(first, second);
        drop(first);
        assert!(
            weak.upgrade().is_none(),
            "nothing keeps it after the scrape"
        );
        assert!(cache.lock().is_none());
    }

    #[test]
    fn a_large_fleet_renders_in_pieces_with_every_sample_whole() {
        let mut csv = String::from("switch_id,latency_us,bandwidth_gbps,packet_errors\n");
        for i in 0..20_000 {
            csv.push_str(&format!("sw-{i:05},{}.5,{},{}\n", i % 50, i % 400, i % 3));
        }
        let snap = Snapshot::parse(
            csv.as_bytes(),
            Origin::default(),
            Limits { max_rows: 20_000 },
        )
        .unwrap();
        let pieces = render_fabric(&snap);
        assert!(pieces.len() > 3, "{} pieces", pieces.len());
        assert!(
            pieces.iter().all(|p| p.ends_with('\n')),
            "pieces end between lines"
        );
        let all: String = pieces.iter().map(|p| &**p).collect();
        assert_eq!(all.lines().filter(|l| !l.starts_with('#')).count(), 60_000);
        assert!(all.contains("fabric_latency_seconds{switch_id=\"sw-19999\"} 49.5e-6\n"));
        assert!(
            all.contains("fabric_bandwidth_bytes_per_second{switch_id=\"sw-00399\"} 49875000000\n")
        );
        assert!(
            all.contains(
                "fabric_switch_value{switch_id=\"sw-00002\",column=\"packet_errors\"} 2\n"
            )
        );
        // Families stay whole, in column order, the unit-less one last.
        let families: Vec<&str> = all
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(
            families,
            [
                "fabric_latency_seconds gauge",
                "fabric_bandwidth_bytes_per_second gauge",
                "fabric_switch_value gauge"
            ]
        );
        let mut last = "";
        let mut changes = 0;
        for line in all.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap();
            if name != last {
                changes += 1;
                last = name;
            }
        }
        assert_eq!(changes, 3);
    }
}
