//! Simulated power loss at every sync, rename, remove and create of a fixed workload,
//! and a second one during the recovery after it.
//!
//! The workload of `common::workload` (a `Sync` and a `Buffered` keyspace, separated
//! values, batches across both, flushes, compactions, value-log collections, WAL
//! syncs) followed by a checkpoint is first run clean to count its calls of each kind
//! (renames are the manifest switches of `CURRENT`). Then, for every call of each kind,
//! a fresh run loses power at exactly that call (`FaultKind::Crash`: unsynced data
//! dropped, torn or filled with garbage, by turns). The database is reopened; at a
//! point chosen from the run's number, power is lost again during that recovery; then
//! it is reopened for good. What must hold:
//! - it opens (after the second crash too), with no panic;
//! - every `Sync` key holds its last acknowledged value or a later attempted one,
//!   every key only values written to it;
//! - a checkpoint that returned holds exactly the keys and values the database held
//!   when it was taken as far as `Sync` writes go (it opens and reads back every
//!   acknowledged `Sync` key), and a checkpoint that did not return either does not
//!   open or opens whole;
//! - the database takes writes again.

mod common;

use std::sync::Arc;

use common::workload::{db_options as options, ks_options, workload, Oracle};
use strata::{Db, Durability, FaultFs, Options};
use strata_wal::{CrashMode, FaultKind, FaultOp, FaultRule};

const DB: &str = "/db";
const CHECKPOINT: &str = "/checkpoint";
const KINDS: [FaultOp; 4] = [
    FaultOp::Sync,
    FaultOp::Rename,
    FaultOp::Remove,
    FaultOp::Create,
];

fn open(fs: &FaultFs, dir: &str) -> strata::Result<Db> {
    let options = Options {
        // A checkpoint that was never written must not be created empty.
        create_if_missing: dir == DB,
        ..options()
    };
    Db::open_with_fs(dir, options, Arc::new(fs.clone()))
}

/// Runs the workload and the checkpoint; returns whether the checkpoint returned.
fn run(db: &Db, oracle: &mut Oracle) -> bool {
    workload(db, oracle, &|| false);
    db.checkpoint(CHECKPOINT).is_ok()
}

/// Checks every key of `db` against the oracle.
fn check(db: &Db, oracle: &Oracle, context: &str) {
    for (i, name) in ["state", "events"].iter().enumerate() {
        let durability = [Durability::Sync, Durability::Buffered][i];
        let ks = db
            .keyspace_or_create(name, ks_options(durability))
            .unwrap_or_else(|e| panic!("{context}: keyspace {name}: {e}"));
        for k in oracle.written[i].keys() {
            let got = ks
                .get(k)
                .unwrap_or_else(|e| panic!("{context}: get {k:?}: {e}"));
            oracle.check(i, k, got.as_deref(), context);
        }
    }
}

fn clean_counts() -> Vec<(FaultOp, u64)> {
    let fs = FaultFs::new(1);
    let db = open(&fs, DB).unwrap();
    let before: Vec<u64> = KINDS.iter().map(|k| fs.op_count(*k)).collect();
    let mut oracle = Oracle::default();
    assert!(run(&db, &mut oracle), "the clean checkpoint fails");
    KINDS
        .iter()
        .zip(before)
        .map(|(k, b)| (*k, fs.op_count(*k) - b))
        .collect()
}

/// Calls into which the second power loss is placed: a recovery of this workload's
/// database makes a few dozen (one that makes fewer simply gets no second crash,
/// counted in the summary).
const RECOVERY_CALLS: u64 = 48;

/// What one crash point did.
struct PointOutcome {
    /// The first power loss hit the chosen call (not the fallback after the run).
    fired: bool,
    /// The second power loss landed inside the recovery.
    second_landed: bool,
    /// The checkpoint returned, and was checked after the crashes.
    checkpoint_checked: bool,
}

