//! Helpers shared by the multi-producer, poller and worker-pool tests:
//! bounded waits (a hang fails the test instead of blocking CI), a handler
//! held at an event until the test lets it go, event counts sized for the
//! build profile, and a quiet panic hook for panics the tests cause. The
//! helpers every suite needs are defined in `../common/shared.rs` and
//! re-exported here; this file keeps what only these suites use.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

#[path = "../common/shared.rs"]
mod shared;

use std::thread;
use std::time::Duration;

use shared::run_bounded;
// As with `dead_code` above: each test binary uses a different subset.
#[allow(unused_imports)]
pub use shared::{
    join, panic_text, scaled, silence_expected_panics, wait_until, Gate, GateKeeper, XorShift,
    DEBUG_SLOWDOWN, EXPECTED_PANIC,
};

/// How long any one test may take before it is declared hung (release).
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// `release` events in release builds; a fifth of them (at least 1,000) in
/// unoptimized builds, so that plain `cargo test` stays within a minute. The
/// release run (the project's test command) exercises the full counts.
pub const fn events(release: u64) -> u64 {
    if cfg!(debug_assertions) {
        let reduced = release / 5;
        if reduced < 1_000 {
            1_000
        } else {
            reduced
        }
    } else {
        release
    }
}

/// Runs `body` on a thread of its own and returns its result, or panics with
/// a clear message if it has not finished within `limit` (scaled for debug
/// builds). A panic in `body` is re-raised here with its own message. The
/// message names the calling thread, which libtest names after the test.
pub fn with_timeout<T, F>(limit: Duration, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let test = thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned();
    run_bounded(
        limit,
        format!("body-of-{test}"),
        &test,
        "a producer stuck on a full ring, a handler waiting for a sequence that is never \
         published, a shutdown that does not drain, or a lost wake-up",
        body,
    )
}

/// Collects the check failures of a handler: how many, and the first one.
#[derive(Debug, Clone, Default)]
pub struct Failures {
    pub count: u64,
    pub first: Option<String>,
}

impl Failures {
    pub fn record(&mut self, failure: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(failure());
        }
    }

    pub fn assert_none(&self, who: &str) {
        assert_eq!(
            self.count, 0,
            "{who}: {} failed checks, the first: {:?}",
            self.count, self.first
        );
    }
}
