//! Tables round-trip: many blocks, with and without zstd, positional reads and
//! memory maps, with and without a block cache. Full iteration both ways equals the
//! input; point reads at every interesting snapshot return the right version; seeks
//! match a sorted-vector model.

use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

use strata::cache::BlockCache;
use strata::ids::TableId;
use strata::iter::InternalIterator;
use strata::key::{compare_internal, internal_key, parse_internal_key, seek_key, ValueKind};
use strata::table::{
    Block, BlockHandle, Compression, Table, TableBuildOptions, TableBuilder, TableProperties,
};
use strata::Bytes;
use strata_wal::{FaultFs, Fs, FsFile, SeqNo, StdFs};

type Entry = (Vec<u8>, Vec<u8>);

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `keys` user keys with one to four versions each (newest first), some tombstones,
/// compressible values of 0..300 bytes. Sequence numbers are unique.
fn make_entries(keys: usize, seed: u64) -> Vec<Entry> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    let mut seq = 1u64;
    for i in 0..keys {
        let uk = format!("agent/{:04}/event/{:08}", i % 97, i * 7);
        let versions = 1 + rng.below(4);
        let mut seqs: Vec<u64> = (0..versions)
            .map(|_| {
                seq += 1 + rng.below(3);
                seq
            })
            .collect();
        seqs.reverse();
        for s in seqs {
            let kind = if rng.below(10) == 0 {
                ValueKind::Delete
            } else {
                ValueKind::Put
            };
            let value = match kind {
                ValueKind::Delete => Vec::new(),
                _ => format!("value of {uk} at {s};")
                    .repeat(rng.below(10) as usize)
                    .into_bytes(),
            };
            out.push((internal_key(uk.as_bytes(), SeqNo(s), kind), value));
        }
    }
    out.sort_by(|a, b| compare_internal(&a.0, &b.0));
    out
}

fn build(file: Arc<dyn FsFile>, entries: &[Entry], opts: TableBuildOptions) -> TableProperties {
    let mut b = TableBuilder::new(file, opts).unwrap();
    for (k, v) in entries {
        b.add(k, v).unwrap();
    }
    assert_eq!(b.entries(), entries.len() as u64);
    b.finish().unwrap()
}

fn forward(t: &Arc<Table>) -> Vec<Entry> {
    let mut it = t.iter();
    let mut out = Vec::new();
    it.seek_to_first().unwrap();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().unwrap();
    }
    out
}

fn backward(t: &Arc<Table>) -> Vec<Entry> {
    let mut it = t.iter();
    let mut out = Vec::new();
    it.seek_to_last().unwrap();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.prev().unwrap();
    }
    out.reverse();
    out
}

/// The model's answer to `get(user_key, snapshot)`.
fn model_get(entries: &[Entry], uk: &[u8], snap: u64) -> Option<(SeqNo, ValueKind, Vec<u8>)> {
    entries.iter().find_map(|(k, v)| {
        let p = parse_internal_key(k).unwrap();
        (p.user_key == uk && p.seq.0 <= snap).then(|| (p.seq, p.kind, v.clone()))
    })
}

