//! A synthetic market-data feed through a tickring pipeline: the crate's main
//! job, end to end, with its result checked.
//!
//! ```text
//!                      ┌─▶ book      (best bid/ask per instrument) ──┐
//! producer ─▶ decode ──┤                                              ├─▶ strategy
//!  (feed)    (&mut)    └─▶ risk      (position and notional limits) ─┘   (signals, latency)
//! ```
//!
//! - **The feed**: quotes and trades for 500 instruments (half of the flow on
//!   the 20 busiest), made by a small deterministic xorshift generator, with
//!   a corrupt message now and then. Each is one 64-byte `Tick`: the raw
//!   wire fields the producer writes, the fields the decode stage fills, and
//!   two annotations the parallel stages leave for the strategy.
//! - **decode** is a mutable stage, alone in its stage: it validates the
//!   message and turns ticks into a price and a notional.
//! - **book** and **risk** run in parallel, both after decode. The book keeps
//!   each instrument's top of book (counting top-of-book updates) and writes
//!   the spread into the event; risk keeps each instrument's position against
//!   position and notional limits (counting breaches) and writes its verdict.
//!   They write disjoint atomic fields, with `Relaxed` stores: the pipeline's
//!   gating (each stage releases its sequence after a batch, the next stage
//!   acquires it) orders those stores before the strategy's loads.
//! - **strategy** runs after both: it signals when a valid tick finds a tight
//!   spread and risk within limits, and records publish-to-strategy latency
//!   in an `hdrhistogram` created (and its pages touched) on its own thread,
//!   with fixed bounds so that recording never allocates.
//!
//! Two phases, each on a freshly built pipeline:
//!
//! 1. **Throughput**: publish `--events` ticks flat out; print events/s and
//!    each stage's average batch (events per `on_batch_start`).
//! 2. **Latency**: publish `--latency-events` ticks paced at `--rate` (the
//!    producer spins until each tick is due, yielding between looks when it
//!    has no core of its own); print the publish → strategy latency
//!    percentiles (a flat-out run would only measure queueing). A second
//!    column measures from when each tick was *due*, so a stalled producer
//!    cannot hide delay (coordinated omission).
//!
//! **Feeds** (`--feeds N`): by default one feed publishes on the main thread
//! through the single-producer sequencer. With `--feeds 2` or more the same
//! graph is built with `build_multi_producer`, and N feed threads, like N
//! exchange gateways feeding one engine, publish into it through clones of
//! the `MultiProducer` handle. Feed k owns the instruments whose id is k
//! modulo N and draws from its own seed; every tick carries its feed's id and
//! its feed's sequence number. In the throughput phase the feeds start
//! together (a `std::sync::Barrier`) and publish flat out; in the latency
//! phase each paces itself at `--rate / N` on a shared, interleaved schedule,
//! so the total is `--rate`. The feeds' ticks interleave in the ring in an
//! order no run repeats; each feed's own order is kept.
//!
//! **Verification**: every phase is replayed serially afterwards, through the
//! same stage code, from the same seed(s). The example exits with status 1
//! unless every stage handled every event exactly once and in order, and the
//! strategy's checksums of what it read (decode's writes, book's and risk's
//! annotations) and every stage's counters equal the replay's; with status 2
//! when tickring refuses the configuration (`--ring-size 1000`, say). With
//! several feeds the replay runs feed after feed, and the checks are per
//! feed: its ticks reached the strategy in its own order with none missing
//! or repeated, and their count and checksums equal its replay's. The book
//! and risk keep state per instrument only and an instrument belongs to one
//! feed, so what they compute does not depend on how the feeds interleave:
//! their annotations are checked per feed and their counters as totals,
//! exactly, not as looser order-independent aggregates.
//!
//! **Threads**: with at least N + 4 cores the feeds and the 4 handlers are
//! each pinned to a core of their own and handlers busy-spin; with fewer,
//! nothing is pinned and handlers yield (never busy-spin more threads than
//! cores).
//!
//! ```text
//! cargo run --release --example market_data                         # both phases: about 3-5 s on 2 idle cores
//! cargo run --release --example market_data -- --quick              # ~1 s smoke run (CI)
//! cargo run --release --example market_data -- --feeds 2            # two feed threads, multi-producer
//! cargo run --release --example market_data -- --feeds 2 --quick    # ~1-2 s smoke run of the same
//! cargo run --release --example market_data -- --help               # every flag
//! ```

use std::fmt::Write as _;
use std::hint::spin_loop;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tickring::{
    available_cores, build_multi_producer, build_single_producer, pin_current_thread, Blocking,
    BuildError, Builder, BusySpin, EventHandler, MultiProducer, MutEventHandler, Producer,
    PublishError, ShutdownReport, Sleeping, WaitStrategy, Yielding,
};

// ---------------------------------------------------------------------------
// Settings

const INSTRUMENTS: usize = 500;
/// Half of the flow goes to the first `HOT_INSTRUMENTS`, as on a real feed.
const HOT_INSTRUMENTS: u64 = 20;
/// The strategy signals at a spread of at most this many ticks.
const TIGHT_SPREAD_TICKS: u32 = 2;
const POSITION_LIMIT_LOTS: i64 = 5_000;
const NOTIONAL_LIMIT: f64 = 50_000_000.0;
/// The highest latency the histogram tells apart: 10 s (slower ones saturate).
const LATENCY_CEILING_NS: u64 = 10_000_000_000;

/// Handler threads the pipeline runs; each feed is one more thread.
const HANDLERS: usize = 4;
/// The most `--feeds`: each feed owns at least one of the hot instruments.
const MAX_FEEDS: usize = 16;
const _: () = assert!(MAX_FEEDS <= HOT_INSTRUMENTS as usize && MAX_FEEDS <= u8::MAX as usize);
const DECODE: &str = "decode";
const BOOK: &str = "book";
const RISK: &str = "risk";
const STRATEGY: &str = "strategy";

const DEFAULT_EVENTS: u64 = 5_000_000;
const DEFAULT_LATENCY_EVENTS: u64 = 200_000;
const DEFAULT_RATE: u64 = 100_000;
const DEFAULT_RING_SIZE: usize = 65_536;
const QUICK_EVENTS: u64 = 2_000_000;
const QUICK_LATENCY_EVENTS: u64 = 50_000;

const THROUGHPUT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const LATENCY_SEED: u64 = 0xD1B5_4A32_D192_ED03;
/// The latency phase's first tick is due this long after publishing starts.
const FIRST_DUE_LEAD_NS: u64 = 1_000_000;

// ---------------------------------------------------------------------------
// The event

/// One market-data message: a 64-byte slot of the ring.
///
/// Written in three steps, each by one owner at a time: the producer writes
/// the wire fields (and `feed`), decode (`&mut`, alone in its stage) the
/// decoded ones, and book and risk one atomic annotation each, for the
/// strategy.
#[repr(C)]
#[derive(Debug, Default)]
struct Tick {
    // Wire fields, written by the producer.
    /// Price in the instrument's ticks (0: corrupt).
    raw_price_ticks: u64,
    /// When the exchange sent it: a synthetic clock in phase 1; in phase 2 the
    /// moment the tick was due, in ns since the run's base `Instant`.
    exchange_ns: u64,
    /// When the producer published it, in ns since the base `Instant`
    /// (stamped in the latency phase only).
    publish_ns: u64,
    /// The feed's own sequence number (per feed, from 0): the strategy checks
    /// order and gaps.
    feed_sequence: u64,
    /// Lots (0: corrupt).
    raw_size: u32,
    /// Index into the reference data (out of range: corrupt).
    instrument: u16,
    kind: Kind,
    // Decoded fields, written by the decode stage.
    valid: bool,
    price: f64,
    notional: f64,
    // Annotations, written by the parallel stages.
    /// Written by book: the instrument's spread after this tick, in ticks.
    spread_ticks: AtomicU32,
    /// Written by risk: a `RiskVerdict`.
    risk: AtomicU8,
    /// A wire field, written by the producer: which feed published the tick
    /// (0 with one feed). It takes a byte of what was padding at the end of
    /// the line; next to the other wire fields, `repr(C)` would make the
    /// event 72 bytes.
    feed: u8,
}

// One cache line of event. tickring puts an 8-byte publication stamp in front
// of each event and aligns slots to 64 bytes, so a slot takes two lines. With
// Tick's natural alignment (8) the stamp shares the first line with the wire
// and decoded fields, which a waiting decode stage then reads in the same
// transfer; `align(64)` would leave the stamp on a line of its own.
const _: () = assert!(std::mem::size_of::<Tick>() == 64);

#[repr(u8)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    #[default]
    BidQuote,
    AskQuote,
    BuyTrade,
    SellTrade,
}

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RiskVerdict {
    /// The tick was invalid: nothing to check.
    NotChecked = 0,
    Within = 1,
    Breached = 2,
}

