//! The `strata` command-line tool (built with `--features cli`): every command on a
//! small database, and `verify` finding a flipped bit.

use std::path::Path;
use std::process::Command;

use strata::{Db, KeyspaceOptions, Options};

fn strata(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("run strata");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn build(dir: &Path) {
    let db = Db::open(dir, Options::default()).expect("open");
    let ks = db
        .create_keyspace(
            "memories",
            KeyspaceOptions {
                value_threshold: Some(100),
                history_seqs: Some(1000),
                ..KeyspaceOptions::default()
            },
        )
        .expect("ks");
    for i in 0..50u32 {
        ks.put(format!("agent-1/{i:03}"), format!("memory {i} ").repeat(20))
            .expect("put");
    }
    ks.flush().expect("flush");
    ks.put("agent-2/000", "short").expect("put");
    ks.put("bin\x01key", "x").expect("put");
    drop(ks);
    db.close().expect("close");
}

#[test]
fn every_command_works_on_a_small_database_and_verify_finds_damage() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().join("db");
    build(&dir);
    let d = dir.to_str().expect("utf-8 path");

    let (ok, out, err) = strata(&["info", d]);
    assert!(ok, "{err}");
    assert!(
        out.contains("keyspace \"memories\"") && out.contains("value-log segment"),
        "{out}"
    );
    assert!(out.contains("WAL:"), "{out}");

    let (ok, out, err) = strata(&["verify", d]);
    assert!(ok, "{err}");
    assert!(out.starts_with("ok:") && out.contains("1 tables"), "{out}");

    let (ok, out, _) = strata(&["get", d, "memories", "agent-2/000"]);
    assert!(ok);
    assert_eq!(out.trim(), "short");
    let (ok, _, err) = strata(&["get", d, "memories", "nope"]);
    assert!(!ok && err.contains("not found"), "{err}");

    let (ok, out, err) = strata(&[
        "scan",
        d,
        "memories",
        "--prefix",
        "agent-1/",
        "--limit",
        "3",
        "--reverse",
    ]);
    assert!(ok, "{err}");
    let keys: Vec<&str> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert_eq!(keys, ["agent-1/049", "agent-1/048", "agent-1/047"]);
    let (ok, out, _) = strata(&["scan", d, "memories", "--prefix", "bin"]);
    assert!(ok && out.starts_with("bin\\x01key\t"), "{out}");

    let (ok, out, err) = strata(&["dump-wal", d]);
    assert!(ok, "{err}");
    assert!(out.contains("Put agent-2/000"), "{out}");

    let table = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("a table");
    let (ok, out, err) = strata(&["dump-table", table.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    assert!(
        out.contains("agent-1/000\t@") && out.contains("Pointer"),
        "{out}"
    );

    let (ok, out, err) = strata(&["changes", d, "0", "--limit", "2"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("batch "), "{out}");

    // (The checkpoint flushes, and the flushed log is then deleted.)
    let copy = tmp.path().join("copy");
    let (ok, out, err) = strata(&["checkpoint", d, copy.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    assert!(out.contains("checkpoint at sequence number"), "{out}");
    let (ok, _, err) = strata(&["verify", copy.to_str().expect("utf-8")]);
    assert!(ok, "{err}");

    // One flipped bit in the table: verify names the file and fails.
    let mut bytes = std::fs::read(&table).expect("read");
    let at = bytes.len() / 3;
    bytes[at] ^= 0x10;
    std::fs::write(&table, &bytes).expect("write");
    let (ok, _, err) = strata(&["verify", d]);
    assert!(!ok, "verify passed a damaged table");
    assert!(err.contains(".sst") && err.contains("corruption"), "{err}");

    let (ok, _, err) = strata(&["frobnicate"]);
    assert!(!ok && err.contains("usage"), "{err}");
}