fn check_table(t: &Arc<Table>, entries: &[Entry], seed: u64) {
    let props = t.properties();
    assert_eq!(props.entries, entries.len() as u64);
    assert_eq!(
        props.deletions,
        entries
            .iter()
            .filter(|(k, _)| parse_internal_key(k).unwrap().kind == ValueKind::Delete)
            .count() as u64
    );
    assert_eq!(props.smallest_key, entries[0].0);
    assert_eq!(props.largest_key, entries[entries.len() - 1].0);
    assert!(props.data_blocks > 20, "only {} blocks", props.data_blocks);

    assert_eq!(forward(t), entries, "forward iteration");
    assert_eq!(backward(t), entries, "backward iteration");

    // Point reads at every version's sequence number, just below it, and the latest.
    let mut i = 0;
    while i < entries.len() {
        let p = parse_internal_key(&entries[i].0).unwrap();
        let uk = p.user_key.to_vec();
        let mut snaps = vec![u64::MAX >> 8, 0];
        let mut j = i;
        while j < entries.len() && parse_internal_key(&entries[j].0).unwrap().user_key == uk {
            let s = parse_internal_key(&entries[j].0).unwrap().seq.0;
            snaps.extend([s, s - 1, s + 1]);
            j += 1;
        }
        for snap in snaps {
            let got = t
                .get(&uk, SeqNo(snap))
                .unwrap()
                .map(|(s, k, v)| (s, k, v.to_vec()));
            // The versions of `uk` are entries[i..j], newest first.
            assert_eq!(
                got,
                model_get(&entries[i..j], &uk, snap),
                "get {uk:?} at {snap}"
            );
        }
        assert!(t.may_contain(&uk));
        i = j;
    }
    // Absent keys: between, before and after the present ones.
    for absent in [
        &b""[..],
        b"agent/",
        b"agent/0000/event/00000001x",
        b"zzz",
        b"\xff\xff",
    ] {
        assert_eq!(t.get(absent, SeqNo(u64::MAX >> 8)).unwrap(), None);
    }

    // Seeks against the model, with a few steps either way after each.
    let mut rng = Rng(seed | 1);
    let mut it = t.iter();
    for _ in 0..400 {
        let base = &entries[rng.below(entries.len() as u64) as usize].0;
        let p = parse_internal_key(base).unwrap();
        let mut uk = p.user_key.to_vec();
        match rng.below(3) {
            0 => {}
            1 => uk.push(b'!'),
            _ => {
                uk.pop();
            }
        }
        let target = seek_key(&uk, SeqNo(p.seq.0 + rng.below(3)).min(SeqNo(1 << 50)));
        let pos = entries.partition_point(|(k, _)| compare_internal(k, &target) == Ordering::Less);
        it.seek(&target).unwrap();
        if pos == entries.len() {
            assert!(!it.valid());
        } else {
            assert_eq!(it.key(), &entries[pos].0[..]);
            let mut at = pos as isize;
            for _ in 0..5 {
                if rng.below(2) == 0 {
                    it.next().unwrap();
                    at += 1;
                } else {
                    it.prev().unwrap();
                    at -= 1;
                }
                if at < 0 || at as usize >= entries.len() {
                    assert!(!it.valid());
                    break;
                }
                assert_eq!(it.key(), &entries[at as usize].0[..]);
                assert_eq!(&it.value()[..], &entries[at as usize].1[..]);
            }
        }
        // seek_for_prev: the last entry at or below the target.
        let pos =
            entries.partition_point(|(k, _)| compare_internal(k, &target) != Ordering::Greater);
        it.seek_for_prev(&target).unwrap();
        if pos == 0 {
            assert!(!it.valid());
        } else {
            assert_eq!(it.key(), &entries[pos - 1].0[..]);
        }
    }
    it.seek_for_prev(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
        .unwrap();
    assert_eq!(it.key(), &entries[entries.len() - 1].0[..]);
    it.seek(b"").unwrap();
    assert_eq!(it.key(), &entries[0].0[..]);
}

#[test]
fn round_trip_over_every_read_mode() {
    let entries = make_entries(3000, 7);
    for compression in [Compression::None, Compression::Zstd] {
        let fs = FaultFs::new(3);
        let path = Path::new("/db/000007.sst");
        fs.create_dir_all(Path::new("/db")).unwrap();
        let opts = TableBuildOptions {
            compression,
            ..TableBuildOptions::default()
        };
        let props = build(fs.create(path).unwrap(), &entries, opts);
        let size = fs.file_len(path).unwrap();
        for mmap in [false, true] {
            for cache in [None, Some(Arc::new(BlockCache::new(64 << 10)))] {
                let t =
                    Table::open(fs.open(path).unwrap(), TableId(7), cache.clone(), mmap).unwrap();
                assert_eq!(t.properties(), &props);
                assert_eq!(t.file_size(), size);
                assert_eq!(t.path(), path);
                assert_eq!(t.id(), TableId(7));
                check_table(&t, &entries, 11);
                if let Some(c) = cache {
                    let s = c.stats();
                    if mmap && compression == Compression::None {
                        // Uncompressed mapped blocks bypass the cache.
                        assert_eq!(s.hits + s.misses, 0);
                    } else {
                        assert!(s.hits > 0 && s.misses > 0, "{s:?}");
                        assert!(s.usage <= s.capacity);
                    }
                }
            }
        }
    }
}

#[test]
fn zstd_shrinks_compressible_tables() {
    let entries = make_entries(2000, 5);
    let fs = FaultFs::new(3);
    let mut sizes = Vec::new();
    for (i, compression) in [Compression::None, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let path = format!("/{i}.sst");
        let opts = TableBuildOptions {
            compression,
            ..TableBuildOptions::default()
        };
        let props = build(fs.create(Path::new(&path)).unwrap(), &entries, opts);
        sizes.push((fs.file_len(Path::new(&path)).unwrap(), props.data_bytes));
    }
    assert!(sizes[1].1 * 2 < sizes[0].1, "data bytes {sizes:?}");
    assert!(sizes[1].0 < sizes[0].0);
}

#[test]
fn real_files_with_mmap_and_positional_reads() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs;
    let path = dir.path().join("000042.sst");
    let entries = make_entries(1500, 9);
    let opts = TableBuildOptions {
        block_size: 1024,
        compression: Compression::Zstd,
        ..TableBuildOptions::default()
    };
    let file = fs.create(&path).unwrap();
    let props = build(Arc::clone(&file), &entries, opts);
    drop(file);
    let cache = Arc::new(BlockCache::new(1 << 20));
    for mmap in [true, false] {
        let t = Table::open(
            fs.open(&path).unwrap(),
            TableId(42),
            Some(Arc::clone(&cache)),
            mmap,
        )
        .unwrap();
        assert_eq!(t.is_mapped(), mmap);
        assert_eq!(t.properties(), &props);
        check_table(&t, &entries, 3);
    }
}

