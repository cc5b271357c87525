//! History: reads at past sequence numbers and times, checked against a model that
//! records the whole database after every write, through flushes, compactions,
//! value-log collection and reopens; windows that collect what leaves them; errors
//! that say what is retained.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use strata::{Db, Error, KeyspaceOptions, Options, SeqNo, WriteBatch};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn history_options() -> KeyspaceOptions {
    KeyspaceOptions {
        memtable_bytes: 64 << 10,
        target_table_bytes: 32 << 10,
        base_level_bytes: 64 << 10,
        // Some values separated, some not.
        value_threshold: Some(300),
        vlog_gc_garbage_ratio: 0.2,
        history_seqs: Some(1 << 40),
        ..KeyspaceOptions::default()
    }
}

fn value(seed: u64) -> Vec<u8> {
    let len = (common::mix(seed) % 700) as usize + 1;
    let stamp = format!("v{seed};");
    stamp.bytes().cycle().take(len).collect()
}

/// Every key and value of `ks` through `snapshot`, forward; checks that the reverse
/// scan agrees.
fn scan(snapshot: &strata::Snapshot, ks: &strata::Keyspace) -> Model {
    let forward: Model = snapshot
        .iter(ks)
        .map(|kv| {
            let (k, v) = kv.expect("scan");
            (k.to_vec(), v.to_vec())
        })
        .collect();
    let mut backward: Vec<(Vec<u8>, Vec<u8>)> = snapshot
        .iter(ks)
        .rev()
        .map(|kv| {
            let (k, v) = kv.expect("reverse scan");
            (k.to_vec(), v.to_vec())
        })
        .collect();
    backward.reverse();
    assert_eq!(
        backward,
        forward.clone().into_iter().collect::<Vec<_>>(),
        "reverse scan at {}",
        snapshot.seqno()
    );
    forward
}

fn check_past(
    db: &Db,
    ks: &strata::Keyspace,
    history: &[(SeqNo, Model)],
    rng: &mut u64,
    context: &str,
) {
    for _ in 0..6 {
        *rng = common::mix(*rng);
        let (seq, model) = &history[(*rng % history.len() as u64) as usize];
        let snapshot = db
            .snapshot_at(*seq)
            .unwrap_or_else(|e| panic!("{context}: snapshot_at({seq}): {e}"));
        assert!(
            scan(&snapshot, ks) == *model,
            "{context}: the scan at {seq} differs from the model"
        );
        for probe in 0..8u64 {
            let key = format!("key{:03}", common::mix(*rng + probe) % 120).into_bytes();
            let got = snapshot.get(ks, &key).expect("get");
            assert_eq!(
                got.as_deref(),
                model.get(&key).map(Vec::as_slice),
                "{context}: get {} at {seq}",
                String::from_utf8_lossy(&key)
            );
        }
    }
}

#[test]
fn reads_at_every_past_sequence_number_match_the_model_through_flush_compaction_gc_and_reopen() {
    for seed in 1..=3u64 {
        let dir = tempfile::tempdir().expect("dir");
        let mut db = Db::open(dir.path(), Options::default()).expect("open");
        let mut ks = db
            .create_keyspace("memories", history_options())
            .expect("ks");
        let mut model = Model::new();
        let mut history: Vec<(SeqNo, Model)> = vec![(db.latest_seqno(), model.clone())];
        let mut rng = seed;
        for step in 0..1500u64 {
            rng = common::mix(rng);
            let key = format!("key{:03}", rng % 120).into_bytes();
            match (rng >> 20) % 100 {
                0..=59 => {
                    let v = value(rng);
                    ks.put(&key, &v).expect("put");
                    model.insert(key, v);
                }
                60..=74 => {
                    ks.delete(&key).expect("delete");
                    model.remove(&key);
                }
                75..=79 => {
                    let prefix = format!("key{:02}", rng % 12).into_bytes();
                    ks.delete_prefix(&prefix).expect("delete_prefix");
                    model.retain(|k, _| !k.starts_with(&prefix));
                }
                80..=89 => {
                    let mut batch = WriteBatch::new();
                    for i in 0..4 {
                        let k = format!("key{:03}", (rng + i * 7) % 120).into_bytes();
                        let v = value(rng + i);
                        batch.put(&ks, &k, &v);
                        model.insert(k, v);
                    }
                    db.write(batch).expect("batch");
                }
                90..=93 => ks.flush().expect("flush"),
                94..=95 => ks.compact().expect("compact"),
                96..=97 => {
                    db.gc_value_log(&ks).expect("gc");
                }
                _ => {
                    drop(ks);
                    db.close().expect("close");
                    db = Db::open(dir.path(), Options::default()).expect("reopen");
                    ks = db.keyspace("memories").expect("ks");
                }
            }
            let latest = db.latest_seqno();
            if history.last().is_some_and(|(s, _)| *s != latest) {
                history.push((latest, model.clone()));
            }
            if step % 50 == 49 {
                check_past(
                    &db,
                    &ks,
                    &history,
                    &mut rng,
                    &format!("seed {seed} step {step}"),
                );
            }
        }
        ks.compact().expect("final compact");
        db.gc_value_log(&ks).expect("final gc");
        check_past(&db, &ks, &history, &mut rng, &format!("seed {seed} end"));
        // Every recorded point, once.
        for (seq, model) in history.iter().step_by(37) {
            let snapshot = db.snapshot_at(*seq).expect("snapshot_at");
            assert!(scan(&snapshot, &ks) == *model, "seed {seed}: at {seq}");
        }
    }
}

