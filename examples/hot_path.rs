//! The measurement the hot-path design rests on: what one cache-line transfer
//! between two cores costs here, and how close each ring design gets to it.
//!
//! ```text
//! cargo run --release --example hot_path             # full run, under a minute
//! cargo run --release --example hot_path -- --quick  # smoke run (CI), a few seconds
//! cargo run --release --example hot_path -- --help
//! ```
//!
//! Every measurement uses two threads pinned to two cores (0 and 1 when the
//! process may use them) that wait with tickring's own [`BusySpin`]
//! strategy. With fewer than two cores nothing is pinned, every wait yields
//! ([`Yielding`]), and the output says the numbers mean nothing.
//!
//! 1. **Cache-line floor.** Two threads bounce one cache-line-padded
//!    `AtomicU64`: ping writes `2k + 1`, pong waits for it and writes
//!    `2k + 2`, ping waits for that. No ring can make a hop in less than one
//!    such transfer.
//! 2. **Design comparison, same harness.** Two minimal hand-written SPSC
//!    rings below (a few dozen lines each; producer gating on a cached
//!    consumer sequence and bounded consumer batches, as in tickring), each
//!    used as a ping ring and a pong ring:
//!    - *cursor*: the Disruptor layout. Packed slots and a shared padded
//!      cursor, stored (release) after the slot is written. The consumer
//!      waits on the cursor's line, then reads the slot's line: two
//!      transfers per hop.
//!    - *stamp*: tickring's layout. Each slot is one 64-byte line holding a
//!      sequence stamp and the event; the consumer waits on the slot itself,
//!      so the wait and the read are one transfer.
//! 3. **tickring ping-pong.** Two tickring rings of 1,024 slots. The ponger
//!    is the ping ring's handler (pinned to the second core); it owns the
//!    pong ring's producer and echoes each ping from inside `on_event`. The
//!    pinger is the pong ring's handler (pinned to the first core); it owns
//!    the ping ring's producer (handed over once, at the start) and, on each
//!    echo, reads the clock and publishes the next ping. So each core runs
//!    exactly one busy thread, and each hop is one tickring publish and one
//!    tickring handler wake-up, as each hop of (2) is one publish and one
//!    consume. The alternatives are worse: a pinger on a third thread
//!    polling a flag set by the pong ring's handler adds a spinning thread
//!    (there are two cores) and a third cache-line hop per round trip. The
//!    main thread sleeps in a channel receive until the pinger hands back
//!    its histogram; a stop ping then sends the producers home and both
//!    pipelines shut down.
//! 4. **1P-1C throughput** (the LMAX "unicast" shape): event `{value: i64}`,
//!    ring 65,536; the producer sets `value = i`, the handler sums, and every
//!    round is checked against `sum(0..N)` (a wrong sum exits with status
//!    1). tickring with `publish` and with `batch_publish(10)`, the two
//!    hand-written designs, and three variants that separate mechanism from
//!    layout: the cursor ring with tickring's 64-byte slots, the stamp ring
//!    with 16-byte (packed) slots, and the stamp ring with tickring's
//!    consumer loop (scan the stamps of the whole batch, then handle it; the
//!    plain stamp ring checks each stamp as it handles the event). Pinned,
//!    tickring's producer is built with `producer_wait(FullRingWait::Spin)`,
//!    so it spins on a full ring as the hand-written producers do; a last
//!    row keeps tickring's default, `FullRingWait::Yield`, and another gives
//!    the hand-written stamp ring's producer the same policy (`Yielding`).
//!
//! The machine is shared and virtualized: its speed, and even the cost of a
//! cache-line transfer (the hypervisor moves virtual CPUs), drift during a
//! run. So the harnesses are interleaved: latency in blocks (every harness
//! runs one block, then the next round of blocks), throughput in rounds
//! (every harness builds a fresh pipeline, warms it with a quarter-size
//! round, then runs one measured round), the order rotating from one block
//! or round to the next; and the ratios are paired, each harness divided by
//! its baseline as measured in the same block or round.
//!
//! Latency is recorded per round trip in an HdrHistogram (1 ns to 10 s, 4
//! significant digits, memory written before use so recording never
//! page-faults) and reported one way (round trip / 2). Each round trip
//! includes one clock read and one histogram record; the run prints their
//! cost. Sends are back to back (a closed loop), so there is no sending
//! schedule to correct for coordinated omission: a stall shows up as one
//! long sample.
//!
//! Progress goes to stderr between measurements; the tables go to stdout.

#![warn(clippy::undocumented_unsafe_blocks)]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Instant;

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use tickring::{
    available_cores, build_single_producer, pin_current_thread, BusySpin, EventHandler,
    FullRingWait, Producer, WaitStrategy, Yielding, DEFAULT_MAX_BATCH_SIZE,
};

/// Ring size of the ping-pong rings (the LMAX ping-pong test's).
const PING_PONG_RING: usize = 1024;
/// Ring size of the throughput rings (the LMAX unicast test's).
const THROUGHPUT_RING: usize = 65_536;
/// The hand-written consumers take at most this many events per batch, as
/// tickring's handlers do by default.
const MAX_BATCH: i64 = DEFAULT_MAX_BATCH_SIZE as i64;
/// tickring's `batch_publish` size in the batch throughput run.
const PUBLISH_BATCH: u64 = 10;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const USAGE: &str = "\
hot_path: cache-line floor, cursor vs stamp ring, tickring ping-pong, 1P-1C throughput

USAGE: cargo run --release --example hot_path -- [OPTIONS]

OPTIONS:
  --quick           smoke run, a few seconds (CI): 40,000 round trips, 1M events, 2 rounds
  --rounds N        throughput rounds per harness (default 5, --quick 2)
  --round-trips N   measured round trips per latency harness (default 2,000,000)
  --events N        events per measured throughput round (default 4,000,000)
  --only A,B        run only the harnesses whose names contain A or B (for profiling)
  -h, --help        this text";

