//! The systems measured side by side, behind one pair of traits where they
//! are queues ([`Tx`], [`Rx`]) and one options helper each where they run
//! handler threads: tickring, the `disruptor` crate (v4), crossbeam-channel,
//! rtrb, and the floor ring (`floor`), a minimal hand-written SPSC ring in
//! tickring's layout, the fastest any ring can hop here.

use std::cell::Cell;

use crossbeam_utils::Backoff;
use disruptor::ProcessorSettings;
use tickring::{builder_state::Configuring, Builder, EventProducer, FullRingWait, WaitStrategy};

use crate::place::Waiting;

pub mod floor;

/// A system of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Floor,
    Tickring,
    Disruptor,
    Crossbeam,
    Rtrb,
}

impl System {
    pub const ALL: [System; 5] = [
        System::Tickring,
        System::Disruptor,
        System::Crossbeam,
        System::Rtrb,
        System::Floor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Floor => "floor ring",
            System::Tickring => "tickring",
            System::Disruptor => "disruptor",
            System::Crossbeam => "crossbeam-channel",
            System::Rtrb => "rtrb",
        }
    }

    /// The name as a file name.
    pub fn slug(self) -> &'static str {
        match self {
            System::Floor => "floor",
            other => other.name(),
        }
    }
}

/// What a message of a queue peer may be.
pub trait Message: Copy + Default + Send + 'static {}
impl<T: Copy + Default + Send + 'static> Message for T {}

/// What a receive found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv<T> {
    Item(T),
    Empty,
    /// Empty, and the sending side is gone.
    Closed,
}

/// The sending end of a queue, polled without blocking.
pub trait Tx<T>: Send + 'static {
    /// Sends `value`, or hands it back when there is no room.
    fn try_send(&mut self, value: T) -> Result<(), T>;

    /// Sends every value of `values`, waiting for room as `waiting` says:
    /// in one claim where the queue has one (rtrb's `write_chunk_uninit`),
    /// else one by one.
    #[inline]
    fn send_chunk(&mut self, values: &[T], waiting: Waiting)
    where
        Self: Sized,
        T: Copy,
    {
        values.iter().for_each(|value| send(self, *value, waiting));
    }
}

/// The receiving end of a queue, polled without blocking.
pub trait Rx<T>: Send + 'static {
    fn try_recv(&mut self) -> Recv<T>;
}

/// Sends `value`, waiting for room as `waiting` says.
#[inline]
pub fn send<T>(tx: &mut impl Tx<T>, value: T, waiting: Waiting) {
    let mut value = Some(value);
    waiting.until(
        || match tx.try_send(value.take().expect("kept until sent")) {
            Ok(()) => Some(()),
            Err(back) => {
                value = Some(back);
                None
            }
        },
    );
}

/// Receives the next value, waiting as `waiting` says; `None` once closed.
#[inline]
pub fn recv<T>(rx: &mut impl Rx<T>, waiting: Waiting) -> Option<T> {
    waiting.until(|| match rx.try_recv() {
        Recv::Item(value) => Some(Some(value)),
        Recv::Closed => Some(None),
        Recv::Empty => None,
    })
}

/// A queue peer: how to make one of `capacity` slots.
pub trait Link: 'static {
    const SYSTEM: System;
    type Tx<T: Message>: Tx<T>;
    type Rx<T: Message>: Rx<T>;
    fn pair<T: Message>(capacity: usize) -> (Self::Tx<T>, Self::Rx<T>);
    /// A second sender into the same queue, where the queue has several.
    fn share<T: Message>(_tx: &Self::Tx<T>) -> Option<Self::Tx<T>> {
        None
    }
}

/// crossbeam-channel's bounded channel.
#[derive(Debug)]
pub struct Crossbeam;
/// rtrb's SPSC ring.
#[derive(Debug)]
pub struct Rtrb;

impl Link for Crossbeam {
    const SYSTEM: System = System::Crossbeam;
    type Tx<T: Message> = crossbeam_channel::Sender<T>;
    type Rx<T: Message> = crossbeam_channel::Receiver<T>;
    fn pair<T: Message>(capacity: usize) -> (Self::Tx<T>, Self::Rx<T>) {
        crossbeam_channel::bounded(capacity)
    }
    fn share<T: Message>(tx: &Self::Tx<T>) -> Option<Self::Tx<T>> {
        Some(tx.clone())
    }
}

impl<T: Message> Tx<T> for crossbeam_channel::Sender<T> {
    #[inline]
    fn try_send(&mut self, value: T) -> Result<(), T> {
        crossbeam_channel::Sender::try_send(self, value).map_err(|error| match error {
            crossbeam_channel::TrySendError::Full(value) => value,
            crossbeam_channel::TrySendError::Disconnected(_) => panic!("the receiver hung up"),
        })
    }
}

impl<T: Message> Rx<T> for crossbeam_channel::Receiver<T> {
    #[inline]
    fn try_recv(&mut self) -> Recv<T> {
        match crossbeam_channel::Receiver::try_recv(self) {
            Ok(value) => Recv::Item(value),
            Err(crossbeam_channel::TryRecvError::Empty) => Recv::Empty,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Recv::Closed,
        }
    }
}

impl Link for Rtrb {
    const SYSTEM: System = System::Rtrb;
    type Tx<T: Message> = rtrb::Producer<T>;
    type Rx<T: Message> = rtrb::Consumer<T>;
    fn pair<T: Message>(capacity: usize) -> (Self::Tx<T>, Self::Rx<T>) {
        rtrb::RingBuffer::new(capacity)
    }
}

