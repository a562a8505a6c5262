//! Latency of tickring beside its peers, on pinned threads, recorded in
//! HdrHistograms from each message's *intended* send time (so a stall is
//! charged to every message it delayed: coordinated omission corrected).
//!
//! ```text
//! cargo run --release --example latency              # full run, under 3 minutes on 2 cores
//! cargo run --release --example latency -- --quick   # smoke run (CI), a few seconds
//! cargo run --release --example latency -- --help
//! ```
//!
//! Scenarios:
//!
//! 1. **Ping-pong** (LMAX's ping-pong latency test): two rings of 1,024
//!    slots, a pinger on one core and a ponger on another, both
//!    busy-spinning. The pinger sends ping `k` at its intended time
//!    `start + k * --ping-interval-ns` (or at once, with 0), the ponger
//!    echoes it, and the pinger records `(echo arrival - intended send) / 2`:
//!    one way. Systems: the cache-line floor (two threads bouncing one
//!    padded `AtomicU64`, in the same harness: no ring can hop faster),
//!    tickring, the `disruptor` crate, `crossbeam-channel` and `rtrb`.
//!    tickring and the `disruptor` crate run as their users would: the
//!    ponger is the ping ring's handler and owns the pong ring's producer;
//!    the pinger is the pong ring's handler and owns the ping ring's producer
//!    (handed over once). The channel peers have no handler threads: their
//!    pinger and ponger are plain threads polling `try_recv` / `pop`.
//! 2. **Paced pipeline** (the 2011 paper's latency table): producer → S1 →
//!    S2 → S3, ring (or channels) of 8,192; the producer stamps each event
//!    with its intended send time `start + k * --interval-ns`, S1 and S2
//!    write a field each, S3 checks the event and records `now - intended`.
//!    Systems: tickring (S1, S2 are `handle_events_mut` stages), the
//!    `disruptor` crate (S1, S2 write `Relaxed` atomics: its handlers get
//!    `&E`), `crossbeam-channel` (a chain of channels, a thread per stage).
//!    With four cores or more, each thread has a core and every wait
//!    busy-spins. With two or three, the producer and S1 share the first
//!    core and S2 and S3 the second, and every wait of every system (the
//!    producer's wait for its send time included) spins 100 polls and then
//!    yields: what the table then shows is mostly the scheduler, for every
//!    system alike.
//!
//! Every measurement is a *block*: a fresh pipeline, a warm-up (a tenth of
//! the block, at least 1,000 messages), then the measured messages. Blocks
//! run in rounds: each round runs every system once, in an order that
//! rotates from round to round, so drift of the shared, virtualized machine
//! hits every system alike. The tables show, per system, the median over
//! rounds of each round's percentile, the largest value of any round
//! (`max`), the rate the messages went through, and *paired* ratios: in
//! each round, the system's value divided by tickring's (or by the floor's)
//! in that same round, then the median of those ratios. `spread` is (max -
//! min) / median of the rounds' p50. Never a best run.
//!
//! Each scenario also writes, under `target/tickring-latency/` (in
//! `$CARGO_TARGET_DIR` when that is set; or `--out`),
//! one `.hgrm` file per system (the HdrHistogram percentile-distribution
//! text, values in microseconds, all rounds merged) and an SVG plot of all
//! systems: latency (log scale) against percentile on the usual
//! `1/(1-p)` log axis.
//!
//! A counting global allocator counts every allocation in the process; the
//! tables print how many happened during the measured phases (from the
//! first measured send to the last measured receive). tickring's must be 0:
//! the run exits with status 1 otherwise, and when any system received a
//! wrong or out-of-order message.
//!
//! Progress goes to stderr between blocks, never during one; the tables go
//! to stdout.

#![warn(clippy::undocumented_unsafe_blocks)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::hint::spin_loop;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use disruptor::{ProcessorSettings, Producer as _};
use hdrhistogram::Histogram;
use tickring::{
    available_cores, build_single_producer, pin_current_thread, BusySpin, EventHandler,
    FullRingWait, WaitStrategy, Yielding,
};

// ---------------------------------------------------------------------------
// Counting allocations
// ---------------------------------------------------------------------------

/// Wraps the system allocator and counts allocations from every thread.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees hold; the counter is lock-free and allocates nothing.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const USAGE: &str = "\
latency: pinned ping-pong and a paced 3-stage pipeline, tickring beside the disruptor crate,
crossbeam-channel and rtrb; coordinated-omission-corrected percentiles, .hgrm files and SVG plots

USAGE: cargo run --release --example latency -- [OPTIONS]

OPTIONS:
  --quick                 smoke run for CI, a few seconds: 2 rounds, 20,000 round trips and
                          5,000 pipeline events per block (other flags still apply)
  --rounds N              rounds; each runs every system once, order rotating (default 5)
  --round-trips N         measured ping-pong round trips per block (default 500,000)
  --ping-interval-ns N    intended time between two pings, in ns (default 1,000, as LMAX;
                          0 sends each ping as soon as the last echo is back)
  --events N              measured pipeline events per block (default 100,000)
  --interval-ns N         intended time between two pipeline events, in ns (default 20,000
                          with fewer than 4 cores, where every stage yields; 1,000 with 4 or
                          more, where every stage busy-spins; 0 = as fast as they go)
  --only A,B              run only the scenarios (ping-pong, pipeline) and systems (floor,
                          tickring, disruptor, crossbeam, rtrb) whose names contain A or B;
                          e.g. --only ping-pong or --only tickring,disruptor
  --out DIR               where to write the .hgrm files and SVG plots (default:
                          $CARGO_TARGET_DIR/tickring-latency if set, else target/tickring-latency)
  -h, --help              this text

Warm-up: each block first sends a tenth of its measured count (at least 1,000) unrecorded.";

#[derive(Debug, Clone)]
struct Config {
    rounds: usize,
    round_trips: u64,
    /// `None`: back to back.
    ping_interval_ns: Option<u64>,
    events: u64,
    /// `None`: the default for the layout (see USAGE).
    interval_ns: Option<u64>,
    only: Option<Vec<String>>,
    out: PathBuf,
}

impl Config {
    /// Whether `system` of `scenario` runs: `--only` may name scenarios,
    /// systems, or both.
    fn runs_system(&self, scenario: &str, system: &str) -> bool {
        let Some(parts) = &self.only else {
            return true;
        };
        let named = |names: &[&str]| {
            parts
                .iter()
                .any(|part| names.iter().any(|name| name.contains(part.as_str())))
        };
        (!named(&SCENARIOS) || named(&[scenario])) && (!named(&ALL_SYSTEMS) || named(&[system]))
    }
}

const SCENARIOS: [&str; 2] = ["ping-pong", "pipeline"];

const ALL_SYSTEMS: [&str; 5] = [
    "cache-line floor",
    "tickring",
    "disruptor",
    "crossbeam-channel",
    "rtrb",
];

fn default_out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("tickring-latency")
}

