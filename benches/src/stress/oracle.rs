//! The parent's oracle: what the children acknowledged, and the checks of a reopened
//! database against it.
//!
//! State is kept per writer thread and bounded, so a check costs the same in cycle 500
//! as in cycle 1: a logged thread owns a fixed set of keys, and its model is the
//! contents of those keys after its last acknowledged operation (each operation can be
//! regenerated from its number, see [`super::workload`]); a bypass thread's live events
//! follow from its newest one. After a kill the reopened database must hold, per
//! logged thread, exactly the model, or the model plus the one operation that was in
//! flight (whole); per bypass thread, exactly the events up to some `m` (no hole,
//! ending at a batch boundary) with `m` at or after its last returned flush and not
//! past what was begun.

use std::collections::{BTreeMap, VecDeque};

use strata::{Db, Error, Keyspace, SeqNo};

use super::workload::{
    alive_events, cursor_key, event_key, event_len, event_thread_prefix, logged_op, thread_prefix,
    value, value_is_valid, value_origin, Action, Op, HISTORY_KS, LOGGED,
};

/// Entries of a scan, in order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Keys of one logged thread, by keyspace index and key, with their values.
pub type ThreadState = BTreeMap<(usize, Vec<u8>), Vec<u8>>;

/// Applies operation `n` of `thread` to `state`.
pub fn apply(state: &mut ThreadState, thread: u64, n: u64, op: &Op) {
    for action in &op.actions {
        match action {
            Action::Put { ks, key, len } => {
                state.insert((*ks, key.clone()), value(thread, n, key, *len));
            }
            Action::Delete { ks, key } => {
                state.remove(&(*ks, key.clone()));
            }
            Action::DeletePrefix { ks, prefix } => {
                state.retain(|(k, key), _| *k != *ks || !key.starts_with(prefix));
            }
        }
    }
}

/// A state of one logged thread's keys in the history keyspace at a sequence number.
#[derive(Debug, Clone)]
struct PastState {
    op: u64,
    seqno: u64,
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// What the oracle knows of one logged writer thread.
#[derive(Debug, Clone, Default)]
pub struct LoggedThread {
    /// Last acknowledged operation (0: none).
    pub acked: u64,
    /// Last begun operation.
    pub begun: u64,
    /// Its keys after `acked`.
    pub state: ThreadState,
    past: VecDeque<PastState>,
}

/// What the oracle knows of one bypass writer thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct BypassThread {
    /// Last event of the last acknowledged batch.
    pub acked: u64,
    /// Last event of the last begun batch.
    pub begun: u64,
    /// Every event up to this one was covered by a flush that returned.
    pub flushed: u64,
}

/// Counters of what the checks covered, for the report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coverage {
    /// Logged operations acknowledged.
    pub logged_ops: u64,
    /// In-flight operations found applied after a kill.
    pub in_flight_applied: u64,
    /// Bypass events acknowledged.
    pub bypass_events: u64,
    /// Acknowledged bypass events lost (allowed: after the last flush).
    pub bypass_events_lost: u64,
    /// Keys compared (scans and point reads).
    pub keys_checked: u64,
    /// Time-travel reads compared.
    pub time_travel_reads: u64,
    /// Time-travel reads refused as outside the history window.
    pub time_travel_outside: u64,
    /// Checkpoints opened and checked.
    pub checkpoints: u64,
    /// Change-stream batches applied to the replica.
    pub replica_batches: u64,
    /// Times the replica was seeded anew from a checkpoint.
    pub replica_reseeds: u64,
    /// Full `verify` runs.
    pub verifies: u64,
}

/// The oracle of one stress run.
#[derive(Debug, Clone)]
pub struct Oracle {
    seed: u64,
    /// One per logged writer thread.
    pub logged: Vec<LoggedThread>,
    /// One per bypass writer thread.
    pub bypass: Vec<BypassThread>,
    /// The newest checkpoint that returned, and its sequence number.
    pub checkpoint: Option<(std::path::PathBuf, u64)>,
    /// What was covered.
    pub coverage: Coverage,
}

/// Past states kept per logged thread for time-travel checks.
const PAST_STATES: usize = 6;

impl Oracle {
    /// An oracle for `logged` and `bypass` writer threads of workload `seed`.
    pub fn new(seed: u64, logged: usize, bypass: usize) -> Self {
        Oracle {
            seed,
            logged: vec![LoggedThread::default(); logged],
            bypass: vec![BypassThread::default(); bypass],
            checkpoint: None,
            coverage: Coverage::default(),
        }
    }

