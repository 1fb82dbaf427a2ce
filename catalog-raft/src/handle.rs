//! [`Catalog`], the handle other crates use, over either backend: a node's
//! own Raft log ([`Local`]: `up`, `lakehouse catalog`) or a catalog cluster
//! reached over gRPC ([`Remote`]: `lakehouse gateway`). The call sites do not
//! see which.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use lakehouse_common::config::{CatalogConfig, LeaseBackend};
use lakehouse_common::{Bucket, Clock};

use crate::catalog::{CatalogMetrics, Local};
use crate::error::Result;
use crate::lease::{EtcdLeases, WriterLeases};
use crate::model::{
    IndexShard, IndexVersion, Lease, Table, TableCommit, TableMetadata, TableVersion, VectorIndex,
    View,
};
use crate::remote::Remote;

/// A handle to the catalog; cheap to clone.
#[derive(Clone, Debug)]
pub struct Catalog {
    backend: Backend,
    /// Where writer leases come from (`catalog.lease_backend`): `backend` itself,
    /// or etcd. Commits go to `backend` either way.
    leases: Arc<dyn WriterLeases>,
}

#[derive(Clone, Debug)]
enum Backend {
    Local(Local),
    Remote(Arc<Remote>),
}

impl From<Local> for Catalog {
    fn from(local: Local) -> Self {
        let backend = Backend::Local(local.clone());
        let leases: Arc<dyn WriterLeases> = match local.etcd_leases() {
            Some(etcd) => Arc::new(etcd.clone()),
            None => Arc::new(backend.clone()),
        };
        Self { backend, leases }
    }
}

/// Calls the same method on whichever backend the handle has.
macro_rules! dispatch {
    ($self:ident, $backend:ident => $call:expr) => {
        on_backend!(&$self.backend, $backend => $call)
    };
}

macro_rules! on_backend {
    ($on:expr, $backend:ident => $call:expr) => {
        match $on {
            Backend::Local($backend) => $call,
            Backend::Remote($backend) => $call,
        }
    };
}

/// Leases in the replicated catalog. Nothing to confirm before a commit: the
/// state machine checks the table's live lease atomically with the commit.
#[async_trait]
impl WriterLeases for Backend {
    async fn acquire(&self, table: &str, holder: &str) -> Result<Lease> {
        on_backend!(self, b => b.acquire_lease(table, holder).await)
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease> {
        on_backend!(self, b => b.renew_lease(lease).await)
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        on_backend!(self, b => b.release_lease(lease).await)
    }

    async fn confirm(&self, _lease: &Lease) -> Result<()> {
        Ok(())
    }
}

impl Catalog {
    /// Opens (or creates) the local Raft log under `dir`, starts a one-node Raft
    /// and initializes it when new. When the bucket holds a manifest newer than the
    /// local state (e.g. the local directory was wiped), restores it through the log
    /// as a `Restore` entry. Then removes unreferenced data files.
    pub async fn open(
        config: &CatalogConfig,
        dir: &Path,
        bucket: Bucket,
        clock: Arc<dyn Clock>,
    ) -> Result<Catalog> {
        Ok(Local::open(config, dir, bucket, clock).await?.into())
    }

    /// A handle on a catalog cluster at `endpoints` (any of its nodes, as
    /// host:port) with no local log: changes go to the leader (a follower
    /// forwards them), reads come from a copy of the state that a node keeps
    /// current over `Watch`. A change made through this handle is in its copy
    /// when the call returns. Fails when no node answers within 10 s.
    pub async fn connect(
        endpoints: &[String],
        bucket: Bucket,
        config: &CatalogConfig,
    ) -> Result<Catalog> {
        let backend = Backend::Remote(Arc::new(Remote::connect(endpoints, bucket, config).await?));
        let leases: Arc<dyn WriterLeases> = match config.lease_backend {
            LeaseBackend::Etcd => Arc::new(EtcdLeases::connect(config).await?),
            LeaseBackend::Raft => Arc::new(backend.clone()),
        };
        Ok(Self { backend, leases })
    }

    /// Takes the table's writer lease for `holder` from the configured lease
    /// backend. While another live lease holds it, waits up to `lease_wait_ms`,
    /// then fails with [`crate::Error::LeaseHeld`]. (Remote catalog with the raft
    /// backend: the leader waits, with its `lease_wait_ms`.)
    pub async fn acquire_lease(&self, table: &str, holder: &str) -> Result<Lease> {
        self.leases.acquire(table, holder).await
    }

    /// Extends a live lease by the configured TTL.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<Lease> {
        self.leases.renew(lease).await
    }

