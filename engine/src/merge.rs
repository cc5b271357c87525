//! The merging iterator: many sorted cursors as one, in internal-key order.
//!
//! A linear scan picks the smallest (or largest) child at each step: with the handful
//! of sources an LSM read has (memtables, level-0 tables, one cursor per level) this
//! beats a heap. Equal internal keys from two children (the same version flushed twice
//! after a crash) are returned once each; readers skip the duplicate. Changing
//! direction re-seeks every child, as in LevelDB.

use std::cmp::Ordering;

use bytes::Bytes;

use crate::error::Result;
use crate::iter::InternalIterator;
use crate::key::compare_internal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// Many cursors merged into one.
pub struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    current: Option<usize>,
    direction: Direction,
}

impl MergingIterator {
    /// Merges `children`; positions nothing until a seek.
    pub fn new(children: Vec<Box<dyn InternalIterator>>) -> Self {
        MergingIterator {
            children,
            current: None,
            direction: Direction::Forward,
        }
    }

    fn find_smallest(&mut self) {
        let mut best: Option<usize> = None;
        for (i, c) in self.children.iter().enumerate() {
            if !c.valid() {
                continue;
            }
            best = match best {
                Some(b)
                    if compare_internal(self.children[b].key(), c.key()) != Ordering::Greater =>
                {
                    Some(b)
                }
                _ => Some(i),
            };
        }
        self.current = best;
    }

    fn find_largest(&mut self) {
        let mut best: Option<usize> = None;
        for (i, c) in self.children.iter().enumerate().rev() {
            if !c.valid() {
                continue;
            }
            best = match best {
                Some(b) if compare_internal(self.children[b].key(), c.key()) != Ordering::Less => {
                    Some(b)
                }
                _ => Some(i),
            };
        }
        self.current = best;
    }
}

impl InternalIterator for MergingIterator {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        for c in &mut self.children {
            c.seek_to_first()?;
        }
        self.direction = Direction::Forward;
        self.find_smallest();
        Ok(())
    }

    fn seek_to_last(&mut self) -> Result<()> {
        for c in &mut self.children {
            c.seek_to_last()?;
        }
        self.direction = Direction::Backward;
        self.find_largest();
        Ok(())
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        for c in &mut self.children {
            c.seek(target)?;
        }
        self.direction = Direction::Forward;
        self.find_smallest();
        Ok(())
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        for c in &mut self.children {
            c.seek_for_prev(target)?;
        }
        self.direction = Direction::Backward;
        self.find_largest();
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        let Some(cur) = self.current else {
            return Ok(());
        };
        if self.direction == Direction::Backward {
            // Put every other child on the first entry after the current key.
            let key = self.children[cur].key().to_vec();
            for (i, c) in self.children.iter_mut().enumerate() {
                if i == cur {
                    continue;
                }
                c.seek(&key)?;
                if c.valid() && compare_internal(c.key(), &key) == Ordering::Equal {
                    c.next()?;
                }
            }
            self.direction = Direction::Forward;
        }
        self.children[cur].next()?;
        self.find_smallest();
        Ok(())
    }

    fn prev(&mut self) -> Result<()> {
        let Some(cur) = self.current else {
            return Ok(());
        };
        if self.direction == Direction::Forward {
            let key = self.children[cur].key().to_vec();
            for (i, c) in self.children.iter_mut().enumerate() {
                if i == cur {
                    continue;
                }
                c.seek_for_prev(&key)?;
                if c.valid() && compare_internal(c.key(), &key) == Ordering::Equal {
                    c.prev()?;
                }
            }
            self.direction = Direction::Backward;
        }
        self.children[cur].prev()?;
        self.find_largest();
        Ok(())
    }

    fn key(&self) -> &[u8] {
        self.current.map_or(&[], |i| self.children[i].key())
    }

    fn value(&self) -> Bytes {
        self.current
            .map(|i| self.children[i].value())
            .unwrap_or_default()
    }
}

