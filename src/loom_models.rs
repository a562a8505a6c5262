//! Loom models of the sequencer / barrier / wait-strategy protocol.
//!
//! Each model builds a real pipeline through the public builder — the same
//! sequencer, stamps, barriers, batch loop, wait strategies and shutdown that
//! a release build runs — with loom's atomics, locks, threads and
//! `UnsafeCell` swapped in by `src/loom.rs`. Loom explores the interleavings
//! (bounded by `LOOM_MAX_PREEMPTIONS`) and fails on a data race on a slot (a
//! producer overwriting an unconsumed event, a handler reading a half-written
//! one), a deadlock (a lost wake-up, a handler that never drains) or a
//! failed assertion.
//!
//! Run: `RUSTFLAGS="--cfg tickring_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --lib loom_models`

use std::sync::atomic::{AtomicI64 as StdAtomicI64, Ordering};
use std::sync::Arc;

use crate::{
    build_multi_producer, build_single_producer, Blocking, BusySpin, EventProducer, Yielding,
};

/// Runs a model with room for the wait loops' polls (each is a branch);
/// `LOOM_MAX_PREEMPTIONS` and the other `LOOM_*` variables still apply.
fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 20_000;
    builder.check(body);
}

/// A model event: two fields written separately, so a torn read shows.
#[derive(Debug, Default, Clone, Copy)]
struct Pair {
    value: i64,
    check: i64,
}

impl Pair {
    fn of(value: i64) -> Self {
        Self {
            value,
            check: value * 7 + 1,
        }
    }
}

/// Single producer, ring of 2, three events (one wrap-around): the handler
/// sees every event once, in order, whole; the producer never writes a slot
/// the handler still reads (loom's `UnsafeCell` tracking would flag it).
#[test]
fn single_producer_wraps_without_overwriting() {
    model(|| {
        let mut next_expected = 0;
        let mut producer = build_single_producer(2, Pair::default, BusySpin)
            .handle_events_with(move |event: &Pair, sequence, _| {
                assert_eq!(sequence, next_expected);
                assert_eq!(event.value, sequence);
                assert_eq!(event.check, sequence * 7 + 1);
                next_expected += 1;
            })
            .build()
            .expect("valid pipeline");
        for value in 0..3 {
            producer.publish(|event| *event = Pair::of(value)).unwrap();
        }
        let report = producer.shutdown();
        assert_eq!(report.handlers[0].events_handled, 3);
    });
}

