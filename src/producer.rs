//! The single-producer handle: publish, try, batch, and a draining shutdown.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::event_producer::sealed::Claimer;
use crate::event_producer::{NoRoom, Room};
use crate::pipeline::Pipeline;
use crate::report::ShutdownReport;
use crate::ring_buffer::Claim;
use crate::sequence::{min_sequence, Sequence};
use crate::sequencer::single::SingleProducerSequencer;
use crate::sequencer::FullRingWait;
use crate::shared::Shared;
use crate::wait::WaitStrategy;

/// The one producer of a pipeline built with
/// [`build_single_producer`](crate::build_single_producer); publish through
/// its [`EventProducer`](crate::EventProducer) methods.
///
/// It owns the pipeline: dropping it, or calling [`Producer::shutdown`],
/// drains every published event through every handler and joins their
/// threads. It is `Send` (hand it to the thread that publishes) but not
/// `Clone`: one producer, so claiming needs no atomic read-modify-write.
///
/// ```compile_fail
/// // One producer: cloning it would break the single-producer sequencer.
/// fn needs_clone<T: Clone>() {}
/// needs_clone::<tickring::Producer<u64, tickring::Yielding>>();
/// ```
#[must_use = "dropping the producer shuts the pipeline down"]
// `E: Send + Sync + 'static` because dropping it may hand the threads to
// a reaper thread (see `shutdown`); `Drop` needs the bounds on the type.
pub struct Producer<E: Send + Sync + 'static, W: WaitStrategy> {
    /// The producer's private counters, on a cache line of their own.
    sequencer: CachePadded<SingleProducerSequencer>,
    pipeline: Pipeline<E, W>,
    full_ring_wait: FullRingWait,
    shut_down: bool,
}

impl<E, W> Producer<E, W>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    pub(crate) fn new(
        sequencer: SingleProducerSequencer,
        pipeline: Pipeline<E, W>,
        full_ring_wait: FullRingWait,
    ) -> Self {
        Self {
            sequencer: CachePadded::new(sequencer),
            pipeline,
            full_ring_wait,
            shut_down: false,
        }
    }

    /// The last sequence published; `-1` before the first publish.
    pub fn last_published(&self) -> i64 {
        self.sequencer.last_published()
    }

    /// Each participant's name and lag: events published that it has not
    /// yet finished, in the order they were added. Allocates nothing.
    ///
    /// ```
    /// # use tickring::{build_single_producer, Yielding};
    /// let producer = build_single_producer(8, || 0u8, Yielding::new())
    ///     .thread_name("audit")
    ///     .handle_events_with(|_: &u8, _, _| {})
    ///     .build()?;
    /// for (name, lag) in producer.handler_lags() {
    ///     assert_eq!((name, lag), ("audit", 0));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handler_lags(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.pipeline.lags(self.sequencer.last_published())
    }

    /// Stops the pipeline after draining: every event published so far is
    /// handled by every participant (unless the pipeline halted),
    /// `on_shutdown` runs on each handler's thread, and the threads are
    /// joined. Returns what each handler did and any panic.
    ///
    /// A live [`EventPoller`](crate::EventPoller) with stages behind it must
    /// be polled to `ShutDown` (on another thread) or dropped for those
    /// stages to finish; this waits for them.
    ///
    /// Called on one of the pipeline's own handler threads (a handler that
    /// owns its ring's producer), it cannot join that thread: the pipeline
    /// still drains, a `tickring-reaper` thread joins it and prints any
    /// panic to stderr, and the report returned here is empty.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.shut_down_once()
    }

    fn shut_down_once(&mut self) -> ShutdownReport {
        if std::mem::replace(&mut self.shut_down, true) {
            return ShutdownReport::default();
        }
        self.pipeline.shut_down(self.sequencer.last_published())
    }

    /// Claims `count` slots if free now (and the pipeline alive).
    #[inline(always)]
    fn try_room(&mut self, count: i64) -> Result<Claim, NoRoom> {
        // The claim is made before the atomic load below, from fields the
        // loop keeps in registers (see `wait_for_room`).
        let next = self.sequencer.next();
        let cached = self.sequencer.try_claim_cached(count);
        if self.pipeline.shared.is_halted() {
            return Err(NoRoom::Halted);
        }
        if let Some(claim) = cached {
            return Ok(claim);
        }
        match self.sequencer.try_claim(count) {
            Some(claim) => {
                debug_assert_eq!(claim.next(), next);
                Ok(claim)
            }
            None => Err(NoRoom::Full),
        }
    }

    /// Waits until `count` slots are free, or fails when the pipeline has
    /// halted (a dead handler would never make room) or `timeout` passes.
    ///
    /// Two things keep the fast path (`try_room`) cheap in a publishing loop:
    /// the claim is made from the cached gate before the halt flag is read
    /// (an atomic load, after which the compiler reloads from memory every
    /// field of a producer whose address has escaped: the next sequence,
    /// the cached gate and the capacity, each event), and the slow path is a
    /// separate function that gets the heap data it needs and returns the
    /// new gate, so no address inside `self` escapes the inlined fast path.
    ///
    /// The whole one-event path (`publish` → `claim` → here → `try_room` →
    /// `try_claim`, then `write_and_publish_one`) is `#[inline(always)]`:
    /// with plain `#[inline]`, a binary that publishes from several places
    /// got `claim` out of line, a call per event and its result through
    /// the stack, which cost a quarter of 1P-1C with the cores far apart
    /// (BENCHMARKS.md, the 0.2-against-0.1 rounds).
    #[inline(always)]
    fn wait_for_room(&mut self, count: i64, timeout: Option<Duration>) -> Result<Claim, NoRoom> {
        loop {
            match self.try_room(count) {
                Ok(claim) => return Ok(claim),
                Err(NoRoom::Full) => {
                    let min_gate = wait_for_gate(
                        &self.pipeline.shared,
                        self.full_ring_wait,
                        timeout,
                        self.sequencer.gating_sequences(),
                        self.sequencer.wrap_point(count),
                        self.sequencer.last_published(),
                    )?;
                    self.sequencer.set_cached_gate(min_gate);
                }
                Err(stopped) => return Err(stopped),
            }
        }
    }
}