    /// Takes one line the child printed (without the `@@`). Returns whether it was an
    /// acknowledgement, or a protocol error.
    pub fn record(&mut self, line: &str) -> Result<bool, String> {
        let mut parts = line.split(' ');
        let tag = parts.next().unwrap_or("");
        let mut num = |what: &str| -> Result<u64, String> {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("child line {line:?}: no {what}"))
        };
        match tag {
            "b" => {
                let (t, n) = (num("thread")?, num("op")?);
                let thread = self.logged_thread(t)?;
                if n != thread.acked + 1 {
                    return Err(format!(
                        "thread {t} began op {n} after acknowledging {}",
                        thread.acked
                    ));
                }
                thread.begun = n;
                Ok(false)
            }
            "a" => {
                let (t, n) = (num("thread")?, num("op")?);
                let seed = self.seed;
                let thread = self.logged_thread(t)?;
                if n != thread.acked + 1 || thread.begun != n {
                    return Err(format!("thread {t} acknowledged op {n} out of order"));
                }
                apply(&mut thread.state, t, n, &logged_op(seed, t, n));
                thread.acked = n;
                self.coverage.logged_ops += 1;
                Ok(true)
            }
            "tt" => {
                let (t, n, s) = (num("thread")?, num("op")?, num("seqno")?);
                let thread = self.logged_thread(t)?;
                if n == thread.acked {
                    let keys = history_projection(&thread.state);
                    thread.past.push_back(PastState {
                        op: n,
                        seqno: s,
                        keys,
                    });
                    if thread.past.len() > PAST_STATES {
                        thread.past.pop_front();
                    }
                }
                Ok(false)
            }
            "B" => {
                let (t, n) = (num("thread")?, num("event")?);
                self.bypass_thread(t)?.begun = n;
                Ok(false)
            }
            "A" => {
                let (t, n) = (num("thread")?, num("event")?);
                let thread = self.bypass_thread(t)?;
                if n != thread.begun || n <= thread.acked {
                    return Err(format!(
                        "bypass thread {t} acknowledged event {n} out of order"
                    ));
                }
                let new_events = n - thread.acked;
                thread.acked = n;
                self.coverage.bypass_events += new_events;
                Ok(true)
            }
            "F" => {
                let (t, n) = (num("thread")?, num("event")?);
                let thread = self.bypass_thread(t)?;
                thread.flushed = thread.flushed.max(n);
                Ok(false)
            }
            "ck" => {
                let path = parts.next().ok_or("ck line without a path")?;
                let seqno = parts
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("ck line without a seqno")?;
                self.checkpoint = Some((path.into(), seqno));
                Ok(false)
            }
            "open" | "done" | "fail" => Ok(false),
            other => Err(format!("unknown child line tag {other:?} in {line:?}")),
        }
    }

    fn logged_thread(&mut self, t: u64) -> Result<&mut LoggedThread, String> {
        self.logged
            .get_mut(t as usize)
            .ok_or_else(|| format!("no logged thread {t}"))
    }

    fn bypass_thread(&mut self, t: u64) -> Result<&mut BypassThread, String> {
        self.bypass
            .get_mut(t as usize)
            .ok_or_else(|| format!("no bypass thread {t}"))
    }

    /// Next operation number of each logged thread (for the next child).
    pub fn logged_next(&self) -> Vec<u64> {
        self.logged.iter().map(|t| t.acked + 1).collect()
    }

    /// Next event number of each bypass thread.
    pub fn bypass_next(&self) -> Vec<u64> {
        self.bypass.iter().map(|t| t.acked + 1).collect()
    }

    /// Checks the reopened database. `clean`: the child closed the database itself,
    /// so nothing may be in flight or unflushed.
    pub fn check_recovered(
        &mut self,
        db: &Db,
        logged: &[Keyspace],
        bypass: &Keyspace,
        clean: bool,
    ) -> Result<(), String> {
        for t in 0..self.logged.len() {
            self.check_logged_thread(logged, t as u64, clean)?;
        }
        for t in 0..self.bypass.len() {
            self.check_bypass_thread(bypass, t as u64, clean)?;
        }
        self.check_time_travel(db, logged)
    }

    fn check_logged_thread(
        &mut self,
        logged: &[Keyspace],
        t: u64,
        clean: bool,
    ) -> Result<(), String> {
        let seed = self.seed;
        let thread = &mut self.logged[t as usize];
        let actual = read_thread_state(logged, t)?;
        if actual != thread.state {
            let in_flight = thread.begun == thread.acked + 1 && !clean;
            let mut with_next = thread.state.clone();
            if in_flight {
                let n = thread.acked + 1;
                apply(&mut with_next, t, n, &logged_op(seed, t, n));
            }
            if !in_flight || actual != with_next {
                return Err(format!(
                    "logged thread {t}: after op {} (begun {}) the database differs from the \
                     model: {}",
                    thread.acked,
                    thread.begun,
                    first_difference(&thread.state, &actual)
                ));
            }
            // The op in flight made it, whole: it is part of history now.
            thread.acked += 1;
            thread.state = with_next;
            self.coverage.in_flight_applied += 1;
        }
        thread.begun = thread.acked;
        // Point reads agree with the scans, and a key never written reads as absent.
        for ((ks, key), expected) in &thread.state {
            let got = logged[*ks]
                .get(key)
                .map_err(|e| format!("get {}: {e}", String::from_utf8_lossy(key)))?;
            if got.as_deref() != Some(expected.as_slice()) {
                return Err(format!(
                    "logged thread {t}: point read of {} in {} disagrees with the scan",
                    String::from_utf8_lossy(key),
                    LOGGED[*ks]
                ));
            }
        }
        let never = format!("t{t}/never").into_bytes();
        for ks in logged {
            if ks.get(&never).map_err(|e| e.to_string())?.is_some() {
                return Err(format!(
                    "key {} reads a value but was never written",
                    String::from_utf8_lossy(&never)
                ));
            }
        }
        self.coverage.keys_checked += thread.state.len() as u64 * 2;
        Ok(())
    }

    fn check_bypass_thread(
        &mut self,
        bypass: &Keyspace,
        t: u64,
        clean: bool,
    ) -> Result<(), String> {
        let seed = self.seed;
        let thread = &mut self.bypass[t as usize];
        let newest = check_event_prefix(bypass, seed, t)?;
        self.coverage.keys_checked += newest.map_or(0, |m| alive_events(m).count() as u64);
        let m = newest.unwrap_or(0);
        if m < thread.flushed {
            return Err(format!(
                "bypass thread {t}: a flush covering event {} returned but only events up to {m} \
                 survived",
                thread.flushed
            ));
        }
        if m > thread.begun.max(thread.acked) {
            return Err(format!(
                "bypass thread {t}: event {m} survived but only {} was begun",
                thread.begun
            ));
        }
        if clean && m != thread.acked {
            return Err(format!(
                "bypass thread {t}: a clean close kept events up to {m} of {} acknowledged",
                thread.acked
            ));
        }
        self.coverage.bypass_events_lost += thread.acked.saturating_sub(m);
        // What survived is in tables now: durable, the base of the next child.
        thread.acked = m;
        thread.begun = m;
        thread.flushed = m;
        Ok(())
    }

    fn check_time_travel(&mut self, db: &Db, logged: &[Keyspace]) -> Result<(), String> {
        let latest = db.latest_seqno().0;
        let history = &logged[HISTORY_KS];
        for thread in &mut self.logged {
            // A number past the recovered newest may be handed out again (to writes
            // after this reopen): what it read before the crash is not history.
            thread.past.retain(|p| p.seqno <= latest);
        }
        for (t, thread) in self.logged.iter().enumerate() {
            for past in &thread.past {
                if past.op > thread.acked {
                    continue;
                }
                let snapshot = match db.snapshot_at(SeqNo(past.seqno)) {
                    Ok(s) => s,
                    Err(Error::HistoryUnavailable { .. }) => {
                        self.coverage.time_travel_outside += 1;
                        continue;
                    }
                    Err(e) => return Err(format!("snapshot_at({}): {e}", past.seqno)),
                };
                let mut at = BTreeMap::new();
                let mut outside = false;
                for entry in snapshot.prefix(history, thread_prefix(t as u64)) {
                    match entry {
                        Ok((k, v)) => {
                            at.insert(k.to_vec(), v.to_vec());
                        }
                        Err(Error::HistoryUnavailable { .. }) => {
                            outside = true;
                            break;
                        }
                        Err(e) => return Err(format!("time-travel scan: {e}")),
                    }
                }
                if outside {
                    self.coverage.time_travel_outside += 1;
                    continue;
                }
                if at != past.keys {
                    return Err(format!(
                        "thread {t}: snapshot_at({}) of {} differs from the state after op {}",
                        past.seqno, LOGGED[HISTORY_KS], past.op
                    ));
                }
                self.coverage.time_travel_reads += 1;
            }
        }
        Ok(())
    }
}

