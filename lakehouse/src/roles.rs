//! The roles of the binary, each its own process in a cluster — `lakehouse
//! scheduler`, `executor` and `gateway` — and the wiring they share with `up`,
//! which runs them all in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::config::IndexLoad;
use lakehouse_common::storage::PRIMARY_BUCKET;
use lakehouse_common::{Bucket, Config, SystemClock};
use lakehouse_flight_sql::{Auth, FlightSqlServer, SessionLimits};
use lakehouse_gateway::metrics::{MetricFn, Registry};
use lakehouse_gateway::{Embedders, GatewayState, Metrics};
use lakehouse_indexing::{
    IndexCodec, IndexRuntime, IndexService, IndexSettings, VectorSearchFunction,
};
use lakehouse_ingest::TableWriter;
use lakehouse_query::QueryEngine;
use lakehouse_scheduler::PlannedScanCodec;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::cli::BoxError;
use crate::up::{shutdown_signal, write_listen_file};

/// How often a running executor refreshes the task count in its listen file.
const LISTEN_FILE_REFRESH: Duration = Duration::from_millis(250);

pub(crate) fn open_bucket(config: &Config) -> Result<Bucket, BoxError> {
    Ok(Bucket::open(
        PRIMARY_BUCKET,
        &config.primary_bucket_location(),
        &config.storage,
    )?)
}

/// A runtime env with the bucket's object store registered, spilling under
/// `work_dir`: the scheduler (file listing, footers) and executors (scans) read it.
/// Built once per role: each build creates a spill directory (and its drop
/// removes it), which per task cost two filesystem writes.
fn bucket_runtime(bucket: &Bucket, work_dir: PathBuf) -> Result<Arc<RuntimeEnv>, BoxError> {
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;
    let (url, store) = bucket.engine_registration();
    let env = RuntimeEnvBuilder::new()
        .with_temp_file_path(work_dir)
        .build()?;
    env.register_object_store(&url, store);
    Ok(Arc::new(env))
}

/// What index tasks use on this node: one per process, so `up`'s roles share
/// the loaded shards and models.
pub(crate) fn index_runtime(config: &Config, bucket: &Bucket) -> Arc<IndexRuntime> {
    IndexRuntime::new(
        bucket.clone(),
        Arc::new(Embedders::new(config.embedding.clone())),
        &config.vector,
    )
}

/// The Ballista scheduler on `scheduler.addr`, reading `bucket`.
pub(crate) async fn start_scheduler(
    config: &Config,
    bucket: &Bucket,
    indexes: &Arc<IndexRuntime>,
) -> Result<lakehouse_scheduler::SchedulerHandle, BoxError> {
    let runtime = bucket_runtime(bucket, config.node.data_dir.join("scheduler"))?;
    let addr = config.scheduler.addr;
    let codec = Arc::new(IndexCodec::new(Arc::clone(indexes)));
    Ok(
        lakehouse_scheduler::start(lakehouse_scheduler::SchedulerOptions {
            bind_host: addr.ip().to_string(),
            port: addr.port(),
            advertise_host: advertised_host(config, addr),
            job_timeout: Duration::from_secs(config.scheduler.job_timeout_secs),
            runtime_env: Some(runtime),
            // A gateway in another process sends vector searches and index jobs
            // as planned scans (their scans run where they are planned).
            logical_codec: Some(Arc::new(PlannedScanCodec::new(codec.clone()))),
            physical_codec: Some(codec),
        })
        .await?,
    )
}

/// The host executors send task updates to: the endpoint's host when set,
/// else the bind address.
fn advertised_host(config: &Config, addr: SocketAddr) -> String {
    config
        .scheduler
        .endpoint
        .rsplit_once(':')
        .map_or_else(|| addr.ip().to_string(), |(host, _)| host.to_string())
}

/// One executor registered with the scheduler at `scheduler`, reading `bucket`.
pub(crate) async fn start_executor(
    config: &Config,
    bucket: &Bucket,
    scheduler: SocketAddr,
    indexes: &Arc<IndexRuntime>,
) -> Result<lakehouse_executor::ExecutorHandle, BoxError> {
    let runtime = bucket_runtime(bucket, config.executor_work_dir())?;
    Ok(
        lakehouse_executor::start(lakehouse_executor::ExecutorOptions {
            bind_host: config.executor.flight_addr.ip().to_string(),
            advertise_host: config.executor_advertise_host(),
            port: config.executor.flight_addr.port(),
            grpc_port: config.executor.addr.port(),
            scheduler_addr: scheduler,
            concurrent_tasks: config.executor.concurrent_tasks,
            work_dir: config.executor_work_dir(),
            runtime_producer: Some(Arc::new(move |_| Ok(Arc::clone(&runtime)))),
            physical_codec: Some(Arc::new(IndexCodec::new(Arc::clone(indexes)))),
            ..Default::default()
        })
        .await?,
    )
}

