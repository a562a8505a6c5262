//! Sequencers: how producers claim sequence numbers and wait for room.
//!
//! Publishing itself is the same for every sequencer: stamp the slot (see
//! `ring_buffer.rs`). What differs is claiming: a single producer counts in a
//! plain local field; the multi-producer sequencer (a later module) claims
//! with `fetch_add`.

pub(crate) mod single;

use crate::loom::hint::spin_loop;

/// How a producer passes the time while the ring is full: spin briefly, then
/// yield, so a producer never burns a core that a lagging handler needs.
#[derive(Debug, Default)]
pub(crate) struct FullRingBackoff {
    polls: u32,
}

impl FullRingBackoff {
    const SPINS: u32 = 128;

    #[inline]
    pub(crate) fn snooze(&mut self) {
        if self.polls < Self::SPINS {
            self.polls += 1;
            spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}
