//! `lakehouse catalog`: one node of the catalog cluster. Serves Raft between
//! nodes (`lakehouse.raft.v1`) and the client API (`lakehouse.catalog.v1`) on one
//! gRPC listener; a follower forwards writes, linearizable reads and membership
//! changes to the leader once.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lakehouse_common::config::CatalogConfig;
use lakehouse_common::{Bucket, Clock};
use lakehouse_proto::catalog as pb;
use lakehouse_proto::catalog::catalog_client::CatalogClient as Grpc;
use lakehouse_proto::catalog::catalog_server::{Catalog as CatalogRpc, CatalogServer};
use lakehouse_proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use lakehouse_proto::raft::RaftMessage;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::VoteRequest;
use openraft::Raft;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::catalog::Local;
use crate::client::{
    decode_json, encode_json, from_status, grpc, to_status, CatalogClient, ClientReply,
    ClientRequest, CLIENT_FORMAT_VERSION,
};
use crate::error::{Error, Result};
use crate::model::CatalogState;
use crate::network::{channel, decode, encode, MAX_MESSAGE_BYTES};
use crate::request::{NodeId, TypeConfig};
use crate::Catalog;

/// How long a stopping node waits for open connections to finish.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Pause between two attempts of the seed to add a peer that is not up yet.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// A running catalog node.
pub struct CatalogNode {
    pub addr: SocketAddr,
    pub catalog: Catalog,
    local: Local,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl CatalogNode {
    /// Opens the node's log under `dir`, serves gRPC on `listener` and, on the
    /// seed of a new cluster (the lowest id in `peers`, when no peer has a
    /// cluster yet), bootstraps it and adds the other peers as they come up.
    #[tracing::instrument(skip_all, fields(node_id = config.node_id))]
    pub async fn start(
        config: &CatalogConfig,
        dir: &Path,
        bucket: Bucket,
        clock: Arc<dyn Clock>,
        listener: TcpListener,
    ) -> Result<CatalogNode> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("reading the listener's address: {e}")))?;
        // Without an advertised address, peers reach this node where it listens
        // (the bound port, when the configured one is 0).
        let mut config = config.clone();
        if config.advertise_addr.is_empty() {
            config.advertise_addr = addr.to_string();
        }
        let config = &config;
        let peers = config.peer_map()?;
        let catalog = Local::open_node(config, dir, bucket, clock).await?;
        let (stop, stopped) = watch::channel(false);
        let mut others = None;
        let seed = peers.keys().next().copied() == Some(config.node_id);
        if seed && !catalog.is_initialized().await? {
            if let Some(member_of) = initialized_peer(&peers, config).await {
                tracing::warn!(
                    peer = member_of,
                    "this node has no log but peer {member_of} belongs to a cluster: \
                     not bootstrapping; waiting to be added (lakehouse admin add-node)"
                );
            } else {
                // Before serving: a client write ahead of a restore from the
                // bucket would be acknowledged, then replaced by it.
                if let Err(e) = catalog.bootstrap().await {
                    // Release the local log so a retry in this process can open it.
                    if let Err(shutdown) = catalog.shutdown().await {
                        tracing::warn!(error = %shutdown, "shutting down after a failed bootstrap");
                    }
                    return Err(e);
                }
                others = Some(
                    peers
                        .into_iter()
                        .filter(|(id, _)| *id != config.node_id)
                        .collect::<BTreeMap<NodeId, String>>(),
                );
            }
        }
        let mut tasks = vec![tokio::spawn(serve(
            catalog.clone(),
            listener,
            stopped.clone(),
        ))];
        if let Some(others) = others {
            tasks.push(tokio::spawn(add_peers(catalog.clone(), others, stopped)));
        }
        tracing::info!(%addr, "catalog node serving");
        Ok(CatalogNode {
            addr,
            catalog: Catalog::from(catalog.clone()),
            local: catalog,
            stop,
            tasks,
        })
    }

    /// Shuts Raft down and stops serving. Open connections from peers get
    /// [`STOP_GRACE`] to finish their requests.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        let shutdown = self.local.shutdown().await;
        for mut task in self.tasks {
            match tokio::time::timeout(STOP_GRACE, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "catalog node task ended badly"),
                Err(_) => task.abort(),
            }
        }
        shutdown
    }
}

