//! The catalog's errors. Refusals decided by the state machine travel through the
//! Raft log as [`Refusal`] (it must be serializable and identical on every node)
//! and become [`Error`] at the API.

use lakehouse_common::ErrorKind;

use crate::model::{IndexStatus, ObjectKind};
use serde::{Deserialize, Serialize};

/// Why the state machine refused a request. Part of the replicated response, so
/// it only holds plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    LeaseHeld {
        table: String,
        holder: String,
        token: u64,
        expires_in_ms: i64,
    },
    StaleToken {
        table: String,
        token: u64,
        /// Token of the table's live lease, if there is one.
        current: Option<u64>,
    },
    LeaseExpired {
        table: String,
        holder: String,
        token: u64,
        expired_ms_ago: i64,
    },
    TableExists {
        table: String,
    },
    TableNotFound {
        table: String,
    },
    SchemaMismatch {
        table: String,
        differences: String,
    },
    MissingMetadata {
        table: String,
    },
    ViewExists {
        view: String,
    },
    ViewNotFound {
        view: String,
    },
    /// The name is held by an object of the other kind (tables and views share names).
    NameTaken {
        name: String,
        taken_by: ObjectKind,
    },
    IndexNotFound {
        index: String,
    },
    IndexVersionNotFound {
        index: String,
        version: u64,
    },
    /// Only a ready version can be activated.
    IndexVersionNotReady {
        index: String,
        version: u64,
        status: IndexStatus,
    },
    /// Only a building version can be finished.
    IndexVersionNotBuilding {
        index: String,
        version: u64,
        status: IndexStatus,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "table `{table}` is being written by `{holder}` (lease token {token}, {expires_in_ms} ms left); \
         wait for that write to finish or retry later"
    )]
    LeaseHeld {
        table: String,
        holder: String,
        token: u64,
        expires_in_ms: i64,
    },

    #[error("{}", stale_token_message(table, *token, *current))]
    StaleToken {
        table: String,
        token: u64,
        current: Option<u64>,
    },

    #[error(
        "the writer lease on table `{table}` held by `{holder}` (token {token}) expired {expired_ms_ago} ms ago; \
         files written under it will be garbage-collected: take a new lease and write again"
    )]
    LeaseExpired {
        table: String,
        holder: String,
        token: u64,
        expired_ms_ago: i64,
    },

    #[error("table `{table}` already exists; write with mode append or replace")]
    TableExists { table: String },

    #[error("table `{table}` does not exist")]
    TableNotFound { table: String },

    #[error("append to table `{table}` refused: the schema differs: {differences}; use mode replace to change the schema")]
    SchemaMismatch { table: String, differences: String },

    #[error("creating table `{table}` needs its metadata (owner, sensitivity, lineage, freshness SLA, description, tags)")]
    MissingMetadata { table: String },

    #[error("view `{view}` already exists; use CREATE OR REPLACE VIEW to change it")]
    ViewExists { view: String },

    #[error("view `{view}` does not exist")]
    ViewNotFound { view: String },

    #[error("`{name}` is already the name of a {taken_by} (tables and views share names); choose another name or drop that {taken_by} first")]
    NameTaken { name: String, taken_by: ObjectKind },

    #[error("vector index `{index}` does not exist; `lakehouse index list` shows the indexes")]
    IndexNotFound { index: String },

    #[error("vector index `{index}` has no version {version} (dropped, or never created); `lakehouse index show {index}` lists its versions")]
    IndexVersionNotFound { index: String, version: u64 },

    #[error("version {version} of vector index `{index}` is {status}, not ready: only a ready version can be activated; wait for its build to finish, or activate a ready version")]
    IndexVersionNotReady {
        index: String,
        version: u64,
        status: IndexStatus,
    },

    #[error("version {version} of vector index `{index}` is {status}, not building: its build was finished already; create a new version to build it again")]
    IndexVersionNotBuilding {
        index: String,
        version: u64,
        status: IndexStatus,
    },

    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A bad table name and other input errors from `lakehouse-common`.
    #[error(transparent)]
    Common(lakehouse_common::Error),

    #[error("catalog manifest `{key}`: {reason}")]
    Manifest { key: String, reason: String },

    #[error(
        "catalog version {catalog_version} is committed but its manifest could not be written to the bucket \
         ({source}); it will be written with the next change"
    )]
    ManifestNotWritten {
        catalog_version: u64,
        #[source]
        source: Box<Error>,
    },

    #[error("catalog log at {path}: {reason}")]
    LocalStore { path: String, reason: String },

    #[error("catalog Raft: {0}")]
    Raft(String),

    #[error("this catalog node is not the leader (leader: {leader:?}); send the request to the leader or to a catalog server, which forwards it")]
    NotLeader { leader: Option<u64> },

    /// A catalog node could not be reached or answered with a transport error.
    #[error("catalog node {addr}: {reason}; check that `lakehouse catalog` runs there and the address is right")]
    Unreachable { addr: String, reason: String },

    /// An error a remote catalog node reported, with its kind.
    #[error("catalog node {addr}: {message}")]
    Remote {
        addr: String,
        kind: ErrorKind,
        message: String,
    },

    /// Writer leases in etcd (`catalog.lease_backend = "etcd"`) could not be used.
    #[error("etcd at {endpoints}: {reason}; check that etcd runs there and catalog.etcd_endpoints is right")]
    Etcd { endpoints: String, reason: String },

    #[error("the catalog is shut down")]
    ShutDown,

    #[error("catalog internal error: {0}")]
    Internal(String),
}

