//! Power loss inside value-log garbage collection: for every sync, rename, remove
//! and create that one `gc_value_log` run makes, a fresh database in the same state
//! loses power exactly there (unsynced bytes dropped, torn or replaced with garbage,
//! by turns). After each restart every live key reads its last value (no dangling
//! pointer, no lost value), every deleted key stays deleted, both iterator directions
//! agree with the model, no segment file is left that the database does not use, and
//! a second collection then finishes and reclaims the space.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata::{Db, FaultFs, Fs, KeyspaceOptions, Options};
use strata_wal::{CrashMode, FaultKind, FaultOp, FaultRule};

const DIR: &str = "/gc-crash";

fn options() -> Options {
    Options {
        background_threads: 1,
        ..Options::default()
    }
}

fn ks_options() -> KeyspaceOptions {
    KeyspaceOptions {
        memtable_bytes: 256 << 10,
        target_table_bytes: 16 << 10,
        value_threshold: Some(512),
        // Collection only when the test calls for it.
        vlog_background_gc: false,
        ..KeyspaceOptions::default()
    }
}

fn value(key: u32, round: u32) -> Vec<u8> {
    let len = 300 + (key as usize * 37) % 1500;
    let stamp = format!("k{key}r{round};");
    stamp.as_bytes().iter().copied().cycle().take(len).collect()
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Writes three rounds (overwrites of two keys in three, a delete of one in ten, some
/// values inline, most separated), each flushed, then compacts: the segments are
/// partly garbage and nothing is pending.
fn build(fs: &Arc<dyn Fs>) -> Model {
    let db = Db::open_with_fs(DIR, options(), Arc::clone(fs)).expect("open");
    let ks = db
        .create_keyspace("memories", ks_options())
        .expect("keyspace");
    let mut model = Model::new();
    for round in 0..3u32 {
        for i in 0..240u32 {
            if round > 0 && (i + round) % 3 == 0 {
                continue;
            }
            let key = format!("key{i:04}").into_bytes();
            if round == 2 && i % 10 == 0 {
                ks.delete(&key).expect("delete");
                model.remove(&key);
            } else {
                let v = value(i, round);
                ks.put(&key, &v).expect("put");
                model.insert(key, v);
            }
        }
        ks.flush().expect("flush");
    }
    ks.compact().expect("compact");
    db.wait_for_background_work().expect("settle");
    drop(ks);
    db.close().expect("close");
    model
}

fn segment_files(fault: &FaultFs) -> Vec<String> {
    fault
        .durable_list(Path::new(DIR))
        .into_iter()
        .filter(|n| n.ends_with(".vlog"))
        .collect()
}

/// Opens the database and checks it against the model; returns it open.
fn verify(fs: &Arc<dyn Fs>, fault: &FaultFs, model: &Model, context: &str) -> Db {
    let db = Db::open_with_fs(DIR, options(), Arc::clone(fs))
        .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    let ks = db.keyspace("memories").expect("keyspace");
    for i in 0..240u32 {
        let key = format!("key{i:04}").into_bytes();
        let got = ks
            .get(&key)
            .unwrap_or_else(|e| panic!("{context}: get key{i:04}: {e}"));
        assert_eq!(
            got.as_deref(),
            model.get(&key).map(Vec::as_slice),
            "{context}: key{i:04}"
        );
    }
    let forward: Model = ks
        .iter()
        .map(|kv| {
            let (k, v) = kv.unwrap_or_else(|e| panic!("{context}: scan: {e}"));
            (k.to_vec(), v.to_vec())
        })
        .collect();
    assert!(forward == *model, "{context}: forward scan differs");
    let backward = ks.iter().rev().count();
    assert_eq!(backward, model.len(), "{context}: backward scan");
    // Every segment file on disk is one the database holds.
    let stats = db.stats();
    let held: Vec<u64> = stats
        .keyspaces
        .iter()
        .flat_map(|k| k.value_log.iter().map(|s| s.id))
        .collect();
    for name in segment_files(fault) {
        let id: u64 = name
            .trim_end_matches(".vlog")
            .parse()
            .expect("segment name");
        assert!(
            held.contains(&id),
            "{context}: {name} left behind, held {held:?}"
        );
    }
    drop(ks);
    db
}

#[test]
fn power_loss_at_every_sync_rename_remove_and_create_of_a_gc_run_loses_nothing() {
    // The baseline: how many calls of each kind one collection makes.
    let fault = FaultFs::new(1);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let model = build(&fs);
    let db = Db::open_with_fs(DIR, options(), Arc::clone(&fs)).expect("open");
    db.wait_for_background_work().expect("settle");
    let ks = db.keyspace("memories").expect("keyspace");
    let ops = [
        FaultOp::Sync,
        FaultOp::Rename,
        FaultOp::Remove,
        FaultOp::Create,
    ];
    let before: Vec<u64> = ops.iter().map(|op| fault.op_count(*op)).collect();
    let report = db.gc_value_log(&ks).expect("gc");
    let counts: Vec<u64> = ops
        .iter()
        .zip(&before)
        .map(|(op, b)| fault.op_count(*op) - b)
        .collect();
    assert!(
        report.relocated_bytes > 0,
        "the baseline collected nothing: {report:?}"
    );
    assert!(report.segments_removed > 0, "{report:?}");
    assert!(
        counts[0] >= 4 && counts[2] >= 1,
        "calls per kind {counts:?}"
    );
    drop(ks);
    db.close().expect("close");
    drop(verify(&fs, &fault, &model, "no power loss"));

    let modes = [
        CrashMode::DropUnsynced,
        CrashMode::TornTail,
        CrashMode::GarbageTail,
    ];
    let mut crashes = 0;
    for (op, count) in ops.iter().zip(&counts) {
        for nth in 1..=*count {
            let fault = FaultFs::new(nth * 31 + *count);
            fault.set_crash_mode(modes[(nth as usize) % modes.len()]);
            let fs: Arc<dyn Fs> = Arc::new(fault.clone());
            let model = build(&fs);
            let db = Db::open_with_fs(DIR, options(), Arc::clone(&fs)).expect("open");
            db.wait_for_background_work().expect("settle");
            let ks = db.keyspace("memories").expect("keyspace");
            fault.inject(FaultRule::once(*op, nth, FaultKind::Crash));
            let _ = db.gc_value_log(&ks);
            drop(ks);
            let powered_off = fault.is_powered_off();
            drop(db);
            if !powered_off {
                // Background work may have used the call first; lose power now.
                fault.power_off(modes[(nth as usize) % modes.len()]);
            }
            fault.clear_faults();
            fault.restart();
            crashes += 1;
            let context = format!("power lost at {op:?} #{nth}");
            let db = verify(&fs, &fault, &model, &context);
            let ks = db.keyspace("memories").expect("keyspace");
            db.gc_value_log(&ks)
                .unwrap_or_else(|e| panic!("{context}: second collection: {e}"));
            let stats = db.stats();
            let k = stats.keyspace("memories").expect("stats");
            assert!(
                k.vlog_space_amplification <= 1.5,
                "{context}: space amplification {} after a full collection",
                k.vlog_space_amplification
            );
            drop(ks);
            db.close().expect("close");
            let db = verify(&fs, &fault, &model, &format!("{context}, collected again"));
            drop(db);
        }
    }
    // An I/O error instead of power loss at every sync of the run (the manifest's
    // among them, after which the edit may or may not be on disk): the collection
    // fails and poisons the database, and whatever files it leaves, the reopened
    // database holds every value.
    for nth in 1..=counts[0] {
        let fault = FaultFs::new(nth);
        let fs: Arc<dyn Fs> = Arc::new(fault.clone());
        let model = build(&fs);
        let db = Db::open_with_fs(DIR, options(), Arc::clone(&fs)).expect("open");
        db.wait_for_background_work().expect("settle");
        let ks = db.keyspace("memories").expect("keyspace");
        fault.inject(FaultRule::once(FaultOp::Sync, nth, FaultKind::Eio));
        let failed = db.gc_value_log(&ks).is_err();
        drop(ks);
        drop(db);
        fault.clear_faults();
        let context = format!("EIO at sync #{nth}");
        assert!(failed, "{context}: the collection reported success");
        drop(verify(&fs, &fault, &model, &context));
    }
    eprintln!("{crashes} crash points, calls per kind {counts:?}");
    assert!(crashes >= 6, "only {crashes} crash points");
}
