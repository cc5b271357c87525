//! Checksummed record framing (spec: `docs/format/wal.md`).
//!
//! A *logical record* is `seq: u64 | entries: u32 | payload`. It is stored as one or
//! more *fragments*, each `crc32: u32 | len: u32 | type: u8 | bytes[len]`. The CRC32
//! (crc32fast) covers the file's [`Salt`] (a random value from the file header, never
//! stored in the fragment), then `len`, `type` and the bytes. A record that fits in
//! [`MAX_FRAGMENT_LEN`] is one `Full` fragment; a larger one is `First`, `Middle`…,
//! `Last`. A `SyncMark` fragment declares how much of its file was durable when it was
//! written; recovery uses it to tell a torn tail from damage to synced data.
//!
//! The salt is what keeps a payload's bytes from being taken for framing: a fragment
//! encoded under one salt never passes the checksum under another (CRC32 maps
//! distinct 4-byte prefixes to distinct states), so fragments copied into a payload
//! from another file, or written by a user who cannot know the salt, are not this
//! file's fragments.
//!
//! This module only encodes and parses single fragments and finds sync marks; `segment`
//! assembles records and classifies damage. The manifest reuses the framing through
//! [`encode_payload`] and [`PayloadReader`].

use std::hash::{BuildHasher, Hasher};

use crate::ids::SeqNo;

/// Bytes of a fragment header: crc32, length, type.
pub const FRAGMENT_HEADER_LEN: usize = 4 + 4 + 1;
/// The most payload bytes one fragment carries; a longer length field is damage.
pub const MAX_FRAGMENT_LEN: usize = 1 << 20;
/// Bytes of the prefix every logical record starts with: first sequence number and
/// entry count.
pub const RECORD_PREFIX_LEN: usize = 8 + 4;
/// Bytes of a sync mark's payload: file id and synced offset.
pub const SYNC_MARK_LEN: usize = 8 + 8;

/// A file's checksum salt: a random value stored in the file's header and mixed into
/// the CRC of every fragment of that file (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Salt(pub u32);

impl Salt {
    /// A fresh random salt (from the standard library's randomly keyed hasher; no
    /// extra dependency).
    pub fn random() -> Salt {
        let h = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Salt((h ^ (h >> 32)) as u32)
    }

    /// A fresh random salt different from `other` (for the file that follows one
    /// salted with `other`).
    pub fn random_other_than(other: Salt) -> Salt {
        loop {
            let salt = Salt::random();
            if salt != other {
                return salt;
            }
        }
    }
}

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
    /// A sync mark: `file_id: u64 | synced_offset: u64`.
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

/// Appends the fragments of one logical record to `out`, checksummed with `salt`.
pub fn encode_record(out: &mut Vec<u8>, salt: Salt, seq: SeqNo, entries: u32, payload: &[u8]) {
    let mut prefix = [0u8; RECORD_PREFIX_LEN];
    prefix[..8].copy_from_slice(&seq.0.to_le_bytes());
    prefix[8..].copy_from_slice(&entries.to_le_bytes());
    let total = RECORD_PREFIX_LEN + payload.len();
    if total <= MAX_FRAGMENT_LEN {
        encode_fragment(out, salt, FragmentType::Full, &[&prefix, payload]);
        return;
    }
    // Split the logical bytes (prefix then payload) into fragments of at most
    // MAX_FRAGMENT_LEN; the prefix always fits in the first.
    let mut rest = payload;
    let first_take = MAX_FRAGMENT_LEN - RECORD_PREFIX_LEN;
    let (head, tail) = rest.split_at(first_take);
    encode_fragment(out, salt, FragmentType::First, &[&prefix, head]);
    rest = tail;
    while rest.len() > MAX_FRAGMENT_LEN {
        let (piece, tail) = rest.split_at(MAX_FRAGMENT_LEN);
        encode_fragment(out, salt, FragmentType::Middle, &[piece]);
        rest = tail;
    }
    encode_fragment(out, salt, FragmentType::Last, &[rest]);
}

