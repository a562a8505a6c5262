//! Contract 3: a full ring is back-pressure or `Full`, never loss or
//! overwrite; the capacity queries report exact numbers; batches are bounded
//! by the ring and by `max_batch_size`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use common::ticks::{assert_saw_all, collect_seen, publish_ticks, Recorder, Tick};
use common::{scaled, wait_until, with_timeout};
use tickring::{
    build_single_producer, Blocking, EventHandler, EventProducer, Producer, PublishError,
    TryPublishError, WaitStrategy, Yielding,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Handles one event per permit received; wraps a [`Recorder`].
struct Permitted {
    inner: Recorder,
    permits: mpsc::Receiver<()>,
}

impl EventHandler<Tick> for Permitted {
    fn on_event(&mut self, tick: &Tick, sequence: i64, end_of_batch: bool) {
        self.permits
            .recv_timeout(scaled(LIMIT))
            .expect("the test grants a permit for every event");
        self.inner.on_event(tick, sequence, end_of_batch);
    }
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        self.inner.on_batch_start(batch_size, queue_depth);
    }
    fn on_shutdown(&mut self) {
        self.inner.on_shutdown();
    }
}

fn grant(permits: &mpsc::Sender<()>, events: usize) {
    for _ in 0..events {
        permits.send(()).expect("the handler is alive");
    }
}

fn lags<W: WaitStrategy>(producer: &Producer<Tick, W>) -> Vec<(String, u64)> {
    producer
        .handler_lags()
        .map(|(name, lag)| (name.to_owned(), lag))
        .collect()
}

fn lag_of<W: WaitStrategy>(producer: &Producer<Tick, W>, handler: &str) -> u64 {
    producer
        .handler_lags()
        .find(|(name, _)| *name == handler)
        .map(|(_, lag)| lag)
        .expect("the handler is listed")
}

#[test]
fn try_publish_on_a_full_ring_returns_full_and_publishes_nothing() {
    with_timeout(LIMIT, "try-publish-full", || {
        let (report_to, reports) = mpsc::channel();
        let (permits, permit_source) = mpsc::channel();
        let mut producer = build_single_producer(8, Tick::default, Yielding::new())
            // One event per batch, so its sequence moves with every permit.
            .max_batch_size(1)
            .handle_events_with_handler(Permitted {
                inner: Recorder::new("held", vec![], report_to),
                permits: permit_source,
            })
            .build()
            .expect("build");
        assert_eq!(producer.capacity(), 8);
        for sequence in 0..8 {
            assert_eq!(
                producer.try_publish(|tick| tick.fill(sequence)),
                Ok(sequence)
            );
        }
        for _ in 0..3 {
            let mut called = false;
            assert_eq!(
                producer.try_publish(|_| called = true),
                Err(TryPublishError::Full)
            );
            assert!(!called, "try_publish called the closure on a full ring");
            assert_eq!(
                producer.try_batch_publish(1, |_, _| called = true),
                Err(TryPublishError::Full)
            );
            assert!(
                !called,
                "try_batch_publish called the closure on a full ring"
            );
        }
        assert_eq!(producer.last_published(), 7);
        assert_eq!(producer.remaining_capacity(), 0);

        // Two events finished: exactly two slots free, not three.
        grant(&permits, 2);
        wait_until(LIMIT, "the handler finishes two events", || {
            lag_of(&producer, "tickring-0-0") == 6
        });
        assert_eq!(producer.remaining_capacity(), 2);
        let mut called = false;
        assert_eq!(
            producer.try_batch_publish(3, |_, _| called = true),
            Err(TryPublishError::Full)
        );
        assert!(!called, "a batch that does not fit is not started");
        assert_eq!(
            producer.try_batch_publish(2, |tick, sequence| tick.fill(sequence)),
            Ok(9)
        );
        assert_eq!(producer.try_publish(|_| ()), Err(TryPublishError::Full));

        grant(&permits, 8);
        let report = producer.shutdown();
        assert_eq!(report.handlers[0].events_handled, 10);
        // The refused attempts left no trace: events 0..10, each intact.
        assert_saw_all(&collect_seen(&reports, 1)[0], 10);
    });
}

