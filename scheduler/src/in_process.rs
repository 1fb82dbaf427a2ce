//! Schedulers running in this process, found by their URL.
//!
//! A session whose scheduler lives in the same process (`lakehouse up`, the
//! tests) hands each job over directly: the physical plan it has already
//! built and a status channel. Over gRPC the logical plan is serialised,
//! decoded by the scheduler, optimised and planned a second time, and the
//! status comes back as another stream: on a point query that was about a
//! millisecond of a ~10 ms job. The job itself is the same Ballista job —
//! staged by the scheduler, run by the executors, counted, cancellable.
//!
//! Executors in this process are listed with their work directory and task
//! launcher: a job's result partitions they wrote are read from the file
//! instead of fetched back over Flight (a gRPC round trip and a copy per
//! partition), and their tasks are launched and report back without gRPC
//! (`LocalFirstLauncher`; see `lakehouse_executor::LocalTasks`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::{MultiTaskDefinition, UpdateTaskStatusParams};
use ballista_core::serde::scheduler::ExecutorMetadata;
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::state::executor_manager::ExecutorManager;
use ballista_scheduler::state::task_manager::TaskLauncher;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use lakehouse_executor::{LocalTasks, StatusReport};
use tonic::Request;

use crate::client::lock;

pub(crate) type Server = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

fn registry() -> &'static Mutex<HashMap<String, Server>> {
    static SCHEDULERS: OnceLock<Mutex<HashMap<String, Server>>> = OnceLock::new();
    SCHEDULERS.get_or_init(Mutex::default)
}

/// The scheduler serving `url` in this process, if there is one.
pub(crate) fn find(url: &str) -> Option<Server> {
    lock(registry()).get(url).cloned()
}

/// Listed while alive: dropping it (the scheduler stops) unlists the URL.
#[derive(Debug)]
pub(crate) struct Listing {
    url: String,
}

impl Listing {
    pub(crate) fn new(url: &str, server: Server) -> Self {
        lock(registry()).insert(url.to_owned(), server);
        Self {
            url: url.to_owned(),
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        lock(registry()).remove(&self.url);
    }
}

fn executors() -> &'static Mutex<HashMap<String, LocalTasks>> {
    static EXECUTORS: OnceLock<Mutex<HashMap<String, LocalTasks>>> = OnceLock::new();
    EXECUTORS.get_or_init(Mutex::default)
}

/// The work directory of executor `id` when it runs in this process.
pub(crate) fn executor_work_dir(id: &str) -> Option<PathBuf> {
    lock(executors())
        .get(id)
        .map(|tasks| PathBuf::from(tasks.work_dir()))
}

/// An executor of this process, listed while alive so that its result files
/// are read in place and a scheduler of this process hands it tasks directly.
#[derive(Debug)]
pub struct LocalExecutor {
    id: String,
}

impl LocalExecutor {
    /// Lists the executor whose tasks `tasks` launches.
    pub fn list(tasks: LocalTasks) -> Self {
        let id = tasks.executor_id().to_owned();
        lock(executors()).insert(id.clone(), tasks);
        Self { id }
    }
}

impl Drop for LocalExecutor {
    fn drop(&mut self) {
        lock(executors()).remove(&self.id);
    }
}

/// Launches tasks on executors of this process without gRPC, their statuses
/// going straight to the scheduler; other executors get Ballista's
/// `LaunchMultiTask` call as before.
pub(crate) struct LocalFirstLauncher {
    scheduler_id: String,
    /// The scheduler's own URL: statuses go to the scheduler listed under it
    /// (found at launch; holding it here would keep it alive forever).
    url: String,
}

impl LocalFirstLauncher {
    pub(crate) fn new(scheduler_id: String, url: String) -> Self {
        Self { scheduler_id, url }
    }
}

#[async_trait::async_trait]
impl TaskLauncher for LocalFirstLauncher {
    async fn launch_tasks(
        &self,
        executor: &ExecutorMetadata,
        tasks: Vec<MultiTaskDefinition>,
        executor_manager: &ExecutorManager,
    ) -> ballista_core::error::Result<()> {
        let local = lock(executors()).get(&executor.id).cloned();
        match (local, find(&self.url)) {
            (Some(local), Some(server)) => {
                local.launch(tasks, &status_report(server, executor.id.clone()))
            }
            _ => {
                executor_manager
                    .launch_multi_task(&executor.id, tasks, self.scheduler_id.clone())
                    .await
            }
        }
    }
}

/// Hands each status to the scheduler as its `UpdateTaskStatus` handler would get it.
fn status_report(server: Server, executor_id: String) -> StatusReport {
    Arc::new(move |status| {
        let (server, executor_id) = (server.clone(), executor_id.clone());
        Box::pin(async move {
            let params = UpdateTaskStatusParams {
                executor_id,
                task_status: vec![status],
            };
            // The handler logs its own errors (a job already gone, a stopped scheduler).
            let _ = SchedulerGrpc::update_task_status(&server, Request::new(params)).await;
        })
    })
}
