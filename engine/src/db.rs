//! The database: open and recovery, keyspaces, the write path and the read path.
//!
//! Write path: a write is encoded once as a WAL record; its sequence numbers are drawn
//! (and registered with the [`Publisher`]) under the WAL's queue lock, so log order is
//! sequence order; the WAL acknowledges it (`Buffered`: in the OS; `Sync`: fsynced,
//! group commit); then each entry goes into the memtable that owns its sequence number,
//! and the publisher makes the write visible to readers once every earlier sequence
//! number is applied too, without making the writer wait for the earlier ones. A read
//! "as of now" waits until the visible sequence number reaches the newest published
//! one and takes it as its snapshot, so it sees every write acknowledged before it
//! began.
//!
//! Read path: the keyspace's *view* (active memtable, sealed memtables, version of
//! tables) is one `Arc` swapped atomically by flushes and compactions; a read clones it
//! and searches newest data first, stopping at the first version visible to its
//! snapshot.
//!
//! Recovery: lock the directory, load the manifest, open every table, delete files the
//! manifest does not know, write a fresh manifest, and replay the WAL from the oldest
//! unflushed sequence number into memtables. See `docs/architecture.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use strata_wal::{Commit, FileLock, Fs, SeqCounter, SeqNo, StdFs, Wal, WalOptions};

use crate::batch::{decode_entries, encode_entries, BatchOp, WriteBatch};
use crate::cache::BlockCache;
use crate::compaction::{PolicyState, Pressure};
use crate::compaction_filter::CompactionFilter;
use crate::db_iter::{prefix_successor, Cursor, Iter};
use crate::error::{Error, Result};
use crate::history::{unix_millis, TimeMark, TimeMarks};
use crate::ids::{KeyspaceId, TableId};
use crate::iter::InternalIterator;
use crate::key::{ValueKind, MAX_KEY_LEN, MAX_VALUE_LEN};
use crate::manifest::{
    decode_current, manifest_file_name, read_manifest, KeyspaceRecord, ManifestState,
    ManifestWriter, VersionEdit, CURRENT,
};
use crate::memtable::{Memtable, PreparedEntry};
use crate::merge::{LevelIterator, MergingIterator};
use crate::options::{Durability, KeyspaceOptions, Options, WriteOptions};
use crate::snapshot::{SnapshotGuard, SnapshotList};
use crate::table::filter::bloom_hash;
use crate::table::Table;
use crate::version::{covered_by_prefix_tombstone, TableHandle, Version};

/// Name of the keyspace every database has.
pub const DEFAULT_KEYSPACE: &str = "default";
/// Subdirectory holding the WAL segments.
pub const WAL_DIR: &str = "wal";
/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

/// The file name of table `id`.
pub fn table_file_name(id: TableId) -> String {
    format!("{:06}.sst", id.0)
}

/// The id of a value-log segment file name (`{id:06}.vlog`).
fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".vlog")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_table_file_name(name: &str) -> Option<TableId> {
    let digits = name.strip_suffix(".sst")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok().map(TableId))
        .flatten()
}

/// Publishes sequence numbers to readers in order, without a lock.
///
/// A writer reserves its numbers from the shared [`SeqCounter`] (an atomic add; a
/// logged write does it under the WAL's queue lock, so log order is sequence order),
/// applies its entries to the memtables, then publishes its range. The *visible*
/// number only ever moves over a contiguous run of published ranges, so everything at
/// or below it is applied and a reader at it never sees a later write without every
/// earlier one.
///
/// Publishing does not wait for earlier ranges: the writer leaves its range in a slot
/// of a ring (indexed by its first number) and moves the visible number as far as the
/// published ranges reach; whichever writer publishes the range that closes a gap
/// carries the visible number over every range published behind it. Two ranges in
/// flight that want the same slot are rare (their first numbers must differ by a
/// multiple of [`PUBLISH_SLOTS`]); the later one then waits for its turn as a plain
/// in-order publisher would.
///
/// A read that must see every acknowledged write reads at [`Publisher::read_point`]:
/// the visible number once it has reached the newest *published* one (every
/// acknowledged write is published, since a writer publishes before it returns). It
/// never reads below the visible number, which flushes and compactions wait for before
/// they drop shadowed versions. It waits only when a range was published ahead of an
/// earlier one still being inserted (writers finishing out of order), and then only
/// for that insert (nothing between a reservation and its publication does I/O: a
/// logged write's WAL record is written and synced after it is published); with one
/// writer, or writers finishing in order, it never waits. Waiting spins briefly and
/// then parks (see [`Publisher::wait_until`]), so a waiter never burns the core that a
/// preempted writer it waits for needs.
///
/// Trade-off: write-only streams (agent event logs) never wait on one another, and
/// writes to different keyspaces share no lock; a reader that arrives while writers
/// finish out of order waits for the straggler's insert.
#[derive(Debug)]
pub(crate) struct Publisher {
    visible: AtomicU64,
    /// The last number of the newest range published (visible or not yet).
    published: AtomicU64,
    /// Published ranges not yet passed by `visible`, by first number modulo
    /// [`PUBLISH_SLOTS`].
    slots: Box<[PublishSlot]>,
    /// Threads parked in [`Publisher::wait_until`]; a publisher wakes them only when
    /// there are any, so the common path takes no lock.
    parked: AtomicU64,
    park: (Mutex<()>, Condvar),
}

/// Slots in the publisher's ring.
const PUBLISH_SLOTS: usize = 4096;

/// Set in [`PublishSlot::first`] once `last` is written: the range is published.
const SLOT_READY: u64 = 1 << 63;

/// One published range: `first | SLOT_READY` and its last number. A slot whose first
/// number (without the flag) is at or below the visible number is free.
#[derive(Debug, Default)]
struct PublishSlot {
    first: AtomicU64,
    last: AtomicU64,
}

impl Publisher {
    fn new(visible: SeqNo) -> Self {
        Publisher {
            visible: AtomicU64::new(visible.0),
            published: AtomicU64::new(visible.0),
            slots: (0..PUBLISH_SLOTS).map(|_| PublishSlot::default()).collect(),
            parked: AtomicU64::new(0),
            park: (Mutex::new(()), Condvar::new()),
        }
    }

    /// Reserves `count` sequence numbers from `counter`; `None` when they are used up
    /// (nothing is reserved then).
    pub(crate) fn reserve(&self, counter: &SeqCounter, count: u64) -> Option<SeqNo> {
        counter.try_reserve(count)
    }

    fn slot_of(&self, seq: u64) -> &PublishSlot {
        &self.slots[(seq % PUBLISH_SLOTS as u64) as usize]
    }

    /// Publishes the reservation `first..=last` (applied, or abandoned after a
    /// failure: either way later writes may become visible). Returns at once unless
    /// another unpublished range holds this range's slot; the range becomes visible
    /// once every earlier one is published.
    pub(crate) fn publish(&self, first: SeqNo, last: SeqNo) {
        let slot = self.slot_of(first.0);
        let held = slot.first.load(Ordering::SeqCst);
        let free = held & !SLOT_READY <= self.visible.load(Ordering::SeqCst);
        let claimed = free
            && slot
                .first
                .compare_exchange(held, first.0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        if claimed {
            slot.last.store(last.0, Ordering::SeqCst);
            // Paired with the compare-and-swap in `advance`: either this store is seen
            // by the writer that makes `first - 1` visible, or that writer's update of
            // the visible number is seen by the `advance` below.
            slot.first.store(first.0 | SLOT_READY, Ordering::SeqCst);
            self.advance(false);
        } else {
            // The slot holds a range still in flight: publish in order. Nothing else
            // can move the visible number past `first - 1` meanwhile.
            self.wait_until(|v| v >= first.0 - 1);
            let moved = self
                .visible
                .compare_exchange(first.0 - 1, last.0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            self.advance(moved);
        }
        // Before the writer returns: a read that starts after it reads at this number
        // or later.
        self.published.fetch_max(last.0, Ordering::SeqCst);
    }

    /// Moves the visible number over every published range that follows it, and
    /// wakes parked waiters if it moved (or `moved` says the caller moved it).
    fn advance(&self, mut moved: bool) {
        loop {
            let v = self.visible.load(Ordering::SeqCst);
            let next = v + 1;
            let slot = self.slot_of(next);
            if slot.first.load(Ordering::SeqCst) != next | SLOT_READY {
                break;
            }
            let last = slot.last.load(Ordering::SeqCst);
            // A failed exchange means another thread moved it: look again.
            if self
                .visible
                .compare_exchange(v, last, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                moved = true;
            }
        }
        if moved && self.parked.load(Ordering::SeqCst) > 0 {
            let _g = self.park.0.lock();
            self.park.1.notify_all();
        }
    }

    /// The newest sequence number whose write (and every earlier one) is applied.
    /// Writes acknowledged a moment ago may lie above it; reads that must see them
    /// use [`Publisher::read_point`].
    pub(crate) fn visible(&self) -> SeqNo {
        SeqNo(self.visible.load(Ordering::Acquire))
    }

    /// The sequence number a read "as of now" uses: the visible number once it has
    /// reached the newest published one. Every write acknowledged before this call is
    /// at or below it, and so is every version a flush or compaction installed before
    /// it dropped (they wait for the visible number; reading at the newest published
    /// number instead, which can lag the visible one, could miss a version a flush
    /// merged away).
    pub(crate) fn read_point(&self) -> SeqNo {
        let newest = SeqNo(self.published.load(Ordering::SeqCst));
        self.wait_visible(newest);
        self.visible()
    }

    /// Waits until `seq` is visible.
    pub(crate) fn wait_visible(&self, seq: SeqNo) {
        self.wait_until(|v| v >= seq.0);
    }

    /// Waits until `ready(visible)`: spins briefly (the writer waited for is usually
    /// mid-insert on the other core), then parks until a publication wakes it, so that
    /// a waiter never burns the core a preempted writer needs.
    fn wait_until(&self, ready: impl Fn(u64) -> bool) {
        for i in 0..SPINS_BEFORE_PARKING {
            if ready(self.visible.load(Ordering::Acquire)) {
                return;
            }
            if i < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let mut g = self.park.0.lock();
        self.parked.fetch_add(1, Ordering::SeqCst);
        // Counted before this check: a publication after it sees the count and wakes
        // this thread; one before it is seen here.
        while !ready(self.visible.load(Ordering::SeqCst)) {
            // The timeout is a safety net only.
            self.park
                .1
                .wait_for(&mut g, std::time::Duration::from_millis(1));
        }
        self.parked.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Spins (then yields) before a waiter parks.
const SPINS_BEFORE_PARKING: u32 = 80;

/// A memtable no longer written to by new sequence numbers, waiting for flush.
#[derive(Debug, Clone)]
pub(crate) struct SealedMemtable {
    pub memtable: Arc<Memtable>,
    /// First sequence number this memtable owns.
    pub first: SeqNo,
    /// First sequence number it does not own (the next memtable's `first`).
    pub end: SeqNo,
}

/// What a read of one keyspace sees: memtables and tables, swapped as one.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub active: Arc<Memtable>,
    /// First sequence number the active memtable owns.
    pub active_first: SeqNo,
    /// Sealed memtables, newest first.
    pub sealed: Vec<SealedMemtable>,
    pub version: Arc<Version>,
}

impl View {
    /// The memtable owning sequence number `seq`.
    fn memtable_for(&self, seq: SeqNo) -> &Arc<Memtable> {
        if seq >= self.active_first {
            return &self.active;
        }
        self.sealed
            .iter()
            .find(|s| s.first <= seq && seq < s.end)
            .map_or(&self.active, |s| &s.memtable)
    }

    fn memtables(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.active).chain(self.sealed.iter().map(|s| &s.memtable))
    }

    /// Every prefix tombstone this view knows: the manifest's and the memtables'.
    pub(crate) fn prefix_tombstones(&self) -> Vec<(Vec<u8>, SeqNo)> {
        let mut all: Vec<(Vec<u8>, SeqNo)> = self.version.prefix_tombstones.as_ref().clone();
        for m in self.memtables() {
            if m.has_prefix_tombstones() {
                all.extend(m.prefix_tombstones());
            }
        }
        all
    }
}

/// Background-work flags of one keyspace.
#[derive(Debug, Default)]
pub(crate) struct KeyspaceWork {
    pub flushing: bool,
    pub compacting: bool,
    /// A compaction job found the keyspace compacting; the running one goes again.
    pub compaction_requested: bool,
}

/// Counters of one keyspace.
#[derive(Debug, Default)]
pub(crate) struct KeyspaceCounters {
    pub user_bytes: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_read_bytes: AtomicU64,
    pub compaction_write_bytes: AtomicU64,
    pub stall_micros: AtomicU64,
    pub slowdowns: AtomicU64,
    pub stops: AtomicU64,
    /// Entries written (each entry of a batch counts).
    pub write_ops: AtomicU64,
    pub point_reads: AtomicU64,
    /// Iterators and cursors opened.
    pub scans: AtomicU64,
    /// Tables moved down without a rewrite.
    pub moves: AtomicU64,
    /// Tables deleted whole (only tombstones nobody needed).
    pub dropped_tables: AtomicU64,
    /// Values the user compaction filter dropped or changed.
    pub filtered: AtomicU64,
    /// Garbage-collection rounds of the value log.
    pub gc_runs: AtomicU64,
    /// Bytes of value-log records copied forward (by collection or by merges passing
    /// through segments due for it).
    pub gc_relocated_bytes: AtomicU64,
}

impl KeyspaceCounters {
    /// The operation counts as the compaction policy sees them.
    pub(crate) fn mix(&self) -> strata_compaction::WorkloadMix {
        strata_compaction::WorkloadMix {
            writes: self.write_ops.load(Ordering::Relaxed),
            write_bytes: self.user_bytes.load(Ordering::Relaxed),
            point_reads: self.point_reads.load(Ordering::Relaxed),
            scans: self.scans.load(Ordering::Relaxed),
            merge_input_bytes: self.compaction_read_bytes.load(Ordering::Relaxed),
            merge_output_bytes: self.compaction_write_bytes.load(Ordering::Relaxed),
        }
    }
}

/// One keyspace's live state.
#[derive(Debug)]
pub(crate) struct KeyspaceInner {
    pub id: KeyspaceId,
    pub name: String,
    pub options: KeyspaceOptions,
    pub view: RwLock<Arc<View>>,
    pub work: Mutex<KeyspaceWork>,
    pub dropped: AtomicBool,
    pub next_memtable_id: AtomicU64,
    pub counters: KeyspaceCounters,
    /// The compaction policy and what it has seen of the workload.
    pub policy: Mutex<PolicyState>,
    /// Compaction debt and level 0, as the write path needs them.
    pub pressure: Pressure,
    /// The user's compaction filter, if any.
    pub filter: RwLock<Option<Arc<dyn CompactionFilter>>>,
    /// When the next slowed write may start (see `DbInner::slow_down`).
    pub slowdown_next: Mutex<std::time::Instant>,
    /// Paces background value-log collection (`vlog_gc_bytes_per_sec`).
    pub gc_pacer: Option<crate::rate_limit::RateLimiter>,
    /// Reads at sequence numbers below this are no longer exact: flushes and
    /// compactions may have collected versions they needed (`crate::history`). Only
    /// grows; moved under the snapshot list's lock.
    pub history_floor: AtomicU64,
}

impl KeyspaceInner {
    fn new(
        id: KeyspaceId,
        name: String,
        options: KeyspaceOptions,
        version: Version,
        first: SeqNo,
    ) -> Result<Self> {
        let policy = crate::compaction::make_policy(&options)?;
        let gc_pacer = options
            .vlog_gc_bytes_per_sec
            .map(crate::rate_limit::RateLimiter::new);
        let memtable_bytes = options.memtable_bytes;
        let ks = KeyspaceInner {
            id,
            name,
            options,
            view: RwLock::new(Arc::new(View {
                active: Arc::new(Memtable::new(1, memtable_bytes)),
                active_first: first,
                sealed: Vec::new(),
                version: Arc::new(version),
            })),
            work: Mutex::new(KeyspaceWork::default()),
            dropped: AtomicBool::new(false),
            next_memtable_id: AtomicU64::new(2),
            counters: KeyspaceCounters::default(),
            policy: Mutex::new(PolicyState::new(policy)),
            pressure: Pressure::default(),
            filter: RwLock::new(None),
            slowdown_next: Mutex::new(std::time::Instant::now()),
            gc_pacer,
            history_floor: AtomicU64::new(0),
        };
        crate::compaction::refresh_pressure(&ks);
        Ok(ks)
    }

    /// Whether a full active memtable may be sealed now: level 0 would stay within
    /// `l0_stop_trigger` and the sealed memtables within `max_sealed_memtables`, and
    /// the projected compaction debt below `hard_pending_compaction_bytes` (or no
    /// compaction is due that could lower it).
    pub(crate) fn seal_allowed(&self, view: &View) -> bool {
        let l0 = view.version.table_count(0);
        let sealed = view.sealed.len();
        let o = &self.options;
        let p = &self.pressure;
        l0 + sealed < o.l0_stop_trigger
            && sealed < o.max_sealed_memtables
            && (p.projected_bytes.load(Ordering::Relaxed) < o.hard_pending_compaction_bytes
                || !p.due.load(Ordering::Relaxed))
    }

    pub(crate) fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read())
    }

    /// Whether the keyspace keeps a history window.
    pub(crate) fn keeps_history(&self) -> bool {
        self.options.history_seqs.is_some() || self.options.history_age.is_some()
    }
}

/// Time marks noted while the database runs (`crate::history`).
#[derive(Debug, Default)]
pub(crate) struct MarkBook {
    /// Every mark, persisted or not.
    pub marks: TimeMarks,
    /// Marks not yet in the manifest.
    pub pending: Vec<TimeMark>,
    /// When pending marks were last written to the manifest.
    pub persisted_at: Option<std::time::Instant>,
}

/// Keyspaces by id and by name.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub by_id: HashMap<KeyspaceId, Arc<KeyspaceInner>>,
    pub by_name: HashMap<String, KeyspaceId>,
}

