//! [`TableBuilder`]: writes a table from entries added in order, as flush and
//! compaction produce them.
//!
//! Memory is bounded: the builder holds the current data block, the index block
//! (one short entry per data block), one 8-byte hash per distinct user key for the
//! filter, and a write buffer of at most [`WRITE_BUFFER_SIZE`] bytes that is
//! appended to the file whenever it fills. Index keys are shortened separators (a
//! short user key between two blocks) to keep the pinned index small.
//!
//! File order: data blocks, filter block, properties block, index block, footer
//! (spec: `docs/format/table.md`). The file is synced by [`TableBuilder::finish`];
//! making its directory entry durable is the caller's job.

use std::cmp::Ordering;
use std::sync::Arc;

use strata_wal::FsFile;

use super::block::BlockBuilder;
use super::filter::BloomFilterBuilder;
use super::format::{
    compress_block, push_trailer, BlockHandle, Footer, TableProperties, BLOCK_TRAILER_LEN,
    FORMAT_VERSION,
};
use super::{Compression, TableBuildOptions, ZSTD_LEVEL};
use crate::error::{Error, Result};
use crate::key::{compare_internal, parse_internal_key, ValueKind, MAX_KEY_LEN, MAX_SEQ};

/// Bytes gathered before one append to the file.
pub const WRITE_BUFFER_SIZE: usize = 256 * 1024;

/// Restart interval of the index block: every entry is a full key, so a lookup
/// is a plain binary search.
pub const INDEX_RESTART_INTERVAL: usize = 1;

/// Writes one table. Add entries with [`TableBuilder::add`] in strictly increasing
/// [`compare_internal`] order, then call [`TableBuilder::finish`]. Dropping a builder
/// without finishing leaves a partial file that has no footer (opening it fails);
/// the caller deletes it.
pub struct TableBuilder {
    file: Arc<dyn FsFile>,
    opts: TableBuildOptions,
    /// Bytes placed so far: written to the file or waiting in `out`.
    offset: u64,
    out: Vec<u8>,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    /// Handle of the last data block, whose index entry waits for the next key.
    pending_index: Option<BlockHandle>,
    filter: Option<BloomFilterBuilder>,
    last_key: Vec<u8>,
    props: TableProperties,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    compressed: Vec<u8>,
    scratch: Vec<u8>,
    separator: Vec<u8>,
    /// Set after a failed write: the file's contents are unknown.
    failed: bool,
}

impl std::fmt::Debug for TableBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBuilder")
            .field("path", &self.file.path())
            .field("opts", &self.opts)
            .field("offset", &self.offset)
            .field("entries", &self.props.entries)
            .finish_non_exhaustive()
    }
}

