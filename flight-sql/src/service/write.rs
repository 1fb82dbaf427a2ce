//! Writes over Flight SQL, all through the table writer that `lakehouse ingest`
//! uses (lease, Parquet, fenced commit): SQL statements — `CREATE TABLE … AS`,
//! `INSERT INTO … SELECT | VALUES`, `INSERT OVERWRITE`, `DROP TABLE`,
//! `CREATE [OR REPLACE] VIEW`, `DROP VIEW` — and bulk ingest
//! (`CommandStatementIngest`, ADBC's `adbc_ingest`).
//!
//! Statements are planned by DataFusion and the DML/DDL plan is taken apart
//! here: DataFusion's own (in-memory) DDL never runs. A query feeding a table
//! runs as a Ballista job whose batches stream into the writer.
//!
//! A statement may arrive as an update (DoPut: ADBC `execute_update`,
//! `executemany`, `executescript`) or as a query (ADBC `cursor.execute`
//! prepares it, then GetFlightInfo). A query-shaped write runs on its
//! GetFlightInfo and answers with a ticket holding the row count, so its DoGet
//! never runs it again.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::compute::concat_batches;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionCreatePreparedStatementResult, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementUpdate, ProstMessageExt, TableExistsOption, TableNotExistOption,
    TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    CreateMemoryTable, CreateView, DdlStatement, DmlStatement, LogicalPlan, WriteOp,
};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::TableReference;
use futures::{StreamExt, TryStreamExt};
use lakehouse_catalog_raft::model::{Sensitivity, TableMetadata, View, WriteMode};
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::ErrorKind;
use lakehouse_ingest::{TableWriter, WriteRequest};
use lakehouse_query::{string_views, QueryEngine, CATALOG_NAME, DEFAULT_SCHEMA};
use prost::Message;
use tonic::{Request, Response, Status};

use super::{ipc_schema, parameter_schema, LakehouseFlightSql};
use crate::error::{from_datafusion, from_query, invalid, status};
use crate::placeholders::number_placeholders;

/// Ticket handles of write results start with this. A planned query's handle
/// starts with a UUID v4, whose 7th byte is `0x4_`; this prefix's is `u` (0x75),
/// so the two can never be confused.
const RESULT_PREFIX: &[u8] = b"lakehouse-write-result:";

const SUPPORTED: &str = "CREATE TABLE … AS SELECT, INSERT INTO … SELECT | VALUES, INSERT OVERWRITE, DROP TABLE, CREATE [OR REPLACE] VIEW, DROP VIEW";

/// Whether `sql` changes the catalog rather than reading it. Only parsed, so a
/// query pays microseconds; SQL that does not parse is left to the query path,
/// which reports the error.
pub(crate) fn is_write(engine: &QueryEngine, sql: &str) -> bool {
    // Read in place: a clone of the session state copies every function registry.
    let state = engine.context().state_ref();
    let state = state.read();
    let dialect = state.config().options().sql_parser.dialect;
    let Ok(statement) = state.sql_to_statement(sql, &dialect) else {
        return false;
    };
    match statement {
        DfStatement::Statement(statement) => matches!(
            *statement,
            SqlStatement::Insert(_)
                | SqlStatement::Update(_)
                | SqlStatement::Delete(_)
                | SqlStatement::Truncate(_)
                | SqlStatement::Merge(_)
                | SqlStatement::CreateTable(_)
                | SqlStatement::CreateView(_)
                | SqlStatement::CreateIndex(_)
                | SqlStatement::CreateSchema { .. }
                | SqlStatement::CreateDatabase { .. }
                | SqlStatement::CreateFunction(_)
                | SqlStatement::AlterTable(_)
                | SqlStatement::AlterView { .. }
                | SqlStatement::Drop { .. }
                | SqlStatement::DropFunction(_)
                | SqlStatement::Copy { .. }
        ),
        DfStatement::CreateExternalTable(_) | DfStatement::CopyTo(_) => true,
        DfStatement::Explain(_) | DfStatement::Reset(_) => false,
    }
}

/// The one-row result of a write: how many rows it wrote.
pub(crate) fn result_schema() -> Schema {
    Schema::new(vec![Field::new("count", DataType::Int64, false)])
}

