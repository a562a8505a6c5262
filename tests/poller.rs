//! `EventPoller`: a participant without a thread, consumed by calling `poll`
//! from the caller's own loop. It sees every event once, in order, intact;
//! it says why it has nothing (`Idle`, `Gating`), when it is done
//! (`ShutDown`) and when the pipeline died (`Halted`); it gates the producer
//! and the stages behind it like any handler; and a poller dropped before it
//! finished is skipped by the pipeline, so producers blocked on it go on and
//! every stage still drains at shutdown, gated as before; a live poller holds
//! the shutdown of the stages behind it until it is polled to `ShutDown` or
//! dropped.
//!
//! Elsewhere: pollers at extreme `max_batch_size` values, a chain of dropped
//! pollers drained in stage order, drop orders and a poller whose builder
//! never built (`hardening.rs`); options a poller cannot take
//! (`build_errors.rs`); pollers in random graphs (`stress.rs`).

mod common;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use common::ticks::{assert_saw_all, collect_seen, publish_ticks, Recorder, Tick};
use common::{
    events, join, mix, silence_expected_panics, wait_until, with_timeout, Failures, Gate, XorShift,
    EXPECTED_PANIC, TEST_LIMIT,
};
use tickring::builder_state::{NeedsParticipant, Ready};
use tickring::{
    build_multi_producer, build_single_producer, Blocking, Builder, EventHandler, EventPoller,
    EventProducer, PollState, PublishTimeoutError, ShutdownReport, TryPublishError, WaitStrategy,
    Yielding,
};

/// How long a poll loop may wait for a state it expects.
const POLL_LIMIT: Duration = Duration::from_secs(30);

/// Polls until `poll` reports `wanted`, checking every other report is one
/// of `allowed`; panics after a bounded wait.
fn poll_until<W: WaitStrategy>(
    poller: &mut EventPoller<Tick, W>,
    wanted: PollState,
    allowed: &[PollState],
    mut handle: impl FnMut(&Tick, i64, bool) -> bool,
) {
    let mut last = None;
    wait_until(POLL_LIMIT, &format!("poll reports {wanted:?}"), || {
        let state = poller.poll(&mut handle);
        assert!(
            state == wanted || allowed.contains(&state),
            "poll reported {state:?} while waiting for {wanted:?} (before: {last:?})"
        );
        last = Some(state);
        state == wanted
    });
}

/// Checks what a poller is handed: sequences in order from `next`, intact
/// content, and `end_of_batch` on (and only on) the last event of each poll
/// that was not stopped early.
#[derive(Debug, Default)]
struct InOrder {
    next: i64,
    failures: Failures,
}

impl InOrder {
    /// Checks one event handed out by a `poll` driven elsewhere (order and
    /// content only).
    fn poll_one(&mut self, tick: &Tick, sequence: i64, _end_of_batch: bool) -> bool {
        let expected = self.next;
        if sequence != expected || !tick.is_event(sequence) {
            self.failures
                .record(|| format!("{tick:?} at {sequence}, expected {expected}"));
        }
        self.next = sequence + 1;
        true
    }

    /// Polls once; the closure stops after sequence `stop_after`, if given.
    fn poll<W: WaitStrategy>(
        &mut self,
        poller: &mut EventPoller<Tick, W>,
        stop_after: Option<i64>,
    ) -> PollState {
        let (mut handed, mut stopped, mut last_end) = (0, false, None);
        let state = poller.poll(|tick, sequence, end_of_batch| {
            let expected = self.next;
            if sequence != expected {
                self.failures
                    .record(|| format!("got sequence {sequence}, expected {expected}"));
            }
            if !tick.is_event(sequence) {
                self.failures
                    .record(|| format!("event {sequence} holds {tick:?}"));
            }
            if last_end == Some(true) {
                self.failures
                    .record(|| format!("event {sequence} after end_of_batch in one poll"));
            }
            last_end = Some(end_of_batch);
            handed += 1;
            self.next = sequence + 1;
            stopped = stop_after.is_some_and(|last| sequence >= last);
            !stopped
        });
        match state {
            PollState::Processing if !stopped && last_end != Some(true) => {
                self.failures.record(|| {
                    format!("Processing, but the last event's end_of_batch was {last_end:?}")
                });
            }
            PollState::Processing => {}
            _ if handed > 0 => self
                .failures
                .record(|| format!("{state:?} after handing out {handed} events")),
            _ => {}
        }
        state
    }
}

