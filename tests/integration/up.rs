//! `up` in-process: ingest through HTTP, query through Flight SQL, every query a Ballista job.

use arrow::array::Int64Array;
use lakehouse_tests::{ingest_example, BoxError, TestUp};

async fn count(up: &TestUp, sql: &str) -> Result<i64, BoxError> {
    let batches = lakehouse_flight_sql::client::query(&up.flight_uri(), sql).await?;
    let batch = batches.first().ok_or("no batch")?;
    let column = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or("count is not Int64")?;
    Ok(column.value(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_run_as_ballista_jobs() -> Result<(), BoxError> {
    let up = TestUp::start().await?;
    let summary = ingest_example(&up, "candidates.csv", "candidates").await?;
    let rows = summary["rows"].as_i64().ok_or("rows missing")?;
    assert_eq!(summary["version"], 1);

    let before = up.running.job_counts().submitted;
    assert_eq!(count(&up, "SELECT count(*) FROM candidates").await?, rows);
    let odd_phones = "SELECT count(*) FROM candidates WHERE phone IS NULL OR phone = 'N/A'";
    assert!(
        count(&up, odd_phones).await? > 0,
        "phone is a string column with N/A and NULLs"
    );
    let after = up.running.job_counts().submitted;
    assert!(after >= before + 2, "jobs before {before}, after {after}");
    assert_eq!(up.running.job_counts().failed, 0);
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_errors_are_clear_and_the_server_stays_up() -> Result<(), BoxError> {
    let up = TestUp::start().await?;
    ingest_example(&up, "contracts.csv", "contracts").await?;
    for (sql, expect) in [
        ("SELEC 1", "Expected"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELECT no_such_column FROM contracts", "no_such_column"),
    ] {
        let err = lakehouse_flight_sql::client::query(&up.flight_uri(), sql)
            .await
            .err()
            .ok_or("query should fail")?
            .to_string();
        assert!(err.contains(expect), "{sql}: {err}");
    }
    assert!(count(&up, "SELECT count(*) FROM contracts").await? > 0);
    up.stop().await
}

/// Planning takes each file's size from the catalog, not from a HEAD per file
/// per query: bytes appended to a committed object afterwards are never read
/// (a HEAD would have moved the footer to the object's new end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_read_at_their_committed_size() -> Result<(), BoxError> {
    let up = TestUp::start().await?;
    let summary = ingest_example(&up, "candidates.csv", "candidates").await?;
    let rows = summary["rows"].as_i64().ok_or("rows missing")?;
    let data = up.data_dir.path().join("bucket/tables/candidates/data");
    let files = std::fs::read_dir(&data)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(files.len(), 1, "{files:?}");

    let mut file = std::fs::OpenOptions::new().append(true).open(&files[0])?;
    std::io::Write::write_all(&mut file, b"appended after the commit")?;
    drop(file);
    assert_eq!(count(&up, "SELECT count(*) FROM candidates").await?, rows);
    let names = "SELECT count(DISTINCT candidate_id) FROM candidates";
    assert!(count(&up, names).await? > 0);
    up.stop().await
}
