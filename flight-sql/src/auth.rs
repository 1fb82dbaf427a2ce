//! Who is calling and what they may do. With `auth.enabled`, every Flight SQL call
//! but the handshake must carry a session token (or Basic credentials); [`layer`]
//! checks it and runs the call with the caller's [`Principal`] in scope. The service
//! then asks [`Auth`] before it plans SQL (grants on every table the plan reads, the
//! writer or admin role for DDL and DML) and when it lists tables.
//!
//! Roles: `admin` does everything; `writer` writes and reads granted tables;
//! `reader` and the extra roles of `auth.roles` only read granted tables.

mod grant_sql;
pub mod layer;
mod visible;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, TableScan};
use datafusion::prelude::DataFrame;
use datafusion::sql::TableReference;
use lakehouse_catalog_raft::Catalog;
use lakehouse_common::access::ReadsTables;
use lakehouse_common::config::{AuthConfig, ALL};
use lakehouse_common::storage::resolve_secret;
use lakehouse_common::{Access, Clock, Principal};
use lakehouse_query::{QueryEngine, CATALOG_NAME, DEFAULT_SCHEMA};
use rand_core::{OsRng, RngCore};
use tonic::Status;

use crate::error::{from_datafusion, from_query, Error, Result};
use grant_sql::GrantChange;

/// The user recorded (table owner, lineage) when no one authenticated.
const ANONYMOUS: &str = "anonymous";
/// Readable by everyone: it describes the catalog, not data.
const INFORMATION_SCHEMA: &str = "information_schema";
/// Random bytes in a session token.
const TOKEN_BYTES: usize = 32;

tokio::task_local! {
    /// The authenticated caller of the call being served; set by [`layer`] around the
    /// whole handler, so every planning path sees it without threading it through.
    static CALLER: Principal;
}

/// The refusals a [`Principal`] answers with (its roles live in lakehouse-common,
/// where the HTTP gateway reads them too).
trait Checks {
    fn not_granted(&self, table: &str) -> Error;
    fn require_write(&self, what: impl Into<String>) -> Result<()>;
    fn require_admin(&self, what: impl Into<String>) -> Result<()>;
}

impl Checks for Principal {
    fn not_granted(&self, table: &str) -> Error {
        Error::Denied(self.read_refusal(table))
    }

    fn require_write(&self, what: impl Into<String>) -> Result<()> {
        Ok(self.check_write(what)?)
    }

    fn require_admin(&self, what: impl Into<String>) -> Result<()> {
        if self.is_admin() {
            return Ok(());
        }
        Err(Error::AdminOnly {
            user: self.user.clone(),
            roles: self.roles_text(),
            what: what.into(),
        })
    }
}

/// How a user proves who they are.
enum Secret {
    /// An argon2 PHC string from the config.
    Hash(String),
    /// A password read through a `password_ref` at start-up.
    Password(String),
}

struct User {
    roles: BTreeSet<String>,
    secret: Secret,
}

struct Session {
    principal: Principal,
    expires_ms: i64,
}