#[test]
fn values_are_slices_of_one_block_not_copies() {
    let entries = make_entries(400, 13);
    let (key, want) = entries.iter().find(|(_, v)| v.len() > 20).cloned().unwrap();
    let p = parse_internal_key(&key).unwrap();
    let fs = FaultFs::new(1);
    let path = Path::new("/v.sst");
    build(
        fs.create(path).unwrap(),
        &entries,
        TableBuildOptions::default(),
    );
    let ptr = |v: &Bytes| v.as_ptr() as usize;
    // Through the cache (positional reads) and through the map, two reads of the
    // same value point at the same bytes.
    let cache = Arc::new(BlockCache::new(1 << 20));
    for (mmap, cache) in [(false, Some(cache)), (true, None)] {
        let t = Table::open(fs.open(path).unwrap(), TableId(1), cache, mmap).unwrap();
        let a = t.get(p.user_key, p.seq).unwrap().unwrap().2;
        let b = t.get(p.user_key, p.seq).unwrap().unwrap().2;
        assert_eq!(&a[..], &want[..]);
        assert_eq!(ptr(&a), ptr(&b), "mmap {mmap}: the value was copied");
        let mut it = t.iter();
        it.seek(&key).unwrap();
        assert_eq!(ptr(&it.value()), ptr(&a));
    }
    // Without a cache, each positional read gets its own buffer: the comparison
    // above is meaningful.
    let t = Table::open(fs.open(path).unwrap(), TableId(1), None, false).unwrap();
    let a = t.get(p.user_key, p.seq).unwrap().unwrap().2;
    let b = t.get(p.user_key, p.seq).unwrap().unwrap().2;
    assert_ne!(ptr(&a), ptr(&b));
}

#[test]
fn empty_table_opens_and_holds_nothing() {
    let fs = FaultFs::new(1);
    let path = Path::new("/e.sst");
    let props = build(fs.create(path).unwrap(), &[], TableBuildOptions::default());
    assert_eq!((props.entries, props.data_blocks), (0, 0));
    for mmap in [false, true] {
        let t = Table::open(fs.open(path).unwrap(), TableId(1), None, mmap).unwrap();
        assert!(forward(&t).is_empty());
        assert!(backward(&t).is_empty());
        assert!(!t.may_contain(b"x"));
        assert_eq!(t.get(b"x", SeqNo(9)).unwrap(), None);
        let mut it = t.iter();
        it.seek(b"x").unwrap();
        assert!(!it.valid());
        it.seek_for_prev(b"x").unwrap();
        assert!(!it.valid());
    }
}

#[test]
fn large_values_no_filter_and_tiny_blocks() {
    let mut entries: Vec<Entry> = (0..40u32)
        .map(|i| {
            let v = vec![i as u8; if i % 5 == 0 { 300_000 } else { 17 }];
            (
                internal_key(
                    format!("k{i:03}").as_bytes(),
                    SeqNo(u64::from(i) + 1),
                    ValueKind::Put,
                ),
                v,
            )
        })
        .collect();
    entries.sort_by(|a, b| compare_internal(&a.0, &b.0));
    let fs = FaultFs::new(1);
    for (n, opts) in [
        TableBuildOptions {
            bloom_bits_per_key: 0,
            ..TableBuildOptions::default()
        },
        TableBuildOptions {
            block_size: 1,
            restart_interval: 1,
            compression: Compression::Zstd,
            ..TableBuildOptions::default()
        },
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/l{n}.sst");
        let path = Path::new(&path);
        let mut b = TableBuilder::new(fs.create(path).unwrap(), opts).unwrap();
        for (k, v) in &entries {
            b.add(k, v).unwrap();
        }
        let estimate = b.estimated_size();
        let props = b.finish().unwrap();
        let size = fs.file_len(path).unwrap();
        assert!(
            estimate <= size && size - estimate < 2048,
            "{estimate} vs {size}"
        );
        if opts.block_size == 1 {
            assert_eq!(props.data_blocks, 40);
        }
        for mmap in [false, true] {
            let t = Table::open(fs.open(path).unwrap(), TableId(1), None, mmap).unwrap();
            assert_eq!(t.footer().filter.size == 0, opts.bloom_bits_per_key == 0);
            assert!(t.may_contain(b"anything") || opts.bloom_bits_per_key > 0);
            assert_eq!(forward(&t), entries);
            assert_eq!(backward(&t), entries);
            for (k, v) in &entries {
                let p = parse_internal_key(k).unwrap();
                assert_eq!(
                    &t.get(p.user_key, SeqNo(1000)).unwrap().unwrap().2[..],
                    &v[..]
                );
            }
        }
    }
}

