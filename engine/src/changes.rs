//! The change stream and replicas.
//!
//! [`Db::changes_since`] reads logged write batches back from the WAL, in sequence
//! order, each whole, with its sequence numbers and keyspace names. It yields only
//! what the WAL has made durable (`Sync` writes at once, `Buffered` ones after the
//! next background sync), so a replica is never ahead of what the primary would
//! recover after a power loss. WAL-bypass writes are never logged and never streamed.
//! Keyspace creation and drops are not streamed either: a replica creates a keyspace
//! (with default options) the first time a batch names it.
//!
//! Each batch carries `since`, the stream position before it: no logged write lies
//! between `since` and the batch's first sequence number (numbers in between went to
//! bypass writes). A [`Replica`] applies a batch only when its `since` is at or below
//! what it applied, skips batches it already has, and reports any other as a gap, so
//! duplicated and reordered deliveries converge and a missing batch is never
//! silently skipped. Its position is stored in the replica database in the same
//! atomic batch as the data.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use strata_wal::{RecoveryMode, SeqNo, WalReader};

use crate::batch::{decode_entries, BatchOp};
use crate::db::{Db, DbHandle, WAL_DIR};
use crate::error::{Error, Result};
use crate::ids::KeyspaceId;
use crate::{Keyspace, KeyspaceOptions, WriteBatch};

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// Sets `key` to `value`.
    Put,
    /// Deletes `key`.
    Delete,
    /// Deletes every key starting with `key`.
    DeletePrefix,
}

/// One entry of a logged write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The keyspace written.
    pub keyspace: String,
    /// What was done.
    pub op: ChangeOp,
    /// The key (the prefix for [`ChangeOp::DeletePrefix`]).
    pub key: Bytes,
    /// The value (empty unless [`ChangeOp::Put`]).
    pub value: Bytes,
}

/// One logged write batch, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The stream position before this batch: no logged write lies in
    /// `since + 1 .. first`.
    pub since: SeqNo,
    /// The sequence number of the batch's first entry.
    pub first: SeqNo,
    /// The sequence number of its last entry: the stream position after it.
    pub last: SeqNo,
    /// The entries, in order. Entries of keyspaces dropped since are left out.
    pub changes: Vec<Change>,
}

/// Logged write batches after a sequence number, oldest first. An iterator of
/// `Result<ChangeBatch>`; it ends at what the WAL had made durable when it was
/// created (call [`Db::changes_since`] again with the last batch's `last` to go on).
pub struct ChangeStream {
    db: Arc<DbHandle>,
    reader: WalReader,
    position: SeqNo,
    until: SeqNo,
    names: HashMap<KeyspaceId, String>,
    wal_dir: PathBuf,
    done: bool,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("position", &self.position)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Every logged write batch after sequence number `since`, in order, while the
    /// WAL still holds it (see `Options::wal_retention_bytes` and
    /// `wal_retention_age` to keep more for consumers). Start from 0, from a
    /// checkpoint's `seqno`, or from the `last` of the previous batch received.
    ///
    /// # Errors
    /// [`Error::HistoryUnavailable`] naming the oldest sequence number the WAL can
    /// stream after, when batches after `since` were deleted already (re-seed the
    /// consumer from a checkpoint); I/O errors.
    pub fn changes_since(&self, since: SeqNo) -> Result<ChangeStream> {
        let inner = self.inner();
        if inner.is_closed() {
            return Err(Error::Closed);
        }
        let until = inner.wal.synced_seq();
        let wal_dir = inner.path.join(WAL_DIR);
        // A segment deleted while the reader lists the directory: the log moved on
        // under us; look again (the check below then tells a real gap).
        let open = || {
            WalReader::open(
                Arc::clone(&inner.fs),
                &wal_dir,
                since.plus(1),
                RecoveryMode::Strict,
            )
        };
        let reader = match open() {
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => open()?,
            other => other?,
        };
        check_held(inner.fs.as_ref(), &wal_dir, since)?;
        Ok(ChangeStream {
            db: Arc::clone(&self.handle),
            reader,
            position: since,
            until,
            names: keyspace_names(self),
            wal_dir,
            done: false,
        })
    }
}

