//! Ballista wiring alone: a scheduler and an executor in this process, on ephemeral ports, running
//! queries over a 100k-row Parquet file through `remote_context`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::physical_plan::collect;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use lakehouse_executor::{ExecutorHandle, ExecutorOptions};
use lakehouse_scheduler::{
    ballista_session_config, remote_context_with_pool, ConnectionPool, JobCounts, LocalExecutor,
    RemoteQueryExec, SchedulerHandle, SchedulerOptions,
};
use tempfile::TempDir;

const ROWS: i64 = 100_000;

struct Cluster {
    scheduler: SchedulerHandle,
    executor: ExecutorHandle,
    dir: TempDir,
}

impl Cluster {
    async fn start(job_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let scheduler = lakehouse_scheduler::start(SchedulerOptions {
            port: 0,
            job_timeout,
            ..SchedulerOptions::default()
        })
        .await
        .unwrap();
        assert_ne!(scheduler.addr().port(), 0);
        let executor = lakehouse_executor::start(ExecutorOptions {
            port: 0,
            grpc_port: 0,
            scheduler_addr: scheduler.addr(),
            concurrent_tasks: 2,
            work_dir: dir.path().join("work"),
            ..ExecutorOptions::default()
        })
        .await
        .unwrap();
        assert_ne!(executor.flight_addr().port(), 0);
        Self {
            scheduler,
            executor,
            dir,
        }
    }

    async fn context(&self, pool: Arc<ConnectionPool>) -> SessionContext {
        let file = write_parquet(self.dir.path()).await;
        let ctx =
            remote_context_with_pool(self.scheduler.url(), ballista_session_config(2, true), pool)
                .await
                .unwrap();
        ctx.register_parquet("t", file.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        ctx
    }

    async fn shutdown(self) {
        self.executor.shutdown().await.unwrap();
        self.scheduler.shutdown().await.unwrap();
    }
}

/// `id` 0..100k, `grp = id % 10`, `val = 2 * id`, in one Parquet file.
async fn write_parquet(dir: &Path) -> PathBuf {
    let path = dir.join("t.parquet");
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
    )
    .unwrap();
    SessionContext::new()
        .read_batch(batch)
        .unwrap()
        .write_parquet(
            path.to_str().unwrap(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .unwrap();
    path
}

fn int64s(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(column)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

/// Ballista records a job's completion after telling its client, so wait a little.
async fn wait_for_counts(
    scheduler: &SchedulerHandle,
    done: impl Fn(JobCounts) -> bool,
) -> JobCounts {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts = scheduler.job_counts();
        if done(counts) || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Jobs handed to the scheduler in this process, results read from the
/// executor's files in place: no scheduler connection, no Flight client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_point_query_and_join_run_as_jobs_in_process() {
    group_by_point_query_and_join_run_as_jobs(ConnectionPool::default(), true, (0, 0)).await;
}

/// Jobs submitted over gRPC and results fetched over Flight, as from a
/// gateway apart from its scheduler and executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_point_query_and_join_run_as_jobs_over_grpc() {
    group_by_point_query_and_join_run_as_jobs(ConnectionPool::grpc_only(), false, (1, 1)).await;
}

/// `local_executor`: the executor is listed as running in this process.
/// `connections`: the scheduler channels and executor clients the pool ends
/// up holding, reused by all three queries.
async fn group_by_point_query_and_join_run_as_jobs(
    pool: ConnectionPool,
    local_executor: bool,
    connections: (usize, usize),
) {
    let cluster = Cluster::start(Duration::from_secs(60)).await;
    let _listed = local_executor.then(|| LocalExecutor::list(cluster.executor.local_tasks()));
    let pool = Arc::new(pool);
    let ctx = cluster.context(Arc::clone(&pool)).await;
    let before = cluster.scheduler.job_counts();

    let sql = "SELECT grp, COUNT(*) AS n, SUM(val) AS s FROM t GROUP BY grp ORDER BY grp";
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(int64s(&batches, 0), (0..10).collect::<Vec<_>>());
    assert_eq!(int64s(&batches, 1), vec![ROWS / 10; 10]);
    // sum over k < 10_000 of 2 * (10k + g)
    let sums: Vec<i64> = (0..10)
        .map(|g| 2 * (10 * 9_999 * 10_000 / 2 + 10_000 * g))
        .collect();
    assert_eq!(int64s(&batches, 2), sums);

    let batches = ctx
        .sql("SELECT val FROM t WHERE id = 4242")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(int64s(&batches, 0), vec![8484]);

    // A join shuffles between stages and uses the hash join we asked for.
    let batches = ctx
        .sql("SELECT COUNT(*) FROM t a JOIN t b ON a.id = b.val")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(int64s(&batches, 0), vec![ROWS / 2]);

    let after = wait_for_counts(&cluster.scheduler, |c| c.completed >= before.completed + 3).await;
    assert_eq!(after.submitted - before.submitted, 3);
    assert_eq!(after.completed - before.completed, 3);
    assert_eq!(after.failed, before.failed);
    assert_eq!(pool.len(), connections);

    cluster.shutdown().await;
}

/// A query that would run for many minutes: a filtered cross join of 10^10
/// rows with a costly predicate.
const ENDLESS: &str = "SELECT COUNT(*) FROM t a, t b \
     WHERE sqrt(CAST(a.val * b.val AS DOUBLE)) + ln(CAST(a.id + b.id + 1 AS DOUBLE)) < 0";

/// Cancellation must end the query long before it could finish.
const CANCEL_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_timeout_cancels_a_long_job() {
    let cluster = Cluster::start(Duration::from_millis(500)).await;
    let ctx = cluster.context(Arc::new(ConnectionPool::default())).await;

    let query = ctx.sql(ENDLESS).await.unwrap().collect();
    let err = tokio::time::timeout(CANCEL_WITHIN, query)
        .await
        .expect("the job timeout did not end the query")
        .unwrap_err();
    assert!(err.to_string().contains("Cancelled"), "{err}");
    let counts = wait_for_counts(&cluster.scheduler, |c| c.cancelled == 1).await;
    assert_eq!(counts.cancelled, 1);

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_can_be_cancelled_by_its_id() {
    let cluster = Cluster::start(Duration::ZERO).await;
    let ctx = cluster.context(Arc::new(ConnectionPool::default())).await;

    let plan = ctx
        .sql(ENDLESS)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let running = tokio::spawn(collect(Arc::clone(&plan), ctx.task_ctx()));
    let exec = RemoteQueryExec::from_plan(&plan).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let job_id = loop {
        if let Some(id) = exec.job_id() {
            break id;
        }
        assert!(Instant::now() < deadline, "job was never accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Usually still being planned: the cancel must not be lost.
    cluster.scheduler.cancel_job(&job_id).await.unwrap();
    let err = tokio::time::timeout(CANCEL_WITHIN, running)
        .await
        .expect("cancel did not end the query")
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("Cancelled"), "{err}");
    let counts = wait_for_counts(&cluster.scheduler, |c| c.cancelled == 1).await;
    assert_eq!(counts.cancelled, 1);

    cluster.shutdown().await;
}
