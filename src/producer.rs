//! The single-producer handle: publish, try, batch, and a draining shutdown.

use std::fmt;

use crossbeam_utils::CachePadded;

use std::sync::Arc;
use std::time::Duration;

use crate::error::{PublishError, TryPublishError};
use crate::pipeline::{Pipeline, PipelineState};
use crate::poller::EventPoller;
use crate::report::ShutdownReport;
use crate::ring_buffer::RingBuffer;
use crate::sequence::{min_sequence, Sequence};
use crate::sequencer::single::SingleProducerSequencer;
use crate::sequencer::{wait_for_room, FullRingWait};
use crate::wait::WaitStrategy;

/// The one producer of a pipeline built with
/// [`build_single_producer`](crate::build_single_producer).
///
/// It owns the pipeline: dropping it, or calling [`Producer::shutdown`],
/// drains every published event through every handler and joins their
/// threads. It is `Send` (hand it to the thread that publishes) but not
/// `Clone`: one producer, so claiming needs no atomic read-modify-write.
pub struct Producer<E, W: WaitStrategy> {
    /// The producer's private counters, on a cache line of their own.
    sequencer: CachePadded<SingleProducerSequencer>,
    ring: Arc<RingBuffer<E>>,
    pipeline: Pipeline<W>,
    /// Pollers not yet taken by `take_poller`.
    pollers: Vec<EventPoller<E, W>>,
    full_ring_wait: FullRingWait,
    shut_down: bool,
}

impl<E, W: WaitStrategy> Producer<E, W> {
    pub(crate) fn new(
        ring: Arc<RingBuffer<E>>,
        sequencer: SingleProducerSequencer,
        pipeline: Pipeline<W>,
        pollers: Vec<EventPoller<E, W>>,
        full_ring_wait: FullRingWait,
    ) -> Self {
        Self {
            sequencer: CachePadded::new(sequencer),
            ring,
            pipeline,
            pollers,
            full_ring_wait,
            shut_down: false,
        }
    }

