//! Command-line flags of `db_bench`, spelled as in RocksDB's tool (BENCHMARKS.md).
//!
//! Hand-rolled: flags are `--name=value` (a single leading `-` works too, as with
//! gflags); a boolean flag alone (`--histogram`) means `1`; the last occurrence of a
//! flag wins. Anything else (an unknown flag, a positional argument, a value that does
//! not parse, a combination that makes no sense) is a usage error, reported before
//! anything runs so a long run never fails on its last benchmark's name.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::engine::{CompactionStyle, Compression, Durability};
use crate::error::Error;
use crate::keys::decimal_digits;

/// A benchmark `--benchmarks` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Benchmark {
    /// Writes `--num` keys in ascending order.
    FillSeq,
    /// Writes `--num` keys in random order (with repeats, as db_bench).
    FillRandom,
    /// Same as `fillrandom`, meant to run on a filled database.
    Overwrite,
    /// `--num / 100` random writes, each with `Sync` durability.
    FillSync,
    /// Writes `--num` keys in ascending order, in batches of 1000.
    FillBatch,
    /// `--reads` point reads of random keys.
    ReadRandom,
    /// `--reads` point reads of keys that are never written.
    ReadMissing,
    /// Reads `--reads` entries in key order with one iterator per thread.
    ReadSeq,
    /// Reads `--reads` entries in reverse key order with one iterator per thread.
    ReadReverse,
    /// `--reads` seeks to random keys, reading the entry found.
    SeekRandom,
    /// Deletes `--num` random keys.
    DeleteRandom,
    /// `--threads` threads do `--reads` random reads while one more thread overwrites.
    ReadWhileWriting,
    /// A full manual compaction.
    Compact,
    /// Waits for background flushes and compactions to finish, asking for none: the
    /// statistics after it are those of a settled tree.
    WaitForCompaction,
    /// Append-only, time-ordered event streams of `--agents` agents.
    AgentLog,
    /// Per-agent state records, 50% overwrites and 50% reads, zipfian over agents.
    AgentState,
    /// Large values (4096 bytes unless `--value_size` is given): fill, then random reads.
    Embeddings,
    /// A child process writes and is killed; the parent times the reopen and checks
    /// every acknowledged write.
    Recover,
}

impl Benchmark {
    /// Every benchmark, in the order the usage text lists them.
    pub const ALL: [Benchmark; 18] = [
        Benchmark::FillSeq,
        Benchmark::FillRandom,
        Benchmark::Overwrite,
        Benchmark::FillSync,
        Benchmark::FillBatch,
        Benchmark::ReadRandom,
        Benchmark::ReadMissing,
        Benchmark::ReadSeq,
        Benchmark::ReadReverse,
        Benchmark::SeekRandom,
        Benchmark::DeleteRandom,
        Benchmark::ReadWhileWriting,
        Benchmark::Compact,
        Benchmark::WaitForCompaction,
        Benchmark::AgentLog,
        Benchmark::AgentState,
        Benchmark::Embeddings,
        Benchmark::Recover,
    ];

    /// The name used on the command line and at the start of the result line.
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::FillSeq => "fillseq",
            Benchmark::FillRandom => "fillrandom",
            Benchmark::Overwrite => "overwrite",
            Benchmark::FillSync => "fillsync",
            Benchmark::FillBatch => "fillbatch",
            Benchmark::ReadRandom => "readrandom",
            Benchmark::ReadMissing => "readmissing",
            Benchmark::ReadSeq => "readseq",
            Benchmark::ReadReverse => "readreverse",
            Benchmark::SeekRandom => "seekrandom",
            Benchmark::DeleteRandom => "deleterandom",
            Benchmark::ReadWhileWriting => "readwhilewriting",
            Benchmark::Compact => "compact",
            Benchmark::WaitForCompaction => "waitforcompaction",
            Benchmark::AgentLog => "agentlog",
            Benchmark::AgentState => "agentstate",
            Benchmark::Embeddings => "embeddings",
            Benchmark::Recover => "recover",
        }
    }
}

