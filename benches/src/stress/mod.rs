//! `db_stress`: every feature at once under random process kills, against an oracle
//! of what was acknowledged.
//!
//! The parent runs cycles. In each it starts itself again as a child
//! ([`child::run`]) on the same database directory; the child recovers the database
//! and runs the workload of [`workload`]: logged writer threads put, delete and
//! prefix-delete their own keys in three logged keyspaces (`Sync` leveled with
//! separated values, `Buffered` tiered with zstd and separated values, `Buffered` HCA
//! keeping history), singly and in batches across keyspaces, some with a `Sync`
//! override; bypass writer threads append numbered events to a WAL-bypass keyspace
//! and prefix-delete old ones; a chaos thread flushes, compacts, collects value logs,
//! takes checkpoints and checks snapshot and time-travel reads. In crash mode (the
//! default) the parent SIGKILLs the child after a random number of acknowledgements
//! or a few milliseconds after its start (inside recovery), then reopens the database
//! and checks it with the [`oracle`]; it also opens the newest checkpoint (it must
//! pass `verify` and hold well-formed data), feeds a replica from the change stream
//! and compares it with the database, and runs `verify` every few cycles. The first
//! violation stops the run (exit status 1) and keeps the directory.
//!
//! The trade-off: the oracle keeps per-thread state of bounded size instead of the
//! whole history, so a check costs the same in cycle 500 as in cycle 1; the price is
//! that each writer thread owns its keys (cross-thread overwrites are covered by the
//! engine's concurrency tests, not here).

pub mod child;
pub mod oracle;
pub mod workload;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::{Db, Error, Replica, StdFs};

use crate::rng::Rng;
use oracle::Oracle;
use workload::{db_options, value_is_valid, LOGGED};

/// The usage text.
pub const USAGE: &str = "\
db_stress: every Strata feature at once under SIGKILLs, checked against an oracle

usage: db_stress [--flag=value ...]
  --cycles=N           child runs (kills in crash mode) (default 50)
  --seed=N             workload seed (default: from the clock, printed)
  --crash=0|1          1: SIGKILL each child at a random moment; 0: let each child
                       finish its ops and close cleanly (default 1)
  --logged_threads=N   writer threads on the logged keyspaces (default 2)
  --bypass_threads=N   event writer threads on the bypass keyspace (default 1)
  --max_ops=N          operations per logged thread before a child stops on its own
                       (default 3000; a crash-mode child is killed long before)
  --kill_acks=N        a crash-mode kill lands after up to N acknowledgements (default 4000)
  --verify_every=N     run `verify` on the database every N cycles (default 10)
  --dir=PATH           directory to work in (default: a new temporary directory)
  --keep=0|1           keep the directory after a successful run (default 0)
  --lose_every=N       the checker's self-test: children acknowledge every Nth
                       operation without writing it; the run must fail
";

/// Flags of a run.
#[derive(Debug, Clone)]
pub struct StressFlags {
    /// Child runs.
    pub cycles: u64,
    /// Workload seed.
    pub seed: u64,
    /// Kill children (true) or let them finish.
    pub crash: bool,
    /// Logged writer threads.
    pub logged_threads: usize,
    /// Bypass writer threads.
    pub bypass_threads: usize,
    /// Operations per logged thread per child at most.
    pub max_ops: u64,
    /// Upper bound of acknowledgements before a kill.
    pub kill_acks: u64,
    /// `verify` every this many cycles (0: never).
    pub verify_every: u64,
    /// Working directory.
    pub dir: Option<PathBuf>,
    /// Keep the directory after success.
    pub keep: bool,
    /// The checker's self-test.
    pub lose_every: Option<u64>,
}