/// Flight SQL and the HTTP gateway, serving until [`Gateway::stop`].
pub(crate) struct Gateway {
    pub(crate) http_addr: SocketAddr,
    pub(crate) flight_sql_addr: SocketAddr,
    stop_tx: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Stops accepting and waits for both servers to finish.
    pub(crate) async fn stop(self) {
        let _ = self.stop_tx.send(true);
        for server in self.servers {
            let _ = server.await;
        }
    }
}

/// Serves Flight SQL on `flight_sql.addr` and HTTP on `gateway.http_addr`
/// over `catalog`, with queries planned by `engine`.
pub(crate) async fn start_gateway(
    config: &Config,
    catalog: &Catalog,
    engine: QueryEngine,
    other_metrics: impl FnOnce(&mut Registry),
    indexes: &Arc<IndexRuntime>,
) -> Result<Gateway, BoxError> {
    // Before any session is made from the engine: they all copy its functions.
    engine.context().register_udtf(
        lakehouse_indexing::FUNCTION_NAME,
        Arc::new(VectorSearchFunction::new(
            catalog.clone(),
            Arc::clone(indexes),
        )),
    );
    let index_service = IndexService::new(
        catalog.clone(),
        Arc::clone(indexes),
        IndexSettings::from_config(&config.vector),
        engine.context().clone(),
    );
    if config.vector.load == IndexLoad::Eager {
        let warm = index_service.clone();
        tokio::spawn(async move {
            if let Err(e) = warm.load_active().await {
                tracing::warn!(error = %e, "loading the active index versions failed; searches load them on demand");
            }
        });
    }
    // Users, grants and TLS files are read before serving: a bad entry stops here.
    // One Auth for both front ends: a Flight SQL session token works over HTTP, and
    // GRANT and REVOKE over SQL are kept in the replicated catalog.
    let auth = Arc::new(
        Auth::from_config(&config.auth, Arc::new(SystemClock))?.with_catalog(catalog.clone()),
    );
    let tls = lakehouse_flight_sql::server_tls(&config.tls)?;
    let writer = TableWriter::new(
        catalog.clone(),
        config.gateway.rows_per_file,
        Duration::from_millis(config.catalog.lease_ttl_ms),
    );
    let planning = engine.clone();
    let flight_service = lakehouse_flight_sql::LakehouseFlightSql::new(engine, catalog.clone())
        .with_auth(auth.clone())
        .with_sessions(
            SessionLimits {
                idle_ms: i64::try_from(config.flight_sql.session_idle_secs.saturating_mul(1_000))
                    .unwrap_or(i64::MAX),
                max_sessions: config.flight_sql.max_sessions,
            },
            Arc::new(SystemClock),
        )
        // One writer for HTTP and Flight SQL: every write takes the same lease path.
        .with_writer(writer.clone());
    let sessions = flight_service.clone();
    let metrics = Metrics::new(|registry| {
        other_metrics(registry);
        registry.register_collector(Box::new(MetricFn::gauge(
            "flight_sql_sessions",
            "Flight SQL client sessions open now",
            move || sessions.live_sessions() as u64,
        )));
        registry.register_collector(Box::new(MetricFn::counter(
            "query_plans_reused",
            "Statements that ran a physical plan kept from an identical earlier one",
            move || planning.plans_reused(),
        )));
    });
    let gateway_state = GatewayState {
        catalog: catalog.clone(),
        writer,
        metrics,
        spool_dir: config.node.data_dir.join("spool"),
        max_ingest_bytes: config.gateway.max_ingest_bytes,
        embedders: Arc::clone(indexes.embedders()),
        access: auth,
        indexes: Some(index_service),
    };
    let flight_server = FlightSqlServer::new(flight_service, tls)?;

    let http = TcpListener::bind(config.gateway.http_addr)
        .await
        .map_err(|e| bind_error("gateway.http_addr", config.gateway.http_addr, e))?;
    let flight = TcpListener::bind(config.flight_sql.addr)
        .await
        .map_err(|e| bind_error("flight_sql.addr", config.flight_sql.addr, e))?;
    let (http_addr, flight_sql_addr) = (http.local_addr()?, flight.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_http = stop_rx.clone();
    let http_task = tokio::spawn(async move {
        if let Err(e) = lakehouse_gateway::serve(http, gateway_state, stopped(stop_rx_http)).await {
            tracing::error!(error = %e, "HTTP gateway stopped");
        }
    });
    let flight_task = tokio::spawn(async move {
        if let Err(e) = flight_server.serve(flight, stopped(stop_rx)).await {
            tracing::error!(error = %e, "Flight SQL stopped");
        }
    });
    Ok(Gateway {
        http_addr,
        flight_sql_addr,
        stop_tx,
        servers: vec![http_task, flight_task],
    })
}

fn bind_error(key: &str, addr: SocketAddr, e: std::io::Error) -> BoxError {
    format!("cannot listen on {addr} ({key}): {e}").into()
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// `lakehouse scheduler`: the Ballista scheduler alone, until Ctrl-C or SIGTERM.
pub(crate) async fn run_scheduler(
    config: Config,
    listen_file: Option<PathBuf>,
) -> Result<(), BoxError> {
    let bucket = open_bucket(&config)?;
    let indexes = index_runtime(&config, &bucket);
    let scheduler = start_scheduler(&config, &bucket, &indexes).await?;
    if let Some(path) = listen_file {
        write_listen_file(
            &path,
            &serde_json::json!({ "scheduler": scheduler.addr().to_string() }),
        )?;
    }
    eprintln!("scheduler is up on {} (Ctrl-C to stop)", scheduler.addr());
    shutdown_signal().await;
    scheduler.shutdown().await?;
    info!("scheduler stopped cleanly");
    Ok(())
}

/// host:port → a socket address (DNS for a Kubernetes Service name).
async fn resolve(key: &str, endpoint: &str) -> Result<SocketAddr, BoxError> {
    tokio::net::lookup_host(endpoint)
        .await
        .map_err(|e| format!("cannot resolve {key} = {endpoint}: {e}"))?
        .next()
        .ok_or_else(|| format!("{key} = {endpoint} resolves to no address").into())
}

/// `lakehouse executor`: one executor registered with `scheduler.endpoint`,
/// until Ctrl-C or SIGTERM. The listen file also carries the tasks it has
/// completed and the tasks running now, refreshed while it runs.
pub(crate) async fn run_executor(
    config: Config,
    listen_file: Option<PathBuf>,
) -> Result<(), BoxError> {
    let bucket = open_bucket(&config)?;
    let scheduler = resolve("scheduler.endpoint", &config.scheduler_endpoint()).await?;
    let indexes = index_runtime(&config, &bucket);
    let executor = start_executor(&config, &bucket, scheduler, &indexes).await?;
    eprintln!(
        "executor {} is up: Flight {}, gRPC {}, scheduler {scheduler} (Ctrl-C to stop)",
        executor.id(),
        executor.flight_addr(),
        executor.grpc_addr()
    );
    let completed = executor.completed_tasks_reader();
    let running = executor.active_tasks_reader();
    let describe = |(completed, running): (u64, usize)| {
        serde_json::json!({
            "executor_id": executor.id(),
            "flight": executor.flight_addr().to_string(),
            "grpc": executor.grpc_addr().to_string(),
            "tasks_completed": completed,
            "tasks_running": running,
        })
    };
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut written = None;
    loop {
        let tasks = (completed(), running());
        if let Some(path) = &listen_file {
            if written != Some(tasks) {
                write_listen_file(path, &describe(tasks))?;
                written = Some(tasks);
            }
        }
        tokio::select! {
            () = &mut signal => break,
            () = tokio::time::sleep(LISTEN_FILE_REFRESH) => {}
        }
    }
    executor.shutdown().await?;
    info!("executor stopped cleanly");
    Ok(())
}

/// `lakehouse gateway`: Flight SQL and HTTP over a remote catalog cluster
/// (`catalog.peers`) with queries run by `scheduler.endpoint`.
pub(crate) async fn run_gateway(
    config: Config,
    listen_file: Option<PathBuf>,
) -> Result<(), BoxError> {
    let bucket = open_bucket(&config)?;
    let endpoints = config.catalog.client_endpoints()?;
    let indexes = index_runtime(&config, &bucket);
    let catalog = Catalog::connect(&endpoints, bucket, &config.catalog).await?;
    // The executors are not visible from here: size stages to this machine's cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scheduler_url = format!("http://{}", config.scheduler_endpoint());
    let engine = QueryEngine::connect(
        catalog.clone(),
        &scheduler_url,
        &config.query,
        cores,
        Arc::new(IndexCodec::new(Arc::clone(&indexes))),
    )
    .await?;
    let gateway = start_gateway(&config, &catalog, engine, |_| {}, &indexes).await?;
    if let Some(path) = listen_file {
        write_listen_file(
            &path,
            &serde_json::json!({
                "http": gateway.http_addr.to_string(),
                "flight_sql": gateway.flight_sql_addr.to_string(),
            }),
        )?;
    }
    eprintln!(
        "gateway is up: HTTP http://{}  Flight SQL {}  catalog {}  scheduler {} (Ctrl-C to stop)",
        gateway.http_addr,
        gateway.flight_sql_addr,
        endpoints.join(","),
        config.scheduler_endpoint()
    );
    shutdown_signal().await;
    gateway.stop().await;
    catalog.shutdown().await?;
    info!("gateway stopped cleanly");
    Ok(())
}
