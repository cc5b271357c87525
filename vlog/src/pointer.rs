//! [`ValuePointer`]: where one separated value lives.

/// Bytes of an encoded [`ValuePointer`].
pub const POINTER_LEN: usize = 20;

/// The location of one value-log record: its segment, its byte offset there and its
/// whole length, so a read is one positional read of exactly `len` bytes. Kept in the
/// tree in place of the value ([`POINTER_LEN`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValuePointer {
    /// The segment id.
    pub segment: u64,
    /// Offset of the record in the segment file.
    pub offset: u64,
    /// Length of the whole record (header, key and stored value).
    pub len: u32,
}

impl ValuePointer {
    /// The 20 bytes: segment, offset (8 bytes each) and length (4), little-endian.
    pub fn encode(&self) -> [u8; POINTER_LEN] {
        let mut out = [0u8; POINTER_LEN];
        out[0..8].copy_from_slice(&self.segment.to_le_bytes());
        out[8..16].copy_from_slice(&self.offset.to_le_bytes());
        out[16..20].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Decodes exactly [`POINTER_LEN`] bytes; `None` for any other length.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != POINTER_LEN {
            return None;
        }
        let mut s = [0u8; 8];
        let mut o = [0u8; 8];
        let mut l = [0u8; 4];
        s.copy_from_slice(&bytes[0..8]);
        o.copy_from_slice(&bytes[8..16]);
        l.copy_from_slice(&bytes[16..20]);
        Some(ValuePointer {
            segment: u64::from_le_bytes(s),
            offset: u64::from_le_bytes(o),
            len: u32::from_le_bytes(l),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_round_trip_and_other_lengths_are_refused() {
        let p = ValuePointer {
            segment: u64::MAX,
            offset: 1 << 40,
            len: 77,
        };
        assert_eq!(ValuePointer::decode(&p.encode()), Some(p));
        assert_eq!(ValuePointer::decode(&p.encode()[..19]), None);
        assert_eq!(ValuePointer::decode(&[0; 21]), None);
    }
}
