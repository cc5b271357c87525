//! Criterion benchmarks of the write-ahead log (`cargo bench -p strata-bench --bench wal`).
//!
//! - `wal_buffered_append/{100B,4KiB}` against `raw_sequential_write/{100B,4KiB}`: the
//!   same payload bytes appended through the same `Fs` (`StdFs`), one call each, so the
//!   ratio is the cost of framing, checksums and the group-commit queue.
//! - `wal_sync_commit/threads=N`: `Sync` appends from N threads; after the group the
//!   bench prints commits per second and fsyncs per commit, the figures group commit is
//!   judged by.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_wal::{Commit, Fs, SeqCounter, SeqNo, StdFs, Wal, WalOptions};

fn open_wal(dir: &Path) -> Wal {
    let fs: Arc<dyn Fs> = Arc::new(StdFs::new());
    let (wal, _) = Wal::open(
        fs,
        dir,
        WalOptions::default(),
        Arc::new(SeqCounter::new(SeqNo(1))),
        SeqNo::ZERO,
        |_| Ok(()),
    )
    .expect("open wal");
    wal
}

fn buffered_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.measurement_time(Duration::from_secs(4));
    for (label, size) in [("100B", 100usize), ("4KiB", 4096)] {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("wal_buffered", label), |b| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let wal = open_wal(tmp.path());
            let mut n = 0u64;
            b.iter(|| {
                wal.append(&payload, 1, Commit::Buffered).expect("append");
                n += 1;
                if n.is_multiple_of(200_000) {
                    let _ = wal.remove_segments_before(wal.written_seq());
                }
            });
        });
        group.bench_function(BenchmarkId::new("raw_sequential_write", label), |b| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let fs = StdFs::new();
            let mut file = fs.create(&tmp.path().join("raw")).expect("create");
            let mut written = 0u64;
            b.iter(|| {
                file.append(&payload).expect("append");
                written += payload.len() as u64;
                if written > 64 << 20 {
                    file = fs.create(&tmp.path().join("raw")).expect("create");
                    written = 0;
                }
            });
        });
    }
    group.finish();
}

fn sync_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_sync_commit");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    group.warm_up_time(Duration::from_secs(1));
    let payload = vec![0x33u8; 100];
    for threads in [1usize, 4, 16] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let wal = Arc::new(open_wal(tmp.path()));
        let mut total_commits = 0u64;
        let mut total_time = Duration::ZERO;
        let syncs_before = wal.stats().syncs;
        group.throughput(Throughput::Elements(1));
        group.bench_function(
            BenchmarkId::from_parameter(format!("threads={threads}")),
            |b| {
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(threads as u64);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            let wal = Arc::clone(&wal);
                            let payload = &payload;
                            s.spawn(move || {
                                for _ in 0..per_thread {
                                    wal.append(payload, 1, Commit::Sync).expect("append");
                                }
                            });
                        }
                    });
                    let elapsed = start.elapsed();
                    total_commits += per_thread * threads as u64;
                    total_time += elapsed;
                    // Time per commit, as if one thread had done them all.
                    elapsed.mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
                });
            },
        );
        let syncs = wal.stats().syncs - syncs_before;
        println!(
            "group commit: threads={threads} commits={total_commits} commits_per_sec={:.0} fsyncs_per_commit={:.3}",
            total_commits as f64 / total_time.as_secs_f64(),
            syncs as f64 / total_commits as f64
        );
    }
    group.finish();
}

criterion_group!(benches, buffered_append, sync_commit);
criterion_main!(benches);
