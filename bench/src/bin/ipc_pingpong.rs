//! Cross-process latency: ping-pong between two processes over two
//! shared-memory rings (`tickring::shm`), beside the floor ring between
//! threads on the same two cores.
//!
//! ```text
//! cargo run --release -p tickring-bench --bin ipc_pingpong              # 5 rounds, seconds
//! cargo run --release -p tickring-bench --bin ipc_pingpong -- --quick   # smoke run (CI)
//! cargo run --release -p tickring-bench --bin ipc_pingpong -- --help
//! ```
//!
//! The parent (pinned to the first core of `Placement::for_threads(2)`: the
//! first two allowed cores, so `taskset -c A,B` chooses them) creates the
//! ping ring and starts this program again as the child (pinned to the
//! second core), which joins the ping ring and creates the pong ring. The
//! parent publishes a 64-byte ping, the child echoes it on the pong ring,
//! the parent records half the round trip (one way). Each of `--rounds`
//! rounds runs a block of the floor ring (the harness's
//! `scenarios::ping_pong` of `System::Floor`, between two threads pinned to
//! the same two cores, while the child sleeps), then a warm-up of at least
//! four laps of the ring, then `--samples` measured round trips: the floor
//! and the rings measured a minute apart would compare two placements of
//! the vCPUs, not two systems. The table gives the median over rounds of
//! each percentile and the paired ratios to the floor ring.
//!
//! Both hot threads read `getrusage(RUSAGE_THREAD)` (faults, context
//! switches) and `/proc/self/io` (`syscr`, `syscw`: process-wide, less the
//! snapshot's own read) just before and just after the measured phase; the
//! deltas show what the event path costs the kernel: nothing, once warm.
//! Threads busy-spin by default (`--waiting yield` to yield); with fewer
//! than two allowed cores nothing is pinned and they yield. The shared
//! rings' heartbeat threads (one per handle, every 200 ms) may land on the
//! hot cores: an involuntary switch or two in a long run is theirs.
//! The exit status is 1 if an echo came back wrong or the child failed.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use tickring::shm::{ShmConsumer, ShmConsumerOptions, ShmError, ShmEvent, ShmOptions};
use tickring::shm::{ShmPollState, ShmProducer};
use tickring::EventProducer;
use tickring_bench::alloc::{allocations, Counting};
use tickring_bench::hist::{self, Rounds};
use tickring_bench::peers::{full_ring_wait, System};
use tickring_bench::place::{Placement, Waiting};
use tickring_bench::scenarios::{self, Plan, PING_PONG_RING};
use tickring_bench::{args, stats, units, Histogram};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A ping, and its echo: one 64-byte line.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Message {
    sequence: u64,
    /// [`MARK_BEFORE`] on the last warm-up ping of a block, [`MARK_AFTER`]
    /// on its last measured one (when the child reads its counters),
    /// [`MARK_PAUSE`] before a floor block.
    mark: u64,
    payload: [u64; 6],
}

impl ShmEvent for Message {
    const SCHEMA_NAME: &'static str = "tickring-bench.ipc-pingpong";
    const SCHEMA_VERSION: u32 = 1;
}

const MARK_BEFORE: u64 = 1;
const MARK_AFTER: u64 = 2;
/// The child echoes it, then waits sleeping (not spinning) until the next
/// ping: the floor block between two measured blocks has both cores.
const MARK_PAUSE: u64 = 3;
/// Both rings' size: ping-pong's everywhere in the harness.
const RING: usize = PING_PONG_RING;
/// How long the parent waits for the child to start, and to finish.
const DEADLINE: Duration = Duration::from_secs(10);

const USAGE: &str = "\
ipc_pingpong: one-way latency between two processes over two shared-memory rings,
beside the floor ring between two threads on the same cores; kernel counters per hot thread

USAGE: cargo run --release -p tickring-bench --bin ipc_pingpong -- [OPTIONS]

OPTIONS:
    --quick            a smoke run of seconds (CI): 2 rounds of 20000 round trips
    --rounds N         rounds, each a floor-ring block then a measured block [5]
    --samples N        round trips per block [200000]
    --waiting W        spin | yield: how both hot threads wait [spin with 2 cores]
    --out DIR          also write .hgrm files and an SVG percentile plot there
    -h, --help         this text
";

