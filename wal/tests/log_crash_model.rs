//! Crash model test: thousands of seeded schedules of appends, syncs, rotations,
//! process kills and simulated power loss through `FaultFs`. After every crash the
//! recovered log must be exactly a prefix of what was appended and contain every record
//! that was acknowledged as synced; after a process kill (no power loss) it must hold
//! every record appended, and the next power loss must not lose any of them.

mod common;

use std::sync::Arc;

use common::{dir, open, options, payload};
use strata_wal::{Commit, CrashMode, FaultFs, FaultKind, FaultOp, FaultRule, Fs};

/// A tiny deterministic generator so that every schedule is reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MODES: [CrashMode; 3] = [
    CrashMode::DropUnsynced,
    CrashMode::TornTail,
    CrashMode::GarbageTail,
];

fn run_schedule(seed: u64) {
    let mut rng = Rng(seed);
    let fault = FaultFs::new(seed);
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    // Injected crashes (FaultKind::Crash) use this mode, so they tear and garble too.
    fault.set_crash_mode(MODES[rng.below(3) as usize]);
    let segment_bytes = 4096 + rng.below(4) * 2048;
    // Every record ever attempted in the current history, in order.
    let mut attempted: Vec<Vec<u8>> = Vec::new();
    // attempted[..durable] is acknowledged as synced.
    let mut durable = 0usize;
    let mut counter = 0usize;
    let (mut wal, replayed, _) = open(&fs, &dir(), options(segment_bytes)).unwrap();
    assert!(replayed.is_empty());
    let steps = 20 + rng.below(60);
    for _ in 0..steps {
        match rng.below(22) {
            0..=10 => {
                let p = payload(counter, rng.below(700) as usize);
                counter += 1;
                attempted.push(p.clone());
                let commit = if rng.below(3) == 0 {
                    Commit::Sync
                } else {
                    Commit::Buffered
                };
                match wal.append(&p, 1 + rng.below(3) as u32, commit) {
                    Ok(_) if commit == Commit::Sync => durable = attempted.len(),
                    Ok(_) => {}
                    // A crash injected inside this append: recover below.
                    Err(_) => {
                        assert!(
                            fault.is_powered_off(),
                            "seed {seed}: append failed without a crash"
                        );
                        wal = recover(
                            seed,
                            &fault,
                            &fs,
                            segment_bytes,
                            &mut attempted,
                            durable,
                            None,
                        );
                        durable = attempted.len();
                    }
                }
            }
            11..=12 => match wal.sync() {
                Ok(()) => durable = attempted.len(),
                Err(_) => {
                    assert!(
                        fault.is_powered_off(),
                        "seed {seed}: sync failed without a crash"
                    );
                    wal = recover(
                        seed,
                        &fault,
                        &fs,
                        segment_bytes,
                        &mut attempted,
                        durable,
                        None,
                    );
                    durable = attempted.len();
                }
            },
            13 => {
                // Arm a crash at a future write, sync, create or rename.
                let op = [FaultOp::Write, FaultOp::Sync, FaultOp::Create, FaultOp::Any]
                    [rng.below(4) as usize];
                fault.inject(FaultRule::once(op, 1 + rng.below(6), FaultKind::Crash));
            }
            14..=19 => {
                let mode = MODES[rng.below(3) as usize];
                wal = recover(
                    seed,
                    &fault,
                    &fs,
                    segment_bytes,
                    &mut attempted,
                    durable,
                    Some(mode),
                );
                durable = attempted.len();
            }
            _ => {
                // Process kill: no close and no power loss, so the page cache (the
                // fault fs's current view) survives and recovery replays everything.
                std::mem::forget(wal);
                wal = match open(&fs, &dir(), options(segment_bytes)) {
                    Ok((reopened, replayed, _)) => {
                        let got: Vec<_> = replayed.into_iter().map(|r| r.payload).collect();
                        assert_eq!(got, attempted, "seed {seed}: a process kill lost records");
                        // Recovery made what it replayed durable before going on.
                        durable = attempted.len();
                        reopened
                    }
                    Err(_) => {
                        assert!(
                            fault.is_powered_off(),
                            "seed {seed}: reopen after a process kill failed without a crash"
                        );
                        let wal = recover(
                            seed,
                            &fault,
                            &fs,
                            segment_bytes,
                            &mut attempted,
                            durable,
                            None,
                        );
                        durable = attempted.len();
                        wal
                    }
                };
            }
        }
    }
    let mode = MODES[rng.below(3) as usize];
    recover(
        seed,
        &fault,
        &fs,
        segment_bytes,
        &mut attempted,
        durable,
        Some(mode),
    );
}

/// Crashes (unless the fault fs already did), reopens and checks the prefix property.
/// Returns the reopened log; `attempted` is cut to what survived.
fn recover(
    seed: u64,
    fault: &FaultFs,
    fs: &Arc<dyn Fs>,
    segment_bytes: u64,
    attempted: &mut Vec<Vec<u8>>,
    durable: usize,
    mode: Option<CrashMode>,
) -> strata_wal::Wal {
    if let Some(mode) = mode {
        fault.crash_with(mode);
    }
    fault.clear_faults();
    fault.restart();
    let (wal, replayed, _) = match open(fs, &dir(), options(segment_bytes)) {
        Ok(x) => x,
        Err(e) => panic!("seed {seed}: recovery failed: {e}"),
    };
    assert!(
        replayed.len() >= durable,
        "seed {seed}: lost synced records: recovered {} of {durable} synced",
        replayed.len()
    );
    assert!(
        replayed.len() <= attempted.len(),
        "seed {seed}: recovered more than was written"
    );
    for (i, record) in replayed.iter().enumerate() {
        assert_eq!(
            record.payload, attempted[i],
            "seed {seed}: record {i} differs: not a prefix"
        );
    }
    for pair in replayed.windows(2) {
        assert!(
            pair[1].seq > pair[0].last_seq(),
            "seed {seed}: sequence numbers not increasing"
        );
    }
    attempted.truncate(replayed.len());
    wal
}

#[test]
fn recovered_log_is_a_prefix_containing_every_synced_record() {
    let schedules: u64 = std::env::var("STRATA_WAL_CRASH_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for seed in 0..schedules {
        run_schedule(seed);
    }
}
