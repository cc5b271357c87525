//! Key-value separation in the engine: which values go to the value log, how tables
//! point at them, how reads resolve them, and how garbage is counted and collected.
//!
//! Values are separated when a memtable is flushed, never on the write path: the WAL
//! keeps logging whole values, so every durability level keeps exactly the promise
//! it makes without separation, and the value log is written sequentially, once per
//! flush, in segments of its own ([`ValueSeparator`]). A flushed or compacted table
//! holds a [`ValueKind::Pointer`] entry (a 20-byte `ValuePointer`) for each value of at
//! least `value_threshold` bytes, and records in the manifest how many bytes it points
//! at in each segment (`TableMeta::value_refs`). Segments are fsynced before the edit
//! naming them, and never appended to afterwards.
//!
//! Garbage is what no table points at: a segment's record bytes minus the bytes the
//! current tables name. Compaction that drops or overwrites a pointer simply leaves it
//! out of its output, so the count follows from the manifest and cannot drift.
//! Collection ([`plan_gc`]) picks segments by garbage ratio (and, past
//! `max_space_amplification`, by most garbage), and rewrites every table pointing into
//! them with their live values copied to a new segment; a segment no table names is
//! removed in the same manifest edit and its file deleted when the last reader's
//! version lets go of it.
//!
//! Trade-off: a value is written twice (WAL, then value log) instead of once, in
//! exchange for recovery, durability and batching staying exactly as they are; what
//! separation saves is every rewrite by compaction after that.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use strata_vlog::{
    read_checked, segment_file_name, CheckedValue, SegmentWriter, ValuePointer, VlogCompression,
};
use strata_wal::{Fs, FsFile, SeqNo};

use crate::db::DbInner;
use crate::error::{Error, Result};
use crate::ids::KeyspaceId;
use crate::key::{user_key, ValueKind};
use crate::manifest::{SegmentMeta, ValueRef};
use crate::options::{Compression, KeyspaceOptions};
use crate::rate_limit::RateLimiter;
use crate::version::Version;

/// A value-log segment is closed and a new one started past this many bytes.
pub const SEGMENT_TARGET_BYTES: u64 = 64 << 20;

/// The open segments of a keyspace, by id.
pub type SegmentMap = BTreeMap<u64, Arc<SegmentHandle>>;

/// An open value-log segment and what the manifest says about it.
pub struct SegmentHandle {
    /// Manifest facts.
    pub meta: SegmentMeta,
    file: Arc<dyn FsFile>,
    obsolete: AtomicBool,
    fs: Arc<dyn Fs>,
    path: PathBuf,
}

