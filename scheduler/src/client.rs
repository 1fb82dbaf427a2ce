//! The client side: session configs for Ballista and a `SessionContext` whose
//! queries run as jobs on a scheduler, reusing connections across queries.
//!
//! Ballista's `DistributedQueryExec` opens a new gRPC connection to the
//! scheduler and a new Flight connection to each executor for every query
//! (~1.7 ms of a ~4.7 ms point query). [`RemoteQueryExec`] does the same
//! push-mode exchange over connections kept in a [`ConnectionPool`]; the
//! planner swaps it in wherever Ballista's planner returns a
//! `DistributedQueryExec` (local-only plans, EXPLAIN ANALYZE and the
//! client-pull mode keep Ballista's own path).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use ballista_core::client::BallistaClient;
use ballista_core::config::BALLISTA_JOB_NAME;
use ballista_core::execution_plans::{create_shuffle_path, DistributedQueryExec};
use ballista_core::extension::{BallistaConfigGrpcEndpoint, SessionConfigExt, SessionStateExt};
use ballista_core::planner::BallistaQueryPlanner;
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::get_job_status_result::FlightProxy;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    job_status, CancelJobParams, ExecuteQueryParams, ExecutorMetadata, GetJobStatusResult,
    KeyValuePair, PartitionId, PartitionLocation, SuccessfulJob,
};
use ballista_core::utils::{create_grpc_client_endpoint, GrpcClientConfig};
use ballista_core::JobId;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    displayable, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::{AsLogicalPlan, LogicalExtensionCodec};
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;
use tracing::debug;

use crate::error::{Error, Result};
use crate::grpc::STATUS_BUFFER;
use crate::in_process::{self, Server};
use crate::job::{CancelOnDrop, JobHandle};
use crate::planned_scan::{plan_temporary_scans, PlannedScanCodec};
use crate::server::job_plan_rules;

const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// A session config for queries sent to Ballista.
///
/// `SessionConfig::new_with_ballista()` would set 16 target partitions
/// (0.55 s instead of 0.36 s on TPC-H SF1 with 2 cores); size them to the
/// executors' task slots instead (0 keeps DataFusion's default, the core count).
///
/// `upgrade_for_ballista` sets `datafusion.optimizer.prefer_hash_join = false`
/// (in `ballista_restricted_configuration`, because hash joins do not spill,
/// Ballista #1648). It applies those defaults only on the first upgrade, when
/// the `BallistaConfig` extension is absent, so setting the value afterwards
/// survives the second upgrade inside `remote_context` and is sent to the
/// scheduler with every query (all options travel as key/value settings and
/// override the scheduler's own defaults). With hash joins on, give executors
/// a memory pool so a large build side fails the query instead of the process.
///
/// `information_schema` is on (as in `new_with_ballista`): those queries run locally.
pub fn ballista_session_config(target_partitions: usize, prefer_hash_join: bool) -> SessionConfig {
    let mut config = SessionConfig::new().with_information_schema(true);
    if target_partitions > 0 {
        config = config.with_target_partitions(target_partitions);
    }
    let mut config = config.upgrade_for_ballista();
    config.options_mut().optimizer.prefer_hash_join = prefer_hash_join;
    config
}

/// `config` with `physical_codec` (which must wrap Ballista's) for the plans of
/// our own execution nodes, in jobs and in temporary tables' scans sent to a
/// scheduler over gRPC ([`PlannedScanCodec`]).
pub fn with_physical_codec(
    config: SessionConfig,
    physical_codec: Arc<dyn PhysicalExtensionCodec>,
) -> SessionConfig {
    config
        .with_ballista_logical_extension_codec(Arc::new(PlannedScanCodec::new(Arc::clone(
            &physical_codec,
        ))))
        .with_ballista_physical_extension_codec(physical_codec)
}

