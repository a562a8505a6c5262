//! Sequencers: how producers claim sequence numbers and wait for room.
//!
//! Publishing itself is the same for every sequencer: stamp the slot (see
//! `ring_buffer.rs`). What differs is claiming: a single producer counts in a
//! plain local field (`single.rs`); several producers claim from one shared
//! counter (`multi.rs`).

pub(crate) mod multi;
pub(crate) mod single;

use std::time::{Duration, Instant};

use crate::error::PublishError;
use crate::loom::hint::spin_loop;
use crate::loom::thread;
use crate::pipeline::PipelineState;

/// How a producer waits while the ring is full.
///
/// ```
/// use std::time::Duration;
/// use tickring::{build_single_producer, FullRingWait, Yielding};
///
/// let producer = build_single_producer(64, || 0u64, Yielding::new())
///     .handle_events_with(|_: &u64, _, _| {})
///     .producer_wait(FullRingWait::Park { max_sleep: Duration::from_micros(50) })
///     .build()?;
/// # drop(producer);
/// # Ok::<(), tickring::BuildError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullRingWait {
    /// Spin with `spin_loop`: lowest latency, burns the producer's core.
    Spin,
    /// Spin briefly, then `yield_now` between checks (the default).
    #[default]
    Yield,
    /// Spin, yield, then sleep with exponential backoff up to `max_sleep`.
    Park {
        /// The longest single sleep.
        max_sleep: Duration,
    },
}

/// One producer's wait for room, under a [`FullRingWait`] policy.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: FullRingWait,
    polls: u32,
    sleep: Duration,
}

impl Backoff {
    // Under loom every poll is a scheduling point: keep the models small.
    const SPINS: u32 = if cfg!(loom) { 1 } else { 128 };
    const YIELDS: u32 = if cfg!(loom) { 1 } else { 128 };

    pub(crate) fn new(policy: FullRingWait) -> Self {
        Self {
            policy,
            polls: 0,
            sleep: Duration::from_micros(1),
        }
    }

    pub(crate) fn snooze(&mut self) {
        let polls = self.polls;
        self.polls = self.polls.saturating_add(1);
        match self.policy {
            FullRingWait::Spin => spin_loop(),
            _ if polls < Self::SPINS => spin_loop(),
            FullRingWait::Yield => thread::yield_now(),
            FullRingWait::Park { .. } if polls < Self::SPINS + Self::YIELDS => thread::yield_now(),
            FullRingWait::Park { max_sleep } => {
                thread::sleep(self.sleep.min(max_sleep));
                self.sleep = (self.sleep * 2).min(max_sleep);
            }
        }
    }
}

/// Waits until `has_room()` says yes. Fails with `Halted` when a handler has
/// stopped the pipeline (it would never make room) and with `TimedOut` when
/// `timeout` passes.
#[cold]
pub(crate) fn wait_for_room(
    state: &PipelineState,
    policy: FullRingWait,
    timeout: Option<Duration>,
    mut has_room: impl FnMut() -> bool,
) -> Result<(), PublishError> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut backoff = Backoff::new(policy);
    loop {
        if has_room() {
            return Ok(());
        }
        if state.is_halted() {
            return Err(PublishError::Halted);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(PublishError::TimedOut);
        }
        backoff.snooze();
    }
}
