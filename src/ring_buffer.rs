//! `RingBuffer<E>`: the pre-allocated slots, and the only `unsafe` slot access.
//!
//! Each slot holds the event and a *stamp*: the sequence number most recently
//! published into it. The stamp sits in the same cache line as the start of
//! the event (the idea of Vyukov's bounded queue and Agrona's record headers),
//! so a consumer's wait for sequence `s` and its read of event `s` are one
//! cache-line transfer instead of two (cursor line, then slot line). The
//! single- and multi-producer sequencers publish the same way, by stamping.
//!
//! Stamps start at `-1`; slot `i` receives sequences `i`, `i + size`, `i + 2 *
//! size`, ... so a stamp equal to `s` means "event `s` is published" without
//! ambiguity.
//!
//! # Invariants that make the `unsafe` sound (see DESIGN.md)
//!
//! 1. A producer writes slot `s` only between claiming `s` and stamping `s`,
//!    and only after every gating sequence is `>= s - size`.
//! 2. A handler reads slot `s` only after seeing it published (stamp `== s`,
//!    or an upstream sequence `>= s`), and only until it stores its own
//!    sequence `>= s`.
//! 3. A mutable handler is alone in its stage and every other handler is
//!    strictly upstream or downstream of it.
//! 4. `RingBuffer<E>` is `Sync` only when `E: Send + Sync`.

use crate::error::BuildError;
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{fence, AtomicBool, AtomicI64, Ordering};
use crate::sequence::INITIAL_SEQUENCE;

/// One slot: the publication stamp, then the event, on a cache line of its own.
#[repr(C, align(64))]
struct Slot<E> {
    /// The sequence last published into this slot (`-1`: never).
    stamp: AtomicI64,
    event: UnsafeCell<E>,
}

/// The ring of pre-allocated events.
pub(crate) struct RingBuffer<E> {
    slots: Box<[Slot<E>]>,
    /// `size - 1`; the slot of sequence `s` is `s & mask`.
    mask: i64,
    /// A copy of the pipeline's halt flag (`PipelineState`), set by every
    /// halt, beside `slots` and `mask`: the single producer checks it on
    /// every publish. Read from the line the producer reads anyway for the
    /// slot address, it let 1P-1C with `max_batch_size(64)` run at
    /// 0.68-0.86x a hand-written ring instead of 0.22-0.33x (paired rounds in
    /// `examples/hot_path.rs`, build machine); the mechanism is not known.
    halted: AtomicBool,
}

// SAFETY: invariant 4. Handlers on several threads read `&E` (needs `Sync`) and
// the producer or a mutable stage writes `&mut E` from another thread (needs
// `Send`); access to each slot is serialized by invariants 1-3.
unsafe impl<E: Send + Sync> Sync for RingBuffer<E> {}
// SAFETY: the ring owns its events; moving it between threads moves them.
unsafe impl<E: Send> Send for RingBuffer<E> {}

impl<E> RingBuffer<E> {
    /// Allocates `size` slots, each filled by `factory`, so every page the
    /// ring uses is touched before the first event travels.
    pub(crate) fn new(size: usize, factory: &mut dyn FnMut() -> E) -> Result<Self, BuildError> {
        if size == 0 || !size.is_power_of_two() {
            return Err(BuildError::InvalidRingSize { size });
        }
        if size > (1 << 40) {
            return Err(BuildError::InvalidRingSize { size });
        }
        let mut slots = Vec::new();
        slots
            .try_reserve_exact(size)
            .map_err(|_| BuildError::InvalidRingSize { size })?;
        for _ in 0..size {
            slots.push(Slot {
                stamp: AtomicI64::new(INITIAL_SEQUENCE),
                event: UnsafeCell::new(factory()),
            });
        }
        Ok(Self {
            slots: slots.into_boxed_slice(),
            mask: size as i64 - 1,
            halted: AtomicBool::new(false),
        })
    }

    /// Whether the pipeline has halted (the copy kept beside the mask).
    #[inline]
    pub(crate) fn is_halted(&self) -> bool {
        // Relaxed: as `PipelineState::is_halted`, a stop request carries no data.
        self.halted.load(Ordering::Relaxed)
    }

    /// Records a halt in the ring's copy; `PipelineState::halt` is the other.
    pub(crate) fn mark_halted(&self) {
        // Relaxed: see `is_halted`.
        self.halted.store(true, Ordering::Relaxed);
    }

