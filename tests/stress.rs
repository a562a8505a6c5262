//! Randomized stress: pipelines drawn from a seeded xorshift generator, run
//! with every event checked at every participant.
//!
//! Each graph has 1-3 stages of 1-3 participants: plain handlers, a mutable
//! handler (alone in its stage), worker pools and pollers (each polled from a
//! thread of its own until `ShutDown`). It is fed by one producer or by 1-3
//! producer threads through a ring of 1 to 4,096 slots (graph 0 of each test
//! is a ring of 1 with every kind of participant, so every event wraps the
//! ring), under the Yielding, Sleeping or Blocking wait strategy and a
//! full-ring policy that yields or parks (never a spin: the build machine has
//! two cores). Options (a batch bound, a thread name) come before the
//! participant they configure, drawn at random. Every participant checks:
//!
//! - the content of every event (every field is derived from the producer
//!   id and its counter, so a torn or stale read shows), and the field each
//!   upstream mutable stage wrote (and that no downstream one wrote yet);
//! - gating: every participant of the stage before has finished the event;
//! - order: sequences consecutive, and each producer's events in the order
//!   it published them (worker pools: each event once across the pool);
//! - counts and an order-independent fingerprint of (sequence, producer,
//!   counter) that must equal the producers' own, so every event published
//!   is seen exactly once, at the sequence its producer was given;
//! - batches: `on_batch_start` announces what `end_of_batch` closes;
//! - lifecycle: `on_start` and `on_shutdown` once each, on the handler's own
//!   (named) thread; the `ShutdownReport` names every thread and its count.
//!
//! The seed is random per run and printed when a test fails; set
//! `TICKRING_STRESS_SEED` (decimal or `0x` hex) to replay a failing run.
//! Release builds (`cargo test --release`) check 1.8 × 10^7 events in all;
//! unoptimized builds a small fraction of that.

mod common;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{join, mix, with_timeout, XorShift};
use tickring::builder_state::{Configuring, NeedsParticipant, Ready};
use tickring::{
    build_multi_producer, build_single_producer, Blocking, Builder, EventHandler, EventPoller,
    EventProducer, FullRingWait, MultiProducer, MutEventHandler, PollState, Producer,
    PublishTimeoutError, ShutdownReport, Sleeping, TryPublishError, WaitStrategy, Yielding,
    DEFAULT_MAX_BATCH_SIZE,
};

const MAX_STAGES: usize = 3;

/// Events per test: 6 tests × 3,000,000 = 1.8 × 10^7 in release builds.
const EVENTS_PER_TEST: u64 = if cfg!(debug_assertions) {
    300_000
} else {
    3_000_000
};

/// The most events one graph gets (fewer for small rings, see `events_for`).
const MAX_EVENTS_PER_GRAPH: u64 = if cfg!(debug_assertions) {
    30_000
} else {
    150_000
};

/// How long one graph may run before it is declared hung (release; debug
/// builds get ten times as long).
const GRAPH_LIMIT: Duration = Duration::from_secs(60);

/// Consumer threads (handlers, workers, pollers) one graph may have.
const MAX_CONSUMER_THREADS: usize = 10;

// ---------------------------------------------------------------------------
// The event

/// A market-data event. Everything but `enriched` is written by the producer
/// and derived from (`producer`, `counter`); `enriched[s]` is written by the
/// mutable handler of stage `s`, if there is one, from the rest.
#[derive(Debug, Clone, Copy, Default)]
struct Event {
    producer: u32,
    counter: u64,
    price: u64,
    quantity: u64,
    checksum: u64,
    enriched: [u64; MAX_STAGES],
}

impl Event {
    fn price_of(producer: u32, counter: u64) -> u64 {
        mix(((producer as u64) << 48) ^ counter)
    }

    fn quantity_of(producer: u32, counter: u64) -> u64 {
        counter
            .wrapping_mul(31)
            .wrapping_add(producer as u64 * 7 + 1)
    }

    fn checksum_of(&self) -> u64 {
        mix(self.price ^ self.quantity.rotate_left(21) ^ (self.producer as u64).rotate_left(40))
            ^ self.counter
    }

    /// Writes the event `producer` publishes as its `counter`-th; clears
    /// every enriched field (the slot holds an older event's otherwise).
    fn fill(&mut self, producer: u32, counter: u64) {
        self.producer = producer;
        self.counter = counter;
        self.price = Self::price_of(producer, counter);
        self.quantity = Self::quantity_of(producer, counter);
        self.checksum = self.checksum_of();
        self.enriched = [0; MAX_STAGES];
    }

    /// What the mutable handler of `stage` writes: never zero.
    fn enrichment(&self, stage: usize) -> u64 {
        mix(self.checksum ^ (stage as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)) | 1
    }

    /// Why the producer's fields do not belong together, if they do not.
    fn content_error(&self) -> Option<String> {
        let intact = self.price == Self::price_of(self.producer, self.counter)
            && self.quantity == Self::quantity_of(self.producer, self.counter)
            && self.checksum == self.checksum_of();
        (!intact).then(|| format!("torn or corrupt event {self:?}"))
    }
}

/// The order-independent fingerprint of "event (`producer`, `counter`) was
/// published at `sequence`": producers and consumers both sum it.
fn fingerprint(sequence: i64, producer: u32, counter: u64) -> u64 {
    mix(sequence as u64 ^ mix(((producer as u64) << 40) ^ counter ^ 0x5DEE_CE66_D1CE_4E5B))
}

// ---------------------------------------------------------------------------
// Graph specs, drawn from the generator

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Handler,
    Mutable,
    Pool { workers: usize },
    Poller,
}

