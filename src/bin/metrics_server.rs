//! metrics_server: polls a data_server and serves the latest good snapshot
//! as JSON. Configuration, startup and shutdown only; the work is in the
//! library.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use fabric_telemetry::consumer::{Poller, Routes, State, config::SPEC};
use fabric_telemetry::log::{self, Event, Level};
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

    let state = Arc::new(State::default());
    let listener = match server::bind(&cfg.host, cfg.port) {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port)),
    };
    let routes = Arc::new(Routes::new(state.clone()));
    let server = match Server::start(listener, server::default_workers(), routes) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot start the HTTP server: {e}")),
    };
    Event::always(Level::Info, "startup")
        .str("service", "metrics_server")
        .str("version", fabric_telemetry::VERSION)
        .str("addr", &server.addr().to_string())
        .str("upstream_url", &cfg.upstream_url)
        .uint("poll_ms", cfg.poll.as_millis() as u64)
        .str("log_level", cfg.log_level.as_str())
        .emit();
    let stop = Stop::new();
    let poller = match Poller::new(&cfg.upstream_url, cfg.poll, state).spawn(stop.clone()) {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot start the poller: {e}")),
    };

    let signal_name = signal.wait();
    stop.stop();
    let busy = server.stop(SHUTDOWN_GRACE);
    let _ = poller.join();
    Event::always(Level::Info, "shutdown")
        .str("service", "metrics_server")
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
    eprintln!("metrics_server: {msg}");
    ExitCode::FAILURE
}
