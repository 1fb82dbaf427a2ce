//! What goes through the Raft log: requests, their responses, and the openraft type config.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::Refusal;
use crate::model::{
    CatalogState, IndexShard, IndexVersion, Lease, LeaseIssuer, Table, TableCommit, TableMetadata,
    TableVersion, View,
};

/// A change to the catalog. Times (`now_ms`) are stamped by the leader from its
/// clock before the request enters the log, so every node applying it decides
/// lease expiry identically (never from its own wall clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    AcquireLease {
        table: String,
        holder: String,
        ttl_ms: u64,
        now_ms: i64,
    },
    RenewLease {
        table: String,
        token: u64,
        ttl_ms: u64,
        now_ms: i64,
    },
    ReleaseLease {
        table: String,
        token: u64,
    },
    /// `issuer` says how `token` is checked (absent from entries written before
    /// etcd leases existed: the catalog's own lease).
    Commit {
        token: u64,
        commit: TableCommit,
        now_ms: i64,
        #[serde(default)]
        issuer: LeaseIssuer,
    },
    DropTable {
        table: String,
        token: u64,
        now_ms: i64,
        #[serde(default)]
        issuer: LeaseIssuer,
    },
    UpdateMetadata {
        table: String,
        metadata: TableMetadata,
    },
    /// Creates `view` (its `created_at_ms` is set to `now_ms`); with `replace`, an
    /// existing view of that name is replaced instead of refused.
    CreateView {
        view: View,
        replace: bool,
        now_ms: i64,
    },
    DropView {
        name: String,
    },
    /// GRANT (`granted`) or REVOKE SELECT on `table` to `role`; granting twice or
    /// revoking what was never granted changes nothing.
    SetGrant {
        role: String,
        table: String,
        granted: bool,
    },
    /// Starts a new version of vector index `name` (created if new) from
    /// `version`'s recipe; the catalog assigns its number and sets it `Building`
    /// (`created_at_ms` is `now_ms`). The source table must exist.
    CreateIndexVersion {
        name: String,
        version: IndexVersion,
        now_ms: i64,
    },
    /// Ends a `Building` version: `Ready` with `shards`, or `Failed` with `error`.
    /// The first version of an index to become ready is made active.
    FinishIndexVersion {
        name: String,
        version: u64,
        shards: Vec<IndexShard>,
        chunks_embedded: u64,
        error: Option<String>,
    },
    /// Makes a `Ready` version the one searched by default.
    ActivateIndexVersion {
        name: String,
        version: u64,
    },
    /// Drops one version (`Some`) or the whole index (`None`). Dropping the
    /// active version activates the newest remaining ready one; dropping the
    /// last version drops the index.
    DropIndex {
        name: String,
        version: Option<u64>,
    },
    /// Replaces the whole state with one read from a bucket manifest.
    Restore(CatalogState),
}

/// The state machine's answer to one log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Entries with nothing to report: blank, membership, restore, release.
    Done,
    Lease(Lease),
    Version(TableVersion),
    Table(Table),
    IndexVersion(IndexVersion),
    Refused(Refusal),
}

openraft::declare_raft_types!(
    /// The catalog's Raft types: one-node today, `BasicNode` addresses once peers exist.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
