//! Replaying random workloads, every policy keeps the tree within its limits after each
//! flush, and the tree never grows without bound: total runs stay under the sum of the
//! per-level run limits, and (without deletes) space stays within the policy's bound.
//!
//! `PROPTEST_CASES` sets the number of random workloads (default 24 per policy).

use proptest::prelude::*;
use strata_compaction::sim::{KeyDistribution, OpMix, Settled, SimConfig, Simulator, Workload};
use strata_compaction::Tiered;

fn workload_strategy() -> impl Strategy<Value = Workload> {
    (
        prop_oneof![
            Just(KeyDistribution::Uniform),
            Just(KeyDistribution::Zipfian { theta: 0.9 }),
            Just(KeyDistribution::Sequential),
            Just(KeyDistribution::Streams { streams: 50 }),
        ],
        500u64..20_000,
        5_000u64..40_000,
        (1u32..100, 0u32..100, 0u32..20),
        prop_oneof![Just(0u32), 1u32..40],
        any::<u64>(),
    )
        .prop_map(
            |(keys, key_space, writes, (w, r, s), deletes, seed)| Workload {
                name: "random".into(),
                keys,
                key_space,
                writes,
                mix: OpMix {
                    writes: w,
                    point_reads: r,
                    scans: s,
                },
                delete_percent: deletes,
                seed,
            },
        )
}

/// `PROPTEST_CASES`, or 24.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24)
}

fn config() -> SimConfig {
    SimConfig {
        flush_entries: 64,
        table_entries: 64,
        observe_every: 1,
        window_periods: 4,
        ..SimConfig::default()
    }
}

fn check(policy: &str, w: &Workload) -> Result<(), TestCaseError> {
    let cfg = config();
    let base = cfg.flush_bytes() * 4;
    let mut sim = Simulator::new(cfg.policy(policy).unwrap(), cfg.clone()).unwrap();
    let no_deletes = w.delete_percent == 0;
    let mut check = |s: &Settled<'_>| -> Result<(), String> {
        let limits = s.policy.limits(s.tree);
        let mut run_bound = 0usize;
        for (i, (l, level)) in limits.iter().zip(&s.tree.levels).enumerate() {
            if !l.admits(level.runs.len(), level.bytes()) {
                return Err(format!(
                    "L{i} over {l:?}: {} runs, {} bytes",
                    level.runs.len(),
                    level.bytes()
                ));
            }
            run_bound += l.max_runs;
        }
        if s.tree.total_runs() > run_bound {
            return Err(format!("{} runs > {run_bound}", s.tree.total_runs()));
        }
        if no_deletes && s.live_bytes > 0 {
            let total = s.tree.total_bytes();
            let l0 = s.tree.level_bytes(0);
            let bound = match s.policy.name() {
                // Last level one run (<= live), upper levels within capacities that sum to
                // at most 1/(T-1) of max(last, base), plus level 0.
                "leveled" | "hca" => s.live_bytes + s.live_bytes.max(base) / 9 + l0,
                // (total - oldest) / oldest <= 1.5 and the oldest run <= live.
                _ => {
                    if let Some(e) = Tiered::space_amplification_estimate(s.tree) {
                        if e > 1.5 {
                            return Err(format!("space estimate {e} past its bound"));
                        }
                    }
                    s.live_bytes * 5 / 2
                }
            };
            if total > bound {
                return Err(format!(
                    "{total} bytes for {} live bytes (bound {bound}) after {} flushes",
                    s.live_bytes, s.flushes
                ));
            }
        }
        Ok(())
    };
    match sim.run_checked(w, &mut check) {
        Ok(_) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("{policy}: {e}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn leveled_stays_within_bounds(w in workload_strategy()) {
        check("leveled", &w)?;
    }

    #[test]
    fn tiered_stays_within_bounds(w in workload_strategy()) {
        check("tiered", &w)?;
    }

    #[test]
    fn hca_stays_within_bounds(w in workload_strategy()) {
        check("hca", &w)?;
    }
}
