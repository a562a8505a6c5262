//! Regression tests for the hardening pass: each input at its extremes, each
//! fault outside a handler's own call, and every drop order of the handles.
//! Each test failed (hung, panicked or lost events) before the fix it names.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{silence_expected_panics, wait_until, with_timeout, EXPECTED_PANIC};
use tickring::{
    allowed_cores, available_cores, build_multi_producer, build_single_producer,
    pin_current_thread, Blocking, BuildError, BusySpin, EventHandler, EventProducer, PinError,
    PollState, PublishError, PublishTimeoutError, Sleeping, TryPublishError, WaitStrategy,
    Yielding, MAX_RING_SIZE,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Counts events and checks they arrive in order, from 0.
fn counter(count: &Arc<AtomicI64>) -> impl FnMut(&i64, i64, bool) + Send + 'static {
    let count = Arc::clone(count);
    move |event: &i64, sequence, _| {
        assert_eq!(*event, sequence, "event content");
        assert_eq!(count.load(Ordering::Relaxed), sequence, "order");
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Polls `poller` on a thread of its own until it reports the end; returns
/// how many events it saw (in order, checked) and the final state.
fn poll_to_end<W: WaitStrategy>(
    mut poller: tickring::EventPoller<i64, W>,
) -> thread::JoinHandle<(i64, PollState)> {
    thread::spawn(move || {
        let mut seen = 0;
        loop {
            let state = poller.poll(|event, sequence, _| {
                assert_eq!((*event, sequence), (seen, seen));
                seen += 1;
                true
            });
            match state {
                PollState::ShutDown | PollState::Halted => return (seen, state),
                PollState::Processing => {}
                _ => thread::yield_now(),
            }
        }
    })
}

// Item 1: a dropped poller in the middle of a chain of pollers is drained in
// stage order at shutdown (it used to drain the last stage first and hang).
#[test]
fn dropped_pollers_drain_in_stage_order_single_and_multi() {
    for multi in [false, true] {
        with_timeout(LIMIT, "shutdown with dropped pollers", move || {
            let polling = if multi {
                let (a, builder) = build_multi_producer(8, || 0i64, Yielding::new()).event_poller();
                let (b, builder) = builder.and_then().event_poller();
                let (c, builder) = builder.and_then().event_poller();
                let mut producer = builder.build().expect("valid");
                let polling = poll_to_end(a);
                drop(c); // downstream first: the drain must still go upstream first
                drop(b);
                for value in 0..100 {
                    producer.publish(|event| *event = value).unwrap();
                }
                drop(producer);
                polling
            } else {
                let (a, builder) =
                    build_single_producer(8, || 0i64, Yielding::new()).event_poller();
                let (b, builder) = builder.and_then().event_poller();
                let (c, builder) = builder.and_then().event_poller();
                let mut producer = builder.build().expect("valid");
                let polling = poll_to_end(a);
                drop(c);
                drop(b);
                for value in 0..100 {
                    producer.publish(|event| *event = value).unwrap();
                }
                let _report = producer.shutdown();
                polling
            };
            assert_eq!(
                polling.join().expect("poller thread"),
                (100, PollState::ShutDown)
            );
        });
    }
}

// Item 2: any `max_batch_size` from 1 up works, for a first stage, a later
// stage and a poller; sequences never move backwards.
#[test]
fn max_batch_size_at_its_extremes() {
    for max_batch in [1, 2, usize::MAX, i64::MAX as usize, 1 << 63] {
        with_timeout(LIMIT, "max_batch_size extremes", move || {
            let first = Arc::new(AtomicI64::new(0));
            let second = Arc::new(AtomicI64::new(0));
            let (poller, builder) = build_single_producer(16, || 0i64, Yielding::new())
                .max_batch_size(max_batch)
                .handle_events_with(counter(&first))
                .and_then()
                .max_batch_size(max_batch)
                .handle_events_with(counter(&second))
                .and_then()
                .max_batch_size(max_batch)
                .event_poller();
            let mut producer = builder.build().expect("any batch bound from 1 is valid");
            let polling = poll_to_end(poller);
            for value in 0..1_000 {
                producer.publish(|event| *event = value).unwrap();
            }
            let report = producer.shutdown();
            assert!(report.first_panic().is_none(), "{report:?}");
            assert!(
                report.handlers.iter().all(|h| h.events_handled == 1_000),
                "{report:?}"
            );
            assert_eq!(first.load(Ordering::Relaxed), 1_000);
            assert_eq!(second.load(Ordering::Relaxed), 1_000);
            assert_eq!(polling.join().unwrap(), (1_000, PollState::ShutDown));
        });
    }
    let error = build_single_producer(16, || 0i64, Yielding::new())
        .max_batch_size(0)
        .handle_events_with(|_: &i64, _, _| {})
        .build()
        .expect_err("zero is refused");
    assert!(
        matches!(error, BuildError::InvalidMaxBatchSize { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("at least 1"), "{error}");
}

// Item 3: `wait_timeout(Duration::MAX)` used to overflow an `Instant` on the
// handler's thread, killing it without halting the pipeline.
#[test]
fn wait_timeout_of_any_duration() {
    for timeout in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
        with_timeout(LIMIT, "wait_timeout extremes", move || {
            let count = Arc::new(AtomicI64::new(0));
            let mut producer = build_single_producer(8, || 0i64, Yielding::new())
                .wait_timeout(timeout)
                .handle_events_with(counter(&count))
                .and_then()
                .wait_timeout(timeout)
                .handle_events_with_workers((0..2).map(|_| |_: &i64, _: i64, _: bool| {}))
                .build()
                .expect("valid");
            for value in 0..500 {
                producer.publish(|event| *event = value).unwrap();
            }
            let report = producer.shutdown();
            assert!(report.first_panic().is_none(), "{report:?}");
            assert_eq!(count.load(Ordering::Relaxed), 500);
        });
    }
}

/// A panic payload whose own `Drop` panics.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("{EXPECTED_PANIC}: the payload's drop");
    }
}

// Item 3: a handler panic whose payload panics when dropped used to unwind
// out of the thread: the producer then waited forever instead of `Halted`.
#[test]
fn a_payload_that_panics_when_dropped_halts_cleanly() {
    silence_expected_panics();
    with_timeout(LIMIT, "payload drop panic", || {
        let shut_down = Arc::new(AtomicBool::new(false));
        struct Bomb(Arc<AtomicBool>);
        impl EventHandler<i64> for Bomb {
            fn on_event(&mut self, _: &i64, sequence: i64, _: bool) {
                if sequence == 3 {
                    std::panic::panic_any(PanicsWhenDropped);
                }
            }
            fn on_shutdown(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let downstream = Arc::new(AtomicI64::new(0));
        let mut producer = build_single_producer(4, || 0i64, Yielding::new())
            .handle_events_with_handler(Bomb(Arc::clone(&shut_down)))
            .and_then()
            .handle_events_with(counter(&downstream))
            .build()
            .expect("valid");
        let mut outcome = Ok(0);
        for value in 0..1_000 {
            outcome = producer.publish(|event| *event = value);
            if outcome.is_err() {
                break;
            }
        }
        assert_eq!(outcome, Err(PublishError::Halted));
        let report = producer.shutdown();
        let panic = report.first_panic().expect("reported");
        assert_eq!(panic.sequence, Some(3), "{panic}");
        assert!(shut_down.load(Ordering::Relaxed), "on_shutdown ran");
        // A halt stops without draining: the stage behind saw at most the
        // events before the panic.
        assert!(
            downstream.load(Ordering::Relaxed) <= 3,
            "no event at or after the panic"
        );
    });
}

// Item 4: the last `MultiProducer` handle dropped on a handler's own thread
// used to join that thread from itself: events were lost and the report too.
#[test]
fn last_multi_producer_dropped_on_a_handler_thread_loses_nothing() {
    with_timeout(LIMIT, "drop on a handler thread", || {
        let feedback: Arc<Mutex<Option<tickring::MultiProducer<i64, Yielding>>>> =
            Arc::new(Mutex::new(None));
        let held = Arc::clone(&feedback);
        let handled = Arc::new(AtomicI64::new(0));
        let counted = Arc::clone(&handled);
        let finished = Arc::new(AtomicBool::new(false));
        struct Tail(Arc<AtomicI64>, Arc<AtomicBool>);
        impl EventHandler<i64> for Tail {
            fn on_event(&mut self, _: &i64, _: i64, _: bool) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
            fn on_shutdown(&mut self) {
                self.1.store(true, Ordering::Release);
            }
        }
        let mut producer = build_multi_producer(64, || 0i64, Yielding::new())
            .handle_events_with(move |_: &i64, sequence, _| {
                if sequence == 49 {
                    // The last handle goes away here, on this handler's thread.
                    drop(held.lock().unwrap().take());
                }
            })
            .and_then()
            .handle_events_with_handler(Tail(counted, Arc::clone(&finished)))
            .build()
            .expect("valid");
        *feedback.lock().unwrap() = Some(producer.clone());
        for value in 0..50 {
            producer.publish(|event| *event = value).unwrap();
        }
        assert!(
            producer.shutdown().is_none(),
            "the handler still holds a handle"
        );
        wait_until(LIMIT, "the pipeline drained and stopped", || {
            finished.load(Ordering::Acquire)
        });
        assert_eq!(handled.load(Ordering::Relaxed), 50, "nothing lost");
    });
}

// Item 4, single producer: a handler that owns its ring's producer.
#[test]
fn single_producer_dropped_on_a_handler_thread_loses_nothing() {
    with_timeout(LIMIT, "single producer dropped on a handler thread", || {
        let slot: Arc<Mutex<Option<tickring::Producer<i64, Yielding>>>> =
            Arc::new(Mutex::new(None));
        let held = Arc::clone(&slot);
        let handled = Arc::new(AtomicI64::new(0));
        let counted = Arc::clone(&handled);
        let producer = build_single_producer(64, || 0i64, Yielding::new())
            .handle_events_with(move |_: &i64, sequence, _| {
                counted.fetch_add(1, Ordering::Relaxed);
                if sequence == 9 {
                    drop(held.lock().unwrap().take());
                }
            })
            .build()
            .expect("valid");
        *slot.lock().unwrap() = Some(producer);
        for value in 0..10 {
            let mut guard = slot.lock().unwrap();
            guard
                .as_mut()
                .expect("not yet dropped")
                .publish(|event| *event = value)
                .unwrap();
        }
        wait_until(LIMIT, "the handler dropped the producer", || {
            slot.lock().unwrap().is_none()
        });
        wait_until(LIMIT, "every event handled", || {
            handled.load(Ordering::Relaxed) == 10
        });
    });
}

// Item 4: a handler that keeps a clone keeps the pipeline alive; `close`
// shuts it down anyway, drains it and returns the report.
#[test]
fn close_shuts_down_a_pipeline_a_handler_keeps_alive() {
    with_timeout(LIMIT, "close", || {
        let keeper: Arc<Mutex<Option<tickring::MultiProducer<i64, Blocking>>>> =
            Arc::new(Mutex::new(None));
        let held = Arc::clone(&keeper);
        let handled = Arc::new(AtomicI64::new(0));
        let counted = Arc::clone(&handled);
        let mut producer = build_multi_producer(16, || 0i64, Blocking::new())
            .handle_events_with(move |_: &i64, _, _| {
                let _kept = held.lock().unwrap();
                counted.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .expect("valid");
        *keeper.lock().unwrap() = Some(producer.clone());
        let mut other = producer.clone();
        for value in 0..100 {
            producer.publish(|event| *event = value).unwrap();
        }
        let report = producer.close();
        assert_eq!(report.handlers.len(), 1);
        assert_eq!(report.handlers[0].events_handled, 100, "drained");
        assert_eq!(handled.load(Ordering::Relaxed), 100);
        assert_eq!(other.publish(|event| *event = 1), Err(PublishError::Closed));
        assert_eq!(
            other.try_publish(|event| *event = 1),
            Err(TryPublishError::Closed)
        );
        assert_eq!(
            other.publish_timeout(Duration::from_millis(1), |event| *event = 1),
            Err(PublishTimeoutError::Closed)
        );
        drop(other);
        drop(keeper.lock().unwrap().take());
    });
}

// Item 5: after a halt no handler starts another event: a sibling of the
// handler that panicked stops at once, not a ring later.
#[test]
fn a_halt_stops_sibling_handlers_before_their_next_event() {
    silence_expected_panics();
    with_timeout(LIMIT, "halt stops siblings", || {
        let (release, hold) = mpsc::channel::<()>();
        let hold = Mutex::new(hold);
        let sibling_seen = Arc::new(AtomicI64::new(-1));
        let seen = Arc::clone(&sibling_seen);
        let sibling_at = Arc::clone(&sibling_seen);
        let mut producer = build_single_producer(128, || 0i64, Yielding::new())
            .handle_events_with(move |_: &i64, sequence, _| {
                if sequence == 10 {
                    // Fail only once the sibling is held inside event 5, so
                    // the halt lands while it still has events to start.
                    wait_until(LIMIT, "the sibling reaches event 5", || {
                        sibling_at.load(Ordering::Relaxed) == 5
                    });
                    panic!("{EXPECTED_PANIC}: risk failed");
                }
            })
            .max_batch_size(128)
            .handle_events_with(move |_: &i64, sequence, _| {
                seen.store(sequence, Ordering::Relaxed);
                if sequence == 5 {
                    // Held here until the halt is visible to the producer.
                    let _ = hold.lock().unwrap().recv();
                }
            })
            .build()
            .expect("valid");
        for value in 0..100 {
            // The halt may land before the last of these.
            if producer.publish(|event| *event = value).is_err() {
                break;
            }
        }
        wait_until(LIMIT, "the producer sees the halt", || {
            producer.try_publish(|_| {}) == Err(TryPublishError::Halted)
        });
        drop(release);
        let report = producer.shutdown();
        assert_eq!(report.handlers[1].events_handled, 6, "{report:?}");
        assert_eq!(
            sibling_seen.load(Ordering::Relaxed),
            5,
            "no event after the halt"
        );
    });
}

// Item 6: `publish_timeout` takes any `Duration` (it panicked on MAX).
#[test]
fn publish_timeout_of_any_duration() {
    for multi in [false, true] {
        with_timeout(LIMIT, "publish_timeout extremes", move || {
            let (release, hold) = mpsc::channel::<()>();
            let hold = Mutex::new(hold);
            let handler = move |_: &i64, sequence: i64, _: bool| {
                if sequence == 0 {
                    let _ = hold.lock().unwrap().recv();
                }
            };
            let opener = thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                drop(release);
            });
            let outcomes: Vec<Result<i64, PublishTimeoutError>> = if multi {
                let mut producer = build_multi_producer(1, || 0i64, Yielding::new())
                    .handle_events_with(handler)
                    .build()
                    .unwrap();
                producer.publish(|event| *event = 0).unwrap();
                vec![
                    producer.publish_timeout(Duration::ZERO, |event| *event = 1),
                    producer.publish_timeout(Duration::MAX, |event| *event = 1),
                ]
            } else {
                let mut producer = build_single_producer(1, || 0i64, Yielding::new())
                    .handle_events_with(handler)
                    .build()
                    .unwrap();
                producer.publish(|event| *event = 0).unwrap();
                vec![
                    producer.publish_timeout(Duration::ZERO, |event| *event = 1),
                    producer.publish_timeout(Duration::MAX, |event| *event = 1),
                ]
            };
            opener.join().unwrap();
            assert_eq!(outcomes, [Err(PublishTimeoutError::TimedOut), Ok(1)]);
        });
    }
}

// Item 7: `remaining_capacity` never exceeds the capacity, whatever the
// order in which producers and handlers move.
#[test]
fn multi_producer_remaining_capacity_stays_within_the_ring() {
    with_timeout(LIMIT, "remaining capacity", || {
        let producer = build_multi_producer(4, || 0i64, Yielding::new())
            .handle_events_with(|_: &i64, _, _| {})
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let feeds: Vec<_> = (0..2)
            .map(|_| {
                let mut producer = producer.clone();
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.publish(|event| *event = 1).unwrap();
                    }
                })
            })
            .collect();
        for _ in 0..200_000 {
            let remaining = producer.remaining_capacity();
            assert!(
                remaining <= producer.capacity(),
                "{remaining} > {}",
                producer.capacity()
            );
        }
        stop.store(true, Ordering::Relaxed);
        for feed in feeds {
            feed.join().unwrap();
        }
        assert!(producer.shutdown().is_some());
    });
}