impl<E, W> Claimer<E> for Producer<E, W>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    #[inline(always)]
    fn claim(&mut self, count: i64, room: Room) -> Result<Claim, NoRoom> {
        match room {
            Room::Wait => self.wait_for_room(count, None),
            Room::Now => match self.try_room(count) {
                // A dropped poller's events are skipped only when someone
                // polls its orphan: do it here too, or `try_*` alone would
                // see a full ring forever.
                Err(NoRoom::Full) if self.pipeline.shared.has_orphans() => {
                    self.pipeline.shared.poll_orphans();
                    self.try_room(count) // re-reads the gate: the cache is short
                }
                outcome => outcome,
            },
            Room::Within(timeout) => self.wait_for_room(count, Some(timeout)),
        }
    }

    /// If `fill` panics, the events filled before it stay published and the
    /// rest of the claim is released: the next publish continues right after
    /// the last published event, so handlers see no gap.
    #[inline]
    fn write_and_publish<F: FnMut(&mut E, i64)>(&mut self, claim: Claim, mut fill: F) -> i64 {
        let shared = &*self.pipeline.shared;
        // Each event is stamped as soon as it is filled: the event's store and
        // its stamp's go to the slot's line back to back, one visit per line.
        // The guard moves the sequencer past what was published, also when
        // `fill` panics.
        let mut published = BatchPublished {
            sequencer: &mut self.sequencer,
            wait: &shared.wait,
            claim,
        };
        while !published.claim.is_done() {
            shared
                .ring
                .write_and_publish(&mut published.claim, |event, sequence| {
                    fill(event, sequence)
                });
        }
        published.claim.next() - 1
    }

    /// One event: no batch loop, no `Option` around `fill`, no guard. If
    /// `fill` panics, the sequencer has not moved: the claim is released
    /// unpublished. (A guard holding `&mut` to the sequencer kept its
    /// counters in memory across the publishing loop: two more stores per
    /// event, which on a full ring left fewer slot writes in flight.)
    #[inline(always)]
    fn write_and_publish_one<F: FnOnce(&mut E)>(&mut self, claim: Claim, fill: F) -> i64 {
        let shared = &*self.pipeline.shared;
        let sequence = shared.ring.write_and_publish_one(claim, fill);
        self.sequencer.set_next(sequence + 1);
        shared.wait.signal_all_when_blocking();
        sequence
    }

    fn last_claimed(&self) -> i64 {
        self.sequencer.last_published()
    }

    fn ring_capacity(&self) -> usize {
        self.sequencer.capacity() as usize
    }

    fn free_slots(&self) -> usize {
        self.sequencer.remaining_capacity() as usize
    }
}

/// The producer's slow path: reads the gating sequences until the slowest
/// has passed `wrap_point`, waiting per `policy`; returns the minimum read.
/// Dropped pollers are skipped meanwhile, so one never holds the ring full.
#[cold]
#[inline(never)]
fn wait_for_gate<E, W: WaitStrategy>(
    shared: &Shared<E, W>,
    policy: FullRingWait,
    timeout: Option<Duration>,
    gating_sequences: &[Arc<Sequence>],
    wrap_point: i64,
    last_published: i64,
) -> Result<i64, NoRoom> {
    policy
        .wait_until(timeout, || {
            shared.poll_orphans();
            let min_gate = min_sequence(gating_sequences, last_published);
            if min_gate >= wrap_point {
                Some(Ok(min_gate))
            } else if shared.is_halted() {
                Some(Err(NoRoom::Halted))
            } else {
                None
            }
        })
        .unwrap_or(Err(NoRoom::Full))
}

/// The published part of a claim: on drop (the batch's end, or a panic in
/// its `fill`), the sequencer moves past it and sleepers are woken. The rest
/// of the claim, if `fill` panicked, is free again.
struct BatchPublished<'a, W: WaitStrategy> {
    sequencer: &'a mut SingleProducerSequencer,
    wait: &'a W,
    claim: Claim,
}

impl<W: WaitStrategy> Drop for BatchPublished<'_, W> {
    #[inline]
    fn drop(&mut self) {
        self.sequencer.set_next(self.claim.next());
        self.wait.signal_all_when_blocking();
    }
}

impl<E: Send + Sync + 'static, W: WaitStrategy> Drop for Producer<E, W> {
    /// Drains and joins, as [`Producer::shutdown`], discarding the report.
    fn drop(&mut self) {
        if !self.shut_down {
            self.shut_down = true;
            let _ = self.pipeline.shut_down(self.sequencer.last_published());
        }
    }
}

impl<E: Send + Sync + 'static, W: WaitStrategy> fmt::Debug for Producer<E, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.sequencer.capacity())
            .field("last_published", &self.sequencer.last_published())
            .field("participants", &self.pipeline.participants.len())
            .finish()
    }
}
