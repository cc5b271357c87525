//! The value log of Strata's key-value separation: append-only segment files holding
//! large values, so that compaction rewrites small pointers instead of the values.
//!
//! - [`format`]: the bytes of a segment (header, records) and their checksums; the
//!   spec is `docs/format/vlog.md`.
//! - [`ValuePointer`]: where one value lives (segment, offset, length); 20 bytes, kept
//!   inline in the tree in place of the value.
//! - [`SegmentWriter`] appends records through the [`strata_wal::Fs`] trait;
//!   [`read_value`] reads one back with a positional read and checks it;
//!   [`scan_segment`] walks a whole segment (for garbage collection and checks).
//!
//! Trade-off: every record carries its key and sequence number (about 25 bytes plus the
//! key) so that garbage collection can ask the tree whether the record is still live
//! without any other index, and a read can check it got the value of the key it asked
//! for.

pub mod format;
pub mod fuzzing;
mod pointer;
mod segment;

pub use format::{
    CheckedRecord, CheckedValue, Record, SegmentHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
pub use pointer::{ValuePointer, POINTER_LEN};
pub use segment::{
    read_checked, read_value, scan_segment, segment_file_name, ScanOutcome, SegmentWriter,
    VlogCompression,
};
pub use strata_wal::{Error, Result};