    /// Gives the lease up. Releasing a lease that was already taken over is a no-op.
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.leases.release(lease).await
    }

    /// Commits a new table version under `lease`; returns once the manifest for the
    /// resulting catalog state is in the bucket. A lease that was lost (a writer
    /// stalled past its TTL and another took the table) is refused with
    /// [`crate::Error::StaleToken`], whichever backend issued it.
    pub async fn commit(&self, lease: &Lease, commit: TableCommit) -> Result<TableVersion> {
        self.leases.confirm(lease).await?;
        dispatch!(self, b => b.commit(lease, commit).await)
    }

    /// Drops the lease's table (all versions). Its files become garbage.
    pub async fn drop_table(&self, lease: &Lease) -> Result<()> {
        self.leases.confirm(lease).await?;
        dispatch!(self, b => b.drop_table(lease).await)
    }

    /// Replaces a table's metadata.
    pub async fn update_metadata(&self, table: &str, metadata: TableMetadata) -> Result<Table> {
        dispatch!(self, b => b.update_metadata(table, metadata).await)
    }

    /// Records `view` (name already validated by the caller's planner); with
    /// `replace`, an existing view of that name is replaced.
    pub async fn create_view(&self, view: View, replace: bool) -> Result<()> {
        dispatch!(self, b => b.create_view(view, replace).await)
    }

    pub async fn drop_view(&self, name: &str) -> Result<()> {
        dispatch!(self, b => b.drop_view(name).await)
    }

    /// GRANT (`granted`) or REVOKE SELECT on `table` to `role`, kept in the
    /// replicated catalog so grants outlive restarts.
    pub async fn set_grant(&self, role: &str, table: &str, granted: bool) -> Result<()> {
        dispatch!(self, b => b.set_grant(role, table, granted).await)
    }

    /// The grants of the applied state: role → tables.
    pub fn grants(&self) -> BTreeMap<String, BTreeSet<String>> {
        dispatch!(self, b => b.grants())
    }

    /// All views of the applied state, sorted by name.
    pub fn views(&self) -> Vec<View> {
        dispatch!(self, b => b.views())
    }

    pub fn view(&self, name: &str) -> Option<View> {
        dispatch!(self, b => b.view(name))
    }

    /// All tables of the applied state, sorted by name.
    pub fn tables(&self) -> Vec<Table> {
        dispatch!(self, b => b.tables())
    }

    pub fn table(&self, name: &str) -> Option<Table> {
        dispatch!(self, b => b.table(name))
    }

    /// Starts a new version of vector index `name` (the index is created with
    /// its first version): the catalog numbers it from 1, never reusing a number
    /// within the index, and records it as building from now. `version` is the
    /// recipe (profile, model, source table and column, chunking, HNSW settings);
    /// its number, status, error, shards, chunk count and creation time are set
    /// here. Fails with [`crate::Error::TableNotFound`] when the source table does not exist.
    pub async fn create_index_version(
        &self,
        name: &str,
        version: IndexVersion,
    ) -> Result<IndexVersion> {
        dispatch!(self, b => b.create_index_version(name, version).await)
    }

    /// Ends a building version: ready with `shards` when `error` is none (and
    /// active, when the index had no active version), failed with `error`
    /// otherwise. Fails with [`crate::Error::IndexVersionNotBuilding`] when it
    /// was finished already.
    pub async fn finish_index_version(
        &self,
        name: &str,
        version: u64,
        shards: Vec<IndexShard>,
        chunks_embedded: u64,
        error: Option<String>,
    ) -> Result<IndexVersion> {
        dispatch!(self, b => b.finish_index_version(name, version, shards, chunks_embedded, error).await)
    }

    /// Makes a ready version the one searched by default.
    pub async fn activate_index_version(&self, name: &str, version: u64) -> Result<()> {
        dispatch!(self, b => b.activate_index_version(name, version).await)
    }

    /// Drops one version of an index, or the whole index with `None`. Dropping
    /// the active version activates the newest remaining ready one (or none);
    /// dropping the last version drops the index. The dropped versions' files
    /// under `indexes/<name>/v<k>/` become garbage.
    pub async fn drop_index(&self, name: &str, version: Option<u64>) -> Result<()> {
        dispatch!(self, b => b.drop_index(name, version).await)
    }

    /// All vector indexes of the applied state, sorted by name.
    pub fn indexes(&self) -> Vec<VectorIndex> {
        dispatch!(self, b => b.indexes())
    }

    pub fn index(&self, name: &str) -> Option<VectorIndex> {
        dispatch!(self, b => b.index(name))
    }

    pub fn bucket(&self) -> &Bucket {
        dispatch!(self, b => b.bucket())
    }

    /// Deletes objects under `tables/` that no version of any table references,
    /// skipping tables whose writer lease is live, and the files of dropped
    /// index versions under `indexes/` (see `gc`). Returns how many were removed.
    /// (Remote: carried out by the leader.)
    pub async fn collect_garbage(&self) -> Result<usize> {
        dispatch!(self, b => b.collect_garbage().await)
    }

    /// Local: stops Raft and releases the local log; other clones of this handle
    /// fail with [`crate::Error::ShutDown`] afterwards. Remote: stops following
    /// the cluster; changes fail with `ShutDown`, reads see the last state.
    pub async fn shutdown(&self) -> Result<()> {
        dispatch!(self, b => b.shutdown().await)
    }

    /// Local: the node's Raft state. Remote: only `catalog_version` (of the
    /// local copy) is known; the rest is zero or empty.
    pub fn metrics(&self) -> CatalogMetrics {
        dispatch!(self, b => b.metrics())
    }
}
