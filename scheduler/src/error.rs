//! The scheduler crate's error enum; every variant maps to a shared [`ErrorKind`].

use ballista_core::error::BallistaError;
use datafusion::error::DataFusionError;
use lakehouse_common::ErrorKind;

/// Why starting, stopping or talking to a scheduler failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option is unusable as given.
    #[error("invalid scheduler option `{option}`: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },

    /// The gRPC listener could not be bound.
    #[error("bind scheduler gRPC listener on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    /// Ballista's scheduler state or event loop failed.
    #[error("ballista scheduler: {0}")]
    Ballista(#[from] BallistaError),

    /// The gRPC server failed while serving.
    #[error("scheduler gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),

    /// A scheduler URL given to the client side is malformed.
    #[error("scheduler url `{url}`: {reason}")]
    SchedulerUrl { url: String, reason: String },

    /// The scheduler could not be reached or refused a request.
    #[error("scheduler {url}: {reason}")]
    Unreachable { url: String, reason: String },

    /// Building the client-side session failed.
    #[error("remote session: {0}")]
    DataFusion(#[from] DataFusionError),

    /// A background task panicked or was aborted.
    #[error("scheduler task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Result with the scheduler crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What a caller can do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidOption { .. } | Error::SchedulerUrl { .. } => ErrorKind::InvalidInput,
            Error::Bind { .. } | Error::Unreachable { .. } => ErrorKind::Unavailable,
            Error::Ballista(_) | Error::Serve(_) | Error::DataFusion(_) | Error::Join(_) => {
                ErrorKind::Internal
            }
        }
    }
}
