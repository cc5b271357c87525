//! The peer adapters (cargo feature `peers`) behave like the reference `memory` engine:
//! the same puts, batches and deletes give the same gets and the same scans both ways
//! (a reverse scan from a key starts at the last key at or below it), also after a
//! flush, a compaction and a reopen. Run with
//! `cargo test --release -p strata-bench --features peers --test peer_adapters`
//! (RocksDB builds from source first; not part of CI).

#![cfg(feature = "peers")]

use std::sync::Arc;

use strata_bench::engine::{
    get_owned, Batch, BenchEngine, CompactionStyle, Compression, Direction, Durability,
    EngineConfig,
};
use strata_bench::engines::{open_engine, PEERS};

fn config(path: &std::path::Path, use_existing_db: bool) -> EngineConfig {
    EngineConfig {
        path: path.to_path_buf(),
        durability: Durability::Buffered,
        compression: Compression::None,
        compaction_style: CompactionStyle::Hca,
        value_threshold: None,
        cache_bytes: 8 << 20,
        use_existing_db,
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("{i:08}").into_bytes()
}

/// Applies the same writes to `engine`: puts of even keys, a batch of keys divisible
/// by 3, deletes of keys divisible by 5, a `Sync` put and overwrites.
fn write(engine: &dyn BenchEngine) {
    for i in (0..400).step_by(2) {
        engine
            .put(&key(i), format!("v{i}").as_bytes(), Durability::Buffered)
            .unwrap();
    }
    let mut batch = Batch::new();
    for i in (0..400).step_by(3) {
        batch.put(&key(i), format!("b{i}").as_bytes());
    }
    engine.write_batch(&batch, Durability::Buffered).unwrap();
    for i in (0..400).step_by(5) {
        engine.delete(&key(i)).unwrap();
    }
    engine.put(&key(7), b"sync", Durability::Sync).unwrap();
    engine.put(&key(8), b"again", Durability::Buffered).unwrap();
}

/// Everything a reader can observe, as comparable values.
fn observe(engine: &dyn BenchEngine) -> Vec<String> {
    let mut seen = Vec::new();
    for i in 0..410 {
        seen.push(format!("get {i} {:?}", get_owned(engine, &key(i)).unwrap()));
    }
    let starts = [
        None,
        Some(key(0)),
        Some(key(5)),
        Some(key(201)),
        Some(key(999)),
    ];
    for direction in [Direction::Forward, Direction::Reverse] {
        for from in &starts {
            for limit in [1, 7, usize::MAX] {
                let mut entries = Vec::new();
                let n = engine
                    .scan(direction, from.as_deref(), limit, &mut |k, v| {
                        entries.push((k.to_vec(), v.to_vec()));
                    })
                    .unwrap();
                assert_eq!(n, entries.len());
                seen.push(format!("scan {direction:?} {from:?} {limit} {entries:?}"));
            }
        }
    }
    seen
}

#[test]
fn peers_read_what_the_reference_engine_reads() {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = open_engine("memory", &config(reference_dir.path(), false)).unwrap();
    write(reference.as_ref());
    let expected = observe(reference.as_ref());
    reference.close().unwrap();

    for peer in PEERS {
        let dir = tempfile::tempdir().unwrap();
        let engine: Arc<dyn BenchEngine> = open_engine(peer, &config(dir.path(), false)).unwrap();
        write(engine.as_ref());
        assert_eq!(observe(engine.as_ref()), expected, "{peer} after writes");
        engine.flush().unwrap();
        engine.compact().unwrap();
        assert_eq!(
            observe(engine.as_ref()),
            expected,
            "{peer} after compaction"
        );
        assert!(engine
            .stats_line()
            .unwrap()
            .starts_with("Stats: write_amp="));
        engine.close().unwrap();
        drop(engine);
        let reopened = open_engine(peer, &config(dir.path(), true)).unwrap();
        assert_eq!(observe(reopened.as_ref()), expected, "{peer} after reopen");
        reopened.close().unwrap();
    }
}
