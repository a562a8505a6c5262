//! Market data between processes through a shared-memory ring
//! (`tickring::shm`, Linux): a feed process publishes quotes, two strategy
//! processes each see every quote, in order.
//!
//! ```text
//!                                  ┌─▶ strategy 0: moving mid-price per instrument
//! feed ─▶ /dev/shm/tickring-ipc-… ─┤
//!                                  └─▶ strategy 1: crossed quotes (bid >= ask)
//! ```
//!
//! The feed starts both strategies (this program again, `--strategy K`),
//! waits until both joined, publishes flat out (throughput; the latency then
//! includes queueing behind a full ring), lets them drain, publishes paced
//! (one quote's own latency), closes the ring and prints their reports.
//! Quotes carry their publish time in `CLOCK_MONOTONIC`, one clock for every
//! process on the host. Three processes on what may be two cores: all yield
//! when idle (`Yielding`, `FullRingWait::Yield`), none busy-spins.
//!
//! ```text
//! cargo run --release --example ipc_market_data              # seconds
//! cargo run --release --example ipc_market_data -- --quick   # smoke run (CI)
//! ```

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tickring::shm::{
    monotonic_ns, ShmConsumer, ShmConsumerOptions, ShmEvent, ShmOptions, ShmProducer,
};
use tickring::{EventHandler, EventProducer, FullRingWait, Yielding};
use tickring_bench::{args, hist, place::Waiting, units, Histogram, Rng};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One quote, one 64-byte line: plain data, the same bytes in every process.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Quote {
    sequence: u64,
    published_ns: u64, // CLOCK_MONOTONIC
    instrument: u32,
    paced: u32, // 0: the flat-out phase, 1: the paced one
    bid: i64,   // prices in ticks
    ask: i64,
    bid_size: u32,
    ask_size: u32,
    _reserved: [u64; 2],
}
const _: () = assert!(std::mem::size_of::<Quote>() == 64);

impl ShmEvent for Quote {
    const SCHEMA_NAME: &'static str = "example.quote";
    const SCHEMA_VERSION: u32 = 1;
}

const INSTRUMENTS: u32 = 64;
const STRATEGIES: usize = 2;
/// Quotes per second of the paced phase.
const RATE: u64 = 100_000;

/// One strategy process's state: its signal, checks and measurements.
struct Strategy {
    kind: usize,
    mid: Vec<f64>, // strategy 0: moving mid-price per instrument
    crossed: u64,  // strategy 1: quotes with bid >= ask
    out_of_order: u64,
    latency: [Histogram<u64>; 2], // flat out, paced
    flat_out: (u64, u64),         // first publish time, last handling time
}

impl EventHandler<Quote> for Strategy {
    fn on_event(&mut self, quote: &Quote, sequence: i64, _end_of_batch: bool) {
        let instrument = (quote.instrument % INSTRUMENTS) as usize;
        if self.kind == 0 {
            let mid = (quote.bid + quote.ask) as f64 / 2.0;
            self.mid[instrument] += (mid - self.mid[instrument]) / 16.0;
        } else {
            self.crossed += u64::from(quote.bid >= quote.ask);
        }
        self.out_of_order += u64::from(quote.sequence != sequence as u64); // both from 0
        let now = monotonic_ns();
        let latency = now.saturating_sub(quote.published_ns).max(1);
        self.latency[(quote.paced & 1) as usize].saturating_record(latency);
        if quote.paced == 0 {
            self.flat_out = (self.flat_out.0.min(quote.published_ns), now);
        }
    }
}

/// A strategy process: handles quotes until the feed closes the ring,
/// prints its report; fails unless it saw every quote, in order.
fn strategy(kind: usize, path: &Path, (flat, paced): (u64, u64)) -> Result<()> {
    // Joins at the cursor: the feed publishes once both strategies joined,
    // so that is the first quote.
    let mut consumer = ShmConsumer::<Quote>::open(path, &ShmConsumerOptions::new())?;
    let mut me = Strategy {
        kind,
        mid: vec![0.0; INSTRUMENTS as usize],
        crossed: 0,
        out_of_order: 0,
        latency: [(); 2].map(|_| hist::new_histogram()),
        flat_out: (u64::MAX, 0),
    };
    let handled = consumer.run(&mut me, &Yielding::new())?;
    let pid = std::process::id();
    let signal = match kind {
        0 => format!("moving mid of instruments 0-3: {:.1?}", &me.mid[..4]),
        _ => format!("crossed quotes: {}", units::grouped(me.crossed)),
    };
    let quotes = units::grouped(handled);
    println!("strategy {kind} (pid {pid}): {quotes} quotes; {signal}");
    let took = me.flat_out.1.saturating_sub(me.flat_out.0) as f64;
    let (rate, took) = (units::rate(flat as f64 * 1e9 / took), units::ns(took));
    println!("flat out: first publish -> last handled in {took}: {rate}");
    let rows = [("flat out", &me.latency[0]), ("paced", &me.latency[1])];
    hist::print_percentiles("publish -> handled, across processes", &rows);
    if handled != flat + paced || me.out_of_order > 0 {
        let wrong = format!("{} out of order", me.out_of_order);
        return Err(format!("handled {handled} of {} quotes, {wrong}", flat + paced).into());
    }
    Ok(())
}

