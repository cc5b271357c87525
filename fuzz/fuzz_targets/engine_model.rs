//! Fuzz target: random operations, clean reopens and power losses on `FaultFs`, the
//! engine checked against a `BTreeMap` model. The body lives in
//! `strata::fuzzing::engine_model` so that `cargo test` replays the seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata::fuzzing::engine_model(data);
});