/// A context whose queries run as Ballista jobs on the scheduler at
/// `scheduler_url` (`http://host:port`, `df://host:port` or `host:port`),
/// sharing the process-wide [`ConnectionPool`].
///
/// Nothing is dialled here; the first query connects.
pub async fn remote_context(scheduler_url: &str, config: SessionConfig) -> Result<SessionContext> {
    remote_context_with_pool(scheduler_url, config, ConnectionPool::shared()).await
}

/// [`remote_context`] with an explicit pool (tests, or to isolate tenants).
pub async fn remote_context_with_pool(
    scheduler_url: &str,
    config: SessionConfig,
    pool: Arc<ConnectionPool>,
) -> Result<SessionContext> {
    let url = normalize_scheduler_url(scheduler_url)?;
    let config = config.upgrade_for_ballista();
    let ballista_config = config.ballista_config();
    let codec = config.ballista_logical_extension_codec();
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build()
        // Adds Ballista's planner, cache factory and functions; what
        // `SessionContext::remote_with_state` does.
        .upgrade_for_ballista(url.clone())?;
    let planner = PooledQueryPlanner {
        inner: BallistaQueryPlanner::with_extension(url.clone(), ballista_config, codec.clone()),
        scheduler_url: url,
        codec,
        pool,
    };
    let state = SessionStateBuilder::new_from_existing(state)
        .with_query_planner(Arc::new(planner))
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// Cancels a job on a (possibly remote) scheduler; the id comes from
/// [`JobHandle::job_id`].
pub async fn cancel_remote_job(scheduler_url: &str, job_id: &str) -> Result<()> {
    let url = normalize_scheduler_url(scheduler_url)?;
    send_cancel(&ConnectionPool::shared(), &url, job_id).await
}

pub(crate) async fn send_cancel(pool: &ConnectionPool, url: &str, job_id: &str) -> Result<()> {
    let unreachable = |reason: String| Error::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let channel = pool
        .scheduler_channel(url, &GrpcClientConfig::default(), None)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    SchedulerGrpcClient::new(channel)
        .cancel_job(CancelJobParams {
            job_id: job_id.to_owned(),
        })
        .await
        .map_err(|status| {
            pool.forget_scheduler(url);
            unreachable(status.to_string())
        })?;
    Ok(())
}

/// `http://host:port` from the accepted spellings.
fn normalize_scheduler_url(raw: &str) -> Result<String> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let bad = |reason: String| Error::SchedulerUrl {
        url: raw.to_owned(),
        reason,
    };
    let url = url::Url::parse(&with_scheme).map_err(|e| bad(e.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("no host".to_owned()))?;
    let port = url.port().unwrap_or(DEFAULT_SCHEDULER_PORT);
    Ok(format!("http://{host}:{port}"))
}

/// Connections kept across queries: one HTTP/2 channel per scheduler and one
/// Flight client per executor, shared by concurrent queries (HTTP/2
/// multiplexes them). A connection that fails is dropped so the next query
/// dials again; tonic channels also reconnect by themselves.
///
/// A scheduler in this process gets its jobs without gRPC (see `in_process`)
/// unless the pool is [`ConnectionPool::grpc_only`].
#[derive(Default)]
pub struct ConnectionPool {
    schedulers: Mutex<HashMap<String, Channel>>,
    flights: Mutex<HashMap<(String, u16), BallistaClient>>,
    grpc_only: bool,
}

impl fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPool")
            .field("schedulers", &lock(&self.schedulers).len())
            .field("executors", &lock(&self.flights).len())
            .finish()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps of cloneable handles: nothing is left half-updated by a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConnectionPool {
    /// The pool [`remote_context`] uses.
    pub fn shared() -> Arc<ConnectionPool> {
        static SHARED: OnceLock<Arc<ConnectionPool>> = OnceLock::new();
        Arc::clone(SHARED.get_or_init(Arc::default))
    }

    /// A pool that submits every job over gRPC, even to a scheduler in this
    /// process: what a gateway apart from its scheduler does (tests of that path).
    pub fn grpc_only() -> Self {
        Self {
            grpc_only: true,
            ..Self::default()
        }
    }

    /// The scheduler at `url` when it runs in this process and may be handed jobs directly.
    fn in_process(&self, url: &str) -> Option<Server> {
        if self.grpc_only {
            None
        } else {
            in_process::find(url)
        }
    }

    /// Number of scheduler channels and executor clients held.
    pub fn len(&self) -> (usize, usize) {
        (lock(&self.schedulers).len(), lock(&self.flights).len())
    }

    /// True when no connection is held.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    async fn scheduler_channel(
        &self,
        url: &str,
        config: &GrpcClientConfig,
        customize: Option<Arc<BallistaConfigGrpcEndpoint>>,
    ) -> DfResult<Channel> {
        if let Some(channel) = lock(&self.schedulers).get(url) {
            return Ok(channel.clone());
        }
        let mut endpoint = create_grpc_client_endpoint(url.to_owned(), Some(config))
            .map_err(|e| DataFusionError::Execution(format!("scheduler {url}: {e}")))?;
        if let Some(customize) = customize {
            endpoint = customize
                .configure_endpoint(endpoint)
                .map_err(|e| DataFusionError::Execution(format!("scheduler {url}: {e}")))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| DataFusionError::Execution(format!("connect to scheduler {url}: {e}")))?;
        lock(&self.schedulers).insert(url.to_owned(), channel.clone());
        Ok(channel)
    }

    fn forget_scheduler(&self, url: &str) {
        lock(&self.schedulers).remove(url);
    }

    async fn flight_client(
        &self,
        host: &str,
        port: u16,
        config: &GrpcClientConfig,
        customize: Option<Arc<BallistaConfigGrpcEndpoint>>,
    ) -> DfResult<BallistaClient> {
        let key = (host.to_owned(), port);
        if let Some(client) = lock(&self.flights).get(&key) {
            return Ok(client.clone());
        }
        let client = BallistaClient::try_new(
            host,
            port,
            config.max_message_size,
            config.use_tls,
            customize,
            config.io_retries_times,
            config.io_retry_wait_time_ms,
            config.initial_connection_window_size,
            config.initial_stream_window_size,
        )
        .await
        .map_err(|e| {
            DataFusionError::Execution(format!("connect to executor {host}:{port}: {e}"))
        })?;
        lock(&self.flights).insert(key, client.clone());
        Ok(client)
    }

    fn forget_flight(&self, host: &str, port: u16) {
        lock(&self.flights).remove(&(host.to_owned(), port));
    }
}

