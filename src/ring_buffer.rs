//! `RingBuffer<E>`: the pre-allocated slots, and the only raw slot access.
//!
//! Each slot holds the event and a *stamp*: the sequence most recently
//! published into it. The stamp sits in the same cache line as the start of
//! the event (the idea of Vyukov's bounded queue and Agrona's record headers),
//! so a consumer's wait for sequence `s` and its read of event `s` are one
//! cache-line transfer instead of two (cursor line, then slot line). Both
//! sequencers publish the same way: a release store of the stamp.
//!
//! Slots sit [`slot_stride`] bytes apart in one 64-byte-aligned allocation:
//! a slot of stamp and event that fits in a line takes the next power of two
//! (a `u64` event: 16 bytes, four slots to a line), so no slot straddles two
//! lines; a larger one takes whole lines.
//!
//! Stamps start at `-1`; slot `i` receives sequences `i`, `i + size`, `i + 2 *
//! size`, ... so a stamp equal to `s` means "event `s` is published" without
//! ambiguity.
//!
//! # Where soundness comes from
//!
//! Access to an event goes through a token that only the code which proved
//! the access safe can make (each constructor is an `unsafe fn` whose caller
//! states the proof once):
//!
//! | token | made by | grants | invariant |
//! |---|---|---|---|
//! | [`Claim`] | the sequencers, after the room check | write, then publish, each claimed slot | 1 |
//! | [`Readable`] | `SequenceBarrier`, from stamps or upstream sequences | through [`Slots::each`], `&E` for each sequence in it, until the holder releases it | 2 |
//! | [`SoleWriter`] | `build()`, after checking a mutable handler has no sibling | with an [`Entry`] (lent under a `&mut Readable`), `&mut E` | 3 |
//!
//! The invariants:
//!
//! 1. A producer writes slot `s` only between claiming `s` and stamping `s`,
//!    and only after every gating sequence is `>= s - size`.
//! 2. A handler reads slot `s` only after seeing it published (stamp `== s`;
//!    with one producer, which stamps in order, a stamp `== t` for a `t >=
//!    s`; or an upstream sequence `>= s`), and only until it stores its own
//!    sequence `>= s`.
//! 3. A mutable handler is alone in its stage and every other handler is
//!    strictly upstream or downstream of it.
//! 4. `RingBuffer<E>` is `Sync` only when `E: Send + Sync`.

use std::alloc::{self, Layout};
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::error::BuildError;
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{AtomicI64, Ordering};
use crate::run_state::RunState;

/// The largest ring `build()` accepts: 2^40 slots (the ring's memory, at 8
/// bytes a slot or more, would exceed any machine's long before).
pub const MAX_RING_SIZE: usize = 1 << 40;

/// The cache line the layout is built around.
const LINE: usize = 64;

/// One slot: the publication stamp, then the event. Slots sit
/// `slot_stride` bytes apart, so the stamp and the event's first bytes share
/// a line.
#[repr(C)]
struct Slot<E> {
    /// The sequence last published into this slot (`-1`: never).
    stamp: AtomicI64,
    event: UnsafeCell<E>,
}

/// How many bytes apart a ring of `E` puts its slots: the slot's size
/// rounded up to a power of two when it fits in a cache line (so a line
/// holds whole slots), else to whole lines. Always a multiple of the slot's
/// alignment.
pub(crate) const fn slot_stride<E>() -> usize {
    let size = std::mem::size_of::<Slot<E>>();
    let align = std::mem::align_of::<Slot<E>>();
    if size <= LINE {
        size.next_power_of_two()
    } else {
        let unit = if align > LINE { align } else { LINE };
        size.div_ceil(unit) * unit
    }
}

/// How far ahead of the event it is handling a consumer prefetches, in
/// bytes of ring: sixteen lines (see `Slots::each`).
const PREFETCH_AHEAD: usize = 16 * LINE;

/// How many slots ahead a consumer prefetches: at least the next slot.
const fn prefetch_distance<E>() -> i64 {
    let slots = PREFETCH_AHEAD / slot_stride::<E>();
    if slots == 0 {
        1
    } else {
        slots as i64
    }
}

/// The lines of one slot a consumer prefetches: all of them, at most four.
/// (Only the x86-64 prefetch reads it; elsewhere, its tests.)
#[cfg_attr(
    not(all(target_arch = "x86_64", not(miri), not(tickring_loom))),
    allow(dead_code)
)]
const fn prefetch_lines<E>() -> usize {
    let lines = slot_stride::<E>().div_ceil(LINE);
    if lines > 4 {
        4
    } else {
        lines
    }
}

/// The slot a consumer handling `sequence` prefetches: `ahead` slots on, if
/// that slot is still published (`published` is the last sequence of its
/// readable range); none past it, because a line the producer has yet to
/// write would be taken from the producer and fetched again once written.
#[inline(always)]
fn prefetch_target(sequence: i64, published: i64, ahead: i64) -> Option<i64> {
    // `published - sequence` cannot overflow: both lie in -1..=i64::MAX.
    (published - sequence >= ahead).then(|| sequence + ahead)
}

