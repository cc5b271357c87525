//! The `recover` benchmark end to end with the `memory` engine, whose journal survives
//! a killed process for `Buffered` writes and loses `Bypass` writes that were never
//! flushed: the first run must find every acknowledged write, the second must notice
//! that they are gone (so the check can fail).

use std::collections::HashMap;
use std::process::Command;

fn recover_line(args: &[&str]) -> HashMap<String, f64> {
    let out = Command::new(env!("CARGO_BIN_EXE_db_bench"))
        .args(["--engine=memory", "--benchmarks=recover", "--num=20000"])
        .args(args)
        .output()
        .expect("run db_bench");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("recover : "))
        .unwrap_or_else(|| panic!("no recover line in:\n{stdout}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.parse::<f64>().expect("number"))
        })
        .collect()
}

#[test]
fn buffered_writes_survive_the_kill() {
    let r = recover_line(&[]);
    assert!(r["open_ms"] >= 0.0);
    assert!(
        r["entries"] >= 16_000.0,
        "killed before 80% were acknowledged: {r:?}"
    );
    assert!(r["entries"] <= 20_000.0);
    assert_eq!(r["missing"], 0.0, "{r:?}");
    assert_eq!(r["mismatched"], 0.0, "{r:?}");
    assert!(r["recovered"] >= r["entries"], "{r:?}");
}

#[test]
fn unflushed_bypass_writes_are_reported_missing() {
    let r = recover_line(&["--disable_wal=1"]);
    assert!(r["entries"] >= 16_000.0, "{r:?}");
    assert_eq!(r["missing"], r["entries"], "{r:?}");
    assert_eq!(r["recovered"], 0.0, "{r:?}");
}

#[test]
fn temporary_recover_directory_is_removed() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("db");
    let out = Command::new(env!("CARGO_BIN_EXE_db_bench"))
        .args([
            "--engine=memory",
            "--benchmarks=fillseq,recover",
            "--num=3000",
            "--stats=0",
        ])
        .arg(format!("--db={}", db.display()))
        .output()
        .expect("run db_bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().any(|l| l.starts_with("fillseq ")));
    assert!(stdout.lines().any(|l| l.starts_with("recover : ")));
    assert!(db.is_dir());
    assert!(!root.path().join("db-recover").exists());
}
