//! `Shared`: what every participant and producer of one pipeline holds — the
//! ring (with the run state in its header), the wait strategy, and the
//! pollers that were dropped before they finished.
//!
//! `halt` and `begin_shutdown` are the only ways to stop a pipeline; both
//! wake every sleeping waiter.

use std::sync::{PoisonError, TryLockError};

use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::Mutex;
use crate::ring_buffer::RingBuffer;
use crate::wait::WaitStrategy;

/// A poller that its owner dropped before it finished: polled with no
/// action, so the stages behind it and the producer are not held back
/// forever. Returns `true` once it has reached the end (shutdown or halt).
pub(crate) type Orphan<E, W> = Box<dyn FnMut(&Shared<E, W>) -> bool + Send>;

pub(crate) struct Shared<E, W> {
    pub(crate) ring: RingBuffer<E>,
    pub(crate) wait: W,
    /// Dropped, unfinished pollers with their stage index.
    orphans: Mutex<Vec<(usize, Orphan<E, W>)>>,
    /// How many orphans there are, so that a producer waiting for room
    /// looks at the lock only when there is something behind it.
    orphan_count: AtomicUsize,
    /// Pollers a user holds: each may become an orphan when dropped, so a
    /// shutdown must not block in a join while there is one.
    live_pollers: AtomicUsize,
}

impl<E, W: WaitStrategy> Shared<E, W> {
    pub(crate) fn new(ring: RingBuffer<E>, wait: W) -> Self {
        Self {
            ring,
            wait,
            orphans: Mutex::new(Vec::new()),
            orphan_count: AtomicUsize::new(0),
            live_pollers: AtomicUsize::new(0),
        }
    }

    /// Stops every participant at once, without draining: each stops before
    /// its next event, producers get `Halted`, sleepers wake.
    pub(crate) fn halt(&self) {
        self.ring.state.set_halted();
        self.wait.signal_all_when_blocking();
    }

    /// Whether the pipeline has halted.
    #[inline]
    pub(crate) fn is_halted(&self) -> bool {
        self.ring.state.is_halted()
    }

    /// Asks every participant to stop once it has handled `last_published`.
    pub(crate) fn begin_shutdown(&self, last_published: i64) {
        self.ring.state.set_shutdown_at(last_published);
        self.wait.signal_all_when_blocking();
    }

    /// Hands a dropped, unfinished poller to the pipeline.
    pub(crate) fn adopt_orphan(&self, stage: usize, orphan: Orphan<E, W>) {
        let mut orphans = self.orphans.lock().unwrap_or_else(PoisonError::into_inner);
        orphans.push((stage, orphan));
        // Upstream first: a later stage's orphan waits on an earlier one.
        orphans.sort_by_key(|(stage, _)| *stage);
        // Relaxed: a hint; the list itself is read under the lock.
        self.orphan_count.store(orphans.len(), Ordering::Relaxed);
    }

    /// Polls every orphan once, upstream first, and forgets those that
    /// reached their end. Skipped when another thread is at it: a producer
    /// waiting for room calls this on every look.
    pub(crate) fn poll_orphans(&self) {
        // Relaxed: see `adopt_orphan`; a new orphan is seen on a later look.
        if self.orphan_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut orphans = match self.orphans.try_lock() {
            Ok(orphans) => orphans,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        orphans.retain_mut(|(_, orphan)| !orphan(self));
        self.orphan_count.store(orphans.len(), Ordering::Relaxed);
    }

    /// A poller was handed to the user.
    pub(crate) fn poller_handed_out(&self) {
        // Relaxed: counted before the poller exists for anyone else.
        self.live_pollers.fetch_add(1, Ordering::Relaxed);
    }

    /// A poller the user held was dropped (after `adopt_orphan`, if it had
    /// not finished).
    pub(crate) fn poller_dropped(&self) {
        // Release: pairs with the acquire in `may_gain_orphans`, so a
        // shutdown that sees the poller gone also sees the orphan it left.
        self.live_pollers.fetch_sub(1, Ordering::Release);
    }

    /// Whether an orphan is waiting to be drained or a poller that is still
    /// held may become one: a thread behind it may then finish only once
    /// the shutdown drains it, so the shutdown must not block in a join.
    pub(crate) fn may_gain_orphans(&self) -> bool {
        // Acquire: see `poller_dropped`; then the orphan count is current.
        self.live_pollers.load(Ordering::Acquire) != 0 || self.has_orphans()
    }

    /// Whether an orphan is waiting to be drained.
    pub(crate) fn has_orphans(&self) -> bool {
        // Relaxed: see `adopt_orphan`.
        self.orphan_count.load(Ordering::Relaxed) != 0
    }
}
