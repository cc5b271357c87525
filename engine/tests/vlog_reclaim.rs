//! The reclaim test of key-value separation: 1 GiB (logical) of 16 KiB values
//! overwriting a 100 MiB working set, with every option at its default. After garbage
//! collection settles, the value-log files on disk must be within
//! `max_space_amplification` (1.5 by default) of the live values, measured from the
//! files and the model, not from the engine's own counters, and every key must read
//! its last value.
//!
//! `STRATA_RECLAIM_MIB` scales the logical bytes written (default 1024).

mod common;

use std::collections::HashMap;

use common::vlog_file_bytes;
use strata::{Db, KeyspaceOptions, Options};

const VALUE: usize = 16 << 10;
const WORKING_SET: u64 = 100 << 20;

fn value(key: u64, version: u64) -> Vec<u8> {
    let mut v = vec![0u8; VALUE];
    let mut x = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    v
}

#[test]
fn gc_holds_the_value_log_within_max_space_amplification_of_live_data() {
    let logical: u64 = std::env::var("STRATA_RECLAIM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        << 20;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db
        .create_keyspace("memories", KeyspaceOptions::default())
        .unwrap();
    let keys = WORKING_SET / VALUE as u64;
    let writes = logical / VALUE as u64;
    let mut versions: HashMap<u64, u64> = HashMap::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut worst: f64 = 0.0;
    for n in 0..writes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = x % keys;
        ks.put(format!("memory/{key:06}"), value(key, n)).unwrap();
        versions.insert(key, n);
        if n % 8192 == 8191 {
            let live = versions.len() as u64 * VALUE as u64;
            worst = worst.max(vlog_file_bytes(dir.path()) as f64 / live as f64);
        }
    }
    db.wait_for_background_work().unwrap();
    let report = db.gc_value_log(&ks).unwrap();
    let live = versions.len() as u64 * VALUE as u64;
    let on_disk = vlog_file_bytes(dir.path());
    let ratio = on_disk as f64 / live as f64;
    let stats = db.stats();
    let k = stats.keyspace("memories").unwrap();
    eprintln!(
        "wrote {} MiB over {} keys: value log {on_disk} B for {live} B live = {ratio:.3} \
         (worst while writing {worst:.2}); engine says {:.3}; {} segments; gc {} rounds, \
         {} B copied; last call {report:?}",
        logical >> 20,
        versions.len(),
        k.vlog_space_amplification,
        k.value_log.len(),
        k.gc_runs,
        k.gc_relocated_bytes
    );
    assert!(
        ratio <= 1.5,
        "value log {on_disk} B is {ratio:.3}x the live {live} B"
    );
    for (key, n) in &versions {
        let got = ks.get(format!("memory/{key:06}")).unwrap();
        assert!(
            got.as_deref() == Some(value(*key, *n).as_slice()),
            "memory/{key:06} is not its last value"
        );
    }
}
