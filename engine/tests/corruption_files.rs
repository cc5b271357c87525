//! Bit flips in every kind of file of a closed database.
//!
//! A small database is built on `FaultFs` and closed cleanly: five keyspaces
//! (`plain` uncompressed, `packed` zstd, `nofilter` without bloom filter, `separated`
//! with its values of 40 bytes and more in value-log segments, and `default`), several
//! flushed tables per keyspace (level 0, and level 1 from a
//! compaction), and a last stretch of write batches that lives only in the WAL. Then,
//! for each file (every table, every value-log segment, the manifest, `CURRENT`, every
//! WAL segment), one bit is
//! flipped at sampled offsets, each time on a fresh `FaultFs` copy of the database:
//! every offset of files under 4 KiB; for larger files every byte of the table's
//! index, filter, properties and footer (located through the footer and the index),
//! every block trailer and the first bytes of every data block, and a stride over the
//! rest. The bit is chosen by a hash of the file and the offset. The database is
//! opened, every keyspace is scanned forward and backward, and every key ever written
//! is read with `get`.
//!
//! Acceptable outcomes, and what the test guards:
//! - `Error::Corruption` from open or from a read, naming the damaged file and an
//!   offset inside it (not another file, not the directory);
//! - success where everything read equals the reference exactly (a flip nobody needs,
//!   e.g. in a WAL segment wholly before the replay point, or in the final sync mark
//!   of the WAL, which is then cut as a torn tail), or, for a WAL segment only, equals
//!   the reference after a prefix of the WAL-only batches (a tail judged torn: data
//!   may be missing after a prefix, never wrong);
//! - never a panic (in the test's thread or a background thread), never a wrong value,
//!   never another kind of error;
//! - and whenever opening or reading reported the flip, `verify_directory` (the
//!   library behind `strata verify`) reports it too, naming the same file.
//!
//! A regression test beside it flips every byte of the manifest of a database whose
//! last manifest edit creates a keyspace (it used to be taken for a torn tail, losing
//! the keyspace and its acknowledged writes).
//!
//! A summary per file kind (flips, detected at open, detected at a read, harmless) is
//! printed; run with `--nocapture` to see it. `STRATA_CORRUPTION_FULL=1` flips every
//! bit of every offset of every file instead (about eight times as many trials).

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::mix;
use strata::iter::InternalIterator;
use strata::table::format::{BlockHandle, Footer, BLOCK_TRAILER_LEN, FOOTER_LEN};
use strata::table::Block;
use strata::{
    Bytes, Compression, Db, Error, FaultFs, Fs, KeyspaceOptions, Options, WriteBatch,
    DEFAULT_KEYSPACE,
};

const DB: &str = "/db";
const KEYSPACES: [&str; 5] = [DEFAULT_KEYSPACE, "plain", "packed", "nofilter", "separated"];
/// Files below this size get a flip at every offset.
const SMALL_FILE: u64 = 4096;
/// Strided samples taken from the bulk of a large file.
const STRIDE_SAMPLES: u64 = 600;

type State = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

fn options() -> Options {
    Options {
        create_if_missing: false,
        background_threads: 1,
        wal_segment_bytes: 4096,
        max_wal_bytes: 1 << 20,
        ..Options::default()
    }
}

fn ks_options(name: &str) -> KeyspaceOptions {
    let base = KeyspaceOptions {
        block_size: 256,
        l0_compaction_trigger: 8,
        l0_slowdown_trigger: 16,
        l0_stop_trigger: 24,
        ..KeyspaceOptions::default()
    };
    match name {
        "packed" => KeyspaceOptions {
            compression: Compression::Zstd,
            block_size: 1024,
            ..base
        },
        "nofilter" => KeyspaceOptions {
            bloom_bits_per_key: 0,
            ..base
        },
        // Values of 40 bytes and more go to value-log segments at flush.
        "separated" => KeyspaceOptions {
            value_threshold: Some(40),
            ..base
        },
        _ => base,
    }
}

fn value(ks: &str, round: u64, i: u64) -> Vec<u8> {
    let h = mix(round * 1000 + i);
    let mut v = format!("{ks}:{round}:{i}:").into_bytes();
    // Repetitive text, so zstd blocks really are compressed.
    let words = ["agent ", "memory ", "tool ", "plan "];
    // `plain` gets longer values, so some of its tables pass 4 KiB and are sampled.
    let extra = if ks == "plain" { 60 } else { 0 };
    while v.len() < 12 + extra + (h % 90) as usize {
        v.extend_from_slice(words[(h as usize + v.len()) % 4].as_bytes());
    }
    v
}

