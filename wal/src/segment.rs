//! Write-ahead-log segment files (spec: `docs/format/wal.md`).
//!
//! A segment is `{id:06}.wal`: a 40-byte header (magic, format version, flags, segment
//! id, first sequence number, checksum salt, CRC32) followed by fragments (see
//! `record`), every one checksummed with the header's salt. This module encodes the
//! header and scans a segment's bytes, reassembling logical records and classifying
//! damage:
//!
//! - in the last segment at recovery, damage at or beyond the highest offset a sync
//!   mark declares durable is a **torn tail** (an unsynced write cut by a crash): the
//!   segment is truncated there;
//! - in the segment a live reader is following, a fragment cut off by the end of the
//!   file is simply not written yet;
//! - any other damage is **corruption**: an error naming file and offset, or, in
//!   salvage mode, a skipped region that is counted.
//!
//! Scanning works on the whole segment in memory: segments are bounded by the
//! rotation size, and recovery needs to look past damage to classify it. Looking past
//! damage for sync marks is one linear pass per segment (only sync-mark-shaped headers
//! are checksummed); salvage's resynchronisation is the one step that can cost more
//! (see [`crate::record::next_valid_fragment`]).

use std::path::Path;

use crate::error::{Error, Result};
use crate::ids::{SegmentId, SeqNo};
use crate::record::{
    decode_record, max_declared_synced, next_valid_fragment, parse_fragment, sync_mark_offset,
    Fragment, FragmentType, Salt,
};

/// The first eight bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATAWL";
/// The segment format version this code writes and reads. Version 1 (no salt) is not
/// read.
pub const SEGMENT_FORMAT_VERSION: u32 = 2;
/// Bytes of the segment header: magic, version, flags, id, first sequence number,
/// salt, CRC32.
pub const SEGMENT_HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 4 + 4;
/// File-name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// Offsets of the header fields.
const VERSION_AT: usize = 8;
const FLAGS_AT: usize = 12;
const ID_AT: usize = 16;
const FIRST_SEQ_AT: usize = 24;
const SALT_AT: usize = 32;
const CRC_AT: usize = 36;

/// How damage is treated when reading the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Any damage other than a torn tail is an [`Error::Corruption`] (the default).
    #[default]
    Strict,
    /// Damaged regions, and segments whose header is damaged or names the wrong id,
    /// are skipped and counted; reading goes on with the next valid record. Use it to
    /// salvage what is left of a damaged log. It does not repair the log: the damage
    /// stays on disk and a later strict open reports it again (see `docs/format/wal.md`).
    Salvage,
}

/// The decoded header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's id; must match its file name.
    pub id: SegmentId,
    /// The sequence number the segment's first record has or will have.
    pub first_seq: SeqNo,
    /// The salt every fragment of the segment is checksummed with.
    pub salt: Salt,
}

