//! Layered configuration (ADR-006): built-in defaults → `lakehouse.toml`
//! (`--config PATH`, else `./lakehouse.toml` when present) → `LAKEHOUSE__SECTION__KEY`
//! environment → CLI flags. `Default` is the truth; the shipped `lakehouse.toml`
//! must equal it (tested). Unknown keys and bad values stop start-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File read when no `--config` is given and it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "lakehouse.toml";
/// Prefix of environment overrides: `LAKEHOUSE__GATEWAY__HTTP_ADDR=127.0.0.1:0`.
pub const ENV_PREFIX: &str = "LAKEHOUSE__";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub storage: StorageConfig,
    pub catalog: CatalogConfig,
    pub scheduler: SchedulerConfig,
    pub executor: ExecutorConfig,
    pub query: QueryConfig,
    pub flight_sql: FlightSqlConfig,
    pub gateway: GatewayConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub embedding: EmbeddingConfig,
    pub vector: VectorConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Root of everything this node keeps locally.
    pub data_dir: PathBuf,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./lakehouse-data"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The primary bucket: a local directory or `s3://bucket/prefix`. Empty: `<data_dir>/bucket`.
    pub primary: String,
    /// S3 region (S3 only).
    pub s3_region: String,
    /// S3 endpoint for S3-compatible servers, e.g. `http://127.0.0.1:9000` (S3 only).
    pub s3_endpoint: String,
    /// Access key id (S3 only); not a secret.
    pub s3_access_key_id: String,
    /// Where the secret key comes from: `env:VAR` or `file:PATH`, never the key itself.
    pub s3_secret_access_key_ref: String,
    /// Allow plain-HTTP endpoints (S3 only).
    pub s3_allow_http: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// Local Raft log and snapshots. Empty: `<data_dir>/catalog`.
    pub dir: String,
    /// This node's Raft id.
    pub node_id: u64,
    /// Leader heartbeat, milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the election timeout, milliseconds.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the election timeout, milliseconds.
    pub election_timeout_max_ms: u64,
    /// How long a writer lease lives without renewal, milliseconds.
    pub lease_ttl_ms: u64,
    /// How long a writer waits for a lease another writer holds, milliseconds.
    pub lease_wait_ms: u64,
    /// Where writer leases live: `raft` (the replicated catalog) or `etcd`.
    pub lease_backend: LeaseBackend,
    /// etcd endpoints (`host:port` or `http://host:port`) when `lease_backend = "etcd"`.
    pub etcd_endpoints: Vec<String>,
    /// Build a Raft snapshot after this many log entries.
    pub snapshot_every_entries: u64,
    /// How many catalog manifests to keep in the bucket.
    pub manifests_retained: usize,
    /// gRPC address of `lakehouse catalog` (Raft between nodes, and the catalog's clients).
    pub listen_addr: SocketAddr,
    /// host:port the other nodes reach this one at. Empty: `listen_addr`.
    pub advertise_addr: String,
    /// The cluster's nodes as `ID=HOST:PORT`; the lowest id (this node counts)
    /// bootstraps a new cluster, the others wait to be added. Empty: this node alone.
    pub peers: Vec<String>,
    /// How long a node waits to connect to a peer, milliseconds.
    pub connect_timeout_ms: u64,
    /// How long adding a node waits for it to catch up before it becomes a voter, milliseconds.
    pub catch_up_timeout_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            dir: String::new(),
            node_id: 1,
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            lease_ttl_ms: 30_000,
            lease_wait_ms: 5_000,
            lease_backend: LeaseBackend::Raft,
            etcd_endpoints: Vec::new(),
            snapshot_every_entries: 1_000,
            manifests_retained: 20,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 3102)),
            advertise_addr: String::new(),
            peers: Vec::new(),
            connect_timeout_ms: 500,
            catch_up_timeout_ms: 30_000,
        }
    }
}

/// Where writer leases live. Either way a commit carries the lease's fencing
/// token and the catalog refuses a stale one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseBackend {
    /// In the replicated catalog; the token is the catalog's lease counter.
    Raft,
    /// An etcd lease with keep-alive on `lakehouse/leases/<table>`; the token is
    /// the key's create revision.
    Etcd,
}

impl std::str::FromStr for LeaseBackend {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "raft" => Ok(Self::Raft),
            "etcd" => Ok(Self::Etcd),
            other => Err(format!("lease backend {other:?} is not one of raft, etcd")),
        }
    }
}

