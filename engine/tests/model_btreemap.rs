//! Model test: random operations against the engine on `FaultFs` and against a
//! `BTreeMap` model that knows what each durability level promises.
//!
//! Operations: put, delete, delete_prefix, batches across keyspaces (Sync or
//! Buffered), batches to a WAL-bypass keyspace, batches mixing the two (which must be
//! refused), gets, forward and reverse iteration, snapshot reads, flushes, full
//! compactions, waiting for background flushes and compactions, clean reopen and
//! simulated power loss (dropped, torn or garbage unsynced tails). After a power loss
//! the two logged keyspaces must equal the model after some prefix of the writes that
//! contains every write acknowledged as durable (`Sync` writes, and everything before
//! a flush or an explicit WAL sync), and the bypass keyspace must equal, exactly, its
//! model at its last completed flush (it is flushed only by the test's own flushes
//! and by clean closes here, so the model knows when that was).
//!
//! Every keyspace separates values (at 200, 350 and 500 bytes; values run to 700), so
//! some values live in the value log and some in the tables, with eager garbage
//! collection settings and explicit `gc_value_log` calls among the operations.
//!
//! The test runs once per compaction policy (leveled, tiered, HCA), with level sizes
//! small enough that every policy builds several levels and runs, and with manual
//! range compactions among the operations.
//!
//! `STRATA_MODEL_CASES` sets the number of cases per policy (default 200).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use strata::{
    CompactionStyle, Db, Durability, FaultFs, Fs, Keyspace, KeyspaceOptions, Options, WriteBatch,
    WriteOptions,
};
use strata_wal::CrashMode;

const KEYSPACES: [&str; 3] = ["state", "logs", "events"];
/// The WAL-bypass keyspace.
const BYPASS: usize = 2;
/// The keyspaces whose writes are logged.
const LOGGED: std::ops::Range<usize> = 0..2;
type State = [BTreeMap<Vec<u8>, Vec<u8>>; 3];

#[derive(Debug, Clone)]
enum Write {
    Put(usize, u8, u16),
    Delete(usize, u8),
    DeletePrefix(usize, u8),
}

#[derive(Debug, Clone)]
enum Op {
    Batch(Vec<Write>, bool),
    /// A batch to the bypass keyspace only.
    BypassBatch(Vec<Write>),
    /// Writes to the bypass keyspace and a logged one in one batch: refused.
    MixedBatch(Write, Write, bool),
    Get(usize, u8),
    Scan(usize, bool),
    ScanPrefix(usize, u8, bool),
    TakeSnapshot,
    ReadSnapshot(usize, usize),
    Flush(usize),
    Compact(usize),
    CompactRange(usize, u8, u8),
    GcValueLog(usize),
    SyncWal,
    Settle,
    Reopen,
    Crash(u8),
}

fn key(k: u8) -> Vec<u8> {
    format!("k{:03}", k % 120).into_bytes()
}

fn value(k: u8, salt: u16) -> Vec<u8> {
    let len = usize::from(salt % 700);
    let mut v = format!("v{k}-{salt}-").into_bytes();
    v.resize(len.max(v.len()), b'a' + (salt % 26) as u8);
    v
}

