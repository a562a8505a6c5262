//! Property tests: every numeric and `Duration` input of the public API, at
//! 0, 1, its maximum and values near the `i64`/`u64` boundaries, either works
//! as documented or returns an error whose message says what to change —
//! never a panic from tickring's own code, never a hang (each case runs
//! under a bound).

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::with_timeout;
use proptest::prelude::*;
use tickring::{
    build_multi_producer, build_single_producer, BuildError, EventProducer, FullRingWait,
    PublishError, PublishTimeoutError, Sleeping, TryPublishError, Yielding, MAX_RING_SIZE,
};

const CASE_LIMIT: Duration = Duration::from_secs(20);

/// Sizes: the edges, powers of two that are cheap to fill, and the
/// boundaries past which nothing can be allocated.
fn ring_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        Just(3),
        (0u32..13).prop_map(|shift| 1usize << shift),
        (4usize..5_000),
        Just(MAX_RING_SIZE + 1),
        Just(MAX_RING_SIZE * 2),
        Just(i64::MAX as usize),
        Just((i64::MAX as usize) + 1),
        Just(usize::MAX),
    ]
}

fn count() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        (3usize..300),
        Just(i64::MAX as usize),
        Just((i64::MAX as usize) + 1),
        Just(usize::MAX - 1),
        Just(usize::MAX),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        (1u64..2_000_000).prop_map(Duration::from_nanos),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
    ]
}

fn core_id() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        (2usize..2048),
        Just(i64::MAX as usize),
        Just(usize::MAX),
    ]
}

