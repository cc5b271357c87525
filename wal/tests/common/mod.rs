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

/// The salt in the header of the segment file `bytes`.
pub fn salt_of(bytes: &[u8]) -> strata_wal::record::Salt {
    strata_wal::segment::SegmentHeader::decode(bytes, Path::new("segment"))
        .expect("a valid segment header")
        .salt
}

/// When a [`HookFs`] hook runs: before the call is passed on, or after it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Before,
    After,
}

/// Called with the operation's name (`"sync_data"`, `"sync_dir"`, `"remove"`, …), the
/// path and the phase.
pub type Hook = Arc<dyn Fn(&'static str, &Path, Phase) + Send + Sync>;

/// An [`Fs`] that passes every call to `inner` and lets a test watch, delay or
/// interleave them.
pub struct HookFs {
    pub inner: Arc<dyn Fs>,
    pub hook: Hook,
}

impl std::fmt::Debug for HookFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookFs")
            .field("inner", &self.inner)
            .finish()
    }
}

impl HookFs {
    pub fn new(
        inner: Arc<dyn Fs>,
        hook: impl Fn(&'static str, &Path, Phase) + Send + Sync + 'static,
    ) -> Self {
        HookFs {
            inner,
            hook: Arc::new(hook),
        }
    }

    fn around<T>(&self, op: &'static str, path: &Path, call: impl FnOnce() -> T) -> T {
        (self.hook)(op, path, Phase::Before);
        let out = call();
        (self.hook)(op, path, Phase::After);
        out
    }

    fn wrap(&self, file: Arc<dyn strata_wal::FsFile>) -> Arc<dyn strata_wal::FsFile> {
        Arc::new(HookFile {
            inner: file,
            hook: Arc::clone(&self.hook),
        })
    }
}

impl Fs for HookFs {
    fn create(&self, path: &Path) -> strata_wal::Result<Arc<dyn strata_wal::FsFile>> {
        let file = self.around("create", path, || self.inner.create(path))?;
        Ok(self.wrap(file))
    }
    fn open(&self, path: &Path) -> strata_wal::Result<Arc<dyn strata_wal::FsFile>> {
        let file = self.around("open", path, || self.inner.open(path))?;
        Ok(self.wrap(file))
    }
    fn rename(&self, from: &Path, to: &Path) -> strata_wal::Result<()> {
        self.around("rename", from, || self.inner.rename(from, to))
    }
    fn hard_link(&self, from: &Path, to: &Path) -> strata_wal::Result<()> {
        self.around("hard_link", from, || self.inner.hard_link(from, to))
    }
    fn remove(&self, path: &Path) -> strata_wal::Result<()> {
        self.around("remove", path, || self.inner.remove(path))
    }
    fn list(&self, dir: &Path) -> strata_wal::Result<Vec<String>> {
        self.around("list", dir, || self.inner.list(dir))
    }
    fn exists(&self, path: &Path) -> strata_wal::Result<bool> {
        self.around("exists", path, || self.inner.exists(path))
    }
    fn create_dir_all(&self, dir: &Path) -> strata_wal::Result<()> {
        self.around("create_dir_all", dir, || self.inner.create_dir_all(dir))
    }
    fn sync_dir(&self, dir: &Path) -> strata_wal::Result<()> {
        self.around("sync_dir", dir, || self.inner.sync_dir(dir))
    }
    fn lock(&self, path: &Path) -> strata_wal::Result<Box<dyn strata_wal::FileLock>> {
        self.around("lock", path, || self.inner.lock(path))
    }
}

struct HookFile {
    inner: Arc<dyn strata_wal::FsFile>,
    hook: Hook,
}

impl std::fmt::Debug for HookFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookFile")
            .field("inner", &self.inner)
            .finish()
    }
}

impl HookFile {
    fn around<T>(&self, op: &'static str, call: impl FnOnce() -> T) -> T {
        (self.hook)(op, self.inner.path(), Phase::Before);
        let out = call();
        (self.hook)(op, self.inner.path(), Phase::After);
        out
    }
}

impl strata_wal::FsFile for HookFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn len(&self) -> strata_wal::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> strata_wal::Result<()> {
        self.around("read", || self.inner.read_exact_at(offset, buf))
    }
    fn append(&self, data: &[u8]) -> strata_wal::Result<()> {
        self.around("append", || self.inner.append(data))
    }
    fn sync_data(&self) -> strata_wal::Result<()> {
        self.around("sync_data", || self.inner.sync_data())
    }
    fn truncate(&self, len: u64) -> strata_wal::Result<()> {
        self.around("truncate", || self.inner.truncate(len))
    }
    fn map(&self) -> strata_wal::Result<strata_wal::FileMap> {
        self.around("map", || self.inner.map())
    }
}

/// A fresh [`strata_wal::FaultFs`] holding, durably, the current view of every file
/// in `dir()` of `from`, with `edit` applied to each file's bytes first (by name).
pub fn copy_log(
    from: &strata_wal::FaultFs,
    mut edit: impl FnMut(&str, &mut Vec<u8>),
) -> (strata_wal::FaultFs, Arc<dyn Fs>) {
    let fault = strata_wal::FaultFs::new(99);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    fs.create_dir_all(&dir()).unwrap();
    let source: Arc<dyn Fs> = Arc::new(from.clone());
    for name in source.list(&dir()).unwrap() {
        let path = dir().join(&name);
        let mut bytes = from.read_file(&path).unwrap();
        edit(&name, &mut bytes);
        let file = fs.create(&path).unwrap();
        file.append(&bytes).unwrap();
        file.sync_data().unwrap();
    }
    fs.sync_dir(&dir()).unwrap();
    (fault, fs)
}
