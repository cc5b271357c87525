//! The tree as a policy sees it: levels of sorted runs of tables, each table described
//! by its key range, size, sequence range and entry and tombstone counts. No files, no
//! entries, no I/O.
//!
//! **Read order.** Level 0 holds flush output, newest run first; every deeper level
//! holds runs newest first too, and every run of level `i` is newer than every run of
//! level `i + 1` for any key both hold. A point read consults runs in this order — level
//! 0's runs, then level 1's, and so on — and stops at the first run holding the key.
//! Every check in this crate (see [`validate`]) is phrased in terms of
//! this order: a compaction may never let an older version of a key overtake a newer one.
//!
//! **Runs.** A run is a set of tables with sorted, pairwise disjoint key ranges (by user
//! key, inclusive). A leveled level holds one run; a tiered level up to K. The engine's
//! level 0, whose flushed tables may overlap, is described as one run per table.
//!
//! Trade-off: a description owns copies of the boundary keys, so the engine builds one
//! per planning step; in exchange policies, the simulator and tests share one vocabulary
//! with no lifetimes tied to the engine's version objects.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::decision::{validate, Decision, Placement};
use crate::error::{Error, Result};

/// Identifies a table; the engine's table (file) number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TableId(pub u64);

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A table named by the level it is in and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    /// The level holding the table.
    pub level: usize,
    /// The table.
    pub id: TableId,
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{} {}", self.level, self.id)
    }
}

/// What a policy knows of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDesc {
    /// The table's id; unique in the tree.
    pub id: TableId,
    /// Bytes on disk.
    pub size: u64,
    /// Smallest user key (inclusive).
    pub smallest: Vec<u8>,
    /// Largest user key (inclusive); `smallest <= largest`.
    pub largest: Vec<u8>,
    /// Smallest sequence number in the table.
    pub min_seq: u64,
    /// Largest sequence number in the table; `min_seq <= max_seq`.
    pub max_seq: u64,
    /// Entries (versions, tombstones included).
    pub entries: u64,
    /// Point tombstones among the entries; `tombstones <= entries`.
    pub tombstones: u64,
}

impl TableDesc {
    /// Whether the table's key range intersects `[lo, hi]` (inclusive).
    pub fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.smallest.as_slice() <= hi && self.largest.as_slice() >= lo
    }

    /// Whether the key ranges of `self` and `other` intersect.
    pub fn overlaps_table(&self, other: &TableDesc) -> bool {
        self.overlaps(&other.smallest, &other.largest)
    }

    /// Whether every entry is a tombstone (an empty table counts as one).
    pub fn is_all_tombstones(&self) -> bool {
        self.tombstones >= self.entries
    }
}

/// A sorted run: tables with sorted, pairwise disjoint key ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunDesc {
    /// The tables, by ascending key range.
    pub tables: Vec<TableDesc>,
}

impl RunDesc {
    /// A run of `tables` (which must already be sorted and disjoint).
    pub fn new(tables: Vec<TableDesc>) -> Self {
        RunDesc { tables }
    }

    /// Bytes of the run's tables.
    pub fn bytes(&self) -> u64 {
        self.tables
            .iter()
            .fold(0u64, |a, t| a.saturating_add(t.size))
    }

    /// The run's tables whose key range intersects `[lo, hi]`: a contiguous slice, found
    /// by binary search.
    pub fn overlapping(&self, lo: &[u8], hi: &[u8]) -> &[TableDesc] {
        let start = self.tables.partition_point(|t| t.largest.as_slice() < lo);
        let end = self.tables.partition_point(|t| t.smallest.as_slice() <= hi);
        if start < end {
            &self.tables[start..end]
        } else {
            &[]
        }
    }

    /// Whether any table of the run intersects `[lo, hi]`.
    pub fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        !self.overlapping(lo, hi).is_empty()
    }

    /// The table whose range holds `key`, if any.
    pub fn table_for(&self, key: &[u8]) -> Option<&TableDesc> {
        let i = self.tables.partition_point(|t| t.largest.as_slice() < key);
        self.tables.get(i).filter(|t| t.smallest.as_slice() <= key)
    }
}

/// One level: its runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LevelDesc {
    /// Runs, newest first. Every run holds at least one table.
    pub runs: Vec<RunDesc>,
}

impl LevelDesc {
    /// Bytes of the level's tables.
    pub fn bytes(&self) -> u64 {
        self.runs
            .iter()
            .fold(0u64, |a, r| a.saturating_add(r.bytes()))
    }

