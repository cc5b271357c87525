//! Tiered compaction: up to K runs per level, merged into one run of the next level when
//! the level is full, with a space-amplification bound that forces a full merge.
//!
//! Each level takes runs from the level above as they come (a new run per arrival) and,
//! once it holds K runs or its capacity (capacities grow by K per level, computed from
//! the last level as in [`shape`](crate::shape)), merges them all into one new run of the
//! next level; the last level merges its K runs in place. Runs that overlap nothing
//! below are moved instead. When the data above the oldest run outgrows it by more than
//! `max_space_amplification`, everything is merged into one run at the bottom (as
//! RocksDB's universal compaction does).
//!
//! Trade-off: the least write amplification (about one write per level), paid for with
//! up to K runs per level for reads and scans to consult and with space amplification
//! up to the bound (overwritten keys linger in several runs). Right for write-mostly
//! data that is rarely read, such as event logs.

use crate::decision::{Decision, Placement, Reason};
use crate::error::{Error, Result};
use crate::planner::{self, Plan};
use crate::policy::{CompactionPolicy, Debt, LevelLimit};
use crate::shape::LevelTargets;
use crate::tree::{TableDesc, TreeDesc};

/// Options of [`Tiered`].
#[derive(Debug, Clone, PartialEq)]
pub struct TieredConfig {
    /// K: a level holding this many runs is merged into the next. Also the size ratio
    /// between levels. Default 10; at least 2.
    pub runs_per_level: usize,
    /// Smallest capacity of the base level. Default 64 MiB (the engine's
    /// `base_level_bytes`).
    pub base_level_bytes: u64,
    /// Level-0 runs that trigger a merge. Default 4; at least 1.
    pub l0_trigger: usize,
    /// Bound on `(all bytes - oldest run's bytes) / oldest run's bytes`; past it every
    /// run is merged into one. Default 1.5 (at most 2.5 times the oldest run). Lower
    /// bounds space, raises write amplification.
    pub max_space_amplification: f64,
}

impl Default for TieredConfig {
    fn default() -> Self {
        TieredConfig {
            runs_per_level: 10,
            base_level_bytes: 64 << 20,
            l0_trigger: 4,
            max_space_amplification: 1.5,
        }
    }
}

impl TieredConfig {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.runs_per_level < 2 {
            return Err(Error::config(
                "TieredConfig::runs_per_level",
                "must be at least 2 (1 is leveled compaction)",
            ));
        }
        if self.base_level_bytes == 0 {
            return Err(Error::config(
                "TieredConfig::base_level_bytes",
                "must be positive",
            ));
        }
        if self.l0_trigger == 0 {
            return Err(Error::config(
                "TieredConfig::l0_trigger",
                "must be at least 1",
            ));
        }
        if !(self.max_space_amplification.is_finite() && self.max_space_amplification > 0.0) {
            return Err(Error::config(
                "TieredConfig::max_space_amplification",
                "must be a positive number",
            ));
        }
        Ok(())
    }
}

/// The tiered policy.
#[derive(Debug, Clone)]
pub struct Tiered {
    config: TieredConfig,
}

impl Tiered {
    /// A tiered policy with `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `config` does not [`validate`](TieredConfig::validate).
    pub fn new(config: TieredConfig) -> Result<Self> {
        config.validate()?;
        Ok(Tiered { config })
    }

    /// The options.
    pub fn config(&self) -> &TieredConfig {
        &self.config
    }

    /// The estimate the space bound is checked against: bytes above the oldest run over
    /// the oldest run's bytes (`None` when the tree holds fewer than two runs).
    pub fn space_amplification_estimate(tree: &TreeDesc) -> Option<f64> {
        if tree.total_runs() < 2 {
            return None;
        }
        let oldest = tree
            .levels
            .iter()
            .rev()
            .find_map(|l| l.runs.last())?
            .bytes();
        if oldest == 0 {
            return None;
        }
        let rest = tree.total_bytes().saturating_sub(oldest);
        Some(rest as f64 / oldest as f64)
    }

    fn plan(&self, tree: &TreeDesc) -> Plan {
        let k = self.config.runs_per_level;
        let targets = LevelTargets::compute(tree, k as u64, self.config.base_level_bytes);
        let n = tree.levels.len();
        let limits = targets.limits(n, self.config.l0_trigger, k - 1, |_| k - 1);
        Plan {
            run_share: targets.capacity.iter().map(|c| c / k as u64).collect(),
            targets,
            limits,
            leveled: vec![false; n],
            join_when_full: false,
        }
    }

    fn over_space_bound(&self, tree: &TreeDesc) -> bool {
        Self::space_amplification_estimate(tree)
            .is_some_and(|e| e > self.config.max_space_amplification)
    }
}

