//! ring → Aeron → ring on loopback, through an embedded C media driver:
//! content and order of every event, fan-out, a late joiner's gap,
//! back-pressure under each policy. Every wait is bounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusteron_client::{cformat, Aeron, AeronPublication, AeronSubscription};
use rusteron_media_driver::testing::EmbeddedDriver;
use tickring::{build_single_producer, EventProducer, Producer, Yielding};
use tickring_aeron::{
    AeronSink, AeronSource, BackPressure, PodCodec, SinkSnapshot, SourceEnd, SourceOptions,
};

const STREAM: i32 = 4100;
const LIMIT: Duration = Duration::from_secs(120);

/// A 64-byte quote whose words all derive from its sequence.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Quote {
    sequence: u64,
    words: [u64; 7],
}

impl Quote {
    fn of(sequence: u64) -> Self {
        Self {
            sequence,
            words: std::array::from_fn(|i| sequence.wrapping_mul(31).wrapping_add(i as u64)),
        }
    }
}

/// One test at a time: each runs a media driver and spinning threads, and
/// the UDP tests use fixed loopback ports.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn client(driver: &EmbeddedDriver) -> Aeron {
    tickring_aeron::connect(driver.dir(), Duration::from_secs(10))
        .expect("client")
        .0
}

fn publication(aeron: &Aeron, channel: &str) -> AeronPublication {
    aeron
        .async_add_publication(&cformat!("{channel}"), STREAM)
        .expect("add publication")
        .poll_blocking(Duration::from_secs(10))
        .expect("publication")
}

fn subscription(aeron: &Aeron, channel: &str) -> AeronSubscription {
    aeron
        .async_add_subscription(
            &cformat!("{channel}"),
            STREAM,
            rusteron_client::Handlers::NONE,
            rusteron_client::Handlers::NONE,
        )
        .expect("add subscription")
        .poll_blocking(Duration::from_secs(10))
        .expect("subscription")
}

/// What a receiving ring saw: the count, the first sequence, and how many
/// events were out of order or spoiled.
#[derive(Default)]
struct Seen {
    count: AtomicU64,
    first: AtomicU64,
    bad: AtomicU64,
}