/// Two producers and one handler, ring of 2: no gap is read as published,
/// each event is seen once, and each producer's events keep their order.
#[test]
fn two_producers_one_handler() {
    model(|| {
        let seen = Arc::new(StdAtomicI64::new(0));
        let mut last_per_producer = [-1i64; 2];
        let handler_seen = Arc::clone(&seen);
        let mut producer = build_multi_producer(2, Pair::default, Yielding::new())
            .handle_events_with(move |event: &Pair, _, _| {
                assert_eq!(event.check, event.value * 7 + 1, "torn or stale event");
                let (producer_id, counter) = ((event.value / 10) as usize, event.value % 10);
                assert!(counter > last_per_producer[producer_id], "out of order");
                last_per_producer[producer_id] = counter;
                handler_seen.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .expect("valid pipeline");
        let mut second = producer.clone();
        let other = loom::thread::spawn(move || {
            for counter in 0..2 {
                second
                    .publish(|event| *event = Pair::of(10 + counter))
                    .unwrap();
            }
        });
        producer.publish(|event| *event = Pair::of(0)).unwrap();
        other.join().unwrap();
        let report = producer.shutdown().expect("last handle");
        assert_eq!(report.handlers[0].events_handled, 3);
        assert_eq!(seen.load(Ordering::Relaxed), 3);
    });
}

/// A mutable stage and a stage gated on it: stage 2 never passes stage 1 and
/// sees what stage 1 wrote.
#[test]
fn pipeline_stage_two_never_passes_stage_one() {
    model(|| {
        let mut producer = build_single_producer(2, Pair::default, Blocking::new())
            .handle_events_mut(|event: &mut Pair, _, _| event.check = event.value * 7 + 1)
            .and_then()
            .handle_events_with(|event: &Pair, sequence, _| {
                assert_eq!(event.value, sequence);
                assert_eq!(
                    event.check,
                    sequence * 7 + 1,
                    "stage 2 ran ahead of stage 1"
                );
            })
            .build()
            .expect("valid pipeline");
        for value in 0..3 {
            producer
                .publish(|event| {
                    event.value = value;
                    event.check = -1;
                })
                .unwrap();
        }
        let report = producer.shutdown();
        assert!(report
            .handlers
            .iter()
            .all(|handler| handler.events_handled == 3));
    });
}

/// The blocking strategy: the handler goes to sleep while the producer
/// publishes; a lost wake-up leaves it asleep and loom reports the deadlock.
#[test]
fn blocking_strategy_never_loses_a_wake_up() {
    model(|| {
        let mut producer = build_single_producer(2, Pair::default, Blocking::new())
            .handle_events_with(|event: &Pair, sequence, _| assert_eq!(event.value, sequence))
            .build()
            .expect("valid pipeline");
        for value in 0..2 {
            producer.publish(|event| *event = Pair::of(value)).unwrap();
        }
        let report = producer.shutdown();
        assert_eq!(report.handlers[0].events_handled, 2);
    });
}

/// Shutdown right after publishing: two parallel handlers both drain every
/// event published before it.
#[test]
fn shutdown_misses_no_event() {
    model(|| {
        let mut producer = build_single_producer(4, Pair::default, Blocking::new())
            .handle_events_with(|event: &Pair, sequence, _| assert_eq!(event.value, sequence))
            .handle_events_with(|event: &Pair, sequence, _| assert_eq!(event.value, sequence))
            .build()
            .expect("valid pipeline");
        producer.publish(|event| *event = Pair::of(0)).unwrap();
        producer.publish(|event| *event = Pair::of(1)).unwrap();
        let report = producer.shutdown();
        assert!(report
            .handlers
            .iter()
            .all(|handler| handler.events_handled == 2));
    });
}

/// `close` racing a publish on another handle: the publish either succeeds
/// and its event is drained before `close` returns, or fails with `Closed`;
/// an event is never published without being handled.
#[test]
fn close_racing_a_publish_loses_nothing() {
    model(|| {
        let handled = Arc::new(StdAtomicI64::new(0));
        let counted = Arc::clone(&handled);
        let producer = build_multi_producer(2, Pair::default, Yielding::new())
            .handle_events_with(move |event: &Pair, _, _| {
                assert_eq!(event.check, event.value * 7 + 1, "torn event");
                counted.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .expect("valid pipeline");
        let mut other = producer.clone();
        let racer =
            loom::thread::spawn(move || other.publish(|event| *event = Pair::of(5)).is_ok());
        let report = producer.close();
        let published = racer.join().unwrap();
        assert_eq!(report.handlers[0].events_handled, u64::from(published));
        assert_eq!(handled.load(Ordering::Relaxed), i64::from(published));
    });
}

/// A worker pool of two: each event goes to exactly one worker, and the
/// stage behind the pool never passes an event a worker still holds.
#[test]
fn worker_pool_hands_each_event_to_one_worker() {
    model(|| {
        let handled = Arc::new(StdAtomicI64::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let handled = Arc::clone(&handled);
                move |event: &Pair, _: i64, _: bool| {
                    assert_eq!(event.check, event.value * 7 + 1, "torn event");
                    handled.fetch_add(1, Ordering::Relaxed);
                }
            })
            .collect();
        let mut producer = build_single_producer(2, Pair::default, Blocking::new())
            .handle_events_with_workers(workers)
            .build()
            .expect("valid pipeline");
        for value in 0..2 {
            producer.publish(|event| *event = Pair::of(value)).unwrap();
        }
        let report = producer.shutdown();
        let total: u64 = report.handlers.iter().map(|h| h.events_handled).sum();
        assert_eq!(total, 2);
        assert_eq!(handled.load(Ordering::Relaxed), 2);
    });
}
