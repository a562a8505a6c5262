//! Throughput of every LMAX shape (`../shared/REFERENCE.md`), tickring beside
//! its peers in the same criterion group: the `disruptor` crate,
//! `crossbeam-channel`, and for the 1P-1C shapes `rtrb` and `std::sync::mpsc`.
//!
//! ```text
//! cargo bench --bench throughput                   # every group, then the rounds: ~5 minutes on 2 cores
//! cargo bench --bench throughput -- unicast_1p1c/  # one group (a criterion filter)
//! cargo test --release --benches                   # each bench once, as a smoke test
//! ```
//!
//! | group | shape | ring | threads |
//! |---|---|---|---|
//! | `unicast_1p1c` | P → H; H sums the values | 65,536 | 2 |
//! | `unicast_batch10_1p1c` | as above, the producer claims 10 events at a time | 65,536 | 2 |
//! | `pipeline_1p3c` | P → H1 → H2 → H3; H1 `step1 = op1 + op2`, H2 `step2 = step1 + 3`, H3 counts `step2 & 4 == 4` and sums `step2` | 8,192 | 4 |
//! | `multicast_1p3c` | P → H1, H2, H3 on one barrier; H1 adds, H2 subtracts, H3 sums `value & 0xFF` | 8,192 | 4 |
//! | `diamond_1p3c` | P → H1 (`fizz = v % 3 == 0`), H2 (`buzz = v % 5 == 0`) → H3 counts fizz && buzz | 8,192 | 4 |
//! | `sequencer_3p1c` | P1, P2, P3 → H; H sums | 65,536 | 4 |
//! | `sequencer_batch10_3p1c` | as above, each producer claims 10 at a time | 65,536 | 4 |
//!
//! Throughput is reported in events per second (`Throughput::Elements`: one
//! element is one event, so a 10-event batch counts 10).
//!
//! **Threads and waiting.** A shape whose threads each get a core of their
//! own (1P-1C on 2 cores) runs pinned, one thread per core, and every system
//! busy-spins: its consumers spin, and its producers spin when the ring is
//! full (tickring `BusySpin` and `FullRingWait::Spin`, the `disruptor`
//! crate's `BusySpin`, `spin_loop` polls for the channels). The bench id says
//! `busy_spin_pinned`. A shape that needs more threads than the machine has
//! cores runs unpinned, and every waiting thread of every system spins 100
//! polls and then yields (tickring `Yielding` and `FullRingWait::Yield`; the
//! `disruptor` crate, which ships no yielding strategy, gets the same policy
//! through its public `WaitStrategy` trait; the channels poll with
//! `try_recv`/`try_send` under the same policy). The bench id says so, e.g.
//! `yielding_4_threads_on_2_cores`. tickring's 1P-1C groups also run once
//! with its default full-ring policy, `FullRingWait::Yield`
//! (`..._yield_if_full`). Every producer that is not tickring's waits for
//! room with `try_publish` (or `try_send`, `push`) and the same policy, so
//! the full-ring behaviour is the same for all.
//!
//! **How each system expresses a shape.** tickring: stages of handlers, with
//! `handle_events_mut` for the pipeline's writing stages (they are alone in
//! their stage). The diamond's H1 and H2 share a stage, so each writes a
//! field it owns, an atomic stored `Relaxed` (the gating orders it for H3).
//! The `disruptor` crate hands every handler `&E`, so its pipeline and diamond
//! stages write `Relaxed` atomics; on x86-64 a relaxed atomic load or store
//! is the same `mov` as a plain one, so the work is the same. Channels:
//! multicast is one channel per consumer (the producer sends each value
//! three times), a pipeline is a chain of channels with a thread per stage,
//! the diamond is two channels out of the producer and two into H3, which
//! pairs them up; a channel cannot claim 10 slots at once, so in the batch
//! shapes it sends one `[i64; 10]` message per batch (`array10_per_message`)
//! and `rtrb` writes a 10-slot chunk (`write_chunk10`).
//!
//! **How they are timed and checked.** Each bench builds its pipeline once
//! and reuses it for every sample: building allocates and fills a ring and
//! starts (and pins) threads, which is not the hot path. The producer lives
//! on a thread of its own (pinned when the shape is); criterion's thread
//! sends it a sample size and sleeps until the answer. One sample publishes
//! its events (values continuing from the last sample), waits until the
//! measured consumers report the last of them, stops the clock, and only
//! then checks the consumers' checksums against the same computation done
//! serially: a fast wrong answer panics instead of reporting. Consumers
//! report once per batch (`end_of_batch`; for a channel, when it finds the
//! channel empty), and count their batches, as the LMAX harness does in
//! `onBatchStart`; the last table prints the average batch beside each rate.
//!
//! **Interleaved rounds.** Criterion runs one bench after another, and on a
//! shared, virtualized machine the speed of a shape drifts by multiples
//! within minutes (1P-1C on the 2-core build machine: 10-35 M events/s in
//! one regime, 100-450 M/s in another, for every system, switching between
//! and even within runs). So a ratio of two criterion results compares two moments, not
//! two systems. After criterion's groups (in `cargo bench` only), every
//! shape that ran goes again in rounds: each round builds a fresh pipeline
//! of every system, in an order that rotates from round to round, warms it
//! with a quarter-size sample and measures one sample of about a quarter
//! second (sized from criterion's median). The table printed last gives per
//! system the median over rounds, min, max, spread, average batch, and the
//! *paired* ratio to tickring (the median over rounds of system / tickring
//! in the same round), and for 1P-1C the ratio to the best Rust peer
//! (`disruptor`, `crossbeam-channel`, `rtrb`). Use that table, not
//! criterion's, for comparisons; repeat the run before trusting a small
//! difference.

use std::cell::Cell;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_utils::CachePadded;
use disruptor::{ProcessorSettings, Producer as _};
use tickring::{available_cores, pin_current_thread, BusySpin, FullRingWait, Yielding};

/// The LMAX unicast and sequencer ring size.
const UNICAST_RING: usize = 65_536;
/// The LMAX pipeline, multicast and diamond ring size.
const PIPELINE_RING: usize = 8_192;
/// Events per claim in the batch shapes.
const BATCH: i64 = 10;
/// Producers of the sequencer shapes.
const PRODUCERS: i64 = 3;
/// Polls before a yielding thread yields (tickring's `Yielding`).
const SPINS_BEFORE_YIELD: u32 = 100;

/// Criterion settings for every group: 15 measured samples per bench keep
/// the whole run near 4 minutes on 2 cores.
const SAMPLES: usize = 15;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASUREMENT: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------
// Shapes, and what their consumers must compute
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Unicast,
    UnicastBatch,
    Pipeline,
    Multicast,
    Diamond,
    Sequencer,
    SequencerBatch,
}

impl Shape {
    const ALL: [Shape; 7] = [
        Shape::Unicast,
        Shape::UnicastBatch,
        Shape::Pipeline,
        Shape::Multicast,
        Shape::Diamond,
        Shape::Sequencer,
        Shape::SequencerBatch,
    ];

