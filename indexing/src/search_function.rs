//! `vector_search('index', 'query text', k [, 'filter'])`: a table function
//! returning the `k` chunks nearest to the query text — `doc_id` (the source
//! row's key), `chunk_text`, `score` — that joins with the tables like any
//! other. The query is embedded once, here, with the index version's model;
//! each shard is searched by a task on an executor; the plan above the tasks
//! merges their top `k`.
//!
//! Filters never cause a silent shortfall: WHERE conditions on `doc_id` /
//! `chunk_text` and the optional fourth argument (a condition on the source
//! table's columns, e.g. `'city = ''Austin'''`) are pushed into the shard
//! search, which keeps walking until it has `k` matching chunks.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_proto::bytes::Serializeable;
use lakehouse_catalog_raft::{Catalog, IndexStatus, IndexVersion};
use lakehouse_common::access::ReadsTables;
use lakehouse_vector::MAX_K;

use crate::error::Error;
use crate::loaded::ShardRef;
use crate::runtime::IndexRuntime;
use crate::shard_file::{KeyType, CHUNK_TEXT, DOC_ID};
use crate::tasks::search::{output_schema, SearchSpec, SCORE};
use crate::tasks::{IndexTaskExec, TaskSpec};

pub const FUNCTION_NAME: &str = "vector_search";

/// The `vector_search` table function of one catalog.
#[derive(Debug)]
pub struct VectorSearchFunction {
    catalog: Catalog,
    runtime: Arc<IndexRuntime>,
}

impl VectorSearchFunction {
    pub fn new(catalog: Catalog, runtime: Arc<IndexRuntime>) -> Self {
        Self { catalog, runtime }
    }
}

/// One call's arguments, checked.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub index: String,
    /// None: the active version.
    pub version: Option<u64>,
    pub query: String,
    pub k: usize,
    /// A condition on the source table's columns.
    pub filter: Option<String>,
}

impl SearchRequest {
    /// `index` may name a version: `cand_idx@2`.
    pub fn new(index: &str, query: &str, k: i64, filter: Option<String>) -> Result<Self, Error> {
        let (name, version) = match index.split_once('@') {
            Some((name, version)) => {
                let version = version.parse().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "`{index}`: write a version as NAME@NUMBER, e.g. {name}@2"
                    ))
                })?;
                (name, Some(version))
            }
            None => (index, None),
        };
        if query.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "the query text is empty".to_string(),
            ));
        }
        let k = usize::try_from(k)
            .ok()
            .filter(|k| (1..=MAX_K).contains(k))
            .ok_or_else(|| {
                Error::InvalidArgument(format!("k = {k}: ask for 1 to {MAX_K} results"))
            })?;
        Ok(Self {
            index: name.to_string(),
            version,
            query: query.to_string(),
            k,
            filter: filter.filter(|f| !f.trim().is_empty()),
        })
    }
}

impl TableFunctionImpl for VectorSearchFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(3..=4).contains(&exprs.len()) {
            return Err(DataFusionError::Plan(format!(
                "{FUNCTION_NAME}(index, query, k [, filter]) takes 3 or 4 arguments, not {}",
                exprs.len()
            )));
        }
        let index = string_argument(&exprs[0], "index")?;
        let query = string_argument(&exprs[1], "query")?;
        let k = integer_argument(&exprs[2], "k")?;
        let filter = exprs
            .get(3)
            .map(|e| string_argument(e, "filter"))
            .transpose()?;
        let request = SearchRequest::new(&index, &query, k, filter)?;
        let table = self.table(request)?;
        // Flight SQL checks grants on the source table, as `/v1/search` does.
        let source = vec![table.source_table().to_string()];
        Ok(Arc::new(ReadsTables::new(Arc::new(table), source)))
    }
}