/// The FlightInfo of a write that ran on GetFlightInfo: its total records are
/// the row count (ADBC's `rowcount`), its ticket carries the result.
pub(crate) fn result_info(count: i64, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
    let mut handle = RESULT_PREFIX.to_vec();
    handle.extend_from_slice(&count.to_le_bytes());
    let ticket = TicketStatementQuery {
        statement_handle: handle.into(),
    };
    let info = FlightInfo::new()
        .try_with_schema(&result_schema())
        .map_err(|e| status(ErrorKind::Internal, e.to_string()))?
        .with_endpoint(
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
        )
        .with_descriptor(descriptor)
        .with_total_records(count);
    Ok(info)
}

/// The result a write's ticket carries, if `handle` is one.
pub(crate) fn result_batch(handle: &[u8]) -> Option<Result<RecordBatch, Status>> {
    let count = handle.strip_prefix(RESULT_PREFIX)?;
    let count = <[u8; 8]>::try_from(count)
        .map(i64::from_le_bytes)
        .map_err(|_| invalid("write result ticket is malformed"));
    Some(count.and_then(|count| {
        RecordBatch::try_new(
            Arc::new(result_schema()),
            vec![Arc::new(Int64Array::from(vec![count]))],
        )
        .map_err(|e| status(ErrorKind::Internal, e.to_string()))
    }))
}

/// Metadata of a table made over Flight SQL (ADR-013): what is known is filled
/// in, the rest waits for `PATCH /v1/tables/{name}/metadata`, and the table is
/// flagged incomplete until then.
fn auto_metadata(user: &str) -> TableMetadata {
    TableMetadata {
        owner: user.to_string(),
        sensitivity: Sensitivity::Internal,
        lineage: format!("flight-sql:{user}"),
        freshness_sla: String::new(),
        description: String::new(),
        tags: Vec::new(),
        metadata_incomplete: true,
    }
}

fn from_ingest(e: lakehouse_ingest::Error) -> Status {
    status(e.kind(), e.to_string())
}

fn from_catalog(e: lakehouse_catalog_raft::Error) -> Status {
    status(e.kind(), e.to_string())
}

/// Tables live in `lakehouse.public`; anything else is refused by name.
/// Unqualified names resolve in `engine`'s (the session's) default schema, as
/// the statement's reads do.
fn table_name(engine: &QueryEngine, reference: &TableReference) -> Result<String, Status> {
    let config = engine.context().copied_config();
    let defaults = &config.options().catalog;
    let resolved = reference
        .clone()
        .resolve(&defaults.default_catalog, &defaults.default_schema);
    if resolved.catalog.as_ref() != CATALOG_NAME || resolved.schema.as_ref() != DEFAULT_SCHEMA {
        return Err(invalid(format!(
            "`{reference}` is outside {CATALOG_NAME}.{DEFAULT_SCHEMA}, the only schema tables and views can be written in"
        )));
    }
    Ok(resolved.table.to_string())
}

/// Writers store Arrow schemas without metadata, with every column nullable
/// and with plain strings: SQL results and client batches may differ from one
/// batch to the next in the first two, neither is a constraint the table
/// enforces, and string views are how tables are read, not written (`string_views`).
fn storage_schema(table: &str, schema: &Schema) -> Result<SchemaRef, Status> {
    let mut seen = std::collections::HashSet::new();
    for field in schema.fields() {
        if field.name().is_empty() {
            return Err(invalid(format!(
                "table `{table}`: a column has an empty name; name every column (SELECT … AS name)"
            )));
        }
        if !seen.insert(field.name().as_str()) {
            return Err(invalid(format!(
                "table `{table}`: column `{}` appears twice; give each column its own name (SELECT … AS name)",
                field.name()
            )));
        }
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Ok(string_views::expand_schema(&Arc::new(Schema::new(fields))))
}

/// Puts `batch` under `schema` (same columns, possibly other nullability,
/// metadata or string views).
fn conform(
    table: &str,
    schema: &SchemaRef,
    batch: RecordBatch,
) -> lakehouse_ingest::Result<RecordBatch> {
    string_views::expand_batch(batch, schema).map_err(|e| lakehouse_ingest::Error::Rows {
        table: table.to_string(),
        kind: ErrorKind::InvalidInput,
        detail: format!("a batch does not match the table's columns: {e}"),
    })
}

/// What a statement did, before it becomes a row count.
type Affected = u64;

/// Runs writes; one per Flight SQL service, scoped to a caller's session by
/// [`Writes::in_session`].
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    engine: QueryEngine,
    catalog: Catalog,
    writer: TableWriter,
}

