//! all-MiniLM-L6-v2 in process: candle's `BertModel` over the sentence-transformers
//! files (config.json, tokenizer.json, model.safetensors, sentence_bert_config.json),
//! mean pooling over the attention mask, then L2 normalisation — the same pipeline
//! as sentence-transformers' Transformer → Pooling(mean) → Normalize modules.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use crate::{check_texts, Embedder, Embeddings, Error, ModelInfo, Result};

const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const WEIGHTS_FILE: &str = "model.safetensors";
/// sentence-transformers' own settings; its `max_seq_length` (256 for MiniLM) is where
/// it truncates, not tokenizer.json's 128 nor the model's 512 positions.
const SENTENCE_CONFIG_FILE: &str = "sentence_bert_config.json";

#[derive(Debug, Clone)]
pub struct LocalEmbedder {
    info: ModelInfo,
    model: Arc<LocalModel>,
    batch_size: usize,
}

struct LocalModel {
    name: String,
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct SentenceConfig {
    max_seq_length: usize,
}

impl LocalEmbedder {
    /// Loads `<models_dir>/<model>/`. Blocking (reads ~90 MB): call it off the async runtime.
    pub fn load(models_dir: &Path, model: &str, batch_size: usize) -> Result<Self> {
        let dir = models_dir.join(model);
        let path_of = |file: &'static str| -> Result<PathBuf> {
            let path = dir.join(file);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::ModelMissing {
                    model: model.to_string(),
                    dir: dir.clone(),
                    file,
                })
            }
        };
        let load_error = |path: &Path, reason: String| Error::ModelLoad {
            model: model.to_string(),
            path: path.to_path_buf(),
            reason,
        };
        let read = |path: &Path| std::fs::read(path).map_err(|e| load_error(path, e.to_string()));

        let config_path = path_of(CONFIG_FILE)?;
        let config: BertConfig = serde_json::from_slice(&read(&config_path)?)
            .map_err(|e| load_error(&config_path, e.to_string()))?;
        let max_tokens = match path_of(SENTENCE_CONFIG_FILE) {
            Ok(path) => {
                serde_json::from_slice::<SentenceConfig>(&read(&path)?)
                    .map_err(|e| load_error(&path, e.to_string()))?
                    .max_seq_length
            }
            Err(_) => config.max_position_embeddings,
        };

        let tokenizer_path = path_of(TOKENIZER_FILE)?;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| load_error(&tokenizer_path, e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| load_error(&tokenizer_path, e.to_string()))?;
        // Batches are padded here, to their longest text, after sorting by length.
        tokenizer.with_padding(None);

        let weights_path = path_of(WEIGHTS_FILE)?;
        let weights = read(&weights_path)?;
        let version = format!("sha256:{}", hex_prefix(&Sha256::digest(&weights), 8));
        let device = Device::Cpu;
        let vars = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_error(&weights_path, e.to_string()))?;
        let bert =
            BertModel::load(vars, &config).map_err(|e| load_error(&weights_path, e.to_string()))?;

        Ok(Self {
            info: ModelInfo {
                name: model.to_string(),
                version,
                dims: config.hidden_size,
            },
            model: Arc::new(LocalModel {
                name: model.to_string(),
                bert,
                tokenizer,
                device,
            }),
            batch_size,
        })
    }

    /// The forward passes, on the calling thread (candle spreads each over the cores).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Embeddings> {
        check_texts(texts)?;
        self.model.embed(texts, self.batch_size)
    }
}

/// Rows laid end to end, each filled up to `longest` with 0 (the pad token and "masked").
fn padded(rows: &[&[u32]], longest: usize) -> Vec<u32> {
    rows.iter()
        .flat_map(|row| {
            row.iter()
                .copied()
                .chain(std::iter::repeat_n(0, longest - row.len()))
        })
        .collect()
}

fn hex_prefix(bytes: &[u8], len: usize) -> String {
    bytes.iter().take(len).map(|b| format!("{b:02x}")).collect()
}

#[async_trait::async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &ModelInfo {
        &self.info
    }

    #[tracing::instrument(skip_all, fields(model = %self.info.name, texts = texts.len()))]
    async fn embed(&self, texts: &[String]) -> Result<Embeddings> {
        let this = self.clone();
        let texts = texts.to_vec();
        // CPU-bound for up to seconds: keep it off the async workers.
        tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
            .await
            .map_err(|e| Error::Inference {
                model: self.info.name.clone(),
                reason: format!("embedding task failed: {e}"),
            })?
    }
}

