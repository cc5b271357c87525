//! Compaction execution: the keyspace's policy plans, this module carries it out.
//!
//! Each keyspace owns a policy from `strata-compaction` ([`CompactionStyle`]: leveled,
//! tiered or HCA). A compaction job describes the keyspace's tree to it
//! ([`tree_desc`]), feeds it the mix of writes, point reads and scans seen since the
//! last period, asks for one step, checks the step with `strata_compaction::validate`
//! and executes it: a move is a manifest edit, a merge reads its inputs through a
//! merging iterator and writes tables of `target_table_bytes` (paced by the rate
//! limiter), a drop deletes tables that only hold tombstones nobody needs. It asks again
//! until the policy says nothing is due. One compaction runs per keyspace at a time;
//! keyspaces compact in parallel on the background threads.
//!
//! The policy's debt also drives write backpressure: [`refresh_pressure`] records the
//! debt of the tree and the debt it would have once every sealed memtable and one more
//! were flushed; the write path slows writes past `soft_pending_compaction_bytes` and
//! refuses to seal a memtable (so writes wait) when that projection reaches
//! `hard_pending_compaction_bytes` while compaction has work to do.
//!
//! Trade-off: one compaction per keyspace keeps run ids and decisions simple (the tree
//! only changes under the running compaction or by flushes adding newer level-0 runs),
//! but a long merge deep in the tree delays the next level-0 merge of the same keyspace.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_compaction::{
    validate, CompactionPolicy, Decision, Hca, HcaConfig, LevelDesc, Leveled, LeveledConfig, Merge,
    MixWindow, Placement, Reason, RunDesc, TableDesc, TableRef, Tiered, TieredConfig, TreeDesc,
    WorkloadMix,
};
use strata_wal::SeqNo;

use crate::background::{
    build_tables, notify_progress, poison_on_error, take_flag, BuildOutput, OutputSpec,
    VersionFilter,
};
use crate::db::{DbInner, KeyspaceCounters, KeyspaceInner, View};
use crate::error::{Error, Result};
use crate::ids::{KeyspaceId, Level, TableId};
use crate::iter::InternalIterator;
use crate::manifest::VersionEdit;
use crate::merge::MergingIterator;
use crate::options::{CompactionStyle, KeyspaceOptions};
use crate::value_log::GcReport;
use crate::version::{TableHandle, Version, NUM_LEVELS};

/// How often the workload mix is sampled for the policy.
const OBSERVE_PERIOD: Duration = Duration::from_secs(1);
/// Periods in the sliding window the policy sees.
const OBSERVE_WINDOW: usize = 30;

/// Builds the policy a keyspace's options name.
pub(crate) fn make_policy(o: &KeyspaceOptions) -> Result<Box<dyn CompactionPolicy>> {
    let ratio = u64::from(o.level_size_ratio);
    let config_error = |e: strata_compaction::Error| Error::InvalidArgument(e.to_string());
    Ok(match o.compaction {
        CompactionStyle::Leveled => Box::new(
            Leveled::new(LeveledConfig {
                size_ratio: ratio,
                base_level_bytes: o.base_level_bytes,
                l0_trigger: o.l0_compaction_trigger,
            })
            .map_err(config_error)?,
        ),
        CompactionStyle::Tiered => Box::new(
            Tiered::new(TieredConfig {
                runs_per_level: o.level_size_ratio as usize,
                base_level_bytes: o.base_level_bytes,
                l0_trigger: o.l0_compaction_trigger,
                ..TieredConfig::default()
            })
            .map_err(config_error)?,
        ),
        CompactionStyle::Hca => {
            let max_runs = o.level_size_ratio as usize;
            let defaults = HcaConfig::default();
            Box::new(
                Hca::new(HcaConfig {
                    size_ratio: ratio,
                    base_level_bytes: o.base_level_bytes,
                    l0_trigger: o.l0_compaction_trigger,
                    // Room for the flushes that land while level 0 merges down.
                    max_l0_runs: o
                        .l0_slowdown_trigger
                        .saturating_sub(o.l0_compaction_trigger)
                        .max(o.l0_compaction_trigger),
                    max_runs_per_level: max_runs,
                    initial_runs_per_level: defaults.initial_runs_per_level.min(max_runs),
                    ..defaults
                })
                .map_err(config_error)?,
            )
        }
    })
}