/// The counters read around the measured phase, in this order.
const COUNTERS: [&str; 6] = [
    "minor faults",
    "major faults",
    "voluntary cs",
    "involuntary cs",
    "syscr",
    "syscw",
];
/// `None`: not readable here.
type Counters = [Option<i64>; 6];

/// The calling thread's faults and context switches (`getrusage`), and the
/// process's read and write system calls (`/proc/self/io`, if readable).
fn counters() -> Counters {
    // SAFETY: `rusage` is plain integers (and `timeval`s of integers), for
    // which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `getrusage` writes into `usage`, a valid `rusage` of ours;
    // `RUSAGE_THREAD` (Linux) asks for the calling thread only.
    let status = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    #[allow(clippy::unnecessary_cast)] // `c_long` is `i32` on 32-bit targets
    let ok = |value: libc::c_long| (status == 0).then_some(value as i64);
    let mut buffer = [0u8; 1024]; // one `read`: the snapshot's own cost is fixed
    let io = std::fs::File::open("/proc/self/io").and_then(|mut file| file.read(&mut buffer));
    let text = io
        .ok()
        .and_then(|len| std::str::from_utf8(&buffer[..len]).ok());
    let field = |name: &str| {
        let line = text?.lines().find_map(|line| line.strip_prefix(name))?;
        line.trim().parse().ok()
    };
    [
        ok(usage.ru_minflt),
        ok(usage.ru_majflt),
        ok(usage.ru_nvcsw),
        ok(usage.ru_nivcsw),
        field("syscr:"),
        field("syscw:"),
    ]
}

/// `a + b`, counter by counter.
fn sum(a: Counters, b: Counters) -> Counters {
    std::array::from_fn(|i| Some(a[i]? + b[i]?))
}

/// `after - before - overhead`, counter by counter.
fn delta(before: Counters, after: Counters, overhead: Counters) -> Counters {
    std::array::from_fn(|i| Some(after[i]? - before[i]? - overhead[i].unwrap_or(0)))
}

/// What reading the counters itself adds to them: the `/proc` read counts
/// in `syscr` (the others are left alone: a switch here is not overhead).
fn overhead() -> Counters {
    counters(); // the first call may fault its code in
    let first = counters();
    let mut overhead = delta(first, counters(), [None; 6]);
    overhead[..4].fill(None);
    overhead
}

/// Pins the calling thread (the hot one) once the handles are made: their
/// heartbeat threads, started meanwhile, stay unpinned, and get a moment
/// to start (a thread's start allocates) before two threads spin.
fn pin(core: Option<usize>) {
    std::thread::sleep(Duration::from_millis(20));
    if let Some(core) = core {
        if let Err(error) = tickring::pin_current_thread(core) {
            eprintln!("ipc_pingpong: warning: not pinned to core {core}: {error}");
        }
    }
}

fn shm_error(what: &str) -> impl Fn(ShmError) -> String + '_ {
    move |error| format!("{what}: {error}")
}