/// Ballista's planner, with its `DistributedQueryExec` swapped for [`RemoteQueryExec`].
struct PooledQueryPlanner {
    inner: BallistaQueryPlanner<LogicalPlanNode>,
    scheduler_url: String,
    codec: Arc<dyn LogicalExtensionCodec>,
    pool: Arc<ConnectionPool>,
}

impl fmt::Debug for PooledQueryPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledQueryPlanner")
            .field("scheduler_url", &self.scheduler_url)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl QueryPlanner for PooledQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &SessionState,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self
            .inner
            .create_physical_plan(logical_plan, session_state)
            .await?;
        let pooled = plan.is::<DistributedQueryExec<LogicalPlanNode>>()
            && !session_state.config().ballista_config().client_pull();
        if !pooled {
            return Ok(plan);
        }
        // EXPLAIN is answered by the scheduler's own planning of the logical plan.
        let explain = matches!(
            logical_plan,
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)
        );
        let job_plan = match self.pool.in_process(&self.scheduler_url) {
            Some(server) if !explain => {
                let physical = DefaultPhysicalPlanner::default()
                    .create_physical_plan(logical_plan, session_state)
                    .await?;
                // What the scheduler's sessions apply to the plans they make.
                let options = session_state.config_options();
                let physical = job_plan_rules(session_state.runtime_env())
                    .iter()
                    .try_fold(physical, |plan, rule| rule.optimize(plan, options))?;
                JobPlan::InProcess {
                    server,
                    plan: physical,
                    ctx: Arc::new(SessionContext::new_with_state(session_state.clone())),
                }
            }
            _ => JobPlan::Logical {
                plan: plan_temporary_scans(logical_plan, session_state).await?,
                codec: Arc::clone(&self.codec),
            },
        };
        Ok(Arc::new(RemoteQueryExec::new(
            self.scheduler_url.clone(),
            Arc::clone(logical_plan.schema().inner()),
            job_plan,
            session_state.session_id().to_owned(),
            Arc::clone(&self.pool),
        )))
    }
}

