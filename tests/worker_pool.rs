//! Worker pools (`handle_events_with_workers`): each event goes to exactly
//! one worker of the pool, and a stage behind the pool sees an event only
//! after the worker that took it has finished it, in sequence order, whatever
//! stands beside the pool or in front of it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{events, join, with_timeout, Failures, XorShift, TEST_LIMIT};
use tickring::{
    build_multi_producer, build_single_producer, Blocking, EventHandler, EventProducer, Producer,
    ShutdownReport, WaitStrategy, Yielding,
};

const WORKERS: usize = 3;

/// A job whose content is a function of who published it and when:
/// `origin` is the sequence (single producer) or the producer id, `counter`
/// that producer's running count. `stamped` is written by an upstream
/// mutable stage when there is one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Job {
    origin: u64,
    counter: u64,
    check: u64,
    stamped: i64,
}

impl Job {
    fn new(origin: u64, counter: u64) -> Self {
        Self {
            origin,
            counter,
            check: origin.rotate_left(29) ^ counter.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            stamped: -1,
        }
    }

    fn is_intact(&self) -> bool {
        self.check == Self::new(self.origin, self.counter).check
    }
}

/// Per sequence: how many workers handled it, and whether one has finished.
struct Ledger {
    handled: Vec<AtomicU8>,
    done: Vec<AtomicBool>,
    failures: Mutex<Failures>,
}

impl Ledger {
    fn new(events: u64) -> Arc<Self> {
        Arc::new(Self {
            handled: (0..events).map(|_| AtomicU8::new(0)).collect(),
            done: (0..events).map(|_| AtomicBool::new(false)).collect(),
            failures: Mutex::new(Failures::default()),
        })
    }

    fn fail(&self, failure: impl FnOnce() -> String) {
        self.failures.lock().unwrap().record(failure);
    }

    /// A worker's part: count the event, then (after a pause now and then,
    /// which widens the window a premature downstream read would fall in)
    /// mark it done.
    fn work(&self, sequence: i64) {
        let Some(handled) = self.handled.get(sequence as usize) else {
            return self.fail(|| format!("a worker got sequence {sequence}, never published"));
        };
        handled.fetch_add(1, Ordering::Relaxed);
        if sequence % 4096 == 0 {
            thread::yield_now();
        }
        self.done[sequence as usize].store(true, Ordering::Release);
    }

    /// A downstream stage's part: the pool must have finished `sequence`.
    fn check_done(&self, who: &str, sequence: i64) {
        match self.done.get(sequence as usize) {
            Some(done) if done.load(Ordering::Acquire) => {}
            Some(_) => self.fail(|| format!("{who} saw {sequence} before the pool finished it")),
            None => self.fail(|| format!("{who} saw sequence {sequence}, never published")),
        }
    }

    /// Every event handled by exactly one worker, and no check failed.
    fn assert_each_handled_once(&self) {
        self.failures.lock().unwrap().assert_none("pipeline");
        let wrong: Vec<_> = self
            .handled
            .iter()
            .enumerate()
            .filter(|(_, count)| count.load(Ordering::Relaxed) != 1)
            .map(|(sequence, count)| (sequence, count.load(Ordering::Relaxed)))
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "events not handled exactly once (sequence, times), first few: {wrong:?}"
        );
    }
}

/// `WORKERS` workers that check each job against its sequence and work it.
fn pool(ledger: &Arc<Ledger>) -> Vec<impl FnMut(&Job, i64, bool) + Send + 'static> {
    (0..WORKERS)
        .map(|_| {
            let ledger = Arc::clone(ledger);
            move |job: &Job, sequence: i64, _end_of_batch: bool| {
                if *job != Job::new(sequence as u64, 0) {
                    ledger.fail(|| format!("a worker read {job:?} at {sequence}"));
                }
                ledger.work(sequence);
            }
        })
        .collect()
}

/// Publishes jobs `0..count` (origin = sequence), singly and in batches.
fn publish_jobs<W: WaitStrategy>(producer: &mut Producer<Job, W>, count: u64) {
    let largest_batch = (producer.capacity() as u64).min(32);
    let mut random = XorShift::scrambled(11);
    let mut published = 0;
    while published < count {
        if random.next_u64() % 2 == 0 {
            producer
                .publish(|job| *job = Job::new(published, 0))
                .expect("publish");
            published += 1;
        } else {
            let batch = random.between_1_and(largest_batch.min(count - published));
            producer
                .batch_publish(batch as usize, |job, sequence| {
                    *job = Job::new(sequence as u64, 0)
                })
                .expect("batch_publish");
            published += batch;
        }
    }
}

/// The events the pool's workers handled, summed over their reports.
fn pool_total(report: &ShutdownReport, not_in_pool: &[&str]) -> u64 {
    let workers: Vec<_> = report
        .handlers
        .iter()
        .filter(|handler| !not_in_pool.contains(&handler.name.as_str()))
        .collect();
    assert_eq!(workers.len(), WORKERS, "one report per worker");
    for worker in &workers {
        assert_eq!(worker.panic, None, "{}", worker.name);
        assert_eq!(worker.events_skipped, 0, "{}", worker.name);
    }
    workers.iter().map(|worker| worker.events_handled).sum()
}

