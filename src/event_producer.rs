//! `EventProducer`: the one publishing interface that [`Producer`] and
//! [`MultiProducer`] share, so code that publishes can take either.
//!
//! [`Producer`]: crate::Producer
//! [`MultiProducer`]: crate::MultiProducer

use std::time::Duration;

use crate::error::{PublishError, PublishTimeoutError, TryPublishError};
use crate::ring_buffer::Claim;

/// Publishing into a ring: claim a slot, fill the event in place, publish.
///
/// Implemented by the single-producer [`Producer`](crate::Producer) and the
/// multi-producer [`MultiProducer`](crate::MultiProducer) (and sealed: the
/// claim protocol behind it is tickring's). Import it to publish:
///
/// ```
/// use tickring::{build_single_producer, EventProducer, Yielding};
///
/// /// Works with either kind of producer.
/// fn feed(producer: &mut impl EventProducer<u64>, prices: &[u64]) -> Result<(), tickring::PublishError> {
///     for &price in prices {
///         producer.publish(|event| *event = price)?;
///     }
///     Ok(())
/// }
///
/// let mut producer = build_single_producer(64, || 0u64, Yielding::new())
///     .handle_events_with(|_: &u64, _, _| {})
///     .build()?;
/// feed(&mut producer, &[101, 102, 103])?;
/// assert_eq!(producer.shutdown().handlers[0].events_handled, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait EventProducer<E>: sealed::Claimer<E> {
    /// Claims the next slot, lets `fill` write the event in place, and
    /// publishes it. Returns the event's sequence.
    ///
    /// Waits (per the pipeline's [`FullRingWait`](crate::FullRingWait))
    /// while the ring is full.
    ///
    /// # Errors
    ///
    /// [`PublishError::Halted`] once the pipeline has halted (full ring or
    /// not): nothing published from then on would be handled, and a dead
    /// handler would never make room. [`PublishError::Closed`] after a
    /// [`MultiProducer::close`](crate::MultiProducer::close).
    #[inline(always)]
    fn publish<F: FnOnce(&mut E)>(&mut self, fill: F) -> Result<i64, PublishError> {
        let claim = self.claim(1, Room::Wait).map_err(publish_error)?;
        Ok(self.write_and_publish_one(claim, fill))
    }

    /// As [`EventProducer::publish`], but returns at once (without calling
    /// `fill`) when the ring has no free slot.
    ///
    /// # Errors
    ///
    /// [`TryPublishError::Full`] when no slot is free now; `Halted` and
    /// `Closed` as for `publish`.
    #[inline]
    fn try_publish<F: FnOnce(&mut E)>(&mut self, fill: F) -> Result<i64, TryPublishError> {
        let claim = self.claim(1, Room::Now).map_err(try_publish_error)?;
        Ok(self.write_and_publish_one(claim, fill))
    }

    /// As [`EventProducer::publish`], but gives up when no slot frees up
    /// within `timeout`. Any `Duration` works: one too large to add to the
    /// clock means no deadline.
    ///
    /// # Errors
    ///
    /// [`PublishTimeoutError::TimedOut`] when the time passed first (nothing
    /// was claimed or published and `fill` was not called: capture by
    /// reference to keep your data); `Halted` and `Closed` as for `publish`.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use tickring::{build_multi_producer, EventProducer, PublishTimeoutError, Yielding};
    ///
    /// let (release, held) = mpsc::channel::<()>();
    /// let mut producer = build_multi_producer(1, || 0u8, Yielding::new())
    ///     .handle_events_with(move |_: &u8, _, _| { let _ = held.recv(); })
    ///     .build()?;
    /// producer.publish(|event| *event = 1)?;         // the handler holds it
    /// let outcome = producer.publish_timeout(Duration::from_millis(10), |event| *event = 2);
    /// assert_eq!(outcome, Err(PublishTimeoutError::TimedOut));
    /// drop(release);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn publish_timeout<F: FnOnce(&mut E)>(
        &mut self,
        timeout: Duration,
        fill: F,
    ) -> Result<i64, PublishTimeoutError> {
        let claim = self
            .claim(1, Room::Within(timeout))
            .map_err(publish_timeout_error)?;
        Ok(self.write_and_publish_one(claim, fill))
    }

    /// Claims `count` slots (waiting for room for all of them), calls
    /// `fill(event, sequence)` for each in order and publishes each as soon
    /// as it is filled. Returns the last sequence. A `count` of 0 publishes
    /// nothing, checks nothing (not even a halt) and returns the last
    /// sequence claimed so far — by any handle, for a `MultiProducer`.
    ///
    /// If `fill` panics, a [`Producer`](crate::Producer) keeps the events
    /// filled before it published and releases the rest of the claim (the
    /// next publish continues right after, with no gap); a
    /// [`MultiProducer`](crate::MultiProducer) publishes the whole claim
    /// (another handle may already have claimed past it).
    ///
    /// ```
    /// # use tickring::{build_single_producer, EventProducer, Yielding};
    /// let mut producer = build_single_producer(16, || 0u64, Yielding::new())
    ///     .handle_events_with(|_event: &u64, _sequence, _end_of_batch| {})
    ///     .build()?;
    /// let last = producer.batch_publish(10, |event, sequence| *event = sequence as u64 * 2)?;
    /// assert_eq!(last, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PublishError::BatchTooLarge`] when `count` exceeds the capacity;
    /// `Halted` and `Closed` as for `publish`.
    #[inline]
    fn batch_publish<F: FnMut(&mut E, i64)>(
        &mut self,
        count: usize,
        fill: F,
    ) -> Result<i64, PublishError> {
        let count = checked_batch(count, self.capacity()).map_err(batch_too_large)?;
        if count == 0 {
            return Ok(self.last_claimed());
        }
        let claim = self.claim(count, Room::Wait).map_err(publish_error)?;
        Ok(self.write_and_publish(claim, fill))
    }

    /// As [`EventProducer::batch_publish`], but returns at once (without
    /// calling `fill`) when `count` slots are not free now.
    ///
    /// # Errors
    ///
    /// [`TryPublishError::Full`], `BatchTooLarge`, `Halted`, `Closed`.
    #[inline]
    fn try_batch_publish<F: FnMut(&mut E, i64)>(
        &mut self,
        count: usize,
        fill: F,
    ) -> Result<i64, TryPublishError> {
        let count = checked_batch(count, self.capacity())?;
        if count == 0 {
            return Ok(self.last_claimed());
        }
        let claim = self.claim(count, Room::Now).map_err(try_publish_error)?;
        Ok(self.write_and_publish(claim, fill))
    }

    /// The ring's size.
    fn capacity(&self) -> usize {
        self.ring_capacity()
    }

    /// Slots free now, in `0..=capacity()`: how many events could be
    /// published without waiting (claimed slots count as used). Reads every
    /// gating participant's sequence.
    fn remaining_capacity(&self) -> usize {
        self.free_slots()
    }
}

