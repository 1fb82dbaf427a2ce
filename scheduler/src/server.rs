//! Starting and stopping the scheduler: Ballista's `SchedulerServer` with
//! push-staged scheduling, served by tonic on our own listener.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::serde::{
    BallistaCodec, BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec,
};
use ballista_core::utils::{
    create_grpc_server, default_config_producer, default_session_builder, GrpcServerConfig,
};
use ballista_core::ConfigProducer;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use lakehouse_common::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::executor_loss::reoffer_tasks_of_lost_executors;
use crate::grpc::AnnouncingScheduler;
use crate::in_process::{Listing, LocalFirstLauncher, Server};
use crate::metrics::{JobCounter, JobCounts};
use crate::result_partitions::KeepResultPartitions;
use crate::status::StatusService;
use crate::useful_file_ranges::UsefulFileRanges;

/// The physical rules the scheduler's sessions add to DataFusion's, in order;
/// a job planned elsewhere in this process gets the same ones. `env` is the
/// planning session's runtime (its footer cache tells which file ranges hold rows).
pub(crate) fn job_plan_rules(
    env: &RuntimeEnv,
) -> [Arc<dyn PhysicalOptimizerRule + Send + Sync>; 2] {
    let metadata = env.cache_manager.get_file_metadata_cache();
    [
        Arc::new(UsefulFileRanges::new(metadata)),
        Arc::new(KeepResultPartitions),
    ]
}

/// How long `shutdown` waits for open connections (executors, clients) to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Silence after which an executor counts as dead and its tasks run elsewhere:
/// five of the executors' 3 s heartbeats. Ballista's 180 s (checked every 15 s)
/// leaves a query whose executor was killed waiting minutes.
const EXECUTOR_TIMEOUT_SECS: u64 = 15;
/// How often executors are checked against that timeout.
const EXPIRE_DEAD_EXECUTORS_EVERY_SECS: u64 = 1;

/// What a scheduler needs to start. A plain struct: the config layer fills it.
#[derive(Clone)]
pub struct SchedulerOptions {
    /// Address the gRPC server binds to.
    pub bind_host: String,
    /// gRPC port; 0 picks a free one (see [`SchedulerHandle::addr`]).
    pub port: u16,
    /// Host executors and clients dial. It is also the scheduler's id: executors
    /// send task updates to `advertise_host:port`, so it must be reachable.
    pub advertise_host: String,
    /// Jobs still running this long after they were queued are cancelled
    /// (a job whose executors all die hangs in Ballista 54). Zero disables it.
    pub job_timeout: Duration,
    /// Our logical codec (custom table providers); Ballista's by default.
    pub logical_codec: Option<Arc<dyn LogicalExtensionCodec>>,
    /// Our physical codec; must wrap Ballista's (shuffle nodes).
    pub physical_codec: Option<Arc<dyn PhysicalExtensionCodec>>,
    /// Runtime env shared by all planning sessions (object stores for s3://,
    /// needed to list files and read footers); a fresh default one per session
    /// otherwise.
    pub runtime_env: Option<Arc<RuntimeEnv>>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            bind_host: "127.0.0.1".to_owned(),
            port: 50050,
            advertise_host: "127.0.0.1".to_owned(),
            job_timeout: Duration::from_secs(3600),
            logical_codec: None,
            physical_codec: None,
            runtime_env: None,
        }
    }
}

impl fmt::Debug for SchedulerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerOptions")
            .field("bind_host", &self.bind_host)
            .field("port", &self.port)
            .field("advertise_host", &self.advertise_host)
            .field("job_timeout", &self.job_timeout)
            .field("logical_codec", &self.logical_codec.is_some())
            .field("physical_codec", &self.physical_codec.is_some())
            .field("runtime_env", &self.runtime_env.is_some())
            .finish()
    }
}

/// A running scheduler. Dropping the handle stops serving too; call
/// [`SchedulerHandle::shutdown`] to wait for it.
pub struct SchedulerHandle {
    addr: SocketAddr,
    url: String,
    counter: Arc<JobCounter>,
    server: Server,
    stop: watch::Sender<bool>,
    serve: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    housekeeping: JoinHandle<()>,
    /// Sessions of this process reach the scheduler without gRPC while it is listed.
    _listing: Listing,
}

