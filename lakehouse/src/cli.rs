//! Command-line parsing and the client subcommands' presentation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lakehouse_common::Config;
use lakehouse_gateway::client::GatewayClient;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(
    name = "lakehouse",
    version,
    about = "A lakehouse: SQL over Flight SQL, ingest with metadata, on object storage"
)]
pub struct Cli {
    /// Config file (default: ./lakehouse.toml when present).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process: catalog, scheduler, executor, Flight SQL and HTTP.
    Up(UpArgs),
    /// Load a CSV, JSON Lines or Parquet file into a table through a running server.
    Ingest(IngestArgs),
    /// Run a SQL query through Flight SQL and print the result.
    Sql(SqlArgs),
    /// Helpers for the `[auth]` section.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Work with a table's catalog entry through a running server.
    #[command(subcommand)]
    Table(TableCommand),
    /// Vector indexes over text columns: create, list, show, activate, drop, refresh.
    #[command(subcommand)]
    Index(crate::index::IndexCommand),
    /// Run one node of the Raft catalog cluster (gRPC, port 3102).
    Catalog(CatalogArgs),
    /// Change the catalog cluster's membership.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Show the cluster: the catalog's members, leader, term, applied index and
    /// lag per node; the scheduler's jobs; the executors and their task slots.
    Status(StatusArgs),
    /// Run the Ballista scheduler alone (gRPC, port 50050).
    Scheduler(SchedulerArgs),
    /// Run one executor, registered with scheduler.endpoint (gRPC 50051, Flight 50052).
    Executor(ExecutorArgs),
    /// Run Flight SQL (3101) and HTTP (3100) over a remote catalog cluster
    /// (catalog.peers) and scheduler (scheduler.endpoint).
    Gateway(GatewayArgs),
}

/// Flags every server role has.
#[derive(Debug, Args)]
struct RoleArgs {
    /// Root of local state (overrides node.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// When ready, write the bound addresses here as JSON (for port 0).
    #[arg(long, value_name = "PATH")]
    listen_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SchedulerArgs {
    /// gRPC address to listen on (overrides scheduler.addr).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    role: RoleArgs,
}

#[derive(Debug, Args)]
struct ExecutorArgs {
    /// host:port of the scheduler (overrides scheduler.endpoint).
    #[arg(long, value_name = "HOST:PORT")]
    scheduler: Option<String>,
    /// Flight port (overrides the port of executor.flight_addr; 0 picks a free one).
    #[arg(long)]
    flight_port: Option<u16>,
    /// Task-launch gRPC port (overrides the port of executor.addr; 0 picks a free one).
    #[arg(long)]
    grpc_port: Option<u16>,
    /// Host the scheduler and other executors reach this one at (overrides executor.advertise_host).
    #[arg(long, value_name = "HOST")]
    advertise_host: Option<String>,
    /// Shuffle files (overrides executor.work_dir); several executors on one host need their own.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    role: RoleArgs,
}

#[derive(Debug, Args)]
struct GatewayArgs {
    /// The catalog nodes as ID=HOST:PORT,... (overrides catalog.peers).
    #[arg(long, value_delimiter = ',', value_name = "ID=HOST:PORT")]
    catalog_peers: Option<Vec<String>>,
    /// host:port of the scheduler (overrides scheduler.endpoint).
    #[arg(long, value_name = "HOST:PORT")]
    scheduler: Option<String>,
    /// HTTP API address (overrides gateway.http_addr).
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<std::net::SocketAddr>,
    /// Flight SQL address (overrides flight_sql.addr).
    #[arg(long, value_name = "ADDR")]
    flight_sql_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    leases: LeaseArgs,
    #[command(flatten)]
    role: RoleArgs,
}

impl RoleArgs {
    /// Loads the config with these flags applied.
    fn config(
        &self,
        path: Option<&Path>,
        apply: impl FnOnce(&mut Config),
    ) -> Result<Config, BoxError> {
        let mut config = Config::load(path)?;
        if let Some(dir) = &self.data_dir {
            config.node.data_dir = dir.clone();
        }
        apply(&mut config);
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, Args)]
struct CatalogArgs {
    /// This node's Raft id (overrides catalog.node_id).
    #[arg(long)]
    node_id: Option<u64>,
    /// gRPC address to listen on (overrides catalog.listen_addr).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// host:port the other nodes reach this one at (overrides catalog.advertise_addr).
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Every node of the cluster, this one included, as ID=HOST:PORT,... (overrides catalog.peers).
    #[arg(long, value_delimiter = ',', value_name = "ID=HOST:PORT")]
    peers: Option<Vec<String>>,
    /// Root of local state (overrides node.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// When ready, write the bound address here as JSON (for port 0).
    #[arg(long, value_name = "PATH")]
    listen_file: Option<PathBuf>,
    #[command(flatten)]
    leases: LeaseArgs,
}

/// Where the catalog cluster is: one or more of its nodes.
#[derive(Debug, Args)]
struct CatalogEndpoints {
    /// host:port of catalog nodes, comma-separated; any node will do.
    #[arg(
        long = "catalog",
        env = "LAKEHOUSE_CATALOG",
        value_delimiter = ',',
        default_value = "127.0.0.1:3102"
    )]
    endpoints: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    AddNode {
        /// The new node's Raft id.
        #[arg(long)]
        node_id: u64,
        /// host:port of the new node's catalog listener, as the other nodes reach it.
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
        #[command(flatten)]
        catalog: CatalogEndpoints,
    },
    /// Remove a node from the cluster.
    RemoveNode {
        /// The node's Raft id.
        #[arg(long)]
        node_id: u64,
        #[command(flatten)]
        catalog: CatalogEndpoints,
    },
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    catalog: CatalogEndpoints,
    /// host:port of the scheduler (default: scheduler.endpoint, else scheduler.addr).
    #[arg(long, env = "LAKEHOUSE_SCHEDULER", value_name = "HOST:PORT")]
    scheduler: Option<String>,
}

