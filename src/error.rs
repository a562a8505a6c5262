//! Small error types: what went wrong, and what to change.

use std::fmt;

/// A configuration that `build()` refuses. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The ring size is zero, not a power of two, or too large to allocate.
    InvalidRingSize {
        /// The size that was asked for.
        size: usize,
    },
    /// `build()` was called with no handler at all.
    NoHandlers,
    /// `and_then()` opened a stage that received no handler.
    EmptyStage {
        /// The stage's index, counting from 0.
        stage: usize,
    },
    /// A mutable handler shares its stage with another handler.
    MutableHandlerWithSibling {
        /// The mutable handler's name.
        handler: String,
        /// The stage's index, counting from 0.
        stage: usize,
    },
    /// A per-handler option (`pin_at_core`, `thread_name`, ...) was given
    /// before any handler was added, so it applies to nothing.
    OptionWithoutHandler {
        /// The option's name.
        option: &'static str,
    },
    /// `handle_events_with_workers` was given no worker.
    EmptyWorkerPool {
        /// The stage's index, counting from 0.
        stage: usize,
    },
    /// An option that needs a thread (`pin_at_core`, `wait_timeout`) was
    /// given to a poller, which runs on the caller's thread.
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
            Self::InvalidRingSize { size } => write!(
                f,
                "ring size {size} is invalid: use a power of two of at least 1 \
                 (e.g. {}) that fits in memory",
                size.checked_next_power_of_two().unwrap_or(1 << 20).max(1)
            ),
            Self::NoHandlers => write!(
                f,
                "the pipeline has no handler: add one with handle_events_with before build()"
            ),
            Self::EmptyStage { stage } => write!(
                f,
                "stage {stage} has no handler: add one with handle_events_with after \
                 and_then(), or remove the trailing and_then()"
            ),
            Self::MutableHandlerWithSibling { handler, stage } => write!(
                f,
                "mutable handler '{handler}' shares stage {stage} with other handlers: \
                 a handler that writes events must be alone in its stage; put and_then() \
                 before and after it"
            ),
            Self::OptionWithoutHandler { option } => write!(
                f,
                "{option}() was called before any handler: call it after the \
                 handle_events_with it configures"
            ),
            Self::EmptyWorkerPool { stage } => write!(
                f,
                "the worker pool in stage {stage} has no worker: pass at least one handler \
                 to handle_events_with_workers"
            ),
            Self::OptionNotForPoller { option, poller } => write!(
                f,
                "{option}() does not apply to poller '{poller}': a poller runs on the \
                 thread that calls poll(); pin or time that thread yourself"
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
                "the operating system refused to pin handler '{handler}' to core {core}: \
                 check the process's CPU set (taskset, cgroups) or drop pin_at_core"
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

/// Why [`Producer::publish`](crate::Producer::publish) and its batch form
/// could not publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// A handler stopped the pipeline (it panicked under
    /// [`PanicPolicy::Halt`](crate::PanicPolicy::Halt)); nothing more will be
    /// consumed. Call `shutdown()` to learn what happened.
    Halted,
    /// A batch larger than the ring was requested; it could never fit.
    BatchTooLarge {
        /// Events requested.
        requested: usize,
        /// The ring's size.
        capacity: usize,
    },
    /// `publish_timeout` found no room in time. Nothing was claimed or
    /// published, and the closure was not called.
    TimedOut,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Halted => write!(
                f,
                "the pipeline has halted because a handler panicked; call shutdown() for the report"
            ),
            Self::BatchTooLarge {
                requested,
                capacity,
            } => write!(
                f,
                "a batch of {requested} events cannot fit in a ring of {capacity}: \
                 split it or build a larger ring"
            ),
            Self::TimedOut => write!(
                f,
                "no room in the ring before the timeout: nothing was published"
            ),
        }
    }
}

impl std::error::Error for PublishError {}

/// Why a `try_publish` did not publish. Nothing was written; the caller's
/// closure was not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryPublishError {
    /// The ring has no room: the slowest gating handler is a whole ring behind.
    Full,
    /// The pipeline has halted; see [`PublishError::Halted`].
    Halted,
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
        match self {
            Self::Full => write!(
                f,
                "the ring is full: the slowest handler is a whole ring behind"
            ),
            Self::Halted => PublishError::Halted.fmt(f),
            Self::BatchTooLarge {
                requested,
                capacity,
            } => PublishError::BatchTooLarge {
                requested: *requested,
                capacity: *capacity,
            }
            .fmt(f),
        }
    }
}

impl std::error::Error for TryPublishError {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_change() {
        let message = BuildError::InvalidRingSize { size: 1000 }.to_string();
        assert!(message.contains("power of two"), "{message}");
        assert!(message.contains("1024"), "{message}");
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
