//! The multi-producer handle: `Clone + Send`, one per publishing thread.
//!
//! Every handle shares one claim counter (see `sequencer/multi.rs`) and keeps
//! its own cached minimum gating sequence, so handles never write a shared
//! line except to claim. Dropping the last handle shuts the pipeline down and
//! drains it, as the single producer does.

use std::fmt;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::{PublishError, TryPublishError};
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::Mutex;
use crate::pipeline::Pipeline;
use crate::poller::EventPoller;
use crate::report::ShutdownReport;
use crate::ring_buffer::RingBuffer;
use crate::sequence::INITIAL_SEQUENCE;
use crate::sequencer::multi::MultiProducerSequencer;
use crate::sequencer::{wait_for_room, Backoff, FullRingWait};
use crate::wait::WaitStrategy;

struct Shared<E, W: WaitStrategy> {
    sequencer: MultiProducerSequencer,
    ring: Arc<RingBuffer<E>>,
    pipeline: Pipeline<W>,
    pollers: Mutex<Vec<EventPoller<E, W>>>,
    full_ring_wait: FullRingWait,
    /// Live handles; the one that takes it to zero shuts the pipeline down.
    handles: CachePadded<AtomicUsize>,
}

/// A producer handle of a pipeline built with
/// [`build_multi_producer`](crate::build_multi_producer).
///
/// Clone it for each thread that publishes. Each handle's events reach the
/// handlers in the order that handle published them; events of different
/// handles interleave in claim order.
///
/// If `fill` panics, the slot already claimed is still published (with
/// whatever `fill` wrote, on top of the slot's previous contents) and the
/// panic continues: a claimed sequence that never appeared would stall every
/// handler. This is LMAX's publish-in-`finally` rule; do fallible work before
/// `publish`.
pub struct MultiProducer<E, W: WaitStrategy> {
    shared: Arc<Shared<E, W>>,
    /// This handle's view of the slowest gating handler.
    cached_min_gate: i64,
    /// `shutdown()` already let go of this handle.
    released: bool,
}