#[derive(Debug, Subcommand)]
enum TableCommand {
    /// Set some or all of a table's metadata; once all six are set, a table made
    /// over Flight SQL is no longer flagged incomplete.
    SetMetadata(SetMetadataArgs),
}

#[derive(Debug, Args)]
struct SetMetadataArgs {
    /// The table.
    table: String,
    #[command(flatten)]
    metadata: MetadataFlags,
    #[command(flatten)]
    http: HttpServer,
}

/// The six ADR-013 metadata fields, as flags of `ingest` and `table set-metadata`.
#[derive(Debug, Args)]
struct MetadataFlags {
    /// Who owns the data.
    #[arg(long)]
    owner: Option<String>,
    /// public, internal, confidential or restricted.
    #[arg(long)]
    sensitivity: Option<String>,
    /// Where the data came from, e.g. `ats-export -> ingest`.
    #[arg(long)]
    lineage: Option<String>,
    /// How stale the data may get, e.g. 24h.
    #[arg(long)]
    freshness_sla: Option<String>,
    /// What the data is.
    #[arg(long)]
    description: Option<String>,
    /// Comma-separated tags.
    #[arg(long)]
    tags: Option<String>,
}

impl MetadataFlags {
    /// (field name, flag, value) for each field.
    fn fields(&self) -> [(&'static str, &'static str, Option<&String>); 6] {
        [
            ("owner", "--owner", self.owner.as_ref()),
            ("sensitivity", "--sensitivity", self.sensitivity.as_ref()),
            ("lineage", "--lineage", self.lineage.as_ref()),
            (
                "freshness_sla",
                "--freshness-sla",
                self.freshness_sla.as_ref(),
            ),
            ("description", "--description", self.description.as_ref()),
            ("tags", "--tags", self.tags.as_ref()),
        ]
    }
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Read a password from stdin and print its argon2 hash for auth.users.NAME.password_hash.
    HashPassword,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Root of local state (overrides node.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP API address (overrides gateway.http_addr).
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<std::net::SocketAddr>,
    /// Flight SQL address (overrides flight_sql.addr).
    #[arg(long, value_name = "ADDR")]
    flight_sql_addr: Option<std::net::SocketAddr>,
    /// When ready, write the bound addresses here as JSON (for port 0).
    #[arg(long, value_name = "PATH")]
    listen_file: Option<PathBuf>,
    #[command(flatten)]
    leases: LeaseArgs,
}

/// Where writer leases live, for the roles that write or collect garbage.
#[derive(Debug, Args)]
struct LeaseArgs {
    /// raft or etcd (overrides catalog.lease_backend).
    #[arg(long, value_name = "BACKEND")]
    lease_backend: Option<lakehouse_common::config::LeaseBackend>,
    /// etcd endpoints as HOST:PORT,... (overrides catalog.etcd_endpoints).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    etcd_endpoints: Option<Vec<String>>,
}

impl LeaseArgs {
    fn apply(self, config: &mut Config) {
        if let Some(backend) = self.lease_backend {
            config.catalog.lease_backend = backend;
        }
        if let Some(endpoints) = self.etcd_endpoints {
            config.catalog.etcd_endpoints = endpoints;
        }
    }
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// The file to load.
    file: PathBuf,
    /// Target table (lowercase letters, digits, `_`).
    #[arg(long)]
    table: String,
    #[command(flatten)]
    metadata: MetadataFlags,
    /// csv, json or parquet (default: from the extension).
    #[arg(long)]
    format: Option<String>,
    /// For an existing table: append or replace.
    #[arg(long)]
    mode: Option<String>,
    #[command(flatten)]
    http: HttpServer,
}

/// The HTTP API a client subcommand talks to, and who is asking.
#[derive(Debug, Args)]
pub(crate) struct HttpServer {
    /// HTTP address of the server.
    #[arg(
        long,
        env = "LAKEHOUSE_SERVER",
        default_value = "http://127.0.0.1:3100"
    )]
    server: String,
    #[command(flatten)]
    login: Login,
}

