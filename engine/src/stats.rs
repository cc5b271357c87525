//! Statistics a user tunes with: per keyspace and level the tables and bytes, flush
//! and compaction work, write amplification, stall time, block-cache hit rate and WAL
//! activity. [`Stats::summary_line`] is the one-line form `db_bench` prints.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cache::CacheStats;
use crate::db::DbInner;
use crate::version::{Version, NUM_LEVELS};

/// Tables in one level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Number of tables.
    pub tables: usize,
    /// Number of sorted runs (level 0: one per table).
    pub runs: usize,
    /// Entries (versions and tombstones) in the level's tables.
    pub entries: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// One value-log segment: its size and how much of it tables still point at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentStats {
    /// The segment id (file `{id:06}.vlog`).
    pub id: u64,
    /// Bytes of its records.
    pub bytes: u64,
    /// Bytes of the records some table points at.
    pub live_bytes: u64,
    /// Bytes of records nothing points at: values overwritten, deleted or dropped by
    /// compaction. Garbage collection copies the live rest forward and deletes the
    /// file.
    pub garbage_bytes: u64,
}

/// Figures of one keyspace.
#[derive(Debug, Clone, Default)]
pub struct KeyspaceStats {
    /// Its name.
    pub name: String,
    /// Levels 0 to 6.
    pub levels: Vec<LevelStats>,
    /// Bytes in the active and sealed memtables.
    pub memtable_bytes: u64,
    /// Sealed memtables waiting for flush.
    pub sealed_memtables: usize,
    /// Bytes of keys and values written by users.
    pub user_bytes: u64,
    /// Flushes done and bytes they wrote.
    pub flushes: u64,
    /// Bytes written by flushes.
    pub flush_bytes: u64,
    /// The compaction policy and its current shape.
    pub policy: String,
    /// Merges done (moves and drops are counted apart).
    pub compactions: u64,
    /// Tables moved down without a rewrite.
    pub moves: u64,
    /// Tables deleted whole because they held only tombstones nobody needed.
    pub dropped_tables: u64,
    /// Values the compaction filter dropped or changed.
    pub filtered: u64,
    /// The policy's estimate of the bytes compaction must write to bring every level
    /// within its limit.
    pub pending_compaction_bytes: u64,
    /// The largest `pending_compaction_bytes` seen since open. A flush or a
    /// compaction can take it past `hard_pending_compaction_bytes`; writes then wait.
    pub max_pending_compaction_bytes: u64,
    /// The most level-0 tables seen since open.
    pub max_l0_tables: usize,
    /// Bytes read by compactions.
    pub compaction_read_bytes: u64,
    /// Bytes written by compactions.
    pub compaction_write_bytes: u64,
    /// Time writes spent delayed or stopped, in microseconds.
    pub stall_micros: u64,
    /// Writes slowed because level 0 passed its slowdown trigger or the debt its soft
    /// limit.
    pub slowdowns: u64,
    /// Times writes stopped (a full memtable that could not be sealed).
    pub stops: u64,
    /// Estimate of the live bytes in tables: the oldest run of the deepest level plus
    /// the tables elsewhere whose key range meets none of its tables; every table in
    /// an append-only keyspace (one whose merges so far dropped under 2% of what they
    /// read: new keys only, as in an event log).
    pub estimated_live_bytes: u64,
    /// User bytes of WAL-bypass writes not yet flushed: what a crash would take now.
    pub bypass_bytes_at_risk: u64,
    /// Age of the oldest unflushed WAL-bypass write, if any (`bypass_flush_interval`
    /// bounds it).
    pub bypass_oldest_unflushed: Option<std::time::Duration>,
    /// Values of at least this many bytes go to the value log (`None`: off).
    pub value_threshold: Option<u32>,
    /// The oldest sequence number `Db::snapshot_at` reads of this keyspace are exact
    /// at (see `docs/history.md`).
    pub history_floor: strata_wal::SeqNo,
    /// The value log's segments, by id.
    pub value_log: Vec<SegmentStats>,
    /// Value-log bytes over the bytes tables point at (1.0 when empty):
    /// garbage collection holds it within `max_space_amplification`.
    pub vlog_space_amplification: f64,
    /// Garbage-collection rounds run.
    pub gc_runs: u64,
    /// Bytes of value-log records copied forward by garbage collection.
    pub gc_relocated_bytes: u64,
    /// The keyspace's default durability.
    pub durability: crate::options::Durability,
}

