//! metrics_server's side: the poller writes the store; the routes read it.

pub mod breaker;
pub mod config;
pub mod poller;
pub mod routes;
pub mod snapshot;
pub mod stats;

pub use config::Config;
pub use poller::Poller;
pub use routes::Routes;
pub use snapshot::Snapshot;

use crate::swap::Swap;

/// What the poller and the routes share.
#[derive(Default)]
pub struct State {
    /// The latest good snapshot (`None` until the first one).
    pub store: Swap<Snapshot>,
    pub stats: stats::Stats,
}
