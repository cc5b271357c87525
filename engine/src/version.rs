//! A version: the immutable set of tables of one keyspace, by level.
//!
//! Readers hold an `Arc<Version>` for as long as they read; flush and compaction
//! install a new version instead of changing one. A table removed from the tree is
//! marked obsolete and its file is deleted when the last version (and so the last
//! reader) holding it is dropped, so no reader ever loses a file under it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata_wal::{Fs, SeqNo};

use crate::ids::{Level, TableId};
use crate::key::{parse_internal_key, user_key};
use crate::manifest::TableMeta;
use crate::table::Table;
use crate::value_log::SegmentMap;

/// Levels per keyspace: level 0 plus six sorted levels.
pub const NUM_LEVELS: usize = 7;

/// An open table and what the manifest says about it.
#[derive(Debug)]
pub struct TableHandle {
    /// Manifest facts.
    pub meta: TableMeta,
    /// The open table.
    pub table: Arc<Table>,
    obsolete: AtomicBool,
    fs: Arc<dyn Fs>,
    path: PathBuf,
}

impl TableHandle {
    /// Wraps an open table.
    pub fn new(meta: TableMeta, table: Arc<Table>, fs: Arc<dyn Fs>, path: PathBuf) -> Self {
        TableHandle {
            meta,
            table,
            obsolete: AtomicBool::new(false),
            fs,
            path,
        }
    }

    /// Deletes the file once the last reference is dropped.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::SeqCst);
    }

    /// The table's id.
    pub fn id(&self) -> TableId {
        self.meta.id
    }

    /// The smallest user key.
    pub fn smallest_user_key(&self) -> &[u8] {
        user_key(&self.meta.smallest)
    }

    /// The largest user key.
    pub fn largest_user_key(&self) -> &[u8] {
        user_key(&self.meta.largest)
    }

    /// Whether the table's user-key range intersects `[lo, hi]` (inclusive).
    pub fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.smallest_user_key() <= hi && self.largest_user_key() >= lo
    }

    /// Whether the table may hold a key starting with `prefix`.
    pub fn overlaps_prefix(&self, prefix: &[u8]) -> bool {
        let smallest = self.smallest_user_key();
        self.largest_user_key() >= prefix && (smallest <= prefix || smallest.starts_with(prefix))
    }
}

impl Drop for TableHandle {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::SeqCst) {
            // A leftover file is removed at the next open (it is not in the manifest).
            let _ = self.fs.remove(&self.path);
        }
    }
}

/// A sorted run: tables with disjoint key ranges, sorted by key.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run's id; within a level a larger id is a newer run.
    pub id: u64,
    /// Its tables, by ascending key range.
    pub tables: Vec<Arc<TableHandle>>,
}

impl Run {
    /// The table whose range holds `key`, if any.
    pub fn table_for(&self, key: &[u8]) -> Option<&Arc<TableHandle>> {
        let idx = self.tables.partition_point(|t| t.largest_user_key() < key);
        self.tables
            .get(idx)
            .filter(|t| t.smallest_user_key() <= key)
    }

    /// Bytes of the run's tables.
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.meta.size).sum()
    }
}

/// The tables of one keyspace: per level, sorted runs, newest first.
///
/// Level 0 holds one run per flushed table; deeper levels hold as many runs as the
/// keyspace's compaction policy allows (one for leveled levels). For any key two runs
/// both hold, every version in the earlier run (in level order, then run order) is
/// newer than every version in the later one, so a point read stops at the first run
/// holding the key.
#[derive(Debug, Clone)]
pub struct Version {
    /// `levels[l]` holds the runs of level `l`, newest (largest id) first.
    pub levels: Vec<Vec<Run>>,
    /// Prefix tombstones held by the manifest for this keyspace.
    pub prefix_tombstones: Arc<Vec<(Vec<u8>, SeqNo)>>,
    /// The keyspace's value-log segments, open. A reader holding this version can
    /// resolve every pointer its tables hold: a segment's file is deleted only when
    /// the last version listing it is dropped.
    pub segments: Arc<SegmentMap>,
}

impl Default for Version {
    fn default() -> Self {
        Version::empty()
    }
}

impl Version {
    /// An empty version.
    pub fn empty() -> Self {
        Version {
            levels: vec![Vec::new(); NUM_LEVELS],
            prefix_tombstones: Arc::new(Vec::new()),
            segments: Arc::new(SegmentMap::new()),
        }
    }

