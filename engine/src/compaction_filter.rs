//! User compaction filters: keep, drop or rewrite values as compaction passes them.
//!
//! A keyspace may carry one [`CompactionFilter`] (set with
//! [`Keyspace::set_compaction_filter`](crate::Keyspace::set_compaction_filter)). Every
//! compaction of the keyspace shows it the newest version of each key that no snapshot
//! pinned when the compaction began can see; older versions, versions a snapshot
//! needs, and tombstones are never shown. What it returns:
//!
//! - [`FilterDecision::Keep`]: the version is written unchanged;
//! - [`FilterDecision::Drop`]: the key reads as deleted from then on (the version is
//!   replaced by a tombstone at the same sequence number, so older versions further down
//!   the tree stay hidden; at the bottom of the tree the tombstone itself goes);
//! - [`FilterDecision::ChangeValue`]: the version is written with the new value.
//!
//! Trade-off: filters run only when compaction reaches the data, so an expired value can
//! still be read until then (use [`TtlFilter::is_live`] on the read side to hide it at
//! once), and a snapshot taken while a compaction runs may see the value before or after
//! the filter. In exchange the filter costs nothing on the write or read path.
//!
//! The documented example is [`TtlFilter`]: agent memories written with an expiry time
//! disappear once compaction passes them after it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a compaction filter decides for one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterDecision {
    /// Keep the value.
    Keep,
    /// Delete the key.
    Drop,
    /// Replace the value.
    ChangeValue(Vec<u8>),
}

/// A user hook called by compaction on the newest visible version of each key.
///
/// It must be deterministic enough that calling it twice on the same value is
/// harmless (the same value may pass several compactions), and fast: it runs inside
/// compaction for every live key.
pub trait CompactionFilter: Send + Sync + fmt::Debug {
    /// A name for logs and stats.
    fn name(&self) -> &str;

    /// Decides what happens to `value`, the newest version of `key`.
    fn filter(&self, key: &[u8], value: &[u8]) -> FilterDecision;
}

/// Drops values whose expiry time has passed.
///
/// Values are stored with an 8-byte header: the expiry time in milliseconds since the
/// Unix epoch, big-endian; [`TtlFilter::wrap`] adds it and [`TtlFilter::unwrap`]
/// removes it. A value too short to hold the header is kept (it was not written through
/// `wrap`).
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use strata::{Db, KeyspaceOptions, Options, TtlFilter};
///
/// # fn main() -> strata::Result<()> {
/// let dir = tempfile::tempdir().expect("temp dir");
/// let db = Db::open(dir.path(), Options::default())?;
/// let memories = db.keyspace_or_create("memories", KeyspaceOptions::default())?;
/// memories.set_compaction_filter(Some(Arc::new(TtlFilter::new())));
///
/// let now = SystemTime::now();
/// memories.put("agent-7/fact-1", TtlFilter::wrap(now + Duration::from_secs(3600), b"likes tea"))?;
/// memories.put("agent-7/fact-2", TtlFilter::wrap(now - Duration::from_secs(1), b"was idle"))?;
/// memories.flush()?;
/// memories.compact()?; // the expired memory goes
///
/// assert!(memories.get("agent-7/fact-2")?.is_none());
/// let kept = memories.get("agent-7/fact-1")?.expect("live memory");
/// assert_eq!(TtlFilter::unwrap(&kept).map(|(_, v)| v), Some(&b"likes tea"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TtlFilter {
    /// A fixed "now" for tests; `None` reads the clock at each call.
    now: Option<SystemTime>,
}

/// Bytes of the expiry header [`TtlFilter`] expects.
pub const TTL_HEADER_BYTES: usize = 8;

impl TtlFilter {
    /// A filter that compares expiry times with the system clock.
    pub fn new() -> Self {
        TtlFilter { now: None }
    }

    /// A filter that takes `now` as the current time (for tests and replays).
    pub fn at(now: SystemTime) -> Self {
        TtlFilter { now: Some(now) }
    }

    /// `value` prefixed with the expiry header for `expires_at`.
    pub fn wrap(expires_at: SystemTime, value: &[u8]) -> Vec<u8> {
        let millis = expires_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        let millis = u64::try_from(millis).unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity(TTL_HEADER_BYTES + value.len());
        out.extend_from_slice(&millis.to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    /// The expiry time and the user value of a wrapped value; `None` if it is too short.
    pub fn unwrap(stored: &[u8]) -> Option<(SystemTime, &[u8])> {
        let (header, value) = stored.split_first_chunk::<TTL_HEADER_BYTES>()?;
        let millis = u64::from_be_bytes(*header);
        Some((UNIX_EPOCH + Duration::from_millis(millis), value))
    }

    /// Whether a wrapped value is still live at `now` (unwrapped values always are).
    pub fn is_live(stored: &[u8], now: SystemTime) -> bool {
        TtlFilter::unwrap(stored).is_none_or(|(expires, _)| expires > now)
    }
}

impl CompactionFilter for TtlFilter {
    fn name(&self) -> &str {
        "ttl"
    }

    fn filter(&self, _key: &[u8], value: &[u8]) -> FilterDecision {
        let now = self.now.unwrap_or_else(SystemTime::now);
        if TtlFilter::is_live(value, now) {
            FilterDecision::Keep
        } else {
            FilterDecision::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_round_trip_and_expiry() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let v = TtlFilter::wrap(t0, b"memory");
        assert_eq!(TtlFilter::unwrap(&v), Some((t0, &b"memory"[..])));
        let before = TtlFilter::at(t0 - Duration::from_millis(1));
        let after = TtlFilter::at(t0);
        assert_eq!(before.filter(b"k", &v), FilterDecision::Keep);
        assert_eq!(after.filter(b"k", &v), FilterDecision::Drop);
        // Too short to carry a header: kept.
        assert_eq!(after.filter(b"k", b"short"), FilterDecision::Keep);
        assert!(TtlFilter::unwrap(b"1234567").is_none());
    }
}
