//! The multi-producer sequencer: claim with `fetch_add`, publish by stamping.
//!
//! Producers claim disjoint ranges from one shared counter and publish each
//! slot by stamping it with its sequence (the lap number and the slot index
//! in one word: `sequence >> log2(size)` is the lap). Events may be published
//! out of order; a handler reads the stamps and stops at the first gap, so a
//! claimed but unpublished sequence is never read as published.
//!
//! `publish` claims first and then waits for room (a claimed sequence must be
//! published, or the handlers would wait for it forever). `try_*` and
//! `*_timeout` claim with compare-exchange only once the room is there, so
//! they never claim what they might not publish.

use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::loom::sync::atomic::{AtomicI64, Ordering};
use crate::sequence::{min_sequence, Sequence};

#[derive(Debug)]
pub(crate) struct MultiProducerSequencer {
    /// The next sequence to claim, shared by every producer.
    next_to_claim: CachePadded<AtomicI64>,
    capacity: i64,
    /// The leaf handlers' sequences: no producer may lap them.
    gating_sequences: Box<[Arc<Sequence>]>,
}

impl MultiProducerSequencer {
    pub(crate) fn new(capacity: i64, gating_sequences: Box<[Arc<Sequence>]>) -> Self {
        Self {
            next_to_claim: CachePadded::new(AtomicI64::new(0)),
            capacity,
            gating_sequences,
        }
    }

    pub(crate) fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Claims `count` sequences unconditionally; returns the first. The
    /// caller must wait for room and then publish all of them.
    #[inline]
    pub(crate) fn claim(&self, count: i64) -> i64 {
        // Relaxed: the RMW alone makes claims disjoint; the slot data is
        // ordered by the stamps and the gating sequences, not by this counter.
        self.next_to_claim.fetch_add(count, Ordering::Relaxed)
    }

    /// Claims `count` sequences only if they are free now; returns the first.
    #[inline]
    pub(crate) fn try_claim(&self, count: i64, cached_min_gate: &mut i64) -> Option<i64> {
        // Relaxed load and CAS: as in `claim`; the CAS succeeding means nobody
        // claimed in between, so the range checked is the range taken.
        let mut first = self.next_to_claim.load(Ordering::Relaxed);
        loop {
            if !self.has_room(first + count - 1, cached_min_gate) {
                return None;
            }
            match self.next_to_claim.compare_exchange_weak(
                first,
                first + count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(first),
                Err(current) => first = current,
            }
        }
    }

    /// Whether every gating handler has passed `last - capacity`, so slot
    /// `last` may be written. Re-reads the gating sequences only when the
    /// caller's cache cannot vouch for it.
    #[inline]
    pub(crate) fn has_room(&self, last: i64, cached_min_gate: &mut i64) -> bool {
        let wrap_point = last - self.capacity;
        if wrap_point <= *cached_min_gate {
            return true;
        }
        // Acquire loads (in `get`): pair with each handler's release after its
        // batch, so its reads of the slot are done before the slot is rewritten.
        // `build()` guarantees at least one gating sequence.
        *cached_min_gate = min_sequence(&self.gating_sequences, i64::MAX);
        wrap_point <= *cached_min_gate
    }

    /// One past the last sequence claimed so far.
    pub(crate) fn claimed_up_to(&self) -> i64 {
        // Acquire: the caller (the last producer handle) already synchronized
        // with every other handle's drop; acquire keeps this read after that.
        self.next_to_claim.load(Ordering::Acquire)
    }

    /// The minimum gating sequence now.
    pub(crate) fn min_gate(&self) -> i64 {
        min_sequence(&self.gating_sequences, self.claimed_up_to() - 1)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn try_claim_never_over_claims() {
        let leaf = Arc::new(Sequence::new());
        let sequencer = MultiProducerSequencer::new(4, vec![Arc::clone(&leaf)].into());
        let mut cache = -1;
        assert_eq!(sequencer.try_claim(3, &mut cache), Some(0));
        assert_eq!(sequencer.try_claim(2, &mut cache), None);
        assert_eq!(sequencer.try_claim(1, &mut cache), Some(3));
        assert_eq!(sequencer.try_claim(1, &mut cache), None);
        assert_eq!(sequencer.claimed_up_to(), 4);
        leaf.set(1);
        assert_eq!(sequencer.try_claim(2, &mut cache), Some(4));
        assert_eq!(sequencer.claimed_up_to(), 6);
    }

    #[test]
    fn claim_then_room() {
        let leaf = Arc::new(Sequence::new());
        let sequencer = MultiProducerSequencer::new(2, vec![Arc::clone(&leaf)].into());
        let mut cache = -1;
        assert_eq!(sequencer.claim(2), 0);
        assert!(sequencer.has_room(1, &mut cache));
        assert_eq!(sequencer.claim(1), 2);
        assert!(!sequencer.has_room(2, &mut cache));
        leaf.set(0);
        assert!(sequencer.has_room(2, &mut cache));
    }
}
