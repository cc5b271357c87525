//! One way of measuring every peer engine, so their `Stats:` lines compare.
//!
//! Peers do not count their own write amplification alike (or at all), so the harness
//! measures from outside:
//! - **write amplification** = bytes this process sent to storage since the engine
//!   opened (`write_bytes` of `/proc/self/io`, counted by the kernel when a page is
//!   dirtied, so it covers the log, flushes and compactions of every background
//!   thread) / key and value bytes the benchmark wrote through the adapter;
//! - **space amplification** = bytes of every file under the database directory /
//!   key and value bytes of the live entries, counted by a full scan when the line is
//!   printed (after the benchmark's timed part; it warms the peer's caches, which can
//!   only flatter the peer).
//!
//! Strata counts its own bytes (logical bytes written by the engine); the two ways
//! agree within page rounding for buffered writes. They do not for `Sync` writes of
//! small records: the kernel counts a whole 4 KiB page each time an fsynced page is
//! dirtied again, so a peer's `fillsync` write amplification is mostly page size.
//! Fields a peer does not expose print as `n/a`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::disk::dir_bytes;
use crate::engine::{BenchEngine, Direction};

/// Bytes the kernel has counted as written to storage by this process, or `None`
/// where `/proc/self/io` is not available.
pub fn process_write_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/io").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Counts what a peer adapter was asked to write and prints the `Stats:` line.
#[derive(Debug)]
pub struct PeerMeter {
    dir: PathBuf,
    user_bytes: AtomicU64,
    io_at_open: Option<u64>,
}

/// What a peer reports of itself for the `Stats:` line; `None` prints `n/a`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerFigures {
    /// Tables in level 0.
    pub l0_files: Option<u64>,
    /// Block cache hits / lookups.
    pub cache_hit_rate: Option<f64>,
    /// Time writes were held back, in microseconds.
    pub stall_micros: Option<u64>,
}

fn or_na<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| v.to_string())
}

impl PeerMeter {
    /// Starts counting for an engine opened on `dir`.
    pub fn new(dir: &Path) -> Self {
        PeerMeter {
            dir: dir.to_path_buf(),
            user_bytes: AtomicU64::new(0),
            io_at_open: process_write_bytes(),
        }
    }

    /// Notes `bytes` of keys and values written by the benchmark (puts, batches, the
    /// side writes of `--sync_writer=1`, and the keys of deletes, as Strata counts
    /// them).
    pub fn wrote(&self, bytes: usize) {
        self.user_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The parseable line, `Stats: write_amp=… space_amp=… stall_micros=… l0_files=…
    /// cache_hit_rate=… vlog_garbage_ratio=…`, with a scan of `engine` for live bytes.
    pub fn stats_line(&self, engine: &dyn BenchEngine, figures: PeerFigures) -> String {
        let user = self.user_bytes.load(Ordering::Relaxed);
        let write_amp = match (self.io_at_open, process_write_bytes()) {
            (Some(start), Some(now)) if user > 0 => Some(format!(
                "{:.2}",
                now.saturating_sub(start) as f64 / user as f64
            )),
            _ => None,
        };
        let mut live = 0u64;
        let scanned = engine.scan(Direction::Forward, None, usize::MAX, &mut |k, v| {
            live += (k.len() + v.len()) as u64;
        });
        let space_amp = match scanned {
            Ok(_) if live > 0 => Some(format!("{:.2}", dir_bytes(&self.dir) as f64 / live as f64)),
            _ => None,
        };
        format!(
            "Stats: write_amp={} space_amp={} stall_micros={} l0_files={} cache_hit_rate={} vlog_garbage_ratio=n/a",
            or_na(write_amp),
            or_na(space_amp),
            or_na(figures.stall_micros),
            or_na(figures.l0_files),
            or_na(figures.cache_hit_rate.map(|r| format!("{r:.2}"))),
        )
    }

    /// Readable extra statistics: the directory's size and the bytes counted.
    pub fn stats_text(&self) -> String {
        let written = match (self.io_at_open, process_write_bytes()) {
            (Some(start), Some(now)) => now.saturating_sub(start).to_string(),
            _ => "n/a".to_string(),
        };
        format!(
            "disk: {} B in {} | written to storage since open: {written} B | user bytes written: {} B",
            dir_bytes(&self.dir),
            self.dir.display(),
            self.user_bytes.load(Ordering::Relaxed)
        )
    }
}
