//! The sorted ring: latency percentiles over a rolling window.
//!
//! A ring buffer remembers the last `capacity` samples in arrival order; a
//! sorted vector holds the same samples in value order. Recording a sample
//! evicts the oldest from both (a binary search and a short `memmove` in a
//! vector of ~1000 integers) so a percentile is a single index, not a sort.
//! Samples are microseconds: a fast server's latencies are far below a
//! millisecond and must not all round to zero.

use std::collections::VecDeque;

/// Percentiles over the last `capacity` samples, plus an all-time count.
#[derive(Debug, Clone)]
pub struct SortedRing {
    order: VecDeque<u32>,
    sorted: Vec<u32>,
    capacity: usize,
    count: u64,
}

impl SortedRing {
    /// A ring that remembers `capacity` samples (at least one).
    pub fn new(capacity: usize) -> SortedRing {
        let capacity = capacity.max(1);
        SortedRing {
            order: VecDeque::with_capacity(capacity),
            sorted: Vec::with_capacity(capacity),
            capacity,
            count: 0,
        }
    }

    /// Adds one sample, evicting the oldest when the window is full.
    pub fn record(&mut self, sample: u32) {
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                if let Ok(i) = self.sorted.binary_search(&old) {
                    self.sorted.remove(i);
                }
            }
        }
        self.order.push_back(sample);
        let i = self.sorted.partition_point(|&v| v <= sample);
        self.sorted.insert(i, sample);
        self.count += 1;
    }

    /// The nearest-rank `p`-th percentile (0 < p ≤ 100) of the window, or
    /// `None` while it is empty. `percentile(100.0)` is the window's maximum.
    pub fn percentile(&self, p: f64) -> Option<u32> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let rank = (p / 100.0 * n as f64).ceil() as usize;
        Some(self.sorted[rank.clamp(1, n) - 1])
    }

    /// Samples currently in the window.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Samples recorded since the ring was made (not just the window).
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(window: &[u32], p: f64) -> u32 {
        let mut v = window.to_vec();
        v.sort_unstable();
        let rank = (p / 100.0 * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    #[test]
    fn empty_ring_has_no_percentiles() {
        let r = SortedRing::new(10);
        assert_eq!(r.percentile(50.0), None);
        assert!(r.is_empty());
    }

    #[test]
    fn nearest_rank_on_a_small_window() {
        let mut r = SortedRing::new(100);
        for v in 1..=100 {
            r.record(v);
        }
        assert_eq!(r.percentile(50.0), Some(50));
        assert_eq!(r.percentile(95.0), Some(95));
        assert_eq!(r.percentile(99.0), Some(99));
        assert_eq!(r.percentile(100.0), Some(100));
        assert_eq!(r.percentile(0.0), Some(1));
    }

    #[test]
    fn matches_brute_force_sort_over_a_rolling_window() {
        let mut rng = fastrand::Rng::with_seed(42);
        let cap = 1000;
        let mut ring = SortedRing::new(cap);
        let mut all = Vec::new();
        for i in 0..10_000 {
            // Many duplicates and a long tail, like real latencies.
            let v = if rng.u8(..) < 5 {
                rng.u32(0..1_000_000)
            } else {
                rng.u32(0..300)
            };
            ring.record(v);
            all.push(v);
            if i % 97 == 0 || i > 9_990 {
                let window = &all[all.len().saturating_sub(cap)..];
                for p in [1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
                    assert_eq!(ring.percentile(p), Some(brute(window, p)), "p{p} at {i}");
                }
                assert_eq!(ring.len(), window.len());
            }
        }
        assert_eq!(ring.count(), 10_000);
    }
}