/// The database every trial starts from.
struct Reference {
    /// Every file (path, bytes) after a clean close.
    files: Vec<(PathBuf, Vec<u8>)>,
    /// The final contents of every keyspace.
    expected: State,
    /// The contents after each prefix of the WAL-only batches (the last is `expected`).
    wal_prefixes: Vec<State>,
    /// Every key ever written, per keyspace (absent ones are read too).
    keys: BTreeMap<String, Vec<Vec<u8>>>,
}

fn build_reference() -> Reference {
    let fs = FaultFs::new(7);
    let dyn_fs: Arc<dyn Fs> = Arc::new(fs.clone());
    let db = Db::open_with_fs(
        DB,
        Options {
            create_if_missing: true,
            ..options()
        },
        dyn_fs,
    )
    .unwrap();
    let mut state: State = KEYSPACES
        .iter()
        .map(|k| (k.to_string(), BTreeMap::new()))
        .collect();
    let mut keys: BTreeMap<String, std::collections::BTreeSet<Vec<u8>>> = BTreeMap::new();
    let handles: Vec<_> = KEYSPACES
        .iter()
        .map(|&name| db.keyspace_or_create(name, ks_options(name)).unwrap())
        .collect();
    // Three rounds of overlapping puts and some deletes, one flush per round and
    // keyspace: several level-0 tables; `plain` is compacted after round 1.
    for round in 0..3u64 {
        for ks in &handles[1..] {
            let name = ks.name().to_string();
            let mut batch = WriteBatch::new();
            for i in (round * 15)..(round * 15 + 40) {
                let key = format!("k{i:03}").into_bytes();
                let v = value(&name, round, i);
                batch.put(ks, &key, &v);
                state.get_mut(&name).unwrap().insert(key.clone(), v);
                keys.entry(name.clone()).or_default().insert(key);
                if batch.len() >= 10 {
                    db.write(std::mem::take(&mut batch)).unwrap();
                }
            }
            for i in (round * 15..round * 15 + 40).step_by(7) {
                let key = format!("k{i:03}").into_bytes();
                batch.delete(ks, &key);
                state.get_mut(&name).unwrap().remove(&key);
            }
            db.write(batch).unwrap();
            ks.flush().unwrap();
        }
        if round == 1 {
            handles[1].compact().unwrap();
        }
    }
    // The WAL-only stretch: batches across all keyspaces, never flushed.
    let mut wal_prefixes = vec![state.clone()];
    for j in 0..8u64 {
        let mut batch = WriteBatch::new();
        for ks in &handles {
            let name = ks.name().to_string();
            let map = state.get_mut(&name).unwrap();
            for i in 0..3 {
                let key = format!("w{j}/{i}").into_bytes();
                let v = value(&name, 10 + j, i);
                batch.put(ks, &key, &v);
                map.insert(key.clone(), v);
                keys.entry(name.clone()).or_default().insert(key);
            }
            let over = format!("k{:03}", j * 5 + 1).into_bytes();
            let v = value(&name, 20 + j, 0);
            batch.put(ks, &over, &v);
            map.insert(over.clone(), v);
            keys.entry(name.clone()).or_default().insert(over);
            let gone = format!("k{:03}", j * 5 + 3).into_bytes();
            batch.delete(ks, &gone);
            map.remove(&gone);
        }
        db.write(batch).unwrap();
        wal_prefixes.push(state.clone());
    }
    drop(handles);
    db.close().unwrap();
    drop(db);

    let mut files = Vec::new();
    for dir in [PathBuf::from(DB), Path::new(DB).join("wal")] {
        for name in fs.list(&dir).unwrap() {
            let path = dir.join(&name);
            let bytes = fs.read_file(&path).unwrap();
            files.push((path, bytes));
        }
    }
    Reference {
        files,
        expected: state,
        wal_prefixes,
        keys: keys
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect(),
    }
}