impl Writes {
    pub(crate) fn new(engine: QueryEngine, catalog: Catalog, writer: TableWriter) -> Self {
        Self {
            engine,
            catalog,
            writer,
        }
    }

    /// These writes planned with `engine` (a session's settings: default
    /// schema, `datafusion.*` options) instead of the server's.
    fn in_session(&self, engine: QueryEngine) -> Self {
        Self {
            engine,
            ..self.clone()
        }
    }

    /// Plans a write statement (nothing runs); the caller checks the plan's
    /// permissions before [`Writes::run`] or a prepared statement is made of it.
    pub(crate) async fn plan(&self, sql: &str) -> Result<LogicalPlan, Status> {
        self.engine.logical_plan(sql).await.map_err(from_query)
    }

    /// Runs `plan` once, or once per row of `parameters`; returns the rows written.
    pub(crate) async fn run(
        &self,
        plan: LogicalPlan,
        parameters: Option<&RecordBatch>,
        user: &str,
    ) -> Result<i64, Status> {
        let rows: Vec<Option<Vec<ScalarValue>>> = match parameters {
            Some(p) if p.num_columns() > 0 && p.num_rows() > 0 => (0..p.num_rows())
                .map(|row| {
                    (0..p.num_columns())
                        .map(|col| ScalarValue::try_from_array(p.column(col), row))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Some)
                        .map_err(from_datafusion)
                })
                .collect::<Result<_, _>>()?,
            _ => vec![None],
        };
        let bind = |plan: LogicalPlan, values: Option<Vec<ScalarValue>>| match values {
            Some(values) => plan.with_param_values(values).map_err(from_datafusion),
            None => Ok(plan),
        };
        let total = match plan {
            // Every parameter row's rows go into one version, not a version each.
            LogicalPlan::Dml(dml) if rows.len() > 1 => {
                let input = Arc::unwrap_or_clone(Arc::clone(&dml.input));
                let inputs = rows
                    .into_iter()
                    .map(|values| bind(input.clone(), values))
                    .collect::<Result<Vec<_>, _>>()?;
                self.dml(dml, inputs, user).await?
            }
            plan => {
                let mut total: Affected = 0;
                for values in rows {
                    total += self.execute(bind(plan.clone(), values)?, user).await?;
                }
                total
            }
        };
        Ok(i64::try_from(total).unwrap_or(i64::MAX))
    }

    #[tracing::instrument(skip_all, fields(user = %user))]
    async fn execute(&self, plan: LogicalPlan, user: &str) -> Result<Affected, Status> {
        match plan {
            LogicalPlan::Dml(dml) => {
                let input = Arc::unwrap_or_clone(Arc::clone(&dml.input));
                self.dml(dml, vec![input], user).await
            }
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                self.create_table(create, user).await
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(create)) => {
                self.create_view(create, user).await
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => {
                self.drop_table(&table_name(&self.engine, &drop.name)?, drop.if_exists, user)
                    .await
            }
            LogicalPlan::Ddl(DdlStatement::DropView(drop)) => {
                self.drop_view(&table_name(&self.engine, &drop.name)?, drop.if_exists)
                    .await
            }
            LogicalPlan::Ddl(other) => Err(invalid(format!(
                "{} is not supported; the statements that write are: {SUPPORTED}",
                other.name()
            ))),
            LogicalPlan::Copy(_) => Err(invalid(format!(
                "COPY is not supported (it would write files outside the catalog); the statements that write are: {SUPPORTED}"
            ))),
            other => Err(invalid(format!(
                "this statement ({}) does not write; run it as a query",
                other.display()
            ))),
        }
    }

    /// INSERT: `inputs` (one per parameter row) become one new version.
    async fn dml(
        &self,
        dml: DmlStatement,
        inputs: Vec<LogicalPlan>,
        user: &str,
    ) -> Result<Affected, Status> {
        let table = table_name(&self.engine, &dml.table_name)?;
        let mode = match dml.op {
            WriteOp::Insert(InsertOp::Append) => WriteMode::Append,
            WriteOp::Insert(InsertOp::Overwrite) => WriteMode::Replace,
            op @ (WriteOp::Insert(InsertOp::Replace)
            | WriteOp::Delete
            | WriteOp::Update
            | WriteOp::Truncate
            | WriteOp::Ctas) => {
                return Err(invalid(format!(
                    "{} is not supported: tables are written in whole versions (ADR-009); use INSERT INTO to add rows or INSERT OVERWRITE / CREATE OR REPLACE TABLE … AS to rewrite a table",
                    op.name()
                )))
            }
        };
        if self.catalog.view(&table).is_some() {
            return Err(invalid(format!(
                "`{table}` is a view; INSERT writes tables only"
            )));
        }
        let request = WriteRequest {
            table,
            mode: Some(mode),
            // The table exists (planning resolved it): its metadata stays.
            metadata: None,
            writer: holder(user),
            allow_empty: true,
        };
        self.write_query(request, dml.input.schema().as_arrow(), inputs)
            .await
    }

    async fn create_table(
        &self,
        create: CreateMemoryTable,
        user: &str,
    ) -> Result<Affected, Status> {
        let table = table_name(&self.engine, &create.name)?;
        if create.temporary {
            return Err(invalid(format!(
                "CREATE TEMPORARY TABLE `{table}`: temporary tables are not supported; every table is stored and versioned"
            )));
        }
        if !create.constraints.is_empty() || !create.column_defaults.is_empty() {
            return Err(invalid(format!(
                "CREATE TABLE `{table}`: constraints and column defaults are not supported; declare only column names and types"
            )));
        }
        let exists = self.catalog.table(&table).is_some();
        let (mode, metadata) = match (exists, create.or_replace, create.if_not_exists) {
            (true, _, true) => return Ok(0),
            (true, true, false) => (WriteMode::Replace, None),
            (true, false, false) => {
                return Err(status(
                    ErrorKind::AlreadyExists,
                    format!(
                        "table `{table}` already exists; use INSERT INTO {table} to add rows, CREATE OR REPLACE TABLE to rewrite it, or CREATE TABLE IF NOT EXISTS"
                    ),
                ))
            }
            (false, _, _) => (WriteMode::Create, Some(auto_metadata(user))),
        };
        let request = WriteRequest {
            table,
            mode: Some(mode),
            metadata,
            writer: holder(user),
            allow_empty: true,
        };
        let input = Arc::unwrap_or_clone(create.input);
        self.write_query(request, &input.schema().as_arrow().clone(), vec![input])
            .await
    }

    /// Runs each of `inputs` (rows of `schema`) as a Ballista job, one after the
    /// other, and streams their batches into the writer as one new version.
    async fn write_query(
        &self,
        request: WriteRequest,
        schema: &Schema,
        inputs: Vec<LogicalPlan>,
    ) -> Result<Affected, Status> {
        let table = request.table.clone();
        let schema = storage_schema(&table, schema)?;
        let prepared = self.writer.prepare(&request).map_err(from_ingest)?;
        let engine = self.engine.clone();
        let (batch_table, batch_schema) = (table.clone(), Arc::clone(&schema));
        let batches = futures::stream::iter(inputs)
            // `CREATE TABLE t (columns…)`: nothing to run.
            .filter(|input| {
                let empty = matches!(input, LogicalPlan::EmptyRelation(e) if !e.produce_one_row);
                futures::future::ready(!empty)
            })
            .then(move |input| {
                let (engine, table) = (engine.clone(), table.clone());
                async move {
                    let rows_error = move |kind, detail| lakehouse_ingest::Error::Rows {
                        table: table.clone(),
                        kind,
                        detail,
                    };
                    let frame = engine
                        .execute_plan(input)
                        .await
                        .map_err(|e| rows_error(e.kind(), e.to_string()))?;
                    let stream = frame.execute_stream().await.map_err(|e| {
                        rows_error(lakehouse_query::datafusion_error_kind(&e), e.to_string())
                    })?;
                    Ok::<_, lakehouse_ingest::Error>(stream.map(move |batch| {
                        batch.map_err(|e| {
                            rows_error(lakehouse_query::datafusion_error_kind(&e), e.to_string())
                        })
                    }))
                }
            })
            .try_flatten()
            .map(move |batch| batch.and_then(|b| conform(&batch_table, &batch_schema, b)))
            .boxed();
        let summary = self
            .writer
            .write(request, prepared, schema, batches)
            .await
            .map_err(from_ingest)?;
        Ok(summary.rows)
    }

    async fn drop_table(
        &self,
        table: &str,
        if_exists: bool,
        user: &str,
    ) -> Result<Affected, Status> {
        if self.catalog.view(table).is_some() {
            return Err(invalid(format!(
                "`{table}` is a view; use DROP VIEW {table}"
            )));
        }
        if if_exists && self.catalog.table(table).is_none() {
            return Ok(0);
        }
        self.writer
            .drop_table(table, &holder(user))
            .await
            .map_err(from_ingest)?;
        Ok(0)
    }

    async fn create_view(&self, create: CreateView, user: &str) -> Result<Affected, Status> {
        let name = table_name(&self.engine, &create.name)?;
        if create.temporary {
            return Err(invalid(format!(
                "CREATE TEMPORARY VIEW `{name}`: temporary views are not supported"
            )));
        }
        // Planning resolved the tables it reads; a view reading itself would never plan.
        let reads_itself = create.input.exists(|node| {
            Ok(matches!(node, LogicalPlan::TableScan(scan)
                if table_name(&self.engine, &scan.table_name).is_ok_and(|t| t == name)))
        });
        if reads_itself.map_err(from_datafusion)? {
            return Err(invalid(format!("view `{name}` cannot select from itself")));
        }
        let sql = create.definition.clone().ok_or_else(|| {
            status(
                ErrorKind::Internal,
                format!("view `{name}`: the planner kept no SQL text"),
            )
        })?;
        let view = View {
            name,
            sql,
            schema: create.input.schema().as_arrow().clone(),
            owner: user.to_string(),
            created_at_ms: 0,
        };
        self.catalog
            .create_view(view, create.or_replace)
            .await
            .map_err(from_catalog)?;
        Ok(0)
    }

    async fn drop_view(&self, name: &str, if_exists: bool) -> Result<Affected, Status> {
        if self.catalog.view(name).is_none() {
            if self.catalog.table(name).is_some() {
                return Err(invalid(format!(
                    "`{name}` is a table; use DROP TABLE {name}"
                )));
            }
            if if_exists {
                return Ok(0);
            }
        }
        self.catalog.drop_view(name).await.map_err(from_catalog)?;
        Ok(0)
    }

    /// `CommandStatementIngest`: the DoPut's batches become the table's next
    /// version. Modes (ADBC → Flight SQL options): create (create, fail),
    /// append (fail, append), replace (create, replace), create_append (create,
    /// append). Replacing or appending keeps the table's metadata.
    #[tracing::instrument(skip_all, fields(table = %command.table, user = %user))]
    pub(crate) async fn ingest(
        &self,
        command: CommandStatementIngest,
        flight: PeekableFlightDataStream,
        user: &str,
    ) -> Result<i64, Status> {
        let table = command.table.clone();
        if command.temporary {
            return Err(invalid(format!(
                "ingest into `{table}`: temporary tables are not supported; every table is stored and versioned"
            )));
        }
        if command.transaction_id.is_some() {
            return Err(invalid(
                "ingest inside a transaction is not supported: each ingest commits on its own",
            ));
        }
        for (what, given, ours) in [
            ("catalog", &command.catalog, CATALOG_NAME),
            ("schema", &command.schema, DEFAULT_SCHEMA),
        ] {
            if let Some(given) = given.as_deref().filter(|g| *g != ours) {
                return Err(invalid(format!(
                    "ingest into `{table}`: {what} `{given}` does not exist; tables live in {CATALOG_NAME}.{DEFAULT_SCHEMA}"
                )));
            }
        }
        let options = command.table_definition_options.unwrap_or_default();
        let if_missing = TableNotExistOption::try_from(options.if_not_exist)
            .unwrap_or(TableNotExistOption::Unspecified);
        let if_exists = TableExistsOption::try_from(options.if_exists)
            .unwrap_or(TableExistsOption::Unspecified);
        let exists = self.catalog.table(&table).is_some();
        if !exists && if_missing == TableNotExistOption::Fail {
            return Err(from_ingest(lakehouse_ingest::Error::TableNotFound {
                table,
            }));
        }
        let new_table = (!exists).then(|| auto_metadata(user));
        let (mode, metadata) = match if_exists {
            TableExistsOption::Unspecified | TableExistsOption::Fail => {
                (WriteMode::Create, Some(auto_metadata(user)))
            }
            TableExistsOption::Append => (WriteMode::Append, new_table),
            TableExistsOption::Replace => (WriteMode::Replace, new_table),
        };
        let request = WriteRequest {
            table: table.clone(),
            mode: Some(mode),
            metadata,
            writer: holder(user),
            allow_empty: true,
        };
        // Refuse a wrong mode before reading what may be a large upload.
        let prepared = self.writer.prepare(&request).map_err(from_ingest)?;
        let mut batches =
            FlightRecordBatchStream::new_from_flight_data(flight.map_err(FlightError::from));
        let first = batches.try_next().await.map_err(|e| {
            invalid(format!(
                "ingest into `{table}`: reading the uploaded batches: {e}"
            ))
        })?;
        let client_schema = match (batches.schema(), &first) {
            (Some(schema), _) => Arc::clone(schema),
            (None, Some(batch)) => batch.schema(),
            (None, None) => {
                return Err(invalid(format!(
                    "ingest into `{table}`: the upload carries no schema and no rows"
                )))
            }
        };
        let schema = storage_schema(&table, &client_schema)?;
        let rows_schema = Arc::clone(&schema);
        let rows = futures::stream::iter(first.map(Ok))
            .chain(batches)
            .map(move |batch| match batch {
                Ok(batch) => conform(&table, &rows_schema, batch),
                Err(e) => Err(lakehouse_ingest::Error::Rows {
                    table: table.clone(),
                    kind: ErrorKind::InvalidInput,
                    detail: format!("reading the uploaded batches: {e}"),
                }),
            })
            .boxed();
        let summary = self
            .writer
            .write(request, prepared, schema, rows)
            .await
            .map_err(from_ingest)?;
        Ok(i64::try_from(summary.rows).unwrap_or(i64::MAX))
    }
}

