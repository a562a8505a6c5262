//! tickring's research harness, in one place: what the latency and hot-path
//! tools (`src/bin/`), the criterion benches (`benches/throughput.rs` at the
//! repository root) and the `market_data` example share.
//!
//! | module | what |
//! |---|---|
//! | [`args`] | command-line parsing (`lexopt`) |
//! | [`units`] | the number formatter: ns, rates, ratios, grouped counts |
//! | [`alloc`] | the counting global allocator |
//! | [`place`] | which cores threads are pinned to, and how they wait |
//! | [`stats`] | medians, paired ratios, rotated rounds |
//! | [`hist`] | HdrHistograms: percentile tables, `.hgrm` files, SVG plots |
//! | [`events`] | the throughput shapes' events: 8, 32 and 64 bytes |
//! | [`peers`] | tickring, the `disruptor` crate, crossbeam-channel, rtrb and the floor ring behind one set of traits |
//! | [`scenarios`] | ping-pong, the paced pipeline and the throughput shapes, for every system |
//!
//! Not published: it exists to measure tickring, not to be depended on.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod alloc;
pub mod args;
pub mod events;
pub mod hist;
pub mod peers;
pub mod place;
pub mod scenarios;
pub mod stats;
pub mod units;

pub use fastrand::Rng;
pub use hdrhistogram::Histogram;

// The unit tests check that tickring's rigs do not allocate while measured.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;
