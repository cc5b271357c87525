//! Background work: flushes and compactions on a bounded pool of threads.
//!
//! `Options::background_threads` workers take jobs from one channel. A flush turns the
//! oldest sealed memtable of a keyspace into a level-0 table; a compaction merges
//! tables down the levels. Both write their output tables (fsynced, directory fsynced),
//! then append a version edit to the manifest (fsynced), then install a new view, and
//! only then let go of what they replaced: WAL segments after the manifest's sync mark,
//! input tables when their last reader drops them.
//!
//! What to compact is the keyspace's policy's decision (see `compaction.rs`); this
//! module holds what flush and compaction share: the [`VersionFilter`] that decides
//! which versions an output keeps, and [`build_tables`], which writes them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use strata_wal::SeqNo;

use crate::compaction::{compact_once, gc_until_done, refresh_pressure};
use crate::compaction_filter::{CompactionFilter, FilterDecision};
use crate::db::{table_file_name, DbInner, Job, KeyspaceInner, View};
use crate::error::{Error, Result};
use crate::ids::{Level, TableId};
use crate::iter::InternalIterator;
use crate::key::{parse_internal_key, push_internal_key, user_key, ValueKind};
use crate::manifest::{TableMeta, ValueRef, VersionEdit};
use crate::snapshot::Retention;
use crate::table::{Table, TableBuildOptions, TableBuilder};
use crate::value_log::{SegmentHandle, SegmentMap, ValueSeparator};
use crate::version::{TableHandle, Version};

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

/// Starts the housekeeping thread. It seals and flushes WAL-bypass writes older than
/// their keyspace's `bypass_flush_interval`, notes time marks every
/// `history_mark_interval` (and writes them to the manifest every few seconds), and
/// with `wal_retention_age` deletes WAL segments that aged out. It wakes every
/// quarter of the shortest bypass interval, every mark interval, at least every
/// 250 ms, and at every flush, compaction and close.
pub(crate) fn start_housekeeper(inner: &Arc<DbInner>) -> Result<()> {
    let db = Arc::clone(inner);
    let handle = std::thread::Builder::new()
        .name("strata-housekeeping".into())
        .spawn(move || housekeeping_loop(&db))
        .map_err(|e| Error::io("spawn background thread", &inner.path, e))?;
    inner.workers().lock().push(handle);
    Ok(())
}

fn housekeeping_loop(inner: &DbInner) {
    let mark_interval = inner.options.history_mark_interval;
    let mut next_mark = std::time::Instant::now() + mark_interval;
    loop {
        let mut tick = std::time::Duration::from_millis(250).min(mark_interval);
        if inner.poisoned().is_none() {
            retry_after_full_disk(inner, &mut tick);
            flush_overdue_bypass_writes(inner, &mut tick);
            if std::time::Instant::now() >= next_mark {
                next_mark = std::time::Instant::now() + mark_interval;
                inner.note_time_mark();
                // Failures poison the database (see `commit_edit`); writes report it.
                let _ = inner.persist_marks_if_due();
                if inner.options.wal_retention_age.is_some() {
                    let _ = inner.release_wal();
                }
            }
        }
        let (lock, cond) = &inner.progress;
        let mut g = lock.lock();
        // Checked under the lock `close` notifies under: no wake-up is missed.
        if inner.is_closed() {
            return;
        }
        cond.wait_for(&mut g, tick);
    }
}

/// Queues every keyspace's flush and compaction again once the delay after a failure
/// for want of space has passed; shortens `tick` to reach that moment.
fn retry_after_full_disk(inner: &DbInner, tick: &mut std::time::Duration) {
    let due = {
        let mut at = inner.full_disk_retry_at.lock();
        match *at {
            Some(t) if std::time::Instant::now() >= t => {
                *at = None;
                true
            }
            Some(t) => {
                *tick = (*tick).min(t.saturating_duration_since(std::time::Instant::now()));
                false
            }
            None => false,
        }
    };
    if due {
        let ids: Vec<_> = inner.catalog.read().by_id.keys().copied().collect();
        for id in ids {
            let _ = inner.jobs.send(Job::Flush(id));
            let _ = inner.jobs.send(Job::Compact(id));
        }
    }
}

