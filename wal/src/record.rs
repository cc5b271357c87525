//! Checksummed record framing (spec: `docs/format/wal.md`).
//!
//! A *logical record* is `seq: u64 | entries: u32 | payload`. It is stored as one or
//! more *fragments*, each `crc32: u32 | len: u32 | type: u8 | bytes[len]`, where the
//! CRC32 (crc32fast) covers `len`, `type` and the bytes. A record that fits in
//! [`MAX_FRAGMENT_LEN`] is one `Full` fragment; a larger one is `First`, `Middle`…,
//! `Last`. A `SyncMark` fragment declares how much of its segment was durable when it
//! was written; recovery uses it to tell a torn tail from damage to synced data.
//!
//! This module only encodes and parses single fragments; `segment` assembles them and
//! classifies damage.

use crate::ids::SeqNo;

/// Bytes of a fragment header: crc32, length, type.
pub const FRAGMENT_HEADER_LEN: usize = 4 + 4 + 1;
/// The most payload bytes one fragment carries; a longer length field is damage.
pub const MAX_FRAGMENT_LEN: usize = 1 << 20;
/// Bytes of the prefix every logical record starts with: first sequence number and
/// entry count.
pub const RECORD_PREFIX_LEN: usize = 8 + 4;
/// Bytes of a sync mark's payload: segment id and synced offset.
pub const SYNC_MARK_LEN: usize = 8 + 8;

/// The fragment type byte. Stored on disk: values are only ever added.
/// `0` is never written, so a zero-filled tail is never a valid fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FragmentType {
    /// A whole logical record.
    Full = 1,
    /// The first piece of a logical record.
    First = 2,
    /// A middle piece.
    Middle = 3,
    /// The last piece.
    Last = 4,
    /// A sync mark: `segment_id: u64 | synced_offset: u64`.
    SyncMark = 5,
}

impl FragmentType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => FragmentType::Full,
            2 => FragmentType::First,
            3 => FragmentType::Middle,
            4 => FragmentType::Last,
            5 => FragmentType::SyncMark,
            _ => return None,
        })
    }
}

/// A logical record as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// Sequence number of the record's first entry.
    pub seq: SeqNo,
    /// How many entries (sequence numbers) the record covers; at least 1.
    pub entries: u32,
    /// The caller's bytes.
    pub payload: Vec<u8>,
}

impl WalRecord {
    /// The sequence number of the record's last entry.
    pub fn last_seq(&self) -> SeqNo {
        self.seq.plus(u64::from(self.entries).saturating_sub(1))
    }
}

/// Appends the fragments of one logical record to `out`.
pub fn encode_record(out: &mut Vec<u8>, seq: SeqNo, entries: u32, payload: &[u8]) {
    let mut prefix = [0u8; RECORD_PREFIX_LEN];
    prefix[..8].copy_from_slice(&seq.0.to_le_bytes());
    prefix[8..].copy_from_slice(&entries.to_le_bytes());
    let total = RECORD_PREFIX_LEN + payload.len();
    if total <= MAX_FRAGMENT_LEN {
        encode_fragment(out, FragmentType::Full, &[&prefix, payload]);
        return;
    }
    // Split the logical bytes (prefix then payload) into fragments of at most
    // MAX_FRAGMENT_LEN; the prefix always fits in the first.
    let mut rest = payload;
    let first_take = MAX_FRAGMENT_LEN - RECORD_PREFIX_LEN;
    let (head, tail) = rest.split_at(first_take);
    encode_fragment(out, FragmentType::First, &[&prefix, head]);
    rest = tail;
    while rest.len() > MAX_FRAGMENT_LEN {
        let (piece, tail) = rest.split_at(MAX_FRAGMENT_LEN);
        encode_fragment(out, FragmentType::Middle, &[piece]);
        rest = tail;
    }
    encode_fragment(out, FragmentType::Last, &[rest]);
}