    /// Claims the next slot, lets `fill` write the event in place, and
    /// publishes it. Returns the event's sequence.
    ///
    /// Waits (per the pipeline's [`FullRingWait`]) while the ring is full.
    /// Fails with [`PublishError::Halted`] once a handler has halted the
    /// pipeline, full ring or not, instead of publishing what nobody would
    /// handle or waiting forever. If `fill` panics, nothing is published.
    ///
    /// ```
    /// use tickring::{build_single_producer, Yielding};
    /// use std::sync::{Arc, atomic::{AtomicI64, Ordering}};
    ///
    /// let total = Arc::new(AtomicI64::new(0));
    /// let seen = Arc::clone(&total);
    /// let mut producer = build_single_producer(64, || 0i64, Yielding::new())
    ///     .handle_events_with(move |event: &i64, _sequence, _end_of_batch| {
    ///         seen.fetch_add(*event, Ordering::Relaxed);
    ///     })
    ///     .build()?;
    /// for price in 1..=100 {
    ///     producer.publish(|event| *event = price)?;
    /// }
    /// producer.shutdown();
    /// assert_eq!(total.load(Ordering::Relaxed), 5050);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn publish<F: FnOnce(&mut E)>(&mut self, fill: F) -> Result<i64, PublishError> {
        let sequence = self.wait_for_room(1, None)?;
        Ok(self.write_and_publish_one(sequence, fill))
    }

    /// As [`Producer::publish`], but gives up with [`PublishError::TimedOut`]
    /// when no slot frees up within `timeout`. Nothing is published then and
    /// `fill` is not called (capture by reference to keep your data).
    pub fn publish_timeout<F: FnOnce(&mut E)>(
        &mut self,
        timeout: Duration,
        fill: F,
    ) -> Result<i64, PublishError> {
        let sequence = self.wait_for_room(1, Some(timeout))?;
        Ok(self.write_and_publish_one(sequence, fill))
    }

    /// As [`Producer::publish`], but returns [`TryPublishError::Full`] at once
    /// (without calling `fill`) when the ring has no free slot.
    #[inline]
    pub fn try_publish<F: FnOnce(&mut E)>(&mut self, fill: F) -> Result<i64, TryPublishError> {
        let sequence = self.try_room(1)?;
        Ok(self.write_and_publish_one(sequence, fill))
    }

    /// Claims `count` slots (waiting for room for all of them), calls
    /// `fill(event, sequence)` for each in order and publishes each as soon
    /// as it is filled. Returns the last sequence, or the last one published
    /// before when `count` is 0.
    ///
    /// If `fill` panics, the events filled before it stay published and the
    /// rest of the claim is released: the next publish continues right after
    /// the last published event, so handlers see no gap.
    ///
    /// ```
    /// # use tickring::{build_single_producer, Yielding};
    /// let mut producer = build_single_producer(16, || 0u64, Yielding::new())
    ///     .handle_events_with(|_event: &u64, _sequence, _end_of_batch| {})
    ///     .build()?;
    /// let last = producer.batch_publish(10, |event, sequence| *event = sequence as u64 * 2)?;
    /// assert_eq!(last, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
        let first = self.wait_for_room(count, None)?;
        Ok(self.write_and_publish_batch(first, count, fill))
    }

    /// As [`Producer::batch_publish`], but returns [`TryPublishError::Full`]
    /// at once (without calling `fill`) when `count` slots are not free.
    #[inline]
    pub fn try_batch_publish<F: FnMut(&mut E, i64)>(
        &mut self,
        count: usize,
        fill: F,
    ) -> Result<i64, TryPublishError> {
        let count = self.checked_batch(count)?;
        let first = self.try_room(count)?;
        Ok(self.write_and_publish_batch(first, count, fill))
    }

    /// The ring's size.
    pub fn capacity(&self) -> usize {
        self.sequencer.capacity() as usize
    }

    /// Slots free now: how many events could be published without waiting.
    /// Reads every gating handler's sequence.
    pub fn remaining_capacity(&self) -> usize {
        self.sequencer.remaining_capacity().max(0) as usize
    }

    /// The last sequence published; `-1` before the first publish.
    pub fn last_published(&self) -> i64 {
        self.sequencer.last_published()
    }

    /// Each handler's name and lag: events published that it has not yet
    /// finished, in the order the handlers were added. Allocates nothing.
    ///
    /// ```
    /// # use tickring::{build_single_producer, Yielding};
    /// let mut producer = build_single_producer(8, || 0u8, Yielding::new())
    ///     .handle_events_with(|_: &u8, _, _| {}).thread_name("audit")
    ///     .build()?;
    /// for (name, lag) in producer.handler_lags() {
    ///     assert_eq!((name, lag), ("audit", 0));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handler_lags(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.pipeline.lags(self.sequencer.last_published())
    }

    /// Takes the poller added with `add_poller(name)`, once.
    pub fn take_poller(&mut self, name: &str) -> Option<EventPoller<E, W>> {
        let index = self
            .pollers
            .iter()
            .position(|poller| poller.name() == name)?;
        Some(self.pollers.swap_remove(index))
    }

    /// Stops the pipeline after draining: every event published so far is
    /// handled by every handler (unless one halted it), `on_shutdown` runs on
    /// each handler's thread, and the threads are joined. Returns what each
    /// handler did and any panic.
    ///
    /// A poller that was taken must go on being polled (on another thread)
    /// until it reports `ShutDown` if handler threads are gated on it; a
    /// poller never taken is drained here, so the stages behind it drain too.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.shut_down_once()
    }

    fn shut_down_once(&mut self) -> ShutdownReport {
        if self.shut_down {
            return ShutdownReport::default();
        }
        self.shut_down = true;
        self.pipeline
            .begin_shutdown(self.sequencer.last_published());
        // Nobody polls a poller that was never taken: drain it here, so the
        // stages behind it finish before the join below waits for them.
        for poller in self.pollers.drain(..) {
            poller.drain_untaken();
        }
        self.pipeline.join_all()
    }

    #[inline]
    fn write_and_publish_one<F: FnOnce(&mut E)>(&mut self, sequence: i64, fill: F) -> i64 {
        // SAFETY: invariant 1 — `sequence` is claimed by the only producer, not
        // yet stamped, and the room check (`try_room` or `wait_for_room`: the
        // cached gate, or a fresh acquire read of it) saw every gating sequence
        // at least `sequence - capacity`.
        unsafe { self.ring.write_claimed(sequence, fill) };
        self.ring.publish(sequence);
        self.sequencer.set_next(sequence + 1);
        self.pipeline.wait.signal_all_when_blocking();
        sequence
    }

    #[inline]
    fn write_and_publish_batch<F: FnMut(&mut E, i64)>(
        &mut self,
        first: i64,
        count: i64,
        mut fill: F,
    ) -> i64 {
        let last = first + count - 1;
        if count == 0 {
            return last;
        }
        let ring = &*self.ring;
        // Each event is stamped as soon as it is filled: the event's store and
        // its stamp's go to the slot's line back to back, one visit per line.
        // (Filling the batch, then stamping it, visits every line twice and
        // ran at a third of the speed on the batch shape.) The guard moves
        // the claim past what was published, also when `fill` panics.
        let mut published = BatchPublished {
            sequencer: &mut self.sequencer,
            wait: &*self.pipeline.wait,
            next: first,
        };
        while published.next <= last {
            let sequence = published.next;
            // SAFETY: invariant 1 — as in `write_and_publish_one`, for every
            // sequence of the claimed batch (all of it passed the room check).
            unsafe { ring.write_claimed(sequence, |event| fill(event, sequence)) };
            ring.publish(sequence);
            published.next = sequence + 1;
        }
        last
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

    /// Whether `count` slots are free now (and the pipeline alive); returns
    /// the first sequence of the claim.
    #[inline]
    fn try_room(&mut self, count: i64) -> Result<i64, TryPublishError> {
        // `next` is read before the atomic load below (see `wait_for_room`).
        let next = self.sequencer.next();
        // The ring's copy of the halt flag, on the line that holds the mask
        // and the slots pointer, which every publish reads anyway (see
        // `RingBuffer::is_halted`).
        if self.ring.is_halted() {
            return Err(TryPublishError::Halted);
        }
        if self.sequencer.has_room_for(count) {
            Ok(next)
        } else {
            Err(TryPublishError::Full)
        }
    }

    /// Waits until `count` slots are free, or fails when the pipeline has
    /// halted (a dead handler would never make room) or `timeout` passes.
    /// Returns the first sequence of the claim.
    ///
    /// Two things keep the fast path (`try_room`) cheap in a publishing loop,
    /// both measured (1P-1C on the build machine, paired with a hand-written
    /// ring in `examples/hot_path.rs`):
    /// - `next` is read before the halt flag. The compiler treats an atomic
    ///   load, even a relaxed one, as a point where other threads' writes may
    ///   appear, so a `next` read after it is reloaded from memory on every
    ///   publish; read before it, it stays in a register (0.64-0.70x the
    ///   hand-written ring before, 0.76-1.05x after).
    /// - The slow paths (`read_gate`, `wait_for_gate`) are separate functions
    ///   that get the heap data they need and return the new gate, so no
    ///   address inside `self` escapes the inlined fast path (0.3-0.5x the
    ///   hand-written ring while one did).
    #[inline]
    fn wait_for_room(
        &mut self,
        count: i64,
        timeout: Option<Duration>,
    ) -> Result<i64, PublishError> {
        match self.try_room(count) {
            Ok(next) => Ok(next),
            Err(TryPublishError::Full) => {
                let min_gate = wait_for_gate(
                    &self.pipeline.state,
                    self.full_ring_wait,
                    timeout,
                    self.sequencer.gating_sequences(),
                    self.sequencer.wrap_point(count),
                    self.sequencer.last_published(),
                )?;
                self.sequencer.set_cached_gate(min_gate);
                Ok(self.sequencer.next())
            }
            Err(_) => Err(PublishError::Halted),
        }
    }
}

