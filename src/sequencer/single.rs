//! The single-producer sequencer: no atomic read-modify-write anywhere.
//!
//! The next sequence lives in a plain field of the (only) producer. Room is
//! checked against a cached minimum of the gating (leaf) handlers' sequences;
//! they are re-read only when a claim might wrap onto a slot the cache cannot
//! vouch for. Publishing is the slot's stamp, a release store.

use std::sync::Arc;

use crate::ring_buffer::Claim;
use crate::sequence::{min_sequence, Sequence};

#[derive(Debug)]
pub(crate) struct SingleProducerSequencer {
    /// The next sequence to claim.
    next: i64,
    /// The minimum gating sequence last read: slots up to
    /// `cached_min_gate + capacity` are free without another look.
    cached_min_gate: i64,
    capacity: i64,
    /// The leaf participants' sequences: the producer may not lap them.
    gating_sequences: Box<[Arc<Sequence>]>,
}

impl SingleProducerSequencer {
    pub(crate) fn new(capacity: i64, gating_sequences: Box<[Arc<Sequence>]>) -> Self {
        Self {
            next: 0,
            cached_min_gate: -1,
            capacity,
            gating_sequences,
        }
    }

    /// The next sequence to claim.
    #[inline]
    pub(crate) fn next(&self) -> i64 {
        self.next
    }

    /// The last sequence published (`-1` before the first).
    #[inline]
    pub(crate) fn last_published(&self) -> i64 {
        self.next - 1
    }

    /// The highest sequence the gating handlers must have passed before
    /// `next..next + count` may be claimed.
    #[inline]
    pub(crate) fn wrap_point(&self, count: i64) -> i64 {
        self.next + count - 1 - self.capacity
    }

    /// Claims `next..next + count` if the gating handlers left room for it,
    /// re-reading their sequences only when the cached gate says no.
    /// `count` is at least 1 and at most the capacity.
    #[inline(always)]
    pub(crate) fn try_claim(&mut self, count: i64) -> Option<Claim> {
        if let Some(claim) = self.try_claim_cached(count) {
            return Some(claim);
        }
        self.cached_min_gate = read_gate(&self.gating_sequences, self.next - 1);
        self.try_claim_cached(count)
    }

    /// Claims `next..next + count` if the cached gate alone vouches for the
    /// room. No atomic access: the producer makes this claim before its
    /// halt check, so that nothing it read here is re-read after that
    /// atomic load (see `Producer::try_room`).
    #[inline(always)]
    pub(crate) fn try_claim_cached(&mut self, count: i64) -> Option<Claim> {
        debug_assert!(count >= 1 && count <= self.capacity);
        if self.wrap_point(count) > self.cached_min_gate {
            return None;
        }
        // SAFETY: invariant 1 — this sequencer belongs to the one producer
        // (`Producer` is not `Clone`), so nobody else claims these sequences;
        // they are past every published one; and the cached gating minimum
        // (read with acquire, in `Sequence::get`; gating sequences only
        // grow) is `>= wrap_point`, i.e. every gating handler has finished
        // with the slots' previous events.
        Some(unsafe { Claim::new(self.next, self.next + count - 1) })
    }

    /// The gating (leaf) participants' sequences, for a wait that must not
    /// hold `&mut self` (see `Producer`'s slow path).
    #[inline]
    pub(crate) fn gating_sequences(&self) -> &[Arc<Sequence>] {
        &self.gating_sequences
    }

    /// Records a minimum gating sequence read by the caller.
    #[inline]
    pub(crate) fn set_cached_gate(&mut self, min_gate: i64) {
        self.cached_min_gate = min_gate;
    }

    /// Marks every sequence below `next` as claimed and published.
    #[inline]
    pub(crate) fn set_next(&mut self, next: i64) {
        debug_assert!(next >= self.next);
        self.next = next;
    }

    /// Free slots now (reads the gating sequences), in `0..=capacity`.
    pub(crate) fn remaining_capacity(&self) -> i64 {
        let min_gate = min_sequence(&self.gating_sequences, self.next - 1);
        (self.capacity - (self.last_published() - min_gate)).clamp(0, self.capacity)
    }

    pub(crate) fn capacity(&self) -> i64 {
        self.capacity
    }
}

/// Re-reads the gating sequences (acquire: pairs with each handler's release
/// after its batch, so its reads of the slots are done). A free function on
/// the heap slice, not a method: the producer's own fields never escape the
/// inlined hot path, so the compiler may keep them in registers.
#[cold]
#[inline(never)]
pub(crate) fn read_gate(gating_sequences: &[Arc<Sequence>], default: i64) -> i64 {
    min_sequence(gating_sequences, default)
}

#[cfg(all(test, not(tickring_loom)))]
mod tests {
    use super::*;

    #[test]
    fn cached_gate_allows_a_full_ring_then_stops() {
        let leaf = Arc::new(Sequence::new());
        let mut sequencer = SingleProducerSequencer::new(4, vec![Arc::clone(&leaf)].into());
        for _ in 0..4 {
            let claim = sequencer.try_claim(1).expect("room");
            sequencer.set_next(claim.next() + 1);
        }
        assert!(sequencer.try_claim(1).is_none());
        assert_eq!(sequencer.remaining_capacity(), 0);
        leaf.set(1);
        assert!(sequencer.try_claim(2).is_some());
        assert!(sequencer.try_claim(3).is_none());
        assert_eq!(sequencer.remaining_capacity(), 2);
    }
}
