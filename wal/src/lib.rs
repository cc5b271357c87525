//! `strata-wal`: Strata's foundation layer.
//!
//! - [`fs`]: the [`Fs`] trait all file I/O goes through, with [`StdFs`] (real) and
//!   [`FaultFs`] (simulated power loss and injected I/O errors, for tests).
//! - [`ids`]: newtypes for sequence numbers and segment ids.
//! - [`error`]: the typed [`Error`].
//!
//! The write-ahead log itself is in `record` (checksummed framing), `segment`
//! (segment files) and `log` (group commit, rotation, recovery, reading from a
//! sequence number onward). Its byte layout is specified in `docs/format/wal.md`.

pub mod codec;
pub mod error;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;

pub use error::{Error, Result};
pub use fs::{
    CrashMode, FaultFs, FaultKind, FaultOp, FaultRule, FileLock, FileMap, Fs, FsFile, StdFs,
};
pub use ids::{SegmentId, SeqCounter, SeqNo};

mod log;
pub mod record;
pub mod segment;

pub use log::{Commit, Queued, RecoverySummary, TornTail, Wal, WalOptions, WalReader, WalStats};
pub use record::WalRecord;
pub use segment::RecoveryMode;
