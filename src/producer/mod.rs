//! data_server's side: the simulator, the generator that swaps a fresh
//! snapshot in every tick, the `/counters` routes and the shards they cut.

pub mod config;
pub mod generator;
pub mod metrics;
pub mod partition;
pub mod routes;
pub mod shards;
pub mod simulator;

pub use config::Config;
pub use generator::Generator;
pub use routes::Routes;
pub use simulator::{Simulator, Snapshot};
