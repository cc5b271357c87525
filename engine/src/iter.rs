//! Internal cursors over internal keys, and the merging iterator built on them.
//!
//! An [`InternalIterator`] walks `(internal key, value)` entries in
//! [`crate::key::compare_internal`] order. Memtables, data blocks and tables implement
//! it; the merging iterator combines many into one sorted stream. Keys are borrowed
//! from the cursor and valid until it next moves; values are [`bytes::Bytes`], cheap to
//! clone and never copied out of a cached block.

use bytes::Bytes;

use crate::error::Result;

/// A cursor over entries in internal-key order.
///
/// Positioning methods leave the cursor either on an entry (`valid()`) or past an end.
/// An error (corruption, I/O) is returned by the call that hit it; the cursor is then
/// not valid.
pub trait InternalIterator: Send {
    /// Whether the cursor is on an entry.
    fn valid(&self) -> bool;
    /// Moves to the first entry.
    ///
    /// # Errors
    /// Corruption or I/O errors reading the underlying data.
    fn seek_to_first(&mut self) -> Result<()>;
    /// Moves to the last entry.
    ///
    /// # Errors
    /// As [`InternalIterator::seek_to_first`].
    fn seek_to_last(&mut self) -> Result<()>;
    /// Moves to the first entry at or after `target` (an internal key).
    ///
    /// # Errors
    /// As [`InternalIterator::seek_to_first`].
    fn seek(&mut self, target: &[u8]) -> Result<()>;
    /// Moves to the last entry at or before `target` (an internal key).
    ///
    /// # Errors
    /// As [`InternalIterator::seek_to_first`].
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()>;
    /// Moves to the next entry. Requires `valid()`.
    ///
    /// # Errors
    /// As [`InternalIterator::seek_to_first`].
    fn next(&mut self) -> Result<()>;
    /// Moves to the previous entry. Requires `valid()`.
    ///
    /// # Errors
    /// As [`InternalIterator::seek_to_first`].
    fn prev(&mut self) -> Result<()>;
    /// The current internal key. Requires `valid()`; valid until the cursor moves.
    fn key(&self) -> &[u8];
    /// The current value. Requires `valid()`.
    fn value(&self) -> Bytes;
}
