//! History: the wall-clock time of sequence numbers, and the retention window that
//! tells flushes and compactions which past versions to keep.
//!
//! Time is recorded coarsely: a background tick notes a [`TimeMark`] (the visible
//! sequence number and the wall-clock time) every `Options::history_mark_interval`
//! while writes arrive, and the marks are kept in the manifest. A time maps to the
//! sequence number of the newest mark at or before it, so a read "at time t" sees the
//! database as it was at most one interval before t, and never anything written
//! after t. The trade-off: no clock read on the write path, a few bytes per interval
//! on disk, and a documented granularity instead of per-write timestamps.
//!
//! A keyspace's *history floor* is the oldest sequence number at which reads of it are
//! still exact: every version newer than the floor is kept, and the newest version at
//! or below it. It only moves forward, and is persisted with the flushes and
//! compactions that rely on it, so a reopened database never claims history it has
//! already collected.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_wal::SeqNo;

use crate::db::{Db, DbInner, KeyspaceInner, Snapshot};
use crate::error::{Error, Result};
use crate::ids::KeyspaceId;
use crate::manifest::{TimeMarkEdit, VersionEdit};
use crate::options::KeyspaceOptions;
use crate::snapshot::Retention;

/// The visible sequence number at one wall-clock moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeMark {
    /// Every write at or below this was visible at `unix_millis`.
    pub seq: SeqNo,
    /// Milliseconds since the Unix epoch.
    pub unix_millis: u64,
}

/// Milliseconds since the Unix epoch of `t` (0 for times before it).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Time marks, ascending in both sequence number and time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeMarks {
    marks: Vec<TimeMark>,
}

impl TimeMarks {
    /// The marks, oldest first.
    pub fn as_slice(&self) -> &[TimeMark] {
        &self.marks
    }

    /// Appends `mark` if it moves forward: a larger sequence number at a time not
    /// earlier than the newest mark (a clock stepped backwards is ignored until it
    /// catches up). Returns whether it was added.
    pub fn push(&mut self, mark: TimeMark) -> bool {
        if let Some(last) = self.marks.last() {
            if mark.seq <= last.seq || mark.unix_millis < last.unix_millis {
                return false;
            }
        }
        self.marks.push(mark);
        true
    }

    /// Keeps only marks with `from <= seq <= to`.
    pub fn retain_range(&mut self, from: SeqNo, to: SeqNo) {
        self.marks.retain(|m| from <= m.seq && m.seq <= to);
    }

    /// The newest mark at or before `unix_millis`.
    pub fn at_time(&self, unix_millis: u64) -> Option<TimeMark> {
        let idx = self.marks.partition_point(|m| m.unix_millis <= unix_millis);
        idx.checked_sub(1).map(|i| self.marks[i])
    }

    /// The oldest mark whose sequence number reached `seq`: when `seq` was visible
    /// at the latest.
    pub fn reaching(&self, seq: SeqNo) -> Option<TimeMark> {
        let idx = self.marks.partition_point(|m| m.seq < seq);
        self.marks.get(idx).copied()
    }

    /// The oldest mark.
    pub fn first(&self) -> Option<TimeMark> {
        self.marks.first().copied()
    }

    /// The newest mark.
    pub fn last(&self) -> Option<TimeMark> {
        self.marks.last().copied()
    }

