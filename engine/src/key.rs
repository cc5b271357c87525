//! Internal keys: a user key plus the sequence number and kind of one version.
//!
//! Encoded as `user_key ++ trailer`, where the trailer is `seq << 8 | kind` as a
//! little-endian `u64`. The order (see [`compare_internal`]) is user key ascending, then
//! sequence number descending, so the newest version of a key comes first and a seek to
//! `(key, snapshot)` lands on the newest version visible to that snapshot.

use std::cmp::Ordering;

use strata_wal::SeqNo;

/// Largest user key accepted: 64 KiB.
pub const MAX_KEY_LEN: usize = 64 * 1024;
/// Largest value accepted: 4 GiB minus one.
pub const MAX_VALUE_LEN: u64 = u32::MAX as u64;
/// Bytes of the trailer after the user key.
pub const TRAILER_LEN: usize = 8;
/// Largest sequence number an internal key can hold (56 bits).
pub const MAX_SEQ: u64 = (1 << 56) - 1;

/// What a version of a key is. Stored on disk: values are only ever added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValueKind {
    /// A value.
    Put = 1,
    /// A point tombstone.
    Delete = 2,
    /// A value kept in the value log: the entry's value is an encoded
    /// `strata_vlog::ValuePointer` (key-value separation, see `value_log.rs`).
    /// Only tables hold these; memtables always hold values inline.
    Pointer = 3,
}

impl ValueKind {
    /// Decodes a stored kind byte.
    pub fn from_u8(v: u8) -> Option<ValueKind> {
        match v {
            1 => Some(ValueKind::Put),
            2 => Some(ValueKind::Delete),
            3 => Some(ValueKind::Pointer),
            _ => None,
        }
    }

    /// Whether the version holds a value (inline or in the value log).
    pub fn is_value(self) -> bool {
        matches!(self, ValueKind::Put | ValueKind::Pointer)
    }
}

/// Packs a sequence number and kind into a trailer.
pub fn trailer(seq: SeqNo, kind: ValueKind) -> u64 {
    (seq.0.min(MAX_SEQ) << 8) | kind as u64
}

/// Appends the internal key for `(user_key, seq, kind)` to `out`.
pub fn push_internal_key(out: &mut Vec<u8>, user_key: &[u8], seq: SeqNo, kind: ValueKind) {
    out.reserve(user_key.len() + TRAILER_LEN);
    out.extend_from_slice(user_key);
    out.extend_from_slice(&trailer(seq, kind).to_le_bytes());
}

/// The internal key for `(user_key, seq, kind)`.
pub fn internal_key(user_key: &[u8], seq: SeqNo, kind: ValueKind) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    push_internal_key(&mut out, user_key, seq, kind);
    out
}

/// The key to seek to for the newest version of `user_key` visible at `snapshot`: it
/// sorts before every version with a sequence number at or below `snapshot`.
pub fn seek_key(user_key: &[u8], snapshot: SeqNo) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    out.extend_from_slice(user_key);
    out.extend_from_slice(&seek_trailer(snapshot).to_le_bytes());
    out
}

/// The trailer of [`seek_key`].
pub fn seek_trailer(snapshot: SeqNo) -> u64 {
    (snapshot.0.min(MAX_SEQ) << 8) | 0xff
}

/// An internal key split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// The user's key.
    pub user_key: &'a [u8],
    /// The version's sequence number.
    pub seq: SeqNo,
    /// The version's kind.
    pub kind: ValueKind,
}

/// Splits an internal key; `None` if it is too short or its kind byte is unknown.
pub fn parse_internal_key(ikey: &[u8]) -> Option<ParsedKey<'_>> {
    let split = ikey.len().checked_sub(TRAILER_LEN)?;
    let (user_key, tail) = ikey.split_at(split);
    let mut t = [0u8; TRAILER_LEN];
    t.copy_from_slice(tail);
    let trailer = u64::from_le_bytes(t);
    let kind = ValueKind::from_u8((trailer & 0xff) as u8)?;
    Some(ParsedKey {
        user_key,
        seq: SeqNo(trailer >> 8),
        kind,
    })
}

/// The user-key part of an internal key (the whole slice if it is too short).
pub fn user_key(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len().saturating_sub(TRAILER_LEN)]
}

fn raw_trailer(ikey: &[u8]) -> u64 {
    match ikey.len().checked_sub(TRAILER_LEN) {
        Some(split) => {
            let mut t = [0u8; TRAILER_LEN];
            t.copy_from_slice(&ikey[split..]);
            u64::from_le_bytes(t)
        }
        None => 0,
    }
}

/// The order of internal keys: user key ascending, then trailer (sequence number)
/// descending. Total on any bytes, so malformed keys cannot make it panic.
pub fn compare_internal(a: &[u8], b: &[u8]) -> Ordering {
    user_key(a)
        .cmp(user_key(b))
        .then_with(|| raw_trailer(b).cmp(&raw_trailer(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_sort_first_and_seek_key_finds_visible() {
        let k5 = internal_key(b"k", SeqNo(5), ValueKind::Put);
        let k3 = internal_key(b"k", SeqNo(3), ValueKind::Delete);
        let j9 = internal_key(b"j", SeqNo(9), ValueKind::Put);
        let ka = internal_key(b"ka", SeqNo(1), ValueKind::Put);
        let mut keys = vec![ka.clone(), k3.clone(), j9.clone(), k5.clone()];
        keys.sort_by(|a, b| compare_internal(a, b));
        assert_eq!(keys, vec![j9, k5.clone(), k3.clone(), ka]);
        assert_eq!(
            compare_internal(&seek_key(b"k", SeqNo(4)), &k3),
            Ordering::Less
        );
        assert_eq!(
            compare_internal(&seek_key(b"k", SeqNo(4)), &k5),
            Ordering::Greater
        );
        assert_eq!(
            compare_internal(&seek_key(b"k", SeqNo(5)), &k5),
            Ordering::Less
        );
    }

    #[test]
    fn parse_round_trip_and_rejects_garbage() {
        let k = internal_key(b"hello", SeqNo(77), ValueKind::Delete);
        let p = parse_internal_key(&k).unwrap();
        assert_eq!(
            (p.user_key, p.seq, p.kind),
            (&b"hello"[..], SeqNo(77), ValueKind::Delete)
        );
        assert!(parse_internal_key(b"short").is_none());
        let mut bad = k.clone();
        let n = bad.len();
        bad[n - 8] = 0x7f;
        assert!(parse_internal_key(&bad).is_none());
    }
}