/// The bytes of ring memory one event of type `E` takes in an in-process
/// ring: its slot, the 8-byte stamp and the event, laid out as the ring
/// lays it out (rounded up to a power of two when it fits in a 64-byte
/// line, else to whole lines). A ring of `size` events takes `size *
/// slot_bytes::<E>()` bytes.
///
/// A 64-byte market-data record whose sequence number is the ring's takes
/// one line: declare the other 56 bytes as the event, and every handler
/// receives the sequence beside it (the stamp, already in the slot's line).
/// A 64-byte event takes two lines. Check the fit at compile time:
///
/// ```
/// /// A quote of 56 bytes; its sequence is the ring's.
/// struct Quote {
///     instrument: u32,
///     venue: u32,
///     bid: i64,
///     ask: i64,
///     bid_size: i64,
///     ask_size: i64,
///     exchange_ns: u64,
///     receive_ns: u64,
/// }
/// const _: () = assert!(tickring::slot_bytes::<Quote>() == 64);
/// assert_eq!(tickring::slot_bytes::<[u8; 64]>(), 128);
/// assert_eq!(tickring::slot_bytes::<u64>(), 16);
/// ```
///
/// The shared-memory ring (module `shm`) rounds its slots by the same rule,
/// with the event's size rounded up to whole 8-byte words.
pub const fn slot_bytes<E>() -> usize {
    slot_stride::<E>()
}

/// The ring of pre-allocated events, and the pipeline's run state beside the
/// slots pointer and mask (the line every publish and batch reads anyway).
pub(crate) struct RingBuffer<E> {
    /// `size` slots, `slot_stride::<E>()` bytes apart, each initialized.
    base: NonNull<u8>,
    /// `size - 1`; the slot of sequence `s` is `s & mask`.
    mask: i64,
    /// The one halt flag and the shutdown point.
    pub(crate) state: RunState,
    /// Stamps are written in sequence order (one producer): a published
    /// stamp implies every earlier one (see `available_up_to`).
    in_order: bool,
    /// The ring owns its slots (for the drop check and auto traits).
    _slots: PhantomData<Slot<E>>,
}

// SAFETY: invariant 4. Handlers on several threads read `&E` (needs `Sync`) and
// the producer or a mutable stage writes `&mut E` from another thread (needs
// `Send`); access to each slot is serialized by invariants 1-3.
unsafe impl<E: Send + Sync> Sync for RingBuffer<E> {}
// SAFETY: the ring owns its events; moving it between threads moves them.
unsafe impl<E: Send> Send for RingBuffer<E> {}

/// The allocation's layout for `size` slots: `slot_stride` bytes each,
/// aligned to a line (or to the slot, if that is stricter).
fn ring_layout<E>(size: usize) -> Option<Layout> {
    let align = std::mem::align_of::<Slot<E>>().max(LINE);
    let bytes = size.checked_mul(slot_stride::<E>())?;
    Layout::from_size_align(bytes, align).ok()
}

/// Slots being filled by `RingBuffer::new`: if the factory panics, drops
/// the slots written so far and frees the allocation.
struct Filling<E> {
    base: NonNull<u8>,
    layout: Layout,
    written: usize,
    _slots: PhantomData<Slot<E>>,
}

impl<E> Drop for Filling<E> {
    fn drop(&mut self) {
        for index in 0..self.written {
            // SAFETY: slots `0..written` were initialized by `RingBuffer::new`,
            // each `slot_stride` bytes apart inside the allocation, and
            // nothing else refers to them.
            unsafe {
                std::ptr::drop_in_place(
                    self.base.as_ptr().add(index * slot_stride::<E>()) as *mut Slot<E>
                )
            };
        }
        // SAFETY: `base` came from `alloc::alloc(layout)` and is freed once.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// Sequences `next..=last` that their holder claimed and may write and
/// publish. Made only by the sequencers after their room check; not `Clone`.
/// (`pub` only to appear in the sealed `Claimer` trait; unnameable outside.)
#[derive(Debug)]
pub struct Claim {
    /// The first sequence not yet published.
    next: i64,
    last: i64,
}

impl Claim {
    /// # Safety
    ///
    /// Invariant 1 for every sequence in `first..=last`: the caller claimed
    /// it (no other producer holds it), it is not yet published, and every
    /// gating sequence is `>= last - size`.
    #[inline]
    pub(crate) unsafe fn new(first: i64, last: i64) -> Self {
        Self { next: first, last }
    }

    /// The first sequence not yet published.
    #[inline]
    pub(crate) fn next(&self) -> i64 {
        self.next
    }

    /// The last sequence claimed.
    #[cfg_attr(any(not(feature = "shm"), tickring_loom), allow(dead_code))]
    #[inline]
    pub(crate) fn last(&self) -> i64 {
        self.last
    }

    /// Whether every claimed sequence is published.
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.next > self.last
    }
}

/// Sequences `first..=last`, published and passed by every stage the holder
/// depends on; the holder may read them until it releases them (stores its
/// own sequence past them). Made only by `SequenceBarrier`; not `Clone`.
#[derive(Debug)]
pub(crate) struct Readable {
    first: i64,
    last: i64,
}

impl Readable {
    /// # Safety
    ///
    /// Invariant 2: every sequence in `first..=last` is published (its stamp
    /// was acquired, or, with one producer, the stamp of `last`, or an
    /// upstream sequence `>= last` was), and the holder's
    /// own sequence is `< first` and stays so until it drops this token.
    #[inline]
    pub(crate) unsafe fn new(first: i64, last: i64) -> Self {
        Self { first, last }
    }