    /// The level's tables, run by run.
    pub fn tables(&self) -> impl Iterator<Item = &TableDesc> {
        self.runs.iter().flat_map(|r| r.tables.iter())
    }

    /// Number of tables in the level.
    pub fn table_count(&self) -> usize {
        self.runs.iter().map(|r| r.tables.len()).sum()
    }

    /// Whether the level holds no run.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// A whole tree (one keyspace): `levels[0]` is flush output, the last level the oldest
/// data. The number of levels is fixed by the engine (7 today); policies plan within it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreeDesc {
    /// Levels, shallowest first.
    pub levels: Vec<LevelDesc>,
}

impl TreeDesc {
    /// An empty tree of `num_levels` levels.
    pub fn with_levels(num_levels: usize) -> Self {
        TreeDesc {
            levels: vec![LevelDesc::default(); num_levels],
        }
    }

    /// Index of the last (deepest) level; 0 for a tree without levels.
    pub fn last_level(&self) -> usize {
        self.levels.len().saturating_sub(1)
    }

    /// Bytes in `level` (0 for a level the tree does not have).
    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels.get(level).map_or(0, LevelDesc::bytes)
    }

    /// Runs in `level` (0 for a level the tree does not have).
    pub fn runs_in(&self, level: usize) -> usize {
        self.levels.get(level).map_or(0, |l| l.runs.len())
    }

    /// Bytes in the whole tree.
    pub fn total_bytes(&self) -> u64 {
        self.levels
            .iter()
            .fold(0u64, |a, l| a.saturating_add(l.bytes()))
    }

    /// Runs in the whole tree: the most a point read can consult.
    pub fn total_runs(&self) -> usize {
        self.levels.iter().map(|l| l.runs.len()).sum()
    }

    /// Number of tables in the tree.
    pub fn table_count(&self) -> usize {
        self.levels.iter().map(LevelDesc::table_count).sum()
    }

    /// The table `r` names, if the tree holds it at that level.
    pub fn table(&self, r: TableRef) -> Option<&TableDesc> {
        self.levels.get(r.level)?.tables().find(|t| t.id == r.id)
    }

    /// Adds `table` as the newest run of level 0, as a flush does.
    ///
    /// # Errors
    /// [`Error::InvalidTree`] when the tree has no levels or already holds the id.
    pub fn push_flush(&mut self, table: TableDesc) -> Result<()> {
        if self
            .levels
            .iter()
            .flat_map(LevelDesc::tables)
            .any(|t| t.id == table.id)
        {
            return Err(Error::tree(format!(
                "table {} is already in the tree",
                table.id
            )));
        }
        let l0 = self
            .levels
            .first_mut()
            .ok_or_else(|| Error::tree("the tree has no levels"))?;
        l0.runs.insert(0, RunDesc::new(vec![table]));
        Ok(())
    }

    /// Checks the invariants every policy relies on: at least two levels, no empty run,
    /// every table's bounds ordered (`smallest <= largest`, `min_seq <= max_seq`,
    /// `tombstones <= entries`), every run's tables sorted and disjoint, ids unique.
    ///
    /// Policies never panic on a tree that fails this check, but their decisions on it
    /// may be invalid.
    ///
    /// # Errors
    /// [`Error::InvalidTree`] naming the first broken invariant.
    pub fn check(&self) -> Result<()> {
        if self.levels.len() < 2 {
            return Err(Error::tree(format!(
                "a tree needs level 0 and at least one more level, this one has {}",
                self.levels.len()
            )));
        }
        let mut ids = HashSet::new();
        for (l, level) in self.levels.iter().enumerate() {
            for (r, run) in level.runs.iter().enumerate() {
                if run.tables.is_empty() {
                    return Err(Error::tree(format!("L{l} run {r} holds no table")));
                }
                for t in &run.tables {
                    if !ids.insert(t.id) {
                        return Err(Error::tree(format!("table {} appears twice", t.id)));
                    }
                    if t.smallest > t.largest {
                        return Err(Error::tree(format!(
                            "table {} has smallest key above its largest",
                            t.id
                        )));
                    }
                    if t.min_seq > t.max_seq {
                        return Err(Error::tree(format!(
                            "table {} has min_seq {} above max_seq {}",
                            t.id, t.min_seq, t.max_seq
                        )));
                    }
                    if t.tombstones > t.entries {
                        return Err(Error::tree(format!(
                            "table {} has more tombstones ({}) than entries ({})",
                            t.id, t.tombstones, t.entries
                        )));
                    }
                }
                for pair in run.tables.windows(2) {
                    if let [a, b] = pair {
                        if a.largest >= b.smallest {
                            return Err(Error::tree(format!(
                                "L{l} run {r}: tables {} and {} overlap or are out of order",
                                a.id, b.id
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies `decision` to the description, as the engine would once it has executed
    /// it: a move relocates the table; a merge removes its inputs and places `outputs`
    /// (the tables the merge wrote, sorted and disjoint; possibly none) as the decision
    /// says; a drop removes the tables. Runs left empty disappear. Nothing is changed
    /// when an error is returned.
    ///
    /// # Errors
    /// [`Error::InvalidDecision`] when the decision does not fit the tree (see
    /// [`validate`]), when `outputs` is given for anything but a merge, or when the
    /// outputs are not sorted and disjoint, leave the inputs' key range, or reuse an id
    /// still in the tree.
    pub fn apply(&mut self, decision: &Decision, outputs: Vec<TableDesc>) -> Result<()> {
        validate(self, decision)?;
        match decision {
            Decision::Nothing => {
                if !outputs.is_empty() {
                    return Err(Error::decision("`Nothing` cannot have outputs"));
                }
                Ok(())
            }
            Decision::Move(m) => {
                if !outputs.is_empty() {
                    return Err(Error::decision("a move writes no tables"));
                }
                let removed = self.remove(&[m.table]);
                self.place(m.to_level, m.placement, removed);
                self.drop_empty_runs();
                Ok(())
            }
            Decision::Merge(m) => {
                check_outputs(self, &m.inputs, &outputs)?;
                self.remove(&m.inputs);
                self.place(m.output_level, m.placement, outputs);
                self.drop_empty_runs();
                Ok(())
            }
            Decision::DropTables(tables) => {
                if !outputs.is_empty() {
                    return Err(Error::decision("a drop writes no tables"));
                }
                self.remove(tables);
                self.drop_empty_runs();
                Ok(())
            }
        }
    }

    /// Removes the named tables (runs are kept, possibly empty) and returns them.
    fn remove(&mut self, refs: &[TableRef]) -> Vec<TableDesc> {
        let mut removed = Vec::new();
        for r in refs {
            if let Some(level) = self.levels.get_mut(r.level) {
                for run in &mut level.runs {
                    if let Some(i) = run.tables.iter().position(|t| t.id == r.id) {
                        removed.push(run.tables.remove(i));
                        break;
                    }
                }
            }
        }
        removed
    }

    /// Places tables as `placement` says; indices refer to the runs before removal.
    fn place(&mut self, level: usize, placement: Placement, mut tables: Vec<TableDesc>) {
        if tables.is_empty() {
            return;
        }
        let Some(level) = self.levels.get_mut(level) else {
            return;
        };
        match placement {
            Placement::Into(r) => {
                if let Some(run) = level.runs.get_mut(r) {
                    run.tables.append(&mut tables);
                    run.tables.sort_by(|a, b| a.smallest.cmp(&b.smallest));
                }
            }
            Placement::New(k) => {
                tables.sort_by(|a, b| a.smallest.cmp(&b.smallest));
                let k = k.min(level.runs.len());
                level.runs.insert(k, RunDesc::new(tables));
            }
        }
    }

    fn drop_empty_runs(&mut self) {
        for level in &mut self.levels {
            level.runs.retain(|r| !r.tables.is_empty());
        }
    }
}

/// Checks a merge's outputs against its inputs and the rest of the tree.
fn check_outputs(tree: &TreeDesc, inputs: &[TableRef], outputs: &[TableDesc]) -> Result<()> {
    let input_tables: Vec<&TableDesc> = inputs.iter().filter_map(|r| tree.table(*r)).collect();
    let lo = input_tables.iter().map(|t| t.smallest.as_slice()).min();
    let hi = input_tables.iter().map(|t| t.largest.as_slice()).max();
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Err(Error::decision("a merge needs inputs"));
    };
    let input_ids: HashSet<TableId> = inputs.iter().map(|r| r.id).collect();
    let remaining: HashSet<TableId> = tree
        .levels
        .iter()
        .flat_map(LevelDesc::tables)
        .map(|t| t.id)
        .filter(|id| !input_ids.contains(id))
        .collect();
    let mut seen = HashSet::new();
    let mut sorted: Vec<&TableDesc> = outputs.iter().collect();
    sorted.sort_by(|a, b| a.smallest.cmp(&b.smallest));
    for t in &sorted {
        if t.smallest > t.largest {
            return Err(Error::decision(format!(
                "output {} has smallest key above largest",
                t.id
            )));
        }
        if t.smallest.as_slice() < lo || t.largest.as_slice() > hi {
            return Err(Error::decision(format!(
                "output {} leaves the inputs' key range",
                t.id
            )));
        }
        if remaining.contains(&t.id) || !seen.insert(t.id) {
            return Err(Error::decision(format!(
                "output id {} is already in use",
                t.id
            )));
        }
    }
    for pair in sorted.windows(2) {
        if let [a, b] = pair {
            if a.largest >= b.smallest {
                return Err(Error::decision(format!(
                    "outputs {} and {} overlap",
                    a.id, b.id
                )));
            }
        }
    }
    Ok(())
}

/// Where a table sits: level, run (newest first) and index in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub level: usize,
    pub run: usize,
    pub idx: usize,
}

/// Positions in read order. Existing runs get odd positions, the slots between them
/// (where a new run can be inserted) even ones, so "newer" is "smaller" throughout.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    offsets: Vec<usize>,
    runs: Vec<usize>,
}

impl Layout {
    pub fn new(tree: &TreeDesc) -> Self {
        let mut offsets = Vec::with_capacity(tree.levels.len());
        let mut runs = Vec::with_capacity(tree.levels.len());
        let mut acc = 0;
        for level in &tree.levels {
            offsets.push(acc);
            runs.push(level.runs.len());
            acc += level.runs.len();
        }
        Layout { offsets, runs }
    }

    /// Position of run `run` of `level`.
    pub fn run_pos(&self, level: usize, run: usize) -> usize {
        2 * (self.offsets.get(level).copied().unwrap_or(0) + run) + 1
    }

    /// Position of what `placement` names at `level`, if it names something that can
    /// exist there.
    pub fn target_pos(&self, level: usize, placement: Placement) -> Option<usize> {
        let offset = *self.offsets.get(level)?;
        let runs = *self.runs.get(level)?;
        match placement {
            Placement::Into(r) if r < runs => Some(2 * (offset + r) + 1),
            Placement::New(k) if k <= runs => Some(2 * (offset + k)),
            _ => None,
        }
    }
}

/// Every table's location, by id (the first one wins if ids repeat).
pub(crate) fn locate_all(tree: &TreeDesc) -> HashMap<TableId, Loc> {
    let mut map = HashMap::new();
    for (level, l) in tree.levels.iter().enumerate() {
        for (run, r) in l.runs.iter().enumerate() {
            for (idx, t) in r.tables.iter().enumerate() {
                map.entry(t.id).or_insert(Loc { level, run, idx });
            }
        }
    }
    map
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decision::{Merge, Move, Reason};

    /// A table over `[lo, hi]` (keys as two-byte big-endian numbers) of `size` bytes.
    pub fn t(id: u64, lo: u16, hi: u16, size: u64) -> TableDesc {
        TableDesc {
            id: TableId(id),
            size,
            smallest: lo.to_be_bytes().to_vec(),
            largest: hi.to_be_bytes().to_vec(),
            min_seq: id,
            max_seq: id,
            entries: size,
            tombstones: 0,
        }
    }

    /// A tree from levels of runs of tables.
    pub fn tree(levels: Vec<Vec<Vec<TableDesc>>>) -> TreeDesc {
        TreeDesc {
            levels: levels
                .into_iter()
                .map(|runs| LevelDesc {
                    runs: runs.into_iter().map(RunDesc::new).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn check_accepts_a_sound_tree_and_names_each_broken_invariant() {
        let good = tree(vec![
            vec![vec![t(1, 0, 50, 10)], vec![t(2, 10, 90, 10)]],
            vec![vec![t(3, 0, 40, 10), t(4, 41, 99, 10)]],
        ]);
        assert_eq!(good.check(), Ok(()));

        let overlapping = tree(vec![vec![], vec![vec![t(3, 0, 40, 10), t(4, 40, 99, 10)]]]);
        assert!(matches!(overlapping.check(), Err(Error::InvalidTree(m)) if m.contains("overlap")));

        let dup = tree(vec![vec![vec![t(3, 0, 1, 1)]], vec![vec![t(3, 5, 6, 1)]]]);
        assert!(matches!(dup.check(), Err(Error::InvalidTree(m)) if m.contains("twice")));

        let empty_run = tree(vec![vec![vec![]], vec![]]);
        assert!(empty_run.check().is_err());

        let one_level = tree(vec![vec![]]);
        assert!(one_level.check().is_err());

        let mut tomb = t(9, 0, 1, 1);
        tomb.tombstones = 2;
        assert!(tree(vec![vec![vec![tomb]], vec![]]).check().is_err());
    }

    #[test]
    fn overlapping_finds_the_contiguous_slice() {
        let run = RunDesc::new(vec![t(1, 0, 9, 1), t(2, 10, 19, 1), t(3, 30, 39, 1)]);
        let ids = |s: &[TableDesc]| s.iter().map(|t| t.id.0).collect::<Vec<_>>();
        let k = |v: u16| v.to_be_bytes();
        assert_eq!(ids(run.overlapping(&k(5), &k(12))), vec![1, 2]);
        assert_eq!(ids(run.overlapping(&k(20), &k(29))), Vec::<u64>::new());
        assert_eq!(ids(run.overlapping(&k(19), &k(30))), vec![2, 3]);
        assert_eq!(run.table_for(&k(25)), None);
        assert_eq!(run.table_for(&k(31)).map(|t| t.id.0), Some(3));
    }

    #[test]
    fn apply_merge_places_outputs_and_removes_emptied_runs() {
        let mut tr = tree(vec![
            vec![vec![t(1, 0, 50, 10)], vec![t(2, 10, 90, 10)]],
            vec![vec![t(3, 0, 40, 10), t(4, 41, 99, 10)]],
        ]);
        let d = Decision::Merge(Merge {
            inputs: vec![
                TableRef {
                    level: 0,
                    id: TableId(1),
                },
                TableRef {
                    level: 0,
                    id: TableId(2),
                },
                TableRef {
                    level: 1,
                    id: TableId(3),
                },
                TableRef {
                    level: 1,
                    id: TableId(4),
                },
            ],
            output_level: 1,
            placement: Placement::Into(0),
            bottommost: true,
            reason: Reason::Level0,
        });
        tr.apply(&d, vec![t(6, 50, 99, 20), t(5, 0, 49, 15)])
            .unwrap();
        assert_eq!(tr.levels[0].runs.len(), 0);
        assert_eq!(tr.levels[1].runs.len(), 1);
        let ids: Vec<u64> = tr.levels[1].tables().map(|t| t.id.0).collect();
        assert_eq!(ids, vec![5, 6]);
        assert_eq!(tr.check(), Ok(()));
    }

    #[test]
    fn apply_refuses_bad_outputs_and_leaves_the_tree_alone() {
        let mut tr = tree(vec![vec![vec![t(1, 10, 20, 10)]], vec![]]);
        let before = tr.clone();
        let d = Decision::Merge(Merge {
            inputs: vec![TableRef {
                level: 0,
                id: TableId(1),
            }],
            output_level: 1,
            placement: Placement::New(0),
            bottommost: true,
            reason: Reason::Level0,
        });
        // Leaves the key range.
        assert!(tr.apply(&d, vec![t(2, 5, 20, 1)]).is_err());
        // Overlapping outputs.
        assert!(tr
            .apply(&d, vec![t(2, 10, 15, 1), t(3, 15, 20, 1)])
            .is_err());
        assert_eq!(tr, before);
        // Everything dropped is fine.
        tr.apply(&d, vec![]).unwrap();
        assert_eq!(tr.total_runs(), 0);
    }

    #[test]
    fn apply_move_and_push_flush() {
        let mut tr = TreeDesc::with_levels(3);
        tr.push_flush(t(1, 0, 9, 5)).unwrap();
        tr.push_flush(t(2, 10, 19, 5)).unwrap();
        assert!(tr.push_flush(t(2, 30, 39, 5)).is_err());
        assert_eq!(tr.levels[0].runs[0].tables[0].id, TableId(2));
        let d = Decision::Move(Move {
            table: TableRef {
                level: 0,
                id: TableId(1),
            },
            to_level: 2,
            placement: Placement::New(0),
        });
        tr.apply(&d, vec![]).unwrap();
        assert_eq!(tr.levels[2].runs.len(), 1);
        assert_eq!(tr.levels[0].runs.len(), 1);
        let d = Decision::Move(Move {
            table: TableRef {
                level: 0,
                id: TableId(2),
            },
            to_level: 2,
            placement: Placement::Into(0),
        });
        tr.apply(&d, vec![]).unwrap();
        let ids: Vec<u64> = tr.levels[2].tables().map(|t| t.id.0).collect();
        assert_eq!(ids, vec![1, 2]);
    }
}
