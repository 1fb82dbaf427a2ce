//! The one mapping from our error kinds to gRPC status codes.

use lakehouse_common::ErrorKind;
use tonic::{Code, Status};

pub(crate) fn status(kind: ErrorKind, message: impl Into<String>) -> Status {
    let code = match kind {
        ErrorKind::InvalidInput => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    };
    let message = message.into();
    if kind == ErrorKind::Internal {
        tracing::error!(%message, "flight sql request failed");
    }
    Status::new(code, message)
}

pub(crate) fn from_query(e: lakehouse_query::Error) -> Status {
    status(e.kind(), e.to_string())
}

pub(crate) fn from_datafusion(e: datafusion::error::DataFusionError) -> Status {
    status(lakehouse_query::datafusion_error_kind(&e), e.to_string())
}

pub(crate) fn invalid(message: impl Into<String>) -> Status {
    status(ErrorKind::InvalidInput, message)
}

/// What authentication, authorization and TLS set-up can go wrong with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no credentials: authenticate first with a user name and password (Basic auth on Handshake, then send the Bearer token it returns; ADBC: the username and password options)")]
    MissingCredentials,

    #[error("user name or password not accepted (user `{user}`)")]
    BadCredentials { user: String },

    #[error(
        "the authorization header {reason}; send `Basic base64(user:password)` or `Bearer <token>`"
    )]
    BadAuthorizationHeader { reason: &'static str },

    #[error("the session token is unknown or has expired (auth.token_ttl_secs after its last use): authenticate again with user name and password")]
    UnknownToken,

    #[error(transparent)]
    Denied(#[from] lakehouse_common::access::Denied),

    #[error(
        "permission denied: user `{user}` (roles: {roles}) may not {what}; only the admin role may"
    )]
    AdminOnly {
        user: String,
        roles: String,
        what: String,
    },

    #[error("{statement}: {reason}")]
    GrantStatement { statement: String, reason: String },

    #[error("{statement}: the catalog did not store it: {source}")]
    GrantNotStored {
        statement: String,
        source: lakehouse_catalog_raft::Error,
    },

    #[error("{key}: {reason}")]
    Config { key: String, reason: String },

    #[error(transparent)]
    Common(#[from] lakehouse_common::Error),

    #[error("password hashing failed: {0}")]
    Hashing(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::MissingCredentials
            | Error::BadCredentials { .. }
            | Error::BadAuthorizationHeader { .. }
            | Error::UnknownToken => ErrorKind::Unauthenticated,
            Error::Denied(_) | Error::AdminOnly { .. } => ErrorKind::PermissionDenied,
            Error::GrantStatement { .. } | Error::Config { .. } => ErrorKind::InvalidInput,
            Error::GrantNotStored { source, .. } => source.kind(),
            Error::Common(e) => e.kind(),
            Error::Hashing(_) => ErrorKind::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        status(e.kind(), e.to_string())
    }
}
