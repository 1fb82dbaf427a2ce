//! The error vocabulary shared by all crates. Each crate keeps its own `Error`
//! enum and maps every variant to an [`ErrorKind`]; only the edges (Flight SQL,
//! HTTP) turn a kind into a status code.

/// What a caller can do about an error; the edges map it to gRPC / HTTP codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong: fix the input.
    InvalidInput,
    /// The named thing does not exist.
    NotFound,
    /// The named thing exists already.
    AlreadyExists,
    /// Someone else holds what is needed (a writer lease, a newer version).
    Conflict,
    /// The input is larger than allowed.
    TooLarge,
    /// The caller did not prove who they are (no, expired or wrong credentials).
    Unauthenticated,
    /// The caller is known but may not do this (no grant, wrong role).
    PermissionDenied,
    /// A dependency (object store, catalog leader) cannot be reached: retry later.
    Unavailable,
    /// A bug or an unexpected state on our side.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),

    #[error("invalid {what}: {reason}")]
    InvalidName { what: &'static str, reason: String },

    #[error("object store bucket `{bucket}`: {source}")]
    Storage {
        bucket: String,
        #[source]
        source: object_store::Error,
    },

    #[error("secret `{reference}`: {reason}")]
    Secret { reference: String, reason: String },

    /// Refused or failed credentials, from the one auth implementation behind
    /// [`crate::Access`]; the kind says which, so every edge maps it the same way.
    #[error("{message}")]
    Auth { kind: ErrorKind, message: String },

    /// An append-only journal (ADR-018) could not encode an event or read a stored batch.
    #[error("journal {location}: {reason}")]
    Journal { location: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::InvalidName { .. } | Error::Secret { .. } => {
                ErrorKind::InvalidInput
            }
            Error::Storage { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                object_store::Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
                _ => ErrorKind::Unavailable,
            },
            Error::Auth { kind, .. } => *kind,
            Error::Journal { .. } => ErrorKind::Internal,
        }
    }
}
