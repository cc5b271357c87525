//! The `memory` engine: an ordered map behind a lock, with a plain journal file, for
//! testing the harness itself (`--engine=memory`).
//!
//! It is deliberately simple and is not a storage engine to measure: every write takes
//! one `RwLock` for writing, and a scan holds the read lock for its whole length.
//! Writes with `Buffered` or `Sync` durability are appended to `memory.journal` in the
//! database directory with one `write` call each (`Sync` adds `fdatasync`), so they
//! survive a killed process and `recover` and `--use_existing_db=1` can be tested
//! end to end. `Bypass` writes are kept in memory only until the next `flush`,
//! `compact` or `close`, which rewrite the journal from the map.
//!
//! Journal records are `tag (1 = put, 2 = delete) | key_len u32 LE | value_len u32 LE |
//! key | value`; a torn last record is dropped at open. There are no checksums: this
//! engine only has to survive a process kill, never a power loss or bit rot.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::engine::{Batch, BenchEngine, Direction, Durability, EngineConfig, EngineError};

/// File name of the journal inside the database directory.
pub const JOURNAL_FILE: &str = "memory.journal";

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const HEADER: usize = 9;

/// Operation counters of a [`MemoryEngine`], for tests and `stats_text`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryCounters {
    /// Puts, counting each entry of a batch.
    pub puts: u64,
    /// Batches written.
    pub batches: u64,
    /// Point lookups.
    pub gets: u64,
    /// Point lookups that found their key.
    pub hits: u64,
    /// Deletes.
    pub deletes: u64,
    /// Calls to `scan` (one per iterator, however many entries it visits).
    pub scans: u64,
    /// Entries visited by scans.
    pub scanned: u64,
    /// `fdatasync` calls on the journal.
    pub syncs: u64,
    /// Journal rewrites (by `flush`, `compact` or `close`).
    pub rewrites: u64,
}

