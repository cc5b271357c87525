//! Concurrency: many threads appending with both commit modes; every acknowledged
//! record is recovered exactly once, in sequence order.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{dir, open, options, HookFs, Phase};
use strata_wal::{Commit, CrashMode, Error, FaultFs, Fs, SeqNo, StdFs};

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

// Regression tests, named after the bugs they pin down.

#[test]
fn sync_acknowledged_appends_survive_power_loss_during_group_commit() {
    let modes = [
        CrashMode::DropUnsynced,
        CrashMode::TornTail,
        CrashMode::GarbageTail,
    ];
    for round in 0..12u64 {
        let mode = modes[round as usize % 3];
        let fault = FaultFs::new(round);
        let fs: Arc<dyn Fs> = Arc::new(fault.clone());
        let (wal, _, _) = open(&fs, &dir(), options(16 << 10)).unwrap();
        let wal = Arc::new(wal);
        let synced = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let (wal, synced) = (Arc::clone(&wal), Arc::clone(&synced));
                std::thread::spawn(move || {
                    let mut acked: Vec<(SeqNo, Vec<u8>)> = Vec::new();
                    // Thread 0 leaves unsynced bytes behind for the torn crash modes.
                    let commit = if t == 0 {
                        Commit::Buffered
                    } else {
                        Commit::Sync
                    };
                    for i in 0.. {
                        let p = format!("t{t}-i{i}-").repeat(1 + i % 7).into_bytes();
                        match wal.append(&p, 1, commit) {
                            Ok(seq) if commit == Commit::Sync => {
                                acked.push((seq, p));
                                synced.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        while synced.load(Ordering::SeqCst) < 150 {
            std::thread::sleep(Duration::from_micros(200));
        }
        // Power goes while the groups are in flight; nothing is closed.
        fault.power_off(mode);
        let acked: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        drop(wal);
        fault.restart();
        let (_, replayed, _) = open(&fs, &dir(), options(16 << 10))
            .unwrap_or_else(|e| panic!("round {round} {mode:?}: recovery failed: {e}"));
        for pair in replayed.windows(2) {
            assert!(pair[1].seq > pair[0].last_seq());
        }
        let got: BTreeMap<_, _> = replayed.into_iter().map(|r| (r.seq, r.payload)).collect();
        assert!(acked.len() >= 150);
        for (seq, p) in &acked {
            assert_eq!(
                got.get(seq),
                Some(p),
                "round {round} {mode:?}: Sync-acknowledged {seq} lost"
            );
        }
    }
}

#[test]
fn close_makes_concurrently_acknowledged_appends_durable() {
    for round in 0..150u64 {
        let fault = FaultFs::new(round);
        let fs: Arc<dyn Fs> = Arc::new(fault.clone());
        let (wal, _, _) = open(&fs, &dir(), options(64 << 20)).unwrap();
        let wal = Arc::new(wal);
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let wal = Arc::clone(&wal);
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0.. {
                        let p = format!("t{t}-i{i}").into_bytes();
                        match wal.append(&p, 1, Commit::Buffered) {
                            Ok(seq) => acked.push((seq, p)),
                            Err(Error::Closed) => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    acked
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(50 + round % 7 * 40));
        wal.close().unwrap();
        let acked: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        drop(wal);
        fault.crash();
        let (_, replayed, _) = open(&fs, &dir(), options(64 << 20)).unwrap();
        let got: BTreeMap<_, _> = replayed.into_iter().map(|r| (r.seq, r.payload)).collect();
        for (seq, p) in &acked {
            assert_eq!(
                got.get(seq),
                Some(p),
                "round {round}: {seq} acknowledged while closing but not durable"
            );
        }
    }
}

#[test]
fn rotation_never_overlaps_another_fsync_of_the_same_file() {
    let in_flight = Arc::new(Mutex::new(HashMap::<PathBuf, usize>::new()));
    let worst = Arc::new(AtomicUsize::new(0));
    let (flights, most) = (Arc::clone(&in_flight), Arc::clone(&worst));
    let fs: Arc<dyn Fs> = Arc::new(HookFs::new(
        Arc::new(FaultFs::new(6)),
        move |op, path, phase| {
            if op != "sync_data" {
                return;
            }
            let mut flights = flights.lock().unwrap();
            let n = flights.entry(path.to_path_buf()).or_default();
            match phase {
                Phase::Before => {
                    *n += 1;
                    most.fetch_max(*n, Ordering::SeqCst);
                    drop(flights);
                    // Keep the fsync "in flight" long enough for others to overlap it.
                    std::thread::sleep(Duration::from_micros(300));
                }
                Phase::After => *n -= 1,
            }
        },
    ));
    let (wal, _, _) = open(&fs, &dir(), options(4096)).unwrap();
    let wal = Arc::new(wal);
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for i in 0..60 {
                    let p = format!("t{t}-i{i}-").repeat(30).into_bytes();
                    wal.append(&p, 1, Commit::Sync).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(wal.segments().len() > 10, "too few rotations to test");
    assert_eq!(
        worst.load(Ordering::SeqCst),
        1,
        "two fsyncs of one file were in flight at once"
    );
}
