//! The catalog API other crates use: one-node openraft over the redb log, with
//! every change mirrored to a manifest in the bucket.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lakehouse_common::config::{CatalogConfig, LeaseBackend};
use lakehouse_common::names::validate_identifier;
use lakehouse_common::{Bucket, Clock};
use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{Raft, SnapshotPolicy};
use serde::Serialize;
use tokio::time::Instant;

use crate::error::{Error, Refusal, Result};
use crate::lease::{self, EtcdLeases, LEASE_POLL};
use crate::model::{
    CatalogState, IndexShard, IndexVersion, Lease, Table, TableCommit, TableMetadata, TableVersion,
    VectorIndex, View, WriteMode,
};
use crate::network::NetworkFactory;
use crate::request::{NodeId, Request, Response, TypeConfig};
use crate::store::{self, LogStore, Shared, StateMachineStore};
use crate::{gc, manifest};

/// The catalog on a node with its own Raft log (`up`, `lakehouse catalog`);
/// cheap to clone. Other crates reach it through [`crate::Catalog`].
#[derive(Clone)]
pub(crate) struct Local {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft<TypeConfig>,
    node_id: NodeId,
    shared: Arc<Shared>,
    bucket: Bucket,
    clock: Arc<dyn Clock>,
    config: CatalogConfig,
    /// Writer leases in etcd (`catalog.lease_backend = "etcd"`): handed to the
    /// handle, and read by garbage collection, which must spare their tables.
    etcd: Option<EtcdLeases>,
    /// The newest catalog version whose manifest is in the bucket. Held while a
    /// manifest is written, so manifests land in version order.
    manifest_written: tokio::sync::Mutex<u64>,
}

/// A snapshot of the catalog node's Raft state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogMetrics {
    pub node_id: u64,
    pub current_term: u64,
    pub leader_id: Option<u64>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Last log index covered by the local snapshot.
    pub snapshot_index: Option<u64>,
    pub catalog_version: u64,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("node_id", &self.inner.node_id)
            .field("bucket", &self.inner.bucket.name())
            .finish_non_exhaustive()
    }
}

fn raft_config(c: &CatalogConfig) -> Result<Arc<openraft::Config>> {
    let config = openraft::Config {
        cluster_name: "lakehouse-catalog".to_string(),
        heartbeat_interval: c.heartbeat_interval_ms,
        election_timeout_min: c.election_timeout_min_ms,
        election_timeout_max: c.election_timeout_max_ms,
        // openraft's 200 ms default is too short to ship a real catalog snapshot.
        install_snapshot_timeout: 60_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every_entries.max(1)),
        // One snapshot interval of log stays behind the snapshot, so a follower that
        // was briefly down catches up from the log instead of a whole snapshot.
        max_in_snapshot_log_to_keep: c.snapshot_every_entries,
        ..Default::default()
    };
    let config = config
        .validate()
        .map_err(|e| Error::InvalidRequest(format!("catalog settings: {e}")))?;
    Ok(Arc::new(config))
}

pub(crate) fn fatal(e: Fatal<NodeId>) -> Error {
    match e {
        Fatal::Stopped => Error::ShutDown,
        Fatal::StorageError(e) => Error::Raft(format!("local log storage failed: {e}")),
        Fatal::Panicked => Error::Raft("the Raft core task panicked".to_string()),
    }
}

/// Maps a refused log write (entries and membership changes alike).
pub(crate) fn client_write_error(
    e: RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>,
) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Error::InvalidRequest(format!("membership change refused: {e}"))
        }
        RaftError::Fatal(e) => fatal(e),
    }
}

fn unexpected(what: &str, response: Response) -> Error {
    Error::Internal(format!(
        "{what}: unexpected state machine response {response:?}"
    ))
}

impl Local {
    /// Opens (or creates) the local Raft log under `dir`, starts a one-node Raft
    /// and initializes it when new. When the bucket holds a manifest newer than the
    /// local state (e.g. the local directory was wiped), restores it through the log
    /// as a `Restore` entry. Then removes unreferenced data files.
    #[tracing::instrument(skip_all, fields(node_id = config.node_id, dir = %dir.display()))]
    pub(crate) async fn open(
        config: &CatalogConfig,
        dir: &Path,
        bucket: Bucket,
        clock: Arc<dyn Clock>,
    ) -> Result<Local> {
        let catalog = Local::build(config, dir, bucket, clock).await?;
        match catalog.start().await {
            Ok(()) => Ok(catalog),
            Err(e) => {
                // Release the local log file so a retry in this process can open it.
                if let Err(shutdown) = catalog.shutdown().await {
                    tracing::warn!(error = %shutdown, "shutting down after a failed start");
                }
                Err(e)
            }
        }
    }