/// A producer thread publishes `count` ticks into a ring of `size` and
/// shuts down; the poller, on this thread, must see each once, in order,
/// and report `ShutDown` only after the last.
fn poller_sees_every_event(size: usize, count: i64) {
    with_timeout(TEST_LIMIT, &format!("poller-ring-of-{size}"), move || {
        let (mut poller, builder) =
            build_single_producer(size, Tick::default, Yielding::new()).event_poller();
        let mut producer = builder.build().expect("valid pipeline");
        let publisher = thread::spawn(move || {
            publish_ticks(&mut producer, count);
            producer.shutdown()
        });
        let mut check = InOrder::default();
        loop {
            match check.poll(&mut poller, None) {
                PollState::Processing => {}
                PollState::Idle => thread::yield_now(),
                PollState::ShutDown => break,
                other => panic!("poll reported {other:?} with no upstream stage"),
            }
        }
        check.failures.assert_none("poller");
        assert_eq!(check.next, count, "ShutDown came after every event");
        let report = join(publisher);
        assert!(report.handlers.is_empty(), "a poller has no thread");
        assert_eq!(
            poller.poll(|_, sequence, _| panic!("handed {sequence} after ShutDown")),
            PollState::ShutDown
        );
    });
}

#[test]
fn poller_sees_every_event_once_in_order_ring_of_1() {
    poller_sees_every_event(1, events(1_000_000) as i64);
}

#[test]
fn poller_sees_every_event_once_in_order_ring_of_64() {
    poller_sees_every_event(64, events(1_000_000) as i64);
}

#[test]
fn poller_sees_every_event_once_in_order_ring_of_4096() {
    poller_sees_every_event(4096, events(1_000_000) as i64);
}

/// One producer's `counter`-th event, with a check word derived from both
/// (a multi-producer `fill` does not know its sequence, so the shared
/// `Tick`, derived from the sequence, cannot tell the producers apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Order {
    producer: u64,
    counter: u64,
    check: u64,
}

impl Order {
    fn of(producer: u64, counter: u64) -> Self {
        Self {
            producer,
            counter,
            check: mix((producer << 48) ^ counter),
        }
    }
}

#[test]
fn multi_producer_poller_sees_every_event_once_in_each_producers_order() {
    const PRODUCERS: u64 = 3;
    let per_producer = events(200_000);
    with_timeout(TEST_LIMIT, "multi-producer-poller", move || {
        let (mut poller, builder) =
            build_multi_producer(64, Order::default, Yielding::new()).event_poller();
        let producer = builder.build().expect("valid pipeline");
        let publishers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let mut producer = producer.clone();
                thread::spawn(move || {
                    let mut random = XorShift::scrambled(id + 1);
                    let mut counter = 0;
                    while counter < per_producer {
                        if random.chance(1, 2) {
                            producer
                                .publish(|order| *order = Order::of(id, counter))
                                .expect("publish");
                            counter += 1;
                        } else {
                            let batch = random.between_1_and(4).min(per_producer - counter);
                            let mut next = counter;
                            producer
                                .batch_publish(batch as usize, |order, _| {
                                    *order = Order::of(id, next);
                                    next += 1;
                                })
                                .expect("batch_publish");
                            counter += batch;
                        }
                    }
                })
            })
            .collect();
        let shutdown = thread::spawn(move || {
            for publisher in publishers {
                join(publisher);
            }
            producer.shutdown().expect("the last handle reports")
        });
        let mut next_counter = vec![0; PRODUCERS as usize];
        let mut next_sequence = 0;
        let mut failures = Failures::default();
        loop {
            let state = poller.poll(|order, sequence, _| {
                if sequence != next_sequence {
                    failures.record(|| format!("sequence {sequence}, expected {next_sequence}"));
                }
                next_sequence = sequence + 1;
                let intact = *order == Order::of(order.producer, order.counter);
                match next_counter.get_mut(order.producer as usize) {
                    Some(next) if intact && *next == order.counter => *next += 1,
                    _ => failures.record(|| format!("unexpected {order:?} at {sequence}")),
                }
                true
            });
            match state {
                PollState::Processing => {}
                PollState::Idle => thread::yield_now(),
                PollState::ShutDown => break,
                other => panic!("poll reported {other:?}"),
            }
        }
        failures.assert_none("poller");
        assert_eq!(next_counter, vec![per_producer; PRODUCERS as usize]);
        assert_eq!(next_sequence as u64, PRODUCERS * per_producer);
        assert!(join(shutdown).handlers.is_empty(), "a poller has no thread");
    });
}