impl FromStr for Benchmark {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Benchmark::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown benchmark '{s}'"))
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The default `--benchmarks` list.
pub const DEFAULT_BENCHMARKS: &str =
    "fillseq,fillrandom,overwrite,readrandom,readseq,readreverse,seekrandom";
/// The default `--seed`.
pub const DEFAULT_SEED: u64 = 301;
/// Value size of `embeddings` when `--value_size` is not given.
pub const EMBEDDINGS_VALUE_SIZE: usize = 4096;
/// Largest accepted `--key_size`.
pub const MAX_KEY_SIZE: usize = 1 << 16;
/// Largest accepted `--value_size` (the value pool holds four of them).
pub const MAX_VALUE_SIZE: usize = 64 << 20;
/// Largest accepted `--threads`.
pub const MAX_THREADS: usize = 1024;

/// The parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Flags {
    /// `--benchmarks`: what to run, in order, on one database.
    pub benchmarks: Vec<Benchmark>,
    /// `--num` (default 1000000): operations and key space per benchmark.
    pub num: u64,
    /// `--reads` (default: `--num`): operations of the read benchmarks.
    pub reads: Option<u64>,
    /// `--key_size` (default 16).
    pub key_size: usize,
    /// `--value_size` (default 100).
    pub value_size: usize,
    /// Whether `--value_size` was given (`embeddings` then uses it instead of 4096).
    pub value_size_given: bool,
    /// `--compression_ratio` (default 0.5): how far generated values compress.
    pub compression_ratio: f64,
    /// `--threads` (default 1): client threads.
    pub threads: usize,
    /// `--db` (default: a fresh temporary directory, removed at the end).
    pub db: Option<PathBuf>,
    /// `--use_existing_db` (default 0): keep and use what `--db` holds.
    pub use_existing_db: bool,
    /// `--sync` (default 0): `Sync` durability for every write.
    pub sync: bool,
    /// `--disable_wal` (default 0): `Bypass` durability for every write.
    pub disable_wal: bool,
    /// `--sync_writer` (default 0): one more thread puts `Sync` writes into a second
    /// keyspace while each benchmark runs (not counted in its figures).
    pub sync_writer: bool,
    /// `--compression` (default none).
    pub compression: Compression,
    /// `--compaction_style` (default hca).
    pub compaction_style: CompactionStyle,
    /// `--value_threshold` (default: the engine's).
    pub value_threshold: Option<usize>,
    /// `--cache_size` in bytes (default 64 MiB).
    pub cache_size: usize,
    /// `--histogram` (default 0): print latency percentiles.
    pub histogram: bool,
    /// `--stats` (default 1): print engine statistics after each benchmark.
    pub stats: bool,
    /// `--seed` (default 301).
    pub seed: u64,
    /// `--agents` (default 1000): agent streams of the agent workloads.
    pub agents: u64,
    /// `--engine` (default strata).
    pub engine: String,
    /// Hidden `--recover_child=PATH`: run as the writer child of `recover`.
    pub recover_child: Option<PathBuf>,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            benchmarks: parse_benchmarks(DEFAULT_BENCHMARKS).unwrap_or_default(),
            num: 1_000_000,
            reads: None,
            key_size: 16,
            value_size: 100,
            value_size_given: false,
            compression_ratio: 0.5,
            threads: 1,
            db: None,
            use_existing_db: false,
            sync: false,
            disable_wal: false,
            sync_writer: false,
            compression: Compression::None,
            compaction_style: CompactionStyle::Hca,
            value_threshold: None,
            cache_size: 64 << 20,
            histogram: false,
            stats: true,
            seed: DEFAULT_SEED,
            agents: 1000,
            engine: "strata".to_string(),
            recover_child: None,
        }
    }
}

impl Flags {
    /// Operations of the read benchmarks: `--reads`, or `--num` when not given.
    pub fn reads(&self) -> u64 {
        self.reads.unwrap_or(self.num)
    }

    /// The durability of ordinary writes: `Sync` with `--sync=1`, `Bypass` with
    /// `--disable_wal=1`, else `Buffered`.
    pub fn durability(&self) -> Durability {
        if self.sync {
            Durability::Sync
        } else if self.disable_wal {
            Durability::Bypass
        } else {
            Durability::Buffered
        }
    }

