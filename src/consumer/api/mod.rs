//! Answering: the routes, `ListMetrics`' filters, the stream, the live
//! page, Prometheus' `/metrics` and `/stats`. It only reads the store.

pub mod filter;
pub mod metrics;
pub mod page;
pub mod routes;
pub mod stats;
pub mod stream;

pub use routes::Routes;