impl fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerHandle")
            .field("addr", &self.addr)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SchedulerHandle {
    /// The bound address, with the real port when 0 was asked for.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://advertise_host:port`: what executors and [`crate::remote_context`] dial.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Job totals since start.
    pub fn job_counts(&self) -> JobCounts {
        self.counter.counts()
    }

    /// A cheap, cloneable reader of [`Self::job_counts`] that outlives the
    /// handle borrow (for /metrics collectors).
    pub fn job_counts_reader(&self) -> impl Fn() -> JobCounts + Clone + Send + Sync + 'static {
        let counter = Arc::clone(&self.counter);
        move || counter.counts()
    }

    /// Cancels a job; it fails with "Cancelled" for its client. The id comes
    /// from `RemoteQueryExec::job_id` on the client side. A job still being
    /// planned is cancelled as soon as it is submitted.
    pub async fn cancel_job(&self, job_id: &str) -> Result<()> {
        self.counter.request_cancel(job_id, now_ms());
        self.server.cancel_job(job_id.into()).await?;
        Ok(())
    }

    /// Stops accepting connections, waits up to 5 s for open ones to close,
    /// and stops the job-timeout and deferred-cancel task. Ballista's event loop and its
    /// dead-executor check cannot be stopped from outside (no public stop in
    /// 54.1); they idle until the runtime ends.
    pub async fn shutdown(self) -> Result<()> {
        let Self {
            stop,
            serve,
            housekeeping,
            ..
        } = self;
        let _ = stop.send(true);
        housekeeping.await?;
        let abort = serve.abort_handle();
        match tokio::time::timeout(SHUTDOWN_GRACE, serve).await {
            Ok(served) => served??,
            Err(_) => {
                warn!("scheduler connections still open after {SHUTDOWN_GRACE:?}; closing them");
                abort.abort();
            }
        }
        info!("scheduler stopped");
        Ok(())
    }
}