/// The manifest writer and the state it describes; changed only under this lock.
#[derive(Debug)]
pub(crate) struct Meta {
    pub manifest: ManifestWriter,
    pub state: ManifestState,
    /// A write to `manifest` failed: its end may hold a torn record and the writer
    /// refuses more, so the next edit (or `mark_durable`) first writes the state to
    /// a new manifest.
    pub manifest_write_failed: bool,
}

impl Meta {
    /// Checks `edit` against a copy of the state, appends it to the manifest (fsynced),
    /// optionally declares it durable, then applies it. An edit that does not fit the
    /// state never reaches the disk.
    ///
    /// Failures, and what they leave:
    /// - the write of the edit failed (`manifest::write_failed`): at most a torn
    ///   record, never read back; the state is unchanged and the next edit first
    ///   writes the whole state to a new manifest;
    /// - the fsync of the edit failed: the edit may be on disk or not (the caller
    ///   poisons the database);
    /// - only the write of the sync mark after it failed: the edit itself is complete
    ///   and fsynced, so it counts (the state is applied, `Ok` is returned) and the
    ///   next edit starts a new manifest.
    ///
    /// When the manifest passes `rollover_bytes`, the whole state is written to a new
    /// manifest (numbered from `next_file`) and installed atomically, so the manifest
    /// stays small while the database runs; if that fails for want of space the edit
    /// stands in the current one and the rollover is tried at a later edit.
    pub(crate) fn commit(
        &mut self,
        edit: &VersionEdit,
        mark_durable: bool,
        next_file: &AtomicU64,
        rollover_bytes: u64,
    ) -> Result<()> {
        let mut next = self.state.clone();
        next.apply(edit).map_err(|why| {
            Error::InvalidArgument(format!(
                "internal error: a manifest edit does not apply: {why}"
            ))
        })?;
        if self.manifest_write_failed {
            // The edit is not written at all if this fails: tagged as such.
            self.roll_over(next_file).map_err(as_not_written)?;
        }
        if let Err(e) = self.manifest.append(edit) {
            self.manifest_write_failed |= crate::manifest::write_failed(&e);
            return Err(e);
        }
        if mark_durable {
            if let Err(e) = self.manifest.mark_durable() {
                if !crate::manifest::write_failed(&e) {
                    return Err(e);
                }
                self.manifest_write_failed = true;
            }
        }
        self.state = next;
        // Past the limit, and at least twice its own snapshot (a large state must not
        // roll over at every edit).
        if self.manifest.len() > rollover_bytes.max(2 * self.manifest.base_len()) {
            match self.roll_over(next_file) {
                Ok(()) => {}
                // Nothing was installed: the edit stands in the current manifest.
                Err(e) if is_out_of_space(&e) && !crate::manifest::install_failed(&e) => {}
                Err(e) => {
                    // Which manifest is installed is unknown: nothing more may be
                    // appended to the current one (a commit still under way when the
                    // database is poisoned rolls over first, or fails).
                    self.manifest_write_failed = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Declares every edit appended so far durable: a sync mark, or, after a failed
    /// manifest write, the whole state in a new manifest (synced before it is
    /// installed).
    pub(crate) fn mark_durable(&mut self, next_file: &AtomicU64) -> Result<()> {
        if self.manifest_write_failed {
            return self.roll_over(next_file).map_err(as_not_written);
        }
        self.manifest.mark_durable().inspect_err(|e| {
            self.manifest_write_failed |= crate::manifest::write_failed(e);
        })
    }

    /// Writes the whole state to a new manifest and installs it with `CURRENT`.
    fn roll_over(&mut self, next_file: &AtomicU64) -> Result<()> {
        let number = next_file.fetch_add(1, Ordering::SeqCst);
        // A later open numbers its manifest and tables past everything used so far.
        self.state.next_file_number = self
            .state
            .next_file_number
            .max(next_file.load(Ordering::SeqCst));
        let previous = self.manifest.number();
        let fs = Arc::clone(self.manifest.fs());
        let dir = self.manifest.dir().to_path_buf();
        self.manifest = ManifestWriter::create(fs, &dir, number, &self.state, Some(previous))?;
        self.manifest_write_failed = false;
        Ok(())
    }
}

/// Tags a rollover's out-of-space error, from before an edit's append, as "the edit
/// was not written" (see [`DbInner::edit_never_written`]), unless the rollover may have
/// installed a new manifest (`manifest::install_failed`).
fn as_not_written(e: Error) -> Error {
    if !is_out_of_space(&e) || crate::manifest::install_failed(&e) {
        return e;
    }
    match e {
        Error::Io { path, source, .. } => Error::Io {
            op: crate::manifest::MANIFEST_WRITE_FAILED,
            path,
            source,
        },
        other => other,
    }
}

/// Whether `e` is the file system running out of space (`ENOSPC`): background work
/// that fails for it is retried once space may have returned, instead of poisoning
/// the database.
pub(crate) fn is_out_of_space(e: &Error) -> bool {
    e.io_kind() == Some(std::io::ErrorKind::StorageFull)
}

/// How long background work that failed for want of space waits before it is tried
/// again.
pub(crate) const FULL_DISK_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// Every this many point reads of a keyspace (and 1/64 as many scans) a compaction job
/// is queued, so an adaptive policy sees a read-heavy mix even when nothing is flushed.
const POLICY_NUDGE_OPS: u64 = 1 << 16;

/// Work for the background threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Job {
    Flush(KeyspaceId),
    Compact(KeyspaceId),
    Stop,
}

/// Database-wide counters.
#[derive(Debug, Default)]
pub(crate) struct DbCounters {
    pub writes: AtomicU64,
    /// Writes through the WAL.
    pub logged_writes: AtomicU64,
    pub background_errors: AtomicU64,
    /// Background failures for want of space, deferred and retried (not poisoning).
    pub full_disk_errors: AtomicU64,
}

/// Everything behind a [`Db`] handle.
pub(crate) struct DbInner {
    pub path: PathBuf,
    pub fs: Arc<dyn Fs>,
    pub options: Options,
    pub wal: Wal,
    pub seq: Arc<SeqCounter>,
    pub publisher: Publisher,
    pub cache: Arc<BlockCache>,
    pub catalog: RwLock<Catalog>,
    pub meta: Mutex<Meta>,
    /// Time marks. Lock order: `meta`, then the snapshot list, then this; nothing
    /// else is locked while this is held.
    pub marks: Mutex<MarkBook>,
    pub next_file: AtomicU64,
    pub snapshots: Arc<SnapshotList>,
    pub jobs: crossbeam_channel::Sender<Job>,
    jobs_rx: crossbeam_channel::Receiver<Job>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    poisoned: Mutex<Option<String>>,
    /// Set (after `poisoned`) when the database is poisoned.
    is_poisoned: AtomicBool,
    /// Set when `close` begins: bypass writes reserved after it are refused, so the
    /// flush that close runs covers every acknowledged one.
    closing: AtomicBool,
    closed: AtomicBool,
    lock: Mutex<Option<Box<dyn FileLock>>>,
    /// Woken whenever a flush or compaction finishes (stalled writers wait on it).
    pub progress: (Mutex<()>, Condvar),
    /// When background work that failed for want of space is tried again (see
    /// [`DbInner::defer_after_full_disk`]).
    pub full_disk_retry_at: Mutex<Option<std::time::Instant>>,
    pub counters: DbCounters,
    /// Paces background writes (`Options::compaction_write_bytes_per_sec`).
    pub rate_limiter: crate::rate_limit::RateLimiter,
    /// Tells this open database from any other in the process (batches and snapshots
    /// must not mix keyspaces of two databases).
    pub instance: u64,
}

/// Source of [`DbInner::instance`].
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Debug for DbInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbInner")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Closes the database when the last user handle goes away.
#[derive(Debug)]
pub(crate) struct DbHandle {
    pub inner: Arc<DbInner>,
}

impl Drop for DbHandle {
    fn drop(&mut self) {
        let _ = self.inner.close();
    }
}

/// An open database. Cheap to clone; all methods take `&self`; `Send + Sync`.
/// Dropping the last handle (and every [`Keyspace`] and [`Snapshot`]) closes it.
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) handle: Arc<DbHandle>,
}

/// A handle to one keyspace. Cheap to clone; keeps the database open.
#[derive(Debug, Clone)]
pub struct Keyspace {
    pub(crate) db: Arc<DbHandle>,
    pub(crate) ks: Arc<KeyspaceInner>,
}

/// A consistent point-in-time view of the whole database, across keyspaces. Versions
/// it can see are kept by compaction until it is dropped.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) db: Arc<DbHandle>,
    pub(crate) guard: SnapshotGuard,
    /// Keyspaces whose history no longer held the sequence number when it was pinned
    /// (only for [`Db::snapshot_at`]); reads of them fail.
    pub(crate) unretained: crate::history::Unretained,
}

