//! Vector indexes end to end in one process: `POST /v1/indexes` builds an index
//! of the demo candidates' skills as Ballista jobs, the catalog records the
//! version, SQL's `vector_search` joins with the table over Flight SQL (plain,
//! filtered, with WHERE pushed down), `/v1/search` agrees, and a refresh after
//! an append embeds only the new rows.

use std::collections::BTreeSet;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use lakehouse_catalog_raft::{IndexStatus, ShardBackend};
use lakehouse_gateway::client::GatewayClient;
use lakehouse_tests::{ingest_example, BoxError, TestUp};
use reqwest::Method;
use serde_json::{json, Value};

/// 60 candidates in tasks of 20 rows: three embed tasks, three shards.
const ROWS_PER_TASK: usize = 20;

async fn sql(up: &TestUp, query: &str) -> Result<Vec<RecordBatch>, BoxError> {
    Ok(lakehouse_flight_sql::client::query(&up.flight_uri(), query).await?)
}

fn int_column(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name(name).expect("column present");
            let cast =
                arrow::compute::cast(column, &arrow::datatypes::DataType::Int64).expect("integers");
            cast.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Posts a build and returns its NDJSON events.
async fn build(client: &GatewayClient, path: &str, body: Value) -> Result<Vec<Value>, BoxError> {
    let mut events = Vec::new();
    client
        .post_streaming(path, &body, |e| events.push(e.clone()))
        .await?;
    Ok(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_builds_as_jobs_and_searches_from_sql_and_http() -> Result<(), BoxError> {
    let up = TestUp::start_with(|c| c.vector.rows_per_task = ROWS_PER_TASK).await?;
    ingest_example(&up, "candidates.csv", "candidates").await?;
    let client = GatewayClient::new(&up.http_url());

    let events = build(
        &client,
        "/v1/indexes",
        json!({"name": "cand_idx", "table": "candidates", "column": "skills"}),
    )
    .await?;
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["event"], "done", "{events:?}");
    assert_eq!(events[0]["event"], "started");
    assert_eq!(events[0]["parts"], 3);
    assert!(
        events.iter().any(|e| e["event"] == "building"),
        "{events:?}"
    );

    // The catalog records the version: model, source, shards in the bucket.
    let index = up
        .running
        .catalog
        .index("cand_idx")
        .ok_or("index recorded")?;
    let v1 = index.active_version().ok_or("active version")?;
    assert_eq!((v1.version, v1.status), (1, IndexStatus::Ready));
    assert_eq!(v1.model, "all-MiniLM-L6-v2");
    assert_eq!(v1.dims, 384);
    assert_eq!(
        (v1.source_table.as_str(), v1.source_column.as_str()),
        ("candidates", "skills")
    );
    assert_eq!(v1.key_column.as_deref(), Some("candidate_id"));
    assert_eq!(v1.shards.len(), 3);
    assert!(v1
        .shards
        .iter()
        .all(|s| s.backend == ShardBackend::Hnsw && s.graph.is_some()));
    let chunks: u64 = v1.shards.iter().map(|s| s.chunks).sum();
    assert_eq!(chunks, 60);
    let store = up.running.catalog.bucket().store();
    let listed: BTreeSet<String> = store
        .list(Some(&object_store::path::Path::from("indexes/cand_idx/v1")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    for shard in &v1.shards {
        assert!(listed.contains(&shard.data.key), "{listed:?}");
        assert!(
            listed.contains(&shard.graph.as_ref().ok_or("graph")?.key),
            "{listed:?}"
        );
    }

    // SQL: a join with the table.
    let joined = sql(
        &up,
        "SELECT c.candidate_id, c.full_name, s.score \
         FROM vector_search('cand_idx', 'rust engineer in Austin', 5) s \
         JOIN candidates c ON c.candidate_id = s.doc_id ORDER BY s.score DESC",
    )
    .await?;
    assert_eq!(rows(&joined), 5);

    // A filter on the source table still gives k results: Austin has 4 candidates.
    let filtered = sql(
        &up,
        "SELECT s.doc_id FROM vector_search('cand_idx', 'rust engineer', 4, 'city = ''Austin''') s",
    )
    .await?;
    let austin = sql(
        &up,
        "SELECT candidate_id FROM candidates WHERE city = 'Austin'",
    )
    .await?;
    let austin: BTreeSet<i64> = int_column(&austin, "candidate_id").into_iter().collect();
    let found: BTreeSet<i64> = int_column(&filtered, "doc_id").into_iter().collect();
    assert_eq!(found, austin);

    // WHERE on the search's own columns is pushed into the shard search: still k rows.
    let pushed = sql(
        &up,
        "SELECT doc_id FROM vector_search('cand_idx', 'rust engineer', 5) WHERE doc_id > 50",
    )
    .await?;
    let ids = int_column(&pushed, "doc_id");
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(ids.iter().all(|id| *id > 50), "{ids:?}");

    // /v1/search runs the same plan.
    let top = sql(
        &up,
        "SELECT doc_id FROM vector_search('cand_idx', 'rust engineer in Austin', 5) ORDER BY score DESC",
    )
    .await?;
    let answer = client
        .call(
            Method::POST,
            "/v1/search",
            Some(&json!({"index": "cand_idx", "query": "rust engineer in Austin", "k": 5})),
        )
        .await?;
    let mut http_ids: Vec<i64> = answer["results"]
        .as_array()
        .ok_or("results")?
        .iter()
        .filter_map(|r| r["doc_id"].as_i64())
        .collect();
    // Candidates with the same skills tie on score, in any order.
    let mut sql_ids = int_column(&top, "doc_id");
    http_ids.sort_unstable();
    sql_ids.sort_unstable();
    assert_eq!(http_ids, sql_ids);

    // Bad input.
    for (query, expected) in [
        (
            "SELECT * FROM vector_search('nope', 'x', 3)",
            "no vector index named `nope`",
        ),
        (
            "SELECT * FROM vector_search('cand_idx', 'x', 0)",
            "ask for 1 to 10000",
        ),
        (
            "SELECT * FROM vector_search('cand_idx', 'x', 10001)",
            "ask for 1 to 10000",
        ),
        (
            "SELECT * FROM vector_search('cand_idx', '  ', 3)",
            "query text is empty",
        ),
        (
            "SELECT * FROM vector_search('cand_idx@9', 'x', 3)",
            "has no version 9",
        ),
    ] {
        let error = sql(&up, query).await.err().ok_or(query)?.to_string();
        assert!(error.contains(expected), "{query}: {error}");
    }
    for (body, status, expected) in [
        (
            json!({"name": "i", "table": "nope", "column": "skills"}),
            404,
            "does not exist",
        ),
        (
            json!({"name": "i", "table": "candidates", "column": "years_experience"}),
            400,
            "not text",
        ),
        (
            json!({"name": "i", "table": "candidates", "column": "nope"}),
            400,
            "has no column",
        ),
        (
            json!({"name": "i", "table": "candidates", "column": "skills", "profile": "nope"}),
            400,
            "nope",
        ),
        (
            json!({"name": "bad name", "table": "candidates", "column": "skills"}),
            400,
            "index name",
        ),
    ] {
        let error = client
            .call(Method::POST, "/v1/indexes", Some(&body))
            .await
            .err()
            .ok_or("refused")?;
        match error {
            lakehouse_gateway::client::ClientError::Server {
                status: got,
                detail,
                ..
            } => {
                assert_eq!(got, status, "{body}: {detail}");
                assert!(detail.contains(expected), "{body}: {detail}");
            }
            other => return Err(format!("{body}: {other}").into()),
        }
    }

    // Refresh after an append embeds only the new rows; both versions stay searchable.
    let more = up.data_dir.path().join("more_candidates.csv");
    std::fs::write(
        &more,
        "candidate_id,full_name,email,phone,city,years_experience,skills,available_from\n\
         61,Ada Quispe,ada@example.org,2125550101,Austin,7,\"Zig, embedded firmware\",2025-06-01\n\
         62,Bo Lindqvist,bo@example.org,2125550102,Berlin,4,\"Elixir, Phoenix LiveView\",2025-06-02\n",
    )?;
    client
        .ingest(
            &more,
            "candidates",
            &[
                ("mode", "append".to_string()),
                ("filename", "more_candidates.csv".to_string()),
            ],
            std::sync::Arc::new(|_| {}),
        )
        .await?;
    let events = build(&client, "/v1/indexes/cand_idx/refresh", json!({})).await?;
    let last = events.last().ok_or("no events")?;
    assert_eq!(last["event"], "done", "{events:?}");
    assert_eq!(last["version"]["version"], 2);
    assert_eq!(
        last["version"]["chunks_embedded"], 2,
        "only the two new rows are embedded"
    );
    let index = up.running.catalog.index("cand_idx").ok_or("index")?;
    assert_eq!(index.active, Some(2));
    assert_eq!(index.versions.len(), 2);
    let v1_hits = sql(
        &up,
        "SELECT doc_id FROM vector_search('cand_idx@1', 'firmware', 62)",
    )
    .await?;
    let v2_hits = sql(
        &up,
        "SELECT doc_id FROM vector_search('cand_idx', 'firmware', 62)",
    )
    .await?;
    assert_eq!((rows(&v1_hits), rows(&v2_hits)), (60, 62));

    // Drop one version, then the index.
    client
        .call(Method::DELETE, "/v1/indexes/cand_idx?version=1", None)
        .await?;
    assert_eq!(
        up.running
            .catalog
            .index("cand_idx")
            .map(|i| i.versions.len()),
        Some(1)
    );
    client
        .call(Method::DELETE, "/v1/indexes/cand_idx", None)
        .await?;
    assert!(up.running.catalog.index("cand_idx").is_none());
    up.stop().await
}
