//! The catalog's client side of `lakehouse.catalog.v1`: the versioned wire
//! types, the status mapping both ends share, and [`CatalogClient`], which talks
//! to any node of a cluster (a follower forwards to the leader).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lakehouse_common::ErrorKind;
use lakehouse_proto::catalog as pb;
use lakehouse_proto::catalog::catalog_client::CatalogClient as Grpc;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::cluster::{Member, NodeStatus};
use crate::error::{Error, Refusal, Result};
use crate::model::{
    CatalogState, IndexShard, IndexVersion, Lease, Table, TableCommit, TableMetadata, TableVersion,
    View,
};
use crate::network::{channel, MAX_MESSAGE_BYTES};
use crate::request::NodeId;

/// Encoding of the catalog service's JSON payloads this build writes and reads.
pub(crate) const CLIENT_FORMAT_VERSION: u32 = 1;

/// A catalog change as a client sends it. Times are stamped by the leader that
/// carries it out, never by the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientRequest {
    AcquireLease {
        table: String,
        holder: String,
    },
    RenewLease(Lease),
    ReleaseLease(Lease),
    Commit {
        lease: Lease,
        commit: TableCommit,
    },
    DropTable(Lease),
    UpdateMetadata {
        table: String,
        metadata: TableMetadata,
    },
    CreateView {
        view: View,
        replace: bool,
    },
    DropView {
        name: String,
    },
    SetGrant {
        role: String,
        table: String,
        granted: bool,
    },
    CreateIndexVersion {
        name: String,
        version: IndexVersion,
    },
    FinishIndexVersion {
        name: String,
        version: u64,
        shards: Vec<IndexShard>,
        chunks_embedded: u64,
        error: Option<String>,
    },
    ActivateIndexVersion {
        name: String,
        version: u64,
    },
    DropIndex {
        name: String,
        version: Option<u64>,
    },
    /// Garbage collection runs where the state is authoritative: on the leader.
    CollectGarbage,
}

/// What a successful [`ClientRequest`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientReply {
    Done,
    Lease(Lease),
    Version(TableVersion),
    Table(Table),
    IndexVersion(IndexVersion),
    /// How many unreferenced files garbage collection removed.
    Removed(usize),
}

/// An error as it travels in a status's details, so the client rebuilds a
/// refusal exactly and knows whether a retry is safe.
#[derive(Debug, Serialize, Deserialize)]
struct WireError {
    format_version: u32,
    refusal: Option<Refusal>,
    /// The request was not carried out (no leader yet, leader unreachable):
    /// sending it again cannot apply it twice.
    not_applied: bool,
}

fn kind_code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidInput => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status code of `e`: its kind's, except that a request refused for the
/// state of what it names (an index version not ready, not building) is
/// FailedPrecondition, which `ErrorKind` has no kind of its own for.
fn error_code(e: &Error) -> Code {
    match e {
        Error::IndexVersionNotReady { .. } | Error::IndexVersionNotBuilding { .. } => {
            Code::FailedPrecondition
        }
        other => kind_code(other.kind()),
    }
}

fn code_kind(code: Code) -> ErrorKind {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidInput,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::Aborted | Code::FailedPrecondition => ErrorKind::Conflict,
        Code::ResourceExhausted => ErrorKind::TooLarge,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Unavailable,
        Code::Ok | Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => {
            ErrorKind::Internal
        }
    }
}

/// The one mapping of catalog errors to gRPC statuses (server side).
pub(crate) fn to_status(e: &Error) -> Status {
    let wire = WireError {
        format_version: CLIENT_FORMAT_VERSION,
        refusal: e.refusal(),
        not_applied: matches!(e, Error::NotLeader { .. } | Error::Unreachable { .. }),
    };
    match serde_json::to_vec(&wire) {
        Ok(details) => Status::with_details(error_code(e), e.to_string(), details.into()),
        Err(_) => Status::new(error_code(e), e.to_string()),
    }
}

/// Whether a status says the request never reached a server (refused connection).
fn connection_refused(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = e.source();
    }
    false
}

/// A status back to a catalog error; the second value says a retry is safe.
pub(crate) fn from_status(addr: &str, status: &Status) -> (Error, bool) {
    let wire: Option<WireError> = serde_json::from_slice(status.details())
        .ok()
        .filter(|w: &WireError| w.format_version == CLIENT_FORMAT_VERSION);
    match wire {
        Some(WireError {
            refusal: Some(refusal),
            ..
        }) => (refusal.into(), false),
        Some(WireError { not_applied, .. }) => (
            Error::Remote {
                addr: addr.to_string(),
                kind: code_kind(status.code()),
                message: status.message().to_string(),
            },
            not_applied,
        ),
        None if status.code() == Code::Unavailable => (
            Error::Unreachable {
                addr: addr.to_string(),
                reason: status.message().to_string(),
            },
            connection_refused(status),
        ),
        None => (
            Error::Remote {
                addr: addr.to_string(),
                kind: code_kind(status.code()),
                message: status.message().to_string(),
            },
            false,
        ),
    }
}

