//! The benchmarks: what each one does to the engine, how its operations are split
//! among `--threads` client threads, and what it reports.
//!
//! Conventions shared by all of them (those of LevelDB's and RocksDB's db_bench):
//! - The key space is `0..--num`. Random benchmarks draw keys uniformly with
//!   repetition, so `fillrandom` writes about 63% of the distinct keys.
//! - With `--threads=N`, the N threads split the operations: thread `t` does the
//!   `t`-th of N near-equal shares. Sequential benchmarks give each thread its own
//!   contiguous slice of the key space.
//! - Each thread owns an [`Rng`] seeded from `--seed`, the benchmark's position in
//!   `--benchmarks` and the thread's index.
//! - Reads count key and value bytes of what they found; misses count no bytes.
//!
//! Per benchmark:
//! - `fillseq`, `fillbatch` (batches of 1000; the histogram then holds one sample per
//!   batch), `fillrandom`, `overwrite`, `fillsync` (`--num / 100` writes, at least one,
//!   each `Sync`), `deleterandom` (`--num` deletes).
//! - `readrandom`, `readmissing` (the stored key followed by `.`), `seekrandom` (seek to
//!   a random key and read the entry found; it counts as found when that entry has the
//!   key sought): `--reads` operations, reported with `(F of N found)`.
//! - `readseq`, `readreverse`: `--reads` entries read with a single iterator per thread
//!   (one [`BenchEngine::scan`] call); thread `t` starts at the start (or end) of its
//!   slice of the key space, thread 0 (or the last) at the first (or last) key.
//! - `readwhilewriting`: `--threads` readers share `--reads` random reads while one
//!   more thread overwrites random keys until the readers are done. The line reports
//!   the readers; the writer's count is in the message.
//! - `compact`: memtable flush plus full manual compaction, one operation.
//! - `waitforcompaction`: waits until background flushes and compactions are done,
//!   asking for none (RocksDB's benchmark of that name), one operation; the statistics
//!   after it are those of the settled tree.
//! - `agentlog`: `--num` events appended to `--agents` streams; thread `t` owns agents
//!   `t, t + N, t + 2N, …` and spreads its share of events uniformly over them. Keys are
//!   `agent-<id>/<16-digit timestamp>`: per agent, a counter starting at the benchmark's
//!   start time in microseconds, so repeated runs on one database append instead of
//!   overwriting.
//! - `agentstate`: the state record of every agent is written first (not timed); then
//!   `--num` operations, each a coin flip between overwriting and reading the state of
//!   an agent drawn from a scrambled zipfian (θ = 0.99) over `--agents`.
//! - `embeddings`: values of `--value_size` bytes, 4096 unless given. `embeddings.fill`
//!   writes every key of `emb/0..num` exactly once, in a scattered order;
//!   `embeddings.read` does `--reads` random point reads of them. Two result lines.
//! - `recover` lives in [`crate::recover`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::{Batch, BenchEngine, Direction, Durability, EngineError};
use crate::error::Error;
use crate::flags::{Benchmark, Flags};
use crate::keys::{AgentKeys, KeyFormat, ValuePool, EMBEDDING_PREFIX};
use crate::report::{found_message, Measurement, ThreadStats};
use crate::rng::{Permutation, Rng, Zipfian, ZIPFIAN_THETA};

/// Entries per batch of `fillbatch` (and of the `agentstate` prefill).
pub const BATCH_SIZE: u64 = 1000;

/// What the benchmarks of one run share.
pub struct Context<'a> {
    /// The engine, shared by all client threads.
    pub engine: Arc<dyn BenchEngine>,
    /// The command line.
    pub flags: &'a Flags,
    /// Where values come from.
    pub pool: ValuePool,
    /// Classic key format.
    pub keys: KeyFormat,
}

impl<'a> Context<'a> {
    /// The context of a run with `flags` on `engine`.
    pub fn new(engine: Arc<dyn BenchEngine>, flags: &'a Flags) -> Self {
        Context {
            engine,
            flags,
            pool: ValuePool::new(flags.seed, flags.compression_ratio, flags.max_value_size()),
            keys: KeyFormat::new(flags.key_size),
        }
    }
}

