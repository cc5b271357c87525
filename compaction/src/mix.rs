//! The observed workload mix of a keyspace: how many writes, point reads and scans it
//! served over a sliding window.
//!
//! The engine counts operations on its hot path (with atomics), closes a period now and
//! then (every flush, or every few seconds), pushes the period's counts into a
//! [`MixWindow`] and hands the window's sum to the adaptive policy. A window of several
//! periods smooths bursts; the policy's hysteresis (see [`hca`](crate::hca)) does the
//! rest. Trade-off: counts, not costs — the mix says what the keyspace is asked to do,
//! the cost model says what each kind of operation costs for a given tree shape.

use std::collections::VecDeque;

/// Merges that drop less than this fraction of what they read mark a keyspace
/// *append-only*: every key new, nothing for a merge to reclaim (agent event logs).
pub const APPEND_ONLY_RECLAIM: f64 = 0.02;

/// Operation counts over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkloadMix {
    /// Writes (puts and deletes).
    pub writes: u64,
    /// Bytes those writes add to the tree (key plus inline value, or plus a value
    /// pointer under key-value separation). Sets the write cost per operation.
    pub write_bytes: u64,
    /// Point reads (`get`).
    pub point_reads: u64,
    /// Range scans (each counts once, whatever its length).
    pub scans: u64,
    /// Bytes the merges of the window read.
    pub merge_input_bytes: u64,
    /// Bytes those merges wrote. What they dropped (`input - output`: overwritten
    /// versions, deleted entries) is what merging reclaims; a keyspace whose merges drop
    /// next to nothing (append-only event logs) gains no space from merging.
    pub merge_output_bytes: u64,
}

impl WorkloadMix {
    /// Writes, point reads and scans together.
    pub fn total_ops(&self) -> u64 {
        self.writes
            .saturating_add(self.point_reads)
            .saturating_add(self.scans)
    }

    /// Adds another window's counts.
    pub fn add(&mut self, other: &WorkloadMix) {
        self.writes = self.writes.saturating_add(other.writes);
        self.write_bytes = self.write_bytes.saturating_add(other.write_bytes);
        self.point_reads = self.point_reads.saturating_add(other.point_reads);
        self.scans = self.scans.saturating_add(other.scans);
        self.merge_input_bytes = self
            .merge_input_bytes
            .saturating_add(other.merge_input_bytes);
        self.merge_output_bytes = self
            .merge_output_bytes
            .saturating_add(other.merge_output_bytes);
    }

    /// The counts between `earlier` and `self`, two readings of running totals.
    pub fn since(&self, earlier: &WorkloadMix) -> WorkloadMix {
        WorkloadMix {
            writes: self.writes.saturating_sub(earlier.writes),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            point_reads: self.point_reads.saturating_sub(earlier.point_reads),
            scans: self.scans.saturating_sub(earlier.scans),
            merge_input_bytes: self
                .merge_input_bytes
                .saturating_sub(earlier.merge_input_bytes),
            merge_output_bytes: self
                .merge_output_bytes
                .saturating_sub(earlier.merge_output_bytes),
        }
    }

    /// Whether merges ran and dropped less than [`APPEND_ONLY_RECLAIM`] of what they
    /// read: the keyspace only appends new keys.
    pub fn appends_only(&self) -> bool {
        self.merge_reclaim()
            .is_some_and(|r| r < APPEND_ONLY_RECLAIM)
    }

    /// The fraction of what merges read that they dropped, if any merge ran.
    pub fn merge_reclaim(&self) -> Option<f64> {
        (self.merge_input_bytes > 0).then(|| {
            let dropped = self
                .merge_input_bytes
                .saturating_sub(self.merge_output_bytes);
            dropped as f64 / self.merge_input_bytes as f64
        })
    }

    /// Fractions of writes, point reads and scans among all operations (all zero for an
    /// empty window).
    pub fn fractions(&self) -> (f64, f64, f64) {
        let total = self.total_ops();
        if total == 0 {
            return (0.0, 0.0, 0.0);
        }
        let t = total as f64;
        (
            self.writes as f64 / t,
            self.point_reads as f64 / t,
            self.scans as f64 / t,
        )
    }

    /// Average bytes per write, if any write was seen.
    pub fn bytes_per_write(&self) -> Option<f64> {
        (self.writes > 0 && self.write_bytes > 0)
            .then(|| self.write_bytes as f64 / self.writes as f64)
    }
}

/// A sliding window over the last `periods` periods of counts.
#[derive(Debug, Clone)]
pub struct MixWindow {
    periods: VecDeque<WorkloadMix>,
    capacity: usize,
}

impl MixWindow {
    /// A window over the last `periods` periods (at least one).
    pub fn new(periods: usize) -> Self {
        let capacity = periods.max(1);
        MixWindow {
            periods: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds a closed period's counts, forgetting the oldest period when full.
    pub fn push(&mut self, period: WorkloadMix) {
        if self.periods.len() == self.capacity {
            self.periods.pop_front();
        }
        self.periods.push_back(period);
    }

    /// The counts over the window.
    pub fn mix(&self) -> WorkloadMix {
        let mut sum = WorkloadMix::default();
        for p in &self.periods {
            sum.add(p);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_forgets_the_oldest_period() {
        let mut w = MixWindow::new(2);
        let p = |writes| WorkloadMix {
            writes,
            write_bytes: writes * 10,
            point_reads: 1,
            ..WorkloadMix::default()
        };
        w.push(p(1));
        w.push(p(2));
        w.push(p(4));
        let m = w.mix();
        assert_eq!((m.writes, m.write_bytes, m.point_reads), (6, 60, 2));
        let (wf, rf, sf) = m.fractions();
        assert!((wf - 0.75).abs() < 1e-9 && (rf - 0.25).abs() < 1e-9 && sf == 0.0);
        assert_eq!(m.bytes_per_write(), Some(10.0));
        assert_eq!(WorkloadMix::default().fractions(), (0.0, 0.0, 0.0));
        assert_eq!(MixWindow::new(0).capacity, 1);
    }

    #[test]
    fn periods_and_merge_reclaim_come_from_running_totals() {
        let earlier = WorkloadMix {
            writes: 10,
            merge_input_bytes: 1000,
            merge_output_bytes: 900,
            ..WorkloadMix::default()
        };
        let now = WorkloadMix {
            writes: 30,
            merge_input_bytes: 3000,
            merge_output_bytes: 2800,
            ..WorkloadMix::default()
        };
        let period = now.since(&earlier);
        assert_eq!(period.writes, 20);
        assert_eq!(period.merge_reclaim(), Some(0.05));
        assert_eq!(WorkloadMix::default().merge_reclaim(), None, "no merge ran");
    }

    #[test]
    fn a_keyspace_is_append_only_once_its_merges_drop_next_to_nothing() {
        let merged = |read, written| WorkloadMix {
            merge_input_bytes: read,
            merge_output_bytes: written,
            ..WorkloadMix::default()
        };
        assert!(!merged(0, 0).appends_only(), "no merge yet");
        assert!(merged(1000, 995).appends_only(), "0.5% dropped");
        assert!(!merged(1000, 900).appends_only(), "10% dropped: overwrites");
        assert!(!merged(1000, 980).appends_only(), "2% dropped is the limit");
    }
}
