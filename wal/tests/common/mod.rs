//! Helpers shared by the WAL integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_wal::{
    Fs, RecoveryMode, RecoverySummary, SeqCounter, SeqNo, Wal, WalOptions, WalRecord,
};

pub fn dir() -> PathBuf {
    PathBuf::from("/db/wal")
}

pub fn options(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        sync_interval: None,
        recovery_mode: RecoveryMode::Strict,
    }
}

/// Opens the log, collecting every replayed record.
pub fn open(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    options: WalOptions,
) -> strata_wal::Result<(Wal, Vec<WalRecord>, RecoverySummary)> {
    let mut records = Vec::new();
    let (wal, summary) = Wal::open(
        Arc::clone(fs),
        dir,
        options,
        Arc::new(SeqCounter::new(SeqNo(1))),
        SeqNo::ZERO,
        |r| {
            records.push(r);
            Ok(())
        },
    )?;
    Ok((wal, records, summary))
}

/// A payload that names its index, of a length that varies with it.
pub fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p = format!("record-{i}-").into_bytes();
    p.resize(len.max(p.len()), (i % 251) as u8);
    p
}