/// `remaining_capacity()` and `handler_lags()` while a handler in the middle
/// of the graph is held one event at a time.
#[test]
fn capacity_and_lags_are_exact_while_a_handler_is_held() {
    with_timeout(LIMIT, "capacity-and-lags", || {
        let (report_to, reports) = mpsc::channel();
        let (permits, permit_source) = mpsc::channel();
        let mut producer = build_single_producer(16, Tick::default, Blocking::new())
            .thread_name("fast")
            .handle_events_with_handler(Recorder::new("fast", vec![], report_to.clone()))
            .thread_name("held")
            // One event per batch, so its sequence moves with every permit.
            .max_batch_size(1)
            .handle_events_with_handler(Permitted {
                inner: Recorder::new("held", vec![], report_to.clone()),
                permits: permit_source,
            })
            .and_then()
            .thread_name("behind")
            .handle_events_with_handler(Recorder::new("behind", vec![], report_to))
            .build()
            .expect("build");
        let expect_lags = |fast: u64, held: u64, behind: u64| {
            vec![
                ("fast".to_owned(), fast),
                ("held".to_owned(), held),
                ("behind".to_owned(), behind),
            ]
        };
        assert_eq!(producer.capacity(), 16);
        assert_eq!(producer.remaining_capacity(), 16);
        assert_eq!(producer.last_published(), -1);
        assert_eq!(lags(&producer), expect_lags(0, 0, 0));

        publish_ticks(&mut producer, 10);
        wait_until(LIMIT, "fast finishes all 10", || {
            lag_of(&producer, "fast") == 0
        });
        assert_eq!(lags(&producer), expect_lags(0, 10, 10));
        assert_eq!(producer.remaining_capacity(), 6);

        grant(&permits, 3);
        wait_until(LIMIT, "behind follows held to event 2", || {
            lag_of(&producer, "behind") == 7
        });
        assert_eq!(lags(&producer), expect_lags(0, 7, 7));
        assert_eq!(producer.remaining_capacity(), 9);

        // Fill the ring exactly: 9 more fit, the 10th does not.
        for sequence in 10..19 {
            assert_eq!(
                producer.try_publish(|tick| tick.fill(sequence)),
                Ok(sequence)
            );
        }
        assert_eq!(producer.try_publish(|_| ()), Err(TryPublishError::Full));
        assert_eq!(producer.remaining_capacity(), 0);
        wait_until(LIMIT, "fast finishes all 19", || {
            lag_of(&producer, "fast") == 0
        });
        assert_eq!(lags(&producer), expect_lags(0, 16, 16));

        grant(&permits, 16);
        wait_until(LIMIT, "behind finishes all 19", || {
            lag_of(&producer, "behind") == 0
        });
        assert_eq!(lags(&producer), expect_lags(0, 0, 0));
        assert_eq!(producer.remaining_capacity(), 16);
        let report = producer.shutdown();
        for handler in &report.handlers {
            assert_eq!(handler.events_handled, 19, "{handler:?}");
        }
        for seen in collect_seen(&reports, 3) {
            assert_saw_all(&seen, 19);
        }
    });
}

#[test]
fn batch_larger_than_the_ring_is_refused() {
    with_timeout(LIMIT, "batch-too-large", || {
        let mut producer = build_single_producer(8, Tick::default, Yielding::new())
            .handle_events_with(|_: &Tick, _, _| {})
            .build()
            .expect("build");
        let mut called = false;
        let refused = producer.batch_publish(9, |_, _| called = true);
        assert_eq!(
            refused,
            Err(PublishError::BatchTooLarge {
                requested: 9,
                capacity: 8
            })
        );
        let message = refused.unwrap_err().to_string();
        assert!(message.contains('9') && message.contains('8'), "{message}");
        assert_eq!(
            producer.try_batch_publish(9, |_, _| called = true),
            Err(TryPublishError::BatchTooLarge {
                requested: 9,
                capacity: 8
            })
        );
        assert!(!called, "a refused batch ran its closure");
        assert_eq!(producer.last_published(), -1);

        // The whole ring in one batch is fine, and so is an empty batch.
        assert_eq!(
            producer.batch_publish(8, |tick, sequence| tick.fill(sequence)),
            Ok(7)
        );
        assert_eq!(producer.batch_publish(0, |_, _| called = true), Ok(7));
        assert!(!called, "an empty batch ran its closure");
        assert_eq!(producer.shutdown().handlers[0].events_handled, 8);
    });
}

