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
//!
//! Orderings that recovery relies on:
//! - at most one fsync of a file is in flight (`syncing` is a token that rotation and
//!   the final mark take too), so an fsync that misses a writeback error reported to a
//!   concurrent one cannot acknowledge anything;
//! - a segment is fsynced before the next one is created, both while running and at
//!   recovery, so only the newest segment can hold unsynced bytes;
//! - segment creation and removal are serialized (`dir_lock`), so a directory sync for
//!   a removal never makes a new segment's name durable before its header.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile};
use crate::ids::{SegmentId, SeqCounter, SeqNo};
use crate::record::{encode_record, encode_sync_mark, resalt, Salt, WalRecord};
use crate::segment::{
    is_unwritten_header, parse_segment_file_name, scan_segment, segment_file_name, RecoveryMode,
    SegmentHeader, Tail, SEGMENT_HEADER_LEN,
};

/// Rounds a `Buffered` append spins (lock released, 32 spin hints each, about 50 µs in
/// all) waiting for another thread's group write before it parks.
const BUFFERED_WAIT_SPINS: u32 = 256;

/// How long an append waits before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Acknowledged once the record is fsynced (group commit).
    Sync,
    /// Acknowledged once the record is written to the operating system; made durable
    /// by the next sync (background interval, a later `Sync` append, or [`Wal::sync`]).
    Buffered,
}

/// A record queued by [`Wal::enqueue`]: the sequence numbers it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// The record's first sequence number.
    pub first: SeqNo,
    /// Its last (pass this to [`Wal::wait_committed`]).
    pub last: SeqNo,
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
    /// The last sequence number of a record found in the scanned segments, if any.
    /// Segments wholly before `replay_from` are not scanned, so their records do not
    /// count here.
    pub last_seq: Option<SeqNo>,
    /// The torn tail that was truncated, if any.
    pub torn_tail: Option<TornTail>,
    /// Damaged regions skipped in salvage mode (a segment skipped for its header
    /// counts as one).
    pub skipped_regions: u64,
    /// Bytes skipped in salvage mode.
    pub skipped_bytes: u64,
    /// Newest segments whose header was never completely written (a crash while
    /// creating them) that were removed.
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
    salt: Salt,
    file: Arc<dyn FsFile>,
    /// Bytes written to the file (after the writer finishes each group).
    len: u64,
}

#[derive(Debug)]
struct State {
    /// Encoded records not yet written; taken whole by the next writer.
    pending: Vec<u8>,
    /// The salt `pending` is encoded with: the active segment's when its first record
    /// was queued. A writer that puts the group in another segment re-salts it.
    pending_salt: Salt,
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
    /// Set first thing by `close`: no append is accepted after it, and `close` makes
    /// every append accepted before it durable.
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
    /// Serializes creating and removing segment files (with their directory syncs).
    /// Taken without `state` held, or before it; never the other way round.
    dir_lock: Mutex<()>,
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
    /// reported in the summary. `seq` is advanced past every sequence number found (and
    /// to at least 1). Before the new segment is created, the newest existing one is
    /// fsynced: after a process crash it may hold bytes that were written but never
    /// synced, and it is about to become a sealed segment.
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
        create_dir_durably(fs.as_ref(), dir)?;
        seq.advance_to(SeqNo(1));
        let mut summary = RecoverySummary::default();
        let segments = list_segments(fs.as_ref(), dir)?;
        let count = segments.len();

