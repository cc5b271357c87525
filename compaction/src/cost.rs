//! The cost model HCA chooses its runs-per-level with (spelled out in
//! `docs/compaction.md`).
//!
//! For an upper level whose capacity is `t` times what one merge brings into it, and
//! which may hold up to `k` runs, the model charges, per operation:
//!
//! ```text
//! write  ω_w · ((t/k + 1) / 2) / B      bytes rewritten per byte written, over B entries a page
//! read   ω_r · k · p                     bloom-filter false positives, one page each
//! scan   ω_s · k                         one seek per run
//! ```
//!
//! where `ω_w, ω_r, ω_s` are the observed fractions of writes, point reads and scans,
//! `B` is entries per page (page bytes over bytes per write) and `p` the bloom filter's
//! false-positive rate. The sum over levels is separable, so each level's best `k` is
//! found on its own: `k* ≈ sqrt(ω_w·t / (2·B·(ω_r·p + ω_s)))`, clamped to `[1, min(k_max,
//! ceil t)]` and compared at its integer neighbours.
//!
//! Trade-off: an analytic model with three inputs, not a fitted one. It ignores caching,
//! key skew (hot keys dedupe in upper levels, so deeper levels see fewer writes) and the
//! cost of compaction reads; it is only asked to rank shapes, and the simulator checks
//! that the ranking holds.

use crate::mix::WorkloadMix;

/// The cost model's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Bytes of one I/O page (the table block size). Default 4096.
    pub page_bytes: u64,
    /// Bloom filter false-positive rate per run probed. Default 0.01 (10 bits a key).
    pub bloom_false_positive_rate: f64,
    /// Bytes per write assumed before any write is observed. Default 128.
    pub default_write_bytes: u64,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            page_bytes: 4096,
            bloom_false_positive_rate: 0.01,
            default_write_bytes: 128,
        }
    }
}

impl CostModel {
    /// Entries per page, `B`, for the mix's observed bytes per write (at least 1).
    pub fn entries_per_page(&self, mix: &WorkloadMix) -> f64 {
        let per_write = mix
            .bytes_per_write()
            .unwrap_or(self.default_write_bytes.max(1) as f64);
        (self.page_bytes as f64 / per_write).max(1.0)
    }

    /// Times a byte is written at a level of ratio `t` holding up to `k` runs: it lands
    /// once and is rewritten, on average, half the `t/k` merges its run takes to fill
    /// (never less than once: `k` counts as at most `t`).
    pub fn write_factor(t: f64, k: usize) -> f64 {
        let t = t.max(1.0);
        (t / (k.max(1) as f64).min(t) + 1.0) / 2.0
    }

    /// Per-operation cost of one upper level of ratio `t` holding up to `k` runs. A level
    /// fills by size after `ceil t` arrivals, so it never holds more runs than that: `k`
    /// counts as `min(k, ceil t)`.
    pub fn level_cost(&self, t: f64, k: usize, mix: &WorkloadMix) -> f64 {
        let (w, r, s) = mix.fractions();
        let b = self.entries_per_page(mix);
        let t = t.max(1.0);
        let k = k.clamp(1, t.ceil() as usize);
        w * Self::write_factor(t, k) / b + (r * self.bloom_false_positive_rate + s) * k as f64
    }

    /// The `k` in `1..=min(k_max, ceil t)` with the least [`level_cost`](Self::level_cost)
    /// (the smaller on a tie). With no operations observed, 1.
    pub fn best_runs(&self, t: f64, k_max: usize, mix: &WorkloadMix) -> usize {
        let cap = k_max.min(t.max(1.0).ceil() as usize).max(1);
        let (w, r, s) = mix.fractions();
        let read = r * self.bloom_false_positive_rate + s;
        if w <= 0.0 {
            return 1;
        }
        if read <= 0.0 {
            return cap;
        }
        let b = self.entries_per_page(mix);
        let ideal = (w * t.max(1.0) / (2.0 * b * read)).sqrt();
        let lo = (ideal.floor() as usize).clamp(1, cap);
        let hi = (ideal.ceil() as usize).clamp(1, cap);
        if self.level_cost(t, hi, mix) < self.level_cost(t, lo, mix) {
            hi
        } else {
            lo
        }
    }