    /// Opens the local Raft log under `dir` and starts Raft with the gRPC
    /// network, without initializing a cluster or waiting for a leader.
    pub(crate) async fn build(
        config: &CatalogConfig,
        dir: &Path,
        bucket: Bucket,
        clock: Arc<dyn Clock>,
    ) -> Result<Local> {
        let db = store::open_database(dir).await?;
        let state_machine = StateMachineStore::new(Arc::clone(&db), dir)?;
        let shared = state_machine.shared();
        let network = NetworkFactory::new(
            config.node_id,
            Duration::from_millis(config.connect_timeout_ms),
        );
        let raft = Raft::new(
            config.node_id,
            raft_config(config)?,
            network,
            LogStore::new(db),
            state_machine,
        )
        .await
        .map_err(fatal)?;
        let etcd = match config.lease_backend {
            LeaseBackend::Etcd => Some(EtcdLeases::connect(config).await?),
            LeaseBackend::Raft => None,
        };
        Ok(Local {
            inner: Arc::new(Inner {
                raft,
                node_id: config.node_id,
                shared,
                bucket,
                clock,
                config: config.clone(),
                etcd,
                manifest_written: tokio::sync::Mutex::new(0),
            }),
        })
    }

    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    pub(crate) fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    pub(crate) fn config(&self) -> &CatalogConfig {
        &self.inner.config
    }

    pub(crate) fn etcd_leases(&self) -> Option<&EtcdLeases> {
        self.inner.etcd.as_ref()
    }

