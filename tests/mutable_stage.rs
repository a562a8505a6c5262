//! Contract 2 for mutable stages: what a mutable stage writes is seen by every
//! handler behind it, however far, across wrap-around; nobody behind it sees
//! an event before it wrote it, and nobody before it sees its writes.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::with_timeout;
use tickring::{build_single_producer, EventHandler, EventProducer, MutEventHandler, Yielding};

const EVENTS: i64 = if cfg!(debug_assertions) {
    50_000
} else {
    300_000
};

const LIMIT: Duration = Duration::from_secs(120);

/// An order as the feed publishes it (`raw_price`), then decoded and enriched
/// in place by two mutable stages. `-1` in a `*_at` field: not written yet.
#[derive(Debug, Clone, Copy)]
struct Order {
    sequence: i64,
    raw_price: u64,
    decoded_price: u64,
    decoded_at: i64,
    notional: u64,
    enriched_at: i64,
}

impl Order {
    fn empty() -> Self {
        Self {
            sequence: -1,
            raw_price: 0,
            decoded_price: 0,
            decoded_at: -1,
            notional: 0,
            enriched_at: -1,
        }
    }

    fn raw_price_at(sequence: i64) -> u64 {
        sequence as u64 * 13 + 5
    }

    fn decoded_price_at(sequence: i64) -> u64 {
        Self::raw_price_at(sequence) * 100
    }

    fn notional_at(sequence: i64) -> u64 {
        Self::decoded_price_at(sequence) + sequence as u64 % 7
    }

    /// What the producer writes: the raw fields, and "not decoded, not enriched".
    fn publish(&mut self, sequence: i64) {
        *self = Self::empty();
        self.sequence = sequence;
        self.raw_price = Self::raw_price_at(sequence);
    }

    fn check_raw(&self, sequence: i64) -> Result<(), String> {
        if self.sequence != sequence || self.raw_price != Self::raw_price_at(sequence) {
            return Err(format!(
                "event {sequence} does not hold what was published: {self:?}"
            ));
        }
        Ok(())
    }

    fn check_decoded(&self, sequence: i64) -> Result<(), String> {
        self.check_raw(sequence)?;
        if self.decoded_at != sequence || self.decoded_price != Self::decoded_price_at(sequence) {
            return Err(format!(
                "event {sequence} seen before decode wrote it: {self:?}"
            ));
        }
        Ok(())
    }

    fn check_enriched(&self, sequence: i64) -> Result<(), String> {
        self.check_decoded(sequence)?;
        if self.enriched_at != sequence || self.notional != Self::notional_at(sequence) {
            return Err(format!(
                "event {sequence} seen before enrich wrote it: {self:?}"
            ));
        }
        Ok(())
    }
}

/// What one stage saw, sent from its `on_shutdown`.
#[derive(Debug)]
struct Tally {
    label: &'static str,
    events: i64,
    errors: u64,
    first_error: Option<String>,
}

/// Shared by both kinds of checking stage: order, counting, reporting.
struct Stage<F> {
    tally: Tally,
    check: F,
    /// Upstream stages' progress that must cover every event seen here.
    upstream: Vec<Arc<AtomicI64>>,
    /// This stage's progress, for the stages behind it.
    progress: Arc<AtomicI64>,
    report_to: mpsc::Sender<Tally>,
}

impl<F> Stage<F> {
    fn new(label: &'static str, check: F, report_to: &mpsc::Sender<Tally>) -> Self {
        Self {
            tally: Tally {
                label,
                events: 0,
                errors: 0,
                first_error: None,
            },
            check,
            upstream: Vec::new(),
            progress: Arc::new(AtomicI64::new(-1)),
            report_to: report_to.clone(),
        }
    }

    fn after(mut self, upstream: &[&Arc<AtomicI64>]) -> Self {
        self.upstream = upstream
            .iter()
            .map(|&progress| Arc::clone(progress))
            .collect();
        self
    }

