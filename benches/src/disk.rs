//! Bytes a database occupies on disk, measured alike for every engine.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Total space of the regular files under `dir`: per file the smaller of its length
/// and the blocks allocated to it, so a file pre-sized with holes (fjall's journal)
/// counts what it occupies (0 for what cannot be read: files may vanish while a peer
/// compacts).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len().min(m.blocks().saturating_mul(512)),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_bytes_sums_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 15);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