/// Seals and queues for flush every memtable holding bypass writes older than its
/// keyspace's interval; shortens `tick` to a quarter of the shortest interval.
fn flush_overdue_bypass_writes(inner: &DbInner, tick: &mut std::time::Duration) {
    let keyspaces: Vec<Arc<KeyspaceInner>> = inner.catalog.read().by_id.values().cloned().collect();
    for ks in &keyspaces {
        let Some(interval) = ks.options.bypass_flush_interval else {
            continue;
        };
        *tick = (*tick).min((interval / 4).max(std::time::Duration::from_millis(1)));
        let view = ks.view();
        let overdue = |m: &crate::memtable::Memtable| {
            m.bypass_since().is_some_and(|t| t.elapsed() >= interval)
        };
        if overdue(&view.active) {
            inner.maybe_switch_memtable(ks, true);
        }
        // Sealed ones are queued already; queue again in case a busy worker
        // passed over the job.
        if view.sealed.iter().any(|s| overdue(&s.memtable)) {
            let _ = inner.jobs.send(Job::Flush(ks.id));
        }
    }
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
            Job::Stop => Ok(false),
        };
        // The failing flush or compaction has poisoned the database itself (or, out of
        // space, scheduled its retry).
        if result.is_err() && !ks.dropped.load(Ordering::SeqCst) && !inner.is_closed() {
            inner
                .counters
                .background_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        // Wake stalled writers only when something changed: a writer queues a job
        // and waits, and a wake-up for nothing would have it spin.
        if !matches!(result, Ok(false)) {
            notify_progress(inner);
        }
    }
}

pub(crate) fn notify_progress(inner: &DbInner) {
    let (lock, cond) = &inner.progress;
    let _g = lock.lock();
    cond.notify_all();
}

/// Flushes every sealed memtable of `ks`; returns whether any was flushed.
fn flush_all_sealed(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<bool> {
    let mut any = false;
    while flush_oldest(inner, ks)? {
        any = true;
    }
    Ok(any)
}

/// Runs compaction steps until the policy is satisfied; returns whether any ran. A
/// request that arrived while this keyspace was compacting (and found it busy) is
/// honoured before returning.
///
/// When another thread holds the keyspace's compaction flag, this leaves a request for
/// it and returns at once: the holder runs the policy again before it returns, so the
/// request is not lost, and this worker does not spin on the flag for as long as a
/// long merge holds it.
fn compact_until_done(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<bool> {
    let mut any = false;
    loop {
        if leave_request_if_busy(ks) {
            return Ok(any);
        }
        while !inner.is_closed() && compact_once(inner, ks)? {
            any = true;
        }
        // Compaction is what turns overwritten values into garbage. Collection
        // stops for due compactions; they run first, then collection goes on.
        if !inner.is_closed() && gc_until_done(inner, ks)? {
            any = true;
            if crate::compaction::compaction_due(ks) {
                continue;
            }
        }
        let again = std::mem::take(&mut ks.work.lock().compaction_requested);
        if !again || inner.is_closed() || ks.dropped.load(Ordering::SeqCst) {
            return Ok(any);
        }
    }
}

/// Whether another thread holds `ks`'s compaction flag; if so, asks it (under the same
/// lock) to run the policy again before it lets go.
fn leave_request_if_busy(ks: &KeyspaceInner) -> bool {
    request_if_compacting(&mut ks.work.lock())
}

/// Whether `work` shows a compaction under way; if so, leaves the holder a request to
/// run the policy again before it lets go of the flag.
fn request_if_compacting(work: &mut crate::db::KeyspaceWork) -> bool {
    if work.compacting {
        work.compaction_requested = true;
    }
    work.compacting
}

/// Clears a keyspace's work flag when dropped.
pub(crate) struct WorkFlag<'a> {
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

pub(crate) fn take_flag(ks: &KeyspaceInner, flush: bool) -> Option<WorkFlag<'_>> {
    let mut work = ks.work.lock();
    if flush {
        if work.flushing {
            return None;
        }
        work.flushing = true;
    } else {
        if request_if_compacting(&mut work) {
            return None;
        }
        work.compacting = true;
    }
    Some(WorkFlag { ks, flush })
}

/// What an output does with one input entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Leave it out.
    Skip,
    /// Write it unchanged.
    Keep,
    /// Write a tombstone at its sequence number instead (a compaction filter dropped it
    /// above the bottom of the tree).
    Tombstone,
    /// Write it with this value (a compaction filter changed it).
    Value(Vec<u8>),
}

