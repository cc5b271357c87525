//! Agent event logs on the WAL-bypass path, agent state on the durable one.
//!
//! Thousands of agents append events (tool calls, observations) under
//! `agent_id/timestamp` keys to a `Bypass` keyspace: no WAL record, no WAL lock, so the
//! streams write at memtable speed and never queue behind each other or behind the
//! state writes. Each agent's state (its last step) goes to a `Sync` keyspace: every
//! acknowledged state write survives a power loss. Then one agent's recent events are
//! read back newest first, by prefix in reverse, and the event log is flushed so that
//! nothing is at risk any more.
//!
//! Run: `cargo run --release -p strata --example agent_log [DIR]` (default: a fresh
//! directory under the system temp dir, removed at the end; a given DIR is kept).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata::{Db, Durability, KeyspaceOptions, Options};

const AGENTS: u64 = 4000;
const THREADS: u64 = 2;
const EVENTS_PER_THREAD: u64 = 200_000;
/// Every this many events an agent also records its state durably.
const STATE_EVERY: u64 = 500;

fn event_key(agent: u64, micros: u128) -> String {
    format!("agent-{agent:05}/{micros:020}")
}

fn main() -> strata::Result<()> {
    let given = std::env::args().nth(1).map(std::path::PathBuf::from);
    let dir = given.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("strata-agent-log-{}", std::process::id()))
    });
    let db = Db::open(&dir, Options::default())?;
    let events = db.keyspace_or_create(
        "events",
        KeyspaceOptions {
            durability: Durability::Bypass,
            // A crash loses at most about the last second, or 64 MiB, of events.
            bypass_flush_interval: Some(Duration::from_secs(1)),
            bypass_max_unflushed_bytes: Some(64 << 20),
            ..KeyspaceOptions::default()
        },
    )?;
    let state = db.keyspace_or_create(
        "state",
        KeyspaceOptions {
            durability: Durability::Sync,
            ..KeyspaceOptions::default()
        },
    )?;

    let start = Instant::now();
    std::thread::scope(|s| -> strata::Result<()> {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (events, state) = (events.clone(), state.clone());
                s.spawn(move || -> strata::Result<()> {
                    for i in 0..EVENTS_PER_THREAD {
                        // Thread t serves agents t, t + THREADS, ...
                        let agent = t + THREADS * ((i * 7919) % (AGENTS / THREADS));
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_micros());
                        let event = format!(
                            r#"{{"agent":{agent},"step":{i},"tool":"search","tokens":{}}}"#,
                            i % 913
                        );
                        events.put(event_key(agent, now * 1000 + u128::from(i % 1000)), event)?;
                        if i % STATE_EVERY == 0 {
                            state.put(format!("agent-{agent:05}"), format!("step {i}"))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("writer thread panicked")?;
        }
        Ok(())
    })?;
    let took = start.elapsed();
    let total = THREADS * EVENTS_PER_THREAD;
    println!(
        "{total} events from {AGENTS} agents on {THREADS} threads in {:.2} s ({:.0} events/s)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    println!(
        "at risk before flush: {} bytes of events",
        db.stats().bypass_bytes_at_risk()
    );

    // One agent's five most recent events, newest first.
    let agent = 42;
    println!("agent {agent}, most recent events:");
    for kv in events.prefix(format!("agent-{agent:05}/")).rev().take(5) {
        let (key, value) = kv?;
        println!(
            "  {} {}",
            String::from_utf8_lossy(&key),
            String::from_utf8_lossy(&value)
        );
    }
    if let Some(s) = state.get(format!("agent-{agent:05}"))? {
        println!("agent {agent} state: {}", String::from_utf8_lossy(&s));
    }

    // Make the event log durable now rather than at the next interval.
    db.flush_keyspace(&events)?;
    println!(
        "at risk after flush: {} bytes of events",
        db.stats().bypass_bytes_at_risk()
    );
    db.close()?;
    if given.is_some() {
        println!("database in {}", dir.display());
    } else {
        // A directory of our own making: leave nothing behind.
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
