//! Entry points shared by the cargo-fuzz targets and their corpus replay in
//! `cargo test`. Not part of the stable API.
//!
//! Each function panics only if an invariant breaks; malformed input itself must
//! come back as [`crate::Error::Corruption`], never as a panic.

use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_wal::{FaultFs, Fs, FsFile, SeqNo};

use crate::cache::BlockCache;
use crate::error::Result;
use crate::ids::TableId;
use crate::iter::InternalIterator;
use crate::key::{compare_internal, parse_internal_key, MAX_SEQ};
use crate::table::{Block, BlockBuilder, Compression, Table, TableBuildOptions, TableBuilder};

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Most seek targets and point reads tried per input, to keep runs fast.
const MAX_PROBES: usize = 48;

/// Treats `data` as the contents of one block. Checks: decoding never panics;
/// iteration ends within `len / 3 + 1` entries in both directions; after a
/// successful `seek(t)` the key is at or above `t` and after `seek_for_prev(t)` at or
/// below it; and when the entries decode cleanly in strictly increasing order, a
/// block rebuilt from them iterates to the same entries both ways.
pub fn block_decoder(data: &[u8]) {
    let path: Arc<Path> = Arc::from(Path::new("/fuzz/block"));
    let Ok(block) = Block::decode(Bytes::copy_from_slice(data), path, 0) else {
        return;
    };
    let max_entries = data.len() / 3 + 1;
    let mut it = block.iter();
    // Every entry takes at least 3 bytes and each step moves at least one entry.
    let (forward, forward_ok) = walk(&mut it, true, max_entries, true);
    let (backward, _) = walk(&mut it, false, max_entries, true);
    assert!(forward.len() <= max_entries && backward.len() <= max_entries);

    let mut targets: Vec<Vec<u8>> = forward.iter().map(|(k, _)| k.clone()).collect();
    targets.push(data.iter().take(24).copied().collect());
    targets.push(Vec::new());
    for t in targets.iter().take(MAX_PROBES) {
        if it.seek(t).is_ok() && it.valid() {
            assert_ne!(
                compare_internal(it.key(), t),
                Ordering::Less,
                "seek landed below"
            );
        }
        if it.seek_for_prev(t).is_ok() && it.valid() {
            assert_ne!(
                compare_internal(it.key(), t),
                Ordering::Greater,
                "seek_for_prev landed above"
            );
        }
    }

    if forward_ok && strictly_increasing(&forward) {
        for interval in [1, 3, 16] {
            let mut b = BlockBuilder::new(interval);
            for (k, v) in &forward {
                b.add(k, v);
            }
            let rebuilt = Block::decode(
                Bytes::copy_from_slice(b.finish()),
                Arc::from(Path::new("/fuzz/rebuilt")),
                0,
            );
            let rebuilt = match rebuilt {
                Ok(r) => r,
                Err(e) => panic!("a block built from clean entries does not decode: {e}"),
            };
            let mut it = rebuilt.iter();
            let (f, f_ok) = walk(&mut it, true, usize::MAX, true);
            let (bk, b_ok) = walk(&mut it, false, usize::MAX, true);
            assert!(f_ok && b_ok, "rebuilt block fails to iterate");
            assert_eq!(f, forward, "rebuilt block iterates differently");
            assert_eq!(bk, forward, "rebuilt block iterates backward differently");
        }
    }
}

/// Treats `data` as a table file. Checks: open and reads never panic and fail only
/// with corruption; positional reads, memory-mapped reads and reads through a block
/// cache all see exactly the same entries, point-read results and errors; and when
/// the table iterates cleanly in strictly increasing order, a table rebuilt from its
/// entries (small blocks, zstd) iterates to the same entries both ways and answers
/// every point read with the right version.
pub fn table_reader(data: &[u8]) {
    let fs = FaultFs::new(0);
    let dir = Path::new("/fuzz");
    let path = dir.join("000001.sst");
    if fs.create_dir_all(dir).is_err() {
        return;
    }
    let Ok(file) = fs.create(&path) else { return };
    if file.append(data).is_err() {
        return;
    }
    let cache = Arc::new(BlockCache::new(1 << 20));
    let mut first: Option<std::result::Result<Summary, String>> = None;
    for (mmap, cache) in [
        (false, None),
        (true, None),
        (false, Some(Arc::clone(&cache))),
        (true, Some(Arc::clone(&cache))),
        (false, Some(Arc::clone(&cache))),
    ] {
        let outcome = summarize(Arc::clone(&file), mmap, cache).map_err(|e| {
            assert!(
                e.is_corruption(),
                "non-corruption error on a table file: {e}"
            );
            e.to_string()
        });
        match &first {
            None => first = Some(outcome),
            Some(f) => assert_eq!(f, &outcome, "read modes disagree (mmap {mmap})"),
        }
    }
    let Some(Ok(summary)) = first else { return };
    let clean = summary.forward_ok
        && strictly_increasing(&summary.forward)
        && summary
            .forward
            .iter()
            .all(|(k, _)| parse_internal_key(k).is_some());
    if clean {
        rebuild_and_check(&fs, dir, &summary.forward);
    }
}