fn u32_at(h: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

fn u64_at(h: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    u64::from_le_bytes(b)
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..VERSION_AT].copy_from_slice(&SEGMENT_MAGIC);
        out[VERSION_AT..FLAGS_AT].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        // FLAGS_AT..ID_AT: flags, zero (reserved).
        out[ID_AT..FIRST_SEQ_AT].copy_from_slice(&self.id.0.to_le_bytes());
        out[FIRST_SEQ_AT..SALT_AT].copy_from_slice(&self.first_seq.0.to_le_bytes());
        out[SALT_AT..CRC_AT].copy_from_slice(&self.salt.0.to_le_bytes());
        let crc = crc32fast::hash(&out[..CRC_AT]);
        out[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
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
        if h[0..VERSION_AT] != SEGMENT_MAGIC {
            return Err(Error::corruption(
                file,
                0,
                "bad magic: not a Strata WAL segment",
            ));
        }
        if crc32fast::hash(&h[..CRC_AT]) != u32_at(h, CRC_AT) {
            return Err(Error::corruption(
                file,
                CRC_AT as u64,
                "segment header checksum mismatch",
            ));
        }
        let version = u32_at(h, VERSION_AT);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(Error::corruption(
                file,
                VERSION_AT as u64,
                format!(
                    "segment format version {version}; this build reads version \
                     {SEGMENT_FORMAT_VERSION}"
                ),
            ));
        }
        let flags = u32_at(h, FLAGS_AT);
        if flags != 0 {
            return Err(Error::corruption(
                file,
                FLAGS_AT as u64,
                format!("unknown segment flags {flags:#x}"),
            ));
        }
        let first_seq = SeqNo(u64_at(h, FIRST_SEQ_AT));
        // A segment created when the space was exhausted starts just past the maximum.
        if first_seq == SeqNo::ZERO || first_seq > SeqNo::MAX_ASSIGNABLE.plus(1) {
            return Err(Error::corruption(
                file,
                FIRST_SEQ_AT as u64,
                format!("first sequence number {first_seq} is outside the assignable range"),
            ));
        }
        Ok(SegmentHeader {
            id: SegmentId(u64_at(h, ID_AT)),
            first_seq,
            salt: Salt(u32_at(h, SALT_AT)),
        })
    }
}

/// Whether `bytes`, the whole content of the newest segment, look like a header that
/// was never completely written: shorter than a header, or a header's length of zeros
/// (what some file systems leave after a crash between extending a file and writing
/// its data). Such a segment can hold no record, so recovery removes it. A full-length
/// header that fails its checks in any other way is corruption.
pub(crate) fn is_unwritten_header(bytes: &[u8]) -> bool {
    bytes.len() < SEGMENT_HEADER_LEN
        || (bytes.len() == SEGMENT_HEADER_LEN && bytes.iter().all(|&b| b == 0))
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
    /// The segment being written right now: a fragment cut off by the end of the file
    /// is not written yet (the end of what can be read); any other damage is
    /// corruption. Nothing is scanned ahead.
    Live,
}

/// What a scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ScanOutcome {
    /// Length of the valid prefix (where a torn tail is cut).
    pub valid_len: u64,
    /// Sequence number of the last entry of the last record delivered (or
    /// `prev_last_seq` if none was).
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

