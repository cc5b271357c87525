//! Process kills: a child process writing batches is killed with SIGKILL at random
//! moments, and every reopen must recover exactly the batches it should.
//!
//! The parent re-runs this test binary as a child (`current_exe() --exact
//! child_writer --ignored --nocapture`; the child test is `#[ignore]` so a normal run
//! skips it, and does nothing without `STRATA_KILL_CHILD_DIR`). The child opens the
//! database on the real file system with small memtables (so flushes and compactions
//! run all the time), and two writer threads apply write batches numbered from a
//! shared counter: `Sync` ones from thread 0, `Buffered` ones from thread 1 (a process
//! kill, unlike a power loss, must not lose an acknowledged `Buffered` write either).
//! Batch `n` of thread `t` puts `batch/{n}/{i}` (i < 4) in keyspace `a` (no
//! compression) and in keyspace `b` (zstd), with an 8 to 16 KiB value now and then,
//! sets `slot/{t}/{n % 5}` to `n` in both, and replaces `tmp/{t}/…` by `tmp/{t}/{n}`
//! in `a` with a prefix delete plus a put. Now and then a writer also forces a flush
//! or a full compaction. Before a batch the child prints `@@begin n`, after its
//! acknowledgement `@@ack n`, each flushed to the pipe.
//!
//! The parent kills the child after a seeded random number of acknowledgements (up to
//! about 400; the child keeps running while the parent reads, so the kill lands
//! anywhere: in a WAL write or fsync, a flush, a compaction, a manifest edit), or in
//! some cycles a few milliseconds after starting it (during its recovery). It reads
//! what the child printed before dying, reopens the database, checks it, and starts
//! the next child on the same directory, numbering on. What it guards:
//! - every acknowledged batch is present after the kill, whole;
//! - no batch is partly present: all its keys in both keyspaces, or none of them;
//! - nothing that was never begun appears, and no value is wrong;
//! - per writer thread, the recovered batches are a prefix of what it wrote: the
//!   overwritten slots hold the newest recovered batch, and `tmp/{t}/` holds exactly
//!   the newest one (a prefix delete never un-happens and never deletes too much);
//! - scans forward and backward and point reads agree;
//! - recovery itself does not fail (no `Error::Corruption` after a mere process kill).
//!
//! `STRATA_KILL_CYCLES` sets the number of kills (default 25), `STRATA_KILL_SEED` the
//! seed. No timing assertions. The database grows from cycle to cycle and every check
//! scans all of it, so long runs cost more than linearly (60 cycles: about 25 s).

mod common;

