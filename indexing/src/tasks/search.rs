//! `VectorSearchExec`: one partition per shard. A task searches its shard for
//! the query vector's `k` nearest chunks — only among chunks that pass the
//! pushed-down filter, so a filtered search still finds `k` when `k` match —
//! and returns them with their score; the plan above merges the top `k`.
//! HNSW shards evaluate the filter here; Lance shards get it as SQL and apply
//! it as a prefilter. Both return the same columns, so one index may mix them.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Float32Array, RecordBatch, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_expr::execution_props::ExecutionProps;
use datafusion::sql::unparser::expr_to_sql;
use datafusion_proto::bytes::Serializeable;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::error::{Error, Result};
use crate::loaded::{HnswShard, LoadedShard, ShardRef};
use crate::runtime::IndexRuntime;
use crate::shard_file::{KeyType, CHUNK_TEXT, DOC_ID};

pub const SCORE: &str = "score";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpec {
    pub shards: Vec<ShardRef>,
    pub key_type: KeyType,
    pub query: Vec<f32>,
    pub k: usize,
    pub ef: usize,
    /// A boolean expression over `doc_id` and `chunk_text` (DataFusion's
    /// serialised form): only chunks for which it is true are results.
    pub filter: Option<Vec<u8>>,
}

/// `doc_id`, `chunk_text`, `score` (cosine similarity, higher is nearer).
pub fn output_schema(key_type: KeyType) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(DOC_ID, key_type.data_type(), false),
        Field::new(CHUNK_TEXT, DataType::Utf8, false),
        Field::new(SCORE, DataType::Float32, false),
    ]))
}

impl SearchSpec {
    #[instrument(skip_all, fields(shard = partition, k = self.k))]
    pub(crate) async fn run(
        &self,
        partition: usize,
        runtime: &IndexRuntime,
        context: &TaskContext,
    ) -> Result<RecordBatch> {
        let shard_ref = self.shards.get(partition).ok_or_else(|| {
            Error::InvalidArgument(format!("vector search has no shard {partition}"))
        })?;
        match runtime.load(shard_ref).await?.as_ref() {
            LoadedShard::Hnsw(shard) => self.search_hnsw(shard, context),
            LoadedShard::Lance(shard) => {
                let prefilter = self
                    .filter
                    .as_deref()
                    .map(|bytes| {
                        let expr = Expr::from_bytes_with_ctx(bytes, context)?;
                        Ok::<_, Error>(expr_to_sql(&expr)?.to_string())
                    })
                    .transpose()?;
                let found = shard
                    .search(&self.query, self.k, prefilter.as_deref())
                    .await?;
                let schema = output_schema(self.key_type);
                // Lance returns the types it stored; the plan has one schema for every shard.
                let columns = schema
                    .fields()
                    .iter()
                    .map(|field| {
                        let column =
                            found
                                .column_by_name(field.name())
                                .ok_or_else(|| Error::BadShard {
                                    location: crate::runtime::describe(&shard_ref.data),
                                    reason: format!("its search returned no `{}`", field.name()),
                                })?;
                        Ok(cast(column, field.data_type())?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(RecordBatch::try_new(schema, columns)?)
            }
        }
    }

    fn search_hnsw(&self, shard: &HnswShard, context: &TaskContext) -> Result<RecordBatch> {
        let schema = output_schema(self.key_type);
        let hits = match &self.filter {
            None => shard.graph.search(&self.query, self.k, self.ef)?,
            Some(bytes) => {
                let accepted =
                    self.evaluate_filter(bytes, &shard.doc_ids, &shard.chunk_texts, context)?;
                shard
                    .graph
                    .search_filtered(&self.query, self.k, self.ef, |row| {
                        usize::try_from(row)
                            .is_ok_and(|row| accepted.is_valid(row) && accepted.value(row))
                    })?
            }
        };
        let rows = UInt32Array::from_iter_values(
            hits.iter()
                .map(|(row, _)| u32::try_from(*row).unwrap_or(u32::MAX)),
        );
        let scores = Float32Array::from_iter_values(hits.iter().map(|(_, score)| *score));
        Ok(RecordBatch::try_new(
            schema,
            vec![
                take(shard.doc_ids.as_ref(), &rows, None)?,
                take(shard.chunk_texts.as_ref(), &rows, None)?,
                Arc::new(scores),
            ],
        )?)
    }

    fn evaluate_filter(
        &self,
        bytes: &[u8],
        doc_ids: &Arc<dyn Array>,
        chunk_texts: &Arc<dyn Array>,
        context: &TaskContext,
    ) -> Result<BooleanArray> {
        let expr = Expr::from_bytes_with_ctx(bytes, context)?;
        let columns = Arc::new(Schema::new(vec![
            Field::new(DOC_ID, self.key_type.data_type(), false),
            Field::new(CHUNK_TEXT, DataType::Utf8, false),
        ]));
        let df_schema = DFSchema::try_from(Arc::clone(&columns))?;
        let predicate = create_physical_expr(&expr, &df_schema, &ExecutionProps::new())?;
        let batch =
            RecordBatch::try_new(columns, vec![Arc::clone(doc_ids), Arc::clone(chunk_texts)])?;
        let result = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
        result
            .as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| {
                Error::InvalidArgument(format!("the search filter `{expr}` is not a condition"))
            })
    }
}
