//! 1P-1C throughput across processes (the shared-memory ring) against the
//! in-process ring, in paired rounds of one run: the producer pinned to one
//! core, the consumer (a handler thread, or a child process) pinned to the
//! other, both busy-spinning. Also reports, from the consumer's hot thread,
//! the page faults and context switches between its first and its last
//! event (`getrusage(RUSAGE_THREAD)`): zero means none per event.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickring::shm::{
    monotonic_ns, ShmConsumer, ShmConsumerOptions, ShmEvent, ShmOptions, ShmProducer,
};
use tickring::{build_single_producer, BusySpin, EventProducer, FullRingWait};
use tickring_bench::{args, stats, units};

const USAGE: &str = "\
ipc_throughput: 1P-1C across processes against in-process, paired rounds

usage: ipc_throughput [--quick] [--rounds N] [--events N] [--ring N]
                      [--size 8|64] [--cores P,C]

  --quick      3 rounds of 2 M events (default: 7 rounds of 20 M)
  --size       event bytes: 8 (a u64) or 64 (eight u64s); default 8
  --cores      producer and consumer cores (default 0,1)
";

#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Small(u64);

#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Large([u64; 8]);

impl ShmEvent for Small {
    const SCHEMA_NAME: &'static str = "tickring-bench.u64";
    const SCHEMA_VERSION: u32 = 1;
}

impl ShmEvent for Large {
    const SCHEMA_NAME: &'static str = "tickring-bench.u64x8";
    const SCHEMA_VERSION: u32 = 1;
}

/// An event the rounds can make from a counter and sum back.
trait Payload: ShmEvent + Default + Sync {
    fn of(value: u64) -> Self;
    fn value(&self) -> u64;
}

impl Payload for Small {
    fn of(value: u64) -> Self {
        Self(value)
    }
    fn value(&self) -> u64 {
        self.0
    }
}

impl Payload for Large {
    fn of(value: u64) -> Self {
        Self([value; 8])
    }
    fn value(&self) -> u64 {
        self.0[7]
    }
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    events: u64,
    ring: usize,
    producer_core: usize,
    consumer_core: usize,
}

/// Minor + major faults, and voluntary + involuntary context switches,
/// of the calling thread.
fn thread_usage() -> (i64, i64) {
    // SAFETY: `rusage` is plain data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: fills `usage` for the calling thread.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (
        usage.ru_minflt + usage.ru_majflt,
        usage.ru_nvcsw + usage.ru_nivcsw,
    )
}

/// The in-process ring: returns events per second.
fn in_process<E: Payload>(setup: Setup) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&done);
    let last = setup.events - 1;
    let mut sum = 0u64;
    let mut producer = build_single_producer(setup.ring, E::default, BusySpin)
        .producer_wait(FullRingWait::Spin)
        .pin_at_core(setup.consumer_core)
        .handle_events_with(move |event: &E, sequence, _| {
            sum = sum.wrapping_add(event.value());
            if sequence as u64 == last {
                seen.store(sum, Ordering::Release);
            }
        })
        .build()
        .expect("pipeline");
    let start = Instant::now();
    for value in 0..setup.events {
        producer
            .publish(|event| *event = E::of(value))
            .expect("publish");
    }
    let expected = (0..setup.events).fold(0u64, |sum, value| sum.wrapping_add(value));
    while done.load(Ordering::Acquire) != expected {
        std::hint::spin_loop();
    }
    let rate = setup.events as f64 / start.elapsed().as_secs_f64();
    let _ = producer.shutdown();
    rate
}

/// Across processes: returns events per second and the consumer's
/// (faults, context switches) over its hot loop.
fn cross_process<E: Payload>(setup: Setup, size: usize) -> (f64, (i64, i64)) {
    let path = ring_path();
    let mut producer = ShmProducer::<E>::create(
        &path,
        &ShmOptions::new(setup.ring)
            .replace(true)
            .full_ring_wait(FullRingWait::Spin),
    )
    .expect("create the ring");
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    // The child must not inherit this pinned thread's one-core mask (it
    // pins itself, and tickring reads the mask a process starts with).
    let mut every_core: libc::cpu_set_t = zeroed_cpu_set();
    for core in tickring::available_cores() {
        // SAFETY: `core` is below the machine's core count, inside the set.
        unsafe { libc::CPU_SET(core, &mut every_core) };
    }
    // SAFETY: `sched_setaffinity` is async-signal-safe and touches only
    // the child being started; `every_core` is copied into the closure.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &every_core);
            Ok(())
        });
    }
    let mut child = command
        .args(["--consume", path.to_str().expect("utf-8 path")])
        .args(["--events", &setup.events.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--cores", &format!("0,{}", setup.consumer_core)])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the consumer process");
    let deadline = Instant::now() + Duration::from_secs(20);
    while producer.active_consumers() == 0 {
        assert!(Instant::now() < deadline, "the consumer did not join");
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = monotonic_ns();
    for value in 0..setup.events {
        producer
            .publish(|event| *event = E::of(value))
            .expect("publish");
    }
    producer.close();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the consumer's report");
    let status = child.wait().expect("the consumer exits");
    assert!(status.success(), "consumer failed: {status}");
    let fields: Vec<i64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().expect("a number"))
        .collect();
    let [end, faults, switches] = fields[..] else {
        panic!("unexpected report {line:?}");
    };
    let rate = setup.events as f64 / ((end as u64 - start) as f64 / 1e9);
    (rate, (faults, switches))
}