fn parse_args() -> Result<Config, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|arg| arg == "--quick");
    let mut config = Config {
        rounds: if quick { 2 } else { 5 },
        round_trips: if quick { 20_000 } else { 500_000 },
        ping_interval_ns: Some(1_000),
        events: if quick { 5_000 } else { 100_000 },
        interval_ns: None,
        only: None,
        out: default_out_dir(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args
                .next()
                .ok_or_else(|| format!("{name} needs a number"))?;
            value
                .replace(['_', ','], "")
                .parse()
                .map_err(|_| format!("{name}: '{value}' is not a number"))
        };
        let at_least_one = |name: &str, value: u64| {
            if value == 0 {
                Err(format!("{name} must be at least 1"))
            } else {
                Ok(value)
            }
        };
        match arg.as_str() {
            "--quick" => {}
            "--rounds" => config.rounds = at_least_one("--rounds", number("--rounds")?)? as usize,
            "--round-trips" => {
                config.round_trips = at_least_one("--round-trips", number("--round-trips")?)?
            }
            "--ping-interval-ns" => {
                let interval = number("--ping-interval-ns")?;
                config.ping_interval_ns = (interval > 0).then_some(interval);
            }
            "--events" => config.events = at_least_one("--events", number("--events")?)?,
            "--interval-ns" => config.interval_ns = Some(number("--interval-ns")?),
            "--only" => {
                let list = args.next().ok_or("--only needs a list of names")?;
                config.only = Some(list.split(',').map(str::to_string).collect());
            }
            "--out" => {
                config.out = PathBuf::from(args.next().ok_or("--out needs a directory")?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(config)
}

/// Unrecorded messages at the start of a block.
fn warmup_for(measured: u64) -> u64 {
    (measured / 10).max(1_000)
}

// ---------------------------------------------------------------------------
// Threads, cores and waiting
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// `spin_loop` between polls: threads with a core each.
    Spin,
    /// 100 polls with `spin_loop`, then `yield_now` (tickring's `Yielding`).
    Yield,
}

const SPINS_BEFORE_YIELD: u32 = 100;

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
}

/// tickring's `Yielding` policy for the `disruptor` crate, which ships only
/// busy-spin and sleep strategies: its consumers call `wait_for(sequence)`
/// once per failed poll, so a per-thread count of polls for one sequence
/// gives "spin 100, then yield".
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

/// Starts `body` on a named thread, pinned to `core` if given.
///
/// The main thread itself is never pinned: tickring's `build()` and the
/// `disruptor` crate's `pin_at_core` check cores against the *calling*
/// thread, and unpinned threads would inherit a pinned main's one core.
fn spawn_on<T: Send + 'static>(
    name: &str,
    core: Option<usize>,
    body: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Some(core) = core {
                if !pin_current_thread(core) {
                    eprintln!("[latency] warning: could not pin '{}' to core {core}", {
                        thread::current().name().unwrap_or("?").to_string()
                    });
                }
            }
            body()
        })
        .expect("spawn a thread")
}

fn tick_pin<E, W, K>(
    builder: tickring::Builder<E, W, K>,
    core: Option<usize>,
) -> tickring::Builder<E, W, K>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
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

/// Where the threads of each scenario run, and how they wait.
#[derive(Debug, Clone)]
struct Placement {
    /// Pinger, ponger.
    ping_pong: [Option<usize>; 2],
    ping_pong_waiting: Waiting,
    /// Producer, S1, S2, S3.
    pipeline: [Option<usize>; 4],
    pipeline_waiting: Waiting,
    description_ping_pong: String,
    description_pipeline: String,
}

fn pick_placement() -> Placement {
    let cores = available_cores();
    let (ping_pong, ping_pong_waiting, description_ping_pong) = if cores.len() >= 2 {
        (
            [Some(cores[0]), Some(cores[1])],
            Waiting::Spin,
            format!(
                "pinger on core {}, ponger on core {}, every wait busy-spins",
                cores[0], cores[1]
            ),
        )
    } else {
        (
            [None, None],
            Waiting::Yield,
            format!(
                "WARNING: fewer than 2 cores ({cores:?}): nothing pinned, every wait yields; \
                 these numbers measure the scheduler"
            ),
        )
    };
    let (pipeline, pipeline_waiting, description_pipeline) = if cores.len() >= 4 {
        (
            [
                Some(cores[0]),
                Some(cores[1]),
                Some(cores[2]),
                Some(cores[3]),
            ],
            Waiting::Spin,
            format!(
                "producer, S1, S2, S3 on cores {:?}, every wait busy-spins",
                &cores[..4]
            ),
        )
    } else if cores.len() >= 2 {
        (
            [
                Some(cores[0]),
                Some(cores[0]),
                Some(cores[1]),
                Some(cores[1]),
            ],
            Waiting::Yield,
            format!(
                "4 threads on {} cores: producer and S1 on core {}, S2 and S3 on core {}; every \
                 wait (the producer's pacing too) spins 100 polls then yields",
                cores.len(),
                cores[0],
                cores[1]
            ),
        )
    } else {
        (
            [None; 4],
            Waiting::Yield,
            format!("WARNING: fewer than 2 cores ({cores:?}): nothing pinned, every wait yields"),
        )
    };
    Placement {
        ping_pong,
        ping_pong_waiting,
        pipeline,
        pipeline_waiting,
        description_ping_pong,
        description_pipeline,
    }
}

// ---------------------------------------------------------------------------
// Histograms and blocks
// ---------------------------------------------------------------------------

/// 1 ns to 10 s at 4 significant digits (LMAX's settings), every page of the
/// counts written once so that recording never page-faults.
fn new_histogram() -> Histogram<u64> {
    let mut histogram =
        Histogram::new_with_bounds(1, 10_000_000_000, 4).expect("valid histogram bounds");
    histogram.reset();
    histogram
}

/// What one block measured.
#[derive(Debug)]
struct Block {
    histogram: Histogram<u64>,
    measured: u64,
    /// From the first measured message's intended send time to the last
    /// measured receive.
    elapsed: Duration,
    allocations: u64,
    /// Messages that arrived wrong or out of order (must be 0).
    wrong: u64,
}

// ---------------------------------------------------------------------------
// 1. Ping-pong
// ---------------------------------------------------------------------------

const PING_PONG_RING: usize = 1_024;

/// The ping that sends the ponger home (handler-style systems).
const STOP: i64 = -1;

/// The pinger's side of a block: when each ping is due, and what each round
/// trip measured. Shared by every system's pinger.
struct PingClock {
    interval_ns: Option<u64>,
    warmup: u64,
    total: u64,
    waiting: Waiting,
    /// The index (and value) of the ping in flight.
    in_flight: u64,
    /// When the ping in flight was meant to be sent.
    intended: Instant,
    /// The schedule: ping `anchor_index` is due at `anchor`.
    anchor: Instant,
    anchor_index: u64,
    histogram: Option<Histogram<u64>>,
    allocations_before: u64,
    wrong: u64,
}

impl PingClock {
    fn new(config: &Config, waiting: Waiting) -> Self {
        let now = Instant::now();
        let measured = config.round_trips;
        let warmup = warmup_for(measured);
        Self {
            interval_ns: config.ping_interval_ns,
            warmup,
            total: warmup + measured,
            waiting,
            in_flight: 0,
            intended: now,
            anchor: now,
            anchor_index: 0,
            histogram: Some(new_histogram()),
            allocations_before: 0,
            wrong: 0,
        }
    }

    /// Waits until the next ping is due; returns its value.
    #[inline]
    fn next_ping(&mut self) -> i64 {
        let ping = self.in_flight;
        if ping == self.warmup {
            // The measured phase starts: a fresh schedule, and the count of
            // allocations so far.
            self.anchor = Instant::now();
            self.anchor_index = ping;
            self.allocations_before = allocations();
        }
        self.intended = match self.interval_ns {
            None => Instant::now(),
            Some(interval) => {
                let due = self.anchor + Duration::from_nanos(interval * (ping - self.anchor_index));
                let mut backoff = Backoff::new(self.waiting);
                while Instant::now() < due {
                    backoff.snooze();
                }
                due
            }
        };
        ping as i64
    }

