//! The error type of `strata-wal`.
//!
//! Every failure is typed. Corruption always names the file and the byte offset where
//! the damage was found, so an operator can look at it; I/O errors name the operation
//! and the path. `Display` is written for a person and says what to do next.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout `strata-wal`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the file layer and the write-ahead log.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    Io {
        /// What was being done, e.g. `"fsync"` or `"rename"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error the operating system returned.
        source: io::Error,
    },
    /// Stored bytes failed a check: a checksum, a magic number, a length, an ordering.
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset inside `file` where the damage starts.
        offset: u64,
        /// What was expected and what was found.
        reason: String,
    },
    /// An earlier write or fsync failed, so the log refuses every later write: nothing
    /// can be acknowledged after a failure whose effect on disk is unknown.
    Poisoned {
        /// The failure that poisoned the log.
        cause: String,
    },
    /// The directory is locked by another open instance (in this or another process).
    Locked {
        /// The lock file that is held.
        path: PathBuf,
    },
    /// An argument or option was rejected.
    InvalidArgument(String),
    /// The log or database was closed; no further operations are accepted.
    Closed,
    /// Sequence numbers are used up: assigning `requested` more would pass the largest
    /// assignable one (`2^56 - 1`). Nothing was written.
    SeqExhausted {
        /// How many sequence numbers were asked for.
        requested: u64,
    },
}

impl Error {
    /// True for [`Error::Corruption`]: stored data failed a check.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Corruption`].
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// The operating-system error kind, when this is an I/O error.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(
                f,
                "I/O error during {op} on {}: {source}. Check that the disk is present, \
                 writable and not full, then reopen the database.",
                path.display()
            ),
            Error::Corruption {
                file,
                offset,
                reason,
            } => write!(
                f,
                "corruption in {} at byte offset {offset}: {reason}. The file was damaged \
                 after it was written; restore it from a backup or open in salvage mode \
                 to skip the damaged records.",
                file.display()
            ),
            Error::Poisoned { cause } => write!(
                f,
                "writes refused: an earlier write or fsync failed ({cause}), so nothing \
                 can be acknowledged safely. Fix the cause and reopen the database; \
                 recovery keeps every acknowledged write."
            ),
            Error::Locked { path } => write!(
                f,
                "{} is locked: another process or handle has this directory open. Close \
                 it first; two writers would corrupt each other.",
                path.display()
            ),
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::Closed => write!(f, "the log is closed; reopen it to continue"),
            Error::SeqExhausted { requested } => write!(
                f,
                "sequence numbers exhausted: {requested} more would pass the largest \
                 assignable sequence number (2^56 - 1), so nothing was written. Copy the \
                 data into a new database to continue writing."
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