#[derive(Debug, Clone)]
struct ParticipantSpec {
    kind: Kind,
    /// `None`: the default (`DEFAULT_MAX_BATCH_SIZE`), not set explicitly.
    max_batch: Option<usize>,
    /// Give it an explicit name (a pool: every worker, `-<n>` each) instead
    /// of the default `tickring-<stage>-<n>`.
    named: bool,
    /// Pollers: the closure returns `false` (stop early) every n-th event.
    stop_every: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    Yielding,
    Sleeping { max_sleep_us: u64 },
    Blocking,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Single,
    Multi {
        producers: usize,
        /// The test's own handle shuts down last (else the threads race to).
        main_keeps_handle: bool,
    },
}

#[derive(Debug, Clone)]
struct GraphSpec {
    ring_size: usize,
    wait: Wait,
    full_ring: FullRingWait,
    mode: Mode,
    stages: Vec<Vec<ParticipantSpec>>,
    events: u64,
    /// Seeds the producers' choice of publish calls.
    publish_seed: u64,
}

impl GraphSpec {
    fn consumer_threads(&self) -> usize {
        self.stages
            .iter()
            .flatten()
            .map(|participant| match participant.kind {
                Kind::Pool { workers } => workers,
                _ => 1,
            })
            .sum()
    }

    fn producers(&self) -> usize {
        match self.mode {
            Mode::Single => 1,
            Mode::Multi { producers, .. } => producers,
        }
    }

    fn mutable_stages(&self) -> [bool; MAX_STAGES] {
        let mut mutable = [false; MAX_STAGES];
        for (stage, participants) in self.stages.iter().enumerate() {
            mutable[stage] = participants.iter().any(|p| p.kind == Kind::Mutable);
        }
        mutable
    }

    /// Producer `producer`'s share of the events.
    fn events_of(&self, producer: usize) -> u64 {
        let producers = self.producers() as u64;
        self.events / producers + u64::from((producer as u64) < self.events % producers)
    }

    /// The largest share: the stride of a pool's seen-bitset per producer.
    fn stride(&self) -> u64 {
        self.events_of(0)
    }
}

fn participant_spec(random: &mut XorShift, kind: Kind) -> ParticipantSpec {
    let max_batch = random.pick(&[None, None, Some(1), Some(2), Some(7), Some(64)]);
    ParticipantSpec {
        kind,
        max_batch,
        named: random.chance(1, 2),
        stop_every: (kind == Kind::Poller && random.chance(1, 3)).then(|| random.range(1, 50)),
    }
}

/// Draws a graph. Graph 0 of each test runs a ring of 1 with every kind of
/// participant; graph 1 a ring of 4,096; the rest are drawn freely.
fn random_graph(random: &mut XorShift, index: usize, wait: Wait, multi: bool) -> GraphSpec {
    let stages = if index == 0 {
        vec![
            vec![
                participant_spec(random, Kind::Handler),
                participant_spec(random, Kind::Pool { workers: 2 }),
                participant_spec(random, Kind::Poller),
            ],
            vec![participant_spec(random, Kind::Mutable)],
            vec![
                participant_spec(random, Kind::Poller),
                participant_spec(random, Kind::Handler),
            ],
        ]
    } else {
        loop {
            let stage_count = random.range(1, MAX_STAGES as u64) as usize;
            let stages: Vec<Vec<ParticipantSpec>> = (0..stage_count)
                .map(|_| {
                    if random.chance(1, 4) {
                        return vec![participant_spec(random, Kind::Mutable)];
                    }
                    (0..random.range(1, 3))
                        .map(|_| {
                            let kind = match random.range(0, 5) {
                                0..=2 => Kind::Handler,
                                3 | 4 => Kind::Pool {
                                    workers: random.range(1, 3) as usize,
                                },
                                _ => Kind::Poller,
                            };
                            participant_spec(random, kind)
                        })
                        .collect()
                })
                .collect();
            let spec_threads: usize = stages
                .iter()
                .flatten()
                .map(|p| match p.kind {
                    Kind::Pool { workers } => workers,
                    _ => 1,
                })
                .sum();
            if spec_threads <= MAX_CONSUMER_THREADS {
                break stages;
            }
        }
    };
    let ring_size = match index {
        0 => 1,
        1 => 4096,
        _ => 1 << random.range(0, 12),
    };
    let max_sleep = Duration::from_micros(random.range(1, 50));
    // Never `FullRingWait::Spin`: a producer spinning on a full ring takes
    // a core of two shared ones from the handlers that would make room.
    let full_ring = random.pick(&[FullRingWait::Yield, FullRingWait::Park { max_sleep }]);
    let mode = if multi {
        Mode::Multi {
            producers: random.range(1, 3) as usize,
            main_keeps_handle: random.chance(1, 2),
        }
    } else {
        Mode::Single
    };
    let mut spec = GraphSpec {
        ring_size,
        wait,
        full_ring,
        mode,
        stages,
        events: 0,
        publish_seed: random.next_u64(),
    };
    spec.events = events_for(&spec);
    spec
}

/// How many events a graph gets: every hand-off through a small ring costs
/// context switches on two shared cores, so small rings and many threads
/// get fewer events; a ring of 1,024 or more gets the full share.
fn events_for(spec: &GraphSpec) -> u64 {
    let ring_factor = (spec.ring_size.min(1024) as f64 / 1024.0).sqrt();
    let threads = (spec.consumer_threads() + spec.producers()) as f64;
    let thread_factor = (3.0 / threads).min(1.0);
    let wait_factor = match spec.wait {
        Wait::Sleeping { .. } if spec.ring_size < 64 => 0.25,
        _ => 1.0,
    };
    let events = MAX_EVENTS_PER_GRAPH as f64 * ring_factor * thread_factor * wait_factor;
    (events as u64).max(MAX_EVENTS_PER_GRAPH / 50)
}

