//! Shards loaded on this node for search: an HNSW shard's frozen graph from
//! its sidecar with the part's doc ids and chunk texts that results are taken
//! from, or a Lance shard opened where it is (its searches read the dataset).
//! Loaded once per node and kept; concurrent first searches wait for one load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::ArrayRef;
use lakehouse_vector::{FrozenHnsw, LanceShard};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::info;

use lakehouse_catalog_raft::{IndexShard, ShardBackend};
use lakehouse_common::ObjectRef;

use crate::error::{Error, Result};
use crate::runtime::{describe, IndexRuntime};
use crate::shard_file::{self, CHUNK_TEXT, DOC_ID};

/// Where a shard is: what a search task is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    pub backend: ShardBackend,
    pub data: ObjectRef,
    pub graph: Option<ObjectRef>,
}

impl ShardRef {
    pub fn of(shard: &IndexShard) -> Self {
        Self {
            backend: shard.backend,
            data: shard.data.clone(),
            graph: shard.graph.clone(),
        }
    }
}

#[derive(Debug)]
pub(crate) enum LoadedShard {
    Hnsw(HnswShard),
    Lance(LanceShard),
}

#[derive(Debug)]
pub(crate) struct HnswShard {
    pub(crate) graph: FrozenHnsw,
    pub(crate) doc_ids: ArrayRef,
    pub(crate) chunk_texts: ArrayRef,
}

type Slot = Arc<OnceCell<Arc<LoadedShard>>>;

#[derive(Debug, Default)]
pub(crate) struct ShardCache {
    /// By the shard's data object (`bucket:key`).
    loaded: Mutex<HashMap<String, Slot>>,
}

impl ShardCache {
    pub(crate) async fn get(
        &self,
        shard: &ShardRef,
        runtime: &IndexRuntime,
    ) -> Result<Arc<LoadedShard>> {
        let slot = {
            let mut loaded = self
                .loaded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(loaded.entry(describe(&shard.data)).or_default())
        };
        let shard = slot.get_or_try_init(|| load(shard, runtime)).await?;
        Ok(Arc::clone(shard))
    }
}

async fn load(shard: &ShardRef, runtime: &IndexRuntime) -> Result<Arc<LoadedShard>> {
    let started = Instant::now();
    let location = describe(&shard.data);
    let loaded = match (shard.backend, &shard.graph) {
        (ShardBackend::Hnsw, Some(graph)) => {
            LoadedShard::Hnsw(load_hnsw(&shard.data, graph, runtime).await?)
        }
        (ShardBackend::Hnsw, None) => {
            return Err(Error::BadShard {
                location,
                reason: "an hnsw shard without an HNSW sidecar cannot be loaded".to_string(),
            })
        }
        (ShardBackend::Lance, _) => {
            let uri = runtime.lance_uri(&shard.data)?;
            LoadedShard::Lance(LanceShard::open(&uri, HashMap::new(), runtime.lance()).await?)
        }
    };
    let vectors = match &loaded {
        LoadedShard::Hnsw(hnsw) => hnsw.graph.len(),
        LoadedShard::Lance(lance) => lance.len(),
    };
    info!(
        shard = %location,
        backend = %shard.backend,
        vectors,
        load_ms = started.elapsed().as_millis() as u64,
        "loaded shard"
    );
    Ok(Arc::new(loaded))
}

async fn load_hnsw(
    data: &ObjectRef,
    graph_ref: &ObjectRef,
    runtime: &IndexRuntime,
) -> Result<HnswShard> {
    let location = describe(data);
    runtime.locate(graph_ref)?;
    let graph = lakehouse_vector::sidecar::read_sidecar(runtime.bucket(), graph_ref).await?;
    let part = shard_file::decode(runtime.get(data).await?, &location, &[DOC_ID, CHUNK_TEXT])?;
    if part.num_rows() != graph.len() {
        return Err(Error::BadShard {
            location,
            reason: format!(
                "{} chunks but its graph has {} vectors",
                part.num_rows(),
                graph.len()
            ),
        });
    }
    let doc_ids = Arc::clone(shard_file::column(&part, DOC_ID, &location)?);
    let chunk_texts = Arc::clone(shard_file::column(&part, CHUNK_TEXT, &location)?);
    Ok(HnswShard {
        graph,
        doc_ids,
        chunk_texts,
    })
}
