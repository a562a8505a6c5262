//! The bridge's overhead: one-way latency of ring → Aeron IPC → ring
//! against raw Aeron IPC (offer → poll), in alternating rounds of one run,
//! paced so nothing queues. 64-byte events.
//!
//! ```text
//! raw:     main: offer ═ aeron:ipc ═▶ receiver thread: poll, record
//! bridged: main: publish ─▶ ring ─▶ AeronSink ═ aeron:ipc ═▶ AeronSource ─▶ ring ─▶ handler: record
//! ```
//!
//! ```text
//! cargo run --release --manifest-path aeron/Cargo.toml --example aeron_latency [-- --quick]
//! ```
//!
//! Threads: raw 2, bridged 4 (main, the sink's handler, the source, the
//! receiving handler). With fewer cores than that, waiting threads must
//! yield (`--spin` otherwise), and the bridged path pays a scheduler
//! hand-off per thread it crosses: read the ratio with the core count.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusteron_client::{cformat, Aeron, AeronPublication, AeronSubscription, Handlers};
use rusteron_media_driver::testing::EmbeddedDriver;
use tickring::{build_single_producer, BusySpin, EventProducer, WaitStrategy, Yielding};
use tickring_aeron::{AeronSink, AeronSource, BackPressure, PodCodec, SourceOptions};
use tickring_bench::{args, hist, stats, units, Histogram};

const USAGE: &str =
    "usage: aeron_latency [--quick] [--rounds N] [--samples N] [--rate PER_SECOND] [--spin]\n";

#[derive(Debug, Default, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Event {
    sent_ns: i64,
    payload: [u64; 7],
}

fn paced(samples: u64, rate: u64, mut send: impl FnMut(i64)) {
    let start = Instant::now();
    for k in 0..samples {
        let due = start + Duration::from_secs_f64(k as f64 / rate as f64);
        while Instant::now() < due {
            std::thread::yield_now();
        }
        send(Aeron::nano_clock());
    }
}

fn add(aeron: &Aeron, stream: i32) -> (AeronPublication, AeronSubscription) {
    let subscription = aeron
        .async_add_subscription(
            &cformat!("aeron:ipc"),
            stream,
            Handlers::NONE,
            Handlers::NONE,
        )
        .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
        .expect("subscription");
    let publication = aeron
        .async_add_publication(&cformat!("aeron:ipc"), stream)
        .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
        .expect("publication");
    while !publication.is_connected() {
        std::thread::yield_now();
    }
    (publication, subscription)
}

/// Raw Aeron IPC: the main thread offers, a thread polls and records.
fn raw(aeron: &Aeron, stream: i32, samples: u64, rate: u64, spin: bool) -> Histogram<u64> {
    let (publication, subscription) = add(aeron, stream);
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let receiver = std::thread::spawn(move || {
        let mut histogram = hist::new_histogram();
        while !stop.load(Ordering::Acquire) {
            let polled = subscription.poll_fn(
                |bytes, _| {
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&bytes[..8]);
                    let latency = Aeron::nano_clock() - i64::from_le_bytes(sent);
                    histogram.saturating_record(latency.max(1) as u64);
                },
                16,
            );
            if polled.unwrap_or(0) == 0 && !spin {
                std::thread::yield_now();
            }
        }
        histogram
    });
    let mut message = [0u8; 64];
    paced(samples, rate, |now| {
        message[..8].copy_from_slice(&now.to_le_bytes());
        while publication.offer(&message).is_err() {
            std::hint::spin_loop();
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    done.store(true, Ordering::Release);
    receiver.join().expect("receiver")
}

/// ring → AeronSink → IPC → AeronSource → ring → handler records.
fn bridged<W: WaitStrategy + Clone>(
    aeron: &Aeron,
    stream: i32,
    samples: u64,
    rate: u64,
    wait: W,
    spin: bool,
) -> Histogram<u64> {
    let (publication, subscription) = add(aeron, stream);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut histogram = hist::new_histogram();
    let mut seen = 0;
    let receiving = build_single_producer(1024, Event::default, wait.clone())
        .handle_events_with(move |event: &Event, _, _| {
            let latency = Aeron::nano_clock() - event.sent_ns;
            histogram.saturating_record(latency.max(1) as u64);
            seen += 1;
            if seen == samples {
                let _ = tx.send(histogram.clone());
            }
        })
        .build()
        .expect("receiving ring");
    let options = SourceOptions {
        yield_when_idle: !spin,
        ..SourceOptions::default()
    };
    let source = AeronSource::spawn(subscription, receiving, PodCodec, options).expect("source");
    let sink = AeronSink::new(
        publication,
        PodCodec,
        BackPressure::Wait(Duration::from_secs(5)),
        64,
    );
    let mut sending = build_single_producer(1024, Event::default, wait)
        .handle_events_with_handler(sink)
        .build()
        .expect("sending ring");
    paced(samples, rate, |now| {
        sending
            .publish(|event| event.sent_ns = now)
            .expect("publish");
    });
    let histogram = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("every event arrived");
    let _ = sending.shutdown();
    let _ = source.stop();
    histogram
}

fn main() {
    let mut common = args::Common::default();
    let (mut samples, mut rate, mut spin) = (None, 20_000u64, false);
    args::parse(USAGE, |option, parser| {
        match option {
            "samples" => samples = Some(args::value(parser)?),
            "rate" => rate = args::value(parser)?,
            "spin" => spin = true,
            _ => return common.take(option, parser),
        }
        Ok(true)
    });
    let samples = common.size(samples, 5_000, 50_000);
    let rounds = common.rounds(2, 5);
    let driver = EmbeddedDriver::launch().expect("media driver");
    let (aeron, _errors) =
        tickring_aeron::connect(driver.dir(), Duration::from_secs(10)).expect("client");
    println!(
        "one way, 64-byte events, {} per round paced at {}/s, {} cores, waiting threads {}",
        units::grouped(samples),
        units::grouped(rate),
        tickring::allowed_cores().len(),
        if spin { "spin" } else { "yield" }
    );
    let (mut raws, mut bridgeds) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let stream = 8000 + 2 * round as i32;
        // Alternate which goes first, so drift favours neither.
        let run_raw = |aeron: &Aeron| raw(aeron, stream, samples, rate, spin);
        let run_bridged = |aeron: &Aeron| {
            if spin {
                bridged(aeron, stream + 1, samples, rate, BusySpin, spin)
            } else {
                bridged(aeron, stream + 1, samples, rate, Yielding::new(), spin)
            }
        };
        if round % 2 == 0 {
            raws.push(run_raw(&aeron));
            bridgeds.push(run_bridged(&aeron));
        } else {
            bridgeds.push(run_bridged(&aeron));
            raws.push(run_raw(&aeron));
        }
    }
    let names = ["ring → Aeron IPC → ring", "raw Aeron IPC"];
    let histograms = [bridgeds, raws];
    let rows = hist::Rounds::rows(&names, &histograms);
    hist::print_table(
        "one way: median over rounds; base: raw Aeron IPC",
        &rows,
        1,
        None,
    );
    let ratio = stats::paired_ratio(&rows[0].at(0.5), &rows[1].at(0.5));
    println!(
        "\nbridge / raw, p50: {} (target ≤ 1.20x)",
        units::ratio(ratio)
    );
}