    /// The value size of `embeddings`: `--value_size` if given, else 4096.
    pub fn embeddings_value_size(&self) -> usize {
        if self.value_size_given {
            self.value_size
        } else {
            EMBEDDINGS_VALUE_SIZE
        }
    }

    /// The largest value any selected benchmark writes.
    pub fn max_value_size(&self) -> usize {
        if self.benchmarks.contains(&Benchmark::Embeddings) {
            self.value_size.max(self.embeddings_value_size())
        } else {
            self.value_size
        }
    }

    /// The flags that make a `recover` child write the same data as this run, with the
    /// same engine options, into `path`.
    pub fn recover_child_args(&self, path: &std::path::Path) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut recover = std::ffi::OsString::from("--recover_child=");
        recover.push(path.as_os_str());
        args.push(recover);
        let mut push = |s: String| args.push(s.into());
        push(format!("--engine={}", self.engine));
        push(format!("--num={}", self.num));
        push(format!("--key_size={}", self.key_size));
        push(format!("--value_size={}", self.value_size));
        push(format!("--compression_ratio={}", self.compression_ratio));
        push(format!("--sync={}", u8::from(self.sync)));
        push(format!("--disable_wal={}", u8::from(self.disable_wal)));
        if self.sync_writer {
            push("--sync_writer=1".to_string());
        }
        push(format!("--compression={}", self.compression.name()));
        push(format!(
            "--compaction_style={}",
            self.compaction_style.name()
        ));
        if let Some(t) = self.value_threshold {
            push(format!("--value_threshold={t}"));
        }
        push(format!("--cache_size={}", self.cache_size));
        push(format!("--seed={}", self.seed));
        push("--benchmarks=".to_string());
        args
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Run with these flags.
    Run(Box<Flags>),
    /// Print the usage text and exit successfully.
    Help,
}

/// The usage text printed by `--help` and after a usage error.
pub const USAGE: &str = "\
Usage: db_bench [--flag=value ...]

  --benchmarks=a,b,...     run in order on one database
                           [fillseq,fillrandom,overwrite,readrandom,readseq,readreverse,seekrandom]
  --num=N                  operations (and key space) per benchmark [1000000]
  --reads=N                operations for read benchmarks [--num]
  --key_size=N             key bytes; keys are zero-padded decimal [16]
  --value_size=N           value bytes [100; embeddings: 4096 unless given]
  --compression_ratio=F    how far generated values compress, in (0, 1] [0.5]
  --threads=N              concurrent client threads [1]
  --db=PATH                database directory [a fresh temporary directory]
  --use_existing_db=0/1    keep what --db holds [0]
  --sync=0/1               Sync durability for every write [0]
  --disable_wal=0/1        Bypass durability (WAL bypass) for every write [0]
  --sync_writer=0/1        one more thread writes Sync to a second keyspace meanwhile [0]
  --compression=none/zstd  table block compression [none]
  --compaction_style=leveled/tiered/hca   compaction policy [hca]
  --value_threshold=N      values of N bytes or more go to the value log [engine default]
  --cache_size=BYTES       block cache size [67108864]
  --histogram=0/1          print latency percentiles (microseconds) [0]
  --stats=0/1              print engine statistics after each benchmark [1]
  --seed=N                 random seed, for repeatable runs [301]
  --agents=N               agent streams for the agent workloads [1000]
  --engine=NAME            strata or memory; rocksdb, fjall, sled, sqlite need the
                           cargo feature `peers` [strata]
  --help                   print this text

Benchmarks: fillseq fillrandom overwrite fillsync fillbatch readrandom readmissing
  readseq readreverse seekrandom deleterandom readwhilewriting compact
  waitforcompaction agentlog agentstate embeddings recover
";

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

fn parse_benchmarks(list: &str) -> Result<Vec<Benchmark>, Error> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Benchmark>()
                .map_err(|e| usage(format!("--benchmarks: {e}")))
        })
        .collect()
}

