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
