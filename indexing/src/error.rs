use lakehouse_common::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no vector index named `{index}`; `lakehouse index list` shows the indexes")]
    IndexNotFound { index: String },

    #[error(
        "vector index `{index}` has no {what}; `lakehouse index show {index}` lists its versions"
    )]
    NoVersion { index: String, what: String },

    #[error("table `{table}` does not exist")]
    TableNotFound { table: String },

    #[error("table `{table}` has no column `{column}`; its columns are: {columns}")]
    ColumnNotFound {
        table: String,
        column: String,
        columns: String,
    },

    #[error("column `{column}` of `{table}` is {data_type}, not text: vector indexes embed text columns")]
    NotText {
        table: String,
        column: String,
        data_type: String,
    },

    #[error("{0}")]
    InvalidArgument(String),

    #[error("the shard file {location} is not what an index build writes: {reason}")]
    BadShard { location: String, reason: String },

    #[error("object {location} is in bucket `{bucket}`, which this node has not configured")]
    UnknownBucket { location: String, bucket: String },

    #[error("object store: {0}")]
    Storage(#[from] object_store::Error),

    #[error("{0}")]
    Catalog(#[from] lakehouse_catalog_raft::Error),

    #[error("{0}")]
    Config(#[from] lakehouse_common::Error),

    #[error("{0}")]
    Embedding(#[from] lakehouse_embedding::Error),

    #[error("{0}")]
    Vector(#[from] lakehouse_vector::Error),

    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),

    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("building version {version} of index `{index}` failed: {source} (the version is recorded as failed; `lakehouse index show {index}` lists it)")]
    BuildFailed {
        index: String,
        version: u64,
        source: Box<Error>,
    },

    #[error("the tuning run stopped before it finished: {0}")]
    TuneAborted(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::IndexNotFound { .. } | Error::NoVersion { .. } | Error::TableNotFound { .. } => {
                ErrorKind::NotFound
            }
            Error::ColumnNotFound { .. } | Error::NotText { .. } | Error::InvalidArgument(_) => {
                ErrorKind::InvalidInput
            }
            Error::Storage(_) => ErrorKind::Unavailable,
            Error::Catalog(e) => e.kind(),
            Error::Config(e) => e.kind(),
            Error::Embedding(e) => e.kind(),
            Error::Vector(e) => e.kind(),
            Error::Query(e) => query_kind(e),
            Error::BuildFailed { source, .. } => source.kind(),
            Error::BadShard { .. }
            | Error::UnknownBucket { .. }
            | Error::Parquet(_)
            | Error::Arrow(_)
            | Error::TuneAborted(_) => ErrorKind::Internal,
        }
    }
}

/// A plan error is the caller's to fix; an error raised by our own tasks keeps its kind.
fn query_kind(error: &datafusion::error::DataFusionError) -> ErrorKind {
    use datafusion::error::DataFusionError as E;
    match error.find_root() {
        E::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => ours.kind(),
            None => ErrorKind::Internal,
        },
        E::SQL(..) | E::Plan(_) | E::SchemaError(..) => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    }
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(error: Error) -> Self {
        match error {
            Error::Query(e) => e,
            other => datafusion::error::DataFusionError::External(Box::new(other)),
        }
    }
}
