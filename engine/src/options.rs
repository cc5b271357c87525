//! Options of the database, of each keyspace, and of single writes.
//!
//! `Default` is the one source of defaults, documented on each field; `validate()`
//! rejects nonsense with a clear error before anything is opened.

use std::time::Duration;

use strata_wal::RecoveryMode;

use crate::error::{Error, Result};
pub use crate::table::Compression;

/// When a write is acknowledged, chosen per keyspace and overridable per write (see
/// `docs/durability.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Acknowledged once its WAL record is fsynced (group commit: one fsync covers
    /// every waiting writer). Survives process crash and power loss.
    Sync,
    /// Acknowledged once its WAL record is in the OS page cache; a background sync
    /// runs every [`Options::wal_sync_interval`]. Survives a process crash; after a
    /// power loss what survives is a prefix of the log up to the last sync.
    #[default]
    Buffered,
    /// WAL-bypass: acknowledged once it is in the keyspace's memtable; no WAL record,
    /// no WAL I/O. Survives a crash only once flushed: after any crash the keyspace
    /// holds the state of its last completed flush, a prefix of its writes. Bounded by
    /// [`KeyspaceOptions::bypass_flush_interval`] and
    /// [`KeyspaceOptions::bypass_max_unflushed_bytes`] and by `Keyspace::flush`.
    Bypass,
}

impl Durability {
    /// The stronger of two durabilities (`Sync` > `Buffered` > `Bypass`).
    pub fn max(self, other: Durability) -> Durability {
        if self.rank() >= other.rank() {
            self
        } else {
            other
        }
    }

    /// Whether writes with this durability go through the WAL.
    pub fn is_logged(self) -> bool {
        self != Durability::Bypass
    }

    fn rank(self) -> u8 {
        match self {
            Durability::Bypass => 0,
            Durability::Buffered => 1,
            Durability::Sync => 2,
        }
    }

    /// The manifest's code (`docs/format/manifest.md`).
    fn code(self) -> u64 {
        match self {
            Durability::Buffered => 0,
            Durability::Sync => 1,
            Durability::Bypass => 2,
        }
    }

    fn from_code(code: u64) -> Option<Durability> {
        match code {
            0 => Some(Durability::Buffered),
            1 => Some(Durability::Sync),
            2 => Some(Durability::Bypass),
            _ => None,
        }
    }
}

/// The compaction policy of a keyspace (see `docs/compaction.md`). Each reads its
/// shape from the keyspace's `level_size_ratio`, `base_level_bytes` and
/// `l0_compaction_trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompactionStyle {
    /// One sorted run per level, size ratio `level_size_ratio`, level targets computed
    /// from the last level. Fewest runs per read, most rewriting.
    Leveled,
    /// Up to `level_size_ratio` runs per level, merged into the next level when full,
    /// with a space-amplification bound of 1.5. Least rewriting, most runs per read.
    Tiered,
    /// Hierarchical adaptive: up to `K_i` runs on each upper level, one on the last,
    /// with `K_i` chosen from the keyspace's observed mix of writes, point reads and
    /// scans. The default.
    #[default]
    Hca,
}

impl CompactionStyle {
    /// The name `db_bench --compaction_style` uses.
    pub fn name(self) -> &'static str {
        match self {
            CompactionStyle::Leveled => "leveled",
            CompactionStyle::Tiered => "tiered",
            CompactionStyle::Hca => "hca",
        }
    }

    /// Parses a name given by [`CompactionStyle::name`].
    pub fn from_name(name: &str) -> Option<CompactionStyle> {
        match name {
            "leveled" => Some(CompactionStyle::Leveled),
            "tiered" => Some(CompactionStyle::Tiered),
            "hca" => Some(CompactionStyle::Hca),
            _ => None,
        }
    }

    fn code(self) -> u64 {
        match self {
            CompactionStyle::Leveled => 0,
            CompactionStyle::Tiered => 1,
            CompactionStyle::Hca => 2,
        }
    }

    fn from_code(code: u64) -> Option<CompactionStyle> {
        match code {
            0 => Some(CompactionStyle::Leveled),
            1 => Some(CompactionStyle::Tiered),
            2 => Some(CompactionStyle::Hca),
            _ => None,
        }
    }
}