impl CatalogConfig {
    /// The address other nodes reach this one at.
    pub fn advertised_addr(&self) -> String {
        if self.advertise_addr.is_empty() {
            self.listen_addr.to_string()
        } else {
            self.advertise_addr.clone()
        }
    }

    /// `peers` by node id, this node included (at its advertised address when not listed).
    pub fn peer_map(&self) -> Result<BTreeMap<u64, String>> {
        let mut peers = self.listed_peers()?;
        peers
            .entry(self.node_id)
            .or_insert_with(|| self.advertised_addr());
        Ok(peers)
    }

    /// Where the other roles (gateway, CLI) reach the catalog: every node of
    /// `peers`, or `listen_addr` when no peers are listed (one node).
    pub fn client_endpoints(&self) -> Result<Vec<String>> {
        let peers = self.listed_peers()?;
        if peers.is_empty() {
            return Ok(vec![self.listen_addr.to_string()]);
        }
        Ok(peers.into_values().collect())
    }

    /// `peers` as written, by node id.
    /// With the etcd backend: at least one endpoint, none empty or with a path.
    fn validate_etcd(&self) -> Result<()> {
        if self.lease_backend != LeaseBackend::Etcd {
            return Ok(());
        }
        if self.etcd_endpoints.is_empty() {
            return Err(Error::Config(
                "catalog.lease_backend = \"etcd\" needs catalog.etcd_endpoints, e.g. [\"127.0.0.1:2379\"] \
                 (or LAKEHOUSE__CATALOG__ETCD_ENDPOINTS, or --etcd-endpoints)"
                    .to_string(),
            ));
        }
        for endpoint in &self.etcd_endpoints {
            let authority = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"))
                .unwrap_or(endpoint);
            let valid = authority
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(Error::Config(format!(
                    "catalog.etcd_endpoints entry `{endpoint}` is not HOST:PORT or http://HOST:PORT (e.g. 127.0.0.1:2379)"
                )));
            }
        }
        Ok(())
    }

    fn listed_peers(&self) -> Result<BTreeMap<u64, String>> {
        let mut peers = BTreeMap::new();
        for peer in &self.peers {
            let parsed = peer
                .split_once('=')
                .and_then(|(id, addr)| Some((id.trim().parse::<u64>().ok()?, addr.trim())))
                .filter(|(_, addr)| !addr.is_empty());
            let Some((id, addr)) = parsed else {
                return Err(Error::Config(format!(
                    "catalog.peers entry `{peer}` is not ID=HOST:PORT (e.g. 2=10.0.0.2:3102)"
                )));
            };
            if peers.insert(id, addr.to_string()).is_some() {
                return Err(Error::Config(format!(
                    "catalog.peers names node {id} twice"
                )));
            }
        }
        Ok(peers)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Ballista scheduler gRPC address.
    pub addr: SocketAddr,
    /// A job running longer than this is cancelled, seconds.
    pub job_timeout_secs: u64,
    /// host:port where the other roles (executors, gateways) reach the scheduler. Empty: `addr`.
    pub endpoint: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 50050)),
            job_timeout_secs: 3_600,
            endpoint: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorConfig {
    /// Executor gRPC address (task launch).
    pub addr: SocketAddr,
    /// Executor Flight address (shuffle and result fetch).
    pub flight_addr: SocketAddr,
    /// Task slots; 0 means one per CPU core.
    pub concurrent_tasks: usize,
    /// Shuffle files. Empty: `<data_dir>/executor`.
    pub work_dir: String,
    /// Host the scheduler and other executors reach this executor at. Empty: the IP of `flight_addr`.
    pub advertise_host: String,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            flight_addr: SocketAddr::from(([127, 0, 0, 1], 50052)),
            concurrent_tasks: 0,
            work_dir: String::new(),
            advertise_host: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Partitions per query stage; 0: the executor's task slots under `up`, the
    /// cores of its machine under `gateway` (which does not see the executors).
    pub target_partitions: usize,
    /// Hash joins halve TPC-H time but do not spill; turn off for joins larger than memory.
    pub prefer_hash_join: bool,
    /// Physical plans kept for statements planned again unchanged (same SQL,
    /// settings and table versions); 0 plans every statement anew.
    pub plan_cache_entries: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            target_partitions: 0,
            prefer_hash_join: true,
            plan_cache_entries: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlightSqlConfig {
    /// Flight SQL listen address.
    pub addr: SocketAddr,
    /// A client session (its schema and SET options) ends this long after its last use, seconds.
    pub session_idle_secs: u64,
    /// Most client sessions kept; beyond it the least recently used ends.
    pub max_sessions: usize,
}

impl Default for FlightSqlConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 3101)),
            session_idle_secs: 3_600,
            max_sessions: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// HTTP API listen address.
    pub http_addr: SocketAddr,
    /// Largest ingest body accepted, bytes.
    pub max_ingest_bytes: u64,
    /// Rows per Parquet data file written by ingest (each cut into row groups
    /// of ~16 MiB in memory, which a scan reads in parallel).
    pub rows_per_file: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3100)),
            max_ingest_bytes: 10 * 1024 * 1024 * 1024,
            rows_per_file: 1_000_000,
        }
    }
}

