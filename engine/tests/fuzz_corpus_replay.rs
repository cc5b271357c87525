//! Replays the committed cargo-fuzz seed corpora of the block decoder, the table
//! reader, the manifest decoder and the engine model, so that every `cargo test` exercises the fuzz targets' invariants on
//! stable Rust.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = corpus(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed corpus is committed") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        run(&data);
        count += 1;
    }
    count
}

#[test]
fn block_decoder_corpus_replays_without_panics() {
    let count = replay("block_decoder", strata::fuzzing::block_decoder);
    assert!(
        count >= 8,
        "block_decoder seed corpus has only {count} inputs"
    );
}

#[test]
fn table_reader_corpus_replays_without_panics() {
    let count = replay("table_reader", strata::fuzzing::table_reader);
    assert!(
        count >= 8,
        "table_reader seed corpus has only {count} inputs"
    );
}

#[test]
fn manifest_decoder_corpus_replays_without_panics() {
    let count = replay("manifest_decoder", strata::fuzzing::manifest_decoder);
    assert!(
        count >= 8,
        "manifest_decoder seed corpus has only {count} inputs"
    );
}

/// Regenerates the manifest seed corpus: `cargo test -p strata --test
/// fuzz_corpus_replay -- --ignored generate_manifest`.
#[test]
#[ignore]
fn generate_manifest_seed_corpus() {
    use std::sync::Arc;

    use strata::history::TimeMark;
    use strata::ids::{KeyspaceId, Level, TableId};
    use strata::key::{internal_key, ValueKind};
    use strata::manifest::{
        encode_current, KeyspaceRecord, ManifestState, ManifestWriter, SegmentMeta, TableMeta,
        TimeMarkEdit, ValueRef, VersionEdit,
    };
    use strata::KeyspaceOptions;
    use strata_wal::{FaultFs, Fs, SeqNo};

    let out = corpus("manifest_decoder");
    std::fs::create_dir_all(&out).expect("corpus dir");
    let fs = FaultFs::new(3);
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    let dir = Path::new("/m");
    shared.create_dir_all(dir).expect("dir");
    let create = VersionEdit {
        next_file_number: Some(2),
        next_keyspace_id: Some(2),
        created_keyspaces: vec![KeyspaceRecord {
            id: KeyspaceId(1),
            name: "agents".into(),
            options: KeyspaceOptions::default().encode(),
        }],
        ..VersionEdit::default()
    };
    let mut state = ManifestState::default();
    state.apply(&create).expect("apply");
    let mut writer =
        ManifestWriter::create(Arc::clone(&shared), dir, 1, &state, None).expect("create");
    let table = |id: u64, lo: &str, hi: &str| TableMeta {
        id: TableId(id),
        level: Level(0),
        size: 4096,
        smallest: internal_key(lo.as_bytes(), SeqNo(1), ValueKind::Put),
        largest: internal_key(hi.as_bytes(), SeqNo(9), ValueKind::Delete),
        min_seq: SeqNo(1),
        max_seq: SeqNo(9),
        entries: 10,
        deletions: 1,
        run: id,
        value_refs: Vec::new(),
    };
    let flush = VersionEdit {
        added_tables: vec![(KeyspaceId(1), table(5, "a", "m"))],
        flushed_seqs: vec![(KeyspaceId(1), SeqNo(9))],
        added_prefix_tombstones: vec![(KeyspaceId(1), b"agent-3/".to_vec(), SeqNo(7))],
        last_seq: Some(SeqNo(9)),
        ..VersionEdit::default()
    };
    writer.append(&flush).expect("append");
    writer.mark_durable().expect("mark");
    let compaction = VersionEdit {
        added_tables: vec![(
            KeyspaceId(1),
            TableMeta {
                level: Level(1),
                ..table(6, "a", "m")
            },
        )],
        removed_tables: vec![(KeyspaceId(1), Level(0), TableId(5))],
        removed_prefix_tombstones: vec![(KeyspaceId(1), b"agent-3/".to_vec(), SeqNo(7))],
        ..VersionEdit::default()
    };
    writer.append(&compaction).expect("append");
    // Key-value separation: a flush that writes a value-log segment, then a
    // collection that removes it.
    let separated_flush = VersionEdit {
        added_segments: vec![(
            KeyspaceId(1),
            SegmentMeta {
                id: 8,
                file_bytes: 40_032,
                record_bytes: 40_000,
                records: 9,
            },
        )],
        added_tables: vec![(
            KeyspaceId(1),
            TableMeta {
                value_refs: vec![ValueRef {
                    segment: 8,
                    bytes: 40_000,
                    records: 9,
                }],
                ..table(7, "n", "z")
            },
        )],
        ..VersionEdit::default()
    };
    writer.append(&separated_flush).expect("append");
    let collection = VersionEdit {
        removed_tables: vec![(KeyspaceId(1), Level(0), TableId(7))],
        removed_segments: vec![(KeyspaceId(1), 8)],
        ..VersionEdit::default()
    };
    writer.append(&collection).expect("append");
    let history = VersionEdit {
        history_floors: vec![(KeyspaceId(1), SeqNo(8))],
        time_marks: Some(TimeMarkEdit {
            keep_from: SeqNo(0),
            keep_to: SeqNo::MAX,
            added: vec![
                TimeMark {
                    seq: SeqNo(5),
                    unix_millis: 1_790_000_000_000,
                },
                TimeMark {
                    seq: SeqNo(9),
                    unix_millis: 1_790_000_001_000,
                },
            ],
        }),
        ..VersionEdit::default()
    };
    writer.append(&history).expect("append");
    let manifest = fs
        .read_file(&dir.join("MANIFEST-000001"))
        .expect("manifest");
    let mut flipped = manifest.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("manifest", manifest.clone()),
        ("manifest-torn", manifest[..manifest.len() - 5].to_vec()),
        ("manifest-flipped", flipped),
        ("manifest-header-only", manifest[..28].to_vec()),
        ("edit-create", create.encode()),
        ("edit-flush", flush.encode()),
        ("edit-compaction", compaction.encode()),
        ("edit-separated-flush", separated_flush.encode()),
        ("edit-value-log-collection", collection.encode()),
        ("edit-history", history.encode()),
        ("current", encode_current(1)),
        ("edit-unknown-tag", vec![99, 1, 0]),
    ];
    for (name, bytes) in seeds {
        std::fs::write(out.join(name), bytes).expect("write seed");
    }
}