/// Options of a database, fixed at open.
#[derive(Debug, Clone)]
pub struct Options {
    /// Create the directory and an empty database if none exists. Default `true`.
    pub create_if_missing: bool,
    /// Background threads for flushes and compactions. Default 2. The engine never
    /// runs more; raise it only when compactions cannot keep up with writes.
    pub background_threads: usize,
    /// Byte capacity of the block cache shared by all keyspaces. Default 64 MiB. With
    /// `use_mmap`, uncompressed blocks are read straight from the mapping (the OS page
    /// cache) and only compressed blocks go through this cache.
    pub block_cache_bytes: usize,
    /// Memory budget of all memtables of all keyspaces together. Default 256 MiB. When
    /// passed, the largest active memtable is sealed and flushed early.
    pub write_buffer_bytes: usize,
    /// Read tables through memory maps (`true`, default) or positional reads.
    pub use_mmap: bool,
    /// Size at which the WAL rotates to a new segment. Default 64 MiB.
    pub wal_segment_bytes: u64,
    /// Interval of the background WAL sync that makes `Buffered` writes durable.
    /// Default 100 ms: what a power loss can take from `Buffered` keyspaces.
    pub wal_sync_interval: Duration,
    /// When the WAL holds more than this, the keyspace holding the oldest unflushed
    /// write is flushed so segments can be deleted. Bounds recovery time. Default
    /// 512 MiB.
    pub max_wal_bytes: u64,
    /// When the manifest grows past this, the whole state is written to a new one and
    /// installed atomically. Default 8 MiB. Open always starts a fresh manifest.
    pub manifest_rollover_bytes: u64,
    /// How damage in the WAL is treated at open. Default strict: any damage other
    /// than a torn tail stops open with `Error::Corruption`.
    pub wal_recovery_mode: RecoveryMode,
    /// Bytes per second compactions may write, all keyspaces together; 0 (default)
    /// means no limit. Flushes are never delayed (they unblock writers) but their bytes
    /// count against the same budget, so compactions yield to them.
    pub compaction_write_bytes_per_sec: u64,
    /// How often the wall-clock time of the newest sequence number is noted (while
    /// writes arrive). `Db::snapshot_at_time(t)` reads the state of the newest note
    /// at or before `t`: at most this much before `t`. Default 1 s; between 1 ms and
    /// 24 h.
    pub history_mark_interval: Duration,
    /// WAL bytes kept for change-stream consumers (`Db::changes_since`) beyond what
    /// recovery needs: sealed segments are deleted only while the newer ones hold at
    /// least this much. Default 0.
    pub wal_retention_bytes: u64,
    /// WAL segments sealed less than this long ago are kept for change-stream
    /// consumers. Default `None`. Either retention keeps a segment.
    pub wal_retention_age: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            background_threads: 2,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 256 << 20,
            use_mmap: true,
            wal_segment_bytes: 64 << 20,
            wal_sync_interval: Duration::from_millis(100),
            max_wal_bytes: 512 << 20,
            manifest_rollover_bytes: 8 << 20,
            wal_recovery_mode: RecoveryMode::Strict,
            compaction_write_bytes_per_sec: 0,
            history_mark_interval: Duration::from_secs(1),
            wal_retention_bytes: 0,
            wal_retention_age: None,
        }
    }
}

