//! Criterion benchmarks of the merging iterator, through the public read path
//! (`cargo bench -p strata-bench --bench merge`).
//!
//! The merging iterator is internal, so it is timed through a keyspace `Cursor`,
//! which merges one child per memtable and per sorted run. For each source count N,
//! a database holds 50 000 sequential 16-byte keys with 100-byte values, key `i`
//! written to source `i mod N`: each source is written and flushed in turn, giving N
//! overlapping level-0 tables (compaction held off by raising the level-0 triggers),
//! so every step of a scan moves to a different child. `sources=1` is the baseline:
//! the same data in one table.
//!
//! - `merge_scan/sources=N`: `seek_to_first` then `next` over all 50 000 entries,
//!   reading each key and value; the figure is per scan, the throughput per entry.
//!   What it adds over `sources=1` is the merge (N children compared per step).
//! - `merge_seek/sources=N`: one `Cursor::seek` to a key the keyspace holds, which
//!   re-seeks every child: an index and a data block seek in each table (no bloom
//!   filter helps a seek).

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{lookup_order, seq_key, value, KEY_LEN};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata::{Db, Keyspace, KeyspaceOptions, Options};

/// Entries in each database.
const KEYS: u64 = 50_000;
/// Seeks prepared for `merge_seek` (cycled through).
const LOOKUPS: usize = 1 << 14;
/// Source counts benchmarked.
const SOURCES: [u64; 3] = [1, 4, 8];

/// A database whose keyspace holds `KEYS` entries spread over `sources` level-0
/// tables, key `i` in table `i mod sources`.
fn open_db(dir: &std::path::Path, sources: u64) -> (Db, Keyspace) {
    let db = Db::open(dir, Options::default()).expect("open db");
    let ks = db
        .create_keyspace(
            "bench",
            KeyspaceOptions {
                // No compaction: the tables must stay overlapping sorted runs.
                l0_compaction_trigger: 64,
                l0_slowdown_trigger: 64,
                l0_stop_trigger: 64,
                value_threshold: None,
                ..KeyspaceOptions::default()
            },
        )
        .expect("create keyspace");
    for s in 0..sources {
        for i in (s..KEYS).step_by(sources as usize) {
            ks.put(seq_key(i), value(i)).expect("put");
        }
        ks.flush().expect("flush");
    }
    db.wait_for_background_work().expect("background work");
    let stats = db.stats();
    let shape = stats.keyspace("bench").expect("keyspace stats");
    let runs: usize = shape.levels.iter().map(|l| l.runs).sum();
    assert_eq!(
        (shape.levels[0].tables, runs),
        (sources as usize, sources as usize),
        "expected {sources} overlapping level-0 tables and nothing else"
    );
    (db, ks)
}

fn merge(c: &mut Criterion) {
    let dbs: Vec<(u64, tempfile::TempDir, Db, Keyspace)> = SOURCES
        .iter()
        .map(|&n| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let (db, ks) = open_db(tmp.path(), n);
            (n, tmp, db, ks)
        })
        .collect();

    let mut group = c.benchmark_group("merge_scan");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    group.throughput(Throughput::Elements(KEYS));
    for (n, _, _, ks) in &dbs {
        group.bench_function(BenchmarkId::from_parameter(format!("sources={n}")), |b| {
            let mut cursor = ks.cursor().expect("cursor");
            b.iter(|| {
                cursor.seek_to_first().expect("seek");
                let mut entries = 0u64;
                while cursor.valid() {
                    black_box((cursor.key(), cursor.value()));
                    entries += 1;
                    cursor.next().expect("next");
                }
                assert_eq!(entries, KEYS);
            });
        });
    }
    group.finish();

    let targets: Vec<[u8; KEY_LEN]> = lookup_order(LOOKUPS, KEYS, 4)
        .into_iter()
        .map(seq_key)
        .collect();
    let mut group = c.benchmark_group("merge_seek");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for (n, _, _, ks) in &dbs {
        group.bench_function(BenchmarkId::from_parameter(format!("sources={n}")), |b| {
            let mut cursor = ks.cursor().expect("cursor");
            let mut next = targets.iter().cycle();
            b.iter(|| {
                let target = next.next().expect("cycle never ends");
                cursor.seek(black_box(target)).expect("seek");
                black_box(cursor.value().len())
            });
        });
    }
    group.finish();

    for (_, _, db, _) in dbs {
        db.close().expect("close");
    }
}

criterion_group!(benches, merge);
criterion_main!(benches);
