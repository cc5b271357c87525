//! Keys and values as the workloads generate them.
//!
//! - Classic keys are the key number in zero-padded decimal, `--key_size` bytes wide,
//!   like LevelDB's db_bench (`%016d`): `0000000000000042`. Decimal keys sort in number
//!   order, so `fillseq` writes ascending keys. `readmissing` asks for the key followed
//!   by `.` (LevelDB's trick): a key that sorts right next to a stored one but is never
//!   written.
//! - `embeddings` keys are `emb/` followed by a classic key, so the large values of that
//!   workload live in their own key range and do not replace the classic data.
//! - Agent keys are `agent-000042/` followed by a 16-digit per-agent timestamp
//!   (`agentlog`) and `state/agent-000042` (`agentstate`); the agent number is at least
//!   6 digits wide, wider when `--agents` needs it.
//! - Values come from LevelDB's `RandomGenerator` scheme: a pool of at least 1 MiB cut
//!   into 100-byte pieces, each made of `ratio × 100` random printable bytes repeated to
//!   fill the piece, so values compress to about `--compression_ratio` of their size.
//!   Values are slices of the pool taken one after the other, so producing one costs
//!   nothing but a bounds check.
//!
//! All writers format into a caller-owned buffer that is reused from one operation to
//! the next: the hot loop allocates nothing.

use std::sync::Arc;

use crate::rng::Rng;

/// Prefix of `embeddings` keys.
pub const EMBEDDING_PREFIX: &[u8] = b"emb/";

