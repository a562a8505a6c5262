//! The multi-producer handle: several threads publish into one ring through
//! clones of `MultiProducer`. Every event arrives exactly once, each
//! producer's events in that producer's order; `try_*` and `publish_timeout`
//! never claim what they do not publish; the last handle (dropped or shut
//! down) shuts the pipeline down and `close` does so whatever handles
//! remain, draining what was published either way.
//!
//! (Handles let go from many threads at once, and a halt releasing
//! producers blocked on a full ring, are tested in `faults.rs`.)

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use common::{
    events, join, scaled, silence_expected_panics, wait_until, with_timeout, Failures, Gate,
    GateKeeper, XorShift, EXPECTED_PANIC, TEST_LIMIT,
};
use tickring::{
    build_multi_producer, Blocking, EventHandler, EventProducer, FullRingWait, MultiProducer,
    PublishError, PublishTimeoutError, TryPublishError, WaitStrategy, Yielding,
};

const PRODUCERS: u32 = 4;

/// Serializes the stress tests of this file (see `producers_into_ring`).
static STRESS: Mutex<()> = Mutex::new(());

/// An order from one of several producers: who sent it, that producer's
/// running count, and a check word that exposes a torn or stale slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Order {
    producer: u32,
    counter: u64,
    check: u64,
}

impl Order {
    fn new(producer: u32, counter: u64) -> Self {
        Self {
            producer,
            counter,
            check: Self::check_of(producer, counter),
        }
    }

    fn check_of(producer: u32, counter: u64) -> u64 {
        counter.rotate_left(23) ^ (u64::from(producer) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn is_intact(&self) -> bool {
        self.check == Self::check_of(self.producer, self.counter)
    }
}

/// What an [`OrderChecker`] saw, sent from its `on_shutdown`.
#[derive(Debug, Clone)]
struct Checked {
    label: &'static str,
    events: u64,
    last_sequence: i64,
    /// Per producer: the counter it expects next (= events seen from it).
    next_counter: Vec<u64>,
    failures: Failures,
}

/// Checks every order: sequences in order without gaps, each producer's
/// counters in order without gaps, intact content, and (for a later stage)
/// that every upstream handler finished the event first.
struct OrderChecker {
    checked: Checked,
    upstream: Vec<Arc<AtomicI64>>,
    progress: Arc<AtomicI64>,
    /// Held at sequence 0 until this gate opens.
    hold_at_first: Option<Gate>,
    lifecycle: Arc<Lifecycle>,
    report_to: mpsc::Sender<Checked>,
}

/// How often `on_start` and `on_shutdown` ran, over every checker sharing it.
#[derive(Debug, Default)]
struct Lifecycle {
    starts: AtomicUsize,
    shutdowns: AtomicUsize,
}

impl OrderChecker {
    fn new(
        label: &'static str,
        producers: u32,
        upstream: Vec<Arc<AtomicI64>>,
        report_to: mpsc::Sender<Checked>,
    ) -> Self {
        Self {
            checked: Checked {
                label,
                events: 0,
                last_sequence: -1,
                next_counter: vec![0; producers as usize],
                failures: Failures::default(),
            },
            upstream,
            progress: Arc::new(AtomicI64::new(-1)),
            hold_at_first: None,
            lifecycle: Arc::new(Lifecycle::default()),
            report_to,
        }
    }

    fn progress(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.progress)
    }
}

impl EventHandler<Order> for OrderChecker {
    fn on_event(&mut self, order: &Order, sequence: i64, _end_of_batch: bool) {
        if sequence == 0 {
            if let Some(gate) = &self.hold_at_first {
                gate.wait();
            }
        }
        let checked = &mut self.checked;
        let label = checked.label;
        let expected_sequence = checked.last_sequence + 1;
        if sequence != expected_sequence {
            checked.failures.record(|| {
                format!("{label}: got sequence {sequence}, expected {expected_sequence}")
            });
        }
        if !order.is_intact() {
            checked
                .failures
                .record(|| format!("{label}: event {sequence} is torn: {order:?}"));
        }
        match checked.next_counter.get_mut(order.producer as usize) {
            None => checked
                .failures
                .record(|| format!("{label}: event {sequence} from unknown {order:?}")),
            Some(next) => {
                if order.counter != *next {
                    let expected = *next;
                    checked.failures.record(|| {
                        format!(
                            "{label}: producer {} sent counter {} at sequence {sequence}, \
                             expected {expected} (lost, duplicated or reordered)",
                            order.producer, order.counter
                        )
                    });
                }
                *next = order.counter + 1;
            }
        }
        for (index, upstream) in self.upstream.iter().enumerate() {
            let passed = upstream.load(Ordering::Acquire);
            if passed < sequence {
                checked.failures.record(|| {
                    format!(
                        "{label}: saw {sequence} before upstream #{index} finished it ({passed})"
                    )
                });
            }
        }
        checked.events += 1;
        checked.last_sequence = sequence;
        self.progress.store(sequence, Ordering::Release);
    }

