//! Checkpoints, backups and the change stream: checkpoints taken under load open to
//! exactly the logged writes up to their sequence number; a checkpoint a power loss
//! interrupts never opens; incremental backups restore; a follower fed a stream with
//! duplicated and reordered deliveries converges, and a gap is reported.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata::{
    Applied, ChangeBatch, ChangeOp, Db, Error, FaultFs, Fs, KeyspaceOptions, Options, Replica,
    SeqNo, WriteBatch,
};
use strata_wal::{CrashMode, FaultKind, FaultOp, FaultRule};

/// keyspace -> key -> value.
type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

fn small_options() -> Options {
    Options {
        wal_segment_bytes: 64 << 10,
        max_wal_bytes: 1 << 20,
        // Every batch stays in the WAL for the model the stream builds.
        wal_retention_bytes: 1 << 40,
        ..Options::default()
    }
}

fn ks_options() -> KeyspaceOptions {
    KeyspaceOptions {
        memtable_bytes: 64 << 10,
        target_table_bytes: 32 << 10,
        base_level_bytes: 128 << 10,
        value_threshold: Some(400),
        ..KeyspaceOptions::default()
    }
}

/// Applies one change batch to the model.
fn apply(model: &mut Model, batch: &ChangeBatch) {
    for c in &batch.changes {
        let ks = model.entry(c.keyspace.clone()).or_default();
        match c.op {
            ChangeOp::Put => {
                ks.insert(c.key.to_vec(), c.value.to_vec());
            }
            ChangeOp::Delete => {
                ks.remove(&c.key[..]);
            }
            ChangeOp::DeletePrefix => ks.retain(|k, _| !k.starts_with(&c.key)),
        }
    }
}

/// The model of every logged write up to `upto`, from `db`'s change stream.
fn model_from_stream(db: &Db, upto: SeqNo) -> Model {
    let mut model = Model::new();
    let mut since = SeqNo(0);
    for batch in db.changes_since(SeqNo(0)).expect("stream") {
        let batch = batch.expect("batch");
        assert_eq!(batch.since, since, "the stream is contiguous");
        since = batch.last;
        if batch.last > upto {
            break;
        }
        apply(&mut model, &batch);
    }
    model.retain(|_, ks| !ks.is_empty());
    model
}

/// Everything `db` holds, keyspace by keyspace (bookkeeping keyspaces left out).
fn contents(db: &Db) -> Model {
    let mut out = Model::new();
    for name in db.list_keyspaces() {
        if name.starts_with("__strata") {
            continue;
        }
        let ks = db.keyspace(&name).expect("keyspace");
        let map: BTreeMap<Vec<u8>, Vec<u8>> = ks
            .iter()
            .map(|kv| {
                let (k, v) = kv.expect("scan");
                (k.to_vec(), v.to_vec())
            })
            .collect();
        let reverse = ks.iter().rev().count();
        assert_eq!(reverse, map.len(), "reverse scan of {name}");
        if !map.is_empty() {
            out.insert(name, map);
        }
    }
    out
}

fn value(seed: u64) -> Vec<u8> {
    let len = (common::mix(seed) % 900) as usize + 1;
    format!("v{seed};").bytes().cycle().take(len).collect()
}

/// One writer: puts, deletes and two-keyspace batches until `stop`.
fn writer(db: Db, id: u64, stop: Arc<AtomicBool>) {
    let state = db.keyspace("state").expect("state");
    let events = db.keyspace("events").expect("events");
    let mut rng = id;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) || n < 200 {
        rng = common::mix(rng);
        let key = format!("w{id}/k{:03}", rng % 300).into_bytes();
        match rng % 10 {
            0 => state.delete(&key).expect("delete"),
            1..=3 => {
                let mut batch = WriteBatch::new();
                batch.put(&state, &key, value(rng));
                batch.put(&events, format!("w{id}/e{n:06}"), value(rng + 1));
                db.write(batch).expect("batch");
            }
            _ => state.put(&key, value(rng)).expect("put"),
        }
        n += 1;
        if n > 20_000 {
            break;
        }
    }
}

