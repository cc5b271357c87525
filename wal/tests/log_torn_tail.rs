//! Torn tail then append: cut the log at every byte offset of its last two records,
//! reopen, append, reopen. No spurious corruption, nothing acknowledged lost.

mod common;

use std::sync::Arc;

use common::{copy_log, dir, open, options, payload, salt_of};
use strata_wal::record::{
    encode_sync_mark, parse_fragment, Fragment, FragmentType, Salt, FRAGMENT_HEADER_LEN,
    SYNC_MARK_LEN,
};
use strata_wal::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
use strata_wal::{Commit, FaultFs, Fs, RecoveryMode, SegmentId, SeqNo};

#[test]
fn truncation_at_every_offset_of_the_last_two_records_recovers_cleanly() {
    // Build a reference log; remember where each record ends.
    let fs = FaultFs::new(7);
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    let (wal, _, _) = open(&shared, &dir(), options(1 << 20)).unwrap();
    let records: Vec<Vec<u8>> = (0..6).map(|i| payload(i, 40 + i * 13)).collect();
    for (i, p) in records.iter().enumerate() {
        let commit = if i % 2 == 0 {
            Commit::Sync
        } else {
            Commit::Buffered
        };
        wal.append(p, 1, commit).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let names = shared.list(&dir()).unwrap();
    // The first segment holds the records; the reopen above did not create more.
    let path = dir().join(&names[0]);
    let full = fs.read_file(&path).unwrap();
    // Where each record ends, found by walking the fragments of the reference file.
    let mut ends = Vec::new();
    let mut boundaries = vec![strata_wal::segment::SEGMENT_HEADER_LEN];
    let mut pos = strata_wal::segment::SEGMENT_HEADER_LEN;
    let salt = salt_of(&full);
    while let Fragment::Valid { ty, next, .. } = parse_fragment(&full, pos, salt) {
        if ty == FragmentType::Full {
            ends.push(next);
        }
        boundaries.push(next);
        pos = next;
    }
    assert_eq!(ends.len(), records.len());
    let cut_from = ends[3];
    for cut in cut_from..=full.len() {
        let fs = FaultFs::new(cut as u64);
        let shared: Arc<dyn Fs> = Arc::new(fs.clone());
        shared.create_dir_all(&dir()).unwrap();
        let file = shared.create(&path).unwrap();
        file.append(&full[..cut]).unwrap();
        file.sync_data().unwrap();
        shared.sync_dir(&dir()).unwrap();
        drop(file);

        let (wal, replayed, summary) = open(&shared, &dir(), options(1 << 20))
            .unwrap_or_else(|e| panic!("cut at {cut}: spurious error {e}"));
        // Exactly the records wholly before the cut survive.
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(replayed.len(), whole, "cut at {cut}");
        for (i, r) in replayed.iter().enumerate() {
            assert_eq!(r.payload, records[i], "cut at {cut}: wrong record {i}");
        }
        if !boundaries.contains(&cut) {
            assert!(
                summary.torn_tail.is_some(),
                "cut at {cut}: no torn tail reported"
            );
        }
        let acked = wal.append(b"after the cut", 1, Commit::Sync).unwrap();
        drop(wal);
        let (_, again, summary) = open(&shared, &dir(), options(1 << 20))
            .unwrap_or_else(|e| panic!("cut at {cut}: second reopen failed: {e}"));
        assert_eq!(
            summary.torn_tail, None,
            "cut at {cut}: torn tail reported twice"
        );
        assert_eq!(again.len(), replayed.len() + 1, "cut at {cut}");
        let last = again.last().unwrap();
        assert_eq!(
            (last.seq, &last.payload[..]),
            (acked, &b"after the cut"[..])
        );
    }
}

// Regression tests, named after the bugs they pin down.

#[test]
fn a_torn_record_whose_payload_holds_a_sync_mark_is_a_torn_tail() {
    // Payload bytes that frame a sync mark claiming a large durable offset used to
    // turn an ordinary torn tail into corruption. Two defences: a mark framed with
    // another salt is not a fragment of this segment; a mark in this segment's own
    // salt that claims more than its own position is ignored.
    for own_salt in [false, true] {
        let fault = FaultFs::new(3);
        let fs: Arc<dyn Fs> = Arc::new(fault.clone());
        let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
        wal.append(b"A", 1, Commit::Sync).unwrap();
        let path = dir().join("000001.wal");
        // The next group starts with a sync mark declaring what is durable now.
        let kept = fault.file_len(&path).unwrap() + (FRAGMENT_HEADER_LEN + SYNC_MARK_LEN) as u64;
        let salt = if own_salt {
            salt_of(&fault.read_file(&path).unwrap())
        } else {
            Salt(0x1234_5678)
        };
        let mut big = b"user bytes:".to_vec();
        // Beyond the torn record's start; in the other salt, not beyond the mark's own
        // position, so only the salt rejects it.
        let claimed = if own_salt { 1 << 40 } else { kept + 30 };
        encode_sync_mark(&mut big, salt, 1, claimed);
        big.extend_from_slice(&[b'z'; 200]);
        wal.append(&big, 1, Commit::Buffered).unwrap();
        std::mem::forget(wal);
        // The crash keeps the embedded mark but not the end of the record.
        let (_, torn) = copy_log(&fault, |_, bytes| bytes.truncate(bytes.len() - 50));
        let (_, replayed, summary) = open(&torn, &dir(), options(1 << 20))
            .unwrap_or_else(|e| panic!("own salt {own_salt}: ordinary torn tail refused: {e}"));
        assert_eq!(replayed.len(), 1);
        assert_eq!(summary.torn_tail.map(|t| t.offset), Some(kept));
    }
}

#[test]
fn a_damaged_tail_full_of_plausible_headers_recovers() {
    // 4 MiB in which every fifth offset looks like the header of a 1 MiB fragment:
    // recovery used to checksum ~1 MiB at each (hours). No time limit here; the unit
    // test `damaged_tail_full_of_plausible_headers_is_scanned_in_linear_time` counts
    // the bytes checksummed.
    let fault = FaultFs::new(5);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let (wal, _, _) = open(&fs, &dir(), options(64 << 20)).unwrap();
    wal.append(b"A", 1, Commit::Sync).unwrap();
    std::mem::forget(wal);
    let kept = fault.file_len(&dir().join("000001.wal")).unwrap();
    for mode in [RecoveryMode::Strict, RecoveryMode::Salvage] {
        let (_, crafted) = copy_log(&fault, |_, bytes| {
            bytes.extend_from_slice(&[0u8, 0, 0x10, 0, 1].repeat((4 << 20) / 5));
        });
        let mut opts = options(64 << 20);
        opts.recovery_mode = mode;
        let (_, replayed, summary) = open(&crafted, &dir(), opts).unwrap();
        assert_eq!(replayed.len(), 1);
        assert_eq!(summary.torn_tail.map(|t| t.offset), Some(kept), "{mode:?}");
    }
    // A crafted newest segment with nothing valid at all.
    let fs: Arc<dyn Fs> = Arc::new(FaultFs::new(0));
    fs.create_dir_all(&dir()).unwrap();
    let file = fs.create(&dir().join("000001.wal")).unwrap();
    let mut bytes = SegmentHeader {
        id: SegmentId(1),
        first_seq: SeqNo(1),
        salt: Salt(9),
    }
    .encode()
    .to_vec();
    bytes.extend_from_slice(&[0u8, 0, 0x10, 0, 1].repeat((4 << 20) / 5));
    file.append(&bytes).unwrap();
    file.sync_data().unwrap();
    fs.sync_dir(&dir()).unwrap();
    let (_, replayed, summary) = open(&fs, &dir(), options(64 << 20)).unwrap();
    assert!(replayed.is_empty());
    assert_eq!(
        summary.torn_tail.map(|t| t.offset),
        Some(SEGMENT_HEADER_LEN as u64)
    );
}