/// The producer's slow path: reads the gating sequences until the slowest
/// has passed `wrap_point`, waiting per `policy`; returns the minimum read.
#[cold]
#[inline(never)]
fn wait_for_gate(
    state: &PipelineState,
    policy: FullRingWait,
    timeout: Option<Duration>,
    gating_sequences: &[Arc<Sequence>],
    wrap_point: i64,
    last_published: i64,
) -> Result<i64, PublishError> {
    let mut min_gate = last_published;
    wait_for_room(state, policy, timeout, || {
        min_gate = min_sequence(gating_sequences, last_published);
        min_gate >= wrap_point
    })?;
    Ok(min_gate)
}

/// The published part of a batch: on drop (the batch's end, or a panic in
/// its `fill`), the sequencer moves past it and sleepers are woken. The rest
/// of the claim, if `fill` panicked, is free again.
struct BatchPublished<'a, W: WaitStrategy> {
    sequencer: &'a mut SingleProducerSequencer,
    wait: &'a W,
    /// The first sequence not yet published.
    next: i64,
}

impl<W: WaitStrategy> Drop for BatchPublished<'_, W> {
    #[inline]
    fn drop(&mut self) {
        self.sequencer.set_next(self.next);
        self.wait.signal_all_when_blocking();
    }
}

impl<E, W: WaitStrategy> Drop for Producer<E, W> {
    /// Drains and joins, as [`Producer::shutdown`], discarding the report.
    fn drop(&mut self) {
        let _ = self.shut_down_once();
    }
}

impl<E, W: WaitStrategy> fmt::Debug for Producer<E, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("last_published", &self.last_published())
            .field("participants", &self.pipeline.participants.len())
            .finish()
    }
}
