//! Torn tail then append: cut the log at every byte offset of its last two records,
//! reopen, append, reopen. No spurious corruption, nothing acknowledged lost.

mod common;

use std::sync::Arc;

use common::{dir, open, options, payload};
use strata_wal::record::{parse_fragment, Fragment, FragmentType};
use strata_wal::{Commit, FaultFs, Fs};

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
    while let Fragment::Valid { ty, next, .. } = parse_fragment(&full, pos) {
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
