//! Per-thread counters and the result lines `db_bench` prints.
//!
//! Each client thread counts into its own [`ThreadStats`]; when a benchmark ends they
//! are merged into a [`Measurement`], printed as RocksDB's db_bench prints it:
//!
//! ```text
//! fillrandom   :       2.345 micros/op 426439 ops/sec 2.345 seconds 1000000 operations;   47.2 MB/s
//! ```
//!
//! As in RocksDB, `micros/op` is the threads' busy time summed and divided by the
//! operations (the latency one client sees), while `ops/sec`, `seconds` and `MB/s` use
//! the wall time from the first thread's start to the last thread's end (the
//! throughput of all clients together). `MB/s` counts key and value bytes written or
//! read, in MiB like db_bench, and is left out when a benchmark moves no bytes.
//!
//! With `--histogram=1`, every operation is timed from the end of the previous one
//! (LevelDB's `FinishedSingleOp`), so a sample includes the harness's own key and value
//! generation, a few tens of nanoseconds. Without it no clock is read per operation.

use std::time::{Duration, Instant};

use crate::histogram::Histogram;

/// What one client thread did during one benchmark.
#[derive(Clone, Debug)]
pub struct ThreadStats {
    /// Operations completed.
    pub ops: u64,
    /// Key and value bytes written or read.
    pub bytes: u64,
    /// Reads that found their key.
    pub found: u64,
    /// Read operations (for mixed workloads).
    pub reads: u64,
    /// Write operations (for mixed workloads).
    pub writes: u64,
    hist: Option<Histogram>,
    start: Instant,
    finish: Instant,
    last_op: Instant,
}

impl ThreadStats {
    /// Empty counters; with `histogram`, operations are timed into a histogram.
    pub fn new(histogram: bool) -> Self {
        let now = Instant::now();
        ThreadStats {
            ops: 0,
            bytes: 0,
            found: 0,
            reads: 0,
            writes: 0,
            hist: histogram.then(Histogram::new),
            start: now,
            finish: now,
            last_op: now,
        }
    }

    /// Marks the start of the measured work.
    pub fn start(&mut self) {
        let now = Instant::now();
        self.start = now;
        self.finish = now;
        self.last_op = now;
    }

    /// Counts one completed operation that moved `bytes` bytes.
    #[inline]
    pub fn finished_op(&mut self, bytes: u64) {
        self.finished_ops(1, bytes);
    }

    /// Counts `ops` operations completed together (a batch) that moved `bytes` bytes;
    /// the histogram gets one sample for all of them.
    #[inline]
    pub fn finished_ops(&mut self, ops: u64, bytes: u64) {
        self.ops += ops;
        self.bytes += bytes;
        if let Some(h) = &mut self.hist {
            let now = Instant::now();
            h.record_duration(now - self.last_op);
            self.last_op = now;
        }
    }

    /// Marks the end of the measured work.
    pub fn finish(&mut self) {
        self.finish = Instant::now();
    }

    /// Time between [`start`](Self::start) and [`finish`](Self::finish).
    pub fn busy(&self) -> Duration {
        self.finish.saturating_duration_since(self.start)
    }
}

/// The merged result of one benchmark (or one phase of it), ready to print.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Name at the start of the line.
    pub name: String,
    /// Operations of all threads.
    pub ops: u64,
    /// Bytes of all threads.
    pub bytes: u64,
    /// Reads that found their key, over all threads.
    pub found: u64,
    /// Read operations over all threads (mixed workloads).
    pub reads: u64,
    /// Write operations over all threads (mixed workloads).
    pub writes: u64,
    /// Busy time summed over threads.
    pub busy: Duration,
    /// First start to last finish.
    pub wall: Duration,
    /// The threads' histograms merged, with `--histogram=1`.
    pub hist: Option<Histogram>,
    /// Text appended to the line, such as `(2000 of 2000 found)`.
    pub message: Option<String>,
}

impl Measurement {
    /// Merges the threads' counters.
    pub fn from_threads(name: impl Into<String>, threads: &[ThreadStats]) -> Self {
        let mut m = Measurement {
            name: name.into(),
            ops: 0,
            bytes: 0,
            found: 0,
            reads: 0,
            writes: 0,
            busy: Duration::ZERO,
            wall: Duration::ZERO,
            hist: None,
            message: None,
        };
        let start = threads.iter().map(|t| t.start).min();
        let finish = threads.iter().map(|t| t.finish).max();
        if let (Some(s), Some(f)) = (start, finish) {
            m.wall = f.saturating_duration_since(s);
        }
        for t in threads {
            m.ops += t.ops;
            m.bytes += t.bytes;
            m.found += t.found;
            m.reads += t.reads;
            m.writes += t.writes;
            m.busy += t.busy();
            if let Some(h) = &t.hist {
                m.hist.get_or_insert_with(Histogram::new).merge(h);
            }
        }
        m
    }

