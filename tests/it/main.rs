//! The one integration-test binary: every test spawns the real executables
//! on port 0 and talks to them over sockets.

mod cli;
mod conditional;
mod consumer;
mod docs;
mod e2e;
mod front_auth;
mod front_keepalive;
mod front_limits;
mod front_shedding;
mod grafana;
mod gzip;
mod head_props;
mod history;
mod hostile;
mod listmetrics;
mod page;
mod pki;
mod producer;
mod props;
mod resilience;
mod shards;
mod stream;
mod support;
mod tiny_patches;
mod tls;
mod ufm;
mod upstream_tls;
