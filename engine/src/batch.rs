//! Write batches and their encoding as a WAL record payload.
//!
//! A batch is applied atomically: its entries get consecutive sequence numbers, one
//! WAL record holds them all, and recovery replays the record whole or not at all.
//!
//! Payload layout (all varints, see `docs/format/wal.md` for the framing around it):
//! `count`, then per entry `op: u8`, `keyspace id`, `key` (length-prefixed) and, for a
//! put, `value` (length-prefixed).

use strata_wal::codec::{put_bytes, put_varint, Reader};

use crate::error::{Error, Result};
use crate::ids::KeyspaceId;
use crate::key::{MAX_KEY_LEN, MAX_VALUE_LEN};
use crate::Keyspace;

/// What one batch entry does. Stored in the WAL: values are only ever added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BatchOp {
    /// Set a key to a value.
    Put = 1,
    /// Delete a key.
    Delete = 2,
    /// Delete every key starting with a prefix.
    DeletePrefix = 3,
}

impl BatchOp {
    fn from_u8(v: u8) -> Option<BatchOp> {
        match v {
            1 => Some(BatchOp::Put),
            2 => Some(BatchOp::Delete),
            3 => Some(BatchOp::DeletePrefix),
            _ => None,
        }
    }
}

/// One entry of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// The operation.
    pub op: BatchOp,
    /// The keyspace it applies to.
    pub keyspace: KeyspaceId,
    /// The key (or prefix).
    pub key: Vec<u8>,
    /// The value (empty unless `op` is `Put`).
    pub value: Vec<u8>,
}

/// A group of writes, possibly across keyspaces, applied atomically by
/// [`crate::Db::write`].
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(crate) entries: Vec<BatchEntry>,
    pub(crate) bytes: usize,
    pub(crate) error: Option<String>,
    /// The database the batch's keyspaces belong to (set by the first entry).
    pub(crate) instance: Option<u64>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Sets `key` to `value` in `keyspace`.
    pub fn put(&mut self, keyspace: &Keyspace, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.note_db(keyspace);
        self.push(BatchOp::Put, keyspace.id(), key.as_ref(), value.as_ref());
    }

    /// Deletes `key` from `keyspace`.
    pub fn delete(&mut self, keyspace: &Keyspace, key: impl AsRef<[u8]>) {
        self.note_db(keyspace);
        self.push(BatchOp::Delete, keyspace.id(), key.as_ref(), &[]);
    }

    /// Deletes every key of `keyspace` that starts with `prefix` (one tombstone, not a
    /// loop of deletes).
    pub fn delete_prefix(&mut self, keyspace: &Keyspace, prefix: impl AsRef<[u8]>) {
        self.note_db(keyspace);
        self.push(BatchOp::DeletePrefix, keyspace.id(), prefix.as_ref(), &[]);
    }

    fn note_db(&mut self, keyspace: &Keyspace) {
        match self.instance {
            None => self.instance = Some(keyspace.instance()),
            Some(i) if i != keyspace.instance() && self.error.is_none() => {
                self.error = Some("a batch may not mix keyspaces of two databases".to_string());
            }
            Some(_) => {}
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes of keys and values.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.error = None;
        self.instance = None;
    }

    pub(crate) fn push(&mut self, op: BatchOp, keyspace: KeyspaceId, key: &[u8], value: &[u8]) {
        if key.len() > MAX_KEY_LEN && self.error.is_none() {
            self.error = Some(format!(
                "key of {} bytes is larger than the maximum of {MAX_KEY_LEN} bytes",
                key.len()
            ));
        }
        if value.len() as u64 > MAX_VALUE_LEN && self.error.is_none() {
            self.error = Some(format!(
                "value of {} bytes is larger than the maximum of {MAX_VALUE_LEN} bytes",
                value.len()
            ));
        }
        self.bytes += key.len() + value.len();
        self.entries.push(BatchEntry {
            op,
            keyspace,
            key: key.to_vec(),
            value: value.to_vec(),
        });
    }

    /// Checks limits recorded while building.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.error {
            Some(e) => Err(Error::InvalidArgument(e.clone())),
            None => Ok(()),
        }
    }
}

/// Encodes entries as a WAL payload.
pub(crate) fn encode_entries<'a>(
    out: &mut Vec<u8>,
    entries: impl ExactSizeIterator<Item = (BatchOp, KeyspaceId, &'a [u8], &'a [u8])>,
) {
    put_varint(out, entries.len() as u64);
    for (op, ks, key, value) in entries {
        out.push(op as u8);
        put_varint(out, u64::from(ks.0));
        put_bytes(out, key);
        if op == BatchOp::Put {
            put_bytes(out, value);
        }
    }
}

/// A decoded entry borrowing the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodedEntry<'a> {
    pub op: BatchOp,
    pub keyspace: KeyspaceId,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Decodes a WAL payload; `None` if it is malformed.
pub(crate) fn decode_entries(payload: &[u8]) -> Option<Vec<DecodedEntry<'_>>> {
    let mut r = Reader::new(payload);
    let count = r.len()?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let op = BatchOp::from_u8(r.u8()?)?;
        let keyspace = KeyspaceId(r.varint_u32()?);
        let key = r.length_prefixed()?;
        let value = if op == BatchOp::Put {
            r.length_prefixed()?
        } else {
            &[]
        };
        out.push(DecodedEntry {
            op,
            keyspace,
            key,
            value,
        });
    }
    r.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let entries = [
            (BatchOp::Put, KeyspaceId(1), &b"k1"[..], &b"v1"[..]),
            (BatchOp::Delete, KeyspaceId(2), &b"k2"[..], &b""[..]),
            (BatchOp::DeletePrefix, KeyspaceId(1), &b"p/"[..], &b""[..]),
        ];
        let mut buf = Vec::new();
        encode_entries(&mut buf, entries.iter().copied());
        let back = decode_entries(&buf).unwrap();
        assert_eq!(back.len(), 3);
        for (d, e) in back.iter().zip(entries.iter()) {
            assert_eq!((d.op, d.keyspace, d.key, d.value), *e);
        }
        assert!(decode_entries(&buf[..buf.len() - 1]).is_none());
        let mut extra = buf.clone();
        extra.push(0);
        assert!(decode_entries(&extra).is_none());
    }
}
