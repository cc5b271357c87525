//! Compaction in the engine: write stalls hold the configured limits under a fill that
//! outruns compaction, snapshots keep their versions through compactions and lose them
//! after release, the compaction filter (TTL) and `compact_range`, and the background
//! write rate limit — each under every policy where the policy matters; and HCA's
//! level 0 tiering for append-only keyspaces, not for ones with overwrites.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use strata::{
    CompactionFilter, CompactionStyle, Db, FilterDecision, KeyspaceOptions, KeyspaceStats, Options,
    TtlFilter,
};

const STYLES: [CompactionStyle; 3] = [
    CompactionStyle::Leveled,
    CompactionStyle::Tiered,
    CompactionStyle::Hca,
];

fn small(style: CompactionStyle) -> KeyspaceOptions {
    KeyspaceOptions {
        compaction: style,
        memtable_bytes: 32 << 10,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 4,
        l0_stop_trigger: 6,
        max_sealed_memtables: 2,
        level_size_ratio: 4,
        base_level_bytes: 128 << 10,
        target_table_bytes: 64 << 10,
        block_size: 1024,
        ..KeyspaceOptions::default()
    }
}

fn ks_stats(db: &Db, name: &str) -> KeyspaceStats {
    db.stats().keyspace(name).cloned().expect("keyspace stats")
}

fn total_entries(s: &KeyspaceStats) -> u64 {
    s.levels.iter().map(|l| l.entries).sum()
}

fn key(i: u64) -> Vec<u8> {
    format!("key{:08}", i).into_bytes()
}

/// A fill from two threads far faster than compaction (held to 1 MB/s by the rate
/// limit): level 0 never passes `l0_stop_trigger`, writes did stop, and every write is
/// readable.
#[test]
fn stalls_hold_level0_and_debt_limits_under_a_fill_that_outruns_compaction() {
    for style in STYLES {
        let dir = tempfile::tempdir().expect("dir");
        let options = Options {
            compaction_write_bytes_per_sec: 1 << 20,
            ..Options::default()
        };
        let db = Db::open(dir.path(), options).expect("open");
        let ks_options = KeyspaceOptions {
            soft_pending_compaction_bytes: 256 << 10,
            hard_pending_compaction_bytes: 1 << 20,
            ..small(style)
        };
        let ks = db.create_keyspace("fill", ks_options.clone()).expect("ks");
        let per_thread = 4_000u64;
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let ks = ks.clone();
                s.spawn(move || {
                    for i in 0..per_thread {
                        // Spread over the key space so every level overlaps.
                        let k = (i * 2 + t).wrapping_mul(2_654_435_761) % 1_000_000;
                        ks.put(key(k), vec![b'v'; 200]).expect("put");
                    }
                });
            }
        });
        let st = ks_stats(&db, "fill");
        assert!(
            st.max_l0_tables <= ks_options.l0_stop_trigger,
            "{style:?}: level 0 reached {} tables, limit {}",
            st.max_l0_tables,
            ks_options.l0_stop_trigger
        );
        assert!(
            st.stops > 0 && st.stall_micros > 0,
            "{style:?}: the fill never stalled, so the test proved nothing: {st:?}"
        );
        db.wait_for_background_work().expect("settle");
        for t in 0..2u64 {
            for i in (0..per_thread).step_by(97) {
                let k = (i * 2 + t).wrapping_mul(2_654_435_761) % 1_000_000;
                assert!(
                    ks.get(key(k)).expect("get").is_some(),
                    "{style:?}: lost a write"
                );
            }
        }
        db.close().expect("close");
    }
}