#[derive(Debug, Clone, Copy)]
struct Config {
    /// Measured round trips per latency harness, over all blocks.
    round_trips: u64,
    /// Latency blocks per harness (interleaved).
    blocks: u64,
    /// Events per measured throughput round (a multiple of 10).
    events: u64,
    /// Throughput rounds per harness (interleaved).
    rounds: usize,
    /// Run only the harnesses whose names contain this.
    only: Option<&'static str>,
}

impl Config {
    fn block_round_trips(&self) -> u64 {
        self.round_trips.div_ceil(self.blocks)
    }

    /// Unmeasured round trips at the start of each block.
    fn block_warmup(&self) -> u64 {
        (self.block_round_trips() / 10).max(1_000)
    }

    fn runs(&self, harness: &str) -> bool {
        self.only.map_or(true, |only| {
            only.split(',').any(|part| harness.contains(part))
        })
    }

    /// Events of the unmeasured round before each measured one.
    fn warmup_events(&self) -> u64 {
        (self.events / 4).div_ceil(PUBLISH_BATCH) * PUBLISH_BATCH
    }
}

fn parse_args() -> Result<Config, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|arg| arg == "--quick");
    let mut config = if quick {
        Config {
            round_trips: 40_000,
            blocks: 2,
            events: 1_000_000,
            rounds: 2,
            only: None,
        }
    } else {
        Config {
            round_trips: 2_000_000,
            blocks: 10,
            events: 4_000_000,
            rounds: 5,
            only: None,
        }
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args
                .next()
                .ok_or_else(|| format!("{name} needs a number"))?;
            let value: u64 = value
                .replace(['_', ','], "")
                .parse()
                .map_err(|_| format!("{name}: '{value}' is not a number"))?;
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
            Ok(value)
        };
        match arg.as_str() {
            "--quick" => {}
            "--rounds" => config.rounds = number("--rounds")? as usize,
            "--round-trips" => config.round_trips = number("--round-trips")?,
            "--events" => config.events = number("--events")?,
            "--only" => {
                let text = args.next().ok_or("--only needs a harness name")?;
                config.only = Some(String::leak(text.clone()));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    config.events = config.events.div_ceil(PUBLISH_BATCH) * PUBLISH_BATCH;
    Ok(config)
}

// ---------------------------------------------------------------------------
// Threads and cores
// ---------------------------------------------------------------------------

/// Where the two threads run: `Some((first, second))` when pinned.
type Cores = Option<(usize, usize)>;

fn pick_cores() -> Cores {
    let cores = available_cores();
    if cores.contains(&0) && cores.contains(&1) {
        Some((0, 1))
    } else if cores.len() >= 2 {
        Some((cores[0], cores[1]))
    } else {
        None
    }
}

fn first(cores: Cores) -> Option<usize> {
    cores.map(|(first, _)| first)
}

fn second(cores: Cores) -> Option<usize> {
    cores.map(|(_, second)| second)
}

/// Runs `body` on a new thread pinned to `core`.
///
/// The main thread itself is never pinned: tickring's `build()` checks
/// `pin_at_core` against the *calling thread's* affinity mask, so a main
/// thread pinned to the first core could not build a pipeline with a handler
/// on the second (and unpinned handler threads would inherit its one core).
fn on_core<T: Send + 'static>(
    core: Option<usize>,
    body: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        if let Some(core) = core {
            if !pin_current_thread(core) {
                eprintln!("[hot_path] warning: could not pin a thread to core {core}");
            }
        }
        body()
    })
}

