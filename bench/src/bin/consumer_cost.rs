//! What a consumer's loop costs per event, apart from any cache-line
//! transfer: one thread fills a small ring, then drains it through a poller,
//! and the drain is timed. tickring's `EventPoller` against the `disruptor`
//! crate's `EventPoller`, with the throughput bench's `u64`, 32-, 56- and
//! 64-byte events, every word folded into a checked sum.
//!
//! ```text
//! cargo run --release -p tickring-bench --bin consumer_cost              # full run, about 10 s
//! cargo run --release -p tickring-bench --bin consumer_cost -- --quick   # smoke run (CI)
//! ```
//!
//! Both rings hold `--ring` events (1,024: both fit in L2 with the 64-byte
//! event), so the figure is the loop's own work: the availability check,
//! the batch bookkeeping and the handler's fold. The throughput shapes
//! measure the same loops bound by line transfers between two cores, where
//! the vCPUs' placement moves every system by multiples; this tool does not
//! move with the placement, so it shows a change of the loop itself.
//! The thread is pinned to the last allowed core. Each round drains every
//! contender `--drains` times and keeps the median drain; the table gives
//! the median over rounds and the paired ratio to tickring.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use tickring::{build_single_producer, BusySpin, EventProducer, PollState};
use tickring_bench::events::{Event, Event56, Event64, Event8, ShapeEvent};
use tickring_bench::{args, stats, units};

const USAGE: &str = "\
consumer_cost: ns per event of a poller's loop, one thread, tickring against the disruptor crate

USAGE: cargo run --release -p tickring-bench --bin consumer_cost -- [OPTIONS]

OPTIONS:
    --quick             a smoke run (CI)
    --rounds N          paired rounds [2; full 7]
    --drains N          timed drains per contender and round [20; full 400]
    --ring N            events in each ring, a power of two [1024]
    -h, --help          this text
";

