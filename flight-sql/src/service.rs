//! The `FlightSqlService` implementation.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{LogicalPlan, TableType};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::DataFrame;
use futures::{stream, Stream, StreamExt, TryStreamExt};
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::{Clock, ErrorKind};
use lakehouse_ingest::TableWriter;
use lakehouse_query::{string_views, QueryEngine, CATALOG_NAME, DEFAULT_SCHEMA};
use lakehouse_scheduler::RemoteQueryExec;
use prost::Message;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::{instrument, Instrument};

use crate::auth::Auth;
use crate::error::{from_datafusion, from_query, invalid, status};
use crate::info::{SQL_INFO, XDBC_TYPES};
use crate::keys::{FOREIGN_KEYS, PRIMARY_KEYS};
use crate::placeholders::number_placeholders;
use crate::planned::PlannedStatements;
use crate::prepared::{Prepared, PreparedStatements};
use crate::running::{Query, RunningQueries};
use crate::session::proto::{CLOSE_SESSION, GET_SESSION_OPTIONS, SET_SESSION_OPTIONS};
use crate::session::{SessionLimits, Sessions};

mod session_options;
mod write;

/// A prepared statement without parameters starts running when it is created:
/// ADBC and JDBC execute right after preparing, so the job runs while the
/// prepare answer travels and the client turns round with its GetFlightInfo.
/// A GetFlightInfo within this window takes that run; a later one runs the
/// statement anew (its data as of execution, not preparation), and the early
/// run is cancelled when the window ends, so preparing only to learn a
/// schema (BI tools do) costs at most this much of the cluster's time.
const EARLY_RUN_WINDOW: Duration = Duration::from_millis(200);

type FlightStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;
type DoGetStream = <LakehouseFlightSql as FlightService>::DoGetStream;

#[derive(Clone)]
pub struct LakehouseFlightSql {
    engine: QueryEngine,
    catalog: Catalog,
    prepared: PreparedStatements,
    planned: PlannedStatements<Started>,
    /// Runs of prepared statements started at their creation (see [`EARLY_RUN_WINDOW`]).
    early_runs: PlannedStatements<Started>,
    running: RunningQueries,
    sessions: Sessions,
    /// The engines of sessions with settings of their own.
    settings_engines: session_options::SettingsEngines,
    auth: Arc<Auth>,
    /// Statements that write and bulk ingest; `None` serves queries only.
    writes: Option<write::Writes>,
}

impl std::fmt::Debug for LakehouseFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakehouseFlightSql").finish_non_exhaustive()
    }
}

impl LakehouseFlightSql {
    pub fn new(engine: QueryEngine, catalog: Catalog) -> Self {
        Self {
            engine,
            catalog,
            prepared: PreparedStatements::default(),
            planned: PlannedStatements::default(),
            early_runs: PlannedStatements::default(),
            running: RunningQueries::default(),
            sessions: Sessions::new(
                SessionLimits::default(),
                Arc::new(lakehouse_common::SystemClock),
            ),
            settings_engines: session_options::SettingsEngines::default(),
            auth: Arc::new(Auth::disabled()),
            writes: None,
        }
    }

    /// Accepts writes (SQL statements, bulk ingest) through `writer`, the same
    /// table writer the HTTP ingest uses.
    pub fn with_writer(mut self, writer: TableWriter) -> Self {
        self.writes = Some(write::Writes::new(
            self.engine.clone(),
            self.catalog.clone(),
            writer,
        ));
        self
    }

