//! Ballista's scheduler gRPC service with one change: `ExecuteQueryPush`
//! announces the job id at once.
//!
//! Ballista 54.1 sends a push client status updates only when the job's
//! state is saved (stage completions, the end), so a query stuck in one long
//! stage never tells its client its job id, and the client cannot cancel it.
//! Here the first message of the status stream carries the id with an empty
//! status, which both Ballista's `DistributedQueryExec` and our
//! `RemoteQueryExec` read as "initializing". `CancelJob` also tells the job
//! counter, so a cancel that races the job's planning is not lost. Every
//! other call is delegated.

use std::pin::Pin;
use std::sync::Arc;

use ballista_core::config::BALLISTA_JOB_NAME;
use ballista_core::extension::SessionConfigHelperExt;
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::{
    CancelJobParams, CancelJobResult, CleanJobDataParams, CleanJobDataResult,
    CreateUpdateSessionParams, CreateUpdateSessionResult, ExecuteQueryParams, ExecuteQueryResult,
    ExecutorStoppedParams, ExecutorStoppedResult, GetJobMetricsParams, GetJobMetricsResult,
    GetJobStatusParams, GetJobStatusResult, HeartBeatParams, HeartBeatResult, JobStatus,
    PollWorkParams, PollWorkResult, RegisterExecutorParams, RegisterExecutorResult,
    RemoveSessionParams, RemoveSessionResult, UpdateTaskStatusParams, UpdateTaskStatusResult,
};
use ballista_core::ConfigProducer;
use ballista_scheduler::scheduler_server::event::SubmitPlan;
use datafusion::prelude::SessionContext;
use datafusion_proto::logical_plan::AsLogicalPlan;
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::in_process::Server;
use crate::metrics::JobCounter;

type Reply<T> = Result<Response<T>, Status>;

/// Ballista's status buffer per push client; a full buffer drops updates.
pub(crate) const STATUS_BUFFER: usize = 16;

/// The scheduler service we serve.
pub(crate) struct AnnouncingScheduler {
    inner: Server,
    /// The base session config, the same producer the cluster was built with
    /// (Ballista's `SessionManager::produce_config` is crate-private).
    config_producer: ConfigProducer,
    /// Told about cancels so that one racing the job's planning is not lost.
    counter: Arc<JobCounter>,
}

impl AnnouncingScheduler {
    pub(crate) fn new(
        inner: Server,
        config_producer: ConfigProducer,
        counter: Arc<JobCounter>,
    ) -> Self {
        Self {
            inner,
            config_producer,
            counter,
        }
    }

    /// Ballista's `parse_plan` (crate-private), without Substrait.
    fn parse_plan(&self, query: Query, ctx: &SessionContext) -> Result<SubmitPlan, Status> {
        let codec = &self.inner.state.codec;
        let task_ctx = ctx.task_ctx();
        let plan = match query {
            Query::LogicalPlan(bytes) => LogicalPlanNode::try_decode(&bytes)
                .and_then(|node| {
                    node.try_into_logical_plan(&task_ctx, codec.logical_extension_codec())
                })
                .map(SubmitPlan::Logical),
            Query::PhysicalPlan(bytes) => PhysicalPlanNode::try_decode(&bytes)
                .and_then(|node| {
                    node.try_into_physical_plan(&task_ctx, codec.physical_extension_codec())
                })
                .map(SubmitPlan::Physical),
            Query::SubstraitPlan(_) => {
                return Err(Status::unimplemented("Substrait plans are not supported"))
            }
        };
        plan.map_err(|e| Status::invalid_argument(format!("Could not parse plan: {e}")))
    }
}

#[tonic::async_trait]
impl SchedulerGrpc for AnnouncingScheduler {
    type ExecuteQueryPushStream =
        Pin<Box<dyn Stream<Item = Result<GetJobStatusResult, Status>> + Send>>;

