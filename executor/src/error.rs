//! The executor's error enum; every variant maps to a shared [`ErrorKind`].

use std::net::SocketAddr;
use std::path::PathBuf;

use ballista_core::error::BallistaError;
use lakehouse_common::ErrorKind;

/// Why starting or stopping an executor failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option is unusable as given (empty host, non-UTF-8 work dir, ...).
    #[error("invalid executor option `{option}`: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },

    /// The shuffle work directory could not be created.
    #[error("executor work dir {path}: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A listening socket could not be bound.
    #[error("bind executor {service} listener on {addr}: {source}")]
    Bind {
        service: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },

    /// The scheduler could not be reached or refused the registration.
    #[error("executor could not register with scheduler {scheduler}: {source}")]
    Register {
        scheduler: SocketAddr,
        #[source]
        source: BallistaError,
    },

    /// Building the executor's runtime (memory pool, runtime env) failed.
    #[error("executor runtime: {0}")]
    Runtime(#[source] BallistaError),

    /// The threads that run tasks could not be started.
    #[error("executor task threads: {source}")]
    TaskRuntime {
        #[source]
        source: std::io::Error,
    },

    /// The supervising task panicked or was aborted.
    #[error("executor task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Result with the executor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What a caller can do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidOption { .. } => ErrorKind::InvalidInput,
            Error::WorkDir { .. } | Error::Bind { .. } | Error::Register { .. } => {
                ErrorKind::Unavailable
            }
            Error::Runtime(_) | Error::TaskRuntime { .. } | Error::Join(_) => ErrorKind::Internal,
        }
    }
}
