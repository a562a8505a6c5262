//! `EventPoller`: a participant without a thread, consumed by calling `poll`
//! from the caller's own loop. It sees every event once, in order; it says
//! why it has nothing (`Idle`, `Gating`), when it is done (`ShutDown`) and
//! when the pipeline died (`Halted`); it gates the producer and the stages
//! behind it like any handler; and dropping it unpolled halts the pipeline
//! instead of hanging it.

mod common_mp;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common_mp::{
    events, join, scaled, silence_expected_panics, with_timeout, Failures, Gate, XorShift,
    EXPECTED_PANIC, TEST_LIMIT,
};
use tickring::{
    build_multi_producer, build_single_producer, Blocking, Builder, EventHandler, EventPoller,
    PollState, PublishError, ShutdownReport, TryPublishError, WaitStrategy, Yielding,
};

/// An event whose content is a function of the sequence it was published at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Quote {
    sequence: i64,
    price: u64,
}

impl Quote {
    fn at(sequence: i64) -> Self {
        Self {
            sequence,
            price: Self::price_at(sequence),
        }
    }

    fn price_at(sequence: i64) -> u64 {
        (sequence as u64).wrapping_mul(0x9E37_79B9).rotate_left(7) ^ 0x5555
    }

    fn is_quote(&self, sequence: i64) -> bool {
        *self == Self::at(sequence)
    }
}

/// Polls until `poll` reports `wanted`, checking every other report is one
/// of `allowed`; panics after a bounded wait.
fn poll_until<W: WaitStrategy>(
    poller: &mut EventPoller<Quote, W>,
    wanted: PollState,
    allowed: &[PollState],
    mut handle: impl FnMut(&Quote, i64, bool) -> bool,
) {
    let deadline = Instant::now() + scaled(Duration::from_secs(30));
    loop {
        let state = poller.poll(&mut handle);
        if state == wanted {
            return;
        }
        assert!(
            allowed.contains(&state),
            "poll reported {state:?} while waiting for {wanted:?}"
        );
        assert!(
            Instant::now() < deadline,
            "poll never reported {wanted:?} (last: {state:?})"
        );
        thread::yield_now();
    }
}

/// Checks what a poller is handed: sequences in order from `next`, intact
/// content, and `end_of_batch` on (and only on) the last event of each poll.
#[derive(Debug, Default)]
struct InOrder {
    next: i64,
    /// `end_of_batch` of the last event handed out by the current poll.
    last_end_of_batch: Option<bool>,
    failures: Failures,
}

impl InOrder {
    fn handle(&mut self, quote: &Quote, sequence: i64, end_of_batch: bool) -> bool {
        let expected = self.next;
        if sequence != expected {
            self.failures
                .record(|| format!("got sequence {sequence}, expected {expected}"));
        }
        if !quote.is_quote(sequence) {
            self.failures
                .record(|| format!("event {sequence} holds {quote:?}"));
        }
        if self.last_end_of_batch == Some(true) {
            self.failures
                .record(|| format!("an event ({sequence}) after end_of_batch in one poll"));
        }
        self.last_end_of_batch = Some(end_of_batch);
        self.next = sequence + 1;
        true
    }

    /// Ends one poll: if it handed out events, the last one ended the batch.
    fn end_poll(&mut self, state: PollState) {
        match (state, self.last_end_of_batch.take()) {
            (PollState::Processing, Some(true)) => {}
            (PollState::Processing, last) => self
                .failures
                .record(|| format!("Processing, but the last event's end_of_batch was {last:?}")),
            (_, None) => {}
            (state, Some(_)) => self
                .failures
                .record(|| format!("{state:?} after handing out events")),
        }
    }
}

