//! Wait strategies: how a handler waits for the next event.
//!
//! A strategy is a type parameter of the pipeline, so the wait loop is
//! monomorphized and inlined into each handler's batch loop (no `dyn`).
//!
//! | strategy | waiting thread | latency | when to use |
//! |---|---|---|---|
//! | [`BusySpin`] | spins with `spin_loop` | lowest | a pinned thread with a core of its own |
//! | [`Yielding`] | spins briefly, then `yield_now` | low | more threads than cores, latency still matters |
//! | [`Sleeping`] | spins, yields, then sleeps with backoff | moderate | background stages, CPU matters |
//! | [`Blocking`] | sleeps on a condition variable; a publish wakes it | highest | idle most of the time |
//!
//! A wait with a timeout returns `None` when it expires; the handler's
//! `on_timeout` then runs and the wait starts again.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::loom::hint::spin_loop;
use crate::loom::sync::atomic::{fence, AtomicUsize, Ordering};
use crate::loom::sync::{Condvar, Mutex};
use crate::loom::thread;

/// How a thread waits for a condition that another thread will make true.
///
/// Implementors decide how to pass the time between checks of `ready`; the
/// crate supplies the condition (an event published, an upstream stage
/// passed, the pipeline shutting down).
pub trait WaitStrategy: Send + Sync + 'static {
    /// Calls `ready` until it returns `Some`, and returns that value; returns
    /// `None` if `timeout` passes first.
    fn wait_until<T>(
        &self,
        timeout: Option<Duration>,
        ready: impl FnMut() -> Option<T>,
    ) -> Option<T>;

    /// Called after every publish and every handler's batch. Strategies whose
    /// waiters sleep wake them here; the others do nothing (and compile away).
    #[inline]
    fn signal_all_when_blocking(&self) {}
}

/// How many times a strategy polls before it yields or sleeps. Under loom
/// every poll is a scheduling point, so the models keep this to one.
const SPINS: u32 = if cfg!(tickring_loom) { 1 } else { 100 };

/// A deadline that costs nothing when there is no timeout. A timeout too
/// large to add to the clock (`Duration::MAX`) means no deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    #[inline]
    pub(crate) fn after(timeout: Option<Duration>) -> Self {
        Self(timeout.and_then(|timeout| Instant::now().checked_add(timeout)))
    }

    #[inline]
    pub(crate) fn passed(&self) -> bool {
        self.0.is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Time left, or `None` without a deadline.
    #[inline]
    fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }
}

/// The longest single sleep of [`Sleeping`] (and of a parked producer): a
/// larger cap is clamped to this, so a shutdown never waits out a long sleep.
pub const MAX_SLEEP: Duration = Duration::from_millis(10);

/// Spins on the condition with `std::hint::spin_loop()`.
///
/// The lowest latency, and a core at 100%: only for threads pinned to a core
/// of their own. Never use it with more spinning threads than cores.
///
/// ```
/// use tickring::{BusySpin, WaitStrategy};
/// let mut polls = 0;
/// let found = BusySpin.wait_until(None, || { polls += 1; (polls == 3).then_some(polls) });
/// assert_eq!(found, Some(3));
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct BusySpin;

impl WaitStrategy for BusySpin {
    #[inline]
    fn wait_until<T>(
        &self,
        timeout: Option<Duration>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let deadline = Deadline::after(timeout);
        let mut polls: u32 = 0;
        loop {
            if let Some(value) = ready() {
                return Some(value);
            }
            spin_loop();
            polls = polls.wrapping_add(1);
            // Reading the clock costs more than a poll: look every 1024 polls.
            if polls % 1024 == 0 && deadline.passed() {
                return None;
            }
        }
    }
}

/// Spins a little, then yields the CPU between checks.
///
/// Close to [`BusySpin`]'s latency while letting other threads run; the
/// default choice when threads outnumber cores.
#[derive(Debug, Clone, Copy)]
pub struct Yielding {
    spins_before_yield: u32,
}

impl Yielding {
    /// Spins 100 times before the first yield.
    pub const fn new() -> Self {
        Self {
            spins_before_yield: SPINS,
        }
    }
}

impl Default for Yielding {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitStrategy for Yielding {
    #[inline]
    fn wait_until<T>(
        &self,
        timeout: Option<Duration>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let deadline = Deadline::after(timeout);
        let mut spins = 0;
        loop {
            if let Some(value) = ready() {
                return Some(value);
            }
            if spins < self.spins_before_yield {
                spins += 1;
                spin_loop();
            } else {
                thread::yield_now();
                if deadline.passed() {
                    return None;
                }
            }
        }
    }
}

/// Spins, then yields, then sleeps with exponential backoff up to a cap.
///
/// Uses little CPU when idle; the first event after a quiet spell waits up to
/// the cap (100 µs by default).
#[derive(Debug, Clone, Copy)]
pub struct Sleeping {
    spins: u32,
    yields: u32,
    max_sleep: Duration,
}

impl Sleeping {
    /// 100 spins, 100 yields, then sleeps from 1 µs doubling to 100 µs.
    pub const fn new() -> Self {
        Self::with_max_sleep(Duration::from_micros(100))
    }