fn main() {
    let config = match parse_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("hot_path: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let cores = pick_cores();
    let outcome = match cores {
        Some(_) => run_all(config, cores, BusySpin),
        None => run_all(config, cores, Yielding::new()),
    };
    if let Err(message) = outcome {
        eprintln!("hot_path: FAILED: {message}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// Histograms and timing
// ---------------------------------------------------------------------------

/// 1 ns to 10 s at 4 significant digits, every page of the counts written
/// once so that recording never page-faults.
fn new_histogram() -> Histogram<u64> {
    let mut histogram =
        Histogram::new_with_bounds(1, 10_000_000_000, 4).expect("valid histogram bounds");
    histogram.reset();
    histogram
}

fn nanos_between(earlier: Instant, later: Instant) -> u64 {
    later.duration_since(earlier).as_nanos() as u64
}

/// What measuring costs each round trip: one clock read and one record,
/// back to back, as every harness does once per round trip.
fn measurement_overhead(samples: u64) -> Histogram<u64> {
    let mut histogram = new_histogram();
    let mut last = Instant::now();
    for _ in 0..samples {
        let now = Instant::now();
        histogram.saturating_record(nanos_between(last, now));
        last = now;
    }
    histogram
}

/// Records round trip `round` (ending `now`, begun `last`) unless it is a
/// warm-up round trip.
#[inline]
fn record(histogram: &mut Histogram<u64>, round: u64, warmup: u64, last: Instant, now: Instant) {
    if round >= warmup {
        histogram.saturating_record(nanos_between(last, now));
    }
}

// ---------------------------------------------------------------------------
// 1. The cache-line floor
// ---------------------------------------------------------------------------

/// `warmup + round_trips` round trips of one padded line between two threads.
fn cache_line_floor<W: WaitStrategy + Clone>(
    round_trips: u64,
    warmup: u64,
    cores: Cores,
    wait: W,
) -> Result<Histogram<u64>, String> {
    let line = Arc::new(CachePadded::new(AtomicU64::new(0)));
    let total = warmup + round_trips;
    let pong = {
        let line = Arc::clone(&line);
        let wait = wait.clone();
        on_core(second(cores), move || {
            for round in 0..total {
                let ping = 2 * round + 1;
                wait.wait_until(None, || {
                    (line.load(Ordering::Acquire) == ping).then_some(())
                });
                line.store(ping + 1, Ordering::Release);
            }
        })
    };
    let ping = on_core(first(cores), move || {
        let mut histogram = new_histogram();
        let mut last = Instant::now();
        for round in 0..total {
            let ping = 2 * round + 1;
            line.store(ping, Ordering::Release);
            wait.wait_until(None, || {
                (line.load(Ordering::Acquire) == ping + 1).then_some(())
            });
            let now = Instant::now();
            record(&mut histogram, round, warmup, last, now);
            last = now;
        }
        histogram
    });
    pong.join().map_err(|_| "floor: pong thread panicked")?;
    ping.join()
        .map_err(|_| "floor: ping thread panicked".into())
}

// ---------------------------------------------------------------------------
// 2. Two hand-written SPSC rings: cursor and stamp
// ---------------------------------------------------------------------------

/// The producer end of a hand-written SPSC ring.
trait Tx: Send + 'static {
    /// Waits for room, writes `value` into the next slot and publishes it.
    fn publish<W: WaitStrategy>(&mut self, wait: &W, value: i64);
}

/// The consumer end of a hand-written SPSC ring.
trait Rx: Send + 'static {
    /// Waits for the next event, hands every available one (at most
    /// `MAX_BATCH`) to `handle` in order, releases them, and returns how many.
    fn consume<W: WaitStrategy>(&mut self, wait: &W, handle: impl FnMut(i64)) -> i64;
}

/// Makes a ring of `size` slots (a power of two); returns its two ends.
type MakeRing<T, R> = fn(usize) -> (T, R);

/// Slots of padding (at least 128 bytes) at each end of a slot array, so no
/// other allocation shares a line, or an adjacent-line pair, with the ring.
const fn end_padding<T>() -> usize {
    let size = std::mem::size_of::<T>();
    if size >= 128 {
        1
    } else {
        128_usize.div_ceil(size)
    }
}

/// The producer's side of gating: it may write sequence `next` once the
/// consumer has released `next - size`. The consumer's sequence is re-read
/// only when the cached value does not already allow it.
#[inline]
fn wait_for_room<W: WaitStrategy>(
    wait: &W,
    consumed: &AtomicI64,
    cached_consumed: &mut i64,
    next: i64,
    size: i64,
) {
    let wrap_point = next - size;
    if wrap_point > *cached_consumed {
        // Acquire: pairs with the consumer's release after its batch, so its
        // reads of the slot are done before the slot is rewritten.
        *cached_consumed = wait
            .wait_until(None, || {
                let consumed = consumed.load(Ordering::Acquire);
                (consumed >= wrap_point).then_some(consumed)
            })
            .expect("no timeout");
    }
}

// ----- (i) cursor: the Disruptor layout ------------------------------------

/// A cursor-ring slot: an `i64` cell, packed (8 bytes) or alone on a line.
trait ValueCell: Send + 'static {
    fn new() -> Self;
    fn get(&self) -> *mut i64;
}

/// The Disruptor's layout: eight slots to a line.
struct PackedCell(UnsafeCell<i64>);

/// tickring's layout, without the stamp: one slot per 64-byte line.
#[repr(align(64))]
struct LineCell(UnsafeCell<i64>);

macro_rules! value_cell {
    ($cell:ident) => {
        impl ValueCell for $cell {
            fn new() -> Self {
                Self(UnsafeCell::new(0))
            }
            #[inline]
            fn get(&self) -> *mut i64 {
                self.0.get()
            }
        }
    };
}
value_cell!(PackedCell);
value_cell!(LineCell);

/// Slots and a shared cursor; each sequence on its own lines.
struct CursorRing<V> {
    /// The last published sequence: written by the producer, polled by the consumer.
    cursor: CachePadded<AtomicI64>,
    /// The last sequence the consumer has finished with.
    consumed: CachePadded<AtomicI64>,
    /// `size` slots between two pads.
    slots: Box<[V]>,
    mask: i64,
}

// SAFETY: a slot is written only by the (one) producer, between the consumer
// releasing it (`consumed >= seq - size`, acquired) and the cursor's release
// store of `seq`; it is read only by the (one) consumer, between acquiring
// the cursor at `seq` and its own release of `consumed >= seq`. Never both.
unsafe impl<V: ValueCell> Sync for CursorRing<V> {}

impl<V: ValueCell> CursorRing<V> {
    #[inline]
    fn slot(&self, sequence: i64) -> *mut i64 {
        self.slots[end_padding::<V>() + (sequence & self.mask) as usize].get()
    }
}

struct CursorTx<V> {
    ring: Arc<CursorRing<V>>,
    next: i64,
    cached_consumed: i64,
}

struct CursorRx<V> {
    ring: Arc<CursorRing<V>>,
    next: i64,
}

fn cursor_ring<V: ValueCell>(size: usize) -> (CursorTx<V>, CursorRx<V>) {
    assert!(size.is_power_of_two());
    let ring = Arc::new(CursorRing {
        cursor: CachePadded::new(AtomicI64::new(-1)),
        consumed: CachePadded::new(AtomicI64::new(-1)),
        slots: (0..size + 2 * end_padding::<V>())
            .map(|_| V::new())
            .collect(),
        mask: size as i64 - 1,
    });
    let tx = CursorTx {
        ring: Arc::clone(&ring),
        next: 0,
        cached_consumed: -1,
    };
    (tx, CursorRx { ring, next: 0 })
}

impl<V: ValueCell> Tx for CursorTx<V> {
    #[inline]
    fn publish<W: WaitStrategy>(&mut self, wait: &W, value: i64) {
        let ring = &*self.ring;
        let size = ring.mask + 1;
        wait_for_room(
            wait,
            &ring.consumed,
            &mut self.cached_consumed,
            self.next,
            size,
        );
        // SAFETY: the only producer; the consumer has released `next - size`
        // and cannot read `next` until the cursor below reaches it.
        unsafe { *ring.slot(self.next) = value };
        // Release: the slot write happens-before the consumer's acquire of the cursor.
        ring.cursor.store(self.next, Ordering::Release);
        self.next += 1;
    }
}

impl<V: ValueCell> Rx for CursorRx<V> {
    #[inline]
    fn consume<W: WaitStrategy>(&mut self, wait: &W, mut handle: impl FnMut(i64)) -> i64 {
        let ring = &*self.ring;
        let first = self.next;
        let available = wait
            .wait_until(None, || {
                let cursor = ring.cursor.load(Ordering::Acquire);
                (cursor >= first).then_some(cursor)
            })
            .expect("no timeout");
        let last = available.min(first + MAX_BATCH - 1);
        for sequence in first..=last {
            // SAFETY: published (cursor >= sequence, acquired) and not yet released.
            handle(unsafe { *ring.slot(sequence) });
        }
        // Release: done reading every slot up to `last`; the producer may reuse them.
        ring.consumed.store(last, Ordering::Release);
        self.next = last + 1;
        last - first + 1
    }
}

// ----- (ii) stamp: tickring's layout ---------------------------------------

/// A slot with its publication stamp (`-1`: never; slot `i` receives
/// sequences `i`, `i + size`, ... so `stamp == s` means "`s` is published").
trait StampSlot: Send + 'static {
    fn empty() -> Self;
    fn stamp(&self) -> &AtomicI64;
    fn value(&self) -> *mut i64;
}

