//! openraft storage (v2 traits) on redb: the durable log (entries, vote,
//! committed, last purged) and the persisted snapshot live in one redb file; the
//! state machine is in memory and rebuilt from the snapshot plus the log on start.
//! redb commits with `Durability::Immediate` are fsync'd before they return.
//!
//! A snapshot is one self-describing Parquet file: the catalog encoded as a
//! manifest ([`manifest::encode`]) with Raft's position in the file's key-value
//! metadata (`lakehouse.snapshot.format_version`, `.id`, `.last_applied` and
//! `.membership`, the last two as JSON). The same bytes are kept in redb and sent
//! to a follower whose log is behind the leader's purged log (e.g. a wiped node).
//! File format 1 kept the snapshot as JSON; opening such a file converts it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parquet::file::metadata::KeyValue;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::Error;
use crate::model::CatalogState;
use crate::request::{NodeId, Response, TypeConfig};
use crate::{manifest, state};

/// Log entries by index, JSON-encoded `Entry<TypeConfig>`.
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Vote, committed, last purged, snapshot and the file's format version, JSON-encoded.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_FORMAT: &str = "format_version";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
/// The snapshot's Parquet file, as is.
const KEY_SNAPSHOT: &str = "snapshot_parquet";
/// Format 1: the snapshot as JSON ([`JsonSnapshot`]); converted at open.
const KEY_SNAPSHOT_JSON: &str = "snapshot";

/// Version of the redb file layout and of the snapshot encoding: 2 keeps the
/// snapshot as a Parquet file, 1 kept it as JSON.
const FORMAT_VERSION: u32 = 2;
const JSON_SNAPSHOT_FORMAT: u32 = 1;

/// Key-value metadata a snapshot file adds to a manifest's.
const KV_SNAPSHOT_FORMAT: &str = "lakehouse.snapshot.format_version";
const KV_SNAPSHOT_ID: &str = "lakehouse.snapshot.id";
const KV_LAST_APPLIED: &str = "lakehouse.snapshot.last_applied";
const KV_MEMBERSHIP: &str = "lakehouse.snapshot.membership";
/// The first bytes of every Parquet file; a format 1 snapshot is JSON.
const PARQUET_MAGIC: &[u8] = b"PAR1";

const DB_FILE: &str = "catalog.redb";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Failures inside one redb access, mapped to openraft's error subjects at the trait boundary.
#[derive(Debug, thiserror::Error)]
enum DbError {
    // Boxed: redb's error is large and these results are returned on every access.
    #[error(transparent)]
    Redb(Box<redb::Error>),
    #[error("encoding: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("background write task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Format(String),
    #[error(transparent)]
    Manifest(Box<Error>),
}

impl From<Error> for DbError {
    fn from(e: Error) -> Self {
        DbError::Manifest(Box::new(e))
    }
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
redb_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn any(e: DbError) -> AnyError {
    AnyError::new(&e)
}

/// Opens (or creates) the catalog's redb file under `dir`. An in-process reopen
/// right after a shutdown may find the file still held by Raft tasks that are
/// winding down, so "already open" is retried briefly before it is reported.
pub(crate) async fn open_database(dir: &Path) -> Result<Arc<Database>, Error> {
    let path = dir.join(DB_FILE);
    let local = |reason: String| Error::LocalStore {
        path: path.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| local(format!("cannot create the directory: {e}")))?;
    let mut attempts = 0;
    let db = loop {
        match Database::create(&path) {
            Ok(db) => break db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if attempts < 40 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(local(
                    "the file is in use by another catalog (another `lakehouse` process on the same data dir?)"
                        .to_string(),
                ))
            }
            Err(e) => return Err(local(e.to_string())),
        }
    };
    init_tables(&db).map_err(|e| local(e.to_string()))?;
    Ok(Arc::new(db))
}

