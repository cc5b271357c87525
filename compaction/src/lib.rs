//! `strata-compaction`: compaction policies as pure planners.
//!
//! **Not built yet.** This crate will describe an LSM tree without any I/O and hold the
//! leveled, tiered and hierarchical adaptive (HCA) policies, their cost model and a
//! simulator. Until the compaction issue lands it exports nothing.
