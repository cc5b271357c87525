//! The `db_stress` child: opens the database (recovering it), then runs the workload
//! on every feature at once until it has done `max_ops` or is killed, printing one
//! `@@` line per event the parent's oracle needs, flushed before the next step:
//!
//! - `b t n` / `a t n`: logged thread `t` begins / got the acknowledgement of its
//!   operation `n`; `tt t n s`: right after acknowledging `n`, the database's newest
//!   sequence number was `s` (the parent reads the history keyspace at `s` later);
//! - `B t n` / `A t n`: bypass thread `t` begins / got the acknowledgement of the batch
//!   ending at event `n`; `F t n`: a flush that began after event `n` was acknowledged
//!   returned (so events up to `n` must survive any crash);
//! - `ck path seqno`: a checkpoint returned;
//! - `open`, `done`: recovery finished; the workload ended and the database closed.
//!
//! Beside the writers a chaos thread flushes, compacts (whole keyspaces and ranges),
//! collects value logs, syncs the WAL, takes checkpoints, and checks reads on its own:
//! a snapshot re-read after a flush or compaction is unchanged, a time-travel read at
//! the snapshot's sequence number equals it, forward and reverse scans agree and every
//! value read validates under its key. Any failure prints to stderr and exits with
//! status 3 (a panic anywhere, the engine's background threads included, with 4).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata::{Db, Durability, Error, Keyspace, SeqNo, WriteBatch, WriteOptions};

use super::oracle::{scan_both_ways, Entries};
use super::workload::{
    cursor_key, db_options, event_batch, event_block, event_block_prefix, event_key, event_len,
    event_thread_prefix, keyspace_options, logged_op, mix, thread_prefix, value, value_is_valid,
    Action, Op, BYPASS, EVENTS_PER_BLOCK, HISTORY_KS, LOGGED,
};
use crate::rng::Rng;

/// What the parent tells a child.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// The database directory.
    pub dir: PathBuf,
    /// Where checkpoints go (one subdirectory each).
    pub checkpoint_dir: PathBuf,
    /// The workload's seed (shared with the parent).
    pub seed: u64,
    /// This child's own seed (chaos timing).
    pub run_seed: u64,
    /// Next operation number of each logged thread.
    pub logged_next: Vec<u64>,
    /// Next event number of each bypass thread.
    pub bypass_next: Vec<u64>,
    /// Operations per logged thread before the child closes the database and exits.
    pub max_ops: u64,
    /// The checker's self-test: acknowledge every operation whose number is a multiple
    /// of this without writing it (the parent must report a violation).
    pub lose_every: Option<u64>,
}

/// One `@@` line to the parent, flushed at once (it must reach the pipe before a kill
/// can land).
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    // A parent that stopped reading is not the child's failure to report.
    let _ = writeln!(out, "@@{line}");
    let _ = out.flush();
}

fn fail(what: &str) -> ! {
    eprintln!("db_stress child: {what}");
    emit(&format!("fail {what}"));
    std::process::exit(3);
}

fn check<T>(result: strata::Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| fail(&format!("{what}: {e}")))
}

/// Opens every keyspace of the stress workload, creating what is missing: the logged
/// ones in [`LOGGED`] order, then the bypass one.
pub fn open_keyspaces(db: &Db) -> strata::Result<(Vec<Keyspace>, Keyspace)> {
    let logged = LOGGED
        .iter()
        .map(|name| db.keyspace_or_create(name, keyspace_options(name)))
        .collect::<strata::Result<Vec<_>>>()?;
    let bypass = db.keyspace_or_create(BYPASS, keyspace_options(BYPASS))?;
    Ok((logged, bypass))
}

