//! `Sequence`: a cache-padded atomic counter, the unit of progress in the ring.
//!
//! Every handler owns one `Sequence` holding the highest sequence number it
//! has finished with; downstream stages and the producer read it to know how
//! far they may go. It starts at `-1` ("nothing handled yet"), as in LMAX.

use crossbeam_utils::CachePadded;

use crate::loom::sync::atomic::{AtomicI64, Ordering};

/// The value every [`Sequence`] starts at: no event handled yet.
pub(crate) const INITIAL_SEQUENCE: i64 = -1;

/// A cache-padded atomic sequence number.
///
/// The padding (128 bytes on x86-64, covering the adjacent-line prefetcher)
/// keeps two sequences that are written by different threads off each
/// other's cache lines.
#[derive(Debug)]
pub(crate) struct Sequence {
    value: CachePadded<AtomicI64>,
}

impl Sequence {
    /// A sequence at [`INITIAL_SEQUENCE`] (`-1`).
    pub(crate) fn new() -> Self {
        Self::with_value(INITIAL_SEQUENCE)
    }

    /// A sequence starting at `value`.
    pub(crate) fn with_value(value: i64) -> Self {
        Self {
            value: CachePadded::new(AtomicI64::new(value)),
        }
    }

    /// Reads the sequence.
    #[inline]
    pub(crate) fn get(&self) -> i64 {
        // Acquire: pairs with the owner's release in `set`, so every read of
        // the slots up to this value sees what the owner wrote (or finished reading).
        self.value.load(Ordering::Acquire)
    }

    /// Publishes a new value.
    #[inline]
    pub(crate) fn set(&self, value: i64) {
        // Release: the owner's work on every slot up to `value` happens-before
        // any reader that observes `value`.
        self.value.store(value, Ordering::Release);
    }
}

impl Default for Sequence {
    fn default() -> Self {
        Self::new()
    }
}

/// The minimum over a group of sequences, or `default` when the group is empty.
///
/// The producer gates on the minimum of the leaf handlers' sequences; a
/// downstream stage gates on the minimum of its upstream stage.
#[inline]
pub(crate) fn min_sequence<S: AsRef<Sequence>>(sequences: &[S], default: i64) -> i64 {
    let mut minimum = default;
    for sequence in sequences {
        minimum = minimum.min(sequence.as_ref().get());
    }
    minimum
}

#[cfg(all(test, not(tickring_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn starts_at_minus_one_and_stores() {
        let sequence = Sequence::new();
        assert_eq!(sequence.get(), INITIAL_SEQUENCE);
        sequence.set(7);
        assert_eq!(sequence.get(), 7);
    }

    #[test]
    fn minimum_of_a_group() {
        let group: Vec<Arc<Sequence>> = [5, 3, 9]
            .into_iter()
            .map(|v| Arc::new(Sequence::with_value(v)))
            .collect();
        assert_eq!(min_sequence(&group, i64::MAX), 3);
        let empty: Vec<Arc<Sequence>> = Vec::new();
        assert_eq!(min_sequence(&empty, 42), 42);
    }

    #[test]
    fn each_sequence_has_its_own_cache_line() {
        assert!(std::mem::size_of::<Sequence>() >= 64);
        assert!(std::mem::align_of::<Sequence>() >= 64);
    }
}
