//! The crate's one error type.
//!
//! Planning itself cannot fail (a policy always returns a [`Decision`](crate::Decision),
//! possibly `Nothing`), so errors come only from checking: a tree description that
//! breaks its invariants, a decision that does not fit its tree, a configuration out of
//! range, or a simulation that could not go on. Each message names what is wrong and
//! what to do about it.

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The tree description breaks an invariant (a run's tables overlap or are out of
    /// order, a table id appears twice, ...).
    InvalidTree(String),
    /// A decision does not fit the tree it is checked against.
    InvalidDecision(String),
    /// A configuration field is out of range.
    InvalidConfig {
        /// The field, as `Struct::field`.
        field: &'static str,
        /// Why the value is refused.
        reason: String,
    },
    /// The simulator could not go on (a policy stopped making progress, or a check
    /// supplied by the caller failed).
    Simulation(String),
}

impl Error {
    pub(crate) fn tree(why: impl Into<String>) -> Self {
        Error::InvalidTree(why.into())
    }

    pub(crate) fn decision(why: impl Into<String>) -> Self {
        Error::InvalidDecision(why.into())
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidTree(why) => write!(
                f,
                "invalid tree description: {why}; describe runs as sorted, disjoint tables \
                 with unique ids before asking a policy"
            ),
            Error::InvalidDecision(why) => write!(
                f,
                "compaction decision does not fit the tree: {why}; do not execute it \
                 (it was made for another version of the tree, or the policy has a bug)"
            ),
            Error::InvalidConfig { field, reason } => {
                write!(f, "invalid compaction option {field}: {reason}")
            }
            Error::Simulation(why) => write!(f, "compaction simulation stopped: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