/// A receiving pipeline whose one handler checks every quote's content
/// and that sequences only grow (by one unless the source counted a gap).
fn receiving_ring(seen: &Arc<Seen>, handler_delay: Option<Duration>) -> Producer<Quote, Yielding> {
    let seen = Arc::clone(seen);
    let mut last: Option<u64> = None;
    build_single_producer(1024, Quote::default, Yielding::new())
        .handle_events_with(move |quote: &Quote, _sequence, _end| {
            if *quote != Quote::of(quote.sequence)
                || last.is_some_and(|last| quote.sequence <= last)
            {
                seen.bad.fetch_add(1, Ordering::Relaxed);
            }
            if last.is_none() {
                seen.first.store(quote.sequence, Ordering::Relaxed);
            }
            last = Some(quote.sequence);
            seen.count.fetch_add(1, Ordering::Relaxed);
            if let Some(delay) = handler_delay {
                std::thread::sleep(delay);
            }
        })
        .build()
        .expect("receiving pipeline")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `events` quotes through a sink on `channel` to `receivers`
/// sources, each into its own ring; returns the sink's counters and each
/// receiver's (seen, source counters).
fn round_trip(
    channel: &str,
    events: u64,
    receivers: usize,
    policy: BackPressure,
) -> (
    SinkSnapshot,
    Vec<(Arc<Seen>, tickring_aeron::SourceSnapshot)>,
) {
    let driver = EmbeddedDriver::launch().expect("media driver");
    let aeron = client(&driver);
    let mut sources = Vec::new();
    let mut seens = Vec::new();
    for receiver in 0..receivers {
        let seen = Arc::new(Seen::default());
        let source = AeronSource::spawn(
            subscription(&aeron, channel),
            receiving_ring(&seen, None),
            PodCodec,
            SourceOptions {
                name: format!("source-{receiver}"),
                ..SourceOptions::default()
            },
        )
        .expect("source");
        sources.push(source);
        seens.push(seen);
    }
    let publication = publication(&aeron, channel);
    wait_until("the subscribers to connect", || publication.is_connected());
    let sent = send(publication, policy, events);
    for seen in &seens {
        wait_until("the receivers to see what was sent", || {
            seen.count.load(Ordering::Relaxed) >= sent.sent
        });
    }
    let results = sources
        .into_iter()
        .zip(seens)
        .map(|(source, seen)| {
            let (end, counters) = source.stop();
            assert_eq!(end, SourceEnd::Stopped);
            (seen, counters)
        })
        .collect();
    (sent, results)
}

fn assert_every_event(
    events: u64,
    sent: SinkSnapshot,
    results: &[(Arc<Seen>, tickring_aeron::SourceSnapshot)],
) {
    assert_eq!((sent.sent, sent.dropped), (events, 0), "{sent:?}");
    for (seen, counters) in results {
        assert_eq!(seen.count.load(Ordering::Relaxed), events, "{counters:?}");
        assert_eq!(seen.bad.load(Ordering::Relaxed), 0);
        assert_eq!(seen.first.load(Ordering::Relaxed), 0);
        assert_eq!(
            (counters.gaps, counters.missing, counters.rejected),
            (0, 0, 0)
        );
        assert_eq!(counters.published, events);
    }
}

/// Every event sent over `channel` reaches each of `receivers` rings, in
/// order and whole.
fn every_event_arrives(channel: &str, events: u64, receivers: usize) {
    let _serial = serial();
    let policy = BackPressure::Wait(Duration::from_secs(10));
    let (sent, results) = round_trip(channel, events, receivers, policy);
    assert_every_event(events, sent, &results);
}

#[test]
fn a_million_events_over_ipc_in_order() {
    every_event_arrives("aeron:ipc", 1_000_000, 1);
}

#[test]
fn a_million_events_over_udp_loopback_in_order() {
    every_event_arrives("aeron:udp?endpoint=127.0.0.1:24325", 1_000_000, 1);
}

#[test]
fn two_subscribers_each_see_every_event() {
    every_event_arrives("aeron:udp?endpoint=127.0.0.1:24326", 200_000, 2);
}

/// Sends quotes `0..events` through a sink on `publication` with `policy`;
/// returns the sink's counters once the sending pipeline has drained.
fn send(publication: AeronPublication, policy: BackPressure, events: u64) -> SinkSnapshot {
    let sink = AeronSink::new(publication, PodCodec, policy, 64);
    let counters = sink.counters();
    let mut producer = build_single_producer(4096, Quote::default, Yielding::new())
        .handle_events_with_handler(sink)
        .build()
        .expect("sending pipeline");
    for sequence in 0..events {
        producer
            .publish(|quote| *quote = Quote::of(sequence))
            .expect("publish");
    }
    let report = producer.shutdown(); // drains: every event offered or counted
    assert_eq!(report.handlers[0].events_handled, events);
    counters.snapshot()
}

#[test]
fn a_late_subscriber_reports_the_gap() {
    let _serial = serial();
    let driver = EmbeddedDriver::launch().expect("media driver");
    let aeron = client(&driver);
    let channel = "aeron:ipc";
    let publication = publication(&aeron, channel);
    let sink = AeronSink::new(publication, PodCodec, BackPressure::Drop, 64);
    let counters = sink.counters();
    let mut producer = build_single_producer(4096, Quote::default, Yielding::new())
        .handle_events_with_handler(sink)
        .build()
        .expect("sending pipeline");
    // Nobody subscribed: dropped (not connected), counted.
    for sequence in 0..1_000 {
        producer
            .publish(|quote| *quote = Quote::of(sequence))
            .expect("publish");
    }
    wait_until("the first thousand to be handled", || {
        counters.snapshot().dropped == 1_000
    });
    assert!(counters.snapshot().not_connected >= 1_000);
    let seen = Arc::new(Seen::default());
    let source = AeronSource::spawn(
        subscription(&aeron, channel),
        receiving_ring(&seen, None),
        PodCodec,
        SourceOptions::default(),
    )
    .expect("source");
    // Connected once a message goes through: send until one does.
    let mut sequence = 1_000;
    while counters.snapshot().sent == 0 {
        producer
            .publish(|quote| *quote = Quote::of(sequence))
            .expect("publish");
        sequence += 1;
        std::thread::sleep(Duration::from_micros(200));
    }
    let last = sequence + 999;
    while sequence <= last {
        producer
            .publish(|quote| *quote = Quote::of(sequence))
            .expect("publish");
        sequence += 1;
    }
    let _ = producer.shutdown();
    let sent = counters.snapshot();
    wait_until("the late subscriber to see what was sent", || {
        seen.count.load(Ordering::Relaxed) >= sent.sent
    });
    let (_, source_counters) = source.stop();
    // It joined after `first` events: one gap, exactly that many missing,
    // and the sink's count of what it could not deliver agrees.
    let first = seen.first.load(Ordering::Relaxed);
    assert_eq!(source_counters.gaps, 1, "{source_counters:?}");
    assert_eq!(source_counters.missing, first);
    assert_eq!(sent.dropped, first);
    assert_eq!(sent.sent + sent.dropped, last + 1);
    assert_eq!(seen.bad.load(Ordering::Relaxed), 0);
}

/// A subscriber slower than the publisher, over a small term buffer: the
/// publication is back-pressured. `Wait` loses nothing; `Drop` drops, and
/// the receiver's count of what is missing equals the sink's drops (less
/// the ones after the last message it received).
#[test]
fn back_pressure_wait_loses_nothing_and_drop_counts_every_loss() {
    let _serial = serial();
    let events = 20_000;
    for policy in [
        BackPressure::Wait(Duration::from_secs(30)),
        BackPressure::Drop,
    ] {
        let driver = EmbeddedDriver::launch().expect("media driver");
        let aeron = client(&driver);
        let channel = "aeron:ipc?term-length=65536";
        let seen = Arc::new(Seen::default());
        let source = AeronSource::spawn(
            subscription(&aeron, channel),
            receiving_ring(&seen, Some(Duration::from_micros(20))),
            PodCodec,
            SourceOptions::default(),
        )
        .expect("source");
        let publication = publication(&aeron, channel);
        wait_until("the subscriber to connect", || publication.is_connected());
        let sent = send(publication, policy, events);
        assert!(
            sent.back_pressured > 0,
            "{policy:?}: never back-pressured: {sent:?}"
        );
        wait_until("the receiver to see what was sent", || {
            seen.count.load(Ordering::Relaxed) >= sent.sent
        });
        let (_, received) = source.stop();
        assert_eq!(seen.bad.load(Ordering::Relaxed), 0);
        assert_eq!(sent.sent + sent.dropped, events, "{policy:?}: {sent:?}");
        assert_eq!(received.published, sent.sent);
        match policy {
            BackPressure::Wait(_) => {
                assert_eq!(
                    (sent.dropped, received.missing),
                    (0, 0),
                    "{sent:?} {received:?}"
                );
            }
            BackPressure::Drop => {
                assert!(sent.dropped > 0, "{sent:?}");
                let last_seen = sent.sent + received.missing - 1;
                let trailing = events - 1 - last_seen;
                assert_eq!(
                    received.missing + trailing,
                    sent.dropped,
                    "{sent:?} {received:?}"
                );
            }
        }
    }
}

/// The role a re-executed test binary plays: a subscriber process that
/// polls until it is killed.
const ROLE: &str = "TICKRING_AERON_TEST_SUBSCRIBER";

fn subscriber_process(dir: &str, channel: &str) -> ! {
    let (aeron, _errors) = tickring_aeron::connect(dir, Duration::from_secs(10)).expect("client");
    let subscription = subscription(&aeron, channel);
    println!("subscribed");
    loop {
        let _ = subscription.poll_fn(|_, _| {}, 64);
        std::thread::yield_now();
    }
}

/// A subscriber process killed with SIGKILL mid-stream: the publishing
/// side keeps going (nothing hangs, every event is sent or counted), and
/// the driver drops the dead subscriber once its liveness times out.
#[test]
fn the_publication_side_survives_a_subscriber_killed_with_sigkill() {
    if let Ok(spec) = std::env::var(ROLE) {
        let (dir, channel) = spec.split_once('|').expect("dir|channel");
        subscriber_process(dir, channel);
    }
    let _serial = serial();
    let driver = EmbeddedDriver::launch_with(|context| {
        context.set_client_liveness_timeout_ns(2_000_000_000)?;
        context.set_image_liveness_timeout_ns(2_000_000_000)?;
        Ok(())
    })
    .expect("media driver");
    let channel = "aeron:ipc?term-length=65536";
    let child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args([
            "--exact",
            "the_publication_side_survives_a_subscriber_killed_with_sigkill",
            "--nocapture",
        ])
        .env(ROLE, format!("{}|{channel}", driver.dir()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the subscriber process");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child_guard = Kill(child);
    let aeron = client(&driver);
    let publication = publication(&aeron, channel);
    wait_until("the subscriber process to connect", || {
        publication.is_connected()
    });
    let watch = publication.clone();
    let sink = AeronSink::new(publication, PodCodec, BackPressure::Drop, 64);
    let counters = sink.counters();
    let mut producer = build_single_producer(4096, Quote::default, Yielding::new())
        .handle_events_with_handler(sink)
        .build()
        .expect("sending pipeline");
    let events = 50_000;
    for sequence in 0..events {
        if sequence == 5_000 {
            child_guard.0.kill().expect("SIGKILL the subscriber"); // by its pid
            child_guard.0.wait().expect("reap it");
        }
        producer
            .publish(|quote| *quote = Quote::of(sequence))
            .expect("publish");
        if sequence < 5_000 {
            // Paced while the subscriber lives, so it keeps up.
            std::thread::sleep(Duration::from_micros(20));
        }
    }
    let _ = producer.shutdown();
    let sent = counters.snapshot();
    assert_eq!(sent.sent + sent.dropped, events, "{sent:?}");
    assert!(
        sent.sent >= 1_000,
        "the live subscriber took little: {sent:?}"
    );
    assert!(sent.dropped > 0, "nothing dropped after the kill: {sent:?}");
    wait_until("the driver to drop the dead subscriber", || {
        !watch.is_connected()
    });
}

/// The media driver goes away while a sink sends and a source polls: the
/// sink counts what it could not deliver and returns, nothing hangs.
#[test]
fn a_media_driver_that_goes_away_is_counted_not_a_hang() {
    let _serial = serial();
    let mut driver = Some(EmbeddedDriver::launch().expect("media driver"));
    let dir = driver.as_ref().expect("running").dir().to_owned();
    let (aeron, errors) = tickring_aeron::connect(&dir, Duration::from_secs(1)).expect("client");
    let channel = "aeron:ipc";
    let seen = Arc::new(Seen::default());
    let source = AeronSource::spawn(
        subscription(&aeron, channel),
        receiving_ring(&seen, None),
        PodCodec,
        SourceOptions::default(),
    )
    .expect("source");
    let publication = publication(&aeron, channel);
    wait_until("the subscriber to connect", || publication.is_connected());
    let sink = AeronSink::new(
        publication,
        PodCodec,
        BackPressure::Wait(Duration::from_millis(20)),
        64,
    );
    let counters = sink.counters();
    let mut producer = build_single_producer(4096, Quote::default, Yielding::new())
        .handle_events_with_handler(sink)
        .build()
        .expect("sending pipeline");
    let events = 2_000;
    for sequence in 0..events {
        if sequence == 1_000 {
            driver.take().expect("running").stop();
        }
        producer
            .publish(|quote| *quote = Quote::of(sequence))
            .expect("publish");
        std::thread::sleep(Duration::from_micros(500));
    }
    let _ = producer.shutdown();
    let sent = counters.snapshot();
    assert_eq!(sent.sent + sent.dropped, events, "{sent:?}");
    assert!(sent.dropped > 0, "the driver went away: {sent:?}");
    let (_, received) = source.stop();
    assert!(received.published <= sent.sent);
    wait_until("the client to report the driver gone", || {
        errors.count() > 0
    });
    assert!(errors.last().is_some());
}
