//! The synchronization shim: every atomic, fence and spin hint the crate uses
//! comes through here, so a `cfg(loom)` build can swap in loom's model-checked
//! versions without touching the algorithms (the tokio `loom/` pattern).
//!
//! Today this re-exports `std`; the loom branch lands with the loom models.

pub(crate) mod sync {
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicUsize, Ordering};
    }
}

pub(crate) mod hint {
    pub(crate) use std::hint::spin_loop;
}
