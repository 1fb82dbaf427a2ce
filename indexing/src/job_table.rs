//! Runs a physical plan as a Ballista job of the query engine's session: the
//! plan is the scan of a one-off table, so it takes the same path as a query —
//! handed to the scheduler in this process, staged, pushed to the executors,
//! cancellable — and its tasks' reports come back as the result.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::error::Result;

/// A table whose scan is a plan made beforehand.
pub(crate) struct PlannedTable {
    plan: Arc<dyn ExecutionPlan>,
}

impl fmt::Debug for PlannedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlannedTable")
            .field("plan", &self.plan.name())
            .finish()
    }
}

#[async_trait]
impl TableProvider for PlannedTable {
    fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::clone(&self.plan))
    }
}

/// Runs `plan` as one job and collects what its tasks return.
pub(crate) async fn run_plan(
    ctx: &SessionContext,
    plan: Arc<dyn ExecutionPlan>,
) -> Result<Vec<RecordBatch>> {
    let frame = ctx.read_table(Arc::new(PlannedTable { plan }))?;
    Ok(frame.collect().await?)
}
