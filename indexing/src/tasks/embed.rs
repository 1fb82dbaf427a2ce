//! `EmbedExec`: one partition per source file or row range of it. A task reads
//! its rows, cuts the text into chunks, embeds the chunks it has not seen (by
//! content hash, in the version being refreshed) and writes one part file.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lakehouse_common::ObjectRef;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::ParquetMetaData;
use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

use crate::chunk::{chunk_text, content_hash};
use crate::error::{Error, Result};
use crate::runtime::{describe, IndexRuntime};
use crate::shard_file::{self, KeyType, CONTENT_HASH};

/// Texts per call into the model: bounds the memory of one call, not its batching.
const EMBED_CALL: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedSpec {
    pub profile: String,
    pub dims: usize,
    pub column: String,
    /// The source column that becomes `doc_id`; none: the row's ordinal.
    pub key: Option<String>,
    pub key_type: KeyType,
    pub chunk_size: usize,
    pub overlap: usize,
    pub tasks: Vec<EmbedTask>,
    /// Parts of the version being refreshed: chunks found there (by content
    /// hash) take their vector from it instead of the model.
    pub previous: Vec<ObjectRef>,
}

/// Rows `first_row .. first_row + rows` of one source file, written to `output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedTask {
    pub source: ObjectRef,
    pub first_row: u64,
    pub rows: u64,
    /// The ordinal of `first_row` in the table version (the `doc_id` without a key column).
    pub first_ordinal: u64,
    pub output: ObjectRef,
}

/// What one embed task reports.
pub fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("part", DataType::UInt32, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("chunks", DataType::UInt64, false),
        Field::new("embedded", DataType::UInt64, false),
        Field::new("blank", DataType::UInt64, false),
        Field::new("repeated", DataType::UInt64, false),
    ]))
}

/// The chunks of a task's rows, before embedding.
#[derive(Default)]
struct Chunks {
    doc_ids: Vec<DocId>,
    numbers: Vec<i32>,
    texts: Vec<String>,
    hashes: Vec<u64>,
    blank_rows: u64,
    /// Chunks left out as repeats of an earlier chunk of their row.
    repeated: u64,
    rows: u64,
}

enum DocId {
    Int(i64),
    Text(String),
}

impl EmbedSpec {
    #[instrument(skip_all, fields(part = partition, profile = %self.profile))]
    pub(crate) async fn run(
        &self,
        partition: usize,
        runtime: &IndexRuntime,
    ) -> Result<RecordBatch> {
        let task = self
            .tasks
            .get(partition)
            .ok_or_else(|| Error::InvalidArgument(format!("embed job has no part {partition}")))?;
        let chunks = self.read_chunks(task, runtime).await?;
        let known = self
            .previous_vectors(task, runtime, chunks.hashes.iter().copied().collect())
            .await?;

        // Embed each distinct unknown text once.
        let mut vector_of: HashMap<u64, Vec<f32>> = HashMap::new();
        let mut pending: Vec<(u64, String)> = Vec::new();
        let mut queued = HashSet::new();
        for (hash, text) in chunks.hashes.iter().zip(&chunks.texts) {
            if !known.contains_key(hash) && queued.insert(*hash) {
                pending.push((*hash, text.clone()));
            }
        }
        let embedded = pending.len() as u64;
        if !pending.is_empty() {
            let embedder = runtime.embedders().get(&self.profile).await?;
            if embedder.model().dims != self.dims {
                return Err(Error::InvalidArgument(format!(
                    "profile `{}` now makes {}-dimensional vectors but the index was created with {}; create a new index version",
                    self.profile,
                    embedder.model().dims,
                    self.dims
                )));
            }
            for batch in pending.chunks(EMBED_CALL) {
                let texts: Vec<String> = batch.iter().map(|(_, t)| t.clone()).collect();
                let vectors = embedder.embed(&texts).await?.vectors;
                for ((hash, _), vector) in batch.iter().zip(vectors) {
                    vector_of.insert(*hash, vector);
                }
            }
        }

        let mut flat = Vec::with_capacity(chunks.hashes.len() * self.dims);
        for hash in &chunks.hashes {
            let vector = known
                .get(hash)
                .map(Vec::as_slice)
                .or_else(|| vector_of.get(hash).map(Vec::as_slice))
                .ok_or_else(|| {
                    Error::InvalidArgument("a chunk was neither embedded nor found".to_string())
                })?;
            flat.extend_from_slice(vector);
        }
        let part = self.part_batch(&chunks, flat)?;
        runtime
            .put(&task.output, shard_file::encode(&part)?)
            .await?;
        info!(
            output = %describe(&task.output),
            rows = chunks.rows,
            chunks = part.num_rows(),
            repeated = chunks.repeated,
            embedded,
            "embedded part"
        );
        let part_number = u32::try_from(partition).unwrap_or(u32::MAX);
        Ok(RecordBatch::try_new(
            output_schema(),
            vec![
                Arc::new(UInt32Array::from(vec![part_number])),
                Arc::new(UInt64Array::from(vec![chunks.rows])),
                Arc::new(UInt64Array::from(vec![part.num_rows() as u64])),
                Arc::new(UInt64Array::from(vec![embedded])),
                Arc::new(UInt64Array::from(vec![chunks.blank_rows])),
                Arc::new(UInt64Array::from(vec![chunks.repeated])),
            ],
        )?)
    }

