//! Blocks: the unit of reading, caching and compression in a table. Used for data
//! blocks (internal key → value) and the index block (separator key → block handle).
//!
//! Layout (spec: `docs/format/table.md`): entries with prefix-compressed keys
//! (`shared: varint, unshared: varint, value_len: varint, key_delta, value`), a
//! restart point every `restart_interval` entries where the full key is stored, then
//! the restart offsets (`u32` each) and their count (`u32`). Seeks binary-search the
//! restart points, then scan at most one restart interval; `prev` rescans from the
//! preceding restart point, so it costs up to one interval of decoding.
//!
//! [`Block::decode`] checks the restart array once (bounds and order); entries are
//! checked as they are decoded, so a malformed entry surfaces as
//! [`Error::Corruption`] from the cursor call that reached it, never as a panic.

use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_wal::codec::{put_varint, Reader};

use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::key::compare_internal;

/// Bytes of one restart offset and of the restart count.
const U32_LEN: usize = 4;

/// Builds the contents of one block from entries added in increasing key order.
#[derive(Debug, Clone)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    counter: usize,
    entries: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    /// An empty builder that stores a full key every `restart_interval` entries
    /// (values below 1 are treated as 1).
    pub fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            restart_interval: restart_interval.max(1),
            counter: 0,
            entries: 0,
            last_key: Vec::new(),
        }
    }

    /// Appends an entry. Keys must be added in strictly increasing
    /// [`compare_internal`] order (the caller checks; the block does not), and the
    /// block must stay below 4 GiB (the table builder cuts blocks long before).
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.counter.is_multiple_of(self.restart_interval) {
            self.restarts
                .push(u32::try_from(self.buf.len()).unwrap_or(u32::MAX));
            self.counter = 0;
            0
        } else {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        };
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (key.len() - shared) as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.counter += 1;
        self.entries += 1;
    }

    /// The size [`BlockBuilder::finish`] would produce now.
    pub fn size_estimate(&self) -> usize {
        self.buf.len() + (self.restarts.len() + 1) * U32_LEN
    }

    /// Entries added since the last reset.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Whether no entry was added since the last reset.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The last key added (empty if none).
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Appends the restart array and returns the finished block contents. Call
    /// [`BlockBuilder::reset`] before adding again.
    pub fn finish(&mut self) -> &[u8] {
        for r in &self.restarts {
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        let n = u32::try_from(self.restarts.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&n.to_le_bytes());
        &self.buf
    }

    /// Empties the builder, keeping its allocations.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.counter = 0;
        self.entries = 0;
        self.last_key.clear();
    }
}

/// A decoded block: its contents (a cheap, shared [`Bytes`]) with a checked restart
/// array. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Block {
    data: Bytes,
    restarts_at: usize,
    num_restarts: usize,
    file: Arc<Path>,
    offset: u64,
}