    /// Per-operation cost of a whole shape: a flush, level 0 holding about `l0_runs`
    /// runs on average, upper levels given as `(ratio, runs)`, and a leveled last level
    /// of ratio `last_ratio`. Point reads pay one page for the run holding the key plus
    /// false positives in the others; scans one seek per run.
    pub fn shape_cost(
        &self,
        l0_runs: f64,
        upper: &[(f64, usize)],
        last_ratio: f64,
        mix: &WorkloadMix,
    ) -> f64 {
        let (w, r, s) = mix.fractions();
        let b = self.entries_per_page(mix);
        let runs: f64 = l0_runs + upper.iter().map(|&(_, k)| k.max(1) as f64).sum::<f64>();
        let writes = 1.0
            + upper
                .iter()
                .map(|&(t, k)| Self::write_factor(t, k))
                .sum::<f64>()
            + Self::write_factor(last_ratio, 1);
        w * writes / b + r * (1.0 + runs * self.bloom_false_positive_rate) + s * (runs + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(writes: u64, reads: u64, scans: u64) -> WorkloadMix {
        WorkloadMix {
            writes,
            write_bytes: writes * 128,
            point_reads: reads,
            scans,
            ..WorkloadMix::default()
        }
    }

    #[test]
    fn write_factor_spans_tiering_to_leveling() {
        assert_eq!(CostModel::write_factor(10.0, 10), 1.0);
        assert_eq!(CostModel::write_factor(10.0, 1), 5.5);
        assert!(CostModel::write_factor(10.0, 3) > CostModel::write_factor(10.0, 4));
    }

    #[test]
    fn best_runs_follows_the_mix() {
        let m = CostModel::default();
        assert_eq!(
            m.best_runs(10.0, 10, &mix(100, 0, 0)),
            10,
            "pure writes tier"
        );
        assert_eq!(
            m.best_runs(10.0, 10, &mix(0, 100, 0)),
            1,
            "pure reads level"
        );
        assert_eq!(m.best_runs(10.0, 10, &mix(0, 0, 0)), 1);
        assert_eq!(m.best_runs(10.0, 10, &mix(90, 10, 0)), 10);
        assert_eq!(m.best_runs(10.0, 10, &mix(10, 90, 0)), 1);
        assert_eq!(
            m.best_runs(10.0, 10, &mix(50, 0, 50)),
            1,
            "scans punish runs"
        );
        let mid = m.best_runs(10.0, 10, &mix(50, 50, 0));
        assert!((2..10).contains(&mid), "{mid}");
        // More writes never asks for fewer runs.
        let mut last = 1;
        for w in (0..=100).step_by(5) {
            let k = m.best_runs(10.0, 10, &mix(w, 100 - w, 0));
            assert!(k >= last, "w={w}: {k} < {last}");
            last = k;
        }
        // A small ratio caps the runs: more runs than merges per fill buys nothing.
        assert_eq!(m.best_runs(1.5, 10, &mix(100, 0, 0)), 2);
        // Large values (few entries a page) make writes dearer, so more runs.
        let big = WorkloadMix {
            writes: 50,
            write_bytes: 50 * 4096,
            point_reads: 50,
            ..WorkloadMix::default()
        };
        assert!(m.best_runs(10.0, 10, &big) > mid);
    }

    #[test]
    fn best_runs_minimises_level_cost() {
        let m = CostModel::default();
        for (w, r, s) in [(70, 30, 0), (40, 55, 5), (95, 4, 1), (20, 80, 0)] {
            let x = mix(w, r, s);
            let k = m.best_runs(10.0, 10, &x);
            for other in 1..=10 {
                assert!(m.level_cost(10.0, k, &x) <= m.level_cost(10.0, other, &x) + 1e-12);
            }
        }
    }

    #[test]
    fn shape_cost_ranks_tiering_and_leveling_by_mix() {
        let m = CostModel::default();
        let tiered = [(10.0, 10), (10.0, 10)];
        let leveled = [(10.0, 1), (10.0, 1)];
        let w = mix(95, 5, 0);
        let r = mix(5, 95, 0);
        assert!(m.shape_cost(2.0, &tiered, 10.0, &w) < m.shape_cost(2.0, &leveled, 10.0, &w));
        assert!(m.shape_cost(2.0, &leveled, 10.0, &r) < m.shape_cost(2.0, &tiered, 10.0, &r));
    }
}
