//! The bytes of a value-log segment (spec: `docs/format/vlog.md`).
//!
//! A segment is a 32-byte header and then records, each checksummed together with its
//! segment's id, so that a record copied into another segment (or a value that looks
//! like a record) never verifies there. Decoders take any bytes and never panic: every
//! length is checked before it is used.

use strata_wal::SeqNo;

/// `STRATAVL`.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATAVL";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes of a record before its key: crc, flags, key length, stored and raw value
/// lengths, sequence number.
pub const RECORD_HEADER_LEN: usize = 25;
/// The largest key a record holds (the engine's limit).
pub const MAX_KEY_LEN: usize = 64 << 10;
/// The largest value a record holds, stored or raw.
pub const MAX_VALUE_LEN: usize = (1 << 32) - 1;
/// Record flag: the value is zstd-compressed.
pub const FLAG_ZSTD: u8 = 1;
/// The most a zstd value may claim to expand (raw bytes per stored byte).
pub const MAX_ZSTD_EXPANSION: usize = 1 << 15;

/// The header of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's id (also in its file name).
    pub id: u64,
    /// The keyspace whose values it holds.
    pub keyspace: u32,
}

impl SegmentHeader {
    /// The 32 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&0u32.to_le_bytes());
        out[16..24].copy_from_slice(&self.id.to_le_bytes());
        out[24..28].copy_from_slice(&self.keyspace.to_le_bytes());
        let crc = crc32fast::hash(&out[0..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a header, or says what is wrong with it.
    ///
    /// # Errors
    /// A reason: too short, bad magic, unknown version or flags, checksum mismatch.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let Some(h) = bytes.get(..SEGMENT_HEADER_LEN) else {
            return Err(format!(
                "the segment is {} bytes, shorter than its {SEGMENT_HEADER_LEN}-byte header",
                bytes.len()
            ));
        };
        if h[0..8] != SEGMENT_MAGIC {
            return Err("bad magic: not a Strata value-log segment".into());
        }
        let stored = u32_at(h, 28);
        if crc32fast::hash(&h[0..28]) != stored {
            return Err("segment header checksum mismatch".into());
        }
        let version = u32_at(h, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}, this build reads {FORMAT_VERSION}"
            ));
        }
        let flags = u32_at(h, 12);
        if flags != 0 {
            return Err(format!("unknown header flags {flags:#x}"));
        }
        Ok(SegmentHeader {
            id: u64_at(h, 16),
            keyspace: u32_at(h, 24),
        })
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key the value was written under.
    pub key: Vec<u8>,
    /// The sequence number of that write.
    pub seq: SeqNo,
    /// The value, decompressed.
    pub value: Vec<u8>,
}

/// Appends the record `(key, seq, stored value)` to `out`, checksummed for segment
/// `segment`. `raw_len` is the value's length before compression; `flags` says how it
/// is stored. Returns the record's length.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    segment: u64,
    flags: u8,
    key: &[u8],
    seq: SeqNo,
    stored: &[u8],
    raw_len: usize,
) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(flags);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(&seq.0.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(stored);
    let crc = record_crc(segment, &out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// The checksum of a record: CRC32 over the segment id (8 bytes, not stored) and the
/// record's bytes after the checksum.
pub fn record_crc(segment: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&segment.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// A record's fixed part, read from its first [`RECORD_HEADER_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    /// The stored checksum.
    pub crc: u32,
    /// [`FLAG_ZSTD`] or 0.
    pub flags: u8,
    /// Key bytes.
    pub key_len: usize,
    /// Value bytes as stored.
    pub stored_len: usize,
    /// Value bytes once decompressed.
    pub raw_len: usize,
    /// The write's sequence number.
    pub seq: SeqNo,
}

impl RecordHead {
    /// Parses the fixed part; `None` if `bytes` is too short.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..RECORD_HEADER_LEN)?;
        Some(RecordHead {
            crc: u32_at(h, 0),
            flags: h[4],
            key_len: u32_at(h, 5) as usize,
            stored_len: u32_at(h, 9) as usize,
            raw_len: u32_at(h, 13) as usize,
            seq: SeqNo(u64_at(h, 17)),
        })
    }

    /// The whole record's length, if its lengths are within the format's limits.
    pub fn record_len(&self) -> Option<usize> {
        if self.key_len > MAX_KEY_LEN || self.flags & !FLAG_ZSTD != 0 {
            return None;
        }
        if self.flags & FLAG_ZSTD == 0 && self.raw_len != self.stored_len {
            return None;
        }
        RECORD_HEADER_LEN
            .checked_add(self.key_len)?
            .checked_add(self.stored_len)
    }
}

/// A record checked in place: where its key and value lie in the record's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRecord {
    /// The sequence number of the write.
    pub seq: SeqNo,
    /// Where the key lies in the record's bytes.
    pub key: std::ops::Range<usize>,
    /// The value: where it lies in the record's bytes, or decompressed.
    pub value: CheckedValue,
}

/// Where a checked record's value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedValue {
    /// Stored as is, at this range of the record's bytes.
    InPlace(std::ops::Range<usize>),
    /// Stored compressed; here decompressed.
    Decompressed(Vec<u8>),
}

