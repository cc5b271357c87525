//! What `db_stress` writes: the keyspaces and their options, the operations of the
//! logged writer threads and the event batches of the bypass threads, and the values.
//!
//! Everything is a pure function of `(seed, thread, number)`, so the parent can
//! regenerate any operation the child acknowledged without being sent its contents,
//! and every value carries the thread, the operation number and the key it was written
//! under (a value read back under another key, or one never written, does not
//! validate).

use std::time::Duration;

use strata::{CompactionStyle, Compression, Durability, KeyspaceOptions, Options};

use crate::rng::Rng;

/// The logged keyspaces: one per durability and compaction policy, two of them
/// separating values, one keeping history for time-travel reads.
pub const LOGGED: [&str; 3] = ["sync_leveled", "buffered_tiered", "buffered_hca"];
/// Index in [`LOGGED`] of the keyspace that keeps history (`snapshot_at` reads).
pub const HISTORY_KS: usize = 2;
/// The WAL-bypass keyspace the event threads append to.
pub const BYPASS: &str = "bypass_events";
/// Keys each logged thread owns per keyspace (`t{t}/k{i:02}`), besides its marker.
pub const KEYS_PER_THREAD: u64 = 48;
/// Events of a bypass thread per block; the batch that starts block `b` deletes block
/// `b - 2` with a prefix delete, so at most two blocks are alive.
pub const EVENTS_PER_BLOCK: u64 = 400;
/// History window of [`HISTORY_KS`], in sequence numbers.
pub const HISTORY_SEQS: u64 = 40_000;

/// Options of the database: small WAL segments so they rotate and are deleted, and
/// enough WAL retention that the change stream usually reaches back to the replica.
pub fn db_options() -> Options {
    Options {
        wal_segment_bytes: 64 << 10,
        max_wal_bytes: 512 << 10,
        wal_retention_bytes: 4 << 20,
        ..Options::default()
    }
}

/// Small memtables, tables and levels, so flushes, compactions of several levels and
/// value-log collections happen every few hundred operations.
fn small(compaction: CompactionStyle) -> KeyspaceOptions {
    KeyspaceOptions {
        memtable_bytes: 32 << 10,
        block_size: 1024,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 8,
        l0_stop_trigger: 12,
        base_level_bytes: 96 << 10,
        level_size_ratio: 4,
        target_table_bytes: 48 << 10,
        compaction,
        vlog_gc_garbage_ratio: 0.3,
        ..KeyspaceOptions::default()
    }
}

/// Options of each keyspace by name.
pub fn keyspace_options(name: &str) -> KeyspaceOptions {
    match name {
        "sync_leveled" => KeyspaceOptions {
            durability: Durability::Sync,
            value_threshold: Some(256),
            ..small(CompactionStyle::Leveled)
        },
        "buffered_tiered" => KeyspaceOptions {
            durability: Durability::Buffered,
            compression: Compression::Zstd,
            value_threshold: Some(512),
            ..small(CompactionStyle::Tiered)
        },
        "buffered_hca" => KeyspaceOptions {
            durability: Durability::Buffered,
            value_threshold: None,
            history_seqs: Some(HISTORY_SEQS),
            ..small(CompactionStyle::Hca)
        },
        BYPASS => KeyspaceOptions {
            durability: Durability::Bypass,
            value_threshold: Some(1024),
            bypass_flush_interval: Some(Duration::from_millis(25)),
            bypass_max_unflushed_bytes: Some(96 << 10),
            ..small(CompactionStyle::Hca)
        },
        other => panic!("db_stress has no keyspace {other}"),
    }
}

/// One change of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put the value of `(thread, op, key)` of length `len`.
    Put {
        /// Index in [`LOGGED`].
        ks: usize,
        /// The key.
        key: Vec<u8>,
        /// The value's length.
        len: usize,
    },
    /// Delete one key.
    Delete {
        /// Index in [`LOGGED`].
        ks: usize,
        /// The key.
        key: Vec<u8>,
    },
    /// Delete every key starting with the prefix.
    DeletePrefix {
        /// Index in [`LOGGED`].
        ks: usize,
        /// The prefix.
        prefix: Vec<u8>,
    },
}

/// One acknowledged unit of a logged writer thread: a single write, or a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The changes; more than one means one `WriteBatch`.
    pub actions: Vec<Action>,
    /// Written with `WriteOptions { durability: Some(Sync) }` whatever the keyspaces.
    pub sync_override: bool,
}

