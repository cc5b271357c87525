//! Deterministic keys and values shared by the component benchmarks.
//!
//! Keys are 16 bytes: an 8-byte prefix that fixes where the key sorts, then the
//! key's index, big-endian, so two indexes never give the same key. A random key's
//! prefix is [`mix`] of its index (a bijection, so the keys scatter over the key
//! space with no duplicates); a sequential key's prefix is the index itself. Keys of
//! indexes at or above the number written are the misses.

// Each benchmark binary uses a different subset of these helpers.
#![allow(dead_code)]

/// Bytes of a user key.
pub const KEY_LEN: usize = 16;
/// Bytes of a value.
pub const VALUE_LEN: usize = 100;

/// The splitmix64 finalizer: a fixed bijection of `u64` that scatters its input.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Key `i` of a sequential load: keys sort in index order.
pub fn seq_key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// Key `i` of a random load: keys sort in an order unrelated to their index.
pub fn random_key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&mix(i).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// A value: `VALUE_LEN` bytes derived from `i`.
pub fn value(i: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    let mut x = mix(i ^ 0x5a5a);
    for chunk in v.chunks_mut(8) {
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        x = mix(x);
    }
    v
}

/// `n` indexes below `bound` in a scattered, repeatable order: the lookup sequence of
/// a read benchmark, built before timing so that timing sees no key arithmetic.
pub fn lookup_order(n: usize, bound: u64, salt: u64) -> Vec<u64> {
    (0..n as u64).map(|j| mix(j ^ salt) % bound).collect()
}

/// `n` random keys among the first `written` (hits) and `n` random keys past them
/// (misses: never written), in scattered, repeatable orders.
pub fn hits_and_misses(n: usize, written: u64) -> (Vec<[u8; KEY_LEN]>, Vec<[u8; KEY_LEN]>) {
    let hits = lookup_order(n, written, 1)
        .into_iter()
        .map(random_key)
        .collect();
    let misses = lookup_order(n, written, 2)
        .into_iter()
        .map(|i| random_key(i + written))
        .collect();
    (hits, misses)
}