#[test]
fn poll_reports_idle_gating_processing_and_shut_down() {
    with_timeout(TEST_LIMIT, "poll-states", || {
        let (keeper, held) = Gate::closed();
        let (mut poller, builder) = build_single_producer(8, Tick::default, Blocking::new())
            .thread_name("upstream")
            .handle_events_with(move |_: &Tick, sequence, _| {
                if sequence == 0 {
                    held.wait();
                }
            })
            .and_then()
            .event_poller();
        let mut producer = builder.build().expect("valid pipeline");
        // Bound after the producer, so a failed assertion drops it (opening
        // the gate) before the producer's drop waits for the held handler.
        let gate = keeper;
        let seen = RefCell::new(Vec::new());
        let mut record = |tick: &Tick, sequence: i64, _: bool| {
            assert!(tick.is_event(sequence), "{sequence}: {tick:?}");
            seen.borrow_mut().push(sequence);
            true
        };

        assert_eq!(
            poller.poll(&mut record),
            PollState::Idle,
            "nothing published"
        );
        producer.publish(|tick| tick.fill(0)).expect("publish");
        for _ in 0..3 {
            assert_eq!(
                poller.poll(&mut record),
                PollState::Gating,
                "event 0 is published, but the upstream handler holds it"
            );
        }
        gate.open();
        poll_until(
            &mut poller,
            PollState::Processing,
            &[PollState::Gating],
            &mut record,
        );
        assert_eq!(
            poller.poll(&mut record),
            PollState::Idle,
            "everything published is handled"
        );

        for sequence in 1..=3 {
            producer
                .publish(|tick| tick.fill(sequence))
                .expect("publish");
        }
        wait_until(POLL_LIMIT, "events 1..=3 are polled", || {
            let state = poller.poll(&mut record);
            assert!(
                matches!(state, PollState::Processing | PollState::Gating),
                "{state:?} with published events not yet handled"
            );
            seen.borrow().len() == 4
        });
        assert_eq!(*seen.borrow(), [0, 1, 2, 3]);

        // Two more, left unpolled: shutdown drains the upstream handler, and
        // the poller gets them before it reports ShutDown.
        for sequence in 4..=5 {
            producer
                .publish(|tick| tick.fill(sequence))
                .expect("publish");
        }
        let report = producer.shutdown();
        assert_eq!(
            report.handler("upstream").map(|h| h.events_handled),
            Some(6)
        );
        assert_eq!(poller.poll(&mut record), PollState::Processing);
        assert_eq!(*seen.borrow(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(poller.poll(&mut record), PollState::ShutDown);
        assert_eq!(poller.poll(&mut record), PollState::ShutDown);
        assert_eq!(seen.borrow().len(), 6, "nothing handed out with ShutDown");
    });
}

/// A handler that panics (an expected panic) at `sequence`.
fn fails_at(sequence: i64) -> impl FnMut(&Tick, i64, bool) + Send + 'static {
    move |_, at, _| {
        if at == sequence {
            panic!("{EXPECTED_PANIC}: the handler fails at {at}");
        }
    }
}

#[test]
fn poll_reports_halted_when_an_upstream_handler_panics() {
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "poll-halted", || {
        let (mut poller, builder) = build_single_producer(8, Tick::default, Yielding::new())
            .handle_events_with(fails_at(2))
            .and_then()
            .event_poller();
        let mut producer = builder.build().expect("valid pipeline");
        // One call: the handler cannot halt the pipeline half-way through it.
        producer
            .batch_publish(4, |tick, sequence| tick.fill(sequence))
            .expect("room in the ring");
        let mut seen = Vec::new();
        poll_until(
            &mut poller,
            PollState::Halted,
            &[PollState::Processing, PollState::Gating, PollState::Idle],
            |tick, sequence, _| {
                assert!(tick.is_event(sequence), "{sequence}: {tick:?}");
                seen.push(sequence);
                true
            },
        );
        // Halt does not drain: the poller may or may not get the events the
        // upstream finished before the panic, but never the one that failed.
        assert_eq!(
            seen,
            [0, 1][..seen.len()],
            "only events the upstream finished"
        );
        assert_eq!(
            poller.poll(|_, sequence, _| panic!("handed {sequence} after Halted")),
            PollState::Halted
        );
        let report = producer.shutdown();
        assert_eq!(
            report.first_panic().and_then(|panic| panic.sequence),
            Some(2)
        );
    });
}

#[test]
fn a_halt_by_a_sibling_thread_stops_a_poll_before_its_next_event() {
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "poll-halted-mid-window", || {
        // The handler thread beside the poller fails at 0 and halts the
        // pipeline while the poller is inside a window of 1..=3.
        let (mut poller, builder) = build_single_producer(4, Tick::default, Yielding::new())
            .handle_events_with(fails_at(0))
            .event_poller();
        let mut producer = builder.build().expect("valid pipeline");
        producer
            .batch_publish(4, |tick, sequence| tick.fill(sequence))
            .expect("room in the ring");
        let mut seen = Vec::new();
        let mut handle = |tick: &Tick, sequence: i64, _| {
            assert!(tick.is_event(sequence), "{sequence}: {tick:?}");
            seen.push(sequence);
            if sequence == 1 {
                // The ring is full (the poller holds it), so a publish
                // fails with `Full` until the halt, then with `Halted`.
                wait_until(POLL_LIMIT, "the sibling's halt", || {
                    match producer.try_publish(|tick| tick.fill(99)) {
                        Err(TryPublishError::Halted) => true,
                        Err(TryPublishError::Full) => false,
                        other => panic!("a publish into a full ring: {other:?}"),
                    }
                });
            }
            true
        };
        // The first window hands out 0 alone; the second holds 1..=3.
        assert_eq!(poller.poll(&mut handle), PollState::Processing);
        assert_eq!(seen, [0, 1], "nothing started after the halt");
        assert_eq!(
            poller.poll(|_, sequence, _| panic!("handed {sequence} after the halt")),
            PollState::Halted
        );
        let report = producer.shutdown();
        assert_eq!(
            report.first_panic().and_then(|panic| panic.sequence),
            Some(0)
        );
    });
}

