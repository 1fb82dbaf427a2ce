//! `lakehouse up`: every role in one process, wired from one config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lakehouse_catalog_raft::Catalog;
use lakehouse_common::{Config, SystemClock};
use lakehouse_flight_sql::Auth;
use lakehouse_gateway::metrics::{MetricFn, Registry};
use lakehouse_indexing::IndexCodec;
use lakehouse_query::QueryEngine;
use tracing::info;

use crate::cli::BoxError;
use crate::roles::{
    index_runtime, open_bucket, start_executor, start_gateway, start_scheduler, Gateway,
};

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
    gateway: Gateway,
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
        self.gateway.stop().await;
        drop(self.local_executor);
        self.executor.shutdown().await?;
        self.scheduler.shutdown().await?;
        self.catalog.shutdown().await?;
        info!("stopped cleanly");
        Ok(())
    }
}

pub async fn start(config: Config) -> Result<Running, BoxError> {
    // Users and TLS files are checked before any role starts: a bad entry stops here.
    Auth::from_config(&config.auth, Arc::new(SystemClock))?;
    lakehouse_flight_sql::server_tls(&config.tls)?;
    let catalog = Catalog::open(
        &config.catalog,
        &config.catalog_dir(),
        open_bucket(&config)?,
        Arc::new(SystemClock),
    )
    .await?;
    let indexes = index_runtime(&config, catalog.bucket());
    let scheduler = start_scheduler(&config, catalog.bucket(), &indexes).await?;
    let executor = start_executor(&config, catalog.bucket(), scheduler.addr(), &indexes).await?;
    let local_executor = lakehouse_scheduler::LocalExecutor::list(executor.local_tasks());
    let engine = QueryEngine::connect(
        catalog.clone(),
        scheduler.url(),
        &config.query,
        executor.concurrent_tasks(),
        Arc::new(IndexCodec::new(Arc::clone(&indexes))),
    )
    .await?;
    let gateway = start_gateway(
        &config,
        &catalog,
        engine,
        in_process_metrics(&scheduler, &executor),
        &indexes,
    )
    .await?;
    info!(http_addr = %gateway.http_addr, flight_addr = %gateway.flight_sql_addr, auth = config.auth.enabled, tls = config.tls.enabled(), scheduler = %scheduler.addr(), data_dir = %config.node.data_dir.display(), "lakehouse is up");
    Ok(Running {
        http_addr: gateway.http_addr,
        flight_sql_addr: gateway.flight_sql_addr,
        catalog,
        scheduler,
        executor,
        local_executor,
        gateway,
    })
}

/// The scheduler's job counts and the executor's running tasks, which `up` has
/// in this process, next to the gateway's own metrics.
fn in_process_metrics(
    scheduler: &lakehouse_scheduler::SchedulerHandle,
    executor: &lakehouse_executor::ExecutorHandle,
) -> impl FnOnce(&mut Registry) {
    let jobs = scheduler.job_counts_reader();
    let active_tasks = executor.active_tasks_reader();
    move |registry| {
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
        registry.register_collector(Box::new(MetricFn::gauge(
            "executor_active_tasks",
            "Tasks running on the executor now",
            move || active_tasks() as u64,
        )));
    }
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