impl std::fmt::Debug for SegmentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentHandle")
            .field("meta", &self.meta)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SegmentHandle {
    /// Opens segment `meta.id` in `dir`.
    ///
    /// # Errors
    /// [`Error::Corruption`] when the file is missing, shorter than the manifest says
    /// it was when it was recorded, or its header is damaged or names another segment
    /// or keyspace; I/O errors.
    pub fn open(
        fs: &Arc<dyn Fs>,
        dir: &std::path::Path,
        keyspace: KeyspaceId,
        meta: SegmentMeta,
    ) -> Result<Self> {
        let path = dir.join(segment_file_name(meta.id));
        if !fs.exists(&path)? {
            return Err(Error::corruption(
                &path,
                0,
                "value-log segment listed in the manifest is missing; restore it from a \
                 backup or checkpoint",
            ));
        }
        let file = fs.open(&path)?;
        let len = file.len()?;
        if len < meta.file_bytes {
            return Err(Error::corruption(
                &path,
                len,
                format!(
                    "value-log segment is {len} bytes, the manifest recorded {}; the file was \
                     truncated",
                    meta.file_bytes
                ),
            ));
        }
        let mut header = [0u8; strata_vlog::SEGMENT_HEADER_LEN];
        let header_ok = len >= header.len() as u64 && file.read_exact_at(0, &mut header).is_ok();
        let decoded = if header_ok {
            strata_vlog::SegmentHeader::decode(&header)
        } else {
            Err("the file is shorter than a segment header".to_string())
        };
        match decoded {
            Ok(h) if h.id == meta.id && h.keyspace == keyspace.0 => {}
            Ok(h) => {
                return Err(Error::corruption(
                    &path,
                    0,
                    format!(
                        "the header names segment {} of keyspace {}, the manifest segment {}                          of keyspace {keyspace}; the file was replaced",
                        h.id, h.keyspace, meta.id
                    ),
                ))
            }
            Err(reason) => return Err(Error::corruption(&path, 0, reason)),
        }
        Ok(SegmentHandle {
            meta,
            file,
            obsolete: AtomicBool::new(false),
            fs: Arc::clone(fs),
            path,
        })
    }

    /// Deletes the file once the last reference is dropped.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::SeqCst);
    }

    /// Reads and checks the value `ptr` names, which must be `(key, seq)`'s. A plain
    /// value is a slice of the buffer it was read into: no copy.
    fn read(&self, ptr: &ValuePointer, key: &[u8], seq: SeqNo) -> Result<Bytes> {
        let (buf, record) = read_checked(self.file.as_ref(), self.meta.file_bytes, ptr, Some(key))?;
        if record.seq != seq {
            return Err(Error::corruption(
                &self.path,
                ptr.offset,
                format!(
                    "the record holds sequence number {}, the table's pointer was written at {seq}",
                    record.seq
                ),
            ));
        }
        Ok(match record.value {
            CheckedValue::InPlace(range) => Bytes::from(buf).slice(range),
            CheckedValue::Decompressed(v) => Bytes::from(v),
        })
    }
}

impl Drop for SegmentHandle {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::SeqCst) {
            // A leftover file is removed at the next open (it is not in the manifest).
            let _ = self.fs.remove(&self.path);
        }
    }
}

/// Whether `(key, value)` fits one value-log record (whose length is a `u32`); a
/// value too close to 4 GiB stays in the table.
fn fits_a_record(key_len: usize, value_len: usize) -> bool {
    (strata_vlog::RECORD_HEADER_LEN + key_len + value_len) as u64 <= u64::from(u32::MAX)
}

/// Decodes a pointer entry's value.
fn decode_pointer(key: &[u8], stored: &[u8]) -> Result<ValuePointer> {
    ValuePointer::decode(stored).ok_or_else(|| {
        Error::corruption(
            "(table)",
            0,
            format!(
                "the value-log pointer of key {:?} is {} bytes, not {}",
                String::from_utf8_lossy(key),
                stored.len(),
                strata_vlog::POINTER_LEN
            ),
        )
    })
}

/// The value a pointer entry `(key, seq)` names, read from `segments` and checked.
///
/// # Errors
/// [`Error::Corruption`] naming the segment file and offset when the record is
/// damaged or is not `(key, seq)`'s, or naming the segment when no such segment
/// exists; I/O errors.
pub(crate) fn resolve(
    segments: &SegmentMap,
    key: &[u8],
    seq: SeqNo,
    stored: &[u8],
) -> Result<Bytes> {
    let ptr = decode_pointer(key, stored)?;
    let segment = segments.get(&ptr.segment).ok_or_else(|| {
        Error::corruption(
            segment_file_name(ptr.segment),
            ptr.offset,
            format!(
                "key {:?} points into value-log segment {}, which the keyspace does not hold",
                String::from_utf8_lossy(key),
                ptr.segment
            ),
        )
    })?;
    segment.read(&ptr, key, seq)
}

/// Writes the separated values of one table build (a flush, a compaction or a
/// garbage-collection rewrite) to new segments, and counts what each output table
/// points at.
pub(crate) struct ValueSeparator<'a> {
    inner: &'a DbInner,
    keyspace: KeyspaceId,
    threshold: Option<usize>,
    compression: VlogCompression,
    /// Segments whose values are copied forward (garbage collection).
    relocate: &'a BTreeSet<u64>,
    /// Where copied values are read from.
    sources: &'a SegmentMap,
    /// Paces copied bytes (background garbage collection).
    pacer: Option<&'a RateLimiter>,
    writer: Option<SegmentWriter>,
    /// Segments written and synced, in order.
    written: Vec<SegmentMeta>,
    /// Every file created, so a failed build leaves none behind.
    created: Vec<PathBuf>,
    /// What the table being built points at, per segment: (bytes, records).
    table_refs: BTreeMap<u64, (u64, u64)>,
    /// Bytes written to the value log.
    pub written_bytes: u64,
    /// Bytes of values copied forward from collected segments.
    pub relocated_bytes: u64,
}

