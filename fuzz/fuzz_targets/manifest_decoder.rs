//! Fuzz target: version edits, `CURRENT` and whole manifests decode without panics and
//! round-trip. The body lives in `strata::fuzzing::manifest_decoder` so that `cargo
//! test` replays the seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata::fuzzing::manifest_decoder(data);
});
