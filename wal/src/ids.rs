//! Newtypes for numbers that mean different things.
//!
//! A sequence number, a segment id and a byte offset are all `u64` underneath; wrapping
//! them means the compiler refuses to mix them up.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A global, monotonic write sequence number. Every write in a database gets one;
/// `SeqNo(0)` is never assigned and means "before everything".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(pub u64);

impl SeqNo {
    /// The sequence number before every write.
    pub const ZERO: SeqNo = SeqNo(0);
    /// The largest sequence number; reads at `MAX` see everything.
    pub const MAX: SeqNo = SeqNo(u64::MAX);

    /// The sequence number `n` after this one.
    pub fn plus(self, n: u64) -> SeqNo {
        SeqNo(self.0.saturating_add(n))
    }

    /// The sequence number just before this one (saturating at zero).
    pub fn prev(self) -> SeqNo {
        SeqNo(self.0.saturating_sub(1))
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one write-ahead-log segment file (`{id:06}.wal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SegmentId(pub u64);

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The shared source of sequence numbers.
///
/// The write-ahead log draws from it while holding its queue lock (so log order equals
/// sequence order); writes that bypass the log draw from it without any lock.
#[derive(Debug, Default)]
pub struct SeqCounter {
    next: AtomicU64,
}

impl SeqCounter {
    /// A counter whose next sequence number is `next` (at least 1).
    pub fn new(next: SeqNo) -> Self {
        SeqCounter {
            next: AtomicU64::new(next.0.max(1)),
        }
    }

    /// Reserves `count` consecutive sequence numbers and returns the first.
    pub fn reserve(&self, count: u64) -> SeqNo {
        SeqNo(self.next.fetch_add(count, Ordering::SeqCst))
    }

    /// The sequence number the next reservation will start at.
    pub fn peek_next(&self) -> SeqNo {
        SeqNo(self.next.load(Ordering::SeqCst))
    }

    /// Raises the next sequence number to at least `next` (used by recovery).
    pub fn advance_to(&self, next: SeqNo) {
        self.next.fetch_max(next.0, Ordering::SeqCst);
    }
}
