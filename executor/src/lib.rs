//! The Lakehouse executor role: a Ballista 54.1 executor with push-staged
//! scheduling, wired by hand instead of through
//! `ballista_executor::executor_process::start_executor_process`.
//!
//! Why not the stock entry point: it blocks until SIGINT/SIGTERM (it installs
//! its own signal listeners), offers no way to stop it from code (its only
//! internal stop path, the `StopExecutor` RPC, needs an executor id it never
//! returns), sets the process-global `executor_server::TERMINATING` flag on
//! stop (so every other executor in the process then heartbeats as
//! terminating and is dropped by the scheduler), advertises the configured
//! ports rather than the bound ones (so port 0 cannot work), and waits for
//! running tasks with a future that registers no waker (it hangs if tasks
//! are running at shutdown). Here the same public building blocks are
//! assembled — `Executor`, `executor_server::startup`, the Flight service,
//! the session runtime cache — with a handle that stops it gracefully.

mod error;
mod footers;
mod local_tasks;
mod pool;
mod running_tasks;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::footers::IndexedFootersEngine;
use crate::local_tasks::TaskRuntime;
use crate::running_tasks::CountingEngine;
use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::executor_status::Status as ExecutorState;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    ExecutorRegistration, ExecutorStatus, ExecutorStoppedParams, HeartBeatParams,
};
use ballista_core::serde::{
    BallistaCodec, BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec,
};
use ballista_core::utils::{
    create_grpc_client_endpoint, create_grpc_server, default_config_producer, GrpcClientConfig,
    GrpcServerConfig,
};
use ballista_core::ConfigProducer;
use ballista_executor::execution_engine::DefaultExecutionEngine;
use ballista_executor::executor::Executor;
use ballista_executor::executor_process::{structure_executor_metadata, ExecutorProcessConfig};
use ballista_executor::executor_server;
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::metrics::LoggingMetricsCollector;
use ballista_executor::runtime_cache::{
    DefaultSessionRuntimeCache, MemoryPoolPolicy, SessionRuntimeCache,
};
use ballista_executor::shutdown::{Shutdown, ShutdownNotifier};
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Channel;
use tracing::{info, warn};

pub use ballista_core::RuntimeProducer;
pub use error::{Error, Result};
pub use local_tasks::{LocalTasks, StatusReport};

/// How long shutdown waits for running tasks before leaving them behind.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for the gRPC and Flight servers to close their connections.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle Flight connections to other executors are kept this long (Ballista's default).
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Sessions whose runtime env (object-store clients, Parquet footer cache) is kept (Ballista's default).
const SESSION_RUNTIME_CACHE: usize = 16;
/// Heartbeat to the scheduler: a restarted scheduler learns of this executor
/// on its next one (Ballista's 60 s left it without executors for a minute),
/// and the scheduler declares an executor dead after five missed beats.
const HEARTBEAT_INTERVAL_SECS: u64 = 3;
/// A picked-then-released gRPC port can be taken by someone else before the
/// executor binds it again; retry with a fresh one this many times.
const GRPC_PORT_ATTEMPTS: usize = 3;

/// What an executor needs to start. A plain struct: the config layer fills it.
#[derive(Clone)]
pub struct ExecutorOptions {
    /// Address the Flight and gRPC servers bind to.
    pub bind_host: String,
    /// Host the scheduler and clients dial. Required: the scheduler is served
    /// by tonic, which does not give Ballista the peer address it would
    /// otherwise fall back to (it panics on a missing host).
    pub advertise_host: String,
    /// Flight port (shuffle and result fetches); 0 picks a free one.
    pub port: u16,
    /// gRPC port the scheduler pushes tasks to; 0 picks a free one.
    pub grpc_port: u16,
    /// The scheduler's gRPC address.
    pub scheduler_addr: SocketAddr,
    /// How long to keep retrying the first connection to the scheduler.
    pub scheduler_connect_timeout: Duration,
    /// Task slots; 0 means one per core.
    pub concurrent_tasks: usize,
    /// Where shuffle files and spills go. Always set explicitly: Ballista's
    /// fallback is a `TempDir` that is dropped at once, losing shuffle files.
    pub work_dir: PathBuf,
    /// Memory for all running tasks together, split evenly per task slot
    /// into spillable pools; `None` leaves DataFusion's unbounded pool. This
    /// is the guard to set when `prefer_hash_join` is on (hash joins do not spill).
    pub memory_pool_bytes: Option<u64>,
    /// Our logical codec (custom table providers); Ballista's by default.
    pub logical_codec: Option<Arc<dyn LogicalExtensionCodec>>,
    /// Our physical codec; must wrap Ballista's (shuffle nodes).
    pub physical_codec: Option<Arc<dyn PhysicalExtensionCodec>>,
    /// Builds the base runtime env of a session (object stores for s3://);
    /// the per-task memory pool is applied on top of it.
    pub runtime_producer: Option<RuntimeProducer>,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            bind_host: "127.0.0.1".to_owned(),
            advertise_host: "127.0.0.1".to_owned(),
            port: 50051,
            grpc_port: 50052,
            scheduler_addr: SocketAddr::from(([127, 0, 0, 1], 50050)),
            scheduler_connect_timeout: Duration::from_secs(10),
            concurrent_tasks: 0,
            work_dir: std::env::temp_dir().join("lakehouse-executor"),
            memory_pool_bytes: None,
            logical_codec: None,
            physical_codec: None,
            runtime_producer: None,
        }
    }
}

