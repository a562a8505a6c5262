//! Criterion throughput benches of tickring: the LMAX shapes, tickring only
//! (the peers join these groups in a later change).
//!
//! ```text
//! cargo bench --bench throughput            # about a minute on 2 cores
//! cargo test --release --benches            # each bench once, as a smoke test
//! ```
//!
//! | group | shape | threads |
//! |---|---|---|
//! | `unicast_1p1c` | producer `publish`es one event at a time → one summing handler; ring 65,536 | 2, pinned to two cores, `BusySpin`; the producer spins, or yields (tickring's default), on a full ring |
//! | `unicast_batch10_1p1c` | as above, `batch_publish(10)` | as above |
//! | `pipeline_1p3c_yielding` | P → H1 → H2 → H3, each stage gated on the one before; ring 8,192 | 4, unpinned, `Yielding` |
//!
//! How they are timed: each bench builds its pipeline **once** and reuses it
//! for every sample. Building means allocating and filling the ring (4 MB for
//! 65,536 slots), spawning and pinning threads and running `on_start`; doing
//! that per sample would time thread start-up and page faults rather than the
//! hot path, and the handler threads would start cold each time. Each sample
//! (`iter_custom`) then publishes its events, waits until the last handler
//! reports the last of them, and stops the clock; only then does it check the
//! sample's checksum, so a fast wrong answer panics instead of reporting.
//!
//! The unicast producer runs on its own thread, pinned to the first core,
//! driven by criterion's thread over a channel (outside the timed region):
//! criterion's own thread stays unpinned, so the pipeline bench's threads are
//! not confined to one core by an inherited affinity mask, and `build()`
//! (which validates `pin_at_core` against the calling thread's affinity) sees
//! every core. With fewer than two cores the unicast benches fall back to
//! `Yielding` and no pinning, and say so in their names.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_utils::CachePadded;
use tickring::{
    available_cores, build_single_producer, pin_current_thread, BusySpin, EventHandler,
    FullRingWait, Producer, WaitStrategy, Yielding,
};

/// The LMAX unicast ring size.
const UNICAST_RING: usize = 65_536;
/// The LMAX pipeline ring size.
const PIPELINE_RING: usize = 8_192;
/// Events per `batch_publish` in the batch bench.
const BATCH: u64 = 10;

/// Two cores for the unicast producer and handler, when the process has them.
fn pick_cores() -> Option<(usize, usize)> {
    let cores = available_cores();
    if cores.contains(&0) && cores.contains(&1) {
        Some((0, 1))
    } else if cores.len() >= 2 {
        Some((cores[0], cores[1]))
    } else {
        None
    }
}