impl Default for StressFlags {
    fn default() -> Self {
        StressFlags {
            cycles: 50,
            seed: 0,
            crash: true,
            logged_threads: 2,
            bypass_threads: 1,
            max_ops: 3000,
            kill_acks: 4000,
            verify_every: 10,
            dir: None,
            keep: false,
            lose_every: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum StressCommand {
    /// A stress run.
    Run(StressFlags),
    /// Internal: be a child.
    Child(child::ChildConfig),
    /// Print the usage.
    Help,
}

fn parse_num(name: &str, value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("--{name}={value}: not a non-negative integer"))
}

fn parse_list(name: &str, value: &str) -> Result<Vec<u64>, String> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value.split(',').map(|v| parse_num(name, v)).collect()
}

/// Parses the command line (without the program name).
///
/// # Errors
/// A message naming the flag that is unknown or does not parse.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<StressCommand, String> {
    let mut flags = StressFlags {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        ..StressFlags::default()
    };
    let mut child: Option<child::ChildConfig> = None;
    for arg in args {
        let arg = arg.trim_start_matches('-').to_string();
        if arg == "help" || arg == "h" {
            return Ok(StressCommand::Help);
        }
        if arg == "child" {
            child = Some(child::ChildConfig {
                dir: PathBuf::new(),
                checkpoint_dir: PathBuf::new(),
                seed: 0,
                run_seed: 0,
                logged_next: Vec::new(),
                bypass_next: Vec::new(),
                max_ops: 0,
                lose_every: None,
            });
            continue;
        }
        let (name, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("--{arg}: flags are --name=value"))?;
        if let Some(c) = child.as_mut() {
            match name {
                "dir" => c.dir = value.into(),
                "checkpoint_dir" => c.checkpoint_dir = value.into(),
                "seed" => c.seed = parse_num(name, value)?,
                "run_seed" => c.run_seed = parse_num(name, value)?,
                "logged_next" => c.logged_next = parse_list(name, value)?,
                "bypass_next" => c.bypass_next = parse_list(name, value)?,
                "max_ops" => c.max_ops = parse_num(name, value)?,
                "lose_every" => c.lose_every = Some(parse_num(name, value)?.max(1)),
                _ => return Err(format!("--{name}: not a child flag")),
            }
            continue;
        }
        match name {
            "cycles" => flags.cycles = parse_num(name, value)?,
            "seed" => flags.seed = parse_num(name, value)?,
            "crash" => flags.crash = parse_num(name, value)? != 0,
            "logged_threads" => flags.logged_threads = parse_num(name, value)? as usize,
            "bypass_threads" => flags.bypass_threads = parse_num(name, value)? as usize,
            "max_ops" => flags.max_ops = parse_num(name, value)?.max(1),
            "kill_acks" => flags.kill_acks = parse_num(name, value)?.max(1),
            "verify_every" => flags.verify_every = parse_num(name, value)?,
            "dir" => flags.dir = Some(value.into()),
            "keep" => flags.keep = parse_num(name, value)? != 0,
            "lose_every" => flags.lose_every = Some(parse_num(name, value)?.max(1)),
            _ => return Err(format!("--{name}: unknown flag")),
        }
    }
    if let Some(c) = child {
        return Ok(StressCommand::Child(c));
    }
    if flags.logged_threads == 0 {
        return Err("--logged_threads: at least 1".into());
    }
    Ok(StressCommand::Run(flags))
}

/// How a cycle's child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Killed after this many acknowledgements.
    KilledAfterAcks(u64),
    /// Killed this many milliseconds after its start.
    KilledAfterMillis(u64),
    /// Finished its operations and closed the database.
    Clean,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct StressReport {
    /// Cycles completed (checked).
    pub cycles: u64,
    /// Of them, children killed.
    pub kills: u64,
    /// Kills that landed before the child finished recovering.
    pub kills_in_recovery: u64,
    /// The first violation, if any.
    pub violation: Option<String>,
    /// What the checks covered.
    pub coverage: oracle::Coverage,
    /// Wall time.
    pub elapsed: Duration,
    /// The working directory.
    pub dir: PathBuf,
}

/// Runs the stress test as `flags` say, printing a line per cycle.
///
/// # Errors
/// Setting up the directory or starting a child failed (not a violation: those are in
/// the report).
pub fn run(flags: &StressFlags) -> Result<StressReport, String> {
    let (root, temp) = match &flags.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("db_stress")
                .tempdir()
                .map_err(|e| format!("temporary directory: {e}"))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let paths = RunPaths {
        db: root.join("db"),
        checkpoints: root.join("checkpoints"),
        replica: root.join("replica"),
    };
    std::fs::create_dir_all(&paths.checkpoints).map_err(|e| format!("create checkpoints: {e}"))?;
    println!(
        "db_stress: seed {} crash {} cycles {} logged threads {} bypass threads {} dir {}",
        flags.seed,
        u8::from(flags.crash),
        flags.cycles,
        flags.logged_threads,
        flags.bypass_threads,
        root.display()
    );
    let started = Instant::now();
    let mut oracle = Oracle::new(flags.seed, flags.logged_threads, flags.bypass_threads);
    let mut report = StressReport {
        cycles: 0,
        kills: 0,
        kills_in_recovery: 0,
        violation: None,
        coverage: oracle.coverage,
        elapsed: Duration::ZERO,
        dir: root.clone(),
    };
    let mut rng = Rng::new(workload::mix(&[flags.seed, 7]));
    for cycle in 1..=flags.cycles {
        let result = run_cycle(flags, cycle, &mut rng, &mut oracle, &paths, &mut report);
        report.coverage = oracle.coverage;
        if let Err(violation) = result {
            report.violation = Some(format!("cycle {cycle}: {violation}"));
            break;
        }
        report.cycles = cycle;
    }
    report.elapsed = started.elapsed();
    if report.violation.is_some() || flags.keep {
        if let Some(t) = temp {
            let _ = t.keep();
        }
    }
    Ok(report)
}

