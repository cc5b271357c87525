//! Basic behaviour of the database: reads see writes, across flushes, compactions
//! and reopen; keyspaces; batches; iterators both ways; prefix deletes; errors.

use std::sync::Arc;

use strata::{Db, Error, FaultFs, Fs, KeyspaceOptions, Options, WriteBatch, WriteOptions};

fn small_options() -> KeyspaceOptions {
    KeyspaceOptions {
        memtable_bytes: 16 << 10,
        base_level_bytes: 64 << 10,
        target_table_bytes: 16 << 10,
        ..KeyspaceOptions::default()
    }
}

fn keys(iter: impl Iterator<Item = strata::Result<(strata::Bytes, strata::Bytes)>>) -> Vec<String> {
    iter.map(|kv| String::from_utf8(kv.unwrap().0.to_vec()).unwrap())
        .collect()
}

#[test]
fn put_get_delete_through_flush_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.create_keyspace("data", small_options()).unwrap();
    for i in 0..3000u32 {
        ks.put(format!("key{i:05}"), format!("value{i}")).unwrap();
    }
    for i in (0..3000u32).step_by(3) {
        ks.delete(format!("key{i:05}")).unwrap();
    }
    ks.flush().unwrap();
    assert!(db.stats().keyspaces.iter().any(|k| k.flushes > 0));
    for i in 0..3000u32 {
        let got = ks.get(format!("key{i:05}")).unwrap();
        if i % 3 == 0 {
            assert_eq!(got, None, "key{i:05}");
        } else {
            assert_eq!(got.as_deref(), Some(format!("value{i}").as_bytes()));
        }
    }
    ks.compact().unwrap();
    assert_eq!(ks.iter().count(), 2000);
    drop(ks);
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.keyspace("data").unwrap();
    assert_eq!(ks.options(), &small_options());
    assert_eq!(ks.get("key00001").unwrap().as_deref(), Some(&b"value1"[..]));
    assert_eq!(ks.get("key00003").unwrap(), None);
    assert_eq!(ks.iter().count(), 2000);
    assert_eq!(ks.iter().rev().count(), 2000);
}

#[test]
fn unflushed_writes_survive_reopen_through_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let ks = db.default_keyspace().unwrap();
        ks.put("a", "1").unwrap();
        ks.put_opt("b", "2", &WriteOptions::sync()).unwrap();
    }
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.default_keyspace().unwrap();
    assert_eq!(ks.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(ks.get("b").unwrap().as_deref(), Some(&b"2"[..]));
}

#[test]
fn iterators_ranges_prefixes_and_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.create_keyspace("it", small_options()).unwrap();
    for k in ["a", "b/1", "b/2", "b/3", "c", "d"] {
        ks.put(k, k.to_uppercase()).unwrap();
    }
    ks.flush().unwrap();
    ks.put("b/2", "new").unwrap();
    ks.delete("c").unwrap();
    assert_eq!(keys(ks.iter()), vec!["a", "b/1", "b/2", "b/3", "d"]);
    assert_eq!(keys(ks.iter().rev()), vec!["d", "b/3", "b/2", "b/1", "a"]);
    assert_eq!(keys(ks.prefix("b/")), vec!["b/1", "b/2", "b/3"]);
    assert_eq!(keys(ks.prefix("b/").rev()), vec!["b/3", "b/2", "b/1"]);
    assert_eq!(keys(ks.range(Some(b"b/2"), Some(b"d"))), vec!["b/2", "b/3"]);
    // Both ends meet in the middle.
    let mut it = ks.iter();
    assert_eq!(it.next().unwrap().unwrap().0, "a");
    assert_eq!(it.next_back().unwrap().unwrap().0, "d");
    assert_eq!(it.next().unwrap().unwrap().0, "b/1");
    assert_eq!(it.next_back().unwrap().unwrap().0, "b/3");
    assert_eq!(it.next().unwrap().unwrap().1, "new");
    assert!(it.next_back().is_none());
    let mut c = ks.cursor().unwrap();
    c.seek(b"b/25").unwrap();
    assert_eq!(c.key(), b"b/3");
    c.prev().unwrap();
    assert_eq!(c.key(), b"b/2");
    c.seek_for_prev(b"c").unwrap();
    assert_eq!(c.key(), b"b/3");
    c.next().unwrap();
    assert_eq!(c.key(), b"d");
    c.next().unwrap();
    assert!(!c.valid());
}