/// tickring's layout: stamp and event on one 64-byte line per slot.
#[repr(C, align(64))]
struct LineSlot {
    stamp: AtomicI64,
    value: UnsafeCell<i64>,
}

/// Vyukov's layout: 16-byte slots, four to a line.
#[repr(C)]
struct PackedSlot {
    stamp: AtomicI64,
    value: UnsafeCell<i64>,
}

macro_rules! stamp_slot {
    ($slot:ident) => {
        impl StampSlot for $slot {
            fn empty() -> Self {
                Self {
                    stamp: AtomicI64::new(-1),
                    value: UnsafeCell::new(0),
                }
            }
            #[inline]
            fn stamp(&self) -> &AtomicI64 {
                &self.stamp
            }
            #[inline]
            fn value(&self) -> *mut i64 {
                self.value.get()
            }
        }
    };
}
stamp_slot!(LineSlot);
stamp_slot!(PackedSlot);

struct StampRing<S> {
    /// The last sequence the consumer has finished with (read by the
    /// producer only when it might wrap).
    consumed: CachePadded<AtomicI64>,
    /// `size` slots between two pads.
    slots: Box<[S]>,
    mask: i64,
}

// SAFETY: a slot's value is written only by the (one) producer, between the
// consumer releasing the slot (`consumed >= seq - size`, acquired) and the
// release store of its stamp; it is read only by the (one) consumer, between
// acquiring the stamp `seq` and its own release of `consumed >= seq`.
unsafe impl<S: StampSlot> Sync for StampRing<S> {}

impl<S: StampSlot> StampRing<S> {
    #[inline]
    fn slot(&self, sequence: i64) -> &S {
        &self.slots[end_padding::<S>() + (sequence & self.mask) as usize]
    }

    #[inline]
    fn is_published(&self, sequence: i64) -> bool {
        // Acquire: pairs with the producer's release of the stamp.
        self.slot(sequence).stamp().load(Ordering::Acquire) == sequence
    }
}

struct StampTx<S> {
    ring: Arc<StampRing<S>>,
    next: i64,
    cached_consumed: i64,
}

/// `FUSED`: check each stamp as its event is handled (one pass over the
/// batch). Otherwise tickring's loop: scan the stamps up to the batch limit
/// (`RingBuffer::available_up_to`), then handle the batch (a second pass).
struct StampRx<S, const FUSED: bool> {
    ring: Arc<StampRing<S>>,
    next: i64,
}

fn stamp_ring<S: StampSlot, const FUSED: bool>(size: usize) -> (StampTx<S>, StampRx<S, FUSED>) {
    assert!(size.is_power_of_two());
    let ring = Arc::new(StampRing {
        consumed: CachePadded::new(AtomicI64::new(-1)),
        slots: (0..size + 2 * end_padding::<S>())
            .map(|_| S::empty())
            .collect(),
        mask: size as i64 - 1,
    });
    let tx = StampTx {
        ring: Arc::clone(&ring),
        next: 0,
        cached_consumed: -1,
    };
    (tx, StampRx { ring, next: 0 })
}

impl<S: StampSlot> Tx for StampTx<S> {
    #[inline]
    fn publish<W: WaitStrategy>(&mut self, wait: &W, value: i64) {
        let ring = &*self.ring;
        let size = ring.mask + 1;
        wait_for_room(
            wait,
            &ring.consumed,
            &mut self.cached_consumed,
            self.next,
            size,
        );
        let slot = ring.slot(self.next);
        // SAFETY: the only producer; the consumer has released `next - size`
        // and reads this slot only once it sees the stamp below.
        unsafe { *slot.value() = value };
        // Release: the value write happens-before the consumer's acquire of the stamp.
        slot.stamp().store(self.next, Ordering::Release);
        self.next += 1;
    }
}

impl<S: StampSlot, const FUSED: bool> Rx for StampRx<S, FUSED> {
    #[inline]
    fn consume<W: WaitStrategy>(&mut self, wait: &W, mut handle: impl FnMut(i64)) -> i64 {
        let ring = &*self.ring;
        let first = self.next;
        let limit = first + MAX_BATCH - 1;
        let last = if FUSED {
            wait.wait_until(None, || ring.is_published(first).then_some(()));
            let mut sequence = first;
            loop {
                // SAFETY: its stamp was acquired and the slot is not yet released.
                handle(unsafe { *ring.slot(sequence).value() });
                if sequence == limit || !ring.is_published(sequence + 1) {
                    break sequence;
                }
                sequence += 1;
            }
        } else {
            let scan = || {
                let mut highest = first - 1;
                while highest < limit && ring.is_published(highest + 1) {
                    highest += 1;
                }
                (highest >= first).then_some(highest)
            };
            let last = wait.wait_until(None, scan).expect("no timeout");
            for sequence in first..=last {
                // SAFETY: its stamp was acquired and the slot is not yet released.
                handle(unsafe { *ring.slot(sequence).value() });
            }
            last
        };
        // Release: done reading every slot up to `last`; the producer may reuse them.
        ring.consumed.store(last, Ordering::Release);
        self.next = last + 1;
        last - first + 1
    }
}

