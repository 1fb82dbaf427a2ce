//! A small Flight SQL client for `lakehouse sql`.

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Endpoint;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach Flight SQL at {uri}: {detail}; is `lakehouse up` running there? (set --server or LAKEHOUSE_FLIGHT_SQL)")]
    Connect { uri: String, detail: String },

    #[error("{0}")]
    Query(String),
}

/// Runs `sql` and collects every batch of every endpoint.
pub async fn query(uri: &str, sql: &str) -> Result<Vec<RecordBatch>, ClientError> {
    let http_uri = uri.replacen("grpc://", "http://", 1);
    let connect = |detail: String| ClientError::Connect {
        uri: uri.to_string(),
        detail,
    };
    let channel = Endpoint::from_shared(http_uri)
        .map_err(|e| connect(e.to_string()))?
        .connect()
        .await
        .map_err(|e| connect(e.to_string()))?;
    let mut client = FlightSqlServiceClient::new(channel);
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| ClientError::Query(clean(e.to_string())))?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            continue;
        };
        let stream = client
            .do_get(ticket)
            .await
            .map_err(|e| ClientError::Query(clean(e.to_string())))?;
        let mut part: Vec<RecordBatch> = stream
            .try_collect()
            .await
            .map_err(|e| ClientError::Query(clean(e.to_string())))?;
        batches.append(&mut part);
    }
    Ok(batches)
}

/// tonic wraps the server's message in transport details; keep the message.
fn clean(message: String) -> String {
    match message.split_once("message: \"") {
        Some((_, rest)) => rest
            .split("\", details")
            .next()
            .unwrap_or(rest)
            .replace("\\\"", "\""),
        None => message,
    }
}
