//! tickring: a lock-free, allocation-free, low-latency event dispatcher in
//! the style of the LMAX Disruptor, for trading engines.
//!
//! One pre-allocated ring of events. The producer claims a sequence number,
//! fills the slot in place and publishes it; consumer stages, each handler on
//! its own (optionally pinned) thread, read the events in sequence order,
//! gated by the stages they depend on. Nothing is allocated and no lock is
//! taken on the path an event travels.
//!
//! # The contract
//!
//! Every release keeps these; a test proves each line.
//!
//! 1. **Multicast**: every handler sees every published event exactly once,
//!    in sequence order.
//! 2. **Gating**: a handler sees an event only after every stage it depends
//!    on has finished with it, and it sees every write the producer (or an
//!    upstream mutable stage) made to it before publishing.
//! 3. **No overwrite**: the producer never reuses a slot that a gating handler
//!    has not finished with. A full ring means back-pressure (or
//!    [`TryPublishError::Full`] from `try_*`), never loss.
//! 4. **No allocation and no lock** on the publish and consume path once
//!    `build()` has returned. The [`Blocking`] strategy locks only to park or
//!    wake a sleeping thread; when nobody sleeps the producer pays a fence and
//!    a load, no lock, no syscall.
//! 5. **No atomic read-modify-write on the single-producer path**: plain
//!    loads, one release per publish (or per batch).
//! 6. **Shutdown drains**: every event published before shutdown is handled by
//!    every handler before its thread is joined; `on_start` and `on_shutdown`
//!    run once per handler, on the handler's thread.
//! 7. **Faults never hang**: a handler that panics is reported through a
//!    [`PanicPolicy`] (halt the pipeline, or log and skip the event), and a
//!    producer waiting on a halted pipeline gets [`PublishError::Halted`]
//!    instead of spinning forever.
//! 8. **Bad configuration is a [`BuildError`]** whose message says what to
//!    change (size zero or not a power of two, a core that does not exist, a
//!    stage with no handler, a mutable handler with a sibling). Never a panic,
//!    a hang or undefined behaviour.
//!
//! # Example: decode, then two parallel stages, then a strategy
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
//! use tickring::{build_single_producer, Yielding};
//!
//! #[derive(Default)]
//! struct Tick { raw_price: u64, price: f64 }
//!
//! let orders = Arc::new(AtomicU64::new(0));
//! let counted = Arc::clone(&orders);
//! let mut producer = build_single_producer(1024, Tick::default, Yielding::new())
//!     // Alone in its stage, so it may write the event for the stages behind it.
//!     .handle_events_mut(|tick: &mut Tick, _sequence, _end_of_batch| {
//!         tick.price = tick.raw_price as f64 / 100.0;
//!     })
//!     .and_then()
//!     .handle_events_with(|tick: &Tick, _, _| assert!(tick.price > 0.0)) // book
//!     .handle_events_with(|tick: &Tick, _, _| assert!(tick.price < 1e6)) // risk
//!     .and_then()
//!     .handle_events_with(move |tick: &Tick, _, _| {                      // strategy
//!         if tick.price > 100.0 { counted.fetch_add(1, Ordering::Relaxed); }
//!     })
//!     .build()?;
//!
//! for raw_price in 9_000..11_000 {
//!     producer.publish(|tick| tick.raw_price = raw_price)?;
//! }
//! let report = producer.shutdown(); // drains: every handler saw all 2,000
//! assert!(report.handlers.iter().all(|handler| handler.events_handled == 2_000));
//! assert_eq!(orders.load(Ordering::Relaxed), 999);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Design
//!
//! The published sequence lives in each slot, beside the event (a stamp in the
//! same cache line), so a first-stage handler's wait and its read of the event
//! are one cache-line transfer; later stages gate on the sequences of the
//! stage before. See `DESIGN.md` and the README's Performance section.

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, missing_debug_implementations)]

mod affinity;
mod barrier;
mod builder;
mod error;
mod handler;
mod loom;
#[cfg(all(test, loom))]
mod loom_models;
mod multi_producer;
mod pipeline;
mod poller;
mod processor;
mod producer;
mod report;
mod ring_buffer;
mod sequence;
mod sequencer;
mod wait;

pub use affinity::{available_cores, pin_current_thread};
pub use builder::{
    build_multi_producer, build_single_producer, producer_kind, Builder, DEFAULT_MAX_BATCH_SIZE,
};
pub use error::{BuildError, PublishError, TryPublishError};
pub use handler::{EventHandler, MutEventHandler};
pub use multi_producer::MultiProducer;
pub use poller::{EventPoller, PollState};
pub use producer::Producer;
pub use report::{HandlerPanic, HandlerReport, PanicPolicy, ShutdownReport};
pub use sequence::{Sequence, INITIAL_SEQUENCE};
pub use sequencer::FullRingWait;
pub use wait::{Blocking, BusySpin, Sleeping, WaitStrategy, Yielding};

/// The README's code blocks, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
