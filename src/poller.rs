//! `EventPoller`: consume on the caller's own thread, inside its own loop.
//!
//! A poller is a participant of the graph like a handler — it has a sequence,
//! is gated by the stage before it and gates the stages after it (or the
//! producer) — but it has no thread: the caller calls [`EventPoller::poll`]
//! whenever it likes (a game loop, an event loop, a thread that also does
//! other work). Add one with `Builder::add_poller(name)` and take it from the
//! producer after `build()`.
//!
//! Dropping a poller that was taken, before it reported `ShutDown`, halts the
//! pipeline: its place in the graph could never advance again, and a producer
//! waiting on it gets [`PublishError::Halted`](crate::PublishError::Halted)
//! instead of waiting forever. A poller that was never taken is drained at
//! shutdown, so the stages behind it still drain.

use std::fmt;
use std::sync::Arc;

use crate::pipeline::PipelineState;
use crate::ring_buffer::RingBuffer;
use crate::sequence::{min_sequence, Sequence};
use crate::wait::WaitStrategy;

/// What one [`EventPoller::poll`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// A handler halted the pipeline (it panicked under `PanicPolicy::Halt`).
    Halted,
}

/// Consumes events on the caller's thread; see the module docs.
///
/// ```
/// use tickring::{build_single_producer, PollState, Yielding};
///
/// let mut producer = build_single_producer(8, || 0u32, Yielding::new())
///     .add_poller("inline")
///     .build()?;
/// let mut poller = producer.take_poller("inline").expect("added above");
/// assert_eq!(poller.poll(|_, _, _| true), PollState::Idle);
/// producer.publish(|event| *event = 7)?;
/// let mut seen = Vec::new();
/// assert_eq!(poller.poll(|event, sequence, _end_of_batch| { seen.push((*event, sequence)); true }),
///            PollState::Processing);
/// assert_eq!(seen, [(7, 0)]);
/// producer.shutdown();
/// assert_eq!(poller.poll(|_, _, _| true), PollState::ShutDown);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EventPoller<E, W: WaitStrategy> {
    name: String,
    ring: Arc<RingBuffer<E>>,
    wait: Arc<W>,
    state: Arc<PipelineState>,
    /// Upstream sequences; empty when the poller reads the producer's stamps.
    dependencies: Box<[Arc<Sequence>]>,
    sequence: Arc<Sequence>,
    /// The next sequence to hand out (a copy of `sequence + 1`, kept locally).
    next: i64,
    max_batch_size: i64,
    /// It has reported `ShutDown` or `Halted`: dropping it halts nothing.
    finished: bool,
}

impl<E, W: WaitStrategy> EventPoller<E, W> {
    pub(crate) fn new(
        name: String,
        ring: Arc<RingBuffer<E>>,
        wait: Arc<W>,
        state: Arc<PipelineState>,
        dependencies: Box<[Arc<Sequence>]>,
        sequence: Arc<Sequence>,
        max_batch_size: i64,
    ) -> Self {
        Self {
            name,
            ring,
            wait,
            state,
            dependencies,
            next: sequence.get() + 1,
            sequence,
            max_batch_size,
            finished: false,
        }
    }

    /// Drains a poller that nobody took, at shutdown (after `shutdown_at` is
    /// set): polls it with a no-op until it reports the end, so it keeps
    /// following the stages before it and the stages behind it drain in
    /// order instead of waiting for polls that would never come.
    pub(crate) fn drain_untaken(mut self) {
        loop {
            match self.poll(|_, _, _| true) {
                PollState::ShutDown | PollState::Halted => return,
                PollState::Processing => {}
                PollState::Idle | PollState::Gating => crate::loom::thread::yield_now(),
            }
        }
    }

    /// The poller's name, as given to `add_poller`.
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
    pub fn poll<F>(&mut self, mut handler: F) -> PollState
    where
        F: FnMut(&E, i64, bool) -> bool,
    {
        let next = self.next;
        let limit = next + self.max_batch_size - 1;
        let available = if self.dependencies.is_empty() {
            self.ring.available_up_to(next, limit)
        } else {
            min_sequence(&self.dependencies, i64::MAX).min(limit)
        };
        if available >= next {
            let mut done = Release {
                poller: self,
                handled_up_to: next - 1,
            };
            for sequence in next..=available {
                // SAFETY: invariant 2 — `sequence` is published and past every
                // upstream stage (checked above), and this poller releases it
                // only when `done` drops, after the closure returns.
                let keep_going = unsafe {
                    done.poller.ring.read_published(sequence, |event| {
                        handler(event, sequence, sequence == available)
                    })
                };
                done.handled_up_to = sequence;
                if !keep_going {
                    break;
                }
            }
            return PollState::Processing;
        }
        if self.state.is_halted() {
            self.finished = true;
            return PollState::Halted;
        }
        if next > self.state.shutdown_at() {
            self.finished = true;
            return PollState::ShutDown;
        }
        if !self.dependencies.is_empty() && self.ring.is_published(next) {
            return PollState::Gating;
        }
        PollState::Idle
    }
}

/// Releases the handled events when a poll ends, normally or by a panic.
struct Release<'a, E, W: WaitStrategy> {
    poller: &'a mut EventPoller<E, W>,
    handled_up_to: i64,
}

impl<E, W: WaitStrategy> Drop for Release<'_, E, W> {
    fn drop(&mut self) {
        if self.handled_up_to >= self.poller.next {
            // Release (in `set`): this poller is done reading these slots.
            self.poller.sequence.set(self.handled_up_to);
            self.poller.next = self.handled_up_to + 1;
            self.poller.wait.signal_all_when_blocking();
        }
    }
}

impl<E, W: WaitStrategy> Drop for EventPoller<E, W> {
    fn drop(&mut self) {
        if !self.finished {
            // Nobody will advance this poller again: stop the pipeline rather
            // than let the producer and downstream stages wait forever.
            self.ring.mark_halted();
            self.state.halt();
            self.wait.signal_all_when_blocking();
        }
    }
}

impl<E, W: WaitStrategy> fmt::Debug for EventPoller<E, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPoller")
            .field("name", &self.name)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}