    /// The echo of the ping in flight is back; after the last one, returns
    /// the block.
    #[inline]
    fn echoed(&mut self, echo: i64) -> Option<Block> {
        let now = Instant::now();
        if echo != self.in_flight as i64 {
            self.wrong += 1;
        }
        if self.in_flight >= self.warmup {
            let round_trip = now.saturating_duration_since(self.intended).as_nanos() as u64;
            if let Some(histogram) = self.histogram.as_mut() {
                histogram.saturating_record(round_trip.div_ceil(2));
            }
        }
        self.in_flight += 1;
        (self.in_flight == self.total).then(|| self.finish(now))
    }

    #[cold]
    fn finish(&mut self, now: Instant) -> Block {
        let allocations = allocations() - self.allocations_before;
        Block {
            histogram: self.histogram.take().expect("one block per clock"),
            measured: self.total - self.warmup,
            elapsed: now.saturating_duration_since(self.anchor),
            allocations,
            wrong: self.wrong,
        }
    }
}

/// The floor: one padded line, written `2k + 1` by the pinger and `2k + 2`
/// by the ponger.
fn floor_block(config: &Config, layout: &Placement) -> Result<Block, String> {
    let line = Arc::new(CachePadded::new(AtomicU64::new(0)));
    let waiting = layout.ping_pong_waiting;
    let mut clock = PingClock::new(config, waiting);
    let total = clock.total;
    let ponger = {
        let line = Arc::clone(&line);
        spawn_on("floor-ponger", layout.ping_pong[1], move || {
            let mut backoff = Backoff::new(waiting);
            for round in 0..total {
                let ping = 2 * round + 1;
                while line.load(Ordering::Acquire) != ping {
                    backoff.snooze();
                }
                line.store(ping + 1, Ordering::Release);
            }
        })
    };
    let pinger = spawn_on("floor-pinger", layout.ping_pong[0], move || loop {
        let value = clock.next_ping() as u64;
        line.store(2 * value + 1, Ordering::Release);
        let mut backoff = Backoff::new(waiting);
        while line.load(Ordering::Acquire) != 2 * value + 2 {
            backoff.snooze();
        }
        if let Some(block) = clock.echoed(value as i64) {
            return block;
        }
    });
    let block = pinger.join().map_err(|_| "the floor's pinger panicked")?;
    ponger.join().map_err(|_| "the floor's ponger panicked")?;
    Ok(block)
}

/// A message of the ping-pong rings.
#[derive(Debug, Default, Clone, Copy)]
struct Message {
    value: i64,
}

type TickProducer<W> = tickring::Producer<Message, W>;

/// tickring: the pong ring's handler. Times each echo and sends the next ping.
struct TickPinger<W: WaitStrategy> {
    clock: PingClock,
    ping: Option<TickProducer<W>>,
    /// The ping producer arrives here once, after main's first ping.
    handoff: mpsc::Receiver<TickProducer<W>>,
    finished: mpsc::Sender<(Block, TickProducer<W>)>,
}

impl<W: WaitStrategy> EventHandler<Message> for TickPinger<W> {
    fn on_event(&mut self, echo: &Message, _sequence: i64, _end_of_batch: bool) {
        // Checked (and recorded) first, before anything else costs time.
        let block = self.clock.echoed(echo.value);
        let handoff = &self.handoff;
        let ping = self
            .ping
            .get_or_insert_with(|| handoff.recv().expect("main hands over the ping producer"));
        match block {
            None => {
                let value = self.clock.next_ping();
                ping.publish(|message| message.value = value)
                    .expect("ping pipeline running");
            }
            Some(block) => {
                ping.publish(|message| message.value = STOP)
                    .expect("ping pipeline running");
                let ping = self.ping.take().expect("ping producer");
                let _ = self.finished.send((block, ping));
            }
        }
    }
}

/// tickring: the ping ring's handler. Echoes each ping on the pong ring.
struct TickPonger<W: WaitStrategy> {
    pong: Option<TickProducer<W>>,
    back: mpsc::Sender<TickProducer<W>>,
}

impl<W: WaitStrategy> EventHandler<Message> for TickPonger<W> {
    fn on_event(&mut self, ping: &Message, _sequence: i64, _end_of_batch: bool) {
        if ping.value == STOP {
            if let Some(pong) = self.pong.take() {
                let _ = self.back.send(pong);
            }
            return;
        }
        let value = ping.value;
        self.pong
            .as_mut()
            .expect("pong producer")
            .publish(|message| message.value = value)
            .expect("pong pipeline running");
    }
}

fn tickring_ping_pong<W: WaitStrategy + Clone>(
    config: &Config,
    layout: &Placement,
    wait: W,
) -> Result<Block, String> {
    let (handoff_tx, handoff) = mpsc::channel();
    let (finished, results) = mpsc::channel();
    let (back, returned) = mpsc::channel();
    let pinger = TickPinger {
        clock: PingClock::new(config, layout.ping_pong_waiting),
        ping: None,
        handoff,
        finished,
    };
    let pong = build_single_producer(PING_PONG_RING, Message::default, wait.clone())
        .producer_wait(FullRingWait::Spin)
        .handle_events_with_handler(pinger)
        .thread_name("tickring-pinger");
    let pong = tick_pin(pong, layout.ping_pong[0])
        .build()
        .map_err(|error| format!("pong ring: {error}"))?;
    let ping = build_single_producer(PING_PONG_RING, Message::default, wait)
        .producer_wait(FullRingWait::Spin)
        .handle_events_with_handler(TickPonger {
            pong: Some(pong),
            back,
        })
        .thread_name("tickring-ponger");
    let mut ping = tick_pin(ping, layout.ping_pong[1])
        .build()
        .map_err(|error| format!("ping ring: {error}"))?;
    // Ping 0 (a warm-up one) goes from here; the pinger sends the rest.
    ping.publish(|message| message.value = 0)
        .map_err(|error| format!("first ping: {error}"))?;
    handoff_tx
        .send(ping)
        .map_err(|_| "the pinger stopped before the handoff")?;
    let (block, ping) = results
        .recv()
        .map_err(|_| "the pinger stopped early (see its panic above)")?;
    let pong = returned
        .recv()
        .map_err(|_| "the ponger stopped early (see its panic above)")?;
    for report in [ping.shutdown(), pong.shutdown()] {
        if let Some(panic) = report.first_panic() {
            return Err(panic.to_string());
        }
    }
    Ok(block)
}

type DisruptorProducer = disruptor::SingleProducer<Message, disruptor::SingleConsumerBarrier>;

