//! `db_bench`: the benchmark tool (see BENCHMARKS.md and `strata_bench::runner`).

fn main() -> std::process::ExitCode {
    strata_bench::db_bench_main(std::env::args_os().skip(1))
}
