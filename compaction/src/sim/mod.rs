//! A simulator that replays a workload against a policy without I/O and measures write,
//! read and space amplification.
//!
//! What it models: a memtable that seals after `flush_entries` writes and flushes its
//! newest version of each key as one level-0 table; merges that really merge — every
//! table carries its sorted keys (with sequence numbers and tombstone flags), a merge
//! keeps the newest version of each key and drops tombstones when bottommost, and splits
//! its output into tables of `table_entries` — so overwrites and deletes shrink data as
//! they would; table sizes are `entries × entry_bytes`. Every decision is checked with
//! [`TreeDesc::apply`] (which [`validate`](crate::validate)s it) before it is applied.
//!
//! What it measures: write amplification `(flushed + compaction-written bytes) / user
//! bytes` (the flush counts as 1); runs consulted per point read — runs whose key range
//! covers the key, in read order, up to and including the one holding it (each is a
//! bloom-filter probe; with 1% false positives the I/O cost is about
//! `1 + 0.01·(runs − 1)`); runs a scan opens; and space amplification, tree bytes over
//! live bytes, after every flush.
//!
//! What it does not: compaction takes no time (the tree settles before the next flush,
//! so there is no debt to stall on), there are no snapshots (all old versions are
//! garbage), and reads are sampled after every flush (the tree does not change between
//! flushes, so the sample is unbiased) rather than all performed.

mod workload;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

pub use workload::{KeyDistribution, OpMix, Workload};
use workload::{KeyGen, Rng};

use crate::decision::{Decision, Merge};
use crate::error::{Error, Result};
use crate::hca::{Hca, HcaConfig, Hysteresis};
use crate::leveled::{Leveled, LeveledConfig};
use crate::mix::{MixWindow, WorkloadMix};
use crate::policy::CompactionPolicy;
use crate::tiered::{Tiered, TieredConfig};
use crate::tree::{TableDesc, TableId, TreeDesc};

/// The simulated engine's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Levels in the tree. Default 7, as the engine.
    pub num_levels: usize,
    /// Bytes per entry (key, value and overhead). Default 128.
    pub entry_bytes: u64,
    /// Writes per memtable. Default 512.
    pub flush_entries: u64,
    /// Entries per table written by a merge. Default 1024.
    pub table_entries: u64,
    /// Point reads sampled after each flush. Default 16.
    pub read_samples: u32,
    /// Scans sampled after each flush. Default 4.
    pub scan_samples: u32,
    /// Keys of the key space one scan spans. Default 100.
    pub scan_keys: u64,
    /// Flushes per observation period (the policy observes the window after each).
    /// Default 4.
    pub observe_every: u32,
    /// Periods in the observation window. Default 8.
    pub window_periods: usize,
    /// Steps a policy may take after one flush before the simulation gives up.
    /// Default 100 000.
    pub max_steps_per_flush: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            num_levels: 7,
            entry_bytes: 128,
            flush_entries: 512,
            table_entries: 1024,
            read_samples: 16,
            scan_samples: 4,
            scan_keys: 100,
            observe_every: 4,
            window_periods: 8,
            max_steps_per_flush: 100_000,
        }
    }
}