/// The Flight SQL calls that write. `service.rs` hands a call here when its
/// SQL is a write ([`is_write`]) or it is an update or ingest command.
impl LakehouseFlightSql {
    /// The writer, in the caller's session.
    fn writes(&self) -> Result<Writes, Status> {
        let writes = self.writes.as_ref().ok_or_else(|| {
            status(
                ErrorKind::Unavailable,
                "this Flight SQL server was started without a table writer and only answers queries",
            )
        })?;
        Ok(writes.in_session(self.session_engine()?))
    }

    pub(super) fn is_write(&self, sql: &str) -> bool {
        is_write(&self.engine, sql)
    }

    /// Plans a write in the caller's session and checks the caller may run it.
    async fn write_plan(&self, sql: &str) -> Result<(Writes, LogicalPlan), Status> {
        let writes = self.writes()?;
        let plan = writes.plan(sql).await?;
        self.auth.authorize(&writes.engine, sql, &plan)?;
        Ok((writes, plan))
    }

    async fn run_write(&self, sql: &str, parameters: Option<&RecordBatch>) -> Result<i64, Status> {
        let (writes, plan) = self.write_plan(sql).await?;
        let user = self.auth.user();
        // Boxed: a write's future is deep, and the Flight SQL handlers embed it.
        Box::pin(writes.run(plan, parameters, &user)).await
    }

