//! Value-log segments end to end on `FaultFs`: round trips with and without zstd, one
//! bit flipped at every byte, every truncation, records that do not belong, a failed
//! append or sync, and a crash that drops what was not synced.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use strata_vlog::{
    read_value, scan_segment, segment_file_name, SegmentWriter, ValuePointer, VlogCompression,
    SEGMENT_HEADER_LEN,
};
use strata_wal::{CrashMode, Error, FaultFs, FaultKind, FaultOp, FaultRule, Fs, SeqNo};

fn setup() -> (FaultFs, Arc<dyn Fs>) {
    let fault = FaultFs::new(3);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    fs.create_dir_all(Path::new("/v")).unwrap();
    (fault, fs)
}

/// A value of `len` bytes: compressible when `text`, otherwise pseudo-random.
fn value(i: u64, len: usize, text: bool) -> Vec<u8> {
    if text {
        format!("memory {i}: the agent looked at the same page again. ")
            .into_bytes()
            .into_iter()
            .cycle()
            .take(len)
            .collect()
    } else {
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }
}

type Written = Vec<(ValuePointer, Vec<u8>, SeqNo, Vec<u8>)>;

fn write_segment(fs: &Arc<dyn Fs>, id: u64, compression: VlogCompression, n: u64) -> Written {
    let mut w = SegmentWriter::create(fs, Path::new("/v"), id, 2, compression).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let key = format!("agent-{:03}/mem/{i:04}", i % 7).into_bytes();
        let v = value(i, 50 + (i as usize * 97) % 3000, i % 2 == 0);
        let ptr = w.append(&key, SeqNo(100 + i), &v).unwrap();
        out.push((ptr, key, SeqNo(100 + i), v));
    }
    w.sync().unwrap();
    out
}

#[test]
fn records_read_back_by_pointer_and_by_scan() {
    for compression in [VlogCompression::None, VlogCompression::Zstd(3)] {
        let (_, fs) = setup();
        let written = write_segment(&fs, 1, compression, 200);
        let path = Path::new("/v").join(segment_file_name(1));
        let file = fs.open(&path).unwrap();
        for (ptr, key, seq, v) in &written {
            let r = read_value(file.as_ref(), ptr, Some(key)).unwrap();
            assert_eq!((&r.key, r.seq, &r.value), (key, *seq, v));
        }
        let bytes = file.read_all().unwrap();
        let mut scanned = Vec::new();
        let outcome = scan_segment(&bytes, &path, 1, bytes.len() as u64, |p, r| {
            scanned.push((p, r.key, r.seq, r.value));
            Ok(())
        })
        .unwrap();
        assert_eq!(outcome.records, 200);
        assert_eq!(outcome.torn_tail, None);
        assert_eq!(scanned, written);
        let raw: usize = written.iter().map(|w| w.3.len()).sum();
        if compression == VlogCompression::None {
            assert!(bytes.len() > raw);
        } else {
            // Half the values are text: zstd must have shrunk them.
            assert!(bytes.len() < raw * 3 / 4, "{} bytes for {raw}", bytes.len());
        }
    }
}