/// SplitMix64's finaliser over several words.
pub fn mix(words: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &w in words {
        let mut z = (h ^ w).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h = z ^ (z >> 31);
    }
    h
}

/// The prefix of every key logged thread `thread` owns.
pub fn thread_prefix(thread: u64) -> Vec<u8> {
    format!("t{thread}/").into_bytes()
}

fn owned_key(thread: u64, index: u64) -> Vec<u8> {
    format!("t{thread}/k{index:02}").into_bytes()
}

/// The key every operation touching a keyspace also sets: the operation's number.
pub fn marker_key(thread: u64) -> Vec<u8> {
    format!("t{thread}/m").into_bytes()
}

fn value_len(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=1 => 8192 + rng.below(8192) as usize,
        2..=11 => 300 + rng.below(2700) as usize,
        _ => 16 + rng.below(184) as usize,
    }
}

/// Operation `op` (numbered from 1) of logged thread `thread`.
pub fn logged_op(seed: u64, thread: u64, op: u64) -> Op {
    let mut rng = Rng::new(mix(&[seed, 1, thread, op]));
    let mut actions = Vec::new();
    let mut touched = [false; LOGGED.len()];
    let put = |rng: &mut Rng, actions: &mut Vec<Action>, ks: usize| {
        let key = owned_key(thread, rng.below(KEYS_PER_THREAD));
        actions.push(Action::Put {
            ks,
            key,
            len: value_len(rng),
        });
    };
    let kind = rng.below(100);
    match kind {
        // A batch across two or three logged keyspaces.
        0..=44 => {
            let first = rng.below(3) as usize;
            let count = 2 + rng.below(2) as usize;
            for i in 0..count {
                let ks = (first + i) % LOGGED.len();
                touched[ks] = true;
                for _ in 0..=rng.below(3) {
                    put(&mut rng, &mut actions, ks);
                }
            }
        }
        // One put.
        45..=59 => {
            let ks = rng.below(3) as usize;
            put(&mut rng, &mut actions, ks);
        }
        // Deletes in one keyspace and a put in another, in one batch.
        60..=71 => {
            let ks = rng.below(3) as usize;
            touched[ks] = true;
            for _ in 0..=rng.below(2) {
                actions.push(Action::Delete {
                    ks,
                    key: owned_key(thread, rng.below(KEYS_PER_THREAD)),
                });
            }
            let other = (ks + 1) % LOGGED.len();
            touched[other] = true;
            put(&mut rng, &mut actions, other);
        }
        // A prefix delete (`t{t}/k{d}` matches ten keys) with the marker.
        72..=79 => {
            let ks = rng.below(3) as usize;
            touched[ks] = true;
            actions.push(Action::DeletePrefix {
                ks,
                prefix: format!("t{thread}/k{}", rng.below(5)).into_bytes(),
            });
        }
        // Several puts in one keyspace.
        _ => {
            let ks = rng.below(3) as usize;
            touched[ks] = true;
            for _ in 0..2 + rng.below(3) {
                put(&mut rng, &mut actions, ks);
            }
        }
    }
    for (ks, &t) in touched.iter().enumerate() {
        if t {
            actions.push(Action::Put {
                ks,
                key: marker_key(thread),
                len: 24,
            });
        }
    }
    Op {
        actions,
        sync_override: rng.below(10) == 0,
    }
}

/// The events of one bypass batch: `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventBatch {
    /// First event number (events are numbered from 1).
    pub first: u64,
    /// Last event number.
    pub last: u64,
}

/// The bypass batch of thread `thread` starting at event `first`: one to three events.
pub fn event_batch(seed: u64, thread: u64, first: u64) -> EventBatch {
    let mut rng = Rng::new(mix(&[seed, 2, thread, first]));
    EventBatch {
        first,
        last: first + rng.below(3),
    }
}

/// Block of event `n`.
pub fn event_block(n: u64) -> u64 {
    n / EVENTS_PER_BLOCK
}

/// The prefix of bypass thread `thread`'s events.
pub fn event_thread_prefix(thread: u64) -> Vec<u8> {
    format!("e{thread}/").into_bytes()
}