/// One write request, borrowed from the caller.
struct WriteReq<'a> {
    op: BatchOp,
    ks: &'a Arc<KeyspaceInner>,
    key: &'a [u8],
    value: &'a [u8],
}

/// Opens a database step by step: `Db::builder(path).background_threads(1).open()`.
#[derive(Debug, Clone)]
pub struct DbBuilder {
    path: PathBuf,
    options: Options,
    fs: Option<Arc<dyn Fs>>,
}

impl DbBuilder {
    /// Replaces every option at once.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// See [`Options::create_if_missing`].
    pub fn create_if_missing(mut self, yes: bool) -> Self {
        self.options.create_if_missing = yes;
        self
    }

    /// See [`Options::background_threads`].
    pub fn background_threads(mut self, n: usize) -> Self {
        self.options.background_threads = n;
        self
    }

    /// See [`Options::block_cache_bytes`].
    pub fn block_cache_bytes(mut self, bytes: usize) -> Self {
        self.options.block_cache_bytes = bytes;
        self
    }

    /// See [`Options::use_mmap`].
    pub fn use_mmap(mut self, yes: bool) -> Self {
        self.options.use_mmap = yes;
        self
    }

    /// See [`Options::wal_sync_interval`].
    pub fn wal_sync_interval(mut self, interval: std::time::Duration) -> Self {
        self.options.wal_sync_interval = interval;
        self
    }

    /// See [`Options::max_wal_bytes`].
    pub fn max_wal_bytes(mut self, bytes: u64) -> Self {
        self.options.max_wal_bytes = bytes;
        self
    }

    /// Uses `fs` instead of the real file system (a [`strata_wal::FaultFs`] in tests).
    pub fn fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = Some(fs);
        self
    }

    /// Opens the database.
    ///
    /// # Errors
    /// As [`Db::open`].
    pub fn open(self) -> Result<Db> {
        let fs = self.fs.unwrap_or_else(|| Arc::new(StdFs::new()));
        Db::open_with_fs(self.path, self.options, fs)
    }
}

impl Db {
    /// A builder for opening the database in `path` with non-default options.
    pub fn builder(path: impl AsRef<Path>) -> DbBuilder {
        DbBuilder {
            path: path.as_ref().to_path_buf(),
            options: Options::default(),
            fs: None,
        }
    }

    /// Opens (creating if allowed) the database in directory `path` on the real file
    /// system.
    ///
    /// # Errors
    /// [`Error::Locked`] if open elsewhere, [`Error::Corruption`] for damage found
    /// during recovery, [`Error::InvalidArgument`] for bad options, I/O errors.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        Db::open_with_fs(path, options, Arc::new(StdFs::new()))
    }

    /// Opens the database through `fs` (a [`strata_wal::FaultFs`] in tests).
    ///
    /// # Errors
    /// As [`Db::open`].
    pub fn open_with_fs(path: impl AsRef<Path>, options: Options, fs: Arc<dyn Fs>) -> Result<Db> {
        let inner = DbInner::open(path.as_ref(), options, fs)?;
        Ok(Db {
            handle: Arc::new(DbHandle { inner }),
        })
    }

    pub(crate) fn inner(&self) -> &Arc<DbInner> {
        &self.handle.inner
    }

    /// The keyspace named `name`.
    ///
    /// # Errors
    /// [`Error::UnknownKeyspace`].
    pub fn keyspace(&self, name: &str) -> Result<Keyspace> {
        let ks = self.inner().keyspace_by_name(name)?;
        Ok(Keyspace {
            db: Arc::clone(&self.handle),
            ks,
        })
    }

    /// The `default` keyspace, which every database has.
    ///
    /// # Errors
    /// [`Error::UnknownKeyspace`] only if it was dropped.
    pub fn default_keyspace(&self) -> Result<Keyspace> {
        self.keyspace(DEFAULT_KEYSPACE)
    }

    /// Creates keyspace `name` with `options`; durable when this returns.
    ///
    /// # Errors
    /// [`Error::KeyspaceExists`], [`Error::InvalidArgument`] for a bad name or
    /// options, I/O errors writing the manifest.
    pub fn create_keyspace(&self, name: &str, options: KeyspaceOptions) -> Result<Keyspace> {
        let ks = self.inner().create_keyspace(name, options)?;
        Ok(Keyspace {
            db: Arc::clone(&self.handle),
            ks,
        })
    }

    /// The keyspace `name`, created with `options` if it does not exist. An existing
    /// keyspace keeps the options it was created with.
    ///
    /// # Errors
    /// As [`Db::create_keyspace`].
    pub fn keyspace_or_create(&self, name: &str, options: KeyspaceOptions) -> Result<Keyspace> {
        match self.keyspace(name) {
            Ok(ks) => Ok(ks),
            Err(Error::UnknownKeyspace(_)) => match self.create_keyspace(name, options) {
                Err(Error::KeyspaceExists(_)) => self.keyspace(name),
                other => other,
            },
            Err(e) => Err(e),
        }
    }

    /// Names of every keyspace, sorted.
    pub fn list_keyspaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner()
            .catalog
            .read()
            .by_name
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Drops keyspace `name` and every key in it; durable when this returns. Handles
    /// to it return [`Error::UnknownKeyspace`] afterwards.
    ///
    /// # Errors
    /// [`Error::UnknownKeyspace`], I/O errors writing the manifest.
    pub fn drop_keyspace(&self, name: &str) -> Result<()> {
        self.inner().drop_keyspace(name)
    }

    /// Applies `batch` atomically with its keyspaces' default durability: the
    /// strongest among the logged keyspaces it touches, or WAL-bypass for a batch
    /// within one bypass keyspace (see [`WriteOptions::durability`] and
    /// `docs/durability.md`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for oversized keys or values, for a batch mixing a
    /// bypass keyspace with a logged one or spanning two bypass keyspaces,
    /// [`Error::UnknownKeyspace`] if a keyspace was dropped, [`Error::Poisoned`] after an
    /// I/O failure, [`Error::Closed`].
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_opt(batch, &WriteOptions::default())
    }

    /// Applies `batch` atomically with `options`.
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn write_opt(&self, batch: WriteBatch, options: &WriteOptions) -> Result<()> {
        batch.check()?;
        let inner = self.inner();
        if batch.instance.is_some_and(|i| i != inner.instance) {
            return Err(Error::InvalidArgument(
                "the batch's keyspaces belong to another database".into(),
            ));
        }
        let resolved: Vec<Arc<KeyspaceInner>> = {
            let catalog = inner.catalog.read();
            batch
                .entries
                .iter()
                .map(|e| {
                    catalog
                        .by_id
                        .get(&e.keyspace)
                        .cloned()
                        .ok_or_else(|| Error::UnknownKeyspace(format!("(id {})", e.keyspace)))
                })
                .collect::<Result<_>>()?
        };
        let reqs: Vec<WriteReq<'_>> = batch
            .entries
            .iter()
            .zip(&resolved)
            .map(|(e, ks)| WriteReq {
                op: e.op,
                ks,
                key: &e.key,
                value: &e.value,
            })
            .collect();
        inner.write(&reqs, options)
    }

    /// A snapshot of the whole database as of now.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner();
        Snapshot {
            db: Arc::clone(&self.handle),
            guard: inner.pin_now(),
            unretained: Arc::default(),
        }
    }

    /// The sequence number of the newest write: every write acknowledged before this
    /// call is at or below it, and all of them are visible when it returns.
    pub fn latest_seqno(&self) -> SeqNo {
        self.inner().publisher.read_point()
    }

    /// Flushes every keyspace's memtables to tables and waits until done.
    ///
    /// # Errors
    /// I/O errors from the flush; [`Error::Closed`].
    pub fn flush(&self) -> Result<()> {
        let all: Vec<Arc<KeyspaceInner>> = self
            .inner()
            .catalog
            .read()
            .by_id
            .values()
            .cloned()
            .collect();
        for ks in all {
            self.inner().flush_keyspace(&ks)?;
        }
        Ok(())
    }

    /// Flushes `keyspace`'s memtables to tables and returns once they are durable:
    /// every write to it acknowledged before the call then survives any crash,
    /// WAL-bypass writes included (the same as [`Keyspace::flush`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a keyspace of another database; I/O errors from
    /// the flush; [`Error::Closed`].
    pub fn flush_keyspace(&self, keyspace: &Keyspace) -> Result<()> {
        self.check_own(keyspace)?;
        keyspace.flush()
    }

    fn check_own(&self, keyspace: &Keyspace) -> Result<()> {
        if keyspace.instance() != self.inner().instance {
            return Err(Error::InvalidArgument(format!(
                "keyspace {:?} belongs to another database",
                keyspace.name()
            )));
        }
        Ok(())
    }

    /// Runs every due flush and compaction to completion (in the calling thread when
    /// no background thread is on it) and returns once none is left: the tree is then
    /// within its level targets. Useful before measuring, and in tests.
    ///
    /// # Errors
    /// I/O or corruption errors from the work; [`Error::Closed`].
    pub fn wait_for_background_work(&self) -> Result<()> {
        let inner = self.inner();
        loop {
            inner.check_writable()?;
            let all: Vec<Arc<KeyspaceInner>> =
                inner.catalog.read().by_id.values().cloned().collect();
            // A flush the write-buffer budget asks for is due work too (writers seal
            // for it only every 64 writes, and not while flushes lag).
            let mut busy = inner.enforce_write_buffer_budget();
            for ks in &all {
                while crate::background::flush_oldest(inner, ks)? {}
                while crate::compaction::compact_once(inner, ks)? {}
                let mut work = ks.work.lock();
                busy |= work.flushing || work.compacting || !ks.view().sealed.is_empty();
                // A worker that found this thread holding the compaction flag left its
                // request here (and returned): hand it back, or the value-log
                // collection it would have run waits for the next flush.
                if std::mem::take(&mut work.compaction_requested) {
                    let _ = inner.jobs.send(Job::Compact(ks.id));
                }
                drop(work);
                busy |= crate::compaction::compaction_due(ks);
            }
            // Level 0 may have refused the budget's seal above; it has room now.
            busy |= inner.enforce_write_buffer_budget();
            if !busy {
                return Ok(());
            }
            let (lock, cond) = &inner.progress;
            let mut g = lock.lock();
            cond.wait_for(&mut g, std::time::Duration::from_millis(10));
        }
    }

    /// Makes every acknowledged write durable (fsyncs the WAL).
    ///
    /// # Errors
    /// The fsync's error (which poisons the database).
    pub fn sync_wal(&self) -> Result<()> {
        self.inner().wal.sync().map_err(Error::from)
    }

    /// Collects `keyspace`'s value-log garbage now, unpaced: compacts the keyspace's
    /// tree when pointers sit in more than one sorted run (so values only old,
    /// unreadable versions pointed at count as garbage), then copies the live values
    /// of every segment at or past `vlog_gc_garbage_ratio` forward, and more while
    /// the value log is above `max_space_amplification`, and deletes the segments
    /// emptied once no reader holds them. Background collection does the same work
    /// (without the compaction) after compactions, paced by `vlog_gc_bytes_per_sec`.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::UnknownKeyspace`], I/O or corruption errors
    /// (which poison the database).
    pub fn gc_value_log(&self, keyspace: &Keyspace) -> Result<crate::GcReport> {
        self.check_own(keyspace)?;
        crate::compaction::gc_value_log(self.inner(), &keyspace.ks)
    }

    /// Statistics for tuning; see [`crate::Stats`].
    pub fn stats(&self) -> crate::stats::Stats {
        crate::stats::collect(self.inner())
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.inner().path
    }

    /// Stops background work, syncs the WAL and releases the directory lock. Later
    /// calls on any handle return [`Error::Closed`]. Dropping the last handle does
    /// the same.
    ///
    /// # Errors
    /// The final WAL sync's error.
    pub fn close(&self) -> Result<()> {
        self.inner().close()
    }
}