    fn on_start(&mut self) {
        self.lifecycle.starts.fetch_add(1, Ordering::Relaxed);
    }

    fn on_shutdown(&mut self) {
        self.lifecycle.shutdowns.fetch_add(1, Ordering::Relaxed);
        let _ = self.report_to.send(self.checked.clone());
    }
}

/// Receives `count` reports (one per checker, sent at shutdown), by label.
fn collect_checked(reports: &mpsc::Receiver<Checked>, count: usize) -> Vec<Checked> {
    let mut checked: Vec<Checked> = (0..count)
        .map(|_| {
            reports
                .recv_timeout(scaled(Duration::from_secs(10)))
                .expect("every checker reports from on_shutdown")
        })
        .collect();
    assert!(
        reports.try_recv().is_err(),
        "a checker ran on_shutdown more than once"
    );
    checked.sort_by_key(|checked| checked.label);
    checked
}

/// Asserts a checker saw `per_producer` orders from each of `producers`,
/// `producers * per_producer` in all, in sequence order, intact.
fn assert_saw_every_order(checked: &Checked, producers: u32, per_producer: u64) {
    checked.failures.assert_none(checked.label);
    let total = u64::from(producers) * per_producer;
    assert_eq!(checked.events, total, "{}: events seen", checked.label);
    assert_eq!(
        checked.last_sequence,
        total as i64 - 1,
        "{}: last sequence",
        checked.label
    );
    assert_eq!(
        checked.next_counter,
        vec![per_producer; producers as usize],
        "{}: orders seen per producer",
        checked.label
    );
}

/// Publishes orders `0..count` of producer `id`, picking at random between
/// `publish`, `batch_publish`, `try_publish` and `try_batch_publish` (the
/// `try_*` retried on `Full`). Checks the sequences each call returns: a
/// batch's are consecutive, and one producer's only ever increase.
fn publish_orders<W: WaitStrategy>(producer: &mut MultiProducer<Order, W>, id: u32, count: u64) {
    let largest_batch = (producer.capacity() as u64).min(16);
    let mut random = XorShift::scrambled(u64::from(id) + 1);
    let mut counter = 0;
    let mut last_sequence = -1;
    while counter < count {
        let left = count - counter;
        let choice = random.next_u64() % 8;
        let batch = random.between_1_and(largest_batch.min(left));
        let mut first_filled = None;
        let mut filled = 0;
        let mut fill_batch = |order: &mut Order, sequence: i64| {
            let first = *first_filled.get_or_insert(sequence);
            assert_eq!(
                sequence,
                first + filled as i64,
                "producer {id}: a batch's sequences are consecutive"
            );
            *order = Order::new(id, counter + filled);
            filled += 1;
        };
        let outcome = match choice {
            0..=2 => Ok(producer
                .publish(|order| *order = Order::new(id, counter))
                .expect("publish")),
            3..=5 => Ok(producer
                .batch_publish(batch as usize, &mut fill_batch)
                .expect("batch_publish")),
            6 => producer.try_publish(|order| *order = Order::new(id, counter)),
            _ => producer.try_batch_publish(batch as usize, &mut fill_batch),
        };
        let sequence = match outcome {
            Ok(sequence) => sequence,
            Err(TryPublishError::Full) => {
                assert!(
                    first_filled.is_none(),
                    "producer {id}: try_batch_publish called fill and returned Full"
                );
                thread::yield_now();
                continue;
            }
            Err(error) => panic!("producer {id}: {error}"),
        };
        let published = if matches!(choice, 0..=2 | 6) {
            1
        } else {
            assert_eq!(filled, batch, "producer {id}: fill called once per event");
            assert_eq!(
                Some(sequence - batch as i64 + 1),
                first_filled,
                "producer {id}: a batch returns its last sequence"
            );
            batch
        };
        let first = sequence - published as i64 + 1;
        assert!(
            first > last_sequence,
            "producer {id}: published at {first} after {last_sequence}"
        );
        last_sequence = sequence;
        counter += published;
    }
}

/// `PRODUCERS` threads publish `per_producer` orders each into a ring of
/// `size`; one checker, or (`pipeline`) three parallel checkers and a fourth
/// behind them. Every checker must see every order once, in each producer's
/// order; the last handle's `shutdown` reports every event handled.
fn producers_into_ring<W: WaitStrategy>(
    wait: W,
    size: usize,
    pipeline: bool,
    per_producer: u64,
    full_ring: FullRingWait,
) {
    // One stress test at a time: two at once put ten threads on two cores,
    // and hand-offs through a small ring slow down many times over.
    let _one_at_a_time = STRESS.lock().unwrap_or_else(PoisonError::into_inner);
    // A longer bound than the other tests: 4M hand-offs through a ring of 1
    // take ~6 s on a quiet 2-core machine and over 60 s when other builds
    // share the cores; a hang still fails, after 5 minutes.
    let name = format!("{PRODUCERS}-producers-ring-of-{size}-pipeline-{pipeline}");
    with_timeout(5 * TEST_LIMIT, &name, move || {
        let (report_to, reports) = mpsc::channel();
        let builder = build_multi_producer(size, Order::default, wait).producer_wait(full_ring);
        let (builder, checkers) = if pipeline {
            let first = OrderChecker::new("a", PRODUCERS, vec![], report_to.clone());
            let second = OrderChecker::new("b", PRODUCERS, vec![], report_to.clone());
            let third = OrderChecker::new("c", PRODUCERS, vec![], report_to.clone());
            let upstream = vec![first.progress(), second.progress(), third.progress()];
            let behind = OrderChecker::new("d", PRODUCERS, upstream, report_to);
            let builder = builder
                .handle_events_with_handler(first)
                .handle_events_with_handler(second)
                .handle_events_with_handler(third)
                .and_then()
                .handle_events_with_handler(behind);
            (builder, 4)
        } else {
            let only = OrderChecker::new("a", PRODUCERS, vec![], report_to);
            (builder.handle_events_with_handler(only), 1)
        };
        let producer = builder.build().expect("valid pipeline");
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let mut producer = producer.clone();
                thread::spawn(move || publish_orders(&mut producer, id, per_producer))
            })
            .collect();
        for thread in threads {
            join(thread);
        }
        let report = producer
            .shutdown()
            .expect("the last handle's shutdown returns the report");
        let total = u64::from(PRODUCERS) * per_producer;
        assert_eq!(report.handlers.len(), checkers);
        for handler in &report.handlers {
            assert_eq!(handler.panic, None, "{}", handler.name);
            assert_eq!(handler.events_handled, total, "{}", handler.name);
        }
        for checked in collect_checked(&reports, checkers) {
            assert_saw_every_order(&checked, PRODUCERS, per_producer);
        }
    });
}

