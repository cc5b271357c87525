//! The engines `--engine` can name, and [`open_engine`], the one place that maps a
//! name to an implementation of [`BenchEngine`].
//!
//! - `memory`: [`memory::MemoryEngine`], a test engine for the harness itself.
//! - `strata`: the Strata adapter (`strata.rs`), the default.
//! - `rocksdb`, `fjall`, `sled`, `sqlite`: the peers, which will be built only with the
//!   cargo feature `peers`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::engine::{BenchEngine, CompactionStyle, Compression, EngineConfig, EngineError};
use crate::error::Error;

pub mod memory;
pub mod strata;

/// Opens an engine on a configuration.
pub type OpenFn = fn(&EngineConfig) -> Result<Arc<dyn BenchEngine>, EngineError>;

/// Which engine options an engine build honours.
#[derive(Clone, Copy, Debug)]
pub struct Supported {
    /// `--compression`.
    pub compression: bool,
    /// `--compaction_style`.
    pub compaction_style: bool,
    /// `--value_threshold`.
    pub value_threshold: bool,
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
            "WARNING: {flag} is not supported yet by this {engine} engine build; it has no effect"
        ));
    };
    if !supported.compression && config.compression != Compression::None {
        warn(format!("--compression={}", config.compression.name()));
    }
    if !supported.compaction_style && config.compaction_style != CompactionStyle::default() {
        warn(format!(
            "--compaction_style={}",
            config.compaction_style.name()
        ));
    }
    if let (false, Some(t)) = (supported.value_threshold, config.value_threshold) {
        warn(format!("--value_threshold={t}"));
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
    let none = Supported {
        compression: false,
        compaction_style: false,
        value_threshold: false,
    };
    warn_unsupported("memory", config, none);
    Ok(Arc::new(memory::MemoryEngine::open(config)?))
}

/// The engines built into this binary, by `--engine` name.
const ENGINES: &[(&str, OpenFn)] = &[("strata", strata::open), ("memory", open_memory)];

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
             (cargo run --release -p strata-bench --features peers --bin db_bench -- ...), \
             which is not available yet; engines available: {built}"
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
            let e = check_engine(peer).unwrap_err().to_string();
            assert!(e.contains("cargo feature `peers`"), "{e}");
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
        let none = Supported {
            compression: false,
            compaction_style: false,
            value_threshold: false,
        };
        assert!(unsupported_warnings("x", &config, none).is_empty());
        config.compression = Compression::Zstd;
        config.compaction_style = CompactionStyle::Tiered;
        config.value_threshold = Some(512);
        let w = unsupported_warnings("x", &config, none);
        assert_eq!(w.len(), 3);
        assert!(w[0].contains("--compression=zstd") && w[0].contains("not supported yet"));
        assert!(w[1].contains("--compaction_style=tiered"));
        assert!(w[2].contains("--value_threshold=512"));
        let all = Supported {
            compression: true,
            compaction_style: true,
            value_threshold: true,
        };
        assert!(unsupported_warnings("x", &config, all).is_empty());
    }
}