#[test]
fn returning_false_stops_early_and_the_rest_comes_next_poll() {
    with_timeout(TEST_LIMIT, "poll-stop-early", || {
        let (mut poller, builder) =
            build_single_producer(64, Tick::default, Yielding::new()).event_poller();
        let mut producer = builder.build().expect("valid pipeline");
        for sequence in 0..10 {
            producer
                .publish(|tick| tick.fill(sequence))
                .expect("publish");
        }
        assert_eq!(producer.remaining_capacity(), 54);

        let mut first = Vec::new();
        let state = poller.poll(|tick, sequence, end_of_batch| {
            assert!(tick.is_event(sequence));
            first.push((sequence, end_of_batch));
            sequence < 2 // stop after the third
        });
        assert_eq!(state, PollState::Processing);
        assert_eq!(first, [(0, false), (1, false), (2, false)]);
        assert_eq!(
            producer.remaining_capacity(),
            57,
            "the three handled events are released, the rest are not"
        );

        let mut check = InOrder {
            next: 3,
            ..InOrder::default()
        };
        assert_eq!(check.poll(&mut poller, None), PollState::Processing);
        check.failures.assert_none("the rest");
        assert_eq!(check.next, 10, "the rest, from where it stopped");
        assert_eq!(producer.remaining_capacity(), 64);
        assert_eq!(poller.poll(|_, _, _| true), PollState::Idle);
        drop(producer);
        assert_eq!(poller.poll(|_, _, _| true), PollState::ShutDown);
    });
}

#[test]
fn a_panicking_poll_closure_gets_the_event_again_next_poll() {
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "poll-closure-panics", || {
        let (mut poller, builder) =
            build_single_producer(16, Tick::default, Yielding::new()).event_poller();
        let mut producer = builder.build().expect("valid pipeline");
        for sequence in 0..8 {
            producer
                .publish(|tick| tick.fill(sequence))
                .expect("publish");
        }
        let mut seen = Vec::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            poller.poll(|_, sequence, _| {
                if sequence == 5 {
                    panic!("{EXPECTED_PANIC}: the closure fails at 5");
                }
                seen.push(sequence);
                true
            })
        }));
        assert!(outcome.is_err(), "the closure's panic reaches the caller");
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        assert_eq!(producer.remaining_capacity(), 16 - 3, "0..=4 released");
        let mut check = InOrder {
            next: 5,
            ..InOrder::default()
        };
        assert_eq!(check.poll(&mut poller, None), PollState::Processing);
        check.failures.assert_none("after the panic");
        assert_eq!(check.next, 8, "the failed event is handed out again");
    });
}

#[test]
fn a_poller_gates_the_producer() {
    with_timeout(TEST_LIMIT, "poller-gates-producer", || {
        let (mut poller, builder) = build_single_producer(8, Tick::default, Yielding::new())
            .thread_name("slow")
            .event_poller();
        let mut producer = builder.build().expect("valid pipeline");
        assert_eq!(poller.name(), "slow");
        for sequence in 0..8 {
            assert_eq!(
                producer.try_publish(|tick| tick.fill(sequence)),
                Ok(sequence)
            );
        }
        assert_eq!(
            producer.handler_lags().collect::<Vec<_>>(),
            [("slow", 8)],
            "the poller is listed by its name, a full ring behind"
        );
        let mut called = false;
        assert_eq!(
            producer.try_publish(|_| called = true),
            Err(TryPublishError::Full),
            "the poller has not polled: the ring is full"
        );
        assert!(!called);
        assert_eq!(
            producer.publish_timeout(Duration::from_millis(10), |_| called = true),
            Err(PublishTimeoutError::TimedOut)
        );
        assert!(!called);

        let mut check = InOrder::default();
        assert_eq!(check.poll(&mut poller, Some(0)), PollState::Processing);
        assert_eq!(check.next, 1, "one event only");
        assert_eq!(
            producer.try_publish(|tick| tick.fill(8)),
            Ok(8),
            "one slot freed"
        );
        assert_eq!(
            producer.try_publish(|_| called = true),
            Err(TryPublishError::Full)
        );
        assert!(!called);
        assert_eq!(check.poll(&mut poller, None), PollState::Processing);
        check.failures.assert_none("poller");
        assert_eq!(check.next, 9);
        drop(producer);

        // The same for a multi-producer pipeline, from two handles.
        let (mut poller, builder) =
            build_multi_producer(4, Tick::default, Yielding::new()).event_poller();
        let producer = builder.build().expect("valid pipeline");
        let mut handles = [producer.clone(), producer];
        for sequence in 0..4 {
            let handle = &mut handles[sequence as usize % 2];
            assert_eq!(
                handle.batch_publish(1, |tick, sequence| tick.fill(sequence)),
                Ok(sequence)
            );
        }
        for handle in &mut handles {
            assert_eq!(
                handle.try_publish(|_| called = true),
                Err(TryPublishError::Full)
            );
            assert_eq!(
                handle.publish_timeout(Duration::from_millis(10), |_| called = true),
                Err(PublishTimeoutError::TimedOut)
            );
        }
        assert!(!called);
        let mut check = InOrder::default();
        assert_eq!(check.poll(&mut poller, None), PollState::Processing);
        assert_eq!(check.next, 4);
        assert_eq!(handles[1].remaining_capacity(), 4);
        assert_eq!(
            handles[1].try_batch_publish(1, |tick, sequence| tick.fill(sequence)),
            Ok(4)
        );
        drop(handles);
        poll_until(
            &mut poller,
            PollState::ShutDown,
            &[PollState::Processing],
            |tick, sequence, end_of_batch| check.poll_one(tick, sequence, end_of_batch),
        );
        check.failures.assert_none("multi-producer poller");
        assert_eq!(check.next, 5, "the last event before ShutDown");
    });
}