/// Embedding models by profile name (issue 6): indexes and `/v1/embeddings` name a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// Local model files (`scripts/setup.sh` fetches them). Empty: `~/.cache/lakehouse-models`.
    pub models_dir: String,
    /// Profiles by name.
    pub profiles: BTreeMap<String, EmbeddingProfile>,
}

/// The profile a fresh install has: the local all-MiniLM-L6-v2.
pub const DEFAULT_EMBEDDING_PROFILE: &str = "minilm";

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            models_dir: String::new(),
            profiles: BTreeMap::from([(
                DEFAULT_EMBEDDING_PROFILE.to_string(),
                EmbeddingProfile::default(),
            )]),
        }
    }
}

impl EmbeddingConfig {
    /// The configured directory, else `$HOME/.cache/lakehouse-models`, else `./lakehouse-models`.
    pub fn models_dir(&self) -> PathBuf {
        if !self.models_dir.is_empty() {
            return PathBuf::from(&self.models_dir);
        }
        match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".cache").join("lakehouse-models"),
            None => PathBuf::from("lakehouse-models"),
        }
    }

    /// The named profile, or an error listing the known ones.
    pub fn profile(&self, name: &str) -> Result<&EmbeddingProfile> {
        self.profiles.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            Error::Config(format!(
                "unknown embedding profile `{name}`; configured profiles: {} (add one under [embedding.profiles.{name}])",
                known.join(", ")
            ))
        })
    }

    fn validate(&self) -> Result<()> {
        for (name, profile) in &self.profiles {
            let key = format!("embedding.profiles.{name}");
            crate::names::validate_identifier("embedding profile name", name)?;
            if profile.model.is_empty() {
                return Err(Error::Config(format!("{key}.model is empty: name a model")));
            }
            if profile.batch_size == 0 {
                return Err(Error::Config(format!(
                    "{key}.batch_size must be at least 1"
                )));
            }
            if profile.timeout_ms == 0 {
                return Err(Error::Config(format!(
                    "{key}.timeout_ms must be at least 1"
                )));
            }
            let needs_url = profile.backend != EmbeddingBackend::Local;
            if needs_url && profile.url.is_empty() {
                return Err(Error::Config(format!(
                    "{key}.url is empty: the {:?} backend needs the server's base URL, e.g. http://127.0.0.1:11434",
                    profile.backend
                )));
            }
        }
        Ok(())
    }
}

/// Where an embedding profile's model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingBackend {
    /// In process with candle; model files under `embedding.models_dir`.
    Local,
    /// An Ollama server: `POST /api/embed`.
    Ollama,
    /// An OpenAI-compatible server: `POST /v1/embeddings`.
    Openai,
}

/// How an index built with a profile stores its vectors (ADR-008, ADR-019).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorBackend {
    /// Parquet `doc_id, chunk_text, vector` with an HNSW sidecar.
    Parquet,
    /// A Lance dataset with an IVF index.
    Lance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingProfile {
    /// `local`, `ollama` or `openai`.
    pub backend: EmbeddingBackend,
    /// A directory under `models_dir` (local) or the server's model name.
    pub model: String,
    /// Base URL of the server (ollama, openai only).
    pub url: String,
    /// Where the API key comes from (openai only): `env:VAR` or `file:PATH`; empty: none.
    pub api_key_ref: String,
    /// Dimensions the model must produce; 0 accepts what the model reports.
    pub dims: usize,
    /// Texts per forward pass or request.
    pub batch_size: usize,
    /// Per-request timeout (HTTP only), milliseconds.
    pub timeout_ms: u64,
    /// Retries after a failed request (HTTP only), with exponential backoff.
    pub retries: u32,
    /// How indexes built with this profile store vectors.
    pub vector_backend: VectorBackend,
}

