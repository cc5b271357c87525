//! Key-value separation end to end: large values go to value-log segments at flush,
//! reads (point, both iterator directions, snapshots) resolve them and check them,
//! overwrites turn into garbage counted per segment, garbage collection copies live
//! values forward and deletes segments only when no reader holds them, damage is
//! reported with the segment file and offset, and reopen keeps all of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

mod common;

use common::{vlog_file_bytes, vlog_files};
use strata::{CompactionFilter, Db, Error, FilterDecision, KeyspaceOptions, Options, WriteOptions};

fn separated() -> KeyspaceOptions {
    KeyspaceOptions {
        memtable_bytes: 256 << 10,
        base_level_bytes: 256 << 10,
        target_table_bytes: 64 << 10,
        value_threshold: Some(1024),
        ..KeyspaceOptions::default()
    }
}

/// Separation with collection off in effect: only wholly dead segments go, so a
/// test sees garbage stay.
fn no_gc() -> KeyspaceOptions {
    KeyspaceOptions {
        vlog_gc_garbage_ratio: 1.0,
        max_space_amplification: 1000.0,
        ..separated()
    }
}

/// A value of `len` bytes that names its key and version.
fn value(key: u32, version: u32, len: usize) -> Vec<u8> {
    let stamp = format!("k{key}v{version};");
    stamp.as_bytes().iter().copied().cycle().take(len).collect()
}

fn check_all(ks: &strata::Keyspace, model: &BTreeMap<u32, Vec<u8>>) {
    for (k, v) in model {
        let got = ks.get(format!("key{k:05}")).unwrap();
        assert_eq!(got.as_deref(), Some(v.as_slice()), "get key{k:05}");
    }
    let forward: Vec<(Vec<u8>, Vec<u8>)> = ks
        .iter()
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = model
        .iter()
        .map(|(k, v)| (format!("key{k:05}").into_bytes(), v.clone()))
        .collect();
    assert_eq!(forward.len(), expected.len());
    assert!(forward == expected, "forward scan differs from the model");
    let mut backward: Vec<(Vec<u8>, Vec<u8>)> = ks
        .iter()
        .rev()
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    backward.reverse();
    assert!(backward == expected, "backward scan differs from the model");
}

#[test]
fn large_values_go_to_the_value_log_and_read_back_through_flush_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let ks = db.create_keyspace("memories", separated()).unwrap();
        for i in 0..600u32 {
            // Every third value stays inline.
            let len = if i % 3 == 0 {
                200
            } else {
                1024 + (i as usize % 7) * 900
            };
            let v = value(i, 0, len);
            ks.put(format!("key{i:05}"), &v).unwrap();
            model.insert(i, v);
        }
        ks.flush().unwrap();
        let stats = db.stats();
        let k = stats.keyspace("memories").unwrap();
        assert!(
            !k.value_log.is_empty(),
            "a flush of large values writes a segment"
        );
        let live: u64 = k.value_log.iter().map(|s| s.live_bytes).sum();
        let separated_bytes: u64 = model
            .values()
            .filter(|v| v.len() >= 1024)
            .map(|v| v.len() as u64)
            .sum();
        assert!(
            live >= separated_bytes,
            "live {live} < separated {separated_bytes}"
        );
        assert_eq!(k.value_log.iter().map(|s| s.garbage_bytes).sum::<u64>(), 0);
        // The tables hold pointers, not the values.
        let table_bytes: u64 = k.levels.iter().map(|l| l.bytes).sum();
        assert!(
            table_bytes * 4 < separated_bytes,
            "tables {table_bytes} B hold the values"
        );
        check_all(&ks, &model);
        ks.compact().unwrap();
        check_all(&ks, &model);
        db.close().unwrap();
    }
    assert!(!vlog_files(dir.path()).is_empty());
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.keyspace("memories").unwrap();
    check_all(&ks, &model);
}

