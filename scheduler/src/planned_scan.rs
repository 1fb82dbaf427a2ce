//! Scans planned where the query is planned, shipped to a scheduler over gRPC
//! as physical plans.
//!
//! A scheduler in another process receives a job as a logical plan and plans
//! it itself. That works for catalog tables (listing tables, which
//! datafusion-proto serialises), but not for temporary providers such as a
//! vector search (its scan embeds the query text with a model the gateway has
//! loaded) or an index job (its scan is a plan made beforehand). Before such a
//! plan is sent, [`plan_temporary_scans`] replaces every temporary table's scan
//! by [`PlannedScan`]: the physical plan that table's own `scan` returns, here.
//! [`PlannedScanCodec`] carries it through the logical plan with the physical
//! codec (which knows our execution plans), and on the scheduler the decoded
//! table scans to that same plan.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::TableReference;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    AggregateUDF, Expr, Extension, HigherOrderUDF, LogicalPlan, ScalarUDF, TableScan, TableType,
    WindowUDF,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{AsExecutionPlan, PhysicalExtensionCodec};
use datafusion_proto::protobuf::PhysicalPlanNode;

/// Starts a [`PlannedScan`]'s encoding; the version follows, so a scheduler of
/// another release refuses the plan by name instead of misreading it.
const MAGIC: &[u8] = b"LHPS";
const FORMAT_VERSION: u8 = 1;

/// A table whose scan is a physical plan made beforehand.
pub struct PlannedScan {
    plan: Arc<dyn ExecutionPlan>,
}

impl PlannedScan {
    pub fn new(plan: Arc<dyn ExecutionPlan>) -> Self {
        Self { plan }
    }
}

impl fmt::Debug for PlannedScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlannedScan")
            .field("plan", &self.plan.name())
            .finish()
    }
}

#[async_trait]
impl TableProvider for PlannedScan {
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::clone(&self.plan))
    }
}

/// Whether `scan` reads a temporary table not yet planned.
fn needs_planning(scan: &TableScan) -> Option<Arc<dyn TableProvider>> {
    let provider = source_as_provider(&scan.source).ok()?;
    let temporary = provider.table_type() == TableType::Temporary && !provider.is::<PlannedScan>();
    temporary.then_some(provider)
}

/// `plan` with every temporary table's scan (in subqueries too) planned by
/// its provider in `state` and held as a [`PlannedScan`]. The projection,
/// pushed-down filters and fetch go into that scan, so the new table scan
/// reads the planned columns as they are.
pub async fn plan_temporary_scans(plan: &LogicalPlan, state: &SessionState) -> Result<LogicalPlan> {
    let mut pending = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Some(provider) = needs_planning(scan) {
                pending.push((scan.clone(), provider));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if pending.is_empty() {
        return Ok(plan.clone());
    }
    let mut planned = Vec::with_capacity(pending.len());
    for (scan, provider) in pending {
        let physical = provider
            .scan(state, scan.projection.as_ref(), &scan.filters, scan.fetch)
            .await?;
        let source = provider_as_source(Arc::new(PlannedScan::new(physical)));
        planned.push(TableScan::try_new(
            scan.table_name.clone(),
            source,
            None,
            Vec::new(),
            None,
        )?);
    }
    // The same pre-order walk as above meets the scans in the same order.
    let mut planned = planned.into_iter();
    let rewritten = plan
        .clone()
        .transform_down_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) if needs_planning(&scan).is_some() => {
                let replacement = planned.next().ok_or_else(|| {
                    DataFusionError::Internal("a temporary scan was planned twice".to_string())
                })?;
                Ok(Transformed::yes(LogicalPlan::TableScan(replacement)))
            }
            other => Ok(Transformed::no(other)),
        })?;
    Ok(rewritten.data)
}

/// A logical codec that carries [`PlannedScan`]s as physical plans (encoded
/// with `physical`) and hands everything else to `inner`.
#[derive(Debug)]
pub struct PlannedScanCodec {
    inner: Arc<dyn LogicalExtensionCodec>,
    physical: Arc<dyn PhysicalExtensionCodec>,
}

impl PlannedScanCodec {
    /// Over Ballista's logical codec (listing tables' file formats).
    pub fn new(physical: Arc<dyn PhysicalExtensionCodec>) -> Self {
        Self {
            inner: Arc::new(BallistaLogicalExtensionCodec::default()),
            physical,
        }
    }
}

impl LogicalExtensionCodec for PlannedScanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(rest) = buf.strip_prefix(MAGIC) else {
            return self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let (version, bytes) = rest
            .split_first()
            .ok_or_else(|| DataFusionError::Plan(format!("`{table_ref}`: empty planned scan")))?;
        if *version != FORMAT_VERSION {
            return Err(DataFusionError::Plan(format!(
                "`{table_ref}`: planned scan format {version}, this scheduler reads {FORMAT_VERSION}: run the gateway and scheduler of one release"
            )));
        }
        let node = PhysicalPlanNode::try_decode(bytes)?;
        let plan = node.try_into_physical_plan(ctx, self.physical.as_ref())?;
        Ok(Arc::new(PlannedScan::new(plan)))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<PlannedScan>() else {
            return self.inner.try_encode_table_provider(table_ref, node, buf);
        };
        let proto = PhysicalPlanNode::try_from_physical_plan(
            Arc::clone(&scan.plan),
            self.physical.as_ref(),
        )?;
        buf.extend_from_slice(MAGIC);
        buf.push(FORMAT_VERSION);
        proto.try_encode(buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_higher_order_function(
        &self,
        name: &str,
        buf: &[u8],
    ) -> Result<Arc<HigherOrderUDF>> {
        self.inner.try_decode_higher_order_function(name, buf)
    }

    fn try_encode_higher_order_function(
        &self,
        node: &HigherOrderUDF,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_higher_order_function(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}
