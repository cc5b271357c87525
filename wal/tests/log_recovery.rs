//! Opening, replaying, rotating, retaining and reading the log.

mod common;

use std::sync::Arc;

use common::{dir, open, options, payload};
use strata_wal::{Commit, FaultFs, Fs, RecoveryMode, SeqCounter, SeqNo, Wal, WalReader};

fn fault_fs() -> (FaultFs, Arc<dyn Fs>) {
    let fs = FaultFs::new(1);
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    (fs, shared)
}

#[test]
fn appended_records_replay_in_order_after_reopen() {
    let (_, fs) = fault_fs();
    let (wal, replayed, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    assert!(replayed.is_empty());
    let mut seqs = Vec::new();
    for i in 0..100 {
        let commit = if i % 3 == 0 {
            Commit::Sync
        } else {
            Commit::Buffered
        };
        seqs.push(
            wal.append(&payload(i, i * 7), 1 + (i % 4) as u32, commit)
                .unwrap(),
        );
    }
    wal.close().unwrap();
    drop(wal);
    let (_, replayed, summary) = open(&fs, &dir(), options(1 << 20)).unwrap();
    assert_eq!(replayed.len(), 100);
    assert_eq!(summary.torn_tail, None);
    for (i, r) in replayed.iter().enumerate() {
        assert_eq!(r.seq, seqs[i]);
        assert_eq!(r.entries, 1 + (i % 4) as u32);
        assert_eq!(r.payload, payload(i, i * 7));
    }
    assert_eq!(summary.last_seq, Some(replayed[99].last_seq()));
}

#[test]
fn sequence_numbers_continue_after_reopen() {
    let (_, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    let first = wal.append(b"a", 5, Commit::Sync).unwrap();
    drop(wal);
    let seq = Arc::new(SeqCounter::new(SeqNo(1)));
    let (wal, _) = Wal::open(
        Arc::clone(&fs),
        &dir(),
        options(1 << 20),
        Arc::clone(&seq),
        SeqNo::ZERO,
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(seq.peek_next(), first.plus(5));
    let next = wal.append(b"b", 1, Commit::Sync).unwrap();
    assert_eq!(next, first.plus(5));
}

#[test]
fn replay_from_skips_older_records_and_segments() {
    let (_, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(4096)).unwrap();
    let mut seqs = Vec::new();
    for i in 0..200 {
        seqs.push(wal.append(&payload(i, 100), 1, Commit::Buffered).unwrap());
    }
    drop(wal);
    let from = seqs[150];
    let mut replayed = Vec::new();
    let (_, summary) = Wal::open(
        Arc::clone(&fs),
        &dir(),
        options(4096),
        Arc::new(SeqCounter::new(SeqNo(1))),
        from,
        |r| {
            replayed.push(r.seq);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(replayed, seqs[150..].to_vec());
    assert!(
        summary.segments_scanned < 5,
        "old segments should not be scanned: {summary:?}"
    );
}

#[test]
fn segments_rotate_at_the_configured_size() {
    let (fs_handle, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(4096)).unwrap();
    for i in 0..100 {
        wal.append(&payload(i, 200), 1, Commit::Buffered).unwrap();
    }
    let segments = wal.segments();
    assert!(segments.len() >= 5, "{segments:?}");
    for name in fs.list(&dir()).unwrap() {
        let len = fs_handle.file_len(&dir().join(&name)).unwrap();
        assert!(len <= 4096 + 300, "{name} is {len} bytes");
    }
    // First sequence numbers go up with segment ids.
    for pair in segments.windows(2) {
        assert!(pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1);
    }
}

#[test]
fn retention_deletes_only_segments_wholly_below_the_point() {
    let (_, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(4096)).unwrap();
    let mut seqs = Vec::new();
    for i in 0..100 {
        seqs.push(wal.append(&payload(i, 200), 1, Commit::Buffered).unwrap());
    }
    let before = wal.segments();
    let keep_from = seqs[60];
    let removed = wal.remove_segments_before(keep_from).unwrap();
    let after = wal.segments();
    assert!(removed > 0);
    assert_eq!(before.len() - removed, after.len());
    // The first remaining segment still holds keep_from.
    assert!(after[0].1 <= keep_from);
    drop(wal);
    let mut replayed = Vec::new();
    Wal::open(
        Arc::clone(&fs),
        &dir(),
        options(4096),
        Arc::new(SeqCounter::new(SeqNo(1))),
        keep_from,
        |r| {
            replayed.push(r.seq);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(replayed, seqs[60..].to_vec());
}

#[test]
fn retention_never_deletes_the_active_segment() {
    let (_, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(4096)).unwrap();
    wal.append(b"x", 1, Commit::Sync).unwrap();
    let removed = wal.remove_segments_before(SeqNo::MAX).unwrap();
    assert_eq!(removed, 0);
    assert_eq!(wal.segments().len(), 1);
    wal.append(b"y", 1, Commit::Sync).unwrap();
}

#[test]
fn reader_yields_from_any_sequence_number_while_the_log_is_live() {
    let (_, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(4096)).unwrap();
    let mut seqs = Vec::new();
    for i in 0..120 {
        seqs.push(wal.append(&payload(i, 90), 2, Commit::Buffered).unwrap());
    }
    for start in [0usize, 1, 37, 119] {
        // Asking for the second entry of a record still yields that record.
        let from = seqs[start].plus(1);
        let got: Vec<_> = WalReader::open(Arc::clone(&fs), &dir(), from, RecoveryMode::Strict)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got.len(), 120 - start);
        assert_eq!(got[0].seq, seqs[start]);
        assert_eq!(got[0].payload, payload(start, 90));
    }
    let beyond =
        WalReader::open(Arc::clone(&fs), &dir(), SeqNo::MAX, RecoveryMode::Strict).unwrap();
    assert_eq!(beyond.count(), 0);
    assert!(
        WalReader::oldest_available(fs.as_ref(), &dir())
            .unwrap()
            .unwrap()
            <= seqs[0]
    );
}

#[test]
fn records_larger_than_a_fragment_round_trip() {
    let (_, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    let big: Vec<u8> = (0..3_500_000u32).map(|i| (i * 31 % 256) as u8).collect();
    wal.append(b"small", 1, Commit::Buffered).unwrap();
    wal.append(&big, 1, Commit::Sync).unwrap();
    wal.append(b"after", 1, Commit::Sync).unwrap();
    drop(wal);
    let (_, replayed, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    assert_eq!(replayed.len(), 3);
    assert_eq!(replayed[1].payload, big);
    assert_eq!(replayed[2].payload, b"after");
}

#[test]
fn closed_log_refuses_appends() {
    let (_, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    wal.close().unwrap();
    let err = wal.append(b"late", 1, Commit::Buffered).unwrap_err();
    assert!(matches!(err, strata_wal::Error::Closed), "{err}");
}

#[test]
fn zero_entries_is_rejected() {
    let (_, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    assert!(matches!(
        wal.append(b"x", 0, Commit::Buffered),
        Err(strata_wal::Error::InvalidArgument(_))
    ));
}

#[test]
fn a_torn_segment_header_is_removed_on_open() {
    let (fs_handle, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    wal.append(b"kept", 1, Commit::Sync).unwrap();
    drop(wal);
    // A crash while creating the next segment left 10 bytes of its header.
    let path = dir().join("000099.wal");
    let file = fs.create(&path).unwrap();
    file.append(&[0x53; 10]).unwrap();
    file.sync_data().unwrap();
    fs.sync_dir(&dir()).unwrap();
    let (_, replayed, summary) = open(&fs, &dir(), options(1 << 20)).unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(summary.removed_segments, 1);
    assert!(fs_handle.read_file(&path).is_none());
}

#[test]
fn invalid_options_are_rejected() {
    let (_, fs) = fault_fs();
    let err = open(&fs, &dir(), options(100)).unwrap_err();
    assert!(err.to_string().contains("segment_bytes"), "{err}");
}

#[test]
fn works_on_the_real_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = Arc::new(strata_wal::StdFs::new());
    let mut opts = options(8192);
    opts.sync_interval = Some(std::time::Duration::from_millis(5));
    let (wal, _, _) = open(&fs, tmp.path(), opts.clone()).unwrap();
    for i in 0..300 {
        let commit = if i % 50 == 0 {
            Commit::Sync
        } else {
            Commit::Buffered
        };
        wal.append(&payload(i, 64), 1, commit).unwrap();
    }
    drop(wal);
    let (_, replayed, summary) = open(&fs, tmp.path(), opts).unwrap();
    assert_eq!(replayed.len(), 300);
    assert!(summary.torn_tail.is_none());
    let lock = fs.lock(&tmp.path().join("LOCK")).unwrap();
    assert!(matches!(
        fs.lock(&tmp.path().join("LOCK")),
        Err(strata_wal::Error::Locked { .. })
    ));
    drop(lock);
    fs.lock(&tmp.path().join("LOCK")).unwrap();
}
