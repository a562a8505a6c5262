//! `SequenceBarrier`: where a participant waits for its next events.
//!
//! A first-stage participant waits for events to be *published*: it reads
//! the stamps in the slots themselves (see `ring_buffer.rs`), so its wait and
//! its read of the event touch the same cache line. A later stage waits for
//! its upstream stage: the minimum of the upstream sequences, cached so that
//! a batch costs one read of them.
//!
//! Either way the barrier hands out a [`Readable`] range — the only way to
//! read a slot — and reports the pipeline's end: a halt at once, a shutdown
//! only after everything published before it has gone past.

use std::sync::Arc;
use std::time::Duration;

use crate::ring_buffer::{Readable, RingBuffer};
use crate::sequence::{min_sequence, Sequence};
use crate::shared::Shared;
use crate::wait::WaitStrategy;

/// Why a wait ended without events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// The participant's timeout passed.
    TimedOut,
    /// Shut down, and every event published before the shutdown is past.
    Drained,
    /// The pipeline halted.
    Halted,
}

/// What a barrier found available: the range handed out (at most `limit`),
/// and how far the backlog it saw reaches (for `on_batch_start`).
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) readable: Readable,
    pub(crate) available: i64,
}

#[derive(Debug)]
pub(crate) struct SequenceBarrier {
    /// Upstream sequences; empty for a first stage (gate on stamps).
    dependencies: Box<[Arc<Sequence>]>,
    /// The last upstream minimum seen: no re-read while it covers the request.
    cached_available: i64,
    /// A first stage's last batch reached its limit: it is behind, so the
    /// next batch's limit is probably stamped (see `available_up_to`).
    behind: bool,
}

impl SequenceBarrier {
    pub(crate) fn new(dependencies: Box<[Arc<Sequence>]>) -> Self {
        Self {
            dependencies,
            cached_available: -1,
            behind: false,
        }
    }

    /// Whether this barrier gates on upstream participants (not on stamps).
    pub(crate) fn has_dependencies(&self) -> bool {
        !self.dependencies.is_empty()
    }

    /// The highest available sequence from `next` on (`next - 1`: none); a
    /// first stage scans the stamps no further than `limit`.
    #[inline]
    fn available<E>(&mut self, ring: &RingBuffer<E>, next: i64, limit: i64) -> i64 {
        if self.dependencies.is_empty() {
            let highest = ring.available_up_to(next, limit, self.behind);
            self.behind = highest == limit;
            highest
        } else {
            if self.cached_available < next {
                self.cached_available = min_sequence(&self.dependencies, i64::MAX);
            }
            self.cached_available
        }
    }

    /// Events `next..` available now, at most up to `limit`, without waiting.
    /// `next` must be one past the caller's own sequence.
    #[inline]
    pub(crate) fn try_batch<E>(
        &mut self,
        ring: &RingBuffer<E>,
        next: i64,
        limit: i64,
    ) -> Option<Batch> {
        let available = self.available(ring, next, limit);
        if available < next {
            return None;
        }
        // SAFETY: invariant 2 — every sequence up to `available` is published
        // and its writes visible: first stage, `available_up_to` acquired each
        // stamp in order, or (one producer) the stamp of `available` itself,
        // which that producer released after every earlier event and stamp; or
        // is passed by every upstream sequence (acquired in `min_sequence`);
        // the caller's own sequence is `next - 1` and it stores a new one only
        // after dropping the batch (see `processor.rs` and `poller.rs`).
        let readable = unsafe { Readable::new(next, available.min(limit)) };
        Some(Batch {
            readable,
            available,
        })
    }

    /// Waits until `next` is available and returns the batch from `next` (at
    /// most up to `limit`), or why there is none.
    #[inline]
    pub(crate) fn wait_for<E, W: WaitStrategy>(
        &mut self,
        shared: &Shared<E, W>,
        next: i64,
        limit: i64,
        timeout: Option<Duration>,
    ) -> Result<Batch, WaitOutcome> {
        if let Some(batch) = self.try_batch(&shared.ring, next, limit) {
            return Ok(batch);
        }
        let ring = &shared.ring;
        shared
            .wait
            .wait_until(timeout, || {
                if let Some(batch) = self.try_batch(ring, next, limit) {
                    return Some(Ok(batch));
                }
                self.end_of_stream(ring, next).map(Err)
            })
            .unwrap_or(Err(WaitOutcome::TimedOut))
    }

    /// With nothing available at `next`: whether nothing more will come.
    #[inline]
    pub(crate) fn end_of_stream<E>(&self, ring: &RingBuffer<E>, next: i64) -> Option<WaitOutcome> {
        if ring.state.is_halted() {
            return Some(WaitOutcome::Halted);
        }
        // Everything up to `shutdown_at` was published before it was set
        // (acquire), so `next` past it means nothing more will come.
        if next > ring.state.shutdown_at() {
            return Some(WaitOutcome::Drained);
        }
        None
    }
}

#[cfg(all(test, not(tickring_loom)))]
mod tests {
    use super::*;
    use crate::ring_buffer::Claim;

    /// Stamps `first..=last` without events (the tests only read stamps).
    fn publish(ring: &RingBuffer<u64>, first: i64, last: i64) {
        // SAFETY: single-threaded test; nothing reads the events.
        ring.publish_unwritten(&mut unsafe { Claim::new(first, last) });
    }

    #[test]
    fn a_first_stage_probes_the_limit_only_after_a_full_batch() {
        let ring = RingBuffer::new(16, true, &mut || 0u64).expect("valid size");
        publish(&ring, 0, 3);
        // A gap at 4 with 7 stamped: one producer never leaves it, so it
        // shows whether the barrier trusted the stamp of 7 alone.
        publish(&ring, 5, 5);
        publish(&ring, 7, 7);
        let mut caught_up = SequenceBarrier::new(Box::new([]));
        assert!(
            caught_up.try_batch(&ring, 4, 7).is_none(),
            "no full batch yet: scanned"
        );
        let mut behind = SequenceBarrier::new(Box::new([]));
        let first = behind.try_batch(&ring, 0, 3).expect("0..=3 published");
        assert_eq!(first.readable.last(), 3, "a full batch");
        let next = behind.try_batch(&ring, 4, 7).expect("probed: 7 is stamped");
        assert_eq!(next.readable.last(), 7);
        // A short (here empty) batch clears it again.
        assert!(behind.try_batch(&ring, 8, 11).is_none());
        assert!(
            behind.try_batch(&ring, 4, 7).is_none(),
            "scanned after a short batch"
        );
    }
}
