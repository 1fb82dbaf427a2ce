//! Bad input through a full index build over HTTP, as a user meets it (issue 6,
//! "Bad input"): a 1 MB cell is chunked whole and its end is searchable; blank
//! and null cells are skipped and counted; profiles whose model is missing, whose
//! endpoint is down or whose dims disagree with the model are refused before any
//! task runs; an endpoint that dies during the build leaves a failed version,
//! never an active one.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use lakehouse_catalog_raft::IndexStatus;
use lakehouse_common::config::{EmbeddingBackend, EmbeddingProfile};
use lakehouse_gateway::client::{ClientError, GatewayClient};
use lakehouse_indexing::chunk::{chunk_text, content_hash};
use lakehouse_tests::{ingest_file, BoxError, TestUp};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK_SIZE: usize = 1_000;
const OVERLAP: usize = 100;
/// The end of the 1 MB cell, about two chunks long: a search must find it.
const ENDING: [&str; 12] = [
    "Lattice gauge theory puts quantum chromodynamics on a discrete grid of spacetime points.",
    "Quarks sit on the sites of the lattice and gluons live on the links between them.",
    "Monte Carlo sampling of gauge field configurations needs large supercomputers.",
    "Physicists extrapolate to the continuum limit by shrinking the lattice spacing.",
    "Hadron masses computed this way agree with experiment within a few percent.",
    "Confinement of quarks appears as an area law for large Wilson loops.",
    "Chiral symmetry breaking is studied with domain wall and overlap fermions.",
    "The sign problem blocks simulations at finite baryon density.",
    "Finite temperature runs locate the crossover to the quark gluon plasma.",
    "Algorithms such as hybrid Monte Carlo evolve the gauge fields in fictitious time.",
    "Smearing the links reduces ultraviolet noise in the measured correlators.",
    "The final figure of the thesis shows the static quark potential at three lattice spacings.",
];

/// About 1 MiB of text: a repeated sentence (its chunks repeat, so few are
/// distinct and the model runs a dozen times, not a thousand), then [`ENDING`].
/// Text that does not repeat makes as many chunks, each stored and embedded.
fn megabyte_text() -> String {
    let sentence = "The quick brown fox jumps over the lazy dog. ";
    let mut text = sentence.repeat((1 << 20) / sentence.len());
    text.push_str(&ENDING.join(" "));
    text
}

/// An `openai` profile asking `url`, with quick retries.
fn openai_profile(url: &str, dims: usize) -> EmbeddingProfile {
    EmbeddingProfile {
        backend: EmbeddingBackend::Openai,
        model: "remote-minilm".to_string(),
        url: url.to_string(),
        dims,
        retries: 2,
        timeout_ms: 2_000,
        ..EmbeddingProfile::default()
    }
}

/// A loopback address nothing listens on (it was free a moment ago).
fn closed_port() -> Result<SocketAddr, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// An OpenAI-compatible endpoint that answers exactly one request (the probe
/// made when the profile is opened) with a 384-dimensional vector, then closes.
async fn endpoint_answering_once() -> Result<String, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then as many body bytes as Content-Length says.
        loop {
            let Ok(n) = socket.read(&mut buf).await else {
                return;
            };
            if n == 0 {
                return;
            }
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        let value = 1.0 / (384f32).sqrt();
        let body = json!({"model": "remote-minilm", "data": [{"index": 0, "embedding": vec![value; 384]}]})
            .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(response.as_bytes()).await;
        let _ = socket.shutdown().await;
        // The listener is dropped here: later requests are refused.
    });
    Ok(url)
}

/// The status and detail of a refused request.
async fn refusal(client: &GatewayClient, body: &Value) -> Result<(u16, String), BoxError> {
    match client.call(Method::POST, "/v1/indexes", Some(body)).await {
        Err(ClientError::Server { status, detail, .. }) => Ok((status, detail)),
        Err(other) => Err(format!("{body}: {other}").into()),
        Ok(answer) => Err(format!("{body} was accepted: {answer}").into()),
    }
}

async fn build(client: &GatewayClient, body: Value) -> Result<Vec<Value>, BoxError> {
    let mut events = Vec::new();
    client
        .post_streaming("/v1/indexes", &body, |e| events.push(e.clone()))
        .await?;
    Ok(events)
}

