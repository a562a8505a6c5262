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
//!
//! Closing: [`MultiProducerSequencer::close`] sets a bit in the claim counter
//! with the same atomic read-modify-write that claims use, so every claim is
//! ordered before the close (it is drained) or after it (its producer sees
//! the bit in the value it got back and publishes nothing).

use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::loom::sync::atomic::{AtomicI64, Ordering};
use crate::ring_buffer::Claim;
use crate::sequence::{min_sequence, Sequence};

/// The claim counter's bit that says "closed: claim nothing more".
const CLOSED: i64 = 1 << 62;

/// A range claimed with `fetch_add` that has no room yet. It must become a
/// `Claim` (after the wait) and be published, unless the pipeline halted.
#[derive(Debug)]
pub(crate) struct PendingClaim {
    first: i64,
    last: i64,
}

#[derive(Debug)]
pub(crate) struct MultiProducerSequencer {
    /// The next sequence to claim, shared by every producer, with `CLOSED`.
    next_to_claim: CachePadded<AtomicI64>,
    capacity: i64,
    /// The leaf participants' sequences: no producer may lap them.
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

    /// Claims `count` sequences unconditionally; `None` once closed. The
    /// caller must wait for room ([`Self::ready`]) and publish all of them.
    #[inline]
    pub(crate) fn claim(&self, count: i64) -> Option<PendingClaim> {
        // Relaxed: the RMW alone makes claims disjoint and orders them
        // against `close`; the slot data is ordered by the stamps and the
        // gating sequences, not by this counter.
        let first = self.next_to_claim.fetch_add(count, Ordering::Relaxed);
        if first & CLOSED != 0 {
            return None;
        }
        Some(PendingClaim {
            first,
            last: first + count - 1,
        })
    }

    /// Turns a pending claim into a writable one once there is room.
    #[inline]
    pub(crate) fn ready(
        &self,
        pending: PendingClaim,
        cached_min_gate: &mut i64,
    ) -> Result<Claim, PendingClaim> {
        if !self.has_room(pending.last, cached_min_gate) {
            return Err(pending);
        }
        // SAFETY: invariant 1 — `fetch_add` gave this caller the range alone,
        // nothing in it is published yet (only its claimer publishes it), and
        // `has_room` saw every gating sequence `>= last - capacity` (acquire).
        Ok(unsafe { Claim::new(pending.first, pending.last) })
    }

    /// Claims `count` sequences only if they are free now.
    #[inline]
    pub(crate) fn try_claim(&self, count: i64, cached_min_gate: &mut i64) -> TryClaim {
        // Relaxed load and CAS: as in `claim`; the CAS succeeding means nobody
        // claimed (or closed) in between, so the range checked is the range taken.
        let mut first = self.next_to_claim.load(Ordering::Relaxed);
        loop {
            if first & CLOSED != 0 {
                return TryClaim::Closed;
            }
            let last = first + count - 1;
            if !self.has_room(last, cached_min_gate) {
                return TryClaim::Full;
            }
            match self.next_to_claim.compare_exchange_weak(
                first,
                first + count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                // SAFETY: invariant 1 — as in `ready`: the CAS gave this
                // caller `first..=last` alone, and `has_room` checked it.
                Ok(_) => return TryClaim::Claimed(unsafe { Claim::new(first, last) }),
                Err(current) => first = current,
            }
        }
    }

