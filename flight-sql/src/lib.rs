//! Arrow Flight SQL on :3101 for ADBC, JDBC and BI tools. Queries are planned
//! against the replicated catalog and run as Ballista jobs; results stream
//! back in batches.

pub mod auth;
pub mod client;
mod error;
mod flight_service;
mod info;
mod keys;
mod placeholders;
mod planned;
mod prepared;
mod running;
mod service;
mod session;
mod tls;

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::{Server, ServerTlsConfig};

pub use auth::Auth;
pub use error::{Error, Result};
pub use flight_service::LakehouseFlightService;
pub use service::LakehouseFlightSql;
pub use session::SessionLimits;
pub use tls::server_tls;

/// Largest message a client may send or receive (DoPut batches, big rows).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The Flight SQL gRPC server, configured (TLS, authentication) but not yet listening.
pub struct FlightSqlServer {
    router: Router,
}

impl std::fmt::Debug for FlightSqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSqlServer").finish_non_exhaustive()
    }
}

impl FlightSqlServer {
    /// Serves TLS with `tls` (from [`server_tls`]; `None`: plain gRPC) and puts
    /// authentication in front of `service` when its `Auth` is enabled.
    pub fn new(service: LakehouseFlightSql, tls: Option<ServerTlsConfig>) -> Result<Self> {
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).map_err(|e| Error::Config {
                key: "tls".to_string(),
                reason: format!("the certificate or key is not usable: {e}"),
            })?;
        }
        let auth = Arc::clone(service.auth());
        let server = FlightServiceServer::new(LakehouseFlightService::new(service))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let router = if auth.enabled() {
            builder.add_service(auth::layer::Authenticated::new(server, auth))
        } else {
            builder.add_service(server)
        };
        Ok(Self { router })
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::result::Result<(), tonic::transport::Error> {
        // Nodelay on every accepted socket: without it each response waits ~40 ms for the
        // client's delayed ACK (the server's tcp_nodelay setting does not reach an own listener).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        self.router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }
}
