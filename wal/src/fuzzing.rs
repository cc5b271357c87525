//! Entry points shared by the cargo-fuzz targets and their corpus replay in
//! `cargo test`. Not part of the stable API.

use std::path::Path;
use std::sync::Arc;

use crate::fs::{FaultFs, Fs};
use crate::ids::{SeqCounter, SeqNo};
use crate::log::{Wal, WalOptions, WalReader};
use crate::segment::RecoveryMode;

/// Treats `data` as the contents of one to three WAL segments, recovers them in
/// strict and salvage mode and reads them with [`WalReader`]. Panics only if an
/// invariant breaks: a panic inside the reader, sequence numbers that do not go
/// forward, or a recovery that is not idempotent (a second open must succeed and
/// replay the same records).
pub fn wal_reader(data: &[u8]) {
    let (count, rest) = match data.split_first() {
        Some((first, rest)) => (usize::from(first % 3) + 1, rest),
        None => (1, data),
    };
    let chunk = rest.len().div_ceil(count).max(1);
    for mode in [RecoveryMode::Strict, RecoveryMode::Salvage] {
        let fs = FaultFs::new(0);
        let dir = Path::new("/fuzz");
        if fs.create_dir_all(dir).is_err() {
            return;
        }
        for (i, piece) in rest
            .chunks(chunk)
            .chain(std::iter::once(&[][..]))
            .take(count)
            .enumerate()
        {
            let path = dir.join(format!("{:06}.wal", i + 1));
            let Ok(file) = fs.create(&path) else { return };
            if file.append(piece).is_err() || file.sync_data().is_err() {
                return;
            }
        }
        if fs.sync_dir(dir).is_err() {
            return;
        }
        let fs: Arc<dyn Fs> = Arc::new(fs);
        if let Ok(reader) = WalReader::open(Arc::clone(&fs), dir, SeqNo::ZERO, mode) {
            let mut last = None;
            for record in reader {
                let Ok(record) = record else { break };
                assert!(
                    last.is_none_or(|l| record.seq > l),
                    "reader sequence went backwards"
                );
                last = Some(record.last_seq());
            }
        }
        let options = WalOptions {
            sync_interval: None,
            recovery_mode: mode,
            ..WalOptions::default()
        };
        let replay = |fs: &Arc<dyn Fs>| {
            let mut seen = Vec::new();
            let result = Wal::open(
                Arc::clone(fs),
                dir,
                options.clone(),
                Arc::new(SeqCounter::new(SeqNo(1))),
                SeqNo::ZERO,
                |record| {
                    seen.push(record);
                    Ok(())
                },
            );
            result.map(|(wal, _)| {
                drop(wal);
                seen
            })
        };
        let Ok(first) = replay(&fs) else { continue };
        for pair in first.windows(2) {
            assert!(
                pair[1].seq > pair[0].last_seq(),
                "recovery sequence went backwards"
            );
        }
        let second = replay(&fs).expect("a recovered log must reopen");
        assert_eq!(first, second, "recovery is not idempotent");
    }
}
