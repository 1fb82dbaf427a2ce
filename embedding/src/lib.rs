//! Embedding models (issue 6, ADR-003/004): text in, one L2-normalised vector per text out.
//! Backends: all-MiniLM-L6-v2 in process with candle ([`LocalEmbedder`]) and Ollama /
//! OpenAI-compatible servers over HTTP ([`HttpEmbedder`]). [`Embedders`] opens the
//! profiles of `[embedding]` on first use and keeps them.

mod error;
mod http;
mod local;

use std::collections::HashMap;
use std::sync::Arc;

use lakehouse_common::config::{EmbeddingBackend, EmbeddingConfig, EmbeddingProfile};
use tokio::sync::Mutex;

pub use error::{Error, Result};
pub use http::HttpEmbedder;
pub use local::LocalEmbedder;

/// What produced a vector: recorded with every index version so that a query is
/// embedded by the same model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub name: String,
    /// Local: a hash of the weights; HTTP: the model the server says it ran.
    pub version: String,
    pub dims: usize,
}

/// Vectors for a batch of texts, in their order, and what the batch cost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the model read (its tokenizer's count); 0 when a server does not say.
    pub tokens: u64,
}

#[async_trait::async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug {
    fn model(&self) -> &ModelInfo;

    /// One vector of `model().dims` per text, in order. Empty texts are an error.
    async fn embed(&self, texts: &[String]) -> Result<Embeddings>;
}

/// Opens the named profile: loads local weights (off the async runtime) or asks the
/// server once to learn the dimensions, which then must match the profile's `dims`.
pub async fn open(name: &str, config: &EmbeddingConfig) -> Result<Arc<dyn Embedder>> {
    let profile = config.profile(name)?.clone();
    let embedder: Arc<dyn Embedder> = match profile.backend {
        EmbeddingBackend::Local => {
            let dir = config.models_dir();
            let (model, batch_size) = (profile.model.clone(), profile.batch_size);
            let loaded =
                tokio::task::spawn_blocking(move || LocalEmbedder::load(&dir, &model, batch_size))
                    .await
                    .map_err(|e| Error::Inference {
                        model: profile.model.clone(),
                        reason: format!("loading task failed: {e}"),
                    })??;
            Arc::new(loaded)
        }
        EmbeddingBackend::Ollama | EmbeddingBackend::Openai => {
            Arc::new(HttpEmbedder::connect(name, &profile).await?)
        }
    };
    check_dims(name, &profile, embedder.model())?;
    tracing::info!(
        profile = name,
        model = %embedder.model().name,
        version = %embedder.model().version,
        dims = embedder.model().dims,
        "embedding model ready"
    );
    Ok(embedder)
}

fn check_dims(name: &str, profile: &EmbeddingProfile, model: &ModelInfo) -> Result<()> {
    if profile.dims != 0 && profile.dims != model.dims {
        return Err(Error::DimsMismatch {
            profile: name.to_string(),
            model: model.name.clone(),
            expected: profile.dims,
            actual: model.dims,
        });
    }
    Ok(())
}

/// Rejects empty texts before any work is done.
fn check_texts(texts: &[String]) -> Result<()> {
    match texts.iter().position(|t| t.trim().is_empty()) {
        Some(index) => Err(Error::EmptyText { index }),
        None => Ok(()),
    }
}

/// The profiles of one `[embedding]` section, each opened on first use and then shared.
#[derive(Debug)]
pub struct Embedders {
    config: EmbeddingConfig,
    // A tokio mutex: opening a local model takes a second and concurrent first callers wait for it.
    opened: Mutex<HashMap<String, Arc<dyn Embedder>>>,
}

impl Embedders {
    pub fn new(config: EmbeddingConfig) -> Self {
        Self {
            config,
            opened: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &EmbeddingConfig {
        &self.config
    }

    pub async fn get(&self, profile: &str) -> Result<Arc<dyn Embedder>> {
        let mut opened = self.opened.lock().await;
        if let Some(embedder) = opened.get(profile) {
            return Ok(Arc::clone(embedder));
        }
        let embedder = open(profile, &self.config).await?;
        opened.insert(profile.to_string(), Arc::clone(&embedder));
        Ok(embedder)
    }
}