pub(crate) fn encode_json<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("encoding a catalog message: {e}")))
}

pub(crate) fn decode_json<T: for<'de> Deserialize<'de>>(
    format_version: u32,
    payload: &[u8],
) -> Result<T> {
    if format_version != CLIENT_FORMAT_VERSION {
        return Err(Error::InvalidRequest(format!(
            "catalog message format version {format_version} is not {CLIENT_FORMAT_VERSION}, \
             the one this build reads; use the same lakehouse version as the catalog"
        )));
    }
    serde_json::from_slice(payload)
        .map_err(|e| Error::InvalidRequest(format!("undecodable catalog message: {e}")))
}

pub(crate) fn grpc(channel: Channel) -> Grpc<Channel> {
    Grpc::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

impl From<pb::Member> for Member {
    fn from(m: pb::Member) -> Self {
        Member {
            node_id: m.node_id,
            addr: m.addr,
            voter: m.voter,
            matched_index: m.matched_index,
        }
    }
}

impl From<Member> for pb::Member {
    fn from(m: Member) -> Self {
        pb::Member {
            node_id: m.node_id,
            addr: m.addr,
            voter: m.voter,
            matched_index: m.matched_index,
        }
    }
}

impl From<pb::StatusResponse> for NodeStatus {
    fn from(s: pb::StatusResponse) -> Self {
        NodeStatus {
            node_id: s.node_id,
            state: s.state,
            leader_id: s.leader_id,
            current_term: s.current_term,
            last_log_index: s.last_log_index,
            last_applied_index: s.last_applied_index,
            snapshot_index: s.snapshot_index,
            catalog_version: s.catalog_version,
            members: s.members.into_iter().map(Member::from).collect(),
        }
    }
}

impl From<NodeStatus> for pb::StatusResponse {
    fn from(s: NodeStatus) -> Self {
        pb::StatusResponse {
            node_id: s.node_id,
            state: s.state,
            leader_id: s.leader_id,
            current_term: s.current_term,
            last_log_index: s.last_log_index,
            last_applied_index: s.last_applied_index,
            snapshot_index: s.snapshot_index,
            catalog_version: s.catalog_version,
            members: s.members.into_iter().map(pb::Member::from).collect(),
        }
    }
}

/// A client of a catalog cluster. Requests go to the first endpoint that
/// answers; while no leader is known (an election) or a node is down, a request
/// that surely was not carried out is sent again, to the next endpoint, until
/// `retry_for` has passed.
#[derive(Debug, Clone)]
pub struct CatalogClient {
    endpoints: Vec<(String, Grpc<Channel>)>,
    /// The endpoint tried first: the last one that answered, so a node that is
    /// down costs one failed try, not one per request.
    preferred: Arc<AtomicUsize>,
    retry_for: Duration,
}

/// Pause between two tries while the cluster has no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl CatalogClient {
    /// `endpoints`: `host:port` of one or more catalog nodes.
    pub fn new(endpoints: &[String], connect_timeout: Duration) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(Error::InvalidRequest(
                "no catalog address given: name at least one node as host:port".to_string(),
            ));
        }
        let endpoints = endpoints
            .iter()
            .map(|addr| Ok((addr.clone(), grpc(channel(addr, connect_timeout)?))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            endpoints,
            preferred: Arc::new(AtomicUsize::new(0)),
            retry_for: Duration::from_secs(10),
        })
    }

    /// How long to keep retrying a request that was not carried out (default 10 s).
    pub fn with_retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// Runs `call` against the endpoints in turn; `idempotent` calls are also
    /// retried after an answer was lost.
    async fn call<T, F, Fut>(&self, idempotent: bool, call: F) -> Result<T>
    where
        F: Fn(Grpc<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let deadline = Instant::now() + self.retry_for;
        let first = self.preferred.load(Ordering::Relaxed);
        let mut attempt = 0usize;
        loop {
            let index = (first + attempt) % self.endpoints.len();
            let (addr, client) = &self.endpoints[index];
            attempt += 1;
            let status = match call(client.clone()).await {
                Ok(answer) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(status) => status,
            };
            let (error, not_applied) = from_status(addr, &status);
            if matches!(error, Error::Unreachable { .. }) {
                self.preferred
                    .store((index + 1) % self.endpoints.len(), Ordering::Relaxed);
            }
            let retry = not_applied || (idempotent && error.kind() == ErrorKind::Unavailable);
            if !retry || Instant::now() >= deadline {
                return Err(error);
            }
            tracing::debug!(%addr, error = %error, attempt, "catalog request not carried out; retrying");
            // Try every endpoint once before pausing.
            if attempt.is_multiple_of(self.endpoints.len()) {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }

    /// Carries out one catalog change on the leader.
    pub async fn write(&self, request: &ClientRequest) -> Result<ClientReply> {
        Ok(self.write_versioned(request).await?.0)
    }

    /// [`Self::write`], and the leader's catalog version once the change was
    /// applied there (0 from a leader that does not tell).
    pub async fn write_versioned(&self, request: &ClientRequest) -> Result<(ClientReply, u64)> {
        let payload = encode_json(request)?;
        let reply = self
            .call(false, |mut c| {
                let message = pb::WriteRequest {
                    format_version: CLIENT_FORMAT_VERSION,
                    payload: payload.clone(),
                    forwarded: false,
                };
                async move { c.write(message).await }
            })
            .await?
            .into_inner();
        let decoded = decode_json(reply.format_version, &reply.payload)?;
        Ok((decoded, reply.catalog_version))
    }

    /// A stream of the applied state of the first node that answers, now and
    /// after every change it applies.
    pub(crate) async fn watch(&self) -> Result<tonic::Streaming<pb::StateUpdate>> {
        Ok(self
            .call(
                true,
                |mut c| async move { c.watch(pb::WatchRequest {}).await },
            )
            .await?
            .into_inner())
    }

    pub async fn acquire_lease(&self, table: &str, holder: &str) -> Result<Lease> {
        let request = ClientRequest::AcquireLease {
            table: table.to_string(),
            holder: holder.to_string(),
        };
        match self.write(&request).await? {
            ClientReply::Lease(lease) => Ok(lease),
            other => Err(Error::Internal(format!(
                "acquire lease: unexpected reply {other:?}"
            ))),
        }
    }

    /// The whole catalog as of a linearizable read, and the log index of that read.
    pub async fn state(&self) -> Result<(CatalogState, u64)> {
        let reply = self
            .call(true, |mut c| async move {
                c.read_state(pb::ReadStateRequest { forwarded: false })
                    .await
            })
            .await?
            .into_inner();
        let state = decode_json(reply.format_version, &reply.payload)?;
        Ok((state, reply.read_index))
    }

    /// Adds a node (learner, then voter once caught up).
    pub async fn add_node(
        &self,
        node_id: NodeId,
        addr: &str,
        catch_up: Duration,
    ) -> Result<Vec<Member>> {
        let catch_up_timeout_ms = u64::try_from(catch_up.as_millis()).unwrap_or(u64::MAX);
        let reply = self
            .call(true, |mut c| {
                let request = pb::AddNodeRequest {
                    node_id,
                    addr: addr.to_string(),
                    catch_up_timeout_ms,
                    forwarded: false,
                };
                async move { c.add_node(request).await }
            })
            .await?
            .into_inner();
        Ok(reply.members.into_iter().map(Member::from).collect())
    }

    pub async fn remove_node(&self, node_id: NodeId) -> Result<Vec<Member>> {
        let reply = self
            .call(false, |mut c| async move {
                c.remove_node(pb::RemoveNodeRequest {
                    node_id,
                    forwarded: false,
                })
                .await
            })
            .await?
            .into_inner();
        Ok(reply.members.into_iter().map(Member::from).collect())
    }

    /// The status of the first endpoint that answers.
    pub async fn status(&self) -> Result<NodeStatus> {
        let reply = self
            .call(
                true,
                |mut c| async move { c.status(pb::StatusRequest {}).await },
            )
            .await?
            .into_inner();
        Ok(reply.into())
    }

    /// Every member's own status, and the leader's view of replication.
    pub async fn cluster_status(&self, connect_timeout: Duration) -> Result<ClusterStatus> {
        let first = self.status().await?;
        let mut nodes = Vec::with_capacity(first.members.len());
        for member in first.members {
            let asked =
                match CatalogClient::new(std::slice::from_ref(&member.addr), connect_timeout) {
                    Ok(client) => client.with_retry_for(Duration::ZERO).status().await,
                    Err(e) => Err(e),
                };
            nodes.push((member, asked));
        }
        let leader = nodes
            .iter()
            .find_map(|(_, s)| s.as_ref().ok().filter(|s| s.leader_id == Some(s.node_id)))
            .cloned();
        Ok(ClusterStatus { leader, nodes })
    }
}

/// What `lakehouse status` shows of the catalog cluster.
#[derive(Debug)]
pub struct ClusterStatus {
    /// The leader's own status, when it answered.
    pub leader: Option<NodeStatus>,
    /// Each member and its own status, or why it did not answer.
    pub nodes: Vec<(Member, Result<NodeStatus>)>,
}

impl ClusterStatus {
    /// How many log entries `node_id` is behind the leader's log.
    pub fn lag(&self, node_id: NodeId) -> Option<u64> {
        let leader = self.leader.as_ref()?;
        if node_id == leader.node_id {
            return Some(0);
        }
        let matched = leader
            .members
            .iter()
            .find(|m| m.node_id == node_id)?
            .matched_index;
        Some(leader.last_log_index?.saturating_sub(matched.unwrap_or(0)))
    }
}
