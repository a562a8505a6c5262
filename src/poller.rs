//! `EventPoller`: consume on the caller's own thread, inside its own loop.
//!
//! A poller is a participant of the graph like a handler — it has a sequence,
//! is gated by the stage before it and gates the stages after it (or the
//! producer) — but it has no thread: the caller calls [`EventPoller::poll`]
//! whenever it likes (a game loop, an event loop, a thread that also does
//! other work). `Builder::event_poller` returns it when it is added.
//!
//! # Shutdown and dropping
//!
//! After the producer shuts down, a poller hands out what was published
//! before, then reports [`PollState::ShutDown`]. Stages behind a poller
//! drain only as far as it has polled, so `shutdown()` waits for a live
//! poller that has stages behind it: poll it to `ShutDown` (from any thread)
//! or drop it.
//!
//! Dropping a poller before it finished does not stop the pipeline: the
//! poller is handed to the pipeline, which skips its events (hands them to
//! nobody) whenever a producer waits for room and at shutdown. The producer
//! and the stages behind it are therefore never held back for long by a
//! poller nobody polls; those stages see its events once they are skipped.

use std::fmt;
use std::sync::Arc;

use crate::barrier::{Batch, SequenceBarrier, WaitOutcome};
use crate::ring_buffer::Entry;
use crate::sequence::Sequence;
use crate::shared::Shared;
use crate::wait::WaitStrategy;

/// What one [`EventPoller::poll`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollState {
    /// It handed at least one event to the closure.
    Processing,
    /// Nothing new is published.
    Idle,
    /// An event is published but an upstream stage has not finished with it.
    Gating,
    /// The pipeline shut down and this poller has handled everything
    /// published before it.
    ShutDown,
    /// The pipeline halted (a handler panicked under `PanicPolicy::Halt`, or
    /// `build()` failed or was never called).
    Halted,
}

/// Consumes events on the caller's thread; see the module docs.
///
/// ```
/// use tickring::{build_single_producer, EventProducer, PollState, Yielding};
///
/// let (mut poller, builder) = build_single_producer(8, || 0u32, Yielding::new()).event_poller();
/// let mut producer = builder.build()?;
/// assert_eq!(poller.poll(|_, _, _| true), PollState::Idle);
/// producer.publish(|event| *event = 7)?;
/// let mut seen = Vec::new();
/// assert_eq!(poller.poll(|event, sequence, _end_of_batch| { seen.push((*event, sequence)); true }),
///            PollState::Processing);
/// assert_eq!(seen, [(7, 0)]);
/// let _report = producer.shutdown();
/// assert_eq!(poller.poll(|_, _, _| true), PollState::ShutDown);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A poller is one participant with one position: it cannot be cloned.
///
/// ```compile_fail
/// fn needs_clone<T: Clone>() {}
/// needs_clone::<tickring::EventPoller<u64, tickring::Yielding>>();
/// ```
#[must_use = "a poller consumes only when polled; dropping it hands its events to nobody"]
pub struct EventPoller<E, W: WaitStrategy> {
    name: String,
    pub(crate) shared: Arc<Shared<E, W>>,
    core: PollerCore,
}

/// A poller's position, apart from the pipeline it belongs to (so that a
/// dropped poller can be handed to that pipeline without a cycle).
struct PollerCore {
    barrier: SequenceBarrier,
    sequence: Arc<Sequence>,
    /// The next sequence to hand out (a copy of `sequence + 1`, kept locally).
    next: i64,
    max_batch_size: i64,
    /// The poller's stage: orphans are drained upstream first.
    stage: usize,
    /// It has reported `ShutDown` or `Halted`.
    finished: bool,
}

impl<E, W: WaitStrategy> EventPoller<E, W> {
    pub(crate) fn new(
        name: String,
        shared: Arc<Shared<E, W>>,
        barrier: SequenceBarrier,
        sequence: Arc<Sequence>,
        max_batch_size: i64,
        stage: usize,
    ) -> Self {
        shared.poller_handed_out();
        Self {
            name,
            shared,
            core: PollerCore {
                barrier,
                next: sequence.get() + 1,
                sequence,
                max_batch_size,
                stage,
                finished: false,
            },
        }
    }

    /// The poller's name (`thread_name` before `event_poller`, or
    /// `tickring-<stage>-<n>`); it labels the poller in lags.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands every available event (at most the poller's `max_batch_size`)
    /// to `handler(event, sequence, end_of_batch)`, in order, without
    /// waiting. The closure returns `false` to stop early; the events not
    /// handed out come again on the next poll.
    ///
    /// If the closure panics, the panic reaches the caller and the event it
    /// was handling is handed out again on the next poll.
    pub fn poll<F>(&mut self, handler: F) -> PollState
    where
        F: FnMut(&E, i64, bool) -> bool,
    {
        self.core.poll(&self.shared, handler)
    }
}