#[derive(Debug, PartialEq)]
struct Summary {
    forward: Entries,
    forward_ok: bool,
    backward: Entries,
    gets: Vec<Option<(SeqNo, u8, Vec<u8>)>>,
    seeks: Vec<Option<Vec<u8>>>,
}

fn summarize(file: Arc<dyn FsFile>, mmap: bool, cache: Option<Arc<BlockCache>>) -> Result<Summary> {
    let table = Table::open(file, TableId(1), cache, mmap)?;
    // Index entries of a crafted file may point at one block many times, so a walk
    // is only capped (the same way in every mode), not bounded by the file size.
    let limit = usize::try_from(table.file_size())
        .unwrap_or(usize::MAX)
        .saturating_mul(4)
        .saturating_add(16);
    let mut it = table.iter();
    let (forward, forward_ok) = walk(&mut it, true, limit, false);
    let (backward, _) = walk(&mut it, false, limit, false);
    let mut gets = Vec::new();
    let mut seeks = Vec::new();
    for (k, _) in forward.iter().take(MAX_PROBES) {
        let uk = crate::key::user_key(k);
        for snap in [
            SeqNo(MAX_SEQ),
            parse_internal_key(k).map_or(SeqNo(0), |p| p.seq),
        ] {
            gets.push(
                table
                    .get(uk, snap)?
                    .map(|(s, kind, v)| (s, kind as u8, v.to_vec())),
            );
        }
        it.seek(k)?;
        seeks.push(it.valid().then(|| it.key().to_vec()));
        it.seek_for_prev(k)?;
        seeks.push(it.valid().then(|| it.key().to_vec()));
    }
    Ok(Summary {
        forward,
        forward_ok,
        backward,
        gets,
        seeks,
    })
}

fn rebuild_and_check(fs: &FaultFs, dir: &Path, entries: &Entries) {
    let path = dir.join("000002.sst");
    let Ok(file) = fs.create(&path) else { return };
    let opts = TableBuildOptions {
        block_size: 64,
        restart_interval: 2,
        bloom_bits_per_key: 10,
        compression: Compression::Zstd,
    };
    let built = (|| {
        let mut b = TableBuilder::new(Arc::clone(&file), opts)?;
        for (k, v) in entries {
            b.add(k, v)?;
        }
        b.finish()
    })();
    if let Err(e) = built {
        panic!("rebuilding a clean table failed: {e}");
    }
    let table = match Table::open(file, TableId(2), None, false) {
        Ok(t) => t,
        Err(e) => panic!("a rebuilt table does not open: {e}"),
    };
    let mut it = table.iter();
    let (f, f_ok) = walk(&mut it, true, usize::MAX, true);
    let (bk, b_ok) = walk(&mut it, false, usize::MAX, true);
    assert!(f_ok && b_ok, "rebuilt table fails to iterate");
    assert_eq!(&f, entries, "rebuilt table iterates differently");
    assert_eq!(&bk, entries, "rebuilt table iterates backward differently");
    for (k, _) in entries.iter().take(MAX_PROBES) {
        let Some(p) = parse_internal_key(k) else {
            continue;
        };
        // The model: the first entry of this user key at or below the snapshot (a
        // crafted file may hold two kinds with one sequence number).
        let want = entries.iter().find_map(|(k2, v2)| {
            let q = parse_internal_key(k2)?;
            (q.user_key == p.user_key && q.seq <= p.seq).then_some((q.seq, q.kind, v2))
        });
        match (table.get(p.user_key, p.seq), want) {
            (Ok(Some((seq, kind, value))), Some((wseq, wkind, wvalue))) => {
                assert_eq!((seq, kind), (wseq, wkind), "rebuilt table: wrong version");
                assert_eq!(&value[..], &wvalue[..], "rebuilt table: wrong value");
            }
            (other, want) => panic!("rebuilt table: get returned {other:?}, expected {want:?}"),
        }
    }
}