fn segment_totals(db: &Db) -> (u64, u64, f64) {
    let stats = db.stats();
    let k = stats.keyspace("memories").unwrap();
    let garbage: u64 = k.value_log.iter().map(|s| s.garbage_bytes).sum();
    let live: u64 = k.value_log.iter().map(|s| s.live_bytes).sum();
    (garbage, live, k.vlog_space_amplification)
}

#[test]
fn overwritten_values_are_counted_as_garbage_of_their_segment_and_the_count_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = no_gc();
    let record = |i: u32| (4096 + 25 + format!("key{i:05}").len()) as u64;
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let ks = db.create_keyspace("memories", options.clone()).unwrap();
        for i in 0..200u32 {
            ks.put(format!("key{i:05}"), value(i, 0, 4096)).unwrap();
        }
        ks.flush().unwrap();
        assert_eq!(segment_totals(&db).0, 0);
        for i in 0..50u32 {
            ks.put(format!("key{i:05}"), value(i, 1, 4096)).unwrap();
        }
        ks.delete("key00199").unwrap();
        ks.flush().unwrap();
        // Until compaction drops the old versions, the tables still point at them.
        assert_eq!(segment_totals(&db).0, 0);
        ks.compact().unwrap();
        db.wait_for_background_work().unwrap();
        let (garbage, live, amp) = segment_totals(&db);
        let expected_garbage: u64 = (0..50u32).chain([199]).map(record).sum();
        assert_eq!(garbage, expected_garbage);
        assert_eq!(live, (0..199u32).map(record).sum::<u64>());
        assert!(amp > 1.2 && amp < 1.3, "{amp}");
        let stats = db.stats();
        assert!(
            stats.summary_line().contains("vlog_garbage_ratio=0.2"),
            "{}",
            stats.summary_line()
        );
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let (garbage, _, _) = segment_totals(&db);
    assert_eq!(garbage, (0..50u32).chain([199]).map(record).sum::<u64>());
}

#[test]
fn gc_copies_live_values_forward_and_reclaims_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let options = KeyspaceOptions {
        vlog_gc_garbage_ratio: 0.5,
        max_space_amplification: 1.5,
        ..separated()
    };
    let mut model = BTreeMap::new();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let ks = db.create_keyspace("memories", options).unwrap();
        // Each round overwrites three keys in five: every segment keeps some live
        // values, so only copying them forward can free it.
        for round in 0..8u32 {
            for i in (0..300u32).filter(|i| round == 0 || (i * 7 + round) % 5 < 3) {
                let v = value(i, round, 4096);
                ks.put(format!("key{i:05}"), &v).unwrap();
                model.insert(i, v);
            }
            ks.flush().unwrap();
        }
        let report = db.gc_value_log(&ks).unwrap();
        let stats = db.stats();
        let k = stats.keyspace("memories").unwrap();
        assert!(
            k.gc_relocated_bytes > 0,
            "no live value was copied forward: {report:?}"
        );
        assert!(
            k.vlog_space_amplification <= 1.5,
            "{}",
            k.vlog_space_amplification
        );
        for s in &k.value_log {
            assert!(
                (s.garbage_bytes as f64) < 0.5 * s.bytes as f64,
                "segment {} left at {} of {} B garbage",
                s.id,
                s.garbage_bytes,
                s.bytes
            );
        }
        let live_values: u64 = model.values().map(|v| v.len() as u64).sum();
        let on_disk = vlog_file_bytes(dir.path());
        assert!(
            (on_disk as f64) <= 1.5 * live_values as f64,
            "value log {on_disk} B for {live_values} B of live values"
        );
        check_all(&ks, &model);
        drop(ks);
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.keyspace("memories").unwrap();
    check_all(&ks, &model);
}