#[test]
fn a_window_by_count_collects_older_versions_and_says_what_it_retains() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let windowed = db
        .create_keyspace(
            "windowed",
            KeyspaceOptions {
                history_seqs: Some(100),
                ..KeyspaceOptions::default()
            },
        )
        .expect("ks");
    let plain = db
        .create_keyspace("plain", KeyspaceOptions::default())
        .expect("ks");
    let mut points = Vec::new();
    for i in 0..1000u32 {
        windowed.put("k", i.to_le_bytes()).expect("put");
        plain.put("k", i.to_le_bytes()).expect("put");
        points.push((db.latest_seqno(), i));
    }
    windowed.compact().expect("compact");
    plain.compact().expect("compact");
    // Inside the window: exact.
    let latest = db.latest_seqno();
    for (seq, i) in points.iter().rev().take(40) {
        if seq.0 + 100 < latest.0 {
            break;
        }
        let s = db.snapshot_at(*seq).expect("inside the window");
        assert_eq!(
            s.get(&windowed, "k").expect("get").as_deref(),
            Some(&i.to_le_bytes()[..])
        );
        // The keyspace without a window no longer holds it.
        match s.get(&plain, "k") {
            Err(Error::HistoryUnavailable { scope, .. }) => assert!(scope.contains("plain")),
            other if *seq == latest => assert!(other.is_ok()),
            other => panic!("expected HistoryUnavailable for the plain keyspace, got {other:?}"),
        }
    }
    // Far outside: reads of the keyspace are refused, naming what it retains. (The
    // snapshot itself is allowed: the idle default keyspace still reads exactly there.)
    let (old, _) = points[10];
    let s = db.snapshot_at(old).expect("the default keyspace holds it");
    match s.get(&windowed, "k") {
        Err(e @ Error::HistoryUnavailable { .. }) => {
            let Error::HistoryUnavailable {
                requested,
                oldest,
                scope,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(*requested, old);
            assert!(scope.contains("windowed"), "{e}");
            assert!(oldest.0 + 100 >= latest.0 && *oldest <= latest, "{e}");
            assert!(e.to_string().contains("oldest"), "{e}");
        }
        other => panic!("expected HistoryUnavailable, got {other:?}"),
    }
    let first = s.iter(&windowed).next();
    assert!(
        matches!(first, Some(Err(Error::HistoryUnavailable { .. }))),
        "iterators refuse too: {first:?}"
    );
    assert!(s.cursor(&windowed).is_err(), "cursors refuse too");
    drop(s);
    // The floor is kept across a reopen: the collected versions stay refused. (The
    // idle default keyspace no longer vouches for old numbers either, so the
    // snapshot itself is refused.)
    drop((windowed, plain));
    db.close().expect("close");
    let db = Db::open(dir.path(), Options::default()).expect("reopen");
    let windowed = db.keyspace("windowed").expect("ks");
    assert!(
        matches!(db.snapshot_at(old), Err(Error::HistoryUnavailable { .. })),
        "after reopen"
    );
    assert!(db.history_floor(&windowed) > old);
    let floor_in_stats = db.stats().keyspace("windowed").map(|k| k.history_floor);
    assert_eq!(floor_in_stats, Some(db.history_floor(&windowed)));
    // The window really collected: the table holds about the window, not every version.
    let entries: u64 = db
        .stats()
        .keyspace("windowed")
        .map(|k| k.levels.iter().map(|l| l.entries).sum())
        .expect("stats");
    // Each round writes both keyspaces: 100 sequence numbers hold 50 versions of
    // this one, plus the newest at or below the horizon.
    assert!(
        (48..=56).contains(&entries),
        "the window keeps about 50 versions, the tables hold {entries}"
    );
    // A snapshot taken inside the window keeps its sequence number readable after the
    // window passes it.
    let (inside, value_then) = points[points.len() - 50];
    let held = db.snapshot_at(inside).expect("inside");
    for i in 0..500u32 {
        windowed.put("k", (5000 + i).to_le_bytes()).expect("put");
    }
    windowed.compact().expect("compact");
    assert_eq!(
        held.get(&windowed, "k").expect("held").as_deref(),
        Some(&value_then.to_le_bytes()[..])
    );
    assert!(
        db.snapshot_at(SeqNo(latest.0 + 1_000_000)).is_err(),
        "the future"
    );
}