/// What a job runs, in the form its scheduler takes it.
#[derive(Clone)]
enum JobPlan {
    /// For a scheduler over gRPC: serialised with `codec`, planned there.
    Logical {
        plan: LogicalPlan,
        codec: Arc<dyn LogicalExtensionCodec>,
    },
    /// For a scheduler in this process: planned here, handed over as it is.
    InProcess {
        server: Server,
        plan: Arc<dyn ExecutionPlan>,
        ctx: Arc<SessionContext>,
    },
}

impl fmt::Debug for JobPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobPlan::Logical { plan, .. } => f.debug_tuple("Logical").field(plan).finish(),
            JobPlan::InProcess { plan, .. } => f
                .debug_tuple("InProcess")
                .field(&displayable(plan.as_ref()).one_line().to_string())
                .finish(),
        }
    }
}

/// Runs its logical plan as one Ballista job (push mode: the scheduler
/// streams status updates) and streams the result partitions from the
/// executors, over pooled connections.
#[derive(Debug)]
pub struct RemoteQueryExec {
    scheduler_url: String,
    job_plan: JobPlan,
    session_id: String,
    pool: Arc<ConnectionPool>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// The plan runs once (one partition), as this job.
    job: JobHandle,
}

impl RemoteQueryExec {
    fn new(
        scheduler_url: String,
        schema: SchemaRef,
        job_plan: JobPlan,
        session_id: String,
        pool: Arc<ConnectionPool>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let job = JobHandle::new(scheduler_url.clone(), Arc::clone(&pool));
        Self {
            scheduler_url,
            job_plan,
            session_id,
            pool,
            schema,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            job,
        }
    }

    /// The scheduler's job id once the job has been accepted, for
    /// [`cancel_remote_job`] or `SchedulerHandle::cancel_job`.
    pub fn job_id(&self) -> Option<String> {
        self.job.job_id()
    }

    /// The job this plan runs as: to cancel it from elsewhere.
    pub fn job(&self) -> JobHandle {
        self.job.clone()
    }

    /// The same job plan as a new exec that has not run: each exec runs one
    /// job, so a plan kept for reuse hands out one of these per execution.
    pub fn rerun(&self) -> Arc<dyn ExecutionPlan> {
        Arc::new(Self::new(
            self.scheduler_url.clone(),
            Arc::clone(&self.schema),
            self.job_plan.clone(),
            self.session_id.clone(),
            Arc::clone(&self.pool),
        ))
    }
}

impl DisplayAs for RemoteQueryExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "RemoteQueryExec: scheduler_url={}", self.scheduler_url)
            }
            DisplayFormatType::TreeRender => writeln!(f, "scheduler_url={}", self.scheduler_url),
        }
    }
}