/// The `disruptor` crate, built as tickring's ping-pong above: handlers own
/// the other ring's producer.
fn disruptor_ping_pong<W>(config: &Config, layout: &Placement, wait: W) -> Result<Block, String>
where
    W: disruptor::wait_strategies::WaitStrategy + 'static,
{
    let (handoff_tx, handoff) = mpsc::channel::<DisruptorProducer>();
    let (finished, results) = mpsc::channel::<(Block, DisruptorProducer)>();
    let (back, returned) = mpsc::channel::<DisruptorProducer>();
    let mut clock = PingClock::new(config, layout.ping_pong_waiting);
    let mut ping_producer: Option<DisruptorProducer> = None;
    let pinger = move |echo: &Message, _sequence: i64, _end_of_batch: bool| {
        let block = clock.echoed(echo.value);
        let ping =
            ping_producer.get_or_insert_with(|| handoff.recv().expect("main hands over the ping"));
        match block {
            None => {
                let value = clock.next_ping();
                ping.publish(|message| message.value = value);
            }
            Some(block) => {
                ping.publish(|message| message.value = STOP);
                let ping = ping_producer.take().expect("ping producer");
                let _ = finished.send((block, ping));
            }
        }
    };
    let pong_builder = disruptor::build_single_producer(PING_PONG_RING, Message::default, wait);
    let pong = disruptor_pin(pong_builder, layout.ping_pong[0])
        .thread_name("disruptor-pinger")
        .handle_events_with(pinger)
        .build();
    let mut pong_producer = Some(pong);
    let ponger = move |ping: &Message, _sequence: i64, _end_of_batch: bool| {
        if ping.value == STOP {
            if let Some(pong) = pong_producer.take() {
                let _ = back.send(pong);
            }
            return;
        }
        let value = ping.value;
        pong_producer
            .as_mut()
            .expect("pong producer")
            .publish(|message| message.value = value);
    };
    let ping_builder = disruptor::build_single_producer(PING_PONG_RING, Message::default, wait);
    let mut ping = disruptor_pin(ping_builder, layout.ping_pong[1])
        .thread_name("disruptor-ponger")
        .handle_events_with(ponger)
        .build();
    ping.publish(|message| message.value = 0);
    handoff_tx
        .send(ping)
        .map_err(|_| "the pinger stopped before the handoff")?;
    let (block, ping) = results
        .recv()
        .map_err(|_| "the pinger stopped early (see its panic above)")?;
    let pong = returned
        .recv()
        .map_err(|_| "the ponger stopped early (see its panic above)")?;
    // Each drop joins that ring's handler thread.
    drop(ping);
    drop(pong);
    Ok(block)
}

/// One end of a channel peer's ping-pong: sends and receives `i64`s,
/// polling without blocking.
trait Endpoint: Send + 'static {
    fn send(&mut self, value: i64, waiting: Waiting);
    fn recv(&mut self, waiting: Waiting) -> i64;
}

/// A sender and a receiver of two different channels, used by one thread.
struct Ends<S, R> {
    sender: S,
    receiver: R,
}

impl Endpoint for Ends<crossbeam_channel::Sender<i64>, crossbeam_channel::Receiver<i64>> {
    #[inline]
    fn send(&mut self, value: i64, waiting: Waiting) {
        let mut backoff = Backoff::new(waiting);
        while let Err(error) = self.sender.try_send(value) {
            if error.is_disconnected() {
                panic!("the other end hung up");
            }
            backoff.snooze();
        }
    }

    #[inline]
    fn recv(&mut self, waiting: Waiting) -> i64 {
        let mut backoff = Backoff::new(waiting);
        loop {
            match self.receiver.try_recv() {
                Ok(value) => return value,
                Err(crossbeam_channel::TryRecvError::Empty) => backoff.snooze(),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    panic!("the other end hung up")
                }
            }
        }
    }
}

impl Endpoint for Ends<rtrb::Producer<i64>, rtrb::Consumer<i64>> {
    #[inline]
    fn send(&mut self, value: i64, waiting: Waiting) {
        let mut backoff = Backoff::new(waiting);
        while self.sender.push(value).is_err() {
            backoff.snooze();
        }
    }

    #[inline]
    fn recv(&mut self, waiting: Waiting) -> i64 {
        let mut backoff = Backoff::new(waiting);
        loop {
            if let Ok(value) = self.receiver.pop() {
                return value;
            }
            if self.receiver.is_abandoned() {
                // The other end may have pushed its last value just before it
                // left: the acquire fence pairs with the release of its drop,
                // so one more pop sees that value.
                std::sync::atomic::fence(Ordering::Acquire);
                return self.receiver.pop().expect("the other end hung up");
            }
            backoff.snooze();
        }
    }
}

/// Ping-pong through two channels of a peer: `make` returns (sender,
/// receiver) of one channel of `PING_PONG_RING` messages.
fn channel_ping_pong<S, R>(
    config: &Config,
    layout: &Placement,
    make: fn(usize) -> (S, R),
) -> Result<Block, String>
where
    Ends<S, R>: Endpoint,
{
    let waiting = layout.ping_pong_waiting;
    let (ping_sender, ping_receiver) = make(PING_PONG_RING);
    let (pong_sender, pong_receiver) = make(PING_PONG_RING);
    // Padded: each thread's ends on lines of their own.
    let mut pinger_ends = CachePadded::new(Ends {
        sender: ping_sender,
        receiver: pong_receiver,
    });
    let mut ponger_ends = CachePadded::new(Ends {
        sender: pong_sender,
        receiver: ping_receiver,
    });
    let mut clock = PingClock::new(config, waiting);
    let total = clock.total;
    let ponger = spawn_on("channel-ponger", layout.ping_pong[1], move || {
        for _ in 0..total {
            let ping = ponger_ends.recv(waiting);
            ponger_ends.send(ping, waiting);
        }
    });
    let pinger = spawn_on("channel-pinger", layout.ping_pong[0], move || loop {
        let value = clock.next_ping();
        pinger_ends.send(value, waiting);
        let echo = pinger_ends.recv(waiting);
        if let Some(block) = clock.echoed(echo) {
            return block;
        }
    });
    let block = pinger.join().map_err(|_| "the pinger panicked")?;
    ponger.join().map_err(|_| "the ponger panicked")?;
    Ok(block)
}

fn ping_pong_block(system: &str, config: &Config, layout: &Placement) -> Result<Block, String> {
    let spin = layout.ping_pong_waiting == Waiting::Spin;
    match system {
        "cache-line floor" => floor_block(config, layout),
        "tickring" if spin => tickring_ping_pong(config, layout, BusySpin),
        "tickring" => tickring_ping_pong(config, layout, Yielding::new()),
        "disruptor" if spin => disruptor_ping_pong(config, layout, disruptor::BusySpin),
        "disruptor" => disruptor_ping_pong(config, layout, DisruptorYielding),
        "crossbeam-channel" => channel_ping_pong(config, layout, crossbeam_channel::bounded),
        "rtrb" => channel_ping_pong(config, layout, rtrb::RingBuffer::new),
        other => Err(format!("no ping-pong for {other}")),
    }
}

// ---------------------------------------------------------------------------
// 2. Paced 3-stage pipeline
// ---------------------------------------------------------------------------

const PIPELINE_RING: usize = 8_192;

/// The pipeline event, for tickring (whose writing stages get `&mut`) and
/// the channels (which move it from stage to stage).
#[derive(Debug, Default, Clone, Copy)]
struct PacedEvent {
    /// Intended send time, in ns since the block's epoch.
    intended_ns: u64,
    value: i64,
    step1: i64,
    step2: i64,
}

/// The pipeline event for the `disruptor` crate, whose handlers get `&E`:
/// the stages' results are `Relaxed` atomics (a plain `mov` on x86-64; the
/// gating orders them).
#[derive(Debug, Default)]
struct SharedPacedEvent {
    intended_ns: u64,
    value: i64,
    step1: AtomicI64,
    step2: AtomicI64,
}

fn stage_one(value: i64) -> i64 {
    value + 1
}

fn stage_two(step1: i64) -> i64 {
    step1 * 2
}

/// Where S3 leaves the block's results for the producer's thread.
#[derive(Debug, Default)]
struct Finish {
    done: CachePadded<AtomicBool>,
    recorded: Mutex<Option<(Histogram<u64>, u64, Instant)>>,
}

/// S3's work, the same for every system: check the event, record `now -
/// intended`, and hand over the results after the last event.
struct Recorder {
    epoch: Instant,
    warmup: u64,
    total: u64,
    next_value: i64,
    histogram: Option<Histogram<u64>>,
    wrong: u64,
    finish: Arc<Finish>,
}