    #[inline]
    pub(crate) fn first(&self) -> i64 {
        self.first
    }

    #[inline]
    pub(crate) fn last(&self) -> i64 {
        self.last
    }
}

/// Proof that a handler is alone in its stage (invariant 3). Made only by
/// `build()` after its sibling check.
#[derive(Debug)]
pub(crate) struct SoleWriter(());

impl SoleWriter {
    /// # Safety
    ///
    /// Invariant 3: the handler that gets this token is alone in its stage,
    /// and every other participant is strictly upstream or downstream of it.
    pub(crate) unsafe fn new() -> Self {
        Self(())
    }
}

impl<E> RingBuffer<E> {
    /// Allocates `size` slots, each filled by `factory`, so every page the
    /// ring uses is touched before the first event travels.
    ///
    /// `in_order`: only one producer writes the ring, so its stamps are
    /// written in sequence order (the single producer); `false` for several.
    pub(crate) fn new(
        size: usize,
        in_order: bool,
        factory: &mut dyn FnMut() -> E,
    ) -> Result<Self, BuildError> {
        if size == 0 || !size.is_power_of_two() || size > MAX_RING_SIZE {
            return Err(BuildError::InvalidRingSize { size });
        }
        let layout = ring_layout::<E>(size).ok_or(BuildError::InvalidRingSize { size })?;
        // SAFETY: the layout's size is at least 8 (one stamp), never zero.
        let raw = unsafe { alloc::alloc(layout) };
        let base = NonNull::new(raw).ok_or(BuildError::InvalidRingSize { size })?;
        let mut filling = Filling::<E> {
            base,
            layout,
            written: 0,
            _slots: PhantomData,
        };
        while filling.written < size {
            let slot = Slot {
                stamp: AtomicI64::new(-1),
                event: UnsafeCell::new(factory()),
            };
            // SAFETY: slot `written` lies inside the allocation (`written <
            // size`), is aligned (the stride is a multiple of the slot's
            // alignment, the base is aligned to it) and not yet initialized.
            unsafe {
                std::ptr::write(
                    base.as_ptr().add(filling.written * slot_stride::<E>()) as *mut Slot<E>,
                    slot,
                )
            };
            filling.written += 1;
        }
        std::mem::forget(filling);
        Ok(Self {
            base,
            mask: size as i64 - 1,
            state: RunState::new(),
            in_order,
            _slots: PhantomData,
        })
    }

    /// The number of slots.
    #[inline]
    pub(crate) fn capacity(&self) -> i64 {
        self.mask + 1
    }

    #[inline]
    fn slot(&self, sequence: i64) -> &Slot<E> {
        self.slots().slot(sequence)
    }

    /// Whether event `sequence` has been published.
    #[inline]
    pub(crate) fn is_published(&self, sequence: i64) -> bool {
        // Acquire: pairs with the producer's release in `publish`, so the
        // event's fields are visible once the stamp is.
        self.slot(sequence).stamp.load(Ordering::Acquire) == sequence
    }

    /// The highest sequence `h` in `next..=limit` such that every event in
    /// `next..=h` is published; `next - 1` when `next` is not. With one
    /// producer (`in_order`) and `behind` (the caller's last batch reached
    /// its limit), `limit` stamped answers for the whole range.
    #[inline]
    pub(crate) fn available_up_to(&self, next: i64, limit: i64, behind: bool) -> i64 {
        // The base and mask in locals: the acquire loads below would
        // otherwise make the compiler reload them from `self` per stamp.
        let slots = self.slots();
        // One producer stamps in sequence order, each stamp a release after
        // the event and every earlier stamp: seeing `limit` stamped (acquire)
        // shows every event up to it. A consumer behind by a whole batch
        // (the ring full: the consumer is the bottleneck) then skips the
        // scan. Only after a full batch: a consumer that keeps up would read
        // a line the producer is about to write. Several producers stamp out
        // of order; they always scan.
        if behind
            && self.in_order
            && limit > next
            && slots.slot(limit).stamp.load(Ordering::Acquire) == limit
        {
            return limit;
        }
        let mut highest = next - 1;
        while highest < limit {
            let candidate = highest + 1;
            let slot = slots.slot(candidate);
            // Acquire: as in `is_published`.
            if slot.stamp.load(Ordering::Acquire) != candidate {
                break;
            }
            highest = candidate;
        }
        highest
    }