impl HttpServer {
    /// A client of the HTTP API, logging in when a user was named.
    pub(crate) fn client(&self) -> Result<GatewayClient, BoxError> {
        self.login.client(&self.server)
    }
}

/// Credentials for a server with `[auth]`.
#[derive(Debug, Args)]
struct Login {
    /// User name for a server with [auth]; the password comes from LAKEHOUSE_PASSWORD.
    #[arg(long, env = "LAKEHOUSE_USER")]
    user: Option<String>,
}

impl Login {
    /// The user and password, if a user was named.
    fn credentials(&self) -> Result<Option<(String, String)>, BoxError> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        // Never a flag: command lines show up in `ps` and shell history.
        let password = std::env::var("LAKEHOUSE_PASSWORD")
            .map_err(|_| format!("--user {user} needs the password in LAKEHOUSE_PASSWORD"))?;
        Ok(Some((user.clone(), password)))
    }

    /// A client of the HTTP API at `server`, logging in when a user was named.
    fn client(&self, server: &str) -> Result<GatewayClient, BoxError> {
        let client = GatewayClient::new(server);
        Ok(match self.credentials()? {
            Some((user, password)) => client.with_login(user, password),
            None => client,
        })
    }
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// The query.
    query: String,
    /// Flight SQL address of the server.
    #[arg(
        long,
        env = "LAKEHOUSE_FLIGHT_SQL",
        default_value = "grpc://127.0.0.1:3101"
    )]
    server: String,
    #[command(flatten)]
    login: Login,
    /// PEM CA that signed the server's certificate, for grpc+tls:// servers.
    #[arg(long, value_name = "PATH")]
    tls_ca: Option<PathBuf>,
}