/// `[lo, hi)` of share `i` of `total` split into `parts` near-equal shares.
pub fn share(total: u64, parts: usize, i: usize) -> (u64, u64) {
    let at = |j: usize| (u128::from(total) * j as u128 / parts.max(1) as u128) as u64;
    (at(i), at(i + 1))
}

fn engine_err<'a>(bench: &'a str, op: &'static str) -> impl Fn(EngineError) -> Error + 'a {
    move |e| Error::engine(format!("{bench}: {op}"), e)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

/// Runs `body(thread_index, stats)` on `threads` threads that start together, and
/// returns their counters in thread order.
///
/// # Errors
/// The first error a thread returned, or [`Error::ThreadPanicked`].
pub fn run_threads<F>(threads: usize, histogram: bool, body: F) -> Result<Vec<ThreadStats>, Error>
where
    F: Fn(usize, &mut ThreadStats) -> Result<(), Error> + Sync,
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, body) = (&barrier, &body);
                s.spawn(move || {
                    let mut stats = ThreadStats::new(histogram);
                    barrier.wait();
                    stats.start();
                    let result = body(t, &mut stats);
                    stats.finish();
                    result.map(|()| stats)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(threads);
        let mut first_error = None;
        for h in handles {
            match h.join() {
                Ok(Ok(stats)) => all.push(stats),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(payload) => {
                    first_error.get_or_insert(Error::ThreadPanicked(panic_message(payload)));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(all),
        }
    })
}

/// Runs one benchmark (anything but `recover`), handing each of its measurements to
/// `report` as soon as it is taken (`embeddings` has two phases, so the engine's
/// statistics can be printed after each).
///
/// `index` is the benchmark's position in `--benchmarks`; it selects the random
/// streams.
///
/// # Errors
/// The engine's errors, with the benchmark and operation named, or `report`'s.
pub fn run(
    ctx: &Context<'_>,
    bench: Benchmark,
    index: usize,
    report: &mut dyn FnMut(Measurement) -> Result<(), Error>,
) -> Result<(), Error> {
    if !ctx.flags.sync_writer {
        return run_one(ctx, bench, index, report);
    }
    // `--sync_writer=1`: one more thread puts Sync writes into a second keyspace for as
    // long as the benchmark runs; its count is printed after, not counted in it.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let side = s.spawn(|| -> Result<(u64, std::time::Duration), Error> {
            let start = std::time::Instant::now();
            let mut values = ctx.pool.generator(ctx.flags.threads + 1);
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("side/{n:012}");
                let v = values.generate(ctx.flags.value_size);
                ctx.engine
                    .put_side_sync(key.as_bytes(), v)
                    .map_err(engine_err(bench.name(), "put_side_sync"))?;
                n += 1;
            }
            Ok((n, start.elapsed()))
        });
        let result = run_one(ctx, bench, index, report);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (n, took) = side
            .join()
            .map_err(|p| Error::ThreadPanicked(panic_message(p)))??;
        println!(
            "sync_writer  : {n} Sync writes to the second keyspace meanwhile ({:.0} ops/sec)",
            n as f64 / took.as_secs_f64().max(1e-9)
        );
        result
    })
}

