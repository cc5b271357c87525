//! Level capacities computed from the last level, as RocksDB's
//! `level_compaction_dynamic_level_bytes` does.
//!
//! The last level's capacity is its actual size (at least `base_level_bytes`); each
//! level above holds `1/T` of the one below, up to the *base level*, the shallowest
//! level whose capacity is still at least `base_level_bytes`. Level 0 merges into the
//! base level; levels between 1 and the base stay empty. Space stays bounded because
//! every level above the last is sized from the last: the upper levels together hold at
//! most about `1/(T-1)` of it. Trade-off: while the tree is small everything lands in
//! the last level (fewer levels, but the first merges rewrite it more often), and the
//! base level moves up as the tree grows.

use crate::policy::LevelLimit;
use crate::tree::TreeDesc;

/// Capacities of a tree's levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelTargets {
    /// The level level 0 merges into.
    pub base_level: usize,
    /// Capacity in bytes per level: 0 for level 0 (bounded by runs, not bytes) and for
    /// the levels above the base, which should be empty.
    pub capacity: Vec<u64>,
}

impl LevelTargets {
    /// The limit of each of `levels` levels under these targets: level 0 holds up to
    /// `l0_trigger - 1` runs, the levels above the base level stay empty, the last level
    /// holds up to `last_runs` runs of any size, and every other level up to
    /// `middle_runs(level)` runs within its capacity. Every policy shares this rule and
    /// differs only in the run counts.
    pub fn limits(
        &self,
        levels: usize,
        l0_trigger: usize,
        last_runs: usize,
        middle_runs: impl Fn(usize) -> usize,
    ) -> Vec<LevelLimit> {
        let last = levels.saturating_sub(1);
        (0..levels)
            .map(|i| {
                if i == 0 {
                    LevelLimit {
                        max_runs: l0_trigger - 1,
                        max_bytes: u64::MAX,
                    }
                } else if i == last {
                    LevelLimit {
                        max_runs: last_runs,
                        max_bytes: u64::MAX,
                    }
                } else if i < self.base_level {
                    LevelLimit {
                        max_runs: 0,
                        max_bytes: 0,
                    }
                } else {
                    LevelLimit {
                        max_runs: middle_runs(i),
                        max_bytes: self.capacity_of(i),
                    }
                }
            })
            .collect()
    }

    /// Capacities for `tree` with size ratio `size_ratio` (at least 2) and base-level
    /// size `base_level_bytes`.
    pub fn compute(tree: &TreeDesc, size_ratio: u64, base_level_bytes: u64) -> Self {
        let n = tree.levels.len();
        let mut capacity = vec![0u64; n];
        if n < 2 {
            return LevelTargets {
                base_level: n.saturating_sub(1),
                capacity,
            };
        }
        let ratio = size_ratio.max(2);
        let base = base_level_bytes.max(1);
        let last = n - 1;
        capacity[last] = tree.level_bytes(last).max(base);
        let mut b = last;
        while b > 1 {
            let up = capacity[b] / ratio;
            if up < base {
                break;
            }
            capacity[b - 1] = up;
            b -= 1;
        }
        LevelTargets {
            base_level: b,
            capacity,
        }
    }

    /// Capacity of `level` (0 beyond the tree).
    pub fn capacity_of(&self, level: usize) -> u64 {
        self.capacity.get(level).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::{t, tree};

    #[test]
    fn a_small_tree_merges_straight_into_the_last_level() {
        let tr = tree(vec![vec![], vec![], vec![], vec![vec![t(1, 0, 9, 500)]]]);
        let targets = LevelTargets::compute(&tr, 10, 1000);
        assert_eq!(targets.base_level, 3);
        assert_eq!(targets.capacity, vec![0, 0, 0, 1000]);
    }

    #[test]
    fn the_base_level_moves_up_as_the_last_level_grows() {
        let tr = tree(vec![
            vec![],
            vec![],
            vec![],
            vec![vec![t(1, 0, 9, 250_000)]],
        ]);
        let targets = LevelTargets::compute(&tr, 10, 1000);
        assert_eq!(targets.base_level, 1);
        assert_eq!(targets.capacity, vec![0, 2_500, 25_000, 250_000]);
        let tr = tree(vec![vec![], vec![], vec![], vec![vec![t(1, 0, 9, 99_999)]]]);
        let targets = LevelTargets::compute(&tr, 10, 1000);
        assert_eq!(targets.base_level, 2);
        assert_eq!(targets.capacity, vec![0, 0, 9_999, 99_999]);
    }

    #[test]
    fn degenerate_trees_do_not_panic() {
        assert_eq!(
            LevelTargets::compute(&TreeDesc::default(), 10, 1).base_level,
            0
        );
        let one = TreeDesc::with_levels(1);
        assert_eq!(LevelTargets::compute(&one, 0, 0).capacity, vec![0]);
    }
}
