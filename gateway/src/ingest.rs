//! `POST /v1/tables/{name}/ingest`: the request body is the file, metadata
//! comes as query parameters. Everything is checked before a byte is stored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use futures::StreamExt;
use lakehouse_catalog_raft::model::{TableMetadata, WriteMode};
use lakehouse_common::names::validate_identifier;
use lakehouse_ingest::{Format, WriteRequest};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::{metadata, GatewayState};

/// Query parameters naming the six metadata fields (ADR-013), in the order errors list them.
pub(crate) const METADATA_PARAMS: [&str; 6] = [
    "owner",
    "sensitivity",
    "lineage",
    "freshness_sla",
    "description",
    "tags",
];
const OTHER_PARAMS: [&str; 3] = ["format", "mode", "filename"];

pub(crate) async fn ingest(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    Path(table): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Json<Value>> {
    let outcome = run(&state, &caller, table, params, body).await;
    match &outcome {
        Ok(_) => state.metrics.ingest_commits.inc(),
        Err(_) => state.metrics.ingest_failures.inc(),
    };
    outcome
}

async fn run(
    state: &GatewayState,
    caller: &Caller,
    table: String,
    params: HashMap<String, String>,
    body: Body,
) -> Result<Json<Value>> {
    let (request, format, filename) = match check(state, caller, table, &params) {
        Ok(checked) => checked,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let spooled = spool(state, body).await?;
    let result = state
        .writer
        .ingest_file(spooled.path(), &filename, format, request)
        .await;
    drop(spooled);
    let summary = result?;
    state.metrics.ingest_rows.inc_by(summary.rows);
    let columns: Vec<Value> = summary
        .schema
        .fields()
        .iter()
        .map(|f| json!({ "name": f.name(), "type": f.data_type().to_string() }))
        .collect();
    Ok(Json(json!({
        "table": summary.table,
        "version": summary.version,
        "mode": summary.mode,
        "rows": summary.rows,
        "columns": columns,
        "files": summary.files,
        "bytes": summary.bytes,
        "seconds": summary.elapsed.as_secs_f64(),
    })))
}

/// Everything that can be refused before the body is read.
fn check(
    state: &GatewayState,
    caller: &Caller,
    table: String,
    params: &HashMap<String, String>,
) -> Result<(WriteRequest, Format, String)> {
    caller.require_write(format!("ingest into table `{table}`"))?;
    validate_identifier("table name", &table).map_err(lakehouse_ingest::Error::from)?;
    if let Some(unknown) = params
        .keys()
        .find(|k| !METADATA_PARAMS.contains(&k.as_str()) && !OTHER_PARAMS.contains(&k.as_str()))
    {
        return Err(Error::BadRequest(format!(
            "unknown query parameter `{unknown}`; allowed: {}, {}",
            METADATA_PARAMS.join(", "),
            OTHER_PARAMS.join(", ")
        )));
    }
    let filename = params
        .get("filename")
        .cloned()
        .unwrap_or_else(|| "upload".to_string());
    let format = match params.get("format") {
        Some(f) => Format::from_str(f).map_err(Error::BadRequest)?,
        None => Format::from_path(std::path::Path::new(&filename)).ok_or_else(|| {
            Error::BadRequest(format!(
                "cannot tell the format of {filename:?} from its extension; pass format=csv|json|parquet"
            ))
        })?,
    };
    let mode = params
        .get("mode")
        .map(|m| WriteMode::from_str(m))
        .transpose()
        .map_err(Error::BadRequest)?;
    let exists = state.catalog.table(&table).is_some();
    let metadata = metadata_from_params(&table, params, !exists)?;
    let request = WriteRequest {
        table,
        mode,
        metadata,
        writer: format!("http-ingest:{}", uuid::Uuid::new_v4().simple()),
        allow_empty: false,
    };
    // Refuse a wrong mode before receiving a possibly large body.
    state.writer.prepare(&request)?;
    Ok((request, format, filename))
}

/// All six fields are required for a new table; for an existing one, none or all.
fn metadata_from_params(
    table: &str,
    params: &HashMap<String, String>,
    required: bool,
) -> Result<Option<TableMetadata>> {
    let missing: Vec<String> = METADATA_PARAMS
        .iter()
        .filter(|p| params.get(**p).is_none_or(|v| v.trim().is_empty()))
        .map(|p| p.to_string())
        .collect();
    if missing.len() == METADATA_PARAMS.len() && !required {
        return Ok(None);
    }
    if !missing.is_empty() {
        return Err(lakehouse_ingest::Error::MissingMetadata {
            table: table.to_string(),
            missing,
        }
        .into());
    }
    let get = |k: &str| {
        params
            .get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    Ok(Some(TableMetadata {
        owner: get("owner"),
        sensitivity: metadata::sensitivity(&get("sensitivity"))?,
        lineage: get("lineage"),
        freshness_sla: metadata::freshness_sla(&get("freshness_sla"))?,
        description: get("description"),
        tags: metadata::tags(&get("tags")),
        metadata_incomplete: false,
    }))
}

/// Reads and discards what the client still sends (bounded), so it receives the
/// error response instead of a broken pipe while writing its upload.
pub(crate) async fn drain(body: Body) {
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut seen = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}

/// A spooled upload, removed when dropped.
struct Spooled(PathBuf);

impl Spooled {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn spool(state: &GatewayState, body: Body) -> Result<Spooled> {
    tokio::fs::create_dir_all(&state.spool_dir)
        .await
        .map_err(Error::Spool)?;
    let spooled = Spooled(
        state
            .spool_dir
            .join(format!("upload-{}", uuid::Uuid::new_v4().simple())),
    );
    let file = tokio::fs::File::create(spooled.path())
        .await
        .map_err(Error::Spool)?;
    let mut file = tokio::io::BufWriter::new(file);
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("reading the upload: {e}")))?;
        received += chunk.len() as u64;
        if received > state.max_ingest_bytes {
            return Err(Error::TooLarge {
                limit: state.max_ingest_bytes,
            });
        }
        file.write_all(&chunk).await.map_err(Error::Spool)?;
    }
    file.flush().await.map_err(Error::Spool)?;
    Ok(spooled)
}
