//! The gRPC `FlightService`: arrow-flight's Flight SQL dispatch, plus the two
//! calls that dispatch leaves unimplemented — GetSchema (ADBC's
//! `execute_schema`, JDBC's metadata-only calls) and PollFlightInfo (clients
//! that execute incrementally). Our queries are planned on GetFlightInfo and
//! run on DoGet, so a poll is complete at once.

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, Command, CommandStatementQuery};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::error::invalid;
use crate::service::LakehouseFlightSql;

type Inner = LakehouseFlightSql;

/// Serves [`LakehouseFlightSql`] with the whole Flight RPC surface.
#[derive(Debug, Clone)]
pub struct LakehouseFlightService {
    inner: Inner,
}

impl LakehouseFlightService {
    pub fn new(inner: LakehouseFlightSql) -> Self {
        Self { inner }
    }
}

#[tonic::async_trait]
impl FlightService for LakehouseFlightService {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.inner, request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(&self.inner, request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&self.inner, request).await
    }

    /// Complete at once: no `flight_descriptor` to poll again, progress 1.
    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let info = FlightService::get_flight_info(&self.inner, request)
            .await?
            .into_inner();
        Ok(Response::new(PollInfo {
            info: Some(info),
            flight_descriptor: None,
            progress: Some(1.0),
            expiration_time: None,
        }))
    }

    /// A statement is only planned (nothing runs, nothing is kept); any other
    /// command answers with the schema its FlightInfo would carry.
    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let any = Any::decode(&*request.get_ref().cmd).map_err(|e| {
            invalid(format!(
                "the descriptor's command is not a protobuf Any: {e}"
            ))
        })?;
        let command = Command::try_from(any).map_err(|e| invalid(e.to_string()))?;
        let schema = match command {
            Command::CommandStatementQuery(CommandStatementQuery { query, .. }) => {
                self.inner.statement_schema(&query).await?
            }
            _ => {
                FlightService::get_flight_info(&self.inner, request)
                    .await?
                    .into_inner()
                    .schema
            }
        };
        Ok(Response::new(SchemaResult { schema }))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        FlightService::do_get(&self.inner, request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&self.inner, request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&self.inner, request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&self.inner, request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(&self.inner, request).await
    }
}