impl Options {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if self.background_threads == 0 || self.background_threads > 64 {
            return Err(Error::InvalidArgument(format!(
                "background_threads is {}; it must be between 1 and 64",
                self.background_threads
            )));
        }
        if self.write_buffer_bytes < 64 << 10 {
            return Err(Error::InvalidArgument(
                "write_buffer_bytes must be at least 64 KiB".into(),
            ));
        }
        if self.wal_segment_bytes < 4096 {
            return Err(Error::InvalidArgument(
                "wal_segment_bytes must be at least 4096".into(),
            ));
        }
        if self.wal_sync_interval.is_zero() {
            return Err(Error::InvalidArgument(
                "wal_sync_interval must be positive".into(),
            ));
        }
        if self.manifest_rollover_bytes < 4096 {
            return Err(Error::InvalidArgument(
                "manifest_rollover_bytes must be at least 4096".into(),
            ));
        }
        if self.max_wal_bytes < self.wal_segment_bytes {
            return Err(Error::InvalidArgument(
                "max_wal_bytes must be at least wal_segment_bytes".into(),
            ));
        }
        if self.history_mark_interval < Duration::from_millis(1)
            || self.history_mark_interval > Duration::from_secs(24 * 3600)
        {
            return Err(Error::InvalidArgument(
                "history_mark_interval must be between 1 ms and 24 h".into(),
            ));
        }
        Ok(())
    }
}

/// Options of one keyspace, chosen when it is created and kept in the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyspaceOptions {
    /// Default durability of writes to this keyspace. Default `Buffered`.
    pub durability: Durability,
    /// Size at which the active memtable is sealed and queued for flush. Default
    /// 32 MiB. Larger means fewer, bigger level-0 tables and more memory.
    pub memtable_bytes: usize,
    /// Target size of a table's data block before compression. Default 4 KiB; larger
    /// blocks suit scans and compress better, smaller ones suit point reads.
    pub block_size: usize,
    /// Block compression. Default none (agent state is small and latency-bound);
    /// zstd trades CPU for disk.
    pub compression: Compression,
    /// Bloom filter bits per key. Default 10 (about 1% false positives); 0 disables.
    pub bloom_bits_per_key: u32,
    /// Level-0 tables that trigger a compaction into level 1. Default 4.
    pub l0_compaction_trigger: usize,
    /// Level-0 tables (sealed memtables counted as the tables they will become) at
    /// which writes are slowed to `slowdown_write_bytes_per_sec`. Default 12.
    pub l0_slowdown_trigger: usize,
    /// Level 0 never holds more tables than this: a full memtable is not sealed
    /// while level-0 tables plus sealed memtables would pass it, and writes to the
    /// keyspace wait. Default 20.
    pub l0_stop_trigger: usize,
    /// Sealed memtables waiting for flush at which writes stop. Default 4.
    pub max_sealed_memtables: usize,
    /// The compaction policy. Default [`CompactionStyle::Hca`].
    pub compaction: CompactionStyle,
    /// Compaction debt (the policy's estimate of bytes compaction must write to bring
    /// every level within its limit) at which writes are slowed. Default 16 GiB.
    pub soft_pending_compaction_bytes: u64,
    /// Compaction debt the keyspace never passes: a full memtable is not sealed while
    /// flushing it would bring the debt to this with compaction due, and writes
    /// wait. Default 64 GiB.
    pub hard_pending_compaction_bytes: u64,
    /// The rate slowed writes are held to, in user bytes per second. Default 16 MiB/s.
    pub slowdown_write_bytes_per_sec: u64,
    /// Size of level 1; each deeper level is `level_size_ratio` times larger.
    /// Default 64 MiB.
    pub base_level_bytes: u64,
    /// Size ratio between adjacent levels. Default 10.
    pub level_size_ratio: u32,
    /// Compaction output is split into tables of about this size. Default 32 MiB.
    pub target_table_bytes: u64,
    /// Unflushed WAL-bypass writes older than this are flushed: the most a crash can
    /// take from a bypass keyspace in time. Default 5 s (kept to the millisecond); `None` flushes only when the
    /// memtable fills (or on `Keyspace::flush`). Applies to any keyspace holding
    /// bypass writes, including `Bypass` writes to a logged keyspace.
    pub bypass_flush_interval: Option<Duration>,
    /// Unflushed WAL-bypass bytes (keys and values) at which the memtable is sealed
    /// and flushed; writes wait while the sealed ones still hold this much. The most
    /// a crash can take in bytes. Default 64 MiB; `None` leaves the bound to
    /// `memtable_bytes` and `max_sealed_memtables`.
    pub bypass_max_unflushed_bytes: Option<u64>,
    /// Key-value separation: values of at least this many bytes are written to the
    /// value log when their memtable is flushed (or a compaction rewrites them), and
    /// tables keep a 20-byte pointer instead. Default 4 KiB (see
    /// `docs/benchmarks.md`); `None` keeps every value in the tables.
    pub value_threshold: Option<u32>,
    /// A value-log segment whose garbage (bytes no table points at any more) reaches
    /// this fraction of it is collected: its live values are copied forward and the
    /// file deleted. Default 0.5; between 0.05 and 1 (kept to 1/1000).
    pub vlog_gc_garbage_ratio: f64,
    /// Value-log bytes over the bytes tables point at that garbage collection holds
    /// the keyspace to, collecting the segments with the most garbage first even
    /// below `vlog_gc_garbage_ratio`. Default 1.5; at least 1.05 (kept to 1/1000).
    pub max_space_amplification: f64,
    /// Bytes per second background garbage collection may copy forward. Default
    /// 64 MiB/s; `None` unpaced. `Db::gc_value_log` is never paced.
    pub vlog_gc_bytes_per_sec: Option<u64>,
    /// Whether background threads collect value-log garbage after compactions.
    /// Default true; false leaves collection to `Db::gc_value_log` (at quiet times,
    /// say). Segments nothing points at are deleted either way.
    pub vlog_background_gc: bool,
    /// History retention by count: every version written in the last this many
    /// sequence numbers is kept, so `Db::snapshot_at` can read any of them. Default
    /// `None`. With `history_age` too, the wider of the two windows is kept.
    pub history_seqs: Option<u64>,
    /// History retention by age: every version the keyspace held at any moment this
    /// far back is kept, for `Db::snapshot_at_time` and `Db::snapshot_at`. Default
    /// `None` (kept to the millisecond). History costs space: overwritten and deleted
    /// data stays on disk until it falls out of the window.
    pub history_age: Option<Duration>,
}