/// Walks the whole cursor forward (or backward), stopping at the first error or
/// after `limit` entries (then panics if `strict`: iteration does not end). Returns
/// the entries in ascending cursor order and whether the walk ended cleanly.
fn walk<I: InternalIterator>(
    it: &mut I,
    forward: bool,
    limit: usize,
    strict: bool,
) -> (Entries, bool) {
    let mut out = Vec::new();
    let start = if forward {
        it.seek_to_first()
    } else {
        it.seek_to_last()
    };
    if start.is_err() {
        return (out, false);
    }
    while it.valid() {
        if out.len() >= limit {
            assert!(!strict, "iteration does not end");
            return (out, false);
        }
        out.push((it.key().to_vec(), it.value().to_vec()));
        let step = if forward { it.next() } else { it.prev() };
        if step.is_err() {
            return (out, false);
        }
    }
    if !forward {
        out.reverse();
    }
    (out, true)
}

fn strictly_increasing(entries: &Entries) -> bool {
    entries
        .windows(2)
        .all(|w| compare_internal(&w[0].0, &w[1].0) == Ordering::Less)
}

/// Treats `data` as a version edit, as a `CURRENT` file and as a whole manifest file.
/// Checks: nothing panics; an edit that decodes re-encodes to an edit that decodes
/// equal; a manifest that reads successfully describes a state whose snapshot edit
/// round-trips and rebuilds exactly that state.
pub fn manifest_decoder(data: &[u8]) {
    use crate::manifest::{decode_current, read_manifest, ManifestState, VersionEdit};

    if let Ok(edit) = VersionEdit::decode(data) {
        let again = VersionEdit::decode(&edit.encode()).expect("a decoded edit re-encodes");
        assert_eq!(again, edit, "edit encoding is not stable");
    }
    let _ = decode_current(data, Path::new("/fuzz/CURRENT"));

    let fs = FaultFs::new(0);
    let dir = Path::new("/fuzz");
    let path = dir.join("MANIFEST-000001");
    let written = fs.create_dir_all(dir).and_then(|()| {
        let file = fs.create(&path)?;
        file.append(data)?;
        file.sync_data()
    });
    if written.is_err() {
        return;
    }
    if let Ok((state, _)) = read_manifest(&fs, &path, 1) {
        let snapshot = state.snapshot_edit();
        let decoded = VersionEdit::decode(&snapshot.encode()).expect("a snapshot edit decodes");
        assert_eq!(decoded, snapshot, "snapshot edit does not round-trip");
        let mut rebuilt = ManifestState::default();
        rebuilt
            .apply(&decoded)
            .expect("a snapshot edit applies to an empty state");
        assert_eq!(rebuilt, state, "snapshot edit does not rebuild the state");
    }
}

/// The small record decoders, chosen by the first byte (`% 3`): keyspace options as
/// the manifest stores them (0), a WAL payload of batch entries (1), a value pointer
/// (2). Checks: no panic; whatever decodes re-encodes to something that decodes to
/// the same thing (options and pointers compare equal, entries entry by entry).
pub fn record_decoders(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Some(options) = crate::KeyspaceOptions::decode(body) {
                let again = crate::KeyspaceOptions::decode(&options.encode());
                assert_eq!(again.as_ref(), Some(&options), "options round trip");
            }
        }
        1 => {
            if let Some(entries) = crate::batch::decode_entries(body) {
                let mut encoded = Vec::new();
                crate::batch::encode_entries(
                    &mut encoded,
                    entries.iter().map(|e| (e.op, e.keyspace, e.key, e.value)),
                );
                let again = crate::batch::decode_entries(&encoded).expect("re-encoded entries");
                assert_eq!(again, entries, "batch entries round trip");
                // The public decoder agrees.
                let logged = crate::changes::decode_logged_entries(body).expect("public decoder");
                assert_eq!(logged.len(), entries.len());
            }
        }
        _ => {
            if let Some(pointer) = strata_vlog::ValuePointer::decode(body) {
                assert_eq!(
                    strata_vlog::ValuePointer::decode(&pointer.encode()),
                    Some(pointer),
                    "pointer round trip"
                );
            }
        }
    }
}