#[test]
fn a_segment_is_deleted_only_after_the_last_reader_of_it_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.create_keyspace("memories", separated()).unwrap();
    for i in 0..50u32 {
        ks.put(format!("key{i:05}"), value(i, 0, 2048)).unwrap();
    }
    ks.flush().unwrap();
    let old_files = vlog_files(dir.path());
    // A snapshot and an iterator taken before the overwrite.
    let snapshot = db.snapshot();
    let mut iter = ks.iter();
    let first = iter.next().unwrap().unwrap();
    assert_eq!(first.1.as_ref(), value(0, 0, 2048).as_slice());
    for i in 0..50u32 {
        ks.put(format!("key{i:05}"), value(i, 1, 2048)).unwrap();
    }
    ks.flush().unwrap();
    ks.compact().unwrap();
    db.gc_value_log(&ks).unwrap();
    // The snapshot still reads the old values (compaction kept them for it).
    for i in 0..50u32 {
        let got = snapshot.get(&ks, format!("key{i:05}")).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value(i, 0, 2048).as_slice()),
            "snapshot key{i}"
        );
    }
    // The iterator finishes on the old values, from the files it holds.
    let rest: Vec<_> = iter.map(|kv| kv.unwrap()).collect();
    assert_eq!(rest.len(), 49);
    for (n, (_, v)) in rest.iter().enumerate() {
        assert_eq!(v.as_ref(), value(n as u32 + 1, 0, 2048).as_slice());
    }
    drop(snapshot);
    // With no reader left, a compaction drops the old versions and GC their segment.
    ks.compact().unwrap();
    db.gc_value_log(&ks).unwrap();
    let now = vlog_files(dir.path());
    assert!(
        old_files.iter().all(|f| !now.contains(f)),
        "old segments {old_files:?} still there: {now:?}"
    );
    for i in 0..50u32 {
        let got = ks.get(format!("key{i:05}")).unwrap();
        assert_eq!(got.as_deref(), Some(value(i, 1, 2048).as_slice()));
    }
}

#[test]
fn deletes_stay_deleted_after_gc_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let ks = db.create_keyspace("memories", separated()).unwrap();
        for i in 0..300u32 {
            let v = value(i, 0, 3000);
            ks.put(format!("key{i:05}"), &v).unwrap();
            model.insert(i, v);
        }
        ks.flush().unwrap();
        for i in (0..300u32).filter(|i| i % 2 == 0) {
            ks.delete(format!("key{i:05}")).unwrap();
            model.remove(&i);
        }
        ks.flush().unwrap();
        ks.compact().unwrap();
        db.gc_value_log(&ks).unwrap();
        let (garbage, _, _) = segment_totals(&db);
        assert_eq!(garbage, 0, "half-dead segment left uncollected");
        check_all(&ks, &model);
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.keyspace("memories").unwrap();
    check_all(&ks, &model);
    for i in (0..300u32).filter(|i| i % 2 == 0) {
        assert_eq!(ks.get(format!("key{i:05}")).unwrap(), None);
    }
}

/// A closed database in `dir` whose keyspace "memories" holds twenty 5000-byte values
/// in one segment.
fn twenty_values_in_one_segment(dir: &Path) {
    let db = Db::open(dir, Options::default()).unwrap();
    let ks = db.create_keyspace("memories", separated()).unwrap();
    for i in 0..20u32 {
        ks.put(format!("key{i:05}"), value(i, 0, 5000)).unwrap();
    }
    ks.flush().unwrap();
    db.close().unwrap();
}