/// The directories of a run.
struct RunPaths {
    db: PathBuf,
    checkpoints: PathBuf,
    replica: PathBuf,
}

fn run_cycle(
    flags: &StressFlags,
    cycle: u64,
    rng: &mut Rng,
    oracle: &mut Oracle,
    paths: &RunPaths,
    report: &mut StressReport,
) -> Result<(), String> {
    let db_dir = paths.db.as_path();
    let ops_before = oracle.coverage.logged_ops;
    let events_before = oracle.coverage.bypass_events;
    let (ending, opened_before_kill, stderr) = run_child(flags, cycle, rng, oracle, paths)?;
    if ending != Ending::Clean {
        report.kills += 1;
        if !opened_before_kill {
            report.kills_in_recovery += 1;
        }
    }
    let opened = Instant::now();
    let db = Db::open(db_dir, db_options())
        .map_err(|e| format!("reopen after {ending:?}: {e}\nchild stderr:\n{stderr}"))?;
    let open_ms = opened.elapsed().as_millis();
    let (logged, bypass) = child::open_keyspaces(&db).map_err(|e| format!("keyspaces: {e}"))?;
    oracle.check_recovered(&db, &logged, &bypass, ending == Ending::Clean)?;
    let checkpoint = check_checkpoint(oracle, flags)?;
    check_replica(&db, &logged, &paths.replica, &mut oracle.coverage)?;
    drop((logged, bypass));
    db.close().map_err(|e| format!("close: {e}"))?;
    drop(db);
    let verified = flags.verify_every > 0 && cycle.is_multiple_of(flags.verify_every);
    if verified {
        let fs: Arc<dyn strata::Fs> = Arc::new(StdFs::new());
        strata::verify::verify_directory(&fs, db_dir)
            .map_err(|e| format!("verify of the database: {e}"))?;
        oracle.coverage.verifies += 1;
    }
    println!(
        "cycle {cycle}: {}, +{} ops +{} events, reopened in {open_ms} ms, checkpoint {}, \
         replica at {}{}",
        match ending {
            Ending::Clean => "closed cleanly".to_string(),
            Ending::KilledAfterAcks(n) => format!("killed after {n} acks"),
            Ending::KilledAfterMillis(ms) => format!("killed {ms} ms after start"),
        },
        oracle.coverage.logged_ops - ops_before,
        oracle.coverage.bypass_events - events_before,
        if checkpoint { "checked" } else { "none" },
        oracle.coverage.replica_batches,
        if verified { ", verified" } else { "" },
    );
    Ok(())
}

