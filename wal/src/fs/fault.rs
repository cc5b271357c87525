//! [`FaultFs`]: an in-memory [`Fs`] for tests that simulates power loss and injects I/O
//! errors. It is seeded and fully deterministic: the same seed and the same sequence of
//! calls give the same files after every crash.
//!
//! The model, and the simplifications it makes on purpose:
//!
//! - Every file is an inode holding what the running process sees (`data`) and what
//!   survives a crash (`durable`). Files are only appended to or truncated, never
//!   overwritten in place, so the unsynced part is exactly the suffix from the lowest
//!   offset changed since the last `sync_data`; a sync copies only that suffix.
//! - Directory entries live in two maps: the current view and the durable one. `create`,
//!   `rename`, `hard_link` and `remove` change only the current view; `sync_dir(dir)`
//!   makes exactly the entries directly inside `dir` durable, nothing in other
//!   directories. `create` on an existing name truncates that inode in place, as
//!   `O_TRUNC` does; the truncation is durable only after `sync_data`.
//! - Directories themselves are always durable once `create_dir_all` made them: only the
//!   files inside them need a directory sync. Directories are never removed.
//! - A crash ([`FaultFs::crash`], or a [`FaultKind::Crash`] rule firing) replaces the
//!   current view by the durable one and every file by its durable bytes, plus a
//!   [`CrashMode`]-dependent part of the unsynced appended tail. Locks are released and
//!   every handle and lock guard from before the crash is dead.
//! - Injected faults ([`FaultRule`]) fail the n-th call of a kind of operation. A failed
//!   call applies nothing: a failed append writes no prefix, a failed sync makes nothing
//!   durable.
//! - One global mutex guards the namespace, counters and fault rules; each inode has its
//!   own mutex, always taken after the global one and never the other way round, so
//!   threads appending to different files cannot deadlock. Speed is not a goal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::{FileLock, FileMap, Fs, FsFile};
use crate::error::{Error, Result};

/// What happens to bytes that were appended but not synced when a crash hits.
///
/// Directory entries that were not made durable with `sync_dir` are lost in every mode,
/// and so is any unsynced truncation: only a pure unsynced append (a file that has not
/// been truncated below its durable length since its last sync) can leave a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrashMode {
    /// Every unsynced byte vanishes (the default).
    #[default]
    DropUnsynced,
    /// Each file keeps a random-length prefix (from none to all) of its unsynced
    /// appended bytes, chosen by the seeded generator.
    TornTail,
    /// Like [`CrashMode::TornTail`], but from a random point inside the kept unsynced
    /// region onward the bytes are replaced with random garbage. The synced prefix is
    /// never altered.
    GarbageTail,
}

/// A kind of file-system call that a [`FaultRule`] matches and [`FaultFs::op_count`]
/// counts.
///
/// The mapping from calls: `read_exact_at`, `read_all` and `map` are [`FaultOp::Read`];
/// `append` and `truncate` are [`FaultOp::Write`]; `sync_data` and `sync_dir` are
/// [`FaultOp::Sync`]; `rename` and `hard_link` are [`FaultOp::Rename`]; `remove` is
/// [`FaultOp::Remove`]; `create` is [`FaultOp::Create`]. Other calls (`open`, `len`,
/// `list`, `exists`, `create_dir_all`, `lock`) are neither counted nor failed by rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// Reads: `read_exact_at`, `read_all`, `map`.
    Read,
    /// Writes: `append`, `truncate`.
    Write,
    /// Syncs: `sync_data`, `sync_dir`.
    Sync,
    /// Renames and hard links.
    Rename,
    /// File removals.
    Remove,
    /// File creations.
    Create,
    /// Every counted call, whatever its kind.
    Any,
}

impl FaultOp {
    /// Number of concrete (non-`Any`) kinds.
    const KINDS: usize = 6;

    /// Index of a concrete kind in the counter array; `None` for `Any`.
    fn slot(self) -> Option<usize> {
        match self {
            FaultOp::Read => Some(0),
            FaultOp::Write => Some(1),
            FaultOp::Sync => Some(2),
            FaultOp::Rename => Some(3),
            FaultOp::Remove => Some(4),
            FaultOp::Create => Some(5),
            FaultOp::Any => None,
        }
    }
}

/// What an injected fault does to the call it fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call fails with an I/O error whose message is
    /// `"injected EIO (input/output error)"`.
    Eio,
    /// The call fails with an I/O error of kind [`io::ErrorKind::StorageFull`]. An
    /// append it fails writes the first half of its bytes before failing, as a disk
    /// that fills up in the middle of a write does (a short write); other calls apply
    /// nothing.
    Enospc,
    /// Power is lost at this call: the call fails without applying, the file system
    /// crashes (per the configured [`CrashMode`]) and every later call fails with
    /// "simulated power loss" until [`FaultFs::restart`].
    Crash,
}

/// A fault to inject: fail the `nth` matching call after the rule is added.
///
/// `nth = 1` means the very next matching call (`0` is treated as `1`). A rule that is not
/// `persistent` fires once and is then removed; a persistent one also fires on every
/// later matching call. When several rules fire on the same call, a
/// [`FaultKind::Crash`] wins, otherwise the rule added first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRule {
    /// Which calls the rule counts and fails.
    pub op: FaultOp,
    /// Which matching call (1-based, counted from when the rule was added) fails first.
    pub nth: u64,
    /// What the failure is.
    pub kind: FaultKind,
    /// Whether the rule keeps firing on every matching call after the `nth`.
    pub persistent: bool,
}

impl FaultRule {
    /// A rule that fails only the `nth` matching call.
    pub fn once(op: FaultOp, nth: u64, kind: FaultKind) -> Self {
        FaultRule {
            op,
            nth,
            kind,
            persistent: false,
        }
    }

    /// A rule that fails the `nth` matching call and every one after it.
    pub fn from_nth_on(op: FaultOp, nth: u64, kind: FaultKind) -> Self {
        FaultRule {
            op,
            nth,
            kind,
            persistent: true,
        }
    }
}

/// An in-memory, fault-injecting, crash-simulating file system for tests.
///
/// Cloning is cheap and every clone shares the same files, so a test keeps one handle
/// while the code under test holds another (for example as an `Arc<dyn Fs>`). See the
/// module documentation for the crash model.
#[derive(Clone)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

type InodeRef = Arc<Mutex<Inode>>;

