//! Writing, reading and scanning value-log segment files through [`strata_wal::Fs`].
//!
//! One [`SegmentWriter`] appends to one segment (one writer per file, as `Fs`
//! requires). Appends are gathered in memory and written in pieces of about
//! [`WRITE_BUFFER_BYTES`], so a pointer is handed out before its record reaches the
//! file: the owner publishes pointers only after [`SegmentWriter::sync`], which writes
//! what is gathered and fsyncs. Reads are positional. A failed write poisons the
//! writer: what reached the disk is unknown, so nothing more is appended and the caller
//! must start a new segment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_wal::{Error, Fs, FsFile, Result, SeqNo};

use crate::format::{
    check_record, decode_record, encode_record, CheckedRecord, CheckedValue, Record, RecordHead,
    SegmentHeader, FLAG_ZSTD, MAX_KEY_LEN, MAX_VALUE_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::pointer::ValuePointer;

/// Appended records are written to the file once this many bytes are gathered (and at
/// every sync): one write per megabyte instead of one per value.
pub const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// The file name of segment `id`: `{id:06}.vlog`.
pub fn segment_file_name(id: u64) -> String {
    format!("{id:06}.vlog")
}

/// How values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VlogCompression {
    /// As given.
    #[default]
    None,
    /// zstd at this level, per value, kept only where it makes the value smaller.
    Zstd(i32),
}

/// Appends records to one segment.
pub struct SegmentWriter {
    file: Arc<dyn FsFile>,
    path: PathBuf,
    id: u64,
    len: u64,
    synced_len: u64,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    buf: Vec<u8>,
    poisoned: Option<String>,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl SegmentWriter {
    /// Creates segment `id` of `keyspace` in `dir`: writes and fsyncs its header, then
    /// fsyncs the directory, so the file exists durably before any pointer names it.
    ///
    /// # Errors
    /// I/O errors; [`Error::InvalidArgument`] for a zstd level zstd refuses.
    pub fn create(
        fs: &Arc<dyn Fs>,
        dir: &Path,
        id: u64,
        keyspace: u32,
        compression: VlogCompression,
    ) -> Result<Self> {
        let compressor = match compression {
            VlogCompression::None => None,
            VlogCompression::Zstd(level) => Some(
                zstd::bulk::Compressor::new(level)
                    .map_err(|e| Error::InvalidArgument(format!("zstd level {level}: {e}")))?,
            ),
        };
        let path = dir.join(segment_file_name(id));
        // Never over an existing segment: a reused id would erase values pointers name.
        if fs.exists(&path)? {
            return Err(Error::InvalidArgument(format!(
                "value-log segment {} already exists",
                path.display()
            )));
        }
        let file = fs.create(&path)?;
        file.append(&SegmentHeader { id, keyspace }.encode())?;
        file.sync_data()?;
        fs.sync_dir(dir)?;
        Ok(SegmentWriter {
            file,
            path,
            id,
            len: SEGMENT_HEADER_LEN as u64,
            synced_len: SEGMENT_HEADER_LEN as u64,
            compressor,
            buf: Vec::new(),
            poisoned: None,
        })
    }

    /// The segment id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes appended so far, header included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no record was appended yet.
    pub fn is_empty(&self) -> bool {
        self.len == SEGMENT_HEADER_LEN as u64
    }

    /// Bytes known durable (the last [`Self::sync`]).
    pub fn synced_len(&self) -> u64 {
        self.synced_len
    }

    /// Appends one record per `(key, seq, value)` and returns their pointers in order.
    /// The records are gathered in memory and reach the file in pieces; none is
    /// readable or durable before [`Self::sync`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a key or value past the format's limits (nothing
    /// is written then); I/O errors, after which the writer refuses every append.
    pub fn append_batch(&mut self, items: &[(&[u8], SeqNo, &[u8])]) -> Result<Vec<ValuePointer>> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        for (key, seq, value) in items {
            if key.len() > MAX_KEY_LEN || value.len() > MAX_VALUE_LEN {
                return Err(Error::InvalidArgument(format!(
                    "a value-log record holds keys up to {MAX_KEY_LEN} bytes and values up \
                     to {MAX_VALUE_LEN}; got {} and {}",
                    key.len(),
                    value.len()
                )));
            }
            if *seq == SeqNo::ZERO || *seq > SeqNo::MAX_ASSIGNABLE {
                return Err(Error::InvalidArgument(format!(
                    "sequence number {seq} out of range"
                )));
            }
        }
        let mut pointers = Vec::with_capacity(items.len());
        let mut offset = self.len;
        let buffered = self.buf.len();
        for (key, seq, value) in items {
            let compressed = match self.compressor.as_mut() {
                Some(c) => c.compress(value).ok().filter(|z| z.len() < value.len()),
                None => None,
            };
            let (flags, stored) = match &compressed {
                Some(z) => (FLAG_ZSTD, z.as_slice()),
                None => (0, *value),
            };
            let len = encode_record(
                &mut self.buf,
                self.id,
                flags,
                key,
                *seq,
                stored,
                value.len(),
            );
            // Within limits: a key of at most 64 KiB and a value below 4 GiB, stored
            // smaller or equal, cannot make a record past u32 by more than the header;
            // refuse that corner rather than wrap.
            let Ok(len32) = u32::try_from(len) else {
                self.buf.truncate(buffered);
                return Err(Error::InvalidArgument(
                    "a value-log record must stay below 4 GiB".into(),
                ));
            };
            pointers.push(ValuePointer {
                segment: self.id,
                offset,
                len: len32,
            });
            offset += len as u64;
        }
        self.len = offset;
        if self.buf.len() >= WRITE_BUFFER_BYTES {
            self.write_buffer()?;
        }
        Ok(pointers)
    }

