//! User-facing iteration: [`Cursor`] (seek / next / prev) and [`Iter`] (a
//! `DoubleEndedIterator`), both reading one consistent snapshot.
//!
//! Built on the merging iterator over every memtable and table of a keyspace, they
//! show only the newest version of each user key visible at the snapshot, hide point
//! tombstones and keys covered by prefix tombstones, and respect `[lower, upper)`
//! bounds. A cursor pins the memtables and tables it reads (and the snapshot, when it
//! was given one) until it is dropped.

use std::sync::Arc;

use bytes::Bytes;
use strata_wal::SeqNo;

use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::key::{internal_key, parse_internal_key, seek_key, ParsedKey, ValueKind};
use crate::merge::MergingIterator;
use crate::snapshot::SnapshotGuard;
use crate::version::{covered_by_prefix_tombstone, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// A cursor over one keyspace at one snapshot. Keys and values it returns are valid
/// until it moves; clone the `Bytes` to keep them.
pub struct Cursor {
    inner: MergingIterator,
    snapshot: SeqNo,
    tombstones: Vec<(Vec<u8>, SeqNo)>,
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    key: Vec<u8>,
    value: Bytes,
    valid: bool,
    direction: Direction,
    version: Arc<Version>,
    _guard: Option<SnapshotGuard>,
}

impl Cursor {
    pub(crate) fn new(
        inner: MergingIterator,
        snapshot: SeqNo,
        tombstones: Vec<(Vec<u8>, SeqNo)>,
        lower: Option<Vec<u8>>,
        upper: Option<Vec<u8>>,
        version: Arc<Version>,
        guard: Option<SnapshotGuard>,
    ) -> Cursor {
        Cursor {
            inner,
            snapshot,
            tombstones: tombstones
                .into_iter()
                .filter(|(_, s)| *s <= snapshot)
                .collect(),
            lower,
            upper,
            key: Vec::new(),
            value: Bytes::new(),
            valid: false,
            direction: Direction::Forward,
            version,
            _guard: guard,
        }
    }

    /// Whether the cursor is on an entry.
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// The current key. Empty when not valid.
    pub fn key(&self) -> &[u8] {
        if self.valid {
            &self.key
        } else {
            &[]
        }
    }

    /// The current value. Empty when not valid.
    pub fn value(&self) -> &Bytes {
        &self.value
    }

    /// The sequence number this cursor reads at.
    pub fn snapshot_seq(&self) -> SeqNo {
        self.snapshot
    }

    /// Moves to the first key (at or after the lower bound).
    ///
    /// # Errors
    /// Corruption or I/O errors from the data read.
    pub fn seek_to_first(&mut self) -> Result<()> {
        match self.lower.clone() {
            Some(lower) => self.seek(&lower),
            None => {
                self.direction = Direction::Forward;
                self.inner.seek_to_first()?;
                self.find_next(None)
            }
        }
    }

    /// Moves to the last key (before the upper bound).
    ///
    /// # Errors
    /// Corruption or I/O errors from the data read.
    pub fn seek_to_last(&mut self) -> Result<()> {
        self.direction = Direction::Backward;
        match &self.upper {
            Some(upper) => {
                let target = seek_key(upper, SeqNo::MAX);
                self.inner.seek_for_prev(&target)?;
            }
            None => self.inner.seek_to_last()?,
        }
        self.find_prev()
    }

    /// Moves to the first key at or after `key` (and within bounds).
    ///
    /// # Errors
    /// Corruption or I/O errors from the data read.
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        let target = match &self.lower {
            Some(lower) if key < lower.as_slice() => lower.clone(),
            _ => key.to_vec(),
        };
        self.direction = Direction::Forward;
        self.inner.seek(&seek_key(&target, self.snapshot))?;
        self.find_next(None)
    }

    /// Moves to the last key at or before `key` (and within bounds).
    ///
    /// # Errors
    /// Corruption or I/O errors from the data read.
    pub fn seek_for_prev(&mut self, key: &[u8]) -> Result<()> {
        self.direction = Direction::Backward;
        match &self.upper {
            Some(upper) if key >= upper.as_slice() => {
                let target = seek_key(upper, SeqNo::MAX);
                self.inner.seek_for_prev(&target)?;
            }
            _ => {
                // After every version of `key`: the smallest trailer sorts last.
                let mut target = internal_key(key, SeqNo::ZERO, ValueKind::Put);
                let n = target.len();
                target[n - 8..].copy_from_slice(&0u64.to_le_bytes());
                self.inner.seek_for_prev(&target)?;
            }
        }
        self.find_prev()
    }

    /// Moves to the next key. Does nothing when not valid.
    ///
    /// # Errors
    /// Corruption or I/O errors from the data read.
    // A cursor moves and reports errors; it yields nothing, so it is not an Iterator
    // (that is what `Iter` is for), and `next`/`prev` read as in RocksDB's cursors.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        let current = std::mem::take(&mut self.key);
        if self.direction == Direction::Backward {
            self.inner.seek(&seek_key(&current, SeqNo::MAX))?;
            self.direction = Direction::Forward;
        }
        self.find_next(Some(current))
    }

    /// Moves to the previous key. Does nothing when not valid.
    ///
    /// # Errors
    /// Corruption or I/O errors from the data read.
    pub fn prev(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        if self.direction == Direction::Forward {
            let target = seek_key(&self.key, SeqNo::MAX);
            self.inner.seek_for_prev(&target)?;
            self.direction = Direction::Backward;
        }
        self.find_prev()
    }

    /// The separated value the current key's pointer (in `self.value`, written at
    /// `seq`) names, read from the value log of the version this cursor holds.
    fn resolve(&self, seq: SeqNo) -> Result<Bytes> {
        crate::value_log::resolve(&self.version.segments, &self.key, seq, &self.value)
    }

    fn corrupt(&self) -> Error {
        Error::corruption(
            "(internal iterator)",
            0,
            "malformed internal key in a table or memtable",
        )
    }

    /// Whether a version visible at the snapshot hides its key: a point tombstone, or
    /// a value under a newer prefix tombstone.
    fn hidden(&self, parsed: &ParsedKey<'_>) -> bool {
        parsed.kind == ValueKind::Delete
            || covered_by_prefix_tombstone(
                &self.tombstones,
                parsed.user_key,
                parsed.seq,
                self.snapshot,
            )
    }

    /// Forward: the first visible entry at or after the inner position, skipping
    /// every version of `skip`.
    fn find_next(&mut self, mut skip: Option<Vec<u8>>) -> Result<()> {
        self.valid = false;
        while self.inner.valid() {
            let parsed = parse_internal_key(self.inner.key()).ok_or_else(|| self.corrupt())?;
            if let Some(upper) = &self.upper {
                if parsed.user_key >= upper.as_slice() {
                    return Ok(());
                }
            }
            if skip.as_deref() == Some(parsed.user_key) || parsed.seq > self.snapshot {
                self.inner.next()?;
                continue;
            }
            if self.hidden(&parsed) {
                skip = Some(parsed.user_key.to_vec());
                self.inner.next()?;
                continue;
            }
            self.key.clear();
            self.key.extend_from_slice(parsed.user_key);
            self.value = self.inner.value();
            if parsed.kind == ValueKind::Pointer {
                self.value = self.resolve(parsed.seq)?;
            }
            self.valid = true;
            return Ok(());
        }
        Ok(())
    }

    /// Backward: walks back over the versions of each user key (oldest first) and
    /// settles on the newest visible one of the first key that has a live value.
    fn find_prev(&mut self) -> Result<()> {
        self.valid = false;
        let mut have_value = false;
        let mut saved_key: Vec<u8> = Vec::new();
        let mut saved_value = Bytes::new();
        // The saved version's sequence number when its value is a pointer.
        let mut saved_pointer: Option<SeqNo> = None;
        while self.inner.valid() {
            let parsed = parse_internal_key(self.inner.key()).ok_or_else(|| self.corrupt())?;
            if let Some(lower) = &self.lower {
                if parsed.user_key < lower.as_slice() {
                    break;
                }
            }
            if parsed.seq <= self.snapshot {
                if have_value && parsed.user_key < saved_key.as_slice() {
                    break;
                }
                if self.hidden(&parsed) {
                    have_value = false;
                    saved_key.clear();
                } else {
                    have_value = true;
                    saved_key.clear();
                    saved_key.extend_from_slice(parsed.user_key);
                    saved_value = self.inner.value();
                    saved_pointer = (parsed.kind == ValueKind::Pointer).then_some(parsed.seq);
                }
            }
            self.inner.prev()?;
        }
        if have_value {
            self.key = saved_key;
            self.value = saved_value;
            if let Some(seq) = saved_pointer {
                self.value = self.resolve(seq)?;
            }
            self.valid = true;
        }
        Ok(())
    }
}

