//! The physical codec every scheduler and executor of the cluster uses: index
//! task plans are tagged JSON, versioned; everything else is Ballista's.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;

use crate::runtime::IndexRuntime;
use crate::tasks::{IndexTaskExec, TaskSpec};

/// Marks an index task's bytes, then the format version.
const MAGIC: &[u8; 4] = b"LHIX";
const FORMAT: u8 = 1;

#[derive(Debug)]
pub struct IndexCodec {
    runtime: Arc<IndexRuntime>,
    ballista: BallistaPhysicalExtensionCodec,
}

impl IndexCodec {
    pub fn new(runtime: Arc<IndexRuntime>) -> Self {
        Self {
            runtime,
            ballista: BallistaPhysicalExtensionCodec::default(),
        }
    }
}

impl PhysicalExtensionCodec for IndexCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(rest) = buf.strip_prefix(MAGIC.as_slice()) else {
            return self.ballista.try_decode(buf, inputs, ctx);
        };
        match rest.split_first() {
            Some((&FORMAT, json)) => {
                let spec: TaskSpec = serde_json::from_slice(json)
                    .map_err(|e| DataFusionError::Internal(format!("undecodable index task: {e}")))?;
                Ok(Arc::new(IndexTaskExec::new(spec, Arc::clone(&self.runtime))))
            }
            Some((format, _)) => Err(DataFusionError::NotImplemented(format!(
                "index task format {format} is newer than this node understands ({FORMAT}); upgrade it"
            ))),
            None => Err(DataFusionError::Internal("empty index task".to_string())),
        }
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>) -> DfResult<()> {
        let Some(task) = node.downcast_ref::<IndexTaskExec>() else {
            return self.ballista.try_encode(node, buf);
        };
        buf.extend_from_slice(MAGIC);
        buf.push(FORMAT);
        serde_json::to_writer(buf, task.spec())
            .map_err(|e| DataFusionError::Internal(format!("cannot encode index task: {e}")))
    }
}