impl fmt::Debug for ExecutorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorOptions")
            .field("bind_host", &self.bind_host)
            .field("advertise_host", &self.advertise_host)
            .field("port", &self.port)
            .field("grpc_port", &self.grpc_port)
            .field("scheduler_addr", &self.scheduler_addr)
            .field("scheduler_connect_timeout", &self.scheduler_connect_timeout)
            .field("concurrent_tasks", &self.concurrent_tasks)
            .field("work_dir", &self.work_dir)
            .field("memory_pool_bytes", &self.memory_pool_bytes)
            .field("logical_codec", &self.logical_codec.is_some())
            .field("physical_codec", &self.physical_codec.is_some())
            .field("runtime_producer", &self.runtime_producer.is_some())
            .finish()
    }
}

/// A running executor. Dropping the handle stops the executor too (in the
/// background); call [`ExecutorHandle::shutdown`] to wait for it.
#[derive(Debug)]
pub struct ExecutorHandle {
    id: String,
    flight_addr: SocketAddr,
    grpc_addr: SocketAddr,
    concurrent_tasks: usize,
    running_tasks: Arc<AtomicUsize>,
    completed_tasks: Arc<AtomicU64>,
    local_tasks: LocalTasks,
    stop: oneshot::Sender<()>,
    supervisor: JoinHandle<()>,
}

impl ExecutorHandle {
    /// The id this executor registered with (shows up in scheduler logs and task statuses).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bound Flight address (shuffle and result fetches).
    pub fn flight_addr(&self) -> SocketAddr {
        self.flight_addr
    }

    /// The bound gRPC address the scheduler pushes tasks to.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Task slots this executor offers.
    pub fn concurrent_tasks(&self) -> usize {
        self.concurrent_tasks
    }

    /// Launches this executor's tasks without gRPC, for a scheduler in this process.
    pub fn local_tasks(&self) -> LocalTasks {
        self.local_tasks.clone()
    }

    /// Tasks whose work is still running, cancelled ones included until they
    /// stop; with no query running it returns to 0 (a cancelled or abandoned
    /// query must give its slots back).
    pub fn active_tasks(&self) -> usize {
        self.running_tasks.load(Ordering::Acquire)
    }