impl Recorder {
    fn new(epoch: Instant, warmup: u64, total: u64, finish: &Arc<Finish>) -> Self {
        Self {
            epoch,
            warmup,
            total,
            next_value: 0,
            histogram: Some(new_histogram()),
            wrong: 0,
            finish: Arc::clone(finish),
        }
    }

    #[inline]
    fn receive(&mut self, intended_ns: u64, value: i64, step2: i64) {
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        if value != self.next_value || step2 != stage_two(stage_one(value)) {
            self.wrong += 1;
        }
        self.next_value = value + 1;
        if value as u64 >= self.warmup {
            if let Some(histogram) = self.histogram.as_mut() {
                histogram.saturating_record(now_ns.saturating_sub(intended_ns));
            }
        }
        if value as u64 + 1 == self.total {
            self.hand_over();
        }
    }

    #[cold]
    fn hand_over(&mut self) {
        let received = Instant::now();
        let histogram = self.histogram.take().expect("one block per recorder");
        *self
            .finish
            .recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((histogram, self.wrong, received));
        // Release: the results above are visible to whoever sees `done`.
        self.finish.done.store(true, Ordering::Release);
    }
}

/// The paced producer loop, the same for every system: event `k` is due at
/// `anchor + k * interval` (the schedule restarts when the measured phase
/// does); `publish(intended_ns, value)` sends it. Returns the block once S3
/// has recorded the last event.
fn paced_producer(
    epoch: Instant,
    warmup: u64,
    total: u64,
    interval_ns: u64,
    waiting: Waiting,
    finish: &Finish,
    mut publish: impl FnMut(u64, i64),
) -> Block {
    let mut anchor = Instant::now();
    let mut anchor_index = 0;
    let mut allocations_before = 0;
    for event in 0..total {
        if event == warmup {
            anchor = Instant::now();
            anchor_index = event;
            allocations_before = allocations();
        }
        let due = if interval_ns == 0 {
            Instant::now()
        } else {
            let due = anchor + Duration::from_nanos(interval_ns * (event - anchor_index));
            let mut backoff = Backoff::new(waiting);
            while Instant::now() < due {
                backoff.snooze();
            }
            due
        };
        publish(due.duration_since(epoch).as_nanos() as u64, event as i64);
    }
    let mut backoff = Backoff::new(waiting);
    // Acquire: pairs with `hand_over`'s release.
    while !finish.done.load(Ordering::Acquire) {
        backoff.snooze();
    }
    let allocations = allocations() - allocations_before;
    let (histogram, wrong, received) = finish
        .recorded
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
        .expect("S3 handed its results over");
    Block {
        histogram,
        measured: total - warmup,
        elapsed: received.saturating_duration_since(anchor),
        allocations,
        wrong,
    }
}

/// Everything a pipeline block needs to know.
#[derive(Debug, Clone, Copy)]
struct PipelinePlan {
    epoch: Instant,
    warmup: u64,
    total: u64,
    interval_ns: u64,
    waiting: Waiting,
}

impl PipelinePlan {
    fn new(config: &Config, interval_ns: u64, waiting: Waiting) -> Self {
        let warmup = warmup_for(config.events);
        Self {
            epoch: Instant::now(),
            warmup,
            total: warmup + config.events,
            interval_ns,
            waiting,
        }
    }

    fn run(&self, finish: &Finish, publish: impl FnMut(u64, i64)) -> Block {
        paced_producer(
            self.epoch,
            self.warmup,
            self.total,
            self.interval_ns,
            self.waiting,
            finish,
            publish,
        )
    }
}

struct RecordingStage(Recorder);

impl EventHandler<PacedEvent> for RecordingStage {
    #[inline]
    fn on_event(&mut self, event: &PacedEvent, _sequence: i64, _end_of_batch: bool) {
        self.0.receive(event.intended_ns, event.value, event.step2);
    }
}

fn tickring_pipeline<W: WaitStrategy + Clone>(
    plan: PipelinePlan,
    cores: [Option<usize>; 4],
    wait: W,
    full_ring: FullRingWait,
) -> Result<Block, String> {
    let finish = Arc::new(Finish::default());
    let recorder = Recorder::new(plan.epoch, plan.warmup, plan.total, &finish);
    let builder = build_single_producer(PIPELINE_RING, PacedEvent::default, wait)
        .producer_wait(full_ring)
        .handle_events_mut(|event: &mut PacedEvent, _, _| event.step1 = stage_one(event.value));
    let builder = tick_pin(builder, cores[1])
        .and_then()
        .handle_events_mut(|event: &mut PacedEvent, _, _| event.step2 = stage_two(event.step1));
    let builder = tick_pin(builder, cores[2])
        .and_then()
        .handle_events_with_handler(RecordingStage(recorder));
    let mut producer = tick_pin(builder, cores[3])
        .build()
        .map_err(|error| format!("pipeline: {error}"))?;
    let producing = spawn_on("tickring-producer", cores[0], move || {
        let block = plan.run(&finish, |intended_ns, value| {
            producer
                .publish(|event| {
                    event.intended_ns = intended_ns;
                    event.value = value;
                })
                .expect("pipeline running");
        });
        (block, producer)
    });
    let (block, producer) = producing
        .join()
        .map_err(|_| "the producer panicked (see above)")?;
    match producer.shutdown().first_panic() {
        Some(panic) => Err(panic.to_string()),
        None => Ok(block),
    }
}

fn disruptor_pipeline<W>(
    plan: PipelinePlan,
    cores: [Option<usize>; 4],
    wait: W,
) -> Result<Block, String>
where
    W: disruptor::wait_strategies::WaitStrategy + 'static,
{
    let finish = Arc::new(Finish::default());
    let mut recorder = Recorder::new(plan.epoch, plan.warmup, plan.total, &finish);
    let builder = disruptor::build_single_producer(PIPELINE_RING, SharedPacedEvent::default, wait);
    let builder = disruptor_pin(builder, cores[1])
        .handle_events_with(|event: &SharedPacedEvent, _, _| {
            event.step1.store(stage_one(event.value), Ordering::Relaxed);
        })
        .and_then();
    let builder = disruptor_pin(builder, cores[2])
        .handle_events_with(|event: &SharedPacedEvent, _, _| {
            let step1 = event.step1.load(Ordering::Relaxed);
            event.step2.store(stage_two(step1), Ordering::Relaxed);
        })
        .and_then();
    let mut producer = disruptor_pin(builder, cores[3])
        .handle_events_with(move |event: &SharedPacedEvent, _, _| {
            let step2 = event.step2.load(Ordering::Relaxed);
            recorder.receive(event.intended_ns, event.value, step2);
        })
        .build();
    let waiting = plan.waiting;
    let producing = spawn_on("disruptor-producer", cores[0], move || {
        let block = plan.run(&finish, |intended_ns, value| {
            // Wait for room under the same policy as everyone else.
            let mut backoff = Backoff::new(waiting);
            while producer
                .try_publish(|event| {
                    event.intended_ns = intended_ns;
                    event.value = value;
                })
                .is_err()
            {
                backoff.snooze();
            }
        });
        (block, producer)
    });
    let (block, producer) = producing
        .join()
        .map_err(|_| "the producer panicked (see above)")?;
    drop(producer); // joins the handler threads
    Ok(block)
}

/// Sends on a crossbeam channel, waiting for room under `waiting`.
#[inline]
fn put<T>(sender: &crossbeam_channel::Sender<T>, mut value: T, waiting: Waiting) {
    let mut backoff = Backoff::new(waiting);
    loop {
        match sender.try_send(value) {
            Ok(()) => return,
            Err(crossbeam_channel::TrySendError::Full(back)) => value = back,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                panic!("the next stage hung up")
            }
        }
        backoff.snooze();
    }
}

