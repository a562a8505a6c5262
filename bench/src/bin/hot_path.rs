//! The measurement the hot-path design rests on: how close tickring gets to
//! the floor ring (`tickring_bench::peers::floor`: one 64-byte line per slot
//! holding the stamp and the value, nothing else, so one cache-line transfer
//! per hop), in latency and in 1P-1C throughput, in paired rounds.
//!
//! ```text
//! cargo run --release -p tickring-bench --bin hot_path              # full run, about a minute
//! cargo run --release -p tickring-bench --bin hot_path -- --quick   # smoke run (CI), seconds
//! cargo run --release -p tickring-bench --bin hot_path -- --help
//! ```
//!
//! 1. **Ping-pong, closed loop**: each ping sent when the last echo is back;
//!    tickring (ponger a handler thread), tickring with a ponger thread that
//!    polls an `EventPoller` (its `/tr` column is the poller's cost against
//!    a handler thread), the `disruptor` crate, rtrb (the fastest SPSC peer)
//!    and the floor ring: one-way latency with paired ratios. Three more
//!    rows move a market-data-sized message, every word checked: tickring
//!    with a 56-byte event (stamp and event one 64-byte line: a 64-byte
//!    record whose sequence is the ring's), tickring with a 64-byte event
//!    (two lines) and the `disruptor` crate with the 64-byte event.
//! 2. **1P-1C throughput** (LMAX's unicast shape, ring 65,536): tickring
//!    with `publish`, with `batch_publish(10)`, and with its default
//!    full-ring policy (`FullRingWait::Yield`; the others spin when pinned,
//!    as the floor ring's producer does), beside the floor ring and rtrb.
//!    Each round builds every contender fresh, warms it with a quarter-size
//!    sample, then measures one sample whose sums are checked; the table
//!    gives the median rate over rounds, the spread, and the paired ratios
//!    to tickring and to the floor.
//! 3. **Event size, 1P-1C, batch of 10 and pipeline 1P-3C**: tickring with
//!    the throughput bench's 56-byte event (`56B`: one line a slot) and its
//!    64-byte event (`64B`: two lines), and the `disruptor` crate with the
//!    64-byte event (1P-1C and batch), in the same rounds: what folding a
//!    64-byte record's sequence into the ring's stamp buys, paired against
//!    the same placement. The pipeline rows run a tenth of the events, with
//!    the throughput bench's placement for 4 threads.
//!
//! Two pinned threads busy-spin when the process may use two cores;
//! otherwise they yield and the output says so: the numbers then mean
//! little. The order of systems rotates from round to round.

use std::process::ExitCode;

use tickring::FullRingWait;
use tickring_bench::events::{Event56, Event64};
use tickring_bench::hist::{self, Rounds};
use tickring_bench::peers::System;
use tickring_bench::place::{Placement, Waiting};
use tickring_bench::scenarios::{self, Contender, Event, Plan, Shape, TickOptions};
use tickring_bench::{args, stats, units};

const USAGE: &str = "\
hot_path: tickring against the floor ring, ping-pong latency and 1P-1C throughput

USAGE: cargo run --release -p tickring-bench --bin hot_path -- [OPTIONS]

OPTIONS:
    --quick             a smoke run of seconds (CI)
    --rounds N          rounds of each measurement [7; quick 2]
    --round-trips N     measured round trips per ping-pong block [200000; quick 20000]
    --events N          events per measured throughput sample [20000000; quick 1000000]
    -h, --help          this text
";

fn main() -> ExitCode {
    let (mut common, mut round_trips, mut events) = (args::Common::default(), None, None);
    args::parse(USAGE, |option, parser| {
        match option {
            "round-trips" => round_trips = Some(args::value(parser)?),
            "events" => events = Some(args::value::<u64>(parser)?),
            _ => return common.take(option, parser),
        }
        Ok(true)
    });
    let rounds = common.rounds(2, 7);
    let round_trips = common.size(round_trips, 20_000, 200_000);
    let events = common.size(events, 1_000_000, 20_000_000).max(4);
    let placement = Placement::for_threads(2);
    println!("hot_path: {}", placement.describe());
    if placement.waiting() != Waiting::Spin {
        println!("WARNING: fewer than 2 cores to pin: every wait yields, the figures measure the scheduler");
    }
    if let Err(error) = ping_pong(&placement, rounds, round_trips) {
        eprintln!("hot_path: {error}");
        return ExitCode::FAILURE;
    }
    throughput(&placement, rounds, events);
    event_size(&placement, rounds, events);
    ExitCode::SUCCESS
}

/// Tells stderr which run comes next.
fn progress(what: &'static str, rounds: usize, names: Vec<&'static str>) -> impl Fn(usize, usize) {
    move |round, next| {
        eprintln!(
            "[hot_path] {what} round {}/{rounds}: {}",
            round + 1,
            names[next]
        )
    }
}

