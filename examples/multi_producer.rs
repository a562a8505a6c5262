//! Several feed threads publishing into one ring, each through its own
//! clone of the `MultiProducer` handle, and the two ways to stop them.
//!
//! 1. `shutdown()` lets go of one handle. Only the last handle to go drains
//!    the pipeline and gets the report (`Some`); the others get `None`.
//! 2. `close()` stops the pipeline now, however many clones are alive:
//!    what was claimed before it is drained, and every later publish, on
//!    any handle, fails with `PublishError::Closed`. A kill switch.
//!
//! Run with `cargo run --release --example multi_producer`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use tickring::{build_multi_producer, EventProducer, PublishError, Yielding};

#[derive(Debug, Default)]
struct Quote {
    venue: usize,
    /// The venue's own count: each handle's events arrive in its order.
    venue_sequence: u64,
    price: u64,
}

const VENUES: usize = 3;
const QUOTES_PER_VENUE: u64 = 50_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Every feed publishes a fixed number of quotes, then lets go.
    let mut next = [0u64; VENUES];
    let producer = build_multi_producer(1024, Quote::default, Yielding::new())
        .thread_name("consolidator")
        .handle_events_with(move |quote: &Quote, _, _| {
            // Feeds interleave, but each feed's quotes come in its order.
            assert_eq!(quote.venue_sequence, next[quote.venue]);
            next[quote.venue] += 1;
        })
        .build()?;
    let feeds: Vec<_> = (0..VENUES)
        .map(|venue| {
            let mut feed = producer.clone(); // one handle per thread
            thread::spawn(move || {
                for n in 0..QUOTES_PER_VENUE {
                    feed.publish(|quote| {
                        quote.venue = venue;
                        quote.venue_sequence = n;
                        quote.price = 10_000 + n % 64;
                    })?;
                }
                Ok::<_, PublishError>(feed.shutdown())
            })
        })
        .collect();
    for feed in feeds {
        // `main` still holds the first handle, so no feed is the last.
        assert!(feed.join().expect("feed thread")?.is_none());
    }
    let report = producer
        .shutdown()
        .expect("the last handle drains and reports");
    assert_eq!(
        report.handlers[0].events_handled,
        VENUES as u64 * QUOTES_PER_VENUE
    );
    println!("shutdown: {:?}", report.handlers[0]);

    // 2. Feeds publish until the pipeline is closed under them.
    let handled = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&handled);
    let producer = build_multi_producer(1024, Quote::default, Yielding::new())
        .thread_name("consolidator")
        .handle_events_with(move |_: &Quote, _, _| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()?;
    let feeds: Vec<_> = (0..VENUES)
        .map(|venue| {
            let mut feed = producer.clone();
            thread::spawn(move || {
                let mut published = 0u64;
                loop {
                    match feed.publish(|quote| quote.venue = venue) {
                        Ok(_) => published += 1,
                        Err(PublishError::Closed) => return published, // stop
                        Err(error) => panic!("feed {venue}: {error}"),
                    }
                }
            })
        })
        .collect();
    while handled.load(Ordering::Relaxed) < 100_000 {
        thread::yield_now(); // let the feeds run for a while
    }
    // The feeds still hold their clones; `close` does not wait for them.
    let report = producer.close();
    let published: u64 = feeds.into_iter().map(|feed| feed.join().unwrap()).sum();
    // Every publish that returned Ok before the close was drained; none after.
    assert_eq!(report.handlers[0].events_handled, published);
    assert_eq!(handled.load(Ordering::Relaxed), published);
    println!("close: {published} quotes published and handled before the kill switch: ok");
    Ok(())
}