impl TableBuilder {
    /// A builder writing to `file`, which must be empty (freshly created).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the options do not validate or the file is not
    /// empty; I/O errors reading the file's length; [`Error::InvalidArgument`] if
    /// zstd cannot allocate a compression context.
    pub fn new(file: Arc<dyn FsFile>, opts: TableBuildOptions) -> Result<TableBuilder> {
        opts.validate()?;
        let len = file.len()?;
        if len != 0 {
            return Err(Error::InvalidArgument(format!(
                "table file {} must be empty to build a table into it (it has {len} bytes)",
                file.path().display()
            )));
        }
        let compressor = match opts.compression {
            Compression::None => None,
            Compression::Zstd => Some(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| {
                Error::InvalidArgument(format!("cannot create a zstd compressor: {e}"))
            })?),
        };
        Ok(TableBuilder {
            file,
            opts,
            offset: 0,
            out: Vec::new(),
            data_block: BlockBuilder::new(opts.restart_interval),
            index_block: BlockBuilder::new(INDEX_RESTART_INTERVAL),
            pending_index: None,
            filter: (opts.bloom_bits_per_key > 0)
                .then(|| BloomFilterBuilder::new(opts.bloom_bits_per_key)),
            last_key: Vec::new(),
            props: TableProperties {
                format_version: FORMAT_VERSION,
                ..TableProperties::default()
            },
            compressor,
            compressed: Vec::new(),
            scratch: Vec::new(),
            separator: Vec::new(),
            failed: false,
        })
    }

    /// Adds an entry. `ikey` is an internal key (see [`crate::key`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `ikey` is not a well-formed internal key, its
    /// user key is longer than [`MAX_KEY_LEN`], the value is longer than
    /// [`crate::key::MAX_VALUE_LEN`], or `ikey` does not sort strictly after the
    /// previous key; I/O errors appending a full block (after which every call
    /// fails).
    pub fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        self.check_usable()?;
        let Some(parsed) = parse_internal_key(ikey) else {
            return Err(Error::InvalidArgument(format!(
                "table key of {} bytes is not an internal key (user key + 8-byte trailer with a known kind)",
                ikey.len()
            )));
        };
        if parsed.user_key.len() > MAX_KEY_LEN {
            return Err(Error::InvalidArgument(format!(
                "key of {} bytes is longer than the maximum of {MAX_KEY_LEN}",
                parsed.user_key.len()
            )));
        }
        if value.len() as u64 > crate::key::MAX_VALUE_LEN {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes is longer than the maximum of {}",
                value.len(),
                crate::key::MAX_VALUE_LEN
            )));
        }
        let first = self.props.entries == 0;
        if !first && compare_internal(ikey, &self.last_key) != Ordering::Greater {
            return Err(Error::InvalidArgument(format!(
                "table keys must be added in strictly increasing order; {} does not sort after {}",
                hex(ikey),
                hex(&self.last_key)
            )));
        }
        if let Some(handle) = self.pending_index.take() {
            separator(&self.last_key, ikey, &mut self.separator);
            self.add_index_entry(handle);
        }
        if let Some(filter) = &mut self.filter {
            if first || crate::key::user_key(&self.last_key) != parsed.user_key {
                filter.add_key(parsed.user_key);
            }
        }
        let p = &mut self.props;
        if first {
            p.smallest_key = ikey.to_vec();
            p.min_seq = parsed.seq;
            p.max_seq = parsed.seq;
        } else {
            p.min_seq = p.min_seq.min(parsed.seq);
            p.max_seq = p.max_seq.max(parsed.seq);
        }
        p.entries += 1;
        if parsed.kind == ValueKind::Delete {
            p.deletions += 1;
        }
        p.raw_key_bytes += ikey.len() as u64;
        p.raw_value_bytes += value.len() as u64;
        self.last_key.clear();
        self.last_key.extend_from_slice(ikey);
        self.data_block.add(ikey, value);
        if self.data_block.size_estimate() >= self.opts.block_size {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Bytes the table would have if finished now, roughly (data written or
    /// buffered, plus the open block). Flush and compaction cut output files by it.
    pub fn estimated_size(&self) -> u64 {
        self.offset
            + self.data_block.size_estimate() as u64
            + self.index_block.size_estimate() as u64
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.props.entries
    }

    /// Writes the last data block, the filter, properties and index blocks and the
    /// footer, then syncs the file. A table with no entries is valid (it has no data
    /// blocks and empty smallest/largest keys).
    ///
    /// # Errors
    /// I/O errors appending or syncing; the file is then unusable.
    pub fn finish(mut self) -> Result<TableProperties> {
        self.check_usable()?;
        if !self.data_block.is_empty() {
            self.flush_data_block()?;
        }
        if let Some(handle) = self.pending_index.take() {
            successor(&self.last_key, &mut self.separator);
            self.add_index_entry(handle);
        }
        self.props.largest_key = self.last_key.clone();
        let filter = match self.filter.take() {
            Some(f) => {
                let contents = f.finish();
                self.write_block(&contents, Compression::None)?
            }
            None => BlockHandle::default(),
        };
        let properties = self.props.encode();
        let properties = self.write_block(&properties, Compression::None)?;
        let mut index_block = std::mem::replace(&mut self.index_block, BlockBuilder::new(1));
        let index = self.write_block(index_block.finish(), Compression::None)?;
        let footer = Footer {
            index,
            filter,
            properties,
            format_version: FORMAT_VERSION,
        };
        let footer = footer.encode();
        self.out.extend_from_slice(&footer);
        self.offset += footer.len() as u64;
        self.flush_out()?;
        let synced = self.file.sync_data();
        if synced.is_err() {
            self.failed = true;
        }
        synced?;
        Ok(self.props)
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::Poisoned {
                cause: format!(
                    "an earlier write to table file {} failed",
                    self.file.path().display()
                ),
            });
        }
        Ok(())
    }

    fn add_index_entry(&mut self, handle: BlockHandle) {
        self.scratch.clear();
        handle.encode_to(&mut self.scratch);
        self.index_block.add(&self.separator, &self.scratch);
    }

    fn flush_data_block(&mut self) -> Result<()> {
        let mut block = std::mem::replace(&mut self.data_block, BlockBuilder::new(1));
        let result = self.write_block(block.finish(), self.opts.compression);
        block.reset();
        self.data_block = block;
        let handle = result?;
        self.props.data_blocks += 1;
        self.props.data_bytes += handle.size + BLOCK_TRAILER_LEN as u64;
        self.pending_index = Some(handle);
        Ok(())
    }

    /// Places a block (compressed if asked and worthwhile) and its trailer in the
    /// write buffer, flushing the buffer when full.
    fn write_block(&mut self, raw: &[u8], compression: Compression) -> Result<BlockHandle> {
        let use_zstd = compression == Compression::Zstd
            && match &mut self.compressor {
                Some(c) => compress_block(c, raw, &mut self.compressed, &mut self.scratch),
                None => false,
            };
        let (stored, kind) = if use_zstd {
            (&self.compressed[..], Compression::Zstd)
        } else {
            (raw, Compression::None)
        };
        let handle = BlockHandle {
            offset: self.offset,
            size: stored.len() as u64,
        };
        self.out.extend_from_slice(stored);
        push_trailer(&mut self.out, stored, kind);
        self.offset += (stored.len() + BLOCK_TRAILER_LEN) as u64;
        if self.out.len() >= WRITE_BUFFER_SIZE {
            self.flush_out()?;
        }
        Ok(handle)
    }

    fn flush_out(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = self.file.append(&self.out);
        if written.is_err() {
            self.failed = true;
        }
        written?;
        self.out.clear();
        if self.out.capacity() > 2 * WRITE_BUFFER_SIZE {
            self.out.shrink_to(WRITE_BUFFER_SIZE);
        }
        Ok(())
    }
}

