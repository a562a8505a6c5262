//! The multi-producer handle: `Clone + Send`, one per publishing thread.
//!
//! Every handle shares one claim counter (see `sequencer/multi.rs`) and keeps
//! its own cached minimum gating sequence, so handles never write a shared
//! line except to claim. Dropping the last handle shuts the pipeline down and
//! drains it, as the single producer does; [`MultiProducer::close`] shuts it
//! down while other handles are still alive (a handler that keeps a clone
//! for feedback would otherwise keep its pipeline alive forever).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::event_producer::sealed::Claimer;
use crate::event_producer::{NoRoom, Room};
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::pipeline::Pipeline;
use crate::report::ShutdownReport;
use crate::ring_buffer::Claim;
use crate::sequencer::multi::{MultiProducerSequencer, TryClaim};
use crate::sequencer::FullRingWait;
use crate::wait::WaitStrategy;

struct Handles<E, W> {
    sequencer: MultiProducerSequencer,
    pipeline: Pipeline<E, W>,
    full_ring_wait: FullRingWait,
    /// Live handles; the one that takes it to zero shuts the pipeline down.
    live: CachePadded<AtomicUsize>,
}

/// A producer handle of a pipeline built with
/// [`build_multi_producer`](crate::build_multi_producer); publish through
/// its [`EventProducer`](crate::EventProducer) methods.
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
#[must_use = "dropping the last handle shuts the pipeline down"]
// `E: Send + Sync + 'static`: as for `Producer`, `Drop` may shut down.
pub struct MultiProducer<E: Send + Sync + 'static, W: WaitStrategy> {
    handles: Arc<Handles<E, W>>,
    /// This handle's view of the slowest gating handler.
    cached_min_gate: i64,
    /// `shutdown()` or `close()` already let go of this handle.
    released: bool,
}

impl<E, W> MultiProducer<E, W>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    pub(crate) fn new(
        sequencer: MultiProducerSequencer,
        pipeline: Pipeline<E, W>,
        full_ring_wait: FullRingWait,
    ) -> Self {
        Self {
            handles: Arc::new(Handles {
                sequencer,
                pipeline,
                full_ring_wait,
                live: CachePadded::new(AtomicUsize::new(1)),
            }),
            cached_min_gate: -1,
            released: false,
        }
    }

    /// Each participant's name and lag behind the last claimed sequence.
    pub fn handler_lags(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.handles
            .pipeline
            .lags(self.handles.sequencer.claimed_up_to() - 1)
    }

    /// Lets go of this handle. If it was the last, the pipeline drains and
    /// shuts down (as when the last handle is dropped) and the report is
    /// returned; otherwise `None`.
    ///
    /// See [`Producer::shutdown`](crate::Producer::shutdown) for what
    /// happens on one of the pipeline's own threads and with live pollers.
    pub fn shutdown(mut self) -> Option<ShutdownReport> {
        self.released = true;
        self.release()
    }

    /// Shuts the pipeline down now, whatever other handles exist: every
    /// event claimed before this call is published and drained, every later
    /// publish on any handle fails with [`PublishError::Closed`](crate::PublishError::Closed), and the
    /// threads are joined. Returns the report (empty on one of the
    /// pipeline's own threads, or when the pipeline was already shut down).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tickring::{build_multi_producer, EventProducer, PublishError, Yielding};
    ///
    /// // A handler that keeps a handle, to feed events back into its own ring:
    /// // the last handle is never dropped, so only `close` ends the pipeline.
    /// let feedback = Arc::new(Mutex::new(None));
    /// let held = Arc::clone(&feedback);
    /// let producer = build_multi_producer(64, || 0u32, Yielding::new())
    ///     .handle_events_with(move |event: &u32, _, _| {
    ///         if *event == 0 {
    ///             if let Some(producer) = held.lock().unwrap().as_mut() {
    ///                 let _ = EventProducer::<u32>::publish(producer, |event| *event = 1);
    ///             }
    ///         }
    ///     })
    ///     .build()?;
    /// *feedback.lock().unwrap() = Some(producer.clone());
    /// let mut other = producer.clone();
    /// let report = producer.close();
    /// assert_eq!(report.handlers.len(), 1);
    /// assert_eq!(other.publish(|event| *event = 1), Err(PublishError::Closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(mut self) -> ShutdownReport {
        // This handle is never counted out, so no other handle's drop can
        // become "the last" and take the threads (and the report) from here.
        self.released = true;
        let last = self.handles.sequencer.close() - 1;
        self.handles.pipeline.shut_down(last)
    }

    fn release(&self) -> Option<ShutdownReport> {
        // AcqRel: each handle's publishes happen-before its release here, and
        // the last handle's acquire sees all of them before it shuts down.
        if self.handles.live.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        let last = self.handles.sequencer.close() - 1;
        Some(self.handles.pipeline.shut_down(last))
    }

    /// Waits until the pending claim may be written. A claimed sequence is
    /// given up only when the pipeline has halted (nothing reads it then).
    #[inline]
    fn wait_for_claimed(&mut self, count: i64) -> Result<Claim, NoRoom> {
        let handles = &*self.handles;
        if handles.pipeline.shared.is_halted() {
            return Err(NoRoom::Halted);
        }
        let pending = handles.sequencer.claim(count).ok_or(NoRoom::Closed)?;
        let pending = match handles.sequencer.ready(pending, &mut self.cached_min_gate) {
            Ok(claim) => return Ok(claim),
            Err(pending) => pending,
        };
        let shared = &*handles.pipeline.shared;
        let cached_min_gate = &mut self.cached_min_gate;
        let mut pending = Some(pending);
        handles
            .full_ring_wait
            .wait_until(None, || {
                shared.poll_orphans();
                let waiting = pending.take().expect("kept until it is ready");
                match handles.sequencer.ready(waiting, cached_min_gate) {
                    Ok(claim) => Some(Ok(claim)),
                    Err(_) if shared.is_halted() => Some(Err(NoRoom::Halted)),
                    Err(waiting) => {
                        pending = Some(waiting);
                        None
                    }
                }
            })
            .unwrap_or(Err(NoRoom::Halted))
    }

    /// Claims `count` slots only if free now, waiting up to `timeout` (if
    /// any) for them; never claims what it does not publish.
    fn claim_when_free(&mut self, count: i64, timeout: Option<Duration>) -> Result<Claim, NoRoom> {
        let handles = &*self.handles;
        let shared = &*handles.pipeline.shared;
        let cached_min_gate = &mut self.cached_min_gate;
        let mut look = || {
            if shared.is_halted() {
                return Some(Err(NoRoom::Halted));
            }
            match handles.sequencer.try_claim(count, cached_min_gate) {
                TryClaim::Claimed(claim) => Some(Ok(claim)),
                TryClaim::Closed => Some(Err(NoRoom::Closed)),
                TryClaim::Full => None,
            }
        };
        if let Some(outcome) = look() {
            return outcome;
        }
        if timeout == Some(Duration::ZERO) {
            // As for the single producer's `try_*`: skip a dropped
            // poller's events here too, or `try_*` alone stays `Full`.
            if shared.has_orphans() {
                shared.poll_orphans();
                return look().unwrap_or(Err(NoRoom::Full));
            }
            return Err(NoRoom::Full);
        }
        handles
            .full_ring_wait
            .wait_until(timeout, || {
                shared.poll_orphans();
                look()
            })
            .unwrap_or(Err(NoRoom::Full))
    }
}

