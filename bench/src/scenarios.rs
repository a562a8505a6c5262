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
    FullRingWait, PollState, WaitStrategy,
};

use crate::alloc::{allocations, thread_allocations};
pub use crate::events::Event;
use crate::events::{fizz_buzz_expected, Chunk, ShapeEvent, Words, CHUNK};
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
    ping_pong_of::<i64>(system, plan, placement)
}

/// A ping-pong message: ping `k` carries `k` in every word, and the pinger
/// reads every word of the echo back ([`Ping::k`]), so the whole message
/// travels both ways.
pub trait Ping: peers::Message + Sync {
    /// Ping `k`.
    fn ping(k: i64) -> Self;
    /// The `k` the message carries; `-1` when its words disagree.
    fn k(&self) -> i64;
}

impl Ping for i64 {
    #[inline]
    fn ping(k: i64) -> Self {
        k
    }

    #[inline]
    fn k(&self) -> i64 {
        *self
    }
}

impl<const N: usize> Ping for [i64; N]
where
    [i64; N]: Default,
{
    #[inline]
    fn ping(k: i64) -> Self {
        [k; N]
    }

    #[inline]
    fn k(&self) -> i64 {
        if self.iter().all(|word| *word == self[0]) {
            self[0]
        } else {
            -1
        }
    }
}