/// A cursor over one sorted level (tables not overlapping, in key order) that opens
/// only the table it is in, so a seek touches one table per level instead of all.
pub struct LevelIterator {
    tables: Vec<std::sync::Arc<crate::version::TableHandle>>,
    index: usize,
    current: Option<crate::table::TableIter>,
}

impl LevelIterator {
    /// A cursor over `tables`, which must be sorted by key and not overlap.
    pub fn new(tables: Vec<std::sync::Arc<crate::version::TableHandle>>) -> Self {
        LevelIterator {
            tables,
            index: 0,
            current: None,
        }
    }

    fn open(&mut self, index: usize) {
        self.index = index;
        self.current = self.tables.get(index).map(|t| t.table.iter());
    }

    /// Moves forward over exhausted tables.
    fn skip_forward(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            if self.index + 1 >= self.tables.len() {
                self.current = None;
                return Ok(());
            }
            self.open(self.index + 1);
            if let Some(c) = self.current.as_mut() {
                c.seek_to_first()?;
            }
        }
        Ok(())
    }

    /// Moves backward over exhausted tables.
    fn skip_backward(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            if self.index == 0 {
                self.current = None;
                return Ok(());
            }
            self.open(self.index - 1);
            if let Some(c) = self.current.as_mut() {
                c.seek_to_last()?;
            }
        }
        Ok(())
    }
}

