//! The memtable: a concurrent skiplist of internal keys (user key ascending, sequence
//! number descending), plus the prefix tombstones written to it.
//!
//! Writers insert without a lock (crossbeam-skiplist). Which memtable a write goes to
//! is decided by its sequence number (the keyspace's view keeps the boundaries), so
//! memtables partition the sequence space and a flush waits only until every sequence
//! number below its boundary is published.
//! Iteration fetches entries in small chunks so that each step does not pay a full
//! skiplist search, while the iterator owns only reference-counted handles.
//! A blocked bloom filter of the user keys written ([`MemFilter`]) lets a point read
//! of a key the memtable does not hold skip the skiplist search: in a database larger
//! than its memtables most reads miss them, and the search (pointer chasing through
//! cache misses) was half the cost of a random read. It costs one hash and a few
//! atomic ORs on one cache line per write, and about 10 bits per expected entry.

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use parking_lot::Mutex;
use strata_wal::SeqNo;

use crate::error::Result;
use crate::iter::InternalIterator;
use crate::key::{
    compare_internal, parse_internal_key, seek_key, seek_trailer, trailer, user_key, ValueKind,
    TRAILER_LEN,
};
use crate::table::filter::bloom_hash;

/// Longest internal key (user key and trailer) a [`MemKey`] holds inline.
const INLINE_KEY: usize = 38;

/// An internal key ordered by [`compare_internal`]. Keys of up to [`INLINE_KEY`]
/// bytes (user keys of up to 30) live inside the skiplist node itself, so a search
/// compares them without following a second pointer (one cache miss per node instead
/// of two) and a short probe key allocates nothing; longer keys are shared buffers.
#[derive(Debug, Clone)]
pub enum MemKey {
    /// The key's first `len` bytes of `buf`.
    Inline {
        /// Bytes used in `buf`.
        len: u8,
        /// The key, then unused bytes.
        buf: [u8; INLINE_KEY],
    },
    /// A key too long to keep inline.
    Shared(Bytes),
}

impl MemKey {
    /// The key `bytes`, inline when short enough.
    pub fn from_slice(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE_KEY {
            let mut buf = [0u8; INLINE_KEY];
            buf[..bytes.len()].copy_from_slice(bytes);
            MemKey::Inline {
                len: bytes.len() as u8,
                buf,
            }
        } else {
            MemKey::Shared(Bytes::copy_from_slice(bytes))
        }
    }

    /// [`seek_key`]`(user_key, snapshot)`, without a heap allocation when it fits.
    pub fn seek(user_key: &[u8], snapshot: SeqNo) -> Self {
        let len = user_key.len() + TRAILER_LEN;
        if len > INLINE_KEY {
            return MemKey::Shared(Bytes::from(seek_key(user_key, snapshot)));
        }
        let mut buf = [0u8; INLINE_KEY];
        buf[..user_key.len()].copy_from_slice(user_key);
        buf[user_key.len()..len].copy_from_slice(&seek_trailer(snapshot).to_le_bytes());
        MemKey::Inline {
            len: len as u8,
            buf,
        }
    }

    /// The internal key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            MemKey::Inline { len, buf } => &buf[..usize::from(*len)],
            MemKey::Shared(b) => b,
        }
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MemKey {}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal(self.as_bytes(), other.as_bytes())
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Per-entry bookkeeping overhead counted against the memtable's size (skiplist node,
/// two reference-counted buffers).
const ENTRY_OVERHEAD: usize = 64;

/// One version allocated and copied before its sequence number is known, so that a
/// writer does that work before it reserves its number, outside the window in which
/// readers (and the flush of its memtable) wait for it (see `Publisher` in `db.rs`).
#[derive(Debug)]
pub struct PreparedEntry {
    key: PreparedKey,
    kind: ValueKind,
    value: Bytes,
}

/// The user key and room for the trailer, which is written once the sequence number
/// is known.
#[derive(Debug)]
enum PreparedKey {
    /// Short enough for [`MemKey::Inline`]: `len` bytes of `buf`, trailer included.
    Inline { len: u8, buf: [u8; INLINE_KEY] },
    /// Longer: exactly the internal key's length, so `Bytes::from` does not reallocate.
    Heap(Vec<u8>),
}