impl DbInner {
    fn open(path: &Path, options: Options, fs: Arc<dyn Fs>) -> Result<Arc<DbInner>> {
        options.validate()?;
        if !fs.exists(path)? {
            if !options.create_if_missing {
                return Err(Error::InvalidArgument(format!(
                    "{} does not exist and create_if_missing is false",
                    path.display()
                )));
            }
            fs.create_dir_all(path)?;
        }
        let lock = fs.lock(&path.join(LOCK_FILE))?;
        if crate::checkpoint::is_incomplete(fs.as_ref(), path)? {
            return Err(Error::corruption(
                path.join(crate::checkpoint::INCOMPLETE_MARKER),
                0,
                "a checkpoint, backup or restore into this directory was interrupted, so it \
                 is not a complete database; delete the directory and make the copy again",
            ));
        }
        let names = fs.list(path)?;
        let current_path = path.join(CURRENT);
        let (mut state, previous_manifest) = if names.iter().any(|n| n == CURRENT) {
            let bytes = fs.open(&current_path)?.read_all()?;
            let number = decode_current(&bytes, &current_path)?;
            let manifest_path = path.join(manifest_file_name(number));
            if !fs.exists(&manifest_path)? {
                return Err(Error::corruption(
                    &manifest_path,
                    0,
                    "the manifest named by CURRENT is missing",
                ));
            }
            let (state, _) = read_manifest(fs.as_ref(), &manifest_path, number)?;
            (state, Some(number))
        } else {
            if names
                .iter()
                .any(|n| parse_table_file_name(n).is_some() || parse_segment_file_name(n).is_some())
            {
                return Err(Error::corruption(
                    &current_path,
                    0,
                    "CURRENT is missing but table files exist; restore CURRENT or the database",
                ));
            }
            if !options.create_if_missing {
                return Err(Error::InvalidArgument(format!(
                    "no database in {} and create_if_missing is false",
                    path.display()
                )));
            }
            let mut state = ManifestState {
                next_file_number: 1,
                next_keyspace_id: 1,
                ..ManifestState::default()
            };
            let edit = VersionEdit {
                created_keyspaces: vec![KeyspaceRecord {
                    id: KeyspaceId(0),
                    name: DEFAULT_KEYSPACE.to_string(),
                    options: KeyspaceOptions::default().encode(),
                }],
                ..VersionEdit::default()
            };
            state.apply(&edit).map_err(Error::InvalidArgument)?;
            (state, None)
        };

        let cache = Arc::new(BlockCache::new(options.block_cache_bytes));
        // Open every table the manifest lists.
        let mut keyspaces = Vec::new();
        let mut live_tables = std::collections::HashSet::new();
        let mut live_segments = std::collections::HashSet::new();
        for (id, ks_state) in &state.keyspaces {
            let record = ks_state.record.as_ref().ok_or_else(|| {
                Error::corruption(
                    path.join(manifest_file_name(previous_manifest.unwrap_or(0))),
                    0,
                    format!("keyspace {id} has no name"),
                )
            })?;
            let ks_options = KeyspaceOptions::decode(&record.options).ok_or_else(|| {
                Error::corruption(
                    path.join(manifest_file_name(previous_manifest.unwrap_or(0))),
                    0,
                    format!("options of keyspace {:?} do not decode", record.name),
                )
            })?;
            let mut handles = Vec::new();
            for meta in ks_state.tables.values() {
                let table_path = path.join(table_file_name(meta.id));
                if !fs.exists(&table_path)? {
                    return Err(Error::corruption(
                        &table_path,
                        0,
                        "table listed in the manifest is missing",
                    ));
                }
                let file = fs.open(&table_path)?;
                let table = Table::open(file, meta.id, Some(Arc::clone(&cache)), options.use_mmap)?;
                live_tables.insert(meta.id);
                handles.push(Arc::new(TableHandle::new(
                    meta.clone(),
                    table,
                    Arc::clone(&fs),
                    table_path,
                )));
            }
            let mut segments = crate::value_log::SegmentMap::new();
            for meta in ks_state.segments.values() {
                let segment = crate::value_log::SegmentHandle::open(&fs, path, *id, *meta)?;
                live_segments.insert(meta.id);
                segments.insert(meta.id, Arc::new(segment));
            }
            let mut version = Version::empty().apply(&[], &handles);
            version.prefix_tombstones = Arc::new(ks_state.prefix_tombstones.clone());
            version.segments = Arc::new(segments);
            keyspaces.push(Arc::new(KeyspaceInner::new(
                *id,
                record.name.clone(),
                ks_options,
                version,
                ks_state.flushed_seq.plus(1),
            )?));
        }
        // Remove files the manifest does not know: tables of unfinished flushes or
        // compactions, old manifests, a half-written CURRENT.tmp.
        for name in &names {
            let orphan = match (parse_table_file_name(name), parse_segment_file_name(name)) {
                (Some(id), _) => !live_tables.contains(&id),
                (None, Some(id)) => !live_segments.contains(&id),
                (None, None) => {
                    (name.starts_with("MANIFEST-")
                        && Some(name.as_str())
                            != previous_manifest.map(manifest_file_name).as_deref())
                        || name == "CURRENT.tmp"
                }
            };
            if orphan {
                fs.remove(&path.join(name))?;
            }
        }
        // A fresh manifest: one snapshot edit, installed atomically.
        let manifest_number = state.next_file_number;
        state.next_file_number = state.next_file_number.checked_add(1).ok_or_else(|| {
            Error::corruption(
                path.join(CURRENT),
                0,
                "the manifest's file-number counter is exhausted",
            )
        })?;
        let manifest = ManifestWriter::create(
            Arc::clone(&fs),
            path,
            manifest_number,
            &state,
            previous_manifest,
        )?;

        // Replay the WAL from the oldest unflushed sequence number.
        // Past every sequence number a table or a flushed point can name.
        let floor = state
            .keyspaces
            .values()
            .map(|k| k.flushed_seq)
            .fold(state.last_seq, SeqNo::max);
        let seq = Arc::new(SeqCounter::new(floor.plus(1)));
        // Bypass keyspaces hold their last flush; nothing of theirs is replayed.
        let logged: std::collections::HashSet<KeyspaceId> = keyspaces
            .iter()
            .filter(|k| k.options.durability.is_logged())
            .map(|k| k.id)
            .collect();
        let replay_from = state
            .keyspaces
            .iter()
            .filter(|(id, _)| logged.contains(id))
            .map(|(_, k)| k.flushed_seq.plus(1))
            .min()
            .unwrap_or(floor.plus(1));
        let by_id: HashMap<KeyspaceId, Arc<KeyspaceInner>> =
            keyspaces.iter().map(|k| (k.id, Arc::clone(k))).collect();
        let wal_dir = path.join(WAL_DIR);
        let wal_options = WalOptions {
            segment_bytes: options.wal_segment_bytes,
            sync_interval: Some(options.wal_sync_interval),
            recovery_mode: options.wal_recovery_mode,
        };
        let (wal, _summary) = Wal::open(
            Arc::clone(&fs),
            &wal_dir,
            wal_options,
            Arc::clone(&seq),
            replay_from,
            |record| {
                let entries = decode_entries(&record.payload).ok_or_else(|| {
                    strata_wal::Error::corruption(
                        &wal_dir,
                        record.seq.0,
                        format!(
                            "the write batch logged at sequence {} does not decode",
                            record.seq
                        ),
                    )
                })?;
                if entries.len() != record.entries as usize {
                    return Err(strata_wal::Error::corruption(
                        &wal_dir,
                        record.seq.0,
                        "the write batch's entry count disagrees with its record",
                    ));
                }
                for (i, e) in entries.iter().enumerate() {
                    let entry_seq = record.seq.plus(i as u64);
                    let Some(ks) = by_id.get(&e.keyspace).filter(|k| logged.contains(&k.id)) else {
                        continue;
                    };
                    if entry_seq
                        <= state
                            .keyspaces
                            .get(&e.keyspace)
                            .map_or(SeqNo::MAX, |k| k.flushed_seq)
                    {
                        continue;
                    }
                    let view = ks.view();
                    apply_entry(
                        view.memtable_for(entry_seq),
                        e.op,
                        e.key,
                        e.value,
                        entry_seq,
                    );
                }
                Ok(())
            },
        )?;
        let visible = seq.peek_next().prev();
        // History floors: a keyspace without a window may have had anything up to
        // now collected; one with a window keeps what its last flush or compaction
        // promised.
        for ks in by_id.values() {
            let floor = if ks.keeps_history() {
                state
                    .keyspaces
                    .get(&ks.id)
                    .map_or(SeqNo(0), |k| k.history_floor)
            } else {
                visible
            };
            ks.history_floor.store(floor.0, Ordering::SeqCst);
        }
        // Marks past what recovery found were noted before a crash took those writes;
        // the sequence numbers will be reused, so the marks go.
        let mut marks = state.time_marks.clone();
        let stale_marks = marks.last().is_some_and(|m| m.seq > visible);
        marks.retain_range(SeqNo(0), visible);
        let mut pending = Vec::new();
        let now = TimeMark {
            seq: visible,
            unix_millis: unix_millis(std::time::SystemTime::now()),
        };
        if marks.push(now) {
            pending.push(now);
        }
        let next_file = state.next_file_number;
        let (jobs, jobs_rx) = crossbeam_channel::unbounded();
        let mut catalog = Catalog::default();
        for ks in keyspaces {
            catalog.by_name.insert(ks.name.clone(), ks.id);
            catalog.by_id.insert(ks.id, ks);
        }
        let rate_limiter =
            crate::rate_limit::RateLimiter::new(options.compaction_write_bytes_per_sec);
        let inner = Arc::new(DbInner {
            path: path.to_path_buf(),
            fs,
            options,
            wal,
            seq,
            publisher: Publisher::new(visible),
            cache,
            catalog: RwLock::new(catalog),
            meta: Mutex::new(Meta {
                manifest,
                state,
                manifest_write_failed: false,
            }),
            marks: Mutex::new(MarkBook {
                marks,
                pending,
                persisted_at: None,
            }),
            next_file: AtomicU64::new(next_file),
            snapshots: Arc::new(SnapshotList::default()),
            jobs,
            jobs_rx,
            workers: Mutex::new(Vec::new()),
            poisoned: Mutex::new(None),
            is_poisoned: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
            progress: (Mutex::new(()), Condvar::new()),
            full_disk_retry_at: Mutex::new(None),
            counters: DbCounters::default(),
            rate_limiter,
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
        });
        if stale_marks {
            let edit = VersionEdit {
                time_marks: Some(crate::manifest::TimeMarkEdit {
                    keep_from: SeqNo(0),
                    keep_to: visible,
                    added: Vec::new(),
                }),
                ..VersionEdit::default()
            };
            let mut meta = inner.meta.lock();
            inner.commit_edit(&mut meta, &edit, true)?;
        }
        inner.persist_marks()?;
        crate::background::start_workers(&inner)?;
        crate::background::start_housekeeper(&inner)?;
        let all: Vec<Arc<KeyspaceInner>> = inner.catalog.read().by_id.values().cloned().collect();
        for ks in &all {
            inner.maybe_switch_memtable(ks, false);
            let _ = inner.jobs.send(Job::Compact(ks.id));
        }
        Ok(inner)
    }

    pub(crate) fn workers(&self) -> &Mutex<Vec<JoinHandle<()>>> {
        &self.workers
    }