    fn group(self) -> &'static str {
        match self {
            Shape::Unicast => "unicast_1p1c",
            Shape::UnicastBatch => "unicast_batch10_1p1c",
            Shape::Pipeline => "pipeline_1p3c",
            Shape::Multicast => "multicast_1p3c",
            Shape::Diamond => "diamond_1p3c",
            Shape::Sequencer => "sequencer_3p1c",
            Shape::SequencerBatch => "sequencer_batch10_3p1c",
        }
    }

    /// Threads that publish or consume.
    fn threads(self) -> usize {
        match self {
            Shape::Unicast | Shape::UnicastBatch => 2,
            _ => 4,
        }
    }

    /// Events per criterion iteration: one publish (or one batch) per
    /// producer.
    fn events_per_iteration(self) -> i64 {
        match self {
            Shape::UnicastBatch => BATCH,
            Shape::Sequencer => PRODUCERS,
            Shape::SequencerBatch => PRODUCERS * BATCH,
            _ => 1,
        }
    }

    /// Consumers whose results are checked (and waited for).
    fn measured_consumers(self) -> usize {
        match self {
            Shape::Multicast => 3,
            _ => 1,
        }
    }

    fn ring(self) -> usize {
        match self {
            Shape::Pipeline | Shape::Multicast | Shape::Diamond => PIPELINE_RING,
            _ => UNICAST_RING,
        }
    }

    /// What consumer `consumer` must have added to its checksums over the
    /// events with values `first..first + events`, computed serially.
    fn expected(self, consumer: usize, first: i64, events: i64) -> [i64; 2] {
        let end = first + events;
        match (self, consumer) {
            (Shape::Pipeline, _) => {
                let (mut sum, mut count) = (0i64, 0i64);
                for i in first..end {
                    let step2 = pipeline_step2(i);
                    count += i64::from(step2 & 4 == 4);
                    sum = sum.wrapping_add(step2);
                }
                [sum, count]
            }
            (Shape::Multicast, 1) => [sum_of_range(first, end).wrapping_neg(), 0],
            (Shape::Multicast, 2) => [low_byte_sum(end).wrapping_sub(low_byte_sum(first)), 0],
            (Shape::Diamond, _) => [multiples_of_15(end) - multiples_of_15(first), 0],
            _ => [sum_of_range(first, end), 0],
        }
    }
}

/// `first + (first + 1) + ... + (end - 1)`, wrapping as the handlers do.
fn sum_of_range(first: i64, end: i64) -> i64 {
    let triangle = |n: i64| (n as i128 * (n as i128 - 1) / 2) as i64;
    triangle(end).wrapping_sub(triangle(first))
}

/// `sum(v & 0xFF)` over `0..n`.
fn low_byte_sum(n: i64) -> i64 {
    let (cycles, rest) = (n / 256, n % 256);
    (cycles as i128 * (255 * 256 / 2) + (rest as i128 * (rest as i128 - 1) / 2)) as i64
}

/// Multiples of 15 in `0..n`.
fn multiples_of_15(n: i64) -> i64 {
    (n + 14) / 15
}

/// The first value of `op2` in the pipeline event.
const OP2_START: i64 = 777;
/// How much `op2` falls per event. LMAX decrements by 1, which makes
/// `op1 + op2` the same for every event and blinds the check to a stage that
/// reads a stale event; 2 keeps the work identical and the check meaningful.
const OP2_STEP: i64 = 2;

fn pipeline_op2(i: i64) -> i64 {
    OP2_START - OP2_STEP * i
}

/// H2's result for event `i`, computed serially.
fn pipeline_step2(i: i64) -> i64 {
    i + pipeline_op2(i) + 3
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// The unicast, multicast and sequencer event.
#[derive(Debug, Default, Clone, Copy)]
struct ValueEvent {
    value: i64,
}

/// The pipeline event, for tickring (whose writing stages get `&mut`) and
/// for the channels (which move it from stage to stage).
#[derive(Debug, Default, Clone, Copy)]
struct FunctionEvent {
    op1: i64,
    op2: i64,
    step1: i64,
    step2: i64,
}

/// The pipeline event for the `disruptor` crate, whose handlers get `&E`:
/// the stages' results are atomics, stored and loaded `Relaxed` (a plain
/// `mov` on x86-64; the stage gating orders them).
#[derive(Debug, Default)]
struct SharedFunctionEvent {
    op1: i64,
    op2: i64,
    step1: AtomicI64,
    step2: AtomicI64,
}

/// The diamond event. H1 and H2 run in parallel, so each writes a field of
/// its own; H3 reads both after both are done (the gating orders the
/// `Relaxed` accesses), for tickring and the `disruptor` crate alike.
#[derive(Debug, Default)]
struct FizzBuzzEvent {
    value: i64,
    fizz: AtomicBool,
    buzz: AtomicBool,
}

// ---------------------------------------------------------------------------
// Waiting: one policy for every system
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// `spin_loop` between polls: pinned threads with a core each.
    Spin,
    /// `SPINS_BEFORE_YIELD` polls with `spin_loop`, then `yield_now`.
    Yield,
}

/// The wait between two polls of the harness's own loops (channels, the
/// producers' full-ring waits, the end-of-sample wait).
#[derive(Debug)]
struct Backoff {
    waiting: Waiting,
    polls: u32,
}

impl Backoff {
    fn new(waiting: Waiting) -> Self {
        Self { waiting, polls: 0 }
    }

    #[inline]
    fn snooze(&mut self) {
        if self.waiting == Waiting::Yield && self.polls >= SPINS_BEFORE_YIELD {
            thread::yield_now();
        } else {
            self.polls += 1;
            spin_loop();
        }
    }

    #[inline]
    fn reset(&mut self) {
        self.polls = 0;
    }
}

/// tickring's `Yielding` policy for the `disruptor` crate, which has only
/// busy-spin and sleep strategies. Its consumers call `wait_for(sequence)`
/// once per failed poll with the sequence they wait for, so a per-thread
/// count of polls for the same sequence gives "spin 100, then yield".
#[derive(Debug, Clone, Copy)]
struct DisruptorYielding;

impl disruptor::wait_strategies::WaitStrategy for DisruptorYielding {
    #[inline]
    fn wait_for(&self, sequence: i64) {
        thread_local! {
            static POLLS: Cell<(i64, u32)> = const { Cell::new((i64::MIN, 0)) };
        }
        POLLS.with(|polls| {
            let (waited_for, count) = polls.get();
            let count = if waited_for == sequence { count + 1 } else { 0 };
            if count >= SPINS_BEFORE_YIELD {
                polls.set((sequence, SPINS_BEFORE_YIELD));
                thread::yield_now();
            } else {
                polls.set((sequence, count));
                spin_loop();
            }
        });
    }
}

/// How every system of one bench waits.
trait Mode: 'static {
    type TickWait: tickring::WaitStrategy + Clone;
    type DisruptorWait: disruptor::wait_strategies::WaitStrategy + 'static;
    const WAITING: Waiting;
    /// tickring's producer policy on a full ring.
    const FULL_RING: FullRingWait;
    fn tick_wait() -> Self::TickWait;
    fn disruptor_wait() -> Self::DisruptorWait;
}

/// Pinned threads, a core each: everyone busy-spins.
struct PinnedSpin;

impl Mode for PinnedSpin {
    type TickWait = BusySpin;
    type DisruptorWait = disruptor::BusySpin;
    const WAITING: Waiting = Waiting::Spin;
    const FULL_RING: FullRingWait = FullRingWait::Spin;
    fn tick_wait() -> BusySpin {
        BusySpin
    }
    fn disruptor_wait() -> disruptor::BusySpin {
        disruptor::BusySpin
    }
}

/// More threads than cores: everyone spins briefly, then yields.
struct SharedYield;

impl Mode for SharedYield {
    type TickWait = Yielding;
    type DisruptorWait = DisruptorYielding;
    const WAITING: Waiting = Waiting::Yield;
    const FULL_RING: FullRingWait = FullRingWait::Yield;
    fn tick_wait() -> Yielding {
        Yielding::new()
    }
    fn disruptor_wait() -> DisruptorYielding {
        DisruptorYielding
    }
}

/// Where the threads of one bench run: thread 0 is the (first) producer,
/// then the other producers, then the consumers in stage order.
#[derive(Debug, Clone)]
struct Placement {
    cores: Option<Vec<usize>>,
}

impl Placement {
    fn core(&self, thread: usize) -> Option<usize> {
        self.cores.as_ref().map(|cores| cores[thread])
    }
}

/// Starts `body` on a named thread, pinned to `core` if given.
fn spawn_on(
    name: &str,
    core: Option<usize>,
    body: impl FnOnce() + Send + 'static,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Some(core) = core {
                assert!(pin_current_thread(core), "pin a thread to core {core}");
            }
            body()
        })
        .expect("spawn a bench thread")
}