impl Default for EmbeddingProfile {
    fn default() -> Self {
        Self {
            backend: EmbeddingBackend::Local,
            model: "all-MiniLM-L6-v2".to_string(),
            url: String::new(),
            api_key_ref: String::new(),
            dims: 384,
            batch_size: 32,
            timeout_ms: 30_000,
            retries: 3,
            vector_backend: VectorBackend::Parquet,
        }
    }
}

/// Vector indexes (issue 6): HNSW parameters, chunking, embed tasks, the Lance
/// fallback past the RAM ceiling (ADR-019) and the tuning journal (ADR-018).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorConfig {
    /// A shard whose HNSW graph and vectors would take more bytes than this is written as Lance.
    pub ram_ceiling_bytes: u64,
    /// When indexes load after a restart.
    pub load: IndexLoad,
    /// HNSW links per node on upper layers (twice that on layer 0).
    pub m: usize,
    /// HNSW candidate list size while building.
    pub ef_construction: usize,
    /// HNSW candidate list size while searching (raised to k when lower).
    pub ef_search: usize,
    /// Characters per chunk of text embedded.
    pub chunk_size: usize,
    /// Characters consecutive chunks share.
    pub chunk_overlap: usize,
    /// Rows of the source table per embed task.
    pub rows_per_task: usize,
    /// IVF partitions of a Lance shard; 0: about the square root of its rows.
    pub lance_partitions: usize,
    /// IVF partitions a Lance search probes.
    pub lance_nprobes: usize,
    /// Candidate list size of a Lance IVF_HNSW search.
    pub lance_ef: usize,
    /// Lance re-ranks refine_factor × k candidates by exact distance.
    pub lance_refine_factor: u32,
    /// Recent tuning trials kept in memory.
    pub trials_ring: usize,
}

impl Default for VectorConfig {
    fn default() -> Self {
        Self {
            ram_ceiling_bytes: 512 * 1024 * 1024,
            load: IndexLoad::Lazy,
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            chunk_size: 1_000,
            chunk_overlap: 100,
            rows_per_task: 2_000,
            lance_partitions: 0,
            lance_nprobes: 8,
            lance_ef: 64,
            lance_refine_factor: 2,
            trials_ring: 256,
        }
    }
}

impl VectorConfig {
    fn validate(&self) -> Result<()> {
        let fail = |reason: String| Err(Error::Config(format!("vector.{reason}")));
        if self.chunk_size == 0 {
            return fail("chunk_size must be at least 1 (characters per chunk)".to_string());
        }
        if self.chunk_overlap >= self.chunk_size {
            return fail(format!(
                "chunk_overlap ({}) must be smaller than vector.chunk_size ({}), or chunking never advances",
                self.chunk_overlap, self.chunk_size
            ));
        }
        if self.m < 2 {
            return fail(format!("m ({}) must be at least 2", self.m));
        }
        if self.ef_search == 0 {
            return fail("ef_search must be at least 1".to_string());
        }
        if self.rows_per_task == 0 {
            return fail("rows_per_task must be at least 1".to_string());
        }
        Ok(())
    }
}

/// When vector indexes load after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexLoad {
    /// On the first search that needs the index.
    Lazy,
    /// At start-up, before serving.
    Eager,
}