/// One file's contents.
#[derive(Debug, Default)]
struct Inode {
    /// What the running process sees.
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Lowest offset changed since the last sync; `data[..dirty_from]` equals
    /// `durable[..dirty_from]` and `dirty_from <= data.len()`.
    dirty_from: usize,
}

impl Inode {
    fn with_contents(bytes: Vec<u8>) -> Self {
        Inode {
            dirty_from: bytes.len(),
            durable: bytes.clone(),
            data: bytes,
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    fn truncate(&mut self, len: usize) {
        self.data.truncate(len);
        self.dirty_from = self.dirty_from.min(len);
    }

    fn sync(&mut self) {
        let from = self.dirty_from.min(self.data.len());
        self.durable.truncate(from);
        self.durable.extend_from_slice(&self.data[from..]);
        self.dirty_from = self.data.len();
    }

    /// The bytes this file holds after a crash in `mode`.
    fn survivor(&self, mode: CrashMode, rng: &mut SplitMix64) -> Vec<u8> {
        let mut out = self.durable.clone();
        if mode == CrashMode::DropUnsynced || self.dirty_from != self.durable.len() {
            return out;
        }
        let unsynced = self.data.get(self.dirty_from..).unwrap_or(&[]);
        if unsynced.is_empty() {
            return out;
        }
        let keep = rng.up_to(unsynced.len());
        out.extend_from_slice(&unsynced[..keep]);
        if mode == CrashMode::GarbageTail && keep > 0 {
            let from = self.durable.len() + rng.below(keep);
            for byte in &mut out[from..] {
                *byte = rng.next_u64() as u8;
            }
        }
        out
    }
}

/// SplitMix64: a tiny, good-enough deterministic generator.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n`; `n` must be positive.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n as u64).max(1)) as usize
    }

    /// Uniform-ish in `0..=n`.
    fn up_to(&mut self, n: usize) -> usize {
        match (n as u64).checked_add(1) {
            Some(m) => (self.next_u64() % m) as usize,
            None => self.next_u64() as usize,
        }
    }
}

/// A fault rule with the counter value at which it fires.
#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    fire_at: u64,
}

struct State {
    seed: u64,
    rng: SplitMix64,
    mode: CrashMode,
    /// The current view of the namespace.
    files: BTreeMap<PathBuf, InodeRef>,
    /// The entries that survive a crash.
    durable_files: BTreeMap<PathBuf, InodeRef>,
    /// Created directories (always durable).
    dirs: BTreeSet<PathBuf>,
    /// Paths locked through [`Fs::lock`].
    locks: BTreeSet<PathBuf>,
    /// Bumped by every crash; handles and guards from an older generation are dead.
    generation: u64,
    /// Set when a [`FaultKind::Crash`] fired, cleared by [`FaultFs::restart`].
    powered_off: bool,
    rules: Vec<ActiveRule>,
    /// Calls seen per concrete [`FaultOp`].
    counts: [u64; FaultOp::KINDS],
    /// Calls seen in total.
    total: u64,
}

fn power_loss(op: &'static str, path: &Path) -> Error {
    Error::io(
        op,
        path,
        io::Error::other("simulated power loss: the file system is down until FaultFs::restart"),
    )
}

fn stale_handle(op: &'static str, path: &Path) -> Error {
    Error::io(
        op,
        path,
        io::Error::other("file handle from before a simulated crash"),
    )
}

fn not_found(op: &'static str, path: &Path, what: &str) -> Error {
    Error::io(op, path, io::Error::new(io::ErrorKind::NotFound, what))
}

fn is_root(dir: &Path) -> bool {
    dir.as_os_str().is_empty() || dir.parent().is_none()
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or_else(|| Path::new(""))
}

impl State {
    fn new(seed: u64) -> Self {
        State {
            seed,
            rng: SplitMix64(seed),
            mode: CrashMode::default(),
            files: BTreeMap::new(),
            durable_files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            locks: BTreeSet::new(),
            generation: 0,
            powered_off: false,
            rules: Vec::new(),
            counts: [0; FaultOp::KINDS],
            total: 0,
        }
    }

    fn counter(&self, op: FaultOp) -> u64 {
        match op.slot() {
            Some(i) => self.counts[i],
            None => self.total,
        }
    }

    /// The gate every call passes: power, handle generation, counting and faults.
    fn enter(
        &mut self,
        op: Option<FaultOp>,
        name: &'static str,
        path: &Path,
        handle_generation: Option<u64>,
    ) -> Result<()> {
        if self.powered_off {
            return Err(power_loss(name, path));
        }
        if handle_generation.is_some_and(|g| g != self.generation) {
            return Err(stale_handle(name, path));
        }
        let Some(op) = op else { return Ok(()) };
        match self.count_and_check(op) {
            None => Ok(()),
            Some(FaultKind::Eio) => Err(Error::io(
                name,
                path,
                io::Error::other("injected EIO (input/output error)"),
            )),
            Some(FaultKind::Enospc) => Err(Error::io(
                name,
                path,
                io::Error::new(
                    io::ErrorKind::StorageFull,
                    "injected ENOSPC (no space left on device)",
                ),
            )),
            Some(FaultKind::Crash) => {
                self.crash(self.mode);
                self.powered_off = true;
                Err(power_loss(name, path))
            }
        }
    }

    /// Counts one call of `op` (a concrete kind) and returns the fault to inject, if any.
    fn count_and_check(&mut self, op: FaultOp) -> Option<FaultKind> {
        let slot = op.slot()?;
        self.counts[slot] += 1;
        self.total += 1;
        let (count, total) = (self.counts[slot], self.total);
        let mut fired: Option<FaultKind> = None;
        self.rules.retain(|active| {
            let rule = active.rule;
            let seen = if rule.op == FaultOp::Any {
                total
            } else if rule.op == op {
                count
            } else {
                return true;
            };
            let fires = seen == active.fire_at || (rule.persistent && seen > active.fire_at);
            if !fires {
                return true;
            }
            fired = match fired {
                Some(FaultKind::Crash) => Some(FaultKind::Crash),
                Some(first) if rule.kind != FaultKind::Crash => Some(first),
                _ => Some(rule.kind),
            };
            rule.persistent
        });
        fired
    }

