//! data_server: simulates a switch fabric and serves its counters as CSV.
//! Configuration, startup and shutdown only; the work is in the library.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use fabric_telemetry::log::{self, Event, Level};
use fabric_telemetry::producer::{Generator, Routes, config::SPEC, routes::Faults};
use fabric_telemetry::server::{self, Server};
use fabric_telemetry::shutdown::{Signal, Stop};

/// How long requests in flight may take to finish once a stop is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    // Catch SIGINT/SIGTERM before anything else, so none can kill us mid-start.
    let mut signal = match Signal::register() {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot install signal handlers: {e}")),
    };
    let cfg = SPEC.from_process();
    log::init(cfg.log_level);

    let generator = Generator::new(cfg.switches, cfg.seed, cfg.interval);
    let faults = Faults {
        fail_pct: cfg.fault_500_pct,
        slow: cfg.fault_slow,
    };
    let routes = Arc::new(Routes::new(generator.cell(), faults));
    let listener = match server::bind(&cfg.host, cfg.port) {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port)),
    };
    let server = match Server::start(listener, server::default_workers(), routes) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot start the HTTP server: {e}")),
    };
    let stop = Stop::new();
    let ticker = match generator.spawn(stop.clone()) {
        Ok(t) => t,
        Err(e) => return fail(&format!("cannot start the generator: {e}")),
    };
    Event::always(Level::Info, "startup")
        .str("service", "data_server")
        .str("version", fabric_telemetry::VERSION)
        .str("addr", &server.addr().to_string())
        .uint("switches", cfg.switches as u64)
        .float("interval_sec", cfg.interval.as_secs_f64())
        .str("seed", &cfg.seed.map_or("random".into(), |s| s.to_string()))
        .float("fault_500_pct", cfg.fault_500_pct)
        .uint("fault_slow_ms", cfg.fault_slow.as_millis() as u64)
        .str("log_level", cfg.log_level.as_str())
        .emit();

    let signal_name = signal.wait();
    stop.stop();
    let busy = server.stop(SHUTDOWN_GRACE);
    let _ = ticker.join();
    Event::always(Level::Info, "shutdown")
        .str("service", "data_server")
        .str("signal", signal_name)
        .uint("busy_workers_abandoned", busy as u64)
        .emit();
    log::flush();
    ExitCode::SUCCESS
}

/// Logs a fatal runtime error (stderr and the log) and exits 1.
fn fail(msg: &str) -> ExitCode {
    Event::new(Level::Error, "fatal").str("error", msg).emit();
    log::flush();
    eprintln!("data_server: {msg}");
    ExitCode::FAILURE
}