/// `Tick::spread_ticks` when there is no spread to speak of: a side is
/// missing, the book is locked or crossed, or the tick was invalid.
const NO_SPREAD: u32 = u32::MAX;

/// Static reference data, as a feed handler loads it at start of day.
#[derive(Debug, Clone, Copy)]
struct Instrument {
    tick_size: f64,
    multiplier: f64,
    first_mid_ticks: u64,
}

fn reference_data() -> Arc<[Instrument]> {
    const TICK_SIZES: [f64; 5] = [0.01, 0.05, 0.1, 0.25, 0.5];
    const MULTIPLIERS: [f64; 4] = [1.0, 10.0, 50.0, 100.0];
    (0..INSTRUMENTS)
        .map(|index| Instrument {
            tick_size: TICK_SIZES[index % TICK_SIZES.len()],
            multiplier: MULTIPLIERS[index % MULTIPLIERS.len()],
            first_mid_ticks: 1_000 + (index as u64 * 7_919) % 20_000,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The feed

/// xorshift64*: deterministic, fast, good enough for a synthetic feed.
struct XorShift64(u64);

impl XorShift64 {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Quotes and trades around a random-walking mid price per instrument.
///
/// Feed `id` of `feeds` publishes only the instruments whose id is `id`
/// modulo `feeds` (all of them with one feed), so no instrument's quotes
/// come from two feeds.
struct Feed {
    random: XorShift64,
    mid_ticks: Vec<u64>,
    next_feed_sequence: u64,
    id: u8,
    feeds: u64,
    /// How many instruments, and how many of the hot ones, this feed owns.
    owned: u64,
    owned_hot: u64,
}

impl Feed {
    /// Feed `id` of `feeds`, its draws seeded from the phase's `seed`.
    fn new(seed: u64, reference: &[Instrument], id: usize, feeds: usize) -> Self {
        assert!(id < feeds && feeds <= MAX_FEEDS, "feed {id} of {feeds}");
        let owned_of = |count: u64| (count + (feeds - 1 - id) as u64) / feeds as u64;
        Self {
            random: XorShift64(feed_seed(seed, id) | 1),
            mid_ticks: reference.iter().map(|i| i.first_mid_ticks).collect(),
            next_feed_sequence: 0,
            id: id as u8,
            feeds: feeds as u64,
            owned: owned_of(INSTRUMENTS as u64),
            owned_hot: owned_of(HOT_INSTRUMENTS),
        }
    }

    /// The ticks of a phase of `events` ticks that this feed publishes: those
    /// whose index across all feeds is `id`, `id + feeds`, `id + 2 × feeds`...
    fn share(&self, events: u64) -> std::iter::StepBy<std::ops::Range<u64>> {
        (u64::from(self.id)..events).step_by(self.feeds as usize)
    }

    /// Writes every wire field of the next message into `tick` (a reused
    /// slot: nothing may be left from its previous lap).
    #[inline]
    fn write_next(&mut self, tick: &mut Tick, exchange_ns: u64) {
        // One draw per message; its bits pick everything.
        let bits = self.random.next();
        // The n-th instrument this feed owns (with one feed: instrument n).
        // One feed divides by constants, which compile to multiplications,
        // so the single-producer path pays no division per tick.
        let nth_owned = match (self.feeds, bits & 1 == 0) {
            (1, true) => (bits >> 1) % HOT_INSTRUMENTS,
            (1, false) => (bits >> 1) % INSTRUMENTS as u64,
            (_, true) => (bits >> 1) % self.owned_hot,
            (_, false) => (bits >> 1) % self.owned,
        };
        let instrument = (nth_owned * self.feeds + u64::from(self.id)) as usize;
        let mid = &mut self.mid_ticks[instrument];
        match (bits >> 20) & 7 {
            0 if *mid > 100 => *mid -= 1,
            1 => *mid += 1,
            _ => {}
        }
        let offset = (bits >> 23) & 3;
        let (kind, price_ticks) = match (bits >> 25) % 10 {
            0..=3 => (Kind::BidQuote, *mid - offset),
            4..=7 => (Kind::AskQuote, *mid + 1 + offset),
            8 => (Kind::BuyTrade, *mid + 1),
            _ => (Kind::SellTrade, *mid),
        };
        let corrupt_size = (bits >> 40) & 1023 == 0;
        let unknown_instrument = (bits >> 50) & 4095 == 0;
        tick.kind = kind;
        tick.instrument = if unknown_instrument {
            (INSTRUMENTS + 7) as u16
        } else {
            instrument as u16
        };
        tick.raw_price_ticks = price_ticks;
        tick.raw_size = if corrupt_size {
            0
        } else {
            1 + ((bits >> 30) % 100) as u32
        };
        tick.exchange_ns = exchange_ns;
        tick.publish_ns = 0;
        tick.feed_sequence = self.next_feed_sequence;
        tick.feed = self.id;
        self.next_feed_sequence += 1;
    }
}

/// Feed `id`'s seed within a phase; feed 0 draws from the phase's own seed.
fn feed_seed(phase_seed: u64, id: usize) -> u64 {
    phase_seed ^ (id as u64).wrapping_mul(0xA076_1D64_78BD_642F)
}

// ---------------------------------------------------------------------------
// Stage logic: the same code runs in the pipeline and in the serial replay

/// What a run computed. The pipeline's and the serial replay's must be equal.
/// Each field is owned by one stage; the other stages leave it zero.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    /// decode: ticks that failed validation.
    invalid_ticks: u64,
    /// book: quotes that changed a best price or size.
    top_of_book_updates: u64,
    /// book: updates that left an instrument locked or crossed.
    locked_or_crossed: u64,
    /// risk: instruments going from within limits to a breach.
    risk_breaches: u64,
    /// strategy: tight spread and risk within limits.
    signals: u64,
    /// strategy: ticks out of their feed's order, or not at the next ring
    /// sequence.
    out_of_order: u64,
    /// strategy: what it read from each feed's ticks (`MAX_FEEDS` entries,
    /// the unused ones as the strategy started them).
    feeds: [FeedTally; MAX_FEEDS],
}

/// What the strategy read from one feed's ticks, in that feed's order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct FeedTally {
    ticks: u64,
    /// A checksum of the decoded fields.
    decoded_checksum: u64,
    /// A checksum of book's and risk's annotations.
    annotation_checksum: u64,
}

impl Outcome {
    fn absorb(&mut self, part: &Outcome) {
        self.invalid_ticks += part.invalid_ticks;
        self.top_of_book_updates += part.top_of_book_updates;
        self.locked_or_crossed += part.locked_or_crossed;
        self.risk_breaches += part.risk_breaches;
        self.signals += part.signals;
        self.out_of_order += part.out_of_order;
        for (tally, part) in self.feeds.iter_mut().zip(&part.feeds) {
            tally.ticks += part.ticks;
            tally.decoded_checksum = tally.decoded_checksum.wrapping_add(part.decoded_checksum);
            tally.annotation_checksum = tally
                .annotation_checksum
                .wrapping_add(part.annotation_checksum);
        }
    }

    /// Each way this outcome differs from `expected`, one line each.
    fn differences(&self, expected: &Outcome) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, got, want) in [
            ("invalid ticks", self.invalid_ticks, expected.invalid_ticks),
            (
                "top-of-book updates",
                self.top_of_book_updates,
                expected.top_of_book_updates,
            ),
            (
                "locked/crossed",
                self.locked_or_crossed,
                expected.locked_or_crossed,
            ),
            ("risk breaches", self.risk_breaches, expected.risk_breaches),
            ("signals", self.signals, expected.signals),
            ("out of order", self.out_of_order, expected.out_of_order),
        ] {
            if got != want {
                lines.push(format!("{name}: pipeline {got}, replay {want}"));
            }
        }
        for (feed, (got, want)) in self.feeds.iter().zip(&expected.feeds).enumerate() {
            if got.ticks != want.ticks {
                lines.push(format!(
                    "feed {feed} ticks: pipeline {}, replay {}",
                    got.ticks, want.ticks
                ));
            }
            for (name, got, want) in [
                (
                    "decoded checksum",
                    got.decoded_checksum,
                    want.decoded_checksum,
                ),
                (
                    "annotation checksum",
                    got.annotation_checksum,
                    want.annotation_checksum,
                ),
            ] {
                if got != want {
                    lines.push(format!(
                        "feed {feed} {name}: pipeline {got:#018x}, replay {want:#018x}"
                    ));
                }
            }
        }
        lines
    }
}

/// An order-sensitive 64-bit FNV-1a over words.
#[derive(Debug, Clone, Copy)]
struct Checksum(u64);

impl Checksum {
    const EMPTY: Self = Self(0xCBF2_9CE4_8422_2325);

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0x0000_0100_0000_01B3);
    }
}

/// The decode stage: validates and normalizes the wire fields.
struct Decoder {
    reference: Arc<[Instrument]>,
    invalid_ticks: u64,
}

impl Decoder {
    fn new(reference: Arc<[Instrument]>) -> Self {
        Self {
            reference,
            invalid_ticks: 0,
        }
    }