async fn sql(up: &TestUp, query: &str) -> Result<Vec<RecordBatch>, BoxError> {
    Ok(lakehouse_flight_sql::client::query(&up.flight_uri(), query).await?)
}

/// Writes `docs.jsonl`: a 1 MB cell, an empty one, a null one, a blank one and a short one.
fn documents(dir: &std::path::Path, big: &str) -> Result<std::path::PathBuf, BoxError> {
    let rows = [
        json!({"doc_id": 1, "body": big}),
        json!({"doc_id": 2, "body": ""}),
        json!({"doc_id": 3, "body": null}),
        json!({"doc_id": 4, "body": " \n\t "}),
        json!({"doc_id": 5, "body": "Gardening: roses, tulips and compost"}),
    ];
    let path = dir.join("docs.jsonl");
    let lines: Vec<String> = rows.iter().map(Value::to_string).collect();
    std::fs::write(&path, lines.join("\n"))?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_build_chunks_a_megabyte_cell_skips_blank_ones_and_refuses_bad_profiles(
) -> Result<(), BoxError> {
    let down = format!("http://{}", closed_port()?);
    let flaky = endpoint_answering_once().await?;
    let up = TestUp::start_with(|c| {
        // One embed task per row: each part's chunk count is that row's.
        c.vector.rows_per_task = 1;
        let profiles = &mut c.embedding.profiles;
        profiles.insert(
            "wide".to_string(),
            EmbeddingProfile {
                dims: 768,
                ..EmbeddingProfile::default()
            },
        );
        profiles.insert("down".to_string(), openai_profile(&down, 0));
        profiles.insert("flaky".to_string(), openai_profile(&flaky, 384));
    })
    .await?;
    let big = megabyte_text();
    ingest_file(&up, &documents(up.data_dir.path(), &big)?, "docs").await?;
    let client = GatewayClient::new(&up.http_url());

    // The 1 MB cell: chunked whole, as the chunker cuts it.
    let expected = chunk_text(&big, CHUNK_SIZE, OVERLAP);
    let distinct: HashSet<u64> = expected.iter().map(|c| content_hash(c)).collect();
    assert!(expected.len() > 1_000, "{}", expected.len());
    let events = build(
        &client,
        json!({"name": "big_idx", "table": "docs", "column": "body",
               "chunk_size": CHUNK_SIZE, "overlap": OVERLAP}),
    )
    .await?;
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["event"], "done", "{last}");
    assert_eq!(events[0]["parts"], 5, "{:?}", events[0]);
    let embedded = events
        .iter()
        .find(|e| e["event"] == "embedding" && e["chunks"].as_u64() > Some(0))
        .ok_or("no final embedding event")?;
    // Every chunk is accounted for: stored, or a repeat of one of its row's chunks.
    let repeated = expected.len() - distinct.len();
    assert_eq!(embedded["chunks"], distinct.len() + 1, "{embedded}");
    assert_eq!(embedded["repeated_chunks"], repeated, "{embedded}");
    assert_eq!(
        embedded["blank_rows"], 3,
        "empty, null and blank cells: {embedded}"
    );

    let index = up.running.catalog.index("big_idx").ok_or("big_idx")?;
    let version = index.active_version().ok_or("active version")?;
    assert_eq!(version.status, IndexStatus::Ready);
    // Blank rows' parts have nothing to search: two shards, the first the 1 MB row's.
    let chunks: BTreeMap<&str, u64> = version
        .shards
        .iter()
        .map(|s| (s.data.key.rsplit('/').next().unwrap_or_default(), s.chunks))
        .collect();
    assert_eq!(
        chunks,
        BTreeMap::from([
            ("part-00000.parquet", distinct.len() as u64),
            ("part-00004.parquet", 1)
        ])
    );
    assert_eq!(version.chunks_embedded, distinct.len() as u64 + 1);

    // Its end is searchable, and SQL counts the row's chunks.
    let found = sql(
        &up,
        "SELECT doc_id, chunk_text FROM vector_search('big_idx', 'static quark potential at several lattice spacings', 3)",
    )
    .await?;
    let texts: Vec<String> = found
        .iter()
        .flat_map(|b| {
            let texts = b
                .column_by_name("chunk_text")
                .map(|c| c.as_string::<i32>().clone());
            texts
                .into_iter()
                .flat_map(|t| t.iter().flatten().map(str::to_string).collect::<Vec<_>>())
        })
        .collect();
    assert!(
        texts.iter().any(|t| t.ends_with(ENDING[ENDING.len() - 1])),
        "the cell's end is not among {texts:?}"
    );
    let counted = sql(
        &up,
        "SELECT count(*) AS n FROM vector_search('big_idx', 'quick brown fox', 10000) WHERE doc_id = 1",
    )
    .await?;
    let n = counted
        .first()
        .and_then(|b| b.column_by_name("n"))
        .map(|c| c.as_primitive::<Int64Type>().value(0));
    assert_eq!(n, Some(distinct.len() as i64));

    // Profiles refused before any task runs, and nothing recorded.
    let (status, detail) = refusal(
        &client,
        &json!({"name": "wide_idx", "table": "docs", "column": "body", "profile": "wide"}),
    )
    .await?;
    assert_eq!(status, 400, "{detail}");
    assert!(
        detail.contains("768")
            && detail.contains("384")
            && detail.contains("embedding.profiles.wide.dims"),
        "{detail}"
    );

    let started = Instant::now();
    let (status, detail) = refusal(
        &client,
        &json!({"name": "down_idx", "table": "docs", "column": "body", "profile": "down"}),
    )
    .await?;
    assert_eq!(status, 503, "{detail}");
    assert!(
        detail.contains(&format!("{down}/v1/embeddings")) && detail.contains("after 3 attempt(s)"),
        "{detail}"
    );
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(15), "{waited:?}");

    // An endpoint that dies after the probe: the build fails, naming it, and the
    // version is recorded as failed, not active, not searchable.
    let events = build(
        &client,
        json!({"name": "flaky_idx", "table": "docs", "column": "body", "profile": "flaky"}),
    )
    .await?;
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["event"], "error", "{events:?}");
    let detail = last["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("version 1 of index `flaky_idx` failed")
            && detail.contains(&format!("{flaky}/v1/embeddings")),
        "{detail}"
    );
    let index = up.running.catalog.index("flaky_idx").ok_or("flaky_idx")?;
    assert_eq!(index.active, None);
    let failed = index.version(1).ok_or("version 1")?;
    assert_eq!(failed.status, IndexStatus::Failed);
    assert!(failed.shards.is_empty());
    assert!(
        failed.error.as_deref().is_some_and(|e| e.contains(&flaky)),
        "{:?}",
        failed.error
    );
    let error = sql(&up, "SELECT * FROM vector_search('flaky_idx', 'x', 1)")
        .await
        .err()
        .ok_or("a failed index answered")?
        .to_string();
    assert!(error.contains("has no ready version"), "{error}");

    let names: Vec<String> = up
        .running
        .catalog
        .indexes()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["big_idx", "flaky_idx"]);
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_model_files_refuse_the_build_and_say_how_to_fetch_them() -> Result<(), BoxError> {
    let empty = tempfile::tempdir()?;
    let models = empty.path().to_string_lossy().into_owned();
    let up = TestUp::start_with(|c| c.embedding.models_dir = models).await?;
    let path = up.data_dir.path().join("notes.jsonl");
    std::fs::write(&path, "{\"doc_id\": 1, \"body\": \"rust engineer\"}\n")?;
    ingest_file(&up, &path, "notes").await?;
    let client = GatewayClient::new(&up.http_url());

    let started = Instant::now();
    let (status, detail) = refusal(
        &client,
        &json!({"name": "notes_idx", "table": "notes", "column": "body"}),
    )
    .await?;
    assert_eq!(status, 503, "{detail}");
    assert!(
        detail.contains("all-MiniLM-L6-v2")
            && detail.contains("is missing")
            && detail.contains("scripts/setup.sh")
            && detail.contains("embedding.models_dir"),
        "{detail}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(up.running.catalog.index("notes_idx").is_none());
    up.stop().await
}