/// Number of decimal digits of `n` (`decimal_digits(0) == 1`).
pub fn decimal_digits(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Appends `v` in decimal, zero-padded on the left to `width` digits. If `v` has more
/// digits than `width`, only its `width` lowest digits are written.
pub fn push_padded_decimal(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut i = out.len();
    while i > start && v > 0 {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Formats classic benchmark keys: `key_size` bytes of zero-padded decimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyFormat {
    key_size: usize,
}

impl KeyFormat {
    /// Keys of `key_size` bytes. Key numbers must have at most `key_size` digits (the
    /// flag parser checks `--key_size` against `--num`); larger ones keep their low
    /// digits.
    pub fn new(key_size: usize) -> Self {
        KeyFormat { key_size }
    }

    /// The key size in bytes.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    /// Writes key `k` into `out` (replacing its contents).
    pub fn write(&self, k: u64, out: &mut Vec<u8>) {
        out.clear();
        push_padded_decimal(out, k, self.key_size);
    }

    /// Writes a key that is never stored but sorts right after key `k`: key `k`
    /// followed by `.` (`key_size + 1` bytes).
    pub fn write_missing(&self, k: u64, out: &mut Vec<u8>) {
        self.write(k, out);
        out.push(b'.');
    }

    /// Writes `prefix` followed by key `k`.
    pub fn write_prefixed(&self, prefix: &[u8], k: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(prefix);
        push_padded_decimal(out, k, self.key_size);
    }
}

/// Width of the per-agent timestamp in `agentlog` keys.
pub const AGENT_TIMESTAMP_DIGITS: usize = 16;

/// Formats the keys of the agent workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentKeys {
    id_width: usize,
}

impl AgentKeys {
    /// Keys for agents `0..agents`.
    pub fn new(agents: u64) -> Self {
        AgentKeys {
            id_width: decimal_digits(agents.saturating_sub(1)).max(6),
        }
    }

    /// Writes the `agentlog` key of event `timestamp` of agent `agent`:
    /// `agent-000042/0000001700000000`.
    pub fn write_log(&self, agent: u64, timestamp: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(b"agent-");
        push_padded_decimal(out, agent, self.id_width);
        out.push(b'/');
        push_padded_decimal(out, timestamp, AGENT_TIMESTAMP_DIGITS);
    }

    /// Writes the `agentstate` key of agent `agent`: `state/agent-000042`.
    pub fn write_state(&self, agent: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(b"state/agent-");
        push_padded_decimal(out, agent, self.id_width);
    }
}

/// Length of the pieces the value pool is made of (LevelDB's choice).
const PIECE: usize = 100;
/// Smallest pool size (LevelDB's choice).
const MIN_POOL: usize = 1 << 20;

/// The shared pool values are sliced from (see the module docs).
#[derive(Clone, Debug)]
pub struct ValuePool {
    data: Arc<[u8]>,
}

impl ValuePool {
    /// A pool for values of up to `max_value_size` bytes that compress to about
    /// `compression_ratio` (in `(0, 1]`) of their size, filled from `seed`.
    ///
    /// The pool holds at least 1 MiB and at least four values, so consecutive values
    /// differ even when they are large.
    pub fn new(seed: u64, compression_ratio: f64, max_value_size: usize) -> Self {
        let size = MIN_POOL.max(max_value_size.saturating_mul(4));
        let mut rng = Rng::new(seed);
        let raw = ((PIECE as f64 * compression_ratio) as usize).clamp(1, PIECE);
        let mut data = Vec::with_capacity(size + PIECE);
        let mut random = [0u8; PIECE];
        while data.len() < size {
            for b in random.iter_mut().take(raw) {
                // Printable ASCII, ' ' to '~', as LevelDB's RandomString.
                *b = b' ' + rng.below(95) as u8;
            }
            let mut filled = 0;
            while filled < PIECE {
                let n = raw.min(PIECE - filled);
                data.extend_from_slice(&random[..n]);
                filled += n;
            }
        }
        ValuePool { data: data.into() }
    }

    /// The pool's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// A generator of values from this pool, starting at a position derived from
    /// `thread` so that threads do not all write the same values.
    pub fn generator(&self, thread: usize) -> ValueGenerator {
        ValueGenerator {
            data: Arc::clone(&self.data),
            pos: thread.wrapping_mul(4099) % self.data.len(),
        }
    }
}

/// Hands out values as consecutive slices of a [`ValuePool`].
#[derive(Clone, Debug)]
pub struct ValueGenerator {
    data: Arc<[u8]>,
    pos: usize,
}

impl ValueGenerator {
    /// The next value of `len` bytes (at most the pool's size; the pool is built for
    /// the largest value a run uses).
    pub fn generate(&mut self, len: usize) -> &[u8] {
        let len = len.min(self.data.len());
        if self.pos + len > self.data.len() {
            self.pos = 0;
        }
        let start = self.pos;
        self.pos += len;
        &self.data[start..start + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded_decimal_of_key_size() {
        let f = KeyFormat::new(16);
        let mut k = Vec::new();
        f.write(42, &mut k);
        assert_eq!(k, b"0000000000000042");
        assert_eq!(k, format!("{:016}", 42).as_bytes());
        f.write(0, &mut k);
        assert_eq!(k, b"0000000000000000");
        f.write(9_999_999_999_999_999, &mut k);
        assert_eq!(k, b"9999999999999999");
        let f = KeyFormat::new(5);
        f.write(123, &mut k);
        assert_eq!(k, b"00123");
        f.write_missing(123, &mut k);
        assert_eq!(k, b"00123.");
        f.write_prefixed(EMBEDDING_PREFIX, 7, &mut k);
        assert_eq!(k, b"emb/00007");
        // More digits than the width: the low digits are kept.
        f.write(1_234_567, &mut k);
        assert_eq!(k, b"34567");
    }

    #[test]
    fn keys_sort_in_number_order() {
        let f = KeyFormat::new(8);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for n in [0u64, 9, 10, 99, 100, 12_345] {
            f.write(n, &mut a);
            f.write(n + 1, &mut b);
            assert!(a < b);
            f.write_missing(n, &mut b);
            assert!(a < b);
            f.write(n + 1, &mut a);
            assert!(b < a, "missing key of {n} must sort before key {}", n + 1);
        }
    }

    #[test]
    fn decimal_digits_counts() {
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(9), 1);
        assert_eq!(decimal_digits(10), 2);
        assert_eq!(decimal_digits(999_999), 6);
        assert_eq!(decimal_digits(u64::MAX), 20);
    }

    #[test]
    fn agent_keys() {
        let a = AgentKeys::new(1000);
        let mut k = Vec::new();
        a.write_log(42, 17, &mut k);
        assert_eq!(k, b"agent-000042/0000000000000017");
        a.write_state(42, &mut k);
        assert_eq!(k, b"state/agent-000042");
        let wide = AgentKeys::new(10_000_000);
        wide.write_log(42, 1, &mut k);
        assert_eq!(k, b"agent-0000042/0000000000000001");
        // Time order within an agent is key order.
        let mut k2 = Vec::new();
        a.write_log(42, 9, &mut k);
        a.write_log(42, 10, &mut k2);
        assert!(k < k2);
    }

    #[test]
    fn pool_pieces_repeat_their_random_half() {
        let pool = ValuePool::new(301, 0.5, 100);
        let bytes = pool.bytes();
        assert!(bytes.len() >= MIN_POOL);
        for piece in bytes.chunks_exact(PIECE).take(1000) {
            assert_eq!(piece[..50], piece[50..]);
            assert!(piece.iter().all(|b| (b' '..=b'~').contains(b)));
        }
        // Pieces differ from each other.
        assert_ne!(bytes[..PIECE], bytes[PIECE..2 * PIECE]);
    }

    #[test]
    fn generator_hands_out_consecutive_slices_and_wraps() {
        let pool = ValuePool::new(1, 0.5, 100_000);
        assert!(pool.bytes().len() >= 400_000);
        let mut g = pool.generator(0);
        let a = g.generate(100).to_vec();
        let b = g.generate(100).to_vec();
        assert_eq!(a, pool.bytes()[..100]);
        assert_eq!(b, pool.bytes()[100..200]);
        for _ in 0..100 {
            assert_eq!(g.generate(100_000).len(), 100_000);
        }
        let other = pool.generator(1).generate(100).to_vec();
        assert_ne!(a, other);
    }
}