#[test]
fn a_poller_in_the_middle_gates_the_stage_behind_it() {
    // handler → poller (on a thread of its own) → handler, with the
    // blocking strategy: the handler behind sleeps until the poller's
    // progress wakes it.
    let count = events(200_000) as i64;
    with_timeout(TEST_LIMIT, "poller-in-the-middle", move || {
        let (reports, seen) = mpsc::channel();
        let before = Recorder::new("before", Vec::new(), reports.clone());
        let before_done = before.progress();
        let polled = Arc::new(AtomicI64::new(-1));
        let after = Recorder::new("after", vec![Arc::clone(&polled)], reports);
        let (mut poller, builder) = build_single_producer(64, Tick::default, Blocking::new())
            .thread_name("before")
            .handle_events_with_handler(before)
            .and_then()
            .thread_name("middle")
            .event_poller();
        let mut producer = builder
            .and_then()
            .thread_name("after")
            .handle_events_with_handler(after)
            .build()
            .expect("valid pipeline");
        assert_eq!(poller.name(), "middle");
        // The poller moves to a thread of its own (it is `Send`); this thread
        // publishes and shuts down, which returns only once "after" has
        // drained, which needs the poller.
        let polling = thread::spawn(move || {
            let mut check = InOrder::default();
            let mut gating = Failures::default();
            loop {
                let state = poller.poll(|tick, sequence, end_of_batch| {
                    let upstream = before_done.load(Ordering::Acquire);
                    if upstream < sequence {
                        gating.record(|| {
                            format!("handed {sequence} before 'before' finished it ({upstream})")
                        });
                    }
                    let keep_going = check.poll_one(tick, sequence, end_of_batch);
                    polled.store(sequence, Ordering::Release);
                    keep_going
                });
                match state {
                    PollState::Processing => {}
                    PollState::Idle | PollState::Gating => thread::yield_now(),
                    PollState::ShutDown => return (check, gating),
                    other => panic!("poll reported {other:?}"),
                }
            }
        });
        publish_ticks(&mut producer, count);
        let report = producer.shutdown();
        let (check, gating) = join(polling);
        check.failures.assert_none("poller");
        gating.assert_none("poller");
        assert_eq!(check.next, count, "ShutDown came after every event");
        for seen in collect_seen(&seen, 2) {
            assert_saw_all(&seen, count);
        }
        for name in ["before", "after"] {
            let handler = report.handler(name).expect("a report per handler");
            assert_eq!(handler.panic, None, "{name}");
            assert_eq!(handler.events_handled, count as u64, "{name}");
        }
    });
}

/// Publishes the event at the next sequence through either kind of
/// producer (`batch_publish` hands `fill` its sequence).
fn publish_next(producer: &mut impl EventProducer<Tick>) -> i64 {
    producer
        .batch_publish(1, |tick, sequence| tick.fill(sequence))
        .expect("publish")
}

