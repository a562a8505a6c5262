//! Small error types: what went wrong, and what to change.

use std::fmt;

use crate::ring_buffer::MAX_RING_SIZE;

/// A valid size near `size` to suggest, or `None` when `size` is valid (a
/// power of two in range) and so failed only to allocate.
fn suggested_ring_size(size: usize) -> Option<usize> {
    if size.is_power_of_two() && size <= MAX_RING_SIZE {
        return None;
    }
    Some(match size.checked_next_power_of_two() {
        Some(next) if next <= MAX_RING_SIZE => next.max(1),
        _ => MAX_RING_SIZE,
    })
}

/// A configuration that `build()` refuses. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The ring size is zero, not a power of two, or too large to allocate.
    InvalidRingSize {
        /// The size that was asked for.
        size: usize,
    },
    /// A mutable handler shares its stage with another handler.
    MutableHandlerWithSibling {
        /// The mutable handler's name.
        handler: String,
        /// The stage's index, counting from 0.
        stage: usize,
    },
    /// `handle_events_with_workers` was given no worker.
    EmptyWorkerPool {
        /// The stage's index, counting from 0.
        stage: usize,
    },
    /// An option that needs a thread (`pin_at_core`, `wait_timeout`) was
    /// given before `event_poller`: a poller runs on the caller's thread.
    OptionNotForPoller {
        /// The option's name.
        option: &'static str,
        /// The poller's name.
        poller: String,
    },
    /// `max_batch_size(0)`.
    InvalidMaxBatchSize {
        /// The handler's name.
        handler: String,
    },
    /// A thread name contains a NUL byte, which the OS cannot take.
    InvalidThreadName {
        /// The name given.
        name: String,
    },
    /// Two handlers were given the same thread name.
    DuplicateThreadName {
        /// The repeated name.
        name: String,
    },
    /// `pin_at_core` named a core this machine does not have.
    CoreNotFound {
        /// The handler's name.
        handler: String,
        /// The core asked for.
        core: usize,
        /// The cores that exist.
        available: Vec<usize>,
    },
    /// The operating system refused to pin a handler's thread.
    PinFailed {
        /// The handler's name.
        handler: String,
        /// The core asked for.
        core: usize,
    },
    /// The operating system refused to start a handler's thread.
    ThreadSpawn {
        /// The handler's name.
        handler: String,
        /// The operating system's message.
        message: String,
    },
    /// A handler panicked while being created or in `on_start`.
    HandlerStartPanicked {
        /// The handler's name.
        handler: String,
        /// The panic message.
        message: String,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRingSize { size } => {
                write!(f, "ring size {size} is invalid: ")?;
                match suggested_ring_size(*size) {
                    Some(suggestion) => write!(
                        f,
                        "use a power of two from 1 to {MAX_RING_SIZE} (e.g. {suggestion})"
                    ),
                    None => write!(
                        f,
                        "it could not be allocated; use a smaller power of two \
                         (at most {MAX_RING_SIZE}, and what fits in memory)"
                    ),
                }
            }
            Self::MutableHandlerWithSibling { handler, stage } => write!(
                f,
                "mutable handler '{handler}' shares stage {stage} with other handlers: \
                 a handler that writes events must be alone in its stage; put and_then() \
                 before and after it"
            ),
            Self::EmptyWorkerPool { stage } => write!(
                f,
                "the worker pool in stage {stage} has no worker: pass at least one handler \
                 to handle_events_with_workers"
            ),
            Self::OptionNotForPoller { option, poller } => write!(
                f,
                "{option}() does not apply to poller '{poller}': a poller runs on the \
                 thread that calls poll(); pin or time that thread yourself, and drop \
                 the {option}() before event_poller()"
            ),
            Self::InvalidMaxBatchSize { handler } => write!(
                f,
                "max_batch_size(0) for handler '{handler}': use at least 1"
            ),
            Self::InvalidThreadName { name } => write!(
                f,
                "thread name {name:?} contains a NUL byte, which the OS cannot take: \
                 choose a name without it"
            ),
            Self::DuplicateThreadName { name } => write!(
                f,
                "two handlers are named '{name}': give each thread_name a distinct name"
            ),
            Self::CoreNotFound {
                handler,
                core,
                available,
            } => write!(
                f,
                "handler '{handler}' is pinned to core {core}, which this machine does not \
                 have: use one of {available:?} or drop pin_at_core"
            ),
            Self::PinFailed { handler, core } => write!(
                f,
                "handler '{handler}' cannot be pinned to core {core}: it is outside the \
                 process's allowed CPU set (taskset, cgroups) or the operating system \
                 refused; use a core from allowed_cores() or drop pin_at_core"
            ),
            Self::ThreadSpawn { handler, message } => write!(
                f,
                "could not start the thread of handler '{handler}': {message}"
            ),
            Self::HandlerStartPanicked { handler, message } => write!(
                f,
                "handler '{handler}' panicked while starting (factory or on_start): {message}"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why `publish` or `batch_publish` (see [`EventProducer`](crate::EventProducer))
/// did not publish. Nothing was published; `fill` was not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The pipeline has halted (a handler panicked under
    /// [`PanicPolicy::Halt`](crate::PanicPolicy::Halt), or a tickring thread
    /// failed); nothing more will be consumed. Call `shutdown()` to learn
    /// what happened.
    Halted,
    /// The pipeline was closed ([`MultiProducer::close`](crate::MultiProducer::close)):
    /// it takes no more events.
    Closed,
    /// A batch larger than the ring was requested; it could never fit.
    BatchTooLarge {
        /// Events requested.
        requested: usize,
        /// The ring's size.
        capacity: usize,
    },
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Halted => write!(
                f,
                "the pipeline has halted (a handler panicked or a tickring thread failed); call shutdown() for the report"
            ),
            Self::Closed => write!(f, "the pipeline was closed: it takes no more events"),
            Self::BatchTooLarge {
                requested,
                capacity,
            } => write!(
                f,
                "a batch of {requested} events cannot fit in a ring of {capacity}: \
                 split it or build a larger ring"
            ),
        }
    }
}

