//! `POST /v1/embeddings`, OpenAI-compatible: `model` names an `[embedding]` profile
//! (the local all-MiniLM-L6-v2 by default), `input` is a string or an array of strings.
//! The answer is OpenAI's `{"object":"list","data":[...],"model":..,"usage":{..}}`, so
//! users' own tools (and our `openai` embedding backend) can call it.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use lakehouse_common::config::DEFAULT_EMBEDDING_PROFILE;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::GatewayState;

/// OpenAI's own limit on inputs per request.
const MAX_INPUTS: usize = 2048;

/// Other OpenAI fields (`user`, `dimensions`) are ignored, as compatible servers do.
#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Input,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

#[tracing::instrument(skip_all, fields(profile, inputs))]
pub(crate) async fn embeddings(
    State(state): State<GatewayState>,
    body: Bytes,
) -> Result<Json<Value>> {
    let request: EmbeddingsRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!(
            "the body must be {{\"input\": string or array of strings, \"model\": profile}}: {e}"
        ))
    })?;
    if let Some(format) = request.encoding_format.as_deref().filter(|f| *f != "float") {
        return Err(Error::BadRequest(format!(
            "encoding_format {format:?} is not supported; use \"float\""
        )));
    }
    let texts = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(Error::BadRequest(format!(
            "input has {} texts; send 1 to {MAX_INPUTS}",
            texts.len()
        )));
    }
    let profile = request
        .model
        .unwrap_or_else(|| DEFAULT_EMBEDDING_PROFILE.to_string());
    let span = tracing::Span::current();
    span.record("profile", profile.as_str());
    span.record("inputs", texts.len());

    let embedder = state.embedders.get(&profile).await?;
    let embedded = embedder.embed(&texts).await?;
    let data: Vec<Value> = embedded
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": profile,
        "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens},
    })))
}