    /// Lets `fill` write the next claimed event, then publishes it: a release
    /// store of its stamp. Returns the sequence published.
    #[inline]
    pub(crate) fn write_and_publish<R>(
        &self,
        claim: &mut Claim,
        fill: impl FnOnce(&mut E, i64) -> R,
    ) -> R {
        let sequence = claim.next;
        assert!(sequence <= claim.last, "a claim is published once");
        let slot = self.slot(sequence);
        let result = slot.event.with_mut(|event| {
            // SAFETY: invariant 1, vouched for by the `Claim` (made only by a
            // sequencer after its room check): no handler reads this slot
            // (all have passed `sequence - size`, none may reach `sequence`
            // before the stamp below) and no other producer claimed it.
            fill(unsafe { &mut *event }, sequence)
        });
        // Release: the event's writes happen-before any reader that sees this
        // stamp (acquire in `is_published` / `available_up_to`).
        slot.stamp.store(sequence, Ordering::Release);
        claim.next = sequence + 1;
        result
    }

    /// As `write_and_publish` for a claim of one event, taken by value: no
    /// address of the claim is taken, so a publishing loop keeps it in
    /// registers. Returns the sequence published.
    #[inline(always)]
    pub(crate) fn write_and_publish_one(&self, claim: Claim, fill: impl FnOnce(&mut E)) -> i64 {
        let sequence = claim.next;
        assert!(sequence == claim.last, "a claim of one event");
        let slot = self.slot(sequence);
        slot.event.with_mut(|event| {
            // SAFETY: invariant 1, vouched for by the `Claim`: as in
            // `write_and_publish`.
            fill(unsafe { &mut *event })
        });
        // Release: as in `write_and_publish`.
        slot.stamp.store(sequence, Ordering::Release);
        sequence
    }

    /// Publishes every sequence left in `claim` without writing its event
    /// (the slot keeps its previous contents). For a multi-producer whose
    /// `fill` panicked: a claimed sequence that never appeared would stall
    /// every handler.
    pub(crate) fn publish_unwritten(&self, claim: &mut Claim) {
        while claim.next <= claim.last {
            // Release: as in `write_and_publish`.
            self.slot(claim.next)
                .stamp
                .store(claim.next, Ordering::Release);
            claim.next += 1;
        }
    }

    /// The slots and the mask, copied out for a consumer's loop.
    #[inline]
    pub(crate) fn slots(&self) -> Slots<'_, E> {
        Slots {
            base: self.base,
            mask: self.mask,
            _ring: PhantomData,
        }
    }
}

impl<E> Drop for RingBuffer<E> {
    fn drop(&mut self) {
        let size = (self.mask + 1) as usize;
        // Rebuilt as `new` built it: drops every slot, frees the allocation.
        drop(Filling::<E> {
            base: self.base,
            layout: ring_layout::<E>(size).expect("the layout `new` allocated"),
            written: size,
            _slots: PhantomData,
        });
    }
}

/// A ring's slots and mask as values: a consumer's loop holds them in
/// registers. Read through the ring itself, the halt check's atomic load
/// between two events makes the compiler reload both from the ring every
/// event.
pub(crate) struct Slots<'a, E> {
    base: NonNull<u8>,
    mask: i64,
    _ring: PhantomData<&'a RingBuffer<E>>,
}

impl<E> Clone for Slots<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Slots<'_, E> {}

impl<'a, E> Slots<'a, E> {
    #[inline]
    fn slot(self, sequence: i64) -> &'a Slot<E> {
        let index = (sequence & self.mask) as usize;
        // SAFETY: `index` is masked to `size - 1`, so the slot lies inside
        // the ring's allocation, initialized by `RingBuffer::new`, aligned
        // (see `slot_stride`); the ring outlives `'a` and hands out only
        // shared references to a slot (its fields are atomics and cells).
        unsafe { &*(self.base.as_ptr().add(index * slot_stride::<E>()) as *const Slot<E>) }
    }

    /// Asks the CPU to bring the lines of `sequence`'s slot into this core's
    /// cache. A hint: it reads nothing into the program and changes no
    /// state the program can see. A no-op off x86-64 (and under Miri and
    /// loom, which model no caches).
    #[inline(always)]
    fn prefetch(self, sequence: i64) {
        #[cfg(all(target_arch = "x86_64", not(miri), not(tickring_loom)))]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let slot = self.slot(sequence) as *const Slot<E> as *const i8;
            for line in 0..prefetch_lines::<E>() {
                // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU
                // has; a prefetch never faults and reads nothing into the
                // program. The address lies inside the slot's own lines
                // (`prefetch_lines` covers at most `slot_stride` bytes),
                // inside the ring's allocation.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(slot.wrapping_add(line * LINE)) };
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri), not(tickring_loom))))]
        let _ = sequence;
    }

    /// Hands the events of `readable` from its first through `to` (at most
    /// its last) to `each(entry, sequence, end_of_batch)`, in order;
    /// `end_of_batch` is set on `to` when `closes`. Stops after a call that
    /// returns `false`, or when the pipeline halted: before the first event,
    /// and with `CHECK_HALT` before every later one (see `processor.rs`).
    /// `stopped_at` ends as the first sequence not completed, also while a
    /// panic unwinds (it then names the event that panicked). Returns
    /// whether every event through `to` was handed out and each call
    /// returned `true`.
    ///
    /// The range is checked once, not per event: a panic path between two
    /// events would make the compiler store the consumer's state to memory
    /// before each of them (measured in `BENCHMARKS.md`, `consumer_cost`).
    #[inline]
    pub(crate) fn each<const CHECK_HALT: bool>(
        self,
        readable: &mut Readable,
        to: i64,
        closes: bool,
        state: &RunState,
        stopped_at: &mut i64,
        mut each: impl FnMut(Entry<'_, E>, i64, bool) -> bool,
    ) -> bool {
        assert!(to <= readable.last, "a batch beyond its readable range");
        // Written back by `Progress`'s drop, so the counter lives in a register.
        let mut progress = Progress {
            at: readable.first,
            out: stopped_at,
        };
        if progress.at > to {
            return true;
        }
        if state.is_halted() {
            return false;
        }
        // Every slot up to the range's last is published: prefetching them
        // never fetches a line the producer has yet to write (which would
        // take it from the producer, and be fetched again once written).
        let (published, ahead) = (readable.last, prefetch_distance::<E>());
        loop {
            let sequence = progress.at;
            if let Some(ahead_of_it) = prefetch_target(sequence, published, ahead) {
                self.prefetch(ahead_of_it);
            }
            let entry = Entry {
                slot: self.slot(sequence),
                _readable: PhantomData,
            };
            let keep_going = each(entry, sequence, closes && sequence == to);
            progress.at += 1;
            if !keep_going {
                return false;
            }
            if progress.at > to {
                return true;
            }
            // After the bounds: the last event of a batch costs no extra load.
            if CHECK_HALT && state.is_halted() {
                return false;
            }
        }
    }
}