/// While the compaction debt is at `hard_pending_compaction_bytes` a write waits: it
/// is not acknowledged while the (rate-limited) compaction that would lower the debt
/// runs, and it fails with `Closed` when the database closes under it.
#[test]
fn writes_wait_while_compaction_debt_is_at_the_hard_limit() {
    for style in STYLES {
        let dir = tempfile::tempdir().expect("dir");
        let options = Options {
            // Compaction crawls, so the debt stays while we watch.
            compaction_write_bytes_per_sec: 16 << 10,
            ..Options::default()
        };
        let db = Db::open(dir.path(), options).expect("open");
        let ks_options = KeyspaceOptions {
            soft_pending_compaction_bytes: 1,
            hard_pending_compaction_bytes: 1,
            // Room for a round below, so only the test's flushes seal memtables.
            memtable_bytes: 4 << 20,
            ..small(style)
        };
        let ks = db.create_keyspace("debt", ks_options).expect("ks");
        // Flush memtables (below memtable_bytes, so none seals by itself) until
        // level 0 is due and the debt positive; the crawling compaction leaves it so
        // for seconds. (A fill that sealed memtables by itself would stall at the hard
        // limit until compaction caught up, and could end with no debt left.)
        // Wait for debt that a merge must pay: level-0 tables over a table already at
        // the bottom (the first level-0 table overlaps nothing below and is moved
        // there for free, which clears the debt at once).
        let mut before = ks_stats(&db, "debt");
        for round in 0..40u64 {
            let bottom = before.levels.last().map_or(0, |l| l.tables);
            if before.pending_compaction_bytes >= 1 && bottom > 0 {
                break;
            }
            // 200 KB a round: merging two rounds takes the crawling compaction over
            // 20 s, far longer than the test watches.
            for i in 0..200u64 {
                ks.put(key(i * 40 + round), vec![b'v'; 1000]).expect("put");
            }
            ks.flush().expect("flush");
            before = ks_stats(&db, "debt");
        }
        assert!(
            before.pending_compaction_bytes >= 1,
            "{style:?}: no debt to test with: {before:?}"
        );
        let writer = {
            let ks = ks.clone();
            std::thread::spawn(move || ks.put(key(1_000_000), "late"))
        };
        std::thread::sleep(Duration::from_millis(300));
        let during = ks_stats(&db, "debt");
        // The merge crawls for tens of seconds: the debt is still there.
        assert!(
            during.pending_compaction_bytes >= 1,
            "{style:?}: the debt went away, so the test proves nothing: {during:?}"
        );
        assert!(
            !writer.is_finished(),
            "{style:?}: a write was acknowledged under {} bytes of debt",
            during.pending_compaction_bytes
        );
        assert!(
            during.stops > before.stops,
            "{style:?}: the wait is not counted"
        );
        db.close().expect("close");
        let outcome = writer.join().expect("writer thread");
        assert!(
            matches!(outcome, Err(strata::Error::Closed)),
            "{style:?}: the waiting write ended with {outcome:?}"
        );
    }
}

/// Versions a live snapshot sees survive any number of compactions; once the
/// snapshot is released, compaction drops them.
#[test]
fn snapshot_versions_survive_compactions_and_go_after_release() {
    for style in STYLES {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::open(dir.path(), Options::default()).expect("open");
        let ks = db.create_keyspace("s", small(style)).expect("ks");
        let keys = 2_000u64;
        for i in 0..keys {
            ks.put(key(i), format!("old-{i}")).expect("put");
        }
        let snap = db.snapshot();
        let mut latest = BTreeMap::new();
        for round in 0..5u64 {
            for i in (round..keys).step_by(3) {
                let v = format!("new-{round}-{i}-{}", "x".repeat(100));
                ks.put(key(i), &v).expect("put");
                latest.insert(i, v);
            }
            if round % 2 == 1 {
                ks.delete(key(round)).expect("delete");
                latest.remove(&round);
            }
            db.wait_for_background_work().expect("settle");
            ks.compact_range(Some(&key(keys / 4)), Some(&key(keys / 2)))
                .expect("compact_range");
            ks.compact().expect("compact");
        }
        for i in 0..keys {
            let got = snap.get(&ks, key(i)).expect("snapshot get");
            assert_eq!(
                got.as_deref(),
                Some(format!("old-{i}").as_bytes()),
                "{style:?}: the snapshot lost key {i}"
            );
        }
        let scanned = snap.iter(&ks).count() as u64;
        assert_eq!(scanned, keys, "{style:?}: snapshot scan");
        let before = total_entries(&ks_stats(&db, "s"));
        assert!(before > keys, "{style:?}: old versions must still be held");
        drop(snap);
        ks.compact().expect("compact");
        let after = total_entries(&ks_stats(&db, "s"));
        let live = keys - 2; // two keys deleted (rounds 1 and 3)
        assert_eq!(
            after, live,
            "{style:?}: after release only the newest version of each live key remains"
        );
        for i in 0..keys {
            let want = match latest.get(&i) {
                Some(v) => Some(v.clone().into_bytes()),
                None if i == 1 || i == 3 => None,
                None => Some(format!("old-{i}").into_bytes()),
            };
            assert_eq!(ks.get(key(i)).expect("get").map(|b| b.to_vec()), want);
        }
        db.close().expect("close");
    }
}

