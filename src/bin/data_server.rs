//! data_server: simulates a switch fabric and serves its counters as CSV.
//! Configuration, startup and shutdown only; the work is in the library.

use std::process::ExitCode;
use std::sync::Arc;

use fabric_telemetry::lifecycle::{self, Stop};
use fabric_telemetry::producer::{Generator, Routes, config::SPEC, routes::Faults};
use fabric_telemetry::server::front::Access;

const SERVICE: &str = "data_server";

fn main() -> ExitCode {
    let (signal, mut cfg) = match lifecycle::begin(&SPEC, |c| c.log_level) {
        Ok(started) => started,
        Err(code) => return code,
    };

    let generator = Generator::new(cfg.switches, cfg.seed, cfg.interval);
    let faults = Faults {
        fail_pct: cfg.fault_500_pct,
        slow: cfg.fault_slow,
    };
    if let Some(certs) = &cfg.tls {
        generator.stats().serve_tls(certs.clone());
    }
    let routes = Arc::new(Routes::new(generator.cell(), faults, generator.stats()));
    let access = Access {
        token: cfg.auth_token.take(),
        open_paths: &["/health"],
    };
    let server = match lifecycle::serve(
        SERVICE,
        (&cfg.host, cfg.port),
        &cfg.front,
        access,
        routes,
        cfg.tls.clone(),
    ) {
        Ok(s) => s,
        Err(code) => return code,
    };
    lifecycle::startup_event(SERVICE, &server, cfg.log_level)
        .uint("switches", cfg.switches as u64)
        .float("interval_sec", cfg.interval.as_secs_f64())
        .str("seed", &cfg.seed.map_or("random".into(), |s| s.to_string()))
        .float("fault_500_pct", cfg.fault_500_pct)
        .uint("fault_slow_ms", cfg.fault_slow.as_millis() as u64)
        .emit();
    let stop = Stop::new();
    let ticker = match generator.spawn(stop.clone()) {
        Ok(t) => t,
        Err(e) => return lifecycle::fatal(SERVICE, &format!("cannot start the generator: {e}")),
    };
    lifecycle::run_until_signal(SERVICE, signal, server, stop, vec![ticker])
}