    async fn start(&self) -> Result<()> {
        let raft = &self.inner.raft;
        let node_id = self.inner.node_id;
        if !raft.is_initialized().await.map_err(fatal)? {
            tracing::info!(node_id, "initializing a new one-node catalog");
            match raft.initialize(BTreeSet::from([node_id])).await {
                Ok(()) => {}
                // Another start got there first: the goal is reached.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(RaftError::APIError(e @ InitializeError::NotInMembers(_))) => {
                    return Err(Error::Raft(e.to_string()))
                }
                Err(RaftError::Fatal(e)) => return Err(fatal(e)),
            }
        }
        self.lead("catalog start").await?;
        let latest = manifest::read_latest(&self.inner.bucket).await?;
        self.reconcile_with(latest).await?;
        match self.collect_garbage().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed unreferenced data files"),
            // Garbage only costs space: start anyway.
            Err(e) => tracing::warn!(error = %e, "garbage collection at start failed"),
        }
        Ok(())
    }

    /// Waits until this node leads and has applied everything committed before.
    /// Run by a node that starts a catalog on its own (a one-node catalog, or
    /// the seed of a new cluster) before it reconciles with the bucket.
    pub(crate) async fn lead(&self, what: &'static str) -> Result<()> {
        let node_id = self.inner.node_id;
        let patience =
            Duration::from_millis(self.inner.config.election_timeout_max_ms.saturating_mul(20))
                .max(Duration::from_secs(10));
        self.inner
            .raft
            .wait(Some(patience))
            .current_leader(node_id, what)
            .await
            .map_err(|e| {
                Error::Raft(format!(
                    "catalog node {node_id} did not become leader within {} s ({e}); \
                     is the local log from another cluster?",
                    patience.as_secs()
                ))
            })?;
        self.ensure_applied().await
    }

    /// Waits until everything committed before the call is applied here (a
    /// linearizable read point); only the leader can tell.
    pub(crate) async fn ensure_applied(&self) -> Result<()> {
        match self.inner.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(Error::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(e @ CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(Error::Raft(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// The bucket is the source of truth: its newest manifest (`latest`), when
    /// newer, replaces the local state (an empty log's is version 0); a newer
    /// local state (its manifest write failed) is written out. Only the leader can.
    pub(crate) async fn reconcile_with(&self, latest: Option<CatalogState>) -> Result<()> {
        let local = self.state_version();
        let mut written = self.inner.manifest_written.lock().await;
        match latest {
            Some(restored) if restored.catalog_version > local => {
                let version = restored.catalog_version;
                if local == 0 {
                    tracing::info!(
                        catalog_version = version,
                        "restoring the catalog from the bucket's manifest"
                    );
                } else {
                    tracing::warn!(
                        local_version = local,
                        catalog_version = version,
                        "the bucket holds a newer catalog than the local log; restoring the bucket's"
                    );
                }
                match self.write(Request::Restore(restored)).await? {
                    Response::Done => {}
                    other @ (Response::Lease(_)
                    | Response::Version(_)
                    | Response::Table(_)
                    | Response::IndexVersion(_)
                    | Response::Refused(_)) => return Err(unexpected("restore", other)),
                }
                *written = version;
            }
            Some(found) => *written = found.catalog_version,
            None => {}
        }
        drop(written);
        if self.state_version() > 0 {
            self.publish().await?;
        }
        Ok(())
    }

    fn state_version(&self) -> u64 {
        self.inner.shared.read().catalog.catalog_version
    }

    pub(crate) fn read_state<R>(&self, f: impl FnOnce(&CatalogState) -> R) -> R {
        f(&self.inner.shared.read().catalog)
    }

    /// Changes after every applied batch (to the catalog version after it).
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.shared.subscribe()
    }

    async fn write(&self, request: Request) -> Result<Response> {
        self.inner
            .raft
            .client_write(request)
            .await
            .map(|response| response.data)
            .map_err(client_write_error)
    }

    /// Writes the manifest of the current state unless the bucket has it already.
    async fn publish(&self) -> Result<()> {
        let mut written = self.inner.manifest_written.lock().await;
        let state = self.inner.shared.read().catalog.clone();
        let version = state.catalog_version;
        if version <= *written {
            return Ok(());
        }
        let key = manifest::write(&self.inner.bucket, &state)
            .await
            .map_err(|e| Error::ManifestNotWritten {
                catalog_version: version,
                source: Box::new(e),
            })?;
        *written = version;
        tracing::debug!(key, catalog_version = version, "wrote catalog manifest");
        match manifest::prune(&self.inner.bucket, self.inner.config.manifests_retained).await {
            Ok(_) => {}
            // Old manifests only cost space; the next write prunes again.
            Err(e) => tracing::warn!(error = %e, "pruning old catalog manifests failed"),
        }
        Ok(())
    }

    /// Lease changes are short-lived: the manifest is written when possible, and a
    /// failure does not undo the lease (the next change writes it).
    async fn publish_lease_change(&self) {
        if let Err(e) = self.publish().await {
            tracing::warn!(error = %e, "catalog manifest after a lease change not written");
        }
    }

    /// Takes the table's writer lease for `holder`. While another live lease holds
    /// it, waits up to `lease_wait_ms`, then fails with [`Error::LeaseHeld`].
    #[tracing::instrument(skip_all, fields(table = %table, holder = %holder, token))]
    pub(crate) async fn acquire_lease(&self, table: &str, holder: &str) -> Result<Lease> {
        lease::check_request(table, holder)?;
        // Lease expiry is judged by the injected clock, which may move without
        // any catalog change to wake us: hence the polls below.
        let deadline = Instant::now() + Duration::from_millis(self.inner.config.lease_wait_ms);
        let mut changes = self.inner.shared.subscribe();
        loop {
            let now_ms = self.inner.clock.now_ms();
            // Look before writing: a refused acquire still costs a log entry.
            let held = self.read_state(|s| {
                s.leases
                    .get(table)
                    .filter(|l| l.expires_at_ms > now_ms)
                    .cloned()
            });
            let refusal = match held {
                Some(lease) => Refusal::LeaseHeld {
                    table: table.to_string(),
                    holder: lease.holder,
                    token: lease.token,
                    expires_in_ms: lease.expires_at_ms - now_ms,
                },
                None => {
                    let request = Request::AcquireLease {
                        table: table.to_string(),
                        holder: holder.to_string(),
                        ttl_ms: self.inner.config.lease_ttl_ms,
                        now_ms,
                    };
                    match self.write(request).await? {
                        Response::Lease(lease) => {
                            tracing::Span::current().record("token", lease.token);
                            tracing::debug!("writer lease taken");
                            self.publish_lease_change().await;
                            return Ok(lease);
                        }
                        Response::Refused(refusal @ Refusal::LeaseHeld { .. }) => refusal,
                        Response::Refused(
                            refusal @ (Refusal::StaleToken { .. }
                            | Refusal::LeaseExpired { .. }
                            | Refusal::TableExists { .. }
                            | Refusal::TableNotFound { .. }
                            | Refusal::SchemaMismatch { .. }
                            | Refusal::MissingMetadata { .. }
                            | Refusal::ViewExists { .. }
                            | Refusal::ViewNotFound { .. }
                            | Refusal::NameTaken { .. }
                            | Refusal::IndexNotFound { .. }
                            | Refusal::IndexVersionNotFound { .. }
                            | Refusal::IndexVersionNotReady { .. }
                            | Refusal::IndexVersionNotBuilding { .. }),
                        ) => return Err(refusal.into()),
                        other @ (Response::Done
                        | Response::Version(_)
                        | Response::Table(_)
                        | Response::IndexVersion(_)) => {
                            return Err(unexpected("acquire lease", other))
                        }
                    }
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(refusal.into());
            }
            let expires_in = match &refusal {
                Refusal::LeaseHeld { expires_in_ms, .. } => {
                    Duration::from_millis(u64::try_from(*expires_in_ms).unwrap_or(0).max(1))
                }
                Refusal::StaleToken { .. }
                | Refusal::LeaseExpired { .. }
                | Refusal::TableExists { .. }
                | Refusal::TableNotFound { .. }
                | Refusal::SchemaMismatch { .. }
                | Refusal::MissingMetadata { .. }
                | Refusal::ViewExists { .. }
                | Refusal::ViewNotFound { .. }
                | Refusal::NameTaken { .. }
                | Refusal::IndexNotFound { .. }
                | Refusal::IndexVersionNotFound { .. }
                | Refusal::IndexVersionNotReady { .. }
                | Refusal::IndexVersionNotBuilding { .. } => LEASE_POLL,
            };
            // Wake on any catalog change (a release), at the lease's expiry, or to re-check the clock.
            let wait = remaining.min(expires_in).min(LEASE_POLL);
            if let Ok(Err(_)) = tokio::time::timeout(wait, changes.changed()).await {
                return Err(Error::ShutDown);
            }
        }
    }

    /// Extends a live lease by the configured TTL.
    #[tracing::instrument(skip_all, fields(table = %lease.table, token = lease.token))]
    pub(crate) async fn renew_lease(&self, lease: &Lease) -> Result<Lease> {
        let request = Request::RenewLease {
            table: lease.table.clone(),
            token: lease.token,
            ttl_ms: self.inner.config.lease_ttl_ms,
            now_ms: self.inner.clock.now_ms(),
        };
        match self.write(request).await? {
            Response::Lease(renewed) => {
                self.publish_lease_change().await;
                Ok(renewed)
            }
            Response::Refused(refusal) => Err(refusal.into()),
            other @ (Response::Done
            | Response::Version(_)
            | Response::Table(_)
            | Response::IndexVersion(_)) => Err(unexpected("renew lease", other)),
        }
    }

    /// Gives the lease up. Releasing a lease that was already taken over is a no-op.
    #[tracing::instrument(skip_all, fields(table = %lease.table, token = lease.token))]
    pub(crate) async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let request = Request::ReleaseLease {
            table: lease.table.clone(),
            token: lease.token,
        };
        match self.write(request).await? {
            Response::Done => {
                self.publish_lease_change().await;
                Ok(())
            }
            Response::Refused(refusal) => Err(refusal.into()),
            other @ (Response::Lease(_)
            | Response::Version(_)
            | Response::Table(_)
            | Response::IndexVersion(_)) => Err(unexpected("release lease", other)),
        }
    }

    /// Commits a new table version under `lease`; returns once the manifest for the
    /// resulting catalog state is in the bucket.
    #[tracing::instrument(skip_all, fields(table = %commit.table, token = lease.token, mode = %commit.mode))]
    pub(crate) async fn commit(&self, lease: &Lease, commit: TableCommit) -> Result<TableVersion> {
        validate_identifier("table name", &commit.table)?;
        if commit.table != lease.table {
            return Err(Error::InvalidRequest(format!(
                "the lease (token {}) is for table `{}` but the commit is for table `{}`",
                lease.token, lease.table, commit.table
            )));
        }
        if commit.mode == WriteMode::Create && commit.metadata.is_none() {
            return Err(Error::MissingMetadata {
                table: commit.table,
            });
        }
        let request = Request::Commit {
            token: lease.token,
            commit,
            now_ms: self.inner.clock.now_ms(),
            issuer: lease.issuer,
        };
        match self.write(request).await? {
            Response::Version(version) => {
                tracing::info!(
                    version = version.version,
                    files = version.files.len(),
                    "committed table version"
                );
                self.publish().await?;
                Ok(version)
            }
            Response::Refused(refusal) => Err(refusal.into()),
            other @ (Response::Done
            | Response::Lease(_)
            | Response::Table(_)
            | Response::IndexVersion(_)) => Err(unexpected("commit", other)),
        }
    }

    /// Drops the lease's table (all versions). Its files become garbage.
    #[tracing::instrument(skip_all, fields(table = %lease.table, token = lease.token))]
    pub(crate) async fn drop_table(&self, lease: &Lease) -> Result<()> {
        let request = Request::DropTable {
            table: lease.table.clone(),
            token: lease.token,
            now_ms: self.inner.clock.now_ms(),
            issuer: lease.issuer,
        };
        match self.write(request).await? {
            Response::Done => {
                tracing::info!("dropped table");
                self.publish().await
            }
            Response::Refused(refusal) => Err(refusal.into()),
            other @ (Response::Lease(_)
            | Response::Version(_)
            | Response::Table(_)
            | Response::IndexVersion(_)) => Err(unexpected("drop table", other)),
        }
    }

    /// Replaces a table's metadata.
    #[tracing::instrument(skip_all, fields(table = %table))]
    pub(crate) async fn update_metadata(
        &self,
        table: &str,
        metadata: TableMetadata,
    ) -> Result<Table> {
        let request = Request::UpdateMetadata {
            table: table.to_string(),
            metadata,
        };
        match self.write(request).await? {
            Response::Table(updated) => {
                self.publish().await?;
                Ok(updated)
            }
            Response::Refused(refusal) => Err(refusal.into()),
            other @ (Response::Done
            | Response::Lease(_)
            | Response::Version(_)
            | Response::IndexVersion(_)) => Err(unexpected("update metadata", other)),
        }
    }

    /// Records `view` (name already validated by the caller's planner); with
    /// `replace`, an existing view of that name is replaced. Views hold no data,
    /// so no writer lease is involved: the state machine keeps table and view
    /// names apart.
    #[tracing::instrument(skip_all, fields(view = %view.name, replace))]
    pub(crate) async fn create_view(&self, view: View, replace: bool) -> Result<()> {
        validate_identifier("view name", &view.name)?;
        let request = Request::CreateView {
            view,
            replace,
            now_ms: self.inner.clock.now_ms(),
        };
        self.write_done("create view", request).await
    }

    #[tracing::instrument(skip_all, fields(view = %name))]
    pub(crate) async fn drop_view(&self, name: &str) -> Result<()> {
        let request = Request::DropView {
            name: name.to_string(),
        };
        self.write_done("drop view", request).await
    }

    /// GRANT (`granted`) or REVOKE SELECT on `table` to `role`, kept in the
    /// replicated catalog so grants outlive restarts.
    #[tracing::instrument(skip_all, fields(%role, %table, granted))]
    pub(crate) async fn set_grant(&self, role: &str, table: &str, granted: bool) -> Result<()> {
        let request = Request::SetGrant {
            role: role.to_string(),
            table: table.to_string(),
            granted,
        };
        self.write_done("change a grant", request).await
    }

    /// The grants of the applied state: role → tables.
    pub(crate) fn grants(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
        self.read_state(|s| s.grants.clone())
    }

    /// Writes a request whose success is `Done`, then the manifest.
    async fn write_done(&self, what: &str, request: Request) -> Result<()> {
        match self.write(request).await? {
            Response::Done => self.publish().await,
            Response::Refused(refusal) => Err(refusal.into()),
            other @ (Response::Lease(_)
            | Response::Version(_)
            | Response::Table(_)
            | Response::IndexVersion(_)) => Err(unexpected(what, other)),
        }
    }

    /// Starts a new version of vector index `name` (created if new): the catalog
    /// numbers it and records it as building. Its source table must exist.
    #[tracing::instrument(skip_all, fields(index = %name, source_table = %version.source_table, version))]
    pub(crate) async fn create_index_version(
        &self,
        name: &str,
        version: IndexVersion,
    ) -> Result<IndexVersion> {
        validate_identifier("index name", name)?;
        let request = Request::CreateIndexVersion {
            name: name.to_string(),
            version,
            now_ms: self.inner.clock.now_ms(),
        };
        let created = self
            .write_index_version("create index version", request)
            .await?;
        tracing::Span::current().record("version", created.version);
        tracing::info!("index version building");
        Ok(created)
    }

    /// Ends a building version: ready with `shards` when `error` is none, else failed.
    #[tracing::instrument(skip_all, fields(index = %name, version, shards = shards.len(), failed = error.is_some()))]
    pub(crate) async fn finish_index_version(
        &self,
        name: &str,
        version: u64,
        shards: Vec<IndexShard>,
        chunks_embedded: u64,
        error: Option<String>,
    ) -> Result<IndexVersion> {
        let request = Request::FinishIndexVersion {
            name: name.to_string(),
            version,
            shards,
            chunks_embedded,
            error,
        };
        let finished = self
            .write_index_version("finish index version", request)
            .await?;
        tracing::info!(status = %finished.status, "index version finished");
        Ok(finished)
    }

    #[tracing::instrument(skip_all, fields(index = %name, version))]
    pub(crate) async fn activate_index_version(&self, name: &str, version: u64) -> Result<()> {
        let request = Request::ActivateIndexVersion {
            name: name.to_string(),
            version,
        };
        self.write_done("activate index version", request).await
    }

    #[tracing::instrument(skip_all, fields(index = %name, version))]
    pub(crate) async fn drop_index(&self, name: &str, version: Option<u64>) -> Result<()> {
        let request = Request::DropIndex {
            name: name.to_string(),
            version,
        };
        self.write_done("drop index", request).await
    }

    /// Writes a request whose success is an index version, then the manifest.
    async fn write_index_version(&self, what: &str, request: Request) -> Result<IndexVersion> {
        match self.write(request).await? {
            Response::IndexVersion(version) => {
                self.publish().await?;
                Ok(version)
            }
            Response::Refused(refusal) => Err(refusal.into()),
            other @ (Response::Done
            | Response::Lease(_)
            | Response::Version(_)
            | Response::Table(_)) => Err(unexpected(what, other)),
        }
    }

    /// All vector indexes of the applied state, sorted by name.
    pub(crate) fn indexes(&self) -> Vec<VectorIndex> {
        self.read_state(|s| s.indexes.values().cloned().collect())
    }

    pub(crate) fn index(&self, name: &str) -> Option<VectorIndex> {
        self.read_state(|s| s.indexes.get(name).cloned())
    }

    /// All views of the applied state, sorted by name.
    pub(crate) fn views(&self) -> Vec<View> {
        self.read_state(|s| s.views.values().cloned().collect())
    }

    pub(crate) fn view(&self, name: &str) -> Option<View> {
        self.read_state(|s| s.views.get(name).cloned())
    }

    /// All tables of the applied state, sorted by name.
    pub(crate) fn tables(&self) -> Vec<Table> {
        self.read_state(|s| s.tables.values().cloned().collect())
    }

    pub(crate) fn table(&self, name: &str) -> Option<Table> {
        self.read_state(|s| s.tables.get(name).cloned())
    }

    pub(crate) fn bucket(&self) -> &Bucket {
        &self.inner.bucket
    }

    /// Deletes objects under `tables/` that no version of any table references,
    /// skipping tables whose writer lease is live, and the files of dropped
    /// index versions under `indexes/` (see `gc`). Returns how many were removed.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn collect_garbage(&self) -> Result<usize> {
        gc::collect_garbage(
            &self.inner.bucket,
            &self.inner.shared,
            self.inner.clock.as_ref(),
            self.inner.etcd.as_ref(),
        )
        .await
    }

    /// Stops Raft and releases the local log. Other clones of this handle fail
    /// with [`Error::ShutDown`] afterwards.
    pub(crate) async fn shutdown(&self) -> Result<()> {
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| Error::Raft(format!("shutting down: {e}")))
    }

    pub(crate) fn metrics(&self) -> CatalogMetrics {
        let m = self.inner.raft.metrics().borrow().clone();
        CatalogMetrics {
            node_id: self.inner.node_id,
            current_term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            catalog_version: self.state_version(),
        }
    }
}