// ---------------------------------------------------------------------------
// The checks every participant runs

/// One bit per (producer, counter): which events a worker pool has handled.
struct SeenBits {
    words: Vec<AtomicU64>,
    stride: u64,
}

impl SeenBits {
    fn new(producers: usize, stride: u64) -> Self {
        let bits = producers as u64 * stride;
        Self {
            words: (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            stride,
        }
    }

    fn index(&self, producer: u32, counter: u64) -> Option<usize> {
        let index = producer as u64 * self.stride + counter;
        (counter < self.stride && (index / 64) < self.words.len() as u64).then_some(index as usize)
    }

    /// Marks the event handled; returns whether it already was.
    fn mark(&self, index: usize) -> bool {
        let bit = 1 << (index % 64);
        // AcqRel: a later stage that sees the bit (acquire) sees the worker's
        // whole handling of the event.
        self.words[index / 64].fetch_or(bit, Ordering::AcqRel) & bit != 0
    }

    fn is_marked(&self, index: usize) -> bool {
        self.words[index / 64].load(Ordering::Acquire) & (1 << (index % 64)) != 0
    }
}

/// Where a participant can tell that a participant of the stage before it
/// has finished an event.
#[derive(Clone)]
enum Upstream {
    /// The last sequence a handler, mutable handler or poller finished.
    Progress(String, Arc<AtomicI64>),
    /// The events a worker pool finished.
    Pool(String, Arc<SeenBits>),
}

/// What one participant saw, sent at its end.
#[derive(Debug, Clone, Default)]
struct Tally {
    label: String,
    events: u64,
    fingerprint: u64,
    starts: u32,
    thread_at_start: Option<String>,
    thread_at_shutdown: Option<String>,
    errors: u64,
    first_error: Option<String>,
}

struct Checker {
    stage: usize,
    in_pool: bool,
    mutable_stages: [bool; MAX_STAGES],
    single_producer: bool,
    max_batch: i64,
    /// Non-pool participants: exactly the next sequence; workers: at least.
    next_sequence: i64,
    next_counter: Vec<u64>,
    left_in_batch: i64,
    progress: Arc<AtomicI64>,
    pool_seen: Option<Arc<SeenBits>>,
    upstream: Vec<Upstream>,
    tally: Tally,
    report_to: mpsc::Sender<Tally>,
}

impl Checker {
    fn fail(&mut self, error: String) {
        self.tally.errors += 1;
        if self.tally.first_error.is_none() {
            self.tally.first_error = Some(format!("{}: {error}", self.tally.label));
        }
    }

    /// Checks event `sequence` before it is handled (and, for a mutable
    /// stage, before it writes its field).
    fn check(&mut self, event: &Event, sequence: i64) {
        if let Some(error) = event.content_error() {
            self.fail(format!("at sequence {sequence}: {error}"));
            return;
        }
        let (producer, counter) = (event.producer, event.counter);
        if self.single_producer && (producer != 0 || counter != sequence as u64) {
            self.fail(format!(
                "at sequence {sequence}: a stale or misplaced event {event:?}"
            ));
        }
        if producer as usize >= self.next_counter.len() {
            self.fail(format!(
                "at sequence {sequence}: unknown producer {event:?}"
            ));
            return;
        }
        if self.in_pool {
            if sequence < self.next_sequence {
                self.fail(format!(
                    "worker got sequence {sequence} after {}",
                    self.next_sequence - 1
                ));
            }
        } else {
            if sequence != self.next_sequence {
                self.fail(format!(
                    "got sequence {sequence}, expected {}",
                    self.next_sequence
                ));
            }
            let expected = self.next_counter[producer as usize];
            if counter != expected {
                self.fail(format!(
                    "at sequence {sequence}: producer {producer}'s event {counter} \
                     arrived when {expected} was due (lost, repeated or reordered)"
                ));
            }
            self.next_counter[producer as usize] = counter + 1;
        }
        self.next_sequence = sequence + 1;
        for stage in 0..MAX_STAGES {
            let expected = if self.mutable_stages[stage] && stage < self.stage {
                event.enrichment(stage)
            } else {
                0
            };
            if event.enriched[stage] != expected {
                self.fail(format!(
                    "at sequence {sequence}: stage {stage}'s field is {:#x}, expected \
                     {expected:#x} (a mutable stage's write not seen, or seen too early)",
                    event.enriched[stage]
                ));
            }
        }
        for upstream in 0..self.upstream.len() {
            let passed = match &self.upstream[upstream] {
                Upstream::Progress(name, progress) => {
                    let at = progress.load(Ordering::Acquire);
                    (at < sequence).then(|| format!("'{name}' was at {at}"))
                }
                Upstream::Pool(name, seen) => match seen.index(producer, counter) {
                    Some(index) if seen.is_marked(index) => None,
                    _ => Some(format!("pool '{name}' has not marked it")),
                },
            };
            if let Some(why) = passed {
                self.fail(format!(
                    "saw sequence {sequence} before the stage before finished it: {why}"
                ));
            }
        }
        self.tally.events += 1;
        self.tally.fingerprint = self
            .tally
            .fingerprint
            .wrapping_add(fingerprint(sequence, producer, counter));
    }