fn write_strategy(keyspaces: std::ops::Range<usize>) -> impl Strategy<Value = Write> {
    prop_oneof![
        6 => (keyspaces.clone(), any::<u8>(), any::<u16>()).prop_map(|(s, k, v)| Write::Put(s, k, v)),
        2 => (keyspaces.clone(), any::<u8>()).prop_map(|(s, k)| Write::Delete(s, k)),
        1 => (keyspaces, any::<u8>()).prop_map(|(s, k)| Write::DeletePrefix(s, k)),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (proptest::collection::vec(write_strategy(LOGGED), 1..4), any::<bool>()).prop_map(|(w, s)| Op::Batch(w, s)),
        6 => proptest::collection::vec(write_strategy(BYPASS..BYPASS + 1), 1..4).prop_map(Op::BypassBatch),
        1 => (write_strategy(BYPASS..BYPASS + 1), write_strategy(LOGGED), any::<bool>()).prop_map(|(a, b, s)| Op::MixedBatch(a, b, s)),
        3 => (0..3usize, any::<u8>()).prop_map(|(s, k)| Op::Get(s, k)),
        2 => (0..3usize, any::<bool>()).prop_map(|(s, r)| Op::Scan(s, r)),
        1 => (0..3usize, any::<u8>(), any::<bool>()).prop_map(|(s, p, r)| Op::ScanPrefix(s, p, r)),
        1 => Just(Op::TakeSnapshot),
        2 => (any::<usize>(), 0..3usize).prop_map(|(i, s)| Op::ReadSnapshot(i, s)),
        3 => (0..3usize).prop_map(Op::Flush),
        1 => prop_oneof![Just(0usize), Just(BYPASS)].prop_map(Op::Compact),
        1 => (0..3usize, any::<u8>(), any::<u8>()).prop_map(|(s, a, b)| Op::CompactRange(s, a, b)),
        1 => (0..3usize).prop_map(Op::GcValueLog),
        1 => Just(Op::SyncWal),
        2 => Just(Op::Settle),
        1 => Just(Op::Reopen),
        1 => any::<u8>().prop_map(Op::Crash),
    ]
}

fn prefix_of(k: u8) -> Vec<u8> {
    // "k00" to "k11": each covers ten keys.
    format!("k{:02}", k % 12).into_bytes()
}

fn apply(state: &mut State, w: &Write) {
    match w {
        Write::Put(s, k, v) => {
            state[*s].insert(key(*k), value(*k, *v));
        }
        Write::Delete(s, k) => {
            state[*s].remove(&key(*k));
        }
        Write::DeletePrefix(s, k) => {
            let p = prefix_of(*k);
            state[*s].retain(|key, _| !key.starts_with(&p));
        }
    }
}

fn add_to_batch(batch: &mut WriteBatch, keyspaces: &[Keyspace], w: &Write) {
    match w {
        Write::Put(s, k, v) => batch.put(&keyspaces[*s], key(*k), value(*k, *v)),
        Write::Delete(s, k) => batch.delete(&keyspaces[*s], key(*k)),
        Write::DeletePrefix(s, k) => batch.delete_prefix(&keyspaces[*s], prefix_of(*k)),
    }
}

fn ks_options(compaction: CompactionStyle) -> KeyspaceOptions {
    KeyspaceOptions {
        compaction,
        level_size_ratio: 3,
        memtable_bytes: 4096,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 8,
        l0_stop_trigger: 12,
        base_level_bytes: 8192,
        target_table_bytes: 4096,
        block_size: 512,
        ..KeyspaceOptions::default()
    }
}

struct Harness {
    style: CompactionStyle,
    fault: FaultFs,
    fs: Arc<dyn Fs>,
    db: Option<Db>,
    keyspaces: Vec<Keyspace>,
}