/// Fails unless the WAL in `wal_dir` holds every logged batch after `since`: the
/// oldest segment starts at or before `since + 1` (earlier segments held only
/// smaller sequence numbers).
fn check_held(fs: &dyn strata_wal::Fs, wal_dir: &std::path::Path, since: SeqNo) -> Result<()> {
    match WalReader::oldest_available(fs, wal_dir)? {
        Some(oldest) if oldest > since.plus(1) => Err(Error::HistoryUnavailable {
            scope: "the WAL".into(),
            requested: since,
            oldest: oldest.prev(),
        }),
        _ => Ok(()),
    }
}

fn keyspace_names(db: &Db) -> HashMap<KeyspaceId, String> {
    let catalog = db.inner().catalog.read();
    catalog
        .by_id
        .iter()
        .map(|(id, ks)| (*id, ks.name.clone()))
        .collect()
}

impl ChangeStream {
    /// The position after the last batch yielded (where the next call to
    /// [`Db::changes_since`] should start).
    pub fn position(&self) -> SeqNo {
        self.position
    }

    fn next_batch(&mut self) -> Result<Option<ChangeBatch>> {
        let Some(record) = self.reader.next().transpose().map_err(|e| self.lost(e))? else {
            return Ok(None);
        };
        if record.last_seq() > self.until {
            return Ok(None);
        }
        let entries = decode_entries(&record.payload).ok_or_else(|| {
            Error::corruption(
                &self.wal_dir,
                record.seq.0,
                format!(
                    "the write batch logged at sequence {} does not decode",
                    record.seq
                ),
            )
        })?;
        let mut changes = Vec::with_capacity(entries.len());
        for e in entries {
            if !self.names.contains_key(&e.keyspace) {
                // Created after the stream began (or dropped since).
                let db = Db {
                    handle: Arc::clone(&self.db),
                };
                self.names = keyspace_names(&db);
            }
            let Some(name) = self.names.get(&e.keyspace) else {
                continue;
            };
            changes.push(Change {
                keyspace: name.clone(),
                op: change_op(e.op),
                key: Bytes::copy_from_slice(e.key),
                value: Bytes::copy_from_slice(e.value),
            });
        }
        let batch = ChangeBatch {
            since: self.position,
            first: record.seq,
            last: record.last_seq(),
            changes,
        };
        self.position = batch.last;
        Ok(Some(batch))
    }

    /// A segment deleted under the reader means the consumer fell behind.
    fn lost(&self, e: strata_wal::Error) -> Error {
        if e.io_kind() == Some(std::io::ErrorKind::NotFound) {
            let fs = self.db.inner.fs.as_ref();
            if let Err(gone) = check_held(fs, &self.wal_dir, self.position) {
                return gone;
            }
        }
        e.into()
    }
}

