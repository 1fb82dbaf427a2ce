//! `lakehouse up`: every role in one process, wired from one config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::storage::PRIMARY_BUCKET;
use lakehouse_common::{Bucket, Config, SystemClock};
use lakehouse_flight_sql::{Auth, FlightSqlServer, SessionLimits};
use lakehouse_gateway::metrics::MetricFn;
use lakehouse_gateway::{GatewayState, Metrics};
use lakehouse_ingest::TableWriter;
use lakehouse_query::QueryEngine;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::cli::BoxError;

/// Runs until Ctrl-C or SIGTERM, then stops every role cleanly.
pub async fn run(config: Config, listen_file: Option<PathBuf>) -> Result<(), BoxError> {
    let flight_scheme = if config.tls.enabled() {
        "grpc+tls"
    } else {
        "grpc"
    };
    let running = start(config).await?;
    if let Some(path) = listen_file {
        write_listen_file(
            &path,
            &serde_json::json!({
                "http": running.http_addr.to_string(),
                "flight_sql": running.flight_sql_addr.to_string(),
                "scheduler": running.scheduler_addr().to_string(),
            }),
        )?;
    }
    eprintln!(
        "lakehouse is up: HTTP http://{}  Flight SQL {flight_scheme}://{}  (Ctrl-C to stop)",
        running.http_addr, running.flight_sql_addr
    );
    shutdown_signal().await;
    running.stop().await
}

/// Every role of `up`, running; tests start it with ports 0 and stop it by hand.
pub struct Running {
    pub http_addr: SocketAddr,
    pub flight_sql_addr: SocketAddr,
    pub catalog: Catalog,
    scheduler: lakehouse_scheduler::SchedulerHandle,
    executor: lakehouse_executor::ExecutorHandle,
    local_executor: lakehouse_scheduler::LocalExecutor,
    stop_tx: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn scheduler_addr(&self) -> SocketAddr {
        self.scheduler.addr()
    }

    pub fn job_counts(&self) -> lakehouse_scheduler::JobCounts {
        self.scheduler.job_counts()
    }

    pub async fn stop(self) -> Result<(), BoxError> {
        info!("shutting down");
        let _ = self.stop_tx.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        drop(self.local_executor);
        self.executor.shutdown().await?;
        self.scheduler.shutdown().await?;
        self.catalog.shutdown().await?;
        info!("stopped cleanly");
        Ok(())
    }
}