    /// Number of marks.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

/// The horizon of `options`' history window when `visible` is the newest sequence
/// number and `now_millis` the time: every version above it must be kept. `None`
/// when the keyspace keeps no history. With both a count and an age, the wider
/// window (the older horizon) wins. An age reaching back before the oldest mark
/// keeps everything (the database is younger than the window).
pub fn horizon(
    options: &KeyspaceOptions,
    visible: SeqNo,
    now_millis: u64,
    marks: &TimeMarks,
) -> Option<SeqNo> {
    let by_count = options
        .history_seqs
        .map(|n| SeqNo(visible.0.saturating_sub(n)));
    let by_age = options.history_age.map(|age| {
        let since = now_millis.saturating_sub(duration_millis(age));
        marks.at_time(since).map_or(SeqNo(0), |m| m.seq)
    });
    match (by_count, by_age) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whole milliseconds of `d`, saturating.
pub fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// The database's side: retention for flushes and compactions, marks, reads at a past
// sequence number or time.

/// Pending marks are written to the manifest at least this often.
const MARK_PERSIST_INTERVAL: Duration = Duration::from_secs(10);

impl DbInner {
    /// What a flush or compaction of `ks` starting now must keep: the pinned
    /// snapshots and, with a history window, its horizon. Moves the keyspace's
    /// history floor to what the flush or compaction may collect below.
    pub(crate) fn retention(&self, ks: &KeyspaceInner) -> Retention {
        self.snapshots.retention(|| {
            let visible = self.publisher.visible();
            let horizon = if ks.keeps_history() {
                let book = self.marks.lock();
                horizon(
                    &ks.options,
                    visible,
                    unix_millis(SystemTime::now()),
                    &book.marks,
                )
            } else {
                None
            };
            ks.history_floor
                .fetch_max(horizon.unwrap_or(visible).0, Ordering::SeqCst);
            horizon
        })
    }

    /// Notes the visible sequence number's time if it moved since the last mark.
    pub(crate) fn note_time_mark(&self) {
        let mark = TimeMark {
            seq: self.publisher.read_point(),
            unix_millis: unix_millis(SystemTime::now()),
        };
        let mut book = self.marks.lock();
        if book.marks.push(mark) {
            book.pending.push(mark);
        }
    }

    /// Writes pending marks to the manifest (and forgets marks nothing needs any
    /// more) when `MARK_PERSIST_INTERVAL` passed since the last time.
    pub(crate) fn persist_marks_if_due(&self) -> Result<()> {
        let due = self
            .marks
            .lock()
            .persisted_at
            .is_none_or(|t| t.elapsed() >= MARK_PERSIST_INTERVAL);
        if due {
            self.persist_marks()?;
        }
        Ok(())
    }

    /// Writes pending marks to the manifest and forgets marks older than every
    /// keyspace's history floor and the oldest WAL segment.
    pub(crate) fn persist_marks(&self) -> Result<()> {
        let keep_from = self.oldest_mark_needed();
        let mut meta = self.meta.lock();
        let (added, prune) = {
            let mut book = self.marks.lock();
            book.persisted_at = Some(std::time::Instant::now());
            // The mark at or below `keep_from` stays: it dates `keep_from` itself.
            let keep_from = book
                .marks
                .as_slice()
                .iter()
                .rev()
                .find(|m| m.seq <= keep_from)
                .map_or(SeqNo(0), |m| m.seq);
            let prune = book.marks.first().is_some_and(|m| m.seq < keep_from);
            book.marks.retain_range(keep_from, SeqNo::MAX);
            (
                std::mem::take(&mut book.pending),
                prune.then_some(keep_from),
            )
        };
        if added.is_empty() && prune.is_none() {
            return Ok(());
        }
        let edit = VersionEdit {
            time_marks: Some(TimeMarkEdit {
                keep_from: prune.unwrap_or(SeqNo(0)),
                keep_to: SeqNo::MAX,
                added: added.clone(),
            }),
            ..VersionEdit::default()
        };
        self.commit_edit(&mut meta, &edit, false).inspect_err(|_| {
            // Kept for the next attempt (the database is poisoned, but a close may
            // still try).
            let mut book = self.marks.lock();
            let mut restored = added;
            restored.append(&mut book.pending);
            book.pending = restored;
        })
    }

    /// The oldest sequence number a mark is still needed for: the lowest history
    /// floor of a keyspace with a window, and the oldest WAL segment (whose age WAL
    /// retention measures by marks). Without either, only the newest mark is kept.
    fn oldest_mark_needed(&self) -> SeqNo {
        let floors = self
            .catalog
            .read()
            .by_id
            .values()
            .filter(|k| k.keeps_history())
            .map(|k| SeqNo(k.history_floor.load(Ordering::SeqCst)))
            .min();
        let wal = self
            .options
            .wal_retention_age
            .and_then(|_| self.wal.segments().first().map(|s| s.1));
        match (floors, wal) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(self.publisher.visible()),
        }
    }

    /// Pins `seq` for reads of every keyspace whose history still holds it.
    fn snapshot_at(&self, seq: SeqNo) -> Result<(crate::snapshot::SnapshotGuard, Unretained)> {
        let keyspaces: Vec<Arc<KeyspaceInner>> =
            self.catalog.read().by_id.values().cloned().collect();
        self.snapshots.pin_checked(seq, || {
            let visible = self.publisher.visible();
            if seq > visible {
                return Err(Error::InvalidArgument(format!(
                    "sequence number {seq} has not been written yet; the newest is {visible}"
                )));
            }
            let unretained: Vec<(KeyspaceId, String, SeqNo)> = keyspaces
                .iter()
                .map(|k| {
                    (
                        k.id,
                        k.name.clone(),
                        SeqNo(k.history_floor.load(Ordering::SeqCst)),
                    )
                })
                .filter(|(_, _, floor)| *floor > seq)
                .collect();
            if !keyspaces.is_empty() && unretained.len() == keyspaces.len() {
                let oldest = unretained.iter().map(|u| u.2).min().unwrap_or(visible);
                return Err(Error::HistoryUnavailable {
                    scope: "every keyspace".into(),
                    requested: seq,
                    oldest,
                });
            }
            Ok(Arc::new(unretained))
        })
    }
}

/// Keyspaces whose history no longer holds a snapshot's sequence number, with the
/// oldest one each still holds.
pub(crate) type Unretained = Arc<Vec<(KeyspaceId, String, SeqNo)>>;

/// Fails if `keyspace` does not hold `snapshot`'s sequence number any more.
pub(crate) fn check_retained(snapshot: &Snapshot, keyspace: KeyspaceId) -> Result<()> {
    match snapshot.unretained.iter().find(|u| u.0 == keyspace) {
        Some((_, name, floor)) => Err(Error::HistoryUnavailable {
            scope: format!("keyspace {name:?}"),
            requested: snapshot.seqno(),
            oldest: *floor,
        }),
        None => Ok(()),
    }
}

impl Db {
    /// A snapshot reading at the past sequence number `seq` (what
    /// [`Db::latest_seqno`] returned then, or a change batch's last sequence number):
    /// every read through it returns what a read at that moment returned, for every
    /// keyspace whose history window still holds `seq`. Reads of a keyspace that no
    /// longer holds it fail with [`Error::HistoryUnavailable`] naming the oldest
    /// sequence number it holds. While the snapshot lives, `seq` stays readable
    /// even after it leaves the window. A number inside a write batch reads part of
    /// the batch.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a sequence number not yet written;
    /// [`Error::HistoryUnavailable`] when no keyspace holds it.
    pub fn snapshot_at(&self, seq: SeqNo) -> Result<Snapshot> {
        let (guard, unretained) = self.inner().snapshot_at(seq)?;
        Ok(Snapshot {
            db: Arc::clone(&self.handle),
            guard,
            unretained,
        })
    }

