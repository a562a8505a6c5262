//! What `shutdown()` returns: per handler, what it handled and how it ended.

use std::any::Any;
use std::fmt;

/// What to do when a handler panics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// Stop the whole pipeline: every handler stops, a producer waiting for
    /// room gets [`PublishError::Halted`](crate::PublishError::Halted), and
    /// `shutdown()` reports the panic. The default: a handler whose state may
    /// be corrupt should not keep trading.
    #[default]
    Halt,
    /// Print the panic to stderr, count the event as skipped, and go on with
    /// the next event.
    LogAndSkip,
}

/// A handler panic, as reported by `shutdown()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerPanic {
    /// The handler's (thread's) name.
    pub handler: String,
    /// The sequence it was handling; `None` outside `on_event` (`on_start`,
    /// `on_shutdown`, `on_timeout`, or tickring's own code around them).
    pub sequence: Option<i64>,
    /// The panic message.
    pub message: String,
}

impl fmt::Display for HandlerPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sequence {
            Some(sequence) => write!(
                f,
                "handler '{}' panicked at sequence {}: {}",
                self.handler, sequence, self.message
            ),
            None => write!(f, "handler '{}' panicked: {}", self.handler, self.message),
        }
    }
}

/// How one handler ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerReport {
    /// The handler's (thread's) name.
    pub name: String,
    /// Events whose `on_event` returned normally.
    pub events_handled: u64,
    /// Events skipped because `on_event` panicked under
    /// [`PanicPolicy::LogAndSkip`].
    pub events_skipped: u64,
    /// The panic that stopped this handler (or, under `LogAndSkip`, the
    /// first one it skipped).
    pub panic: Option<HandlerPanic>,
}

impl HandlerReport {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            events_handled: 0,
            events_skipped: 0,
            panic: None,
        }
    }
}

/// What happened to every handler, in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
#[must_use = "the report says whether a handler panicked"]
pub struct ShutdownReport {
    /// One report per handler.
    pub handlers: Vec<HandlerReport>,
}

impl ShutdownReport {
    /// The first handler panic, if any handler panicked.
    #[must_use]
    pub fn first_panic(&self) -> Option<&HandlerPanic> {
        self.handlers
            .iter()
            .find_map(|report| report.panic.as_ref())
    }

    /// The report of the handler named `name`.
    pub fn handler(&self, name: &str) -> Option<&HandlerReport> {
        self.handlers.iter().find(|report| report.name == name)
    }
}

/// One line per handler: its name, the events it handled and skipped, and
/// its panic if it had one.
impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, report) in self.handlers.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}: {} handled, {} skipped",
                report.name, report.events_handled, report.events_skipped
            )?;
            if let Some(panic) = &report.panic {
                write!(f, "; {panic}")?;
            }
        }
        Ok(())
    }
}

/// The message of a panic payload (`&str` or `String`; anything else is named).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Drops a panic payload, even one whose `Drop` panics (that second payload
/// is leaked rather than dropped: nothing is left to catch it).
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload)));
    if let Err(second) = dropped {
        std::mem::forget(second);
    }
}