/// Ping-pong over two hand-written rings: a thread on the first core pings
/// and times, a thread on the second core echoes.
fn ring_ping_pong<T: Tx, R: Rx, W: WaitStrategy + Clone>(
    make: MakeRing<T, R>,
    round_trips: u64,
    warmup: u64,
    cores: Cores,
    wait: W,
) -> Result<Histogram<u64>, String> {
    // Padded: each thread's ends on lines of their own, wherever the closure
    // that carries them is allocated.
    let (ping_tx, ping_rx) = make(PING_PONG_RING);
    let (pong_tx, pong_rx) = make(PING_PONG_RING);
    let (mut ping_tx, mut ping_rx) = (CachePadded::new(ping_tx), CachePadded::new(ping_rx));
    let (mut pong_tx, mut pong_rx) = (CachePadded::new(pong_tx), CachePadded::new(pong_rx));
    let total = warmup + round_trips;
    let ponger = {
        let wait = wait.clone();
        on_core(second(cores), move || {
            let mut echoed = 0;
            while echoed < total {
                let mut value = 0;
                echoed += ping_rx.consume(&wait, |ping| value = ping) as u64;
                pong_tx.publish(&wait, value);
            }
        })
    };
    let pinger = on_core(first(cores), move || {
        let mut histogram = new_histogram();
        let mut wrong = None;
        let mut last = Instant::now();
        for round in 0..total {
            ping_tx.publish(&wait, round as i64);
            pong_rx.consume(&wait, |echo| {
                if echo != round as i64 {
                    wrong.get_or_insert((round, echo));
                }
            });
            let now = Instant::now();
            record(&mut histogram, round, warmup, last, now);
            last = now;
        }
        (histogram, wrong)
    });
    ponger.join().map_err(|_| "ponger thread panicked")?;
    let (histogram, wrong) = pinger.join().map_err(|_| "pinger thread panicked")?;
    match wrong {
        Some((round, echo)) => Err(format!("round trip {round} echoed {echo}")),
        None => Ok(histogram),
    }
}

// ---------------------------------------------------------------------------
// 3. tickring ping-pong
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Clone, Copy)]
struct Message {
    value: i64,
}

/// The ping that tells the ponger to hand its producer back.
const STOP: i64 = -1;

type TickProducer<W> = Producer<Message, W>;

/// The pong ring's handler: times each echo and sends the next ping.
struct Pinger<W: WaitStrategy> {
    ping: Option<TickProducer<W>>,
    /// The ping producer arrives here once, after main's first ping.
    handoff: mpsc::Receiver<TickProducer<W>>,
    received: u64,
    warmup: u64,
    total: u64,
    last: Instant,
    histogram: Option<Histogram<u64>>,
    finished: mpsc::Sender<(Histogram<u64>, TickProducer<W>)>,
}

impl<W: WaitStrategy> EventHandler<Message> for Pinger<W> {
    fn on_event(&mut self, echo: &Message, _sequence: i64, _end_of_batch: bool) {
        let now = Instant::now();
        assert_eq!(echo.value, self.received as i64, "echo out of order");
        if let Some(histogram) = self.histogram.as_mut() {
            record(histogram, self.received, self.warmup, self.last, now);
        }
        self.last = now;
        self.received += 1;
        let handoff = &self.handoff;
        let ping = self
            .ping
            .get_or_insert_with(|| handoff.recv().expect("main hands over the ping producer"));
        if self.received < self.total {
            let next = self.received as i64;
            ping.publish(|message| message.value = next)
                .expect("ping pipeline running");
        } else {
            ping.publish(|message| message.value = STOP)
                .expect("ping pipeline running");
            let ping = self.ping.take().expect("ping producer");
            let histogram = self.histogram.take().expect("histogram");
            let _ = self.finished.send((histogram, ping));
        }
    }
}

/// The ping ring's handler: echoes each ping on the pong ring.
struct Ponger<W: WaitStrategy> {
    pong: Option<TickProducer<W>>,
    back: mpsc::Sender<TickProducer<W>>,
}

impl<W: WaitStrategy> EventHandler<Message> for Ponger<W> {
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
    round_trips: u64,
    warmup: u64,
    cores: Cores,
    wait: W,
) -> Result<Histogram<u64>, String> {
    let (handoff_tx, handoff) = mpsc::channel();
    let (finished, results) = mpsc::channel();
    let (back, returned) = mpsc::channel();
    // The first round trip includes the handoff: always a warm-up one.
    let warmup = warmup.max(1);
    let pinger = Pinger {
        ping: None,
        handoff,
        received: 0,
        warmup,
        total: warmup + round_trips,
        last: Instant::now(),
        histogram: Some(new_histogram()),
        finished,
    };
    let pong = build_single_producer(PING_PONG_RING, Message::default, wait.clone())
        .handle_events_with_handler(pinger)
        .thread_name("pinger");
    let pong = match first(cores) {
        Some(core) => pong.pin_at_core(core),
        None => pong,
    }
    .build()
    .map_err(|error| format!("pong ring: {error}"))?;
    let ping = build_single_producer(PING_PONG_RING, Message::default, wait)
        .handle_events_with_handler(Ponger {
            pong: Some(pong),
            back,
        })
        .thread_name("ponger");
    let mut ping = match second(cores) {
        Some(core) => ping.pin_at_core(core),
        None => ping,
    }
    .build()
    .map_err(|error| format!("ping ring: {error}"))?;
    ping.publish(|message| message.value = 0)
        .map_err(|error| format!("first ping: {error}"))?;
    handoff_tx
        .send(ping)
        .map_err(|_| "the pinger stopped before the handoff")?;
    let (histogram, ping) = results
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
    Ok(histogram)
}

// ---------------------------------------------------------------------------
// 4. 1P-1C throughput
// ---------------------------------------------------------------------------

/// What one measured throughput round gave.
#[derive(Debug, Clone, Copy)]
struct Round {
    events_per_second: f64,
    average_batch: f64,
}

