//! Latency of tickring beside its peers, on pinned threads: ping-pong and a
//! paced three-stage pipeline, recorded from each message's *intended* send
//! time (a stall is charged to every message it delayed).
//!
//! ```text
//! cargo run --release -p tickring-bench --bin latency              # full run, a few minutes
//! cargo run --release -p tickring-bench --bin latency -- --quick   # smoke run (CI), seconds
//! cargo run --release -p tickring-bench --bin latency -- --help
//! ```
//!
//! Systems: tickring, the `disruptor` crate, crossbeam-channel, rtrb and the
//! floor ring (see `tickring_bench::peers`). Each measurement is a block on a
//! fresh pipeline (a warm-up, then the measured messages); blocks run in
//! rounds, every system once per round in a rotating order, and the table
//! gives per system the median over rounds of each percentile, the largest
//! value of any round, and paired ratios (within a round, then the median)
//! to tickring and to the floor. Threads busy-spin on a core each when there
//! are enough cores; otherwise they share the cores and yield.
//!
//! Each scenario writes one `.hgrm` file per system (all rounds merged,
//! values in µs) and an SVG percentile plot of all systems under `--out`
//! (default `target/tickring-latency`, in `$CARGO_TARGET_DIR` when set). A
//! counting allocator counts allocations during the measured messages; the
//! run exits with status 1 if tickring allocated or any system delivered a
//! wrong message.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tickring_bench::alloc::Counting;
use tickring_bench::hist::{self, Rounds};
use tickring_bench::peers::System;
use tickring_bench::place::Placement;
use tickring_bench::scenarios::{self, Block, Plan};
use tickring_bench::{args, stats, units};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const USAGE: &str = "\
latency: ping-pong and a paced 3-stage pipeline, tickring beside the disruptor crate,
crossbeam-channel, rtrb and the floor ring; percentile table, .hgrm files and SVG plots

USAGE: cargo run --release -p tickring-bench --bin latency -- [OPTIONS]

OPTIONS:
    --quick              a smoke run of seconds (CI): 2 rounds of small blocks
    --rounds N           rounds of blocks [5]
    --round-trips N      measured ping-pong round trips per block [200000]
    --ping-interval N    ns between pings; 0 sends each ping when its echo is back [0]
    --messages N         measured pipeline messages per block [100000]
    --interval N         ns between pipeline messages [10000]
    --out DIR            where the .hgrm and .svg files go [target/tickring-latency]
    -h, --help           this text
";

type Scenario = fn(System, Plan, &Placement) -> Result<Block, String>;