/// The trailer that sorts first among a user key's internal keys.
const MAX_TRAILER: u64 = (MAX_SEQ << 8) | 0xff;

/// Writes into `out` an index key `s` with `last <= s < next` (both internal keys,
/// `last < next`): a shortened user key with the maximal trailer when one exists
/// strictly between the two user keys, else `last` itself.
pub fn separator(last: &[u8], next: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let a = crate::key::user_key(last);
    let b = crate::key::user_key(next);
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if common < a.len() && common < b.len() {
        let c = a[common];
        if c < 0xff && c + 1 < b[common] && common + 1 < a.len() {
            out.extend_from_slice(&a[..common]);
            out.push(c + 1);
            out.extend_from_slice(&MAX_TRAILER.to_le_bytes());
            return;
        }
    }
    out.extend_from_slice(last);
}

/// Writes into `out` an index key `s >= last` for the last block: the shortest user
/// key above `last`'s with the maximal trailer when that is shorter, else `last`.
pub fn successor(last: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let a = crate::key::user_key(last);
    if let Some(i) = a.iter().position(|&c| c != 0xff) {
        if i + 1 < a.len() {
            out.extend_from_slice(&a[..i]);
            out.push(a[i] + 1);
            out.extend_from_slice(&MAX_TRAILER.to_le_bytes());
            return;
        }
    }
    out.extend_from_slice(last);
}