impl Default for KeyspaceOptions {
    fn default() -> Self {
        KeyspaceOptions {
            durability: Durability::Buffered,
            memtable_bytes: 32 << 20,
            block_size: 4096,
            compression: Compression::None,
            bloom_bits_per_key: 10,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 12,
            l0_stop_trigger: 20,
            max_sealed_memtables: 4,
            compaction: CompactionStyle::Hca,
            soft_pending_compaction_bytes: 16 << 30,
            hard_pending_compaction_bytes: 64 << 30,
            slowdown_write_bytes_per_sec: 16 << 20,
            base_level_bytes: 64 << 20,
            level_size_ratio: 10,
            target_table_bytes: 32 << 20,
            bypass_flush_interval: Some(Duration::from_secs(5)),
            bypass_max_unflushed_bytes: Some(64 << 20),
            value_threshold: Some(4096),
            vlog_gc_garbage_ratio: 0.5,
            max_space_amplification: 1.5,
            vlog_gc_bytes_per_sec: Some(64 << 20),
            vlog_background_gc: true,
            history_seqs: None,
            history_age: None,
        }
    }
}

/// Encodes a ratio in thousandths.
fn per_mille(r: f64) -> u64 {
    (r * 1000.0).round() as u64
}

impl KeyspaceOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        if self.memtable_bytes < 4096 {
            return bad("memtable_bytes must be at least 4096");
        }
        if !(256..=(16 << 20)).contains(&self.block_size) {
            return bad("block_size must be between 256 bytes and 16 MiB");
        }
        if self.bloom_bits_per_key > 64 {
            return bad("bloom_bits_per_key must be at most 64");
        }
        if self.l0_compaction_trigger == 0
            || self.l0_slowdown_trigger < self.l0_compaction_trigger
            || self.l0_stop_trigger < self.l0_slowdown_trigger
        {
            return bad("need 0 < l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger");
        }
        if self.max_sealed_memtables == 0 {
            return bad("max_sealed_memtables must be at least 1");
        }
        if self.level_size_ratio < 2 {
            return bad("level_size_ratio must be at least 2");
        }
        if self.base_level_bytes < 4096 || self.target_table_bytes < 4096 {
            return bad("base_level_bytes and target_table_bytes must be at least 4096");
        }
        if self.soft_pending_compaction_bytes == 0
            || self.hard_pending_compaction_bytes < self.soft_pending_compaction_bytes
        {
            return bad("need 0 < soft_pending_compaction_bytes <= hard_pending_compaction_bytes");
        }
        if self
            .bypass_flush_interval
            .is_some_and(|d| d < Duration::from_millis(1) || d > Duration::from_secs(1 << 32))
        {
            return bad("bypass_flush_interval must be between 1 ms and 2^32 s");
        }
        if self.bypass_max_unflushed_bytes.is_some_and(|b| b < 4096) {
            return bad("bypass_max_unflushed_bytes must be at least 4096");
        }
        if self.slowdown_write_bytes_per_sec < 4096 {
            return bad("slowdown_write_bytes_per_sec must be at least 4096");
        }
        if self.value_threshold == Some(0) {
            return bad("value_threshold must be at least 1 (None turns separation off)");
        }
        if !(0.05..=1.0).contains(&self.vlog_gc_garbage_ratio) {
            return bad("vlog_gc_garbage_ratio must be between 0.05 and 1");
        }
        if !(1.05..=1000.0).contains(&self.max_space_amplification) {
            return bad("max_space_amplification must be between 1.05 and 1000");
        }
        if self.vlog_gc_bytes_per_sec.is_some_and(|b| b < 4096) {
            return bad("vlog_gc_bytes_per_sec must be at least 4096");
        }
        if self.history_seqs == Some(0) {
            return bad("history_seqs must be at least 1 (None keeps no history)");
        }
        if self
            .history_age
            .is_some_and(|d| d < Duration::from_millis(1) || d > Duration::from_secs(1 << 40))
        {
            return bad("history_age must be between 1 ms and 2^40 s");
        }
        Ok(())
    }

    /// Encodes the options as the manifest stores them (`docs/format/manifest.md`).
    pub fn encode(&self) -> Vec<u8> {
        use strata_wal::codec::put_varint;
        let mut out = Vec::new();
        put_varint(&mut out, 5); // encoding version
        put_varint(&mut out, self.durability.code());
        put_varint(&mut out, self.memtable_bytes as u64);
        put_varint(&mut out, self.block_size as u64);
        put_varint(
            &mut out,
            matches!(self.compression, Compression::Zstd) as u64,
        );
        put_varint(&mut out, u64::from(self.bloom_bits_per_key));
        put_varint(&mut out, self.l0_compaction_trigger as u64);
        put_varint(&mut out, self.l0_slowdown_trigger as u64);
        put_varint(&mut out, self.l0_stop_trigger as u64);
        put_varint(&mut out, self.max_sealed_memtables as u64);
        put_varint(&mut out, self.base_level_bytes);
        put_varint(&mut out, u64::from(self.level_size_ratio));
        put_varint(&mut out, self.target_table_bytes);
        // Version 2.
        put_varint(&mut out, self.compaction.code());
        put_varint(&mut out, self.soft_pending_compaction_bytes);
        put_varint(&mut out, self.hard_pending_compaction_bytes);
        put_varint(&mut out, self.slowdown_write_bytes_per_sec);
        // Version 3 (0 = none).
        put_varint(
            &mut out,
            self.bypass_flush_interval
                .map_or(0, |d| d.as_millis().max(1) as u64),
        );
        put_varint(&mut out, self.bypass_max_unflushed_bytes.unwrap_or(0));
        // Version 4 (0 = none; ratios in thousandths).
        put_varint(&mut out, self.value_threshold.map_or(0, u64::from));
        put_varint(&mut out, per_mille(self.vlog_gc_garbage_ratio));
        put_varint(&mut out, per_mille(self.max_space_amplification));
        put_varint(&mut out, self.vlog_gc_bytes_per_sec.unwrap_or(0));
        put_varint(&mut out, u64::from(self.vlog_background_gc));
        // Version 5 (0 = none).
        put_varint(&mut out, self.history_seqs.unwrap_or(0));
        put_varint(
            &mut out,
            self.history_age
                .map_or(0, |d| crate::history::duration_millis(d).max(1)),
        );
        out
    }

    /// Decodes options written by [`KeyspaceOptions::encode`]; `None` if malformed or
    /// invalid.
    pub fn decode(bytes: &[u8]) -> Option<KeyspaceOptions> {
        let mut r = strata_wal::codec::Reader::new(bytes);
        let version = r.varint()?;
        if !(1..=5).contains(&version) {
            return None;
        }
        let mut v = || r.varint();
        let durability = Durability::from_code(v()?)?;
        // Bypass exists from version 3 on.
        if version < 3 && durability == Durability::Bypass {
            return None;
        }
        let memtable_bytes = usize::try_from(v()?).ok()?;
        let block_size = usize::try_from(v()?).ok()?;
        let compression = if v()? == 1 {
            Compression::Zstd
        } else {
            Compression::None
        };
        let mut options = KeyspaceOptions {
            durability,
            memtable_bytes,
            block_size,
            compression,
            bloom_bits_per_key: u32::try_from(v()?).ok()?,
            l0_compaction_trigger: usize::try_from(v()?).ok()?,
            l0_slowdown_trigger: usize::try_from(v()?).ok()?,
            l0_stop_trigger: usize::try_from(v()?).ok()?,
            max_sealed_memtables: usize::try_from(v()?).ok()?,
            base_level_bytes: v()?,
            level_size_ratio: u32::try_from(v()?).ok()?,
            target_table_bytes: v()?,
            ..KeyspaceOptions::default()
        };
        if version >= 2 {
            options.compaction = CompactionStyle::from_code(r.varint()?)?;
            options.soft_pending_compaction_bytes = r.varint()?;
            options.hard_pending_compaction_bytes = r.varint()?;
            options.slowdown_write_bytes_per_sec = r.varint()?;
        }
        if version >= 3 {
            let ms = r.varint()?;
            options.bypass_flush_interval = (ms > 0).then(|| Duration::from_millis(ms));
            let bytes = r.varint()?;
            options.bypass_max_unflushed_bytes = (bytes > 0).then_some(bytes);
        }
        if version >= 4 {
            let threshold = u32::try_from(r.varint()?).ok()?;
            options.value_threshold = (threshold > 0).then_some(threshold);
            options.vlog_gc_garbage_ratio = r.varint()? as f64 / 1000.0;
            options.max_space_amplification = r.varint()? as f64 / 1000.0;
            let rate = r.varint()?;
            options.vlog_gc_bytes_per_sec = (rate > 0).then_some(rate);
            options.vlog_background_gc = match r.varint()? {
                0 => false,
                1 => true,
                _ => return None,
            };
        } else {
            // Written before the value log existed: every value is in the tables.
            options.value_threshold = None;
        }
        if version >= 5 {
            let seqs = r.varint()?;
            options.history_seqs = (seqs > 0).then_some(seqs);
            let ms = r.varint()?;
            options.history_age = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if !r.is_empty() {
            return None;
        }
        options.validate().ok()?;
        Some(options)
    }
}