impl Block {
    /// Checks the restart array of a block's contents. `file` and `offset` (the
    /// block's offset in the file) are only used to name the place in errors.
    ///
    /// # Errors
    /// [`Error::Corruption`] at `offset` if the block is shorter than its restart
    /// count, the restart array does not fit, or the restart offsets are not
    /// strictly increasing from 0 inside the entry area.
    pub fn decode(data: Bytes, file: Arc<Path>, offset: u64) -> Result<Block> {
        let corrupt = |reason: String| Error::corruption(&*file, offset, reason);
        let len = data.len();
        let Some(count_at) = len.checked_sub(U32_LEN) else {
            return Err(corrupt(format!(
                "block of {len} bytes is too short for its restart count"
            )));
        };
        let num_restarts = Reader::new(&data[count_at..])
            .u32_le()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX);
        let restarts_at = num_restarts
            .checked_mul(U32_LEN)
            .and_then(|b| count_at.checked_sub(b))
            .ok_or_else(|| {
                corrupt(format!(
                    "block of {len} bytes cannot hold {num_restarts} restart points"
                ))
            })?;
        if num_restarts == 0 && restarts_at != 0 {
            return Err(corrupt(format!(
                "block has {restarts_at} bytes of entries but no restart point"
            )));
        }
        let mut r = Reader::new(&data[restarts_at..count_at]);
        let mut prev: Option<u32> = None;
        while let Some(p) = r.u32_le() {
            let ok = match prev {
                None => p == 0,
                Some(q) => p > q,
            } && (p as usize) < restarts_at;
            if !ok {
                return Err(corrupt(format!(
                    "restart point {p} is out of order or outside the {restarts_at} bytes of entries"
                )));
            }
            prev = Some(p);
        }
        Ok(Block {
            data,
            restarts_at,
            num_restarts,
            file,
            offset,
        })
    }

    /// The block's contents (entries and restart array).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Size of the contents in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the block holds no entries.
    pub fn is_empty(&self) -> bool {
        self.num_restarts == 0
    }

    /// Number of restart points.
    pub fn num_restarts(&self) -> usize {
        self.num_restarts
    }

    /// A cursor over the block, positioned nowhere (not valid) until a seek.
    pub fn iter(&self) -> BlockIter {
        BlockIter::new(self.clone())
    }

    fn restart(&self, i: usize) -> usize {
        let at = self.restarts_at + i * U32_LEN;
        self.data
            .get(at..at + U32_LEN)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(self.restarts_at, |b| u32::from_le_bytes(b) as usize)
    }

    fn entry_error(&self, at: usize, what: &str) -> Error {
        Error::corruption(
            &*self.file,
            self.offset,
            format!("block entry at byte {at} of the block: {what}"),
        )
    }
}

/// An [`InternalIterator`] over one block. Owns its [`Block`] (a shared [`Bytes`]),
/// so it is `'static`; values are slices of the block, never copies.
#[derive(Debug, Clone)]
pub struct BlockIter {
    block: Block,
    /// Offset of the current entry (meaningless when not valid).
    current: usize,
    /// Offset just past the current entry: where the next one starts.
    next: usize,
    /// The largest restart index whose offset is at or before `current`.
    restart_index: usize,
    key: Vec<u8>,
    value: (usize, usize),
    valid: bool,
}

impl BlockIter {
    /// A cursor over `block`, not yet positioned.
    pub fn new(block: Block) -> Self {
        BlockIter {
            block,
            current: 0,
            next: 0,
            restart_index: 0,
            key: Vec::new(),
            value: (0, 0),
            valid: false,
        }
    }

    /// The current value as a slice of the block (no reference count touched).
    /// Empty when not valid.
    pub fn value_slice(&self) -> &[u8] {
        if self.valid {
            &self.block.data[self.value.0..self.value.1]
        } else {
            &[]
        }
    }

    /// The block this cursor walks.
    pub fn block(&self) -> &Block {
        &self.block
    }

    fn invalidate(&mut self) {
        self.valid = false;
        self.key.clear();
        self.value = (0, 0);
    }

    fn fail(&mut self, e: Error) -> Error {
        self.invalidate();
        e
    }

    /// Decodes the entry at `at`, whose key shares a prefix with `self.key`.
    fn decode_entry(&mut self, at: usize) -> Result<()> {
        let region = &self.block.data[..self.block.restarts_at];
        let mut r = Reader::new(region.get(at..).unwrap_or_default());
        let header = (|| {
            let shared = usize::try_from(r.varint()?).ok()?;
            let unshared = usize::try_from(r.varint()?).ok()?;
            let value_len = usize::try_from(r.varint()?).ok()?;
            Some((shared, unshared, value_len))
        })();
        let Some((shared, unshared, value_len)) = header else {
            return Err(self.block.entry_error(at, "truncated or malformed header"));
        };
        if shared > self.key.len() {
            return Err(self.block.entry_error(
                at,
                &format!(
                    "shares {shared} key bytes with a previous key of {} bytes",
                    self.key.len()
                ),
            ));
        }
        let Some(delta) = r.bytes(unshared) else {
            return Err(self.block.entry_error(at, "key runs past the entries"));
        };
        let value_start = at + r.position();
        if r.bytes(value_len).is_none() {
            return Err(self.block.entry_error(at, "value runs past the entries"));
        }
        self.key.truncate(shared);
        self.key.extend_from_slice(delta);
        self.current = at;
        self.next = at + r.position();
        self.value = (value_start, self.next);
        self.valid = true;
        Ok(())
    }