        // Headers first: they say which segments the replay needs.
        let mut headers = Vec::with_capacity(count);
        for (i, (id, path)) in segments.iter().enumerate() {
            let (head, len) = read_head(fs.as_ref(), path)?;
            let problem = match SegmentHeader::decode(&head, path) {
                Ok(h) if h.id == *id => {
                    headers.push(HeaderState::Valid(h));
                    continue;
                }
                Ok(h) => wrong_id(path, h.id, *id),
                // A crash while creating the newest segment leaves its header unwritten;
                // nothing can have been acknowledged in it.
                Err(_) if i + 1 == count && unwritten(&head, len) => {
                    headers.push(HeaderState::Unwritten);
                    continue;
                }
                Err(e) => e,
            };
            if options.recovery_mode != RecoveryMode::Salvage {
                return Err(problem);
            }
            summary.skipped_regions += 1;
            summary.skipped_bytes += len;
            headers.push(HeaderState::Skipped);
        }

        let mut metas = Vec::with_capacity(count + 1);
        // The last sequence number of everything before the segment being looked at:
        // found in a scan, or bounded by the next segment's header when one is skipped.
        let mut bound: Option<SeqNo> = None;
        let mut found_last: Option<SeqNo> = None;
        let mut max_first_seq = SeqNo(1);
        let mut newest_kept: Option<&Path> = None;
        let mut last_salt = Salt::default();
        for (i, (id, path)) in segments.iter().enumerate() {
            let header = match headers[i] {
                HeaderState::Unwritten => {
                    fs.remove(path)?;
                    summary.removed_segments += 1;
                    continue;
                }
                HeaderState::Skipped => {
                    newest_kept = Some(path);
                    continue;
                }
                HeaderState::Valid(h) => h,
            };
            newest_kept = Some(path);
            last_salt = header.salt;
            max_first_seq = max_first_seq.max(header.first_seq);
            if let Some(last) = bound {
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
            let next_first = headers[i + 1..].iter().find_map(|h| match h {
                HeaderState::Valid(h) => Some(h.first_seq),
                _ => None,
            });
            let wholly_before = next_first.is_some_and(|n| n <= replay_from);
            if wholly_before && !is_last {
                // Not needed for replay; the next segment's header bounds its records.
                bound = next_first.map(SeqNo::prev).or(bound);
                continue;
            }
            let file = fs.open(path)?;
            let bytes = file.read_all()?;
            let tail = if is_last { Tail::Recover } else { Tail::Sealed };
            let outcome = scan_segment(
                &bytes,
                path,
                &header,
                bound,
                tail,
                options.recovery_mode,
                |seq, entries, payload| {
                    let record = WalRecord {
                        seq,
                        entries,
                        payload: payload.to_vec(),
                    };
                    found_last = Some(record.last_seq());
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
            bound = outcome.last_seq;
            if let Some((offset, reason)) = outcome.torn {
                // Cut the torn tail; the sync below makes the cut durable before any new
                // segment exists, so this segment is never a damaged non-last segment.
                file.truncate(offset)?;
                summary.torn_tail = Some(TornTail {
                    file: path.clone(),
                    offset,
                    dropped_bytes: bytes.len() as u64 - offset,
                    reason,
                });
            }
        }
        // Only the newest segment can hold unsynced bytes (every other one was fsynced
        // before its successor was created). After a process crash the page cache still
        // has them and the scan above replayed them; make them, and any torn-tail cut,
        // durable before a new segment turns this one into a sealed segment, where a
        // later power loss could no longer be told from corruption.
        if let Some(path) = newest_kept {
            fs.open(path)?.sync_data()?;
        }
        summary.last_seq = found_last;
        if let Some(last) = bound {
            seq.advance_to(last.plus(1));
        }
        seq.advance_to(max_first_seq);

        let next_segment_id = segments.last().map_or(1, |(id, _)| id.0 + 1);
        // A counter past the largest assignable number can assign nothing more; the
        // header still has to hold a valid first sequence number.
        let first_seq = seq.peek_next().min(SeqNo::MAX_ASSIGNABLE.plus(1));
        let salt = Salt::random_other_than(last_salt);
        let (active, meta) = create_segment(
            fs.as_ref(),
            dir,
            SegmentId(next_segment_id),
            first_seq,
            salt,
        )?;
        metas.push(meta);
        let written = first_seq.prev();
        let shared = Arc::new(Shared {
            fs,
            dir: dir.to_path_buf(),
            seq,
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_salt: active.salt,
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
            dir_lock: Mutex::new(()),
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
    /// that failed this append's group, [`Error::InvalidArgument`] for zero entries, or
    /// [`Error::SeqExhausted`] when the sequence numbers are used up.
    pub fn append(&self, payload: &[u8], entries: u32, commit: Commit) -> Result<SeqNo> {
        let counter = Arc::clone(&self.shared.seq);
        self.append_with(payload, entries, commit, |n| counter.reserve(n))
    }

    /// Like [`Wal::append`], but the sequence numbers are drawn by `reserve(entries)`,
    /// called while the log's queue lock is held, so that log order is sequence order.
    /// `reserve` must draw from this log's [`SeqCounter`] with
    /// [`SeqCounter::reserve`] (it may also record the reservation elsewhere, e.g. to
    /// publish it in order); it is not called when the append is refused up front.
    ///
    /// # Errors
    /// As [`Wal::append`]; also [`Error::InvalidArgument`] if `reserve` returns a
    /// number not above the last one in the log. When `reserve` was called and its
    /// number is refused (exhausted or not going forward), nothing was written and the
    /// reservation is not given back.
    pub fn append_with(
        &self,
        payload: &[u8],
        entries: u32,
        commit: Commit,
        reserve: impl FnOnce(u64) -> SeqNo,
    ) -> Result<SeqNo> {
        let mut st = self.shared.state.lock();
        let queued = self.shared.enqueue(&mut st, payload, entries, reserve)?;
        self.shared.wait_committed(&mut st, queued.last, commit)?;
        Ok(queued.first)
    }

    /// The first half of [`Wal::append_with`]: queues the record for the next group
    /// write and returns at once, without any I/O. The caller may then apply the
    /// record's effects (a memtable insert) while the group forms, and must call
    /// [`Wal::wait_committed`] before it acknowledges the write.
    ///
    /// # Errors
    /// As [`Wal::append_with`], except I/O errors, which only `wait_committed` reports.
    pub fn enqueue(
        &self,
        payload: &[u8],
        entries: u32,
        reserve: impl FnOnce(u64) -> SeqNo,
    ) -> Result<Queued> {
        let mut st = self.shared.state.lock();
        self.shared.enqueue(&mut st, payload, entries, reserve)
    }

    /// Waits until the record whose last sequence number is `last` is written
    /// (`Buffered`) or durable (`Sync`), writing or syncing the group itself when no
    /// other appender is (group commit).
    ///
    /// # Errors
    /// [`Error::Poisoned`] after an earlier failure, or the I/O error that failed this
    /// record's group.
    pub fn wait_committed(&self, last: SeqNo, commit: Commit) -> Result<()> {
        let mut st = self.shared.state.lock();
        self.shared.wait_committed(&mut st, last, commit)
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
    /// Concurrent calls are serialized; a segment file that is already gone counts as
    /// deleted.
    ///
    /// # Errors
    /// I/O errors from removing files or syncing the directory.
    pub fn remove_segments_before(&self, seq: SeqNo) -> Result<usize> {
        let shared = &*self.shared;
        let _dir = shared.dir_lock.lock();
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
        let mut removed = Vec::with_capacity(doomed.len());
        let mut result = Ok(());
        for id in doomed {
            match shared.fs.remove(&shared.dir.join(segment_file_name(id))) {
                Ok(()) => removed.push(id),
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => removed.push(id),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = shared.fs.sync_dir(&shared.dir);
        }
        let mut st = shared.state.lock();
        st.segments.retain(|m| !removed.contains(&m.id));
        result.map(|()| removed.len())
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

    /// Refuses further appends, makes every append accepted before it durable (writing
    /// what is still queued), declares the segment durable with a final sync mark and
    /// stops the background sync. Appends running concurrently are either refused with
    /// [`Error::Closed`] or durable when `close` returns `Ok`. Called by `Drop` too
    /// (errors are then ignored); a second call does nothing.
    ///
    /// # Errors
    /// [`Error::Poisoned`], or the I/O error of a final write or fsync.
    pub fn close(&self) -> Result<()> {
        let result = {
            let mut st = self.shared.state.lock();
            if st.closed {
                Ok(())
            } else {
                st.closed = true;
                self.shared.finish(&mut st)
            }
        };
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
    /// Queues one record (see [`Wal::enqueue`]).
    fn enqueue(
        &self,
        st: &mut parking_lot::MutexGuard<'_, State>,
        payload: &[u8],
        entries: u32,
        reserve: impl FnOnce(u64) -> SeqNo,
    ) -> Result<Queued> {
        if entries == 0 {
            return Err(Error::InvalidArgument(
                "a record must cover at least one entry".into(),
            ));
        }
        st.check_open()?;
        let span = u64::from(entries) - 1;
        let exhausted = || Error::SeqExhausted {
            requested: u64::from(entries),
        };
        // Refused up front when the space is already used up, so that `reserve` (and
        // whatever it records) never sees a reservation that cannot succeed.
        if self.seq.peek_next().0.saturating_add(span) > SeqNo::MAX_ASSIGNABLE.0 {
            return Err(exhausted());
        }
        let first = reserve(u64::from(entries));
        // A writer that bypasses the log may have taken the last numbers meanwhile.
        let last = match first.0.checked_add(span) {
            Some(last) if last <= SeqNo::MAX_ASSIGNABLE.0 => SeqNo(last),
            _ => return Err(exhausted()),
        };
        if first <= st.pending_last_seq {
            return Err(Error::InvalidArgument(format!(
                "reserve returned sequence number {first}, not above {}, the last one in \
                 the log: it must draw from this log's SeqCounter",
                st.pending_last_seq
            )));
        }
        if st.pending.is_empty() {
            st.pending_salt = st.active.salt;
            if st.synced_offset > st.marked_offset {
                let (salt, id, off) = (st.active.salt, st.active.id.0, st.synced_offset);
                encode_sync_mark(&mut st.pending, salt, id, off);
                st.marked_offset = off;
            }
            st.pending_first_seq = Some(first);
        }
        let salt = st.pending_salt;
        encode_record(&mut st.pending, salt, first, entries, payload);
        st.pending_last_seq = last;
        self.counters.records.fetch_add(1, Ordering::Relaxed);
        Ok(Queued { first, last })
    }

    /// Waits for a queued record (see [`Wal::wait_committed`]).
    fn wait_committed(
        &self,
        st: &mut parking_lot::MutexGuard<'_, State>,
        last: SeqNo,
        commit: Commit,
    ) -> Result<()> {
        let mut spins = 0;
        loop {
            let done = match commit {
                Commit::Buffered => st.written_seq >= last,
                Commit::Sync => st.synced_seq >= last,
            };
            if done {
                return Ok(());
            }
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if !st.writing && !st.pending.is_empty() {
                self.write_group(st)?;
            } else if commit == Commit::Sync && st.written_seq >= last && !st.syncing {
                self.sync_written(st)?;
            } else if commit == Commit::Buffered && st.writing && spins < BUFFERED_WAIT_SPINS {
                // A group write (one `pwrite`, about a microsecond) is in flight: wait
                // for it with the lock released and spinning, not parked, since parking
                // costs a context switch on each side, several times the write itself.
                spins += 1;
                parking_lot::MutexGuard::unlocked(st, || {
                    for _ in 0..32 {
                        std::hint::spin_loop();
                    }
                });
            } else {
                self.changed.wait(st);
            }
        }
    }

    /// Writes the pending group, rotating to a new segment first if the active one
    /// would grow past the limit. Called with the state locked, no write in progress
    /// and the log not poisoned; unlocks during I/O.
    fn write_group(&self, st: &mut parking_lot::MutexGuard<'_, State>) -> Result<()> {
        st.writing = true;
        let rotate = st.active.len > SEGMENT_HEADER_LEN as u64
            && st.active.len + st.pending.len() as u64 > self.options.segment_bytes;
        if rotate {
            // Rotation fsyncs the active segment: take the sync token so that no other
            // fsync of the file is in flight (see the module documentation).
            while st.syncing && st.poisoned.is_none() {
                self.changed.wait(st);
            }
            if let Some(cause) = st.poisoned.clone() {
                st.writing = false;
                self.changed.notify_all();
                return Err(Error::Poisoned { cause });
            }
            st.syncing = true;
        }
        let spare = std::mem::take(&mut st.spare);
        let mut group = std::mem::replace(&mut st.pending, spare);
        let group_salt = st.pending_salt;
        let upto = st.pending_last_seq;
        let group_first = st.pending_first_seq.take().unwrap_or(upto);
        let old_file = Arc::clone(&st.active.file);
        let old_salt = st.active.salt;
        let new_id = SegmentId(st.next_segment_id);
        let result = parking_lot::MutexGuard::unlocked(
            st,
            || -> Result<(Option<(Active, SegmentMeta)>, u64)> {
                let mut rotated = None;
                let (file, salt) = if rotate {
                    // Seal the old segment durably before the new one exists, so only the
                    // newest segment can ever have a torn tail.
                    old_file.sync_data()?;
                    self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                    let salt = Salt::random_other_than(old_salt);
                    let (active, meta) = {
                        let _dir = self.dir_lock.lock();
                        create_segment(self.fs.as_ref(), &self.dir, new_id, group_first, salt)?
                    };
                    self.counters
                        .segments_created
                        .fetch_add(1, Ordering::Relaxed);
                    let file = Arc::clone(&active.file);
                    rotated = Some((active, meta));
                    (file, salt)
                } else {
                    (old_file, old_salt)
                };
                // Records queued for another segment (before a rotation) are
                // re-checksummed for this one; their sync mark, about that segment, goes.
                let written = if salt == group_salt {
                    file.append(&group)?;
                    group.len()
                } else {
                    let regrouped = resalt(&group, salt);
                    file.append(&regrouped)?;
                    regrouped.len()
                };
                Ok((rotated, written as u64))
            },
        );
        st.writing = false;
        if rotate {
            st.syncing = false;
        }
        match result {
            Ok((rotated, written)) => {
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
                st.active.len += written;
                st.written_seq = st.written_seq.max(upto);
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_written
                    .fetch_add(written, Ordering::Relaxed);
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

    /// The body of `close`, called with `closed` just set: writes and fsyncs whatever
    /// was accepted before, then declares everything written durable with one last sync
    /// mark (fsynced too), so that later damage anywhere in a record of this segment is
    /// reported as corruption instead of being cut as a torn tail.
    fn finish(&self, st: &mut parking_lot::MutexGuard<'_, State>) -> Result<()> {
        loop {
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if st.writing || st.syncing {
                self.changed.wait(st);
            } else if !st.pending.is_empty() {
                self.write_group(st)?;
            } else if st.written_seq > st.synced_seq || st.active.len > st.synced_offset {
                self.sync_written(st)?;
            } else {
                break;
            }
        }
        if st.synced_offset <= st.marked_offset {
            return Ok(());
        }
        let mut mark = Vec::new();
        encode_sync_mark(&mut mark, st.active.salt, st.active.id.0, st.synced_offset);
        st.marked_offset = st.synced_offset;
        st.writing = true;
        st.syncing = true;
        let file = Arc::clone(&st.active.file);
        let result = parking_lot::MutexGuard::unlocked(st, || {
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
    salt: Salt,
) -> Result<(Active, SegmentMeta)> {
    let path = dir.join(segment_file_name(id));
    let file = fs.create(&path)?;
    file.append(
        &SegmentHeader {
            id,
            first_seq,
            salt,
        }
        .encode(),
    )?;
    file.sync_data()?;
    fs.sync_dir(dir)?;
    Ok((
        Active {
            id,
            salt,
            file,
            len: SEGMENT_HEADER_LEN as u64,
        },
        SegmentMeta { id, first_seq },
    ))
}

/// What recovery made of a segment's header.
#[derive(Debug, Clone, Copy)]
enum HeaderState {
    Valid(SegmentHeader),
    /// The newest segment's header was never completely written: the file is removed.
    Unwritten,
    /// Damaged or naming the wrong id, skipped in salvage mode (the file stays).
    Skipped,
}

/// The first bytes of a segment (up to a header's worth) and its length.
fn read_head(fs: &dyn Fs, path: &Path) -> Result<(Vec<u8>, u64)> {
    let file = fs.open(path)?;
    let len = file.len()?;
    let mut head = vec![0u8; len.min(SEGMENT_HEADER_LEN as u64) as usize];
    file.read_exact_at(0, &mut head)?;
    Ok((head, len))
}

/// Whether `bytes`, `len` bytes long, are the header of a newest segment that was never
/// completely written (see [`is_unwritten_header`]).
fn unwritten(bytes: &[u8], len: u64) -> bool {
    len <= SEGMENT_HEADER_LEN as u64 && is_unwritten_header(bytes)
}

fn wrong_id(path: &Path, found: SegmentId, expected: SegmentId) -> Error {
    Error::corruption(
        path,
        16,
        format!("header names segment {found} but the file is segment {expected}"),
    )
}

/// Creates `dir` (and missing parents) and makes its entry durable: the parent of
/// every directory created is fsynced, and `dir`'s own parent always (a crash after an
/// earlier run created it may have left its entry unsynced).
fn create_dir_durably(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fn parent_of(dir: &Path) -> Option<&Path> {
        match dir.parent() {
            Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
            other => other,
        }
    }
    let mut parents: Vec<&Path> = parent_of(dir).into_iter().collect();
    for ancestor in dir.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() || fs.exists(ancestor)? {
            break;
        }
        parents.extend(parent_of(ancestor));
    }
    fs.create_dir_all(dir)?;
    for parent in parents {
        fs.sync_dir(parent)?;
    }
    Ok(())
}

/// Reads the records of a log directory from a sequence number onward, for replay
/// tools and the change stream. Safe to use while a [`Wal`] appends to the directory:
/// a fragment cut off by the end of the newest segment is treated as not yet written.
/// Any other damage is corruption (strict mode) or skipped (salvage mode), so a
/// directory that may have crashed should be recovered by [`Wal::open`] (which cuts a
/// torn tail) before it is read in strict mode.
#[derive(Debug)]
pub struct WalReader {
    fs: Arc<dyn Fs>,
    from: SeqNo,
    mode: RecoveryMode,
    segments: std::collections::VecDeque<(SegmentId, PathBuf)>,
    buffered: std::collections::VecDeque<WalRecord>,
    last_seq: Option<SeqNo>,
    failed: bool,
    /// No process writes the log: judge the newest segment's tail as recovery does.
    closed: bool,
    /// The torn tail found where the reader stopped in the newest segment of a closed
    /// log (recovery would cut it there).
    torn_tail: Option<TornTail>,
}

impl WalReader {
    /// For a log no process is writing (an offline check): the newest segment's tail
    /// is judged as [`Wal::open`] judges it, so damage before its last sync mark is
    /// [`Error::Corruption`] and only what lies past it counts as a torn tail (where
    /// the reader stops), instead of taking a fragment cut off by the end of the file
    /// for one still being written.
    #[must_use]
    pub fn for_closed_log(mut self) -> Self {
        self.closed = true;
        self
    }

    /// For a reader made [`for_closed_log`](Self::for_closed_log), once it is read to
    /// its end: the torn tail of the newest segment that recovery would cut, if any
    /// (nothing is cut: the reader only reads).
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn_tail.as_ref()
    }

    /// Lists the segments of `dir`, checks their headers and positions the reader at the
    /// first record whose last sequence number is at or after `from`. The newest
    /// segment may have an unwritten header (it is being created); in salvage mode
    /// segments with a damaged header or the wrong id are skipped.
    ///
    /// # Errors
    /// I/O errors listing the directory or reading headers; [`Error::Corruption`] for
    /// a bad header in strict mode.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path, from: SeqNo, mode: RecoveryMode) -> Result<WalReader> {
        let all = list_segments(fs.as_ref(), dir)?;
        let count = all.len();
        // Each kept segment with its first sequence number (`None`: being created).
        let mut kept = Vec::with_capacity(count);
        for (i, (id, path)) in all.into_iter().enumerate() {
            let (head, len) = read_head(fs.as_ref(), &path)?;
            let problem = match SegmentHeader::decode(&head, &path) {
                Ok(h) if h.id == id => {
                    kept.push((id, path, Some(h.first_seq)));
                    continue;
                }
                Ok(h) => wrong_id(&path, h.id, id),
                Err(_) if i + 1 == count && unwritten(&head, len) => {
                    kept.push((id, path, None));
                    continue;
                }
                Err(e) => e,
            };
            if mode == RecoveryMode::Strict {
                return Err(problem);
            }
        }
        // Skip segments wholly before `from`: those followed by a segment whose first
        // sequence number is at or below `from`.
        let mut start = 0;
        for i in 0..kept.len() {
            if kept
                .get(i + 1)
                .and_then(|k| k.2)
                .is_some_and(|next| next <= from)
            {
                start = i + 1;
            }
        }
        Ok(WalReader {
            fs,
            from,
            mode,
            segments: kept
                .into_iter()
                .skip(start)
                .map(|(id, path, _)| (id, path))
                .collect(),
            buffered: Default::default(),
            last_seq: None,
            failed: false,
            closed: false,
            torn_tail: None,
        })
    }

    /// The oldest sequence number this directory's log can still yield: the first
    /// sequence number of the oldest segment, or `None` if there is no segment or the
    /// only one is still being created.
    ///
    /// # Errors
    /// I/O errors or [`Error::Corruption`] for a bad header.
    pub fn oldest_available(fs: &dyn Fs, dir: &Path) -> Result<Option<SeqNo>> {
        let segments = list_segments(fs, dir)?;
        let Some((id, path)) = segments.first() else {
            return Ok(None);
        };
        let (head, len) = read_head(fs, path)?;
        match SegmentHeader::decode(&head, path) {
            Ok(h) if h.id == *id => Ok(Some(h.first_seq)),
            Ok(h) => Err(wrong_id(path, h.id, *id)),
            Err(_) if segments.len() == 1 && unwritten(&head, len) => Ok(None),
            Err(e) => Err(e),
        }
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
            // The newest segment may be being created right now.
            Err(_) if is_last && unwritten(&bytes, bytes.len() as u64) => return Ok(true),
            _ if self.mode == RecoveryMode::Salvage => return Ok(true),
            Ok(h) => return Err(wrong_id(&path, h.id, id)),
            Err(e) => return Err(e),
        };
        let tail = match (is_last, self.closed) {
            (false, _) => Tail::Sealed,
            (true, false) => Tail::Live,
            (true, true) => Tail::Recover,
        };
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
        if let (Some((offset, reason)), Tail::Recover) = (outcome.torn, tail) {
            self.torn_tail = Some(TornTail {
                file: path,
                offset,
                dropped_bytes: bytes.len() as u64 - offset,
                reason,
            });
        }
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