impl SimConfig {
    /// Bytes of a full memtable.
    pub fn flush_bytes(&self) -> u64 {
        self.flush_entries.saturating_mul(self.entry_bytes)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field out of range.
    pub fn validate(&self) -> Result<()> {
        if self.num_levels < 2 {
            return Err(Error::config("SimConfig::num_levels", "must be at least 2"));
        }
        for (field, v) in [
            ("SimConfig::entry_bytes", self.entry_bytes),
            ("SimConfig::flush_entries", self.flush_entries),
            ("SimConfig::table_entries", self.table_entries),
            ("SimConfig::scan_keys", self.scan_keys),
            ("SimConfig::observe_every", u64::from(self.observe_every)),
        ] {
            if v == 0 {
                return Err(Error::config(field, "must be positive"));
            }
        }
        Ok(())
    }

    /// The leveled policy at this scale: default ratio and level-0 trigger, base level
    /// of `l0_trigger` memtables.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the scaled configuration does not validate.
    pub fn leveled(&self) -> Result<Leveled> {
        let c = LeveledConfig::default();
        Leveled::new(LeveledConfig {
            base_level_bytes: self.base_level_bytes(c.l0_trigger),
            ..c
        })
    }

    /// The tiered policy at this scale (see [`leveled`](Self::leveled)).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the scaled configuration does not validate.
    pub fn tiered(&self) -> Result<Tiered> {
        let c = TieredConfig::default();
        Tiered::new(TieredConfig {
            base_level_bytes: self.base_level_bytes(c.l0_trigger),
            ..c
        })
    }

    /// The HCA policy at this scale (see [`leveled`](Self::leveled)); a window of one
    /// observation period is enough to adapt on.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the scaled configuration does not validate.
    pub fn hca(&self) -> Result<Hca> {
        let c = HcaConfig::default();
        let period = self
            .flush_entries
            .saturating_mul(u64::from(self.observe_every));
        Hca::new(HcaConfig {
            base_level_bytes: self.base_level_bytes(c.l0_trigger),
            hysteresis: Hysteresis {
                min_window_ops: period,
                ..c.hysteresis
            },
            ..c
        })
    }

    /// One of the three policies by name (`leveled`, `tiered`, `hca`), at this scale.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an unknown name or a configuration that does not
    /// validate.
    pub fn policy(&self, name: &str) -> Result<Box<dyn CompactionPolicy>> {
        Ok(match name {
            "leveled" => Box::new(self.leveled()?),
            "tiered" => Box::new(self.tiered()?),
            "hca" => Box::new(self.hca()?),
            other => {
                return Err(Error::config(
                    "policy",
                    format!("unknown policy {other:?}; use leveled, tiered or hca"),
                ))
            }
        })
    }

    fn base_level_bytes(&self, l0_trigger: usize) -> u64 {
        self.flush_bytes().max(1).saturating_mul(l0_trigger as u64)
    }
}

/// One simulated entry: a key and `seq << 1 | tombstone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: u64,
    tag: u64,
}

impl Entry {
    fn is_tombstone(&self) -> bool {
        self.tag & 1 == 1
    }

    fn seq(&self) -> u64 {
        self.tag >> 1
    }
}

/// What a simulation measured.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SimReport {
    /// The policy's name.
    pub policy: String,
    /// The policy's [`summary`](CompactionPolicy::summary) at the end.
    pub summary: String,
    /// The workload's name.
    pub workload: String,
    /// Bytes the workload wrote.
    pub user_bytes: u64,
    /// Bytes flushes wrote (overwrites within a memtable are written once).
    pub flush_bytes: u64,
    /// Bytes merges wrote.
    pub compaction_bytes: u64,
    /// Merges run.
    pub merges: u64,
    /// Tables moved without a rewrite.
    pub moves: u64,
    /// Tables dropped whole.
    pub dropped_tables: u64,
    /// `(flush_bytes + compaction_bytes) / user_bytes`.
    pub write_amp: f64,
    /// Mean runs consulted per point read.
    pub runs_per_read: f64,
    /// Mean runs a scan opens.
    pub runs_per_scan: f64,
    /// Mean of tree bytes over live bytes, measured after each flush.
    pub space_amp: f64,
    /// Largest space amplification measured.
    pub max_space_amp: f64,
    /// Most runs the tree held after a flush had settled.
    pub max_total_runs: usize,
    /// Largest debt the policy reported right after a flush, before compacting.
    pub max_debt_bytes: u64,
    /// Runs and bytes per level at the end.
    pub final_levels: Vec<(usize, u64)>,
    /// Bytes written into each level (flushes into level 0, merges into their output
    /// level) over user bytes: where the write amplification comes from.
    pub level_write_amp: Vec<f64>,
}

impl SimReport {
    /// Column titles matching [`Display`](fmt::Display).
    pub fn header() -> String {
        format!(
            "{:<22} {:<8} {:>8} {:>10} {:>9} {:>9} {:>8} {:>8} {:>7}",
            "workload",
            "policy",
            "w-amp",
            "runs/read",
            "runs/scan",
            "space",
            "max-spc",
            "max-runs",
            "moves"
        )
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<22} {:<8} {:>8.2} {:>10.2} {:>9.2} {:>9.3} {:>8.3} {:>8} {:>7}",
            self.workload,
            self.policy,
            self.write_amp,
            self.runs_per_read,
            self.runs_per_scan,
            self.space_amp,
            self.max_space_amp,
            self.max_total_runs,
            self.moves
        )
    }
}

/// What a check sees after a flush has settled.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Settled<'a> {
    /// The tree.
    pub tree: &'a TreeDesc,
    /// The policy.
    pub policy: &'a dyn CompactionPolicy,
    /// Bytes of the live keys (each counted once).
    pub live_bytes: u64,
    /// Flushes so far, this one included.
    pub flushes: u64,
}