/// Bytes of input per operation of [`engine_model`] at most (the rest is ignored),
/// and the most operations one input runs.
const MODEL_MAX_OPS: usize = 96;

/// The two keyspaces of [`engine_model`]: `Sync` and `Buffered`.
const MODEL_KEYSPACES: [(&str, crate::Durability); 2] = [
    ("state", crate::Durability::Sync),
    ("events", crate::Durability::Buffered),
];

type ModelState = [std::collections::BTreeMap<Vec<u8>, Vec<u8>>; 2];

fn model_key(b: u8) -> Vec<u8> {
    format!("k{:02}", b % 40).into_bytes()
}

/// A value of 0 to 255 bytes (values of 64 or more go to the value log), unique per
/// operation.
fn model_value(b: u8, op: usize) -> Vec<u8> {
    let mut v = format!("v{op}-").into_bytes();
    v.resize(usize::from(b).max(v.len()), b'a' + (op % 26) as u8);
    v
}

/// Keyspace options under which a workload of a few hundred small writes flushes,
/// compacts over several levels and separates values of `value_threshold` bytes and
/// more (for the model target and the fault-injection tests).
pub fn small_tree_options(
    durability: crate::Durability,
    value_threshold: u32,
) -> crate::KeyspaceOptions {
    crate::KeyspaceOptions {
        durability,
        memtable_bytes: 4096,
        level_size_ratio: 3,
        l0_compaction_trigger: 2,
        base_level_bytes: 8192,
        target_table_bytes: 4096,
        block_size: 512,
        value_threshold: Some(value_threshold),
        vlog_gc_garbage_ratio: 0.3,
        ..crate::KeyspaceOptions::default()
    }
}

struct ModelDb {
    fs: Arc<dyn Fs>,
    db: Option<crate::Db>,
    keyspaces: Vec<crate::Keyspace>,
}

impl ModelDb {
    fn open(&mut self) {
        let options = crate::Options {
            wal_segment_bytes: 8192,
            max_wal_bytes: 32768,
            manifest_rollover_bytes: 4096,
            ..crate::Options::default()
        };
        let db = crate::Db::open_with_fs("/model", options, Arc::clone(&self.fs))
            .expect("the database opens after any crash");
        self.keyspaces = MODEL_KEYSPACES
            .iter()
            .map(|(name, durability)| {
                let options = small_tree_options(*durability, 64);
                db.keyspace_or_create(name, options).expect("keyspace")
            })
            .collect();
        self.db = Some(db);
    }

    fn db(&self) -> &crate::Db {
        self.db.as_ref().expect("open")
    }

    fn dump(&self) -> ModelState {
        let scan = |ks: &crate::Keyspace| {
            ks.iter()
                .map(|kv| {
                    let (k, v) = kv.expect("scan");
                    (k.to_vec(), v.to_vec())
                })
                .collect()
        };
        [scan(&self.keyspaces[0]), scan(&self.keyspaces[1])]
    }
}