/// Runs the child to its end (or its kill).
pub fn run(config: ChildConfig) -> ! {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("db_stress child: panic: {info}");
        emit("fail panic");
        std::process::exit(4);
    }));
    let db = check(Db::open(&config.dir, db_options()), "open");
    let (logged, bypass) = check(open_keyspaces(&db), "open keyspaces");
    emit("open");
    let config = Arc::new(config);
    let writers_left = Arc::new(AtomicU64::new(
        (config.logged_next.len() + config.bypass_next.len()) as u64,
    ));
    let bypass_acked: Arc<Vec<AtomicU64>> = Arc::new(
        config
            .bypass_next
            .iter()
            .map(|&n| AtomicU64::new(n.saturating_sub(1)))
            .collect(),
    );
    let mut threads = Vec::new();
    for (t, &start) in config.logged_next.iter().enumerate() {
        let (db, logged, config, left) = (
            db.clone(),
            logged.clone(),
            Arc::clone(&config),
            Arc::clone(&writers_left),
        );
        threads.push(std::thread::spawn(move || {
            logged_writer(&db, &logged, &config, t as u64, start);
            left.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    for (t, &start) in config.bypass_next.iter().enumerate() {
        let (db, bypass, config, left, acked) = (
            db.clone(),
            bypass.clone(),
            Arc::clone(&config),
            Arc::clone(&writers_left),
            Arc::clone(&bypass_acked),
        );
        threads.push(std::thread::spawn(move || {
            bypass_writer(&db, &bypass, &config, t as u64, start, &acked[t]);
            left.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (db, logged, bypass, config, stop, acked) = (
            db.clone(),
            logged.clone(),
            bypass.clone(),
            Arc::clone(&config),
            Arc::clone(&stop),
            Arc::clone(&bypass_acked),
        );
        std::thread::spawn(move || chaos(&db, &logged, &bypass, &config, &stop, &acked))
    };
    for t in threads {
        if t.join().is_err() {
            fail("a writer thread panicked");
        }
    }
    stop.store(true, Ordering::SeqCst);
    if chaos.join().is_err() {
        fail("the chaos thread panicked");
    }
    drop((logged, bypass));
    check(db.close(), "close");
    emit("done");
    std::process::exit(0);
}

/// Writes `op` (number `n` of logged thread `thread`) as one write or one batch.
pub fn write_op(db: &Db, logged: &[Keyspace], thread: u64, n: u64, op: &Op) -> strata::Result<()> {
    let options = WriteOptions {
        durability: op.sync_override.then_some(Durability::Sync),
    };
    if let [action] = op.actions.as_slice() {
        return match action {
            Action::Put { ks, key, len } => {
                logged[*ks].put_opt(key, value(thread, n, key, *len), &options)
            }
            Action::Delete { ks, key } => logged[*ks].delete_opt(key, &options),
            Action::DeletePrefix { ks, prefix } => logged[*ks].delete_prefix_opt(prefix, &options),
        };
    }
    let mut batch = WriteBatch::new();
    for action in &op.actions {
        match action {
            Action::Put { ks, key, len } => {
                batch.put(&logged[*ks], key, value(thread, n, key, *len));
            }
            Action::Delete { ks, key } => batch.delete(&logged[*ks], key),
            Action::DeletePrefix { ks, prefix } => batch.delete_prefix(&logged[*ks], prefix),
        }
    }
    db.write_opt(batch, &options)
}

fn logged_writer(db: &Db, logged: &[Keyspace], config: &ChildConfig, thread: u64, start: u64) {
    for n in start..start + config.max_ops {
        let op = logged_op(config.seed, thread, n);
        emit(&format!("b {thread} {n}"));
        let lie = config.lose_every.is_some_and(|k| n.is_multiple_of(k));
        if !lie {
            check(write_op(db, logged, thread, n, &op), "logged write");
        }
        emit(&format!("a {thread} {n}"));
        if n.is_multiple_of(20) {
            emit(&format!("tt {thread} {n} {}", db.latest_seqno().0));
        }
    }
}

/// The batch of bypass events `first..=last` of `thread`, with the cursor and, when
/// it starts a block, the prefix delete of the block two back.
pub fn event_write_batch(
    bypass: &Keyspace,
    seed: u64,
    thread: u64,
    first: u64,
    last: u64,
) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for e in first..=last {
        if e.is_multiple_of(EVENTS_PER_BLOCK) && event_block(e) >= 2 {
            batch.delete_prefix(bypass, event_block_prefix(thread, event_block(e) - 2));
        }
        let key = event_key(thread, e);
        batch.put(
            bypass,
            &key,
            value(thread, e, &key, event_len(seed, thread, e)),
        );
    }
    let cursor = cursor_key(thread);
    batch.put(bypass, &cursor, value(thread, last, &cursor, 24));
    batch
}

fn bypass_writer(
    db: &Db,
    bypass: &Keyspace,
    config: &ChildConfig,
    thread: u64,
    start: u64,
    acked: &AtomicU64,
) {
    let mut rng = Rng::new(mix(&[config.run_seed, 5, thread]));
    let mut next = start;
    let end = start + config.max_ops * 2;
    while next < end {
        let batch = event_batch(config.seed, thread, next);
        emit(&format!("B {thread} {}", batch.last));
        check(
            db.write(event_write_batch(
                bypass,
                config.seed,
                thread,
                batch.first,
                batch.last,
            )),
            "bypass write",
        );
        acked.store(batch.last, Ordering::SeqCst);
        emit(&format!("A {thread} {}", batch.last));
        if rng.below(150) == 0 {
            check(bypass.flush(), "bypass flush");
            emit(&format!("F {thread} {}", batch.last));
        }
        next = batch.last + 1;
    }
}

fn chaos(
    db: &Db,
    logged: &[Keyspace],
    bypass: &Keyspace,
    config: &ChildConfig,
    stop: &AtomicBool,
    bypass_acked: &[AtomicU64],
) {
    let mut rng = Rng::new(mix(&[config.run_seed, 6]));
    let mut checkpoints = 0u64;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rng.below(12)));
        let ks = &logged[rng.below(LOGGED.len() as u64) as usize];
        match rng.below(100) {
            0..=14 => {
                let upto: Vec<u64> = bypass_acked
                    .iter()
                    .map(|a| a.load(Ordering::SeqCst))
                    .collect();
                check(db.flush(), "flush all");
                for (t, n) in upto.iter().enumerate() {
                    emit(&format!("F {t} {n}"));
                }
            }
            15..=24 => check(ks.compact(), "compact"),
            25..=34 => {
                let t = rng.below(config.logged_next.len() as u64);
                let a = format!("t{t}/k{}", rng.below(5));
                let b = format!("t{t}/k{}", 5 + rng.below(5));
                check(
                    ks.compact_range(Some(a.as_bytes()), Some(b.as_bytes())),
                    "compact_range",
                );
            }
            35..=44 => {
                check(
                    db.gc_value_log(&logged[rng.below(2) as usize]),
                    "gc_value_log",
                );
            }
            45..=49 => check(db.sync_wal(), "sync_wal"),
            50..=79 => snapshot_check(db, logged, config, &mut rng),
            80..=89 => {
                if !config.bypass_next.is_empty() {
                    let t = rng.below(config.bypass_next.len() as u64);
                    bypass_scan_check(db, bypass, t);
                }
            }
            90..=94 => {
                let path = config
                    .checkpoint_dir
                    .join(format!("ck-{}-{checkpoints}", std::process::id()));
                checkpoints += 1;
                let info = check(db.checkpoint(&path), "checkpoint");
                emit(&format!("ck {} {}", path.display(), info.seqno.0));
            }
            _ => {
                let _ = db.stats();
            }
        }
    }
}

/// Every entry the iterators `open` makes, checked: forward and reverse scans agree
/// and every value validates under its key.
fn scan_checked(open: impl Fn() -> strata::Iter, what: &str) -> Entries {
    let entries = scan_both_ways(open, what).unwrap_or_else(|e| fail(&e));
    for (k, v) in &entries {
        if !value_is_valid(k, v) {
            fail(&format!(
                "{what}: key {} holds a value never written to it",
                String::from_utf8_lossy(k)
            ));
        }
    }
    entries
}

fn snapshot_check(db: &Db, logged: &[Keyspace], config: &ChildConfig, rng: &mut Rng) {
    if config.logged_next.is_empty() {
        return;
    }
    let thread = rng.below(config.logged_next.len() as u64);
    let prefix = thread_prefix(thread);
    let snapshot = db.snapshot();
    let read_all = |snap: &strata::Snapshot| -> Vec<Entries> {
        logged
            .iter()
            .map(|ks| scan_checked(|| snap.prefix(ks, &prefix), "snapshot scan"))
            .collect()
    };
    let before = read_all(&snapshot);
    let ks = &logged[rng.below(LOGGED.len() as u64) as usize];
    if rng.below(2) == 0 {
        check(ks.flush(), "flush under a snapshot");
    } else {
        check(ks.compact(), "compact under a snapshot");
    }
    if read_all(&snapshot) != before {
        fail("a snapshot read changed after a flush or compaction");
    }
    match db.snapshot_at(SeqNo(snapshot.seqno().0)) {
        Ok(past) => {
            let history = &logged[HISTORY_KS];
            let at = scan_checked(|| past.prefix(history, &prefix), "time-travel scan");
            if at != before[HISTORY_KS] {
                fail(&format!(
                    "snapshot_at({}) differs from the snapshot taken at that number",
                    snapshot.seqno().0
                ));
            }
        }
        Err(Error::HistoryUnavailable { .. }) => {}
        Err(e) => fail(&format!("snapshot_at: {e}")),
    }
}

fn bypass_scan_check(db: &Db, bypass: &Keyspace, thread: u64) {
    let snapshot = db.snapshot();
    let prefix = event_thread_prefix(thread);
    let events = scan_checked(|| snapshot.prefix(bypass, &prefix), "bypass scan");
    // The live view of one thread's events has no hole: consecutive numbers.
    let numbers: Vec<u64> = events
        .iter()
        .filter_map(|(_, v)| super::workload::value_origin(v).map(|(_, n)| n))
        .collect();
    if numbers.windows(2).any(|w| w[1] != w[0] + 1) {
        fail(&format!(
            "bypass thread {thread}: a hole in the live events"
        ));
    }
}