    pub(crate) fn jobs_rx(&self) -> &crossbeam_channel::Receiver<Job> {
        &self.jobs_rx
    }

    /// Pins a snapshot "as of now": it sees every write acknowledged before the call.
    /// The wait for writes in flight ([`Publisher::read_point`]) happens before the
    /// snapshot list's lock is taken, so a straggling insert does not hold up other
    /// pins, releases or the retention of flushes; the number pinned, read under the
    /// lock, is the visible one then, at or above the read point.
    pub(crate) fn pin_now(&self) -> SnapshotGuard {
        self.publisher.read_point();
        self.snapshots.pin_current(|| self.publisher.visible())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Fails if the database is closed or poisoned.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        // The flag keeps the write path off the mutex until something failed.
        if self.is_poisoned.load(Ordering::Acquire) {
            if let Some(cause) = &*self.poisoned.lock() {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
        }
        Ok(())
    }

    /// Records a failure that makes further writes unsafe.
    pub(crate) fn poison(&self, cause: &Error) {
        let mut p = self.poisoned.lock();
        if p.is_none() {
            *p = Some(cause.to_string());
        }
        self.is_poisoned.store(true, Ordering::Release);
        drop(p);
        let (lock, cond) = &self.progress;
        let _g = lock.lock();
        cond.notify_all();
    }

    /// Why writes are refused, if they are.
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().clone()
    }

