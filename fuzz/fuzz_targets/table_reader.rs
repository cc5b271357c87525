//! Fuzz target: opening and reading a table file of arbitrary bytes must never
//! panic, must fail only with corruption, and must give the same answers through
//! positional reads, memory maps and the block cache. The body lives in
//! `strata::fuzzing::table_reader` so that `cargo test` replays the seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata::fuzzing::table_reader(data);
});