    /// Checks callers against `auth` (users, grants); without it everyone may do everything.
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = auth;
        self
    }

    /// Keeps client sessions within `limits`, aging them by `clock`.
    pub fn with_sessions(mut self, limits: SessionLimits, clock: Arc<dyn Clock>) -> Self {
        self.sessions = Sessions::new(limits, clock);
        self
    }

    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    /// How many client sessions are live (for /metrics).
    pub fn live_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Every statement is planned here, in the caller's session, so the caller's
    /// grants and roles are checked here. `SET` changes only that session.
    async fn plan(&self, sql: &str) -> Result<DataFrame, Status> {
        let engine = self.session_engine()?;
        if let Some(frame) = self.session_statement(&engine, sql).await? {
            return Ok(frame);
        }
        self.auth.plan(&engine, sql).await
    }

    /// Plans a prepared statement with one row of its bound parameters.
    async fn plan_bound(
        &self,
        prepared: &Prepared,
        row: Option<usize>,
    ) -> Result<DataFrame, Status> {
        let frame = self.plan(&prepared.sql).await?;
        match (&prepared.parameters, row) {
            (Some(params), Some(row)) => {
                let values = (0..params.num_columns())
                    .map(|col| ScalarValue::try_from_array(params.column(col), row))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(from_datafusion)?;
                frame.with_param_values(values).map_err(from_datafusion)
            }
            _ => Ok(frame),
        }
    }

    /// The statement planned once per row of bound parameters (once without them).
    async fn plan_rows(&self, prepared: &Prepared) -> Result<Vec<DataFrame>, Status> {
        let rows: Vec<Option<usize>> = match &prepared.parameters {
            Some(p) if p.num_rows() > 0 => (0..p.num_rows()).map(Some).collect(),
            _ => vec![None],
        };
        let mut frames = Vec::with_capacity(rows.len());
        for row in rows {
            frames.push(self.plan_bound(prepared, row).await?);
        }
        Ok(frames)
    }

    /// Streams the results of `frames`, one job after another, as the DoGet of
    /// `ticket`: a CancelFlightInfo naming the ticket stops them, and a client
    /// that goes away cancels the running job (the stream is dropped).
    fn run(
        &self,
        ticket: &Ticket,
        schema: SchemaRef,
        frames: Vec<DataFrame>,
    ) -> Result<Response<DoGetStream>, Status> {
        let guard = self.running.begin(&ticket.ticket).ok_or_else(cancelled)?;
        let batches = execute_all(frames, Arc::clone(guard.query())).map(move |batch| {
            // The stream owns the guard: the query is registered while it is read.
            let _ = &guard;
            batch
        });
        Ok(encode(schema, Box::pin(batches)))
    }

    /// Runs `frames` in the background as the query of `ticket`, their batches
    /// going to `sender`: the job starts before the client's DoGet comes. A
    /// receiver that goes away (DoGet ended, statement cancelled or expired)
    /// drops the stream, which cancels the job.
    fn start(
        &self,
        ticket: &[u8],
        frames: Vec<DataFrame>,
        sender: mpsc::Sender<Result<RecordBatch, Status>>,
    ) {
        let Some(guard) = self.running.begin(ticket) else {
            // The channel is new and empty: the error always fits.
            let _ = sender.try_send(Err(cancelled()));
            return;
        };
        let batches = execute_all(frames, Arc::clone(guard.query()));
        let run = async move {
            // Spawned from a handler, this task would run next on the handler's
            // worker and plan the job (~1 ms) before the handler's response is
            // written; yielding once lets the response go out first.
            tokio::task::yield_now().await;
            let mut batches = std::pin::pin!(batches);
            loop {
                let batch = tokio::select! {
                    batch = batches.next() => batch,
                    () = sender.closed() => return,
                };
                match batch {
                    Some(batch) => {
                        if sender.send(batch).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                }
            }
            // Registered until the last batch is handed over.
            drop(guard);
        };
        tokio::spawn(run.instrument(tracing::Span::current()));
    }

    /// Starts the run of prepared statement `handle`, kept in `kept` for the
    /// DoGet (or GetFlightInfo) that claims it; returns its schema.
    fn start_prepared(
        &self,
        kept: &PlannedStatements<Started>,
        handle: &[u8],
        frames: Vec<DataFrame>,
    ) -> SchemaRef {
        let schema = frames_schema(&frames);
        let (started, sender) = Started::channel(Arc::clone(&schema));
        if kept.insert_prepared(handle, started) {
            self.start(&prepared_ticket(handle), frames, sender);
        }
        schema
    }

    /// Runs a parameterless prepared statement from its creation; a run no
    /// GetFlightInfo took within [`EARLY_RUN_WINDOW`] is dropped, which cancels its job.
    fn start_early(&self, handle: &[u8], frame: DataFrame) {
        self.start_prepared(&self.early_runs, handle, vec![frame]);
        let early_runs = self.early_runs.clone();
        let handle = handle.to_vec();
        tokio::spawn(async move {
            tokio::time::sleep(EARLY_RUN_WINDOW).await;
            early_runs.forget(&handle);
        });
    }

    /// The result schema of `sql`, planned but not run (GetSchema).
    pub(crate) async fn statement_schema(&self, sql: &str) -> Result<bytes::Bytes, Status> {
        if self.is_write(sql) {
            return ipc_schema(&write::result_schema());
        }
        let frame = self.plan(&number_placeholders(sql)).await?;
        ipc_schema(&frame_schema(&frame))
    }

    /// CancelFlightInfo (and Flight SQL's older CancelQuery): stops the query
    /// of the FlightInfo's ticket, or refuses its DoGet when it has not started.
    async fn cancel_flight_info(&self, info: Option<FlightInfo>) -> Result<CancelStatus, Status> {
        let info = info.ok_or_else(|| invalid("CancelFlightInfo carries no FlightInfo"))?;
        let mut found = false;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let not_started = Any::decode(&*ticket.ticket)
                .ok()
                .and_then(|any| any.unpack::<TicketStatementQuery>().ok().flatten())
                .is_some_and(|kept| self.planned.forget(&kept.statement_handle));
            found |= self
                .running
                .cancel(&ticket.ticket, not_started)
                .await
                .is_some();
        }
        if found {
            Ok(CancelStatus::Cancelled)
        } else {
            Err(status(
                ErrorKind::NotFound,
                "no running query has this FlightInfo's ticket: it finished, was cancelled, or was never started here",
            ))
        }
    }

    fn prepared(&self, handle: &[u8]) -> Result<Prepared, Status> {
        self.prepared.get(handle).ok_or_else(|| {
            status(
                ErrorKind::NotFound,
                "prepared statement handle is unknown or was closed; prepare the statement again",
            )
        })
    }
}

