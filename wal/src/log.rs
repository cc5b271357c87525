//! The write-ahead log: group commit, rotation, recovery, retention and reading.
//!
//! Writers call [`Wal::append`]. Each record is encoded into a shared pending buffer
//! under one lock, where it also draws its sequence numbers, so log order is sequence
//! order. Whoever finds the buffer non-empty and no write in progress becomes the
//! *writer* and appends the whole buffer with one call; whoever needs durability and
//! finds no fsync in progress becomes the *syncer* and fsyncs everything written so
//! far. A write and an fsync may run at the same time, so while one group is being
//! synced the next one is being written: with many `Sync` writers one fsync
//! acknowledges a whole group.
//!
//! A failed write or fsync poisons the log: the unsynced state of the file is unknown,
//! so every later append fails with [`Error::Poisoned`] and nothing is acknowledged.
//!
//! After each fsync the next group starts with a *sync mark* naming the offset that
//! was durable; recovery uses it to tell a torn tail from damage to synced data.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile};
use crate::ids::{SegmentId, SeqCounter, SeqNo};
use crate::record::{encode_record, encode_sync_mark, WalRecord};
use crate::segment::{
    parse_segment_file_name, scan_segment, segment_file_name, RecoveryMode, SegmentHeader, Tail,
    SEGMENT_HEADER_LEN,
};

/// How long an append waits before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Acknowledged once the record is fsynced (group commit).
    Sync,
    /// Acknowledged once the record is written to the operating system; made durable
    /// by the next sync (background interval, a later `Sync` append, or [`Wal::sync`]).
    Buffered,
}

/// Options of the write-ahead log. `Default` holds the documented defaults.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Rotate to a new segment once the active one reaches this size. Default 64 MiB.
    /// Smaller segments are deleted sooner after a flush; larger ones mean fewer files.
    pub segment_bytes: u64,
    /// Interval of the background sync for `Buffered` appends. Default 100 ms: a power
    /// loss loses at most about this much acknowledged `Buffered` data. `None` starts
    /// no thread; the owner then calls [`Wal::sync`] itself.
    pub sync_interval: Option<Duration>,
    /// How damage found during recovery is treated. Default [`RecoveryMode::Strict`].
    pub recovery_mode: RecoveryMode,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            sync_interval: Some(Duration::from_millis(100)),
            recovery_mode: RecoveryMode::Strict,
        }
    }
}

impl WalOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a segment size below 4 KiB or a zero interval.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < 4096 {
            return Err(Error::InvalidArgument(format!(
                "segment_bytes is {}; it must be at least 4096",
                self.segment_bytes
            )));
        }
        if self.sync_interval == Some(Duration::ZERO) {
            return Err(Error::InvalidArgument(
                "sync_interval must be positive; use None for no background sync".into(),
            ));
        }
        Ok(())
    }
}

/// A torn tail found and cut during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment that was cut.
    pub file: PathBuf,
    /// Where it was cut (the start of the incomplete record).
    pub offset: u64,
    /// How many bytes were dropped.
    pub dropped_bytes: u64,
    /// What was wrong with the first dropped byte range.
    pub reason: &'static str,
}

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverySummary {
    /// Segments whose records were scanned.
    pub segments_scanned: usize,
    /// Records passed to the replay callback.
    pub records_replayed: u64,
    /// Bytes of payload passed to the replay callback.
    pub bytes_replayed: u64,
    /// The last sequence number found in the log, if any record was found.
    pub last_seq: Option<SeqNo>,
    /// The torn tail that was truncated, if any.
    pub torn_tail: Option<TornTail>,
    /// Damaged regions skipped in salvage mode.
    pub skipped_regions: u64,
    /// Bytes skipped in salvage mode.
    pub skipped_bytes: u64,
    /// Segments with a torn header (a crash while creating them) that were removed.
    pub removed_segments: usize,
}

