//! Lance shards: the backend for shards past the RAM ceiling (issue 6, ADR-019).
//!
//! A shard is a Lance dataset with the chunk columns (`doc_id`, `chunk_text`,
//! `content_hash`, `vector`), an IVF_HNSW_SQ index on `vector` (IVF_PQ without a
//! refine step stops near recall 0.34, DEPENDENCIES.md "lance 14") and a BTREE
//! index on `doc_id` for random access. Appends add new data files and leave the
//! old ones alone; until [`LanceShard::optimize_indices`] runs, Lance searches the
//! rows the indexes do not cover by a flat scan, so they are found all the same.
//! A shard of fewer than [`MIN_INDEXED_ROWS`] rows gets no vector index at all:
//! Lance answers its searches by the same flat scan.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, RecordBatch, RecordBatchIterator};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, SchemaRef};
use futures::lock::Mutex;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::scanner::Scanner;
use lance::dataset::{WriteMode, WriteParams};
use lance::deps::datafusion::logical_expr::{col, lit, Expr};
use lance::deps::datafusion::scalar::ScalarValue;
use lance::index::vector::VectorIndexParams;
use lance::index::DatasetIndexExt;
use lance::io::{ObjectStoreParams, StorageOptionsAccessor};
use lance::Dataset;
use lance_index::optimize::OptimizeOptions;
use lance_index::scalar::ScalarIndexParams;
use lance_index::vector::hnsw::builder::HnswBuildParams;
use lance_index::vector::ivf::IvfBuildParams;
use lance_index::vector::sq::builder::SQBuildParams;
use lance_index::vector::DIST_COL;
use lance_index::IndexType;
use lance_linalg::distance::DistanceType;
use tracing::{info, instrument};

use crate::{Error, Result, MAX_K};

/// Column names of a shard.
pub const DOC_ID: &str = "doc_id";
pub const CHUNK_TEXT: &str = "chunk_text";
pub const VECTOR: &str = "vector";
/// The similarity column of search results.
pub const SCORE: &str = "score";

/// Shards with fewer rows are written without a vector index. Lance trains
/// IVF_HNSW_SQ on as few rows as it has partitions (only PQ codebooks need
/// 256, `2^num_bits`), but an IVF of a handful of tiny partitions buys nothing:
/// the flat scan Lance falls back to over so few rows is exact and takes
/// microseconds, and an index would only let a low nprobes miss results.
pub const MIN_INDEXED_ROWS: usize = 256;

const VECTOR_INDEX: &str = "vector_idx";
const DOC_ID_INDEX: &str = "doc_id_idx";

/// How a Lance shard is indexed and searched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LanceParams {
    /// IVF partitions; 0 picks about √rows.
    pub partitions: usize,
    /// Partitions probed per query.
    pub nprobes: usize,
    /// HNSW search breadth within a partition; raised to `k × refine_factor` when lower.
    pub ef: usize,
    /// Re-rank `k × refine_factor` candidates with the full vectors; 0 turns it off.
    pub refine_factor: u32,
}

impl Default for LanceParams {
    /// DEPENDENCIES.md: recall@10 0.96 at nprobes 2, ef 50 on 100K × 768 with 256
    /// partitions; refine 2 lifts it to 0.997 for about 0.5 ms more.
    fn default() -> Self {
        Self {
            partitions: 0,
            nprobes: 2,
            ef: 50,
            refine_factor: 0,
        }
    }
}

/// A shard stored as a Lance dataset. Reads use the snapshot taken at open or
/// after the last change made through this handle.
pub struct LanceShard {
    uri: String,
    storage_options: HashMap<String, String>,
    params: LanceParams,
    current: RwLock<Snapshot>,
    /// Serialises this handle's changes, so one append does not replace another's snapshot.
    writer: Mutex<()>,
}