impl<E, W: WaitStrategy> MultiProducer<E, W> {
    pub(crate) fn new(
        ring: Arc<RingBuffer<E>>,
        sequencer: MultiProducerSequencer,
        pipeline: Pipeline<W>,
        pollers: Vec<EventPoller<E, W>>,
        full_ring_wait: FullRingWait,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                sequencer,
                ring,
                pipeline,
                pollers: Mutex::new(pollers),
                full_ring_wait,
                handles: CachePadded::new(AtomicUsize::new(1)),
            }),
            cached_min_gate: INITIAL_SEQUENCE,
            released: false,
        }
    }

    /// Claims the next slot, lets `fill` write the event in place, and
    /// publishes it; returns its sequence. Waits (per the pipeline's
    /// [`FullRingWait`]) while the ring is full; fails with
    /// [`PublishError::Halted`] if a handler halted the pipeline.
    #[inline]
    pub fn publish<F: FnOnce(&mut E)>(&mut self, fill: F) -> Result<i64, PublishError> {
        self.ensure_running()?;
        let sequence = self.shared.sequencer.claim(1);
        self.wait_for_claimed(sequence)?;
        self.write_and_publish_one(sequence, fill);
        Ok(sequence)
    }

    /// Claims `count` consecutive slots, calls `fill(event, sequence)` for
    /// each, and publishes them with one release. Returns the last sequence.
    #[inline]
    pub fn batch_publish<F: FnMut(&mut E, i64)>(
        &mut self,
        count: usize,
        fill: F,
    ) -> Result<i64, PublishError> {
        let count = self
            .checked_batch(count)
            .map_err(|_| PublishError::BatchTooLarge {
                requested: count,
                capacity: self.capacity(),
            })?;
        self.ensure_running()?;
        if count == 0 {
            return Ok(self.shared.sequencer.claimed_up_to() - 1);
        }
        let first = self.shared.sequencer.claim(count);
        let last = first + count - 1;
        self.wait_for_claimed(last)?;
        self.write_and_publish(first, last, fill);
        Ok(last)
    }

    /// Publishes one event if a slot is free now; otherwise returns
    /// [`TryPublishError::Full`] without claiming anything or calling `fill`.
    #[inline]
    pub fn try_publish<F: FnOnce(&mut E)>(&mut self, fill: F) -> Result<i64, TryPublishError> {
        self.ensure_running().map_err(|_| TryPublishError::Halted)?;
        match self
            .shared
            .sequencer
            .try_claim(1, &mut self.cached_min_gate)
        {
            Some(sequence) => {
                self.write_and_publish_one(sequence, fill);
                Ok(sequence)
            }
            None => Err(self.full_or_halted()),
        }
    }

    /// Publishes `count` events if that many slots are free now; otherwise
    /// returns [`TryPublishError::Full`] without claiming anything.
    #[inline]
    pub fn try_batch_publish<F: FnMut(&mut E, i64)>(
        &mut self,
        count: usize,
        fill: F,
    ) -> Result<i64, TryPublishError> {
        let count = self.checked_batch(count)?;
        self.ensure_running().map_err(|_| TryPublishError::Halted)?;
        if count == 0 {
            return Ok(self.shared.sequencer.claimed_up_to() - 1);
        }
        match self
            .shared
            .sequencer
            .try_claim(count, &mut self.cached_min_gate)
        {
            Some(first) => {
                let last = first + count - 1;
                self.write_and_publish(first, last, fill);
                Ok(last)
            }
            None => Err(self.full_or_halted()),
        }
    }

    /// As [`MultiProducer::publish`], but gives up with
    /// [`PublishError::TimedOut`] if no slot frees up within `timeout`.
    /// Nothing is claimed or published then, and `fill` is not called.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use tickring::{build_multi_producer, PublishError, Yielding};
    ///
    /// let (release, held) = mpsc::channel::<()>();
    /// let mut producer = build_multi_producer(1, || 0u8, Yielding::new())
    ///     .handle_events_with(move |_: &u8, _, _| { let _ = held.recv(); })
    ///     .build()?;
    /// producer.publish(|event| *event = 1)?;         // the handler holds it
    /// let outcome = producer.publish_timeout(Duration::from_millis(10), |event| *event = 2);
    /// assert_eq!(outcome, Err(PublishError::TimedOut));
    /// drop(release);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_timeout<F: FnOnce(&mut E)>(
        &mut self,
        timeout: Duration,
        fill: F,
    ) -> Result<i64, PublishError> {
        self.ensure_running()?;
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::new(self.shared.full_ring_wait);
        loop {
            if let Some(sequence) = self
                .shared
                .sequencer
                .try_claim(1, &mut self.cached_min_gate)
            {
                self.write_and_publish_one(sequence, fill);
                return Ok(sequence);
            }
            if self.shared.pipeline.state.is_halted() {
                return Err(PublishError::Halted);
            }
            if Instant::now() >= deadline {
                return Err(PublishError::TimedOut);
            }
            backoff.snooze();
        }
    }

    /// The ring's size.
    pub fn capacity(&self) -> usize {
        self.shared.sequencer.capacity() as usize
    }

    /// Slots free now (claimed slots count as used).
    pub fn remaining_capacity(&self) -> usize {
        let sequencer = &self.shared.sequencer;
        let in_use = sequencer.claimed_up_to() - 1 - sequencer.min_gate();
        (sequencer.capacity() - in_use).max(0) as usize
    }

    /// Each participant's name and lag behind the last claimed sequence.
    pub fn handler_lags(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.shared
            .pipeline
            .lags(self.shared.sequencer.claimed_up_to() - 1)
    }

    /// Takes the poller added with `add_poller(name)`, once.
    pub fn take_poller(&self, name: &str) -> Option<EventPoller<E, W>> {
        let mut pollers = self
            .shared
            .pollers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let index = pollers.iter().position(|poller| poller.name() == name)?;
        Some(pollers.swap_remove(index))
    }

    /// Lets go of this handle. If it was the last, the pipeline drains and
    /// shuts down (as when the last handle is dropped) and the report is
    /// returned; otherwise `None`.
    pub fn shutdown(mut self) -> Option<ShutdownReport> {
        self.released = true;
        self.release()
    }

    fn release(&self) -> Option<ShutdownReport> {
        // AcqRel: each handle's publishes happen-before its release here, and
        // the last handle's acquire sees all of them before it shuts down.
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        let shared = &self.shared;
        shared
            .pipeline
            .begin_shutdown(shared.sequencer.claimed_up_to() - 1);
        // See `Producer::shutdown`: an untaken poller is drained here.
        let untaken = std::mem::take(
            &mut *shared
                .pollers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for poller in untaken {
            poller.drain_untaken();
        }
        Some(shared.pipeline.join_all())
    }

    /// Waits until the claimed `last` may be written. A claimed sequence is
    /// never given up except when the pipeline has halted (nothing will read
    /// it then).
    #[inline]
    fn wait_for_claimed(&mut self, last: i64) -> Result<(), PublishError> {
        if self
            .shared
            .sequencer
            .has_room(last, &mut self.cached_min_gate)
        {
            return Ok(());
        }
        let shared = &*self.shared;
        let cached_min_gate = &mut self.cached_min_gate;
        wait_for_room(&shared.pipeline.state, shared.full_ring_wait, None, || {
            shared.sequencer.has_room(last, cached_min_gate)
        })
    }

    #[inline]
    fn write_and_publish_one<F: FnOnce(&mut E)>(&self, sequence: i64, fill: F) {
        let shared = &*self.shared;
        // Publishes the claimed slot even if `fill` panics (see the type docs).
        let _publish = PublishOnDrop {
            shared,
            first: sequence,
            last: sequence,
        };
        // SAFETY: invariant 1 — as in `write_and_publish`.
        unsafe { shared.ring.write_claimed(sequence, fill) };
    }

    #[inline]
    fn write_and_publish<F: FnMut(&mut E, i64)>(&self, first: i64, last: i64, mut fill: F) {
        let shared = &*self.shared;
        // Publishes the rest of the claimed range even if `fill` panics (see
        // the type docs). Each event is stamped as soon as it is filled, so
        // its store and its stamp's go to the slot's line back to back.
        let mut publish = PublishOnDrop {
            shared,
            first,
            last,
        };
        while publish.first <= last {
            let sequence = publish.first;
            // SAFETY: invariant 1 — this handle claimed `sequence` (the claim
            // counter hands each sequence to one handle), has not stamped it,
            // and checked every gating sequence is `>= sequence - capacity`.
            unsafe {
                shared
                    .ring
                    .write_claimed(sequence, |event| fill(event, sequence))
            };
            shared.ring.publish(sequence);
            publish.first = sequence + 1;
        }
    }

    fn checked_batch(&self, count: usize) -> Result<i64, TryPublishError> {
        if count > self.capacity() {
            return Err(TryPublishError::BatchTooLarge {
                requested: count,
                capacity: self.capacity(),
            });
        }
        Ok(count as i64)
    }

    /// Fails once a handler has halted the pipeline: nothing published from
    /// then on would be handled. One read of a line written only at halt or
    /// shutdown, so it stays cached.
    #[inline]
    fn ensure_running(&self) -> Result<(), PublishError> {
        if self.shared.pipeline.state.is_halted() {
            Err(PublishError::Halted)
        } else {
            Ok(())
        }
    }

    #[cold]
    fn full_or_halted(&self) -> TryPublishError {
        if self.shared.pipeline.state.is_halted() {
            TryPublishError::Halted
        } else {
            TryPublishError::Full
        }
    }
}