/// The first other peer that reports a cluster membership (it has a log).
async fn initialized_peer(
    peers: &BTreeMap<NodeId, String>,
    config: &CatalogConfig,
) -> Option<NodeId> {
    let connect = Duration::from_millis(config.connect_timeout_ms);
    for (id, addr) in peers.iter().filter(|(id, _)| **id != config.node_id) {
        let Ok(client) = CatalogClient::new(std::slice::from_ref(addr), connect) else {
            continue;
        };
        let asked =
            tokio::time::timeout(connect * 2, client.with_retry_for(Duration::ZERO).status()).await;
        if let Ok(Ok(status)) = asked {
            if !status.members.is_empty() {
                return Some(*id);
            }
        }
    }
    None
}

/// The seed adds each peer (learner, then voter) until all are members or the node stops.
async fn add_peers(
    catalog: Local,
    mut pending: BTreeMap<NodeId, String>,
    mut stopped: watch::Receiver<bool>,
) {
    let catch_up = Duration::from_millis(catalog.config().catch_up_timeout_ms);
    while !pending.is_empty() && !*stopped.borrow() {
        let mut joined = Vec::new();
        for (id, addr) in &pending {
            match catalog.add_node(*id, addr, catch_up).await {
                Ok(_) => joined.push(*id),
                Err(e) => {
                    tracing::info!(node_id = id, %addr, error = %e, "peer not added yet; retrying")
                }
            }
        }
        for id in joined {
            pending.remove(&id);
        }
        if !pending.is_empty() {
            let _ = tokio::time::timeout(JOIN_RETRY, stopped.changed()).await;
        }
    }
}