fn cancelled() -> Status {
    Status::cancelled("the query was cancelled (CancelFlightInfo)")
}

/// Runs one frame as a Ballista job followed by `query`, streaming batches as
/// the executors produce them. Once the query is cancelled the stream ends
/// with `Cancelled`, whatever the job's own error says.
async fn execute(frame: DataFrame, query: Arc<Query>) -> Result<FlightStream<RecordBatch>, Status> {
    if query.is_cancelled() {
        return Err(cancelled());
    }
    let task_ctx = Arc::new(frame.task_ctx());
    let plan = lakehouse_query::physical_plan(&frame, task_ctx.session_config())
        .await
        .map_err(from_datafusion)?;
    if let Some(remote) = RemoteQueryExec::from_plan(&plan) {
        query.track(remote.job()).await;
    }
    let stream = execute_stream(plan, task_ctx).map_err(from_datafusion)?;
    Ok(Box::pin(stream.map(move |batch| {
        match batch {
            _ if query.is_cancelled() => Err(cancelled()),
            // A batch without views is passed on as it is (same schema `Arc`).
            Ok(batch) => {
                let schema = string_views::expand_schema(&batch.schema());
                string_views::expand_batch(batch, &schema)
                    .map_err(|e| status(ErrorKind::Internal, e.to_string()))
            }
            Err(e) => Err(from_datafusion(e)),
        }
    })))
}

/// A statement started by GetFlightInfo: its result schema and its batches as they come.
pub(crate) struct Started {
    schema: SchemaRef,
    batches: mpsc::Receiver<Result<RecordBatch, Status>>,
}

impl Started {
    /// A run's receiving end and the sender its job writes to (one batch ahead).
    fn channel(schema: SchemaRef) -> (Self, mpsc::Sender<Result<RecordBatch, Status>>) {
        let (sender, batches) = mpsc::channel(1);
        (Self { schema, batches }, sender)
    }

    /// The DoGet that streams the batches; dropping it cancels the job.
    fn into_response(self) -> Response<DoGetStream> {
        let mut batches = self.batches;
        let batches = stream::poll_fn(move |cx| batches.poll_recv(cx));
        encode(self.schema, Box::pin(batches))
    }
}

