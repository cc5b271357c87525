//! Write-ahead-log segment files (spec: `docs/format/wal.md`).
//!
//! A segment is `{id:06}.wal`: a 36-byte header (magic, format version, segment id,
//! first sequence number, CRC32) followed by fragments (see `record`). This module
//! encodes the header and scans a segment's bytes, reassembling logical records and
//! classifying damage:
//!
//! - in the last segment at recovery, damage at or beyond the highest offset a sync
//!   mark declares durable is a **torn tail** (an unsynced write cut by a crash): the
//!   segment is truncated there;
//! - any other damage is **corruption**: an error naming file and offset, or, in
//!   salvage mode, a skipped region that is counted.
//!
//! Scanning works on the whole segment in memory: segments are bounded by the
//! rotation size, and recovery needs to look past damage to classify it.

use std::path::Path;

use crate::error::{Error, Result};
use crate::ids::{SegmentId, SeqNo};
use crate::record::{
    decode_record, decode_sync_mark, parse_fragment, Fragment, FragmentType, FRAGMENT_HEADER_LEN,
};

/// The first eight bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATAWL";
/// The segment format version this code writes and reads.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 4;
/// File-name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// How damage is treated when reading the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Any damage other than a torn tail is an [`Error::Corruption`] (the default).
    #[default]
    Strict,
    /// Damaged regions are skipped and counted; reading goes on with the next valid
    /// record. Use it to salvage what is left of a damaged log.
    Salvage,
}

/// The decoded header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's id; must match its file name.
    pub id: SegmentId,
    /// The sequence number the segment's first record has or will have.
    pub first_seq: SeqNo,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        // bytes 12..16: flags, zero in version 1.
        out[16..24].copy_from_slice(&self.id.0.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_seq.0.to_le_bytes());
        let crc = crc32fast::hash(&out[..32]);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header read from `file`.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the offset of the first bad field.
    pub fn decode(bytes: &[u8], file: &Path) -> Result<SegmentHeader> {
        let Some(h) = bytes.get(..SEGMENT_HEADER_LEN) else {
            return Err(Error::corruption(
                file,
                bytes.len() as u64,
                format!(
                    "segment is {} bytes, shorter than its {SEGMENT_HEADER_LEN}-byte header",
                    bytes.len()
                ),
            ));
        };
        if h[0..8] != SEGMENT_MAGIC {
            return Err(Error::corruption(
                file,
                0,
                "bad magic: not a Strata WAL segment",
            ));
        }
        let stored_crc = u32::from_le_bytes([h[32], h[33], h[34], h[35]]);
        if crc32fast::hash(&h[..32]) != stored_crc {
            return Err(Error::corruption(
                file,
                32,
                "segment header checksum mismatch",
            ));
        }
        let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(Error::corruption(
                file,
                8,
                format!(
                    "segment format version {version}; this build reads version \
                     {SEGMENT_FORMAT_VERSION}"
                ),
            ));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[16..24]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&h[24..32]);
        Ok(SegmentHeader {
            id: SegmentId(u64::from_le_bytes(id)),
            first_seq: SeqNo(u64::from_le_bytes(seq)),
        })
    }
}

/// The file name of segment `id`.
pub fn segment_file_name(id: SegmentId) -> String {
    format!("{:06}{SEGMENT_SUFFIX}", id.0)
}

/// The segment id encoded in a file name, if it is a segment's name.
pub fn parse_segment_file_name(name: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(SegmentId)
}

/// How the end of a segment is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The last segment at recovery: damage beyond the synced offset is a torn tail.
    Recover,
    /// A segment that is complete: all damage is corruption.
    Sealed,
    /// The segment being written right now: an incomplete end is not yet written.
    Live,
}

/// What a scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ScanOutcome {
    /// Length of the valid prefix (where a torn tail is cut).
    pub valid_len: u64,
    /// Sequence number of the last entry of the last record delivered.
    pub last_seq: Option<SeqNo>,
    /// Records delivered.
    pub records: u64,
    /// A torn tail: its offset and what was wrong.
    pub torn: Option<(u64, &'static str)>,
    /// Damaged regions skipped in salvage mode.
    pub skipped_regions: u64,
    /// Bytes skipped in salvage mode.
    pub skipped_bytes: u64,
}

