//! A log-bucketed latency histogram (the idea of HdrHistogram, without its options).
//!
//! Values are nanoseconds. Below 256 every value has its own bucket; above, each power
//! of two is cut into 128 equal buckets, so a bucket is never wider than 1/128 (0.8%)
//! of the values it holds, from 1 ns up to `u64::MAX`, in 7424 counters (58 KiB).
//! Percentiles interpolate linearly inside the bucket that holds them and are clamped to
//! the exact minimum and maximum, as LevelDB's `Histogram` does. Each client thread
//! fills its own histogram; they are merged when the benchmark ends.

use std::time::Duration;

/// Bits of mantissa kept per value: values below `2^SUB_BITS` are exact.
const SUB_BITS: u32 = 8;
/// Buckets per power of two above the exact range.
const HALF: u64 = 1 << (SUB_BITS - 1);
/// Total number of buckets: the exact range plus `HALF` per remaining power of two.
const BUCKETS: usize = ((64 - SUB_BITS as u64) * HALF + (1 << SUB_BITS)) as usize;

/// The percentiles printed on the `Percentiles:` line.
pub const REPORTED_PERCENTILES: [f64; 5] = [50.0, 75.0, 99.0, 99.9, 99.99];

/// A latency histogram in nanoseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < (1 << SUB_BITS) {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - (SUB_BITS - 1);
    let mantissa = v >> shift; // in [HALF, 2 * HALF)
    (u64::from(shift) * HALF + mantissa) as usize
}

/// `[lower, upper)` of bucket `idx`, as `f64` so the top bucket's bound cannot overflow.
fn bucket_bounds(idx: usize) -> (f64, f64) {
    let idx = idx as u64;
    if idx < (1 << SUB_BITS) {
        return (idx as f64, (idx + 1) as f64);
    }
    let shift = idx / HALF - 1;
    let mantissa = idx - shift * HALF;
    let scale = (shift as f64).exp2();
    (mantissa as f64 * scale, (mantissa + 1) as f64 * scale)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value in nanoseconds.
    pub fn record(&mut self, nanos: u64) {
        self.buckets[bucket_of(nanos)] += 1;
        self.count += 1;
        self.sum += u128::from(nanos);
        self.min = self.min.min(nanos);
        self.max = self.max.max(nanos);
    }

    /// Records one duration (saturating at `u64::MAX` nanoseconds).
    pub fn record_duration(&mut self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every value of `other` to `self`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest value recorded (0 when empty).
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    /// Largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the values (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value below which `p` percent of the values lie (0 ≤ p ≤ 100), in
    /// nanoseconds; 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let threshold = self.count as f64 * (p / 100.0);
        let mut cumulative = 0u64;
        for (idx, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let before = cumulative;
            cumulative += n;
            if cumulative as f64 >= threshold {
                let (lo, hi) = bucket_bounds(idx);
                let frac = ((threshold - before as f64) / n as f64).clamp(0.0, 1.0);
                let value = lo + (hi - lo) * frac;
                return value.clamp(self.min as f64, self.max as f64);
            }
        }
        self.max as f64
    }

    /// The line printed under a benchmark with `--histogram=1`, in microseconds:
    /// `Percentiles: P50: 1.20 P75: 1.90 P99: 5.30 P99.9: 20.10 P99.99: 80.00`.
    pub fn percentiles_line(&self) -> String {
        let mut line = String::from("Percentiles:");
        for p in REPORTED_PERCENTILES {
            line.push_str(&format!(" P{}: {:.2}", p, self.percentile(p) / 1000.0));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut prev_idx = 0;
        let mut v = 1u64;
        // Up to 2^52, where f64 still holds every integer exactly.
        while v < 1 << 51 {
            for x in [v, v + 1, v * 3 / 2] {
                let idx = bucket_of(x);
                let (lo, hi) = bucket_bounds(idx);
                assert!(
                    lo <= x as f64 && (x as f64) < hi,
                    "x={x} idx={idx} [{lo},{hi})"
                );
                assert!(
                    hi - lo <= (lo / HALF as f64).max(1.0),
                    "bucket too wide at {x}"
                );
            }
            let idx = bucket_of(v);
            assert!(idx >= prev_idx);
            prev_idx = idx;
            v = v * 2 + 1;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        // Adjacent buckets share a bound.
        for idx in 1..BUCKETS - 1 {
            assert_eq!(bucket_bounds(idx).1, bucket_bounds(idx + 1).0, "idx={idx}");
        }
    }

    #[test]
    fn uniform_distribution_percentiles() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (p, expected) in [
            (50.0, 50_000.0),
            (75.0, 75_000.0),
            (99.0, 99_000.0),
            (99.9, 99_900.0),
        ] {
            let got = h.percentile(p);
            assert!(
                (got - expected).abs() / expected < 0.01,
                "P{p}: {got} vs {expected}"
            );
        }
        assert_eq!(h.count(), 100_000);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 100_000);
        assert!((h.mean() - 50_000.5).abs() < 1e-6);
        assert_eq!(h.percentile(100.0), 100_000.0);
    }

    #[test]
    fn two_point_distribution_and_tail() {
        // 99% of values at 1 µs, 1% at 1 ms: P50 and P75 are 1 µs, P99.9 is 1 ms.
        let mut h = Histogram::new();
        for i in 0..100_000u64 {
            h.record(if i % 100 == 0 { 1_000_000 } else { 1_000 });
        }
        assert!((h.percentile(50.0) - 1_000.0).abs() < 10.0);
        assert!((h.percentile(75.0) - 1_000.0).abs() < 10.0);
        assert!((h.percentile(99.9) - 1_000_000.0).abs() < 10_000.0);
        assert_eq!(h.percentile(99.99), 1_000_000.0);
    }

    #[test]
    fn single_value_is_exact_and_merge_adds() {
        let mut a = Histogram::new();
        for _ in 0..10 {
            a.record(1234);
        }
        for p in REPORTED_PERCENTILES {
            assert_eq!(a.percentile(p), 1234.0);
        }
        let mut a = Histogram::new();
        for _ in 0..10 {
            a.record(1000);
        }
        let mut b = Histogram::new();
        b.record_duration(Duration::from_micros(50));
        a.merge(&b);
        assert_eq!(a.count(), 11);
        assert_eq!(a.max(), 50_000);
        assert_eq!(a.min(), 1000);
        assert_eq!(
            a.percentiles_line(),
            "Percentiles: P50: 1.00 P75: 1.00 P99: 50.00 P99.9: 50.00 P99.99: 50.00"
        );
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let h = Histogram::new();
        assert_eq!(h.percentile(50.0), 0.0);
        assert_eq!(h.min(), 0);
        assert_eq!(
            h.percentiles_line(),
            "Percentiles: P50: 0.00 P75: 0.00 P99: 0.00 P99.9: 0.00 P99.99: 0.00"
        );
    }
}
