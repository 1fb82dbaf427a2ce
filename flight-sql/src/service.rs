//! The `FlightSqlService` implementation.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::prelude::DataFrame;
use futures::{stream, Stream, StreamExt, TryStreamExt};
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::ErrorKind;
use lakehouse_query::{QueryEngine, CATALOG_NAME, DEFAULT_SCHEMA};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use crate::auth::Auth;
use crate::error::{from_datafusion, invalid, status};
use crate::info::{SQL_INFO, XDBC_TYPES};
use crate::placeholders::number_placeholders;
use crate::planned::PlannedStatements;
use crate::prepared::{Prepared, PreparedStatements};

type FlightStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;
type DoGetStream = <LakehouseFlightSql as FlightService>::DoGetStream;

#[derive(Clone)]
pub struct LakehouseFlightSql {
    engine: QueryEngine,
    catalog: Catalog,
    prepared: PreparedStatements,
    planned: PlannedStatements,
    auth: Arc<Auth>,
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
            auth: Arc::new(Auth::disabled()),
        }
    }

    /// Checks callers against `auth` (users, grants); without it everyone may do everything.
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = auth;
        self
    }

    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    /// Every statement is planned here, so the caller's grants and roles are checked here.
    async fn plan(&self, sql: &str) -> Result<DataFrame, Status> {
        self.auth.plan(&self.engine, sql).await
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

    fn prepared(&self, handle: &[u8]) -> Result<Prepared, Status> {
        self.prepared.get(handle).ok_or_else(|| {
            status(
                ErrorKind::NotFound,
                "prepared statement handle is unknown or was closed; prepare the statement again",
            )
        })
    }
}

/// Results stream batch by batch as the executors produce them.
async fn execute(frame: DataFrame) -> Result<FlightStream<RecordBatch>, Status> {
    let stream = frame.execute_stream().await.map_err(from_datafusion)?;
    Ok(Box::pin(stream.map_err(from_datafusion)))
}

fn frame_schema(frame: &DataFrame) -> SchemaRef {
    Arc::clone(frame.schema().inner())
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

/// `$1, $2, …` in order; a type DataFusion could not infer is reported as Null.
fn parameter_schema(frame: &DataFrame) -> Result<Schema, Status> {
    let types = frame
        .logical_plan()
        .get_parameter_types()
        .map_err(from_datafusion)?;
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
    Ok(Schema::new(
        fields.into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
    ))
}

const TABLE_TYPES: [&str; 2] = ["TABLE", "VIEW"];

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
        let frame = self.plan(&number_placeholders(&query.query)).await?;
        let schema = frame_schema(&frame);
        let ticket = TicketStatementQuery {
            statement_handle: self.planned.insert(&query.query, frame).into(),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let frame = match self.planned.take(&ticket.statement_handle) {
            Ok(frame) => frame,
            Err(Some(sql)) => self.plan(&number_placeholders(&sql)).await?,
            Err(None) => return Err(invalid("statement ticket is malformed")),
        };
        let schema = frame_schema(&frame);
        Ok(encode(schema, execute(frame).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let sql = number_placeholders(&query.query);
        let frame = self.plan(&sql).await?;
        let dataset_schema = ipc_schema(&frame_schema(&frame))?;
        let parameters = parameter_schema(&frame)?;
        let parameter_count = parameters.fields().len();
        let parameter_schema = ipc_schema(&parameters)?;
        let handle = self.prepared.insert(sql, parameter_count);
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
        Ok(())
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
        if parameters.num_columns() != prepared.parameter_count {
            return Err(invalid(format!(
                "the statement takes {} parameters but {} were bound",
                prepared.parameter_count,
                parameters.num_columns()
            )));
        }
        self.prepared.bind(&handle, parameters);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = self.prepared(&cmd.prepared_statement_handle)?;
        let row = prepared.parameters.as_ref().map(|_| 0);
        let frame = self.plan_bound(&prepared, row).await?;
        flight_info(
            &frame_schema(&frame),
            cmd.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    /// Every row of bound parameters runs the statement once; results follow one another.
    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let prepared = self.prepared(&cmd.prepared_statement_handle)?;
        let rows: Vec<Option<usize>> = match &prepared.parameters {
            Some(p) if p.num_rows() > 0 => (0..p.num_rows()).map(Some).collect(),
            _ => vec![None],
        };
        let mut frames = Vec::with_capacity(rows.len());
        for row in rows {
            frames.push(self.plan_bound(&prepared, row).await?);
        }
        let schema = frames
            .first()
            .map(frame_schema)
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        let batches = stream::iter(frames).then(execute).try_flatten();
        Ok(encode(schema, Box::pin(batches)))
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
        builder.append(CATALOG_NAME, DEFAULT_SCHEMA);
        builder.append(CATALOG_NAME, "information_schema");
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
        for table in self.catalog.tables() {
            let Some(version) = table.current() else {
                continue;
            };
            // Tables the caller may not read are not listed either.
            if !self.auth.may_read(&table.name) {
                continue;
            }
            builder
                .append(
                    CATALOG_NAME,
                    DEFAULT_SCHEMA,
                    &table.name,
                    "TABLE",
                    &version.schema,
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
