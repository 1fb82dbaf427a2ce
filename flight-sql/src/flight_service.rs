//! The gRPC `FlightService`: arrow-flight's Flight SQL dispatch, plus the two
//! calls that dispatch leaves unimplemented — GetSchema (ADBC's
//! `execute_schema`, JDBC's metadata-only calls) and PollFlightInfo (clients
//! that execute incrementally). Our queries are planned on GetFlightInfo and
//! run on DoGet, so a poll is complete at once. Every call runs in the caller's
//! session (see [`crate::session`]).

use std::future::Future;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, Command, CommandStatementQuery};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::error::invalid;
use crate::service::LakehouseFlightSql;
use crate::session;

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

    /// Runs `call` in the session that `metadata` names. Bearer tokens name
    /// sessions only when auth checks them.
    async fn in_session<T>(
        &self,
        metadata: MetadataMap,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, Status> {
        session::in_session(&metadata, self.inner.auth().enabled(), call).await
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
        let metadata = request.metadata().clone();
        self.in_session(metadata, FlightService::handshake(&self.inner, request))
            .await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let metadata = request.metadata().clone();
        self.in_session(metadata, FlightService::list_flights(&self.inner, request))
            .await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let metadata = request.metadata().clone();
        self.in_session(
            metadata,
            FlightService::get_flight_info(&self.inner, request),
        )
        .await
    }

    /// Complete at once: no `flight_descriptor` to poll again, progress 1.
    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let info = self.get_flight_info(request).await?.into_inner();
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
                let metadata = request.metadata().clone();
                self.in_session(metadata, async {
                    Ok::<_, Status>(Response::new(self.inner.statement_schema(&query).await?))
                })
                .await?
                .into_inner()
            }
            _ => self.get_flight_info(request).await?.into_inner().schema,
        };
        Ok(Response::new(SchemaResult { schema }))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let metadata = request.metadata().clone();
        self.in_session(metadata, FlightService::do_get(&self.inner, request))
            .await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let metadata = request.metadata().clone();
        self.in_session(metadata, FlightService::do_put(&self.inner, request))
            .await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let metadata = request.metadata().clone();
        self.in_session(metadata, FlightService::do_action(&self.inner, request))
            .await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let metadata = request.metadata().clone();
        self.in_session(metadata, FlightService::list_actions(&self.inner, request))
            .await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let metadata = request.metadata().clone();
        self.in_session(metadata, FlightService::do_exchange(&self.inner, request))
            .await
    }
}
