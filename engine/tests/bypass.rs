//! WAL-bypass: what the write path refuses, the bounds on what a crash can take, and
//! that bypass keyspaces stay out of the WAL (no bytes written, no segment pinned, no
//! replay). Crash semantics under random operations are in `model_btreemap.rs`, under
//! process kills in `crash_bypass_kill.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::{
    Db, Durability, Error, FaultFs, Fs, KeyspaceOptions, Options, WriteBatch, WriteOptions,
};
use strata_wal::CrashMode;

fn bypass(options: KeyspaceOptions) -> KeyspaceOptions {
    KeyspaceOptions {
        durability: Durability::Bypass,
        ..options
    }
}

/// A bypass keyspace flushed only when its memtable fills or on request.
fn bypass_without_interval() -> KeyspaceOptions {
    bypass(KeyspaceOptions {
        bypass_flush_interval: None,
        ..KeyspaceOptions::default()
    })
}

fn logged(durability: Durability) -> KeyspaceOptions {
    KeyspaceOptions {
        durability,
        ..KeyspaceOptions::default()
    }
}

#[test]
fn batches_that_cannot_keep_one_promise_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let events = db
        .create_keyspace("events", bypass(KeyspaceOptions::default()))
        .unwrap();
    let state = db
        .create_keyspace("state", logged(Durability::Sync))
        .unwrap();

    let mut mixed = WriteBatch::new();
    mixed.put(&events, "e", "1");
    mixed.put(&state, "s", "1");
    match db.write(mixed) {
        Err(Error::InvalidArgument(msg)) => {
            assert!(msg.contains("events") && msg.contains("state"), "{msg}");
        }
        other => panic!("a mixed batch was not refused: {other:?}"),
    }
    for d in [Durability::Sync, Durability::Buffered] {
        let got = events.put_opt(
            "e",
            "1",
            &WriteOptions {
                durability: Some(d),
            },
        );
        assert!(
            matches!(got, Err(Error::InvalidArgument(_))),
            "{d:?} on a bypass keyspace: {got:?}"
        );
    }
    // Nothing of the refused writes was applied.
    assert_eq!(events.get("e").unwrap(), None);
    assert_eq!(state.get("s").unwrap(), None);

    // Nor written without the WAL: a bypass batch must stay within one keyspace, or
    // a crash could keep it in one and not the other.
    let other = db
        .create_keyspace("other-events", bypass(KeyspaceOptions::default()))
        .unwrap();
    let mut across = WriteBatch::new();
    across.put(&events, "e", "2");
    across.put(&other, "o", "2");
    for (batch, options) in [
        (across.clone(), WriteOptions::default()),
        (across, WriteOptions::bypass()),
    ] {
        let got = db.write_opt(batch, &options);
        assert!(
            matches!(got, Err(Error::InvalidArgument(ref m)) if m.contains("one keyspace")),
            "{got:?}"
        );
    }
    let mut mixed = WriteBatch::new();
    mixed.put(&events, "e", "2");
    mixed.put(&state, "s", "2");
    assert!(db.write_opt(mixed, &WriteOptions::bypass()).is_err());
    assert_eq!(events.get("e").unwrap(), None);
    assert_eq!(other.get("o").unwrap(), None);

    // A bypass write to a logged keyspace is accepted.
    state.put_opt("s", "3", &WriteOptions::bypass()).unwrap();
    assert_eq!(state.get("s").unwrap().as_deref(), Some(&b"3"[..]));
}

#[test]
fn bypass_writes_write_nothing_to_the_wal_and_count_as_at_risk() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let events = db
        .create_keyspace("events", bypass(KeyspaceOptions::default()))
        .unwrap();
    let wal_before = db.stats().wal_bytes;
    let mut bytes = 0;
    for i in 0..1000u32 {
        let (k, v) = (format!("agent-1/{i:08}"), vec![b'x'; 100]);
        bytes += (k.len() + v.len()) as u64;
        events.put(k, v).unwrap();
    }
    let stats = db.stats();
    assert_eq!(stats.wal_bytes, wal_before, "bypass writes reached the WAL");
    assert_eq!(stats.bypass_bytes_at_risk(), bytes);
    let ks = stats.keyspace("events").unwrap();
    assert_eq!(ks.durability, Durability::Bypass);
    assert!(ks.bypass_oldest_unflushed.is_some());
    db.flush_keyspace(&events).unwrap();
    let stats = db.stats();
    assert_eq!(stats.bypass_bytes_at_risk(), 0);
    assert!(stats
        .keyspaces
        .iter()
        .all(|k| k.bypass_oldest_unflushed.is_none()));
    assert_eq!(stats.wal_bytes, wal_before);
}

