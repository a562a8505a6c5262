//! A diamond: decode → (book ∥ risk) → strategy.
//!
//! `decode` is alone in the first stage, so it may write the event; `book`
//! and `risk` then read it in parallel; `strategy` sees an event only after
//! both of them have finished with it. Each handler has a thread name, and
//! is pinned to a core of its own when the machine has enough of them.
//!
//! Run with `cargo run --release --example pipeline`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use tickring::{build_single_producer, Blocking, EventProducer};

#[derive(Debug, Default)]
struct Quote {
    raw_price: u64, // as the wire has it, in cents
    price: f64,     // written by `decode`
}

const QUOTES: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Four handler threads plus the producer: pin only with a core for each,
    // leaving the first for the producer. On a small box nothing is pinned.
    let allowed = tickring::allowed_cores();
    let cores: Vec<Option<usize>> = match allowed.get(1..5) {
        Some(four) => four.iter().copied().map(Some).collect(),
        None => vec![None; 4],
    };
    println!("allowed cores {allowed:?}, handler cores {cores:?}");

    // What `book` and `risk` last finished, for `strategy` to check.
    let (book_done, risk_done) = (Arc::new(AtomicI64::new(-1)), Arc::new(AtomicI64::new(-1)));
    let (book_seen, risk_seen) = (Arc::clone(&book_done), Arc::clone(&risk_done));
    let signals = Arc::new(AtomicU64::new(0));
    let signalled = Arc::clone(&signals);

    // Blocking: idle handlers sleep instead of spinning, so four handler
    // threads may share two cores.
    let mut producer = build_single_producer(1024, Quote::default, Blocking::new())
        .thread_name("decode")
        .pin_at_core(cores[0]) // `None`: not pinned
        .handle_events_mut(|quote: &mut Quote, _, _| quote.price = quote.raw_price as f64 / 100.0)
        .and_then()
        .thread_name("book")
        .pin_at_core(cores[1])
        .handle_events_with(move |quote: &Quote, seq, _| {
            assert!(quote.price > 0.0, "book sees the decoded price");
            book_done.store(seq, Ordering::Relaxed);
        })
        .thread_name("risk")
        .pin_at_core(cores[2])
        .handle_events_with(move |quote: &Quote, seq, _| {
            assert!(quote.price < 1_000.0, "risk sees the decoded price");
            risk_done.store(seq, Ordering::Relaxed);
        })
        .and_then()
        .thread_name("strategy")
        .pin_at_core(cores[3])
        .handle_events_with(move |quote: &Quote, seq, _| {
            // Gating: both upstream handlers have finished with this event
            // (their stores happen before tickring hands it to this stage).
            assert!(book_seen.load(Ordering::Relaxed) >= seq);
            assert!(risk_seen.load(Ordering::Relaxed) >= seq);
            if quote.price >= 100.0 {
                signalled.fetch_add(1, Ordering::Relaxed); // a buy signal
            }
        })
        .build()?;

    // Threads inherit their creator's affinity: pin the producer after build.
    if cores[0].is_some() {
        tickring::pin_current_thread(allowed[0])?;
    }
    for n in 0..QUOTES {
        producer.publish(|quote| quote.raw_price = 9_000 + n % 2_000)?;
    }
    let report = producer.shutdown();
    for handler in &report.handlers {
        println!("{:>8}: {} events", handler.name, handler.events_handled);
    }

    for handler in ["decode", "book", "risk", "strategy"] {
        let handled = report.handler(handler).map(|h| h.events_handled);
        assert_eq!(handled, Some(QUOTES), "{handler} saw every quote");
    }
    // Raw prices 9000..11000 cents: half of every 2,000 are at 100.00 or more.
    assert_eq!(signals.load(Ordering::Relaxed), QUOTES / 2);
    println!(
        "{QUOTES} quotes through the diamond, {} signals: ok",
        QUOTES / 2
    );
    Ok(())
}
