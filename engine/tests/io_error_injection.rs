//! I/O errors injected at the Nth call of a fixed workload, for every kind of call.
//!
//! The workload (on `FaultFs`, two keyspaces: `state` with `Sync` durability and
//! `events` with `Buffered`, values of 48 bytes and more separated, small memtables so
//! that it flushes, compacts and collects the value log) is first run clean to count
//! its reads, writes, syncs, renames, removes and creations. Then, for each kind and
//! for sampled N up to that count, a fresh run makes the Nth such call fail with EIO,
//! and another with ENOSPC (once: the disk recovers). Every operation's outcome is
//! recorded; the run goes on after errors to its end, or (a second run per point)
//! power is lost right after the operation during which the fault fired. What must
//! hold:
//! - no panic, in the test's thread or a background thread;
//! - a read that succeeds returns a value written to that key (acknowledged or not),
//!   never anything else; a `Sync` key never reads older than its last acknowledged
//!   write;
//! - after the run, power is lost (unsynced data dropped) and the database reopens;
//!   every `Sync` key holds its last acknowledged value or a later one that was
//!   attempted, every `events` key a value that was written to it or nothing;
//! - the reopened database takes writes again.
//!
//! `STRATA_IO_ERROR_STRIDE` sets how densely N is sampled (default: every call of the
//! rarer kinds, about 40 points of each other kind); each point runs with EIO and with
//! ENOSPC, each both ways. Mutation-checked: a WAL that acknowledges `Sync` writes
//! after a failed fsync fails it.

mod common;

use std::sync::Arc;

use common::workload::{db_options as options, ks_options, workload, Oracle};
use strata::{Db, Durability, Error, FaultFs};
use strata_wal::{FaultKind, FaultOp, FaultRule};

const DB: &str = "/db";
const KINDS: [FaultOp; 6] = [
    FaultOp::Read,
    FaultOp::Write,
    FaultOp::Sync,
    FaultOp::Rename,
    FaultOp::Remove,
    FaultOp::Create,
];

fn open(fs: &FaultFs) -> Result<Db, Error> {
    Db::open_with_fs(DB, options(), Arc::new(fs.clone()))
}

/// Counts of each kind of call the clean workload makes (after its open).
fn clean_counts() -> Vec<(FaultOp, u64)> {
    let fs = FaultFs::new(1);
    let db = open(&fs).unwrap();
    let before: Vec<u64> = KINDS.iter().map(|k| fs.op_count(*k)).collect();
    let mut oracle = Oracle::default();
    assert_eq!(
        workload(&db, &mut oracle, &|| false),
        0,
        "the clean workload fails"
    );
    db.wait_for_background_work().unwrap();
    KINDS
        .iter()
        .zip(before)
        .map(|(k, b)| (*k, fs.op_count(*k) - b))
        .collect()
}

/// One injection: the Nth call of kind `op` fails with `kind`. With `crash_at_fault`
/// power is lost right after the operation during which it fired (so a later sync
/// cannot cover for an acknowledgement the failed one should have withheld);
/// otherwise the workload runs to its end first. Returns the failed operations and
/// whether the fault fired during the run.
fn run_one(op: FaultOp, nth: u64, kind: FaultKind, crash_at_fault: bool) -> (u64, bool) {
    let fs = FaultFs::new(nth ^ 0x5eed);
    let db = open(&fs).unwrap();
    let fired_at = fs.op_count(op) + nth;
    fs.inject(FaultRule::once(op, nth, kind));
    let mut oracle = Oracle::default();
    let watch = fs.clone();
    let stop = move || crash_at_fault && watch.op_count(op) >= fired_at;
    let failures = workload(&db, &mut oracle, &stop);
    if !crash_at_fault {
        let _ = db.wait_for_background_work();
    }
    let fired = fs.op_count(op) >= fired_at;
    // The disk recovers (a fault that did not fire during the run is dropped), then
    // power is lost while the old handle and its background thread are still there
    // (nothing they do after it reaches the disk): what was not synced goes.
    fs.clear_faults();
    fs.power_off(strata_wal::CrashMode::DropUnsynced);
    drop(db);
    fs.restart();
    let context = format!("{op:?} #{nth} {kind:?}");
    let db = open(&fs).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    for (i, name) in ["state", "events"].iter().enumerate() {
        let ks = db
            .keyspace_or_create(
                name,
                ks_options([Durability::Sync, Durability::Buffered][i]),
            )
            .unwrap();
        for k in oracle.written[i].keys() {
            let got = ks
                .get(k)
                .unwrap_or_else(|e| panic!("{context}: get after reopen: {e}"));
            oracle.check(i, k, got.as_deref(), &format!("{context}, after reopen"));
        }
        ks.put(b"after", b"reopen")
            .unwrap_or_else(|e| panic!("{context}: the reopened database refuses writes: {e}"));
    }
    db.close().unwrap();
    (failures, fired)
}

#[test]
fn eio_and_enospc_at_every_call_kind_lose_nothing_acknowledged() {
    common::count_background_panics();
    let counts = clean_counts();
    let mut points = 0;
    let mut surfaced = 0;
    let mut fired = 0;
    for (op, count) in counts {
        let stride = std::env::var("STRATA_IO_ERROR_STRIDE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or((count / 40).max(1));
        let mut nth = 1;
        while nth <= count {
            for kind in [FaultKind::Eio, FaultKind::Enospc] {
                for crash_at_fault in [false, true] {
                    let (failed, did_fire) = run_one(op, nth, kind, crash_at_fault);
                    points += 1;
                    surfaced += u64::from(failed > 0);
                    fired += u64::from(did_fire);
                }
            }
            nth += stride;
        }
        println!("{op:?}: {count} calls in the workload");
    }
    println!(
        "io_error_injection summary: {points} injection points, {fired} fired during the run, {surfaced} surfaced as a failed operation"
    );
    // Background work shifts the calls a little from run to run; most faults must
    // still land inside the workload, and most must surface.
    assert!(
        fired * 10 >= points * 9,
        "only {fired} of {points} faults fired"
    );
    assert!(
        surfaced * 2 >= points,
        "only {surfaced} of {points} faults surfaced"
    );
    assert_eq!(
        common::background_panics(),
        0,
        "a background thread panicked"
    );
    assert!(points >= 40, "only {points} injection points");
}
