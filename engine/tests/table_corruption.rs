//! Damaged tables: one bit flipped at every byte offset of a small table (and every
//! truncation of it). Opening, full iteration both ways and point reads of every key
//! must either return exactly the original data or fail with `Error::Corruption`
//! naming the file and an offset inside it; never a panic, never a wrong value.
//! Every byte of a table is covered by a checksum, so every flip must be reported.

use std::path::Path;
use std::sync::Arc;

use strata::cache::BlockCache;
use strata::ids::TableId;
use strata::iter::InternalIterator;
use strata::key::{compare_internal, internal_key, parse_internal_key, ValueKind};
use strata::table::{Compression, Table, TableBuildOptions, TableBuilder};
use strata::{Error, Result};
use strata_wal::{FaultFs, Fs, SeqNo};

type Entry = (Vec<u8>, Vec<u8>);

fn entries() -> Vec<Entry> {
    let mut out = Vec::new();
    for i in 0..40u64 {
        let uk = format!("user/{:03}", i * 3);
        for v in 0..(1 + i % 3) {
            let seq = 1000 - i * 10 - v;
            let kind = if (i + v) % 7 == 0 {
                ValueKind::Delete
            } else {
                ValueKind::Put
            };
            let value = match kind {
                ValueKind::Delete => String::new(),
                _ => format!("v{i}.{v}-").repeat(1 + (i % 4) as usize),
            };
            out.push((
                internal_key(uk.as_bytes(), SeqNo(seq), kind),
                value.into_bytes(),
            ));
        }
    }
    out.sort_by(|a, b| compare_internal(&a.0, &b.0));
    out
}

/// Everything a reader can see of the table, or the first error.
fn read_all(fs: &FaultFs, path: &Path, mmap: bool, entries: &[Entry]) -> Result<()> {
    let cache = Arc::new(BlockCache::new(1 << 20));
    let t = Table::open(fs.open(path)?, TableId(1), Some(cache), mmap)?;
    let mut it = t.iter();
    let mut seen = Vec::new();
    it.seek_to_first()?;
    while it.valid() {
        seen.push((it.key().to_vec(), it.value().to_vec()));
        it.next()?;
    }
    assert_eq!(seen, entries, "a damaged table iterated to different data");
    let mut back = Vec::new();
    it.seek_to_last()?;
    while it.valid() {
        back.push((it.key().to_vec(), it.value().to_vec()));
        it.prev()?;
    }
    back.reverse();
    assert_eq!(
        back, entries,
        "a damaged table iterated backward to different data"
    );
    for (k, v) in entries {
        let p = parse_internal_key(k).unwrap();
        let got = t.get(p.user_key, p.seq)?;
        let (seq, kind, value) = got.expect("a damaged table lost a key without an error");
        assert_eq!(
            (seq, kind),
            (p.seq, p.kind),
            "a damaged table returned a wrong version"
        );
        assert_eq!(&value[..], &v[..], "a damaged table returned a wrong value");
    }
    for absent in [&b"user/001"[..], b"zzz"] {
        assert!(t.get(absent, SeqNo(u64::MAX >> 8))?.is_none());
    }
    Ok(())
}

fn assert_names_place(e: &Error, path: &Path, len: u64, what: &str) {
    match e {
        Error::Corruption { file, offset, .. } => {
            assert_eq!(file, path, "{what}: {e}");
            assert!(
                *offset < len,
                "{what}: offset {offset} outside the file: {e}"
            );
        }
        other => panic!("{what}: expected corruption, got {other}"),
    }
}

fn build(fs: &FaultFs, path: &Path, opts: TableBuildOptions, entries: &[Entry]) {
    let mut b = TableBuilder::new(fs.create(path).unwrap(), opts).unwrap();
    for (k, v) in entries {
        b.add(k, v).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn every_single_bit_flip_is_reported_never_misread() {
    let entries = entries();
    for compression in [Compression::None, Compression::Zstd] {
        let fs = FaultFs::new(5);
        let path = Path::new("/db/000003.sst");
        fs.create_dir_all(Path::new("/db")).unwrap();
        let opts = TableBuildOptions {
            block_size: 256,
            restart_interval: 4,
            compression,
            ..TableBuildOptions::default()
        };
        build(&fs, path, opts, &entries);
        for mmap in [false, true] {
            read_all(&fs, path, mmap, &entries).unwrap();
        }
        let len = fs.file_len(path).unwrap();
        assert!(len > 1500, "table too small to be interesting: {len}");
        let mut detected_at_open = 0;
        for offset in 0..len {
            let bit = (offset % 8) as u8;
            fs.flip_bit(path, offset, bit).unwrap();
            for mmap in [false, true] {
                let what = format!("{compression:?} mmap {mmap}, bit {bit} of byte {offset}");
                match read_all(&fs, path, mmap, &entries) {
                    Ok(()) => panic!("{what}: the flip went unnoticed"),
                    Err(e) => assert_names_place(&e, path, len, &what),
                }
            }
            if Table::open(fs.open(path).unwrap(), TableId(1), None, false).is_err() {
                detected_at_open += 1;
            }
            fs.flip_bit(path, offset, bit).unwrap();
        }
        // The meta blocks and the footer are checked at open; data blocks when read.
        assert!(
            detected_at_open > 64 && detected_at_open < len,
            "{detected_at_open} of {len}"
        );
        read_all(&fs, path, false, &entries).unwrap();
    }
}

#[test]
fn every_truncation_is_reported() {
    let entries = entries();
    let fs = FaultFs::new(5);
    let full = Path::new("/full.sst");
    build(&fs, full, TableBuildOptions::default(), &entries);
    let bytes = fs.read_file(full).unwrap();
    let cut = Path::new("/cut.sst");
    for n in 0..bytes.len() {
        let f = fs.create(cut).unwrap();
        f.append(&bytes[..n]).unwrap();
        for mmap in [false, true] {
            let e = read_all(&fs, cut, mmap, &entries).unwrap_err();
            assert_names_place(&e, cut, n.max(1) as u64, &format!("cut at {n}"));
        }
    }
}

#[test]
fn bytes_appended_after_the_footer_are_reported() {
    let entries = entries();
    let fs = FaultFs::new(5);
    let path = Path::new("/x.sst");
    build(&fs, path, TableBuildOptions::default(), &entries);
    fs.open(path).unwrap().append(&[0; 3]).unwrap();
    let e = read_all(&fs, path, false, &entries).unwrap_err();
    assert!(e.is_corruption(), "{e}");
}
