//! The fixed parts of the table format: block handles, the 5-byte block trailer
//! (compression type + CRC32), block compression, the properties block and the
//! 64-byte footer. Spec: `docs/format/table.md`; field sizes derive from the
//! constants below.
//!
//! The footer uses fixed-width handles (not varints) so that it has one size and can
//! be read with a single positional read at `file_size - FOOTER_LEN`.

use std::cell::RefCell;
use std::io::Read;
use std::path::Path;

use strata_wal::codec::{put_bytes, put_varint, Reader};
use strata_wal::SeqNo;

use super::Compression;
use crate::error::{Error, Result};

/// The table format version written by this code and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The magic bytes near the end of every table file.
pub const MAGIC: [u8; 8] = *b"STRATSST";
/// Bytes after every block on disk: compression type (1) + CRC32 (4).
pub const BLOCK_TRAILER_LEN: usize = 5;
/// Bytes of the footer at the end of the file.
pub const FOOTER_LEN: usize = 64;
/// Footer offset of the format version field.
const FOOTER_VERSION_AT: usize = 48;
/// Footer offset of the magic.
const FOOTER_MAGIC_AT: usize = 52;
/// Footer offset of the footer's CRC32 (over bytes `0..FOOTER_CRC_AT`).
const FOOTER_CRC_AT: usize = 60;
/// Largest number of bytes preallocated for a decompressed block before zstd has
/// produced them, so a lying length cannot make a reader allocate gigabytes.
const MAX_DECOMPRESS_PREALLOC: usize = 4 << 20;

/// Where a block lies in the file: `offset` of its first byte and `size` of its
/// stored bytes (excluding the 5-byte trailer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// Offset of the block's first byte in the file.
    pub offset: u64,
    /// Stored (possibly compressed) size of the block, without the trailer.
    pub size: u64,
}

impl BlockHandle {
    /// Appends the handle as two varints (offset, size): the form used in index
    /// entries.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        put_varint(out, self.offset);
        put_varint(out, self.size);
    }

    /// Decodes a varint handle that must fill `bytes` exactly; `None` if malformed.
    pub fn decode(bytes: &[u8]) -> Option<BlockHandle> {
        let mut r = Reader::new(bytes);
        let offset = r.varint()?;
        let size = r.varint()?;
        r.is_empty().then_some(BlockHandle { offset, size })
    }

    /// The offset just past the block's trailer, or `None` on overflow.
    pub fn end_with_trailer(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size)?
            .checked_add(BLOCK_TRAILER_LEN as u64)
    }
}

/// The footer: where the meta blocks are, and the format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Footer {
    /// The index block.
    pub index: BlockHandle,
    /// The filter block; `size == 0` means the table has no filter.
    pub filter: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
    /// The table format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
}

impl Footer {
    /// The footer's bytes.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        let fields = [
            self.index.offset,
            self.index.size,
            self.filter.offset,
            self.filter.size,
            self.properties.offset,
            self.properties.size,
        ];
        for (i, v) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out[FOOTER_VERSION_AT..FOOTER_MAGIC_AT].copy_from_slice(&self.format_version.to_le_bytes());
        out[FOOTER_MAGIC_AT..FOOTER_CRC_AT].copy_from_slice(&MAGIC);
        let crc = crc32fast::hash(&out[..FOOTER_CRC_AT]);
        out[FOOTER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks the footer of `file`, which starts at `footer_offset`
    /// (`file_size - FOOTER_LEN`). Every handle must end at or before the footer.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming `file` and the offset of the bad field: wrong
    /// length, magic, checksum or version, or a handle outside the file.
    pub fn decode(bytes: &[u8], file: &Path, footer_offset: u64) -> Result<Footer> {
        let at = |field: usize| footer_offset + field as u64;
        if bytes.len() != FOOTER_LEN {
            return Err(Error::corruption(
                file,
                footer_offset,
                format!(
                    "table footer is {} bytes, expected {FOOTER_LEN}",
                    bytes.len()
                ),
            ));
        }
        if bytes[FOOTER_MAGIC_AT..FOOTER_CRC_AT] != MAGIC {
            return Err(Error::corruption(
                file,
                at(FOOTER_MAGIC_AT),
                "bad table magic: not a Strata table file, or its end was cut off",
            ));
        }
        let mut r = Reader::new(bytes);
        let mut fields = [0u64; 6];
        for f in &mut fields {
            *f = r.u64_le().unwrap_or_default();
        }
        let version = r.u32_le().unwrap_or_default();
        let stored_crc = Reader::new(&bytes[FOOTER_CRC_AT..])
            .u32_le()
            .unwrap_or_default();
        let crc = crc32fast::hash(&bytes[..FOOTER_CRC_AT]);
        if crc != stored_crc {
            return Err(Error::corruption(
                file,
                at(FOOTER_CRC_AT),
                format!("table footer checksum mismatch: stored {stored_crc:#010x}, computed {crc:#010x}"),
            ));
        }
        if version != FORMAT_VERSION {
            return Err(Error::corruption(
                file,
                at(FOOTER_VERSION_AT),
                format!("unsupported table format version {version} (this build reads {FORMAT_VERSION})"),
            ));
        }
        let footer = Footer {
            index: BlockHandle {
                offset: fields[0],
                size: fields[1],
            },
            filter: BlockHandle {
                offset: fields[2],
                size: fields[3],
            },
            properties: BlockHandle {
                offset: fields[4],
                size: fields[5],
            },
            format_version: version,
        };
        for (i, (name, h)) in [
            ("index", footer.index),
            ("filter", footer.filter),
            ("properties", footer.properties),
        ]
        .into_iter()
        .enumerate()
        {
            if name == "filter" && h.size == 0 {
                continue;
            }
            if h.end_with_trailer().is_none_or(|end| end > footer_offset) {
                return Err(Error::corruption(
                    file,
                    at(i * 16),
                    format!(
                        "{name} block handle (offset {}, size {}) reaches past the footer at {footer_offset}",
                        h.offset, h.size
                    ),
                ));
            }
        }
        Ok(footer)
    }
}

