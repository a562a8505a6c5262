//! A mutable stage: `enrich` writes fields into each order that the `risk`
//! stage behind it reads.
//!
//! A handler added with `handle_events_mut` gets `&mut E`. It must be alone
//! in its stage (`build()` refuses a sibling), and every later stage sees
//! what it wrote. This one implements `MutEventHandler` to own its lookup
//! table and to use the lifecycle hooks.
//!
//! Run with `cargo run --release --example mutable_stage`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tickring::{build_single_producer, EventProducer, MutEventHandler, Yielding};

#[derive(Debug, Default)]
struct Order {
    // Set by the producer.
    account: usize,
    price: u64, // in ticks
    quantity: u64,
    // Set by `enrich`. Slots are reused, so a stage overwrites every field
    // it owns on every event: what it leaves alone is a lap-old value.
    notional: u64,
    limit: u64,
}

/// Per-account notional limits, as a static-data service would supply them.
fn limit_of(account: usize) -> u64 {
    250_000 + 100_000 * account as u64
}

const ACCOUNTS: usize = 8;
const ORDERS: u64 = 100_000;

struct Enrich {
    limits: Vec<u64>,
}

impl MutEventHandler<Order> for Enrich {
    fn on_start(&mut self) {
        // Runs on the handler's thread before the first event: load here
        // what is expensive to build or should live on this core.
        self.limits = (0..ACCOUNTS).map(limit_of).collect();
    }

    fn on_event(&mut self, order: &mut Order, _sequence: i64, _end_of_batch: bool) {
        order.notional = order.price * order.quantity;
        order.limit = self.limits[order.account];
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rejected = Arc::new(AtomicU64::new(0));
    let rejects = Arc::clone(&rejected);

    let mut producer = build_single_producer(1024, Order::default, Yielding::new())
        .thread_name("enrich")
        .handle_events_mut_handler(Enrich { limits: Vec::new() })
        .and_then() // `risk` runs only after `enrich` has finished the order
        .thread_name("risk")
        .handle_events_with(move |order: &Order, _, _| {
            // The enriched fields are there: this would fail on stale data.
            assert_eq!(order.notional, order.price * order.quantity);
            assert_eq!(order.limit, limit_of(order.account));
            if order.notional > order.limit {
                rejects.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()?;

    let mut expected_rejects = 0;
    for n in 0..ORDERS {
        let (account, price, quantity) = (n as usize % ACCOUNTS, 5_000 + n % 100, 1 + n % 150);
        if price * quantity > limit_of(account) {
            expected_rejects += 1;
        }
        producer.publish(|order| {
            order.account = account;
            order.price = price;
            order.quantity = quantity;
        })?;
    }

    let report = producer.shutdown();
    for handler in &report.handlers {
        assert_eq!(
            handler.events_handled, ORDERS,
            "{} saw every order",
            handler.name
        );
    }
    let rejected = rejected.load(Ordering::Relaxed);
    assert_eq!(rejected, expected_rejects);
    assert!(rejected > 0 && rejected < ORDERS, "the limits matter");
    println!("{ORDERS} orders enriched, {rejected} over their account limit: ok");
    Ok(())
}