    /// The number of slots.
    #[inline]
    pub(crate) fn capacity(&self) -> i64 {
        self.mask + 1
    }

    #[inline]
    fn slot(&self, sequence: i64) -> &Slot<E> {
        let index = (sequence & self.mask) as usize;
        debug_assert!(index < self.slots.len());
        // SAFETY: `index` is masked to `size - 1`, and `slots.len() == size`.
        unsafe { self.slots.get_unchecked(index) }
    }

    /// Whether event `sequence` has been published.
    #[inline]
    pub(crate) fn is_published(&self, sequence: i64) -> bool {
        // Acquire: pairs with the producer's release in `publish`, so the
        // event's fields are visible once the stamp is.
        self.slot(sequence).stamp.load(Ordering::Acquire) == sequence
    }

    /// The highest sequence `h` in `next..=limit` such that every event in
    /// `next..=h` is published; `next - 1` when `next` is not.
    #[inline]
    pub(crate) fn available_up_to(&self, next: i64, limit: i64) -> i64 {
        // The slice and mask in locals: the acquire loads below would
        // otherwise make the compiler reload them from `self` per stamp.
        let (slots, mask) = (&*self.slots, self.mask);
        let mut highest = next - 1;
        while highest < limit {
            let candidate = highest + 1;
            // SAFETY: masked to `size - 1`, and `slots.len() == size`.
            let slot = unsafe { slots.get_unchecked((candidate & mask) as usize) };
            // Acquire: as in `is_published`.
            if slot.stamp.load(Ordering::Acquire) != candidate {
                break;
            }
            highest = candidate;
        }
        highest
    }

    /// Publishes one event: stamps its slot with a release store.
    #[inline]
    pub(crate) fn publish(&self, sequence: i64) {
        // Release: the producer's writes to the event happen-before any reader
        // that sees this stamp (acquire in `is_published`).
        self.slot(sequence).stamp.store(sequence, Ordering::Release);
    }

    /// Publishes `first..=last` with one release fence and plain stores.
    #[inline]
    pub(crate) fn publish_range(&self, first: i64, last: i64) {
        // Release fence, then relaxed stamps: a reader that acquires any of
        // these stamps synchronizes with the fence and sees every event
        // written before it. One release per batch, not one per event.
        #[cfg(not(tsan))]
        {
            fence(Ordering::Release);
            for sequence in first..=last {
                self.slot(sequence).stamp.store(sequence, Ordering::Relaxed);
            }
        }
        // ThreadSanitizer does not model fences (it would report the fence
        // pairing as a race); `.ci/tsan` builds with `--cfg tsan` to use the
        // equivalent release store per stamp.
        #[cfg(tsan)]
        for sequence in first..=last {
            self.slot(sequence).stamp.store(sequence, Ordering::Release);
        }
    }

    /// Lets the producer write the event in the slot of `sequence`.
    ///
    /// # Safety
    ///
    /// Invariant 1: the caller has claimed `sequence`, not yet published it,
    /// and every gating sequence is `>= sequence - size`.
    #[inline]
    pub(crate) unsafe fn write_claimed<R>(
        &self,
        sequence: i64,
        write: impl FnOnce(&mut E) -> R,
    ) -> R {
        self.slot(sequence).event.with_mut(|event| {
            // SAFETY: by the caller's contract no handler reads this slot (all
            // have passed `sequence - size`, none may reach `sequence` before
            // the stamp) and no other producer claimed it.
            write(unsafe { &mut *event })
        })
    }

    /// Lets a handler read the published event `sequence`.
    ///
    /// # Safety
    ///
    /// Invariant 2: `sequence` is published and passed by every stage the
    /// caller depends on, and the caller has not yet released it by storing
    /// its own sequence `>= sequence`.
    #[inline]
    pub(crate) unsafe fn read_published<R>(&self, sequence: i64, read: impl FnOnce(&E) -> R) -> R {
        self.slot(sequence).event.with(|event| {
            // SAFETY: per the caller's contract the producer cannot rewrite the
            // slot (the caller gates it) and no mutable stage holds it now.
            read(unsafe { &*event })
        })
    }

