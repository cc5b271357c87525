//! The error type of the `db_bench` tool.
//!
//! Usage errors (bad flags) are told apart from failures while running, because the
//! binary answers them differently: a usage error prints the usage text and exits
//! with status 2, anything else exits with status 1.

use std::fmt;
use std::io;

use crate::engine::EngineError;

/// Everything that can stop a `db_bench` run.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The command line is wrong; the message says which flag and why.
    Usage(String),
    /// The engine failed while doing `context` (e.g. "fillrandom: put").
    Engine {
        /// What the harness was doing.
        context: String,
        /// The engine's error.
        source: EngineError,
    },
    /// A file-system or process operation failed.
    Io {
        /// What the harness was doing, naming the path.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// The `recover` benchmark could not run its child or check its result.
    Recover(String),
    /// A client thread panicked; the message is the panic payload when it is text.
    ThreadPanicked(String),
}

impl Error {
    /// Whether this is a command-line error (exit status 2, usage printed).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_))
    }

    /// Wraps an engine error with what the harness was doing.
    pub fn engine(context: impl Into<String>, source: EngineError) -> Self {
        Error::Engine {
            context: context.into(),
            source,
        }
    }

    /// Wraps an I/O error with what the harness was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg}"),
            Error::Engine { context, source } => write!(f, "{context}: engine error: {source}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Recover(msg) => write!(f, "recover: {msg}"),
            Error::ThreadPanicked(msg) => {
                write!(
                    f,
                    "a benchmark thread panicked: {msg} (this is a bug in db_bench or the engine)"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Engine { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
