//! Fuzz target: decoding and walking one table block on arbitrary bytes must never
//! panic or loop, seeks must land on the right side of their target, and clean
//! entries must rebuild into an identical block. The body lives in
//! `strata::fuzzing::block_decoder` so that `cargo test` replays the seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata::fuzzing::block_decoder(data);
});
