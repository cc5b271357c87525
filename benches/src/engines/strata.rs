//! The Strata adapter: `--engine=strata` drives one keyspace, `bench`, of a
//! [`strata::Db`] opened on the database directory.
//!
//! Mapping of the benchmark options:
//! - `--sync` sets the keyspace's durability (`Sync`, else `Buffered`); `--disable_wal=1`
//!   makes it a WAL-bypass keyspace (`Bypass`); a write that asks for another level
//!   (`fillsync`) overrides it with [`WriteOptions`] (refused on a bypass keyspace,
//!   whose writes are never logged). Deletes use the keyspace's durability.
//! - `--sync_writer=1` writes to a second keyspace, `side`, with `Sync` durability.
//! - `--compression` sets the keyspace's block compression; `--cache_size` the block
//!   cache.
//! - `--compaction_style` sets the keyspace's compaction policy (leveled, tiered or
//!   HCA). `--value_threshold=N` sets the keyspace's `value_threshold` (values of `N`
//!   bytes or more go to the value log; a number past every value turns separation
//!   off in effect); without it the engine's default applies.
//! - Reads lend the engine's [`Bytes`] to the visitor without a copy; scans are one
//!   cursor each.

use std::sync::Arc;

use strata::{
    Bytes, Compression, Db, Durability, Keyspace, KeyspaceOptions, Options, WriteBatch,
    WriteOptions,
};

use super::{visit_found, warn_unsupported, Supported};
use crate::engine::{self as bench, Batch, BenchEngine, Direction, EngineConfig, EngineError};

/// Name of the keyspace the benchmarks use.
pub const KEYSPACE: &str = "bench";

/// Name of the keyspace `--sync_writer=1` writes to.
pub const SIDE_KEYSPACE: &str = "side";

/// What this engine build honours (see the module docs).
const SUPPORTED: Supported = Supported {
    compression: true,
    compaction_styles: &[
        bench::CompactionStyle::Leveled,
        bench::CompactionStyle::Tiered,
        bench::CompactionStyle::Hca,
    ],
    value_threshold: true,
    bypass: true,
};

/// A Strata database and the keyspace the benchmarks run in.
pub struct StrataEngine {
    db: Db,
    ks: Keyspace,
    /// The `Sync` keyspace of `--sync_writer=1`, opened on first use.
    side: std::sync::OnceLock<Keyspace>,
    /// The keyspace's durability, which plain `put`s get without an override.
    durability: Durability,
}

fn err(e: strata::Error) -> EngineError {
    EngineError::new(e.to_string())
}

fn durability(d: bench::Durability) -> Durability {
    match d {
        bench::Durability::Sync => Durability::Sync,
        bench::Durability::Buffered => Durability::Buffered,
        bench::Durability::Bypass => Durability::Bypass,
    }
}

fn compaction_style(c: bench::CompactionStyle) -> strata::CompactionStyle {
    match c {
        bench::CompactionStyle::Leveled => strata::CompactionStyle::Leveled,
        bench::CompactionStyle::Tiered => strata::CompactionStyle::Tiered,
        bench::CompactionStyle::Hca => strata::CompactionStyle::Hca,
    }
}

fn compression(c: bench::Compression) -> Compression {
    match c {
        bench::Compression::None => Compression::None,
        bench::Compression::Zstd => Compression::Zstd,
    }
}

/// Opens Strata on `config.path` (an empty directory unless `config.use_existing_db`).
///
/// # Errors
/// Strata's open error.
pub fn open(config: &EngineConfig) -> Result<Arc<dyn BenchEngine>, EngineError> {
    warn_unsupported("strata", config, SUPPORTED);
    let options = Options {
        block_cache_bytes: config.cache_bytes,
        ..Options::default()
    };
    let db = Db::open(&config.path, options).map_err(err)?;
    let keyspace_durability = durability(config.durability);
    let ks = db
        .keyspace_or_create(
            KEYSPACE,
            KeyspaceOptions {
                durability: keyspace_durability,
                compression: compression(config.compression),
                compaction: compaction_style(config.compaction_style),
                value_threshold: match config.value_threshold {
                    Some(t) => Some(u32::try_from(t.max(1)).unwrap_or(u32::MAX)),
                    None => KeyspaceOptions::default().value_threshold,
                },
                ..KeyspaceOptions::default()
            },
        )
        .map_err(err)?;
    Ok(Arc::new(StrataEngine {
        db,
        ks,
        side: std::sync::OnceLock::new(),
        durability: keyspace_durability,
    }))
}