impl ExecutionPlan for RemoteQueryExec {
    fn name(&self) -> &str {
        "RemoteQueryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "RemoteQueryExec has no children".to_owned(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "RemoteQueryExec has one partition, asked for {partition}"
            )));
        }
        let session_config = context.session_config().clone();
        let submission = match &self.job_plan {
            JobPlan::Logical { plan, codec } => {
                let mut buf = Vec::new();
                LogicalPlanNode::try_from_logical_plan(plan, codec.as_ref())?
                    .try_encode(&mut buf)?;
                let settings = session_config
                    .options()
                    .entries()
                    .into_iter()
                    .map(|entry| KeyValuePair {
                        key: entry.key,
                        value: entry.value,
                    })
                    .collect();
                Submission::Grpc(ExecuteQueryParams {
                    query: Some(Query::LogicalPlan(buf)),
                    settings,
                    session_id: self.session_id.clone(),
                    operation_id: uuid::Uuid::new_v4().to_string(),
                })
            }
            JobPlan::InProcess { server, plan, ctx } => Submission::InProcess {
                server: server.clone(),
                plan: Arc::clone(plan),
                ctx: Arc::clone(ctx),
            },
        };
        let job = run_job(
            Arc::clone(&self.pool),
            self.scheduler_url.clone(),
            submission,
            session_config,
            self.job.clone(),
        );
        let rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let cancel_on_drop = CancelOnDrop(self.job.clone());
        let stream = futures::stream::once(job)
            .try_flatten()
            .inspect_ok(move |batch| {
                // The stream owns the guard: dropping it before the job ends cancels the job.
                let _ = &cancel_on_drop;
                rows.add(batch.num_rows())
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

impl RemoteQueryExec {
    /// For callers that hold `Arc<dyn ExecutionPlan>`.
    pub fn from_plan(plan: &Arc<dyn ExecutionPlan>) -> Option<&RemoteQueryExec> {
        plan.downcast_ref::<RemoteQueryExec>()
    }
}

/// A job on its way to the scheduler.
enum Submission {
    Grpc(ExecuteQueryParams),
    InProcess {
        server: Server,
        plan: Arc<dyn ExecutionPlan>,
        ctx: Arc<SessionContext>,
    },
}

/// A job's status updates, each with where to fetch its results from.
type JobStatuses = BoxStream<'static, DfResult<GetJobStatusResult>>;

/// Submits the job over gRPC and returns its status stream.
async fn submit_grpc(
    pool: &Arc<ConnectionPool>,
    scheduler_url: &str,
    query: ExecuteQueryParams,
    session_config: &SessionConfig,
    grpc_config: &GrpcClientConfig,
) -> DfResult<JobStatuses> {
    let max_message_size = session_config
        .ballista_config()
        .grpc_client_max_message_size();
    let customize = session_config.ballista_override_create_grpc_client_endpoint();
    let channel = pool
        .scheduler_channel(scheduler_url, grpc_config, customize)
        .await?;
    let mut scheduler = SchedulerGrpcClient::with_interceptor(
        channel,
        session_config.ballista_grpc_interceptor().as_ref().clone(),
    )
    .max_encoding_message_size(max_message_size)
    .max_decoding_message_size(max_message_size);

    let statuses = match scheduler.execute_query_push(query).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            pool.forget_scheduler(scheduler_url);
            return Err(DataFusionError::Execution(format!(
                "submit to scheduler {scheduler_url}: {status}"
            )));
        }
    };
    let pool = Arc::clone(pool);
    let url = scheduler_url.to_owned();
    Ok(statuses
        .map_err(move |status| {
            pool.forget_scheduler(&url);
            // A restarted scheduler has forgotten the job: say so rather than
            // pass on a bare transport error.
            DataFusionError::Execution(format!(
                "lost the job's status from the scheduler at {url} ({status}): \
                 the job's outcome is unknown; run the query again once the scheduler answers"
            ))
        })
        .boxed())
}

/// Hands the job to the scheduler in this process and returns its status
/// stream; the job id is known at once.
async fn submit_in_process(
    server: Server,
    plan: Arc<dyn ExecutionPlan>,
    ctx: Arc<SessionContext>,
    job_name: &str,
    job: &JobHandle,
) -> DfResult<JobStatuses> {
    let (subscriber, updates) = tokio::sync::mpsc::channel(STATUS_BUFFER);
    let job_id = server
        .submit_physical_plan(job_name, ctx, plan, Some(subscriber))
        .await
        .map_err(|e| DataFusionError::Execution(format!("submit to the scheduler: {e}")))?;
    job.accepted(job_id.as_ref()).await;
    Ok(futures::stream::unfold(updates, |mut updates| async move {
        let status = updates.recv().await?;
        let result = GetJobStatusResult {
            status: Some(status),
            flight_proxy: None,
        };
        Some((Ok(result), updates))
    })
    .boxed())
}

