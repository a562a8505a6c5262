//! Helpers shared by the multi-producer, poller and worker-pool tests:
//! bounded waits (a hang fails the test instead of blocking CI), a handler
//! held at an event until the test lets it go, event counts sized for the
//! build profile, and a quiet panic hook for panics the tests cause.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::any::Any;
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

/// Unoptimized builds run many times slower; waits get this much longer.
pub const DEBUG_SLOWDOWN: u32 = if cfg!(debug_assertions) { 10 } else { 1 };

/// How long any one test may take before it is declared hung (release).
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// `limit` scaled for the build profile.
pub fn scaled(limit: Duration) -> Duration {
    limit * DEBUG_SLOWDOWN
}

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
    let limit = scaled(limit);
    let test = thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned();
    let (done, outcome) = mpsc::channel();
    let worker = thread::Builder::new()
        .name(format!("body-of-{test}"))
        .spawn(move || {
            let _ = done.send(body());
        })
        .expect("spawn the test body");
    match outcome.recv_timeout(limit) {
        Ok(value) => {
            worker.join().expect("the body already returned");
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => panic::resume_unwind(payload),
            Ok(()) => unreachable!("the body returned without sending its result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!(
            "'{test}' did not finish within {limit:?}: it hangs (a producer stuck on a \
             full ring, a handler waiting for a sequence that is never published, a \
             shutdown that does not drain, or a lost wake-up)"
        ),
    }
}

/// Polls `condition` until it holds; panics naming `what` after `limit`
/// (scaled for debug builds).
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + scaled(limit);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        thread::sleep(Duration::from_micros(200));
    }
}

/// Joins `thread`, re-raising its panic with the panic's own message.
pub fn join<T>(thread: thread::JoinHandle<T>) -> T {
    thread
        .join()
        .unwrap_or_else(|payload| panic::resume_unwind(payload))
}

/// The handler's side of a gate: it waits there until the test opens it.
/// Make one with [`Gate::closed`].
#[derive(Clone, Debug)]
pub struct Gate {
    open: Arc<AtomicBool>,
}

/// The test's side of a gate: [`GateKeeper::open`] lets the handler through.
/// Dropping it opens the gate too, so a test that fails while a handler is
/// held unwinds (and shuts its pipeline down) instead of waiting on it.
#[derive(Debug)]
pub struct GateKeeper {
    open: Arc<AtomicBool>,
}

impl Gate {
    /// A closed gate and the keeper that opens it.
    pub fn closed() -> (GateKeeper, Gate) {
        let open = Arc::new(AtomicBool::new(false));
        (
            GateKeeper {
                open: Arc::clone(&open),
            },
            Gate { open },
        )
    }

    /// Blocks the caller (a handler) until the test opens the gate; gives up
    /// with a panic after [`TEST_LIMIT`].
    pub fn wait(&self) {
        wait_until(TEST_LIMIT, "the test opens the gate", || {
            self.open.load(Ordering::Acquire)
        });
    }
}

impl GateKeeper {
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
    }
}

impl Drop for GateKeeper {
    fn drop(&mut self) {
        self.open();
    }
}

/// The text of a panic payload.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Marks panics the tests cause on purpose; they are not printed.
pub const EXPECTED_PANIC: &str = "expected test panic";

/// Installs (once per test binary) a panic hook that stays quiet for panics
/// whose message contains [`EXPECTED_PANIC`] and prints every other one.
pub fn silence_expected_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !panic_text(info.payload()).contains(EXPECTED_PANIC) {
                default_hook(info);
            }
        }));
    });
}

/// A small xorshift generator: the tests' publish patterns are varied but
/// reproducible.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `1..=max`.
    pub fn between_1_and(&mut self, max: u64) -> u64 {
        self.next_u64() % max.max(1) + 1
    }
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