/// A check run after each flush has settled; an `Err` stops the simulation.
pub type SettleCheck<'a> = dyn FnMut(&Settled<'_>) -> std::result::Result<(), String> + 'a;

/// Replays workloads against one policy.
#[derive(Debug)]
pub struct Simulator {
    cfg: SimConfig,
    policy: Box<dyn CompactionPolicy>,
    tree: TreeDesc,
    contents: HashMap<TableId, Arc<[Entry]>>,
    next_id: u64,
    seq: u64,
}

#[derive(Debug, Default)]
struct Tally {
    user_bytes: u64,
    flush_bytes: u64,
    compaction_bytes: u64,
    /// Bytes merges read (`compaction_bytes` is what they wrote).
    merge_input_bytes: u64,
    merges: u64,
    moves: u64,
    dropped: u64,
    reads: u64,
    read_runs: u64,
    scans: u64,
    scan_runs: u64,
    space_sum: f64,
    space_samples: u64,
    max_space: f64,
    max_runs: usize,
    max_debt: u64,
    level_written: Vec<u64>,
}

/// The set of live keys: a bitmap for dense keys, a hash set above it.
#[derive(Debug, Default)]
struct LiveSet {
    bits: Vec<u64>,
    sparse: HashSet<u64>,
    count: u64,
}

impl LiveSet {
    const DENSE: u64 = 1 << 32;

    fn set(&mut self, key: u64, live: bool) {
        if key >= Self::DENSE {
            let changed = if live {
                self.sparse.insert(key)
            } else {
                self.sparse.remove(&key)
            };
            if changed && live {
                self.count += 1;
            } else if changed {
                self.count -= 1;
            }
            return;
        }
        let (word, bit) = ((key / 64) as usize, key % 64);
        if word >= self.bits.len() {
            if !live {
                return;
            }
            self.bits.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        let was = self.bits[word] & mask != 0;
        if live && !was {
            self.bits[word] |= mask;
            self.count += 1;
        } else if !live && was {
            self.bits[word] &= !mask;
            self.count -= 1;
        }
    }
}

impl Simulator {
    /// A simulator for `policy` on an empty tree.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `cfg` does not [`validate`](SimConfig::validate).
    pub fn new(policy: Box<dyn CompactionPolicy>, cfg: SimConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Simulator {
            tree: TreeDesc::with_levels(cfg.num_levels),
            cfg,
            policy,
            contents: HashMap::new(),
            next_id: 1,
            seq: 0,
        })
    }

    /// The tree as it stands.
    pub fn tree(&self) -> &TreeDesc {
        &self.tree
    }

    /// The policy.
    pub fn policy(&self) -> &dyn CompactionPolicy {
        self.policy.as_ref()
    }

    /// Replays `workload` and reports what it cost.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad workload; [`Error::InvalidDecision`] when the
    /// policy decides something invalid; [`Error::Simulation`] when it does not settle.
    pub fn run(&mut self, workload: &Workload) -> Result<SimReport> {
        self.run_checked(workload, &mut |_| Ok(()))
    }

