//! Process kills with a WAL-bypass keyspace and a `Sync` keyspace written together.
//!
//! The parent re-runs this test binary as a child (`--exact bypass_child --ignored`;
//! the child test is `#[ignore]` and does nothing without `STRATA_BYPASS_CHILD_DIR`)
//! and kills it with SIGKILL after a seeded random number of acknowledgements, or a
//! few milliseconds after its start (during recovery). In the child:
//! - one thread puts `s/{n}` into the `state` keyspace (`Sync`), printing `@@sack n`
//!   after each acknowledgement (`@@sbegin n` before);
//! - two threads append events to the `events` keyspace (`Bypass`, small memtables, a
//!   20 ms `bypass_flush_interval` and a 64 KiB `bypass_max_unflushed_bytes`, so
//!   automatic flushes run all the time): thread `t` writes batches of one to three
//!   consecutive keys `e/{t}/{i}`, printing `@@ebegin t first last` before and
//!   `@@eack t last` after; every few hundred events it calls `Keyspace::flush` and
//!   prints `@@flushed t i` once it returned, `i` being its last acknowledged event.
//!
//! After each kill the parent reopens the database and checks:
//! - every acknowledged `Sync` write is present with its value, nothing never begun;
//! - per event thread, the keys present are exactly `e/{t}/0 ..= e/{t}/m`: a prefix
//!   of its writes (no hole, nothing reordered), ending at the end of a batch (never
//!   torn), at or after the last flush that returned, and not past what was begun;
//! - every value is the one written; nothing is at risk right after open.
//!
//! The next child numbers each event thread on from `m + 1`, so the keyspace stays
//! one prefix across cycles. `STRATA_BYPASS_KILL_CYCLES` sets the number of kills
//! (default 12), `STRATA_BYPASS_KILL_SEED` the seed. No timing assertions.

mod common;

use common::{emit, mix, KillAt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use strata::{Db, Durability, Keyspace, KeyspaceOptions, Options, WriteBatch};

const ENV_DIR: &str = "STRATA_BYPASS_CHILD_DIR";
const ENV_STATE_START: &str = "STRATA_BYPASS_STATE_START";
const ENV_EVENT_STARTS: &str = "STRATA_BYPASS_EVENT_STARTS";
const ENV_SEED: &str = "STRATA_BYPASS_CHILD_SEED";
const EVENT_THREADS: u64 = 2;

fn small_tree(durability: Durability) -> KeyspaceOptions {
    KeyspaceOptions {
        durability,
        // Larger than the bypass byte bound, so that bound seals memtables too.
        memtable_bytes: 256 << 10,
        block_size: 1024,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 8,
        l0_stop_trigger: 12,
        base_level_bytes: 64 << 10,
        level_size_ratio: 4,
        target_table_bytes: 32 << 10,
        bypass_flush_interval: Some(Duration::from_millis(20)),
        bypass_max_unflushed_bytes: Some(64 << 10),
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

fn open_keyspaces(db: &Db) -> (Keyspace, Keyspace) {
    (
        db.keyspace_or_create("state", small_tree(Durability::Sync))
            .unwrap(),
        db.keyspace_or_create("events", small_tree(Durability::Bypass))
            .unwrap(),
    )
}

fn state_key(n: u64) -> String {
    format!("s/{n:010}")
}

fn event_key(t: u64, i: u64) -> String {
    format!("e/{t}/{i:010}")
}

/// A self-describing value of 20 to 400 bytes.
fn value(tag: &str, n: u64) -> Vec<u8> {
    let mut v = format!("{tag}:{n};").into_bytes();
    let h = mix(n ^ tag.len() as u64);
    v.resize(20 + (h % 380) as usize, b'a' + (h % 26) as u8);
    v
}

/// The child: writes until killed. Does nothing unless started by the parent.
#[test]
#[ignore = "run only as the child process of bypass_and_sync_keyspaces_survive_kills"]
fn bypass_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let state_start: u64 = std::env::var(ENV_STATE_START).unwrap().parse().unwrap();
    let event_starts: Vec<u64> = std::env::var(ENV_EVENT_STARTS)
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    // A panicking writer must not hide behind the others, which would go on
    // acknowledging until the kill: report it and end the process.
    std::panic::set_hook(Box::new(|info| {
        emit(&format!("panic {}", info.to_string().replace('\n', " ")));
        std::process::exit(101);
    }));
    let db = Db::open(&dir, db_options()).unwrap();
    let (state, events) = open_keyspaces(&db);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in state_start.. {
                emit(&format!("sbegin {n}"));
                state.put(state_key(n), value("s", n)).unwrap();
                emit(&format!("sack {n}"));
            }
        });
        for t in 0..EVENT_THREADS {
            let events = events.clone();
            let db = db.clone();
            let start = event_starts[t as usize];
            scope.spawn(move || {
                let mut i = start;
                loop {
                    let h = mix(seed ^ (t << 40) ^ i);
                    let len = 1 + h % 3;
                    let mut batch = WriteBatch::new();
                    for j in i..i + len {
                        batch.put(&events, event_key(t, j), value(&format!("e{t}"), j));
                    }
                    let last = i + len - 1;
                    emit(&format!("ebegin {t} {i} {last}"));
                    db.write(batch).unwrap();
                    emit(&format!("eack {t} {last}"));
                    i = last + 1;
                    if h % 400 < 2 {
                        events.flush().unwrap();
                        emit(&format!("flushed {t} {last}"));
                    }
                }
            });
        }
    });
}

