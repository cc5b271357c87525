//! Sorted tables (SSTables): immutable files of `(internal key, value)` entries in
//! [`crate::key::compare_internal`] order, written once by flush or compaction and
//! read by point lookups and iterators. The byte layout is specified in
//! `docs/format/table.md`.
//!
//! - [`block`]: data and index blocks (prefix-compressed keys, restart points) and
//!   the cursor over one block;
//! - [`filter`]: the per-table bloom filter over user keys;
//! - [`format`](mod@format): block handles, block trailers (compression type + CRC32), the
//!   properties block and the fixed-size footer;
//! - [`builder`]: [`TableBuilder`], which streams blocks to a file with bounded memory;
//! - [`reader`]: [`Table`] (an open table: point lookups through the bloom filter,
//!   the index and the [`crate::cache::BlockCache`]) and [`TableIter`].
//!
//! Trade-offs: the index, filter and properties blocks are read once at open and
//! pinned in memory for the table's lifetime (not charged to the block cache); data
//! blocks go through the cache, except uncompressed blocks of a memory-mapped table,
//! which are served as zero-copy slices of the map and checksummed on every read.

pub mod block;
pub mod builder;
pub mod filter;
pub mod format;
pub mod reader;

pub use block::{Block, BlockBuilder, BlockIter};
pub use builder::TableBuilder;
pub use filter::{BloomFilter, BloomFilterBuilder};
pub use format::{BlockHandle, Footer, TableProperties};
pub use reader::{Table, TableIter};

use crate::error::{Error, Result};

/// Per-block compression of data blocks. Stored on disk as the block trailer's type
/// byte ([`Compression::to_u8`]); values are only ever added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Blocks are stored as they are (type byte `0`).
    #[default]
    None,
    /// Blocks are compressed with zstd at level [`ZSTD_LEVEL`] (type byte `1`) when
    /// that saves at least 12.5 %; otherwise the block is stored uncompressed.
    Zstd,
}

/// The zstd level used for [`Compression::Zstd`]: the fastest level, because the
/// host's CPUs are busy feeding accelerators.
pub const ZSTD_LEVEL: i32 = 1;

impl Compression {
    /// The trailer's type byte for this compression.
    pub fn to_u8(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
        }
    }

    /// Decodes a trailer's type byte; `None` if unknown.
    pub fn from_u8(v: u8) -> Option<Compression> {
        match v {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Largest accepted [`TableBuildOptions::block_size`]: 256 MiB.
pub const MAX_BLOCK_SIZE: usize = 256 << 20;
/// Largest accepted [`TableBuildOptions::restart_interval`].
pub const MAX_RESTART_INTERVAL: usize = 1 << 16;
/// Largest accepted [`TableBuildOptions::bloom_bits_per_key`].
pub const MAX_BLOOM_BITS_PER_KEY: u32 = 64;

/// How a [`TableBuilder`] lays out a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableBuildOptions {
    /// Target uncompressed size of a data block in bytes; a block is cut once it
    /// reaches this size, so it may exceed it by one entry. Default 4 KiB. Larger
    /// blocks compress better and make the index smaller; smaller ones make point
    /// reads touch fewer bytes.
    pub block_size: usize,
    /// Entries between restart points (full keys) in data blocks. Default 16. Smaller
    /// values speed up seeks at the cost of less prefix compression.
    pub restart_interval: usize,
    /// Bloom filter bits per distinct user key; default 10 (about 1 % false
    /// positives). `0` writes no filter (for tables that are only scanned).
    pub bloom_bits_per_key: u32,
    /// Compression of data blocks. Default [`Compression::None`].
    pub compression: Compression,
}

impl Default for TableBuildOptions {
    fn default() -> Self {
        TableBuildOptions {
            block_size: 4096,
            restart_interval: 16,
            bloom_bits_per_key: 10,
            compression: Compression::None,
        }
    }
}

impl TableBuildOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `block_size` is 0 or above [`MAX_BLOCK_SIZE`],
    /// `restart_interval` is 0 or above [`MAX_RESTART_INTERVAL`], or
    /// `bloom_bits_per_key` is above [`MAX_BLOOM_BITS_PER_KEY`].
    pub fn validate(&self) -> Result<()> {
        if self.block_size == 0 || self.block_size > MAX_BLOCK_SIZE {
            return Err(Error::InvalidArgument(format!(
                "table block_size {} must be between 1 and {MAX_BLOCK_SIZE} bytes",
                self.block_size
            )));
        }
        if self.restart_interval == 0 || self.restart_interval > MAX_RESTART_INTERVAL {
            return Err(Error::InvalidArgument(format!(
                "table restart_interval {} must be between 1 and {MAX_RESTART_INTERVAL}",
                self.restart_interval
            )));
        }
        if self.bloom_bits_per_key > MAX_BLOOM_BITS_PER_KEY {
            return Err(Error::InvalidArgument(format!(
                "bloom_bits_per_key {} must be at most {MAX_BLOOM_BITS_PER_KEY} (0 disables \
                 the filter)",
                self.bloom_bits_per_key
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_nonsense_is_rejected() {
        TableBuildOptions::default().validate().unwrap();
        for bad in [
            TableBuildOptions {
                block_size: 0,
                ..Default::default()
            },
            TableBuildOptions {
                restart_interval: 0,
                ..Default::default()
            },
            TableBuildOptions {
                bloom_bits_per_key: 65,
                ..Default::default()
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))));
        }
    }

    #[test]
    fn compression_type_bytes_are_stable() {
        assert_eq!(Compression::None.to_u8(), 0);
        assert_eq!(Compression::Zstd.to_u8(), 1);
        assert_eq!(Compression::from_u8(1), Some(Compression::Zstd));
        assert_eq!(Compression::from_u8(2), None);
    }
}