/// Users, SELECT grants and live sessions; `Auth::disabled()` lets everyone do everything.
pub struct Auth {
    enabled: bool,
    /// Shared with the blocking tasks that verify passwords.
    users: Arc<HashMap<String, User>>,
    /// Role (`*`: every role) → tables (`*`: every table), from `auth.grants`.
    grants: BTreeMap<String, BTreeSet<String>>,
    /// Where GRANT and REVOKE are kept (replicated, so they outlive restarts);
    /// `None`: SQL grants are refused.
    catalog: Option<Catalog>,
    known_roles: BTreeSet<String>,
    sessions: Mutex<HashMap<String, Session>>,
    ttl_ms: i64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("enabled", &self.enabled)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Anonymous access: no credentials asked, nothing checked (loopback only).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            users: Arc::default(),
            grants: BTreeMap::new(),
            catalog: None,
            known_roles: BTreeSet::new(),
            sessions: Mutex::default(),
            ttl_ms: 0,
            clock: Arc::new(lakehouse_common::SystemClock),
        }
    }

    /// Reads `[auth]`: resolves `password_ref`s and checks every `password_hash`, so a
    /// bad entry stops start-up naming its key. The config was validated already.
    pub fn from_config(config: &AuthConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        if !config.enabled {
            return Ok(Self::disabled());
        }
        let mut users = HashMap::with_capacity(config.users.len());
        for (name, user) in &config.users {
            let secret = if user.password_hash.is_empty() {
                Secret::Password(resolve_secret(&user.password_ref)?)
            } else {
                check_phc(&user.password_hash).map_err(|reason| Error::Config {
                    key: format!("auth.users.{name}.password_hash"),
                    reason,
                })?;
                Secret::Hash(user.password_hash.clone())
            };
            users.insert(
                name.clone(),
                User {
                    roles: user.roles.iter().cloned().collect(),
                    secret,
                },
            );
        }
        let grants = config
            .grants
            .iter()
            .map(|(role, tables)| (role.clone(), tables.iter().cloned().collect()))
            .collect();
        let known_roles = lakehouse_common::config::BUILTIN_ROLES
            .iter()
            .map(|r| r.to_string())
            .chain(config.roles.iter().cloned())
            .collect();
        Ok(Self {
            enabled: true,
            users: Arc::new(users),
            grants,
            catalog: None,
            known_roles,
            sessions: Mutex::default(),
            ttl_ms: i64::try_from(config.token_ttl_secs.saturating_mul(1_000)).unwrap_or(i64::MAX),
            clock,
        })
    }

    /// Keeps GRANT and REVOKE made over SQL in `catalog`.
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Checks a user name and password. Hash verification is CPU-heavy (argon2 by
    /// design), so it runs off the async workers.
    pub async fn login(&self, user: &str, password: &str) -> Result<Principal> {
        let users = Arc::clone(&self.users);
        let (user, password) = (user.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || check_password(&users, &user, &password))
            .await
            .map_err(|e| Error::Hashing(e.to_string()))?
    }

    /// A new session for `principal`: a random token that lives `auth.token_ttl_secs`
    /// past its last use.
    pub fn issue_token(&self, principal: &Principal) -> String {
        let mut bytes = [0u8; TOKEN_BYTES];
        OsRng.fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = self.clock.now_ms();
        let mut sessions = self.sessions();
        // Expired sessions go when new ones come, so the table stays as large as the live set.
        sessions.retain(|_, s| s.expires_ms > now);
        sessions.insert(
            token.clone(),
            Session {
                principal: principal.clone(),
                expires_ms: now.saturating_add(self.ttl_ms),
            },
        );
        token
    }

    /// The session's principal; each use pushes its expiry forward.
    pub fn session(&self, token: &str) -> Result<Principal> {
        let now = self.clock.now_ms();
        let mut sessions = self.sessions();
        match sessions.get_mut(token) {
            Some(session) if session.expires_ms > now => {
                session.expires_ms = now.saturating_add(self.ttl_ms);
                Ok(session.principal.clone())
            }
            Some(_) => {
                sessions.remove(token);
                Err(Error::UnknownToken)
            }
            None => Err(Error::UnknownToken),
        }
    }

    /// The caller of the call being served (set by [`layer`]).
    pub fn caller(&self) -> Result<Principal> {
        CALLER
            .try_with(Principal::clone)
            .map_err(|_| Error::MissingCredentials)
    }

    /// Whether the caller may see and SELECT `table` of our catalog.
    pub fn may_read(&self, table: &str) -> bool {
        if !self.enabled {
            return true;
        }
        self.caller()
            .map(|p| self.granted(&p, table))
            .unwrap_or(false)
    }

    fn granted(&self, principal: &Principal, table: &str) -> bool {
        if principal.is_admin() {
            return true;
        }
        let from_sql = self
            .catalog
            .as_ref()
            .map(Catalog::grants)
            .unwrap_or_default();
        let granted = principal
            .roles
            .iter()
            .map(String::as_str)
            .chain([ALL])
            .flat_map(|role| [self.grants.get(role), from_sql.get(role)])
            .flatten()
            .any(|tables| tables.contains(table) || tables.contains(ALL));
        granted
    }

    /// Plans `sql` for the caller. GRANT and REVOKE are handled here; anything else is
    /// planned, checked (grants for every table read, roles for writes) and only then
    /// turned into a frame, because DDL takes effect at that step.
    pub async fn plan(&self, engine: &QueryEngine, sql: &str) -> Result<DataFrame, Status> {
        if let Some(change) = grant_sql::parse(sql)? {
            self.change_grants(change).await?;
            return empty_frame(engine).await;
        }
        let plan = engine.logical_plan(sql).await.map_err(from_query)?;
        self.authorize(engine, sql, &plan)?;
        let plan = self.hide_unreadable(engine, plan)?;
        engine.execute_plan(plan).await.map_err(from_query)
    }

    /// `information_schema` shows the caller only the tables it may read, as
    /// GetTables does.
    fn hide_unreadable(
        &self,
        engine: &QueryEngine,
        plan: LogicalPlan,
    ) -> Result<LogicalPlan, Status> {
        if !self.enabled {
            return Ok(plan);
        }
        let principal = self.caller()?;
        if principal.is_admin() {
            return Ok(plan);
        }
        let config = engine.context().copied_config();
        let readable = || {
            let Some(catalog) = &self.catalog else {
                return Vec::new();
            };
            let tables = catalog.tables().into_iter().map(|t| t.name);
            let views = catalog.views().into_iter().map(|v| v.name);
            tables
                .chain(views)
                .filter(|name| self.granted(&principal, name))
                .collect()
        };
        visible::hide_unreadable(plan, &config.options().catalog, readable).map_err(from_datafusion)
    }

    /// Checks the caller may run `plan` (planned from `sql`): grants for every
    /// table it reads, roles for writes. Writes over Flight SQL plan the
    /// statement themselves and ask here before running it.
    pub(crate) fn authorize(
        &self,
        engine: &QueryEngine,
        sql: &str,
        plan: &LogicalPlan,
    ) -> Result<(), Status> {
        if !self.enabled {
            return Ok(());
        }
        let principal = self.caller()?;
        let needs = needs_of(plan).map_err(from_datafusion)?;
        self.check(&principal, &needs, engine, sql)
    }

    /// Checks the caller may write (bulk ingest, which has no plan); `what` names the write.
    pub(crate) fn authorize_write(&self, what: String) -> Result<(), Status> {
        if !self.enabled {
            return Ok(());
        }
        Ok(self.caller()?.require_write(what)?)
    }

    /// Who is calling: the authenticated user, or `anonymous` without auth.
    pub(crate) fn user(&self) -> String {
        self.caller()
            .map(|p| p.user)
            .unwrap_or_else(|_| ANONYMOUS.to_string())
    }

    fn check(
        &self,
        principal: &Principal,
        needs: &Needs,
        engine: &QueryEngine,
        sql: &str,
    ) -> Result<(), Status> {
        if let Some(what) = &needs.admin {
            principal.require_admin(what.clone())?;
        }
        if let Some(what) = &needs.write {
            principal.require_write(what.clone())?;
        }
        let mut reads = needs.reads.clone();
        if needs.describe {
            // DESCRIBE's plan keeps only the schema: take the table from the statement.
            let state = engine.context().state();
            let dialect = state.config().options().sql_parser.dialect;
            let statement = state
                .sql_to_statement(sql, &dialect)
                .map_err(from_datafusion)?;
            reads.extend(
                state
                    .resolve_table_references(&statement)
                    .map_err(from_datafusion)?,
            );
        }
        // Unqualified names resolve in the session's default schema, as the planner did.
        let config = engine.context().copied_config();
        let defaults = &config.options().catalog;
        for table in &reads {
            let resolved = table
                .clone()
                .resolve(&defaults.default_catalog, &defaults.default_schema);
            if resolved.schema.as_ref() == INFORMATION_SCHEMA {
                continue;
            }
            let name = if resolved.catalog.as_ref() == CATALOG_NAME
                && resolved.schema.as_ref() == DEFAULT_SCHEMA
            {
                resolved.table.to_string()
            } else {
                resolved.to_string()
            };
            if !self.granted(principal, &name) {
                return Err(principal.not_granted(&name).into());
            }
        }
        Ok(())
    }

    async fn change_grants(&self, change: GrantChange) -> Result<()> {
        let statement = change.to_string();
        if !self.enabled {
            return Err(Error::GrantStatement {
                statement,
                reason: "grants only apply with auth.enabled = true".to_string(),
            });
        }
        self.caller()?.require_admin(format!("run {statement}"))?;
        if change.role != ALL && !self.known_roles.contains(&change.role) {
            return Err(Error::GrantStatement {
                statement,
                reason: format!(
                    "unknown role `{}`; known roles: {} (add others to auth.roles)",
                    change.role,
                    self.known_roles
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let in_config = self
            .grants
            .get(&change.role)
            .is_some_and(|tables| tables.contains(&change.table));
        if !change.grant && in_config {
            return Err(Error::GrantStatement {
                statement,
                reason: "this grant comes from auth.grants in the config; remove it there"
                    .to_string(),
            });
        }
        let Some(catalog) = &self.catalog else {
            return Err(Error::GrantStatement {
                statement,
                reason: "this server keeps no catalog for grants".to_string(),
            });
        };
        catalog
            .set_grant(&change.role, &change.table, change.grant)
            .await
            .map_err(|source| Error::GrantNotStored { statement, source })?;
        tracing::info!(grant = change.grant, role = %change.role, table = %change.table, "grants changed");
        Ok(())
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map usable; keep serving.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The HTTP gateway authenticates and checks grants through this, against the
/// same users, sessions and grants as Flight SQL.
#[async_trait::async_trait]
impl Access for Auth {
    fn enabled(&self) -> bool {
        self.enabled
    }

    async fn authenticate(&self, authorization: &str) -> lakehouse_common::Result<Principal> {
        self.authorization(authorization)
            .await
            .map_err(|e| lakehouse_common::Error::Auth {
                kind: e.kind(),
                message: e.to_string(),
            })
    }

    fn readable(&self, principal: &Principal, table: &str) -> bool {
        !self.enabled || self.granted(principal, table)
    }
}

/// The frame of a statement that returns nothing (GRANT, SET, …).
pub(crate) async fn empty_frame(engine: &QueryEngine) -> Result<DataFrame, Status> {
    let empty = LogicalPlanBuilder::empty(false)
        .build()
        .map_err(from_datafusion)?;
    engine.execute_plan(empty).await.map_err(from_query)
}

/// What a plan asks of its caller.
#[derive(Debug, Default)]
struct Needs {
    reads: Vec<TableReference>,
    write: Option<String>,
    admin: Option<String>,
    describe: bool,
}

fn needs_of(plan: &LogicalPlan) -> datafusion::error::Result<Needs> {
    let mut needs = Needs::default();
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => match reads_through(scan) {
                Some(tables) => needs
                    .reads
                    .extend(tables.iter().map(|t| TableReference::bare(t.as_str()))),
                None => needs.reads.push(scan.table_name.clone()),
            },
            LogicalPlan::Dml(dml) => {
                needs.write = Some(format!("{} table `{}`", dml.name(), dml.table_name))
            }
            LogicalPlan::Ddl(ddl) => needs.write = Some(format!("run {}", ddl.name())),
            // COPY writes files on the server's disk.
            LogicalPlan::Copy(_) => needs.admin = Some("run COPY".to_string()),
            // SET, PREPARE, transactions act on the session every caller shares.
            LogicalPlan::Statement(s) => needs.admin = Some(format!("run {}", s.name())),
            LogicalPlan::DescribeTable(_) => needs.describe = true,
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Union(_)
            | LogicalPlan::EmptyRelation(_)
            | LogicalPlan::Subquery(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Values(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Extension(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Unnest(_)
            | LogicalPlan::RecursiveQuery(_) => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(needs)
}

/// The tables a scan reads under another name (`vector_search(...)` reads its
/// index's source table), when it says so.
fn reads_through(scan: &TableScan) -> Option<Vec<String>> {
    let provider = source_as_provider(&scan.source).ok()?;
    provider
        .downcast_ref::<ReadsTables>()
        .map(|reads| reads.tables().to_vec())
}

fn check_password(users: &HashMap<String, User>, user: &str, password: &str) -> Result<Principal> {
    let rejected = || Error::BadCredentials {
        user: user.to_string(),
    };
    let Some(entry) = users.get(user) else {
        // Same work as for a known user, so timing does not tell which names exist.
        let _ = verify_hash(dummy_hash(), password);
        return Err(rejected());
    };
    let accepted = match &entry.secret {
        Secret::Hash(phc) => verify_hash(phc, password),
        Secret::Password(expected) => constant_time_eq(expected.as_bytes(), password.as_bytes()),
    };
    if !accepted {
        return Err(rejected());
    }
    Ok(Principal {
        user: user.to_string(),
        roles: entry.roles.clone(),
    })
}

/// Makes an argon2id PHC string for `password` (`lakehouse auth hash-password`).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Hashing(e.to_string()))
}

/// Parses a PHC string and checks it is argon2: the reason if not.
fn check_phc(phc: &str) -> std::result::Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| {
        format!("not a PHC string ({e}); make one with `lakehouse auth hash-password`")
    })?;
    if !hash.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm `{}` is not argon2; make a hash with `lakehouse auth hash-password`",
            hash.algorithm
        ));
    }
    if hash.hash.is_none() {
        return Err("the PHC string has no hash part".to_string());
    }
    Ok(())
}

fn verify_hash(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the user is unknown (made once, on first use).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no such user").unwrap_or_default())
}

/// Compares without stopping at the first difference, so timing does not reveal
/// how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use lakehouse_common::clock::ManualClock;
    use lakehouse_common::config::UserConfig;

    use super::*;

    #[test]
    fn a_scan_that_reads_other_tables_needs_grants_on_them() {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::datasource::{provider_as_source, MemTable};

        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let inner = Arc::new(MemTable::try_new(schema, vec![vec![]]).unwrap());
        let search = ReadsTables::new(inner, vec!["candidates".to_string()]);
        let plan = LogicalPlanBuilder::scan(
            "vector_search()",
            provider_as_source(Arc::new(search)),
            None,
        )
        .unwrap()
        .build()
        .unwrap();
        let needs = needs_of(&plan).unwrap();
        assert_eq!(needs.reads, vec![TableReference::bare("candidates")]);
    }

    fn config(users: &[(&str, &[&str], UserConfig)], grants: &[(&str, &[&str])]) -> AuthConfig {
        AuthConfig {
            enabled: true,
            roles: vec!["tenant_a".to_string()],
            users: users
                .iter()
                .map(|(name, roles, user)| {
                    let mut user = user.clone();
                    user.roles = roles.iter().map(|r| r.to_string()).collect();
                    (name.to_string(), user)
                })
                .collect(),
            grants: grants
                .iter()
                .map(|(role, tables)| {
                    (
                        role.to_string(),
                        tables.iter().map(|t| t.to_string()).collect(),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            ..AuthConfig::default()
        }
    }

    fn hashed(password: &str) -> UserConfig {
        UserConfig {
            password_hash: hash_password(password).unwrap(),
            ..UserConfig::default()
        }
    }

    fn principal(user: &str, roles: &[&str]) -> Principal {
        Principal {
            user: user.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn argon2_hashes_and_refs_verify() {
        std::env::set_var("LAKEHOUSE_TEST_AUTH_PW", "from-env");
        let by_ref = UserConfig {
            password_ref: "env:LAKEHOUSE_TEST_AUTH_PW".to_string(),
            ..UserConfig::default()
        };
        let auth = Arc::new(
            Auth::from_config(
                &config(
                    &[
                        ("alice", &["reader"], hashed("s3cret")),
                        ("bob", &["writer"], by_ref),
                    ],
                    &[],
                ),
                Arc::new(ManualClock::new(0)),
            )
            .unwrap(),
        );
        let alice = auth.login("alice", "s3cret").await.unwrap();
        assert_eq!(alice, principal("alice", &["reader"]));
        assert!(auth.login("bob", "from-env").await.unwrap().can_write());
        for (user, password) in [("alice", "wrong"), ("bob", "from-en"), ("nobody", "s3cret")] {
            let err = auth.login(user, password).await.unwrap_err();
            assert!(matches!(err, Error::BadCredentials { .. }), "{err}");
            assert!(err.to_string().contains("not accepted"), "{err}");
        }
    }

    /// What the HTTP gateway sees through [`Access`]: Basic and Bearer (a token
    /// from the handshake), refusals as `Unauthenticated`, grants.
    #[tokio::test]
    async fn the_gateway_authenticates_through_access() {
        let auth = Auth::from_config(
            &config(
                &[
                    ("rita", &["reader"], hashed("pw")),
                    ("walt", &["writer"], hashed("pw")),
                ],
                &[("reader", &["granted"])],
            ),
            Arc::new(ManualClock::new(0)),
        )
        .unwrap();
        let access: &dyn Access = &auth;
        assert!(access.enabled());
        let basic = |creds: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            )
        };
        let rita = access.authenticate(&basic("rita:pw")).await.unwrap();
        assert_eq!(rita, principal("rita", &["reader"]));
        let token = auth.issue_token(&principal("walt", &["writer"]));
        let walt = access
            .authenticate(&format!("Bearer {token}"))
            .await
            .unwrap();
        assert!(walt.can_write());
        for bad in [
            basic("rita:nope"),
            "Bearer made-up".to_string(),
            "Digest x".to_string(),
        ] {
            let err = access.authenticate(&bad).await.unwrap_err();
            assert_eq!(
                err.kind(),
                lakehouse_common::ErrorKind::Unauthenticated,
                "{bad}: {err}"
            );
        }
        assert!(access.readable(&rita, "granted"));
        assert!(!access.readable(&rita, "secret"));
        assert!(
            !access.readable(&walt, "granted"),
            "writers read only grants"
        );
        assert!(Auth::disabled().readable(&rita, "secret"));
    }

    #[test]
    fn a_bad_hash_names_its_key() {
        let bad = UserConfig {
            password_hash: "$2b$12$notargon".to_string(),
            ..UserConfig::default()
        };
        let err = Auth::from_config(
            &config(&[("alice", &["reader"], bad)], &[]),
            Arc::new(ManualClock::new(0)),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("auth.users.alice.password_hash"), "{err}");
    }

    #[test]
    fn tokens_expire_after_the_ttl_since_last_use() {
        let clock = Arc::new(ManualClock::new(1_000));
        let mut cfg = config(&[], &[]);
        cfg.token_ttl_secs = 10;
        let auth = Auth::from_config(&cfg, clock.clone()).unwrap();
        let alice = principal("alice", &["reader"]);
        let token = auth.issue_token(&alice);
        assert_ne!(token, auth.issue_token(&alice), "tokens are random");
        clock.advance_ms(9_000);
        assert_eq!(auth.session(&token).unwrap(), alice);
        // The use above pushed expiry to 20 s after it.
        clock.advance_ms(9_000);
        assert!(auth.session(&token).is_ok());
        clock.advance_ms(10_001);
        assert!(matches!(auth.session(&token), Err(Error::UnknownToken)));
        assert!(matches!(auth.session("made-up"), Err(Error::UnknownToken)));
    }

    #[test]
    fn grants_by_role_everyone_and_every_table() {
        let auth = Auth::from_config(
            &config(
                &[],
                &[
                    ("reader", &["candidates"]),
                    ("tenant_a", &["*"]),
                    ("*", &["contracts"]),
                ],
            ),
            Arc::new(ManualClock::new(0)),
        )
        .unwrap();
        let reader = principal("r", &["reader"]);
        let writer = principal("w", &["writer"]);
        let tenant = principal("t", &["tenant_a"]);
        let admin = principal("a", &["admin"]);
        assert!(auth.granted(&reader, "candidates"));
        assert!(auth.granted(&reader, "contracts"), "granted to every role");
        assert!(!auth.granted(&reader, "placements"));
        assert!(
            !auth.granted(&writer, "candidates"),
            "writers read only grants"
        );
        assert!(auth.granted(&tenant, "placements"), "`*` table");
        assert!(auth.granted(&admin, "placements"));
        assert!(writer.require_write("INSERT").is_ok());
        let denied = reader.require_write("Insert Into table `t`").unwrap_err();
        assert!(matches!(
            denied,
            Error::Denied(lakehouse_common::access::Denied::WriteDenied { .. })
        ));
        assert!(writer.require_admin("run COPY").is_err());
        let err = reader.not_granted("placements").to_string();
        assert!(
            err.contains("placements") && err.contains("reader"),
            "names table and role: {err}"
        );
    }

    /// What is refused before a grant reaches the catalog (which the Python tests
    /// restart to show grants persist).
    #[tokio::test]
    async fn sql_grants_are_for_admins_and_known_roles_only() {
        let auth = Auth::from_config(
            &config(&[], &[("reader", &["contracts"])]),
            Arc::new(ManualClock::new(0)),
        )
        .unwrap();
        let parse = |sql| grant_sql::parse(sql).unwrap().unwrap();
        let change = parse("GRANT SELECT ON placements TO reader");
        let err = CALLER
            .scope(
                principal("r", &["reader"]),
                auth.change_grants(change.clone()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AdminOnly { .. }), "{err}");
        let admin = principal("a", &["admin"]);
        for (sql, expected) in [
            ("GRANT SELECT ON t TO nobody", "unknown role"),
            ("REVOKE SELECT ON contracts FROM reader", "auth.grants"),
            ("GRANT SELECT ON placements TO reader", "no catalog"),
        ] {
            let err = CALLER
                .scope(admin.clone(), auth.change_grants(parse(sql)))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{sql}: {err}");
        }
    }

    #[test]
    fn plans_say_what_they_need() {
        use datafusion::prelude::SessionContext;
        let ctx = SessionContext::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            ctx.sql("CREATE TABLE a (x INT)").await.unwrap();
            ctx.sql("CREATE TABLE b (x INT)").await.unwrap();
            let plan = |sql: &'static str| {
                let state = ctx.state();
                async move { state.create_logical_plan(sql).await.unwrap() }
            };
            let select =
                needs_of(&plan("SELECT * FROM a WHERE x IN (SELECT x FROM b)").await).unwrap();
            let mut names: Vec<String> = select.reads.iter().map(|t| t.to_string()).collect();
            names.sort();
            assert_eq!(names, ["a", "b"]);
            assert!(select.write.is_none() && select.admin.is_none());
            let insert = needs_of(&plan("INSERT INTO a SELECT x FROM b").await).unwrap();
            assert!(insert.write.is_some());
            let names: Vec<String> = insert.reads.iter().map(|t| t.to_string()).collect();
            assert_eq!(names, ["b"], "the target is written, not read");
            assert!(needs_of(&plan("CREATE TABLE c (y INT)").await)
                .unwrap()
                .write
                .is_some());
            assert!(
                needs_of(&plan("SET datafusion.execution.batch_size = 1").await)
                    .unwrap()
                    .admin
                    .is_some()
            );
            assert!(needs_of(&plan("DESCRIBE a").await).unwrap().describe);
        });
    }
}