impl PreparedEntry {
    /// The version `(key, kind, value)`, its sequence number to come.
    pub fn new(key: &[u8], kind: ValueKind, value: &[u8]) -> Self {
        let len = key.len() + TRAILER_LEN;
        let key = if len <= INLINE_KEY {
            let mut buf = [0u8; INLINE_KEY];
            buf[..key.len()].copy_from_slice(key);
            PreparedKey::Inline {
                len: len as u8,
                buf,
            }
        } else {
            let mut k = Vec::with_capacity(len);
            k.extend_from_slice(key);
            k.extend_from_slice(&[0; TRAILER_LEN]);
            PreparedKey::Heap(k)
        };
        PreparedEntry {
            key,
            kind,
            value: Bytes::copy_from_slice(value),
        }
    }
}

/// Bits of [`MemFilter`] per entry a memtable of its size is expected to hold.
const MEM_FILTER_BITS_PER_ENTRY: usize = 10;
/// Smallest entry a memtable holds, for sizing its filter: [`ENTRY_OVERHEAD`] plus a
/// short key and value.
const MEM_FILTER_BYTES_PER_ENTRY: usize = 128;
/// Bits set per key, all in one 512-bit block.
const MEM_FILTER_PROBES: u32 = 6;

/// A blocked bloom filter over the user keys of one memtable: each key sets
/// [`MEM_FILTER_PROBES`] bits in one 64-byte block (one cache line), chosen from
/// [`bloom_hash`]. Bits are set before the entry enters the skiplist, so a reader
/// that can see the entry sees its bits; bits are never cleared.
struct MemFilter {
    blocks: Box<[[AtomicU64; 8]]>,
}

impl MemFilter {
    /// A filter sized for a memtable of `memtable_bytes`.
    fn for_bytes(memtable_bytes: usize) -> Self {
        let entries = (memtable_bytes / MEM_FILTER_BYTES_PER_ENTRY).max(64);
        let bits = (entries * MEM_FILTER_BITS_PER_ENTRY).clamp(1 << 12, 1 << 25);
        let blocks = (bits / 512).next_power_of_two();
        MemFilter {
            blocks: (0..blocks)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        }
    }

    /// The block of `hash` and the bits it sets in each of the block's eight words.
    fn position(&self, hash: u64) -> (&[AtomicU64; 8], [u64; 8]) {
        let block = (hash >> 32) as usize & (self.blocks.len() - 1);
        let mut h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut masks = [0u64; 8];
        for _ in 0..MEM_FILTER_PROBES {
            let bit = (h & 511) as usize;
            masks[bit / 64] |= 1 << (bit % 64);
            h >>= 9;
        }
        (&self.blocks[block], masks)
    }

    fn add(&self, hash: u64) {
        let (words, masks) = self.position(hash);
        for (word, mask) in words.iter().zip(masks) {
            if mask != 0 && word.load(AtomicOrdering::Relaxed) & mask != mask {
                word.fetch_or(mask, AtomicOrdering::Relaxed);
            }
        }
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (words, masks) = self.position(hash);
        words
            .iter()
            .zip(masks)
            .all(|(word, mask)| word.load(AtomicOrdering::Relaxed) & mask == mask)
    }
}

impl std::fmt::Debug for MemFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemFilter({} blocks)", self.blocks.len())
    }
}

/// One memtable of one keyspace.
#[derive(Debug)]
pub struct Memtable {
    id: u64,
    map: SkipMap<MemKey, Bytes>,
    filter: MemFilter,
    bytes: AtomicUsize,
    entries: AtomicU64,
    min_seq: AtomicU64,
    max_seq: AtomicU64,
    prefix_tombstones: Mutex<Vec<(Vec<u8>, SeqNo)>>,
    /// User bytes of WAL-bypass writes: what a crash would take with this memtable.
    bypass_bytes: AtomicU64,
    /// When the first bypass write arrived (the age `bypass_flush_interval` bounds).
    bypass_since: OnceLock<Instant>,
}

impl Memtable {
    /// An empty memtable; `id` orders memtables of a keyspace by creation, and
    /// `expected_bytes` (the keyspace's `memtable_bytes`) sizes its key filter.
    pub fn new(id: u64, expected_bytes: usize) -> Self {
        Memtable {
            id,
            map: SkipMap::new(),
            filter: MemFilter::for_bytes(expected_bytes),
            bytes: AtomicUsize::new(0),
            entries: AtomicU64::new(0),
            min_seq: AtomicU64::new(u64::MAX),
            max_seq: AtomicU64::new(0),
            prefix_tombstones: Mutex::new(Vec::new()),
            bypass_bytes: AtomicU64::new(0),
            bypass_since: OnceLock::new(),
        }
    }