/// Submits the job, follows its status stream and, on success, returns the
/// concatenated result partitions.
async fn run_job(
    pool: Arc<ConnectionPool>,
    scheduler_url: String,
    submission: Submission,
    session_config: SessionConfig,
    job: JobHandle,
) -> DfResult<BoxStream<'static, DfResult<RecordBatch>>> {
    let ballista_config = session_config.ballista_config();
    let grpc_config = GrpcClientConfig::from(&ballista_config);
    let customize = session_config.ballista_override_create_grpc_client_endpoint();
    let mut statuses = match submission {
        Submission::Grpc(query) => {
            submit_grpc(&pool, &scheduler_url, query, &session_config, &grpc_config).await?
        }
        Submission::InProcess { server, plan, ctx } => {
            let job_name = ballista_config
                .settings()
                .get(BALLISTA_JOB_NAME)
                .cloned()
                .unwrap_or_default();
            submit_in_process(server, plan, ctx, &job_name, &job).await?
        }
    };

    loop {
        let GetJobStatusResult {
            status,
            flight_proxy,
        } = statuses.next().await.ok_or_else(|| {
            DataFusionError::Execution(
                "scheduler closed the job status stream before the job ended".to_owned(),
            )
        })??;
        let Some(status) = status else { continue };
        if !status.job_id.is_empty() {
            job.accepted(&status.job_id).await;
        }
        match status.status {
            None | Some(job_status::Status::Queued(_)) | Some(job_status::Status::Running(_)) => {}
            Some(job_status::Status::Failed(failed)) => {
                job.ended();
                if job.is_cancel_requested() {
                    return Err(DataFusionError::Execution(format!(
                        "Job {} was cancelled",
                        status.job_id
                    )));
                }
                return Err(DataFusionError::Execution(format!(
                    "Job {} failed: {}",
                    status.job_id, failed.error
                )));
            }
            Some(job_status::Status::Successful(SuccessfulJob {
                partition_location, ..
            })) => {
                job.ended();
                debug!(job_id = %status.job_id, partitions = partition_location.len(), "job finished");
                let fetch = FetchContext {
                    pool,
                    scheduler_url,
                    flight_proxy,
                    grpc_config,
                    customize,
                };
                let fetch = Arc::new(fetch);
                let partitions = partition_location.into_iter().map(move |location| {
                    let fetch = Arc::clone(&fetch);
                    futures::stream::once(async move { fetch.partition(location).await })
                        .try_flatten()
                });
                return Ok(futures::stream::iter(partitions).flatten().boxed());
            }
        }
    }
}

/// What fetching one result partition needs.
struct FetchContext {
    pool: Arc<ConnectionPool>,
    scheduler_url: String,
    flight_proxy: Option<FlightProxy>,
    grpc_config: GrpcClientConfig,
    customize: Option<Arc<BallistaConfigGrpcEndpoint>>,
}

impl FetchContext {
    async fn partition(&self, location: PartitionLocation) -> DfResult<SendableRecordBatchStream> {
        let executor = location.executor_meta.ok_or_else(|| {
            DataFusionError::Internal("result partition without executor metadata".to_owned())
        })?;
        let partition_id = location.partition_id.ok_or_else(|| {
            DataFusionError::Internal("result partition without partition id".to_owned())
        })?;
        if let Some(stream) = read_in_place(
            &executor.id,
            &partition_id,
            location.file_id,
            location.is_sort_shuffle,
        )? {
            return Ok(stream);
        }
        let (host, port) = fetch_address(&executor, &self.scheduler_url, &self.flight_proxy)?;
        let mut client = self
            .pool
            .flight_client(&host, port, &self.grpc_config, self.customize.clone())
            .await?;
        client
            .fetch_partition_proxied(
                &executor.id,
                &partition_id.into(),
                location.file_id,
                location.is_sort_shuffle,
                &executor.host,
                executor.port as u16,
                true,
            )
            .await
            .map_err(|e| {
                self.pool.forget_flight(&host, port);
                DataFusionError::External(Box::new(e))
            })
    }
}

