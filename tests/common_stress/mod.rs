//! Helpers for the stress and fault suites: bounded waits (a hang fails the
//! test instead of blocking CI), a seeded xorshift generator, a quiet panic
//! hook for the panics the tests cause on purpose, and a gate that holds a
//! handler at an event until the test lets it go. These are defined in
//! `../common/shared.rs` and re-exported here; this file keeps what only
//! these suites use.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

#[path = "../common/shared.rs"]
mod shared;

// As with `dead_code` above: each test binary uses a different subset.
#[allow(unused_imports)]
pub use shared::{
    join, panic_text, scaled, silence_expected_panics, wait_until, with_timeout, Gate, GateKeeper,
    XorShift, DEBUG_SLOWDOWN, EXPECTED_PANIC, GATE_LIMIT,
};

/// SplitMix64's finalizer: a bijective mix, so distinct inputs give distinct
/// outputs and sums of mixes make order-independent fingerprints.
pub fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}
