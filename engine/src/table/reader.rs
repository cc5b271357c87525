//! [`Table`]: an open, immutable table, and [`TableIter`], its two-level cursor
//! (index block → data block).
//!
//! Open reads the footer, then the properties, filter and index blocks, checks them
//! and keeps them in memory. A point read asks the bloom filter first (no allocation
//! and no I/O when it says no), then binary-searches the index and reads one data
//! block. Data blocks come from the [`BlockCache`] when it holds them; otherwise they
//! are read (memory map slice or positional read), checksummed, decompressed and
//! inserted. Uncompressed blocks of a memory-mapped table skip the cache: they are
//! zero-copy slices of the map, checksummed on every read.
//!
//! Every malformed byte is reported as [`Error::Corruption`] naming the file and the
//! offset of the block (or footer field) that failed a check.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_wal::{FileMap, FsFile, SeqNo};

use super::block::{Block, BlockIter};
use super::filter::{bloom_hash, BloomFilter};
use super::format::{
    decompress_block, verify_block, BlockHandle, Footer, TableProperties, BLOCK_TRAILER_LEN,
    FOOTER_LEN,
};
use super::Compression;
use crate::cache::BlockCache;
use crate::error::{Error, Result};
use crate::ids::TableId;
use crate::iter::InternalIterator;
use crate::key::{parse_internal_key, ValueKind};
use crate::memtable::MemKey;

/// Lets a [`FileMap`] own the memory behind a [`Bytes`].
struct MapOwner(FileMap);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Where block bytes come from.
enum Source {
    /// The whole file, memory-mapped (or an owned copy on file systems without maps).
    Mapped(Bytes),
    /// Positional reads through the file handle.
    Positional,
}

/// An open table. Immutable and shared as `Arc<Table>`; every method takes `&self`
/// and may run concurrently.
pub struct Table {
    id: TableId,
    src: FileSource,
    path: Arc<Path>,
    file_size: u64,
    cache: Option<Arc<BlockCache>>,
    footer: Footer,
    index: Block,
    filter: Option<BloomFilter>,
    props: TableProperties,
    /// Data blocks (with trailers) end at or before this offset.
    data_end: u64,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("file_size", &self.file_size)
            .field("mmap", &self.is_mapped())
            .field("entries", &self.props.entries)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Opens the table in `file`. `cache` (if given and not of capacity 0) caches
    /// decompressed data blocks under `id`. With `use_mmap`, the file is mapped once
    /// ([`FsFile::map`]) and blocks are slices of the map; otherwise blocks are read
    /// with positional reads.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the file and offset if the file is too short, or
    /// the footer, properties, filter or index block fails a check; I/O errors from
    /// reading or mapping.
    pub fn open(
        file: Arc<dyn FsFile>,
        id: TableId,
        cache: Option<Arc<BlockCache>>,
        use_mmap: bool,
    ) -> Result<Arc<Table>> {
        let path: Arc<Path> = Arc::from(file.path());
        let (source, file_size) = if use_mmap {
            let map = Bytes::from_owner(MapOwner(file.map()?));
            let len = map.len() as u64;
            (Source::Mapped(map), len)
        } else {
            (Source::Positional, file.len()?)
        };
        let Some(footer_offset) = file_size.checked_sub(FOOTER_LEN as u64) else {
            return Err(Error::corruption(
                &*path,
                0,
                format!(
                    "table file of {file_size} bytes is shorter than its {FOOTER_LEN}-byte footer"
                ),
            ));
        };
        let footer_bytes = match &source {
            Source::Mapped(map) => map.slice(map.len() - FOOTER_LEN..),
            Source::Positional => {
                let mut buf = vec![0u8; FOOTER_LEN];
                file.read_exact_at(footer_offset, &mut buf)?;
                Bytes::from(buf)
            }
        };
        let footer = Footer::decode(&footer_bytes, &path, footer_offset)?;
        let mut data_end = footer.index.offset.min(footer.properties.offset);
        if footer.filter.size > 0 {
            data_end = data_end.min(footer.filter.offset);
        }
        let src = FileSource {
            file,
            path: Arc::clone(&path),
            file_size,
            source,
        };
        let props = src.read_plain(footer.properties, "properties")?;
        let props = TableProperties::decode(&props, &path, footer.properties.offset)?;
        let filter = if footer.filter.size > 0 {
            let bytes = src.read_plain(footer.filter, "filter")?;
            Some(BloomFilter::decode(bytes, &path, footer.filter.offset)?)
        } else {
            None
        };
        let index = src.read_plain(footer.index, "index")?;
        let index = Block::decode(index, Arc::clone(&path), footer.index.offset)?;
        Ok(Arc::new(Table {
            id,
            src,
            path,
            file_size,
            cache: cache.filter(|c| c.capacity() > 0),
            footer,
            index,
            filter,
            props,
            data_end,
        }))
    }

