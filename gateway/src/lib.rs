//! The HTTP API on :3100: health, the table catalog with its metadata (and a
//! PATCH to complete it), ingest, embeddings, vector indexes and search, and
//! Prometheus metrics. Errors are JSON
//! `{"error", "detail"}`; each crate's error kind becomes a status code here, once.
//! With `auth.enabled`, the `/v1` routes need credentials (see [`auth`]).

mod auth;
pub mod client;
mod embeddings;
mod error;
mod indexes;
mod ingest;
mod metadata;
pub mod metrics;
mod tables;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::Access;
use lakehouse_indexing::IndexService;
use lakehouse_ingest::TableWriter;
use tokio::net::TcpListener;

pub use error::{Error, Result};
pub use lakehouse_embedding::Embedders;
pub use metrics::Metrics;

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct GatewayState {
    pub catalog: Catalog,
    pub writer: TableWriter,
    pub metrics: Arc<Metrics>,
    /// Uploads are spooled here before they are read (type inference reads twice).
    pub spool_dir: PathBuf,
    pub max_ingest_bytes: u64,
    /// The `[embedding]` profiles behind `POST /v1/embeddings`, opened on first use.
    pub embedders: Arc<Embedders>,
    /// Users, sessions and grants, shared with Flight SQL; disabled: anonymous access.
    pub access: Arc<dyn Access>,
    /// Vector index builds and searches (none: a gateway without a query engine).
    pub indexes: Option<IndexService>,
}

pub fn router(state: GatewayState) -> Router {
    // With auth on, everything under /v1 and /hnsw/trials needs credentials. /health
    // stays open for probes, /metrics for Prometheus scrapers, which usually come
    // without any: it holds counters only, no table names or data.
    let api = Router::new()
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/indexes", get(indexes::list).post(indexes::create))
        .route(
            "/v1/indexes/{name}",
            get(indexes::show).delete(indexes::drop),
        )
        .route("/v1/indexes/{name}/activate", post(indexes::activate))
        .route("/v1/indexes/{name}/refresh", post(indexes::refresh))
        .route("/v1/indexes/{name}/tune", post(indexes::tune))
        .route("/hnsw/trials", get(indexes::trials))
        .route("/v1/search", post(indexes::search))
        .route("/v1/tables", get(tables::list))
        .route("/v1/tables/{name}", get(tables::show))
        .route("/v1/tables/{name}/metadata", patch(metadata::patch))
        .route(
            "/v1/tables/{name}/ingest",
            post(ingest::ingest).layer(DefaultBodyLimit::disable()),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::render))
        .merge(api)
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: GatewayState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