#[test]
fn checkpoints_taken_under_load_open_to_exactly_the_logged_writes_up_to_their_seqno() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(dir.path().join("db"), small_options()).expect("open");
    db.create_keyspace("state", ks_options()).expect("state");
    db.create_keyspace(
        "events",
        KeyspaceOptions {
            durability: strata::Durability::Sync,
            ..ks_options()
        },
    )
    .expect("events");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=2u64)
        .map(|id| {
            let (db, stop) = (db.clone(), Arc::clone(&stop));
            std::thread::spawn(move || writer(db, id, stop))
        })
        .collect();
    let mut checkpoints = Vec::new();
    for i in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(60));
        let path = dir.path().join(format!("ckpt{i}"));
        let info = db.checkpoint(&path).expect("checkpoint");
        assert!(info.files_linked > 0 || i == 0, "{info:?}");
        checkpoints.push((path, info));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    db.sync_wal().expect("sync");
    let stats = db.stats();
    assert!(
        stats.keyspaces.iter().map(|k| k.compactions).sum::<u64>() > 0,
        "compactions ran during the checkpoints"
    );
    for (path, info) in &checkpoints {
        let expected = model_from_stream(&db, info.seqno);
        let report =
            strata::verify::verify_directory(&(Arc::new(strata::StdFs) as Arc<dyn Fs>), path)
                .expect("verify");
        assert!(report.tables > 0 || report.wal_records > 0, "{report:?}");
        let copy = Db::open(path, small_options()).expect("open checkpoint");
        let got = contents(&copy);
        assert!(
            got == expected,
            "checkpoint at {} differs from the stream's model ({} vs {} keyspaces)",
            info.seqno,
            got.len(),
            expected.len()
        );
        assert!(copy.latest_seqno() >= info.seqno);
    }
}

#[test]
fn a_checkpoint_interrupted_by_power_loss_never_opens_as_valid() {
    const DB: &str = "/ckpt-crash/db";
    const CKPT: &str = "/ckpt-crash/copy";
    let build = |fault: &FaultFs| -> (Arc<dyn Fs>, Model) {
        let fs: Arc<dyn Fs> = Arc::new(fault.clone());
        let db = Db::open_with_fs(DB, small_options(), Arc::clone(&fs)).expect("open");
        let ks = db.create_keyspace("state", ks_options()).expect("ks");
        let mut model = BTreeMap::new();
        for i in 0..400u64 {
            let key = format!("k{:03}", i % 150).into_bytes();
            let v = value(i);
            ks.put(&key, &v).expect("put");
            model.insert(key, v);
            if i == 250 {
                ks.flush().expect("flush");
            }
        }
        db.sync_wal().expect("sync");
        drop(ks);
        db.close().expect("close");
        (fs, Model::from([("state".to_string(), model)]))
    };
    // Count the calls one checkpoint makes.
    let ops = [
        FaultOp::Create,
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::Rename,
        FaultOp::Remove,
    ];
    let fault = FaultFs::new(7);
    let (fs, model) = build(&fault);
    let db = Db::open_with_fs(DB, small_options(), Arc::clone(&fs)).expect("open");
    db.wait_for_background_work().expect("settle");
    let before: Vec<u64> = ops.iter().map(|op| fault.op_count(*op)).collect();
    db.checkpoint(CKPT).expect("checkpoint");
    let counts: Vec<u64> = ops
        .iter()
        .zip(&before)
        .map(|(op, b)| fault.op_count(*op) - b)
        .collect();
    drop(db);
    let copy = Db::open_with_fs(CKPT, small_options(), Arc::clone(&fs)).expect("complete copy");
    assert!(contents(&copy) == model, "the complete checkpoint");
    drop(copy);
    let mut refused = 0;
    let mut opened = 0;
    for (op, count) in ops.iter().zip(&counts) {
        for nth in 1..=*count {
            let fault = FaultFs::new(nth * 13 + *count);
            fault.set_crash_mode(
                [
                    CrashMode::DropUnsynced,
                    CrashMode::TornTail,
                    CrashMode::GarbageTail,
                ][(nth % 3) as usize],
            );
            let (fs, model) = build(&fault);
            let db = Db::open_with_fs(DB, small_options(), Arc::clone(&fs)).expect("open");
            db.wait_for_background_work().expect("settle");
            fault.inject(FaultRule::once(*op, nth, FaultKind::Crash));
            let result = db.checkpoint(CKPT);
            let powered_off = fault.is_powered_off();
            drop(db);
            if !powered_off {
                fault.power_off(CrashMode::DropUnsynced);
            }
            fault.clear_faults();
            fault.restart();
            let context = format!(
                "power lost at {op:?} #{nth} (checkpoint returned {:?})",
                result.as_ref().map(|i| i.seqno)
            );
            let options = Options {
                create_if_missing: false,
                ..small_options()
            };
            match Db::open_with_fs(CKPT, options, Arc::clone(&fs)) {
                Ok(copy) => {
                    opened += 1;
                    assert!(contents(&copy) == model, "{context}: opened but differs");
                }
                Err(_) => refused += 1,
            }
            // The source is untouched either way.
            let db =
                Db::open_with_fs(DB, small_options(), Arc::clone(&fs)).expect("source reopens");
            assert!(contents(&db) == model, "{context}: source");
        }
    }
    assert!(
        refused > 0,
        "some interrupted checkpoints were refused ({opened} opened)"
    );
}