    /// Power loss: the durable state becomes the only state.
    fn crash(&mut self, mode: CrashMode) {
        let mut rebuilt: HashMap<*const Mutex<Inode>, InodeRef> = HashMap::new();
        let mut survivors = BTreeMap::new();
        // Paths in sorted order and inodes deduplicated by identity (hard links), so the
        // generator is consulted in a deterministic order.
        for (path, inode) in &self.durable_files {
            let fresh = rebuilt
                .entry(Arc::as_ptr(inode))
                .or_insert_with(|| {
                    let bytes = inode.lock().survivor(mode, &mut self.rng);
                    Arc::new(Mutex::new(Inode::with_contents(bytes)))
                })
                .clone();
            survivors.insert(path.clone(), fresh);
        }
        self.files = survivors.clone();
        self.durable_files = survivors;
        self.locks.clear();
        self.generation += 1;
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        is_root(dir) || self.dirs.contains(dir)
    }

    /// Checks that `path` can name a file: it has a file name, its directory exists and
    /// it is not itself a directory.
    fn check_file_path(&self, op: &'static str, path: &Path) -> Result<()> {
        if path.file_name().is_none() {
            return Err(Error::io(
                op,
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
            ));
        }
        if !self.dir_exists(parent_of(path)) {
            return Err(not_found(op, path, "parent directory does not exist"));
        }
        if self.dirs.contains(path) {
            return Err(Error::io(
                op,
                path,
                io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
            ));
        }
        Ok(())
    }

    fn file(&self, op: &'static str, path: &Path) -> Result<&InodeRef> {
        self.files
            .get(path)
            .ok_or_else(|| not_found(op, path, "no such file"))
    }
}

impl FaultFs {
    /// An empty file system whose crash randomness is seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        FaultFs {
            state: Arc::new(Mutex::new(State::new(seed))),
        }
    }

    /// Sets the [`CrashMode`] used by [`FaultFs::crash`] and by [`FaultKind::Crash`]
    /// faults.
    pub fn set_crash_mode(&self, mode: CrashMode) {
        self.state.lock().mode = mode;
    }

    /// The configured [`CrashMode`].
    pub fn crash_mode(&self) -> CrashMode {
        self.state.lock().mode
    }

    /// Simulates power loss and restart, in the configured [`CrashMode`]: only durable
    /// directory entries remain, each file keeps its durable bytes (plus, in the torn
    /// modes, part of its unsynced tail), every lock is released, and every handle and
    /// lock guard from before is dead. The file system is usable again at once.
    pub fn crash(&self) {
        let mode = self.crash_mode();
        self.crash_with(mode);
    }

    /// Like [`FaultFs::crash`] but in `mode`, for this crash only.
    pub fn crash_with(&self, mode: CrashMode) {
        let mut state = self.state.lock();
        state.crash(mode);
        state.powered_off = false;
    }

    /// Simulates power loss in `mode` and stays down: every later operation fails until
    /// [`FaultFs::restart`]. Lets a test drop a database that was running when the power
    /// went without its shutdown writing anything to the post-crash disk.
    pub fn power_off(&self, mode: CrashMode) {
        let mut state = self.state.lock();
        state.crash(mode);
        state.powered_off = true;
    }

    /// Powers the file system back on after a [`FaultKind::Crash`] fault fired, with the
    /// state the crash left. Does nothing if it is not down.
    pub fn restart(&self) {
        self.state.lock().powered_off = false;
    }

    /// Whether a [`FaultKind::Crash`] fault fired and [`FaultFs::restart`] was not yet
    /// called.
    pub fn is_powered_off(&self) -> bool {
        self.state.lock().powered_off
    }

    /// Adds a fault rule; its count starts now. Several rules may be active at once.
    pub fn inject(&self, rule: FaultRule) {
        let mut state = self.state.lock();
        let fire_at = state.counter(rule.op).saturating_add(rule.nth.max(1));
        state.rules.push(ActiveRule { rule, fire_at });
    }

    /// Removes every fault rule (calls keep being counted).
    pub fn clear_faults(&self) {
        self.state.lock().rules.clear();
    }

    /// How many calls of kind `op` the file system has seen so far ([`FaultOp::Any`]:
    /// all counted calls). Calls rejected because the file system was down or the handle
    /// was stale are not counted; calls failed by an injected fault are.
    pub fn op_count(&self, op: FaultOp) -> u64 {
        self.state.lock().counter(op)
    }

    /// Flips bit `bit` (0 = least significant) of the byte at `offset` of `path`, both in
    /// what the process sees and, where the byte is durable, on "disk": damage to the
    /// medium, not a write.
    ///
    /// # Errors
    /// `NotFound` if `path` is not a file in the current view; [`Error::InvalidArgument`]
    /// if `offset` is at or past the end of the file or `bit > 7`.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> Result<()> {
        if bit > 7 {
            return Err(Error::InvalidArgument(format!(
                "bit {bit} does not exist in a byte (use 0..=7)"
            )));
        }
        self.damage(path, offset, 1, |data, at| data[at] ^= 1 << bit)
    }

    /// Overwrites `bytes` at `offset` of `path`, both in what the process sees and,
    /// where the bytes are durable, on "disk": damage to the medium, not a write.
    ///
    /// # Errors
    /// `NotFound` if `path` is not a file in the current view; [`Error::InvalidArgument`]
    /// if the range does not lie inside the file.
    pub fn write_bytes_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> Result<()> {
        self.damage(path, offset, bytes.len(), |data, at| {
            let end = (at + bytes.len()).min(data.len());
            let n = end.saturating_sub(at);
            data[at..end].copy_from_slice(&bytes[..n]);
        })
    }

    /// Applies `change` at `offset` (a range of `len` bytes that must lie inside the
    /// current data) to the current data and, if `offset` is inside it, to the durable
    /// data.
    fn damage(
        &self,
        path: &Path,
        offset: u64,
        len: usize,
        change: impl Fn(&mut Vec<u8>, usize),
    ) -> Result<()> {
        let state = self.state.lock();
        let mut inode = state.file("damage", path)?.lock();
        let at = usize::try_from(offset).ok();
        let in_range = at
            .and_then(|at| at.checked_add(len))
            .is_some_and(|end| end <= inode.data.len());
        let Some(at) = at.filter(|_| in_range) else {
            return Err(Error::InvalidArgument(format!(
                "range {offset}..{offset}+{len} is outside {} ({} bytes)",
                path.display(),
                inode.data.len()
            )));
        };
        change(&mut inode.data, at);
        if at < inode.durable.len() {
            change(&mut inode.durable, at);
        }
        Ok(())
    }

    /// The current length of `path` (including unsynced bytes).
    ///
    /// # Errors
    /// `NotFound` if `path` is not a file in the current view.
    pub fn file_len(&self, path: &Path) -> Result<u64> {
        let state = self.state.lock();
        let len = state.file("stat", path)?.lock().data.len();
        Ok(len as u64)
    }

    /// The contents of `path` as the running process sees them, or `None` if there is no
    /// such file in the current view.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let data = state.files.get(path)?.lock().data.clone();
        Some(data)
    }

    /// The contents `path` would have after a crash in [`CrashMode::DropUnsynced`], or
    /// `None` if its directory entry is not durable.
    pub fn durable_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let data = state.durable_files.get(path)?.lock().durable.clone();
        Some(data)
    }

    /// The sorted names of the files directly inside `dir` whose directory entries are
    /// durable (what [`Fs::list`] would return after a crash).
    pub fn durable_list(&self, dir: &Path) -> Vec<String> {
        let state = self.state.lock();
        names_in(&state.durable_files, dir)
    }
}

