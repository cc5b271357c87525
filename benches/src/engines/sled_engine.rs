//! `--engine=sled` (cargo feature `peers`): sled 0.34, the last stable release.
//!
//! Settings: a page cache of `--cache_size` (64 MiB by default), sled's default
//! flushing (its log is written out every 500 ms, so a plain write is *weaker* than
//! Strata's `Buffered`: a killed process can lose up to half a second of acknowledged
//! writes). A `Sync` write is followed by `Db::flush` (sled's fsync). sled has no
//! compression choice, no compaction policy to choose, no WAL-less path and no manual
//! compaction: those flags warn, and `compact` only flushes. `--sync_writer=1` writes
//! to a second tree, `side`.

use std::sync::Arc;

use super::peer_meter::{PeerFigures, PeerMeter};
use super::{scan_range, visit_found, warn_unsupported, Supported};
use crate::engine::{Batch, BenchEngine, Direction, Durability, EngineConfig, EngineError};

/// A sled database opened for the benchmarks.
pub struct SledEngine {
    db: ::sled::Db,
    meter: PeerMeter,
    durability: Durability,
}

fn err(e: ::sled::Error) -> EngineError {
    EngineError::new(e.to_string())
}

/// Opens sled on `config.path`.
///
/// # Errors
/// sled's open error.
pub fn open(config: &EngineConfig) -> Result<Arc<dyn BenchEngine>, EngineError> {
    warn_unsupported("sled", config, Supported::NONE);
    let db = ::sled::Config::new()
        .path(&config.path)
        .cache_capacity(config.cache_bytes as u64)
        .open()
        .map_err(err)?;
    Ok(Arc::new(SledEngine {
        db,
        meter: PeerMeter::new(&config.path),
        durability: config.durability,
    }))
}

impl SledEngine {
    fn flush_if_sync(&self, durability: Durability) -> Result<(), EngineError> {
        if durability == Durability::Sync {
            self.db.flush().map_err(err)?;
        }
        Ok(())
    }
}

impl BenchEngine for SledEngine {
    fn name(&self) -> &str {
        "sled"
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> Result<(), EngineError> {
        self.meter.wrote(key.len() + value.len());
        self.db.insert(key, value).map_err(err)?;
        self.flush_if_sync(durability)
    }

    fn write_batch(&self, batch: &Batch, durability: Durability) -> Result<(), EngineError> {
        let mut b = ::sled::Batch::default();
        for (key, value) in batch.iter() {
            self.meter.wrote(key.len() + value.len());
            b.insert(key, value);
        }
        self.db.apply_batch(b).map_err(err)?;
        self.flush_if_sync(durability)
    }

    fn put_side_sync(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        self.meter.wrote(key.len() + value.len());
        let side = self.db.open_tree("side").map_err(err)?;
        side.insert(key, value).map_err(err)?;
        side.flush().map_err(err)?;
        Ok(())
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, EngineError> {
        Ok(visit_found(self.db.get(key).map_err(err)?, visit))
    }

    fn delete(&self, key: &[u8]) -> Result<(), EngineError> {
        self.meter.wrote(key.len());
        self.db.remove(key).map_err(err)?;
        self.flush_if_sync(self.durability)
    }

    fn scan(
        &self,
        direction: Direction,
        from: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize, EngineError> {
        scan_range(direction, from, limit, visit, |bounds| {
            self.db.range::<&[u8], _>(bounds).map(|e| e.map_err(err))
        })
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.db.flush().map(|_| ()).map_err(err)
    }

    fn compact(&self) -> Result<(), EngineError> {
        self.flush()
    }

    fn stats_line(&self) -> Option<String> {
        Some(self.meter.stats_line(self, PeerFigures::default()))
    }

    fn stats_text(&self) -> Option<String> {
        Some(self.meter.stats_text())
    }

    fn close(&self) -> Result<(), EngineError> {
        self.flush()
    }
}