/// Starts a child, feeds its lines to the oracle, kills it (crash mode), and returns
/// how it ended, whether it had finished opening the database, and its stderr.
fn run_child(
    flags: &StressFlags,
    cycle: u64,
    rng: &mut Rng,
    oracle: &mut Oracle,
    paths: &RunPaths,
) -> Result<(Ending, bool, String), String> {
    let (db_dir, checkpoint_dir) = (paths.db.as_path(), paths.checkpoints.as_path());
    let stderr_path = db_dir.with_extension("child-stderr");
    let stderr_file =
        std::fs::File::create(&stderr_path).map_err(|e| format!("child stderr file: {e}"))?;
    let join = |v: Vec<u64>| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut args = vec![
        "--child".to_string(),
        format!("--dir={}", db_dir.display()),
        format!("--checkpoint_dir={}", checkpoint_dir.display()),
        format!("--seed={}", flags.seed),
        format!("--run_seed={}", workload::mix(&[flags.seed, cycle])),
        format!("--logged_next={}", join(oracle.logged_next())),
        format!("--bypass_next={}", join(oracle.bypass_next())),
        format!("--max_ops={}", flags.max_ops),
    ];
    if let Some(k) = flags.lose_every {
        args.push(format!("--lose_every={k}"));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(stderr_file)
        .spawn()
        .map_err(|e| format!("start the child: {e}"))?;
    let plan = if !flags.crash {
        None
    } else if rng.below(8) == 0 {
        Some(Ending::KilledAfterMillis(rng.below(15)))
    } else {
        Some(Ending::KilledAfterAcks(1 + rng.below(flags.kill_acks)))
    };
    if let Some(Ending::KilledAfterMillis(ms)) = plan {
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
    }
    let stdout = child.stdout.take().ok_or("child stdout")?;
    let mut acks = 0;
    let mut killed = matches!(plan, Some(Ending::KilledAfterMillis(_)));
    // A line the child was writing when it died (or exited) may be cut short: a
    // protocol error counts only if more lines follow it.
    let mut protocol_error: Option<(u64, String)> = None;
    let mut lines_read = 0u64;
    let mut saw_done = false;
    let mut saw_open = false;
    // A check of the child's own that failed, even if a kill followed it.
    let mut child_failure: Option<String> = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        lines_read += 1;
        let Some(line) = line.strip_prefix("@@") else {
            continue;
        };
        saw_done |= line == "done";
        saw_open |= line == "open";
        if line.starts_with("fail") {
            child_failure.get_or_insert_with(|| line.to_string());
        }
        match oracle.record(line) {
            Ok(true) => acks += 1,
            Ok(false) => {}
            Err(e) => {
                protocol_error.get_or_insert((lines_read, e));
            }
        }
        if let Some(Ending::KilledAfterAcks(n)) = plan {
            if !killed && acks >= n {
                let _ = child.kill();
                killed = true;
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("wait for the child: {e}"))?;
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    if let Some((at, e)) = protocol_error {
        if at < lines_read || status.success() {
            return Err(format!("{e}\nchild stderr:\n{stderr}"));
        }
    }
    if let Some(failure) = child_failure {
        return Err(format!(
            "the child reported: {failure}\nchild stderr:\n{stderr}"
        ));
    }
    if killed {
        return Ok((plan.expect("killed by plan"), saw_open, stderr));
    }
    if !status.success() || !saw_done {
        return Err(format!(
            "the child failed on its own ({status}):\n{}",
            stderr
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok((Ending::Clean, saw_open, stderr))
}

/// Opens the newest checkpoint that returned: it must pass `verify`, every value in
/// it must be one written to its key, and every bypass thread's events a whole
/// prefix. Then removes every checkpoint. Returns whether there was one.
fn check_checkpoint(oracle: &mut Oracle, flags: &StressFlags) -> Result<bool, String> {
    let Some((path, _seqno)) = oracle.checkpoint.take() else {
        return Ok(false);
    };
    let parent = path.parent().map(Path::to_path_buf);
    let fs: Arc<dyn strata::Fs> = Arc::new(StdFs::new());
    strata::verify::verify_directory(&fs, &path)
        .map_err(|e| format!("verify of checkpoint {}: {e}", path.display()))?;
    {
        let copy = Db::builder(&path)
            .options(db_options())
            .create_if_missing(false)
            .open()
            .map_err(|e| format!("open checkpoint {}: {e}", path.display()))?;
        let (logged, bypass) =
            child::open_keyspaces(&copy).map_err(|e| format!("checkpoint keyspaces: {e}"))?;
        for (i, ks) in logged.iter().enumerate() {
            for entry in ks.iter() {
                let (k, v) = entry.map_err(|e| format!("checkpoint scan: {e}"))?;
                if !value_is_valid(&k, &v) {
                    return Err(format!(
                        "checkpoint {}: {}:{} holds a value never written to it",
                        path.display(),
                        LOGGED[i],
                        String::from_utf8_lossy(&k)
                    ));
                }
            }
        }
        for t in 0..flags.bypass_threads {
            oracle::check_event_prefix(&bypass, flags.seed, t as u64)
                .map_err(|e| format!("checkpoint {}: {e}", path.display()))?;
        }
        drop((logged, bypass));
        copy.close().map_err(|e| format!("close checkpoint: {e}"))?;
    }
    oracle.coverage.checkpoints += 1;
    if let Some(dir) = parent {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("list checkpoints: {e}"))? {
            let p = entry.map_err(|e| e.to_string())?.path();
            std::fs::remove_dir_all(&p).map_err(|e| format!("remove {}: {e}", p.display()))?;
        }
    }
    Ok(true)
}

/// Feeds the replica in `replica_dir` from the change stream (seeding it from a
/// checkpoint the first time and whenever the stream no longer reaches back to it) and
/// checks that every logged keyspace of it equals the database's.
fn check_replica(
    db: &Db,
    logged: &[strata::Keyspace],
    replica_dir: &Path,
    coverage: &mut oracle::Coverage,
) -> Result<(), String> {
    db.sync_wal().map_err(|e| format!("sync_wal: {e}"))?;
    let seed = |coverage: &mut oracle::Coverage| -> Result<(Db, Replica), String> {
        if replica_dir.exists() {
            std::fs::remove_dir_all(replica_dir).map_err(|e| format!("remove replica: {e}"))?;
        }
        let info = db
            .checkpoint(replica_dir)
            .map_err(|e| format!("checkpoint for the replica: {e}"))?;
        let rdb = Db::open(replica_dir, db_options()).map_err(|e| format!("open replica: {e}"))?;
        let replica = Replica::seed(&rdb, info.seqno).map_err(|e| format!("seed replica: {e}"))?;
        coverage.replica_reseeds += 1;
        Ok((rdb, replica))
    };
    let (rdb, mut replica) = if replica_dir.exists() {
        let rdb = Db::open(replica_dir, db_options()).map_err(|e| format!("open replica: {e}"))?;
        let replica = Replica::open(&rdb).map_err(|e| format!("resume replica: {e}"))?;
        (rdb, replica)
    } else {
        seed(coverage)?
    };
    let (rdb, replica) = match db.changes_since(replica.applied()) {
        Ok(stream) => {
            for batch in stream {
                let batch = batch.map_err(|e| format!("change stream: {e}"))?;
                replica
                    .apply(&batch)
                    .map_err(|e| format!("replica apply: {e}"))?;
                coverage.replica_batches += 1;
            }
            (rdb, replica)
        }
        Err(Error::HistoryUnavailable { .. }) => {
            drop(replica);
            rdb.close().map_err(|e| format!("close replica: {e}"))?;
            drop(rdb);
            seed(coverage)?
        }
        Err(e) => return Err(format!("changes_since({}): {e}", replica.applied().0)),
    };
    for (i, ks) in logged.iter().enumerate() {
        let rks = rdb
            .keyspace(LOGGED[i])
            .map_err(|e| format!("replica keyspace: {e}"))?;
        let primary: Vec<_> = ks
            .iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let copy: Vec<_> = rks
            .iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        if primary != copy {
            return Err(format!(
                "the replica's {} ({} entries) differs from the database's ({} entries) at \
                 position {}",
                LOGGED[i],
                copy.len(),
                primary.len(),
                replica.applied().0
            ));
        }
        coverage.keys_checked += primary.len() as u64;
    }
    drop(replica);
    rdb.close().map_err(|e| format!("close replica: {e}"))?;
    Ok(())
}

/// The `db_stress` binary: parses `args`, runs, prints the summary; exit status 0
/// when no violation was found, 1 on a violation, 2 on a usage or setup error.
pub fn main(args: impl IntoIterator<Item = String>) -> std::process::ExitCode {
    use std::process::ExitCode;
    match parse(args) {
        Ok(StressCommand::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(StressCommand::Child(config)) => child::run(config),
        Ok(StressCommand::Run(flags)) => match run(&flags) {
            Ok(report) => {
                let c = report.coverage;
                println!(
                    "db_stress: {} cycles ({} kills, {} inside recovery) in {:.1} s, {} violations; {} logged ops \
                     ({} in flight at a kill and kept), {} bypass events ({} lost after \
                     their last flush, as allowed), {} keys compared, {} time-travel reads \
                     ({} outside the window), {} checkpoints, {} change batches replicated \
                     ({} reseeds), {} verify runs",
                    report.cycles,
                    report.kills,
                    report.kills_in_recovery,
                    report.elapsed.as_secs_f64(),
                    u8::from(report.violation.is_some()),
                    c.logged_ops,
                    c.in_flight_applied,
                    c.bypass_events,
                    c.bypass_events_lost,
                    c.keys_checked,
                    c.time_travel_reads,
                    c.time_travel_outside,
                    c.checkpoints,
                    c.replica_batches,
                    c.replica_reseeds,
                    c.verifies,
                );
                match report.violation {
                    None => ExitCode::SUCCESS,
                    Some(v) => {
                        println!("VIOLATION {v}");
                        println!("db_stress: directory kept: {}", report.dir.display());
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("db_stress: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("db_stress: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