/// Publishes quotes `0..count`, mixing single publishes with batches.
fn publish_quotes<W: WaitStrategy>(producer: &mut tickring::Producer<Quote, W>, count: i64) {
    let largest_batch = (producer.capacity() as u64).min(32);
    let mut random = XorShift::scrambled(7);
    let mut published = 0;
    while published < count {
        if random.next_u64() % 2 == 0 {
            let sequence = producer
                .publish(|quote| *quote = Quote::at(published))
                .expect("publish");
            assert_eq!(sequence, published);
            published += 1;
        } else {
            let batch = random.between_1_and(largest_batch.min((count - published) as u64));
            let last = producer
                .batch_publish(batch as usize, |quote, sequence| {
                    *quote = Quote::at(sequence)
                })
                .expect("batch_publish");
            published += batch as i64;
            assert_eq!(last, published - 1);
        }
    }
}

/// A producer thread publishes `count` quotes into a ring of `size` and
/// shuts down; the poller, on this thread, must see each once, in order,
/// and report `ShutDown` only after the last.
fn poller_sees_every_event(size: usize, count: i64) {
    with_timeout(TEST_LIMIT, move || {
        let mut producer = build_single_producer(size, Quote::default, Yielding::new())
            .add_poller("inline")
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("inline").expect("added above");
        let publisher = thread::spawn(move || {
            publish_quotes(&mut producer, count);
            producer.shutdown()
        });
        let mut check = InOrder::default();
        loop {
            let state = poller
                .poll(|quote, sequence, end_of_batch| check.handle(quote, sequence, end_of_batch));
            check.end_poll(state);
            match state {
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

#[test]
fn multi_producer_poller_sees_every_event_once_in_each_producers_order() {
    const PRODUCERS: u64 = 3;
    let per_producer = events(200_000);
    with_timeout(TEST_LIMIT, move || {
        // Events carry (producer, its counter) in `sequence` / `price`.
        let producer = build_multi_producer(64, Quote::default, Yielding::new())
            .add_poller("inline")
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("inline").expect("added above");
        assert!(
            producer.take_poller("inline").is_none(),
            "a poller is taken once"
        );
        let publishers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let mut producer = producer.clone();
                thread::spawn(move || {
                    for counter in 0..per_producer {
                        let fill = |quote: &mut Quote| {
                            *quote = Quote {
                                sequence: id as i64,
                                price: counter,
                            }
                        };
                        if counter % 3 == 0 {
                            producer
                                .batch_publish(1, |quote, _| fill(quote))
                                .expect("publish");
                        } else {
                            producer.publish(fill).expect("publish");
                        }
                    }
                })
            })
            .collect();
        let shutdown = thread::spawn(move || {
            for publisher in publishers {
                join(publisher);
            }
            producer.shutdown().expect("the last handle")
        });
        let mut next_counter = vec![0; PRODUCERS as usize];
        let mut next_sequence = 0;
        let mut failures = Failures::default();
        loop {
            let state = poller.poll(|quote, sequence, _| {
                if sequence != next_sequence {
                    failures.record(|| format!("sequence {sequence}, expected {next_sequence}"));
                }
                next_sequence = sequence + 1;
                match next_counter.get_mut(quote.sequence as usize) {
                    Some(next) if *next == quote.price => *next += 1,
                    _ => failures.record(|| format!("unexpected {quote:?} at {sequence}")),
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
        assert!(join(shutdown).handlers.is_empty());
    });
}

#[test]
fn poll_reports_idle_gating_processing_and_shut_down() {
    with_timeout(TEST_LIMIT, || {
        let (keeper, held) = Gate::closed();
        let mut producer = build_single_producer(8, Quote::default, Blocking::new())
            .handle_events_with(move |_: &Quote, sequence, _| {
                if sequence == 0 {
                    held.wait();
                }
            })
            .thread_name("upstream")
            .and_then()
            .add_poller("after")
            .build()
            .expect("valid pipeline");
        // Bound after the producer, so a failed assertion drops it (opening
        // the gate) before the producer's drop waits for the held handler.
        let gate = keeper;
        let mut poller = producer.take_poller("after").expect("added above");
        let seen = RefCell::new(Vec::new());
        let mut record = |quote: &Quote, sequence: i64, _: bool| {
            assert!(quote.is_quote(sequence), "{sequence}: {quote:?}");
            seen.borrow_mut().push(sequence);
            true
        };

        assert_eq!(
            poller.poll(&mut record),
            PollState::Idle,
            "nothing published"
        );
        producer
            .publish(|quote| *quote = Quote::at(0))
            .expect("publish");
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
                .publish(|quote| *quote = Quote::at(sequence))
                .expect("publish");
        }
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        while seen.borrow().len() < 4 {
            let state = poller.poll(&mut record);
            assert!(
                matches!(state, PollState::Processing | PollState::Gating),
                "{state:?} with published events not yet handled"
            );
            assert!(Instant::now() < deadline, "events 1..=3 never came");
        }
        assert_eq!(*seen.borrow(), [0, 1, 2, 3]);

        // Two more, left unpolled: shutdown drains the upstream handler, and
        // the poller gets them before it reports ShutDown.
        for sequence in 4..=5 {
            producer
                .publish(|quote| *quote = Quote::at(sequence))
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

#[test]
fn poll_reports_halted_when_an_upstream_handler_panics() {
    silence_expected_panics();
    with_timeout(TEST_LIMIT, || {
        let mut producer = build_single_producer(8, Quote::default, Yielding::new())
            .handle_events_with(|_: &Quote, sequence, _| {
                if sequence == 2 {
                    panic!("{EXPECTED_PANIC}: upstream fails");
                }
            })
            .and_then()
            .add_poller("after")
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("after").expect("added above");
        // One call: the handler cannot halt the pipeline half-way through it.
        producer
            .batch_publish(4, |quote, sequence| *quote = Quote::at(sequence))
            .expect("room in the ring");
        let mut seen = Vec::new();
        poll_until(
            &mut poller,
            PollState::Halted,
            &[PollState::Processing, PollState::Gating, PollState::Idle],
            |_, sequence, _| {
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
        let report = producer.shutdown();
        assert_eq!(
            report.first_panic().and_then(|panic| panic.sequence),
            Some(2)
        );
    });
}

#[test]
fn returning_false_stops_early_and_the_rest_comes_next_poll() {
    with_timeout(TEST_LIMIT, || {
        let mut producer = build_single_producer(64, Quote::default, Yielding::new())
            .add_poller("inline")
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("inline").expect("added above");
        for sequence in 0..10 {
            producer
                .publish(|quote| *quote = Quote::at(sequence))
                .expect("publish");
        }
        assert_eq!(producer.remaining_capacity(), 54);

        let mut first = Vec::new();
        let state = poller.poll(|quote, sequence, end_of_batch| {
            assert!(quote.is_quote(sequence));
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

        let mut rest = Vec::new();
        let state = poller.poll(|quote, sequence, _| {
            assert!(quote.is_quote(sequence));
            rest.push(sequence);
            true
        });
        assert_eq!(state, PollState::Processing);
        assert_eq!(
            rest,
            (3..10).collect::<Vec<_>>(),
            "the rest, from where it stopped"
        );
        assert_eq!(producer.remaining_capacity(), 64);
        assert_eq!(poller.poll(|_, _, _| true), PollState::Idle);
        drop(producer);
        assert_eq!(poller.poll(|_, _, _| true), PollState::ShutDown);
    });
}

#[test]
fn a_panicking_poll_closure_gets_the_event_again_next_poll() {
    silence_expected_panics();
    with_timeout(TEST_LIMIT, || {
        let mut producer = build_single_producer(16, Quote::default, Yielding::new())
            .add_poller("inline")
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("inline").expect("added above");
        for sequence in 0..8 {
            producer
                .publish(|quote| *quote = Quote::at(sequence))
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
        let mut again = Vec::new();
        assert_eq!(
            poller.poll(|_, sequence, _| {
                again.push(sequence);
                true
            }),
            PollState::Processing
        );
        assert_eq!(again, [5, 6, 7], "the failed event is handed out again");
    });
}

#[test]
fn a_poller_gates_the_producer() {
    with_timeout(TEST_LIMIT, || {
        let mut producer = build_single_producer(8, Quote::default, Yielding::new())
            .add_poller("slow")
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("slow").expect("added above");
        for sequence in 0..8 {
            assert_eq!(
                producer.try_publish(|quote| *quote = Quote::at(sequence)),
                Ok(sequence)
            );
        }
        let mut called = false;
        assert_eq!(
            producer.try_publish(|_| called = true),
            Err(TryPublishError::Full),
            "the poller has not polled: the ring is full"
        );
        assert!(!called);
        assert_eq!(
            producer.publish_timeout(Duration::from_millis(10), |_| called = true),
            Err(PublishError::TimedOut)
        );
        assert!(!called);

        let mut seen = Vec::new();
        poller.poll(|_, sequence, _| {
            seen.push(sequence);
            false // one event only
        });
        assert_eq!(seen, [0]);
        assert_eq!(
            producer.try_publish(|quote| *quote = Quote::at(8)),
            Ok(8),
            "one slot freed"
        );
        assert_eq!(
            producer.try_publish(|_| called = true),
            Err(TryPublishError::Full)
        );
        assert!(!called);

        // The same for a multi-producer pipeline, from two handles.
        let producer = build_multi_producer(4, Quote::default, Yielding::new())
            .add_poller("slow")
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("slow").expect("added above");
        let mut handles = [producer.clone(), producer];
        for sequence in 0..4 {
            let handle = &mut handles[sequence as usize % 2];
            assert_eq!(
                handle.try_publish(|quote| *quote = Quote::at(sequence)),
                Ok(sequence)
            );
        }
        for handle in &mut handles {
            assert_eq!(
                handle.try_publish(|_| called = true),
                Err(TryPublishError::Full)
            );
        }
        assert!(!called);
        let mut seen = Vec::new();
        assert_eq!(
            poller.poll(|quote, sequence, _| {
                assert!(quote.is_quote(sequence));
                seen.push(sequence);
                true
            }),
            PollState::Processing
        );
        assert_eq!(seen, [0, 1, 2, 3]);
        assert_eq!(handles[1].remaining_capacity(), 4);
        assert_eq!(handles[1].try_publish(|quote| *quote = Quote::at(4)), Ok(4));
        drop(handles);
        poll_until(
            &mut poller,
            PollState::ShutDown,
            &[PollState::Processing],
            |_, _, _| true,
        );
    });
}

#[test]
fn a_poller_in_the_middle_gates_the_stage_behind_it() {
    // handler → poller (on this thread) → handler, with the blocking
    // strategy: the handler behind sleeps until the poller's progress wakes it.
    let count = events(200_000) as i64;
    with_timeout(TEST_LIMIT, move || {
        let before = Arc::new(AtomicI64::new(-1));
        let polled = Arc::new(AtomicI64::new(-1));
        let failures = Arc::new(Mutex::new(Failures::default()));
        let mut next_before = 0;
        let before_progress = Arc::clone(&before);
        let before_failures = Arc::clone(&failures);
        let mut next_after = 0;
        let polled_progress = Arc::clone(&polled);
        let after_failures = Arc::clone(&failures);
        let mut producer = build_single_producer(64, Quote::default, Blocking::new())
            .handle_events_with(move |quote: &Quote, sequence, _| {
                if sequence != next_before || !quote.is_quote(sequence) {
                    let expected = next_before;
                    before_failures
                        .lock()
                        .unwrap()
                        .record(|| format!("before: {quote:?} at {sequence}, expected {expected}"));
                }
                next_before = sequence + 1;
                before_progress.store(sequence, Ordering::Release);
            })
            .thread_name("before")
            .and_then()
            .add_poller("middle")
            .and_then()
            .handle_events_with(move |quote: &Quote, sequence, _| {
                if sequence != next_after || !quote.is_quote(sequence) {
                    let expected = next_after;
                    after_failures
                        .lock()
                        .unwrap()
                        .record(|| format!("after: {quote:?} at {sequence}, expected {expected}"));
                }
                let passed = polled_progress.load(Ordering::Acquire);
                if passed < sequence {
                    after_failures.lock().unwrap().record(|| {
                        format!("after: saw {sequence} before the poller finished it ({passed})")
                    });
                }
                next_after = sequence + 1;
            })
            .thread_name("after")
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("middle").expect("added above");
        // The poller moves to a thread of its own (it is `Send`); this thread
        // publishes and shuts down, which returns only once "after" has
        // drained, which needs the poller.
        let polling = thread::spawn(move || {
            let mut check = InOrder::default();
            loop {
                let state = poller.poll(|quote, sequence, end_of_batch| {
                    let upstream = before.load(Ordering::Acquire);
                    if upstream < sequence {
                        check.failures.record(|| {
                            format!(
                                "poller: handed {sequence} before 'before' finished it ({upstream})"
                            )
                        });
                    }
                    let keep_going = check.handle(quote, sequence, end_of_batch);
                    polled.store(sequence, Ordering::Release);
                    keep_going
                });
                check.end_poll(state);
                match state {
                    PollState::Processing => {}
                    PollState::Idle | PollState::Gating => thread::yield_now(),
                    PollState::ShutDown => return check,
                    PollState::Halted => panic!("the pipeline halted"),
                }
            }
        });
        publish_quotes(&mut producer, count);
        let report = producer.shutdown();
        let check = join(polling);
        check.failures.assert_none("poller");
        assert_eq!(check.next, count, "ShutDown came after every event");
        failures.lock().unwrap().assert_none("handlers");
        for name in ["before", "after"] {
            let handler = report.handler(name).expect("a report per handler");
            assert_eq!(handler.panic, None, "{name}");
            assert_eq!(handler.events_handled, count as u64, "{name}");
        }
    });
}

#[test]
fn dropping_an_unpolled_poller_halts_the_pipeline() {
    with_timeout(TEST_LIMIT, || {
        let mut producer = build_single_producer(8, Quote::default, Yielding::new())
            .handle_events_with(|_: &Quote, _, _| {})
            .thread_name("beside")
            .add_poller("dropped")
            .and_then()
            .handle_events_with(|_: &Quote, _, _| {})
            .thread_name("behind")
            .build()
            .expect("valid pipeline");
        drop(producer.take_poller("dropped").expect("added above"));
        // The drop halted the pipeline on this thread, before the first
        // publish: every publish fails with Halted at once (the ring has room;
        // the producer checks the ring's copy of the flag, which the drop set
        // too) instead of filling the ring or waiting forever.
        let mut outcomes = Vec::new();
        for sequence in 0..12 {
            outcomes.push(producer.publish(|quote| *quote = Quote::at(sequence)));
        }
        let accepted = outcomes
            .iter()
            .take_while(|outcome| outcome.is_ok())
            .count();
        assert_eq!(accepted, 0, "published after the halt: {outcomes:?}");
        let expected: Vec<_> = (0..accepted as i64)
            .map(Ok)
            .chain(std::iter::repeat(Err(PublishError::Halted)))
            .take(12)
            .collect();
        assert_eq!(outcomes, expected);
        assert_eq!(
            producer.try_publish(|quote| *quote = Quote::at(8)),
            Err(TryPublishError::Halted)
        );
        let report = producer.shutdown(); // returns: nothing waits on the poller
        assert_eq!(
            report.handler("behind").map(|h| h.events_handled),
            Some(0),
            "nothing passes the dropped poller"
        );

        // The same with multi-producer handles blocked on the full ring when
        // the poller is dropped.
        let producer = build_multi_producer(4, Quote::default, Yielding::new())
            .add_poller("dropped")
            .and_then()
            .handle_events_with(|_: &Quote, _, _| {})
            .build()
            .expect("valid pipeline");
        let poller = producer.take_poller("dropped").expect("added above");
        let blocked: Vec<_> = (0..2)
            .map(|_| {
                let mut producer = producer.clone();
                thread::spawn(move || loop {
                    if let Err(error) = producer.publish(|quote| *quote = Quote::at(0)) {
                        return error;
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(20)); // let them fill the ring and block
        drop(poller);
        for thread in blocked {
            assert_eq!(join(thread), PublishError::Halted);
        }
        assert!(producer.shutdown().is_some(), "shutdown returns");
    });
}

#[test]
fn shutdown_returns_with_a_poller_never_taken() {
    with_timeout(TEST_LIMIT, || {
        // Nothing will ever poll the untaken poller, so the handler behind it
        // cannot drain through it; shutdown must return anyway instead of
        // joining that handler forever.
        let mut producer = build_single_producer(8, Quote::default, Yielding::new())
            .add_poller("never taken")
            .and_then()
            .handle_events_with(|_: &Quote, _, _| {})
            .build()
            .expect("valid pipeline");
        for sequence in 0..4 {
            producer
                .publish(|quote| *quote = Quote::at(sequence))
                .expect("room");
        }
        let report = producer.shutdown();
        assert_eq!(report.handlers.len(), 1);
        assert_eq!(report.handlers[0].panic, None);
        assert!(
            report.handlers[0].events_handled <= 4,
            "never more than was published"
        );

        let mut producer = build_multi_producer(8, Quote::default, Yielding::new())
            .add_poller("never taken")
            .and_then()
            .handle_events_with(|_: &Quote, _, _| {})
            .build()
            .expect("valid pipeline");
        producer
            .publish(|quote| *quote = Quote::at(0))
            .expect("room");
        drop(producer); // the last handle: drains what it can, joins, returns
    });
}

/// Counts its events and, at shutdown, publishes how many it handled.
struct CountsUntilShutdown {
    handled: i64,
    stopped_at: Arc<AtomicI64>,
}

impl EventHandler<Quote> for CountsUntilShutdown {
    fn on_event(&mut self, _: &Quote, _: i64, _: bool) {
        self.handled += 1;
    }

    fn on_shutdown(&mut self) {
        self.stopped_at.store(self.handled, Ordering::Release);
    }
}

/// `upstream` (held at event 0) → { `behind upstream`, a poller never
/// taken }; `EVENTS` published, then `start_shutdown` begins the shutdown on
/// another thread while `upstream` still holds them all. Only stages behind
/// the untaken poller may be cut short: `behind upstream` depends on
/// `upstream` alone, so the shutdown must drain it (contract 6; the
/// shutdown docs: "a poller never taken halts the stages behind it").
fn untaken_poller_beside_a_handler<K, P>(
    builder: Builder<Quote, Yielding, K>,
    build: impl FnOnce(Builder<Quote, Yielding, K>) -> P,
    publish: impl Fn(&mut P, i64),
    start_shutdown: impl FnOnce(P) -> thread::JoinHandle<ShutdownReport>,
) {
    const EVENTS: i64 = 500;
    let (gate, held) = Gate::closed();
    let stopped = Arc::new(AtomicI64::new(-1));
    let builder = builder
        .handle_events_with(move |_: &Quote, sequence, _| {
            if sequence == 0 {
                held.wait();
            }
        })
        .thread_name("upstream")
        .and_then()
        .handle_events_with_handler(CountsUntilShutdown {
            handled: 0,
            stopped_at: Arc::clone(&stopped),
        })
        .thread_name("behind upstream")
        .add_poller("never taken");
    let mut producer = build(builder);
    for sequence in 0..EVENTS {
        publish(&mut producer, sequence);
    }
    let shutdown = start_shutdown(producer);
    // Give the shutdown time to begin while "upstream" holds every event; if
    // "behind upstream" stops in this pause, it has stopped without draining.
    let pause = Instant::now();
    while stopped.load(Ordering::Acquire) < 0 && pause.elapsed() < Duration::from_millis(200) {
        thread::sleep(Duration::from_millis(1));
    }
    gate.open();
    let report = join(shutdown);
    assert_eq!(
        report.handler("upstream").map(|h| h.events_handled),
        Some(EVENTS as u64)
    );
    assert_eq!(
        report.handler("behind upstream").map(|h| h.events_handled),
        Some(EVENTS as u64),
        "a handler that does not depend on the untaken poller must drain at shutdown"
    );
}

#[test]
fn shutdown_with_an_untaken_poller_drains_the_handlers_not_behind_it() {
    with_timeout(TEST_LIMIT, || {
        untaken_poller_beside_a_handler(
            build_single_producer(1024, Quote::default, Yielding::new()),
            |builder| builder.build().expect("valid pipeline"),
            |producer, sequence| {
                producer
                    .publish(|quote| *quote = Quote::at(sequence))
                    .expect("room");
            },
            |producer| thread::spawn(move || producer.shutdown()),
        );
    });
}

#[test]
fn dropping_the_last_handle_with_an_untaken_poller_drains_the_handlers_not_behind_it() {
    with_timeout(TEST_LIMIT, || {
        untaken_poller_beside_a_handler(
            build_multi_producer(1024, Quote::default, Yielding::new()),
            |builder| builder.build().expect("valid pipeline"),
            |producer, sequence| {
                producer
                    .publish(|quote| *quote = Quote::at(sequence))
                    .expect("room");
            },
            |producer| thread::spawn(move || producer.shutdown().expect("the last handle")),
        );
    });
}

#[test]
fn max_batch_size_caps_what_one_poll_hands_out() {
    with_timeout(TEST_LIMIT, || {
        let mut producer = build_single_producer(64, Quote::default, Yielding::new())
            .add_poller("capped")
            .max_batch_size(4)
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("capped").expect("added above");
        producer
            .batch_publish(10, |quote, sequence| *quote = Quote::at(sequence))
            .expect("room");
        let mut polls = Vec::new();
        for _ in 0..3 {
            let mut handed = Vec::new();
            let state = poller.poll(|quote, sequence, end_of_batch| {
                assert!(quote.is_quote(sequence));
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

#[test]
fn an_untaken_poller_still_gates_the_stage_behind_it_at_shutdown() {
    // upstream (mutable, held at event 0) → untaken poller → behind. At
    // shutdown the untaken poller may let the stage behind it drain, but
    // never past what the upstream stage has finished (contract 2): behind
    // must see every event with the upstream's write in it.
    const EVENTS: i64 = 500;
    with_timeout(TEST_LIMIT, || {
        let (keeper, held) = Gate::closed();
        let upstream_done = Arc::new(AtomicI64::new(-1));
        let upstream_progress = Arc::clone(&upstream_done);
        let failures = Arc::new(Mutex::new(Failures::default()));
        let behind_failures = Arc::clone(&failures);
        let mut producer = build_single_producer(1024, Quote::default, Yielding::new())
            .handle_events_mut(move |quote: &mut Quote, sequence, _| {
                if sequence == 0 {
                    held.wait();
                }
                quote.price = Quote::price_at(sequence); // the upstream's write
                upstream_progress.store(sequence, Ordering::Release);
            })
            .thread_name("upstream")
            .and_then()
            .add_poller("never taken")
            .and_then()
            .handle_events_with(move |quote: &Quote, sequence, _| {
                let finished = upstream_done.load(Ordering::Acquire);
                if finished < sequence || !quote.is_quote(sequence) {
                    behind_failures.lock().unwrap().record(|| {
                        format!(
                            "behind saw {quote:?} at {sequence} while upstream had \
                             finished up to {finished}"
                        )
                    });
                }
            })
            .thread_name("behind")
            .build()
            .expect("valid pipeline");
        let gate = keeper; // dropped (opening the gate) before the producer
        for sequence in 0..EVENTS {
            producer
                .publish(|quote| {
                    *quote = Quote {
                        sequence,
                        price: 0, // the upstream fills it in
                    }
                })
                .expect("room");
        }
        let shutdown = thread::spawn(move || producer.shutdown());
        thread::sleep(Duration::from_millis(50)); // the shutdown begins, upstream held
        gate.open();
        let report = join(shutdown);
        failures.lock().unwrap().assert_none("behind");
        let behind = report.handler("behind").expect("behind's report");
        assert!(
            behind.events_handled == 0 || behind.events_handled == EVENTS as u64,
            "behind either stops at the untaken poller or drains: {behind:?}"
        );
    });
}