/// Checks a reassembled record against the segment and what came before it.
fn check_record(
    seq: SeqNo,
    entries: u32,
    header: &SegmentHeader,
    last: Option<SeqNo>,
) -> std::result::Result<SeqNo, &'static str> {
    let Some(span) = u64::from(entries).checked_sub(1) else {
        return Err("record with zero entries");
    };
    if seq < header.first_seq {
        return Err("record sequence number below the segment's first");
    }
    if last.is_some_and(|last| seq <= last) {
        return Err("sequence numbers go backwards");
    }
    match seq.0.checked_add(span) {
        Some(end) if end <= SeqNo::MAX_ASSIGNABLE.0 => Ok(SeqNo(end)),
        _ => Err("record sequence numbers reach past the largest assignable one"),
    }
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
    let salt = header.salt;
    let mut out = ScanOutcome {
        valid_len: SEGMENT_HEADER_LEN as u64,
        last_seq: prev_last_seq,
        ..ScanOutcome::default()
    };
    let mut declared_synced = SEGMENT_HEADER_LEN as u64;
    // The highest offset declared by a sync mark at or after the first damage, found
    // once per segment: later damage lies after it.
    let mut declared_past_damage: Option<u64> = None;
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
        match parse_fragment(bytes, pos, salt) {
            // What a live reader sees of a write in progress: the end of the data.
            Fragment::Incomplete if tail == Tail::Live => break,
            Fragment::Incomplete => {
                damage = Some(Damage::Physical("record cut off by end of file"))
            }
            Fragment::Invalid(reason) => damage = Some(Damage::Physical(reason)),
            Fragment::Valid { ty, body, next } => {
                next_pos = next;
                let complete: Option<std::borrow::Cow<'_, [u8]>> = match (ty, assembling.take()) {
                    (FragmentType::SyncMark, None) => {
                        if let Some(off) = sync_mark_offset(body, header.id.0, pos) {
                            declared_synced = declared_synced.max(off);
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
                        Some((seq, entries, payload)) => {
                            match check_record(seq, entries, header, out.last_seq) {
                                Err(why) => damage = Some(Damage::Logical(why)),
                                Ok(last) => {
                                    on_record(seq, entries, payload)?;
                                    out.last_seq = Some(last);
                                    out.records += 1;
                                    record_start = next;
                                    out.valid_len = next as u64;
                                }
                            }
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
        if tail == Tail::Recover && physical {
            let past = *declared_past_damage.get_or_insert_with(|| {
                max_declared_synced(bytes, pos, salt, header.id.0).unwrap_or(0)
            });
            if pos as u64 >= declared_synced.max(past) {
                out.torn = Some((record_start as u64, reason));
                out.valid_len = record_start as u64;
                return Ok(out);
            }
        }
        if mode == RecoveryMode::Strict {
            return Err(Error::corruption(file, pos as u64, reason));
        }
        // Salvage: skip to the next valid fragment and count what was lost.
        assembling = None;
        let resume =
            next_valid_fragment(bytes, pos.max(record_start) + 1, salt).unwrap_or(bytes.len());
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
    use crate::record::{checksummed_bytes, encode_record, encode_sync_mark};

    const SALT: Salt = Salt(0xa5a5_0001);

    fn segment(records: &[(u64, &[u8])]) -> (SegmentHeader, Vec<u8>) {
        let header = SegmentHeader {
            id: SegmentId(3),
            first_seq: SeqNo(1),
            salt: SALT,
        };
        let mut bytes = header.encode().to_vec();
        for (seq, payload) in records {
            encode_record(&mut bytes, SALT, SeqNo(*seq), 1, payload);
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
            salt: Salt(0xdead_beef),
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
        for bad_seq in [0, SeqNo::MAX_ASSIGNABLE.0 + 2, u64::MAX] {
            let bytes = SegmentHeader {
                first_seq: SeqNo(bad_seq),
                ..h
            }
            .encode();
            let err = SegmentHeader::decode(&bytes, Path::new("a")).unwrap_err();
            assert!(err.is_corruption(), "{err}");
        }
    }

    #[test]
    fn unwritten_headers_are_short_or_all_zero() {
        let (_, bytes) = segment(&[]);
        assert!(!is_unwritten_header(&bytes));
        assert!(is_unwritten_header(&bytes[..SEGMENT_HEADER_LEN - 1]));
        assert!(is_unwritten_header(&[]));
        assert!(is_unwritten_header(&[0; SEGMENT_HEADER_LEN]));
        let mut flipped = bytes.clone();
        flipped[20] ^= 4;
        assert!(!is_unwritten_header(&flipped));
        assert!(!is_unwritten_header(&[0; SEGMENT_HEADER_LEN + 1]));
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
        encode_sync_mark(&mut bytes, SALT, 3, synced);
        encode_record(&mut bytes, SALT, SeqNo(3), 1, b"three");
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

    #[test]
    fn record_reaching_past_the_largest_sequence_number_is_corruption() {
        let max = SeqNo::MAX_ASSIGNABLE.0;
        let (h, mut bytes) = segment(&[(1, b"one")]);
        encode_record(&mut bytes, SALT, SeqNo(max), 2, b"overflows");
        let err = scan(&bytes, &h, Tail::Sealed, RecoveryMode::Strict).unwrap_err();
        assert!(err.to_string().contains("largest assignable"), "{err}");
        let (h, mut bytes) = segment(&[(1, b"one")]);
        encode_record(&mut bytes, SALT, SeqNo(u64::MAX), 3, b"wraps");
        assert!(scan(&bytes, &h, Tail::Recover, RecoveryMode::Strict)
            .unwrap_err()
            .is_corruption());
        // The very last assignable number is fine.
        let (h, mut bytes) = segment(&[(1, b"one")]);
        encode_record(&mut bytes, SALT, SeqNo(max - 1), 2, b"fits");
        let (out, seen) = scan(&bytes, &h, Tail::Sealed, RecoveryMode::Strict).unwrap();
        assert_eq!(seen, vec![1, max - 1]);
        assert_eq!(out.last_seq, Some(SeqNo(max)));
    }

    #[test]
    fn payload_bytes_shaped_like_a_sync_mark_do_not_move_the_synced_offset() {
        // A torn last record whose payload holds a sync mark in this segment's own
        // salt claiming a huge durable offset: ignored, so the tail is torn, not
        // corruption.
        let (h, mut bytes) = segment(&[(1, b"one")]);
        let mut payload = b"user bytes:".to_vec();
        encode_sync_mark(&mut payload, SALT, 3, 1 << 40);
        payload.extend_from_slice(&[b'z'; 100]);
        let keep = bytes.len();
        encode_record(&mut bytes, SALT, SeqNo(2), 1, &payload);
        let cut = bytes.len() - 50;
        let (out, seen) = scan(&bytes[..cut], &h, Tail::Recover, RecoveryMode::Strict).unwrap();
        assert_eq!(seen, vec![1]);
        assert_eq!(out.torn.map(|t| t.0), Some(keep as u64));
    }

    #[test]
    fn live_tail_with_an_encoded_record_in_the_payload_stops_quietly() {
        let (h, mut bytes) = segment(&[(1, b"one")]);
        let mut payload = b"user bytes:".to_vec();
        encode_record(&mut payload, SALT, SeqNo(1000), 1, b"inner");
        payload.extend_from_slice(&[b'z'; 100]);
        encode_record(&mut bytes, SALT, SeqNo(2), 1, &payload);
        let cut = bytes.len() - 50;
        let (_, seen) = scan(&bytes[..cut], &h, Tail::Live, RecoveryMode::Strict).unwrap();
        assert_eq!(seen, vec![1]);
    }

    #[test]
    fn live_tail_with_invalid_bytes_is_corruption() {
        let (h, mut bytes) = segment(&[(1, b"one"), (2, b"two")]);
        let n = bytes.len();
        bytes[n - 2] ^= 0x08;
        let err = scan(&bytes, &h, Tail::Live, RecoveryMode::Strict).unwrap_err();
        assert!(err.is_corruption());
    }

    /// Checks that scanning `bytes` checksums at most a few times its length.
    fn assert_linear(bytes: &[u8], h: &SegmentHeader, tail: Tail) {
        let before = checksummed_bytes();
        let _ = scan(bytes, h, tail, RecoveryMode::Strict);
        let spent = checksummed_bytes() - before;
        assert!(
            spent <= 2 * bytes.len() as u64 + (2 << 20),
            "{tail:?}: {spent} bytes checksummed for a {}-byte segment",
            bytes.len()
        );
    }

    #[test]
    fn damaged_tail_full_of_plausible_headers_is_scanned_in_linear_time() {
        // 4 MiB in which every fifth offset looks like a 1 MiB `Full` fragment: the
        // old scan checksummed ~1 MiB at each of them (quadratic).
        for shift in 0..5 {
            let (h, mut bytes) = segment(&[(1, b"one")]);
            bytes.extend_from_slice(&[0u8, 0, 0x10, 0, 1][shift..]);
            bytes.extend_from_slice(&[0u8, 0, 0x10, 0, 1].repeat((4 << 20) / 5));
            let (out, seen) = scan(&bytes, &h, Tail::Recover, RecoveryMode::Strict).unwrap();
            assert_eq!(seen, vec![1]);
            assert!(out.torn.is_some());
            assert_linear(&bytes, &h, Tail::Recover);
            assert_linear(&bytes, &h, Tail::Live);
            assert_linear(&bytes, &h, Tail::Sealed);
        }
    }
}
