//! Writer leases in etcd (`catalog.lease_backend = "etcd"`) against a real
//! `etcd` process (Debian `etcd-server`) started on free loopback ports: the
//! key is taken only while free, a stalled writer's lease expires, the next
//! holder's token is higher, and the stalled writer's commit is refused.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema};
use lakehouse_catalog_raft::{
    Catalog, DataFile, Error, Sensitivity, TableCommit, TableMetadata, WriteMode,
};
use lakehouse_common::config::{CatalogConfig, LeaseBackend};
use lakehouse_common::{Bucket, ErrorKind, ObjectRef, SystemClock};
use lakehouse_tests::BoxError;

const PATIENCE: Duration = Duration::from_secs(30);

/// `ETCD_BIN`, else `etcd` on the PATH (Debian puts it in /usr/bin).
fn etcd_binary() -> Result<PathBuf, BoxError> {
    if let Some(path) = std::env::var_os("ETCD_BIN") {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            "no `etcd` binary on the PATH: install Debian's etcd-server (scripts/setup.sh) or set ETCD_BIN"
                .into()
        })
}

fn free_port() -> Result<u16, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// An etcd server of our own; killed when dropped.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    async fn start() -> Result<Etcd, BoxError> {
        let dir = tempfile::tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(etcd_binary()?)
            .args(["--name", "lease-test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", client_url.as_str()])
            .args(["--advertise-client-urls", client_url.as_str()])
            .args(["--listen-peer-urls", peer_url.as_str()])
            .args(["--initial-advertise-peer-urls", peer_url.as_str()])
            .arg("--initial-cluster")
            .arg(format!("lease-test={peer_url}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut etcd = Etcd {
            child,
            endpoint: format!("127.0.0.1:{client}"),
            _dir: dir,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = etcd.child.try_wait()? {
                return Err(format!("etcd exited with {status} before it was healthy").into());
            }
            let health = reqwest::get(format!("{client_url}/health")).await;
            if let Ok(response) = health {
                if response.text().await.unwrap_or_default().contains("true") {
                    return Ok(etcd);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("etcd at {client_url} not healthy within {PATIENCE:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The error of a call that must fail.
fn refused<T: std::fmt::Debug>(result: Result<T, Error>) -> Result<Error, BoxError> {
    match result {
        Ok(value) => Err(format!("expected a refusal, got {value:?}").into()),
        Err(e) => Ok(e),
    }
}

fn metadata() -> TableMetadata {
    TableMetadata {
        owner: "ops".into(),
        sensitivity: Sensitivity::Internal,
        lineage: "test".into(),
        freshness_sla: "24h".into(),
        description: "lease test".into(),
        tags: vec![],
        metadata_incomplete: false,
    }
}

fn create(file: &str) -> TableCommit {
    TableCommit {
        table: "t".into(),
        mode: WriteMode::Create,
        schema: Schema::new(vec![Field::new("id", DataType::Int64, false)]),
        new_files: vec![DataFile {
            object: ObjectRef::primary(format!("tables/t/{file}.parquet")),
            size_bytes: 1,
            row_count: 1,
        }],
        metadata: Some(metadata()),
    }
}

/// The primary bucket in a `bucket` folder of `dir`.
fn local_bucket(dir: &tempfile::TempDir) -> Result<Bucket, BoxError> {
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir)?;
    Ok(Bucket::open(
        "primary",
        bucket_dir.to_str().ok_or("temp dir is not UTF-8")?,
        &Default::default(),
    )?)
}

#[tokio::test]
async fn etcd_leases_expire_and_fence_a_stalled_writer() -> Result<(), BoxError> {
    let etcd = Etcd::start().await?;
    let dir = tempfile::tempdir()?;
    let bucket = local_bucket(&dir)?;
    let config = CatalogConfig {
        lease_backend: LeaseBackend::Etcd,
        etcd_endpoints: vec![etcd.endpoint.clone()],
        lease_ttl_ms: 1_000,
        lease_wait_ms: 200,
        ..CatalogConfig::default()
    };
    let catalog = Catalog::open(
        &config,
        &dir.path().join("catalog"),
        bucket,
        Arc::new(SystemClock),
    )
    .await?;

    let a = catalog.acquire_lease("t", "writer-a").await?;
    let renewed = catalog.renew_lease(&a).await?;
    assert_eq!(renewed.token, a.token);
    // Held: a second writer waits lease_wait_ms, then is told who holds it.
    let err = refused(catalog.acquire_lease("t", "writer-b").await)?;
    assert!(
        matches!(&err, Error::LeaseHeld { holder, token, .. } if holder == "writer-a" && *token == a.token),
        "{err}"
    );

    // A stalls: no keep-alive. etcd expires its lease (TTL rounded up to its minimum).
    let deadline = Instant::now() + PATIENCE;
    let b = loop {
        match catalog.acquire_lease("t", "writer-b").await {
            Ok(b) => break b,
            Err(Error::LeaseHeld { .. }) if Instant::now() < deadline => continue,
            Err(e) => return Err(e.into()),
        }
    };
    assert!(
        b.token > a.token,
        "tokens grow: {} then {}",
        a.token,
        b.token
    );
    let version = catalog.commit(&b, create("b")).await?;
    assert_eq!(version.fencing_token, b.token);

    // A wakes up: its keep-alive and its commit are refused, the lease was lost.
    let err = refused(catalog.renew_lease(&a).await)?;
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let err = refused(catalog.commit(&a, create("a")).await)?;
    assert!(
        matches!(err, Error::StaleToken { current: Some(current), .. } if current == b.token),
        "{err}"
    );
    assert!(err.to_string().contains("lease was lost"), "{err}");
    assert!(err.to_string().contains("retry"), "{err}");
    let table = catalog.table("t").ok_or("table t missing")?;
    assert_eq!(table.versions.len(), 1);
    assert_eq!(table.versions[0].fencing_token, b.token);

    // Released: the key is gone at once, and the next token is higher still.
    catalog.release_lease(&b).await?;
    let c = catalog.acquire_lease("t", "writer-c").await?;
    assert!(c.token > b.token);
    catalog.release_lease(&c).await?;
    catalog.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn etcd_backend_without_a_server_fails_with_the_endpoint() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let bucket = local_bucket(&dir)?;
    let endpoint = format!("127.0.0.1:{}", free_port()?);
    let config = CatalogConfig {
        lease_backend: LeaseBackend::Etcd,
        etcd_endpoints: vec![endpoint.clone()],
        ..CatalogConfig::default()
    };
    // The client connects lazily: opening may fail, or the first lease.
    let opened = Catalog::open(
        &config,
        &dir.path().join("catalog"),
        bucket,
        Arc::new(SystemClock),
    )
    .await;
    let err = match opened {
        Err(e) => e,
        Ok(catalog) => {
            let acquired = catalog.acquire_lease("t", "writer").await;
            catalog.shutdown().await?;
            refused(acquired)?
        }
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(&endpoint), "{err}");
    assert!(err.to_string().contains("etcd_endpoints"), "{err}");
    Ok(())
}
