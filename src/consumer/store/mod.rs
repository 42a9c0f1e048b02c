//! What metrics_server holds: each upstream's latest good snapshot, the
//! fabric composed of them, their history, and the running figures. The
//! pollers write it (`poll`); the routes only read it (`api`).

pub mod fabric;
pub mod figures;
pub mod history;
pub mod pieces;
pub mod snapshot;
pub mod value;

pub use fabric::Fabric;
pub use snapshot::Snapshot;

use std::sync::{Arc, Condvar, Mutex};

use crate::log::{Event, Level};
use crate::swap::Swap;

/// One upstream (`UPSTREAM_URLS` holds one per shard): its latest good
/// snapshot, which its poller writes.
pub struct Shard {
    pub url: String,
    pub snap: Swap<Snapshot>,
    /// The snapshot id a `shard.conflict` was last logged for.
    conflict_logged: Mutex<String>,
    /// Its last `HISTORY_SNAPSHOTS` accepted snapshots' values.
    pub history: history::Ring,
}

/// What the pollers and the routes share.
pub struct State {
    /// The fabric composed of every shard's latest good snapshot (`None`
    /// until the first one).
    pub store: Swap<Fabric>,
    /// One per upstream, in `UPSTREAM_URLS` order.
    pub shards: Vec<Shard>,
    /// Held while a fabric is composed, so that two pollers swapping at
    /// once cannot store their compositions out of order.
    composing: Mutex<()>,
    /// Reads and parses under way, at most one per core: sixteen shards
    /// arriving together take turns (no slower, the cores are the limit)
    /// instead of all holding a body and a half-built snapshot beside the
    /// old one at once; and the body buffers between turns.
    parsing: Mutex<Turns>,
    parsed: Condvar,
    max_parsing: usize,
    pub stats: figures::Stats,
    /// Entries each shard's history keeps (`HISTORY_SNAPSHOTS`; 0: none).
    history_snapshots: usize,
    /// How `https://` upstreams are checked, as `/stats` shows it.
    upstream_tls: serde_json::Value,
    /// The listener's certificate, when it speaks TLS (its expiry, for
    /// `/metrics`).
    pub listener_tls: Option<Arc<crate::server::tls::Certs>>,
}

impl Default for State {
    fn default() -> State {
        State::new(&[String::new()])
    }
}

impl State {
    /// Empty, polling `urls` (at least one).
    pub fn new(urls: &[String]) -> State {
        State {
            store: Swap::new(),
            shards: urls
                .iter()
                .map(|u| Shard {
                    url: u.clone(),
                    snap: Swap::new(),
                    conflict_logged: Mutex::new(String::new()),
                    history: history::Ring::default(),
                })
                .collect(),
            composing: Mutex::new(()),
            parsing: Mutex::new(Turns::default()),
            parsed: Condvar::new(),
            max_parsing: std::thread::available_parallelism().map_or(2, |n| n.get()),
            stats: figures::Stats::new(urls.len().max(1)),
            history_snapshots: history::DEFAULT_SNAPSHOTS,
            upstream_tls: serde_json::Value::Null,
            listener_tls: None,
        }
    }

    /// The same, keeping `snapshots` entries of history per shard
    /// (`HISTORY_SNAPSHOTS`; 0 keeps none). The default is
    /// [`history::DEFAULT_SNAPSHOTS`].
    pub fn with_history(mut self, snapshots: usize) -> State {
        self.history_snapshots = snapshots;
        self
    }

    /// The same, reporting `tls` in `/stats` (how the pollers check
    /// `https://` upstreams).
    pub fn with_upstream_tls(mut self, tls: serde_json::Value) -> State {
        self.upstream_tls = tls;
        self
    }

    /// The listener speaks TLS with `certs`.
    pub fn with_listener_tls(mut self, certs: Option<Arc<crate::server::tls::Certs>>) -> State {
        self.listener_tls = certs;
        self
    }

    /// How `https://` upstreams are checked, as `/stats` shows it.
    pub fn upstream_tls(&self) -> &serde_json::Value {
        &self.upstream_tls
    }

    /// Entries each shard's history keeps (0: history is off).
    pub fn history_snapshots(&self) -> usize {
        self.history_snapshots
    }

