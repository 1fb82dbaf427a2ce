//! Builds a shard's graph with our parallel insert (`insert.rs`) and freezes it.

use std::time::Instant;

use tracing::{info, instrument};

use crate::distance::normalize;
use crate::error::{Error, Result};
use crate::frozen::{FrozenHnsw, IndexParams, Metric, Parts};
use crate::insert::GraphBuilder;

/// The default seed of the layer draws (hnswlib's default `random_seed`).
const DEFAULT_SEED: u64 = 100;

/// Settings for building one shard's HNSW graph.
#[derive(Debug, Clone)]
pub struct ShardBuilder {
    dims: usize,
    metric: Metric,
    m: usize,
    ef_construction: usize,
    threads: usize,
    seed: u64,
}

impl ShardBuilder {
    /// Defaults: cosine, M = 16, ef_construction = 200, all cores.
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            metric: Metric::Cosine,
            m: 16,
            ef_construction: 200,
            threads: 0,
            seed: DEFAULT_SEED,
        }
    }

    /// Links per node on upper layers (layer 0 keeps up to 2·M); 2 to 255.
    pub fn m(mut self, m: usize) -> Self {
        self.m = m;
        self
    }

    pub fn ef_construction(mut self, ef_construction: usize) -> Self {
        self.ef_construction = ef_construction;
        self
    }

    /// Insert threads; 0 uses every core.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Seed of the random layer draws: one thread and the same seed build the
    /// same graph; more threads insert in a racy order.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Builds the graph over `vectors` (row-major, `doc_ids.len()` rows of `dims`)
    /// and freezes it. Doc ids are what searches return.
    #[instrument(skip_all, fields(vectors = doc_ids.len(), dims = self.dims, m = self.m, ef_construction = self.ef_construction))]
    pub fn build(&self, vectors: &[f32], doc_ids: &[u64]) -> Result<FrozenHnsw> {
        let prepared = self.prepare(vectors, doc_ids)?;
        let started = Instant::now();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("hnsw-build-{i}"))
            .build()
            .map_err(|e| Error::Build(format!("cannot start build threads: {e}")))?;
        let graph = GraphBuilder::new(
            &prepared,
            self.dims,
            self.m,
            self.ef_construction,
            self.seed,
        );
        graph.insert_all(&pool);
        let inserted = started.elapsed();
        let layers = graph.into_layers()?;
        let parts = Parts {
            params: self.params(),
            doc_ids: doc_ids.to_vec(),
            vectors: prepared,
            entry_point: layers.entry_point,
            base: layers.base,
            upper: layers.upper,
        };
        let index = FrozenHnsw::from_parts(parts)
            .map_err(|reason| Error::Build(format!("frozen graph is inconsistent: {reason}")))?;
        info!(
            insert_ms = inserted.as_millis() as u64,
            freeze_ms = (started.elapsed() - inserted).as_millis() as u64,
            layers = index.layers(),
            "built HNSW shard"
        );
        Ok(index)
    }

    fn params(&self) -> IndexParams {
        IndexParams {
            dims: self.dims,
            metric: self.metric,
            m: self.m,
            ef_construction: self.ef_construction,
        }
    }

    /// Checks the input and returns the vectors as the graph stores them.
    fn prepare(&self, vectors: &[f32], doc_ids: &[u64]) -> Result<Vec<f32>> {
        let invalid = |reason: String| Err(Error::InvalidInput(reason));
        if self.dims == 0 {
            return invalid("dimensions must be at least 1".to_string());
        }
        if !(2..=255).contains(&self.m) {
            return invalid(format!("M = {}: use 2 to 255", self.m));
        }
        if self.ef_construction < self.m {
            return invalid(format!(
                "ef_construction = {} is below M = {}: raise it (200 is usual)",
                self.ef_construction, self.m
            ));
        }
        if doc_ids.is_empty() {
            return invalid("no vectors to index".to_string());
        }
        if u32::try_from(doc_ids.len()).is_err() {
            return invalid(format!("{} vectors in one shard: split it", doc_ids.len()));
        }
        if Some(vectors.len()) != doc_ids.len().checked_mul(self.dims) {
            return invalid(format!(
                "{} values for {} doc ids of {} dimensions",
                vectors.len(),
                doc_ids.len(),
                self.dims
            ));
        }
        let mut prepared = vectors.to_vec();
        for (row, vector) in prepared.chunks_exact_mut(self.dims).enumerate() {
            let ok = match self.metric {
                Metric::Cosine => normalize(vector),
            };
            if !ok {
                return invalid(format!(
                    "vector of doc id {} is zero or not finite",
                    doc_ids[row]
                ));
            }
        }
        Ok(prepared)
    }
}
