//! Contract 4: once `build()` has returned, publishing and consuming allocate
//! nothing, on any thread. A counting global allocator sees every allocation
//! in the process; this binary has a single test so that no other test's
//! allocations land in the count.

mod common;

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::ticks::Tick;
use tickring::{
    build_single_producer, Blocking, BusySpin, EventProducer, Producer, Sleeping, WaitStrategy,
};
use tickring_bench::alloc::{allocations, frees, Counting};

// The harness's counting allocator (`bench/src/alloc.rs`), one for the
// tools and this test.
#[global_allocator]
static GLOBAL: Counting = Counting;

const EVENTS: i64 = if cfg!(debug_assertions) {
    200_000
} else {
    1_000_000
};
const WARM_UP: i64 = 10_000;
const LIMIT: Duration = Duration::from_secs(if cfg!(debug_assertions) { 300 } else { 60 });

/// What every handler shares with the test: its progress and its errors.
#[derive(Default)]
struct Progress {
    handled: AtomicI64,
    wrong: AtomicU64,
}

/// Kills the process if a pipeline's run (warm-up, measured section and
/// shutdown) hangs: the measured section must not allocate, so it cannot use
/// a channel or a timed join (`common::with_timeout`) to bound itself.
struct Watchdog {
    done: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(what: &'static str) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicBool::new(false));
        let watched = Arc::clone(&done);
        let started = Arc::clone(&running);
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + LIMIT;
            // The thread's own start-up frees are done once its body runs.
            started.store(true, Ordering::Release);
            while !watched.load(Ordering::Acquire) {
                if Instant::now() > deadline {
                    eprintln!("no_alloc: '{what}' did not finish within {LIMIT:?}: it hangs");
                    std::process::exit(101);
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        let deadline = Instant::now() + LIMIT;
        while !running.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the watchdog never started");
            thread::yield_now();
        }
        Self {
            done,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Release);
        self.thread.take().unwrap().join().expect("watchdog");
    }
}

/// Publishes events `first..first + count` with `publish`, `batch_publish`
/// and `try_publish` in turn, queries the capacity and lags now and then,
/// and waits until every handler has handled them all. Allocates nothing.
fn publish_and_consume<W: WaitStrategy>(
    producer: &mut Producer<Tick, W>,
    progress: &[Arc<Progress>],
    first: i64,
    count: i64,
) {
    let end = first + count;
    let mut next = first;
    while next < end {
        match next % 3 {
            0 => {
                let sequence = producer.publish(|tick| tick.fill(next)).expect("publish");
                assert_eq!(sequence, next);
                next += 1;
            }
            1 => {
                let batch = (end - next).min(5) as usize;
                producer
                    .batch_publish(batch, |tick, sequence| tick.fill(sequence))
                    .expect("batch_publish");
                next += batch as i64;
            }
            _ => {
                if producer.try_publish(|tick| tick.fill(next)).is_ok() {
                    next += 1;
                } else {
                    spin_loop();
                }
            }
        }
        if next % 4096 == 0 {
            // No handler is more than a ring behind the producer.
            let capacity = producer.capacity();
            assert!(producer
                .handler_lags()
                .all(|(_, lag)| lag <= capacity as u64));
            assert!(producer.remaining_capacity() <= capacity);
        }
    }
    for handler in progress {
        while handler.handled.load(Ordering::Acquire) < end - 1 {
            thread::yield_now();
        }
    }
}

/// Counts the allocations (and frees) made while `count` events travel.
/// The caller's [`Watchdog`] bounds it.
fn allocations_while_running<W: WaitStrategy>(
    what: &'static str,
    producer: &mut Producer<Tick, W>,
    progress: &[Arc<Progress>],
) -> (u64, u64) {
    // Warm up: first-use initialisation (thread parking, lazily touched
    // statics) may allocate once; it is not the event path.
    publish_and_consume(producer, progress, 0, WARM_UP);
    let allocations_before = allocations();
    let frees_before = frees();
    publish_and_consume(producer, progress, WARM_UP, EVENTS);
    let allocations = allocations() - allocations_before;
    let frees = frees() - frees_before;
    for handler in progress {
        assert_eq!(
            handler.wrong.load(Ordering::Acquire),
            0,
            "{what}: an event was wrong"
        );
    }
    (allocations, frees)
}

/// A reading handler that checks each event and publishes its progress.
fn checker(progress: &Arc<Progress>) -> impl FnMut(&Tick, i64, bool) + Send + 'static {
    let progress = Arc::clone(progress);
    move |tick: &Tick, sequence, _| {
        if !tick.is_event(sequence) {
            progress.wrong.fetch_add(1, Ordering::Relaxed);
        }
        progress.handled.store(sequence, Ordering::Release);
    }
}

#[test]
fn publish_and_consume_allocate_nothing() {
    let mut results = Vec::new();

    // Busy-spin: the producer and one handler, a core each.
    let watchdog = Watchdog::start("busy-spin");
    let progress = vec![Arc::new(Progress::default())];
    let mut producer = build_single_producer(1024, Tick::default, BusySpin)
        .handle_events_with(checker(&progress[0]))
        .build()
        .expect("build");
    results.push((
        "busy-spin",
        allocations_while_running("busy-spin", &mut producer, &progress),
    ));
    let report = producer.shutdown();
    assert_eq!(report.handlers[0].events_handled, (WARM_UP + EVENTS) as u64);
    watchdog.stop();

    // Blocking: a mutable stage, two readers, one more stage; threads park
    // and are woken all along (a ring of 64 fills and drains constantly).
    let watchdog = Watchdog::start("blocking");
    let progress: Vec<Arc<Progress>> = (0..4).map(|_| Arc::default()).collect();
    let mut producer = build_single_producer(64, Tick::default, Blocking::new())
        // Rewrites the event in place (same content: the checkers verify it).
        .handle_events_mut(|tick: &mut Tick, sequence, _| tick.fill(sequence))
        .and_then()
        .handle_events_with(checker(&progress[0]))
        .handle_events_with(checker(&progress[1]))
        .and_then()
        .handle_events_with(checker(&progress[2]))
        .handle_events_with(checker(&progress[3]))
        .build()
        .expect("build");
    results.push((
        "blocking",
        allocations_while_running("blocking", &mut producer, &progress),
    ));
    let report = producer.shutdown();
    for handler in &report.handlers {
        assert_eq!(
            handler.events_handled,
            (WARM_UP + EVENTS) as u64,
            "{handler:?}"
        );
    }
    watchdog.stop();

    // Sleeping: its waits call thread::sleep.
    let watchdog = Watchdog::start("sleeping");
    let progress = vec![Arc::new(Progress::default()), Arc::new(Progress::default())];
    let mut producer = build_single_producer(256, Tick::default, Sleeping::new())
        .handle_events_with(checker(&progress[0]))
        .and_then()
        .handle_events_with(checker(&progress[1]))
        .build()
        .expect("build");
    results.push((
        "sleeping",
        allocations_while_running("sleeping", &mut producer, &progress),
    ));
    drop(producer);
    watchdog.stop();

    for (strategy, (allocations, frees)) in results {
        assert_eq!(
            (allocations, frees),
            (0, 0),
            "{strategy}: {allocations} allocations and {frees} frees while {EVENTS} events \
             were published and consumed"
        );
    }
}