    #[inline]
    fn decode(&mut self, tick: &mut Tick) {
        match self.reference.get(usize::from(tick.instrument)) {
            Some(instrument) if tick.raw_price_ticks > 0 && tick.raw_size > 0 => {
                tick.valid = true;
                tick.price = tick.raw_price_ticks as f64 * instrument.tick_size;
                tick.notional = tick.price * f64::from(tick.raw_size) * instrument.multiplier;
            }
            _ => {
                tick.valid = false;
                tick.price = 0.0;
                tick.notional = 0.0;
                self.invalid_ticks += 1;
            }
        }
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            invalid_ticks: self.invalid_ticks,
            ..Outcome::default()
        }
    }
}

/// The logic of a stage that reads ticks (and may write its own atomic
/// annotation into them).
trait ReadStage {
    fn on_tick(&mut self, tick: &Tick, sequence: i64);
    fn outcome(&self) -> Outcome;
    /// The latency histograms, from the stage that records them.
    fn take_latency(&mut self) -> Option<Box<LatencyHistograms>> {
        None
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Level {
    price_ticks: u64,
    size: u32,
}

impl Level {
    /// Sets the level; returns whether it changed.
    fn replace(&mut self, price_ticks: u64, size: u32) -> bool {
        let changed = (self.price_ticks, self.size) != (price_ticks, size);
        *self = Level { price_ticks, size };
        changed
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct TopOfBook {
    bid: Level,
    ask: Level,
}

/// The book stage: the best bid and ask of every instrument.
struct OrderBook {
    tops: Vec<TopOfBook>,
    top_of_book_updates: u64,
    locked_or_crossed: u64,
}

impl OrderBook {
    fn new() -> Self {
        Self {
            tops: vec![TopOfBook::default(); INSTRUMENTS],
            top_of_book_updates: 0,
            locked_or_crossed: 0,
        }
    }

    /// Applies a quote; returns the instrument's spread after it.
    #[inline]
    fn apply(&mut self, tick: &Tick) -> u32 {
        if !tick.valid {
            return NO_SPREAD;
        }
        // `valid` means decode found the instrument, so the index is in range.
        let top = &mut self.tops[usize::from(tick.instrument)];
        let changed = match tick.kind {
            Kind::BidQuote => top.bid.replace(tick.raw_price_ticks, tick.raw_size),
            Kind::AskQuote => top.ask.replace(tick.raw_price_ticks, tick.raw_size),
            Kind::BuyTrade | Kind::SellTrade => false,
        };
        self.top_of_book_updates += u64::from(changed);
        let (bid, ask) = (top.bid.price_ticks, top.ask.price_ticks);
        if bid == 0 || ask == 0 {
            return NO_SPREAD;
        }
        if ask <= bid {
            self.locked_or_crossed += u64::from(changed);
            return NO_SPREAD;
        }
        (ask - bid).min(u64::from(NO_SPREAD - 1)) as u32
    }
}

impl ReadStage for OrderBook {
    #[inline]
    fn on_tick(&mut self, tick: &Tick, _sequence: i64) {
        let spread = self.apply(tick);
        // Relaxed: this stage stores its sequence (release) after the batch and
        // the strategy loads it (acquire) before reading the tick, which orders
        // this store before the strategy's load.
        tick.spread_ticks.store(spread, Ordering::Relaxed);
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            top_of_book_updates: self.top_of_book_updates,
            locked_or_crossed: self.locked_or_crossed,
            ..Outcome::default()
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Exposure {
    position_lots: i64,
    breached: bool,
}

/// The risk stage: each instrument's position (trades are our fills) against
/// a position limit and a notional limit.
struct RiskBook {
    reference: Arc<[Instrument]>,
    exposures: Vec<Exposure>,
    breaches: u64,
}

impl RiskBook {
    fn new(reference: Arc<[Instrument]>) -> Self {
        Self {
            reference,
            exposures: vec![Exposure::default(); INSTRUMENTS],
            breaches: 0,
        }
    }

    #[inline]
    fn check(&mut self, tick: &Tick) -> RiskVerdict {
        if !tick.valid {
            return RiskVerdict::NotChecked;
        }
        let index = usize::from(tick.instrument);
        let exposure = &mut self.exposures[index];
        let traded_lots = match tick.kind {
            Kind::BuyTrade => i64::from(tick.raw_size),
            Kind::SellTrade => -i64::from(tick.raw_size),
            Kind::BidQuote | Kind::AskQuote => 0,
        };
        if traded_lots != 0 {
            exposure.position_lots += traded_lots;
            let exposure_notional = exposure.position_lots.unsigned_abs() as f64
                * tick.price
                * self.reference[index].multiplier;
            let breached = exposure.position_lots.abs() > POSITION_LIMIT_LOTS
                || exposure_notional > NOTIONAL_LIMIT;
            self.breaches += u64::from(breached && !exposure.breached);
            exposure.breached = breached;
        }
        if exposure.breached {
            RiskVerdict::Breached
        } else {
            RiskVerdict::Within
        }
    }
}

impl ReadStage for RiskBook {
    #[inline]
    fn on_tick(&mut self, tick: &Tick, _sequence: i64) {
        let verdict = self.check(tick);
        // Relaxed: as for the book's spread.
        tick.risk.store(verdict as u8, Ordering::Relaxed);
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            risk_breaches: self.breaches,
            ..Outcome::default()
        }
    }
}

/// Publish → strategy latencies, recorded by the strategy stage.
struct LatencyHistograms {
    base: Instant,
    /// From the producer's publish stamp: the pipeline's own latency.
    publish_to_strategy: Histogram<u64>,
    /// From when the tick was due: also counts any delay of the producer.
    due_to_strategy: Histogram<u64>,
}

impl LatencyHistograms {
    /// Allocates both histograms with fixed bounds (recording never resizes)
    /// and writes every count once, so no page faults on the hot path.
    fn new(base: Instant) -> Self {
        let histogram = || {
            let mut histogram = Histogram::new_with_bounds(1, LATENCY_CEILING_NS, 3)
                .expect("1 ns ..= 10 s with 3 significant figures is a valid histogram");
            histogram.reset();
            histogram
        };
        Self {
            base,
            publish_to_strategy: histogram(),
            due_to_strategy: histogram(),
        }
    }

    #[inline]
    fn record(&mut self, tick: &Tick) {
        let now = nanos_since(self.base);
        self.publish_to_strategy
            .saturating_record(now.saturating_sub(tick.publish_ns));
        self.due_to_strategy
            .saturating_record(now.saturating_sub(tick.exchange_ns));
    }
}

/// What the strategy keeps per feed: where the feed is, and what it read.
#[derive(Debug, Clone, Copy)]
struct FeedState {
    next_feed_sequence: u64,
    ticks: u64,
    decoded: Checksum,
    annotations: Checksum,
}

impl FeedState {
    const START: Self = Self {
        next_feed_sequence: 0,
        ticks: 0,
        decoded: Checksum::EMPTY,
        annotations: Checksum::EMPTY,
    };
}

/// The strategy stage: signals on a tight spread with risk within limits,
/// and checks what it read.
struct Strategy {
    next_sequence: i64,
    out_of_order: u64,
    signals: u64,
    /// Indexed by `Tick::feed`. The checksums are per feed because feeds
    /// interleave differently in every run, while each feed's own order, and
    /// what the stages compute from it, is fixed.
    feeds: [FeedState; MAX_FEEDS],
    latency: Option<Box<LatencyHistograms>>,
}

impl Strategy {
    fn new(latency: Option<Box<LatencyHistograms>>) -> Self {
        Self {
            next_sequence: 0,
            out_of_order: 0,
            signals: 0,
            feeds: [FeedState::START; MAX_FEEDS],
            latency,
        }
    }
}

impl ReadStage for Strategy {
    #[inline]
    fn on_tick(&mut self, tick: &Tick, sequence: i64) {
        // Every ring sequence once, in order; and within each feed, every feed
        // sequence once, in order (with one feed the two are the same).
        let mut in_order = sequence == self.next_sequence;
        self.next_sequence = sequence + 1;

        // Relaxed: see the stores in `OrderBook` and `RiskBook`.
        let spread = tick.spread_ticks.load(Ordering::Relaxed);
        let risk = tick.risk.load(Ordering::Relaxed);
        if let Some(feed) = self.feeds.get_mut(usize::from(tick.feed)) {
            in_order &= tick.feed_sequence == feed.next_feed_sequence;
            feed.next_feed_sequence = tick.feed_sequence + 1;
            feed.ticks += 1;
            feed.decoded.add(tick.price.to_bits());
            feed.decoded
                .add(tick.notional.to_bits() ^ u64::from(tick.valid));
            feed.annotations
                .add(u64::from(spread) << 8 | u64::from(risk));
        } else {
            in_order = false;
        }
        self.out_of_order += u64::from(!in_order);

        let tight = (1..=TIGHT_SPREAD_TICKS).contains(&spread);
        if tick.valid && tight && risk == RiskVerdict::Within as u8 {
            self.signals += 1;
        }
        if let Some(latency) = &mut self.latency {
            latency.record(tick);
        }
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            signals: self.signals,
            out_of_order: self.out_of_order,
            feeds: self.feeds.map(|feed| FeedTally {
                ticks: feed.ticks,
                decoded_checksum: feed.decoded.0,
                annotation_checksum: feed.annotations.0,
            }),
            ..Outcome::default()
        }
    }

    fn take_latency(&mut self) -> Option<Box<LatencyHistograms>> {
        self.latency.take()
    }
}

/// Replays a phase of `events` ticks from `feeds` feeds seeded from `seed`
/// through the same stage code, one stage after the other on this thread,
/// and one feed after the other: each feed's share, in its own order.
///
/// The pipeline interleaves the feeds some other way, but that changes
/// nothing the checks compare. The book and risk keep state per instrument
/// and an instrument belongs to one feed, so each tick meets the same state
/// as here; the counters are sums; the checksums are per feed.
fn replay_serially(seed: u64, events: u64, feeds: usize, reference: &Arc<[Instrument]>) -> Outcome {
    let mut decoder = Decoder::new(Arc::clone(reference));
    let mut book = OrderBook::new();
    let mut risk = RiskBook::new(Arc::clone(reference));
    let mut strategy = Strategy::new(None);
    let mut tick = Tick::default();
    let mut sequence = 0;
    for id in 0..feeds {
        let mut feed = Feed::new(seed, reference, id, feeds);
        for _ in feed.share(events) {
            feed.write_next(&mut tick, 0);
            decoder.decode(&mut tick);
            book.on_tick(&tick, sequence);
            risk.on_tick(&tick, sequence);
            strategy.on_tick(&tick, sequence);
            sequence += 1;
        }
    }
    let mut outcome = decoder.outcome();
    for part in [book.outcome(), risk.outcome(), strategy.outcome()] {
        outcome.absorb(&part);
    }
    outcome
}

// ---------------------------------------------------------------------------
// Handlers: stage logic plus counting, run on the pipeline's threads

/// What every stage counts about its own work.
#[derive(Debug, Default, Clone, Copy)]
struct StageCounts {
    events: u64,
    batches: u64,
    largest_batch: i64,
}

impl StageCounts {
    fn average_batch(&self) -> f64 {
        self.events as f64 / self.batches.max(1) as f64
    }
}

/// What a stage sends home from `on_shutdown`, on its own thread.
struct StageReport {
    stage: &'static str,
    counts: StageCounts,
    outcome: Outcome,
    latency: Option<Box<LatencyHistograms>>,
}

/// A handler: a stage's logic, its counts, and the way home for its report.
struct Stage<L> {
    name: &'static str,
    logic: L,
    counts: StageCounts,
    reports: mpsc::Sender<StageReport>,
}

impl<L> Stage<L> {
    fn new(name: &'static str, logic: L, reports: mpsc::Sender<StageReport>) -> Self {
        Self {
            name,
            logic,
            counts: StageCounts::default(),
            reports,
        }
    }

    #[inline]
    fn batch_started(&mut self, batch_size: i64) {
        self.counts.batches += 1;
        self.counts.largest_batch = self.counts.largest_batch.max(batch_size);
    }

    fn send_report(&self, outcome: Outcome, latency: Option<Box<LatencyHistograms>>) {
        // The receiver lives until the pipeline is joined; an error is impossible.
        let _ = self.reports.send(StageReport {
            stage: self.name,
            counts: self.counts,
            outcome,
            latency,
        });
    }
}

impl MutEventHandler<Tick> for Stage<Decoder> {
    #[inline]
    fn on_event(&mut self, tick: &mut Tick, _sequence: i64, _end_of_batch: bool) {
        self.counts.events += 1;
        self.logic.decode(tick);
    }

    #[inline]
    fn on_batch_start(&mut self, batch_size: i64, _queue_depth: i64) {
        self.batch_started(batch_size);
    }

    fn on_shutdown(&mut self) {
        self.send_report(self.logic.outcome(), None);
    }
}

impl<L: ReadStage> EventHandler<Tick> for Stage<L> {
    #[inline]
    fn on_event(&mut self, tick: &Tick, sequence: i64, _end_of_batch: bool) {
        self.counts.events += 1;
        self.logic.on_tick(tick, sequence);
    }

    #[inline]
    fn on_batch_start(&mut self, batch_size: i64, _queue_depth: i64) {
        self.batch_started(batch_size);
    }

    fn on_shutdown(&mut self) {
        let latency = self.logic.take_latency();
        self.send_report(self.logic.outcome(), latency);
    }
}

// ---------------------------------------------------------------------------
// Running a phase

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Publish flat out.
    Throughput { events: u64 },
    /// Publish one tick every `1 / rate` seconds.
    Latency { events: u64, rate: u64 },
}

impl Phase {
    fn events(self) -> u64 {
        match self {
            Phase::Throughput { events } | Phase::Latency { events, .. } => events,
        }
    }

    fn seed(self) -> u64 {
        match self {
            Phase::Throughput { .. } => THROUGHPUT_SEED,
            Phase::Latency { .. } => LATENCY_SEED,
        }
    }
}

/// Which core each thread is pinned to; `None`: wherever the OS puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    /// One entry per feed. With one feed it publishes on the main thread (the
    /// producer); with more, each feed has a thread of its own.
    feeds: Vec<Option<usize>>,
    decode: Option<usize>,
    book: Option<usize>,
    risk: Option<usize>,
    strategy: Option<usize>,
}

impl Placement {
    /// Nothing pinned, for `feeds` feeds.
    fn unpinned(feeds: usize) -> Self {
        Self {
            feeds: vec![None; feeds],
            decode: None,
            book: None,
            risk: None,
            strategy: None,
        }
    }

    /// A core of its own for each feed and each of the 4 handlers, or no
    /// pinning at all: with fewer cores a static split would stack spinning
    /// threads.
    fn plan(cores: &[usize], pin: bool, feeds: usize) -> Self {
        let threads = feeds + HANDLERS;
        if !pin || cores.len() < threads {
            return Self::unpinned(feeds);
        }
        // Linux routes most interrupts to core 0: leave it alone when we can.
        let usable = if cores.len() > threads {
            &cores[1..]
        } else {
            cores
        };
        let handlers = &usable[feeds..];
        Self {
            feeds: usable[..feeds].iter().copied().map(Some).collect(),
            decode: Some(handlers[0]),
            book: Some(handlers[1]),
            risk: Some(handlers[2]),
            strategy: Some(handlers[3]),
        }
    }

    fn is_pinned(&self) -> bool {
        self.feeds.first().is_some_and(Option::is_some)
    }

    fn describe(&self) -> String {
        let feed_names: Vec<String> = if self.feeds.len() == 1 {
            vec!["producer".to_owned()]
        } else {
            (0..self.feeds.len())
                .map(|id| format!("feed {id}"))
                .collect()
        };
        let handlers = [
            (DECODE, self.decode),
            (BOOK, self.book),
            (RISK, self.risk),
            (STRATEGY, self.strategy),
        ];
        let threads = feed_names
            .iter()
            .map(String::as_str)
            .zip(self.feeds.iter().copied())
            .chain(handlers);
        let pinned: Vec<String> = threads
            .filter_map(|(name, core)| core.map(|core| format!("{name} → core {core}")))
            .collect();
        pinned.join(", ")
    }
}

/// Pins the handler just added, if the placement gives it a core.
fn pinned<W: WaitStrategy, K>(
    builder: Builder<Tick, W, K>,
    core: Option<usize>,
) -> Builder<Tick, W, K> {
    match core {
        Some(core) => builder.pin_at_core(core),
        None => builder,
    }
}

/// How well a feed kept to the schedule of the latency phase.
#[derive(Debug, Default, Clone, Copy)]
struct Pacing {
    /// The schedule's interval: between any two ticks, of whichever feeds.
    interval_ns: u64,
    /// Ticks published more than one interval after they were due.
    late: u64,
    max_lateness_ns: u64,
}

impl Pacing {
    /// The feeds' pacing together.
    fn merge(self, other: Pacing) -> Pacing {
        Pacing {
            interval_ns: self.interval_ns.max(other.interval_ns),
            late: self.late + other.late,
            max_lateness_ns: self.max_lateness_ns.max(other.max_lateness_ns),
        }
    }
}

/// What a phase did, for the report and the checks.
struct PhaseRun {
    phase: Phase,
    /// How many feeds published it.
    feeds: usize,
    /// From the first publish until shutdown returned (every tick handled).
    elapsed: Duration,
    /// Events each handler had still to handle when the last was published
    /// (with several feeds: once every feed thread had finished).
    lags_at_last_publish: Vec<(String, u64)>,
    /// Free slots at that moment, and the ring's size.
    free_slots_at_last_publish: (usize, usize),
    publish_error: Option<PublishError>,
    shutdown: ShutdownReport,
    stages: Vec<(&'static str, StageCounts)>,
    outcome: Outcome,
    latency: Option<Box<LatencyHistograms>>,
    pacing: Option<Pacing>,
}

/// Nanoseconds since `base`: the one clock every thread stamps and reads.
#[inline]
fn nanos_since(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// The publishing end of a pipeline: its one producer, or the first handle
/// of a multi-producer pipeline, cloned for each feed.
// The single producer's cache-padded fields make it the large variant; a
// `Publisher` is made once per phase and unwrapped at once, so boxing it
// would only move the feed's producer to the heap for nothing.
#[allow(clippy::large_enum_variant)]
enum Publisher<W: WaitStrategy> {
    Single(Producer<Tick, W>),
    Multi(MultiProducer<Tick, W>),
}

/// `publish` on either kind of producer, so one feed loop serves both.
trait PublishTick {
    fn publish_tick<F: FnOnce(&mut Tick)>(&mut self, fill: F) -> Result<i64, PublishError>;
}

impl<W: WaitStrategy> PublishTick for Producer<Tick, W> {
    #[inline]
    fn publish_tick<F: FnOnce(&mut Tick)>(&mut self, fill: F) -> Result<i64, PublishError> {
        self.publish(fill)
    }
}

impl<W: WaitStrategy> PublishTick for MultiProducer<Tick, W> {
    #[inline]
    fn publish_tick<F: FnOnce(&mut Tick)>(&mut self, fill: F) -> Result<i64, PublishError> {
        self.publish(fill)
    }
}

/// A pipeline built for one phase, and where its stages will report.
struct Pipeline<W: WaitStrategy> {
    publisher: Publisher<W>,
    reports_home: mpsc::Receiver<StageReport>,
}

/// Builds the phase's graph with the single-producer sequencer for one feed,
/// with the multi-producer one for more. The graph is the same either way.
fn build_pipeline<W: WaitStrategy + Default>(
    phase: Phase,
    settings: &Settings,
    placement: &Placement,
    reference: &Arc<[Instrument]>,
    base: Instant,
) -> Result<Pipeline<W>, BuildError> {
    let (reports, reports_home) = mpsc::channel();
    let record_latency = matches!(phase, Phase::Latency { .. });
    let (size, wait) = (settings.ring_size, W::default());
    let publisher = if settings.feeds == 1 {
        let builder = build_single_producer(size, Tick::default, wait);
        let builder = add_stages(builder, placement, reference, reports, record_latency, base);
        Publisher::Single(builder.build()?)
    } else {
        let builder = build_multi_producer(size, Tick::default, wait);
        let builder = add_stages(builder, placement, reference, reports, record_latency, base);
        Publisher::Multi(builder.build()?)
    };
    Ok(Pipeline {
        publisher,
        reports_home,
    })
}

/// Adds decode → (book ∥ risk) → strategy to either kind of builder: the DSL
/// is the same for both, only `build()` differs.
fn add_stages<W: WaitStrategy, K>(
    builder: Builder<Tick, W, K>,
    placement: &Placement,
    reference: &Arc<[Instrument]>,
    reports: mpsc::Sender<StageReport>,
    record_latency: bool,
    base: Instant,
) -> Builder<Tick, W, K> {
    // Every handler is made by a factory on its own thread, so its state (and
    // the strategy's histograms) is first touched by the core that uses it.
    let (decode_reference, decode_reports) = (Arc::clone(reference), reports.clone());
    let (risk_reference, risk_reports) = (Arc::clone(reference), reports.clone());
    let book_reports = reports.clone();
    let builder = builder
        .handle_events_mut_with_factory(move || {
            Stage::new(DECODE, Decoder::new(decode_reference), decode_reports)
        })
        .thread_name(DECODE);
    let builder = pinned(builder, placement.decode)
        .and_then()
        .handle_events_with_factory(move || Stage::new(BOOK, OrderBook::new(), book_reports))
        .thread_name(BOOK);
    let builder = pinned(builder, placement.book)
        .handle_events_with_factory(move || {
            Stage::new(RISK, RiskBook::new(risk_reference), risk_reports)
        })
        .thread_name(RISK);
    let builder = pinned(builder, placement.risk)
        .and_then()
        .handle_events_with_factory(move || {
            let latency = record_latency.then(|| Box::new(LatencyHistograms::new(base)));
            Stage::new(STRATEGY, Strategy::new(latency), reports)
        })
        .thread_name(STRATEGY);
    pinned(builder, placement.strategy)
}

/// What one feed's publishing did.
struct FeedRun {
    publish_error: Option<PublishError>,
    pacing: Option<Pacing>,
}

/// Publishes `feed`'s share of the phase through `producer`: flat out, or
/// on the phase's schedule, whose first tick is due at `first_due_ns`.
/// `spin`: the feed has a core of its own to spin on until a tick is due.
fn publish_feed<P: PublishTick>(
    producer: &mut P,
    feed: &mut Feed,
    phase: Phase,
    first_due_ns: u64,
    spin: bool,
    base: Instant,
) -> FeedRun {
    let mut publish_error = None;
    let mut pacing = None;
    match phase {
        Phase::Throughput { events } => {
            for index in feed.share(events) {
                // A synthetic exchange clock: one message every 100 ns.
                let exchange_ns = index * 100;
                if let Err(error) = producer.publish_tick(|tick| feed.write_next(tick, exchange_ns))
                {
                    publish_error = Some(error);
                    break;
                }
            }
        }
        Phase::Latency { events, rate } => {
            let mut schedule = Pacing {
                interval_ns: 1_000_000_000 / rate,
                ..Pacing::default()
            };
            // One tick every 1/rate s, starting at `first_due_ns`; with N
            // feeds each takes every N-th of them, so it paces at rate / N.
            for index in feed.share(events) {
                let due_ns =
                    first_due_ns + (u128::from(index) * 1_000_000_000 / u128::from(rate)) as u64;
                let mut now_ns = nanos_since(base);
                while now_ns < due_ns {
                    if spin {
                        spin_loop();
                    } else {
                        // No core of its own: let a handler have this one meanwhile.
                        std::thread::yield_now();
                    }
                    now_ns = nanos_since(base);
                }
                let lateness_ns = now_ns - due_ns;
                schedule.late += u64::from(lateness_ns > schedule.interval_ns);
                schedule.max_lateness_ns = schedule.max_lateness_ns.max(lateness_ns);
                let published = producer.publish_tick(|tick| {
                    feed.write_next(tick, due_ns);
                    // Stamped last: everything before it is the feed's work.
                    tick.publish_ns = nanos_since(base);
                });
                if let Err(error) = published {
                    publish_error = Some(error);
                    break;
                }
            }
            pacing = Some(schedule);
        }
    }
    FeedRun {
        publish_error,
        pacing,
    }
}

/// What publishing a phase did, up to the drained shutdown.
struct Published {
    elapsed: Duration,
    lags_at_last_publish: Vec<(String, u64)>,
    free_slots_at_last_publish: (usize, usize),
    publish_error: Option<PublishError>,
    pacing: Option<Pacing>,
    shutdown: ShutdownReport,
}

/// One feed, publishing on this thread through the single producer.
fn publish_one<W: WaitStrategy>(
    mut producer: Producer<Tick, W>,
    phase: Phase,
    placement: &Placement,
    reference: &Arc<[Instrument]>,
    base: Instant,
) -> Published {
    let mut feed = Feed::new(phase.seed(), reference, 0, 1);
    let started = Instant::now();
    let first_due_ns = nanos_since(base) + FIRST_DUE_LEAD_NS;
    let spin = placement.is_pinned();
    let run = publish_feed(&mut producer, &mut feed, phase, first_due_ns, spin, base);
    let lags_at_last_publish = producer
        .handler_lags()
        .map(|(name, lag)| (name.to_owned(), lag))
        .collect();
    let free_slots_at_last_publish = (producer.remaining_capacity(), producer.capacity());
    let shutdown = producer.shutdown();
    Published {
        elapsed: started.elapsed(),
        lags_at_last_publish,
        free_slots_at_last_publish,
        publish_error: run.publish_error,
        pacing: run.pacing,
        shutdown,
    }
}

/// One thread per feed, each publishing through its own clone of the
/// multi-producer handle; they start together on a barrier.
fn publish_many<W: WaitStrategy>(
    producer: MultiProducer<Tick, W>,
    phase: Phase,
    placement: &Placement,
    reference: &Arc<[Instrument]>,
    base: Instant,
) -> Published {
    let feeds = placement.feeds.len();
    let start = Barrier::new(feeds + 1);
    // Set by the first feed past the barrier: one schedule for all of them.
    let first_due_ns = OnceLock::new();
    let (started, runs) = thread::scope(|scope| {
        let threads: Vec<_> = placement
            .feeds
            .iter()
            .enumerate()
            .map(|(id, &core)| {
                let mut producer = producer.clone();
                let (start, first_due_ns) = (&start, &first_due_ns);
                thread::Builder::new()
                    .name(format!("feed-{id}"))
                    .spawn_scoped(scope, move || {
                        if let Some(core) = core {
                            if !pin_current_thread(core) {
                                eprintln!(
                                    "market_data: warning: could not pin feed {id} to core {core}"
                                );
                            }
                        }
                        // Made on its own thread, as the handlers' state is.
                        let mut feed = Feed::new(phase.seed(), reference, id, feeds);
                        start.wait();
                        let first_due_ns =
                            *first_due_ns.get_or_init(|| nanos_since(base) + FIRST_DUE_LEAD_NS);
                        // This clone drops as the thread ends: the caller's
                        // handle stays the last one.
                        publish_feed(
                            &mut producer,
                            &mut feed,
                            phase,
                            first_due_ns,
                            core.is_some(),
                            base,
                        )
                    })
                    .expect("the OS starts a feed thread")
            })
            .collect();
        start.wait();
        let started = Instant::now();
        let runs: Vec<FeedRun> = threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        (started, runs)
    });
    let lags_at_last_publish = producer
        .handler_lags()
        .map(|(name, lag)| (name.to_owned(), lag))
        .collect();
    let free_slots_at_last_publish = (producer.remaining_capacity(), producer.capacity());
    let shutdown = producer
        .shutdown()
        .expect("every feed's clone ended with its thread: this handle is the last");
    let elapsed = started.elapsed();
    let publish_error = runs.iter().find_map(|run| run.publish_error);
    let pacing = runs
        .iter()
        .filter_map(|run| run.pacing)
        .reduce(Pacing::merge);
    Published {
        elapsed,
        lags_at_last_publish,
        free_slots_at_last_publish,
        publish_error,
        pacing,
        shutdown,
    }
}

/// Publishes the phase's ticks, shuts the pipeline down (draining it) and
/// gathers what every stage reported.
fn drive<W: WaitStrategy>(
    pipeline: Pipeline<W>,
    phase: Phase,
    placement: &Placement,
    reference: &Arc<[Instrument]>,
    base: Instant,
) -> PhaseRun {
    let Pipeline {
        publisher,
        reports_home,
    } = pipeline;
    let published = match publisher {
        Publisher::Single(producer) => publish_one(producer, phase, placement, reference, base),
        Publisher::Multi(producer) => publish_many(producer, phase, placement, reference, base),
    };

    // Every handler's thread has been joined: all reports are in the channel.
    let mut stages = Vec::new();
    let mut outcome = Outcome::default();
    let mut latency = None;
    for report in reports_home.try_iter() {
        stages.push((report.stage, report.counts));
        outcome.absorb(&report.outcome);
        latency = latency.or(report.latency);
    }
    // Reports arrive in the order the threads ended; print them in graph order.
    stages.sort_by_key(|(stage, _)| {
        [DECODE, BOOK, RISK, STRATEGY]
            .iter()
            .position(|s| s == stage)
    });
    PhaseRun {
        phase,
        feeds: placement.feeds.len(),
        elapsed: published.elapsed,
        lags_at_last_publish: published.lags_at_last_publish,
        free_slots_at_last_publish: published.free_slots_at_last_publish,
        publish_error: published.publish_error,
        shutdown: published.shutdown,
        stages,
        outcome,
        latency,
        pacing: published.pacing,
    }
}

/// Checks a phase against the serial replay; returns what is wrong.
fn verify(run: &PhaseRun, expected: &Outcome) -> Vec<String> {
    let events = run.phase.events();
    let mut problems = Vec::new();
    if let Some(error) = run.publish_error {
        problems.push(format!("publishing failed: {error}"));
    }
    for handler in &run.shutdown.handlers {
        if let Some(panic) = &handler.panic {
            problems.push(panic.to_string());
        }
        if handler.events_handled != events {
            problems.push(format!(
                "tickring reports that '{}' handled {} events, not {events}",
                handler.name, handler.events_handled
            ));
        }
    }
    for name in [DECODE, BOOK, RISK, STRATEGY] {
        match run.stages.iter().find(|(stage, _)| *stage == name) {
            None => problems.push(format!("stage '{name}' sent no report")),
            Some((_, counts)) if counts.events != events => problems.push(format!(
                "stage '{name}' counted {} events, not {events}",
                counts.events
            )),
            Some(_) => {}
        }
    }
    if run.outcome != *expected {
        problems.push(format!(
            "the pipeline's outcome differs from the serial replay's:\n      {}",
            run.outcome.differences(expected).join("\n      ")
        ));
    }
    if let Phase::Latency { .. } = run.phase {
        let recorded = run
            .latency
            .as_ref()
            .map_or(0, |latency| latency.publish_to_strategy.len());
        if recorded != events {
            problems.push(format!(
                "the latency histogram holds {recorded} samples, not {events}"
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// Reporting

/// `1234567` as `1,234,567`.
fn grouped(value: u64) -> String {
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

/// A duration in ns, in the unit that keeps it readable.
fn readable_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{} ns", grouped(ns)),
        10_000..=999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

fn print_throughput(run: &PhaseRun) {
    let events = run.phase.events();
    let seconds = run.elapsed.as_secs_f64();
    println!(
        "  throughput        {:.2} M events/s  ({} events in {:.3} s, publish to fully drained)",
        events as f64 / seconds / 1e6,
        grouped(events),
        seconds
    );
    print_batches_and_lags(run);
    print_outcome(run);
}

fn print_batches_and_lags(run: &PhaseRun) {
    let mut batches = String::new();
    for (stage, counts) in &run.stages {
        let _ = write!(
            batches,
            "{stage} {:.1} (max {}), ",
            counts.average_batch(),
            counts.largest_batch
        );
    }
    println!(
        "  average batch     {}  (events per on_batch_start)",
        batches.trim_end_matches(", ")
    );
    let lags: Vec<String> = run
        .lags_at_last_publish
        .iter()
        .map(|(name, lag)| format!("{name} {}", grouped(*lag)))
        .collect();
    let (free, capacity) = run.free_slots_at_last_publish;
    let when = if run.feeds == 1 {
        "at the last publish"
    } else {
        "when the last feed was done"
    };
    println!(
        "  lag               {}  (events not yet handled {when}; {} of {} slots free)",
        lags.join(", "),
        grouped(free as u64),
        grouped(capacity as u64)
    );
}

fn print_outcome(run: &PhaseRun) {
    let outcome = &run.outcome;
    if run.feeds > 1 {
        let feeds: Vec<String> = (0..run.feeds)
            .map(|id| format!("feed {id} {}", grouped(outcome.feeds[id].ticks)))
            .collect();
        println!(
            "  per feed          {} ticks  (as the strategy counted them)",
            feeds.join(", ")
        );
    }
    println!(
        "  results           {} invalid ticks | {} top-of-book updates, {} locked/crossed | {} risk breaches | {} signals",
        grouped(outcome.invalid_ticks),
        grouped(outcome.top_of_book_updates),
        grouped(outcome.locked_or_crossed),
        grouped(outcome.risk_breaches),
        grouped(outcome.signals),
    );
}

fn print_latency(run: &PhaseRun) {
    if let Some(pacing) = run.pacing {
        let achieved = run.phase.events() as f64 / run.elapsed.as_secs_f64();
        println!(
            "  pacing            {} events/s achieved; {} ticks sent more than one interval late (max {} late)",
            grouped(achieved as u64),
            grouped(pacing.late),
            readable_ns(pacing.max_lateness_ns)
        );
    }
    print_batches_and_lags(run);
    print_outcome(run);
    let Some(latency) = &run.latency else {
        return;
    };
    let (publish, due) = (&latency.publish_to_strategy, &latency.due_to_strategy);
    println!();
    println!("  latency to the end of the strategy stage:");
    println!(
        "  {:<12}{:>22}{:>22}",
        "", "from publish", "from due time (*)"
    );
    for (label, quantile) in [
        ("p50", 0.50),
        ("p90", 0.90),
        ("p99", 0.99),
        ("p99.9", 0.999),
        ("p99.99", 0.9999),
    ] {
        println!(
            "  {label:<12}{:>22}{:>22}",
            readable_ns(publish.value_at_quantile(quantile)),
            readable_ns(due.value_at_quantile(quantile))
        );
    }
    println!(
        "  {:<12}{:>22}{:>22}",
        "max",
        readable_ns(publish.max()),
        readable_ns(due.max())
    );
    println!(
        "  {:<12}{:>22}{:>22}",
        "count",
        grouped(publish.len()),
        grouped(due.len())
    );
    println!("  (*) includes any delay of the producer itself, so a stall cannot hide");
    println!("      (coordinated omission); close to 'from publish' when pacing held.");
}

// ---------------------------------------------------------------------------
// Command line

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitKind {
    BusySpin,
    Yielding,
    Sleeping,
    Blocking,
}

impl WaitKind {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "busy-spin" => Some(Self::BusySpin),
            "yielding" => Some(Self::Yielding),
            "sleeping" => Some(Self::Sleeping),
            "blocking" => Some(Self::Blocking),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::BusySpin => "busy-spin",
            Self::Yielding => "yielding",
            Self::Sleeping => "sleeping",
            Self::Blocking => "blocking",
        }
    }
}

#[derive(Debug, Clone)]
struct Settings {
    events: u64,
    latency_events: u64,
    rate: u64,
    ring_size: usize,
    /// `None`: chosen from the core count.
    wait: Option<WaitKind>,
    pin: bool,
    /// Feed threads: 1 publishes through the single-producer sequencer, 2 or
    /// more through the multi-producer one.
    feeds: usize,
}

fn usage() -> String {
    format!(
        "\
market_data: a synthetic market-data feed through a tickring pipeline
(decode → book ∥ risk → strategy), with throughput, latency and a self-check.

usage: cargo run --release --example market_data -- [options]

  --events N            ticks in the throughput phase (default {events})
  --latency-events N    ticks in the paced latency phase (default {latency_events})
  --rate N              ticks per second in the latency phase (default {rate})
  --ring-size N         ring slots, a power of two (default {ring_size})
  --feeds N             feed threads, 1 to {MAX_FEEDS} (default 1). With 1 the feed publishes
                        on the main thread through the single-producer sequencer;
                        with N >= 2, N threads publish through clones of one
                        multi-producer handle (build_multi_producer), feed k with
                        the instruments whose id is k modulo N and a seed of its
                        own, all starting together in phase 1 and each paced at
                        rate / N in phase 2. The checks are then per feed: its
                        order, count and checksums against a serial replay of it.
  --wait STRATEGY       busy-spin | yielding | sleeping | blocking
                        (default: busy-spin with N+{HANDLERS} cores for N feeds, else yielding)
  --no-pin              do not pin threads to cores (pinned: each feed and each of
                        the {HANDLERS} handlers on a core of its own, when there are enough)
  --quick               a short smoke run ({quick_events} + {quick_latency_events} ticks), as CI runs it
  -h, --help            print this and exit

Exit status: 0 when every check passed, 1 when one failed, 2 for bad
arguments or a pipeline that cannot be built.
",
        events = grouped(DEFAULT_EVENTS),
        latency_events = grouped(DEFAULT_LATENCY_EVENTS),
        rate = grouped(DEFAULT_RATE),
        ring_size = grouped(DEFAULT_RING_SIZE as u64),
        quick_events = grouped(QUICK_EVENTS),
        quick_latency_events = grouped(QUICK_LATENCY_EVENTS),
    )
}

enum Command {
    Help,
    Run(Settings),
}

/// Parses `1000000`, `1_000_000` or `1,000,000`.
fn parse_count(flag: &str, value: &str) -> Result<u64, String> {
    let digits: String = value.chars().filter(|c| !matches!(c, '_' | ',')).collect();
    digits
        .parse()
        .map_err(|_| format!("{flag} expects a whole number, not '{value}'"))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut quick = false;
    let mut events = None;
    let mut latency_events = None;
    let mut rate = DEFAULT_RATE;
    let mut ring_size = DEFAULT_RING_SIZE;
    let mut wait = None;
    let mut pin = true;
    let mut feeds = 1;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} expects a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--quick" => quick = true,
            "--no-pin" => pin = false,
            "--events" => events = Some(parse_count(&flag, &value()?)?),
            "--latency-events" => latency_events = Some(parse_count(&flag, &value()?)?),
            "--rate" => rate = parse_count(&flag, &value()?)?,
            "--feeds" => {
                let count = parse_count(&flag, &value()?)?;
                feeds = usize::try_from(count)
                    .ok()
                    .filter(|feeds| (1..=MAX_FEEDS).contains(feeds))
                    .ok_or_else(|| format!("--feeds expects 1 to {MAX_FEEDS}, not {count}"))?;
            }
            "--ring-size" => {
                let size = parse_count(&flag, &value()?)?;
                // Whether it is a usable size is for tickring's `build()` to say.
                ring_size = usize::try_from(size)
                    .map_err(|_| format!("--ring-size {size} does not fit in memory"))?;
            }
            "--wait" => {
                let name = value()?;
                wait = Some(WaitKind::parse(&name).ok_or_else(|| {
                    format!(
                        "--wait expects busy-spin, yielding, sleeping or blocking, not '{name}'"
                    )
                })?);
            }
            _ => return Err(format!("unknown argument '{flag}'")),
        }
    }
    let settings = Settings {
        events: events.unwrap_or(if quick { QUICK_EVENTS } else { DEFAULT_EVENTS }),
        latency_events: latency_events.unwrap_or(if quick {
            QUICK_LATENCY_EVENTS
        } else {
            DEFAULT_LATENCY_EVENTS
        }),
        rate,
        ring_size,
        wait,
        pin,
        feeds,
    };
    if settings.events == 0 || settings.latency_events == 0 {
        return Err("--events and --latency-events must be at least 1".to_owned());
    }
    if settings.rate == 0 || settings.rate > 1_000_000_000 {
        return Err("--rate must be between 1 and 1,000,000,000 ticks per second".to_owned());
    }
    Ok(Command::Run(settings))
}

// ---------------------------------------------------------------------------
// Main

enum Failure {
    /// tickring refused the configuration (exit 2).
    Build(BuildError),
    /// A check failed (exit 1).
    Verification(Vec<String>),
}

impl From<BuildError> for Failure {
    fn from(error: BuildError) -> Self {
        Failure::Build(error)
    }
}

/// Both phases, each verified against its serial replay.
fn run<W: WaitStrategy + Default>(
    settings: &Settings,
    placement: &Placement,
    reference: &Arc<[Instrument]>,
) -> Result<(), Failure> {
    let base = Instant::now();
    let phases = [
        Phase::Throughput {
            events: settings.events,
        },
        Phase::Latency {
            events: settings.latency_events,
            rate: settings.rate,
        },
    ];
    for phase in phases {
        let pipeline = build_pipeline::<W>(phase, settings, placement, reference, base)?;
        let feeds = settings.feeds;
        println!();
        match phase {
            Phase::Throughput { events } => {
                let by_feeds = if feeds > 1 {
                    format!(" by {feeds} feeds in parallel")
                } else {
                    String::new()
                };
                println!(
                    "phase 1 — throughput: {} ticks published flat out{by_feeds}",
                    grouped(events)
                );
            }
            Phase::Latency { events, rate } => {
                let by_feeds = if feeds > 1 {
                    format!(
                        " by {feeds} feeds, each at {} ticks/s",
                        grouped(rate / feeds as u64)
                    )
                } else {
                    String::new()
                };
                println!(
                    "phase 2 — latency: {} ticks paced at {} ticks/s (one every {}){by_feeds}",
                    grouped(events),
                    grouped(rate),
                    readable_ns(1_000_000_000 / rate)
                );
            }
        }
        let run = drive(pipeline, phase, placement, reference, base);
        match phase {
            Phase::Throughput { .. } => print_throughput(&run),
            Phase::Latency { .. } => print_latency(&run),
        }
        let replay_started = Instant::now();
        let expected = replay_serially(phase.seed(), phase.events(), feeds, reference);
        let problems = verify(&run, &expected);
        if !problems.is_empty() {
            return Err(Failure::Verification(problems));
        }
        let replay_seconds = replay_started.elapsed().as_secs_f64();
        if feeds == 1 {
            println!(
                "  verified          4 stages × {} ticks, each once and in order; what the strategy read \
                 matches a serial replay ({replay_seconds:.2} s)",
                grouped(phase.events()),
            );
        } else {
            // Which feed's tick comes next in the ring differs from run to run:
            // the checks are per feed, and exact (see `replay_serially`).
            println!(
                "  verified          4 stages × {} ticks, each once; per feed: in its own order, and its \
                 count and what the strategy read (decode's writes, book's and risk's annotations) \
                 match a serial replay of that feed; totals match ({replay_seconds:.2} s)",
                grouped(phase.events()),
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let settings = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(settings)) => settings,
        Ok(Command::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("market_data: {message}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };

    let cores = available_cores();
    let feeds = settings.feeds;
    let placement = Placement::plan(&cores, settings.pin, feeds);
    let threads = feeds + HANDLERS;
    let enough_cores = cores.len() >= threads;
    let wait = settings.wait.unwrap_or(if enough_cores {
        WaitKind::BusySpin
    } else {
        WaitKind::Yielding
    });
    let why_wait = match (settings.wait, enough_cores) {
        (Some(_), _) => "from --wait".to_owned(),
        (None, true) => format!("default with {threads}+ cores: one per thread"),
        (None, false) => format!("default with fewer than {threads} cores"),
    };
    let thread_list = if feeds == 1 {
        "producer + 4 handlers".to_owned()
    } else {
        format!("{feeds} feeds + {HANDLERS} handlers")
    };

    println!("tickring market_data: {INSTRUMENTS} instruments, decode → (book ∥ risk) → strategy");
    println!(
        "  event             Tick, {} bytes (align {}); ring of {} slots",
        std::mem::size_of::<Tick>(),
        std::mem::align_of::<Tick>(),
        grouped(settings.ring_size as u64)
    );
    if feeds > 1 {
        println!(
            "  feeds             {feeds} threads through the multi-producer sequencer; feed k \
             publishes the instruments with id % {feeds} == k"
        );
    }
    println!(
        "  machine           {} cores available {:?}",
        cores.len(),
        cores
    );
    println!("  wait strategy     {} ({why_wait})", wait.name());
    if placement.is_pinned() {
        println!("  pinning           {}", placement.describe());
    } else if !settings.pin {
        println!("  pinning           none (--no-pin)");
    } else {
        println!(
            "  pinning           none: {threads} threads ({thread_list}) on {} cores; \
             the OS places them",
            cores.len()
        );
    }
    if wait == WaitKind::BusySpin && !enough_cores {
        eprintln!(
            "market_data: warning: busy-spin with {threads} threads on {} cores: spinning \
             threads will take the CPU from the ones with work; expect poor numbers",
            cores.len()
        );
    }
    // One feed publishes on this thread; more feeds pin their own threads.
    if let (1, Some(core)) = (feeds, placement.feeds[0]) {
        if !pin_current_thread(core) {
            eprintln!("market_data: warning: could not pin the producer to core {core}");
        }
    }

    let reference = reference_data();
    let result = match wait {
        WaitKind::BusySpin => run::<BusySpin>(&settings, &placement, &reference),
        WaitKind::Yielding => run::<Yielding>(&settings, &placement, &reference),
        WaitKind::Sleeping => run::<Sleeping>(&settings, &placement, &reference),
        WaitKind::Blocking => run::<Blocking>(&settings, &placement, &reference),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Build(error)) => {
            eprintln!("market_data: cannot build the pipeline: {error}");
            ExitCode::from(2)
        }
        Err(Failure::Verification(problems)) => {
            eprintln!("market_data: CHECK FAILED");
            for problem in problems {
                eprintln!("  - {problem}");
            }
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    //! `cargo test --release --example market_data`

    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        match parse_args(args.iter().map(|arg| arg.to_string()))? {
            Command::Run(settings) => Ok(settings),
            Command::Help => Err("help".to_owned()),
        }
    }

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let defaults = settings(&[]).unwrap();
        assert_eq!((defaults.events, defaults.wait), (DEFAULT_EVENTS, None));
        let quick = settings(&["--quick", "--events=1_000", "--wait", "blocking"]).unwrap();
        assert_eq!(quick.events, 1_000);
        assert_eq!(quick.latency_events, QUICK_LATENCY_EVENTS);
        assert_eq!(quick.wait, Some(WaitKind::Blocking));
        // A bad ring size is tickring's to refuse, at build().
        assert_eq!(settings(&["--ring-size", "1000"]).unwrap().ring_size, 1000);
        assert_eq!(defaults.feeds, 1);
        assert_eq!(settings(&["--feeds=2", "--quick"]).unwrap().feeds, 2);
        for bad in [
            &["--wait", "fast"][..],
            &["--events"],
            &["--rate", "0"],
            &["--feeds", "0"],
            &["--feeds", "17"],
            &["--frobnicate"],
        ] {
            assert!(settings(bad).is_err(), "{bad:?}");
        }
        assert_eq!(settings(&["-h"]).unwrap_err(), "help");
    }

    #[test]
    fn threads_are_pinned_only_when_each_gets_a_core() {
        assert!(!Placement::plan(&[0, 1], true, 1).is_pinned());
        let five = Placement::plan(&[0, 1, 2, 3, 4], true, 1);
        assert_eq!((five.feeds[0], five.strategy), (Some(0), Some(4)));
        let eight = Placement::plan(&[0, 1, 2, 3, 4, 5, 6, 7], true, 1);
        assert_eq!((eight.feeds[0], eight.strategy), (Some(1), Some(5)));
        assert!(!Placement::plan(&[0, 1, 2, 3, 4, 5], false, 1).is_pinned());
        // Two feeds need six cores; with seven, core 0 is left alone.
        assert_eq!(
            Placement::plan(&[0, 1, 2, 3, 4], true, 2),
            Placement::unpinned(2)
        );
        let six = Placement::plan(&[0, 1, 2, 3, 4, 5], true, 2);
        assert_eq!(
            (six.feeds.clone(), six.decode),
            (vec![Some(0), Some(1)], Some(2))
        );
        let seven = Placement::plan(&[0, 1, 2, 3, 4, 5, 6], true, 2);
        assert_eq!(
            (seven.feeds.clone(), seven.strategy),
            (vec![Some(1), Some(2)], Some(6))
        );
        assert_eq!(
            seven.describe(),
            "feed 0 → core 1, feed 1 → core 2, decode → core 3, book → core 4, \
             risk → core 5, strategy → core 6"
        );
    }

    #[test]
    fn the_pipeline_matches_the_serial_replay() {
        let reference = reference_data();
        let phase = Phase::Throughput { events: 50_000 };
        let settings = Settings {
            ring_size: 256,
            ..settings(&[]).unwrap()
        };
        let base = Instant::now();
        let placement = Placement::unpinned(1);
        let pipeline =
            build_pipeline::<Yielding>(phase, &settings, &placement, &reference, base).unwrap();
        let run = drive(pipeline, phase, &placement, &reference, base);
        let expected = replay_serially(phase.seed(), phase.events(), 1, &reference);
        assert_eq!(verify(&run, &expected), Vec::<String>::new());
        // The feed exercises every path the checks rely on.
        assert!(expected.invalid_ticks > 0 && expected.locked_or_crossed > 0);
        assert!(expected.risk_breaches > 0 && expected.signals > 0);
        // And the checks can fail.
        let wrong = Outcome {
            signals: expected.signals + 1,
            ..expected
        };
        assert_eq!(verify(&run, &wrong).len(), 1);
    }

    #[test]
    fn several_feeds_match_their_serial_replays() {
        let reference = reference_data();
        let settings = Settings {
            ring_size: 256,
            ..settings(&["--feeds", "3"]).unwrap()
        };
        let placement = Placement::unpinned(3);
        let base = Instant::now();
        for phase in [
            Phase::Throughput { events: 30_001 },
            Phase::Latency {
                events: 3_001,
                rate: 1_000_000,
            },
        ] {
            let pipeline =
                build_pipeline::<Yielding>(phase, &settings, &placement, &reference, base).unwrap();
            let run = drive(pipeline, phase, &placement, &reference, base);
            let expected = replay_serially(phase.seed(), phase.events(), 3, &reference);
            assert_eq!(verify(&run, &expected), Vec::<String>::new());
            // Each feed published its share, and only its own instruments.
            let shares: Vec<u64> = expected.feeds[..3].iter().map(|feed| feed.ticks).collect();
            let events = phase.events();
            assert_eq!(shares, [events / 3 + 1, events / 3, events / 3]);
        }
        // Feed 0 of one is the single-producer feed; the per-feed checks can fail.
        let phase = Phase::Throughput { events: 30_001 };
        let mut expected = replay_serially(phase.seed(), phase.events(), 3, &reference);
        let one = replay_serially(phase.seed(), phase.events(), 1, &reference);
        assert_ne!(one.feeds[0], expected.feeds[0]);
        expected.feeds[1].annotation_checksum ^= 1;
        let pipeline =
            build_pipeline::<Yielding>(phase, &settings, &placement, &reference, base).unwrap();
        let run = drive(pipeline, phase, &placement, &reference, base);
        let problems = verify(&run, &expected);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("feed 1 annotation checksum"),
            "{problems:?}"
        );
    }

    #[test]
    fn each_feed_owns_its_instruments() {
        let reference = reference_data();
        for feeds in [1, 2, 3, MAX_FEEDS] {
            for id in 0..feeds {
                let mut feed = Feed::new(THROUGHPUT_SEED, &reference, id, feeds);
                let mut tick = Tick::default();
                let mut hot = 0;
                for _ in 0..20_000 {
                    feed.write_next(&mut tick, 0);
                    let instrument = usize::from(tick.instrument);
                    assert_eq!(usize::from(tick.feed), id);
                    if instrument < INSTRUMENTS {
                        assert_eq!(instrument % feeds, id, "feed {id} of {feeds}");
                        hot += u32::from(instrument < HOT_INSTRUMENTS as usize);
                    }
                }
                assert!(hot > 9_000, "feed {id} of {feeds}: {hot} hot ticks");
            }
        }
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(999), "999");
        assert_eq!(readable_ns(1_234), "1,234 ns");
        assert_eq!(readable_ns(12_345), "12.3 µs");
        assert_eq!(readable_ns(12_345_678), "12.35 ms");
    }
}