// Item 8: a core outside the process's CPU mask (taskset) is refused at
// build. The mask is the process's, so the check runs in a child process
// whose main thread narrows it first (`--test-threads=1` runs the test on
// the main thread).
#[test]
fn pinning_outside_the_process_mask_is_refused() {
    if std::env::var_os("TICKRING_PIN_CHILD").is_some() {
        return pin_child();
    }
    let cores = available_cores();
    if cores.len() < 2 {
        // One core: every valid core is in the mask; `CoreNotFound` covers the rest.
        let error = build_single_producer(4, || 0u8, Yielding::new())
            .pin_at_core(usize::MAX)
            .handle_events_with(|_: &u8, _, _| {})
            .build()
            .expect_err("no such core");
        assert!(matches!(error, BuildError::CoreNotFound { .. }), "{error}");
        return;
    }
    // A child process inherits the affinity of the thread that starts it:
    // narrowing this test's thread to one core starts a process that, like
    // one under `taskset -c`, may use only that core.
    pin_current_thread(cores[0]).expect("narrow this thread's mask");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pinning_outside_the_process_mask_is_refused",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("TICKRING_PIN_CHILD", "1")
        .output()
        .expect("run the child");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("PinFailed checked"),
        "the child ran the check:\n{text}"
    );
}