    /// As [`run`](Self::run), calling `check` after every flush has settled.
    ///
    /// # Errors
    /// As [`run`](Self::run), and [`Error::Simulation`] with `check`'s message.
    pub fn run_checked(
        &mut self,
        workload: &Workload,
        check: &mut SettleCheck<'_>,
    ) -> Result<SimReport> {
        let mut gen = KeyGen::new(workload)?;
        let mut rng = Rng::new(workload.seed);
        let mut tally = Tally {
            level_written: vec![0; self.cfg.num_levels],
            ..Tally::default()
        };
        let mut live = LiveSet::default();
        let mut memtable: Vec<Entry> = Vec::with_capacity(self.cfg.flush_entries as usize);
        let mut window = MixWindow::new(self.cfg.window_periods);
        let mut period = WorkloadMix::default();
        // Merge totals when the current period began.
        let mut merged_seen = (0u64, 0u64);
        let mut flushes: u64 = 0;
        let mix = workload.mix;
        for i in 0..workload.writes {
            let delete =
                workload.delete_percent > 0 && rng.below(100) < u64::from(workload.delete_percent);
            let key = if delete {
                gen.delete_key(&mut rng)
            } else {
                gen.write_key(&mut rng)
            };
            self.seq += 1;
            memtable.push(Entry {
                key,
                tag: self.seq << 1 | u64::from(delete),
            });
            live.set(key, !delete);
            tally.user_bytes += self.cfg.entry_bytes;
            if memtable.len() as u64 >= self.cfg.flush_entries || i + 1 == workload.writes {
                let ops = memtable.len() as u64;
                self.flush(&mut memtable, &mut tally)?;
                tally.max_debt = tally
                    .max_debt
                    .max(self.policy.debt(&self.tree).pending_bytes);
                self.settle(&mut tally)?;
                self.measure(&mut gen, &mut rng, &live, &mut tally);
                flushes += 1;
                let settled = Settled {
                    tree: &self.tree,
                    policy: self.policy.as_ref(),
                    live_bytes: live.count * self.cfg.entry_bytes,
                    flushes,
                };
                check(&settled).map_err(Error::Simulation)?;
                let per_write = |w: u32| ops * u64::from(w) / u64::from(mix.writes);
                period.add(&WorkloadMix {
                    writes: ops,
                    write_bytes: ops * self.cfg.entry_bytes,
                    point_reads: per_write(mix.point_reads),
                    scans: per_write(mix.scans),
                    merge_input_bytes: tally.merge_input_bytes - merged_seen.0,
                    merge_output_bytes: tally.compaction_bytes - merged_seen.1,
                });
                merged_seen = (tally.merge_input_bytes, tally.compaction_bytes);
                if flushes.is_multiple_of(u64::from(self.cfg.observe_every)) {
                    window.push(std::mem::take(&mut period));
                    self.policy.observe(&window.mix(), &self.tree);
                }
            }
        }
        let user = tally.user_bytes.max(1) as f64;
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Ok(SimReport {
            policy: self.policy.name().to_string(),
            summary: self.policy.summary(),
            workload: workload.name.clone(),
            user_bytes: tally.user_bytes,
            flush_bytes: tally.flush_bytes,
            compaction_bytes: tally.compaction_bytes,
            merges: tally.merges,
            moves: tally.moves,
            dropped_tables: tally.dropped,
            write_amp: (tally.flush_bytes + tally.compaction_bytes) as f64 / user,
            runs_per_read: ratio(tally.read_runs, tally.reads),
            runs_per_scan: ratio(tally.scan_runs, tally.scans),
            space_amp: if tally.space_samples == 0 {
                0.0
            } else {
                tally.space_sum / tally.space_samples as f64
            },
            max_space_amp: tally.max_space,
            max_total_runs: tally.max_runs,
            max_debt_bytes: tally.max_debt,
            final_levels: self
                .tree
                .levels
                .iter()
                .map(|l| (l.runs.len(), l.bytes()))
                .collect(),
            level_write_amp: tally
                .level_written
                .iter()
                .map(|w| *w as f64 / user)
                .collect(),
        })
    }

    fn new_table(&mut self, entries: Vec<Entry>) -> TableDesc {
        let id = TableId(self.next_id);
        self.next_id += 1;
        let key = |e: Option<&Entry>| e.map_or(0, |e| e.key).to_be_bytes().to_vec();
        let desc = TableDesc {
            id,
            size: entries.len() as u64 * self.cfg.entry_bytes,
            smallest: key(entries.first()),
            largest: key(entries.last()),
            min_seq: entries.iter().map(Entry::seq).min().unwrap_or(0),
            max_seq: entries.iter().map(Entry::seq).max().unwrap_or(0),
            entries: entries.len() as u64,
            tombstones: entries.iter().filter(|e| e.is_tombstone()).count() as u64,
        };
        self.contents.insert(id, entries.into());
        desc
    }

    fn flush(&mut self, memtable: &mut Vec<Entry>, tally: &mut Tally) -> Result<()> {
        if memtable.is_empty() {
            return Ok(());
        }
        // Newest version of each key: stable sort keeps write order among equal keys.
        memtable.sort_by_key(|e| e.key);
        let mut out: Vec<Entry> = Vec::with_capacity(memtable.len());
        for e in memtable.drain(..) {
            match out.last_mut() {
                Some(last) if last.key == e.key => *last = e,
                _ => out.push(e),
            }
        }
        let bytes = out.len() as u64 * self.cfg.entry_bytes;
        tally.flush_bytes += bytes;
        if let Some(w) = tally.level_written.first_mut() {
            *w += bytes;
        }
        let table = self.new_table(out);
        self.tree.push_flush(table)
    }