fn run_one(
    ctx: &Context<'_>,
    bench: Benchmark,
    index: usize,
    report: &mut dyn FnMut(Measurement) -> Result<(), Error>,
) -> Result<(), Error> {
    let f = ctx.flags;
    let d = f.durability();
    let m = match bench {
        Benchmark::FillSeq => fill_seq(ctx, bench, false)?,
        Benchmark::FillBatch => fill_seq(ctx, bench, true)?,
        Benchmark::FillRandom | Benchmark::Overwrite => fill_random(ctx, bench, index, f.num, d)?,
        Benchmark::FillSync => {
            fill_random(ctx, bench, index, (f.num / 100).max(1), Durability::Sync)?
        }
        Benchmark::ReadRandom => read_random(ctx, bench, index, false)?,
        Benchmark::ReadMissing => read_random(ctx, bench, index, true)?,
        Benchmark::ReadSeq => read_seq(ctx, bench, Direction::Forward)?,
        Benchmark::ReadReverse => read_seq(ctx, bench, Direction::Reverse)?,
        Benchmark::SeekRandom => seek_random(ctx, bench, index)?,
        Benchmark::DeleteRandom => delete_random(ctx, bench, index)?,
        Benchmark::ReadWhileWriting => read_while_writing(ctx, bench, index)?,
        Benchmark::Compact => compact(ctx)?,
        Benchmark::WaitForCompaction => wait_for_compaction(ctx)?,
        Benchmark::AgentLog => agent_log(ctx, index)?,
        Benchmark::AgentState => agent_state(ctx, index)?,
        Benchmark::Embeddings => return embeddings(ctx, index, report),
        Benchmark::Recover => {
            return Err(Error::Recover(
                "recover runs in its own process pair, not through workloads::run".into(),
            ))
        }
    };
    report(m)
}

fn fill_seq(ctx: &Context<'_>, bench: Benchmark, batched: bool) -> Result<Measurement, Error> {
    let f = ctx.flags;
    let name = bench.name();
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let (lo, hi) = share(f.num, f.threads, t);
        let mut values = ctx.pool.generator(t);
        let mut key = Vec::with_capacity(f.key_size);
        if !batched {
            for k in lo..hi {
                ctx.keys.write(k, &mut key);
                let v = values.generate(f.value_size);
                ctx.engine
                    .put(&key, v, f.durability())
                    .map_err(engine_err(name, "put"))?;
                st.finished_op((key.len() + v.len()) as u64);
            }
            return Ok(());
        }
        let mut batch = Batch::new();
        let mut k = lo;
        while k < hi {
            let end = (k + BATCH_SIZE).min(hi);
            batch.clear();
            let mut bytes = 0;
            for i in k..end {
                ctx.keys.write(i, &mut key);
                let v = values.generate(f.value_size);
                batch.put(&key, v);
                bytes += (key.len() + v.len()) as u64;
            }
            ctx.engine
                .write_batch(&batch, f.durability())
                .map_err(engine_err(name, "write batch"))?;
            st.finished_ops(end - k, bytes);
            k = end;
        }
        Ok(())
    })?;
    Ok(Measurement::from_threads(name, &stats))
}

fn fill_random(
    ctx: &Context<'_>,
    bench: Benchmark,
    index: usize,
    total: u64,
    durability: Durability,
) -> Result<Measurement, Error> {
    let f = ctx.flags;
    let name = bench.name();
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let (lo, hi) = share(total, f.threads, t);
        let mut rng = Rng::for_thread(f.seed, index as u64, t as u64);
        let mut values = ctx.pool.generator(t);
        let mut key = Vec::with_capacity(f.key_size);
        for _ in lo..hi {
            ctx.keys.write(rng.below(f.num), &mut key);
            let v = values.generate(f.value_size);
            ctx.engine
                .put(&key, v, durability)
                .map_err(engine_err(name, "put"))?;
            st.finished_op((key.len() + v.len()) as u64);
        }
        Ok(())
    })?;
    Ok(Measurement::from_threads(name, &stats))
}

/// One point read of `key`, counted into `st`.
fn timed_get(
    engine: &dyn BenchEngine,
    key: &[u8],
    st: &mut ThreadStats,
    name: &str,
) -> Result<(), Error> {
    let mut value_len = 0;
    let found = engine
        .get(key, &mut |v| value_len = v.len())
        .map_err(engine_err(name, "get"))?;
    if found {
        st.found += 1;
        st.finished_op((key.len() + value_len) as u64);
    } else {
        st.finished_op(0);
    }
    Ok(())
}

