//! A primary and a follower in two directories: the follower is seeded from a
//! checkpoint of the primary, then tails the primary's change stream while agents
//! keep writing, and ends with exactly the primary's logged state.
//!
//! In a real deployment the batches travel over the network (serialise
//! `ChangeBatch` however you like); here the follower polls the primary in-process.
//!
//! Run: `cargo run --release -p strata --example replica [DIR]` (default: a fresh
//! directory under the system temp dir, removed at the end; a given DIR is kept).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::{Db, KeyspaceOptions, Options, Replica, WriteBatch};

fn main() -> strata::Result<()> {
    let given = std::env::args().nth(1).map(std::path::PathBuf::from);
    let dir = given.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("strata-replica-{}", std::process::id()))
    });
    let primary_options = Options {
        // Keep a few WAL segments for the follower beyond what recovery needs.
        wal_retention_bytes: 256 << 20,
        ..Options::default()
    };
    let primary = Db::open(dir.join("primary"), primary_options)?;
    let state = primary.keyspace_or_create("agent_state", KeyspaceOptions::default())?;
    let memories = primary.keyspace_or_create("memories", KeyspaceOptions::default())?;
    for agent in 0..100 {
        state.put(format!("agent-{agent:03}"), "idle")?;
    }

    // Seed: a checkpoint of the primary, opened as the follower.
    let follower_dir = dir.join("follower");
    let seed = primary.checkpoint(&follower_dir)?;
    let follower = Db::open(&follower_dir, Options::default())?;
    let mut replica = Replica::seed(&follower, seed.seqno)?;
    println!(
        "follower seeded from a checkpoint at sequence number {}",
        seed.seqno
    );

    // Agents write on the primary while the follower tails it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (primary, stop) = (primary.clone(), Arc::clone(&stop));
        let (state, memories) = (state.clone(), memories.clone());
        std::thread::spawn(move || -> strata::Result<u64> {
            let mut step = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let agent = step % 100;
                let mut batch = WriteBatch::new();
                batch.put(&state, format!("agent-{agent:03}"), format!("step {step}"));
                batch.put(
                    &memories,
                    format!("agent-{agent:03}/{step:08}"),
                    format!("observation {step}"),
                );
                primary.write(batch)?;
                step += 1;
            }
            Ok(step)
        })
    };
    let started = Instant::now();
    let mut applied_batches = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        let mut any = false;
        for batch in primary.changes_since(replica.applied())? {
            replica.apply(&batch?)?;
            applied_batches += 1;
            any = true;
        }
        if !any {
            // Buffered writes reach the stream at the primary's next WAL sync.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let steps = writer.join().expect("writer thread")?;
    // Catch up with the last writes.
    primary.sync_wal()?;
    for batch in primary.changes_since(replica.applied())? {
        replica.apply(&batch?)?;
        applied_batches += 1;
    }
    println!(
        "primary wrote {steps} batches; the follower applied {applied_batches} and is at {} (primary at {})",
        replica.applied(),
        primary.latest_seqno()
    );

    // The follower holds exactly what the primary holds.
    for name in ["agent_state", "memories"] {
        let p: Vec<_> = primary
            .keyspace(name)?
            .iter()
            .collect::<strata::Result<_>>()?;
        let f: Vec<_> = follower
            .keyspace(name)?
            .iter()
            .collect::<strata::Result<_>>()?;
        assert_eq!(p, f, "keyspace {name} differs");
        println!("{name}: {} keys, identical on both sides", p.len());
    }
    let seven = follower.keyspace("agent_state")?.get("agent-007")?;
    println!(
        "agent-007 on the follower: {}",
        String::from_utf8_lossy(seven.as_deref().unwrap_or(b"?"))
    );
    drop((state, memories));
    primary.close()?;
    follower.close()?;
    if given.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