/// The CRC32 stored in a block trailer: over the stored block bytes, then the type
/// byte.
pub fn block_crc(stored: &[u8], type_byte: u8) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(stored);
    h.update(&[type_byte]);
    h.finalize()
}

/// Appends the 5-byte trailer for a block whose stored bytes are `stored`.
pub fn push_trailer(out: &mut Vec<u8>, stored: &[u8], compression: Compression) {
    let t = compression.to_u8();
    out.push(t);
    out.extend_from_slice(&block_crc(stored, t).to_le_bytes());
}

/// Checks a block's trailer. `with_trailer` is the stored bytes followed by the
/// trailer; returns the compression recorded in it.
///
/// # Errors
/// [`Error::Corruption`] at `offset` (the block's offset in `file`) on a checksum
/// mismatch, an unknown compression type or a short buffer.
pub fn verify_block(
    with_trailer: &[u8],
    file: &Path,
    offset: u64,
    what: &str,
) -> Result<Compression> {
    let Some(split) = with_trailer.len().checked_sub(BLOCK_TRAILER_LEN) else {
        return Err(Error::corruption(
            file,
            offset,
            format!("{what} block is shorter than its trailer"),
        ));
    };
    let (stored, trailer) = with_trailer.split_at(split);
    let type_byte = trailer[0];
    let mut r = Reader::new(&trailer[1..]);
    let stored_crc = r.u32_le().unwrap_or_default();
    let crc = block_crc(stored, type_byte);
    if crc != stored_crc {
        return Err(Error::corruption(
            file,
            offset,
            format!(
                "{what} block checksum mismatch ({} bytes): stored {stored_crc:#010x}, computed {crc:#010x}",
                stored.len()
            ),
        ));
    }
    Compression::from_u8(type_byte).ok_or_else(|| {
        Error::corruption(
            file,
            offset,
            format!("{what} block has unknown compression type {type_byte}"),
        )
    })
}

