//! `strata-bench`: benchmark harnesses for Strata.
//!
//! Criterion micro-benchmarks live in `benches/benches/` (`cargo bench -p
//! strata-bench`). The `db_bench` tool arrives with the engine.