fn hex(b: &[u8]) -> String {
    let shown: String = b.iter().take(40).map(|c| format!("{c:02x}")).collect();
    if b.len() > 40 {
        format!("{shown}… ({} bytes)", b.len())
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::internal_key;
    use proptest::prelude::*;
    use std::path::Path;
    use strata_wal::{FaultFs, Fs, SeqNo};

    fn ik(uk: &[u8], seq: u64) -> Vec<u8> {
        internal_key(uk, SeqNo(seq), ValueKind::Put)
    }

    proptest! {
        #[test]
        fn separator_lies_between_and_successor_above(
            a in proptest::collection::vec(any::<u8>(), 0..8), sa in 0u64..10,
            b in proptest::collection::vec(any::<u8>(), 0..8), sb in 0u64..10,
        ) {
            let (x, y) = (ik(&a, sa), ik(&b, sb));
            let (lo, hi) = match compare_internal(&x, &y) {
                Ordering::Less => (x, y),
                Ordering::Greater => (y, x),
                Ordering::Equal => return Ok(()),
            };
            let mut s = Vec::new();
            separator(&lo, &hi, &mut s);
            prop_assert_ne!(compare_internal(&s, &lo), Ordering::Less);
            prop_assert_eq!(compare_internal(&s, &hi), Ordering::Less);
            prop_assert!(s.len() <= lo.len());
            successor(&hi, &mut s);
            prop_assert_ne!(compare_internal(&s, &hi), Ordering::Less);
            prop_assert!(s.len() <= hi.len());
        }
    }

    #[test]
    fn separator_shortens_distant_keys() {
        let mut s = Vec::new();
        separator(&ik(b"apple-pie", 3), &ik(b"zebra", 9), &mut s);
        assert_eq!(crate::key::user_key(&s), b"b");
        successor(&ik(b"\xff\xffabc", 3), &mut s);
        assert_eq!(crate::key::user_key(&s), b"\xff\xffb");
    }

    #[test]
    fn out_of_order_and_malformed_keys_are_rejected() {
        let fs = FaultFs::new(1);
        let f = fs.create(Path::new("/t.sst")).unwrap();
        let mut b = TableBuilder::new(f, TableBuildOptions::default()).unwrap();
        b.add(&ik(b"b", 5), b"v").unwrap();
        for bad in [ik(b"b", 5), ik(b"b", 6), ik(b"a", 1), b"short".to_vec()] {
            assert!(
                matches!(b.add(&bad, b"v"), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        b.add(&ik(b"b", 4), b"v").unwrap();
        assert_eq!(b.entries(), 2);
        let props = b.finish().unwrap();
        assert_eq!((props.min_seq, props.max_seq), (SeqNo(4), SeqNo(5)));
    }

    #[test]
    fn non_empty_file_and_bad_options_are_rejected() {
        let fs = FaultFs::new(1);
        let f = fs.create(Path::new("/t.sst")).unwrap();
        let bad = TableBuildOptions {
            block_size: 0,
            ..Default::default()
        };
        assert!(TableBuilder::new(Arc::clone(&f), bad).is_err());
        f.append(b"x").unwrap();
        assert!(TableBuilder::new(f, TableBuildOptions::default()).is_err());
    }

    #[test]
    fn write_failure_poisons_the_builder() {
        use strata_wal::{FaultKind, FaultOp, FaultRule};
        let fs = FaultFs::new(1);
        let f = fs.create(Path::new("/t.sst")).unwrap();
        let opts = TableBuildOptions {
            block_size: 64,
            ..Default::default()
        };
        let mut b = TableBuilder::new(f, opts).unwrap();
        fs.inject(FaultRule::from_nth_on(FaultOp::Write, 1, FaultKind::Eio));
        let mut failed = false;
        for i in 0..100_000u32 {
            if b.add(&ik(format!("{i:08}").as_bytes(), 1), &[7; 100])
                .is_err()
            {
                failed = true;
                break;
            }
        }
        assert!(failed, "the write buffer never reached the file");
        assert!(b.add(&ik(b"zzzzzzzzz", 1), b"v").is_err());
        assert!(b.finish().is_err());
    }
}