use common::{emit, mix, KillAt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata::{Compression, Db, Keyspace, KeyspaceOptions, Options, WriteBatch, WriteOptions};

const ENV_DIR: &str = "STRATA_KILL_CHILD_DIR";
const ENV_START: &str = "STRATA_KILL_CHILD_START";
const ENV_SEED: &str = "STRATA_KILL_CHILD_SEED";
const THREADS: u64 = 2;
const KEYS_PER_BATCH: u64 = 4;
const SLOTS: u64 = 5;
/// A child stops on its own after this many batches per thread (the parent kills it
/// long before).
const CHILD_MAX_BATCHES: u64 = 20_000;

fn ks_options(compression: Compression) -> KeyspaceOptions {
    KeyspaceOptions {
        memtable_bytes: 16 << 10,
        block_size: 1024,
        compression,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 8,
        l0_stop_trigger: 12,
        base_level_bytes: 64 << 10,
        level_size_ratio: 4,
        target_table_bytes: 32 << 10,
        ..KeyspaceOptions::default()
    }
}

fn db_options() -> Options {
    Options {
        wal_segment_bytes: 64 << 10,
        max_wal_bytes: 256 << 10,
        ..Options::default()
    }
}

fn open_keyspaces(db: &Db) -> [Keyspace; 2] {
    [
        db.keyspace_or_create("a", ks_options(Compression::None))
            .unwrap(),
        db.keyspace_or_create("b", ks_options(Compression::Zstd))
            .unwrap(),
    ]
}

fn batch_key(n: u64, i: u64) -> String {
    format!("batch/{n:010}/{i}")
}

/// The value of key `i` of batch `n` in keyspace `k`: self-describing, sometimes large.
fn batch_value(n: u64, i: u64, k: usize, thread: u64) -> Vec<u8> {
    let mut v = format!("n={n};i={i};k={k};t={thread};").into_bytes();
    let h = mix(n * 31 + i * 7 + k as u64);
    let len = if i == 0 && n.is_multiple_of(13) {
        8 << 10 | (h % (8 << 10)) as usize
    } else {
        16 + (h % 200) as usize
    };
    let fill = b'A' + (h % 26) as u8;
    v.resize(len.max(v.len()), fill);
    v
}

fn slot_key(thread: u64, slot: u64) -> String {
    format!("slot/{thread}/{slot}")
}

fn tmp_prefix(thread: u64) -> String {
    format!("tmp/{thread}/")
}

fn tmp_key(thread: u64, n: u64) -> String {
    format!("tmp/{thread}/{n:010}")
}

fn build_batch(ks: &[Keyspace; 2], n: u64, thread: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for i in 0..KEYS_PER_BATCH {
        for (k, ks) in ks.iter().enumerate() {
            b.put(ks, batch_key(n, i), batch_value(n, i, k, thread));
        }
    }
    for ks in ks {
        b.put(ks, slot_key(thread, n % SLOTS), n.to_string());
    }
    b.delete_prefix(&ks[0], tmp_prefix(thread));
    b.put(&ks[0], tmp_key(thread, n), n.to_string());
    b
}

/// The child: writes until killed. Does nothing unless started by the parent.
#[test]
#[ignore = "run only as the child process of kill_child_repeatedly_and_check_recovery"]
fn child_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let start: u64 = std::env::var(ENV_START).unwrap().parse().unwrap();
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    let db = Db::open(&dir, db_options()).unwrap();
    let ks = open_keyspaces(&db);
    let next = Arc::new(AtomicU64::new(start));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            let ks = ks.clone();
            let next = Arc::clone(&next);
            std::thread::spawn(move || {
                for j in 0..CHILD_MAX_BATCHES {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let batch = build_batch(&ks, n, t);
                    emit(&format!("begin {n}"));
                    // Thread 0 writes Sync, thread 1 Buffered: both survive a process
                    // kill once acknowledged (the OS holds what the WAL wrote).
                    let options = if t == 0 {
                        WriteOptions::sync()
                    } else {
                        WriteOptions::default()
                    };
                    db.write_opt(batch, &options)
                        .unwrap_or_else(|e| panic!("child: batch {n} failed: {e}"));
                    emit(&format!("ack {n}"));
                    // Now and then force a flush, rarely a full compaction (it rewrites
                    // every table, and the database grows from cycle to cycle).
                    let h = mix(seed ^ n ^ j);
                    if h.is_multiple_of(97) {
                        ks[(n % 2) as usize].flush().unwrap();
                    } else if h.is_multiple_of(1009) {
                        ks[(n % 2) as usize].compact().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// What the parent knows about all batches so far.
#[derive(Default)]
struct Ledger {
    begun: BTreeSet<u64>,
    acked: BTreeSet<u64>,
    /// The first batch number of the next child.
    next_start: u64,
    /// The first batch number of the last child.
    cycle_start: u64,
}

/// Runs one child until `kill_at`, kills it, and records what it printed.
fn run_child(dir: &Path, ledger: &mut Ledger, kill_at: KillAt, seed: u64, cycle: u64) {
    let stderr_path = dir.with_extension(format!("child-{cycle}.stderr"));
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = common::spawn_child(
        "child_writer",
        &[
            (ENV_DIR, dir.display().to_string()),
            (ENV_START, ledger.next_start.to_string()),
            (ENV_SEED, seed.to_string()),
        ],
        Stdio::from(stderr),
    );
    let record = |line: &str, ledger: &mut Ledger| -> bool {
        let Some(at) = line.find("@@") else {
            return false;
        };
        let mut parts = line[at + 2..].split_whitespace();
        let (Some(what), Some(n)) = (parts.next(), parts.next()) else {
            return false;
        };
        let n: u64 = n.parse().unwrap();
        match what {
            "begin" => {
                ledger.begun.insert(n);
                false
            }
            "ack" => {
                assert!(ledger.begun.contains(&n), "ack {n} before its begin");
                ledger.acked.insert(n);
                true
            }
            _ => false,
        }
    };
    let (killed, acks) = common::run_until_kill(&mut child, kill_at, |line| record(line, ledger));
    let status = child.wait().unwrap();
    // 101 is how a failed libtest test exits: the child panicked before the kill.
    if !killed || status.code() == Some(101) {
        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        panic!(
            "cycle {cycle}: the child ended on its own ({status}) after {acks} acks; its \
             stderr:\n{err}"
        );
    }
    let _ = std::fs::remove_file(&stderr_path);
    ledger.cycle_start = ledger.next_start;
    ledger.next_start = ledger.begun.last().map_or(1, |n| n + 1);
}

fn parse_field<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value
        .split(';')
        .find_map(|f| f.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

/// Reopens the database after a kill and checks it against the ledger. Returns the
/// number of batches recovered and the number of tables per keyspace.
fn check(dir: &Path, ledger: &Ledger, cycle: u64) -> (usize, Vec<usize>) {
    let db = Db::open(dir, db_options())
        .unwrap_or_else(|e| panic!("cycle {cycle}: reopening after a process kill failed: {e}"));
    let ks = open_keyspaces(&db);
    // keyspace -> key -> value, from full scans (checked against gets below).
    let mut all: [BTreeMap<String, Vec<u8>>; 2] = [BTreeMap::new(), BTreeMap::new()];
    for (k, ks) in ks.iter().enumerate() {
        for kv in ks.iter() {
            let (key, value) = kv.unwrap_or_else(|e| panic!("cycle {cycle}: scan failed: {e}"));
            let key = String::from_utf8(key.to_vec()).unwrap();
            all[k].insert(key, value.to_vec());
        }
        let backward: Vec<String> = ks
            .iter()
            .rev()
            .map(|kv| String::from_utf8(kv.unwrap().0.to_vec()).unwrap())
            .collect();
        assert!(
            backward.iter().rev().eq(all[k].keys()),
            "cycle {cycle}: keyspace {k} scans differently backward"
        );
    }
    // Batches found, by thread.
    let mut found: BTreeMap<u64, u64> = BTreeMap::new();
    for (k, map) in all.iter().enumerate() {
        for (key, value) in map.iter().filter(|(key, _)| key.starts_with("batch/")) {
            let mut parts = key.split('/').skip(1);
            let n: u64 = parts.next().unwrap().parse().unwrap();
            let i: u64 = parts.next().unwrap().parse().unwrap();
            let text = String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned();
            let thread: u64 = parse_field(&text, "t")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("cycle {cycle}: {key} holds a foreign value"));
            assert_eq!(
                value,
                &batch_value(n, i, k, thread),
                "cycle {cycle}: wrong value for {key} in keyspace {k}"
            );
            if let Some(t) = found.insert(n, thread) {
                assert_eq!(t, thread, "cycle {cycle}: batch {n} written by two threads");
            }
        }
    }
    for (&n, &thread) in &found {
        assert!(
            ledger.begun.contains(&n),
            "cycle {cycle}: batch {n} was never begun but is in the database"
        );
        for (k, map) in all.iter().enumerate() {
            for i in 0..KEYS_PER_BATCH {
                let key = batch_key(n, i);
                assert_eq!(
                    map.get(&key),
                    Some(&batch_value(n, i, k, thread)),
                    "cycle {cycle}: batch {n} is torn: {key} is missing or wrong in keyspace {k}"
                );
                // A point read agrees with the scan: for the batches of the last
                // child, and a sample of older ones (all of them would make long runs
                // quadratic).
                if n >= ledger.cycle_start || mix(n ^ cycle).is_multiple_of(16) {
                    let got = ks[k].get(&key).unwrap();
                    assert_eq!(
                        got.as_deref(),
                        map.get(&key).map(Vec::as_slice),
                        "cycle {cycle}: get({key}) in keyspace {k} disagrees with the scan"
                    );
                }
            }
        }
    }
    for &n in &ledger.acked {
        assert!(
            found.contains_key(&n),
            "cycle {cycle}: acknowledged batch {n} was lost"
        );
    }
    // Per thread, the recovered batches are a prefix of what it wrote: the slots and
    // the tmp key agree with the newest recovered batch of the thread.
    for t in 0..THREADS {
        let mine: Vec<u64> = found
            .iter()
            .filter(|(_, &th)| th == t)
            .map(|(&n, _)| n)
            .collect();
        for slot in 0..SLOTS {
            let want = mine.iter().rev().find(|&&n| n % SLOTS == slot);
            for (k, map) in all.iter().enumerate() {
                let got = map.get(&slot_key(t, slot));
                assert_eq!(
                    got.map(|v| String::from_utf8_lossy(v).into_owned()),
                    want.map(|n| n.to_string()),
                    "cycle {cycle}: {} in keyspace {k} disagrees with the newest recovered \
                     batch of thread {t}",
                    slot_key(t, slot)
                );
            }
        }
        let tmp: Vec<&String> = all[0]
            .keys()
            .filter(|key| key.starts_with(&tmp_prefix(t)))
            .collect();
        let want: Vec<String> = mine.last().map(|&n| tmp_key(t, n)).into_iter().collect();
        assert!(
            tmp.iter()
                .map(|s| s.as_str())
                .eq(want.iter().map(String::as_str)),
            "cycle {cycle}: tmp keys of thread {t} are {tmp:?}, expected {want:?}"
        );
    }
    let known = |key: &String| {
        key.starts_with("batch/") || key.starts_with("slot/") || key.starts_with("tmp/")
    };
    for (k, map) in all.iter().enumerate() {
        if let Some(key) = map.keys().find(|key| !known(key)) {
            panic!("cycle {cycle}: keyspace {k} holds a key nobody wrote: {key:?}");
        }
    }
    let tables: Vec<usize> = db
        .stats()
        .keyspaces
        .iter()
        .map(|k| k.levels.iter().map(|l| l.tables).sum())
        .collect();
    db.close().unwrap();
    (found.len(), tables)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn kill_child_repeatedly_and_check_recovery() {
    let cycles = env_u64("STRATA_KILL_CYCLES", 25);
    let seed = env_u64("STRATA_KILL_SEED", 0x6b11_1ed5);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    let mut ledger = Ledger {
        next_start: 1,
        ..Ledger::default()
    };
    let mut recovered = 0;
    let mut tables = Vec::new();
    for cycle in 0..cycles {
        // Mostly a few dozen acknowledgements, sometimes very few, sometimes a short
        // delay after the start whatever was acknowledged (a kill during recovery).
        let h = mix(seed ^ cycle);
        let kill_at = match h % 8 {
            0 => KillAt::Millis(h % 60),
            1 => KillAt::Acks(1 + h % 4),
            _ => KillAt::Acks(8 + h % 400),
        };
        run_child(&dir, &mut ledger, kill_at, seed ^ cycle, cycle);
        (recovered, tables) = check(&dir, &ledger, cycle);
    }
    println!(
        "{cycles} kills: {} batches begun, {} acknowledged, {recovered} in the database, \
         tables per keyspace at the end: {tables:?}",
        ledger.begun.len(),
        ledger.acked.len()
    );
    assert!(ledger.acked.len() as u64 >= cycles);
    assert!(recovered >= ledger.acked.len());
}