fn tick_pin<E, W, K>(
    builder: tickring::Builder<E, W, K>,
    core: Option<usize>,
) -> tickring::Builder<E, W, K>
where
    E: Send + Sync + 'static,
    W: tickring::WaitStrategy,
{
    match core {
        Some(core) => builder.pin_at_core(core),
        None => builder,
    }
}

/// The `disruptor` crate pins the *next* handler added.
fn disruptor_pin<E, W, B: ProcessorSettings<E, W>>(builder: B, core: Option<usize>) -> B {
    match core {
        Some(core) => builder.pin_at_core(core),
        None => builder,
    }
}

// ---------------------------------------------------------------------------
// Progress, checks and samples
// ---------------------------------------------------------------------------

/// What one measured consumer has done: events handled, batches, and its
/// running checksums. Written once per batch; read by the producer's thread
/// at the end of a sample.
#[derive(Debug, Default)]
struct Progress {
    handled: CachePadded<AtomicI64>,
    batches: AtomicI64,
    checksums: [AtomicI64; 2],
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    handled: i64,
    batches: i64,
    checksums: [i64; 2],
}

impl Progress {
    fn snapshot(&self) -> Snapshot {
        // Acquire: pairs with `report`'s release, so the checksums are at least as new.
        let handled = self.handled.load(Ordering::Acquire);
        Snapshot {
            handled,
            batches: self.batches.load(Ordering::Relaxed),
            checksums: [
                self.checksums[0].load(Ordering::Relaxed),
                self.checksums[1].load(Ordering::Relaxed),
            ],
        }
    }
}

/// A measured consumer's running results, on its own thread.
#[derive(Debug)]
struct Tally {
    checksums: [i64; 2],
    batches: i64,
    progress: Arc<Progress>,
}

impl Tally {
    fn new(progress: &Arc<Progress>) -> Self {
        Self {
            checksums: [0; 2],
            batches: 0,
            progress: Arc::clone(progress),
        }
    }

    #[inline]
    fn add(&mut self, checksum: usize, value: i64) {
        self.checksums[checksum] = self.checksums[checksum].wrapping_add(value);
    }

    /// End of a batch: `handled` events so far (all samples together).
    #[inline]
    fn end_batch(&mut self, handled: i64) {
        self.batches += 1;
        let progress = &*self.progress;
        progress.batches.store(self.batches, Ordering::Relaxed);
        progress.checksums[0].store(self.checksums[0], Ordering::Relaxed);
        progress.checksums[1].store(self.checksums[1], Ordering::Relaxed);
        // Release: the checksums above are visible to whoever acquires `handled`.
        progress.handled.store(handled, Ordering::Release);
    }
}

/// One measured sample.
#[derive(Debug, Clone, Copy)]
struct Measured {
    elapsed: Duration,
    events: i64,
    average_batch: f64,
}

/// Times and checks the samples of one bench, on the producer's thread.
struct Sampler {
    shape: Shape,
    progress: Vec<Arc<Progress>>,
    before: Vec<Snapshot>,
    /// Events published by all samples so far; the next sample's first value.
    published: i64,
    waiting: Waiting,
}

impl Sampler {
    /// A sampler and the progress of each measured consumer (in order).
    fn new(shape: Shape, waiting: Waiting) -> (Self, Vec<Arc<Progress>>) {
        let progress: Vec<Arc<Progress>> = (0..shape.measured_consumers())
            .map(|_| Arc::new(Progress::default()))
            .collect();
        let sampler = Self {
            shape,
            progress: progress.clone(),
            before: vec![Snapshot::default(); progress.len()],
            published: 0,
            waiting,
        };
        (sampler, progress)
    }

    /// Runs one sample: `publish(first, events)` must publish the values
    /// `first..first + events`; then waits for every measured consumer to
    /// handle them, stops the clock, and checks their results.
    fn sample(&mut self, iterations: u64, publish: impl FnOnce(i64, i64)) -> Measured {
        let events = iterations as i64 * self.shape.events_per_iteration();
        let first = self.published;
        let target = first + events;
        let started = Instant::now();
        publish(first, events);
        let mut backoff = Backoff::new(self.waiting);
        for progress in &self.progress {
            while progress.handled.load(Ordering::Acquire) < target {
                backoff.snooze();
            }
        }
        let elapsed = started.elapsed();
        self.published = target;
        let mut average_batch = f64::NAN;
        for (consumer, progress) in self.progress.iter().enumerate() {
            let now = progress.snapshot();
            let before = self.before[consumer];
            let got = [
                now.checksums[0].wrapping_sub(before.checksums[0]),
                now.checksums[1].wrapping_sub(before.checksums[1]),
            ];
            let expected = self.shape.expected(consumer, first, events);
            assert_eq!(
                (now.handled, got),
                (target, expected),
                "{}: consumer {consumer} over values {first}..{target}: (events handled, \
                 checksums) differ from the serial computation",
                self.shape.group()
            );
            if consumer == 0 {
                average_batch = events as f64 / (now.batches - before.batches).max(1) as f64;
            }
            self.before[consumer] = now;
        }
        Measured {
            elapsed,
            events,
            average_batch,
        }
    }
}

// ---------------------------------------------------------------------------
// Rigs: a built pipeline and the thread that drives it
// ---------------------------------------------------------------------------

/// A pipeline under test. Its producer runs on a thread of its own; each
/// `run` hands it a sample size and waits (asleep) for the measurement.
/// Dropping it stops the producer (which shuts its pipeline down) and joins
/// every thread, so no idle pipeline spins beside the next bench.
struct Rig {
    jobs: Option<mpsc::Sender<u64>>,
    results: mpsc::Receiver<Measured>,
    /// The producer's thread first, then the others (joined in this order).
    threads: Vec<JoinHandle<()>>,
}

impl Rig {
    fn start(
        core: Option<usize>,
        mut job: impl FnMut(u64) -> Measured + Send + 'static,
        others: Vec<JoinHandle<()>>,
    ) -> Self {
        let (jobs, job_queue) = mpsc::channel::<u64>();
        let (reply, results) = mpsc::channel();
        let producer = spawn_on("bench-producer", core, move || {
            for iterations in job_queue {
                if reply.send(job(iterations)).is_err() {
                    break;
                }
            }
            // `job` drops here, and with it the producer side of the pipeline.
        });
        let mut threads = vec![producer];
        threads.extend(others);
        Self {
            jobs: Some(jobs),
            results,
            threads,
        }
    }

    fn run(&self, iterations: u64) -> Measured {
        self.jobs
            .as_ref()
            .expect("running")
            .send(iterations)
            .expect("the producer thread is alive");
        self.results
            .recv()
            .expect("the producer thread failed: see its panic above")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            // A panic there was already printed; don't double-panic here.
            let _ = thread.join();
        }
    }
}

/// The other producers of a sequencer shape: each waits for `(first
/// counter, count)` and publishes its share.
fn helper_producer(
    core: Option<usize>,
    mut publish_share: impl FnMut(i64, i64) + Send + 'static,
) -> (mpsc::Sender<(i64, i64)>, JoinHandle<()>) {
    let (shares, share_queue) = mpsc::channel();
    let thread = spawn_on("bench-helper-producer", core, move || {
        for (first_counter, count) in share_queue {
            publish_share(first_counter, count);
        }
    });
    (shares, thread)
}

/// A sequencer rig: producer 0 (the rig's thread) times the sample, tells
/// producers 1 and 2 their shares, and publishes its own. Producer `p`'s
/// `k`-th event carries `PRODUCERS * k + p`, so a sample's values are exactly
/// `first..first + events`.
fn sequencer_rig(
    placement: &Placement,
    mut sampler: Sampler,
    shares: [Box<dyn FnMut(i64, i64) + Send>; 3],
    consumers: Vec<JoinHandle<()>>,
) -> Rig {
    let [mut own_share, second, third] = shares;
    let mut helpers = Vec::new();
    let mut threads = Vec::new();
    for (index, share) in [second, third].into_iter().enumerate() {
        let (helper, thread) = helper_producer(placement.core(index + 1), share);
        helpers.push(helper);
        threads.push(thread);
    }
    threads.extend(consumers);
    let job = move |iterations| {
        sampler.sample(iterations, |first, events| {
            let (first_counter, count) = (first / PRODUCERS, events / PRODUCERS);
            for helper in &helpers {
                helper
                    .send((first_counter, count))
                    .expect("helper producer alive");
            }
            own_share(first_counter, count);
        })
    };
    Rig::start(placement.core(0), job, threads)
}