// Orders per producer. Four producers and one to four handler threads share
// two cores on the build machine, where a small ring is a hand-off per event
// (and a producer preempted between its claim and its publish stalls every
// handler behind it). Measured there, a million per producer takes about 6 s
// with a ring of 1 and one handler, over 60 s with a ring of 1 and the
// pipeline, and 13-50 s with a ring of 8 and the pipeline, several times
// longer while other builds share the cores. The two pipeline cases are cut
// to keep each test within seconds; every event of a ring of 1 or 8 is still
// a wrap-around race, so the race runs hundreds of thousands of times.
const PER_PRODUCER_RING_OF_1: u64 = events(1_000_000);
const PER_PRODUCER_PIPELINE_RING_OF_1: u64 = events(20_000);
const PER_PRODUCER_RING_OF_8: u64 = events(1_000_000);
const PER_PRODUCER_PIPELINE_RING_OF_8: u64 = events(250_000);
const PER_PRODUCER_RING_OF_1024: u64 = events(1_000_000);
const PER_PRODUCER_BLOCKING: u64 = events(250_000);

#[test]
fn four_producers_one_handler_ring_of_1() {
    producers_into_ring(
        Yielding::new(),
        1,
        false,
        PER_PRODUCER_RING_OF_1,
        FullRingWait::Yield,
    );
}

