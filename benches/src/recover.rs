//! The `recover` benchmark: crash a writer, time the reopen, check the acknowledged
//! writes.
//!
//! The parent runs its own executable again as a child with the hidden flag
//! `--recover_child=<dir>` and the run's engine, key, value and durability flags. The
//! child opens a fresh database in `<dir>`, writes keys `0..--num` in order (values
//! from the same generator the parent will replay) with the run's durability (by
//! default `Buffered`), and after each group of acknowledged writes prints
//! `acked <count>` on stdout; after the last one it prints `done <num>` and waits on
//! stdin, so it is always killed, never closed. The parent reads those lines and, once
//! 80% of `--num` writes are acknowledged, lets the child run 5 ms more (so the kill
//! does not land at the very point where the child paused to report), kills it
//! (`Child::kill`: SIGKILL on Unix), opens the database timing the open, and looks up every write the child had
//! reported acknowledged. It prints
//!
//! ```text
//! recover : open_ms=12.345 entries=800000 missing=0 mismatched=0 recovered=812000
//! ```
//!
//! `entries` is the number of acknowledged writes checked, `missing` how many of them
//! are absent, `mismatched` how many came back with a value that was not written, and
//! `recovered` how many entries the reopened database holds (acknowledged writes the
//! parent had not yet been told about may be among them). A kill only tests what
//! survives a process crash; power loss is the fault-injection tests' business.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{BenchEngine, Direction, EngineConfig};
use crate::engines::open_engine;
use crate::error::Error;
use crate::flags::Flags;
use crate::keys::{KeyFormat, ValuePool};

/// The child is killed once this fraction of `--num` writes is acknowledged.
pub const KILL_FRACTION: f64 = 0.8;
/// How long the parent lets the child keep writing after the threshold, before the
/// kill (see [`run_parent`]).
pub const KILL_DELAY: Duration = Duration::from_millis(5);

/// What the parent found after reopening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverReport {
    /// Time to open the crashed database.
    pub open: Duration,
    /// Acknowledged writes checked.
    pub entries: u64,
    /// Acknowledged writes not found.
    pub missing: u64,
    /// Acknowledged writes found with another value.
    pub mismatched: u64,
    /// Entries in the reopened database.
    pub recovered: u64,
}

impl RecoverReport {
    /// The result line.
    pub fn line(&self) -> String {
        format!(
            "recover : open_ms={:.3} entries={} missing={} mismatched={} recovered={}",
            self.open.as_secs_f64() * 1e3,
            self.entries,
            self.missing,
            self.mismatched,
            self.recovered
        )
    }
}

/// How many acknowledged writes the child lets pass between two `acked` lines.
pub fn report_interval(num: u64) -> u64 {
    (num / 100).clamp(1, 1000)
}

/// The configuration the child and the parent open `dir` with.
pub fn engine_config(flags: &Flags, dir: &Path, use_existing_db: bool) -> EngineConfig {
    EngineConfig {
        path: dir.to_path_buf(),
        durability: flags.durability(),
        compression: flags.compression,
        compaction_style: flags.compaction_style,
        value_threshold: flags.value_threshold,
        cache_bytes: flags.cache_size,
        use_existing_db,
    }
}

fn child_io(e: io::Error) -> Error {
    Error::io("recover child: writing to stdout", e)
}

/// The child's side: write, report acknowledgements, wait to be killed.
///
/// Returns only if the parent goes away (stdin reaches its end); the engine is then
/// leaked on purpose, so it is never closed cleanly.
///
/// # Errors
/// The engine's errors, or failing to write to stdout.
pub fn run_child(flags: &Flags, dir: &Path) -> Result<(), Error> {
    let engine = open_engine(&flags.engine, &engine_config(flags, dir, false))?;
    let result = write_and_report(flags, engine.as_ref());
    // Whatever happened, the engine must not be closed: the parent wants a crash.
    std::mem::forget(engine);
    result
}

fn write_and_report(flags: &Flags, engine: &dyn BenchEngine) -> Result<(), Error> {
    let keys = KeyFormat::new(flags.key_size);
    let pool = ValuePool::new(flags.seed, flags.compression_ratio, flags.value_size);
    let mut values = pool.generator(0);
    let every = report_interval(flags.num);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut key = Vec::with_capacity(flags.key_size);
    let durability = flags.durability();
    for k in 0..flags.num {
        keys.write(k, &mut key);
        engine
            .put(&key, values.generate(flags.value_size), durability)
            .map_err(|e| Error::engine("recover child: put", e))?;
        if (k + 1) % every == 0 {
            writeln!(out, "acked {}", k + 1).map_err(child_io)?;
            out.flush().map_err(child_io)?;
        }
    }
    writeln!(out, "done {}", flags.num).map_err(child_io)?;
    out.flush().map_err(child_io)?;
    drop(out);
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    Ok(())
}

