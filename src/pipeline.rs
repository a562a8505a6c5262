//! The running pipeline: its shared stop state, its participants (handler
//! threads, workers, pollers), and the draining shutdown that joins them.

use std::sync::{Arc, PoisonError};

use crossbeam_utils::CachePadded;

use crate::loom::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use crate::loom::sync::Mutex;
use crate::loom::thread::JoinHandle;
use crate::report::{HandlerPanic, HandlerReport, ShutdownReport};
use crate::sequence::Sequence;
use crate::wait::WaitStrategy;

/// What every handler checks when it finds nothing to do. Written once (at
/// shutdown or halt), so it stays in every reader's cache.
#[derive(Debug)]
pub(crate) struct PipelineState {
    inner: CachePadded<StopFlags>,
}

#[derive(Debug)]
struct StopFlags {
    /// The last sequence published before shutdown; `i64::MAX` while running.
    shutdown_at: AtomicI64,
    /// A handler panicked under `PanicPolicy::Halt`: stop without draining.
    halted: AtomicBool,
}

impl PipelineState {
    pub(crate) fn new() -> Self {
        Self {
            inner: CachePadded::new(StopFlags {
                shutdown_at: AtomicI64::new(i64::MAX),
                halted: AtomicBool::new(false),
            }),
        }
    }

    #[inline]
    pub(crate) fn shutdown_at(&self) -> i64 {
        // Acquire: pairs with `shut_down`'s release, which follows every
        // publish up to the value read.
        self.inner.shutdown_at.load(Ordering::Acquire)
    }

    /// Asks the handlers to stop once they have handled `last_published`.
    pub(crate) fn shut_down(&self, last_published: i64) {
        // Release: every publish up to `last_published` happens-before a
        // handler that reads this value.
        self.inner
            .shutdown_at
            .store(last_published, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_halted(&self) -> bool {
        // Relaxed: a stop request carries no data; the report travels by `join`.
        self.inner.halted.load(Ordering::Relaxed)
    }

    /// Halts the pipeline. Every caller also sets the ring's copy of the flag
    /// (`RingBuffer::mark_halted`), which the single producer reads on every
    /// publish.
    pub(crate) fn halt(&self) {
        // Relaxed: see `is_halted`.
        self.inner.halted.store(true, Ordering::Relaxed);
    }
}

/// A handler, worker or poller: its name and its sequence (for lags).
#[derive(Debug)]
pub(crate) struct Participant {
    pub(crate) name: String,
    pub(crate) sequence: Arc<Sequence>,
}

/// The participants of a pipeline and the threads joined on shutdown.
pub(crate) struct Pipeline<W> {
    pub(crate) state: Arc<PipelineState>,
    pub(crate) wait: Arc<W>,
    pub(crate) participants: Vec<Participant>,
    /// Taken (emptied) by the first shutdown or halt.
    threads: Mutex<Vec<(String, JoinHandle<HandlerReport>)>>,
}

impl<W: WaitStrategy> Pipeline<W> {
    pub(crate) fn new(state: Arc<PipelineState>, wait: Arc<W>) -> Self {
        Self {
            state,
            wait,
            participants: Vec::new(),
            threads: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn add_thread(&mut self, name: String, join: JoinHandle<HandlerReport>) {
        self.threads
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, join));
    }

    pub(crate) fn thread_count(&mut self) -> usize {
        self.threads
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Each participant's name and how far it trails `last_published`.
    pub(crate) fn lags(&self, last_published: i64) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.participants.iter().map(move |participant| {
            let lag = (last_published - participant.sequence.get()).max(0) as u64;
            (participant.name.as_str(), lag)
        })
    }

    /// Asks every participant to stop once it has handled `last_published`;
    /// [`Pipeline::join_all`] then waits for the threads.
    pub(crate) fn begin_shutdown(&self, last_published: i64) {
        self.state.shut_down(last_published);
        self.wait.signal_all_when_blocking();
    }

    /// Stops the handlers without draining and joins them.
    pub(crate) fn halt(&self) -> ShutdownReport {
        self.state.halt();
        self.wait.signal_all_when_blocking();
        self.join_all()
    }

    /// Joins every handler thread (once; later calls find none).
    pub(crate) fn join_all(&self) -> ShutdownReport {
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        let handlers = threads
            .into_iter()
            .map(|(name, join)| {
                join.join().unwrap_or_else(|payload| HandlerReport {
                    name: name.clone(),
                    events_handled: 0,
                    events_skipped: 0,
                    panic: Some(HandlerPanic {
                        handler: name,
                        sequence: None,
                        message: crate::report::panic_message(payload.as_ref()),
                    }),
                })
            })
            .collect();
        ShutdownReport { handlers }
    }
}