impl CompactionPolicy for Tiered {
    fn name(&self) -> &'static str {
        "tiered"
    }

    fn decide(&self, tree: &TreeDesc) -> Decision {
        if tree.levels.len() >= 2 && self.over_space_bound(tree) {
            let last = tree.last_level();
            let inputs: Vec<(usize, &TableDesc)> = tree
                .levels
                .iter()
                .enumerate()
                .flat_map(|(l, level)| level.tables().map(move |t| (l, t)))
                .collect();
            return planner::merge(
                tree,
                inputs,
                last,
                Placement::New(0),
                Reason::SpaceAmplification,
            );
        }
        planner::decide(tree, &self.plan(tree))
    }

    fn limits(&self, tree: &TreeDesc) -> Vec<LevelLimit> {
        self.plan(tree).limits
    }

    fn debt(&self, tree: &TreeDesc) -> Debt {
        let mut debt = planner::debt(tree, &self.plan(tree));
        if self.over_space_bound(tree) {
            // The full merge rewrites the whole tree, but what it owes is the space
            // above the oldest run: counting the whole tree would let one large
            // database's routine space merge stop every write.
            let oldest = tree
                .levels
                .iter()
                .rev()
                .find_map(|l| l.runs.last())
                .map_or(0, |r| r.bytes());
            let excess = tree.total_bytes().saturating_sub(oldest);
            debt.pending_bytes = debt.pending_bytes.max(excess);
            debt.score = debt.score.max(1.0);
        }
        debt
    }

    fn summary(&self) -> String {
        format!(
            "tiered K={} l0_trigger={} max_space_amp={}",
            self.config.runs_per_level, self.config.l0_trigger, self.config.max_space_amplification
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::validate;
    use crate::tree::tests::{t, tree};

    fn policy(k: usize) -> Tiered {
        Tiered::new(TieredConfig {
            runs_per_level: k,
            base_level_bytes: 100,
            l0_trigger: 2,
            max_space_amplification: 1.5,
        })
        .unwrap()
    }

    #[test]
    fn config_is_checked() {
        for bad in [
            TieredConfig {
                runs_per_level: 1,
                ..TieredConfig::default()
            },
            TieredConfig {
                max_space_amplification: f64::NAN,
                ..TieredConfig::default()
            },
            TieredConfig {
                l0_trigger: 0,
                ..TieredConfig::default()
            },
        ] {
            assert!(Tiered::new(bad).is_err());
        }
    }

    #[test]
    fn a_level_holds_runs_until_it_is_full() {
        // Last level 1000 bytes, K = 3: L1's capacity is 333, so L1 is the base level.
        let big = t(9, 0, 999, 1000);
        let tr = tree(vec![
            vec![],
            vec![vec![t(1, 0, 50, 30)], vec![t(2, 0, 50, 30)]],
            vec![vec![big.clone()]],
        ]);
        let p = policy(3);
        assert_eq!(p.decide(&tr), Decision::Nothing);
        let full = tree(vec![
            vec![],
            vec![
                vec![t(1, 0, 50, 30)],
                vec![t(2, 0, 50, 30)],
                vec![t(3, 0, 50, 30)],
            ],
            vec![vec![big]],
        ]);
        let d = p.decide(&full);
        let Decision::Merge(m) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(m.inputs.len(), 3, "the whole level, not the run below");
        assert_eq!((m.output_level, m.placement), (2, Placement::New(0)));
        assert_eq!(m.reason, Reason::Runs);
        assert_eq!(validate(&full, &d), Ok(()));
    }

    #[test]
    fn the_last_level_merges_its_runs_in_place() {
        let tr = tree(vec![
            vec![],
            vec![
                vec![t(1, 0, 50, 100)],
                vec![t(2, 0, 50, 100)],
                vec![t(3, 0, 50, 1000)],
            ],
        ]);
        let d = policy(3).decide(&tr);
        let Decision::Merge(m) = &d else {
            panic!("{d:?}")
        };
        assert_eq!((m.output_level, m.inputs.len(), m.bottommost), (1, 3, true));
        assert_eq!(m.reason, Reason::Runs);
        assert_eq!(validate(&tr, &d), Ok(()));
    }

    #[test]
    fn the_space_bound_forces_a_full_merge() {
        let tr = tree(vec![
            vec![vec![t(1, 0, 50, 60)]],
            vec![],
            vec![vec![t(2, 0, 50, 60)], vec![t(3, 0, 50, 50)]],
        ]);
        assert_eq!(Tiered::space_amplification_estimate(&tr), Some(2.4));
        let d = policy(10).decide(&tr);
        let Decision::Merge(m) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(m.reason, Reason::SpaceAmplification);
        assert_eq!((m.inputs.len(), m.output_level, m.bottommost), (3, 2, true));
        assert_eq!(validate(&tr, &d), Ok(()));
        assert!(policy(10).debt(&tr).is_due());
    }
}
