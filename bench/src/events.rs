//! The events of the throughput shapes, in three sizes, behind one trait
//! ([`ShapeEvent`]) so that each system's rig is written once for all three.
//!
//! | event | size | what the producer writes | what the stages write |
//! |---|---|---|---|
//! | [`Event8`] | 8 bytes (`u64`) | the value | the same word, in place |
//! | [`Event`] | 32 bytes (`32B`) | `value` | `s1`, `s2` |
//! | [`Event64`] | 64 bytes (`64B`) | `value` and four market-data words | `s1`, `s2` |
//! | [`Event56`] | 56 bytes (`56B`) | as `64B`, without its unused first word | `s1`, `s2` |
//!
//! `56B` is the 64-byte event with its sequence folded into the ring: the
//! 64-byte event's first word (`intended_ns`) is unused in the throughput
//! shapes, so `56B` carries the same words in 56 bytes, and tickring's
//! 8-byte stamp (the event's sequence) makes its slot one 64-byte line. It
//! runs only when named (`TICKRING_BENCH_SHAPES=unicast_1p1c/56B`).
//!
//! The checked consumer folds every word the producer wrote
//! ([`ShapeEvent::checksum`]), so the whole event travels; a queue peer
//! sends the same words as a plain array ([`ShapeEvent::Message`]) and its
//! consumer folds them the same way ([`Words::checksum`]).
//!
//! Stages write through `Relaxed` atomics because the `disruptor` crate
//! hands every handler `&E` (the pipeline's gating orders them); on x86-64 a
//! `Relaxed` store is the same `mov` as a plain one. The one exception is the
//! 8-byte event in the diamond, whose two parallel stages share its one
//! word: each sets its flag bit with a `Relaxed` `fetch_or`, only on the
//! events that have the flag (a third of them, and a fifth).

use std::sync::atomic::{AtomicI64, Ordering};

use crate::peers::Message;

/// A queue peer's message: a plain array of words (one event's), or a
/// [`Chunk`] of them.
pub trait Words: Message {
    /// Events the message carries.
    fn events(&self) -> u64;
    /// The fold a checked consumer adds up: the sum of every word.
    fn checksum(&self) -> i64;
    /// A pipeline stage of a queue peer: the event's first word plus one.
    fn step(self) -> Self;
}

impl<const N: usize> Words for [i64; N]
where
    [i64; N]: Default,
{
    #[inline]
    fn events(&self) -> u64 {
        1
    }

    #[inline]
    fn checksum(&self) -> i64 {
        self.iter().fold(0, |sum, word| sum.wrapping_add(*word))
    }

    #[inline]
    fn step(mut self) -> Self {
        self[0] += 1;
        self
    }
}

/// Events claimed at a time by the batch shapes' producers.
pub const CHUNK: usize = 10;

/// Up to [`CHUNK`] events in one message: how a channel, which cannot claim
/// ten slots, sends a batch shape's ten events (one `[event; 10]` a send).
#[derive(Debug, Clone, Copy, Default)]
pub struct Chunk<M> {
    pub items: [M; CHUNK],
    /// How many of `items` are events (the last chunk of a sample may be short).
    pub len: u8,
}

impl<M: Words> Words for Chunk<M>
where
    [M; CHUNK]: Default,
{
    #[inline]
    fn events(&self) -> u64 {
        u64::from(self.len)
    }

    #[inline]
    fn checksum(&self) -> i64 {
        self.items[..usize::from(self.len)]
            .iter()
            .fold(0, |sum, item| sum.wrapping_add(item.checksum()))
    }

    #[inline]
    fn step(mut self) -> Self {
        self.items = self.items.map(Words::step);
        self
    }
}

/// An event of the throughput shapes: how the producer fills it, what each
/// kind of stage writes into it, and what the checked consumer folds.
pub trait ShapeEvent: Default + Send + Sync + 'static {
    /// The size's name in the output: `u64`, `32B`, `64B`, `56B`.
    const SIZE: &'static str;
    /// The same words as a queue peer's message.
    type Message: Words;

    /// The message a queue peer sends for `value` (its words are the ones
    /// [`ShapeEvent::fill`] writes, so its [`Words::checksum`] is the
    /// event's [`ShapeEvent::checksum`]).
    fn message(value: i64) -> Self::Message;
    /// The producer's write: `value` and every payload word.
    fn fill(&mut self, value: i64);
    /// The value the producer wrote.
    fn value(&self) -> i64;
    /// What a checked consumer folds: every word the producer wrote.
    fn checksum(&self) -> i64;

    /// The pipeline's first stage: the stage word becomes the value plus one.
    fn stage_one(&self);
    /// The pipeline's second stage: the stage word plus one.
    fn stage_two(&self);
    /// What the pipeline's last stage folds: the checksum, with the stage
    /// word (`value + 2`) in place of the value.
    fn piped(&self) -> i64;

    /// The diamond's H1: marks the event `fizz` (`value % 3 == 0`).
    fn fizz(&self);
    /// The diamond's H2: marks the event `buzz` (`value % 5 == 0`).
    fn buzz(&self);
    /// What the diamond's H3 folds: the checksum of a fizz-and-buzz event, else 0.
    fn fizz_buzz(&self) -> i64;
}