/// A fresh file system holding a copy of the reference files.
fn copy_of(reference: &Reference, seed: u64) -> FaultFs {
    let fs = FaultFs::new(seed);
    fs.create_dir_all(&Path::new(DB).join("wal")).unwrap();
    for (path, bytes) in &reference.files {
        let f = fs.create(path).unwrap();
        f.append(bytes).unwrap();
        f.sync_data().unwrap();
    }
    fs.sync_dir(Path::new(DB)).unwrap();
    fs.sync_dir(&Path::new(DB).join("wal")).unwrap();
    fs
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Open,
    Read,
}

/// Opens the database on `fs` and reads all of it: scans forward and backward, and a
/// get of every key ever written. Panics if the reads disagree with each other.
fn read_everything(fs: &FaultFs, reference: &Reference) -> Result<State, (Stage, Error)> {
    let db = Db::open_with_fs(DB, options(), Arc::new(fs.clone())).map_err(|e| (Stage::Open, e))?;
    let read = |e| (Stage::Read, e);
    let mut state = State::new();
    for name in KEYSPACES {
        let ks = db.keyspace(name).map_err(read)?;
        let mut map = BTreeMap::new();
        for kv in ks.iter() {
            let (k, v) = kv.map_err(read)?;
            assert!(
                map.insert(k.to_vec(), v.to_vec()).is_none(),
                "keyspace {name}: a scan yielded key {k:?} twice"
            );
        }
        let mut back: Vec<(Bytes, Bytes)> = Vec::new();
        for kv in ks.iter().rev() {
            back.push(kv.map_err(read)?);
        }
        assert!(
            back.iter()
                .rev()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .eq(map.clone()),
            "keyspace {name}: the backward scan disagrees with the forward scan"
        );
        for key in &reference.keys[name] {
            let got = ks.get(key).map_err(read)?;
            assert_eq!(
                got.as_deref(),
                map.get(key).map(Vec::as_slice),
                "keyspace {name}: get({key:?}) disagrees with the scan"
            );
        }
        state.insert(name.to_string(), map);
    }
    drop(db);
    Ok(state)
}

/// What one region of a file is, for the summary.
fn table_regions(path: &Path, bytes: &[u8]) -> Vec<(Range<u64>, &'static str)> {
    let len = bytes.len() as u64;
    let footer_at = len - FOOTER_LEN as u64;
    let footer = Footer::decode(&bytes[footer_at as usize..], path, footer_at)
        .expect("the reference table has a valid footer");
    let with_trailer = |h: BlockHandle| h.offset..h.offset + h.size + BLOCK_TRAILER_LEN as u64;
    let mut regions = vec![
        (with_trailer(footer.index), "table index"),
        (with_trailer(footer.properties), "table properties"),
        (footer_at..len, "table footer"),
    ];
    if footer.filter.size > 0 {
        regions.push((with_trailer(footer.filter), "table filter"));
    }
    // Data blocks, from the index.
    let index = Bytes::copy_from_slice(
        &bytes[footer.index.offset as usize..(footer.index.offset + footer.index.size) as usize],
    );
    let index = Block::decode(index, Arc::from(path), footer.index.offset).unwrap();
    let mut it = index.iter();
    it.seek_to_first().unwrap();
    while it.valid() {
        let h = BlockHandle::decode(&it.value()).expect("index entry holds a handle");
        // The trailer's type byte says whether the block is stored compressed.
        let what = match bytes[(h.offset + h.size) as usize] {
            0 => "table data",
            _ => "table data (zstd)",
        };
        regions.push((h.offset..h.offset + h.size, what));
        regions.push((
            h.offset + h.size..h.offset + h.size + BLOCK_TRAILER_LEN as u64,
            "table data trailer",
        ));
        it.next().unwrap();
    }
    regions.sort_by_key(|(r, _)| r.start);
    // Every byte belongs to exactly one region.
    let mut at = 0;
    for (r, what) in &regions {
        assert_eq!(r.start, at, "gap or overlap before the {what} region");
        at = r.end;
    }
    assert_eq!(at, len, "the table regions do not cover the file");
    regions
}

