//! Background work: flushes and compactions on a bounded pool of threads.
//!
//! `Options::background_threads` workers take jobs from one channel. A flush turns the
//! oldest sealed memtable of a keyspace into a level-0 table; a compaction merges
//! tables down the levels. Both write their output tables (fsynced, directory fsynced),
//! then append a version edit to the manifest (fsynced), then install a new view, and
//! only then let go of what they replaced: WAL segments after the manifest's sync mark,
//! input tables when their last reader drops them.
//!
//! The compaction policy here is the interim leveled one of the engine-core issue:
//! level 0 compacts into level 1 when it holds `l0_compaction_trigger` tables; level
//! `n >= 1` compacts one table (round robin) into level `n + 1` when it exceeds
//! `base_level_bytes * level_size_ratio^(n-1)`; a table overlapping nothing below is
//! moved, not rewritten. Versions no snapshot can see are dropped, tombstones at the
//! bottom.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strata_wal::SeqNo;

use crate::db::{table_file_name, DbInner, Job, KeyspaceInner, View};
use crate::error::{Error, Result};
use crate::ids::{Level, TableId};
use crate::iter::InternalIterator;
use crate::key::{parse_internal_key, user_key, ValueKind};
use crate::manifest::{TableMeta, VersionEdit};
use crate::merge::MergingIterator;
use crate::snapshot::stripe;
use crate::table::{Table, TableBuildOptions, TableBuilder};
use crate::version::{TableHandle, Version, NUM_LEVELS};

/// Starts the worker threads.
pub(crate) fn start_workers(inner: &Arc<DbInner>) -> Result<()> {
    let mut workers = inner.workers().lock();
    for i in 0..inner.options.background_threads {
        let db = Arc::clone(inner);
        let handle = std::thread::Builder::new()
            .name(format!("strata-bg-{i}"))
            .spawn(move || worker_loop(&db))
            .map_err(|e| Error::io("spawn background thread", &inner.path, e))?;
        workers.push(handle);
    }
    Ok(())
}

fn worker_loop(inner: &DbInner) {
    while let Ok(job) = inner.jobs_rx().recv() {
        if inner.is_closed() || job == Job::Stop {
            if job == Job::Stop {
                return;
            }
            continue;
        }
        let ks = match job {
            Job::Flush(id) | Job::Compact(id) => inner.catalog.read().by_id.get(&id).cloned(),
            Job::Stop => None,
        };
        let Some(ks) = ks else { continue };
        if inner.poisoned().is_some() {
            // After a failed write nothing more is written until reopen.
            continue;
        }
        let result = match job {
            Job::Flush(_) => flush_all_sealed(inner, &ks),
            Job::Compact(_) => compact_until_done(inner, &ks),
            Job::Stop => Ok(()),
        };
        // The failing flush or compaction has poisoned the database itself.
        if result.is_err() && !ks.dropped.load(Ordering::SeqCst) && !inner.is_closed() {
            inner
                .counters
                .background_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        notify_progress(inner);
    }
}

fn notify_progress(inner: &DbInner) {
    let (lock, cond) = &inner.progress;
    let _g = lock.lock();
    cond.notify_all();
}

fn flush_all_sealed(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<()> {
    while flush_oldest(inner, ks)? {}
    Ok(())
}

fn compact_until_done(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<()> {
    while !inner.is_closed() && compact_once(inner, ks)? {}
    Ok(())
}

/// Clears a keyspace's work flag when dropped.
struct WorkFlag<'a> {
    ks: &'a KeyspaceInner,
    flush: bool,
}

impl Drop for WorkFlag<'_> {
    fn drop(&mut self) {
        let mut work = self.ks.work.lock();
        if self.flush {
            work.flushing = false;
        } else {
            work.compacting = false;
        }
    }
}

fn take_flag(ks: &KeyspaceInner, flush: bool) -> Option<WorkFlag<'_>> {
    let mut work = ks.work.lock();
    let busy = if flush {
        &mut work.flushing
    } else {
        &mut work.compacting
    };
    if *busy {
        return None;
    }
    *busy = true;
    Some(WorkFlag { ks, flush })
}

