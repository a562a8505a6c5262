//! Consume on your own thread: an `EventPoller` instead of a handler thread.
//!
//! A poller is a participant like a handler (the producer never laps it),
//! but tickring starts no thread for it: you call `poll` from your own loop,
//! here the main thread's, between whatever else that loop does. When there
//! is nothing to do the loop backs off with `crossbeam_utils::Backoff`.
//!
//! Run with `cargo run --release --example poller`.

use std::thread;
use std::time::Duration;

use crossbeam_utils::Backoff;
use tickring::{build_single_producer, EventProducer, PollState, PublishError, Yielding};

#[derive(Debug, Default)]
struct Tick {
    instrument: u32,
    price: u64, // in ticks
}

const TICKS: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `event_poller` hands back the typed poller and the builder; options
    // before it configure it (a name for lags, a batch bound).
    let (mut poller, builder) = build_single_producer(1024, Tick::default, Yielding::new())
        .thread_name("strategy")
        .max_batch_size(256)
        .event_poller();
    let mut producer = builder.build()?;

    // The feed publishes from a thread of its own, then shuts down.
    let feed = thread::spawn(move || {
        for n in 0..TICKS {
            producer.publish(|tick| {
                tick.instrument = (n % 4) as u32;
                tick.price = 10_000 + n % 100;
            })?;
        }
        Ok::<_, PublishError>(producer.shutdown())
    });

    let (mut next, mut notional, mut idle_polls) = (0i64, 0u64, 0u64);
    let backoff = Backoff::new();
    loop {
        // Hands over what is published (at most 256 events) without waiting.
        let state = poller.poll(|tick: &Tick, sequence, _end_of_batch| {
            assert_eq!(sequence, next, "in sequence order, none skipped");
            assert!(tick.instrument < 4);
            next += 1;
            notional += tick.price;
            true // keep going; `false` stops early, the rest comes next poll
        });
        match state {
            PollState::Processing => backoff.reset(),
            // The feed shut down and everything before it was handed over.
            PollState::ShutDown => break,
            PollState::Halted => panic!("the pipeline halted"),
            // Idle or Gating (and any later state: `PollState` is
            // non-exhaustive): nothing to hand over yet. Timers, order
            // acknowledgements or other rings would be serviced here.
            _ => {
                idle_polls += 1;
                if backoff.is_completed() {
                    thread::sleep(Duration::from_micros(50)); // quiet: sleep
                } else {
                    backoff.snooze(); // spin, then yield
                }
            }
        }
    }

    // The report covers handler threads only; a poller has none, so count
    // what you polled yourself (as here) to check it.
    let report = feed.join().expect("feed thread")?;
    assert!(report.first_panic().is_none());
    let expected: u64 = (0..TICKS).map(|n| 10_000 + n % 100).sum();
    assert_eq!(next as u64, TICKS);
    assert_eq!(notional, expected);
    println!("polled {TICKS} ticks ({idle_polls} idle polls), notional {notional}: ok");
    Ok(())
}
