//! `strata`: the embeddable LSM-tree key-value store.
//!
//! Under construction (engine-core issue): the modules below are the pieces the
//! database is being assembled from.

pub mod error;
pub mod ids;
pub mod iter;
pub mod key;

pub use bytes::Bytes;
pub use error::{Error, Result};