    /// Moves to the entry at `self.next`, or past the end.
    fn parse_next(&mut self) -> Result<()> {
        let at = self.next;
        if at >= self.block.restarts_at {
            self.invalidate();
            return Ok(());
        }
        if let Err(e) = self.decode_entry(at) {
            return Err(self.fail(e));
        }
        while self.restart_index + 1 < self.block.num_restarts
            && self.block.restart(self.restart_index + 1) <= self.current
        {
            self.restart_index += 1;
        }
        Ok(())
    }

    fn seek_to_restart(&mut self, i: usize) {
        self.key.clear();
        self.valid = false;
        self.restart_index = i;
        self.next = self.block.restart(i);
    }

    /// The full key stored at restart point `i`.
    fn restart_key(&self, i: usize) -> Result<&[u8]> {
        let at = self.block.restart(i);
        let region = &self.block.data[..self.block.restarts_at];
        let mut r = Reader::new(region.get(at..).unwrap_or_default());
        let key = (|| {
            let shared = r.varint()?;
            let unshared = usize::try_from(r.varint()?).ok()?;
            r.varint()?;
            if shared != 0 {
                return None;
            }
            r.bytes(unshared)
        })();
        key.ok_or_else(|| {
            self.block
                .entry_error(at, "restart point does not hold a well-formed full key")
        })
    }
}

impl InternalIterator for BlockIter {
    fn valid(&self) -> bool {
        self.valid
    }

    fn seek_to_first(&mut self) -> Result<()> {
        if self.block.num_restarts == 0 {
            self.invalidate();
            return Ok(());
        }
        self.seek_to_restart(0);
        self.parse_next()
    }