/// The prefix of one block of bypass thread `thread`'s events.
pub fn event_block_prefix(thread: u64, block: u64) -> Vec<u8> {
    format!("e{thread}/{block:06}/").into_bytes()
}

/// The key of event `n` of bypass thread `thread`.
pub fn event_key(thread: u64, n: u64) -> Vec<u8> {
    let mut key = event_block_prefix(thread, event_block(n));
    key.extend_from_slice(format!("{n:010}").as_bytes());
    key
}

/// The key each bypass batch sets to its last event.
pub fn cursor_key(thread: u64) -> Vec<u8> {
    format!("c{thread}").into_bytes()
}

/// Length of the value of event `n` of bypass thread `thread`.
pub fn event_len(seed: u64, thread: u64, n: u64) -> usize {
    let r = mix(&[seed, 3, thread, n]);
    if r.is_multiple_of(50) {
        2048 + (r >> 8) as usize % 4096
    } else {
        20 + (r >> 8) as usize % 280
    }
}

/// The events alive when `last` is the newest event of a bypass thread: every event up
/// to it in its block and the block before (older blocks were deleted).
pub fn alive_events(last: u64) -> std::ops::RangeInclusive<u64> {
    let floor = (event_block(last).saturating_sub(1) * EVENTS_PER_BLOCK).max(1);
    floor..=last
}

/// The value written by `(thread, number)` under `key`, of length `len` (at least the
/// header's length): `"{thread}:{number}:"` then bytes derived from all three.
pub fn value(thread: u64, number: u64, key: &[u8], len: usize) -> Vec<u8> {
    let mut v = format!("{thread}:{number}:").into_bytes();
    let key_hash = hash_bytes(key);
    let mut word = 0;
    while v.len() < len {
        let bytes = mix(&[thread, number, key_hash, word]).to_le_bytes();
        let take = (len - v.len()).min(8);
        v.extend_from_slice(&bytes[..take]);
        word += 1;
    }
    v
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `v` is a value `value()` produced for `key` (some thread, number and length).
pub fn value_is_valid(key: &[u8], v: &[u8]) -> bool {
    let Some((thread, number)) = value_origin(v) else {
        return false;
    };
    value(thread, number, key, v.len()) == v
}

/// The `(thread, number)` a value names in its header.
pub fn value_origin(v: &[u8]) -> Option<(u64, u64)> {
    let head = &v[..v.len().min(48)];
    let first = head.iter().position(|&b| b == b':')?;
    let second = first + 1 + head[first + 1..].iter().position(|&b| b == b':')?;
    let thread = std::str::from_utf8(&head[..first]).ok()?.parse().ok()?;
    let number = std::str::from_utf8(&head[first + 1..second])
        .ok()?
        .parse()
        .ok()?;
    Some((thread, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_validate_only_under_their_key() {
        let v = value(3, 77, b"t3/k05", 300);
        assert_eq!(v.len(), 300);
        assert!(value_is_valid(b"t3/k05", &v));
        assert!(!value_is_valid(b"t3/k06", &v));
        let mut flipped = v.clone();
        flipped[200] ^= 1;
        assert!(!value_is_valid(b"t3/k05", &flipped));
        assert_eq!(value_origin(&v), Some((3, 77)));
        assert!(!value_is_valid(b"k", b"garbage"));
    }

    #[test]
    fn operations_are_deterministic_and_mark_every_keyspace_they_touch() {
        for n in 1..500 {
            let op = logged_op(9, 1, n);
            assert_eq!(op, logged_op(9, 1, n));
            assert!(!op.actions.is_empty());
            for a in &op.actions {
                if let Action::Delete { ks, .. } | Action::DeletePrefix { ks, .. } = a {
                    assert!(op.actions.iter().any(
                        |b| matches!(b, Action::Put { ks: k, key, .. } if k == ks && *key == marker_key(1))
                    ));
                }
            }
        }
    }

    #[test]
    fn alive_events_keep_the_current_and_previous_block() {
        assert_eq!(alive_events(1), 1..=1);
        assert_eq!(alive_events(EVENTS_PER_BLOCK - 1), 1..=EVENTS_PER_BLOCK - 1);
        assert_eq!(
            alive_events(2 * EVENTS_PER_BLOCK + 5),
            EVENTS_PER_BLOCK..=2 * EVENTS_PER_BLOCK + 5
        );
        assert_eq!(event_block(event_batch(1, 0, 10).last), 0);
    }
}