#[test]
fn a_damaged_value_is_corruption_naming_the_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    twenty_values_in_one_segment(dir.path());
    let files = vlog_files(dir.path());
    assert_eq!(files.len(), 1);
    let path = dir.path().join(&files[0]);
    let mut bytes = std::fs::read(&path).unwrap();
    // Inside the value of the tenth record (records are about 5 KB).
    let at = 32 + 9 * 5030 + 2500;
    bytes[at] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.keyspace("memories").unwrap();
    let mut damaged = 0;
    for i in 0..20u32 {
        match ks.get(format!("key{i:05}")) {
            Ok(v) => assert_eq!(v.as_deref(), Some(value(i, 0, 5000).as_slice())),
            Err(Error::Corruption {
                file: p, offset, ..
            }) => {
                damaged += 1;
                assert!(p.ends_with(&files[0]), "{}", p.display());
                assert!(
                    offset as usize <= at && at < offset as usize + 5100,
                    "offset {offset}"
                );
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(damaged, 1);
    // An iterator meets the same damage and says so.
    assert!(ks
        .iter()
        .any(|kv| matches!(kv, Err(Error::Corruption { .. }))));
}

#[test]
fn a_truncated_or_missing_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    twenty_values_in_one_segment(dir.path());
    let name = vlog_files(dir.path()).remove(0);
    let path = dir.path().join(&name);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    match Db::open(dir.path(), Options::default()) {
        Err(Error::Corruption { file: p, .. }) => assert!(p.ends_with(&name)),
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
    std::fs::remove_file(&path).unwrap();
    match Db::open(dir.path(), Options::default()) {
        Err(Error::Corruption { file: p, .. }) => assert!(p.ends_with(&name)),
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn an_orphan_segment_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        db.create_keyspace("memories", separated()).unwrap();
        db.close().unwrap();
    }
    // What a flush that crashed before its manifest edit leaves behind.
    std::fs::write(dir.path().join("000999.vlog"), b"STRATAVL partial").unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert!(vlog_files(dir.path()).is_empty());
    drop(db);
}

#[test]
fn without_a_threshold_nothing_is_separated() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db
        .create_keyspace(
            "inline",
            KeyspaceOptions {
                value_threshold: None,
                ..separated()
            },
        )
        .unwrap();
    for i in 0..50u32 {
        ks.put(format!("key{i:05}"), value(i, 0, 50_000)).unwrap();
    }
    ks.flush().unwrap();
    assert!(vlog_files(dir.path()).is_empty());
    assert_eq!(
        ks.get("key00007").unwrap().as_deref(),
        Some(value(7, 0, 50_000).as_slice())
    );
}

/// Drops values containing "drop", turns "shrink" values into a short one.
#[derive(Debug)]
struct JudgeByValue;

impl CompactionFilter for JudgeByValue {
    fn name(&self) -> &str {
        "judge-by-value"
    }

    fn filter(&self, _key: &[u8], value: &[u8]) -> FilterDecision {
        let text = String::from_utf8_lossy(value);
        if text.contains("drop") {
            FilterDecision::Drop
        } else if text.contains("shrink") {
            FilterDecision::ChangeValue(b"small".to_vec())
        } else {
            FilterDecision::Keep
        }
    }
}

#[test]
fn a_compaction_filter_judges_separated_values_by_their_contents() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.create_keyspace("memories", no_gc()).unwrap();
    ks.set_compaction_filter(Some(Arc::new(JudgeByValue)));
    let big = |word: &str| word.repeat(2000).into_bytes();
    ks.put("a", big("keep")).unwrap();
    ks.put("b", big("drop")).unwrap();
    ks.put("c", big("shrink")).unwrap();
    ks.flush().unwrap();
    ks.compact().unwrap();
    assert_eq!(
        ks.get("a").unwrap().as_deref(),
        Some(big("keep").as_slice())
    );
    assert_eq!(ks.get("b").unwrap(), None);
    assert_eq!(ks.get("c").unwrap().as_deref(), Some(&b"small"[..]));
    // The dropped and shrunk values are garbage now.
    let stats = db.stats();
    let k = stats.keyspace("memories").unwrap();
    let garbage: u64 = k.value_log.iter().map(|s| s.garbage_bytes).sum();
    assert!(garbage >= 2 * 8000, "garbage {garbage}");
}