    /// Marks event `sequence` finished, for the stages behind.
    fn finish(&mut self, event: &Event, sequence: i64) {
        match &self.pool_seen {
            Some(seen) => match seen.index(event.producer, event.counter) {
                Some(index) => {
                    if seen.mark(index) {
                        self.fail(format!(
                            "at sequence {sequence}: {event:?} handled twice by the pool"
                        ));
                    }
                }
                None => self.fail(format!("at sequence {sequence}: {event:?} out of range")),
            },
            // Release: pairs with the acquire of the stage behind.
            None => self.progress.store(sequence, Ordering::Release),
        }
    }

    fn end_of_batch(&mut self, sequence: i64, end_of_batch: bool) {
        self.left_in_batch -= 1;
        if end_of_batch != (self.left_in_batch == 0) {
            self.fail(format!(
                "end_of_batch = {end_of_batch} at {sequence} with {} left in the batch",
                self.left_in_batch
            ));
        }
    }

    fn batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        if self.left_in_batch != 0 {
            self.fail(format!(
                "a batch started with {} of the last one unhandled",
                self.left_in_batch
            ));
        }
        if batch_size < 1 || batch_size > self.max_batch || queue_depth < batch_size {
            self.fail(format!(
                "batch of {batch_size} (max {}) with queue depth {queue_depth}",
                self.max_batch
            ));
        }
        self.left_in_batch = batch_size;
    }

    fn start(&mut self) {
        self.tally.starts += 1;
        self.tally.thread_at_start = thread::current().name().map(str::to_owned);
    }

    fn shutdown(&mut self) {
        self.tally.thread_at_shutdown = thread::current().name().map(str::to_owned);
        let _ = self.report_to.send(self.tally.clone());
    }
}

/// A handler, or a worker of a pool.
struct Reader(Checker);

impl EventHandler<Event> for Reader {
    fn on_event(&mut self, event: &Event, sequence: i64, end_of_batch: bool) {
        self.0.check(event, sequence);
        self.0.end_of_batch(sequence, end_of_batch);
        self.0.finish(event, sequence);
    }
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        self.0.batch_start(batch_size, queue_depth);
    }
    fn on_start(&mut self) {
        self.0.start();
    }
    fn on_shutdown(&mut self) {
        self.0.shutdown();
    }
}

/// The mutable handler of a stage: checks, then writes its field.
struct Writer(Checker);

impl MutEventHandler<Event> for Writer {
    fn on_event(&mut self, event: &mut Event, sequence: i64, end_of_batch: bool) {
        self.0.check(event, sequence);
        let stage = self.0.stage;
        event.enriched[stage] = event.enrichment(stage);
        self.0.end_of_batch(sequence, end_of_batch);
        self.0.finish(event, sequence);
    }
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        self.0.batch_start(batch_size, queue_depth);
    }
    fn on_start(&mut self) {
        self.0.start();
    }
    fn on_shutdown(&mut self) {
        self.0.shutdown();
    }
}

/// Polls `poller` until `ShutDown`, checking every event and what each
/// `poll` says; returns the tally.
fn drive_poller<W: WaitStrategy>(
    mut poller: EventPoller<Event, W>,
    mut checker: Checker,
    stop_every: Option<u64>,
) -> Tally {
    checker.start();
    let max_batch = checker.max_batch;
    let mut handed_out = 0u64;
    loop {
        let mut in_this_poll = 0i64;
        let mut ended_batch = false;
        let mut stopped_early = false;
        let state = poller.poll(|event, sequence, end_of_batch| {
            if ended_batch {
                checker.fail(format!("event {sequence} handed out after end_of_batch"));
            }
            ended_batch |= end_of_batch;
            in_this_poll += 1;
            checker.check(event, sequence);
            checker.finish(event, sequence);
            handed_out += 1;
            let keep_going = stop_every.map_or(true, |every| handed_out % every != 0);
            stopped_early = !keep_going;
            keep_going
        });
        match state {
            PollState::Processing => {
                if in_this_poll < 1 || in_this_poll > max_batch {
                    checker.fail(format!(
                        "a poll handed out {in_this_poll} events (max {max_batch})"
                    ));
                }
                if !stopped_early && !ended_batch {
                    checker.fail("a poll's last event lacked end_of_batch".into());
                }
            }
            PollState::Idle | PollState::Gating => {
                if in_this_poll != 0 {
                    checker.fail(format!("{state:?} after handing out events"));
                }
                thread::yield_now();
            }
            PollState::ShutDown => break,
            PollState::Halted => {
                checker.fail("the pipeline halted, though no handler panics".into());
                break;
            }
            other => {
                checker.fail(format!("poll reported an unknown state {other:?}"));
                break;
            }
        }
    }
    checker.tally.thread_at_shutdown = thread::current().name().map(str::to_owned);
    checker.tally
}

// ---------------------------------------------------------------------------
// Building and running one graph

/// A participant as built: the name its thread (or poller) has, and what
/// the stage behind it watches.
struct Built {
    name: String,
    kind: Kind,
    /// Thread names of a pool's workers (one for other kinds; none for pollers).
    threads: Vec<String>,
    upstream: Upstream,
}

struct PollerJob<W: WaitStrategy> {
    poller: EventPoller<Event, W>,
    checker: Checker,
    stop_every: Option<u64>,
}

