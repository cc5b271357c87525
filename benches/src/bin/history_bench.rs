//! `history_bench`: the figures of the history issue, measured in one run.
//!
//! 1. Builds a database of `--gb` GiB (default 1) of 1000-byte values in a keyspace
//!    with a history window, overwrites a tenth of the keys, and flushes.
//! 2. Times `Db::checkpoint` into a fresh directory and reports how many bytes it
//!    wrote beyond the hard links (the copy's growth on disk), after the flush and
//!    again with a full memtable of unflushed writes.
//! 3. Times random point reads at the latest sequence number and at a past one
//!    (before the overwrites, through `Db::snapshot_at`), alternating in rounds so
//!    the disk's noise falls on both alike, and prints the ratio.
//!
//! Run: `cargo run --release -p strata-bench --bin history_bench -- [--gb N] [--dir D]`

use std::time::Instant;

use strata::{Db, KeyspaceOptions, Options, SeqNo};
use strata_bench::rng::SplitMix64;

const VALUE: usize = 1000;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&SplitMix64::new(i).next_u64().to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64, round: u64) -> Vec<u8> {
    let mut v = vec![0u8; VALUE];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v[8..16].copy_from_slice(&round.to_le_bytes());
    for (j, b) in v[16..].iter_mut().enumerate() {
        *b = (j as u64 ^ i) as u8;
    }
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut gb = 1.0f64;
    let mut base: Option<std::path::PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--gb" => gb = it.next().ok_or("--gb needs a value")?.parse()?,
            "--dir" => base = Some(it.next().ok_or("--dir needs a value")?.into()),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let tmp = tempfile::tempdir_in(base.unwrap_or_else(std::env::temp_dir))?;
    let keys = (gb * (1u64 << 30) as f64 / (VALUE as f64 + 16.0)) as u64;
    let db = Db::open(tmp.path().join("db"), Options::default())?;
    let ks = db.create_keyspace(
        "memories",
        KeyspaceOptions {
            history_seqs: Some(u64::MAX >> 1),
            ..KeyspaceOptions::default()
        },
    )?;
    let started = Instant::now();
    for i in 0..keys {
        ks.put(key(i), value(i, 0))?;
    }
    let past = db.latest_seqno();
    for i in (0..keys).step_by(10) {
        ks.put(key(i), value(i, 1))?;
    }
    ks.flush()?;
    db.wait_for_background_work()?;
    let db_bytes = strata_bench::disk::dir_bytes(&tmp.path().join("db"));
    println!(
        "built {keys} keys + {} overwrites in {:.1} s: {:.2} GiB on disk",
        keys / 10,
        started.elapsed().as_secs_f64(),
        db_bytes as f64 / (1u64 << 30) as f64
    );

    // Checkpoints: after the flush, then with a memtable of unflushed writes.
    for (label, extra) in [("flushed", 0u64), ("with ~24 MiB unflushed", 24_000)] {
        for i in 0..extra {
            ks.put(key(i * 7), value(i, 2))?;
        }
        let target = tmp.path().join(format!("checkpoint-{extra}"));
        let t = Instant::now();
        let info = db.checkpoint(&target)?;
        let took = t.elapsed();
        println!(
            "checkpoint ({label}): {:.3} s; {} files linked, {} copied; {} bytes written = {:.3}% of the database",
            took.as_secs_f64(),
            info.files_linked,
            info.files_copied,
            info.bytes_copied,
            100.0 * info.bytes_copied as f64 / db_bytes as f64
        );
        let copy = Db::open(&target, Options::default())?;
        let check = copy.keyspace("memories")?.get(key(3))?;
        assert_eq!(
            check.as_deref().map(|v| &v[..8]),
            Some(&3u64.to_le_bytes()[..])
        );
        copy.close()?;
    }

    // Reads at the latest and at a past sequence number, alternating.
    let reads = 200_000u64;
    let latest = db.snapshot();
    let old = db.snapshot_at(past)?;
    let mut rng = SplitMix64::new(0x5eed);
    let mut time = [0f64; 2];
    for _ in 0..6 {
        for (which, snapshot) in [&latest, &old].iter().enumerate() {
            let t = Instant::now();
            for _ in 0..reads / 6 {
                let i = rng.next_u64() % keys;
                let v = snapshot.get(&ks, key(i))?.ok_or("missing key")?;
                let got_round = u64::from_le_bytes(v[8..16].try_into()?);
                // The past sees only the first fill; the latest also the overwrites
                // (every tenth key) and the unflushed writes (multiples of 7).
                let fine = match which {
                    1 => got_round == 0,
                    _ => {
                        got_round == u64::from(i.is_multiple_of(10))
                            || (got_round == 2 && i.is_multiple_of(7))
                    }
                };
                if !fine {
                    return Err(
                        format!("read {i} at {:?}: round {got_round}", snapshot.seqno()).into(),
                    );
                }
            }
            time[which] += t.elapsed().as_secs_f64();
        }
    }
    let ops = |secs: f64| reads as f64 / secs;
    println!(
        "readrandom at latest: {:.0} ops/s; at past seqno {}: {:.0} ops/s; past/latest cost {:.2}x",
        ops(time[0]),
        SeqNo(past.0),
        ops(time[1]),
        time[1] / time[0]
    );
    drop((latest, old, ks));
    db.close()?;
    Ok(())
}