#[test]
fn four_producers_one_handler_ring_of_8() {
    producers_into_ring(
        Yielding::new(),
        8,
        false,
        PER_PRODUCER_RING_OF_8,
        FullRingWait::Yield,
    );
}

#[test]
fn four_producers_one_handler_ring_of_1024() {
    producers_into_ring(
        Yielding::new(),
        1024,
        false,
        PER_PRODUCER_RING_OF_1024,
        FullRingWait::Yield,
    );
}

#[test]
fn four_producers_parallel_handlers_and_a_stage_behind_ring_of_1() {
    // Producers that sleep while the ring is full leave the two cores to the
    // four handler threads (yielding producers crowd them out: ~4 k events/s).
    let park = FullRingWait::Park {
        max_sleep: Duration::from_micros(50),
    };
    producers_into_ring(
        Yielding::new(),
        1,
        true,
        PER_PRODUCER_PIPELINE_RING_OF_1,
        park,
    );
}

#[test]
fn four_producers_parallel_handlers_and_a_stage_behind_ring_of_8() {
    producers_into_ring(
        Yielding::new(),
        8,
        true,
        PER_PRODUCER_PIPELINE_RING_OF_8,
        FullRingWait::Yield,
    );
}

#[test]
fn four_producers_parallel_handlers_and_a_stage_behind_ring_of_1024() {
    producers_into_ring(
        Yielding::new(),
        1024,
        true,
        PER_PRODUCER_RING_OF_1024,
        FullRingWait::Yield,
    );
}

#[test]
fn four_producers_parallel_handlers_and_a_stage_behind_blocking_ring_of_64() {
    // Sleeping handlers: a wake-up lost between a publish (or an upstream
    // handler's progress) and a handler going to sleep hangs this test.
    producers_into_ring(
        Blocking::new(),
        64,
        true,
        PER_PRODUCER_BLOCKING,
        FullRingWait::Yield,
    );
}

/// A ring of 8 whose only handler is held at event 0 (so it releases
/// nothing), filled by `fill_first` orders of producer 0. Returns the
/// producer, the gate, and what the handler sees: `(sequence, order)`.
#[allow(clippy::type_complexity)]
fn held_ring_of_8<W: WaitStrategy>(
    wait: W,
    fill_first: u64,
) -> (
    MultiProducer<Order, W>,
    GateKeeper,
    mpsc::Receiver<(i64, Order)>,
) {
    let (gate, held) = Gate::closed();
    let (seen_by_handler, seen) = mpsc::channel();
    let mut producer = build_multi_producer(8, Order::default, wait)
        .thread_name("held")
        .handle_events_with(move |order: &Order, sequence, _| {
            if sequence == 0 {
                held.wait();
            }
            let _ = seen_by_handler.send((sequence, *order));
        })
        .build()
        .expect("valid pipeline");
    for counter in 0..fill_first {
        let sequence = producer
            .publish(|order| *order = Order::new(0, counter))
            .expect("room for it");
        assert_eq!(sequence, counter as i64);
    }
    (producer, gate, seen)
}

/// Receives everything the handler saw once the pipeline has shut down.
fn drain_seen(seen: &mpsc::Receiver<(i64, Order)>) -> Vec<(i64, Order)> {
    seen.try_iter().collect()
}

/// The orders `0..count` of producer 0 at sequences `0..count`.
fn orders_of_producer_0(count: u64) -> Vec<(i64, Order)> {
    (0..count)
        .map(|counter| (counter as i64, Order::new(0, counter)))
        .collect()
}

