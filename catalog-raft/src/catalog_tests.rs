//! End-to-end tests of [`Catalog`]: real openraft, the redb log in a temp dir, a
//! local-directory bucket, and a manual clock for lease expiry.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_schema::{DataType, Field, Schema};
use lakehouse_common::clock::ManualClock;
use lakehouse_common::config::CatalogConfig;
use lakehouse_common::{Bucket, Clock, ErrorKind};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tempfile::TempDir;

use crate::model::{
    Chunking, DataFile, HnswParams, IndexShard, IndexStatus, IndexVersion, ObjectKind, Sensitivity,
    ShardBackend, TableCommit, TableMetadata, View, WriteMode,
};
use crate::{manifest, Catalog, Error};

const START_MS: i64 = 1_700_000_000_000;

struct Env {
    root: TempDir,
    log_dir: PathBuf,
    bucket_dir: PathBuf,
    clock: Arc<ManualClock>,
    config: CatalogConfig,
}

impl Env {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let log_dir = root.path().join("catalog");
        let bucket_dir = root.path().join("bucket");
        Self {
            log_dir,
            bucket_dir,
            root,
            clock: Arc::new(ManualClock::new(START_MS)),
            config: CatalogConfig {
                lease_ttl_ms: 1_000,
                lease_wait_ms: 200,
                // Small, so restarts go through a snapshot plus the log after it.
                snapshot_every_entries: 5,
                manifests_retained: 3,
                ..CatalogConfig::default()
            },
        }
    }

    fn bucket_at(dir: &Path) -> Bucket {
        Bucket::open("primary", dir.to_str().unwrap(), &Default::default()).unwrap()
    }

    fn bucket(&self) -> Bucket {
        Self::bucket_at(&self.bucket_dir)
    }

    async fn open(&self) -> Catalog {
        Catalog::open(
            &self.config,
            &self.log_dir,
            self.bucket(),
            self.clock.clone(),
        )
        .await
        .unwrap()
    }
}

fn metadata(owner: &str) -> TableMetadata {
    TableMetadata {
        owner: owner.to_string(),
        sensitivity: Sensitivity::Confidential,
        lineage: "ats → ingest → candidates".to_string(),
        freshness_sla: "24h".to_string(),
        description: "Candidates, one row each; names in UTF-8 (José, Zoë)".to_string(),
        tags: vec!["hr".to_string(), "pii".to_string()],
        metadata_incomplete: false,
    }
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("phone", DataType::Utf8, true),
    ])
}

/// Puts a small object at `key` and returns it as a data file.
async fn data_file(bucket: &Bucket, key: &str, rows: u64) -> DataFile {
    bucket
        .store()
        .put(
            &ObjectPath::from(key),
            PutPayload::from_static(b"PAR1 not really"),
        )
        .await
        .unwrap();
    DataFile {
        object: bucket.object_ref(key),
        size_bytes: 15,
        row_count: rows,
    }
}

fn commit(
    table: &str,
    mode: WriteMode,
    schema: Schema,
    files: Vec<DataFile>,
    metadata: Option<TableMetadata>,
) -> TableCommit {
    TableCommit {
        table: table.to_string(),
        mode,
        schema,
        new_files: files,
        metadata,
    }
}

async fn exists(bucket: &Bucket, key: &str) -> bool {
    bucket.store().head(&ObjectPath::from(key)).await.is_ok()
}

#[tokio::test]
async fn commit_with_stale_fencing_token_is_refused() {
    let env = Env::new();
    let catalog = env.open().await;
    let bucket = catalog.bucket().clone();

    let a = catalog
        .acquire_lease("candidates", "ingest-a")
        .await
        .unwrap();
    // A stalls past its lease; B takes the table over.
    env.clock.advance_ms(1_001);
    let b = catalog
        .acquire_lease("candidates", "ingest-b")
        .await
        .unwrap();
    assert!(b.token > a.token, "tokens strictly increase");

    let file = data_file(&bucket, "tables/candidates/a-1.parquet", 3).await;
    let err = catalog
        .commit(
            &a,
            commit(
                "candidates",
                WriteMode::Create,
                schema(),
                vec![file],
                Some(metadata("ops")),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::StaleToken { token, current: Some(current), .. } if token == a.token && current == b.token),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let message = err.to_string();
    assert!(
        message.contains("candidates") && message.contains(&a.token.to_string()),
        "{message}"
    );
    assert!(catalog.table("candidates").is_none(), "nothing committed");

    let file = data_file(&bucket, "tables/candidates/b-1.parquet", 3).await;
    let v1 = catalog
        .commit(
            &b,
            commit(
                "candidates",
                WriteMode::Create,
                schema(),
                vec![file],
                Some(metadata("ops")),
            ),
        )
        .await
        .unwrap();
    assert_eq!((v1.version, v1.fencing_token), (1, b.token));

    // B's lease expires too: its next commit is refused as expired, not stale.
    env.clock.advance_ms(1_000);
    let file = data_file(&bucket, "tables/candidates/b-2.parquet", 1).await;
    let err = catalog
        .commit(
            &b,
            commit("candidates", WriteMode::Append, schema(), vec![file], None),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseExpired { .. }), "{err}");
    catalog.shutdown().await.unwrap();
}

