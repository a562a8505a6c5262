//! The synchronization shim: every atomic, fence, lock, thread and spin hint
//! the crate uses comes through here, so a `--cfg tickring_loom` build runs the real
//! sequencer, barrier and wait-strategy code under loom's model checker (the
//! tokio `loom/` pattern). A normal build re-exports `std`.

#[cfg(not(tickring_loom))]
mod imp {
    pub(crate) mod sync {
        pub(crate) use std::sync::{mpsc, Condvar, Mutex};

        pub(crate) mod atomic {
            // `AtomicU64` serves the shared-memory ring (feature `shm`).
            #[allow(unused_imports)]
            pub(crate) use std::sync::atomic::{
                fence, AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering,
            };
        }
    }

    pub(crate) mod thread {
        pub(crate) use std::thread::{sleep, yield_now, Builder, JoinHandle};
    }

    pub(crate) mod hint {
        pub(crate) use std::hint::spin_loop;
    }

    pub(crate) mod cell {
        /// `std::cell::UnsafeCell` with loom's closure-scoped access API, so
        /// the same code compiles against both.
        #[derive(Debug)]
        pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

        impl<T> UnsafeCell<T> {
            pub(crate) const fn new(value: T) -> Self {
                Self(std::cell::UnsafeCell::new(value))
            }

            #[inline(always)]
            pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
                f(self.0.get())
            }

            #[inline(always)]
            pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
                f(self.0.get())
            }
        }
    }
}

#[cfg(tickring_loom)]
mod imp {
    pub(crate) mod sync {
        pub(crate) use loom::sync::{mpsc, Condvar, Mutex};

        pub(crate) mod atomic {
            #[allow(unused_imports)]
            pub(crate) use loom::sync::atomic::{
                fence, AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering,
            };
        }
    }

    pub(crate) mod thread {
        pub(crate) use loom::thread::{yield_now, Builder, JoinHandle};

        /// Loom has no clock: a sleep is a yield to the model's scheduler.
        pub(crate) fn sleep(_: std::time::Duration) {
            yield_now();
        }
    }

    pub(crate) mod hint {
        pub(crate) use loom::hint::spin_loop;
    }

    pub(crate) mod cell {
        pub(crate) use loom::cell::UnsafeCell;
    }
}

pub(crate) use imp::*;