#[test]
fn try_publish_on_a_full_ring_returns_full_and_publishes_nothing() {
    with_timeout(TEST_LIMIT, "try-publish-full", || {
        let (mut producer, gate, seen) = held_ring_of_8(Yielding::new(), 8);
        assert_eq!(producer.remaining_capacity(), 0, "8 events in a ring of 8");
        let lags: Vec<_> = producer
            .handler_lags()
            .map(|(name, lag)| (name.to_owned(), lag))
            .collect();
        assert_eq!(
            lags,
            [("held".to_owned(), 8)],
            "the held handler trails by 8"
        );

        let mut called = false;
        let outcome = producer.try_publish(|order| {
            called = true;
            *order = Order::new(9, 9);
        });
        assert_eq!(outcome, Err(TryPublishError::Full));
        assert!(!called, "try_publish called the closure on a full ring");

        // Other handles, on other threads, racing on the full ring: none of
        // them may claim a sequence it does not publish.
        let racers: Vec<_> = (1..=3)
            .map(|id| {
                let mut producer = producer.clone();
                thread::spawn(move || {
                    for _ in 0..1_000 {
                        let outcome = producer.try_publish(|order| *order = Order::new(id, 0));
                        assert_eq!(outcome, Err(TryPublishError::Full), "handle {id}");
                        let outcome =
                            producer.try_batch_publish(2, |order, _| *order = Order::new(id, 0));
                        assert_eq!(outcome, Err(TryPublishError::Full), "handle {id}");
                    }
                })
            })
            .collect();
        for racer in racers {
            join(racer);
        }
        assert_eq!(producer.remaining_capacity(), 0);

        gate.open();
        wait_until(TEST_LIMIT, "the handler drains the ring", || {
            producer.remaining_capacity() == 8
        });
        let sequence = producer
            .try_publish(|order| *order = Order::new(0, 8))
            .expect("room after the handler drained");
        assert_eq!(sequence, 8, "the failed attempts claimed nothing");

        let report = producer.shutdown().expect("the last handle");
        assert_eq!(report.handlers[0].events_handled, 9);
        assert_eq!(
            drain_seen(&seen),
            orders_of_producer_0(9),
            "the handler sees exactly the events published, nothing from a Full"
        );
    });
}

#[test]
fn publish_timeout_times_out_and_publishes_nothing() {
    with_timeout(TEST_LIMIT, "publish-timeout", || {
        let (mut producer, gate, seen) = held_ring_of_8(Blocking::new(), 8);
        let mut called = false;
        let outcome = producer.publish_timeout(Duration::from_millis(20), |order| {
            called = true;
            *order = Order::new(9, 9);
        });
        assert_eq!(outcome, Err(PublishTimeoutError::TimedOut));
        assert!(!called, "publish_timeout called the closure and timed out");
        assert_eq!(producer.remaining_capacity(), 0, "nothing claimed");

        // A second handle times out too, from its own thread.
        let mut other = producer.clone();
        let outcome = join(thread::spawn(move || {
            other.publish_timeout(Duration::from_millis(5), |order| *order = Order::new(9, 9))
        }));
        assert_eq!(outcome, Err(PublishTimeoutError::TimedOut));

        gate.open();
        let sequence = producer
            .publish_timeout(scaled(Duration::from_secs(30)), |order| {
                *order = Order::new(0, 8)
            })
            .expect("room once the handler moves");
        assert_eq!(sequence, 8, "the timed-out attempts claimed nothing");
        let sequence = producer
            .publish(|order| *order = Order::new(0, 9))
            .expect("publish");
        assert_eq!(sequence, 9);

        let report = producer.shutdown().expect("the last handle");
        assert_eq!(report.handlers[0].events_handled, 10);
        assert_eq!(drain_seen(&seen), orders_of_producer_0(10));
    });
}