/// A keyspace's policy and what it has seen of the workload.
#[derive(Debug)]
pub(crate) struct PolicyState {
    pub policy: Box<dyn CompactionPolicy>,
    window: MixWindow,
    /// The counters when the current period began.
    seen: WorkloadMix,
    period_start: Instant,
}

impl PolicyState {
    pub(crate) fn new(policy: Box<dyn CompactionPolicy>) -> Self {
        PolicyState {
            policy,
            window: MixWindow::new(OBSERVE_WINDOW),
            seen: WorkloadMix::default(),
            period_start: Instant::now(),
        }
    }

    /// Closes the current period if it is long enough and shows the window to the
    /// policy.
    fn observe(&mut self, counters: &KeyspaceCounters, tree: &TreeDesc) {
        if self.period_start.elapsed() < OBSERVE_PERIOD {
            return;
        }
        let now = counters.mix();
        let period = now.since(&self.seen);
        self.window.push(period);
        self.seen = now;
        self.period_start = Instant::now();
        self.policy.observe(&self.window.mix(), tree);
    }
}

/// Write pressure of a keyspace, refreshed whenever its tree or memtables change.
#[derive(Debug, Default)]
pub(crate) struct Pressure {
    /// The policy's debt for the tree as it is.
    pub pending_bytes: AtomicU64,
    /// The debt once every sealed memtable and one more full one are flushed.
    pub projected_bytes: AtomicU64,
    /// Whether the policy has work to do on the tree as it is.
    pub due: AtomicBool,
    /// The most level-0 tables ever seen (for stats and tests).
    pub max_l0_tables: AtomicU64,
    /// The largest debt ever seen.
    pub max_pending_bytes: AtomicU64,
}

/// Describes a version as the policy sees it.
pub(crate) fn tree_desc(version: &Version) -> TreeDesc {
    let levels = version
        .levels
        .iter()
        .map(|runs| LevelDesc {
            runs: runs
                .iter()
                .map(|run| RunDesc::new(run.tables.iter().map(|t| table_desc(t)).collect()))
                .collect(),
        })
        .collect();
    TreeDesc { levels }
}

fn table_desc(t: &TableHandle) -> TableDesc {
    TableDesc {
        id: strata_compaction::TableId(t.id().0),
        size: t.meta.size,
        smallest: t.smallest_user_key().to_vec(),
        largest: t.largest_user_key().to_vec(),
        min_seq: t.meta.min_seq.0,
        max_seq: t.meta.max_seq.0,
        entries: t.meta.entries,
        tombstones: t.meta.deletions,
    }
}

/// Recomputes the keyspace's write pressure from its current view.
pub(crate) fn refresh_pressure(ks: &KeyspaceInner) {
    let view = ks.view();
    refresh_pressure_with(ks, &view);
}