impl LocalModel {
    fn embed(&self, texts: &[String], batch_size: usize) -> Result<Embeddings> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect(), true)
            .map_err(|e| self.inference_error(format!("tokenizing: {e}")))?;
        // Batching texts of similar length keeps padding (wasted work) small.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].get_ids().len()));
        let mut vectors = vec![Vec::new(); texts.len()];
        for batch in order.chunks(batch_size) {
            let ids: Vec<&[u32]> = batch.iter().map(|&i| encodings[i].get_ids()).collect();
            let masks: Vec<&[u32]> = batch
                .iter()
                .map(|&i| encodings[i].get_attention_mask())
                .collect();
            let pooled = self
                .forward(&ids, &masks)
                .map_err(|e| self.inference_error(e.to_string()))?;
            for (&i, vector) in batch.iter().zip(pooled) {
                vectors[i] = vector;
            }
        }
        let tokens = encodings.iter().map(|e| e.get_ids().len() as u64).sum();
        Ok(Embeddings { vectors, tokens })
    }

    /// One batch, padded to its longest text → mean-pooled, L2-normalised vectors.
    fn forward(&self, ids: &[&[u32]], masks: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let longest = ids.iter().map(|row| row.len()).max().unwrap_or(0);
        let shape = (ids.len(), longest);
        let ids = Tensor::from_vec(padded(ids, longest), shape, &self.device)?;
        let mask = Tensor::from_vec(padded(masks, longest), shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.bert.forward(&ids, &token_types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }

    fn inference_error(&self, reason: String) -> Error {
        Error::Inference {
            model: self.name.clone(),
            reason,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lakehouse_common::config::{EmbeddingConfig, DEFAULT_EMBEDDING_PROFILE};

    use super::*;

    #[derive(serde::Deserialize)]
    struct Reference {
        sentences: Vec<String>,
        vectors: Vec<Vec<f32>>,
    }

    /// The model scripts/setup.sh installed; a missing model fails the test, with the
    /// error saying how to fetch it.
    fn load_default(batch_size: usize) -> LocalEmbedder {
        let config = EmbeddingConfig {
            models_dir: std::env::var("LAKEHOUSE__EMBEDDING__MODELS_DIR").unwrap_or_default(),
            ..EmbeddingConfig::default()
        };
        let profile = config.profile(DEFAULT_EMBEDDING_PROFILE).unwrap();
        LocalEmbedder::load(&config.models_dir(), &profile.model, batch_size)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn matches_sentence_transformers_reference() {
        let reference: Reference =
            serde_json::from_str(include_str!("../../tests/fixtures/minilm_reference.json"))
                .unwrap();
        // Batches of 4 mix lengths and padding; the vectors must not depend on it.
        let embedder = load_default(4);
        assert_eq!(embedder.model().dims, 384);
        assert!(embedder.model().version.starts_with("sha256:"));
        let vectors = embedder
            .embed_blocking(&reference.sentences)
            .unwrap()
            .vectors;
        for ((sentence, got), want) in reference
            .sentences
            .iter()
            .zip(&vectors)
            .zip(&reference.vectors)
        {
            let similarity = cosine(got, want);
            assert!(similarity >= 0.999, "cosine {similarity} for {sentence:?}");
            let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "norm {norm} for {sentence:?}");
        }
        let alone = embedder
            .embed_blocking(&reference.sentences[..1])
            .unwrap()
            .vectors;
        assert!(
            cosine(&alone[0], &vectors[0]) > 0.99999,
            "padding changed a vector"
        );
    }

    #[test]
    fn empty_text_and_missing_model_are_errors_that_say_what_to_do() {
        let embedder = load_default(32);
        let texts = vec!["fine".to_string(), "  ".to_string()];
        let err = embedder.embed_blocking(&texts).unwrap_err();
        assert!(matches!(err, Error::EmptyText { index: 1 }), "{err}");

        let empty = std::env::temp_dir().join("lakehouse-embedding-no-models");
        let err = LocalEmbedder::load(&empty, "all-MiniLM-L6-v2", 32).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("config.json") && message.contains("scripts/setup.sh"),
            "{message}"
        );
        assert_eq!(err.kind(), lakehouse_common::ErrorKind::Unavailable);
    }
}
