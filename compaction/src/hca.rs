//! Hierarchical adaptive compaction (HCA): tiered where writes dominate, leveled where
//! reads do, chosen per level from a cost model and the keyspace's observed mix.
//!
//! Shape: level 0 as in the other policies; every level between the base and the last
//! may hold up to `K_i` runs (its capacity computed from the last level, size ratio T,
//! as in [`shape`](crate::shape)); the last level holds one run — *lazy leveling*: most
//! data sits in the last level, so keeping it a single run bounds space amplification
//! and point-read cost, while the small upper levels, tiered, absorb writes cheaply.
//!
//! Mechanics: a merge arriving at an upper level joins its newest run while that run is
//! below its share (`capacity / K_i`) or the level already holds `K_i` runs, and
//! otherwise starts a new run; a level at capacity drains whole into the next. A level
//! with `K_i = 1` over another single-run level compacts table by table, exactly like
//! [`Leveled`](crate::Leveled), so HCA with every `K_i = 1` *is* leveled compaction.
//! Tables that overlap nothing below are moved, not rewritten, so time-ordered appends
//! reach the last level without a rewrite.
//!
//! Choice of `K_i`: [`Hca::observe`] evaluates the [`CostModel`] for the observed mix and
//! each level's ratio (`T`, or for the base level its capacity over a level-0 merge),
//! and adopts a new shape only if it is cheaper by more than `margin` of the current
//! shape's cost, for `confirmations` windows in a row (hysteresis), so the shape does not
//! flap between neighbours. Lowering `K_i` makes the level's surplus runs merge at once;
//! raising it costs nothing.

use crate::cost::CostModel;
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::mix::WorkloadMix;
use crate::planner::{self, Plan};
use crate::policy::{CompactionPolicy, Debt, LevelLimit};
use crate::shape::LevelTargets;
use crate::tree::TreeDesc;

/// When [`Hca`] changes its shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hysteresis {
    /// Windows with fewer operations than this are ignored. Default 10 000.
    pub min_window_ops: u64,
    /// A new shape must cut the modelled cost of the upper levels by more than this
    /// fraction. Default 0.1.
    pub margin: f64,
    /// ... in this many consecutive observations (the same new shape each time).
    /// Default 3; 1 adopts at once.
    pub confirmations: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            min_window_ops: 10_000,
            margin: 0.1,
            confirmations: 3,
        }
    }
}

/// Options of [`Hca`].
#[derive(Debug, Clone, PartialEq)]
pub struct HcaConfig {
    /// Size ratio between adjacent levels. Default 10; at least 2.
    pub size_ratio: u64,
    /// Smallest capacity of the base level. Default 64 MiB (the engine's
    /// `base_level_bytes`).
    pub base_level_bytes: u64,
    /// Level-0 runs that trigger a merge. Default 4; at least 1.
    pub l0_trigger: usize,
    /// Most level-0 runs the model may let gather while the tree is shallow (its base
    /// level is its last level, so no upper level can tier): level 0 itself then
    /// holds up to `K_0` runs, between `l0_trigger` and this. Default 8 (the engine
    /// passes `l0_slowdown_trigger − l0_compaction_trigger`, leaving room for the
    /// flushes that land while level 0 merges down); at least `l0_trigger`.
    pub max_l0_runs: usize,
    /// Level 0 tiers only in an *append-only* keyspace: one whose merges dropped less
    /// than this fraction of the bytes they read (no overwritten or deleted versions
    /// to reclaim, so merging buys no space, only read cost). Default 0.02
    /// ([`APPEND_ONLY_RECLAIM`](crate::mix::APPEND_ONLY_RECLAIM)).
    pub append_only_reclaim: f64,
    /// Largest `K_i` the model may choose. Default 10 (= the default size ratio: more
    /// runs than merges per fill buys nothing).
    pub max_runs_per_level: usize,
    /// `K_i` before the first observation. Default 3 (about the square root of T,
    /// between leveling and tiering).
    pub initial_runs_per_level: usize,
    /// The cost model.
    pub cost: CostModel,
    /// When to change shape.
    pub hysteresis: Hysteresis,
}