#[test]
fn unflushed_bypass_bytes_stay_within_their_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let limit = 64 << 10;
    let events = db
        .create_keyspace(
            "events",
            bypass(KeyspaceOptions {
                bypass_max_unflushed_bytes: Some(limit),
                bypass_flush_interval: None,
                ..KeyspaceOptions::default()
            }),
        )
        .unwrap();
    let value = vec![b'v'; 200];
    let mut most = 0;
    for i in 0..5000u32 {
        events.put(format!("e/{i:08}"), &value).unwrap();
        most = most.max(db.stats().bypass_bytes_at_risk());
    }
    // A write is admitted below the bound, so the bound is passed by one write at most.
    let one_write = (10 + value.len()) as u64;
    assert!(
        most < limit + one_write,
        "{most} bytes at risk with a bound of {limit}"
    );
    let flushes: u64 = db.stats().keyspaces.iter().map(|k| k.flushes).sum();
    assert!(flushes >= 10, "only {flushes} flushes for 1 MB of events");
    assert_eq!(events.iter().count(), 5000);
}

#[test]
fn old_bypass_writes_are_flushed_on_their_interval() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let events = db
        .create_keyspace(
            "events",
            bypass(KeyspaceOptions {
                bypass_flush_interval: Some(Duration::from_millis(20)),
                ..KeyspaceOptions::default()
            }),
        )
        .unwrap();
    events.put("e/1", "one").unwrap();
    assert!(db.stats().bypass_bytes_at_risk() > 0);
    // No call flushes it: the interval does. (The deadline only keeps a broken build
    // from hanging; it is far above the interval.)
    let give_up = Instant::now() + Duration::from_secs(60);
    while db.stats().bypass_bytes_at_risk() > 0 {
        assert!(Instant::now() < give_up, "never flushed: {}", db.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let flushes: u64 = db.stats().keyspaces.iter().map(|k| k.flushes).sum();
    assert!(flushes >= 1);
}

#[test]
fn a_busy_bypass_keyspace_pins_no_wal_segment() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        wal_segment_bytes: 16 << 10,
        max_wal_bytes: 64 << 10,
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    let events = db
        .create_keyspace("events", bypass_without_interval())
        .unwrap();
    let state = db
        .create_keyspace("state", logged(Durability::Buffered))
        .unwrap();
    for i in 0..3000u32 {
        events.put(format!("e/{i:08}"), [1u8; 100]).unwrap();
        state.put(format!("s/{:04}", i % 100), [2u8; 100]).unwrap();
    }
    // The logged keyspace flushes; the bypass one still holds all its events in
    // memory, and must not keep a single old segment alive.
    state.flush().unwrap();
    let stats = db.stats();
    assert!(stats.bypass_bytes_at_risk() > 0);
    assert!(
        stats.wal_segments <= 1,
        "{} WAL segments kept while only the bypass keyspace has unflushed data",
        stats.wal_segments
    );
}

#[test]
fn after_a_power_loss_bypass_entries_of_a_logged_keyspace_are_gone_unless_flushed() {
    let fault = FaultFs::new(7);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let open = || Db::open_with_fs("/db", Options::default(), Arc::clone(&fs)).unwrap();
    let db = open();
    let state = db
        .keyspace_or_create("state", logged(Durability::Sync))
        .unwrap();
    state.put("before", "kept").unwrap();
    state
        .put_opt("flushed", "kept", &WriteOptions::bypass())
        .unwrap();
    state.flush().unwrap();
    state
        .put_opt("unflushed", "lost", &WriteOptions::bypass())
        .unwrap();
    state.put("after", "kept").unwrap();
    fault.power_off(CrashMode::DropUnsynced);
    drop(state);
    drop(db);
    fault.restart();
    let db = open();
    let state = db
        .keyspace_or_create("state", logged(Durability::Sync))
        .unwrap();
    let got: Vec<String> = state
        .iter()
        .map(|kv| String::from_utf8(kv.unwrap().0.to_vec()).unwrap())
        .collect();
    assert_eq!(got, ["after", "before", "flushed"]);
}