    /// Number of tables in `level`.
    pub fn table_count(&self, level: usize) -> usize {
        self.levels
            .get(level)
            .map_or(0, |runs| runs.iter().map(|r| r.tables.len()).sum())
    }

    /// Number of runs in `level`.
    pub fn run_count(&self, level: usize) -> usize {
        self.levels.get(level).map_or(0, Vec::len)
    }

    /// Bytes of the tables in `level`.
    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels
            .get(level)
            .map_or(0, |runs| runs.iter().map(Run::bytes).sum())
    }

    /// The tables of `level`, run by run.
    pub fn level_tables(&self, level: usize) -> impl Iterator<Item = &Arc<TableHandle>> {
        self.levels
            .get(level)
            .into_iter()
            .flatten()
            .flat_map(|r| r.tables.iter())
    }

    /// Every table, level by level, run by run.
    pub fn all_tables(&self) -> impl Iterator<Item = &Arc<TableHandle>> {
        self.levels.iter().flatten().flat_map(|r| r.tables.iter())
    }

    /// Finds a table by id.
    pub fn table(&self, id: TableId) -> Option<&Arc<TableHandle>> {
        self.all_tables().find(|t| t.id() == id)
    }

    /// A copy with tables removed and added: each added table joins the run its
    /// `meta.run` names in its level (created if new); runs left empty disappear.
    pub fn apply(&self, removed: &[TableId], added: &[Arc<TableHandle>]) -> Version {
        let mut levels: Vec<Vec<Run>> = self
            .levels
            .iter()
            .map(|runs| {
                runs.iter()
                    .map(|r| Run {
                        id: r.id,
                        tables: r
                            .tables
                            .iter()
                            .filter(|t| !removed.contains(&t.id()))
                            .cloned()
                            .collect(),
                    })
                    .collect()
            })
            .collect();
        for t in added {
            let level = &mut levels[usize::from(t.meta.level.0).min(NUM_LEVELS - 1)];
            match level.iter_mut().find(|r| r.id == t.meta.run) {
                Some(run) => run.tables.push(Arc::clone(t)),
                None => level.push(Run {
                    id: t.meta.run,
                    tables: vec![Arc::clone(t)],
                }),
            }
        }
        for level in &mut levels {
            level.retain(|r| !r.tables.is_empty());
            level.sort_by_key(|r| std::cmp::Reverse(r.id));
            for run in level.iter_mut() {
                run.tables
                    .sort_by(|a, b| a.smallest_user_key().cmp(b.smallest_user_key()));
            }
        }
        Version {
            levels,
            prefix_tombstones: Arc::clone(&self.prefix_tombstones),
            segments: Arc::clone(&self.segments),
        }
    }

    /// The tables that may hold `key`, newest data first: at most one per run, level
    /// by level, run by run.
    pub fn tables_for_key<'a>(
        &'a self,
        key: &'a [u8],
    ) -> impl Iterator<Item = &'a Arc<TableHandle>> + 'a {
        self.levels
            .iter()
            .flatten()
            .filter_map(move |run| run.table_for(key))
    }

    /// The deepest level holding any table (0 when empty).
    pub fn deepest_nonempty_level(&self) -> usize {
        (0..self.levels.len())
            .rev()
            .find(|&l| !self.levels[l].is_empty())
            .unwrap_or(0)
    }
}

/// Whether a version `(key, seq)` is hidden at `snapshot` by one of `tombstones`.
pub fn covered_by_prefix_tombstone(
    tombstones: &[(Vec<u8>, SeqNo)],
    key: &[u8],
    seq: SeqNo,
    snapshot: SeqNo,
) -> bool {
    tombstones
        .iter()
        .any(|(prefix, t)| *t > seq && *t <= snapshot && key.starts_with(prefix))
}

/// Level of a table from its internal key bounds, for display.
pub fn describe_range(meta: &TableMeta) -> String {
    let lo = parse_internal_key(&meta.smallest)
        .map(|p| String::from_utf8_lossy(p.user_key).into_owned());
    let hi =
        parse_internal_key(&meta.largest).map(|p| String::from_utf8_lossy(p.user_key).into_owned());
    format!("{}..={}", lo.unwrap_or_default(), hi.unwrap_or_default())
}

/// A level as a newtype for display.
pub fn level(l: usize) -> Level {
    Level(l as u8)
}