fn pin_child() {
    let cores = available_cores();
    let (inside, outside) = (cores[0], cores[1]);
    assert_eq!(
        allowed_cores(),
        vec![inside],
        "the process was started with a mask of one core"
    );
    let error = build_single_producer(4, || 0u8, Yielding::new())
        .pin_at_core(outside)
        .handle_events_with(|_: &u8, _, _| {})
        .build()
        .expect_err("a core outside the mask");
    assert!(
        matches!(error, BuildError::PinFailed { core, .. } if core == outside),
        "{error}"
    );
    assert!(error.to_string().contains("allowed CPU set"), "{error}");
    assert_eq!(
        pin_current_thread(outside),
        Err(PinError::NotAllowed {
            core: outside,
            allowed: vec![inside]
        })
    );
    println!("PinFailed checked");
}

// Item 9: pinning to a core id past `cpu_set_t` aborted the process.
#[test]
fn pin_current_thread_refuses_ids_it_cannot_pin() {
    with_timeout(LIMIT, "pin extremes", || {
        for id in [1024, 4096, usize::MAX - 1, usize::MAX] {
            let error = pin_current_thread(id).expect_err("no such core");
            assert!(
                matches!(error, PinError::NotAllowed { core, .. } if core == id),
                "{error}"
            );
            assert!(error.to_string().contains(&id.to_string()), "{error}");
        }
        let allowed = allowed_cores();
        assert!(!allowed.is_empty());
        pin_current_thread(allowed[0]).expect("an allowed core pins");
    });
}

