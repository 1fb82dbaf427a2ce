//! The catalog of a process without its own Raft log (`lakehouse gateway`):
//! changes go to the cluster's leader through [`CatalogClient`], reads come
//! from a copy of the state kept current by a node's `Watch` stream.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use lakehouse_common::config::CatalogConfig;
use lakehouse_common::Bucket;
use lakehouse_proto::catalog as pb;
use tokio::sync::watch;

use crate::catalog::CatalogMetrics;
use crate::client::{decode_json, CatalogClient, ClientReply, ClientRequest};
use crate::error::{Error, Result};
use crate::model::{
    CatalogState, IndexShard, IndexVersion, Lease, Table, TableCommit, TableMetadata, TableVersion,
    VectorIndex, View,
};

/// How long a change waits for the Watch stream to bring its own write before
/// the copy is refreshed with a linearizable read instead.
const CATCH_UP: Duration = Duration::from_secs(2);

/// Pause before following the cluster again after a Watch stream broke.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

pub(crate) struct Remote {
    client: CatalogClient,
    bucket: Bucket,
    /// The copy of the state; only ever replaced by a newer catalog version.
    copy: watch::Sender<Arc<CatalogState>>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("bucket", &self.bucket.name())
            .field("catalog_version", &self.copy.borrow().catalog_version)
            .finish_non_exhaustive()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // The follower task ends with the last handle.
        let _ = self.stop.send(true);
    }
}

/// Replaces the copy when `state` is newer: a node behind the one followed
/// before (after a reconnect) never takes reads back in time.
fn install(copy: &watch::Sender<Arc<CatalogState>>, state: CatalogState) {
    copy.send_if_modified(|current| {
        let newer = state.catalog_version > current.catalog_version;
        if newer {
            *current = Arc::new(state);
        }
        newer
    });
}

impl Remote {
    #[tracing::instrument(skip_all, fields(endpoints = ?endpoints))]
    pub(crate) async fn connect(
        endpoints: &[String],
        bucket: Bucket,
        config: &CatalogConfig,
    ) -> Result<Remote> {
        let client =
            CatalogClient::new(endpoints, Duration::from_millis(config.connect_timeout_ms))?;
        // Start from a linearizable read, so the first query already sees
        // everything committed before this process started.
        let (state, _) = client.state().await?;
        tracing::info!(
            catalog_version = state.catalog_version,
            "following the catalog cluster"
        );
        let (copy, _) = watch::channel(Arc::new(state));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(follow(client.clone(), copy.clone(), stopped));
        Ok(Remote {
            client,
            bucket,
            copy,
            stop,
        })
    }

    fn read<R>(&self, f: impl FnOnce(&CatalogState) -> R) -> R {
        f(&self.copy.borrow())
    }

    /// Carries out `request` on the leader, then waits until the copy holds it
    /// (read-your-writes for this process).
    async fn write(&self, request: ClientRequest) -> Result<ClientReply> {
        let stopped = *self.stop.borrow();
        if stopped {
            return Err(Error::ShutDown);
        }
        let (reply, version) = self.client.write_versioned(&request).await?;
        self.catch_up(version).await?;
        Ok(reply)
    }

    async fn catch_up(&self, version: u64) -> Result<()> {
        let mut copy = self.copy.subscribe();
        // A bool at once: the copy's read guard must not live across an await.
        let seen = matches!(
            tokio::time::timeout(
                CATCH_UP,
                copy.wait_for(|state| state.catalog_version >= version),
            )
            .await,
            Ok(Ok(_))
        );
        if seen {
            return Ok(());
        }
        // The stream is behind or reconnecting: ask the leader.
        tracing::debug!(
            catalog_version = version,
            "watch stream behind; reading the state from the leader"
        );
        let (state, _) = self.client.state().await?;
        install(&self.copy, state);
        Ok(())
    }

    async fn write_done(&self, what: &str, request: ClientRequest) -> Result<()> {
        match self.write(request).await? {
            ClientReply::Done => Ok(()),
            other => Err(unexpected(what, &other)),
        }
    }

    async fn write_lease(&self, what: &str, request: ClientRequest) -> Result<Lease> {
        match self.write(request).await? {
            ClientReply::Lease(lease) => Ok(lease),
            other => Err(unexpected(what, &other)),
        }
    }

    pub(crate) async fn acquire_lease(&self, table: &str, holder: &str) -> Result<Lease> {
        let request = ClientRequest::AcquireLease {
            table: table.to_string(),
            holder: holder.to_string(),
        };
        self.write_lease("acquire lease", request).await
    }

    pub(crate) async fn renew_lease(&self, lease: &Lease) -> Result<Lease> {
        self.write_lease("renew lease", ClientRequest::RenewLease(lease.clone()))
            .await
    }

