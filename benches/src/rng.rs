//! Deterministic random numbers for workloads: [`Rng`] (xoshiro256** seeded through
//! SplitMix64), a scrambled [`Zipfian`] generator and a cheap bijective
//! [`Permutation`].
//!
//! Every client thread owns its generator, seeded from `--seed`, the benchmark's
//! position in `--benchmarks` and the thread's index, so a run is repeatable and no two
//! threads (or two benchmarks, say `fillrandom` then `readrandom`) walk the same
//! sequence. None of this is cryptographic; it only has to be fast and well spread.

/// SplitMix64: a tiny generator used to expand one `u64` seed into well-mixed state.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// xoshiro256**: the workload generator.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose state is expanded from `seed` with SplitMix64.
    pub fn new(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        let mut s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        if s == [0; 4] {
            // The all-zero state is the one fixed point of xoshiro; SplitMix64 never
            // yields it in practice, but make it impossible.
            s[0] = 1;
        }
        Rng { s }
    }

    /// The generator of thread `thread` in stream `stream` (the benchmark's index) of a
    /// run seeded with `seed`.
    pub fn for_thread(seed: u64, stream: u64, thread: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        let a = sm.next_u64();
        let mut sm = SplitMix64::new(a ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let b = sm.next_u64();
        Rng::new(b ^ thread.wrapping_mul(0xA076_1D64_78BD_642F))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A number uniform in `0..n` (multiply-shift; `0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipfian ranks over `0..n` (Gray et al., "Quickly generating billion-record synthetic
/// databases", as in YCSB), scrambled by a bijection so the hot items are spread over
/// the key space instead of being its first keys.
///
/// Construction sums `n` terms (O(n)); sampling is O(1).
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

/// YCSB's default skew.
pub const ZIPFIAN_THETA: f64 = 0.99;

/// A large prime used to scramble ranks: `rank * P mod n` is a bijection on `0..n`
/// because `P` is prime and larger than any `n` we use.
const SCRAMBLE_PRIME: u128 = (1 << 61) - 1;

impl Zipfian {
    /// Ranks over `0..n` (`n >= 1`) with skew `theta` in `(0, 1)`.
    pub fn new(n: u64, theta: f64) -> Self {
        let n = n.max(1);
        let zeta = |count: u64| {
            (1..=count)
                .map(|i| 1.0 / (i as f64).powf(theta))
                .sum::<f64>()
        };
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let eta = if n > 1 {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        } else {
            0.0
        };
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    /// The size of the domain.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The sum `1/1^θ + … + 1/n^θ`; rank 0 is drawn with probability `1/zeta`.
    pub fn zeta(&self) -> f64 {
        self.zetan
    }

    /// A rank in `0..n`: rank 0 is the most frequent, then rank 1, and so on.
    pub fn next_rank(&self, rng: &mut Rng) -> u64 {
        if self.n == 1 {
            return 0;
        }
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }

    /// An item in `0..n`: a zipfian rank passed through [`Zipfian::scramble`].
    pub fn next(&self, rng: &mut Rng) -> u64 {
        self.scramble(self.next_rank(rng))
    }

    /// The item that has rank `rank`: a fixed bijection of `0..n`.
    pub fn scramble(&self, rank: u64) -> u64 {
        ((u128::from(rank) * SCRAMBLE_PRIME) % u128::from(self.n)) as u64
    }
}

/// A bijection of `0..n` that looks shuffled: `i ↦ (i · a + b) mod n` with `a` coprime
/// to `n`. Used to write every key exactly once in a scattered order without holding a
/// shuffled array of `n` numbers.
#[derive(Clone, Debug)]
pub struct Permutation {
    n: u64,
    mult: u64,
    add: u64,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Permutation {
    /// A permutation of `0..n` chosen with `rng`.
    pub fn new(n: u64, rng: &mut Rng) -> Self {
        let n = n.max(1);
        let mut mult = 1;
        if n > 2 {
            // Prefer multipliers far from 0 and n so neighbours land far apart, then walk
            // up to the next one coprime to n (n - 1 always is, so this ends).
            mult = (n / 4 + rng.below(n / 2)).clamp(1, n - 1);
            while gcd(mult, n) != 1 {
                mult += 1;
            }
        }
        Permutation {
            n,
            mult,
            add: rng.below(n),
        }
    }

    /// The image of `i` (taken modulo `n`).
    pub fn apply(&self, i: u64) -> u64 {
        ((u128::from(i % self.n) * u128::from(self.mult) + u128::from(self.add))
            % u128::from(self.n)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn rng_is_repeatable_and_streams_differ() {
        let a: Vec<u64> = (0..8)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..8)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let mut t0 = Rng::for_thread(7, 0, 0);
        let mut t1 = Rng::for_thread(7, 0, 1);
        let mut s1 = Rng::for_thread(7, 1, 0);
        let x = t0.next_u64();
        assert_ne!(x, t1.next_u64());
        assert_ne!(x, s1.next_u64());
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let v = r.below(10);
            assert!(v < 10);
            counts[v as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(r.below(0), 0);
        let f = r.next_f64();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn zipfian_head_has_probability_one_over_zeta() {
        let z = Zipfian::new(1000, ZIPFIAN_THETA);
        let mut r = Rng::new(3);
        let samples = 400_000;
        let mut counts = vec![0u32; 1000];
        for _ in 0..samples {
            counts[z.next_rank(&mut r) as usize] += 1;
        }
        let p0 = f64::from(counts[0]) / samples as f64;
        let expected = 1.0 / z.zeta();
        assert!(
            (p0 - expected).abs() < expected * 0.05,
            "p0={p0} expected={expected}"
        );
        // Frequencies fall with rank.
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
        // Rank 1 has probability 1/(2^θ zeta).
        let p1 = f64::from(counts[1]) / samples as f64;
        let e1 = 1.0 / (2f64.powf(ZIPFIAN_THETA) * z.zeta());
        assert!((p1 - e1).abs() < e1 * 0.08, "p1={p1} e1={e1}");
    }

    #[test]
    fn zipfian_scramble_is_a_bijection() {
        for n in [1u64, 2, 3, 1000, 1021] {
            let z = Zipfian::new(n, ZIPFIAN_THETA);
            let items: HashSet<u64> = (0..n).map(|r| z.scramble(r)).collect();
            assert_eq!(items.len() as u64, n);
            assert!(items.iter().all(|&i| i < n));
        }
        let z = Zipfian::new(1, ZIPFIAN_THETA);
        assert_eq!(z.next(&mut Rng::new(1)), 0);
    }

    #[test]
    fn permutation_is_a_bijection() {
        let mut r = Rng::new(11);
        for n in [1u64, 2, 3, 10, 1000, 4096] {
            let p = Permutation::new(n, &mut r);
            let items: HashSet<u64> = (0..n).map(|i| p.apply(i)).collect();
            assert_eq!(items.len() as u64, n, "n={n}");
        }
        let p = Permutation::new(1000, &mut r);
        let in_order = (0..999)
            .filter(|&i| p.apply(i) + 1 == p.apply(i + 1))
            .count();
        assert!(in_order < 10, "permutation barely shuffles: {in_order}");
    }
}