/// Recomputes the keyspace's write pressure as if `view` were current.
pub(crate) fn refresh_pressure_with(ks: &KeyspaceInner, view: &View) {
    let mut tree = tree_desc(&view.version);
    let (now, projected) = {
        let state = ks.policy.lock();
        let now = state.policy.debt(&tree);
        // Each memtable becomes one level-0 table, at most about its size.
        let pending = view
            .sealed
            .iter()
            .map(|s| s.memtable.approximate_bytes() as u64)
            .chain(std::iter::once(ks.options.memtable_bytes as u64));
        if let Some(l0) = tree.levels.first_mut() {
            for (i, bytes) in pending.enumerate() {
                l0.runs.insert(
                    0,
                    RunDesc::new(vec![TableDesc {
                        id: strata_compaction::TableId(u64::MAX - i as u64),
                        size: bytes,
                        smallest: Vec::new(),
                        largest: vec![0xff],
                        min_seq: 0,
                        max_seq: 0,
                        entries: 1,
                        tombstones: 0,
                    }]),
                );
            }
        }
        (now, state.policy.debt(&tree))
    };
    let p = &ks.pressure;
    p.pending_bytes.store(now.pending_bytes, Ordering::Relaxed);
    p.projected_bytes
        .store(projected.pending_bytes, Ordering::Relaxed);
    p.due.store(now.is_due(), Ordering::Relaxed);
    p.max_l0_tables
        .fetch_max(view.version.table_count(0) as u64, Ordering::Relaxed);
    p.max_pending_bytes
        .fetch_max(now.pending_bytes, Ordering::Relaxed);
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskKind {
    /// Relocate `inputs[0]` without rewriting it.
    Move,
    /// Rewrite the inputs into `output_level`.
    Merge,
    /// Delete the inputs.
    Drop,
}

/// A step, resolved to the tables of a version.
struct Task {
    kind: TaskKind,
    inputs: Vec<Arc<TableHandle>>,
    output_level: usize,
    /// The run the output joins or forms.
    run: u64,
    bottommost: bool,
    /// Value-log segments whose values the output copies forward.
    relocate: BTreeSet<u64>,
    /// Whether copying is paced by `vlog_gc_bytes_per_sec` (background collection).
    paced_gc: bool,
    /// A garbage-collection rewrite of one table in place: at level 0 its output stays
    /// one table, however large.
    in_place: bool,
}

impl Task {
    /// A step that copies no value forward and is no collection rewrite.
    fn plain(
        kind: TaskKind,
        inputs: Vec<Arc<TableHandle>>,
        output_level: usize,
        run: u64,
        bottommost: bool,
    ) -> Task {
        Task {
            kind,
            inputs,
            output_level,
            run,
            bottommost,
            relocate: BTreeSet::new(),
            paced_gc: false,
            in_place: false,
        }
    }

    /// Deleting `inputs` whole (none: an edit that only removes unreferenced
    /// value-log segments).
    fn drop_tables(inputs: Vec<Arc<TableHandle>>) -> Task {
        Task::plain(TaskKind::Drop, inputs, 0, 0, false)
    }
}

/// Runs one step of `ks`'s policy if one is due. Returns whether one ran.
pub(crate) fn compact_once(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<bool> {
    let Some(_flag) = take_flag(ks, false) else {
        return Ok(false);
    };
    let view = ks.view();
    let tree = tree_desc(&view.version);
    let decision = {
        let mut state = ks.policy.lock();
        state.observe(&ks.counters, &tree);
        state.policy.decide(&tree)
    };
    if decision == Decision::Nothing {
        // The policy may have changed its shape while observing.
        refresh_pressure(ks);
        return Ok(false);
    }
    let result = resolve(inner, &ks.options, &tree, &view.version, &decision)
        .and_then(|task| run_task(inner, ks, &view.version, task));
    let installed = poison_on_error(inner, ks, result)?;
    refresh_pressure(ks);
    notify_progress(inner);
    // Not installed: the keyspace was dropped or the database closed; asking again
    // would only redo the same step.
    Ok(installed)
}

/// Checks `decision` against `tree` and resolves it to the tables of `version`.
fn resolve(
    inner: &DbInner,
    ks_options: &KeyspaceOptions,
    tree: &TreeDesc,
    version: &Version,
    decision: &Decision,
) -> Result<Task> {
    validate(tree, decision).map_err(|e| {
        Error::Internal(format!(
            "the compaction policy proposed an invalid step ({decision}): {e}"
        ))
    })?;
    let handles = |refs: &[TableRef]| -> Result<Vec<Arc<TableHandle>>> {
        refs.iter()
            .map(|r| {
                version
                    .table(TableId(r.id.0))
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("table {} is not in the tree", r.id)))
            })
            .collect()
    };
    match decision {
        Decision::Move(m) => Ok(Task::plain(
            TaskKind::Move,
            handles(std::slice::from_ref(&m.table))?,
            m.to_level,
            run_for(inner, version, m.to_level, m.placement)?,
            false,
        )),
        Decision::Merge(m) => Ok(Task {
            // Values in segments due for collection move while the merge rewrites
            // their pointers anyway.
            relocate: crate::value_log::plan_gc(
                &crate::value_log::usage(version),
                ks_options,
                None,
            ),
            ..Task::plain(
                TaskKind::Merge,
                handles(&m.inputs)?,
                m.output_level,
                run_for(inner, version, m.output_level, m.placement)?,
                m.bottommost,
            )
        }),
        Decision::DropTables(refs) => Ok(Task::drop_tables(handles(refs)?)),
        _ => Err(Error::Internal(format!(
            "the compaction policy proposed a step the engine cannot run: {decision}"
        ))),
    }
}