    /// A reader of [`ExecutorHandle::active_tasks`] for metrics.
    pub fn active_tasks_reader(&self) -> impl Fn() -> usize + Clone + Send + Sync + 'static {
        let running = Arc::clone(&self.running_tasks);
        move || running.load(Ordering::Acquire)
    }

    /// A reader of how many tasks this executor has run to completion since
    /// it started (failed and cancelled ones are not counted).
    pub fn completed_tasks_reader(&self) -> impl Fn() -> u64 + Clone + Send + Sync + 'static {
        let completed = Arc::clone(&self.completed_tasks);
        move || completed.load(Ordering::Relaxed)
    }

    /// True once the executor has stopped, e.g. because the scheduler told it to.
    pub fn is_stopped(&self) -> bool {
        self.supervisor.is_finished()
    }

    /// Stops gracefully: tells the scheduler it is terminating (no new
    /// tasks), waits up to 30 s for running tasks, deregisters, then closes
    /// the gRPC and Flight servers.
    pub async fn shutdown(self) -> Result<()> {
        let Self {
            stop, supervisor, ..
        } = self;
        // Err means the supervisor has already stopped on its own.
        let _ = stop.send(());
        supervisor.await?;
        Ok(())
    }
}

/// Starts an executor, registers it with the scheduler and returns once it
/// can receive tasks.
pub async fn start(opts: ExecutorOptions) -> Result<ExecutorHandle> {
    if opts.advertise_host.trim().is_empty() {
        return Err(Error::InvalidOption {
            option: "advertise_host",
            reason: "must name the host the scheduler and clients dial".to_owned(),
        });
    }
    tokio::fs::create_dir_all(&opts.work_dir)
        .await
        .map_err(|source| Error::WorkDir {
            path: opts.work_dir.clone(),
            source,
        })?;
    let work_dir = opts
        .work_dir
        .to_str()
        .ok_or_else(|| Error::InvalidOption {
            option: "work_dir",
            reason: format!("{} is not valid UTF-8", opts.work_dir.display()),
        })?
        .to_owned();
    let concurrent_tasks = match opts.concurrent_tasks {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };

    // Bound before registering so that port 0 works and the advertised port
    // is the real one; connections queue in the backlog until it serves.
    let flight_listener = TcpListener::bind((opts.bind_host.as_str(), opts.port))
        .await
        .map_err(|source| Error::Bind {
            service: "flight",
            addr: format!("{}:{}", opts.bind_host, opts.port),
            source,
        })?;
    let flight_addr = flight_listener.local_addr().map_err(|source| Error::Bind {
        service: "flight",
        addr: format!("{}:{}", opts.bind_host, opts.port),
        source,
    })?;

    let config_producer: ConfigProducer = Arc::new(default_config_producer);
    let ballista_config = config_producer().ballista_config();
    let scheduler = connect_scheduler(
        opts.scheduler_addr,
        &GrpcClientConfig::from(&ballista_config),
        opts.scheduler_connect_timeout,
    )
    .await?;

    let base_producer: RuntimeProducer = match &opts.runtime_producer {
        Some(producer) => Arc::clone(producer),
        None => {
            // One runtime for every task: Ballista asks for a runtime per task
            // decode, and building one creates (and on drop removes) a spill
            // directory under the work dir — two filesystem writes per task.
            let env = RuntimeEnvBuilder::new()
                .with_temp_file_path(work_dir.clone())
                .build_arc()
                .map_err(|e| Error::Runtime(BallistaError::from(e)))?;
            Arc::new(move |_| Ok(Arc::clone(&env)))
        }
    };
    // Scans resolve their object stores and share the footer cache through `footer_runtime`.
    let (base_producer, footer_runtime) = share_metadata_cache(base_producer)?;
    let pool_policy = memory_pool_policy(opts.memory_pool_bytes, concurrent_tasks)?;
    let runtime_producer: RuntimeProducer = {
        let base = Arc::clone(&base_producer);
        let policy = Arc::clone(&pool_policy);
        Arc::new(move |config| policy(base(config)?, config))
    };
    let runtime_cache: Arc<dyn SessionRuntimeCache> = Arc::new(DefaultSessionRuntimeCache::new(
        base_producer,
        pool_policy,
        SESSION_RUNTIME_CACHE,
    ));
    let running_tasks = Arc::new(AtomicUsize::new(0));
    let completed_tasks = Arc::new(AtomicU64::new(0));
    let stages = DefaultExecutionEngine::with_client_pool(Arc::new(pool::FlightClientPool::new(
        CLIENT_IDLE_TIMEOUT,
    )));
    let engine = Arc::new(CountingEngine::new(
        Arc::new(IndexedFootersEngine::new(Arc::new(stages), footer_runtime)),
        Arc::clone(&running_tasks),
        Arc::clone(&completed_tasks),
    ));
    let codec: BallistaCodec<LogicalPlanNode, PhysicalPlanNode> = BallistaCodec::new(
        opts.logical_codec
            .clone()
            .unwrap_or_else(|| Arc::new(BallistaLogicalExtensionCodec::default())),
        opts.physical_codec
            .clone()
            .unwrap_or_else(|| Arc::new(BallistaPhysicalExtensionCodec::default())),
    );

    let task_runtime =
        TaskRuntime::new(concurrent_tasks).map_err(|source| Error::TaskRuntime { source })?;
    let executor_id = uuid::Uuid::new_v4().to_string();
    let notifier = ShutdownNotifier::new();
    let mut attempt = 1;
    let (executor, grpc_port, grpc_task, stop_requests) = loop {
        let grpc_port = match opts.grpc_port {
            0 => free_port(&opts.bind_host)?,
            port => port,
        };
        let process_config = Arc::new(ExecutorProcessConfig {
            bind_host: opts.bind_host.clone(),
            external_host: Some(opts.advertise_host.clone()),
            port: flight_addr.port(),
            grpc_port,
            scheduler_host: opts.scheduler_addr.ip().to_string(),
            scheduler_port: opts.scheduler_addr.port(),
            concurrent_tasks,
            task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
            work_dir: Some(work_dir.clone()),
            memory_pool_size: opts.memory_pool_bytes,
            override_logical_codec: opts.logical_codec.clone(),
            override_physical_codec: opts.physical_codec.clone(),
            executor_heartbeat_interval_seconds: HEARTBEAT_INTERVAL_SECS,
            ..ExecutorProcessConfig::default()
        });
        let metadata =
            structure_executor_metadata(&executor_id, &process_config, concurrent_tasks as u32);
        let executor = Arc::new(
            Executor::new(
                metadata,
                &work_dir,
                Arc::clone(&runtime_producer),
                Arc::clone(&config_producer),
                Arc::default(),
                Arc::new(LoggingMetricsCollector::default()),
                concurrent_tasks,
                engine.clone(),
            )
            .with_session_runtime_cache(Some(Arc::clone(&runtime_cache))),
        );
        // The executor's gRPC service sends here when the scheduler asks it to stop.
        let (stop_tx, stop_rx) = mpsc::channel::<bool>(8);
        match executor_server::startup(
            scheduler.clone(),
            process_config,
            Arc::clone(&executor),
            codec.clone(),
            stop_tx,
            &notifier,
        )
        .await
        {
            Ok(task) => break (executor, grpc_port, task, stop_rx),
            Err(BallistaError::IoError(e))
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && opts.grpc_port == 0
                    && attempt < GRPC_PORT_ATTEMPTS =>
            {
                warn!(
                    grpc_port,
                    attempt, "picked executor gRPC port was taken; retrying"
                );
                attempt += 1;
            }
            Err(source) => {
                return Err(Error::Register {
                    scheduler: opts.scheduler_addr,
                    source,
                })
            }
        }
    };
    let grpc_addr = SocketAddr::new(flight_addr.ip(), grpc_port);
    let local_tasks = LocalTasks::new(Arc::clone(&executor), engine, codec, task_runtime);

    let flight_task = spawn_flight(
        flight_listener,
        work_dir,
        notifier.subscribe_for_shutdown(),
        &GrpcServerConfig::default(),
    );

    let metadata = executor.metadata.clone();
    let (stop, stop_signal) = oneshot::channel();
    let supervisor = tokio::spawn(supervise(Supervised {
        executor,
        metadata,
        scheduler,
        notifier,
        grpc_task,
        flight_task,
        stop_requests,
        stop_signal,
    }));
    info!(
        executor_id = %executor_id,
        %flight_addr,
        %grpc_addr,
        concurrent_tasks,
        "executor registered"
    );
    Ok(ExecutorHandle {
        id: executor_id,
        flight_addr,
        grpc_addr,
        concurrent_tasks,
        running_tasks,
        completed_tasks,
        local_tasks,
        stop,
        supervisor,
    })
}

