//! A table's ADR-013 metadata: the checks every field gets (HTTP ingest and
//! `PATCH`), and `PATCH /v1/tables/{name}/metadata`, which completes or corrects
//! it. Tables made over Flight SQL start with only owner, sensitivity and
//! lineage and are flagged `metadata_incomplete` until all six fields are set.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use lakehouse_catalog_raft::model::{Sensitivity, TableMetadata};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::ingest::METADATA_PARAMS;
use crate::GatewayState;

pub(crate) fn sensitivity(value: &str) -> Result<Sensitivity> {
    Sensitivity::from_str(value.trim()).map_err(Error::BadRequest)
}

/// A freshness SLA must read as a duration (`24h`, `7d`, `30m`).
pub(crate) fn freshness_sla(value: &str) -> Result<String> {
    let value = value.trim();
    humantime::parse_duration(value).map_err(|e| {
        Error::BadRequest(format!(
            "freshness_sla {value:?} is not a duration ({e}); use e.g. 24h, 7d, 30m"
        ))
    })?;
    Ok(value.to_string())
}

/// Comma-separated tags, trimmed, empty ones dropped.
pub(crate) fn tags(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether every field ADR-013 asks for has a value.
fn complete(m: &TableMetadata) -> bool {
    [&m.owner, &m.lineage, &m.freshness_sla, &m.description]
        .iter()
        .all(|v| !v.trim().is_empty())
        && !m.tags.is_empty()
}

fn text(field: &str, value: &Value) -> Result<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Value::String(_) => Err(Error::BadRequest(format!(
            "{field} is empty; give it a value or leave it out"
        ))),
        other => Err(Error::BadRequest(format!(
            "{field} must be a string, not {other}"
        ))),
    }
}

/// `tags` as a JSON list of strings or one comma-separated string.
fn tag_list(value: &Value) -> Result<Vec<String>> {
    let tags = match value {
        Value::String(s) => tags(s),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.trim().to_string()),
                other => Err(Error::BadRequest(format!(
                    "tags must be strings, not {other}"
                ))),
            })
            .filter(|t| !matches!(t, Ok(t) if t.is_empty()))
            .collect::<Result<_>>()?,
        other => {
            return Err(Error::BadRequest(format!(
                "tags must be a list of strings or a comma-separated string, not {other}"
            )))
        }
    };
    if tags.is_empty() {
        return Err(Error::BadRequest(
            "tags is empty; give at least one tag or leave it out".to_string(),
        ));
    }
    Ok(tags)
}

/// Applies the JSON object `patch` to `metadata`; every field is checked
/// before anything changes, and errors name the field.
fn apply(metadata: &mut TableMetadata, patch: &Value) -> Result<()> {
    let Value::Object(fields) = patch else {
        return Err(Error::BadRequest(format!(
            "the body must be a JSON object with any of {}",
            METADATA_PARAMS.join(", ")
        )));
    };
    if fields.is_empty() {
        return Err(Error::BadRequest(format!(
            "the body sets no field; give any of {}",
            METADATA_PARAMS.join(", ")
        )));
    }
    if let Some(unknown) = fields
        .keys()
        .find(|k| !METADATA_PARAMS.contains(&k.as_str()))
    {
        return Err(Error::BadRequest(format!(
            "unknown field `{unknown}`; the metadata fields are {}",
            METADATA_PARAMS.join(", ")
        )));
    }
    let mut updated = metadata.clone();
    for (field, value) in fields {
        match field.as_str() {
            "owner" => updated.owner = text(field, value)?,
            "sensitivity" => updated.sensitivity = sensitivity(&text(field, value)?)?,
            "lineage" => updated.lineage = text(field, value)?,
            "freshness_sla" => updated.freshness_sla = freshness_sla(&text(field, value)?)?,
            "description" => updated.description = text(field, value)?,
            "tags" => updated.tags = tag_list(value)?,
            // Unknown fields were refused above.
            _ => {}
        }
    }
    updated.metadata_incomplete = !complete(&updated);
    *metadata = updated;
    Ok(())
}

/// `PATCH /v1/tables/{name}/metadata`: a JSON object with any of the six
/// fields; answers with the table as `GET /v1/tables/{name}` shows it.
pub(crate) async fn patch(
    State(state): State<GatewayState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    caller.require_write(format!("change the metadata of table `{name}`"))?;
    let table = state
        .catalog
        .table(&name)
        .ok_or_else(|| Error::TableNotFound(name.clone()))?;
    let patch: Value = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("the body is not JSON: {e}")))?;
    let mut metadata = table.metadata.clone();
    apply(&mut metadata, &patch)?;
    // Through Raft like every catalog change; written to the bucket's manifest.
    let updated = state.catalog.update_metadata(&name, metadata).await?;
    Ok(Json(crate::tables::detail(&updated)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn from_flight_sql() -> TableMetadata {
        TableMetadata {
            owner: "anonymous".to_string(),
            sensitivity: Sensitivity::Internal,
            lineage: "flight-sql:anonymous".to_string(),
            freshness_sla: String::new(),
            description: String::new(),
            tags: Vec::new(),
            metadata_incomplete: true,
        }
    }

    #[test]
    fn the_flag_clears_once_all_six_are_set() {
        let mut m = from_flight_sql();
        apply(
            &mut m,
            &json!({"description": "Placements", "tags": "a, b"}),
        )
        .unwrap();
        assert!(m.metadata_incomplete, "freshness_sla is still missing");
        apply(
            &mut m,
            &json!({"freshness_sla": "24h", "owner": "ops@example.com", "tags": ["x", " y "]}),
        )
        .unwrap();
        assert!(!m.metadata_incomplete);
        assert_eq!(m.tags, vec!["x", "y"]);
        assert_eq!(m.owner, "ops@example.com");
    }

    #[test]
    fn bad_fields_are_named_and_change_nothing() {
        let mut m = from_flight_sql();
        for (patch, field) in [
            (
                json!({"description": "d", "sensitivity": "secret"}),
                "sensitivity",
            ),
            (json!({"freshness_sla": "soon"}), "freshness_sla"),
            (json!({"owner": ""}), "owner"),
            (json!({"tags": [1]}), "tags"),
            (json!({"colour": "red"}), "colour"),
            (json!({"lineage": 5}), "lineage"),
        ] {
            let err = apply(&mut m, &patch).unwrap_err().to_string();
            assert!(err.contains(field), "{patch}: {err}");
        }
        assert_eq!(m, from_flight_sql());
        assert!(apply(&mut m, &json!({})).is_err());
        assert!(apply(&mut m, &json!(["owner"])).is_err());
    }
}
