//! All file I/O goes through the [`Fs`] trait.
//!
//! The engine never touches `std::fs` directly: [`StdFs`] is the real implementation and
//! [`FaultFs`] an in-memory one for tests that can simulate power loss (dropping every
//! byte and directory change that was not made durable) and fail chosen calls. Crash and
//! error-injection tests stand on this seam, so it covers everything the engine does to
//! files: create, open, positional read, append, `sync_data`, truncate, rename, hard
//! link, remove, list, directory sync, read-only mapping and an exclusive lock file.
//!
//! Files are append-only from the writer's point of view (plus `truncate`, used to cut a
//! torn log tail); nothing is ever overwritten in place. That keeps the crash model of
//! [`FaultFs`] exact and cheap.

mod fault;
mod std_fs;

pub use fault::{CrashMode, FaultFs, FaultKind, FaultOp, FaultRule};
pub use std_fs::StdFs;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::error::Result;

/// A file system: the real one ([`StdFs`]) or a simulated one ([`FaultFs`]).
///
/// Paths are used as given; callers build them from a database directory. Every method
/// that fails returns [`crate::Error::Io`] naming the operation and the path.
pub trait Fs: Send + Sync + fmt::Debug + 'static {
    /// Creates `path` for writing, truncating it if it exists. The directory entry is not
    /// durable until [`Fs::sync_dir`] is called on the parent.
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn create(&self, path: &Path) -> Result<Arc<dyn FsFile>>;

    /// Opens an existing file for reading and appending at its end.
    ///
    /// # Errors
    /// `NotFound` if the file does not exist, or other I/O errors.
    fn open(&self, path: &Path) -> Result<Arc<dyn FsFile>>;

    /// Atomically replaces `to` with `from`. Durable only after [`Fs::sync_dir`].
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;

    /// Makes `to` a second name for the file `from` (for checkpoints). Durable only
    /// after [`Fs::sync_dir`] on `to`'s directory.
    ///
    /// # Errors
    /// I/O errors, including "not supported" where the platform has no hard links.
    fn hard_link(&self, from: &Path, to: &Path) -> Result<()>;

    /// Removes a file. Durable only after [`Fs::sync_dir`].
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn remove(&self, path: &Path) -> Result<()>;

    /// The names (not paths) of the files in `dir`, sorted.
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;

    /// Whether `path` exists.
    ///
    /// # Errors
    /// I/O errors other than "not found".
    fn exists(&self, path: &Path) -> Result<bool>;

    /// Creates `dir` and its parents if missing.
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn create_dir_all(&self, dir: &Path) -> Result<()>;

    /// Makes the directory's entries (creates, renames, removes) durable. A no-op on
    /// platforms that cannot sync a directory.
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn sync_dir(&self, dir: &Path) -> Result<()>;

    /// Takes an exclusive lock on `path` (creating the file), held until the returned
    /// guard is dropped. A second lock on the same path, from this or any other process,
    /// fails with [`crate::Error::Locked`].
    ///
    /// # Errors
    /// [`crate::Error::Locked`] if held elsewhere, or I/O errors.
    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>>;
}

/// An open file. All methods take `&self`: appends are serialized by the caller (one
/// writer per file), while reads and syncs may run concurrently with them.
///
/// At most one handle per file may append. [`StdFs`] keeps the append position in the
/// handle (the file's length when it was opened, plus its own appends and truncations),
/// so appends through two handles of one file overwrite each other's bytes.
pub trait FsFile: Send + Sync + fmt::Debug {
    /// The path this file was opened with.
    fn path(&self) -> &Path;

    /// The current length in bytes, including unsynced appends.
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn len(&self) -> Result<u64>;

    /// Whether the file is empty.
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fills `buf` from `offset`. Reading past the end is an `UnexpectedEof` I/O error.
    ///
    /// # Errors
    /// I/O errors from the platform, or `UnexpectedEof`.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Appends `data` at the end of the file as this handle knows it (see the trait
    /// documentation: one appending handle per file). Not durable until
    /// [`FsFile::sync_data`].
    ///
    /// # Errors
    /// I/O errors from the platform (a failed append may have written a prefix).
    fn append(&self, data: &[u8]) -> Result<()>;

    /// Makes every byte appended so far (and the file's length) durable.
    ///
    /// # Errors
    /// I/O errors from the platform. After a failure the state of unsynced bytes is
    /// unknown; callers must not retry and then acknowledge.
    fn sync_data(&self) -> Result<()>;

    /// Cuts the file to `len` bytes (never extends it). Durable after `sync_data`.
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn truncate(&self, len: u64) -> Result<()>;

    /// A read-only view of the whole file, memory-mapped where the file system allows
    /// it. Only valid for files that are no longer appended to.
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn map(&self) -> Result<FileMap>;

    /// Reads the whole file into memory.
    ///
    /// # Errors
    /// I/O errors from the platform.
    fn read_all(&self) -> Result<Vec<u8>> {
        let len = usize::try_from(self.len()?).map_err(|_| {
            crate::Error::InvalidArgument(format!(
                "{} is too large to read into memory",
                self.path().display()
            ))
        })?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(0, &mut buf)?;
        Ok(buf)
    }
}

/// A held exclusive lock; dropping it releases the lock.
pub trait FileLock: Send + Sync + fmt::Debug {}

/// A read-only view of an immutable file: a memory map or an owned copy.
#[derive(Debug)]
pub enum FileMap {
    /// A memory mapping made by [`StdFs`].
    Mapped(memmap2::Mmap),
    /// The file's bytes, owned (used by [`FaultFs`] and for empty files).
    Owned(Arc<[u8]>),
}

impl std::ops::Deref for FileMap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileMap::Mapped(m) => m,
            FileMap::Owned(b) => b,
        }
    }
}