fn new_checker(
    spec: &GraphSpec,
    label: String,
    stage: usize,
    max_batch: usize,
    pool_seen: Option<Arc<SeenBits>>,
    upstream: &[Upstream],
    report_to: &mpsc::Sender<Tally>,
) -> Checker {
    Checker {
        stage,
        in_pool: pool_seen.is_some(),
        mutable_stages: spec.mutable_stages(),
        single_producer: matches!(spec.mode, Mode::Single),
        max_batch: max_batch as i64,
        next_sequence: 0,
        next_counter: vec![0; spec.producers()],
        left_in_batch: 0,
        progress: Arc::new(AtomicI64::new(-1)),
        pool_seen,
        upstream: upstream.to_vec(),
        tally: Tally {
            label,
            ..Tally::default()
        },
        report_to: report_to.clone(),
    }
}

/// The options of `participant` (which come before it), given to a builder
/// whose stage may or may not have a participant yet.
fn configure<W: WaitStrategy, K, S>(
    builder: Builder<Event, W, K, S>,
    participant: &ParticipantSpec,
    name: Option<String>,
) -> Builder<Event, W, K, Configuring> {
    // `None` leaves the thread unpinned: this only brings either state of
    // the builder to the one that takes the options below.
    let mut builder = builder.pin_at_core(None);
    if let Some(max_batch) = participant.max_batch {
        builder = builder.max_batch_size(max_batch);
    }
    if let Some(name) = name {
        builder = builder.thread_name(name);
    }
    builder
}

/// A graph's participants, added to its builder.
struct Added<W: WaitStrategy, K> {
    builder: Builder<Event, W, K, Ready>,
    /// What was built, in the order of the report.
    built: Vec<Built>,
    /// The pollers, with their checkers.
    pollers: Vec<PollerJob<W>>,
}

/// Adds every participant of `spec` to `builder`.
fn add_participants<W: WaitStrategy, K>(
    builder: Builder<Event, W, K, NeedsParticipant>,
    spec: &GraphSpec,
    report_to: &mpsc::Sender<Tally>,
) -> Added<W, K> {
    let mut built: Vec<Built> = Vec::new();
    let mut pollers = Vec::new();
    let mut upstream: Vec<Upstream> = Vec::new();
    // The builder is in one of two states: a stage without a participant
    // yet, or one with.
    let mut empty_stage = Some(builder);
    let mut ready: Option<Builder<Event, W, K, Ready>> = None;
    for (stage, participants) in spec.stages.iter().enumerate() {
        if let Some(previous) = ready.take() {
            empty_stage = Some(previous.and_then());
        }
        let mut this_stage = Vec::new();
        let mut position = 0;
        for participant in participants {
            // The ring bounds every batch, whatever the option says.
            let max_batch = participant
                .max_batch
                .unwrap_or(DEFAULT_MAX_BATCH_SIZE)
                .min(spec.ring_size);
            let default_name = |position: usize| format!("tickring-{stage}-{position}");
            let explicit_name = |kind: &str| {
                participant
                    .named
                    .then(|| format!("s{stage}-{kind}{position}"))
            };
            let kind_name = match participant.kind {
                Kind::Handler => "handler",
                Kind::Mutable => "mutable",
                Kind::Pool { .. } => "pool",
                Kind::Poller => "poller",
            };
            let name = explicit_name(kind_name);
            let builder = match (empty_stage.take(), ready.take()) {
                (Some(builder), _) => configure(builder, participant, name.clone()),
                (None, Some(builder)) => configure(builder, participant, name.clone()),
                (None, None) => unreachable!("the builder is in one of its two states"),
            };
            let (builder, one) = match participant.kind {
                Kind::Handler | Kind::Mutable => {
                    let name = name.unwrap_or_else(|| default_name(position));
                    let checker = new_checker(
                        spec,
                        name.clone(),
                        stage,
                        max_batch,
                        None,
                        &upstream,
                        report_to,
                    );
                    let progress = Arc::clone(&checker.progress);
                    let builder = if participant.kind == Kind::Mutable {
                        builder.handle_events_mut_handler(Writer(checker))
                    } else {
                        builder.handle_events_with_handler(Reader(checker))
                    };
                    position += 1;
                    let one = Built {
                        name: name.clone(),
                        kind: participant.kind,
                        threads: vec![name.clone()],
                        upstream: Upstream::Progress(name, progress),
                    };
                    (builder, one)
                }
                Kind::Pool { workers } => {
                    let seen = Arc::new(SeenBits::new(spec.producers(), spec.stride()));
                    // A name before the pool names every worker, `-<n>` each.
                    let threads: Vec<String> = (0..workers)
                        .map(|worker| match &name {
                            Some(name) => format!("{name}-{worker}"),
                            None => default_name(position + worker),
                        })
                        .collect();
                    let checkers: Vec<Reader> = threads
                        .iter()
                        .map(|thread| {
                            Reader(new_checker(
                                spec,
                                thread.clone(),
                                stage,
                                max_batch,
                                Some(Arc::clone(&seen)),
                                &upstream,
                                report_to,
                            ))
                        })
                        .collect();
                    let builder = builder.handle_events_with_workers(checkers);
                    let name = format!("pool of {}", threads.join(", "));
                    position += workers;
                    let one = Built {
                        name: name.clone(),
                        kind: participant.kind,
                        threads,
                        upstream: Upstream::Pool(name, seen),
                    };
                    (builder, one)
                }
                Kind::Poller => {
                    let name = name.unwrap_or_else(|| default_name(position));
                    let checker = new_checker(
                        spec,
                        name.clone(),
                        stage,
                        max_batch,
                        None,
                        &upstream,
                        report_to,
                    );
                    let progress = Arc::clone(&checker.progress);
                    let (poller, builder) = builder.event_poller();
                    assert_eq!(poller.name(), name, "the poller's name");
                    pollers.push(PollerJob {
                        poller,
                        checker,
                        stop_every: participant.stop_every,
                    });
                    position += 1;
                    let one = Built {
                        name: name.clone(),
                        kind: participant.kind,
                        threads: Vec::new(),
                        upstream: Upstream::Progress(name, progress),
                    };
                    (builder, one)
                }
            };
            ready = Some(builder);
            this_stage.push(one);
        }
        upstream = this_stage.iter().map(|one| one.upstream.clone()).collect();
        built.extend(this_stage);
    }
    Added {
        builder: ready.expect("every stage has a participant"),
        built,
        pollers,
    }
}