    /// Writes the gathered records to the file.
    fn write_buffer(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.append(&self.buf) {
            self.poisoned = Some(format!("append to {} failed: {e}", self.path.display()));
            return Err(e);
        }
        self.buf.clear();
        Ok(())
    }

    /// Appends one record; see [`Self::append_batch`].
    ///
    /// # Errors
    /// As [`Self::append_batch`].
    pub fn append(&mut self, key: &[u8], seq: SeqNo, value: &[u8]) -> Result<ValuePointer> {
        let mut p = self.append_batch(&[(key, seq, value)])?;
        Ok(p.remove(0))
    }

    /// Makes every record appended so far durable.
    ///
    /// # Errors
    /// The fsync's error, after which the writer refuses every append.
    pub fn sync(&mut self) -> Result<()> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        if self.synced_len == self.len {
            return Ok(());
        }
        self.write_buffer()?;
        if let Err(e) = self.file.sync_data() {
            self.poisoned = Some(format!("fsync of {} failed: {e}", self.path.display()));
            return Err(e);
        }
        self.synced_len = self.len;
        Ok(())
    }

    /// The open file, for reads.
    pub fn file(&self) -> &Arc<dyn FsFile> {
        &self.file
    }
}

/// Reads and checks the record `ptr` names in `file` (segment `ptr.segment`); when
/// `key` is given, the record must hold that key.
///
/// # Errors
/// [`Error::Corruption`] naming the file and the record's offset when the pointer falls
/// outside the file's records, the checksum or lengths do not hold, the value does not
/// decompress, or the key differs; I/O errors.
pub fn read_value(file: &dyn FsFile, ptr: &ValuePointer, key: Option<&[u8]>) -> Result<Record> {
    let (buf, checked) = read_checked(file, file.len()?, ptr, key)?;
    let value = match checked.value {
        CheckedValue::InPlace(range) => buf[range].to_vec(),
        CheckedValue::Decompressed(v) => v,
    };
    Ok(Record {
        key: buf[checked.key].to_vec(),
        seq: checked.seq,
        value,
    })
}