/// The engine against a model: `data` is a seed (8 bytes) and then one operation per
/// pair of bytes (kind, argument) on two keyspaces (`Sync` and `Buffered`, values of
/// 64 bytes and more separated) on [`FaultFs`]: puts, deletes, prefix deletes, batches
/// across both keyspaces, gets, scans both ways, flushes, compactions, value-log
/// collections, WAL syncs, clean reopens and power losses (dropped, torn and garbage
/// unsynced tails). Every read equals a `BTreeMap` model; after a power loss the
/// database equals the model after some prefix of the writes that holds every write
/// acknowledged as durable (a `Sync` write and everything before it, everything before
/// a flush, compaction, WAL sync or clean close). Panics on any difference.
pub fn engine_model(data: &[u8]) {
    let Some((seed, ops)) = data.split_first_chunk::<8>() else {
        return;
    };
    let fault = FaultFs::new(u64::from_le_bytes(*seed));
    let mut m = ModelDb {
        fs: Arc::new(fault.clone()),
        db: None,
        keyspaces: Vec::new(),
    };
    m.open();
    // states[i]: the model after the first i writes since the last power loss.
    let mut states: Vec<ModelState> = vec![Default::default()];
    let mut durable = 0usize;
    for (n, pair) in ops.chunks_exact(2).take(MODEL_MAX_OPS).enumerate() {
        let (kind, arg) = (pair[0], pair[1]);
        let current = states.len() - 1;
        let s = usize::from(kind >> 7);
        let ks = &m.keyspaces[s];
        let mut next = states[current].clone();
        match kind % 14 {
            0..=2 => {
                let (k, v) = (model_key(arg), model_value(arg.rotate_left(3), n));
                ks.put(&k, &v).expect("put");
                next[s].insert(k, v);
            }
            3 => {
                let k = model_key(arg);
                ks.delete(&k).expect("delete");
                next[s].remove(&k);
            }
            4 => {
                let p = format!("k{}", arg % 4).into_bytes();
                ks.delete_prefix(&p).expect("delete_prefix");
                next[s].retain(|k, _| !k.starts_with(&p));
            }
            5 => {
                // A batch across both keyspaces: atomic, and `Sync` (it touches the
                // `Sync` keyspace).
                let mut batch = crate::WriteBatch::new();
                for (i, target) in [(0usize, arg), (1, arg.wrapping_add(7))] {
                    let (k, v) = (model_key(target), model_value(target, n));
                    batch.put(&m.keyspaces[i], &k, &v);
                    next[i].insert(k, v);
                }
                m.db().write(batch).expect("batch");
            }
            6 | 7 => {
                let k = model_key(arg);
                let got = ks.get(&k).expect("get").map(|v| v.to_vec());
                assert_eq!(got, states[current][s].get(&k).cloned(), "get {k:?}");
                continue;
            }
            8 => {
                let want: Vec<(Vec<u8>, Vec<u8>)> =
                    states[current][s].clone().into_iter().collect();
                let pairs = |kv: Result<(Bytes, Bytes)>| {
                    let (k, v) = kv.expect("scan");
                    (k.to_vec(), v.to_vec())
                };
                if arg & 1 == 0 {
                    let got: Vec<_> = ks.iter().map(pairs).collect();
                    assert_eq!(got, want, "forward scan");
                } else {
                    let mut got: Vec<_> = ks.iter().rev().map(pairs).collect();
                    got.reverse();
                    assert_eq!(got, want, "reverse scan");
                }
                continue;
            }
            9 => {
                ks.flush().expect("flush");
                durable = current;
                continue;
            }
            10 => {
                ks.compact().expect("compact");
                durable = current;
                continue;
            }
            11 => {
                m.db().gc_value_log(ks).expect("gc_value_log");
                continue;
            }
            12 => {
                if arg & 1 == 0 {
                    m.db().sync_wal().expect("sync_wal");
                } else {
                    m.keyspaces.clear();
                    m.db.take().expect("open").close().expect("close");
                    m.open();
                    assert_eq!(m.dump(), states[current], "after a clean reopen");
                }
                durable = current;
                continue;
            }
            _ => {
                let mode = [
                    strata_wal::CrashMode::DropUnsynced,
                    strata_wal::CrashMode::TornTail,
                    strata_wal::CrashMode::GarbageTail,
                ][usize::from(arg % 3)];
                fault.power_off(mode);
                m.keyspaces.clear();
                drop(m.db.take());
                fault.restart();
                m.open();
                let got = m.dump();
                let Some(k) = (durable..states.len()).rev().find(|&k| states[k] == got) else {
                    panic!(
                        "after a power loss the database is no prefix of the writes holding the {durable} durable ones of {}: {got:?}",
                        states.len() - 1
                    );
                };
                states.truncate(k + 1);
                durable = k;
                continue;
            }
        }
        // A write: `Sync` when it touched the `Sync` keyspace.
        states.push(next);
        if kind % 14 == 5 || s == 0 {
            durable = states.len() - 1;
        }
    }
    m.keyspaces.clear();
    if let Some(db) = m.db.take() {
        db.close().expect("close");
    }
}
