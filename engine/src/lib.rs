//! `strata`: the embeddable LSM-tree key-value store.
//!
//! **Not built yet.** The database (`Db`, keyspaces, memtables, sorted tables,
//! manifest, read and write paths) arrives with the engine-core issue. Today the
//! foundation it stands on is in `strata-wal`.
