//! Newtypes for numbers that mean different things.
//!
//! A sequence number, a segment id and a byte offset are all `u64` underneath; wrapping
//! them means the compiler refuses to mix them up.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A global, monotonic write sequence number. Every write in a database gets one;
/// `SeqNo(0)` is never assigned and means "before everything". Assigned numbers lie in
/// `1..=SeqNo::MAX_ASSIGNABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(pub u64);

impl SeqNo {
    /// The sequence number before every write.
    pub const ZERO: SeqNo = SeqNo(0);
    /// The largest sequence number; reads at `MAX` see everything.
    pub const MAX: SeqNo = SeqNo(u64::MAX);
    /// The largest sequence number ever assigned, `2^56 - 1`: the engine packs a
    /// sequence number into the top 56 bits of an internal key's trailer. The log
    /// refuses to assign beyond it and treats a stored record that reaches past it as
    /// damage.
    pub const MAX_ASSIGNABLE: SeqNo = SeqNo((1 << 56) - 1);

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

/// Within this many numbers of the end, reservations take the careful path.
const NEAR_THE_END: u64 = 1 << 40;

/// The shared source of sequence numbers.
///
/// The write-ahead log draws from it while holding its queue lock (so log order equals
/// sequence order); writes that bypass the log draw from it without any lock. It never
/// hands out `SeqNo(0)` and never goes past [`SeqNo::MAX_ASSIGNABLE`]: once the space
/// is exhausted every reservation fails (nothing wraps).
#[derive(Debug)]
pub struct SeqCounter {
    next: AtomicU64,
}

impl Default for SeqCounter {
    /// A counter whose next sequence number is 1.
    fn default() -> Self {
        SeqCounter::new(SeqNo(1))
    }
}

impl SeqCounter {
    /// A counter whose next sequence number is `next` (at least 1).
    pub fn new(next: SeqNo) -> Self {
        SeqCounter {
            next: AtomicU64::new(next.0.max(1)),
        }
    }

    /// Reserves `count` (at least 1) consecutive sequence numbers and returns the
    /// first, or `None` without reserving anything if `count` is 0 or the last of them
    /// would lie beyond [`SeqNo::MAX_ASSIGNABLE`].
    pub fn try_reserve(&self, count: u64) -> Option<SeqNo> {
        let span = count.checked_sub(1)?;
        // Refused without reserving while the space cannot hold the request, so a
        // large request near the end does not use up what smaller ones could take.
        let seen = self.next.load(Ordering::SeqCst);
        if seen.saturating_add(span) > SeqNo::MAX_ASSIGNABLE.0 {
            return None;
        }
        // Far from the end: one add, no compare-and-swap loop, so writers of many
        // threads do not retry on each other (a request is at most 2^32 numbers, a
        // batch's entry count, so 2^40 of room holds 256 of them racing). Near it: a
        // compare-and-swap, so that a request that does not fit reserves nothing (a
        // number taken but never used would never be published, and everything
        // waiting for it would wait forever).
        if count <= 1 << 32 && seen.saturating_add(NEAR_THE_END) <= SeqNo::MAX_ASSIGNABLE.0 {
            return Some(SeqNo(self.next.fetch_add(count, Ordering::SeqCst)));
        }
        self.next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |next| {
                let last = next.checked_add(span)?;
                (last <= SeqNo::MAX_ASSIGNABLE.0).then(|| last + 1)
            })
            .ok()
            .map(SeqNo)
    }

    /// Reserves `count` (at least 1) consecutive sequence numbers and returns the
    /// first. When [`SeqCounter::try_reserve`] would fail it reserves nothing and
    /// returns a number above [`SeqNo::MAX_ASSIGNABLE`], which [`crate::Wal`] refuses
    /// with [`crate::Error::SeqExhausted`]; callers that use the number themselves
    /// should call `try_reserve` instead.
    pub fn reserve(&self, count: u64) -> SeqNo {
        self.try_reserve(count)
            .unwrap_or(SeqNo(SeqNo::MAX_ASSIGNABLE.0 + 1))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_counter_never_hands_out_zero() {
        let c = SeqCounter::default();
        assert_eq!(c.peek_next(), SeqNo(1));
        assert_eq!(c.reserve(3), SeqNo(1));
        assert_eq!(c.reserve(1), SeqNo(4));
    }

    #[test]
    fn reservations_never_wrap_or_pass_the_maximum() {
        let c = SeqCounter::new(SeqNo(SeqNo::MAX_ASSIGNABLE.0 - 2));
        assert_eq!(c.try_reserve(0), None);
        assert_eq!(c.try_reserve(4), None, "would end past the maximum");
        assert_eq!(
            c.peek_next(),
            SeqNo(SeqNo::MAX_ASSIGNABLE.0 - 2),
            "nothing reserved"
        );
        assert_eq!(c.try_reserve(3), Some(SeqNo(SeqNo::MAX_ASSIGNABLE.0 - 2)));
        assert_eq!(c.try_reserve(1), None);
        assert!(c.reserve(1) > SeqNo::MAX_ASSIGNABLE);
        assert!(c.reserve(u64::MAX) > SeqNo::MAX_ASSIGNABLE);
        let c = SeqCounter::new(SeqNo(u64::MAX));
        assert_eq!(c.try_reserve(1), None);
        assert_eq!(c.peek_next(), SeqNo(u64::MAX));
    }
}