#[test]
fn reads_at_a_past_time_see_the_state_of_the_newest_mark_before_it_even_after_reopen() {
    let dir = tempfile::tempdir().expect("dir");
    let options = Options {
        history_mark_interval: Duration::from_millis(5),
        ..Options::default()
    };
    let ks_options = KeyspaceOptions {
        history_age: Some(Duration::from_secs(3600)),
        ..KeyspaceOptions::default()
    };
    let db = Db::open(dir.path(), options.clone()).expect("open");
    let ks = db.create_keyspace("agent", ks_options).expect("ks");
    let mut times = Vec::new();
    for round in 0..5u32 {
        ks.put("plan", format!("plan {round}")).expect("put");
        ks.put(format!("fact{round}"), "known").expect("put");
        // Let a mark note this state, then remember a time after it.
        std::thread::sleep(Duration::from_millis(40));
        times.push((SystemTime::now(), round));
        std::thread::sleep(Duration::from_millis(40));
        ks.flush().expect("flush");
        ks.compact().expect("compact");
    }
    let check = |db: &Db, ks: &strata::Keyspace, context: &str| {
        for (t, round) in &times {
            let s = db
                .snapshot_at_time(*t)
                .unwrap_or_else(|e| panic!("{context}: at round {round}: {e}"));
            assert_eq!(
                s.get(ks, "plan").expect("get").as_deref(),
                Some(format!("plan {round}").as_bytes()),
                "{context}: round {round}"
            );
            let facts = s.prefix(ks, "fact").count();
            assert_eq!(
                facts as u32,
                round + 1,
                "{context}: facts known at round {round}"
            );
        }
    };
    check(&db, &ks, "open");
    drop(ks);
    db.close().expect("close");
    let db = Db::open(dir.path(), options).expect("reopen");
    let ks = db.keyspace("agent").expect("ks");
    check(&db, &ks, "after reopen");
    let future = SystemTime::now() + Duration::from_secs(3600);
    assert!(matches!(
        db.snapshot_at_time(future),
        Err(Error::TimeUnavailable { .. })
    ));
    let ancient = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    match db.snapshot_at_time(ancient) {
        Err(e @ Error::TimeUnavailable { .. }) => assert!(e.to_string().contains("oldest"), "{e}"),
        other => panic!("expected TimeUnavailable, got {other:?}"),
    }
}

#[test]
fn a_window_by_age_lets_old_versions_go_once_they_age_out() {
    let dir = tempfile::tempdir().expect("dir");
    let options = Options {
        history_mark_interval: Duration::from_millis(5),
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).expect("open");
    let ks = db
        .create_keyspace(
            "agent",
            KeyspaceOptions {
                history_age: Some(Duration::from_millis(300)),
                ..KeyspaceOptions::default()
            },
        )
        .expect("ks");
    ks.put("k", "old").expect("put");
    let old = db.latest_seqno();
    std::thread::sleep(Duration::from_millis(30));
    for i in 0..50u32 {
        ks.put("k", format!("new {i}")).expect("put");
    }
    ks.compact().expect("compact");
    // Young: still there.
    let s = db.snapshot_at(old).expect("inside the age window");
    assert_eq!(s.get(&ks, "k").expect("get").as_deref(), Some(&b"old"[..]));
    drop(s);
    // Aged out: the next compaction collects it and reads there are refused.
    std::thread::sleep(Duration::from_millis(600));
    ks.put("k", "newest").expect("put");
    std::thread::sleep(Duration::from_millis(30));
    ks.compact().expect("compact");
    assert!(
        db.history_floor(&ks) > old,
        "the floor moved past the aged-out version"
    );
    let s = db.snapshot_at(old).expect("the default keyspace holds it");
    assert!(matches!(
        s.get(&ks, "k"),
        Err(Error::HistoryUnavailable { .. })
    ));
}