    /// The task's rows, cut into chunks. Only the row groups and pages that
    /// hold the rows, and only the text and key columns, are fetched.
    async fn read_chunks(&self, task: &EmbedTask, runtime: &IndexRuntime) -> Result<Chunks> {
        let location = describe(&task.source);
        let builder = runtime.parquet(&task.source).await?.reader();
        let parquet_schema = builder.parquet_schema();
        let leaf = |name: &str| {
            parquet_schema
                .columns()
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| Error::BadShard {
                    location: location.clone(),
                    reason: format!("the source file has no column `{name}`"),
                })
        };
        let mut leaves = vec![leaf(&self.column)?];
        if let Some(key) = &self.key {
            leaves.push(leaf(key)?);
        }
        let mask = ProjectionMask::leaves(parquet_schema, leaves);
        let (groups, selection) = row_range(builder.metadata(), task.first_row, task.rows);
        let mut reader = builder
            .with_projection(mask)
            .with_row_groups(groups)
            .with_row_selection(selection)
            .build()?;

        let mut chunks = Chunks::default();
        let mut ordinal = task.first_ordinal;
        while let Some(batch) = reader.try_next().await? {
            let texts = text_column(&batch, &self.column, &location)?;
            let keys = match &self.key {
                Some(key) => Some(key_column(&batch, key, self.key_type, &location)?),
                None => None,
            };
            for row in 0..batch.num_rows() {
                chunks.rows += 1;
                let doc_id = |row: usize| match &keys {
                    None => Some(DocId::Int(i64::try_from(ordinal).unwrap_or(i64::MAX))),
                    Some(keys) => doc_id_at(keys, row),
                };
                let (Some(doc_id), false) = (doc_id(row), texts.is_null(row)) else {
                    chunks.blank_rows += 1;
                    ordinal += 1;
                    continue;
                };
                let pieces = chunk_text(texts.value(row), self.chunk_size, self.overlap);
                if pieces.is_empty() {
                    chunks.blank_rows += 1;
                }
                // A chunk repeating one of its row's earlier chunks would be the
                // same search result again, and a graph of many equal vectors
                // leaves the other vectors unreachable: it is kept once.
                let mut seen = HashSet::new();
                for (number, piece) in pieces.into_iter().enumerate() {
                    let hash = content_hash(piece);
                    if !seen.insert(hash) {
                        chunks.repeated += 1;
                        continue;
                    }
                    chunks.doc_ids.push(match &doc_id {
                        DocId::Int(v) => DocId::Int(*v),
                        DocId::Text(v) => DocId::Text(v.clone()),
                    });
                    chunks
                        .numbers
                        .push(i32::try_from(number).unwrap_or(i32::MAX));
                    chunks.hashes.push(hash);
                    chunks.texts.push(piece.to_string());
                }
                ordinal += 1;
            }
        }
        Ok(chunks)
    }

    /// Content hash → vector of the `needed` chunks found in the version being
    /// refreshed. Each previous part's hashes are read, then only the vectors of
    /// the rows that hold a needed one, and no further part once all are found.
    async fn previous_vectors(
        &self,
        task: &EmbedTask,
        runtime: &IndexRuntime,
        mut needed: HashSet<u64>,
    ) -> Result<HashMap<u64, Vec<f32>>> {
        // Unchanged files get the row ranges they had: the previous part of the
        // task's own name usually holds every chunk the task needs.
        let name = |part: &ObjectRef| part.key.rsplit('/').next().map(str::to_string);
        let own = name(&task.output);
        let (same, others): (Vec<&ObjectRef>, Vec<&ObjectRef>) =
            self.previous.iter().partition(|part| name(part) == own);
        let mut known = HashMap::new();
        for part in same.into_iter().chain(others) {
            if needed.is_empty() {
                break;
            }
            let location = describe(part);
            let file = runtime.parquet(part).await?;
            let batch =
                shard_file::read_rows(file.reader(), &location, &[CONTENT_HASH], None).await?;
            let hashes = shard_file::column(&batch, CONTENT_HASH, &location)?
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| Error::BadShard {
                    location: location.clone(),
                    reason: "`content_hash` is not uint64".to_string(),
                })?;
            // The first row of each needed hash: one vector per hash is enough.
            let mut wanted = Vec::new();
            let mut taken = HashSet::new();
            for (row, hash) in hashes.values().iter().enumerate() {
                if needed.contains(hash) && taken.insert(*hash) {
                    wanted.push((row, *hash));
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let selection = RowSelection::from_consecutive_ranges(
                wanted.iter().map(|(row, _)| *row..*row + 1),
                hashes.len(),
            );
            let batch = shard_file::read_rows(
                file.reader(),
                &location,
                &[shard_file::VECTOR],
                Some(selection),
            )
            .await?;
            let (vectors, dims) = shard_file::flat_vectors(&batch, &location)?;
            if dims != self.dims {
                continue;
            }
            for (at, (_, hash)) in wanted.iter().enumerate() {
                needed.remove(hash);
                known.insert(*hash, vectors[at * dims..(at + 1) * dims].to_vec());
            }
        }
        Ok(known)
    }

    fn part_batch(&self, chunks: &Chunks, flat: Vec<f32>) -> Result<RecordBatch> {
        let doc_ids: ArrayRef = match self.key_type {
            KeyType::Int64 => Arc::new(Int64Array::from_iter_values(chunks.doc_ids.iter().map(
                |d| match d {
                    DocId::Int(v) => *v,
                    DocId::Text(_) => 0,
                },
            ))),
            KeyType::Utf8 => Arc::new(StringArray::from_iter_values(chunks.doc_ids.iter().map(
                |d| match d {
                    DocId::Text(v) => v.clone(),
                    DocId::Int(v) => v.to_string(),
                },
            ))),
        };
        Ok(RecordBatch::try_new(
            shard_file::part_schema(self.key_type, self.dims),
            vec![
                doc_ids,
                Arc::new(Int32Array::from(chunks.numbers.clone())),
                Arc::new(StringArray::from_iter_values(chunks.texts.iter())),
                Arc::new(UInt64Array::from(chunks.hashes.clone())),
                shard_file::vector_column(flat, self.dims)?,
            ],
        )?)
    }
}

