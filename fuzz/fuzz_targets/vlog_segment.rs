//! Fuzz target: value-log segments scan and read back by pointer without panics. The
//! body lives in `strata_vlog::fuzzing::vlog_segment` so that `cargo test` replays the
//! seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_vlog::fuzzing::vlog_segment(data);
});
