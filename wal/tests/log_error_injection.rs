//! Error injection: a failed write or fsync poisons the log, the error says so, and
//! nothing is acknowledged afterwards. Reopening recovers every acknowledged record.

mod common;

use std::sync::Arc;

use common::{dir, open, options, payload};
use strata_wal::{Commit, Error, FaultFs, FaultKind, FaultOp, FaultRule, Fs};

fn setup() -> (FaultFs, Arc<dyn Fs>) {
    let fs = FaultFs::new(9);
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    (fs, shared)
}

fn check_poisoned(kind: FaultKind, op: FaultOp, commit: Commit) {
    let (fault, fs) = setup();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    let mut acked = Vec::new();
    for i in 0..10 {
        wal.append(&payload(i, 30), 1, Commit::Sync).unwrap();
        acked.push(payload(i, 30));
    }
    fault.inject(FaultRule::once(op, 1, kind));
    let err = wal.append(b"doomed", 1, commit).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{kind:?} {op:?}: {err}");
    if kind == FaultKind::Enospc {
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::StorageFull));
    }
    // The fault was once-only, yet the log stays poisoned.
    for _ in 0..3 {
        let err = wal.append(b"later", 1, Commit::Buffered).unwrap_err();
        match &err {
            Error::Poisoned { cause } => assert!(cause.contains("failed"), "{cause}"),
            other => panic!("{kind:?} {op:?}: expected Poisoned, got {other}"),
        }
        assert!(err.to_string().contains("reopen"), "{err}");
    }
    assert!(wal.sync().is_err());
    assert!(wal.poisoned().is_some());
    drop(wal);
    fault.crash();
    let (wal, replayed, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    assert!(replayed.len() >= acked.len());
    for (r, p) in replayed.iter().zip(&acked) {
        assert_eq!(&r.payload, p);
    }
    // "doomed" may or may not have reached the disk; nothing after it can have.
    assert!(replayed.len() <= acked.len() + 1);
    wal.append(b"works again", 1, Commit::Sync).unwrap();
}

#[test]
fn eio_on_write_poisons_the_log() {
    check_poisoned(FaultKind::Eio, FaultOp::Write, Commit::Buffered);
    check_poisoned(FaultKind::Eio, FaultOp::Write, Commit::Sync);
}

#[test]
fn eio_on_fsync_poisons_the_log() {
    check_poisoned(FaultKind::Eio, FaultOp::Sync, Commit::Sync);
}

#[test]
fn enospc_on_write_and_fsync_poisons_the_log() {
    check_poisoned(FaultKind::Enospc, FaultOp::Write, Commit::Sync);
    check_poisoned(FaultKind::Enospc, FaultOp::Sync, Commit::Sync);
}

#[test]
fn failed_background_style_sync_refuses_later_sync_appends() {
    let (fault, fs) = setup();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    wal.append(b"buffered", 1, Commit::Buffered).unwrap();
    fault.inject(FaultRule::once(FaultOp::Sync, 1, FaultKind::Eio));
    let err = wal.sync().unwrap_err();
    assert!(
        err.to_string().contains("fsync") || matches!(err, Error::Io { .. }),
        "{err}"
    );
    // A Sync append after a failed fsync must not be acknowledged, even though a retry
    // of the fsync would now succeed.
    assert!(matches!(
        wal.append(b"x", 1, Commit::Sync),
        Err(Error::Poisoned { .. })
    ));
}

#[test]
fn failure_creating_a_new_segment_poisons_the_log() {
    let (fault, fs) = setup();
    let (wal, _, _) = open(&fs, &dir(), options(4096)).unwrap();
    fault.inject(FaultRule::once(FaultOp::Create, 1, FaultKind::Enospc));
    let mut failed = false;
    for i in 0..100 {
        if wal.append(&payload(i, 300), 1, Commit::Buffered).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "rotation never reached the injected create failure");
    assert!(matches!(
        wal.append(b"x", 1, Commit::Buffered),
        Err(Error::Poisoned { .. })
    ));
}

#[test]
fn read_errors_during_recovery_are_reported_not_swallowed() {
    let (fault, fs) = setup();
    let (wal, _, _) = open(&fs, &dir(), options(1 << 20)).unwrap();
    wal.append(b"x", 1, Commit::Sync).unwrap();
    drop(wal);
    fault.inject(FaultRule::from_nth_on(FaultOp::Read, 1, FaultKind::Eio));
    let err = open(&fs, &dir(), options(1 << 20)).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}