/// Connects to the scheduler, retrying until `patience` has passed so that
/// an executor may start before its scheduler.
async fn connect_scheduler(
    addr: SocketAddr,
    config: &GrpcClientConfig,
    patience: Duration,
) -> Result<SchedulerGrpcClient<Channel>> {
    let endpoint =
        create_grpc_client_endpoint(format!("http://{addr}"), Some(config)).map_err(|e| {
            Error::Register {
                scheduler: addr,
                source: BallistaError::TonicError(e),
            }
        })?;
    let deadline = Instant::now() + patience;
    let channel = loop {
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(e) if Instant::now() < deadline => {
                warn!(scheduler = %addr, error = %e, "scheduler not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(Error::Register {
                    scheduler: addr,
                    source: BallistaError::TonicError(e),
                })
            }
        }
    };
    Ok(SchedulerGrpcClient::new(channel)
        .max_encoding_message_size(config.max_message_size)
        .max_decoding_message_size(config.max_message_size))
}

/// Asks the OS for a free port. `executor_server::startup` binds the gRPC
/// port itself from a number, so the port is released again before use (a
/// short race, covered by retrying).
fn free_port(host: &str) -> Result<u16> {
    let bind_err = |source| Error::Bind {
        service: "grpc",
        addr: format!("{host}:0"),
        source,
    };
    let listener = std::net::TcpListener::bind((host, 0)).map_err(bind_err)?;
    Ok(listener.local_addr().map_err(bind_err)?.port())
}

