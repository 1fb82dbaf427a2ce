//! `IndexBuildExec`: one partition per part file. A task builds the part's
//! HNSW graph and writes it as a sidecar next to the part, or writes the part
//! as a Lance dataset next to it: when the profile's `vector_backend` is
//! `lance`, or when the HNSW graph and vectors would not fit under the RAM
//! ceiling (ADR-019). One index may so mix both kinds of shard.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use lakehouse_catalog_raft::{HnswParams, IndexShard, ShardBackend};
use lakehouse_common::config::VectorBackend;
use lakehouse_common::ObjectRef;
use lakehouse_vector::{LanceParams, LanceShard, ShardBuilder};
use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

use crate::error::{Error, Result};
use crate::runtime::{describe, IndexRuntime};
use crate::shard_file;

const PART: &str = ".parquet";
const SIDECAR: &str = ".hnsw";
const LANCE: &str = ".lance";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSpec {
    pub hnsw: HnswParams,
    /// A shard whose graph and vectors would need more memory is written as Lance.
    pub ram_ceiling_bytes: u64,
    /// The profile's choice: `lance` writes every shard as Lance.
    pub backend: VectorBackend,
    /// How Lance shards are indexed.
    pub lance: LanceParams,
    pub shards: Vec<BuildTask>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildTask {
    /// The part an embed task wrote.
    pub data: ObjectRef,
    /// Where the HNSW sidecar goes.
    pub graph: ObjectRef,
    /// Where the Lance dataset (a directory) goes.
    pub lance: ObjectRef,
}

impl BuildTask {
    /// The shard of `part`: its sidecar or dataset goes next to it.
    pub fn of_part(part: &ObjectRef) -> Self {
        let next_to = |suffix: &str| ObjectRef {
            bucket: part.bucket.clone(),
            key: format!("{}{suffix}", part.key.trim_end_matches(PART)),
        };
        Self {
            data: part.clone(),
            graph: next_to(SIDECAR),
            lance: next_to(LANCE),
        }
    }

    /// The catalog's record of the shard once built as `backend`.
    pub fn shard(&self, backend: ShardBackend, chunks: u64) -> IndexShard {
        match backend {
            ShardBackend::Hnsw => IndexShard {
                data: self.data.clone(),
                graph: Some(self.graph.clone()),
                backend,
                chunks,
            },
            ShardBackend::Lance => IndexShard {
                data: self.lance.clone(),
                graph: None,
                backend,
                chunks,
            },
        }
    }
}

/// The part a shard was built from: a Lance shard's part stays next to its
/// dataset (a refresh reuses its vectors by content hash).
pub fn part_of(shard: &IndexShard) -> ObjectRef {
    match shard.backend {
        ShardBackend::Hnsw => shard.data.clone(),
        ShardBackend::Lance => ObjectRef {
            bucket: shard.data.bucket.clone(),
            key: format!("{}{PART}", shard.data.key.trim_end_matches(LANCE)),
        },
    }
}

/// The shard a finished build wrote `location` for, if it marks one: its
/// sidecar, or an index inside its Lance dataset (written last). Progress only.
pub(crate) fn built_shard(location: &str) -> Option<&str> {
    if location.ends_with(SIDECAR) {
        return Some(location);
    }
    location
        .split_once(&format!("{LANCE}/_indices/"))
        .map(|(dataset, _)| dataset)
}

pub fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("part", DataType::UInt32, false),
        Field::new("backend", DataType::Utf8, false),
        Field::new("chunks", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

/// The backend each shard was built as, by part number, from the task reports.
pub(crate) fn backends(reports: &[RecordBatch], shards: usize) -> Result<Vec<ShardBackend>> {
    let mut found = vec![None; shards];
    for batch in reports {
        let part = batch
            .column_by_name("part")
            .and_then(|c| c.as_primitive_opt::<UInt32Type>());
        let backend = batch
            .column_by_name("backend")
            .and_then(|c| c.as_string_opt::<i32>());
        let (Some(part), Some(backend)) = (part, backend) else {
            continue;
        };
        for (part, backend) in part.values().iter().zip(backend.iter()) {
            let backend = match backend {
                Some("hnsw") => ShardBackend::Hnsw,
                Some("lance") => ShardBackend::Lance,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "an index build task reported backend {other:?}"
                    )))
                }
            };
            if let Some(slot) = found.get_mut(*part as usize) {
                *slot = Some(backend);
            }
        }
    }
    found
        .into_iter()
        .enumerate()
        .map(|(part, backend)| {
            backend.ok_or_else(|| {
                Error::InvalidArgument(format!("the index build reported nothing for shard {part}"))
            })
        })
        .collect()
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
        // Every column: a Lance shard is the whole part.
        let part = shard_file::decode(runtime.get(&task.data).await?, &location, &[])?;
        let (vectors, dims) = shard_file::flat_vectors(&part, &location)?;
        let rows = part.num_rows() as u64;
        let needed = hnsw_bytes(rows, dims, self.hnsw.m);
        let (backend, bytes) = if self.backend == VectorBackend::Lance
            || needed > self.ram_ceiling_bytes
        {
            let bytes = self.write_lance(task, part, runtime).await?;
            info!(shard = %describe(&task.lance), rows, bytes, hnsw_bytes = needed, "wrote Lance shard");
            (ShardBackend::Lance, bytes)
        } else {
            let bytes = self
                .build_hnsw(task, vectors.to_vec(), dims, rows, runtime)
                .await?;
            info!(shard = %describe(&task.graph), rows, bytes, "built HNSW shard");
            (ShardBackend::Hnsw, bytes)
        };
        Ok(RecordBatch::try_new(
            output_schema(),
            vec![
                Arc::new(UInt32Array::from(vec![
                    u32::try_from(partition).unwrap_or(u32::MAX)
                ])),
                Arc::new(StringArray::from(vec![backend.to_string()])),
                Arc::new(UInt64Array::from(vec![rows])),
                Arc::new(UInt64Array::from(vec![bytes])),
            ],
        )?)
    }

    /// Builds the graph and writes the sidecar; the bytes it takes in memory.
    async fn build_hnsw(
        &self,
        task: &BuildTask,
        vectors: Vec<f32>,
        dims: usize,
        rows: u64,
        runtime: &IndexRuntime,
    ) -> Result<u64> {
        let ids: Vec<u64> = (0..rows).collect();
        let builder = ShardBuilder::new(dims)
            .m(self.hnsw.m as usize)
            .ef_construction(self.hnsw.ef_construction as usize)
            // Every core: the node's other task slots mostly wait on this job's other shards.
            .threads(0);
        let index = tokio::task::spawn_blocking(move || builder.build(&vectors, &ids))
            .await
            .map_err(|e| Error::InvalidArgument(format!("the HNSW build task failed: {e}")))??;
        lakehouse_vector::sidecar::write_sidecar(runtime.bucket(), &task.graph, &index).await?;
        Ok((index.graph_bytes() + index.vector_bytes()) as u64)
    }

    /// Writes the part as a Lance dataset; the bytes it takes in the bucket.
    async fn write_lance(
        &self,
        task: &BuildTask,
        part: RecordBatch,
        runtime: &IndexRuntime,
    ) -> Result<u64> {
        let uri = runtime.lance_uri(&task.lance)?;
        // Lance creates no dataset where one is: a retried task clears its own
        // earlier attempt first, as the HNSW path overwrites its sidecar.
        runtime.delete_under(&task.lance).await?;
        LanceShard::write(&uri, HashMap::new(), vec![part], &self.lance).await?;
        runtime.size_under(&task.lance).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str) -> ObjectRef {
        ObjectRef::primary(key)
    }

    #[test]
    fn shards_sit_next_to_their_parts() {
        let task = BuildTask::of_part(&object("indexes/i/v2/part-00003.parquet"));
        assert_eq!(task.graph.key, "indexes/i/v2/part-00003.hnsw");
        assert_eq!(task.lance.key, "indexes/i/v2/part-00003.lance");
        for backend in [ShardBackend::Hnsw, ShardBackend::Lance] {
            let shard = task.shard(backend, 7);
            assert_eq!(part_of(&shard), task.data, "{backend}");
        }
        assert_eq!(task.shard(ShardBackend::Lance, 7).graph, None);
        assert_eq!(
            built_shard("indexes/i/v2/part-00003.lance/_indices/x/index.idx"),
            Some("indexes/i/v2/part-00003")
        );
        assert_eq!(
            built_shard("indexes/i/v2/part-00003.lance/data/a.lance"),
            None
        );
        assert_eq!(
            built_shard("indexes/i/v2/part-00003.hnsw"),
            Some("indexes/i/v2/part-00003.hnsw")
        );
    }

    #[test]
    fn reports_name_each_shards_backend() {
        let report = |part: u32, backend: &str| {
            RecordBatch::try_new(
                output_schema(),
                vec![
                    Arc::new(UInt32Array::from(vec![part])),
                    Arc::new(StringArray::from(vec![backend])),
                    Arc::new(UInt64Array::from(vec![1])),
                    Arc::new(UInt64Array::from(vec![1])),
                ],
            )
            .expect("report")
        };
        let reports = [report(1, "hnsw"), report(0, "lance")];
        assert_eq!(
            backends(&reports, 2).expect("backends"),
            vec![ShardBackend::Lance, ShardBackend::Hnsw]
        );
        assert!(backends(&reports, 3).is_err(), "a shard without a report");
        assert!(backends(&[report(0, "faiss")], 1).is_err());
    }
}