/// What the last handler has done: the last sequence it handled, and its
/// running checksums. Written once per batch (`end_of_batch`); read by the
/// timing thread only at the end of a sample.
#[derive(Debug)]
struct Progress {
    sequence: CachePadded<AtomicI64>,
    sum: AtomicI64,
    count: AtomicI64,
}

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            sequence: CachePadded::new(AtomicI64::new(-1)),
            sum: AtomicI64::new(0),
            count: AtomicI64::new(0),
        })
    }

    #[inline]
    fn report(&self, sequence: i64, sum: i64, count: i64) {
        self.sum.store(sum, Ordering::Relaxed);
        self.count.store(count, Ordering::Relaxed);
        // Release: the checksums above are visible to whoever acquires `sequence`.
        self.sequence.store(sequence, Ordering::Release);
    }

    /// Waits until the handler has passed `target`; returns (sum, count).
    fn wait_for<W: WaitStrategy>(&self, wait: &W, target: i64) -> (i64, i64) {
        wait.wait_until(None, || {
            (self.sequence.load(Ordering::Acquire) >= target).then_some(())
        });
        (
            self.sum.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

// ---------------------------------------------------------------------------
// Unicast 1P-1C (publish, batch_publish(10))
// ---------------------------------------------------------------------------

/// The LMAX unicast event.
#[derive(Debug, Default, Clone, Copy)]
struct ValueEvent {
    value: i64,
}

/// Sums the values; reports at the end of every batch.
struct Summer {
    sum: i64,
    progress: Arc<Progress>,
}

impl EventHandler<ValueEvent> for Summer {
    #[inline]
    fn on_event(&mut self, event: &ValueEvent, sequence: i64, end_of_batch: bool) {
        self.sum = self.sum.wrapping_add(event.value);
        if end_of_batch {
            self.progress.report(sequence, self.sum, 0);
        }
    }
}

/// Sum of `0..events`, the check of one sample.
fn expected_sum(events: u64) -> i64 {
    let events = events as i64;
    events.wrapping_mul(events - 1) / 2
}

/// How a sample's events are published: `value = 0..events`, in order.
type PublishFn<W> = fn(&mut Producer<ValueEvent, W>, u64);

fn publish_one_at_a_time<W: WaitStrategy>(producer: &mut Producer<ValueEvent, W>, events: u64) {
    for value in 0..events as i64 {
        producer
            .publish(|event| event.value = value)
            .expect("pipeline running");
    }
}

fn publish_in_batches<W: WaitStrategy>(producer: &mut Producer<ValueEvent, W>, events: u64) {
    let mut value = 0i64;
    for _ in 0..events / BATCH {
        producer
            .batch_publish(BATCH as usize, |event, _sequence| {
                event.value = value;
                value += 1;
            })
            .expect("pipeline running");
    }
}

/// A unicast pipeline whose producer lives on its own (pinned) thread. One
/// job = publish `events`, wait for the handler to pass the last one, check
/// the sum, reply with the time from the first publish to the handler's
/// report.
struct Driver {
    jobs: Option<mpsc::Sender<u64>>,
    elapsed: mpsc::Receiver<Duration>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    fn start<W: WaitStrategy + Clone>(
        wait: W,
        cores: Option<(usize, usize)>,
        full_ring_wait: FullRingWait,
        publish: PublishFn<W>,
    ) -> Self {
        let progress = Progress::new();
        let builder = build_single_producer(UNICAST_RING, ValueEvent::default, wait.clone())
            .producer_wait(full_ring_wait)
            .handle_events_with_handler(Summer {
                sum: 0,
                progress: Arc::clone(&progress),
            });
        let mut producer = match cores {
            Some((_, second)) => builder.pin_at_core(second),
            None => builder,
        }
        .build()
        .expect("unicast pipeline");
        let (jobs, job_queue) = mpsc::channel::<u64>();
        let (reply, elapsed) = mpsc::channel();
        let thread = thread::spawn(move || {
            if let Some((first, _)) = cores {
                assert!(
                    pin_current_thread(first),
                    "pin the producer to core {first}"
                );
            }
            let mut sum_before = 0i64;
            for events in job_queue {
                let started = Instant::now();
                publish(&mut producer, events);
                let (sum, _) = progress.wait_for(&wait, producer.last_published());
                let elapsed = started.elapsed();
                let sample_sum = sum.wrapping_sub(sum_before);
                assert_eq!(
                    sample_sum,
                    expected_sum(events),
                    "checksum of a {events}-event sample"
                );
                sum_before = sum;
                if reply.send(elapsed).is_err() {
                    break;
                }
            }
            let report = producer.shutdown();
            assert!(report.first_panic().is_none(), "{report:?}");
        });
        Self {
            jobs: Some(jobs),
            elapsed,
            thread: Some(thread),
        }
    }

    fn run(&self, events: u64) -> Duration {
        self.jobs
            .as_ref()
            .expect("running")
            .send(events)
            .expect("producer thread alive");
        self.elapsed
            .recv()
            .expect("producer thread failed (see its panic above)")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // A panic there was already printed; don't double-panic here.
            let _ = thread.join();
        }
    }
}

/// Each unicast group runs with both full-ring policies: `Spin` (what a
/// pinned, busy-spinning deployment would choose, and what the peers do) and
/// tickring's default `Yield`. On a shared machine the two differ by
/// multiples (see the README), so both are on record.
fn unicast_groups<W: WaitStrategy + Clone>(
    c: &mut Criterion,
    wait: W,
    cores: Option<(usize, usize)>,
    setup: &str,
) {
    for (group_name, publish, events_per_iteration) in [
        (
            "unicast_1p1c",
            publish_one_at_a_time::<W> as PublishFn<W>,
            1,
        ),
        ("unicast_batch10_1p1c", publish_in_batches::<W>, BATCH),
    ] {
        let mut group = c.benchmark_group(group_name);
        group
            .throughput(Throughput::Elements(events_per_iteration))
            .sample_size(20)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(6));
        for (policy, full_ring_wait) in [
            ("spin_if_full", FullRingWait::Spin),
            ("yield_if_full", FullRingWait::Yield),
        ] {
            let driver = Driver::start(wait.clone(), cores, full_ring_wait, publish);
            let id = BenchmarkId::new("tickring", format!("{setup}_{policy}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iterations| driver.run(iterations * events_per_iteration))
            });
            // Dropping the driver shuts its pipeline down before the next
            // one starts, so no idle pipeline spins beside a measured one.
            drop(driver);
        }
        group.finish();
    }
}

