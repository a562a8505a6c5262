//! A synthetic market-data feed through a tickring pipeline, the crate's main
//! job end to end, with its result checked.
//!
//! ```text
//!                          ┌─▶ book  (top of book per instrument) ─┐
//! feed(s) ─▶ decode ───────┤                                        ├─▶ strategy
//!            (&mut, alone) └─▶ risk  (position per instrument)    ─┘   (signals, latency)
//! ```
//!
//! Feed `k` of N writes ticks in place from a seeded generator, for the
//! instruments whose id is `k` modulo N: one feed publishes through a
//! `Producer`, several through clones of a `MultiProducer`, both with the one
//! generic [`publish`]. Decode writes the event (alone in its stage); book and
//! risk each write their own atomic field (`Relaxed`: the gating orders it).
//! Two phases, throughput (flat out) and latency (paced at `--rate`), each on
//! a fresh pipeline and then replayed serially through the same stage code:
//! the exit status is 1 unless every handler saw every tick and each feed
//! reached the strategy in order with the replay's checksum (2 when tickring
//! refuses the pipeline). Threads are pinned and busy-spin only with a core
//! each (4 handlers and the feeds); otherwise they are not pinned and yield.
//!
//! ```text
//! cargo run --release --example market_data                      # both phases, seconds
//! cargo run --release --example market_data -- --quick           # smoke run (CI)
//! cargo run --release --example market_data -- --feeds 2 --quick # multi-producer
//! cargo run --release --example market_data -- --help
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tickring::builder_state::{NeedsParticipant, Ready};
use tickring::{build_multi_producer, build_single_producer, Builder};
use tickring::{EventHandler, EventProducer, WaitStrategy};
use tickring_bench::peers::tickring_options;
use tickring_bench::place::{Placement, Waiting};
use tickring_bench::{args, hist, units, with_tickring_wait, Histogram, Rng};

const INSTRUMENTS: u32 = 512;
const TIGHT_SPREAD: u32 = 2;
const POSITION_LIMIT: i64 = 2_000;
const NO_SPREAD: u32 = u32::MAX;
/// decode, book, risk, strategy: threads 0-3 of the placement; feeds follow.
const HANDLERS: usize = 4;
const RING: usize = 65_536;
const SEED: u64 = 42;

/// One ring slot: the feed's fields, decode's, then book's and risk's.
#[derive(Debug, Default)]
struct Tick {
    feed: u32,
    feed_seq: u64,
    instrument: u32,
    side: u8, // 0 bid, 1 ask, 2 trade
    price: u32,
    qty: u32,
    published_ns: u64,
    valid: bool,
    notional: u64,
    spread: AtomicU32,
    breach: AtomicU8,
}

// Stamp and tick share one 64-byte line per slot: growing `Tick` past 56
// bytes would double the lines every event moves.
const _: () = assert!(tickring::slot_bytes::<Tick>() == 64);

/// One feed's deterministic stream of ticks.
struct Feed {
    rng: Rng,
    id: u32,
    feeds: u32,
}

