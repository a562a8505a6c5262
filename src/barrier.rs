//! `SequenceBarrier`: where a handler waits for its next events.
//!
//! A first-stage handler waits for events to be *published*: it reads the
//! stamps in the slots themselves (see `ring_buffer.rs`), so its wait and its
//! read of the event touch the same cache line. A later stage waits for its
//! upstream stage: the minimum of the upstream handlers' sequences, cached so
//! that a batch costs one read of them.
//!
//! Either way the barrier returns the highest available sequence, so the
//! handler takes the whole batch at once, and it reports the pipeline's end:
//! a halt (a handler panicked under `PanicPolicy::Halt`) at once, a shutdown
//! only after everything published before it has gone past.

use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::PipelineState;
use crate::ring_buffer::RingBuffer;
use crate::sequence::{min_sequence, Sequence};
use crate::wait::WaitStrategy;

/// Why a wait ended without events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// The handler's timeout passed.
    TimedOut,
    /// Shut down, and every event published before the shutdown is past.
    Drained,
    /// A handler halted the pipeline.
    Halted,
}

pub(crate) struct SequenceBarrier<E, W> {
    ring: Arc<RingBuffer<E>>,
    wait: Arc<W>,
    state: Arc<PipelineState>,
    /// Upstream handlers' sequences; empty for a first stage (gate on stamps).
    dependencies: Box<[Arc<Sequence>]>,
    /// The last upstream minimum seen: no re-read while it covers the request.
    cached_available: i64,
}

impl<E, W: WaitStrategy> SequenceBarrier<E, W> {
    pub(crate) fn new(
        ring: Arc<RingBuffer<E>>,
        wait: Arc<W>,
        state: Arc<PipelineState>,
        dependencies: Box<[Arc<Sequence>]>,
    ) -> Self {
        Self {
            ring,
            wait,
            state,
            dependencies,
            cached_available: crate::sequence::INITIAL_SEQUENCE,
        }
    }

    /// Waits until sequence `next` is available and returns the highest
    /// available sequence (at least `next`), or why there is none. A first
    /// stage scans the stamps no further than `limit`.
    #[inline]
    pub(crate) fn wait_for(
        &mut self,
        next: i64,
        limit: i64,
        timeout: Option<Duration>,
    ) -> Result<i64, WaitOutcome> {
        let Self {
            ring,
            wait,
            state,
            dependencies,
            cached_available,
        } = self;
        let mut available = || {
            if dependencies.is_empty() {
                ring.available_up_to(next, limit)
            } else {
                if *cached_available < next {
                    *cached_available = min_sequence(dependencies, i64::MAX);
                }
                *cached_available
            }
        };
        let first_look = available();
        if first_look >= next {
            return Ok(first_look);
        }
        wait.wait_until(timeout, || {
            let available = available();
            if available >= next {
                return Some(Ok(available));
            }
            if state.is_halted() {
                return Some(Err(WaitOutcome::Halted));
            }
            // Everything up to `shutdown_at` was published before it was set
            // (acquire), so `next` past it means nothing more will come.
            if next > state.shutdown_at() {
                return Some(Err(WaitOutcome::Drained));
            }
            None
        })
        .unwrap_or(Err(WaitOutcome::TimedOut))
    }
}