/// Decides, entry by entry in internal-key order, which versions an output keeps.
struct VersionFilter<'a> {
    pinned: &'a [SeqNo],
    bottommost: bool,
    tombstones: &'a [(Vec<u8>, SeqNo)],
    last_key: Vec<u8>,
    last_stripe: Option<SeqNo>,
}

impl<'a> VersionFilter<'a> {
    fn new(pinned: &'a [SeqNo], bottommost: bool, tombstones: &'a [(Vec<u8>, SeqNo)]) -> Self {
        VersionFilter {
            pinned,
            bottommost,
            tombstones,
            last_key: Vec::new(),
            last_stripe: None,
        }
    }

    /// Whether to keep this entry. Entries must come in internal-key order.
    fn keep(&mut self, ikey: &[u8]) -> Result<bool> {
        let p = parse_internal_key(ikey)
            .ok_or_else(|| Error::corruption("(compaction input)", 0, "malformed internal key"))?;
        let stripe_of = stripe(self.pinned, p.seq);
        let same_key = self.last_stripe.is_some() && self.last_key == p.user_key;
        if same_key && self.last_stripe == Some(stripe_of) {
            // A newer version in the same stripe hides this one from every reader.
            return Ok(false);
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(p.user_key);
        self.last_stripe = Some(stripe_of);
        let no_older_snapshot = self.pinned.first().is_none_or(|oldest| *oldest >= p.seq);
        if p.kind == ValueKind::Delete && self.bottommost && no_older_snapshot {
            // Nothing older survives below, and no snapshot needs the tombstone.
            return Ok(false);
        }
        if p.kind == ValueKind::Put {
            let covered = self.tombstones.iter().any(|(prefix, t)| {
                *t > p.seq && p.user_key.starts_with(prefix) && stripe(self.pinned, *t) == stripe_of
            });
            if covered {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn build_options(ks: &KeyspaceInner) -> TableBuildOptions {
    TableBuildOptions {
        block_size: ks.options.block_size,
        bloom_bits_per_key: ks.options.bloom_bits_per_key,
        compression: ks.options.compression,
        ..TableBuildOptions::default()
    }
}

/// Writes the entries `it` yields (filtered) into tables at `level`, split at
/// `target` bytes on user-key boundaries, fsynced with their directory entries, and
/// opens them.
fn build_tables(
    inner: &DbInner,
    ks: &KeyspaceInner,
    it: &mut dyn InternalIterator,
    filter: &mut VersionFilter<'_>,
    level: Level,
    target: Option<u64>,
) -> Result<Vec<Arc<TableHandle>>> {
    let mut finished: Vec<(TableId, PathBuf)> = Vec::new();
    // Every file created, finished or not, so a failure leaves none behind.
    let mut created: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<()> {
        let mut current: Option<(TableBuilder, TableId, PathBuf)> = None;
        let mut last_user_key: Vec<u8> = Vec::new();
        it.seek_to_first()?;
        while it.valid() {
            let key = it.key();
            if filter.keep(key)? {
                let split = match (&current, target) {
                    (Some((b, _, _)), Some(t)) => {
                        b.estimated_size() >= t && user_key(key) != last_user_key.as_slice()
                    }
                    _ => false,
                };
                if split {
                    if let Some((b, id, path)) = current.take() {
                        b.finish()?;
                        finished.push((id, path));
                    }
                }
                if current.is_none() {
                    let id = TableId(inner.next_file.fetch_add(1, Ordering::SeqCst));
                    let path = inner.path.join(table_file_name(id));
                    created.push(path.clone());
                    let file = inner.fs.create(&path)?;
                    current = Some((TableBuilder::new(file, build_options(ks))?, id, path));
                }
                if let Some((b, _, _)) = current.as_mut() {
                    b.add(key, &it.value())?;
                }
                last_user_key.clear();
                last_user_key.extend_from_slice(user_key(key));
            }
            it.next()?;
        }
        if let Some((b, id, path)) = current.take() {
            b.finish()?;
            finished.push((id, path));
        }
        Ok(())
    })();
    let opened = result.and_then(|()| {
        if !finished.is_empty() {
            inner.fs.sync_dir(&inner.path)?;
        }
        finished
            .iter()
            .map(|(id, path)| {
                let table = Table::open(
                    inner.fs.open(path)?,
                    *id,
                    Some(Arc::clone(&inner.cache)),
                    inner.options.use_mmap,
                )?;
                let props = table.properties();
                let meta = TableMeta {
                    id: *id,
                    level,
                    size: table.file_size(),
                    smallest: props.smallest_key.clone(),
                    largest: props.largest_key.clone(),
                    min_seq: props.min_seq,
                    max_seq: props.max_seq,
                    entries: props.entries,
                    deletions: props.deletions,
                };
                Ok(Arc::new(TableHandle::new(
                    meta,
                    table,
                    Arc::clone(&inner.fs),
                    path.clone(),
                )))
            })
            .collect::<Result<Vec<_>>>()
    });
    if opened.is_err() {
        // Not in the manifest: remove what was written (open would remove it anyway).
        for path in &created {
            let _ = inner.fs.remove(path);
        }
    }
    opened
}

/// Poisons the database when background work (run by a worker or by a user thread
/// through `flush`/`compact`) fails, unless its keyspace was dropped or the database
/// closed meanwhile.
fn poison_on_error<T>(inner: &DbInner, ks: &KeyspaceInner, result: Result<T>) -> Result<T> {
    if let Err(e) = &result {
        if !ks.dropped.load(Ordering::SeqCst) && !inner.is_closed() {
            inner.poison(e);
        }
    }
    result
}

/// Flushes the oldest sealed memtable of `ks`. Returns whether one was flushed. A
/// failure poisons the database.
pub(crate) fn flush_oldest(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<bool> {
    poison_on_error(inner, ks, flush_oldest_inner(inner, ks))
}

fn flush_oldest_inner(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<bool> {
    let Some(_flag) = take_flag(ks, true) else {
        return Ok(false);
    };
    let Some(sealed) = ks.view().sealed.last().cloned() else {
        return Ok(false);
    };
    // Every write the memtable owns must be in it before it is read.
    inner.publisher.wait_visible(sealed.end.prev());
    let pinned = inner.snapshots.pinned();
    let handles = if !sealed.memtable.is_empty() {
        let mut filter = VersionFilter::new(&pinned, false, &[]);
        let mut it = sealed.memtable.iter();
        build_tables(inner, ks, &mut it, &mut filter, Level(0), None)?
    } else {
        Vec::new()
    };
    let tombstones = sealed.memtable.prefix_tombstones();
    // Every write below the boundary, in any keyspace, must be durable before this
    // keyspace's part of them is: otherwise a power loss could keep these tables but
    // lose earlier Buffered writes of another keyspace, and what survives would not
    // be a prefix of the log.
    inner.wal.sync()?;
    let visible = inner.publisher.visible();
    let mut edit = VersionEdit {
        next_file_number: Some(inner.next_file.load(Ordering::SeqCst)),
        last_seq: Some(visible.max(sealed.end.prev())),
        added_tables: handles.iter().map(|h| (ks.id, h.meta.clone())).collect(),
        flushed_seqs: vec![(ks.id, sealed.end.prev())],
        added_prefix_tombstones: tombstones
            .iter()
            .map(|(p, s)| (ks.id, p.clone(), *s))
            .collect(),
        ..VersionEdit::default()
    };
    // Keyspaces with nothing unflushed advance too, so they never pin the WAL.
    let others: Vec<Arc<KeyspaceInner>> = inner.catalog.read().by_id.values().cloned().collect();
    for other in others.iter().filter(|o| o.id != ks.id) {
        let view = other.view();
        if view.sealed.is_empty() && view.active.is_empty() {
            edit.flushed_seqs.push((other.id, visible));
        }
    }
    {
        let mut meta = inner.meta.lock();
        if ks.dropped.load(Ordering::SeqCst) || inner.is_closed() {
            discard(&handles);
            return Ok(false);
        }
        // Idle keyspaces dropped since they were listed are no longer in the state.
        edit.flushed_seqs
            .retain(|(id, _)| meta.state.keyspaces.contains_key(id));
        meta.commit(
            &edit,
            false,
            &inner.next_file,
            inner.options.manifest_rollover_bytes,
        )
        .inspect_err(|e| {
            discard(&handles);
            inner.poison(e);
        })?;
        let mut view = ks.view.write();
        let mut version: Version = view.version.apply(&[], &handles);
        if !tombstones.is_empty() {
            let mut all = view.version.prefix_tombstones.as_ref().clone();
            all.extend(tombstones);
            version.prefix_tombstones = Arc::new(all);
        }
        *view = Arc::new(View {
            active: Arc::clone(&view.active),
            active_first: view.active_first,
            sealed: view
                .sealed
                .iter()
                .filter(|s| !Arc::ptr_eq(&s.memtable, &sealed.memtable))
                .cloned()
                .collect(),
            version: Arc::new(version),
        });
    }
    let bytes: u64 = handles.iter().map(|h| h.meta.size).sum();
    ks.counters.flushes.fetch_add(1, Ordering::Relaxed);
    ks.counters.flush_bytes.fetch_add(bytes, Ordering::Relaxed);
    inner.release_wal()?;
    notify_progress(inner);
    let _ = inner.jobs.send(Job::Compact(ks.id));
    flush_for_wal_limit(inner);
    Ok(true)
}

/// Deletes the files of tables that were built but will never be installed.
fn discard(handles: &[Arc<TableHandle>]) {
    for h in handles {
        h.mark_obsolete();
    }
}

/// When the WAL holds more than `max_wal_bytes`, seals the memtable holding the
/// oldest unflushed write, so its segments can go.
pub(crate) fn flush_for_wal_limit(inner: &DbInner) {
    let segments = inner.wal.segments().len() as u64;
    if segments.saturating_mul(inner.options.wal_segment_bytes) <= inner.options.max_wal_bytes {
        return;
    }
    let oldest = {
        let meta = inner.meta.lock();
        let catalog = inner.catalog.read();
        meta.state
            .keyspaces
            .iter()
            .filter_map(|(id, k)| {
                catalog
                    .by_id
                    .get(id)
                    .map(|ks| (k.flushed_seq, Arc::clone(ks)))
            })
            .filter(|(_, ks)| !ks.view().active.is_empty())
            .min_by_key(|(seq, _)| *seq)
            .map(|(_, ks)| ks)
    };
    if let Some(ks) = oldest {
        inner.maybe_switch_memtable(&ks, true);
    }
}

/// A compaction to run.
struct Task {
    /// Tables taken from `level`.
    inputs: Vec<Arc<TableHandle>>,
    /// Overlapping tables taken from `output`.
    overlapping: Vec<Arc<TableHandle>>,
    level: usize,
    output: usize,
    bottommost: bool,
    /// Move `inputs[0]` down without rewriting it.
    trivial_move: bool,
}

fn level_target(ks: &KeyspaceInner, level: usize) -> u64 {
    let mut t = ks.options.base_level_bytes;
    for _ in 1..level {
        t = t.saturating_mul(u64::from(ks.options.level_size_ratio));
    }
    t
}

fn key_range(tables: &[&Arc<TableHandle>]) -> Option<(Vec<u8>, Vec<u8>)> {
    let lo = tables.iter().map(|t| t.smallest_user_key()).min()?.to_vec();
    let hi = tables.iter().map(|t| t.largest_user_key()).max()?.to_vec();
    Some((lo, hi))
}

fn is_bottommost(version: &Version, output: usize, lo: &[u8], hi: &[u8]) -> bool {
    version.levels[output + 1..]
        .iter()
        .flatten()
        .all(|t| !t.overlaps(lo, hi))
}

fn pick(ks: &KeyspaceInner, version: &Version, pointers: &[Vec<u8>]) -> Option<Task> {
    let mut best = (0usize, 0.0f64);
    let l0_score = version.table_count(0) as f64 / ks.options.l0_compaction_trigger as f64;
    if l0_score > best.1 {
        best = (0, l0_score);
    }
    for level in 1..NUM_LEVELS - 1 {
        let score = version.level_bytes(level) as f64 / level_target(ks, level) as f64;
        if score > best.1 {
            best = (level, score);
        }
    }
    if best.1 < 1.0 {
        return None;
    }
    let level = best.0;
    let output = level + 1;
    let inputs: Vec<Arc<TableHandle>> = if level == 0 {
        version.levels[0].clone()
    } else {
        let tables = &version.levels[level];
        let pointer = pointers.get(level).map(Vec::as_slice).unwrap_or(&[]);
        let chosen = tables
            .iter()
            .find(|t| t.smallest_user_key() > pointer)
            .or_else(|| tables.first())?;
        vec![Arc::clone(chosen)]
    };
    let (lo, hi) = key_range(&inputs.iter().collect::<Vec<_>>())?;
    let overlapping: Vec<Arc<TableHandle>> = version.levels[output]
        .iter()
        .filter(|t| t.overlaps(&lo, &hi))
        .cloned()
        .collect();
    let mut all: Vec<&Arc<TableHandle>> = inputs.iter().collect();
    all.extend(overlapping.iter());
    let (lo, hi) = key_range(&all)?;
    let trivial_move = overlapping.is_empty() && inputs.len() == 1;
    Some(Task {
        bottommost: is_bottommost(version, output, &lo, &hi),
        inputs,
        overlapping,
        level,
        output,
        trivial_move,
    })
}

/// Whether the policy wants a compaction of `ks` now.
pub(crate) fn compaction_due(ks: &KeyspaceInner) -> bool {
    let pointers = ks.work.lock().compact_pointer.clone();
    pick(ks, &ks.view().version, &pointers).is_some()
}

/// Runs one compaction of `ks` if one is due. Returns whether one ran.
pub(crate) fn compact_once(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<bool> {
    let Some(_flag) = take_flag(ks, false) else {
        return Ok(false);
    };
    let view = ks.view();
    let pointers = ks.work.lock().compact_pointer.clone();
    let Some(task) = pick(ks, &view.version, &pointers) else {
        return Ok(false);
    };
    run(inner, ks, &view.version, task)?;
    Ok(true)
}

/// Compacts every table of `ks` into one sorted level (the deepest in use, at least
/// level 1), dropping everything no snapshot needs.
pub(crate) fn compact_all(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<()> {
    let flag = loop {
        inner.check_writable()?;
        if ks.dropped.load(Ordering::SeqCst) {
            return Err(Error::UnknownKeyspace(ks.name.clone()));
        }
        if let Some(flag) = take_flag(ks, false) {
            break flag;
        }
        let (lock, cond) = &inner.progress;
        let mut g = lock.lock();
        cond.wait_for(&mut g, std::time::Duration::from_millis(20));
    };
    let view = ks.view();
    let version = &view.version;
    let tables: Vec<Arc<TableHandle>> = version.all_tables().cloned().collect();
    if tables.is_empty() {
        return Ok(());
    }
    let output = version.deepest_nonempty_level().max(1);
    let (inputs, overlapping): (Vec<_>, Vec<_>) = tables
        .into_iter()
        .partition(|t| usize::from(t.meta.level.0) != output);
    let task = Task {
        inputs,
        overlapping,
        level: 0,
        output,
        bottommost: true,
        trivial_move: false,
    };
    let result = run(inner, ks, version, task);
    drop(flag);
    notify_progress(inner);
    result
}

/// Runs a compaction task; a failure poisons the database.
fn run(inner: &DbInner, ks: &Arc<KeyspaceInner>, version: &Version, task: Task) -> Result<()> {
    poison_on_error(inner, ks, run_task(inner, ks, version, task))
}

fn run_task(inner: &DbInner, ks: &Arc<KeyspaceInner>, version: &Version, task: Task) -> Result<()> {
    let removed: Vec<(crate::ids::KeyspaceId, Level, TableId)> = task
        .inputs
        .iter()
        .chain(task.overlapping.iter())
        .map(|t| (ks.id, t.meta.level, t.id()))
        .collect();
    let outputs: Vec<Arc<TableHandle>> = if task.trivial_move {
        let t = &task.inputs[0];
        let mut meta = t.meta.clone();
        meta.level = Level(task.output as u8);
        vec![Arc::new(TableHandle::new(
            meta,
            Arc::clone(&t.table),
            Arc::clone(&inner.fs),
            inner.path.join(table_file_name(t.id())),
        ))]
    } else {
        let pinned = inner.snapshots.pinned();
        let tombstones = version.prefix_tombstones.as_ref().clone();
        let mut filter = VersionFilter::new(&pinned, task.bottommost, &tombstones);
        let children: Vec<Box<dyn InternalIterator>> = task
            .inputs
            .iter()
            .chain(task.overlapping.iter())
            .map(|t| Box::new(t.table.iter()) as Box<dyn InternalIterator>)
            .collect();
        let mut merged = MergingIterator::new(children);
        build_tables(
            inner,
            ks,
            &mut merged,
            &mut filter,
            Level(task.output as u8),
            Some(ks.options.target_table_bytes),
        )?
    };
    let removed_ids: Vec<TableId> = removed.iter().map(|(_, _, id)| *id).collect();
    {
        let mut meta = inner.meta.lock();
        // Outputs that will never be installed are deleted; a moved table's file is
        // its input's, and stays.
        let discard_outputs = || {
            if !task.trivial_move {
                discard(&outputs);
            }
        };
        if ks.dropped.load(Ordering::SeqCst) || inner.is_closed() {
            discard_outputs();
            return Ok(());
        }
        // Versions change only under the manifest lock, which we hold: the version
        // computed here is still current when it is installed below, and readers are
        // not blocked while the manifest is fsynced.
        let current = ks.view().version.clone();
        let mut new_version = current.apply(&removed_ids, &outputs);
        // Prefix tombstones no table can still need: nothing older than them overlaps.
        let oldest_reader = inner.snapshots.oldest().unwrap_or(SeqNo::MAX);
        let (done, keep): (Vec<_>, Vec<_>) = new_version
            .prefix_tombstones
            .iter()
            .cloned()
            .partition(|(prefix, t)| {
                *t <= oldest_reader
                    && !new_version
                        .all_tables()
                        .any(|table| table.overlaps_prefix(prefix) && table.meta.min_seq < *t)
            });
        let edit = VersionEdit {
            next_file_number: Some(inner.next_file.load(Ordering::SeqCst)),
            added_tables: outputs.iter().map(|h| (ks.id, h.meta.clone())).collect(),
            removed_tables: removed,
            removed_prefix_tombstones: done.iter().map(|(p, s)| (ks.id, p.clone(), *s)).collect(),
            ..VersionEdit::default()
        };
        // Inputs are deleted below: the edit must be beyond doubt first (marked).
        meta.commit(
            &edit,
            true,
            &inner.next_file,
            inner.options.manifest_rollover_bytes,
        )
        .inspect_err(|e| {
            discard_outputs();
            inner.poison(e);
        })?;
        new_version.prefix_tombstones = Arc::new(keep);
        let mut view = ks.view.write();
        *view = Arc::new(View {
            active: Arc::clone(&view.active),
            active_first: view.active_first,
            sealed: view.sealed.clone(),
            version: Arc::new(new_version),
        });
    }
    if !task.trivial_move {
        for t in task.inputs.iter().chain(task.overlapping.iter()) {
            t.mark_obsolete();
        }
        let read: u64 = task
            .inputs
            .iter()
            .chain(task.overlapping.iter())
            .map(|t| t.meta.size)
            .sum();
        let written: u64 = outputs.iter().map(|t| t.meta.size).sum();
        ks.counters
            .compaction_read_bytes
            .fetch_add(read, Ordering::Relaxed);
        ks.counters
            .compaction_write_bytes
            .fetch_add(written, Ordering::Relaxed);
    }
    ks.counters.compactions.fetch_add(1, Ordering::Relaxed);
    if task.level >= 1 {
        let hi = task
            .inputs
            .iter()
            .map(|t| t.largest_user_key().to_vec())
            .max()
            .unwrap_or_default();
        let mut work = ks.work.lock();
        if work.compact_pointer.len() < NUM_LEVELS {
            work.compact_pointer.resize(NUM_LEVELS, Vec::new());
        }
        work.compact_pointer[task.level] = hi;
    }
    notify_progress(inner);
    Ok(())
}
