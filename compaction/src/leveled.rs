//! Leveled compaction: one run per level, size ratio T, capacities computed from the
//! last level (dynamic level sizes).
//!
//! Level 0 merges, whole, into the base level when it holds `l0_trigger` runs; a level
//! at or over its capacity pushes one table into the level below — moved when it
//! overlaps nothing there, otherwise the table with the least overlap below for its
//! size, together with the tables it overlaps.
//!
//! Trade-off: the fewest runs a read can meet (level 0 plus one per level) and space
//! amplification near `1 + 1/(T-1)`, paid for with the highest write amplification:
//! every byte is rewritten about T times per level on its way down. Right for
//! read-mostly state that is overwritten often.

use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::planner::{self, Plan};
use crate::policy::{CompactionPolicy, Debt, LevelLimit};
use crate::shape::LevelTargets;
use crate::tree::TreeDesc;

/// Options of [`Leveled`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeveledConfig {
    /// Size ratio between adjacent levels. Default 10; at least 2. Larger means fewer
    /// levels (fewer runs per read) and more rewriting per level.
    pub size_ratio: u64,
    /// Smallest capacity of the base level (the level level 0 merges into). Default
    /// 64 MiB, the engine's `base_level_bytes`; about `l0_trigger` memtables is right.
    pub base_level_bytes: u64,
    /// Level-0 runs (flushed tables) that trigger a merge into the base level. Default
    /// 4, the engine's `l0_compaction_trigger`; at least 1.
    pub l0_trigger: usize,
}

impl Default for LeveledConfig {
    fn default() -> Self {
        LeveledConfig {
            size_ratio: 10,
            base_level_bytes: 64 << 20,
            l0_trigger: 4,
        }
    }
}