/// Decides, entry by entry in internal-key order, which versions an output keeps.
pub(crate) struct VersionFilter<'a> {
    retention: &'a Retention,
    bottommost: bool,
    tombstones: &'a [(Vec<u8>, SeqNo)],
    user_filter: Option<&'a dyn CompactionFilter>,
    /// Where the user filter's separated values are read from.
    segments: Option<&'a SegmentMap>,
    last_key: Vec<u8>,
    last_stripe: Option<SeqNo>,
    /// Entries the user filter dropped or changed.
    pub filtered: u64,
}

impl<'a> VersionFilter<'a> {
    pub(crate) fn new(
        retention: &'a Retention,
        bottommost: bool,
        tombstones: &'a [(Vec<u8>, SeqNo)],
        user_filter: Option<&'a dyn CompactionFilter>,
    ) -> Self {
        VersionFilter {
            retention,
            bottommost,
            tombstones,
            user_filter,
            segments: None,
            last_key: Vec::new(),
            last_stripe: None,
            filtered: 0,
        }
    }

    /// Reads separated values from `segments` when the user filter must judge them.
    pub(crate) fn with_segments(mut self, segments: &'a SegmentMap) -> Self {
        self.segments = Some(segments);
        self
    }

    /// What to do with this entry. Entries must come in internal-key order.
    pub(crate) fn decide(&mut self, ikey: &[u8], value: &[u8]) -> Result<Verdict> {
        let p = parse_internal_key(ikey)
            .ok_or_else(|| Error::corruption("(compaction input)", 0, "malformed internal key"))?;
        let stripe_of = self.retention.stripe(p.seq);
        let same_key = self.last_stripe.is_some() && self.last_key == p.user_key;
        if same_key && self.last_stripe == Some(stripe_of) {
            // A newer version in the same stripe hides this one from every reader.
            return Ok(Verdict::Skip);
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(p.user_key);
        self.last_stripe = Some(stripe_of);
        // Nothing older survives below, and no snapshot needs a tombstone here.
        let tombstone_unneeded =
            self.bottommost && self.retention.oldest().is_none_or(|oldest| oldest >= p.seq);
        if p.kind == ValueKind::Delete {
            return Ok(if tombstone_unneeded {
                Verdict::Skip
            } else {
                Verdict::Keep
            });
        }
        if p.kind.is_value() {
            let covered = self.tombstones.iter().any(|(prefix, t)| {
                *t > p.seq
                    && p.user_key.starts_with(prefix)
                    && self.retention.stripe(*t) == stripe_of
            });
            if covered {
                return Ok(Verdict::Skip);
            }
            // The newest version, seen by no snapshot and outside the history window:
            // the user filter's to judge.
            if let (Some(f), true) = (self.user_filter, self.retention.latest_only(stripe_of)) {
                let resolved;
                let value = if p.kind == ValueKind::Pointer {
                    let segments = self.segments.ok_or_else(|| {
                        Error::Internal(
                            "a compaction filter met a separated value it cannot read".into(),
                        )
                    })?;
                    resolved = crate::value_log::resolve(segments, p.user_key, p.seq, value)?;
                    &resolved[..]
                } else {
                    value
                };
                match f.filter(p.user_key, value) {
                    FilterDecision::Keep => {}
                    FilterDecision::Drop => {
                        self.filtered += 1;
                        return Ok(if tombstone_unneeded {
                            Verdict::Skip
                        } else {
                            Verdict::Tombstone
                        });
                    }
                    FilterDecision::ChangeValue(v) => {
                        self.filtered += 1;
                        return Ok(Verdict::Value(v));
                    }
                }
            }
        }
        Ok(Verdict::Keep)
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

/// Where [`build_tables`] puts its output and how it is paced.
pub(crate) struct OutputSpec<'a> {
    /// The level of the tables.
    pub level: Level,
    /// Their run; `None` makes each table a run of its own (level-0 flush output).
    pub run: Option<u64>,
    /// Split into tables of about this many bytes; `None` writes one table.
    pub target: Option<u64>,
    /// Compaction output waits for the rate limiter; flush output only charges it.
    pub rate_limited: bool,
    /// Value-log segments whose values are copied forward (garbage collection).
    pub relocate: &'a BTreeSet<u64>,
    /// The segments pointers of the input may name.
    pub sources: &'a SegmentMap,
    /// Paces values copied forward (background garbage collection).
    pub gc_pacer: Option<&'a crate::rate_limit::RateLimiter>,
}

/// What [`build_tables`] wrote.
pub(crate) struct BuildOutput {
    /// The tables, open.
    pub tables: Vec<Arc<TableHandle>>,
    /// The value-log segments, open.
    pub segments: Vec<Arc<SegmentHandle>>,
    /// Bytes written to the value log.
    pub value_log_bytes: u64,
    /// Bytes of records copied forward from collected segments.
    pub relocated_bytes: u64,
}

impl BuildOutput {
    /// Bytes written: tables and value log.
    pub(crate) fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.meta.size).sum::<u64>() + self.value_log_bytes
    }