impl Default for HcaConfig {
    fn default() -> Self {
        HcaConfig {
            size_ratio: 10,
            base_level_bytes: 64 << 20,
            l0_trigger: 4,
            max_l0_runs: 8,
            append_only_reclaim: crate::mix::APPEND_ONLY_RECLAIM,
            max_runs_per_level: 10,
            initial_runs_per_level: 3,
            cost: CostModel::default(),
            hysteresis: Hysteresis::default(),
        }
    }
}

impl HcaConfig {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.size_ratio < 2 {
            return Err(Error::config("HcaConfig::size_ratio", "must be at least 2"));
        }
        if self.base_level_bytes == 0 {
            return Err(Error::config(
                "HcaConfig::base_level_bytes",
                "must be positive",
            ));
        }
        if self.l0_trigger == 0 {
            return Err(Error::config("HcaConfig::l0_trigger", "must be at least 1"));
        }
        if self.max_l0_runs < self.l0_trigger {
            return Err(Error::config(
                "HcaConfig::max_l0_runs",
                "must be at least l0_trigger",
            ));
        }
        let r = self.append_only_reclaim;
        if !(r.is_finite() && (0.0..=1.0).contains(&r)) {
            return Err(Error::config(
                "HcaConfig::append_only_reclaim",
                "must be between 0 and 1",
            ));
        }
        if self.max_runs_per_level == 0 {
            return Err(Error::config(
                "HcaConfig::max_runs_per_level",
                "must be at least 1",
            ));
        }
        if !(1..=self.max_runs_per_level).contains(&self.initial_runs_per_level) {
            return Err(Error::config(
                "HcaConfig::initial_runs_per_level",
                "must be between 1 and max_runs_per_level",
            ));
        }
        if self.cost.page_bytes == 0 {
            return Err(Error::config(
                "HcaConfig::cost.page_bytes",
                "must be positive",
            ));
        }
        let p = self.cost.bloom_false_positive_rate;
        if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
            return Err(Error::config(
                "HcaConfig::cost.bloom_false_positive_rate",
                "must be between 0 and 1",
            ));
        }
        let m = self.hysteresis.margin;
        if !(m.is_finite() && m >= 0.0) {
            return Err(Error::config(
                "HcaConfig::hysteresis.margin",
                "must be a non-negative number",
            ));
        }
        if self.hysteresis.confirmations == 0 {
            return Err(Error::config(
                "HcaConfig::hysteresis.confirmations",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The HCA policy. Its adaptive state (the current `K_i`) lives in memory: after a
/// restart it begins again from `initial_runs_per_level`.
#[derive(Debug, Clone)]
pub struct Hca {
    config: HcaConfig,
    /// `K_i` by level (index 0 and the last level unused).
    runs: Vec<usize>,
    /// A proposed shape and how many observations in a row proposed it.
    pending: Option<(Vec<usize>, u32)>,
    /// `K_0`: level-0 runs that trigger a merge (`l0_trigger` unless the tree is
    /// shallow and writes dominate).
    l0_runs: usize,
    /// A proposed `K_0` and how many observations in a row proposed it.
    l0_pending: Option<(usize, u32)>,
    /// The fraction of what merges read that they dropped, as last observed (kept
    /// while no merge runs: an append-only keyspace stays one between merges).
    merge_reclaim: Option<f64>,
    /// Bytes of a typical level-0 table, last seen.
    flush_bytes: Option<u64>,
    changes: u64,
}

impl Hca {
    /// An HCA policy with `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `config` does not [`validate`](HcaConfig::validate).
    pub fn new(config: HcaConfig) -> Result<Self> {
        config.validate()?;
        Ok(Hca {
            l0_runs: config.l0_trigger,
            l0_pending: None,
            merge_reclaim: None,
            config,
            runs: Vec::new(),
            pending: None,
            flush_bytes: None,
            changes: 0,
        })
    }

    /// The options.
    pub fn config(&self) -> &HcaConfig {
        &self.config
    }

    /// `K_i`: the runs `level` may hold now (for the levels between the base and the
    /// last; level 0 and the last level are bounded otherwise).
    pub fn runs_at(&self, level: usize) -> usize {
        self.runs
            .get(level)
            .copied()
            .unwrap_or(self.config.initial_runs_per_level)
    }

    /// `K_0`: the level-0 runs that trigger a merge now.
    pub fn l0_runs(&self) -> usize {
        self.l0_runs
    }

    /// Whether the keyspace's merges have been seen to drop almost nothing (less than
    /// `append_only_reclaim` of what they read). Unknown until a merge has run.
    pub fn append_only(&self) -> bool {
        self.merge_reclaim
            .is_some_and(|r| r < self.config.append_only_reclaim)
    }

    /// How many times the shape has changed.
    pub fn shape_changes(&self) -> u64 {
        self.changes
    }

    /// Each level's ratio of capacity to what one merge brings into it: T, except for the
    /// base level, fed by level-0 merges of about `l0_trigger` flushes.
    fn ratios(&self, tree: &TreeDesc, targets: &LevelTargets) -> Vec<f64> {
        let n = tree.levels.len();
        let t = self.config.size_ratio as f64;
        let mut ratios = vec![t; n];
        let last = n.saturating_sub(1);
        let b = targets.base_level;
        if (1..last).contains(&b) {
            let flush = l0_table_bytes(tree).or(self.flush_bytes);
            if let Some(f) = flush.filter(|f| *f > 0) {
                let arrival = f.saturating_mul(self.config.l0_trigger as u64) as f64;
                ratios[b] = (targets.capacity_of(b) as f64 / arrival).max(1.0);
            }
        }
        ratios
    }

    fn plan(&self, tree: &TreeDesc) -> Plan {
        let targets =
            LevelTargets::compute(tree, self.config.size_ratio, self.config.base_level_bytes);
        let n = tree.levels.len();
        let last = n.saturating_sub(1);
        let k = |i: usize| self.runs_at(i).max(1);
        // `K_0` counts runs; stalls count level-0 tables: when a flush makes several
        // tables, fewer runs fit under `max_l0_runs` tables.
        let l0 = tree.levels.first();
        let tables_per_run = l0
            .filter(|l| !l.runs.is_empty())
            .map_or(1, |l| l.table_count().div_ceil(l.runs.len()).max(1));
        let k0 = self
            .l0_runs
            .min(self.config.max_l0_runs / tables_per_run)
            .max(self.config.l0_trigger);
        // No byte bound beyond the run count: level 0 tiers only in an append-only
        // keyspace, whose level-0 runs hold no versions a merge would drop, so holding
        // them costs reads, not space.
        let limits = targets.limits(n, k0, 1, k);
        Plan {
            run_share: (0..n)
                .map(|i| targets.capacity_of(i) / k(i) as u64)
                .collect(),
            leveled: (0..n).map(|i| i > 0 && (i == last || k(i) == 1)).collect(),
            targets,
            limits,
            join_when_full: true,
        }
    }
}

impl Hca {
    /// Chooses `K_0`. In a shallow tree every level-0 merge rewrites the last level,
    /// and no upper level can absorb writes, so level 0 is the level that tiers when
    /// `may_tier` (the tree is shallow and the keyspace append-only): its capacity is
    /// `max_l0_runs` flushes and the model picks its runs as for an upper level of
    /// that ratio (never fewer than `l0_trigger`); raised at once, lowered with the
    /// same hysteresis as the upper levels. Otherwise (a deeper tree tiers its upper
    /// levels; a keyspace with overwrites gains space by merging) `K_0` is
    /// `l0_trigger` at once.
    fn observe_l0(&mut self, mix: &WorkloadMix, may_tier: bool) {
        let trigger = self.config.l0_trigger;
        if !may_tier {
            self.l0_runs = trigger;
            self.l0_pending = None;
            return;
        }
        let t = self.config.max_l0_runs as f64;
        let model = &self.config.cost;
        let proposal = model
            .best_runs(t, self.config.max_l0_runs, mix)
            .max(trigger);
        let (current, proposed) = (
            model.level_cost(t, self.l0_runs, mix),
            model.level_cost(t, proposal, mix),
        );
        if proposal == self.l0_runs || current - proposed <= self.config.hysteresis.margin * current
        {
            self.l0_pending = None;
            return;
        }
        // Raising `K_0` rewrites nothing (level 0 just waits longer), so it is taken
        // at once: a fill must not merge level 0 while the policy is still confirming.
        // Lowering it merges the surplus, so it waits for the confirmations.
        if proposal > self.l0_runs {
            self.l0_runs = proposal;
            self.l0_pending = None;
            self.changes += 1;
            return;
        }
        let needed = self.config.hysteresis.confirmations;
        if let Some(k0) = confirm(&mut self.l0_pending, proposal, needed) {
            self.l0_runs = k0;
            self.changes += 1;
        }
    }
}

/// Hysteresis: counts `proposal` in `pending` (how many observations in a row proposed
/// it) and returns it once `needed` in a row have; a different proposal starts the
/// count again.
fn confirm<T: PartialEq>(pending: &mut Option<(T, u32)>, proposal: T, needed: u32) -> Option<T> {
    let seen = match pending.take() {
        Some((p, c)) if p == proposal => c + 1,
        _ => 1,
    };
    if seen >= needed {
        Some(proposal)
    } else {
        *pending = Some((proposal, seen));
        None
    }
}

/// Average bytes of a level-0 table, if level 0 holds any.
fn l0_table_bytes(tree: &TreeDesc) -> Option<u64> {
    let l0 = tree.levels.first()?;
    let count = l0.table_count() as u64;
    (count > 0).then(|| l0.bytes() / count)
}

impl CompactionPolicy for Hca {
    fn name(&self) -> &'static str {
        "hca"
    }

    fn observe(&mut self, mix: &WorkloadMix, tree: &TreeDesc) {
        if let Some(f) = l0_table_bytes(tree) {
            self.flush_bytes = Some(f);
        }
        if let Some(r) = mix.merge_reclaim() {
            self.merge_reclaim = Some(r);
        }
        let n = tree.levels.len();
        if n < 3 || mix.total_ops() < self.config.hysteresis.min_window_ops {
            return;
        }
        let last = n - 1;
        if self.runs.len() < n {
            self.runs.resize(n, self.config.initial_runs_per_level);
        }
        let targets =
            LevelTargets::compute(tree, self.config.size_ratio, self.config.base_level_bytes);
        let shallow = targets.base_level >= last;
        self.observe_l0(mix, shallow && self.append_only());
        let ratios = self.ratios(tree, &targets);
        let model = &self.config.cost;
        let mut proposal = self.runs.clone();
        for i in 1..last {
            proposal[i] = model.best_runs(ratios[i], self.config.max_runs_per_level, mix);
        }
        // Levels above the base hold nothing: their K changes for free.
        let base = targets.base_level.clamp(1, last);
        self.runs[1..base].copy_from_slice(&proposal[1..base]);
        let live = base..last;
        if proposal[live.clone()] == self.runs[live.clone()] {
            self.pending = None;
            return;
        }
        let cost = |ks: &[usize]| -> f64 {
            live.clone()
                .map(|i| model.level_cost(ratios[i], ks[i], mix))
                .sum()
        };
        let (current, proposed) = (cost(&self.runs), cost(&proposal));
        if current - proposed <= self.config.hysteresis.margin * current {
            self.pending = None;
            return;
        }
        let needed = self.config.hysteresis.confirmations;
        if let Some(runs) = confirm(&mut self.pending, proposal, needed) {
            self.runs = runs;
            self.changes += 1;
        }
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
        let ks: Vec<String> = if self.runs.len() > 2 {
            self.runs[1..self.runs.len() - 1]
                .iter()
                .map(usize::to_string)
                .collect()
        } else {
            vec![format!("{}*", self.config.initial_runs_per_level)]
        };
        format!(
            "hca T={} K0={} K(L1..)=[{}] last=1 changes={}",
            self.config.size_ratio,
            self.l0_runs,
            ks.join(","),
            self.changes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{validate, Move, Placement, Reason};
    use crate::tree::tests::{t, tree};
    use crate::tree::{TableDesc, TableId, TableRef};

    fn config(confirmations: u32) -> HcaConfig {
        HcaConfig {
            base_level_bytes: 100,
            hysteresis: Hysteresis {
                min_window_ops: 100,
                margin: 0.1,
                confirmations,
            },
            ..HcaConfig::default()
        }
    }

    /// Five levels, last 1 000 000 bytes: base is L1 (capacities 1e3, 1e4, 1e5).
    fn deep() -> TreeDesc {
        tree(vec![
            vec![],
            vec![],
            vec![],
            vec![],
            vec![vec![t(1, 0, 999, 1_000_000)]],
        ])
    }

    fn mix(writes: u64, reads: u64) -> WorkloadMix {
        WorkloadMix {
            writes,
            write_bytes: writes * 128,
            point_reads: reads,
            ..WorkloadMix::default()
        }
    }

    #[test]
    fn config_is_checked() {
        let bad = |f: fn(&mut HcaConfig)| {
            let mut c = HcaConfig::default();
            f(&mut c);
            Hca::new(c).is_err()
        };
        assert!(bad(|c| c.size_ratio = 1));
        assert!(bad(|c| c.initial_runs_per_level = 11));
        assert!(bad(|c| c.initial_runs_per_level = 0));
        assert!(bad(|c| c.cost.bloom_false_positive_rate = 2.0));
        assert!(bad(|c| c.hysteresis.margin = f64::NAN));
        assert!(bad(|c| c.hysteresis.confirmations = 0));
        assert!(bad(|c| c.max_l0_runs = 3));
        assert!(bad(|c| c.append_only_reclaim = -0.1));
        assert!(bad(|c| c.append_only_reclaim = f64::NAN));
        assert!(!bad(|_| {}));
    }

    #[test]
    fn writes_drift_toward_tiering_and_reads_toward_leveling() {
        let tr = deep();
        let mut p = Hca::new(config(1)).unwrap();
        assert_eq!(p.runs_at(2), 3);
        p.observe(&mix(950, 50), &tr);
        assert_eq!((p.runs_at(1), p.runs_at(2), p.runs_at(3)), (10, 10, 10));
        p.observe(&mix(50, 950), &tr);
        assert_eq!((p.runs_at(1), p.runs_at(2), p.runs_at(3)), (1, 1, 1));
        assert_eq!(p.shape_changes(), 2);
        // A window too small to judge changes nothing.
        p.observe(&mix(99, 0), &tr);
        assert_eq!(p.runs_at(2), 1);
    }

    /// Three levels, the last holding 100 bytes: its base level is the last level.
    /// Level 0 holds `runs` runs of `bytes` each.
    fn shallow(runs: u64, bytes: u64) -> TreeDesc {
        let l0 = (0..runs).map(|i| vec![t(10 + i, 0, 99, bytes)]).collect();
        tree(vec![l0, vec![], vec![vec![t(1, 0, 99, 100)]]])
    }

    /// `mix(writes, reads)` with merges that read 100 MiB and dropped `percent` of it.
    fn merged(writes: u64, reads: u64, percent: u64) -> WorkloadMix {
        WorkloadMix {
            merge_input_bytes: 100 << 20,
            merge_output_bytes: (100 << 20) / 100 * (100 - percent),
            ..mix(writes, reads)
        }
    }

    #[test]
    fn an_append_only_shallow_tree_tiers_level_0_under_writes() {
        let mut p = Hca::new(config(1)).unwrap();
        assert_eq!(p.l0_runs(), 4);
        assert!(
            !matches!(p.decide(&shallow(5, 10)), Decision::Nothing),
            "leveled at first"
        );
        // No merge seen yet: nothing says the keyspace is append-only.
        p.observe(&mix(1000, 0), &shallow(5, 10));
        assert_eq!(p.l0_runs(), 4, "{}", p.summary());
        // Its merges drop nothing: level 0 gathers runs.
        p.observe(&merged(1000, 0, 0), &shallow(5, 10));
        assert!(p.append_only());
        assert_eq!(
            p.l0_runs(),
            8,
            "pure appends gather level 0: {}",
            p.summary()
        );
        assert_eq!(p.decide(&shallow(5, 10)), Decision::Nothing);
        assert_eq!(
            p.decide(&shallow(7, 90)),
            Decision::Nothing,
            "no byte bound: appended runs hold nothing to reclaim"
        );
        assert!(
            !matches!(p.decide(&shallow(8, 5)), Decision::Nothing),
            "K_0 runs merge"
        );
        // A window without merges keeps what the last merges showed.
        p.observe(&mix(1000, 0), &shallow(5, 10));
        assert_eq!(p.l0_runs(), 8);
        // Reads bring level 0 back to its trigger.
        p.observe(&mix(0, 1000), &shallow(5, 10));
        assert_eq!(p.l0_runs(), 4);
        assert!(!matches!(p.decide(&shallow(5, 10)), Decision::Nothing));
    }

    #[test]
    fn a_keyspace_whose_merges_reclaim_space_keeps_level_0_at_its_trigger() {
        let mut p = Hca::new(config(1)).unwrap();
        p.observe(&merged(1000, 0, 0), &shallow(5, 10));
        assert_eq!(p.l0_runs(), 8);
        // Overwrites arrive: merges drop 20% of what they read.
        p.observe(&merged(1000, 0, 20), &shallow(5, 10));
        assert!(!p.append_only());
        assert_eq!(p.l0_runs(), 4, "{}", p.summary());
        assert!(!matches!(p.decide(&shallow(5, 10)), Decision::Nothing));
    }

    #[test]
    fn level_0_tiers_only_while_no_upper_level_can() {
        let mut p = Hca::new(config(1)).unwrap();
        p.observe(&merged(1000, 0, 0), &shallow(5, 10));
        assert_eq!(p.l0_runs(), 8);
        p.observe(&merged(1000, 0, 0), &deep());
        assert_eq!(p.l0_runs(), 4, "a deep tree tiers its upper levels instead");
    }

    #[test]
    fn level_0_tiering_counts_tables_for_stalls() {
        let mut p = Hca::new(config(1)).unwrap();
        p.observe(&merged(1000, 0, 0), &shallow(5, 10));
        assert_eq!(p.l0_runs(), 8);
        // Three tables per run: 8 tables allow 2 runs, never fewer than the trigger.
        let l0: Vec<Vec<TableDesc>> = (0..4)
            .map(|i| {
                (0..3u16)
                    .map(|j| t(100 + i * 3 + u64::from(j), j * 30, j * 30 + 29, 3))
                    .collect()
            })
            .collect();
        let three_per_run = tree(vec![l0, vec![], vec![vec![t(1, 0, 99, 100)]]]);
        assert!(!matches!(p.decide(&three_per_run), Decision::Nothing));
    }

    #[test]
    fn hysteresis_needs_consecutive_confirmations() {
        let tr = deep();
        let mut p = Hca::new(config(3)).unwrap();
        p.observe(&mix(950, 50), &tr);
        p.observe(&mix(950, 50), &tr);
        p.observe(&mix(50, 950), &tr);
        p.observe(&mix(950, 50), &tr);
        p.observe(&mix(950, 50), &tr);
        assert_eq!((p.runs_at(2), p.shape_changes()), (3, 0));
        p.observe(&mix(950, 50), &tr);
        assert_eq!((p.runs_at(2), p.shape_changes()), (10, 1));
    }

    #[test]
    fn mixes_near_a_boundary_do_not_flap() {
        let tr = deep();
        let mut p = Hca::new(config(1)).unwrap();
        // Find two neighbouring mixes whose optimum differs by one run.
        let model = CostModel::default();
        let (mut a, mut b) = (None, None);
        for w in 1..1000u64 {
            let k1 = model.best_runs(10.0, 10, &mix(w, 1000 - w));
            let k2 = model.best_runs(10.0, 10, &mix(w + 1, 999 - w));
            if k1 >= 3 && k2 == k1 + 1 {
                a = Some(mix(w, 1000 - w));
                b = Some(mix(w + 1, 999 - w));
                break;
            }
        }
        let (a, b) = (a.unwrap(), b.unwrap());
        p.observe(&a, &tr);
        let settled = p.shape_changes();
        for _ in 0..20 {
            p.observe(&b, &tr);
            p.observe(&a, &tr);
        }
        assert_eq!(p.shape_changes(), settled, "flapped: {}", p.summary());
    }

    #[test]
    fn upper_levels_hold_several_runs_and_the_last_level_one() {
        let mut p = Hca::new(config(1)).unwrap();
        let tr = tree(vec![
            vec![],
            vec![],
            vec![vec![t(1, 0, 50, 1000)], vec![t(2, 0, 50, 1000)]],
            vec![vec![t(4, 0, 999, 5000)]],
            vec![vec![t(3, 0, 999, 1_000_000)]],
        ]);
        p.observe(&mix(950, 50), &tr);
        assert_eq!(p.runs_at(2), 10);
        // L2 (capacity 10 000) holds 2 runs of 1000: within K = 10.
        assert_eq!(p.decide(&tr), Decision::Nothing);
        let limits = p.limits(&tr);
        assert_eq!(limits[2].max_runs, 10);
        assert_eq!(limits[4].max_runs, 1);
        // Reads take over: K = 1, so L2 drains its two runs into L3's single run.
        p.observe(&mix(50, 950), &tr);
        let d = p.decide(&tr);
        let Decision::Merge(m) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (m.output_level, m.reason, m.inputs.len()),
            (3, Reason::Runs, 3)
        );
        assert_eq!(m.placement, Placement::Into(0));
        assert_eq!(validate(&tr, &d), Ok(()));
    }

    #[test]
    fn a_full_level_above_the_last_merges_into_its_single_run() {
        let mut p = Hca::new(config(1)).unwrap();
        let tr = tree(vec![
            vec![],
            vec![],
            vec![],
            vec![vec![t(1, 0, 500, 60_000)], vec![t(2, 0, 500, 50_000)]],
            vec![vec![t(3, 0, 300, 500_000), t(4, 301, 999, 500_000)]],
        ]);
        p.observe(&mix(950, 50), &tr);
        let d = p.decide(&tr);
        let Decision::Merge(m) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (m.output_level, m.placement, m.bottommost),
            (4, Placement::Into(0), true)
        );
        assert_eq!(
            m.inputs.len(),
            4,
            "both runs and every overlapping last-level table"
        );
        assert_eq!(validate(&tr, &d), Ok(()));
    }

    #[test]
    fn time_ordered_tables_are_moved_not_rewritten() {
        let p = Hca::new(HcaConfig {
            l0_trigger: 2,
            ..config(1)
        })
        .unwrap();
        let tr = tree(vec![
            vec![vec![t(6, 2000, 2999, 100)], vec![t(5, 1000, 1999, 100)]],
            vec![],
            vec![],
            vec![],
            vec![vec![t(3, 0, 999, 1_000_000)]],
        ]);
        let d = p.decide(&tr);
        assert_eq!(
            d,
            Decision::Move(Move {
                table: TableRef {
                    level: 0,
                    id: TableId(5)
                },
                to_level: 4,
                placement: Placement::Into(0),
            })
        );
    }
}
