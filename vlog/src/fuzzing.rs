//! The body of the cargo-fuzz target `vlog_segment`, shared with the corpus replay in
//! `cargo test`. Not part of the stable API.
//!
//! Input: a control byte, then a segment's bytes. Control bit 0x80 set: the bytes are
//! the whole file (header fuzzed too); clear: a valid header for segment 1 is put in
//! front, so the fuzzer spends its effort on records. The low 7 bits choose the durable
//! length as a fraction (`c / 127`) of the file.
//!
//! Invariants: no panic; a scan is `Ok` or `Corruption`; every record the scan yields
//! reads back identically through its pointer; a pointer made of arbitrary bytes reads
//! as a record or fails with `Corruption`, never panics.

use std::path::Path;
use std::sync::Arc;

use strata_wal::{Error, FaultFs, Fs};

use crate::format::SegmentHeader;
use crate::pointer::{ValuePointer, POINTER_LEN};
use crate::segment::{read_value, scan_segment};

/// Control bit: the input holds the header itself.
pub const RAW: u8 = 0x80;

/// Runs the target on `data`.
pub fn vlog_segment(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut file_bytes = Vec::with_capacity(rest.len() + 32);
    if control & RAW == 0 {
        file_bytes.extend_from_slice(&SegmentHeader { id: 1, keyspace: 0 }.encode());
    }
    file_bytes.extend_from_slice(rest);
    let durable = (file_bytes.len() as u64) * u64::from(control & 0x7f) / 127;
    let path = Path::new("/v/000001.vlog");
    let fs = FaultFs::new(1);
    let fs: Arc<dyn Fs> = Arc::new(fs);
    let file = match fs
        .create_dir_all(Path::new("/v"))
        .and_then(|()| fs.create(path))
    {
        Ok(f) => f,
        Err(_) => return,
    };
    if file.append(&file_bytes).is_err() {
        return;
    }
    let mut seen = Vec::new();
    let scanned = scan_segment(&file_bytes, path, 1, durable, |ptr, record| {
        seen.push((ptr, record));
        Ok(())
    });
    match scanned {
        Ok(outcome) => {
            assert_eq!(outcome.records as usize, seen.len());
            if let Some(torn) = outcome.torn_tail {
                assert!(
                    torn >= durable,
                    "a torn tail at {torn} before the durable {durable}"
                );
            }
        }
        Err(Error::Corruption { .. }) => {}
        Err(e) => panic!("a scan failed with something other than corruption: {e}"),
    }
    for (ptr, record) in &seen {
        let again = read_value(file.as_ref(), ptr, Some(&record.key))
            .expect("a scanned record reads back through its pointer");
        assert_eq!(&again, record);
    }
    // Arbitrary pointers from the input's tail.
    for chunk in rest.rchunks_exact(POINTER_LEN).take(4) {
        if let Some(mut ptr) = ValuePointer::decode(chunk) {
            ptr.segment = 1;
            match read_value(file.as_ref(), &ptr, None) {
                Ok(_) | Err(Error::Corruption { .. }) => {}
                Err(e) => panic!("an arbitrary pointer failed with {e}"),
            }
        }
    }
}
