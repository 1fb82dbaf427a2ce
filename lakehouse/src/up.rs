//! `lakehouse up`: every role in one process, wired from one config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lakehouse_catalog_raft::Catalog;
use lakehouse_common::storage::PRIMARY_BUCKET;
use lakehouse_common::{Bucket, Config, SystemClock};
use lakehouse_gateway::metrics::CounterFn;
use lakehouse_gateway::{GatewayState, Metrics};
use lakehouse_ingest::TableWriter;
use lakehouse_query::QueryEngine;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::cli::BoxError;

pub async fn run(config: Config, listen_file: Option<PathBuf>) -> Result<(), BoxError> {
    let bucket = Bucket::open(PRIMARY_BUCKET, &config.primary_bucket_location(), &config.storage)?;
    let catalog = Catalog::open(&config.catalog, &config.catalog_dir(), bucket, Arc::new(SystemClock)).await?;

    let scheduler = lakehouse_scheduler::start(lakehouse_scheduler::SchedulerOptions {
        bind_host: config.scheduler.addr.ip().to_string(),
        port: config.scheduler.addr.port(),
        advertise_host: config.scheduler.addr.ip().to_string(),
        job_timeout: Duration::from_secs(config.scheduler.job_timeout_secs),
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
        ..Default::default()
    })
    .await?;
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
            ("lakehouse_scheduler_jobs_submitted", "Jobs handed to the Ballista scheduler", (|c| c.submitted) as fn(lakehouse_scheduler::JobCounts) -> u64),
            ("lakehouse_scheduler_jobs_completed", "Jobs that finished", |c| c.completed),
            ("lakehouse_scheduler_jobs_failed", "Jobs that failed", |c| c.failed),
            ("lakehouse_scheduler_jobs_cancelled", "Jobs cancelled by a client or the job timeout", |c| c.cancelled),
        ] {
            let jobs = jobs.clone();
            registry.register_collector(Box::new(CounterFn::new(name, help, move || pick(jobs()))));
        }
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
    };

    let http = TcpListener::bind(config.gateway.http_addr).await.map_err(|e| bind_error("gateway.http_addr", config.gateway.http_addr, e))?;
    let flight = TcpListener::bind(config.flight_sql.addr).await.map_err(|e| bind_error("flight_sql.addr", config.flight_sql.addr, e))?;
    let (http_addr, flight_addr) = (http.local_addr()?, flight.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let http_task = tokio::spawn(lakehouse_gateway::serve(http, gateway_state, stopped(stop_rx.clone())));
    let flight_task = tokio::spawn(lakehouse_flight_sql::serve(
        flight,
        lakehouse_flight_sql::LakehouseFlightSql::new(engine, catalog.clone()),
        stopped(stop_rx),
    ));

    if let Some(path) = listen_file {
        write_listen_file(&path, http_addr, flight_addr, scheduler.addr())?;
    }
    info!(%http_addr, %flight_addr, scheduler = %scheduler.addr(), data_dir = %config.node.data_dir.display(), "lakehouse is up");
    eprintln!("lakehouse is up: HTTP http://{http_addr}  Flight SQL grpc://{flight_addr}  (Ctrl-C to stop)");

    shutdown_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    let _ = flight_task.await;
    executor.shutdown().await?;
    scheduler.shutdown().await?;
    catalog.shutdown().await?;
    info!("stopped cleanly");
    Ok(())
}

fn bind_error(key: &str, addr: SocketAddr, e: std::io::Error) -> BoxError {
    format!("cannot listen on {addr} ({key}): {e}").into()
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Written via a temp file and a rename so a reader never sees half of it.
fn write_listen_file(path: &std::path::Path, http: SocketAddr, flight: SocketAddr, scheduler: SocketAddr) -> std::io::Result<()> {
    let body = serde_json::json!({
        "http": http.to_string(),
        "flight_sql": flight.to_string(),
        "scheduler": scheduler.to_string(),
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string())?;
    std::fs::rename(tmp, path)
}

async fn shutdown_signal() {
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