// Item 10: a power of two too large suggested itself as the fix.
#[test]
fn a_ring_too_large_suggests_a_size_that_works() {
    for size in [MAX_RING_SIZE * 2, usize::MAX, (usize::MAX >> 1) + 1] {
        let error = build_single_producer(size, || 0u8, Yielding::new())
            .handle_events_with(|_: &u8, _, _| {})
            .build()
            .expect_err("too large");
        assert_eq!(error, BuildError::InvalidRingSize { size });
        let message = error.to_string();
        assert!(!message.contains(&format!("e.g. {size})")), "{message}");
        assert!(
            message.contains(&format!("e.g. {MAX_RING_SIZE}")),
            "{message}"
        );
    }
}

// Drop orders: each handle dropped first, with handlers asleep in each wait
// strategy; nothing hangs, nothing published is lost.
#[test]
fn every_drop_order_drains_and_returns() {
    fn run<W: WaitStrategy>(wait: W, producer_first: bool) {
        let count = Arc::new(AtomicI64::new(0));
        let (poller, builder) = build_single_producer(8, || 0i64, wait)
            .handle_events_with(counter(&count))
            .and_then()
            .event_poller();
        let mut producer = builder.build().unwrap();
        // The poller gates the producer: it is polled (or dropped) before
        // more than a ring of events is published.
        let (polling, mut idle_poller) = if producer_first {
            (Some(poll_to_end(poller)), None)
        } else {
            (None, Some(poller))
        };
        for value in 0..5 {
            producer.publish(|event| *event = value).unwrap();
        }
        // Let the handler (and the poller) go to sleep in their waits.
        thread::sleep(Duration::from_millis(20));
        if let Some(polling) = polling {
            for value in 5..20 {
                producer.publish(|event| *event = value).unwrap();
            }
            thread::sleep(Duration::from_millis(20));
            drop(producer);
            assert_eq!(polling.join().unwrap(), (20, PollState::ShutDown));
        } else {
            // Dropped while the handler sleeps, the poller no longer gates
            // the producer.
            drop(idle_poller.take());
            for value in 5..20 {
                producer.publish(|event| *event = value).unwrap();
            }
            thread::sleep(Duration::from_millis(20));
            let report = producer.shutdown();
            assert_eq!(report.handlers[0].events_handled, 20);
        }
        assert_eq!(count.load(Ordering::Relaxed), 20);
    }
    with_timeout(LIMIT, "drop orders", || {
        for producer_first in [true, false] {
            run(Blocking::new(), producer_first);
            run(Sleeping::with_max_sleep(Duration::MAX), producer_first);
            run(Yielding::new(), producer_first);
            run(BusySpin, producer_first);
        }
    });
}

