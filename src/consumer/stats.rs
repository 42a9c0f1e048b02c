//! What `/stats` reports: per-endpoint latency percentiles (a sorted ring
//! each) and the poller's figures.
//!
//! Requests are recorded after their answer is written (see
//! `http::Handler::observe`) without taking a lock: each goes into a
//! bounded queue, folded into the rings by whoever reads them (`/stats`,
//! `/metrics`), or by the recorder that finds the queue full. Poll figures
//! change once per poll.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fabric::Fabric;
use super::history;
use super::poller::KINDS;
use super::tls::UpstreamTls;
use crate::percentile::SortedRing;
use crate::prometheus::Histogram;

/// Requests the percentiles are computed over, per endpoint.
pub const WINDOW: usize = 1000;

/// The endpoints `/stats` reports percentiles for, in order.
pub const TRACKED: [&str; 2] = ["/telemetry/GetMetric", "/telemetry/ListMetrics"];

/// Every endpoint counted for `/metrics` (tracked ones first); any other
/// path counts as `other`, so that label stays bounded.
pub const ENDPOINTS: [&str; 8] = [
    "/telemetry/GetMetric",
    "/telemetry/ListMetrics",
    "/telemetry/History",
    "/stats",
    "/health",
    "/ready",
    "/metrics",
    "other",
];

/// One endpoint's traffic: the percentile window, answers by status, and
/// the latency histogram.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub ring: SortedRing,
    pub by_status: std::collections::BTreeMap<u16, u64>,
    pub latency: Histogram,
}

/// The poller's running figures.
#[derive(Debug, Clone, Default)]
pub struct PollFigures {
    /// Duration of the last poll cycle (request, read, parse, swap).
    pub last_cycle: Option<Duration>,
    /// Polls answered 200 whose body was accepted.
    pub updated: u64,
    /// Polls answered 304.
    pub not_modified: u64,
    /// Failed polls (each is retried at the next period).
    pub failed: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// Failed polls by kind, in `poller::KINDS` order.
    pub errors_by_kind: [u64; KINDS.len()],
    /// How long until the next poll, as last scheduled.
    pub backoff: Duration,
    /// The circuit breaker's state: closed, open or half_open.
    pub breaker: &'static str,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    pub last_success_ms: Option<u64>,
}

impl PollFigures {
    /// Counts one failure of `kind` (one of `poller::KINDS`).
    pub fn count_error(&mut self, kind: &str) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind) {
            self.errors_by_kind[i] += 1;
        }
    }
}

/// One answered request, as queued: its endpoint's index in [`ENDPOINTS`],
/// its status and its duration in microseconds.
#[derive(Debug, Clone, Copy)]
struct Sample {
    endpoint: u8,
    status: u16,
    micros: u32,
}

/// Requests recorded but not yet folded in, at most; a recorder that finds
/// the queue full folds it in itself.
const QUEUED_MAX: usize = 4096;

/// Every endpoint's traffic, and the requests queued for it.
struct Folded {
    queued: Receiver<Sample>,
    endpoints: [Traffic; ENDPOINTS.len()],
}

impl Folded {
    fn add(&mut self, s: Sample) {
        let t = &mut self.endpoints[usize::from(s.endpoint)];
        t.ring.record(s.micros);
        *t.by_status.entry(s.status).or_default() += 1;
        t.latency.observe(f64::from(s.micros) / 1e6);
    }

    fn fold_queued(&mut self) {
        while let Ok(s) = self.queued.try_recv() {
            self.add(s);
        }
    }
}

pub struct Stats {
    started: Instant,
    queue: SyncSender<Sample>,
    traffic: Mutex<Folded>,
    /// One per upstream, in `UPSTREAM_URLS` order.
    poll: Vec<Mutex<PollFigures>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(1)
    }
}

impl PollFigures {
    /// The figures of several pollers as one: counts summed, the worst
    /// state (most failures, an open breaker, the longest wait, the oldest
    /// last success), the latest error. Of one poller, its own.
    pub fn total(all: &[PollFigures]) -> PollFigures {
        let mut t = PollFigures::default();
        let rank = |b: &str| match b {
            "open" => 2,
            "half_open" => 1,
            _ => 0,
        };
        for p in all {
            t.last_cycle = t.last_cycle.max(p.last_cycle);
            t.updated += p.updated;
            t.not_modified += p.not_modified;
            t.failed += p.failed;
            t.consecutive_failures = t.consecutive_failures.max(p.consecutive_failures);
            for (a, b) in t.errors_by_kind.iter_mut().zip(p.errors_by_kind) {
                *a += b;
            }
            t.backoff = t.backoff.max(p.backoff);
            if rank(p.breaker) >= rank(t.breaker) {
                t.breaker = p.breaker;
            }
            if p.last_error_ms >= t.last_error_ms && p.last_error.is_some() {
                t.last_error = p.last_error.clone();
                t.last_error_ms = p.last_error_ms;
            }
        }
        // The oldest success: none until every poller has had one.
        t.last_success_ms = all.iter().map(|p| p.last_success_ms).min().flatten();
        t
    }
}

