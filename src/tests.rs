//! End-to-end pipelines inside the crate, so `cargo miri test` checks every
//! slot access on the real publish and consume paths. Every test runs under
//! a bound: a gating bug fails it in seconds, naming the contract line,
//! instead of hanging the suite.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::{build_multi_producer, build_single_producer, EventProducer, PollState, Yielding};

const EVENTS: i64 = if cfg!(miri) { 60 } else { 20_000 };

/// Runs `body` on its own thread; fails the test if it takes longer than
/// `limit` (Miri runs far slower, so it gets 50 times as long).
fn bounded<T: Send + 'static>(
    contract: &str,
    limit: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let limit = if cfg!(miri) { limit * 50 } else { limit };
    let (done, outcome) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        let _ = done.send(body());
    });
    match outcome.recv_timeout(limit) {
        Ok(value) => {
            runner.join().expect("the body returned");
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the body sends before it returns"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("no progress within {limit:?}: {contract} is broken (a hang, not a slow test)")
        }
    }
}

#[derive(Debug, Default)]
struct Event {
    value: i64,
    doubled: i64,
}

#[test]
fn diamond_with_a_mutable_stage_across_wrap_around() {
    bounded(
        "contract lines 1-3 (multicast, gating, no overwrite)",
        Duration::from_secs(20),
        || {
            let total = Arc::new(AtomicU64::new(0));
            let counted = Arc::clone(&total);
            let mut producer = build_single_producer(4, Event::default, Yielding::new())
                .handle_events_mut(|event: &mut Event, _, _| event.doubled = event.value * 2)
                .and_then()
                .handle_events_with(|event: &Event, sequence, _| {
                    assert_eq!((event.value, event.doubled), (sequence, sequence * 2));
                })
                .handle_events_with(|event: &Event, _, _| assert_eq!(event.doubled % 2, 0))
                .and_then()
                .handle_events_with(move |event: &Event, _, _| {
                    counted.fetch_add(event.doubled as u64, Ordering::Relaxed);
                })
                .build()
                .expect("valid pipeline");
            for value in 0..EVENTS {
                if value % 2 == 0 {
                    producer.publish(|event| event.value = value).unwrap();
                } else {
                    producer
                        .batch_publish(1, |event, _| event.value = value)
                        .unwrap();
                }
            }
            let report = producer.shutdown();
            assert!(report.first_panic().is_none(), "{report:?}");
            assert!(report
                .handlers
                .iter()
                .all(|h| h.events_handled == EVENTS as u64));
            assert_eq!(
                total.load(Ordering::Relaxed),
                (EVENTS * (EVENTS - 1)) as u64
            );
        },
    );
}

#[test]
fn two_producers_a_worker_pool_and_a_poller() {
    bounded(
        "contract lines 1 and 6 (each event once, drained)",
        Duration::from_secs(20),
        || {
            let (mut poller, builder) = build_multi_producer(2, Event::default, Yielding::new())
                .handle_events_with_workers((0..2).map(|_| {
                    |event: &Event, _: i64, _: bool| {
                        assert!(event.value >= 0);
                    }
                }))
                .and_then()
                .event_poller();
            let producer = builder.build().expect("valid pipeline");
            let feeds: Vec<_> = (0..2)
                .map(|_| {
                    let mut producer = producer.clone();
                    std::thread::spawn(move || {
                        for value in 0..EVENTS / 2 {
                            producer.publish(|event| event.value = value).unwrap();
                        }
                    })
                })
                .collect();
            drop(producer);
            let mut seen = 0;
            let mut next_sequence = 0;
            loop {
                match poller.poll(|_, sequence, _| {
                    assert_eq!(sequence, next_sequence);
                    next_sequence += 1;
                    seen += 1;
                    true
                }) {
                    PollState::ShutDown => break,
                    PollState::Halted => panic!("halted"),
                    _ => std::thread::yield_now(),
                }
            }
            for feed in feeds {
                feed.join().unwrap();
            }
            assert_eq!(seen, EVENTS);
        },
    );
}

/// Only a pipeline without threads lets its pollers skip the halt check
/// between events: with a handler thread, a halt can come mid-batch.
#[test]
fn only_a_pipeline_of_pollers_drops_the_per_event_halt_check() {
    let (poller, builder) = build_single_producer(8, || 0u64, Yielding::new()).event_poller();
    assert!(poller.shared.ring.state.threads_may_halt(), "before build");
    let producer = builder.build().expect("valid pipeline");
    assert!(!poller.shared.ring.state.threads_may_halt(), "pollers only");
    drop((poller, producer));

    let (poller, builder) = build_single_producer(8, || 0u64, Yielding::new())
        .handle_events_with(|_: &u64, _, _| {})
        .event_poller();
    let producer = builder.build().expect("valid pipeline");
    assert!(
        poller.shared.ring.state.threads_may_halt(),
        "a handler thread"
    );
    drop((poller, producer));
}