#[test]
fn delete_prefix_hides_and_then_compaction_removes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.create_keyspace("p", small_options()).unwrap();
    for agent in 0..5 {
        for e in 0..200 {
            ks.put(format!("agent{agent}/{e:04}"), "event").unwrap();
        }
    }
    ks.flush().unwrap();
    let before = db.snapshot();
    ks.delete_prefix("agent2/").unwrap();
    ks.put("agent2/9999", "after").unwrap();
    assert_eq!(ks.get("agent2/0005").unwrap(), None);
    assert_eq!(keys(ks.prefix("agent2/")), vec!["agent2/9999"]);
    assert_eq!(before.prefix(&ks, "agent2/").count(), 200);
    assert_eq!(ks.iter().count(), 801);
    ks.compact().unwrap();
    assert_eq!(
        before.prefix(&ks, "agent2/").count(),
        200,
        "snapshot keeps covered versions"
    );
    drop(before);
    ks.compact().unwrap();
    assert_eq!(ks.iter().count(), 801);
    assert_eq!(ks.iter().rev().count(), 801);
    drop(ks);
    drop(db);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.keyspace("p").unwrap();
    assert_eq!(keys(ks.prefix("agent2/")), vec!["agent2/9999"]);
}

#[test]
fn batches_span_keyspaces_and_snapshots_are_stable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let a = db.create_keyspace("a", KeyspaceOptions::default()).unwrap();
    let b = db.create_keyspace("b", KeyspaceOptions::default()).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(&a, "k", "1");
    batch.put(&b, "k", "2");
    db.write(batch).unwrap();
    let snap = db.snapshot();
    a.put("k", "changed").unwrap();
    b.delete("k").unwrap();
    assert_eq!(snap.get(&a, "k").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(snap.get(&b, "k").unwrap().as_deref(), Some(&b"2"[..]));
    a.flush().unwrap();
    b.compact().unwrap();
    assert_eq!(snap.get(&b, "k").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(b.get("k").unwrap(), None);
}

#[test]
fn keyspaces_are_durable_and_droppable() {
    let fs = FaultFs::new(1);
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    let db = Db::open_with_fs("/db", Options::default(), Arc::clone(&shared)).unwrap();
    let logs = db
        .create_keyspace("logs", KeyspaceOptions::default())
        .unwrap();
    logs.put_opt("x", "y", &WriteOptions::sync()).unwrap();
    assert!(matches!(
        db.create_keyspace("logs", KeyspaceOptions::default()),
        Err(Error::KeyspaceExists(_))
    ));
    assert_eq!(db.list_keyspaces(), vec!["default", "logs"]);
    fs.power_off(strata_wal::CrashMode::DropUnsynced);
    drop(logs);
    drop(db);
    fs.restart();
    let db = Db::open_with_fs("/db", Options::default(), Arc::clone(&shared)).unwrap();
    let logs = db.keyspace("logs").unwrap();
    assert_eq!(logs.get("x").unwrap().as_deref(), Some(&b"y"[..]));
    db.drop_keyspace("logs").unwrap();
    assert!(matches!(logs.get("x"), Err(Error::UnknownKeyspace(_))));
    assert!(matches!(
        db.keyspace("logs"),
        Err(Error::UnknownKeyspace(_))
    ));
    drop(logs);
    drop(db);
    let db = Db::open_with_fs("/db", Options::default(), shared).unwrap();
    assert_eq!(db.list_keyspaces(), vec!["default"]);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.default_keyspace().unwrap();
    let big_key = vec![0u8; 64 * 1024 + 1];
    assert!(matches!(
        ks.put(&big_key, "v"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(ks.get(&big_key), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        db.keyspace("nope"),
        Err(Error::UnknownKeyspace(_))
    ));
    let bad = KeyspaceOptions {
        block_size: 1,
        ..KeyspaceOptions::default()
    };
    assert!(matches!(
        db.create_keyspace("bad", bad),
        Err(Error::InvalidArgument(_))
    ));
    db.close().unwrap();
    assert!(matches!(ks.put("a", "b"), Err(Error::Closed)));
    assert!(matches!(ks.get("a"), Err(Error::Closed)));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert!(matches!(
        Db::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    db.close().unwrap();
    drop(db);
    Db::open(dir.path(), Options::default()).unwrap();
}

#[test]
fn tombstones_are_kept_until_nothing_older_lies_below() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let options = KeyspaceOptions {
        memtable_bytes: 4096,
        l0_compaction_trigger: 2,
        base_level_bytes: 4096,
        level_size_ratio: 2,
        target_table_bytes: 4096,
        ..KeyspaceOptions::default()
    };
    let ks = db.create_keyspace("deep", options).unwrap();
    for i in 0..3000u32 {
        ks.put(format!("key{i:05}"), [b'v'; 100]).unwrap();
    }
    db.wait_for_background_work().unwrap();
    let deepest = db
        .stats()
        .keyspace("deep")
        .unwrap()
        .levels
        .iter()
        .rposition(|l| l.tables > 0)
        .unwrap();
    assert!(deepest >= 3, "want a deep tree, got {}", db.stats());
    for i in (0..3000u32).step_by(2) {
        ks.delete(format!("key{i:05}")).unwrap();
    }
    db.wait_for_background_work().unwrap();
    for i in 0..3000u32 {
        let got = ks.get(format!("key{i:05}")).unwrap();
        assert_eq!(
            got.is_some(),
            i % 2 == 1,
            "key{i:05} after compactions: {}",
            db.stats()
        );
    }
    assert_eq!(ks.iter().count(), 1500);
    assert_eq!(ks.iter().rev().count(), 1500);
    // Seeks and direction changes across the tables of every level land on the live
    // (odd) keys around the target.
    let mut c = ks.cursor().unwrap();
    for probe in (0..3000u32).step_by(7) {
        let target = format!("key{probe:05}");
        c.seek(target.as_bytes()).unwrap();
        let next_odd = if probe % 2 == 1 { probe } else { probe + 1 };
        if next_odd < 3000 {
            assert_eq!(
                c.key(),
                format!("key{next_odd:05}").as_bytes(),
                "seek {target}"
            );
            c.prev().unwrap();
            if next_odd >= 3 {
                assert_eq!(
                    c.key(),
                    format!("key{:05}", next_odd - 2).as_bytes(),
                    "prev after seek {target}"
                );
                c.next().unwrap();
                assert_eq!(
                    c.key(),
                    format!("key{next_odd:05}").as_bytes(),
                    "next after prev {target}"
                );
            }
        } else {
            assert!(!c.valid());
        }
        c.seek_for_prev(target.as_bytes()).unwrap();
        let prev_odd = if probe % 2 == 1 {
            Some(probe)
        } else {
            probe.checked_sub(1)
        };
        match prev_odd {
            Some(p) => assert_eq!(
                c.key(),
                format!("key{p:05}").as_bytes(),
                "seek_for_prev {target}"
            ),
            None => assert!(!c.valid()),
        }
    }
}

#[test]
fn the_builder_applies_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = Db::builder(&missing)
        .create_if_missing(false)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(matches!(
        Db::builder(dir.path()).background_threads(0).open(),
        Err(Error::InvalidArgument(_))
    ));
    let db = Db::builder(dir.path())
        .background_threads(1)
        .block_cache_bytes(1 << 20)
        .use_mmap(false)
        .open()
        .unwrap();
    let ks = db.default_keyspace().unwrap();
    ks.put("k", "v").unwrap();
    ks.flush().unwrap();
    assert_eq!(ks.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn the_write_buffer_budget_is_shared_across_keyspaces() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        write_buffer_bytes: 256 << 10,
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    // Each keyspace alone would keep 32 MiB in memory; together they must stay near
    // the 256 KiB budget.
    let spaces: Vec<_> = (0..4)
        .map(|i| {
            db.create_keyspace(&format!("ks{i}"), KeyspaceOptions::default())
                .unwrap()
        })
        .collect();
    for i in 0..20_000u32 {
        spaces[(i % 4) as usize]
            .put(format!("key{i:06}"), [7u8; 100])
            .unwrap();
    }
    db.wait_for_background_work().unwrap();
    let stats = db.stats();
    let in_memory: u64 = stats.keyspaces.iter().map(|k| k.memtable_bytes).sum();
    let flushes: u64 = stats.keyspaces.iter().map(|k| k.flushes).sum();
    assert!(flushes >= 4, "{stats}");
    assert!(
        in_memory <= 2 * (256 << 10),
        "{in_memory} bytes in memtables: {stats}"
    );
    for (i, ks) in spaces.iter().enumerate() {
        assert_eq!(ks.iter().count(), 5000, "keyspace {i}");
    }
}

#[test]
fn handles_are_send_sync_and_cheap_to_clone() {
    fn shared<T: Send + Sync + Clone>() {}
    fn sendable<T: Send>() {}
    shared::<Db>();
    shared::<strata::Keyspace>();
    sendable::<strata::Snapshot>();
    sendable::<strata::Iter>();
    sendable::<strata::Cursor>();
}

#[test]
fn keyspaces_of_another_database_are_refused() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = Db::open(dir_a.path(), Options::default()).unwrap();
    let b = Db::open(dir_b.path(), Options::default()).unwrap();
    let ks_a = a.default_keyspace().unwrap();
    let ks_b = b.default_keyspace().unwrap();
    let mut batch = WriteBatch::new();
    batch.put(&ks_b, "k", "v");
    assert!(matches!(a.write(batch), Err(Error::InvalidArgument(_))));
    let mut mixed = WriteBatch::new();
    mixed.put(&ks_a, "k", "v");
    mixed.put(&ks_b, "k", "v");
    assert!(matches!(a.write(mixed), Err(Error::InvalidArgument(_))));
    let snap = a.snapshot();
    assert!(matches!(
        snap.get(&ks_b, "k"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        snap.iter(&ks_b).next(),
        Some(Err(Error::InvalidArgument(_)))
    ));
    assert!(matches!(snap.cursor(&ks_b), Err(Error::InvalidArgument(_))));
    assert_eq!(
        ks_b.get("k").unwrap(),
        None,
        "nothing leaked into the other database"
    );
}

#[test]
fn dropping_a_keyspace_stops_its_flushes_and_stalled_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let options = KeyspaceOptions {
        memtable_bytes: 4096,
        max_sealed_memtables: 1,
        ..KeyspaceOptions::default()
    };
    for round in 0..20 {
        let name = format!("ks{round}");
        let ks = db.create_keyspace(&name, options.clone()).unwrap();
        let writer = {
            let ks = ks.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    if let Err(e) = ks.put(format!("k{i:06}"), [1u8; 200]) {
                        return Some(e);
                    }
                }
                None
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(5));
        db.drop_keyspace(&name).unwrap();
        // The writer ends (with UnknownKeyspace or after its last put), never hangs.
        if let Some(e) = writer.join().unwrap() {
            assert!(matches!(e, Error::UnknownKeyspace(_)), "{e}");
        }
        assert!(matches!(ks.flush(), Err(Error::UnknownKeyspace(_))));
        assert!(matches!(ks.compact(), Err(Error::UnknownKeyspace(_))));
    }
    drop(db);
    // Reopens cleanly: no edit names a dropped keyspace.
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.list_keyspaces(), vec!["default"]);
}

#[test]
fn a_keyspace_created_after_unsynced_writes_keeps_its_sync_writes_after_power_loss() {
    let fault = FaultFs::new(4);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let db = Db::open_with_fs("/db", Options::default(), Arc::clone(&fs)).unwrap();
    let default = db.default_keyspace().unwrap();
    for i in 0..100 {
        default.put(format!("k{i}"), "buffered").unwrap();
    }
    let b = db.create_keyspace("b", KeyspaceOptions::default()).unwrap();
    fault.power_off(strata_wal::CrashMode::DropUnsynced);
    drop((default, b));
    drop(db);
    fault.restart();
    let db = Db::open_with_fs("/db", Options::default(), Arc::clone(&fs)).unwrap();
    let b = db.keyspace("b").unwrap();
    b.put_opt("x", "y", &WriteOptions::sync()).unwrap();
    drop(b);
    db.close().unwrap();
    drop(db);
    let db = Db::open_with_fs("/db", Options::default(), fs).unwrap();
    assert_eq!(
        db.keyspace("b").unwrap().get("x").unwrap().as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn an_idle_keyspace_does_not_pin_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        wal_segment_bytes: 64 << 10,
        max_wal_bytes: 256 << 10,
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    let busy = db
        .create_keyspace(
            "busy",
            KeyspaceOptions {
                memtable_bytes: 32 << 10,
                ..KeyspaceOptions::default()
            },
        )
        .unwrap();
    // One small write that never fills its 32 MiB memtable.
    let idle = db
        .create_keyspace("idle", KeyspaceOptions::default())
        .unwrap();
    idle.put("only", "write").unwrap();
    for i in 0..20_000u32 {
        busy.put(format!("k{i:06}"), [3u8; 100]).unwrap();
    }
    db.wait_for_background_work().unwrap();
    let stats = db.stats();
    // 20 000 writes are about 2.8 MB of log: without the bound, dozens of segments.
    assert!(
        stats.wal_segments <= 8,
        "{} WAL segments: {stats}",
        stats.wal_segments
    );
    assert!(stats.keyspace("idle").unwrap().flushes >= 1, "{stats}");
    drop((busy, idle));
    drop(db);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(
        db.keyspace("idle").unwrap().get("only").unwrap().as_deref(),
        Some(&b"write"[..])
    );
    assert_eq!(db.keyspace("busy").unwrap().iter().count(), 20_000);
}

#[test]
fn the_manifest_rolls_over_while_the_database_runs() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        manifest_rollover_bytes: 4096,
        ..Options::default()
    };
    let manifests = |path: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("MANIFEST-"))
            .collect()
    };
    let db = Db::open(dir.path(), options.clone()).unwrap();
    let first = manifests(dir.path());
    let ks = db
        .create_keyspace(
            "k",
            KeyspaceOptions {
                memtable_bytes: 4096,
                ..KeyspaceOptions::default()
            },
        )
        .unwrap();
    for i in 0..20_000u32 {
        ks.put(format!("key{:06}", (i * 7919) % 20_000), [5u8; 60])
            .unwrap();
    }
    db.wait_for_background_work().unwrap();
    let now = manifests(dir.path());
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, first, "the manifest never rolled over");
    let len = std::fs::metadata(dir.path().join(&now[0])).unwrap().len();
    assert!(len < 64 << 10, "manifest is {len} bytes");
    drop(ks);
    drop(db);
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(db.keyspace("k").unwrap().iter().count(), 20_000);
}