/// Regenerates both seed corpora: `cargo test -p strata --test fuzz_corpus_replay
/// -- --ignored generate`.
#[test]
#[ignore]
fn generate_seed_corpus() {
    use std::sync::Arc;

    use strata::key::{internal_key, ValueKind};
    use strata::table::{BlockBuilder, BlockHandle, Compression, TableBuildOptions, TableBuilder};
    use strata_wal::{FaultFs, Fs, SeqNo};

    let keys = |n: u32, versions: u64| -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for i in 0..n {
            for v in 0..versions {
                let kind = if (i + v as u32) % 5 == 4 {
                    ValueKind::Delete
                } else {
                    ValueKind::Put
                };
                let value = match kind {
                    ValueKind::Delete => Vec::new(),
                    _ => format!("val{i}-{v}").into_bytes(),
                };
                let seq = SeqNo(100 + u64::from(i) * 10 + versions - v);
                out.push((
                    internal_key(format!("agent/{i:03}").as_bytes(), seq, kind),
                    value,
                ));
            }
        }
        out
    };
    let block = |entries: &[(Vec<u8>, Vec<u8>)], interval: usize| -> Vec<u8> {
        let mut b = BlockBuilder::new(interval);
        for (k, v) in entries {
            b.add(k, v);
        }
        b.finish().to_vec()
    };
    let table = |entries: &[(Vec<u8>, Vec<u8>)], opts: TableBuildOptions| -> Vec<u8> {
        let fs = FaultFs::new(1);
        let path = Path::new("/seed.sst");
        let file = fs.create(path).unwrap();
        let mut b = TableBuilder::new(Arc::clone(&file), opts).unwrap();
        for (k, v) in entries {
            b.add(k, v).unwrap();
        }
        b.finish().unwrap();
        fs.read_file(path).unwrap()
    };
    let garbage = |n: u32| -> Vec<u8> { (0..n).map(|i| (i * 7919 % 251) as u8).collect() };
    let flip = |mut v: Vec<u8>, at: usize| {
        let at = at.min(v.len() - 1);
        v[at] ^= 0x04;
        v
    };

    let out = corpus("block_decoder");
    std::fs::create_dir_all(&out).unwrap();
    let small = keys(6, 2);
    let data16 = block(&keys(20, 1), 16);
    let mut index = Vec::new();
    for (i, (k, _)) in small.iter().enumerate() {
        let mut h = Vec::new();
        BlockHandle {
            offset: i as u64 * 300,
            size: 295,
        }
        .encode_to(&mut h);
        index.push((k.clone(), h));
    }
    let long_keys: Vec<(Vec<u8>, Vec<u8>)> = (0..10u64)
        .map(|i| {
            (
                internal_key(
                    &[b'p'; 40]
                        .iter()
                        .copied()
                        .chain([b'0' + i as u8])
                        .collect::<Vec<_>>(),
                    SeqNo(i + 1),
                    ValueKind::Put,
                ),
                vec![i as u8; 3],
            )
        })
        .collect();
    let mut bad_restart = block(&small, 2);
    let n = bad_restart.len();
    bad_restart[n - 8] = 0x7f; // last restart offset points into the middle of an entry
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("empty-block", block(&[], 16)),
        ("data-interval-1", block(&small, 1)),
        ("data-interval-16", data16.clone()),
        ("index-block", block(&index, 1)),
        ("long-shared-prefixes", block(&long_keys, 4)),
        ("truncated", data16[..data16.len() - 9].to_vec()),
        ("bit-flip", flip(data16.clone(), 40)),
        ("bad-restart", bad_restart),
        ("garbage", garbage(120)),
    ];
    for (name, bytes) in seeds {
        std::fs::write(out.join(name), bytes).unwrap();
    }

    let out = corpus("table_reader");
    std::fs::create_dir_all(&out).unwrap();
    let tiny = TableBuildOptions {
        block_size: 96,
        restart_interval: 2,
        ..TableBuildOptions::default()
    };
    let multi = table(&keys(12, 2), tiny);
    let zstd = table(
        &keys(12, 3),
        TableBuildOptions {
            compression: Compression::Zstd,
            block_size: 512,
            ..tiny
        },
    );
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        (
            "one-block",
            table(&keys(5, 1), TableBuildOptions::default()),
        ),
        ("multi-block", multi.clone()),
        ("zstd-blocks", zstd.clone()),
        (
            "no-filter",
            table(
                &keys(6, 2),
                TableBuildOptions {
                    bloom_bits_per_key: 0,
                    ..tiny
                },
            ),
        ),
        ("no-entries", table(&[], TableBuildOptions::default())),
        ("truncated", multi[..multi.len() - 20].to_vec()),
        ("bit-flip-in-data", flip(multi.clone(), 30)),
        ("bit-flip-in-zstd", flip(zstd.clone(), 20)),
        ("footer-only", multi[multi.len() - 64..].to_vec()),
        ("garbage", garbage(300)),
    ];
    for (name, bytes) in seeds {
        assert!(bytes.len() < 4096, "{name} is too big for a seed");
        std::fs::write(out.join(name), bytes).unwrap();
    }
}