    /// The table's id.
    pub fn id(&self) -> TableId {
        self.id
    }

    /// What the table holds, as recorded when it was built.
    pub fn properties(&self) -> &TableProperties {
        &self.props
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decoded footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Whether blocks are read from a memory map.
    pub fn is_mapped(&self) -> bool {
        matches!(self.src.source, Source::Mapped(_))
    }

    /// Whether `user_key` may be in the table (`false`: certainly not). Always
    /// `true` for a table built without a filter.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_contain(user_key))
    }

    /// The newest version of `user_key` with a sequence number at or below
    /// `snapshot`: its sequence number, kind and value (empty for a tombstone). The
    /// value is a slice of the cached block, never a copy.
    ///
    /// # Errors
    /// [`Error::Corruption`] (file and block offset) if the index or the data block
    /// fails a check; I/O errors reading the block.
    pub fn get(
        &self,
        user_key: &[u8],
        snapshot: SeqNo,
    ) -> Result<Option<(SeqNo, ValueKind, Bytes)>> {
        self.get_hashed(user_key, bloom_hash(user_key), snapshot)
    }

    /// [`Table::get`] with the key's [`bloom_hash`] computed by the caller.
    ///
    /// # Errors
    /// As [`Table::get`].
    pub fn get_hashed(
        &self,
        user_key: &[u8],
        hash: u64,
        snapshot: SeqNo,
    ) -> Result<Option<(SeqNo, ValueKind, Bytes)>> {
        if !self
            .filter
            .as_ref()
            .is_none_or(|f| f.may_contain_hash(hash))
        {
            return Ok(None);
        }
        // Inline when short: a point read allocates nothing for its target.
        let target = MemKey::seek(user_key, snapshot);
        let target = target.as_bytes();
        let mut index = self.index.iter();
        index.seek(target)?;
        if !index.valid() {
            return Ok(None);
        }
        let handle = self.decode_handle(index.value_slice())?;
        let block = self.data_block(handle)?;
        let mut it = block.iter();
        // The index key of this block is at or above the target and below the next
        // block's first key, so if the block holds no entry at or above the target,
        // no version of `user_key` exists in the table.
        it.seek(target)?;
        if !it.valid() {
            return Ok(None);
        }
        let Some(parsed) = parse_internal_key(it.key()) else {
            return Err(Error::corruption(
                &*self.path,
                handle.offset,
                format!(
                    "data block holds a malformed internal key of {} bytes",
                    it.key().len()
                ),
            ));
        };
        if parsed.user_key != user_key {
            return Ok(None);
        }
        Ok(Some((parsed.seq, parsed.kind, it.value())))
    }

    /// A cursor over every entry of the table, not yet positioned. It owns a
    /// reference to the table, so it lives as long as needed.
    pub fn iter(self: &Arc<Self>) -> TableIter {
        TableIter {
            table: Arc::clone(self),
            index: self.index.iter(),
            data: None,
            data_offset: u64::MAX,
        }
    }