    /// Lets a mutable handler modify the published event `sequence`.
    ///
    /// # Safety
    ///
    /// Invariants 2 and 3: as [`RingBuffer::read_published`], and the caller
    /// is a mutable handler alone in its stage, with every other handler
    /// strictly upstream (already past `sequence`) or downstream (gated on
    /// the caller).
    #[inline]
    pub(crate) unsafe fn modify_published<R>(
        &self,
        sequence: i64,
        modify: impl FnOnce(&mut E) -> R,
    ) -> R {
        self.slot(sequence).event.with_mut(|event| {
            // SAFETY: per the caller's contract no other reference to this
            // event exists while the caller holds it.
            modify(unsafe { &mut *event })
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn ring(size: usize) -> RingBuffer<u64> {
        let mut next = 0;
        RingBuffer::new(size, &mut || {
            next += 1;
            next
        })
        .expect("valid size")
    }

    #[test]
    fn rejects_sizes_that_are_not_powers_of_two() {
        for size in [0, 3, 6, 1000] {
            let error = RingBuffer::new(size, &mut || 0u8).err().expect("error");
            assert_eq!(error, BuildError::InvalidRingSize { size });
        }
    }

    #[test]
    fn factory_fills_every_slot_in_order() {
        let ring = ring(8);
        for sequence in 0..8 {
            // SAFETY: single-threaded test; nothing else touches the ring.
            let event = unsafe { ring.read_published(sequence, |e| *e) };
            assert_eq!(event, sequence as u64 + 1);
        }
    }

    #[test]
    fn stamps_say_what_is_published_across_laps() {
        let ring = ring(4);
        assert!(!ring.is_published(0));
        for sequence in 0..10 {
            // SAFETY: single-threaded test, the slot is claimed and unpublished.
            unsafe { ring.write_claimed(sequence, |e| *e = sequence as u64 * 10) };
            ring.publish(sequence);
            assert!(ring.is_published(sequence));
            assert!(!ring.is_published(sequence + 1));
            // SAFETY: single-threaded test, `sequence` was just published.
            let event = unsafe { ring.read_published(sequence, |e| *e) };
            assert_eq!(event, sequence as u64 * 10);
        }
        // Old laps are no longer "published" once overwritten.
        assert!(!ring.is_published(5));
        assert!(ring.is_published(9));
    }

    #[test]
    fn available_up_to_stops_at_gaps_and_limits() {
        let ring = ring(8);
        ring.publish_range(0, 2);
        ring.publish(4);
        assert_eq!(ring.available_up_to(0, 7), 2);
        assert_eq!(ring.available_up_to(0, 1), 1);
        assert_eq!(ring.available_up_to(3, 7), 2);
        ring.publish(3);
        assert_eq!(ring.available_up_to(3, 7), 4);
    }

    #[test]
    fn mutable_access_is_seen_by_later_reads() {
        let ring = ring(2);
        ring.publish(0);
        // SAFETY: single-threaded test acting as the only mutable stage.
        unsafe { ring.modify_published(0, |e| *e += 100) };
        // SAFETY: single-threaded test, the mutable access is over.
        assert_eq!(unsafe { ring.read_published(0, |e| *e) }, 101);
    }

    #[test]
    fn concurrent_publish_and_read_across_wrap_around() {
        use std::sync::Arc;
        let events: i64 = if cfg!(miri) { 200 } else { 100_000 };
        let ring = Arc::new(RingBuffer::new(4, &mut || (0i64, 0i64)).unwrap());
        let consumed = Arc::new(crate::Sequence::new());
        let reader = {
            let ring = Arc::clone(&ring);
            let consumed = Arc::clone(&consumed);
            std::thread::spawn(move || {
                let mut next = 0;
                while next < events {
                    let available = ring.available_up_to(next, events - 1);
                    if available < next {
                        std::thread::yield_now();
                        continue;
                    }
                    for sequence in next..=available {
                        // SAFETY: published (stamp seen) and not yet released.
                        let event = unsafe { ring.read_published(sequence, |e| *e) };
                        assert_eq!(event, (sequence, sequence * 3));
                    }
                    consumed.set(available);
                    next = available + 1;
                }
            })
        };
        for sequence in 0..events {
            while consumed.get() < sequence - ring.capacity() {
                std::thread::yield_now();
            }
            // SAFETY: claimed, unpublished, and the reader has passed `sequence - size`.
            unsafe { ring.write_claimed(sequence, |e| *e = (sequence, sequence * 3)) };
            ring.publish(sequence);
        }
        reader.join().expect("reader saw every event intact");
    }
}