/// A double-ended iterator of `(key, value)` pairs over a range of one keyspace, at
/// one snapshot. Forward and backward ends stop when they meet.
pub struct Iter {
    front: Option<Cursor>,
    back: Option<Cursor>,
    make: Box<dyn FnMut() -> Result<Cursor> + Send>,
    front_last: Option<Bytes>,
    back_last: Option<Bytes>,
    done: bool,
}

impl Iter {
    pub(crate) fn new(make: Box<dyn FnMut() -> Result<Cursor> + Send>) -> Iter {
        Iter {
            front: None,
            back: None,
            make,
            front_last: None,
            back_last: None,
            done: false,
        }
    }

    fn crossed(&self, key: &[u8], forward: bool) -> bool {
        if forward {
            self.back_last.as_deref().is_some_and(|b| key >= b)
        } else {
            self.front_last.as_deref().is_some_and(|f| key <= f)
        }
    }

    fn step(&mut self, forward: bool) -> Option<Result<(Bytes, Bytes)>> {
        if self.done {
            return None;
        }
        let slot_empty = if forward {
            self.front.is_none()
        } else {
            self.back.is_none()
        };
        if slot_empty {
            let mut cursor = match (self.make)() {
                Ok(c) => c,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let positioned = if forward {
                cursor.seek_to_first()
            } else {
                cursor.seek_to_last()
            };
            if let Err(e) = positioned {
                self.done = true;
                return Some(Err(e));
            }
            if forward {
                self.front = Some(cursor);
            } else {
                self.back = Some(cursor);
            }
        } else {
            let cursor = if forward {
                self.front.as_mut()
            } else {
                self.back.as_mut()
            }?;
            let moved = if forward {
                cursor.next()
            } else {
                cursor.prev()
            };
            if let Err(e) = moved {
                self.done = true;
                return Some(Err(e));
            }
        }
        let cursor = if forward {
            self.front.as_ref()
        } else {
            self.back.as_ref()
        }?;
        if !cursor.valid() || self.crossed(cursor.key(), forward) {
            self.done = true;
            return None;
        }
        let key = Bytes::copy_from_slice(cursor.key());
        let value = cursor.value().clone();
        if forward {
            self.front_last = Some(key.clone());
        } else {
            self.back_last = Some(key.clone());
        }
        Some(Ok((key, value)))
    }
}

impl Iterator for Iter {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_successor_cases() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
