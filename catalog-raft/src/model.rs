//! What the catalog records: tables, their versions and metadata, views, writer leases.
//! These types are replicated through Raft and written into manifests, so every
//! change to them must stay readable by older manifests (serde defaults).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use arrow_schema::Schema;
use lakehouse_common::ObjectRef;
use serde::{Deserialize, Serialize};

/// Data classification (ADR-013).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Sensitivity {
    pub const ALLOWED: &'static str = "public, internal, confidential, restricted";
}

impl FromStr for Sensitivity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Self::Public),
            "internal" => Ok(Self::Internal),
            "confidential" => Ok(Self::Confidential),
            "restricted" => Ok(Self::Restricted),
            other => Err(format!(
                "sensitivity {other:?} is not one of {}",
                Self::ALLOWED
            )),
        }
    }
}

impl fmt::Display for Sensitivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Internal => "internal",
            Self::Confidential => "confidential",
            Self::Restricted => "restricted",
        })
    }
}

/// Metadata every dataset carries (ADR-013).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMetadata {
    pub owner: String,
    pub sensitivity: Sensitivity,
    /// source_system → ingest → dataset.
    pub lineage: String,
    /// How stale the data may get, e.g. `24h`.
    pub freshness_sla: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Set when the metadata was auto-detected and still needs a person's review.
    #[serde(default)]
    pub metadata_incomplete: bool,
}

/// How a commit relates to the table's previous version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// The table must not exist yet.
    Create,
    /// New files are added to the previous version's files; the schema must match.
    Append,
    /// The new files replace the previous version's files.
    Replace,
}

impl FromStr for WriteMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create" => Ok(Self::Create),
            "append" => Ok(Self::Append),
            "replace" => Ok(Self::Replace),
            other => Err(format!(
                "mode {other:?} is not one of create, append, replace"
            )),
        }
    }
}

impl fmt::Display for WriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Append => "append",
            Self::Replace => "replace",
        })
    }
}

/// One immutable Parquet data file of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    pub object: ObjectRef,
    pub size_bytes: u64,
    pub row_count: u64,
}

/// One committed version of a table: exactly the files a reader of it sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableVersion {
    pub version: u64,
    pub schema: Schema,
    pub files: Vec<DataFile>,
    pub row_count: u64,
    /// Leader-stamped commit time, ms since the epoch.
    pub committed_at_ms: i64,
    pub mode: WriteMode,
    /// The writer lease's fencing token that made this commit.
    pub fencing_token: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub metadata: TableMetadata,
    pub created_at_ms: i64,
    /// Oldest first; never empty.
    pub versions: Vec<TableVersion>,
}

impl Table {
    /// The newest version; a table is only created together with its first version.
    pub fn current(&self) -> Option<&TableVersion> {
        self.versions.last()
    }
}

/// The right to write one table, proven at commit by its fencing token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub table: String,
    pub holder: String,
    /// Strictly increasing across the whole catalog; a commit must carry the current one.
    pub token: u64,
    /// Leader-stamped expiry, ms since the epoch (etcd: the holder's estimate).
    pub expires_at_ms: i64,
    /// Who issued the lease, and so how a commit under it is fenced. Absent from
    /// leases written before etcd leases existed: the catalog's own.
    #[serde(default)]
    pub issuer: LeaseIssuer,
}

/// Where a writer lease comes from (`catalog.lease_backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseIssuer {
    /// The catalog's lease table: the commit must carry the table's live lease.
    #[default]
    Catalog,
    /// An etcd lease (its id here, for keep-alive and revoke); the token is the
    /// create revision of `lakehouse/leases/<table>`. The commit must carry a token
    /// no lower than any etcd token already committed to the table.
    Etcd { lease_id: i64 },
}

/// A named query (`CREATE VIEW`). It is planned from its SQL whenever it is read,
/// so it always sees the current versions of the tables it selects from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub name: String,
    /// The `CREATE VIEW` statement as the SQL parser normalised it.
    pub sql: String,
    /// The view's columns when it was created, so listings need not plan it.
    pub schema: Schema,
    /// Who created it.
    pub owner: String,
    /// Leader-stamped creation time, ms since the epoch.
    pub created_at_ms: i64,
}

/// Tables and views share one namespace; refusals say which one holds a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Table,
    View,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Table => "table",
            Self::View => "view",
        })
    }
}