/// The ticket of a prepared statement's run: what its FlightInfo carries and its
/// run is registered under, so CancelFlightInfo finds the run.
fn prepared_ticket(handle: &[u8]) -> Vec<u8> {
    CommandPreparedStatementQuery {
        prepared_statement_handle: handle.to_vec().into(),
    }
    .as_any()
    .encode_to_vec()
}

fn frames_schema(frames: &[DataFrame]) -> SchemaRef {
    frames
        .first()
        .map(frame_schema)
        .unwrap_or_else(|| Arc::new(Schema::empty()))
}

/// Runs `frames` one after another as the jobs of `query`.
fn execute_all(
    frames: Vec<DataFrame>,
    query: Arc<Query>,
) -> impl Stream<Item = Result<RecordBatch, Status>> + Send {
    stream::iter(frames)
        .then(move |frame| execute(frame, Arc::clone(&query)))
        .try_flatten()
}

/// The schema of `frame`'s results as clients receive them (string views expanded).
fn frame_schema(frame: &DataFrame) -> SchemaRef {
    string_views::expand_schema(frame.schema().inner())
}

fn encode(schema: SchemaRef, batches: FlightStream<RecordBatch>) -> Response<DoGetStream> {
    let batches = batches.map_err(|s| FlightError::Tonic(Box::new(s)));
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(flight))
}

fn encode_batch(batch: Result<RecordBatch, FlightError>) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| status(ErrorKind::Internal, e.to_string()))?;
    let schema = batch.schema();
    Ok(encode(schema, Box::pin(stream::once(async { Ok(batch) }))))
}

fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| status(ErrorKind::Internal, e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// FlightInfo of a metadata command: its ticket is the command itself.
fn command_info(
    schema: &Schema,
    command: &impl ProstMessageExt,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    flight_info(
        schema,
        command.as_any().encode_to_vec(),
        request.into_inner(),
    )
}

/// Tables here have no keys: every key command answers with no rows.
fn no_keys(schema: &SchemaRef) -> Result<Response<DoGetStream>, Status> {
    encode_batch(Ok(RecordBatch::new_empty(Arc::clone(schema))))
}

/// Static metadata tables are built once; a build error is a bug of ours.
fn built<T>(data: &'static Result<T, FlightError>) -> Result<&'static T, Status> {
    data.as_ref()
        .map_err(|e| status(ErrorKind::Internal, e.to_string()))
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow_schema::ArrowError| status(ErrorKind::Internal, e.to_string()))?;
    Ok(bytes)
}

/// `$1, $2, …` in order; a type DataFusion could not infer is reported as Null,
/// and a parameter compared with a string column as a plain string (clients bind
/// plain strings; the column is read as a view, see `string_views`).
fn parameter_schema(plan: &LogicalPlan) -> Result<SchemaRef, Status> {
    let types = plan.get_parameter_types().map_err(from_datafusion)?;
    let mut fields: Vec<(usize, Field)> = types
        .into_iter()
        .map(|(name, ty)| {
            let position = name
                .trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX);
            (
                position,
                Field::new(name, ty.unwrap_or(DataType::Null), true),
            )
        })
        .collect();
    fields.sort_by_key(|(position, _)| *position);
    let schema = Arc::new(Schema::new(
        fields.into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
    ));
    Ok(string_views::expand_schema(&schema))
}

const TABLE_TYPES: [&str; 3] = ["TABLE", "VIEW", "LOCAL TEMPORARY"];

/// JDBC's names for table types (`information_schema` says `BASE TABLE` for `TABLE`).
fn table_type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}
/// The Flight RPC action name of CancelFlightInfo.
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

#[tonic::async_trait]
impl FlightSqlService for LakehouseFlightSql {
    type FlightService = LakehouseFlightSql;

