use lakehouse_common::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Name(#[from] lakehouse_common::Error),

    #[error("table `{table}` needs metadata before anything is written; missing: {}", missing.join(", "))]
    MissingMetadata { table: String, missing: Vec<String> },

    #[error("table `{table}` already exists (version {version}); choose a mode: `append` to add these rows, or `replace` to make them the whole table")]
    ModeRequired { table: String, version: u64 },

    #[error("table `{table}` already exists (version {version}); to write it anyway use mode `append` to add these rows, or `replace` to make them the whole table")]
    TableExists { table: String, version: u64 },

    #[error("table `{table}` does not exist, so there is nothing to append to; create it first (mode `create`)")]
    TableNotFound { table: String },

    /// The rows came from a query or a client stream that failed part-way.
    #[error("the rows for table `{table}` could not be produced: {detail}")]
    Rows {
        table: String,
        kind: ErrorKind,
        detail: String,
    },

    #[error("{source_name}: {reason}")]
    BadSource { source_name: String, reason: String },

    #[error("{source_name}: {detail}")]
    Parse { source_name: String, detail: String },

    #[error("{source_name}: cannot read: {error}")]
    Io {
        source_name: String,
        error: std::io::Error,
    },

    #[error("table `{table}`: the new rows do not fit the table's schema: {detail}")]
    SchemaMismatch { table: String, detail: String },

    #[error(transparent)]
    Catalog(#[from] lakehouse_catalog_raft::Error),

    #[error("writing table `{table}` to the bucket: {detail}")]
    Write { table: String, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Name(e) => e.kind(),
            Error::MissingMetadata { .. }
            | Error::ModeRequired { .. }
            | Error::BadSource { .. }
            | Error::Parse { .. }
            | Error::SchemaMismatch { .. } => ErrorKind::InvalidInput,
            Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } => ErrorKind::InvalidInput,
            Error::TableExists { .. } => ErrorKind::AlreadyExists,
            Error::TableNotFound { .. } => ErrorKind::NotFound,
            Error::Rows { kind, .. } => *kind,
            Error::Catalog(e) => e.kind(),
            Error::Write { .. } => ErrorKind::Unavailable,
        }
    }
}
