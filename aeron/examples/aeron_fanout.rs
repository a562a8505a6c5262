//! Quotes fanned out over Aeron UDP: a feed process publishes into its ring,
//! whose `AeronSink` stage sends every quote; two strategy processes each
//! receive them with an `AeronSource` into a ring of their own and run a
//! pipeline over it, printing throughput and end-to-end latency.
//!
//! ```text
//! feed: ring ─▶ AeronSink ═ aeron:udp 127.0.0.1 ═▶ AeronSource ─▶ ring ─▶ strategy 0
//!                                               ╚═▶ AeronSource ─▶ ring ─▶ strategy 1
//! ```
//!
//! With no arguments everything runs on this host in seconds: the feed
//! embeds a media driver and starts both strategies (this program again).
//! Across hosts, run a media driver on each (the `media_driver` example)
//! and the roles by hand (README, "Beyond one host"):
//!
//! ```text
//! cargo run --release --manifest-path aeron/Cargo.toml --example aeron_fanout                # all here
//! cargo run --release --manifest-path aeron/Cargo.toml --example aeron_fanout -- --quick     # CI
//! ... --example aeron_fanout -- --role strategy --dir D --channel C --events N   # on each receiver
//! ... --example aeron_fanout -- --role feed --dir D --channel C --events N --strategies 0
//! ```
//!
//! Two vCPUs cannot give a media driver, a feed and two strategies a core
//! each: every thread here yields when idle, so latency includes the
//! scheduler's hand-offs. Quotes are paced (`--rate`), so it is not queueing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusteron_client::{cformat, Aeron, Handlers};
use rusteron_media_driver::testing::EmbeddedDriver;
use tickring::{build_single_producer, EventProducer, Yielding};
use tickring_aeron::{AeronSink, AeronSource, BackPressure, PodCodec, SourceOptions};
use tickring_bench::{args, hist, units};

const STREAM: i32 = 7001;
const USAGE: &str = "usage: aeron_fanout [--quick] [--events N] [--rate PER_SECOND]
       [--role feed|strategy] [--dir AERON_DIR] [--channel CHANNEL] [--strategies N]\n";

/// One 64-byte quote, sent as its bytes.
#[derive(Debug, Default, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Quote {
    sequence: u64,
    sent_ns: i64, // Aeron::nano_clock(): CLOCK_MONOTONIC, one clock per host
    instrument: u64,
    bid: i64,
    ask: i64,
    sizes: [u64; 3],
}

struct Settings {
    events: u64,
    rate: u64,
    dir: Option<String>,
    channel: String,
    strategies: usize,
    role: String,
}

fn settings() -> Settings {
    let mut common = args::Common::default();
    let (mut events, mut rate, mut dir, mut channel, mut strategies, mut role) = (
        None,
        200_000,
        None,
        "aeron:udp?endpoint=127.0.0.1:24330".to_owned(),
        2,
        "feed".to_owned(),
    );
    args::parse(USAGE, |option, parser| {
        match option {
            "events" => events = Some(args::value(parser)?),
            "rate" => rate = args::value(parser)?,
            "dir" => dir = Some(args::value(parser)?),
            "channel" => channel = args::value(parser)?,
            "strategies" => strategies = args::value(parser)?,
            "role" => role = args::value(parser)?,
            _ => return common.take(option, parser),
        }
        Ok(true)
    });
    let events = common.size(events, 20_000, 400_000);
    Settings {
        events,
        rate,
        dir,
        channel,
        strategies,
        role,
    }
}

/// A strategy: receives every quote into its ring; the ring's handler
/// keeps a mid-price and the latency from the feed's send.
fn strategy(settings: &Settings) -> Result<(), String> {
    let dir = settings.dir.as_deref().ok_or("--dir is required")?;
    let (aeron, errors) =
        tickring_aeron::connect(dir, Duration::from_secs(10)).map_err(|e| format!("{e:?}"))?;
    let subscription = aeron
        .async_add_subscription(
            &cformat!("{}", settings.channel),
            STREAM,
            Handlers::NONE,
            Handlers::NONE,
        )
        .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
        .map_err(|e| format!("subscribe: {e:?}"))?;
    let handled = Arc::new(AtomicU64::new(0));
    let (done, last) = (Arc::clone(&handled), settings.events - 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut latency = hist::new_histogram();
    let mut mid = 0.0f64;
    let mut first: Option<Instant> = None;
    let producer = build_single_producer(4096, Quote::default, Yielding::new())
        .handle_events_with(move |quote: &Quote, _, _| {
            let now = Aeron::nano_clock();
            first.get_or_insert_with(Instant::now);
            latency.saturating_record((now - quote.sent_ns).max(1) as u64);
            mid = 0.99 * mid + 0.01 * (quote.bid + quote.ask) as f64 / 2.0;
            done.fetch_add(1, Ordering::Release);
            if quote.sequence == last {
                let elapsed = first.map_or(0.0, |first| first.elapsed().as_secs_f64());
                let _ = tx.send((latency.clone(), mid, elapsed));
            }
        })
        .build()
        .map_err(|e| e.to_string())?;
    let source = AeronSource::spawn(subscription, producer, PodCodec, SourceOptions::default())?;
    println!("ready"); // the feed waits for this line
    let (latency, mid, elapsed) = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "no last quote within 60 s".to_owned())?;
    let (_, counters) = source.stop();
    let seen = handled.load(Ordering::Acquire);
    println!(
        "{seen} quotes ({} missing, {} gaps), {} ; mid {mid:.1}; client errors {}",
        counters.missing,
        counters.gaps,
        units::rate(seen as f64 / elapsed.max(1e-9)),
        errors.count()
    );
    hist::print_percentiles(
        "end-to-end latency, feed ring to strategy handler",
        &[("quotes", &latency)],
    );
    if seen + counters.missing != settings.events {
        return Err(format!(
            "saw {seen} + missed {} of {}",
            counters.missing, settings.events
        ));
    }
    Ok(())
}