impl Harness {
    fn open(&mut self) {
        let options = Options {
            wal_segment_bytes: 8192,
            max_wal_bytes: 32768,
            // Small, so manifest rollovers happen between the crashes too.
            manifest_rollover_bytes: 4096,
            ..Options::default()
        };
        let db = Db::open_with_fs("/model", options, Arc::clone(&self.fs)).expect("open");
        self.keyspaces = KEYSPACES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut o = ks_options(self.style);
                o.value_threshold = Some([200, 350, 500][i]);
                o.vlog_gc_garbage_ratio = 0.3;
                o.max_space_amplification = 1.2;
                o.durability = match i {
                    0 => Durability::Sync,
                    BYPASS => {
                        // Flushed only when the test says so: no memtable fills, no
                        // interval or byte bound seals one.
                        o.memtable_bytes = 64 << 20;
                        o.bypass_flush_interval = None;
                        o.bypass_max_unflushed_bytes = None;
                        Durability::Bypass
                    }
                    _ => Durability::Buffered,
                };
                db.keyspace_or_create(name, o).expect("keyspace")
            })
            .collect();
        self.db = Some(db);
    }

    fn close(&mut self) {
        self.keyspaces.clear();
        if let Some(db) = self.db.take() {
            db.close().expect("close");
        }
    }

    fn dump(&self, s: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.keyspaces[s]
            .iter()
            .map(|kv| {
                let (k, v) = kv.expect("scan");
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }
}

fn run(style: CompactionStyle, ops: Vec<Op>, seed: u64) -> std::result::Result<(), TestCaseError> {
    let fault = FaultFs::new(seed);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let mut h = Harness {
        style,
        fault,
        fs,
        db: None,
        keyspaces: Vec::new(),
    };
    h.open();
    // states[i] = the model after the first i writes of the current history.
    let mut states: Vec<State> = vec![Default::default()];
    // Writes up to here are promised durable.
    let mut durable = 0usize;
    // The bypass keyspace as of its last completed flush: all a crash leaves of it.
    let mut bypass_flushed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut snapshots: Vec<(strata::Snapshot, usize)> = Vec::new();
    for op in ops {
        let current = states.len() - 1;
        match op {
            Op::Batch(writes, sync) => {
                let db = h.db.as_ref().expect("db");
                let mut batch = WriteBatch::new();
                for w in &writes {
                    add_to_batch(&mut batch, &h.keyspaces, w);
                }
                let opts = WriteOptions {
                    durability: sync.then_some(Durability::Sync),
                };
                // The state keyspace defaults to Sync: a batch touching it is Sync.
                let is_sync = sync
                    || writes.iter().any(|w| {
                        matches!(
                            w,
                            Write::Put(0, ..) | Write::Delete(0, _) | Write::DeletePrefix(0, _)
                        )
                    });
                db.write_opt(batch, &opts).expect("write");
                let mut next = states[current].clone();
                for w in &writes {
                    apply(&mut next, w);
                }
                states.push(next);
                if is_sync {
                    durable = states.len() - 1;
                }
            }
            Op::BypassBatch(writes) => {
                let db = h.db.as_ref().expect("db");
                let mut batch = WriteBatch::new();
                for w in &writes {
                    add_to_batch(&mut batch, &h.keyspaces, w);
                }
                db.write(batch).expect("bypass write");
                let mut next = states[current].clone();
                for w in &writes {
                    apply(&mut next, w);
                }
                states.push(next);
            }
            Op::MixedBatch(a, b, sync) => {
                let db = h.db.as_ref().expect("db");
                let mut batch = WriteBatch::new();
                add_to_batch(&mut batch, &h.keyspaces, &a);
                add_to_batch(&mut batch, &h.keyspaces, &b);
                let opts = WriteOptions {
                    durability: sync.then_some(Durability::Sync),
                };
                let got = db.write_opt(batch, &opts);
                prop_assert!(
                    matches!(got, Err(strata::Error::InvalidArgument(_))),
                    "a batch mixing a bypass and a logged keyspace was not refused: {got:?}"
                );
            }
            Op::Get(s, k) => {
                let got = h.keyspaces[s].get(key(k)).expect("get").map(|b| b.to_vec());
                prop_assert_eq!(got, states[current][s].get(&key(k)).cloned());
            }
            Op::Scan(s, reverse) => {
                let got: Vec<(Vec<u8>, Vec<u8>)> = if reverse {
                    h.keyspaces[s]
                        .iter()
                        .rev()
                        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan"))
                        .collect()
                } else {
                    h.keyspaces[s]
                        .iter()
                        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan"))
                        .collect()
                };
                let mut want: Vec<(Vec<u8>, Vec<u8>)> =
                    states[current][s].clone().into_iter().collect();
                if reverse {
                    want.reverse();
                }
                prop_assert_eq!(got, want);
            }
            Op::ScanPrefix(s, p, reverse) => {
                let p = prefix_of(p);
                let mut got: Vec<Vec<u8>> = h.keyspaces[s]
                    .prefix(&p)
                    .map(|kv| kv.expect("scan").0.to_vec())
                    .collect();
                if reverse {
                    let back: Vec<Vec<u8>> = h.keyspaces[s]
                        .prefix(&p)
                        .rev()
                        .map(|kv| kv.expect("scan").0.to_vec())
                        .collect();
                    got = back.into_iter().rev().collect();
                }
                let want: Vec<Vec<u8>> = states[current][s]
                    .keys()
                    .filter(|k| k.starts_with(&p))
                    .cloned()
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::TakeSnapshot => {
                snapshots.push((h.db.as_ref().expect("db").snapshot(), current));
            }
            Op::ReadSnapshot(i, s) => {
                if !snapshots.is_empty() {
                    let (snap, at) = &snapshots[i % snapshots.len()];
                    let got: BTreeMap<Vec<u8>, Vec<u8>> = snap
                        .iter(&h.keyspaces[s])
                        .map(|kv| {
                            kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                                .expect("snapshot scan")
                        })
                        .collect();
                    prop_assert_eq!(&got, &states[*at][s]);
                }
            }
            Op::Flush(s) => {
                h.keyspaces[s].flush().expect("flush");
                durable = current;
                if s == BYPASS {
                    bypass_flushed = states[current][BYPASS].clone();
                }
            }
            Op::Compact(s) => {
                h.keyspaces[s].compact().expect("compact");
                durable = current;
                if s == BYPASS {
                    bypass_flushed = states[current][BYPASS].clone();
                }
            }
            Op::CompactRange(s, a, b) => {
                let (a, b) = (key(a), key(b));
                let (a, b) = (a.clone().min(b.clone()), a.max(b));
                h.keyspaces[s]
                    .compact_range(Some(&a), Some(&b))
                    .expect("compact_range");
                durable = current;
                if s == BYPASS {
                    bypass_flushed = states[current][BYPASS].clone();
                }
            }
            Op::GcValueLog(s) => {
                // Collection may compact the whole tree first, which flushes nothing:
                // what is durable does not change.
                h.db.as_ref()
                    .expect("db")
                    .gc_value_log(&h.keyspaces[s])
                    .expect("gc_value_log");
            }
            Op::Settle => {
                h.db.as_ref()
                    .expect("db")
                    .wait_for_background_work()
                    .expect("settle");
            }
            Op::SyncWal => {
                h.db.as_ref().expect("db").sync_wal().expect("sync");
                durable = current;
            }
            Op::Reopen => {
                snapshots.clear();
                h.close();
                h.open();
                durable = current;
                // A clean close flushes bypass writes.
                bypass_flushed = states[current][BYPASS].clone();
                for (s, want) in states[current].iter().enumerate() {
                    prop_assert_eq!(&h.dump(s), want, "after reopen");
                }
            }
            Op::Crash(mode) => {
                snapshots.clear();
                let mode = [
                    CrashMode::DropUnsynced,
                    CrashMode::TornTail,
                    CrashMode::GarbageTail,
                ][usize::from(mode % 3)];
                h.fault.power_off(mode);
                h.keyspaces.clear();
                drop(h.db.take());
                h.fault.restart();
                h.open();
                let got = [h.dump(0), h.dump(1), h.dump(BYPASS)];
                prop_assert_eq!(
                    &got[BYPASS],
                    &bypass_flushed,
                    "after a crash the bypass keyspace is not its last flush"
                );
                // Some prefix of the logged writes, at least everything promised
                // durable.
                let k = (durable..states.len())
                    .rev()
                    .find(|&k| states[k][LOGGED] == got[LOGGED]);
                let Some(k) = k else {
                    return Err(TestCaseError::fail(format!(
                        "after a crash the database is no prefix of the writes with at least {durable} of {} writes: {got:?}",
                        states.len() - 1
                    )));
                };
                states.truncate(k + 1);
                states[k][BYPASS] = bypass_flushed.clone();
                durable = k;
            }
        }
    }
    h.close();
    Ok(())
}

fn cases() -> u32 {
    std::env::var("STRATA_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_btreemap_model_leveled(ops in proptest::collection::vec(op_strategy(), 1..250), seed in any::<u64>()) {
        run(CompactionStyle::Leveled, ops, seed)?;
    }

    #[test]
    fn engine_matches_btreemap_model_tiered(ops in proptest::collection::vec(op_strategy(), 1..250), seed in any::<u64>()) {
        run(CompactionStyle::Tiered, ops, seed)?;
    }

    #[test]
    fn engine_matches_btreemap_model_hca(ops in proptest::collection::vec(op_strategy(), 1..250), seed in any::<u64>()) {
        run(CompactionStyle::Hca, ops, seed)?;
    }
}