#[test]
fn a_failed_flush_poisons_writes_and_reopen_keeps_what_was_acknowledged() {
    use strata_wal::{FaultKind, FaultOp, FaultRule};
    let fault = FaultFs::new(6);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let db = Db::open_with_fs("/db", Options::default(), Arc::clone(&fs)).unwrap();
    let ks = db.default_keyspace().unwrap();
    for i in 0..100u32 {
        ks.put_opt(format!("k{i:03}"), "v", &WriteOptions::sync())
            .unwrap();
    }
    // Every fsync fails from now on: the flush (table, WAL or manifest fsync) fails.
    fault.inject(FaultRule::from_nth_on(FaultOp::Sync, 1, FaultKind::Eio));
    assert!(ks.flush().is_err());
    let err = ks.put("late", "x").unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    assert!(db.stats().poisoned.is_some());
    // Reads go on.
    assert_eq!(ks.get("k000").unwrap().as_deref(), Some(&b"v"[..]));
    drop(ks);
    drop(db);
    fault.clear_faults();
    fault.crash();
    let db = Db::open_with_fs("/db", Options::default(), fs).unwrap();
    let ks = db.default_keyspace().unwrap();
    assert_eq!(ks.iter().count(), 100);
    assert_eq!(ks.get("late").unwrap(), None);
}
