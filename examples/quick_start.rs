//! The smallest useful pipeline: one producer, one handler.
//!
//! The producer publishes trades into a pre-allocated ring; a handler on its
//! own thread sums their notional. `shutdown()` drains every published trade
//! through the handler, joins its thread and reports what it did.
//!
//! Run with `cargo run --release --example quick_start`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tickring::{build_single_producer, EventProducer, Yielding};

/// The event type. Every slot of the ring holds one, made once up front by
/// the factory passed to the builder; publishing overwrites it in place.
#[derive(Debug, Default)]
struct Trade {
    /// Price in ticks (integer prices: no floating-point drift in the sums).
    price: u64,
    quantity: u64,
}

const TRADES: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The handler runs on its own thread and owns its state. To read a
    // result after shutdown, share it; here the handler keeps a local
    // running total and stores it at the end of every batch.
    let notional = Arc::new(AtomicU64::new(0));
    let total = Arc::clone(&notional);
    let mut running = 0u64;

    let mut producer = build_single_producer(1024, Trade::default, Yielding::new())
        // Options come before the handler they configure.
        .thread_name("notional")
        .handle_events_with(move |trade: &Trade, _sequence: i64, end_of_batch: bool| {
            running += trade.price * trade.quantity;
            if end_of_batch {
                total.store(running, Ordering::Relaxed);
            }
        })
        .build()?;

    // Publish: claim the next slot, fill it in place, make it visible.
    let mut expected = 0u64;
    for n in 0..TRADES {
        let (price, quantity) = (10_000 + n % 50, 1 + n % 7);
        expected += price * quantity;
        producer.publish(|trade| {
            trade.price = price;
            trade.quantity = quantity;
        })?;
    }

    // Drain, stop and join. The report lists every handler in the order it
    // was added; `handler(name)` finds one by its thread name.
    let report = producer.shutdown();
    println!("{report:#?}");

    let handler = report.handler("notional").expect("the handler is reported");
    assert_eq!(handler.events_handled, TRADES, "every trade handled once");
    assert!(report.first_panic().is_none(), "no handler panicked");
    // Joining the handler's thread ordered its last store before this load.
    assert_eq!(notional.load(Ordering::Relaxed), expected);
    println!("{TRADES} trades, notional {expected}: ok");
    Ok(())
}