    async fn execute_query_push(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Reply<Self::ExecuteQueryPushStream> {
        let ExecuteQueryParams {
            query,
            settings,
            session_id,
            operation_id,
        } = request.into_inner();
        let query = query.ok_or_else(|| Status::invalid_argument("no query in request"))?;
        let job_name = settings
            .iter()
            .find(|s| s.key == BALLISTA_JOB_NAME)
            .and_then(|s| s.value.clone())
            .unwrap_or_default();
        let config = (self.config_producer)().update_from_key_value_pair(&settings);
        let ctx = self
            .inner
            .state
            .session_manager
            .create_or_update_session(&session_id, &config)
            .await
            .map_err(|e| Status::internal(format!("Failed to create SessionContext: {e}")))?;
        let plan = self.parse_plan(query, &ctx)?;

        let (subscriber, updates) = tokio::sync::mpsc::channel::<JobStatus>(STATUS_BUFFER);
        let job_id = self
            .inner
            .submit_plan(&job_name, ctx, &plan, Some(subscriber))
            .await
            .map_err(|e| Status::internal(format!("Failed to queue job {job_name}: {e}")))?;
        debug!(%job_id, %session_id, %operation_id, "job queued (push)");

        let announcement = GetJobStatusResult {
            status: Some(JobStatus {
                job_id: job_id.to_string(),
                job_name,
                status: None,
            }),
            flight_proxy: None,
        };
        let updates = futures::stream::unfold(updates, |mut updates| async move {
            let status = updates.recv().await?;
            let result = GetJobStatusResult {
                status: Some(status),
                flight_proxy: None,
            };
            Some((Ok(result), updates))
        });
        let stream = futures::stream::once(async move { Ok(announcement) }).chain(updates);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn poll_work(&self, request: Request<PollWorkParams>) -> Reply<PollWorkResult> {
        SchedulerGrpc::poll_work(&self.inner, request).await
    }

    async fn register_executor(
        &self,
        request: Request<RegisterExecutorParams>,
    ) -> Reply<RegisterExecutorResult> {
        SchedulerGrpc::register_executor(&self.inner, request).await
    }

    async fn heart_beat_from_executor(
        &self,
        request: Request<HeartBeatParams>,
    ) -> Reply<HeartBeatResult> {
        SchedulerGrpc::heart_beat_from_executor(&self.inner, request).await
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusParams>,
    ) -> Reply<UpdateTaskStatusResult> {
        SchedulerGrpc::update_task_status(&self.inner, request).await
    }

    async fn create_update_session(
        &self,
        request: Request<CreateUpdateSessionParams>,
    ) -> Reply<CreateUpdateSessionResult> {
        SchedulerGrpc::create_update_session(&self.inner, request).await
    }

    async fn remove_session(
        &self,
        request: Request<RemoveSessionParams>,
    ) -> Reply<RemoveSessionResult> {
        SchedulerGrpc::remove_session(&self.inner, request).await
    }

    async fn execute_query(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Reply<ExecuteQueryResult> {
        SchedulerGrpc::execute_query(&self.inner, request).await
    }

    async fn get_job_status(
        &self,
        request: Request<GetJobStatusParams>,
    ) -> Reply<GetJobStatusResult> {
        SchedulerGrpc::get_job_status(&self.inner, request).await
    }

    async fn get_job_metrics(
        &self,
        request: Request<GetJobMetricsParams>,
    ) -> Reply<GetJobMetricsResult> {
        SchedulerGrpc::get_job_metrics(&self.inner, request).await
    }

    async fn executor_stopped(
        &self,
        request: Request<ExecutorStoppedParams>,
    ) -> Reply<ExecutorStoppedResult> {
        SchedulerGrpc::executor_stopped(&self.inner, request).await
    }

    async fn cancel_job(&self, request: Request<CancelJobParams>) -> Reply<CancelJobResult> {
        self.counter
            .request_cancel(&request.get_ref().job_id, crate::server::now_ms());
        SchedulerGrpc::cancel_job(&self.inner, request).await
    }

    async fn clean_job_data(
        &self,
        request: Request<CleanJobDataParams>,
    ) -> Reply<CleanJobDataResult> {
        SchedulerGrpc::clean_job_data(&self.inner, request).await
    }
}