impl BenchEngine for StrataEngine {
    fn name(&self) -> &str {
        "strata"
    }

    fn put(&self, key: &[u8], value: &[u8], d: bench::Durability) -> Result<(), EngineError> {
        let d = durability(d);
        if d == self.durability {
            self.ks.put(key, value)
        } else {
            self.ks.put_opt(
                key,
                value,
                &WriteOptions {
                    durability: Some(d),
                },
            )
        }
        .map_err(err)
    }

    fn write_batch(&self, batch: &Batch, d: bench::Durability) -> Result<(), EngineError> {
        let mut b = WriteBatch::new();
        for (key, value) in batch.iter() {
            b.put(&self.ks, key, value);
        }
        self.db
            .write_opt(
                b,
                &WriteOptions {
                    durability: Some(durability(d)),
                },
            )
            .map_err(err)
    }

    fn put_side_sync(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        let side = match self.side.get() {
            Some(side) => side,
            None => {
                let ks = self
                    .db
                    .keyspace_or_create(
                        SIDE_KEYSPACE,
                        KeyspaceOptions {
                            durability: Durability::Sync,
                            ..KeyspaceOptions::default()
                        },
                    )
                    .map_err(err)?;
                self.side.get_or_init(|| ks)
            }
        };
        side.put(key, value).map_err(err)
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, EngineError> {
        let value: Option<Bytes> = self.ks.get(key).map_err(err)?;
        Ok(visit_found(value, visit))
    }

    fn delete(&self, key: &[u8]) -> Result<(), EngineError> {
        self.ks.delete(key).map_err(err)
    }

    fn scan(
        &self,
        direction: Direction,
        from: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize, EngineError> {
        if limit == 0 {
            return Ok(0);
        }
        let mut c = self.ks.cursor().map_err(err)?;
        match (direction, from) {
            (Direction::Forward, None) => c.seek_to_first().map_err(err)?,
            (Direction::Forward, Some(k)) => c.seek(k).map_err(err)?,
            (Direction::Reverse, None) => c.seek_to_last().map_err(err)?,
            (Direction::Reverse, Some(k)) => {
                // The last key <= k: seek to the first key >= k, then step back if it
                // is past k (or to the last key if everything is before k).
                c.seek(k).map_err(err)?;
                if !c.valid() {
                    c.seek_to_last().map_err(err)?;
                } else if c.key() > k {
                    c.prev().map_err(err)?;
                }
            }
        }
        let mut n = 0;
        while c.valid() {
            visit(c.key(), c.value());
            n += 1;
            if n == limit {
                break;
            }
            match direction {
                Direction::Forward => c.next().map_err(err)?,
                Direction::Reverse => c.prev().map_err(err)?,
            }
        }
        Ok(n)
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.ks.flush().map_err(err)
    }

    fn compact(&self) -> Result<(), EngineError> {
        self.ks.compact().map_err(err)
    }

    fn wait_for_compaction(&self) -> Result<(), EngineError> {
        self.db.wait_for_background_work().map_err(err)
    }

    fn stats_line(&self) -> Option<String> {
        Some(self.db.stats().summary_line())
    }

    fn stats_text(&self) -> Option<String> {
        let stats = self.db.stats();
        let line = stats.summary_line();
        let text = stats.to_string();
        // The readable form may start with the summary line, already printed.
        let rest = text
            .strip_prefix(line.as_str())
            .unwrap_or(&text)
            .trim_start_matches('\n');
        Some(format!(
            "{rest}\ndisk: {} bytes of files under the database directory",
            crate::disk::dir_bytes(self.db.path())
        ))
    }

    fn close(&self) -> Result<(), EngineError> {
        self.db.close().map_err(err)
    }
}