/// Stamps what is left of a claimed range when dropped: after `fill`, or
/// during its panic. `first` is the first sequence not yet stamped.
struct PublishOnDrop<'a, E, W: WaitStrategy> {
    shared: &'a Shared<E, W>,
    first: i64,
    last: i64,
}

impl<E, W: WaitStrategy> Drop for PublishOnDrop<'_, E, W> {
    #[inline]
    fn drop(&mut self) {
        if self.first == self.last {
            self.shared.ring.publish(self.first);
        } else if self.first < self.last {
            self.shared.ring.publish_range(self.first, self.last);
        }
        self.shared.pipeline.wait.signal_all_when_blocking();
    }
}

impl<E, W: WaitStrategy> Clone for MultiProducer<E, W> {
    fn clone(&self) -> Self {
        // Relaxed: a new handle is made from a live one, so the count is
        // already above zero; the drop side orders the shutdown.
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
            cached_min_gate: self.cached_min_gate,
            released: false,
        }
    }
}

impl<E, W: WaitStrategy> Drop for MultiProducer<E, W> {
    /// Lets go of the handle; the last one drains and joins the pipeline.
    fn drop(&mut self) {
        if !self.released {
            let _ = self.release();
        }
    }
}

impl<E, W: WaitStrategy> fmt::Debug for MultiProducer<E, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiProducer")
            .field("capacity", &self.capacity())
            .field("claimed_up_to", &self.shared.sequencer.claimed_up_to())
            .finish_non_exhaustive()
    }
}