#[test]
fn background_gc_holds_the_space_bound_while_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db
        .create_keyspace(
            "memories",
            KeyspaceOptions {
                vlog_gc_garbage_ratio: 0.5,
                max_space_amplification: 1.5,
                vlog_gc_bytes_per_sec: None,
                ..separated()
            },
        )
        .unwrap();
    let mut model = BTreeMap::new();
    for round in 0..20u32 {
        for i in (0..100u32).filter(|i| round == 0 || (i + round) % 3 != 0) {
            let v = value(i, round, 4000);
            ks.put_opt(format!("key{i:05}"), &v, &WriteOptions::default())
                .unwrap();
            model.insert(i, v);
        }
        ks.flush().unwrap();
    }
    db.wait_for_background_work().unwrap();
    let stats = db.stats();
    let k = stats.keyspace("memories").unwrap();
    assert!(k.gc_runs > 0, "background GC never ran");
    assert!(k.gc_relocated_bytes > 0 || k.value_log.len() < 20);
    // Twenty rounds were written; far fewer than twenty rounds' bytes remain.
    let live_values: u64 = model.values().map(|v| v.len() as u64).sum();
    let on_disk = vlog_file_bytes(dir.path());
    assert!(
        on_disk < 8 * live_values,
        "value log {on_disk} B for {live_values} B of live values"
    );
    check_all(&ks, &model);
}

/// Flips one bit at every 7th offset of a small segment (every offset of its header),
/// reopening each time: every read returns the right value or `Error::Corruption`
/// naming the segment file; none returns a wrong value and none panics.
#[test]
fn bit_flips_across_a_segment_are_reported_never_misread() {
    use strata::{FaultFs, Fs};
    let fault = FaultFs::new(5);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let dir = Path::new("/sweep");
    let mut model = BTreeMap::new();
    {
        let db = Db::open_with_fs(dir, Options::default(), Arc::clone(&fs)).unwrap();
        let ks = db.create_keyspace("memories", no_gc()).unwrap();
        for i in 0..8u32 {
            let v = value(i, 0, 1100 + 40 * i as usize);
            ks.put(format!("key{i:05}"), &v).unwrap();
            model.insert(i, v);
        }
        ks.flush().unwrap();
        db.close().unwrap();
    }
    let name = fs
        .list(dir)
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".vlog"))
        .expect("a segment");
    let path = dir.join(&name);
    let len = fault.file_len(&path).unwrap();
    let (mut detected, mut harmless) = (0, 0);
    let offsets = (0..len).filter(|o| *o < 32 || o % 7 == 0);
    for offset in offsets {
        let bit = (offset % 8) as u8;
        fault.flip_bit(&path, offset, bit).unwrap();
        let names_segment =
            |e: &Error| matches!(e, Error::Corruption { file, .. } if file.ends_with(&name));
        match Db::open_with_fs(dir, Options::default(), Arc::clone(&fs)) {
            Err(e) => {
                assert!(names_segment(&e), "open after a flip at {offset}: {e}");
                detected += 1;
            }
            Ok(db) => {
                let ks = db.keyspace("memories").unwrap();
                let mut any = false;
                for (k, v) in &model {
                    match ks.get(format!("key{k:05}")) {
                        Ok(got) => assert_eq!(
                            got.as_deref(),
                            Some(v.as_slice()),
                            "wrong value after a flip at {offset}"
                        ),
                        Err(e) => {
                            assert!(names_segment(&e), "flip at {offset}: {e}");
                            any = true;
                        }
                    }
                }
                for kv in ks.iter() {
                    match kv {
                        Ok((k, v)) => {
                            let i: u32 = String::from_utf8_lossy(&k[3..]).parse().unwrap();
                            assert_eq!(v.as_ref(), model[&i].as_slice(), "scan, flip at {offset}");
                        }
                        Err(e) => assert!(names_segment(&e), "scan, flip at {offset}: {e}"),
                    }
                }
                if any {
                    detected += 1;
                } else {
                    harmless += 1;
                }
                drop(ks);
                db.close().unwrap();
            }
        }
        fault.flip_bit(&path, offset, bit).unwrap();
    }
    // Every byte of a segment is header or checked record: no flip goes unseen.
    assert_eq!(
        harmless, 0,
        "{harmless} flips went unnoticed ({detected} detected)"
    );
}
