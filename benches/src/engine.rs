//! The engine interface `db_bench` drives: [`BenchEngine`], its configuration
//! [`EngineConfig`] and the small value types they share.
//!
//! Every engine (Strata, the in-memory mock, and later the peers behind the `peers`
//! feature) is adapted to this one trait so that each benchmark runs the same workload
//! through the same harness. The trait is object-safe and shared across client threads
//! as `Arc<dyn BenchEngine>`; its methods take `&self`.
//!
//! Trade-offs: reads hand the engine a visitor closure instead of returning an owned
//! value, so an adapter can lend the engine's own buffer without a copy; errors are
//! flattened to text ([`EngineError`]) because each engine has its own error type and
//! the harness only reports them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// How durable a write must be before the engine acknowledges it (DESIGN.md, Durability).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged once its log record is fsynced (`--sync=1`, and `fillsync`).
    Sync,
    /// Acknowledged once its log record is in the OS page cache: the default.
    Buffered,
    /// No log record; durable only once flushed (`--disable_wal=1`).
    Bypass,
}

impl Durability {
    /// The flag spelling of this level, as printed in the header.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Buffered => "buffered",
            Durability::Bypass => "bypass",
        }
    }
}

/// Table block compression (`--compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression: the default.
    #[default]
    None,
    /// zstd per block.
    Zstd,
}

impl Compression {
    /// The flag spelling of this value.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            _ => Err(format!("unknown compression '{s}' (expected none or zstd)")),
        }
    }
}

/// Compaction policy (`--compaction_style`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CompactionStyle {
    /// One sorted run per level.
    Leveled,
    /// Several runs per level, merged when the level is full.
    Tiered,
    /// Hierarchical adaptive: tiered above, leveled at the bottom. The default.
    #[default]
    Hca,
}

impl CompactionStyle {
    /// The flag spelling of this value.
    pub fn name(self) -> &'static str {
        match self {
            CompactionStyle::Leveled => "leveled",
            CompactionStyle::Tiered => "tiered",
            CompactionStyle::Hca => "hca",
        }
    }
}

impl FromStr for CompactionStyle {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "leveled" => Ok(CompactionStyle::Leveled),
            "tiered" => Ok(CompactionStyle::Tiered),
            "hca" => Ok(CompactionStyle::Hca),
            _ => Err(format!(
                "unknown compaction style '{s}' (expected leveled, tiered or hca)"
            )),
        }
    }
}

/// Direction of a [`BenchEngine::scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending key order.
    Forward,
    /// Descending key order.
    Reverse,
}

/// Everything an engine needs to open the benchmark database.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The database directory. It exists when the engine is opened; it is empty unless
    /// `use_existing_db` is set (the harness may have left a marker file in it).
    pub path: PathBuf,
    /// Durability of writes that do not ask for another level, and of deletes.
    pub durability: Durability,
    /// Table block compression.
    pub compression: Compression,
    /// Compaction policy.
    pub compaction_style: CompactionStyle,
    /// Values of this many bytes or more go to the value log; `None` keeps the
    /// engine's default.
    pub value_threshold: Option<usize>,
    /// Block cache budget in bytes.
    pub cache_bytes: usize,
    /// Open what is already in `path` instead of starting empty.
    pub use_existing_db: bool,
}

/// An engine failure, flattened to the engine's own message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineError(String);

impl EngineError {
    /// Wraps an engine's message.
    pub fn new(message: impl Into<String>) -> Self {
        EngineError(message.into())
    }