/// Appends `payload` as one logical record of fragments with no sequence prefix, for
/// other logs that reuse this framing (the manifest). Read back with [`PayloadReader`]
/// and the same `salt`.
pub fn encode_payload(out: &mut Vec<u8>, salt: Salt, payload: &[u8]) {
    if payload.len() <= MAX_FRAGMENT_LEN {
        encode_fragment(out, salt, FragmentType::Full, &[payload]);
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
        encode_fragment(out, salt, ty, &[chunk]);
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
    salt: Salt,
}

impl<'a> PayloadReader<'a> {
    /// A reader over `buf`, starting at `start`, checking fragments against `salt`.
    pub fn new(buf: &'a [u8], start: usize, salt: Salt) -> Self {
        PayloadReader {
            buf,
            pos: start,
            salt,
        }
    }

    /// The next payload, or why there is none.
    pub fn next_payload(&mut self) -> PayloadItem {
        // Where the payload begins: past any sync marks before its first fragment, so
        // that a payload cut off after marks is placed where it really starts (a reader
        // judging torn tails against a marked durable offset depends on it).
        let mut start = self.pos;
        let mut acc: Option<Vec<u8>> = None;
        loop {
            if self.pos >= self.buf.len() && acc.is_none() {
                return PayloadItem::End;
            }
            match parse_fragment(self.buf, self.pos, self.salt) {
                Fragment::Incomplete => return PayloadItem::Incomplete(start),
                Fragment::Invalid(reason) => return PayloadItem::Damaged(self.pos, reason),
                Fragment::Valid { ty, body, next } => {
                    let at = self.pos;
                    self.pos = next;
                    match (ty, acc.take()) {
                        (FragmentType::SyncMark, None) => start = next,
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

/// Appends a sync mark declaring that `synced_offset` bytes of file `file_id` were
/// durable when it was written. `synced_offset` must be at most the offset the mark is
/// written at (readers ignore a mark that claims more).
pub fn encode_sync_mark(out: &mut Vec<u8>, salt: Salt, file_id: u64, synced_offset: u64) {
    let mut body = [0u8; SYNC_MARK_LEN];
    body[..8].copy_from_slice(&file_id.to_le_bytes());
    body[8..].copy_from_slice(&synced_offset.to_le_bytes());
    encode_fragment(out, salt, FragmentType::SyncMark, &[&body]);
}

/// The encoded size of a logical record with `payload_len` caller bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    let total = RECORD_PREFIX_LEN + payload_len;
    let fragments = total.div_ceil(MAX_FRAGMENT_LEN).max(1);
    total + fragments * FRAGMENT_HEADER_LEN
}

fn encode_fragment(out: &mut Vec<u8>, salt: Salt, ty: FragmentType, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(len <= MAX_FRAGMENT_LEN);
    let len_bytes = (len as u32).to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.0.to_le_bytes());
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

/// Re-encodes `group`, fragments this process encoded (under any salt), with `salt`,
/// leaving out sync marks: they describe the file the group was first meant for. Used
/// when a rotation puts queued records in a new segment.
pub(crate) fn resalt(group: &[u8], salt: Salt) -> Vec<u8> {
    let mut out = Vec::with_capacity(group.len());
    let mut pos = 0;
    while let Some(header) = group.get(pos..pos + FRAGMENT_HEADER_LEN) {
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body_start = pos + FRAGMENT_HEADER_LEN;
        let (Some(ty), Some(body)) = (
            FragmentType::from_u8(header[8]),
            group.get(body_start..body_start + len),
        ) else {
            break;
        };
        if ty != FragmentType::SyncMark {
            encode_fragment(&mut out, salt, ty, &[body]);
        }
        pos = body_start + len;
    }
    debug_assert_eq!(pos, group.len(), "a queued group is whole fragments");
    out
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

#[cfg(test)]
thread_local! {
    /// Bytes fed to the CRC by `parse_fragment` on this thread, so tests can check
    /// that scans stay linear without timing them.
    static CHECKSUMMED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Bytes `parse_fragment` has checksummed on this thread (tests only).
#[cfg(test)]
pub(crate) fn checksummed_bytes() -> u64 {
    CHECKSUMMED.with(std::cell::Cell::get)
}

/// Parses the fragment at `offset` of `buf`, checking its CRC against `salt`. Never
/// panics, never trusts a length.
pub fn parse_fragment(buf: &[u8], offset: usize, salt: Salt) -> Fragment<'_> {
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
    #[cfg(test)]
    CHECKSUMMED.with(|c| c.set(c.get() + 9 + len as u64));
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.0.to_le_bytes());
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

/// The offset of the next valid fragment at or after `from`, if any: salvage mode's
/// way to resume after damage.
///
/// Cost: every offset is a candidate, and each candidate whose header is plausible
/// costs a CRC over its declared length, so a damaged region of `n` bytes may cost up
/// to `n × MAX_FRAGMENT_LEN` bytes of checksumming (crafted or unlucky bytes, such as
/// many little-endian `0x00100000` lengths). Only salvage uses it; strict recovery
/// and the live reader never scan ahead this way.
pub fn next_valid_fragment(bytes: &[u8], from: usize, salt: Salt) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAGMENT_HEADER_LEN - 1))
        .find(|&pos| matches!(parse_fragment(bytes, pos, salt), Fragment::Valid { .. }))
}

/// The length and type bytes (offsets 4..9) every sync mark's header has.
const SYNC_MARK_SHAPE: [u8; 5] = [SYNC_MARK_LEN as u8, 0, 0, 0, FragmentType::SyncMark as u8];

/// Whether the bytes at `pos` have the shape of a sync mark's header (length 16, type
/// `SyncMark`), so that checking its CRC is worth it. The filter that keeps
/// [`max_declared_synced`] linear.
pub fn is_sync_mark_candidate(bytes: &[u8], pos: usize) -> bool {
    pos.checked_add(FRAGMENT_HEADER_LEN)
        .and_then(|end| bytes.get(pos + 4..end))
        .is_some_and(|shape| shape == SYNC_MARK_SHAPE)
}

/// The offset a valid sync-mark body found at `pos` declares durable for file `id`, or
/// `None` if the mark names another file or claims more than its own position (no
/// writer ever does; such a mark is payload bytes or damage and is ignored).
pub fn sync_mark_offset(body: &[u8], id: u64, pos: usize) -> Option<u64> {
    let (mark_id, offset) = decode_sync_mark(body)?;
    (mark_id == id && offset <= pos as u64).then_some(offset)
}

/// The highest offset declared durable by a valid sync mark for file `id` that starts
/// at or after `from`, looking across damaged regions; `None` if there is none.
///
/// Only offsets whose length and type bytes have a sync mark's shape are checksummed
/// (25 bytes each), so one call costs `O(bytes.len() - from)`. Marks that claim more
/// than their own position are ignored ([`sync_mark_offset`]).
pub fn max_declared_synced(bytes: &[u8], from: usize, salt: Salt, id: u64) -> Option<u64> {
    let last = bytes
        .len()
        .checked_sub(FRAGMENT_HEADER_LEN + SYNC_MARK_LEN)?;
    let mut best = None;
    for pos in from..=last {
        if !is_sync_mark_candidate(bytes, pos) {
            continue;
        }
        if let Fragment::Valid {
            ty: FragmentType::SyncMark,
            body,
            ..
        } = parse_fragment(bytes, pos, salt)
        {
            if let Some(offset) = sync_mark_offset(body, id, pos) {
                best = best.max(Some(offset));
            }
        }
    }
    best
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

/// Decodes a sync mark's body into `(file_id, synced_offset)`.
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

    const SALT: Salt = Salt(0x5eed_1234);

    fn reassemble(buf: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut partial: Option<Vec<u8>> = None;
        while pos < buf.len() {
            match parse_fragment(buf, pos, SALT) {
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
        encode_record(&mut buf, SALT, SeqNo(7), 3, b"hello");
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
        encode_record(&mut buf, SALT, SeqNo(1), 1, &payload);
        assert_eq!(buf.len(), encoded_len(payload.len()));
        let first = parse_fragment(&buf, 0, SALT);
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
        assert!(matches!(
            parse_fragment(&zeros, 0, SALT),
            Fragment::Invalid(_)
        ));
    }

    #[test]
    fn huge_length_is_invalid_not_incomplete() {
        let mut buf = Vec::new();
        encode_record(&mut buf, SALT, SeqNo(1), 1, b"x");
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_fragment(&buf, 0, SALT),
            Fragment::Invalid("fragment length above the maximum")
        );
    }

    #[test]
    fn payload_framing_round_trip_and_tail() {
        let big: Vec<u8> = (0..(MAX_FRAGMENT_LEN * 2 + 5)).map(|i| i as u8).collect();
        let mut buf = Vec::new();
        encode_payload(&mut buf, SALT, b"one");
        encode_payload(&mut buf, SALT, &big);
        encode_payload(&mut buf, SALT, b"");
        let mut r = PayloadReader::new(&buf, 0, SALT);
        assert!(matches!(r.next_payload(), PayloadItem::Payload(p, 0) if p == b"one"));
        assert!(matches!(r.next_payload(), PayloadItem::Payload(p, _) if p == big));
        assert!(matches!(r.next_payload(), PayloadItem::Payload(p, _) if p.is_empty()));
        assert_eq!(r.next_payload(), PayloadItem::End);
        let cut = buf.len() - 3;
        let mut r = PayloadReader::new(&buf[..cut], 0, SALT);
        r.next_payload();
        r.next_payload();
        assert!(matches!(r.next_payload(), PayloadItem::Incomplete(_)));
    }

    /// Regression: a payload cut off after sync marks was reported as starting at the
    /// first of those marks, so a manifest whose last mark declared the bytes before
    /// it durable, followed by an edit torn by a power loss, was judged "cut off below
    /// its durable end" and refused to open (found by
    /// `engine/tests/power_loss_points.rs`).
    #[test]
    fn payload_cut_off_after_sync_marks_starts_after_them() {
        let mut buf = Vec::new();
        encode_payload(&mut buf, SALT, b"edit");
        let first_mark = buf.len();
        encode_sync_mark(&mut buf, SALT, 1, first_mark as u64);
        let second_mark = buf.len();
        encode_sync_mark(&mut buf, SALT, 1, second_mark as u64);
        let torn_at = buf.len();
        encode_payload(&mut buf, SALT, b"the next edit");
        let mut r = PayloadReader::new(&buf[..buf.len() - 2], 0, SALT);
        assert!(matches!(r.next_payload(), PayloadItem::Payload(p, 0) if p == b"edit"));
        assert_eq!(r.next_payload(), PayloadItem::Incomplete(torn_at));
        // A whole payload after marks is placed where its own fragment starts too.
        let mut r = PayloadReader::new(&buf, first_mark, SALT);
        assert!(
            matches!(r.next_payload(), PayloadItem::Payload(p, at) if p == b"the next edit" && at == torn_at)
        );
    }

    #[test]
    fn sync_mark_round_trip() {
        let mut buf = Vec::new();
        encode_sync_mark(&mut buf, SALT, 9, 4242);
        match parse_fragment(&buf, 0, SALT) {
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

    #[test]
    fn a_fragment_never_verifies_under_another_salt() {
        for (i, other) in [0u32, 1, 0x5eed_1235, 0xffff_ffff, 0x8000_0000]
            .into_iter()
            .enumerate()
        {
            let mut buf = Vec::new();
            encode_record(&mut buf, SALT, SeqNo(1 + i as u64), 1, b"payload");
            encode_sync_mark(&mut buf, SALT, 3, 40);
            assert!(matches!(
                parse_fragment(&buf, 0, SALT),
                Fragment::Valid { .. }
            ));
            assert_eq!(
                parse_fragment(&buf, 0, Salt(other)),
                Fragment::Invalid("fragment checksum mismatch")
            );
        }
    }

    #[test]
    fn resalt_moves_records_to_another_salt_and_drops_sync_marks() {
        let big: Vec<u8> = (0..(MAX_FRAGMENT_LEN + 10)).map(|i| i as u8).collect();
        let mut group = Vec::new();
        encode_sync_mark(&mut group, SALT, 3, 40);
        encode_record(&mut group, SALT, SeqNo(1), 1, b"one");
        encode_record(&mut group, SALT, SeqNo(2), 1, &big);
        let other = Salt(SALT.0 ^ 1);
        let moved = resalt(&group, other);
        let mut expected = Vec::new();
        encode_record(&mut expected, other, SeqNo(1), 1, b"one");
        encode_record(&mut expected, other, SeqNo(2), 1, &big);
        assert_eq!(moved, expected);
    }

    #[test]
    fn random_salts_differ() {
        let a = Salt::random();
        assert_ne!(Salt::random_other_than(a), a);
        // Two fresh salts colliding has probability 2^-32; eight in a row all equal
        // means the source is not random.
        assert!((0..8).map(|_| Salt::random()).any(|s| s != a));
    }

    #[test]
    fn sync_mark_candidates_are_only_sync_mark_shaped_headers() {
        let mut buf = vec![0u8; 7];
        encode_sync_mark(&mut buf, SALT, 3, 7);
        encode_record(&mut buf, SALT, SeqNo(1), 1, &[SYNC_MARK_LEN as u8; 40]);
        let candidates: Vec<usize> = (0..buf.len())
            .filter(|&p| is_sync_mark_candidate(&buf, p))
            .collect();
        assert_eq!(candidates, vec![7]);
        assert!(!is_sync_mark_candidate(&buf, usize::MAX));
        assert!(!is_sync_mark_candidate(&buf[..10], 7));
    }

    #[test]
    fn max_declared_synced_ignores_marks_claiming_beyond_their_position() {
        let mut buf = vec![0xee; 100];
        encode_sync_mark(&mut buf, SALT, 3, 60);
        buf.extend_from_slice(&[0xee; 30]);
        let second = buf.len();
        encode_sync_mark(&mut buf, SALT, 3, (second + 1) as u64);
        encode_sync_mark(&mut buf, SALT, 4, 90);
        encode_sync_mark(&mut buf, Salt(7), 3, 95);
        assert_eq!(max_declared_synced(&buf, 0, SALT, 3), Some(60));
        assert_eq!(max_declared_synced(&buf, 101, SALT, 3), None);
        assert_eq!(max_declared_synced(&buf, 0, SALT, 4), Some(90));
        assert_eq!(max_declared_synced(&buf[..20], 0, SALT, 3), None);
    }

    #[test]
    fn the_sync_mark_scan_checksums_only_candidates() {
        // A pattern that makes every fifth offset a plausible 1 MiB `Full` fragment.
        let bytes: Vec<u8> = [0u8, 0, 0x10, 0, 1].repeat(1 << 20);
        let before = checksummed_bytes();
        assert_eq!(max_declared_synced(&bytes, 0, SALT, 1), None);
        assert_eq!(checksummed_bytes() - before, 0);
        // Sync-mark-shaped garbage everywhere: 25 bytes per candidate, linear.
        let mut shaped = Vec::new();
        while shaped.len() < 1 << 20 {
            shaped.extend_from_slice(&[1, 2, 3, 4]);
            shaped.extend_from_slice(&SYNC_MARK_SHAPE);
            shaped.extend_from_slice(&[9; SYNC_MARK_LEN]);
        }
        let before = checksummed_bytes();
        assert_eq!(max_declared_synced(&shaped, 0, SALT, 1), None);
        let spent = checksummed_bytes() - before;
        assert!(
            spent <= shaped.len() as u64 * 2,
            "{spent} bytes checksummed"
        );
    }

    proptest! {
        #[test]
        fn round_trip_many(records in proptest::collection::vec(
            (any::<u64>(), 1u32..1000, proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut buf = Vec::new();
            for (seq, n, p) in &records {
                encode_record(&mut buf, SALT, SeqNo(*seq), *n, p);
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
            encode_record(&mut buf, SALT, SeqNo(1), 1, &payload);
            let cut = cut % buf.len();
            prop_assert_eq!(parse_fragment(&buf[..cut], 0, SALT), Fragment::Incomplete);
        }

        #[test]
        fn any_single_bit_flip_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..200), at in any::<usize>(), bit in 0u8..8) {
            let mut buf = Vec::new();
            encode_record(&mut buf, SALT, SeqNo(1), 1, &payload);
            let at = at % buf.len();
            buf[at] ^= 1 << bit;
            let valid = matches!(parse_fragment(&buf, 0, SALT), Fragment::Valid { .. });
            prop_assert!(!valid, "flip at {} not detected", at);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), at in 0usize..80) {
            let _ = parse_fragment(&bytes, at, SALT);
        }
    }
}
