//! Criterion benchmarks of point reads from one table
//! (`cargo bench -p strata-bench --bench table_get`).
//!
//! The table holds 200 000 random 16-byte keys with 100-byte values (about 25 MB,
//! default `TableBuildOptions`: 4 KiB blocks, 10 bloom bits per key, no compression)
//! and is read through the public reader, `Table::get`: bloom filter, index block
//! seek, data block fetch, block seek. The file is in the page cache throughout.
//!
//! - `table_get/hit_mmap`: a key the table holds, the table memory-mapped (the
//!   default): the data block is a slice of the map, checksummed on every read.
//! - `table_get/hit_cache`: the same with positional reads and a block cache large
//!   enough for the whole table, so after warm-up every block comes from the cache
//!   (the bench prints the cache's hits and misses at the end to show it).
//! - `table_get/miss`: a key the table does not hold (mmap); the bloom filter turns
//!   away about 99 % of these, the rest cost a block read like a hit.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use common::{hits_and_misses, random_key, value, KEY_LEN};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata::cache::BlockCache;
use strata::ids::TableId;
use strata::key::{internal_key, ValueKind};
use strata::table::{Table, TableBuildOptions, TableBuilder};
use strata::{Fs, SeqNo, StdFs};

/// Entries in the table.
const KEYS: u64 = 200_000;
/// Lookups prepared for the benchmarks (cycled through).
const LOOKUPS: usize = 1 << 16;

fn table_get(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("000001.sst");
    let fs = StdFs::new();
    let mut keys: Vec<(u64, [u8; KEY_LEN])> = (0..KEYS).map(|i| (i, random_key(i))).collect();
    keys.sort_unstable_by_key(|&(_, k)| k);
    let mut builder = TableBuilder::new(
        fs.create(&path).expect("create table"),
        TableBuildOptions::default(),
    )
    .expect("table builder");
    for (i, key) in &keys {
        builder
            .add(&internal_key(key, SeqNo(i + 1), ValueKind::Put), &value(*i))
            .expect("add");
    }
    let props = builder.finish().expect("finish table");
    let cache = Arc::new(BlockCache::new(64 << 20));
    let open = |use_mmap: bool| {
        Table::open(
            fs.open(&path).expect("open table file"),
            TableId(1),
            Some(Arc::clone(&cache)),
            use_mmap,
        )
        .expect("open table")
    };
    let mapped = open(true);
    let cached = open(false);
    println!(
        "table: entries={} data_blocks={} file_bytes={}",
        props.entries,
        props.data_blocks,
        mapped.file_size()
    );

    let snapshot = SeqNo(u64::MAX);
    let (hits, misses) = hits_and_misses(LOOKUPS, KEYS);
    assert!(mapped.get(&hits[0], snapshot).expect("get").is_some());
    assert!(mapped.get(&misses[0], snapshot).expect("get").is_none());

    let mut group = c.benchmark_group("table_get");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for (label, table, keys) in [
        ("hit_mmap", &mapped, &hits),
        ("hit_cache", &cached, &hits),
        ("miss", &mapped, &misses),
    ] {
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            let mut next = keys.iter().cycle();
            b.iter(|| {
                let key = next.next().expect("cycle never ends");
                black_box(table.get(black_box(key), snapshot).expect("get"))
            });
        });
    }
    group.finish();
    let stats = cache.stats();
    println!(
        "block cache: hits={} misses={} evictions={} usage={}",
        stats.hits, stats.misses, stats.evictions, stats.usage
    );
}

criterion_group!(benches, table_get);
criterion_main!(benches);