fn stale_token_message(table: &str, token: u64, current: Option<u64>) -> String {
    match current {
        Some(current) => format!(
            "write to table `{table}` with fencing token {token} refused: the writer lease was lost, \
             another writer took the table over (token {current}); nothing was committed: retry the write"
        ),
        None => format!(
            "write to table `{table}` with fencing token {token} refused: the writer lease was lost \
             (expired or released; no writer holds the table now); nothing was committed: retry the write"
        ),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::LeaseHeld { .. } | Error::StaleToken { .. } | Error::LeaseExpired { .. } => {
                ErrorKind::Conflict
            }
            Error::TableExists { .. } | Error::ViewExists { .. } | Error::NameTaken { .. } => {
                ErrorKind::AlreadyExists
            }
            Error::TableNotFound { .. }
            | Error::ViewNotFound { .. }
            | Error::IndexNotFound { .. }
            | Error::IndexVersionNotFound { .. } => ErrorKind::NotFound,
            // The version exists but is in the wrong state for the request; gRPC
            // answers FailedPrecondition (see `client::to_status`).
            Error::IndexVersionNotReady { .. } | Error::IndexVersionNotBuilding { .. } => {
                ErrorKind::Conflict
            }
            Error::SchemaMismatch { .. }
            | Error::MissingMetadata { .. }
            | Error::InvalidRequest(_) => ErrorKind::InvalidInput,
            Error::Common(e) => e.kind(),
            Error::ManifestNotWritten { .. }
            | Error::LocalStore { .. }
            | Error::Raft(_)
            | Error::NotLeader { .. }
            | Error::Unreachable { .. }
            | Error::Etcd { .. }
            | Error::ShutDown => ErrorKind::Unavailable,
            Error::Remote { kind, .. } => *kind,
            Error::Manifest { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl Error {
    /// The refusal this error stands for, if it is one, so it can travel to a
    /// remote client and come back as the same error there.
    pub fn refusal(&self) -> Option<Refusal> {
        Some(match self {
            Error::LeaseHeld {
                table,
                holder,
                token,
                expires_in_ms,
            } => Refusal::LeaseHeld {
                table: table.clone(),
                holder: holder.clone(),
                token: *token,
                expires_in_ms: *expires_in_ms,
            },
            Error::StaleToken {
                table,
                token,
                current,
            } => Refusal::StaleToken {
                table: table.clone(),
                token: *token,
                current: *current,
            },
            Error::LeaseExpired {
                table,
                holder,
                token,
                expired_ms_ago,
            } => Refusal::LeaseExpired {
                table: table.clone(),
                holder: holder.clone(),
                token: *token,
                expired_ms_ago: *expired_ms_ago,
            },
            Error::TableExists { table } => Refusal::TableExists {
                table: table.clone(),
            },
            Error::TableNotFound { table } => Refusal::TableNotFound {
                table: table.clone(),
            },
            Error::SchemaMismatch { table, differences } => Refusal::SchemaMismatch {
                table: table.clone(),
                differences: differences.clone(),
            },
            Error::MissingMetadata { table } => Refusal::MissingMetadata {
                table: table.clone(),
            },
            Error::ViewExists { view } => Refusal::ViewExists { view: view.clone() },
            Error::ViewNotFound { view } => Refusal::ViewNotFound { view: view.clone() },
            Error::NameTaken { name, taken_by } => Refusal::NameTaken {
                name: name.clone(),
                taken_by: *taken_by,
            },
            Error::IndexNotFound { index } => Refusal::IndexNotFound {
                index: index.clone(),
            },
            Error::IndexVersionNotFound { index, version } => Refusal::IndexVersionNotFound {
                index: index.clone(),
                version: *version,
            },
            Error::IndexVersionNotReady {
                index,
                version,
                status,
            } => Refusal::IndexVersionNotReady {
                index: index.clone(),
                version: *version,
                status: *status,
            },
            Error::IndexVersionNotBuilding {
                index,
                version,
                status,
            } => Refusal::IndexVersionNotBuilding {
                index: index.clone(),
                version: *version,
                status: *status,
            },
            Error::InvalidRequest(_)
            | Error::Common(_)
            | Error::Manifest { .. }
            | Error::ManifestNotWritten { .. }
            | Error::LocalStore { .. }
            | Error::Raft(_)
            | Error::NotLeader { .. }
            | Error::Unreachable { .. }
            | Error::Etcd { .. }
            | Error::Remote { .. }
            | Error::ShutDown
            | Error::Internal(_) => return None,
        })
    }
}

impl From<lakehouse_common::Error> for Error {
    fn from(e: lakehouse_common::Error) -> Self {
        Error::Common(e)
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::LeaseHeld {
                table,
                holder,
                token,
                expires_in_ms,
            } => Error::LeaseHeld {
                table,
                holder,
                token,
                expires_in_ms,
            },
            Refusal::StaleToken {
                table,
                token,
                current,
            } => Error::StaleToken {
                table,
                token,
                current,
            },
            Refusal::LeaseExpired {
                table,
                holder,
                token,
                expired_ms_ago,
            } => Error::LeaseExpired {
                table,
                holder,
                token,
                expired_ms_ago,
            },
            Refusal::TableExists { table } => Error::TableExists { table },
            Refusal::TableNotFound { table } => Error::TableNotFound { table },
            Refusal::SchemaMismatch { table, differences } => {
                Error::SchemaMismatch { table, differences }
            }
            Refusal::MissingMetadata { table } => Error::MissingMetadata { table },
            Refusal::ViewExists { view } => Error::ViewExists { view },
            Refusal::ViewNotFound { view } => Error::ViewNotFound { view },
            Refusal::NameTaken { name, taken_by } => Error::NameTaken { name, taken_by },
            Refusal::IndexNotFound { index } => Error::IndexNotFound { index },
            Refusal::IndexVersionNotFound { index, version } => {
                Error::IndexVersionNotFound { index, version }
            }
            Refusal::IndexVersionNotReady {
                index,
                version,
                status,
            } => Error::IndexVersionNotReady {
                index,
                version,
                status,
            },
            Refusal::IndexVersionNotBuilding {
                index,
                version,
                status,
            } => Error::IndexVersionNotBuilding {
                index,
                version,
                status,
            },
        }
    }
}