/// Counters of the log's work since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records appended.
    pub records: u64,
    /// Bytes written to segment files (framing included).
    pub bytes_written: u64,
    /// Group writes (one `append` call on the file each).
    pub writes: u64,
    /// fsyncs of segment files.
    pub syncs: u64,
    /// Segments created.
    pub segments_created: u64,
}

#[derive(Debug, Clone, Copy)]
struct SegmentMeta {
    id: SegmentId,
    first_seq: SeqNo,
}

#[derive(Debug)]
struct Active {
    id: SegmentId,
    file: Arc<dyn FsFile>,
    /// Bytes written to the file (after the writer finishes each group).
    len: u64,
}

#[derive(Debug)]
struct State {
    /// Encoded records not yet written; taken whole by the next writer.
    pending: Vec<u8>,
    /// A spare buffer, swapped in when a writer takes `pending`.
    spare: Vec<u8>,
    pending_first_seq: Option<SeqNo>,
    pending_last_seq: SeqNo,
    /// Every record with a sequence number at or below this has been written.
    written_seq: SeqNo,
    /// Every record with a sequence number at or below this is durable.
    synced_seq: SeqNo,
    writing: bool,
    syncing: bool,
    active: Active,
    /// Durable offset of the active segment, and what the last sync mark declared.
    synced_offset: u64,
    marked_offset: u64,
    /// Every segment, oldest first; the last one is active.
    segments: Vec<SegmentMeta>,
    next_segment_id: u64,
    poisoned: Option<String>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    bytes_written: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
    segments_created: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    options: WalOptions,
    seq: Arc<SeqCounter>,
    state: Mutex<State>,
    changed: Condvar,
    counters: Counters,
    stop: Mutex<bool>,
    stop_signal: Condvar,
}