/// The row groups that hold rows `first .. first + rows` of a file, and the
/// selection of those rows within them.
fn row_range(metadata: &ParquetMetaData, first: u64, rows: u64) -> (Vec<usize>, RowSelection) {
    let end = first.saturating_add(rows);
    let mut groups = Vec::new();
    let mut groups_start = None;
    let mut at = 0u64;
    for (index, group) in metadata.row_groups().iter().enumerate() {
        let group_rows = u64::try_from(group.num_rows()).unwrap_or(0);
        if at < end && at + group_rows > first {
            groups.push(index);
            groups_start.get_or_insert(at);
        }
        at += group_rows;
    }
    let skip = first - groups_start.unwrap_or(first).min(first);
    let narrow = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let selection = RowSelection::from(vec![
        RowSelector::skip(narrow(skip)),
        RowSelector::select(narrow(rows)),
    ]);
    (groups, selection)
}

fn text_column(batch: &RecordBatch, name: &str, location: &str) -> Result<StringArray> {
    let column = shard_file::column(batch, name, location)?;
    let utf8 = cast(column, &DataType::Utf8)?;
    Ok(utf8
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .unwrap_or_else(|| StringArray::new_null(utf8.len())))
}

fn key_column(
    batch: &RecordBatch,
    name: &str,
    key_type: KeyType,
    location: &str,
) -> Result<ArrayRef> {
    Ok(cast(
        shard_file::column(batch, name, location)?,
        &key_type.data_type(),
    )?)
}

fn doc_id_at(keys: &ArrayRef, row: usize) -> Option<DocId> {
    if keys.is_null(row) {
        return None;
    }
    if let Some(ints) = keys.as_any().downcast_ref::<Int64Array>() {
        return Some(DocId::Int(ints.value(row)));
    }
    keys.as_any()
        .downcast_ref::<StringArray>()
        .map(|texts| DocId::Text(texts.value(row).to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::array::Int64Array;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// Rows 0..10 in row groups of 4: rows 5..9 lie in groups 1 and 2.
    #[test]
    fn a_row_range_selects_only_its_row_groups() {
        let batch = RecordBatch::try_from_iter([(
            "id",
            Arc::new(Int64Array::from_iter_values(0..10)) as ArrayRef,
        )])
        .unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(4))
            .build();
        let mut bytes = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();

        let (groups, selection) = row_range(builder.metadata(), 5, 4);
        assert_eq!(groups, vec![1, 2]);
        let reader = builder
            .with_row_groups(groups)
            .with_row_selection(selection)
            .build()
            .unwrap();
        let ids: Vec<i64> = reader
            .flat_map(|b| {
                let b = b.unwrap();
                let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                ids.values().to_vec()
            })
            .collect();
        assert_eq!(ids, vec![5, 6, 7, 8]);
    }
}
