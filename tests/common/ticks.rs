//! The market-data event most suites publish, and the handler that checks
//! it: every field of a [`Tick`] derives from the sequence it was published
//! at, and a [`Recorder`] checks each event's order, content and gating and
//! reports what it saw from `on_shutdown`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tickring::{EventHandler, EventProducer, Producer, WaitStrategy};

use super::{scaled, XorShift};

/// A market-data event. Every field is a function of the sequence it was
/// published at, so a handler can tell a torn, stale or overwritten slot.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    pub sequence: i64,
    pub price: u64,
    pub quantity: u64,
    pub checksum: u64,
}

#[allow(dead_code)]
impl Tick {
    pub fn price_at(sequence: i64) -> u64 {
        (sequence as u64).wrapping_mul(7).wrapping_add(10_000)
    }

    pub fn quantity_at(sequence: i64) -> u64 {
        (sequence as u64 % 997) + 1
    }

    fn checksum_of(sequence: i64, price: u64, quantity: u64) -> u64 {
        (sequence as u64).rotate_left(17) ^ price.rotate_left(5) ^ quantity
    }

    /// Writes the event published at `sequence`.
    pub fn fill(&mut self, sequence: i64) {
        self.sequence = sequence;
        self.price = Self::price_at(sequence);
        self.quantity = Self::quantity_at(sequence);
        self.checksum = Self::checksum_of(sequence, self.price, self.quantity);
    }

    /// Whether this is exactly the event published at `sequence`.
    pub fn is_event(&self, sequence: i64) -> bool {
        self.sequence == sequence
            && self.price == Self::price_at(sequence)
            && self.quantity == Self::quantity_at(sequence)
            && self.checksum == Self::checksum_of(sequence, self.price, self.quantity)
    }
}

/// The sum of `price_at` over sequences `0..count`.
#[allow(dead_code)]
pub fn price_sum(count: i64) -> u64 {
    (0..count).map(Tick::price_at).sum()
}

/// Publishes events `0..count` (each filled by [`Tick::fill`]), mixing
/// single publishes with batches of 1 to `min(capacity, 32)` events.
#[allow(dead_code)]
pub fn publish_ticks<W: WaitStrategy>(producer: &mut Producer<Tick, W>, count: i64) {
    let largest_batch = producer.capacity().min(32) as u64;
    let mut generator = XorShift::new(0x9E37_79B9_7F4A_7C15);
    let mut published = 0;
    while published < count {
        let random = generator.next_u64();
        if random % 3 == 0 {
            let sequence = producer
                .publish(|tick| tick.fill(published))
                .expect("publish");
            assert_eq!(sequence, published, "publish returns the event's sequence");
            published += 1;
        } else {
            let batch = ((random >> 8) % largest_batch + 1).min((count - published) as u64);
            let first = published;
            let last = producer
                .batch_publish(batch as usize, |tick, sequence| tick.fill(sequence))
                .expect("batch_publish");
            assert_eq!(
                last,
                first + batch as i64 - 1,
                "batch_publish returns the last sequence"
            );
            published += batch as i64;
        }
    }
    assert_eq!(producer.last_published(), count - 1);
}

/// What a [`Recorder`] saw, sent from its `on_shutdown`.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Seen {
    pub label: &'static str,
    pub thread: Option<String>,
    pub events: u64,
    pub price_sum: u64,
    pub last_sequence: i64,
    pub batches: u64,
    /// How many checks failed, and the first failure.
    pub errors: u64,
    pub first_error: Option<String>,
}

/// A handler that checks every event: the next sequence in order, the exact
/// content, that every stage it depends on has passed the event, and that
/// `end_of_batch` closes each batch announced by `on_batch_start`. It
/// publishes its progress for stages behind it, and sends what it saw when
/// it shuts down.
#[allow(dead_code)]
pub struct Recorder {
    seen: Seen,
    next_expected: i64,
    left_in_batch: i64,
    progress: Arc<AtomicI64>,
    upstream: Vec<Arc<AtomicI64>>,
    report_to: mpsc::Sender<Seen>,
}