/// The run id for output placed at `placement` in `level`: an existing run's, or a
/// fresh one that sorts where the new run must go (newest runs have the largest ids).
fn run_for(inner: &DbInner, version: &Version, level: usize, placement: Placement) -> Result<u64> {
    let runs = version
        .levels
        .get(level)
        .ok_or_else(|| Error::Internal(format!("no level {level}")))?;
    match placement {
        Placement::Into(r) => runs
            .get(r)
            .map(|run| run.id)
            .ok_or_else(|| Error::Internal(format!("level {level} has no run {r}"))),
        Placement::New(0) => Ok(inner.next_file.fetch_add(1, Ordering::SeqCst)),
        Placement::New(k) => {
            // Between run k-1 (newer) and run k (older), if the ids leave room.
            let newer = runs.get(k - 1).map(|r| r.id);
            let older = runs.get(k).map_or(0, |r| r.id);
            match newer {
                Some(n) if n > older + 1 => Ok(n - 1),
                _ => Err(Error::Internal(format!(
                    "no run id left between runs {} and {k} of level {level}",
                    k - 1
                ))),
            }
        }
        _ => Err(Error::Internal(format!(
            "unknown placement {placement} for level {level}"
        ))),
    }
}

/// Executes a task and installs its result; returns whether it was installed (not
/// when the keyspace was dropped or the database closed meanwhile).
fn run_task(
    inner: &DbInner,
    ks: &Arc<KeyspaceInner>,
    version: &Version,
    task: Task,
) -> Result<bool> {
    let level = Level(task.output_level as u8);
    let mut filtered = 0;
    // The history floor a merge relied on, recorded with its result.
    let mut history_floor = None;
    let output: BuildOutput = match task.kind {
        TaskKind::Move => BuildOutput {
            tables: task
                .inputs
                .iter()
                .map(|t| {
                    let mut meta = t.meta.clone();
                    meta.level = level;
                    meta.run = task.run;
                    Arc::new(TableHandle::new(
                        meta,
                        Arc::clone(&t.table),
                        Arc::clone(&inner.fs),
                        inner.path.join(crate::db::table_file_name(t.id())),
                    ))
                })
                .collect(),
            segments: Vec::new(),
            value_log_bytes: 0,
            relocated_bytes: 0,
        },
        TaskKind::Drop => BuildOutput {
            tables: Vec::new(),
            segments: Vec::new(),
            value_log_bytes: 0,
            relocated_bytes: 0,
        },
        TaskKind::Merge => {
            let retention = inner.retention(ks);
            history_floor = retention.horizon;
            let tombstones = version.prefix_tombstones.as_ref().clone();
            let user_filter = ks.filter.read().clone();
            let mut filter = VersionFilter::new(
                &retention,
                task.bottommost,
                &tombstones,
                user_filter.as_deref(),
            )
            .with_segments(&version.segments);
            let children: Vec<Box<dyn InternalIterator>> = task
                .inputs
                .iter()
                .map(|t| Box::new(t.table.iter()) as Box<dyn InternalIterator>)
                .collect();
            let mut merged = MergingIterator::new(children);
            let spec = OutputSpec {
                level,
                run: Some(task.run),
                target: (!(task.in_place && task.output_level == 0))
                    .then_some(ks.options.target_table_bytes),
                rate_limited: true,
                relocate: &task.relocate,
                sources: &version.segments,
                gc_pacer: if task.paced_gc {
                    ks.gc_pacer.as_ref()
                } else {
                    None
                },
            };
            let built = build_tables(inner, ks, &mut merged, &mut filter, &spec)?;
            filtered = filter.filtered;
            built
        }
    };
    if !install(inner, ks, &task, &output, history_floor)? {
        return Ok(false);
    }
    ks.counters.filtered.fetch_add(filtered, Ordering::Relaxed);
    let read: u64 = task.inputs.iter().map(|t| t.meta.size).sum::<u64>() + output.relocated_bytes;
    let written: u64 = output.bytes();
    if output.relocated_bytes > 0 {
        ks.counters
            .gc_relocated_bytes
            .fetch_add(output.relocated_bytes, Ordering::Relaxed);
    }
    let c = &ks.counters;
    match task.kind {
        TaskKind::Move => {
            c.moves.fetch_add(1, Ordering::Relaxed);
        }
        TaskKind::Drop => {
            c.dropped_tables
                .fetch_add(task.inputs.len() as u64, Ordering::Relaxed);
        }
        TaskKind::Merge => {
            c.compactions.fetch_add(1, Ordering::Relaxed);
            c.compaction_read_bytes.fetch_add(read, Ordering::Relaxed);
            c.compaction_write_bytes
                .fetch_add(written, Ordering::Relaxed);
        }
    }
    Ok(true)
}

