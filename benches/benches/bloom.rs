//! Criterion benchmarks of the table bloom filter (`cargo bench -p strata-bench --bench bloom`).
//!
//! - `bloom_probe/{hit,miss}`: one `BloomFilter::may_contain` (MurmurHash64A of a
//!   16-byte key, then 7 probes) on a filter of 200 000 keys at the default 10 bits
//!   per key (250 KiB, about what a 32 MiB table of 100-byte values carries). A hit
//!   checks every probe, a miss usually stops at the first clear bit; both pay for
//!   hashing the key. After the group the bench prints the false-positive rate it
//!   saw, which should be near 1 %.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use common::{hits_and_misses, random_key};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata::table::{BloomFilter, BloomFilterBuilder};
use strata::Bytes;

/// Keys in the filter.
const KEYS: u64 = 200_000;
/// The default `bloom_bits_per_key`.
const BITS_PER_KEY: u32 = 10;
/// Lookups prepared for the benchmarks (cycled through).
const LOOKUPS: usize = 1 << 16;

fn probe(c: &mut Criterion) {
    let mut builder = BloomFilterBuilder::new(BITS_PER_KEY);
    for i in 0..KEYS {
        builder.add_key(&random_key(i));
    }
    let filter = BloomFilter::decode(Bytes::from(builder.finish()), Path::new("bench"), 0)
        .expect("decode filter");
    let (hits, misses) = hits_and_misses(LOOKUPS, KEYS);
    assert!(hits.iter().all(|k| filter.may_contain(k)));
    let false_positives = misses.iter().filter(|k| filter.may_contain(*k)).count();

    let mut group = c.benchmark_group("bloom_probe");
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for (label, keys) in [("hit", &hits), ("miss", &misses)] {
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            let mut next = keys.iter().cycle();
            b.iter(|| {
                let key = next.next().expect("cycle never ends");
                black_box(filter.may_contain(black_box(key)))
            });
        });
    }
    group.finish();
    println!(
        "bloom filter: keys={KEYS} bits={} probes={} false_positive_rate={:.4}",
        filter.bits(),
        filter.probes(),
        false_positives as f64 / misses.len() as f64
    );
}

criterion_group!(benches, probe);
criterion_main!(benches);
