//! `IndexBuildExec`: one partition per part file. A task builds the part's
//! HNSW graph and writes it as a sidecar next to the part (or, past the RAM
//! ceiling, writes the part as a Lance dataset).

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use lakehouse_catalog_raft::{HnswParams, ShardBackend};
use lakehouse_common::ObjectRef;
use lakehouse_vector::ShardBuilder;
use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

use crate::error::{Error, Result};
use crate::runtime::{describe, IndexRuntime};
use crate::shard_file;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSpec {
    pub hnsw: HnswParams,
    /// A shard whose graph and vectors would need more memory is written as Lance.
    pub ram_ceiling_bytes: u64,
    pub shards: Vec<BuildTask>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildTask {
    /// The part an embed task wrote.
    pub data: ObjectRef,
    /// Where the HNSW sidecar goes.
    pub graph: ObjectRef,
}

pub fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("part", DataType::UInt32, false),
        Field::new("backend", DataType::Utf8, false),
        Field::new("chunks", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

/// Memory an HNSW shard of `rows` vectors needs: the vectors, the base layer's
/// `2m` neighbours per node and the doc ids (upper layers are a few percent).
pub fn hnsw_bytes(rows: u64, dims: usize, m: u32) -> u64 {
    let per_row = dims as u64 * 4 + 2 * u64::from(m) * 4 + 8;
    rows.saturating_mul(per_row) + rows.saturating_mul(per_row) / 20
}

impl BuildSpec {
    #[instrument(skip_all, fields(part = partition))]
    pub(crate) async fn run(
        &self,
        partition: usize,
        runtime: &IndexRuntime,
    ) -> Result<RecordBatch> {
        let task = self.shards.get(partition).ok_or_else(|| {
            Error::InvalidArgument(format!("index build job has no shard {partition}"))
        })?;
        let location = describe(&task.data);
        let part = shard_file::decode(
            runtime.get(&task.data).await?,
            &location,
            &[shard_file::VECTOR],
        )?;
        let (vectors, dims) = shard_file::flat_vectors(&part, &location)?;
        let rows = part.num_rows() as u64;
        let needed = hnsw_bytes(rows, dims, self.hnsw.m);
        if needed > self.ram_ceiling_bytes {
            return Err(Error::InvalidArgument(format!(
                "shard {location} needs {needed} bytes in memory as HNSW, over vector.ram_ceiling_bytes = {}",
                self.ram_ceiling_bytes
            )));
        }
        let ids: Vec<u64> = (0..rows).collect();
        let builder = ShardBuilder::new(dims)
            .m(self.hnsw.m as usize)
            .ef_construction(self.hnsw.ef_construction as usize)
            // Every core: the node's other task slots mostly wait on this job's other shards.
            .threads(0);
        let vectors = vectors.to_vec();
        let index = tokio::task::spawn_blocking(move || builder.build(&vectors, &ids))
            .await
            .map_err(|e| Error::InvalidArgument(format!("the HNSW build task failed: {e}")))??;
        lakehouse_vector::sidecar::write_sidecar(runtime.bucket(), &task.graph, &index).await?;
        let bytes = (index.graph_bytes() + index.vector_bytes()) as u64;
        info!(shard = %describe(&task.graph), rows, bytes, "built HNSW shard");
        Ok(RecordBatch::try_new(
            output_schema(),
            vec![
                Arc::new(UInt32Array::from(vec![
                    u32::try_from(partition).unwrap_or(u32::MAX)
                ])),
                Arc::new(StringArray::from(vec![ShardBackend::Hnsw.to_string()])),
                Arc::new(UInt64Array::from(vec![rows])),
                Arc::new(UInt64Array::from(vec![bytes])),
            ],
        )?)
    }
}
