//! Runs a physical plan as a Ballista job of the query engine's session: the
//! plan is the scan of a one-off table, so it takes the same path as a query —
//! handed to the scheduler (in this process, or over gRPC as a planned scan),
//! staged, pushed to the executors, cancellable — and its tasks' reports come
//! back as the result.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use lakehouse_scheduler::PlannedScan;

use crate::error::Result;

/// Runs `plan` as one job and collects what its tasks return.
pub(crate) async fn run_plan(
    ctx: &SessionContext,
    plan: Arc<dyn ExecutionPlan>,
) -> Result<Vec<RecordBatch>> {
    let frame = ctx.read_table(Arc::new(PlannedScan::new(plan)))?;
    Ok(frame.collect().await?)
}
