//! The generator: every interval, step the simulator, render a whole new
//! snapshot with no lock held, then swap it in.
//!
//! Snapshot ids are `<boot>-<seq>`: `boot` is the process's start time in
//! epoch ms plus 16 random bits (hex), `seq` counts ticks. The id changes
//! every tick and a restarted process never reuses one, so a consumer that
//! remembers an old tag can never be told 304 for different data.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::metrics::ProducerStats;
use super::simulator::{Simulator, Snapshot};
use crate::clock;
use crate::lifecycle::Stop;
use crate::log::{Event, Level};
use crate::swap::Swap;

pub struct Generator {
    sim: Simulator,
    cell: Arc<Swap<Snapshot>>,
    boot: String,
    seq: u64,
    interval: Duration,
    /// How long the first snapshot took; logged once the thread starts, so
    /// that `startup` is the process's first line.
    first_took: Option<Duration>,
    stats: Arc<ProducerStats>,
}

impl Generator {
    /// Builds the simulator and publishes its first snapshot at once, so
    /// `/counters` has data from the moment the server listens.
    pub fn new(switches: usize, seed: Option<u64>, interval: Duration) -> Generator {
        let mut generator = Generator {
            sim: Simulator::new(switches, seed),
            cell: Arc::new(Swap::new()),
            boot: format!("{:x}{:04x}", clock::epoch_ms(), fastrand::u16(..)),
            seq: 0,
            interval,
            first_took: None,
            stats: Arc::default(),
        };
        let started = Instant::now();
        generator.publish();
        let took = started.elapsed();
        generator.stats.snapshot_built(switches, took);
        generator.first_took = Some(took);
        generator
    }

    /// The counters `/metrics` reports, shared with the routes.
    pub fn stats(&self) -> Arc<ProducerStats> {
        self.stats.clone()
    }

    /// The cell the routes read snapshots from.
    pub fn cell(&self) -> Arc<Swap<Snapshot>> {
        self.cell.clone()
    }

    /// Steps the simulation and publishes the next snapshot.
    pub fn tick(&mut self) {
        let started = Instant::now();
        self.sim.step();
        self.publish();
        let took = started.elapsed();
        self.stats.snapshot_built(self.sim.len(), took);
        self.log_tick(took);
    }

    fn publish(&mut self) {
        let id = format!("{}-{}", self.boot, self.seq);
        self.seq += 1;
        let table = self.sim.render();
        let snapshot = Snapshot::new(id, clock::epoch_ms(), table);
        // The old snapshot is dropped here, after the lock is released.
        drop(self.cell.store(Arc::new(snapshot)));
    }

    fn log_tick(&self, took: Duration) {
        let Some(snapshot) = self.cell.load() else {
            return;
        };
        Event::new(Level::Info, "gen.tick")
            .str("snapshot_id", &snapshot.id)
            .uint("ts_ms", snapshot.ts_ms)
            .uint("switches", snapshot.rows as u64)
            .uint("bytes", snapshot.csv.len() as u64)
            .ms("duration_ms", took)
            .emit();
    }

    /// Ticks every interval (start to start) until `stop`.
    pub fn spawn(mut self, stop: Stop) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || {
                if let Some(took) = self.first_took.take() {
                    self.log_tick(took);
                }
                let mut next = Instant::now() + self.interval;
                while !stop.wait_until(next) {
                    self.tick();
                    next += self.interval;
                    // After a stall longer than an interval, restart the
                    // cadence from now instead of ticking in a burst.
                    let now = Instant::now();
                    if next < now {
                        next = now + self.interval;
                    }
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tick_publishes_a_new_id() {
        let mut g = Generator::new(4, Some(1), Duration::from_secs(1));
        let cell = g.cell();
        let first = cell.load().unwrap();
        assert!(first.id.ends_with("-0"));
        assert_eq!(first.etag, format!("\"{}\"", first.id));
        g.tick();
        let second = cell.load().unwrap();
        assert_ne!(first.id, second.id);
        assert!(second.ts_ms >= first.ts_ms);
        assert_eq!(second.rows, 4);
    }

    #[test]
    fn a_restart_never_reuses_an_id() {
        let a = Generator::new(1, Some(1), Duration::from_secs(1));
        let b = Generator::new(1, Some(1), Duration::from_secs(1));
        assert_ne!(a.cell().load().unwrap().id, b.cell().load().unwrap().id);
    }
}
