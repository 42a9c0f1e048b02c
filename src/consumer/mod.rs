//! metrics_server's side, in three rooms: `store` (what is held), `poll`
//! (fetching upstreams; it writes the store) and `api` (answering; it reads
//! the store). `api` and `poll` never import each other; this module only
//! wires them.

pub mod api;
pub mod config;
pub mod poll;
pub mod store;

pub use api::Routes;
pub use config::Config;
pub use poll::Poller;
pub use store::{Fabric, Snapshot, State};