/// Creates both tables and stamps (or checks) the format version; a format 1
/// file has its JSON snapshot converted to Parquet in the same transaction.
fn init_tables(db: &Database) -> Result<(), DbError> {
    let txn = db.begin_write()?;
    {
        txn.open_table(LOGS)?;
        let mut meta = txn.open_table(META)?;
        let found = meta
            .get(KEY_FORMAT)?
            .map(|v| serde_json::from_slice::<u32>(v.value()))
            .transpose()?;
        match found {
            None => {
                meta.insert(KEY_FORMAT, serde_json::to_vec(&FORMAT_VERSION)?.as_slice())?;
            }
            Some(FORMAT_VERSION) => {}
            Some(JSON_SNAPSHOT_FORMAT) => {
                let json = meta.remove(KEY_SNAPSHOT_JSON)?.map(|v| v.value().to_vec());
                if let Some(json) = json {
                    let stored: JsonSnapshot = serde_json::from_slice(&json)?;
                    let applied = decode_json_snapshot(&stored.data)?;
                    let parquet = encode_snapshot(&stored.meta.snapshot_id, &applied)?;
                    meta.insert(KEY_SNAPSHOT, parquet.as_ref())?;
                    tracing::info!(snapshot = %stored.meta, "converted the local catalog snapshot from JSON to Parquet");
                }
                meta.insert(KEY_FORMAT, serde_json::to_vec(&FORMAT_VERSION)?.as_slice())?;
            }
            Some(other) => {
                return Err(DbError::Format(format!(
                    "format version {other} is not {FORMAT_VERSION}, the one this build reads; \
                     move the directory away to restore the catalog from the bucket"
                )))
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn read_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, DbError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META)?;
    let value = table.get(key)?;
    Ok(value
        .map(|v| serde_json::from_slice(v.value()))
        .transpose()?)
}

/// Runs a write transaction off the async threads (its fsync blocks).
async fn write_txn<F>(db: &Arc<Database>, durability: Durability, f: F) -> Result<(), DbError>
where
    F: FnOnce(&redb::WriteTransaction) -> Result<(), DbError> + Send + 'static,
{
    let db = Arc::clone(db);
    tokio::task::spawn_blocking(move || {
        let mut txn = db.begin_write()?;
        txn.set_durability(durability);
        f(&txn)?;
        txn.commit()?;
        Ok(())
    })
    .await?
}

async fn put_meta<T: Serialize>(
    db: &Arc<Database>,
    key: &'static str,
    value: &T,
    durability: Durability,
) -> Result<(), DbError> {
    let bytes = serde_json::to_vec(value)?;
    write_txn(db, durability, move |txn| {
        txn.open_table(META)?.insert(key, bytes.as_slice())?;
        Ok(())
    })
    .await
}

/// The durable Raft log.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry<TypeConfig>>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGS)?;
        let mut entries = Vec::new();
        for item in table.range::<u64>(range)? {
            let (_, value) = item?;
            entries.push(serde_json::from_slice(value.value())?);
        }
        Ok(entries)
    }

    fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGS)?;
        let last = table.last()?;
        Ok(match last {
            Some((_, value)) => {
                Some(serde_json::from_slice::<Entry<TypeConfig>>(value.value())?.log_id)
            }
            None => None,
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.entries(bounds)
            .map_err(|e| StorageIOError::read_logs(any(e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            read_meta(&self.db, KEY_LAST_PURGED).map_err(|e| StorageIOError::read_logs(any(e)))?;
        let last_log_id = self
            .last_log_id()
            .map_err(|e| StorageIOError::read_logs(any(e)))?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        put_meta(&self.db, KEY_VOTE, vote, Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_vote(any(e)).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        read_meta(&self.db, KEY_VOTE).map_err(|e| StorageIOError::read_vote(any(e)).into())
    }

    /// Saved so a restart re-applies committed entries past the snapshot at once.
    /// Not fsync'd: a lost value only means the leader re-commits those entries
    /// after its election, which it does anyway.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        put_meta(&self.db, KEY_COMMITTED, &committed, Durability::Eventual)
            .await
            .map_err(|e| StorageIOError::write(any(e)).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let committed: Option<Option<LogId<NodeId>>> =
            read_meta(&self.db, KEY_COMMITTED).map_err(|e| StorageIOError::read(any(e)))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, serde_json::to_vec(&e)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        write_txn(&self.db, Durability::Immediate, move |txn| {
            let mut table = txn.open_table(LOGS)?;
            for (index, bytes) in &encoded {
                table.insert(*index, bytes.as_slice())?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(any(e)))?;
        // The transaction is durable: tell Raft the entries are flushed.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        tracing::debug!(since = %log_id, "truncating the catalog log");
        write_txn(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(LOGS)?
                .retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(any(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        tracing::debug!(upto = %log_id, "purging the catalog log");
        let purged = serde_json::to_vec(&log_id)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        // One transaction: the last-purged id and the deletion land together.
        write_txn(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(META)?
                .insert(KEY_LAST_PURGED, purged.as_slice())?;
            txn.open_table(LOGS)?
                .retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(any(e)).into())
    }
}

/// What the state machine holds: the catalog plus Raft's bookkeeping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) last_membership: StoredMembership<NodeId, BasicNode>,
    pub(crate) catalog: CatalogState,
}

/// A format 1 snapshot's bytes (JSON), still read from old files and from
/// leaders running the previous build.
#[derive(Deserialize)]
struct SnapshotBody {
    format_version: u32,
    applied: Applied,
}

/// How format 1 kept its snapshot in redb.
#[derive(Deserialize)]
struct JsonSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

fn decode_json_snapshot(data: &[u8]) -> Result<Applied, DbError> {
    let body: SnapshotBody = serde_json::from_slice(data)?;
    if body.format_version != JSON_SNAPSHOT_FORMAT {
        return Err(DbError::Format(format!(
            "JSON snapshot format version {} is not {JSON_SNAPSHOT_FORMAT}",
            body.format_version
        )));
    }
    Ok(body.applied)
}

/// Encodes `applied` as a snapshot file (see the module comment).
fn encode_snapshot(snapshot_id: &str, applied: &Applied) -> Result<Bytes, DbError> {
    let extra = vec![
        KeyValue::new(KV_SNAPSHOT_FORMAT.to_string(), FORMAT_VERSION.to_string()),
        KeyValue::new(KV_SNAPSHOT_ID.to_string(), snapshot_id.to_string()),
        KeyValue::new(
            KV_LAST_APPLIED.to_string(),
            serde_json::to_string(&applied.last_applied)?,
        ),
        KeyValue::new(
            KV_MEMBERSHIP.to_string(),
            serde_json::to_string(&applied.last_membership)?,
        ),
    ];
    Ok(manifest::encode_with_metadata(&applied.catalog, extra)?)
}

/// The snapshot's meta from its file's key-value metadata.
fn snapshot_meta(
    kv: &BTreeMap<String, String>,
) -> Result<SnapshotMeta<NodeId, BasicNode>, DbError> {
    let get = |key: &str| {
        kv.get(key).ok_or_else(|| {
            DbError::Format(format!("the snapshot file has no {key} in its metadata"))
        })
    };
    let format = get(KV_SNAPSHOT_FORMAT)?;
    if *format != FORMAT_VERSION.to_string() {
        return Err(DbError::Format(format!(
            "snapshot format version {format} is not {FORMAT_VERSION}, the one this build reads; \
             run the same lakehouse version on every catalog node"
        )));
    }
    Ok(SnapshotMeta {
        last_log_id: serde_json::from_str(get(KV_LAST_APPLIED)?)?,
        last_membership: serde_json::from_str(get(KV_MEMBERSHIP)?)?,
        snapshot_id: get(KV_SNAPSHOT_ID)?.clone(),
    })
}

/// Decodes a snapshot file of this format.
fn decode_snapshot(data: Bytes) -> Result<Applied, DbError> {
    let (catalog, kv) = manifest::decode_with_metadata("raft snapshot", data)?;
    let meta = snapshot_meta(&kv)?;
    Ok(Applied {
        last_applied: meta.last_log_id,
        last_membership: meta.last_membership,
        catalog,
    })
}

/// Runs `work` on the blocking pool: a large catalog takes a while to encode or decode.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(work).await?
}

/// Persists a snapshot file; written before Raft may purge the log it covers.
async fn put_snapshot(db: &Arc<Database>, data: Bytes) -> Result<(), DbError> {
    write_txn(db, Durability::Immediate, move |txn| {
        txn.open_table(META)?.insert(KEY_SNAPSHOT, data.as_ref())?;
        Ok(())
    })
    .await
}

fn read_snapshot(db: &Database) -> Result<Option<Bytes>, DbError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(META)?;
    let value = table.get(KEY_SNAPSHOT)?;
    Ok(value.map(|v| Bytes::from(v.value().to_vec())))
}

/// The applied state, shared between the state machine (writer) and the
/// [`Catalog`](crate::Catalog) API (readers).
#[derive(Debug)]
pub(crate) struct Shared {
    applied: RwLock<Applied>,
    /// The catalog version after each applied batch; lease waiters watch it.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn new(applied: Applied) -> Self {
        let (changed, _) = watch::channel(applied.catalog.catalog_version);
        Self {
            applied: RwLock::new(applied),
            changed,
        }
    }

    // A panic while holding the lock cannot leave `Applied` half-changed (apply
    // only assigns whole values), so a poisoned lock is still safe to use.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The in-memory state machine; its snapshots are persisted in the redb file.
pub struct StateMachineStore {
    db: Arc<Database>,
    shared: Arc<Shared>,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Loads the persisted snapshot, if any; openraft then re-applies the log after it.
    pub(crate) fn new(db: Arc<Database>, dir: &Path) -> Result<Self, Error> {
        let path = dir.join(DB_FILE).display().to_string();
        let stored = read_snapshot(&db).map_err(|e| Error::LocalStore {
            path: path.clone(),
            reason: format!("reading the snapshot: {e}"),
        })?;
        let applied = match stored {
            Some(data) => decode_snapshot(data).map_err(|e| Error::LocalStore {
                path,
                reason: format!("decoding the snapshot: {e}; move the directory away to restore the catalog from the bucket"),
            })?,
            None => Applied::default(),
        };
        Ok(Self {
            db,
            shared: Arc::new(Shared::new(applied)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    fn builder(&self) -> SnapshotBuilder {
        SnapshotBuilder {
            db: Arc::clone(&self.db),
            shared: Arc::clone(&self.shared),
            snapshot_seq: Arc::clone(&self.snapshot_seq),
        }
    }
}

pub struct SnapshotBuilder {
    db: Arc<Database>,
    shared: Arc<Shared>,
    snapshot_seq: Arc<AtomicU64>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // Copy under the lock, encode outside it.
        let applied = self.shared.read().clone();
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &applied.last_applied {
            Some(last) => format!("{}-{}-{seq}", last.leader_id, last.index),
            None => format!("--{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership.clone(),
            snapshot_id,
        };
        let failed = |e| StorageIOError::write_snapshot(Some(meta.signature()), any(e));
        let id = meta.snapshot_id.clone();
        let data = off_thread(move || encode_snapshot(&id, &applied))
            .await
            .map_err(failed)?;
        put_snapshot(&self.db, data.clone()).await.map_err(failed)?;
        tracing::debug!(snapshot = %meta, bytes = data.len(), "built catalog snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.into())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let version = {
            let mut applied = self.shared.write();
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Done,
                    EntryPayload::Normal(request) => state::apply(&mut applied.catalog, request),
                    EntryPayload::Membership(membership) => {
                        applied.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                        Response::Done
                    }
                };
                responses.push(response);
            }
            applied.catalog.catalog_version
        };
        self.shared.changed.send_if_modified(|v| {
            let modified = *v != version;
            *v = version;
            modified
        });
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.builder()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = Bytes::from(snapshot.into_inner());
        let bytes = data.len();
        let unreadable = |e| StorageIOError::read_snapshot(Some(meta.signature()), any(e));
        let snapshot_id = meta.snapshot_id.clone();
        let (data, applied) = off_thread(move || {
            if data.starts_with(PARQUET_MAGIC) {
                Ok((data.clone(), decode_snapshot(data)?))
            } else {
                // A leader still on format 1: keep the snapshot in this build's format.
                let applied = decode_json_snapshot(&data)?;
                Ok((encode_snapshot(&snapshot_id, &applied)?, applied))
            }
        })
        .await
        .map_err(unreadable)?;
        if applied.last_applied != meta.last_log_id
            || applied.last_membership != meta.last_membership
        {
            return Err(unreadable(DbError::Format(format!(
                "the snapshot file is at {:?} with membership {} but was sent as {meta}",
                applied.last_applied, applied.last_membership
            )))
            .into());
        }
        put_snapshot(&self.db, data)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), any(e)))?;
        let version = applied.catalog.catalog_version;
        *self.shared.write() = applied;
        self.shared.changed.send_replace(version);
        tracing::info!(
            snapshot = %meta,
            bytes,
            catalog_version = version,
            "installed a catalog snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let unreadable = |e| StorageIOError::read_snapshot(None, any(e));
        let Some(data) = read_snapshot(&self.db).map_err(unreadable)? else {
            return Ok(None);
        };
        // Only the footer: the meta is in the file's key-value metadata.
        let kv = manifest::key_values("raft snapshot", data.clone())
            .map_err(|e| unreadable(e.into()))?;
        let meta = snapshot_meta(&kv).map_err(unreadable)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.into())),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, Membership};
    use tempfile::TempDir;

    use super::*;
    use crate::model::Lease;

    /// A state machine state with a lease, at log index 42 of a three-node cluster.
    fn sample() -> Applied {
        let log_id = LogId::new(CommittedLeaderId::new(3, 1), 42);
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], ());
        let mut catalog = CatalogState {
            last_token: 7,
            catalog_version: 9,
            ..Default::default()
        };
        catalog.leases.insert(
            "trips".to_string(),
            Lease {
                table: "trips".to_string(),
                holder: "writer-a".to_string(),
                token: 7,
                expires_at_ms: 1_000,
                issuer: Default::default(),
            },
        );
        Applied {
            last_applied: Some(log_id),
            last_membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(1, 1), 5)),
                membership,
            ),
            catalog,
        }
    }

    async fn open(dir: &Path) -> (Arc<Database>, StateMachineStore) {
        let db = open_database(dir).await.unwrap();
        let sm = StateMachineStore::new(Arc::clone(&db), dir).unwrap();
        (db, sm)
    }

    #[tokio::test]
    async fn snapshot_is_a_manifest_that_names_its_raft_position() {
        let dir = TempDir::new().unwrap();
        let (_db, mut sm) = open(dir.path()).await;
        let applied = sample();
        *sm.shared.write() = applied.clone();
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let data = Bytes::from(snapshot.snapshot.into_inner());

        // Any manifest reader reads the catalog in it.
        let (catalog, kv) = manifest::decode_with_metadata("test", data.clone()).unwrap();
        assert_eq!(catalog, applied.catalog);
        assert_eq!(kv[manifest::KEY_FORMAT_VERSION], manifest::FORMAT_VERSION);
        assert_eq!(kv[KV_SNAPSHOT_FORMAT], "2");
        assert_eq!(kv[KV_SNAPSHOT_ID], snapshot.meta.snapshot_id);
        assert_eq!(snapshot_meta(&kv).unwrap(), snapshot.meta);
        assert_eq!(snapshot.meta.last_log_id, applied.last_applied);
        assert_eq!(snapshot.meta.last_membership, applied.last_membership);

        // Reopened, the state machine starts from it.
        drop(sm);
        drop(_db);
        let (_db, mut sm) = open(dir.path()).await;
        assert_eq!(sm.shared.read().catalog, applied.catalog);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
        assert_eq!(current.snapshot.into_inner(), data.to_vec());
    }

    /// Writes a format 1 file: the snapshot as JSON.
    fn write_format_1(dir: &Path, meta: &SnapshotMeta<NodeId, BasicNode>, applied: &Applied) {
        let body = serde_json::json!({ "format_version": 1, "applied": applied });
        let stored = serde_json::json!({
            "meta": meta,
            "data": serde_json::to_vec(&body).unwrap(),
        });
        let db = Database::create(dir.join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            txn.open_table(LOGS).unwrap();
            let mut table = txn.open_table(META).unwrap();
            table.insert(KEY_FORMAT, b"1".as_slice()).unwrap();
            table
                .insert(
                    KEY_SNAPSHOT_JSON,
                    serde_json::to_vec(&stored).unwrap().as_slice(),
                )
                .unwrap();
        }
        txn.commit().unwrap();
    }

    #[tokio::test]
    async fn format_1_json_snapshot_is_converted_at_open() {
        let dir = TempDir::new().unwrap();
        let applied = sample();
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership.clone(),
            snapshot_id: "3-1-42-0".to_string(),
        };
        write_format_1(dir.path(), &meta, &applied);

        let (db, mut sm) = open(dir.path()).await;
        assert_eq!(sm.shared.read().catalog, applied.catalog);
        assert_eq!(
            sm.applied_state().await.unwrap(),
            (applied.last_applied, applied.last_membership.clone())
        );
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, meta);
        assert!(current.snapshot.get_ref().starts_with(PARQUET_MAGIC));
        assert_eq!(
            read_meta::<u32>(&db, KEY_FORMAT).unwrap(),
            Some(FORMAT_VERSION)
        );
        assert!(read_meta::<serde_json::Value>(&db, KEY_SNAPSHOT_JSON)
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn json_snapshot_from_an_older_leader_installs_as_parquet() {
        let dir = TempDir::new().unwrap();
        let (_db, mut sm) = open(dir.path()).await;
        let applied = sample();
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership.clone(),
            snapshot_id: "3-1-42-0".to_string(),
        };
        let body = serde_json::json!({ "format_version": 1, "applied": &applied });
        let data = Box::new(Cursor::new(serde_json::to_vec(&body).unwrap()));
        sm.install_snapshot(&meta, data).await.unwrap();
        assert_eq!(sm.shared.read().catalog, applied.catalog);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, meta);
        assert!(current.snapshot.get_ref().starts_with(PARQUET_MAGIC));

        // A file whose position disagrees with the meta it came with is refused.
        let other = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 43)),
            ..meta
        };
        let err = sm
            .install_snapshot(&other, current.snapshot)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("was sent as"), "{err}");
    }

    struct RedbBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
        async fn build(&self) -> StorageResult<(TempDir, LogStore, StateMachineStore)> {
            let dir = TempDir::new().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
            let db = open_database(dir.path())
                .await
                .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
            let sm = StateMachineStore::new(Arc::clone(&db), dir.path())
                .map_err(|e| StorageIOError::read(AnyError::new(&e)))?;
            Ok((dir, LogStore::new(db), sm))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn openraft_storage_suite() {
        if let Err(e) = Suite::test_all(RedbBuilder) {
            panic!("openraft storage suite: {e}");
        }
    }
}
