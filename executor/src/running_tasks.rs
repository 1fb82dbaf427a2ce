//! Counts tasks until their work really ends. Ballista forgets a task the
//! moment it is cancelled (its abort handle is removed), but the task's future
//! keeps its core — and the scheduler keeps its slot — until it next yields
//! and is dropped. Metrics and tests that ask "are the slots free again?"
//! need this count, not Ballista's. Tasks that finish well are counted too:
//! a per-executor total that tests and operators can read.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use ballista_core::serde::protobuf::ShuffleWritePartition;
use ballista_core::JobId;
use ballista_executor::execution_engine::{ExecutionEngine, QueryStageExecutor};
use datafusion::error::Result;
use datafusion::execution::context::TaskContext;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;

/// Wraps an engine so that every task it runs is counted while its future lives.
pub(crate) struct CountingEngine {
    inner: Arc<dyn ExecutionEngine>,
    running: Arc<AtomicUsize>,
    completed: Arc<AtomicU64>,
}

impl CountingEngine {
    pub(crate) fn new(
        inner: Arc<dyn ExecutionEngine>,
        running: Arc<AtomicUsize>,
        completed: Arc<AtomicU64>,
    ) -> Self {
        Self {
            inner,
            running,
            completed,
        }
    }
}

impl ExecutionEngine for CountingEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        partition_id: usize,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let inner = self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            partition_id,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(CountedStage {
            inner,
            running: Arc::clone(&self.running),
            completed: Arc::clone(&self.completed),
        }))
    }
}

#[derive(Debug)]
struct CountedStage {
    inner: Arc<dyn QueryStageExecutor>,
    running: Arc<AtomicUsize>,
    completed: Arc<AtomicU64>,
}

impl fmt::Display for CountedStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for CountedStage {
    async fn execute_query_stage(
        &self,
        input_partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        // Lives as long as the task's future: to completion, or until an abort drops it.
        let _running = Running::start(&self.running);
        let result = self
            .inner
            .execute_query_stage(input_partition, context)
            .await;
        if result.is_ok() {
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }
}

struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