fn parse_num<T: FromStr>(name: &str, value: &str) -> Result<T, Error> {
    value
        .parse::<T>()
        .map_err(|_| usage(format!("--{name}={value}: expected a non-negative integer")))
}

fn parse_bool(name: &str, value: &str) -> Result<bool, Error> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(usage(format!("--{name}={value}: expected 0 or 1"))),
    }
}

const BOOL_FLAGS: [&str; 7] = [
    "use_existing_db",
    "sync",
    "disable_wal",
    "sync_writer",
    "histogram",
    "stats",
    "help",
];

/// Parses the arguments after the program name.
///
/// # Errors
/// [`Error::Usage`] naming the offending flag.
pub fn parse<I, S>(args: I) -> Result<Command, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut flags = Flags::default();
    for arg in args {
        let arg = arg.as_ref();
        let Some(text) = arg.to_str() else {
            // Paths given to --db must be UTF-8 too; nothing here needs more.
            let lossy = arg.to_string_lossy();
            return Err(usage(format!("argument '{lossy}' is not valid UTF-8")));
        };
        let Some(body) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            return Err(usage(format!(
                "unexpected argument '{text}' (flags look like --name=value)"
            )));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, v),
            None if BOOL_FLAGS.contains(&body) => (body, "1"),
            None if body == "h" => return Ok(Command::Help),
            None => return Err(usage(format!("--{body} needs a value (--{body}=...)"))),
        };
        match name {
            "help" | "h" => {
                if parse_bool(name, value)? {
                    return Ok(Command::Help);
                }
            }
            "benchmarks" => flags.benchmarks = parse_benchmarks(value)?,
            "num" => flags.num = parse_num(name, value)?,
            "reads" => flags.reads = Some(parse_num(name, value)?),
            "key_size" => flags.key_size = parse_num(name, value)?,
            "value_size" => {
                flags.value_size = parse_num(name, value)?;
                flags.value_size_given = true;
            }
            "compression_ratio" => {
                flags.compression_ratio = value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| *r > 0.0 && *r <= 1.0)
                    .ok_or_else(|| {
                        usage(format!(
                            "--compression_ratio={value}: expected a number in (0, 1]"
                        ))
                    })?;
            }
            "threads" => flags.threads = parse_num(name, value)?,
            "db" => {
                if value.is_empty() {
                    return Err(usage("--db= needs a path"));
                }
                flags.db = Some(PathBuf::from(value));
            }
            "use_existing_db" => flags.use_existing_db = parse_bool(name, value)?,
            "sync" => flags.sync = parse_bool(name, value)?,
            "disable_wal" => flags.disable_wal = parse_bool(name, value)?,
            "sync_writer" => flags.sync_writer = parse_bool(name, value)?,
            "compression" => {
                flags.compression = value
                    .parse()
                    .map_err(|e| usage(format!("--compression: {e}")))?;
            }
            "compaction_style" => {
                flags.compaction_style = value
                    .parse()
                    .map_err(|e| usage(format!("--compaction_style: {e}")))?;
            }
            "value_threshold" => flags.value_threshold = Some(parse_num(name, value)?),
            "cache_size" => flags.cache_size = parse_num(name, value)?,
            "histogram" => flags.histogram = parse_bool(name, value)?,
            "stats" => flags.stats = parse_bool(name, value)?,
            "seed" => flags.seed = parse_num(name, value)?,
            "agents" => flags.agents = parse_num(name, value)?,
            "engine" => {
                if value.is_empty() {
                    return Err(usage("--engine= needs a name"));
                }
                flags.engine = value.to_string();
            }
            "recover_child" => {
                if value.is_empty() {
                    return Err(usage("--recover_child= needs a path"));
                }
                flags.recover_child = Some(PathBuf::from(value));
            }
            _ => return Err(usage(format!("unknown flag --{name}"))),
        }
    }
    validate(&flags)?;
    Ok(Command::Run(Box::new(flags)))
}