impl LeveledConfig {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.size_ratio < 2 {
            return Err(Error::config(
                "LeveledConfig::size_ratio",
                "must be at least 2",
            ));
        }
        if self.base_level_bytes == 0 {
            return Err(Error::config(
                "LeveledConfig::base_level_bytes",
                "must be positive",
            ));
        }
        if self.l0_trigger == 0 {
            return Err(Error::config(
                "LeveledConfig::l0_trigger",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The leveled policy.
#[derive(Debug, Clone)]
pub struct Leveled {
    config: LeveledConfig,
}

impl Leveled {
    /// A leveled policy with `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `config` does not [`validate`](LeveledConfig::validate).
    pub fn new(config: LeveledConfig) -> Result<Self> {
        config.validate()?;
        Ok(Leveled { config })
    }

    /// The options.
    pub fn config(&self) -> &LeveledConfig {
        &self.config
    }

    fn plan(&self, tree: &TreeDesc) -> Plan {
        let targets =
            LevelTargets::compute(tree, self.config.size_ratio, self.config.base_level_bytes);
        let n = tree.levels.len();
        let limits = targets.limits(n, self.config.l0_trigger, 1, |_| 1);
        Plan {
            run_share: targets.capacity.clone(),
            targets,
            limits,
            leveled: (0..n).map(|i| i > 0).collect(),
            join_when_full: true,
        }
    }
}

impl CompactionPolicy for Leveled {
    fn name(&self) -> &'static str {
        "leveled"
    }

    fn decide(&self, tree: &TreeDesc) -> Decision {
        planner::decide(tree, &self.plan(tree))
    }

    fn limits(&self, tree: &TreeDesc) -> Vec<LevelLimit> {
        self.plan(tree).limits
    }

    fn debt(&self, tree: &TreeDesc) -> Debt {
        planner::debt(tree, &self.plan(tree))
    }

    fn summary(&self) -> String {
        format!(
            "leveled T={} l0_trigger={}",
            self.config.size_ratio, self.config.l0_trigger
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{validate, Placement, Reason};
    use crate::tree::tests::{t, tree};
    use crate::tree::{TableId, TableRef};

    fn policy() -> Leveled {
        Leveled::new(LeveledConfig {
            size_ratio: 10,
            base_level_bytes: 100,
            l0_trigger: 2,
        })
        .unwrap()
    }

    fn ids(d: &Decision) -> Vec<(usize, u64)> {
        match d {
            Decision::Merge(m) => m.inputs.iter().map(|r| (r.level, r.id.0)).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn config_is_checked() {
        for bad in [
            LeveledConfig {
                size_ratio: 1,
                ..LeveledConfig::default()
            },
            LeveledConfig {
                base_level_bytes: 0,
                ..LeveledConfig::default()
            },
            LeveledConfig {
                l0_trigger: 0,
                ..LeveledConfig::default()
            },
        ] {
            assert!(matches!(
                Leveled::new(bad),
                Err(Error::InvalidConfig { .. })
            ));
        }
    }

    #[test]
    fn quiet_tree_needs_nothing() {
        let tr = tree(vec![
            vec![vec![t(1, 0, 9, 10)]],
            vec![],
            vec![vec![t(2, 0, 99, 500)]],
        ]);
        assert_eq!(policy().decide(&tr), Decision::Nothing);
        assert!(!policy().debt(&tr).is_due());
        let limits = policy().limits(&tr);
        assert!(limits
            .iter()
            .enumerate()
            .all(|(i, l)| l.admits(tr.runs_in(i), tr.level_bytes(i))));
    }

    #[test]
    fn full_level0_merges_into_the_base_level_with_every_overlapping_table() {
        // Last level 500 bytes: base is L2 (L1 would be 50 < 100).
        let tr = tree(vec![
            vec![vec![t(1, 10, 20, 10)], vec![t(2, 15, 40, 10)]],
            vec![],
            vec![vec![t(3, 0, 12, 100), t(4, 13, 30, 100), t(5, 31, 99, 300)]],
        ]);
        let d = policy().decide(&tr);
        assert_eq!(ids(&d), vec![(0, 1), (0, 2), (2, 3), (2, 4), (2, 5)]);
        let Decision::Merge(m) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (m.output_level, m.placement, m.bottommost),
            (2, Placement::Into(0), true)
        );
        assert_eq!(m.reason, Reason::Level0);
        assert_eq!(validate(&tr, &d), Ok(()));
        assert!(policy().debt(&tr).pending_bytes >= 520);
    }

    #[test]
    fn level0_tables_that_overlap_nothing_are_moved_to_the_bottom() {
        let tr = tree(vec![
            vec![vec![t(1, 200, 210, 10)], vec![t(2, 150, 160, 10)]],
            vec![],
            vec![vec![t(3, 0, 99, 500)]],
        ]);
        let d = policy().decide(&tr);
        assert_eq!(
            d,
            Decision::Move(crate::decision::Move {
                table: TableRef {
                    level: 0,
                    id: TableId(2)
                },
                to_level: 2,
                placement: Placement::Into(0),
            })
        );
    }

    #[test]
    fn an_oversized_level_pushes_its_least_overlapping_table() {
        // Last level 10_000: L1 capacity 100 (base), L2 1000.
        let tr = tree(vec![
            vec![],
            vec![vec![t(1, 0, 9, 60), t(2, 10, 19, 60)]],
            vec![vec![t(3, 0, 9, 500), t(4, 10, 19, 50)]],
            vec![vec![t(5, 0, 99, 10_000)]],
        ]);
        let d = policy().decide(&tr);
        assert_eq!(ids(&d), vec![(1, 2), (2, 4)]);
        let Decision::Merge(m) = &d else { panic!() };
        assert_eq!(m.reason, Reason::Capacity);
        assert!(!m.bottommost);
        assert_eq!(validate(&tr, &d), Ok(()));
    }

    #[test]
    fn data_above_the_base_level_goes_down_first() {
        let tr = tree(vec![
            vec![vec![t(9, 0, 5, 1)]],
            vec![vec![t(1, 0, 9, 10)]],
            vec![vec![t(3, 5, 9, 50)]],
        ]);
        // Last level 50 < base 100: base is L2; L1 must empty.
        let d = policy().decide(&tr);
        let Decision::Merge(m) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(m.reason, Reason::AboveBase);
        assert_eq!(ids(&d), vec![(1, 1), (2, 3)]);
        assert_eq!(validate(&tr, &d), Ok(()));
    }

    #[test]
    fn a_tiered_tree_is_brought_to_one_run_per_level() {
        let tr = tree(vec![
            vec![],
            vec![],
            vec![vec![t(1, 0, 50, 100)], vec![t(2, 20, 90, 100)]],
        ]);
        let d = policy().decide(&tr);
        let Decision::Merge(m) = &d else {
            panic!("{d:?}")
        };
        assert_eq!((m.output_level, m.inputs.len(), m.bottommost), (2, 2, true));
        assert_eq!(validate(&tr, &d), Ok(()));
    }
}