/// Kills the strategy processes by pid if they are still running.
struct Strategies(Vec<Child>);

impl Drop for Strategies {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The feed: (embeds a driver and starts the strategies when running
/// alone,) then publishes paced quotes through the sink stage.
fn feed(settings: &Settings) -> Result<(), String> {
    let driver = match &settings.dir {
        Some(_) => None,
        None => Some(EmbeddedDriver::launch().map_err(|e| format!("media driver: {e:?}"))?),
    };
    let dir = settings.dir.clone().unwrap_or_else(|| {
        driver
            .as_ref()
            .map(|d| d.dir().to_owned())
            .unwrap_or_default()
    });
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut strategies = Strategies(Vec::new());
    for _ in 0..if driver.is_some() {
        settings.strategies
    } else {
        0
    } {
        let child = Command::new(&exe)
            .args([
                "--role",
                "strategy",
                "--dir",
                &dir,
                "--channel",
                &settings.channel,
            ])
            .args(["--events", &settings.events.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start a strategy: {e}"))?;
        strategies.0.push(child);
    }
    let mut outputs = Vec::new();
    for child in &mut strategies.0 {
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        match lines.next() {
            Some(Ok(line)) if line == "ready" => outputs.push(lines),
            other => return Err(format!("a strategy did not start: {other:?}")),
        }
    }
    let (aeron, _errors) =
        tickring_aeron::connect(&dir, Duration::from_secs(10)).map_err(|e| format!("{e:?}"))?;
    let publication = aeron
        .async_add_publication(&cformat!("{}", settings.channel), STREAM)
        .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
        .map_err(|e| format!("publication: {e:?}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !publication.is_connected() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let sink = AeronSink::new(
        publication,
        PodCodec,
        BackPressure::Wait(Duration::from_secs(5)),
        64,
    );
    let counters = sink.counters();
    let mut producer = build_single_producer(4096, Quote::default, Yielding::new())
        .handle_events_with_handler(sink)
        .build()
        .map_err(|e| e.to_string())?;
    let mut rng = tickring_bench::Rng::with_seed(7);
    let start = Instant::now();
    for sequence in 0..settings.events {
        let due = start + Duration::from_secs_f64(sequence as f64 / settings.rate as f64);
        while Instant::now() < due {
            std::thread::yield_now();
        }
        let bid = 10_000 + rng.i64(-50..50);
        producer
            .publish(|quote| {
                *quote = Quote {
                    sequence,
                    sent_ns: Aeron::nano_clock(),
                    instrument: sequence % 64,
                    bid,
                    ask: bid + 1 + rng.i64(0..3),
                    sizes: [100, 200, 0],
                }
            })
            .map_err(|e| e.to_string())?;
    }
    let _ = producer.shutdown();
    let sent = counters.snapshot();
    println!(
        "feed: {} quotes paced at {}/s over {}: {} sent, {} dropped",
        units::grouped(settings.events),
        units::grouped(settings.rate),
        settings.channel,
        units::grouped(sent.sent),
        units::grouped(sent.dropped)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for (index, (child, lines)) in strategies.0.iter_mut().zip(outputs).enumerate() {
        for line in lines.map_while(Result::ok) {
            println!("strategy {index}: {line}");
        }
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                return Err(format!("strategy {index} overran; killed"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !child.wait().map_err(|e| e.to_string())?.success() {
            return Err(format!("strategy {index} failed"));
        }
    }
    drop(aeron);
    Ok(())
}

fn main() -> ExitCode {
    let settings = settings();
    let result = match settings.role.as_str() {
        "strategy" => strategy(&settings),
        "feed" => feed(&settings),
        other => Err(format!("--role {other}: feed or strategy")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("aeron_fanout: {error}");
            ExitCode::FAILURE
        }
    }
}