fn validate(f: &Flags) -> Result<(), Error> {
    if f.num == 0 {
        return Err(usage("--num must be at least 1"));
    }
    let digits = decimal_digits(f.num - 1);
    if f.key_size < digits {
        return Err(usage(format!(
            "--key_size={} is too small: keys are zero-padded decimal and --num={} needs {} digits",
            f.key_size, f.num, digits
        )));
    }
    if f.key_size > MAX_KEY_SIZE {
        return Err(usage(format!("--key_size must be at most {MAX_KEY_SIZE}")));
    }
    if f.value_size > MAX_VALUE_SIZE {
        return Err(usage(format!(
            "--value_size must be at most {MAX_VALUE_SIZE}"
        )));
    }
    if f.threads == 0 || f.threads > MAX_THREADS {
        return Err(usage(format!(
            "--threads must be between 1 and {MAX_THREADS}"
        )));
    }
    if f.agents == 0 {
        return Err(usage("--agents must be at least 1"));
    }
    if f.sync && f.disable_wal {
        return Err(usage(
            "--sync=1 and --disable_wal=1 contradict each other: a Sync write needs the WAL",
        ));
    }
    if f.use_existing_db && f.db.is_none() {
        return Err(usage("--use_existing_db=1 needs --db=PATH"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Flags, Error> {
        match parse(args)? {
            Command::Run(f) => Ok(*f),
            Command::Help => panic!("unexpected help"),
        }
    }

    fn err(args: &[&str]) -> String {
        match parse(args) {
            Err(e) => {
                assert!(e.is_usage());
                e.to_string()
            }
            Ok(c) => panic!("expected an error for {args:?}, got {c:?}"),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let f = run(&[]).unwrap();
        assert_eq!(
            f.benchmarks
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(","),
            DEFAULT_BENCHMARKS
        );
        assert_eq!(f.num, 1_000_000);
        assert_eq!(f.reads(), 1_000_000);
        assert_eq!(f.key_size, 16);
        assert_eq!(f.value_size, 100);
        assert_eq!(f.threads, 1);
        assert_eq!(f.db, None);
        assert!(!f.use_existing_db && !f.sync && !f.disable_wal && !f.histogram);
        assert!(f.stats);
        assert_eq!(f.compression, Compression::None);
        assert_eq!(f.compaction_style, CompactionStyle::Hca);
        assert_eq!(f.value_threshold, None);
        assert_eq!(f.cache_size, 64 << 20);
        assert_eq!(f.seed, DEFAULT_SEED);
        assert_eq!(f.agents, 1000);
        assert_eq!(f.engine, "strata");
        assert_eq!(f.durability(), Durability::Buffered);
        assert_eq!(f.embeddings_value_size(), 4096);
        assert_eq!(f.recover_child, None);
        assert_eq!(f, Flags::default());
    }

    #[test]
    fn every_flag_is_parsed() {
        let f = run(&[
            "--benchmarks=fillsync,embeddings,recover",
            "--num=5000",
            "--reads=70",
            "--key_size=8",
            "--value_size=300",
            "--compression_ratio=0.25",
            "--threads=4",
            "--db=/tmp/x",
            "--use_existing_db=1",
            "--sync=true",
            "--disable_wal=0",
            "--compression=zstd",
            "--compaction_style=tiered",
            "--value_threshold=1024",
            "--cache_size=1000",
            "--histogram",
            "--stats=0",
            "--seed=9",
            "--agents=17",
            "-engine=memory",
        ])
        .unwrap();
        assert_eq!(
            f.benchmarks,
            vec![
                Benchmark::FillSync,
                Benchmark::Embeddings,
                Benchmark::Recover
            ]
        );
        assert_eq!(f.num, 5000);
        assert_eq!(f.reads(), 70);
        assert_eq!(f.key_size, 8);
        assert_eq!(f.value_size, 300);
        assert_eq!(f.embeddings_value_size(), 300);
        assert_eq!(f.compression_ratio, 0.25);
        assert_eq!(f.threads, 4);
        assert_eq!(f.db, Some(PathBuf::from("/tmp/x")));
        assert!(f.use_existing_db && f.sync && !f.disable_wal && f.histogram && !f.stats);
        assert_eq!(f.durability(), Durability::Sync);
        assert_eq!(f.compression, Compression::Zstd);
        assert_eq!(f.compaction_style, CompactionStyle::Tiered);
        assert_eq!(f.value_threshold, Some(1024));
        assert_eq!(f.cache_size, 1000);
        assert_eq!(f.seed, 9);
        assert_eq!(f.agents, 17);
        assert_eq!(f.engine, "memory");
        let f = run(&["--disable_wal=1", "--compaction_style=leveled"]).unwrap();
        assert_eq!(f.durability(), Durability::Bypass);
        assert_eq!(f.compaction_style, CompactionStyle::Leveled);
        // The last occurrence wins; empty entries in the list are skipped.
        let f = run(&["--num=10", "--num=20", "--benchmarks=fillseq,,readseq,"]).unwrap();
        assert_eq!(f.num, 20);
        assert_eq!(f.benchmarks, vec![Benchmark::FillSeq, Benchmark::ReadSeq]);
        assert_eq!(run(&["--benchmarks="]).unwrap().benchmarks, vec![]);
    }

    #[test]
    fn every_benchmark_name_round_trips() {
        for b in Benchmark::ALL {
            assert_eq!(b.name().parse::<Benchmark>(), Ok(b));
            assert!(USAGE.contains(b.name()), "usage lacks {b}");
        }
    }

    #[test]
    fn help() {
        assert_eq!(parse(["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(["-h"]).unwrap(), Command::Help);
        assert_eq!(parse(["--num=5", "--help"]).unwrap(), Command::Help);
    }

    #[test]
    fn errors_name_the_flag() {
        assert!(err(&["--frobnicate=1"]).contains("unknown flag --frobnicate"));
        assert!(err(&["--benchmarks=fillseq,fly"]).contains("unknown benchmark 'fly'"));
        assert!(err(&["--num=abc"]).contains("--num=abc"));
        assert!(err(&["--num=-1"]).contains("--num"));
        assert!(err(&["--num=0"]).contains("--num"));
        assert!(err(&["--num"]).contains("needs a value"));
        assert!(err(&["--histogram=2"]).contains("expected 0 or 1"));
        assert!(err(&["positional"]).contains("unexpected argument"));
        assert!(err(&["--compression=lz4"]).contains("--compression"));
        assert!(err(&["--compaction_style=fifo"]).contains("--compaction_style"));
        assert!(err(&["--compression_ratio=0"]).contains("--compression_ratio"));
        assert!(err(&["--compression_ratio=1.5"]).contains("--compression_ratio"));
        assert!(err(&["--threads=0"]).contains("--threads"));
        assert!(err(&["--agents=0"]).contains("--agents"));
        assert!(err(&["--sync=1", "--disable_wal=1"]).contains("contradict"));
        assert!(err(&["--use_existing_db=1"]).contains("--db"));
        assert!(err(&["--db="]).contains("--db"));
        assert!(err(&["--value_size=999999999999"]).contains("--value_size"));
        // 16 digits cannot hold 10^17 keys; 3 digits hold exactly 1000.
        assert!(err(&["--key_size=16", "--num=100000000000000000"]).contains("--key_size"));
        assert!(run(&["--key_size=3", "--num=1000"]).is_ok());
        assert!(err(&["--key_size=3", "--num=1001"]).contains("needs 4 digits"));
    }

    #[test]
    fn recover_child_args_round_trip() {
        let f = run(&[
            "--engine=memory",
            "--num=123",
            "--key_size=9",
            "--value_size=77",
            "--compression_ratio=0.75",
            "--disable_wal=1",
            "--compression=zstd",
            "--compaction_style=leveled",
            "--value_threshold=64",
            "--cache_size=4096",
            "--seed=5",
        ])
        .unwrap();
        let child = run(&f
            .recover_child_args(std::path::Path::new("/tmp/r"))
            .iter()
            .map(|s| s.to_str().unwrap())
            .collect::<Vec<_>>())
        .unwrap();
        assert_eq!(child.recover_child, Some(PathBuf::from("/tmp/r")));
        assert_eq!(child.benchmarks, vec![]);
        let mut expected = f.clone();
        expected.recover_child = child.recover_child.clone();
        expected.benchmarks = vec![];
        assert_eq!(child, expected);
    }
}