/// Commits the task's edit to the manifest and installs the new version; then lets
/// go of the inputs (their files go when the last reader drops them). Returns false,
/// discarding the outputs, when the keyspace was dropped or the database closed.
fn install(
    inner: &DbInner,
    ks: &Arc<KeyspaceInner>,
    task: &Task,
    output: &BuildOutput,
    history_floor: Option<SeqNo>,
) -> Result<bool> {
    let outputs = &output.tables;
    let is_move = task.kind == TaskKind::Move;
    let removed: Vec<(KeyspaceId, Level, TableId)> = task
        .inputs
        .iter()
        .map(|t| (ks.id, t.meta.level, t.id()))
        .collect();
    let removed_ids: Vec<TableId> = removed.iter().map(|(_, _, id)| *id).collect();
    {
        let mut meta = inner.meta.lock();
        // Outputs that will never be installed are deleted; a moved table's file is
        // its input's, and stays.
        let discard_outputs = || {
            if !is_move {
                output.discard();
            }
        };
        if ks.dropped.load(Ordering::SeqCst) || inner.is_closed() {
            discard_outputs();
            return Ok(false);
        }
        // Versions change only under the manifest lock, which we hold: the version
        // computed here is still current when it is installed below, and readers are
        // not blocked while the manifest is fsynced.
        let current = ks.view().version.clone();
        let mut new_version = current.apply(&removed_ids, outputs);
        // Segments no table points into any more go in the same edit; their files
        // go when the last reader's version lets go of them.
        let with_new = crate::value_log::with_segments(&current.segments, &output.segments, &[]);
        new_version.segments = Arc::new(with_new);
        let unreferenced: Vec<u64> = crate::value_log::usage(&new_version)
            .iter()
            .filter(|u| u.live_bytes == 0)
            .map(|u| u.id)
            .collect();
        let dead_segments: Vec<Arc<crate::value_log::SegmentHandle>> = unreferenced
            .iter()
            .filter_map(|id| new_version.segments.get(id).cloned())
            .collect();
        new_version.segments = Arc::new(crate::value_log::with_segments(
            &new_version.segments,
            &[],
            &unreferenced,
        ));
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
            added_segments: output.segments.iter().map(|s| (ks.id, s.meta)).collect(),
            removed_segments: unreferenced.iter().map(|id| (ks.id, *id)).collect(),
            history_floors: history_floor.map(|h| (ks.id, h)).into_iter().collect(),
            ..VersionEdit::default()
        };
        // Inputs are deleted below: the edit must be beyond doubt first (marked).
        inner
            .commit_edit(&mut meta, &edit, !is_move || !unreferenced.is_empty())
            .inspect_err(|e| {
                if DbInner::edit_never_written(e) {
                    discard_outputs();
                }
            })?;
        new_version.prefix_tombstones = Arc::new(keep);
        let mut view = ks.view.write();
        *view = Arc::new(View {
            active: Arc::clone(&view.active),
            active_first: view.active_first,
            sealed: view.sealed.clone(),
            version: Arc::new(new_version),
        });
        for s in &dead_segments {
            s.mark_obsolete();
        }
    }
    if !is_move {
        for t in &task.inputs {
            t.mark_obsolete();
        }
    }
    Ok(true)
}

/// Compacts every table of `ks` whose keys meet `[start, end)` (`None`: unbounded),
/// together with every table they overlap, into the deepest level in use (at least
/// level 1), dropping every version and tombstone no snapshot needs. Waits for a
/// running compaction of the keyspace first.
pub(crate) fn compact_range(
    inner: &DbInner,
    ks: &Arc<KeyspaceInner>,
    start: Option<&[u8]>,
    end: Option<&[u8]>,
) -> Result<()> {
    let flag = wait_for_compaction_flag(inner, ks)?;
    let view = ks.view();
    let version = &view.version;
    let tree = tree_desc(version);
    let result = match manual_merge(&tree, start, end) {
        Some(decision) => resolve(inner, &ks.options, &tree, version, &decision)
            .and_then(|task| run_task(inner, ks, version, task))
            .map(|_| ()),
        None => Ok(()),
    };
    let result = poison_on_error(inner, ks, result);
    drop(flag);
    refresh_pressure(ks);
    notify_progress(inner);
    // Whatever the policy wants next (the manual merge may have filled a level).
    let _ = inner.jobs.send(crate::db::Job::Compact(ks.id));
    result
}