    /// The db_bench result line (without a newline).
    pub fn line(&self) -> String {
        format_line(
            &self.name,
            self.ops,
            self.bytes,
            self.busy,
            self.wall,
            self.message.as_deref(),
        )
    }
}

/// Formats a result line from its figures: see the module documentation.
pub fn format_line(
    name: &str,
    ops: u64,
    bytes: u64,
    busy: Duration,
    wall: Duration,
    message: Option<&str>,
) -> String {
    let per_op_divisor = ops.max(1) as f64;
    let wall_secs = wall.as_secs_f64();
    let rate_secs = wall_secs.max(1e-9);
    let micros_per_op = busy.as_secs_f64() * 1e6 / per_op_divisor;
    let ops_per_sec = (ops as f64 / rate_secs) as u64;
    let mut extra = String::new();
    if bytes > 0 {
        extra.push_str(&format!(
            "{:6.1} MB/s",
            bytes as f64 / 1_048_576.0 / rate_secs
        ));
    }
    if let Some(msg) = message.filter(|m| !m.is_empty()) {
        if !extra.is_empty() {
            extra.push(' ');
        }
        extra.push_str(msg);
    }
    format!(
        "{:<12} : {:>11.3} micros/op {} ops/sec {:.3} seconds {} operations;{}{}",
        name,
        micros_per_op,
        ops_per_sec,
        wall_secs,
        ops,
        if extra.is_empty() { "" } else { " " },
        extra
    )
}

/// The message of read benchmarks, as RocksDB prints it: `(found of total found)`.
pub fn found_message(found: u64, total: u64) -> String {
    format!("({found} of {total} found)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_matches_db_bench_exactly() {
        let line = format_line(
            "fillrandom",
            1_000_000,
            116_000_000,
            Duration::from_secs_f64(2.345),
            Duration::from_secs_f64(2.345),
            None,
        );
        assert_eq!(
            line,
            "fillrandom   :       2.345 micros/op 426439 ops/sec 2.345 seconds 1000000 operations;   47.2 MB/s"
        );
    }

    #[test]
    fn line_with_message_and_without_bytes() {
        let line = format_line(
            "readrandom",
            2000,
            232_000,
            Duration::from_millis(4),
            Duration::from_millis(2),
            Some(&found_message(1990, 2000)),
        );
        assert_eq!(
            line,
            "readrandom   :       2.000 micros/op 1000000 ops/sec 0.002 seconds 2000 operations;  110.6 MB/s (1990 of 2000 found)"
        );
        let line = format_line(
            "compact",
            1,
            0,
            Duration::from_millis(125),
            Duration::from_millis(125),
            None,
        );
        assert_eq!(
            line,
            "compact      :  125000.000 micros/op 8 ops/sec 0.125 seconds 1 operations;"
        );
        let line = format_line(
            "readwhilewritingx",
            0,
            0,
            Duration::ZERO,
            Duration::ZERO,
            Some("(x)"),
        );
        assert!(line.starts_with("readwhilewritingx :       0.000 micros/op 0 ops/sec"));
        assert!(line.ends_with("0 operations; (x)"));
    }

    #[test]
    fn merge_sums_counters_and_spans_wall_time() {
        let mut a = ThreadStats::new(true);
        let mut b = ThreadStats::new(true);
        a.start();
        b.start();
        for _ in 0..10 {
            a.finished_op(100);
        }
        b.finished_ops(5, 50);
        b.found = 3;
        std::thread::sleep(Duration::from_millis(2));
        a.finish();
        b.finish();
        let m = Measurement::from_threads("x", &[a.clone(), b.clone()]);
        assert_eq!(m.ops, 15);
        assert_eq!(m.bytes, 1050);
        assert_eq!(m.found, 3);
        assert_eq!(m.hist.as_ref().map(Histogram::count), Some(11));
        assert!(m.wall >= Duration::from_millis(2));
        assert!(m.busy >= a.busy() && m.busy >= b.busy());
        assert!(m.wall <= m.busy);
        let plain = Measurement::from_threads("y", &[ThreadStats::new(false)]);
        assert!(plain.hist.is_none());
    }
}
