//! Synthetic workloads for the simulator: which keys are written and read, in what mix.
//!
//! Keys are `u64`s (encoded big-endian, so byte order is numeric order). Uniform keys
//! overwrite a fixed key space evenly; zipfian keys (YCSB's generator, ranks scrambled
//! over the key space so hot keys are not neighbours) overwrite a few keys often;
//! sequential keys only ever grow (time-ordered appends, never overwritten); streams are
//! many interleaved time-ordered streams (`agent_id / timestamp`: each stream appends,
//! but every memtable holds a slice of all of them). Reads use the write distribution
//! (appends: uniform over the keys written so far). Everything is deterministic for a
//! given seed.

use crate::error::{Error, Result};

/// Which keys a workload writes.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum KeyDistribution {
    /// Uniform over `0..key_space`.
    Uniform,
    /// Zipfian over `0..key_space` with skew `theta` in `(0, 1)` (0.99 is YCSB's).
    Zipfian {
        /// The skew.
        theta: f64,
    },
    /// `0, 1, 2, ...`: time-ordered appends.
    Sequential,
    /// `streams` interleaved appends: key `stream << 32 | n` for the stream's `n`-th
    /// write, the stream chosen uniformly (agent event logs).
    Streams {
        /// Number of streams (at least 1).
        streams: u32,
    },
}

/// Relative weights of operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpMix {
    /// Writes (at least 1).
    pub writes: u32,
    /// Point reads.
    pub point_reads: u32,
    /// Range scans.
    pub scans: u32,
}

/// A workload: how many writes, to which keys, and the reads and scans that go with
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Name for reports.
    pub name: String,
    /// Key distribution.
    pub keys: KeyDistribution,
    /// Distinct keys (not used by `Sequential` and `Streams`).
    pub key_space: u64,
    /// Writes to replay.
    pub writes: u64,
    /// The mix the policy observes (reads do not change the tree, so the simulator
    /// samples their cost instead of performing every one).
    pub mix: OpMix,
    /// Percent of writes that are deletes (sequential: of a random earlier key).
    pub delete_percent: u32,
    /// Seed of the generator.
    pub seed: u64,
}

impl Workload {
    /// Uniform overwrites, 90% writes and 10% point reads.
    pub fn write_heavy_uniform(key_space: u64, writes: u64) -> Self {
        Workload {
            name: "write-heavy uniform".into(),
            keys: KeyDistribution::Uniform,
            key_space,
            writes,
            mix: OpMix {
                writes: 90,
                point_reads: 10,
                scans: 0,
            },
            delete_percent: 0,
            seed: 1,
        }
    }

    /// Uniform overwrites, 10% writes and 90% point reads.
    pub fn read_heavy_uniform(key_space: u64, writes: u64) -> Self {
        Workload {
            name: "read-heavy uniform".into(),
            mix: OpMix {
                writes: 10,
                point_reads: 90,
                scans: 0,
            },
            ..Self::write_heavy_uniform(key_space, writes)
        }
    }

    /// Zipfian (theta 0.99) overwrites, half writes and half point reads.
    pub fn zipfian(key_space: u64, writes: u64) -> Self {
        Workload {
            name: "zipfian 50/50".into(),
            keys: KeyDistribution::Zipfian { theta: 0.99 },
            mix: OpMix {
                writes: 50,
                point_reads: 50,
                scans: 0,
            },
            ..Self::write_heavy_uniform(key_space, writes)
        }
    }

    /// Time-ordered appends: 90% writes, 5% point reads, 5% scans.
    pub fn time_ordered(writes: u64) -> Self {
        Workload {
            name: "time-ordered appends".into(),
            keys: KeyDistribution::Sequential,
            key_space: 0,
            writes,
            mix: OpMix {
                writes: 90,
                point_reads: 5,
                scans: 5,
            },
            delete_percent: 0,
            seed: 1,
        }
    }

    /// Interleaved appends of `streams` streams (agents): 90% writes, 5% point reads,
    /// 5% scans.
    pub fn agent_streams(streams: u32, writes: u64) -> Self {
        Workload {
            name: format!("{streams} agent streams"),
            keys: KeyDistribution::Streams { streams },
            ..Self::time_ordered(writes)
        }
    }

    /// Interleaved appends of `streams` streams and nothing else, as `db_bench
    /// agentlog` writes them: the event log of a keyspace that is written now and read
    /// later.
    pub fn agent_log(streams: u32, writes: u64) -> Self {
        let mut w = Self::agent_streams(streams, writes);
        w.name = format!("{streams} agent logs");
        w.mix.point_reads = 0;
        w.mix.scans = 0;
        w
    }

    /// Checks the workload.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.mix.writes == 0 {
            return Err(Error::config("Workload::mix.writes", "must be at least 1"));
        }
        if self.delete_percent > 100 {
            return Err(Error::config(
                "Workload::delete_percent",
                "must be at most 100",
            ));
        }
        match self.keys {
            KeyDistribution::Sequential => {}
            KeyDistribution::Streams { streams } => {
                if streams == 0 {
                    return Err(Error::config("Workload::keys.streams", "must be positive"));
                }
            }
            KeyDistribution::Uniform if self.key_space == 0 => {
                return Err(Error::config("Workload::key_space", "must be positive"));
            }
            KeyDistribution::Zipfian { theta } => {
                if self.key_space < 2 {
                    return Err(Error::config("Workload::key_space", "must be at least 2"));
                }
                if !(theta > 0.0 && theta < 1.0) {
                    return Err(Error::config(
                        "Workload::keys.theta",
                        "must be between 0 and 1 (exclusive)",
                    ));
                }
            }
            KeyDistribution::Uniform => {}
        }
        Ok(())
    }
}