/// Takes the next message, waiting under `waiting`; `None` once the
/// previous stage hung up.
#[inline]
fn take<T>(receiver: &crossbeam_channel::Receiver<T>, waiting: Waiting) -> Option<T> {
    let mut backoff = Backoff::new(waiting);
    loop {
        match receiver.try_recv() {
            Ok(value) => return Some(value),
            Err(crossbeam_channel::TryRecvError::Empty) => backoff.snooze(),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
        }
    }
}

fn crossbeam_pipeline(plan: PipelinePlan, cores: [Option<usize>; 4]) -> Result<Block, String> {
    let waiting = plan.waiting;
    let finish = Arc::new(Finish::default());
    let mut recorder = Recorder::new(plan.epoch, plan.warmup, plan.total, &finish);
    let (to_first, from_producer) = crossbeam_channel::bounded::<PacedEvent>(PIPELINE_RING);
    let (to_second, from_first) = crossbeam_channel::bounded::<PacedEvent>(PIPELINE_RING);
    let (to_third, from_second) = crossbeam_channel::bounded::<PacedEvent>(PIPELINE_RING);
    let stages = [
        spawn_on("crossbeam-s1", cores[1], move || {
            while let Some(mut event) = take(&from_producer, waiting) {
                event.step1 = stage_one(event.value);
                put(&to_second, event, waiting);
            }
        }),
        spawn_on("crossbeam-s2", cores[2], move || {
            while let Some(mut event) = take(&from_first, waiting) {
                event.step2 = stage_two(event.step1);
                put(&to_third, event, waiting);
            }
        }),
        spawn_on("crossbeam-s3", cores[3], move || {
            while let Some(event) = take(&from_second, waiting) {
                recorder.receive(event.intended_ns, event.value, event.step2);
            }
        }),
    ];
    let producing = spawn_on("crossbeam-producer", cores[0], move || {
        plan.run(&finish, |intended_ns, value| {
            let event = PacedEvent {
                intended_ns,
                value,
                ..PacedEvent::default()
            };
            put(&to_first, event, waiting);
        })
        // `to_first` drops here: the stages drain and end, one after another.
    });
    let block = producing
        .join()
        .map_err(|_| "the producer panicked (see above)")?;
    for stage in stages {
        stage.join().map_err(|_| "a stage panicked (see above)")?;
    }
    Ok(block)
}

fn pipeline_block(
    system: &str,
    config: &Config,
    layout: &Placement,
    interval_ns: u64,
) -> Result<Block, String> {
    let plan = PipelinePlan::new(config, interval_ns, layout.pipeline_waiting);
    let cores = layout.pipeline;
    let spin = layout.pipeline_waiting == Waiting::Spin;
    match system {
        "tickring" if spin => tickring_pipeline(plan, cores, BusySpin, FullRingWait::Spin),
        "tickring" => tickring_pipeline(plan, cores, Yielding::new(), FullRingWait::Yield),
        "disruptor" if spin => disruptor_pipeline(plan, cores, disruptor::BusySpin),
        "disruptor" => disruptor_pipeline(plan, cores, DisruptorYielding),
        "crossbeam-channel" => crossbeam_pipeline(plan, cores),
        other => Err(format!("no pipeline for {other}")),
    }
}

// ---------------------------------------------------------------------------
// Rounds
// ---------------------------------------------------------------------------