/// Database-wide statistics from [`crate::Db::stats`].
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Per keyspace, sorted by name.
    pub keyspaces: Vec<KeyspaceStats>,
    /// Bytes the WAL wrote (framing included).
    pub wal_bytes: u64,
    /// WAL fsyncs.
    pub wal_syncs: u64,
    /// WAL segments on disk.
    pub wal_segments: usize,
    /// Block cache figures.
    pub cache: CacheStats,
    /// Live snapshots and iterators pinning history.
    pub snapshots: usize,
    /// Background flush, compaction or collection failures. Each poisons the
    /// database, except failures for want of space (`ENOSPC`), which are retried.
    pub background_errors: u64,
    /// Background work that failed because the disk was full, deferred and retried
    /// every 200 ms until space returns.
    pub full_disk_errors: u64,
    /// Why writes are refused, if they are.
    pub poisoned: Option<String>,
}

impl Stats {
    /// The statistics of keyspace `name`, if it exists.
    pub fn keyspace(&self, name: &str) -> Option<&KeyspaceStats> {
        self.keyspaces.iter().find(|k| k.name == name)
    }

    /// Bytes of keys and values written by users, all keyspaces.
    pub fn user_bytes(&self) -> u64 {
        self.keyspaces.iter().map(|k| k.user_bytes).sum()
    }

    /// Bytes the engine wrote to disk (WAL, flushes, compactions) per user byte.
    pub fn write_amplification(&self) -> f64 {
        let written: u64 = self.wal_bytes
            + self
                .keyspaces
                .iter()
                .map(|k| k.flush_bytes + k.compaction_write_bytes)
                .sum::<u64>();
        ratio(written, self.user_bytes())
    }

    /// `figure` summed over every value-log segment of every keyspace.
    fn sum_segments(&self, figure: impl Fn(&SegmentStats) -> u64) -> u64 {
        self.keyspaces
            .iter()
            .flat_map(|k| &k.value_log)
            .map(figure)
            .sum()
    }

    /// Bytes of value-log records, all keyspaces.
    pub fn vlog_bytes(&self) -> u64 {
        self.sum_segments(|s| s.bytes)
    }

    /// Value-log garbage as a fraction of the value log, all keyspaces (0 when there
    /// is none).
    pub fn vlog_garbage_ratio(&self) -> f64 {
        ratio(self.sum_segments(|s| s.garbage_bytes), self.vlog_bytes())
    }

    /// Bytes on disk (tables and value log) per byte of live data. Live table data is
    /// estimated per keyspace as its deepest level plus every table above it whose key
    /// range meets no table of the deepest level
    /// ([`KeyspaceStats::estimated_live_bytes`]); tables that overlap the deepest level
    /// count as garbage, so this is an upper bound, except in an append-only keyspace
    /// (its merges dropped next to nothing), whose tables all count as live. Live
    /// value-log data is what the tables point at.
    pub fn space_amplification(&self) -> f64 {
        let tables: u64 = self
            .keyspaces
            .iter()
            .flat_map(|k| &k.levels)
            .map(|l| l.bytes)
            .sum();
        let live_tables: u64 = self.keyspaces.iter().map(|k| k.estimated_live_bytes).sum();
        let vlog_live = self.sum_segments(|s| s.live_bytes);
        let total = tables + self.vlog_bytes();
        if total == 0 {
            1.0
        } else {
            ratio(total, live_tables + vlog_live)
        }
    }

    /// User bytes of WAL-bypass writes not yet flushed, all keyspaces: what a crash
    /// would take now.
    pub fn bypass_bytes_at_risk(&self) -> u64 {
        self.keyspaces.iter().map(|k| k.bypass_bytes_at_risk).sum()
    }