async fn serve(catalog: Local, listener: TcpListener, mut stopped: watch::Receiver<bool>) {
    let raft = RaftServer::new(RaftService {
        raft: catalog.raft().clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let client_api = CatalogServer::new(CatalogService {
        catalog,
        leaders: Mutex::new(HashMap::new()),
        stopped: stopped.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Kubernetes' gRPC probes: SERVING (the empty service name) while this serves.
    let (_health, health_service) = tonic_health::server::health_reporter();
    let served = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(raft)
        .add_service(client_api)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "catalog gRPC server stopped");
    }
}

struct RaftService {
    raft: Raft<TypeConfig>,
}

fn reply<T: Serialize>(answer: &T) -> std::result::Result<Response<RaftMessage>, Status> {
    encode(answer)
        .map(Response::new)
        .map_err(|e| Status::internal(format!("encoding a Raft answer: {e}")))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        let rpc = decode(request.get_ref()).map_err(Status::invalid_argument)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    /// A node with an empty log (new, or its disk wiped) grants no vote until a
    /// leader has given it a snapshot or entries: the entries it acknowledged
    /// before a wipe are gone, so its vote could elect a candidate that lacks
    /// committed entries (and it may have voted in this term already). A new
    /// node loses nothing by this: it joins as a learner and catches up first.
    async fn vote(
        &self,
        request: Request<RaftMessage>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> =
            decode(request.get_ref()).map_err(Status::invalid_argument)?;
        let empty = self.raft.metrics().borrow().last_log_index.is_none();
        if empty {
            tracing::info!(candidate = %rpc.vote, "no vote: this node's log is empty until a leader catches it up");
            return Err(Status::unavailable(
                "this catalog node has an empty log (new, or its disk was wiped); \
                 it votes once a leader has caught it up",
            ));
        }
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> std::result::Result<Response<RaftMessage>, Status> {
        let rpc = decode(request.get_ref()).map_err(Status::invalid_argument)?;
        let answer: std::result::Result<_, RaftError<NodeId, InstallSnapshotError>> =
            self.raft.install_snapshot(rpc).await;
        reply(&answer)
    }
}

struct CatalogService {
    catalog: Local,
    /// Clients of leaders this node forwarded to, by address.
    leaders: Mutex<HashMap<String, Grpc<Channel>>>,
    /// Ends the Watch streams when the node stops.
    stopped: watch::Receiver<bool>,
}

impl CatalogService {
    fn leader_client(&self, addr: &str) -> Result<Grpc<Channel>> {
        let mut leaders = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = leaders.get(addr) {
            return Ok(client.clone());
        }
        let connect = Duration::from_millis(self.catalog.config().connect_timeout_ms);
        let client = grpc(channel(addr, connect)?);
        leaders.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Carries a request out here when this node leads (or it was forwarded
    /// here already), else forwards it to the leader once.
    async fn on_leader<T, L, LF, F, FF>(
        &self,
        forwarded: bool,
        local: L,
        forward: F,
    ) -> std::result::Result<Response<T>, Status>
    where
        L: FnOnce() -> LF,
        LF: Future<Output = Result<T>>,
        F: FnOnce(Grpc<Channel>) -> FF,
        FF: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        if forwarded || self.catalog.is_leader() {
            match local().await {
                Ok(answer) => return Ok(Response::new(answer)),
                // Leadership moved while the request ran: forward it instead.
                Err(Error::NotLeader { .. }) if !forwarded => {}
                Err(e) => return Err(to_status(&e)),
            }
        }
        let leader = self
            .catalog
            .leader()
            .filter(|(id, _)| *id != self.catalog.node_id());
        let Some((leader_id, addr)) = leader else {
            return Err(to_status(&Error::NotLeader {
                leader: self.catalog.status().leader_id,
            }));
        };
        let client = self.leader_client(&addr).map_err(|e| to_status(&e))?;
        tracing::debug!(leader_id, %addr, "forwarding to the leader");
        match forward(client).await {
            Ok(answer) => Ok(answer),
            // The leader's own answer (it carries our error details): pass it on.
            Err(status) if !status.details().is_empty() => Err(status),
            Err(status) => {
                let (error, not_applied) = from_status(&addr, &status);
                if not_applied {
                    Err(to_status(&error))
                } else {
                    // The leader may have carried it out: no details, so no safe retry.
                    Err(Status::unavailable(format!(
                        "forwarding to the catalog leader {leader_id}: {error}"
                    )))
                }
            }
        }
    }
}

/// Runs one client change through the catalog API on the leader.
async fn execute(catalog: &Local, request: ClientRequest) -> Result<ClientReply> {
    Ok(match request {
        ClientRequest::AcquireLease { table, holder } => {
            ClientReply::Lease(catalog.acquire_lease(&table, &holder).await?)
        }
        ClientRequest::RenewLease(lease) => ClientReply::Lease(catalog.renew_lease(&lease).await?),
        ClientRequest::ReleaseLease(lease) => {
            catalog.release_lease(&lease).await?;
            ClientReply::Done
        }
        ClientRequest::Commit { lease, commit } => {
            ClientReply::Version(catalog.commit(&lease, commit).await?)
        }
        ClientRequest::DropTable(lease) => {
            catalog.drop_table(&lease).await?;
            ClientReply::Done
        }
        ClientRequest::UpdateMetadata { table, metadata } => {
            ClientReply::Table(catalog.update_metadata(&table, metadata).await?)
        }
        ClientRequest::CreateView { view, replace } => {
            catalog.create_view(view, replace).await?;
            ClientReply::Done
        }
        ClientRequest::DropView { name } => {
            catalog.drop_view(&name).await?;
            ClientReply::Done
        }
        ClientRequest::SetGrant {
            role,
            table,
            granted,
        } => {
            catalog.set_grant(&role, &table, granted).await?;
            ClientReply::Done
        }
        ClientRequest::CreateIndexVersion { name, version } => {
            ClientReply::IndexVersion(catalog.create_index_version(&name, version).await?)
        }
        ClientRequest::FinishIndexVersion {
            name,
            version,
            shards,
            chunks_embedded,
            error,
        } => ClientReply::IndexVersion(
            catalog
                .finish_index_version(&name, version, shards, chunks_embedded, error)
                .await?,
        ),
        ClientRequest::ActivateIndexVersion { name, version } => {
            catalog.activate_index_version(&name, version).await?;
            ClientReply::Done
        }
        ClientRequest::DropIndex { name, version } => {
            catalog.drop_index(&name, version).await?;
            ClientReply::Done
        }
        ClientRequest::CollectGarbage => ClientReply::Removed(catalog.collect_garbage().await?),
    })
}

#[tonic::async_trait]
impl CatalogRpc for CatalogService {
    #[tracing::instrument(skip_all, fields(forwarded = request.get_ref().forwarded))]
    async fn write(
        &self,
        request: Request<pb::WriteRequest>,
    ) -> std::result::Result<Response<pb::WriteResponse>, Status> {
        let request = request.into_inner();
        let change: ClientRequest =
            decode_json(request.format_version, &request.payload).map_err(|e| to_status(&e))?;
        self.on_leader(
            request.forwarded,
            || async {
                let reply = execute(&self.catalog, change).await?;
                Ok(pb::WriteResponse {
                    format_version: CLIENT_FORMAT_VERSION,
                    payload: encode_json(&reply)?,
                    // Applied here before the answer: at least the change's version.
                    catalog_version: self.catalog.metrics().catalog_version,
                })
            },
            |mut leader| async move {
                leader
                    .write(pb::WriteRequest {
                        forwarded: true,
                        ..request
                    })
                    .await
            },
        )
        .await
    }

    async fn read_state(
        &self,
        request: Request<pb::ReadStateRequest>,
    ) -> std::result::Result<Response<pb::ReadStateResponse>, Status> {
        self.on_leader(
            request.get_ref().forwarded,
            || async {
                let (state, read_index) = self.catalog.linearizable_state().await?;
                Ok(pb::ReadStateResponse {
                    format_version: CLIENT_FORMAT_VERSION,
                    payload: encode_json(&state)?,
                    read_index,
                })
            },
            |mut leader| async move {
                leader
                    .read_state(pb::ReadStateRequest { forwarded: true })
                    .await
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = request.get_ref().node_id))]
    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> std::result::Result<Response<pb::AddNodeResponse>, Status> {
        let request = request.into_inner();
        let catch_up = match request.catch_up_timeout_ms {
            0 => Duration::from_millis(self.catalog.config().catch_up_timeout_ms),
            ms => Duration::from_millis(ms),
        };
        let forwarded = request.forwarded;
        let (node_id, addr) = (request.node_id, request.addr.clone());
        self.on_leader(
            forwarded,
            || async {
                let members = self.catalog.add_node(node_id, &addr, catch_up).await?;
                Ok(pb::AddNodeResponse {
                    members: members.into_iter().map(pb::Member::from).collect(),
                })
            },
            |mut leader| async move {
                leader
                    .add_node(pb::AddNodeRequest {
                        forwarded: true,
                        ..request
                    })
                    .await
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = request.get_ref().node_id))]
    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> std::result::Result<Response<pb::RemoveNodeResponse>, Status> {
        let request = request.into_inner();
        self.on_leader(
            request.forwarded,
            || async {
                let members = self.catalog.remove_node(request.node_id).await?;
                Ok(pb::RemoveNodeResponse {
                    members: members.into_iter().map(pb::Member::from).collect(),
                })
            },
            |mut leader| async move {
                leader
                    .remove_node(pb::RemoveNodeRequest {
                        forwarded: true,
                        ..request
                    })
                    .await
            },
        )
        .await
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> std::result::Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.catalog.status().into()))
    }

    type WatchStream = ReceiverStream<std::result::Result<pb::StateUpdate, Status>>;

    /// Sends the whole applied state now and after every applied change (a
    /// burst of changes may be sent once). Ends when the client goes away or
    /// the node stops.
    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> std::result::Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(stream_state(self.catalog.clone(), tx, self.stopped.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Updates a Watch stream may fall behind its client before the sender waits.
const WATCH_BUFFER: usize = 4;

async fn stream_state(
    catalog: Local,
    tx: mpsc::Sender<std::result::Result<pb::StateUpdate, Status>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut changes = catalog.subscribe();
    loop {
        changes.borrow_and_update();
        let state = catalog.read_state(CatalogState::clone);
        let update = encode_json(&state)
            .map(|payload| pb::StateUpdate {
                format_version: CLIENT_FORMAT_VERSION,
                payload,
                catalog_version: state.catalog_version,
            })
            .map_err(|e| to_status(&e));
        if tx.send(update).await.is_err() {
            return;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = stopped.wait_for(|stop| *stop) => return,
            () = tx.closed() => return,
        }
    }
}
