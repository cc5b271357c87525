//! Offline verification: every checksum of every file of a database directory.
//!
//! Reads `CURRENT`, the manifest it names, every table the manifest lists (footer,
//! index, filter and every data block), every value-log segment (every record) and
//! every WAL segment (every record), without opening the database: nothing is
//! written, so it is safe on a copy, a backup or a directory another process has
//! open. The first damage found is returned as [`Error::Corruption`] naming the file
//! and offset; files the manifest does not name are counted, not read. A torn tail
//! that opening would cut (the manifest's last edit, the newest WAL segment's end past
//! its last sync mark) is not damage: the report names it.

use std::path::Path;
use std::sync::Arc;

use strata_wal::{Fs, RecoveryMode, SeqNo, WalReader};

use crate::db::{table_file_name, WAL_DIR};
use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::manifest::{decode_current, manifest_file_name, read_manifest_in_full, CURRENT};
use crate::table::Table;

/// What [`verify_directory`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Keyspaces in the manifest.
    pub keyspaces: usize,
    /// Tables checked.
    pub tables: usize,
    /// Table entries read.
    pub table_entries: u64,
    /// Value-log segments checked.
    pub segments: usize,
    /// Value-log records checked.
    pub segment_records: u64,
    /// WAL records checked.
    pub wal_records: u64,
    /// Bytes read, all files together.
    pub bytes: u64,
    /// A torn last edit of the manifest, ignored as opening the database ignores it:
    /// its offset and length (the documented torn-tail case, not damage).
    pub manifest_torn_tail: Option<(u64, u64)>,
    /// The torn tail of the newest WAL segment that opening the database would cut.
    pub wal_torn_tail: Option<strata_wal::TornTail>,
}

/// Checks every checksum of the database in `dir` (see the module docs).
///
/// # Errors
/// [`Error::Corruption`] naming the damaged file and offset; I/O errors.
pub fn verify_directory(fs: &Arc<dyn Fs>, dir: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let current_path = dir.join(CURRENT);
    let number = decode_current(&fs.open(&current_path)?.read_all()?, &current_path)?;
    let manifest_path = dir.join(manifest_file_name(number));
    let read = read_manifest_in_full(fs.as_ref(), &manifest_path, number)?;
    let state = read.state;
    report.manifest_torn_tail = read.torn_tail;
    report.bytes += fs.open(&manifest_path)?.len()?;
    report.keyspaces = state.keyspaces.len();
    for ks in state.keyspaces.values() {
        for meta in ks.tables.values() {
            let path = dir.join(table_file_name(meta.id));
            let file = fs.open(&path)?;
            if file.len()? != meta.size {
                return Err(Error::corruption(
                    &path,
                    file.len()?,
                    format!("the manifest records {} bytes", meta.size),
                ));
            }
            let table = Table::open(file, meta.id, None, false)?;
            let mut it = table.iter();
            it.seek_to_first()?;
            while it.valid() {
                report.table_entries += 1;
                it.next()?;
            }
            report.tables += 1;
            report.bytes += meta.size;
        }
        for meta in ks.segments.values() {
            let path = dir.join(strata_vlog::segment_file_name(meta.id));
            let bytes = fs.open(&path)?.read_all()?;
            if (bytes.len() as u64) < meta.file_bytes {
                return Err(Error::corruption(
                    &path,
                    bytes.len() as u64,
                    format!("the manifest records {} bytes", meta.file_bytes),
                ));
            }
            let recorded = &bytes[..meta.file_bytes as usize];
            let outcome = strata_vlog::scan_segment(
                recorded,
                &path,
                meta.id,
                meta.file_bytes,
                |_, _| Ok(()),
            )?;
            if outcome.records != meta.records {
                return Err(Error::corruption(
                    &path,
                    0,
                    format!(
                        "{} records found, the manifest records {}",
                        outcome.records, meta.records
                    ),
                ));
            }
            report.segments += 1;
            report.segment_records += outcome.records;
            report.bytes += meta.file_bytes;
        }
    }
    let wal_dir = dir.join(WAL_DIR);
    if fs.exists(&wal_dir)? {
        // Judged as recovery judges it: damage before the last sync mark is corruption.
        let mut reader = WalReader::open(Arc::clone(fs), &wal_dir, SeqNo(0), RecoveryMode::Strict)?
            .for_closed_log();
        for record in reader.by_ref() {
            let record = record?;
            report.wal_records += 1;
            report.bytes += record.payload.len() as u64;
        }
        report.wal_torn_tail = reader.torn_tail().cloned();
    }
    Ok(report)
}