/// The sequence a batch has reached, copied out when it is dropped: on a
/// normal exit and while a panic unwinds through the batch.
struct Progress<'a> {
    at: i64,
    out: &'a mut i64,
}

impl Drop for Progress<'_> {
    #[inline]
    fn drop(&mut self) {
        *self.out = self.at;
    }
}

/// One event of a [`Readable`] range, lent by [`Slots::each`] for one call
/// of its closure (which must accept any lifetime `'r`, so nothing it gets
/// outlives the call).
pub(crate) struct Entry<'r, E> {
    slot: &'r Slot<E>,
    /// Made while `each` holds the `Readable` exclusively.
    _readable: PhantomData<&'r mut Readable>,
}

impl<E> Entry<'_, E> {
    /// The published event.
    #[inline]
    pub(crate) fn event(&self) -> &E {
        self.slot.event.with(|event| {
            // SAFETY: invariant 2, vouched for by the `Readable` that `each`
            // holds exclusively while this entry lives (its sequence lies in
            // the range, checked once by `each`): the slot is published and
            // the producer cannot rewrite it before the holder releases it;
            // a shared borrow of the entry excludes `event_mut` meanwhile.
            unsafe { &*event }
        })
    }

    /// The published event, writable by the sole writer of its stage.
    #[inline]
    pub(crate) fn event_mut(&mut self, _sole: &SoleWriter) -> &mut E {
        self.slot.event.with_mut(|event| {
            // SAFETY: invariants 2 and 3: as in `event`, and `SoleWriter`
            // proves every other participant upstream (done with the slot)
            // or downstream (gated on this handler); the exclusive borrow of
            // the entry, itself made under an exclusive borrow of the
            // `Readable`, keeps this the only reference to the event.
            unsafe { &mut *event }
        })
    }
}

#[cfg(all(test, not(tickring_loom)))]
mod tests {
    use super::*;

    /// A ring whose stamps may come out of order (several producers), so
    /// the tests may publish any claim.
    fn ring(size: usize) -> RingBuffer<u64> {
        let mut next = 0;
        RingBuffer::new(size, false, &mut || {
            next += 1;
            next
        })
        .expect("valid size")
    }

    fn claim(first: i64, last: i64) -> Claim {
        // SAFETY: single-threaded tests; nothing reads the ring concurrently.
        unsafe { Claim::new(first, last) }
    }

    /// Every event of `readable`, with its sequence, through `Slots::each`.
    fn read_all<E: Clone>(ring: &RingBuffer<E>, readable: &mut Readable) -> Vec<(i64, E)> {
        let (mut seen, mut stopped_at) = (Vec::new(), 0);
        let last = readable.last();
        let completed = ring.slots().each::<true>(
            readable,
            last,
            true,
            &ring.state,
            &mut stopped_at,
            |entry, sequence, end_of_batch| {
                assert_eq!(end_of_batch, sequence == last);
                seen.push((sequence, entry.event().clone()));
                true
            },
        );
        assert!(completed);
        assert_eq!(stopped_at, last + 1);
        seen
    }

    fn readable(first: i64, last: i64) -> Readable {
        // SAFETY: single-threaded tests; nothing writes the ring concurrently.
        unsafe { Readable::new(first, last) }
    }

    #[test]
    fn rejects_sizes_that_are_not_powers_of_two_or_too_large() {
        for size in [0, 3, 6, 1000, MAX_RING_SIZE * 2, usize::MAX] {
            let error = RingBuffer::new(size, true, &mut || 0u8)
                .err()
                .expect("error");
            assert_eq!(error, BuildError::InvalidRingSize { size });
        }
    }

