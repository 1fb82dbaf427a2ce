//! The cluster's roles as separate processes of our binary, all on loopback
//! port 0: three `lakehouse catalog` nodes, `lakehouse scheduler`, two
//! `lakehouse executor` and `lakehouse gateway`. A CSV goes in through the
//! gateway's HTTP ingest, a GROUP BY comes back over Flight SQL with its tasks
//! run on both executors (each executor's listen file counts the tasks it
//! completed), and `lakehouse status` prints the catalog cluster, the
//! scheduler and both executors with their task slots.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array};
use lakehouse_tests::{example, lakehouse_binary, BoxError};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Upper bound of every wait in this module.
const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// A role process; killed when dropped.
struct Role {
    name: String,
    child: Child,
    listen_file: PathBuf,
    log: PathBuf,
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Role {
    /// The listen file's JSON once it has `key`.
    fn listening(&mut self, key: &str) -> Result<serde_json::Value, BoxError> {
        let started = Instant::now();
        loop {
            if let Ok(body) = std::fs::read_to_string(&self.listen_file) {
                let json: serde_json::Value = serde_json::from_str(&body)?;
                if json.get(key).is_some() {
                    return Ok(json);
                }
            }
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log)?;
                return Err(format!("{} exited with {status}: {log}", self.name).into());
            }
            if started.elapsed() > PATIENCE {
                return Err(format!("{} wrote no `{key}` in {PATIENCE:?}", self.name).into());
            }
            std::thread::sleep(POLL);
        }
    }

    fn addr(&mut self, key: &str) -> Result<String, BoxError> {
        Ok(self.listening(key)?[key]
            .as_str()
            .ok_or_else(|| format!("{}: `{key}` is not a string", self.name))?
            .to_string())
    }
}

struct Cluster {
    root: tempfile::TempDir,
    binary: PathBuf,
}

