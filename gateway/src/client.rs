//! Client of the HTTP API, used by the CLI: `lakehouse ingest` streams a file as
//! the request body so large files never sit in memory, reporting bytes sent;
//! `table set-metadata` completes a table's metadata; `index` follows builds.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
pub use reqwest::Method;
use tokio_util::io::ReaderStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {path}: {error}")]
    File { path: String, error: std::io::Error },

    #[error("cannot reach the server at {server}: {detail}; is `lakehouse up` running there? (set --server or LAKEHOUSE_SERVER)")]
    Connect { server: String, detail: String },

    #[error("{detail}")]
    Server {
        status: u16,
        error: String,
        detail: String,
    },
}

#[derive(Debug, Clone)]
pub struct GatewayClient {
    base: String,
    http: reqwest::Client,
    /// User name and password for a server with `[auth]`, sent as Basic.
    login: Option<(String, String)>,
}

impl GatewayClient {
    pub fn new(server: &str) -> Self {
        Self {
            base: server.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            login: None,
        }
    }

    pub fn with_login(mut self, user: String, password: String) -> Self {
        self.login = Some((user, password));
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.login {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Uploads `path` to `POST /v1/tables/{table}/ingest` with `params` as the query.
    pub async fn ingest(
        &self,
        path: &Path,
        table: &str,
        params: &[(&str, String)],
        on_bytes_sent: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<serde_json::Value, ClientError> {
        let file_err = |error| ClientError::File {
            path: path.display().to_string(),
            error,
        };
        let file = tokio::fs::File::open(path).await.map_err(file_err)?;
        let stream = ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                on_bytes_sent(bytes.len() as u64);
            }
        });
        let url = format!("{}/v1/tables/{}/ingest", self.base, urlencode(table));
        let response = self
            .authorized(self.http.post(url))
            .query(params)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| self.connect_error(e))?;
        self.json(response).await
    }

    /// `PATCH /v1/tables/{table}/metadata` with `fields` (any of owner,
    /// sensitivity, lineage, freshness_sla, description, tags); returns the table.
    pub async fn set_metadata(
        &self,
        table: &str,
        fields: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}/v1/tables/{}/metadata", self.base, urlencode(table));
        let response = self
            .authorized(self.http.patch(url))
            .json(fields)
            .send()
            .await
            .map_err(|e| self.connect_error(e))?;
        self.json(response).await
    }

    /// `method path` with an optional JSON body; the JSON answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let response = self.send(method, path, body).await?;
        self.json(response).await
    }

    /// `POST path` whose answer is NDJSON (an index build's progress): each line is
    /// handed to `on_line` as it arrives; the last line is returned.
    pub async fn post_streaming(
        &self,
        path: &str,
        body: &serde_json::Value,
        mut on_line: impl FnMut(&serde_json::Value),
    ) -> Result<serde_json::Value, ClientError> {
        let response = self.send(reqwest::Method::POST, path, Some(body)).await?;
        if !response.status().is_success() {
            return self.json(response).await;
        }
        let mut stream = response.bytes_stream();
        let mut pending = Vec::new();
        let mut last = serde_json::Value::Null;
        while let Some(chunk) = stream.next().await {
            pending.extend_from_slice(&chunk.map_err(|e| self.connect_error(e))?);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&line) {
                    on_line(&value);
                    last = value;
                }
            }
        }
        Ok(last)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.authorized(self.http.request(method, url));
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|e| self.connect_error(e))
    }

    async fn json(&self, response: reqwest::Response) -> Result<serde_json::Value, ClientError> {
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| self.connect_error(e))?;
        if status.is_success() {
            return Ok(body);
        }
        let text = |k: &str| {
            body.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        Err(ClientError::Server {
            status: status.as_u16(),
            error: text("error"),
            detail: text("detail"),
        })
    }

    fn connect_error(&self, e: reqwest::Error) -> ClientError {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        ClientError::Connect {
            server: self.base.clone(),
            detail,
        }
    }
}

/// Table names are validated server-side; escape what would change the URL.
pub fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
