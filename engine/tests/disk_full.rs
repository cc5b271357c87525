//! A full disk: flushes, compactions and value-log collections that run out of space
//! lose nothing, leave the database readable and writable (nothing is poisoned), and
//! resume on their own once space returns; a write whose WAL append runs out of space
//! is not acknowledged, and the database refuses writes until it is reopened (the log
//! may hold part of the record), then holds every acknowledged write and not the
//! refused one.
//!
//! The disk is "full" through `FaultFs`: every append, truncate and file creation
//! fails with `ENOSPC` (`io::ErrorKind::StorageFull`) until the faults are cleared.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strata::{CompactionStyle, Db, Durability, FaultFs, Fs, KeyspaceOptions, Options};
use strata_wal::{FaultKind, FaultOp, FaultRule};

mod common;

const DIR: &str = "/disk-full";

fn options() -> Options {
    Options {
        background_threads: 1,
        manifest_rollover_bytes: 8 << 10,
        ..Options::default()
    }
}

fn ks_options() -> KeyspaceOptions {
    KeyspaceOptions {
        durability: Durability::Sync,
        memtable_bytes: 16 << 10,
        target_table_bytes: 8 << 10,
        // No background merges: every merge is one the test asks for, so the garbage
        // the collection finds does not depend on when background merges ran (one
        // that ran late copied the garbage away first, now and then, under load).
        l0_compaction_trigger: 50,
        l0_slowdown_trigger: 60,
        l0_stop_trigger: 70,
        compaction: CompactionStyle::Leveled,
        value_threshold: Some(256),
        vlog_gc_garbage_ratio: 0.2,
        // Collection when the test calls for it, so the garbage waits for it.
        vlog_background_gc: false,
        ..KeyspaceOptions::default()
    }
}