/// Polls each poller to `ShutDown` on a thread of its own.
fn spawn_pollers<W: WaitStrategy>(jobs: Vec<PollerJob<W>>) -> Vec<thread::JoinHandle<Tally>> {
    jobs.into_iter()
        .map(|job| {
            let name = format!("poll-{}", job.checker.tally.label);
            thread::Builder::new()
                .name(name)
                .spawn(move || drive_poller(job.poller, job.checker, job.stop_every))
                .expect("spawn a poller thread")
        })
        .collect()
}

/// What the producers published: how many, and their fingerprint sum.
#[derive(Debug, Default, Clone, Copy)]
struct Published {
    events: u64,
    fingerprint: u64,
}

impl Published {
    fn add(&mut self, sequence: i64, producer: u32, counter: u64) {
        self.events += 1;
        self.fingerprint = self
            .fingerprint
            .wrapping_add(fingerprint(sequence, producer, counter));
    }
}

/// The single producer publishes `spec.events` events, mixing every
/// publishing call; checks each returns the sequence it should.
fn publish_single<W: WaitStrategy>(
    producer: &mut Producer<Event, W>,
    spec: &GraphSpec,
) -> Published {
    let mut random = XorShift::new(spec.publish_seed);
    let mut published = Published::default();
    let capacity = producer.capacity() as u64;
    let largest_batch = capacity.min(16);
    let mut counter = 0u64;
    while counter < spec.events {
        let left = spec.events - counter;
        let batch = random.range(1, largest_batch.min(left)) as usize;
        let first = counter as i64;
        let last = match random.range(0, 9) {
            0..=3 => producer
                .publish(|event| event.fill(0, counter))
                .expect("publish"),
            4 | 5 => producer
                .batch_publish(batch, |event, sequence| event.fill(0, sequence as u64))
                .expect("batch_publish"),
            6 => loop {
                match producer.try_publish(|event| event.fill(0, counter)) {
                    Ok(sequence) => break sequence,
                    Err(TryPublishError::Full) => thread::yield_now(),
                    Err(error) => panic!("try_publish: {error}"),
                }
            },
            7 => loop {
                match producer
                    .try_batch_publish(batch, |event, sequence| event.fill(0, sequence as u64))
                {
                    Ok(sequence) => break sequence,
                    Err(TryPublishError::Full) => thread::yield_now(),
                    Err(error) => panic!("try_batch_publish: {error}"),
                }
            },
            8 => loop {
                match producer
                    .publish_timeout(Duration::from_micros(200), |event| event.fill(0, counter))
                {
                    Ok(sequence) => break sequence,
                    Err(PublishTimeoutError::TimedOut) => {}
                    Err(error) => panic!("publish_timeout: {error}"),
                }
            },
            _ => {
                // Nothing to publish: returns the last sequence published.
                let last = producer
                    .batch_publish(0, |_, _| unreachable!("an empty batch fills nothing"))
                    .expect("empty batch");
                assert_eq!(last, first - 1, "an empty batch returns the last sequence");
                // No participant trails the producer by more than the ring.
                for (name, lag) in producer.handler_lags() {
                    assert!(lag <= capacity, "'{name}' lags {lag} > {capacity}");
                }
                continue;
            }
        };
        assert!(last >= first, "published sequence {last} before {first}");
        for sequence in first..=last {
            published.add(sequence, 0, sequence as u64);
        }
        counter = last as u64 + 1;
        assert_eq!(producer.last_published(), last);
    }
    published
}

/// One of several producers publishes its share: `producer`'s events in
/// order, through every publishing call. Returns what it published.
fn publish_multi<W: WaitStrategy>(
    handle: &mut MultiProducer<Event, W>,
    producer: u32,
    count: u64,
    seed: u64,
) -> Published {
    let mut random = XorShift::new(seed);
    let mut published = Published::default();
    let largest_batch = (handle.capacity() as u64).min(16);
    let mut counter = 0u64;
    while counter < count {
        let batch = random.range(1, largest_batch.min(count - counter)) as usize;
        match random.range(0, 7) {
            0..=2 => {
                let sequence = handle
                    .publish(|event| event.fill(producer, counter))
                    .expect("publish");
                published.add(sequence, producer, counter);
                counter += 1;
            }
            3 | 4 => {
                let mut filled = Vec::with_capacity(batch);
                let base = counter;
                let last = handle
                    .batch_publish(batch, |event, sequence| {
                        let counter = base + filled.len() as u64;
                        event.fill(producer, counter);
                        filled.push((sequence, counter));
                    })
                    .expect("batch_publish");
                check_batch(&filled, batch, last);
                for (sequence, counter) in filled {
                    published.add(sequence, producer, counter);
                }
                counter += batch as u64;
            }
            5 => {
                let sequence = loop {
                    match handle.try_publish(|event| event.fill(producer, counter)) {
                        Ok(sequence) => break sequence,
                        Err(TryPublishError::Full) => thread::yield_now(),
                        Err(error) => panic!("try_publish: {error}"),
                    }
                };
                published.add(sequence, producer, counter);
                counter += 1;
            }
            6 => {
                let mut filled = Vec::with_capacity(batch);
                let base = counter;
                let last = loop {
                    match handle.try_batch_publish(batch, |event, sequence| {
                        let counter = base + filled.len() as u64;
                        event.fill(producer, counter);
                        filled.push((sequence, counter));
                    }) {
                        Ok(last) => break last,
                        Err(TryPublishError::Full) => {
                            assert!(filled.is_empty(), "a refused batch filled events");
                            thread::yield_now();
                        }
                        Err(error) => panic!("try_batch_publish: {error}"),
                    }
                };
                check_batch(&filled, batch, last);
                for (sequence, counter) in filled {
                    published.add(sequence, producer, counter);
                }
                counter += batch as u64;
            }
            _ => {
                let sequence = loop {
                    match handle.publish_timeout(Duration::from_micros(200), |event| {
                        event.fill(producer, counter)
                    }) {
                        Ok(sequence) => break sequence,
                        Err(PublishTimeoutError::TimedOut) => {}
                        Err(error) => panic!("publish_timeout: {error}"),
                    }
                };
                published.add(sequence, producer, counter);
                counter += 1;
            }
        }
    }
    published
}

