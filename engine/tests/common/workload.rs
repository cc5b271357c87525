//! The fixed workload of the fault-injection tests and the oracle that judges what
//! a damaged run may read: two keyspaces, `state` (`Sync`) and `events` (`Buffered`),
//! puts, batches across both, gets, scans, flushes, compactions, value-log
//! collections, WAL syncs and (optionally) checkpoints.

use std::collections::BTreeMap;

use strata::{Db, Durability, Error, KeyspaceOptions, Options, WriteBatch};

/// Database options: small WAL segments and manifest, one background thread.
pub fn db_options() -> Options {
    Options {
        wal_segment_bytes: 4096,
        max_wal_bytes: 16384,
        manifest_rollover_bytes: 4096,
        background_threads: 1,
        ..Options::default()
    }
}

/// Options of both keyspaces: small trees that flush, compact and separate values.
pub fn ks_options(durability: Durability) -> KeyspaceOptions {
    strata::fuzzing::small_tree_options(durability, 48)
}

pub fn key(i: u64) -> Vec<u8> {
    format!("k{:02}", i % 24).into_bytes()
}

pub fn value(op: u64) -> Vec<u8> {
    let mut v = format!("v{op}-").into_bytes();
    v.resize(8 + (op as usize * 37) % 120, b'a' + (op % 26) as u8);
    v
}

/// Per key, every value written to it (acknowledged or not), by op.
type Written = BTreeMap<Vec<u8>, BTreeMap<u64, Vec<u8>>>;

/// What the run did to each key: every value written to it, and the op of its last
/// write acknowledged as durable.
#[derive(Default)]
pub struct Oracle {
    /// keyspace index → key → values ever written (acknowledged or not), by op.
    pub written: [Written; 2],
    /// keyspace index → key → op of the last write acknowledged as durable: `Sync`
    /// puts to `state`, and both halves of a batch (it touches `state`, so it is
    /// `Sync`); `Buffered` puts to `events` are not recorded here.
    pub durable: [BTreeMap<Vec<u8>, u64>; 2],
}

impl Oracle {
    pub fn attempt(&mut self, ks: usize, k: &[u8], op: u64, v: &[u8]) {
        self.written[ks]
            .entry(k.to_vec())
            .or_default()
            .insert(op, v.to_vec());
    }

    /// Checks a value read for `k` in keyspace `ks`: a value written to it, and for a
    /// key with a durable write, that write's value or a later one (never an older
    /// one, never nothing).
    pub fn check(&self, ks: usize, k: &[u8], got: Option<&[u8]>, context: &str) {
        let durable = self.durable[ks].get(k);
        match got {
            None => assert!(
                durable.is_none(),
                "{context}: key {k:?} of keyspace {ks}, durable since op {durable:?}, is missing"
            ),
            Some(v) => {
                let op = self.written[ks]
                    .get(k)
                    .and_then(|w| w.iter().find(|(_, x)| x.as_slice() == v))
                    .map(|(op, _)| *op);
                let Some(op) = op else {
                    panic!("{context}: key {k:?} reads a value never written: {v:?}");
                };
                if let Some(&durable) = durable {
                    assert!(
                        op >= durable,
                        "{context}: key {k:?} of keyspace {ks} reads the value of op {op}, older than its durable op {durable}"
                    );
                }
            }
        }
    }
}

/// The fixed workload; returns how many operations failed. Stops early, after the
/// operation during which `stop()` became true.
pub fn workload(db: &Db, oracle: &mut Oracle, stop: &dyn Fn() -> bool) -> u64 {
    let (Ok(state), Ok(events)) = (
        db.keyspace_or_create("state", ks_options(Durability::Sync)),
        db.keyspace_or_create("events", ks_options(Durability::Buffered)),
    ) else {
        return 1;
    };
    let keyspaces = [&state, &events];
    let mut failures = 0;
    for op in 0..160u64 {
        let k = key(op * 7 + op / 24);
        let v = value(op);
        let outcome: Result<(), Error> = match op % 16 {
            0..=5 => {
                let ks = (op % 2) as usize;
                oracle.attempt(ks, &k, op, &v);
                let r = keyspaces[ks].put(&k, &v);
                if r.is_ok() && ks == 0 {
                    oracle.durable[0].insert(k.clone(), op);
                }
                r
            }
            6 | 7 => {
                // A batch across both keyspaces (Sync: it touches `state`).
                let mut b = WriteBatch::new();
                b.put(&state, &k, &v);
                b.put(&events, &k, &v);
                oracle.attempt(0, &k, op, &v);
                oracle.attempt(1, &k, op, &v);
                let r = db.write(b);
                if r.is_ok() {
                    oracle.durable[0].insert(k.clone(), op);
                    oracle.durable[1].insert(k.clone(), op);
                }
                r
            }
            8..=10 => {
                let ks = (op % 2) as usize;
                match keyspaces[ks].get(&k) {
                    Ok(got) => {
                        oracle.check(ks, &k, got.as_deref(), &format!("op {op} get"));
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            11 => keyspaces[(op % 2) as usize].iter().try_for_each(|kv| {
                let (k, v) = kv?;
                oracle.check((op % 2) as usize, &k, Some(&v), &format!("op {op} scan"));
                Ok(())
            }),
            12 => keyspaces[(op % 2) as usize].flush(),
            13 => keyspaces[(op % 2) as usize].compact(),
            14 => db.gc_value_log(keyspaces[(op % 2) as usize]).map(|_| ()),
            _ => db.sync_wal(),
        };
        if outcome.is_err() {
            failures += 1;
        }
        if stop() {
            break;
        }
    }
    failures
}