/// A new version to commit under a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableCommit {
    pub table: String,
    pub mode: WriteMode,
    pub schema: Schema,
    /// Files written for this commit (appended to or replacing the previous ones).
    pub new_files: Vec<DataFile>,
    /// Required when the table is created; replaces the metadata when given later.
    pub metadata: Option<TableMetadata>,
}

/// How an index shard stores its vectors (ADR-019).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardBackend {
    /// Parquet `doc_id, chunk_text, vector, content_hash` with an HNSW sidecar next to it.
    Hnsw,
    /// A Lance dataset with an IVF index.
    Lance,
}

impl fmt::Display for ShardBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hnsw => "hnsw",
            Self::Lance => "lance",
        })
    }
}

/// One shard of an index version: the output of one embed task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexShard {
    /// The Parquet file of chunks and vectors, or the Lance dataset's directory.
    pub data: ObjectRef,
    /// The HNSW sidecar (`hnsw` shards only).
    pub graph: Option<ObjectRef>,
    pub backend: ShardBackend,
    pub chunks: u64,
}

/// Where an index version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexStatus {
    /// Its jobs are running (or died with the process that ran them).
    Building,
    /// Searchable.
    Ready,
    /// A job failed; `IndexVersion::error` says why.
    Failed,
}

impl fmt::Display for IndexStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Building => "building",
            Self::Ready => "ready",
            Self::Failed => "failed",
        })
    }
}

/// How source text is cut into chunks before it is embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunking {
    /// Characters per chunk.
    pub chunk_size: u32,
    /// Characters a chunk repeats from the one before it.
    pub overlap: u32,
}

/// HNSW graph parameters of an index version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    pub m: u32,
    pub ef_construction: u32,
    pub ef_search: u32,
}

/// One build of a vector index (ADR-014): what produced its vectors, from which
/// data, and where its shards are. Versions are immutable once ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexVersion {
    /// Assigned by the catalog, from 1.
    pub version: u64,
    /// The `[embedding]` profile that embedded it; queries are embedded with the same model.
    pub profile: String,
    pub model: String,
    pub model_version: String,
    pub dims: u32,
    pub source_table: String,
    pub source_column: String,
    /// The source column whose value is each chunk's `doc_id`; none: the row's ordinal.
    pub key_column: Option<String>,
    /// The table version the chunks were read from.
    pub source_table_version: u64,
    pub chunking: Chunking,
    pub hnsw: HnswParams,
    pub shards: Vec<IndexShard>,
    pub status: IndexStatus,
    /// Why the build failed (`failed` only).
    pub error: Option<String>,
    /// Chunks this build ran through the model; the rest were reused by content hash.
    pub chunks_embedded: u64,
    /// Leader-stamped creation time, ms since the epoch.
    pub created_at_ms: i64,
}

/// A named vector index and its versions; at most one is active (searched by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorIndex {
    pub name: String,
    /// Oldest first.
    pub versions: Vec<IndexVersion>,
    pub active: Option<u64>,
    /// The number the next version gets; versions are never reused, even after a drop.
    pub next_version: u64,
}

impl VectorIndex {
    pub fn version(&self, version: u64) -> Option<&IndexVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn active_version(&self) -> Option<&IndexVersion> {
        self.active.and_then(|v| self.version(v))
    }
}

/// The whole replicated catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogState {
    pub tables: BTreeMap<String, Table>,
    /// Absent from states written before views existed.
    #[serde(default)]
    pub views: BTreeMap<String, View>,
    pub leases: BTreeMap<String, Lease>,
    /// SELECT grants made with GRANT / REVOKE: role (`*`: every role) → tables
    /// (`*`: every table). Absent from states written before grants were kept here.
    #[serde(default)]
    pub grants: BTreeMap<String, BTreeSet<String>>,
    /// Vector indexes by name. Absent from states written before indexes existed.
    #[serde(default)]
    pub indexes: BTreeMap<String, VectorIndex>,
    /// Last fencing token handed out.
    pub last_token: u64,
    /// Per table, the highest etcd fencing token a commit or drop carried: a lower
    /// one comes from a writer whose etcd lease was taken over, and is refused.
    /// Absent from states written before etcd leases existed.
    #[serde(default)]
    pub etcd_fences: BTreeMap<String, u64>,
    /// Bumped by every applied change; names the manifest written for it.
    pub catalog_version: u64,
}
