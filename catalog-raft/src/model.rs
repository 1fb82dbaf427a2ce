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
    /// Leader-stamped expiry, ms since the epoch.
    pub expires_at_ms: i64,
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
    /// Last fencing token handed out.
    pub last_token: u64,
    /// Bumped by every applied change; names the manifest written for it.
    pub catalog_version: u64,
}
