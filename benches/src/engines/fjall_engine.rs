//! `--engine=fjall` (cargo feature `peers`): fjall 3, the LSM-tree engine in Rust.
//!
//! Settings:
//! - its journal on; a plain write is flushed to the OS before it returns (fjall's
//!   default, the same promise as Strata's `Buffered`); a `Sync` write is followed by
//!   `Database::persist(SyncData)`; batches commit with the matching `PersistMode`;
//! - fjall has no WAL-less write path, so `--disable_wal=1` runs `Buffered` writes (with
//!   a warning);
//! - a block cache of `--cache_size` (64 MiB by default); its default bloom filters;
//!   block compression off unless asked for (fjall's default is LZ4; it has no zstd,
//!   so `--compression=zstd` warns and stays off);
//! - leveled compaction, fjall's default (it has no tiered policy to choose);
//! - `--sync_writer=1` writes to a second keyspace, `side`.

use std::sync::{Arc, OnceLock};

use ::fjall::config::CompressionPolicy;
use ::fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::peer_meter::{PeerFigures, PeerMeter};
use super::{scan_range, visit_found, warn_unsupported, Supported};
use crate::engine::{
    Batch, BenchEngine, CompactionStyle, Direction, Durability, EngineConfig, EngineError,
};

const SUPPORTED: Supported = Supported {
    compression: false,
    compaction_styles: &[CompactionStyle::Leveled],
    value_threshold: false,
    bypass: false,
};

/// A fjall database and the keyspace the benchmarks use.
pub struct FjallEngine {
    db: Database,
    ks: Keyspace,
    side: OnceLock<Keyspace>,
    meter: PeerMeter,
    durability: Durability,
}

fn err(e: ::fjall::Error) -> EngineError {
    EngineError::new(e.to_string())
}

fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .data_block_compression_policy(CompressionPolicy::all(CompressionType::None))
        .index_block_compression_policy(CompressionPolicy::all(CompressionType::None))
}

/// Opens fjall on `config.path`.
///
/// # Errors
/// fjall's open error.
pub fn open(config: &EngineConfig) -> Result<Arc<dyn BenchEngine>, EngineError> {
    warn_unsupported("fjall", config, SUPPORTED);
    let db = Database::builder(&config.path)
        .cache_size(config.cache_bytes as u64)
        .open()
        .map_err(err)?;
    let ks = db.keyspace("bench", keyspace_options).map_err(err)?;
    Ok(Arc::new(FjallEngine {
        db,
        ks,
        side: OnceLock::new(),
        meter: PeerMeter::new(&config.path),
        durability: config.durability,
    }))
}

impl FjallEngine {
    fn persist_if_sync(&self, durability: Durability) -> Result<(), EngineError> {
        if durability == Durability::Sync {
            self.db.persist(PersistMode::SyncData).map_err(err)?;
        }
        Ok(())
    }
}

impl BenchEngine for FjallEngine {
    fn name(&self) -> &str {
        "fjall"
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> Result<(), EngineError> {
        self.meter.wrote(key.len() + value.len());
        self.ks.insert(key, value).map_err(err)?;
        self.persist_if_sync(durability)
    }

    fn write_batch(&self, batch: &Batch, durability: Durability) -> Result<(), EngineError> {
        let mode = match durability {
            Durability::Sync => PersistMode::SyncData,
            Durability::Buffered | Durability::Bypass => PersistMode::Buffer,
        };
        let mut b = self.db.batch().durability(Some(mode));
        for (key, value) in batch.iter() {
            self.meter.wrote(key.len() + value.len());
            b.insert(&self.ks, key, value);
        }
        b.commit().map_err(err)
    }

    fn put_side_sync(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        self.meter.wrote(key.len() + value.len());
        let side = match self.side.get() {
            Some(side) => side,
            None => {
                let ks = self.db.keyspace("side", keyspace_options).map_err(err)?;
                self.side.get_or_init(|| ks)
            }
        };
        side.insert(key, value).map_err(err)?;
        self.persist_if_sync(Durability::Sync)
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, EngineError> {
        Ok(visit_found(self.ks.get(key).map_err(err)?, visit))
    }

    fn delete(&self, key: &[u8]) -> Result<(), EngineError> {
        self.meter.wrote(key.len());
        self.ks.remove(key).map_err(err)?;
        self.persist_if_sync(self.durability)
    }

    fn scan(
        &self,
        direction: Direction,
        from: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize, EngineError> {
        scan_range(direction, from, limit, visit, |bounds| {
            self.ks
                .range::<&[u8], _>(bounds)
                .map(|g| g.into_inner().map_err(err))
        })
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.ks.rotate_memtable_and_wait().map_err(err)?;
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }

    fn compact(&self) -> Result<(), EngineError> {
        self.ks.major_compact().map_err(err)
    }

    fn stats_line(&self) -> Option<String> {
        let figures = PeerFigures {
            l0_files: Some(self.ks.l0_table_count() as u64),
            ..PeerFigures::default()
        };
        Some(self.meter.stats_line(self, figures))
    }

    fn stats_text(&self) -> Option<String> {
        Some(self.meter.stats_text())
    }

    fn close(&self) -> Result<(), EngineError> {
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }
}