/// What the parent knows.
#[derive(Default)]
struct Ledger {
    state_begun_max: Option<u64>,
    state_acked: BTreeSet<u64>,
    /// Per event thread: the next index to write.
    event_next: Vec<u64>,
    /// Per event thread: the last index of every batch begun (this and earlier cycles).
    batch_ends: Vec<BTreeSet<u64>>,
    /// Per event thread: the highest index begun.
    event_begun_max: Vec<Option<u64>>,
    /// Per event thread: the highest index covered by a flush that returned.
    flushed: Vec<Option<u64>>,
    /// Lines read so far (the child prints through one locked stdout, so line order
    /// is real-time order of the prints).
    lines: u64,
    /// This cycle's event batches: thread, last index, line of its begin, line of its
    /// acknowledgement.
    cycle_batches: Vec<(usize, u64, u64, Option<u64>)>,
}

impl Ledger {
    fn new() -> Self {
        let n = EVENT_THREADS as usize;
        Ledger {
            event_next: vec![0; n],
            batch_ends: vec![BTreeSet::new(); n],
            event_begun_max: vec![None; n],
            flushed: vec![None; n],
            ..Ledger::default()
        }
    }

    /// Records one line; returns whether it was an acknowledgement.
    fn record(&mut self, line: &str) -> bool {
        let Some(at) = line.find("@@") else {
            return false;
        };
        self.lines += 1;
        let pos = self.lines;
        assert!(
            !line[at + 2..].starts_with("panic"),
            "the child panicked: {line}"
        );
        let parts: Vec<u64> = line[at + 2..]
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse().unwrap())
            .collect();
        match line[at + 2..].split_whitespace().next() {
            Some("sbegin") => {
                self.state_begun_max = self.state_begun_max.max(Some(parts[0]));
                false
            }
            Some("sack") => {
                self.state_acked.insert(parts[0]);
                true
            }
            Some("ebegin") => {
                let t = parts[0] as usize;
                self.batch_ends[t].insert(parts[2]);
                self.event_begun_max[t] = self.event_begun_max[t].max(Some(parts[2]));
                self.cycle_batches.push((t, parts[2], pos, None));
                false
            }
            Some("eack") => {
                let (t, last) = (parts[0] as usize, parts[1]);
                if let Some(b) = self
                    .cycle_batches
                    .iter_mut()
                    .rev()
                    .find(|b| b.0 == t && b.1 == last)
                {
                    b.3 = Some(pos);
                }
                true
            }
            Some("flushed") => {
                let t = parts[0] as usize;
                self.flushed[t] = self.flushed[t].max(Some(parts[1]));
                false
            }
            _ => false,
        }
    }
}

fn run_child(dir: &Path, ledger: &mut Ledger, kill_at: KillAt, seed: u64) {
    let state_start = ledger.state_begun_max.map_or(0, |n| n + 1);
    let starts: Vec<String> = ledger.event_next.iter().map(u64::to_string).collect();
    let mut child = common::spawn_child(
        "bypass_child",
        &[
            (ENV_DIR, dir.display().to_string()),
            (ENV_STATE_START, state_start.to_string()),
            (ENV_EVENT_STARTS, starts.join(",")),
            (ENV_SEED, seed.to_string()),
        ],
        Stdio::null(),
    );
    let (killed, _) = common::run_until_kill(&mut child, kill_at, |line| ledger.record(line));
    let status = child.wait().unwrap();
    assert!(
        killed && status.code() != Some(101),
        "the child ended on its own: {status}"
    );
}

