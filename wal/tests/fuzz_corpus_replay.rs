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
    assert!(count >= 12, "seed corpus has only {count} inputs");
}

/// Regenerates the seed corpus: `cargo test -p strata-wal --release --test
/// fuzz_corpus_replay -- --ignored generate`. Inputs use the layout of
/// `strata_wal::fuzzing::segments_from_input`.
#[test]
#[ignore]
fn generate_seed_corpus() {
    use std::sync::Arc;
    use strata_wal::fuzzing::RAW;
    use strata_wal::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
    use strata_wal::{Commit, FaultFs, Fs, SeqCounter, SeqNo, Wal, WalOptions};

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wal_reader");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&out).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    // The segment files of a log, oldest first.
    let make_log = |records: usize, sync_every: usize, close: bool, segment_bytes: u64| {
        let fs = FaultFs::new(1);
        let shared: Arc<dyn Fs> = Arc::new(fs.clone());
        let dir = Path::new("/w");
        let opts = WalOptions {
            sync_interval: None,
            segment_bytes,
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
        shared
            .list(dir)
            .unwrap()
            .into_iter()
            .map(|name| fs.read_file(&dir.join(name)).unwrap())
            .collect::<Vec<_>>()
    };
    // Structured input: the harness writes the headers, the input gives their fields.
    let structured = |files: &[Vec<u8>]| {
        let mut input = vec![(files.len() - 1) as u8];
        let mut prev_first = 1;
        for file in files {
            let h = SegmentHeader::decode(file, Path::new("seed")).unwrap();
            input.extend_from_slice(&((h.first_seq.0 - prev_first) as u32).to_le_bytes());
            input.extend_from_slice(&h.salt.0.to_le_bytes());
            input.extend_from_slice(&((file.len() - SEGMENT_HEADER_LEN) as u32).to_le_bytes());
            prev_first = h.first_seq.0;
        }
        for file in files {
            input.extend_from_slice(&file[SEGMENT_HEADER_LEN..]);
        }
        input
    };
    let raw = |file: &[u8]| [&[RAW][..], file].concat();
    let valid = make_log(12, 3, true, 64 << 20).remove(0);
    let unsynced = make_log(6, 0, false, 64 << 20).remove(0);
    let three: Vec<_> = make_log(400, 7, true, 4096).into_iter().take(3).collect();
    assert_eq!(three.len(), 3);
    let mut flipped = valid.clone();
    flipped[60] ^= 0x20;
    let mut three_torn = three.clone();
    let cut = three_torn[2].len() - 9;
    three_torn[2].truncate(cut);
    let mut three_flipped = three.clone();
    three_flipped[1][SEGMENT_HEADER_LEN + 30] ^= 0x04;
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        (
            "one-valid-segment",
            structured(std::slice::from_ref(&valid)),
        ),
        ("unsynced-segment", structured(&[unsynced])),
        (
            "truncated-mid-record",
            structured(&[valid[..valid.len() - 7].to_vec()]),
        ),
        ("bit-flip", structured(&[flipped])),
        ("three-segments", structured(&three)),
        ("three-segments-torn-last", structured(&three_torn)),
        ("three-segments-damaged-middle", structured(&three_flipped)),
        (
            "two-identical-segments",
            structured(&[valid.clone(), valid.clone()]),
        ),
        (
            "zeros-after-valid",
            structured(&[[valid.clone(), vec![0; 64]].concat()]),
        ),
        (
            "garbage",
            (0..200u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("raw-valid-segment", raw(&valid)),
        ("raw-header-only", raw(&valid[..SEGMENT_HEADER_LEN])),
        ("raw-truncated-header", raw(&valid[..20])),
        ("raw-zero-header", raw(&[0; SEGMENT_HEADER_LEN])),
    ];
    for (name, bytes) in seeds {
        std::fs::write(out.join(name), bytes).unwrap();
    }
}