// A dropped poller does not hold the producer back: the producer skips its
// events when the ring is full, and the stage behind it still sees them all.
#[test]
fn a_dropped_poller_never_blocks_the_producer() {
    with_timeout(LIMIT, "dropped poller", || {
        let count = Arc::new(AtomicI64::new(0));
        let (poller, builder) = build_multi_producer(4, || 0i64, Blocking::new()).event_poller();
        let mut producer = builder
            .and_then()
            .handle_events_with(counter(&count))
            .build()
            .unwrap();
        drop(poller);
        for value in 0..1_000 {
            producer.publish(|event| *event = value).unwrap();
        }
        let report = producer.shutdown().expect("last handle");
        assert_eq!(report.handlers[0].events_handled, 1_000);
        assert_eq!(count.load(Ordering::Relaxed), 1_000);
    });
}

// A builder dropped (or failing) after its poller was taken: the poller
// reports `Halted`, never `Idle` forever.
#[test]
fn a_poller_from_a_builder_that_never_built_reports_halted() {
    let (mut poller, builder) = build_single_producer(8, || 0u8, Yielding::new()).event_poller();
    assert_eq!(poller.poll(|_, _, _| true), PollState::Idle);
    drop(builder);
    assert_eq!(poller.poll(|_, _, _| true), PollState::Halted);

    let (mut poller, builder) = build_single_producer(3, || 0u8, Yielding::new()).event_poller();
    assert_eq!(
        builder.build().expect_err("3 is not a power of two"),
        BuildError::InvalidRingSize { size: 3 }
    );
    assert_eq!(poller.poll(|_, _, _| true), PollState::Halted);
}

