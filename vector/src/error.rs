//! The vector crate's errors; each maps to a common [`ErrorKind`].

use lakehouse_common::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid vector input: {0}")]
    InvalidInput(String),

    #[error("HNSW build failed: {0}")]
    Build(String),

    #[error(
        "sidecar {location} is not a readable HNSW index ({reason}); rebuild the shard's index"
    )]
    CorruptSidecar { location: String, reason: String },

    #[error(
        "sidecar {location} has format version {found}, this build reads version {supported}; \
         rebuild the shard's index or upgrade"
    )]
    UnsupportedVersion {
        location: String,
        found: u32,
        supported: u32,
    },

    #[error("sidecar {location}: object reference names bucket `{wanted}` but the store given is bucket `{given}`")]
    WrongBucket {
        location: String,
        wanted: String,
        given: String,
    },

    #[error(
        "no Lance shard at {uri}: check the uri and its storage options, or write the shard first"
    )]
    ShardNotFound { uri: String },

    #[error(
        "a Lance shard already exists at {uri}: open it, or write the new shard to another path"
    )]
    ShardExists { uri: String },

    #[error("Lance shard {uri}: could not {op} it: {source}")]
    Lance {
        uri: String,
        op: &'static str,
        #[source]
        source: Box<lance::Error>,
    },

    #[error("sidecar {location}: {source}")]
    Storage {
        location: String,
        #[source]
        source: object_store::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput(_) | Error::WrongBucket { .. } => ErrorKind::InvalidInput,
            Error::Build(_) | Error::CorruptSidecar { .. } | Error::UnsupportedVersion { .. } => {
                ErrorKind::Internal
            }
            Error::ShardNotFound { .. } => ErrorKind::NotFound,
            Error::ShardExists { .. } => ErrorKind::AlreadyExists,
            Error::Lance { source, .. } => match source.as_ref() {
                lance::Error::InvalidInput { .. } | lance::Error::SchemaMismatch { .. } => {
                    ErrorKind::InvalidInput
                }
                lance::Error::CommitConflict { .. }
                | lance::Error::RetryableCommitConflict { .. }
                | lance::Error::TooMuchWriteContention { .. } => ErrorKind::Conflict,
                lance::Error::IO { .. } => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            Error::Storage { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                _ => ErrorKind::Unavailable,
            },
        }
    }
}
