//! Fuzz target: keyspace options, WAL batch payloads and value pointers decode without
//! panics and round-trip. The body lives in `strata::fuzzing::record_decoders` so that
//! `cargo test` replays the seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata::fuzzing::record_decoders(data);
});