impl<E, P: sealed::Claimer<E>> EventProducer<E> for P {}

pub(crate) mod sealed {
    use super::{Claim, NoRoom, Room};

    /// What a producer must do for [`EventProducer`](super::EventProducer):
    /// claim, then write and publish a claim. Public only inside a private
    /// module, so nobody outside tickring can implement it.
    pub trait Claimer<E> {
        /// Claims `count` (1 to the capacity) slots, waiting as `room` says.
        fn claim(&mut self, count: i64, room: Room) -> Result<Claim, NoRoom>;
        /// Fills and publishes every slot of `claim`; returns the last
        /// sequence published.
        fn write_and_publish<F: FnMut(&mut E, i64)>(&mut self, claim: Claim, fill: F) -> i64;
        /// Fills and publishes the one slot of `claim` (from `publish`,
        /// `try_publish`, `publish_timeout`). A producer overrides it when a
        /// path without the batch loop is cheaper.
        #[inline]
        fn write_and_publish_one<F: FnOnce(&mut E)>(&mut self, claim: Claim, fill: F) -> i64 {
            self.write_and_publish(claim, super::fill_once(fill))
        }
        /// The last sequence claimed (for a batch of zero).
        fn last_claimed(&self) -> i64;
        fn ring_capacity(&self) -> usize;
        fn free_slots(&self) -> usize;
    }
}

/// How long a claim may wait for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// As long as it takes (until the pipeline halts or closes).
    Wait,
    /// Not at all.
    Now,
    /// Up to this long (too long to add to the clock: no deadline).
    Within(Duration),
}

/// Why a claim found no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// The pipeline halted.
    Halted,
    /// The pipeline was closed.
    Closed,
    /// Not within the wait allowed (`Room::Now` or `Room::Within`).
    Full,
}

fn publish_error(reason: NoRoom) -> PublishError {
    match reason {
        NoRoom::Closed => PublishError::Closed,
        // `Room::Wait` waits until there is room or the pipeline stops.
        NoRoom::Halted | NoRoom::Full => PublishError::Halted,
    }
}

fn try_publish_error(reason: NoRoom) -> TryPublishError {
    match reason {
        NoRoom::Halted => TryPublishError::Halted,
        NoRoom::Closed => TryPublishError::Closed,
        NoRoom::Full => TryPublishError::Full,
    }
}

fn publish_timeout_error(reason: NoRoom) -> PublishTimeoutError {
    match reason {
        NoRoom::Halted => PublishTimeoutError::Halted,
        NoRoom::Closed => PublishTimeoutError::Closed,
        NoRoom::Full => PublishTimeoutError::TimedOut,
    }
}

/// The batch size as a claim count, or why it can never fit.
fn checked_batch(count: usize, capacity: usize) -> Result<i64, TryPublishError> {
    if count > capacity {
        return Err(TryPublishError::BatchTooLarge {
            requested: count,
            capacity,
        });
    }
    Ok(count as i64)
}

/// `checked_batch`'s error for the waiting `batch_publish`.
fn batch_too_large(error: TryPublishError) -> PublishError {
    match error {
        TryPublishError::BatchTooLarge {
            requested,
            capacity,
        } => PublishError::BatchTooLarge {
            requested,
            capacity,
        },
        _ => unreachable!("checked_batch reports only BatchTooLarge"),
    }
}

/// A single event's `fill` as a batch's: the single-event path then shares
/// the batch's write-and-publish loop.
#[inline]
fn fill_once<E>(fill: impl FnOnce(&mut E)) -> impl FnMut(&mut E, i64) {
    let mut fill = Some(fill);
    move |event, _sequence| {
        if let Some(fill) = fill.take() {
            fill(event);
        }
    }
}