    /// A write sent as a query (GetFlightInfo): it runs now; the FlightInfo
    /// carries its row count.
    pub(super) async fn write_flight_info(
        &self,
        sql: &str,
        parameters: Option<&RecordBatch>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let count = self
            .run_write(&number_placeholders(sql), parameters)
            .await?;
        Ok(Response::new(result_info(count, descriptor)?))
    }

    /// A prepared write: planned and checked now, run on execution.
    pub(super) async fn prepare_write(
        &self,
        sql: String,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (_, plan) = self.write_plan(&sql).await?;
        let parameters = parameter_schema(&plan)?;
        let parameter_schema = ipc_schema(&parameters)?;
        let handle = self.prepared.insert(sql, parameters);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: ipc_schema(&result_schema())?,
            parameter_schema,
        })
    }

    /// `CommandStatementUpdate`: ADBC `execute_update`, `executescript`.
    pub(super) async fn statement_update(
        &self,
        command: CommandStatementUpdate,
    ) -> Result<i64, Status> {
        if command.transaction_id.is_some() {
            return Err(invalid(
                "transactions are not supported: each statement commits on its own",
            ));
        }
        let sql = number_placeholders(&command.query);
        if !self.is_write(&sql) {
            return Err(not_a_write());
        }
        self.run_write(&sql, None).await
    }

    /// `CommandPreparedStatementUpdate`: the DoPut carries the parameter rows
    /// (or an empty batch); each row runs the statement once.
    pub(super) async fn prepared_update(
        &self,
        command: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let prepared = self.prepared(&command.prepared_statement_handle)?;
        if !self.is_write(&prepared.sql) {
            return Err(not_a_write());
        }
        let flight = request.into_inner().map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(flight)
            .try_collect()
            .await
            .map_err(|e| invalid(format!("reading bound parameters: {e}")))?;
        let sent = match batches.first() {
            Some(first) if first.num_columns() > 0 => Some(
                concat_batches(&first.schema(), &batches)
                    .map_err(|e| invalid(format!("bound parameters: {e}")))?,
            ),
            _ => None,
        };
        let parameters = match sent.or_else(|| prepared.parameters.clone()) {
            Some(parameters) => Some(prepared.conform(parameters)?),
            None if prepared.parameter_schema.fields().is_empty() => None,
            None => {
                return Err(invalid(format!(
                    "the statement takes {} parameters but none were bound",
                    prepared.parameter_schema.fields().len()
                )))
            }
        };
        self.run_write(&prepared.sql, parameters.as_ref()).await
    }

    /// `CommandStatementIngest` (ADBC `adbc_ingest`).
    pub(super) async fn statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.auth
            .authorize_write(format!("ingest into table `{}`", command.table))?;
        let writes = self.writes()?;
        let user = self.auth.user();
        let upload = request.into_inner();
        // On its own task the write runs to its end even when the client goes away
        // (the call is dropped): the upload then fails and the table's lease is released
        // at once, instead of being held until it expires.
        tokio::spawn(async move { writes.ingest(command, upload, &user).await })
            .await
            .map_err(|e| status(ErrorKind::Internal, format!("the ingest task failed: {e}")))?
    }
}