// ---------------------------------------------------------------------------
// tickring
// ---------------------------------------------------------------------------

fn tickring_rig<M: Mode>(shape: Shape, full_ring: FullRingWait, placement: &Placement) -> Rig {
    let (mut sampler, progress) = Sampler::new(shape, M::WAITING);
    let ring = shape.ring();
    match shape {
        Shape::Unicast | Shape::UnicastBatch => {
            let mut tally = Tally::new(&progress[0]);
            let builder =
                tickring::build_single_producer(ring, ValueEvent::default, M::tick_wait())
                    .producer_wait(full_ring)
                    .handle_events_with(move |event: &ValueEvent, sequence, end_of_batch| {
                        tally.add(0, event.value);
                        if end_of_batch {
                            tally.end_batch(sequence + 1);
                        }
                    });
            let mut producer = tick_pin(builder, placement.core(1))
                .build()
                .expect("unicast");
            let batch = shape == Shape::UnicastBatch;
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    if batch {
                        let mut value = first;
                        for _ in 0..events / BATCH {
                            producer
                                .batch_publish(BATCH as usize, |event, _sequence| {
                                    event.value = value;
                                    value += 1;
                                })
                                .expect("pipeline running");
                        }
                    } else {
                        for value in first..first + events {
                            producer
                                .publish(|event| event.value = value)
                                .expect("pipeline running");
                        }
                    }
                })
            };
            Rig::start(placement.core(0), job, Vec::new())
        }
        Shape::Pipeline => {
            let mut tally = Tally::new(&progress[0]);
            let builder =
                tickring::build_single_producer(ring, FunctionEvent::default, M::tick_wait())
                    .producer_wait(full_ring)
                    .handle_events_mut(|event: &mut FunctionEvent, _, _| {
                        event.step1 = event.op1 + event.op2;
                    });
            let builder = tick_pin(builder, placement.core(1))
                .and_then()
                .handle_events_mut(|event: &mut FunctionEvent, _, _| {
                    event.step2 = event.step1 + 3;
                });
            let builder = tick_pin(builder, placement.core(2))
                .and_then()
                .handle_events_with(move |event: &FunctionEvent, sequence, end_of_batch| {
                    tally.add(0, event.step2);
                    tally.add(1, i64::from(event.step2 & 4 == 4));
                    if end_of_batch {
                        tally.end_batch(sequence + 1);
                    }
                });
            let mut producer = tick_pin(builder, placement.core(3))
                .build()
                .expect("pipeline");
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for i in first..first + events {
                        producer
                            .publish(|event| {
                                event.op1 = i;
                                event.op2 = pipeline_op2(i);
                            })
                            .expect("pipeline running");
                    }
                })
            };
            Rig::start(placement.core(0), job, Vec::new())
        }
        Shape::Multicast => {
            let mut builder =
                tickring::build_single_producer(ring, ValueEvent::default, M::tick_wait())
                    .producer_wait(full_ring);
            for (consumer, progress) in progress.iter().enumerate() {
                let mut tally = Tally::new(progress);
                builder = builder.handle_events_with(move |event: &ValueEvent, sequence, end| {
                    multicast_op(&mut tally, consumer, event.value);
                    if end {
                        tally.end_batch(sequence + 1);
                    }
                });
                builder = tick_pin(builder, placement.core(consumer + 1));
            }
            let mut producer = builder.build().expect("multicast");
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for value in first..first + events {
                        producer
                            .publish(|event| event.value = value)
                            .expect("pipeline running");
                    }
                })
            };
            Rig::start(placement.core(0), job, Vec::new())
        }
        Shape::Diamond => {
            let mut tally = Tally::new(&progress[0]);
            let builder =
                tickring::build_single_producer(ring, FizzBuzzEvent::default, M::tick_wait())
                    .producer_wait(full_ring)
                    .handle_events_with(|event: &FizzBuzzEvent, _, _| {
                        event.fizz.store(event.value % 3 == 0, Ordering::Relaxed);
                    });
            let builder = tick_pin(builder, placement.core(1)).handle_events_with(
                |event: &FizzBuzzEvent, _, _| {
                    event.buzz.store(event.value % 5 == 0, Ordering::Relaxed);
                },
            );
            let builder = tick_pin(builder, placement.core(2))
                .and_then()
                .handle_events_with(move |event: &FizzBuzzEvent, sequence, end_of_batch| {
                    let fizz_buzz =
                        event.fizz.load(Ordering::Relaxed) && event.buzz.load(Ordering::Relaxed);
                    tally.add(0, i64::from(fizz_buzz));
                    if end_of_batch {
                        tally.end_batch(sequence + 1);
                    }
                });
            let mut producer = tick_pin(builder, placement.core(3))
                .build()
                .expect("diamond");
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for value in first..first + events {
                        producer
                            .publish(|event| event.value = value)
                            .expect("pipeline running");
                    }
                })
            };
            Rig::start(placement.core(0), job, Vec::new())
        }
        Shape::Sequencer | Shape::SequencerBatch => {
            let mut tally = Tally::new(&progress[0]);
            let builder = tickring::build_multi_producer(ring, ValueEvent::default, M::tick_wait())
                .producer_wait(full_ring)
                .handle_events_with(move |event: &ValueEvent, sequence, end_of_batch| {
                    tally.add(0, event.value);
                    if end_of_batch {
                        tally.end_batch(sequence + 1);
                    }
                });
            let producer = tick_pin(builder, placement.core(3))
                .build()
                .expect("sequencer");
            let batch = shape == Shape::SequencerBatch;
            let shares = [0, 1, 2].map(|index| {
                let mut producer = producer.clone();
                Box::new(move |first_counter: i64, count: i64| {
                    let mut counter = first_counter;
                    let end = first_counter + count;
                    while counter < end {
                        if batch {
                            producer
                                .batch_publish(BATCH as usize, |event, _sequence| {
                                    event.value = PRODUCERS * counter + index;
                                    counter += 1;
                                })
                                .expect("pipeline running");
                        } else {
                            let value = PRODUCERS * counter + index;
                            producer
                                .publish(|event| event.value = value)
                                .expect("pipeline running");
                            counter += 1;
                        }
                    }
                }) as Box<dyn FnMut(i64, i64) + Send>
            });
            // The clones carry on; the last handle dropped shuts the pipeline down.
            drop(producer);
            sequencer_rig(placement, sampler, shares, Vec::new())
        }
    }
}

/// The multicast handlers' work: H1 adds, H2 subtracts, H3 sums `value &
/// 0xFF` (LMAX's running AND is 0 after the first event and checks nothing).
#[inline]
fn multicast_op(tally: &mut Tally, consumer: usize, value: i64) {
    match consumer {
        0 => tally.add(0, value),
        1 => tally.add(0, value.wrapping_neg()),
        _ => tally.add(0, value & 0xFF),
    }
}

// ---------------------------------------------------------------------------
// The `disruptor` crate
// ---------------------------------------------------------------------------

/// Publishes one event, waiting for room under the bench's policy.
#[inline]
fn disruptor_publish<E, P: disruptor::Producer<E>>(
    producer: &mut P,
    waiting: Waiting,
    fill: impl Fn(&mut E),
) {
    let mut backoff = Backoff::new(waiting);
    while producer.try_publish(|event| fill(event)).is_err() {
        backoff.snooze();
    }
}