/// Why a scan stopped at an offset.
enum Damage {
    /// Fragment checksum, type or length bad, or cut short: a crash can cause this.
    Physical(&'static str),
    /// Valid fragments that make no sense together: only corruption or a bug.
    Logical(&'static str),
}

/// The offset of the next valid fragment at or after `from`, if any.
pub(crate) fn next_valid_fragment(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAGMENT_HEADER_LEN - 1))
        .find(|&pos| matches!(parse_fragment(bytes, pos), Fragment::Valid { .. }))
}

/// The highest synced offset declared by any sync mark for `segment` at or after
/// `from`, looking across damaged regions.
fn max_sync_mark_from(bytes: &[u8], mut pos: usize, segment: SegmentId) -> u64 {
    let mut best = 0;
    while pos < bytes.len() {
        match parse_fragment(bytes, pos) {
            Fragment::Valid { ty, body, next } => {
                if ty == FragmentType::SyncMark {
                    if let Some((id, off)) = decode_sync_mark(body) {
                        if id == segment.0 {
                            best = best.max(off);
                        }
                    }
                }
                pos = next;
            }
            _ => match next_valid_fragment(bytes, pos + 1) {
                Some(next) => pos = next,
                None => break,
            },
        }
    }
    best
}

/// Scans the records of one segment whose header has been checked.
///
/// `prev_last_seq` is the last sequence number of the segment before (records must
/// go forward). `on_record(seq, entries, payload)` is called for each record in order.
///
/// # Errors
/// [`Error::Corruption`] for damage that is not a torn tail (in strict mode), or the
/// callback's error.
pub(crate) fn scan_segment(
    bytes: &[u8],
    file: &Path,
    header: &SegmentHeader,
    prev_last_seq: Option<SeqNo>,
    tail: Tail,
    mode: RecoveryMode,
    mut on_record: impl FnMut(SeqNo, u32, &[u8]) -> Result<()>,
) -> Result<ScanOutcome> {
    let mut out = ScanOutcome {
        valid_len: SEGMENT_HEADER_LEN as u64,
        last_seq: prev_last_seq,
        ..ScanOutcome::default()
    };
    let mut declared_synced = SEGMENT_HEADER_LEN as u64;
    let mut pos = SEGMENT_HEADER_LEN;
    let mut record_start = pos;
    let mut assembling: Option<Vec<u8>> = None;
    loop {
        if pos >= bytes.len() && assembling.is_none() {
            break;
        }
        // Parse one fragment; `damage` is set when it cannot be used.
        let mut damage = None;
        let mut next_pos = pos;
        match parse_fragment(bytes, pos) {
            Fragment::Incomplete => {
                damage = Some(Damage::Physical("record cut off by end of file"))
            }
            Fragment::Invalid(reason) => damage = Some(Damage::Physical(reason)),
            Fragment::Valid { ty, body, next } => {
                next_pos = next;
                let complete: Option<std::borrow::Cow<'_, [u8]>> = match (ty, assembling.take()) {
                    (FragmentType::SyncMark, None) => {
                        if let Some((id, off)) = decode_sync_mark(body) {
                            if id == header.id.0 {
                                declared_synced = declared_synced.max(off);
                            }
                        }
                        record_start = next;
                        None
                    }
                    (FragmentType::Full, None) => Some(body.into()),
                    (FragmentType::First, None) => {
                        assembling = Some(body.to_vec());
                        None
                    }
                    (FragmentType::Middle, Some(mut acc)) => {
                        acc.extend_from_slice(body);
                        assembling = Some(acc);
                        None
                    }
                    (FragmentType::Last, Some(mut acc)) => {
                        acc.extend_from_slice(body);
                        Some(acc.into())
                    }
                    (FragmentType::Middle | FragmentType::Last, None) => {
                        damage = Some(Damage::Logical("continuation fragment without a first"));
                        None
                    }
                    (_, Some(_)) => {
                        damage = Some(Damage::Logical("fragmented record cut short"));
                        None
                    }
                };
                if let Some(bytes) = complete {
                    match decode_record(&bytes) {
                        None => damage = Some(Damage::Logical("record shorter than its prefix")),
                        Some((_, 0, _)) => {
                            damage = Some(Damage::Logical("record with zero entries"))
                        }
                        Some((seq, _, _)) if seq < header.first_seq => {
                            damage = Some(Damage::Logical(
                                "record sequence number below the segment's first",
                            ))
                        }
                        Some((seq, _, _)) if out.last_seq.is_some_and(|last| seq <= last) => {
                            damage = Some(Damage::Logical("sequence numbers go backwards"))
                        }
                        Some((seq, entries, payload)) => {
                            on_record(seq, entries, payload)?;
                            out.last_seq = Some(seq.plus(u64::from(entries) - 1));
                            out.records += 1;
                            record_start = next;
                            out.valid_len = next as u64;
                        }
                    }
                }
            }
        }
        let Some(damage) = damage else {
            pos = next_pos;
            continue;
        };
        // Damage at `pos`; the logical record it belongs to starts at `record_start`.
        let (reason, physical) = match damage {
            Damage::Physical(r) => (r, true),
            Damage::Logical(r) => (r, false),
        };
        match tail {
            Tail::Live if physical && next_valid_fragment(bytes, pos + 1).is_none() => {
                // Not written yet: the end of what can be read now.
                break;
            }
            Tail::Recover if physical => {
                let synced = declared_synced.max(max_sync_mark_from(bytes, pos, header.id));
                if pos as u64 >= synced {
                    out.torn = Some((record_start as u64, reason));
                    out.valid_len = record_start as u64;
                    return Ok(out);
                }
            }
            _ => {}
        }
        if mode == RecoveryMode::Strict {
            return Err(Error::corruption(file, pos as u64, reason));
        }
        // Salvage: skip to the next valid fragment and count what was lost.
        assembling = None;
        let resume = next_valid_fragment(bytes, pos.max(record_start) + 1).unwrap_or(bytes.len());
        out.skipped_regions += 1;
        out.skipped_bytes += (resume - record_start.min(pos)) as u64;
        pos = resume;
        record_start = resume;
        out.valid_len = resume as u64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_record, encode_sync_mark};

    fn segment(records: &[(u64, &[u8])]) -> (SegmentHeader, Vec<u8>) {
        let header = SegmentHeader {
            id: SegmentId(3),
            first_seq: SeqNo(1),
        };
        let mut bytes = header.encode().to_vec();
        for (seq, payload) in records {
            encode_record(&mut bytes, SeqNo(*seq), 1, payload);
        }
        (header, bytes)
    }

    fn scan(
        bytes: &[u8],
        header: &SegmentHeader,
        tail: Tail,
        mode: RecoveryMode,
    ) -> Result<(ScanOutcome, Vec<u64>)> {
        let mut seen = Vec::new();
        let out = scan_segment(
            bytes,
            Path::new("x.wal"),
            header,
            None,
            tail,
            mode,
            |seq, _, _| {
                seen.push(seq.0);
                Ok(())
            },
        )?;
        Ok((out, seen))
    }

    #[test]
    fn header_round_trip_and_checks() {
        let h = SegmentHeader {
            id: SegmentId(42),
            first_seq: SeqNo(1000),
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes, Path::new("a")).unwrap(), h);
        for i in 0..SEGMENT_HEADER_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            let err = SegmentHeader::decode(&bad, Path::new("a")).unwrap_err();
            assert!(err.is_corruption(), "flip at {i} not detected");
        }
        assert!(SegmentHeader::decode(&bytes[..10], Path::new("a")).is_err());
    }

    #[test]
    fn file_names() {
        assert_eq!(segment_file_name(SegmentId(7)), "000007.wal");
        assert_eq!(parse_segment_file_name("000007.wal"), Some(SegmentId(7)));
        assert_eq!(
            parse_segment_file_name("12345678.wal"),
            Some(SegmentId(12345678))
        );
        assert_eq!(parse_segment_file_name("x.wal"), None);
        assert_eq!(parse_segment_file_name(".wal"), None);
        assert_eq!(parse_segment_file_name("000007.log"), None);
    }

    #[test]
    fn torn_last_record_is_truncated_in_recover_mode() {
        let (h, bytes) = segment(&[(1, b"one"), (2, b"two")]);
        let cut = bytes.len() - 2;
        let (out, seen) = scan(&bytes[..cut], &h, Tail::Recover, RecoveryMode::Strict).unwrap();
        assert_eq!(seen, vec![1]);
        assert!(out.torn.is_some());
        assert_eq!(
            out.valid_len as usize,
            SEGMENT_HEADER_LEN + crate::record::encoded_len(3)
        );
    }

    #[test]
    fn torn_end_of_sealed_segment_is_corruption() {
        let (h, bytes) = segment(&[(1, b"one"), (2, b"two")]);
        let err = scan(
            &bytes[..bytes.len() - 1],
            &h,
            Tail::Sealed,
            RecoveryMode::Strict,
        )
        .unwrap_err();
        assert!(err.is_corruption());
    }

    #[test]
    fn damage_followed_by_valid_records_below_a_sync_mark_is_corruption() {
        let (h, mut bytes) = segment(&[(1, b"one"), (2, b"two")]);
        let synced = bytes.len() as u64;
        encode_sync_mark(&mut bytes, 3, synced);
        encode_record(&mut bytes, SeqNo(3), 1, b"three");
        bytes[SEGMENT_HEADER_LEN + 10] ^= 1;
        let err = scan(&bytes, &h, Tail::Recover, RecoveryMode::Strict).unwrap_err();
        match err {
            Error::Corruption { offset, .. } => assert_eq!(offset, SEGMENT_HEADER_LEN as u64),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn unsynced_damage_with_later_valid_record_is_torn() {
        // Out-of-order writeback: a hole in the unsynced region with a valid record
        // persisted after it. Nothing declared it synced, so it is a torn tail.
        let (h, mut bytes) = segment(&[(1, b"one"), (2, b"two"), (3, b"three")]);
        let second = SEGMENT_HEADER_LEN + crate::record::encoded_len(3);
        bytes[second + 12] ^= 0xff;
        let (out, seen) = scan(&bytes, &h, Tail::Recover, RecoveryMode::Strict).unwrap();
        assert_eq!(seen, vec![1]);
        assert_eq!(out.valid_len as usize, second);
    }

    #[test]
    fn salvage_skips_damage_and_counts_it() {
        let (h, mut bytes) = segment(&[(1, b"one"), (2, b"two"), (3, b"three")]);
        let second = SEGMENT_HEADER_LEN + crate::record::encoded_len(3);
        bytes[second + 12] ^= 0xff;
        let (out, seen) = scan(&bytes, &h, Tail::Sealed, RecoveryMode::Salvage).unwrap();
        assert_eq!(seen, vec![1, 3]);
        assert_eq!(out.skipped_regions, 1);
    }

    #[test]
    fn backwards_sequence_is_corruption() {
        let (h, bytes) = segment(&[(5, b"a"), (4, b"b")]);
        assert!(scan(&bytes, &h, Tail::Recover, RecoveryMode::Strict)
            .unwrap_err()
            .is_corruption());
    }

    #[test]
    fn live_tail_stops_quietly() {
        let (h, bytes) = segment(&[(1, b"one"), (2, b"two")]);
        let (out, seen) = scan(
            &bytes[..bytes.len() - 3],
            &h,
            Tail::Live,
            RecoveryMode::Strict,
        )
        .unwrap();
        assert_eq!(seen, vec![1]);
        assert!(out.torn.is_none());
    }
}