fn not_a_write() -> Status {
    invalid("this statement does not write (it is a query): run it with execute / a query call, not as an update")
}

/// The writer lease holder for `user`'s write: unique per write, readable in errors.
fn holder(user: &str) -> String {
    format!("flight-sql:{user}:{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn result_tickets_roundtrip_and_never_look_like_plans() {
        let info = result_info(42, FlightDescriptor::new_cmd(Vec::<u8>::new())).unwrap();
        assert_eq!(info.total_records, 42);
        let handle = [RESULT_PREFIX, &42i64.to_le_bytes()].concat();
        let batch = result_batch(&handle).unwrap().unwrap();
        let counts = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(counts.value(0), 42);
        assert!(result_batch(&[RESULT_PREFIX, b"x"].concat())
            .unwrap()
            .is_err());
        // A planned query's handle starts with a UUID v4.
        let planned = uuid::Uuid::new_v4().as_bytes().to_vec();
        assert!(result_batch(&planned).is_none());
        assert_ne!(RESULT_PREFIX[6] >> 4, 4);
    }

    #[test]
    fn storage_schema_refuses_duplicate_and_empty_names() {
        let dup = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("id", DataType::Utf8, true),
        ]);
        let err = storage_schema("t", &dup).unwrap_err();
        assert!(err.message().contains("`id` appears twice"), "{err}");
        let ok = storage_schema(
            "t",
            &Schema::new(vec![Field::new("id", DataType::Int64, false)]),
        )
        .unwrap();
        assert!(ok.field(0).is_nullable());
    }

    #[test]
    fn metadata_of_flight_sql_tables_is_flagged_incomplete() {
        let m = auto_metadata("ana");
        assert_eq!(
            (m.owner.as_str(), m.lineage.as_str()),
            ("ana", "flight-sql:ana")
        );
        assert_eq!(m.sensitivity, Sensitivity::Internal);
        assert!(m.metadata_incomplete);
    }
}