    /// Decodes an index entry's value into a handle of a data block inside the data
    /// area.
    fn decode_handle(&self, value: &[u8]) -> Result<BlockHandle> {
        let handle = BlockHandle::decode(value).ok_or_else(|| {
            Error::corruption(
                &*self.path,
                self.footer.index.offset,
                "index block entry holds a malformed block handle",
            )
        })?;
        if handle
            .end_with_trailer()
            .is_none_or(|end| end > self.data_end)
        {
            return Err(Error::corruption(
                &*self.path,
                self.footer.index.offset,
                format!(
                    "index block points at a data block (offset {}, size {}) outside the data area ending at {}",
                    handle.offset, handle.size, self.data_end
                ),
            ));
        }
        Ok(handle)
    }

    /// The decoded data block at `handle`, through the cache.
    fn data_block(&self, handle: BlockHandle) -> Result<Block> {
        let contents = self.data_block_contents(handle)?;
        Block::decode(contents, Arc::clone(&self.path), handle.offset)
    }

    fn data_block_contents(&self, handle: BlockHandle) -> Result<Bytes> {
        if let Source::Mapped(map) = &self.src.source {
            // Uncompressed blocks of a map are served from the map itself.
            let type_at = usize::try_from(handle.offset.saturating_add(handle.size)).ok();
            let compressed = type_at
                .and_then(|at| map.get(at))
                .is_some_and(|&t| t != Compression::None.to_u8());
            if !compressed {
                return self.src.read_plain(handle, "data");
            }
        }
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.get(self.id, handle.offset) {
                return Ok(hit);
            }
        }
        let contents = self.src.read_plain(handle, "data")?;
        if let Some(cache) = &self.cache {
            cache.insert(self.id, handle.offset, contents.clone());
        }
        Ok(contents)
    }
}

/// The file and how its blocks are read.
struct FileSource {
    file: Arc<dyn FsFile>,
    path: Arc<Path>,
    file_size: u64,
    source: Source,
}

impl FileSource {
    /// Reads the block at `handle` with its trailer and checks the checksum; returns
    /// the stored bytes and their compression.
    fn read_verified(&self, handle: BlockHandle, what: &str) -> Result<(Bytes, Compression)> {
        let corrupt = |reason: String| Error::corruption(&*self.path, handle.offset, reason);
        let range = handle
            .end_with_trailer()
            .filter(|&end| end <= self.file_size)
            .and_then(|end| {
                Some((
                    usize::try_from(handle.offset).ok()?,
                    usize::try_from(end).ok()?,
                ))
            });
        let Some((start, end)) = range else {
            return Err(corrupt(format!(
                "{what} block (offset {}, size {}) lies outside the file of {} bytes",
                handle.offset, handle.size, self.file_size
            )));
        };
        let stored_end = end - BLOCK_TRAILER_LEN;
        match &self.source {
            Source::Mapped(map) => {
                let Some(with_trailer) = map.get(start..end) else {
                    return Err(corrupt(format!(
                        "{what} block lies outside the mapped file"
                    )));
                };
                let c = verify_block(with_trailer, &self.path, handle.offset, what)?;
                Ok((map.slice(start..stored_end), c))
            }
            Source::Positional => {
                let mut buf = vec![0u8; end - start];
                self.file.read_exact_at(handle.offset, &mut buf)?;
                let c = verify_block(&buf, &self.path, handle.offset, what)?;
                buf.truncate(stored_end - start);
                Ok((Bytes::from(buf), c))
            }
        }
    }

    /// Reads, checks and (if needed) decompresses the block at `handle`.
    fn read_plain(&self, handle: BlockHandle, what: &str) -> Result<Bytes> {
        let (stored, c) = self.read_verified(handle, what)?;
        match c {
            Compression::None => Ok(stored),
            Compression::Zstd => Ok(Bytes::from(decompress_block(
                &stored,
                &self.path,
                handle.offset,
            )?)),
        }
    }
}

/// A two-level cursor over a [`Table`]: the index block picks a data block, a
/// [`BlockIter`] walks it. Owns an `Arc<Table>`, so it is `'static` and `Send`.
/// Keys are valid until the cursor moves; values are shared slices of the blocks.
pub struct TableIter {
    table: Arc<Table>,
    index: BlockIter,
    data: Option<BlockIter>,
    data_offset: u64,
}