impl Iterator for ChangeStream {
    type Item = Result<ChangeBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_batch() {
            Ok(Some(batch)) => Some(Ok(batch)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One entry of a WAL record as logged: the keyspace by id (tools that read a WAL
/// without the manifest, such as `strata dump-wal`, have no names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEntry {
    /// What the entry does.
    pub op: ChangeOp,
    /// The keyspace id.
    pub keyspace: KeyspaceId,
    /// The key (or prefix).
    pub key: Bytes,
    /// The value (empty unless a put).
    pub value: Bytes,
}

/// Decodes the payload of a WAL record written by the engine; `None` if it is
/// malformed.
pub fn decode_logged_entries(payload: &[u8]) -> Option<Vec<LoggedEntry>> {
    let entries = decode_entries(payload)?;
    Some(
        entries
            .into_iter()
            .map(|e| LoggedEntry {
                op: change_op(e.op),
                keyspace: e.keyspace,
                key: Bytes::copy_from_slice(e.key),
                value: Bytes::copy_from_slice(e.value),
            })
            .collect(),
    )
}

fn change_op(op: BatchOp) -> ChangeOp {
    match op {
        BatchOp::Put => ChangeOp::Put,
        BatchOp::Delete => ChangeOp::Delete,
        BatchOp::DeletePrefix => ChangeOp::DeletePrefix,
    }
}

/// Name of the keyspace where a replica keeps its position.
pub const REPLICATION_KEYSPACE: &str = "__strata_replication";
const POSITION_KEY: &[u8] = b"applied_seqno";

/// What [`Replica::apply`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The batch was written.
    Applied,
    /// The replica had it already; nothing was written.
    Duplicate,
}

/// The follower side of replication: applies a primary's [`ChangeBatch`]es to a
/// database, idempotently and in order.
#[derive(Debug, Clone)]
pub struct Replica {
    db: Db,
    position_ks: Keyspace,
    applied: SeqNo,
}

impl Replica {
    /// Starts replicating into `db` from the primary's sequence number `applied`:
    /// 0 for an empty database fed from the start of the primary's log, or the
    /// `seqno` of the checkpoint `db` was opened from. Records the position.
    ///
    /// # Errors
    /// I/O errors writing the position.
    pub fn seed(db: &Db, applied: SeqNo) -> Result<Replica> {
        let position_ks =
            db.keyspace_or_create(REPLICATION_KEYSPACE, KeyspaceOptions::default())?;
        position_ks.put_opt(
            POSITION_KEY,
            applied.0.to_le_bytes(),
            &crate::WriteOptions::sync(),
        )?;
        Ok(Replica {
            db: db.clone(),
            position_ks,
            applied,
        })
    }

    /// Resumes replicating into `db` from the position it recorded.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `db` was never seeded; read errors.
    pub fn open(db: &Db) -> Result<Replica> {
        let not_seeded = || {
            Error::InvalidArgument(
                "this database is not a replica yet: call Replica::seed with the sequence \
                 number it holds (0, or the seqno of the checkpoint it was opened from)"
                    .into(),
            )
        };
        let position_ks = db
            .keyspace(REPLICATION_KEYSPACE)
            .map_err(|_| not_seeded())?;
        let bytes = position_ks.get(POSITION_KEY)?.ok_or_else(not_seeded)?;
        let raw: [u8; 8] = bytes[..].try_into().map_err(|_| {
            Error::InvalidArgument(format!(
                "the replica position in keyspace {REPLICATION_KEYSPACE:?} is {} bytes, not 8",
                bytes.len()
            ))
        })?;
        Ok(Replica {
            db: db.clone(),
            position_ks,
            applied: SeqNo(u64::from_le_bytes(raw)),
        })
    }

    /// The last primary sequence number applied: ask the primary for
    /// `changes_since(applied())`.
    pub fn applied(&self) -> SeqNo {
        self.applied
    }

    /// The replica database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Applies `batch` atomically together with the new position, unless it was
    /// applied already.
    ///
    /// # Errors
    /// [`Error::ReplicationGap`] when batches between the position and `batch` are
    /// missing (nothing is written; fetch `changes_since(applied())` again);
    /// [`Error::InvalidArgument`] for a batch the position falls inside of; write
    /// errors (a replica keyspace that is WAL-bypass cannot take a batch with the
    /// position and is refused).
    pub fn apply(&mut self, batch: &ChangeBatch) -> Result<Applied> {
        if batch.last <= self.applied {
            return Ok(Applied::Duplicate);
        }
        if batch.since > self.applied {
            return Err(Error::ReplicationGap {
                applied: self.applied,
                batch_since: batch.since,
            });
        }
        if batch.first <= self.applied {
            return Err(Error::InvalidArgument(format!(
                "the replica position {} falls inside the batch {}..={}",
                self.applied, batch.first, batch.last
            )));
        }
        let mut write = WriteBatch::new();
        let mut keyspaces: HashMap<&str, Keyspace> = HashMap::new();
        for change in &batch.changes {
            if !keyspaces.contains_key(change.keyspace.as_str()) {
                let ks = self
                    .db
                    .keyspace_or_create(&change.keyspace, KeyspaceOptions::default())?;
                keyspaces.insert(change.keyspace.as_str(), ks);
            }
            let ks = &keyspaces[change.keyspace.as_str()];
            match change.op {
                ChangeOp::Put => write.put(ks, &change.key, &change.value),
                ChangeOp::Delete => write.delete(ks, &change.key),
                ChangeOp::DeletePrefix => write.delete_prefix(ks, &change.key),
            }
        }
        write.put(&self.position_ks, POSITION_KEY, batch.last.0.to_le_bytes());
        self.db.write(write)?;
        self.applied = batch.last;
        Ok(Applied::Applied)
    }
}
