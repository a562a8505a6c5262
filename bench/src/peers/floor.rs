//! The floor ring: a minimal SPSC ring in tickring's layout, each slot one
//! 64-byte line holding a sequence stamp and the value, so a consumer's wait
//! and its read are one cache-line transfer. Nothing else: no gating graph,
//! no batches, no shutdown protocol beyond a closed flag. What a hop costs
//! with it is what a hop costs on this machine.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::{Link, Message, Recv, Rx, System, Tx};

#[repr(align(64))]
struct Slot<T> {
    /// The sequence whose value the slot holds (published with `Release`).
    stamp: AtomicI64,
    value: UnsafeCell<T>,
}

struct Ring<T> {
    slots: Box<[Slot<T>]>,
    mask: i64,
    /// The next sequence the consumer has not taken.
    consumed: CachePadded<AtomicI64>,
    closed: AtomicBool,
}

// SAFETY: a slot's value is written only by the one `FloorTx`, and only when
// the consumer has moved past it (`consumed`, acquire); read only by the one
// `FloorRx`, after its stamp says the write finished (acquire). Values are
// `Send`, so they may be read on the other thread.
unsafe impl<T: Send> Sync for Ring<T> {}

/// The sending end of a floor ring.
pub struct FloorTx<T> {
    ring: Arc<Ring<T>>,
    next: i64,
    /// Sequences below this have room (the consumer's position, cached).
    limit: i64,
}

/// The receiving end of a floor ring.
pub struct FloorRx<T> {
    ring: Arc<Ring<T>>,
    next: i64,
}

/// The floor ring as a [`Link`].
#[derive(Debug)]
pub struct Floor;

impl Link for Floor {
    const SYSTEM: System = System::Floor;
    type Tx<T: Message> = FloorTx<T>;
    type Rx<T: Message> = FloorRx<T>;
    fn pair<T: Message>(capacity: usize) -> (FloorTx<T>, FloorRx<T>) {
        assert!(
            capacity.is_power_of_two(),
            "a floor ring's size is a power of two"
        );
        let slots = (0..capacity)
            .map(|_| Slot {
                stamp: AtomicI64::new(-1),
                value: UnsafeCell::new(T::default()),
            })
            .collect();
        let ring = Arc::new(Ring {
            slots,
            mask: capacity as i64 - 1,
            consumed: CachePadded::new(AtomicI64::new(0)),
            closed: AtomicBool::new(false),
        });
        let tx = FloorTx {
            ring: Arc::clone(&ring),
            next: 0,
            limit: capacity as i64,
        };
        (tx, FloorRx { ring, next: 0 })
    }
}

impl<T: Message> Tx<T> for FloorTx<T> {
    #[inline]
    fn try_send(&mut self, value: T) -> Result<(), T> {
        let ring = &*self.ring;
        if self.next >= self.limit {
            self.limit = ring.consumed.load(Ordering::Acquire) + ring.slots.len() as i64;
            if self.next >= self.limit {
                return Err(value);
            }
        }
        let slot = &ring.slots[(self.next & ring.mask) as usize];
        // SAFETY: see `Ring`'s `Sync`: the consumer has taken this slot's
        // previous value (`consumed` > next - capacity) and reads it again
        // only after the stamp below.
        unsafe { *slot.value.get() = value };
        slot.stamp.store(self.next, Ordering::Release);
        self.next += 1;
        Ok(())
    }
}

impl<T> Drop for FloorTx<T> {
    fn drop(&mut self) {
        self.ring.closed.store(true, Ordering::Release);
    }
}

impl<T: Message> Rx<T> for FloorRx<T> {
    #[inline]
    fn try_recv(&mut self) -> Recv<T> {
        let ring = &*self.ring;
        let slot = &ring.slots[(self.next & ring.mask) as usize];
        if slot.stamp.load(Ordering::Acquire) != self.next {
            // Closed is read before one more look, so a last value sent
            // before the close is not missed.
            if !ring.closed.load(Ordering::Acquire)
                || slot.stamp.load(Ordering::Acquire) == self.next
            {
                return Recv::Empty;
            }
            return Recv::Closed;
        }
        // SAFETY: the stamp (acquire) says the producer finished writing
        // this value, and it will not write the slot again before `consumed`
        // passes it.
        let value = unsafe { *slot.value.get() };
        self.next += 1;
        ring.consumed.store(self.next, Ordering::Release);
        Recv::Item(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{recv, send};
    use crate::place::Waiting;

    #[test]
    fn floor_ring_delivers_in_order_across_wraps_then_closes() {
        let (mut tx, mut rx) = Floor::pair::<u64>(4);
        let sender = std::thread::spawn(move || {
            (0..10_000).for_each(|value| send(&mut tx, value, Waiting::Yield))
        });
        for expected in 0..10_000 {
            assert_eq!(recv(&mut rx, Waiting::Yield), Some(expected));
        }
        sender.join().unwrap();
        assert_eq!(recv(&mut rx, Waiting::Yield), None);
    }
}