fn unicast(c: &mut Criterion) {
    match pick_cores() {
        Some(cores) => unicast_groups(c, BusySpin, Some(cores), "busy_spin_pinned"),
        // Fewer than two cores: two spinning threads would take turns by
        // time slice, so yield instead, and say so in the bench id.
        None => unicast_groups(c, Yielding::new(), None, "yielding_unpinned_1_core"),
    }
}

// ---------------------------------------------------------------------------
// Pipeline 1P-3C
// ---------------------------------------------------------------------------

/// The LMAX pipeline event.
#[derive(Debug, Default, Clone, Copy)]
struct FunctionEvent {
    op1: i64,
    op2: i64,
    step1: i64,
    step2: i64,
}

/// The first value of `op2`.
const OP2_START: i64 = 777;
/// How much `op2` falls per event. LMAX decrements by 1, which makes
/// `op1 + op2` the same for every event and blinds the check to a stage that
/// reads a stale event; 2 keeps the work identical and the check meaningful.
const OP2_STEP: i64 = 2;

/// H3: counts events with `step2 & 4 == 4` (LMAX's check) and sums `step2`
/// (a stronger one); reports at the end of every batch.
struct StepThree {
    count: i64,
    sum: i64,
    progress: Arc<Progress>,
}

impl EventHandler<FunctionEvent> for StepThree {
    #[inline]
    fn on_event(&mut self, event: &FunctionEvent, sequence: i64, end_of_batch: bool) {
        if event.step2 & 4 == 4 {
            self.count += 1;
        }
        self.sum = self.sum.wrapping_add(event.step2);
        if end_of_batch {
            self.progress.report(sequence, self.sum, self.count);
        }
    }
}

/// The same three steps, serially: (sum of step2, count) for events `first..first + events`.
fn expected_pipeline(first: i64, events: u64) -> (i64, i64) {
    let mut sum = 0i64;
    let mut count = 0i64;
    for i in first..first + events as i64 {
        let step1 = i + (OP2_START - OP2_STEP * i);
        let step2 = step1 + 3;
        if step2 & 4 == 4 {
            count += 1;
        }
        sum = sum.wrapping_add(step2);
    }
    (sum, count)
}

fn pipeline(c: &mut Criterion) {
    // Four threads (producer + three handlers) on a machine that may have
    // only two cores: busy-spinning would starve whoever is descheduled, so
    // the handlers yield, and nothing is pinned. The bench id carries the
    // thread and core counts.
    let progress = Progress::new();
    let mut producer =
        build_single_producer(PIPELINE_RING, FunctionEvent::default, Yielding::new())
            .handle_events_mut(|event: &mut FunctionEvent, _sequence, _end_of_batch| {
                event.step1 = event.op1 + event.op2;
            })
            .and_then()
            .handle_events_mut(|event: &mut FunctionEvent, _sequence, _end_of_batch| {
                event.step2 = event.step1 + 3;
            })
            .and_then()
            .handle_events_with_handler(StepThree {
                count: 0,
                sum: 0,
                progress: Arc::clone(&progress),
            })
            .build()
            .expect("pipeline");
    let setup = format!("yielding_4_threads_on_{}_cores", available_cores().len());
    let mut next = 0i64;
    let mut before = (0i64, 0i64);
    let mut group = c.benchmark_group("pipeline_1p3c");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    group.bench_function(BenchmarkId::new("tickring", setup), |b| {
        b.iter_custom(|events| {
            let first = next;
            let started = Instant::now();
            for i in first..first + events as i64 {
                producer
                    .publish(|event| {
                        event.op1 = i;
                        event.op2 = OP2_START - OP2_STEP * i;
                    })
                    .expect("pipeline running");
            }
            let (sum, count) = progress.wait_for(&Yielding::new(), producer.last_published());
            let elapsed = started.elapsed();
            next = first + events as i64;
            let sample = (sum.wrapping_sub(before.0), count - before.1);
            assert_eq!(
                sample,
                expected_pipeline(first, events),
                "(sum of step2, count) of events {first}..{next}"
            );
            before = (sum, count);
            elapsed
        })
    });
    group.finish();
    let report = producer.shutdown();
    assert!(report.first_panic().is_none(), "{report:?}");
}

criterion_group!(benches, unicast, pipeline);
criterion_main!(benches);