/// The child: consume `events`, check their sum, report the end time and
/// the hot thread's faults and context switches.
fn consume<E: Payload>(path: &str, setup: Setup) {
    tickring::pin_current_thread(setup.consumer_core).expect("pin the consumer");
    let mut consumer =
        ShmConsumer::<E>::open(path, &ShmConsumerOptions::new()).expect("open the ring");
    let mut sum = 0u64;
    let mut end = 0u64;
    let mut usage_at_first = (0, 0);
    let last = setup.events - 1;
    let mut handler = |event: &E, sequence: i64, _end: bool| {
        if sequence == 0 {
            usage_at_first = thread_usage();
        }
        sum = sum.wrapping_add(event.value());
        if sequence as u64 == last {
            end = monotonic_ns();
        }
    };
    let handled = consumer.run(&mut handler, &BusySpin).expect("consume");
    let usage_at_last = thread_usage();
    let expected = (0..setup.events).fold(0u64, |sum, value| sum.wrapping_add(value));
    assert_eq!((handled, sum), (setup.events, expected), "every event");
    println!(
        "END {end} {} {}",
        usage_at_last.0 - usage_at_first.0,
        usage_at_last.1 - usage_at_first.1
    );
}

fn zeroed_cpu_set() -> libc::cpu_set_t {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
    unsafe { std::mem::zeroed() }
}

fn ring_path() -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("tickring-ipc-throughput-{}", std::process::id()))
}

fn rounds<E: Payload>(setup: Setup, size: usize, rounds: usize) {
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for round in 0..rounds {
        // Alternate which goes first, so drift favours neither.
        let (a, (b, usage)) = if round % 2 == 0 {
            let a = in_process::<E>(setup);
            (a, cross_process::<E>(setup, size))
        } else {
            let b = cross_process::<E>(setup, size);
            (in_process::<E>(setup), b)
        };
        println!(
            "round {round}: in-process {}, across processes {} ({}); consumer thread: {} faults, {} context switches over {} events",
            units::rate(a),
            units::rate(b),
            units::ratio(b / a),
            usage.0,
            usage.1,
            units::grouped(setup.events)
        );
        local.push(a);
        remote.push(b);
    }
    println!(
        "median: in-process {}, across processes {}; paired ratio across/in {}",
        units::rate(stats::median(&local)),
        units::rate(stats::median(&remote)),
        units::ratio(stats::paired_ratio(&remote, &local))
    );
}

fn main() {
    let mut common = args::Common::default();
    let mut events = None;
    let mut ring = 65_536;
    let mut size = 8usize;
    let mut cores = (0, 1);
    let mut consume_path: Option<String> = None;
    args::parse(USAGE, |option, parser| {
        match option {
            "events" => events = Some(args::value(parser)?),
            "ring" => ring = args::value(parser)?,
            "size" => size = args::value(parser)?,
            "cores" => {
                let text: String = args::value(parser)?;
                let (p, c) = text.split_once(',').ok_or("expected P,C")?;
                cores = (
                    p.parse().map_err(|_| "bad core")?,
                    c.parse().map_err(|_| "bad core")?,
                );
            }
            "consume" => consume_path = Some(args::value(parser)?),
            _ => return common.take(option, parser),
        }
        Ok(true)
    });
    let setup = Setup {
        events: common.size(events, 2_000_000, 20_000_000),
        ring,
        producer_core: cores.0,
        consumer_core: cores.1,
    };
    if let Some(path) = consume_path {
        match size {
            64 => consume::<Large>(&path, setup),
            _ => consume::<Small>(&path, setup),
        }
        return;
    }
    tickring::pin_current_thread(setup.producer_core).expect("pin the producer");
    println!(
        "1P-1C, {} events of {size} bytes, ring {ring}, producer on core {}, consumer on core {}, busy-spin",
        units::grouped(setup.events),
        setup.producer_core,
        setup.consumer_core
    );
    let count = common.rounds(3, 7);
    match size {
        64 => rounds::<Large>(setup, size, count),
        8 => rounds::<Small>(setup, size, count),
        _ => {
            eprintln!("--size must be 8 or 64");
            std::process::exit(2);
        }
    }
}