/// Checks one whole record of segment `segment` in exactly `bytes` (checksum, lengths,
/// sequence number) and decompresses its value if it is compressed; a plain value is
/// not copied.
///
/// # Errors
/// A reason for the corruption, relative to the record's start.
pub fn check_record(segment: u64, bytes: &[u8]) -> std::result::Result<CheckedRecord, String> {
    let head = RecordHead::parse(bytes).ok_or_else(|| {
        format!(
            "a record needs at least {RECORD_HEADER_LEN} bytes, {} are left",
            bytes.len()
        )
    })?;
    let len = head
        .record_len()
        .ok_or("record header holds impossible lengths or unknown flags")?;
    if len != bytes.len() {
        return Err(format!(
            "record is {len} bytes by its header, {} by its pointer or the file",
            bytes.len()
        ));
    }
    if record_crc(segment, &bytes[4..]) != head.crc {
        return Err("record checksum mismatch".into());
    }
    if head.seq == SeqNo::ZERO || head.seq > SeqNo::MAX_ASSIGNABLE {
        return Err(format!(
            "record sequence number {} is out of range",
            head.seq
        ));
    }
    let key = RECORD_HEADER_LEN..RECORD_HEADER_LEN + head.key_len;
    let stored_range = key.end..bytes.len();
    let stored = &bytes[stored_range.clone()];
    let value = if head.flags & FLAG_ZSTD != 0 {
        // zstd expands at most about 32 768 times (an RLE block: 4 bytes for 128 KiB), so
        // a larger claim is damage or forgery; and the output buffer grows only with
        // what the frame really produces, never to the claimed size up front.
        if head.raw_len > head.stored_len.saturating_mul(MAX_ZSTD_EXPANSION) {
            return Err(format!(
                "record claims {} bytes from a {}-byte zstd value",
                head.raw_len, head.stored_len
            ));
        }
        let mut v = Vec::new();
        let decoder = zstd::stream::read::Decoder::new(stored)
            .map_err(|e| format!("value does not decompress: {e}"))?;
        std::io::Read::read_to_end(
            &mut std::io::Read::take(decoder, head.raw_len as u64 + 1),
            &mut v,
        )
        .map_err(|e| format!("value does not decompress: {e}"))?;
        if v.len() != head.raw_len {
            return Err(format!(
                "value decompresses to {} bytes, its record says {}",
                v.len(),
                head.raw_len
            ));
        }
        CheckedValue::Decompressed(v)
    } else {
        CheckedValue::InPlace(stored_range)
    };
    Ok(CheckedRecord {
        seq: head.seq,
        key,
        value,
    })
}

/// Decodes one whole record of segment `segment` from exactly `bytes`: checks the
/// checksum, the lengths and the sequence number, and decompresses the value.
///
/// # Errors
/// A reason for the corruption, relative to the record's start.
pub fn decode_record(segment: u64, bytes: &[u8]) -> std::result::Result<Record, String> {
    let checked = check_record(segment, bytes)?;
    let key = bytes[checked.key].to_vec();
    let value = match checked.value {
        CheckedValue::InPlace(range) => bytes[range].to_vec(),
        CheckedValue::Decompressed(v) => v,
    };
    Ok(Record {
        key,
        seq: checked.seq,
        value,
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_every_damage_is_refused() {
        let h = SegmentHeader { id: 7, keyspace: 3 };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes;
                damaged[i] ^= 1 << bit;
                assert!(
                    SegmentHeader::decode(&damaged).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
        for cut in 0..bytes.len() {
            assert!(SegmentHeader::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn a_forged_decompressed_length_is_refused_without_allocating_it() {
        let frame = zstd::bulk::compress(&[7u8; 1000], 3).unwrap();
        let mut out = Vec::new();
        let claim = u32::MAX as usize;
        encode_record(&mut out, 1, FLAG_ZSTD, b"k", SeqNo(1), &frame, claim);
        let err = decode_record(1, &out).unwrap_err();
        assert!(err.contains("claims"), "{err}");
        // A claim within the bound but above what the frame yields.
        let mut out = Vec::new();
        encode_record(&mut out, 1, FLAG_ZSTD, b"k", SeqNo(1), &frame, 5000);
        assert!(decode_record(1, &out)
            .unwrap_err()
            .contains("decompresses to 1000"));
        let mut out = Vec::new();
        encode_record(&mut out, 1, FLAG_ZSTD, b"k", SeqNo(1), &frame, 1000);
        assert_eq!(decode_record(1, &out).unwrap().value, vec![7u8; 1000]);
    }

    #[test]
    fn a_record_verifies_only_in_its_own_segment() {
        let mut out = Vec::new();
        let len = encode_record(&mut out, 5, 0, b"key", SeqNo(9), b"value", 5);
        assert_eq!(len, out.len());
        let r = decode_record(5, &out).unwrap();
        assert_eq!(
            (r.key.as_slice(), r.seq, r.value.as_slice()),
            (&b"key"[..], SeqNo(9), &b"value"[..])
        );
        assert!(decode_record(6, &out).is_err());
    }
}