/// Appends `payload` as one logical record of fragments with no sequence prefix, for
/// other logs that reuse this framing (the manifest). Read back with [`PayloadReader`].
pub fn encode_payload(out: &mut Vec<u8>, payload: &[u8]) {
    if payload.len() <= MAX_FRAGMENT_LEN {
        encode_fragment(out, FragmentType::Full, &[payload]);
        return;
    }
    let mut chunks = payload.chunks(MAX_FRAGMENT_LEN).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let ty = match (first, chunks.peek().is_none()) {
            (true, _) => FragmentType::First,
            (false, true) => FragmentType::Last,
            (false, false) => FragmentType::Middle,
        };
        encode_fragment(out, ty, &[chunk]);
        first = false;
    }
}

/// What [`PayloadReader::next_payload`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum PayloadItem {
    /// A whole payload, and the offset it started at.
    Payload(Vec<u8>, usize),
    /// The clean end of the buffer.
    End,
    /// The buffer ends inside a fragment or a fragmented payload, at this offset
    /// (where the incomplete payload starts): a torn tail if nothing valid follows.
    Incomplete(usize),
    /// Damage at this offset.
    Damaged(usize, &'static str),
}

/// Reassembles payloads written with [`encode_payload`] from a buffer. Sync marks
/// are skipped.
#[derive(Debug)]
pub struct PayloadReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> PayloadReader<'a> {
    /// A reader over `buf`, starting at `start`.
    pub fn new(buf: &'a [u8], start: usize) -> Self {
        PayloadReader { buf, pos: start }
    }

    /// The next payload, or why there is none.
    pub fn next_payload(&mut self) -> PayloadItem {
        let start = self.pos;
        let mut acc: Option<Vec<u8>> = None;
        loop {
            if self.pos >= self.buf.len() && acc.is_none() {
                return PayloadItem::End;
            }
            match parse_fragment(self.buf, self.pos) {
                Fragment::Incomplete => return PayloadItem::Incomplete(start),
                Fragment::Invalid(reason) => return PayloadItem::Damaged(self.pos, reason),
                Fragment::Valid { ty, body, next } => {
                    let at = self.pos;
                    self.pos = next;
                    match (ty, acc.take()) {
                        (FragmentType::SyncMark, None) => {}
                        (FragmentType::Full, None) => {
                            return PayloadItem::Payload(body.to_vec(), start)
                        }
                        (FragmentType::First, None) => acc = Some(body.to_vec()),
                        (FragmentType::Middle, Some(mut a)) => {
                            a.extend_from_slice(body);
                            acc = Some(a);
                        }
                        (FragmentType::Last, Some(mut a)) => {
                            a.extend_from_slice(body);
                            return PayloadItem::Payload(a, start);
                        }
                        _ => return PayloadItem::Damaged(at, "fragments out of order"),
                    }
                }
            }
        }
    }
}

/// Appends a sync mark declaring that `synced_offset` bytes of segment `segment_id`
/// were durable when it was written.
pub fn encode_sync_mark(out: &mut Vec<u8>, segment_id: u64, synced_offset: u64) {
    let mut body = [0u8; SYNC_MARK_LEN];
    body[..8].copy_from_slice(&segment_id.to_le_bytes());
    body[8..].copy_from_slice(&synced_offset.to_le_bytes());
    encode_fragment(out, FragmentType::SyncMark, &[&body]);
}

/// The encoded size of a logical record with `payload_len` caller bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    let total = RECORD_PREFIX_LEN + payload_len;
    let fragments = total.div_ceil(MAX_FRAGMENT_LEN).max(1);
    total + fragments * FRAGMENT_HEADER_LEN
}