    pub(crate) fn keyspace_by_name(&self, name: &str) -> Result<Arc<KeyspaceInner>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let catalog = self.catalog.read();
        catalog
            .by_name
            .get(name)
            .and_then(|id| catalog.by_id.get(id))
            .cloned()
            .ok_or_else(|| Error::UnknownKeyspace(name.to_string()))
    }

    fn create_keyspace(&self, name: &str, options: KeyspaceOptions) -> Result<Arc<KeyspaceInner>> {
        self.check_writable()?;
        options.validate()?;
        if name.is_empty() || name.len() > 255 {
            return Err(Error::InvalidArgument(
                "a keyspace name must be 1 to 255 bytes".into(),
            ));
        }
        let mut meta = self.meta.lock();
        if self.catalog.read().by_name.contains_key(name) {
            return Err(Error::KeyspaceExists(name.to_string()));
        }
        let id = KeyspaceId(meta.state.next_keyspace_id);
        let visible = self.publisher.visible();
        let next_id =
            id.0.checked_add(1)
                .ok_or_else(|| Error::InvalidArgument("every keyspace id has been used".into()))?;
        let edit = VersionEdit {
            next_keyspace_id: Some(next_id),
            created_keyspaces: vec![KeyspaceRecord {
                id,
                name: name.to_string(),
                options: options.encode(),
            }],
            // Nothing before now belongs to the new keyspace. The same number is the
            // floor of the sequence counter after a restart, so no later write can get
            // a number at or below this flushed point (and be skipped by replay).
            flushed_seqs: vec![(id, visible)],
            last_seq: Some(visible),
            ..VersionEdit::default()
        };
        // Marked at once: unmarked, a later bit flip in this edit would pass for a torn
        // tail, and recovery would drop the keyspace with every write logged for it.
        self.commit_edit(&mut meta, &edit, true)?;
        let first = visible.plus(1);
        let ks = Arc::new(KeyspaceInner::new(
            id,
            name.to_string(),
            options,
            Version::empty(),
            first,
        )?);
        let mut catalog = self.catalog.write();
        catalog.by_name.insert(name.to_string(), id);
        catalog.by_id.insert(id, Arc::clone(&ks));
        Ok(ks)
    }

    fn drop_keyspace(&self, name: &str) -> Result<()> {
        self.check_writable()?;
        let ks = self.keyspace_by_name(name)?;
        let mut meta = self.meta.lock();
        let edit = VersionEdit {
            dropped_keyspaces: vec![ks.id],
            ..VersionEdit::default()
        };
        self.commit_edit(&mut meta, &edit, true)?;
        ks.dropped.store(true, Ordering::SeqCst);
        // Wake writers stalled on it: they return `UnknownKeyspace`.
        {
            let (lock, cond) = &self.progress;
            let _g = lock.lock();
            cond.notify_all();
        }
        {
            let mut catalog = self.catalog.write();
            catalog.by_name.remove(name);
            catalog.by_id.remove(&ks.id);
        }
        // Its tables and value-log segments go when the last reader lets go of them.
        let view = ks.view();
        for t in view.version.all_tables() {
            t.mark_obsolete();
        }
        for s in view.version.segments.values() {
            s.mark_obsolete();
        }
        drop(meta);
        self.release_wal()
    }

    /// The write path shared by every kind of write.
    ///
    /// A logged write queues its WAL record (no I/O), applies its entries, publishes
    /// them, and only then waits for the record to be written (`Buffered`) or synced
    /// (`Sync`) before it returns: the I/O is outside the span later writers wait on
    /// (see [`Publisher`]). A bypass write reserves its sequence numbers with one
    /// atomic add, applies and publishes: it touches no WAL state at all. Either way a
    /// write is visible to readers a moment before it is acknowledged; a crash in
    /// that moment loses only a write that was never acknowledged.
    fn write(&self, reqs: &[WriteReq<'_>], options: &WriteOptions) -> Result<()> {
        self.check_writable()?;
        if reqs.is_empty() {
            return Ok(());
        }
        let mut involved: Vec<&Arc<KeyspaceInner>> = Vec::with_capacity(1);
        for r in reqs {
            if !involved.iter().any(|k| Arc::ptr_eq(k, r.ks)) {
                if r.ks.dropped.load(Ordering::SeqCst) {
                    return Err(Error::UnknownKeyspace(r.ks.name.clone()));
                }
                involved.push(r.ks);
            }
        }
        let durability = resolve_durability(&involved, options)?;
        // Entries and user bytes per involved keyspace, for stalls and counters.
        let per_ks: Vec<(u64, u64)> = involved
            .iter()
            .map(|ks| {
                reqs.iter()
                    .filter(|r| Arc::ptr_eq(r.ks, ks))
                    .fold((0, 0), |(n, b), r| {
                        (n + 1, b + (r.key.len() + r.value.len()) as u64)
                    })
            })
            .collect();
        for (ks, (_, bytes)) in involved.iter().zip(&per_ks) {
            self.maybe_stall(ks, *bytes)?;
        }
        // Allocated and copied before the reservation: later writers wait on this
        // writer only from its reservation to its publication.
        let prepared: Vec<Option<PreparedEntry>> = reqs.iter().map(prepare_entry).collect();
        let count = reqs.len() as u64;
        let entries = u32::try_from(count)
            .map_err(|_| Error::InvalidArgument("too many entries in one batch".into()))?;
        let (first, wal_wait) = match durability {
            Durability::Bypass => {
                let first = self.publisher.reserve(&self.seq, count).ok_or_else(|| {
                    Error::from(strata_wal::Error::SeqExhausted { requested: count })
                })?;
                // A clean close flushes what was reserved before it began (it waits
                // for those to be published) and refuses the rest: no bypass write is
                // acknowledged that the close's flush does not cover.
                if self.closing.load(Ordering::SeqCst) {
                    self.publisher.publish(first, first.plus(count - 1));
                    return Err(Error::Closed);
                }
                (first, None)
            }
            Durability::Sync | Durability::Buffered => {
                let commit = if durability == Durability::Sync {
                    Commit::Sync
                } else {
                    Commit::Buffered
                };
                let mut payload = Vec::with_capacity(
                    16 + reqs
                        .iter()
                        .map(|r| r.key.len() + r.value.len() + 8)
                        .sum::<usize>(),
                );
                encode_entries(
                    &mut payload,
                    reqs.iter().map(|r| (r.op, r.ks.id, r.key, r.value)),
                );
                let mut reserved = None;
                let queued = self.wal.enqueue(&payload, entries, |n| {
                    match self.publisher.reserve(&self.seq, n) {
                        Some(first) => {
                            reserved = Some(first);
                            first
                        }
                        // The log refuses a number past the last one as exhausted.
                        None => SeqNo(SeqNo::MAX_ASSIGNABLE.0 + 1),
                    }
                });
                match queued {
                    Ok(queued) => (queued.first, Some((queued.last, commit))),
                    Err(e) => {
                        if let Some(first) = reserved {
                            // Nothing is applied; let later writes become visible.
                            self.publisher.publish(first, first.plus(count - 1));
                        }
                        let e = Error::from(e);
                        if matches!(e, Error::Io { .. } | Error::Poisoned { .. }) {
                            self.poison(&e);
                        }
                        return Err(e);
                    }
                }
            }
        };
        // The view is read after the reservation, so a memtable sealed meanwhile is
        // found by its boundary (`View::memtable_for`); read once per keyspace (under
        // its read lock, no reference-count traffic) when the batch has one keyspace.
        if let [ks] = involved[..] {
            let view = ks.view.read();
            for (i, (r, p)) in reqs.iter().zip(prepared).enumerate() {
                let seq = first.plus(i as u64);
                apply_prepared(view.memtable_for(seq), r, p, seq);
            }
            if durability == Durability::Bypass {
                view.memtable_for(first).note_bypass(per_ks[0].1);
            }
        } else {
            for (i, (r, p)) in reqs.iter().zip(prepared).enumerate() {
                let seq = first.plus(i as u64);
                let view = r.ks.view();
                apply_prepared(view.memtable_for(seq), r, p, seq);
            }
            if durability == Durability::Bypass {
                for (ks, (_, bytes)) in involved.iter().zip(&per_ks) {
                    ks.view().memtable_for(first).note_bypass(*bytes);
                }
            }
        }
        // (Bypass bytes are noted before publishing: a flush of this memtable waits for
        // the publication, so it cannot finish without counting them.)
        self.publisher.publish(first, first.plus(count - 1));
        if let Some((last, commit)) = wal_wait {
            if let Err(e) = self.wal.wait_committed(last, commit) {
                let e = Error::from(e);
                self.poison(&e);
                return Err(e);
            }
        }
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        for (ks, (entries, bytes)) in involved.iter().zip(&per_ks) {
            ks.counters.write_ops.fetch_add(*entries, Ordering::Relaxed);
            ks.counters.user_bytes.fetch_add(*bytes, Ordering::Relaxed);
            self.seal_after_write(ks, durability == Durability::Bypass);
        }
        if self
            .counters
            .writes
            .load(Ordering::Relaxed)
            .is_multiple_of(64)
        {
            let _ = self.enforce_write_buffer_budget();
        }
        // Only logged writes grow the WAL (a bypass write leaves it alone, its lock
        // included), so they alone count towards checking its size.
        if durability.is_logged()
            && (self.counters.logged_writes.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(64)
        {
            crate::background::flush_for_wal_limit(self);
        }
        Ok(())
    }

    /// Seals the active memtable of `ks` when it is full or, after a bypass write,
    /// when the keyspace's unflushed bypass bytes reach `bypass_max_unflushed_bytes`
    /// (the flush then brings them down).
    fn seal_after_write(&self, ks: &Arc<KeyspaceInner>, bypass: bool) {
        let (full, over) = {
            let view = ks.view.read();
            (
                view.active.approximate_bytes() >= ks.options.memtable_bytes,
                bypass && view.active.bypass_bytes() > 0 && bypass_over_limit(ks, &view),
            )
        };
        if full || over {
            self.switch_memtable(ks, over, false);
        }
    }

    /// Delays or stops a write while the keyspace has too much unflushed or
    /// uncompacted data. Stops while the active memtable is full and may not be
    /// sealed ([`KeyspaceInner::seal_allowed`]) or while the compaction debt is at
    /// `hard_pending_compaction_bytes`; slows writes to
    /// `slowdown_write_bytes_per_sec` while level 0 (with sealed memtables) holds
    /// `l0_slowdown_trigger` tables or the debt passes `soft_pending_compaction_bytes`.
    fn maybe_stall(&self, ks: &Arc<KeyspaceInner>, bytes: u64) -> Result<()> {
        // Set when this write first had to wait; each wait counts as one stop.
        let mut stalled_at: Option<std::time::Instant> = None;
        let mut queued_at: Option<std::time::Instant> = None;
        loop {
            if ks.dropped.load(Ordering::SeqCst) {
                return Err(Error::UnknownKeyspace(ks.name.clone()));
            }
            // The debt is zero whenever no compaction is due, so this cannot wait on
            // work that will never run.
            let pending = ks.pressure.pending_bytes.load(Ordering::Relaxed);
            // Read under the view's read lock, released before anything is done.
            let (full, seal_allowed, bypass_full, active_bypass, l0, has_sealed) = {
                let view = ks.view.read();
                (
                    view.active.approximate_bytes() >= ks.options.memtable_bytes,
                    ks.seal_allowed(&view),
                    bypass_over_limit(ks, &view),
                    view.active.bypass_bytes() > 0,
                    view.version.table_count(0) + view.sealed.len(),
                    !view.sealed.is_empty(),
                )
            };
            // At the most bypass bytes a crash may take: seal the active memtable so
            // its flush starts, and wait while what is sealed still holds that much
            // (or the active memtable may not be sealed yet).
            if bypass_full && active_bypass && self.maybe_switch_memtable(ks, true) {
                continue;
            }
            let admit = (!full || seal_allowed)
                && pending < ks.options.hard_pending_compaction_bytes
                && !bypass_full;
            if admit {
                if stalled_at.is_some() {
                    // Woken perhaps by a close or a failure while waiting.
                    self.check_writable()?;
                }
                if let Some(start) = stalled_at {
                    ks.counters
                        .stall_micros
                        .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                if l0 >= ks.options.l0_slowdown_trigger
                    || pending >= ks.options.soft_pending_compaction_bytes
                {
                    self.slow_down(ks, bytes);
                }
                return Ok(());
            }
            self.check_writable()?;
            let now = std::time::Instant::now();
            if stalled_at.is_none() {
                ks.counters.stops.fetch_add(1, Ordering::Relaxed);
                stalled_at = Some(now);
            }
            // Make sure the work that unblocks us is queued (again after a while, in
            // case a busy worker skipped it), then wait for progress.
            if queued_at.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1))
            {
                if has_sealed {
                    let _ = self.jobs.send(Job::Flush(ks.id));
                }
                let _ = self.jobs.send(Job::Compact(ks.id));
                queued_at = Some(now);
            }
            let (lock, cond) = &self.progress;
            let mut g = lock.lock();
            cond.wait_for(&mut g, std::time::Duration::from_millis(50));
        }
    }

    /// Delays a write of `bytes` so slowed writes, all writers of the keyspace
    /// together, run at `slowdown_write_bytes_per_sec`: each slowed write books the
    /// next slot on a shared clock and sleeps until its slot begins (a slot less than
    /// 100 µs away is not worth a sleep).
    fn slow_down(&self, ks: &KeyspaceInner, bytes: u64) {
        let rate = ks.options.slowdown_write_bytes_per_sec.max(1);
        let cost =
            std::time::Duration::from_nanos(bytes.max(1).saturating_mul(1_000_000_000) / rate);
        let now = std::time::Instant::now();
        let slot = {
            let mut next = ks.slowdown_next.lock();
            let slot = (*next).max(now);
            *next = slot + cost;
            slot
        };
        ks.counters.slowdowns.fetch_add(1, Ordering::Relaxed);
        let wait = slot.saturating_duration_since(now);
        if wait >= std::time::Duration::from_micros(100) {
            std::thread::sleep(wait);
            ks.counters
                .stall_micros
                .fetch_add(now.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// Seals the active memtable when it is full (or when `force`d and not empty) and
    /// queues its flush.
    pub(crate) fn maybe_switch_memtable(&self, ks: &Arc<KeyspaceInner>, force: bool) -> bool {
        self.switch_memtable(ks, force, false)
    }

    /// [`Self::maybe_switch_memtable`]; `explicit` (a user's flush) seals even past
    /// the level-0 and debt limits.
    pub(crate) fn switch_memtable(
        &self,
        ks: &Arc<KeyspaceInner>,
        force: bool,
        explicit: bool,
    ) -> bool {
        {
            let view = ks.view.read();
            let full = view.active.approximate_bytes() >= ks.options.memtable_bytes;
            if view.active.is_empty() || !(full || force) {
                return false;
            }
        }
        let mut view = ks.view.write();
        let full = view.active.approximate_bytes() >= ks.options.memtable_bytes;
        if view.active.is_empty() || !(full || force) {
            return false;
        }
        // Only an explicit flush seals past the limits; otherwise writers wait.
        if !explicit && !ks.seal_allowed(&view) {
            return false;
        }
        // Every sequence number from here on belongs to the new memtable; those drawn
        // before still go to the old one (see `View::memtable_for`).
        let boundary = self.seq.peek_next();
        let mut sealed = Vec::with_capacity(view.sealed.len() + 1);
        sealed.push(SealedMemtable {
            memtable: Arc::clone(&view.active),
            first: view.active_first,
            end: boundary,
        });
        sealed.extend(view.sealed.iter().cloned());
        *view = Arc::new(View {
            active: Arc::new(Memtable::new(
                ks.next_memtable_id.fetch_add(1, Ordering::Relaxed),
                ks.options.memtable_bytes,
            )),
            active_first: boundary,
            sealed,
            version: Arc::clone(&view.version),
        });
        // Under the view lock, so no other writer seals against the old projection.
        crate::compaction::refresh_pressure_with(ks, &view);
        drop(view);
        let _ = self.jobs.send(Job::Flush(ks.id));
        true
    }

    /// Bytes held by every memtable of every keyspace.
    pub(crate) fn memtable_bytes(&self) -> usize {
        let catalog = self.catalog.read();
        catalog
            .by_id
            .values()
            .map(|ks| {
                ks.view()
                    .memtables()
                    .map(|m| m.approximate_bytes())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Seals the largest active memtable when all memtables together pass
    /// `Options::write_buffer_bytes`.
    /// Returns whether it sealed one.
    fn enforce_write_buffer_budget(&self) -> bool {
        if self.memtable_bytes() <= self.options.write_buffer_bytes {
            return false;
        }
        let largest = {
            let catalog = self.catalog.read();
            catalog
                .by_id
                .values()
                .max_by_key(|ks| ks.view().active.approximate_bytes())
                .cloned()
        };
        largest.is_some_and(|ks| self.maybe_switch_memtable(&ks, true))
    }

    /// Seals and flushes every memtable of `ks`, waiting until they are in tables;
    /// every write acknowledged before the call (in any keyspace) is durable after.
    pub(crate) fn flush_keyspace(&self, ks: &Arc<KeyspaceInner>) -> Result<()> {
        self.check_writable()?;
        // Whatever else happens, every write acknowledged so far is durable after this.
        self.wal.sync().inspect_err(|e| {
            self.poison(&Error::Poisoned {
                cause: e.to_string(),
            })
        })?;
        self.switch_memtable(ks, true, true);
        // Wait for the memtables sealed so far only, not for those other writers seal
        // meanwhile: under a steady stream of writes there would always be one more.
        let target = ks.view().active_first;
        let pending = || ks.view().sealed.iter().any(|s| s.first < target);
        loop {
            if ks.dropped.load(Ordering::SeqCst) {
                return Err(Error::UnknownKeyspace(ks.name.clone()));
            }
            if !pending() {
                // A background flush may have done the work and not yet let go of the
                // WAL it covered: after this call the log holds none of it.
                return self.release_wal();
            }
            // Flush inline (oldest first); a background flush of the same keyspace may
            // be running, in which case wait for its progress.
            match crate::background::flush_oldest(self, ks) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Err(e),
            }
            if !pending() {
                return self.release_wal();
            }
            self.check_writable()?;
            let (lock, cond) = &self.progress;
            let mut g = lock.lock();
            cond.wait_for(&mut g, std::time::Duration::from_millis(20));
        }
    }

    /// The keyspaces whose default durability is [`Durability::Bypass`].
    pub(crate) fn bypass_keyspaces(&self) -> std::collections::HashSet<KeyspaceId> {
        self.catalog
            .read()
            .by_id
            .values()
            .filter(|k| !k.options.durability.is_logged())
            .map(|k| k.id)
            .collect()
    }

    /// Whether a failed [`Self::commit_edit`] certainly left the manifest without the
    /// edit, so the files it named may be deleted: it did not fit the state, or its
    /// write failed (a torn record at most). After a failed fsync the edit may be on
    /// disk: its files stay (the database is poisoned, and the next open removes
    /// whatever the manifest does not name).
    pub(crate) fn edit_never_written(e: &Error) -> bool {
        matches!(e, Error::InvalidArgument(_)) || crate::manifest::write_failed(e)
    }

    /// Commits `edit` to the manifest ([`Meta::commit`]). A failure poisons the
    /// database, except a write that ran out of space: that edit was not written,
    /// nothing changed, and whoever asked may try again (background work is retried,
    /// see [`DbInner::defer_after_full_disk`]).
    pub(crate) fn commit_edit(
        &self,
        meta: &mut Meta,
        edit: &VersionEdit,
        mark_durable: bool,
    ) -> Result<()> {
        meta.commit(
            edit,
            mark_durable,
            &self.next_file,
            self.options.manifest_rollover_bytes,
        )
        .inspect_err(|e| self.poison_unless_not_written(e))
    }

    /// Poisons the database for a failed manifest write, unless it certainly left
    /// nothing behind for want of space.
    fn poison_unless_not_written(&self, e: &Error) {
        if is_out_of_space(e) && Self::edit_never_written(e) {
            self.defer_after_full_disk();
        } else {
            self.poison(e);
        }
    }

    /// Poisons the database for `cause` (a failed flush, compaction or collection),
    /// unless the disk ran out of space: while the work built its output files (they
    /// are removed, nothing it did is visible) or wrote its manifest edit (not written:
    /// [`Self::commit_edit`] has deferred it already). Either way it is retried later
    /// ([`DbInner::defer_after_full_disk`]). A failed WAL (a flush syncs it first) or
    /// an already poisoned database poisons whatever the cause.
    pub(crate) fn poison_unless_out_of_space(&self, cause: &Error) {
        if !is_out_of_space(cause) || self.poisoned().is_some() || self.wal.poisoned().is_some() {
            self.poison(cause);
        } else if !crate::manifest::write_failed(cause) {
            self.defer_after_full_disk();
        }
    }

    /// Notes background work that failed for want of space and schedules every
    /// keyspace's flush and compaction to be tried again after
    /// [`FULL_DISK_RETRY_DELAY`] (by the housekeeping thread).
    pub(crate) fn defer_after_full_disk(&self) {
        self.counters
            .full_disk_errors
            .fetch_add(1, Ordering::Relaxed);
        let mut at = self.full_disk_retry_at.lock();
        if at.is_none() {
            *at = Some(std::time::Instant::now() + FULL_DISK_RETRY_DELAY);
        }
    }

    /// Flushes every keyspace holding unflushed WAL-bypass writes.
    fn flush_bypass_writes(&self) -> Result<()> {
        let all: Vec<Arc<KeyspaceInner>> = self.catalog.read().by_id.values().cloned().collect();
        let mut result = Ok(());
        for ks in &all {
            if bypass_bytes_at_risk(&ks.view()) > 0 {
                if let Err(e) = self.flush_keyspace(ks) {
                    if result.is_ok() && !matches!(e, Error::UnknownKeyspace(_)) {
                        result = Err(e);
                    }
                }
            }
        }
        result
    }

    /// Deletes WAL segments no keyspace needs for recovery.
    pub(crate) fn release_wal(&self) -> Result<()> {
        // Bypass keyspaces are never replayed from the WAL: they pin no segment.
        let bypass = self.bypass_keyspaces();
        let oldest_needed = {
            let mut meta = self.meta.lock();
            let needed = meta
                .state
                .keyspaces
                .iter()
                .filter(|(id, _)| !bypass.contains(id))
                .map(|(_, k)| k.flushed_seq.plus(1))
                .min()
                .unwrap_or_else(|| self.publisher.visible().plus(1));
            let needed = self
                .wal_retention_point()
                .map_or(needed, |kept| needed.min(kept));
            // The edits that moved the flushed points must be declared durable first.
            match meta.mark_durable(&self.next_file) {
                Ok(()) => {}
                // Out of space: the segments stay until a later release (the work
                // that called this happened; it is not the caller's failure).
                Err(e) if is_out_of_space(&e) && Self::edit_never_written(&e) => {
                    self.defer_after_full_disk();
                    return Ok(());
                }
                Err(e) => {
                    self.poison(&e);
                    return Err(e);
                }
            }
            needed
        };
        self.wal.remove_segments_before(oldest_needed)?;
        Ok(())
    }

    /// The first sequence number of the oldest WAL segment the change-stream
    /// retention (`wal_retention_bytes`, `wal_retention_age`) keeps, if any.
    ///
    /// A sealed segment is kept while the newer segments hold less than
    /// `wal_retention_bytes`, or while it was sealed less than `wal_retention_age`
    /// ago (dated by the first time mark that reached its last sequence number; not
    /// yet reached means sealed just now).
    fn wal_retention_point(&self) -> Option<SeqNo> {
        let bytes = self.options.wal_retention_bytes;
        let age = self.options.wal_retention_age;
        if bytes == 0 && age.is_none() {
            return None;
        }
        let segments = self.wal.segments();
        let now = unix_millis(std::time::SystemTime::now());
        let mut newer_bytes = 0u64;
        let mut kept = None;
        for (i, (id, first)) in segments.iter().enumerate().rev() {
            let keep = match segments.get(i + 1) {
                None => true,
                Some((_, next_first)) => {
                    newer_bytes < bytes
                        || age.is_some_and(|age| {
                            let sealed = self.marks.lock().marks.reaching(next_first.prev());
                            sealed.is_none_or(|m| {
                                now.saturating_sub(m.unix_millis)
                                    < crate::history::duration_millis(age)
                            })
                        })
                }
            };
            if !keep {
                break;
            }
            kept = Some(*first);
            let path = self
                .wal
                .dir()
                .join(strata_wal::segment::segment_file_name(*id));
            newer_bytes += self.fs.open(&path).and_then(|f| f.len()).unwrap_or(0);
        }
        kept
    }

    /// Point lookup in `ks` at `snapshot` (a pinned sequence number), or as of now.
    pub(crate) fn get(
        &self,
        ks: &KeyspaceInner,
        key: &[u8],
        snapshot: Option<SeqNo>,
    ) -> Result<Option<Bytes>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if ks.dropped.load(Ordering::SeqCst) {
            return Err(Error::UnknownKeyspace(ks.name.clone()));
        }
        let reads = ks.counters.point_reads.fetch_add(1, Ordering::Relaxed);
        if reads % POLICY_NUDGE_OPS == POLICY_NUDGE_OPS - 1 {
            // Reads alone schedule no flush; let an adaptive policy see them.
            let _ = self.jobs.send(Job::Compact(ks.id));
        }
        let view = ks.view();
        // Unpinned, the sequence number is read after the view: every version a
        // flush or compaction in the view dropped is then hidden by a newer one at or
        // below it. Read before the view, a flush installed in between could have
        // dropped the very version it needs.
        let snapshot = snapshot.unwrap_or_else(|| self.publisher.read_point());
        let found = lookup(&view, key, snapshot)?;
        let Some((seq, kind, value)) = found else {
            return Ok(None);
        };
        if !kind.is_value() {
            return Ok(None);
        }
        let tombstones_exist = !view.version.prefix_tombstones.is_empty()
            || view.memtables().any(|m| m.has_prefix_tombstones());
        if tombstones_exist
            && covered_by_prefix_tombstone(&view.prefix_tombstones(), key, seq, snapshot)
        {
            return Ok(None);
        }
        if kind == ValueKind::Pointer {
            return crate::value_log::resolve(&view.version.segments, key, seq, &value).map(Some);
        }
        Ok(Some(value))
    }

    /// A cursor over `ks` at `snapshot`, bounded to `[lower, upper)`.
    pub(crate) fn cursor(
        &self,
        ks: &KeyspaceInner,
        snapshot: SeqNo,
        guard: Option<SnapshotGuard>,
        lower: Option<Vec<u8>>,
        upper: Option<Vec<u8>>,
    ) -> Result<Cursor> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if ks.dropped.load(Ordering::SeqCst) {
            return Err(Error::UnknownKeyspace(ks.name.clone()));
        }
        let scans = ks.counters.scans.fetch_add(1, Ordering::Relaxed);
        if scans % (POLICY_NUDGE_OPS / 64) == POLICY_NUDGE_OPS / 64 - 1 {
            let _ = self.jobs.send(Job::Compact(ks.id));
        }
        let view = ks.view();
        let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
        for m in view.memtables() {
            if !m.is_empty() {
                children.push(Box::new(m.iter()));
            }
        }
        let in_range = |t: &Arc<TableHandle>| {
            lower.as_deref().is_none_or(|lo| t.largest_user_key() >= lo)
                && upper.as_deref().is_none_or(|hi| t.smallest_user_key() < hi)
        };
        // One cursor per sorted run; a run of several tables opens only the table the
        // cursor is in.
        for run in view.version.levels.iter().flatten() {
            let mut tables: Vec<Arc<TableHandle>> =
                run.tables.iter().filter(|t| in_range(t)).cloned().collect();
            match tables.len() {
                0 => {}
                1 => {
                    if let Some(t) = tables.pop() {
                        children.push(Box::new(t.table.iter()));
                    }
                }
                _ => children.push(Box::new(LevelIterator::new(tables))),
            }
        }
        Ok(Cursor::new(
            MergingIterator::new(children),
            snapshot,
            view.prefix_tombstones(),
            lower,
            upper,
            Arc::clone(&view.version),
            guard,
        ))
    }

    /// Stops background work, syncs the WAL and releases the lock. Idempotent.
    pub(crate) fn close(&self) -> Result<()> {
        if self.is_closed() {
            return Ok(());
        }
        // WAL-bypass writes live only in memtables: a clean close flushes them, so
        // only a crash can lose them. Bypass writes reserved from here on are refused;
        // those reserved before are waited for, then flushed.
        self.closing.store(true, Ordering::SeqCst);
        self.publisher.wait_visible(self.seq.peek_next().prev());
        let bypass_flushed = self.flush_bypass_writes();
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let workers: Vec<JoinHandle<()>> = std::mem::take(&mut *self.workers.lock());
        for _ in 0..workers.len() {
            let _ = self.jobs.send(Job::Stop);
        }
        {
            let (lock, cond) = &self.progress;
            let _g = lock.lock();
            cond.notify_all();
        }
        for w in workers {
            let _ = w.join();
        }
        // The marks noted since the last write to the manifest, and one for now.
        self.note_time_mark();
        let marks_persisted = self.persist_marks();
        let result = self
            .wal
            .close()
            .map_err(Error::from)
            .and(bypass_flushed)
            .and(marks_persisted);
        // A flush or compaction running in a user thread checks `closed` under this
        // lock before it writes the manifest: once we hold it, none will.
        let _meta = self.meta.lock();
        self.lock.lock().take();
        result
    }
}

/// The durability of a write to `involved` with `options` (see
/// [`WriteOptions::durability`] for the rules), or why it is refused.
fn resolve_durability(
    involved: &[&Arc<KeyspaceInner>],
    options: &WriteOptions,
) -> Result<Durability> {
    let bypass_ks = involved
        .iter()
        .find(|k| k.options.durability == Durability::Bypass);
    let resolved = match (options.durability, bypass_ks) {
        (Some(Durability::Bypass), _) => Durability::Bypass,
        (Some(d), Some(b)) => {
            return Err(Error::InvalidArgument(format!(
                "keyspace {:?} is a WAL-bypass keyspace: its writes are never logged, so a \
                 {d:?} write to it would promise what recovery cannot keep; write it \
                 without a durability override and call Keyspace::flush to make it durable",
                b.name
            )))
        }
        (Some(d), None) => d,
        (None, Some(b)) => {
            if let Some(logged) = involved.iter().find(|k| k.options.durability.is_logged()) {
                return Err(Error::InvalidArgument(format!(
                    "a batch mixes the WAL-bypass keyspace {:?} and the logged keyspace \
                     {:?}: write them in separate batches",
                    b.name, logged.name
                )));
            }
            Durability::Bypass
        }
        (None, None) => involved
            .iter()
            .map(|k| k.options.durability)
            .fold(Durability::Buffered, Durability::max),
    };
    // Each keyspace recovers bypass writes from its own last flush: a bypass batch
    // across keyspaces could come back from a crash in part.
    if resolved == Durability::Bypass && involved.len() > 1 {
        let names: Vec<String> = involved.iter().map(|k| format!("{:?}", k.name)).collect();
        return Err(Error::InvalidArgument(format!(
            "a WAL-bypass batch must stay within one keyspace (this one writes {}): each \
             keyspace recovers its bypass writes from its own last flush, so the batch \
             could not be recovered whole; write one batch per keyspace",
            names.join(", ")
        )));
    }
    Ok(resolved)
}

/// User bytes of WAL-bypass writes in `view`'s memtables: what a crash would take.
pub(crate) fn bypass_bytes_at_risk(view: &View) -> u64 {
    view.memtables().map(|m| m.bypass_bytes()).sum()
}

/// When the oldest unflushed WAL-bypass write in `view` arrived, if any.
pub(crate) fn bypass_oldest(view: &View) -> Option<std::time::Instant> {
    view.memtables().filter_map(|m| m.bypass_since()).min()
}

/// Whether `ks` holds `bypass_max_unflushed_bytes` of unflushed bypass writes.
fn bypass_over_limit(ks: &KeyspaceInner, view: &View) -> bool {
    ks.options
        .bypass_max_unflushed_bytes
        .is_some_and(|limit| bypass_bytes_at_risk(view) >= limit)
}

/// A point entry built ahead of its sequence number (`None` for a prefix tombstone,
/// which is recorded apart).
fn prepare_entry(r: &WriteReq<'_>) -> Option<PreparedEntry> {
    match r.op {
        BatchOp::Put => Some(PreparedEntry::new(r.key, ValueKind::Put, r.value)),
        BatchOp::Delete => Some(PreparedEntry::new(r.key, ValueKind::Delete, &[])),
        BatchOp::DeletePrefix => None,
    }
}

/// Applies one request, prepared by [`prepare_entry`], at `seq`.
fn apply_prepared(
    memtable: &Memtable,
    r: &WriteReq<'_>,
    prepared: Option<PreparedEntry>,
    seq: SeqNo,
) {
    match prepared {
        Some(entry) => memtable.insert_prepared(entry, seq),
        None => memtable.insert_prefix_tombstone(r.key, seq),
    }
}

/// Applies one entry to a memtable.
fn apply_entry(memtable: &Memtable, op: BatchOp, key: &[u8], value: &[u8], seq: SeqNo) {
    match op {
        BatchOp::Put => memtable.insert(key, seq, ValueKind::Put, value),
        BatchOp::Delete => memtable.insert(key, seq, ValueKind::Delete, &[]),
        BatchOp::DeletePrefix => memtable.insert_prefix_tombstone(key, seq),
    }
}

/// The newest version of `key` visible at `snapshot`, searching newest data first.
fn lookup(view: &View, key: &[u8], snapshot: SeqNo) -> Result<Option<(SeqNo, ValueKind, Bytes)>> {
    let hash = bloom_hash(key);
    for m in view.memtables() {
        if let Some(found) = m.get_hashed(key, hash, snapshot) {
            return Ok(Some(found));
        }
    }
    for t in view.version.tables_for_key(key) {
        if let Some(found) = t.table.get_hashed(key, hash, snapshot)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "key of {} bytes is larger than the maximum of {MAX_KEY_LEN} bytes",
            key.len()
        )));
    }
    Ok(())
}

