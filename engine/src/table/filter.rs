//! The table's bloom filter: one filter over the distinct user keys of the whole
//! table, so a point read of an absent key usually costs no block read at all.
//!
//! Hashing is MurmurHash64A (seed [`BLOOM_SEED`]) of the user key; the `k` probes
//! use double hashing, bit `i` = `(h1 + i * h2) mod m` with `h1` the low and `h2` the
//! high 32 bits of the hash. The filter bytes end with `k`, so readers do not need
//! the writer's options. Spec: `docs/format/table.md`.
//!
//! Trade-off: the builder keeps one 8-byte hash per distinct user key until the
//! table is finished (the bit array's size depends on the final count), so building
//! a table of `n` keys holds `8n` bytes besides the current block.

use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, Result};

/// Seed of the filter's MurmurHash64A. Part of the format: never change it.
pub const BLOOM_SEED: u64 = 0x5354_5241_5441_0001;
/// Smallest bit array written, so tiny tables still get a useful filter.
pub const MIN_FILTER_BITS: u64 = 64;
/// Largest number of probes a filter may record.
pub const MAX_PROBES: u8 = 30;

/// MurmurHash64A of `key` with [`BLOOM_SEED`] (little-endian word reads).
pub fn bloom_hash(key: &[u8]) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = BLOOM_SEED ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let mut k = u64::from_le_bytes(w);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        h ^= u64::from_le_bytes(w);
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The number of probes for `bits_per_key`: `round(bits_per_key * 0.69)`, clamped
/// to `1..=MAX_PROBES`.
pub fn probes_for(bits_per_key: u32) -> u8 {
    let k = (u64::from(bits_per_key) * 69 + 50) / 100;
    k.clamp(1, u64::from(MAX_PROBES)) as u8
}

fn probe_bits(hash: u64, k: u8, nbits: u64) -> impl Iterator<Item = u64> {
    let h1 = hash & 0xffff_ffff;
    let h2 = hash >> 32;
    (0..u64::from(k)).map(move |i| (h1 + i * h2) % nbits)
}

/// Collects the hashes of a table's user keys and writes the filter block.
#[derive(Debug, Clone)]
pub struct BloomFilterBuilder {
    bits_per_key: u32,
    hashes: Vec<u64>,
}

impl BloomFilterBuilder {
    /// A builder for `bits_per_key` bits per key (at least 1 is used).
    pub fn new(bits_per_key: u32) -> Self {
        BloomFilterBuilder {
            bits_per_key: bits_per_key.max(1),
            hashes: Vec::new(),
        }
    }

    /// Adds a user key. Adding the same key twice only wastes a little space; the
    /// table builder adds each distinct user key once.
    pub fn add_key(&mut self, user_key: &[u8]) {
        self.hashes.push(bloom_hash(user_key));
    }

    /// Keys added so far.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether no key was added.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The filter block contents: the bit array followed by the probe count.
    pub fn finish(&self) -> Vec<u8> {
        let bits = (self.hashes.len() as u64)
            .saturating_mul(u64::from(self.bits_per_key))
            .max(MIN_FILTER_BITS);
        let bytes = usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX / 2);
        let nbits = bytes as u64 * 8;
        let k = probes_for(self.bits_per_key);
        let mut out = vec![0u8; bytes + 1];
        for &h in &self.hashes {
            for bit in probe_bits(h, k, nbits) {
                out[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        out[bytes] = k;
        out
    }
}

/// A decoded filter block.
#[derive(Debug, Clone)]
pub struct BloomFilter {
    data: Bytes,
    nbits: u64,
    k: u8,
}

impl BloomFilter {
    /// Checks a filter block's contents (from `file` at `offset`, for errors).
    ///
    /// # Errors
    /// [`Error::Corruption`] at `offset` if the block has no bit array or its probe
    /// count is 0 or above [`MAX_PROBES`].
    pub fn decode(data: Bytes, file: &Path, offset: u64) -> Result<BloomFilter> {
        let Some((&k, bits)) = data.split_last() else {
            return Err(Error::corruption(file, offset, "filter block is empty"));
        };
        if bits.is_empty() || k == 0 || k > MAX_PROBES {
            return Err(Error::corruption(
                file,
                offset,
                format!(
                    "filter block of {} bytes records {k} probes (expected a bit array and 1..={MAX_PROBES})",
                    data.len()
                ),
            ));
        }
        let nbits = bits.len() as u64 * 8;
        Ok(BloomFilter { data, nbits, k })
    }

    /// Whether `user_key` may be in the table: `false` means certainly absent.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.may_contain_hash(bloom_hash(user_key))
    }

    /// [`BloomFilter::may_contain`] for a precomputed [`bloom_hash`].
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        probe_bits(hash, self.k, self.nbits).all(|bit| {
            self.data
                .get((bit / 8) as usize)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        })
    }

    /// The number of probes recorded in the filter.
    pub fn probes(&self) -> u8 {
        self.k
    }

    /// Size of the bit array in bits.
    pub fn bits(&self) -> u64 {
        self.nbits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter_of(keys: &[Vec<u8>], bits_per_key: u32) -> BloomFilter {
        let mut b = BloomFilterBuilder::new(bits_per_key);
        for k in keys {
            b.add_key(k);
        }
        BloomFilter::decode(Bytes::from(b.finish()), Path::new("f.sst"), 0).unwrap()
    }

    proptest! {
        #[test]
        fn no_false_negatives(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..300),
            bits in 1u32..20,
        ) {
            let f = filter_of(&keys, bits);
            for k in &keys {
                prop_assert!(f.may_contain(k));
            }
        }
    }

    #[test]
    fn false_positive_rate_is_near_the_configured_bits() {
        let keys: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| format!("agent/{i:08}").into_bytes())
            .collect();
        for (bits, limit) in [(10, 0.02), (6, 0.08), (20, 0.002)] {
            let f = filter_of(&keys, bits);
            assert_eq!(f.probes(), probes_for(bits));
            let probes = 100_000u32;
            let fp = (0..probes)
                .filter(|i| f.may_contain(format!("absent/{i:08}").as_bytes()))
                .count();
            let rate = fp as f64 / f64::from(probes);
            assert!(rate < limit, "{bits} bits/key: false-positive rate {rate}");
            assert!(rate > 0.0 || bits >= 20, "suspiciously perfect filter");
        }
    }

    #[test]
    fn empty_filter_rejects_everything_and_hash_is_stable() {
        let f = filter_of(&[], 10);
        assert_eq!(f.bits(), MIN_FILTER_BITS);
        assert!(!f.may_contain(b"anything"));
        // The hash is part of the on-disk format (expected values from an independent
        // implementation of the reference MurmurHash64A).
        assert_eq!(bloom_hash(b""), bloom_hash(b""));
        assert_ne!(bloom_hash(b"a"), bloom_hash(b"b"));
        assert_eq!(bloom_hash(b"strata"), STRATA_HASH);
        assert_eq!(bloom_hash(b"0123456789abcdefXYZ"), LONG_HASH);
    }

    const STRATA_HASH: u64 = 0x4a35_215c_6db1_278f;
    const LONG_HASH: u64 = 0xa441_45cc_1de1_6fd8;

    #[test]
    fn bad_probe_counts_are_corruption() {
        for data in [&[][..], &[7][..], &[0xff, 0][..], &[0xff, 31][..]] {
            let e = BloomFilter::decode(Bytes::copy_from_slice(data), Path::new("f.sst"), 42)
                .unwrap_err();
            assert!(matches!(e, Error::Corruption { offset: 42, .. }), "{e}");
        }
    }
}