fn disruptor_rig<M: Mode>(shape: Shape, placement: &Placement) -> Rig {
    let (mut sampler, progress) = Sampler::new(shape, M::WAITING);
    let ring = shape.ring();
    let waiting = M::WAITING;
    match shape {
        Shape::Unicast | Shape::UnicastBatch => {
            let mut tally = Tally::new(&progress[0]);
            let builder =
                disruptor::build_single_producer(ring, ValueEvent::default, M::disruptor_wait());
            let mut producer = disruptor_pin(builder, placement.core(1))
                .handle_events_with(move |event: &ValueEvent, sequence, end_of_batch| {
                    tally.add(0, event.value);
                    if end_of_batch {
                        tally.end_batch(sequence + 1);
                    }
                })
                .build();
            let batch = shape == Shape::UnicastBatch;
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    if batch {
                        for start in (first..first + events).step_by(BATCH as usize) {
                            let mut backoff = Backoff::new(waiting);
                            while producer
                                .try_batch_publish(BATCH as usize, |slots| {
                                    for (value, event) in (start..).zip(slots) {
                                        event.value = value;
                                    }
                                })
                                .is_err()
                            {
                                backoff.snooze();
                            }
                        }
                    } else {
                        for value in first..first + events {
                            disruptor_publish(&mut producer, waiting, |event: &mut ValueEvent| {
                                event.value = value
                            });
                        }
                    }
                })
            };
            Rig::start(placement.core(0), job, Vec::new())
        }
        Shape::Pipeline => {
            let mut tally = Tally::new(&progress[0]);
            let builder = disruptor::build_single_producer(
                ring,
                SharedFunctionEvent::default,
                M::disruptor_wait(),
            );
            let builder = disruptor_pin(builder, placement.core(1))
                .handle_events_with(|event: &SharedFunctionEvent, _, _| {
                    event.step1.store(event.op1 + event.op2, Ordering::Relaxed);
                })
                .and_then();
            let builder = disruptor_pin(builder, placement.core(2))
                .handle_events_with(|event: &SharedFunctionEvent, _, _| {
                    let step1 = event.step1.load(Ordering::Relaxed);
                    event.step2.store(step1 + 3, Ordering::Relaxed);
                })
                .and_then();
            let mut producer = disruptor_pin(builder, placement.core(3))
                .handle_events_with(move |event: &SharedFunctionEvent, sequence, end_of_batch| {
                    let step2 = event.step2.load(Ordering::Relaxed);
                    tally.add(0, step2);
                    tally.add(1, i64::from(step2 & 4 == 4));
                    if end_of_batch {
                        tally.end_batch(sequence + 1);
                    }
                })
                .build();
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for i in first..first + events {
                        disruptor_publish(
                            &mut producer,
                            waiting,
                            |event: &mut SharedFunctionEvent| {
                                event.op1 = i;
                                event.op2 = pipeline_op2(i);
                            },
                        );
                    }
                })
            };
            Rig::start(placement.core(0), job, Vec::new())
        }
        Shape::Multicast => {
            let handler = |consumer: usize| {
                let mut tally = Tally::new(&progress[consumer]);
                move |event: &ValueEvent, sequence: i64, end_of_batch: bool| {
                    multicast_op(&mut tally, consumer, event.value);
                    if end_of_batch {
                        tally.end_batch(sequence + 1);
                    }
                }
            };
            let builder =
                disruptor::build_single_producer(ring, ValueEvent::default, M::disruptor_wait());
            let builder = disruptor_pin(builder, placement.core(1)).handle_events_with(handler(0));
            let builder = disruptor_pin(builder, placement.core(2)).handle_events_with(handler(1));
            let mut producer = disruptor_pin(builder, placement.core(3))
                .handle_events_with(handler(2))
                .build();
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for value in first..first + events {
                        disruptor_publish(&mut producer, waiting, |event: &mut ValueEvent| {
                            event.value = value
                        });
                    }
                })
            };
            Rig::start(placement.core(0), job, Vec::new())
        }
        Shape::Diamond => {
            let mut tally = Tally::new(&progress[0]);
            let builder =
                disruptor::build_single_producer(ring, FizzBuzzEvent::default, M::disruptor_wait());
            let builder = disruptor_pin(builder, placement.core(1)).handle_events_with(
                |event: &FizzBuzzEvent, _, _| {
                    event.fizz.store(event.value % 3 == 0, Ordering::Relaxed);
                },
            );
            let builder = disruptor_pin(builder, placement.core(2))
                .handle_events_with(|event: &FizzBuzzEvent, _, _| {
                    event.buzz.store(event.value % 5 == 0, Ordering::Relaxed);
                })
                .and_then();
            let mut producer = disruptor_pin(builder, placement.core(3))
                .handle_events_with(move |event: &FizzBuzzEvent, sequence, end_of_batch| {
                    let fizz_buzz =
                        event.fizz.load(Ordering::Relaxed) && event.buzz.load(Ordering::Relaxed);
                    tally.add(0, i64::from(fizz_buzz));
                    if end_of_batch {
                        tally.end_batch(sequence + 1);
                    }
                })
                .build();
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for value in first..first + events {
                        disruptor_publish(&mut producer, waiting, |event: &mut FizzBuzzEvent| {
                            event.value = value
                        });
                    }
                })
            };
            Rig::start(placement.core(0), job, Vec::new())
        }
        Shape::Sequencer | Shape::SequencerBatch => {
            let mut tally = Tally::new(&progress[0]);
            let builder =
                disruptor::build_multi_producer(ring, ValueEvent::default, M::disruptor_wait());
            let producer = disruptor_pin(builder, placement.core(3))
                .handle_events_with(move |event: &ValueEvent, sequence, end_of_batch| {
                    tally.add(0, event.value);
                    if end_of_batch {
                        tally.end_batch(sequence + 1);
                    }
                })
                .build();
            let batch = shape == Shape::SequencerBatch;
            let shares = [0, 1, 2].map(|index| {
                let mut producer = producer.clone();
                Box::new(move |first_counter: i64, count: i64| {
                    if batch {
                        for start in (first_counter..first_counter + count).step_by(BATCH as usize)
                        {
                            let mut backoff = Backoff::new(waiting);
                            while producer
                                .try_batch_publish(BATCH as usize, |slots| {
                                    for (counter, event) in (start..).zip(slots) {
                                        event.value = PRODUCERS * counter + index;
                                    }
                                })
                                .is_err()
                            {
                                backoff.snooze();
                            }
                        }
                    } else {
                        for counter in first_counter..first_counter + count {
                            let value = PRODUCERS * counter + index;
                            disruptor_publish(&mut producer, waiting, |event: &mut ValueEvent| {
                                event.value = value
                            });
                        }
                    }
                }) as Box<dyn FnMut(i64, i64) + Send>
            });
            drop(producer);
            sequencer_rig(placement, sampler, shares, Vec::new())
        }
    }
}

// ---------------------------------------------------------------------------
// Channels and SPSC queues: crossbeam-channel, rtrb, std::sync::mpsc
// ---------------------------------------------------------------------------

enum Take<T> {
    Item(T),
    Empty,
    Closed,
}

/// The receiving end of a channel, polled without blocking.
trait Inbox<T>: Send + 'static {
    fn take(&mut self) -> Take<T>;
}

/// The sending end of a channel; `put` waits for room under `waiting`.
trait Outbox<T>: Send + 'static {
    fn put(&mut self, value: T, waiting: Waiting);
}

impl<T: Send + 'static> Inbox<T> for crossbeam_channel::Receiver<T> {
    #[inline]
    fn take(&mut self) -> Take<T> {
        match self.try_recv() {
            Ok(value) => Take::Item(value),
            Err(crossbeam_channel::TryRecvError::Empty) => Take::Empty,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Take::Closed,
        }
    }
}

impl<T: Send + 'static> Outbox<T> for crossbeam_channel::Sender<T> {
    #[inline]
    fn put(&mut self, mut value: T, waiting: Waiting) {
        let mut backoff = Backoff::new(waiting);
        loop {
            match self.try_send(value) {
                Ok(()) => return,
                Err(crossbeam_channel::TrySendError::Full(back)) => value = back,
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                    panic!("the consumer hung up")
                }
            }
            backoff.snooze();
        }
    }
}

