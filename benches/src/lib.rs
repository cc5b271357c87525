//! `strata-bench`: benchmark harnesses for Strata.
//!
//! - The `db_bench` tool (`src/bin/db_bench.rs`), modelled on LevelDB's and RocksDB's
//!   tool of that name: `cargo run --release -p strata-bench --bin db_bench --
//!   --benchmarks=fillseq,readrandom --num=1000000`. BENCHMARKS.md is its
//!   specification. This library holds all of it, so tests can drive the pieces:
//!   [`flags`] parses the command line, [`workloads`] and [`recover`] run the
//!   benchmarks against a [`engine::BenchEngine`] chosen in [`engines`], [`report`]
//!   and [`histogram`] measure and print, [`keys`] and [`rng`] generate the data, and
//!   [`runner`] ties a run together.
//! - The `db_stress` tool (`src/bin/db_stress.rs`, [`stress`]): every feature at once
//!   under random SIGKILLs, checked against an oracle of what was acknowledged.
//! - Criterion micro-benchmarks live in `benches/benches/` (`cargo bench -p
//!   strata-bench`).

pub mod disk;
pub mod engine;
pub mod engines;
pub mod error;
pub mod flags;
pub mod histogram;
pub mod keys;
pub mod recover;
pub mod report;
pub mod rng;
pub mod runner;
pub mod stress;
pub mod workloads;

pub use error::Error;

use std::ffi::OsString;
use std::process::ExitCode;

/// The `db_bench` binary: parses `args` (without the program name), runs, and turns
/// the outcome into an exit status: 0 on success, 1 when a run fails, 2 on a usage
/// error (after printing the usage text).
pub fn db_bench_main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let flags = match flags::parse(args) {
        Ok(flags::Command::Help) => {
            print!("{}", flags::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(flags::Command::Run(flags)) => flags,
        Err(e) => {
            eprintln!("db_bench: {e}\n\n{}", flags::USAGE);
            return ExitCode::from(2);
        }
    };
    match runner::run(&flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_usage() => {
            eprintln!("db_bench: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("db_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