#[test]
fn incremental_backups_copy_only_new_files_and_restore_whole() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(dir.path().join("db"), small_options()).expect("open");
    let ks = db.create_keyspace("state", ks_options()).expect("ks");
    for i in 0..3000u64 {
        ks.put(format!("k{i:05}"), value(i)).expect("put");
    }
    ks.flush().expect("flush");
    let backups = dir.path().join("backups");
    let (first, one) = db.backup(&backups).expect("first backup");
    for i in 0..200u64 {
        ks.put(format!("k{:05}", i * 7), value(i + 10_000))
            .expect("put");
    }
    ks.flush().expect("flush");
    let expected = contents(&db);
    let (second, two) = db.backup(&backups).expect("second backup");
    assert_eq!((first, second), (1, 2));
    assert!(
        two.files_copied < one.files_copied.max(1) || two.bytes_copied < one.bytes_copied / 2,
        "the second backup copies only what is new: {one:?} then {two:?}"
    );
    let restored = dir.path().join("restored");
    assert_eq!(
        Db::restore_backup(&backups, None, &restored).expect("restore"),
        2
    );
    let copy = Db::open(&restored, small_options()).expect("open restored");
    assert!(contents(&copy) == expected, "the restored database");
    // The first backup restores too, to its own state.
    let older = dir.path().join("older");
    Db::restore_backup(&backups, Some(1), &older).expect("restore 1");
    let old = Db::open(&older, small_options()).expect("open older");
    assert_eq!(contents(&old)["state"].len(), 3000);
    assert!(Db::restore_backup(&backups, Some(9), dir.path().join("none")).is_err());
    // Pruning the oldest never makes a new backup reuse its number, and the newest
    // is still the one restored.
    std::fs::remove_dir_all(backups.join("backup-1")).expect("prune");
    std::fs::remove_file(backups.join("backup-1.complete")).expect("prune");
    ks.put("after-pruning", "yes").expect("put");
    let (third, _) = db.backup(&backups).expect("third backup");
    assert_eq!(third, 3);
    let newest = dir.path().join("newest");
    assert_eq!(
        Db::restore_backup(&backups, None, &newest).expect("restore"),
        3
    );
    let copy = Db::open(&newest, small_options()).expect("open newest");
    let state = copy.keyspace("state").expect("ks");
    assert_eq!(
        state.get("after-pruning").expect("get").as_deref(),
        Some(&b"yes"[..])
    );
}

