//! What a policy decides, and the check that a decision fits its tree.
//!
//! A decision is one step: nothing, move a table without rewriting it, merge some
//! tables into one level, or drop whole tables. The engine executes one and asks again;
//! small steps keep each compaction bounded and let the engine interleave flushes.
//!
//! [`validate`] states the rule every step must keep, in terms of the tree's read order
//! (see [`tree`](crate::tree)): *no version of a key may overtake another*. Concretely,
//! for every table `X` that the step leaves in place and every input `I` whose key range
//! meets `X`'s, `X` must be on the same side (newer or older) of the output as it was of
//! `I`; a step that joins an existing run must take every table of that run meeting the
//! inputs' key range (the outputs may span it); and `bottommost` may be claimed only when
//! nothing older than the output meets the inputs' key range, since the engine then
//! drops tombstones. The check is conservative (it reasons on key ranges, not keys).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::error::{Error, Result};
use crate::tree::{locate_all, Layout, TableDesc, TableId, TableRef, TreeDesc};

/// Where a step's output goes within its output level. Indices count the output level's
/// runs, newest first, *before* the step (inputs still in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Placement {
    /// Join existing run `r`: the output's tables are added to it.
    Into(usize),
    /// Form a new run inserted before run `k` (`k == runs` puts it after the last).
    New(usize),
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Into(r) => write!(f, "into run {r}"),
            Placement::New(k) => write!(f, "as new run {k}"),
        }
    }
}

/// Why a policy merges; for logs and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Level 0 holds as many runs as its trigger.
    Level0,
    /// A level holds at least its byte capacity.
    Capacity,
    /// A level holds more runs than it may.
    Runs,
    /// Data sits above the base level, where the tree's shape wants nothing.
    AboveBase,
    /// The tree's estimated space amplification passed its bound.
    SpaceAmplification,
    /// Asked for by the user (the engine's `compact_range`), not by a policy.
    Manual,
}

/// Relocate one table without rewriting it (a manifest edit only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The table and the level it is in.
    pub table: TableRef,
    /// The level it goes to; at least its current level.
    pub to_level: usize,
    /// Where in `to_level`.
    pub placement: Placement,
}

/// Merge tables into `output_level`: read every input, keep what the engine's version
/// rules keep, write the result as tables split at the engine's target size. The engine
/// may also build one itself (a manual full compaction) and [`validate`] it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The tables to read, with their levels.
    pub inputs: Vec<TableRef>,
    /// The level the output goes to; at least every input's level.
    pub output_level: usize,
    /// Where in `output_level`.
    pub placement: Placement,
    /// Nothing older than the output meets the inputs' key range: the engine may drop
    /// tombstones no snapshot needs.
    pub bottommost: bool,
    /// Why.
    pub reason: Reason,
}

impl Merge {
    /// Bytes of the inputs as `tree` describes them.
    pub fn input_bytes(&self, tree: &TreeDesc) -> u64 {
        self.inputs
            .iter()
            .filter_map(|r| tree.table(*r))
            .fold(0u64, |a, t| a.saturating_add(t.size))
    }
}

/// One compaction step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// The tree is within its bounds.
    Nothing,
    /// Move a table down without rewriting it.
    Move(Move),
    /// Merge tables into a level.
    Merge(Merge),
    /// Delete whole tables: each holds only tombstones and nothing older overlaps it, so
    /// no read at any sequence number can tell it is gone.
    DropTables(Vec<TableRef>),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Nothing => write!(f, "nothing"),
            Decision::Move(m) => write!(f, "move {} to L{} {}", m.table, m.to_level, m.placement),
            Decision::Merge(m) => write!(
                f,
                "merge {} tables into L{} {}{} ({:?})",
                m.inputs.len(),
                m.output_level,
                m.placement,
                if m.bottommost { ", bottommost" } else { "" },
                m.reason
            ),
            Decision::DropTables(t) => write!(f, "drop {} tables", t.len()),
        }
    }
}