#[test]
fn a_wrong_key_or_a_pointer_outside_the_records_is_corruption() {
    let (_, fs) = setup();
    let written = write_segment(&fs, 4, VlogCompression::None, 5);
    let path = Path::new("/v").join(segment_file_name(4));
    let file = fs.open(&path).unwrap();
    let (ptr, ..) = written[2];
    let bad = [
        ValuePointer { offset: 0, ..ptr },
        ValuePointer {
            offset: ptr.offset + 1,
            ..ptr
        },
        ValuePointer {
            len: ptr.len - 1,
            ..ptr
        },
        ValuePointer {
            len: u32::MAX,
            ..ptr
        },
        ValuePointer {
            offset: u64::MAX - 3,
            ..ptr
        },
        // A record of another segment with the same bytes does not verify here.
        ValuePointer { segment: 5, ..ptr },
    ];
    for p in bad {
        match read_value(file.as_ref(), &p, None) {
            Err(Error::Corruption { file, offset, .. }) => {
                assert_eq!(file, path);
                assert_eq!(offset, p.offset);
            }
            other => panic!("{p:?}: {other:?}"),
        }
    }
    assert!(matches!(
        read_value(file.as_ref(), &ptr, Some(b"another key")),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn one_bit_flipped_anywhere_is_never_a_wrong_value() {
    for compression in [VlogCompression::None, VlogCompression::Zstd(1)] {
        let (fault, fs) = setup();
        let written = write_segment(&fs, 1, compression, 6);
        let path = Path::new("/v").join(segment_file_name(1));
        let clean = fault.read_file(&path).unwrap();
        let mut corruptions = 0;
        for at in 0..clean.len() {
            let bit = (at % 8) as u8;
            fault.flip_bit(&path, at as u64, bit).unwrap();
            let file = fs.open(&path).unwrap();
            let bytes = file.read_all().unwrap();
            let scanned = scan_segment(&bytes, &path, 1, bytes.len() as u64, |_, _| Ok(()));
            match scanned {
                Err(Error::Corruption { offset, .. }) => {
                    assert!(offset <= at as u64, "flip at {at} reported at {offset}");
                    corruptions += 1;
                }
                other => panic!("flip at {at}: the scan gave {other:?}"),
            }
            for (ptr, key, seq, v) in &written {
                match read_value(file.as_ref(), ptr, Some(key)) {
                    Ok(r) => assert_eq!((&r.key, r.seq, &r.value), (key, *seq, v), "flip at {at}"),
                    Err(Error::Corruption { offset, .. }) => assert_eq!(offset, ptr.offset),
                    Err(e) => panic!("flip at {at}: {e}"),
                }
            }
            fault.flip_bit(&path, at as u64, bit).unwrap();
        }
        assert_eq!(corruptions, clean.len());
    }
}

#[test]
fn truncation_is_a_torn_tail_past_the_durable_length_and_corruption_before_it() {
    let (fault, fs) = setup();
    let written = write_segment(&fs, 1, VlogCompression::None, 8);
    let path = Path::new("/v").join(segment_file_name(1));
    let clean = fault.read_file(&path).unwrap();
    let ends: Vec<u64> = written
        .iter()
        .map(|w| w.0.offset + u64::from(w.0.len))
        .collect();
    for cut in SEGMENT_HEADER_LEN..clean.len() {
        let bytes = &clean[..cut];
        let mut got = 0;
        // Durable up to the last whole record before the cut.
        let durable = ends
            .iter()
            .copied()
            .filter(|e| *e <= cut as u64)
            .max()
            .unwrap_or(SEGMENT_HEADER_LEN as u64);
        let outcome = scan_segment(bytes, &path, 1, durable, |_, _| {
            got += 1;
            Ok(())
        })
        .unwrap();
        let whole = ends.iter().filter(|e| **e <= cut as u64).count();
        assert_eq!(got, whole, "cut at {cut}");
        assert_eq!(
            outcome.torn_tail.is_some(),
            !ends.contains(&(cut as u64)) && cut > SEGMENT_HEADER_LEN
        );
        // Claimed durable to the end, a cut record is corruption.
        if outcome.torn_tail.is_some() {
            assert!(matches!(
                scan_segment(bytes, &path, 1, clean.len() as u64, |_, _| Ok(())),
                Err(Error::Corruption { .. })
            ));
        }
    }
    // Whole records lost before the durable length are corruption too.
    for end in &ends[..ends.len() - 1] {
        assert!(matches!(
            scan_segment(
                &clean[..*end as usize],
                &path,
                1,
                clean.len() as u64,
                |_, _| Ok(())
            ),
            Err(Error::Corruption { .. })
        ));
    }
    for cut in 0..SEGMENT_HEADER_LEN {
        assert!(scan_segment(&clean[..cut], &path, 1, 0, |_, _| Ok(())).is_err());
    }
    // A file named for another segment.
    assert!(matches!(
        scan_segment(&clean, &path, 2, 0, |_, _| Ok(())),
        Err(Error::Corruption { offset: 16, .. })
    ));
}

#[test]
fn a_failed_append_or_sync_refuses_every_later_one() {
    for op in [FaultOp::Write, FaultOp::Sync] {
        let (fault, fs) = setup();
        let mut w =
            SegmentWriter::create(&fs, Path::new("/v"), 1, 0, VlogCompression::None).unwrap();
        w.append(b"k1", SeqNo(1), b"v1").unwrap();
        fault.inject(FaultRule::once(op, 1, FaultKind::Eio));
        // Appends are gathered in memory: the write happens at the sync.
        let failed = w.append(b"k2", SeqNo(2), b"v2").and_then(|_| w.sync());
        assert!(failed.is_err());
        fault.clear_faults();
        assert!(matches!(
            w.append(b"k3", SeqNo(3), b"v3"),
            Err(Error::Poisoned { .. })
        ));
        assert!(matches!(w.sync(), Err(Error::Poisoned { .. })));
    }
}

#[test]
fn a_crash_keeps_what_was_synced() {
    for seed in 0..20 {
        for mode in [
            CrashMode::DropUnsynced,
            CrashMode::TornTail,
            CrashMode::GarbageTail,
        ] {
            let fault = FaultFs::new(seed);
            let fs: Arc<dyn Fs> = Arc::new(fault.clone());
            fs.create_dir_all(Path::new("/v")).unwrap();
            let mut w =
                SegmentWriter::create(&fs, Path::new("/v"), 1, 0, VlogCompression::None).unwrap();
            let kept = w.append(b"k1", SeqNo(1), &value(1, 500, false)).unwrap();
            w.sync().unwrap();
            let durable = w.synced_len();
            w.append(b"k2", SeqNo(2), &value(2, 500, false)).unwrap();
            drop(w);
            fault.crash_with(mode);
            let path = Path::new("/v").join(segment_file_name(1));
            let file = fs.open(&path).unwrap();
            let bytes = file.read_all().unwrap();
            let mut got = Vec::new();
            let outcome = scan_segment(&bytes, &path, 1, durable, |p, r| {
                got.push((p, r));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("seed {seed} {mode:?}: {e}"));
            assert_eq!(got[0].0, kept, "seed {seed} {mode:?}");
            assert_eq!(got[0].1.value, value(1, 500, false));
            // The second record is whole and right, or cut (a torn tail), or gone.
            match got.get(1) {
                Some((_, r)) => assert_eq!(r.value, value(2, 500, false)),
                None => assert!(outcome.torn_tail.is_some() || bytes.len() as u64 == durable),
            }
        }
    }
}

#[test]
fn bad_arguments_write_nothing() {
    let (_, fs) = setup();
    let mut w = SegmentWriter::create(&fs, Path::new("/v"), 1, 0, VlogCompression::None).unwrap();
    let big_key = vec![0u8; (64 << 10) + 1];
    assert!(matches!(
        w.append(&big_key, SeqNo(1), b"v"),
        Err(Error::InvalidArgument(_))
    ));
    // An existing segment is never overwritten.
    assert!(matches!(
        SegmentWriter::create(&fs, Path::new("/v"), 1, 0, VlogCompression::None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        w.append(b"k", SeqNo::ZERO, b"v"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(w.is_empty());
    assert_eq!(w.file().len().unwrap(), SEGMENT_HEADER_LEN as u64);
}

proptest! {
    #[test]
    fn any_input_to_the_fuzz_body_is_handled(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        strata_vlog::fuzzing::vlog_segment(&data);
    }
}
