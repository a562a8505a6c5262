//! The counting global allocator: a tool installs it with
//!
//! ```text
//! #[global_allocator]
//! static ALLOCATOR: tickring_bench::alloc::Counting = tickring_bench::alloc::Counting;
//! ```
//!
//! and reads [`allocations`] (and [`frees`]) around a measured phase. The
//! tools use it, and so does `tests/no_alloc.rs` (contract line 4).
//! [`thread_allocations`] counts the calling thread's alone, so a rig can
//! meter its hot threads while the main thread (or another test) allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const`-initialised and without a destructor: reading it never
    // allocates, so the allocator itself may use it.
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn count() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    // `try_with`: a thread's last frees and allocations may come after its
    // locals are gone.
    let _ = THREAD_ALLOCATIONS.try_with(|mine| mine.set(mine.get() + 1));
}

/// The system allocator, counting allocations from every thread.
#[derive(Debug)]
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees hold; the counters are lock-free and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations so far (0 forever unless [`Counting`] is the global allocator).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Frees so far (0 forever unless [`Counting`] is the global allocator).
pub fn frees() -> u64 {
    FREES.load(Ordering::Relaxed)
}

/// Allocations so far by the calling thread (0 forever unless [`Counting`]
/// is the global allocator).
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library's tests install [`Counting`]: a thread sees its own
    /// allocations and not another's.
    #[test]
    fn each_thread_counts_its_own() {
        let before = (allocations(), thread_allocations());
        let kept = std::hint::black_box(vec![1u8; 64]);
        assert!(thread_allocations() > before.1 && allocations() > before.0);
        let mine = thread_allocations();
        let theirs = std::thread::spawn(|| {
            let before = thread_allocations();
            (0..100).for_each(|byte| drop(std::hint::black_box(vec![byte as u8; 64])));
            thread_allocations() - before
        })
        .join()
        .expect("the thread runs");
        // Spawning allocates a little here; the hundred vectors count there.
        assert_eq!(theirs, 100);
        assert!(thread_allocations() - mine < 100);
        drop(kept);
    }
}
