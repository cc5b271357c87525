//! Fuzz target: the WAL reader and recovery on arbitrary bytes must never panic,
//! never loop, and recover idempotently. The body lives in
//! `strata_wal::fuzzing::wal_reader` so that `cargo test` replays the seed corpus; the
//! input layout is documented at `strata_wal::fuzzing::segments_from_input`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_wal::fuzzing::wal_reader(data);
});