impl Cluster {
    fn new() -> Result<Self, BoxError> {
        Ok(Self {
            root: tempfile::Builder::new().disable_cleanup(true).tempdir()?,
            binary: lakehouse_binary()?,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(self.root.path())
            // One bucket for every role, as object storage would be.
            .env(
                "LAKEHOUSE__STORAGE__PRIMARY",
                self.root.path().join("bucket"),
            )
            .env("LAKEHOUSE_LOG", "info,openraft=warn")
            .stdin(Stdio::null());
        command
    }

    /// Starts `lakehouse <args> --data-dir <root>/<name> --listen-file ...`.
    fn spawn(&self, name: &str, args: &[&str]) -> Result<Role, BoxError> {
        self.spawn_with(name, args, &[])
    }

    fn spawn_with(
        &self,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Role, BoxError> {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let listen_file = dir.join("listen.json");
        let log = dir.join("stderr.log");
        let child = self
            .command()
            .args(args)
            .envs(env.iter().copied())
            .arg("--data-dir")
            .arg(&dir)
            .arg("--listen-file")
            .arg(&listen_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Role {
            name: name.to_string(),
            child,
            listen_file,
            log,
        })
    }

    /// Runs a client subcommand to completion; its stdout.
    fn run(&self, args: &[&str]) -> Result<String, BoxError> {
        let out = self.command().args(args).output()?;
        if !out.status.success() {
            return Err(format!(
                "lakehouse {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

/// `grpc.health.v1.Health/Check` with the empty service name, as Kubernetes asks.
async fn serving(addr: &str) -> Result<bool, BoxError> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = HealthClient::new(channel);
    let reply = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    Ok(reply.status == ServingStatus::Serving as i32)
}

fn tasks_completed(executor: &mut Role) -> Result<u64, BoxError> {
    executor.listening("tasks_completed")?["tasks_completed"]
        .as_u64()
        .ok_or_else(|| "tasks_completed is not a number".into())
}

fn ingest_params(file: &str) -> Vec<(&'static str, String)> {
    vec![
        ("owner", "staffing-ops".into()),
        ("sensitivity", "internal".into()),
        ("lineage", "ats-export -> ingest".into()),
        ("freshness_sla", "24h".into()),
        (
            "description",
            "candidates, ingested through the gateway".into(),
        ),
        ("tags", "demo".into()),
        ("filename", file.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_roles_answer_sql_with_tasks_on_both_executors() -> Result<(), BoxError> {
    let cluster = Cluster::new()?;
    // Catalog: node 1 bootstraps, 2 and 3 are added with `lakehouse admin add-node`.
    let mut seed = cluster.spawn(
        "catalog-1",
        &["catalog", "--node-id", "1", "--listen", "127.0.0.1:0"],
    )?;
    let seed_addr = seed.addr("catalog")?;
    let mut nodes = vec![seed];
    for id in ["2", "3"] {
        let peers = format!("1={seed_addr}");
        let mut node = cluster.spawn(
            &format!("catalog-{id}"),
            &[
                "catalog",
                "--node-id",
                id,
                "--listen",
                "127.0.0.1:0",
                "--peers",
                &peers,
            ],
        )?;
        let addr = node.addr("catalog")?;
        cluster.run(&[
            "admin",
            "add-node",
            "--catalog",
            &seed_addr,
            "--node-id",
            id,
            "--addr",
            &addr,
        ])?;
        nodes.push(node);
    }
    let mut catalog_addrs = Vec::new();
    let mut peers = Vec::new();
    for (i, node) in nodes.iter_mut().enumerate() {
        let addr = node.addr("catalog")?;
        peers.push(format!("{}={addr}", i + 1));
        catalog_addrs.push(addr);
    }

    let mut scheduler = cluster.spawn("scheduler", &["scheduler", "--listen", "127.0.0.1:0"])?;
    let scheduler_addr = scheduler.addr("scheduler")?;
    // One task slot each: a stage of two or more partitions needs both executors.
    let mut executors = Vec::new();
    for name in ["executor-1", "executor-2"] {
        let work_dir = cluster.root.path().join(name).join("work");
        let work_dir = work_dir.display().to_string();
        executors.push(cluster.spawn_with(
            name,
            &[
                "executor",
                "--scheduler",
                &scheduler_addr,
                "--flight-port",
                "0",
                "--grpc-port",
                "0",
                "--work-dir",
                &work_dir,
            ],
            &[("LAKEHOUSE__EXECUTOR__CONCURRENT_TASKS", "1")],
        )?);
    }
    let peers = peers.join(",");
    let mut gateway = cluster.spawn(
        "gateway",
        &[
            "gateway",
            "--catalog-peers",
            &peers,
            "--scheduler",
            &scheduler_addr,
            "--http-addr",
            "127.0.0.1:0",
            "--flight-sql-addr",
            "127.0.0.1:0",
        ],
    )?;
    let http = gateway.addr("http")?;
    let flight = gateway.addr("flight_sql")?;

    // Every gRPC role answers Kubernetes' health check.
    assert!(serving(&catalog_addrs[1]).await?, "catalog node health");
    assert!(serving(&scheduler_addr).await?, "scheduler health");
    for executor in &mut executors {
        let addr = executor.addr("flight")?;
        assert!(serving(&addr).await?, "executor health on Flight {addr}");
    }

    // Three files: create, then two appends.
    let client = lakehouse_gateway::client::GatewayClient::new(&format!("http://{http}"));
    let csv = example("candidates.csv");
    client
        .ingest(
            &csv,
            "candidates",
            &ingest_params("candidates.csv"),
            Arc::new(|_| {}),
        )
        .await?;
    for _ in 0..2 {
        let mut params = vec![("mode", "append".to_string())];
        params.push(("filename", "candidates.csv".into()));
        client
            .ingest(&csv, "candidates", &params, Arc::new(|_| {}))
            .await?;
    }

    let uri = format!("grpc://{flight}");
    let before: Vec<u64> = executors
        .iter_mut()
        .map(tasks_completed)
        .collect::<Result<_, _>>()?;
    let sql = "SELECT city, count(*) AS n FROM candidates GROUP BY city ORDER BY city";
    let batches = lakehouse_flight_sql::client::query(&uri, sql).await?;
    let total: i64 = batches
        .iter()
        .map(|b| {
            b.column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map_or(0, |counts| counts.iter().flatten().sum::<i64>())
        })
        .sum();
    assert_eq!(total, 180, "three ingests of the 60-row file");

    // Each executor's count of completed tasks went up.
    let started = Instant::now();
    loop {
        let after: Vec<u64> = executors
            .iter_mut()
            .map(tasks_completed)
            .collect::<Result<_, _>>()?;
        if after.iter().zip(&before).all(|(a, b)| a > b) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "tasks before {before:?}, after {after:?}: not on both executors"
        );
        std::thread::sleep(POLL);
    }

    let status = cluster.run(&[
        "status",
        "--catalog",
        &catalog_addrs.join(","),
        "--scheduler",
        &scheduler_addr,
    ])?;
    assert!(status.contains("leader node 1"), "{status}");
    for addr in &catalog_addrs {
        assert!(status.contains(addr.as_str()), "{status}");
    }
    assert_eq!(status.matches("voter").count(), 3, "{status}");
    assert!(
        status.contains(&format!("scheduler: {scheduler_addr}, serving")),
        "{status}"
    );
    // Each executor on its own line, with its Flight address and one task slot.
    for executor in &mut executors {
        let listen = executor.listening("executor_id")?;
        let (id, flight) = (&listen["executor_id"], &listen["flight"]);
        let (Some(id), Some(flight)) = (id.as_str(), flight.as_str()) else {
            return Err(format!("executor listen file without id or flight: {listen}").into());
        };
        let line = status
            .lines()
            .find(|line| line.starts_with(id))
            .ok_or_else(|| format!("executor {id} missing from status:\n{status}"))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.get(1), Some(&flight), "{line}");
        assert_eq!(fields.get(3), Some(&"1"), "task slots: {line}");
        assert_eq!(fields.get(4), Some(&"active"), "{line}");
    }
    println!("{status}");
    drop_in_order(gateway, executors, scheduler, nodes);
    Ok(())
}

/// Clients before servers, so no role logs the others' disappearance as an error.
fn drop_in_order(gateway: Role, executors: Vec<Role>, scheduler: Role, nodes: Vec<Role>) {
    drop(gateway);
    drop(executors);
    drop(scheduler);
    drop(nodes);
}
