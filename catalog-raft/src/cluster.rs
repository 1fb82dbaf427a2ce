//! A catalog node of a multi-node cluster: start without initializing,
//! bootstrap on the seed, membership changes (learner → voter), status.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lakehouse_common::config::CatalogConfig;
use lakehouse_common::{Bucket, Clock};
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, RaftMetrics};
use serde::Serialize;

use crate::catalog::Local;
use crate::catalog::{client_write_error, fatal};
use crate::error::{Error, Result};
use crate::manifest;
use crate::model::CatalogState;
use crate::request::NodeId;

/// One member of the cluster as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub node_id: NodeId,
    pub addr: String,
    /// A voter counts for elections and commits; a learner only receives the log.
    pub voter: bool,
    /// Only on the leader: the highest log index known to be stored on that node.
    pub matched_index: Option<u64>,
}

/// A node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    /// Leader, Follower, Candidate, Learner or Shutdown.
    pub state: String,
    pub leader_id: Option<NodeId>,
    pub current_term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub catalog_version: u64,
    pub members: Vec<Member>,
}

fn members(metrics: &RaftMetrics<NodeId, BasicNode>) -> Vec<Member> {
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| Member {
            node_id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
            matched_index: metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(id).copied().flatten())
                .map(|log_id| log_id.index),
        })
        .collect()
}

impl Local {
    /// Opens this node's local log and starts Raft with the gRPC network. A new
    /// node stays uninitialized until the seed adds it ([`Local::bootstrap`]);
    /// a restarted one rejoins its cluster from its log.
    #[tracing::instrument(skip_all, fields(node_id = config.node_id, dir = %dir.display()))]
    pub(crate) async fn open_node(
        config: &CatalogConfig,
        dir: &Path,
        bucket: Bucket,
        clock: Arc<dyn Clock>,
    ) -> Result<Local> {
        Local::build(config, dir, bucket, clock).await
    }

    pub(crate) async fn is_initialized(&self) -> Result<bool> {
        self.raft().is_initialized().await.map_err(fatal)
    }

    /// Makes a new one-voter cluster of this node (the seed); the other nodes
    /// join through [`Local::add_node`]. A node that already has a log is left alone.
    /// When the bucket holds a catalog (every node's disk was lost, or a new
    /// cluster is pointed at an old bucket), the new cluster starts from its
    /// newest manifest.
    pub(crate) async fn bootstrap(&self) -> Result<()> {
        // Read before the log is initialized: if the bucket cannot be read, this
        // start fails with the log still empty and the next one restores; failing
        // later would leave an initialized log over an empty catalog.
        let latest = manifest::read_latest(self.bucket()).await?;
        let node_id = self.node_id();
        let nodes = BTreeMap::from([(node_id, BasicNode::new(self.config().advertised_addr()))]);
        match self.raft().initialize(nodes).await {
            Ok(()) => {
                tracing::info!(node_id, "bootstrapped a new catalog cluster");
                self.lead("catalog bootstrap").await?;
                self.reconcile_with(latest).await
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e @ InitializeError::NotInMembers(_))) => {
                Err(Error::Raft(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    fn check_leader(&self) -> Result<RaftMetrics<NodeId, BasicNode>> {
        let metrics = self.raft().metrics().borrow().clone();
        if metrics.current_leader == Some(self.node_id()) {
            Ok(metrics)
        } else {
            Err(Error::NotLeader {
                leader: metrics.current_leader,
            })
        }
    }

    /// Whether this node leads the cluster right now (by its own metrics).
    pub(crate) fn is_leader(&self) -> bool {
        self.check_leader().is_ok()
    }

    /// The leader's id and address, when this node knows them.
    pub(crate) fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft().metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, addr))
    }

    /// On the leader: adds `node_id` at `addr` as a learner, waits until it
    /// has caught up with the log (at most `catch_up`), then makes it a voter.
    /// Adding a node that is a voter already changes nothing.
    #[tracing::instrument(skip_all, fields(node_id, addr = %addr))]
    pub(crate) async fn add_node(
        &self,
        node_id: NodeId,
        addr: &str,
        catch_up: Duration,
    ) -> Result<Vec<Member>> {
        let metrics = self.check_leader()?;
        let membership = metrics.membership_config.membership();
        if let Some(existing) = membership.get_node(&node_id) {
            if existing.addr != addr {
                return Err(Error::InvalidRequest(format!(
                    "catalog node {node_id} is a member at {} already, not at {addr}; remove it first",
                    existing.addr
                )));
            }
            if membership.voter_ids().any(|id| id == node_id) {
                return Ok(members(&metrics));
            }
        }
        let added = self
            .raft()
            .add_learner(node_id, BasicNode::new(addr), false)
            .await
            .map_err(client_write_error)?;
        let target = added.log_id.index;
        tracing::info!(node_id, "added as learner; waiting for it to catch up");
        self.raft()
            .wait(Some(catch_up))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&node_id).copied().flatten())
                        .is_some_and(|matched| matched.index >= target)
                },
                "learner catch-up",
            )
            .await
            .map_err(|e| {
                Error::Raft(format!(
                    "catalog node {node_id} at {addr} joined as a learner but did not catch up within {} ms ({e}); \
                     check that it runs and is reachable there, then add it again",
                    catch_up.as_millis()
                ))
            })?;
        self.raft()
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
            .await
            .map_err(client_write_error)?;
        tracing::info!(node_id, "promoted to voter");
        Ok(self.status().members)
    }

    /// On the leader: removes `node_id` (voter or learner) from the cluster.
    #[tracing::instrument(skip_all, fields(node_id))]
    pub(crate) async fn remove_node(&self, node_id: NodeId) -> Result<Vec<Member>> {
        let metrics = self.check_leader()?;
        let membership = metrics.membership_config.membership();
        let ids = BTreeSet::from([node_id]);
        let change = if membership.voter_ids().any(|id| id == node_id) {
            ChangeMembers::RemoveVoters(ids)
        } else if membership.get_node(&node_id).is_some() {
            ChangeMembers::RemoveNodes(ids)
        } else {
            return Err(Error::InvalidRequest(format!(
                "catalog node {node_id} is not a member of the cluster"
            )));
        };
        // `retain = false`: a removed voter does not stay behind as a learner.
        self.raft()
            .change_membership(change, false)
            .await
            .map_err(client_write_error)?;
        tracing::info!(node_id, "removed from the cluster");
        Ok(self.status().members)
    }

    /// The catalog state after a linearizable read on the leader: everything
    /// committed before the call is in it. Returns the state and its log index.
    pub(crate) async fn linearizable_state(&self) -> Result<(CatalogState, u64)> {
        self.ensure_applied().await?;
        let state = self.read_state(CatalogState::clone);
        let index = self
            .raft()
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        Ok((state, index))
    }

    pub(crate) fn status(&self) -> NodeStatus {
        let m = self.raft().metrics().borrow().clone();
        let metrics = self.metrics();
        NodeStatus {
            node_id: metrics.node_id,
            state: format!("{:?}", m.state),
            leader_id: metrics.leader_id,
            current_term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied_index,
            snapshot_index: metrics.snapshot_index,
            catalog_version: metrics.catalog_version,
            members: members(&m),
        }
    }
}