fn read_random(
    ctx: &Context<'_>,
    bench: Benchmark,
    index: usize,
    missing: bool,
) -> Result<Measurement, Error> {
    let f = ctx.flags;
    let name = bench.name();
    let reads = f.reads();
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let (lo, hi) = share(reads, f.threads, t);
        let mut rng = Rng::for_thread(f.seed, index as u64, t as u64);
        let mut key = Vec::with_capacity(f.key_size + 1);
        for _ in lo..hi {
            let k = rng.below(f.num);
            if missing {
                ctx.keys.write_missing(k, &mut key);
            } else {
                ctx.keys.write(k, &mut key);
            }
            timed_get(ctx.engine.as_ref(), &key, st, name)?;
        }
        Ok(())
    })?;
    let mut m = Measurement::from_threads(name, &stats);
    m.message = Some(found_message(m.found, m.ops));
    Ok(m)
}

fn read_seq(
    ctx: &Context<'_>,
    bench: Benchmark,
    direction: Direction,
) -> Result<Measurement, Error> {
    let f = ctx.flags;
    let name = bench.name();
    let reads = f.reads();
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let (lo, hi) = share(reads, f.threads, t);
        let (key_lo, key_hi) = share(f.num, f.threads, t);
        let mut start = Vec::with_capacity(f.key_size);
        let from = match direction {
            Direction::Forward if t > 0 => {
                ctx.keys.write(key_lo, &mut start);
                Some(start.as_slice())
            }
            Direction::Reverse if t + 1 < f.threads && key_hi > 0 => {
                ctx.keys.write(key_hi - 1, &mut start);
                Some(start.as_slice())
            }
            _ => None,
        };
        let limit = usize::try_from(hi - lo).unwrap_or(usize::MAX);
        ctx.engine
            .scan(direction, from, limit, &mut |k, v| {
                st.finished_op((k.len() + v.len()) as u64);
            })
            .map_err(engine_err(name, "scan"))?;
        Ok(())
    })?;
    Ok(Measurement::from_threads(name, &stats))
}

fn seek_random(ctx: &Context<'_>, bench: Benchmark, index: usize) -> Result<Measurement, Error> {
    let f = ctx.flags;
    let name = bench.name();
    let reads = f.reads();
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let (lo, hi) = share(reads, f.threads, t);
        let mut rng = Rng::for_thread(f.seed, index as u64, t as u64);
        let mut key = Vec::with_capacity(f.key_size);
        for _ in lo..hi {
            ctx.keys.write(rng.below(f.num), &mut key);
            let (mut hit, mut bytes) = (false, 0);
            ctx.engine
                .scan(Direction::Forward, Some(&key), 1, &mut |k, v| {
                    hit = k == key.as_slice();
                    bytes = (k.len() + v.len()) as u64;
                })
                .map_err(engine_err(name, "seek"))?;
            if hit {
                st.found += 1;
            }
            st.finished_op(bytes);
        }
        Ok(())
    })?;
    let mut m = Measurement::from_threads(name, &stats);
    m.message = Some(found_message(m.found, m.ops));
    Ok(m)
}

fn delete_random(ctx: &Context<'_>, bench: Benchmark, index: usize) -> Result<Measurement, Error> {
    let f = ctx.flags;
    let name = bench.name();
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let (lo, hi) = share(f.num, f.threads, t);
        let mut rng = Rng::for_thread(f.seed, index as u64, t as u64);
        let mut key = Vec::with_capacity(f.key_size);
        for _ in lo..hi {
            ctx.keys.write(rng.below(f.num), &mut key);
            ctx.engine
                .delete(&key)
                .map_err(engine_err(name, "delete"))?;
            st.finished_op(0);
        }
        Ok(())
    })?;
    Ok(Measurement::from_threads(name, &stats))
}

/// Decrements a counter when dropped, so a reader that fails still lets the writer of
/// `readwhilewriting` stop.
struct Departure<'a>(&'a AtomicUsize);

impl Drop for Departure<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