/// Sorted names of the entries of `map` directly inside `dir`.
fn names_in(map: &BTreeMap<PathBuf, InodeRef>, dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = map
        .keys()
        .filter(|p| p.parent() == Some(dir))
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect();
    names.sort();
    names
}

impl Default for FaultFs {
    /// A [`FaultFs`] seeded with 0.
    fn default() -> Self {
        FaultFs::new(0)
    }
}

impl fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("FaultFs");
        match self.state.try_lock() {
            Some(state) => out
                .field("seed", &state.seed)
                .field("mode", &state.mode)
                .field("files", &state.files.len())
                .field("generation", &state.generation)
                .field("powered_off", &state.powered_off)
                .field("rules", &state.rules.len())
                .finish(),
            None => out.finish_non_exhaustive(),
        }
    }
}

impl Fs for FaultFs {
    fn create(&self, path: &Path) -> Result<Arc<dyn FsFile>> {
        let mut state = self.state.lock();
        state.enter(Some(FaultOp::Create), "create", path, None)?;
        state.check_file_path("create", path)?;
        let inode = match state.files.get(path) {
            Some(existing) => {
                existing.lock().truncate(0);
                existing.clone()
            }
            None => {
                let fresh: InodeRef = Arc::default();
                state.files.insert(path.to_path_buf(), fresh.clone());
                fresh
            }
        };
        Ok(Arc::new(FaultFile {
            state: self.state.clone(),
            path: path.to_path_buf(),
            inode,
            generation: state.generation,
        }))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn FsFile>> {
        let mut state = self.state.lock();
        state.enter(None, "open", path, None)?;
        let inode = state.file("open", path)?.clone();
        Ok(Arc::new(FaultFile {
            state: self.state.clone(),
            path: path.to_path_buf(),
            inode,
            generation: state.generation,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut state = self.state.lock();
        state.enter(Some(FaultOp::Rename), "rename", from, None)?;
        let inode = state.file("rename", from)?.clone();
        state.check_file_path("rename", to)?;
        if from != to {
            state.files.remove(from);
            state.files.insert(to.to_path_buf(), inode);
        }
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> Result<()> {
        let mut state = self.state.lock();
        state.enter(Some(FaultOp::Rename), "hard_link", from, None)?;
        let inode = state.file("hard_link", from)?.clone();
        state.check_file_path("hard_link", to)?;
        if state.files.contains_key(to) {
            return Err(Error::io(
                "hard_link",
                to,
                io::Error::new(io::ErrorKind::AlreadyExists, "link target exists"),
            ));
        }
        state.files.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> Result<()> {
        let mut state = self.state.lock();
        state.enter(Some(FaultOp::Remove), "remove", path, None)?;
        match state.files.remove(path) {
            Some(_) => Ok(()),
            None => Err(not_found("remove", path, "no such file")),
        }
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut state = self.state.lock();
        state.enter(None, "list", dir, None)?;
        if !state.dir_exists(dir) {
            return Err(not_found("list", dir, "no such directory"));
        }
        Ok(names_in(&state.files, dir))
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        let mut state = self.state.lock();
        state.enter(None, "stat", path, None)?;
        Ok(state.files.contains_key(path) || state.dir_exists(path))
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let mut state = self.state.lock();
        state.enter(None, "create_dir", dir, None)?;
        let to_make: Vec<&Path> = dir.ancestors().filter(|a| !is_root(a)).collect();
        if let Some(file) = to_make.iter().find(|a| state.files.contains_key(**a)) {
            return Err(Error::io(
                "create_dir",
                dir,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a file", file.display()),
                ),
            ));
        }
        for a in to_make {
            state.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut state = self.state.lock();
        state.enter(Some(FaultOp::Sync), "sync_dir", dir, None)?;
        if !state.dir_exists(dir) {
            return Err(not_found("sync_dir", dir, "no such directory"));
        }
        let State {
            files,
            durable_files,
            ..
        } = &mut *state;
        durable_files.retain(|p, _| p.parent() != Some(dir));
        for (p, inode) in files.iter() {
            if p.parent() == Some(dir) {
                durable_files.insert(p.clone(), inode.clone());
            }
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> Result<Box<dyn FileLock>> {
        let mut state = self.state.lock();
        state.enter(None, "open lock file", path, None)?;
        state.check_file_path("open lock file", path)?;
        if state.locks.contains(path) {
            return Err(Error::Locked {
                path: path.to_path_buf(),
            });
        }
        if !state.files.contains_key(path) {
            state.files.insert(path.to_path_buf(), Arc::default());
        }
        state.locks.insert(path.to_path_buf());
        Ok(Box::new(FaultLock {
            state: self.state.clone(),
            path: path.to_path_buf(),
            generation: state.generation,
        }))
    }
}

/// A lock taken through [`FaultFs`]; dropping it releases the lock unless a crash
/// happened since (the crash already released it, and the path may be locked anew).
struct FaultLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    generation: u64,
}

impl fmt::Debug for FaultLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLock")
            .field("path", &self.path)
            .field("generation", &self.generation)
            .finish()
    }
}

impl FileLock for FaultLock {}

impl Drop for FaultLock {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        if state.generation == self.generation {
            state.locks.remove(&self.path);
        }
    }
}

/// An open [`FaultFs`] file. Appends always go to the current end of the inode.
struct FaultFile {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    inode: InodeRef,
    /// The crash generation this handle was opened in.
    generation: u64,
}

impl fmt::Debug for FaultFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFile")
            .field("path", &self.path)
            .field("generation", &self.generation)
            .finish()
    }
}

impl FaultFile {
    /// Passes the gate and returns the global guard, to be held while the inode is used.
    fn enter(&self, op: Option<FaultOp>, name: &'static str) -> Result<MutexGuard<'_, State>> {
        let mut state = self.state.lock();
        state.enter(op, name, &self.path, Some(self.generation))?;
        Ok(state)
    }
}

impl FsFile for FaultFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        let _state = self.enter(None, "stat")?;
        let len = self.inode.lock().data.len();
        Ok(len as u64)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let _state = self.enter(Some(FaultOp::Read), "read")?;
        let inode = self.inode.lock();
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .and_then(|r| inode.data.get(r));
        match range {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(Error::io(
                "read",
                &self.path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "read of {} bytes at offset {offset} past the end ({} bytes)",
                        buf.len(),
                        inode.data.len()
                    ),
                ),
            )),
        }
    }

    fn append(&self, data: &[u8]) -> Result<()> {
        match self.enter(Some(FaultOp::Write), "write") {
            Ok(_state) => {
                self.inode.lock().append(data);
                Ok(())
            }
            Err(e) if e.io_kind() == Some(io::ErrorKind::StorageFull) => {
                // The disk filled up in the middle of the write.
                self.inode.lock().append(&data[..data.len() / 2]);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn sync_data(&self) -> Result<()> {
        let _state = self.enter(Some(FaultOp::Sync), "fsync")?;
        self.inode.lock().sync();
        Ok(())
    }

    fn truncate(&self, len: u64) -> Result<()> {
        let _state = self.enter(Some(FaultOp::Write), "truncate")?;
        let mut inode = self.inode.lock();
        match usize::try_from(len) {
            Ok(len) if len <= inode.data.len() => {
                inode.truncate(len);
                Ok(())
            }
            _ => Err(Error::InvalidArgument(format!(
                "truncate of {} to {len} bytes would extend it (it has {})",
                self.path.display(),
                inode.data.len()
            ))),
        }
    }

    fn map(&self) -> Result<FileMap> {
        let _state = self.enter(Some(FaultOp::Read), "mmap")?;
        let bytes: Arc<[u8]> = Arc::from(self.inode.lock().data.as_slice());
        Ok(FileMap::Owned(bytes))
    }

    fn read_all(&self) -> Result<Vec<u8>> {
        let _state = self.enter(Some(FaultOp::Read), "read")?;
        let data = self.inode.lock().data.clone();
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/db";

    fn p(name: &str) -> PathBuf {
        Path::new(DIR).join(name)
    }

    fn fs_with_dir(seed: u64) -> FaultFs {
        let fs = FaultFs::new(seed);
        fs.create_dir_all(Path::new(DIR)).unwrap();
        fs
    }

    /// Creates `name` with `bytes`, synced, with a durable directory entry.
    fn durable_file(fs: &FaultFs, name: &str, bytes: &[u8]) -> Arc<dyn FsFile> {
        let f = fs.create(&p(name)).unwrap();
        f.append(bytes).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        f
    }

    fn message(err: &Error) -> String {
        err.to_string()
    }

    fn assert_power_loss<T: fmt::Debug>(result: Result<T>) {
        let err = result.expect_err("the file system should be down");
        assert!(message(&err).contains("simulated power loss"), "{err}");
    }

    fn assert_stale<T: fmt::Debug>(result: Result<T>) {
        let err = result.expect_err("the handle should be dead");
        assert!(
            message(&err).contains("file handle from before a simulated crash"),
            "{err}"
        );
    }

    #[test]
    fn unsynced_append_is_lost_on_crash() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"hello");
        f.append(b" world").unwrap();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"hello world");
        fs.crash();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"hello");
        assert_eq!(fs.file_len(&p("a")).unwrap(), 5);
    }

    #[test]
    fn synced_append_survives_crash() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"hello");
        f.append(b" world").unwrap();
        f.sync_data().unwrap();
        fs.crash();
        let reopened = fs.open(&p("a")).unwrap();
        assert_eq!(reopened.read_all().unwrap(), b"hello world");
    }

    #[test]
    fn created_file_without_sync_dir_is_lost_even_if_synced() {
        let fs = fs_with_dir(1);
        let f = fs.create(&p("new")).unwrap();
        f.append(b"data").unwrap();
        f.sync_data().unwrap();
        assert!(fs.exists(&p("new")).unwrap());
        assert_eq!(fs.durable_file(&p("new")), None);
        fs.crash();
        assert!(!fs.exists(&p("new")).unwrap());
        assert!(fs.list(Path::new(DIR)).unwrap().is_empty());
        let err = fs.open(&p("new")).unwrap_err();
        assert_eq!(err.io_kind(), Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn rename_is_not_durable_until_sync_dir() {
        let fs = fs_with_dir(1);
        durable_file(&fs, "a", b"contents");
        fs.rename(&p("a"), &p("b")).unwrap();
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["b"]);
        fs.crash();
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["a"]);

        fs.rename(&p("a"), &p("b")).unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        fs.crash();
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["b"]);
        assert_eq!(fs.read_file(&p("b")).unwrap(), b"contents");
    }

    #[test]
    fn rename_onto_existing_name_replaces_it() {
        let fs = fs_with_dir(1);
        durable_file(&fs, "old", b"old");
        durable_file(&fs, "tmp", b"new");
        fs.rename(&p("tmp"), &p("old")).unwrap();
        assert_eq!(fs.read_file(&p("old")).unwrap(), b"new");
        fs.crash();
        assert_eq!(fs.read_file(&p("old")).unwrap(), b"old");
        fs.rename(&p("tmp"), &p("old")).unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        fs.crash();
        assert_eq!(fs.read_file(&p("old")).unwrap(), b"new");
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["old"]);
    }

    #[test]
    fn remove_is_not_durable_until_sync_dir() {
        let fs = fs_with_dir(1);
        durable_file(&fs, "a", b"x");
        fs.remove(&p("a")).unwrap();
        assert!(!fs.exists(&p("a")).unwrap());
        fs.crash();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"x");

        fs.remove(&p("a")).unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        fs.crash();
        assert_eq!(fs.read_file(&p("a")), None);
    }

    #[test]
    fn sync_dir_persists_only_that_directory() {
        let fs = fs_with_dir(1);
        fs.create_dir_all(Path::new("/db/sub")).unwrap();
        fs.create(&p("top")).unwrap();
        fs.create(Path::new("/db/sub/inner")).unwrap();
        fs.sync_dir(Path::new("/db/sub")).unwrap();
        fs.crash();
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), Vec::<String>::new());
        assert_eq!(fs.list(Path::new("/db/sub")).unwrap(), vec!["inner"]);
        // Directories are always durable.
        assert!(fs.exists(Path::new("/db/sub")).unwrap());
    }

    #[test]
    fn truncate_then_crash_before_sync_restores_old_durable_content() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"abcdef");
        f.truncate(2).unwrap();
        f.append(b"XY").unwrap();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"abXY");
        // Even a torn-tail crash cannot keep part of a non-append change.
        fs.crash_with(CrashMode::TornTail);
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"abcdef");

        let f = fs.open(&p("a")).unwrap();
        f.truncate(2).unwrap();
        f.append(b"XY").unwrap();
        f.sync_data().unwrap();
        fs.crash();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"abXY");
    }

    #[test]
    fn create_on_existing_path_truncates_it() {
        let fs = fs_with_dir(1);
        durable_file(&fs, "a", b"old contents");
        let f = fs.create(&p("a")).unwrap();
        assert_eq!(f.len().unwrap(), 0);
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"");
        f.append(b"new").unwrap();
        f.sync_data().unwrap();
        // The name was already durable: syncing the data suffices.
        fs.crash();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"new");
    }

    const SYNCED: &[u8] = b"SYNCED";

    fn unsynced_tail() -> Vec<u8> {
        (0..100u8)
            .map(|i| i.wrapping_mul(7).wrapping_add(1))
            .collect()
    }

    /// Writes SYNCED durably plus 100 unsynced bytes, crashes in `mode`, returns the file.
    fn crash_with_tail(seed: u64, mode: CrashMode) -> Vec<u8> {
        let fs = fs_with_dir(seed);
        fs.set_crash_mode(mode);
        let f = durable_file(&fs, "log", SYNCED);
        f.append(&unsynced_tail()).unwrap();
        fs.crash();
        fs.read_file(&p("log")).unwrap()
    }

    #[test]
    fn torn_tail_keeps_a_prefix_of_the_unsynced_bytes_and_never_more() {
        let mut full = SYNCED.to_vec();
        full.extend_from_slice(&unsynced_tail());
        let mut lengths = BTreeSet::new();
        for seed in 0..64 {
            let got = crash_with_tail(seed, CrashMode::TornTail);
            assert!(got.len() >= SYNCED.len() && got.len() <= full.len());
            assert_eq!(got, full[..got.len()], "seed {seed}");
            lengths.insert(got.len());
        }
        assert!(lengths.len() > 10, "tails not random: {lengths:?}");
        assert!(lengths.iter().any(|&l| l > SYNCED.len() && l < full.len()));
    }

    #[test]
    fn drop_unsynced_keeps_nothing_unsynced() {
        for seed in 0..8 {
            assert_eq!(crash_with_tail(seed, CrashMode::DropUnsynced), SYNCED);
        }
    }

    #[test]
    fn garbage_tail_never_alters_the_synced_prefix() {
        let mut full = SYNCED.to_vec();
        full.extend_from_slice(&unsynced_tail());
        let mut saw_garbage = false;
        for seed in 0..64 {
            let got = crash_with_tail(seed, CrashMode::GarbageTail);
            assert!(got.len() >= SYNCED.len() && got.len() <= full.len());
            assert_eq!(&got[..SYNCED.len()], SYNCED, "seed {seed}");
            saw_garbage |= got != full[..got.len()];
        }
        assert!(saw_garbage, "GarbageTail never produced garbage");
    }

    /// A multi-file workload with two crashes; returns every file after each crash.
    fn workload_snapshot(seed: u64, mode: CrashMode) -> Vec<Option<Vec<u8>>> {
        let fs = fs_with_dir(seed);
        fs.set_crash_mode(mode);
        let names = ["a", "b", "c", "d"];
        let mut out = Vec::new();
        for round in 0..2u8 {
            for (i, name) in names.iter().enumerate() {
                let f = match fs.open(&p(name)) {
                    Ok(f) => f,
                    Err(_) => fs.create(&p(name)).unwrap(),
                };
                f.append(&[round; 10]).unwrap();
                f.sync_data().unwrap();
                f.append(&vec![i as u8 + 1; 50 + i * 10]).unwrap();
            }
            fs.sync_dir(Path::new(DIR)).unwrap();
            fs.crash();
            out.extend(names.iter().map(|n| fs.read_file(&p(n))));
        }
        out
    }

    #[test]
    fn same_seed_gives_the_same_crash_result() {
        for mode in [CrashMode::TornTail, CrashMode::GarbageTail] {
            let first = workload_snapshot(42, mode);
            assert_eq!(first, workload_snapshot(42, mode));
            let others: Vec<_> = (43..48).map(|s| workload_snapshot(s, mode)).collect();
            assert!(others.iter().any(|o| *o != first), "seed has no effect");
        }
    }

    #[test]
    fn nth_write_fails_once_then_succeeds() {
        let fs = fs_with_dir(1);
        let f = fs.create(&p("a")).unwrap();
        fs.inject(FaultRule::once(FaultOp::Write, 3, FaultKind::Eio));
        f.append(b"1").unwrap();
        f.append(b"2").unwrap();
        let err = f.append(b"3").unwrap_err();
        assert!(message(&err).contains("injected EIO (input/output error)"));
        assert!(matches!(err, Error::Io { op: "write", .. }));
        f.append(b"4").unwrap();
        f.append(b"5").unwrap();
        assert_eq!(f.read_all().unwrap(), b"1245");
    }

    #[test]
    fn persistent_fault_keeps_failing_until_cleared() {
        let fs = fs_with_dir(1);
        let f = fs.create(&p("a")).unwrap();
        fs.inject(FaultRule::from_nth_on(FaultOp::Sync, 2, FaultKind::Eio));
        f.sync_data().unwrap();
        for _ in 0..3 {
            assert!(f.sync_data().is_err());
        }
        assert!(fs.sync_dir(Path::new(DIR)).is_err());
        fs.clear_faults();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
    }

    #[test]
    fn enospc_maps_to_storage_full() {
        let fs = fs_with_dir(1);
        fs.inject(FaultRule::once(FaultOp::Create, 1, FaultKind::Enospc));
        let err = fs.create(&p("a")).unwrap_err();
        assert_eq!(err.io_kind(), Some(io::ErrorKind::StorageFull));
        assert!(!fs.exists(&p("a")).unwrap(), "a failed create applied");
        fs.create(&p("a")).unwrap();
    }

    #[test]
    fn failed_ops_apply_nothing() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"abc");
        fs.inject(FaultRule::from_nth_on(FaultOp::Any, 1, FaultKind::Eio));
        assert!(f.truncate(1).is_err());
        assert!(fs.rename(&p("a"), &p("b")).is_err());
        assert!(fs.hard_link(&p("a"), &p("b")).is_err());
        assert!(fs.remove(&p("a")).is_err());
        assert!(fs.create(&p("a")).is_err());
        assert!(f.read_all().is_err());
        assert!(f.map().is_err());
        let mut buf = [0u8; 1];
        assert!(f.read_exact_at(0, &mut buf).is_err());
        fs.clear_faults();
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["a"]);
        assert_eq!(f.read_all().unwrap(), b"abc");
    }

    #[test]
    fn failed_sync_leaves_data_unsynced() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"old");
        f.append(b"new").unwrap();
        fs.inject(FaultRule::once(FaultOp::Sync, 1, FaultKind::Eio));
        assert!(f.sync_data().is_err());
        assert_eq!(fs.durable_file(&p("a")).unwrap(), b"old");
        fs.crash();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"old");
    }

    #[test]
    fn crash_fault_stops_everything_until_restart() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"a");
        fs.inject(FaultRule::once(FaultOp::Sync, 2, FaultKind::Crash));
        f.append(b"b").unwrap();
        f.sync_data().unwrap();
        f.append(b"c").unwrap();
        let other = fs.create(&p("unsynced")).unwrap();
        assert_power_loss(f.sync_data());
        assert!(fs.is_powered_off());

        assert_power_loss(f.append(b"d"));
        assert_power_loss(other.len());
        assert_power_loss(fs.open(&p("a")));
        assert_power_loss(fs.create(&p("x")));
        assert_power_loss(fs.list(Path::new(DIR)));
        assert_power_loss(fs.exists(&p("a")));
        assert_power_loss(fs.lock(&p("LOCK")));
        assert_power_loss(fs.sync_dir(Path::new(DIR)));

        fs.restart();
        assert!(!fs.is_powered_off());
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["a"]);
        let reopened = fs.open(&p("a")).unwrap();
        assert_eq!(reopened.read_all().unwrap(), b"ab");
        assert_stale(f.append(b"e"));
        reopened.append(b"e").unwrap();
        assert_eq!(reopened.read_all().unwrap(), b"abe");
    }

    #[test]
    fn crash_at_every_sync_point_keeps_a_synced_prefix() {
        // The workload appends records, syncing after each; whatever sync the crash
        // hits, the file afterwards holds exactly the records synced before it.
        fn workload(fs: &FaultFs) -> Result<usize> {
            let f = fs.create(&p("log"))?;
            fs.sync_dir(Path::new(DIR))?;
            let mut synced = 0;
            for i in 0..5u8 {
                f.append(&[i; 4])?;
                f.sync_data()?;
                synced += 1;
            }
            Ok(synced)
        }
        let counting = fs_with_dir(3);
        assert_eq!(workload(&counting).unwrap(), 5);
        let sync_points = counting.op_count(FaultOp::Sync);
        assert_eq!(sync_points, 6);
        for n in 1..=sync_points {
            let fs = fs_with_dir(3);
            fs.inject(FaultRule::once(FaultOp::Sync, n, FaultKind::Crash));
            assert!(workload(&fs).is_err());
            fs.restart();
            let expected: Vec<u8> = (0..n.saturating_sub(2) as u8)
                .flat_map(|i| [i; 4])
                .collect();
            let got = fs.read_file(&p("log"));
            if n == 1 {
                assert_eq!(got, None, "crash at the directory sync");
            } else {
                assert_eq!(got, Some(expected), "crash at sync {n}");
            }
        }
    }

    #[test]
    fn old_handles_are_dead_after_crash() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"abc");
        fs.crash();
        assert_stale(f.len());
        assert_stale(f.append(b"x"));
        assert_stale(f.sync_data());
        assert_stale(f.truncate(0));
        assert_stale(f.map());
        assert_stale(f.read_all());
        let mut buf = [0u8; 1];
        assert_stale(f.read_exact_at(0, &mut buf));
        assert_eq!(f.path(), p("a"));
        let fresh = fs.open(&p("a")).unwrap();
        assert_eq!(fresh.read_all().unwrap(), b"abc");
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let fs = fs_with_dir(1);
        let guard = fs.lock(&p("LOCK")).unwrap();
        assert!(fs.exists(&p("LOCK")).unwrap());
        assert!(matches!(fs.lock(&p("LOCK")), Err(Error::Locked { .. })));
        let other = fs.lock(&p("OTHER")).unwrap();
        drop(guard);
        let again = fs.lock(&p("LOCK")).unwrap();
        assert!(matches!(fs.lock(&p("OTHER")), Err(Error::Locked { .. })));
        drop(again);
        drop(other);
        fs.lock(&p("OTHER")).unwrap();
    }

    #[test]
    fn stale_lock_guard_does_not_release_a_new_lock() {
        let fs = fs_with_dir(1);
        fs.create(&p("LOCK")).unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        let old = fs.lock(&p("LOCK")).unwrap();
        fs.crash();
        let new = fs.lock(&p("LOCK")).expect("a crash releases every lock");
        drop(old);
        assert!(matches!(fs.lock(&p("LOCK")), Err(Error::Locked { .. })));
        drop(new);
        fs.lock(&p("LOCK")).unwrap();
    }

    #[test]
    fn op_count_counts_each_kind() {
        let fs = fs_with_dir(1);
        let f = fs.create(&p("a")).unwrap();
        f.append(b"abc").unwrap();
        f.truncate(1).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        let mut buf = [0u8; 1];
        f.read_exact_at(0, &mut buf).unwrap();
        f.read_all().unwrap();
        f.map().unwrap();
        fs.hard_link(&p("a"), &p("b")).unwrap();
        fs.rename(&p("b"), &p("c")).unwrap();
        fs.remove(&p("c")).unwrap();
        assert!(fs.remove(&p("missing")).is_err());
        // Uncounted calls.
        f.len().unwrap();
        fs.open(&p("a")).unwrap();
        fs.list(Path::new(DIR)).unwrap();
        fs.exists(&p("a")).unwrap();

        assert_eq!(fs.op_count(FaultOp::Create), 1);
        assert_eq!(fs.op_count(FaultOp::Write), 2);
        assert_eq!(fs.op_count(FaultOp::Sync), 2);
        assert_eq!(fs.op_count(FaultOp::Read), 3);
        assert_eq!(fs.op_count(FaultOp::Rename), 2);
        assert_eq!(fs.op_count(FaultOp::Remove), 2);
        assert_eq!(fs.op_count(FaultOp::Any), 12);
    }

    #[test]
    fn any_rule_counts_every_kind() {
        let fs = fs_with_dir(1);
        fs.inject(FaultRule::once(FaultOp::Any, 3, FaultKind::Eio));
        let f = fs.create(&p("a")).unwrap();
        f.append(b"x").unwrap();
        assert!(f.sync_data().is_err());
        f.sync_data().unwrap();
    }

    #[test]
    fn misuse_is_reported_not_panicked() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"abc");
        let mut buf = [0u8; 2];
        let err = f.read_exact_at(2, &mut buf).unwrap_err();
        assert_eq!(err.io_kind(), Some(io::ErrorKind::UnexpectedEof));
        let err = f.read_exact_at(u64::MAX, &mut buf).unwrap_err();
        assert_eq!(err.io_kind(), Some(io::ErrorKind::UnexpectedEof));
        assert!(matches!(f.truncate(4), Err(Error::InvalidArgument(_))));
        let missing_dir = Path::new("/nope");
        for err in [
            fs.create(&missing_dir.join("x")).map(|_| ()).unwrap_err(),
            fs.list(missing_dir).map(|_| ()).unwrap_err(),
            fs.open(&p("missing")).map(|_| ()).unwrap_err(),
            fs.remove(&p("missing")).unwrap_err(),
            fs.rename(&p("missing"), &p("b")).unwrap_err(),
            fs.sync_dir(missing_dir).unwrap_err(),
            fs.flip_bit(&p("missing"), 0, 0).unwrap_err(),
            fs.file_len(&p("missing")).map(|_| ()).unwrap_err(),
        ] {
            assert_eq!(err.io_kind(), Some(io::ErrorKind::NotFound), "{err}");
        }
        assert!(matches!(
            fs.open(&p("missing")),
            Err(Error::Io { op: "open", .. })
        ));
        assert!(matches!(
            fs.flip_bit(&p("a"), 3, 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            fs.flip_bit(&p("a"), 0, 8),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            fs.write_bytes_at(&p("a"), 2, b"xy"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(fs.hard_link(&p("a"), &p("a")).is_err());
        assert!(fs.create_dir_all(&p("a")).is_err());
        assert!(fs.create(Path::new(DIR)).is_err());
    }

    #[test]
    fn list_is_sorted_and_only_direct_files() {
        let fs = fs_with_dir(1);
        fs.create_dir_all(Path::new("/db/sub")).unwrap();
        for name in ["c", "a", "b"] {
            fs.create(&p(name)).unwrap();
        }
        fs.create(Path::new("/db/sub/z")).unwrap();
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["a", "b", "c"]);
        assert_eq!(fs.list(Path::new("/db/")).unwrap(), vec!["a", "b", "c"]);
        fs.sync_dir(Path::new(DIR)).unwrap();
        assert_eq!(fs.durable_list(Path::new(DIR)), vec!["a", "b", "c"]);
        assert!(fs.durable_list(Path::new("/db/sub")).is_empty());
    }

    #[test]
    fn hard_link_shares_the_inode_and_survives_crash() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"abc");
        fs.hard_link(&p("a"), &p("b")).unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        fs.remove(&p("a")).unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        f.append(b"d").unwrap();
        assert_eq!(fs.read_file(&p("b")).unwrap(), b"abcd");
        fs.crash();
        assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["b"]);
        assert_eq!(fs.read_file(&p("b")).unwrap(), b"abc");
    }

    #[test]
    fn hard_links_stay_one_file_after_crash() {
        let fs = fs_with_dir(1);
        durable_file(&fs, "a", b"abc");
        fs.hard_link(&p("a"), &p("b")).unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        fs.crash();
        fs.open(&p("a")).unwrap().append(b"!").unwrap();
        assert_eq!(fs.read_file(&p("b")).unwrap(), b"abc!");
    }

    #[test]
    fn damage_hits_both_the_view_and_the_disk() {
        let fs = fs_with_dir(1);
        let f = durable_file(&fs, "a", b"abcd");
        f.append(b"ef").unwrap();
        fs.flip_bit(&p("a"), 0, 0).unwrap();
        fs.write_bytes_at(&p("a"), 3, b"XYZ").unwrap();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"`bcXYZ");
        assert_eq!(fs.durable_file(&p("a")).unwrap(), b"`bcX");
        assert_eq!(f.map().unwrap().as_ref(), b"`bcXYZ");
        fs.crash();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"`bcX");
        assert_eq!(fs.file_len(&p("a")).unwrap(), 4);
    }

    #[test]
    fn clones_share_state_and_work_as_dyn_fs() {
        let fs = fs_with_dir(1);
        let dynfs: Arc<dyn Fs> = Arc::new(fs.clone());
        let f = dynfs.create(&p("a")).unwrap();
        f.append(b"x").unwrap();
        assert_eq!(fs.read_file(&p("a")).unwrap(), b"x");
        assert!(format!("{:?}", FaultFs::default()).contains("FaultFs"));
    }

    #[test]
    fn concurrent_appends_to_different_files_do_not_deadlock() {
        let fs = fs_with_dir(1);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let fs = fs.clone();
                std::thread::spawn(move || {
                    let f = fs.create(&p(&format!("f{t}"))).unwrap();
                    for i in 0..500u32 {
                        f.append(&i.to_le_bytes()).unwrap();
                        if i % 50 == 0 {
                            f.sync_data().unwrap();
                            fs.sync_dir(Path::new(DIR)).unwrap();
                        }
                        let _ = f.len().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for t in 0..4 {
            assert_eq!(fs.file_len(&p(&format!("f{t}"))).unwrap(), 2000);
        }
    }
}
