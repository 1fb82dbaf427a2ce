//! Arrow Flight SQL on :3101 for ADBC, JDBC and BI tools. Queries are planned
//! against the replicated catalog and run as Ballista jobs; results stream
//! back in batches.

pub mod client;
mod error;
mod info;
mod placeholders;
mod planned;
mod prepared;
mod service;

use std::future::Future;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use service::LakehouseFlightSql;

/// Largest message a client may send or receive (DoPut batches, big rows).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Serves Flight SQL on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    service: LakehouseFlightSql,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let server = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Nodelay on every accepted socket: without it each response waits ~40 ms for the
    // client's delayed ACK (the server's tcp_nodelay setting does not reach an own listener).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
