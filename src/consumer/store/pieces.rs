//! Large bodies built as a list of shared pieces instead of one string.
//!
//! The `ListMetrics` table and the `/metrics` fabric block of a 100k-switch
//! fleet run to tens of megabytes. Built as one `String`, such a body grows
//! by doubling (up to twice its size in capacity, copied at every step) and
//! is copied once more into the `Arc` a request shares; a freed block that
//! size can also stay in the allocator's heap. Built here, text goes into a
//! small reused buffer that is frozen into an exact-size `Arc<str>` each time
//! it fills, so the peak is the body plus one buffer, and every piece is
//! sent as a chunk of the answer without being copied again.

use std::sync::Arc;

/// The piece size the snapshot table and the fabric block are cut at.
pub const PIECE_BYTES: usize = 256 * 1024;

/// Text under construction: the pieces frozen so far and the open one.
pub struct Pieces {
    open: String,
    limit: usize,
    done: Vec<Arc<str>>,
}

impl Pieces {
    /// Empty, freezing a piece once it holds `limit` bytes or more.
    pub fn new(limit: usize) -> Pieces {
        Pieces {
            open: String::with_capacity(limit + limit / 4),
            limit,
            done: Vec::new(),
        }
    }

    /// The open piece, to append to.
    pub fn text(&mut self) -> &mut String {
        &mut self.open
    }

    /// Pieces frozen so far.
    pub fn frozen(&self) -> usize {
        self.done.len()
    }

    /// Freezes the open piece if it has reached the limit; true if it did.
    /// Call it only where a piece may end (a row or line boundary).
    pub fn cut_if_full(&mut self) -> bool {
        if self.open.len() < self.limit {
            return false;
        }
        self.freeze();
        true
    }

    fn freeze(&mut self) {
        self.done.push(Arc::from(self.open.as_str()));
        self.open.clear();
    }

    /// Every piece, the open one frozen last (unless it is empty and
    /// others exist). Never an empty list.
    pub fn finish(mut self) -> Vec<Arc<str>> {
        if !self.open.is_empty() || self.done.is_empty() {
            self.freeze();
        }
        self.done
    }
}

/// The total length of `pieces`.
pub fn total_len(pieces: &[Arc<str>]) -> usize {
    pieces.iter().map(|p| p.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_at_the_limit_and_join_to_the_text() {
        let mut p = Pieces::new(10);
        for i in 0..7 {
            p.text().push_str(&format!("line {i}\n"));
            p.cut_if_full();
        }
        assert_eq!(p.frozen(), 3);
        let pieces = p.finish();
        assert_eq!(pieces.len(), 4);
        assert!(pieces[..3].iter().all(|piece| piece.len() >= 10));
        let joined: String = pieces.iter().map(|piece| &**piece).collect();
        let want: String = (0..7).map(|i| format!("line {i}\n")).collect();
        assert_eq!(joined, want);
        assert_eq!(total_len(&pieces), want.len());
    }

    #[test]
    fn an_empty_open_piece_is_dropped_unless_it_is_all_there_is() {
        let mut p = Pieces::new(4);
        p.text().push_str("abcd");
        assert!(p.cut_if_full());
        assert_eq!(p.finish().len(), 1);
        assert_eq!(&*Pieces::new(4).finish()[0], "");
    }
}
