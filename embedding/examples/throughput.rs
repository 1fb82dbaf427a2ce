//! Chunks per second of the local all-MiniLM-L6-v2 (benches/embeddings.sh runs it in
//! release). Each chunk is 126 common words that are one WordPiece token each, so with
//! [CLS] and [SEP] it is exactly 128 tokens; `--texts-out` writes the chunks as JSON for
//! the Python sentence-transformers peer.
//!
//! `cargo run --release -p lakehouse-embedding --example throughput -- [--chunks N] [--batch B] [--texts-out PATH]`

use std::time::Instant;

use lakehouse_common::config::{EmbeddingConfig, DEFAULT_EMBEDDING_PROFILE};
use lakehouse_embedding::LocalEmbedder;

const WORDS: &str = "the data system engineer senior team build cloud service query table index \
    search vector model city remote work year experience lead design test deploy network storage \
    memory cluster node job skill python rust java code review product customer sales market \
    report plan budget travel office manager analyst support security access user file stream \
    batch scale fast small large open source platform company hire contract salary health care \
    nurse teacher driver store night shift weekend school degree language english spanish german \
    research paper science math number value price order account bank loan risk money time day \
    week month";
const WORDS_PER_CHUNK: usize = 126;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let mut chunks = 512;
    let mut batch = 32;
    let mut texts_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--chunks" => chunks = value.parse()?,
            "--batch" => batch = value.parse()?,
            "--texts-out" => texts_out = Some(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let texts = chunk_texts(chunks);
    if let Some(path) = texts_out {
        std::fs::write(path, serde_json::to_string(&texts)?)?;
    }

    let config = EmbeddingConfig {
        models_dir: std::env::var("LAKEHOUSE__EMBEDDING__MODELS_DIR").unwrap_or_default(),
        ..EmbeddingConfig::default()
    };
    let profile = config.profile(DEFAULT_EMBEDDING_PROFILE)?;
    let embedder = LocalEmbedder::load(&config.models_dir(), &profile.model, batch)?;
    embedder.embed_blocking(&texts[..batch.min(texts.len())])?; // warm-up

    let started = Instant::now();
    let embedded = embedder.embed_blocking(&texts)?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "backend": "candle",
        "chunks": texts.len(),
        "batch": batch,
        "tokens_per_chunk": embedded.tokens as f64 / texts.len() as f64,
        "seconds": seconds,
        "chunks_per_s": texts.len() as f64 / seconds,
    });
    println!("{summary}");
    Ok(())
}

/// Deterministic texts: a xorshift walk over [`WORDS`].
fn chunk_texts(count: usize) -> Vec<String> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            (0..WORDS_PER_CHUNK)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    words[(state % words.len() as u64) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
