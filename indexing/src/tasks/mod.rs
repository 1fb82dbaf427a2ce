//! The physical plans of index jobs. Each is a leaf whose partitions are
//! independent tasks (one per source row range, part or shard), so Ballista
//! spreads them over the executors; a task's output names are fixed by the
//! plan, so a retried task redoes exactly its own work.

pub mod build;
pub mod embed;
pub mod search;

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use serde::{Deserialize, Serialize};

use crate::runtime::IndexRuntime;

/// What an index task does. Serialised into every task's plan (see [`crate::codec`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum TaskSpec {
    Embed(embed::EmbedSpec),
    Build(build::BuildSpec),
    Search(search::SearchSpec),
}

impl TaskSpec {
    fn name(&self) -> &'static str {
        match self {
            TaskSpec::Embed(_) => "EmbedExec",
            TaskSpec::Build(_) => "IndexBuildExec",
            TaskSpec::Search(_) => "VectorSearchExec",
        }
    }

    fn partitions(&self) -> usize {
        match self {
            TaskSpec::Embed(spec) => spec.tasks.len(),
            TaskSpec::Build(spec) => spec.shards.len(),
            TaskSpec::Search(spec) => spec.shards.len(),
        }
    }

    fn schema(&self) -> SchemaRef {
        match self {
            TaskSpec::Embed(_) => embed::output_schema(),
            TaskSpec::Build(_) => build::output_schema(),
            TaskSpec::Search(spec) => search::output_schema(spec.key_type),
        }
    }
}

/// Runs one [`TaskSpec`] per partition on the node's [`IndexRuntime`].
pub struct IndexTaskExec {
    spec: Arc<TaskSpec>,
    runtime: Arc<IndexRuntime>,
    properties: Arc<PlanProperties>,
}

impl IndexTaskExec {
    pub fn new(spec: TaskSpec, runtime: Arc<IndexRuntime>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(spec.schema()),
            // Zero partitions is not a plan; an empty job still has one task that does nothing.
            Partitioning::UnknownPartitioning(spec.partitions().max(1)),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            spec: Arc::new(spec),
            runtime,
            properties,
        }
    }

    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }
}

impl fmt::Debug for IndexTaskExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.spec.name())
            .field("partitions", &self.spec.partitions())
            .finish_non_exhaustive()
    }
}

impl DisplayAs for IndexTaskExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: tasks={}", self.spec.name(), self.spec.partitions())
    }
}

impl ExecutionPlan for IndexTaskExec {
    fn name(&self) -> &str {
        self.spec.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(format!(
                "{} has no children",
                self.spec.name()
            )))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let spec = Arc::clone(&self.spec);
        let runtime = Arc::clone(&self.runtime);
        let schema = spec.schema();
        let empty = partition >= spec.partitions();
        let run = async move {
            let batch = match spec.as_ref() {
                TaskSpec::Embed(embed) => embed.run(partition, &runtime).await,
                TaskSpec::Build(build) => build.run(partition, &runtime).await,
                TaskSpec::Search(search) => search.run(partition, &runtime, &context).await,
            };
            batch.map_err(DataFusionError::from)
        };
        let stream: futures::stream::BoxStream<'static, DfResult<_>> = if empty {
            Box::pin(futures::stream::empty())
        } else {
            Box::pin(futures::stream::once(run))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