#[derive(Default)]
struct Counters {
    puts: AtomicU64,
    batches: AtomicU64,
    gets: AtomicU64,
    hits: AtomicU64,
    deletes: AtomicU64,
    scans: AtomicU64,
    scanned: AtomicU64,
    syncs: AtomicU64,
    rewrites: AtomicU64,
    user_bytes: AtomicU64,
    journal_bytes: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

struct State {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    live_bytes: u64,
    journal: Option<File>,
    journal_len: u64,
    /// Bypass writes since the journal was last rewritten.
    unjournaled: bool,
    closed: bool,
}

/// The in-memory test engine (see the module docs).
pub struct MemoryEngine {
    state: RwLock<State>,
    dir: PathBuf,
    durability: Durability,
    counters: Counters,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> EngineError {
    EngineError::new(format!("{what} {}: {e}", path.display()))
}

fn encode(out: &mut Vec<u8>, tag: u8, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
    let k = u32::try_from(key.len()).map_err(|_| EngineError::new("key longer than 4 GiB"))?;
    let v = u32::try_from(value.len()).map_err(|_| EngineError::new("value longer than 4 GiB"))?;
    out.push(tag);
    out.extend_from_slice(&k.to_le_bytes());
    out.extend_from_slice(&v.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    Ok(())
}

/// Replays journal bytes into `map`; returns the length of the intact prefix.
fn replay(data: &[u8], map: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> Result<usize, String> {
    let mut at = 0;
    while data.len() - at >= HEADER {
        let tag = data[at];
        let k =
            u32::from_le_bytes([data[at + 1], data[at + 2], data[at + 3], data[at + 4]]) as usize;
        let v =
            u32::from_le_bytes([data[at + 5], data[at + 6], data[at + 7], data[at + 8]]) as usize;
        let body = at + HEADER;
        let Some(end) = body.checked_add(k).and_then(|e| e.checked_add(v)) else {
            break;
        };
        if end > data.len() {
            break; // torn tail
        }
        let key = data[body..body + k].to_vec();
        match tag {
            TAG_PUT => {
                map.insert(key, data[body + k..end].to_vec());
            }
            TAG_DELETE => {
                map.remove(&key);
            }
            other => return Err(format!("unknown record tag {other} at offset {at}")),
        }
        at = end;
    }
    Ok(at)
}

impl MemoryEngine {
    /// Opens the engine on `config.path`: empty (truncating any journal) unless
    /// `config.use_existing_db`, in which case the journal is replayed.
    ///
    /// # Errors
    /// An I/O error on the journal, or a journal record with an unknown tag.
    pub fn open(config: &EngineConfig) -> Result<MemoryEngine, EngineError> {
        let dir = config.path.clone();
        let path = dir.join(JOURNAL_FILE);
        let mut map = BTreeMap::new();
        let mut journal_len = 0;
        if config.use_existing_db && path.exists() {
            let mut data = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(|e| io_err("cannot read", &path, e))?;
            let intact = replay(&data, &mut map).map_err(|e| {
                EngineError::new(format!("{}: corrupt journal: {e}", path.display()))
            })?;
            journal_len = intact as u64;
        }
        let journal = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("cannot open", &path, e))?;
        // Drop a torn tail (or, for a fresh database, everything) before appending.
        journal
            .set_len(journal_len)
            .map_err(|e| io_err("cannot truncate", &path, e))?;
        let mut journal = journal;
        io::Seek::seek(&mut journal, io::SeekFrom::End(0))
            .map_err(|e| io_err("cannot seek", &path, e))?;
        let live_bytes = map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        Ok(MemoryEngine {
            state: RwLock::new(State {
                map,
                live_bytes,
                journal: Some(journal),
                journal_len,
                unjournaled: false,
                closed: false,
            }),
            dir,
            durability: config.durability,
            counters: Counters::default(),
        })
    }

    /// A snapshot of the operation counters.
    pub fn counters(&self) -> MemoryCounters {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MemoryCounters {
            puts: l(&c.puts),
            batches: l(&c.batches),
            gets: l(&c.gets),
            hits: l(&c.hits),
            deletes: l(&c.deletes),
            scans: l(&c.scans),
            scanned: l(&c.scanned),
            syncs: l(&c.syncs),
            rewrites: l(&c.rewrites),
        }
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// Appends `record` to the journal unless `durability` is `Bypass`; the caller
    /// holds the write lock.
    fn journal_append(
        &self,
        state: &mut State,
        record: &[u8],
        durability: Durability,
    ) -> Result<(), EngineError> {
        if durability == Durability::Bypass {
            state.unjournaled = true;
            return Ok(());
        }
        let path = self.journal_path();
        let file = state
            .journal
            .as_mut()
            .ok_or_else(|| EngineError::new("memory engine is closed"))?;
        file.write_all(record)
            .map_err(|e| io_err("cannot append to", &path, e))?;
        if durability == Durability::Sync {
            file.sync_data()
                .map_err(|e| io_err("cannot sync", &path, e))?;
            bump(&self.counters.syncs, 1);
        }
        state.journal_len += record.len() as u64;
        bump(&self.counters.journal_bytes, record.len() as u64);
        Ok(())
    }

    fn apply_put(state: &mut State, key: &[u8], value: &[u8]) {
        let added = (key.len() + value.len()) as u64;
        if let Some(old) = state.map.insert(key.to_vec(), value.to_vec()) {
            state.live_bytes -= (key.len() + old.len()) as u64;
        }
        state.live_bytes += added;
    }

    /// Rewrites the journal from the map (write new file, sync, rename); the caller
    /// holds the write lock.
    fn rewrite(&self, state: &mut State) -> Result<(), EngineError> {
        let path = self.journal_path();
        let tmp = self.dir.join(format!("{JOURNAL_FILE}.tmp"));
        let mut buf = Vec::new();
        for (k, v) in &state.map {
            encode(&mut buf, TAG_PUT, k, v)?;
        }
        let mut file = File::create(&tmp).map_err(|e| io_err("cannot create", &tmp, e))?;
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| io_err("cannot write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_err("cannot rename to", &path, e))?;
        state.journal = Some(file);
        state.journal_len = buf.len() as u64;
        state.unjournaled = false;
        bump(&self.counters.journal_bytes, buf.len() as u64);
        bump(&self.counters.syncs, 1);
        bump(&self.counters.rewrites, 1);
        Ok(())
    }

    fn check_open(state: &State) -> Result<(), EngineError> {
        if state.closed {
            Err(EngineError::new("memory engine is closed"))
        } else {
            Ok(())
        }
    }
}

impl BenchEngine for MemoryEngine {
    fn name(&self) -> &str {
        "memory"
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> Result<(), EngineError> {
        let mut record = Vec::with_capacity(HEADER + key.len() + value.len());
        if durability != Durability::Bypass {
            encode(&mut record, TAG_PUT, key, value)?;
        }
        let mut state = self.state.write();
        Self::check_open(&state)?;
        self.journal_append(&mut state, &record, durability)?;
        Self::apply_put(&mut state, key, value);
        drop(state);
        bump(&self.counters.puts, 1);
        bump(&self.counters.user_bytes, (key.len() + value.len()) as u64);
        Ok(())
    }

    fn write_batch(&self, batch: &Batch, durability: Durability) -> Result<(), EngineError> {
        let mut record = Vec::new();
        let mut user_bytes = 0;
        for (k, v) in batch.iter() {
            if durability != Durability::Bypass {
                encode(&mut record, TAG_PUT, k, v)?;
            }
            user_bytes += (k.len() + v.len()) as u64;
        }
        let mut state = self.state.write();
        Self::check_open(&state)?;
        // One write call for the whole batch: a killed process leaves at most a torn
        // tail, which replay drops.
        self.journal_append(&mut state, &record, durability)?;
        for (k, v) in batch.iter() {
            Self::apply_put(&mut state, k, v);
        }
        drop(state);
        bump(&self.counters.puts, batch.len() as u64);
        bump(&self.counters.batches, 1);
        bump(&self.counters.user_bytes, user_bytes);
        Ok(())
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, EngineError> {
        let state = self.state.read();
        Self::check_open(&state)?;
        bump(&self.counters.gets, 1);
        match state.map.get(key) {
            Some(v) => {
                visit(v);
                bump(&self.counters.hits, 1);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn delete(&self, key: &[u8]) -> Result<(), EngineError> {
        let mut record = Vec::new();
        if self.durability != Durability::Bypass {
            encode(&mut record, TAG_DELETE, key, &[])?;
        }
        let mut state = self.state.write();
        Self::check_open(&state)?;
        self.journal_append(&mut state, &record, self.durability)?;
        if let Some(old) = state.map.remove(key) {
            state.live_bytes -= (key.len() + old.len()) as u64;
        }
        drop(state);
        bump(&self.counters.deletes, 1);
        bump(&self.counters.user_bytes, key.len() as u64);
        Ok(())
    }

    fn scan(
        &self,
        direction: Direction,
        from: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize, EngineError> {
        let state = self.state.read();
        Self::check_open(&state)?;
        bump(&self.counters.scans, 1);
        let mut n = 0;
        let mut each = |(k, v): (&Vec<u8>, &Vec<u8>)| {
            visit(k, v);
            n += 1;
        };
        match (direction, from) {
            (Direction::Forward, None) => state.map.iter().take(limit).for_each(&mut each),
            (Direction::Forward, Some(f)) => state
                .map
                .range::<[u8], _>((Bound::Included(f), Bound::Unbounded))
                .take(limit)
                .for_each(&mut each),
            (Direction::Reverse, None) => state.map.iter().rev().take(limit).for_each(&mut each),
            (Direction::Reverse, Some(f)) => state
                .map
                .range::<[u8], _>((Bound::Unbounded, Bound::Included(f)))
                .rev()
                .take(limit)
                .for_each(&mut each),
        }
        bump(&self.counters.scanned, n as u64);
        Ok(n)
    }

    fn flush(&self) -> Result<(), EngineError> {
        let mut state = self.state.write();
        Self::check_open(&state)?;
        if state.unjournaled {
            return self.rewrite(&mut state);
        }
        let path = self.journal_path();
        if let Some(f) = &state.journal {
            f.sync_data().map_err(|e| io_err("cannot sync", &path, e))?;
            bump(&self.counters.syncs, 1);
        }
        Ok(())
    }

    fn compact(&self) -> Result<(), EngineError> {
        let mut state = self.state.write();
        Self::check_open(&state)?;
        self.rewrite(&mut state)
    }

    fn stats_line(&self) -> Option<String> {
        let state = self.state.read();
        let user = self.counters.user_bytes.load(Ordering::Relaxed);
        let written = self.counters.journal_bytes.load(Ordering::Relaxed);
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Some(format!(
            "Stats: write_amp={:.2} space_amp={:.2} stall_micros=0 l0_files=0 cache_hit_rate=1.00 vlog_garbage_ratio=0.00",
            ratio(written, user),
            ratio(state.journal_len, state.live_bytes),
        ))
    }

    fn stats_text(&self) -> Option<String> {
        let state = self.state.read();
        let c = self.counters();
        Some(format!(
            "Memory engine (harness test engine; no tables, no cache)\n  \
             keys={} live_bytes={} journal_bytes={} unjournaled_bypass_writes={}\n  \
             puts={} batches={} gets={} hits={} deletes={} scans={} scanned={} syncs={} rewrites={}",
            state.map.len(),
            state.live_bytes,
            state.journal_len,
            state.unjournaled,
            c.puts,
            c.batches,
            c.gets,
            c.hits,
            c.deletes,
            c.scans,
            c.scanned,
            c.syncs,
            c.rewrites
        ))
    }

    fn close(&self) -> Result<(), EngineError> {
        let mut state = self.state.write();
        if state.closed {
            return Ok(());
        }
        if state.unjournaled {
            self.rewrite(&mut state)?;
        } else if let Some(f) = &state.journal {
            let path = self.journal_path();
            f.sync_data().map_err(|e| io_err("cannot sync", &path, e))?;
        }
        state.journal = None;
        state.closed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{get_owned, CompactionStyle, Compression};

    fn config(path: &Path, durability: Durability, existing: bool) -> EngineConfig {
        EngineConfig {
            path: path.to_path_buf(),
            durability,
            compression: Compression::None,
            compaction_style: CompactionStyle::Hca,
            value_threshold: None,
            cache_bytes: 0,
            use_existing_db: existing,
        }
    }

    fn collect(e: &MemoryEngine, d: Direction, from: Option<&[u8]>, limit: usize) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let n = e
            .scan(d, from, limit, &mut |k, _| keys.push(k.to_vec()))
            .unwrap();
        assert_eq!(n, keys.len());
        keys
    }

    #[test]
    fn reads_writes_and_scans() {
        let dir = tempfile::tempdir().unwrap();
        let e = MemoryEngine::open(&config(dir.path(), Durability::Buffered, false)).unwrap();
        for k in [b"b", b"d", b"f"] {
            e.put(k, b"v", Durability::Buffered).unwrap();
        }
        assert_eq!(get_owned(&e, b"d").unwrap(), Some(b"v".to_vec()));
        assert_eq!(get_owned(&e, b"c").unwrap(), None);
        assert_eq!(
            collect(&e, Direction::Forward, None, 10),
            [b"b", b"d", b"f"]
        );
        assert_eq!(collect(&e, Direction::Forward, Some(b"c"), 1), [b"d"]);
        assert_eq!(
            collect(&e, Direction::Reverse, Some(b"e"), 10),
            [b"d", b"b"]
        );
        assert_eq!(collect(&e, Direction::Reverse, Some(b"d"), 1), [b"d"]);
        assert_eq!(collect(&e, Direction::Reverse, None, 2), [b"f", b"d"]);
        e.delete(b"d").unwrap();
        assert_eq!(collect(&e, Direction::Forward, None, 10), [b"b", b"f"]);
        assert_eq!(e.counters().scans, 6);
        let line = e.stats_line().unwrap();
        assert!(line.starts_with("Stats: write_amp="), "{line}");
    }

    #[test]
    fn journal_survives_reopen_and_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = MemoryEngine::open(&config(dir.path(), Durability::Buffered, false)).unwrap();
            e.put(b"a", b"1", Durability::Buffered).unwrap();
            e.put(b"b", b"2", Durability::Sync).unwrap();
            let mut batch = Batch::new();
            batch.put(b"c", b"3");
            batch.put(b"d", b"4");
            e.write_batch(&batch, Durability::Buffered).unwrap();
            e.delete(b"a").unwrap();
            e.put(b"x", b"bypassed", Durability::Bypass).unwrap();
            // Dropped without close: the bypass write is lost, the rest is journaled.
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[TAG_PUT, 5, 0, 0, 0, 9, 0, 0, 0, b'z'])
            .unwrap(); // torn record
        drop(f);
        let e = MemoryEngine::open(&config(dir.path(), Durability::Buffered, true)).unwrap();
        assert_eq!(
            collect(&e, Direction::Forward, None, 10),
            [b"b", b"c", b"d"]
        );
        e.put(b"e", b"5", Durability::Buffered).unwrap();
        e.put(b"y", b"bypass", Durability::Bypass).unwrap();
        e.close().unwrap();
        assert!(e.put(b"f", b"6", Durability::Buffered).is_err());
        let e = MemoryEngine::open(&config(dir.path(), Durability::Buffered, true)).unwrap();
        assert_eq!(
            collect(&e, Direction::Forward, None, 10),
            [&b"b"[..], b"c", b"d", b"e", b"y"]
        );
        // A fresh open ignores and truncates the journal.
        drop(e);
        let e = MemoryEngine::open(&config(dir.path(), Durability::Buffered, false)).unwrap();
        assert_eq!(collect(&e, Direction::Forward, None, 10).len(), 0);
    }

    #[test]
    fn compact_rewrites_journal_to_live_data() {
        let dir = tempfile::tempdir().unwrap();
        let e = MemoryEngine::open(&config(dir.path(), Durability::Buffered, false)).unwrap();
        for _ in 0..10 {
            e.put(b"k", &[7u8; 100], Durability::Buffered).unwrap();
        }
        let before = fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len();
        e.compact().unwrap();
        let after = fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len();
        assert_eq!(before, 10 * (HEADER as u64 + 101));
        assert_eq!(after, HEADER as u64 + 101);
        e.put(b"l", b"2", Durability::Buffered).unwrap();
        drop(e);
        let e = MemoryEngine::open(&config(dir.path(), Durability::Buffered, true)).unwrap();
        assert_eq!(collect(&e, Direction::Forward, None, 10), [b"k", b"l"]);
    }

    #[test]
    fn unknown_tag_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(JOURNAL_FILE), [9u8, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        let err = MemoryEngine::open(&config(dir.path(), Durability::Buffered, true))
            .err()
            .unwrap();
        assert!(err.message().contains("unknown record tag 9"), "{err}");
    }
}