impl std::fmt::Debug for LanceShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanceShard")
            .field("uri", &self.uri)
            .field("rows", &self.len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Snapshot {
    dataset: Arc<Dataset>,
    rows: usize,
}

impl LanceShard {
    /// Writes `batches` as a new Lance dataset at `uri` and indexes it: IVF_HNSW_SQ
    /// on `vector` (L2, which ranks unit vectors as cosine does; none below
    /// [`MIN_INDEXED_ROWS`]) and BTREE on `doc_id`.
    #[instrument(skip_all, fields(uri, rows))]
    pub async fn write(
        uri: &str,
        storage_options: HashMap<String, String>,
        batches: Vec<RecordBatch>,
        params: &LanceParams,
    ) -> Result<LanceShard> {
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| Error::InvalidInput("a Lance shard needs at least one batch".into()))?;
        check_schema(&schema)?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        tracing::Span::current().record("rows", rows);
        if rows == 0 {
            return Err(Error::InvalidInput(
                "a Lance shard needs at least one row".into(),
            ));
        }
        let write_params = WriteParams {
            mode: WriteMode::Create,
            store_params: Some(store_params(&storage_options)),
            ..Default::default()
        };
        let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
        let started = std::time::Instant::now();
        let mut dataset = Dataset::write(reader, uri, Some(write_params))
            .await
            .map_err(|e| lance_error(uri, "write", e))?;
        let written = started.elapsed();

        let partitions = match params.partitions {
            _ if rows < MIN_INDEXED_ROWS => 0,
            0 => ((rows as f64).sqrt().round() as usize).max(1),
            p => p.min(rows),
        };
        if partitions > 0 {
            let vector_index = VectorIndexParams::with_ivf_hnsw_sq_params(
                DistanceType::L2,
                IvfBuildParams::new(partitions),
                HnswBuildParams::default(),
                SQBuildParams::default(),
            );
            dataset
                .create_index(
                    &[VECTOR],
                    IndexType::Vector,
                    Some(VECTOR_INDEX.into()),
                    &vector_index,
                    true,
                )
                .await
                .map_err(|e| lance_error(uri, "build the IVF_HNSW_SQ index on", e))?;
        }
        dataset
            .create_index(
                &[DOC_ID],
                IndexType::Scalar,
                Some(DOC_ID_INDEX.into()),
                &ScalarIndexParams::default(),
                true,
            )
            .await
            .map_err(|e| lance_error(uri, "build the doc_id BTREE index on", e))?;
        info!(
            partitions,
            write_ms = written.as_millis() as u64,
            index_ms = (started.elapsed() - written).as_millis() as u64,
            "Lance shard written"
        );
        Ok(Self::from_dataset(
            dataset,
            rows,
            storage_options,
            params.clone(),
        ))
    }

    /// Opens the dataset at `uri` where it is (nothing is copied).
    #[instrument(skip_all, fields(uri))]
    pub async fn open(
        uri: &str,
        storage_options: HashMap<String, String>,
        params: &LanceParams,
    ) -> Result<LanceShard> {
        let dataset = DatasetBuilder::from_uri(uri)
            .with_storage_options(storage_options.clone())
            .load()
            .await
            .map_err(|e| lance_error(uri, "open", e))?;
        check_schema(&Arc::new(Schema::from(dataset.schema())))?;
        let rows = dataset
            .count_rows(None)
            .await
            .map_err(|e| lance_error(uri, "count the rows of", e))?;
        Ok(Self::from_dataset(
            dataset,
            rows,
            storage_options,
            params.clone(),
        ))
    }

    fn from_dataset(
        dataset: Dataset,
        rows: usize,
        storage_options: HashMap<String, String>,
        params: LanceParams,
    ) -> Self {
        Self {
            uri: dataset.uri().to_string(),
            storage_options,
            params,
            current: RwLock::new(Snapshot {
                dataset: Arc::new(dataset),
                rows,
            }),
            writer: Mutex::new(()),
        }
    }

    /// The `k` rows nearest to `query`, best first: `doc_id`, `chunk_text` and
    /// `score` (cosine similarity, 1 − L2²/2 for unit vectors). `prefilter` is a
    /// Lance SQL filter over the shard's columns applied before the vector
    /// search, so k rows come back whenever k rows match it.
    #[instrument(skip_all, fields(uri = %self.uri, k, filtered = prefilter.is_some()))]
    pub async fn search(
        &self,
        query: &[f32],
        k: usize,
        prefilter: Option<&str>,
    ) -> Result<RecordBatch> {
        if k == 0 || k > MAX_K {
            return Err(Error::InvalidInput(format!(
                "k must be between 1 and {MAX_K}, got {k}"
            )));
        }
        let dataset = self.snapshot().dataset;
        let mut scanner = dataset.scan();
        let key = Float32Array::from(query.to_vec());
        let refine = self.params.refine_factor;
        // Lance refuses a query whose ef is below the candidates the refine step asks for.
        let ef = self.params.ef.max(k * refine.max(1) as usize);
        let scan_error = |e| lance_error(&self.uri, "search", e);
        if let Some(filter) = prefilter {
            scanner.prefilter(true);
            scanner.filter(filter).map_err(|e| {
                Error::InvalidInput(format!("prefilter `{filter}` is not a valid filter: {e}"))
            })?;
        }
        scanner
            .disable_scoring_autoprojection()
            .project(&[DOC_ID, CHUNK_TEXT, DIST_COL])
            .map_err(scan_error)?
            .nearest(VECTOR, &key, k)
            .map_err(|e| Error::InvalidInput(format!("query vector: {e}")))?
            // The index's metric, and the one `to_scored` assumes when there is no index.
            .distance_metric(DistanceType::L2)
            .ef(ef);
        if prefilter.is_some() {
            // A fixed nprobes caps the probes, and the probed partitions may hold
            // fewer than k matching rows: start at nprobes and let Lance probe on.
            scanner
                .minimum_nprobes(self.params.nprobes)
                .search_effort(0.0)
                .map_err(scan_error)?;
        } else {
            scanner.nprobes(self.params.nprobes);
        }
        if refine > 0 {
            scanner.refine(refine);
        }
        let batch = scanner.try_into_batch().await.map_err(scan_error)?;
        to_scored(batch).map_err(scan_error)
    }

    /// Every row whose `doc_id` is one of `doc_ids` (all of a document's
    /// chunks), found through the BTREE index rather than a scan.
    #[instrument(skip_all, fields(uri = %self.uri, ids = doc_ids.len()))]
    pub async fn take(&self, doc_ids: &ArrayRef) -> Result<RecordBatch> {
        self.take_scanner(doc_ids)?
            .try_into_batch()
            .await
            .map_err(|e| lance_error(&self.uri, "take rows from", e))
    }

    fn take_scanner(&self, doc_ids: &ArrayRef) -> Result<Scanner> {
        let values = (0..doc_ids.len())
            .filter(|&i| doc_ids.is_valid(i))
            .map(|i| ScalarValue::try_from_array(doc_ids, i).map(lit))
            .collect::<Result<Vec<Expr>, _>>()
            .map_err(|e| Error::InvalidInput(format!("doc ids: {e}")))?;
        let mut scanner = self.snapshot().dataset.scan();
        scanner.filter_expr(col(DOC_ID).in_list(values, false));
        Ok(scanner)
    }

    /// Appends rows as new data files; no existing file is rewritten. The new
    /// rows are searchable at once (Lance scans the rows its indexes do not
    /// cover); [`optimize_indices`](Self::optimize_indices) indexes them.
    #[instrument(skip_all, fields(uri = %self.uri, rows))]
    pub async fn append(&self, batches: Vec<RecordBatch>) -> Result<()> {
        let Some(schema) = batches.first().map(RecordBatch::schema) else {
            return Ok(());
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        tracing::Span::current().record("rows", rows);
        let _writing = self.writer.lock().await;
        let Snapshot { dataset, rows: old } = self.snapshot();
        let mut dataset = Dataset::clone(&dataset);
        let write_params = WriteParams {
            mode: WriteMode::Append,
            store_params: Some(store_params(&self.storage_options)),
            ..Default::default()
        };
        let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
        dataset
            .append(reader, Some(write_params))
            .await
            .map_err(|e| lance_error(&self.uri, "append to", e))?;
        self.replace(dataset, old + rows);
        Ok(())
    }

    /// Adds the rows appended since the indexes were built to both indexes, as
    /// delta segments next to the existing ones (no data file or index file is
    /// rewritten).
    #[instrument(skip_all, fields(uri = %self.uri))]
    pub async fn optimize_indices(&self) -> Result<()> {
        let _writing = self.writer.lock().await;
        let Snapshot { dataset, rows } = self.snapshot();
        let mut dataset = Dataset::clone(&dataset);
        dataset
            .optimize_indices(&OptimizeOptions::append())
            .await
            .map_err(|e| lance_error(&self.uri, "index the appended rows of", e))?;
        self.replace(dataset, rows);
        Ok(())
    }

    /// Rows in the shard, appended ones included.
    pub fn len(&self) -> usize {
        self.snapshot().rows
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The dataset this handle reads (for inspection: versions, fragments, files).
    pub fn dataset(&self) -> Arc<Dataset> {
        self.snapshot().dataset
    }

    fn snapshot(&self) -> Snapshot {
        // A poisoned lock only means a reader panicked; the snapshot itself is whole.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn replace(&self, dataset: Dataset, rows: usize) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Snapshot {
            dataset: Arc::new(dataset),
            rows,
        };
    }
}

fn store_params(storage_options: &HashMap<String, String>) -> ObjectStoreParams {
    ObjectStoreParams {
        storage_options_accessor: Some(Arc::new(StorageOptionsAccessor::with_static_options(
            storage_options.clone(),
        ))),
        ..Default::default()
    }
}

/// The columns search and take rely on; `doc_id` may be of any type.
fn check_schema(schema: &SchemaRef) -> Result<()> {
    let column = |name: &str| {
        schema.field_with_name(name).map_err(|_| {
            Error::InvalidInput(format!(
                "a Lance shard needs a `{name}` column; the batches have {:?}",
                schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
            ))
        })
    };
    column(DOC_ID)?;
    let text = column(CHUNK_TEXT)?;
    if !matches!(text.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
        return Err(Error::InvalidInput(format!(
            "`{CHUNK_TEXT}` must be Utf8, not {}",
            text.data_type()
        )));
    }
    match column(VECTOR)?.data_type() {
        DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32 => Ok(()),
        other => Err(Error::InvalidInput(format!(
            "`{VECTOR}` must be FixedSizeList<Float32, dims>, not {other}"
        ))),
    }
}

/// Lance's `_distance` (squared L2) turned into cosine similarity.
fn to_scored(batch: RecordBatch) -> lance::Result<RecordBatch> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| lance::Error::internal(format!("search result has no `{name}` column")))
    };
    let distance = column(DIST_COL)?;
    let score: Float32Array = distance
        .as_primitive_opt::<Float32Type>()
        .ok_or_else(|| lance::Error::internal(format!("`{DIST_COL}` is {}", distance.data_type())))?
        .unary(|d| 1.0 - d / 2.0);
    let doc_id = column(DOC_ID)?;
    let text = column(CHUNK_TEXT)?;
    let schema = Schema::new(vec![
        Field::new(DOC_ID, doc_id.data_type().clone(), true),
        Field::new(CHUNK_TEXT, text.data_type().clone(), true),
        Field::new(SCORE, DataType::Float32, false),
    ]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![doc_id, text, Arc::new(score)],
    )?)
}