/// Expired memories go at compaction; live ones stay; a version a snapshot can see is
/// never shown to the filter.
#[test]
fn ttl_filter_drops_expired_values_except_where_a_snapshot_sees_them() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let ks = db
        .create_keyspace("memories", small(CompactionStyle::Hca))
        .expect("ks");
    ks.set_compaction_filter(Some(Arc::new(TtlFilter::new())));
    let now = SystemTime::now();
    let past = now - Duration::from_secs(60);
    let future = now + Duration::from_secs(3600);
    // An older live version under every expired one: dropping must not resurrect it.
    for i in 0..300u64 {
        ks.put(key(i), TtlFilter::wrap(future, b"older"))
            .expect("put");
    }
    ks.flush().expect("flush");
    ks.compact().expect("compact");
    // Key 1000 is expired but a snapshot sees it.
    ks.put(key(1000), TtlFilter::wrap(past, b"pinned"))
        .expect("put");
    let snap = db.snapshot();
    for i in 0..300u64 {
        let expires = if i % 2 == 0 { past } else { future };
        ks.put(key(i), TtlFilter::wrap(expires, format!("m{i}").as_bytes()))
            .expect("put");
    }
    ks.flush().expect("flush");
    // The snapshot is older than the expired versions, so the filter's drops become
    // tombstones (the older versions it sees stay below), which must hide those older
    // versions from current reads.
    ks.compact_range(Some(&key(0)), Some(&key(150)))
        .expect("compact_range");
    ks.compact().expect("compact");
    for i in 0..300u64 {
        let got = ks.get(key(i)).expect("get");
        if i % 2 == 0 {
            assert!(got.is_none(), "expired key {i} survived or was resurrected");
        } else {
            let got = got.expect("live memory");
            assert_eq!(
                TtlFilter::unwrap(&got).map(|(_, v)| v.to_vec()),
                Some(format!("m{i}").into_bytes())
            );
        }
    }
    let pinned = snap.get(&ks, key(1000)).expect("snapshot get");
    assert!(pinned.is_some(), "a version a snapshot sees was filtered");
    for i in (0..300u64).step_by(2) {
        let older = snap.get(&ks, key(i)).expect("snapshot get");
        assert_eq!(
            older
                .as_deref()
                .and_then(TtlFilter::unwrap)
                .map(|(_, v)| v.to_vec()),
            Some(b"older".to_vec()),
            "the snapshot lost the version it sees of key {i}"
        );
    }
    let st = ks_stats(&db, "memories");
    assert!(st.filtered >= 150, "filter counted {}", st.filtered);
    drop(snap);
    ks.compact().expect("compact");
    assert!(ks.get(key(1000)).expect("get").is_none());
    db.close().expect("close");
}

