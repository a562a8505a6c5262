//! Contract 7: a panicking handler never hangs the producer. Under
//! `PanicPolicy::Halt` (the default) the producer gets `Halted` and
//! `shutdown()` names the handler, the sequence and the message; under
//! `LogAndSkip` exactly the panicking events are skipped. A panic while
//! starting fails `build()`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{
    assert_saw_all, collect_seen, silence_expected_panics, with_timeout, Recorder, Tick,
    EXPECTED_PANIC,
};
use tickring::{
    build_single_producer, Blocking, BuildError, BusySpin, EventHandler, HandlerPanic, PanicPolicy,
    Producer, PublishError, TryPublishError, WaitStrategy, Yielding,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Publishes events `0..` until `publish` fails (it must, within `LIMIT`:
/// the test runs under `with_timeout`); returns the error and how many
/// events were published.
fn publish_until_error<W: WaitStrategy>(producer: &mut Producer<Tick, W>) -> (PublishError, i64) {
    let mut published = 0;
    loop {
        match producer.publish(|tick| tick.fill(published)) {
            Ok(sequence) => {
                assert_eq!(sequence, published);
                published += 1;
            }
            Err(error) => return (error, published),
        }
    }
}

/// After a halt, `Halted` sticks: `publish`, `batch_publish` and
/// `try_publish` all refuse, call no closure, and publish nothing.
fn assert_halt_sticks<W: WaitStrategy>(producer: &mut Producer<Tick, W>) {
    let last = producer.last_published();
    for _ in 0..3 {
        assert_eq!(
            producer.publish(|_| unreachable!("closure called after halt")),
            Err(PublishError::Halted)
        );
        assert_eq!(
            producer.batch_publish(1, |_, _| unreachable!("closure called after halt")),
            Err(PublishError::Halted)
        );
        assert_eq!(
            producer.try_publish(|_| unreachable!("closure called after halt")),
            Err(TryPublishError::Halted)
        );
    }
    assert_eq!(
        producer.last_published(),
        last,
        "nothing published after halt"
    );
}

/// Panics (on purpose) at `panic_at`; handles every other event normally.
fn panics_at(panic_at: i64) -> impl FnMut(&Tick, i64, bool) + Send {
    move |tick: &Tick, sequence, _| {
        assert!(
            tick.is_event(sequence),
            "event {sequence} corrupt: {tick:?}"
        );
        if sequence == panic_at {
            panic!("{EXPECTED_PANIC}: bad price at {sequence}");
        }
    }
}

fn halt_in_first_stage<W: WaitStrategy>(wait: W, strategy: &str, with_sibling: bool) {
    silence_expected_panics();
    with_timeout(LIMIT, &format!("halt-first-{strategy}"), move || {
        let (report_to, reports) = mpsc::channel();
        let mut builder = build_single_producer(8, Tick::default, wait)
            .handle_events_with(panics_at(100))
            .thread_name("pricer");
        if with_sibling {
            builder = builder.handle_events_with_handler(Recorder::new(
                "sibling",
                vec![],
                report_to.clone(),
            ));
        }
        drop(report_to);
        let mut producer = builder.build().expect("build");
        let (error, first_refused) = publish_until_error(&mut producer);
        assert_eq!(error, PublishError::Halted);
        assert!(
            first_refused >= 101,
            "refused at {first_refused}: pricer saw 100"
        );
        // The pricer finished at most 0..=99 and died holding 100: the
        // producer never wrote into the 8 slots after its last finished event.
        let published = first_refused;
        assert!((101..=108).contains(&published), "published {published}");
        assert_eq!(producer.last_published(), published - 1);
        assert_halt_sticks(&mut producer);

        let report = producer.shutdown();
        let pricer = report.handler("pricer").expect("pricer reported");
        let expected_panic = HandlerPanic {
            handler: "pricer".into(),
            sequence: Some(100),
            message: format!("{EXPECTED_PANIC}: bad price at 100"),
        };
        assert_eq!(pricer.panic.as_ref(), Some(&expected_panic));
        assert_eq!(
            pricer.events_handled, 100,
            "events before the panic were handled"
        );
        assert_eq!(report.first_panic(), Some(&expected_panic));
        let shown = expected_panic.to_string();
        assert!(shown.contains("pricer") && shown.contains("100"), "{shown}");
        if with_sibling {
            let sibling = report.handler("tickring-0-1").expect("sibling reported");
            assert_eq!(sibling.panic, None);
            assert!(sibling.events_handled <= published as u64);
            // It stopped early, but what it handled was every event, in order.
            let seen = collect_seen(&reports, 1).pop().expect("sibling");
            assert_saw_all(&seen, sibling.events_handled as i64);
        }
    });
}

#[test]
fn halt_in_first_stage_yielding() {
    halt_in_first_stage(Yielding::new(), "yielding", true);
}

#[test]
fn halt_in_first_stage_blocking() {
    halt_in_first_stage(Blocking::new(), "blocking", true);
}

#[test]
fn halt_in_first_stage_busy_spin() {
    halt_in_first_stage(BusySpin, "busy-spin", false);
}

/// A panic in a later stage: the stage before it ran ahead, the producer,
/// gated on the halted stage, gets `Halted`.
fn halt_in_downstream_stage<W: WaitStrategy>(wait: W, strategy: &str) {
    silence_expected_panics();
    with_timeout(LIMIT, &format!("halt-downstream-{strategy}"), move || {
        let mut producer = build_single_producer(16, Tick::default, wait)
            .handle_events_with(|_: &Tick, _, _| {})
            .thread_name("decode")
            .and_then()
            .handle_events_with(|_: &Tick, _, _| {})
            .thread_name("book")
            .handle_events_with(panics_at(1_000))
            .thread_name("risk")
            .and_then()
            .handle_events_with(|_: &Tick, _, _| {})
            .thread_name("strategy")
            .build()
            .expect("build");
        let (error, published) = publish_until_error(&mut producer);
        assert_eq!(error, PublishError::Halted);
        assert!(
            (1_001..=1_016).contains(&published),
            "published {published}"
        );
        // Never into the 16 slots after risk's last finished event.
        assert!(
            (1_001..=1_016).contains(&published),
            "published {published}"
        );
        assert_halt_sticks(&mut producer);

        let report = producer.shutdown();
        let risk = report.handler("risk").expect("risk reported");
        assert_eq!(risk.events_handled, 1_000);
        assert_eq!(
            risk.panic,
            Some(HandlerPanic {
                handler: "risk".into(),
                sequence: Some(1_000),
                message: format!("{EXPECTED_PANIC}: bad price at 1000"),
            })
        );
        assert_eq!(
            report.first_panic().map(|p| p.handler.as_str()),
            Some("risk")
        );
        let decode = report.handler("decode").expect("decode reported");
        assert!(
            decode.events_handled >= 1_001,
            "risk saw 1000, so decode passed it"
        );
        assert!(decode.events_handled <= published as u64);
        let strategy = report.handler("strategy").expect("strategy reported");
        assert!(
            strategy.events_handled <= 1_000,
            "strategy is gated on risk"
        );
        for handler in ["decode", "book", "strategy"] {
            assert_eq!(report.handler(handler).unwrap().panic, None, "{handler}");
        }
    });
}

#[test]
fn halt_in_downstream_stage_yielding() {
    halt_in_downstream_stage(Yielding::new(), "yielding");
}

#[test]
fn halt_in_downstream_stage_blocking() {
    halt_in_downstream_stage(Blocking::new(), "blocking");
}

/// Once the handler has halted the pipeline, `try_publish` says `Halted`
/// (not `Full`), room or not, without calling the closure.
#[test]
fn try_publish_reports_halted_after_a_halt() {
    silence_expected_panics();
    with_timeout(LIMIT, "try-publish-halted", || {
        let mut producer = build_single_producer(4, Tick::default, Yielding::new())
            .handle_events_with(panics_at(0))
            .build()
            .expect("build");
        // The handler never finishes event 0, so at most 4 events fit. Until
        // it has halted the pipeline, a full ring is only `Full`.
        let deadline = Instant::now() + common::scaled(LIMIT);
        let mut accepted = 0;
        loop {
            let mut called = false;
            match producer.try_publish(|tick| {
                called = true;
                tick.fill(accepted);
            }) {
                Ok(sequence) => {
                    assert_eq!(sequence, accepted);
                    accepted += 1;
                }
                Err(TryPublishError::Full) => {
                    assert!(!called, "the closure ran for a refused publish");
                    assert!(Instant::now() < deadline, "never reported Halted");
                    std::thread::yield_now();
                }
                Err(TryPublishError::Halted) => {
                    assert!(!called, "the closure ran for a refused publish");
                    break;
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            (1..=4).contains(&accepted),
            "accepted {accepted} of 4 slots"
        );
        assert_eq!(producer.last_published(), accepted - 1);
        assert_eq!(
            producer.try_publish(|_| unreachable!()),
            Err(TryPublishError::Halted)
        );
        assert_eq!(
            producer.try_batch_publish(1, |_, _| unreachable!()),
            Err(TryPublishError::Halted)
        );
        assert_eq!(
            producer.publish(|_| unreachable!()),
            Err(PublishError::Halted)
        );
        assert_eq!(
            producer.last_published(),
            3,
            "nothing published after the halt"
        );
        let report = producer.shutdown();
        assert_eq!(report.handlers[0].events_handled, 0);
        assert_eq!(
            report.handlers[0].panic.as_ref().and_then(|p| p.sequence),
            Some(0)
        );
    });
}

/// Panics on every odd event; counts what it handled.
struct OddPanicker {
    handled: Arc<AtomicU64>,
    sum: Arc<AtomicU64>,
    next_even: i64,
}

impl EventHandler<Tick> for OddPanicker {
    fn on_event(&mut self, tick: &Tick, sequence: i64, _: bool) {
        if sequence % 2 == 1 {
            panic!("{EXPECTED_PANIC}: odd {sequence}");
        }
        assert_eq!(sequence, self.next_even, "even events in order");
        assert!(tick.is_event(sequence));
        self.next_even += 2;
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(tick.price, Ordering::Relaxed);
    }
}

#[test]
fn log_and_skip_skips_exactly_the_panicking_events() {
    const EVENTS: i64 = 2_000;
    silence_expected_panics();
    with_timeout(LIMIT, "log-and-skip", || {
        let (report_to, reports) = mpsc::channel();
        let handled = Arc::new(AtomicU64::new(0));
        let sum = Arc::new(AtomicU64::new(0));
        let mut producer = build_single_producer(16, Tick::default, Yielding::new())
            .handle_events_with_handler(OddPanicker {
                handled: Arc::clone(&handled),
                sum: Arc::clone(&sum),
                next_even: 0,
            })
            .thread_name("odd")
            .handle_events_with_handler(Recorder::new("sibling", vec![], report_to.clone()))
            .thread_name("sibling")
            .and_then()
            .handle_events_with_handler(Recorder::new("behind", vec![], report_to))
            .thread_name("behind")
            .on_handler_panic(PanicPolicy::LogAndSkip)
            .build()
            .expect("build");
        common::publish_ticks(&mut producer, EVENTS);
        let report = producer.shutdown();

        let odd = report.handler("odd").expect("odd reported");
        assert_eq!(odd.events_handled, EVENTS as u64 / 2);
        assert_eq!(odd.events_skipped, EVENTS as u64 / 2);
        assert_eq!(
            odd.panic,
            Some(HandlerPanic {
                handler: "odd".into(),
                sequence: Some(1),
                message: format!("{EXPECTED_PANIC}: odd 1"),
            }),
            "the first skipped event is reported"
        );
        assert_eq!(handled.load(Ordering::Relaxed), EVENTS as u64 / 2);
        let even_sum: u64 = (0..EVENTS).step_by(2).map(Tick::price_at).sum();
        assert_eq!(sum.load(Ordering::Relaxed), even_sum);
        for name in ["sibling", "behind"] {
            let handler = report.handler(name).expect("reported");
            assert_eq!(
                (handler.events_handled, handler.events_skipped),
                (EVENTS as u64, 0)
            );
            assert_eq!(handler.panic, None);
        }
        for seen in collect_seen(&reports, 2) {
            assert_saw_all(&seen, EVENTS);
        }
    });
}

struct PanicsOnStart;

impl EventHandler<Tick> for PanicsOnStart {
    fn on_event(&mut self, _: &Tick, _: i64, _: bool) {}
    fn on_start(&mut self) {
        panic!("{EXPECTED_PANIC}: cannot reach the exchange");
    }
}

#[test]
fn panic_in_on_start_fails_the_build() {
    silence_expected_panics();
    with_timeout(LIMIT, "on-start-panic", || {
        let error = build_single_producer(8, Tick::default, Yielding::new())
            .handle_events_with(|_: &Tick, _, _| {})
            .and_then()
            .handle_events_with_handler(PanicsOnStart)
            .thread_name("gateway")
            .build()
            .expect_err("a handler that cannot start fails the build");
        assert_eq!(
            error,
            BuildError::HandlerStartPanicked {
                handler: "gateway".into(),
                message: format!("{EXPECTED_PANIC}: cannot reach the exchange"),
            }
        );
        let message = error.to_string();
        assert!(
            message.contains("gateway") && message.contains("cannot reach the exchange"),
            "{message}"
        );
    });
}

#[test]
fn panic_in_a_handler_factory_fails_the_build() {
    silence_expected_panics();
    with_timeout(LIMIT, "factory-panic", || {
        let error = build_single_producer(8, Tick::default, Blocking::new())
            .handle_events_with_factory(|| -> fn(&Tick, i64, bool) {
                panic!("{EXPECTED_PANIC}: no config file")
            })
            .build()
            .expect_err("a handler that cannot be made fails the build");
        assert_eq!(
            error,
            BuildError::HandlerStartPanicked {
                handler: "tickring-0-0".into(),
                message: format!("{EXPECTED_PANIC}: no config file"),
            }
        );
    });
}

/// A panic in `on_shutdown` is reported (outside any event) and does not
/// stop the shutdown or undo the count.
#[test]
fn panic_in_on_shutdown_is_reported() {
    struct PanicsOnShutdown;
    impl EventHandler<Tick> for PanicsOnShutdown {
        fn on_event(&mut self, _: &Tick, _: i64, _: bool) {}
        fn on_shutdown(&mut self) {
            panic!("{EXPECTED_PANIC}: flush failed");
        }
    }
    silence_expected_panics();
    with_timeout(LIMIT, "on-shutdown-panic", || {
        let mut producer = build_single_producer(8, Tick::default, Yielding::new())
            .handle_events_with_handler(PanicsOnShutdown)
            .thread_name("journal")
            .build()
            .expect("build");
        common::publish_ticks(&mut producer, 100);
        let report = producer.shutdown();
        assert_eq!(report.handlers[0].events_handled, 100);
        assert_eq!(
            report.handlers[0].panic,
            Some(HandlerPanic {
                handler: "journal".into(),
                sequence: None,
                message: format!("{EXPECTED_PANIC}: flush failed"),
            })
        );
    });
}

/// A panic in `on_timeout` under `Halt` halts the pipeline like any other.
#[test]
fn panic_in_on_timeout_halts() {
    struct PanicsOnTimeout(Arc<AtomicU64>);
    impl EventHandler<Tick> for PanicsOnTimeout {
        fn on_event(&mut self, _: &Tick, _: i64, _: bool) {}
        fn on_timeout(&mut self, _: i64) {
            self.0.fetch_add(1, Ordering::AcqRel);
            panic!("{EXPECTED_PANIC}: heartbeat missed");
        }
    }
    silence_expected_panics();
    with_timeout(LIMIT, "on-timeout-panic", || {
        let timeouts = Arc::new(AtomicU64::new(0));
        let mut producer = build_single_producer(4, Tick::default, Blocking::new())
            .handle_events_with_handler(PanicsOnTimeout(Arc::clone(&timeouts)))
            .wait_timeout(Duration::from_millis(1))
            .build()
            .expect("build");
        common::wait_until(LIMIT, "the idle handler times out", || {
            timeouts.load(Ordering::Acquire) > 0
        });
        // Halted before any event: the first publish already fails.
        let (error, published) = publish_until_error(&mut producer);
        assert_eq!(error, PublishError::Halted);
        assert_eq!(published, 0);
        let report = producer.shutdown();
        assert_eq!(report.handlers[0].events_handled, 0);
        let panic = report.handlers[0].panic.clone().expect("reported");
        assert_eq!(panic.sequence, None);
        assert!(panic.message.contains("heartbeat missed"), "{panic:?}");
        assert_eq!(
            timeouts.load(Ordering::Acquire),
            1,
            "halted after the first panic"
        );
    });
}