impl VectorSearchFunction {
    /// The searchable version `request` names.
    pub fn table(&self, request: SearchRequest) -> Result<VectorSearchTable, Error> {
        let index = self
            .catalog
            .index(&request.index)
            .ok_or_else(|| Error::IndexNotFound {
                index: request.index.clone(),
            })?;
        let version = match request.version {
            Some(v) => index.version(v).ok_or_else(|| Error::NoVersion {
                index: request.index.clone(),
                what: format!("version {v}"),
            })?,
            None => index.active_version().ok_or_else(|| Error::NoVersion {
                index: request.index.clone(),
                what: "ready version yet".to_string(),
            })?,
        };
        if version.status != IndexStatus::Ready {
            return Err(Error::NoVersion {
                index: request.index.clone(),
                what: format!(
                    "searchable version {} (it is {})",
                    version.version, version.status
                ),
            });
        }
        let key_type = match &version.key_column {
            Some(key) => {
                let table = self.catalog.table(&version.source_table);
                let field = table.as_ref().and_then(|t| t.current()).and_then(|v| {
                    v.schema
                        .field_with_name(key)
                        .ok()
                        .map(|f| f.data_type().clone())
                });
                field.map_or(KeyType::Utf8, |t| KeyType::of(&t))
            }
            None => KeyType::Int64,
        };
        Ok(VectorSearchTable {
            request,
            version: version.clone(),
            key_type,
            runtime: Arc::clone(&self.runtime),
        })
    }
}

fn literal<'a>(expr: &'a Expr, name: &str) -> DfResult<&'a ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Ok(value),
        other => Err(DataFusionError::Plan(format!(
            "{FUNCTION_NAME}: `{name}` must be a constant, not `{other}`"
        ))),
    }
}

fn string_argument(expr: &Expr, name: &str) -> DfResult<String> {
    match literal(expr, name)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Ok(s.clone()),
        other => Err(DataFusionError::Plan(format!(
            "{FUNCTION_NAME}: `{name}` must be a string, not {other}"
        ))),
    }
}

fn integer_argument(expr: &Expr, name: &str) -> DfResult<i64> {
    let value = literal(expr, name)?;
    match value.cast_to(&arrow::datatypes::DataType::Int64) {
        Ok(ScalarValue::Int64(Some(v))) if value.data_type().is_integer() => Ok(v),
        _ => Err(DataFusionError::Plan(format!(
            "{FUNCTION_NAME}: `{name}` must be an integer, not {value}"
        ))),
    }
}

/// One search, planned when the query is.
pub struct VectorSearchTable {
    request: SearchRequest,
    version: IndexVersion,
    key_type: KeyType,
    runtime: Arc<IndexRuntime>,
}

impl fmt::Debug for VectorSearchTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorSearchTable")
            .field("index", &self.request.index)
            .field("version", &self.version.version)
            .field("k", &self.request.k)
            .finish_non_exhaustive()
    }
}

/// A pushed-down condition may use the search's own columns, not its score
/// (which only exists once the search has run).
fn on_chunk_columns(expr: &Expr) -> bool {
    expr.column_refs()
        .iter()
        .all(|c| c.name == DOC_ID || c.name == CHUNK_TEXT)
}