fn main() -> ExitCode {
    let (mut common, mut drains, mut ring) = (args::Common::default(), None, 1024usize);
    args::parse(USAGE, |option, parser| {
        match option {
            "drains" => drains = Some(args::value::<usize>(parser)?),
            "ring" => ring = args::value(parser)?,
            _ => return common.take(option, parser),
        }
        Ok(true)
    });
    if !ring.is_power_of_two() || ring < 2 {
        eprintln!("consumer_cost: --ring must be a power of two of at least 2, not {ring}");
        return ExitCode::from(2);
    }
    let rounds = common.rounds(2, 7);
    let drains = common.size(drains, 20, 400).max(1);
    let core = tickring::allowed_cores().last().copied();
    match core.map(tickring::pin_current_thread) {
        Some(Ok(())) => println!(
            "consumer_cost: one thread pinned to core {}",
            core.unwrap_or(0)
        ),
        _ => println!("consumer_cost: one thread, not pinned"),
    }
    println!(
        "ring {ring} events, {drains} drains a round, {rounds} rounds (median drain per round)"
    );
    let checks = [
        compare::<Event8>(rounds, drains, ring),
        compare::<Event>(rounds, drains, ring),
        compare::<Event56>(rounds, drains, ring),
        compare::<Event64>(rounds, drains, ring),
    ];
    if checks.iter().all(|ok| *ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One event size: both pollers in paired rounds; `false` when a drain's
/// sum was wrong (printed).
fn compare<E: ShapeEvent>(rounds: usize, drains: usize, ring: usize) -> bool {
    let mut tickring = TickringRig::<E>::new(ring);
    let mut disruptor = DisruptorRig::<E>::new(ring);
    let mut wrong = None;
    let ns = stats::rounds(
        rounds,
        2,
        |_, _| {},
        |_, system| {
            let mut times = Vec::with_capacity(drains);
            for _ in 0..drains {
                let (ns, ok) = match system {
                    0 => tickring.drain(),
                    _ => disruptor.drain(),
                };
                if !ok {
                    wrong.get_or_insert(["tickring", "disruptor"][system]);
                }
                times.push(ns);
            }
            stats::median(&times) / ring as f64
        },
    );
    let ratio = stats::paired_ratio(&ns[1], &ns[0]);
    println!(
        "{:<4} ns/event: tickring poller {:>6}  disruptor poller {:>6}  tickring speed (their ns / ours) {}",
        E::SIZE,
        format!("{:.2}", stats::median(&ns[0])),
        format!("{:.2}", stats::median(&ns[1])),
        units::ratio(ratio),
    );
    if let Some(system) = wrong {
        println!(
            "ERROR: {system}'s poller handed out a wrong sum ({} events)",
            E::SIZE
        );
    }
    wrong.is_none()
}

/// What every drain of `ring` events starting at `first` must fold to.
fn expected<E: ShapeEvent>(first: i64, ring: usize) -> i64 {
    let mut event = E::default();
    (first..first + ring as i64).fold(0i64, |sum, value| {
        event.fill(value);
        sum.wrapping_add(event.checksum())
    })
}

struct TickringRig<E: ShapeEvent> {
    producer: tickring::Producer<E, BusySpin>,
    poller: tickring::EventPoller<E, BusySpin>,
    ring: usize,
    next: i64,
}

impl<E: ShapeEvent> TickringRig<E> {
    fn new(ring: usize) -> Self {
        // The poller alone in its pipeline, taking the whole ring a poll:
        // the throughput bench's `unicast_poller_1p1c` consumer.
        let (poller, builder) = build_single_producer(ring, E::default, BusySpin)
            .max_batch_size(ring)
            .event_poller();
        let producer = builder.build().expect("a pipeline with one poller");
        Self {
            producer,
            poller,
            ring,
            next: 0,
        }
    }

    /// Fills the ring, then times draining it: (ns, sum right).
    fn drain(&mut self) -> (f64, bool) {
        self.producer
            .batch_publish(self.ring, |event, sequence| event.fill(sequence))
            .expect("room for a ring's worth");
        let (mut sum, mut count) = (0i64, 0usize);
        let start = Instant::now();
        while count < self.ring {
            let state = self.poller.poll(|event: &E, _, _| {
                sum = sum.wrapping_add(event.checksum());
                count += 1;
                true
            });
            if state != PollState::Processing {
                break;
            }
        }
        let ns = start.elapsed().as_nanos() as f64;
        let ok = black_box(sum) == expected::<E>(self.next, self.ring) && count == self.ring;
        self.next += self.ring as i64;
        (ns, ok)
    }
}

struct DisruptorRig<E: ShapeEvent> {
    producer: disruptor::SingleProducer<E, disruptor::SingleConsumerBarrier>,
    poller: disruptor::EventPoller<E, disruptor::SingleProducerBarrier>,
    ring: usize,
    next: i64,
}

impl<E: ShapeEvent> DisruptorRig<E> {
    fn new(ring: usize) -> Self {
        let (poller, builder) =
            disruptor::build_single_producer(ring, E::default, disruptor::BusySpin)
                .new_event_poller();
        Self {
            producer: builder.build(),
            poller,
            ring,
            next: 0,
        }
    }

    /// Fills the ring, then times draining it: (ns, sum right).
    fn drain(&mut self) -> (f64, bool) {
        let mut value = self.next;
        disruptor::Producer::batch_publish(&mut self.producer, self.ring, |events| {
            for event in events {
                event.fill(value);
                value += 1;
            }
        });
        let (mut sum, mut count) = (0i64, 0usize);
        let start = Instant::now();
        while count < self.ring {
            match self.poller.take(u64::MAX) {
                Ok(mut events) => {
                    for event in &mut events {
                        sum = sum.wrapping_add(event.checksum());
                        count += 1;
                    }
                }
                Err(_) => break,
            }
        }
        let ns = start.elapsed().as_nanos() as f64;
        let ok = black_box(sum) == expected::<E>(self.next, self.ring) && count == self.ring;
        self.next += self.ring as i64;
        (ns, ok)
    }
}