#[test]
fn a_clean_close_flushes_bypass_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let events = db
            .create_keyspace("events", bypass_without_interval())
            .unwrap();
        for i in 0..100u32 {
            events.put(format!("e/{i:03}"), "x").unwrap();
        }
        // Dropped without close: the last handle closes.
    }
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let events = db.keyspace("events").unwrap();
    assert_eq!(events.options().durability, Durability::Bypass);
    assert_eq!(events.iter().count(), 100);
}

#[test]
fn bypass_options_are_validated_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for bad in [
        KeyspaceOptions {
            bypass_flush_interval: Some(Duration::from_micros(10)),
            ..KeyspaceOptions::default()
        },
        KeyspaceOptions {
            bypass_max_unflushed_bytes: Some(100),
            ..KeyspaceOptions::default()
        },
    ] {
        assert!(matches!(
            db.create_keyspace("bad", bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    let options = bypass(KeyspaceOptions {
        bypass_flush_interval: Some(Duration::from_millis(1500)),
        bypass_max_unflushed_bytes: None,
        ..KeyspaceOptions::default()
    });
    db.create_keyspace("events", options.clone()).unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.keyspace("events").unwrap().options(), &options);
}

#[test]
fn bypass_writes_racing_a_close_are_flushed_or_refused() {
    for round in 0..30u64 {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let events = db
            .create_keyspace("events", bypass_without_interval())
            .unwrap();
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writer = {
            let (events, acked) = (events.clone(), Arc::clone(&acked));
            std::thread::spawn(move || {
                for i in 0u64.. {
                    match events.put(format!("e/{i:010}"), "x") {
                        Ok(()) => acked.store(i + 1, std::sync::atomic::Ordering::SeqCst),
                        Err(Error::Closed) => return,
                        Err(e) => panic!("write {i}: {e}"),
                    }
                }
            })
        };
        // Let the writer get going, a different while each round.
        while acked.load(std::sync::atomic::Ordering::SeqCst) < 100 + round * 37 {
            std::thread::yield_now();
        }
        db.close().unwrap();
        writer.join().unwrap();
        let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
        drop(events);
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let events = db.keyspace("events").unwrap();
        // Every acknowledged write was flushed by the close; none other was applied.
        assert_eq!(events.iter().count() as u64, acked, "round {round}");
    }
}

#[test]
fn the_byte_bound_holds_when_flushes_cannot_keep_up() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        // Compaction crawls, so level 0 stays full and memtables cannot be sealed.
        compaction_write_bytes_per_sec: 16 << 10,
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    let limit: u64 = 64 << 10;
    let events = db
        .create_keyspace(
            "events",
            bypass(KeyspaceOptions {
                bypass_max_unflushed_bytes: Some(limit),
                bypass_flush_interval: None,
                memtable_bytes: 4 << 20,
                l0_compaction_trigger: 2,
                l0_slowdown_trigger: 2,
                l0_stop_trigger: 2,
                slowdown_write_bytes_per_sec: 1 << 30,
                ..KeyspaceOptions::default()
            }),
        )
        .unwrap();
    let value = vec![b'v'; 1000];
    let writer = {
        let (events, value) = (events.clone(), value.clone());
        std::thread::spawn(move || {
            for i in 0u64.. {
                match events.put(format!("e/{:010}", (i * 7919) % 1_000_003), &value) {
                    Ok(()) => {}
                    Err(Error::Closed) => return i,
                    Err(e) => panic!("write {i}: {e}"),
                }
            }
            unreachable!()
        })
    };
    // Watch for a while: what is at risk never passes the bound by more than one
    // write, and the writer is held back (stops) instead.
    let one_write = (12 + value.len()) as u64;
    let mut most = 0;
    let mut stats = db.stats();
    for _ in 0..400 {
        stats = db.stats();
        most = most.max(stats.bypass_bytes_at_risk());
        std::thread::sleep(Duration::from_millis(2));
    }
    let ks = stats.keyspace("events").unwrap();
    assert!(
        most < limit + one_write,
        "{most} bytes at risk with a bound of {limit}: {stats}"
    );
    assert!(ks.stops > 0, "the writer was never held back: {stats}");
    db.close().unwrap();
    let written = writer.join().unwrap();
    assert!(written > 0);
}