/// Publishing threads (one event per call) fill a ring of 8 behind a
/// poller that polls 20 events and stops: they block on it. Dropping the poller releases them,
/// and the handler beside it and the one behind it see every event.
fn dropped_poller_releases_blocked_producers<K, P>(
    start: Builder<Tick, Yielding, K, NeedsParticipant>,
    build: impl FnOnce(Builder<Tick, Yielding, K, Ready>) -> P,
    publish_all: impl FnOnce(P, i64) -> thread::JoinHandle<ShutdownReport>,
) {
    const SIZE: i64 = 8;
    const POLLED: i64 = 20;
    const EVENTS: i64 = 5_000;
    let (reports, seen) = mpsc::channel();
    let beside = Recorder::new("beside", Vec::new(), reports.clone());
    let beside_done = beside.progress();
    let behind = Recorder::new("behind", vec![beside.progress()], reports);
    let (mut poller, builder) = start
        .thread_name("beside")
        .handle_events_with_handler(beside)
        .event_poller();
    let producer = build(
        builder
            .and_then()
            .thread_name("behind")
            .handle_events_with_handler(behind),
    );
    let publishing = publish_all(producer, EVENTS);
    let mut check = InOrder::default();
    wait_until(POLL_LIMIT, "the poller gets its events", || {
        let state = check.poll(&mut poller, Some(POLLED - 1));
        assert!(
            matches!(state, PollState::Processing | PollState::Idle),
            "{state:?}"
        );
        check.next == POLLED
    });
    check.failures.assert_none("poller");
    // The poller finished 0..POLLED: the producers fill the ring up to it.
    let full = POLLED - 1 + SIZE;
    wait_until(POLL_LIMIT, "the ring fills up behind the poller", || {
        beside_done.load(Ordering::Acquire) == full
    });
    thread::sleep(Duration::from_millis(20));
    assert_eq!(
        beside_done.load(Ordering::Acquire),
        full,
        "nothing is published past a live poller that does not poll"
    );
    assert!(
        !publishing.is_finished(),
        "the producers wait for the poller"
    );
    drop(poller);
    let report = join(publishing);
    for name in ["beside", "behind"] {
        let handler = report.handler(name).expect("a report per handler");
        assert_eq!(handler.panic, None, "{name}");
        assert_eq!(handler.events_handled, EVENTS as u64, "{name}");
    }
    for seen in collect_seen(&seen, 2) {
        assert_saw_all(&seen, EVENTS);
    }
}

#[test]
fn dropping_a_poller_releases_the_producers_blocked_on_it() {
    with_timeout(TEST_LIMIT, "dropped-poller-single", || {
        dropped_poller_releases_blocked_producers(
            build_single_producer(8, Tick::default, Yielding::new()),
            |builder| builder.build().expect("valid pipeline"),
            |mut producer, events| {
                thread::spawn(move || {
                    // One event per call, so the ring fills to the last slot.
                    for _ in 0..events {
                        publish_next(&mut producer);
                    }
                    producer.shutdown()
                })
            },
        );
    });
    with_timeout(TEST_LIMIT, "dropped-poller-multi", || {
        dropped_poller_releases_blocked_producers(
            build_multi_producer(8, Tick::default, Yielding::new()),
            |builder| builder.build().expect("valid pipeline"),
            |producer, events| {
                // Two handles publish half each; the last to let go reports.
                let threads: Vec<_> = [producer.clone(), producer]
                    .into_iter()
                    .map(|mut handle| {
                        thread::spawn(move || {
                            for _ in 0..events / 2 {
                                publish_next(&mut handle);
                            }
                            handle.shutdown()
                        })
                    })
                    .collect();
                thread::spawn(move || {
                    let mut reports: Vec<_> = threads.into_iter().filter_map(join).collect();
                    assert_eq!(reports.len(), 1, "exactly the last handle reports");
                    reports.pop().expect("one report")
                })
            },
        );
    });
}

/// Holds its handler at event 0 until the test opens the gate.
struct HeldAtFirst {
    recorder: Recorder,
    gate: Option<Gate>,
}

impl EventHandler<Tick> for HeldAtFirst {
    fn on_event(&mut self, tick: &Tick, sequence: i64, end_of_batch: bool) {
        if let Some(gate) = self.gate.take() {
            gate.wait();
        }
        self.recorder.on_event(tick, sequence, end_of_batch);
    }
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        self.recorder.on_batch_start(batch_size, queue_depth);
    }
    fn on_shutdown(&mut self) {
        self.recorder.on_shutdown();
    }
}

