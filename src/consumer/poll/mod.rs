//! Fetching: one poller thread per upstream, its breaker and backoff, and
//! how `https://` upstreams are checked. It only writes the store.

pub mod breaker;
pub mod dialect;
pub mod poller;
pub mod tls;
pub mod upstream;

pub use poller::Poller;