    fn settle(&mut self, tally: &mut Tally) -> Result<()> {
        for _ in 0..self.cfg.max_steps_per_flush {
            let decision = self.policy.decide(&self.tree);
            match &decision {
                Decision::Nothing => return Ok(()),
                Decision::Move(_) => {
                    self.tree.apply(&decision, Vec::new())?;
                    tally.moves += 1;
                }
                Decision::DropTables(tables) => {
                    self.tree.apply(&decision, Vec::new())?;
                    for t in tables {
                        self.contents.remove(&t.id);
                    }
                    tally.dropped += tables.len() as u64;
                }
                Decision::Merge(m) => {
                    let read: u64 = m
                        .inputs
                        .iter()
                        .filter_map(|r| self.contents.get(&r.id))
                        .map(|entries| entries.len() as u64 * self.cfg.entry_bytes)
                        .sum();
                    let outputs = self.execute(m)?;
                    let written: u64 = outputs.iter().map(|t| t.size).sum();
                    let out_ids: Vec<TableId> = outputs.iter().map(|t| t.id).collect();
                    if let Err(e) = self.tree.apply(&decision, outputs) {
                        for id in out_ids {
                            self.contents.remove(&id);
                        }
                        return Err(e);
                    }
                    for r in &m.inputs {
                        self.contents.remove(&r.id);
                    }
                    tally.compaction_bytes += written;
                    tally.merge_input_bytes += read;
                    tally.merges += 1;
                    if let Some(w) = tally.level_written.get_mut(m.output_level) {
                        *w += written;
                    }
                }
            }
        }
        Err(Error::Simulation(format!(
            "{} did not settle within {} steps after a flush: {}",
            self.policy.name(),
            self.cfg.max_steps_per_flush,
            self.policy.decide(&self.tree)
        )))
    }

    /// Merges the inputs' entries as the engine would: newest version of each key,
    /// tombstones dropped at the bottom, output split into tables.
    fn execute(&mut self, m: &Merge) -> Result<Vec<TableDesc>> {
        // Read order of each input: (level, run, key order).
        let mut order: HashMap<TableId, (usize, usize)> = HashMap::new();
        for (l, level) in self.tree.levels.iter().enumerate() {
            for (r, run) in level.runs.iter().enumerate() {
                for t in &run.tables {
                    order.insert(t.id, (l, r));
                }
            }
        }
        let mut inputs: Vec<(usize, usize, &TableDesc)> = Vec::with_capacity(m.inputs.len());
        for r in &m.inputs {
            let t = self
                .tree
                .table(*r)
                .ok_or_else(|| Error::decision(format!("input {r} is not in the tree")))?;
            let (l, run) = order.get(&r.id).copied().unwrap_or((r.level, 0));
            inputs.push((l, run, t));
        }
        inputs.sort_by(|a, b| (a.0, a.1, &a.2.smallest).cmp(&(b.0, b.1, &b.2.smallest)));
        let total: usize = inputs
            .iter()
            .filter_map(|(_, _, t)| self.contents.get(&t.id).map(|c| c.len()))
            .sum();
        let mut all: Vec<Entry> = Vec::with_capacity(total);
        for (_, _, t) in &inputs {
            let content = self
                .contents
                .get(&t.id)
                .ok_or_else(|| Error::Simulation(format!("no contents for table {}", t.id)))?;
            all.extend_from_slice(content);
        }
        // Stable: among equal keys the newest run's entry stays first.
        all.sort_by_key(|e| e.key);
        let mut kept: Vec<Entry> = Vec::with_capacity(all.len());
        let mut last_key = None;
        for e in all {
            if last_key == Some(e.key) {
                continue;
            }
            last_key = Some(e.key);
            if m.bottommost && e.is_tombstone() {
                continue;
            }
            kept.push(e);
        }
        let per_table = self.cfg.table_entries as usize;
        let mut outputs = Vec::with_capacity(kept.len() / per_table + 1);
        let mut rest = kept.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(per_table.min(rest.len()));
            outputs.push(self.new_table(chunk.to_vec()));
            rest = tail;
        }
        Ok(outputs)
    }

    fn measure(&self, gen: &mut KeyGen, rng: &mut Rng, live: &LiveSet, tally: &mut Tally) {
        if gen.span() > 0 {
            for _ in 0..self.cfg.read_samples {
                let key = gen.read_key(rng);
                tally.read_runs += self.runs_probed(key);
                tally.reads += 1;
            }
            for _ in 0..self.cfg.scan_samples {
                let lo = gen.read_key(rng);
                let hi = lo.saturating_add(self.cfg.scan_keys - 1);
                let (lo, hi) = (lo.to_be_bytes(), hi.to_be_bytes());
                let runs = self
                    .tree
                    .levels
                    .iter()
                    .flat_map(|l| l.runs.iter())
                    .filter(|r| r.overlaps(&lo, &hi))
                    .count();
                tally.scan_runs += runs as u64;
                tally.scans += 1;
            }
        }
        if live.count > 0 {
            let amp = self.tree.total_bytes() as f64 / (live.count * self.cfg.entry_bytes) as f64;
            tally.space_sum += amp;
            tally.space_samples += 1;
            tally.max_space = tally.max_space.max(amp);
        }
        tally.max_runs = tally.max_runs.max(self.tree.total_runs());
    }

    /// Runs a point read of `key` consults: those whose key range covers it, in read
    /// order, through the first that holds it.
    fn runs_probed(&self, key: u64) -> u64 {
        let kb = key.to_be_bytes();
        let mut probes = 0;
        for run in self.tree.levels.iter().flat_map(|l| l.runs.iter()) {
            if let Some(t) = run.table_for(&kb) {
                probes += 1;
                let holds = self
                    .contents
                    .get(&t.id)
                    .is_some_and(|c| c.binary_search_by_key(&key, |e| e.key).is_ok());
                if holds {
                    return probes;
                }
            }
        }
        probes
    }
}