    /// Records `bytes` of WAL-bypass writes applied to this memtable.
    pub fn note_bypass(&self, bytes: u64) {
        self.bypass_since.get_or_init(Instant::now);
        self.bypass_bytes.fetch_add(bytes, AtomicOrdering::Relaxed);
    }

    /// User bytes of WAL-bypass writes in this memtable.
    pub fn bypass_bytes(&self) -> u64 {
        self.bypass_bytes.load(AtomicOrdering::Relaxed)
    }

    /// When this memtable received its first WAL-bypass write, if it did.
    pub fn bypass_since(&self) -> Option<Instant> {
        self.bypass_since.get().copied()
    }

    /// The creation-order id.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn note_seq(&self, seq: SeqNo) {
        // Loads first: writers sharing the memtable then rarely write these lines
        // (sequence numbers mostly rise, so the minimum is set once).
        if seq.0 < self.min_seq.load(AtomicOrdering::Relaxed) {
            self.min_seq.fetch_min(seq.0, AtomicOrdering::SeqCst);
        }
        if seq.0 > self.max_seq.load(AtomicOrdering::Relaxed) {
            self.max_seq.fetch_max(seq.0, AtomicOrdering::SeqCst);
        }
    }

    /// Inserts one version.
    pub fn insert(&self, key: &[u8], seq: SeqNo, kind: ValueKind, value: &[u8]) {
        self.insert_prepared(PreparedEntry::new(key, kind, value), seq);
    }

    /// Inserts a version built before its sequence number was known.
    pub fn insert_prepared(&self, entry: PreparedEntry, seq: SeqNo) {
        let PreparedEntry { key, kind, value } = entry;
        let trailer_bytes = trailer(seq, kind).to_le_bytes();
        let ikey = match key {
            PreparedKey::Inline { len, mut buf } => {
                let end = usize::from(len);
                buf[end - TRAILER_LEN..end].copy_from_slice(&trailer_bytes);
                MemKey::Inline { len, buf }
            }
            PreparedKey::Heap(mut k) => {
                let at = k.len() - TRAILER_LEN;
                k[at..].copy_from_slice(&trailer_bytes);
                // Exact capacity: no second allocation.
                MemKey::Shared(Bytes::from(k))
            }
        };
        let key_len = ikey.as_bytes().len();
        self.filter
            .add(bloom_hash(&ikey.as_bytes()[..key_len - TRAILER_LEN]));
        self.bytes.fetch_add(
            key_len + value.len() + ENTRY_OVERHEAD,
            AtomicOrdering::Relaxed,
        );
        self.entries.fetch_add(1, AtomicOrdering::Relaxed);
        self.note_seq(seq);
        self.map.insert(ikey, value);
    }

    /// Records a prefix tombstone.
    pub fn insert_prefix_tombstone(&self, prefix: &[u8], seq: SeqNo) {
        self.bytes
            .fetch_add(prefix.len() + ENTRY_OVERHEAD, AtomicOrdering::Relaxed);
        self.note_seq(seq);
        self.prefix_tombstones.lock().push((prefix.to_vec(), seq));
    }

    /// The prefix tombstones written to this memtable.
    pub fn prefix_tombstones(&self) -> Vec<(Vec<u8>, SeqNo)> {
        self.prefix_tombstones.lock().clone()
    }

    /// Whether the memtable holds any prefix tombstone.
    pub fn has_prefix_tombstones(&self) -> bool {
        !self.prefix_tombstones.lock().is_empty()
    }

    /// The newest version of `user_key` with a sequence number at or below
    /// `snapshot`.
    pub fn get(
        &self,
        user_key_wanted: &[u8],
        snapshot: SeqNo,
    ) -> Option<(SeqNo, ValueKind, Bytes)> {
        self.get_hashed(user_key_wanted, bloom_hash(user_key_wanted), snapshot)
    }

    /// [`Memtable::get`] with the key's [`bloom_hash`] computed by the caller (one
    /// hash serves every memtable and table a read consults).
    pub fn get_hashed(
        &self,
        user_key_wanted: &[u8],
        hash: u64,
        snapshot: SeqNo,
    ) -> Option<(SeqNo, ValueKind, Bytes)> {
        if !self.filter.may_contain(hash) {
            return None;
        }
        let probe = MemKey::seek(user_key_wanted, snapshot);
        let entry = self.map.lower_bound(Bound::Included(&probe))?;
        let parsed = parse_internal_key(entry.key().as_bytes())?;
        (parsed.user_key == user_key_wanted)
            .then(|| (parsed.seq, parsed.kind, entry.value().clone()))
    }

    /// Approximate memory used, in bytes.
    pub fn approximate_bytes(&self) -> usize {
        self.bytes.load(AtomicOrdering::Relaxed)
    }

    /// Number of point entries.
    pub fn len(&self) -> u64 {
        self.entries.load(AtomicOrdering::Relaxed)
    }

    /// Whether nothing (no entry, no prefix tombstone) was written.
    pub fn is_empty(&self) -> bool {
        self.max_seq.load(AtomicOrdering::SeqCst) == 0
    }

    /// The smallest sequence number written, if any.
    pub fn min_seq(&self) -> Option<SeqNo> {
        let v = self.min_seq.load(AtomicOrdering::SeqCst);
        (v != u64::MAX).then_some(SeqNo(v))
    }

    /// The largest sequence number written, if any.
    pub fn max_seq(&self) -> Option<SeqNo> {
        let v = self.max_seq.load(AtomicOrdering::SeqCst);
        (v != 0).then_some(SeqNo(v))
    }

    /// A cursor over the memtable's entries.
    pub fn iter(self: &Arc<Self>) -> MemtableIter {
        MemtableIter {
            memtable: Arc::clone(self),
            chunk: Vec::new(),
            pos: 0,
            forward: true,
            chunk_size: FIRST_CHUNK,
        }
    }
}

