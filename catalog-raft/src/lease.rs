//! Writer leases behind one trait, so every writer takes, renews and releases a
//! lease and commits under it the same way whichever backend holds it
//! (`catalog.lease_backend`): the replicated catalog, or etcd ([`EtcdLeases`]).
//! Either way the commit itself goes through the catalog, which checks the
//! lease's fencing token in its state machine.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use lakehouse_common::config::CatalogConfig;
use lakehouse_common::names::validate_identifier;
use lakehouse_common::{Clock, SystemClock};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::model::{Lease, LeaseIssuer};

/// Longest sleep between two looks at a held lease.
pub(crate) const LEASE_POLL: Duration = Duration::from_millis(100);

/// Where etcd leases live: one key per table.
const KEY_PREFIX: &str = "lakehouse/leases/";

/// How a writer holds a table: take, keep, give up, and prove before committing.
#[async_trait]
pub(crate) trait WriterLeases: Send + Sync + fmt::Debug {
    /// Takes the table's lease for `holder`, waiting up to `catalog.lease_wait_ms`
    /// for another live lease to go, then fails with [`Error::LeaseHeld`].
    async fn acquire(&self, table: &str, holder: &str) -> Result<Lease>;

    /// Extends a live lease by its TTL; a lost one is [`Error::StaleToken`].
    async fn renew(&self, lease: &Lease) -> Result<Lease>;

    /// Gives the lease up; releasing one that was already lost is a no-op.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Checks, just before a commit or drop is sent to the catalog, that the
    /// lease still holds its table.
    async fn confirm(&self, lease: &Lease) -> Result<()>;
}

/// The checks every backend makes before taking a lease.
pub(crate) fn check_request(table: &str, holder: &str) -> Result<()> {
    validate_identifier("table name", table)?;
    if holder.trim().is_empty() {
        return Err(Error::InvalidRequest(
            "a lease holder needs a name".to_string(),
        ));
    }
    Ok(())
}

/// Writer leases in etcd: an etcd lease with the configured TTL holds the key
/// `lakehouse/leases/<table>` (value: the holder), created only if it does not
/// exist. The fencing token is the key's create revision, which etcd makes
/// strictly increasing across holders. Cheap to clone.
#[derive(Clone)]
pub(crate) struct EtcdLeases {
    client: Client,
    /// For messages.
    endpoints: String,
    ttl_secs: i64,
    wait: Duration,
}

impl fmt::Debug for EtcdLeases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdLeases")
            .field("endpoints", &self.endpoints)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

fn key(table: &str) -> String {
    format!("{KEY_PREFIX}{table}")
}

fn token_of(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// The key a transaction's `get` branch read, if it exists.
fn read_key(responses: Vec<TxnOpResponse>) -> Option<KeyValue> {
    responses.into_iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        TxnOpResponse::Put(_) | TxnOpResponse::Delete(_) | TxnOpResponse::Txn(_) => None,
    })
}

impl EtcdLeases {
    /// A client for `catalog.etcd_endpoints`; it connects on first use.
    #[tracing::instrument(skip_all, fields(endpoints = ?config.etcd_endpoints))]
    pub(crate) async fn connect(config: &CatalogConfig) -> Result<Self> {
        let endpoints = config.etcd_endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .with_timeout(Duration::from_secs(5));
        let client = Client::connect(&config.etcd_endpoints, Some(options))
            .await
            .map_err(|e| Error::Etcd {
                endpoints: endpoints.clone(),
                reason: format!("cannot connect: {e}"),
            })?;
        Ok(Self {
            client,
            endpoints,
            // etcd counts whole seconds (and may raise a TTL to its minimum).
            ttl_secs: i64::try_from(config.lease_ttl_ms.div_ceil(1_000))
                .unwrap_or(i64::MAX)
                .max(1),
            wait: Duration::from_millis(config.lease_wait_ms),
        })
    }

    fn error(&self, what: &str, e: etcd_client::Error) -> Error {
        Error::Etcd {
            endpoints: self.endpoints.clone(),
            reason: format!("{what}: {e}"),
        }
    }

    fn lease_id(lease: &Lease) -> Result<i64> {
        match lease.issuer {
            LeaseIssuer::Etcd { lease_id } => Ok(lease_id),
            LeaseIssuer::Catalog => Err(Error::InvalidRequest(format!(
                "the lease on table `{}` (token {}) was issued by the catalog, but catalog.lease_backend is etcd",
                lease.table, lease.token
            ))),
        }
    }

