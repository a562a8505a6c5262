//! The measurements, each for every system: ping-pong and the paced
//! pipeline (latency, one [`Block`] per run) and the throughput shapes (a
//! running [`Rig`] that publishes a sample on demand).

use std::ops::Range;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use disruptor::Producer as _;
use hdrhistogram::Histogram;
use tickring::{
    build_multi_producer, build_single_producer, builder_state, Builder, EventProducer,
    FullRingWait, WaitStrategy,
};

use crate::alloc::allocations;
use crate::hist::new_histogram;
use crate::peers::floor::Floor;
use crate::peers::{
    self, disruptor_options, recv, send, tickring_options, Crossbeam, Link, Recv, Rtrb, Rx, System,
    Tx,
};
use crate::place::{spawn_on, Placement, Waiting};
use crate::stats;
use crate::{with_disruptor_wait, with_tickring_wait};

/// The ring (or channel) size of ping-pong (LMAX's ping-pong test's).
pub const PING_PONG_RING: usize = 1024;
/// The ring size of the pipeline, multicast and sequencer shapes.
pub const PIPELINE_RING: usize = 8192;
/// The ring size of 1P-1C (LMAX's unicast test's).
pub const UNICAST_RING: usize = 65_536;

// ---------------------------------------------------------------------------
// Latency

/// One latency run: how many messages to measure (after a warm-up of a
/// tenth, at least 1,000), at what pace (`None`: back to back), waiting how.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub measured: u64,
    pub interval: Option<Duration>,
    pub waiting: Waiting,
}

impl Plan {
    fn warmup(&self) -> u64 {
        (self.measured / 10).max(1000)
    }

    fn total(&self) -> u64 {
        self.warmup() + self.measured
    }
}

/// What one latency run measured.
#[derive(Debug)]
pub struct Block {
    /// Latency in ns, from each message's intended send time (one way).
    pub histogram: Histogram<u64>,
    pub measured: u64,
    /// From the first measured receive to the last.
    pub elapsed: Duration,
    /// Allocations in the process over the same span.
    pub allocations: u64,
    /// Messages received wrong or out of order.
    pub wrong: u64,
}