#[test]
fn try_batch_publish_never_over_claims() {
    with_timeout(TEST_LIMIT, "try-batch-over-claim", || {
        let (mut producer, gate, seen) = held_ring_of_8(Yielding::new(), 5);
        assert_eq!(producer.remaining_capacity(), 3);

        let mut calls = 0;
        let outcome = producer.try_batch_publish(4, |order, _| {
            calls += 1;
            *order = Order::new(9, 9);
        });
        assert_eq!(
            outcome,
            Err(TryPublishError::Full),
            "4 events, 3 free slots"
        );
        assert_eq!(calls, 0, "fill called for a batch that did not fit");
        assert_eq!(
            producer.remaining_capacity(),
            3,
            "the failed batch claimed nothing"
        );

        let mut filled = Vec::new();
        let last = producer
            .try_batch_publish(3, |order, sequence| {
                filled.push(sequence);
                *order = Order::new(0, sequence as u64);
            })
            .expect("3 events fit in 3 free slots");
        assert_eq!(last, 7);
        assert_eq!(filled, [5, 6, 7]);

        assert_eq!(
            producer.try_batch_publish(1, |order, _| *order = Order::new(9, 9)),
            Err(TryPublishError::Full)
        );
        assert_eq!(
            producer.try_batch_publish(9, |order, _| *order = Order::new(9, 9)),
            Err(TryPublishError::BatchTooLarge {
                requested: 9,
                capacity: 8
            })
        );

        gate.open();
        wait_until(TEST_LIMIT, "the handler drains the ring", || {
            producer.remaining_capacity() == 8
        });
        let mut filled = Vec::new();
        let last = producer
            .try_batch_publish(4, |order, sequence| {
                filled.push(sequence);
                *order = Order::new(0, sequence as u64);
            })
            .expect("an empty ring takes 4");
        assert_eq!(filled, [8, 9, 10, 11], "no gap after the Full attempts");
        assert_eq!(last, 11);
        let last = producer
            .batch_publish(2, |order, sequence| *order = Order::new(0, sequence as u64))
            .expect("batch_publish");
        assert_eq!(last, 13);

        let report = producer.shutdown().expect("the last handle");
        assert_eq!(report.handlers[0].events_handled, 14);
        assert_eq!(drain_seen(&seen), orders_of_producer_0(14));
    });
}

