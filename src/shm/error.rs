//! What can go wrong creating, opening and consuming a shared ring.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a shared ring could not be created or opened (or joined).
#[derive(Debug)]
#[non_exhaustive]
pub enum ShmError {
    /// A system call on the file failed: it does not exist, permission was
    /// denied, the disk is full, `mlock` is not allowed...
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`open`, `create`, `mmap`, `mlock`, ...).
        operation: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// `create` found a file at the path (set `ShmOptions::replace` to
    /// replace it).
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// The file is shorter than the ring it describes (or than a header).
    TooSmall {
        /// The file's length.
        len: u64,
        /// What the ring needs.
        needed: u64,
    },
    /// The file's magic is zero: not (yet) a ring, or zeroed.
    NotInitialized,
    /// The file is not a tickring ring.
    BadMagic {
        /// The first word found.
        found: u64,
    },
    /// The ring was written by another layout version of tickring.
    LayoutVersion {
        /// The version in the file.
        found: u64,
        /// This build's version.
        expected: u64,
    },
    /// The ring carries another event type (schema name or version).
    Schema {
        /// The schema name in the file.
        found_name: String,
        /// The schema version in the file.
        found_version: u64,
        /// This process's event type's name.
        expected_name: &'static str,
        /// This process's event type's version.
        expected_version: u32,
    },
    /// The ring's events have another size.
    EventSize {
        /// In the file.
        found: u64,
        /// `size_of` of this process's event type.
        expected: usize,
    },
    /// The ring's events have another alignment.
    EventAlign {
        /// In the file.
        found: u64,
        /// `align_of` of this process's event type.
        expected: usize,
    },
    /// The ring's capacity is not the one asked for.
    Capacity {
        /// In the file.
        found: u64,
        /// What the opener expected.
        expected: usize,
    },
    /// A header field is out of range or disagrees with the others.
    Corrupt {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// An option is out of range (capacity 0 or not a power of two, too
    /// many consumers, a schema name too long, an event too large...).
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What to change.
        reason: String,
    },
    /// Every consumer entry is taken.
    TableFull {
        /// The ring's number of entries.
        max_consumers: usize,
    },
    /// A join at an explicit sequence that the ring no longer holds.
    NotInRing {
        /// The sequence asked for.
        requested: i64,
        /// The oldest sequence the ring still holds there.
        oldest: i64,
    },
    /// A join at an explicit sequence waited for the producer to take the
    /// new consumer into its gate, and it did not within the timeout (it
    /// publishes nothing, or it died).
    JoinTimeout,
}

impl ShmError {
    pub(crate) fn io(path: &Path, operation: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            operation,
            source,
        }
    }

    pub(crate) fn option(option: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidOption {
            option,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io {
                path,
                operation,
                source,
            } => write!(f, "{operation} {}: {source}", path.display()),
            Self::AlreadyExists { path } => write!(
                f,
                "{} already exists; remove it or set ShmOptions::replace(true)",
                path.display()
            ),
            Self::TooSmall { len, needed } => write!(
                f,
                "the file is {len} bytes, the ring needs {needed}: truncated or not a ring"
            ),
            Self::NotInitialized => write!(f, "the file is not an initialized ring (magic is zero)"),
            Self::BadMagic { found } => {
                write!(f, "not a tickring ring (magic {found:#018x})")
            }
            Self::LayoutVersion { found, expected } => write!(
                f,
                "the ring has layout version {found}, this tickring reads version {expected}"
            ),
            Self::Schema {
                found_name,
                found_version,
                expected_name,
                expected_version,
            } => write!(
                f,
                "the ring carries `{found_name}` v{found_version}, this process's event type is `{expected_name}` v{expected_version}"
            ),
            Self::EventSize { found, expected } => write!(
                f,
                "the ring's events are {found} bytes, this process's event type is {expected}"
            ),
            Self::EventAlign { found, expected } => write!(
                f,
                "the ring's events are aligned to {found}, this process's event type to {expected}"
            ),
            Self::Capacity { found, expected } => write!(
                f,
                "the ring holds {found} events, the opener expected {expected}"
            ),
            Self::Corrupt { field, value } => {
                write!(f, "corrupt ring header: {field} = {value}")
            }
            Self::InvalidOption { option, reason } => write!(f, "{option}: {reason}"),
            Self::TableFull { max_consumers } => write!(
                f,
                "all {max_consumers} consumer entries are taken; create the ring with more"
            ),
            Self::NotInRing { requested, oldest } => write!(
                f,
                "sequence {requested} is no longer in the ring (the oldest there is {oldest})"
            ),
            Self::JoinTimeout => write!(
                f,
                "the producer did not take the new consumer into its gate in time"
            ),
        }
    }
}

impl std::error::Error for ShmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a consumer stopped before the producer closed the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The producer's heartbeat stopped for longer than the liveness
    /// timeout without a close: it died. Every event it fully published
    /// before was handled.
    ProducerDead {
        /// The last sequence handled.
        last_handled: i64,
    },
    /// The producer evicted this consumer (its heartbeat stopped for
    /// longer than the producer's timeout, e.g. the process was stopped):
    /// the producer no longer waits for it, so events after `last_handled`
    /// may be gone. Open the ring again to rejoin at the cursor.
    Evicted {
        /// The last sequence handled.
        last_handled: i64,
    },
}

impl fmt::Display for ConsumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProducerDead { last_handled } => write!(
                f,
                "the producer's heartbeat stopped (dead) after sequence {last_handled}"
            ),
            Self::Evicted { last_handled } => write!(
                f,
                "evicted by the producer (heartbeat too late) after sequence {last_handled}"
            ),
        }
    }
}

impl std::error::Error for ConsumeError {}