    pub(crate) async fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.write_done("release lease", ClientRequest::ReleaseLease(lease.clone()))
            .await
    }

    pub(crate) async fn commit(&self, lease: &Lease, commit: TableCommit) -> Result<TableVersion> {
        let request = ClientRequest::Commit {
            lease: lease.clone(),
            commit,
        };
        match self.write(request).await? {
            ClientReply::Version(version) => Ok(version),
            other => Err(unexpected("commit", &other)),
        }
    }

    pub(crate) async fn drop_table(&self, lease: &Lease) -> Result<()> {
        self.write_done("drop table", ClientRequest::DropTable(lease.clone()))
            .await
    }

    pub(crate) async fn update_metadata(
        &self,
        table: &str,
        metadata: TableMetadata,
    ) -> Result<Table> {
        let request = ClientRequest::UpdateMetadata {
            table: table.to_string(),
            metadata,
        };
        match self.write(request).await? {
            ClientReply::Table(table) => Ok(table),
            other => Err(unexpected("update metadata", &other)),
        }
    }

    pub(crate) async fn create_view(&self, view: View, replace: bool) -> Result<()> {
        self.write_done("create view", ClientRequest::CreateView { view, replace })
            .await
    }

    pub(crate) async fn drop_view(&self, name: &str) -> Result<()> {
        let request = ClientRequest::DropView {
            name: name.to_string(),
        };
        self.write_done("drop view", request).await
    }

    pub(crate) async fn set_grant(&self, role: &str, table: &str, granted: bool) -> Result<()> {
        let request = ClientRequest::SetGrant {
            role: role.to_string(),
            table: table.to_string(),
            granted,
        };
        self.write_done("change a grant", request).await
    }

    async fn write_index_version(
        &self,
        what: &str,
        request: ClientRequest,
    ) -> Result<IndexVersion> {
        match self.write(request).await? {
            ClientReply::IndexVersion(version) => Ok(version),
            other => Err(unexpected(what, &other)),
        }
    }

    pub(crate) async fn create_index_version(
        &self,
        name: &str,
        version: IndexVersion,
    ) -> Result<IndexVersion> {
        let request = ClientRequest::CreateIndexVersion {
            name: name.to_string(),
            version,
        };
        self.write_index_version("create index version", request)
            .await
    }

    pub(crate) async fn finish_index_version(
        &self,
        name: &str,
        version: u64,
        shards: Vec<IndexShard>,
        chunks_embedded: u64,
        error: Option<String>,
    ) -> Result<IndexVersion> {
        let request = ClientRequest::FinishIndexVersion {
            name: name.to_string(),
            version,
            shards,
            chunks_embedded,
            error,
        };
        self.write_index_version("finish index version", request)
            .await
    }

    pub(crate) async fn activate_index_version(&self, name: &str, version: u64) -> Result<()> {
        let request = ClientRequest::ActivateIndexVersion {
            name: name.to_string(),
            version,
        };
        self.write_done("activate index version", request).await
    }

    pub(crate) async fn drop_index(&self, name: &str, version: Option<u64>) -> Result<()> {
        let request = ClientRequest::DropIndex {
            name: name.to_string(),
            version,
        };
        self.write_done("drop index", request).await
    }

    pub(crate) fn indexes(&self) -> Vec<VectorIndex> {
        self.read(|s| s.indexes.values().cloned().collect())
    }

    pub(crate) fn index(&self, name: &str) -> Option<VectorIndex> {
        self.read(|s| s.indexes.get(name).cloned())
    }

    /// Forwarded: only the leader's state is sure to know every commit, and
    /// deleting by a copy that lags one would remove a just-committed file.
    pub(crate) async fn collect_garbage(&self) -> Result<usize> {
        match self.write(ClientRequest::CollectGarbage).await? {
            ClientReply::Removed(removed) => Ok(removed),
            other => Err(unexpected("collect garbage", &other)),
        }
    }

    pub(crate) fn grants(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.read(|s| s.grants.clone())
    }

    pub(crate) fn views(&self) -> Vec<View> {
        self.read(|s| s.views.values().cloned().collect())
    }

    pub(crate) fn view(&self, name: &str) -> Option<View> {
        self.read(|s| s.views.get(name).cloned())
    }

    pub(crate) fn tables(&self) -> Vec<Table> {
        self.read(|s| s.tables.values().cloned().collect())
    }

    pub(crate) fn table(&self, name: &str) -> Option<Table> {
        self.read(|s| s.tables.get(name).cloned())
    }

    pub(crate) fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    pub(crate) async fn shutdown(&self) -> Result<()> {
        let _ = self.stop.send(true);
        Ok(())
    }

    pub(crate) fn metrics(&self) -> CatalogMetrics {
        CatalogMetrics {
            node_id: 0,
            current_term: 0,
            leader_id: None,
            last_log_index: None,
            last_applied_index: None,
            snapshot_index: None,
            catalog_version: self.read(|s| s.catalog_version),
        }
    }
}

fn unexpected(what: &str, reply: &ClientReply) -> Error {
    Error::Internal(format!("{what}: unexpected catalog reply {reply:?}"))
}

/// Follows a node's Watch stream into `copy` until `stopped`; when a stream
/// breaks (node down, network), follows the next node that answers.
async fn follow(
    client: CatalogClient,
    copy: watch::Sender<Arc<CatalogState>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = follow_one(&client, &copy) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// One Watch stream, until it ends or fails.
async fn follow_one(client: &CatalogClient, copy: &watch::Sender<Arc<CatalogState>>) {
    let mut stream = match client.watch().await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow the catalog; retrying");
            return;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(update)) => match decode_update(&update) {
                Ok(state) => install(copy, state),
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable catalog update; following again");
                    return;
                }
            },
            Ok(None) => {
                tracing::info!("catalog node ended the watch stream; following again");
                return;
            }
            Err(status) => {
                tracing::info!(error = %status, "catalog watch stream broke; following again");
                return;
            }
        }
    }
}

fn decode_update(update: &pb::StateUpdate) -> Result<CatalogState> {
    decode_json(update.format_version, &update.payload)
}