// Options come before the participant they configure (the `disruptor`
// crate's order): a ported chain names (and pins) the intended thread.
#[test]
fn options_configure_the_participant_after_them() {
    let names = Arc::new(Mutex::new(Vec::new()));
    /// Each handler thread's name and the cores its affinity mask allows.
    type Seen = Arc<Mutex<Vec<(String, Vec<usize>)>>>;
    let record = |names: &Seen| {
        let names = Arc::clone(names);
        move |_: &u8, _: i64, _: bool| {
            let name = thread::current().name().unwrap_or_default().to_owned();
            // The thread's own affinity mask, as the kernel reports it.
            let cores: Vec<usize> = core_affinity::get_core_ids()
                .unwrap_or_default()
                .iter()
                .map(|core| core.id)
                .collect();
            let mut names = names.lock().unwrap();
            if !names.iter().any(|(seen, _)| *seen == name) {
                names.push((name, cores));
            }
        }
    };
    let core = allowed_cores()[0];
    let mut producer = build_single_producer(8, || 0u8, Yielding::new())
        .thread_name("decode")
        .handle_events_with(record(&names))
        .pin_at_core(core)
        .thread_name("strategy")
        .handle_events_with(record(&names))
        .build()
        .unwrap();
    producer.publish(|event| *event = 1).unwrap();
    let report = producer.shutdown();
    let reported: Vec<_> = report.handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(reported, ["decode", "strategy"]);
    let mut seen = names.lock().unwrap().clone();
    seen.sort();
    let seen_names: Vec<_> = seen.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(seen_names, ["decode", "strategy"]);
    // `pin_at_core` before "strategy" pinned the strategy's thread.
    assert_eq!(
        seen[1].1,
        [core],
        "the strategy thread runs on the core named before it"
    );
}

// Every handle a user holds is `Send`, so it can move to its thread.
#[test]
fn handles_are_send() {
    fn is_send<T: Send>() {}
    is_send::<tickring::Producer<u64, Yielding>>();
    is_send::<tickring::MultiProducer<u64, Blocking>>();
    is_send::<tickring::EventPoller<u64, BusySpin>>();
    is_send::<tickring::ShutdownReport>();
    is_send::<BuildError>();
}