impl Keyspace {
    pub(crate) fn id(&self) -> KeyspaceId {
        self.ks.id
    }

    pub(crate) fn instance(&self) -> u64 {
        self.db.inner.instance
    }

    fn inner(&self) -> &Arc<DbInner> {
        &self.db.inner
    }

    /// The keyspace's name.
    pub fn name(&self) -> &str {
        &self.ks.name
    }

    /// The options it was created with.
    pub fn options(&self) -> &KeyspaceOptions {
        &self.ks.options
    }

    fn write_one(
        &self,
        op: BatchOp,
        key: &[u8],
        value: &[u8],
        options: &WriteOptions,
    ) -> Result<()> {
        check_key(key)?;
        if value.len() as u64 > MAX_VALUE_LEN {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes is larger than the maximum of {MAX_VALUE_LEN} bytes",
                value.len()
            )));
        }
        let req = WriteReq {
            op,
            ks: &self.ks,
            key,
            value,
        };
        self.inner().write(std::slice::from_ref(&req), options)
    }

    /// Sets `key` to `value` with the keyspace's durability.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a key over 64 KiB or a value of 4 GiB or more,
    /// [`Error::Poisoned`], [`Error::Closed`], [`Error::UnknownKeyspace`] if dropped.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.write_one(
            BatchOp::Put,
            key.as_ref(),
            value.as_ref(),
            &WriteOptions::default(),
        )
    }

    /// Sets `key` to `value` with `options`.
    ///
    /// # Errors
    /// As [`Keyspace::put`].
    pub fn put_opt(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: &WriteOptions,
    ) -> Result<()> {
        self.write_one(BatchOp::Put, key.as_ref(), value.as_ref(), options)
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// As [`Keyspace::put`].
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.write_one(BatchOp::Delete, key.as_ref(), &[], &WriteOptions::default())
    }

    /// Deletes `key` with `options`.
    ///
    /// # Errors
    /// As [`Keyspace::put`].
    pub fn delete_opt(&self, key: impl AsRef<[u8]>, options: &WriteOptions) -> Result<()> {
        self.write_one(BatchOp::Delete, key.as_ref(), &[], options)
    }

    /// Deletes every key starting with `prefix`, with one prefix tombstone.
    ///
    /// # Errors
    /// As [`Keyspace::put`].
    pub fn delete_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<()> {
        self.write_one(
            BatchOp::DeletePrefix,
            prefix.as_ref(),
            &[],
            &WriteOptions::default(),
        )
    }

    /// Deletes every key starting with `prefix`, with `options`.
    ///
    /// # Errors
    /// As [`Keyspace::put`].
    pub fn delete_prefix_opt(
        &self,
        prefix: impl AsRef<[u8]>,
        options: &WriteOptions,
    ) -> Result<()> {
        self.write_one(BatchOp::DeletePrefix, prefix.as_ref(), &[], options)
    }

    /// The value of `key` now.
    ///
    /// # Errors
    /// [`Error::Corruption`] or I/O errors reading tables, [`Error::Closed`],
    /// [`Error::UnknownKeyspace`] if dropped.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        check_key(key)?;
        self.inner().get(&self.ks, key, None)
    }

    /// Whether `key` has a value now.
    ///
    /// # Errors
    /// As [`Keyspace::get`].
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    fn iter_bounded(
        &self,
        snapshot: Option<&Snapshot>,
        lower: Option<Vec<u8>>,
        upper: Option<Vec<u8>>,
    ) -> Iter {
        if let Some(s) = snapshot {
            if let Err(e) = s.check_readable(self) {
                // Reported by the first step; later steps report it again in short.
                let mut first = Some(e);
                return Iter::new(Box::new(move || {
                    Err(first.take().unwrap_or_else(|| {
                        Error::InvalidArgument("the snapshot cannot read this keyspace".into())
                    }))
                }));
            }
        }
        let db = Arc::clone(&self.db);
        let ks = Arc::clone(&self.ks);
        let guard = match snapshot {
            Some(s) => s.guard.duplicate(),
            None => db.inner.pin_now(),
        };
        Iter::new(Box::new(move || {
            db.inner.cursor(
                &ks,
                guard.seq(),
                Some(guard.duplicate()),
                lower.clone(),
                upper.clone(),
            )
        }))
    }

    /// Every key and value, in key order (reverse with `.rev()`), as of now.
    pub fn iter(&self) -> Iter {
        self.iter_bounded(None, None, None)
    }

    /// Keys in `[start, end)` as of now; `None` means unbounded.
    pub fn range(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Iter {
        self.iter_bounded(None, start.map(<[u8]>::to_vec), end.map(<[u8]>::to_vec))
    }

    /// Keys starting with `prefix`, as of now.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let prefix = prefix.as_ref();
        self.iter_bounded(None, Some(prefix.to_vec()), prefix_successor(prefix))
    }

    /// A cursor with seek over the whole keyspace, as of now.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::UnknownKeyspace`].
    pub fn cursor(&self) -> Result<Cursor> {
        let guard = self.inner().pin_now();
        self.inner()
            .cursor(&self.ks, guard.seq(), Some(guard), None, None)
    }

    /// Seals and flushes this keyspace's memtables; returns once they are durable
    /// tables.
    ///
    /// # Errors
    /// I/O errors from the flush.
    pub fn flush(&self) -> Result<()> {
        self.inner().flush_keyspace(&self.ks)
    }

    /// Flushes, then compacts every table of the keyspace into its last level.
    ///
    /// # Errors
    /// I/O or corruption errors from the compaction.
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        crate::compaction::compact_range(self.inner(), &self.ks, None, None)
    }

    /// Flushes, then compacts every table holding keys in `[start, end)` (`None`:
    /// unbounded), with every table they overlap, into the deepest level in use,
    /// dropping every version and tombstone no snapshot needs and applying the
    /// compaction filter. Returns once the result is installed.
    ///
    /// # Errors
    /// I/O or corruption errors from the compaction.
    pub fn compact_range(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<()> {
        self.flush()?;
        crate::compaction::compact_range(self.inner(), &self.ks, start, end)
    }

    /// Sets (or with `None` removes) the keyspace's compaction filter. It applies to
    /// compactions that start after the call; it is not stored in the database, so
    /// set it again after each open. See [`crate::CompactionFilter`].
    pub fn set_compaction_filter(&self, filter: Option<Arc<dyn CompactionFilter>>) {
        *self.ks.filter.write() = filter;
    }
}