const QUANTILES: [(f64, &str); 5] = [
    (0.5, "p50"),
    (0.9, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
];

/// One block's numbers, for the per-round medians and paired ratios.
#[derive(Debug, Clone, Copy)]
struct BlockStats {
    quantiles: [f64; 5],
    max: f64,
    events_per_second: f64,
}

/// Everything one system measured in one scenario.
struct SystemRuns {
    name: &'static str,
    /// Per round; `None` where the system did not run.
    rounds: Vec<Option<BlockStats>>,
    merged: Histogram<u64>,
    allocations: u64,
    wrong: u64,
}

struct Scenario {
    name: &'static str,
    file_stem: &'static str,
    title: String,
    /// The SVG plot's heading.
    plot_title: String,
    /// Messages per second the schedule asks for (`None`: back to back).
    scheduled_rate: Option<f64>,
    systems: Vec<SystemRuns>,
}

fn progress(message: &str) {
    eprintln!("[latency] {message}");
}

fn run_scenario(
    name: &'static str,
    file_stem: &'static str,
    title: String,
    scheduled_rate: Option<f64>,
    systems: &[&'static str],
    config: &Config,
    mut block: impl FnMut(&str) -> Result<Block, String>,
) -> Result<Scenario, String> {
    let mut runs: Vec<SystemRuns> = systems
        .iter()
        .map(|&system| SystemRuns {
            name: system,
            rounds: Vec::new(),
            merged: new_histogram(),
            allocations: 0,
            wrong: 0,
        })
        .collect();
    let chosen: Vec<usize> = (0..systems.len())
        .filter(|&index| config.runs_system(name, systems[index]))
        .collect();
    for round in 1..=config.rounds {
        for runs in runs.iter_mut() {
            runs.rounds.push(None);
        }
        for (position, offset) in (0..chosen.len()).enumerate() {
            // Rotate the order from one round to the next.
            let index = chosen[(offset + round) % chosen.len()];
            let system = systems[index];
            progress(&format!(
                "{name}: round {round}/{}, {system} ({}/{})",
                config.rounds,
                position + 1,
                chosen.len()
            ));
            let measured = block(system).map_err(|error| format!("{name}, {system}: {error}"))?;
            let runs = &mut runs[index];
            let histogram = &measured.histogram;
            let mut quantiles = [0.0; 5];
            for (slot, (quantile, _)) in quantiles.iter_mut().zip(QUANTILES) {
                *slot = histogram.value_at_quantile(quantile) as f64;
            }
            *runs.rounds.last_mut().expect("pushed above") = Some(BlockStats {
                quantiles,
                max: histogram.max() as f64,
                events_per_second: measured.measured as f64 / measured.elapsed.as_secs_f64(),
            });
            runs.merged
                .add(histogram)
                .map_err(|error| format!("merging histograms: {error:?}"))?;
            runs.allocations += measured.allocations;
            runs.wrong += measured.wrong;
        }
    }
    let plot_title = match name {
        "ping-pong" => "ping-pong: one way (round trip / 2), coordinated omission corrected",
        _ => "paced 3-stage pipeline: end to end, coordinated omission corrected",
    };
    Ok(Scenario {
        name,
        file_stem,
        title,
        plot_title: format!("{plot_title}; {} rounds merged", config.rounds),
        scheduled_rate,
        systems: runs,
    })
}

// ---------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// The median over rounds of `pick(system) / pick(baseline)`, each pair from
/// the same round; NaN when they never ran in the same round.
fn paired_ratio(
    system: &SystemRuns,
    baseline: &SystemRuns,
    pick: impl Fn(&BlockStats) -> f64,
) -> f64 {
    let ratios: Vec<f64> = system
        .rounds
        .iter()
        .zip(&baseline.rounds)
        .filter_map(|(here, base)| Some(pick(here.as_ref()?) / pick(base.as_ref()?)))
        .collect();
    median(&ratios)
}

/// The median over rounds of `pick(stats)`.
fn round_median(system: &SystemRuns, pick: impl Fn(&BlockStats) -> f64) -> f64 {
    let values: Vec<f64> = system.rounds.iter().flatten().map(pick).collect();
    median(&values)
}

/// `175.0 ns`, `2.74 us`, `7.96 ms`, `1.20 s`.
fn format_ns(nanos: f64) -> String {
    if !nanos.is_finite() {
        "-".to_string()
    } else if nanos < 1e3 {
        format!("{nanos:.0} ns")
    } else if nanos < 1e6 {
        format!("{:.2} us", nanos / 1e3)
    } else if nanos < 1e9 {
        format!("{:.2} ms", nanos / 1e6)
    } else {
        format!("{:.2} s", nanos / 1e9)
    }
}

fn format_ratio(ratio: f64) -> String {
    if ratio.is_finite() && ratio >= 100.0 {
        format!("{ratio:.0}x")
    } else if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        "-".to_string()
    }
}

fn format_rate(per_second: f64) -> String {
    if !per_second.is_finite() {
        "-".to_string()
    } else if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else {
        format!("{:.0} k", per_second / 1e3)
    }
}

/// The median rate, marked `*` when the system fell behind the schedule
/// (its latencies then include waiting behind earlier messages).
fn rate_column(runs: &SystemRuns, scheduled_rate: Option<f64>) -> String {
    let rate = round_median(runs, |stats| stats.events_per_second);
    let behind = scheduled_rate.is_some_and(|scheduled| rate < 0.99 * scheduled);
    format!("{}{}", format_rate(rate), if behind { "*" } else { " " })
}

/// Prints one scenario's table. `floor_p50`: the floor's per-round p50s
/// (ping-pong) or its median (pipeline: one hop's floor).
fn print_table(scenario: &Scenario, floor: Option<&SystemRuns>, floor_median_p50: f64) {
    println!();
    println!("{}", scenario.title);
    println!(
        "{:<19}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>11}{:>9}{:>9}{:>9}{:>9}{:>8}{:>8}",
        "system",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "p99.99",
        "max",
        "msgs/s",
        "p50/tr",
        "p99/tr",
        "rate/tr",
        "p50/fl",
        "spread",
        "allocs"
    );
    let tickring = scenario
        .systems
        .iter()
        .find(|runs| runs.name == "tickring" && runs.rounds.iter().any(Option::is_some));
    for runs in &scenario.systems {
        if runs.rounds.iter().all(Option::is_none) {
            continue;
        }
        let quantile = |index: usize| round_median(runs, |stats| stats.quantiles[index]);
        let max = runs
            .rounds
            .iter()
            .flatten()
            .map(|stats| stats.max)
            .fold(f64::NAN, f64::max);
        let vs_tickring = |pick: fn(&BlockStats) -> f64| match tickring {
            Some(tickring) => format_ratio(paired_ratio(runs, tickring, pick)),
            None => "-".to_string(),
        };
        let vs_floor = match floor {
            Some(floor) if floor.rounds.iter().any(Option::is_some) => {
                format_ratio(paired_ratio(runs, floor, |stats| stats.quantiles[0]))
            }
            _ => format_ratio(quantile(0) / floor_median_p50),
        };
        let p50s: Vec<f64> = runs
            .rounds
            .iter()
            .flatten()
            .map(|s| s.quantiles[0])
            .collect();
        let spread = (p50s.iter().copied().fold(f64::NAN, f64::max)
            - p50s.iter().copied().fold(f64::NAN, f64::min))
            / median(&p50s);
        println!(
            "{:<19}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>11}{:>9}{:>9}{:>9}{:>9}{:>7.0}%{:>8}",
            runs.name,
            format_ns(quantile(0)),
            format_ns(quantile(1)),
            format_ns(quantile(2)),
            format_ns(quantile(3)),
            format_ns(quantile(4)),
            format_ns(max),
            rate_column(runs, scenario.scheduled_rate),
            vs_tickring(|stats| stats.quantiles[0]),
            vs_tickring(|stats| stats.quantiles[2]),
            vs_tickring(|stats| stats.events_per_second),
            vs_floor,
            spread * 100.0,
            runs.allocations,
        );
    }
}

fn slug(system: &str) -> &str {
    match system {
        "cache-line floor" => "floor",
        other => other,
    }
}

/// The HdrHistogram percentile distribution (Java's
/// `outputPercentileDistribution`, 5 ticks per half distance), in
/// microseconds.
fn percentile_distribution(histogram: &Histogram<u64>) -> String {
    const SCALE: f64 = 1_000.0;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for step in histogram.iter_quantiles(5) {
        total += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / SCALE;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            let _ = writeln!(
                text,
                "{value:12.4} {quantile:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(text, "{value:12.4} {quantile:2.12} {total:10}");
        }
    }
    let sub_buckets = (2 * 10u64.pow(u32::from(histogram.sigfig()))).next_power_of_two();
    let _ = writeln!(
        text,
        "#[Mean    = {:12.4}, StdDeviation   = {:12.4}]",
        histogram.mean() / SCALE,
        histogram.stdev() / SCALE
    );
    let _ = writeln!(
        text,
        "#[Max     = {:12.4}, Total count    = {:12}]",
        histogram.max() as f64 / SCALE,
        histogram.len()
    );
    let _ = writeln!(
        text,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        sub_buckets
    );
    text
}

/// A system's name, colour and points in the plot.
type PlotLine<'a> = (&'a str, &'static str, Vec<(f64, f64)>);

/// One colour per system, the same in every plot.
fn colour_of(system: &str) -> &'static str {
    match system {
        "cache-line floor" => "#888888",
        "tickring" => "#d62728",
        "disruptor" => "#1f77b4",
        "crossbeam-channel" => "#2ca02c",
        "rtrb" => "#9467bd",
        _ => "#ff7f0e",
    }
}

/// An SVG plot of every system's merged distribution: latency (log) against
/// percentile on the `1/(1-p)` log axis.
fn percentile_plot(scenario: &Scenario) -> String {
    let (width, height) = (900.0, 540.0);
    let (left, right, top, bottom) = (80.0, 180.0, 50.0, 60.0);
    let plot_width = width - left - right;
    let plot_height = height - top - bottom;
    // Each system's points: (log10(1/(1-p)), log10(ns)).
    let mut lines: Vec<PlotLine> = Vec::new();
    for runs in &scenario.systems {
        let histogram = &runs.merged;
        if histogram.is_empty() {
            continue;
        }
        let count = histogram.len() as f64;
        let mut points = Vec::new();
        for step in histogram.iter_quantiles(5) {
            // The last sample sits at 1/(1-p) = count.
            let quantile = step.quantile_iterated_to().min(1.0 - 1.0 / count);
            let x = (1.0 / (1.0 - quantile)).log10();
            let y = (step.value_iterated_to().max(1) as f64).log10();
            points.push((x, y));
        }
        lines.push((runs.name, colour_of(runs.name), points));
    }
    let all = lines.iter().flat_map(|(_, _, points)| points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max).ceil();
    let y_min = all
        .clone()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .floor();
    let y_max = all.map(|p| p.1).fold(f64::NEG_INFINITY, f64::max).ceil();
    let (y_min, y_max) = if y_min.is_finite() && y_max > y_min {
        (y_min, y_max)
    } else {
        (0.0, 1.0)
    };
    let to_x = |x: f64| left + x / x_max * plot_width;
    let to_y = |y: f64| top + (y_max - y) / (y_max - y_min) * plot_height;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        left + plot_width / 2.0,
        escape(&scenario.plot_title)
    );
    // Percentile grid: 0%, 90%, 99%, ...
    for decade in 0..=(x_max as i32) {
        let x = to_x(f64::from(decade));
        let label = match decade {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            2 => "99%".to_string(),
            _ => format!("99.{}%", "9".repeat(decade as usize - 2)),
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#dddddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            top + plot_height,
            top + plot_height + 18.0
        );
    }
    // Latency grid: decades of nanoseconds.
    for decade in (y_min as i32)..=(y_max as i32) {
        let y = to_y(f64::from(decade));
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_width,
            left - 6.0,
            y + 4.0,
            decade_label(decade)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>"#,
        left + plot_width / 2.0,
        height - 14.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (log scale)</text>"#,
        top + plot_height / 2.0,
        top + plot_height / 2.0
    );
    for (position, (name, colour, points)) in lines.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", to_x(x), to_y(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let legend_y = top + 10.0 + 20.0 * position as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            width - right + 15.0,
            width - right + 40.0,
            width - right + 46.0,
            legend_y + 4.0,
            escape(name)
        );
    }
    let _ = writeln!(svg, "</svg>");
    svg
}