    /// Deletes every file of an output that will never be installed.
    pub(crate) fn discard(&self) {
        discard(&self.tables);
        for s in &self.segments {
            s.mark_obsolete();
        }
    }
}

/// Writes the entries `it` yields (filtered) into tables as `spec` says, split on
/// user-key boundaries, with values of at least the keyspace's `value_threshold` (and
/// values in `spec.relocate`'s segments) written to new value-log segments; fsyncs
/// segments, tables and their directory entries, and opens them.
pub(crate) fn build_tables(
    inner: &DbInner,
    ks: &KeyspaceInner,
    it: &mut dyn InternalIterator,
    filter: &mut VersionFilter<'_>,
    spec: &OutputSpec<'_>,
) -> Result<BuildOutput> {
    let (level, target) = (spec.level, spec.target);
    let pace = |bytes: u64| {
        if spec.rate_limited {
            inner.rate_limiter.acquire(bytes, || inner.is_closed());
        } else {
            inner.rate_limiter.charge(bytes);
        }
    };
    let mut separator = ValueSeparator::new(inner, ks.id, &ks.options, spec.relocate, spec.sources)
        .paced(spec.gc_pacer);
    let mut finished: Vec<(TableId, PathBuf, Vec<ValueRef>)> = Vec::new();
    // Every file created, finished or not, so a failure leaves none behind.
    let mut created: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<()> {
        let mut current: Option<(TableBuilder, TableId, PathBuf)> = None;
        let mut last_user_key: Vec<u8> = Vec::new();
        let mut paced: u64 = 0;
        let mut rewritten_key: Vec<u8> = Vec::new();
        it.seek_to_first()?;
        while it.valid() {
            let key = it.key();
            let value = it.value();
            let verdict = filter.decide(key, &value)?;
            if verdict != Verdict::Skip {
                let split = match (&current, target) {
                    (Some((b, _, _)), Some(t)) => {
                        b.estimated_size() >= t && user_key(key) != last_user_key.as_slice()
                    }
                    _ => false,
                };
                if split {
                    if let Some((b, id, path)) = current.take() {
                        pace(b.estimated_size().saturating_sub(paced));
                        paced = 0;
                        b.finish()?;
                        finished.push((id, path, separator.take_table_refs()));
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
                    let p = parse_internal_key(key).ok_or_else(|| {
                        Error::corruption("(compaction input)", 0, "malformed internal key")
                    })?;
                    let (kind, stored): (ValueKind, &[u8]) = match &verdict {
                        Verdict::Tombstone => (ValueKind::Delete, &[]),
                        // A changed value is a plain value again.
                        Verdict::Value(v) => (ValueKind::Put, v),
                        Verdict::Keep | Verdict::Skip => (p.kind, &value),
                    };
                    let pointer = separator.place(key, kind, p.seq, stored)?;
                    let kind = if pointer.is_some() {
                        ValueKind::Pointer
                    } else {
                        kind
                    };
                    let stored = pointer.as_ref().map_or(stored, |ptr| &ptr[..]);
                    if kind == p.kind {
                        b.add(key, stored)?;
                    } else {
                        rewritten_key.clear();
                        push_internal_key(&mut rewritten_key, p.user_key, p.seq, kind);
                        b.add(&rewritten_key, stored)?;
                    }
                    let size = b.estimated_size();
                    if size >= paced + 64 * 1024 {
                        pace(size - paced);
                        paced = size;
                    }
                }
                last_user_key.clear();
                last_user_key.extend_from_slice(user_key(key));
            }
            it.next()?;
        }
        if let Some((b, id, path)) = current.take() {
            pace(b.estimated_size().saturating_sub(paced));
            b.finish()?;
            finished.push((id, path, separator.take_table_refs()));
        }
        Ok(())
    })();
    // Segments are synced before anything names them.
    let refs: Vec<Vec<ValueRef>> = finished.iter().map(|(_, _, r)| r.clone()).collect();
    let segment_metas = result.and_then(|()| separator.finish(&refs));
    let opened = segment_metas.and_then(|metas| {
        if !finished.is_empty() || !metas.is_empty() {
            inner.fs.sync_dir(&inner.path)?;
        }
        let segments = metas
            .into_iter()
            .map(|m| SegmentHandle::open(&inner.fs, &inner.path, ks.id, m).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let tables = finished
            .iter()
            .map(|(id, path, value_refs)| {
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
                    run: spec.run.unwrap_or(id.0),
                    value_refs: value_refs.clone(),
                };
                Ok(Arc::new(TableHandle::new(
                    meta,
                    table,
                    Arc::clone(&inner.fs),
                    path.clone(),
                )))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BuildOutput {
            tables,
            segments,
            value_log_bytes: separator.written_bytes,
            relocated_bytes: separator.relocated_bytes,
        })
    });
    if opened.is_err() {
        // Not in the manifest: remove what was written (open would remove it anyway).
        for path in &created {
            let _ = inner.fs.remove(path);
        }
        separator.discard();
    }
    opened
}

/// Poisons the database when background work (run by a worker or by a user thread
/// through `flush`/`compact`) fails, unless its keyspace was dropped or the database
/// closed meanwhile, or the disk was full: then the work is retried later (its
/// inputs are untouched; a failed manifest append is handled by the next edit).
pub(crate) fn poison_on_error<T>(
    inner: &DbInner,
    ks: &KeyspaceInner,
    result: Result<T>,
) -> Result<T> {
    if let Err(e) = &result {
        if !ks.dropped.load(Ordering::SeqCst) && !inner.is_closed() {
            inner.poison_unless_out_of_space(e);
        }
    }
    result
}

/// Flushes the oldest sealed memtable of `ks`. Returns whether one was flushed. A
/// failure poisons the database, unless the disk ran out of space while the table
/// was written (see [`poison_on_error`]).
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
    let retention = inner.retention(ks);
    let no_relocation = BTreeSet::new();
    let no_sources = SegmentMap::new();
    let output = if !sealed.memtable.is_empty() {
        let mut filter = VersionFilter::new(&retention, false, &[], None);
        let mut it = sealed.memtable.iter();
        let spec = OutputSpec {
            level: Level(0),
            run: None,
            target: None,
            rate_limited: false,
            relocate: &no_relocation,
            sources: &no_sources,
            gc_pacer: None,
        };
        Some(build_tables(inner, ks, &mut it, &mut filter, &spec)?)
    } else {
        None
    };
    let discard_output = || {
        if let Some(o) = &output {
            o.discard();
        }
    };
    let handles: Vec<Arc<TableHandle>> = output.as_ref().map_or(Vec::new(), |o| o.tables.clone());
    let segments: Vec<Arc<SegmentHandle>> =
        output.as_ref().map_or(Vec::new(), |o| o.segments.clone());
    let tombstones = sealed.memtable.prefix_tombstones();
    // Every write below the boundary, in any keyspace, must be durable before this
    // keyspace's part of them is: otherwise a power loss could keep these tables but
    // lose earlier Buffered writes of another keyspace, and what survives would not
    // be a prefix of the log.
    inner.wal.sync().inspect_err(|_| discard_output())?;
    let visible = inner.publisher.visible();
    let mut edit = VersionEdit {
        next_file_number: Some(inner.next_file.load(Ordering::SeqCst)),
        last_seq: Some(visible.max(sealed.end.prev())),
        added_tables: handles.iter().map(|h| (ks.id, h.meta.clone())).collect(),
        added_segments: segments.iter().map(|s| (ks.id, s.meta)).collect(),
        flushed_seqs: vec![(ks.id, sealed.end.prev())],
        history_floors: retention.horizon.map(|h| (ks.id, h)).into_iter().collect(),
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
            discard_output();
            return Ok(false);
        }
        // Idle keyspaces dropped since they were listed are no longer in the state.
        edit.flushed_seqs
            .retain(|(id, _)| meta.state.keyspaces.contains_key(id));
        inner
            .commit_edit(&mut meta, &edit, false)
            .inspect_err(|e| {
                if DbInner::edit_never_written(e) {
                    discard_output();
                }
            })?;
        let mut view = ks.view.write();
        let mut version: Version = view.version.apply(&[], &handles);
        if !segments.is_empty() {
            version.segments = Arc::new(crate::value_log::with_segments(
                &view.version.segments,
                &segments,
                &[],
            ));
        }
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
    refresh_pressure(ks);
    let bytes: u64 = output.as_ref().map_or(0, BuildOutput::bytes);
    ks.counters.flushes.fetch_add(1, Ordering::Relaxed);
    ks.counters.flush_bytes.fetch_add(bytes, Ordering::Relaxed);
    inner.release_wal()?;
    notify_progress(inner);
    let _ = inner.jobs.send(Job::Compact(ks.id));
    flush_for_wal_limit(inner);
    Ok(true)
}