impl<T: Send + 'static> Inbox<T> for mpsc::Receiver<T> {
    #[inline]
    fn take(&mut self) -> Take<T> {
        match self.try_recv() {
            Ok(value) => Take::Item(value),
            Err(mpsc::TryRecvError::Empty) => Take::Empty,
            Err(mpsc::TryRecvError::Disconnected) => Take::Closed,
        }
    }
}

impl<T: Send + 'static> Outbox<T> for mpsc::SyncSender<T> {
    #[inline]
    fn put(&mut self, mut value: T, waiting: Waiting) {
        let mut backoff = Backoff::new(waiting);
        loop {
            match self.try_send(value) {
                Ok(()) => return,
                Err(mpsc::TrySendError::Full(back)) => value = back,
                Err(mpsc::TrySendError::Disconnected(_)) => panic!("the consumer hung up"),
            }
            backoff.snooze();
        }
    }
}

impl<T: Send + 'static> Inbox<T> for rtrb::Consumer<T> {
    #[inline]
    fn take(&mut self) -> Take<T> {
        match self.pop() {
            Ok(value) => Take::Item(value),
            // Abandoned: whatever was pushed before is visible now; one last look.
            Err(_) if self.is_abandoned() => match self.pop() {
                Ok(value) => Take::Item(value),
                Err(_) => Take::Closed,
            },
            Err(_) => Take::Empty,
        }
    }
}

impl<T: Send + 'static> Outbox<T> for rtrb::Producer<T> {
    #[inline]
    fn put(&mut self, mut value: T, waiting: Waiting) {
        let mut backoff = Backoff::new(waiting);
        loop {
            match self.push(value) {
                Ok(()) => return,
                Err(rtrb::PushError::Full(back)) => value = back,
            }
            backoff.snooze();
        }
    }
}

/// A measured consumer: handles every message, reporting progress whenever
/// it finds the channel empty (its "end of batch"). `handle` returns how
/// many events the message carried.
fn drain<T>(
    mut inbox: impl Inbox<T>,
    waiting: Waiting,
    mut tally: Tally,
    mut handle: impl FnMut(&mut Tally, T) -> i64,
) {
    let mut handled = 0i64;
    let mut pending = false;
    let mut backoff = Backoff::new(waiting);
    loop {
        match inbox.take() {
            Take::Item(message) => {
                handled += handle(&mut tally, message);
                pending = true;
            }
            Take::Empty => {
                if pending {
                    tally.end_batch(handled);
                    pending = false;
                    backoff.reset();
                }
                backoff.snooze();
            }
            Take::Closed => break,
        }
    }
}

/// A middle stage: takes each message, transforms it, passes it on.
fn relay<T, U>(
    mut inbox: impl Inbox<T>,
    mut outbox: impl Outbox<U>,
    waiting: Waiting,
    mut step: impl FnMut(T) -> U,
) {
    let mut backoff = Backoff::new(waiting);
    loop {
        match inbox.take() {
            Take::Item(message) => {
                outbox.put(step(message), waiting);
                backoff.reset();
            }
            Take::Empty => backoff.snooze(),
            Take::Closed => break,
        }
    }
}

/// The diamond's H3 for channels: pairs H1's and H2's verdicts, in order.
fn join_fizz_buzz(
    mut fizzes: impl Inbox<bool>,
    mut buzzes: impl Inbox<bool>,
    waiting: Waiting,
    mut tally: Tally,
) {
    let mut handled = 0i64;
    let mut pending = false;
    let mut fizz = None;
    let mut backoff = Backoff::new(waiting);
    loop {
        if fizz.is_none() {
            match fizzes.take() {
                Take::Item(verdict) => fizz = Some(verdict),
                Take::Empty => {}
                Take::Closed => break,
            }
        }
        if let Some(fizz_verdict) = fizz {
            match buzzes.take() {
                Take::Item(buzz) => {
                    tally.add(0, i64::from(fizz_verdict && buzz));
                    handled += 1;
                    pending = true;
                    fizz = None;
                    continue;
                }
                Take::Empty => {}
                Take::Closed => break,
            }
        }
        if pending {
            tally.end_batch(handled);
            pending = false;
            backoff.reset();
        }
        backoff.snooze();
    }
}

/// A kind of bounded channel, generic over the message type, so that every
/// hot loop below is monomorphized for the concrete channel.
trait ChannelKind: 'static {
    type Sender<T: Send + 'static>: Outbox<T>;
    type Receiver<T: Send + 'static>: Inbox<T>;
    /// A channel of `capacity` messages.
    fn bounded<T: Send + 'static>(capacity: usize) -> (Self::Sender<T>, Self::Receiver<T>);
}

struct Crossbeam;
struct Rtrb;
struct StdMpsc;

impl ChannelKind for Crossbeam {
    type Sender<T: Send + 'static> = crossbeam_channel::Sender<T>;
    type Receiver<T: Send + 'static> = crossbeam_channel::Receiver<T>;
    fn bounded<T: Send + 'static>(capacity: usize) -> (Self::Sender<T>, Self::Receiver<T>) {
        crossbeam_channel::bounded(capacity)
    }
}

impl ChannelKind for Rtrb {
    type Sender<T: Send + 'static> = rtrb::Producer<T>;
    type Receiver<T: Send + 'static> = rtrb::Consumer<T>;
    fn bounded<T: Send + 'static>(capacity: usize) -> (Self::Sender<T>, Self::Receiver<T>) {
        rtrb::RingBuffer::new(capacity)
    }
}

impl ChannelKind for StdMpsc {
    type Sender<T: Send + 'static> = mpsc::SyncSender<T>;
    type Receiver<T: Send + 'static> = mpsc::Receiver<T>;
    fn bounded<T: Send + 'static>(capacity: usize) -> (Self::Sender<T>, Self::Receiver<T>) {
        mpsc::sync_channel(capacity)
    }
}

/// A batch of the batch shapes, as one channel message.
type Batch = [i64; BATCH as usize];

/// Sums a batch message; it carries `BATCH` events.
fn sum_batch(tally: &mut Tally, batch: Batch) -> i64 {
    for value in batch {
        tally.add(0, value);
    }
    BATCH
}

fn sum_value(tally: &mut Tally, value: i64) -> i64 {
    tally.add(0, value);
    1
}