#[test]
fn engine_model_corpus_replays_without_a_difference() {
    let count = replay("engine_model", strata::fuzzing::engine_model);
    assert!(
        count >= 8,
        "engine_model seed corpus has only {count} inputs"
    );
}

#[test]
fn record_decoders_corpus_replays_without_panics() {
    let count = replay("record_decoders", strata::fuzzing::record_decoders);
    assert!(
        count >= 8,
        "record_decoders seed corpus has only {count} inputs"
    );
}

/// Writes the seed corpus of `record_decoders`: `cargo test -p strata --release --test
/// fuzz_corpus_replay -- --ignored generate_record_decoders_seeds`.
#[test]
#[ignore]
fn generate_record_decoders_seeds() {
    use strata::{CompactionStyle, Compression, Durability, KeyspaceOptions};
    use strata_vlog::ValuePointer;

    let dir = corpus("record_decoders");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let with = |which: u8, body: &[u8]| {
        let mut v = vec![which];
        v.extend_from_slice(body);
        v
    };
    let default = KeyspaceOptions::default().encode();
    let custom = KeyspaceOptions {
        durability: Durability::Sync,
        compression: Compression::Zstd,
        compaction: CompactionStyle::Tiered,
        value_threshold: None,
        history_seqs: Some(1000),
        ..KeyspaceOptions::default()
    }
    .encode();
    seeds.push(with(0, &default));
    seeds.push(with(0, &custom));
    seeds.push(with(0, &default[..default.len() / 2]));
    // WAL payloads: count, then per entry op, keyspace id, key, value (puts only);
    // every number below 128 is one varint byte.
    seeds.push(with(1, &[1, 1, 2, 3, b'k', b'e', b'y', 2, b'v', b'1']));
    seeds.push(with(
        1,
        &[
            3, 1, 0, 1, b'a', 1, b'x', 2, 5, 1, b'b', 3, 5, 2, b'a', b'g',
        ],
    ));
    seeds.push(with(1, &[0]));
    seeds.push(with(1, &[2, 1, 0, 1, b'a']));
    let pointer = ValuePointer {
        segment: 3,
        offset: 100,
        len: 50,
    }
    .encode();
    seeds.push(with(2, &pointer));
    seeds.push(with(2, &pointer[..19]));
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
    }
}
