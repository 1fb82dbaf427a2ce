//! A small Flight SQL client for `lakehouse sql`.

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach Flight SQL at {uri}: {detail}; is `lakehouse up` running there? (set --server or LAKEHOUSE_FLIGHT_SQL)")]
    Connect { uri: String, detail: String },

    #[error("{0}")]
    Query(String),

    #[error("logging in as `{user}`: {detail}")]
    Login { user: String, detail: String },

    #[error("{0}")]
    Tls(String),
}

/// Credentials and TLS roots for servers with `[auth]` / `[tls]`.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// User name and password, sent once in the handshake; the session token follows.
    pub login: Option<(String, String)>,
    /// PEM CA that signed the server's certificate (`grpc+tls://` URIs).
    pub tls_ca_pem: Option<Vec<u8>>,
}

/// Runs `sql` and collects every batch of every endpoint.
pub async fn query(uri: &str, sql: &str) -> Result<Vec<RecordBatch>, ClientError> {
    query_with(uri, sql, &ClientOptions::default()).await
}

/// [`query`] with credentials and TLS roots.
pub async fn query_with(
    uri: &str,
    sql: &str,
    options: &ClientOptions,
) -> Result<Vec<RecordBatch>, ClientError> {
    let connect = |detail: String| ClientError::Connect {
        uri: uri.to_string(),
        detail,
    };
    let mut endpoint = match uri.strip_prefix("grpc+tls://") {
        Some(rest) => {
            let ca = options.tls_ca_pem.clone().ok_or_else(|| {
                ClientError::Tls(format!(
                    "{uri} uses TLS: give the CA that signed the server's certificate (--tls-ca PATH)"
                ))
            })?;
            Endpoint::from_shared(format!("https://{rest}"))
                .map_err(|e| connect(e.to_string()))?
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
                .map_err(|e| ClientError::Tls(e.to_string()))?
        }
        None => Endpoint::from_shared(uri.replacen("grpc://", "http://", 1))
            .map_err(|e| connect(e.to_string()))?,
    };
    endpoint = endpoint.tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| connect(e.to_string()))?;
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some((user, password)) = &options.login {
        client
            .handshake(user, password)
            .await
            .map_err(|e| ClientError::Login {
                user: user.clone(),
                detail: clean(e.to_string()),
            })?;
    }
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