/// A batch fills `count` consecutive sequences, in order, ending at `last`.
fn check_batch(filled: &[(i64, u64)], count: usize, last: i64) {
    assert_eq!(filled.len(), count, "a batch fills every event once");
    for (index, (sequence, _)) in filled.iter().enumerate() {
        assert_eq!(
            *sequence,
            last - (count - 1 - index) as i64,
            "a batch's sequences are consecutive and end at the one returned"
        );
    }
}

/// Runs one graph and checks everything; returns the events published.
fn run_graph(spec: GraphSpec) -> u64 {
    match spec.wait {
        Wait::Yielding => run_with(spec, Yielding::new()),
        Wait::Sleeping { max_sleep_us } => run_with(
            spec,
            Sleeping::with_max_sleep(Duration::from_micros(max_sleep_us)),
        ),
        Wait::Blocking => run_with(spec, Blocking::new()),
    }
}

fn run_with<W: WaitStrategy>(spec: GraphSpec, wait: W) -> u64 {
    let (report_to, tallies) = mpsc::channel();
    let (report, published, built, poller_threads) = match spec.mode {
        Mode::Single => {
            let builder = build_single_producer(spec.ring_size, Event::default, wait)
                .producer_wait(spec.full_ring);
            let Added {
                builder,
                built,
                pollers: jobs,
            } = add_participants(builder, &spec, &report_to);
            let mut producer = builder.build().expect("a valid random graph builds");
            assert_eq!(producer.capacity(), spec.ring_size);
            let pollers = spawn_pollers(jobs);
            let published = publish_single(&mut producer, &spec);
            (producer.shutdown(), published, built, pollers)
        }
        Mode::Multi {
            producers,
            main_keeps_handle,
        } => {
            let builder = build_multi_producer(spec.ring_size, Event::default, wait)
                .producer_wait(spec.full_ring);
            let Added {
                builder,
                built,
                pollers: jobs,
            } = add_participants(builder, &spec, &report_to);
            let first = builder.build().expect("a valid random graph builds");
            assert_eq!(first.capacity(), spec.ring_size);
            let pollers = spawn_pollers(jobs);
            // The producers start once the test has let go of its own handle
            // (or not): then exactly one of them, or the test, is the last.
            let start = Arc::new(Barrier::new(producers + 1));
            let threads: Vec<_> = (0..producers)
                .map(|producer| {
                    let mut handle = first.clone();
                    let count = spec.events_of(producer);
                    let seed = mix(spec.publish_seed ^ producer as u64);
                    let start = Arc::clone(&start);
                    thread::Builder::new()
                        .name(format!("producer-{producer}"))
                        .spawn(move || {
                            start.wait();
                            let published =
                                publish_multi(&mut handle, producer as u32, count, seed);
                            (published, handle.shutdown())
                        })
                        .expect("spawn a producer")
                })
                .collect();
            let first = if main_keeps_handle {
                Some(first)
            } else {
                drop(first);
                None
            };
            start.wait();
            let mut published = Published::default();
            let mut reports = Vec::new();
            for thread in threads {
                let (mine, report) = join(thread);
                published.events += mine.events;
                published.fingerprint = published.fingerprint.wrapping_add(mine.fingerprint);
                reports.extend(report);
            }
            if let Some(first) = first {
                assert!(
                    reports.is_empty(),
                    "a handle shut down while the test held one"
                );
                reports.extend(first.shutdown());
            }
            assert_eq!(reports.len(), 1, "exactly one handle (the last) reports");
            (
                reports.pop().expect("one report"),
                published,
                built,
                pollers,
            )
        }
    };
    drop(report_to);
    let poller_tallies: Vec<Tally> = poller_threads.into_iter().map(join).collect();
    let handler_tallies: Vec<Tally> = tallies.try_iter().collect();
    verify(
        &spec,
        &built,
        &report,
        published,
        handler_tallies,
        poller_tallies,
    );
    spec.events
}