/// `1 ns`, `10 ns`, ..., `1 us`, ..., `1 s` for `10^decade` ns.
fn decade_label(decade: i32) -> String {
    let units = ["ns", "us", "ms", "s"];
    let unit = (decade.max(0) / 3).min(3);
    let mantissa = 10f64.powi(decade - 3 * unit);
    format!("{mantissa} {}", units[unit as usize])
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn write_files(scenario: &Scenario, out: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(|error| format!("create {}: {error}", out.display()))?;
    let mut written = Vec::new();
    for runs in &scenario.systems {
        if runs.merged.is_empty() {
            continue;
        }
        let path = out.join(format!("{}.{}.hgrm", scenario.file_stem, slug(runs.name)));
        std::fs::write(&path, percentile_distribution(&runs.merged))
            .map_err(|error| format!("write {}: {error}", path.display()))?;
        written.push(path);
    }
    if scenario.systems.iter().any(|runs| !runs.merged.is_empty()) {
        let path = out.join(format!("{}.svg", scenario.file_stem));
        std::fs::write(&path, percentile_plot(scenario))
            .map_err(|error| format!("write {}: {error}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_string())
        .unwrap_or_else(|_| "unknown kernel".to_string());
    format!(
        "{cpu}, {} cores online {:?}, kernel {kernel}",
        available_cores().len(),
        available_cores()
    )
}

/// What one clock read and one histogram record cost, back to back.
fn measurement_overhead() -> Histogram<u64> {
    let mut histogram = new_histogram();
    let mut last = Instant::now();
    for _ in 0..200_000 {
        let now = Instant::now();
        histogram.saturating_record(now.duration_since(last).as_nanos() as u64);
        last = now;
    }
    histogram
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn run(config: Config) -> Result<(), String> {
    let started = Instant::now();
    let layout = pick_placement();
    progress("clock overhead");
    let overhead = measurement_overhead();
    let mut scenarios = Vec::new();

    if ALL_SYSTEMS
        .iter()
        .any(|system| config.runs_system("ping-pong", system))
    {
        let interval = match config.ping_interval_ns {
            Some(interval) => format!("a ping every {} ns", thousands(interval)),
            None => "pings back to back".to_string(),
        };
        let title = format!(
            "Ping-pong, one way = round trip / 2, from each ping's intended send time ({interval}); \
             rings of {}; {} x {} measured round trips per system (after {} warm-up); {}",
            thousands(PING_PONG_RING as u64),
            config.rounds,
            thousands(config.round_trips),
            thousands(warmup_for(config.round_trips)),
            layout.description_ping_pong
        );
        let scheduled_rate = config
            .ping_interval_ns
            .map(|interval| 1e9 / interval as f64);
        let scenario = run_scenario(
            "ping-pong",
            "ping-pong",
            title,
            scheduled_rate,
            &ALL_SYSTEMS,
            &config,
            |system| ping_pong_block(system, &config, &layout),
        )?;
        scenarios.push(scenario);
    }

    let pipeline_systems = ["tickring", "disruptor", "crossbeam-channel"];
    if pipeline_systems
        .iter()
        .any(|s| config.runs_system("pipeline", s))
    {
        let interval_ns = config.interval_ns.unwrap_or(match layout.pipeline_waiting {
            Waiting::Spin => 1_000,
            Waiting::Yield => 20_000,
        });
        let title = format!(
            "Paced 3-stage pipeline, producer -> S1 -> S2 -> S3, from each event's intended send \
             time (an event every {} ns); ring of {}; {} x {} measured events per system (after \
             {} warm-up); {}",
            thousands(interval_ns),
            thousands(PIPELINE_RING as u64),
            config.rounds,
            thousands(config.events),
            thousands(warmup_for(config.events)),
            layout.description_pipeline
        );
        let scheduled_rate = (interval_ns > 0).then(|| 1e9 / interval_ns as f64);
        let scenario = run_scenario(
            "pipeline",
            "pipeline",
            title,
            scheduled_rate,
            &pipeline_systems,
            &config,
            |system| pipeline_block(system, &config, &layout, interval_ns),
        )?;
        scenarios.push(scenario);
    }
    progress(&format!("done in {:.1} s", started.elapsed().as_secs_f64()));

    println!();
    println!("tickring latency: {}", machine_line());
    println!(
        "clock read + histogram record (included in every sample): p50 {} ns, p99 {} ns",
        overhead.value_at_quantile(0.5),
        overhead.value_at_quantile(0.99)
    );
    let floor_runs = scenarios
        .iter()
        .find(|scenario| scenario.name == "ping-pong")
        .and_then(|scenario| {
            scenario
                .systems
                .iter()
                .find(|runs| runs.name == "cache-line floor")
        });
    let floor_median_p50 = floor_runs
        .map(|floor| round_median(floor, |stats| stats.quantiles[0]))
        .unwrap_or(f64::NAN);
    let mut failures = Vec::new();
    for scenario in &scenarios {
        let floor = (scenario.name == "ping-pong")
            .then_some(floor_runs)
            .flatten();
        print_table(scenario, floor, floor_median_p50);
        for runs in &scenario.systems {
            if runs.wrong > 0 {
                failures.push(format!(
                    "{}: {} received {} wrong or out-of-order messages",
                    scenario.name, runs.name, runs.wrong
                ));
            }
            if runs.name == "tickring" && runs.allocations > 0 {
                failures.push(format!(
                    "{}: tickring allocated {} times during measured phases",
                    scenario.name, runs.allocations
                ));
            }
        }
    }
    println!();
    println!(
        "Columns: the median over rounds of each round's percentile; max: the largest of any \
         round; msgs/s: messages (round trips, events) per second through the measured phase, \
         * where below the schedule (the system fell behind; its latencies include queueing)."
    );
    println!(
        "p50/tr, p99/tr, rate/tr: the median over rounds of (system / tickring) in the same \
         round. p50/fl: p50 / the cache-line floor's p50 (one transfer, one way): paired by \
         round in ping-pong; in the pipeline, over the floor's median (one hop; it has three)."
    );
    println!(
        "spread: (max - min) / median of the rounds' p50. allocs: allocations in the process \
         during the measured phases, all rounds."
    );
    for scenario in &scenarios {
        let written = write_files(scenario, &config.out)?;
        if !written.is_empty() {
            println!(
                "{}: wrote {} (.hgrm values in microseconds, all rounds merged)",
                scenario.name,
                written
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

fn main() {
    let config = match parse_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("latency: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(message) = run(config) {
        eprintln!("latency: FAILED: {message}");
        std::process::exit(1);
    }
}
