//! Contract 8: every bad configuration is a `BuildError` (never a panic or a
//! hang) whose message says what to change, alike for both producer kinds,
//! and a failed build leaves no handler running.
//!
//! What 0.1 reported at run time as `NoHandlers`, `EmptyStage` and
//! `OptionWithoutHandler` (no handler, an empty stage, an option that
//! configures nothing) no longer compiles; the builder's module docs carry
//! those cases as `compile_fail` doc tests. `PinFailed` (a core outside the
//! process's CPU mask) needs a narrowed mask: `tests/hardening.rs` covers it
//! in a child process. `ThreadSpawn` needs the OS to refuse a thread.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{panic_text, silence_expected_panics, with_timeout, EXPECTED_PANIC};
use tickring::{
    allowed_cores, available_cores, build_multi_producer, build_single_producer, BuildError,
    EventHandler, EventProducer, Yielding, MAX_RING_SIZE,
};

const LIMIT: Duration = Duration::from_secs(30);

fn ignore(_: &u64, _: i64, _: bool) {}

fn ignore_mut(_: &mut u64, _: i64, _: bool) {}

/// Runs `build`, expecting an error (not a panic, not a producer).
fn refused<P>(build: impl FnOnce() -> Result<P, BuildError>) -> BuildError {
    match catch_unwind(AssertUnwindSafe(build)) {
        Err(payload) => panic!(
            "build() panicked instead of returning a BuildError: {}",
            panic_text(payload.as_ref())
        ),
        Ok(Ok(_)) => panic!("build() accepted a bad configuration"),
        Ok(Err(error)) => error,
    }
}