/// Nanoseconds since a run's start, shared by its sender and receiver.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    #[inline]
    fn now_ns(self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// The sender's schedule: message `k` is due at `anchor + (k - from) *
/// interval`, re-anchored when the measured messages start.
struct Pacer {
    plan: Plan,
    clock: Clock,
    anchor_ns: u64,
}

impl Pacer {
    fn new(plan: Plan, clock: Clock) -> Self {
        let anchor_ns = 0;
        Self {
            plan,
            clock,
            anchor_ns,
        }
    }

    /// Waits until message `k` is due; returns when it was due.
    #[inline]
    fn due(&mut self, k: u64) -> u64 {
        let warmup = self.plan.warmup();
        if k == 0 || k == warmup {
            self.anchor_ns = self.clock.now_ns();
        }
        let Some(interval) = self.plan.interval else {
            return self.clock.now_ns();
        };
        let due = self.anchor_ns
            + (k - if k >= warmup { warmup } else { 0 }) * interval.as_nanos() as u64;
        let clock = self.clock;
        self.plan
            .waiting
            .until(|| (clock.now_ns() >= due).then_some(()));
        due
    }
}

/// The receiver's side: checks message `k` carries `k + offset` and records
/// `(now - intended) / divisor`.
struct Recorder {
    plan: Plan,
    clock: Clock,
    offset: i64,
    divisor: u64,
    seen: u64,
    wrong: u64,
    histogram: Histogram<u64>,
    started: Option<(Instant, u64)>,
}

impl Recorder {
    fn new(plan: Plan, clock: Clock, offset: i64, divisor: u64) -> Self {
        let histogram = new_histogram();
        Self {
            plan,
            clock,
            offset,
            divisor,
            seen: 0,
            wrong: 0,
            histogram,
            started: None,
        }
    }

    /// Records one message; `true` after the last.
    #[inline]
    fn record(&mut self, value: i64, intended_ns: u64) -> bool {
        let latency = self.clock.now_ns().saturating_sub(intended_ns) / self.divisor;
        self.wrong += u64::from(value != self.seen as i64 + self.offset);
        if self.seen == self.plan.warmup() {
            self.started = Some((Instant::now(), allocations()));
        }
        if self.seen >= self.plan.warmup() {
            self.histogram.saturating_record(latency.max(1));
        }
        self.seen += 1;
        self.seen == self.plan.total()
    }

    fn finish(self) -> Block {
        let (started, allocations_before) = self.started.expect("measured messages were recorded");
        Block {
            allocations: allocations() - allocations_before,
            elapsed: started.elapsed(),
            histogram: self.histogram,
            measured: self.plan.measured,
            wrong: self.wrong,
        }
    }
}

fn joined<T>(handle: JoinHandle<T>, what: &str) -> Result<T, String> {
    handle.join().map_err(|_| format!("{what} panicked"))
}

/// Ping-pong (LMAX's): a pinger (thread 0) sends ping `k` when it is due,
/// a ponger (thread 1) echoes it on a second ring, and the pinger records
/// half the round trip. tickring and the `disruptor` crate run the ponger
/// as the ping ring's handler, owning the pong ring's producer; the pinger
/// polls the pong ring. The queue peers' pinger and ponger are threads.
pub fn ping_pong(system: System, plan: Plan, placement: &Placement) -> Result<Block, String> {
    let pinger_core = placement.core(0);
    match system {
        System::Floor => link_ping_pong::<Floor>(plan, placement),
        System::Crossbeam => link_ping_pong::<Crossbeam>(plan, placement),
        System::Rtrb => link_ping_pong::<Rtrb>(plan, placement),
        System::Tickring => with_tickring_wait!(plan.waiting, |wait| {
            let (mut pongs, pong_ring) = build_single_producer(PING_PONG_RING, || 0i64, wait())
                .producer_wait(peers::full_ring_wait(plan.waiting))
                .event_poller();
            let mut pong = pong_ring.build().map_err(|error| error.to_string())?;
            let ponger = move |ping: &i64, _: i64, _: bool| {
                pong.publish(|event| *event = *ping)
                    .expect("the pong ring runs");
            };
            let ping_ring = build_single_producer(PING_PONG_RING, || 0i64, wait())
                .producer_wait(peers::full_ring_wait(plan.waiting));
            let mut ping = tickring_options(ping_ring, "tickring-ponger", placement.core(1))
                .handle_events_with(ponger)
                .build()
                .map_err(|error| error.to_string())?;
            let pinger = spawn_on("tickring-pinger", pinger_core, move || {
                (pinger(&mut ping, &mut pongs, plan), ping)
            });
            let (block, ping) = joined(pinger, "the pinger")?;
            match ping.shutdown().first_panic() {
                Some(panic) => Err(panic.to_string()),
                None => Ok(block),
            }
        }),
        System::Disruptor => with_disruptor_wait!(plan.waiting, |wait| {
            let (mut pongs, pong_ring) =
                disruptor::build_single_producer(PING_PONG_RING, || 0i64, wait).new_event_poller();
            let mut pong = pong_ring.build();
            let ponger = move |ping: &i64, _: i64, _: bool| pong.publish(|event| *event = *ping);
            let ping_ring = disruptor::build_single_producer(PING_PONG_RING, || 0i64, wait);
            let mut ping = disruptor_options(ping_ring, "disruptor-ponger", placement.core(1))
                .handle_events_with(ponger)
                .build();
            let pinger = spawn_on("disruptor-pinger", pinger_core, move || {
                (pinger(&mut ping, &mut pongs, plan), ping)
            });
            Ok(joined(pinger, "the pinger")?.0)
        }),
    }
}

/// The pinger's loop, whatever the system.
fn pinger(ping: &mut impl Tx<i64>, pongs: &mut impl Rx<i64>, plan: Plan) -> Block {
    let clock = Clock(Instant::now());
    let mut pacer = Pacer::new(plan, clock);
    let mut recorder = Recorder::new(plan, clock, 0, 2);
    for k in 0.. {
        let intended = pacer.due(k);
        send(ping, k as i64, plan.waiting);
        let echo = recv(pongs, plan.waiting).expect("the ponger echoes every ping");
        if recorder.record(echo, intended) {
            break;
        }
    }
    recorder.finish()
}

fn link_ping_pong<L: Link>(plan: Plan, placement: &Placement) -> Result<Block, String> {
    let (mut ping, mut pings) = L::pair::<i64>(PING_PONG_RING);
    let (mut pong, mut pongs) = L::pair::<i64>(PING_PONG_RING);
    let ponger = spawn_on("ponger", placement.core(1), move || {
        while let Some(value) = recv(&mut pings, plan.waiting) {
            send(&mut pong, value, plan.waiting);
        }
    });
    let pinger = spawn_on("pinger", placement.core(0), move || {
        pinger(&mut ping, &mut pongs, plan)
    });
    let block = joined(pinger, "the pinger")?;
    joined(ponger, "the ponger")?;
    Ok(block)
}

/// The event of the ring systems' pipelines: the producer writes `value`
/// (and when it was due), S1 and S2 write a field each. Atomics, stored
/// `Relaxed`, because the `disruptor` crate's handlers get `&E` (the
/// pipeline's gating orders them); on x86-64 the same `mov` as a plain field.
#[derive(Debug, Default)]
pub struct Event {
    pub intended_ns: u64,
    pub value: i64,
    pub s1: AtomicI64,
    pub s2: AtomicI64,
}

#[inline]
fn stage_one(event: &Event) {
    event.s1.store(event.value + 1, Ordering::Relaxed);
}

#[inline]
fn stage_two(event: &Event) {
    event
        .s2
        .store(event.s1.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The paced pipeline (the 2011 paper's latency test): producer (thread 0)
/// → S1 → S2 → S3 (threads 1-3), S3 checking `value + 2` and recording
/// `now - intended`. Ring systems run three stages of one ring; queue peers
/// run a chain of three queues with a thread per stage.
pub fn pipeline(system: System, plan: Plan, placement: &Placement) -> Result<Block, String> {
    let clock = Clock(Instant::now());
    let (done, finished) = mpsc::channel();
    let mut recorder = Some(Recorder::new(plan, clock, 2, 1));
    let last_stage = move |value: i64, intended_ns: u64| {
        if recorder
            .as_mut()
            .is_some_and(|recorder| recorder.record(value, intended_ns))
        {
            let _ = done.send(recorder.take().expect("one block").finish());
        }
    };
    let producer_core = placement.core(0);
    // The producer thread hands its publisher (and so the producer) back,
    // so that nothing shuts down while the last messages are measured.
    let paced = move |mut publish: Publish| -> Result<Published, String> {
        let producer = spawn_on("producer", producer_core, move || {
            let mut pacer = Pacer::new(plan, clock);
            for k in 0..plan.total() {
                publish(pacer.due(k), k as i64);
            }
            publish
        });
        Ok((joined(producer, "the producer")?, Vec::new()))
    };
    let sink = |mut last_stage: Box<dyn FnMut(i64, u64) + Send>| {
        move |event: &Event, _: i64, _: bool| {
            last_stage(event.s2.load(Ordering::Relaxed), event.intended_ns)
        }
    };
    let (publisher, stages) = match system {
        System::Tickring => with_tickring_wait!(plan.waiting, |wait| {
            let ring = build_single_producer(PIPELINE_RING, Event::default, wait())
                .producer_wait(peers::full_ring_wait(plan.waiting));
            let ring = tickring_options(ring, "s1", placement.core(1))
                .handle_events_with(|event: &Event, _, _| stage_one(event))
                .and_then();
            let ring = tickring_options(ring, "s2", placement.core(2))
                .handle_events_with(|event: &Event, _, _| stage_two(event))
                .and_then();
            let mut producer = tickring_options(ring, "s3", placement.core(3))
                .handle_events_with(sink(Box::new(last_stage)))
                .build()
                .map_err(|error| error.to_string())?;
            let publish = move |intended_ns, value| {
                let fill =
                    |event: &mut Event| (event.intended_ns, event.value) = (intended_ns, value);
                producer.publish(fill).expect("running");
            };
            paced(Box::new(publish))?
        }),
        System::Disruptor => with_disruptor_wait!(plan.waiting, |wait| {
            let ring = disruptor::build_single_producer(PIPELINE_RING, Event::default, wait);
            let ring = disruptor_options(ring, "s1", placement.core(1))
                .handle_events_with(|event: &Event, _, _| stage_one(event))
                .and_then();
            let ring = disruptor_options(ring, "s2", placement.core(2))
                .handle_events_with(|event: &Event, _, _| stage_two(event))
                .and_then();
            let mut producer = disruptor_options(ring, "s3", placement.core(3))
                .handle_events_with(sink(Box::new(last_stage)))
                .build();
            let publish = move |intended_ns, value| {
                producer.publish(|event| (event.intended_ns, event.value) = (intended_ns, value));
            };
            paced(Box::new(publish))?
        }),
        System::Floor => link_pipeline::<Floor>(plan, placement, paced, last_stage)?,
        System::Crossbeam => link_pipeline::<Crossbeam>(plan, placement, paced, last_stage)?,
        System::Rtrb => link_pipeline::<Rtrb>(plan, placement, paced, last_stage)?,
    };
    // Polled, not a blocking `recv`: that allocates, inside the measured span.
    let block = loop {
        match finished.try_recv() {
            Err(mpsc::TryRecvError::Empty) => thread::sleep(Duration::from_micros(200)),
            outcome => break outcome,
        }
    };
    drop(publisher);
    for stage in stages {
        joined(stage, "a stage")?;
    }
    block.map_err(|_| format!("{}: the last stage stopped early", system.name()))
}

/// A pipeline's publisher: `(intended_ns, value)`.
type Publish = Box<dyn FnMut(u64, i64) + Send>;
/// A pipeline whose producer has published everything: its publisher
/// (kept until the last message is recorded) and its stage threads.
type Published = (Publish, Vec<JoinHandle<()>>);

fn link_pipeline<L: Link>(
    plan: Plan,
    placement: &Placement,
    paced: impl FnOnce(Publish) -> Result<Published, String>,
    mut last_stage: impl FnMut(i64, u64) + Send + 'static,
) -> Result<Published, String> {
    let (mut tx, mut rx) = L::pair::<(u64, i64)>(PIPELINE_RING);
    let mut stages = Vec::new();
    for stage in 1..3 {
        let (mut next_tx, next_rx) = L::pair::<(u64, i64)>(PIPELINE_RING);
        let mut input = std::mem::replace(&mut rx, next_rx);
        let step = |(intended, value): (u64, i64)| (intended, value + 1);
        stages.push(spawn_on(
            &format!("s{stage}"),
            placement.core(stage),
            move || relay(&mut input, &mut next_tx, plan.waiting, step),
        ));
    }
    stages.push(spawn_on("s3", placement.core(3), move || {
        while let Some((intended, value)) = recv(&mut rx, plan.waiting) {
            last_stage(value, intended);
        }
    }));
    let publish = move |intended, value| send(&mut tx, (intended, value), plan.waiting);
    let (publisher, _) = paced(Box::new(publish))?;
    Ok((publisher, stages))
}

// ---------------------------------------------------------------------------
// Throughput

/// A throughput shape (the LMAX performance tests').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// P → C; C sums.
    Unicast,
    /// P → C1 → C2 → C3, each stage adding one.
    Pipeline,
    /// P → C1, C2, C3, each seeing every event.
    Multicast,
    /// P1, P2, P3 → C.
    Sequencer,
}

impl Shape {
    pub const ALL: [Shape; 4] = [
        Shape::Unicast,
        Shape::Pipeline,
        Shape::Multicast,
        Shape::Sequencer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Unicast => "unicast_1p1c",
            Shape::Pipeline => "pipeline_1p3c",
            Shape::Multicast => "multicast_1p3c",
            Shape::Sequencer => "sequencer_3p1c",
        }
    }

    pub fn producers(self) -> usize {
        if self == Shape::Sequencer {
            3
        } else {
            1
        }
    }

    pub fn consumers(self) -> usize {
        if matches!(self, Shape::Pipeline | Shape::Multicast) {
            3
        } else {
            1
        }
    }

    /// Producers, then consumers: thread `i` of a [`Placement`].
    pub fn threads(self) -> usize {
        self.producers() + self.consumers()
    }

    /// The consumers whose sums are checked, and what each adds per event.
    fn sinks(self) -> (usize, i64) {
        match self {
            Shape::Multicast => (3, 0),
            Shape::Pipeline => (1, 2),
            Shape::Unicast | Shape::Sequencer => (1, 0),
        }
    }

    /// Whether `system` can express the shape (an SPSC queue has no three
    /// producers).
    pub fn supports(self, system: System) -> bool {
        self != Shape::Sequencer || !matches!(system, System::Floor | System::Rtrb)
    }

    fn ring(self) -> usize {
        if matches!(self, Shape::Unicast | Shape::Sequencer) {
            UNICAST_RING
        } else {
            PIPELINE_RING
        }
    }
}

/// A contender of a throughput comparison: a name, a system, and
/// tickring's options (ignored by the others).
pub type Contender = (String, System, TickOptions);

/// Rates (events/s) of `contenders` on `shape`, in paired rounds: each round
/// builds every contender fresh, in a rotating order, warms it with a
/// quarter-size sample and measures one sample of `events` (sums checked).
/// Returns `rates[contender][round]`; a contender that cannot express the
/// shape must not be passed.
pub fn paired_throughput(
    shape: Shape,
    placement: &Placement,
    contenders: &[Contender],
    rounds: usize,
    events: u64,
) -> Vec<Vec<f64>> {
    let progress = |round: usize, next: usize| {
        eprintln!(
            "[rounds] {} round {}/{rounds}: {}",
            shape.name(),
            round + 1,
            contenders[next].0
        )
    };
    stats::rounds(rounds, contenders.len(), progress, |_, index| {
        let (name, system, options) = &contenders[index];
        let mut rig = Rig::new(*system, shape, placement, *options)
            .unwrap_or_else(|| panic!("{name} cannot run {}", shape.name()));
        rig.run(events / 4);
        events as f64 / rig.run(events).as_secs_f64()
    })
}

/// What a checked consumer has done, written at the end of each batch.
#[derive(Debug)]
struct Sink {
    seen: CachePadded<AtomicU64>,
    sum: AtomicI64,
    target: AtomicU64,
    waiter: Thread,
}

/// A checked consumer's running count and sum.
struct Tally {
    sink: Arc<Sink>,
    seen: u64,
    sum: i64,
}

impl Tally {
    #[inline]
    fn add(&mut self, value: i64, end_of_batch: bool) {
        self.seen += 1;
        self.sum = self.sum.wrapping_add(value);
        if end_of_batch {
            self.flush();
        }
    }

    #[inline]
    fn flush(&mut self) {
        let sink = &*self.sink;
        sink.sum.store(self.sum, Ordering::Relaxed);
        sink.seen.store(self.seen, Ordering::Release);
        if self.seen == sink.target.load(Ordering::Relaxed) {
            sink.waiter.unpark();
        }
    }
}

/// Options of tickring's rigs.
#[derive(Debug, Clone, Copy)]
pub struct TickOptions {
    /// Events claimed per `batch_publish` (1: `publish`).
    pub batch: usize,
    /// The producer's full-ring policy (`None`: as the placement's waiting).
    pub full_ring: Option<FullRingWait>,
}

impl Default for TickOptions {
    fn default() -> Self {
        Self {
            batch: 1,
            full_ring: None,
        }
    }
}

/// A running shape of one system: its threads wait for [`Rig::run`] to
/// publish a sample, and stop when the rig is dropped.
pub struct Rig {
    commands: Vec<mpsc::Sender<Range<i64>>>,
    producers: Vec<JoinHandle<()>>,
    sinks: Vec<Arc<Sink>>,
    offset: i64,
    published: u64,
    expected_sum: i64,
    waiting: Waiting,
    /// Queue peers' consumer threads (ring systems join theirs on drop).
    consumers: Vec<JoinHandle<()>>,
}

impl Rig {
    /// Builds `shape` for `system` on `placement`, or `None` where the
    /// system cannot express the shape (an SPSC queue with 3 producers).
    /// Must be called on the thread that calls `run`.
    pub fn new(
        system: System,
        shape: Shape,
        placement: &Placement,
        tick: TickOptions,
    ) -> Option<Rig> {
        let (sinks, offset) = shape.sinks();
        let mut rig = Rig {
            commands: Vec::new(),
            producers: Vec::new(),
            sinks: (0..sinks)
                .map(|_| {
                    let waiter = thread::current();
                    Arc::new(Sink {
                        seen: CachePadded::default(),
                        sum: AtomicI64::new(0),
                        target: AtomicU64::new(0),
                        waiter,
                    })
                })
                .collect(),
            offset,
            published: 0,
            expected_sum: 0,
            waiting: placement.waiting(),
            consumers: Vec::new(),
        };
        match system {
            System::Tickring => with_tickring_wait!(placement.waiting(), |wait| rig.tickring(
                shape,
                placement,
                wait(),
                tick
            )),
            System::Disruptor => with_disruptor_wait!(placement.waiting(), |wait| rig
                .disruptor(shape, placement, wait)),
            System::Floor => rig.links::<Floor>(shape, placement)?,
            System::Crossbeam => rig.links::<Crossbeam>(shape, placement)?,
            System::Rtrb => rig.links::<Rtrb>(shape, placement)?,
        }
        Some(rig)
    }

    /// Publishes `events` (split between the producers), waits until every
    /// checked consumer has them, and returns how long that took. Panics if
    /// a consumer's sum is wrong: a fast wrong answer is no answer.
    pub fn run(&mut self, events: u64) -> Duration {
        let producers = self.commands.len() as u64;
        let target = self.published + events;
        for sink in &self.sinks {
            sink.target.store(target, Ordering::Relaxed);
        }
        let start = Instant::now();
        let mut next = self.published as i64;
        for (index, command) in self.commands.iter().enumerate() {
            let share = events / producers + u64::from((index as u64) < events % producers);
            self.expected_sum = (next..next + share as i64).fold(self.expected_sum, |sum, v| {
                sum.wrapping_add(v + self.offset)
            });
            command
                .send(next..next + share as i64)
                .expect("the producer runs");
            next += share as i64;
        }
        for sink in &self.sinks {
            while sink.seen.load(Ordering::Acquire) < target {
                thread::park_timeout(Duration::from_millis(1));
            }
        }
        let elapsed = start.elapsed();
        self.published = target;
        for sink in &self.sinks {
            assert_eq!(
                sink.sum.load(Ordering::Relaxed),
                self.expected_sum,
                "a consumer's checksum is wrong"
            );
        }
        elapsed
    }

    fn tally(&self, sink: usize) -> Tally {
        Tally {
            sink: Arc::clone(&self.sinks[sink]),
            seen: 0,
            sum: 0,
        }
    }

    /// Starts producer thread `index`, publishing each sample's range.
    fn producer(
        &mut self,
        placement: &Placement,
        index: usize,
        mut publish: impl FnMut(Range<i64>) + Send + 'static,
    ) {
        let (command, commands) = mpsc::channel::<Range<i64>>();
        self.commands.push(command);
        self.producers.push(spawn_on(
            &format!("producer-{index}"),
            placement.core(index),
            move || {
                for range in commands {
                    publish(range);
                }
            },
        ));
    }

    fn tickring<W: WaitStrategy>(
        &mut self,
        shape: Shape,
        placement: &Placement,
        wait: W,
        tick: TickOptions,
    ) {
        let full_ring = tick
            .full_ring
            .unwrap_or(peers::full_ring_wait(self.waiting));
        let batch = tick.batch.max(1);
        if shape == Shape::Sequencer {
            let builder =
                build_multi_producer(shape.ring(), Event::default, wait).producer_wait(full_ring);
            let producer = self
                .tickring_consumers(builder, shape, placement)
                .build()
                .expect("a valid pipeline");
            for index in 0..shape.producers() {
                let mut producer = producer.clone();
                self.producer(placement, index, move |range| {
                    publish_range(&mut producer, range, batch)
                });
            }
        } else {
            let builder =
                build_single_producer(shape.ring(), Event::default, wait).producer_wait(full_ring);
            let mut producer = self
                .tickring_consumers(builder, shape, placement)
                .build()
                .expect("a valid pipeline");
            self.producer(placement, 0, move |range| {
                publish_range(&mut producer, range, batch)
            });
        }
    }

    fn tickring_consumers<W: WaitStrategy, K>(
        &self,
        builder: Builder<Event, W, K, builder_state::NeedsParticipant>,
        shape: Shape,
        placement: &Placement,
    ) -> Builder<Event, W, K, builder_state::Ready> {
        let (consumer, sink) = (consumer_cores(shape, placement), summing);
        match shape {
            Shape::Unicast | Shape::Sequencer => tickring_options(builder, "c0", consumer(0))
                .handle_events_with(sink(self.tally(0), |e| e.value)),
            Shape::Multicast => {
                let builder = tickring_options(builder, "c0", consumer(0))
                    .handle_events_with(sink(self.tally(0), |e| e.value));
                let builder = tickring_options(builder, "c1", consumer(1))
                    .handle_events_with(sink(self.tally(1), |e| e.value));
                tickring_options(builder, "c2", consumer(2))
                    .handle_events_with(sink(self.tally(2), |e| e.value))
            }
            Shape::Pipeline => {
                let builder = tickring_options(builder, "c0", consumer(0))
                    .handle_events_with(|e: &Event, _, _| stage_one(e))
                    .and_then();
                let builder = tickring_options(builder, "c1", consumer(1))
                    .handle_events_with(|e: &Event, _, _| stage_two(e))
                    .and_then();
                tickring_options(builder, "c2", consumer(2))
                    .handle_events_with(sink(self.tally(0), |e| e.s2.load(Ordering::Relaxed)))
            }
        }
    }

    fn disruptor<W: disruptor::wait_strategies::WaitStrategy + 'static>(
        &mut self,
        shape: Shape,
        placement: &Placement,
        wait: W,
    ) {
        fn publish_all<P: disruptor::Producer<Event>>(producer: &mut P, range: Range<i64>) {
            for value in range {
                producer.publish(|event| event.value = value);
            }
        }
        let (consumer, sink) = (consumer_cores(shape, placement), summing);
        let ring = || disruptor::build_single_producer(shape.ring(), Event::default, wait);
        match shape {
            Shape::Unicast => {
                let mut producer = disruptor_options(ring(), "c0", consumer(0))
                    .handle_events_with(sink(self.tally(0), |e| e.value))
                    .build();
                self.producer(placement, 0, move |range| publish_all(&mut producer, range));
            }
            Shape::Multicast => {
                let builder = disruptor_options(ring(), "c0", consumer(0))
                    .handle_events_with(sink(self.tally(0), |e| e.value));
                let builder = disruptor_options(builder, "c1", consumer(1))
                    .handle_events_with(sink(self.tally(1), |e| e.value));
                let mut producer = disruptor_options(builder, "c2", consumer(2))
                    .handle_events_with(sink(self.tally(2), |e| e.value))
                    .build();
                self.producer(placement, 0, move |range| publish_all(&mut producer, range));
            }
            Shape::Pipeline => {
                let builder = disruptor_options(ring(), "c0", consumer(0))
                    .handle_events_with(|e: &Event, _, _| stage_one(e))
                    .and_then();
                let builder = disruptor_options(builder, "c1", consumer(1))
                    .handle_events_with(|e: &Event, _, _| stage_two(e))
                    .and_then();
                let last = sink(self.tally(0), |e| e.s2.load(Ordering::Relaxed));
                let mut producer = disruptor_options(builder, "c2", consumer(2))
                    .handle_events_with(last)
                    .build();
                self.producer(placement, 0, move |range| publish_all(&mut producer, range));
            }
            Shape::Sequencer => {
                let builder = disruptor::build_multi_producer(shape.ring(), Event::default, wait);
                let producer = disruptor_options(builder, "c0", consumer(0))
                    .handle_events_with(sink(self.tally(0), |e| e.value))
                    .build();
                for index in 0..shape.producers() {
                    let mut producer = producer.clone();
                    self.producer(placement, index, move |range| {
                        publish_all(&mut producer, range)
                    });
                }
            }
        }
    }

    fn links<L: Link>(&mut self, shape: Shape, placement: &Placement) -> Option<()> {
        let (consumer, waiting) = (consumer_cores(shape, placement), self.waiting);
        let (tx, rx) = L::pair::<i64>(shape.ring());
        let mut txs = vec![tx];
        match shape {
            Shape::Unicast => self.drain(rx, 0, consumer(0)),
            Shape::Sequencer => {
                for _ in 1..shape.producers() {
                    txs.push(L::share(&txs[0])?);
                }
                self.drain(rx, 0, consumer(0));
            }
            Shape::Multicast => {
                self.drain(rx, 0, consumer(0));
                for index in 1..3 {
                    let (tx, rx) = L::pair::<i64>(shape.ring());
                    txs.push(tx);
                    self.drain(rx, index, consumer(index));
                }
            }
            Shape::Pipeline => {
                let mut input = rx;
                for stage in 0..2 {
                    let (mut tx, next) = L::pair::<i64>(shape.ring());
                    let mut rx = std::mem::replace(&mut input, next);
                    let relayed = spawn_on(&format!("c{stage}"), consumer(stage), move || {
                        relay(&mut rx, &mut tx, waiting, |v| v + 1)
                    });
                    self.consumers.push(relayed);
                }
                self.drain(input, 0, consumer(2));
            }
        }
        if shape == Shape::Multicast {
            self.producer(placement, 0, move |range| {
                for value in range {
                    txs.iter_mut().for_each(|tx| send(tx, value, waiting));
                }
            });
        } else {
            for (index, mut tx) in txs.into_iter().enumerate() {
                self.producer(placement, index, move |range| {
                    range.for_each(|value| send(&mut tx, value, waiting))
                });
            }
        }
        Some(())
    }

    /// A queue peer's checked consumer: reports when it finds the queue empty.
    fn drain(&mut self, mut rx: impl Rx<i64>, sink: usize, core: Option<usize>) {
        let (mut tally, waiting) = (self.tally(sink), self.waiting);
        self.consumers
            .push(spawn_on(&format!("c{sink}"), core, move || loop {
                match rx.try_recv() {
                    Recv::Item(value) => tally.add(value, false),
                    Recv::Closed => return,
                    Recv::Empty => {
                        tally.flush();
                        match recv(&mut rx, waiting) {
                            Some(value) => tally.add(value, false),
                            None => return,
                        }
                    }
                }
            }));
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Closing the commands ends the producers; their producers' drops
        // shut the ring systems down, and close the queues.
        self.commands.clear();
        for thread in self.producers.drain(..).chain(self.consumers.drain(..)) {
            let _ = thread.join();
        }
    }
}

/// Consumer `index`'s core (threads after the producers').
fn consumer_cores(shape: Shape, placement: &Placement) -> impl Fn(usize) -> Option<usize> + '_ {
    move |index| placement.core(shape.producers() + index)
}