impl Stats {
    /// Stats for `upstreams` pollers (at least one).
    pub fn new(upstreams: usize) -> Stats {
        let (queue, queued) = sync_channel(QUEUED_MAX);
        Stats {
            started: Instant::now(),
            queue,
            traffic: Mutex::new(Folded {
                queued,
                endpoints: std::array::from_fn(|_| Traffic {
                    ring: SortedRing::new(WINDOW),
                    by_status: Default::default(),
                    latency: Histogram::default(),
                }),
            }),
            poll: (0..upstreams.max(1))
                .map(|_| Mutex::new(PollFigures::default()))
                .collect(),
        }
    }

    /// Records one answered request: queued, no lock taken (unless the
    /// queue is full, when this call folds it in).
    pub fn record_request(&self, path: &str, status: u16, elapsed: Duration) {
        let endpoint = ENDPOINTS
            .iter()
            .position(|&p| p == path)
            .unwrap_or(ENDPOINTS.len() - 1);
        let sample = Sample {
            endpoint: endpoint as u8,
            status,
            micros: u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX),
        };
        if let Err(TrySendError::Full(sample) | TrySendError::Disconnected(sample)) =
            self.queue.try_send(sample)
        {
            let mut folded = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
            folded.fold_queued();
            folded.add(sample);
        }
    }

    /// A copy of every endpoint's traffic, in [`ENDPOINTS`] order, with
    /// every request recorded so far.
    pub fn traffic(&self) -> Vec<Traffic> {
        let mut folded = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
        folded.fold_queued();
        folded.endpoints.to_vec()
    }

    /// Seconds since the server started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Updates upstream `shard`'s poll figures under their lock.
    pub fn update_poll(&self, shard: usize, f: impl FnOnce(&mut PollFigures)) {
        if let Some(p) = self.poll.get(shard) {
            f(&mut p.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// A copy of every upstream's poll figures, in order.
    pub fn polls(&self) -> Vec<PollFigures> {
        self.poll
            .iter()
            .map(|p| p.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Every upstream's poll figures as one ([`PollFigures::total`]).
    pub fn poll(&self) -> PollFigures {
        PollFigures::total(&self.polls())
    }

    /// The `/stats` body; with several upstreams (`urls`), a `shards`
    /// member says how each one is doing. `history` is what history holds,
    /// `tls` how `https://` upstreams are checked.
    pub fn render(
        &self,
        snapshot: Option<&Fabric>,
        now_ms: u64,
        urls: &[String],
        history: history::Figures,
        tls: &UpstreamTls,
    ) -> String {
        let mut endpoints = serde_json::Map::new();
        let rings: Vec<SortedRing> = {
            let mut folded = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
            folded.fold_queued();
            folded.endpoints[..TRACKED.len()]
                .iter()
                .map(|t| t.ring.clone())
                .collect()
        };
        for (path, ring) in TRACKED.iter().zip(rings) {
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
        let polls = self.polls();
        let poll = PollFigures::total(&polls);
        let mut body: Value = json!({
            "endpoints": endpoints,
            "poll_last_cycle_ms": poll.last_cycle.map(|d| d.as_micros() as f64 / 1000.0),
            "poll_retry_count": poll.failed,
            "uptime_s": self.started.elapsed().as_secs(),
            "poll": {
                "updated_200": poll.updated,
                "not_modified_304": poll.not_modified,
                "errors": poll.failed,
                "errors_by_kind": KINDS.iter().zip(poll.errors_by_kind).map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "consecutive_failures": poll.consecutive_failures,
                "backoff_ms": poll.backoff.as_millis() as u64,
                "breaker": if poll.breaker.is_empty() { "closed" } else { poll.breaker },
                "last_error": poll.last_error,
                "last_error_at": poll.last_error_ms.map(crate::clock::rfc3339_ms),
                "last_success_at": poll.last_success_ms.map(crate::clock::rfc3339_ms),
            },
            "upstream_tls": tls.to_json(),
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
                        "errors": p.failed,
                    })
                })
                .collect();
            body["shards"] = Value::Array(shards);
        }
        body.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_is_folded_in_and_nothing_is_lost() {
        let stats = Stats::new(1);
        let n = QUEUED_MAX * 3 + 7;
        for i in 0..n {
            let status = if i % 2 == 0 { 200 } else { 404 };
            stats.record_request("/telemetry/ListMetrics", status, Duration::from_micros(5));
        }
        let t = &stats.traffic()[1];
        assert_eq!(t.ring.count(), n as u64);
        assert_eq!(t.by_status[&200] + t.by_status[&404], n as u64);
        assert_eq!(t.ring.len(), WINDOW);
    }

    /// `/stats` of `stats` with no snapshot, history or upstream settings.
    fn rendered(stats: &Stats) -> Value {
        let text = stats.render(None, 0, &[], Default::default(), &Default::default());
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