/// Deletes the files of tables that were built but will never be installed.
pub(crate) fn discard(handles: &[Arc<TableHandle>]) {
    for h in handles {
        h.mark_obsolete();
    }
}

/// When the WAL segments recovery needs hold more than `max_wal_bytes`, seals the
/// memtable holding the oldest unflushed write, so its segments can go. (Segments
/// kept only for change-stream retention do not count.)
pub(crate) fn flush_for_wal_limit(inner: &DbInner) {
    let segments = inner.wal.segments();
    let over = |count: usize| {
        (count as u64).saturating_mul(inner.options.wal_segment_bytes) > inner.options.max_wal_bytes
    };
    if !over(segments.len()) {
        return;
    }
    let bypass = inner.bypass_keyspaces();
    let oldest = {
        let meta = inner.meta.lock();
        let catalog = inner.catalog.read();
        meta.state
            .keyspaces
            .iter()
            .filter(|(id, _)| !bypass.contains(id))
            .filter_map(|(id, k)| {
                catalog
                    .by_id
                    .get(id)
                    .map(|ks| (k.flushed_seq, Arc::clone(ks)))
            })
            .filter(|(_, ks)| !ks.view().active.is_empty())
            .min_by_key(|(seq, _)| *seq)
    };
    if let Some((flushed, ks)) = oldest {
        // Segments from the one holding the oldest unflushed write on.
        let needed = 1 + segments
            .windows(2)
            .filter(|pair| pair[1].1 > flushed.plus(1))
            .count();
        if over(needed) {
            inner.maybe_switch_memtable(&ks, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Db, Options};

    /// Regression: a worker asked to compact a keyspace whose compaction flag another
    /// thread held took back its own request and looped, burning a core for as long
    /// as the other thread's merge ran.
    #[test]
    fn a_worker_does_not_spin_while_another_holds_the_compaction_flag() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let inner = Arc::clone(db.inner());
        let ks = inner.keyspace_by_name("default").unwrap();
        // The workers may be looking at the keyspace after open: wait for the flag.
        let flag = loop {
            if let Some(flag) = take_flag(&ks, false) {
                break flag;
            }
            std::thread::yield_now();
        };
        ks.work.lock().compaction_requested = false;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let worker = {
            let (inner, ks) = (Arc::clone(&inner), Arc::clone(&ks));
            std::thread::spawn(move || {
                let result = compact_until_done(&inner, &ks);
                let _ = tx.send(result.map_err(|e| e.to_string()));
            })
        };
        // Not a performance bound: a spinning worker never returns at all.
        let returned = rx.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(
            returned,
            Ok(Ok(false)),
            "the worker must leave a request and return"
        );
        assert!(
            ks.work.lock().compaction_requested,
            "the holder must find the request"
        );
        drop(flag);
        // Let the worker go in any case, so a failure does not hang the test binary.
        worker.join().unwrap();
        db.close().unwrap();
    }

    /// Review finding: `wait_for_background_work` holds the compaction flag itself
    /// (through `compact_once`); a request a worker left meanwhile must not be dropped.
    #[test]
    fn wait_for_background_work_hands_back_a_request_left_while_it_held_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        db.wait_for_background_work().unwrap();
        let inner = Arc::clone(db.inner());
        let ks = inner.keyspace_by_name("default").unwrap();
        // As a worker that found the flag held leaves it.
        ks.work.lock().compaction_requested = true;
        db.wait_for_background_work().unwrap();
        assert!(
            !ks.work.lock().compaction_requested,
            "the request was neither run nor handed back to a worker"
        );
        db.close().unwrap();
    }
}