/// [`ping_pong`] with messages of type `M` (e.g. `[i64; 7]`, `[i64; 8]`:
/// how the event's size moves a hop's latency).
pub fn ping_pong_of<M: Ping>(
    system: System,
    plan: Plan,
    placement: &Placement,
) -> Result<Block, String> {
    let pinger_core = placement.core(0);
    match system {
        System::Floor => link_ping_pong::<Floor, M>(plan, placement),
        System::Crossbeam => link_ping_pong::<Crossbeam, M>(plan, placement),
        System::Rtrb => link_ping_pong::<Rtrb, M>(plan, placement),
        System::Tickring => with_tickring_wait!(plan.waiting, |wait| {
            let (mut pongs, pong_ring) = build_single_producer(PING_PONG_RING, M::default, wait())
                .producer_wait(peers::full_ring_wait(plan.waiting))
                .event_poller();
            let mut pong = pong_ring.build().map_err(|error| error.to_string())?;
            let ponger = move |ping: &M, _: i64, _: bool| {
                pong.publish(|event| *event = *ping)
                    .expect("the pong ring runs");
            };
            let ping_ring = build_single_producer(PING_PONG_RING, M::default, wait())
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
                disruptor::build_single_producer(PING_PONG_RING, M::default, wait)
                    .new_event_poller();
            let mut pong = pong_ring.build();
            let ponger = move |ping: &M, _: i64, _: bool| pong.publish(|event| *event = *ping);
            let ping_ring = disruptor::build_single_producer(PING_PONG_RING, M::default, wait);
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

/// Ping-pong as [`ping_pong`] for tickring, but the ponger is a thread of
/// the caller's that owns an [`tickring::EventPoller`] on the ping ring and
/// polls it in its own loop (echoing every ping it is handed): what a user
/// who owns the consumer thread pays against a handler thread.
pub fn ping_pong_polling_ponger(plan: Plan, placement: &Placement) -> Result<Block, String> {
    with_tickring_wait!(plan.waiting, |wait| {
        let full_ring = peers::full_ring_wait(plan.waiting);
        let (mut pongs, pong_ring) = build_single_producer(PING_PONG_RING, || 0i64, wait())
            .producer_wait(full_ring)
            .event_poller();
        let mut pong = pong_ring.build().map_err(|error| error.to_string())?;
        let (mut pings, ping_ring) = build_single_producer(PING_PONG_RING, || 0i64, wait())
            .producer_wait(full_ring)
            .event_poller();
        let mut ping = ping_ring.build().map_err(|error| error.to_string())?;
        let ponger = spawn_on("tickring-polling-ponger", placement.core(1), move || {
            let mut echo = |ping: &i64, _: i64, _: bool| {
                pong.publish(|event| *event = *ping)
                    .expect("the pong ring runs");
                true
            };
            // Until the pinger's producer shuts the ping ring down.
            while plan.waiting.until(|| match pings.poll(&mut echo) {
                tickring::PollState::Processing => Some(true),
                tickring::PollState::ShutDown | tickring::PollState::Halted => Some(false),
                _ => None,
            }) {}
        });
        let pinger = spawn_on("tickring-pinger", placement.core(0), move || {
            let block = pinger(&mut ping, &mut pongs, plan);
            drop(ping.shutdown());
            block
        });
        let block = joined(pinger, "the pinger")?;
        joined(ponger, "the polling ponger")?;
        Ok(block)
    })
}

/// The pinger's loop, whatever the system.
fn pinger<M: Ping>(ping: &mut impl Tx<M>, pongs: &mut impl Rx<M>, plan: Plan) -> Block {
    let clock = Clock(Instant::now());
    let mut pacer = Pacer::new(plan, clock);
    let mut recorder = Recorder::new(plan, clock, 0, 2);
    for k in 0.. {
        let intended = pacer.due(k);
        send(ping, M::ping(k as i64), plan.waiting);
        let echo = recv(pongs, plan.waiting).expect("the ponger echoes every ping");
        if recorder.record(echo.k(), intended) {
            break;
        }
    }
    recorder.finish()
}

fn link_ping_pong<L: Link, M: Ping>(plan: Plan, placement: &Placement) -> Result<Block, String> {
    let (mut ping, mut pings) = L::pair::<M>(PING_PONG_RING);
    let (mut pong, mut pongs) = L::pair::<M>(PING_PONG_RING);
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
                .handle_events_with(|event: &Event, _, _| event.stage_one())
                .and_then();
            let ring = tickring_options(ring, "s2", placement.core(2))
                .handle_events_with(|event: &Event, _, _| event.stage_two())
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
                .handle_events_with(|event: &Event, _, _| event.stage_one())
                .and_then();
            let ring = disruptor_options(ring, "s2", placement.core(2))
                .handle_events_with(|event: &Event, _, _| event.stage_two())
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
    /// P → C, the producer claiming [`CHUNK`] events at a time.
    UnicastBatch,
    /// P → C, C an event poller that its own thread polls in its own loop,
    /// taking every available event per call.
    UnicastPoller,
    /// P → C1 → C2 → C3, C1 and C2 writing into the event, C3 summing.
    Pipeline,
    /// P → C1, C2, C3, each seeing every event.
    Multicast,
    /// P → C1 (fizz), C2 (buzz) on one barrier → C3 after both, summing the
    /// fizz-and-buzz events.
    Diamond,
    /// P1, P2, P3 → C.
    Sequencer,
    /// P1, P2, P3 → C, each producer claiming [`CHUNK`] events at a time.
    SequencerBatch,
}

impl Shape {
    pub const ALL: [Shape; 8] = [
        Shape::Unicast,
        Shape::UnicastBatch,
        Shape::UnicastPoller,
        Shape::Pipeline,
        Shape::Multicast,
        Shape::Diamond,
        Shape::Sequencer,
        Shape::SequencerBatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Unicast => "unicast_1p1c",
            Shape::UnicastBatch => "unicast_batch_1p1c",
            Shape::UnicastPoller => "unicast_poller_1p1c",
            Shape::Pipeline => "pipeline_1p3c",
            Shape::Multicast => "multicast_1p3c",
            Shape::Diamond => "diamond_1p3c",
            Shape::Sequencer => "sequencer_3p1c",
            Shape::SequencerBatch => "sequencer_batch_3p1c",
        }
    }

    pub fn producers(self) -> usize {
        if matches!(self, Shape::Sequencer | Shape::SequencerBatch) {
            3
        } else {
            1
        }
    }

    pub fn consumers(self) -> usize {
        if matches!(self, Shape::Pipeline | Shape::Multicast | Shape::Diamond) {
            3
        } else {
            1
        }
    }

    /// Producers, then consumers: thread `i` of a [`Placement`].
    pub fn threads(self) -> usize {
        self.producers() + self.consumers()
    }

    /// Events a producer claims at a time (1: one publish per event).
    pub fn batch(self) -> usize {
        if matches!(self, Shape::UnicastBatch | Shape::SequencerBatch) {
            CHUNK
        } else {
            1
        }
    }

    /// The consumers whose sums are checked.
    fn sinks(self) -> usize {
        if self == Shape::Multicast {
            3
        } else {
            1
        }
    }

    /// The serial computation of what a checked consumer adds for the event
    /// carrying `value`.
    fn expected<E: ShapeEvent>(self) -> fn(i64) -> i64 {
        match self {
            Shape::Pipeline => |value| E::message(value).checksum() + 2,
            Shape::Diamond => fizz_buzz_expected::<E>,
            _ => |value| E::message(value).checksum(),
        }
    }

    /// Whether `system` can express the shape: an SPSC queue has no three
    /// producers; the diamond and the poller are the ring systems' (a queue
    /// has no shared event to write into, and no poller of its own).
    pub fn supports(self, system: System) -> bool {
        match self {
            Shape::Sequencer | Shape::SequencerBatch => {
                !matches!(system, System::Floor | System::Rtrb)
            }
            Shape::Diamond | Shape::UnicastPoller => {
                matches!(system, System::Tickring | System::Disruptor)
            }
            // The floor ring has no claim of ten.
            Shape::UnicastBatch => system != System::Floor,
            Shape::Unicast | Shape::Pipeline | Shape::Multicast => true,
        }
    }

    fn ring(self) -> usize {
        if matches!(self, Shape::Pipeline | Shape::Multicast | Shape::Diamond) {
            PIPELINE_RING
        } else {
            UNICAST_RING
        }
    }
}

/// A contender of a throughput comparison: a name, a system, and
/// tickring's options (ignored by the others).
pub type Contender = (String, System, TickOptions);

/// What [`paired_throughput`] measured, per contender.
#[derive(Debug)]
pub struct Paired {
    /// Events/s, `rates[contender][round]`.
    pub rates: Vec<Vec<f64>>,
    /// The most allocations of the contender's hot threads in one measured
    /// sample (0 unless [`Counting`](crate::alloc::Counting) is installed).
    pub allocations: Vec<u64>,
}

/// Rates (events/s) of `contenders` on `shape` with events `E`, in paired
/// rounds: each round builds every contender fresh, in a rotating order,
/// warms it with a quarter-size sample and measures one sample of `events`
/// (sums checked). A contender that cannot express the shape must not be
/// passed.
pub fn paired_throughput<E: ShapeEvent>(
    shape: Shape,
    placement: &Placement,
    contenders: &[Contender],
    rounds: usize,
    events: u64,
) -> Paired {
    let progress = |round: usize, next: usize| {
        eprintln!(
            "[rounds] {}/{} round {}/{rounds}: {}",
            shape.name(),
            E::SIZE,
            round + 1,
            contenders[next].0
        )
    };
    let samples = stats::rounds(rounds, contenders.len(), progress, |_, index| {
        sample_rate::<E>(&contenders[index], shape, placement, events)
    });
    Paired {
        rates: samples
            .iter()
            .map(|runs| runs.iter().map(|(rate, _)| *rate).collect())
            .collect(),
        allocations: samples
            .iter()
            .map(|runs| runs.iter().map(|(_, allocations)| *allocations).max())
            .map(Option::unwrap_or_default)
            .collect(),
    }
}

/// One sample of `contender` in `shape` with events `E`, on a fresh rig
/// warmed with a quarter of `events`: (events/s, allocations on its hot
/// threads).
pub fn sample_rate<E: ShapeEvent>(
    contender: &Contender,
    shape: Shape,
    placement: &Placement,
    events: u64,
) -> (f64, u64) {
    let (name, system, options) = contender;
    let mut rig = Rig::new::<E>(*system, shape, placement, *options)
        .unwrap_or_else(|| panic!("{name} cannot run {}", shape.name()));
    rig.run(events / 4);
    let rate = events as f64 / rig.run(events).as_secs_f64();
    (rate, rig.hot_allocations())
}

/// The cache-line floor: the floor ring's one-way ping-pong latency (p50,
/// ns, closed loop) between the first two threads of `placement`.
pub fn cache_line_floor(placement: &Placement, round_trips: u64) -> Result<f64, String> {
    let plan = Plan {
        measured: round_trips,
        interval: None,
        waiting: placement.waiting(),
    };
    let block = ping_pong(System::Floor, plan, placement)?;
    Ok(block.histogram.value_at_quantile(0.5) as f64)
}

/// What a checked consumer has done, written at the end of each batch.
#[derive(Debug)]
struct Sink {
    seen: CachePadded<AtomicU64>,
    sum: AtomicI64,
    target: AtomicU64,
    waiter: Thread,
}

/// A hot thread's allocations after `build()`, where the main thread can
/// read them: each thread counts its own
/// ([`thread_allocations`]), so the main thread's sends and park, and other
/// threads of the process, are not counted.
#[derive(Debug, Clone, Default)]
struct Meter(Arc<CachePadded<(AtomicU64, AtomicU64)>>);

impl Meter {
    /// A consumer: its thread's allocations so far.
    #[inline]
    fn mark(&self) {
        self.0 .0.store(thread_allocations(), Ordering::Relaxed);
    }

    /// A producer, after each sample: its allocations while publishing.
    fn sample_done(&self, allocations: u64) {
        self.0 .0.store(allocations, Ordering::Relaxed);
        self.0 .1.fetch_add(1, Ordering::Release);
    }

    fn allocations(&self) -> u64 {
        self.0 .0.load(Ordering::Relaxed)
    }

    fn samples(&self) -> u64 {
        self.0 .1.load(Ordering::Acquire)
    }
}

/// A checked consumer's running count and sum.
struct Tally {
    sink: Arc<Sink>,
    meter: Meter,
    seen: u64,
    sum: i64,
}

impl Tally {
    #[inline]
    fn add(&mut self, events: u64, value: i64, end_of_batch: bool) {
        self.seen += events;
        self.sum = self.sum.wrapping_add(value);
        if end_of_batch {
            self.flush();
        }
    }

    #[inline]
    fn flush(&mut self) {
        let sink = &*self.sink;
        self.meter.mark();
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
    /// Events claimed per `batch_publish` (1: `publish`) in shapes that do
    /// not batch; the batch shapes always claim [`CHUNK`].
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

/// How long a sample may go without progress before the rig gives up.
const STALL: Duration = Duration::from_secs(30);

/// Waits (parked, woken by the consumers) until `progress()` reaches
/// `target`; panics if it stands still for [`STALL`].
fn wait_for(what: &str, target: u64, progress: impl Fn() -> u64) {
    let (mut last, mut since) = (progress(), Instant::now());
    while last < target {
        thread::park_timeout(Duration::from_millis(1));
        let now = progress();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > STALL {
            panic!("{what}: no progress for {STALL:?}, at {now} of {target}");
        }
    }
}

/// A running shape of one system: its threads wait for [`Rig::run`] to
/// publish a sample, and stop when the rig is dropped.
pub struct Rig {
    commands: Vec<mpsc::Sender<Range<i64>>>,
    producers: Vec<JoinHandle<()>>,
    sinks: Vec<Arc<Sink>>,
    expect: fn(i64) -> i64,
    published: u64,
    expected_sum: i64,
    samples: u64,
    waiting: Waiting,
    /// Every hot thread's allocation meter (producers, stages, consumers).
    meters: Vec<Meter>,
    producer_meters: Vec<Meter>,
    hot_allocations: u64,
    /// Threads of the rig's own (queue peers' consumers, pollers); ring
    /// systems join their handler threads on drop.
    consumers: Vec<JoinHandle<()>>,
}

impl Rig {
    /// Builds `shape` with events `E` for `system` on `placement`, or
    /// `None` where the system cannot express the shape
    /// ([`Shape::supports`]). Must be called on the thread that calls `run`.
    pub fn new<E: ShapeEvent>(
        system: System,
        shape: Shape,
        placement: &Placement,
        tick: TickOptions,
    ) -> Option<Rig> {
        if !shape.supports(system) {
            return None;
        }
        let mut rig = Rig {
            commands: Vec::new(),
            producers: Vec::new(),
            sinks: (0..shape.sinks())
                .map(|_| {
                    Arc::new(Sink {
                        seen: CachePadded::default(),
                        sum: AtomicI64::new(0),
                        target: AtomicU64::new(0),
                        waiter: thread::current(),
                    })
                })
                .collect(),
            expect: shape.expected::<E>(),
            published: 0,
            expected_sum: 0,
            samples: 0,
            waiting: placement.waiting(),
            meters: Vec::new(),
            producer_meters: Vec::new(),
            hot_allocations: 0,
            consumers: Vec::new(),
        };
        match system {
            System::Tickring => with_tickring_wait!(placement.waiting(), |wait| rig
                .tickring::<E, _>(shape, placement, wait(), tick)),
            System::Disruptor => with_disruptor_wait!(placement.waiting(), |wait| rig
                .disruptor::<E, _>(shape, placement, wait)),
            System::Floor => rig.links::<Floor, E>(shape, placement),
            System::Crossbeam => rig.links::<Crossbeam, E>(shape, placement),
            System::Rtrb => rig.links::<Rtrb, E>(shape, placement),
        }
        Some(rig)
    }

    /// Publishes `events` (split between the producers), waits until every
    /// checked consumer has them, and returns how long that took. Panics if
    /// a consumer's sum is wrong (a fast wrong answer is no answer), or if
    /// the sample stops making progress.
    pub fn run(&mut self, events: u64) -> Duration {
        let producers = self.commands.len() as u64;
        let target = self.published + events;
        for sink in &self.sinks {
            sink.target.store(target, Ordering::Relaxed);
        }
        let allocations = self.metered();
        let start = Instant::now();
        let mut next = self.published as i64;
        for (index, command) in self.commands.iter().enumerate() {
            let share = events / producers + u64::from((index as u64) < events % producers);
            command
                .send(next..next + share as i64)
                .expect("the producer runs");
            next += share as i64;
        }
        for sink in &self.sinks {
            wait_for("a checked consumer", target, || {
                sink.seen.load(Ordering::Acquire)
            });
        }
        let elapsed = start.elapsed();
        self.samples += 1;
        for meter in &self.producer_meters {
            wait_for("a producer", self.samples, || meter.samples());
        }
        self.hot_allocations = self.metered() - allocations;
        let (expect, first) = (self.expect, self.published as i64);
        self.expected_sum = (first..next).fold(self.expected_sum, |sum, value| {
            sum.wrapping_add(expect(value))
        });
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

    /// Allocations on the rig's hot threads (producers while publishing,
    /// stages and consumers throughout) during the last [`Rig::run`]'s
    /// sample; 0 unless [`Counting`](crate::alloc::Counting) is the global
    /// allocator.
    pub fn hot_allocations(&self) -> u64 {
        self.hot_allocations
    }

    fn metered(&self) -> u64 {
        self.meters.iter().map(Meter::allocations).sum()
    }

    fn meter(&mut self) -> Meter {
        let meter = Meter::default();
        self.meters.push(meter.clone());
        meter
    }

    fn tally(&mut self, sink: usize) -> Tally {
        Tally {
            sink: Arc::clone(&self.sinks[sink]),
            meter: self.meter(),
            seen: 0,
            sum: 0,
        }
    }

    /// A ring system's checked consumer: tallies `read(event)`.
    fn summing<E: ShapeEvent>(
        &mut self,
        sink: usize,
        read: impl Fn(&E) -> i64 + Send + 'static,
    ) -> impl FnMut(&E, i64, bool) + Send + 'static {
        let mut tally = self.tally(sink);
        move |event, _sequence, end_of_batch| tally.add(1, read(event), end_of_batch)
    }

    /// A ring system's writing stage: applies `step` to each event.
    fn stage<E: ShapeEvent>(
        &mut self,
        step: impl Fn(&E) + Send + 'static,
    ) -> impl FnMut(&E, i64, bool) + Send + 'static {
        let meter = self.meter();
        move |event, _sequence, end_of_batch| {
            step(event);
            if end_of_batch {
                meter.mark();
            }
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
        let meter = self.meter();
        self.producer_meters.push(meter.clone());
        self.commands.push(command);
        self.producers.push(spawn_on(
            &format!("producer-{index}"),
            placement.core(index),
            move || {
                let mut allocations = 0;
                for range in commands {
                    let before = thread_allocations();
                    publish(range);
                    allocations += thread_allocations() - before;
                    meter.sample_done(allocations);
                }
            },
        ));
    }

    /// Starts the consumer thread of a poller shape: `poll()` is one poll
    /// call (`Some(true)`: it took events; `None`: there were none;
    /// `Some(false)`: the ring shut down), repeated, waiting as the
    /// placement says between empty polls.
    fn polling(
        &mut self,
        core: Option<usize>,
        mut poll: impl FnMut() -> Option<bool> + Send + 'static,
    ) {
        let waiting = self.waiting;
        self.consumers.push(spawn_on(
            "c0",
            core,
            move || while waiting.until(&mut poll) {},
        ));
    }

    fn tickring<E: ShapeEvent, W: WaitStrategy>(
        &mut self,
        shape: Shape,
        placement: &Placement,
        wait: W,
        tick: TickOptions,
    ) {
        let full_ring = tick
            .full_ring
            .unwrap_or(peers::full_ring_wait(self.waiting));
        let batch = match shape.batch() {
            1 => tick.batch.max(1),
            batch => batch,
        };
        if shape.producers() > 1 {
            let builder =
                build_multi_producer(shape.ring(), E::default, wait).producer_wait(full_ring);
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
                build_single_producer(shape.ring(), E::default, wait).producer_wait(full_ring);
            let mut producer = self
                .tickring_consumers(builder, shape, placement)
                .build()
                .expect("a valid pipeline");
            self.producer(placement, 0, move |range| {
                publish_range(&mut producer, range, batch)
            });
        }
    }

    fn tickring_consumers<E: ShapeEvent, W: WaitStrategy, K>(
        &mut self,
        builder: Builder<E, W, K, builder_state::NeedsParticipant>,
        shape: Shape,
        placement: &Placement,
    ) -> Builder<E, W, K, builder_state::Ready> {
        let consumer = consumer_cores(shape, placement);
        match shape {
            Shape::Unicast | Shape::UnicastBatch | Shape::Sequencer | Shape::SequencerBatch => {
                tickring_options(builder, "c0", consumer(0))
                    .handle_events_with(self.summing(0, E::checksum))
            }
            Shape::UnicastPoller => {
                // Every available event per poll: no cap below the ring's.
                let (mut poller, builder) = builder
                    .thread_name("c0")
                    .max_batch_size(shape.ring())
                    .event_poller();
                let mut tally = self.tally(0);
                self.polling(consumer(0), move || {
                    let take = |event: &E, _, end_of_batch| {
                        tally.add(1, event.checksum(), end_of_batch);
                        true
                    };
                    match poller.poll(take) {
                        PollState::Processing => Some(true),
                        PollState::ShutDown | PollState::Halted => Some(false),
                        _ => None,
                    }
                });
                builder
            }
            Shape::Multicast => {
                let builder = tickring_options(builder, "c0", consumer(0))
                    .handle_events_with(self.summing(0, E::checksum));
                let builder = tickring_options(builder, "c1", consumer(1))
                    .handle_events_with(self.summing(1, E::checksum));
                tickring_options(builder, "c2", consumer(2))
                    .handle_events_with(self.summing(2, E::checksum))
            }
            Shape::Pipeline => {
                let builder = tickring_options(builder, "c0", consumer(0))
                    .handle_events_with(self.stage(E::stage_one))
                    .and_then();
                let builder = tickring_options(builder, "c1", consumer(1))
                    .handle_events_with(self.stage(E::stage_two))
                    .and_then();
                tickring_options(builder, "c2", consumer(2))
                    .handle_events_with(self.summing(0, E::piped))
            }
            Shape::Diamond => {
                // H1 and H2 in one stage (siblings), H3 after both.
                let builder = tickring_options(builder, "c0", consumer(0))
                    .handle_events_with(self.stage(E::fizz));
                let builder = tickring_options(builder, "c1", consumer(1))
                    .handle_events_with(self.stage(E::buzz))
                    .and_then();
                tickring_options(builder, "c2", consumer(2))
                    .handle_events_with(self.summing(0, E::fizz_buzz))
            }
        }
    }

    fn disruptor<E: ShapeEvent, W: disruptor::wait_strategies::WaitStrategy + 'static>(
        &mut self,
        shape: Shape,
        placement: &Placement,
        wait: W,
    ) {
        let consumer = consumer_cores(shape, placement);
        let ring = || disruptor::build_single_producer(shape.ring(), E::default, wait);
        let producer = match shape {
            Shape::Unicast | Shape::UnicastBatch => disruptor_options(ring(), "c0", consumer(0))
                .handle_events_with(self.summing(0, E::checksum))
                .build(),
            Shape::UnicastPoller => {
                let (mut poller, builder) = ring().new_event_poller();
                let mut tally = self.tally(0);
                self.polling(consumer(0), move || match poller.take(u64::MAX) {
                    Ok(mut events) => {
                        for event in &mut events {
                            tally.add(1, event.checksum(), false);
                        }
                        tally.flush();
                        Some(true)
                    }
                    Err(disruptor::Polling::NoEvents) => None,
                    Err(disruptor::Polling::Shutdown) => Some(false),
                });
                builder.build()
            }
            Shape::Multicast => {
                let builder = disruptor_options(ring(), "c0", consumer(0))
                    .handle_events_with(self.summing(0, E::checksum));
                let builder = disruptor_options(builder, "c1", consumer(1))
                    .handle_events_with(self.summing(1, E::checksum));
                let producer = disruptor_options(builder, "c2", consumer(2))
                    .handle_events_with(self.summing(2, E::checksum))
                    .build();
                return self.disruptor_producer(placement, 0, producer, shape.batch());
            }
            Shape::Pipeline => {
                let builder = disruptor_options(ring(), "c0", consumer(0))
                    .handle_events_with(self.stage(E::stage_one))
                    .and_then();
                let builder = disruptor_options(builder, "c1", consumer(1))
                    .handle_events_with(self.stage(E::stage_two))
                    .and_then();
                disruptor_options(builder, "c2", consumer(2))
                    .handle_events_with(self.summing(0, E::piped))
                    .build()
            }
            Shape::Diamond => {
                let builder = disruptor_options(ring(), "c0", consumer(0))
                    .handle_events_with(self.stage(E::fizz));
                let builder = disruptor_options(builder, "c1", consumer(1))
                    .handle_events_with(self.stage(E::buzz))
                    .and_then();
                disruptor_options(builder, "c2", consumer(2))
                    .handle_events_with(self.summing(0, E::fizz_buzz))
                    .build()
            }
            Shape::Sequencer | Shape::SequencerBatch => {
                let builder = disruptor::build_multi_producer(shape.ring(), E::default, wait);
                let producer = disruptor_options(builder, "c0", consumer(0))
                    .handle_events_with(self.summing(0, E::checksum))
                    .build();
                for index in 0..shape.producers() {
                    self.disruptor_producer(placement, index, producer.clone(), shape.batch());
                }
                return;
            }
        };
        self.disruptor_producer(placement, 0, producer, shape.batch());
    }

    /// Starts a producer thread publishing through the `disruptor` crate's
    /// `publish`, or its `batch_publish(batch)`.
    fn disruptor_producer<E: ShapeEvent, P: disruptor::Producer<E> + Send + 'static>(
        &mut self,
        placement: &Placement,
        index: usize,
        mut producer: P,
        batch: usize,
    ) {
        self.producer(placement, index, move |range| {
            if batch == 1 {
                range.for_each(|value| producer.publish(|event| event.fill(value)));
                return;
            }
            for chunk in chunks(range, batch) {
                let mut values = chunk.clone();
                producer.batch_publish(span(&chunk), |events| {
                    events
                        .zip(&mut values)
                        .for_each(|(event, value)| event.fill(value))
                });
            }
        });
    }

    /// A queue peer's shape: one message per event, except that in the
    /// batch shapes a channel (which cannot claim ten slots) sends one
    /// [`Chunk`] of ten events per message, and any other queue sends ten
    /// at a time through [`Tx::send_chunk`] (rtrb: `write_chunk_uninit`).
    fn links<L: Link, E: ShapeEvent>(&mut self, shape: Shape, placement: &Placement) {
        let ring = shape.ring();
        if shape.batch() == 1 {
            self.queues::<L, E::Message>(shape, placement, ring, |tx, range, waiting| {
                range.for_each(|value| send(tx, E::message(value), waiting))
            })
        } else if L::SYSTEM == System::Crossbeam {
            // A slot per ten events: as many events in flight as the ring.
            self.queues::<L, Chunk<E::Message>>(
                shape,
                placement,
                ring / CHUNK,
                |tx, range, waiting| {
                    for chunk in chunks(range, CHUNK) {
                        let mut items = [E::Message::default(); CHUNK];
                        let len = messages::<E>(chunk, &mut items) as u8;
                        send(tx, Chunk { items, len }, waiting);
                    }
                },
            )
        } else {
            self.queues::<L, E::Message>(shape, placement, ring, |tx, range, waiting| {
                let mut items = [E::Message::default(); CHUNK];
                for chunk in chunks(range, CHUNK) {
                    let count = messages::<E>(chunk, &mut items);
                    tx.send_chunk(&items[..count], waiting);
                }
            })
        }
    }

    /// A queue peer's threads: `publish(tx, range, waiting)` sends a range's
    /// events as messages `T`, on queues of `capacity` messages.
    fn queues<L: Link, T: Words>(
        &mut self,
        shape: Shape,
        placement: &Placement,
        capacity: usize,
        publish: impl Fn(&mut L::Tx<T>, Range<i64>, Waiting) + Copy + Send + 'static,
    ) {
        let (consumer, waiting) = (consumer_cores(shape, placement), self.waiting);
        let (tx, rx) = L::pair::<T>(capacity);
        let mut txs = vec![tx];
        match shape {
            Shape::Multicast => {
                self.drain(rx, 0, consumer(0));
                for index in 1..3 {
                    let (tx, rx) = L::pair::<T>(capacity);
                    txs.push(tx);
                    self.drain(rx, index, consumer(index));
                }
                self.producer(placement, 0, move |range| {
                    for value in range {
                        txs.iter_mut()
                            .for_each(|tx| publish(tx, value..value + 1, waiting));
                    }
                });
                return;
            }
            Shape::Pipeline => {
                let mut input = rx;
                for stage in 0..2 {
                    let (mut tx, next) = L::pair::<T>(capacity);
                    let mut rx = std::mem::replace(&mut input, next);
                    let meter = self.meter();
                    let relayed = spawn_on(&format!("c{stage}"), consumer(stage), move || {
                        relay(&mut rx, &mut tx, waiting, Words::step);
                        meter.mark();
                    });
                    self.consumers.push(relayed);
                }
                self.drain(input, 0, consumer(2));
            }
            _ => {
                for _ in 1..shape.producers() {
                    txs.push(L::share(&txs[0]).expect("the shape supports the queue"));
                }
                self.drain(rx, 0, consumer(0));
            }
        }
        for (index, mut tx) in txs.into_iter().enumerate() {
            self.producer(placement, index, move |range| {
                publish(&mut tx, range, waiting)
            });
        }
    }

    /// A queue peer's checked consumer: reports when it finds the queue empty.
    fn drain<T: Words>(&mut self, mut rx: impl Rx<T>, sink: usize, core: Option<usize>) {
        let (mut tally, waiting) = (self.tally(sink), self.waiting);
        self.consumers
            .push(spawn_on(&format!("c{sink}"), core, move || loop {
                match rx.try_recv() {
                    Recv::Item(message) => tally.add(message.events(), message.checksum(), false),
                    Recv::Closed => return,
                    Recv::Empty => {
                        tally.flush();
                        match recv(&mut rx, waiting) {
                            Some(message) => tally.add(message.events(), message.checksum(), false),
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

/// `range` in consecutive pieces of `batch` (the last may be shorter).
fn chunks(range: Range<i64>, batch: usize) -> impl Iterator<Item = Range<i64>> {
    let end = range.end;
    range
        .step_by(batch)
        .map(move |start| start..end.min(start + batch as i64))
}

/// Writes the messages of `chunk`'s events into `items`; returns how many.
fn messages<E: ShapeEvent>(chunk: Range<i64>, items: &mut [E::Message; CHUNK]) -> usize {
    let count = span(&chunk);
    for (item, value) in items.iter_mut().zip(chunk) {
        *item = E::message(value);
    }
    count
}

/// How many values `range` holds.
fn span(range: &Range<i64>) -> usize {
    (range.end - range.start) as usize
}

/// Publishes `range` through either kind of tickring producer, `batch`
/// events per claim.
fn publish_range<E: ShapeEvent>(
    producer: &mut impl EventProducer<E>,
    range: Range<i64>,
    batch: usize,
) {
    if batch == 1 {
        for value in range {
            producer
                .publish(|event| event.fill(value))
                .expect("the pipeline runs");
        }
        return;
    }
    for chunk in chunks(range, batch) {
        let mut values = chunk.clone();
        let fill = |event: &mut E, _| event.fill(values.next().expect("one value per slot"));
        producer
            .batch_publish(span(&chunk), fill)
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
    use crate::events::{Event56, Event64, Event8};

    /// Threads that wait politely, so the tests run on any machine.
    fn polite(threads: usize) -> Placement {
        Placement::exclusive(threads).with_waiting(Waiting::Yield)
    }

    /// Runs `run` on its own thread and fails the test if it has not
    /// finished within a minute: a lost message fails, never hangs CI.
    fn within_a_minute<T: Send + 'static>(
        what: &str,
        run: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(run());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{what}: not finished within a minute (or it panicked)"))
    }

    /// Every shape, every system that can express it, events `E`: two
    /// samples check the running sums, and tickring's hot threads allocate
    /// nothing in the second.
    fn every_rig<E: ShapeEvent>() {
        let batch10 = TickOptions {
            batch: 10,
            ..TickOptions::default()
        };
        for shape in Shape::ALL {
            for system in System::ALL {
                for options in [TickOptions::default(), batch10] {
                    if options.batch > 1 && (system != System::Tickring || shape.batch() > 1) {
                        continue;
                    }
                    let Some(mut rig) =
                        Rig::new::<E>(system, shape, &polite(shape.threads()), options)
                    else {
                        continue;
                    };
                    // `run` panics on a wrong sum.
                    rig.run(5_003);
                    rig.run(2_000);
                    if system == System::Tickring {
                        assert_eq!(
                            rig.hot_allocations(),
                            0,
                            "tickring allocated in {}/{}",
                            shape.name(),
                            E::SIZE
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_rig_delivers_every_event_once() {
        every_rig::<Event8>();
        every_rig::<Event>();
        every_rig::<Event64>();
        every_rig::<Event56>();
    }

    #[test]
    fn wide_pings_travel_whole_and_are_checked() {
        assert_eq!(<[i64; 7]>::ping(5).k(), 5);
        let mut torn = <[i64; 8]>::ping(5);
        torn[7] = 4;
        assert_eq!(torn.k(), -1, "a torn echo must not pass as ping 5");
        let plan = Plan {
            measured: 1_000,
            interval: None,
            waiting: Waiting::Yield,
        };
        for system in [System::Tickring, System::Disruptor, System::Floor] {
            for block in [
                within_a_minute("56-byte ping-pong", move || {
                    ping_pong_of::<[i64; 7]>(system, plan, &polite(2))
                }),
                within_a_minute("64-byte ping-pong", move || {
                    ping_pong_of::<[i64; 8]>(system, plan, &polite(2))
                }),
            ] {
                let block = block.expect("ping-pong runs");
                assert_eq!((block.wrong, block.histogram.len()), (0, 1_000));
            }
        }
    }

    #[test]
    fn shapes_run_where_they_are_supported() {
        assert!(Shape::Diamond.supports(System::Disruptor));
        assert!(!Shape::Diamond.supports(System::Crossbeam));
        assert!(!Shape::SequencerBatch.supports(System::Rtrb));
        assert!(Shape::UnicastBatch.supports(System::Rtrb));
        let chunked: Vec<_> = chunks(0..23, 10).collect();
        assert_eq!(chunked, [0..10, 10..20, 20..23]);
    }

    #[test]
    fn latency_blocks_see_every_message_in_order() {
        let plan = Plan {
            measured: 1_000,
            interval: None,
            waiting: Waiting::Yield,
        };
        for system in System::ALL {
            let ping_pong =
                within_a_minute("ping-pong", move || ping_pong(system, plan, &polite(2)))
                    .expect("ping-pong runs");
            let pipeline = within_a_minute("pipeline", move || pipeline(system, plan, &polite(4)))
                .expect("pipeline runs");
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