/// Starts a push-staged scheduler and returns once it accepts connections.
pub async fn start(opts: SchedulerOptions) -> Result<SchedulerHandle> {
    if opts.advertise_host.trim().is_empty() {
        return Err(Error::InvalidOption {
            option: "advertise_host",
            reason: "must name the host executors and clients dial".to_owned(),
        });
    }
    let bind_addr = format!("{}:{}", opts.bind_host, opts.port);
    let listener = TcpListener::bind((opts.bind_host.as_str(), opts.port))
        .await
        .map_err(|source| Error::Bind {
            addr: bind_addr.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: bind_addr,
        source,
    })?;

    // The real port goes into the config: `scheduler_name()` (host:port) is
    // where executors send task status updates.
    let mut config = SchedulerConfig::default()
        .with_scheduler_policy(TaskSchedulingPolicy::PushStaged)
        .with_hostname(opts.advertise_host.clone())
        .with_port(addr.port());
    config.executor_timeout_seconds = EXECUTOR_TIMEOUT_SECS;
    config.expire_dead_executor_interval_seconds = EXPIRE_DEAD_EXECUTORS_EVERY_SECS;
    config.bind_host = opts.bind_host.clone();
    config.override_logical_codec = opts.logical_codec.clone();
    config.override_physical_codec = opts.physical_codec.clone();
    let config_producer: ConfigProducer = Arc::new(default_config_producer);
    config.override_config_producer = Some(Arc::clone(&config_producer));
    let runtime_env = opts.runtime_env.clone();
    config.override_session_builder = Some(Arc::new(move |session_config| {
        let state = default_session_builder(session_config)?;
        let env = runtime_env
            .clone()
            .unwrap_or_else(|| Arc::clone(state.runtime_env()));
        let rules = job_plan_rules(&env);
        let builder = SessionStateBuilder::new_from_existing(state).with_runtime_env(env);
        Ok(rules
            .into_iter()
            .fold(builder, |builder, rule| {
                builder.with_physical_optimizer_rule(rule)
            })
            .build())
    }));
    let config = Arc::new(config);

    let cluster = BallistaCluster::new_from_config(&config).await?;
    let cluster_state = cluster.cluster_state();
    let codec = BallistaCodec::new(
        opts.logical_codec
            .unwrap_or_else(|| Arc::new(BallistaLogicalExtensionCodec::default())),
        opts.physical_codec
            .unwrap_or_else(|| Arc::new(BallistaPhysicalExtensionCodec::default())),
    );
    let (counter, deferred_cancels) = JobCounter::new();
    let counter = Arc::new(counter);
    // What `scheduler_process::create_scheduler` does, minus its hard-wired
    // metrics collector.
    let url = format!("http://{}:{}", opts.advertise_host, addr.port());
    let launcher = LocalFirstLauncher::new(config.scheduler_name(), url.clone());
    let mut server: Server = SchedulerServer::new_with_task_launcher(
        config.scheduler_name(),
        cluster,
        codec,
        Arc::clone(&config),
        counter.clone(),
        Arc::new(launcher),
    );
    server.init().await?;

    let grpc = SchedulerGrpcServer::new(AnnouncingScheduler::new(
        server.clone(),
        config_producer,
        Arc::clone(&counter),
    ))
    .max_encoding_message_size(config.grpc_server_max_encoding_message_size as usize)
    .max_decoding_message_size(config.grpc_server_max_decoding_message_size as usize);
    let server_config = GrpcServerConfig::default();
    // Ballista's `start_grpc_service` serves through `axum::serve` without
    // TCP_NODELAY, which stalls each job-finished message ~40 ms on a delayed
    // ACK; tonic with nodelay on the incoming stream does not.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(
            server_config.tcp_keepalive_seconds,
        )));
    let (stop, stopped) = watch::channel(false);
    let mut serve_stopped = stopped.clone();
    // Kubernetes' gRPC probes: SERVING (the empty service name) while this serves.
    let (_health, health_service) = tonic_health::server::health_reporter();
    let serve = tokio::spawn(
        create_grpc_server(&server_config)
            .add_service(health_service)
            .add_service(StatusService::new(server.clone(), Arc::clone(&counter)))
            .add_service(grpc)
            .serve_with_incoming_shutdown(incoming, async move {
                // Err: the handle was dropped, which also means stop.
                let _ = serve_stopped.wait_for(|stop| *stop).await;
            }),
    );

    tokio::spawn(reoffer_tasks_of_lost_executors(
        server.clone(),
        cluster_state,
        stopped.clone(),
    ));

    let housekeeping = tokio::spawn(housekeeping(
        server.clone(),
        Arc::clone(&counter),
        (!opts.job_timeout.is_zero()).then_some(opts.job_timeout),
        deferred_cancels,
        stopped,
    ));

    info!(%addr, %url, "scheduler listening (push-staged)");
    let listing = Listing::new(&url, server.clone());
    Ok(SchedulerHandle {
        addr,
        url,
        counter,
        server,
        stop,
        serve,
        housekeeping,
        _listing: listing,
    })
}

/// How long a cancel request for a job that is not running yet is kept.
const CANCEL_REQUEST_TTL: Duration = Duration::from_secs(600);

/// Issues deferred cancels (see `JobCounter`) and cancels jobs running longer
/// than `job_timeout`, checking a few times per timeout.
async fn housekeeping(
    server: Server,
    counter: Arc<JobCounter>,
    job_timeout: Option<Duration>,
    mut deferred_cancels: mpsc::UnboundedReceiver<String>,
    mut stopped: watch::Receiver<bool>,
) {
    let period = job_timeout.map_or(Duration::from_secs(5), |t| {
        (t / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
    });
    loop {
        tokio::select! {
            // Err: the handle was dropped, which also means stop.
            _ = async { drop(stopped.wait_for(|stop| *stop).await) } => return,
            Some(job_id) = deferred_cancels.recv() => {
                info!(%job_id, "cancelling job whose cancel arrived while it was being planned");
                cancel(&server, &job_id).await;
            }
            _ = tokio::time::sleep(period) => {
                let now = now_ms();
                counter.forget_stale_cancels(now, CANCEL_REQUEST_TTL);
                let Some(timeout) = job_timeout else { continue };
                for job_id in counter.take_overdue(now, timeout) {
                    warn!(%job_id, ?timeout, "job exceeded the job timeout; cancelling it");
                    cancel(&server, &job_id).await;
                }
            }
        }
    }
}

async fn cancel(server: &Server, job_id: &str) {
    if let Err(e) = server.cancel_job(job_id.into()).await {
        warn!(%job_id, error = %e, "could not cancel job");
    }
}

/// Milliseconds since the epoch, the clock Ballista stamps `queued_at` with.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(SystemClock.now_ms()).unwrap_or(0)
}