/// The write-ahead log of one directory. Cheap to share behind an `Arc`; all methods
/// take `&self`.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, recovers it and starts a new
    /// segment for appends.
    ///
    /// Every record whose last sequence number is at or after `replay_from` is passed to
    /// `replay`, in order. Segments wholly before `replay_from` are not scanned (only
    /// their headers are checked). A torn tail of the last segment is truncated and
    /// reported in the summary. `seq` is advanced past every sequence number found.
    ///
    /// # Errors
    /// [`Error::Corruption`] for damage other than a torn tail (in strict mode), I/O
    /// errors, or the callback's error.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        options: WalOptions,
        seq: Arc<SeqCounter>,
        replay_from: SeqNo,
        mut replay: impl FnMut(WalRecord) -> Result<()>,
    ) -> Result<(Wal, RecoverySummary)> {
        options.validate()?;
        fs.create_dir_all(dir)?;
        let mut summary = RecoverySummary::default();
        let mut segments = list_segments(fs.as_ref(), dir)?;
        let mut metas = Vec::with_capacity(segments.len());
        let mut last_seq: Option<SeqNo> = None;
        let mut max_first_seq = SeqNo::ZERO;

        // Headers first: they say which segments the replay needs.
        let mut headers = Vec::with_capacity(segments.len());
        let count = segments.len();
        for (i, (id, path)) in segments.iter().enumerate() {
            let file = fs.open(path)?;
            let len = file.len()?;
            let mut head = vec![0u8; (len as usize).min(SEGMENT_HEADER_LEN)];
            file.read_exact_at(0, &mut head)?;
            match SegmentHeader::decode(&head, path) {
                Ok(h) if h.id != *id => {
                    return Err(Error::corruption(
                        path,
                        16,
                        format!("header names segment {} but the file is segment {id}", h.id),
                    ))
                }
                Ok(h) => headers.push(Some(h)),
                // A crash while creating the newest segment leaves its header torn;
                // nothing can have been acknowledged in it.
                Err(_) if i + 1 == count && len <= SEGMENT_HEADER_LEN as u64 => headers.push(None),
                Err(e) if options.recovery_mode == RecoveryMode::Salvage => {
                    summary.skipped_regions += 1;
                    summary.skipped_bytes += len;
                    let _ = e;
                    headers.push(None);
                }
                Err(e) => return Err(e),
            }
        }
        for i in 0..count {
            let (id, path) = &segments[i];
            let Some(header) = headers[i] else {
                if i + 1 == count {
                    fs.remove(path)?;
                    summary.removed_segments += 1;
                }
                continue;
            };
            max_first_seq = max_first_seq.max(header.first_seq);
            if let Some(last) = last_seq {
                if header.first_seq <= last {
                    return Err(Error::corruption(
                        path,
                        24,
                        format!(
                            "segment starts at sequence {} but the previous one reached {last}",
                            header.first_seq
                        ),
                    ));
                }
            }
            metas.push(SegmentMeta {
                id: *id,
                first_seq: header.first_seq,
            });
            let is_last = i + 1 == count;
            let next_first = headers[i + 1..]
                .iter()
                .flatten()
                .next()
                .map(|h| h.first_seq);
            let wholly_before = next_first.is_some_and(|n| n <= replay_from);
            if wholly_before && !is_last {
                // Not needed for replay; the next segment's header bounds its records.
                last_seq = next_first.map(SeqNo::prev).or(last_seq);
                continue;
            }
            let file = fs.open(path)?;
            let bytes = file.read_all()?;
            let tail = if is_last { Tail::Recover } else { Tail::Sealed };
            let outcome = scan_segment(
                &bytes,
                path,
                &header,
                last_seq,
                tail,
                options.recovery_mode,
                |seq, entries, payload| {
                    let record = WalRecord {
                        seq,
                        entries,
                        payload: payload.to_vec(),
                    };
                    if record.last_seq() >= replay_from {
                        summary.records_replayed += 1;
                        summary.bytes_replayed += payload.len() as u64;
                        replay(record)?;
                    }
                    Ok(())
                },
            )?;
            summary.segments_scanned += 1;
            summary.skipped_regions += outcome.skipped_regions;
            summary.skipped_bytes += outcome.skipped_bytes;
            last_seq = outcome.last_seq;
            if let Some((offset, reason)) = outcome.torn {
                // Cut the torn tail and make the cut durable before any new segment
                // exists, so this segment is never a damaged non-last segment.
                file.truncate(offset)?;
                file.sync_data()?;
                summary.torn_tail = Some(TornTail {
                    file: path.clone(),
                    offset,
                    dropped_bytes: bytes.len() as u64 - offset,
                    reason,
                });
            }
        }
        summary.last_seq = last_seq;
        if let Some(last) = last_seq {
            seq.advance_to(last.plus(1));
        }
        seq.advance_to(max_first_seq);

        let next_segment_id = segments.last().map_or(1, |(id, _)| id.0 + 1);
        segments.clear();
        let first_seq = seq.peek_next();
        let (active, meta) =
            create_segment(fs.as_ref(), dir, SegmentId(next_segment_id), first_seq)?;
        metas.push(meta);
        let written = first_seq.prev();
        let shared = Arc::new(Shared {
            fs,
            dir: dir.to_path_buf(),
            seq,
            state: Mutex::new(State {
                pending: Vec::new(),
                spare: Vec::new(),
                pending_first_seq: None,
                pending_last_seq: written,
                written_seq: written,
                synced_seq: written,
                writing: false,
                syncing: false,
                synced_offset: active.len,
                marked_offset: active.len,
                active,
                segments: metas,
                next_segment_id: next_segment_id + 1,
                poisoned: None,
                closed: false,
            }),
            changed: Condvar::new(),
            counters: Counters::default(),
            stop: Mutex::new(false),
            stop_signal: Condvar::new(),
            options,
        });
        shared
            .counters
            .segments_created
            .fetch_add(1, Ordering::Relaxed);
        let syncer = shared.options.sync_interval.map(|interval| {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("strata-wal-sync".into())
                .spawn(move || shared.background_sync(interval))
        });
        let syncer = match syncer {
            Some(Ok(handle)) => Some(handle),
            Some(Err(e)) => return Err(Error::io("spawn sync thread", dir, e)),
            None => None,
        };
        Ok((
            Wal {
                shared,
                syncer: Mutex::new(syncer),
            },
            summary,
        ))
    }

    /// Appends one record covering `entries` sequence numbers and returns the first.
    /// Returns once the record is written (`Buffered`) or durable (`Sync`).
    ///
    /// # Errors
    /// [`Error::Poisoned`] after an earlier failure, [`Error::Closed`], the I/O error
    /// that failed this append's group, or [`Error::InvalidArgument`] for zero entries.
    pub fn append(&self, payload: &[u8], entries: u32, commit: Commit) -> Result<SeqNo> {
        let counter = Arc::clone(&self.shared.seq);
        self.append_with(payload, entries, commit, |n| counter.reserve(n))
    }

    /// Like [`Wal::append`], but the sequence numbers are drawn by `reserve(entries)`,
    /// called while the log's queue lock is held, so that log order is sequence order.
    /// `reserve` must draw from this log's [`SeqCounter`] (it may also record the
    /// reservation elsewhere, e.g. to publish it in order); it is not called when the
    /// append is refused up front.
    ///
    /// # Errors
    /// As [`Wal::append`].
    pub fn append_with(
        &self,
        payload: &[u8],
        entries: u32,
        commit: Commit,
        reserve: impl FnOnce(u64) -> SeqNo,
    ) -> Result<SeqNo> {
        if entries == 0 {
            return Err(Error::InvalidArgument(
                "a record must cover at least one entry".into(),
            ));
        }
        let shared = &*self.shared;
        let mut st = shared.state.lock();
        st.check_open()?;
        let first = reserve(u64::from(entries));
        let last = first.plus(u64::from(entries) - 1);
        if st.pending.is_empty() {
            if st.synced_offset > st.marked_offset {
                let (id, off) = (st.active.id.0, st.synced_offset);
                encode_sync_mark(&mut st.pending, id, off);
                st.marked_offset = off;
            }
            st.pending_first_seq = Some(first);
        }
        encode_record(&mut st.pending, first, entries, payload);
        st.pending_last_seq = last;
        shared.counters.records.fetch_add(1, Ordering::Relaxed);
        loop {
            let done = match commit {
                Commit::Buffered => st.written_seq >= last,
                Commit::Sync => st.synced_seq >= last,
            };
            if done {
                return Ok(first);
            }
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if !st.writing && !st.pending.is_empty() {
                shared.write_group(&mut st)?;
            } else if commit == Commit::Sync && st.written_seq >= last && !st.syncing {
                shared.sync_written(&mut st)?;
            } else {
                shared.changed.wait(&mut st);
            }
        }
    }

    /// Makes every record written so far durable. Returns at once if nothing is
    /// unsynced.
    ///
    /// # Errors
    /// [`Error::Poisoned`] or the fsync's I/O error (which poisons the log).
    pub fn sync(&self) -> Result<()> {
        let shared = &*self.shared;
        let mut st = shared.state.lock();
        if let Some(cause) = &st.poisoned {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        // Records still pending belong to appenders that will write them; a sync
        // covers what is written now and what is pending, so write that first.
        let target = st.pending_last_seq.max(st.written_seq);
        loop {
            if st.synced_seq >= target {
                return Ok(());
            }
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if !st.writing && !st.pending.is_empty() {
                shared.write_group(&mut st)?;
            } else if st.written_seq >= target && !st.syncing {
                shared.sync_written(&mut st)?;
            } else {
                shared.changed.wait(&mut st);
            }
        }
    }

    /// Deletes every sealed segment whose records all have sequence numbers below
    /// `seq`. The active segment is never deleted. Returns how many were deleted.
    ///
    /// # Errors
    /// I/O errors from removing files or syncing the directory.
    pub fn remove_segments_before(&self, seq: SeqNo) -> Result<usize> {
        let shared = &*self.shared;
        let doomed: Vec<SegmentId> = {
            let st = shared.state.lock();
            st.segments
                .windows(2)
                .take_while(|pair| pair[1].first_seq <= seq)
                .map(|pair| pair[0].id)
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        for id in &doomed {
            shared.fs.remove(&shared.dir.join(segment_file_name(*id)))?;
        }
        shared.fs.sync_dir(&shared.dir)?;
        let mut st = shared.state.lock();
        st.segments.retain(|m| !doomed.contains(&m.id));
        Ok(doomed.len())
    }

    /// The segments on disk, oldest first, with the first sequence number of each.
    pub fn segments(&self) -> Vec<(SegmentId, SeqNo)> {
        let st = self.shared.state.lock();
        st.segments.iter().map(|m| (m.id, m.first_seq)).collect()
    }

    /// The sequence-number source this log draws from (shared with writes that bypass
    /// the log).
    pub fn seq_counter(&self) -> &Arc<SeqCounter> {
        &self.shared.seq
    }

    /// The last sequence number that is durable in the log.
    pub fn synced_seq(&self) -> SeqNo {
        self.shared.state.lock().synced_seq
    }

    /// The last sequence number written to the operating system.
    pub fn written_seq(&self) -> SeqNo {
        self.shared.state.lock().written_seq
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Why the log refuses writes, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.state.lock().poisoned.clone()
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        let c = &self.shared.counters;
        WalStats {
            records: c.records.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            segments_created: c.segments_created.load(Ordering::Relaxed),
        }
    }

    /// Syncs everything written, stops the background sync and refuses further
    /// appends. Called by `Drop` too (errors are then ignored).
    ///
    /// # Errors
    /// The final fsync's error.
    pub fn close(&self) -> Result<()> {
        let result = if self.shared.state.lock().closed {
            Ok(())
        } else {
            self.sync().and_then(|()| self.shared.write_final_mark())
        };
        self.shared.state.lock().closed = true;
        *self.shared.stop.lock() = true;
        self.shared.stop_signal.notify_all();
        if let Some(handle) = self.syncer.lock().take() {
            let _ = handle.join();
        }
        result
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl State {
    fn check_open(&self) -> Result<()> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

impl Shared {
    /// Writes the pending group. Called with the state locked and no write in
    /// progress; unlocks during I/O.
    fn write_group(&self, st: &mut parking_lot::MutexGuard<'_, State>) -> Result<()> {
        st.writing = true;
        let spare = std::mem::take(&mut st.spare);
        let mut group = std::mem::replace(&mut st.pending, spare);
        let upto = st.pending_last_seq;
        let group_first = st.pending_first_seq.take().unwrap_or(upto);
        let rotate = st.active.len > SEGMENT_HEADER_LEN as u64
            && st.active.len + group.len() as u64 > self.options.segment_bytes;
        let mut file = Arc::clone(&st.active.file);
        let new_id = SegmentId(st.next_segment_id);
        let result =
            parking_lot::MutexGuard::unlocked(st, || -> Result<Option<(Active, SegmentMeta)>> {
                let mut rotated = None;
                if rotate {
                    // Seal the old segment durably before the new one exists, so only the
                    // newest segment can ever have a torn tail.
                    file.sync_data()?;
                    self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                    let (active, meta) =
                        create_segment(self.fs.as_ref(), &self.dir, new_id, group_first)?;
                    self.counters
                        .segments_created
                        .fetch_add(1, Ordering::Relaxed);
                    file = Arc::clone(&active.file);
                    rotated = Some((active, meta));
                }
                file.append(&group)?;
                Ok(rotated)
            });
        st.writing = false;
        match result {
            Ok(rotated) => {
                if let Some((active, meta)) = rotated {
                    // Everything written before the rotation was synced with the old
                    // segment.
                    st.synced_seq = st.synced_seq.max(st.written_seq);
                    st.synced_offset = active.len;
                    st.marked_offset = active.len;
                    st.active = active;
                    st.segments.push(meta);
                    st.next_segment_id += 1;
                }
                st.active.len += group.len() as u64;
                st.written_seq = st.written_seq.max(upto);
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_written
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                group.clear();
                if st.spare.capacity() < group.capacity() && group.capacity() <= 4 << 20 {
                    st.spare = group;
                }
                self.changed.notify_all();
                Ok(())
            }
            Err(e) => {
                st.poisoned = Some(format!("write to the log failed: {e}"));
                self.changed.notify_all();
                Err(e)
            }
        }
    }

    /// Fsyncs the active segment, covering everything written so far. Called with the
    /// state locked and no sync in progress; unlocks during I/O.
    fn sync_written(&self, st: &mut parking_lot::MutexGuard<'_, State>) -> Result<()> {
        st.syncing = true;
        let target = st.written_seq;
        let offset = st.active.len;
        let id = st.active.id;
        let file = Arc::clone(&st.active.file);
        let result = parking_lot::MutexGuard::unlocked(st, || file.sync_data());
        st.syncing = false;
        match result {
            Ok(()) => {
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                st.synced_seq = st.synced_seq.max(target);
                if st.active.id == id {
                    st.synced_offset = st.synced_offset.max(offset);
                }
                self.changed.notify_all();
                Ok(())
            }
            Err(e) => {
                st.poisoned = Some(format!("fsync of the log failed: {e}"));
                self.changed.notify_all();
                Err(e)
            }
        }
    }

    /// On a clean close, declares everything written durable with one last sync
    /// mark (then fsyncs it), so that later damage anywhere in a record of this
    /// segment is reported as corruption instead of being cut as a torn tail.
    fn write_final_mark(&self) -> Result<()> {
        let mut st = self.state.lock();
        while st.writing || st.syncing {
            self.changed.wait(&mut st);
        }
        st.check_open()?;
        if st.synced_offset <= st.marked_offset || !st.pending.is_empty() {
            return Ok(());
        }
        let mut mark = Vec::new();
        encode_sync_mark(&mut mark, st.active.id.0, st.synced_offset);
        st.marked_offset = st.synced_offset;
        st.writing = true;
        st.syncing = true;
        let file = Arc::clone(&st.active.file);
        let result = parking_lot::MutexGuard::unlocked(&mut st, || {
            file.append(&mark)?;
            file.sync_data()
        });
        st.writing = false;
        st.syncing = false;
        self.changed.notify_all();
        match result {
            Ok(()) => {
                st.active.len += mark.len() as u64;
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_written
                    .fetch_add(mark.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                st.poisoned = Some(format!("closing the log failed: {e}"));
                Err(e)
            }
        }
    }

    fn background_sync(&self, interval: Duration) {
        let mut stop = self.stop.lock();
        while !*stop {
            self.stop_signal.wait_for(&mut stop, interval);
            if *stop {
                break;
            }
            let mut st = self.state.lock();
            if st.poisoned.is_none() && !st.syncing && st.written_seq > st.synced_seq {
                // A failure poisons the log; appenders report it.
                let _ = self.sync_written(&mut st);
            }
        }
    }
}

fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<(SegmentId, PathBuf)>> {
    let mut segments: Vec<(SegmentId, PathBuf)> = fs
        .list(dir)?
        .into_iter()
        .filter_map(|name| parse_segment_file_name(&name).map(|id| (id, dir.join(name))))
        .collect();
    segments.sort_by_key(|(id, _)| *id);
    Ok(segments)
}

/// Creates a segment with its header, durable (file and directory entry).
fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    id: SegmentId,
    first_seq: SeqNo,
) -> Result<(Active, SegmentMeta)> {
    let path = dir.join(segment_file_name(id));
    let file = fs.create(&path)?;
    file.append(&SegmentHeader { id, first_seq }.encode())?;
    file.sync_data()?;
    fs.sync_dir(dir)?;
    Ok((
        Active {
            id,
            file,
            len: SEGMENT_HEADER_LEN as u64,
        },
        SegmentMeta { id, first_seq },
    ))
}

/// Reads the records of a log directory from a sequence number onward, for replay
/// tools and the change stream. Safe to use while a [`Wal`] appends to the directory:
/// an incomplete record at the end of the newest segment is treated as not yet
/// written.
#[derive(Debug)]
pub struct WalReader {
    fs: Arc<dyn Fs>,
    from: SeqNo,
    mode: RecoveryMode,
    segments: std::collections::VecDeque<(SegmentId, PathBuf)>,
    buffered: std::collections::VecDeque<WalRecord>,
    last_seq: Option<SeqNo>,
    failed: bool,
}

impl WalReader {
    /// Lists the segments of `dir` and positions the reader at the first record whose
    /// last sequence number is at or after `from`.
    ///
    /// # Errors
    /// I/O errors listing the directory or reading headers; [`Error::Corruption`] for
    /// a bad header.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path, from: SeqNo, mode: RecoveryMode) -> Result<WalReader> {
        let all = list_segments(fs.as_ref(), dir)?;
        // Skip segments wholly before `from`: those followed by a segment whose first
        // sequence number is at or below `from`.
        let mut firsts = Vec::with_capacity(all.len());
        for (_, path) in &all {
            let file = fs.open(path)?;
            let len = file.len()?;
            let mut head = vec![0u8; (len as usize).min(SEGMENT_HEADER_LEN)];
            file.read_exact_at(0, &mut head)?;
            firsts.push(SegmentHeader::decode(&head, path).ok().map(|h| h.first_seq));
        }
        let mut start = 0;
        for i in 0..all.len() {
            if firsts
                .get(i + 1)
                .copied()
                .flatten()
                .is_some_and(|next| next <= from)
            {
                start = i + 1;
            }
        }
        Ok(WalReader {
            fs,
            from,
            mode,
            segments: all.into_iter().skip(start).collect(),
            buffered: Default::default(),
            last_seq: None,
            failed: false,
        })
    }

    /// The oldest sequence number this directory's log can still yield, if any
    /// segment exists.
    ///
    /// # Errors
    /// I/O errors or a bad header.
    pub fn oldest_available(fs: &dyn Fs, dir: &Path) -> Result<Option<SeqNo>> {
        let Some((_, path)) = list_segments(fs, dir)?.into_iter().next() else {
            return Ok(None);
        };
        let file = fs.open(&path)?;
        let mut head = vec![0u8; SEGMENT_HEADER_LEN];
        file.read_exact_at(0, &mut head)?;
        Ok(Some(SegmentHeader::decode(&head, &path)?.first_seq))
    }

    fn load_next_segment(&mut self) -> Result<bool> {
        let Some((id, path)) = self.segments.pop_front() else {
            return Ok(false);
        };
        let is_last = self.segments.is_empty();
        let file = self.fs.open(&path)?;
        let bytes = file.read_all()?;
        let header = match SegmentHeader::decode(&bytes, &path) {
            Ok(h) if h.id == id => h,
            Ok(h) => {
                return Err(Error::corruption(
                    &path,
                    16,
                    format!("header names segment {} but the file is segment {id}", h.id),
                ))
            }
            // The newest segment may be being created right now.
            Err(_) if is_last && bytes.len() < SEGMENT_HEADER_LEN => return Ok(true),
            Err(e) => return Err(e),
        };
        let tail = if is_last { Tail::Live } else { Tail::Sealed };
        let from = self.from;
        let buffered = &mut self.buffered;
        let outcome = scan_segment(
            &bytes,
            &path,
            &header,
            self.last_seq,
            tail,
            self.mode,
            |seq, entries, payload| {
                let record = WalRecord {
                    seq,
                    entries,
                    payload: payload.to_vec(),
                };
                if record.last_seq() >= from {
                    buffered.push_back(record);
                }
                Ok(())
            },
        )?;
        self.last_seq = outcome.last_seq;
        Ok(true)
    }
}

impl Iterator for WalReader {
    type Item = Result<WalRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.buffered.pop_front() {
                return Some(Ok(record));
            }
            if self.failed {
                return None;
            }
            match self.load_next_segment() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