pub async fn start(config: Config) -> Result<Running, BoxError> {
    // Users, grants and TLS files are read before any role starts: a bad entry stops here.
    let auth = Auth::from_config(&config.auth, Arc::new(SystemClock))?;
    let tls = lakehouse_flight_sql::server_tls(&config.tls)?;
    let bucket = Bucket::open(
        PRIMARY_BUCKET,
        &config.primary_bucket_location(),
        &config.storage,
    )?;
    let catalog = Catalog::open(
        &config.catalog,
        &config.catalog_dir(),
        bucket,
        Arc::new(SystemClock),
    )
    .await?;

    // Scheduler (planning: file listing, footers) and executor (scans) read the bucket too.
    let (bucket_url, bucket_store) = catalog.bucket().engine_registration();
    let runtime_for = move |work_dir: PathBuf| {
        let (url, store) = (bucket_url.clone(), Arc::clone(&bucket_store));
        move || -> datafusion::error::Result<Arc<RuntimeEnv>> {
            let env = RuntimeEnvBuilder::new()
                .with_temp_file_path(work_dir.clone())
                .build()?;
            env.register_object_store(&url, Arc::clone(&store));
            Ok(Arc::new(env))
        }
    };
    let scheduler_runtime = runtime_for(config.node.data_dir.join("scheduler"))()?;
    let executor_runtime = runtime_for(config.executor_work_dir());

    let scheduler = lakehouse_scheduler::start(lakehouse_scheduler::SchedulerOptions {
        bind_host: config.scheduler.addr.ip().to_string(),
        port: config.scheduler.addr.port(),
        advertise_host: config.scheduler.addr.ip().to_string(),
        job_timeout: Duration::from_secs(config.scheduler.job_timeout_secs),
        runtime_env: Some(scheduler_runtime),
        ..Default::default()
    })
    .await?;
    let executor = lakehouse_executor::start(lakehouse_executor::ExecutorOptions {
        bind_host: config.executor.flight_addr.ip().to_string(),
        advertise_host: config.executor.flight_addr.ip().to_string(),
        port: config.executor.flight_addr.port(),
        grpc_port: config.executor.addr.port(),
        scheduler_addr: scheduler.addr(),
        concurrent_tasks: config.executor.concurrent_tasks,
        work_dir: config.executor_work_dir(),
        runtime_producer: Some(Arc::new(move |_| executor_runtime())),
        ..Default::default()
    })
    .await?;
    let local_executor =
        lakehouse_scheduler::LocalExecutor::list(executor.id(), &config.executor_work_dir());
    let engine = QueryEngine::connect(
        catalog.clone(),
        scheduler.url(),
        &config.query,
        executor.concurrent_tasks(),
    )
    .await?;

    let jobs = scheduler.job_counts_reader();
    let metrics = Metrics::new(|registry| {
        for (name, help, pick) in [
            (
                "scheduler_jobs_submitted",
                "Jobs handed to the Ballista scheduler",
                (|c| c.submitted) as fn(lakehouse_scheduler::JobCounts) -> u64,
            ),
            ("scheduler_jobs_completed", "Jobs that finished", |c| {
                c.completed
            }),
            ("scheduler_jobs_failed", "Jobs that failed", |c| c.failed),
            (
                "scheduler_jobs_cancelled",
                "Jobs cancelled by a client or the job timeout",
                |c| c.cancelled,
            ),
        ] {
            let jobs = jobs.clone();
            registry.register_collector(Box::new(MetricFn::counter(name, help, move || {
                pick(jobs())
            })));
        }
        let active_tasks = executor.active_tasks_reader();
        registry.register_collector(Box::new(MetricFn::gauge(
            "executor_active_tasks",
            "Tasks running on the executor now",
            move || active_tasks() as u64,
        )));
    });
    let gateway_state = GatewayState {
        catalog: catalog.clone(),
        writer: TableWriter::new(
            catalog.clone(),
            config.gateway.rows_per_file,
            Duration::from_millis(config.catalog.lease_ttl_ms),
        ),
        metrics,
        spool_dir: config.node.data_dir.join("spool"),
        max_ingest_bytes: config.gateway.max_ingest_bytes,
        embedders: Arc::new(lakehouse_gateway::Embedders::new(config.embedding.clone())),
    };

    let flight_service = lakehouse_flight_sql::LakehouseFlightSql::new(engine, catalog.clone())
        // GRANT and REVOKE over SQL are kept in the replicated catalog.
        .with_auth(Arc::new(auth.with_catalog(catalog.clone())))
        .with_sessions(
            SessionLimits {
                idle_ms: i64::try_from(config.flight_sql.session_idle_secs.saturating_mul(1_000))
                    .unwrap_or(i64::MAX),
                max_sessions: config.flight_sql.max_sessions,
            },
            Arc::new(SystemClock),
        )
        // One writer for HTTP and Flight SQL: every write takes the same lease path.
        .with_writer(gateway_state.writer.clone());
    let flight_server = FlightSqlServer::new(flight_service, tls)?;

    let http = TcpListener::bind(config.gateway.http_addr)
        .await
        .map_err(|e| bind_error("gateway.http_addr", config.gateway.http_addr, e))?;
    let flight = TcpListener::bind(config.flight_sql.addr)
        .await
        .map_err(|e| bind_error("flight_sql.addr", config.flight_sql.addr, e))?;
    let (http_addr, flight_addr) = (http.local_addr()?, flight.local_addr()?);
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
    info!(%http_addr, %flight_addr, auth = config.auth.enabled, tls = config.tls.enabled(), scheduler = %scheduler.addr(), data_dir = %config.node.data_dir.display(), "lakehouse is up");
    Ok(Running {
        http_addr,
        flight_sql_addr: flight_addr,
        catalog,
        scheduler,
        executor,
        local_executor,
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

/// The bound addresses as JSON, written via a temp file and a rename so a
/// reader never sees half of it.
pub(crate) fn write_listen_file(
    path: &std::path::Path,
    addresses: &serde_json::Value,
) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, addresses.to_string())?;
    std::fs::rename(tmp, path)
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