/// Options of one write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Overrides the keyspaces' durability for this write.
    ///
    /// Without an override a batch across logged keyspaces takes the strongest of
    /// their durabilities, a batch within one bypass keyspace is a bypass write, and a
    /// batch mixing the two is refused with `Error::InvalidArgument` (write them
    /// separately). `Some(Bypass)` may be given for any one keyspace: its entries
    /// skip the WAL and survive a crash only once flushed. A bypass batch across two
    /// or more keyspaces is refused (each recovers from its own last flush, so it
    /// could come back in part). `Some(Sync)` or `Some(Buffered)` on a bypass
    /// keyspace is refused: a bypass keyspace is never replayed from the WAL, so the
    /// record would promise what recovery cannot keep.
    pub durability: Option<Durability>,
}

impl WriteOptions {
    /// Options that make this write `Sync`.
    pub fn sync() -> Self {
        WriteOptions {
            durability: Some(Durability::Sync),
        }
    }

    /// Options that make this write skip the WAL ([`Durability::Bypass`]).
    pub fn bypass() -> Self {
        WriteOptions {
            durability: Some(Durability::Bypass),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bypass_options() -> KeyspaceOptions {
        KeyspaceOptions {
            durability: Durability::Bypass,
            bypass_flush_interval: Some(Duration::from_millis(250)),
            bypass_max_unflushed_bytes: None,
            ..KeyspaceOptions::default()
        }
    }

    #[test]
    fn keyspace_options_round_trip_with_every_durability() {
        for durability in [Durability::Sync, Durability::Buffered, Durability::Bypass] {
            let o = KeyspaceOptions {
                durability,
                ..bypass_options()
            };
            assert_eq!(KeyspaceOptions::decode(&o.encode()), Some(o));
        }
        let history = KeyspaceOptions {
            history_seqs: Some(1 << 20),
            history_age: Some(Duration::from_secs(3600)),
            ..KeyspaceOptions::default()
        };
        assert_eq!(KeyspaceOptions::decode(&history.encode()), Some(history));
    }

    #[test]
    fn an_older_encoding_cannot_name_bypass_and_takes_the_bypass_defaults() {
        // Version 2 of the same options: drop the version-3 tail and the version byte.
        let o = KeyspaceOptions::default();
        let mut v2 = {
            let mut out = Vec::new();
            strata_wal::codec::put_varint(&mut out, 2);
            out.extend_from_slice(&o.encode()[1..]);
            let tail = {
                let mut t = Vec::new();
                // Version 3: bypass interval and bytes; version 4: the value log's;
                // version 5: history (none).
                for v in [5000, 64 << 20, 4096, 500, 1500, 64 << 20, 1, 0, 0] {
                    strata_wal::codec::put_varint(&mut t, v);
                }
                t.len()
            };
            out.truncate(out.len() - tail);
            out
        };
        // Written before the value log: nothing is separated.
        let expected = KeyspaceOptions {
            value_threshold: None,
            ..o
        };
        assert_eq!(KeyspaceOptions::decode(&v2), Some(expected));
        // Durability code 2 in a version-2 list is corruption.
        v2[1] = 2;
        assert_eq!(KeyspaceOptions::decode(&v2), None);
    }

    #[test]
    fn every_truncation_and_byte_change_decodes_or_is_refused() {
        let bytes = bypass_options().encode();
        for cut in 0..bytes.len() {
            assert_eq!(KeyspaceOptions::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for b in [0u8, 1, 2, 3, 0x7f, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[i] = b;
                let _ = KeyspaceOptions::decode(&damaged);
            }
        }
    }

    #[test]
    fn durability_order() {
        assert_eq!(
            Durability::Bypass.max(Durability::Buffered),
            Durability::Buffered
        );
        assert_eq!(Durability::Sync.max(Durability::Bypass), Durability::Sync);
        assert!(!Durability::Bypass.is_logged());
        assert!(Durability::Buffered.is_logged() && Durability::Sync.is_logged());
    }
}