impl<'a> ValueSeparator<'a> {
    /// A separator for keyspace `keyspace` with `options`; values in `relocate`'s
    /// segments are copied forward from `sources`.
    pub(crate) fn new(
        inner: &'a DbInner,
        keyspace: KeyspaceId,
        options: &KeyspaceOptions,
        relocate: &'a BTreeSet<u64>,
        sources: &'a SegmentMap,
    ) -> Self {
        ValueSeparator {
            inner,
            keyspace,
            threshold: options.value_threshold.map(|t| t as usize),
            compression: match options.compression {
                Compression::Zstd => VlogCompression::Zstd(3),
                _ => VlogCompression::None,
            },
            relocate,
            sources,
            pacer: None,
            writer: None,
            written: Vec::new(),
            created: Vec::new(),
            table_refs: BTreeMap::new(),
            written_bytes: 0,
            relocated_bytes: 0,
        }
    }

    /// Paces copied-forward bytes with `pacer`.
    pub(crate) fn paced(mut self, pacer: Option<&'a RateLimiter>) -> Self {
        self.pacer = pacer;
        self
    }

    /// What an output table stores for entry `ikey` (of `kind`) with `value`:
    /// `Some(pointer)` when it must store a pointer other than `value` (a large value
    /// just separated, or a value copied forward), `None` to store `value` as it is.
    /// Counts the pointer for the current table either way.
    pub(crate) fn place(
        &mut self,
        ikey: &[u8],
        kind: ValueKind,
        seq: SeqNo,
        value: &[u8],
    ) -> Result<Option<[u8; strata_vlog::POINTER_LEN]>> {
        match kind {
            ValueKind::Put
                if self.threshold.is_some_and(|t| value.len() >= t)
                    && fits_a_record(user_key(ikey).len(), value.len()) =>
            {
                let ptr = self.append(user_key(ikey), seq, value)?;
                Ok(Some(ptr.encode()))
            }
            ValueKind::Pointer => {
                let key = user_key(ikey);
                let ptr = decode_pointer(key, value)?;
                if !self.relocate.contains(&ptr.segment) {
                    self.count(&ptr);
                    return Ok(None);
                }
                let value = resolve(self.sources, key, seq, value)?;
                if let Some(pacer) = self.pacer {
                    pacer.acquire(value.len() as u64, || self.inner.is_closed());
                }
                self.relocated_bytes += u64::from(ptr.len);
                let moved = self.append(key, seq, &value)?;
                Ok(Some(moved.encode()))
            }
            _ => Ok(None),
        }
    }

    fn count(&mut self, ptr: &ValuePointer) {
        let e = self.table_refs.entry(ptr.segment).or_default();
        e.0 += u64::from(ptr.len);
        e.1 += 1;
    }