impl Snapshot {
    /// Fails unless `keyspace` is of this snapshot's database and holds its sequence
    /// number.
    fn check_readable(&self, keyspace: &Keyspace) -> Result<()> {
        if keyspace.instance() != self.db.inner.instance {
            return Err(Error::InvalidArgument(
                "the keyspace belongs to another database than the snapshot".into(),
            ));
        }
        crate::history::check_retained(self, keyspace.ks.id)
    }

    /// The sequence number this snapshot reads at.
    pub fn seqno(&self) -> SeqNo {
        self.guard.seq()
    }

    /// The value of `key` in `keyspace` at this snapshot.
    ///
    /// # Errors
    /// As [`Keyspace::get`].
    pub fn get(&self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        check_key(key)?;
        self.check_readable(keyspace)?;
        self.db.inner.get(&keyspace.ks, key, Some(self.guard.seq()))
    }

    /// Every key of `keyspace` at this snapshot.
    pub fn iter(&self, keyspace: &Keyspace) -> Iter {
        keyspace.iter_bounded(Some(self), None, None)
    }

    /// Keys of `keyspace` in `[start, end)` at this snapshot.
    pub fn range(&self, keyspace: &Keyspace, start: Option<&[u8]>, end: Option<&[u8]>) -> Iter {
        keyspace.iter_bounded(
            Some(self),
            start.map(<[u8]>::to_vec),
            end.map(<[u8]>::to_vec),
        )
    }

    /// Keys of `keyspace` starting with `prefix` at this snapshot.
    pub fn prefix(&self, keyspace: &Keyspace, prefix: impl AsRef<[u8]>) -> Iter {
        let prefix = prefix.as_ref();
        keyspace.iter_bounded(Some(self), Some(prefix.to_vec()), prefix_successor(prefix))
    }

    /// A cursor over `keyspace` at this snapshot.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::UnknownKeyspace`].
    pub fn cursor(&self, keyspace: &Keyspace) -> Result<Cursor> {
        self.check_readable(keyspace)?;
        self.db.inner.cursor(
            &keyspace.ks,
            self.guard.seq(),
            Some(self.guard.duplicate()),
            None,
            None,
        )
    }
}

#[cfg(test)]
mod publisher_tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn counter_and_publisher() -> (SeqCounter, Publisher) {
        (SeqCounter::new(SeqNo(1)), Publisher::new(SeqNo(0)))
    }

    /// Runs `blocked` on another thread, checks that it has not returned 20 ms later
    /// (`what` names what returning early would mean), runs `release`, and returns
    /// what `blocked` returned.
    fn blocked_until<T: Send>(
        blocked: impl FnOnce() -> T + Send,
        release: impl FnOnce(),
        what: &str,
    ) -> T {
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let out = blocked();
                done.store(true, Ordering::SeqCst);
                out
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!done.load(Ordering::SeqCst), "{what}");
            release();
            waiter.join().unwrap()
        })
    }

    #[test]
    fn visible_moves_only_over_a_contiguous_run_of_published_ranges() {
        let (c, p) = counter_and_publisher();
        let a = p.reserve(&c, 1).unwrap();
        let b = p.reserve(&c, 3).unwrap();
        let d = p.reserve(&c, 1).unwrap();
        assert_eq!((a, b, d), (SeqNo(1), SeqNo(2), SeqNo(5)));
        // Later ranges publish first without waiting, and stay invisible.
        p.publish(d, d);
        p.publish(b, b.plus(2));
        assert_eq!(p.visible(), SeqNo(0));
        // The range closing the gap carries the visible number over the others.
        p.publish(a, a);
        assert_eq!(p.visible(), SeqNo(5));
        assert_eq!(p.read_point(), SeqNo(5));
    }

    #[test]
    fn reads_wait_only_for_a_gap_below_a_published_range() {
        let (c, p) = counter_and_publisher();
        let a = p.reserve(&c, 1).unwrap();
        p.publish(a, a);
        // A write in flight that no one has been told about: reads do not wait for it.
        let b = p.reserve(&c, 1).unwrap();
        assert_eq!(p.read_point(), a);
        // A later write published (its writer may have returned) above the gap `b`
        // leaves: a read must include it, so it waits until `b` is in.
        let d = p.reserve(&c, 1).unwrap();
        p.publish(d, d);
        assert_eq!(p.visible(), a);
        let at = blocked_until(|| p.read_point(), || p.publish(b, b), "read past a gap");
        assert_eq!(at, d);
    }

    /// Regression (review): a writer preempted between making its range visible and
    /// recording it as published left the newest published number below the visible
    /// one; a read at it could miss a version a flush had merged away under the
    /// visible number.
    #[test]
    fn a_read_is_never_below_the_visible_number() {
        let (c, p) = counter_and_publisher();
        let a = p.reserve(&c, 1).unwrap();
        p.publish(a, a);
        // As if a writer's range became visible and it has not yet recorded it.
        let b = p.reserve(&c, 1).unwrap();
        let slot = p.slot_of(b.0);
        slot.last.store(b.0, Ordering::SeqCst);
        slot.first.store(b.0 | SLOT_READY, Ordering::SeqCst);
        p.advance(false);
        assert_eq!(p.visible(), b);
        assert_eq!(p.published.load(Ordering::SeqCst), a.0);
        assert_eq!(p.read_point(), b);
    }

    #[test]
    fn a_range_whose_slot_is_taken_publishes_in_order() {
        let (c, p) = counter_and_publisher();
        let a = p.reserve(&c, 1).unwrap();
        // Two ranges in flight whose first numbers share a slot.
        let b = p.reserve(&c, 1).unwrap();
        let big = p.reserve(&c, PUBLISH_SLOTS as u64 - 1).unwrap();
        let e = p.reserve(&c, 1).unwrap();
        assert_eq!(b.0 % PUBLISH_SLOTS as u64, e.0 % PUBLISH_SLOTS as u64);
        p.publish(b, b);
        p.publish(big, big.plus(PUBLISH_SLOTS as u64 - 2));
        // Its slot holds `b`, not yet visible: it must wait for `a`.
        blocked_until(
            || p.publish(e, e),
            || {
                assert_eq!(p.visible(), SeqNo(0));
                p.publish(a, a);
            },
            "published out of order",
        );
        assert_eq!(p.visible(), e);
    }

    #[test]
    fn concurrent_writers_never_expose_a_gap() {
        let c = SeqCounter::new(SeqNo(1));
        let p = Publisher::new(SeqNo(0));
        // applied[s] is set before s is published; a reader at the visible number
        // must find every number at or below it applied.
        const N: u64 = 40_000;
        let applied: Vec<AtomicBool> = (0..=N + 64).map(|_| AtomicBool::new(false)).collect();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..3u64)
                .map(|t| {
                    let (c, p, applied) = (&c, &p, &applied);
                    s.spawn(move || {
                        let mut i = 0u64;
                        while c.peek_next().0 <= N {
                            let n = 1 + (i + t) % 5;
                            let first = p.reserve(c, n).unwrap();
                            for k in 0..n {
                                applied[(first.0 + k) as usize].store(true, Ordering::SeqCst);
                            }
                            if i % 97 == t {
                                std::thread::yield_now();
                            }
                            p.publish(first, first.plus(n - 1));
                            i += 1;
                        }
                    })
                })
                .collect();
            let reader = s.spawn(|| {
                let mut checked = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let v = p.visible().0;
                    for k in checked + 1..=v {
                        assert!(
                            applied[k as usize].load(Ordering::SeqCst),
                            "{k} visible unapplied"
                        );
                    }
                    checked = checked.max(v);
                }
            });
            for w in writers {
                w.join().unwrap();
            }
            // Every reservation was published: the visible number reaches the last.
            assert_eq!(p.read_point(), c.peek_next().prev());
            stop.store(true, Ordering::SeqCst);
            reader.join().unwrap();
        });
    }
}