/// Opens a result partition written by an executor of this process, when its
/// file is there (hash-shuffle layout; sort-shuffle output goes over Flight).
fn read_in_place(
    executor_id: &str,
    partition_id: &PartitionId,
    file_id: Option<u64>,
    is_sort_shuffle: bool,
) -> DfResult<Option<SendableRecordBatchStream>> {
    let Some(work_dir) = in_process::executor_work_dir(executor_id) else {
        return Ok(None);
    };
    if is_sort_shuffle {
        return Ok(None);
    }
    let path = create_shuffle_path(
        &work_dir,
        &JobId::new(partition_id.job_id.as_str()),
        partition_id.stage_id as usize,
        partition_id.partition_id as usize,
        file_id,
        false,
    )?;
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        // Not (or no longer) there: the executor's Flight service says why.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DataFusionError::Execution(format!(
                "result partition {}: {e}",
                path.display()
            )))
        }
    };
    let reader = StreamReader::try_new(std::io::BufReader::new(file), None)?;
    let schema = reader.schema();
    debug!(path = %path.display(), "reading a result partition in place");
    let batches = futures::stream::iter(reader.map(|batch| batch.map_err(DataFusionError::from)));
    Ok(Some(Box::pin(RecordBatchStreamAdapter::new(
        schema, batches,
    ))))
}

/// Where to fetch a result partition: the executor itself, or a Flight proxy
/// (same rules as Ballista's `get_client_host_port`).
fn fetch_address(
    executor: &ExecutorMetadata,
    scheduler_url: &str,
    proxy: &Option<FlightProxy>,
) -> DfResult<(String, u16)> {
    let split = |address: &str| -> DfResult<(String, u16)> {
        let url = url::Url::parse(address)
            .map_err(|e| DataFusionError::Execution(format!("flight proxy {address}: {e}")))?;
        let host = url.host_str().ok_or_else(|| {
            DataFusionError::Execution(format!("flight proxy {address}: no host"))
        })?;
        let port = url.port().ok_or_else(|| {
            DataFusionError::Execution(format!("flight proxy {address}: no port"))
        })?;
        Ok((host.to_owned(), port))
    };
    match proxy {
        Some(FlightProxy::External(address)) => split(&format!("http://{address}")),
        Some(FlightProxy::Local(true)) => split(scheduler_url),
        Some(FlightProxy::Local(false)) | None => Ok((executor.host.clone(), executor.port as u16)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ballista_core::extension::SessionConfigHelperExt;

    #[test]
    fn prefer_hash_join_survives_the_second_upgrade_and_reaches_the_scheduler() {
        for wanted in [true, false] {
            let config = ballista_session_config(4, wanted).upgrade_for_ballista();
            assert_eq!(config.options().optimizer.prefer_hash_join, wanted);
            assert_eq!(config.target_partitions(), 4);
            // The scheduler starts from its own defaults (prefer_hash_join =
            // false) and applies the client's settings on top.
            let on_scheduler = SessionConfig::new_with_ballista()
                .update_from_key_value_pair(&config.to_key_value_pairs());
            assert_eq!(on_scheduler.options().optimizer.prefer_hash_join, wanted);
            assert_eq!(on_scheduler.target_partitions(), 4);
        }
    }

    #[test]
    fn zero_partitions_keeps_datafusions_default() {
        let config = ballista_session_config(0, false);
        assert_eq!(
            config.target_partitions(),
            SessionConfig::new().target_partitions()
        );
    }

    #[test]
    fn scheduler_urls_are_normalized() {
        assert_eq!(normalize_scheduler_url("df://h:1").unwrap(), "http://h:1");
        assert_eq!(normalize_scheduler_url("http://h:2").unwrap(), "http://h:2");
        assert_eq!(
            normalize_scheduler_url("127.0.0.1:3").unwrap(),
            "http://127.0.0.1:3"
        );
        assert_eq!(
            normalize_scheduler_url("http://h").unwrap(),
            "http://h:50050"
        );
        assert!(normalize_scheduler_url("http://").is_err());
    }
}