    #[test]
    fn slots_fill_lines_and_never_straddle_one() {
        #[repr(align(64))]
        struct Line(#[allow(dead_code)] [u8; 64]);
        #[repr(align(128))]
        struct Wide(#[allow(dead_code)] [u8; 8]);
        assert_eq!(slot_stride::<()>(), 8);
        assert_eq!(slot_stride::<u8>(), 16);
        assert_eq!(slot_stride::<u64>(), 16);
        assert_eq!(slot_stride::<[u64; 3]>(), 32);
        assert_eq!(slot_stride::<[u64; 4]>(), 64);
        assert_eq!(slot_stride::<[u64; 7]>(), 64);
        assert_eq!(slot_stride::<[u64; 8]>(), 128);
        assert_eq!(slot_stride::<[u64; 20]>(), 192);
        assert_eq!(slot_stride::<Line>(), 128);
        assert_eq!(slot_stride::<Wide>(), 256);
        fn check<E>(make: fn() -> E) {
            let ring = RingBuffer::new(8, true, &mut || make()).expect("valid size");
            let stride = slot_stride::<E>();
            for sequence in 0..8 {
                let slot = ring.slot(sequence) as *const Slot<E> as usize;
                assert_eq!(slot % std::mem::align_of::<Slot<E>>(), 0);
                assert_eq!(
                    slot - ring.slot(0) as *const Slot<E> as usize,
                    sequence as usize * stride
                );
                if stride <= LINE {
                    let end = slot + std::mem::size_of::<Slot<E>>() - 1;
                    assert_eq!(slot / LINE, end / LINE, "slot {sequence} straddles a line");
                } else {
                    assert_eq!(slot % LINE, 0);
                }
            }
        }
        check(|| ());
        check(|| 0u8);
        check(|| 0u64);
        check(|| [0u64; 3]);
        check(|| [0u64; 7]);
        check(|| [0u64; 8]);
        check(|| Line([0; 64]));
        check(|| Wide([0; 8]));
    }

    #[test]
    fn slot_bytes_at_the_edges_of_each_layout() {
        // Zero-sized, one byte, the largest of each class, the first of the next.
        assert_eq!(slot_bytes::<()>(), 8);
        assert_eq!(slot_bytes::<u8>(), 16);
        assert_eq!(slot_bytes::<[u8; 8]>(), 16);
        assert_eq!(slot_bytes::<[u8; 9]>(), 32);
        assert_eq!(slot_bytes::<[u8; 24]>(), 32);
        assert_eq!(slot_bytes::<[u8; 25]>(), 64);
        assert_eq!(slot_bytes::<[u8; 56]>(), 64);
        assert_eq!(slot_bytes::<[u8; 57]>(), 128);
        assert_eq!(slot_bytes::<[u64; 8]>(), 128);
        assert_eq!(slot_bytes::<[u8; 4096]>(), 4160);
        // The largest ring of the largest-slot class still has a layout or
        // a clear refusal, never an overflow.
        assert!(ring_layout::<[u8; 4096]>(MAX_RING_SIZE).is_some());
        assert!(ring_layout::<[u8; 4096]>(usize::MAX).is_none());
    }

    #[test]
    fn a_factory_panic_drops_what_it_made() {
        use std::cell::Cell;
        use std::rc::Rc;
        /// Counts itself in `live` while it exists.
        struct Counted(Rc<Cell<usize>>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        let live = Rc::new(Cell::new(0));
        let make = || {
            live.set(live.get() + 1);
            Counted(Rc::clone(&live))
        };
        let mut made = 0;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            RingBuffer::new(8, true, &mut || {
                made += 1;
                assert!(made < 5, "the factory fails at its fifth event");
                make()
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(live.get(), 0, "the four slots made are dropped");
        let ring = RingBuffer::new(4, true, &mut || make()).expect("valid size");
        assert_eq!(live.get(), 4);
        drop(ring);
        assert_eq!(live.get(), 0, "dropping the ring drops every event");
    }

    #[test]
    fn factory_fills_every_slot_in_order() {
        let ring = ring(8);
        let expected: Vec<(i64, u64)> = (0..8).map(|s| (s, s as u64 + 1)).collect();
        assert_eq!(read_all(&ring, &mut readable(0, 7)), expected);
    }

    #[test]
    fn stamps_say_what_is_published_across_laps() {
        let ring = ring(4);
        assert!(!ring.is_published(0));
        for sequence in 0..10 {
            let mut one = claim(sequence, sequence);
            ring.write_and_publish(&mut one, |e, s| *e = s as u64 * 10);
            assert!(one.is_done());
            assert!(ring.is_published(sequence));
            assert!(!ring.is_published(sequence + 1));
            assert_eq!(
                read_all(&ring, &mut readable(sequence, sequence)),
                [(sequence, sequence as u64 * 10)]
            );
        }
        // Old laps are no longer "published" once overwritten.
        assert!(!ring.is_published(5));
        assert!(ring.is_published(9));
    }

    #[test]
    fn a_consumer_prefetches_only_slots_of_its_published_range() {
        // `ahead` slots on, while that slot lies in the range.
        assert_eq!(prefetch_target(0, 15, 16), None);
        assert_eq!(prefetch_target(0, 16, 16), Some(16));
        assert_eq!(prefetch_target(4, 5, 1), Some(5));
        assert_eq!(
            prefetch_target(5, 5, 1),
            None,
            "the range's last: nothing after it"
        );
        assert_eq!(prefetch_target(0, -1, 1), None, "an empty range");
        // At the largest sequence: no overflow, nothing past it.
        assert_eq!(prefetch_target(i64::MAX - 16, i64::MAX, 16), Some(i64::MAX));
        assert_eq!(prefetch_target(i64::MAX - 15, i64::MAX, 16), None);
        assert_eq!(prefetch_target(i64::MAX, i64::MAX, 1), None);
    }

    #[test]
    fn the_prefetch_runs_sixteen_lines_ahead_within_one_slot() {
        assert_eq!(prefetch_distance::<()>(), 128, "8-byte slots");
        assert_eq!(prefetch_distance::<u64>(), 64, "16-byte slots");
        assert_eq!(prefetch_distance::<[u64; 4]>(), 16, "a line a slot");
        assert_eq!(prefetch_distance::<[u8; 64]>(), 8, "two lines a slot");
        assert_eq!(
            prefetch_distance::<[u8; 4096]>(),
            1,
            "larger than the distance"
        );
        assert_eq!(prefetch_lines::<u64>(), 1);
        assert_eq!(prefetch_lines::<[u8; 64]>(), 2);
        assert_eq!(prefetch_lines::<[u8; 4096]>(), 4, "at most four lines");
        // Every address prefetched (the slot's start, one line on, ...)
        // lies inside the slot.
        fn inside<E>() -> bool {
            (prefetch_lines::<E>() - 1) * LINE < slot_stride::<E>()
        }
        assert!(inside::<()>() && inside::<u64>() && inside::<[u64; 4]>());
        assert!(inside::<[u8; 64]>() && inside::<[u8; 200]>() && inside::<[u8; 4096]>());
    }

    #[test]
    fn available_up_to_stops_at_gaps_and_limits() {
        let ring = ring(8);
        ring.publish_unwritten(&mut claim(0, 2));
        ring.publish_unwritten(&mut claim(4, 4));
        assert_eq!(ring.available_up_to(0, 7, true), 2);
        assert_eq!(ring.available_up_to(0, 1, true), 1);
        assert_eq!(ring.available_up_to(3, 7, true), 2);
        ring.publish_unwritten(&mut claim(3, 3));
        assert_eq!(ring.available_up_to(3, 7, true), 4);
    }

    #[test]
    fn an_in_order_ring_reads_one_stamp_for_a_whole_batch() {
        let ring = RingBuffer::new(8, true, &mut || 0u64).expect("valid size");
        // Nothing published: no batch, whichever path.
        assert_eq!(ring.available_up_to(0, 7, true), -1);
        for sequence in 0..=2 {
            ring.publish_unwritten(&mut claim(sequence, sequence));
        }
        // `limit` not stamped: the scan finds the end.
        assert_eq!(ring.available_up_to(0, 7, true), 2);
        assert_eq!(ring.available_up_to(0, 0, true), 0);
        assert_eq!(ring.available_up_to(3, 7, true), 2);
        for sequence in 3..=9 {
            ring.publish_unwritten(&mut claim(sequence, sequence));
        }
        // `limit` stamped in this lap: the whole range at once.
        assert_eq!(ring.available_up_to(2, 9, true), 9);
        assert_eq!(ring.available_up_to(4, 6, true), 6);
        // A caller that kept up scans instead, to the same answer.
        assert_eq!(ring.available_up_to(2, 9, false), 9);
        // A stamp from the lap before is not this lap's `limit`.
        assert_eq!(ring.available_up_to(10, 17, true), 9);
    }

    #[test]
    fn only_an_in_order_ring_that_is_behind_trusts_the_limit_alone() {
        // A gap at 1 with 2 stamped: what several producers can leave, and
        // one producer never does. It shows which path answered.
        for in_order in [true, false] {
            let ring = RingBuffer::new(8, in_order, &mut || 0u64).expect("valid size");
            ring.publish_unwritten(&mut claim(0, 0));
            ring.publish_unwritten(&mut claim(2, 2));
            // Several producers: the scan stops at the gap, behind or not.
            // One producer: behind, the stamp of `limit` answers alone.
            let trusted = if in_order { 2 } else { 0 };
            assert_eq!(
                ring.available_up_to(0, 2, true),
                trusted,
                "in order: {in_order}"
            );
            assert_eq!(ring.available_up_to(0, 2, false), 0, "in order: {in_order}");
        }
    }

    #[test]
    fn mutable_access_is_seen_by_later_reads() {
        let ring = ring(2);
        ring.publish_unwritten(&mut claim(0, 0));
        let mut first = readable(0, 0);
        // SAFETY: single-threaded test acting as the only mutable stage.
        let sole = unsafe { SoleWriter::new() };
        let mut stopped_at = 0;
        ring.slots().each::<false>(
            &mut first,
            0,
            true,
            &ring.state,
            &mut stopped_at,
            |mut entry, _, _| {
                *entry.event_mut(&sole) += 100;
                true
            },
        );
        assert_eq!(read_all(&ring, &mut first), [(0, 101)]);
    }

    #[test]
    #[should_panic(expected = "beyond its readable range")]
    fn a_batch_beyond_the_token_is_refused() {
        let ring = ring(4);
        let mut stopped_at = 0;
        ring.slots().each::<true>(
            &mut readable(0, 1),
            2,
            true,
            &ring.state,
            &mut stopped_at,
            |_, _, _| true,
        );
    }

    /// Runs `each` over sequences 0..=5 of a fresh ring, up to `to`, and
    /// returns (completed, stopped_at, sequences handed out with their
    /// end-of-batch flags).
    fn run_each<const CHECK_HALT: bool>(
        to: i64,
        closes: bool,
        mut stop: impl FnMut(&RingBuffer<u64>, i64) -> bool,
    ) -> (bool, i64, Vec<(i64, bool)>) {
        let ring = ring(8);
        let (mut seen, mut stopped_at) = (Vec::new(), -7);
        let completed = ring.slots().each::<CHECK_HALT>(
            &mut readable(0, 5),
            to,
            closes,
            &ring.state,
            &mut stopped_at,
            |_, sequence, end_of_batch| {
                seen.push((sequence, end_of_batch));
                !stop(&ring, sequence)
            },
        );
        (completed, stopped_at, seen)
    }

    #[test]
    fn each_hands_out_a_prefix_and_says_where_it_stopped() {
        let all = |end: bool| vec![(0, false), (1, false), (2, false), (3, end)];
        assert_eq!(
            run_each::<true>(3, true, |_, _| false),
            (true, 4, all(true))
        );
        // The window does not close at `to`: no end of batch.
        assert_eq!(
            run_each::<true>(3, false, |_, _| false),
            (true, 4, all(false))
        );
        // The closure says stop at 1.
        assert_eq!(
            run_each::<false>(3, true, |_, s| s == 1),
            (false, 2, vec![(0, false), (1, false)])
        );
        // An empty range (`to` before the first) hands out nothing.
        assert_eq!(run_each::<true>(-1, true, |_, _| true), (true, 0, vec![]));
    }

    #[test]
    fn each_stops_at_a_halt_before_the_next_event_only_when_asked() {
        let halt_at_1 = |ring: &RingBuffer<u64>, s: i64| {
            if s == 1 {
                ring.state.set_halted();
            }
            false
        };
        assert_eq!(
            run_each::<true>(3, true, halt_at_1),
            (false, 2, vec![(0, false), (1, false)])
        );
        // Without the per-event check the batch runs to its end.
        assert_eq!(run_each::<false>(3, true, halt_at_1).1, 4);
        // Halted before the batch: nothing handed out, either way.
        let ring = ring(8);
        ring.state.set_halted();
        let mut stopped_at = 0;
        let handed = ring.slots().each::<false>(
            &mut readable(0, 3),
            3,
            true,
            &ring.state,
            &mut stopped_at,
            |_, _, _| panic!("nothing is handed out after a halt"),
        );
        assert!(!handed);
        assert_eq!(stopped_at, 0);
    }

    #[test]
    fn a_panic_leaves_stopped_at_on_the_event_that_panicked() {
        let ring = ring(8);
        let mut stopped_at = 0;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ring.slots().each::<false>(
                &mut readable(0, 5),
                5,
                true,
                &ring.state,
                &mut stopped_at,
                |_, sequence, _| {
                    assert!(sequence < 2, "fails at 2");
                    true
                },
            )
        }));
        assert!(outcome.is_err());
        assert_eq!(stopped_at, 2);
    }

    #[test]
    #[should_panic(expected = "published once")]
    fn a_claim_cannot_be_published_twice() {
        let ring = ring(4);
        let mut one = claim(0, 0);
        ring.write_and_publish(&mut one, |_, _| ());
        ring.write_and_publish(&mut one, |_, _| ());
    }

    #[test]
    fn concurrent_publish_and_read_across_wrap_around() {
        use crate::sequence::Sequence;
        use std::sync::Arc;
        let events: i64 = if cfg!(miri) { 200 } else { 100_000 };
        // One writer thread: stamps in order, so the reader's batches of up
        // to the ring's size take the one-stamp path whenever it is behind.
        let ring = Arc::new(RingBuffer::new(4, true, &mut || (0i64, 0i64)).unwrap());
        let consumed = Arc::new(Sequence::new());
        let reader = {
            let ring = Arc::clone(&ring);
            let consumed = Arc::clone(&consumed);
            std::thread::spawn(move || {
                let mut next = 0;
                while next < events {
                    let available = ring.available_up_to(next, (next + 3).min(events - 1), true);
                    if available < next {
                        std::thread::yield_now();
                        continue;
                    }
                    {
                        // The range ends with this block, before the release.
                        // SAFETY: every stamp up to `available` was acquired,
                        // and `consumed` stays below `next` until the set below.
                        let mut batch = unsafe { Readable::new(next, available) };
                        for (sequence, event) in read_all(&ring, &mut batch) {
                            assert_eq!(event, (sequence, sequence * 3));
                        }
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
            // SAFETY: the reader has passed `sequence - size`; one producer.
            let mut one = unsafe { Claim::new(sequence, sequence) };
            ring.write_and_publish(&mut one, |e, s| *e = (s, s * 3));
        }
        reader.join().expect("reader saw every event intact");
    }
}
