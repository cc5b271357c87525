//! Property tests on random valid trees: every policy's decision is valid for the tree,
//! `Nothing` means every level is within its limit, debt agrees with the decision, and
//! applying decisions one after another (with modelled merge outputs) always settles.
//!
//! `PROPTEST_CASES` raises the number of cases (default 256 per property).

use proptest::prelude::*;
use strata_compaction::{
    validate, CompactionPolicy, Decision, Hca, HcaConfig, Hysteresis, LevelDesc, Leveled,
    LeveledConfig, RunDesc, TableDesc, TableId, Tiered, TieredConfig, TreeDesc, WorkloadMix,
};

/// A run: sorted distinct keys paired into disjoint tables.
fn run_strategy() -> impl Strategy<Value = Vec<(u16, u16, u64, u64, u8)>> {
    (
        prop::collection::btree_set(any::<u16>(), 2..=10),
        prop::collection::vec((1u64..5_000, 1u64..500, 0u8..32), 5),
    )
        .prop_map(|(keys, attrs)| {
            let keys: Vec<u16> = keys.into_iter().collect();
            keys.chunks_exact(2)
                .zip(attrs)
                .map(|(pair, (size, entries, tomb))| (pair[0], pair[1], size, entries, tomb))
                .collect()
        })
}

fn tree_strategy() -> impl Strategy<Value = TreeDesc> {
    (2usize..=7)
        .prop_flat_map(|levels| {
            (
                prop::collection::vec(run_strategy().prop_map(|r| r[..1].to_vec()), 0..=6),
                prop::collection::vec(prop::collection::vec(run_strategy(), 0..=4), levels - 1),
            )
        })
        .prop_map(|(l0, deeper)| {
            let mut next = 1u64;
            // Deeper levels hold larger tables, as real trees do.
            let mut table =
                |level: u32, (lo, hi, size, entries, tomb): (u16, u16, u64, u64, u8)| {
                    let size = size * 3u64.pow(level);
                    let id = TableId(next);
                    next += 1;
                    TableDesc {
                        id,
                        size,
                        smallest: lo.to_be_bytes().to_vec(),
                        largest: hi.to_be_bytes().to_vec(),
                        min_seq: id.0,
                        max_seq: id.0 + 10,
                        entries,
                        // One table in 32 holds only tombstones.
                        tombstones: if tomb == 0 { entries } else { entries / 4 },
                    }
                };
            let mut levels = vec![LevelDesc {
                runs: l0
                    .into_iter()
                    .map(|r| RunDesc::new(r.into_iter().map(|t| table(0, t)).collect()))
                    .collect(),
            }];
            for (level, runs) in (1u32..).zip(deeper) {
                levels.push(LevelDesc {
                    runs: runs
                        .into_iter()
                        .map(|r| RunDesc::new(r.into_iter().map(|t| table(level, t)).collect()))
                        .collect(),
                });
            }
            TreeDesc { levels }
        })
}

/// The three policies at a scale where random trees need work, HCA in a shape chosen by
/// a random mix.
fn policies(
    ratio: u64,
    base: u64,
    l0: usize,
    space: f64,
    mix: WorkloadMix,
    tree: &TreeDesc,
) -> Vec<Box<dyn CompactionPolicy>> {
    let mut hca = Hca::new(HcaConfig {
        size_ratio: ratio,
        base_level_bytes: base,
        l0_trigger: l0,
        hysteresis: Hysteresis {
            min_window_ops: 0,
            margin: 0.0,
            confirmations: 1,
        },
        ..HcaConfig::default()
    })
    .unwrap();
    hca.observe(&mix, tree);
    vec![
        Box::new(
            Leveled::new(LeveledConfig {
                size_ratio: ratio,
                base_level_bytes: base,
                l0_trigger: l0,
            })
            .unwrap(),
        ),
        Box::new(
            Tiered::new(TieredConfig {
                runs_per_level: ratio as usize,
                base_level_bytes: base,
                l0_trigger: l0,
                max_space_amplification: space,
            })
            .unwrap(),
        ),
        Box::new(hca),
    ]
}

fn mix_strategy() -> impl Strategy<Value = WorkloadMix> {
    // Merges that dropped from nothing to all of what they read: append-only
    // keyspaces (level 0 tiers in shallow trees) and keyspaces with overwrites.
    (
        (1u64..1000, 0u64..1000, 0u64..100, 16u64..8192),
        (0u64..1 << 26, 0u64..=100),
    )
        .prop_map(|((w, r, s, b), (merged, kept_percent))| WorkloadMix {
            writes: w,
            write_bytes: w * b,
            point_reads: r,
            scans: s,
            merge_input_bytes: merged,
            merge_output_bytes: merged / 100 * kept_percent,
        })
}