/// One crash point: power lost at the `nth` call of kind `op`, or (`None`) right
/// after the workload and its checkpoint returned.
fn one_point(at: Option<(FaultOp, u64)>, point: u64) -> PointOutcome {
    let mode = [
        CrashMode::DropUnsynced,
        CrashMode::TornTail,
        CrashMode::GarbageTail,
    ][(point % 3) as usize];
    let context = format!("power lost at {at:?} ({mode:?})");
    let fs = FaultFs::new(point ^ 0xc0ffee);
    fs.set_crash_mode(mode);
    let db = open(&fs, DB).unwrap();
    if let Some((op, nth)) = at {
        fs.inject(FaultRule::once(op, nth, FaultKind::Crash));
    }
    let mut oracle = Oracle::default();
    let checkpointed = run(&db, &mut oracle);
    let fired = fs.is_powered_off();
    if !fired {
        // No injection, or the call was not reached (background timing): lose power
        // now, before the handle is dropped (a clean close would sync everything).
        fs.power_off(mode);
    }
    drop(db);
    fs.clear_faults();
    fs.restart();

    // A second power loss somewhere in the recovery.
    let second = 1 + common::mix(point) % RECOVERY_CALLS;
    fs.inject(FaultRule::once(FaultOp::Any, second, FaultKind::Crash));
    drop(open(&fs, DB));
    let second_landed = fs.is_powered_off();
    if second_landed {
        fs.restart();
    }
    fs.clear_faults();

    let db = open(&fs, DB).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    check(&db, &oracle, &context);
    let state = db
        .keyspace_or_create("state", ks_options(Durability::Sync))
        .unwrap();
    state
        .put(b"after", b"recovery")
        .unwrap_or_else(|e| panic!("{context}: the database refuses writes: {e}"));
    db.close().unwrap();

    let checkpoint_checked = match open(&fs, CHECKPOINT) {
        Ok(cp) => {
            check(&cp, &oracle, &format!("{context}, checkpoint"));
            checkpointed
        }
        Err(e) => {
            assert!(
                !checkpointed,
                "{context}: a checkpoint that returned does not open: {e}"
            );
            false
        }
    };
    PointOutcome {
        fired: fired || at.is_none(),
        second_landed,
        checkpoint_checked,
    }
}

#[test]
fn power_loss_at_every_sync_rename_remove_and_create_with_a_second_in_recovery() {
    common::count_background_panics();
    let counts = clean_counts();
    let mut points = 0u64;
    let mut fired = 0u64;
    let mut second_crashes = 0u64;
    let mut checkpoints = 0u64;
    let mut tally = |outcome: PointOutcome| {
        fired += u64::from(outcome.fired);
        second_crashes += u64::from(outcome.second_landed);
        checkpoints += u64::from(outcome.checkpoint_checked);
    };
    // Power lost right after the checkpoint returned, three times (one per crash
    // mode): the checkpoint must hold every acknowledged `Sync` write.
    for _ in 0..3 {
        tally(one_point(None, points));
        points += 1;
    }
    for (op, count) in &counts {
        for nth in 1..=*count {
            tally(one_point(Some((*op, nth)), points));
            points += 1;
        }
    }
    println!(
        "power_loss_points summary: {points} crash points {counts:?}, {fired} hit their call, {second_crashes} with a second crash inside the recovery, {checkpoints} returned checkpoints checked"
    );
    assert!(
        fired * 10 >= points * 9,
        "only {fired} of {points} crashes hit their call"
    );
    assert!(
        checkpoints >= 3,
        "only {checkpoints} returned checkpoints were checked"
    );
    assert_eq!(
        common::background_panics(),
        0,
        "a background thread panicked"
    );
    assert!(points >= 100, "only {points} crash points");
    assert!(
        second_crashes * 2 >= points,
        "only {second_crashes} of {points} second crashes landed inside a recovery"
    );
}
