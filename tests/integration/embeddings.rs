//! The `openai` embedding backend against the gateway's own `POST /v1/embeddings`,
//! which serves the local all-MiniLM-L6-v2 (`scripts/setup.sh` installs it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lakehouse_common::config::{
    EmbeddingBackend, EmbeddingConfig, EmbeddingProfile, DEFAULT_EMBEDDING_PROFILE,
};
use lakehouse_common::ErrorKind;
use lakehouse_embedding::Error;
use lakehouse_tests::{BoxError, TestUp};

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

/// One `openai` profile named `remote` that asks `url` for `model`.
fn openai_profile(url: &str, model: &str, retries: u32) -> EmbeddingConfig {
    let profile = EmbeddingProfile {
        backend: EmbeddingBackend::Openai,
        model: model.to_string(),
        url: url.to_string(),
        retries,
        timeout_ms: 60_000,
        batch_size: 4,
        ..EmbeddingProfile::default()
    };
    EmbeddingConfig {
        profiles: BTreeMap::from([("remote".to_string(), profile)]),
        ..EmbeddingConfig::default()
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_backend_embeds_through_the_gateway() -> Result<(), BoxError> {
    let up = TestUp::start().await?;
    let reference: Reference =
        serde_json::from_str(include_str!("../fixtures/minilm_reference.json"))?;

    // Batches of 4 over HTTP: the 10 sentences take three requests.
    let config = openai_profile(&up.http_url(), DEFAULT_EMBEDDING_PROFILE, 0);
    let remote = lakehouse_embedding::open("remote", &config).await?;
    assert_eq!(remote.model().dims, 384);
    let embedded = remote.embed(&reference.sentences).await?;
    assert_eq!(embedded.vectors.len(), reference.sentences.len());
    assert!(embedded.tokens > 0, "usage.prompt_tokens is reported");
    for ((sentence, got), want) in reference
        .sentences
        .iter()
        .zip(&embedded.vectors)
        .zip(&reference.vectors)
    {
        let similarity = cosine(got, want);
        assert!(similarity >= 0.999, "cosine {similarity} for {sentence:?}");
    }

    // The OpenAI wire format itself: a bare string input, and JSON errors.
    let client = reqwest::Client::new();
    let url = format!("{}/v1/embeddings", up.http_url());
    let answer: serde_json::Value = client
        .post(&url)
        .json(&serde_json::json!({"input": "rust engineer in Austin", "model": "minilm"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], "minilm");
    assert_eq!(answer["data"][0]["object"], "embedding");
    assert_eq!(answer["data"][0]["index"], 0);
    assert_eq!(
        answer["data"][0]["embedding"].as_array().map(Vec::len),
        Some(384)
    );
    for (body, status, detail) in [
        (serde_json::json!({"input": ""}), 400, "empty"),
        (serde_json::json!({"input": []}), 400, "input has 0 texts"),
        (
            serde_json::json!({"input": [1, 2]}),
            400,
            "array of strings",
        ),
        (
            serde_json::json!({"input": "x", "encoding_format": "base64"}),
            400,
            "float",
        ),
        (
            serde_json::json!({"input": "x", "model": "nope"}),
            400,
            "unknown embedding profile `nope`",
        ),
    ] {
        let response = client.post(&url).json(&body).send().await?;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: serde_json::Value = response.json().await?;
        let text = error["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{body}: {error}");
    }

    // A profile the gateway does not have is the server's 400, not retried.
    let wrong = openai_profile(&up.http_url(), "nope", 3);
    let err = lakehouse_embedding::open("remote", &wrong)
        .await
        .err()
        .ok_or("unknown model accepted")?;
    assert!(matches!(err, Error::Endpoint { status: 400, .. }), "{err}");
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_endpoint_is_named_after_the_retries() -> Result<(), BoxError> {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    drop(listener);

    let started = Instant::now();
    let err = lakehouse_embedding::open("remote", &openai_profile(&url, "minilm", 2))
        .await
        .err()
        .ok_or("a closed port answered")?;
    let message = err.to_string();
    assert!(
        matches!(err, Error::Unreachable { attempts: 3, .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("{url}/v1/embeddings"))
            && message.contains("embedding.profiles.remote.url"),
        "{message}"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    // Two backoffs (100 ms, 200 ms) happened, and no more.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    Ok(())
}
