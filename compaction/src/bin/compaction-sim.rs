//! `compaction-sim`: replays synthetic workloads against the compaction policies and
//! prints write amplification, runs consulted per point read and per scan, and space
//! amplification (see `strata_compaction::sim` for what is modelled).
//!
//! ```text
//! compaction-sim [--workload all|write-heavy|read-heavy|zipfian|time-ordered|agent-streams|agent-log]
//!                [--policy all|leveled|tiered|hca] [--keys N] [--writes N]
//!                [--flush-entries N] [--table-entries N] [--seed N] [--verbose]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use strata_compaction::sim::{SimConfig, SimReport, Simulator, Workload};

struct Args {
    workloads: Vec<String>,
    policies: Vec<String>,
    keys: u64,
    writes: u64,
    cfg: SimConfig,
    seed: u64,
    verbose: bool,
}

const USAGE: &str =
    "usage: compaction-sim [--workload all|write-heavy|read-heavy|zipfian|time-ordered|agent-streams|agent-log] \
[--policy all|leveled|tiered|hca] [--keys N (default 250000)] [--writes N (default 1000000)] \
[--flush-entries N (default 512)] [--table-entries N (default 1024)] [--seed N] [--verbose]";

fn parse() -> Result<Args, String> {
    let mut args = Args {
        workloads: vec![
            "write-heavy".into(),
            "read-heavy".into(),
            "zipfian".into(),
            "time-ordered".into(),
            "agent-streams".into(),
            "agent-log".into(),
        ],
        policies: vec!["leveled".into(), "tiered".into(), "hca".into()],
        keys: 250_000,
        writes: 1_000_000,
        cfg: SimConfig::default(),
        seed: 1,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        if name == "--verbose" {
            args.verbose = true;
            continue;
        }
        if name == "--help" || name == "-h" {
            return Err(USAGE.to_string());
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?,
        };
        let number = || {
            value
                .replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{name} {value}: {e}"))
        };
        match name.as_str() {
            "--workload" if value != "all" => args.workloads = vec![value.clone()],
            "--policy" if value != "all" => args.policies = vec![value.clone()],
            "--workload" | "--policy" => {}
            "--keys" => args.keys = number()?,
            "--writes" => args.writes = number()?,
            "--flush-entries" => args.cfg.flush_entries = number()?,
            "--table-entries" => args.cfg.table_entries = number()?,
            "--seed" => args.seed = number()?,
            _ => return Err(format!("unknown flag {name}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn workload(name: &str, keys: u64, writes: u64) -> Result<Workload, String> {
    Ok(match name {
        "write-heavy" => Workload::write_heavy_uniform(keys, writes),
        "read-heavy" => Workload::read_heavy_uniform(keys, writes),
        "zipfian" => Workload::zipfian(keys, writes),
        "time-ordered" => Workload::time_ordered(writes),
        "agent-streams" => Workload::agent_streams(1000, writes),
        "agent-log" => Workload::agent_log(1000, writes),
        other => return Err(format!("unknown workload {other}\n{USAGE}")),
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "keys {} writes {} entry {} B, memtable {} entries, tables {} entries, {} levels",
        args.keys,
        args.writes,
        args.cfg.entry_bytes,
        args.cfg.flush_entries,
        args.cfg.table_entries,
        args.cfg.num_levels
    );
    println!("{}", SimReport::header());
    for w in &args.workloads {
        let mut wl = match workload(w, args.keys, args.writes) {
            Ok(wl) => wl,
            Err(msg) => {
                eprintln!("{msg}");
                return ExitCode::FAILURE;
            }
        };
        wl.seed = args.seed;
        for p in &args.policies {
            let started = Instant::now();
            let report = args
                .cfg
                .policy(p)
                .and_then(|policy| Simulator::new(policy, args.cfg.clone()))
                .and_then(|mut sim| sim.run(&wl));
            match report {
                Ok(r) => {
                    println!("{r}");
                    if args.verbose {
                        let levels: Vec<String> = r
                            .final_levels
                            .iter()
                            .map(|(runs, bytes)| format!("{runs}r/{}K", bytes >> 10))
                            .collect();
                        let per_level: Vec<String> = r
                            .level_write_amp
                            .iter()
                            .map(|w| format!("{w:.2}"))
                            .collect();
                        println!(
                            "    {} | levels {} | written/level {} | merges {} dropped {} max-debt {} KiB | {:.1}s",
                            r.summary,
                            levels.join(" "),
                            per_level.join(" "),
                            r.merges,
                            r.dropped_tables,
                            r.max_debt_bytes >> 10,
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
                Err(e) => {
                    eprintln!("{w} / {p}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}