impl<T: Message> Tx<T> for rtrb::Producer<T> {
    #[inline]
    fn try_send(&mut self, value: T) -> Result<(), T> {
        self.push(value)
            .map_err(|rtrb::PushError::Full(value)| value)
    }

    /// rtrb's canonical batch: one `write_chunk_uninit` of every value.
    #[inline]
    fn send_chunk(&mut self, values: &[T], waiting: Waiting) {
        waiting.until(|| (self.slots() >= values.len()).then_some(()));
        self.write_chunk_uninit(values.len())
            .expect("the slots are free")
            .fill_from_iter(values.iter().copied());
    }
}

impl<T: Message> Rx<T> for rtrb::Consumer<T> {
    #[inline]
    fn try_recv(&mut self) -> Recv<T> {
        if let Ok(value) = self.pop() {
            return Recv::Item(value);
        }
        if !self.is_abandoned() {
            return Recv::Empty;
        }
        // The producer may have pushed its last value just before it left:
        // the fence pairs with the release of its drop, so one more pop sees it.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        self.pop().map_or(Recv::Closed, Recv::Item)
    }
}

/// A tickring producer is a queue's sending end (a ring, one handler or
/// poller behind it).
impl<T: Message + Sync, W: WaitStrategy> Tx<T> for tickring::Producer<T, W> {
    #[inline]
    fn try_send(&mut self, value: T) -> Result<(), T> {
        match self.try_publish(|event| *event = value) {
            Ok(_) => Ok(()),
            Err(tickring::TryPublishError::Full) => Err(value),
            Err(error) => panic!("tickring: {error}"),
        }
    }
}

/// A tickring poller is a queue's receiving end: one event per call.
impl<T: Message + Sync, W: WaitStrategy> Rx<T> for tickring::EventPoller<T, W> {
    #[inline]
    fn try_recv(&mut self) -> Recv<T> {
        let mut taken = None;
        match self.poll(|event, _sequence, _end_of_batch| {
            taken = Some(*event);
            false
        }) {
            tickring::PollState::ShutDown | tickring::PollState::Halted => Recv::Closed,
            _ => taken.map_or(Recv::Empty, Recv::Item),
        }
    }
}

/// The `disruptor` crate's producer of a ring with one handler.
impl<T: Message + Sync> Tx<T> for disruptor::SingleProducer<T, disruptor::SingleConsumerBarrier> {
    #[inline]
    fn try_send(&mut self, value: T) -> Result<(), T> {
        disruptor::Producer::try_publish(self, |event| *event = value)
            .map(|_| ())
            .map_err(|_| value)
    }
}

/// The `disruptor` crate's poller, the first consumer of its ring.
impl<T: Message + Sync> Rx<T> for disruptor::EventPoller<T, disruptor::SingleProducerBarrier> {
    #[inline]
    fn try_recv(&mut self) -> Recv<T> {
        match self.take(1) {
            Ok(mut guard) => (&mut guard).next().copied().map_or(Recv::Empty, Recv::Item),
            Err(disruptor::Polling::NoEvents) => Recv::Empty,
            Err(disruptor::Polling::Shutdown) => Recv::Closed,
        }
    }
}

/// tickring's full-ring policy for a [`Waiting`].
pub fn full_ring_wait(waiting: Waiting) -> FullRingWait {
    match waiting {
        Waiting::Spin => FullRingWait::Spin,
        Waiting::Yield | Waiting::Block => FullRingWait::Yield,
    }
}

/// Names the next tickring participant and pins it to `core`, if given
/// (options come before the participant they configure).
pub fn tickring_options<E, W, K, S>(
    builder: Builder<E, W, K, S>,
    name: &str,
    core: Option<usize>,
) -> Builder<E, W, K, Configuring>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    let builder = builder.thread_name(name);
    match core {
        Some(core) => builder.pin_at_core(core),
        None => builder,
    }
}

/// The same for the `disruptor` crate, whose options also come first.
pub fn disruptor_options<E, W, B: ProcessorSettings<E, W>>(
    builder: B,
    name: &'static str,
    core: Option<usize>,
) -> B {
    let named = builder.thread_name(name);
    if let Some(core) = core {
        return named.pin_at_core(core);
    }
    named
}

/// tickring's `Yielding` policy for the `disruptor` crate, which ships only
/// busy-spin and sleep strategies: its consumers call `wait_for(sequence)`
/// once per failed poll, so a per-thread backoff, reset when the sequence
/// waited for changes, spins a little and then yields.
#[derive(Debug, Clone, Copy)]
pub struct DisruptorYielding;

impl disruptor::wait_strategies::WaitStrategy for DisruptorYielding {
    #[inline]
    fn wait_for(&self, sequence: i64) {
        thread_local! {
            static WAITED: (Cell<i64>, Backoff) = (Cell::new(i64::MIN), Backoff::new());
        }
        WAITED.with(|(waited_for, backoff)| {
            if waited_for.replace(sequence) != sequence {
                backoff.reset();
            }
            backoff.snooze();
        });
    }
}

/// Runs `$body` with `$wait` bound to the `disruptor` crate's strategy for
/// a [`Waiting`].
#[macro_export]
macro_rules! with_disruptor_wait {
    ($waiting:expr, |$wait:ident| $body:expr) => {
        match $waiting {
            $crate::place::Waiting::Spin => {
                let $wait = ::disruptor::BusySpin;
                $body
            }
            $crate::place::Waiting::Yield | $crate::place::Waiting::Block => {
                let $wait = $crate::peers::DisruptorYielding;
                $body
            }
        }
    };
}
