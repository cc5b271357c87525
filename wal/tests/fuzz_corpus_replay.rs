//! Replays the committed cargo-fuzz seed corpus of the WAL reader, so that every
//! `cargo test` exercises the fuzz target's invariants on stable Rust.

use std::path::Path;

#[test]
fn wal_reader_corpus_replays_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wal_reader");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed corpus is committed") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        strata_wal::fuzzing::wal_reader(&data);
        count += 1;
    }
    assert!(count >= 8, "seed corpus has only {count} inputs");
}

/// Regenerates the seed corpus: `cargo test -p strata-wal --test fuzz_corpus_replay
/// -- --ignored generate`.
#[test]
#[ignore]
fn generate_seed_corpus() {
    use std::sync::Arc;
    use strata_wal::{Commit, FaultFs, Fs, SeqCounter, SeqNo, Wal, WalOptions};

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wal_reader");
    std::fs::create_dir_all(&out).unwrap();
    let make_log = |records: usize, sync_every: usize, close: bool| -> Vec<u8> {
        let fs = FaultFs::new(1);
        let shared: Arc<dyn Fs> = Arc::new(fs.clone());
        let dir = Path::new("/w");
        let opts = WalOptions {
            sync_interval: None,
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open(
            Arc::clone(&shared),
            dir,
            opts,
            Arc::new(SeqCounter::new(SeqNo(1))),
            SeqNo::ZERO,
            |_| Ok(()),
        )
        .unwrap();
        for i in 0..records {
            let commit = if sync_every > 0 && i % sync_every == 0 {
                Commit::Sync
            } else {
                Commit::Buffered
            };
            wal.append(
                format!("value-{i}").repeat(i % 5 + 1).as_bytes(),
                1 + (i % 3) as u32,
                commit,
            )
            .unwrap();
        }
        if close {
            wal.close().unwrap();
        }
        std::mem::forget(wal);
        fs.read_file(&dir.join("000001.wal")).unwrap()
    };
    let with_count = |n: u8, bytes: &[u8]| {
        let mut v = vec![n];
        v.extend_from_slice(bytes);
        v
    };
    let valid = make_log(12, 3, true);
    let unsynced = make_log(6, 0, false);
    let mut flipped = valid.clone();
    flipped[60] ^= 0x20;
    let mut two = valid.clone();
    two.extend_from_slice(&valid);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one-valid-segment", with_count(0, &valid)),
        ("unsynced-segment", with_count(0, &unsynced)),
        (
            "truncated-mid-record",
            with_count(0, &valid[..valid.len() - 7]),
        ),
        ("truncated-header", with_count(0, &valid[..20])),
        ("bit-flip", with_count(0, &flipped)),
        ("two-identical-segments", with_count(1, &two)),
        (
            "zeros-after-valid",
            with_count(0, &[valid.clone(), vec![0; 64]].concat()),
        ),
        (
            "garbage",
            (0..200u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("header-only", with_count(0, &valid[..36])),
    ];
    for (name, bytes) in seeds {
        std::fs::write(out.join(name), bytes).unwrap();
    }
}