/// Makes every runtime of `base` share one Parquet metadata cache. Ballista
/// decodes each task's plan with a runtime of its own, and the decoded scans
/// cache footers (with their page index: [`footers`]) in that runtime: with a fresh cache per task,
/// every task read its files' metadata again (0.8-1.5 ms of a point query on a
/// 1M-row file, which in-process DataFusion takes from its cache). Also returns
/// the runtime whose cache is shared.
fn share_metadata_cache(base: RuntimeProducer) -> Result<(RuntimeProducer, Arc<RuntimeEnv>)> {
    let owner = base(&datafusion::prelude::SessionConfig::new())
        .map_err(|e| Error::Runtime(BallistaError::from(e)))?;
    let metadata_cache = owner.cache_manager.get_file_metadata_cache();
    let shared = Arc::clone(&owner);
    let producer: RuntimeProducer = Arc::new(move |config| {
        let runtime = base(config)?;
        // A producer that hands out one runtime (ours) shares its cache already.
        if Arc::ptr_eq(&runtime, &shared) {
            return Ok(runtime);
        }
        let mut runtime = RuntimeEnvBuilder::from_runtime_env(&runtime);
        runtime.cache_manager = runtime
            .cache_manager
            .with_file_metadata_cache(Some(Arc::clone(&metadata_cache)));
        runtime.build_arc()
    });
    Ok((producer, owner))
}

/// Per-task spillable memory pools carved out of `total` (Ballista's policy,
/// private in its crate); without a total the base env is used unchanged.
fn memory_pool_policy(total: Option<u64>, slots: usize) -> Result<MemoryPoolPolicy> {
    let Some(total) = total else {
        return Ok(Arc::new(|base, _| Ok(base)));
    };
    let per_task = usize::try_from(total / slots.max(1) as u64).unwrap_or(usize::MAX);
    if per_task == 0 {
        return Err(Error::InvalidOption {
            option: "memory_pool_bytes",
            reason: format!("{total} bytes is less than one byte per task slot ({slots})"),
        });
    }
    Ok(Arc::new(move |base, _| {
        let pool: Arc<dyn MemoryPool> = Arc::new(FairSpillPool::new(per_task));
        RuntimeEnvBuilder::from_runtime_env(&base)
            .with_memory_pool(pool)
            .build_arc()
    }))
}

