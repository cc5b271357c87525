//! `strata-compaction`: compaction policies as pure planners, their cost model, and a
//! simulator that measures them without I/O.
//!
//! The engine describes a keyspace's tree ([`TreeDesc`]: levels of sorted runs of
//! tables with key ranges, sizes, sequence ranges and tombstone counts), asks its
//! [`CompactionPolicy`] for the next step ([`Decision`]: nothing, move a table, merge
//! tables into a level, drop whole tables), executes it, and asks again. Policies never
//! touch files; [`validate`] checks that a step keeps every read's answer.
//!
//! Three policies: [`Leveled`] (one run per level, size ratio T, level sizes computed
//! from the last level), [`Tiered`] (up to K runs per level, merged when full, with a
//! space-amplification bound), and [`Hca`] — hierarchical adaptive compaction, tiered
//! in the upper levels and leveled in the last, with the runs per level chosen from a
//! [`CostModel`] and the observed [`WorkloadMix`], with hysteresis. All three move
//! tables that overlap nothing below instead of rewriting them.
//!
//! [`sim`] replays synthetic workloads (uniform, zipfian, time-ordered) against a
//! policy and reports write, read and space amplification; the `compaction-sim` binary
//! prints them. `docs/compaction.md` explains the policies, the cost model, and how to
//! choose.

pub mod cost;
pub mod decision;
pub mod error;
pub mod hca;
pub mod leveled;
pub mod mix;
mod planner;
pub mod policy;
pub mod shape;
pub mod sim;
pub mod tiered;
pub mod tree;

pub use cost::CostModel;
pub use decision::{validate, Decision, Merge, Move, Placement, Reason};
pub use error::{Error, Result};
pub use hca::{Hca, HcaConfig, Hysteresis};
pub use leveled::{Leveled, LeveledConfig};
pub use mix::{MixWindow, WorkloadMix, APPEND_ONLY_RECLAIM};
pub use policy::{CompactionPolicy, Debt, LevelLimit};
pub use shape::LevelTargets;
pub use tiered::{Tiered, TieredConfig};
pub use tree::{LevelDesc, RunDesc, TableDesc, TableId, TableRef, TreeDesc};
