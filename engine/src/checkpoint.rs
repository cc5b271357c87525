//! Checkpoints, backups and restores: consistent, openable copies of a database.
//!
//! A checkpoint flushes the memtables, then holds the tables and value-log segments
//! the manifest names (hard links where the file system allows, copies otherwise:
//! they are immutable), a fresh manifest of the current state, and a fresh WAL holding
//! exactly the logged records no table holds yet (those written since the flush), up
//! to the sequence number the checkpoint reports. The flush costs a moment but keeps
//! the copy to links and a small log. Everything
//! is captured under the manifest lock, so no flush or compaction installs (and no
//! WAL segment is deleted) in between; writes go on.
//!
//! Crash safety: the first file written is an `INCOMPLETE` marker (made durable), and
//! `CURRENT` is written after every other file and directory is synced; the marker is
//! removed last. `Db::open` refuses a directory holding the marker, so a checkpoint a
//! crash interrupted is never opened as valid.
//!
//! A backup is a checkpoint into `backup-N/` of a backup directory whose immutable
//! files are copied once into `shared/` and hard-linked from there, so each backup
//! after the first copies only the tables and segments that are new since.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_wal::{Commit, Fs, RecoveryMode, SeqCounter, SeqNo, Wal, WalOptions, WalReader};

use crate::db::{table_file_name, Db, DbInner, WAL_DIR};
use crate::error::{Error, Result};
use crate::manifest::{ManifestState, ManifestWriter};

/// Name of the marker file of a checkpoint, backup or restore still being written.
pub const INCOMPLETE_MARKER: &str = "INCOMPLETE";
/// Subdirectory of a backup directory holding the immutable files of every backup.
const SHARED_DIR: &str = "shared";

/// What a checkpoint or backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointInfo {
    /// Every logged write at or below this sequence number is in the copy, and none
    /// above it (WAL-bypass keyspaces hold their last flush). A replica seeded from
    /// the copy continues with `changes_since(seqno)`.
    pub seqno: SeqNo,
    /// Immutable files (tables, value-log segments) hard-linked.
    pub files_linked: usize,
    /// Files copied (immutable files that could not be linked, or new in a backup).
    pub files_copied: usize,
    /// Bytes copied, including the manifest and the WAL written.
    pub bytes_copied: u64,
}

/// Where the immutable files of a copy come from.
enum Placement<'a> {
    /// Hard-link (or copy) straight from the database.
    Direct,
    /// Copy into this shared directory unless there already, then link from it.
    Shared(&'a Path),
}

impl Db {
    /// Writes a consistent, openable copy of the whole database into `dir` (which
    /// must not exist or be empty). The memtables are flushed first (so the copy is
    /// tables, not a log to replay, and WAL-bypass keyspaces are in it up to the
    /// call); then tables and value-log segments are hard-linked where the file
    /// system allows, a fresh manifest is written, and the logged writes made since
    /// the flush are copied. Writers and background work continue meanwhile. Returns
    /// the sequence number the copy holds. Open the copy with [`Db::open`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `dir` holds files; I/O errors (the partial copy
    /// then holds an `INCOMPLETE` marker and never opens).
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<CheckpointInfo> {
        self.flush()?;
        self.inner().copy_database(dir.as_ref(), &Placement::Direct)
    }

    /// Backs the database up into `backup-N/` under `backup_dir` (N one past the
    /// newest backup there), copying only the tables and value-log segments no
    /// earlier backup in `backup_dir` holds. Each `backup-N/` is an openable database;
    /// restore one with [`Db::restore_backup`].
    ///
    /// # Errors
    /// I/O errors; a partial backup holds an `INCOMPLETE` marker and is skipped by
    /// restores.
    pub fn backup(&self, backup_dir: impl AsRef<Path>) -> Result<(u64, CheckpointInfo)> {
        let backup_dir = backup_dir.as_ref();
        let inner = self.inner();
        let fs = inner.fs.as_ref();
        let shared = backup_dir.join(SHARED_DIR);
        fs.create_dir_all(&shared)?;
        sync_parents(fs, &shared)?;
        // One past every backup recorded complete and every directory in the way
        // (an interrupted backup's), so numbers only grow even after pruning.
        let mut number = completed_backups(fs, backup_dir)?
            .last()
            .map_or(1, |n| n + 1);
        while fs.exists(&backup_path(backup_dir, number))? {
            number += 1;
        }
        self.flush()?;
        let info = inner.copy_database(
            &backup_path(backup_dir, number),
            &Placement::Shared(&shared),
        )?;
        // Recorded complete only once the backup is durable.
        let done = fs.create(&backup_dir.join(format!("backup-{number}.complete")))?;
        done.sync_data()?;
        fs.sync_dir(backup_dir)?;
        Ok((number, info))
    }

