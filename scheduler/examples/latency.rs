//! Point-query latency on a 100k-row Parquet file: in-process DataFusion vs
//! Ballista's stock remote context vs our pooled `remote_context`, all on a
//! push-staged scheduler and one executor started in this process.
//!
//! `cargo run --release -p lakehouse-scheduler --example latency [REPS]`

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use ballista::prelude::SessionContextExt;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use lakehouse_executor::ExecutorOptions;
use lakehouse_scheduler::{ballista_session_config, remote_context, SchedulerOptions};

const ROWS: i64 = 100_000;
const QUERY: &str = "SELECT val FROM t WHERE id = 4242";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // RUST_LOG=debug shows, with timestamps, where a job's time goes.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let reps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("t.parquet");
    let file = file.to_str().ok_or("non-UTF-8 temp dir")?;
    write_parquet(file).await?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scheduler = lakehouse_scheduler::start(SchedulerOptions {
        port: 0,
        ..SchedulerOptions::default()
    })
    .await?;
    let executor = lakehouse_executor::start(ExecutorOptions {
        port: 0,
        grpc_port: 0,
        scheduler_addr: scheduler.addr(),
        work_dir: dir.path().join("work"),
        ..ExecutorOptions::default()
    })
    .await?;
    let _local_executor = lakehouse_scheduler::LocalExecutor::list(executor.local_tasks());

    let local = SessionContext::new();
    let stock = SessionContext::remote_with_state(
        scheduler.url(),
        SessionStateBuilder::new()
            .with_default_features()
            .with_config(ballista_session_config(cores, true))
            .build(),
    )
    .await?;
    let pooled = remote_context(scheduler.url(), ballista_session_config(cores, true)).await?;

    let contexts = [
        ("in-process DataFusion", &local),
        (
            "Ballista remote_with_state (new connections per query)",
            &stock,
        ),
        ("lakehouse remote_context (pooled connections)", &pooled),
    ];
    for (_, ctx) in contexts {
        ctx.register_parquet("t", file, ParquetReadOptions::default())
            .await?;
    }
    println!("{reps} repetitions of `{QUERY}` on {ROWS} rows, {cores} cores (interleaved)");
    // Round-robin over the contexts so that load changes hit all alike; the
    // first two rounds warm caches and connections.
    let mut times = vec![Vec::with_capacity(reps); contexts.len()];
    for round in 0..reps + 2 {
        for (i, (_, ctx)) in contexts.iter().enumerate() {
            let started = Instant::now();
            let batches = ctx.sql(QUERY).await?.collect().await?;
            let elapsed = started.elapsed();
            check(&batches)?;
            if round >= 2 {
                times[i].push(elapsed);
            }
        }
    }
    for ((name, _), mut times) in contexts.iter().zip(times) {
        times.sort();
        println!(
            "{name:>58}: p50 {:>8.2?}  min {:>8.2?}  max {:>8.2?}",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
    println!("jobs: {:?}", scheduler.job_counts());

    executor.shutdown().await?;
    scheduler.shutdown().await?;
    Ok(())
}

fn check(batches: &[RecordBatch]) -> Result<(), Box<dyn std::error::Error>> {
    let value = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>())
        .map(|a| a.value(0));
    match value {
        Some(8484) => Ok(()),
        other => Err(format!("wrong result {other:?}").into()),
    }
}

async fn write_parquet(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("grp", DataType::Int64, false),
        Field::new("val", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..ROWS)),
            Arc::new(Int64Array::from_iter_values((0..ROWS).map(|v| v % 10))),
            Arc::new(Int64Array::from_iter_values((0..ROWS).map(|v| v * 2))),
        ],
    )?;
    SessionContext::new()
        .read_batch(batch)?
        .write_parquet(
            path,
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await?;
    Ok(())
}
