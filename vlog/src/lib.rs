//! `strata-vlog`: the value log for key-value separation.
//!
//! **Not built yet.** This crate will hold value-log segments, value pointers, reads
//! and garbage-collection support, written through the `Fs` trait of `strata-wal`.
//! Until the key-value separation issue lands it exports nothing, and the engine keeps
//! every value inline in its sorted tables.
