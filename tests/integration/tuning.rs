//! `lakehouse index tune` end to end in one process: two tuning runs of a small
//! index journal their trials as new objects only (nothing listed before a run
//! changes or disappears), `GET /hnsw/trials` serves both runs newest first
//! from the in-memory ring or, past it, from the bucket, and an unknown index is a 404.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use lakehouse_gateway::client::{ClientError, GatewayClient};
use lakehouse_tests::{ingest_example, BoxError, TestUp};
use reqwest::Method;
use serde_json::{json, Value};

/// 60 candidates in three parts, so the sample spans parts.
const ROWS_PER_TASK: usize = 20;
/// Smaller than two runs' trials: the older run is read from the bucket.
const RING: usize = 20;
/// TrialSettings::default_grid(): 3 builds × 5 ef_search values.
const GRID: usize = 15;

/// Key → (e_tag, size, last_modified) of every object under the trial journal.
async fn journal_objects(up: &TestUp) -> Result<BTreeMap<String, String>, BoxError> {
    let store = up.running.catalog.bucket().store();
    let prefix = object_store::path::Path::from("journal/hnsw_trials");
    Ok(store
        .list(Some(&prefix))
        .map_ok(|m| {
            let seen = format!("{:?} {} {}", m.e_tag, m.size, m.last_modified);
            (m.location.to_string(), seen)
        })
        .try_collect()
        .await?)
}

/// The setting and time of a trial, which the journal keeps exactly.
fn key(trial: &Value) -> (u64, u64, u64, i64) {
    let n = |name: &str| trial[name].as_u64().unwrap_or(u64::MAX);
    (
        n("m"),
        n("ef_construction"),
        n("ef_search"),
        trial["at_ms"].as_i64().unwrap_or(-1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuning_journals_new_objects_and_serves_trials_newest_first() -> Result<(), BoxError> {
    let up = TestUp::start_with(|c| {
        c.vector.rows_per_task = ROWS_PER_TASK;
        c.vector.trials_ring = RING;
    })
    .await?;
    ingest_example(&up, "candidates.csv", "candidates").await?;
    let client = GatewayClient::new(&up.http_url());
    let last = client
        .post_streaming(
            "/v1/indexes",
            &json!({"name": "cand_idx", "table": "candidates", "column": "skills"}),
            |_| {},
        )
        .await?;
    assert_eq!(last["event"], "done", "{last}");

    let mut reports = Vec::new();
    let mut listings = Vec::new();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let report = client
            .call(
                Method::POST,
                "/v1/indexes/cand_idx/tune",
                Some(&json!({"sample": 60})),
            )
            .await?;
        println!("tuning took {:?}", started.elapsed());
        let trials = report["trials"].as_array().ok_or("trials")?;
        assert_eq!(trials.len(), GRID, "{report}");
        // 60 rows: a fifth are the queries, the rest the searched sample.
        assert_eq!(
            (report["vectors"].as_u64(), report["queries"].as_u64()),
            (Some(48), Some(12))
        );
        assert_eq!(
            (report["index"].as_str(), report["version"].as_u64()),
            (Some("cand_idx"), Some(1))
        );
        for trial in trials {
            let recall = trial["recall_at_10"].as_f64().ok_or("recall")?;
            assert!((0.0..=1.0).contains(&recall), "{trial}");
        }
        let best = &report["best"];
        assert!(trials.iter().any(|t| key(t) == key(best)), "{report}");
        listings.push(journal_objects(&up).await?);
        reports.push(report);
    }

    // The second run only added objects.
    let (first, second) = (&listings[0], &listings[1]);
    assert!(!first.is_empty());
    for (object, seen) in first {
        assert_eq!(
            second.get(object),
            Some(seen),
            "{object} changed or disappeared"
        );
    }
    assert!(second.len() > first.len(), "{first:?} then {second:?}");
    println!("journal objects after each run: {first:?} then {second:?}");

    // Both runs, newest first: the second run's trials in reverse, then the first's.
    let expected: Vec<_> = reports
        .iter()
        .rev()
        .flat_map(|r| {
            r["trials"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .rev()
        })
        .map(|t| key(&t))
        .collect();
    let answer = client
        .call(
            Method::GET,
            &format!("/hnsw/trials?limit={}", 2 * GRID + 5),
            None,
        )
        .await?;
    assert_eq!(answer["source"], "bucket", "the ring holds {RING} trials");
    let trials = answer["trials"].as_array().ok_or("trials")?;
    assert_eq!(trials.len(), 2 * GRID);
    assert_eq!(trials.iter().map(key).collect::<Vec<_>>(), expected);
    assert!(trials
        .iter()
        .all(|t| t["index"] == "cand_idx" && t["version"] == 1));

    let answer = client
        .call(Method::GET, "/hnsw/trials?limit=10&index=cand_idx", None)
        .await?;
    assert_eq!(answer["source"], "memory");
    let recent: Vec<_> = answer["trials"]
        .as_array()
        .ok_or("trials")?
        .iter()
        .map(key)
        .collect();
    assert_eq!(recent, expected[..10]);
    let answer = client
        .call(Method::GET, "/hnsw/trials?index=other", None)
        .await?;
    assert_eq!(
        (
            answer["source"].as_str(),
            answer["trials"].as_array().map(Vec::len)
        ),
        (Some("bucket"), Some(0))
    );

    for (method, path, body, status) in [
        (Method::POST, "/v1/indexes/nope/tune", Some(json!({})), 404),
        (
            Method::POST,
            "/v1/indexes/cand_idx/tune",
            Some(json!({"sample": 0})),
            400,
        ),
        (Method::GET, "/hnsw/trials?limit=0", None, 400),
    ] {
        match client.call(method, path, body.as_ref()).await {
            Err(ClientError::Server {
                status: got,
                detail,
                ..
            }) => {
                assert_eq!(got, status, "{path}: {detail}")
            }
            other => return Err(format!("{path}: {other:?}").into()),
        }
    }
    assert_eq!(
        journal_objects(&up).await?,
        *second,
        "refused runs journal nothing"
    );
    up.stop().await
}