/// Like [`read_value`] without copies: the record's bytes as read and where its key
/// and value lie in them (a compressed value comes decompressed). `file_len` is the
/// length the caller knows the segment has (a recorded segment's never changes), so
/// no call asks the file system.
///
/// # Errors
/// As [`read_value`].
pub fn read_checked(
    file: &dyn FsFile,
    file_len: u64,
    ptr: &ValuePointer,
    key: Option<&[u8]>,
) -> Result<(Vec<u8>, CheckedRecord)> {
    let path = file.path();
    let corrupt = |reason: String| Error::corruption(path, ptr.offset, reason);
    let end = ptr.offset.checked_add(u64::from(ptr.len));
    if ptr.offset < SEGMENT_HEADER_LEN as u64
        || (ptr.len as usize) < RECORD_HEADER_LEN
        || end.is_none_or(|e| e > file_len)
    {
        return Err(corrupt(format!(
            "a pointer to {} bytes at offset {} lies outside the records of this {file_len}-byte \
             segment",
            ptr.len, ptr.offset
        )));
    }
    let mut buf = vec![0u8; ptr.len as usize];
    file.read_exact_at(ptr.offset, &mut buf)?;
    let checked = check_record(ptr.segment, &buf).map_err(corrupt)?;
    if let Some(key) = key {
        let stored = &buf[checked.key.clone()];
        if stored != key {
            return Err(corrupt(format!(
                "the record holds key {:?}, the pointer was for {:?}",
                String::from_utf8_lossy(stored),
                String::from_utf8_lossy(key)
            )));
        }
    }
    Ok((buf, checked))
}

/// What [`scan_segment`] found besides the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanOutcome {
    /// Records read.
    pub records: u64,
    /// Where an incomplete or damaged record past the durable length starts (a torn
    /// tail of a segment that was being written when the process stopped).
    pub torn_tail: Option<u64>,
}

/// Walks every record of segment `id` whose bytes are `bytes`, calling `visit` with
/// its pointer and contents. Damage before `durable_len` (what the owner knows was
/// synced) is corruption; an incomplete or damaged record starting at or after it ends
/// the scan as a torn tail.
///
/// # Errors
/// [`Error::Corruption`] naming `path` and the offset; `visit`'s errors.
pub fn scan_segment(
    bytes: &[u8],
    path: &Path,
    id: u64,
    durable_len: u64,
    mut visit: impl FnMut(ValuePointer, Record) -> Result<()>,
) -> Result<ScanOutcome> {
    let header =
        SegmentHeader::decode(bytes).map_err(|reason| Error::corruption(path, 0, reason))?;
    if header.id != id {
        return Err(Error::corruption(
            path,
            16,
            format!("the header names segment {}, the file name {id}", header.id),
        ));
    }
    let mut outcome = ScanOutcome::default();
    let mut offset = SEGMENT_HEADER_LEN;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let len = RecordHead::parse(rest)
            .and_then(|h| h.record_len())
            .filter(|len| *len <= rest.len() && u32::try_from(*len).is_ok());
        let decoded = match len {
            Some(len) => decode_record(id, &rest[..len]).map(|r| (len, r)),
            None => Err("an incomplete record or impossible lengths".to_string()),
        };
        match decoded {
            Ok((len, record)) => {
                let ptr = ValuePointer {
                    segment: id,
                    offset: offset as u64,
                    len: len as u32,
                };
                visit(ptr, record)?;
                outcome.records += 1;
                offset += len;
            }
            Err(reason) if (offset as u64) < durable_len => {
                return Err(Error::corruption(path, offset as u64, reason));
            }
            Err(_) => {
                outcome.torn_tail = Some(offset as u64);
                break;
            }
        }
    }
    if outcome.torn_tail.is_none() && (offset as u64) < durable_len {
        return Err(Error::corruption(
            path,
            offset as u64,
            format!("the segment ends at {offset}, before its durable length {durable_len}"),
        ));
    }
    Ok(outcome)
}