/// Serves Ballista's Flight service on the pre-bound listener with
/// TCP_NODELAY (tonic ignores the builder's nodelay for a given listener).
fn spawn_flight(
    listener: TcpListener,
    work_dir: String,
    mut shutdown: Shutdown,
    config: &GrpcServerConfig,
) -> JoinHandle<Result<(), BallistaError>> {
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(config.tcp_keepalive_seconds)));
    let max_message_size = ExecutorProcessConfig::default().grpc_max_decoding_message_size as usize;
    let service = FlightServiceServer::new(BallistaFlightService::new(work_dir))
        .max_decoding_message_size(max_message_size)
        .max_encoding_message_size(max_message_size);
    // Kubernetes' gRPC probes: SERVING (the empty service name) while this serves.
    // Here and not on the task-launch port: Ballista's `executor_server::startup`
    // builds that server itself and takes no extra services.
    let (_health, health_service) = tonic_health::server::health_reporter();
    let server = create_grpc_server(config)
        .add_service(health_service)
        .add_service(service);
    tokio::spawn(async move {
        server
            .serve_with_incoming_shutdown(incoming, async move { shutdown.recv().await })
            .await
            .map_err(BallistaError::TonicError)
    })
}

/// Everything the supervising task owns.
struct Supervised {
    executor: Arc<Executor>,
    metadata: ExecutorRegistration,
    scheduler: SchedulerGrpcClient<Channel>,
    notifier: ShutdownNotifier,
    grpc_task: JoinHandle<Result<(), BallistaError>>,
    flight_task: JoinHandle<Result<(), BallistaError>>,
    stop_requests: mpsc::Receiver<bool>,
    stop_signal: oneshot::Receiver<()>,
}

/// Why the executor is stopping.
enum Trigger {
    /// Our handle asked (or was dropped).
    Handle,
    /// The scheduler sent StopExecutor; it already considers us gone.
    Scheduler,
    /// One of our servers ended on its own.
    GrpcExited,
    FlightExited,
}

/// Waits for a reason to stop, then stops in Ballista's order with the
/// drain moved before deregistration, so running tasks can still report.
async fn supervise(s: Supervised) {
    let Supervised {
        executor,
        metadata,
        mut scheduler,
        notifier,
        mut grpc_task,
        mut flight_task,
        mut stop_requests,
        stop_signal,
    } = s;
    let id = metadata.id.clone();
    let trigger = tokio::select! {
        _ = stop_signal => Trigger::Handle,
        _ = stop_requests.recv() => Trigger::Scheduler,
        r = &mut grpc_task => {
            warn!(executor_id = %id, result = ?r, "executor gRPC server exited");
            Trigger::GrpcExited
        }
        r = &mut flight_task => {
            warn!(executor_id = %id, result = ?r, "executor Flight server exited");
            Trigger::FlightExited
        }
    };

    if !matches!(trigger, Trigger::Scheduler) {
        let reason = match trigger {
            Trigger::Handle => "executor shut down",
            _ => "executor service exited",
        };
        let terminating = HeartBeatParams {
            executor_id: id.clone(),
            metrics: vec![],
            status: Some(ExecutorStatus {
                status: Some(ExecutorState::Terminating(String::new())),
            }),
            metadata: Some(metadata),
        };
        if let Err(e) = scheduler.heart_beat_from_executor(terminating).await {
            warn!(executor_id = %id, error = %e, "could not tell the scheduler we are terminating");
        }
        drain(&executor, DRAIN_TIMEOUT).await;
        let stopped = ExecutorStoppedParams {
            executor_id: id.clone(),
            reason: reason.to_owned(),
        };
        if let Err(e) = scheduler.executor_stopped(stopped).await {
            warn!(executor_id = %id, error = %e, "could not deregister from the scheduler");
        }
    }

    // Dropping the broadcast sender and our completion sender lets the
    // heartbeater, task runners and both servers finish.
    let ShutdownNotifier {
        notify_shutdown,
        mut shutdown_complete_rx,
        shutdown_complete_tx,
    } = notifier;
    let _ = notify_shutdown.send(());
    drop(notify_shutdown);
    drop(shutdown_complete_tx);
    let _ = shutdown_complete_rx.recv().await;

    // Ballista's executor server only stops once clients close their
    // connections; do not wait for that forever.
    if !matches!(trigger, Trigger::GrpcExited) {
        stop_server(grpc_task, "gRPC", &id).await;
    }
    if !matches!(trigger, Trigger::FlightExited) {
        stop_server(flight_task, "Flight", &id).await;
    }
    info!(executor_id = %id, "executor stopped");
}

