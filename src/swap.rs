//! The snapshot cell: an `RwLock<Option<Arc<T>>>` that readers clone from and
//! a single writer replaces whole.
//!
//! A reader holds the read lock only for an `Arc` clone, so it never waits
//! behind the work of building a snapshot (that happens before `store`, with
//! no lock held) and never sees a half-built one. A poisoned lock is still
//! used: the value inside is always a complete `Arc`.

use std::sync::{Arc, RwLock};

pub struct Swap<T>(RwLock<Option<Arc<T>>>);

impl<T> Default for Swap<T> {
    fn default() -> Self {
        Swap(RwLock::new(None))
    }
}

impl<T> Swap<T> {
    /// An empty cell (`load` gives `None` until the first `store`).
    pub fn new() -> Swap<T> {
        Swap::default()
    }

    /// The current value, if any.
    pub fn load(&self) -> Option<Arc<T>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the value; returns the previous one (dropped by the caller,
    /// outside the lock).
    pub fn store(&self, value: Arc<T>) -> Option<Arc<T>> {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(value)
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
    fn empty_until_stored() {
        let cell: Swap<u8> = Swap::new();
        assert!(cell.load().is_none());
        assert!(cell.store(Arc::new(1)).is_none());
        assert_eq!(*cell.store(Arc::new(2)).unwrap(), 1);
    }
}