#[test]
fn cache_serves_repeated_reads_without_touching_the_file() {
    let entries = make_entries(500, 21);
    let fs = FaultFs::new(1);
    let path = Path::new("/c.sst");
    build(
        fs.create(path).unwrap(),
        &entries,
        TableBuildOptions::default(),
    );
    let (key, value) = entries[entries.len() / 2].clone();
    let p = parse_internal_key(&key).unwrap();
    let cache = Arc::new(BlockCache::new(1 << 20));
    let t = Table::open(
        fs.open(path).unwrap(),
        TableId(3),
        Some(Arc::clone(&cache)),
        false,
    )
    .unwrap();
    let get = |t: &Table| {
        t.get(p.user_key, p.seq)
            .map(|r| r.map(|(_, _, v)| v.to_vec()))
    };
    assert_eq!(get(&t).unwrap().as_ref(), Some(&value));
    assert_eq!((cache.stats().hits, cache.stats().misses), (0, 1));
    assert_eq!(get(&t).unwrap().as_ref(), Some(&value));
    assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
    // Find the key's data block through the index block (stored uncompressed).
    let bytes = fs.read_file(path).unwrap();
    let ih = t.footer().index;
    let index_bytes =
        Bytes::copy_from_slice(&bytes[ih.offset as usize..(ih.offset + ih.size) as usize]);
    let index = Block::decode(index_bytes, Arc::from(path), ih.offset).unwrap();
    let mut it = index.iter();
    it.seek(&key).unwrap();
    let block_offset = BlockHandle::decode(it.value_slice()).unwrap().offset;
    // Damage the first byte of that data block on "disk": the cached copy still
    // answers, a table without the cache reports the damage at the block's offset.
    fs.flip_bit(path, block_offset, 0).unwrap();
    assert_eq!(
        get(&t).unwrap().as_ref(),
        Some(&value),
        "cache hit re-read the file"
    );
    let fresh = Table::open(fs.open(path).unwrap(), TableId(4), None, false).unwrap();
    match get(&fresh).unwrap_err() {
        strata::Error::Corruption { file, offset, .. } => {
            assert_eq!(file, path);
            assert_eq!(offset, block_offset);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn concurrent_readers_share_one_table_and_cache() {
    let entries = Arc::new(make_entries(2000, 17));
    let fs = FaultFs::new(1);
    let path = Path::new("/m.sst");
    let opts = TableBuildOptions {
        compression: Compression::Zstd,
        ..TableBuildOptions::default()
    };
    build(fs.create(path).unwrap(), &entries, opts);
    // A cache far smaller than the table, so readers evict each other's blocks.
    let cache = Arc::new(BlockCache::new(32 << 10));
    let t = Table::open(
        fs.open(path).unwrap(),
        TableId(5),
        Some(Arc::clone(&cache)),
        false,
    )
    .unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|n| {
            let (t, entries) = (Arc::clone(&t), Arc::clone(&entries));
            std::thread::spawn(move || {
                let mut rng = Rng(n * 7919 + 1);
                for round in 0..3000 {
                    let (k, v) = &entries[rng.below(entries.len() as u64) as usize];
                    let p = parse_internal_key(k).unwrap();
                    let got = t.get(p.user_key, p.seq).unwrap().unwrap();
                    assert_eq!((got.0, got.1, &got.2[..]), (p.seq, p.kind, &v[..]));
                    if round % 1000 == 0 {
                        assert_eq!(forward(&t), *entries);
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let s = cache.stats();
    assert!(
        s.usage <= s.capacity && s.evictions > 0 && s.hits > 0,
        "{s:?}"
    );
}
