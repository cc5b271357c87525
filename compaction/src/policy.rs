//! The interface between a policy and the engine.
//!
//! A policy is a planner: [`CompactionPolicy::decide`] is a pure function of the
//! policy's configuration, its adaptive state, and a [`TreeDesc`]. The only state that
//! changes is what [`CompactionPolicy::observe`] learns from the workload mix, so the
//! engine can call `decide` as often as it likes (to test whether work is due, to pick
//! the next job) without perturbing anything. Trade-off: an adaptive policy's state
//! lives in memory and restarts from its configured initial shape after a reopen; the
//! tree itself, which is durable, carries the shape it had.
//!
//! [`LevelLimit`]s say what shape the policy keeps the tree in: when `decide` returns
//! [`Decision::Nothing`] every level is within its limit. [`Debt`] estimates the work
//! outstanding, for write slowdowns and stops.

use std::fmt;

use crate::decision::Decision;
use crate::mix::WorkloadMix;
use crate::tree::TreeDesc;

/// A compaction policy: decides the next step for a tree.
///
/// Every method must be cheap enough to call on each flush and each finished
/// compaction (linear in the number of tables at most, plus binary searches), and must
/// not panic on any tree, valid or not; on a tree that fails
/// [`TreeDesc::check`] the decision may be invalid, so the engine checks trees it builds
/// in debug builds and can [`validate`](crate::validate) decisions before executing them.
pub trait CompactionPolicy: Send + Sync + fmt::Debug {
    /// A short name: `"leveled"`, `"tiered"`, `"hca"`.
    fn name(&self) -> &'static str;

    /// Learns from the keyspace's recent mix of operations, with the tree as it stands.
    /// Only adaptive policies use it; the default ignores it.
    fn observe(&mut self, mix: &WorkloadMix, tree: &TreeDesc) {
        let _ = (mix, tree);
    }

    /// The next step for `tree`: [`Decision::Nothing`] once every level is within its
    /// [`limits`](Self::limits). Executing the returned steps one after another, each on
    /// the tree the previous one left, reaches `Nothing` in a bounded number of steps.
    fn decide(&self, tree: &TreeDesc) -> Decision;

    /// The shape the policy keeps `tree` in, one limit per level.
    fn limits(&self, tree: &TreeDesc) -> Vec<LevelLimit>;

    /// How much compaction work `tree` owes.
    fn debt(&self, tree: &TreeDesc) -> Debt;

    /// A one-line description of the policy and its current shape, for logs.
    fn summary(&self) -> String {
        self.name().to_string()
    }
}

/// The bound a policy holds a level to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelLimit {
    /// Runs the level may hold; 0 means it should be empty.
    pub max_runs: usize,
    /// The level must hold fewer bytes than this (`u64::MAX`: no byte bound; 0 means it
    /// should be empty).
    pub max_bytes: u64,
}

/// A score that marks a level needing work as at least 1 without dividing by zero.
pub(crate) const URGENT: f64 = 1e9;

impl LevelLimit {
    /// No bound at all.
    pub const UNBOUNDED: LevelLimit = LevelLimit {
        max_runs: usize::MAX,
        max_bytes: u64::MAX,
    };

    /// Whether a level of `runs` runs and `bytes` bytes is within the limit.
    pub fn admits(&self, runs: usize, bytes: u64) -> bool {
        self.score(runs, bytes) < 1.0
    }

    /// How far over its limit the level is: below 1 within it, at least 1 when work is
    /// due (the larger, the more urgent).
    pub fn score(&self, runs: usize, bytes: u64) -> f64 {
        if runs == 0 {
            return 0.0;
        }
        let run_score = runs as f64 / (self.max_runs as f64 + 1.0);
        let byte_score = match self.max_bytes {
            0 => URGENT,
            u64::MAX => 0.0,
            max => bytes as f64 / max as f64,
        };
        run_score.max(byte_score)
    }
}

/// Compaction work a tree owes, for write backpressure.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Debt {
    /// Estimated bytes compaction must write to bring every level within its limit,
    /// cascading down the levels (in the spirit of RocksDB's
    /// `estimated_pending_compaction_bytes`). Slow writes down past a soft bound on it,
    /// stop them past a hard one.
    pub pending_bytes: u64,
    /// The most urgent level's score: at least 1 when a compaction is due.
    pub score: f64,
}

impl Debt {
    /// Whether some level is over its limit.
    pub fn is_due(&self) -> bool {
        self.score >= 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_mark_levels_over_their_limits() {
        let l0 = LevelLimit {
            max_runs: 3,
            max_bytes: u64::MAX,
        };
        assert!(l0.admits(3, 1 << 40));
        assert_eq!(l0.score(4, 0), 1.0);
        let sized = LevelLimit {
            max_runs: 1,
            max_bytes: 100,
        };
        assert!(sized.admits(1, 99));
        assert!(!sized.admits(1, 100));
        assert!(!sized.admits(2, 1));
        let empty = LevelLimit {
            max_runs: 0,
            max_bytes: 0,
        };
        assert!(empty.admits(0, 0));
        assert!(empty.score(1, 1) >= URGENT);
        assert!(LevelLimit::UNBOUNDED.admits(1000, u64::MAX - 1));
    }
}