fn read_while_writing(
    ctx: &Context<'_>,
    bench: Benchmark,
    index: usize,
) -> Result<Measurement, Error> {
    let f = ctx.flags;
    let name = bench.name();
    let reads = f.reads();
    let readers = f.threads;
    let readers_left = AtomicUsize::new(readers);
    let writes = AtomicU64::new(0);
    let mut stats = run_threads(readers + 1, f.histogram, |t, st| {
        let mut rng = Rng::for_thread(f.seed, index as u64, t as u64);
        let mut key = Vec::with_capacity(f.key_size);
        if t == readers {
            let mut values = ctx.pool.generator(t);
            let mut n = 0;
            while readers_left.load(Ordering::Acquire) > 0 {
                ctx.keys.write(rng.below(f.num), &mut key);
                let v = values.generate(f.value_size);
                ctx.engine
                    .put(&key, v, f.durability())
                    .map_err(engine_err(name, "put"))?;
                n += 1;
            }
            writes.store(n, Ordering::Relaxed);
            return Ok(());
        }
        let _departure = Departure(&readers_left);
        let (lo, hi) = share(reads, readers, t);
        for _ in lo..hi {
            ctx.keys.write(rng.below(f.num), &mut key);
            timed_get(ctx.engine.as_ref(), &key, st, name)?;
        }
        Ok(())
    })?;
    stats.truncate(readers); // the writer is not part of the measurement
    let mut m = Measurement::from_threads(name, &stats);
    m.message = Some(format!(
        "{} (writer: {} puts)",
        found_message(m.found, m.ops),
        writes.load(Ordering::Relaxed)
    ));
    Ok(m)
}

fn compact(ctx: &Context<'_>) -> Result<Measurement, Error> {
    let name = Benchmark::Compact.name();
    let mut st = ThreadStats::new(ctx.flags.histogram);
    st.start();
    ctx.engine.flush().map_err(engine_err(name, "flush"))?;
    ctx.engine.compact().map_err(engine_err(name, "compact"))?;
    st.finished_op(0);
    st.finish();
    Ok(Measurement::from_threads(name, &[st]))
}

fn wait_for_compaction(ctx: &Context<'_>) -> Result<Measurement, Error> {
    let name = Benchmark::WaitForCompaction.name();
    let mut st = ThreadStats::new(ctx.flags.histogram);
    st.start();
    ctx.engine
        .wait_for_compaction()
        .map_err(engine_err(name, "wait"))?;
    st.finished_op(0);
    st.finish();
    Ok(Measurement::from_threads(name, &[st]))
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Number of agents thread `t` of `threads` owns when agent `a` belongs to thread
/// `a % threads`.
fn agents_owned(agents: u64, threads: usize, t: usize) -> u64 {
    let (threads, t) = (threads as u64, t as u64);
    if t >= agents {
        0
    } else {
        (agents - t).div_ceil(threads)
    }
}

fn agent_log(ctx: &Context<'_>, index: usize) -> Result<Measurement, Error> {
    let f = ctx.flags;
    let name = Benchmark::AgentLog.name();
    let agent_keys = AgentKeys::new(f.agents);
    let base = unix_micros();
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let owned = agents_owned(f.agents, f.threads, t);
        // Events are shared among threads in proportion to the agents they own.
        let before: u64 = (0..t).map(|i| agents_owned(f.agents, f.threads, i)).sum();
        let at = |a: u64| (u128::from(f.num) * u128::from(a) / u128::from(f.agents)) as u64;
        let events = at(before + owned) - at(before);
        let mut counters = vec![0u64; usize::try_from(owned).unwrap_or(0)];
        let mut rng = Rng::for_thread(f.seed, index as u64, t as u64);
        let mut values = ctx.pool.generator(t);
        let mut key = Vec::with_capacity(32);
        for _ in 0..events {
            let j = rng.below(owned) as usize;
            let agent = t as u64 + j as u64 * f.threads as u64;
            agent_keys.write_log(agent, base + counters[j], &mut key);
            counters[j] += 1;
            let v = values.generate(f.value_size);
            ctx.engine
                .put(&key, v, f.durability())
                .map_err(engine_err(name, "put"))?;
            st.finished_op((key.len() + v.len()) as u64);
        }
        Ok(())
    })?;
    Ok(Measurement::from_threads(name, &stats))
}