    fn append(&mut self, key: &[u8], seq: SeqNo, value: &[u8]) -> Result<ValuePointer> {
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.len() >= SEGMENT_TARGET_BYTES)
        {
            self.close_segment()?;
        }
        if self.writer.is_none() {
            let id = self.inner.next_file.fetch_add(1, Ordering::SeqCst);
            let writer = SegmentWriter::create(
                &self.inner.fs,
                &self.inner.path,
                id,
                self.keyspace.0,
                self.compression,
            )?;
            // Only a file this build made is ever deleted by it (`create` refuses an
            // existing one; a half-made one is left to the next open's sweep).
            self.created.push(writer.path().to_path_buf());
            self.writer = Some(writer);
        }
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::Internal("the value-log writer vanished while in use".into()))?;
        let before = writer.len();
        let ptr = writer.append(key, seq, value)?;
        self.written_bytes += writer.len() - before;
        self.count(&ptr);
        Ok(ptr)
    }

    /// Syncs the open segment and records it.
    fn close_segment(&mut self) -> Result<()> {
        if let Some(mut w) = self.writer.take() {
            w.sync()?;
            self.written.push(SegmentMeta {
                id: w.id(),
                file_bytes: w.len(),
                record_bytes: w.len() - strata_vlog::SEGMENT_HEADER_LEN as u64,
                // Counted from the pointers handed out, in `finish`.
                records: 0,
            });
        }
        Ok(())
    }

    /// The current table's references, in segment order; starts the next table's.
    pub(crate) fn take_table_refs(&mut self) -> Vec<ValueRef> {
        std::mem::take(&mut self.table_refs)
            .into_iter()
            .map(|(segment, (bytes, records))| ValueRef {
                segment,
                bytes,
                records,
            })
            .collect()
    }

    /// Syncs what was written and returns the new segments, each with its record
    /// count taken from `tables`' references (every record written is referenced by
    /// exactly one output table).
    pub(crate) fn finish(&mut self, tables: &[Vec<ValueRef>]) -> Result<Vec<SegmentMeta>> {
        self.close_segment()?;
        let mut segments = std::mem::take(&mut self.written);
        for seg in &mut segments {
            seg.records = tables
                .iter()
                .flatten()
                .filter(|r| r.segment == seg.id)
                .map(|r| r.records)
                .sum();
        }
        Ok(segments)
    }

    /// Deletes every segment file this build created (it failed, or will never be
    /// installed).
    pub(crate) fn discard(&mut self) {
        self.writer = None;
        for path in self.created.drain(..) {
            let _ = self.inner.fs.remove(&path);
        }
    }
}

/// What one call of `Db::gc_value_log` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Value-log segments deleted from the manifest (their files go when the last
    /// reader lets go of them).
    pub segments_removed: u64,
    /// Bytes of live records copied forward.
    pub relocated_bytes: u64,
    /// Value-log file bytes before minus after.
    pub reclaimed_bytes: u64,
}

/// How full of live data one segment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentUsage {
    /// The segment id.
    pub id: u64,
    /// Bytes of its records.
    pub record_bytes: u64,
    /// Bytes of the records some table of the version points at.
    pub live_bytes: u64,
}

impl SegmentUsage {
    /// Bytes no table points at.
    pub fn garbage_bytes(&self) -> u64 {
        self.record_bytes.saturating_sub(self.live_bytes)
    }

    /// Garbage as a fraction of the segment.
    pub fn garbage_ratio(&self) -> f64 {
        if self.record_bytes == 0 {
            0.0
        } else {
            self.garbage_bytes() as f64 / self.record_bytes as f64
        }
    }
}

/// Usage of every segment of `version`, by id.
pub(crate) fn usage(version: &Version) -> Vec<SegmentUsage> {
    let mut live: BTreeMap<u64, u64> = BTreeMap::new();
    for t in version.all_tables() {
        for r in &t.meta.value_refs {
            *live.entry(r.segment).or_default() += r.bytes;
        }
    }
    version
        .segments
        .values()
        .map(|s| SegmentUsage {
            id: s.meta.id,
            record_bytes: s.meta.record_bytes,
            live_bytes: live.get(&s.meta.id).copied().unwrap_or(0),
        })
        .collect()
}

/// Value-log record bytes over the bytes tables point at (1.0 when empty).
pub(crate) fn space_amplification(usage: &[SegmentUsage]) -> f64 {
    let total: u64 = usage.iter().map(|u| u.record_bytes).sum();
    let live: u64 = usage.iter().map(|u| u.live_bytes).sum();
    if total == 0 {
        1.0
    } else if live == 0 {
        f64::INFINITY
    } else {
        total as f64 / live as f64
    }
}

