//! Ollama (`POST /api/embed`) and OpenAI-compatible (`POST /v1/embeddings`) servers:
//! batches of `batch_size` texts, a timeout per request, and retries with exponential
//! backoff on connection errors, timeouts, 429 and 5xx.

use std::time::Duration;

use lakehouse_common::config::{EmbeddingBackend, EmbeddingProfile};
use lakehouse_common::storage::resolve_secret;
use serde::{Deserialize, Serialize};

use crate::{check_texts, Embedder, Embeddings, Error, ModelInfo, Result};

/// First retry waits this long; each further one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest error body quoted back to the user.
const MAX_QUOTED_BODY: usize = 500;
/// Text sent once when a profile is opened, to learn the model's dimensions.
const PROBE_TEXT: &str = "dimension probe";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Ollama,
    OpenAi,
}

#[derive(Debug)]
pub struct HttpEmbedder {
    info: ModelInfo,
    api: Api,
    client: reqwest::Client,
    endpoint: String,
    profile: String,
    model: String,
    api_key: Option<String>,
    batch_size: usize,
    retries: u32,
}

#[derive(Serialize)]
struct EmbedRequest<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct OllamaResponse {
    model: Option<String>,
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    prompt_eval_count: u64,
}

#[derive(Deserialize)]
struct OpenAiResponse {
    model: Option<String>,
    data: Vec<OpenAiEmbedding>,
    #[serde(default)]
    usage: OpenAiUsage,
}

#[derive(Deserialize, Default)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

#[derive(Deserialize)]
struct OpenAiEmbedding {
    index: usize,
    embedding: Vec<f32>,
}

/// One batch's vectors and the model the server says produced them.
struct Batch {
    model: Option<String>,
    embeddings: Embeddings,
}

impl HttpEmbedder {
    /// Builds the client and embeds one probe text to learn the dimensions, so that a
    /// server that is down or serves another model fails here, naming the endpoint.
    pub async fn connect(profile_name: &str, profile: &EmbeddingProfile) -> Result<Self> {
        let base = profile.url.trim_end_matches('/');
        let (api, endpoint) = match profile.backend {
            EmbeddingBackend::Ollama => (Api::Ollama, format!("{base}/api/embed")),
            // Accept both `http://host:port` and an OpenAI-style base URL ending in /v1.
            EmbeddingBackend::Openai if base.ends_with("/v1") => {
                (Api::OpenAi, format!("{base}/embeddings"))
            }
            EmbeddingBackend::Openai => (Api::OpenAi, format!("{base}/v1/embeddings")),
            EmbeddingBackend::Local => {
                return Err(lakehouse_common::Error::Config(format!(
                    "embedding profile `{profile_name}` is local, not an HTTP backend"
                ))
                .into())
            }
        };
        let api_key = match profile.api_key_ref.as_str() {
            "" => None,
            reference => Some(resolve_secret(reference)?),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(profile.timeout_ms))
            .build()
            .map_err(|e| Error::Unreachable {
                url: endpoint.clone(),
                profile: profile_name.to_string(),
                attempts: 0,
                reason: format!("building the HTTP client: {e}"),
            })?;
        let mut embedder = Self {
            info: ModelInfo {
                name: profile.model.clone(),
                version: String::new(),
                dims: 0,
            },
            api,
            client,
            endpoint,
            profile: profile_name.to_string(),
            model: profile.model.clone(),
            api_key,
            batch_size: profile.batch_size,
            retries: profile.retries,
        };
        let probe = embedder.request(&[PROBE_TEXT.to_string()]).await?;
        embedder.info.dims = probe.embeddings.vectors.first().map_or(0, Vec::len);
        embedder.info.version = probe.model.unwrap_or_else(|| profile.model.clone());
        Ok(embedder)
    }