/// Where a consumer reports each finished round to the producer's thread.
#[derive(Debug, Default)]
struct RoundSignal {
    /// Rounds finished (release: `sum` and `batches` are written first).
    finished: CachePadded<AtomicU64>,
    sum: AtomicI64,
    batches: AtomicU64,
}

impl RoundSignal {
    fn finish(&self, round: u64, sum: i64, batches: u64) {
        self.sum.store(sum, Ordering::Relaxed);
        self.batches.store(batches, Ordering::Relaxed);
        self.finished.store(round, Ordering::Release);
    }

    /// Waits for round `round` (counting from 1), of `events` events begun
    /// at `started`, and checks its sum.
    fn wait_and_check<W: WaitStrategy>(
        &self,
        wait: &W,
        round: u64,
        events: u64,
        started: Instant,
    ) -> Result<Round, String> {
        wait.wait_until(None, || {
            (self.finished.load(Ordering::Acquire) >= round).then_some(())
        });
        let elapsed = started.elapsed();
        let sum = self.sum.load(Ordering::Relaxed);
        let expected = expected_sum(events);
        if sum != expected {
            return Err(format!(
                "round {round} summed to {sum}, expected {expected} (the sum of 0..{events})"
            ));
        }
        let batches = self.batches.load(Ordering::Relaxed).max(1);
        Ok(Round {
            events_per_second: events as f64 / elapsed.as_secs_f64(),
            average_batch: events as f64 / batches as f64,
        })
    }
}

fn expected_sum(events: u64) -> i64 {
    let events = events as i64;
    events.wrapping_mul(events - 1) / 2
}

/// The consumer's work, the same in every harness: sum the values of each
/// round, count batches, and report each round's end.
#[derive(Debug)]
struct RoundSummer {
    /// Each round's size: a warm-up round, then the measured one.
    rounds: [u64; 2],
    finished: usize,
    seen: u64,
    round_end: u64,
    sum: i64,
    batches: u64,
    batches_at_round_start: u64,
    signal: Arc<RoundSignal>,
}

impl RoundSummer {
    fn new(rounds: [u64; 2], signal: Arc<RoundSignal>) -> Self {
        Self {
            rounds,
            finished: 0,
            seen: 0,
            round_end: rounds[0],
            sum: 0,
            batches: 0,
            batches_at_round_start: 0,
            signal,
        }
    }

    fn total(&self) -> u64 {
        self.rounds.iter().sum()
    }

    #[inline]
    fn add(&mut self, value: i64) {
        self.sum = self.sum.wrapping_add(value);
        self.seen += 1;
        if self.seen == self.round_end {
            self.round_done();
        }
    }

    #[cold]
    fn round_done(&mut self) {
        self.finished += 1;
        let batches = self.batches - self.batches_at_round_start;
        self.signal.finish(self.finished as u64, self.sum, batches);
        self.sum = 0;
        self.batches_at_round_start = self.batches;
        let next_round = self.rounds.get(self.finished).copied().unwrap_or(u64::MAX);
        self.round_end = self.round_end.saturating_add(next_round);
    }
}

/// A warm-up round then a measured round through a fresh hand-written ring.
/// The producer waits for room with `when_full` (the consumer, and the
/// end-of-round wait, with `wait`).
fn ring_throughput<T: Tx, R: Rx, W: WaitStrategy + Clone, F: WaitStrategy>(
    make: MakeRing<T, R>,
    config: Config,
    cores: Cores,
    wait: W,
    when_full: F,
) -> Result<Round, String> {
    let (tx, rx) = make(THROUGHPUT_RING);
    let signal = Arc::new(RoundSignal::default());
    let rounds = [config.warmup_events(), config.events];
    let consumer = {
        let wait = wait.clone();
        // Padded: each thread's state on lines of its own, wherever the
        // closure that carries it is allocated.
        let mut summer = CachePadded::new(RoundSummer::new(rounds, Arc::clone(&signal)));
        let mut rx = CachePadded::new(rx);
        on_core(second(cores), move || {
            while summer.seen < summer.total() {
                summer.batches += 1;
                rx.consume(&wait, |value| summer.add(value));
            }
        })
    };
    let mut tx = CachePadded::new(tx);
    let producer = on_core(first(cores), move || {
        let mut measured = None;
        for (round, events) in (1..).zip(rounds) {
            let started = Instant::now();
            for value in 0..events as i64 {
                tx.publish(&when_full, value);
            }
            measured = Some(signal.wait_and_check(&wait, round, events, started)?);
        }
        measured.ok_or_else(|| "no round ran".to_string())
    });
    // After a failed check the consumer waits for events that never come:
    // return the error without joining it (main then exits).
    let measured = producer.join().map_err(|_| "producer panicked")??;
    consumer.join().map_err(|_| "consumer panicked")?;
    Ok(measured)
}

#[derive(Debug, Default, Clone, Copy)]
struct ValueEvent {
    value: i64,
}

struct SumHandler(RoundSummer);

impl EventHandler<ValueEvent> for SumHandler {
    #[inline]
    fn on_event(&mut self, event: &ValueEvent, _sequence: i64, _end_of_batch: bool) {
        self.0.add(event.value);
    }

    #[inline]
    fn on_batch_start(&mut self, _batch_size: i64, _queue_depth: i64) {
        self.0.batches += 1;
    }
}

