//! The three-node Raft catalog as real processes of our binary: `lakehouse
//! catalog` nodes on loopback port 0, joined with `lakehouse admin add-node`,
//! the leader killed with SIGKILL while a client commits in a loop; a follower
//! whose disk was wiped rejoins from a snapshot; the leader cut off from its
//! peers by a network partition (a network namespace per node) commits nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema};
use lakehouse_catalog_raft::{
    CatalogClient, ClientReply, ClientRequest, DataFile, Lease, NodeStatus, Sensitivity,
    TableCommit, TableMetadata, TableVersion, WriteMode,
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
        self.configure(Command::new(&self.binary))
    }

    /// The binary run in network namespace `netns`.
    fn command_in(&self, netns: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns]).arg(&self.binary);
        self.configure(command)
    }

    fn configure(&self, mut command: Command) -> Command {
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

    /// Starts nodes 1 (the seed), 2 and 3 on loopback port 0; see [`Self::start_three_in`].
    async fn start_three(&self) -> Result<BTreeMap<u64, Node>, BoxError> {
        self.start_three_in(|_| (None, "127.0.0.1:0".to_string()))
            .await
    }

    /// Starts nodes 1 (the seed), 2 and 3, each in the network namespace and on
    /// the listen address `place` gives it, adds 2 and 3 with `lakehouse admin
    /// add-node` and waits until all three are voters.
    async fn start_three_in(
        &self,
        place: impl Fn(u64) -> (Option<String>, String),
    ) -> Result<BTreeMap<u64, Node>, BoxError> {
        let (netns, listen) = place(1);
        let seed = self.start_in(netns.as_deref(), 1, &listen, "")?;
        let seed_addr = seed.addr.clone();
        let mut nodes = BTreeMap::from([(1, seed)]);
        for id in [2, 3] {
            let peers = Self::peers_of(id, &seed_addr);
            let (netns, listen) = place(id);
            nodes.insert(id, self.start_in(netns.as_deref(), id, &listen, &peers)?);
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
        self.start_in(None, id, listen, peers)
    }

    /// [`Self::start`] inside network namespace `netns` (`ip netns exec` runs
    /// the binary in place of itself, so the child is the node).
    fn start_in(
        &self,
        netns: Option<&str>,
        id: u64,
        listen: &str,
        peers: &str,
    ) -> Result<Node, BoxError> {
        let data_dir = self.root.path().join(format!("node{id}"));
        std::fs::create_dir_all(&data_dir)?;
        let listen_file = data_dir.join("listen.json");
        let _ = std::fs::remove_file(&listen_file);
        let log = std::fs::File::create(data_dir.join("stderr.log"))?;
        let mut command = match netns {
            Some(netns) => self.command_in(netns),
            None => self.command(),
        };
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

/// One commit a client saw acknowledged, and when.
struct Ack {
    table: String,
    version: TableVersion,
    at: Instant,
}

/// A client creating one table after another (a lease, then a create commit)
/// in a background task until stopped, keeping every acknowledged commit.
struct CommitLoop {
    acks: Arc<std::sync::Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    /// Ends with the number of tables whose lease or commit failed.
    task: tokio::task::JoinHandle<usize>,
}

impl CommitLoop {
    /// At most `limit` tables, each try bounded by the client's retry window.
    fn start(client: CatalogClient, limit: usize) -> Self {
        let acks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (acks, stop) = (Arc::clone(&acks), Arc::clone(&stop));
            async move {
                let mut failed = 0;
                for i in 0..limit {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let table = format!("t{i:04}");
                    let created = match client.acquire_lease(&table, "cluster-test").await {
                        Ok(lease) => {
                            commit_part(&client, &lease, &table, 0, WriteMode::Create).await
                        }
                        Err(e) => Err(e.into()),
                    };
                    match created {
                        Ok(version) => lock(&acks).push(Ack {
                            table,
                            version,
                            at: Instant::now(),
                        }),
                        Err(_) => failed += 1,
                    }
                }
                failed
            }
        });
        Self { acks, stop, task }
    }

    /// Waits until `check` holds of the acknowledged commits; bounded by [`PATIENCE`].
    async fn wait_for(&self, what: &str, check: impl Fn(&[Ack]) -> bool) -> Result<(), BoxError> {
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            if check(&lock(&self.acks)) {
                return Ok(());
            }
            if self.task.is_finished() {
                return Err(format!("the commit loop ended before {what}").into());
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!("{what} not reached within {PATIENCE:?}").into())
    }

    /// Stops the loop; the acknowledged commits and how many tables failed.
    async fn stop(self) -> Result<(Vec<Ack>, usize), BoxError> {
        self.stop.store(true, Ordering::Relaxed);
        let failed = tokio::time::timeout(PATIENCE, self.task).await??;
        let acks = std::mem::take(&mut *lock(&self.acks));
        Ok((acks, failed))
    }
}

/// The commit loop's list; a panic elsewhere cannot leave it half-written.
fn lock(acks: &std::sync::Mutex<Vec<Ack>>) -> std::sync::MutexGuard<'_, Vec<Ack>> {
    acks.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The leader is killed with SIGKILL while a client commits in a loop: a new
/// leader is elected, commits resume, and every commit the client saw
/// acknowledged is in the catalog afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_the_leader_killed_mid_commits() -> Result<(), BoxError> {
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
    let commits = CommitLoop::start(writer.clone(), 2_000);
    commits
        .wait_for("20 commits before the kill", |acks| acks.len() >= 20)
        .await?;

    // Kill the leader with SIGKILL while commits go on: no goodbye to its peers.
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
    // Commits resume: these go through the new leader.
    commits
        .wait_for("20 commits after the kill", |acks| {
            acks.iter().filter(|a| a.at > killed_at).count() >= 20
        })
        .await?;
    let (acks, failed) = commits.stop().await?;
    let first_after = acks
        .iter()
        .find(|a| a.at > killed_at)
        .map(|a| a.at - killed_at);
    eprintln!(
        "leader {leader_id} killed: node {} led after {to_leader:?}, first commit acknowledged \
         after {first_after:?}; {} commits acknowledged, {failed} failed",
        new_leader.leader_id.unwrap_or(0),
        acks.len()
    );

    // No acknowledged commit is lost: each is in a linearizable read, as acknowledged.
    let (state, read_index) = writer.state().await?;
    for ack in &acks {
        let table = state
            .tables
            .get(&ack.table)
            .ok_or(format!("acknowledged commit to {} lost", ack.table))?;
        assert_eq!(
            table.versions,
            std::slice::from_ref(&ack.version),
            "{}",
            ack.table
        );
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
    for (part, mode) in [(0, WriteMode::Create), (1, WriteMode::Append)] {
        commit_part(client, &lease, name, part, mode).await?;
    }
    Ok(())
}

/// Commits one 10-row file, `part`, to table `name` under `lease`.
async fn commit_part(
    client: &CatalogClient,
    lease: &Lease,
    name: &str,
    part: u32,
    mode: WriteMode,
) -> Result<TableVersion, BoxError> {
    let commit = TableCommit {
        table: name.to_string(),
        mode,
        schema: Schema::new(vec![Field::new("id", DataType::Int64, false)]),
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
        ClientReply::Version(version) => Ok(version),
        other => Err(format!("commit to {name}: unexpected reply {other:?}").into()),
    }
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

/// How long a write sent to the cut-off old leader may take to fail; it must
/// not be acknowledged within it (openraft leaves it waiting for a quorum).
const MINORITY_WAIT: Duration = Duration::from_secs(5);

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), BoxError> {
    let output = Command::new("ip").args(args).output()?;
    if !output.status.success() {
        return Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

/// One network namespace per catalog node, bridged in a fourth (the hub) to
/// each other and to the namespace the test runs in; removed when dropped.
/// Network namespaces rather than a TCP proxy: the nodes talk to each other at
/// the addresses they advertise, as in a real cluster, and a partition is a
/// pair of blackhole routes (no `tc netem` needed). The test itself stays
/// connected to every node, so it can still send a write to the cut-off one.
struct Netns {
    /// Names of the namespaces and of the host's end of its link to the hub.
    prefix: String,
    /// The first three octets of the nodes' /24.
    subnet: String,
}

impl Netns {
    /// Why namespaces cannot be made here, if they cannot: they need root
    /// (CI runs as root) and `ip` (iproute2).
    fn unavailable() -> Option<String> {
        match Command::new("id").arg("-u").output() {
            Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "0" => {}
            Ok(_) => return Some("`ip netns` needs root".to_string()),
            Err(e) => return Some(format!("cannot run `id -u`: {e}")),
        }
        match Command::new("ip").arg("-V").output() {
            Ok(out) if out.status.success() => None,
            _ => Some("no `ip` command (Debian package iproute2)".to_string()),
        }
    }

    fn create() -> Result<Self, BoxError> {
        // Per test process, so two runs on one machine do not collide.
        let pid = std::process::id();
        let net = Self {
            prefix: format!("lh{}", pid % 100_000),
            subnet: format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250),
        };
        let (p, hub) = (&net.prefix, net.hub());
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let host_end = format!("{p}h");
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "host", "netns", &hub,
        ])?;
        ip(&["-n", &hub, "link", "set", "host", "master", "br0", "up"])?;
        let host_addr = format!("{}.1/24", net.subnet);
        ip(&["addr", "add", &host_addr, "dev", &host_end])?;
        ip(&["link", "set", &host_end, "up"])?;
        for id in 1..=3u64 {
            let (ns, hub_end) = (net.ns(id), format!("n{id}"));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &hub_end,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &hub_end, "master", "br0", "up"])?;
            let addr = format!("{}/24", net.ip(id));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    fn ns(&self, id: u64) -> String {
        format!("{}n{id}", self.prefix)
    }

    fn ip(&self, id: u64) -> String {
        format!("{}.{}", self.subnet, 10 + id)
    }

    /// Cuts node `id` off from `others` (both ways) or, with `heal`, joins them again.
    fn partition(&self, id: u64, others: &[u64], heal: bool) -> Result<(), BoxError> {
        let verb = if heal { "del" } else { "add" };
        for other in others {
            for (from, to) in [(id, *other), (*other, id)] {
                let to = format!("{}/32", self.ip(to));
                ip(&["-n", &self.ns(from), "route", verb, "blackhole", &to])?;
            }
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace removes its ends of the links, and the links with them.
        let _ = ip(&["link", "del", &format!("{}h", self.prefix)]);
        for id in 1..=3 {
            let _ = ip(&["netns", "del", &self.ns(id)]);
        }
        let _ = ip(&["netns", "del", &self.hub()]);
    }
}

/// What became of a write sent to the cut-off old leader: an error if it was acknowledged.
fn not_acknowledged(
    outcome: Result<Result<(), BoxError>, tokio::time::error::Elapsed>,
    what: &str,
) -> Result<String, BoxError> {
    match outcome {
        Ok(Ok(())) => Err(format!("the cut-off old leader acknowledged {what}").into()),
        Ok(Err(e)) => Ok(format!("refused ({e})")),
        Err(_) => Ok(format!("no answer within {MINORITY_WAIT:?}")),
    }
}

/// The leader is cut off from both followers while the test can still reach
/// it: a write sent to it is not acknowledged, the majority elects a leader and
/// commits, and after healing every node holds one history, the majority's,
/// without the write the old leader was sent. Each node runs in a network
/// namespace of its own and the partition is made of blackhole routes (see
/// [`Netns`] for why not a proxy); this needs root, as CI has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partitioned_leader_commits_nothing() -> Result<(), BoxError> {
    if let Some(reason) = Netns::unavailable() {
        // Skipped only on request, never silently.
        if std::env::var_os("LAKEHOUSE_TEST_SKIP_NETNS").is_some() {
            eprintln!("SKIPPED the_partitioned_leader_commits_nothing: {reason}");
            return Ok(());
        }
        return Err(format!("{reason}; set LAKEHOUSE_TEST_SKIP_NETNS=1 to skip this test").into());
    }
    let net = Netns::create()?;
    let cluster = Cluster::new()?;
    // Declared after `net`: the nodes are killed before their namespaces go.
    let nodes = cluster
        .start_three_in(|id| (Some(net.ns(id)), format!("{}:3102", net.ip(id))))
        .await?;
    let all: Vec<&Node> = nodes.values().collect();
    let writer = client(&all)?;
    for i in 0..5 {
        write_table(&writer, &format!("before{i}")).await?;
    }
    let old = writer.status().await?.leader_id.ok_or("no leader")?;
    let majority: Vec<u64> = nodes.keys().copied().filter(|id| *id != old).collect();

    net.partition(old, &majority, false)?;
    let cut_at = Instant::now();
    // Only the old leader, and no retries: what it answers itself.
    let minority = CatalogClient::new(&[nodes[&old].addr.clone()], Duration::from_millis(500))?
        .with_retry_for(Duration::ZERO);
    let first_write = tokio::spawn({
        let minority = minority.clone();
        async move { tokio::time::timeout(MINORITY_WAIT, write_table(&minority, "minority")).await }
    });
    let new_leader = wait_for_status(&nodes[&majority[0]].addr, "a leader in the majority", |s| {
        s.leader_id.is_some_and(|l| l != old)
    })
    .await?
    .leader_id
    .ok_or("no leader")?;
    let to_leader = cut_at.elapsed();
    let first = not_acknowledged(first_write.await?, "a write")?;
    let majority_nodes: Vec<&Node> = majority.iter().map(|id| &nodes[id]).collect();
    let majority_client = client(&majority_nodes)?;
    for i in 0..5 {
        write_table(&majority_client, &format!("majority{i}")).await?;
    }
    // A newer term exists now; the old leader still acknowledges nothing.
    let late = tokio::time::timeout(MINORITY_WAIT, write_table(&minority, "minority_late")).await;
    let late = not_acknowledged(late, "a write after the majority elected a leader")?;
    eprintln!(
        "leader {old} cut off: node {new_leader} led after {to_leader:?}; writes sent to \
         node {old}: {first}, then {late}"
    );

    net.partition(old, &majority, true)?;
    // Through the old leader again (it forwards now), and through everyone.
    write_table(&client(&[&nodes[&old]])?, "via_old_leader").await?;
    write_table(&writer, "after_heal").await?;
    let (state, read_index) = writer.state().await?;
    for node in nodes.values() {
        let status = wait_for_status(&node.addr, "catch-up after healing", |s| {
            s.leader_id == Some(new_leader) && s.last_applied_index.is_some_and(|i| i >= read_index)
        })
        .await?;
        assert_eq!(
            status.catalog_version, state.catalog_version,
            "node {}",
            node.id
        );
        assert_eq!(status.last_log_index, Some(read_index), "node {}", node.id);
    }
    let (through_old, _) = client(&[&nodes[&old]])?.state().await?;
    assert_eq!(through_old, state);
    let mut names: Vec<&str> = state.tables.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected: Vec<String> = (0..5)
        .flat_map(|i| [format!("before{i}"), format!("majority{i}")])
        .chain(["via_old_leader".to_string(), "after_heal".to_string()])
        .collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "one history: the majority's");
    assert!(state.tables.values().all(|t| t.versions.len() == 2));
    for never in ["minority", "minority_late"] {
        assert!(!state.leases.contains_key(never), "{never}: {state:?}");
    }
    Ok(())
}
