//! Opening, replaying, rotating, retaining and reading the log.

mod common;

use std::sync::Arc;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{copy_log, dir, open, options, payload, salt_of, HookFs, Phase};
use strata_wal::record::encode_record;
use strata_wal::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
use strata_wal::{
    Commit, CrashMode, Error, FaultFs, Fs, RecoveryMode, SegmentId, SeqCounter, SeqNo, Wal,
    WalReader,
};

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

// Regression tests, named after the bugs they pin down.

#[test]
fn recovery_syncs_the_newest_segment_after_a_process_kill() {
    // A process kill keeps the page cache: reopen replays unsynced records, then makes
    // them a sealed segment. Unless recovery fsyncs it first, a later power loss drops
    // them while a newer synced record survives (not a prefix), or tears the sealed
    // segment (open fails).
    for mode in [
        CrashMode::DropUnsynced,
        CrashMode::TornTail,
        CrashMode::GarbageTail,
    ] {
        for seed in 0..20 {
            let fault = FaultFs::new(seed);
            let fs: Arc<dyn Fs> = Arc::new(fault.clone());
            let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
            for i in 0..3 {
                wal.append(&payload(i, 40), 1, Commit::Buffered).unwrap();
            }
            std::mem::forget(wal); // killed: no close, nothing synced
            let (wal, replayed, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
            assert_eq!(replayed.len(), 3);
            wal.append(&payload(3, 40), 1, Commit::Sync).unwrap();
            std::mem::forget(wal);
            fault.crash_with(mode);
            let (_, replayed, _) = open(&fs, &dir(), options(1 << 20))
                .unwrap_or_else(|e| panic!("{mode:?} seed {seed}: {e}"));
            let got: Vec<_> = replayed.iter().map(|r| r.payload.clone()).collect();
            let want: Vec<_> = (0..4).map(|i| payload(i, 40)).collect();
            assert_eq!(got, want, "{mode:?} seed {seed}");
        }
    }
}

#[test]
fn a_default_seq_counter_never_acknowledges_sequence_number_zero() {
    let fault = FaultFs::new(4);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let (wal, _) = Wal::open(
        Arc::clone(&fs),
        &dir(),
        options(1 << 20),
        Arc::new(SeqCounter::default()),
        SeqNo::ZERO,
        |_| Ok(()),
    )
    .unwrap();
    let seq = wal.append(b"acked", 1, Commit::Sync).unwrap();
    assert!(seq >= SeqNo(1), "{seq}");
    assert_eq!(wal.synced_seq(), seq);
    std::mem::forget(wal);
    fault.crash();
    let (_, replayed, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    assert_eq!(replayed.len(), 1, "a Sync-acknowledged record was lost");
    assert_eq!(replayed[0].seq, seq);
}

#[test]
fn sequence_numbers_never_wrap_and_bad_reservations_are_refused() {
    let (_, fs) = fault_fs();
    let max = SeqNo::MAX_ASSIGNABLE;
    let seq = Arc::new(SeqCounter::new(SeqNo(max.0 - 2)));
    let (wal, _) = Wal::open(
        Arc::clone(&fs),
        &dir(),
        options(1 << 20),
        Arc::clone(&seq),
        SeqNo::ZERO,
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(wal.append(b"a", 2, Commit::Sync).unwrap(), SeqNo(max.0 - 2));
    // A reservation that does not go forward is refused, and nothing is written.
    for bad in [SeqNo::ZERO, SeqNo(5), SeqNo(max.0 - 1)] {
        let err = wal.append_with(b"e", 1, Commit::Sync, |_| bad).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    // A reservation beyond the maximum (a bypass writer took the last numbers).
    let err = wal
        .append_with(b"e", 1, Commit::Sync, |_| max.plus(1))
        .unwrap_err();
    assert!(matches!(err, Error::SeqExhausted { .. }), "{err}");
    assert!(matches!(
        wal.append(b"b", 2, Commit::Sync),
        Err(Error::SeqExhausted { requested: 2 })
    ));
    assert_eq!(wal.append(b"c", 1, Commit::Sync).unwrap(), max);
    let err = wal.append(b"d", 1, Commit::Buffered).unwrap_err();
    assert!(err.to_string().contains("exhausted"), "{err}");
    // Once used up, the caller's reserve is not even called.
    let err = wal
        .append_with(b"f", 1, Commit::Sync, |_| panic!("reserve called"))
        .unwrap_err();
    assert!(matches!(err, Error::SeqExhausted { requested: 1 }), "{err}");
    assert!(wal.poisoned().is_none());
    drop(wal);
    let seq = Arc::new(SeqCounter::new(SeqNo(1)));
    let mut replayed = Vec::new();
    Wal::open(
        Arc::clone(&fs),
        &dir(),
        options(1 << 20),
        Arc::clone(&seq),
        SeqNo::ZERO,
        |r| {
            replayed.push(r.payload);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(replayed, vec![b"a".to_vec(), b"c".to_vec()]);
    assert_eq!(seq.peek_next(), max.plus(1));
    assert_eq!(seq.try_reserve(1), None);
}

#[test]
fn open_makes_a_new_log_directory_durable_in_its_parent() {
    let synced = Arc::new(Mutex::new(Vec::<PathBuf>::new()));
    let seen = Arc::clone(&synced);
    let fs: Arc<dyn Fs> = Arc::new(HookFs::new(
        Arc::new(FaultFs::new(1)),
        move |op, path, phase| {
            if op == "sync_dir" && phase == Phase::After {
                seen.lock().unwrap().push(path.to_path_buf());
            }
        },
    ));
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    drop(wal);
    let synced = synced.lock().unwrap().clone();
    for parent in [Path::new("/db"), Path::new("/")] {
        assert!(
            synced.iter().any(|p| p == parent),
            "{parent:?} not synced: {synced:?}"
        );
    }
}

/// A closed log of several segments on a fault fs, and its payloads.
fn multi_segment_log() -> (FaultFs, Vec<Vec<u8>>) {
    let fault = FaultFs::new(8);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let (wal, _, _) = open(&fs, &dir(), options(4096)).unwrap();
    let records: Vec<_> = (0..60).map(|i| payload(i, 200)).collect();
    for p in &records {
        wal.append(p, 1, Commit::Buffered).unwrap();
    }
    wal.close().unwrap();
    assert!(fs.list(&dir()).unwrap().len() >= 3);
    (fault, records)
}

/// Rewrites the header of `bytes` (a segment) through `change`, with a valid CRC.
fn rewrite_header(bytes: &mut [u8], change: impl FnOnce(&mut SegmentHeader)) {
    let mut header = SegmentHeader::decode(bytes, Path::new("x")).unwrap();
    change(&mut header);
    bytes[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
}

#[test]
fn salvage_skips_a_segment_whose_header_names_another_id() {
    let (fault, _) = multi_segment_log();
    let (_, fs) = copy_log(&fault, |name, bytes| {
        if name == "000002.wal" {
            rewrite_header(bytes, |h| h.id = SegmentId(77));
        }
    });
    let err = open(&fs, &dir(), options(4096)).unwrap_err();
    match &err {
        Error::Corruption { file, .. } => assert!(file.ends_with("000002.wal"), "{err}"),
        other => panic!("{other}"),
    }
    let mut opts = options(4096);
    opts.recovery_mode = RecoveryMode::Salvage;
    let (_, replayed, summary) = open(&fs, &dir(), opts).unwrap();
    assert_eq!(summary.skipped_regions, 1);
    assert!(!replayed.is_empty());
    assert!(
        fs.exists(&dir().join("000002.wal")).unwrap(),
        "salvage deleted data"
    );
}

#[test]
fn a_full_length_damaged_header_of_the_newest_segment_is_corruption() {
    let (fault, _) = multi_segment_log();
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    // Reopen once more so the newest segment is a bare header.
    drop(open(&fs, &dir(), options(4096)).unwrap());
    let names = fs.list(&dir()).unwrap();
    let newest = names.last().unwrap().clone();
    assert_eq!(
        fault.file_len(&dir().join(&newest)).unwrap(),
        SEGMENT_HEADER_LEN as u64
    );

    let (_, flipped) = copy_log(&fault, |name, bytes| {
        if name == newest {
            bytes[20] ^= 0x02;
        }
    });
    assert!(open(&flipped, &dir(), options(4096))
        .unwrap_err()
        .is_corruption());
    let mut salvage = options(4096);
    salvage.recovery_mode = RecoveryMode::Salvage;
    let (_, _, summary) = open(&flipped, &dir(), salvage).unwrap();
    assert_eq!((summary.removed_segments, summary.skipped_regions), (0, 1));
    assert!(flipped.exists(&dir().join(&newest)).unwrap());

    // Never written (cut short, or a header's length of zeros): removed.
    for unwritten in [vec![0u8; SEGMENT_HEADER_LEN], vec![0x53; 11]] {
        let (check, fs) = copy_log(&fault, |name, bytes| {
            if name == newest {
                *bytes = unwritten.clone();
            }
        });
        let (_, replayed, summary) = open(&fs, &dir(), options(4096)).unwrap();
        assert_eq!(summary.removed_segments, 1);
        assert_eq!(replayed.len(), 60);
        assert!(check.read_file(&dir().join(&newest)).is_none());
    }
}

#[test]
fn oldest_available_is_none_while_the_only_segment_is_being_created() {
    let (fault, fs) = fault_fs();
    fs.create_dir_all(&dir()).unwrap();
    assert_eq!(
        WalReader::oldest_available(fs.as_ref(), &dir()).unwrap(),
        None
    );
    let file = fs.create(&dir().join("000001.wal")).unwrap();
    file.append(&[0x53; 7]).unwrap();
    assert_eq!(
        WalReader::oldest_available(fs.as_ref(), &dir()).unwrap(),
        None
    );
    drop(file);
    fs.remove(&dir().join("000001.wal")).unwrap();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    let first = wal.append(b"x", 1, Commit::Sync).unwrap();
    drop(wal);
    assert_eq!(
        WalReader::oldest_available(fs.as_ref(), &dir()).unwrap(),
        Some(first)
    );
    fault.flip_bit(&dir().join("000001.wal"), 3, 0).unwrap();
    assert!(WalReader::oldest_available(fs.as_ref(), &dir())
        .unwrap_err()
        .is_corruption());
}

#[test]
fn summary_last_seq_is_a_sequence_number_that_was_found() {
    let (_, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    for i in 0..3 {
        wal.append(&payload(i, 10), 1, Commit::Buffered).unwrap();
    }
    drop(wal);
    // Writes that bypass the log moved the counter on: the next segment starts at 100.
    let (wal, _) = Wal::open(
        Arc::clone(&fs),
        &dir(),
        options(1 << 20),
        Arc::new(SeqCounter::new(SeqNo(100))),
        SeqNo::ZERO,
        |_| Ok(()),
    )
    .unwrap();
    drop(wal);
    let reopen = |from: SeqNo| {
        let seq = Arc::new(SeqCounter::new(SeqNo(1)));
        let (_, summary) = Wal::open(
            Arc::clone(&fs),
            &dir(),
            options(1 << 20),
            Arc::clone(&seq),
            from,
            |_| Ok(()),
        )
        .unwrap();
        (summary, seq.peek_next())
    };
    let (summary, next) = reopen(SeqNo::ZERO);
    assert_eq!(summary.last_seq, Some(SeqNo(3)));
    assert!(next >= SeqNo(100));
    // The segment holding 1..=3 is not scanned; no record was found, and 99 (the bound
    // the next header gives) is not a record.
    let (summary, next) = reopen(SeqNo(100));
    assert_eq!(summary.last_seq, None);
    assert!(next >= SeqNo(100));
}

#[test]
fn reader_open_reports_a_damaged_header_as_corruption() {
    let (fault, records) = multi_segment_log();
    let (_, fs) = copy_log(&fault, |name, bytes| {
        if name == "000001.wal" {
            bytes[18] ^= 0x01;
        }
    });
    let err =
        WalReader::open(Arc::clone(&fs), &dir(), SeqNo::ZERO, RecoveryMode::Strict).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    let got: Vec<_> = WalReader::open(fs, &dir(), SeqNo::ZERO, RecoveryMode::Salvage)
        .unwrap()
        .map(|r| r.unwrap().payload)
        .collect();
    assert!(!got.is_empty());
    assert_eq!(&got[..], &records[records.len() - got.len()..]);
}

#[test]
fn live_reader_stops_quietly_at_a_record_being_written_that_holds_an_encoded_record() {
    let (fault, fs) = fault_fs();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    wal.append(b"A", 1, Commit::Sync).unwrap();
    // The worst case: the payload embeds a record framed with this very segment's salt.
    let salt = salt_of(&fault.read_file(&dir().join("000001.wal")).unwrap());
    let mut big = b"user bytes:".to_vec();
    encode_record(&mut big, salt, SeqNo(1000), 1, b"inner");
    big.extend_from_slice(&[b'z'; 200]);
    wal.append(&big, 1, Commit::Buffered).unwrap();
    // A concurrent reader sees the write half done.
    let (_, half) = copy_log(&fault, |_, bytes| bytes.truncate(bytes.len() - 50));
    let got: Vec<_> = WalReader::open(half, &dir(), SeqNo::ZERO, RecoveryMode::Strict)
        .unwrap()
        .map(|r| r.unwrap_or_else(|e| panic!("live reader: {e}")).payload)
        .collect();
    assert_eq!(got, vec![b"A".to_vec()]);
    let got: Vec<_> = WalReader::open(fs, &dir(), SeqNo::ZERO, RecoveryMode::Strict)
        .unwrap()
        .map(|r| r.unwrap().payload)
        .collect();
    assert_eq!(got, vec![b"A".to_vec(), big]);
    drop(wal);
}

#[test]
fn concurrent_segment_removal_does_not_fail() {
    for round in 0..5 {
        let inner: Arc<dyn Fs> = Arc::new(FaultFs::new(round));
        // Slow removals widen the window in which two callers pick the same files.
        let fs: Arc<dyn Fs> = Arc::new(HookFs::new(inner, |op, _, phase| {
            if op == "remove" && phase == Phase::Before {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }));
        let (wal, _, _) = open(&fs, &dir(), options(4096)).unwrap();
        let mut seqs = Vec::new();
        for i in 0..60 {
            seqs.push(wal.append(&payload(i, 200), 1, Commit::Buffered).unwrap());
        }
        let before = wal.segments().len();
        let wal = Arc::new(wal);
        let barrier = Arc::new(std::sync::Barrier::new(3));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (wal, barrier) = (Arc::clone(&wal), Arc::clone(&barrier));
                let keep = seqs[50];
                std::thread::spawn(move || {
                    barrier.wait();
                    wal.remove_segments_before(keep)
                })
            })
            .collect();
        let removed: usize = handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("concurrent removal failed"))
            .sum();
        assert!(removed > 0);
        assert_eq!(wal.segments().len(), before - removed, "round {round}");
        assert_eq!(fs.list(&dir()).unwrap().len(), before - removed);
    }
}