/// A downstream handler that checks order and that the pool (and the given
/// handlers beside it) finished each event first.
struct Behind {
    name: &'static str,
    ledger: Arc<Ledger>,
    beside: Vec<Arc<AtomicI64>>,
    next: i64,
}

impl EventHandler<Job> for Behind {
    fn on_event(&mut self, _job: &Job, sequence: i64, _end_of_batch: bool) {
        let (name, expected) = (self.name, self.next);
        if sequence != expected {
            self.ledger
                .fail(|| format!("{name}: got {sequence}, expected {expected}"));
        }
        self.next = sequence + 1;
        self.ledger.check_done(name, sequence);
        for (index, beside) in self.beside.iter().enumerate() {
            let passed = beside.load(Ordering::Acquire);
            if passed < sequence {
                self.ledger.fail(|| {
                    format!("{name}: saw {sequence} before handler #{index} finished it ({passed})")
                });
            }
        }
    }
}

fn pool_handles_every_event_once(size: usize, count: u64) {
    with_timeout(TEST_LIMIT, &format!("pool-ring-of-{size}"), move || {
        let ledger = Ledger::new(count);
        let mut producer = build_single_producer(size, Job::default, Yielding::new())
            .handle_events_with_workers(pool(&ledger))
            .build()
            .expect("valid pipeline");
        publish_jobs(&mut producer, count);
        let report = producer.shutdown();
        assert_eq!(
            pool_total(&report, &[]),
            count,
            "events handled by the pool"
        );
        ledger.assert_each_handled_once();
    });
}

#[test]
fn a_pool_of_three_handles_every_event_exactly_once_ring_of_64() {
    pool_handles_every_event_once(64, events(1_000_000));
}

#[test]
fn a_pool_of_three_handles_every_event_exactly_once_ring_of_8192() {
    pool_handles_every_event_once(8192, events(1_000_000));
}

#[test]
fn a_stage_behind_the_pool_sees_every_event_in_order_after_the_pool() {
    let count = events(1_000_000);
    with_timeout(TEST_LIMIT, "pool-then-stage", move || {
        let ledger = Ledger::new(count);
        let behind = Behind {
            name: "behind",
            ledger: Arc::clone(&ledger),
            beside: vec![],
            next: 0,
        };
        let mut producer = build_single_producer(64, Job::default, Blocking::new())
            .handle_events_with_workers(pool(&ledger))
            .and_then()
            .thread_name("behind")
            .handle_events_with_handler(behind)
            .build()
            .expect("valid pipeline");
        publish_jobs(&mut producer, count);
        let report = producer.shutdown();
        assert_eq!(pool_total(&report, &["behind"]), count);
        let behind = report.handler("behind").expect("behind's report");
        assert_eq!(behind.events_handled, count, "behind saw every event");
        ledger.assert_each_handled_once();
    });
}

#[test]
fn a_pool_beside_a_handler_in_one_stage() {
    let count = events(500_000);
    with_timeout(TEST_LIMIT, "pool-beside-handler", move || {
        let ledger = Ledger::new(count);
        let journal_progress = Arc::new(AtomicI64::new(-1));
        let journal_seen = Arc::new(AtomicU64::new(0));
        let journal = {
            let ledger = Arc::clone(&ledger);
            let progress = Arc::clone(&journal_progress);
            let seen = Arc::clone(&journal_seen);
            let mut next = 0;
            move |job: &Job, sequence: i64, _: bool| {
                if sequence != next || *job != Job::new(sequence as u64, 0) {
                    let expected = next;
                    ledger.fail(|| format!("journal: {job:?} at {sequence}, expected {expected}"));
                }
                next = sequence + 1;
                seen.fetch_add(1, Ordering::Relaxed);
                progress.store(sequence, Ordering::Release);
            }
        };
        let behind = Behind {
            name: "behind",
            ledger: Arc::clone(&ledger),
            beside: vec![journal_progress],
            next: 0,
        };
        let mut producer = build_single_producer(128, Job::default, Yielding::new())
            .handle_events_with_workers(pool(&ledger))
            .thread_name("journal")
            .handle_events_with(journal)
            .and_then()
            .thread_name("behind")
            .handle_events_with_handler(behind)
            .build()
            .expect("valid pipeline");
        publish_jobs(&mut producer, count);
        let report = producer.shutdown();
        assert_eq!(pool_total(&report, &["journal", "behind"]), count);
        for name in ["journal", "behind"] {
            let handler = report.handler(name).expect("a report per handler");
            assert_eq!(handler.events_handled, count, "{name} saw every event");
        }
        assert_eq!(journal_seen.load(Ordering::Relaxed), count);
        ledger.assert_each_handled_once();
    });
}