fn lance_error(uri: &str, op: &'static str, error: lance::Error) -> Error {
    match error {
        lance::Error::DatasetNotFound { .. } => Error::ShardNotFound {
            uri: uri.to_string(),
        },
        lance::Error::DatasetAlreadyExists { .. } => Error::ShardExists {
            uri: uri.to_string(),
        },
        other => Error::Lance {
            uri: uri.to_string(),
            op,
            source: Box::new(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use arrow::array::{FixedSizeListArray, StringArray, UInt64Array};
    use lakehouse_common::ErrorKind;

    use super::*;
    use crate::tests::Rng;

    const DIMS: usize = 48;

    /// `count` unit vectors around 20 random centres (noise as large as the
    /// centres, as in benches/vector.py), row-major. Uniformly random vectors
    /// have no clusters for IVF to find, so no few probes reach high recall.
    fn unit_vectors(rng: &mut Rng, count: usize) -> Vec<f32> {
        let centres: Vec<f32> = (0..20 * DIMS).map(|_| rng.normal()).collect();
        let mut data = Vec::with_capacity(count * DIMS);
        for _ in 0..count {
            let c = (rng.next_u64() % 20) as usize;
            let row: Vec<f32> = centres[c * DIMS..(c + 1) * DIMS]
                .iter()
                .map(|x| x + rng.normal())
                .collect();
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            data.extend(row.iter().map(|x| x / norm));
        }
        data
    }

    /// Row `i` has doc id 1_000_000 + 7i, unlike its row number.
    fn doc_id(i: usize) -> u64 {
        1_000_000 + 7 * i as u64
    }

    fn chunks(first_row: usize, vectors: &[f32]) -> RecordBatch {
        let rows = first_row..first_row + vectors.len() / DIMS;
        let ids: ArrayRef = Arc::new(UInt64Array::from_iter_values(rows.clone().map(doc_id)));
        chunks_with_ids(ids, rows.map(|i| format!("chunk {i}")), vectors)
    }

    fn chunks_with_ids(
        ids: ArrayRef,
        texts: impl Iterator<Item = String>,
        vectors: &[f32],
    ) -> RecordBatch {
        let texts = StringArray::from_iter_values(texts);
        let hashes = UInt64Array::from_iter_values((0..texts.len() as u64).map(|i| i * 31));
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let vectors = FixedSizeListArray::try_new(
            item,
            DIMS as i32,
            Arc::new(Float32Array::from(vectors.to_vec())),
            None,
        )
        .expect("vectors");
        let schema = Schema::new(vec![
            Field::new(DOC_ID, ids.data_type().clone(), false),
            Field::new(CHUNK_TEXT, DataType::Utf8, false),
            Field::new("content_hash", DataType::UInt64, false),
            Field::new(VECTOR, vectors.data_type().clone(), false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![ids, Arc::new(texts), Arc::new(hashes), Arc::new(vectors)],
        )
        .expect("batch")
    }

    fn params() -> LanceParams {
        LanceParams {
            partitions: 0,
            nprobes: 12,
            ef: 64,
            refine_factor: 2,
        }
    }

    fn uri(dir: &Path) -> String {
        format!("file://{}", dir.join("shard.lance").display())
    }

    fn ids(batch: &RecordBatch) -> Vec<u64> {
        batch[DOC_ID]
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .values()
            .to_vec()
    }

    fn scores(batch: &RecordBatch) -> Vec<f32> {
        batch[SCORE].as_primitive::<Float32Type>().values().to_vec()
    }

    /// The exact `k` best doc ids by cosine similarity.
    fn exact(vectors: &[f32], query: &[f32], k: usize) -> Vec<u64> {
        let mut scored: Vec<(f32, usize)> = vectors
            .chunks_exact(DIMS)
            .map(|v| v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>())
            .enumerate()
            .map(|(i, s)| (s, i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored[..k].iter().map(|&(_, i)| doc_id(i)).collect()
    }

    /// Data file name → size.
    fn data_files(dir: &Path) -> BTreeMap<String, u64> {
        std::fs::read_dir(dir.join("shard.lance").join("data"))
            .expect("data dir")
            .map(|entry| {
                let entry = entry.expect("entry");
                let size = entry.metadata().expect("metadata").len();
                (entry.file_name().to_string_lossy().into_owned(), size)
            })
            .collect()
    }

    #[tokio::test]
    async fn search_recall_scores_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(7);
        let vectors = unit_vectors(&mut rng, 3000);
        let queries = unit_vectors(&mut rng, 40);
        let batches = vec![
            chunks(0, &vectors[..1000 * DIMS]),
            chunks(1000, &vectors[1000 * DIMS..]),
        ];
        let shard = LanceShard::write(&uri(dir.path()), HashMap::new(), batches, &params())
            .await
            .expect("write");
        assert_eq!(shard.len(), 3000);

        let mut found = 0;
        for query in queries.chunks_exact(DIMS) {
            let result = shard.search(query, 10, None).await.expect("search");
            assert_eq!(result.num_rows(), 10);
            let scores = scores(&result);
            assert!(
                scores.windows(2).all(|w| w[0] >= w[1]),
                "best first: {scores:?}"
            );
            // The refine step re-ranks with the stored vectors, so the score is the cosine.
            let best = ids(&result)[0];
            let row = ((best - 1_000_000) / 7) as usize;
            let cosine: f32 = vectors[row * DIMS..(row + 1) * DIMS]
                .iter()
                .zip(query)
                .map(|(a, b)| a * b)
                .sum();
            assert!(
                (scores[0] - cosine).abs() < 1e-4,
                "{} vs {cosine}",
                scores[0]
            );
            let truth = exact(&vectors, query, 10);
            found += ids(&result).iter().filter(|id| truth.contains(id)).count();
        }
        let recall = found as f64 / (40 * 10) as f64;
        assert!(recall >= 0.9, "recall@10 = {recall}");

        // Opened again in place: same rows, same answers.
        let query = &queries[..DIMS];
        let before = shard.search(query, 10, None).await.expect("search");
        drop(shard);
        let reopened = LanceShard::open(&uri(dir.path()), HashMap::new(), &params())
            .await
            .expect("open");
        assert_eq!(reopened.len(), 3000);
        let after = reopened.search(query, 10, None).await.expect("search");
        assert_eq!(ids(&before), ids(&after));
    }

    #[tokio::test]
    async fn filtered_search_returns_k_rows_when_k_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(11);
        let vectors = unit_vectors(&mut rng, 2000);
        let query = unit_vectors(&mut rng, 1);
        let shard = LanceShard::write(
            &uri(dir.path()),
            HashMap::new(),
            vec![chunks(0, &vectors)],
            &params(),
        )
        .await
        .expect("write");
        // 12 documents spread over the shard, so over many IVF partitions.
        let wanted: Vec<u64> = (0..12).map(|i| doc_id(i * 150 + 3)).collect();
        let list = wanted
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let result = shard
            .search(&query, 10, Some(&format!("doc_id IN ({list})")))
            .await
            .expect("filtered search");
        assert_eq!(result.num_rows(), 10);
        assert!(ids(&result).iter().all(|id| wanted.contains(id)));
        // The exact best 10 of the 12 (the refine step ranks by the stored vectors).
        let rows: Vec<f32> = (0..12)
            .flat_map(|i| vectors[(i * 150 + 3) * DIMS..(i * 150 + 4) * DIMS].to_vec())
            .collect();
        let truth: Vec<u64> = exact(&rows, &query, 10)
            .into_iter()
            .map(|id| wanted[((id - 1_000_000) / 7) as usize])
            .collect();
        let hits = ids(&result).iter().filter(|id| truth.contains(id)).count();
        assert!(hits >= 8, "filtered recall {hits}/10");

        // One probe first: Lance probes on until k matching rows are found.
        let one_probe = LanceParams {
            nprobes: 1,
            ..params()
        };
        let narrow = LanceShard::open(&uri(dir.path()), HashMap::new(), &one_probe)
            .await
            .expect("open");
        let result = narrow
            .search(&query, 10, Some(&format!("doc_id IN ({list})")))
            .await
            .expect("filtered search");
        assert_eq!(result.num_rows(), 10);

        // Fewer than k match: all of them, no error.
        let few = shard
            .search(&query, 10, Some("doc_id < 1000021"))
            .await
            .expect("filtered search");
        assert_eq!(few.num_rows(), 3);

        let bad = shard.search(&query, 10, Some("no_such_column = 1")).await;
        let err = bad.expect_err("unknown column");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }

    #[tokio::test]
    async fn small_shards_have_no_vector_index_and_are_searched_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(23);
        let vectors = unit_vectors(&mut rng, 40);
        let query = unit_vectors(&mut rng, 1);
        let shard = LanceShard::write(
            &uri(dir.path()),
            HashMap::new(),
            vec![chunks(0, &vectors)],
            &params(),
        )
        .await
        .expect("write");
        let indexes = shard
            .snapshot()
            .dataset
            .load_indices()
            .await
            .expect("indices");
        let names: Vec<&str> = indexes.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, vec![DOC_ID_INDEX], "only the doc_id index");

        // The flat scan is exact, scores included, with or without a prefilter.
        let result = shard.search(&query, 5, None).await.expect("search");
        assert_eq!(ids(&result), exact(&vectors, &query, 5));
        let best = ((ids(&result)[0] - 1_000_000) / 7) as usize;
        let cosine: f32 = vectors[best * DIMS..(best + 1) * DIMS]
            .iter()
            .zip(&query)
            .map(|(a, b)| a * b)
            .sum();
        assert!((scores(&result)[0] - cosine).abs() < 1e-4);
        let filtered = shard
            .search(&query, 5, Some("doc_id >= 1000140"))
            .await
            .expect("filtered search");
        assert_eq!(filtered.num_rows(), 5);
        let truth: Vec<u64> = exact(&vectors[20 * DIMS..], &query, 5)
            .into_iter()
            .map(|id| id + 7 * 20)
            .collect();
        assert_eq!(ids(&filtered), truth);
    }

    #[tokio::test]
    async fn take_by_doc_id_uses_the_btree_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(13);
        let vectors = unit_vectors(&mut rng, 2000);
        let shard = LanceShard::write(
            &uri(dir.path()),
            HashMap::new(),
            vec![chunks(0, &vectors)],
            &params(),
        )
        .await
        .expect("write");
        let wanted: ArrayRef = Arc::new(UInt64Array::from(vec![doc_id(1500), doc_id(7), 42]));
        let rows = shard.take(&wanted).await.expect("take");
        let mut got: Vec<(u64, String)> = ids(&rows)
            .into_iter()
            .zip(
                rows[CHUNK_TEXT]
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string),
            )
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (doc_id(7), "chunk 7".into()),
                (doc_id(1500), "chunk 1500".into())
            ]
        );
        assert_eq!(rows[VECTOR].len(), 2, "whole rows, vector included");
        let plan = shard
            .take_scanner(&wanted)
            .expect("scanner")
            .explain_plan(false)
            .await
            .expect("plan");
        assert!(
            plan.contains("ScalarIndexQuery"),
            "not through the index:\n{plan}"
        );
    }

    #[tokio::test]
    async fn append_adds_files_and_keeps_the_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(17);
        let vectors = unit_vectors(&mut rng, 2000);
        let extra = unit_vectors(&mut rng, 300);
        let shard = LanceShard::write(
            &uri(dir.path()),
            HashMap::new(),
            vec![chunks(0, &vectors)],
            &params(),
        )
        .await
        .expect("write");
        let before = data_files(dir.path());

        shard
            .append(vec![chunks(2000, &extra)])
            .await
            .expect("append");
        assert_eq!(shard.len(), 2300);
        let after_append = data_files(dir.path());
        for (name, size) in &before {
            assert_eq!(
                after_append.get(name),
                Some(size),
                "{name} rewritten or gone"
            );
        }
        assert!(after_append.len() > before.len(), "no new data file");

        // Unindexed rows are flat-scanned: an appended vector finds itself.
        let own = &extra[5 * DIMS..6 * DIMS];
        let result = shard.search(own, 1, None).await.expect("search");
        assert_eq!(ids(&result), vec![doc_id(2005)]);
        assert!((scores(&result)[0] - 1.0).abs() < 1e-4);
        let taken = shard
            .take(&(Arc::new(UInt64Array::from(vec![doc_id(2299)])) as ArrayRef))
            .await
            .expect("take");
        assert_eq!(taken.num_rows(), 1);

        // Indexing the new rows adds index segments, still no data file rewritten.
        shard.optimize_indices().await.expect("optimize");
        assert_eq!(data_files(dir.path()), after_append);
        let result = shard.search(own, 1, None).await.expect("search");
        assert_eq!(ids(&result), vec![doc_id(2005)]);

        let reopened = LanceShard::open(&uri(dir.path()), HashMap::new(), &params())
            .await
            .expect("open");
        assert_eq!(reopened.len(), 2300);
    }

    #[tokio::test]
    async fn string_doc_ids_missing_and_existing_shards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(19);
        let vectors = unit_vectors(&mut rng, 300);
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..300).map(|i| format!("doc-{i}")),
        ));
        let batch = chunks_with_ids(names, (0..300).map(|i| format!("text {i}")), &vectors);
        let shard = LanceShard::write(
            &uri(dir.path()),
            HashMap::new(),
            vec![batch.clone()],
            &params(),
        )
        .await
        .expect("write");
        let wanted: ArrayRef = Arc::new(StringArray::from(vec!["doc-42"]));
        let rows = shard.take(&wanted).await.expect("take");
        assert_eq!(rows[CHUNK_TEXT].as_string::<i32>().value(0), "text 42");
        let found = shard
            .search(&vectors[42 * DIMS..43 * DIMS], 3, Some("doc_id = 'doc-42'"))
            .await
            .expect("search");
        assert_eq!(found[DOC_ID].as_string::<i32>().value(0), "doc-42");

        let again =
            LanceShard::write(&uri(dir.path()), HashMap::new(), vec![batch], &params()).await;
        let err = again.expect_err("second write");
        assert!(matches!(err, Error::ShardExists { .. }), "{err}");

        let missing = format!("file://{}", dir.path().join("nothing.lance").display());
        let err = LanceShard::open(&missing, HashMap::new(), &params())
            .await
            .expect_err("missing shard");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("nothing.lance"), "{err}");
    }
}
