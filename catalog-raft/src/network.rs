//! Node-to-node Raft transport. Today's catalog is a one-node cluster, which
//! never sends an RPC: openraft only creates clients for other members. The
//! types exist so `Raft` can be built; every call reports the peer unreachable.
//! Multi-node catalogs (gRPC between nodes) arrive with the cluster work.

use std::fmt;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use crate::request::{NodeId, TypeConfig};

/// Creates clients for peers; a one-node catalog never asks for one.
#[derive(Debug, Default, Clone)]
pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
        }
    }
}

/// A client for one peer that cannot reach it yet.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
    addr: String,
}

#[derive(Debug)]
struct NoTransport {
    target: NodeId,
    addr: String,
}

impl fmt::Display for NoTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "catalog node {} at {:?} is unreachable: this build runs one-node catalogs only; \
             multi-node catalogs arrive with the cluster work",
            self.target, self.addr
        )
    }
}

impl std::error::Error for NoTransport {}

impl PeerClient {
    fn unreachable(&self) -> Unreachable {
        Unreachable::new(&NoTransport {
            target: self.target,
            addr: self.addr.clone(),
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }
}