/// The serial computation of the diamond's fold for `value`.
pub fn fizz_buzz_expected<E: ShapeEvent>(value: i64) -> i64 {
    if value % 15 == 0 {
        E::message(value).checksum()
    } else {
        0
    }
}

/// The 8-byte event: one word. The pipeline's stages add one to it in
/// place; the diamond's set a flag bit each in its top bits.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct Event8(pub AtomicI64);

const FIZZ: i64 = 1 << 61;
const BUZZ: i64 = 1 << 60;
const FLAGS: i64 = FIZZ | BUZZ;

impl ShapeEvent for Event8 {
    const SIZE: &'static str = "u64";
    type Message = [i64; 1];

    #[inline]
    fn message(value: i64) -> [i64; 1] {
        [value]
    }

    #[inline]
    fn fill(&mut self, value: i64) {
        *self.0.get_mut() = value;
    }

    #[inline]
    fn value(&self) -> i64 {
        self.0.load(Ordering::Relaxed) & !FLAGS
    }

    #[inline]
    fn checksum(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    #[inline]
    fn stage_one(&self) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    #[inline]
    fn stage_two(&self) {
        self.stage_one();
    }

    #[inline]
    fn piped(&self) -> i64 {
        self.checksum()
    }

    #[inline]
    fn fizz(&self) {
        if self.value() % 3 == 0 {
            self.0.fetch_or(FIZZ, Ordering::Relaxed);
        }
    }

    #[inline]
    fn buzz(&self) {
        if self.value() % 5 == 0 {
            self.0.fetch_or(BUZZ, Ordering::Relaxed);
        }
    }

    #[inline]
    fn fizz_buzz(&self) -> i64 {
        let word = self.0.load(Ordering::Relaxed);
        if word & FLAGS == FLAGS {
            word & !FLAGS
        } else {
            0
        }
    }
}

/// The 32-byte event (also the latency pipeline's): the producer writes
/// `value` (and, in the latency pipeline, when it was due); the pipeline's
/// S1 and S2 write `s1` and `s2`, the diamond's H1 and H2 their flags there.
/// With `P = ()` (no `intended_ns` word) it is the 24-byte head of
/// [`Event56`].
#[derive(Debug, Default)]
#[repr(C)]
pub struct Event<P: Pad = u64> {
    pub intended_ns: P,
    pub value: i64,
    pub s1: AtomicI64,
    pub s2: AtomicI64,
}

/// The first word of [`Event`]: `u64` (the 32- and 64-byte events) or `()`
/// (the 56-byte one, whose sequence tickring keeps in its stamp). It says
/// what the peers' messages carry in each case.
pub trait Pad: Default + Send + Sync + 'static {
    /// The name of [`Event`]`<Self>`'s size.
    const HEAD_SIZE: &'static str;
    /// The name of [`MarketEvent`]`<Self>`'s size.
    const WIDE_SIZE: &'static str;
    /// [`Event`]`<Self>`'s message.
    type Head: Words;
    /// [`MarketEvent`]`<Self>`'s message.
    type Wide: Words;
    fn head(value: i64) -> Self::Head;
    fn wide(value: i64, market: [i64; 4]) -> Self::Wide;
}

impl Pad for u64 {
    const HEAD_SIZE: &'static str = "32B";
    const WIDE_SIZE: &'static str = "64B";
    type Head = [i64; 4];
    type Wide = [i64; 8];

    #[inline]
    fn head(value: i64) -> [i64; 4] {
        [0, value, 0, 0]
    }

    #[inline]
    fn wide(value: i64, [bid, ask, bid_size, ask_size]: [i64; 4]) -> [i64; 8] {
        [0, value, 0, 0, bid, ask, bid_size, ask_size]
    }
}

impl Pad for () {
    const HEAD_SIZE: &'static str = "24B";
    const WIDE_SIZE: &'static str = "56B";
    type Head = [i64; 3];
    type Wide = [i64; 7];

    #[inline]
    fn head(value: i64) -> [i64; 3] {
        [value, 0, 0]
    }

    #[inline]
    fn wide(value: i64, [bid, ask, bid_size, ask_size]: [i64; 4]) -> [i64; 7] {
        [value, 0, 0, bid, ask, bid_size, ask_size]
    }
}

impl<P: Pad> Event<P> {
    #[inline]
    fn both_flags(&self) -> bool {
        self.s1.load(Ordering::Relaxed) != 0 && self.s2.load(Ordering::Relaxed) != 0
    }
}

impl<P: Pad> ShapeEvent for Event<P> {
    const SIZE: &'static str = P::HEAD_SIZE;
    type Message = P::Head;

    #[inline]
    fn message(value: i64) -> P::Head {
        P::head(value)
    }

