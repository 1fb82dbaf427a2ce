use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lakehouse_common::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ingest(#[from] lakehouse_ingest::Error),

    #[error(transparent)]
    Catalog(#[from] lakehouse_catalog_raft::Error),

    #[error(transparent)]
    Embedding(#[from] lakehouse_embedding::Error),

    #[error("table `{0}` does not exist")]
    TableNotFound(String),

    #[error("{0}")]
    BadRequest(String),

    #[error("the upload is larger than gateway.max_ingest_bytes ({limit} bytes)")]
    TooLarge { limit: u64 },

    #[error("spooling the upload: {0}")]
    Spool(std::io::Error),

    /// Credentials refused by the shared auth (wrong password, unknown token).
    #[error(transparent)]
    Auth(#[from] lakehouse_common::Error),

    #[error("no credentials: send `Authorization: Basic base64(user:password)` or `Authorization: Bearer <token>` (a Flight SQL session token works)")]
    MissingCredentials,

    #[error("the Authorization header is not ASCII; send `Basic base64(user:password)` or `Bearer <token>`")]
    BadAuthorizationHeader,

    #[error(transparent)]
    Denied(#[from] lakehouse_common::access::Denied),

    #[error(transparent)]
    Index(#[from] lakehouse_indexing::Error),

    #[error("vector indexes are not served by this gateway: it runs without a query engine")]
    NoIndexes,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Ingest(e) => e.kind(),
            Error::Catalog(e) => e.kind(),
            Error::Embedding(e) => e.kind(),
            Error::TableNotFound(_) => ErrorKind::NotFound,
            Error::BadRequest(_) => ErrorKind::InvalidInput,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Spool(_) => ErrorKind::Unavailable,
            Error::Auth(e) => e.kind(),
            Error::MissingCredentials | Error::BadAuthorizationHeader => ErrorKind::Unauthenticated,
            Error::Denied(_) => ErrorKind::PermissionDenied,
            Error::Index(e) => e.kind(),
            Error::NoIndexes => ErrorKind::Unavailable,
        }
    }
}

/// The one place an error kind becomes an HTTP status.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) fn label_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::NotFound => "not_found",
        ErrorKind::AlreadyExists => "already_exists",
        ErrorKind::Conflict => "conflict",
        ErrorKind::TooLarge => "too_large",
        ErrorKind::Unauthenticated => "unauthenticated",
        ErrorKind::PermissionDenied => "permission_denied",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Internal => "internal",
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let kind = self.kind();
        if kind == ErrorKind::Internal {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({ "error": label_of(kind), "detail": self.to_string() });
        let mut response = (status_of(kind), Json(body)).into_response();
        if kind == ErrorKind::Unauthenticated {
            // RFC 9110: a 401 names the scheme to use.
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="lakehouse""#),
            );
        }
        response
    }
}
