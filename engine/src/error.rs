//! The engine's typed [`Error`].
//!
//! It wraps the errors of `strata-wal` and adds the engine's own. Corruption always
//! names the file and the byte offset; `Display` is written for a person and says
//! what to do next.

use std::fmt;
use std::io;
use std::path::PathBuf;

use strata_wal::SeqNo;

/// Result alias of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    Io {
        /// What was being done, e.g. `"fsync"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Stored bytes failed a check (checksum, magic, length, ordering).
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset in `file` where the damage was found.
        offset: u64,
        /// What was expected and what was found.
        reason: String,
    },
    /// An earlier write or fsync failed; the database refuses writes until reopened.
    Poisoned {
        /// The failure that poisoned the database.
        cause: String,
    },
    /// The database directory is open elsewhere.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An argument or option was rejected.
    InvalidArgument(String),
    /// No keyspace has this name.
    UnknownKeyspace(String),
    /// A keyspace with this name already exists.
    KeyspaceExists(String),
    /// The database was closed.
    Closed,
    /// A bug in Strata: an internal check failed. The database refuses writes until
    /// reopened; please report the message.
    Internal(String),
    /// A read at a past sequence number, or a change stream, asked for history that
    /// is no longer (or never was) kept.
    HistoryUnavailable {
        /// What does not hold it: a keyspace, every keyspace, the WAL.
        scope: String,
        /// The sequence number asked for.
        requested: SeqNo,
        /// The oldest sequence number `scope` still holds.
        oldest: SeqNo,
    },
    /// A read at a wall-clock time the database has no record of.
    TimeUnavailable {
        /// The time asked for, in milliseconds since the Unix epoch.
        requested_unix_millis: u64,
        /// The oldest time recorded, if any.
        oldest_unix_millis: Option<u64>,
        /// The time of the request.
        now_unix_millis: u64,
    },
    /// A replica was given a change batch that does not follow what it applied:
    /// batches in between are missing.
    ReplicationGap {
        /// The last sequence number the replica applied.
        applied: SeqNo,
        /// The batch covers changes after this sequence number.
        batch_since: SeqNo,
    },
}

impl Error {
    /// True when stored data failed a check.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    /// Builds an [`Error::Corruption`].
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The operating-system error kind, for I/O errors.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

impl From<strata_wal::Error> for Error {
    fn from(e: strata_wal::Error) -> Self {
        match e {
            strata_wal::Error::Io { op, path, source } => Error::Io { op, path, source },
            strata_wal::Error::Corruption {
                file,
                offset,
                reason,
            } => Error::Corruption {
                file,
                offset,
                reason,
            },
            strata_wal::Error::Poisoned { cause } => Error::Poisoned { cause },
            strata_wal::Error::Locked { path } => Error::Locked { path },
            strata_wal::Error::InvalidArgument(m) => Error::InvalidArgument(m),
            strata_wal::Error::Closed => Error::Closed,
            other => Error::InvalidArgument(other.to_string()),
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
                 after it was written; restore the database from a backup or checkpoint.",
                file.display()
            ),
            Error::Poisoned { cause } => write!(
                f,
                "writes refused: an earlier write or fsync failed ({cause}). Fix the cause \
                 and reopen the database; every acknowledged write is recovered."
            ),
            Error::Locked { path } => write!(
                f,
                "{} is locked: the database is already open in this or another process. \
                 Close it there first.",
                path.display()
            ),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::UnknownKeyspace(name) => write!(
                f,
                "no keyspace named {name:?}; create it with Db::create_keyspace first"
            ),
            Error::KeyspaceExists(name) => write!(f, "a keyspace named {name:?} already exists"),
            Error::Closed => write!(f, "the database is closed; open it again to continue"),
            Error::HistoryUnavailable {
                scope,
                requested,
                oldest,
            } => write!(
                f,
                "history at sequence number {requested} is not held by {scope}: the oldest \
                 it holds is {oldest}. Widen the history window (KeyspaceOptions::\
                 history_seqs / history_age) or the WAL retention (Options::\
                 wal_retention_bytes / wal_retention_age), or re-seed from a checkpoint"
            ),
            Error::TimeUnavailable {
                requested_unix_millis,
                oldest_unix_millis,
                now_unix_millis,
            } => match oldest_unix_millis {
                Some(oldest) if requested_unix_millis <= now_unix_millis => write!(
                    f,
                    "no record of the database at {requested_unix_millis} ms since the Unix \
                     epoch: the oldest time recorded is {oldest} ms"
                ),
                _ if requested_unix_millis > now_unix_millis => write!(
                    f,
                    "{requested_unix_millis} ms since the Unix epoch is in the future (now \
                     is {now_unix_millis} ms)"
                ),
                _ => write!(f, "the database has no time record yet"),
            },
            Error::ReplicationGap {
                applied,
                batch_since,
            } => write!(
                f,
                "replication gap: the replica applied up to sequence number {applied} but \
                 the batch follows {batch_since}; ask the primary for \
                 changes_since({applied}), or re-seed from a checkpoint if it no longer \
                 holds them"
            ),
            Error::Internal(m) => write!(
                f,
                "internal error (a bug in Strata; please report it): {m}. The database \
                 refuses writes until reopened"
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
