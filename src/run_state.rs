//! `RunState`: the pipeline's one stop flag and its shutdown point.
//!
//! It lives inside the ring's header (see `ring_buffer.rs`), on the line that
//! holds the slots pointer and the mask, which every publish and every batch
//! reads anyway. Both fields are written once (at halt or at shutdown), so in
//! normal operation the line stays shared in every core's cache and a check
//! costs a load that hits L1.

use crate::loom::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Whether the pipeline runs, is draining to a shutdown point, or has halted.
#[derive(Debug)]
pub(crate) struct RunState {
    /// The last sequence published before shutdown; `i64::MAX` while running.
    shutdown_at: AtomicI64,
    /// Stop at once, without draining: a handler panicked under
    /// `PanicPolicy::Halt`, a tickring thread died, or `build()` failed.
    halted: AtomicBool,
    /// A thread of the pipeline could set `halted` while a consumer runs a
    /// batch (see `threads_may_halt`). Starts `true`; `build()` clears it
    /// when the pipeline has no thread.
    threads_may_halt: AtomicBool,
}

impl RunState {
    pub(crate) fn new() -> Self {
        Self {
            shutdown_at: AtomicI64::new(i64::MAX),
            halted: AtomicBool::new(false),
            threads_may_halt: AtomicBool::new(true),
        }
    }

    /// Whether the pipeline has halted.
    #[inline]
    pub(crate) fn is_halted(&self) -> bool {
        // Relaxed: a stop request carries no data; reports travel by `join`.
        self.halted.load(Ordering::Relaxed)
    }

    /// Whether a thread of the pipeline could halt it while a consumer runs
    /// a batch. Only threads halt a running pipeline (a handler's panic
    /// under `Halt`, an unwind out of a tickring thread); with none, a
    /// poller checks the flag before each window instead of each event.
    #[inline]
    pub(crate) fn threads_may_halt(&self) -> bool {
        // Relaxed: written once, `true` to `false`, and `true` is always a
        // safe answer (it only adds checks).
        self.threads_may_halt.load(Ordering::Relaxed)
    }

    /// Records that the pipeline runs no thread (called by `build()`).
    pub(crate) fn set_no_threads(&self) {
        // Relaxed: see `threads_may_halt`.
        self.threads_may_halt.store(false, Ordering::Relaxed);
    }

    /// Sets the halt flag. Callers go through `Shared::halt`, which also
    /// wakes sleeping waiters.
    pub(crate) fn set_halted(&self) {
        // Relaxed: see `is_halted`.
        self.halted.store(true, Ordering::Relaxed);
    }

    /// The last sequence published before shutdown; `i64::MAX` while running.
    #[inline]
    pub(crate) fn shutdown_at(&self) -> i64 {
        // Acquire: pairs with `set_shutdown_at`'s release, which follows
        // every publish up to the value read.
        self.shutdown_at.load(Ordering::Acquire)
    }

    /// Asks every participant to stop once it has handled `last_published`.
    /// The first call wins; later calls keep the first shutdown point.
    pub(crate) fn set_shutdown_at(&self, last_published: i64) {
        // AcqRel on success (the release half: every publish up to
        // `last_published` happens-before a participant that reads this
        // value with acquire); Acquire on failure, where nothing is written.
        let _ = self.shutdown_at.compare_exchange(
            i64::MAX,
            last_published,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}