    /// As [`Sleeping::new`], with another cap on one sleep. A cap of zero
    /// yields instead of sleeping; a cap above [`MAX_SLEEP`] is clamped to it.
    pub const fn with_max_sleep(max_sleep: Duration) -> Self {
        let max_sleep = if max_sleep.as_nanos() > MAX_SLEEP.as_nanos() {
            MAX_SLEEP
        } else {
            max_sleep
        };
        Self {
            spins: SPINS,
            yields: SPINS,
            max_sleep,
        }
    }
}

impl Default for Sleeping {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitStrategy for Sleeping {
    fn wait_until<T>(
        &self,
        timeout: Option<Duration>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let deadline = Deadline::after(timeout);
        let mut polls: u32 = 0;
        let mut sleep = Duration::from_micros(1).min(self.max_sleep);
        loop {
            if let Some(value) = ready() {
                return Some(value);
            }
            if polls < self.spins {
                spin_loop();
            } else if polls < self.spins + self.yields || self.max_sleep.is_zero() {
                thread::yield_now();
            } else {
                // Never sleep past the deadline: a timeout stays a timeout.
                let nap = deadline.remaining().map_or(sleep, |left| sleep.min(left));
                thread::sleep(nap);
                sleep = sleep.saturating_mul(2).min(self.max_sleep);
            }
            polls = polls.saturating_add(1);
            if polls > self.spins && deadline.passed() {
                return None;
            }
        }
    }
}

/// Waiting threads sleep on a condition variable; a publish wakes them.
///
/// No lost wake-up: a waiter announces itself (`sleepers += 1`) and then
/// re-checks the condition, while the signaller makes its change and then
/// checks `sleepers`; a `SeqCst` fence on both sides (the store-load, or
/// Dekker, case) guarantees that at least one of them sees the other. The
/// mutex is taken only to park or to wake a parked thread: when nobody
/// sleeps, a publish costs one fence and one load, no lock, no syscall.
#[derive(Debug, Default)]
pub struct Blocking {
    sleepers: CachePadded<AtomicUsize>,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Blocking {
    /// A blocking strategy with nobody asleep.
    pub fn new() -> Self {
        Self::default()
    }
}

impl WaitStrategy for Blocking {
    fn wait_until<T>(
        &self,
        timeout: Option<Duration>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        // A short spin first: an event already on its way costs no syscall.
        for _ in 0..SPINS {
            if let Some(value) = ready() {
                return Some(value);
            }
            spin_loop();
        }
        let deadline = Deadline::after(timeout);
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // SeqCst RMW and fence: the waiter's half of the store-load pairing
        // with `signal_all_when_blocking`.
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let found = loop {
            if let Some(value) = ready() {
                break Some(value);
            }
            guard = match deadline.0 {
                None => self
                    .wake
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break None;
                    }
                    self.wake
                        .wait_timeout(guard, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        };
        // Relaxed: only a hint for signallers; the mutex orders the rest.
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        drop(guard);
        found
    }

    #[inline]
    fn signal_all_when_blocking(&self) {
        // SeqCst fence: the signaller's half of the store-load pairing. The
        // change that made `ready` true was stored before this fence.
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            // Taking the lock waits out a waiter that is between its check and
            // its `wait`, so the notification cannot fall in that gap.
            drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
            self.wake.notify_all();
        }
    }
}

#[cfg(all(test, not(tickring_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn returns_when_ready<W: WaitStrategy>(strategy: W) {
        let mut polls = 0;
        let found = strategy.wait_until(Some(Duration::from_secs(5)), || {
            polls += 1;
            (polls >= 500).then_some(polls)
        });
        assert_eq!(found, Some(500));
    }

    fn times_out<W: WaitStrategy>(strategy: W) {
        let started = Instant::now();
        let found: Option<()> = strategy.wait_until(Some(Duration::from_millis(20)), || None);
        assert_eq!(found, None);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn every_strategy_returns_the_ready_value() {
        returns_when_ready(BusySpin);
        returns_when_ready(Yielding::new());
        returns_when_ready(Sleeping::new());
        // Blocking re-checks only when signalled: see the wake-up test below.
    }

    #[test]
    fn every_strategy_times_out() {
        times_out(BusySpin);
        times_out(Yielding::new());
        times_out(Sleeping::new());
        times_out(Blocking::new());
    }

    #[test]
    fn blocking_waiter_is_woken_by_a_signal() {
        let iterations = if cfg!(miri) { 20 } else { 2_000 };
        for _ in 0..iterations {
            let strategy = Arc::new(Blocking::new());
            let flag = Arc::new(AtomicBool::new(false));
            let waiter = {
                let strategy = Arc::clone(&strategy);
                let flag = Arc::clone(&flag);
                std::thread::spawn(move || {
                    strategy.wait_until(Some(Duration::from_secs(10)), || {
                        flag.load(Ordering::Acquire).then_some(())
                    })
                })
            };
            let signalled = Instant::now();
            flag.store(true, Ordering::Release);
            strategy.signal_all_when_blocking();
            assert_eq!(waiter.join().unwrap(), Some(()));
            // A lost wake-up leaves the waiter asleep until its 10 s timeout.
            assert!(signalled.elapsed() < Duration::from_secs(5), "lost wake-up");
        }
    }
}
