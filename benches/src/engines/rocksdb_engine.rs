//! `--engine=rocksdb` (cargo feature `peers`): RocksDB through the `rocksdb` crate,
//! built from source.
//!
//! Settings, chosen to match Strata's defaults where RocksDB has the same knob:
//! - the WAL on, no fsync per write unless the write asks for `Sync`
//!   (`WriteOptions::set_sync`); `--disable_wal=1` sets `disable_wal` per write, which
//!   is RocksDB's own WAL-less path;
//! - block-based tables with a 10 bits/key bloom filter and an LRU block cache of
//!   `--cache_size` (64 MiB by default); compression none unless `--compression=zstd`;
//! - `--compaction_style=leveled` (and the default `hca`, which RocksDB does not have)
//!   runs RocksDB's leveled compaction with dynamic level sizes;
//!   `--compaction_style=tiered` runs its universal compaction;
//! - everything else at RocksDB's defaults (64 MiB write buffer, 2 background jobs);
//! - `--sync_writer=1` writes to a second column family, `side`.
//!
//! Reads lend RocksDB's pinned slice to the visitor (no copy); a scan is one raw
//! iterator.

use std::sync::Arc;

use ::rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompactionStyle, DBCompressionType,
    Options, WriteBatch, WriteOptions, DB,
};

use super::peer_meter::{PeerFigures, PeerMeter};
use super::{visit_found, warn_unsupported, Supported};
use crate::engine::{
    Batch, BenchEngine, CompactionStyle, Compression, Direction, Durability, EngineConfig,
    EngineError,
};

const SUPPORTED: Supported = Supported {
    compression: true,
    compaction_styles: &[CompactionStyle::Leveled, CompactionStyle::Tiered],
    value_threshold: false,
    bypass: true,
};

const SIDE_FAMILY: &str = "side";

/// A RocksDB database opened for the benchmarks.
pub struct RocksDbEngine {
    db: DB,
    meter: PeerMeter,
    /// The configured durability, which deletes get.
    durability: Durability,
    _cache: Cache,
}

fn err(e: ::rocksdb::Error) -> EngineError {
    EngineError::new(e.to_string())
}

fn write_options(durability: Durability) -> WriteOptions {
    let mut options = WriteOptions::default();
    match durability {
        Durability::Sync => options.set_sync(true),
        Durability::Buffered => {}
        Durability::Bypass => options.disable_wal(true),
    }
    options
}

/// Opens RocksDB on `config.path`.
///
/// # Errors
/// RocksDB's open error.
pub fn open(config: &EngineConfig) -> Result<Arc<dyn BenchEngine>, EngineError> {
    warn_unsupported("rocksdb", config, SUPPORTED);
    let cache = Cache::new_lru_cache(config.cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_block_based_table_factory(&table);
    options.set_compression_type(match config.compression {
        Compression::None => DBCompressionType::None,
        Compression::Zstd => DBCompressionType::Zstd,
    });
    match config.compaction_style {
        CompactionStyle::Tiered => options.set_compaction_style(DBCompactionStyle::Universal),
        CompactionStyle::Leveled | CompactionStyle::Hca => {
            options.set_compaction_style(DBCompactionStyle::Level);
            options.set_level_compaction_dynamic_level_bytes(true);
        }
    }
    let families = vec![
        ColumnFamilyDescriptor::new(::rocksdb::DEFAULT_COLUMN_FAMILY_NAME, options.clone()),
        ColumnFamilyDescriptor::new(SIDE_FAMILY, options.clone()),
    ];
    let db = DB::open_cf_descriptors(&options, &config.path, families).map_err(err)?;
    Ok(Arc::new(RocksDbEngine {
        db,
        meter: PeerMeter::new(&config.path),
        durability: config.durability,
        _cache: cache,
    }))
}

impl BenchEngine for RocksDbEngine {
    fn name(&self) -> &str {
        "rocksdb"
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> Result<(), EngineError> {
        self.meter.wrote(key.len() + value.len());
        self.db
            .put_opt(key, value, &write_options(durability))
            .map_err(err)
    }

    fn write_batch(&self, batch: &Batch, durability: Durability) -> Result<(), EngineError> {
        let mut b = WriteBatch::default();
        for (key, value) in batch.iter() {
            self.meter.wrote(key.len() + value.len());
            b.put(key, value);
        }
        self.db
            .write_opt(b, &write_options(durability))
            .map_err(err)
    }

    fn put_side_sync(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        self.meter.wrote(key.len() + value.len());
        let side = self
            .db
            .cf_handle(SIDE_FAMILY)
            .ok_or_else(|| EngineError::new("rocksdb: the side column family is missing"))?;
        self.db
            .put_cf_opt(side, key, value, &write_options(Durability::Sync))
            .map_err(err)
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, EngineError> {
        Ok(visit_found(self.db.get_pinned(key).map_err(err)?, visit))
    }

    fn delete(&self, key: &[u8]) -> Result<(), EngineError> {
        self.meter.wrote(key.len());
        self.db
            .delete_opt(key, &write_options(self.durability))
            .map_err(err)
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
        let mut it = self.db.raw_iterator();
        match (direction, from) {
            (Direction::Forward, None) => it.seek_to_first(),
            (Direction::Forward, Some(k)) => it.seek(k),
            (Direction::Reverse, None) => it.seek_to_last(),
            (Direction::Reverse, Some(k)) => it.seek_for_prev(k),
        }
        let mut n = 0;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            visit(k, v);
            n += 1;
            if n == limit {
                break;
            }
            match direction {
                Direction::Forward => it.next(),
                Direction::Reverse => it.prev(),
            }
        }
        it.status().map_err(err)?;
        Ok(n)
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.db.flush().map_err(err)
    }

    fn compact(&self) -> Result<(), EngineError> {
        self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    fn stats_line(&self) -> Option<String> {
        let l0_files = self
            .db
            .property_int_value("rocksdb.num-files-at-level0")
            .ok()
            .flatten();
        let figures = PeerFigures {
            l0_files,
            ..PeerFigures::default()
        };
        Some(self.meter.stats_line(self, figures))
    }

    fn stats_text(&self) -> Option<String> {
        Some(self.meter.stats_text())
    }

    fn close(&self) -> Result<(), EngineError> {
        // Everything acknowledged is made durable; the handle closes when dropped.
        self.db.flush().map_err(err)?;
        self.db.flush_wal(true).map_err(err)
    }
}
