//! Tasks handed over by a scheduler in this process (`lakehouse up`).
//!
//! Over gRPC every task costs two loopback calls: the scheduler's
//! `LaunchMultiTask` to the executor and the executor's `UpdateTaskStatus`
//! back, each through HTTP/2 framing, protobuf and several task wake-ups
//! (~0.6 ms and ~0.2 ms of a ~7 ms point query). Here the scheduler calls
//! [`LocalTasks::launch`] and gets each status through a callback. The tasks
//! are the same: decoded from the same task definitions, run through the same
//! `Executor` (so the scheduler's `CancelTasks` still aborts them and they are
//! counted), on a runtime of their own as Ballista's task runner pool does.

use std::fmt;
use std::sync::Arc;

use ballista_core::error::BallistaError;
use ballista_core::serde::protobuf::{
    task_status, FailedTask, MultiTaskDefinition, OperatorMetricsSet, SuccessfulTask, TaskStatus,
};
use ballista_core::serde::scheduler::from_proto::get_task_definition_vec;
use ballista_core::serde::scheduler::{PartitionId, TaskDefinition};
use ballista_core::serde::BallistaCodec;
use ballista_executor::execution_engine::ExecutionEngine;
use ballista_executor::executor::Executor;
use datafusion::execution::context::TaskContext;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use futures::future::BoxFuture;
use lakehouse_common::{Clock, SystemClock};
use tracing::{debug, info};

/// Where a task's status goes when the task ends.
pub type StatusReport = Arc<dyn Fn(TaskStatus) -> BoxFuture<'static, ()> + Send + Sync>;

/// This executor's tasks, launched without gRPC. Cloning shares the runtime.
#[derive(Clone)]
pub struct LocalTasks {
    inner: Arc<Inner>,
}

struct Inner {
    executor: Arc<Executor>,
    engine: Arc<dyn ExecutionEngine>,
    codec: BallistaCodec<LogicalPlanNode, PhysicalPlanNode>,
    runtime: TaskRuntime,
}

impl fmt::Debug for LocalTasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTasks")
            .field("executor_id", &self.executor_id())
            .finish_non_exhaustive()
    }
}

impl LocalTasks {
    pub(crate) fn new(
        executor: Arc<Executor>,
        engine: Arc<dyn ExecutionEngine>,
        codec: BallistaCodec<LogicalPlanNode, PhysicalPlanNode>,
        runtime: TaskRuntime,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                executor,
                engine,
                codec,
                runtime,
            }),
        }
    }

    pub fn executor_id(&self) -> &str {
        &self.inner.executor.metadata.id
    }

    /// Where the executor writes its shuffle and result files.
    pub fn work_dir(&self) -> &str {
        &self.inner.executor.work_dir
    }

    /// Decodes `tasks` as the executor's gRPC service does (an undecodable
    /// task fails the launch, as it fails that call) and starts each one;
    /// `report` gets its status when it ends.
    pub fn launch(
        &self,
        tasks: Vec<MultiTaskDefinition>,
        report: &StatusReport,
    ) -> Result<(), BallistaError> {
        let executor = &self.inner.executor;
        let registry = &executor.function_registry;
        for multi_task in tasks {
            let decoded = get_task_definition_vec(
                multi_task,
                Arc::clone(&executor.runtime_producer),
                executor.produce_config(),
                registry.scalar_functions.clone(),
                registry.aggregate_functions.clone(),
                registry.window_functions.clone(),
                registry.higher_order_functions.clone(),
                self.inner.codec.clone(),
            )?;
            for task in decoded {
                let inner = Arc::clone(&self.inner);
                let report = Arc::clone(report);
                self.inner.runtime.spawn(async move {
                    let status = inner.run(task).await;
                    report(status).await;
                });
            }
        }
        Ok(())
    }
}

impl Inner {
    /// What Ballista's `ExecutorServer::run_task` does, returning the status
    /// instead of queueing it for the next `UpdateTaskStatus` call.
    async fn run(&self, task: TaskDefinition) -> TaskStatus {
        let start_exec_time = now_ms();
        let identity = format!(
            "TID {} {}/{}.{}/{}.{}",
            task.task_id,
            task.job_id,
            task.stage_id,
            task.stage_attempt_num,
            task.partition_id,
            task.task_attempt_num
        );
        let partition = PartitionId {
            job_id: task.job_id.clone(),
            stage_id: task.stage_id,
            partition_id: task.partition_id,
        };
        let executor = &self.executor;
        let stage = self.engine.create_query_stage_exec(
            task.job_id.clone(),
            task.stage_id,
            task.partition_id,
            task.plan,
            &executor.work_dir,
            &task.session_config,
        );
        let runtime = executor.produce_runtime_for_session(&task.session_id, &task.session_config);
        let (result, metrics) = match (stage, runtime) {
            (Ok(stage), Ok(runtime)) => {
                let functions = &task.function_registry;
                let context = Arc::new(TaskContext::new(
                    Some(identity.clone()),
                    task.session_id,
                    task.session_config,
                    functions.scalar_functions.clone(),
                    functions.higher_order_functions.clone(),
                    functions.aggregate_functions.clone(),
                    functions.window_functions.clone(),
                    runtime,
                ));
                info!(task = %identity, "executing task in process");
                let result = executor
                    .execute_query_stage(task.task_id, partition, Arc::clone(&stage), context)
                    .await;
                let metrics = stage
                    .collect_plan_metrics()
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect::<Result<Vec<OperatorMetricsSet>, BallistaError>>()
                    .unwrap_or_default();
                (result, metrics)
            }
            (Err(e), _) | (_, Err(e)) => (Err(BallistaError::from(e)), Vec::new()),
        };
        debug!(task = %identity, ok = result.is_ok(), "task ended");
        let status = match result {
            Ok(partitions) => task_status::Status::Successful(SuccessfulTask {
                executor_id: executor.metadata.id.clone(),
                partitions,
            }),
            Err(e) => task_status::Status::Failed(FailedTask::from(e)),
        };
        TaskStatus {
            task_id: task.task_id as u32,
            job_id: task.job_id.to_string(),
            stage_id: task.stage_id as u32,
            stage_attempt_num: task.stage_attempt_num as u32,
            partition_id: task.partition_id as u32,
            launch_time: task.launch_time,
            start_exec_time,
            end_exec_time: now_ms(),
            metrics,
            status: Some(status),
        }
    }
}

/// A multi-threaded runtime for task work, so long tasks do not hold up the
/// process's own runtime (gRPC, Flight SQL, heartbeats). Dropping it leaves
/// its threads to end in the background: it may be dropped in async code.
pub(crate) struct TaskRuntime(Option<tokio::runtime::Runtime>);

impl TaskRuntime {
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("local_task")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.0 {
            runtime.spawn(work);
        }
    }
}

impl Drop for TaskRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Milliseconds since the epoch, as Ballista stamps task times.
fn now_ms() -> u64 {
    u64::try_from(SystemClock.now_ms()).unwrap_or(0)
}
