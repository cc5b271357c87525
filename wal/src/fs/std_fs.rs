//! [`StdFs`]: the real file system through `std`, portable to Unix and Windows.
//!
//! Positional reads and writes use the platform's `FileExt`; appends keep their own
//! position so that reads and syncs can run on the same handle at the same time. That
//! position belongs to the handle (set from the file's length by `open`, to 0 by
//! `create`), so only one handle per file may append: a second one would write over
//! the first one's bytes instead of after them.
//! Directory sync opens the directory and calls `sync_all` on Unix and is a no-op on
//! Windows, where directory entries are durable with the file's metadata.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{FileLock, FileMap, Fs, FsFile};
use crate::error::{Error, Result};

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

impl StdFs {
    /// A handle to the real file system.
    pub fn new() -> Self {
        StdFs
    }
}

#[derive(Debug)]
struct StdFile {
    path: PathBuf,
    file: File,
    /// Where the next append goes; the lock also serializes appends.
    append_pos: Mutex<u64>,
}

#[derive(Debug)]
struct StdLock {
    _file: File,
}

impl FileLock for StdLock {}

impl Fs for StdFs {
    fn create(&self, path: &Path) -> Result<Arc<dyn FsFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        Ok(Arc::new(StdFile {
            path: path.to_path_buf(),
            file,
            append_pos: Mutex::new(0),
        }))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn FsFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        Ok(Arc::new(StdFile {
            path: path.to_path_buf(),
            file,
            append_pos: Mutex::new(len),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
    }

    fn hard_link(&self, from: &Path, to: &Path) -> Result<()> {
        fs::hard_link(from, to).map_err(|e| Error::io("hard_link", from, e))
    }

    fn remove(&self, path: &Path) -> Result<()> {
        fs::remove_file(path).map_err(|e| Error::io("remove", path, e))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            let is_file = entry
                .file_type()
                .map_err(|e| Error::io("list", dir, e))?
                .is_file();
            if let (true, Some(name)) = (is_file, entry.file_name().to_str()) {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        match fs::metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("stat", path, e)),
        }
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::io("create_dir", dir, e))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        sync_directory(dir).map_err(|e| Error::io("sync_dir", dir, e))
    }

    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open lock file", path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
                path: path.to_path_buf(),
            }),
            Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
        }
    }
}

#[cfg(unix)]
fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(unix)]
fn write_at(file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(windows)]
fn write_at(file: &File, mut offset: u64, mut data: &[u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !data.is_empty() {
        match file.seek_write(data, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl FsFile for StdFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len())
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_at(&self.file, offset, buf).map_err(|e| Error::io("read", &self.path, e))
    }

    fn append(&self, data: &[u8]) -> Result<()> {
        let mut pos = self.append_pos.lock();
        // On failure the position is left alone: a torn prefix may be on disk, and the
        // caller poisons itself rather than appending after it.
        write_at(&self.file, *pos, data).map_err(|e| Error::io("write", &self.path, e))?;
        *pos += data.len() as u64;
        Ok(())
    }

    fn sync_data(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fsync", &self.path, e))
    }

    fn truncate(&self, len: u64) -> Result<()> {
        let mut pos = self.append_pos.lock();
        if len > *pos {
            return Err(Error::InvalidArgument(format!(
                "truncate of {} to {len} bytes would extend it",
                self.path.display()
            )));
        }
        self.file
            .set_len(len)
            .map_err(|e| Error::io("truncate", &self.path, e))?;
        *pos = len;
        Ok(())
    }

    #[allow(unsafe_code)]
    fn map(&self) -> Result<FileMap> {
        if self.len()? == 0 {
            // Mapping an empty file fails on some platforms.
            return Ok(FileMap::Owned(Arc::from(Vec::new())));
        }
        // SAFETY: the engine maps only immutable files (sorted tables, sealed segments)
        // that it never writes, truncates or removes while a map is alive; removal waits
        // until no reader holds the file. Another process modifying them is excluded
        // by the directory lock.
        let map = unsafe { memmap2::Mmap::map(&self.file) }
            .map_err(|e| Error::io("mmap", &self.path, e))?;
        Ok(FileMap::Mapped(map))
    }
}