/// The parent's side: run the child in `dir` (which must exist and be empty), kill it,
/// reopen and check. Returns the report and the reopened engine, for its statistics;
/// the caller closes it.
///
/// # Errors
/// [`Error::Recover`] when the child cannot be run or dies on its own, or the
/// engine's errors on reopening.
pub fn run_parent(
    flags: &Flags,
    dir: &Path,
) -> Result<(RecoverReport, Arc<dyn BenchEngine>), Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Recover(format!("cannot find db_bench's own executable: {e}")))?;
    let mut child = Command::new(&exe)
        .args(flags.recover_child_args(dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::Recover(format!("cannot start {}: {e}", exe.display())))?;
    let stdin = child.stdin.take();
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Recover("the child's stdout was not captured".into()));
    };
    let threshold = ((flags.num as f64 * KILL_FRACTION).ceil() as u64).clamp(1, flags.num);
    let mut acked = 0u64;
    let mut done = false;
    let mut protocol_error = None;
    // The pipe stays open until the child is dead: a child that saw its stdout close
    // could fail a write and exit on its own instead of being killed.
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = line.trim_end();
        let parsed = if let Some(n) = text.strip_prefix("acked ") {
            n.parse::<u64>().ok()
        } else if let Some(n) = text.strip_prefix("done ") {
            done = true;
            n.parse::<u64>().ok()
        } else {
            None
        };
        match parsed {
            Some(n) => acked = acked.max(n),
            None => {
                protocol_error = Some(format!("unexpected line from the child: '{text}'"));
                break;
            }
        }
        if acked >= threshold || done {
            break;
        }
    }
    if !done && protocol_error.is_none() && acked >= threshold {
        // The child was preempted to let us read its line; give it a moment to be
        // back in the middle of a write, where a crash is most interesting.
        std::thread::sleep(KILL_DELAY);
    }
    // SIGKILL on Unix (TerminateProcess on Windows): no destructor, no close.
    let killed = child.kill();
    let status = child
        .wait()
        .map_err(|e| Error::Recover(format!("cannot wait for the child: {e}")))?;
    drop(reader);
    drop(stdin);
    if let Some(msg) = protocol_error {
        return Err(Error::Recover(msg));
    }
    if acked < threshold && !done {
        return Err(Error::Recover(format!(
            "the writer child ended by itself ({status}) after {acked} acknowledged writes \
             of {}; its error, if any, is above",
            flags.num
        )));
    }
    if let Err(e) = killed {
        return Err(Error::Recover(format!("cannot kill the writer child: {e}")));
    }

    let start = Instant::now();
    let engine = open_engine(&flags.engine, &engine_config(flags, dir, true))?;
    let open = start.elapsed();

    let keys = KeyFormat::new(flags.key_size);
    let pool = ValuePool::new(flags.seed, flags.compression_ratio, flags.value_size);
    let mut values = pool.generator(0);
    let mut key = Vec::with_capacity(flags.key_size);
    let (mut missing, mut mismatched) = (0, 0);
    for k in 0..acked {
        keys.write(k, &mut key);
        let expected = values.generate(flags.value_size);
        let mut same = false;
        let found = engine
            .get(&key, &mut |v| same = v == expected)
            .map_err(|e| Error::engine("recover: get", e))?;
        if !found {
            missing += 1;
        } else if !same {
            mismatched += 1;
        }
    }
    let recovered = engine
        .scan(Direction::Forward, None, usize::MAX, &mut |_, _| {})
        .map_err(|e| Error::engine("recover: scan", e))? as u64;
    let report = RecoverReport {
        open,
        entries: acked,
        missing,
        mismatched,
        recovered,
    };
    Ok((report, engine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shape() {
        let r = RecoverReport {
            open: Duration::from_micros(12_345),
            entries: 800,
            missing: 0,
            mismatched: 0,
            recovered: 1000,
        };
        assert_eq!(
            r.line(),
            "recover : open_ms=12.345 entries=800 missing=0 mismatched=0 recovered=1000"
        );
    }

    #[test]
    fn report_interval_is_bounded() {
        assert_eq!(report_interval(1), 1);
        assert_eq!(report_interval(2000), 20);
        assert_eq!(report_interval(1_000_000), 1000);
    }
}
