//! Criterion benchmarks of table blocks (`cargo bench -p strata-bench --bench block`).
//!
//! The block is what a table's data block looks like at the defaults: 4 KiB target,
//! a restart point every 16 entries, internal keys of 16-byte user keys (a run of
//! consecutive keys out of 200 000 random ones, so neighbours share little prefix)
//! and 100-byte values: about 33 entries.
//!
//! - `block/encode`: `BlockBuilder::add` of every entry then `finish`, on a builder
//!   reset each time (allocations kept, as the table builder does). Per block.
//! - `block/decode`: `Block::decode` of the finished bytes (it checks the restart
//!   array; entries are checked when read). Per block.
//! - `block/iterate`: `seek_to_first` then `next` to the end, reading every key and
//!   value. Per block.
//! - `block/seek`: one `seek` of a reused `BlockIter` to the newest version of a key
//!   the block holds (binary search over restart points, then a scan of at most one
//!   restart interval). Per seek.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{lookup_order, random_key, value, KEY_LEN};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata::iter::InternalIterator;
use strata::key::{internal_key, seek_key, user_key, ValueKind};
use strata::table::{Block, BlockBuilder, TableBuildOptions};
use strata::{Bytes, SeqNo};

/// Keys the block's run is taken from.
const POOL: u64 = 200_000;
/// Seeks prepared for `block/seek` (cycled through).
const LOOKUPS: usize = 1 << 12;

/// The entries of one default-sized data block, `(internal key, value)` in order:
/// added until the block reaches `block_size`, as the table builder cuts blocks.
fn block_entries(opts: &TableBuildOptions) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut keys: Vec<[u8; KEY_LEN]> = (0..POOL).map(random_key).collect();
    keys.sort_unstable();
    let mut sizer = BlockBuilder::new(opts.restart_interval);
    let mut entries = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if sizer.size_estimate() >= opts.block_size {
            break;
        }
        let ikey = internal_key(key, SeqNo(i as u64 + 1), ValueKind::Put);
        let v = value(i as u64).to_vec();
        sizer.add(&ikey, &v);
        entries.push((ikey, v));
    }
    entries
}

fn block(c: &mut Criterion) {
    let opts = TableBuildOptions::default();
    let entries = block_entries(&opts);
    let mut builder = BlockBuilder::new(opts.restart_interval);
    for (k, v) in &entries {
        builder.add(k, v);
    }
    let data = Bytes::copy_from_slice(builder.finish());
    let file: Arc<Path> = Arc::from(Path::new("bench.sst"));
    let decoded = Block::decode(data.clone(), Arc::clone(&file), 0).expect("decode block");
    println!(
        "block: entries={} bytes={} restarts={}",
        entries.len(),
        data.len(),
        decoded.num_restarts()
    );

    let mut group = c.benchmark_group("block");
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| {
            builder.reset();
            for (k, v) in &entries {
                builder.add(black_box(k), black_box(v));
            }
            black_box(builder.finish().len())
        });
    });
    group.bench_function("decode", |b| {
        b.iter(|| black_box(Block::decode(black_box(data.clone()), Arc::clone(&file), 0)));
    });
    group.bench_function("iterate", |b| {
        let mut it = decoded.iter();
        b.iter(|| {
            it.seek_to_first().expect("seek");
            let mut n = 0usize;
            while it.valid() {
                n += it.key().len() + it.value_slice().len();
                it.next().expect("next");
            }
            black_box(n)
        });
    });

    group.throughput(Throughput::Elements(1));
    let targets: Vec<Vec<u8>> = lookup_order(LOOKUPS, entries.len() as u64, 3)
        .into_iter()
        .map(|i| seek_key(user_key(&entries[i as usize].0), SeqNo(u64::MAX)))
        .collect();
    group.bench_function("seek", |b| {
        let mut it = decoded.iter();
        let mut next = targets.iter().cycle();
        b.iter(|| {
            let target = next.next().expect("cycle never ends");
            it.seek(black_box(target)).expect("seek");
            debug_assert!(it.valid());
            black_box(it.value_slice().len())
        });
    });
    group.finish();
}

criterion_group!(benches, block);
criterion_main!(benches);