/// Runs `workload` against a fresh simulator for `policy`.
///
/// # Errors
/// As [`Simulator::run`].
pub fn simulate(
    policy: Box<dyn CompactionPolicy>,
    cfg: SimConfig,
    workload: &Workload,
) -> Result<SimReport> {
    Simulator::new(policy, cfg)?.run(workload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimConfig {
        SimConfig {
            flush_entries: 64,
            table_entries: 64,
            ..SimConfig::default()
        }
    }

    #[test]
    fn defaults_validate() {
        assert!(SimConfig::default().validate().is_ok());
        let cfg = small();
        for name in ["leveled", "tiered", "hca"] {
            assert_eq!(cfg.policy(name).map(|p| p.name()), Ok(name));
        }
        assert!(cfg.policy("fifo").is_err());
        assert!(Simulator::new(
            cfg.policy("leveled").unwrap(),
            SimConfig {
                num_levels: 1,
                ..small()
            }
        )
        .is_err());
    }

    #[test]
    fn overwrites_shrink_data_and_tombstones_vanish_at_the_bottom() {
        let cfg = small();
        let mut w = Workload::write_heavy_uniform(500, 20_000);
        w.delete_percent = 30;
        let mut sim = Simulator::new(cfg.policy("leveled").unwrap(), cfg.clone()).unwrap();
        let report = sim.run(&w).unwrap();
        // The tree holds about the live keys, not every write.
        let tree_entries: u64 = sim
            .tree()
            .levels
            .iter()
            .flat_map(|l| l.tables())
            .map(|t| t.entries)
            .sum();
        assert!(tree_entries < 1500, "{tree_entries} entries for 500 keys");
        assert!(report.merges > 0 && report.write_amp > 1.0);
        // Every table's contents match its description.
        for t in sim.tree().levels.iter().flat_map(|l| l.tables()) {
            let c = &sim.contents[&t.id];
            assert_eq!(c.len() as u64, t.entries);
            assert!(c.windows(2).all(|w| w[0].key < w[1].key));
            assert_eq!(c[0].key.to_be_bytes().to_vec(), t.smallest);
        }
        // Entries and contents stay in step with the tree.
        assert_eq!(sim.contents.len(), sim.tree().table_count());
    }

    #[test]
    fn reads_count_covering_runs_up_to_the_holder() {
        let cfg = small();
        let mut sim = Simulator::new(cfg.policy("tiered").unwrap(), cfg).unwrap();
        // Three overlapping level-0 runs: key 5 only in the oldest.
        for keys in [vec![1, 9], vec![2, 8], vec![5]] {
            let entries: Vec<Entry> = keys.iter().map(|&k| Entry { key: k, tag: 2 }).collect();
            let table = sim.new_table(entries);
            sim.tree.levels[0]
                .runs
                .push(crate::tree::RunDesc::new(vec![table]));
        }
        assert_eq!(sim.runs_probed(5), 3);
        assert_eq!(sim.runs_probed(1), 1);
        assert_eq!(sim.runs_probed(8), 2);
        assert_eq!(sim.runs_probed(100), 0);
    }
}