/// Fills quote `sequence`: a price around its instrument's level, and now
/// and then a crossed one (a bad print the strategies should notice).
fn next_quote(rng: &mut Rng, sequence: u64, paced: bool, quote: &mut Quote) {
    let instrument = rng.u32(0..INSTRUMENTS);
    let mid = 10_000 + 10 * i64::from(instrument) + rng.i64(-5..=5);
    let crossed = rng.u32(0..1000) == 0; // bid above ask
    let half_spread = rng.i64(1..=3) - 4 * i64::from(crossed);
    (quote.sequence, quote.instrument, quote.paced) = (sequence, instrument, u32::from(paced));
    (quote.bid, quote.ask) = (mid - half_spread, mid + half_spread);
    (quote.bid_size, quote.ask_size) = (rng.u32(1..500), rng.u32(1..500));
    quote.published_ns = monotonic_ns(); // last: as close to the publish as it gets
}

/// Publishes flat out, waits for the strategies to drain, publishes paced.
fn feed(producer: &mut ShmProducer<Quote>, (flat, paced): (u64, u64)) -> Result<()> {
    let (mut rng, start) = (Rng::with_seed(42), Instant::now());
    for sequence in 0..flat {
        producer.publish(|quote| next_quote(&mut rng, sequence, false, quote))?;
    }
    let rate = units::rate(flat as f64 / start.elapsed().as_secs_f64());
    println!("feed: {} quotes flat out at {rate}", units::grouped(flat));
    let drained_by = Instant::now() + Duration::from_secs(10);
    while producer.remaining_capacity() < producer.capacity() && Instant::now() < drained_by {
        sleep(Duration::from_micros(100));
    }
    let (start, interval) = (monotonic_ns(), 1_000_000_000 / RATE);
    for k in 0..paced {
        Waiting::Yield.until(|| (monotonic_ns() >= start + k * interval).then_some(()));
        producer.publish(|quote| next_quote(&mut rng, flat + k, true, quote))?;
    }
    let rate = units::rate(RATE as f64);
    println!("feed: {} quotes paced at {rate}", units::grouped(paced));
    Ok(())
}

/// Waits for a strategy until `deadline`, else kills it (by its pid).
fn finish(mut child: Child, deadline: Instant) -> Result<Output> {
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        sleep(Duration::from_millis(5));
    }
    if child.try_wait()?.is_none() {
        eprintln!(
            "ipc_market_data: strategy pid {} overran: killing it",
            child.id()
        );
        child.kill()?;
    }
    Ok(child.wait_with_output()?) // its report, and how it exited
}

/// The feed process: creates the ring, starts the strategies, publishes,
/// closes, then collects the strategies' reports.
fn run(events: (u64, u64), ring: usize) -> Result<()> {
    let shm = Some(PathBuf::from("/dev/shm")).filter(|shm| shm.is_dir());
    let name = format!("tickring-ipc-market-data-{}", std::process::id());
    let path = shm.unwrap_or_else(std::env::temp_dir).join(name);
    let options = ShmOptions::new(ring).full_ring_wait(FullRingWait::Yield);
    let mut producer = ShmProducer::<Quote>::create(&path, &options)?;
    let (pid, ring) = (std::process::id(), units::grouped(ring as u64));
    println!("feed (pid {pid}): ring {} of {ring} quotes", path.display());
    let (exe, flat) = (std::env::current_exe()?, events.0.to_string());
    let mut children = Vec::new();
    for kind in 0..STRATEGIES {
        let mut command = Command::new(&exe);
        command.args(["--strategy", &kind.to_string(), "--events", &flat, "--path"]);
        children.push(command.arg(&path).stdout(Stdio::piped()).spawn()?);
    }
    // Joined: each knows where it starts, so none misses the first quote.
    let joined_by = Instant::now() + Duration::from_secs(10);
    while producer.active_consumers() < STRATEGIES && Instant::now() < joined_by {
        sleep(Duration::from_millis(1));
    }
    let fed = match producer.active_consumers() {
        STRATEGIES => feed(&mut producer, events),
        _ => Err("the strategies did not join the ring".into()),
    };
    let report = producer.close(); // the strategies drain what was published, then stop
    if report.evictions > 0 {
        println!("feed: evicted {} silent strategies", report.evictions);
    }
    let _ = std::fs::remove_file(&path); // `close` removed it already (`remove_on_close`)
    let (deadline, mut failed) = (Instant::now() + Duration::from_secs(10), 0);
    for child in children {
        let output = finish(child, deadline)?;
        print!("\n{}", String::from_utf8_lossy(&output.stdout));
        failed += usize::from(!output.status.success());
    }
    fed?;
    match failed {
        0 => Ok(()),
        _ => Err(format!("{failed} of {STRATEGIES} strategies failed").into()),
    }
}

const USAGE: &str = "\
ipc_market_data: a feed process and two strategy processes over a shared-memory ring
USAGE: cargo run --release --example ipc_market_data -- [OPTIONS]
    --quick        a smoke run (CI)
    --events N     quotes published flat out [2000000; quick 200000],
                   then a tenth as many paced at 100,000 per second
    --ring N       ring capacity, a power of two [65536]
    -h, --help     this text
(--strategy K --path FILE: how the feed starts a strategy process)
";

fn main() -> ExitCode {
    let (mut quick, mut events, mut ring) = (false, None, 65_536);
    let (mut kind, mut path) = (None, None::<PathBuf>);
    args::parse(USAGE, |option, parser| {
        match option {
            "quick" => quick = true,
            "events" => events = Some(args::value(parser)?),
            "ring" => ring = args::value(parser)?,
            "strategy" => kind = Some(args::value(parser)?),
            "path" => path = Some(args::value(parser)?),
            _ => return Ok(false),
        }
        Ok(true)
    });
    let flat: u64 = events.unwrap_or(if quick { 200_000 } else { 2_000_000 });
    let events = (flat, flat / 10);
    let result = match (kind, path) {
        (Some(kind), Some(path)) => strategy(kind, &path, events),
        _ => run(events, ring),
    };
    if let Err(error) = result {
        eprintln!("ipc_market_data: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