impl<E, W> Claimer<E> for MultiProducer<E, W>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    #[inline]
    fn claim(&mut self, count: i64, room: Room) -> Result<Claim, NoRoom> {
        match room {
            Room::Wait => self.wait_for_claimed(count),
            Room::Now => self.claim_when_free(count, Some(Duration::ZERO)),
            Room::Within(timeout) => self.claim_when_free(count, Some(timeout)),
        }
    }

    /// If `fill` panics, the rest of the claim is still published (see the
    /// type docs).
    #[inline]
    fn write_and_publish<F: FnMut(&mut E, i64)>(&mut self, claim: Claim, mut fill: F) -> i64 {
        let shared = &*self.handles.pipeline.shared;
        let mut publish = PublishOnDrop { shared, claim };
        while !publish.claim.is_done() {
            shared
                .ring
                .write_and_publish(&mut publish.claim, |event, sequence| fill(event, sequence));
        }
        publish.claim.next() - 1
    }

    fn last_claimed(&self) -> i64 {
        self.handles.sequencer.claimed_up_to() - 1
    }

    fn ring_capacity(&self) -> usize {
        self.handles.sequencer.capacity() as usize
    }

    fn free_slots(&self) -> usize {
        self.handles.sequencer.remaining_capacity() as usize
    }
}

/// Stamps what is left of a claim when dropped: nothing after a normal
/// batch, the unfilled rest while `fill` panics. Then wakes sleepers.
struct PublishOnDrop<'a, E, W: WaitStrategy> {
    shared: &'a crate::shared::Shared<E, W>,
    claim: Claim,
}

impl<E, W: WaitStrategy> Drop for PublishOnDrop<'_, E, W> {
    #[inline]
    fn drop(&mut self) {
        if !self.claim.is_done() {
            self.shared.ring.publish_unwritten(&mut self.claim);
        }
        self.shared.wait.signal_all_when_blocking();
    }
}

impl<E: Send + Sync + 'static, W: WaitStrategy> Clone for MultiProducer<E, W> {
    fn clone(&self) -> Self {
        // Relaxed: a new handle is made from a live one, so the count is
        // already above zero; the drop side orders the shutdown.
        self.handles.live.fetch_add(1, Ordering::Relaxed);
        Self {
            handles: Arc::clone(&self.handles),
            cached_min_gate: self.cached_min_gate,
            released: false,
        }
    }
}

impl<E: Send + Sync + 'static, W: WaitStrategy> Drop for MultiProducer<E, W> {
    /// Lets go of the handle; the last one drains and joins the pipeline.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // AcqRel: as in `release`.
        if self.handles.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            let last = self.handles.sequencer.close() - 1;
            let _ = self.handles.pipeline.shut_down(last);
        }
    }
}

impl<E: Send + Sync + 'static, W: WaitStrategy> fmt::Debug for MultiProducer<E, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiProducer")
            .field("capacity", &self.handles.sequencer.capacity())
            .field("claimed_up_to", &self.handles.sequencer.claimed_up_to())
            .finish_non_exhaustive()
    }
}
