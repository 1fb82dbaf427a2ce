//! Vector indexes over HTTP: `POST /v1/indexes` (create) and
//! `POST /v1/indexes/{name}/refresh` answer with a stream of NDJSON progress
//! events ending in `{"event":"done","version":…}` or `{"event":"error",…}`;
//! list / show / activate / drop are plain JSON; `POST /v1/search` runs the
//! same plan as SQL's `vector_search`. `POST /v1/indexes/{name}/tune` tries HNSW
//! settings and `GET /hnsw/trials` reads the trial journal back.

use std::convert::Infallible;

use arrow::array::RecordBatch;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lakehouse_catalog_raft::VectorIndex;
use lakehouse_indexing::{
    CreateIndex, IndexService, PreparedBuild, Progress, SearchRequest, DEFAULT_SAMPLE,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::GatewayState;

fn service(state: &GatewayState) -> Result<&IndexService> {
    state.indexes.as_ref().ok_or(Error::NoIndexes)
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes, shape: &str) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the body must be {shape}: {e}")))
}

pub(crate) async fn create(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response> {
    let request: CreateIndex = parse(
        &body,
        r#"{"name", "table", "column"} with optional "profile", "key", "chunk_size", "overlap""#,
    )?;
    caller.require_write(format!("create vector index `{}`", request.name))?;
    let service = service(&state)?;
    let prepared = service.prepare_create(request).await?;
    build(&state, &caller, service.clone(), prepared)
}

pub(crate) async fn refresh(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response> {
    caller.require_write(format!("refresh vector index `{name}`"))?;
    let service = service(&state)?;
    let prepared = service.prepare_refresh(&name).await?;
    build(&state, &caller, service.clone(), prepared)
}

/// Starts the build and streams its progress. The build runs to its end even
/// if the client goes away, so the catalog never keeps a version half-made.
fn build(
    state: &GatewayState,
    caller: &Caller,
    service: IndexService,
    prepared: PreparedBuild,
) -> Result<Response> {
    caller.require_read(state, prepared.source_table())?;
    let (progress_tx, mut progress_rx) = mpsc::channel::<Progress>(64);
    let (line_tx, line_rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let build = tokio::spawn(async move { service.build(prepared, progress_tx).await });
        while let Some(event) = progress_rx.recv().await {
            let _ = line_tx.send(ndjson(&json!(event))).await;
        }
        let last = match build.await {
            Ok(Ok(version)) => json!({ "event": "done", "version": version }),
            Ok(Err(e)) => {
                json!({ "event": "error", "error": crate::error::label_of(e.kind()), "detail": e.to_string() })
            }
            Err(e) => {
                json!({ "event": "error", "error": "internal", "detail": format!("the build task failed: {e}") })
            }
        };
        let _ = line_tx.send(ndjson(&last)).await;
    });
    let lines = futures::stream::unfold(line_rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx))
    });
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

fn ndjson(value: &Value) -> Bytes {
    let mut line = value.to_string();
    line.push('\n');
    Bytes::from(line)
}

pub(crate) async fn list(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    let indexes: Vec<Value> = service(&state)?
        .catalog()
        .indexes()
        .iter()
        .filter(|index| readable(&state, &caller, index))
        .map(summary)
        .collect();
    Ok(Json(json!({ "indexes": indexes })))
}

pub(crate) async fn show(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let index = find(&state, &caller, &name)?;
    Ok(Json(json!(index)))
}

#[derive(Deserialize)]
pub(crate) struct VersionParam {
    version: Option<u64>,
}