fn encode_fragment(out: &mut Vec<u8>, ty: FragmentType, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(len <= MAX_FRAGMENT_LEN);
    let len_bytes = (len as u32).to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(&[ty as u8]);
    for part in parts {
        hasher.update(part);
    }
    out.reserve(FRAGMENT_HEADER_LEN + len);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&len_bytes);
    out.push(ty as u8);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// What is found at one offset of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Fragment<'a> {
    /// A fragment whose checksum holds; `next` is the offset after it.
    Valid {
        /// Its type.
        ty: FragmentType,
        /// Its bytes.
        body: &'a [u8],
        /// Offset of the byte after the fragment.
        next: usize,
    },
    /// The buffer ends before the fragment does (header or body cut short).
    Incomplete,
    /// The bytes here are not a valid fragment.
    Invalid(&'static str),
}

/// Parses the fragment at `offset` of `buf`. Never panics, never trusts a length.
pub fn parse_fragment(buf: &[u8], offset: usize) -> Fragment<'_> {
    let Some(header) = buf
        .get(offset..)
        .and_then(|rest| rest.get(..FRAGMENT_HEADER_LEN))
    else {
        return Fragment::Incomplete;
    };
    let stored_crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let Some(ty) = FragmentType::from_u8(header[8]) else {
        return Fragment::Invalid("unknown fragment type");
    };
    if len > MAX_FRAGMENT_LEN {
        return Fragment::Invalid("fragment length above the maximum");
    }
    let body_start = offset + FRAGMENT_HEADER_LEN;
    let Some(body) = buf.get(body_start..body_start + len) else {
        return Fragment::Incomplete;
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[4..9]);
    hasher.update(body);
    if hasher.finalize() != stored_crc {
        return Fragment::Invalid("fragment checksum mismatch");
    }
    Fragment::Valid {
        ty,
        body,
        next: body_start + len,
    }
}

/// Splits a reassembled logical record into its prefix fields and payload.
pub fn decode_record(bytes: &[u8]) -> Option<(SeqNo, u32, &[u8])> {
    let prefix = bytes.get(..RECORD_PREFIX_LEN)?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&prefix[..8]);
    let mut entries = [0u8; 4];
    entries.copy_from_slice(&prefix[8..12]);
    Some((
        SeqNo(u64::from_le_bytes(seq)),
        u32::from_le_bytes(entries),
        &bytes[RECORD_PREFIX_LEN..],
    ))
}