/// Compresses `raw` for storage: `varint(raw.len()) ++ zstd frame`, into `out`
/// (cleared first). Returns `false` (and leaves `out` unspecified) when compression
/// failed or would not save at least 12.5 %: the caller then stores `raw` as is.
pub fn compress_block(
    compressor: &mut zstd::bulk::Compressor<'static>,
    raw: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> bool {
    scratch.clear();
    scratch.reserve(zstd::zstd_safe::compress_bound(raw.len()));
    if compressor.compress_to_buffer(raw, scratch).is_err() {
        return false;
    }
    out.clear();
    put_varint(out, raw.len() as u64);
    out.extend_from_slice(scratch);
    out.len() <= raw.len() - raw.len() / 8
}

thread_local! {
    /// A decompression context reused by every block this thread decompresses
    /// (creating one per block would allocate its window each time).
    static DCTX: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// Decompresses a stored zstd block (`varint(len) ++ frame`) of `file` at `offset`.
///
/// # Errors
/// [`Error::Corruption`] if the length prefix or the frame is malformed or the frame
/// does not decode to exactly the recorded length.
pub fn decompress_block(stored: &[u8], file: &Path, offset: u64) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::corruption(file, offset, reason);
    let mut r = Reader::new(stored);
    let len = r
        .varint()
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| corrupt("compressed block has a malformed length prefix".into()))?;
    let frame = &stored[r.position()..];
    let mut out = Vec::with_capacity(len.min(MAX_DECOMPRESS_PREALLOC));
    let limit = (len as u64).saturating_add(1);
    let run = |ctx: &mut zstd::zstd_safe::DCtx<'static>, out: &mut Vec<u8>| {
        let decoder = zstd::stream::read::Decoder::with_context(frame, ctx).single_frame();
        decoder.take(limit).read_to_end(out)
    };
    let result = DCTX.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = zstd::zstd_safe::DCtx::try_create();
            }
            match slot.as_mut() {
                Some(ctx) => run(ctx, &mut out),
                None => Err(std::io::Error::other("cannot allocate a zstd context")),
            }
        }
        Err(_) => match zstd::zstd_safe::DCtx::try_create() {
            Some(mut ctx) => run(&mut ctx, &mut out),
            None => Err(std::io::Error::other("cannot allocate a zstd context")),
        },
    });
    if let Err(e) = result {
        return Err(corrupt(format!("zstd block does not decompress: {e}")));
    }
    if out.len() != len {
        return Err(corrupt(format!(
            "zstd block decompressed to {} bytes, its header says {len}",
            out.len()
        )));
    }
    Ok(out)
}

/// What a table holds, recorded by the builder in the properties block and decoded
/// at open.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TableProperties {
    /// The table format version.
    pub format_version: u32,
    /// Number of entries (versions), including tombstones.
    pub entries: u64,
    /// Number of tombstones ([`crate::key::ValueKind::Delete`] entries).
    pub deletions: u64,
    /// Sum of the internal keys' lengths (user key + 8-byte trailer).
    pub raw_key_bytes: u64,
    /// Sum of the values' lengths.
    pub raw_value_bytes: u64,
    /// Number of data blocks.
    pub data_blocks: u64,
    /// Bytes of all data blocks on disk, trailers included.
    pub data_bytes: u64,
    /// The first internal key (empty if the table has no entries).
    pub smallest_key: Vec<u8>,
    /// The last internal key (empty if the table has no entries).
    pub largest_key: Vec<u8>,
    /// Smallest sequence number of any entry (0 if none).
    pub min_seq: SeqNo,
    /// Largest sequence number of any entry (0 if none).
    pub max_seq: SeqNo,
}

