//! The engines `--engine` can name, and [`open_engine`], the one place that maps a
//! name to an implementation of [`BenchEngine`].
//!
//! - `memory`: [`memory::MemoryEngine`], a test engine for the harness itself.
//! - `strata`: the Strata adapter (`strata.rs`), the default.
//! - `rocksdb`, `fjall`, `sled`, `sqlite`: the peers, built only with the cargo feature
//!   `peers` (`rocksdb_engine.rs` and its siblings; `peer_meter.rs` measures them alike).

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::engine::{
    BenchEngine, CompactionStyle, Compression, Durability, EngineConfig, EngineError,
};
use crate::error::Error;

pub mod memory;
pub mod strata;

#[cfg(feature = "peers")]
pub mod fjall_engine;
#[cfg(feature = "peers")]
pub mod peer_meter;
#[cfg(feature = "peers")]
pub mod rocksdb_engine;
#[cfg(feature = "peers")]
pub mod sled_engine;
#[cfg(feature = "peers")]
pub mod sqlite_engine;

/// Lends a found value to a `get` visitor: calls `visit` and returns `true` when
/// `value` is `Some`.
pub fn visit_found<V: AsRef<[u8]>>(value: Option<V>, visit: &mut dyn FnMut(&[u8])) -> bool {
    match value {
        Some(v) => {
            visit(v.as_ref());
            true
        }
        None => false,
    }
}

/// Visits up to `limit` pairs of `entries` (an engine's own iterator, already
/// positioned and oriented), stopping at the first error; returns how many it visited.
///
/// # Errors
/// The first error of `entries`.
pub fn visit_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    entries: impl Iterator<Item = Result<(K, V), EngineError>>,
    limit: usize,
    visit: &mut dyn FnMut(&[u8], &[u8]),
) -> Result<usize, EngineError> {
    let mut n = 0;
    for entry in entries.take(limit) {
        let (k, v) = entry?;
        visit(k.as_ref(), v.as_ref());
        n += 1;
    }
    Ok(n)
}

/// [`BenchEngine::scan`] for an engine whose ordered map hands out double-ended
/// iterators over key ranges (fjall, sled): `range` gets the bounds (from `from`
/// onward, or up to and including it) and this walks them in `direction`.
///
/// # Errors
/// The first error of the engine's iterator.
pub fn scan_range<'k, I, K, V>(
    direction: crate::engine::Direction,
    from: Option<&'k [u8]>,
    limit: usize,
    visit: &mut dyn FnMut(&[u8], &[u8]),
    range: impl FnOnce((Bound<&'k [u8]>, Bound<&'k [u8]>)) -> I,
) -> Result<usize, EngineError>
where
    I: DoubleEndedIterator<Item = Result<(K, V), EngineError>>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    if limit == 0 {
        return Ok(0);
    }
    let from = from.map_or(Bound::Unbounded, Bound::Included);
    match direction {
        crate::engine::Direction::Forward => {
            visit_pairs(range((from, Bound::Unbounded)), limit, visit)
        }
        crate::engine::Direction::Reverse => {
            visit_pairs(range((Bound::Unbounded, from)).rev(), limit, visit)
        }
    }
}

/// Opens an engine on a configuration.
pub type OpenFn = fn(&EngineConfig) -> Result<Arc<dyn BenchEngine>, EngineError>;

/// Which engine options an engine build honours.
#[derive(Clone, Copy, Debug)]
pub struct Supported {
    /// `--compression=zstd`.
    pub compression: bool,
    /// The `--compaction_style` values the engine maps to a policy of its own; any
    /// other value (but the default, `hca`, which means "the engine's default") runs
    /// the engine's default policy, with a warning.
    pub compaction_styles: &'static [CompactionStyle],
    /// `--value_threshold`.
    pub value_threshold: bool,
    /// `--disable_wal=1`: writes without a log record. Engines without such a path run
    /// those writes with their ordinary (buffered) durability, with a warning.
    pub bypass: bool,
}

impl Supported {
    /// Nothing beyond the engine's defaults.
    pub const NONE: Supported = Supported {
        compression: false,
        compaction_styles: &[],
        value_threshold: false,
        bypass: false,
    };
}

/// The warnings to print (one per line) for options set to a non-default value that
/// `engine` does not honour: an option is never ignored silently.
pub fn unsupported_warnings(
    engine: &str,
    config: &EngineConfig,
    supported: Supported,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut warn = |flag: String| {
        warnings.push(format!(
            "WARNING: {flag} is not supported by the {engine} engine; it runs with the engine's default instead"
        ));
    };
    if !supported.compression && config.compression != Compression::None {
        warn(format!("--compression={}", config.compression.name()));
    }
    if config.compaction_style != CompactionStyle::default()
        && !supported
            .compaction_styles
            .contains(&config.compaction_style)
    {
        warn(format!(
            "--compaction_style={}",
            config.compaction_style.name()
        ));
    }
    if let (false, Some(t)) = (supported.value_threshold, config.value_threshold) {
        warn(format!("--value_threshold={t}"));
    }
    if !supported.bypass && config.durability == Durability::Bypass {
        warn("--disable_wal=1".to_string());
    }
    warnings
}