/// Entries fetched by the first skiplist search after a seek; each refill in the same
/// direction doubles it up to [`MAX_CHUNK`], so a seek followed by one read stays cheap
/// and a long scan pays one search per 64 entries.
const FIRST_CHUNK: usize = 4;
/// Largest refill of [`MemtableIter`].
const MAX_CHUNK: usize = 64;

/// A cursor over a memtable. Holds the memtable alive.
#[derive(Debug)]
pub struct MemtableIter {
    memtable: Arc<Memtable>,
    /// Entries in iteration order (ascending when `forward`, descending otherwise).
    chunk: Vec<(MemKey, Bytes)>,
    pos: usize,
    forward: bool,
    /// How many entries the next refill fetches.
    chunk_size: usize,
}

impl MemtableIter {
    fn fill_forward(&mut self, from: Bound<&MemKey>) {
        self.chunk.clear();
        self.pos = 0;
        self.forward = true;
        for e in self
            .memtable
            .map
            .range((from, Bound::Unbounded))
            .take(self.chunk_size)
        {
            self.chunk.push((e.key().clone(), e.value().clone()));
        }
    }

    fn fill_backward(&mut self, to: Bound<&MemKey>) {
        self.chunk.clear();
        self.pos = 0;
        self.forward = false;
        for e in self
            .memtable
            .map
            .range((Bound::Unbounded, to))
            .rev()
            .take(self.chunk_size)
        {
            self.chunk.push((e.key().clone(), e.value().clone()));
        }
    }

    fn current(&self) -> Option<&(MemKey, Bytes)> {
        self.chunk.get(self.pos)
    }
}

impl InternalIterator for MemtableIter {
    fn valid(&self) -> bool {
        self.pos < self.chunk.len()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.chunk_size = FIRST_CHUNK;
        self.fill_forward(Bound::Unbounded);
        Ok(())
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.chunk_size = FIRST_CHUNK;
        self.fill_backward(Bound::Unbounded);
        Ok(())
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let probe = MemKey::from_slice(target);
        self.chunk_size = FIRST_CHUNK;
        self.fill_forward(Bound::Included(&probe));
        Ok(())
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        let probe = MemKey::from_slice(target);
        self.chunk_size = FIRST_CHUNK;
        self.fill_backward(Bound::Included(&probe));
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        let Some((key, _)) = self.current().cloned() else {
            return Ok(());
        };
        if self.forward {
            self.pos += 1;
            if self.pos == self.chunk.len() && self.chunk.len() == self.chunk_size {
                self.chunk_size = (self.chunk_size * 2).min(MAX_CHUNK);
                self.fill_forward(Bound::Excluded(&key));
            }
        } else {
            self.chunk_size = FIRST_CHUNK;
            self.fill_forward(Bound::Excluded(&key));
        }
        Ok(())
    }