/// A warm-up round then a measured round through a fresh tickring pipeline,
/// publishing one event at a time or `PUBLISH_BATCH` at a time.
fn tickring_throughput<W: WaitStrategy + Clone>(
    batch: bool,
    full_ring_wait: FullRingWait,
    config: Config,
    cores: Cores,
    wait: W,
) -> Result<Round, String> {
    let signal = Arc::new(RoundSignal::default());
    let rounds = [config.warmup_events(), config.events];
    let builder = build_single_producer(THROUGHPUT_RING, ValueEvent::default, wait.clone())
        .producer_wait(full_ring_wait)
        .handle_events_with_handler(SumHandler(RoundSummer::new(rounds, Arc::clone(&signal))));
    // Built on the unpinned main thread (see `on_core`); the producer then
    // moves to a thread pinned to the first core.
    let mut producer = match second(cores) {
        Some(core) => builder.pin_at_core(core),
        None => builder,
    }
    .build()
    .map_err(|error| error.to_string())?;
    let publishing = on_core(first(cores), move || {
        let mut measured = None;
        for (round, events) in (1..).zip(rounds) {
            let started = Instant::now();
            if batch {
                let mut value = 0i64;
                for _ in 0..events / PUBLISH_BATCH {
                    producer
                        .batch_publish(PUBLISH_BATCH as usize, |event, _sequence| {
                            event.value = value;
                            value += 1;
                        })
                        .map_err(|error| error.to_string())?;
                }
            } else {
                for value in 0..events as i64 {
                    producer
                        .publish(|event| event.value = value)
                        .map_err(|error| error.to_string())?;
                }
            }
            measured = Some(signal.wait_and_check(&wait, round, events, started)?);
        }
        let measured = measured.ok_or_else(|| "no round ran".to_string())?;
        Ok::<_, String>((measured, producer))
    });
    let (measured, producer) = publishing
        .join()
        .map_err(|_| "producer thread panicked")??;
    let report = producer.shutdown();
    match report.first_panic() {
        Some(panic) => Err(panic.to_string()),
        None => Ok(measured),
    }
}

// ---------------------------------------------------------------------------
// Running and reporting
// ---------------------------------------------------------------------------

const LATENCY_HARNESSES: [&str; 4] = [
    "cache-line floor",
    "cursor ring (hand-written)",
    "stamp ring (hand-written)",
    "tickring, 2 rings",
];

const THROUGHPUT_HARNESSES: [&str; 9] = [
    "tickring, publish",
    "tickring, batch_publish(10)",
    "cursor ring (hand-written)",
    "stamp ring (hand-written)",
    "cursor ring, 64-byte slots",
    "stamp ring, 16-byte slots",
    "stamp ring, scan then handle",
    "tickring, publish, Yield if full",
    "stamp ring, Yield if full",
];

fn latency_block<W: WaitStrategy + Clone>(
    harness: usize,
    config: Config,
    cores: Cores,
    wait: W,
) -> Result<Histogram<u64>, String> {
    let (trips, warmup) = (config.block_round_trips(), config.block_warmup());
    match harness {
        0 => cache_line_floor(trips, warmup, cores, wait),
        1 => ring_ping_pong(cursor_ring::<PackedCell>, trips, warmup, cores, wait),
        2 => ring_ping_pong(stamp_ring::<LineSlot, true>, trips, warmup, cores, wait),
        _ => tickring_ping_pong(trips, warmup, cores, wait),
    }
}

fn throughput_round<W: WaitStrategy + Clone>(
    harness: usize,
    config: Config,
    cores: Cores,
    wait: W,
) -> Result<Round, String> {
    // Pinned and busy-spinning, the producer spins on a full ring too, as
    // the hand-written producers do. The last two rows yield instead:
    // tickring's default (`FullRingWait::Yield`: spin 128 times, then
    // `yield_now`) and the same for the hand-written stamp ring.
    let full = match cores {
        Some(_) => FullRingWait::Spin,
        None => FullRingWait::Yield,
    };
    let spin = wait.clone();
    match harness {
        0 => tickring_throughput(false, full, config, cores, wait),
        1 => tickring_throughput(true, full, config, cores, wait),
        2 => ring_throughput(cursor_ring::<PackedCell>, config, cores, wait, spin),
        3 => ring_throughput(stamp_ring::<LineSlot, true>, config, cores, wait, spin),
        4 => ring_throughput(cursor_ring::<LineCell>, config, cores, wait, spin),
        5 => ring_throughput(stamp_ring::<PackedSlot, true>, config, cores, wait, spin),
        6 => ring_throughput(stamp_ring::<LineSlot, false>, config, cores, wait, spin),
        7 => tickring_throughput(false, FullRingWait::Yield, config, cores, wait),
        _ => {
            let yielding = Yielding::new();
            ring_throughput(stamp_ring::<LineSlot, true>, config, cores, wait, yielding)
        }
    }
}

fn progress(message: &str) {
    eprintln!("[hot_path] {message}");
}