/// The segments garbage collection should collect now: every one whose garbage ratio
/// reaches `vlog_gc_garbage_ratio`, then, while the value log stays above
/// `max_space_amplification`, more in falling order of garbage ratio (the most space
/// back per byte copied). `max_live_bytes` bounds
/// what the chosen segments may hold live (at least one segment is always chosen
/// when any qualifies); segments nothing points at are always chosen.
pub(crate) fn plan_gc(
    usage: &[SegmentUsage],
    options: &KeyspaceOptions,
    max_live_bytes: Option<u64>,
) -> BTreeSet<u64> {
    let mut by_garbage: Vec<&SegmentUsage> =
        usage.iter().filter(|u| u.garbage_bytes() > 0).collect();
    by_garbage.sort_by(|a, b| {
        b.garbage_ratio()
            .total_cmp(&a.garbage_ratio())
            .then(b.garbage_bytes().cmp(&a.garbage_bytes()))
    });
    let mut total: u64 = usage.iter().map(|u| u.record_bytes).sum();
    let live: u64 = usage.iter().map(|u| u.live_bytes).sum();
    let over_bound = |total: u64| total as f64 > options.max_space_amplification * live as f64;
    let mut chosen = BTreeSet::new();
    let mut live_chosen = 0u64;
    for u in &by_garbage {
        let wanted = u.live_bytes == 0
            || u.garbage_ratio() >= options.vlog_gc_garbage_ratio
            || over_bound(total);
        if !wanted {
            continue;
        }
        if u.live_bytes > 0
            && !chosen.is_empty()
            && max_live_bytes.is_some_and(|max| live_chosen + u.live_bytes > max)
        {
            continue;
        }
        chosen.insert(u.id);
        live_chosen += u.live_bytes;
        total -= u.garbage_bytes();
    }
    chosen
}

/// `segments` with `added` and without `removed`.
pub(crate) fn with_segments(
    segments: &SegmentMap,
    added: &[Arc<SegmentHandle>],
    removed: &[u64],
) -> SegmentMap {
    let mut map = segments.clone();
    for s in added {
        map.insert(s.meta.id, Arc::clone(s));
    }
    for id in removed {
        map.remove(id);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_too_close_to_4_gib_for_a_record_stays_inline() {
        let key_len = 1;
        let limit = u32::MAX as usize - strata_vlog::RECORD_HEADER_LEN - key_len;
        assert!(fits_a_record(key_len, 16 << 10));
        assert!(fits_a_record(key_len, limit));
        assert!(!fits_a_record(key_len, limit + 1));
        assert!(!fits_a_record(64 << 10, u32::MAX as usize));
    }

    fn usage(id: u64, record_bytes: u64, live_bytes: u64) -> SegmentUsage {
        SegmentUsage {
            id,
            record_bytes,
            live_bytes,
        }
    }

    #[test]
    fn gc_plans_by_ratio_then_by_the_space_bound_and_always_takes_dead_segments() {
        let options = KeyspaceOptions::default(); // ratio 0.5, bound 1.5
                                                  // 60% garbage: chosen by ratio; 30%: not, while the total stays in bounds.
        let plan = plan_gc(
            &[usage(1, 100, 40), usage(2, 100, 70), usage(3, 100, 100)],
            &options,
            None,
        );
        assert_eq!(plan.into_iter().collect::<Vec<_>>(), vec![1]);
        // Every segment 40% garbage: 1.67x over the bound, so take segments until it holds.
        let all = [usage(1, 100, 60), usage(2, 100, 60), usage(3, 100, 60)];
        let plan = plan_gc(&all, &options, None);
        assert!(!plan.is_empty() && plan.len() < 3, "{plan:?}");
        // A dead segment is taken whatever the budget.
        let plan = plan_gc(&[usage(1, 100, 0), usage(2, 100, 40)], &options, Some(1));
        assert!(plan.contains(&1));
        // The budget of live bytes to copy holds back a second live segment.
        let plan = plan_gc(&[usage(1, 100, 40), usage(2, 100, 45)], &options, Some(50));
        assert_eq!(plan.len(), 1);
        // Nothing to do when nothing is garbage.
        assert!(plan_gc(&[usage(1, 100, 100)], &options, None).is_empty());
    }
}