#[test]
fn a_follower_converges_through_duplicates_and_reordering_and_reports_gaps() {
    let dir = tempfile::tempdir().expect("dir");
    let primary = Db::open(dir.path().join("primary"), small_options()).expect("primary");
    let state = primary
        .create_keyspace("state", ks_options())
        .expect("state");
    let events = primary
        .create_keyspace("events", ks_options())
        .expect("events");
    let bypass = primary
        .create_keyspace(
            "scratch",
            KeyspaceOptions {
                durability: strata::Durability::Bypass,
                ..KeyspaceOptions::default()
            },
        )
        .expect("bypass");
    let mut rng = 5u64;
    let mut write_some = |n: u64| {
        for _ in 0..n {
            rng = common::mix(rng);
            let key = format!("k{:03}", rng % 200);
            match rng % 8 {
                0 => state.delete(&key).expect("delete"),
                1 => state
                    .delete_prefix(format!("k{}", rng % 10))
                    .expect("prefix"),
                2 | 3 => {
                    let mut b = WriteBatch::new();
                    b.put(&state, &key, value(rng));
                    b.put(&events, format!("e{rng:020}"), value(rng + 1));
                    primary.write(b).expect("batch");
                }
                4 => bypass.put(&key, "not streamed").expect("bypass"),
                _ => state.put(&key, value(rng)).expect("put"),
            }
        }
    };
    write_some(800);
    primary.sync_wal().expect("sync");
    let follower = Db::open(dir.path().join("follower"), small_options()).expect("follower");
    let mut replica = Replica::seed(&follower, SeqNo(0)).expect("seed");
    // Deliver with duplicates and swaps; on a gap, ask again from the position.
    let mut gaps = 0;
    let mut duplicates = 0;
    for round in 0..3 {
        if round > 0 {
            write_some(400);
            primary.sync_wal().expect("sync");
        }
        loop {
            let batches: Vec<ChangeBatch> = primary
                .changes_since(replica.applied())
                .expect("stream")
                .map(|b| b.expect("batch"))
                .collect();
            if batches.is_empty() {
                break;
            }
            let mut delivery: Vec<&ChangeBatch> = Vec::new();
            for (i, b) in batches.iter().enumerate() {
                delivery.push(b);
                if i % 5 == 0 {
                    delivery.push(b); // duplicated
                }
            }
            for i in (1..delivery.len()).step_by(7) {
                delivery.swap(i - 1, i); // reordered
            }
            for b in delivery {
                match replica.apply(b) {
                    Ok(Applied::Applied) => {}
                    Ok(Applied::Duplicate) => duplicates += 1,
                    Err(Error::ReplicationGap {
                        applied,
                        batch_since,
                    }) => {
                        assert!(batch_since > applied);
                        gaps += 1;
                    }
                    Err(e) => panic!("apply: {e}"),
                }
            }
        }
    }
    assert!(
        gaps > 0 && duplicates > 0,
        "the faults were exercised: {gaps} gaps, {duplicates} duplicates"
    );
    let mut expected = contents(&primary);
    expected.remove("scratch"); // bypass writes are not streamed
    assert!(contents(&follower) == expected, "the follower converged");
    assert!(
        follower.keyspace("scratch").is_err(),
        "no bypass keyspace on the follower"
    );

    // A gap is detected, never skipped: drop one batch from a delivery.
    write_some(50);
    primary.sync_wal().expect("sync");
    let batches: Vec<ChangeBatch> = primary
        .changes_since(replica.applied())
        .expect("stream")
        .map(|b| b.expect("batch"))
        .collect();
    assert!(batches.len() >= 3);
    let position = replica.applied();
    replica.apply(&batches[0]).expect("first");
    assert!(matches!(
        replica.apply(&batches[2]),
        Err(Error::ReplicationGap { .. })
    ));
    assert_eq!(
        replica.applied(),
        batches[0].last,
        "nothing applied past the gap"
    );
    assert!(position < replica.applied());

    // The position survives a reopen of the follower.
    let applied = replica.applied();
    drop(replica);
    follower.close().expect("close");
    let follower = Db::open(dir.path().join("follower"), small_options()).expect("reopen");
    assert_eq!(Replica::open(&follower).expect("resume").applied(), applied);
}