impl Feed {
    fn new(seed: u64, id: usize, feeds: usize) -> Self {
        let rng = Rng::with_seed(seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (id, feeds) = (id as u32, feeds as u32);
        Self { rng, id, feeds }
    }

    /// Writes tick `seq`'s wire fields (half of the flow on 4 hot instruments).
    fn next(&mut self, seq: u64, tick: &mut Tick) {
        let (hot, few) = (self.rng.bool(), INSTRUMENTS / self.feeds);
        let slot = self.rng.u32(0..if hot { 4 } else { few });
        (tick.feed, tick.feed_seq, tick.instrument) = (self.id, seq, self.id + slot * self.feeds);
        tick.side = self.rng.u8(0..3);
        let corrupt = self.rng.u8(0..200) == 0;
        tick.price = u32::from(!corrupt) * (10_000 + self.rng.u32(0..8));
        tick.qty = self.rng.u32(1..100);
    }
}

fn decode(tick: &mut Tick) {
    tick.valid = tick.price > 0 && tick.instrument < INSTRUMENTS;
    tick.notional = u64::from(tick.valid) * u64::from(tick.price) * u64::from(tick.qty);
}

/// Best bid and ask per instrument; returns the spread after a tick.
#[derive(Default)]
struct Book(Vec<[u32; 2]>);

impl Book {
    fn on(&mut self, tick: &Tick) -> u32 {
        self.0.resize(INSTRUMENTS as usize, [0, 0]);
        let level = &mut self.0[tick.instrument as usize % INSTRUMENTS as usize];
        if tick.valid && tick.side < 2 {
            level[tick.side as usize] = tick.price;
        }
        match *level {
            [bid, ask] if tick.valid && bid > 0 && ask >= bid => ask - bid,
            _ => NO_SPREAD,
        }
    }
}

/// Position per instrument; returns whether a tick leaves it over the limit.
#[derive(Default)]
struct Risk(Vec<i64>);

impl Risk {
    fn on(&mut self, tick: &Tick) -> u8 {
        self.0.resize(INSTRUMENTS as usize, 0);
        let position = &mut self.0[tick.instrument as usize % INSTRUMENTS as usize];
        if tick.valid && tick.side == 2 {
            let qty = i64::from(tick.qty);
            *position += if qty % 2 == 0 { qty } else { -qty };
        }
        u8::from(position.abs() > POSITION_LIMIT)
    }
}

/// What the strategy saw of one feed; the replay must see the same.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct FeedResult {
    ticks: u64,
    out_of_order: u64,
    signals: u64,
    checksum: u64,
}

impl FeedResult {
    fn add(&mut self, tick: &Tick, spread: u32, breach: u8) {
        self.out_of_order += u64::from(tick.feed_seq != self.ticks);
        self.ticks += 1;
        self.signals += u64::from(tick.valid && spread <= TIGHT_SPREAD && breach == 0);
        let read =
            tick.feed_seq ^ tick.notional << 16 ^ u64::from(spread) << 40 ^ u64::from(breach) << 63;
        self.checksum = (self.checksum.rotate_left(5) ^ read).wrapping_mul(0x0100_0000_01b3);
    }
}

/// What the strategy saw: per feed, and its latency histogram.
type Seen = (Vec<FeedResult>, Histogram<u64>);

/// The last stage; sends what it saw home at shutdown.
struct Strategy {
    seen: Seen,
    run: Run,
    home: mpsc::Sender<Seen>,
}

impl EventHandler<Tick> for Strategy {
    fn on_event(&mut self, tick: &Tick, _sequence: i64, _end_of_batch: bool) {
        let (spread, breach) = (tick.spread.load(Relaxed), tick.breach.load(Relaxed));
        self.seen.0[tick.feed as usize].add(tick, spread, breach);
        let latency = self.run.now() - tick.published_ns;
        self.seen.1.saturating_record(latency.max(1));
    }

    fn on_shutdown(&mut self) {
        let _ = self.home.send(self.seen.clone());
    }
}

/// One phase: what the feeds publish, and how.
#[derive(Clone, Copy)]
struct Run {
    feeds: usize,
    events: u64,
    seed: u64,
    /// Nanoseconds between ticks, all feeds together (`None`: flat out).
    pace: Option<u64>,
    base: Instant,
    place: &'static Placement,
}

impl Run {
    fn ticks(self, feed: usize) -> u64 {
        self.events / self.feeds as u64 + u64::from((feed as u64) < self.events % self.feeds as u64)
    }

