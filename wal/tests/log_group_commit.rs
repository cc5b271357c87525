//! Concurrency: many threads appending with both commit modes; every acknowledged
//! record is recovered exactly once, in sequence order.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{dir, open, options};
use strata_wal::{Commit, FaultFs, Fs, StdFs};

fn hammer(fs: Arc<dyn Fs>, dir: &std::path::Path, threads: usize, per_thread: usize) {
    let (wal, _, _) = open(&fs, dir, options(64 << 10)).unwrap();
    let wal = Arc::new(wal);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..per_thread {
                    let p = format!("t{t}-i{i}").into_bytes();
                    let commit = if (t + i) % 2 == 0 {
                        Commit::Sync
                    } else {
                        Commit::Buffered
                    };
                    let seq = wal.append(&p, 1, commit).unwrap();
                    acked.push((seq, p));
                }
                acked
            })
        })
        .collect();
    let mut acked = BTreeMap::new();
    for h in handles {
        for (seq, p) in h.join().unwrap() {
            assert!(
                acked.insert(seq, p).is_none(),
                "sequence number handed out twice"
            );
        }
    }
    let stats = wal.stats();
    assert_eq!(stats.records as usize, threads * per_thread);
    assert!(stats.syncs <= stats.records, "{stats:?}");
    drop(wal);
    let (_, replayed, _) = open(&fs, dir, options(64 << 10)).unwrap();
    let got: BTreeMap<_, _> = replayed.into_iter().map(|r| (r.seq, r.payload)).collect();
    assert_eq!(got, acked);
}

#[test]
fn concurrent_appends_on_the_fault_fs() {
    hammer(Arc::new(FaultFs::new(2)), &dir(), 8, 500);
}

#[test]
fn concurrent_appends_on_the_real_fs() {
    let tmp = tempfile::tempdir().unwrap();
    hammer(Arc::new(StdFs::new()), tmp.path(), 8, 100);
}
