//! The snapshot cell: an `RwLock<Option<Arc<T>>>` that readers clone from and
//! a single writer replaces whole, plus a version that waiters (streaming
//! subscribers) can sleep on until the next replacement.
//!
//! A reader holds the read lock only for an `Arc` clone, so it never waits
//! behind the work of building a snapshot (that happens before `store`, with
//! no lock held) and never sees a half-built one. A poisoned lock is still
//! used: the value inside is always a complete `Arc`.

use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

pub struct Swap<T> {
    cell: RwLock<Option<Arc<T>>>,
    /// Bumped on every store, under its own lock (readers never take it).
    version: Mutex<u64>,
    changed: Condvar,
}

impl<T> Default for Swap<T> {
    fn default() -> Self {
        Swap {
            cell: RwLock::new(None),
            version: Mutex::new(0),
            changed: Condvar::new(),
        }
    }
}

impl<T> Swap<T> {
    /// An empty cell (`load` gives `None` until the first `store`).
    pub fn new() -> Swap<T> {
        Swap::default()
    }

    /// The current value, if any.
    pub fn load(&self) -> Option<Arc<T>> {
        self.cell.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The number of stores so far.
    pub fn version(&self) -> u64 {
        *self.version.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (at most `timeout`) for a store after `version`; returns the
    /// version then current.
    pub fn wait_newer(&self, version: u64, timeout: Duration) -> u64 {
        let guard = self.version.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |v| *v <= version)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    /// Replaces the value; returns the previous one (dropped by the caller,
    /// outside the lock).
    pub fn store(&self, value: Arc<T>) -> Option<Arc<T>> {
        let old = self
            .cell
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(value);
        *self.version.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_always_see_a_whole_value() {
        // Each value is a vector whose elements all equal its length; a torn
        // read would break that.
        let cell = Arc::new(Swap::new());
        cell.store(Arc::new(vec![1usize]));
        let writer = {
            let cell = cell.clone();
            std::thread::spawn(move || {
                for n in 2..2000usize {
                    cell.store(Arc::new(vec![n; n]));
                }
            })
        };
        let mut last = 0;
        while !writer.is_finished() {
            let v = cell.load().unwrap();
            assert!(v.iter().all(|&x| x == v.len()));
            assert!(v.len() >= last, "values only move forward");
            last = v.len();
        }
        writer.join().unwrap();
        assert_eq!(cell.load().unwrap().len(), 1999);
    }

    #[test]
    fn waiters_wake_on_the_next_store() {
        let cell = Arc::new(Swap::new());
        let v0 = cell.version();
        let waiter = {
            let cell = cell.clone();
            std::thread::spawn(move || cell.wait_newer(v0, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        cell.store(Arc::new(1u8));
        assert_eq!(waiter.join().unwrap(), v0 + 1);
        assert_eq!(
            cell.wait_newer(v0 + 1, Duration::from_millis(10)),
            v0 + 1,
            "times out"
        );
    }

    #[test]
    fn empty_until_stored() {
        let cell: Swap<u8> = Swap::new();
        assert!(cell.load().is_none());
        assert!(cell.store(Arc::new(1)).is_none());
        assert_eq!(*cell.store(Arc::new(2)).unwrap(), 1);
    }
}