pub(crate) async fn activate(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let VersionParam { version } = parse(&body, r#"{"version": number}"#)?;
    let version = version.ok_or_else(|| {
        Error::BadRequest("name the version to activate: {\"version\": N}".to_string())
    })?;
    caller.require_write(format!("activate vector index `{name}`"))?;
    find(&state, &caller, &name)?;
    let catalog = service(&state)?.catalog();
    catalog.activate_index_version(&name, version).await?;
    Ok(Json(json!(catalog.index(&name))))
}

pub(crate) async fn drop(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(VersionParam { version }): Query<VersionParam>,
) -> Result<Json<Value>> {
    caller.require_write(format!("drop vector index `{name}`"))?;
    find(&state, &caller, &name)?;
    service(&state)?
        .catalog()
        .drop_index(&name, version)
        .await?;
    Ok(Json(json!({ "dropped": name, "version": version })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    index: String,
    query: String,
    #[serde(default = "default_k")]
    k: i64,
    #[serde(default)]
    filter: Option<String>,
}

fn default_k() -> i64 {
    10
}

pub(crate) async fn search(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<Value>> {
    let body: SearchBody = parse(
        &body,
        r#"{"index", "query"} with optional "k" (default 10) and "filter" (a condition on the source table)"#,
    )?;
    let service = service(&state)?;
    let request = SearchRequest::new(&body.index, &body.query, body.k, body.filter)?;
    let table = service.search_table(request)?;
    caller.require_read(&state, table.source_table())?;
    let batches = service.search(table).await?;
    Ok(Json(
        json!({ "index": body.index, "results": rows(&batches)? }),
    ))
}

/// Result rows as JSON objects (the columns' own JSON forms).
fn rows(batches: &[RecordBatch]) -> Result<Vec<Value>> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .and_then(|()| writer.finish())
        .map_err(|e| Error::BadRequest(format!("cannot render the results: {e}")))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::BadRequest(format!("cannot render the results: {e}")))
}

/// Indexes are shown to those who may read their source table.
fn readable(state: &GatewayState, caller: &Caller, index: &VectorIndex) -> bool {
    index
        .versions
        .last()
        .is_none_or(|v| caller.may_read(state, &v.source_table))
}

fn find(state: &GatewayState, caller: &Caller, name: &str) -> Result<VectorIndex> {
    let index = service(state)?.catalog().index(name).ok_or_else(|| {
        lakehouse_indexing::Error::IndexNotFound {
            index: name.to_string(),
        }
    })?;
    if let Some(version) = index.versions.last() {
        caller.require_read(state, &version.source_table)?;
    }
    Ok(index)
}

fn summary(index: &VectorIndex) -> Value {
    let active = index.active_version();
    json!({
        "name": index.name,
        "active": index.active,
        "versions": index.versions.iter().map(|v| json!({
            "version": v.version,
            "status": v.status,
            "source": format!("{}.{}", v.source_table, v.source_column),
            "model": v.model,
            "chunks": v.shards.iter().map(|s| s.chunks).sum::<u64>(),
            "created_at_ms": v.created_at_ms,
        })).collect::<Vec<_>>(),
        "dims": active.map(|v| v.dims),
    })
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TuneBody {
    sample: Option<usize>,
}

/// `POST /v1/indexes/{name}/tune`: HNSW settings tried on a sample of the
/// active version, every trial journaled; answers with the trials and the best.
pub(crate) async fn tune(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let TuneBody { sample } = if body.is_empty() {
        TuneBody::default()
    } else {
        parse(&body, r#"{} or {"sample": number of vectors}"#)?
    };
    caller.require_write(format!("tune vector index `{name}`"))?;
    find(&state, &caller, &name)?;
    let report = service(&state)?
        .tune(&name, sample.unwrap_or(DEFAULT_SAMPLE))
        .await?;
    Ok(Json(json!(report)))
}

/// Trials `GET /hnsw/trials` answers with unless told otherwise, and at most.
const DEFAULT_TRIALS: usize = 100;
const MAX_TRIALS: usize = 10_000;

#[derive(Deserialize)]
pub(crate) struct TrialsParams {
    limit: Option<usize>,
    index: Option<String>,
}

/// `GET /hnsw/trials?limit=N&index=NAME`: the most recent tuning trials, newest
/// first, of indexes whose source table the caller may read; `source` says
/// whether the in-memory ring held enough or the journal's batches were read.
pub(crate) async fn trials(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    Query(TrialsParams { limit, index }): Query<TrialsParams>,
) -> Result<Json<Value>> {
    let limit = limit.unwrap_or(DEFAULT_TRIALS);
    if !(1..=MAX_TRIALS).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit={limit}: ask for 1 to {MAX_TRIALS} trials"
        )));
    }
    let (source, trials) = service(&state)?
        .trials(limit, |event| {
            index.as_ref().is_none_or(|name| *name == event.index)
                && caller.may_read(&state, &event.table)
        })
        .await?;
    Ok(Json(json!({ "source": source, "trials": trials })))
}