#[allow(dead_code)]
impl Recorder {
    /// A recorder labelled `label` that gates-checks against `upstream`.
    pub fn new(
        label: &'static str,
        upstream: Vec<Arc<AtomicI64>>,
        report_to: mpsc::Sender<Seen>,
    ) -> Self {
        Self {
            seen: Seen {
                label,
                thread: None,
                events: 0,
                price_sum: 0,
                last_sequence: -1,
                batches: 0,
                errors: 0,
                first_error: None,
            },
            next_expected: 0,
            left_in_batch: 0,
            progress: Arc::new(AtomicI64::new(-1)),
            upstream,
            report_to,
        }
    }

    /// The last sequence this recorder finished, for stages behind it.
    pub fn progress(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.progress)
    }

    fn fail(&mut self, error: String) {
        self.seen.fail(error);
    }
}

#[allow(dead_code)]
impl Seen {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

impl EventHandler<Tick> for Recorder {
    fn on_event(&mut self, tick: &Tick, sequence: i64, end_of_batch: bool) {
        let label = self.seen.label;
        if sequence != self.next_expected {
            self.fail(format!(
                "{label}: got sequence {sequence}, expected {}",
                self.next_expected
            ));
        }
        if !tick.is_event(sequence) {
            self.fail(format!("{label}: event {sequence} holds {tick:?}"));
        }
        for (index, upstream) in self.upstream.iter().enumerate() {
            let passed = upstream.load(Ordering::Acquire);
            if passed < sequence {
                self.seen.fail(format!(
                    "{label}: saw {sequence} before upstream #{index} finished it (at {passed})"
                ));
            }
        }
        self.left_in_batch -= 1;
        if end_of_batch != (self.left_in_batch == 0) {
            self.fail(format!(
                "{label}: end_of_batch = {end_of_batch} at {sequence} with {} left in the batch",
                self.left_in_batch
            ));
        }
        self.next_expected = sequence + 1;
        self.seen.events += 1;
        self.seen.price_sum = self.seen.price_sum.wrapping_add(tick.price);
        self.seen.last_sequence = sequence;
        self.progress.store(sequence, Ordering::Release);
    }

    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        if self.left_in_batch != 0 {
            self.fail(format!(
                "{}: a batch started with {} events of the last one unhandled",
                self.seen.label, self.left_in_batch
            ));
        }
        if batch_size < 1 || queue_depth < batch_size {
            self.fail(format!(
                "{}: batch of {batch_size} with queue depth {queue_depth}",
                self.seen.label
            ));
        }
        self.left_in_batch = batch_size;
        self.seen.batches += 1;
    }

    fn on_shutdown(&mut self) {
        self.seen.thread = thread::current().name().map(str::to_owned);
        let _ = self.report_to.send(self.seen.clone());
    }
}

/// Receives one [`Seen`] per recorder (sent at shutdown), sorted by label.
#[allow(dead_code)]
pub fn collect_seen(reports: &mpsc::Receiver<Seen>, recorders: usize) -> Vec<Seen> {
    let mut seen: Vec<Seen> = (0..recorders)
        .map(|_| {
            reports
                .recv_timeout(scaled(Duration::from_secs(10)))
                .expect("every recorder reports from on_shutdown")
        })
        .collect();
    assert!(
        reports.try_recv().is_err(),
        "a recorder ran on_shutdown more than once"
    );
    seen.sort_by_key(|seen| seen.label);
    seen
}

/// Asserts that a recorder saw events `0..count`, each once, in order, intact.
#[allow(dead_code)]
pub fn assert_saw_all(seen: &Seen, count: i64) {
    assert_eq!(seen.errors, 0, "{}: {:?}", seen.label, seen.first_error);
    assert_eq!(seen.events, count as u64, "{}: events seen", seen.label);
    assert_eq!(
        seen.last_sequence,
        count - 1,
        "{}: last sequence",
        seen.label
    );
    assert_eq!(
        seen.price_sum,
        price_sum(count),
        "{}: sum of prices",
        seen.label
    );
    assert!(
        count == 0 || seen.batches >= 1,
        "{}: no on_batch_start",
        seen.label
    );
}