/// Builds the `$configure`d pipeline of a ring of `$size` `u64`s with both
/// producer kinds; both must refuse it with the same error. Returns the
/// error and its message.
macro_rules! build_error {
    ($size:expr, |$builder:ident| $configure:expr) => {{
        let single = refused(|| {
            let $builder = build_single_producer($size, || 0u64, Yielding::new());
            $configure.build()
        });
        let multi = refused(|| {
            let $builder = build_multi_producer($size, || 0u64, Yielding::new());
            $configure.build()
        });
        assert_eq!(single, multi, "both producer kinds refuse alike");
        let message = single.to_string();
        (single, message)
    }};
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

#[test]
fn ring_size_zero() {
    with_timeout(LIMIT, "ring-size-zero", || {
        let (error, message) = build_error!(0, |b| b.handle_events_with(ignore));
        assert_eq!(error, BuildError::InvalidRingSize { size: 0 });
        assert_mentions(&message, &["ring size 0", "power of two"]);
    });
}

#[test]
fn ring_size_not_a_power_of_two_suggests_the_next_one() {
    with_timeout(LIMIT, "ring-size-power-of-two", || {
        for (size, suggestion) in [(3, "4"), (1000, "1024"), (65_537, "131072")] {
            let (error, message) = build_error!(size, |b| b.handle_events_with(ignore));
            assert_eq!(error, BuildError::InvalidRingSize { size });
            assert_mentions(
                &message,
                &[&format!("ring size {size}"), "power of two", suggestion],
            );
        }
    });
}

/// A valid size (a power of two, at most `MAX_RING_SIZE`) whose ring does
/// not fit in memory. (Sizes above `MAX_RING_SIZE` get a suggestion:
/// `tests/hardening.rs`.)
#[test]
fn ring_size_too_large_to_allocate() {
    with_timeout(LIMIT, "ring-size-too-large", || {
        for size in [1usize << 39, MAX_RING_SIZE] {
            let (error, message) = build_error!(size, |b| b.handle_events_with(ignore));
            assert_eq!(error, BuildError::InvalidRingSize { size });
            assert_mentions(&message, &["fits in memory"]);
        }
    });
}

#[test]
fn mutable_handler_with_a_sibling_either_order() {
    with_timeout(LIMIT, "mutable-with-sibling", || {
        let (error, message) = build_error!(8, |b| b
            .handle_events_mut(ignore_mut)
            .handle_events_with(ignore));
        assert_eq!(
            error,
            BuildError::MutableHandlerWithSibling {
                handler: "tickring-0-0".into(),
                stage: 0
            }
        );
        assert_mentions(
            &message,
            &[
                "tickring-0-0",
                "stage 0",
                "alone in its stage",
                "and_then()",
            ],
        );

        let (error, message) = build_error!(8, |b| b
            .handle_events_with(ignore)
            .handle_events_mut(ignore_mut));
        assert_eq!(
            error,
            BuildError::MutableHandlerWithSibling {
                handler: "tickring-0-1".into(),
                stage: 0
            }
        );
        assert_mentions(&message, &["tickring-0-1", "alone in its stage"]);

        let (error, message) = build_error!(8, |b| b
            .handle_events_with(ignore)
            .and_then()
            .handle_events_with(ignore)
            .thread_name("decode")
            .handle_events_mut(ignore_mut));
        assert_eq!(
            error,
            BuildError::MutableHandlerWithSibling {
                handler: "decode".into(),
                stage: 1
            }
        );
        assert_mentions(&message, &["decode", "stage 1"]);

        let (error, _) = build_error!(8, |b| b
            .handle_events_mut(ignore_mut)
            .handle_events_mut(ignore_mut));
        assert!(
            matches!(
                error,
                BuildError::MutableHandlerWithSibling { stage: 0, .. }
            ),
            "{error:?}"
        );
    });
}

#[test]
fn max_batch_size_zero() {
    with_timeout(LIMIT, "max-batch-size-zero", || {
        let (error, message) = build_error!(8, |b| b
            .thread_name("book")
            .max_batch_size(0)
            .handle_events_with(ignore));
        assert_eq!(
            error,
            BuildError::InvalidMaxBatchSize {
                handler: "book".into()
            }
        );
        assert_mentions(&message, &["max_batch_size(0)", "book", "at least 1"]);

        let (error, _) = build_error!(8, |b| b.max_batch_size(0).handle_events_with(ignore));
        assert_eq!(
            error,
            BuildError::InvalidMaxBatchSize {
                handler: "tickring-0-0".into()
            }
        );
    });
}

#[test]
fn duplicate_thread_names() {
    with_timeout(LIMIT, "duplicate-names", || {
        let (error, message) = build_error!(8, |b| b
            .thread_name("book")
            .handle_events_with(ignore)
            .and_then()
            .thread_name("book")
            .handle_events_with(ignore));
        assert_eq!(
            error,
            BuildError::DuplicateThreadName {
                name: "book".into()
            }
        );
        assert_mentions(&message, &["'book'", "distinct"]);

        // A chosen name that collides with another handler's default name.
        let (error, _) = build_error!(8, |b| b
            .handle_events_with(ignore)
            .thread_name("tickring-0-0")
            .handle_events_with(ignore));
        assert_eq!(
            error,
            BuildError::DuplicateThreadName {
                name: "tickring-0-0".into()
            }
        );
    });
}

/// A thread name the OS cannot take (an interior NUL) is a configuration
/// error like any other: `build()` returns it, not a panic, and leaves no
/// handler running (the one before it included).
#[test]
fn thread_name_with_a_nul_byte() {
    with_timeout(LIMIT, "nul-in-name", || {
        let starts = Arc::new(AtomicUsize::new(0));
        let shutdowns = Arc::new(AtomicUsize::new(0));
        let (error, message) = build_error!(8, |b| b
            .handle_events_with_handler(Witness {
                starts: Arc::clone(&starts),
                shutdowns: Arc::clone(&shutdowns),
            })
            .and_then()
            .thread_name("bad\0name")
            .handle_events_with(ignore));
        assert_eq!(
            error,
            BuildError::InvalidThreadName {
                name: "bad\0name".into()
            }
        );
        assert_mentions(&message, &["name", "NUL"]);
        assert_eq!(
            starts.load(Ordering::Acquire),
            shutdowns.load(Ordering::Acquire),
            "a handler started by the failed build is still running"
        );
    });
}

/// Counts `on_start`s, to show that a refused build starts no handler.
struct CountsStarts(Arc<AtomicUsize>);

impl EventHandler<u64> for CountsStarts {
    fn on_event(&mut self, _: &u64, _: i64, _: bool) {}
    fn on_start(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A core the machine does not have, for a handler, every worker of a pool
/// (the first one is named) and a mutable stage; nothing starts.
#[test]
fn pin_to_a_core_that_does_not_exist() {
    with_timeout(LIMIT, "core-not-found", || {
        let cores = available_cores();
        let missing = cores.last().map_or(0, |last| last + 1);
        for core in [missing, 100_000, 1 << 20, usize::MAX] {
            let expected = |handler: &str| BuildError::CoreNotFound {
                handler: handler.into(),
                core,
                available: cores.clone(),
            };
            let starts = Arc::new(AtomicUsize::new(0));
            let (error, message) = build_error!(8, |b| b
                .handle_events_with_handler(CountsStarts(Arc::clone(&starts)))
                .thread_name("book")
                .pin_at_core(core)
                .handle_events_with(ignore));
            assert_eq!(error, expected("book"));
            assert_mentions(
                &message,
                &[
                    "book",
                    &format!("core {core}"),
                    &format!("{cores:?}"),
                    "does not have",
                    "pin_at_core",
                ],
            );
            assert_eq!(
                starts.load(Ordering::Relaxed),
                0,
                "a refused build starts no handler"
            );
            // Options before a pool configure every worker.
            let (error, _) = build_error!(8, |b| b
                .handle_events_with(ignore)
                .pin_at_core(core)
                .handle_events_with_workers([ignore, ignore]));
            assert_eq!(error, expected("tickring-0-1"));
            let (error, _) = build_error!(8, |b| b
                .handle_events_with(ignore)
                .and_then()
                .pin_at_core(core)
                .handle_events_mut(ignore_mut));
            assert_eq!(error, expected("tickring-1-0"));
        }
    });
}

/// The contrast: a core the process may use is accepted, and the handler runs.
#[test]
fn pin_to_an_allowed_core_builds() {
    let Some(&core) = allowed_cores().first() else {
        return; // The platform lists no cores: nothing to pin to.
    };
    with_timeout(LIMIT, "pin", move || {
        let mut producer = build_single_producer(8, || 0u64, Yielding::new())
            .pin_at_core(core)
            .handle_events_with(ignore)
            .build()
            .expect("an allowed core is accepted");
        producer.publish(|event| *event = 1).expect("publish");
        assert_eq!(producer.shutdown().handlers[0].events_handled, 1);
    });
}

#[test]
fn empty_worker_pool() {
    with_timeout(LIMIT, "empty-pool", || {
        let (error, message) = build_error!(8, |b| b
            .handle_events_with_workers(Vec::<fn(&u64, i64, bool)>::new()));
        assert_eq!(error, BuildError::EmptyWorkerPool { stage: 0 });
        assert_mentions(&message, &["stage 0", "at least one"]);
    });
}

/// `pin_at_core` and `wait_timeout` need a thread; a poller has none.
#[test]
fn thread_options_before_a_poller() {
    with_timeout(LIMIT, "poller-options", || {
        let (error, message) = build_error!(8, |b| {
            let (_tail, builder) = b.thread_name("tail").pin_at_core(0).event_poller();
            builder
        });
        assert_eq!(
            error,
            BuildError::OptionNotForPoller {
                option: "pin_at_core",
                poller: "tail".into(),
            }
        );
        assert_mentions(&message, &["pin_at_core()", "'tail'"]);

        let (error, message) = build_error!(8, |b| {
            let (_tail, builder) = b
                .handle_events_with(ignore)
                .and_then()
                .thread_name("tail")
                .wait_timeout(Duration::from_millis(1))
                .event_poller();
            builder
        });
        assert_eq!(
            error,
            BuildError::OptionNotForPoller {
                option: "wait_timeout",
                poller: "tail".into(),
            }
        );
        assert_mentions(&message, &["wait_timeout()", "'tail'"]);
    });
}

/// Panics while being created or started, for `HandlerStartPanicked`.
struct FailsToStart;

impl EventHandler<u64> for FailsToStart {
    fn on_event(&mut self, _: &u64, _: i64, _: bool) {}
    fn on_start(&mut self) {
        panic!("{EXPECTED_PANIC}: cannot reach the exchange");
    }
}

/// A handler that panics in `on_start`, or whose factory panics, fails the
/// build with the handler's name and the panic's message.
#[test]
fn a_panic_while_starting_fails_the_build() {
    silence_expected_panics();
    with_timeout(LIMIT, "start-panic", || {
        let (error, message) = build_error!(8, |b| b
            .handle_events_with(ignore)
            .and_then()
            .thread_name("gateway")
            .handle_events_with_handler(FailsToStart));
        assert_eq!(
            error,
            BuildError::HandlerStartPanicked {
                handler: "gateway".into(),
                message: format!("{EXPECTED_PANIC}: cannot reach the exchange"),
            }
        );
        assert_mentions(
            &message,
            &["gateway", "cannot reach the exchange", "on_start"],
        );

        let (error, message) = build_error!(8, |b| b
            .handle_events_with(ignore)
            .handle_events_with_factory(|| -> fn(&u64, i64, bool) {
                panic!("{EXPECTED_PANIC}: no market data licence")
            }));
        assert_eq!(
            error,
            BuildError::HandlerStartPanicked {
                handler: "tickring-0-1".into(),
                message: format!("{EXPECTED_PANIC}: no market data licence"),
            }
        );
        assert_mentions(&message, &["no market data licence", "factory"]);
    });
}

/// Counts the hooks of a handler that should never have started, or that
/// must be stopped by a failed build.
struct Witness {
    starts: Arc<AtomicUsize>,
    shutdowns: Arc<AtomicUsize>,
}

impl EventHandler<u64> for Witness {
    fn on_event(&mut self, _: &u64, _: i64, _: bool) {}
    fn on_start(&mut self) {
        self.starts.fetch_add(1, Ordering::AcqRel);
    }
    fn on_shutdown(&mut self) {
        self.shutdowns.fetch_add(1, Ordering::AcqRel);
    }
}

/// A configuration refused by validation starts nothing: no factory runs,
/// no `on_start`.
#[test]
fn an_invalid_configuration_starts_no_handler() {
    with_timeout(LIMIT, "refused-starts-nothing", || {
        let made = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicUsize::new(0));
        let shutdowns = Arc::new(AtomicUsize::new(0));
        let witness_made = Arc::clone(&made);
        let witness = Witness {
            starts: Arc::clone(&starts),
            shutdowns: Arc::clone(&shutdowns),
        };
        let error = build_single_producer(8, || 0u64, Yielding::new())
            .handle_events_with_factory(move || {
                witness_made.store(true, Ordering::Release);
                ignore
            })
            .handle_events_with_handler(witness)
            .and_then()
            .max_batch_size(0)
            .handle_events_with(ignore)
            .build()
            .expect_err("max_batch_size(0) is refused");
        assert!(
            matches!(error, BuildError::InvalidMaxBatchSize { .. }),
            "{error:?}"
        );
        assert!(
            !made.load(Ordering::Acquire),
            "a factory ran for a refused build"
        );
        assert_eq!(
            starts.load(Ordering::Acquire),
            0,
            "on_start ran for a refused build"
        );
        assert_eq!(shutdowns.load(Ordering::Acquire), 0);
    });
}

/// A build that fails after some handlers started (here one panics in
/// `on_start`) stops those handlers before returning: their `on_shutdown`
/// has run and they are dropped, so no thread is left behind.
#[test]
fn a_failed_build_stops_the_handlers_it_started() {
    silence_expected_panics();
    with_timeout(LIMIT, "failed-build-cleanup", || {
        let starts = Arc::new(AtomicUsize::new(0));
        let shutdowns = Arc::new(AtomicUsize::new(0));
        let handler_alive = Arc::new(());
        let held_by_handler = Arc::clone(&handler_alive);
        let witness = Witness {
            starts: Arc::clone(&starts),
            shutdowns: Arc::clone(&shutdowns),
        };
        let error = build_single_producer(8, || 0u64, Yielding::new())
            .handle_events_with_handler(witness)
            .handle_events_with(move |_: &u64, _, _| {
                let _ = &held_by_handler;
            })
            .and_then()
            .handle_events_with_handler(FailsToStart)
            .build()
            .expect_err("on_start panicked");
        assert!(
            matches!(error, BuildError::HandlerStartPanicked { .. }),
            "{error:?}"
        );
        assert_eq!(starts.load(Ordering::Acquire), 1);
        assert_eq!(
            shutdowns.load(Ordering::Acquire),
            1,
            "the started handler was stopped"
        );
        assert_eq!(
            Arc::strong_count(&handler_alive),
            1,
            "the started handlers were dropped"
        );
    });
}
