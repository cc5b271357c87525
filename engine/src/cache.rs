//! The block cache: decompressed data blocks shared by every table of the database,
//! keyed by `(table id, block offset)` and bounded in bytes.
//!
//! It is split into up to 16 shards, each an LRU list under its own
//! `parking_lot::Mutex`, so concurrent readers rarely contend; a key's shard is
//! picked by a hash of the key. Values are [`Bytes`]: a hit hands out a reference to
//! the cached block (no copy), and an evicted block stays alive while a reader still
//! holds it. Usage counts the blocks' lengths only (not the few dozen bytes of
//! bookkeeping per entry). A block larger than a shard's capacity is not cached.
//!
//! Table ids are never reused, so entries of deleted tables are never wrong, only
//! wasted until evicted; [`BlockCache::erase_table`] drops them early.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::ids::TableId;

/// Most shards a cache is split into.
pub const MAX_SHARDS: usize = 16;
/// Smallest capacity per shard: smaller caches use fewer shards, so that a shard
/// still holds a useful number of blocks.
pub const MIN_SHARD_CAPACITY: usize = 256 * 1024;

type Key = (TableId, u64);

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Node {
    key: Key,
    value: Bytes,
    prev: usize,
    next: usize,
}

/// One LRU list: a slab of nodes linked most recent first, and a map to them.
#[derive(Debug, Default)]
struct Shard {
    capacity: usize,
    usage: usize,
    map: HashMap<Key, usize>,
    nodes: Vec<Node>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Shard {
            capacity,
            head: NIL,
            tail: NIL,
            ..Shard::default()
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.nodes[i].prev, self.nodes[i].next);
        match prev {
            NIL => self.head = next,
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n].prev = prev,
        }
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        match self.head {
            NIL => self.tail = i,
            h => self.nodes[h].prev = i,
        }
        self.head = i;
    }

    fn get(&mut self, key: &Key) -> Option<Bytes> {
        match self.map.get(key).copied() {
            Some(i) => {
                self.hits += 1;
                if self.head != i {
                    self.unlink(i);
                    self.push_front(i);
                }
                Some(self.nodes[i].value.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    fn remove_node(&mut self, i: usize) {
        self.unlink(i);
        let key = self.nodes[i].key;
        let value = std::mem::take(&mut self.nodes[i].value);
        self.usage -= value.len();
        self.map.remove(&key);
        self.free.push(i);
    }

    fn insert(&mut self, key: Key, value: Bytes) {
        if value.len() > self.capacity {
            return;
        }
        self.inserts += 1;
        if let Some(&i) = self.map.get(&key) {
            self.usage = self.usage - self.nodes[i].value.len() + value.len();
            self.nodes[i].value = value;
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
        } else {
            self.usage += value.len();
            let node = Node {
                key,
                value,
                prev: NIL,
                next: NIL,
            };
            let i = match self.free.pop() {
                Some(i) => {
                    self.nodes[i] = node;
                    i
                }
                None => {
                    self.nodes.push(node);
                    self.nodes.len() - 1
                }
            };
            self.map.insert(key, i);
            self.push_front(i);
        }
        while self.usage > self.capacity && self.tail != NIL {
            let t = self.tail;
            self.remove_node(t);
            self.evictions += 1;
        }
    }

    fn erase_table(&mut self, table: TableId) {
        let doomed: Vec<usize> = self
            .map
            .iter()
            .filter(|(k, _)| k.0 == table)
            .map(|(_, &i)| i)
            .collect();
        for i in doomed {
            self.remove_node(i);
        }
    }
}

/// Counters of a [`BlockCache`], summed over its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups that found the block.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Blocks inserted (replacements included, oversized blocks not).
    pub inserts: u64,
    /// Blocks evicted to make room.
    pub evictions: u64,
    /// Bytes of blocks held now.
    pub usage: u64,
    /// Blocks held now.
    pub entries: u64,
    /// The configured capacity in bytes.
    pub capacity: u64,
}

impl CacheStats {
    /// Hits divided by lookups (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// A sharded LRU cache of decompressed blocks, shared as `Arc<BlockCache>` by every
/// open table. `Send + Sync`; all methods take `&self`.
#[derive(Debug)]
pub struct BlockCache {
    shards: Box<[Mutex<Shard>]>,
    capacity: usize,
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` of blocks. `0` disables caching:
    /// lookups miss and inserts are dropped.
    pub fn new(capacity_bytes: usize) -> BlockCache {
        let mut shards = MAX_SHARDS;
        while shards > 1 && capacity_bytes / shards < MIN_SHARD_CAPACITY {
            shards /= 2;
        }
        let per_shard = capacity_bytes / shards;
        BlockCache {
            shards: (0..shards)
                .map(|_| Mutex::new(Shard::new(per_shard)))
                .collect(),
            capacity: per_shard * shards,
        }
    }

    /// The capacity in bytes (the requested one rounded down to a multiple of the
    /// shard count).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let mut h = key.0 .0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key.1;
        h ^= h >> 29;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 32;
        &self.shards[(h as usize) % self.shards.len()]
    }

    /// The cached block at `offset` of `table`, marking it recently used.
    pub fn get(&self, table: TableId, offset: u64) -> Option<Bytes> {
        let key = (table, offset);
        self.shard(&key).lock().get(&key)
    }

    /// Caches `block` (decompressed contents) for `offset` of `table`, replacing an
    /// older entry and evicting the least recently used blocks of its shard until
    /// the shard is within capacity. A block larger than a shard is not cached.
    pub fn insert(&self, table: TableId, offset: u64, block: Bytes) {
        let key = (table, offset);
        self.shard(&key).lock().insert(key, block);
    }

    /// Drops every block of `table` (for example after the table file was deleted).
    /// Walks every entry: O(entries).
    pub fn erase_table(&self, table: TableId) {
        for s in self.shards.iter() {
            s.lock().erase_table(table);
        }
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let mut st = CacheStats {
            capacity: self.capacity as u64,
            ..CacheStats::default()
        };
        for s in self.shards.iter() {
            let s = s.lock();
            st.hits += s.hits;
            st.misses += s.misses;
            st.inserts += s.inserts;
            st.evictions += s.evictions;
            st.usage += s.usage as u64;
            st.entries += s.map.len() as u64;
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn block(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let c = BlockCache::new(1 << 20);
        assert!(c.get(TableId(1), 0).is_none());
        c.insert(TableId(1), 0, block(100, 7));
        assert_eq!(c.get(TableId(1), 0).unwrap(), block(100, 7));
        assert!(c.get(TableId(2), 0).is_none());
        assert!(c.get(TableId(1), 100).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.usage, s.entries), (1, 3, 100, 1));
        assert!((s.hit_rate() - 0.25).abs() < 1e-9);
        // Replacement adjusts usage.
        c.insert(TableId(1), 0, block(40, 8));
        assert_eq!(c.stats().usage, 40);
        assert_eq!(c.get(TableId(1), 0).unwrap(), block(40, 8));
    }

    #[test]
    fn eviction_keeps_usage_within_capacity_and_drops_lru_first() {
        // One shard of 4 KiB: exact LRU order is observable.
        let c = BlockCache::new(4096);
        assert_eq!(c.shard_count(), 1);
        for i in 0..4u64 {
            c.insert(TableId(1), i, block(1000, i as u8));
        }
        assert!(c.get(TableId(1), 0).is_some()); // 0 becomes most recent
        c.insert(TableId(1), 4, block(1000, 4)); // evicts 1, the least recent
        assert!(c.get(TableId(1), 1).is_none());
        for i in [0, 2, 3, 4] {
            assert!(c.get(TableId(1), i).is_some(), "{i}");
        }
        assert!(c.stats().usage <= 4096);
        assert_eq!(c.stats().evictions, 1);
        // Oversized blocks are refused.
        c.insert(TableId(9), 0, block(5000, 1));
        assert!(c.get(TableId(9), 0).is_none());
        // Many inserts across shards never exceed capacity.
        let big = BlockCache::new(8 << 20);
        assert_eq!(big.shard_count(), MAX_SHARDS);
        for i in 0..10_000u64 {
            big.insert(
                TableId(i % 7),
                i * 4096,
                block(1000 + (i % 3000) as usize, 0),
            );
            assert!(big.stats().usage <= big.capacity() as u64);
        }
        assert!(big.stats().evictions > 0);
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let c = BlockCache::new(0);
        c.insert(TableId(1), 0, block(1, 1));
        assert!(c.get(TableId(1), 0).is_none());
        assert_eq!(c.stats().usage, 0);
        assert_eq!(c.capacity(), 0);
    }

    #[test]
    fn erase_table_drops_only_that_table() {
        let c = BlockCache::new(1 << 20);
        for i in 0..50u64 {
            c.insert(TableId(i % 2), i, block(10, 0));
        }
        c.erase_table(TableId(0));
        let s = c.stats();
        assert_eq!((s.entries, s.usage), (25, 250));
        assert!(c.get(TableId(0), 0).is_none());
        assert!(c.get(TableId(1), 1).is_some());
        // Freed slots are reused.
        for i in 0..25u64 {
            c.insert(TableId(3), i, block(10, 0));
        }
        assert_eq!(c.stats().entries, 50);
    }

    #[test]
    fn concurrent_readers_and_writers_stay_consistent() {
        let c = Arc::new(BlockCache::new(1 << 20));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let (table, off) = (TableId(x % 5), (x >> 8) % 600);
                        // A block's content is a function of its key, so any hit can
                        // be checked.
                        let fill = (table.0 * 31 + off) as u8;
                        if x % 3 == 0 {
                            c.insert(table, off, block(500 + (off as usize % 5000), fill));
                        } else if let Some(b) = c.get(table, off) {
                            assert!(b.iter().all(|&v| v == fill));
                            assert_eq!(b.len(), 500 + (off as usize % 5000));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = c.stats();
        assert!(s.usage <= c.capacity() as u64);
        assert!(s.hits > 0 && s.misses > 0 && s.evictions > 0);
        assert_eq!(s.hits + s.misses, 4 * 20_000 - s.inserts);
    }
}
