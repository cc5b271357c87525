//! Corruption sweep: flip each byte of a small log in turn. The result is an error
//! naming the file and an offset, or a clean torn-tail truncation; never a wrong
//! record and never a panic.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{dir, open, options, payload};
use strata_wal::segment::SEGMENT_HEADER_LEN;
use strata_wal::{Commit, Error, FaultFs, Fs, RecoveryMode};

/// A log of two sealed segments and an active one, closed cleanly. Returns the files
/// and the records in order.
type Files = Vec<(PathBuf, Vec<u8>)>;

fn small_log() -> (Files, Vec<Vec<u8>>) {
    let fs = FaultFs::new(3);
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    let (wal, _, _) = open(&shared, &dir(), options(4096)).unwrap();
    let mut records = Vec::new();
    for i in 0..40 {
        let p = payload(i, 150 + (i * 37) % 200);
        let commit = if i % 5 == 0 {
            Commit::Sync
        } else {
            Commit::Buffered
        };
        wal.append(&p, 1, commit).unwrap();
        records.push(p);
    }
    wal.close().unwrap();
    drop(wal);
    let files = shared
        .list(&dir())
        .unwrap()
        .into_iter()
        .map(|n| {
            let path = dir().join(n);
            let bytes = fs.read_file(&path).unwrap();
            (path, bytes)
        })
        .collect::<Vec<_>>();
    (files, records)
}

#[test]
fn every_flipped_byte_is_detected_or_cut_never_misread() {
    let (files, records) = small_log();
    assert!(
        files.len() >= 3,
        "want several segments, got {}",
        files.len()
    );
    let mut corruption = 0;
    let mut torn = 0;
    for (victim, original) in &files {
        for offset in 0..original.len() {
            let fs = FaultFs::new(offset as u64);
            let shared: Arc<dyn Fs> = Arc::new(fs.clone());
            shared.create_dir_all(&dir()).unwrap();
            for (path, bytes) in &files {
                let mut bytes = bytes.clone();
                if path == victim {
                    bytes[offset] ^= 1 << (offset % 8);
                }
                let f = shared.create(path).unwrap();
                f.append(&bytes).unwrap();
                f.sync_data().unwrap();
            }
            shared.sync_dir(&dir()).unwrap();
            match open(&shared, &dir(), options(4096)) {
                Err(Error::Corruption {
                    file,
                    offset: at,
                    reason,
                }) => {
                    assert_eq!(
                        &file, victim,
                        "flip at {offset}: blamed the wrong file ({reason})"
                    );
                    assert!(at as usize <= original.len(), "offset {at} beyond the file");
                    corruption += 1;
                }
                Err(other) => panic!(
                    "flip at {offset} of {}: unexpected error {other}",
                    victim.display()
                ),
                Ok((_, replayed, summary)) => {
                    for (i, r) in replayed.iter().enumerate() {
                        assert_eq!(r.payload, records[i], "flip at {offset}: wrong record {i}");
                    }
                    // A flip outside the newest segment can never be a torn tail, and
                    // after a clean close only the final sync mark is undeclared.
                    assert_eq!(
                        victim,
                        &files.last().unwrap().0,
                        "flip at {offset} of a sealed segment ignored"
                    );
                    if replayed.len() < records.len() {
                        assert!(
                            summary.torn_tail.is_some(),
                            "flip at {offset}: records dropped silently"
                        );
                    }
                    torn += 1;
                }
            }
        }
    }
    // After a clean close, every record byte is covered by a sync mark.
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert!(
        corruption > total - 64,
        "only {corruption} of {total} flips reported as corruption ({torn} torn)"
    );
}

#[test]
fn salvage_mode_skips_damage_and_keeps_the_rest() {
    let (files, records) = small_log();
    let fs = FaultFs::new(11);
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    shared.create_dir_all(&dir()).unwrap();
    for (i, (path, bytes)) in files.iter().enumerate() {
        let mut bytes = bytes.clone();
        if i == 0 {
            // Damage the payload of the first record of the first segment.
            bytes[SEGMENT_HEADER_LEN + 20] ^= 0x40;
        }
        let f = shared.create(path).unwrap();
        f.append(&bytes).unwrap();
        f.sync_data().unwrap();
    }
    shared.sync_dir(&dir()).unwrap();
    assert!(open(&shared, &dir(), options(4096))
        .unwrap_err()
        .is_corruption());
    let mut opts = options(4096);
    opts.recovery_mode = RecoveryMode::Salvage;
    let (wal, replayed, summary) = open(&shared, &dir(), opts.clone()).unwrap();
    assert_eq!(summary.skipped_regions, 1);
    assert_eq!(replayed.len(), records.len() - 1);
    for (r, expected) in replayed.iter().zip(&records[1..]) {
        assert_eq!(&r.payload, expected);
    }
    // Salvage does not repair: the damage stays, and a strict open still reports it
    // until the damaged segment is removed.
    wal.append(b"after salvage", 1, Commit::Sync).unwrap();
    drop(wal);
    assert!(open(&shared, &dir(), options(4096))
        .unwrap_err()
        .is_corruption());
    let (wal, replayed, _) = open(&shared, &dir(), opts).unwrap();
    assert_eq!(replayed.last().unwrap().payload, b"after salvage");
    let second_first_seq = wal.segments()[1].1;
    assert_eq!(wal.remove_segments_before(second_first_seq).unwrap(), 1);
    drop(wal);
    let (_, replayed, _) = open(&shared, &dir(), options(4096)).unwrap();
    assert_eq!(replayed.last().unwrap().payload, b"after salvage");
}

#[test]
fn corruption_message_names_file_and_offset_and_what_to_do() {
    let (files, _) = small_log();
    let fs = FaultFs::new(5);
    let shared: Arc<dyn Fs> = Arc::new(fs);
    shared.create_dir_all(&dir()).unwrap();
    for (i, (path, bytes)) in files.iter().enumerate() {
        let mut bytes = bytes.clone();
        if i == 1 {
            bytes[100] ^= 0x01;
        }
        let f = shared.create(path).unwrap();
        f.append(&bytes).unwrap();
        f.sync_data().unwrap();
    }
    shared.sync_dir(&dir()).unwrap();
    let msg = open(&shared, &dir(), options(4096))
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&files[1].0.display().to_string()), "{msg}");
    assert!(msg.contains("byte offset"), "{msg}");
    assert!(msg.contains("salvage"), "{msg}");
}