fn check(dir: &Path, ledger: &mut Ledger, cycle: u64) {
    let db = Db::open(dir, db_options())
        .unwrap_or_else(|e| panic!("cycle {cycle}: reopening after a kill failed: {e}"));
    let (state, events) = open_keyspaces(&db);
    assert_eq!(db.stats().bypass_bytes_at_risk(), 0, "cycle {cycle}");
    // Every acknowledged Sync write, with its value; nothing never begun.
    for &n in &ledger.state_acked {
        assert_eq!(
            state.get(state_key(n)).unwrap().as_deref(),
            Some(&value("s", n)[..]),
            "cycle {cycle}: acknowledged Sync write {n} lost"
        );
    }
    let state_keys = state.iter().count() as u64;
    assert!(
        state_keys <= ledger.state_begun_max.map_or(0, |n| n + 1),
        "cycle {cycle}: {state_keys} state keys, more than were begun"
    );
    let mut survived_count = vec![0u64; EVENT_THREADS as usize];
    for t in 0..EVENT_THREADS {
        let ti = t as usize;
        let found: BTreeMap<u64, Vec<u8>> = events
            .prefix(format!("e/{t}/"))
            .map(|kv| {
                let (k, v) = kv.unwrap();
                let k = std::str::from_utf8(&k).unwrap();
                (k.rsplit('/').next().unwrap().parse().unwrap(), v.to_vec())
            })
            .collect();
        // A prefix: exactly 0..=m.
        let count = found.len() as u64;
        if let Some((&last, _)) = found.last_key_value() {
            assert_eq!(
                last + 1,
                count,
                "cycle {cycle}: events of thread {t} have a hole (last {last}, {count} keys)"
            );
            assert!(
                ledger.batch_ends[ti].contains(&last),
                "cycle {cycle}: thread {t}'s events end inside a batch, at {last}"
            );
            assert!(
                ledger.event_begun_max[ti].is_some_and(|b| last <= b),
                "cycle {cycle}: thread {t} has event {last}, never begun"
            );
        }
        if let Some(f) = ledger.flushed[ti] {
            assert!(
                count > f,
                "cycle {cycle}: thread {t} flushed through {f} but only {count} events survived"
            );
        }
        for (i, v) in &found {
            assert_eq!(
                v,
                &value(&format!("e{t}"), *i),
                "cycle {cycle}: event {t}/{i}"
            );
        }
        // Newest first by prefix, as an agent reads its recent events.
        let newest: Vec<u64> = events
            .prefix(format!("e/{t}/"))
            .rev()
            .take(3)
            .map(|kv| {
                let (k, _) = kv.unwrap();
                std::str::from_utf8(&k)
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let want: Vec<u64> = found.keys().rev().take(3).copied().collect();
        assert_eq!(newest, want, "cycle {cycle}: reverse prefix scan");
        eprintln!(
            "cycle {cycle}: thread {t}: {count} events survived, flushed through {:?}, begun through {:?}",
            ledger.flushed[ti], ledger.event_begun_max[ti]
        );
        survived_count[ti] = count;
        // The next child goes on from the prefix; what was lost is written again.
        ledger.event_next[ti] = count;
        ledger.batch_ends[ti].retain(|&e| e < count);
        ledger.event_begun_max[ti] = count.checked_sub(1);
        ledger.flushed[ti] = count.checked_sub(1);
    }
    // Across threads too the survivors are a prefix of the keyspace's writes: no batch
    // survived that began after a lost batch had been acknowledged (that one's
    // sequence numbers were then below the survivor's).
    let lost_ack = ledger
        .cycle_batches
        .iter()
        .filter(|b| b.1 >= survived_count[b.0])
        .filter_map(|b| b.3)
        .min();
    if let Some(lost_ack) = lost_ack {
        for b in ledger
            .cycle_batches
            .iter()
            .filter(|b| b.1 < survived_count[b.0])
        {
            assert!(
                b.2 < lost_ack,
                "cycle {cycle}: thread {}'s batch ending at {} survived though it began \
                 after a lost batch was acknowledged",
                b.0,
                b.1
            );
        }
    }
    ledger.cycle_batches.clear();
    db.close().unwrap();
}

#[test]
fn bypass_and_sync_keyspaces_survive_kills() {
    let cycles: u64 = std::env::var("STRATA_BYPASS_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("STRATA_BYPASS_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_b1a5);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut ledger = Ledger::new();
    for cycle in 0..cycles {
        let h = mix(seed ^ cycle);
        if h.is_multiple_of(5) {
            run_child(&dir, &mut ledger, KillAt::Millis(5 + h % 40), h);
        } else {
            run_child(&dir, &mut ledger, KillAt::Acks(200 + h % 3000), h);
        }
        check(&dir, &mut ledger, cycle);
    }
}