/// The message of a `BuildError` says what to change.
fn says_what_to_change(error: &BuildError) {
    let message = error.to_string();
    assert!(
        ["use ", "drop ", "choose", "give", "pass", "put ", "smaller"]
            .iter()
            .any(|advice| message.contains(advice)),
        "no advice in: {message}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Ring size, batch bound, handler timeout and the wait strategies' caps.
    #[test]
    fn pipeline_configuration(
        size in ring_size(),
        max_batch in count(),
        timeout in duration(),
        max_sleep in duration(),
        workers in 0usize..4,
    ) {
        with_timeout(CASE_LIMIT, "pipeline_configuration", move || {
            let handled = Arc::new(AtomicI64::new(0));
            let counted = Arc::clone(&handled);
            let built = build_single_producer(size, || 0i64, Sleeping::with_max_sleep(max_sleep))
                .producer_wait(FullRingWait::Park { max_sleep })
                .max_batch_size(max_batch)
                .wait_timeout(timeout)
                .handle_events_with(move |event: &i64, sequence, _| {
                    assert_eq!(*event, sequence);
                    counted.fetch_add(1, Ordering::Relaxed);
                })
                .and_then()
                .handle_events_with_workers((0..workers).map(|_| |_: &i64, _: i64, _: bool| {}))
                .build();
            let valid_size = size.is_power_of_two() && size <= 1 << 12;
            match built {
                Ok(mut producer) => {
                    assert!(valid_size && max_batch >= 1 && workers >= 1);
                    for value in 0..100 {
                        producer.publish(|event| *event = value).unwrap();
                    }
                    let report = producer.shutdown();
                    assert!(report.first_panic().is_none(), "{report:?}");
                    assert_eq!(handled.load(Ordering::Relaxed), 100);
                    let pool: u64 = report.handlers[1..].iter().map(|h| h.events_handled).sum();
                    assert_eq!(pool, 100, "each event to one worker");
                }
                Err(error) => {
                    says_what_to_change(&error);
                    match error {
                        BuildError::InvalidRingSize { size: reported } => {
                            assert!(!valid_size);
                            assert_eq!(reported, size);
                        }
                        BuildError::InvalidMaxBatchSize { .. } => assert_eq!(max_batch, 0),
                        BuildError::EmptyWorkerPool { .. } => assert_eq!(workers, 0),
                        other => panic!("unexpected: {other}"),
                    }
                }
            }
        });
    }

    /// Core ids: pinned when the process may use the core, a clear error
    /// otherwise; never an abort.
    #[test]
    fn core_ids(core in core_id()) {
        with_timeout(CASE_LIMIT, "core_ids", move || {
            let built = build_single_producer(4, || 0u8, Yielding::new())
                .pin_at_core(core)
                .handle_events_with(|_: &u8, _, _| {})
                .build();
            match built {
                Ok(producer) => {
                    assert!(tickring::allowed_cores().contains(&core));
                    let _report = producer.shutdown();
                }
                Err(error) => {
                    says_what_to_change(&error);
                    assert!(matches!(
                        error,
                        BuildError::CoreNotFound { .. } | BuildError::PinFailed { .. }
                    ), "{error}");
                }
            }
            let pinned = std::thread::spawn(move || tickring::pin_current_thread(core))
                .join()
                .expect("pinning never panics");
            assert_eq!(pinned.is_ok(), tickring::allowed_cores().contains(&core));
        });
    }

    /// Publishing inputs: batch counts, timeouts and producer counts, on a
    /// ring that fills.
    #[test]
    fn publishing_inputs(
        batch in count(),
        timeout in duration(),
        producers in 1usize..4,
        multi in any::<bool>(),
    ) {
        with_timeout(CASE_LIMIT, "publishing_inputs", move || {
            let handled = Arc::new(AtomicI64::new(0));
            let counted = Arc::clone(&handled);
            let handler = move |_: &i64, _: i64, _: bool| {
                counted.fetch_add(1, Ordering::Relaxed);
            };
            let capacity = 8usize;
            let mut published = 0i64;
            fn exercise(
                producer: &mut impl EventProducer<i64>,
                batch: usize,
                timeout: Duration,
                published: &mut i64,
            ) {
                let capacity = producer.capacity();
                match producer.batch_publish(batch, |event, sequence| *event = sequence) {
                    Ok(_) => {
                        assert!(batch <= capacity);
                        *published += batch as i64;
                    }
                    Err(error) => {
                        assert_eq!(error, PublishError::BatchTooLarge { requested: batch, capacity });
                        assert!(error.to_string().contains("split it"), "{error}");
                    }
                }
                match producer.try_batch_publish(batch, |event, sequence| *event = sequence) {
                    Ok(_) => *published += batch as i64,
                    Err(TryPublishError::Full) => assert!(batch >= 1),
                    Err(TryPublishError::BatchTooLarge { .. }) => assert!(batch > capacity),
                    Err(other) => panic!("unexpected: {other}"),
                }
                match producer.publish_timeout(timeout, |event| *event = 0) {
                    Ok(_) => *published += 1,
                    Err(PublishTimeoutError::TimedOut) => {}
                    Err(other) => panic!("unexpected: {other}"),
                }
                assert!(producer.remaining_capacity() <= capacity);
            }
            if multi {
                let producer = build_multi_producer(capacity, || 0i64, Yielding::new())
                    .handle_events_with(handler)
                    .build()
                    .unwrap();
                let feeds: Vec<_> = (0..producers)
                    .map(|_| {
                        let mut producer = producer.clone();
                        std::thread::spawn(move || {
                            let mut published = 0;
                            exercise(&mut producer, batch, timeout, &mut published);
                            published
                        })
                    })
                    .collect();
                published = feeds.into_iter().map(|feed| feed.join().unwrap()).sum();
                let report = producer.shutdown().expect("last handle");
                assert_eq!(report.handlers[0].events_handled as i64, published);
            } else {
                let mut producer = build_single_producer(capacity, || 0i64, Yielding::new())
                    .handle_events_with(handler)
                    .build()
                    .unwrap();
                exercise(&mut producer, batch, timeout, &mut published);
                let report = producer.shutdown();
                assert_eq!(report.handlers[0].events_handled as i64, published);
            }
            assert_eq!(handled.load(Ordering::Relaxed), published);
        });
    }
}