/// A ring system's checked consumer: tallies `read(event)`.
fn summing(mut tally: Tally, read: fn(&Event) -> i64) -> impl FnMut(&Event, i64, bool) {
    move |event, _sequence, end_of_batch| tally.add(read(event), end_of_batch)
}

/// Publishes `range` through either kind of tickring producer, `batch`
/// events per claim.
fn publish_range(producer: &mut impl EventProducer<Event>, range: Range<i64>, batch: usize) {
    if batch == 1 {
        for value in range {
            producer
                .publish(|event| event.value = value)
                .expect("the pipeline runs");
        }
        return;
    }
    let mut next = range.start;
    while next < range.end {
        let count = batch.min((range.end - next) as usize);
        let fill = |event: &mut Event, _| {
            event.value = next;
            next += 1;
        };
        producer
            .batch_publish(count, fill)
            .expect("the pipeline runs");
    }
}

/// A queue peer's middle stage: receives, applies `step`, sends on, until
/// the queue before it closes.
fn relay<T: peers::Message>(
    rx: &mut impl Rx<T>,
    tx: &mut impl Tx<T>,
    waiting: Waiting,
    step: fn(T) -> T,
) {
    while let Some(value) = recv(rx, waiting) {
        send(tx, step(value), waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads that wait politely, so the tests run on any machine.
    fn polite(threads: usize) -> Placement {
        Placement::exclusive(threads).with_waiting(Waiting::Yield)
    }

    #[test]
    fn every_rig_delivers_every_event_once() {
        for shape in Shape::ALL {
            for system in System::ALL {
                let batch10 = TickOptions {
                    batch: 10,
                    ..TickOptions::default()
                };
                for options in [TickOptions::default(), batch10] {
                    if let Some(mut rig) =
                        Rig::new(system, shape, &polite(shape.threads()), options)
                    {
                        // `run` panics on a wrong sum; two samples check the running totals.
                        rig.run(5_003);
                        rig.run(2_000);
                    }
                }
            }
        }
    }

    #[test]
    fn latency_blocks_see_every_message_in_order() {
        let plan = Plan {
            measured: 1_000,
            interval: None,
            waiting: Waiting::Yield,
        };
        for system in System::ALL {
            let ping_pong = ping_pong(system, plan, &polite(2)).expect("ping-pong runs");
            let pipeline = pipeline(system, plan, &polite(4)).expect("pipeline runs");
            for block in [ping_pong, pipeline] {
                assert_eq!(
                    (block.wrong, block.histogram.len()),
                    (0, 1_000),
                    "{}",
                    system.name()
                );
            }
        }
    }
}
