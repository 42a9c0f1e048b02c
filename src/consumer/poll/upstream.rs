//! What a poller is given about its upstream: how to treat it when it
//! misbehaves, how to reach it (TLS roots, credentials), and how to read
//! its columns.

use std::time::Duration;

use super::dialect::Rules;
use super::tls::UpstreamTls;
use crate::auth::{Basic, Token};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How the poller treats a misbehaving upstream.
#[derive(Debug, Clone)]
pub struct Resilience {
    pub backoff_max: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub timeout: Duration,
    pub max_bytes: u64,
    pub max_rows: usize,
}

impl Default for Resilience {
    /// The defaults of the knob table.
    fn default() -> Resilience {
        Resilience {
            backoff_max: ms(30_000),
            breaker_failures: 5,
            breaker_cooldown: ms(10_000),
            timeout: ms(5_000),
            max_bytes: 256 << 20,
            max_rows: 1_000_000,
        }
    }
}

/// How the pollers reach their upstreams.
#[derive(Debug, Clone, Default)]
pub struct UpstreamClient {
    /// The roots `https://` upstreams are checked against, or none.
    pub tls: UpstreamTls,
    /// Credentials sent with every poll, if any.
    pub auth: Option<UpstreamAuth>,
    /// How its header's columns are read (`UPSTREAM_KEY`, `UPSTREAM_LABELS`).
    pub dialect: Rules,
}

/// Credentials the poller sends upstream: one `Authorization` header.
#[derive(Debug, Clone)]
pub enum UpstreamAuth {
    /// `UPSTREAM_AUTH_TOKEN` (data_server's `DATA_AUTH_TOKEN`).
    Bearer(Token),
    /// `UPSTREAM_BASIC_AUTH_USER` and `_PASSWORD_FILE` (UFM's REST).
    Basic(Basic),
}

impl UpstreamAuth {
    /// `bearer` or `basic`: what the startup line says (never the secret).
    pub fn scheme(&self) -> &'static str {
        match self {
            UpstreamAuth::Bearer(_) => "bearer",
            UpstreamAuth::Basic(_) => "basic",
        }
    }

    /// The `Authorization` value to send. A secret: never log it.
    pub fn header_value(&self) -> String {
        match self {
            UpstreamAuth::Bearer(t) => t.header_value(),
            UpstreamAuth::Basic(b) => b.header_value(),
        }
    }
}
