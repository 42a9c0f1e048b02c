//! Fabric Telemetry: watch a switch fabric from a shell.
//!
//! Two binaries share this library. `data_server` (the [`producer`])
//! simulates N switches and serves the latest snapshot as a CSV matrix;
//! `metrics_server` (the [`consumer`]) polls that CSV, keeps the last good
//! snapshot in memory and answers a small JSON API about it. The contract is
//! `docs/API.md`; the README shows how to run both.
//!
//! Data flows one way: the producer knows nothing of the consumer and the
//! other way round. The shared pieces below know neither side.

pub mod auth;
pub mod clock;
pub mod config;
pub mod csv;
pub mod gzip;
pub mod http;
pub mod json;
pub mod lifecycle;
pub mod log;
pub mod percentile;
pub mod prometheus;
pub mod query;
pub mod ratelimit;
pub mod request_id;
pub mod server;
pub mod sha256;
pub mod swap;
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod xxh64;

pub mod consumer;
pub mod producer;

/// The package version, as `--version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