    /// A snapshot reading the database as it was at wall-clock time `t`: at the
    /// newest time mark at or before `t` (marks are noted every
    /// `Options::history_mark_interval` while writes arrive, so this is the state at
    /// most one interval before `t`, and never includes a write made after `t`).
    ///
    /// # Errors
    /// [`Error::TimeUnavailable`] when `t` is in the future or before the oldest mark
    /// kept; then as [`Db::snapshot_at`].
    pub fn snapshot_at_time(&self, t: SystemTime) -> Result<Snapshot> {
        let requested = unix_millis(t);
        let now = unix_millis(SystemTime::now());
        let (mark, oldest) = {
            let book = self.inner().marks.lock();
            let mark = (requested <= now)
                .then(|| book.marks.at_time(requested))
                .flatten();
            (mark, book.marks.first().map(|m| m.unix_millis))
        };
        match mark {
            Some(m) => self.snapshot_at(m.seq),
            None => Err(Error::TimeUnavailable {
                requested_unix_millis: requested,
                oldest_unix_millis: oldest,
                now_unix_millis: now,
            }),
        }
    }

    /// The oldest sequence number reads of `keyspace` through [`Db::snapshot_at`]
    /// are still exact at.
    pub fn history_floor(&self, keyspace: &crate::Keyspace) -> SeqNo {
        SeqNo(keyspace.ks.history_floor.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(seq: u64, t: u64) -> TimeMark {
        TimeMark {
            seq: SeqNo(seq),
            unix_millis: t,
        }
    }

    #[test]
    fn marks_only_move_forward_and_map_time_to_sequence() {
        let mut m = TimeMarks::default();
        assert!(m.push(mark(10, 1000)));
        assert!(!m.push(mark(10, 2000)), "same sequence number");
        assert!(!m.push(mark(20, 500)), "clock went backwards");
        assert!(m.push(mark(20, 2000)));
        assert!(m.push(mark(30, 3000)));
        assert_eq!(m.at_time(999), None);
        assert_eq!(m.at_time(1000), Some(mark(10, 1000)));
        assert_eq!(m.at_time(2999), Some(mark(20, 2000)));
        assert_eq!(m.at_time(u64::MAX), Some(mark(30, 3000)));
        assert_eq!(m.reaching(SeqNo(11)), Some(mark(20, 2000)));
        assert_eq!(m.reaching(SeqNo(31)), None);
        m.retain_range(SeqNo(15), SeqNo(25));
        assert_eq!(m.as_slice(), &[mark(20, 2000)]);
    }

    #[test]
    fn horizons_of_count_age_and_both() {
        let mut marks = TimeMarks::default();
        marks.push(mark(100, 10_000));
        marks.push(mark(200, 20_000));
        let base = KeyspaceOptions::default();
        assert_eq!(horizon(&base, SeqNo(500), 30_000, &marks), None);
        let count = KeyspaceOptions {
            history_seqs: Some(50),
            ..base.clone()
        };
        assert_eq!(
            horizon(&count, SeqNo(500), 30_000, &marks),
            Some(SeqNo(450))
        );
        assert_eq!(horizon(&count, SeqNo(20), 30_000, &marks), Some(SeqNo(0)));
        let age = KeyspaceOptions {
            history_age: Some(Duration::from_secs(15)),
            ..base.clone()
        };
        // 30 s - 15 s = 15 s: the mark at 10 s.
        assert_eq!(horizon(&age, SeqNo(500), 30_000, &marks), Some(SeqNo(100)));
        // Before the first mark: keep everything.
        assert_eq!(horizon(&age, SeqNo(500), 20_000, &marks), Some(SeqNo(0)));
        let both = KeyspaceOptions {
            history_seqs: Some(50),
            history_age: Some(Duration::from_secs(15)),
            ..base
        };
        assert_eq!(horizon(&both, SeqNo(500), 30_000, &marks), Some(SeqNo(100)));
    }
}
