//! Lance shards inside index builds and searches (ADR-019), in one process: a
//! profile with `vector_backend = "lance"` makes every shard a Lance dataset,
//! and a RAM ceiling between two shards' HNSW sizes makes one index of both
//! kinds, whose merged top k is the exact cosine ranking.

use std::collections::BTreeSet;

use arrow::array::{AsArray, FixedSizeListArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Int64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::TryStreamExt;
use lakehouse_catalog_raft::{IndexVersion, ShardBackend};
use lakehouse_common::config::{EmbeddingProfile, VectorBackend, DEFAULT_EMBEDDING_PROFILE};
use lakehouse_embedding::Embedders;
use lakehouse_gateway::client::GatewayClient;
use lakehouse_indexing::tasks::build::hnsw_bytes;
use lakehouse_tests::{ingest_example, BoxError, TestUp};
use object_store::ObjectStoreExt;
use serde_json::{json, Value};

const LANCE_PROFILE: &str = "minilm_lance";

async fn sql(up: &TestUp, query: &str) -> Result<Vec<RecordBatch>, BoxError> {
    Ok(lakehouse_flight_sql::client::query(&up.flight_uri(), query).await?)
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("doc_id").expect("doc_id");
            let cast = arrow::compute::cast(column, &DataType::Int64).expect("integers");
            cast.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

/// Builds `name` over the candidates' skills and returns its version.
async fn build(up: &TestUp, body: Value) -> Result<IndexVersion, BoxError> {
    let client = GatewayClient::new(&up.http_url());
    let mut events = Vec::new();
    client
        .post_streaming("/v1/indexes", &body, |e| events.push(e.clone()))
        .await?;
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["event"], "done", "{events:?}");
    let name = body["name"].as_str().ok_or("name")?;
    let index = up.running.catalog.index(name).ok_or("index recorded")?;
    Ok(index.active_version().ok_or("active version")?.clone())
}

/// Every object key under `prefix` in the bucket.
async fn listed(up: &TestUp, prefix: &str) -> Result<BTreeSet<String>, BoxError> {
    let store = up.running.catalog.bucket().store();
    Ok(store
        .list(Some(&object_store::path::Path::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lance_profile_writes_lance_shards_that_sql_searches() -> Result<(), BoxError> {
    let up = TestUp::start_with(|c| {
        c.vector.rows_per_task = 30;
        let profile = EmbeddingProfile {
            vector_backend: VectorBackend::Lance,
            ..c.embedding.profiles[DEFAULT_EMBEDDING_PROFILE].clone()
        };
        c.embedding
            .profiles
            .insert(LANCE_PROFILE.to_string(), profile);
    })
    .await?;
    ingest_example(&up, "candidates.csv", "candidates").await?;
    let version = build(
        &up,
        json!({"name": "lance_idx", "table": "candidates", "column": "skills", "profile": LANCE_PROFILE}),
    )
    .await?;
    assert_eq!(version.shards.len(), 2);
    let files = listed(&up, "indexes/lance_idx/v1").await?;
    for shard in &version.shards {
        assert_eq!(shard.backend, ShardBackend::Lance, "{shard:?}");
        assert_eq!(shard.graph, None);
        assert!(shard.data.key.ends_with(".lance"), "{shard:?}");
        let manifest = format!("{}/_versions/", shard.data.key);
        assert!(
            files.iter().any(|f| f.starts_with(&manifest)),
            "no dataset at {}: {files:?}",
            shard.data.key
        );
    }
    assert!(
        !files.iter().any(|f| f.ends_with(".hnsw")),
        "no sidecars: {files:?}"
    );

    let top = sql(
        &up,
        "SELECT doc_id, score FROM vector_search('lance_idx', 'rust engineer in Austin', 5)",
    )
    .await?;
    assert_eq!(ids(&top).len(), 5);

    // The source-table filter becomes `doc_id IN (...)`, SQL to Lance's prefilter.
    let filtered = sql(
        &up,
        "SELECT doc_id FROM vector_search('lance_idx', 'rust engineer', 4, 'city = ''Austin''')",
    )
    .await?;
    let austin = sql(
        &up,
        "SELECT candidate_id AS doc_id FROM candidates WHERE city = 'Austin'",
    )
    .await?;
    let austin: BTreeSet<i64> = ids(&austin).into_iter().collect();
    assert_eq!(austin.len(), 4);
    assert_eq!(ids(&filtered).into_iter().collect::<BTreeSet<_>>(), austin);

    // WHERE on the search's columns, numbers and text, is pushed down: still k rows.
    let pushed = sql(
        &up,
        "SELECT doc_id, chunk_text FROM vector_search('lance_idx', 'data engineer', 5) \
         WHERE doc_id > 20 AND chunk_text LIKE '%Rust%'",
    )
    .await?;
    let found = ids(&pushed);
    assert_eq!(found.len(), 5, "{found:?}");
    assert!(found.iter().all(|id| *id > 20), "{found:?}");
    for batch in &pushed {
        let texts = arrow::compute::cast(batch.column(1), &DataType::Utf8)?;
        assert!(
            texts
                .as_string::<i32>()
                .iter()
                .flatten()
                .all(|t| t.contains("Rust")),
            "{texts:?}"
        );
    }
    up.stop().await
}

/// `(doc_id, vector)` of every chunk in the Parquet part `key`.
async fn part_vectors(up: &TestUp, key: &str) -> Result<Vec<(i64, Vec<f32>)>, BoxError> {
    let store = up.running.catalog.bucket().store();
    let bytes = store
        .get(&object_store::path::Path::from(key))
        .await?
        .bytes()
        .await?;
    let mut rows = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
        let batch = batch?;
        let doc_ids = ids(std::slice::from_ref(&batch));
        let vectors = batch
            .column_by_name("vector")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
            .ok_or("vector column")?;
        for (row, doc_id) in doc_ids.into_iter().enumerate() {
            let vector = vectors.value(row);
            rows.push((
                doc_id,
                vector.as_primitive::<Float32Type>().values().to_vec(),
            ));
        }
    }
    Ok(rows)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_ram_ceiling_a_shard_is_lance_and_the_merge_is_exact() -> Result<(), BoxError> {
    // Parts of 40 and 20 chunks: only the 40-chunk one is over the ceiling.
    let (small, large) = (hnsw_bytes(20, 384, 16), hnsw_bytes(40, 384, 16));
    let up = TestUp::start_with(|c| {
        c.vector.rows_per_task = 40;
        c.vector.m = 16;
        c.vector.ram_ceiling_bytes = (small + large) / 2;
    })
    .await?;
    ingest_example(&up, "candidates.csv", "candidates").await?;
    let version = build(
        &up,
        json!({"name": "mixed_idx", "table": "candidates", "column": "skills"}),
    )
    .await?;
    let kinds: Vec<(ShardBackend, u64)> = version
        .shards
        .iter()
        .map(|s| (s.backend, s.chunks))
        .collect();
    assert_eq!(
        kinds,
        vec![(ShardBackend::Lance, 40), (ShardBackend::Hnsw, 20)]
    );
    assert!(version.shards[1].graph.is_some());

    // The exact ranking over both shards' vectors (the Lance shard's part stays next to it).
    let mut chunks = Vec::new();
    for key in [
        "indexes/mixed_idx/v1/part-00000.parquet",
        "indexes/mixed_idx/v1/part-00001.parquet",
    ] {
        chunks.extend(part_vectors(&up, key).await?);
    }
    assert_eq!(chunks.len(), 60);
    let text = "rust engineer in Austin";
    let embedders = Embedders::new(TestUp::config(up.data_dir.path()).embedding);
    let query = embedders
        .get(DEFAULT_EMBEDDING_PROFILE)
        .await?
        .embed(&[text.to_string()])
        .await?
        .vectors
        .pop()
        .ok_or("query vector")?;
    let mut exact: Vec<(f32, i64)> = chunks
        .iter()
        .map(|(id, v)| (cosine(&query, v), *id))
        .collect();
    exact.sort_by(|a, b| b.0.total_cmp(&a.0));

    let found = sql(
        &up,
        &format!(
            "SELECT doc_id, score FROM vector_search('mixed_idx', '{text}', 5) ORDER BY score DESC"
        ),
    )
    .await?;
    // Chunks of equal text tie: the top 5 must be 5 chunks with the 5 best exact
    // scores, each scored as the exact cosine.
    let scores: Vec<f32> = found
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Float32Type>().values().to_vec())
        .collect();
    let got = ids(&found);
    assert_eq!(got.len(), 5);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 5, "{got:?}");
    for ((id, score), (best, _)) in got.iter().zip(&scores).zip(&exact) {
        let truth = exact
            .iter()
            .find(|(_, exact_id)| exact_id == id)
            .map(|(s, _)| *s)
            .ok_or("a found id is a chunk")?;
        assert!((score - truth).abs() < 1e-3, "doc {id}: {score} vs {truth}");
        assert!(
            (truth - best).abs() < 1e-5,
            "doc {id} ({truth}) is not in the exact top 5: {:?}",
            &exact[..6]
        );
    }
    // Both backends contribute to the top 5 of this query, or the merge was not exercised.
    let lance_ids: BTreeSet<i64> = chunks[..40].iter().map(|(id, _)| *id).collect();
    let from_lance = got.iter().filter(|id| lance_ids.contains(id)).count();
    assert!(
        (1..5).contains(&from_lance),
        "{from_lance} of the top 5 from the Lance shard"
    );
    up.stop().await
}
