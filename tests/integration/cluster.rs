//! The three-node Raft catalog as real processes of our binary: `lakehouse
//! catalog` nodes on loopback port 0, joined with `lakehouse admin add-node`,
//! the leader killed with SIGKILL while a client writes; a follower whose disk
//! was wiped rejoins from a snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema};
use lakehouse_catalog_raft::{
    CatalogClient, ClientReply, ClientRequest, DataFile, NodeStatus, Sensitivity, TableCommit,
    TableMetadata, WriteMode,
};
use lakehouse_common::ObjectRef;
use lakehouse_tests::{lakehouse_binary, BoxError};

/// Upper bound of every wait in this module.
const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

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
    /// Extra `LAKEHOUSE__...` settings for every process.
    env: Vec<(&'static str, String)>,
}

impl Cluster {
    fn new() -> Result<Self, BoxError> {
        Ok(Self {
            root: tempfile::tempdir()?,
            binary: lakehouse_binary()?,
            env: Vec::new(),
        })
    }

    fn with_env(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.env.push((key, value.into()));
        self
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// The `--peers` a node was started with: the seed (node 1) none, the others the seed.
    fn peers_of(id: u64, seed_addr: &str) -> String {
        if id == 1 {
            String::new()
        } else {
            format!("1={seed_addr}")
        }
    }

    /// Starts nodes 1 (the seed), 2 and 3, adds 2 and 3 with `lakehouse admin
    /// add-node` and waits until all three are voters.
    async fn start_three(&self) -> Result<BTreeMap<u64, Node>, BoxError> {
        let seed = self.start(1, "127.0.0.1:0", "")?;
        let seed_addr = seed.addr.clone();
        let mut nodes = BTreeMap::from([(1, seed)]);
        for id in [2, 3] {
            let peers = Self::peers_of(id, &seed_addr);
            nodes.insert(id, self.start(id, "127.0.0.1:0", &peers)?);
        }
        for id in [2u64, 3] {
            let addr = nodes[&id].addr.clone();
            self.run(&[
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
        wait_for_status(&nodes[&3].addr, "three voters", |s| {
            s.members.len() == 3 && s.members.iter().all(|m| m.voter)
        })
        .await?;
        Ok(nodes)
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
    let mut nodes = cluster.start_three().await?;
    let status = client(&[&nodes[&3]])?.status().await?;
    assert_eq!(status.leader_id, Some(1), "the seed leads a new cluster");

    // A catalog without a scheduler yet: status prints the catalog, names the
    // unreachable scheduler and fails (the cluster cannot answer queries).
    let status = cluster
        .command()
        .args([
            "status",
            "--catalog",
            &nodes[&2].addr,
            "--scheduler",
            "127.0.0.1:1",
        ])
        .output()?;
    let printed = String::from_utf8(status.stdout)?;
    assert!(!status.status.success(), "{printed}");
    assert!(printed.contains("leader node 1"), "{printed}");
    assert_eq!(printed.matches("voter").count(), 3, "{printed}");
    let complaint = String::from_utf8(status.stderr)?;
    assert!(complaint.contains("scheduler"), "{complaint}");

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

fn metadata() -> TableMetadata {
    TableMetadata {
        owner: "cluster-test".to_string(),
        sensitivity: Sensitivity::Internal,
        lineage: "test -> catalog".to_string(),
        freshness_sla: "24h".to_string(),
        description: "a table of the wiped-node test".to_string(),
        tags: vec!["test".to_string()],
        metadata_incomplete: false,
    }
}

/// Creates table `name` and appends to it under one lease: three log entries
/// (acquire, create, append), two table versions.
async fn write_table(client: &CatalogClient, name: &str) -> Result<(), BoxError> {
    let lease = client.acquire_lease(name, "cluster-test").await?;
    let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
    for (part, mode) in [(0, WriteMode::Create), (1, WriteMode::Append)] {
        let commit = TableCommit {
            table: name.to_string(),
            mode,
            schema: schema.clone(),
            new_files: vec![DataFile {
                object: ObjectRef::primary(format!("tables/{name}/part-{part}.parquet")),
                size_bytes: 1_000,
                row_count: 10,
            }],
            metadata: (mode == WriteMode::Create).then(metadata),
        };
        let request = ClientRequest::Commit {
            lease: lease.clone(),
            commit,
        };
        match client.write(&request).await? {
            ClientReply::Version(_) => {}
            other => return Err(format!("commit to {name}: unexpected reply {other:?}").into()),
        }
    }
    Ok(())
}

/// A follower is killed and its data directory deleted while the leader's log
/// is purged behind snapshots; started again with the same id, address and
/// peers, it receives a snapshot, catches up, and holds the leader's state: it
/// is then made the only node able to lead and answers a linearizable read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_follower_rejoins_from_a_snapshot() -> Result<(), BoxError> {
    // Snapshots every 20 entries: the leader purges its log long before the
    // wiped node comes back, so only a snapshot can bring it up to date.
    let cluster = Cluster::new()?.with_env("LAKEHOUSE__CATALOG__SNAPSHOT_EVERY_ENTRIES", "20");
    let mut nodes = cluster.start_three().await?;
    let seed_addr = nodes[&1].addr.clone();
    let all: Vec<&Node> = nodes.values().collect();
    let writer = client(&all)?;
    // 40 tables x 3 entries.
    for i in 0..40 {
        write_table(&writer, &format!("t{i:03}")).await?;
    }
    let leader = writer.status().await?.leader_id.ok_or("no leader")?;
    // Not the seed: a wiped seed started again bootstraps a cluster of its own.
    let wiped_id = nodes
        .keys()
        .copied()
        .filter(|id| *id != leader && *id != 1)
        .max()
        .ok_or("no follower other than the seed")?;
    let other_id = nodes
        .keys()
        .copied()
        .find(|id| *id != leader && *id != wiped_id)
        .ok_or("no third node")?;

    let mut wiped = nodes.remove(&wiped_id).ok_or("wiped node is not ours")?;
    wiped.child.kill()?;
    wiped.child.wait()?;
    std::fs::remove_dir_all(&wiped.data_dir)?;
    // The cluster goes on without it: 10 tables x 3 entries more.
    for i in 40..50 {
        write_table(&writer, &format!("t{i:03}")).await?;
    }
    let leader_status = client(&[&nodes[&leader]])?.status().await?;
    let purged_to = leader_status
        .snapshot_index
        .ok_or("the leader has not built a snapshot")?;
    assert!(purged_to > 100, "leader snapshot at {purged_to}");
    let (before, read_index) = writer.state().await?;

    let restarted_at = Instant::now();
    let peers = Cluster::peers_of(wiped_id, &seed_addr);
    let rejoined = cluster.start(wiped_id, &wiped.addr, &peers)?;
    drop(wiped);
    let caught_up = wait_for_status(&rejoined.addr, "catch-up", |s| {
        s.last_applied_index.is_some_and(|i| i >= read_index)
            && s.catalog_version == before.catalog_version
    })
    .await?;
    let catch_up = restarted_at.elapsed();
    // From the same leader in the same term: the leader survives a follower
    // whose log went backwards (openraft's `loosen-follower-log-revert`).
    assert_eq!(caught_up.leader_id, Some(leader), "{caught_up:?}");
    assert_eq!(caught_up.current_term, leader_status.current_term);
    assert!(caught_up.snapshot_index.is_some(), "{caught_up:?}");
    assert_eq!(caught_up.members.len(), 3);
    let log = std::fs::read_to_string(rejoined.data_dir.join("stderr.log"))?;
    assert!(
        log.contains("installed a catalog snapshot from the leader"),
        "the rejoined node did not install a snapshot:\n{log}"
    );
    eprintln!(
        "wiped node {wiped_id} caught up to index {read_index} (leader snapshot at {purged_to}) in {catch_up:?}"
    );

    // Its state is the leader's: stop the third node and commit once more (the
    // quorum is now the leader and the rejoined node), then kill the leader and
    // bring the third node back. Its log lacks that commit, so only the rejoined
    // node can win the election, and a linearizable read is served from its state.
    let mut other = nodes.remove(&other_id).ok_or("third node is not ours")?;
    other.child.kill()?;
    other.child.wait()?;
    write_table(&writer, "after_rejoin").await?;
    let (expected, _) = writer.state().await?;
    assert!(expected.tables.contains_key("after_rejoin"));
    let mut old_leader = nodes.remove(&leader).ok_or("leader is not ours")?;
    old_leader.child.kill()?;
    old_leader.child.wait()?;
    let other_peers = Cluster::peers_of(other_id, &seed_addr);
    let other = {
        let restarted = cluster.start(other_id, &other.addr, &other_peers)?;
        drop(other);
        restarted
    };
    wait_for_status(&rejoined.addr, "the rejoined node leads", |s| {
        s.leader_id == Some(wiped_id)
    })
    .await?;
    let (state, _) = client(&[&rejoined])?.state().await?;
    assert_eq!(state.tables.len(), 51);
    assert!(state.tables.values().all(|t| t.versions.len() == 2));
    assert_eq!(state, expected);
    drop(other);
    Ok(())
}