    /// Time writes spent stalled, all keyspaces, in microseconds.
    pub fn stall_micros(&self) -> u64 {
        self.keyspaces.iter().map(|k| k.stall_micros).sum()
    }

    /// Level-0 tables, all keyspaces.
    pub fn l0_files(&self) -> usize {
        self.keyspaces
            .iter()
            .map(|k| k.levels.first().map_or(0, |l| l.tables))
            .sum()
    }

    /// The one-line, parseable summary printed by `db_bench`.
    pub fn summary_line(&self) -> String {
        format!(
            "Stats: write_amp={:.2} space_amp={:.2} stall_micros={} l0_files={} cache_hit_rate={:.2} vlog_garbage_ratio={:.2}",
            self.write_amplification(),
            self.space_amplification(),
            self.stall_micros(),
            self.l0_files(),
            self.cache.hit_rate(),
            self.vlog_garbage_ratio()
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary_line())?;
        writeln!(
            f,
            "WAL: {} bytes written, {} fsyncs, {} segments | block cache: {} hits, {} misses, {} bytes used | snapshots: {} | background errors: {} ({} disk full)",
            self.wal_bytes,
            self.wal_syncs,
            self.wal_segments,
            self.cache.hits,
            self.cache.misses,
            self.cache.usage,
            self.snapshots,
            self.background_errors,
            self.full_disk_errors
        )?;
        for k in &self.keyspaces {
            writeln!(
                f,
                "keyspace {:?}: user {} B, memtables {} B ({} sealed), flushes {} ({} B), compactions {} (read {} B, wrote {} B), stalls {} us ({} slowdowns, {} stops)",
                k.name,
                k.user_bytes,
                k.memtable_bytes,
                k.sealed_memtables,
                k.flushes,
                k.flush_bytes,
                k.compactions,
                k.compaction_read_bytes,
                k.compaction_write_bytes,
                k.stall_micros,
                k.slowdowns,
                k.stops
            )?;
            writeln!(
                f,
                "  policy {} | {} moves, {} tables dropped, {} filtered | pending compaction {} B (max {} B), max L0 tables {}",
                k.policy,
                k.moves,
                k.dropped_tables,
                k.filtered,
                k.pending_compaction_bytes,
                k.max_pending_compaction_bytes,
                k.max_l0_tables
            )?;
            if !k.value_log.is_empty() {
                let bytes: u64 = k.value_log.iter().map(|s| s.bytes).sum();
                let garbage: u64 = k.value_log.iter().map(|s| s.garbage_bytes).sum();
                writeln!(
                    f,
                    "  value log: {} segments, {} B, {} B garbage, space amp {:.2} | gc {} rounds, {} B copied",
                    k.value_log.len(),
                    bytes,
                    garbage,
                    k.vlog_space_amplification,
                    k.gc_runs,
                    k.gc_relocated_bytes
                )?;
            }
            for (i, l) in k.levels.iter().enumerate() {
                if l.tables > 0 {
                    writeln!(
                        f,
                        "  L{i}: {:>5} tables {:>3} runs {:>14} bytes",
                        l.tables, l.runs, l.bytes
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// See [`KeyspaceStats::estimated_live_bytes`].
fn estimated_live_bytes(version: &Version, appends_only: bool) -> u64 {
    if appends_only {
        // Tables above the deepest level hold new keys, not newer versions of its.
        return version.all_tables().map(|t| t.meta.size).sum();
    }
    let deepest = version.deepest_nonempty_level();
    let Some(bottom) = version.levels[deepest].last() else {
        return 0;
    };
    let elsewhere: u64 = version
        .all_tables()
        .filter(|t| !bottom.tables.iter().any(|b| Arc::ptr_eq(b, t)))
        .filter(|t| {
            !bottom
                .tables
                .iter()
                .any(|b| b.overlaps(t.smallest_user_key(), t.largest_user_key()))
        })
        .map(|t| t.meta.size)
        .sum();
    bottom.bytes() + elsewhere
}

/// Gathers the figures.
pub(crate) fn collect(inner: &DbInner) -> Stats {
    let mut keyspaces: Vec<KeyspaceStats> = inner
        .catalog
        .read()
        .by_id
        .values()
        .map(|ks| {
            let view = ks.view();
            let c = &ks.counters;
            let usage = crate::value_log::usage(&view.version);
            KeyspaceStats {
                name: ks.name.clone(),
                levels: (0..NUM_LEVELS)
                    .map(|l| LevelStats {
                        tables: view.version.table_count(l),
                        runs: view.version.run_count(l),
                        entries: view.version.level_tables(l).map(|t| t.meta.entries).sum(),
                        bytes: view.version.level_bytes(l),
                    })
                    .collect(),
                memtable_bytes: (view.active.approximate_bytes()
                    + view
                        .sealed
                        .iter()
                        .map(|s| s.memtable.approximate_bytes())
                        .sum::<usize>()) as u64,
                sealed_memtables: view.sealed.len(),
                user_bytes: c.user_bytes.load(Ordering::Relaxed),
                flushes: c.flushes.load(Ordering::Relaxed),
                flush_bytes: c.flush_bytes.load(Ordering::Relaxed),
                policy: ks.policy.lock().policy.summary(),
                compactions: c.compactions.load(Ordering::Relaxed),
                moves: c.moves.load(Ordering::Relaxed),
                dropped_tables: c.dropped_tables.load(Ordering::Relaxed),
                filtered: c.filtered.load(Ordering::Relaxed),
                pending_compaction_bytes: ks.pressure.pending_bytes.load(Ordering::Relaxed),
                max_pending_compaction_bytes: ks.pressure.max_pending_bytes.load(Ordering::Relaxed),
                max_l0_tables: ks.pressure.max_l0_tables.load(Ordering::Relaxed) as usize,
                compaction_read_bytes: c.compaction_read_bytes.load(Ordering::Relaxed),
                compaction_write_bytes: c.compaction_write_bytes.load(Ordering::Relaxed),
                stall_micros: c.stall_micros.load(Ordering::Relaxed),
                slowdowns: c.slowdowns.load(Ordering::Relaxed),
                stops: c.stops.load(Ordering::Relaxed),
                // The merges since open (`WorkloadMix::appends_only`).
                estimated_live_bytes: estimated_live_bytes(&view.version, c.mix().appends_only()),
                bypass_bytes_at_risk: crate::db::bypass_bytes_at_risk(&view),
                bypass_oldest_unflushed: crate::db::bypass_oldest(&view).map(|t| t.elapsed()),
                value_threshold: ks.options.value_threshold,
                history_floor: strata_wal::SeqNo(
                    ks.history_floor.load(std::sync::atomic::Ordering::SeqCst),
                ),
                value_log: usage
                    .iter()
                    .map(|u| SegmentStats {
                        id: u.id,
                        bytes: u.record_bytes,
                        live_bytes: u.live_bytes,
                        garbage_bytes: u.garbage_bytes(),
                    })
                    .collect(),
                vlog_space_amplification: crate::value_log::space_amplification(&usage),
                gc_runs: c.gc_runs.load(Ordering::Relaxed),
                gc_relocated_bytes: c.gc_relocated_bytes.load(Ordering::Relaxed),
                durability: ks.options.durability,
            }
        })
        .collect();
    keyspaces.sort_by(|a, b| a.name.cmp(&b.name));
    let wal = inner.wal.stats();
    Stats {
        keyspaces,
        wal_bytes: wal.bytes_written,
        wal_syncs: wal.syncs,
        wal_segments: inner.wal.segments().len(),
        cache: inner.cache.stats(),
        snapshots: inner.snapshots.count(),
        background_errors: inner.counters.background_errors.load(Ordering::Relaxed),
        full_disk_errors: inner.counters.full_disk_errors.load(Ordering::Relaxed),
        poisoned: inner.poisoned(),
    }
}
