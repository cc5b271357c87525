//! `strata`: an embeddable LSM-tree key-value store for AI-agent hosts.
//!
//! A [`Db`] holds named [`Keyspace`]s (column families), each its own LSM tree with its
//! own memtable, options and durability, sharing one write-ahead log, one sequence
//! space, one manifest and one block cache. Writes get a global, monotonic sequence
//! number; reads run against consistent snapshots; a [`WriteBatch`] spanning keyspaces
//! applies atomically.
//!
//! ```
//! use strata::{Db, KeyspaceOptions, Options, WriteBatch};
//!
//! # fn main() -> strata::Result<()> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let db = Db::open(dir.path(), Options::default())?;
//! let state = db.keyspace_or_create("agent_state", KeyspaceOptions::default())?;
//! state.put("agent-7", "idle")?;
//! assert_eq!(state.get("agent-7")?.as_deref(), Some(&b"idle"[..]));
//!
//! let mut batch = WriteBatch::new();
//! batch.put(&state, "agent-8", "planning");
//! batch.delete(&state, "agent-7");
//! db.write(batch)?; // atomic
//! let keys: Vec<_> = state.iter().map(|kv| kv.map(|(k, _)| k)).collect::<strata::Result<_>>()?;
//! assert_eq!(keys, vec!["agent-8"]);
//! db.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! Module map: `memtable`, `table` (sorted tables), `cache` (block cache), `manifest`
//! and `version` (what tables exist), `db` (open, recovery, read and write paths),
//! `background` (flush and compaction), `value_log` (key-value separation and its
//! garbage collection), `db_iter` (user iterators), `stats`, `history` (time marks,
//! retention windows, reads in the past), `checkpoint` (checkpoints, backups,
//! restores), `changes` (the change stream and replicas), `verify` (offline checks).

mod background;
pub mod batch;
pub mod cache;
pub mod changes;
pub mod checkpoint;
mod compaction;
pub mod compaction_filter;
mod db;
mod db_iter;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
pub mod ids;
pub mod iter;
pub mod key;
pub mod manifest;
pub mod memtable;
mod merge;
pub mod options;
mod rate_limit;
pub mod snapshot;
pub mod stats;
pub mod table;
pub mod value_log;
pub mod verify;
pub mod version;

pub use batch::WriteBatch;
pub use bytes::Bytes;
pub use changes::{Applied, Change, ChangeBatch, ChangeOp, ChangeStream, Replica};
pub use checkpoint::CheckpointInfo;
pub use compaction_filter::{CompactionFilter, FilterDecision, TtlFilter};
pub use db::{Db, DbBuilder, Keyspace, Snapshot, DEFAULT_KEYSPACE};
pub use db_iter::{Cursor, Iter};
pub use error::{Error, Result};
pub use options::{
    CompactionStyle, Compression, Durability, KeyspaceOptions, Options, WriteOptions,
};
pub use stats::{KeyspaceStats, LevelStats, SegmentStats, Stats};
pub use strata_wal::{FaultFs, Fs, RecoveryMode, SeqNo, StdFs};
pub use value_log::GcReport;

/// The README's quick start, compiled and run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