/// Conditions name columns by the query's alias (`s.doc_id`); the shard knows them bare.
fn unqualified(expr: Expr) -> DfResult<Expr> {
    expr.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => {
            Ok(Transformed::yes(Expr::Column(Column::from_name(c.name))))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[async_trait]
impl TableProvider for VectorSearchTable {
    fn schema(&self) -> SchemaRef {
        output_schema(self.key_type)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if on_chunk_columns(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let query = self.embed_query().await?;
        let mut conditions = filters
            .iter()
            .filter(|f| on_chunk_columns(f))
            .cloned()
            .map(unqualified)
            .collect::<DfResult<Vec<_>>>()?;
        if let Some(filter) = &self.request.filter {
            conditions.push(self.source_filter(state, filter).await?);
        }
        let filter = conjunction(conditions)
            .map(|e| e.to_bytes())
            .transpose()?
            .map(|b| b.to_vec());
        let spec = SearchSpec {
            shards: self.version.shards.iter().map(ShardRef::of).collect(),
            key_type: self.key_type,
            query,
            k: self.request.k,
            ef: (self.version.hnsw.ef_search as usize).max(self.request.k),
            filter,
        };
        let search: Arc<dyn ExecutionPlan> = Arc::new(IndexTaskExec::new(
            TaskSpec::Search(spec),
            Arc::clone(&self.runtime),
        ));
        let schema = search.schema();
        let by_score = PhysicalSortExpr::new(
            col(SCORE, &schema)?,
            SortOptions {
                descending: true,
                nulls_first: false,
            },
        );
        let ordering = LexOrdering::new([by_score]).ok_or_else(|| {
            DataFusionError::Internal("an ordering by score is empty".to_string())
        })?;
        let merged = Arc::new(CoalescePartitionsExec::new(search));
        let top: Arc<dyn ExecutionPlan> =
            Arc::new(SortExec::new(ordering, merged).with_fetch(Some(self.request.k)));
        match projection {
            None => Ok(top),
            Some(columns) => {
                let exprs = columns
                    .iter()
                    .map(|&i| {
                        let name = schema.field(i).name().clone();
                        Ok((col(&name, &schema)?, name))
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                Ok(Arc::new(ProjectionExec::try_new(exprs, top)?))
            }
        }
    }
}

impl VectorSearchTable {
    pub fn source_table(&self) -> &str {
        &self.version.source_table
    }

    /// The query's vector, from the model the index version was built with.
    async fn embed_query(&self) -> Result<Vec<f32>, Error> {
        let embedder = self.runtime.embedders().get(&self.version.profile).await?;
        let model = embedder.model();
        if model.name != self.version.model || model.version != self.version.model_version {
            return Err(Error::InvalidArgument(format!(
                "index `{}` version {} was built with model {} ({}), but profile `{}` now loads {} ({}); \
                 rebuild it with `lakehouse index refresh {}`",
                self.request.index,
                self.version.version,
                self.version.model,
                self.version.model_version,
                self.version.profile,
                model.name,
                model.version,
                self.request.index
            )));
        }
        let mut vectors = embedder
            .embed(std::slice::from_ref(&self.request.query))
            .await?
            .vectors;
        vectors.pop().ok_or_else(|| {
            Error::InvalidArgument("the model returned no vector for the query".to_string())
        })
    }

    /// `doc_id IN (keys of the source rows matching filter)`.
    async fn source_filter(&self, state: &dyn Session, filter: &str) -> DfResult<Expr> {
        let key = self.version.key_column.as_ref().ok_or_else(|| {
            DataFusionError::Plan(format!(
                "index `{}` has no key column, so a filter on `{}` cannot be matched to its chunks; \
                 create the index with --key",
                self.request.index, self.version.source_table
            ))
        })?;
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| {
                DataFusionError::Internal("vector_search needs a DataFusion session".to_string())
            })?;
        let ctx = SessionContext::new_with_state(state.clone());
        let sql = format!(
            "SELECT DISTINCT {} FROM {} WHERE {filter}",
            quote(key),
            quote(&self.version.source_table)
        );
        let batches: Vec<RecordBatch> = ctx.sql(&sql).await?.collect().await?;
        let mut keys = Vec::new();
        for batch in &batches {
            let column = arrow::compute::cast(batch.column(0), &self.key_type.data_type())?;
            for row in 0..column.len() {
                if column.is_valid(row) {
                    keys.push(Expr::Literal(
                        ScalarValue::try_from_array(&column, row)?,
                        None,
                    ));
                }
            }
        }
        Ok(Expr::Column(Column::from_name(DOC_ID)).in_list(keys, false))
    }
}
