//! The running pipeline: its shared stop state, its handler threads, and the
//! draining shutdown that joins them.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_utils::CachePadded;

use crate::loom::sync::atomic::{AtomicBool, AtomicI64, Ordering};
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

    pub(crate) fn halt(&self) {
        // Relaxed: see `is_halted`.
        self.inner.halted.store(true, Ordering::Relaxed);
    }
}

/// One handler's thread, its sequence and its name.
pub(crate) struct HandlerThread {
    pub(crate) name: String,
    pub(crate) sequence: Arc<Sequence>,
    pub(crate) join: Option<JoinHandle<HandlerReport>>,
}

/// The handler threads of a pipeline, joined on shutdown.
pub(crate) struct Pipeline<W> {
    pub(crate) state: Arc<PipelineState>,
    pub(crate) wait: Arc<W>,
    pub(crate) handlers: Vec<HandlerThread>,
}

impl<W: WaitStrategy> Pipeline<W> {
    /// Stops the pipeline after `last_published` and joins every thread.
    pub(crate) fn shut_down_after(&mut self, last_published: i64) -> ShutdownReport {
        self.state.shut_down(last_published);
        self.wait.signal_all_when_blocking();
        self.join_all()
    }

    /// Stops the handlers without draining (a failed build) and joins them.
    pub(crate) fn halt(&mut self) -> ShutdownReport {
        self.state.halt();
        self.wait.signal_all_when_blocking();
        self.join_all()
    }

    fn join_all(&mut self) -> ShutdownReport {
        let mut reports = Vec::with_capacity(self.handlers.len());
        for handler in &mut self.handlers {
            let Some(join) = handler.join.take() else {
                continue;
            };
            let report = join.join().unwrap_or_else(|payload| HandlerReport {
                name: handler.name.clone(),
                events_handled: 0,
                events_skipped: 0,
                panic: Some(HandlerPanic {
                    handler: handler.name.clone(),
                    sequence: None,
                    message: crate::report::panic_message(payload.as_ref()),
                }),
            });
            reports.push(report);
        }
        ShutdownReport { handlers: reports }
    }
}