    /// One batch, retried with backoff while the failure may be passing.
    async fn request(&self, texts: &[String]) -> Result<Batch> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.send(texts).await {
                Ok(batch) => return Ok(batch),
                Err(error) => error,
            };
            let transient = match &error {
                Error::Unreachable { .. } => true,
                Error::Endpoint { status, .. } => *status == 429 || *status >= 500,
                _ => false,
            };
            if !transient || attempt > self.retries {
                return Err(match error {
                    Error::Unreachable {
                        url,
                        profile,
                        reason,
                        ..
                    } => Error::Unreachable {
                        url,
                        profile,
                        attempts: attempt,
                        reason,
                    },
                    other => other,
                });
            }
            tracing::warn!(endpoint = %self.endpoint, attempt, error = %error, "embedding request failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn send(&self, texts: &[String]) -> Result<Batch> {
        let mut request = self.client.post(&self.endpoint).json(&EmbedRequest {
            model: &self.model,
            input: texts,
        });
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        // `attempts` is filled in by `request`, which counts them.
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: self.endpoint.clone(),
            profile: self.profile.clone(),
            attempts: 1,
            reason: error_chain(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let end = text.floor_char_boundary(MAX_QUOTED_BODY);
            return Err(Error::Endpoint {
                url: self.endpoint.clone(),
                status: status.as_u16(),
                body: text[..end].to_string(),
            });
        }
        let bad = |reason: String| Error::BadResponse {
            url: self.endpoint.clone(),
            reason,
        };
        let batch = match self.api {
            Api::Ollama => {
                let parsed: OllamaResponse =
                    serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
                Batch {
                    model: parsed.model,
                    embeddings: Embeddings {
                        vectors: parsed.embeddings,
                        tokens: parsed.prompt_eval_count,
                    },
                }
            }
            Api::OpenAi => {
                let mut parsed: OpenAiResponse =
                    serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
                // The API allows the items in any order; `index` says whose vector it is.
                parsed.data.sort_by_key(|d| d.index);
                if parsed.data.iter().enumerate().any(|(i, d)| d.index != i) {
                    return Err(bad("the `index` fields are not 0..n".to_string()));
                }
                Batch {
                    model: parsed.model,
                    embeddings: Embeddings {
                        vectors: parsed.data.into_iter().map(|d| d.embedding).collect(),
                        tokens: parsed.usage.prompt_tokens,
                    },
                }
            }
        };
        if batch.embeddings.vectors.len() != texts.len() {
            return Err(bad(format!(
                "{} vectors for {} texts",
                batch.embeddings.vectors.len(),
                texts.len()
            )));
        }
        Ok(batch)
    }
}

/// reqwest's own message hides the cause ("error sending request"); the chain has it.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}

#[async_trait::async_trait]
impl Embedder for HttpEmbedder {
    fn model(&self) -> &ModelInfo {
        &self.info
    }

    #[tracing::instrument(skip_all, fields(endpoint = %self.endpoint, texts = texts.len()))]
    async fn embed(&self, texts: &[String]) -> Result<Embeddings> {
        check_texts(texts)?;
        let mut all = Embeddings {
            vectors: Vec::with_capacity(texts.len()),
            tokens: 0,
        };
        for batch in texts.chunks(self.batch_size) {
            let answer = self.request(batch).await?.embeddings;
            if let Some(vector) = answer.vectors.iter().find(|v| v.len() != self.info.dims) {
                return Err(Error::BadResponse {
                    url: self.endpoint.clone(),
                    reason: format!(
                        "a vector of {} dimensions where the model gave {} before",
                        vector.len(),
                        self.info.dims
                    ),
                });
            }
            all.vectors.extend(answer.vectors);
            all.tokens += answer.tokens;
        }
        Ok(all)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Json;
    use serde_json::{json, Value};

    use super::*;

    /// A fake Ollama on loopback that fails its first answer with a 503.
    async fn flaky_ollama() -> (String, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&calls);
        let app = axum::Router::new().route(
            "/api/embed",
            post(move |Json(body): Json<Value>| {
                let seen = Arc::clone(&seen);
                async move {
                    if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        return Err(StatusCode::SERVICE_UNAVAILABLE);
                    }
                    let n = body["input"].as_array().map_or(0, Vec::len);
                    let vectors: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32, 1.0]).collect();
                    Ok(Json(json!({"model": "fake:1", "embeddings": vectors, "prompt_eval_count": 3 * n})))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls)
    }

    #[tokio::test]
    async fn ollama_batches_and_retries_a_503() {
        let (url, calls) = flaky_ollama().await;
        let profile = EmbeddingProfile {
            backend: EmbeddingBackend::Ollama,
            model: "fake".to_string(),
            url,
            batch_size: 2,
            retries: 1,
            dims: 0,
            ..EmbeddingProfile::default()
        };
        let embedder = HttpEmbedder::connect("fake", &profile).await.unwrap();
        assert_eq!(embedder.model().dims, 2);
        assert_eq!(embedder.model().version, "fake:1");
        let texts: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let embedded = embedder.embed(&texts).await.unwrap();
        // Batches of 2: the third text is the first of its own batch.
        assert_eq!(
            embedded.vectors,
            vec![vec![0.0, 1.0], vec![1.0, 1.0], vec![0.0, 1.0]]
        );
        assert_eq!(embedded.tokens, 9);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "probe (503, retried) + 2 batches"
        );
    }
}