/// Handles each event slowly, re-reading it after yielding the CPU: if the
/// producer reused the slot meanwhile, the second read differs.
struct Slow {
    inner: Recorder,
}

impl EventHandler<Tick> for Slow {
    fn on_event(&mut self, tick: &Tick, sequence: i64, end_of_batch: bool) {
        let first_read = *tick;
        thread::yield_now();
        for _ in 0..200 {
            std::hint::spin_loop();
        }
        let second_read = *tick;
        let overwritten = if first_read == second_read {
            *tick
        } else {
            Tick::default()
        };
        self.inner.on_event(&overwritten, sequence, end_of_batch);
    }
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        self.inner.on_batch_start(batch_size, queue_depth);
    }
    fn on_shutdown(&mut self) {
        self.inner.on_shutdown();
    }
}

/// A ring of 4 and slow handlers (a slow leaf behind a fast stage, and a
/// slow one beside a fast one): the producer waits, nothing is lost or
/// overwritten, and it is never more than a ring ahead of the slowest.
#[test]
fn back_pressure_from_a_slow_handler_loses_nothing() {
    const EVENTS: i64 = if cfg!(debug_assertions) {
        5_000
    } else {
        20_000
    };
    with_timeout(LIMIT, "back-pressure", || {
        let (report_to, reports) = mpsc::channel();
        let fast = Recorder::new("fast", vec![], report_to.clone());
        let slow_beside = Slow {
            inner: Recorder::new("slow-beside", vec![], report_to.clone()),
        };
        let slow_leaf = Slow {
            inner: Recorder::new(
                "slow-leaf",
                vec![fast.progress(), slow_beside.inner.progress()],
                report_to.clone(),
            ),
        };
        let leaf_progress = slow_leaf.inner.progress();
        let beside_progress = slow_beside.inner.progress();
        drop(report_to);
        let mut producer = build_single_producer(4, Tick::default, Yielding::new())
            .handle_events_with_handler(fast)
            .handle_events_with_handler(slow_beside)
            .and_then()
            .handle_events_with_handler(slow_leaf)
            .build()
            .expect("build");
        let mut published = 0;
        while published < EVENTS {
            let last = if published % 3 == 0 && published + 4 <= EVENTS {
                producer
                    .batch_publish(4, |tick, sequence| tick.fill(sequence))
                    .expect("batch_publish")
            } else {
                producer
                    .publish(|tick| tick.fill(published))
                    .expect("publish")
            };
            published = last + 1;
            // Claiming `last` needed every handler past `last - 4`.
            for progress in [&leaf_progress, &beside_progress] {
                let finished = progress.load(Ordering::Acquire);
                assert!(
                    finished >= last - 4,
                    "published {last} with a handler at {finished}"
                );
            }
        }
        let report = producer.shutdown();
        for handler in &report.handlers {
            assert_eq!(handler.events_handled, EVENTS as u64, "{handler:?}");
        }
        for seen in collect_seen(&reports, 3) {
            assert_saw_all(&seen, EVENTS);
        }
    });
}

/// What a [`BatchSizes`] handler saw.
struct BatchTally {
    sizes: Vec<i64>,
    depths_beyond_batch: u64,
    depths_below_batch: u64,
    bad_end_of_batch: u64,
}

/// Records the size of every batch and checks `end_of_batch` closes it.
struct BatchSizes {
    release: Arc<AtomicBool>,
    sizes: Vec<i64>,
    depths_beyond_batch: u64,
    depths_below_batch: u64,
    left: i64,
    bad_end_of_batch: u64,
    handled: Arc<AtomicI64>,
    report_to: mpsc::Sender<BatchTally>,
}