impl std::error::Error for PublishError {}

/// Why a `try_publish` or `try_batch_publish` did not publish. Nothing was
/// written; `fill` was not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryPublishError {
    /// The ring has no room: the slowest gating handler is a whole ring behind.
    Full,
    /// The pipeline has halted; see [`PublishError::Halted`].
    Halted,
    /// The pipeline was closed; see [`PublishError::Closed`].
    Closed,
    /// The batch can never fit; see [`PublishError::BatchTooLarge`].
    BatchTooLarge {
        /// Events requested.
        requested: usize,
        /// The ring's size.
        capacity: usize,
    },
}

impl fmt::Display for TryPublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Full => write!(
                f,
                "the ring is full: the slowest handler is a whole ring behind"
            ),
            Self::Halted => PublishError::Halted.fmt(f),
            Self::Closed => PublishError::Closed.fmt(f),
            Self::BatchTooLarge {
                requested,
                capacity,
            } => PublishError::BatchTooLarge {
                requested,
                capacity,
            }
            .fmt(f),
        }
    }
}

impl std::error::Error for TryPublishError {}

/// Why a `publish_timeout` did not publish. Nothing was claimed or
/// published; `fill` was not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishTimeoutError {
    /// No slot freed up before the timeout.
    TimedOut,
    /// The pipeline has halted; see [`PublishError::Halted`].
    Halted,
    /// The pipeline was closed; see [`PublishError::Closed`].
    Closed,
}

impl fmt::Display for PublishTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut => write!(
                f,
                "no room in the ring before the timeout: nothing was published"
            ),
            Self::Halted => PublishError::Halted.fmt(f),
            Self::Closed => PublishError::Closed.fmt(f),
        }
    }
}

impl std::error::Error for PublishTimeoutError {}

/// Why [`pin_current_thread`](crate::pin_current_thread) did not pin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinError {
    /// The core is outside the process's allowed CPU set (taskset,
    /// cgroups), or this machine does not have it.
    NotAllowed {
        /// The core asked for.
        core: usize,
        /// The cores the process may use.
        allowed: Vec<usize>,
    },
    /// The operating system refused.
    Refused {
        /// The core asked for.
        core: usize,
    },
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAllowed { core, allowed } => write!(
                f,
                "core {core} is not one this process may run on: use one of {allowed:?}"
            ),
            Self::Refused { core } => {
                write!(
                    f,
                    "the operating system refused to pin this thread to core {core}"
                )
            }
        }
    }
}

impl std::error::Error for PinError {}

#[cfg(all(test, not(tickring_loom)))]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_change() {
        let message = BuildError::InvalidRingSize { size: 1000 }.to_string();
        assert!(message.contains("power of two"), "{message}");
        assert!(message.contains("1024"), "{message}");
        // A power of two too large to allocate: the suggestion is not itself.
        let size = 1 << 39;
        let message = BuildError::InvalidRingSize { size }.to_string();
        assert!(!message.contains(&format!("e.g. {size}")), "{message}");
        assert!(message.contains("smaller"), "{message}");
        let message = BuildError::InvalidRingSize { size: usize::MAX }.to_string();
        assert!(
            message.contains(&format!("e.g. {MAX_RING_SIZE}")),
            "{message}"
        );
        let message = BuildError::CoreNotFound {
            handler: "book".into(),
            core: 99,
            available: vec![0, 1],
        }
        .to_string();
        assert!(
            message.contains("core 99") && message.contains("[0, 1]"),
            "{message}"
        );
    }
}
