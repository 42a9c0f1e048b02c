//! metrics_server's side: the poller writes the store; the routes read it.

pub mod breaker;
pub mod config;
pub mod filter;
pub mod metrics;
pub mod pieces;
pub mod poller;
pub mod routes;
pub mod snapshot;
pub mod stats;
pub mod stream;

pub use config::Config;
pub use poller::Poller;
pub use routes::Routes;
pub use snapshot::Snapshot;

use crate::swap::Swap;

/// What the poller and the routes share.
pub struct State {
    /// The latest good snapshot (`None` until the first one).
    pub store: Swap<Snapshot>,
    pub stats: stats::Stats,
    /// The `/metrics` fabric block of the current snapshot.
    pub exposition: metrics::FabricCache,
    /// Clients on `/telemetry/stream` (`STREAM_MAX_SUBSCRIBERS`).
    pub subscribers: std::sync::Arc<stream::Subscribers>,
}

impl Default for State {
    fn default() -> State {
        State::new(64)
    }
}

impl State {
    /// Empty, allowing `max_subscribers` stream clients.
    pub fn new(max_subscribers: usize) -> State {
        State {
            store: Swap::new(),
            stats: stats::Stats::new(),
            exposition: Default::default(),
            subscribers: stream::Subscribers::new(max_subscribers),
        }
    }
}