pub async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Up(args) => {
            let mut config = Config::load(cli.config.as_deref())?;
            if let Some(dir) = args.data_dir {
                config.node.data_dir = dir;
            }
            if let Some(addr) = args.http_addr {
                config.gateway.http_addr = addr;
            }
            if let Some(addr) = args.flight_sql_addr {
                config.flight_sql.addr = addr;
            }
            args.leases.apply(&mut config);
            config.validate()?;
            crate::up::run(config, args.listen_file).await
        }
        Command::Ingest(args) => ingest(args).await,
        Command::Sql(args) => sql(args).await,
        Command::Auth(AuthCommand::HashPassword) => hash_password(),
        Command::Table(TableCommand::SetMetadata(args)) => set_metadata(args).await,
        Command::Index(command) => crate::index::run(command).await,
        Command::Catalog(args) => {
            let mut config = Config::load(cli.config.as_deref())?;
            let c = &mut config.catalog;
            if let Some(id) = args.node_id {
                c.node_id = id;
            }
            if let Some(addr) = args.listen {
                c.listen_addr = addr;
            }
            if let Some(addr) = args.advertise {
                c.advertise_addr = addr;
            }
            if let Some(peers) = args.peers {
                c.peers = peers;
            }
            if let Some(dir) = args.data_dir {
                config.node.data_dir = dir;
            }
            args.leases.apply(&mut config);
            config.validate()?;
            crate::catalog::run(config, args.listen_file).await
        }
        Command::Admin(AdminCommand::AddNode {
            node_id,
            addr,
            catalog,
        }) => {
            let config = Config::load(cli.config.as_deref())?;
            crate::catalog::add_node(&catalog.endpoints, node_id, &addr, &config).await
        }
        Command::Admin(AdminCommand::RemoveNode { node_id, catalog }) => {
            let config = Config::load(cli.config.as_deref())?;
            crate::catalog::remove_node(&catalog.endpoints, node_id, &config).await
        }
        Command::Status(args) => {
            let config = Config::load(cli.config.as_deref())?;
            // Both parts print whatever they reach; either one unreachable
            // fails the command, so scripts and probes see a cluster that
            // cannot answer queries.
            let catalog = crate::catalog::status(&args.catalog.endpoints, &config).await;
            let endpoint = args
                .scheduler
                .unwrap_or_else(|| config.scheduler_endpoint());
            let scheduler = crate::status::scheduler(&endpoint).await;
            match (catalog, scheduler) {
                (Err(c), Err(s)) => Err(format!("{c}; {s}").into()),
                (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
                (Ok(()), Ok(())) => Ok(()),
            }
        }
        Command::Scheduler(args) => {
            let config = args.role.config(cli.config.as_deref(), |c| {
                if let Some(addr) = args.listen {
                    c.scheduler.addr = addr;
                }
            })?;
            crate::roles::run_scheduler(config, args.role.listen_file).await
        }
        Command::Executor(args) => {
            let config = args.role.config(cli.config.as_deref(), |c| {
                let e = &mut c.executor;
                if let Some(port) = args.flight_port {
                    e.flight_addr.set_port(port);
                }
                if let Some(port) = args.grpc_port {
                    e.addr.set_port(port);
                }
                if let Some(host) = args.advertise_host {
                    e.advertise_host = host;
                }
                if let Some(dir) = args.work_dir {
                    e.work_dir = dir.display().to_string();
                }
                if let Some(endpoint) = args.scheduler {
                    c.scheduler.endpoint = endpoint;
                }
            })?;
            crate::roles::run_executor(config, args.role.listen_file).await
        }
        Command::Gateway(args) => {
            let config = args.role.config(cli.config.as_deref(), |c| {
                if let Some(peers) = args.catalog_peers {
                    c.catalog.peers = peers;
                }
                if let Some(endpoint) = args.scheduler {
                    c.scheduler.endpoint = endpoint;
                }
                if let Some(addr) = args.http_addr {
                    c.gateway.http_addr = addr;
                }
                if let Some(addr) = args.flight_sql_addr {
                    c.flight_sql.addr = addr;
                }
                args.leases.apply(c);
            })?;
            crate::roles::run_gateway(config, args.role.listen_file).await
        }
    }
}