fn run_all<W: WaitStrategy + Clone>(config: Config, cores: Cores, wait: W) -> Result<(), String> {
    let started = Instant::now();
    let cores_line = match cores {
        Some((first, second)) => format!(
            "2 threads pinned to cores {first} and {second} (of {:?}), BusySpin",
            available_cores()
        ),
        None => format!(
            "WARNING: fewer than 2 cores available ({:?}): nothing pinned, every wait \
             yields; these numbers measure the scheduler, not the rings",
            available_cores()
        ),
    };

    progress("clock overhead");
    let overhead = measurement_overhead(1_000_000);

    // Merged histograms, and each block's (p50, p99) for the paired ratios.
    let mut latency: Vec<Histogram<u64>> =
        LATENCY_HARNESSES.iter().map(|_| new_histogram()).collect();
    let mut block_stats: Vec<Vec<(f64, f64)>> =
        LATENCY_HARNESSES.iter().map(|_| Vec::new()).collect();
    for block in 1..=config.blocks {
        progress(&format!(
            "latency block {block}/{}: {} round trips per harness",
            config.blocks,
            thousands(config.block_round_trips())
        ));
        for harness in rotated(LATENCY_HARNESSES.len(), block as usize) {
            let name = LATENCY_HARNESSES[harness];
            if !config.runs(name) {
                continue;
            }
            let histogram = latency_block(harness, config, cores, wait.clone())
                .map_err(|error| format!("{name}: {error}"))?;
            block_stats[harness].push((
                histogram.value_at_quantile(0.5) as f64,
                histogram.value_at_quantile(0.99) as f64,
            ));
            latency[harness]
                .add(&histogram)
                .map_err(|error| format!("histogram: {error:?}"))?;
        }
    }

    let mut throughput: Vec<Vec<Round>> = THROUGHPUT_HARNESSES.iter().map(|_| Vec::new()).collect();
    for round in 1..=config.rounds {
        progress(&format!(
            "throughput round {round}/{}: {} events per harness",
            config.rounds,
            thousands(config.events)
        ));
        for harness in rotated(THROUGHPUT_HARNESSES.len(), round) {
            let name = THROUGHPUT_HARNESSES[harness];
            if !config.runs(name) {
                continue;
            }
            let measured = throughput_round(harness, config, cores, wait.clone())
                .map_err(|error| format!("{name}: {error}"))?;
            throughput[harness].push(measured);
        }
    }
    progress(&format!("done in {:.1} s", started.elapsed().as_secs_f64()));

    println!();
    println!("tickring hot_path: {cores_line}");
    println!(
        "clock read + histogram record, once per round trip (included below): p50 {} ns, p99 {} ns",
        overhead.value_at_quantile(0.5),
        overhead.value_at_quantile(0.99)
    );
    println!();
    println!(
        "One-way latency = round trip / 2: {} round trips per harness in {} interleaved blocks \
         (each after {} warm-up); rings of {} slots",
        thousands(config.block_round_trips() * config.blocks),
        config.blocks,
        thousands(config.block_warmup()),
        thousands(PING_PONG_RING as u64)
    );
    println!(
        "{:<28}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>11}{:>11}",
        "harness", "p50", "p90", "p99", "p99.9", "p99.99", "max", "p50/floor", "p99/floor"
    );
    for (harness, name) in LATENCY_HARNESSES.iter().enumerate() {
        let histogram = &latency[harness];
        if histogram.is_empty() {
            continue;
        }
        let one_way = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 2.0;
        let paired = |pick: fn(&(f64, f64)) -> f64| {
            paired_ratio(&block_stats[harness], &block_stats[0], pick)
        };
        println!(
            "{:<28}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>11}{:>11}",
            name,
            format_ns(one_way(0.5)),
            format_ns(one_way(0.9)),
            format_ns(one_way(0.99)),
            format_ns(one_way(0.999)),
            format_ns(one_way(0.9999)),
            format_ns(histogram.max() as f64 / 2.0),
            format_ratio(paired(|stats| stats.0)),
            format_ratio(paired(|stats| stats.1)),
        );
    }
    println!(
        "x/floor: the median over blocks of (harness / floor) within the same block, so that \
         drift between blocks cancels."
    );

    println!();
    println!(
        "1P-1C throughput: ring {}, {} events per measured round (after a {}-event warm-up \
         round in a fresh pipeline), {} interleaved rounds per harness, every sum checked",
        thousands(THROUGHPUT_RING as u64),
        thousands(config.events),
        thousands(config.warmup_events()),
        config.rounds
    );
    let rates: Vec<Vec<f64>> = throughput
        .iter()
        .map(|rounds| {
            rounds
                .iter()
                .map(|round| round.events_per_second / 1e6)
                .collect()
        })
        .collect();
    println!(
        "{:<33}{:>11}{:>9}{:>9}{:>9}{:>11}{:>9}{:>9}",
        "harness", "median M/s", "min", "max", "spread", "avg batch", "/cursor", "/stamp"
    );
    for (harness, name) in THROUGHPUT_HARNESSES.iter().enumerate() {
        let rounds = &throughput[harness];
        if rounds.is_empty() {
            continue;
        }
        let rates_here = &rates[harness];
        let batches: Vec<f64> = rounds.iter().map(|round| round.average_batch).collect();
        let middle = median(rates_here);
        let min = rates_here.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rates_here.iter().copied().fold(0.0, f64::max);
        let paired = |baseline: usize| {
            let pairs: Vec<(f64, f64)> = rates_here.iter().map(|&rate| (rate, 0.0)).collect();
            let base: Vec<(f64, f64)> = rates[baseline].iter().map(|&rate| (rate, 0.0)).collect();
            paired_ratio(&pairs, &base, |pair| pair.0)
        };
        println!(
            "{:<33}{:>11.1}{:>9.1}{:>9.1}{:>8.0}%{:>11.1}{:>9}{:>9}",
            name,
            middle,
            min,
            max,
            (max - min) / middle * 100.0,
            median(&batches),
            format_ratio(paired(2)),
            format_ratio(paired(3)),
        );
    }
    println!(
        "/cursor, /stamp: the median over rounds of (harness / hand-written ring) within the same \
         round. spread = (max - min) / median."
    );
    println!(
        "avg batch = events per consumer batch (tickring: per on_batch_start); every consumer \
         takes at most {MAX_BATCH} per batch."
    );
    println!(
        "A shared, virtualized machine: trust the paired ratios of one run more than absolute \
         numbers across runs."
    );
    Ok(())
}

/// `0..count`, starting at `start % count` and wrapping: each block or round
/// runs the harnesses in another order, so none always runs first or last.
fn rotated(count: usize, start: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |index| (start + index) % count)
}

/// The median over blocks (or rounds) of `pick(harness) / pick(baseline)`,
/// each pair measured in the same block; NaN when either did not run.
fn paired_ratio(
    harness: &[(f64, f64)],
    baseline: &[(f64, f64)],
    pick: fn(&(f64, f64)) -> f64,
) -> f64 {
    let ratios: Vec<f64> = harness
        .iter()
        .zip(baseline)
        .map(|(here, base)| pick(here) / pick(base))
        .collect();
    median(&ratios)
}

fn format_ratio(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        "-".to_string()
    }
}

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

/// `175.0 ns`, `2.74 us`, `7.96 ms`, `1.20 s`.
fn format_ns(nanos: f64) -> String {
    if nanos < 1e3 {
        format!("{nanos:.1} ns")
    } else if nanos < 1e6 {
        format!("{:.2} us", nanos / 1e3)
    } else if nanos < 1e9 {
        format!("{:.2} ms", nanos / 1e6)
    } else {
        format!("{:.2} s", nanos / 1e9)
    }
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
