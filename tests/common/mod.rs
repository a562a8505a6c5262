//! The one helper module of the integration tests (`mod common;` in each
//! test file):
//!
//! - bounded waits: [`with_timeout`] runs a test body on a thread of its own
//!   and fails the test if it hangs; [`wait_until`] polls a condition up to
//!   a limit. Every wait in every test goes through one of them, so a hang
//!   fails the test instead of blocking CI;
//! - a quiet panic hook for the panics the tests cause on purpose;
//! - [`Gate`]: holds a handler at an event until the test lets it go;
//! - [`XorShift`], the one seeded generator, and [`mix`];
//! - [`Failures`], the check failures a handler collects;
//! - [`ticks`]: an event whose every field derives from its sequence, and a
//!   handler that records and checks what it sees.
//!
//! Each test binary compiles this module and uses part of it: an item that
//! some binary does not use carries its own `#[allow(dead_code)]`.

pub mod ticks;

use std::any::Any;
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Bounded waits

/// Unoptimized builds run many times slower; waits get this much longer.
#[allow(dead_code)]
pub const DEBUG_SLOWDOWN: u32 = if cfg!(debug_assertions) { 10 } else { 1 };

/// How long any one test may take before it is declared hung (release).
#[allow(dead_code)]
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// `limit` scaled for the build profile.
#[allow(dead_code)]
pub fn scaled(limit: Duration) -> Duration {
    limit * DEBUG_SLOWDOWN
}

/// `release` events in release builds; a fifth of them (at least 1,000) in
/// unoptimized builds, so that plain `cargo test` stays within a minute. The
/// release run (the project's test command) exercises the full counts.
#[allow(dead_code)]
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

/// Runs `body` on a thread of its own (named after `name`) and returns its
/// result, or panics naming `name` if it has not finished within `limit`
/// (scaled for debug builds). A panic in `body` is re-raised here with its
/// own message.
#[allow(dead_code)]
pub fn with_timeout<T, F>(limit: Duration, name: &str, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let limit = scaled(limit);
    let (done, outcome) = mpsc::channel();
    let worker = thread::Builder::new()
        .name(format!("test-body-{name}"))
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
            "'{name}' did not finish within {limit:?}: it hangs (a lost wake-up, a shutdown \
             that does not drain, a producer stuck on a full ring, or a handler waiting for a \
             sequence that is never published)"
        ),
    }
}

/// Polls `condition` until it holds; panics naming `what` after `limit`
/// (scaled for debug builds).
#[allow(dead_code)]
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

/// Joins `thread`, re-raising its panic with the panic's own message. (The
/// test body around it is bounded by [`with_timeout`].)
#[allow(dead_code)]
pub fn join<T>(thread: thread::JoinHandle<T>) -> T {
    thread
        .join()
        .unwrap_or_else(|payload| panic::resume_unwind(payload))
}

// ---------------------------------------------------------------------------
// Panics caused on purpose

/// The text of a panic payload.
#[allow(dead_code)]
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
#[allow(dead_code)]
pub const EXPECTED_PANIC: &str = "expected test panic";

/// Installs (once per test binary) a panic hook that stays quiet for panics
/// whose message contains [`EXPECTED_PANIC`] and prints every other one.
#[allow(dead_code)]
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

// ---------------------------------------------------------------------------
// A gate that holds a handler

/// How long a handler waits at a closed gate before it gives up.
#[allow(dead_code)]
pub const GATE_LIMIT: Duration = Duration::from_secs(60);

/// The handler's side of a gate: it waits there until the test opens it.
/// Make one with [`Gate::closed`].
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<AtomicBool>,
    reached: Arc<AtomicBool>,
}

/// The test's side of a gate: [`GateKeeper::open`] lets the handler through.
/// Dropping it opens the gate too, so a test that fails while a handler is
/// held unwinds (and shuts its pipeline down) instead of waiting on it.
#[allow(dead_code)]
#[derive(Debug)]
pub struct GateKeeper {
    open: Arc<AtomicBool>,
    reached: Arc<AtomicBool>,
}

#[allow(dead_code)]
impl Gate {
    /// A closed gate and the keeper that opens it.
    pub fn closed() -> (GateKeeper, Gate) {
        let open = Arc::new(AtomicBool::new(false));
        let reached = Arc::new(AtomicBool::new(false));
        let keeper = GateKeeper {
            open: Arc::clone(&open),
            reached: Arc::clone(&reached),
        };
        (keeper, Gate { open, reached })
    }

    /// Called by the held handler: marks the gate reached, then blocks until
    /// the test opens it; gives up with a panic after [`GATE_LIMIT`].
    pub fn wait(&self) {
        self.reached.store(true, Ordering::Release);
        wait_until(GATE_LIMIT, "the test opens the gate", || {
            self.open.load(Ordering::Acquire)
        });
    }
}

#[allow(dead_code)]
impl GateKeeper {
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// Whether the handler has arrived at the gate.
    pub fn is_reached(&self) -> bool {
        self.reached.load(Ordering::Acquire)
    }
}

impl Drop for GateKeeper {
    fn drop(&mut self) {
        self.open();
    }
}

// ---------------------------------------------------------------------------
// Seeded randomness

/// Marsaglia's xorshift64: small, fast, and the same sequence on every
/// platform for a given seed, so a failing test (or graph) can be rebuilt.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct XorShift(u64);

/// The golden-ratio constant: the state for a zero seed, and the multiplier
/// of [`XorShift::scrambled`].
#[allow(dead_code)]
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[allow(dead_code)]
impl XorShift {
    /// A generator whose state is `seed` (zero, a fixed point, is remapped).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { GOLDEN } else { seed })
    }

    /// A generator for a small seed (1, 2, 7, ...): the seed is spread over
    /// the state first, so neighbouring seeds start far apart.
    pub fn scrambled(seed: u64) -> Self {
        Self::new(seed.wrapping_mul(GOLDEN) | 1)
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

    /// Uniform in `low..=high` (the modulo bias is irrelevant here).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.next_u64() % denominator < numerator
    }

    /// One of `choices`, uniformly.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.range(0, choices.len() as u64 - 1) as usize]
    }
}

/// SplitMix64's finalizer: a bijective mix, so distinct inputs give distinct
/// outputs and sums of mixes make order-independent fingerprints.
#[allow(dead_code)]
pub fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

// ---------------------------------------------------------------------------
// Check failures

/// Collects the check failures of a handler: how many, and the first one.
#[allow(dead_code)]
#[derive(Debug, Clone, Default)]
pub struct Failures {
    pub count: u64,
    pub first: Option<String>,
}

#[allow(dead_code)]
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