    /// Whether every gating handler has passed `last - capacity`, so slot
    /// `last` may be written. Re-reads the gating sequences only when the
    /// caller's cache cannot vouch for it.
    #[inline]
    fn has_room(&self, last: i64, cached_min_gate: &mut i64) -> bool {
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

    /// One past the last sequence claimed so far (after a close, refused
    /// claims count too: an over-estimate that only makes room look smaller).
    pub(crate) fn claimed_up_to(&self) -> i64 {
        // Acquire: keeps this read after whatever synchronization the caller
        // did before (the last handle's drop, or `close`); every claim is
        // in the counter's modification order, so none made before is missed.
        self.next_to_claim.load(Ordering::Acquire) & !CLOSED
    }

    /// Refuses every later claim; returns one past the last sequence claimed
    /// before (the shutdown point is one less).
    pub(crate) fn close(&self) -> i64 {
        // AcqRel: the RMW is ordered with every claim in the counter's
        // modification order (that, not acquire, is what makes every earlier
        // claim count); acquire keeps the shutdown that follows after it.
        // A second close gets a later value; the first shutdown point stands.
        self.next_to_claim.fetch_or(CLOSED, Ordering::AcqRel) & !CLOSED
    }

    /// Free slots now (claimed slots count as used), in `0..=capacity`.
    pub(crate) fn remaining_capacity(&self) -> i64 {
        // The gate first, then the claims: claims only grow, so the gate read
        // before them is never ahead of the last claim, and the difference
        // never goes negative (reading them the other way round, it could).
        let min_gate = min_sequence(&self.gating_sequences, i64::MAX);
        let in_use = self.claimed_up_to() - 1 - min_gate;
        (self.capacity - in_use).clamp(0, self.capacity)
    }
}

/// What `try_claim` found.
#[derive(Debug)]
pub(crate) enum TryClaim {
    Claimed(Claim),
    Full,
    Closed,
}

#[cfg(all(test, not(tickring_loom)))]
mod tests {
    use super::*;

    fn claimed(outcome: TryClaim) -> Option<i64> {
        match outcome {
            TryClaim::Claimed(claim) => Some(claim.next()),
            TryClaim::Full => None,
            TryClaim::Closed => panic!("not closed"),
        }
    }

    #[test]
    fn try_claim_never_over_claims() {
        let leaf = Arc::new(Sequence::new());
        let sequencer = MultiProducerSequencer::new(4, vec![Arc::clone(&leaf)].into());
        let mut cache = -1;
        assert_eq!(claimed(sequencer.try_claim(3, &mut cache)), Some(0));
        assert_eq!(claimed(sequencer.try_claim(2, &mut cache)), None);
        assert_eq!(claimed(sequencer.try_claim(1, &mut cache)), Some(3));
        assert_eq!(claimed(sequencer.try_claim(1, &mut cache)), None);
        assert_eq!(sequencer.claimed_up_to(), 4);
        leaf.set(1);
        assert_eq!(claimed(sequencer.try_claim(2, &mut cache)), Some(4));
        assert_eq!(sequencer.claimed_up_to(), 6);
    }

    #[test]
    fn claim_then_room() {
        let leaf = Arc::new(Sequence::new());
        let sequencer = MultiProducerSequencer::new(2, vec![Arc::clone(&leaf)].into());
        let mut cache = -1;
        let first = sequencer.claim(2).expect("open");
        assert!(sequencer.ready(first, &mut cache).is_ok());
        let third = sequencer.claim(1).expect("open");
        let third = sequencer.ready(third, &mut cache).expect_err("no room");
        leaf.set(0);
        assert!(sequencer.ready(third, &mut cache).is_ok());
    }

    #[test]
    fn a_close_orders_every_claim() {
        let leaf = Arc::new(Sequence::new());
        let sequencer = MultiProducerSequencer::new(8, vec![Arc::clone(&leaf)].into());
        let mut cache = -1;
        assert!(sequencer.claim(3).is_some());
        assert_eq!(sequencer.close(), 3);
        assert!(sequencer.claim(1).is_none());
        assert!(matches!(
            sequencer.try_claim(1, &mut cache),
            TryClaim::Closed
        ));
        assert_eq!(
            sequencer.close(),
            4,
            "a second close sees the refused claim"
        );
    }

    #[test]
    fn remaining_capacity_stays_within_the_ring() {
        let leaf = Arc::new(Sequence::new());
        let sequencer = MultiProducerSequencer::new(4, vec![Arc::clone(&leaf)].into());
        assert_eq!(sequencer.remaining_capacity(), 4);
        let _ = sequencer.claim(3);
        assert_eq!(sequencer.remaining_capacity(), 1);
        leaf.set(2);
        assert_eq!(sequencer.remaining_capacity(), 4);
    }
}