    fn prev(&mut self) -> Result<()> {
        let Some((key, _)) = self.current().cloned() else {
            return Ok(());
        };
        if !self.forward {
            self.pos += 1;
            if self.pos == self.chunk.len() && self.chunk.len() == self.chunk_size {
                self.chunk_size = (self.chunk_size * 2).min(MAX_CHUNK);
                self.fill_backward(Bound::Excluded(&key));
            }
        } else {
            self.chunk_size = FIRST_CHUNK;
            self.fill_backward(Bound::Excluded(&key));
        }
        Ok(())
    }

    fn key(&self) -> &[u8] {
        self.current().map_or(&[], |(k, _)| k.as_bytes())
    }

    fn value(&self) -> Bytes {
        self.current().map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

/// The user key of an internal key held by a memtable (for callers that only have
/// the internal key).
pub fn memkey_user_key(key: &MemKey) -> &[u8] {
    user_key(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_sees_newest_visible_version() {
        let m = Memtable::new(1, 1 << 20);
        m.insert(b"a", SeqNo(1), ValueKind::Put, b"a1");
        m.insert(b"a", SeqNo(5), ValueKind::Put, b"a5");
        m.insert(b"a", SeqNo(9), ValueKind::Delete, b"");
        m.insert(b"ab", SeqNo(2), ValueKind::Put, b"ab2");
        assert_eq!(m.get(b"a", SeqNo(4)).unwrap().2, Bytes::from_static(b"a1"));
        assert_eq!(m.get(b"a", SeqNo(5)).unwrap().2, Bytes::from_static(b"a5"));
        assert_eq!(m.get(b"a", SeqNo(100)).unwrap().1, ValueKind::Delete);
        assert!(m.get(b"a", SeqNo(0)).is_none());
        assert!(m.get(b"b", SeqNo(100)).is_none());
        assert_eq!(m.min_seq(), Some(SeqNo(1)));
        assert_eq!(m.max_seq(), Some(SeqNo(9)));
    }

    #[test]
    fn key_filter_never_hides_a_key_and_turns_most_misses_away() {
        // A filter sized for 4 MiB (32 768 expected entries), filled to that count.
        let m = Memtable::new(1, 4 << 20);
        let n = 32_768u64;
        for i in 0..n {
            m.insert(&i.to_be_bytes(), SeqNo(i + 1), ValueKind::Put, b"v");
        }
        for i in 0..n {
            assert!(
                m.get(&i.to_be_bytes(), SeqNo::MAX).is_some(),
                "key {i} hidden"
            );
        }
        let passed = (n..2 * n)
            .filter(|i| m.filter.may_contain(bloom_hash(&i.to_be_bytes())))
            .count();
        // About 1% expected at 10 bits per key and 6 probes in a block.
        assert!(passed < (n / 25) as usize, "{passed} of {n} misses passed");
        // An empty memtable's filter passes nothing.
        let empty = Memtable::new(2, 4 << 20);
        assert!(!(0..1000u64).any(|i| empty.filter.may_contain(bloom_hash(&i.to_be_bytes()))));
    }

    #[test]
    fn iterator_walks_both_ways_across_chunks() {
        let m = Arc::new(Memtable::new(1, 1 << 20));
        {
            for i in 0..500u32 {
                m.insert(
                    format!("{i:05}").as_bytes(),
                    SeqNo(u64::from(i) + 1),
                    ValueKind::Put,
                    b"v",
                );
            }
        }
        let mut it = m.iter();
        it.seek_to_first().unwrap();
        let mut n = 0;
        while it.valid() {
            assert_eq!(user_key(it.key()), format!("{n:05}").as_bytes());
            n += 1;
            it.next().unwrap();
        }
        assert_eq!(n, 500);
        it.seek_to_last().unwrap();
        let mut n = 500;
        while it.valid() {
            n -= 1;
            assert_eq!(user_key(it.key()), format!("{n:05}").as_bytes());
            it.prev().unwrap();
        }
        assert_eq!(n, 0);
        // Direction changes in the middle.
        it.seek(&seek_key(b"00100", SeqNo::MAX)).unwrap();
        assert_eq!(user_key(it.key()), b"00100");
        it.prev().unwrap();
        assert_eq!(user_key(it.key()), b"00099");
        it.next().unwrap();
        assert_eq!(user_key(it.key()), b"00100");
        it.seek_for_prev(&seek_key(b"00250x", SeqNo::MAX)).unwrap();
        assert_eq!(user_key(it.key()), b"00250");
    }
}