    /// With auth, the caller logged in with Basic credentials (checked before this
    /// runs) and gets a session token in the `authorization: Bearer` header, as ADBC
    /// and JDBC expect. Without auth the handshake succeeds with an empty token.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<FlightStream<HandshakeResponse>>, Status> {
        let token = match self.auth.enabled() {
            true => self.auth.issue_token(&self.auth.caller()?),
            false => String::new(),
        };
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response = Response::new(
            Box::pin(stream::once(async { Ok(response) })) as FlightStream<HandshakeResponse>
        );
        if !token.is_empty() {
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|_| status(ErrorKind::Internal, "session token is not ASCII"))?;
            response.metadata_mut().insert("authorization", bearer);
        }
        Ok(response)
    }

    #[instrument(skip_all, fields(sql = %query.query))]
    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        if self.is_write(&query.query) {
            return self
                .write_flight_info(&query.query, None, request.into_inner())
                .await;
        }
        let frame = self.plan(&number_placeholders(&query.query)).await?;
        let schema = frame_schema(&frame);
        let (started, sender) = Started::channel(Arc::clone(&schema));
        let ticket = TicketStatementQuery {
            statement_handle: self.planned.insert(&query.query, started).into(),
        }
        .as_any()
        .encode_to_vec();
        self.start(&ticket, vec![frame], sender);
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        if let Some(result) = write::result_batch(&ticket.statement_handle) {
            return encode_batch(Ok(result?));
        }
        let frame = match self.planned.take(&ticket.statement_handle) {
            Ok(started) => return Ok(started.into_response()),
            Err(Some(sql)) => self.plan(&number_placeholders(&sql)).await?,
            Err(None) => return Err(invalid("statement ticket is malformed")),
        };
        let schema = frame_schema(&frame);
        self.run(request.get_ref(), schema, vec![frame])
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let sql = number_placeholders(&query.query);
        if self.is_write(&sql) {
            return self.prepare_write(sql).await;
        }
        let frame = self.plan(&sql).await?;
        let dataset_schema = ipc_schema(&frame_schema(&frame))?;
        let parameters = parameter_schema(frame.logical_plan())?;
        let parameter_schema = ipc_schema(&parameters)?;
        let takes_parameters = !parameters.fields().is_empty();
        let handle = self.prepared.insert(sql, parameters);
        if !takes_parameters {
            self.start_early(&handle, frame);
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Closing twice is harmless; using a closed handle is an error.
        self.prepared.remove(&query.prepared_statement_handle);
        // A run whose DoGet never came is cancelled with it.
        self.planned.forget(&query.prepared_statement_handle);
        self.early_runs.forget(&query.prepared_statement_handle);
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let info = FlightInfo::decode(query.info)
            .map_err(|e| invalid(format!("CancelQuery carries no valid FlightInfo: {e}")))?;
        let cancelled = self.cancel_flight_info(Some(info)).await?;
        Ok(ActionCancelQueryResult {
            result: cancelled as i32,
        })
    }

    /// Flight RPC actions outside Flight SQL's own set: CancelFlightInfo.
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        let session_result = match action.r#type.as_str() {
            SET_SESSION_OPTIONS => Some(self.set_session_options(&action.body)?),
            GET_SESSION_OPTIONS => Some(self.get_session_options()?),
            CLOSE_SESSION => Some(self.close_session()?),
            _ => None,
        };
        if let Some(body) = session_result {
            let body = arrow_flight::Result::new(body);
            return Ok(Response::new(Box::pin(stream::once(async { Ok(body) }))));
        }
        match action.r#type.as_str() {
            CANCEL_FLIGHT_INFO => {
                let cancel = CancelFlightInfoRequest::decode(action.body).map_err(|e| {
                    invalid(format!(
                        "CancelFlightInfo body is not a CancelFlightInfoRequest: {e}"
                    ))
                })?;
                let result =
                    CancelFlightInfoResult::new(self.cancel_flight_info(cancel.info).await?);
                let body = arrow_flight::Result::new(result.encode_to_vec());
                Ok(Response::new(Box::pin(stream::once(async { Ok(body) }))))
            }
            other => Err(status(
                ErrorKind::InvalidInput,
                format!("unknown action {other:?}; see ListActions for the supported ones"),
            )),
        }
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let action = |name: &str, description: &str| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: description.to_string(),
            })
        };
        Some(vec![
            action(
                CANCEL_FLIGHT_INFO,
                "Cancel a query by its FlightInfo: stops its Ballista job",
            ),
            action(
                SET_SESSION_OPTIONS,
                "Set session options: catalog, schema (the default for unqualified names), datafusion.*",
            ),
            action(GET_SESSION_OPTIONS, "The session's options"),
            action(CLOSE_SESSION, "End the session and drop its options"),
        ])
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = query.prepared_statement_handle;
        let prepared = self.prepared(&handle)?;
        let flight = request.into_inner().map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(flight)
            .try_collect()
            .await
            .map_err(|e| invalid(format!("reading bound parameters: {e}")))?;
        let Some(first) = batches.first() else {
            return Ok(DoPutPreparedStatementResult {
                prepared_statement_handle: Some(handle),
            });
        };
        let parameters = concat_batches(&first.schema(), &batches)
            .map_err(|e| invalid(format!("bound parameters: {e}")))?;
        // New parameters: a run started with the old ones is not what the next DoGet wants.
        self.planned.forget(&handle);
        self.early_runs.forget(&handle);
        self.prepared.bind(&handle, prepared.conform(parameters)?);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.statement_update(command).await
    }

    async fn do_put_prepared_statement_update(
        &self,
        command: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.prepared_update(command, request).await
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.statement_ingest(command, request).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = self.prepared(&cmd.prepared_statement_handle)?;
        if self.is_write(&prepared.sql) {
            return self
                .write_flight_info(
                    &prepared.sql,
                    prepared.parameters.as_ref(),
                    request.into_inner(),
                )
                .await;
        }
        let handle = &cmd.prepared_statement_handle;
        let ticket = prepared_ticket(handle);
        // Started when the statement was created, moments ago.
        if let Ok(run) = self.early_runs.take(handle) {
            let schema = Arc::clone(&run.schema);
            self.planned.insert_prepared(handle, run);
            return flight_info(&schema, ticket, request.into_inner());
        }
        let frames = self.plan_rows(&prepared).await?;
        let schema = self.start_prepared(&self.planned, handle, frames);
        flight_info(&schema, ticket, request.into_inner())
    }

    /// Every row of bound parameters runs the statement once; results follow one another.
    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let prepared = self.prepared(&cmd.prepared_statement_handle)?;
        if self.is_write(&prepared.sql) {
            // Its GetFlightInfo ran it and answered with a result ticket.
            return Err(invalid(
                "a prepared write runs on GetFlightInfo or as an update, not on DoGet",
            ));
        }
        // Started by its GetFlightInfo, unless that ran on another server.
        if let Ok(started) = self.planned.take(&cmd.prepared_statement_handle) {
            return Ok(started.into_response());
        }
        let frames = self.plan_rows(&prepared).await?;
        self.run(request.get_ref(), frames_schema(&frames), frames)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query.into_builder().schema(), &query, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG_NAME);
        encode_batch(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query.clone().into_builder().schema(), &query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for (schema, _) in self.engine.schemas() {
            builder.append(CATALOG_NAME, schema);
        }
        encode_batch(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query.clone().into_builder().schema(), &query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        let tables = self.engine.tables().await.map_err(from_query)?;
        for table in tables {
            // Tables the caller may not read are not listed either.
            if table.schema_name == DEFAULT_SCHEMA && !self.auth.may_read(&table.name) {
                continue;
            }
            builder
                .append(
                    CATALOG_NAME,
                    &table.schema_name,
                    &table.name,
                    table_type_name(table.table_type),
                    &table.schema,
                )
                .map_err(|e| status(ErrorKind::Internal, e.to_string()))?;
        }
        encode_batch(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query.into_builder().schema(), &query, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for table_type in TABLE_TYPES {
            builder.append(table_type);
        }
        encode_batch(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(
            &query.clone().into_builder(built(&SQL_INFO)?).schema(),
            &query,
            request,
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        encode_batch(query.into_builder(built(&SQL_INFO)?).build())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&PRIMARY_KEYS, &query, request)
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        no_keys(&PRIMARY_KEYS)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&FOREIGN_KEYS, &query, request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        no_keys(&FOREIGN_KEYS)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&FOREIGN_KEYS, &query, request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        no_keys(&FOREIGN_KEYS)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&FOREIGN_KEYS, &query, request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        no_keys(&FOREIGN_KEYS)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(
            &query.into_builder(built(&XDBC_TYPES)?).schema(),
            &query,
            request,
        )
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        encode_batch(query.into_builder(built(&XDBC_TYPES)?).build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
