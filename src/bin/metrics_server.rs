//! metrics_server: polls a data_server and serves the latest good snapshot
//! as JSON. Configuration, startup and shutdown only; the work is in the
//! library.

use std::process::ExitCode;
use std::sync::Arc;

use fabric_telemetry::consumer::api::routes::Freshness;
use fabric_telemetry::consumer::poll::poller;
use fabric_telemetry::consumer::{Poller, Routes, State, config::SPEC};
use fabric_telemetry::lifecycle::{self, Stop};
use fabric_telemetry::server::front::Access;

const SERVICE: &str = "metrics_server";

fn main() -> ExitCode {
    // Before any thread starts: big blocks go back to the OS when freed.
    fabric_telemetry::sys::return_large_blocks_to_the_os();
    let (signal, mut cfg) = match lifecycle::begin(&SPEC, |c| c.log_level) {
        Ok(started) => started,
        Err(code) => return code,
    };

    let state = Arc::new(
        State::new(&cfg.upstream_urls)
            .with_history(cfg.history_snapshots)
            .with_upstream_tls(cfg.upstream.tls.to_json())
            .with_listener_tls(cfg.tls.clone()),
    );
    let freshness = Freshness {
        max_stale: cfg.max_stale,
        ready_max_age: cfg.ready_max_age,
    };
    let routes = Arc::new(
        Routes::new(state.clone(), freshness).with_subscribers(cfg.stream_max_subscribers),
    );
    let access = Access {
        token: cfg.auth_token.take(),
        // The page itself asks for the token, then sends it with each call.
        open_paths: &["/health", "/ready", "/"],
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
    let startup = lifecycle::startup_event(SERVICE, &server, cfg.log_level);
    let startup = match &cfg.upstream_urls[..] {
        [one] => startup.str("upstream_url", one),
        many => startup.str("upstream_urls", &many.join(",")),
    };
    startup
        .uint("poll_ms", cfg.poll.as_millis() as u64)
        .uint(
            "breaker_failures",
            u64::from(cfg.resilience.breaker_failures),
        )
        .uint(
            "breaker_cooldown_ms",
            cfg.resilience.breaker_cooldown.as_millis() as u64,
        )
        .uint(
            "max_stale_ms",
            cfg.max_stale.map_or(0, |d| d.as_millis() as u64),
        )
        .uint("history_snapshots", cfg.history_snapshots as u64)
        .str("upstream_tls_roots", cfg.upstream.tls.roots())
        .str(
            "upstream_ca_file",
            cfg.upstream
                .tls
                .ca_file
                .as_ref()
                .map_or("", |f| f.path.as_str()),
        )
        .str(
            "upstream_auth",
            cfg.upstream.auth.as_ref().map_or("none", |a| a.scheme()),
        )
        .emit();
    poller::warn_at_start(&cfg.upstream_urls, &cfg.upstream);
    let stop = Stop::new();
    let mut pollers = Vec::with_capacity(cfg.upstream_urls.len());
    for shard in 0..cfg.upstream_urls.len() {
        let poller = Poller::new(
            shard,
            cfg.poll,
            cfg.resilience.clone(),
            &cfg.upstream,
            state.clone(),
        );
        match poller.spawn(stop.clone()) {
            Ok(p) => pollers.push(p),
            Err(e) => {
                return lifecycle::fatal(SERVICE, &format!("cannot start the poller: {e}"));
            }
        }
    }
    lifecycle::run_until_signal(SERVICE, signal, server, stop, pollers)
}
