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
//!    loads, one release store per event (its stamp).
//! 6. **Shutdown drains**: every event published before shutdown is handled by
//!    every handler before its thread is joined; `on_start` and `on_shutdown`
//!    run once per handler, on the handler's thread.
//! 7. **Faults never hang**: a handler that panics is reported through a
//!    [`PanicPolicy`] (halt the pipeline, or log and skip the event); after a
//!    halt no handler starts another event, and a producer gets
//!    [`PublishError::Halted`] instead of spinning forever. Whatever unwinds
//!    out of a tickring thread halts the pipeline the same way.
//! 8. **Bad configuration is a [`BuildError`]** whose message says what to
//!    change (size zero or not a power of two, a core that does not exist or
//!    that the process may not use, a mutable handler with a sibling, a
//!    batch bound of zero) — or does not compile (a stage with no handler, an
//!    option that configures nothing). Never a panic, a hang or undefined
//!    behaviour.
//!
//! # Example: decode, then two parallel stages, then a strategy
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
//! use tickring::{build_single_producer, EventProducer, Yielding};
//!
//! #[derive(Default)]
//! struct Tick { raw_price: u64, price: f64 }
//!
//! let orders = Arc::new(AtomicU64::new(0));
//! let counted = Arc::clone(&orders);
//! let mut producer = build_single_producer(1024, Tick::default, Yielding::new())
//!     // Options come before the handler they configure.
//!     .thread_name("decode")
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
//! stage before. `ARCHITECTURE.md` in the repository describes the protocol,
//! the memory orderings and where `unsafe` lives; `BENCHMARKS.md` has the
//! measurements.

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, missing_debug_implementations)]

mod affinity;
mod barrier;
mod builder;
mod error;
mod event_producer;
mod handler;
mod loom;
#[cfg(all(test, tickring_loom))]
mod loom_models;
mod multi_producer;
mod pipeline;
mod poller;
mod processor;
mod producer;
mod report;
mod ring_buffer;
mod run_state;
mod sequence;
mod sequencer;
mod shared;
#[cfg(all(feature = "shm", target_os = "linux"))]
pub mod shm;
#[cfg(all(test, not(tickring_loom)))]
mod tests;
mod wait;

pub use affinity::{allowed_cores, available_cores, pin_current_thread};
pub use builder::{
    build_multi_producer, build_single_producer, builder_state, producer_kind, Builder,
    DEFAULT_MAX_BATCH_SIZE,
};
pub use error::{BuildError, PinError, PublishError, PublishTimeoutError, TryPublishError};
pub use event_producer::EventProducer;
pub use handler::{EventHandler, MutEventHandler};
pub use multi_producer::MultiProducer;
pub use poller::{EventPoller, PollState};
pub use producer::Producer;
pub use report::{HandlerPanic, HandlerReport, PanicPolicy, ShutdownReport};
pub use ring_buffer::{slot_bytes, MAX_RING_SIZE};
pub use sequencer::FullRingWait;
pub use wait::{Blocking, BusySpin, Sleeping, WaitStrategy, Yielding, MAX_SLEEP};

/// The README's code blocks, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