fn verify(
    spec: &GraphSpec,
    built: &[Built],
    report: &ShutdownReport,
    published: Published,
    handler_tallies: Vec<Tally>,
    poller_tallies: Vec<Tally>,
) {
    assert_eq!(
        published.events, spec.events,
        "the producers published every event"
    );
    let tallies: Vec<&Tally> = handler_tallies.iter().chain(&poller_tallies).collect();
    for tally in &tallies {
        assert_eq!(
            tally.errors, 0,
            "{} errors; first: {:?}",
            tally.errors, tally.first_error
        );
    }
    let threads: Vec<&String> = built.iter().flat_map(|one| &one.threads).collect();
    let reported: Vec<&String> = report
        .handlers
        .iter()
        .map(|handler| &handler.name)
        .collect();
    assert_eq!(
        reported, threads,
        "the report lists every thread, in the order added"
    );
    assert_eq!(
        handler_tallies.len(),
        threads.len(),
        "every handler thread runs on_shutdown once"
    );
    assert!(report.first_panic().is_none(), "{:?}", report.first_panic());
    let tally_of = |name: &str| -> &Tally {
        tallies
            .iter()
            .find(|tally| tally.label == name)
            .unwrap_or_else(|| panic!("no tally from '{name}'"))
    };
    for thread in &threads {
        let tally = tally_of(thread);
        let handled = report.handler(thread).expect("reported").events_handled;
        assert_eq!(tally.events, handled, "'{thread}': the report's count");
        assert_eq!(tally.starts, 1, "'{thread}': on_start runs once");
        assert_eq!(
            tally.thread_at_start.as_deref(),
            Some(thread.as_str()),
            "on_start's thread"
        );
        assert_eq!(
            tally.thread_at_shutdown.as_deref(),
            Some(thread.as_str()),
            "on_shutdown's thread"
        );
    }
    for handler in &report.handlers {
        assert_eq!(
            handler.events_skipped, 0,
            "'{}' skipped events",
            handler.name
        );
    }
    for one in built {
        let (events, sum) = one
            .threads
            .iter()
            .map(|thread| tally_of(thread))
            .chain((one.kind == Kind::Poller).then(|| tally_of(&one.name)))
            .fold((0u64, 0u64), |(events, sum), tally| {
                (events + tally.events, sum.wrapping_add(tally.fingerprint))
            });
        assert_eq!(
            events, published.events,
            "'{}' ({:?}) saw every event exactly once",
            one.name, one.kind
        );
        assert_eq!(
            sum, published.fingerprint,
            "'{}' ({:?}) saw each event at the sequence its producer was given",
            one.name, one.kind
        );
    }
}

// ---------------------------------------------------------------------------
// The tests

/// The run's seed: `TICKRING_STRESS_SEED`, or the clock's.
fn base_seed() -> u64 {
    match std::env::var("TICKRING_STRESS_SEED") {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("TICKRING_STRESS_SEED={text:?} is not a u64"))
        }
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            mix(nanos ^ u64::from(std::process::id()).rotate_left(32))
        }
    }
}

/// Prints how to replay the run if the test fails while it is alive.
struct ReplayHint {
    test: &'static str,
    seed: u64,
    graph: Option<(usize, String)>,
}

impl Drop for ReplayHint {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "\nstress test '{}' failed; replay with TICKRING_STRESS_SEED={:#x}",
                self.test, self.seed
            );
            if let Some((index, graph)) = &self.graph {
                eprintln!("failing graph #{index}: {graph}");
            }
        }
    }
}

fn stress(test: &'static str, wait: impl Fn(&mut XorShift) -> Wait, multi: bool) {
    let seed = base_seed();
    let mut hint = ReplayHint {
        test,
        seed,
        graph: None,
    };
    // Each test draws its own graphs from the run's seed.
    let test_seed = test
        .bytes()
        .fold(seed, |state, byte| mix(state ^ u64::from(byte)));
    let mut random = XorShift::new(test_seed);
    let started = Instant::now();
    let mut remaining = EVENTS_PER_TEST;
    let mut graphs = 0;
    while remaining > 0 {
        let wait = wait(&mut random);
        let mut spec = random_graph(&mut random, graphs, wait, multi);
        spec.events = spec.events.min(remaining);
        hint.graph = Some((graphs, format!("{spec:?}")));
        let graph_started = Instant::now();
        let name = format!("{test}-graph-{graphs}");
        let events = with_timeout(GRAPH_LIMIT, &name, move || run_graph(spec));
        if std::env::var_os("TICKRING_STRESS_VERBOSE").is_some() {
            println!(
                "{name}: {events} events in {:?}: {}",
                graph_started.elapsed(),
                hint.graph.as_ref().map_or("", |(_, graph)| graph)
            );
        }
        remaining -= events;
        graphs += 1;
    }
    println!(
        "{test}: {graphs} graphs, {EVENTS_PER_TEST} events in {:?} (seed {seed:#x})",
        started.elapsed()
    );
    hint.graph = None;
}

fn sleeping(random: &mut XorShift) -> Wait {
    Wait::Sleeping {
        max_sleep_us: random.range(1, 100),
    }
}

#[test]
fn single_producer_yielding() {
    stress("single_producer_yielding", |_| Wait::Yielding, false);
}

#[test]
fn single_producer_sleeping() {
    stress("single_producer_sleeping", sleeping, false);
}

#[test]
fn single_producer_blocking() {
    stress("single_producer_blocking", |_| Wait::Blocking, false);
}

#[test]
fn multi_producer_yielding() {
    stress("multi_producer_yielding", |_| Wait::Yielding, true);
}

#[test]
fn multi_producer_sleeping() {
    stress("multi_producer_sleeping", sleeping, true);
}

#[test]
fn multi_producer_blocking() {
    stress("multi_producer_blocking", |_| Wait::Blocking, true);
}
