//! data_server's own `/metrics`: snapshots made, how long they take, and
//! how `/counters` was answered (faults included).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::prometheus::Exposition;

/// Counters the generator and the routes update, shared through an `Arc`.
#[derive(Default)]
pub struct ProducerStats {
    snapshots: AtomicU64,
    switches: AtomicU64,
    build_micros: AtomicU64,
    counters_by_status: Mutex<BTreeMap<u16, u64>>,
    faults_500: AtomicU64,
    faults_slow: AtomicU64,
    /// The listener's certificate, when it speaks TLS (its expiry).
    tls: OnceLock<Arc<crate::server::tls::Certs>>,
}

/// A kind of injected fault.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    Http500,
    Slow,
}

impl ProducerStats {
    /// The listener speaks TLS with `certs`: `/metrics` shows its expiry.
    pub fn serve_tls(&self, certs: Arc<crate::server::tls::Certs>) {
        let _ = self.tls.set(certs);
    }

    /// A snapshot of `switches` rows was built in `took`.
    pub fn snapshot_built(&self, switches: usize, took: Duration) {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        self.switches.store(switches as u64, Ordering::Relaxed);
        self.build_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// `/counters` was answered with `status`.
    pub fn counters_answered(&self, status: u16) {
        let mut m = self
            .counters_by_status
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(status).or_default() += 1;
    }

    pub fn fault_injected(&self, fault: Fault) {
        match fault {
            Fault::Http500 => &self.faults_500,
            Fault::Slow => &self.faults_slow,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// The `/metrics` body.
    pub fn render(&self) -> String {
        let mut exp = Exposition::new();
        exp.family(
            "fabric_producer_build_info",
            "gauge",
            "Build of the running data_server; always 1.",
        )
        .sample(
            "fabric_producer_build_info",
            &[("version", crate::VERSION)],
            1.0,
        );
        exp.family(
            "fabric_producer_snapshots_total",
            "counter",
            "Snapshots generated since start.",
        )
        .sample(
            "fabric_producer_snapshots_total",
            &[],
            self.snapshots.load(Ordering::Relaxed) as f64,
        );
        exp.family("fabric_producer_switches", "gauge", "Switches simulated.")
            .sample(
                "fabric_producer_switches",
                &[],
                self.switches.load(Ordering::Relaxed) as f64,
            );
        exp.family(
            "fabric_producer_snapshot_build_seconds",
            "gauge",
            "Time the last snapshot took to generate and render.",
        )
        .sample(
            "fabric_producer_snapshot_build_seconds",
            &[],
            self.build_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        exp.family(
            "fabric_producer_requests_total",
            "counter",
            "/counters answers, by status.",
        );
        let by_status = self
            .counters_by_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (status, n) in by_status {
            exp.sample(
                "fabric_producer_requests_total",
                &[("code", &status.to_string())],
                n as f64,
            );
        }
        exp.family(
            "fabric_producer_injected_faults_total",
            "counter",
            "Faults injected, by kind.",
        );
        for (kind, n) in [("http_500", &self.faults_500), ("slow", &self.faults_slow)] {
            exp.sample(
                "fabric_producer_injected_faults_total",
                &[("kind", kind)],
                n.load(Ordering::Relaxed) as f64,
            );
        }
        if let Some(certs) = self.tls.get() {
            certs.expose(&mut exp);
        }
        exp.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_once() {
        let s = ProducerStats::default();
        s.snapshot_built(64, Duration::from_micros(1500));
        s.counters_answered(200);
        s.counters_answered(304);
        s.counters_answered(200);
        s.fault_injected(Fault::Slow);
        let text = s.render();
        assert!(text.contains("fabric_producer_snapshots_total 1\n"));
        assert!(text.contains("fabric_producer_switches 64\n"));
        assert!(text.contains("fabric_producer_snapshot_build_seconds 0.0015\n"));
        assert!(text.contains("fabric_producer_requests_total{code=\"200\"} 2\n"));
        assert!(text.contains("fabric_producer_injected_faults_total{kind=\"slow\"} 1\n"));
        assert!(text.contains("fabric_producer_injected_faults_total{kind=\"http_500\"} 0\n"));
    }
}