fn agent_state(ctx: &Context<'_>, index: usize) -> Result<Measurement, Error> {
    let f = ctx.flags;
    let name = Benchmark::AgentState.name();
    let agent_keys = AgentKeys::new(f.agents);
    // Prefill, not timed: every agent has a state record before the mix starts.
    let mut batch = Batch::new();
    let mut values = ctx.pool.generator(f.threads);
    let mut key = Vec::new();
    let mut a = 0;
    while a < f.agents {
        batch.clear();
        let end = (a + BATCH_SIZE).min(f.agents);
        for agent in a..end {
            agent_keys.write_state(agent, &mut key);
            batch.put(&key, values.generate(f.value_size));
        }
        ctx.engine
            .write_batch(&batch, f.durability())
            .map_err(engine_err(name, "prefill"))?;
        a = end;
    }
    let zipf = Zipfian::new(f.agents, ZIPFIAN_THETA);
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let (lo, hi) = share(f.num, f.threads, t);
        let mut rng = Rng::for_thread(f.seed, index as u64, t as u64);
        let mut values = ctx.pool.generator(t);
        let mut key = Vec::with_capacity(32);
        for _ in lo..hi {
            agent_keys.write_state(zipf.next(&mut rng), &mut key);
            if rng.next_u64() & 1 == 0 {
                let v = values.generate(f.value_size);
                ctx.engine
                    .put(&key, v, f.durability())
                    .map_err(engine_err(name, "put"))?;
                st.writes += 1;
                st.finished_op((key.len() + v.len()) as u64);
            } else {
                st.reads += 1;
                timed_get(ctx.engine.as_ref(), &key, st, name)?;
            }
        }
        Ok(())
    })?;
    let mut m = Measurement::from_threads(name, &stats);
    m.message = Some(format!(
        "(reads:{} writes:{} found:{})",
        m.reads, m.writes, m.found
    ));
    Ok(m)
}