fn ping_pong(placement: &Placement, rounds: usize, measured: u64) -> Result<(), String> {
    let plan = Plan {
        measured,
        interval: None,
        waiting: placement.waiting(),
    };
    type Run = fn(Plan, &Placement) -> Result<tickring_bench::scenarios::Block, String>;
    let runs: [(&'static str, Run); 8] = [
        ("tickring", |plan, placement| {
            scenarios::ping_pong(System::Tickring, plan, placement)
        }),
        (
            "tickring, ponger polls",
            scenarios::ping_pong_polling_ponger,
        ),
        ("disruptor", |plan, placement| {
            scenarios::ping_pong(System::Disruptor, plan, placement)
        }),
        ("rtrb", |plan, placement| {
            scenarios::ping_pong(System::Rtrb, plan, placement)
        }),
        ("tickring, 56-byte event", |plan, placement| {
            scenarios::ping_pong_of::<[i64; 7]>(System::Tickring, plan, placement)
        }),
        ("tickring, 64-byte event", |plan, placement| {
            scenarios::ping_pong_of::<[i64; 8]>(System::Tickring, plan, placement)
        }),
        ("disruptor, 64-byte event", |plan, placement| {
            scenarios::ping_pong_of::<[i64; 8]>(System::Disruptor, plan, placement)
        }),
        ("floor ring", |plan, placement| {
            scenarios::ping_pong(System::Floor, plan, placement)
        }),
    ];
    let names = runs.map(|(name, _)| name);
    let results = stats::rounds(
        rounds,
        runs.len(),
        progress("ping-pong", rounds, names.to_vec()),
        |_, run| (runs[run].1)(plan, placement).map(|block| block.histogram),
    );
    let histograms = results
        .into_iter()
        .map(|runs| runs.into_iter().collect())
        .collect::<Result<Vec<Vec<_>>, _>>()?;
    let rows = Rounds::rows(&names, &histograms);
    hist::print_table(
        "ping-pong, closed loop: one-way latency (median over rounds)",
        &rows,
        0,
        Some(runs.len() - 1),
    );
    Ok(())
}

fn throughput(placement: &Placement, rounds: usize, events: u64) {
    // Spin on a full ring when pinned, as the floor ring's producer does.
    let full_ring = tickring_bench::peers::full_ring_wait(placement.waiting());
    let spin_if_full = TickOptions {
        full_ring: Some(full_ring),
        ..TickOptions::default()
    };
    let contenders: Vec<Contender> = vec![
        ("tickring publish".into(), System::Tickring, spin_if_full),
        (
            "tickring batch_publish(10)".into(),
            System::Tickring,
            TickOptions {
                batch: 10,
                ..spin_if_full
            },
        ),
        (
            "tickring, yield if full".into(),
            System::Tickring,
            TickOptions {
                full_ring: Some(FullRingWait::Yield),
                ..spin_if_full
            },
        ),
        ("rtrb".into(), System::Rtrb, spin_if_full),
        ("floor ring".into(), System::Floor, spin_if_full),
    ];
    let rates = scenarios::paired_throughput::<Event>(
        Shape::Unicast,
        placement,
        &contenders,
        rounds,
        events,
    )
    .rates;
    let names: Vec<&str> = contenders.iter().map(|(name, ..)| name.as_str()).collect();
    let title = format!(
        "1P-1C throughput, {} events per sample (median over {rounds} rounds)",
        units::grouped(events)
    );
    stats::print_rates(&title, &names, &rates, 0, Some(contenders.len() - 1));
}

/// 1P-1C and its batch shape with the 56- and 64-byte events, paired: the
/// rows differ in event and system only, never in placement or moment.
fn event_size(placement: &Placement, rounds: usize, events: u64) {
    let full_ring = tickring_bench::peers::full_ring_wait(placement.waiting());
    let spin_if_full = TickOptions {
        full_ring: Some(full_ring),
        ..TickOptions::default()
    };
    type Sample = fn(&Contender, Shape, &Placement, u64) -> (f64, u64);
    let four = Placement::for_threads(4);
    let rows: [(&str, System, Shape, Sample); 8] = [
        (
            "tickring 56B, 1 line",
            System::Tickring,
            Shape::Unicast,
            scenarios::sample_rate::<Event56>,
        ),
        (
            "tickring 64B, 2 lines",
            System::Tickring,
            Shape::Unicast,
            scenarios::sample_rate::<Event64>,
        ),
        (
            "disruptor 64B",
            System::Disruptor,
            Shape::Unicast,
            scenarios::sample_rate::<Event64>,
        ),
        (
            "tickring 56B, batch 10",
            System::Tickring,
            Shape::UnicastBatch,
            scenarios::sample_rate::<Event56>,
        ),
        (
            "tickring 64B, batch 10",
            System::Tickring,
            Shape::UnicastBatch,
            scenarios::sample_rate::<Event64>,
        ),
        (
            "disruptor 64B, batch 10",
            System::Disruptor,
            Shape::UnicastBatch,
            scenarios::sample_rate::<Event64>,
        ),
        (
            "tickring 56B, pipeline",
            System::Tickring,
            Shape::Pipeline,
            scenarios::sample_rate::<Event56>,
        ),
        (
            "tickring 64B, pipeline",
            System::Tickring,
            Shape::Pipeline,
            scenarios::sample_rate::<Event64>,
        ),
    ];
    let names = rows.map(|(name, ..)| name);
    let samples = tickring_bench::stats::rounds(
        rounds,
        rows.len(),
        progress("event size", rounds, names.to_vec()),
        |_, index| {
            let (name, system, shape, sample) = rows[index];
            let (rate, allocations) = if shape == Shape::Pipeline {
                let options = TickOptions {
                    full_ring: Some(tickring_bench::peers::full_ring_wait(four.waiting())),
                    ..TickOptions::default()
                };
                sample(
                    &(name.to_owned(), system, options),
                    shape,
                    &four,
                    events / 10,
                )
            } else {
                sample(
                    &(name.to_owned(), system, spin_if_full),
                    shape,
                    placement,
                    events,
                )
            };
            assert!(
                system != System::Tickring || allocations == 0,
                "{name} allocated {allocations} times after build()"
            );
            rate
        },
    );
    let title = format!(
        "event size: 1P-1C, batch of 10, pipeline; {} events per sample (pipeline a tenth), median over {rounds} rounds",
        units::grouped(events)
    );
    stats::print_rates(&title, &names, &samples, 1, None);
}