/// The child: echoes every ping until the parent closes the ping ring,
/// then prints its counters' deltas on stdout (one line).
fn child(ping_path: &Path, pong_path: &Path, core: Option<usize>, waiting: Waiting) -> ExitCode {
    let run = || -> Result<Counters, String> {
        let options = ShmConsumerOptions::new().capacity(RING);
        let mut pings =
            ShmConsumer::<Message>::open(ping_path, &options).map_err(shm_error("open ping"))?;
        // Created once this process has joined the ping ring: the parent
        // opens it, then sends the first ping.
        let pong_options = ShmOptions::new(RING).full_ring_wait(full_ring_wait(waiting));
        let mut pong = ShmProducer::<Message>::create(pong_path, &pong_options)
            .map_err(shm_error("create pong"))?;
        pin(core);
        let overhead = overhead();
        let (mut before, mut total): (Counters, Counters) = ([None; 6], [Some(0); 6]);
        let paused = std::cell::Cell::new(false);
        let mut echo = |ping: &Message, _: i64, _: bool| {
            if ping.mark == MARK_BEFORE {
                before = counters();
            }
            pong.publish(|echo| *echo = *ping)
                .expect("the pong ring is open");
            if ping.mark == MARK_AFTER {
                total = sum(total, delta(before, counters(), overhead));
            }
            paused.set(ping.mark == MARK_PAUSE);
        };
        loop {
            match pings.poll(&mut echo) {
                Ok(ShmPollState::Handled(_)) => {}
                Ok(ShmPollState::Idle) if paused.get() => {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Ok(ShmPollState::Idle) => match waiting {
                    Waiting::Spin => std::hint::spin_loop(),
                    _ => std::thread::yield_now(),
                },
                Ok(_) => break,
                Err(error) => return Err(format!("echo: {error}")),
            }
        }
        pong.close();
        Ok(total)
    };
    match run() {
        Ok(deltas) => {
            let cells: Vec<String> = deltas
                .iter()
                .map(|d| d.map_or("-".into(), |d| d.to_string()))
                .collect();
            println!("counters {}", cells.join(" "));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ipc_pingpong child: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The child process and the ring files; killed (by its pid) and removed
/// when dropped, whatever happened.
struct Peer {
    child: Child,
    paths: [PathBuf; 2],
}

impl Peer {
    /// Waits for the child until the deadline, kills it if it overran;
    /// returns its counters line, if it printed one and succeeded.
    fn finish(mut self, deadline: Instant) -> Result<Counters, String> {
        while self.child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                return Err(format!(
                    "the child (pid {}) overran; killed",
                    self.child.id()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut printed = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut printed);
        }
        let line = printed
            .lines()
            .find_map(|line| line.strip_prefix("counters "));
        let cells: Vec<Option<i64>> = line
            .ok_or("the child failed")?
            .split(' ')
            .map(|cell| cell.parse().ok())
            .collect();
        cells
            .try_into()
            .map_err(|_| "the child's counters line is malformed".into())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill(); // SIGKILL to its pid
            let _ = self.child.wait();
        }
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What the cross-process run counted, besides its histograms.
struct Measured {
    parent: Counters,
    child: Counters,
    allocations: u64,
    wrong: u64,
}

/// Waits for the echo of the ping in flight.
#[inline]
fn receive(pongs: &mut ShmConsumer<Message>, waiting: Waiting) -> Result<Message, String> {
    let mut echo = None;
    let mut handler = |message: &Message, _: i64, _: bool| echo = Some(*message);
    waiting.until(|| match pongs.poll(&mut handler) {
        Ok(ShmPollState::Idle) => None,
        Ok(ShmPollState::Handled(_)) => Some(Ok(())),
        Ok(_) => Some(Err("the pong ring closed".to_owned())),
        Err(error) => Some(Err(format!("pong: {error}"))),
    })?;
    echo.ok_or_else(|| "no echo".to_owned())
}

/// Starts the child, runs each round's floor block, warm-up and measured
/// block (one histogram each), stops it.
type CrossProcess = (Vec<Histogram<u64>>, Vec<Histogram<u64>>, Measured);

fn cross_process(
    placement: &Placement,
    rounds: usize,
    samples: u64,
) -> Result<CrossProcess, String> {
    let waiting = placement.waiting();
    let shm = Some(PathBuf::from("/dev/shm")).filter(|dir| dir.is_dir());
    let dir = shm.unwrap_or_else(std::env::temp_dir);
    let name = |ring: &str| {
        dir.join(format!(
            "tickring-ipc-pingpong-{}-{ring}",
            std::process::id()
        ))
    };
    let paths = [name("ping"), name("pong")];
    let options = ShmOptions::new(RING).full_ring_wait(full_ring_wait(waiting));
    let mut ping =
        ShmProducer::<Message>::create(&paths[0], &options).map_err(shm_error("create ping"))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .arg("--child")
        .arg("--ping")
        .arg(&paths[0])
        .arg("--pong")
        .arg(&paths[1]);
    let wait = if waiting == Waiting::Spin {
        "spin"
    } else {
        "yield"
    };
    command.args(["--waiting", wait]);
    if let Some(core) = placement.core(1) {
        command.args(["--core", &core.to_string()]);
    }
    let child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the child: {e}"))?;
    let mut peer = Peer { child, paths };
    let core = |thread| {
        placement
            .core(thread)
            .map_or("-".into(), |core| core.to_string())
    };
    let (parent, child) = (std::process::id(), peer.child.id());
    println!(
        "parent pid {parent} on core {}, child pid {child} on core {}",
        core(0),
        core(1)
    );
    let ring = units::grouped(RING as u64);
    let (ping_path, pong_path) = (peer.paths[0].display(), peer.paths[1].display());
    println!("rings of {ring} 64-byte messages: {ping_path} (ping), {pong_path} (pong)");
    // The pong ring exists once the child joined the ping ring.
    let started_by = Instant::now() + DEADLINE;
    let mut pongs = loop {
        match ShmConsumer::<Message>::open(
            &peer.paths[1],
            &ShmConsumerOptions::new().capacity(RING),
        ) {
            Ok(pongs) => break pongs,
            Err(ShmError::Io { .. }) if Instant::now() < started_by => {
                if !matches!(peer.child.try_wait(), Ok(None)) {
                    return Err("the child exited before it created the pong ring".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => return Err(format!("open pong: {error}")),
        }
    };
    pin(placement.core(0));
    let overhead = overhead();
    let mut histograms: Vec<Histogram<u64>> = (0..rounds).map(|_| hist::new_histogram()).collect();
    let mut floors = Vec::with_capacity(rounds);
    let warmup = (samples / 10).max(4 * RING as u64);
    let (mut sequence, mut wrong) = (0u64, 0u64);
    let mut round_trip = |mark: u64| -> Result<u64, String> {
        let start = Instant::now();
        ping.publish(|message| (message.sequence, message.mark) = (sequence, mark))
            .map_err(|error| format!("ping: {error}"))?;
        let echo = receive(&mut pongs, waiting)?;
        let one_way = start.elapsed().as_nanos() as u64 / 2;
        wrong += u64::from(echo.sequence != sequence || echo.mark != mark);
        sequence += 1;
        Ok(one_way.max(1))
    };
    let (mut parent, mut allocations_measured) = ([Some(0); 6], 0);
    // Each round: the floor block while the child sleeps, then a warm-up,
    // then the measured block: paired in time, so a placement change
    // between rounds moves both.
    for (round, histogram) in histograms.iter_mut().enumerate() {
        round_trip(MARK_PAUSE)?;
        eprintln!(
            "[ipc_pingpong] round {}/{rounds}: floor ring, then the two processes",
            round + 1
        );
        floors.push(floor_block(placement, samples)?);
        for k in 0..warmup {
            round_trip(if k + 1 == warmup { MARK_BEFORE } else { 0 })?;
        }
        let before = counters();
        let allocations_before = allocations();
        for k in 0..samples {
            let last = k + 1 == samples;
            histogram.saturating_record(round_trip(if last { MARK_AFTER } else { 0 })?);
        }
        allocations_measured += allocations() - allocations_before;
        parent = sum(parent, delta(before, counters(), overhead));
    }
    let allocations = allocations_measured;
    ping.close(); // the child's run returns, it reports and exits
    let child = peer.finish(Instant::now() + DEADLINE)?;
    let measured = Measured {
        parent,
        child,
        allocations,
        wrong,
    };
    Ok((histograms, floors, measured))
}

fn write_files(out: &Path, series: &[(&str, &str, &[Histogram<u64>])]) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|error| format!("{}: {error}", out.display()))?;
    let mut merged = Vec::new();
    for (_, slug, rounds) in series {
        let mut all = hist::new_histogram();
        rounds
            .iter()
            .for_each(|round| all.add(round).expect("same bounds"));
        let path = out.join(format!("ipc-pingpong-{slug}.hgrm"));
        std::fs::write(&path, hist::hgrm(&all))
            .map_err(|error| format!("{}: {error}", path.display()))?;
        merged.push(all);
    }
    let plot: Vec<(&str, &Histogram<u64>)> =
        series.iter().map(|(name, ..)| *name).zip(&merged).collect();
    let svg = out.join("ipc-pingpong.svg");
    hist::write_plot(&svg, "ping-pong one-way latency by percentile", &plot)?;
    println!(
        "\nwrote {} and {} .hgrm files to {}",
        svg.display(),
        merged.len(),
        out.display()
    );
    Ok(())
}

/// One block of the floor ring's ping-pong (the harness's own) on the
/// same cores.
fn floor_block(placement: &Placement, samples: u64) -> Result<Histogram<u64>, String> {
    let plan = Plan {
        measured: samples,
        interval: None,
        waiting: placement.waiting(),
    };
    let block = scenarios::ping_pong(System::Floor, plan, placement)?;
    match block.wrong {
        0 => Ok(block.histogram),
        wrong => Err(format!("the floor ring delivered {wrong} wrong messages")),
    }
}

/// Prints the percentile table, the ratio to the floor and the counters.
fn report(rows: &[Rounds<'_>], measured: &Measured, samples: u64) {
    let rounds = rows[0].rounds.len();
    let title = format!(
        "ping-pong, one way (RTT/2), {} round trips per round: median over {rounds} rounds; base: the floor ring",
        units::grouped(samples)
    );
    hist::print_table(&title, rows, 1, None);
    let p50 = |row: usize| units::ns(stats::median(&rows[row].at(0.5)));
    let ratio = stats::paired_ratio(&rows[0].at(0.5), &rows[1].at(0.5));
    println!(
        "\np50 / floor: {} (shm {} one way, floor {})",
        units::ratio(ratio),
        p50(0),
        p50(1)
    );

    let trips = units::grouped(samples * rounds as u64);
    println!("\nkernel counters of each hot thread over the {trips} measured round trips (after warm-up):");
    let header: String = COUNTERS.iter().map(|name| format!("{name:>16}")).collect();
    println!("{:<24}{header}", "");
    for (who, deltas) in [
        ("parent (pings)", measured.parent),
        ("child (echoes)", measured.child),
    ] {
        let cell = |d: &Option<i64>| format!("{:>16}", d.map_or("-".into(), |d| d.to_string()));
        println!("{who:<24}{}", deltas.iter().map(cell).collect::<String>());
    }
    println!("(syscr, syscw: the whole process, heartbeat threads included, less the snapshot's own read)");
    let allocations = units::grouped(measured.allocations);
    println!(
        "allocations in the parent's measured phase: {allocations}; wrong echoes: {}",
        measured.wrong
    );
}

fn main() -> ExitCode {
    let (mut common, mut samples, mut waiting, mut out) =
        (args::Common::default(), None, None, None::<PathBuf>);
    let (mut is_child, mut ping, mut pong, mut core) =
        (false, None::<PathBuf>, None::<PathBuf>, None);
    args::parse(USAGE, |option, parser| {
        match option {
            "samples" => samples = Some(args::value(parser)?),
            "waiting" => waiting = Some(args::value::<Waiting>(parser)?),
            "out" => out = Some(args::value(parser)?),
            // How the parent starts the child.
            "child" => is_child = true,
            "ping" => ping = Some(args::value(parser)?),
            "pong" => pong = Some(args::value(parser)?),
            "core" => core = Some(args::value(parser)?),
            _ => return common.take(option, parser),
        }
        Ok(true)
    });
    // `block` (tickring's `Blocking`) cannot wait across processes: yield.
    let waiting = waiting.map(|w| {
        if w == Waiting::Spin {
            w
        } else {
            Waiting::Yield
        }
    });
    if is_child {
        let (Some(ping), Some(pong)) = (ping, pong) else {
            eprintln!("ipc_pingpong: --child needs --ping and --pong");
            return ExitCode::from(2);
        };
        return child(&ping, &pong, core, waiting.unwrap_or(Waiting::Spin));
    }
    let rounds = common.rounds(2, 5);
    let samples: u64 = common.size(samples, 20_000, 200_000).max(1);
    let mut placement = Placement::for_threads(2);
    if let Some(waiting) = waiting {
        placement = placement.with_waiting(waiting);
    }
    println!("ipc_pingpong: {}", placement.describe());
    if placement.waiting() != Waiting::Spin {
        println!("WARNING: the hot threads yield: the figures measure the scheduler as much as the rings");
    }
    let (shm, floor, measured) = match cross_process(&placement, rounds, samples) {
        Ok(measured) => measured,
        Err(error) => {
            eprintln!("ipc_pingpong: {error}");
            return ExitCode::FAILURE;
        }
    };
    let names = ["shm rings, 2 processes", "floor ring, 2 threads"];
    let histograms = [shm, floor];
    report(&Rounds::rows(&names, &histograms), &measured, samples);
    if let Some(out) = out {
        let series = names.iter().zip(["shm", "floor"]).zip(&histograms);
        let series: Vec<(&str, &str, &[Histogram<u64>])> = series
            .map(|((name, slug), rounds)| (*name, slug, &rounds[..]))
            .collect();
        if let Err(error) = write_files(&out, &series) {
            eprintln!("ipc_pingpong: {error}");
            return ExitCode::FAILURE;
        }
    }
    if measured.wrong > 0 {
        eprintln!("ipc_pingpong: {} echoes came back wrong", measured.wrong);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