/// Takes `ks`'s compaction flag, waiting while another compaction or collection holds
/// it.
fn wait_for_compaction_flag<'a>(
    inner: &DbInner,
    ks: &'a KeyspaceInner,
) -> Result<crate::background::WorkFlag<'a>> {
    loop {
        inner.check_writable()?;
        if ks.dropped.load(Ordering::SeqCst) {
            return Err(Error::UnknownKeyspace(ks.name.clone()));
        }
        if let Some(flag) = take_flag(ks, false) {
            return Ok(flag);
        }
        let (lock, cond) = &inner.progress;
        let mut g = lock.lock();
        cond.wait_for(&mut g, Duration::from_millis(20));
    }
}

/// The merge `compact_range` runs: the tables meeting `[start, end)`, closed under
/// overlap (so no version is left above or below the output out of order), into the
/// oldest run of the deepest level in use.
fn manual_merge(tree: &TreeDesc, start: Option<&[u8]>, end: Option<&[u8]>) -> Option<Decision> {
    let in_range = |t: &TableDesc| {
        start.is_none_or(|s| t.largest.as_slice() >= s)
            && end.is_none_or(|e| t.smallest.as_slice() < e)
    };
    let tables = || {
        tree.levels
            .iter()
            .enumerate()
            .flat_map(|(l, level)| level.tables().map(move |t| (l, t)))
    };
    let mut lo: Option<Vec<u8>> = None;
    let mut hi: Option<Vec<u8>> = None;
    for (_, t) in tables().filter(|(_, t)| in_range(t)) {
        if lo.as_ref().is_none_or(|l| t.smallest < *l) {
            lo = Some(t.smallest.clone());
        }
        if hi.as_ref().is_none_or(|h| t.largest > *h) {
            hi = Some(t.largest.clone());
        }
    }
    let (mut lo, mut hi) = (lo?, hi?);
    // Widen to every table the range meets until nothing more joins.
    loop {
        let meeting: Vec<&TableDesc> = tables()
            .map(|(_, t)| t)
            .filter(|t| t.overlaps(&lo, &hi))
            .collect();
        let new_lo = meeting.iter().map(|t| &t.smallest).min().cloned();
        let new_hi = meeting.iter().map(|t| &t.largest).max().cloned();
        let mut changed = false;
        if let Some(l) = new_lo.filter(|l| *l < lo) {
            lo = l;
            changed = true;
        }
        if let Some(h) = new_hi.filter(|h| *h > hi) {
            hi = h;
            changed = true;
        }
        if !changed {
            break;
        }
    }
    let inputs: Vec<TableRef> = tables()
        .filter(|(_, t)| t.overlaps(&lo, &hi))
        .map(|(level, t)| TableRef { level, id: t.id })
        .collect();
    let deepest = (1..tree.levels.len())
        .rev()
        .find(|&l| !tree.levels[l].is_empty())
        .unwrap_or(1)
        .min(NUM_LEVELS - 1);
    let runs = tree.runs_in(deepest);
    let placement = if runs == 0 {
        Placement::New(0)
    } else {
        Placement::Into(runs - 1)
    };
    Some(Decision::Merge(Merge {
        inputs,
        output_level: deepest,
        placement,
        bottommost: true,
        reason: Reason::Manual,
    }))
}

/// Whether `ks`'s policy has a step to take now.
pub(crate) fn compaction_due(ks: &KeyspaceInner) -> bool {
    let tree = tree_desc(&ks.view().version);
    ks.policy.lock().policy.decide(&tree) != Decision::Nothing
}