    fn progress(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.progress)
    }

    fn record(&mut self, sequence: i64, outcome: Result<(), String>) {
        let mut outcome = outcome;
        if sequence != self.tally.events {
            outcome = Err(format!(
                "sequence {sequence}, expected {}",
                self.tally.events
            ));
        }
        for upstream in &self.upstream {
            let passed = upstream.load(Ordering::Acquire);
            if passed < sequence {
                outcome = Err(format!(
                    "saw {sequence} while an upstream stage was at {passed}"
                ));
            }
        }
        if let Err(error) = outcome {
            self.tally.errors += 1;
            let label = self.tally.label;
            self.tally
                .first_error
                .get_or_insert(format!("{label}: {error}"));
        }
        self.tally.events += 1;
        self.progress.store(sequence, Ordering::Release);
    }

    fn report(&mut self) {
        let tally = std::mem::replace(
            &mut self.tally,
            Tally {
                label: "reported twice",
                events: 0,
                errors: 1,
                first_error: Some("on_shutdown ran twice".into()),
            },
        );
        let _ = self.report_to.send(tally);
    }
}

impl<F: FnMut(&Order, i64) -> Result<(), String>> EventHandler<Order> for Stage<F> {
    fn on_event(&mut self, order: &Order, sequence: i64, _end_of_batch: bool) {
        let outcome = (self.check)(order, sequence);
        self.record(sequence, outcome);
    }

    fn on_shutdown(&mut self) {
        self.report();
    }
}

/// A mutable stage: `check` may write the order, and says what it found.
struct Writer<F>(Stage<F>);

impl<F: FnMut(&mut Order, i64) -> Result<(), String>> MutEventHandler<Order> for Writer<F> {
    fn on_event(&mut self, order: &mut Order, sequence: i64, _end_of_batch: bool) {
        let outcome = (self.0.check)(order, sequence);
        self.0.record(sequence, outcome);
    }

    fn on_shutdown(&mut self) {
        self.0.report();
    }
}

fn assert_tallies(reports: &mpsc::Receiver<Tally>, stages: usize) {
    for _ in 0..stages {
        let tally = reports
            .recv_timeout(common::scaled(Duration::from_secs(10)))
            .expect("every stage reports from on_shutdown");
        assert_eq!(tally.errors, 0, "{:?}", tally.first_error);
        assert_eq!(tally.events, EVENTS, "{} saw every event", tally.label);
    }
    assert!(reports.try_recv().is_err(), "one report per stage");
}