/// Built-in roles: `admin` does everything, `writer` writes (ingest, DDL, DML) and
/// reads granted tables, `reader` only reads granted tables.
pub const BUILTIN_ROLES: [&str; 3] = ["admin", "writer", "reader"];
/// In `auth.grants`, as a role: every role; as a table: every table.
pub const ALL: &str = "*";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a user name and password on Flight SQL and the HTTP API (except
    /// /health and /metrics); off means anonymous access.
    pub enabled: bool,
    /// A session token from the handshake expires this long after its last use, seconds.
    pub token_ttl_secs: u64,
    /// Roles beyond admin, writer and reader (e.g. one per tenant); they hold only their grants.
    pub roles: Vec<String>,
    /// Users by name, each `{ roles = [...], password_hash = "$argon2id$..." }` or
    /// `password_ref = "env:VAR" | "file:PATH"`.
    pub users: BTreeMap<String, UserConfig>,
    /// SELECT grants: role (`*`: every role) → tables (`*`: every table).
    pub grants: BTreeMap<String, Vec<String>>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            token_ttl_secs: 3_600,
            roles: Vec::new(),
            users: BTreeMap::new(),
            grants: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// Built-in or `auth.roles` names; privileges add up.
    pub roles: Vec<String>,
    /// An argon2 PHC string (`lakehouse auth hash-password` makes one).
    pub password_hash: String,
    /// Where the password comes from: `env:VAR` or `file:PATH`.
    pub password_ref: String,
    /// Never accepted: only here so that a plain password gets an error that says what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl AuthConfig {
    /// Every role a user or grant may name.
    pub fn known_role(&self, role: &str) -> bool {
        BUILTIN_ROLES.contains(&role) || self.roles.iter().any(|r| r == role)
    }

    fn validate(&self) -> Result<()> {
        let fail = |message: String| Err(Error::Config(message));
        if self.token_ttl_secs == 0 {
            return fail("auth.token_ttl_secs must be at least 1".to_string());
        }
        for role in &self.roles {
            if BUILTIN_ROLES.contains(&role.as_str()) || role == ALL {
                return fail(format!(
                    "auth.roles: `{role}` is built in (or reserved); list only extra roles"
                ));
            }
            crate::names::validate_identifier("role name in auth.roles", role)?;
        }
        let known = || {
            let mut all: Vec<&str> = BUILTIN_ROLES.to_vec();
            all.extend(self.roles.iter().map(String::as_str));
            all.join(", ")
        };
        for (name, user) in &self.users {
            let key = format!("auth.users.{name}");
            if name.is_empty() || name.contains(':') {
                return fail(format!(
                    "{key}: a user name must be non-empty and must not contain `:` (Basic auth splits on it)"
                ));
            }
            if user.password.is_some() {
                return fail(format!(
                    "{key}.password: plain passwords are not accepted in the config; set \
                     {key}.password_hash (make one with `lakehouse auth hash-password`) or \
                     {key}.password_ref = \"env:VAR\" or \"file:PATH\""
                ));
            }
            match (user.password_hash.is_empty(), user.password_ref.is_empty()) {
                (true, true) => {
                    return fail(format!(
                        "{key}: set password_hash (an argon2 PHC string from `lakehouse auth hash-password`) or password_ref (env:VAR or file:PATH)"
                    ))
                }
                (false, false) => {
                    return fail(format!(
                        "{key}: set either password_hash or password_ref, not both"
                    ))
                }
                _ => {}
            }
            let is_ref = |r: &str| r.starts_with("env:") || r.starts_with("file:");
            if !user.password_ref.is_empty() && !is_ref(&user.password_ref) {
                return fail(format!(
                    "{key}.password_ref = {:?}: use env:VAR or file:PATH",
                    user.password_ref
                ));
            }
            if user.roles.is_empty() {
                return fail(format!(
                    "{key}.roles is empty; give the user at least one of: {}",
                    known()
                ));
            }
            if let Some(role) = user.roles.iter().find(|r| !self.known_role(r)) {
                return fail(format!(
                    "{key}.roles: unknown role `{role}`; known roles: {} (add others to auth.roles)",
                    known()
                ));
            }
        }
        for (role, tables) in &self.grants {
            if role != ALL && !self.known_role(role) {
                return fail(format!(
                    "auth.grants: unknown role `{role}`; known roles: {}, or `*` for every role (add others to auth.roles)",
                    known()
                ));
            }
            for table in tables.iter().filter(|t| t.as_str() != ALL) {
                crate::names::validate_identifier("table name in auth.grants", table)?;
            }
        }
        if self.enabled && self.users.is_empty() {
            return fail(
                "auth.enabled is true but auth.users is empty: nobody could connect".to_string(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain for Flight SQL; empty means plain gRPC.
    pub cert_path: String,
    /// PEM private key of that certificate.
    pub key_path: String,
    /// PEM CA that client certificates must chain to; empty means no client certificates.
    pub client_ca_path: String,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_path.is_empty()
    }

    fn validate(&self) -> Result<()> {
        match (self.cert_path.is_empty(), self.key_path.is_empty()) {
            (false, true) => Err(Error::Config(
                "tls.cert_path is set but tls.key_path is empty: TLS needs both".to_string(),
            )),
            (true, false) => Err(Error::Config(
                "tls.key_path is set but tls.cert_path is empty: TLS needs both".to_string(),
            )),
            (true, true) if !self.client_ca_path.is_empty() => Err(Error::Config(
                "tls.client_ca_path needs tls.cert_path and tls.key_path".to_string(),
            )),
            _ => Ok(()),
        }
    }
}

impl Config {
    /// Defaults, then the file (an explicit `path` must exist), then the environment.
    /// CLI flags are applied by the caller on the returned value.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Self::load_from(path, Env::prefixed(ENV_PREFIX).split("__"))
    }

    fn load_from(path: Option<&Path>, env: Env) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(path) if !path.exists() => {
                return Err(Error::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )))
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| Error::Config(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that serde cannot express.
    pub fn validate(&self) -> Result<()> {
        let c = &self.catalog;
        if c.election_timeout_min_ms <= c.heartbeat_interval_ms {
            return Err(Error::Config(format!(
                "catalog.election_timeout_min_ms ({}) must be larger than catalog.heartbeat_interval_ms ({})",
                c.election_timeout_min_ms, c.heartbeat_interval_ms
            )));
        }
        if c.election_timeout_max_ms <= c.election_timeout_min_ms {
            return Err(Error::Config(format!(
                "catalog.election_timeout_max_ms ({}) must be larger than catalog.election_timeout_min_ms ({})",
                c.election_timeout_max_ms, c.election_timeout_min_ms
            )));
        }
        if c.lease_ttl_ms == 0 {
            return Err(Error::Config(
                "catalog.lease_ttl_ms must be at least 1".to_string(),
            ));
        }
        c.peer_map()?;
        c.validate_etcd()?;
        if self.gateway.rows_per_file == 0 {
            return Err(Error::Config(
                "gateway.rows_per_file must be at least 1".to_string(),
            ));
        }
        self.auth.validate()?;
        self.tls.validate()?;
        self.embedding.validate()?;
        self.vector.validate()?;
        self.check_exposure()
    }

    /// Anonymous access is only safe on loopback: a server reachable from other
    /// machines must check passwords. Flight SQL and the HTTP gateway both check
    /// them when `auth.enabled` (one user list, one session table).
    fn check_exposure(&self) -> Result<()> {
        if self.auth.enabled {
            return Ok(());
        }
        for (key, addr) in [
            ("flight_sql.addr", self.flight_sql.addr),
            ("gateway.http_addr", self.gateway.http_addr),
        ] {
            if !addr.ip().is_loopback() {
                return Err(Error::Config(format!(
                    "{key} = {addr} is reachable from other machines but auth.enabled is false: \
                     anyone could read and write every table. Set auth.enabled = true with auth.users \
                     (LAKEHOUSE__AUTH__ENABLED=true), or listen on 127.0.0.1"
                )));
            }
        }
        Ok(())
    }

    pub fn catalog_dir(&self) -> PathBuf {
        self.or_data_subdir(&self.catalog.dir, "catalog")
    }

    /// host:port where executors and gateways reach the scheduler.
    pub fn scheduler_endpoint(&self) -> String {
        if self.scheduler.endpoint.is_empty() {
            self.scheduler.addr.to_string()
        } else {
            self.scheduler.endpoint.clone()
        }
    }

    /// The host this executor advertises to the scheduler and other executors.
    pub fn executor_advertise_host(&self) -> String {
        if self.executor.advertise_host.is_empty() {
            self.executor.flight_addr.ip().to_string()
        } else {
            self.executor.advertise_host.clone()
        }
    }

    pub fn executor_work_dir(&self) -> PathBuf {
        self.or_data_subdir(&self.executor.work_dir, "executor")
    }

    /// The primary bucket location: a configured URL/path, else `<data_dir>/bucket`.
    pub fn primary_bucket_location(&self) -> String {
        if self.storage.primary.is_empty() {
            self.node.data_dir.join("bucket").display().to_string()
        } else {
            self.storage.primary.clone()
        }
    }

    fn or_data_subdir(&self, configured: &str, sub: &str) -> PathBuf {
        if configured.is_empty() {
            self.node.data_dir.join(sub)
        } else {
            PathBuf::from(configured)
        }
    }
}

/// Figment's errors name the key and the source; one line per error.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("key `{}`: ", e.path.join("."))
            };
            let source = match &e.metadata {
                Some(md) => match &md.source {
                    Some(src) => format!(" (from {} {src})", md.name),
                    None => format!(" (from {})", md.name),
                },
                None => String::new(),
            };
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
// figment's Jail returns its large error type by design.
#[allow(clippy::unwrap_used, clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn other_roles_find_the_catalog_and_the_scheduler() {
        let mut config = Config::default();
        assert_eq!(
            config.catalog.client_endpoints().unwrap(),
            ["127.0.0.1:3102"]
        );
        assert_eq!(config.scheduler_endpoint(), "127.0.0.1:50050");
        assert_eq!(config.executor_advertise_host(), "127.0.0.1");
        config.catalog.peers = vec!["2=b:3102".into(), "1=a:3102".into()];
        config.catalog.node_id = 7;
        // Ordered by node id; a gateway's own node_id is not a catalog node.
        assert_eq!(
            config.catalog.client_endpoints().unwrap(),
            ["a:3102", "b:3102"]
        );
        config.scheduler.endpoint = "sched:50050".into();
        config.executor.advertise_host = "10.0.0.5".into();
        assert_eq!(config.scheduler_endpoint(), "sched:50050");
        assert_eq!(config.executor_advertise_host(), "10.0.0.5");
    }

    #[test]
    fn shipped_config_is_default() {
        let shipped: Config = toml::from_str(include_str!("../../lakehouse.toml")).unwrap();
        assert_eq!(shipped, Config::default());
    }

    #[test]
    fn env_overrides_file_and_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "lakehouse.toml",
                "[gateway]\nhttp_addr = \"127.0.0.1:4000\"\n",
            )?;
            jail.set_env("LAKEHOUSE__GATEWAY__HTTP_ADDR", "127.0.0.1:4100");
            jail.set_env("LAKEHOUSE__CATALOG__LEASE_TTL_MS", "999");
            let config = Config::load(None).unwrap();
            assert_eq!(config.gateway.http_addr.port(), 4100);
            assert_eq!(config.catalog.lease_ttl_ms, 999);
            assert_eq!(config.flight_sql, FlightSqlConfig::default());
            Ok(())
        });
    }

    #[test]
    fn etcd_lease_backend_needs_valid_endpoints() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LAKEHOUSE__CATALOG__LEASE_BACKEND", "etcd");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("catalog.etcd_endpoints"), "{err}");
            jail.set_env("LAKEHOUSE__CATALOG__ETCD_ENDPOINTS", "[\"127.0.0.1\"]");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("`127.0.0.1` is not HOST:PORT"), "{err}");
            jail.set_env(
                "LAKEHOUSE__CATALOG__ETCD_ENDPOINTS",
                "[\"127.0.0.1:2379\", \"http://etcd-1:2379\"]",
            );
            let config = Config::load(None).unwrap();
            assert_eq!(config.catalog.lease_backend, LeaseBackend::Etcd);
            assert_eq!(config.catalog.etcd_endpoints.len(), 2);
            jail.set_env("LAKEHOUSE__CATALOG__LEASE_BACKEND", "zookeeper");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("catalog.lease_backend"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn catalog_peers_parse_and_include_this_node() {
        let mut catalog = CatalogConfig {
            node_id: 2,
            peers: vec!["1=10.0.0.1:3102".into(), " 2 = 10.0.0.2:3102".into()],
            ..CatalogConfig::default()
        };
        let peers = catalog.peer_map().unwrap();
        assert_eq!(peers.get(&2).map(String::as_str), Some("10.0.0.2:3102"));
        assert_eq!(peers.len(), 2);

        catalog.node_id = 3;
        catalog.advertise_addr = "10.0.0.3:3102".into();
        let peers = catalog.peer_map().unwrap();
        assert_eq!(peers.get(&3).map(String::as_str), Some("10.0.0.3:3102"));
        catalog.peers = vec!["x=host:1".into()];
        let err = catalog.peer_map().unwrap_err().to_string();
        assert!(err.contains("ID=HOST:PORT"), "{err}");
        catalog.peers = vec!["1=a:1".into(), "1=b:1".into()];
        let err = catalog.peer_map().unwrap_err().to_string();
        assert!(err.contains("node 1 twice"), "{err}");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("custom.toml", "[gateway]\nhttp_adr = \"127.0.0.1:1\"\n")?;
            let err = Config::load(Some(Path::new("custom.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("http_adr"), "{err}");
            assert!(err.contains("custom.toml"), "{err}");
            assert!(err.contains("http_addr"), "allowed keys listed: {err}");
            Ok(())
        });
    }

    #[test]
    fn bad_value_names_key_and_expected_type() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LAKEHOUSE__CATALOG__NODE_ID", "one");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("catalog.node_id"), "{err}");
            assert!(err.contains("LAKEHOUSE__"), "{err}");
            Ok(())
        });
    }

    fn auth_error(toml: &str) -> String {
        let config: Config = toml::from_str(toml).unwrap();
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn auth_users_need_a_hash_or_ref_and_known_roles() {
        let user = "[auth]\nenabled = true\n[auth.users.bob]\nroles = [\"reader\"]\n";
        let err = auth_error(&format!("{user}password = \"hunter2\"\n"));
        assert!(
            err.contains("auth.users.bob.password") && err.contains("not accepted"),
            "{err}"
        );
        let err = auth_error(user);
        assert!(
            err.contains("auth.users.bob") && err.contains("password_hash"),
            "{err}"
        );
        let err = auth_error(&format!("{user}password_ref = \"BOB\"\n"));
        assert!(err.contains("env:VAR"), "{err}");
        let err = auth_error("[auth.users.bob]\nroles = [\"boss\"]\npassword_ref = \"env:B\"\n");
        assert!(
            err.contains("auth.users.bob.roles") && err.contains("`boss`"),
            "{err}"
        );
        let err = auth_error("[auth.grants]\nauditor = [\"t\"]\n");
        assert!(
            err.contains("auth.grants") && err.contains("`auditor`"),
            "{err}"
        );
        let ok: Config = toml::from_str(
            "[auth]\nroles = [\"tenant_a\"]\n[auth.grants]\n\"*\" = [\"t\"]\ntenant_a = [\"*\"]\n",
        )
        .unwrap();
        ok.validate().unwrap();
    }

    #[test]
    fn non_loopback_needs_auth() {
        for (section, key, addr) in [
            ("flight_sql", "addr", "0.0.0.0:3101"),
            ("gateway", "http_addr", "0.0.0.0:3100"),
        ] {
            let err = auth_error(&format!("[{section}]\n{key} = \"{addr}\"\n"));
            assert!(
                err.contains(&format!("{section}.{key}")) && err.contains("auth.enabled"),
                "{err}"
            );
        }
        // With auth, both front ends check credentials and may listen anywhere.
        let config: Config = toml::from_str(
            "[flight_sql]\naddr = \"0.0.0.0:3101\"\n[gateway]\nhttp_addr = \"0.0.0.0:3100\"\n\
             [auth]\nenabled = true\n[auth.users.a]\nroles = [\"admin\"]\npassword_ref = \"env:A\"\n",
        )
        .unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn tls_needs_cert_and_key() {
        let err = auth_error("[tls]\ncert_path = \"c.pem\"\n");
        assert!(err.contains("tls.key_path"), "{err}");
    }

    #[test]
    fn embedding_profiles_merge_and_validate() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "lakehouse.toml",
                "[embedding.profiles.nomic]\nbackend = \"ollama\"\nmodel = \"nomic-embed-text\"\n\
                 url = \"http://127.0.0.1:11434\"\ndims = 768\n",
            )?;
            let config = Config::load(None).unwrap();
            let nomic = config.embedding.profile("nomic").unwrap();
            assert_eq!(nomic.backend, EmbeddingBackend::Ollama);
            assert_eq!(nomic.batch_size, 32, "unset keys take the defaults");
            assert_eq!(
                config.embedding.profile(DEFAULT_EMBEDDING_PROFILE).unwrap(),
                &EmbeddingProfile::default()
            );
            let err = config.embedding.profile("nope").unwrap_err().to_string();
            assert!(
                err.contains("`nope`") && err.contains("minilm, nomic"),
                "{err}"
            );
            Ok(())
        });
        let err = auth_error("[embedding.profiles.o]\nbackend = \"openai\"\n");
        assert!(err.contains("embedding.profiles.o.url"), "{err}");
        let err = auth_error("[embedding.profiles.m]\nbatch_size = 0\n");
        assert!(err.contains("embedding.profiles.m.batch_size"), "{err}");
    }

    #[test]
    fn vector_section_from_env_and_validated() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LAKEHOUSE__VECTOR__LOAD", "eager");
            jail.set_env("LAKEHOUSE__VECTOR__EF_SEARCH", "128");
            let config = Config::load(None).unwrap();
            assert_eq!(config.vector.load, IndexLoad::Eager);
            assert_eq!(config.vector.ef_search, 128);
            assert_eq!(config.vector.m, 16, "unset keys take the defaults");
            jail.set_env("LAKEHOUSE__VECTOR__LOAD", "sometimes");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("vector.load"), "{err}");
            Ok(())
        });
        for (toml, key) in [
            ("chunk_size = 0", "vector.chunk_size"),
            ("chunk_overlap = 1000", "vector.chunk_overlap (1000)"),
            ("m = 1", "vector.m"),
            ("ef_search = 0", "vector.ef_search"),
            ("rows_per_task = 0", "vector.rows_per_task"),
        ] {
            let err = auth_error(&format!("[vector]\n{toml}\n"));
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/lakehouse.toml"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
