//! The memtable: a concurrent skiplist of internal keys (user key ascending, sequence
//! number descending), plus the prefix tombstones written to it.
//!
//! Writers insert without a lock (crossbeam-skiplist). Which memtable a write goes to
//! is decided by its sequence number (the keyspace's view keeps the boundaries), so
//! memtables partition the sequence space and a flush waits only until every sequence
//! number below its boundary is published.
//! Iteration fetches entries in small chunks so that each step does not pay a full
//! skiplist search, while the iterator owns only reference-counted handles.

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
    compare_internal, parse_internal_key, seek_key, trailer, user_key, ValueKind, TRAILER_LEN,
};

/// An internal key ordered by [`compare_internal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemKey(pub Bytes);

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal(&self.0, &other.0)
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
/// later writers wait for it (see `Publisher` in `db.rs`).
#[derive(Debug)]
pub struct PreparedEntry {
    /// The user key and room for the trailer, exactly this long.
    key: Vec<u8>,
    kind: ValueKind,
    value: Bytes,
}

impl PreparedEntry {
    /// The version `(key, kind, value)`, its sequence number to come.
    pub fn new(key: &[u8], kind: ValueKind, value: &[u8]) -> Self {
        let mut k = Vec::with_capacity(key.len() + TRAILER_LEN);
        k.extend_from_slice(key);
        k.extend_from_slice(&[0; TRAILER_LEN]);
        PreparedEntry {
            key: k,
            kind,
            value: Bytes::copy_from_slice(value),
        }
    }
}

/// One memtable of one keyspace.
#[derive(Debug)]
pub struct Memtable {
    id: u64,
    map: SkipMap<MemKey, Bytes>,
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
    /// An empty memtable; `id` orders memtables of a keyspace by creation.
    pub fn new(id: u64) -> Self {
        Memtable {
            id,
            map: SkipMap::new(),
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
        let PreparedEntry {
            mut key,
            kind,
            value,
        } = entry;
        let at = key.len() - TRAILER_LEN;
        key[at..].copy_from_slice(&trailer(seq, kind).to_le_bytes());
        // Exact capacity: no second allocation.
        let ikey = Bytes::from(key);
        self.bytes.fetch_add(
            ikey.len() + value.len() + ENTRY_OVERHEAD,
            AtomicOrdering::Relaxed,
        );
        self.entries.fetch_add(1, AtomicOrdering::Relaxed);
        self.note_seq(seq);
        self.map.insert(MemKey(ikey), value);
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
        let probe = MemKey(Bytes::from(seek_key(user_key_wanted, snapshot)));
        let entry = self.map.lower_bound(Bound::Included(&probe))?;
        let parsed = parse_internal_key(&entry.key().0)?;
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
    chunk: Vec<(Bytes, Bytes)>,
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
            self.chunk.push((e.key().0.clone(), e.value().clone()));
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
            self.chunk.push((e.key().0.clone(), e.value().clone()));
        }
    }

    fn current(&self) -> Option<&(Bytes, Bytes)> {
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
        let probe = MemKey(Bytes::copy_from_slice(target));
        self.chunk_size = FIRST_CHUNK;
        self.fill_forward(Bound::Included(&probe));
        Ok(())
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        let probe = MemKey(Bytes::copy_from_slice(target));
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
                self.fill_forward(Bound::Excluded(&MemKey(key)));
            }
        } else {
            self.chunk_size = FIRST_CHUNK;
            self.fill_forward(Bound::Excluded(&MemKey(key)));
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
                self.fill_backward(Bound::Excluded(&MemKey(key)));
            }
        } else {
            self.chunk_size = FIRST_CHUNK;
            self.fill_backward(Bound::Excluded(&MemKey(key)));
        }
        Ok(())
    }

    fn key(&self) -> &[u8] {
        self.current().map_or(&[], |(k, _)| &k[..])
    }

    fn value(&self) -> Bytes {
        self.current().map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

/// The user key of an internal key held by a memtable (for callers that only have
/// the internal key).
pub fn memkey_user_key(key: &MemKey) -> &[u8] {
    user_key(&key.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_sees_newest_visible_version() {
        let m = Memtable::new(1);
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
    fn iterator_walks_both_ways_across_chunks() {
        let m = Arc::new(Memtable::new(1));
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