fn value(key: u32, round: u32) -> Vec<u8> {
    let len = 40 + (key as usize * 53 + round as usize * 11) % 700;
    let stamp = format!("k{key}r{round};");
    stamp.as_bytes().iter().copied().cycle().take(len).collect()
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn write_round(ks: &strata::Keyspace, model: &mut Model, round: u32) {
    for i in 0..300u32 {
        if round > 0 && (i + round).is_multiple_of(3) {
            continue;
        }
        let key = format!("key{i:04}").into_bytes();
        if round > 0 && i % 17 == round % 17 {
            ks.delete(&key).expect("delete");
            model.remove(&key);
        } else {
            ks.put(&key, value(i, round)).expect("put");
            model.insert(key, value(i, round));
        }
    }
}

fn assert_reads(db: &Db, model: &Model, when: &str) {
    let ks = db.keyspace("memories").expect("keyspace");
    for i in 0..300u32 {
        let key = format!("key{i:04}").into_bytes();
        let got = ks.get(&key).unwrap_or_else(|e| panic!("{when}: get: {e}"));
        assert_eq!(
            got.as_deref(),
            model.get(&key).map(Vec::as_slice),
            "{when}: key{i:04}"
        );
    }
    let scanned: Model = ks
        .iter()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<strata::Result<_>>()
        .unwrap_or_else(|e| panic!("{when}: scan: {e}"));
    let extra: Vec<_> = scanned
        .keys()
        .filter(|k| !model.contains_key(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        extra.is_empty(),
        "{when}: the scan shows keys never acknowledged: {extra:?}"
    );
    assert!(scanned == *model, "{when}: the scan differs from the model");
}

fn fill_disk(fs: &FaultFs) {
    for op in [FaultOp::Write, FaultOp::Create] {
        fs.inject(FaultRule::from_nth_on(op, 1, FaultKind::Enospc));
    }
}

fn is_full_disk(e: &strata::Error) -> bool {
    e.io_kind() == Some(std::io::ErrorKind::StorageFull)
}

#[test]
fn flush_compaction_and_collection_on_a_full_disk_lose_nothing_and_resume() {
    common::count_background_panics();
    let fault = FaultFs::new(21);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let (db, mut model) = build_with_pending_work(&fs);
    let ks = db.keyspace("memories").expect("keyspace");
    let before = db.stats();
    let flushes_before = before.keyspace("memories").expect("stats").flushes;
    let gc_runs_before = before.keyspace("memories").expect("stats").gc_runs;
    assert!(
        before
            .keyspace("memories")
            .expect("stats")
            .value_log
            .iter()
            .any(|s| s.garbage_bytes > s.bytes / 5),
        "the test needs a segment worth collecting"
    );

    fill_disk(&fault);
    let flush = ks.flush().expect_err("a flush on a full disk");
    assert!(is_full_disk(&flush), "flush: {flush}");
    let compact = ks.compact().expect_err("a compaction on a full disk");
    assert!(is_full_disk(&compact), "compact: {compact}");
    let gc = db
        .gc_value_log(&ks)
        .expect_err("a collection on a full disk");
    assert!(is_full_disk(&gc), "gc: {gc}");
    // Nothing poisoned, nothing lost: reads are served as before.
    assert_eq!(
        db.stats().poisoned,
        None,
        "a full disk during background work"
    );
    assert_reads(&db, &model, "disk full");
    // Let the background threads fail at it too (they retry every so often).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(db.stats().poisoned, None);
    // Failed attempts leave no partial files behind to eat the space that returns.
    let names = fs.list(std::path::Path::new(DIR)).expect("list");
    let manifests = names.iter().filter(|n| n.starts_with("MANIFEST-")).count();
    assert!(
        manifests <= 1,
        "manifests left by failed rollovers: {names:?}"
    );
    assert!(!names.iter().any(|n| n == "CURRENT.tmp"), "{names:?}");
    assert!(
        db.stats().background_errors > 0,
        "the background threads hit the full disk"
    );

    // Space returns: the sealed memtable is flushed and level 0 compacted without a
    // call from the application.
    fault.clear_faults();
    let mut resumed = false;
    for _ in 0..6000 {
        let stats = db.stats();
        let k = stats.keyspace("memories").expect("stats");
        if k.flushes > flushes_before && k.sealed_memtables == 0 {
            resumed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(resumed, "the flush did not resume once space returned");
    db.wait_for_background_work()
        .expect("background work after space returned");
    let report = db
        .gc_value_log(&ks)
        .expect("collection after space returned");
    assert!(
        report.segments_removed > 0,
        "collection reclaimed nothing: {report:?}"
    );
    let k = db.stats().keyspace("memories").expect("stats").clone();
    assert!(k.gc_runs > gc_runs_before);
    assert_reads(&db, &model, "space returned");
    // And it takes writes.
    write_round(&ks, &mut model, 5);
    ks.compact().expect("compact");
    assert_reads(&db, &model, "after more writes");

    // Every acknowledged (Sync) write survives a power loss now.
    drop(ks);
    fault.crash();
    drop(db);
    fault.restart();
    let db = Db::open_with_fs(DIR, options(), Arc::clone(&fs)).expect("reopen");
    assert_reads(&db, &model, "after power loss");
    assert_eq!(common::background_panics(), 0);
}

#[test]
fn a_write_refused_on_a_full_disk_is_not_acknowledged_and_reopening_recovers() {
    let fault = FaultFs::new(22);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let db = Db::open_with_fs(DIR, options(), Arc::clone(&fs)).expect("open");
    let ks = db
        .create_keyspace("memories", ks_options())
        .expect("keyspace");
    let mut model = Model::new();
    write_round(&ks, &mut model, 0);
    ks.flush().expect("flush");
    write_round(&ks, &mut model, 1);

    fill_disk(&fault);
    let refused = ks
        .put("key9999", "never acknowledged")
        .expect_err("a WAL append on a full disk");
    assert!(is_full_disk(&refused), "{refused}");
    // The log may hold part of the record: nothing more is written until reopen,
    // even once space returns. Reads go on.
    fault.clear_faults();
    let again = ks
        .put("key9998", "x")
        .expect_err("writes refused until reopen");
    assert!(matches!(again, strata::Error::Poisoned { .. }), "{again}");
    // The refused write was applied to the memtable before its WAL append failed: it
    // stays readable until the reopen (docs/durability.md); nothing else changed.
    let mut with_refused = model.clone();
    with_refused.insert(b"key9999".to_vec(), b"never acknowledged".to_vec());
    assert_reads(&db, &with_refused, "refusing writes");
    assert!(db.stats().poisoned.is_some());

    drop(ks);
    drop(db);
    let db = Db::open_with_fs(DIR, options(), Arc::clone(&fs)).expect("reopen");
    assert_reads(&db, &model, "reopened");
    let ks = db.keyspace("memories").expect("keyspace");
    assert_eq!(ks.get("key9999").expect("get"), None);
    write_round(&ks, &mut model, 2);
    assert_reads(&db, &model, "writes after reopen");
}

/// Builds a database with work pending: garbage in the value log (overwrites
/// compacted away), tables in level 0 below the trigger, unflushed writes in the
/// memtable. Returns it and the model.
fn build_with_pending_work(fs: &Arc<dyn Fs>) -> (Db, Model) {
    let db = Db::open_with_fs(DIR, options(), Arc::clone(fs)).expect("open");
    let ks = db
        .create_keyspace("memories", ks_options())
        .expect("keyspace");
    let mut model = Model::new();
    for round in 0..3 {
        write_round(&ks, &mut model, round);
    }
    ks.compact().expect("compact");
    write_round(&ks, &mut model, 3);
    ks.flush().expect("flush");
    write_round(&ks, &mut model, 4);
    (db, model)
}

/// A put into the test's keyspace (to see whether writes are refused).
fn ks_put(db: &Db) -> strata::Result<()> {
    db.keyspace("memories")?.put("probe", "x")
}

/// The work the sweep fills the disk in: a flush, a compaction, a collection (a
/// manifest edit each) and a keyspace creation. Errors are returned, not unwrapped.
fn background_phase(db: &Db) -> Vec<strata::Error> {
    let ks = db.keyspace("memories").expect("keyspace");
    let mut errors = Vec::new();
    // Then an edit with no files of its own (creating a keyspace): after a manifest
    // write failed, it is what tries the rollover to a new manifest on the full disk.
    for result in [
        ks.flush(),
        ks.compact(),
        db.gc_value_log(&ks).map(|_| ()),
        db.keyspace_or_create("scratch", KeyspaceOptions::default())
            .map(|_| ()),
    ] {
        if let Err(e) = result {
            errors.push(e);
        }
    }
    errors
}

/// The disk fills at every write (append or truncate) of the background phase in
/// turn, and stays full while the phase goes on; the short write of the failing
/// append stays in its file. Then either space returns and the same database goes on,
/// or the power is lost while the disk is full and the database is reopened once space
/// returned. No point poisons the database — a manifest edit whose write ran out of
/// space is a torn record at most, and the next edit starts a new manifest — nothing
/// is lost, the work completes and the database survives a power loss after it.
#[test]
fn the_disk_filling_at_every_write_of_flush_compaction_and_collection_loses_nothing() {
    common::count_background_panics();
    // Count the phase's writes on a clean run.
    let fault = FaultFs::new(30);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let (db, _) = build_with_pending_work(&fs);
    let before = fault.op_count(FaultOp::Write);
    assert!(background_phase(&db).is_empty());
    let writes = fault.op_count(FaultOp::Write) - before;
    drop(db);
    assert!(writes > 10, "the phase writes: {writes}");
    let stride = std::env::var("STRATA_DISK_FULL_STRIDE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u64)
        .max(1);
    let mut points = 0;
    let mut failed_operations = 0;
    let mut poisoned_points = 0;
    for nth in (1..=writes).step_by(stride as usize) {
        let fault = FaultFs::new(1000 + nth);
        let fs: Arc<dyn Fs> = Arc::new(fault.clone());
        let (db, mut model) = build_with_pending_work(&fs);
        fault.inject(FaultRule::from_nth_on(
            FaultOp::Write,
            nth,
            FaultKind::Enospc,
        ));
        let errors = background_phase(&db);
        let poisoned = db.stats().poisoned.is_some();
        for e in &errors {
            assert!(
                is_full_disk(e) || (poisoned && matches!(e, strata::Error::Poisoned { .. })),
                "write {nth}: {e}"
            );
        }
        failed_operations += errors.len();
        // Out of space while writing tables, segments or a manifest edit poisons
        // nothing (asserted below over all points); should one poison, the database
        // must still refuse writes and a reopen must settle it.
        if poisoned {
            poisoned_points += 1;
            assert!(
                matches!(ks_put(&db), Err(strata::Error::Poisoned { .. })),
                "write {nth}: a poisoned database refuses writes"
            );
        }
        assert_reads(&db, &model, &format!("write {nth}, disk full"));
        // Rollovers tried on the full disk left no partial manifest behind.
        let names = fs.list(std::path::Path::new(DIR)).expect("list");
        assert!(
            names.iter().filter(|n| n.starts_with("MANIFEST-")).count() <= 1
                && !names.iter().any(|n| n == "CURRENT.tmp"),
            "write {nth}: {names:?}"
        );
        let db = if nth.is_multiple_of(2) && !poisoned {
            fault.clear_faults();
            db
        } else {
            if nth.is_multiple_of(2) {
                drop(db);
            } else {
                fault.crash();
                drop(db);
                fault.restart();
            }
            fault.clear_faults();
            Db::open_with_fs(DIR, options(), Arc::clone(&fs))
                .unwrap_or_else(|e| panic!("write {nth}: reopen after the disk was full: {e}"))
        };
        assert!(
            background_phase(&db).is_empty(),
            "write {nth}: the work fails after space returned"
        );
        let ks = db.keyspace("memories").expect("keyspace");
        write_round(&ks, &mut model, 5);
        assert_reads(&db, &model, &format!("write {nth}, space returned"));
        drop(ks);
        fault.crash();
        drop(db);
        fault.restart();
        let db = Db::open_with_fs(DIR, options(), Arc::clone(&fs))
            .unwrap_or_else(|e| panic!("write {nth}: reopen after the final power loss: {e}"));
        assert_reads(&db, &model, &format!("write {nth}, after power loss"));
        points += 1;
    }
    eprintln!(
        "disk full: {points} points over {writes} writes of the phase, {failed_operations} operations failed for want of space, {poisoned_points} of the points poisoned"
    );
    assert!(
        failed_operations >= points,
        "every point made something fail"
    );
    assert_eq!(
        poisoned_points, 0,
        "a full disk poisons nothing, manifest appends included"
    );
    assert_eq!(common::background_panics(), 0);
}

/// Replacing `CURRENT` during a manifest rollover fails: which manifest a crash would
/// keep is unknown, so the database is poisoned (not retried), nothing more is
/// appended to the old manifest, and after a power loss the reopened database holds
/// every acknowledged write.
#[test]
fn a_failed_manifest_install_poisons_and_loses_nothing() {
    let fault = FaultFs::new(40);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let small_manifest = Options {
        manifest_rollover_bytes: 4096,
        ..options()
    };
    let db = Db::open_with_fs(DIR, small_manifest.clone(), Arc::clone(&fs)).expect("open");
    let ks = db
        .create_keyspace("memories", ks_options())
        .expect("keyspace");
    let mut model = Model::new();
    write_round(&ks, &mut model, 0);
    // The next rename (of CURRENT.tmp, when the manifest next rolls over) fails, for
    // want of space even: still not retried, since the rename may have happened.
    fault.inject(FaultRule::once(FaultOp::Rename, 1, FaultKind::Enospc));
    // Flush after flush (here or on a background thread) until the failure lands.
    let mut failed = false;
    for i in 0..1000u32 {
        let key = format!("flush{i:04}").into_bytes();
        if ks.put(&key, value(i, 9)).is_err() {
            failed = true;
            break;
        }
        model.insert(key, value(i, 9));
        if ks.flush().is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "a flush's edit rolled the manifest over");
    assert!(
        db.stats().poisoned.is_some(),
        "an unknown installed manifest poisons"
    );
    assert!(matches!(
        ks.put("after", "x"),
        Err(strata::Error::Poisoned { .. })
    ));
    assert_reads(&db, &model, "poisoned");
    drop(ks);
    fault.crash();
    drop(db);
    fault.restart();
    let db = Db::open_with_fs(DIR, small_manifest, Arc::clone(&fs)).expect("reopen");
    assert_reads(&db, &model, "after power loss");
}