    fn seek_to_last(&mut self) -> Result<()> {
        if self.block.num_restarts == 0 {
            self.invalidate();
            return Ok(());
        }
        self.seek_to_restart(self.block.num_restarts - 1);
        self.parse_next()?;
        while self.valid && self.next < self.block.restarts_at {
            self.parse_next()?;
        }
        Ok(())
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        if self.block.num_restarts == 0 {
            self.invalidate();
            return Ok(());
        }
        // The last restart point whose key is below the target.
        let (mut lo, mut hi) = (0, self.block.num_restarts - 1);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let below = match self.restart_key(mid) {
                Ok(k) => compare_internal(k, target) == Ordering::Less,
                Err(e) => return Err(self.fail(e)),
            };
            if below {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.seek_to_restart(lo);
        loop {
            self.parse_next()?;
            if !self.valid || compare_internal(&self.key, target) != Ordering::Less {
                return Ok(());
            }
        }
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        self.seek(target)?;
        if !self.valid {
            self.seek_to_last()?;
        }
        while self.valid && compare_internal(&self.key, target) == Ordering::Greater {
            self.prev()?;
        }
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        self.parse_next()
    }

    fn prev(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        let original = self.current;
        let mut r = self.restart_index;
        while self.block.restart(r) >= original {
            if r == 0 {
                self.invalidate();
                return Ok(());
            }
            r -= 1;
        }
        self.seek_to_restart(r);
        loop {
            self.parse_next()?;
            if !self.valid || self.next >= original {
                break;
            }
        }
        if !self.valid || self.next != original {
            let at = self.current;
            return Err(self.fail(self.block.entry_error(
                at,
                &format!("entries do not chain up to the entry at byte {original}"),
            )));
        }
        Ok(())
    }

    fn key(&self) -> &[u8] {
        &self.key
    }

    fn value(&self) -> Bytes {
        if self.valid {
            self.block.data.slice(self.value.0..self.value.1)
        } else {
            Bytes::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{internal_key, ValueKind};
    use proptest::prelude::*;
    use strata_wal::SeqNo;

    fn path() -> Arc<Path> {
        Arc::from(Path::new("/test/000001.sst"))
    }

    fn build(entries: &[(Vec<u8>, Vec<u8>)], interval: usize) -> Block {
        let mut b = BlockBuilder::new(interval);
        for (k, v) in entries {
            b.add(k, v);
        }
        let data = Bytes::copy_from_slice(b.finish());
        Block::decode(data, path(), 4096).unwrap()
    }

    fn collect_forward(it: &mut BlockIter) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        it.seek_to_first().unwrap();
        while it.valid() {
            out.push((it.key().to_vec(), it.value().to_vec()));
            it.next().unwrap();
        }
        out
    }

    fn collect_backward(it: &mut BlockIter) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        it.seek_to_last().unwrap();
        while it.valid() {
            out.push((it.key().to_vec(), it.value().to_vec()));
            it.prev().unwrap();
        }
        out.reverse();
        out
    }

    /// Sorted, unique internal keys with several versions per user key.
    fn model_entries() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        proptest::collection::btree_map(
            (
                proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0xff)], 0..6),
                0u64..5,
            ),
            proptest::collection::vec(any::<u8>(), 0..12),
            0..120,
        )
        .prop_map(|m| {
            let mut v: Vec<(Vec<u8>, Vec<u8>)> = m
                .into_iter()
                .map(|((uk, seq), val)| (internal_key(&uk, SeqNo(seq), ValueKind::Put), val))
                .collect();
            v.sort_by(|a, b| compare_internal(&a.0, &b.0));
            v
        })
    }

    fn target() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0xff)], 0..7),
            0u64..6,
        )
            .prop_map(|(uk, seq)| internal_key(&uk, SeqNo(seq), ValueKind::Put))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn block_matches_sorted_vec_model(
            entries in model_entries(),
            interval in 1usize..6,
            targets in proptest::collection::vec(target(), 1..20),
            steps in proptest::collection::vec(any::<bool>(), 0..40),
        ) {
            let block = build(&entries, interval);
            let mut it = block.iter();
            prop_assert_eq!(&collect_forward(&mut it), &entries);
            prop_assert_eq!(&collect_backward(&mut it), &entries);
            for t in &targets {
                // seek: first entry >= t.
                let want = entries.iter().position(|(k, _)| compare_internal(k, t) != Ordering::Less);
                it.seek(t).unwrap();
                match want {
                    Some(i) => {
                        prop_assert!(it.valid());
                        prop_assert_eq!(it.key(), &entries[i].0[..]);
                        prop_assert_eq!(&it.value()[..], &entries[i].1[..]);
                        // Walk from here with a random mix of next/prev.
                        let mut pos = i as isize;
                        for &fwd in &steps {
                            if fwd { it.next().unwrap(); pos += 1 } else { it.prev().unwrap(); pos -= 1 }
                            if pos < 0 || pos as usize >= entries.len() {
                                prop_assert!(!it.valid());
                                break;
                            }
                            prop_assert!(it.valid());
                            prop_assert_eq!(it.key(), &entries[pos as usize].0[..]);
                        }
                    }
                    None => prop_assert!(!it.valid()),
                }
                // seek_for_prev: last entry <= t.
                let want = entries.iter().rposition(|(k, _)| compare_internal(k, t) != Ordering::Greater);
                it.seek_for_prev(t).unwrap();
                match want {
                    Some(i) => {
                        prop_assert!(it.valid());
                        prop_assert_eq!(it.key(), &entries[i].0[..]);
                        prop_assert_eq!(&it.value()[..], &entries[i].1[..]);
                    }
                    None => prop_assert!(!it.valid()),
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(block) = Block::decode(Bytes::from(data.clone()), path(), 0) {
                let mut it = block.iter();
                let mut n = 0;
                let _ = it.seek_to_first();
                while it.valid() && n <= data.len() {
                    n += 1;
                    if it.next().is_err() { break }
                }
                prop_assert!(n <= data.len() / 3 + 1);
                let _ = it.seek_to_last();
                while it.valid() && n <= 2 * data.len() {
                    n += 1;
                    if it.prev().is_err() { break }
                }
                let _ = it.seek(&data);
                let _ = it.seek_for_prev(&data);
            }
        }
    }

    #[test]
    fn prev_crosses_restart_boundaries() {
        let entries: Vec<_> = (0..50u32)
            .map(|i| {
                (
                    internal_key(format!("key{i:03}").as_bytes(), SeqNo(1), ValueKind::Put),
                    i.to_le_bytes().to_vec(),
                )
            })
            .collect();
        for interval in [1, 2, 3, 16, 100] {
            let block = build(&entries, interval);
            assert_eq!(block.num_restarts(), 50usize.div_ceil(interval));
            let mut it = block.iter();
            assert_eq!(collect_backward(&mut it), entries);
            // Land exactly on every restart point and step back over it.
            for i in (interval..50).step_by(interval) {
                it.seek(&entries[i].0).unwrap();
                it.prev().unwrap();
                assert_eq!(it.key(), &entries[i - 1].0[..]);
            }
        }
    }

    #[test]
    fn empty_block_is_four_zero_bytes_and_never_valid() {
        let mut b = BlockBuilder::new(16);
        assert_eq!(b.finish(), &[0, 0, 0, 0]);
        let block = Block::decode(Bytes::from_static(&[0, 0, 0, 0]), path(), 0).unwrap();
        assert!(block.is_empty());
        let mut it = block.iter();
        it.seek_to_first().unwrap();
        assert!(!it.valid());
        it.seek_to_last().unwrap();
        assert!(!it.valid());
        it.seek(b"x").unwrap();
        assert!(!it.valid());
        it.seek_for_prev(b"x").unwrap();
        assert!(!it.valid());
    }

    #[test]
    fn bad_restart_arrays_are_corruption_with_block_offset() {
        let bad: [&[u8]; 5] = [
            &[],
            &[1, 0, 0],
            &[9, 0, 0, 0, 0, 0, 0, 0],       // data but no restart
            &[7, 0, 0, 0, 1, 0, 0, 0],       // first restart not 0
            &[0, 0, 0, 0, 0xff, 0xff, 0, 0], // too many restarts
        ];
        for data in bad {
            match Block::decode(Bytes::copy_from_slice(data), path(), 777) {
                Err(Error::Corruption { file, offset, .. }) => {
                    assert_eq!(&*file, Path::new("/test/000001.sst"));
                    assert_eq!(offset, 777);
                }
                other => panic!("{data:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_entry_is_an_error_from_the_cursor() {
        let entries = vec![
            (internal_key(b"a", SeqNo(1), ValueKind::Put), b"1".to_vec()),
            (internal_key(b"ab", SeqNo(1), ValueKind::Put), b"2".to_vec()),
        ];
        let mut b = BlockBuilder::new(16);
        for (k, v) in &entries {
            b.add(k, v);
        }
        let mut data = b.finish().to_vec();
        // The second entry starts at 3 + 9 + 1 = 13; claim it shares 100 bytes.
        data[13] = 100;
        let block = Block::decode(Bytes::from(data), path(), 5).unwrap();
        let mut it = block.iter();
        it.seek_to_first().unwrap();
        let e = it.next().unwrap_err();
        assert!(matches!(e, Error::Corruption { offset: 5, .. }), "{e}");
        assert!(!it.valid());
        assert!(it.key().is_empty());
    }
}