    fn now(self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// The graph, for either kind of producer; options come before their handler.
fn stages<W: WaitStrategy, K>(
    builder: Builder<Tick, W, K, NeedsParticipant>,
    run: Run,
    strategy: Strategy,
) -> Builder<Tick, W, K, Ready> {
    let (mut book, mut risk, core) = (Book::default(), Risk::default(), |i| run.place.core(i));
    let builder = tickring_options(builder, "decode", core(0))
        .handle_events_mut(|tick: &mut Tick, _, _| decode(tick))
        .and_then();
    let builder = tickring_options(builder, "book", core(1))
        .handle_events_with(move |tick: &Tick, _, _| tick.spread.store(book.on(tick), Relaxed));
    let builder = tickring_options(builder, "risk", core(2))
        .handle_events_with(move |tick: &Tick, _, _| tick.breach.store(risk.on(tick), Relaxed));
    tickring_options(builder.and_then(), "strategy", core(3)).handle_events_with_handler(strategy)
}

/// Each feed publishes its ticks through its own producer, on its own
/// thread; works with `Producer`s and `MultiProducer`s alike. Returns them.
fn publish<P>(producers: Vec<P>, run: Run) -> Result<Vec<P>, tickring::PublishError>
where
    P: EventProducer<Tick> + Send,
{
    let feed = move |id: usize, mut producer: P| {
        if let Some(core) = run.place.core(HANDLERS + id) {
            tickring::pin_current_thread(core).expect("a core from allowed_cores()");
        }
        let waiting = run.place.waiting();
        let (start, mut source) = (run.now(), Feed::new(run.seed, id, run.feeds));
        for k in 0..run.ticks(id) {
            if let Some(interval) = run.pace {
                let due = start + (k * run.feeds as u64 + id as u64) * interval;
                waiting.until(|| (run.now() >= due).then_some(()));
            }
            let fill = |tick: &mut Tick| {
                source.next(k, tick);
                tick.published_ns = run.now();
            };
            producer.publish(fill)?;
        }
        Ok(producer)
    };
    thread::scope(|scope| {
        let threads: Vec<_> = producers
            .into_iter()
            .enumerate()
            .map(|(id, producer)| scope.spawn(move || feed(id, producer)))
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a feed panicked"))
            .collect()
    })
}

/// Runs one phase on a fresh pipeline: the strategy's results, the time
/// from first publish to drained shutdown, and each handler's count.
type Outcome = (Vec<FeedResult>, Histogram<u64>, Duration, Vec<u64>);

/// `Err((exit status, message))`.
fn run_phase<W: WaitStrategy>(wait: impl Fn() -> W, run: Run) -> Result<Outcome, (u8, String)> {
    let (home, results) = mpsc::channel();
    let seen = (
        vec![FeedResult::default(); run.feeds],
        hist::new_histogram(),
    );
    let strategy = Strategy { seen, run, home };
    let refused = |error: tickring::BuildError| (2, format!("tickring refused it: {error}"));
    let failed = |error: tickring::PublishError| (1, format!("publish: {error}"));
    let start = Instant::now();
    let report = if run.feeds == 1 {
        let single = build_single_producer(RING, Tick::default, wait());
        let producer = stages(single, run, strategy).build().map_err(refused)?;
        let mut producers = publish(vec![producer], run).map_err(failed)?;
        producers.pop().expect("the producer comes back").shutdown()
    } else {
        let multi = build_multi_producer(RING, Tick::default, wait());
        let producer = stages(multi, run, strategy).build().map_err(refused)?;
        publish(vec![producer.clone(); run.feeds], run).map_err(failed)?;
        producer.shutdown().expect("the last handle reports")
    };
    let elapsed = start.elapsed();
    if let Some(panic) = report.first_panic() {
        return Err((1, panic.to_string()));
    }
    let no_report = |_| (1, "no strategy report".to_owned());
    let (feeds, latency) = results.recv().map_err(no_report)?;
    let handled = report.handlers.iter().map(|h| h.events_handled).collect();
    Ok((feeds, latency, elapsed, handled))
}

/// The same ticks through the same stage code, one feed after another.
fn replay(run: Run) -> Vec<FeedResult> {
    let (mut book, mut risk, mut tick) = (Book::default(), Risk::default(), Tick::default());
    (0..run.feeds)
        .map(|feed| {
            let (mut source, mut result) =
                (Feed::new(run.seed, feed, run.feeds), FeedResult::default());
            for seq in 0..run.ticks(feed) {
                source.next(seq, &mut tick);
                decode(&mut tick);
                let (spread, breach) = (book.on(&tick), risk.on(&tick));
                result.add(&tick, spread, breach);
            }
            result
        })
        .collect()
}

const USAGE: &str = "\
market_data: market data through decode -> (book || risk) -> strategy, checked
USAGE: cargo run --release --example market_data -- [OPTIONS]
    --quick                 a smoke run of a few seconds at most (CI)
    --feeds N               feed threads; above 1 they share a MultiProducer [1]
    --events N              ticks of the throughput phase [5000000; quick 500000]
    --latency-events N      ticks of the paced latency phase [200000; quick 20000]
    --rate N                ticks per second of the latency phase, all feeds [100000]
    --wait spin|yield|block how handlers wait [spin with a core per thread, else yield]
    -h, --help              this text
";

fn main() -> ExitCode {
    let (mut quick, mut feeds, mut rate) = (false, 1usize, 100_000u64);
    let (mut events, mut latency_events, mut wait) = (None, None, None);
    args::parse(USAGE, |option, parser| {
        match option {
            "quick" => quick = true,
            "feeds" => feeds = args::value(parser)?,
            "events" => events = Some(args::value(parser)?),
            "latency-events" => latency_events = Some(args::value(parser)?),
            "rate" => rate = args::value(parser)?,
            "wait" => wait = Some(args::value::<Waiting>(parser)?),
            _ => return Ok(false),
        }
        Ok(true)
    });
    let feeds = feeds.clamp(1, 16);
    let mut place = Placement::exclusive(HANDLERS + feeds);
    if let Some(wait) = wait {
        place = place.with_waiting(wait);
    }
    let place: &'static Placement = Box::leak(Box::new(place));
    println!("market_data: {feeds} feed(s), {}", place.describe());
    let events = events.unwrap_or(if quick { 500_000 } else { 5_000_000 });
    let latency_events = latency_events.unwrap_or(if quick { 20_000 } else { 200_000 });
    let mut failed = false;
    let phases = [
        (events, None),
        (latency_events, Some(1_000_000_000 / rate.max(1))),
    ];
    for (events, pace) in phases {
        let seed = SEED + u64::from(pace.is_some());
        let run = Run {
            feeds,
            events,
            seed,
            pace,
            base: Instant::now(),
            place,
        };
        match with_tickring_wait!(place.waiting(), |wait| run_phase(wait, run)) {
            Ok(outcome) => failed |= !report(run, outcome),
            Err((status, message)) => {
                eprintln!("market_data: {message}");
                return ExitCode::from(status);
            }
        }
    }
    ExitCode::from(u8::from(failed))
}

/// Prints a phase's figures and checks them against the replay.
fn report(run: Run, (results, latency, elapsed, handled): Outcome) -> bool {
    let phase = ["throughput", "latency"][usize::from(run.pace.is_some())];
    let per_second = units::rate(run.events as f64 / elapsed.as_secs_f64());
    let (ticks, took) = (
        units::grouped(run.events),
        units::ns(elapsed.as_nanos() as f64),
    );
    println!("\n{phase}: {ticks} ticks in {took}: {per_second}");
    let signals = results.iter().map(|feed| feed.signals).sum();
    println!("strategy signals: {}", units::grouped(signals));
    if run.pace.is_some() {
        hist::print_percentiles("publish -> strategy latency", &[("latency", &latency)]);
    }
    let mut problems: Vec<String> = (handled.iter().zip(["decode", "book", "risk", "strategy"]))
        .filter(|(handled, _)| **handled != run.events)
        .map(|(handled, name)| format!("{name} handled {handled} of {} ticks", run.events))
        .collect();
    for (feed, (got, want)) in results.iter().zip(replay(run)).enumerate() {
        if *got != want {
            problems.push(format!("feed {feed}: saw {got:?}, replayed {want:?}"));
        }
    }
    for problem in &problems {
        eprintln!("MISMATCH ({phase}): {problem}");
    }
    if problems.is_empty() {
        println!("verified: every handler saw every tick, each feed in order, as replayed");
    }
    problems.is_empty()
}