/// One round of value-log garbage collection for `ks`, under its compaction flag:
/// plans which segments to collect (`value_log::plan_gc`), rewrites every table
/// pointing into them in place (same level, same run, every version kept) with their
/// values copied to a new segment, and lets `install` remove the segments nothing
/// points into any more. `paced`: background collection, held to
/// `vlog_gc_bytes_per_sec`. Returns the segments removed, or `None` when nothing was
/// due (or the keyspace went away).
fn gc_round(inner: &DbInner, ks: &Arc<KeyspaceInner>, paced: bool) -> Result<Option<u64>> {
    let view = ks.view();
    let version = &view.version;
    if version.segments.is_empty() {
        return Ok(None);
    }
    let budget = if paced {
        ks.options.vlog_gc_bytes_per_sec
    } else {
        None
    };
    let chosen = crate::value_log::plan_gc(&crate::value_log::usage(version), &ks.options, budget);
    if chosen.is_empty() {
        return Ok(None);
    }
    let before: Vec<u64> = version.segments.keys().copied().collect();
    let tables: Vec<Arc<TableHandle>> = version
        .all_tables()
        .filter(|t| {
            t.meta
                .value_refs
                .iter()
                .any(|r| chosen.contains(&r.segment))
        })
        .cloned()
        .collect();
    drop(view);
    let step = |task: Task| -> Result<bool> {
        let version = Arc::clone(&ks.view().version);
        run_task(inner, ks, &version, task)
    };
    if tables.is_empty() {
        // Only segments nothing points into: an edit that removes them.
        if !step(Task::drop_tables(Vec::new()))? {
            return Ok(None);
        }
    }
    for t in tables {
        let (level, run) = (usize::from(t.meta.level.0), t.meta.run);
        let task = Task {
            relocate: chosen.clone(),
            paced_gc: paced,
            in_place: true,
            ..Task::plain(TaskKind::Merge, vec![t], level, run, false)
        };
        if !step(task)? || inner.is_closed() {
            return Ok(None);
        }
        // Background collection makes way for due compactions (level 0 must not
        // fill behind it); the next round plans again from where this one stopped.
        if paced && compaction_due(ks) {
            break;
        }
    }
    ks.counters.gc_runs.fetch_add(1, Ordering::Relaxed);
    let after = Arc::clone(&ks.view().version.segments);
    Ok(Some(
        before.iter().filter(|id| !after.contains_key(id)).count() as u64,
    ))
}

/// Background garbage collection: rounds until nothing is due or a compaction is,
/// taking the keyspace's compaction flag for one round at a time. Returns whether any
/// round ran.
pub(crate) fn gc_until_done(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<bool> {
    if !ks.options.vlog_background_gc {
        return Ok(false);
    }
    let mut any = false;
    while !inner.is_closed() && !ks.dropped.load(Ordering::SeqCst) {
        let Some(flag) = take_flag(ks, false) else {
            break;
        };
        let round = poison_on_error(inner, ks, gc_round(inner, ks, true));
        drop(flag);
        if round?.is_none() {
            break;
        }
        any = true;
        notify_progress(inner);
        if compaction_due(ks) {
            break;
        }
    }
    Ok(any)
}

/// `Db::gc_value_log`: first compacts the whole tree when pointers sit in more than
/// one sorted run (so versions nobody can read any more are dropped and their values
/// counted as garbage), then collects, unpaced, until every segment is below
/// `vlog_gc_garbage_ratio` and the keyspace within `max_space_amplification`.
pub(crate) fn gc_value_log(inner: &DbInner, ks: &Arc<KeyspaceInner>) -> Result<GcReport> {
    let file_bytes = |ks: &KeyspaceInner| -> u64 {
        ks.view()
            .version
            .segments
            .values()
            .map(|s| s.meta.file_bytes)
            .sum()
    };
    let before = file_bytes(ks);
    let runs_with_pointers = ks
        .view()
        .version
        .levels
        .iter()
        .flatten()
        .filter(|run| run.tables.iter().any(|t| !t.meta.value_refs.is_empty()))
        .count();
    if runs_with_pointers > 1 {
        compact_range(inner, ks, None, None)?;
    }
    let flag = wait_for_compaction_flag(inner, ks)?;
    let relocated_before = ks.counters.gc_relocated_bytes.load(Ordering::Relaxed);
    let mut report = GcReport::default();
    let result = (|| -> Result<()> {
        while let Some(removed) = gc_round(inner, ks, false)? {
            report.segments_removed += removed;
        }
        Ok(())
    })();
    let result = poison_on_error(inner, ks, result);
    drop(flag);
    notify_progress(inner);
    // A compaction asked for while collection held the keyspace.
    let _ = inner.jobs.send(crate::db::Job::Compact(ks.id));
    result?;
    if ks.dropped.load(Ordering::SeqCst) {
        return Err(Error::UnknownKeyspace(ks.name.clone()));
    }
    if inner.is_closed() {
        return Err(Error::Closed);
    }
    report.relocated_bytes =
        ks.counters.gc_relocated_bytes.load(Ordering::Relaxed) - relocated_before;
    report.reclaimed_bytes = before.saturating_sub(file_bytes(ks));
    Ok(report)
}
