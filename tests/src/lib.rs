//! Harness for in-process integration tests: `up` on ports 0 in a temp dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lakehouse::up::Running;
use lakehouse_common::Config;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running `up` with its own data dir, removed when dropped.
pub struct TestUp {
    pub running: Running,
    pub data_dir: tempfile::TempDir,
}

impl TestUp {
    pub async fn start() -> Result<Self, BoxError> {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestUp::start`], with `adjust` applied to the test config first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Result<Self, BoxError> {
        let data_dir = tempfile::tempdir()?;
        let mut config = Self::config(data_dir.path());
        adjust(&mut config);
        let running = lakehouse::up::start(config).await?;
        Ok(Self { running, data_dir })
    }

    /// Defaults with every port 0 and state under `dir`.
    pub fn config(dir: &Path) -> Config {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = Config::default();
        config.node.data_dir = dir.to_path_buf();
        config.gateway.http_addr = any;
        config.flight_sql.addr = any;
        config.scheduler.addr = any;
        config.executor.addr = any;
        config.executor.flight_addr = any;
        config
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.running.http_addr)
    }

    pub fn flight_uri(&self) -> String {
        format!("grpc://{}", self.running.flight_sql_addr)
    }

    pub async fn stop(self) -> Result<(), BoxError> {
        self.running.stop().await
    }
}

/// The demo files shipped in `examples/`.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// Ingests an example CSV with complete metadata.
pub async fn ingest_example(
    up: &TestUp,
    file: &str,
    table: &str,
) -> Result<serde_json::Value, BoxError> {
    ingest_file(up, &example(file), table).await
}

/// Ingests a file (CSV, JSON Lines, Parquet by its extension) as a new table with complete metadata.
pub async fn ingest_file(
    up: &TestUp,
    path: &Path,
    table: &str,
) -> Result<serde_json::Value, BoxError> {
    let client = lakehouse_gateway::client::GatewayClient::new(&up.http_url());
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the file has no name")?;
    let params: Vec<(&str, String)> = vec![
        ("owner", "staffing-ops".into()),
        ("sensitivity", "internal".into()),
        ("lineage", "ats-export -> ingest".into()),
        ("freshness_sla", "24h".into()),
        ("description", format!("demo {table}")),
        ("tags", "demo,staffing".into()),
        ("filename", file.into()),
    ];
    Ok(client
        .ingest(path, table, &params, Arc::new(|_| {}))
        .await?)
}

/// `LAKEHOUSE_BIN`, else the `lakehouse` binary of the target dir this test
/// binary was built in (target/debug/deps/integration-<hash> → target/debug/lakehouse).
pub fn lakehouse_binary() -> Result<PathBuf, BoxError> {
    if let Some(path) = std::env::var_os("LAKEHOUSE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("lakehouse"))
        .ok_or("no target directory above the test binary")?;
    if !path.exists() {
        return Err(format!(
            "{} is missing: run `cargo build -p lakehouse` first or set LAKEHOUSE_BIN",
            path.display()
        )
        .into());
    }
    Ok(path)
}