impl InternalIterator for LevelIterator {
    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.valid())
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.open(0);
        if let Some(c) = self.current.as_mut() {
            c.seek_to_first()?;
        }
        self.skip_forward()
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.open(self.tables.len().saturating_sub(1));
        if let Some(c) = self.current.as_mut() {
            c.seek_to_last()?;
        }
        self.skip_backward()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        // The first table whose largest key is at or after the target.
        let idx = self
            .tables
            .partition_point(|t| compare_internal(&t.meta.largest, target) == Ordering::Less);
        self.open(idx);
        if let Some(c) = self.current.as_mut() {
            c.seek(target)?;
        }
        self.skip_forward()
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        // The last table whose smallest key is at or before the target.
        let idx = self
            .tables
            .partition_point(|t| compare_internal(&t.meta.smallest, target) != Ordering::Greater);
        if idx == 0 {
            self.current = None;
            return Ok(());
        }
        self.open(idx - 1);
        if let Some(c) = self.current.as_mut() {
            c.seek_for_prev(target)?;
        }
        self.skip_backward()
    }

    fn next(&mut self) -> Result<()> {
        if let Some(c) = self.current.as_mut() {
            c.next()?;
        }
        self.skip_forward()
    }

    fn prev(&mut self) -> Result<()> {
        if let Some(c) = self.current.as_mut() {
            c.prev()?;
        }
        self.skip_backward()
    }

    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.key())
    }

    fn value(&self) -> Bytes {
        self.current.as_ref().map(|c| c.value()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{push_internal_key, ValueKind};
    use strata_wal::SeqNo;

    /// A cursor over a sorted vector.
    struct VecIter {
        entries: Vec<(Vec<u8>, Bytes)>,
        pos: Option<usize>,
    }

    impl InternalIterator for VecIter {
        fn valid(&self) -> bool {
            self.pos.is_some()
        }
        fn seek_to_first(&mut self) -> Result<()> {
            self.pos = (!self.entries.is_empty()).then_some(0);
            Ok(())
        }
        fn seek_to_last(&mut self) -> Result<()> {
            self.pos = self.entries.len().checked_sub(1);
            Ok(())
        }
        fn seek(&mut self, target: &[u8]) -> Result<()> {
            let i = self
                .entries
                .partition_point(|(k, _)| compare_internal(k, target) == Ordering::Less);
            self.pos = (i < self.entries.len()).then_some(i);
            Ok(())
        }
        fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
            let i = self
                .entries
                .partition_point(|(k, _)| compare_internal(k, target) != Ordering::Greater);
            self.pos = i.checked_sub(1);
            Ok(())
        }
        fn next(&mut self) -> Result<()> {
            self.pos = self.pos.map(|p| p + 1).filter(|&p| p < self.entries.len());
            Ok(())
        }
        fn prev(&mut self) -> Result<()> {
            self.pos = self.pos.and_then(|p| p.checked_sub(1));
            Ok(())
        }
        fn key(&self) -> &[u8] {
            &self.entries[self.pos.expect("valid")].0
        }
        fn value(&self) -> Bytes {
            self.entries[self.pos.expect("valid")].1.clone()
        }
    }

    fn ikey(user: u32, seq: u64) -> Vec<u8> {
        let mut k = Vec::new();
        push_internal_key(&mut k, &user.to_be_bytes(), SeqNo(seq), ValueKind::Put);
        k
    }

    /// Random children (runs of neighbouring keys in one child, as a large last level
    /// gives, and several versions of a key) walked by random moves — seeks, steps both
    /// ways, direction changes: every position equals the sorted union. (Equal
    /// internal keys in two children are returned once per child going one way, and
    /// skipped across a direction change; readers drop such duplicates anyway.)
    #[test]
    fn merged_walks_equal_the_sorted_union_in_both_directions() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for round in 0..200 {
            let children_count = 1 + rand(5) as usize;
            let mut children: Vec<Vec<(Vec<u8>, Bytes)>> = vec![Vec::new(); children_count];
            let mut all: Vec<(Vec<u8>, usize)> = Vec::new();
            let mut user = 0u32;
            for seq in 1..=rand(120) {
                // Sometimes another version of the same user key (a newer number).
                user += rand(3) as u32;
                // Runs: the same child for several keys in a row, as a big last level.
                let child = if rand(4) == 0 {
                    rand(children_count as u64) as usize
                } else {
                    0
                };
                children[child].push((
                    ikey(user, seq),
                    Bytes::from(format!("{round}:{user}:{seq}")),
                ));
                all.push((ikey(user, seq), child));
            }
            for c in &mut children {
                c.sort_by(|a, b| compare_internal(&a.0, &b.0));
            }
            // The expected order: by key, ties by child index (what the merge prefers).
            all.sort_by(|a, b| compare_internal(&a.0, &b.0).then(a.1.cmp(&b.1)));
            let expected: Vec<Vec<u8>> = all.iter().map(|(k, _)| k.clone()).collect();
            let mut merged = MergingIterator::new(
                children
                    .into_iter()
                    .map(|entries| {
                        Box::new(VecIter { entries, pos: None }) as Box<dyn InternalIterator>
                    })
                    .collect(),
            );
            // Position in `expected` the merge should be at (None: off either end).
            let mut at: Option<usize> = None;
            for _ in 0..300 {
                match rand(6) {
                    0 => {
                        merged.seek_to_first().unwrap();
                        at = (!expected.is_empty()).then_some(0);
                    }
                    1 => {
                        merged.seek_to_last().unwrap();
                        at = expected.len().checked_sub(1);
                    }
                    2 | 3 if at.is_some() => {
                        merged.next().unwrap();
                        at = at.map(|i| i + 1).filter(|&i| i < expected.len());
                    }
                    4 | 5 if at.is_some() => {
                        merged.prev().unwrap();
                        at = at.and_then(|i| i.checked_sub(1));
                    }
                    _ => {
                        let target = ikey(rand(u64::from(user) + 2) as u32, 3);
                        merged.seek(&target).unwrap();
                        let i = expected
                            .partition_point(|k| compare_internal(k, &target) == Ordering::Less);
                        at = (i < expected.len()).then_some(i);
                    }
                }
                match at {
                    None => assert!(!merged.valid(), "round {round}: past the end"),
                    Some(i) => {
                        assert!(merged.valid(), "round {round}: at {i}");
                        assert_eq!(
                            merged.key(),
                            expected[i].as_slice(),
                            "round {round}: at {i}"
                        );
                    }
                }
            }
        }
    }
}
