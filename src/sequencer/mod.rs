//! Sequencers: how producers claim sequence numbers and wait for room.
//!
//! Publishing itself is the same for every sequencer: stamp the slot (see
//! `ring_buffer.rs`). What differs is claiming: a single producer counts in a
//! plain local field (`single.rs`); several producers claim from one shared
//! counter (`multi.rs`). Both hand out a `Claim`, the only way to write a slot.

pub(crate) mod multi;
pub(crate) mod single;

use std::time::Duration;

use crate::wait::{BusySpin, Sleeping, WaitStrategy, Yielding};

/// How a producer waits while the ring is full.
///
/// Each policy is one of the handlers' wait strategies, so producers and
/// handlers wait the same way (one spin, yield and sleep mechanism).
///
/// ```
/// use std::time::Duration;
/// use tickring::{build_single_producer, FullRingWait, Yielding};
///
/// let producer = build_single_producer(64, || 0u64, Yielding::new())
///     .producer_wait(FullRingWait::Park { max_sleep: Duration::from_micros(50) })
///     .handle_events_with(|_: &u64, _, _| {})
///     .build()?;
/// # drop(producer);
/// # Ok::<(), tickring::BuildError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FullRingWait {
    /// Spin with `spin_loop` ([`BusySpin`]): lowest latency, burns the
    /// producer's core.
    Spin,
    /// Spin briefly, then `yield_now` between checks ([`Yielding`]; the
    /// default).
    #[default]
    Yield,
    /// Spin, yield, then sleep with exponential backoff up to `max_sleep`
    /// ([`Sleeping`]; clamped to [`MAX_SLEEP`](crate::MAX_SLEEP)).
    Park {
        /// The longest single sleep.
        max_sleep: Duration,
    },
}

impl FullRingWait {
    /// Calls `ready` until it returns `Some`, waiting per the policy; `None`
    /// once `timeout` (if any) has passed.
    #[cold]
    pub(crate) fn wait_until<T>(
        self,
        timeout: Option<Duration>,
        ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        match self {
            Self::Spin => BusySpin.wait_until(timeout, ready),
            Self::Yield => Yielding::new().wait_until(timeout, ready),
            Self::Park { max_sleep } => {
                Sleeping::with_max_sleep(max_sleep).wait_until(timeout, ready)
            }
        }
    }
}