/// A shape through channels of kind `C`; see the module docs for how each
/// shape maps onto channels.
fn channel_rig<M: Mode, C: ChannelKind>(shape: Shape, placement: &Placement) -> Rig {
    let (mut sampler, progress) = Sampler::new(shape, M::WAITING);
    let waiting = M::WAITING;
    let ring = shape.ring();
    // Batch messages: as many events in flight as the ring holds.
    let batches = ring / BATCH as usize;
    match shape {
        Shape::Unicast => {
            let (mut sender, receiver) = C::bounded::<i64>(ring);
            let tally = Tally::new(&progress[0]);
            let consumer = spawn_on("bench-consumer", placement.core(1), move || {
                drain(receiver, waiting, tally, sum_value)
            });
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for value in first..first + events {
                        sender.put(value, waiting);
                    }
                })
            };
            Rig::start(placement.core(0), job, vec![consumer])
        }
        Shape::UnicastBatch => {
            let (mut sender, receiver) = C::bounded::<Batch>(batches);
            let tally = Tally::new(&progress[0]);
            let consumer = spawn_on("bench-consumer", placement.core(1), move || {
                drain(receiver, waiting, tally, sum_batch)
            });
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for start in (first..first + events).step_by(BATCH as usize) {
                        sender.put(std::array::from_fn(|offset| start + offset as i64), waiting);
                    }
                })
            };
            Rig::start(placement.core(0), job, vec![consumer])
        }
        Shape::Pipeline => {
            let (mut to_first, from_producer) = C::bounded::<FunctionEvent>(ring);
            let (to_second, from_first) = C::bounded::<FunctionEvent>(ring);
            let (to_third, from_second) = C::bounded::<FunctionEvent>(ring);
            let tally = Tally::new(&progress[0]);
            let threads = vec![
                spawn_on("bench-h1", placement.core(1), move || {
                    relay(
                        from_producer,
                        to_second,
                        waiting,
                        |mut event: FunctionEvent| {
                            event.step1 = event.op1 + event.op2;
                            event
                        },
                    )
                }),
                spawn_on("bench-h2", placement.core(2), move || {
                    relay(from_first, to_third, waiting, |mut event: FunctionEvent| {
                        event.step2 = event.step1 + 3;
                        event
                    })
                }),
                spawn_on("bench-h3", placement.core(3), move || {
                    drain(
                        from_second,
                        waiting,
                        tally,
                        |tally, event: FunctionEvent| {
                            tally.add(0, event.step2);
                            tally.add(1, i64::from(event.step2 & 4 == 4));
                            1
                        },
                    )
                }),
            ];
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for i in first..first + events {
                        let event = FunctionEvent {
                            op1: i,
                            op2: pipeline_op2(i),
                            ..FunctionEvent::default()
                        };
                        to_first.put(event, waiting);
                    }
                })
            };
            Rig::start(placement.core(0), job, threads)
        }
        Shape::Multicast => {
            let mut senders = Vec::new();
            let mut threads = Vec::new();
            for (consumer, progress) in progress.iter().enumerate() {
                let (sender, receiver) = C::bounded::<i64>(ring);
                senders.push(sender);
                let tally = Tally::new(progress);
                let core = placement.core(consumer + 1);
                threads.push(spawn_on("bench-consumer", core, move || {
                    drain(receiver, waiting, tally, move |tally, value| {
                        multicast_op(tally, consumer, value);
                        1
                    })
                }));
            }
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for value in first..first + events {
                        for sender in senders.iter_mut() {
                            sender.put(value, waiting);
                        }
                    }
                })
            };
            Rig::start(placement.core(0), job, threads)
        }
        Shape::Diamond => {
            let (mut to_fizz, fizz_inbox) = C::bounded::<i64>(ring);
            let (mut to_buzz, buzz_inbox) = C::bounded::<i64>(ring);
            let (fizz_out, fizzes) = C::bounded::<bool>(ring);
            let (buzz_out, buzzes) = C::bounded::<bool>(ring);
            let tally = Tally::new(&progress[0]);
            let threads = vec![
                spawn_on("bench-fizz", placement.core(1), move || {
                    relay(fizz_inbox, fizz_out, waiting, |value: i64| value % 3 == 0)
                }),
                spawn_on("bench-buzz", placement.core(2), move || {
                    relay(buzz_inbox, buzz_out, waiting, |value: i64| value % 5 == 0)
                }),
                spawn_on("bench-fizz-buzz", placement.core(3), move || {
                    join_fizz_buzz(fizzes, buzzes, waiting, tally)
                }),
            ];
            let job = move |iterations| {
                sampler.sample(iterations, |first, events| {
                    for value in first..first + events {
                        to_fizz.put(value, waiting);
                        to_buzz.put(value, waiting);
                    }
                })
            };
            Rig::start(placement.core(0), job, threads)
        }
        Shape::Sequencer | Shape::SequencerBatch => {
            unreachable!("the sequencer shapes need a cloneable sender: sequencer_channel_rig")
        }
    }
}

/// The sequencer shapes through channels: three clones of one sender.
fn sequencer_channel_rig<M: Mode, C: ChannelKind>(shape: Shape, placement: &Placement) -> Rig
where
    C::Sender<i64>: Clone,
    C::Sender<Batch>: Clone,
{
    let waiting = M::WAITING;
    let (sampler, progress) = Sampler::new(shape, waiting);
    let tally = Tally::new(&progress[0]);
    let consumer_core = placement.core(3);
    if shape == Shape::SequencerBatch {
        let (sender, receiver) = C::bounded::<Batch>(shape.ring() / BATCH as usize);
        let consumer = spawn_on("bench-consumer", consumer_core, move || {
            drain(receiver, waiting, tally, sum_batch)
        });
        let shares = [0, 1, 2].map(|index| {
            let mut sender = sender.clone();
            Box::new(move |first_counter: i64, count: i64| {
                for start in (first_counter..first_counter + count).step_by(BATCH as usize) {
                    let batch: Batch =
                        std::array::from_fn(|offset| PRODUCERS * (start + offset as i64) + index);
                    sender.put(batch, waiting);
                }
            }) as Box<dyn FnMut(i64, i64) + Send>
        });
        drop(sender);
        sequencer_rig(placement, sampler, shares, vec![consumer])
    } else {
        let (sender, receiver) = C::bounded::<i64>(shape.ring());
        let consumer = spawn_on("bench-consumer", consumer_core, move || {
            drain(receiver, waiting, tally, sum_value)
        });
        let shares = [0, 1, 2].map(|index| {
            let mut sender = sender.clone();
            Box::new(move |first_counter: i64, count: i64| {
                for counter in first_counter..first_counter + count {
                    sender.put(PRODUCERS * counter + index, waiting);
                }
            }) as Box<dyn FnMut(i64, i64) + Send>
        });
        drop(sender);
        sequencer_rig(placement, sampler, shares, vec![consumer])
    }
}

/// 1P-1C batch through `rtrb`: the producer writes a 10-slot chunk.
fn rtrb_chunk_rig<M: Mode>(placement: &Placement) -> Rig {
    let shape = Shape::UnicastBatch;
    let (mut producer, consumer) = rtrb::RingBuffer::<i64>::new(shape.ring());
    let (mut sampler, progress) = Sampler::new(shape, M::WAITING);
    let tally = Tally::new(&progress[0]);
    let consumer = spawn_on("bench-consumer", placement.core(1), move || {
        drain(consumer, M::WAITING, tally, sum_value)
    });
    let job = move |iterations| {
        sampler.sample(iterations, |first, events| {
            for start in (first..first + events).step_by(BATCH as usize) {
                let mut backoff = Backoff::new(M::WAITING);
                loop {
                    if let Ok(chunk) = producer.write_chunk_uninit(BATCH as usize) {
                        chunk.fill_from_iter(start..start + BATCH);
                        break;
                    }
                    backoff.snooze();
                }
            }
        })
    };
    Rig::start(placement.core(0), job, vec![consumer])
}

// ---------------------------------------------------------------------------
// Running the groups
// ---------------------------------------------------------------------------

/// Builds a fresh rig of one system for one shape.
type MakeRig = Box<dyn Fn() -> Rig>;

/// The systems of one shape: (system, setup for the bench id, how to build it).
fn contenders<M: Mode>(
    shape: Shape,
    placement: &Placement,
    setup: &str,
) -> Vec<(String, String, MakeRig)> {
    let mut contenders: Vec<(String, String, MakeRig)> = Vec::new();
    let mut add = |system: &str, setup: String, make: MakeRig| {
        contenders.push((system.to_string(), setup, make));
    };
    let one_to_one = matches!(shape, Shape::Unicast | Shape::UnicastBatch);
    if one_to_one {
        // tickring's full-ring policy is a choice: both are on record.
        for (policy, full_ring) in [
            ("spin_if_full", FullRingWait::Spin),
            ("yield_if_full", FullRingWait::Yield),
        ] {
            let placement = placement.clone();
            let make = Box::new(move || tickring_rig::<M>(shape, full_ring, &placement));
            add("tickring", format!("{setup}_{policy}"), make);
        }
    } else {
        let placement = placement.clone();
        let make = Box::new(move || tickring_rig::<M>(shape, M::FULL_RING, &placement));
        add("tickring", setup.to_string(), make);
    }
    {
        let placement = placement.clone();
        add(
            "disruptor",
            setup.to_string(),
            Box::new(move || disruptor_rig::<M>(shape, &placement)),
        );
    }
    let batch = matches!(shape, Shape::UnicastBatch | Shape::SequencerBatch);
    let crossbeam_setup = if batch {
        format!("{setup}_array10_per_message")
    } else {
        setup.to_string()
    };
    {
        let placement = placement.clone();
        add(
            "crossbeam_channel",
            crossbeam_setup,
            Box::new(move || match shape {
                Shape::Sequencer | Shape::SequencerBatch => {
                    sequencer_channel_rig::<M, Crossbeam>(shape, &placement)
                }
                _ => channel_rig::<M, Crossbeam>(shape, &placement),
            }),
        );
    }
    if shape == Shape::Unicast {
        let rtrb_placement = placement.clone();
        add(
            "rtrb",
            setup.to_string(),
            Box::new(move || channel_rig::<M, Rtrb>(shape, &rtrb_placement)),
        );
        let mpsc_placement = placement.clone();
        add(
            "std_mpsc",
            setup.to_string(),
            Box::new(move || channel_rig::<M, StdMpsc>(shape, &mpsc_placement)),
        );
    }
    if shape == Shape::UnicastBatch {
        let placement = placement.clone();
        add(
            "rtrb",
            format!("{setup}_write_chunk10"),
            Box::new(move || rtrb_chunk_rig::<M>(&placement)),
        );
    }
    contenders
}

