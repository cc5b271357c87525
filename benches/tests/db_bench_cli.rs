//! Runs the `db_bench` binary with the `memory` engine and checks its output line by
//! line with a small parser of the db_bench result format (no regex): every benchmark
//! printed once and in order, the operation counts, the `(F of N found)` messages, the
//! `Percentiles:` and `Stats:` lines, the exit status of usage errors, and what
//! happens to the database directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ALL_BUT_RECOVER: &str = "fillseq,fillrandom,overwrite,fillsync,fillbatch,readrandom,\
readmissing,readseq,readreverse,seekrandom,readwhilewriting,compact,waitforcompaction,agentlog,\
agentstate,embeddings,deleterandom";

fn db_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_db_bench"))
        .args(args)
        .output()
        .expect("run db_bench")
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("utf-8 stderr")
}

fn ok(args: &[&str]) -> (String, String) {
    let out = db_bench(args);
    let (stdout, stderr) = (stdout_of(&out), stderr_of(&out));
    assert!(
        out.status.success(),
        "db_bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// One result line: `name : X micros/op N ops/sec S seconds M operations; R MB/s msg`.
#[derive(Debug, Clone)]
struct ResultLine {
    name: String,
    micros_per_op: f64,
    ops_per_sec: u64,
    seconds: f64,
    ops: u64,
    mb_per_sec: Option<f64>,
    message: String,
    percentiles: Option<Vec<(String, f64)>>,
    stats: Option<HashMap<String, f64>>,
    /// The `scans=` counter of the memory engine's readable statistics.
    scans: Option<u64>,
}

fn parse_result_line(line: &str) -> Option<ResultLine> {
    let (name, rest) = line.split_once(" : ")?;
    let name = name.trim_end();
    if name.is_empty() || name.contains(' ') || name == "recover" {
        return None;
    }
    let mut t = rest.split_whitespace();
    let mut expect = |word: &str| -> Option<String> {
        let value = t.next()?.to_string();
        (t.next()? == word).then_some(value)
    };
    let micros_per_op = expect("micros/op")?.parse().ok()?;
    let ops_per_sec = expect("ops/sec")?.parse().ok()?;
    let seconds = expect("seconds")?.parse().ok()?;
    let ops = expect("operations;")?.parse().ok()?;
    let tail: Vec<&str> = t.collect();
    let (mb_per_sec, message) = if tail.len() >= 2 && tail[1] == "MB/s" {
        (Some(tail[0].parse().ok()?), tail[2..].join(" "))
    } else {
        (None, tail.join(" "))
    };
    // The fixed-width fields: name padded to 12, micros/op right-aligned in 11.
    let (left, _) = line.split_once(" : ")?;
    assert!(left.len() >= 12, "name not padded to 12: {line:?}");
    let after = &line[left.len() + 3..];
    let field = after.split(" micros/op").next()?;
    assert!(
        field.len() == 11 || !field.starts_with(' '),
        "micros/op not in width 11: {line:?}"
    );
    assert_eq!(
        field.trim().split('.').nth(1).map(str::len),
        Some(3),
        "{line:?}"
    );
    Some(ResultLine {
        name: name.to_string(),
        micros_per_op,
        ops_per_sec,
        seconds,
        ops,
        mb_per_sec,
        message,
        percentiles: None,
        stats: None,
        scans: None,
    })
}

fn parse_percentiles(line: &str) -> Option<Vec<(String, f64)>> {
    let rest = line.strip_prefix("Percentiles: ")?;
    let t: Vec<&str> = rest.split_whitespace().collect();
    if t.len() != 10 {
        return None;
    }
    t.chunks(2)
        .map(|pair| {
            let label = pair[0].strip_suffix(':')?.to_string();
            let value: f64 = pair[1].parse().ok()?;
            (pair[1].split('.').nth(1)?.len() == 2).then_some((label, value))
        })
        .collect()
}

fn parse_stats(line: &str) -> Option<HashMap<String, f64>> {
    let rest = line.strip_prefix("Stats: ")?;
    rest.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Parses all of stdout; panics on a line that fits nowhere.
fn parse_output(stdout: &str) -> Vec<ResultLine> {
    let mut results: Vec<ResultLine> = Vec::new();
    for line in stdout.lines() {
        if let Some(r) = parse_result_line(line) {
            results.push(r);
            continue;
        }
        let last = results
            .last_mut()
            .unwrap_or_else(|| panic!("output does not start with a result line: {line:?}"));
        if line.starts_with("Percentiles:") {
            assert!(
                last.percentiles.is_none(),
                "two Percentiles lines for {}",
                last.name
            );
            assert!(
                last.stats.is_none(),
                "Percentiles after Stats for {}",
                last.name
            );
            last.percentiles =
                Some(parse_percentiles(line).unwrap_or_else(|| panic!("bad {line:?}")));
        } else if line.starts_with("Stats:") {
            last.stats = Some(parse_stats(line).unwrap_or_else(|| panic!("bad {line:?}")));
        } else if let Some(at) = line.find("scans=") {
            let n = line[at + 6..].split_whitespace().next().unwrap();
            last.scans = Some(n.parse().unwrap());
        } else {
            assert!(
                last.stats.is_some(),
                "unexpected line after {}: {line:?}",
                last.name
            );
        }
    }
    results
}

fn by_name(results: &[ResultLine], name: &str) -> ResultLine {
    let found: Vec<_> = results.iter().filter(|r| r.name == name).collect();
    assert_eq!(found.len(), 1, "{name} printed {} times", found.len());
    found[0].clone()
}

/// The `Database:` path from the header on stderr.
fn database_path(stderr: &str) -> PathBuf {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Database:"))
        .expect("header names the database");
    let path = line.trim().split(" (").next().unwrap();
    PathBuf::from(path)
}

#[test]
fn every_benchmark_but_recover_prints_one_well_formed_line() {
    let args = [
        "--engine=memory",
        "--num=2000",
        "--histogram=1",
        &format!("--benchmarks={ALL_BUT_RECOVER}"),
    ];
    let (stdout, stderr) = ok(&args);
    let results = parse_output(&stdout);
    let mut expected_names: Vec<&str> = ALL_BUT_RECOVER.split(',').collect();
    let at = expected_names
        .iter()
        .position(|n| *n == "embeddings")
        .unwrap();
    expected_names.splice(at..=at, ["embeddings.fill", "embeddings.read"]);
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names, expected_names,
        "benchmarks missing, repeated or out of order"
    );

    let expected_ops = [
        ("fillseq", 2000),
        ("fillrandom", 2000),
        ("overwrite", 2000),
        ("fillsync", 20),
        ("fillbatch", 2000),
        ("readrandom", 2000),
        ("readmissing", 2000),
        ("readseq", 2000),
        ("readreverse", 2000),
        ("seekrandom", 2000),
        ("readwhilewriting", 2000),
        ("compact", 1),
        ("waitforcompaction", 1),
        ("agentlog", 2000),
        ("agentstate", 2000),
        ("embeddings.fill", 2000),
        ("embeddings.read", 2000),
        ("deleterandom", 2000),
    ];
    for (name, ops) in expected_ops {
        let r = by_name(&results, name);
        assert_eq!(r.ops, ops, "{name}");
        assert!(r.micros_per_op >= 0.0 && r.seconds >= 0.0, "{name}");
        // ops/sec × seconds gives back the operations, up to the rounding of seconds
        // to milliseconds and of ops/sec to an integer.
        let implied = r.ops_per_sec as f64 * r.seconds;
        let slack = r.ops_per_sec as f64 * 0.0005 + r.seconds + 1.0;
        assert!(
            (implied - ops as f64).abs() <= slack,
            "{name}: {} ops/sec over {} s is not {ops} operations",
            r.ops_per_sec,
            r.seconds
        );
        let p = r
            .percentiles
            .unwrap_or_else(|| panic!("{name}: no Percentiles line"));
        let labels: Vec<&str> = p.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["P50", "P75", "P99", "P99.9", "P99.99"]);
        assert!(p.windows(2).all(|w| w[0].1 <= w[1].1), "{name}: {p:?}");
        let stats = r.stats.unwrap_or_else(|| panic!("{name}: no Stats line"));
        for key in [
            "write_amp",
            "space_amp",
            "stall_micros",
            "l0_files",
            "cache_hit_rate",
            "vlog_garbage_ratio",
        ] {
            assert!(stats.contains_key(key), "{name}: Stats lacks {key}");
        }
        let moves_bytes = !matches!(
            name,
            "compact" | "waitforcompaction" | "deleterandom" | "readmissing"
        );
        assert_eq!(r.mb_per_sec.is_some(), moves_bytes, "{name}: MB/s");
    }

    assert_eq!(
        by_name(&results, "readrandom").message,
        "(2000 of 2000 found)"
    );
    assert_eq!(
        by_name(&results, "readmissing").message,
        "(0 of 2000 found)"
    );
    assert_eq!(
        by_name(&results, "seekrandom").message,
        "(2000 of 2000 found)"
    );
    assert_eq!(
        by_name(&results, "embeddings.read").message,
        "(2000 of 2000 found)"
    );
    assert!(by_name(&results, "readwhilewriting")
        .message
        .starts_with("(2000 of 2000 found) (writer: "));
    let state = by_name(&results, "agentstate").message;
    assert!(
        state.starts_with("(reads:") && state.contains("writes:"),
        "{state}"
    );
    // Bytes: fillseq moves 2000 × (16 + 100) bytes; embeddings 2000 × (4 + 16 + 4096).
    let fill = by_name(&results, "fillseq");
    let mb = 2000.0 * 116.0 / 1_048_576.0 / fill.seconds.max(0.0005);
    assert!(fill.mb_per_sec.unwrap() <= mb * 1.2 + 0.1);

    // readseq and readreverse each read the whole range with one iterator.
    let scans = |name: &str| by_name(&results, name).scans.expect("memory stats text");
    assert_eq!(scans("readseq") - scans("readmissing"), 1);
    assert_eq!(scans("readreverse") - scans("readseq"), 1);
    assert_eq!(scans("seekrandom") - scans("readreverse"), 2000);

    // The temporary database is gone.
    let db = database_path(&stderr);
    assert!(stderr.contains("(temporary, removed at exit)"));
    assert!(!db.exists(), "{} was not removed", db.display());
    assert!(!db.parent().unwrap().exists());
}

#[test]
fn threads_split_the_operations() {
    let (stdout, _) = ok(&[
        "--engine=memory",
        "--num=3000",
        "--reads=1500",
        "--threads=3",
        "--agents=10",
        "--benchmarks=fillseq,fillbatch,readrandom,readseq,readreverse,readwhilewriting,agentlog,agentstate",
    ]);
    let results = parse_output(&stdout);
    for (name, ops) in [
        ("fillseq", 3000),
        ("fillbatch", 3000),
        ("readrandom", 1500),
        ("readseq", 1500),
        ("readreverse", 1500),
        ("readwhilewriting", 1500),
        ("agentlog", 3000),
        ("agentstate", 3000),
    ] {
        assert_eq!(by_name(&results, name).ops, ops, "{name}");
    }
    assert_eq!(
        by_name(&results, "readrandom").message,
        "(1500 of 1500 found)"
    );
    let scans = |name: &str| by_name(&results, name).scans.unwrap();
    assert_eq!(
        scans("readseq") - scans("readrandom"),
        3,
        "one iterator per thread"
    );
    assert_eq!(
        scans("readreverse") - scans("readseq"),
        3,
        "one iterator per thread"
    );
}

#[test]
fn default_benchmarks_without_histogram_or_stats() {
    let (stdout, _) = ok(&["--engine=memory", "--num=1000", "--stats=0"]);
    let names: Vec<String> = stdout
        .lines()
        .map(|l| {
            parse_result_line(l)
                .unwrap_or_else(|| panic!("stdout holds a non-result line: {l:?}"))
                .name
        })
        .collect();
    assert_eq!(
        names,
        [
            "fillseq",
            "fillrandom",
            "overwrite",
            "readrandom",
            "readseq",
            "readreverse",
            "seekrandom"
        ]
    );
}

#[test]
fn help_and_usage_errors() {
    let out = db_bench(&["--help"]);
    assert!(out.status.success());
    let text = stdout_of(&out);
    for flag in [
        "--benchmarks",
        "--num",
        "--reads",
        "--key_size",
        "--value_size",
        "--threads",
        "--db",
        "--use_existing_db",
        "--sync",
        "--disable_wal",
        "--compression",
        "--compaction_style",
        "--value_threshold",
        "--histogram",
        "--stats",
        "--seed",
        "--agents",
        "--engine",
    ] {
        assert!(text.contains(flag), "usage lacks {flag}");
    }
    for (args, needle) in [
        (&["--no_such_flag=1"][..], "unknown flag --no_such_flag"),
        (
            &["--benchmarks=fillseq,nosuch"][..],
            "unknown benchmark 'nosuch'",
        ),
        (&["--num=ten"][..], "--num=ten"),
        (&["--engine=rocksdb"][..], "cargo feature `peers`"),
        (
            &["--engine=sled", "--benchmarks=fillseq"][..],
            "cargo feature `peers`",
        ),
        (&["--engine=nosuch"][..], "unknown engine"),
    ] {
        let out = db_bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr_of(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(stdout_of(&out).is_empty(), "{args:?} printed results");
    }
    // Flag errors also print the usage.
    assert!(stderr_of(&db_bench(&["--bogus=1"])).contains("Usage: db_bench"));
}

fn run_in(db: &Path, extra: &[&str]) -> Output {
    let db_flag = format!("--db={}", db.display());
    let mut args = vec![
        "--engine=memory",
        "--num=2000",
        "--stats=0",
        db_flag.as_str(),
    ];
    args.extend_from_slice(extra);
    db_bench(&args)
}

#[test]
fn db_flag_keeps_reuses_and_protects_directories() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("bench-db");
    let out = run_in(&db, &["--benchmarks=fillseq"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(db.is_dir(), "--db directories are kept");

    let out = run_in(&db, &["--benchmarks=readrandom", "--use_existing_db=1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let r = parse_result_line(stdout_of(&out).lines().next().unwrap()).unwrap();
    assert_eq!(
        r.message, "(2000 of 2000 found)",
        "the existing data was not used"
    );

    // Without --use_existing_db, db_bench's own directory starts empty.
    let out = run_in(&db, &["--benchmarks=readrandom"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let r = parse_result_line(stdout_of(&out).lines().next().unwrap()).unwrap();
    assert_eq!(r.message, "(0 of 2000 found)");

    // A directory db_bench did not create is refused, not wiped.
    let foreign = root.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("precious.txt"), b"keep me").unwrap();
    let out = run_in(&foreign, &["--benchmarks=fillseq"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("not created by db_bench"));
    assert!(foreign.join("precious.txt").exists());

    // --use_existing_db on a missing directory is an error.
    let out = run_in(&root.path().join("missing"), &["--use_existing_db=1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unsupported_engine_options_are_warned_about() {
    let (_, stderr) = ok(&[
        "--engine=memory",
        "--num=100",
        "--benchmarks=fillseq",
        "--compression=zstd",
        "--compaction_style=leveled",
        "--value_threshold=4096",
    ]);
    for flag in [
        "--compression=zstd",
        "--compaction_style=leveled",
        "--value_threshold=4096",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(flag) && l.contains("not supported")),
            "no warning for {flag}: {stderr}"
        );
    }
}