/// Checks that `decision` can be executed on `tree` without changing what any read
/// returns, and without breaking a run's sortedness (see the module docs for the rule).
///
/// # Errors
/// [`Error::InvalidDecision`] naming the first problem: an input not in the tree or
/// named twice, an output level above an input or out of range, a placement that names
/// no run, a table left behind that would be overtaken, a joined run's overlapping table
/// left out, a false `bottommost`, a drop that would expose older data.
pub fn validate(tree: &TreeDesc, decision: &Decision) -> Result<()> {
    match decision {
        Decision::Nothing => Ok(()),
        Decision::Move(m) => check_relocation(
            tree,
            std::slice::from_ref(&m.table),
            m.to_level,
            m.placement,
            false,
            true,
        ),
        Decision::Merge(m) => check_relocation(
            tree,
            &m.inputs,
            m.output_level,
            m.placement,
            m.bottommost,
            false,
        ),
        Decision::DropTables(tables) => check_drop(tree, tables),
    }
}

fn check_relocation(
    tree: &TreeDesc,
    inputs: &[TableRef],
    out_level: usize,
    placement: Placement,
    bottommost: bool,
    is_move: bool,
) -> Result<()> {
    if inputs.is_empty() {
        return Err(Error::decision("a merge needs at least one input"));
    }
    let layout = Layout::new(tree);
    let locs = locate_all(tree);
    let mut input_ids = HashSet::new();
    // Input tables grouped by run position, each group sorted by key.
    let mut by_run: BTreeMap<usize, Vec<&TableDesc>> = BTreeMap::new();
    let mut max_level = 0;
    for r in inputs {
        let loc = locs
            .get(&r.id)
            .filter(|l| l.level == r.level)
            .ok_or_else(|| Error::decision(format!("input {r} is not in the tree")))?;
        if !input_ids.insert(r.id) {
            return Err(Error::decision(format!("input {r} is named twice")));
        }
        let table = tree
            .levels
            .get(loc.level)
            .and_then(|l| l.runs.get(loc.run))
            .and_then(|run| run.tables.get(loc.idx))
            .ok_or_else(|| Error::decision(format!("input {r} is not in the tree")))?;
        by_run
            .entry(layout.run_pos(loc.level, loc.run))
            .or_default()
            .push(table);
        max_level = max_level.max(r.level);
    }
    for group in by_run.values_mut() {
        group.sort_by(|a, b| a.smallest.cmp(&b.smallest));
    }
    if out_level >= tree.levels.len() {
        return Err(Error::decision(format!(
            "output level L{out_level} is beyond the tree's {} levels",
            tree.levels.len()
        )));
    }
    if out_level < max_level {
        return Err(Error::decision(format!(
            "output level L{out_level} is above input level L{max_level}"
        )));
    }
    let target = layout.target_pos(out_level, placement).ok_or_else(|| {
        Error::decision(format!(
            "L{out_level} has {} runs, so {placement} names nothing",
            tree.runs_in(out_level)
        ))
    })?;
    if is_move && by_run.contains_key(&target) {
        return Err(Error::decision(format!(
            "moving {} {placement} of its own level leaves it where it is",
            inputs[0]
        )));
    }
    let all = by_run.values().flatten();
    let lo = all
        .clone()
        .map(|t| t.smallest.as_slice())
        .min()
        .unwrap_or(&[]);
    let hi = all.map(|t| t.largest.as_slice()).max().unwrap_or(&[]);

    for (l, level) in tree.levels.iter().enumerate() {
        for (r, run) in level.runs.iter().enumerate() {
            let q = layout.run_pos(l, r);
            for x in run.overlapping(lo, hi) {
                if input_ids.contains(&x.id) {
                    continue;
                }
                if q == target {
                    return Err(Error::decision(format!(
                        "the output joins L{l} run {r}, whose table {} meets the inputs' key \
                         range but is not an input",
                        x.id
                    )));
                }
                if bottommost && q > target {
                    return Err(Error::decision(format!(
                        "claimed bottommost, but older table {} (L{l}) meets the inputs' key range",
                        x.id
                    )));
                }
                // Inputs on the far side of `x` from the output would overtake it (or be
                // overtaken by it).
                let far_side: Box<dyn Iterator<Item = (&usize, &Vec<&TableDesc>)>> = if q < target {
                    Box::new(by_run.range(..q))
                } else {
                    Box::new(by_run.range(q + 1..))
                };
                for (_, group) in far_side {
                    if let Some(i) = first_overlap(group, x) {
                        return Err(Error::decision(format!(
                            "table {} (L{l} run {r}) lies between input {} and the output: \
                             versions of their common keys would change order",
                            x.id, i.id
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The first table of a sorted, disjoint group meeting `x`'s range.
fn first_overlap<'a>(group: &[&'a TableDesc], x: &TableDesc) -> Option<&'a TableDesc> {
    let i = group.partition_point(|t| t.largest < x.smallest);
    group.get(i).copied().filter(|t| t.smallest <= x.largest)
}

fn check_drop(tree: &TreeDesc, tables: &[TableRef]) -> Result<()> {
    if tables.is_empty() {
        return Err(Error::decision("a drop needs at least one table"));
    }
    let layout = Layout::new(tree);
    let locs = locate_all(tree);
    let mut ids: HashSet<TableId> = HashSet::new();
    for r in tables {
        if !ids.insert(r.id) {
            return Err(Error::decision(format!("{r} is named twice")));
        }
    }
    for r in tables {
        let loc = locs
            .get(&r.id)
            .filter(|l| l.level == r.level)
            .ok_or_else(|| Error::decision(format!("{r} is not in the tree")))?;
        let Some(t) = tree.table(*r) else {
            return Err(Error::decision(format!("{r} is not in the tree")));
        };
        if !t.is_all_tombstones() {
            return Err(Error::decision(format!(
                "{r} holds {} live entries",
                t.entries - t.tombstones
            )));
        }
        let p = layout.run_pos(loc.level, loc.run);
        for (l, level) in tree.levels.iter().enumerate().skip(loc.level) {
            for (run_idx, run) in level.runs.iter().enumerate() {
                if layout.run_pos(l, run_idx) <= p {
                    continue;
                }
                if let Some(x) = run
                    .overlapping(&t.smallest, &t.largest)
                    .iter()
                    .find(|x| !ids.contains(&x.id))
                {
                    return Err(Error::decision(format!(
                        "dropping {r} would expose older table {} (L{l})",
                        x.id
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::{t, tree};

    fn r(level: usize, id: u64) -> TableRef {
        TableRef {
            level,
            id: TableId(id),
        }
    }

    fn merge(inputs: Vec<TableRef>, out: usize, placement: Placement, bottom: bool) -> Decision {
        Decision::Merge(Merge {
            inputs,
            output_level: out,
            placement,
            bottommost: bottom,
            reason: Reason::Capacity,
        })
    }

    /// L0: [1: 0..50] [2: 40..60] (newest first); L1: [3: 0..30, 4: 31..70]; L2: [5: 0..99]
    fn sample() -> TreeDesc {
        tree(vec![
            vec![vec![t(1, 0, 50, 10)], vec![t(2, 40, 60, 10)]],
            vec![vec![t(3, 0, 30, 10), t(4, 31, 70, 10)]],
            vec![vec![t(5, 0, 99, 10)]],
        ])
    }

    #[test]
    fn a_sound_leveled_merge_passes() {
        let d = merge(
            vec![r(0, 1), r(0, 2), r(1, 3), r(1, 4)],
            1,
            Placement::Into(0),
            false,
        );
        assert_eq!(validate(&sample(), &d), Ok(()));
    }

    #[test]
    fn joining_a_run_without_its_overlapping_table_is_refused() {
        let d = merge(
            vec![r(0, 1), r(0, 2), r(1, 3)],
            1,
            Placement::Into(0),
            false,
        );
        let e = validate(&sample(), &d).unwrap_err();
        assert!(e.to_string().contains("not an input"), "{e}");
    }

    #[test]
    fn skipping_a_newer_overlapping_run_is_refused() {
        // Taking the newer L0 run (table 1) into L1 while the older run (table 2, which
        // meets it at 40..50) stays above would let the older versions win.
        let d = merge(
            vec![r(0, 1), r(1, 3), r(1, 4)],
            1,
            Placement::Into(0),
            false,
        );
        let e = validate(&sample(), &d).unwrap_err();
        assert!(e.to_string().contains("change order"), "{e}");
        // Taking only the older run down is fine: the newer one stays newer.
        let d = merge(vec![r(0, 2), r(1, 4)], 1, Placement::Into(0), false);
        assert_eq!(validate(&sample(), &d), Ok(()));
    }

    #[test]
    fn false_bottommost_and_bad_targets_are_refused() {
        let d = merge(
            vec![r(0, 1), r(0, 2), r(1, 3), r(1, 4)],
            1,
            Placement::Into(0),
            true,
        );
        assert!(validate(&sample(), &d)
            .unwrap_err()
            .to_string()
            .contains("bottommost"));
        let d = merge(vec![r(1, 3), r(1, 4), r(2, 5)], 2, Placement::Into(0), true);
        assert_eq!(validate(&sample(), &d), Ok(()));
        let d = merge(vec![r(1, 3)], 0, Placement::New(0), false);
        assert!(validate(&sample(), &d)
            .unwrap_err()
            .to_string()
            .contains("above"));
        let d = merge(vec![r(1, 3)], 3, Placement::New(0), false);
        assert!(validate(&sample(), &d).is_err());
        let d = merge(vec![r(1, 3)], 2, Placement::Into(1), false);
        assert!(validate(&sample(), &d)
            .unwrap_err()
            .to_string()
            .contains("names nothing"));
        let d = merge(vec![r(1, 9)], 2, Placement::Into(0), false);
        assert!(validate(&sample(), &d)
            .unwrap_err()
            .to_string()
            .contains("not in"));
        let d = merge(vec![r(2, 3)], 2, Placement::Into(0), false);
        assert!(validate(&sample(), &d).is_err(), "wrong level for the id");
        let d = merge(vec![r(1, 3), r(1, 3)], 2, Placement::Into(0), false);
        assert!(validate(&sample(), &d).is_err());
    }

    #[test]
    fn moves_must_not_jump_overlapping_runs() {
        let d = Decision::Move(Move {
            table: r(0, 1),
            to_level: 2,
            placement: Placement::New(1),
        });
        assert!(validate(&sample(), &d).is_err());
        let free = tree(vec![
            vec![vec![t(1, 200, 250, 10)], vec![t(2, 40, 60, 10)]],
            vec![vec![t(3, 0, 30, 10), t(4, 31, 70, 10)]],
            vec![vec![t(5, 0, 99, 10)]],
        ]);
        let to_bottom = Decision::Move(Move {
            table: r(0, 1),
            to_level: 2,
            placement: Placement::Into(0),
        });
        assert_eq!(validate(&free, &to_bottom), Ok(()));
        let in_place = Decision::Move(Move {
            table: r(0, 1),
            to_level: 0,
            placement: Placement::Into(0),
        });
        assert!(validate(&free, &in_place).is_err());
    }

    #[test]
    fn drops_need_all_tombstones_and_nothing_older_beneath() {
        let mut tomb = t(1, 200, 250, 10);
        tomb.tombstones = tomb.entries;
        let mut covering = t(6, 0, 255, 10);
        covering.tombstones = 0;
        let ok = tree(vec![vec![vec![tomb.clone()]], vec![vec![t(3, 0, 30, 10)]]]);
        assert_eq!(validate(&ok, &Decision::DropTables(vec![r(0, 1)])), Ok(()));
        let exposed = tree(vec![vec![vec![tomb]], vec![vec![covering]]]);
        assert!(validate(&exposed, &Decision::DropTables(vec![r(0, 1)])).is_err());
        assert!(validate(&sample(), &Decision::DropTables(vec![r(2, 5)])).is_err());
    }
}