/// The mode, placement and setup name a shape runs with on this machine.
fn contenders_here(shape: Shape) -> Vec<(String, String, MakeRig)> {
    let cores = available_cores();
    let threads = shape.threads();
    if cores.len() >= threads {
        let placement = Placement {
            cores: Some(cores[..threads].to_vec()),
        };
        contenders::<PinnedSpin>(shape, &placement, "busy_spin_pinned")
    } else {
        let setup = format!("yielding_{threads}_threads_on_{}_cores", cores.len());
        contenders::<SharedYield>(shape, &Placement { cores: None }, &setup)
    }
}

/// Every bench that criterion ran, with its measured samples' median rate
/// (events/s): sizes the interleaved rounds.
static CRITERION_RATES: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

fn all_shapes(c: &mut Criterion) {
    for shape in Shape::ALL {
        let mut group = c.benchmark_group(shape.group());
        group
            .throughput(Throughput::Elements(shape.events_per_iteration() as u64))
            .sample_size(SAMPLES)
            .warm_up_time(WARM_UP)
            .measurement_time(MEASUREMENT);
        for (system, setup, make) in contenders_here(shape) {
            let rig = make();
            let id = format!("{}/{system}/{setup}", shape.group());
            let mut samples: Vec<Measured> = Vec::new();
            group.bench_function(BenchmarkId::new(&system, &setup), |bencher| {
                bencher.iter_custom(|iterations| {
                    let measured = rig.run(iterations);
                    samples.push(measured);
                    measured.elapsed
                })
            });
            // Stops the pipeline before the next one starts.
            drop(rig);
            // Criterion's measured samples are its last SAMPLES calls.
            let measured = &samples[samples.len().saturating_sub(SAMPLES)..];
            if measured.len() >= 2 {
                let mut rates: Vec<f64> = measured.iter().map(Measured::rate).collect();
                let rate = median(&mut rates);
                CRITERION_RATES
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push((id, rate));
            }
        }
        group.finish();
    }
}

impl Measured {
    /// Events per second.
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

// ---------------------------------------------------------------------------
// Interleaved rounds, and the summary
// ---------------------------------------------------------------------------

/// Rounds of the interleaved phase.
const ROUNDS: usize = 5;
/// How long one system's measured sample of a round should take.
const ROUND_SECONDS: f64 = 0.25;

/// Criterion runs one bench after another, so a ratio of two of its results
/// compares two moments of a machine whose speed drifts by multiples. This
/// phase (bench mode only, after criterion) runs every shape criterion ran
/// again in rounds: each round builds a fresh rig of every system, in an
/// order that rotates from round to round, warms it with a quarter-size
/// sample and measures one sample of about `ROUND_SECONDS` (sized from
/// criterion's median). The table reports the median over rounds, min, max,
/// spread and the *paired* ratio to tickring: the median over rounds of
/// (system / tickring) within a round.
fn interleaved_rounds(_: &mut Criterion) {
    let criterion_rates = CRITERION_RATES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    if criterion_rates.is_empty() {
        return; // `cargo test` mode, or nothing ran.
    }
    println!();
    println!(
        "interleaved rounds: {ROUNDS} rounds, every system once per round in rotating order \
         (fresh rig, warm-up, one ~{ROUND_SECONDS} s sample); M events/s"
    );
    println!(
        "{:<76}{:>9}{:>9}{:>9}{:>8}{:>11}{:>11}",
        "group/system/setup", "median", "min", "max", "spread", "avg batch", "x tickring"
    );
    for shape in Shape::ALL {
        let contenders: Vec<(String, String, MakeRig, u64)> = contenders_here(shape)
            .into_iter()
            .filter_map(|(system, setup, make)| {
                let id = format!("{}/{system}/{setup}", shape.group());
                let (_, rate) = criterion_rates.iter().find(|(ran, _)| *ran == id)?;
                let per_iteration = shape.events_per_iteration() as f64;
                let iterations = (rate * ROUND_SECONDS / per_iteration).clamp(1_000.0, 1e9);
                Some((system, setup, make, iterations as u64))
            })
            .collect();
        if contenders.is_empty() {
            continue;
        }
        let mut results: Vec<Vec<Measured>> = contenders.iter().map(|_| Vec::new()).collect();
        for round in 0..ROUNDS {
            for offset in 0..contenders.len() {
                let index = (offset + round) % contenders.len();
                let (system, setup, make, iterations) = &contenders[index];
                eprintln!(
                    "[throughput] {}: round {}/{ROUNDS}, {system}/{setup} ({}/{})",
                    shape.group(),
                    round + 1,
                    offset + 1,
                    contenders.len()
                );
                let rig = make();
                rig.run((iterations / 4).max(1));
                results[index].push(rig.run(*iterations));
            }
        }
        let tickring = &results[0];
        // (peer, its median, median over rounds of tickring / peer)
        let mut peers: Vec<(String, f64, f64)> = Vec::new();
        let mut tickring_median = f64::NAN;
        for (index, (system, setup, _, _)) in contenders.iter().enumerate() {
            let rounds = &results[index];
            let mut rates: Vec<f64> = rounds.iter().map(|m| m.rate() / 1e6).collect();
            let middle = median(&mut rates);
            let (min, max) = (rates[0], rates[rates.len() - 1]);
            let mut batches: Vec<f64> = rounds.iter().map(|m| m.average_batch).collect();
            let mut paired: Vec<f64> = rounds
                .iter()
                .zip(tickring)
                .map(|(here, base)| here.rate() / base.rate())
                .collect();
            if index == 0 {
                tickring_median = middle;
            } else if system != "tickring" && system != "std_mpsc" {
                let mut inverse: Vec<f64> = paired.iter().map(|ratio| 1.0 / ratio).collect();
                peers.push((format!("{system}/{setup}"), middle, median(&mut inverse)));
            }
            println!(
                "{:<76}{:>9.1}{:>9.1}{:>9.1}{:>7.0}%{:>11.1}{:>10.2}x",
                format!("{}/{system}/{setup}", shape.group()),
                middle,
                min,
                max,
                (max - min) / middle * 100.0,
                median(&mut batches),
                median(&mut paired)
            );
        }
        if shape == Shape::Unicast {
            let best_by_median = peers.iter().max_by(|a, b| a.1.total_cmp(&b.1));
            let worst_pairing = peers.iter().min_by(|a, b| a.2.total_cmp(&b.2));
            if let (Some((peer, peer_median, _)), Some((paired_peer, _, paired))) =
                (best_by_median, worst_pairing)
            {
                println!(
                    "  1P-1C target, tickring (spin if full) >= 1.5x the best Rust peer: medians \
                     of {ROUNDS} rounds {:.1} vs {peer_median:.1} M/s ({peer}) = {:.2}x; paired, \
                     against the peer it beats least ({paired_peer}): {paired:.2}x",
                    tickring_median,
                    tickring_median / peer_median
                );
            }
        }
    }
    println!(
        "x tickring: median over rounds of (system / tickring's first row) within the round. \
         spread = (max - min) / median. avg batch: events per batch of the measured consumer \
         (per end_of_batch; for a channel, per time it found the channel empty)."
    );
}

criterion_group!(benches, all_shapes, interleaved_rounds);
criterion_main!(benches);