impl fmt::Debug for TableIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableIter")
            .field("table", &self.table.id)
            .field("valid", &self.valid())
            .field("data_block", &self.data_offset)
            .finish()
    }
}

impl TableIter {
    /// The table this cursor walks.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    fn fail<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.data = None;
            self.data_offset = u64::MAX;
        }
        r
    }

    /// Points `data` at the block the index cursor is on (or nowhere).
    fn init_data_block(&mut self) -> Result<()> {
        if !self.index.valid() {
            self.data = None;
            self.data_offset = u64::MAX;
            return Ok(());
        }
        let handle = self.table.decode_handle(self.index.value_slice());
        let handle = self.fail(handle)?;
        if self.data.is_some() && self.data_offset == handle.offset {
            return Ok(());
        }
        let block = self.table.data_block(handle);
        let block = self.fail(block)?;
        self.data = Some(block.iter());
        self.data_offset = handle.offset;
        Ok(())
    }

    fn data_valid(&self) -> bool {
        self.data.as_ref().is_some_and(|d| d.valid())
    }

    fn skip_empty_forward(&mut self) -> Result<()> {
        while !self.data_valid() {
            if !self.index.valid() {
                self.data = None;
                return Ok(());
            }
            let r = self.index.next();
            self.fail(r)?;
            self.init_data_block()?;
            if let Some(d) = &mut self.data {
                let r = d.seek_to_first();
                self.fail(r)?;
            }
        }
        Ok(())
    }

    fn skip_empty_backward(&mut self) -> Result<()> {
        while !self.data_valid() {
            if !self.index.valid() {
                self.data = None;
                return Ok(());
            }
            let r = self.index.prev();
            self.fail(r)?;
            self.init_data_block()?;
            if let Some(d) = &mut self.data {
                let r = d.seek_to_last();
                self.fail(r)?;
            }
        }
        Ok(())
    }

    /// Runs `f` on the data cursor, if any, dropping it on error.
    fn on_data(&mut self, f: impl FnOnce(&mut BlockIter) -> Result<()>) -> Result<()> {
        match &mut self.data {
            Some(d) => {
                let r = f(d);
                self.fail(r)
            }
            None => Ok(()),
        }
    }
}

impl InternalIterator for TableIter {
    fn valid(&self) -> bool {
        self.data_valid()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        let r = self.index.seek_to_first();
        self.fail(r)?;
        self.init_data_block()?;
        self.on_data(|d| d.seek_to_first())?;
        self.skip_empty_forward()
    }

    fn seek_to_last(&mut self) -> Result<()> {
        let r = self.index.seek_to_last();
        self.fail(r)?;
        self.init_data_block()?;
        self.on_data(|d| d.seek_to_last())?;
        self.skip_empty_backward()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let r = self.index.seek(target);
        self.fail(r)?;
        self.init_data_block()?;
        self.on_data(|d| d.seek(target))?;
        self.skip_empty_forward()
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        // The first block whose index key is at or above the target holds the last
        // entry at or below it, unless all its entries are above the target (then
        // it is the previous block's last entry).
        let r = self.index.seek(target);
        self.fail(r)?;
        if !self.index.valid() {
            let r = self.index.seek_to_last();
            self.fail(r)?;
        }
        self.init_data_block()?;
        self.on_data(|d| d.seek_for_prev(target))?;
        self.skip_empty_backward()
    }

    fn next(&mut self) -> Result<()> {
        if !self.valid() {
            return Ok(());
        }
        self.on_data(|d| d.next())?;
        self.skip_empty_forward()
    }

    fn prev(&mut self) -> Result<()> {
        if !self.valid() {
            return Ok(());
        }
        self.on_data(|d| d.prev())?;
        self.skip_empty_backward()
    }

    fn key(&self) -> &[u8] {
        match &self.data {
            Some(d) => d.key(),
            None => &[],
        }
    }

    fn value(&self) -> Bytes {
        match &self.data {
            Some(d) => d.value(),
            None => Bytes::new(),
        }
    }
}