    /// Copies backup `number` of `backup_dir` (the newest complete one with `None`)
    /// into `target`, which must not exist or be empty, and checks every file's
    /// checksums on the way. Open the result with [`Db::open`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when there is no such complete backup or `target`
    /// holds files; [`Error::Corruption`] naming a damaged file; I/O errors.
    pub fn restore_backup(
        backup_dir: impl AsRef<Path>,
        number: Option<u64>,
        target: impl AsRef<Path>,
    ) -> Result<u64> {
        restore_backup_with_fs(
            Arc::new(strata_wal::StdFs),
            backup_dir.as_ref(),
            number,
            target.as_ref(),
        )
    }
}

fn backup_path(backup_dir: &Path, number: u64) -> PathBuf {
    backup_dir.join(format!("backup-{number}"))
}

/// The numbers of the backups recorded complete in `backup_dir` (a
/// `backup-N.complete` file each), ascending.
fn completed_backups(fs: &dyn Fs, backup_dir: &Path) -> Result<Vec<u64>> {
    if !fs.exists(backup_dir)? {
        return Ok(Vec::new());
    }
    let mut numbers: Vec<u64> = fs
        .list(backup_dir)?
        .iter()
        .filter_map(|name| {
            name.strip_prefix("backup-")?
                .strip_suffix(".complete")?
                .parse()
                .ok()
        })
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// [`Db::restore_backup`] through `fs`.
///
/// # Errors
/// As [`Db::restore_backup`].
pub fn restore_backup_with_fs(
    fs: Arc<dyn Fs>,
    backup_dir: &Path,
    number: Option<u64>,
    target: &Path,
) -> Result<u64> {
    let complete = |n: u64| -> Result<bool> {
        let dir = backup_path(backup_dir, n);
        Ok(fs.exists(&dir.join(crate::manifest::CURRENT))?
            && !fs.exists(&dir.join(INCOMPLETE_MARKER))?)
    };
    let number = match number {
        Some(n) => n,
        None => {
            let mut newest = None;
            for n in completed_backups(fs.as_ref(), backup_dir)?
                .into_iter()
                .rev()
            {
                if complete(n)? {
                    newest = Some(n);
                    break;
                }
            }
            newest.ok_or_else(|| {
                Error::InvalidArgument(format!("{} holds no complete backup", backup_dir.display()))
            })?
        }
    };
    if !complete(number)? {
        return Err(Error::InvalidArgument(format!(
            "backup {number} in {} does not exist or is incomplete",
            backup_dir.display()
        )));
    }
    let source = backup_path(backup_dir, number);
    crate::verify::verify_directory(&fs, &source)?;
    begin_copy(fs.as_ref(), target)?;
    let names = fs.list(&source)?;
    // CURRENT last: until it is there the copy is not a database.
    for name in names
        .iter()
        .filter(|n| *n != crate::manifest::CURRENT && *n != crate::db::LOCK_FILE)
    {
        copy_file(fs.as_ref(), &source.join(name), &target.join(name))?;
    }
    let wal_source = source.join(WAL_DIR);
    if fs.exists(&wal_source)? {
        fs.create_dir_all(&target.join(WAL_DIR))?;
        for name in fs.list(&wal_source)? {
            copy_file(
                fs.as_ref(),
                &wal_source.join(&name),
                &target.join(WAL_DIR).join(&name),
            )?;
        }
        fs.sync_dir(&target.join(WAL_DIR))?;
    }
    fs.sync_dir(target)?;
    copy_file(
        fs.as_ref(),
        &source.join(crate::manifest::CURRENT),
        &target.join(crate::manifest::CURRENT),
    )?;
    finish_copy(fs.as_ref(), target)?;
    Ok(number)
}

impl DbInner {
    /// Writes a checkpoint of this database into `dir`, placing immutable files as
    /// `placement` says.
    fn copy_database(&self, dir: &Path, placement: &Placement<'_>) -> Result<CheckpointInfo> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let fs = self.fs.as_ref();
        begin_copy(fs, dir)?;
        let mut info = CheckpointInfo::default();
        let (mut state, views, seqno) = {
            // Nothing installs, and no WAL segment the captured state needs is
            // deleted, while this is held: only the state and the log are taken
            // under it.
            let meta = self.meta.lock();
            let state: ManifestState = meta.state.clone();
            // The views of this state keep its tables and segments on disk after
            // the lock is released (files are deleted when their last holder drops).
            let views: Vec<Arc<crate::db::View>> = self
                .catalog
                .read()
                .by_id
                .values()
                .map(|k| k.view())
                .collect();
            // The copy claims only what the database itself would recover after a
            // power loss: every logged write at or below the synced point is in the
            // log file (records are written in sequence order) or in a table, and no
            // table holds a logged write above it (a flush syncs the log first).
            self.wal.sync()?;
            let seqno = self.wal.synced_seq();
            let bypass = self.bypass_keyspaces();
            let replay_from = state
                .keyspaces
                .iter()
                .filter(|(id, _)| !bypass.contains(id))
                .map(|(_, k)| k.flushed_seq.plus(1))
                .min()
                .unwrap_or(seqno.plus(1));
            info.bytes_copied += self.copy_log(&dir.join(WAL_DIR), replay_from, seqno)?;
            (state, views, seqno)
        };
        for (ks_id, ks) in &state.keyspaces {
            for table in ks.tables.values() {
                let name = table_file_name(table.id);
                self.place_immutable(&name, dir, placement, &mut info)?;
            }
            for segment in ks.segments.values() {
                let name = strata_vlog::segment_file_name(segment.id);
                self.place_immutable(&name, dir, placement, &mut info)
                    .map_err(|e| annotate(e, *ks_id))?;
            }
        }
        fs.sync_dir(dir)?;
        // The copy numbers its manifest past everything the state names.
        let number = state.next_file_number;
        state.next_file_number += 1;
        state.last_seq = state.last_seq.max(seqno);
        // Writes the manifest, then CURRENT, and syncs the directory.
        let manifest = ManifestWriter::create(Arc::clone(&self.fs), dir, number, &state, None)?;
        info.bytes_copied += manifest.len();
        drop(views);
        finish_copy(fs, dir)?;
        info.seqno = seqno;
        Ok(info)
    }

    /// Puts the immutable file `name` of the database into `dir`.
    fn place_immutable(
        &self,
        name: &str,
        dir: &Path,
        placement: &Placement<'_>,
        info: &mut CheckpointInfo,
    ) -> Result<()> {
        let fs = self.fs.as_ref();
        let source = self.path.join(name);
        let target = dir.join(name);
        match placement {
            Placement::Direct => {
                if link_or_copy(fs, &source, &target, &mut info.bytes_copied)? {
                    info.files_linked += 1;
                } else {
                    info.files_copied += 1;
                }
            }
            Placement::Shared(shared) => {
                let kept = shared.join(name);
                let size = fs.open(&source)?.len()?;
                let present = fs.exists(&kept)? && fs.open(&kept)?.len()? == size;
                if !present {
                    // A partial copy from an interrupted backup is replaced.
                    let tmp = shared.join(format!("{name}.tmp"));
                    info.bytes_copied += copy_file(fs, &source, &tmp)?;
                    fs.rename(&tmp, &kept)?;
                    fs.sync_dir(shared)?;
                    info.files_copied += 1;
                }
                if link_or_copy(fs, &kept, &target, &mut info.bytes_copied)? {
                    info.files_linked += 1;
                }
            }
        }
        Ok(())
    }

    /// Writes a fresh WAL in `wal_dir` holding the logged records of this database
    /// from `from` through `to`, with their sequence numbers. Returns its bytes.
    fn copy_log(&self, wal_dir: &Path, from: SeqNo, to: SeqNo) -> Result<u64> {
        let counter = Arc::new(SeqCounter::new(from));
        let options = WalOptions {
            segment_bytes: self.options.wal_segment_bytes,
            sync_interval: None,
            recovery_mode: RecoveryMode::Strict,
        };
        let (copy, _) = Wal::open(
            Arc::clone(&self.fs),
            wal_dir,
            options,
            Arc::clone(&counter),
            from,
            |_| Ok(()),
        )?;
        let reader = WalReader::open(
            Arc::clone(&self.fs),
            self.wal.dir(),
            from,
            RecoveryMode::Strict,
        )?;
        let mut bytes = 0u64;
        for record in reader {
            let record = record?;
            if record.last_seq() > to {
                break;
            }
            bytes += record.payload.len() as u64;
            copy.append_with(&record.payload, record.entries, Commit::Buffered, |n| {
                counter.advance_to(record.seq);
                counter.reserve(n)
            })?;
        }
        copy.sync()?;
        copy.close()?;
        Ok(bytes)
    }
}

/// Adds the keyspace to an error's context where it helps.
fn annotate(e: Error, ks: crate::ids::KeyspaceId) -> Error {
    match e {
        Error::Io { op, path, source } => Error::Io {
            op,
            path,
            source: std::io::Error::new(source.kind(), format!("{source} (keyspace {ks})")),
        },
        other => other,
    }
}

/// Creates `dir` (refusing one that holds files) and its `INCOMPLETE` marker, durably.
fn begin_copy(fs: &dyn Fs, dir: &Path) -> Result<()> {
    let holds_files = |d: &Path| -> Result<bool> { Ok(fs.exists(d)? && !fs.list(d)?.is_empty()) };
    if holds_files(dir)? || holds_files(&dir.join(WAL_DIR))? {
        return Err(Error::InvalidArgument(format!(
            "{} exists and is not empty; a checkpoint, backup or restore needs a new directory",
            dir.display()
        )));
    }
    fs.create_dir_all(dir)?;
    sync_parents(fs, dir)?;
    let marker = fs.create(&dir.join(INCOMPLETE_MARKER))?;
    marker.append(b"a checkpoint, backup or restore was interrupted; delete this directory\n")?;
    marker.sync_data()?;
    fs.sync_dir(dir)?;
    Ok(())
}

/// Removes the marker once everything else is durable.
fn finish_copy(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fs.remove(&dir.join(INCOMPLETE_MARKER))?;
    fs.sync_dir(dir)?;
    Ok(())
}

/// Makes `dir`'s entry durable in its parent.
fn sync_parents(fs: &dyn Fs, dir: &Path) -> Result<()> {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => Ok(fs.sync_dir(parent)?),
        _ => Ok(()),
    }
}

/// Hard-links `source` to `target`, or copies it where links are not possible
/// (another file system). Returns whether it linked.
fn link_or_copy(fs: &dyn Fs, source: &Path, target: &Path, copied: &mut u64) -> Result<bool> {
    match fs.hard_link(source, target) {
        Ok(()) => Ok(true),
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Err(e.into()),
        Err(_) => {
            *copied += copy_file(fs, source, target)?;
            Ok(false)
        }
    }
}

/// Copies `source` to a new file `target` and syncs it. Returns the bytes copied.
pub(crate) fn copy_file(fs: &dyn Fs, source: &Path, target: &Path) -> Result<u64> {
    let bytes = fs.open(source)?.read_all()?;
    let out = fs.create(target)?;
    out.append(&bytes)?;
    out.sync_data()?;
    Ok(bytes.len() as u64)
}

/// Whether `dir` holds the marker of an interrupted checkpoint, backup or restore.
pub(crate) fn is_incomplete(fs: &dyn Fs, dir: &Path) -> Result<bool> {
    Ok(fs.exists(&dir.join(INCOMPLETE_MARKER))?)
}