fn main() -> ExitCode {
    let (mut common, mut round_trips, mut messages) = (args::Common::default(), None, None);
    let (mut ping_interval, mut interval, mut out) = (0u64, 10_000u64, None::<PathBuf>);
    args::parse(USAGE, |option, parser| {
        match option {
            "round-trips" => round_trips = Some(args::value(parser)?),
            "ping-interval" => ping_interval = args::value(parser)?,
            "messages" => messages = Some(args::value(parser)?),
            "interval" => interval = args::value(parser)?,
            "out" => out = Some(args::value(parser)?),
            _ => return common.take(option, parser),
        }
        Ok(true)
    });
    let rounds = common.rounds(2, 5);
    let out = out.unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or("target".into(), PathBuf::from);
        target.join("tickring-latency")
    });
    let pace = |ns: u64| (ns > 0).then(|| Duration::from_nanos(ns));
    let scenarios: [(&str, usize, u64, Option<Duration>, Scenario); 2] = [
        (
            "ping-pong",
            2,
            common.size(round_trips, 20_000, 200_000),
            pace(ping_interval),
            scenarios::ping_pong,
        ),
        (
            "pipeline",
            4,
            common.size(messages, 10_000, 100_000),
            pace(interval),
            scenarios::pipeline,
        ),
    ];
    let systems = System::ALL;
    let mut ok = true;
    for (name, threads, measured, interval, scenario) in scenarios {
        let placement = Placement::for_threads(threads);
        println!(
            "\n== {name}: {} measured messages per block, {rounds} rounds; {}",
            units::grouped(measured),
            placement.describe()
        );
        let plan = Plan {
            measured,
            interval,
            waiting: placement.waiting(),
        };
        let progress = |round, system: usize| {
            eprintln!(
                "[latency] {name} round {}/{rounds}: {}",
                round + 1,
                systems[system].name()
            )
        };
        let results = stats::rounds(rounds, systems.len(), progress, |_, system| {
            scenario(systems[system], plan, &placement)
        });
        let blocks: Vec<Vec<Block>> = match results
            .into_iter()
            .map(|runs| runs.into_iter().collect())
            .collect()
        {
            Ok(blocks) => blocks,
            Err(error) => {
                eprintln!("latency: {name}: {error}");
                return ExitCode::FAILURE;
            }
        };
        ok &= report(name, &systems, &blocks, &out);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints a scenario's table and checks, writes its files; `false` on a
/// failed check.
fn report(name: &str, systems: &[System], blocks: &[Vec<Block>], out: &std::path::Path) -> bool {
    let histograms: Vec<Vec<_>> = blocks
        .iter()
        .map(|runs| runs.iter().map(|block| block.histogram.clone()).collect())
        .collect();
    let names: Vec<&str> = systems.iter().map(|system| system.name()).collect();
    let rows = Rounds::rows(&names, &histograms);
    let index = |wanted: System| systems.iter().position(|system| *system == wanted);
    let baseline = index(System::Tickring).expect("tickring is measured");
    hist::print_table(
        &format!("{name}: one-way latency (median over rounds)"),
        &rows,
        baseline,
        index(System::Floor),
    );
    let mut ok = true;
    println!(
        "\n{:<24}{:>14}{:>14}{:>8}",
        "", "rate", "allocations", "wrong"
    );
    for (system, runs) in systems.iter().zip(blocks) {
        let rates: Vec<f64> = runs
            .iter()
            .map(|block| block.measured as f64 / block.elapsed.as_secs_f64())
            .collect();
        let allocations: u64 = runs.iter().map(|block| block.allocations).sum();
        let wrong: u64 = runs.iter().map(|block| block.wrong).sum();
        println!(
            "{:<24}{:>14}{:>14}{:>8}",
            system.name(),
            units::rate(stats::median(&rates)),
            units::grouped(allocations),
            wrong
        );
        ok &= wrong == 0 && (*system != System::Tickring || allocations == 0);
    }
    if !ok {
        eprintln!("latency: {name}: a system delivered a wrong message, or tickring allocated");
    }
    if let Err(error) = write_files(name, systems, &histograms, out) {
        eprintln!("latency: {error}");
        return false;
    }
    ok
}

/// One `.hgrm` per system (rounds merged) and one SVG of all of them.
fn write_files(
    name: &str,
    systems: &[System],
    histograms: &[Vec<tickring_bench::Histogram<u64>>],
    out: &std::path::Path,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|error| format!("{}: {error}", out.display()))?;
    let mut merged = Vec::new();
    for (system, rounds) in systems.iter().zip(histograms) {
        let mut all = hist::new_histogram();
        rounds
            .iter()
            .for_each(|round| all.add(round).expect("same bounds"));
        let path = out.join(format!("{name}-{}.hgrm", system.slug()));
        std::fs::write(&path, hist::hgrm(&all))
            .map_err(|error| format!("{}: {error}", path.display()))?;
        merged.push(all);
    }
    let series: Vec<_> = systems
        .iter()
        .map(|system| system.name())
        .zip(&merged)
        .collect();
    let plot = out.join(format!("{name}.svg"));
    hist::write_plot(
        &plot,
        &format!("{name}: one-way latency by percentile"),
        &series,
    )?;
    println!(
        "wrote {} and {} .hgrm files to {}",
        plot.display(),
        merged.len(),
        out.display()
    );
    Ok(())
}
