//! `lakehouse.scheduler.v1.SchedulerStatus`: the scheduler's jobs and
//! registered executors for `lakehouse status`. Ballista 54.1 lists executors
//! only on its REST API (the `rest-api` feature, which we do not build), so
//! the scheduler serves this small gRPC service next to its own.

use std::sync::Arc;
use std::time::Duration;

use ballista_core::serde::protobuf::executor_status::Status as HeartbeatStatus;
use lakehouse_proto::scheduler::scheduler_status_client::SchedulerStatusClient;
use lakehouse_proto::scheduler::scheduler_status_server::{SchedulerStatus, SchedulerStatusServer};
use lakehouse_proto::scheduler::{Executor, StatusRequest, StatusResponse};
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::in_process::Server;
use crate::metrics::JobCounter;

pub(crate) struct StatusService {
    server: Server,
    counter: Arc<JobCounter>,
}

impl StatusService {
    pub(crate) fn new(server: Server, counter: Arc<JobCounter>) -> SchedulerStatusServer<Self> {
        SchedulerStatusServer::new(Self { server, counter })
    }
}

#[tonic::async_trait]
impl SchedulerStatus for StatusService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> std::result::Result<Response<StatusResponse>, Status> {
        let state = &self.server.state;
        let registered = state
            .executor_manager
            .get_executors_state()
            .await
            .map_err(|e| Status::internal(format!("cannot list executors: {e}")))?;
        let executors = registered
            .into_iter()
            .map(|(metadata, _, _)| {
                let heartbeat = state.executor_manager.get_executor_hearbeat(&metadata.id);
                let heartbeat_state = heartbeat
                    .as_ref()
                    .and_then(|hb| hb.status.as_ref())
                    .and_then(|s| s.status.as_ref())
                    .map_or("unknown", |s| match s {
                        HeartbeatStatus::Active(_) => "active",
                        HeartbeatStatus::Dead(_) => "dead",
                        HeartbeatStatus::Terminating(_) => "terminating",
                        HeartbeatStatus::Unknown(_) => "unknown",
                    });
                Executor {
                    id: metadata.id,
                    host: metadata.host,
                    flight_port: metadata.port.into(),
                    grpc_port: metadata.grpc_port.into(),
                    task_slots: metadata.specification.task_slots,
                    last_heartbeat_unix_secs: heartbeat.map_or(0, |hb| hb.timestamp),
                    state: heartbeat_state.to_owned(),
                }
            })
            .collect();
        let jobs = self.counter.counts();
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Ok(Response::new(StatusResponse {
            running_jobs: count(state.task_manager.running_job_number()),
            queued_jobs: count(state.task_manager.pending_job_number()),
            jobs_submitted: jobs.submitted,
            jobs_completed: jobs.completed,
            jobs_failed: jobs.failed,
            jobs_cancelled: jobs.cancelled,
            executors,
        }))
    }
}

/// Asks the scheduler at `endpoint` (host:port) for its status, giving up
/// after `timeout`.
pub async fn scheduler_status(endpoint: &str, timeout: Duration) -> Result<StatusResponse> {
    let url = format!("http://{endpoint}");
    let unreachable = |reason: String| Error::Unreachable {
        url: url.clone(),
        reason,
    };
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| Error::SchedulerUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| unreachable(format!("cannot connect: {e}")))?;
    let reply = SchedulerStatusClient::new(channel)
        .status(StatusRequest {})
        .await
        .map_err(|e| unreachable(e.message().to_owned()))?;
    Ok(reply.into_inner())
}
