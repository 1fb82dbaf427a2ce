//! The three-node Raft catalog as real processes of our binary: `lakehouse
//! catalog` nodes on loopback port 0, joined with `lakehouse admin add-node`,
//! the leader killed with SIGKILL while a client writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lakehouse_catalog_raft::{CatalogClient, NodeStatus};
use lakehouse_tests::BoxError;

/// Upper bound of every wait in this module.
const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// `LAKEHOUSE_BIN`, else the `lakehouse` binary next to this test's target dir.
fn binary() -> Result<PathBuf, BoxError> {
    if let Some(path) = std::env::var_os("LAKEHOUSE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/debug/deps/integration-<hash> → target/debug/lakehouse
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

/// A `lakehouse catalog` process; killed with SIGKILL when dropped.
struct Node {
    id: u64,
    addr: String,
    child: Child,
    data_dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    root: tempfile::TempDir,
    binary: PathBuf,
}

impl Cluster {
    fn new() -> Result<Self, BoxError> {
        Ok(Self {
            root: tempfile::tempdir()?,
            binary: binary()?,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(self.root.path())
            // One bucket for the cluster, as object storage would be.
            .env(
                "LAKEHOUSE__STORAGE__PRIMARY",
                self.root.path().join("bucket"),
            )
            .env("LAKEHOUSE_LOG", "info,openraft=warn")
            .stdin(Stdio::null());
        command
    }

    /// Starts node `id` listening on `listen` (port 0 for a fresh one) and
    /// waits for its listen file.
    fn start(&self, id: u64, listen: &str, peers: &str) -> Result<Node, BoxError> {
        let data_dir = self.root.path().join(format!("node{id}"));
        std::fs::create_dir_all(&data_dir)?;
        let listen_file = data_dir.join("listen.json");
        let _ = std::fs::remove_file(&listen_file);
        let log = std::fs::File::create(data_dir.join("stderr.log"))?;
        let mut command = self.command();
        command
            .args(["catalog", "--node-id", &id.to_string(), "--listen", listen])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen-file")
            .arg(&listen_file)
            .stdout(Stdio::null())
            .stderr(log);
        if !peers.is_empty() {
            command.args(["--peers", peers]);
        }
        let mut child = command.spawn()?;
        let started = Instant::now();
        let addr = loop {
            if let Ok(body) = std::fs::read_to_string(&listen_file) {
                let json: serde_json::Value = serde_json::from_str(&body)?;
                break json["catalog"]
                    .as_str()
                    .ok_or("listen file without `catalog`")?
                    .to_string();
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(data_dir.join("stderr.log"))?;
                return Err(format!("catalog node {id} exited with {status}: {log}").into());
            }
            if started.elapsed() > PATIENCE {
                let _ = child.kill();
                return Err(format!("catalog node {id} did not start within {PATIENCE:?}").into());
            }
            std::thread::sleep(POLL);
        };
        Ok(Node {
            id,
            addr,
            child,
            data_dir,
        })
    }

    /// Runs a client subcommand of the binary to its end.
    fn run(&self, args: &[&str]) -> Result<Output, BoxError> {
        let output = self.command().args(args).output()?;
        if !output.status.success() {
            return Err(format!(
                "lakehouse {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(output)
    }
}

fn client(nodes: &[&Node]) -> Result<CatalogClient, BoxError> {
    let endpoints: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    Ok(CatalogClient::new(&endpoints, Duration::from_millis(500))?
        .with_retry_for(Duration::from_secs(5)))
}

/// Polls `check` on node `addr`'s status until it holds; bounded by [`PATIENCE`].
async fn wait_for_status(
    addr: &str,
    what: &str,
    check: impl Fn(&NodeStatus) -> bool,
) -> Result<NodeStatus, BoxError> {
    let client = CatalogClient::new(&[addr.to_string()], Duration::from_millis(500))?
        .with_retry_for(Duration::ZERO);
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < PATIENCE {
        match client.status().await {
            Ok(status) if check(&status) => return Ok(status),
            Ok(status) => last = Some(format!("{status:?}")),
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(format!("node at {addr}: {what} not reached within {PATIENCE:?}; last: {last:?}").into())
}

/// Writes `count` leases (one table each) and records the acknowledged ones.
async fn write_leases(
    client: &CatalogClient,
    from: usize,
    count: usize,
    acknowledged: &mut BTreeMap<String, u64>,
) -> usize {
    let mut failed = 0;
    for i in from..from + count {
        let table = format!("t{i:04}");
        match client.acquire_lease(&table, "cluster-test").await {
            Ok(lease) => {
                acknowledged.insert(table, lease.token);
            }
            Err(_) => failed += 1,
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_the_leader_killed() -> Result<(), BoxError> {
    let cluster = Cluster::new()?;
    let seed = cluster.start(1, "127.0.0.1:0", "")?;
    let seed_peer = format!("1={}", seed.addr);
    let mut nodes = BTreeMap::from([(1, seed)]);
    for id in [2, 3] {
        nodes.insert(id, cluster.start(id, "127.0.0.1:0", &seed_peer)?);
    }
    let seed_addr = nodes[&1].addr.clone();
    for id in [2u64, 3] {
        let addr = nodes[&id].addr.clone();
        cluster.run(&[
            "admin",
            "add-node",
            "--catalog",
            &seed_addr,
            "--node-id",
            &id.to_string(),
            "--addr",
            &addr,
        ])?;
    }
    let status = wait_for_status(&nodes[&3].addr, "three voters", |s| {
        s.members.len() == 3 && s.members.iter().all(|m| m.voter)
    })
    .await?;
    assert_eq!(status.leader_id, Some(1), "the seed leads a new cluster");

    let printed = cluster.run(&["status", "--catalog", &nodes[&2].addr])?;
    let printed = String::from_utf8(printed.stdout)?;
    assert!(printed.contains("leader node 1"), "{printed}");
    assert_eq!(printed.matches("voter").count(), 3, "{printed}");

    let all: Vec<&Node> = nodes.values().collect();
    let writer = client(&all)?;
    let mut acknowledged = BTreeMap::new();
    let failed = write_leases(&writer, 0, 20, &mut acknowledged).await;
    assert_eq!(failed, 0, "no failures while the cluster is healthy");

    // Kill the leader with SIGKILL: no goodbye to its peers.
    let leader_id = writer.status().await?.leader_id.ok_or("no leader")?;
    let mut killed = nodes
        .remove(&leader_id)
        .ok_or("leader is not one of ours")?;
    let killed_at = Instant::now();
    killed.child.kill()?;
    killed.child.wait()?;

    let survivor = nodes.values().next().ok_or("no survivor")?.addr.clone();
    let new_leader = wait_for_status(&survivor, "a new leader", |s| {
        s.leader_id.is_some_and(|l| l != leader_id)
    })
    .await?;
    let to_leader = killed_at.elapsed();
    // Writes resume: every write below goes through the new leader.
    let started = Instant::now();
    let mut written = 0;
    while written < 20 && started.elapsed() < PATIENCE {
        let before = acknowledged.len();
        write_leases(&writer, 20 + written, 1, &mut acknowledged).await;
        if acknowledged.len() > before {
            written += 1;
        }
    }
    assert_eq!(written, 20, "writes resumed after the leader was killed");
    eprintln!(
        "leader {leader_id} killed: node {} led after {to_leader:?}",
        new_leader.leader_id.unwrap_or(0)
    );

    // No acknowledged write is lost: each lease is in a linearizable read.
    let (state, read_index) = writer.state().await?;
    for (table, token) in &acknowledged {
        let lease = state
            .leases
            .get(table)
            .ok_or(format!("lease on {table} lost"))?;
        assert_eq!(lease.token, *token, "{table}");
    }

    // The killed node restarts on its address and catches up.
    let restart = cluster.start(killed.id, &killed.addr, "")?;
    assert_eq!(restart.data_dir, killed.data_dir);
    drop(killed);
    let caught_up = wait_for_status(&restart.addr, "catch-up", |s| {
        s.last_applied_index.is_some_and(|i| i >= read_index)
    })
    .await?;
    assert_eq!(caught_up.catalog_version, state.catalog_version);
    assert_eq!(caught_up.members.len(), 3);
    Ok(())
}