impl PollerCore {
    /// Hands out events in windows that double (1, 2, 4, ... up to
    /// `max_batch_size`), each scanned one event beyond its end so the last
    /// event of the batch knows it is the last (`end_of_batch`). A caller
    /// that takes one event per poll pays for two stamp loads, not for a
    /// scan of `max_batch_size` stamps (a stamp per slot, so a cache line
    /// each); a caller that takes everything reads each stamp about once
    /// and runs the events of a window in a tight loop.
    #[inline]
    fn poll<E, W, F>(&mut self, shared: &Shared<E, W>, mut handler: F) -> PollState
    where
        W: WaitStrategy,
        F: FnMut(&E, i64, bool) -> bool,
    {
        let ring = &shared.ring;
        let next = self.next;
        let limit = next + self.max_batch_size - 1;
        let slots = ring.slots();
        let mut release = Release {
            core: self,
            wait: &shared.wait,
            stopped_at: next,
        };
        // Only threads halt a running pipeline: with none, the halt is
        // checked before each window, not before each event (see
        // `processor::run_batch`).
        let check_each = ring.state.threads_may_halt();
        // Nothing handed out when the pipeline halted before the first event.
        let (mut at, mut window) = (next, 1);
        while !ring.state.is_halted() {
            let scan_to = (at + window).min(limit);
            let Some(Batch { mut readable, .. }) =
                release.core.barrier.try_batch(ring, at, scan_to)
            else {
                break;
            };
            let last = readable.last();
            // The batch ends at `last` when nothing was published beyond it
            // (or it is the limit), even if more is published by now;
            // otherwise `last` waits for the next window, which knows.
            let ends = last < scan_to || last == limit;
            let hand_to = if ends { last } else { last - 1 };
            let each = |entry: Entry<'_, E>, sequence, end_of_batch| {
                handler(entry.event(), sequence, end_of_batch)
            };
            // Past an event only once the handler returned: after a panic,
            // the event comes again on the next poll.
            let stopped_at = &mut release.stopped_at;
            let completed = if check_each {
                slots.each::<true>(&mut readable, hand_to, ends, &ring.state, stopped_at, each)
            } else {
                slots.each::<false>(&mut readable, hand_to, ends, &ring.state, stopped_at, each)
            };
            if !completed || ends {
                break;
            }
            at = release.stopped_at;
            window = (window * 2).min(release.core.max_batch_size);
        }
        let handed_out = release.stopped_at > next;
        drop(release);
        if handed_out {
            return PollState::Processing;
        }
        match self.barrier.end_of_stream(ring, next) {
            Some(WaitOutcome::Halted) => {
                self.finished = true;
                PollState::Halted
            }
            Some(_) => {
                self.finished = true;
                PollState::ShutDown
            }
            None if self.barrier.has_dependencies() && ring.is_published(next) => PollState::Gating,
            None => PollState::Idle,
        }
    }
}

/// Releases the handled events when a poll ends, normally or by a panic.
struct Release<'a, W: WaitStrategy> {
    core: &'a mut PollerCore,
    wait: &'a W,
    /// The first sequence not handled.
    stopped_at: i64,
}

impl<W: WaitStrategy> Drop for Release<'_, W> {
    fn drop(&mut self) {
        if self.stopped_at > self.core.next {
            // Release (in `set`): this poller is done reading these slots.
            self.core.sequence.set(self.stopped_at - 1);
            self.core.next = self.stopped_at;
            self.wait.signal_all_when_blocking();
        }
    }
}

impl<E, W: WaitStrategy> Drop for EventPoller<E, W> {
    fn drop(&mut self) {
        if !self.core.finished {
            self.hand_to_the_pipeline();
        }
        self.shared.poller_dropped();
    }
}

impl<E, W: WaitStrategy> EventPoller<E, W> {
    /// Makes an unfinished poller an orphan the pipeline drains.
    fn hand_to_the_pipeline(&mut self) {
        // Nobody will poll it again: the pipeline skips its events from now
        // on, so neither the producer nor the stages behind it wait forever.
        let core = &mut self.core;
        let mut orphan = PollerCore {
            barrier: std::mem::replace(&mut core.barrier, SequenceBarrier::new(Box::new([]))),
            sequence: Arc::clone(&core.sequence),
            next: core.next,
            max_batch_size: core.max_batch_size,
            stage: core.stage,
            finished: false,
        };
        self.shared.adopt_orphan(
            orphan.stage,
            Box::new(move |shared: &Shared<E, W>| {
                matches!(
                    orphan.poll(shared, |_, _, _| true),
                    PollState::ShutDown | PollState::Halted
                )
            }),
        );
    }
}

impl<E, W: WaitStrategy> fmt::Debug for EventPoller<E, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPoller")
            .field("name", &self.name)
            .field("next", &self.core.next)
            .finish_non_exhaustive()
    }
}
