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

/// The shared-memory ring's protocol (`src/shm/protocol.rs`) over a
/// heap-backed ring with the file's layout: the same code a process runs
/// over the mapping, with loom's atomics.
#[cfg(feature = "shm")]
mod shm {
    use crate::shm::layout::{Geometry, HeapRing};
    use crate::shm::protocol::{ConsumerCore, JoinAt, Polled, ProducerCore};
    use crate::shm::JoinAt as PublicJoinAt;
    use loom::thread;
    use std::sync::Arc;

    /// Two words written separately: a torn copy shows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Pair {
        value: i64,
        check: i64,
    }

    fn pair(sequence: i64) -> Pair {
        Pair {
            value: sequence,
            check: sequence * 7 + 1,
        }
    }

    fn ring(capacity: usize) -> Arc<HeapRing> {
        let geometry = Geometry::new(capacity, 1, 16, 8).expect("valid geometry");
        Arc::new(HeapRing::new(geometry, "loom.pair", 1, 0))
    }

    fn publish_all(ring: &HeapRing, producer: &mut ProducerCore, until: i64) {
        let view = ring.view();
        while producer.next < until {
            if producer.has_room(&view, 1) {
                let sequence = producer.next;
                producer.write_and_publish(&view, sequence, &pair(sequence));
            } else {
                thread::yield_now();
            }
        }
    }

    /// Polls until `until` was handled (or the poll reports something
    /// else than progress); asserts every event whole and in order.
    fn consume(ring: &HeapRing, consumer: &mut ConsumerCore, until: i64) -> Polled {
        let view = ring.view();
        let mut expected = consumer.next;
        let mut handler = |event: &Pair, sequence: i64, _end: bool| {
            assert_eq!(sequence, expected, "in order");
            assert_eq!(*event, pair(sequence), "whole");
            expected += 1;
        };
        loop {
            if consumer.next >= until {
                return Polled::Idle;
            }
            match consumer.poll(&view, &mut handler, 16) {
                Polled::Handled(_) => {}
                Polled::Idle => thread::yield_now(),
                other => return other,
            }
        }
    }

    /// Ring of 2, three events, a consumer registered first: every event
    /// once, in order, whole; the producer never overwrites an unread one.
    #[test]
    fn shm_publish_and_consume_across_wrap_around() {
        super::model(|| {
            let ring = ring(2);
            let mut consumer =
                ConsumerCore::join(&ring.view(), JoinAt::Cursor, 1, 0, 1_000).unwrap();
            let reader = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || consume(&ring, &mut consumer, 3))
            };
            publish_all(&ring, &mut ProducerCore::new(), 3);
            assert_eq!(reader.join().unwrap(), Polled::Idle);
        });
    }

    /// A consumer joins at the cursor while the producer publishes: the
    /// Dekker pair (joiner: register, fence, read stamps; producer: hint,
    /// fence, read the table) means the producer never overwrites what the
    /// joiner starts at: no overrun, every event whole.
    #[test]
    fn shm_join_at_cursor_races_the_producer() {
        super::model(|| {
            let ring = ring(2);
            let joiner = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut consumer =
                        ConsumerCore::join(&ring.view(), PublicJoinAt::Cursor, 1, 0, 1_000)
                            .unwrap();
                    consume(&ring, &mut consumer, 4)
                })
            };
            publish_all(&ring, &mut ProducerCore::new(), 4);
            assert_eq!(joiner.join().unwrap(), Polled::Idle);
        });
    }

    /// The producer evicts a consumer and overwrites the slot it may be
    /// copying (ring of 1): the consumer hands over event 0 whole, or
    /// reports the eviction; never a torn or later event as event 0.
    #[test]
    fn shm_eviction_never_hands_over_a_torn_event() {
        super::model(|| {
            let ring = ring(1);
            let mut consumer =
                ConsumerCore::join(&ring.view(), JoinAt::Cursor, 1, 0, 1_000).unwrap();
            let reader = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || consume(&ring, &mut consumer, 1))
            };
            let view = ring.view();
            let mut producer = ProducerCore::new();
            publish_all(&ring, &mut producer, 1);
            producer.evict_stale(&view, 1, u64::MAX / 2, 1);
            if producer.has_room(&view, 1) {
                producer.write_and_publish(&view, 1, &pair(1));
            }
            let outcome = reader.join().unwrap();
            assert!(
                matches!(outcome, Polled::Idle | Polled::Evicted),
                "{outcome:?}"
            );
        });
    }
}
