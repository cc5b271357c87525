//! Entry points shared by the cargo-fuzz targets and their corpus replay in
//! `cargo test`. Not part of the stable API.

use std::path::Path;
use std::sync::Arc;

use crate::codec::Reader;
use crate::fs::{FaultFs, Fs};
use crate::ids::{SegmentId, SeqCounter, SeqNo};
use crate::log::{Wal, WalOptions, WalReader};
use crate::record::Salt;
use crate::segment::{segment_file_name, RecoveryMode, SegmentHeader};

/// Bit of the control byte that selects raw mode.
pub const RAW: u8 = 0x80;
/// Bytes of each segment's description in structured mode.
pub const SEGMENT_SPEC_LEN: usize = 12;

/// How [`wal_reader`] reads its input.
///
/// The first byte is a control byte: `(c & 0x7f) % 3 + 1` segments (ids 1 to 3).
///
/// - Structured mode (`c & RAW == 0`): for each segment, 12 bytes `first_seq_delta:
///   u32 | salt: u32 | body_len: u32` (little-endian; missing bytes read as zero),
///   then the bodies one after another (the last segment takes whatever is left). The
///   harness writes each segment's header itself (`first_seq = 1 + the deltas so
///   far`), so the fuzzer spends its effort on records, sync marks and damage across
///   several segments.
/// - Raw mode (`c & RAW != 0`): the rest is split evenly into whole files, headers
///   included, to fuzz header checks.
pub fn segments_from_input(data: &[u8]) -> Vec<Vec<u8>> {
    let Some((&control, rest)) = data.split_first() else {
        return vec![Vec::new()];
    };
    let count = usize::from(control & !RAW) % 3 + 1;
    if control & RAW != 0 {
        let chunk = rest.len().div_ceil(count).max(1);
        let mut files: Vec<Vec<u8>> = rest.chunks(chunk).map(<[u8]>::to_vec).collect();
        files.resize(count, Vec::new());
        return files;
    }
    let mut specs = Reader::new(rest.get(..SEGMENT_SPEC_LEN * count).unwrap_or(rest));
    let mut bodies = rest.get(SEGMENT_SPEC_LEN * count..).unwrap_or(&[]);
    let mut first_seq = 1u64;
    let mut files = Vec::with_capacity(count);
    for i in 0..count {
        first_seq = first_seq.saturating_add(u64::from(specs.u32_le().unwrap_or(0)));
        let salt = Salt(specs.u32_le().unwrap_or(0));
        let body_len = specs.u32_le().unwrap_or(0) as usize;
        let take = if i + 1 == count {
            bodies.len()
        } else {
            body_len.min(bodies.len())
        };
        let (body, more) = bodies.split_at(take);
        bodies = more;
        let header = SegmentHeader {
            id: SegmentId(i as u64 + 1),
            first_seq: SeqNo(first_seq.min(SeqNo::MAX_ASSIGNABLE.0 + 1)),
            salt,
        };
        let mut file = header.encode().to_vec();
        file.extend_from_slice(body);
        files.push(file);
    }
    files
}

/// Treats `data` as one to three WAL segments (see [`segments_from_input`]), recovers
/// them in strict and salvage mode and reads them with [`WalReader`]. Panics only if an
/// invariant breaks: a panic inside the reader, sequence numbers that do not go
/// forward, a recovery that is not idempotent (a second open must succeed and replay
/// the same records), or, after a strict recovery, a reader that does not yield
/// exactly the recovered records.
pub fn wal_reader(data: &[u8]) {
    let files = segments_from_input(data);
    for mode in [RecoveryMode::Strict, RecoveryMode::Salvage] {
        let fs = FaultFs::new(0);
        let dir = Path::new("/fuzz");
        if fs.create_dir_all(dir).is_err() {
            return;
        }
        for (i, bytes) in files.iter().enumerate() {
            let path = dir.join(segment_file_name(SegmentId(i as u64 + 1)));
            let Ok(file) = fs.create(&path) else { return };
            if file.append(bytes).is_err() || file.sync_data().is_err() {
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
        if mode == RecoveryMode::Strict {
            let read: Vec<_> = WalReader::open(Arc::clone(&fs), dir, SeqNo::ZERO, mode)
                .expect("a recovered log must be readable")
                .collect::<crate::Result<_>>()
                .expect("a recovered log must read without damage");
            assert_eq!(read, first, "the reader disagrees with recovery");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SEGMENT_HEADER_LEN;

    #[test]
    fn structured_input_gets_valid_headers() {
        let mut data = vec![2u8];
        for (delta, salt, len) in [(0u32, 7u32, 3u32), (10, 8, 2), (5, 9, 0)] {
            data.extend_from_slice(&delta.to_le_bytes());
            data.extend_from_slice(&salt.to_le_bytes());
            data.extend_from_slice(&len.to_le_bytes());
        }
        data.extend_from_slice(b"aaabbcccc");
        let files = segments_from_input(&data);
        assert_eq!(files.len(), 3);
        let firsts: Vec<_> = files
            .iter()
            .map(|f| SegmentHeader::decode(f, Path::new("x")).unwrap())
            .map(|h| (h.id.0, h.first_seq.0, h.salt.0))
            .collect();
        assert_eq!(firsts, vec![(1, 1, 7), (2, 11, 8), (3, 16, 9)]);
        let bodies: Vec<_> = files.iter().map(|f| &f[SEGMENT_HEADER_LEN..]).collect();
        assert_eq!(bodies, vec![&b"aaa"[..], b"bb", b"cccc"]);
        // Short input: missing fields read as zero, still valid headers.
        let files = segments_from_input(&[1, 5]);
        assert_eq!(files.len(), 2);
        assert!(files
            .iter()
            .all(|f| SegmentHeader::decode(f, Path::new("x")).is_ok()));
        // Raw mode: whole files from the input.
        assert_eq!(
            segments_from_input(&[RAW | 1, 1, 2, 3]),
            vec![vec![1, 2], vec![3]]
        );
    }
}