/// The kind of each file, and its regions (one region for files that are not tables).
fn regions_of(path: &Path, bytes: &[u8], newest_wal: &Path) -> Vec<(Range<u64>, &'static str)> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let len = bytes.len() as u64;
    let whole = |what| vec![(0..len, what)];
    if name.ends_with(".sst") {
        table_regions(path, bytes)
    } else if name.starts_with("MANIFEST-") {
        whole("manifest")
    } else if name == "CURRENT" {
        whole("CURRENT")
    } else if name.ends_with(".vlog") {
        let header = (strata_vlog::SEGMENT_HEADER_LEN as u64).min(len);
        vec![
            (0..header, "value log segment header"),
            (header..len, "value log records"),
        ]
    } else if name.ends_with(".wal") {
        let what = if path == newest_wal {
            "wal (newest segment)"
        } else {
            "wal (older segment)"
        };
        let header = 40.min(len);
        vec![(0..header, "wal segment header"), (header..len, what)]
    } else {
        panic!("unexpected file {} in the database", path.display())
    }
}

/// The offsets to flip in a file with these regions.
fn sample_offsets(regions: &[(Range<u64>, &'static str)], len: u64, full: bool) -> Vec<u64> {
    if full || len < SMALL_FILE {
        return (0..len).collect();
    }
    let mut out = Vec::new();
    for (r, what) in regions {
        let bulk = what.starts_with("table data (")
            || *what == "table data"
            || what.starts_with("wal (")
            || *what == "manifest";
        if !bulk {
            out.extend(r.clone());
            continue;
        }
        // The first and last bytes (block starts, trailers and tails, sync marks), then
        // a stride over the rest.
        let edge = 16.min(r.end - r.start);
        out.extend(r.start..r.start + edge);
        out.extend((r.end - edge).max(r.start + edge)..r.end);
        let stride = (len / STRIDE_SAMPLES).max(1);
        let mut at = r.start + edge + mix(r.start) % stride;
        while at < r.end.saturating_sub(edge) {
            out.push(at);
            at += stride;
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[derive(Default)]
struct Tally {
    flips: u64,
    at_open: u64,
    at_read: u64,
    harmless: u64,
    torn_cut: u64,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        self.flips += 1;
        match outcome {
            Outcome::AtOpen => self.at_open += 1,
            Outcome::AtRead => self.at_read += 1,
            Outcome::Harmless => self.harmless += 1,
            Outcome::TornCut => {
                self.harmless += 1;
                self.torn_cut += 1;
            }
            Outcome::Failed(_) => {}
        }
    }
}

/// One flip to try.
struct Trial {
    file_no: usize,
    offset: u64,
    bit: u8,
    what: &'static str,
}

/// What one damaged copy did.
enum Outcome {
    AtOpen,
    AtRead,
    Harmless,
    /// Success, with the WAL-only batches after some prefix missing.
    TornCut,
    Failed(String),
}

fn first_difference(a: &State, b: &State) -> String {
    for (name, map) in a {
        let other = &b[name];
        for (k, v) in map {
            match other.get(k) {
                None => return format!("{name}: key {:?} is missing", Bytes::copy_from_slice(k)),
                Some(w) if w != v => {
                    return format!(
                        "{name}: key {:?} reads {:?}, expected {:?}",
                        Bytes::copy_from_slice(k),
                        Bytes::copy_from_slice(w),
                        Bytes::copy_from_slice(v)
                    )
                }
                _ => {}
            }
        }
        if let Some(k) = other.keys().find(|k| !map.contains_key(*k)) {
            return format!(
                "{name}: key {:?} should not exist",
                Bytes::copy_from_slice(k)
            );
        }
    }
    "no difference".into()
}

/// `None` when `verify_directory` (what `strata verify` runs) reports the trial's flip
/// as corruption of the flipped file; otherwise what it said instead.
fn verify_misses(reference: &Reference, trial: &Trial, seed: u64) -> Option<String> {
    let (path, _) = &reference.files[trial.file_no];
    let fs = copy_of(reference, seed);
    fs.flip_bit(path, trial.offset, trial.bit).unwrap();
    let fs: Arc<dyn Fs> = Arc::new(fs);
    match strata::verify::verify_directory(&fs, Path::new(DB)) {
        Err(Error::Corruption { file, .. }) if &file == path => None,
        other => Some(format!(
            "the read path reported the flip but verify said {other:?}"
        )),
    }
}

/// Runs one trial: a fresh copy, one flip, open and read everything.
fn run_trial(reference: &Reference, trial: &Trial, seed: u64) -> Outcome {
    let (path, bytes) = &reference.files[trial.file_no];
    let len = bytes.len() as u64;
    let fs = copy_of(reference, seed);
    fs.flip_bit(path, trial.offset, trial.bit).unwrap();
    let bg_before = common::background_panics();
    let result = catch_unwind(AssertUnwindSafe(|| read_everything(&fs, reference)));
    if common::background_panics() != bg_before {
        // With two trials running at once, this may be the other trial's.
        return Outcome::Failed("a background thread panicked during this trial".into());
    }
    match result {
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Outcome::Failed(format!("panic: {msg}"))
        }
        Ok(Ok(state)) if state == reference.expected => Outcome::Harmless,
        Ok(Ok(state))
            if path.extension().is_some_and(|e| e == "wal")
                && reference.wal_prefixes.contains(&state) =>
        {
            Outcome::TornCut
        }
        Ok(Ok(state)) => Outcome::Failed(format!(
            "wrong data read without an error: {}",
            first_difference(&reference.expected, &state)
        )),
        Ok(Err((stage, e))) => match &e {
            Error::Corruption {
                file, offset: at, ..
            } if file == path && *at <= len => {
                if let Some(missed) = verify_misses(reference, trial, seed) {
                    return Outcome::Failed(missed);
                }
                match stage {
                    Stage::Open => Outcome::AtOpen,
                    Stage::Read => Outcome::AtRead,
                }
            }
            Error::Corruption { .. } => {
                Outcome::Failed(format!("corruption reported for the wrong place: {e}"))
            }
            _ => Outcome::Failed(format!("{stage:?} failed with a non-corruption error: {e}")),
        },
    }
}

#[test]
fn bit_flips_in_every_file_kind_are_detected_or_harmless() {
    let full = std::env::var("STRATA_CORRUPTION_FULL").is_ok_and(|v| v == "1");
    let reference = build_reference();
    common::count_background_panics();

    // The undamaged copy reads exactly as the reference.
    let clean = read_everything(&copy_of(&reference, 1), &reference)
        .unwrap_or_else(|(stage, e)| panic!("undamaged copy fails at {stage:?}: {e}"));
    assert!(
        clean == reference.expected,
        "undamaged copy differs: {}",
        first_difference(&reference.expected, &clean)
    );

    let newest_wal = reference
        .files
        .iter()
        .map(|(p, _)| p)
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .cloned()
        .expect("the database has WAL segments");
    let mut trials = Vec::new();
    for (file_no, (path, bytes)) in reference.files.iter().enumerate() {
        if path.file_name().is_some_and(|n| n == "LOCK") {
            continue;
        }
        let regions = regions_of(path, bytes, &newest_wal);
        for offset in sample_offsets(&regions, bytes.len() as u64, full) {
            let what = regions
                .iter()
                .find(|(r, _)| r.contains(&offset))
                .map_or("?", |(_, w)| *w);
            let hashed = (mix(file_no as u64 * 1_000_003 + offset) % 8) as u8;
            let bits = if full { 0..8 } else { hashed..hashed + 1 };
            for bit in bits {
                trials.push(Trial {
                    file_no,
                    offset,
                    bit,
                    what,
                });
            }
        }
    }
    // Two workers (the machine has two cores); each trial has its own file system.
    let next = AtomicU64::new(0);
    let outcomes: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                        let Some(trial) = trials.get(i) else { break };
                        mine.push((i, run_trial(&reference, trial, i as u64 + 2)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a trial worker panicked"))
            .collect()
    });
    let mut by_region: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut by_file: BTreeMap<usize, Tally> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    for (i, outcome) in &outcomes {
        let t = &trials[*i];
        by_region.entry(t.what).or_default().add(outcome);
        by_file.entry(t.file_no).or_default().add(outcome);
        if let Outcome::Failed(msg) = outcome {
            failures.push(format!(
                "{} offset {} bit {} ({}): {msg}",
                reference.files[t.file_no].0.display(),
                t.offset,
                t.bit,
                t.what
            ));
        }
    }
    failures.sort();
    println!(
        "{:<26} {:>7} {:>7} {:>8} {:>8} {:>9} {:>8}",
        "file", "bytes", "flips", "at open", "at read", "harmless", "cut"
    );
    for (file_no, t) in &by_file {
        let (path, bytes) = &reference.files[*file_no];
        println!(
            "{:<26} {:>7} {:>7} {:>8} {:>8} {:>9} {:>8}",
            path.strip_prefix(DB).unwrap_or(path).display(),
            bytes.len(),
            t.flips,
            t.at_open,
            t.at_read,
            t.harmless,
            t.torn_cut
        );
    }
    println!(
        "{:<26} {:>7} {:>8} {:>8} {:>9} {:>8}",
        "region", "flips", "at open", "at read", "harmless", "cut"
    );
    for (what, t) in &by_region {
        println!(
            "{what:<26} {:>7} {:>8} {:>8} {:>9} {:>8}",
            t.flips, t.at_open, t.at_read, t.harmless, t.torn_cut
        );
    }
    let total = |f: fn(&Tally) -> u64| by_region.values().map(f).sum::<u64>();
    println!(
        "corruption_files summary: {} flips in {} files, {} detected ({} at open, {} at \
         read), {} harmless ({} as a cut WAL tail), {} failures",
        total(|t| t.flips),
        by_file.len(),
        total(|t| t.at_open + t.at_read),
        total(|t| t.at_open),
        total(|t| t.at_read),
        total(|t| t.harmless),
        total(|t| t.torn_cut),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} damaged databases misbehaved; the first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(30)].join("\n")
    );
    // Every kind of region was exercised.
    for what in [
        "table data",
        "table data (zstd)",
        "table data trailer",
        "table index",
        "table filter",
        "table properties",
        "table footer",
        "manifest",
        "CURRENT",
        "wal segment header",
        "wal (newest segment)",
        "value log segment header",
        "value log records",
    ] {
        assert!(
            by_region.get(what).is_some_and(|t| t.flips > 0),
            "no flip landed in a {what} region"
        );
    }
}

/// Regression: `create_keyspace` appended its manifest edit without a sync mark, so
/// while it was the manifest's last edit (until the next flush or compaction marked
/// it) a bit flipped in it made recovery take it for a torn tail: open succeeded
/// without the keyspace, WAL replay skipped the keyspace's records, and its
/// acknowledged `Sync` writes were silently gone. Every flip in the manifest of such a
/// database must be reported, or harmless.
#[test]
fn flip_in_the_last_create_keyspace_edit_is_reported() {
    let fs = FaultFs::new(3);
    let db = Db::open_with_fs(
        DB,
        Options {
            create_if_missing: true,
            ..options()
        },
        Arc::new(fs.clone()),
    )
    .unwrap();
    let x = db.create_keyspace("x", ks_options("x")).unwrap();
    x.put_opt("k", "acknowledged", &strata::WriteOptions::sync())
        .unwrap();
    drop(x);
    db.close().unwrap();
    drop(db);
    let mut files = Vec::new();
    for dir in [PathBuf::from(DB), Path::new(DB).join("wal")] {
        for name in fs.list(&dir).unwrap() {
            let path = dir.join(&name);
            let bytes = fs.read_file(&path).unwrap();
            files.push((path, bytes));
        }
    }
    let reference = Reference {
        files,
        expected: State::new(),
        wal_prefixes: Vec::new(),
        keys: BTreeMap::new(),
    };
    let (manifest, bytes) = reference
        .files
        .iter()
        .find(|(p, _)| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("MANIFEST-"))
        })
        .expect("a manifest");
    let mut failures = Vec::new();
    for offset in 0..bytes.len() as u64 {
        let copy = copy_of(&reference, offset);
        copy.flip_bit(manifest, offset, (offset % 8) as u8).unwrap();
        match Db::open_with_fs(DB, options(), Arc::new(copy)) {
            Err(Error::Corruption { file, .. }) if &file == manifest => {}
            Err(e) => failures.push(format!("offset {offset}: {e}")),
            Ok(db) => match db.keyspace("x").and_then(|x| x.get("k")) {
                Ok(Some(v)) if v == "acknowledged" => {}
                other => failures.push(format!(
                    "offset {offset}: open succeeded, but reading x/k gives {other:?}"
                )),
            },
        }
    }
    assert!(
        failures.is_empty(),
        "flips in the manifest ({} bytes) lost an acknowledged keyspace and its writes:\n{}",
        bytes.len(),
        failures.join("\n")
    );
}
