//! Contract 8: every bad configuration is a `BuildError` (never a panic or a
//! hang) whose message says what to change, and a failed build leaves no
//! handler running.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{silence_expected_panics, with_timeout, EXPECTED_PANIC};
use tickring::{
    available_cores, build_single_producer, BuildError, Builder, EventHandler, Yielding,
};

const LIMIT: Duration = Duration::from_secs(30);

fn pipeline(size: usize) -> Builder<u64, Yielding> {
    build_single_producer(size, || 0u64, Yielding::new())
}

fn ignore(_: &u64, _: i64, _: bool) {}

fn ignore_mut(_: &mut u64, _: i64, _: bool) {}

/// Builds, expecting an error (not a panic); returns it and its message.
fn build_error(builder: Builder<u64, Yielding>) -> (BuildError, String) {
    let outcome = catch_unwind(AssertUnwindSafe(|| builder.build()));
    match outcome {
        Err(payload) => panic!(
            "build() panicked instead of returning a BuildError: {}",
            common::panic_text(payload.as_ref())
        ),
        Ok(Ok(_)) => panic!("build() accepted a bad configuration"),
        Ok(Err(error)) => {
            let message = error.to_string();
            (error, message)
        }
    }
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
    let (error, message) = build_error(pipeline(0).handle_events_with(ignore));
    assert_eq!(error, BuildError::InvalidRingSize { size: 0 });
    assert_mentions(&message, &["ring size 0", "power of two"]);
}

#[test]
fn ring_size_not_a_power_of_two_suggests_the_next_one() {
    for (size, suggestion) in [(3, "4"), (1000, "1024"), (65_537, "131072")] {
        let (error, message) = build_error(pipeline(size).handle_events_with(ignore));
        assert_eq!(error, BuildError::InvalidRingSize { size });
        assert_mentions(
            &message,
            &[&format!("ring size {size}"), "power of two", suggestion],
        );
    }
}

#[test]
fn ring_size_too_large_to_allocate() {
    let size = 1usize << 50;
    let (error, message) = build_error(pipeline(size).handle_events_with(ignore));
    assert_eq!(error, BuildError::InvalidRingSize { size });
    assert_mentions(&message, &["fits in memory"]);
}

#[test]
fn no_handlers() {
    let (error, message) = build_error(pipeline(8));
    assert_eq!(error, BuildError::NoHandlers);
    assert_mentions(&message, &["no handler", "handle_events_with"]);
}

#[test]
fn empty_stage_after_and_then() {
    let (error, message) = build_error(pipeline(8).handle_events_with(ignore).and_then());
    assert_eq!(error, BuildError::EmptyStage { stage: 1 });
    assert_mentions(&message, &["stage 1", "and_then()"]);

    let middle = pipeline(8)
        .handle_events_with(ignore)
        .and_then()
        .and_then()
        .handle_events_with(ignore);
    assert_eq!(build_error(middle).0, BuildError::EmptyStage { stage: 1 });

    let leading = pipeline(8).and_then().handle_events_with(ignore);
    assert_eq!(build_error(leading).0, BuildError::EmptyStage { stage: 0 });
}

#[test]
fn mutable_handler_with_a_sibling_either_order() {
    let mutable_first = pipeline(8)
        .handle_events_mut(ignore_mut)
        .handle_events_with(ignore);
    let (error, message) = build_error(mutable_first);
    assert_eq!(
        error,
        BuildError::MutableHandlerWithSibling {
            handler: "tickring-0-0".into(),
            stage: 0
        }
    );
    assert_mentions(
        &message,
        &["tickring-0-0", "stage 0", "alone", "and_then()"],
    );

    let mutable_second = pipeline(8)
        .handle_events_with(ignore)
        .and_then()
        .handle_events_with(ignore)
        .handle_events_mut(ignore_mut)
        .thread_name("decode");
    let (error, message) = build_error(mutable_second);
    assert_eq!(
        error,
        BuildError::MutableHandlerWithSibling {
            handler: "decode".into(),
            stage: 1
        }
    );
    assert_mentions(&message, &["decode", "stage 1"]);

    let two_mutable = pipeline(8)
        .handle_events_mut(ignore_mut)
        .handle_events_mut(ignore_mut);
    assert!(matches!(
        build_error(two_mutable).0,
        BuildError::MutableHandlerWithSibling { stage: 0, .. }
    ));
}

#[test]
fn option_before_any_handler() {
    let cases: [(&str, Builder<u64, Yielding>); 4] = [
        ("thread_name", pipeline(8).thread_name("early")),
        ("pin_at_core", pipeline(8).pin_at_core(0)),
        ("max_batch_size", pipeline(8).max_batch_size(4)),
        (
            "wait_timeout",
            pipeline(8).wait_timeout(Duration::from_millis(1)),
        ),
    ];
    for (option, builder) in cases {
        let (error, message) = build_error(builder.handle_events_with(ignore));
        assert_eq!(error, BuildError::OptionWithoutHandler { option });
        assert_mentions(&message, &[&format!("{option}()"), "before any handler"]);
    }
    // Right after and_then() the option would apply to no handler either.
    let after_and_then = pipeline(8)
        .handle_events_with(ignore)
        .and_then()
        .thread_name("early")
        .handle_events_with(ignore);
    assert_eq!(
        build_error(after_and_then).0,
        BuildError::OptionWithoutHandler {
            option: "thread_name"
        }
    );
}

