//! A whole `db_bench` run: the database directory, the header, the benchmarks in
//! order on one engine, and the output.
//!
//! stdout carries only results, so it stays parseable: per result line (one per
//! benchmark; `embeddings` prints two, one per phase), the line itself, starting with
//! the benchmark's name, then the `Percentiles:` line with `--histogram=1`, then with
//! `--stats=1` the engine's `Stats:` line and its readable statistics. The header, warnings and progress go to stderr, as in LevelDB.
//!
//! The database directory is a fresh temporary directory, removed at the end, unless
//! `--db` is given. A `--db` directory is kept. Without `--use_existing_db=1` it must be
//! missing, empty, or one db_bench created earlier (it then holds the marker file
//! [`MARKER_FILE`]); such a directory is wiped first, like db_bench's `DestroyDB`,
//! while a directory db_bench did not create is refused rather than deleted.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::BenchEngine;
use crate::engines::{check_engine, open_engine};
use crate::error::Error;
use crate::flags::{Benchmark, Flags};
use crate::recover;
use crate::workloads::{self, Context};

/// Marker file db_bench leaves in the directories it creates.
pub const MARKER_FILE: &str = ".db_bench";

/// The directories of one run.
struct Dirs {
    db: PathBuf,
    recover: PathBuf,
    /// Holds the temporary root alive; dropping it removes everything.
    _temp: Option<tempfile::TempDir>,
}

fn io_at(what: &str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let context = format!("{what} {}", path.display());
    move |e| Error::io(context, e)
}

/// Makes `path` an empty directory db_bench owns (see the module docs).
fn prepare_fresh_dir(path: &Path) -> Result<(), Error> {
    if path.exists() {
        if !path.is_dir() {
            return Err(Error::Usage(format!(
                "{} exists and is not a directory",
                path.display()
            )));
        }
        let empty = fs::read_dir(path)
            .map_err(io_at("cannot list", path))?
            .next()
            .is_none();
        if !empty {
            if !path.join(MARKER_FILE).exists() {
                return Err(Error::Usage(format!(
                    "{} is not empty and was not created by db_bench; remove it, pick another \
                     --db, or pass --use_existing_db=1 to use what it holds",
                    path.display()
                )));
            }
            fs::remove_dir_all(path).map_err(io_at("cannot remove", path))?;
        }
    }
    fs::create_dir_all(path).map_err(io_at("cannot create", path))?;
    fs::write(
        path.join(MARKER_FILE),
        "created by db_bench; the next run without --use_existing_db=1 wipes this directory\n",
    )
    .map_err(io_at("cannot write the marker file in", path))
}

