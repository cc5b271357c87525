//! Criterion benchmarks of the memtable (`cargo bench -p strata-bench --bench memtable`).
//!
//! Keys are 16 bytes, values 100 bytes (see `common/mod.rs`); figures are per entry.
//!
//! - `memtable_insert/{sequential,random}`: one `Memtable::insert` (the key and value
//!   copied into the skiplist). A fresh memtable is started every 100 000 inserts and
//!   the old one dropped outside the timing, so the figure is an insert into a
//!   skiplist of 0 to 100 000 entries (up to about 18 MiB as the memtable counts
//!   it, below the default 32 MiB `memtable_bytes`). Sequential keys always land at
//!   the end of the list, random ones anywhere, so the ratio of the two is what
//!   cache misses in the skiplist's search cost.
//! - `memtable_get/{hit,miss}`: one `Memtable::get` in a memtable of 100 000 random
//!   keys, for a key it holds and for one it does not (the miss still searches the
//!   whole height of the list).

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{hits_and_misses, random_key, seq_key, value, KEY_LEN};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata::key::ValueKind;
use strata::memtable::Memtable;
use strata::SeqNo;

/// Inserts per memtable before a fresh one is started.
const MEMTABLE_ENTRIES: u64 = 100_000;
/// Lookups prepared for the read benchmarks (cycled through).
const LOOKUPS: usize = 1 << 16;

/// How the `i`-th key of a load is made.
type KeyOf = fn(u64) -> [u8; KEY_LEN];

fn insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("memtable_insert");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let load: [(&str, KeyOf); 2] = [("sequential", seq_key), ("random", random_key)];
    let v = value(7);
    for (label, key_of) in load {
        // Keys built once, outside the timing.
        let keys: Vec<[u8; KEY_LEN]> = (0..MEMTABLE_ENTRIES).map(key_of).collect();
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0u64;
                let mut id = 0u64;
                while done < iters {
                    let n = (iters - done).min(MEMTABLE_ENTRIES);
                    id += 1;
                    let mem = Memtable::new(id, 32 << 20);
                    let start = Instant::now();
                    for (i, key) in keys[..n as usize].iter().enumerate() {
                        mem.insert(black_box(key), SeqNo(i as u64 + 1), ValueKind::Put, &v);
                    }
                    elapsed += start.elapsed();
                    done += n;
                    drop(black_box(mem));
                }
                elapsed
            });
        });
    }
    group.finish();
}

fn get(c: &mut Criterion) {
    let mut group = c.benchmark_group("memtable_get");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let mem = Memtable::new(1, 32 << 20);
    for i in 0..MEMTABLE_ENTRIES {
        mem.insert(&random_key(i), SeqNo(i + 1), ValueKind::Put, &value(i));
    }
    let snapshot = SeqNo(MEMTABLE_ENTRIES + 1);
    let (hits, misses) = hits_and_misses(LOOKUPS, MEMTABLE_ENTRIES);
    for (label, keys, expect_found) in [("hit", &hits, true), ("miss", &misses, false)] {
        assert_eq!(mem.get(&keys[0], snapshot).is_some(), expect_found);
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            let mut next = keys.iter().cycle();
            b.iter(|| {
                let key = next.next().expect("cycle never ends");
                black_box(mem.get(black_box(key), snapshot))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, insert, get);
criterion_main!(benches);