/// `upstream` (held at event 0) → { `beside`, a poller dropped before
/// `build()` or right after } → `behind`. `EVENTS` are published, then the
/// shutdown begins on another thread while `upstream` still holds them all.
/// Every stage must drain (contract 6; the poller docs: a dropped poller's
/// events are skipped at shutdown), and `behind` may see an event only
/// after `upstream` and `beside` finished it, whatever the dropped poller
/// (contract 2).
fn dropped_poller_drains_at_shutdown<K, P>(
    start: Builder<Tick, Yielding, K, NeedsParticipant>,
    drop_before_build: bool,
    build: impl FnOnce(Builder<Tick, Yielding, K, Ready>) -> P,
    shut_down: impl FnOnce(P) -> ShutdownReport + Send + 'static,
) where
    P: EventProducer<Tick> + Send + 'static,
{
    const EVENTS: i64 = 500;
    let (reports, seen) = mpsc::channel();
    let (keeper, held) = Gate::closed();
    let upstream = Recorder::new("upstream", Vec::new(), reports.clone());
    let upstream_done = upstream.progress();
    let beside = Recorder::new("beside", vec![Arc::clone(&upstream_done)], reports.clone());
    let behind = Recorder::new(
        "behind",
        vec![Arc::clone(&upstream_done), beside.progress()],
        reports,
    );
    let (poller, builder) = start
        .thread_name("upstream")
        .handle_events_with_handler(HeldAtFirst {
            recorder: upstream,
            gate: Some(held),
        })
        .and_then()
        .thread_name("beside")
        .handle_events_with_handler(beside)
        .event_poller();
    let builder = builder
        .and_then()
        .thread_name("behind")
        .handle_events_with_handler(behind);
    let mut poller = Some(poller);
    if drop_before_build {
        drop(poller.take());
    }
    let mut producer = build(builder);
    drop(poller);
    let gate = keeper; // dropped (opening the gate) before the producer
    for _ in 0..EVENTS {
        publish_next(&mut producer);
    }
    let shutdown = thread::spawn(move || shut_down(producer));
    // Give the shutdown time to begin while "upstream" holds every event.
    thread::sleep(Duration::from_millis(50));
    assert!(
        !shutdown.is_finished(),
        "the shutdown waits for the held handler"
    );
    gate.open();
    let report = join(shutdown);
    for name in ["upstream", "beside", "behind"] {
        let handler = report.handler(name).expect("a report per handler");
        assert_eq!(handler.panic, None, "{name}");
        assert_eq!(
            handler.events_handled, EVENTS as u64,
            "'{name}' drains at shutdown, a dropped poller beside or before it"
        );
    }
    for seen in collect_seen(&seen, 3) {
        assert_saw_all(&seen, EVENTS);
    }
}

#[test]
fn a_dropped_poller_lets_every_stage_drain_at_shutdown_gated_as_before() {
    for drop_before_build in [true, false] {
        with_timeout(TEST_LIMIT, "dropped-poller-drains-single", move || {
            dropped_poller_drains_at_shutdown(
                build_single_producer(1024, Tick::default, Yielding::new()),
                drop_before_build,
                |builder| builder.build().expect("valid pipeline"),
                |producer| producer.shutdown(),
            );
        });
        with_timeout(TEST_LIMIT, "dropped-poller-drains-multi", move || {
            dropped_poller_drains_at_shutdown(
                build_multi_producer(1024, Tick::default, Yielding::new()),
                drop_before_build,
                |builder| builder.build().expect("valid pipeline"),
                |producer| producer.shutdown().expect("the last handle reports"),
            );
        });
    }
}

/// poller → behind (Blocking: "behind" sleeps until the poller's progress
/// wakes it). The shutdown starts before the poller has polled anything; it
/// must wait for the poller (it is live, and "behind" depends on it), then
/// drain "behind" once the poller is polled to `ShutDown` on another thread,
/// or dropped there (the poller docs: "poll it to `ShutDown` (from any
/// thread) or drop it").
fn shutdown_waits_for_a_live_poller(drop_it: bool) {
    const EVENTS: i64 = 100;
    let (reports, seen) = mpsc::channel();
    let polled = Arc::new(AtomicI64::new(-1));
    let upstream = if drop_it {
        Vec::new() // a dropped poller's progress cannot be watched
    } else {
        vec![Arc::clone(&polled)]
    };
    let (mut poller, builder) =
        build_single_producer(128, Tick::default, Blocking::new()).event_poller();
    let mut producer = builder
        .and_then()
        .thread_name("behind")
        .handle_events_with_handler(Recorder::new("behind", upstream, reports))
        .build()
        .expect("valid pipeline");
    publish_ticks(&mut producer, EVENTS);
    let shutdown = thread::spawn(move || producer.shutdown());
    thread::sleep(Duration::from_millis(50));
    assert!(
        !shutdown.is_finished(),
        "the shutdown waits for the live poller the stage behind depends on"
    );
    let polling = thread::spawn(move || {
        if drop_it {
            drop(poller);
            return EVENTS;
        }
        let mut check = InOrder::default();
        poll_until(
            &mut poller,
            PollState::ShutDown,
            &[PollState::Processing],
            |tick, sequence, end_of_batch| {
                let keep_going = check.poll_one(tick, sequence, end_of_batch);
                polled.store(sequence, Ordering::Release);
                keep_going
            },
        );
        check.failures.assert_none("poller");
        check.next
    });
    assert_eq!(join(polling), EVENTS, "the poller saw every event");
    let how = if drop_it {
        "dropped"
    } else {
        "polled to ShutDown"
    };
    wait_until(
        Duration::from_secs(10),
        &format!("the shutdown returns once the poller it waits for is {how}"),
        || shutdown.is_finished(),
    );
    let report = join(shutdown);
    let behind = report.handler("behind").expect("behind's report");
    assert_eq!(behind.events_handled, EVENTS as u64, "{behind:?}");
    assert_saw_all(&collect_seen(&seen, 1)[0], EVENTS);
}

