//! `db_stress`: every feature at once under SIGKILLs, against an oracle of what was
//! acknowledged (see `strata_bench::stress`).

fn main() -> std::process::ExitCode {
    strata_bench::stress::main(std::env::args().skip(1))
}