#[test]
fn max_batch_size_zero() {
    let (error, message) = build_error(
        pipeline(8)
            .handle_events_with(ignore)
            .thread_name("book")
            .max_batch_size(0),
    );
    assert_eq!(
        error,
        BuildError::InvalidMaxBatchSize {
            handler: "book".into()
        }
    );
    assert_mentions(&message, &["max_batch_size(0)", "book", "at least 1"]);
}

#[test]
fn duplicate_thread_names() {
    let (error, message) = build_error(
        pipeline(8)
            .handle_events_with(ignore)
            .thread_name("book")
            .and_then()
            .handle_events_with(ignore)
            .thread_name("book"),
    );
    assert_eq!(
        error,
        BuildError::DuplicateThreadName {
            name: "book".into()
        }
    );
    assert_mentions(&message, &["'book'", "distinct"]);

    // A chosen name that collides with another handler's default name.
    let (error, _) = build_error(
        pipeline(8)
            .handle_events_with(ignore)
            .handle_events_with(ignore)
            .thread_name("tickring-0-0"),
    );
    assert_eq!(
        error,
        BuildError::DuplicateThreadName {
            name: "tickring-0-0".into()
        }
    );
}

#[test]
fn pin_to_a_core_that_does_not_exist() {
    let cores = available_cores();
    for core in [100_000, usize::MAX] {
        let (error, message) = build_error(
            pipeline(8)
                .handle_events_with(ignore)
                .thread_name("book")
                .pin_at_core(core),
        );
        assert_eq!(
            error,
            BuildError::CoreNotFound {
                handler: "book".into(),
                core,
                available: cores.clone(),
            }
        );
        assert_mentions(
            &message,
            &["book", &format!("core {core}"), &format!("{cores:?}")],
        );
    }
}

/// The contrast: a core that exists is accepted, and the handler runs.
#[test]
fn pin_to_an_existing_core_builds() {
    let cores = available_cores();
    let Some(&core) = cores.first() else {
        return; // The platform lists no cores: nothing to pin to.
    };
    with_timeout(LIMIT, "pin", move || {
        let mut producer = pipeline(8)
            .handle_events_with(ignore)
            .pin_at_core(core)
            .build()
            .expect("a listed core is accepted");
        producer.publish(|event| *event = 1).expect("publish");
        assert_eq!(producer.shutdown().handlers[0].events_handled, 1);
    });
}

/// A thread name the OS cannot take (an interior NUL) is a configuration
/// error like any other: `build()` must return it, not panic.
#[test]
fn thread_name_with_a_nul_byte() {
    let (_, message) = build_error(
        pipeline(8)
            .handle_events_with(ignore)
            .and_then()
            .handle_events_with(ignore)
            .thread_name("bad\0name"),
    );
    assert_mentions(&message, &["name"]);
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
    let made = Arc::new(AtomicBool::new(false));
    let starts = Arc::new(AtomicUsize::new(0));
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let witness_made = Arc::clone(&made);
    let witness = Witness {
        starts: Arc::clone(&starts),
        shutdowns: Arc::clone(&shutdowns),
    };
    let builder = pipeline(8)
        .handle_events_with_factory(move || {
            witness_made.store(true, Ordering::Release);
            ignore
        })
        .handle_events_with_handler(witness)
        .and_then()
        .handle_events_with(ignore)
        .max_batch_size(0);
    build_error(builder);
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
}

/// A build that fails after some handlers started (here one panics in
/// `on_start`) stops those handlers before returning: their `on_shutdown`
/// has run and they are dropped, so no thread is left behind.
#[test]
fn a_failed_build_stops_the_handlers_it_started() {
    struct PanicsOnStart;
    impl EventHandler<u64> for PanicsOnStart {
        fn on_event(&mut self, _: &u64, _: i64, _: bool) {}
        fn on_start(&mut self) {
            panic!("{EXPECTED_PANIC}: no connection");
        }
    }
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
        let error = pipeline(8)
            .handle_events_with_handler(witness)
            .handle_events_with(move |_: &u64, _, _| {
                let _ = &held_by_handler;
            })
            .and_then()
            .handle_events_with_handler(PanicsOnStart)
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

/// Same, when the failure is a thread name the OS refuses: the handler
/// started before it must not be left running.
#[test]
fn a_bad_thread_name_stops_the_handlers_already_started() {
    with_timeout(LIMIT, "bad-name-cleanup", || {
        let starts = Arc::new(AtomicUsize::new(0));
        let shutdowns = Arc::new(AtomicUsize::new(0));
        let witness = Witness {
            starts: Arc::clone(&starts),
            shutdowns: Arc::clone(&shutdowns),
        };
        let builder = pipeline(8)
            .handle_events_with_handler(witness)
            .and_then()
            .handle_events_with(ignore)
            .thread_name("bad\0name");
        let _ = catch_unwind(AssertUnwindSafe(|| builder.build()));
        // A handler left running may not have reached on_start yet: give it
        // a moment (without failing if it never starts: then none was left).
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while starts.load(Ordering::Acquire) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            starts.load(Ordering::Acquire),
            shutdowns.load(Ordering::Acquire),
            "a handler started by the failed build is still running"
        );
    });
}