    #[inline]
    fn fill(&mut self, value: i64) {
        self.value = value;
    }

    #[inline]
    fn value(&self) -> i64 {
        self.value
    }

    #[inline]
    fn checksum(&self) -> i64 {
        self.value
    }

    #[inline]
    fn stage_one(&self) {
        self.s1.store(self.value + 1, Ordering::Relaxed);
    }

    #[inline]
    fn stage_two(&self) {
        self.s2
            .store(self.s1.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    #[inline]
    fn piped(&self) -> i64 {
        self.s2.load(Ordering::Relaxed)
    }

    #[inline]
    fn fizz(&self) {
        self.s1
            .store(i64::from(self.value % 3 == 0), Ordering::Relaxed);
    }

    #[inline]
    fn buzz(&self) {
        self.s2
            .store(i64::from(self.value % 5 == 0), Ordering::Relaxed);
    }

    #[inline]
    fn fizz_buzz(&self) -> i64 {
        if self.both_flags() {
            self.checksum()
        } else {
            0
        }
    }
}

/// The 64-byte event: the 32-byte one and four words of market data (bid,
/// ask and their sizes, derived from the value), which the producer writes
/// every event and every checked consumer folds.
pub type Event64 = MarketEvent<u64>;

/// The 64-byte event's words without its first (unused) one: 56 bytes.
pub type Event56 = MarketEvent<()>;

/// [`Event64`] and [`Event56`]: an [`Event`] head and four words of market data.
#[derive(Debug, Default)]
#[repr(C)]
pub struct MarketEvent<P: Pad> {
    pub head: Event<P>,
    pub market: [i64; 4],
}

impl<P: Pad> MarketEvent<P> {
    /// The market-data words of the event carrying `value`.
    #[inline]
    fn market(value: i64) -> [i64; 4] {
        [2 * value, 2 * value + 1, value & 0xFF, (value >> 8) & 0xFF]
    }

    #[inline]
    fn market_sum(&self) -> i64 {
        self.market.checksum()
    }
}

impl<P: Pad> ShapeEvent for MarketEvent<P> {
    const SIZE: &'static str = P::WIDE_SIZE;
    type Message = P::Wide;

    #[inline]
    fn message(value: i64) -> P::Wide {
        P::wide(value, Self::market(value))
    }

    #[inline]
    fn fill(&mut self, value: i64) {
        self.head.fill(value);
        self.market = Self::market(value);
    }

    #[inline]
    fn value(&self) -> i64 {
        self.head.value()
    }

    #[inline]
    fn checksum(&self) -> i64 {
        self.head.checksum().wrapping_add(self.market_sum())
    }

    #[inline]
    fn stage_one(&self) {
        self.head.stage_one();
    }

    #[inline]
    fn stage_two(&self) {
        self.head.stage_two();
    }

    #[inline]
    fn piped(&self) -> i64 {
        self.head.piped().wrapping_add(self.market_sum())
    }

    #[inline]
    fn fizz(&self) {
        self.head.fizz();
    }

    #[inline]
    fn buzz(&self) {
        self.head.buzz();
    }

    #[inline]
    fn fizz_buzz(&self) -> i64 {
        if self.head.both_flags() {
            self.checksum()
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;

    #[test]
    fn events_and_messages_have_their_sizes() {
        assert_eq!(size_of::<Event8>(), 8);
        assert_eq!(size_of::<Event>(), 32);
        assert_eq!(size_of::<Event64>(), 64);
        assert_eq!(size_of::<Event56>(), 56);
        assert_eq!(size_of::<<Event56 as ShapeEvent>::Message>(), 56);
        assert_eq!(size_of::<<Event8 as ShapeEvent>::Message>(), 8);
        assert_eq!(size_of::<<Event as ShapeEvent>::Message>(), 32);
        assert_eq!(size_of::<<Event64 as ShapeEvent>::Message>(), 64);
    }

    /// Every operation of one event against the serial computation.
    fn check<E: ShapeEvent>() {
        for value in [0, 1, 3, 5, 15, 30, 299, 1 << 40] {
            let mut event = E::default();
            event.fill(value);
            let expected = E::message(value).checksum();
            assert_eq!((event.value(), event.checksum()), (value, expected));
            event.stage_one();
            event.stage_two();
            assert_eq!(event.piped(), expected + 2, "{} pipeline", E::SIZE);
            assert_eq!(E::message(value).step().step().checksum(), expected + 2);
            event.fill(value);
            event.fizz();
            event.buzz();
            assert_eq!(event.fizz_buzz(), fizz_buzz_expected::<E>(value));
        }
    }

    #[test]
    fn every_event_folds_what_its_message_does() {
        check::<Event8>();
        check::<Event>();
        check::<Event64>();
        check::<Event56>();
        let chunk = Chunk {
            items: [[1i64, 2]; CHUNK],
            len: 3,
        };
        assert_eq!((chunk.events(), chunk.checksum()), (3, 9));
    }
}
