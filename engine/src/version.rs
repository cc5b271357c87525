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

/// The tables of one keyspace.
#[derive(Debug, Clone)]
pub struct Version {
    /// `levels[0]` newest table first (tables may overlap); deeper levels sorted by
    /// key, not overlapping.
    pub levels: Vec<Vec<Arc<TableHandle>>>,
    /// Prefix tombstones held by the manifest for this keyspace.
    pub prefix_tombstones: Arc<Vec<(Vec<u8>, SeqNo)>>,
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
        }
    }

    /// Number of tables in `level`.
    pub fn table_count(&self, level: usize) -> usize {
        self.levels.get(level).map_or(0, Vec::len)
    }

    /// Bytes of the tables in `level`.
    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels
            .get(level)
            .map_or(0, |l| l.iter().map(|t| t.meta.size).sum())
    }

    /// Every table, level by level.
    pub fn all_tables(&self) -> impl Iterator<Item = &Arc<TableHandle>> {
        self.levels.iter().flatten()
    }

    /// A copy with tables removed and added, each level kept in its order.
    pub fn apply(&self, removed: &[TableId], added: &[Arc<TableHandle>]) -> Version {
        let mut levels: Vec<Vec<Arc<TableHandle>>> = self
            .levels
            .iter()
            .map(|l| {
                l.iter()
                    .filter(|t| !removed.contains(&t.id()))
                    .cloned()
                    .collect()
            })
            .collect();
        for t in added {
            let level = usize::from(t.meta.level.0).min(NUM_LEVELS - 1);
            levels[level].push(Arc::clone(t));
        }
        for (i, level) in levels.iter_mut().enumerate() {
            if i == 0 {
                // Newest first: table ids grow with flush order.
                level.sort_by_key(|t| std::cmp::Reverse(t.id()));
            } else {
                level.sort_by(|a, b| a.smallest_user_key().cmp(b.smallest_user_key()));
            }
        }
        Version {
            levels,
            prefix_tombstones: Arc::clone(&self.prefix_tombstones),
        }
    }

    /// The tables that may hold `key`, newest data first: every level-0 table whose
    /// range holds it, then at most one table per deeper level.
    pub fn tables_for_key<'a>(
        &'a self,
        key: &'a [u8],
    ) -> impl Iterator<Item = &'a Arc<TableHandle>> + 'a {
        let l0 = self.levels[0].iter().filter(move |t| t.overlaps(key, key));
        let deeper = self.levels[1..].iter().filter_map(move |level| {
            let idx = level.partition_point(|t| t.largest_user_key() < key);
            level.get(idx).filter(|t| t.smallest_user_key() <= key)
        });
        l0.chain(deeper)
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