/// What a merge of `inputs` writes, modelled without contents: one table over the
/// inputs' key range holding all their entries (tombstones dropped at the bottom).
fn modelled_output(tree: &TreeDesc, d: &Decision, next_id: &mut u64) -> Vec<TableDesc> {
    let Decision::Merge(m) = d else {
        return Vec::new();
    };
    let inputs: Vec<&TableDesc> = m.inputs.iter().filter_map(|r| tree.table(*r)).collect();
    let lo = inputs.iter().map(|t| t.smallest.clone()).min().unwrap();
    let hi = inputs.iter().map(|t| t.largest.clone()).max().unwrap();
    let entries: u64 = inputs.iter().map(|t| t.entries).sum();
    let tombstones: u64 = inputs.iter().map(|t| t.tombstones).sum();
    let size: u64 = inputs.iter().map(|t| t.size).sum();
    let (entries, tombstones) = if m.bottommost {
        (entries - tombstones, 0)
    } else {
        (entries, tombstones)
    };
    if entries == 0 {
        return Vec::new();
    }
    *next_id += 1;
    vec![TableDesc {
        id: TableId(*next_id),
        size: size.max(1),
        smallest: lo,
        largest: hi,
        min_seq: inputs.iter().map(|t| t.min_seq).min().unwrap(),
        max_seq: inputs.iter().map(|t| t.max_seq).max().unwrap(),
        entries,
        tombstones,
    }]
}

proptest! {
    #[test]
    fn decisions_are_valid_and_consistent_with_limits_and_debt(
        tree in tree_strategy(),
        ratio in 2u64..=10,
        base in 1u64..20_000,
        l0 in 1usize..=4,
        space in prop_oneof![Just(1.5), Just(1e9)],
        mix in mix_strategy(),
    ) {
        prop_assert_eq!(tree.check(), Ok(()));
        for p in policies(ratio, base, l0, space, mix, &tree) {
            let d = p.decide(&tree);
            prop_assert_eq!(validate(&tree, &d), Ok(()), "{}: {}", p.name(), d);
            let limits = p.limits(&tree);
            prop_assert_eq!(limits.len(), tree.levels.len());
            let within = limits
                .iter()
                .zip(&tree.levels)
                .all(|(l, level)| l.admits(level.runs.len(), level.bytes()));
            let debt = p.debt(&tree);
            if d == Decision::Nothing {
                prop_assert!(within, "{}: Nothing, yet a level is over its limit", p.name());
                prop_assert!(!debt.is_due(), "{}: Nothing, yet debt is due", p.name());
            }
            if debt.is_due() {
                prop_assert!(d != Decision::Nothing);
                prop_assert!(debt.pending_bytes > 0, "{}: due with no pending bytes", p.name());
            }
        }
    }

    #[test]
    fn applying_decisions_settles_within_limits(
        tree in tree_strategy(),
        ratio in 2u64..=10,
        base in 1u64..20_000,
        l0 in 1usize..=4,
        space in prop_oneof![Just(1.5), Just(1e9)],
        mix in mix_strategy(),
    ) {
        for p in policies(ratio, base, l0, space, mix, &tree) {
            let mut t = tree.clone();
            let mut next_id = 1_000_000;
            let mut steps = 0;
            loop {
                let d = p.decide(&t);
                if d == Decision::Nothing {
                    break;
                }
                let outputs = modelled_output(&t, &d, &mut next_id);
                let before = t.clone();
                if let Err(e) = t.apply(&d, outputs) {
                    prop_assert!(false, "{}: {} on {:?}: {}", p.name(), d, before, e);
                }
                prop_assert_eq!(t.check(), Ok(()));
                steps += 1;
                prop_assert!(steps < 2_000, "{} did not settle: {}", p.name(), d);
            }
            let limits = p.limits(&t);
            for (i, (l, level)) in limits.iter().zip(&t.levels).enumerate() {
                prop_assert!(
                    l.admits(level.runs.len(), level.bytes()),
                    "{}: L{} over {:?} after settling", p.name(), i, l
                );
            }
            // No data is lost on the way: only tombstones may go.
            let live = |t: &TreeDesc| -> u64 {
                t.levels.iter().flat_map(|l| l.tables()).map(|x| x.entries - x.tombstones).sum()
            };
            prop_assert_eq!(live(&t), live(&tree), "{}", p.name());
        }
    }
}

#[test]
fn an_empty_tree_needs_nothing_from_anyone() {
    let tree = TreeDesc::with_levels(7);
    for p in policies(10, 1000, 4, 1.5, WorkloadMix::default(), &tree) {
        assert_eq!(p.decide(&tree), Decision::Nothing, "{}", p.name());
        assert_eq!(p.debt(&tree).pending_bytes, 0);
    }
    let degenerate = TreeDesc::with_levels(1);
    for p in policies(10, 1000, 4, 1.5, WorkloadMix::default(), &degenerate) {
        assert_eq!(p.decide(&degenerate), Decision::Nothing, "{}", p.name());
    }
}