#[test]
fn a_replica_seeded_from_a_checkpoint_continues_with_the_stream() {
    let dir = tempfile::tempdir().expect("dir");
    let primary = Db::open(
        dir.path().join("primary"),
        Options {
            // About a third of what is written before the checkpoint, and more than
            // what is written after it.
            wal_retention_bytes: 512 << 10,
            ..small_options()
        },
    )
    .expect("primary");
    let ks = primary.create_keyspace("state", ks_options()).expect("ks");
    for i in 0..6000u64 {
        ks.put(format!("k{:04}", i % 1000), value(i)).expect("put");
    }
    ks.flush().expect("flush");
    // The early log is gone: a stream from 0 is refused, naming the oldest held.
    match primary.changes_since(SeqNo(0)) {
        Err(e @ Error::HistoryUnavailable { .. }) => {
            assert!(e.to_string().contains("oldest"), "{e}")
        }
        Err(e) => panic!("expected HistoryUnavailable, got {e}"),
        Ok(_) => panic!("the first segments should be gone"),
    }
    let seed = dir.path().join("follower");
    let info = primary.checkpoint(&seed).expect("checkpoint");
    for i in 0..300u64 {
        ks.put(format!("k{:04}", i * 3 % 1000), value(i + 50_000))
            .expect("put");
    }
    ks.delete("k0001").expect("delete");
    primary.sync_wal().expect("sync");
    let follower = Db::open(&seed, small_options()).expect("open the seed");
    let mut replica = Replica::seed(&follower, info.seqno).expect("seed");
    for batch in primary.changes_since(replica.applied()).expect("stream") {
        replica.apply(&batch.expect("batch")).expect("apply");
    }
    assert!(
        contents(&follower) == contents(&primary),
        "seeded replica converged"
    );
}

#[test]
fn a_directory_holding_the_incomplete_marker_does_not_open() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("partial");
    std::fs::create_dir_all(&path).expect("mkdir");
    std::fs::write(path.join(strata::checkpoint::INCOMPLETE_MARKER), b"x").expect("marker");
    let err = Db::open(&path, Options::default()).expect_err("refused");
    assert!(err.to_string().contains("interrupted"), "{err}");
}

#[test]
fn wal_retention_by_age_keeps_segments_for_consumers_until_they_age_out() {
    let dir = tempfile::tempdir().expect("dir");
    let options = Options {
        wal_retention_bytes: 0,
        // Long enough for the writes and flushes below on a loaded 2-core machine
        // (400 ms was not: the young check then found segments aged out already).
        wal_retention_age: Some(std::time::Duration::from_millis(2500)),
        history_mark_interval: std::time::Duration::from_millis(5),
        ..small_options()
    };
    let db = Db::open(dir.path(), options).expect("open");
    let ks = db.create_keyspace("state", ks_options()).expect("ks");
    for i in 0..3000u64 {
        ks.put(format!("k{:04}", i % 500), value(i)).expect("put");
    }
    ks.flush().expect("flush");
    db.sync_wal().expect("sync");
    // Young: every batch since the start is still there, though all is flushed.
    let all = db.changes_since(SeqNo(0)).expect("retained").count();
    assert!(all >= 3000, "{all} batches");
    // Aged out: the housekeeping thread lets the sealed segments go.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    ks.put("after", "x").expect("put");
    ks.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(100));
    match db.changes_since(SeqNo(0)) {
        Err(Error::HistoryUnavailable { oldest, .. }) => assert!(oldest > SeqNo(0)),
        Err(e) => panic!("expected HistoryUnavailable, got {e}"),
        Ok(_) => panic!("the aged-out segments are still streamed"),
    }
}