/// The password comes from stdin, never from the command line, where `ps` and shell
/// history would keep it.
fn hash_password() -> Result<(), BoxError> {
    let mut input = String::new();
    std::io::stdin()
        .read_line(&mut input)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let password = input.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err("no password on stdin: pipe one in, e.g. `printf %s \"$PW\" | lakehouse auth hash-password`".into());
    }
    println!("{}", lakehouse_flight_sql::auth::hash_password(password)?);
    Ok(())
}

async fn ingest(args: IngestArgs) -> Result<(), BoxError> {
    lakehouse_common::names::validate_identifier("table name", &args.table)?;
    let flags = args.metadata.fields();
    // A new table needs all six; appending or replacing keeps the recorded metadata.
    if args.mode.is_none() {
        let missing: Vec<&str> = flags
            .iter()
            .filter(|(_, _, v)| v.is_none_or(|s| s.trim().is_empty()))
            .map(|(_, flag, _)| *flag)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "missing metadata for table `{}`: {} (every table records owner, sensitivity, lineage, freshness SLA, description and tags); nothing was written",
                args.table,
                missing.join(", ")
            )
            .into());
        }
    }
    let size = std::fs::metadata(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?
        .len();
    let mut params: Vec<(&str, String)> = flags
        .iter()
        .filter_map(|(name, _, v)| v.map(|v| (*name, v.clone())))
        .collect();
    params.push(("filename", file_name(&args.file)));
    if let Some(format) = args.format {
        params.push(("format", format));
    }
    if let Some(mode) = args.mode {
        params.push(("mode", mode));
    }

    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("uploading {}", file_name(&args.file)));
    let progress = bar.clone();
    let started = Instant::now();
    let client = args.http.client()?;
    let result = client
        .ingest(
            &args.file,
            &args.table,
            &params,
            Arc::new(move |n| {
                progress.inc(n);
                if progress.position() >= progress.length().unwrap_or(u64::MAX) {
                    progress.set_message("reading, writing Parquet, committing");
                }
            }),
        )
        .await;
    bar.finish_and_clear();
    let summary = result?;
    println!(
        "{}",
        summary_line(&summary, started.elapsed().as_secs_f64())
    );
    Ok(())
}

fn summary_line(summary: &serde_json::Value, seconds: f64) -> String {
    let columns = summary["columns"].as_array().cloned().unwrap_or_default();
    let types: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap_or("?"),
                c["type"].as_str().unwrap_or("?")
            )
        })
        .collect();
    format!(
        "ingested {} rows, {} columns into {} version {} ({}) in {seconds:.2} s; types: {}",
        summary["rows"],
        columns.len(),
        summary["table"].as_str().unwrap_or("?"),
        summary["version"],
        summary["mode"].as_str().unwrap_or("?"),
        types.join(", ")
    )
}

async fn set_metadata(args: SetMetadataArgs) -> Result<(), BoxError> {
    let fields: serde_json::Map<String, serde_json::Value> = args
        .metadata
        .fields()
        .into_iter()
        .filter_map(|(name, _, value)| {
            value.map(|v| (name.to_string(), serde_json::Value::String(v.clone())))
        })
        .collect();
    if fields.is_empty() {
        return Err("nothing to set: give any of --owner, --sensitivity, --lineage, --freshness-sla, --description, --tags".into());
    }
    let client = args.http.client()?;
    let table = client
        .set_metadata(&args.table, &serde_json::Value::Object(fields))
        .await?;
    let incomplete = table["metadata_incomplete"].as_bool().unwrap_or(false);
    println!(
        "{}: metadata {}",
        args.table,
        if incomplete {
            "updated; still incomplete (set all of owner, sensitivity, lineage, freshness SLA, description and tags)"
        } else {
            "complete"
        }
    );
    Ok(())
}

async fn sql(args: SqlArgs) -> Result<(), BoxError> {
    let mut options = lakehouse_flight_sql::client::ClientOptions {
        login: args.login.credentials()?,
        ..Default::default()
    };
    if let Some(path) = args.tls_ca {
        options.tls_ca_pem =
            Some(std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?);
    }
    let batches =
        lakehouse_flight_sql::client::query_with(&args.server, &args.query, &options).await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