#[test]
fn a_pool_in_a_multi_producer_pipeline() {
    // producers → stamp (mutable) → pool → check: the workers see the stamp
    // the stage before wrote; the stage behind sees every event in order,
    // each producer's in its order, after the pool finished it.
    const PRODUCERS: u64 = 3;
    let per_producer = events(200_000);
    let count = PRODUCERS * per_producer;
    with_timeout(TEST_LIMIT, "pool-multi-producer", move || {
        let ledger = Ledger::new(count);
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let ledger = Arc::clone(&ledger);
                move |job: &Job, sequence: i64, _: bool| {
                    if job.stamped != sequence || !job.is_intact() {
                        ledger.fail(|| format!("a worker read {job:?} at {sequence}"));
                    }
                    ledger.work(sequence);
                }
            })
            .collect();
        let mut behind = Behind {
            name: "behind",
            ledger: Arc::clone(&ledger),
            beside: vec![],
            next: 0,
        };
        let mut next_counter = vec![0; PRODUCERS as usize];
        let order_ledger = Arc::clone(&ledger);
        let producer = build_multi_producer(256, Job::default, Blocking::new())
            .thread_name("stamp")
            .handle_events_mut(|job: &mut Job, sequence, _| job.stamped = sequence)
            .and_then()
            .handle_events_with_workers(workers)
            .and_then()
            .thread_name("behind")
            .handle_events_with(move |job: &Job, sequence, end_of_batch| {
                behind.on_event(job, sequence, end_of_batch);
                match next_counter.get_mut(job.origin as usize) {
                    Some(next) if *next == job.counter => *next += 1,
                    _ => order_ledger.fail(|| {
                        format!("behind: {job:?} at {sequence} out of its producer's order")
                    }),
                }
            })
            .build()
            .expect("valid pipeline");
        let publishers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let mut producer = producer.clone();
                thread::spawn(move || {
                    let mut counter = 0;
                    while counter < per_producer {
                        if counter % 2 == 0 {
                            producer
                                .publish(|job| *job = Job::new(id, counter))
                                .expect("publish");
                            counter += 1;
                        } else {
                            let batch = 4.min(per_producer - counter);
                            producer
                                .batch_publish(batch as usize, |job, _| {
                                    *job = Job::new(id, counter);
                                    counter += 1;
                                })
                                .expect("batch_publish");
                        }
                    }
                })
            })
            .collect();
        for publisher in publishers {
            join(publisher);
        }
        let report = producer.shutdown().expect("the last handle");
        assert_eq!(pool_total(&report, &["stamp", "behind"]), count);
        for name in ["stamp", "behind"] {
            let handler = report.handler(name).expect("a report per handler");
            assert_eq!(handler.events_handled, count, "{name} saw every event");
        }
        ledger.assert_each_handled_once();
    });
}

#[test]
fn two_pools_in_one_stage_each_handle_every_event_once() {
    let count = events(200_000);
    with_timeout(TEST_LIMIT, "two-pools", move || {
        let first = Ledger::new(count);
        let second = Ledger::new(count);
        let mut producer = build_single_producer(64, Job::default, Yielding::new())
            .handle_events_with_workers(pool(&first))
            .handle_events_with_workers(pool(&second))
            .build()
            .expect("valid pipeline");
        publish_jobs(&mut producer, count);
        let report = producer.shutdown();
        assert_eq!(report.handlers.len(), 2 * WORKERS);
        let handled: u64 = report.handlers.iter().map(|h| h.events_handled).sum();
        assert_eq!(handled, 2 * count, "each pool handles every event");
        first.assert_each_handled_once();
        second.assert_each_handled_once();
    });
}

/// Options before a pool configure every worker: `thread_name("orders")`
/// names the workers `orders-0`, `orders-1`, ..., each running on the
/// thread of that name.
#[test]
fn options_before_a_pool_configure_every_worker() {
    let count = events(10_000);
    with_timeout(TEST_LIMIT, "pool-options", move || {
        let ledger = Ledger::new(count);
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let ledger = Arc::clone(&ledger);
                move |_: &Job, sequence: i64, _: bool| {
                    let thread = thread::current();
                    let name = thread.name().unwrap_or_default();
                    if !name.starts_with("orders-") {
                        ledger.fail(|| format!("worker thread named {name:?}"));
                    }
                    ledger.work(sequence);
                }
            })
            .collect();
        let mut producer = build_single_producer(64, Job::default, Yielding::new())
            .thread_name("orders")
            .handle_events_with_workers(workers)
            .and_then()
            .handle_events_with(|_: &Job, _, _| {})
            .build()
            .expect("valid pipeline");
        publish_jobs(&mut producer, count);
        let report = producer.shutdown();
        let names: Vec<&str> = report.handlers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["orders-0", "orders-1", "orders-2", "tickring-1-0"]);
        assert_eq!(pool_total(&report, &["tickring-1-0"]), count);
        ledger.assert_each_handled_once();
    });
}
