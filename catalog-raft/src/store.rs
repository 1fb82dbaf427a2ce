//! openraft storage (v2 traits) on redb: the durable log (entries, vote,
//! committed, last purged) and the persisted snapshot live in one redb file; the
//! state machine is in memory and rebuilt from the snapshot plus the log on start.
//! redb commits with `Durability::Immediate` are fsync'd before they return.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::Error;
use crate::model::CatalogState;
use crate::request::{NodeId, Response, TypeConfig};
use crate::state;

/// Log entries by index, JSON-encoded `Entry<TypeConfig>`.
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Vote, committed, last purged, snapshot and the file's format version, JSON-encoded.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_FORMAT: &str = "format_version";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_SNAPSHOT: &str = "snapshot";

/// Version of the redb file layout and of the snapshot encoding.
const FORMAT_VERSION: u32 = 1;

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

/// Creates both tables and stamps (or checks) the format version.
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

/// The snapshot's bytes, on disk and on the wire.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    format_version: u32,
    applied: Applied,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
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
        let stored: Option<StoredSnapshot> =
            read_meta(&db, KEY_SNAPSHOT).map_err(|e| Error::LocalStore {
                path: path.clone(),
                reason: format!("reading the snapshot: {e}"),
            })?;
        let applied = match stored {
            Some(s) => decode_snapshot(&s.data).map_err(|e| Error::LocalStore {
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

fn decode_snapshot(data: &[u8]) -> Result<Applied, DbError> {
    let body: SnapshotBody = serde_json::from_slice(data)?;
    if body.format_version != FORMAT_VERSION {
        return Err(DbError::Format(format!(
            "snapshot format version {} is not {FORMAT_VERSION}",
            body.format_version
        )));
    }
    Ok(body.applied)
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
        let data = serde_json::to_vec(&SnapshotBody {
            format_version: FORMAT_VERSION,
            applied,
        })
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        // Persisted before Raft may purge the log entries it covers.
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        put_meta(&self.db, KEY_SNAPSHOT, &stored, Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), any(e)))?;
        tracing::debug!(snapshot = %meta, bytes = data.len(), "built catalog snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
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
        let data = snapshot.into_inner();
        let applied = decode_snapshot(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), any(e)))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        put_meta(&self.db, KEY_SNAPSHOT, &stored, Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), any(e)))?;
        let version = applied.catalog.catalog_version;
        *self.shared.write() = applied;
        self.shared.changed.send_replace(version);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> = read_meta(&self.db, KEY_SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};
    use tempfile::TempDir;

    use super::*;

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