fn embeddings(
    ctx: &Context<'_>,
    index: usize,
    report: &mut dyn FnMut(Measurement) -> Result<(), Error>,
) -> Result<(), Error> {
    let f = ctx.flags;
    let fill_name = "embeddings.fill";
    let read_name = "embeddings.read";
    let value_size = f.embeddings_value_size();
    let order = Permutation::new(f.num, &mut Rng::for_thread(f.seed, index as u64, u64::MAX));
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let (lo, hi) = share(f.num, f.threads, t);
        let mut values = ctx.pool.generator(t);
        let mut key = Vec::with_capacity(EMBEDDING_PREFIX.len() + f.key_size);
        for i in lo..hi {
            ctx.keys
                .write_prefixed(EMBEDDING_PREFIX, order.apply(i), &mut key);
            let v = values.generate(value_size);
            ctx.engine
                .put(&key, v, f.durability())
                .map_err(engine_err(fill_name, "put"))?;
            st.finished_op((key.len() + v.len()) as u64);
        }
        Ok(())
    })?;
    report(Measurement::from_threads(fill_name, &stats))?;
    let reads = f.reads();
    let stats = run_threads(f.threads, f.histogram, |t, st| {
        let (lo, hi) = share(reads, f.threads, t);
        let mut rng = Rng::for_thread(f.seed, index as u64, t as u64);
        let mut key = Vec::with_capacity(EMBEDDING_PREFIX.len() + f.key_size);
        for _ in lo..hi {
            ctx.keys
                .write_prefixed(EMBEDDING_PREFIX, rng.below(f.num), &mut key);
            timed_get(ctx.engine.as_ref(), &key, st, read_name)?;
        }
        Ok(())
    })?;
    let mut read = Measurement::from_threads(read_name, &stats);
    read.message = Some(found_message(read.found, read.ops));
    report(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CompactionStyle, Compression, EngineConfig};
    use crate::engines::memory::MemoryEngine;

    fn flags(args: &[&str]) -> Flags {
        match crate::flags::parse(args).unwrap() {
            crate::flags::Command::Run(f) => *f,
            crate::flags::Command::Help => unreachable!(),
        }
    }

    fn memory(dir: &std::path::Path) -> Arc<MemoryEngine> {
        Arc::new(
            MemoryEngine::open(&EngineConfig {
                path: dir.to_path_buf(),
                durability: Durability::Bypass,
                compression: Compression::None,
                compaction_style: CompactionStyle::Hca,
                value_threshold: None,
                cache_bytes: 0,
                use_existing_db: false,
            })
            .unwrap(),
        )
    }

    fn run_one(engine: &Arc<MemoryEngine>, f: &Flags, b: Benchmark) -> Vec<Measurement> {
        let ctx = Context::new(engine.clone(), f);
        let mut all = Vec::new();
        run(&ctx, b, 0, &mut |m| {
            all.push(m);
            Ok(())
        })
        .unwrap();
        all
    }

    #[test]
    fn shares_cover_the_total_exactly() {
        for (total, parts) in [(10u64, 3usize), (2000, 1), (7, 8), (0, 2), (1_000_003, 7)] {
            let mut next = 0;
            for i in 0..parts {
                let (lo, hi) = share(total, parts, i);
                assert_eq!(lo, next);
                assert!(hi >= lo && hi - lo <= total / parts as u64 + 1);
                next = hi;
            }
            assert_eq!(next, total);
        }
    }

    #[test]
    fn agents_are_partitioned_among_threads() {
        for (agents, threads) in [(1000u64, 3usize), (2, 4), (5, 5), (1, 1)] {
            let total: u64 = (0..threads).map(|t| agents_owned(agents, threads, t)).sum();
            assert_eq!(total, agents);
        }
    }

    #[test]
    fn readseq_uses_one_scan_per_thread_and_reads_everything() {
        let dir = tempfile::tempdir().unwrap();
        let e = memory(dir.path());
        let f = flags(&["--num=1000", "--engine=memory"]);
        let fill = run_one(&e, &f, Benchmark::FillSeq);
        assert_eq!(fill[0].ops, 1000);
        assert_eq!(fill[0].bytes, 1000 * 116);
        let before = e.counters().scans;
        let m = run_one(&e, &f, Benchmark::ReadSeq);
        assert_eq!(e.counters().scans - before, 1);
        assert_eq!(m[0].ops, 1000);
        assert_eq!(m[0].bytes, 1000 * 116);
        let f3 = flags(&["--num=1000", "--threads=3", "--engine=memory"]);
        for b in [Benchmark::ReadSeq, Benchmark::ReadReverse] {
            let before = e.counters();
            let m = run_one(&e, &f3, b);
            assert_eq!(e.counters().scans - before.scans, 3);
            assert_eq!(m[0].ops, 1000);
            // The threads' slices are disjoint, so every entry is read exactly once.
            assert_eq!(e.counters().scanned - before.scanned, 1000);
        }
    }

    #[test]
    fn reads_find_what_fills_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let e = memory(dir.path());
        let f = flags(&["--num=500", "--threads=2", "--engine=memory"]);
        run_one(&e, &f, Benchmark::FillBatch);
        assert_eq!(e.counters().batches, 2); // one batch of 250 per thread
        let m = &run_one(&e, &f, Benchmark::ReadRandom)[0];
        assert_eq!((m.ops, m.found), (500, 500));
        assert_eq!(m.message.as_deref(), Some("(500 of 500 found)"));
        let m = &run_one(&e, &f, Benchmark::ReadMissing)[0];
        assert_eq!((m.ops, m.found, m.bytes), (500, 0, 0));
        let m = &run_one(&e, &f, Benchmark::SeekRandom)[0];
        assert_eq!((m.ops, m.found), (500, 500));
        let m = &run_one(&e, &f, Benchmark::DeleteRandom)[0];
        assert_eq!(m.ops, 500);
        let left = e.counters();
        let m = &run_one(&e, &f, Benchmark::ReadRandom)[0];
        assert!(m.found < 500, "deleterandom deleted nothing");
        assert!(e.counters().gets - left.gets == 500);
    }

    #[test]
    fn random_streams_are_repeatable() {
        let keys_of = |seed: &str| {
            let dir = tempfile::tempdir().unwrap();
            let e = memory(dir.path());
            let f = flags(&["--num=300", seed, "--engine=memory"]);
            run_one(&e, &f, Benchmark::FillRandom);
            let mut keys = Vec::new();
            e.scan(Direction::Forward, None, usize::MAX, &mut |k, _| {
                keys.push(k.to_vec())
            })
            .unwrap();
            keys
        };
        let a = keys_of("--seed=1");
        assert_eq!(a, keys_of("--seed=1"));
        assert_ne!(a, keys_of("--seed=2"));
        // With repetition, about 1 - 1/e of the keys are distinct.
        assert!((150..250).contains(&a.len()), "{}", a.len());
    }

    #[test]
    fn agent_workloads_write_their_key_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let e = memory(dir.path());
        let f = flags(&["--num=600", "--agents=7", "--threads=3", "--engine=memory"]);
        let m = &run_one(&e, &f, Benchmark::AgentLog)[0];
        assert_eq!(m.ops, 600);
        let mut agents = std::collections::BTreeSet::new();
        let mut count = 0;
        e.scan(Direction::Forward, None, usize::MAX, &mut |k, _| {
            let k = std::str::from_utf8(k).unwrap();
            let (agent, ts) = k.split_once('/').unwrap();
            assert!(agent.starts_with("agent-") && agent.len() == 12, "{k}");
            assert_eq!(ts.len(), 16);
            agents.insert(agent.to_string());
            count += 1;
        })
        .unwrap();
        assert_eq!(count, 600, "agentlog keys must be unique");
        assert_eq!(agents.len(), 7);
        let m = &run_one(&e, &f, Benchmark::AgentState)[0];
        assert_eq!(m.ops, 600);
        assert_eq!(m.reads + m.writes, 600);
        assert_eq!(m.found, m.reads, "every agent state was prefilled");
        assert!(m.reads > 200 && m.writes > 200);
    }

    #[test]
    fn embeddings_fill_every_key_once_with_large_values() {
        let dir = tempfile::tempdir().unwrap();
        let e = memory(dir.path());
        let f = flags(&[
            "--num=200",
            "--reads=50",
            "--engine=memory",
            "--benchmarks=embeddings",
        ]);
        let ms = run_one(&e, &f, Benchmark::Embeddings);
        assert_eq!(ms.len(), 2);
        assert_eq!((ms[0].name.as_str(), ms[0].ops), ("embeddings.fill", 200));
        assert_eq!(ms[0].bytes, 200 * (4 + 16 + 4096));
        assert_eq!(
            (ms[1].name.as_str(), ms[1].ops, ms[1].found),
            ("embeddings.read", 50, 50)
        );
        let n = e.scan(Direction::Forward, None, usize::MAX, &mut |_, v| {
            assert_eq!(v.len(), 4096)
        });
        assert_eq!(n.unwrap(), 200);
    }

    #[test]
    fn readwhilewriting_reports_readers_only() {
        let dir = tempfile::tempdir().unwrap();
        let e = memory(dir.path());
        let f = flags(&["--num=400", "--threads=2", "--engine=memory"]);
        run_one(&e, &f, Benchmark::FillSeq);
        let puts_before = e.counters().puts;
        let m = &run_one(&e, &f, Benchmark::ReadWhileWriting)[0];
        assert_eq!((m.ops, m.found), (400, 400));
        let writer_puts = e.counters().puts - puts_before;
        let msg = m.message.clone().unwrap();
        assert!(msg.starts_with("(400 of 400 found) (writer: "), "{msg}");
        assert!(
            msg.contains(&format!("writer: {writer_puts} puts")),
            "{msg}"
        );
    }

    #[test]
    fn fillsync_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let e = memory(dir.path());
        let f = flags(&["--num=550", "--engine=memory"]);
        let m = &run_one(&e, &f, Benchmark::FillSync)[0];
        assert_eq!(m.ops, 5);
        assert_eq!(
            e.counters().syncs,
            5,
            "fillsync must write with Sync durability"
        );
        let m = &run_one(&e, &f, Benchmark::Compact)[0];
        assert_eq!((m.ops, m.bytes), (1, 0));
        assert_eq!(e.counters().rewrites, 1);
    }
}