impl TableProperties {
    /// The contents of the properties block.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.smallest_key.len() + self.largest_key.len());
        out.extend_from_slice(&self.format_version.to_le_bytes());
        for v in [
            self.entries,
            self.deletions,
            self.raw_key_bytes,
            self.raw_value_bytes,
            self.data_blocks,
            self.data_bytes,
            self.min_seq.0,
            self.max_seq.0,
        ] {
            put_varint(&mut out, v);
        }
        put_bytes(&mut out, &self.smallest_key);
        put_bytes(&mut out, &self.largest_key);
        out
    }

    /// Decodes the contents of a properties block of `file` at `offset`.
    ///
    /// # Errors
    /// [`Error::Corruption`] at `offset` if a field is missing or malformed, bytes
    /// are left over, the version is not [`FORMAT_VERSION`], or the figures
    /// contradict each other.
    pub fn decode(bytes: &[u8], file: &Path, offset: u64) -> Result<TableProperties> {
        let corrupt =
            |reason: &str| Error::corruption(file, offset, format!("properties block: {reason}"));
        let mut r = Reader::new(bytes);
        let format_version = r.u32_le().ok_or_else(|| corrupt("truncated"))?;
        if format_version != FORMAT_VERSION {
            return Err(corrupt(&format!(
                "format version {format_version}, expected {FORMAT_VERSION}"
            )));
        }
        let mut v = [0u64; 8];
        for f in &mut v {
            *f = r
                .varint()
                .ok_or_else(|| corrupt("truncated or bad varint"))?;
        }
        let smallest_key = r
            .length_prefixed()
            .ok_or_else(|| corrupt("truncated smallest key"))?
            .to_vec();
        let largest_key = r
            .length_prefixed()
            .ok_or_else(|| corrupt("truncated largest key"))?
            .to_vec();
        if !r.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        let props = TableProperties {
            format_version,
            entries: v[0],
            deletions: v[1],
            raw_key_bytes: v[2],
            raw_value_bytes: v[3],
            data_blocks: v[4],
            data_bytes: v[5],
            min_seq: SeqNo(v[6]),
            max_seq: SeqNo(v[7]),
            smallest_key,
            largest_key,
        };
        if props.deletions > props.entries
            || props.min_seq > props.max_seq
            || (props.entries > 0 && props.data_blocks == 0)
            || props.data_blocks > props.entries
        {
            return Err(corrupt("counts contradict each other"));
        }
        Ok(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trip_and_checks() {
        let f = Footer {
            index: BlockHandle {
                offset: 100,
                size: 20,
            },
            filter: BlockHandle { offset: 0, size: 0 },
            properties: BlockHandle {
                offset: 50,
                size: 40,
            },
            format_version: FORMAT_VERSION,
        };
        let bytes = f.encode();
        let p = Path::new("/t/000001.sst");
        assert_eq!(Footer::decode(&bytes, p, 125).unwrap(), f);
        // Index ends at 125: a footer at 124 means the handle reaches past it.
        let e = Footer::decode(&bytes, p, 124).unwrap_err();
        assert!(matches!(e, Error::Corruption { offset: 124, .. }), "{e}");
        for at in 0..FOOTER_LEN {
            let mut b = bytes;
            b[at] ^= 0x10;
            let e = Footer::decode(&b, p, 1000).unwrap_err();
            match e {
                Error::Corruption { file, offset, .. } => {
                    assert_eq!(file, p);
                    assert!((1000..1000 + FOOTER_LEN as u64).contains(&offset));
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn handle_round_trip_rejects_trailing_bytes() {
        let h = BlockHandle {
            offset: 1 << 40,
            size: 4096,
        };
        let mut b = Vec::new();
        h.encode_to(&mut b);
        assert_eq!(BlockHandle::decode(&b), Some(h));
        b.push(0);
        assert_eq!(BlockHandle::decode(&b), None);
        assert_eq!(BlockHandle::decode(&[0x80]), None);
    }

    #[test]
    fn properties_round_trip_and_reject_garbage() {
        let p = TableProperties {
            format_version: FORMAT_VERSION,
            entries: 10,
            deletions: 2,
            raw_key_bytes: 300,
            raw_value_bytes: 4000,
            data_blocks: 3,
            data_bytes: 4500,
            smallest_key: b"a\0\0\0\0\0\0\0\0".to_vec(),
            largest_key: b"z\0\0\0\0\0\0\0\0".to_vec(),
            min_seq: SeqNo(4),
            max_seq: SeqNo(90),
        };
        let bytes = p.encode();
        let path = Path::new("x.sst");
        assert_eq!(TableProperties::decode(&bytes, path, 7).unwrap(), p);
        for cut in 0..bytes.len() {
            assert!(TableProperties::decode(&bytes[..cut], path, 7)
                .unwrap_err()
                .is_corruption());
        }
        let mut more = bytes.clone();
        more.push(1);
        assert!(TableProperties::decode(&more, path, 7).is_err());
    }

    #[test]
    fn trailer_detects_every_single_bit_flip() {
        let stored = b"some block bytes".to_vec();
        let mut with = stored.clone();
        push_trailer(&mut with, &stored, Compression::None);
        let p = Path::new("t.sst");
        assert_eq!(
            verify_block(&with, p, 9, "data").unwrap(),
            Compression::None
        );
        for at in 0..with.len() {
            for bit in 0..8 {
                let mut b = with.clone();
                b[at] ^= 1 << bit;
                assert!(verify_block(&b, p, 9, "data").unwrap_err().is_corruption());
            }
        }
    }

    #[test]
    fn zstd_round_trip_and_lying_length_is_corruption() {
        let raw: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL_FOR_TEST).unwrap();
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        assert!(compress_block(&mut c, &raw, &mut out, &mut scratch));
        let p = Path::new("t.sst");
        assert_eq!(decompress_block(&out, p, 0).unwrap(), raw);
        // Claim one byte more / less than the frame holds.
        for claimed in [raw.len() + 1, raw.len() - 1, usize::MAX >> 1] {
            let mut lie = Vec::new();
            put_varint(&mut lie, claimed as u64);
            lie.extend_from_slice(&out[2..]);
            assert!(decompress_block(&lie, p, 0).unwrap_err().is_corruption());
        }
        assert!(decompress_block(&[0x80], p, 0).is_err());
        // Incompressible data is refused so the caller stores it raw.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(!compress_block(&mut c, &noise, &mut out, &mut scratch));
    }

    const ZSTD_LEVEL_FOR_TEST: i32 = super::super::ZSTD_LEVEL;
}