impl BatchSizes {
    fn new(release: &Arc<AtomicBool>, report_to: &mpsc::Sender<BatchTally>) -> Self {
        Self {
            release: Arc::clone(release),
            sizes: Vec::new(),
            depths_beyond_batch: 0,
            depths_below_batch: 0,
            left: 0,
            bad_end_of_batch: 0,
            handled: Arc::new(AtomicI64::new(-1)),
            report_to: report_to.clone(),
        }
    }
}

impl EventHandler<Tick> for BatchSizes {
    fn on_event(&mut self, _: &Tick, sequence: i64, end_of_batch: bool) {
        if sequence == 0 {
            wait_until(LIMIT, "the test releases the handler", || {
                self.release.load(Ordering::Acquire)
            });
        }
        self.left -= 1;
        if end_of_batch != (self.left == 0) {
            self.bad_end_of_batch += 1;
        }
        self.handled.store(sequence, Ordering::Release);
    }
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        self.sizes.push(batch_size);
        if queue_depth < batch_size {
            self.depths_below_batch += 1;
        }
        if queue_depth > batch_size {
            self.depths_beyond_batch += 1;
        }
        self.left = batch_size;
    }
    fn on_shutdown(&mut self) {
        let sizes = std::mem::take(&mut self.sizes);
        let _ = self.report_to.send(BatchTally {
            sizes,
            depths_beyond_batch: self.depths_beyond_batch,
            depths_below_batch: self.depths_below_batch,
            bad_end_of_batch: self.bad_end_of_batch,
        });
    }
}

/// A handler held at its first event while 1,000 events pile up, then
/// released: no batch may exceed its `max_batch_size`, in a first stage
/// (which reads the ring) or a later one (which reads the stage before).
fn max_batch_size_caps_every_batch(downstream: bool) {
    const EVENTS: i64 = 1_000;
    const CAP: usize = 7;
    let name = if downstream {
        "cap-downstream"
    } else {
        "cap-first"
    };
    with_timeout(LIMIT, name, move || {
        let release = Arc::new(AtomicBool::new(false));
        let (report_to, reports) = mpsc::channel();
        let capped = BatchSizes::new(&release, &report_to);
        let handled = Arc::clone(&capped.handled);
        let mut builder = build_single_producer(1024, Tick::default, Yielding::new());
        if downstream {
            builder = builder.handle_events_with(|_: &Tick, _, _| {}).and_then();
        }
        let mut producer = builder
            .thread_name("capped")
            .max_batch_size(CAP)
            .handle_events_with_handler(capped)
            .build()
            .expect("build");
        publish_ticks(&mut producer, EVENTS);
        if downstream {
            wait_until(LIMIT, "the first stage finishes everything", || {
                producer.handler_lags().next() == Some(("tickring-0-0", 0))
            });
        }
        release.store(true, Ordering::Release);
        wait_until(LIMIT, "the capped handler finishes", || {
            handled.load(Ordering::Acquire) == EVENTS - 1
        });
        let report = producer.shutdown();
        assert_eq!(
            report.handler("capped").unwrap().events_handled,
            EVENTS as u64
        );
        let BatchTally {
            sizes,
            depths_beyond_batch,
            depths_below_batch,
            bad_end_of_batch,
        } = reports.recv_timeout(scaled(LIMIT)).expect("report");
        assert_eq!(bad_end_of_batch, 0, "end_of_batch does not close the batch");
        assert_eq!(depths_below_batch, 0, "a queue depth below its batch size");
        assert_eq!(
            sizes.iter().sum::<i64>(),
            EVENTS,
            "batch sizes add up to the events"
        );
        assert!(sizes.iter().all(|&size| size >= 1), "{sizes:?}");
        let largest = *sizes.iter().max().unwrap();
        // With 1,000 events waiting, the cap is reached, and never passed.
        assert_eq!(largest, CAP as i64, "batch sizes {sizes:?}");
        if downstream {
            // The stage before had finished everything: the queue was deeper
            // than the capped batches.
            assert!(
                depths_beyond_batch > 0,
                "queue depth never exceeded a batch"
            );
        }
    });
}

#[test]
fn max_batch_size_caps_a_first_stage() {
    max_batch_size_caps_every_batch(false);
}

#[test]
fn max_batch_size_caps_a_later_stage() {
    max_batch_size_caps_every_batch(true);
}
