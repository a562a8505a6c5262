//! A ring in a shared-memory file, between processes (feature `shm`,
//! Linux).
//!
//! A feed handler, strategies, a risk process and an order gateway run as
//! separate processes so that one can restart or crash without the others.
//! [`ShmProducer::create`] makes a ring in a file (under `/dev/shm`, or any
//! path); each [`ShmConsumer::open`] joins it from another process. The
//! in-process contract holds across the boundary:
//!
//! - **every consumer sees every event exactly once, in order**, from the
//!   point it joined (contract line 1);
//! - **the producer never overwrites a slot that a live consumer has not
//!   finished with** (line 3): a full ring is back-pressure;
//! - **nothing is allocated, locked or faulted on the event path**: the
//!   file's pages are touched at creation (optionally `mlock`ed), a publish
//!   is a few stores and a consume a few loads.
//!
//! What crossing processes adds:
//!
//! - **Plain-data events.** An event is [`ShmEvent`]: `bytemuck::Pod` (no
//!   pointers, no padding, every bit pattern valid; checked at compile time
//!   by the derive; bytemuck rather than zerocopy because `Pod` is the one
//!   bound that says all of it, the crate is small and has no required
//!   dependencies, and it is what most of the ecosystem's plain-data types
//!   already derive) plus a schema name and version that the ring's header
//!   records with the event's size and alignment. Opening a ring with
//!   another event type, size, alignment, schema version or capacity is a
//!   [`ShmError`], as is a truncated, zeroed or foreign file.
//! - **Liveness.** Producer and consumers each run a small heartbeat thread
//!   that stamps the time (`CLOCK_MONOTONIC`) into the ring every
//!   `heartbeat_interval` (on any core the process started with, never
//!   pinned to the hot core of the thread that created the handle; it has
//!   made its first beat when `create`/`open` returns). A consumer whose heartbeat stops (killed, or the
//!   process stopped) for longer than the producer's `liveness_timeout` is
//!   evicted from the gate when it holds the producer back; the producer
//!   counts it ([`ShmProducer::evictions`]). A consumer whose producer's
//!   heartbeat stops reports [`ConsumeError::ProducerDead`] instead of
//!   waiting forever, having handled every event the producer fully
//!   published: an event is visible only once its stamp is stored, after
//!   all its bytes, so a producer that dies mid-write leaves nothing half
//!   written in view.
//! - **Joining late.** A consumer joins at the cursor (it sees events
//!   published after it joined), or at an explicit sequence the ring still
//!   holds ([`JoinAt`]).
//!
//! # Example
//!
//! ```
//! # #[cfg(target_os = "linux")] {
//! use tickring::shm::{ShmConsumer, ShmConsumerOptions, ShmEvent, ShmOptions, ShmProducer};
//! use tickring::EventProducer;
//!
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Quote { instrument: u64, bid: i64, ask: i64 }
//!
//! impl ShmEvent for Quote {
//!     const SCHEMA_NAME: &'static str = "example.quote";
//!     const SCHEMA_VERSION: u32 = 1;
//! }
//!
//! let path = std::env::temp_dir().join(format!("tickring-doc-{}", std::process::id()));
//! let mut producer = ShmProducer::<Quote>::create(&path, &ShmOptions::new(1024))?;
//! // Usually in another process:
//! let mut consumer = ShmConsumer::<Quote>::open(&path, &ShmConsumerOptions::new())?;
//!
//! for instrument in 0..3 {
//!     producer.publish(|quote| *quote = Quote { instrument, bid: 99, ask: 101 })?;
//! }
//! producer.close(); // consumers drain what was published, then stop
//! let mut seen = Vec::new();
//! let handled = consumer.run(&mut |quote: &Quote, _seq, _end| seen.push(quote.instrument),
//!                            &tickring::Yielding::new())?;
//! assert_eq!((handled, seen), (3, vec![0, 1, 2]));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Trust model
//!
//! Processes that share a ring are trusted to run compatible code (the
//! header check catches the honest mistakes: another event type, version or
//! capacity). A corrupt or hostile peer with write access to the file can
//! spoil event *data*, stall the ring or make it look closed, but cannot
//! make a reader violate memory safety: every access to shared memory is an
//! atomic load or store of a word (no data race, whatever the peer does);
//! every index comes from the capacity and slot size computed locally from
//! the event type and the validated header, masked, never from a shared
//! field used unchecked; events are `Pod`, so any bytes are a valid event.
//! Two things it can do are outside what a library can check: truncating
//! the file under a mapping makes the next access fault (`SIGBUS`), and
//! a peer can write any value into the ring; use file permissions
//! ([`ShmOptions::mode`], `0o600` by default) to choose who may open it.
//!
//! A consumer that the producer evicted and that then resumes (a stopped
//! process continued) finds the eviction at its next event and reports
//! [`ConsumeError::Evicted`]; an event copied while the producer was
//! overwriting it is never handed to the handler (the copy is checked
//! against the consumer's state after it is made).
//!
//! # Limits
//!
//! One producer process per ring (several producers across processes are
//! not supported); waits are busy-spin, yielding or sleeping (no blocking
//! futex wait across processes yet).

// Under loom only the protocol and its layout are built (for the models).
#![cfg_attr(tickring_loom, allow(dead_code, unused_imports))]

mod error;
#[cfg(not(tickring_loom))]
mod handles;
pub(crate) mod layout;
#[cfg(not(tickring_loom))]
mod mapping;
pub(crate) mod protocol;
#[cfg(all(test, not(tickring_loom)))]
mod tests;

pub use error::{ConsumeError, ShmError};
#[cfg(not(tickring_loom))]
pub use handles::{
    CrossProcessWait, ShmConsumer, ShmConsumerOptions, ShmEvent, ShmOptions, ShmPollState,
    ShmProducer, ShmProducerReport,
};
pub use layout::{MAX_CONSUMERS, MAX_EVENT_SIZE, MAX_SCHEMA_NAME, MAX_SHM_CAPACITY};
#[cfg(not(tickring_loom))]
pub use mapping::monotonic_ns;
pub use protocol::JoinAt;
