//! A worker pool: each order goes to exactly one of several gateway workers
//! (whichever is free), unlike a stage of handlers, where every handler sees
//! every event. A `journal` stage behind the pool still sees every order,
//! and only once the worker that took it has finished.
//!
//! Run with `cargo run --release --example worker_pool`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tickring::{build_single_producer, Blocking, EventProducer};

#[derive(Debug, Default)]
struct Order {
    id: u64,
    quantity: u64,
}

const WORKERS: u8 = 3;
const ORDERS: usize = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Which worker (1-based; 0 = none yet) handled each order, by sequence.
    let taken_by: Arc<Vec<AtomicU8>> = Arc::new((0..ORDERS).map(|_| AtomicU8::new(0)).collect());

    let workers: Vec<_> = (1..=WORKERS)
        .map(|worker| {
            let taken_by = Arc::clone(&taken_by);
            move |order: &Order, sequence: i64, _end_of_batch: bool| {
                assert!(order.quantity > 0);
                // Sending the order to the exchange would go here.
                let before = taken_by[sequence as usize].swap(worker, Ordering::Relaxed);
                assert_eq!(
                    before, 0,
                    "order {} taken by workers {before} and {worker}",
                    order.id
                );
            }
        })
        .collect();
    let journal_view = Arc::clone(&taken_by);

    // Blocking: idle workers sleep, so a pool may outnumber the cores.
    let mut producer = build_single_producer(1024, Order::default, Blocking::new())
        // Options before a pool configure every worker: gateway-0, -1, -2.
        .thread_name("gateway")
        .handle_events_with_workers(workers)
        .and_then() // gated on the whole pool
        .thread_name("journal")
        .handle_events_with(move |order: &Order, sequence, _| {
            assert_eq!(order.id, sequence as u64);
            let worker = journal_view[sequence as usize].load(Ordering::Relaxed);
            assert_ne!(
                worker, 0,
                "journal saw order {} before a worker did",
                order.id
            );
        })
        .build()?;

    for id in 0..ORDERS as u64 {
        producer.publish(|order| {
            order.id = id;
            order.quantity = 1 + id % 10;
        })?;
    }
    let report = producer.shutdown();
    assert!(report.first_panic().is_none(), "{:?}", report.first_panic());

    // Each order was taken by exactly one worker...
    let mut per_worker = [0u64; WORKERS as usize];
    for worker in taken_by.iter().map(|w| w.load(Ordering::Relaxed)) {
        assert!((1..=WORKERS).contains(&worker), "every order was taken");
        per_worker[worker as usize - 1] += 1;
    }
    // ...and each worker's report agrees with what it recorded.
    for (index, &taken) in per_worker.iter().enumerate() {
        let name = format!("gateway-{index}");
        let reported = report.handler(&name).expect("every worker reports");
        assert_eq!(reported.events_handled, taken, "{name}");
        println!("{name}: {taken} orders");
    }
    assert_eq!(per_worker.iter().sum::<u64>(), ORDERS as u64);
    assert_eq!(
        report.handler("journal").map(|j| j.events_handled),
        Some(ORDERS as u64)
    );
    println!("{ORDERS} orders, each sent by exactly one gateway, all journaled: ok");
    Ok(())
}