    /// The engine's message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineError {}

/// A batch of puts applied atomically by [`BenchEngine::write_batch`].
///
/// Keys and values are packed into one reusable buffer, so filling a batch per
/// iteration allocates nothing once the buffer has grown.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    /// `(key_len, value_len)` per entry, in insertion order.
    lens: Vec<(usize, usize)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Appends a put of `key` → `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        self.lens.push((key.len(), value.len()));
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.lens.clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether the batch has no entries.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// The entries as `(key, value)`, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut at = 0;
        self.lens.iter().map(move |&(k, v)| {
            let key = &self.data[at..at + k];
            let value = &self.data[at + k..at + k + v];
            at += k + v;
            (key, value)
        })
    }
}

/// A key-value engine as `db_bench` drives it.
///
/// Implementations must be safe to call from many threads at once. After
/// [`close`](BenchEngine::close) every other method may fail.
pub trait BenchEngine: Send + Sync {
    /// Short engine name, as given to `--engine`.
    fn name(&self) -> &str;

    /// Writes `key` → `value` with the given durability.
    ///
    /// # Errors
    /// The engine's write error.
    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> Result<(), EngineError>;

    /// Applies every put of `batch` atomically with the given durability.
    ///
    /// # Errors
    /// The engine's write error.
    fn write_batch(&self, batch: &Batch, durability: Durability) -> Result<(), EngineError>;

    /// Looks `key` up; when found, calls `visit` once with the value and returns `true`.
    ///
    /// # Errors
    /// The engine's read error.
    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, EngineError>;

    /// Deletes `key` with the configured durability ([`EngineConfig::durability`]).
    ///
    /// # Errors
    /// The engine's write error.
    fn delete(&self, key: &[u8]) -> Result<(), EngineError>;

    /// Visits up to `limit` entries in `direction` with one iterator, starting at
    /// `from`: with `Forward`, the first key `>= from`; with `Reverse`, the last key
    /// `<= from`; `None` starts at the first (`Forward`) or last (`Reverse`) key.
    /// Returns the number of entries visited.
    ///
    /// # Errors
    /// The engine's read error.
    fn scan(
        &self,
        direction: Direction,
        from: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize, EngineError>;

    /// Makes every acknowledged write durable in the engine's tables (memtable flush).
    ///
    /// # Errors
    /// The engine's flush error.
    fn flush(&self) -> Result<(), EngineError>;

    /// Runs a full manual compaction and returns when it is done.
    ///
    /// # Errors
    /// The engine's compaction error.
    fn compact(&self) -> Result<(), EngineError>;

    /// Waits until the engine's background flushes and compactions have nothing left
    /// to do, without asking for any (RocksDB's `WaitForCompact`). An engine with no
    /// way to wait returns at once; the default does.
    ///
    /// # Errors
    /// The engine's error from background work.
    fn wait_for_compaction(&self) -> Result<(), EngineError> {
        Ok(())
    }

    /// The one parseable statistics line, `Stats: write_amp=… space_amp=… stall_micros=…
    /// l0_files=… cache_hit_rate=… vlog_garbage_ratio=…`, if the engine has one.
    fn stats_line(&self) -> Option<String>;

    /// Statistics for a person to read (may span lines), if the engine has them.
    fn stats_text(&self) -> Option<String>;

    /// Puts `key` with `Sync` durability into a second keyspace (table, tree) beside
    /// the benchmark's own: `--sync_writer=1` runs a thread of these beside a
    /// benchmark, to show how durable writes elsewhere disturb it.
    ///
    /// # Errors
    /// The engine's write error; by default, that the engine has no second keyspace.
    fn put_side_sync(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        let _ = (key, value);
        Err(EngineError::new(format!(
            "--sync_writer=1: engine {} has no second keyspace",
            self.name()
        )))
    }

    /// Closes the engine cleanly: everything acknowledged is made durable.
    ///
    /// # Errors
    /// The engine's close error.
    fn close(&self) -> Result<(), EngineError>;
}

/// Convenience for callers that want an owned value: [`BenchEngine::get`] with a copy.
///
/// # Errors
/// The engine's read error.
pub fn get_owned(engine: &dyn BenchEngine, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
    let mut out = None;
    engine.get(key, &mut |v| out = Some(v.to_vec()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_iterates_entries_in_order_and_clears() {
        let mut b = Batch::new();
        b.put(b"a", b"1");
        b.put(b"bb", b"");
        b.put(b"", b"333");
        let got: Vec<_> = b.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"bb".to_vec(), vec![]),
                (vec![], b"333".to_vec()),
            ]
        );
        assert_eq!(b.len(), 3);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.iter().count(), 0);
    }

    #[test]
    fn enums_parse_their_names() {
        for c in [Compression::None, Compression::Zstd] {
            assert_eq!(c.name().parse::<Compression>(), Ok(c));
        }
        for s in [
            CompactionStyle::Leveled,
            CompactionStyle::Tiered,
            CompactionStyle::Hca,
        ] {
            assert_eq!(s.name().parse::<CompactionStyle>(), Ok(s));
        }
        assert!("lz4".parse::<Compression>().is_err());
        assert!("universal".parse::<CompactionStyle>().is_err());
    }
}