/// The history keyspace's part of a thread state.
fn history_projection(state: &ThreadState) -> BTreeMap<Vec<u8>, Vec<u8>> {
    state
        .iter()
        .filter(|((ks, _), _)| *ks == HISTORY_KS)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

/// Thread `t`'s keys in every logged keyspace, read with prefix scans both ways.
pub fn read_thread_state(logged: &[Keyspace], t: u64) -> Result<ThreadState, String> {
    let prefix = thread_prefix(t);
    let mut state = ThreadState::new();
    for (i, ks) in logged.iter().enumerate() {
        let what = format!("{} prefix {}", LOGGED[i], String::from_utf8_lossy(&prefix));
        for (k, v) in scan_both_ways(|| ks.prefix(&prefix), &what)? {
            state.insert((i, k), v);
        }
    }
    Ok(state)
}

/// Every entry of the iterators `open` makes, read forward from one and backward from
/// another; the two must agree. Returns them in key order.
pub fn scan_both_ways(open: impl Fn() -> strata::Iter, what: &str) -> Result<Entries, String> {
    let forward = scan(open(), false)?;
    let mut backward = scan(open(), true)?;
    backward.reverse();
    if forward != backward {
        return Err(format!("{what}: forward and reverse scans differ"));
    }
    Ok(forward)
}

fn scan(iter: strata::Iter, rev: bool) -> Result<Entries, String> {
    let map = |r: strata::Result<(strata::Bytes, strata::Bytes)>| {
        r.map(|(k, v)| (k.to_vec(), v.to_vec()))
            .map_err(|e| format!("scan: {e}"))
    };
    if rev {
        iter.rev().map(map).collect()
    } else {
        iter.map(map).collect()
    }
}

fn first_difference(expected: &ThreadState, actual: &ThreadState) -> String {
    let show = |(ks, key): &(usize, Vec<u8>), v: Option<&Vec<u8>>| {
        format!(
            "{}:{} = {}",
            LOGGED[*ks],
            String::from_utf8_lossy(key),
            v.map_or("absent".to_string(), |v| match value_origin(v) {
                Some((t, n)) => format!("value of thread {t} op {n} ({} bytes)", v.len()),
                None => format!("unrecognised {} bytes", v.len()),
            })
        )
    };
    for (k, v) in expected {
        if actual.get(k) != Some(v) {
            return format!(
                "expected {}, found {}",
                show(k, Some(v)),
                show(k, actual.get(k))
            );
        }
    }
    for (k, v) in actual {
        if !expected.contains_key(k) {
            return format!("expected {}, found {}", show(k, None), show(k, Some(v)));
        }
    }
    "no difference".into()
}

/// Checks that bypass thread `t`'s events in `bypass` are exactly those alive after
/// some event `m` with every value right and the cursor at `m`; returns `m` (`None`:
/// no event at all).
pub fn check_event_prefix(bypass: &Keyspace, seed: u64, t: u64) -> Result<Option<u64>, String> {
    let cursor = cursor_key(t);
    let newest = match bypass
        .get(&cursor)
        .map_err(|e| format!("get cursor: {e}"))?
    {
        None => None,
        Some(v) => {
            let Some((_, m)) = value_origin(&v).filter(|_| value_is_valid(&cursor, &v)) else {
                return Err(format!(
                    "bypass thread {t}: the cursor holds a value never written"
                ));
            };
            Some(m)
        }
    };
    let events = scan(bypass.prefix(event_thread_prefix(t)), false)?;
    let expected: Vec<u64> = newest.map_or_else(Vec::new, |m| alive_events(m).collect());
    if events.len() != expected.len() {
        return Err(format!(
            "bypass thread {t}: cursor at {newest:?}, so {} events should be alive, found {} \
             (first {:?}, last {:?})",
            expected.len(),
            events.len(),
            events
                .first()
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned()),
            events
                .last()
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned()),
        ));
    }
    for ((key, v), n) in events.iter().zip(expected) {
        if *key != event_key(t, n) {
            return Err(format!(
                "bypass thread {t}: expected event {n}, found key {} (a hole, or a torn batch)",
                String::from_utf8_lossy(key)
            ));
        }
        if *v != value(t, n, key, event_len(seed, t, n)) {
            return Err(format!("bypass thread {t}: event {n} has a wrong value"));
        }
    }
    Ok(newest)
}
