//! The fast slice of `db_stress` that every `cargo test` runs: a few SIGKILL cycles
//! and a few clean cycles over every feature, and the checker's self-test (children
//! that acknowledge writes they never made must be caught). The 500-cycle soak is in
//! `docs/reliability.md`.

use std::process::Command;

fn db_stress(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_db_stress"))
        .arg(format!("--dir={}", dir.display()))
        .args(args)
        .output()
        .expect("run db_stress");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn summary_figure(text: &str, after: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("db_stress: ") && l.contains("cycles ("))
        .unwrap_or_else(|| panic!("no summary line in:\n{text}"));
    let rest = &line[line
        .find(after)
        .unwrap_or_else(|| panic!("{after:?} in {line}"))..];
    let digits: String = rest[after.len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("figure after {after:?} in {line}"))
}

#[test]
fn sigkill_cycles_over_every_feature_find_no_violation() {
    let dir = tempfile::tempdir().expect("dir");
    let (ok, text) = db_stress(
        dir.path(),
        &["--cycles=12", "--seed=4242", "--verify_every=4"],
    );
    assert!(ok, "db_stress failed:\n{text}");
    assert!(text.contains(", 0 violations;"), "{text}");
    assert_eq!(summary_figure(&text, "db_stress:"), 12, "{text}");
    // The run exercised what it claims to check.
    assert!(
        summary_figure(&text, "violations;") > 0,
        "logged ops: {text}"
    );
    assert!(summary_figure(&text, "kept),") > 0, "bypass events: {text}");
    assert!(
        summary_figure(&text, "checkpoints,") > 0,
        "replicated batches: {text}"
    );
    assert!(text.contains("3 verify runs"), "{text}");
}

#[test]
fn clean_cycles_keep_every_acknowledged_write_including_bypass() {
    let dir = tempfile::tempdir().expect("dir");
    let (ok, text) = db_stress(
        dir.path(),
        &[
            "--cycles=2",
            "--seed=7",
            "--crash=0",
            "--max_ops=250",
            "--verify_every=1",
        ],
    );
    assert!(ok, "db_stress failed:\n{text}");
    assert_eq!(text.matches("closed cleanly").count(), 2, "{text}");
    assert!(text.contains("(0 lost after their last flush"), "{text}");
}

#[test]
fn the_checker_catches_acknowledged_writes_that_were_never_made() {
    let dir = tempfile::tempdir().expect("dir");
    let (ok, text) = db_stress(dir.path(), &["--cycles=6", "--seed=11", "--lose_every=23"]);
    assert!(!ok, "a lost acknowledged write went unnoticed:\n{text}");
    assert!(text.contains("VIOLATION"), "{text}");
    assert!(text.contains("differs from the model"), "{text}");
}

#[test]
fn usage_errors_are_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_db_stress"))
        .arg("--no_such_flag=1")
        .output()
        .expect("run db_stress");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown flag"));
}