#[test]
fn concurrent_try_batch_publish_leaves_no_gap() {
    // Only `try_batch_publish`, from four threads, into a small ring: an
    // over-claimed range would never be published, and the handler (and so
    // the shutdown) would wait for it forever.
    const PER_PRODUCER: u64 = events(100_000);
    with_timeout(TEST_LIMIT, "concurrent-try-batch", || {
        let (report_to, reports) = mpsc::channel();
        let producer = build_multi_producer(16, Order::default, Yielding::new())
            .handle_events_with_handler(OrderChecker::new("a", PRODUCERS, vec![], report_to))
            .build()
            .expect("valid pipeline");
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let mut producer = producer.clone();
                thread::spawn(move || {
                    let mut random = XorShift::scrambled(u64::from(id) + 100);
                    let mut counter = 0;
                    while counter < PER_PRODUCER {
                        let batch = random.between_1_and(8.min(PER_PRODUCER - counter));
                        let first = counter;
                        match producer.try_batch_publish(batch as usize, |order, _| {
                            *order = Order::new(id, counter);
                            counter += 1;
                        }) {
                            Ok(_) => assert_eq!(counter, first + batch),
                            Err(TryPublishError::Full) => {
                                assert_eq!(counter, first, "fill called, then Full");
                                thread::yield_now();
                            }
                            Err(error) => panic!("producer {id}: {error}"),
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            join(thread);
        }
        let report = producer.shutdown().expect("the last handle");
        assert_eq!(
            report.handlers[0].events_handled,
            u64::from(PRODUCERS) * PER_PRODUCER
        );
        let checked = collect_checked(&reports, 1);
        assert_saw_every_order(&checked[0], PRODUCERS, PER_PRODUCER);
    });
}

#[test]
fn shutdown_returns_none_from_every_handle_but_the_last() {
    with_timeout(TEST_LIMIT, "shutdown-none-but-last", || {
        let (report_to, reports) = mpsc::channel();
        let mut first = build_multi_producer(64, Order::default, Blocking::new())
            .handle_events_with_handler(OrderChecker::new("a", 4, vec![], report_to))
            .build()
            .expect("valid pipeline");
        let mut handles: Vec<_> = (1..4).map(|_| first.clone()).collect();
        first
            .publish(|order| *order = Order::new(0, 0))
            .expect("publish");
        for (index, handle) in handles.iter_mut().enumerate() {
            handle
                .publish(|order| *order = Order::new(index as u32 + 1, 0))
                .expect("publish");
        }
        assert!(first.shutdown().is_none(), "not the last handle");
        let mut last = handles.pop().expect("three clones");
        for handle in handles {
            assert!(handle.shutdown().is_none(), "not the last handle");
        }
        // The pipeline still runs: the last handle publishes and it is handled.
        last.publish(|order| *order = Order::new(3, 1))
            .expect("the pipeline still runs while a handle is alive");
        let report = last.shutdown().expect("the last handle returns the report");
        assert_eq!(report.handlers.len(), 1);
        assert_eq!(report.handlers[0].events_handled, 5);
        let checked = &collect_checked(&reports, 1)[0];
        checked.failures.assert_none("a");
        assert_eq!(checked.next_counter, [1, 1, 1, 2]);
    });
}

/// `close` from one handle while three others publish from their threads:
/// each publisher stops with `Closed` (never hangs, never another error),
/// and every event published before it is handled, in each producer's
/// order, with no gap.
#[test]
fn close_while_other_handles_publish_drains_what_they_published() {
    const PUBLISHERS: u32 = 3;
    with_timeout(TEST_LIMIT, "close-while-publishing", || {
        let (report_to, reports) = mpsc::channel();
        let producer = build_multi_producer(16, Order::default, Yielding::new())
            .handle_events_with_handler(OrderChecker::new("a", PUBLISHERS, vec![], report_to))
            .build()
            .expect("valid pipeline");
        let published = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..PUBLISHERS)
            .map(|id| {
                let mut handle = producer.clone();
                let published = Arc::clone(&published);
                thread::spawn(move || {
                    let mut counter = 0u64;
                    loop {
                        let outcome = if counter % 3 == 2 {
                            handle.batch_publish(2, |order, _| {
                                *order = Order::new(id, counter);
                                counter += 1;
                            })
                        } else {
                            handle.publish(|order| {
                                *order = Order::new(id, counter);
                                counter += 1;
                            })
                        };
                        match outcome {
                            Ok(_) => {
                                published.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => return (error, counter),
                        }
                    }
                })
            })
            .collect();
        wait_until(TEST_LIMIT, "the publishers are well under way", || {
            published.load(Ordering::Relaxed) >= 1_000
        });
        let report = producer.close();
        let mut total = 0;
        let mut per_producer = Vec::new();
        for thread in threads {
            let (error, counter) = join(thread);
            assert_eq!(
                error,
                PublishError::Closed,
                "after close, publish says Closed"
            );
            per_producer.push(counter);
            total += counter;
        }
        assert_eq!(report.handlers.len(), 1);
        assert_eq!(
            report.handlers[0].events_handled, total,
            "every event published before the close is handled"
        );
        let checked = &collect_checked(&reports, 1)[0];
        checked.failures.assert_none("a");
        assert_eq!(checked.next_counter, per_producer);
        assert_eq!(checked.events, total);
    });
}

#[test]
fn a_panicking_fill_still_publishes_its_claim_and_nothing_stalls() {
    // A claimed sequence that never appeared would stall every handler, so
    // the claim is published even when `fill` panics (the type's docs).
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "panicking-fill", || {
        let (seen_by_handler, seen) = mpsc::channel();
        let mut producer = build_multi_producer(8, Order::default, Yielding::new())
            .handle_events_with(move |_: &Order, sequence, _| {
                let _ = seen_by_handler.send(sequence);
            })
            .build()
            .expect("valid pipeline");
        let mut other = producer.clone();
        assert_eq!(producer.publish(|order| *order = Order::new(0, 0)), Ok(0));
        let failed = catch_unwind(AssertUnwindSafe(|| {
            other.publish(|_| panic!("{EXPECTED_PANIC}: fill fails"))
        }));
        assert!(failed.is_err(), "the panic reaches the publisher");
        assert_eq!(producer.publish(|order| *order = Order::new(0, 1)), Ok(2));
        let failed = catch_unwind(AssertUnwindSafe(|| {
            other.batch_publish(4, |order, sequence| {
                if sequence == 4 {
                    panic!("{EXPECTED_PANIC}: fill fails mid-batch");
                }
                *order = Order::new(1, sequence as u64);
            })
        }));
        assert!(failed.is_err(), "the panic reaches the publisher");
        assert_eq!(
            other.publish(|order| *order = Order::new(1, 7)),
            Ok(7),
            "the whole failed batch (3..=6) was claimed and published"
        );
        // A ring of 8 wraps: the handler must get past every failed claim.
        for counter in 2..20 {
            producer
                .publish(|order| *order = Order::new(0, counter))
                .expect("the pipeline keeps flowing");
        }
        assert!(other.shutdown().is_none());
        let report = producer.shutdown().expect("the last handle");
        assert_eq!(report.handlers[0].events_handled, 26);
        assert_eq!(
            seen.try_iter().collect::<Vec<_>>(),
            (0..26).collect::<Vec<_>>()
        );
    });
}
