//! Node-to-node Raft transport over gRPC (`lakehouse.raft.v1`). openraft's
//! requests and responses travel as JSON inside a versioned envelope; a
//! response carries the peer's `Result`, so its Raft errors come back typed.

use std::time::Duration;

use bytes::Bytes;
use lakehouse_proto::raft::raft_client::RaftClient;
use lakehouse_proto::raft::RaftMessage;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::request::{NodeId, TypeConfig};

/// Encoding of [`RaftMessage::payload`] this build writes and reads: JSON of
/// openraft 0.9's serde types.
pub(crate) const RAFT_FORMAT_VERSION: u32 = 1;

/// Largest gRPC message a node sends or accepts. Append batches and snapshot
/// chunks are JSON, a few times their binary size; tonic's 4 MiB default is too small.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A lazily connecting channel to `addr` (`host:port`); it reconnects by itself
/// after the peer restarts.
pub(crate) fn channel(addr: &str, connect_timeout: Duration) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| {
        Error::InvalidRequest(format!(
            "catalog node address `{addr}` is not host:port: {e}"
        ))
    })?;
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<RaftMessage, serde_json::Error> {
    Ok(RaftMessage {
        format_version: RAFT_FORMAT_VERSION,
        payload: Bytes::from(serde_json::to_vec(value)?),
    })
}

pub(crate) fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, String> {
    if message.format_version != RAFT_FORMAT_VERSION {
        return Err(format!(
            "Raft message format version {} is not {RAFT_FORMAT_VERSION}, the one this build reads; \
             run the same lakehouse version on every catalog node",
            message.format_version
        ));
    }
    serde_json::from_slice(&message.payload).map_err(|e| format!("undecodable Raft message: {e}"))
}

/// Creates gRPC clients for peers.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    node_id: NodeId,
    connect_timeout: Duration,
}

impl NetworkFactory {
    pub(crate) fn new(node_id: NodeId, connect_timeout: Duration) -> Self {
        Self {
            node_id,
            connect_timeout,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let client = channel(&node.addr, self.connect_timeout).map(|channel| {
            RaftClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        });
        PeerClient {
            node_id: self.node_id,
            target,
            addr: node.addr.clone(),
            client: client.map_err(|e| e.to_string()),
        }
    }
}

/// The gRPC client of one peer.
#[derive(Debug)]
pub struct PeerClient {
    node_id: NodeId,
    target: NodeId,
    addr: String,
    /// A bad address in the membership is reported on every call, not at creation
    /// (openraft's factory cannot fail).
    client: std::result::Result<RaftClient<Channel>, String>,
}

/// Why a call to a peer failed before its answer could be read.
#[derive(Debug, thiserror::Error)]
#[error("catalog node {target} at {addr}: {reason}")]
struct PeerFailure {
    target: NodeId,
    addr: String,
    reason: String,
}

impl PeerClient {
    fn failure(&self, reason: impl Into<String>) -> PeerFailure {
        PeerFailure {
            target: self.target,
            addr: self.addr.clone(),
            reason: reason.into(),
        }
    }

    /// Sends one request and decodes the peer's `Result`.
    async fn call<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> std::result::Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let message = encode(request)
            .map_err(|e| RPCError::Network(NetworkError::new(&self.failure(e.to_string()))))?;
        let mut client = match &self.client {
            Ok(client) => client.clone(),
            Err(reason) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &self.failure(reason.clone()),
                )))
            }
        };
        let timeout = option.hard_ttl();
        let sent = async {
            match action {
                RPCTypes::AppendEntries => client.append_entries(message).await,
                RPCTypes::Vote => client.vote(message).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(message).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                // Not listening (down, restarting): openraft backs off before retrying.
                return Err(RPCError::Unreachable(Unreachable::new(
                    &self.failure(status.message()),
                )));
            }
            Ok(Err(status)) => {
                return Err(RPCError::Network(NetworkError::new(
                    &self.failure(format!("{}: {}", status.code(), status.message())),
                )))
            }
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.node_id,
                    target: self.target,
                    timeout,
                }))
            }
        };
        let answer: std::result::Result<Resp, RaftError<NodeId, E>> = decode(&reply)
            .map_err(|reason| RPCError::Network(NetworkError::new(&self.failure(reason))))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }
}