/// SplitMix64: small, fast, good enough for workload generation.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// YCSB's zipfian generator over ranks `0..n`.
#[derive(Debug, Clone)]
struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    fn new(n: u64, theta: f64) -> Self {
        let zetan: f64 = (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum();
        let zeta2 = 1.0 + 0.5f64.powf(theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }
}

/// Produces the keys of a workload.
#[derive(Debug, Clone)]
pub(crate) struct KeyGen {
    keys: KeyDistribution,
    key_space: u64,
    next: u64,
    zipf: Option<Zipf>,
    /// Writes so far per stream.
    streams: Vec<u64>,
}

impl KeyGen {
    pub fn new(w: &Workload) -> Result<Self> {
        w.validate()?;
        let zipf = match w.keys {
            KeyDistribution::Zipfian { theta } => Some(Zipf::new(w.key_space, theta)),
            _ => None,
        };
        let streams = match w.keys {
            KeyDistribution::Streams { streams } => vec![0; streams as usize],
            _ => Vec::new(),
        };
        Ok(KeyGen {
            keys: w.keys,
            key_space: w.key_space,
            next: 0,
            zipf,
            streams,
        })
    }

    fn skewed(&self, rng: &mut Rng) -> u64 {
        match &self.zipf {
            Some(z) => mix64(z.next(rng)) % self.key_space,
            None => rng.below(self.key_space),
        }
    }

    /// A key of a stream already written: `None` before any write.
    fn written_stream_key(&self, rng: &mut Rng) -> Option<u64> {
        let s = rng.below(self.streams.len() as u64);
        let n = *self.streams.get(s as usize)?;
        (n > 0).then(|| s << 32 | rng.below(n))
    }

    pub fn write_key(&mut self, rng: &mut Rng) -> u64 {
        match self.keys {
            KeyDistribution::Sequential => {
                let k = self.next;
                self.next += 1;
                k
            }
            KeyDistribution::Streams { .. } => {
                let s = rng.below(self.streams.len() as u64);
                self.next += 1;
                match self.streams.get_mut(s as usize) {
                    Some(n) => {
                        *n += 1;
                        s << 32 | (*n - 1)
                    }
                    None => 0,
                }
            }
            KeyDistribution::Zipfian { .. } => self.skewed(rng),
            _ => rng.below(self.key_space),
        }
    }

    pub fn delete_key(&mut self, rng: &mut Rng) -> u64 {
        match self.keys {
            KeyDistribution::Sequential => rng.below(self.next.max(1)),
            KeyDistribution::Streams { .. } => self.written_stream_key(rng).unwrap_or(0),
            _ => self.write_key(rng),
        }
    }

    pub fn read_key(&mut self, rng: &mut Rng) -> u64 {
        match self.keys {
            KeyDistribution::Sequential => rng.below(self.next.max(1)),
            KeyDistribution::Streams { .. } => self.written_stream_key(rng).unwrap_or(0),
            KeyDistribution::Zipfian { .. } => self.skewed(rng),
            _ => rng.below(self.key_space),
        }
    }

    /// Keys a workload can hold at once (for sizing the live-key set).
    pub fn span(&self) -> u64 {
        match self.keys {
            KeyDistribution::Sequential | KeyDistribution::Streams { .. } => self.next,
            _ => self.key_space,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipfian_is_skewed_and_in_range() {
        let w = Workload::zipfian(10_000, 1);
        let mut g = KeyGen::new(&w).unwrap();
        let mut rng = Rng::new(7);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let k = g.write_key(&mut rng);
            assert!(k < 10_000);
            *counts.entry(k).or_insert(0u32) += 1;
        }
        let mut c: Vec<u32> = counts.values().copied().collect();
        c.sort_unstable_by(|a, b| b.cmp(a));
        let top10: u32 = c.iter().take(10).sum();
        assert!(top10 > 20_000, "top 10 keys got {top10} of 100 000");
    }

    #[test]
    fn uniform_covers_the_space_and_sequential_grows() {
        let mut g = KeyGen::new(&Workload::write_heavy_uniform(100, 1)).unwrap();
        let mut rng = Rng::new(1);
        let mut seen = [false; 100];
        for _ in 0..5_000 {
            seen[g.write_key(&mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        let mut g = KeyGen::new(&Workload::time_ordered(1)).unwrap();
        assert_eq!((g.write_key(&mut rng), g.write_key(&mut rng)), (0, 1));
        assert!(g.read_key(&mut rng) < 2);
    }

    #[test]
    fn streams_append_each_in_order() {
        let mut g = KeyGen::new(&Workload::agent_streams(3, 1)).unwrap();
        let mut rng = Rng::new(3);
        let mut last = [None::<u64>; 3];
        for _ in 0..300 {
            let k = g.write_key(&mut rng);
            let s = (k >> 32) as usize;
            assert!(
                last[s].is_none_or(|l| k == l + 1),
                "stream {s} jumped to {k}"
            );
            last[s] = Some(k);
        }
        assert!(last.iter().all(Option::is_some));
        for _ in 0..100 {
            let k = g.read_key(&mut rng);
            assert!(last[(k >> 32) as usize].is_some_and(|l| k <= l));
        }
    }

    #[test]
    fn bad_workloads_are_refused() {
        let mut w = Workload::zipfian(100, 1);
        w.keys = KeyDistribution::Zipfian { theta: 1.0 };
        assert!(w.validate().is_err());
        let mut w = Workload::write_heavy_uniform(0, 1);
        assert!(w.validate().is_err());
        w.key_space = 5;
        w.mix.writes = 0;
        assert!(w.validate().is_err());
    }
}