/// audit → decode (mut) → book ∥ risk → enrich (mut) → strategy.
fn writes_reach_every_stage_behind(ring_size: usize) {
    with_timeout(LIMIT, &format!("mutable-{ring_size}"), move || {
        let (report_to, reports) = mpsc::channel();
        // Upstream of decode: must never see decode's (or enrich's) writes for
        // this lap, or decode wrote a slot audit was still reading.
        let audit = Stage::new(
            "audit",
            |order: &Order, sequence| {
                order.check_raw(sequence)?;
                if order.decoded_at != -1 || order.enriched_at != -1 {
                    return Err(format!("a later stage wrote {sequence} first: {order:?}"));
                }
                Ok(())
            },
            &report_to,
        );
        let decode = Writer(
            Stage::new(
                "decode",
                |order: &mut Order, sequence| {
                    order.check_raw(sequence)?;
                    if order.decoded_at != -1 {
                        return Err(format!("{sequence} already decoded: {order:?}"));
                    }
                    order.decoded_price = Order::decoded_price_at(sequence);
                    order.decoded_at = sequence;
                    Ok(())
                },
                &report_to,
            )
            .after(&[&audit.progress()]),
        );
        let reader_after_decode = |order: &Order, sequence| {
            order.check_decoded(sequence)?;
            if order.enriched_at != -1 {
                return Err(format!(
                    "enrich wrote {sequence} before this stage: {order:?}"
                ));
            }
            Ok(())
        };
        let book = Stage::new("book", reader_after_decode, &report_to)
            .after(&[&audit.progress(), &decode.0.progress()]);
        let risk = Stage::new("risk", reader_after_decode, &report_to)
            .after(&[&audit.progress(), &decode.0.progress()]);
        let enrich = Writer(
            Stage::new(
                "enrich",
                |order: &mut Order, sequence| {
                    order.check_decoded(sequence)?;
                    order.notional = order.decoded_price + sequence as u64 % 7;
                    order.enriched_at = sequence;
                    Ok(())
                },
                &report_to,
            )
            .after(&[&decode.0.progress(), &book.progress(), &risk.progress()]),
        );
        let strategy = Stage::new(
            "strategy",
            |order: &Order, sequence| order.check_enriched(sequence),
            &report_to,
        )
        .after(&[&decode.0.progress(), &enrich.0.progress()]);
        drop(report_to);

        let mut producer = build_single_producer(ring_size, Order::empty, Yielding::new())
            .handle_events_with_handler(audit)
            .and_then()
            .handle_events_mut_handler(decode)
            .and_then()
            .handle_events_with_handler(book)
            .handle_events_with_handler(risk)
            .and_then()
            .handle_events_mut_handler(enrich)
            .and_then()
            .handle_events_with_handler(strategy)
            .build()
            .expect("build");
        for sequence in 0..EVENTS {
            if sequence % 2 == 0 {
                producer
                    .publish(|order| order.publish(sequence))
                    .expect("publish");
            } else {
                producer
                    .batch_publish(1, |order, claimed| order.publish(claimed))
                    .expect("batch_publish");
            }
        }
        let report = producer.shutdown();
        assert_eq!(report.handlers.len(), 6);
        for handler in &report.handlers {
            assert_eq!(handler.events_handled, EVENTS as u64, "{handler:?}");
        }
        assert_tallies(&reports, 6);
    });
}

#[test]
fn writes_reach_every_stage_behind_ring_of_4() {
    writes_reach_every_stage_behind(4);
}

#[test]
fn writes_reach_every_stage_behind_ring_of_64() {
    writes_reach_every_stage_behind(64);
}

#[test]
fn writes_reach_every_stage_behind_ring_of_1024() {
    writes_reach_every_stage_behind(1024);
}

/// A closure mutable stage right behind the producer, and one made on its
/// own thread by a factory, feeding a reader two stages behind the first.
#[test]
fn first_stage_closure_and_factory_made_mutable_stages() {
    with_timeout(LIMIT, "mutable-first", || {
        let (report_to, reports) = mpsc::channel();
        let strategy = Stage::new(
            "strategy",
            |order: &Order, sequence| order.check_enriched(sequence),
            &report_to,
        );
        drop(report_to);
        let mut producer = build_single_producer(8, Order::empty, Yielding::new())
            .handle_events_mut(|order: &mut Order, sequence, _| {
                // A panic here would halt the pipeline and fail the counts below.
                assert!(order.check_raw(sequence).is_ok() && order.decoded_at == -1);
                order.decoded_price = Order::decoded_price_at(sequence);
                order.decoded_at = sequence;
            })
            .and_then()
            .handle_events_mut_with_factory(|| {
                |order: &mut Order, sequence: i64, _: bool| {
                    assert!(order.check_decoded(sequence).is_ok());
                    order.notional = Order::notional_at(sequence);
                    order.enriched_at = sequence;
                }
            })
            .and_then()
            .handle_events_with_handler(strategy)
            .build()
            .expect("build");
        for sequence in (0..EVENTS).step_by(4) {
            producer
                .batch_publish(4, |order, claimed| order.publish(claimed))
                .expect("batch_publish");
            assert_eq!(producer.last_published(), sequence + 3);
        }
        let report = producer.shutdown();
        assert_eq!(report.first_panic(), None);
        for handler in &report.handlers {
            assert_eq!(handler.events_handled, EVENTS as u64, "{handler:?}");
        }
        assert_tallies(&reports, 1);
    });
}