async fn stop_server(task: JoinHandle<Result<(), BallistaError>>, name: &str, id: &str) {
    let abort = task.abort_handle();
    match tokio::time::timeout(SERVER_STOP_TIMEOUT, task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(executor_id = %id, error = %e, "{name} server failed"),
        Ok(Err(e)) => warn!(executor_id = %id, error = %e, "{name} server task failed"),
        Err(_) => {
            warn!(executor_id = %id, "{name} server did not close in time; aborting");
            abort.abort();
        }
    }
}

/// Waits until no task runs or `timeout` passes. Ballista's
/// `TasksDrainedFuture` cannot be used: it returns Pending without
/// registering a waker, so it never completes once tasks are running.
async fn drain(executor: &Executor, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while executor.active_task_count() > 0 {
        if Instant::now() >= deadline {
            warn!(
                running = executor.active_task_count(),
                "tasks still running after the drain timeout; stopping anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use datafusion::execution::memory_pool::MemoryLimit;
    use datafusion::execution::runtime_env::RuntimeEnv;
    use datafusion::prelude::SessionConfig;

    #[test]
    fn every_runtime_shares_one_parquet_metadata_cache() {
        let fresh: RuntimeProducer = Arc::new(|_| Ok(Arc::new(RuntimeEnv::default())));
        let (shared, owner) = share_metadata_cache(fresh).unwrap();
        let config = SessionConfig::new();
        let (a, b) = (shared(&config).unwrap(), shared(&config).unwrap());
        assert!(!Arc::ptr_eq(&a, &b), "still a runtime per task");
        assert!(Arc::ptr_eq(
            &a.cache_manager.get_file_metadata_cache(),
            &b.cache_manager.get_file_metadata_cache()
        ));
        assert!(Arc::ptr_eq(
            &a.cache_manager.get_file_metadata_cache(),
            &owner.cache_manager.get_file_metadata_cache()
        ));
    }

    #[test]
    fn memory_pool_is_split_per_task_slot() {
        let policy = memory_pool_policy(Some(8 << 20), 4).unwrap();
        let env = policy(Arc::new(RuntimeEnv::default()), &SessionConfig::new()).unwrap();
        assert!(matches!(env.memory_pool.memory_limit(), MemoryLimit::Finite(n) if n == 2 << 20));
    }

    #[test]
    fn no_memory_pool_keeps_the_base_env() {
        let base = Arc::new(RuntimeEnv::default());
        let env =
            memory_pool_policy(None, 4).unwrap()(Arc::clone(&base), &SessionConfig::new()).unwrap();
        assert!(Arc::ptr_eq(&base, &env));
    }

    #[test]
    fn a_pool_smaller_than_the_slots_is_rejected() {
        assert!(memory_pool_policy(Some(3), 4).is_err());
    }

    #[tokio::test]
    async fn empty_advertise_host_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = start(ExecutorOptions {
            advertise_host: String::new(),
            work_dir: dir.path().to_owned(),
            ..ExecutorOptions::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidOption {
                option: "advertise_host",
                ..
            }
        ));
    }

    #[tokio::test]
    async fn unreachable_scheduler_fails_registration() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port("127.0.0.1").unwrap();
        let err = start(ExecutorOptions {
            port: 0,
            grpc_port: 0,
            scheduler_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            scheduler_connect_timeout: Duration::ZERO,
            work_dir: dir.path().to_owned(),
            ..ExecutorOptions::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Register { .. }), "{err}");
    }
}