/// Decodes a sync mark's body into `(segment_id, synced_offset)`.
pub fn decode_sync_mark(body: &[u8]) -> Option<(u64, u64)> {
    if body.len() != SYNC_MARK_LEN {
        return None;
    }
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&body[..8]);
    b.copy_from_slice(&body[8..]);
    Some((u64::from_le_bytes(a), u64::from_le_bytes(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reassemble(buf: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut partial: Option<Vec<u8>> = None;
        while pos < buf.len() {
            match parse_fragment(buf, pos) {
                Fragment::Valid { ty, body, next } => {
                    match ty {
                        FragmentType::Full => out.push(body.to_vec()),
                        FragmentType::First => partial = Some(body.to_vec()),
                        FragmentType::Middle => partial.as_mut().unwrap().extend_from_slice(body),
                        FragmentType::Last => {
                            let mut p = partial.take().unwrap();
                            p.extend_from_slice(body);
                            out.push(p);
                        }
                        FragmentType::SyncMark => {}
                    }
                    pos = next;
                }
                other => panic!("unexpected {other:?} at {pos}"),
            }
        }
        out
    }

    #[test]
    fn small_record_is_one_full_fragment() {
        let mut buf = Vec::new();
        encode_record(&mut buf, SeqNo(7), 3, b"hello");
        assert_eq!(buf.len(), encoded_len(5));
        let records = reassemble(&buf);
        assert_eq!(records.len(), 1);
        let (seq, entries, payload) = decode_record(&records[0]).unwrap();
        assert_eq!((seq, entries, payload), (SeqNo(7), 3, &b"hello"[..]));
    }

    #[test]
    fn large_record_is_fragmented_and_reassembled() {
        let payload: Vec<u8> = (0..(2 * MAX_FRAGMENT_LEN + 17)).map(|i| i as u8).collect();
        let mut buf = Vec::new();
        encode_record(&mut buf, SeqNo(1), 1, &payload);
        assert_eq!(buf.len(), encoded_len(payload.len()));
        let first = parse_fragment(&buf, 0);
        assert!(matches!(
            first,
            Fragment::Valid {
                ty: FragmentType::First,
                ..
            }
        ));
        let records = reassemble(&buf);
        assert_eq!(records.len(), 1);
        assert_eq!(decode_record(&records[0]).unwrap().2, &payload[..]);
    }

    #[test]
    fn zero_filled_bytes_are_never_a_fragment() {
        let zeros = vec![0u8; 64];
        assert!(matches!(parse_fragment(&zeros, 0), Fragment::Invalid(_)));
    }

    #[test]
    fn huge_length_is_invalid_not_incomplete() {
        let mut buf = Vec::new();
        encode_record(&mut buf, SeqNo(1), 1, b"x");
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_fragment(&buf, 0),
            Fragment::Invalid("fragment length above the maximum")
        );
    }

    #[test]
    fn payload_framing_round_trip_and_tail() {
        let big: Vec<u8> = (0..(MAX_FRAGMENT_LEN * 2 + 5)).map(|i| i as u8).collect();
        let mut buf = Vec::new();
        encode_payload(&mut buf, b"one");
        encode_payload(&mut buf, &big);
        encode_payload(&mut buf, b"");
        let mut r = PayloadReader::new(&buf, 0);
        assert!(matches!(r.next_payload(), PayloadItem::Payload(p, 0) if p == b"one"));
        assert!(matches!(r.next_payload(), PayloadItem::Payload(p, _) if p == big));
        assert!(matches!(r.next_payload(), PayloadItem::Payload(p, _) if p.is_empty()));
        assert_eq!(r.next_payload(), PayloadItem::End);
        let cut = buf.len() - 3;
        let mut r = PayloadReader::new(&buf[..cut], 0);
        r.next_payload();
        r.next_payload();
        assert!(matches!(r.next_payload(), PayloadItem::Incomplete(_)));
    }

    #[test]
    fn sync_mark_round_trip() {
        let mut buf = Vec::new();
        encode_sync_mark(&mut buf, 9, 4242);
        match parse_fragment(&buf, 0) {
            Fragment::Valid {
                ty: FragmentType::SyncMark,
                body,
                ..
            } => {
                assert_eq!(decode_sync_mark(body), Some((9, 4242)));
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn round_trip_many(records in proptest::collection::vec(
            (any::<u64>(), 1u32..1000, proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut buf = Vec::new();
            for (seq, n, p) in &records {
                encode_record(&mut buf, SeqNo(*seq), *n, p);
            }
            let back = reassemble(&buf);
            prop_assert_eq!(back.len(), records.len());
            for (bytes, (seq, n, p)) in back.iter().zip(&records) {
                let (s, e, payload) = decode_record(bytes).unwrap();
                prop_assert_eq!(s, SeqNo(*seq));
                prop_assert_eq!(e, *n);
                prop_assert_eq!(payload, &p[..]);
            }
        }

        #[test]
        fn every_truncation_is_incomplete_or_a_valid_prefix(
            payload in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..1000) {
            let mut buf = Vec::new();
            encode_record(&mut buf, SeqNo(1), 1, &payload);
            let cut = cut % buf.len();
            prop_assert_eq!(parse_fragment(&buf[..cut], 0), Fragment::Incomplete);
        }

        #[test]
        fn any_single_bit_flip_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..200), at in any::<usize>(), bit in 0u8..8) {
            let mut buf = Vec::new();
            encode_record(&mut buf, SeqNo(1), 1, &payload);
            let at = at % buf.len();
            buf[at] ^= 1 << bit;
            let valid = matches!(parse_fragment(&buf, 0), Fragment::Valid { .. });
            prop_assert!(!valid, "flip at {} not detected", at);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), at in 0usize..80) {
            let _ = parse_fragment(&bytes, at);
        }
    }
}
