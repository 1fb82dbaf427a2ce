//! Arrow Flight SQL on :3101 for ADBC, JDBC and BI tools. Queries are planned
//! against the replicated catalog and run as Ballista jobs; results stream
//! back in batches.

pub mod client;
mod error;
mod info;
mod placeholders;
mod prepared;
mod service;

use std::future::Future;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

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
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(server)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