#[tokio::test]
async fn held_lease_makes_a_second_writer_wait_then_fail_naming_the_holder() {
    let env = Env::new();
    let catalog = env.open().await;
    let a = catalog
        .acquire_lease("contracts", "ingest-a")
        .await
        .unwrap();

    let started = Instant::now();
    let err = catalog
        .acquire_lease("contracts", "ingest-b")
        .await
        .unwrap_err();
    assert!(
        started.elapsed().as_millis() >= u128::from(env.config.lease_wait_ms),
        "waited for the lease first"
    );
    match &err {
        Error::LeaseHeld {
            table,
            holder,
            token,
            expires_in_ms,
        } => {
            assert_eq!(
                (table.as_str(), holder.as_str(), *token),
                ("contracts", "ingest-a", a.token)
            );
            assert_eq!(*expires_in_ms, 1_000, "the manual clock did not move");
        }
        other => panic!("expected LeaseHeld, got {other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("ingest-a"), "{err}");

    // A waiting writer gets the lease as soon as the holder releases it.
    let waiter = {
        let catalog = catalog.clone();
        tokio::spawn(async move { catalog.acquire_lease("contracts", "ingest-c").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    catalog.release_lease(&a).await.unwrap();
    let c = waiter.await.unwrap().unwrap();
    assert_eq!(c.holder, "ingest-c");
    assert!(c.token > a.token);

    // Releasing a lease that was taken over does not free the new holder's lease.
    catalog.release_lease(&a).await.unwrap();
    assert!(matches!(
        catalog.acquire_lease("contracts", "ingest-d").await,
        Err(Error::LeaseHeld { .. })
    ));

    // Renewal extends a live lease.
    env.clock.advance_ms(900);
    let renewed = catalog.renew_lease(&c).await.unwrap();
    assert_eq!(renewed.expires_at_ms, START_MS + 900 + 1_000);
    env.clock.advance_ms(500);
    assert!(matches!(
        catalog.acquire_lease("contracts", "ingest-d").await,
        Err(Error::LeaseHeld { .. })
    ));

    let bad = catalog.acquire_lease("../x", "ingest").await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput, "{bad}");
    catalog.shutdown().await.unwrap();
}

#[tokio::test]
async fn versions_count_up_append_adds_replace_swaps_schema_checked() {
    let env = Env::new();
    let catalog = env.open().await;
    let bucket = catalog.bucket().clone();
    let lease = catalog.acquire_lease("placements", "ingest").await.unwrap();

    let missing = catalog
        .commit(
            &lease,
            commit("placements", WriteMode::Create, schema(), vec![], None),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing, Error::MissingMetadata { .. }),
        "{missing}"
    );
    let not_found = catalog
        .commit(
            &lease,
            commit("placements", WriteMode::Append, schema(), vec![], None),
        )
        .await
        .unwrap_err();
    assert_eq!(not_found.kind(), ErrorKind::NotFound, "{not_found}");

    let f1 = data_file(&bucket, "tables/placements/1.parquet", 10).await;
    let f2 = data_file(&bucket, "tables/placements/2.parquet", 5).await;
    let v1 = catalog
        .commit(
            &lease,
            commit(
                "placements",
                WriteMode::Create,
                schema(),
                vec![f1.clone(), f2.clone()],
                Some(metadata("ops")),
            ),
        )
        .await
        .unwrap();
    assert_eq!((v1.version, v1.files.len(), v1.row_count), (1, 2, 15));

    let exists = catalog
        .commit(
            &lease,
            commit(
                "placements",
                WriteMode::Create,
                schema(),
                vec![],
                Some(metadata("ops")),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(exists.kind(), ErrorKind::AlreadyExists, "{exists}");

    let f3 = data_file(&bucket, "tables/placements/3.parquet", 1).await;
    let v2 = catalog
        .commit(
            &lease,
            commit(
                "placements",
                WriteMode::Append,
                schema(),
                vec![f3.clone()],
                None,
            ),
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.files, vec![f1, f2, f3]);
    assert_eq!(v2.row_count, 16);

    let other = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("phone", DataType::Int64, true),
    ]);
    let mismatch = catalog
        .commit(
            &lease,
            commit("placements", WriteMode::Append, other.clone(), vec![], None),
        )
        .await
        .unwrap_err();
    assert_eq!(mismatch.kind(), ErrorKind::InvalidInput);
    assert!(
        mismatch
            .to_string()
            .contains("column `phone` is Utf8 in the table but Int64"),
        "{mismatch}"
    );

    let f4 = data_file(&bucket, "tables/placements/4.parquet", 7).await;
    let v3 = catalog
        .commit(
            &lease,
            commit(
                "placements",
                WriteMode::Replace,
                other.clone(),
                vec![f4.clone()],
                Some(metadata("finance")),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        (v3.version, v3.files.clone(), v3.row_count),
        (3, vec![f4], 7)
    );

    let table = catalog.table("placements").unwrap();
    assert_eq!(
        table.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(table.current().unwrap().schema, other);
    assert_eq!(table.metadata.owner, "finance");

    let updated = catalog
        .update_metadata("placements", metadata("legal"))
        .await
        .unwrap();
    assert_eq!(updated.metadata.owner, "legal");
    assert_eq!(catalog.tables().len(), 1);

    // Each change wrote a manifest; only the newest few are kept.
    let manifests = manifest::list(&bucket).await.unwrap();
    assert_eq!(manifests.len(), env.config.manifests_retained);
    assert_eq!(
        manifests.last().unwrap().0,
        catalog.metrics().catalog_version
    );
    catalog.shutdown().await.unwrap();
}

/// Builds a catalog with two tables, a few versions, changed metadata and a released lease.
async fn populate(catalog: &Catalog) {
    let bucket = catalog.bucket().clone();
    for (table, owner) in [("candidates", "ops"), ("contracts", "legal")] {
        let lease = catalog.acquire_lease(table, "ingest").await.unwrap();
        let f = data_file(&bucket, &format!("tables/{table}/1.parquet"), 2).await;
        catalog
            .commit(
                &lease,
                commit(
                    table,
                    WriteMode::Create,
                    schema(),
                    vec![f],
                    Some(metadata(owner)),
                ),
            )
            .await
            .unwrap();
        let f = data_file(&bucket, &format!("tables/{table}/2.parquet"), 3).await;
        catalog
            .commit(
                &lease,
                commit(table, WriteMode::Append, schema(), vec![f], None),
            )
            .await
            .unwrap();
        catalog.release_lease(&lease).await.unwrap();
    }
    let mut changed = metadata("people-team");
    changed.tags.push("gdpr".to_string());
    catalog
        .update_metadata("candidates", changed)
        .await
        .unwrap();
}

#[tokio::test]
async fn restart_keeps_tables_versions_and_metadata() {
    let env = Env::new();
    let catalog = env.open().await;
    populate(&catalog).await;
    let before = catalog.tables();
    let last_token = catalog
        .acquire_lease("candidates", "probe")
        .await
        .unwrap()
        .token;
    let metrics = catalog.metrics();
    assert!(
        metrics.snapshot_index.is_some(),
        "a snapshot was built: {metrics:?}"
    );
    // Dropped without `shutdown`, as a crashing caller would: Raft stops on its own
    // and the reopen waits for the log file to be released.
    drop(catalog);

    // An empty bucket proves the state comes from the local log, not a manifest.
    let other_bucket = env.root.path().join("other-bucket");
    let catalog = Catalog::open(
        &env.config,
        &env.log_dir,
        Env::bucket_at(&other_bucket),
        env.clock.clone(),
    )
    .await
    .unwrap();
    assert_eq!(catalog.tables(), before);
    assert_eq!(
        catalog.table("candidates").unwrap().metadata.owner,
        "people-team"
    );
    // The probe's lease survived the restart too.
    env.clock.advance_ms(1_001);
    assert!(
        catalog
            .acquire_lease("candidates", "next")
            .await
            .unwrap()
            .token
            > last_token
    );
    // The local state was newer than that bucket's (none): it was written there.
    assert!(!manifest::list(catalog.bucket()).await.unwrap().is_empty());
    catalog.shutdown().await.unwrap();
}

#[tokio::test]
async fn wiped_local_dir_is_restored_from_the_bucket() {
    let env = Env::new();
    let catalog = env.open().await;
    populate(&catalog).await;
    let before = catalog.tables();
    let lease = catalog
        .acquire_lease("contracts", "crashed-writer")
        .await
        .unwrap();
    catalog.shutdown().await.unwrap();
    drop(catalog);

    std::fs::remove_dir_all(&env.log_dir).unwrap();
    let catalog = env.open().await;
    assert_eq!(
        catalog.tables(),
        before,
        "every table, version and metadata field is back"
    );
    // Leases and the token counter came back: the old writer stays fenced off.
    assert!(matches!(
        catalog.acquire_lease("contracts", "other").await,
        Err(Error::LeaseHeld { .. })
    ));
    env.clock.advance_ms(1_001);
    let next = catalog.acquire_lease("contracts", "other").await.unwrap();
    assert!(next.token > lease.token);
    let err = catalog
        .commit(
            &lease,
            commit("contracts", WriteMode::Append, schema(), vec![], None),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StaleToken { .. }), "{err}");
    // The data files survived the start-up garbage collection.
    for key in ["tables/candidates/1.parquet", "tables/contracts/2.parquet"] {
        assert!(exists(catalog.bucket(), key).await, "{key}");
    }
    catalog.shutdown().await.unwrap();
}

/// Every node's disk lost: the seed of a new cluster, on an empty log, starts
/// from the bucket's newest manifest, and versions keep counting from it.
#[tokio::test]
async fn new_cluster_seed_restores_the_bucket_catalog() {
    let env = Env::new();
    let catalog = env.open().await;
    populate(&catalog).await;
    let before = catalog.tables();
    let old_version = catalog.metrics().catalog_version;
    catalog.shutdown().await.unwrap();
    drop(catalog);
    std::fs::remove_dir_all(&env.log_dir).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = crate::CatalogNode::start(
        &env.config,
        &env.log_dir,
        env.bucket(),
        env.clock.clone(),
        listener,
    )
    .await
    .unwrap();
    // Restored before `start` returns: no client can see the empty catalog.
    assert_eq!(node.catalog.tables(), before);
    assert_eq!(node.catalog.metrics().catalog_version, old_version);

    let lease = node
        .catalog
        .acquire_lease("contracts", "after-restore")
        .await
        .unwrap();
    let f = data_file(&env.bucket(), "tables/contracts/3.parquet", 1).await;
    let version = node
        .catalog
        .commit(
            &lease,
            commit("contracts", WriteMode::Append, schema(), vec![f], None),
        )
        .await
        .unwrap();
    assert_eq!(version.version, 3, "table versions continue after 1 and 2");
    let newest = manifest::list(&env.bucket()).await.unwrap();
    let (newest, _) = newest.last().unwrap();
    assert!(
        *newest > old_version,
        "the next manifest ({newest}) follows the restored one ({old_version})"
    );
    node.stop().await.unwrap();
}

/// A bucket whose manifests cannot be read fails the seed's bootstrap before
/// its log is initialized, so the next start, with the bucket readable again,
/// still restores (rather than rejoining its own one-node cluster empty).
#[tokio::test]
async fn unreadable_bucket_fails_the_bootstrap_and_leaves_the_log_empty() {
    let env = Env::new();
    let catalog = env.open().await;
    populate(&catalog).await;
    let before = catalog.tables();
    catalog.shutdown().await.unwrap();
    drop(catalog);
    std::fs::remove_dir_all(&env.log_dir).unwrap();

    // Only garbage where the manifests were.
    let manifests = env.bucket_dir.join("_catalog/manifests");
    let aside = env.root.path().join("manifests-aside");
    std::fs::rename(&manifests, &aside).unwrap();
    let garbage = ObjectPath::from(manifest::manifest_key(1).as_str());
    let store = env.bucket().store().clone();
    store
        .put(&garbage, PutPayload::from_static(b"not parquet"))
        .await
        .unwrap();
    let start = || async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        crate::CatalogNode::start(
            &env.config,
            &env.log_dir,
            env.bucket(),
            env.clock.clone(),
            listener,
        )
        .await
    };
    let err = start()
        .await
        .err()
        .expect("bootstrap over unreadable manifests");
    assert!(matches!(err, Error::Manifest { .. }), "{err}");

    std::fs::remove_dir_all(&manifests).unwrap();
    std::fs::rename(&aside, &manifests).unwrap();
    let node = start().await.unwrap();
    assert_eq!(node.catalog.tables(), before);
    node.stop().await.unwrap();
}

fn view(name: &str, sql: &str) -> View {
    View {
        name: name.to_string(),
        sql: sql.to_string(),
        schema: schema(),
        owner: "analyst".to_string(),
        created_at_ms: 0,
    }
}

#[tokio::test]
async fn views_share_the_table_namespace_and_come_back_from_the_bucket() {
    let env = Env::new();
    let catalog = env.open().await;
    populate(&catalog).await;

    let v = view("busy", "CREATE VIEW busy AS SELECT id FROM candidates");
    catalog.create_view(v.clone(), false).await.unwrap();
    let stored = catalog.view("busy").unwrap();
    assert_eq!(stored.created_at_ms, START_MS, "leader-stamped");
    let err = catalog.create_view(v.clone(), false).await.unwrap_err();
    assert!(matches!(err, Error::ViewExists { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let replaced = view(
        "busy",
        "CREATE VIEW busy AS SELECT id, phone FROM candidates",
    );
    catalog.create_view(replaced.clone(), true).await.unwrap();
    assert_eq!(catalog.view("busy").unwrap().sql, replaced.sql);

    // A view cannot take a table's name, nor a new table a view's.
    let err = catalog
        .create_view(
            view("candidates", "CREATE VIEW candidates AS SELECT 1"),
            true,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NameTaken {
                taken_by: ObjectKind::Table,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("table"), "{err}");
    let lease = catalog.acquire_lease("busy", "ctas").await.unwrap();
    let err = catalog
        .commit(
            &lease,
            commit(
                "busy",
                WriteMode::Create,
                schema(),
                vec![],
                Some(metadata("ops")),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NameTaken {
                taken_by: ObjectKind::View,
                ..
            }
        ),
        "{err}"
    );
    catalog.release_lease(&lease).await.unwrap();

    catalog
        .create_view(view("idle", "CREATE VIEW idle AS SELECT 2"), false)
        .await
        .unwrap();
    catalog.drop_view("idle").await.unwrap();
    let err = catalog.drop_view("idle").await.unwrap_err();
    assert!(matches!(err, Error::ViewNotFound { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);

    let before = catalog.views();
    assert_eq!(before.len(), 1);
    catalog.shutdown().await.unwrap();
    drop(catalog);
    std::fs::remove_dir_all(&env.log_dir).unwrap();
    let catalog = env.open().await;
    assert_eq!(catalog.views(), before, "views are in the manifest");
    catalog.shutdown().await.unwrap();
}

#[tokio::test]
async fn garbage_collection_removes_only_unreferenced_files() {
    let env = Env::new();
    let catalog = env.open().await;
    let bucket = catalog.bucket().clone();
    populate(&catalog).await;

    // A writer that crashed before its commit, a dropped table, and a writer mid-write.
    data_file(&bucket, "tables/candidates/crashed.parquet", 1).await;
    let lease = catalog.acquire_lease("contracts", "dropper").await.unwrap();
    catalog.drop_table(&lease).await.unwrap();
    catalog.release_lease(&lease).await.unwrap();
    let writing = catalog.acquire_lease("placements", "writer").await.unwrap();
    data_file(&bucket, "tables/placements/inflight.parquet", 1).await;

    let removed = catalog.collect_garbage().await.unwrap();
    assert_eq!(
        removed, 3,
        "crashed.parquet and the two files of the dropped table"
    );
    assert!(!exists(&bucket, "tables/candidates/crashed.parquet").await);
    assert!(!exists(&bucket, "tables/contracts/1.parquet").await);
    assert!(exists(&bucket, "tables/candidates/1.parquet").await);
    assert!(exists(&bucket, "tables/candidates/2.parquet").await);
    assert!(
        exists(&bucket, "tables/placements/inflight.parquet").await,
        "live lease protects it"
    );

    // Once the writer's lease is gone, a start removes what it left behind.
    catalog.release_lease(&writing).await.unwrap();
    catalog.shutdown().await.unwrap();
    drop(catalog);
    let catalog = env.open().await;
    assert!(!exists(&bucket, "tables/placements/inflight.parquet").await);
    assert!(exists(&bucket, "tables/candidates/2.parquet").await);
    assert_eq!(catalog.collect_garbage().await.unwrap(), 0);
    catalog.shutdown().await.unwrap();
}

#[tokio::test]
async fn empty_catalog_never_deletes_data_it_does_not_know() {
    let env = Env::new();
    data_file(&env.bucket(), "tables/orphans/x.parquet", 1).await;
    let catalog = env.open().await;
    assert_eq!(catalog.collect_garbage().await.unwrap(), 0);
    assert!(exists(catalog.bucket(), "tables/orphans/x.parquet").await);
    let metrics = catalog.metrics();
    assert_eq!(metrics.leader_id, Some(env.config.node_id));
    catalog.shutdown().await.unwrap();
}

/// What a build asks for; the catalog numbers it and fills in the rest.
fn index_recipe(source_table: &str) -> IndexVersion {
    IndexVersion {
        version: 0,
        profile: "local".to_string(),
        model: "all-MiniLM-L6-v2".to_string(),
        model_version: "2024-01".to_string(),
        dims: 384,
        source_table: source_table.to_string(),
        source_column: "phone".to_string(),
        key_column: Some("id".to_string()),
        source_table_version: 2,
        chunking: Chunking {
            chunk_size: 512,
            overlap: 64,
        },
        hnsw: HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
        },
        shards: Vec::new(),
        status: IndexStatus::Building,
        error: None,
        chunks_embedded: 0,
        created_at_ms: 0,
    }
}

/// An HNSW shard (Parquet and its graph) under `indexes/<index>/v<version>/`, written to the bucket.
async fn hnsw_shard(bucket: &Bucket, index: &str, version: u64, n: u32) -> IndexShard {
    let dir = format!("indexes/{index}/v{version}");
    let data = data_file(bucket, &format!("{dir}/shard-{n}.parquet"), 4).await;
    let graph = data_file(bucket, &format!("{dir}/shard-{n}.hnsw"), 0).await;
    IndexShard {
        data: data.object,
        graph: Some(graph.object),
        backend: ShardBackend::Hnsw,
        chunks: 4,
    }
}

/// A Lance shard: a dataset directory of several objects.
async fn lance_shard(bucket: &Bucket, index: &str, version: u64) -> IndexShard {
    let dir = format!("indexes/{index}/v{version}/shard-9.lance");
    for file in [
        "_versions/1.manifest",
        "data/a.lance",
        "_indices/ivf/index.idx",
    ] {
        data_file(bucket, &format!("{dir}/{file}"), 0).await;
    }
    IndexShard {
        data: bucket.object_ref(dir),
        graph: None,
        backend: ShardBackend::Lance,
        chunks: 6,
    }
}

#[tokio::test]
async fn index_versions_build_activate_drop_and_come_back_from_the_bucket() {
    let env = Env::new();
    let catalog = env.open().await;
    let bucket = catalog.bucket().clone();
    populate(&catalog).await;

    let err = catalog
        .create_index_version("cand_idx", index_recipe("nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::TableNotFound { table } if table == "nope"),
        "{err}"
    );
    let err = catalog
        .create_index_version("Bad-Name", index_recipe("candidates"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(catalog.indexes().is_empty());

    let before = env.clock.now_ms();
    let v1 = catalog
        .create_index_version("cand_idx", index_recipe("candidates"))
        .await
        .unwrap();
    env.clock.advance_ms(5);
    let v2 = catalog
        .create_index_version("cand_idx", index_recipe("candidates"))
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v1.status, IndexStatus::Building);
    assert_eq!(v1.created_at_ms, before);
    assert_eq!(v2.created_at_ms, before + 5);

    let shards = vec![
        hnsw_shard(&bucket, "cand_idx", 1, 0).await,
        lance_shard(&bucket, "cand_idx", 1).await,
    ];
    let ready = catalog
        .finish_index_version("cand_idx", 1, shards.clone(), 10, None)
        .await
        .unwrap();
    assert_eq!(ready.status, IndexStatus::Ready);
    assert_eq!(ready.shards, shards);
    let failed = catalog
        .finish_index_version(
            "cand_idx",
            2,
            vec![],
            3,
            Some("the model server went away".into()),
        )
        .await
        .unwrap();
    assert_eq!(failed.status, IndexStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("the model server went away"));

    let index = catalog.index("cand_idx").unwrap();
    assert_eq!(index.active, Some(1), "the first ready version is active");
    assert_eq!(index.versions, vec![ready.clone(), failed.clone()]);
    assert_eq!(catalog.indexes(), vec![index.clone()]);

    // Refusals name what is wrong and carry their kind.
    let err = catalog
        .activate_index_version("cand_idx", 2)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::IndexVersionNotReady {
                status: IndexStatus::Failed,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("is failed, not ready"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let err = catalog
        .finish_index_version("cand_idx", 1, vec![], 0, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::IndexVersionNotBuilding { .. }),
        "{err}"
    );
    let err = catalog
        .activate_index_version("cand_idx", 7)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::IndexVersionNotFound { version: 7, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = catalog.drop_index("other_idx", None).await.unwrap_err();
    assert!(matches!(&err, Error::IndexNotFound { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    for (e, code) in [
        (
            Error::IndexNotFound { index: "i".into() },
            tonic::Code::NotFound,
        ),
        (
            Error::IndexVersionNotReady {
                index: "i".into(),
                version: 1,
                status: IndexStatus::Building,
            },
            tonic::Code::FailedPrecondition,
        ),
    ] {
        assert_eq!(crate::client::to_status(&e).code(), code, "{e}");
    }

    let v3 = catalog
        .create_index_version("cand_idx", index_recipe("candidates"))
        .await
        .unwrap();
    let shard = hnsw_shard(&bucket, "cand_idx", 3, 0).await;
    catalog
        .finish_index_version("cand_idx", v3.version, vec![shard], 4, None)
        .await
        .unwrap();
    catalog.activate_index_version("cand_idx", 3).await.unwrap();
    assert_eq!(catalog.index("cand_idx").unwrap().active, Some(3));

    // The bucket alone brings every index version back.
    let before = catalog.indexes();
    catalog.shutdown().await.unwrap();
    drop(catalog);
    std::fs::remove_dir_all(&env.log_dir).unwrap();
    let catalog = env.open().await;
    assert_eq!(catalog.indexes(), before, "indexes are in the manifest");
    for key in [
        "indexes/cand_idx/v1/shard-0.hnsw",
        "indexes/cand_idx/v1/shard-9.lance/data/a.lance",
        "indexes/cand_idx/v3/shard-0.parquet",
    ] {
        assert!(exists(&bucket, key).await, "start-up gc kept {key}");
    }

    // The active version goes: the newest remaining ready one (1; 2 failed) takes over.
    catalog.drop_index("cand_idx", Some(3)).await.unwrap();
    assert_eq!(catalog.index("cand_idx").unwrap().active, Some(1));
    catalog.drop_index("cand_idx", Some(1)).await.unwrap();
    assert_eq!(catalog.index("cand_idx").unwrap().active, None);
    catalog.drop_index("cand_idx", Some(2)).await.unwrap();
    assert!(
        catalog.index("cand_idx").is_none(),
        "the last version took the index"
    );
    catalog.shutdown().await.unwrap();
}

#[tokio::test]
async fn garbage_collection_keeps_index_versions_and_takes_dropped_ones() {
    let env = Env::new();
    let catalog = env.open().await;
    let bucket = catalog.bucket().clone();
    populate(&catalog).await;

    // v1 ready with an HNSW and a Lance shard, plus a file no shard names
    // (a graph's companion); v2 still building, partway through; v3 ready,
    // reusing v1's HNSW shard.
    for _ in 0..3 {
        catalog
            .create_index_version("cand_idx", index_recipe("candidates"))
            .await
            .unwrap();
    }
    let hnsw = hnsw_shard(&bucket, "cand_idx", 1, 0).await;
    let lance = lance_shard(&bucket, "cand_idx", 1).await;
    data_file(&bucket, "indexes/cand_idx/v1/shard-0.hnsw.data", 0).await;
    catalog
        .finish_index_version("cand_idx", 1, vec![hnsw.clone(), lance], 10, None)
        .await
        .unwrap();
    data_file(&bucket, "indexes/cand_idx/v2/shard-0.parquet", 4).await;
    let own = hnsw_shard(&bucket, "cand_idx", 3, 1).await;
    catalog
        .finish_index_version("cand_idx", 3, vec![hnsw, own], 8, None)
        .await
        .unwrap();
    // Not laid out as a version's file: left alone.
    data_file(&bucket, "indexes/cand_idx/README", 0).await;

    assert_eq!(catalog.collect_garbage().await.unwrap(), 0);

    catalog.drop_index("cand_idx", Some(1)).await.unwrap();
    let removed = catalog.collect_garbage().await.unwrap();
    assert_eq!(removed, 4, "v1's Lance dataset and the graph companion");
    for kept in [
        "indexes/cand_idx/v1/shard-0.parquet",
        "indexes/cand_idx/v1/shard-0.hnsw",
        "indexes/cand_idx/v2/shard-0.parquet",
        "indexes/cand_idx/v3/shard-1.parquet",
        "indexes/cand_idx/README",
    ] {
        assert!(exists(&bucket, kept).await, "{kept}");
    }
    assert!(!exists(&bucket, "indexes/cand_idx/v1/shard-9.lance/data/a.lance").await);
    assert!(!exists(&bucket, "indexes/cand_idx/v1/shard-0.hnsw.data").await);

    catalog.drop_index("cand_idx", None).await.unwrap();
    assert_eq!(catalog.collect_garbage().await.unwrap(), 5);
    assert!(exists(&bucket, "indexes/cand_idx/README").await);
    assert!(exists(&bucket, "tables/candidates/1.parquet").await);
    catalog.shutdown().await.unwrap();
}

/// Other crates hold a `Catalog` in shared server state and await its futures in
/// spawned tasks: both must be `Send`. Checked at compile time.
#[allow(dead_code)]
fn catalog_and_its_futures_are_send(catalog: &Catalog, lease: &crate::Lease, commit: TableCommit) {
    fn send<T: Send>(_: T) {}
    fn send_sync<T: Send + Sync + Clone + 'static>() {}
    send_sync::<Catalog>();
    send(Catalog::open(
        &CatalogConfig::default(),
        Path::new("."),
        Env::bucket_at(Path::new(".")),
        Arc::new(ManualClock::new(0)),
    ));
    send(catalog.acquire_lease("t", "h"));
    send(catalog.renew_lease(lease));
    send(catalog.release_lease(lease));
    send(catalog.commit(lease, commit));
    send(catalog.drop_table(lease));
    send(catalog.update_metadata("t", metadata("o")));
    send(catalog.collect_garbage());
    send(catalog.create_index_version("i", index_recipe("t")));
    send(catalog.finish_index_version("i", 1, Vec::new(), 0, None));
    send(catalog.activate_index_version("i", 1));
    send(catalog.drop_index("i", None));
    send(catalog.shutdown());
}

/// The remote backend against a real catalog node on port 0: a change made
/// through it is in its copy when the call returns, another writer's change
/// arrives over Watch, and a held lease makes it wait as the local one does.
#[tokio::test]
async fn remote_handle_reads_its_writes_and_follows_other_writers() {
    let env = Env::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = crate::CatalogNode::start(
        &env.config,
        &env.log_dir,
        env.bucket(),
        env.clock.clone(),
        listener,
    )
    .await
    .unwrap();
    let remote = Catalog::connect(&[node.addr.to_string()], env.bucket(), &env.config)
        .await
        .unwrap();

    let lease = remote.acquire_lease("people", "gateway-a").await.unwrap();
    let file = data_file(&env.bucket(), "tables/people/a.parquet", 3).await;
    let version = remote
        .commit(
            &lease,
            commit(
                "people",
                WriteMode::Create,
                schema(),
                vec![file],
                Some(metadata("hr")),
            ),
        )
        .await
        .unwrap();
    let read = remote.table("people").expect("own commit visible at once");
    assert_eq!(read.versions.last().unwrap().version, version.version);
    assert_eq!(
        remote.metrics().catalog_version,
        node.catalog.metrics().catalog_version
    );

    // Another writer (the node's own handle): its change arrives over Watch.
    node.catalog
        .create_view(view("adults", "SELECT * FROM people"), false)
        .await
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while remote.view("adults").is_none() {
        assert!(
            Instant::now() < deadline,
            "the view never reached the remote copy"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // The lease is held: a second writer waits lease_wait_ms, then is refused.
    let started = Instant::now();
    let err = remote
        .acquire_lease("people", "gateway-b")
        .await
        .unwrap_err();
    assert!(started.elapsed().as_millis() >= u128::from(env.config.lease_wait_ms));
    assert!(
        matches!(&err, Error::LeaseHeld { holder, .. } if holder == "gateway-a"),
        "{err}"
    );
    remote.release_lease(&lease).await.unwrap();

    // Index versions: written through the leader, read from the copy at once;
    // refusals come back as the same errors.
    let v1 = remote
        .create_index_version("people_idx", index_recipe("people"))
        .await
        .unwrap();
    assert_eq!(
        remote.index("people_idx").unwrap().versions,
        vec![v1.clone()]
    );
    let shard = hnsw_shard(&env.bucket(), "people_idx", v1.version, 0).await;
    let ready = remote
        .finish_index_version("people_idx", v1.version, vec![shard], 3, None)
        .await
        .unwrap();
    assert_eq!(
        remote.index("people_idx").unwrap().active_version(),
        Some(&ready)
    );
    let v2 = remote
        .create_index_version("people_idx", index_recipe("people"))
        .await
        .unwrap();
    let err = remote
        .activate_index_version("people_idx", v2.version)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::IndexVersionNotReady {
                status: IndexStatus::Building,
                ..
            }
        ),
        "{err}"
    );
    remote
        .drop_index("people_idx", Some(v2.version))
        .await
        .unwrap();
    assert_eq!(remote.indexes(), node.catalog.indexes());
    assert_eq!(remote.index("people_idx").unwrap().versions, vec![ready]);

    remote.set_grant("analyst", "people", true).await.unwrap();
    assert!(remote.grants()["analyst"].contains("people"));
    // Forwarded to the leader, which sees the committed file as referenced.
    assert_eq!(remote.collect_garbage().await.unwrap(), 0);
    assert!(exists(&env.bucket(), "tables/people/a.parquet").await);
    assert!(exists(&env.bucket(), "indexes/people_idx/v1/shard-0.hnsw").await);
    remote.drop_index("people_idx", None).await.unwrap();
    assert!(remote.indexes().is_empty());
    assert_eq!(remote.collect_garbage().await.unwrap(), 2);

    remote.shutdown().await.unwrap();
    assert!(matches!(
        remote.drop_view("adults").await,
        Err(Error::ShutDown)
    ));
    node.stop().await.unwrap();
}

/// A node with an empty log (a new one, or one whose disk was wiped) refuses
/// to vote, so it cannot help elect a candidate that lacks committed entries;
/// a node with a log leaves the decision to Raft.
#[tokio::test]
async fn node_with_an_empty_log_grants_no_vote() {
    use openraft::network::RPCOption;
    use openraft::raft::VoteRequest;
    use openraft::{BasicNode, CommittedLeaderId, LogId, RaftNetwork, RaftNetworkFactory, Vote};

    async fn start(env: &Env) -> crate::CatalogNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        crate::CatalogNode::start(
            &env.config,
            &env.log_dir,
            env.bucket(),
            env.clock.clone(),
            listener,
        )
        .await
        .unwrap()
    }
    // Candidate 3 at term 5, its log ahead of anything either node has.
    async fn ask(node: &crate::CatalogNode) -> Result<bool, String> {
        let mut candidate = crate::NetworkFactory::new(3, std::time::Duration::from_secs(1))
            .new_client(
                node.catalog.metrics().node_id,
                &BasicNode::new(node.addr.to_string()),
            )
            .await;
        let request = VoteRequest::new(
            Vote::new(5, 3),
            Some(LogId::new(CommittedLeaderId::new(4, 3), 10)),
        );
        let option = RPCOption::new(std::time::Duration::from_secs(2));
        match candidate.vote(request, option).await {
            Ok(answer) => Ok(answer.vote_granted),
            Err(e) => Err(e.to_string()),
        }
    }

    // Node 2 of a cluster seeded by node 1 (not running): no log, waits to be added.
    let mut empty = Env::new();
    empty.config.node_id = 2;
    empty.config.peers = vec!["1=127.0.0.1:1".to_string()];
    let empty = start(&empty).await;
    let refused = ask(&empty).await.unwrap_err();
    assert!(refused.contains("empty log"), "{refused}");

    // A seed bootstraps its one-node cluster: it has a log.
    let seeded = start(&Env::new()).await;
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while seeded.catalog.metrics().last_log_index.is_none() {
        assert!(Instant::now() < deadline, "the seed has no log after 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Raft itself answers (a refusal here: a leader with a live lease keeps it).
    let answer = ask(&seeded).await;
    assert!(answer.is_ok(), "{answer:?}");
    empty.stop().await.unwrap();
    seeded.stop().await.unwrap();
}