/// A filter that rewrites values sees only the newest version of each key.
#[test]
fn change_value_filter_rewrites_the_newest_version() {
    #[derive(Debug, Default)]
    struct Upper {
        seen: Mutex<Vec<Vec<u8>>>,
    }
    impl CompactionFilter for Upper {
        fn name(&self) -> &str {
            "upper"
        }
        fn filter(&self, key: &[u8], value: &[u8]) -> FilterDecision {
            self.seen.lock().expect("lock").push(key.to_vec());
            if value.starts_with(b"lower") {
                FilterDecision::ChangeValue(value.to_ascii_uppercase())
            } else {
                FilterDecision::Keep
            }
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let ks = db
        .create_keyspace("c", small(CompactionStyle::Leveled))
        .expect("ks");
    let filter = Arc::new(Upper::default());
    ks.set_compaction_filter(Some(filter.clone()));
    // The older versions reach the tables first, so compaction meets both versions.
    for i in 0..50u64 {
        ks.put(key(i), "lower-old").expect("put");
    }
    ks.flush().expect("flush");
    for i in 0..50u64 {
        ks.put(key(i), format!("lower-{i}")).expect("put");
    }
    ks.delete(key(7)).expect("delete");
    ks.compact().expect("compact");
    for i in 0..50u64 {
        let want = (i != 7).then(|| format!("LOWER-{i}").into_bytes());
        assert_eq!(ks.get(key(i)).expect("get").map(|b| b.to_vec()), want);
    }
    let seen = filter.seen.lock().expect("lock").clone();
    assert_eq!(
        seen.len(),
        49,
        "one call per live key, none for the tombstone"
    );
    db.close().expect("close");
}

/// `compact_range` rewrites only what meets the range (and what overlaps that), and
/// drops tombstones there.
#[test]
fn compact_range_compacts_only_the_range() {
    for style in STYLES {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::open(dir.path(), Options::default()).expect("open");
        let ks = db.create_keyspace("r", small(style)).expect("ks");
        for i in 0..4_000u64 {
            ks.put(key(i), vec![b'v'; 100]).expect("put");
        }
        ks.compact().expect("compact");
        for i in 1_000..2_000u64 {
            ks.delete(key(i)).expect("delete");
        }
        ks.flush().expect("flush");
        let before = ks_stats(&db, "r");
        ks.compact_range(Some(&key(1_000)), Some(&key(2_000)))
            .expect("compact_range");
        let after = ks_stats(&db, "r");
        assert_eq!(
            total_entries(&after),
            3_000,
            "{style:?}: tombstones and what they hid are gone"
        );
        assert!(after.compaction_read_bytes > before.compaction_read_bytes);
        // Far less than the whole keyspace was rewritten.
        let rewritten = after.compaction_write_bytes - before.compaction_write_bytes;
        let whole: u64 = before.levels.iter().map(|l| l.bytes).sum();
        assert!(
            rewritten < whole,
            "{style:?}: compact_range rewrote {rewritten} of {whole} bytes"
        );
        assert_eq!(ks.iter().count(), 3_000);
        assert!(ks.get(key(1_500)).expect("get").is_none());
        assert!(ks.get(key(2_500)).expect("get").is_some());
        db.close().expect("close");
    }
}

/// Compactions write no faster than `compaction_write_bytes_per_sec`.
#[test]
fn compaction_write_rate_is_limited() {
    let dir = tempfile::tempdir().expect("dir");
    let rate = 256u64 << 10;
    let options = Options {
        compaction_write_bytes_per_sec: rate,
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).expect("open");
    let ks = db
        .create_keyspace("slow", small(CompactionStyle::Leveled))
        .expect("ks");
    for i in 0..6_000u64 {
        ks.put(key(i), vec![b'v'; 100]).expect("put");
    }
    ks.flush().expect("flush");
    db.wait_for_background_work().expect("settle");
    let before = ks_stats(&db, "slow").compaction_write_bytes;
    let start = Instant::now();
    ks.compact().expect("compact");
    let elapsed = start.elapsed();
    let written = ks_stats(&db, "slow").compaction_write_bytes - before;
    assert!(
        written > 400 << 10,
        "too little written to measure: {written}"
    );
    // The bucket starts with at most 100 ms of budget.
    let floor = Duration::from_secs_f64(written as f64 / rate as f64 - 0.1);
    assert!(
        elapsed >= floor,
        "compaction wrote {written} bytes in {elapsed:?}, faster than {rate} B/s"
    );
    db.close().expect("close");
}

/// Key of event `n` of agent `agent`: every agent's events in time order, 100 agents
/// interleaved, so each flush's table spans them all (no free moves).
fn event_key(agent: u64, n: u64) -> Vec<u8> {
    format!("agent{agent:03}/{n:06}").into_bytes()
}

/// Ten rounds of 3 000 writes, one flush each, into a fresh HCA keyspace: with
/// `appends`, round `r` appends events `30 r .. 30 r + 30` of each of 100 agents (every
/// key new, as in an event log); otherwise every round overwrites the same 3 000 keys.
/// Five flushes (the first is moved to the empty last level) and a settle (the first
/// merge, at four level-0 runs), a pause longer than the policy's observation period,
/// five more flushes. Returns the keyspace's stats.
fn hca_after_rounds(appends: bool) -> KeyspaceStats {
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let ks = db
        .create_keyspace(
            "log",
            KeyspaceOptions {
                compaction: CompactionStyle::Hca,
                // No flush but the test's own.
                memtable_bytes: 64 << 20,
                ..KeyspaceOptions::default()
            },
        )
        .expect("keyspace");
    let round = |r: u64| {
        for i in 0..3000u64 {
            let n = if appends { r * 30 + i / 100 } else { i / 100 };
            ks.put(event_key(i % 100, n), vec![b'v'; 100]).expect("put");
        }
        ks.flush().expect("flush");
    };
    for r in 0..5 {
        round(r);
    }
    db.wait_for_background_work().expect("settle");
    assert_eq!(ks_stats(&db, "log").compactions, 1, "the first merge");
    // The policy sees the workload once per observation period (1 s).
    std::thread::sleep(Duration::from_millis(1100));
    for r in 5..10 {
        round(r);
    }
    db.wait_for_background_work().expect("settle");
    for r in 0..10u64 {
        let n = if appends { r * 30 + 17 } else { 17 };
        assert!(ks.get(event_key(42, n)).expect("get").is_some());
    }
    ks_stats(&db, "log")
}

#[test]
fn hca_tiers_level_0_of_an_append_only_keyspace_and_not_of_one_with_overwrites() {
    let log = hca_after_rounds(true);
    assert!(log.policy.contains("K0=8"), "{}", log.policy);
    assert_eq!(
        log.levels[0].runs, 5,
        "five flushes wait in level 0: {log:?}"
    );
    assert_eq!(log.compactions, 1, "no second merge");
    let state = hca_after_rounds(false);
    assert!(state.policy.contains("K0=4"), "{}", state.policy);
    assert!(state.levels[0].runs < 4, "merged at its trigger: {state:?}");
}