    /// What `/stats` reports of history.
    pub fn history_figures(&self) -> history::Figures {
        let mut f = history::Figures {
            snapshots: self.history_snapshots,
            ..Default::default()
        };
        for shard in &self.shards {
            let (entries, bytes) = shard.history.figures();
            f.entries += entries;
            f.bytes += bytes;
        }
        f
    }

    /// Waits for a turn to read a body and parse it; the turn ends when
    /// the permit is dropped. The permit lends a buffer for the body,
    /// kept between turns so that reading a large body again does not
    /// fault in fresh pages each poll.
    pub fn parse_permit(&self) -> ParsePermit<'_> {
        let mut turns = self.parsing.lock().unwrap_or_else(|p| p.into_inner());
        while turns.busy >= self.max_parsing {
            turns = self.parsed.wait(turns).unwrap_or_else(|p| p.into_inner());
        }
        turns.busy += 1;
        let body = turns.buffers.pop().unwrap_or_default();
        ParsePermit { state: self, body }
    }

    /// True when more than one upstream is composed.
    pub fn sharded(&self) -> bool {
        self.shards.len() > 1
    }

    /// Records `snap` in shard `shard`'s history, swaps it in as the
    /// shard's latest, then the fabric composed of every shard's. The old
    /// ones are dropped after the swaps.
    pub fn publish(&self, shard: usize, snap: Arc<Snapshot>) {
        let Some(slot) = self.shards.get(shard) else {
            return;
        };
        // Encoded with no shared lock held, and pushed before the fabric
        // that serves it, so a History answer under that fabric's tag has
        // its point (see `history`). Only this shard's poller pushes here.
        if self.history_snapshots > 0 {
            let prev = slot.history.last();
            if let Some(entry) = history::Entry::new(&snap, prev.as_deref()) {
                drop(prev);
                slot.history.push(entry, self.history_snapshots);
            }
        }
        // What composing needs of a new shard is made before the lock.
        if self.sharded() {
            snap.id_hashes();
        }
        let old = slot.snap.store(snap);
        let _composing = self.composing.lock().unwrap_or_else(|p| p.into_inner());
        let snaps: Vec<Option<Arc<Snapshot>>> = self.shards.iter().map(|s| s.snap.load()).collect();
        let prev = self.store.load();
        let fabric = Fabric::compose(&snaps, prev.as_deref());
        // Each shard's conflicts are logged once per snapshot of it, when
        // they appear (its own new data, or an earlier shard's).
        for part in fabric.parts().iter().filter(|p| p.conflicts() > 0) {
            let Some(shard) = self.shards.get(part.shard) else {
                continue;
            };
            let mut logged = shard
                .conflict_logged
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *logged != part.snap.id() {
                *logged = part.snap.id().to_string();
                Event::new(Level::Warn, "shard.conflict")
                    .str("upstream", &shard.url)
                    .str("snapshot_id", part.snap.id())
                    .uint("conflicts", part.conflicts() as u64)
                    .emit();
            }
        }
        let replaced = self.store.store(Arc::new(fabric));
        drop(_composing);
        drop((old, prev, replaced));
    }
}

/// Turns taken, and body buffers waiting for the next.
#[derive(Default)]
struct Turns {
    busy: usize,
    buffers: Vec<Vec<u8>>,
}

/// A buffer bigger than this is freed after its turn, not kept: one huge
/// body must not pin its size for the life of the process.
pub const KEEP_BUFFER_MAX: usize = 64 << 20;

/// A turn to read and parse (see [`State::parse_permit`]), with a buffer
/// for the body.
pub struct ParsePermit<'a> {
    state: &'a State,
    /// Empty when lent; what the turn read into it until the turn ends.
    pub body: Vec<u8>,
}

impl Drop for ParsePermit<'_> {
    fn drop(&mut self) {
        let mut body = std::mem::take(&mut self.body);
        let mut turns = self.state.parsing.lock().unwrap_or_else(|p| p.into_inner());
        turns.busy = turns.busy.saturating_sub(1);
        if body.capacity() <= KEEP_BUFFER_MAX && turns.buffers.len() < self.state.max_parsing {
            body.clear();
            turns.buffers.push(body);
        }
        drop(turns);
        self.state.parsed.notify_one();
    }
}
