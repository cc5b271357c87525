//! Helpers shared by the engine's integration tests: a seeded mixer, the child's line
//! protocol and starting this test binary again as a child (process-kill tests), the
//! value-log files of a database directory, and a count of panics on the engine's
//! background threads (which a test's `catch_unwind` cannot see).

#![allow(dead_code)]

pub mod workload;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

static BACKGROUND_PANICS: AtomicU64 = AtomicU64::new(0);

/// Installs a panic hook (keeping the previous one) that counts panics on the
/// engine's background threads (`strata-bg-*`).
pub fn count_background_panics() {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("strata-bg"))
        {
            BACKGROUND_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        previous_hook(info);
    }));
}

/// Panics counted on background threads since [`count_background_panics`].
pub fn background_panics() -> u64 {
    BACKGROUND_PANICS.load(Ordering::SeqCst)
}

/// SplitMix64's finaliser: a well-spread `u64` from any `u64`.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One `@@` line to the parent, flushed at once (it must reach the pipe before a
/// kill can land).
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@{line}").unwrap();
    out.flush().unwrap();
}

/// Runs the ignored test `child_test` of this test binary as a child process with
/// `envs`, its stdout piped to the parent and its stderr to `stderr`.
pub fn spawn_child(child_test: &str, envs: &[(&str, String)], stderr: Stdio) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        child_test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap()
}

/// When the parent kills a child.
#[derive(Debug, Clone, Copy)]
pub enum KillAt {
    /// After it acknowledged this many writes.
    Acks(u64),
    /// This many milliseconds after it was started, acknowledged or not (it may still
    /// be recovering).
    Millis(u64),
}

/// Reads the child's lines, handing each to `record` (which says whether it was an
/// acknowledgement), kills the child at `kill_at`, then reads what it printed before
/// it died (that still counts). Returns whether the parent killed it (rather than the
/// child ending on its own) and the acknowledgements it read before the kill.
pub fn run_until_kill(
    child: &mut Child,
    kill_at: KillAt,
    mut record: impl FnMut(&str) -> bool,
) -> (bool, u64) {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acks = 0;
    let mut killed = false;
    match kill_at {
        KillAt::Millis(ms) => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            child.kill().unwrap();
            killed = true;
        }
        KillAt::Acks(n) => {
            for line in lines.by_ref() {
                if record(&line.unwrap()) {
                    acks += 1;
                    if acks >= n {
                        child.kill().unwrap();
                        killed = true;
                        break;
                    }
                }
            }
        }
    }
    for line in lines {
        record(&line.unwrap());
    }
    (killed, acks)
}

/// The value-log segment files of `dir`, by name.
pub fn vlog_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the database directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".vlog"))
        .collect();
    names.sort();
    names
}

/// Bytes of the value-log segment files of `dir`, as the file system sees them. A
/// segment that background collection removes between the listing and its `stat`
/// counts as gone (a flaky failure of `vlog_reclaim` in CI, 2026-11-26).
pub fn vlog_file_bytes(dir: &std::path::Path) -> u64 {
    vlog_files(dir)
        .iter()
        .map(|n| match std::fs::metadata(dir.join(n)) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("segment metadata of {n}: {e}"),
        })
        .sum()
}