#[test]
fn shutdown_waits_for_a_live_poller_until_it_is_polled_to_the_end() {
    with_timeout(TEST_LIMIT, "shutdown-waits-for-poller", || {
        shutdown_waits_for_a_live_poller(false);
    });
}

#[test]
fn shutdown_waits_for_a_live_poller_until_it_is_dropped() {
    with_timeout(TEST_LIMIT, "shutdown-waits-for-dropped-poller", || {
        shutdown_waits_for_a_live_poller(true);
    });
}

#[test]
fn max_batch_size_caps_what_one_poll_hands_out() {
    with_timeout(TEST_LIMIT, "poller-max-batch", || {
        let (mut poller, builder) = build_single_producer(64, Tick::default, Yielding::new())
            .max_batch_size(4)
            .event_poller();
        let mut producer = builder.build().expect("valid pipeline");
        producer
            .batch_publish(10, |tick, sequence| tick.fill(sequence))
            .expect("room");
        let mut polls = Vec::new();
        for _ in 0..3 {
            let mut handed = Vec::new();
            let state = poller.poll(|tick, sequence, end_of_batch| {
                assert!(tick.is_event(sequence));
                handed.push((sequence, end_of_batch));
                true
            });
            assert_eq!(state, PollState::Processing);
            polls.push(handed);
        }
        assert_eq!(
            polls,
            [
                vec![(0, false), (1, false), (2, false), (3, true)],
                vec![(4, false), (5, false), (6, false), (7, true)],
                vec![(8, false), (9, true)],
            ]
        );
        assert_eq!(poller.poll(|_, _, _| true), PollState::Idle);
    });
}

/// A poll scans in windows that double (1, 2, 4, ...): whatever event the
/// closure stops at, inside a window or at its edge, the next poll goes on
/// from the one after it, and `end_of_batch` marks exactly the last event
/// of each poll that ran to the end (the limit, or the last published).
#[test]
fn a_poll_stopped_anywhere_goes_on_from_the_next_event() {
    with_timeout(TEST_LIMIT, "poller-windows", || {
        const PUBLISHED: i64 = 200;
        let (mut poller, builder) = build_single_producer(256, Tick::default, Yielding::new())
            .max_batch_size(100)
            .event_poller();
        let mut producer = builder.build().expect("valid pipeline");
        producer
            .batch_publish(PUBLISHED as usize, |tick, sequence| tick.fill(sequence))
            .expect("room");
        let mut check = InOrder::default();
        // Stops inside and at the edges of the windows 1, 2, 4, 8, 16, 32.
        for take in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33] {
            let stop_after = check.next + take - 1;
            assert_eq!(
                check.poll(&mut poller, Some(stop_after)),
                PollState::Processing
            );
            assert_eq!(check.next, stop_after + 1, "stopped after {take}");
        }
        // 183 taken so far; the rest in one poll, the last marked.
        let mut ends = Vec::new();
        let state = poller.poll(|tick, sequence, end_of_batch| {
            assert!(tick.is_event(sequence));
            assert_eq!(sequence, check.next);
            check.next += 1;
            ends.push(end_of_batch);
            true
        });
        assert_eq!(state, PollState::Processing);
        assert_eq!(check.next, PUBLISHED);
        assert_eq!(ends.iter().filter(|end| **end).count(), 1);
        assert_eq!(ends.last(), Some(&true));
        check.failures.assert_none("windowed poller");
        assert_eq!(poller.poll(|_, _, _| true), PollState::Idle);
        // A whole limit's worth: 100 events, the 100th marked.
        producer
            .batch_publish(150, |tick, sequence| tick.fill(sequence))
            .expect("room");
        let mut handed = Vec::new();
        poller.poll(|_, sequence, end_of_batch| {
            handed.push((sequence, end_of_batch));
            true
        });
        assert_eq!(handed.len(), 100);
        assert_eq!(handed[99], (PUBLISHED + 99, true));
        assert!(handed[..99].iter().all(|(_, end)| !end));
    });
}

// A producer that only ever calls `try_*` is not held back by a dropped
// poller: the pipeline skips the poller's events on those calls too.
#[test]
fn try_publish_alone_gets_past_a_dropped_poller() {
    with_timeout(
        Duration::from_secs(30),
        "try_publish past a dropped poller",
        || {
            let (poller, builder) =
                tickring::build_single_producer(4, || 0u64, Yielding::new()).event_poller();
            let mut single = builder.build().unwrap();
            drop(poller);
            for value in 0..100 {
                assert_eq!(single.try_publish(|event| *event = value), Ok(value as i64));
            }
            let _ = single.shutdown();

            let (poller, builder) =
                tickring::build_multi_producer(4, || 0u64, Yielding::new()).event_poller();
            let mut multi = builder.build().unwrap();
            drop(poller);
            for value in 0..100 {
                assert_eq!(
                    multi.try_batch_publish(1, |event, _| *event = value),
                    Ok(value as i64)
                );
            }
            assert!(multi.shutdown().is_some());
        },
    );
}