    /// Tables whose key exists, i.e. whose writer's etcd lease is live.
    pub(crate) async fn held_tables(&self) -> Result<HashSet<String>> {
        let options = GetOptions::new().with_prefix().with_keys_only();
        let response = self
            .client
            .clone()
            .get(KEY_PREFIX, Some(options))
            .await
            .map_err(|e| self.error("listing writer leases", e))?;
        Ok(response
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok())
            .filter_map(|k| k.strip_prefix(KEY_PREFIX))
            .map(str::to_string)
            .collect())
    }

    /// The refusal for a lease whose key is gone or was created again since.
    fn lost(lease: &Lease, current: Option<&KeyValue>) -> Error {
        Error::StaleToken {
            table: lease.table.clone(),
            token: lease.token,
            current: current.map(|kv| token_of(kv.create_revision())),
        }
    }

    /// Grants a lease and creates the key with it, unless the key exists.
    async fn try_take(&self, table: &str, holder: &str) -> Result<Option<Lease>> {
        let mut client = self.client.clone();
        let granted = client
            .lease_grant(self.ttl_secs, None)
            .await
            .map_err(|e| self.error("granting a lease", e))?;
        let key = key(table);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                holder,
                Some(PutOptions::new().with_lease(granted.id())),
            )]);
        let taken = match client.txn(txn).await {
            Ok(response) if response.succeeded() => response.header().map(|h| h.revision()),
            Ok(_) => None,
            Err(e) => {
                self.revoke(granted.id()).await;
                return Err(self.error("creating the lease key", e));
            }
        };
        let Some(revision) = taken else {
            // Someone else created the key between our look and the transaction.
            self.revoke(granted.id()).await;
            return Ok(None);
        };
        Ok(Some(Lease {
            table: table.to_string(),
            holder: holder.to_string(),
            // The key was created by this transaction: its create revision is the
            // transaction's revision.
            token: token_of(revision),
            expires_at_ms: now_ms().saturating_add(granted.ttl().saturating_mul(1_000)),
            issuer: LeaseIssuer::Etcd {
                lease_id: granted.id(),
            },
        }))
    }

    /// Revokes a lease we no longer need; it expires on its own if this fails.
    async fn revoke(&self, lease_id: i64) {
        if let Err(e) = self.client.clone().lease_revoke(lease_id).await {
            tracing::debug!(lease_id, error = %e, "revoking an etcd lease failed; it expires on its own");
        }
    }

    /// The refusal for a table whose key `kv` another writer holds.
    async fn held(&self, table: &str, kv: &KeyValue) -> Error {
        let expires_in_ms = match self
            .client
            .clone()
            .lease_time_to_live(kv.lease(), None)
            .await
        {
            Ok(ttl) => ttl.ttl().max(0).saturating_mul(1_000),
            Err(_) => 0,
        };
        Error::LeaseHeld {
            table: table.to_string(),
            holder: kv.value_str().unwrap_or("?").to_string(),
            token: token_of(kv.create_revision()),
            expires_in_ms,
        }
    }
}

#[async_trait]
impl WriterLeases for EtcdLeases {
    #[tracing::instrument(skip_all, fields(table = %table, holder = %holder, token))]
    async fn acquire(&self, table: &str, holder: &str) -> Result<Lease> {
        check_request(table, holder)?;
        let deadline = Instant::now() + self.wait;
        let key = key(table);
        loop {
            // Look before granting: a grant per look would pile up leases.
            let response = self
                .client
                .clone()
                .get(key.as_str(), None)
                .await
                .map_err(|e| self.error("reading the lease key", e))?;
            match response.kvs().first() {
                None => {
                    if let Some(lease) = self.try_take(table, holder).await? {
                        tracing::Span::current().record("token", lease.token);
                        tracing::debug!("etcd writer lease taken");
                        return Ok(lease);
                    }
                }
                Some(kv) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Err(self.held(table, kv).await);
                    }
                    tokio::time::sleep(remaining.min(LEASE_POLL)).await;
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(table = %lease.table, token = lease.token))]
    async fn renew(&self, lease: &Lease) -> Result<Lease> {
        let lease_id = Self::lease_id(lease)?;
        let mut client = self.client.clone();
        // Opening the keep-alive stream sends one keep-alive and reads its answer:
        // that is the renewal. etcd answers TTL 0 for a lease that expired, which
        // the client reports as a keep-alive error.
        match client.lease_keep_alive(lease_id).await {
            Ok(_) => Ok(Lease {
                expires_at_ms: now_ms().saturating_add(self.ttl_secs.saturating_mul(1_000)),
                ..lease.clone()
            }),
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => {
                let current = client
                    .get(key(&lease.table), None)
                    .await
                    .map_err(|e| self.error("reading the lease key", e))?;
                Err(Self::lost(lease, current.kvs().first()))
            }
            Err(e) => Err(self.error("keeping the lease alive", e)),
        }
    }

    #[tracing::instrument(skip_all, fields(table = %lease.table, token = lease.token))]
    async fn release(&self, lease: &Lease) -> Result<()> {
        // Revoking deletes the key with it; a lease that expired is gone already.
        self.revoke(Self::lease_id(lease)?).await;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(table = %lease.table, token = lease.token))]
    async fn confirm(&self, lease: &Lease) -> Result<()> {
        Self::lease_id(lease)?;
        let key = key(&lease.table);
        let revision = i64::try_from(lease.token).unwrap_or(i64::MAX);
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(|e| self.error("checking the lease key", e))?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(Self::lost(
                lease,
                read_key(response.op_responses()).as_ref(),
            ))
        }
    }
}