impl Dirs {
    fn prepare(flags: &Flags) -> Result<Dirs, Error> {
        match &flags.db {
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("db_bench-")
                    .tempdir()
                    .map_err(|e| Error::io("cannot create a temporary directory", e))?;
                let db = temp.path().join("db");
                fs::create_dir(&db).map_err(io_at("cannot create", &db))?;
                let recover = temp.path().join("recover");
                Ok(Dirs {
                    db,
                    recover,
                    _temp: Some(temp),
                })
            }
            Some(path) => {
                if flags.use_existing_db {
                    if !path.is_dir() {
                        return Err(Error::Usage(format!(
                            "--use_existing_db=1 but {} is not a directory",
                            path.display()
                        )));
                    }
                } else {
                    prepare_fresh_dir(path)?;
                }
                let mut recover = OsString::from(path.as_os_str());
                recover.push("-recover");
                Ok(Dirs {
                    db: path.clone(),
                    recover: PathBuf::from(recover),
                    _temp: None,
                })
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix time (Howard Hinnant's `civil_from_days`).
pub fn utc_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn cpu_model() -> Option<String> {
    let info = fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
}

fn memory_total() -> Option<String> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(format!("{:.1} GiB", kib / 1_048_576.0))
}

fn header(flags: &Flags, dirs: &Dirs) -> String {
    let mb = |bytes: f64| bytes / 1_048_576.0;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let entry = (flags.key_size + flags.value_size) as f64;
    let compressed = flags.key_size as f64 + flags.value_size as f64 * flags.compression_ratio;
    let mut h = String::new();
    let mut line = |k: &str, v: String| h.push_str(&format!("{k:<12} {v}\n"));
    line(
        "db_bench:",
        format!("strata-bench {}", env!("CARGO_PKG_VERSION")),
    );
    line("Date:", utc_date(now));
    line(
        "CPU:",
        match cpu_model() {
            Some(model) => format!("{cores} * {model}"),
            None => format!("{cores} cores"),
        },
    );
    if let Some(memory) = memory_total() {
        line("Memory:", memory);
    }
    line("Engine:", flags.engine.clone());
    line(
        "Database:",
        format!(
            "{}{}",
            dirs.db.display(),
            if dirs._temp.is_some() {
                " (temporary, removed at exit)"
            } else if flags.use_existing_db {
                " (existing)"
            } else {
                ""
            }
        ),
    );
    line("Keys:", format!("{} bytes each", flags.key_size));
    line(
        "Values:",
        format!(
            "{} bytes each ({} bytes after compression)",
            flags.value_size,
            (flags.value_size as f64 * flags.compression_ratio) as u64
        ),
    );
    line("Entries:", flags.num.to_string());
    line(
        "RawSize:",
        format!("{:.1} MB (estimated)", mb(entry * flags.num as f64)),
    );
    line(
        "FileSize:",
        format!("{:.1} MB (estimated)", mb(compressed * flags.num as f64)),
    );
    line("Threads:", flags.threads.to_string());
    line("Durability:", flags.durability().name().to_string());
    line("Compression:", flags.compression.name().to_string());
    line("Compaction:", flags.compaction_style.name().to_string());
    line(
        "ValueLog:",
        flags
            .value_threshold
            .map_or("engine default threshold".to_string(), |t| {
                format!("values >= {t} bytes")
            }),
    );
    line("Cache:", format!("{:.1} MB", mb(flags.cache_size as f64)));
    line("Seed:", flags.seed.to_string());
    if cfg!(debug_assertions) {
        h.push_str("WARNING: Assertions are enabled; benchmarks unnecessarily slow\n");
    }
    h.push_str("------------------------------------------------\n");
    h
}

/// Result output: stdout, with write errors (a closed pipe) turned into [`Error`].
struct Output {
    out: io::Stdout,
}

impl Output {
    fn line(&mut self, text: &str) -> Result<(), Error> {
        writeln!(self.out.lock(), "{text}").map_err(|e| Error::io("writing results to stdout", e))
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.out
            .flush()
            .map_err(|e| Error::io("writing results to stdout", e))
    }

    fn stats(&mut self, engine: &dyn BenchEngine) -> Result<(), Error> {
        if let Some(line) = engine.stats_line() {
            self.line(&line)?;
        }
        if let Some(text) = engine.stats_text() {
            self.line(text.trim_end())?;
        }
        Ok(())
    }
}

fn run_recover(flags: &Flags, dir: &Path, out: &mut Output) -> Result<(), Error> {
    prepare_fresh_dir(dir)?;
    let result = recover::run_parent(flags, dir).and_then(|(report, engine)| {
        out.line(&report.line())?;
        if flags.stats {
            out.stats(engine.as_ref())?;
        }
        engine
            .close()
            .map_err(|e| Error::engine("recover: close", e))
    });
    let removed = fs::remove_dir_all(dir).map_err(io_at("cannot remove", dir));
    result.and(removed)
}

/// Runs `db_bench` with parsed flags: everything the binary does after parsing.
///
/// # Errors
/// Any [`Error`]; the binary prints it and exits with a failure status.
pub fn run(flags: &Flags) -> Result<(), Error> {
    if let Some(dir) = &flags.recover_child {
        return recover::run_child(flags, dir);
    }
    check_engine(&flags.engine)?;
    let dirs = Dirs::prepare(flags)?;
    eprint!("{}", header(flags, &dirs));
    let config = recover::engine_config(flags, &dirs.db, flags.use_existing_db);
    let engine: Arc<dyn BenchEngine> = open_engine(&flags.engine, &config)?;
    let ctx = Context::new(Arc::clone(&engine), flags);
    let mut out = Output { out: io::stdout() };
    for (index, &bench) in flags.benchmarks.iter().enumerate() {
        if bench == Benchmark::Recover {
            run_recover(flags, &dirs.recover, &mut out)?;
        } else {
            workloads::run(&ctx, bench, index, &mut |m| {
                out.line(&m.line())?;
                if let Some(h) = &m.hist {
                    out.line(&h.percentiles_line())?;
                }
                if flags.stats {
                    out.stats(engine.as_ref())?;
                }
                out.flush()
            })?;
        }
        out.flush()?;
    }
    drop(ctx);
    engine.close().map_err(|e| Error::engine("close", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn fresh_dir_refuses_foreign_content_and_wipes_its_own() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("db");
        prepare_fresh_dir(&dir).unwrap();
        assert!(dir.join(MARKER_FILE).exists());
        fs::write(dir.join("data"), b"x").unwrap();
        prepare_fresh_dir(&dir).unwrap();
        assert!(
            !dir.join("data").exists(),
            "db_bench's own directory is wiped"
        );
        let foreign = root.path().join("foreign");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("precious"), b"x").unwrap();
        let err = prepare_fresh_dir(&foreign).unwrap_err();
        assert!(err.is_usage() && err.to_string().contains("not created by db_bench"));
        assert!(foreign.join("precious").exists());
    }
}
