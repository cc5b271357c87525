//! Snapshots: pinned sequence numbers that compaction must keep readable.
//!
//! A [`SnapshotGuard`] registers its sequence number in the [`SnapshotList`] and
//! removes it when dropped; compaction keeps, for every registered sequence number,
//! the version of each key a read at that number would see. A keyspace with a
//! history window adds a horizon above which every version is kept ([`Retention`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use strata_wal::SeqNo;

/// The registered snapshot sequence numbers, with counts.
#[derive(Debug, Default)]
pub struct SnapshotList {
    pinned: Mutex<BTreeMap<SeqNo, usize>>,
}

impl SnapshotList {
    /// Registers `seq`; the guard unregisters it.
    pub fn pin(self: &Arc<Self>, seq: SeqNo) -> SnapshotGuard {
        *self.pinned.lock().entry(seq).or_insert(0) += 1;
        SnapshotGuard {
            list: Arc::clone(self),
            seq,
        }
    }

    /// Pins the sequence number `current` returns, read while holding the list's lock.
    ///
    /// Flushes and compactions read the pinned list under the same lock, so each
    /// either sees this pin or read the list before `current` ran; then `current`
    /// (the visible sequence number, which only grows) is at or above every version
    /// they merge, and the newest version they keep per key is the one this snapshot
    /// reads. Pinning a number read earlier, outside the lock, races with them: a
    /// flush that read the list in between drops the version the snapshot needs.
    pub fn pin_current(self: &Arc<Self>, current: impl FnOnce() -> SeqNo) -> SnapshotGuard {
        let mut pinned = self.pinned.lock();
        let seq = current();
        *pinned.entry(seq).or_insert(0) += 1;
        drop(pinned);
        SnapshotGuard {
            list: Arc::clone(self),
            seq,
        }
    }

    /// Pins `seq` if `check`, run under the list's lock, allows it. Flushes and
    /// compactions take their [`Retention`] under the same lock
    /// ([`SnapshotList::retention`]), so a check against the history floors they move
    /// and this pin are atomic with respect to them.
    pub fn pin_checked<T>(
        self: &Arc<Self>,
        seq: SeqNo,
        check: impl FnOnce() -> crate::Result<T>,
    ) -> crate::Result<(SnapshotGuard, T)> {
        let mut pinned = self.pinned.lock();
        let checked = check()?;
        *pinned.entry(seq).or_insert(0) += 1;
        drop(pinned);
        let guard = SnapshotGuard {
            list: Arc::clone(self),
            seq,
        };
        Ok((guard, checked))
    }

    /// What a flush or compaction must keep: the pinned sequence numbers and the
    /// horizon `horizon` computes, both read under the list's lock.
    pub fn retention(&self, horizon: impl FnOnce() -> Option<SeqNo>) -> Retention {
        let pinned = self.pinned.lock();
        let horizon = horizon();
        Retention {
            pinned: pinned.keys().copied().collect(),
            horizon,
        }
    }

    /// Every pinned sequence number, ascending.
    pub fn pinned(&self) -> Vec<SeqNo> {
        self.pinned.lock().keys().copied().collect()
    }

    /// The oldest pinned sequence number.
    pub fn oldest(&self) -> Option<SeqNo> {
        self.pinned.lock().keys().next().copied()
    }

    /// Number of live snapshots.
    pub fn count(&self) -> usize {
        self.pinned.lock().values().sum()
    }
}

/// Keeps one sequence number pinned while alive.
#[derive(Debug)]
pub struct SnapshotGuard {
    list: Arc<SnapshotList>,
    seq: SeqNo,
}

impl SnapshotGuard {
    /// The pinned sequence number.
    pub fn seq(&self) -> SeqNo {
        self.seq
    }

    /// Another guard on the same sequence number.
    pub fn duplicate(&self) -> SnapshotGuard {
        self.list.pin(self.seq)
    }
}

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        let mut pinned = self.list.pinned.lock();
        if let Some(n) = pinned.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                pinned.remove(&self.seq);
            }
        }
    }
}

/// Which "stripe" a sequence number falls in: the smallest pinned snapshot at or above
/// it, or `SeqNo::MAX` (the latest state). Two versions of a key in the same stripe
/// are indistinguishable to every reader, so only the newer one must be kept.
pub fn stripe(pinned: &[SeqNo], seq: SeqNo) -> SeqNo {
    let idx = pinned.partition_point(|s| *s < seq);
    pinned.get(idx).copied().unwrap_or(SeqNo::MAX)
}

/// What a flush or compaction must keep readable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Pinned snapshot sequence numbers, ascending.
    pub pinned: Vec<SeqNo>,
    /// With a history window: every version above this is kept, and the newest at or
    /// below it, so a read at any sequence number from it on is exact.
    pub horizon: Option<SeqNo>,
}

impl Retention {
    /// The stripe of `seq` (see [`stripe`]); above the horizon every version is a
    /// stripe of its own.
    pub fn stripe(&self, seq: SeqNo) -> SeqNo {
        let by_snapshots = stripe(&self.pinned, seq);
        match self.horizon {
            Some(h) if seq > h => seq,
            Some(h) => by_snapshots.min(h),
            None => by_snapshots,
        }
    }

    /// The oldest sequence number some reader may read at (`None`: only the latest).
    pub fn oldest(&self) -> Option<SeqNo> {
        match (self.pinned.first().copied(), self.horizon) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a version in `stripe` is read only by the latest state (neither a
    /// snapshot nor the history window can see it).
    pub fn latest_only(&self, stripe: SeqNo) -> bool {
        stripe == SeqNo::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_and_release() {
        let list = Arc::new(SnapshotList::default());
        let a = list.pin(SeqNo(5));
        let b = list.pin(SeqNo(5));
        let c = list.pin(SeqNo(9));
        assert_eq!(list.pinned(), vec![SeqNo(5), SeqNo(9)]);
        drop(a);
        assert_eq!(list.oldest(), Some(SeqNo(5)));
        drop(b);
        assert_eq!(list.oldest(), Some(SeqNo(9)));
        drop(c);
        assert_eq!(list.count(), 0);
    }

    #[test]
    fn stripes() {
        let pinned = [SeqNo(10), SeqNo(20)];
        assert_eq!(stripe(&pinned, SeqNo(3)), SeqNo(10));
        assert_eq!(stripe(&pinned, SeqNo(10)), SeqNo(10));
        assert_eq!(stripe(&pinned, SeqNo(11)), SeqNo(20));
        assert_eq!(stripe(&pinned, SeqNo(21)), SeqNo::MAX);
    }

    #[test]
    fn a_horizon_keeps_every_version_above_it() {
        let r = Retention {
            pinned: vec![SeqNo(10), SeqNo(40)],
            horizon: Some(SeqNo(25)),
        };
        assert_eq!(r.stripe(SeqNo(5)), SeqNo(10));
        assert_eq!(r.stripe(SeqNo(11)), SeqNo(25));
        assert_eq!(r.stripe(SeqNo(25)), SeqNo(25));
        assert_eq!(r.stripe(SeqNo(26)), SeqNo(26));
        assert_eq!(r.stripe(SeqNo(99)), SeqNo(99));
        assert_eq!(r.oldest(), Some(SeqNo(10)));
        assert!(!r.latest_only(r.stripe(SeqNo(99))));
        let plain = Retention::default();
        assert_eq!(plain.oldest(), None);
        assert!(plain.latest_only(plain.stripe(SeqNo(7))));
    }
}