/// Prints [`unsupported_warnings`] on stderr, once per process (`recover` reopens the
/// engine with the same options).
pub fn warn_unsupported(engine: &str, config: &EngineConfig, supported: Supported) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    for warning in unsupported_warnings(engine, config, supported) {
        eprintln!("{warning}");
    }
}

fn open_memory(config: &EngineConfig) -> Result<Arc<dyn BenchEngine>, EngineError> {
    let supported = Supported {
        bypass: true,
        ..Supported::NONE
    };
    warn_unsupported("memory", config, supported);
    Ok(Arc::new(memory::MemoryEngine::open(config)?))
}

/// The engines built into this binary, by `--engine` name.
const ENGINES: &[(&str, OpenFn)] = &[
    ("strata", strata::open),
    ("memory", open_memory),
    #[cfg(feature = "peers")]
    ("rocksdb", rocksdb_engine::open),
    #[cfg(feature = "peers")]
    ("fjall", fjall_engine::open),
    #[cfg(feature = "peers")]
    ("sled", sled_engine::open),
    #[cfg(feature = "peers")]
    ("sqlite", sqlite_engine::open),
];

/// Peer engines, which run through the same harness when built with the cargo
/// feature `peers`.
pub const PEERS: [&str; 4] = ["rocksdb", "fjall", "sled", "sqlite"];

/// Names of the engines built into this binary.
pub fn available() -> Vec<&'static str> {
    ENGINES.iter().map(|(name, _)| *name).collect()
}

fn lookup(name: &str) -> Result<OpenFn, Error> {
    if let Some((_, open)) = ENGINES.iter().find(|(n, _)| *n == name) {
        return Ok(*open);
    }
    let built = available().join(", ");
    Err(Error::Usage(if name == "strata" {
        format!(
            "--engine=strata: the Strata adapter is not wired into this build yet; \
             engines available: {built}"
        )
    } else if PEERS.contains(&name) {
        format!(
            "--engine={name}: peer engines need the cargo feature `peers` \
             (cargo run --release -p strata-bench --features peers --bin db_bench -- ...); \
             engines available in this build: {built}"
        )
    } else {
        format!(
            "--engine={name}: unknown engine; engines available: {built} \
             (peers rocksdb, fjall, sled, sqlite need the cargo feature `peers`)"
        )
    }))
}

/// Checks that `name` is an engine of this build, without opening anything.
///
/// # Errors
/// [`Error::Usage`] saying why the engine cannot be used.
pub fn check_engine(name: &str) -> Result<(), Error> {
    lookup(name).map(|_| ())
}

/// Opens engine `name` on `config`.
///
/// # Errors
/// [`Error::Usage`] for an engine this build does not have, [`Error::Engine`] when the
/// engine fails to open.
pub fn open_engine(name: &str, config: &EngineConfig) -> Result<Arc<dyn BenchEngine>, Error> {
    let open = lookup(name)?;
    open(config).map_err(|e| Error::engine(format!("open {name} at {}", config.path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_are_checked() {
        assert!(check_engine("memory").is_ok());
        for peer in PEERS {
            let checked = check_engine(peer);
            if cfg!(feature = "peers") {
                assert!(checked.is_ok(), "{peer}");
            } else {
                let e = checked.unwrap_err().to_string();
                assert!(e.contains("cargo feature `peers`"), "{e}");
            }
        }
        let e = check_engine("leveldb").unwrap_err().to_string();
        assert!(e.contains("unknown engine"), "{e}");
    }

    #[test]
    fn non_default_unsupported_options_are_reported() {
        let mut config = EngineConfig {
            path: "/nonexistent".into(),
            durability: crate::engine::Durability::Buffered,
            compression: Compression::None,
            compaction_style: CompactionStyle::Hca,
            value_threshold: None,
            cache_bytes: 0,
            use_existing_db: false,
        };
        let none = Supported::NONE;
        assert!(unsupported_warnings("x", &config, none).is_empty());
        config.compression = Compression::Zstd;
        config.compaction_style = CompactionStyle::Tiered;
        config.value_threshold = Some(512);
        config.durability = crate::engine::Durability::Bypass;
        let w = unsupported_warnings("x", &config, none);
        assert_eq!(w.len(), 4);
        assert!(w[0].contains("--compression=zstd") && w[0].contains("not supported"));
        assert!(w[1].contains("--compaction_style=tiered"));
        assert!(w[2].contains("--value_threshold=512"));
        assert!(w[3].contains("--disable_wal=1"));
        let leveled_only = Supported {
            compaction_styles: &[CompactionStyle::Leveled],
            ..Supported::NONE
        };
        let w = unsupported_warnings("x", &config, leveled_only);
        assert!(w.iter().any(|w| w.contains("--compaction_style=tiered")));
        config.compaction_style = CompactionStyle::Leveled;
        let w = unsupported_warnings("x", &config, leveled_only);
        assert!(!w.iter().any(|w| w.contains("--compaction_style")));
        let all = Supported {
            compression: true,
            compaction_styles: &[
                CompactionStyle::Leveled,
                CompactionStyle::Tiered,
                CompactionStyle::Hca,
            ],
            value_threshold: true,
            bypass: true,
        };
        assert!(unsupported_warnings("x", &config, all).is_empty());
    }
}
