//! Append-only journals on an object store (ADR-018): HNSW tuning trials, error
//! events. Object stores cannot append, so events are buffered in memory and each
//! flush writes them as one new object; an existing object is never rewritten
//! (every write is put-if-absent).
//!
//! Objects under the journal's prefix:
//! - `batch_{E}.jsonl`: the events of one flush, one JSON object per line; `E` is
//!   the flush time in microseconds since the Unix epoch, strictly increasing per writer.
//! - `batch_{E}.compacted.jsonl`: written by [`AppendLog::compact`]: every event of
//!   the objects up to epoch `E`, in order, where `E` is the newest merged batch's epoch.
//!
//! The compacted object takes the newest merged epoch, not a fresh one, because it
//! must sort after everything it merged and before every batch flushed later: with
//! a fresh timestamp, a batch another writer flushed while compaction ran would sort
//! before the merged events although its events are newer. The `.compacted` suffix
//! keeps its name apart from that newest batch, which still exists while the merged
//! object is written: the merged batches are deleted only afterwards, so a crash in
//! between loses nothing.
//!
//! Readers therefore take the newest compacted object and the batches after its
//! epoch; objects at or before that epoch are merged copies awaiting deletion and
//! are skipped, so no event is read twice.
//!
//! One writer per prefix (give each node its own prefix): epochs order events only
//! within one writer's clock. Events still buffered when the log is dropped are
//! lost; call [`AppendLog::flush`] before shutting down.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, info, instrument};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::storage::Bucket;

/// Events buffered before [`AppendLog::append`] flushes, unless set otherwise.
pub const DEFAULT_FLUSH_THRESHOLD: usize = 64;
/// Most recent events kept in memory, unless set otherwise.
pub const DEFAULT_RING_CAPACITY: usize = 256;

const BATCH_PREFIX: &str = "batch_";
const BATCH_SUFFIX: &str = ".jsonl";
const COMPACTED_SUFFIX: &str = ".compacted.jsonl";
/// Later microseconds a flush tries when its batch name is taken.
const MAX_NAME_ATTEMPTS: u64 = 1_000;
/// Listings a reader retries when a compaction deletes a batch under it.
const MAX_READ_ATTEMPTS: usize = 3;

/// A write-once batched journal over a bucket and a key prefix; all methods take `&self`.
#[derive(Debug)]
pub struct AppendLog {
    bucket: Bucket,
    dir: Path,
    clock: Arc<dyn Clock>,
    flush_threshold: usize,
    ring_capacity: usize,
    memory: Mutex<Memory>,
    /// Held across a flush's or a compaction's I/O, so batches get increasing epochs
    /// and a compaction never races a flush of this log. Holds the newest epoch
    /// written or listed; `None` until this log first looks at the bucket.
    writer: tokio::sync::Mutex<Option<u64>>,
}

#[derive(Debug, Default)]
struct Memory {
    /// Encoded events not yet written, oldest first.
    pending: Vec<String>,
    /// The most recently appended events, oldest first, at most `ring_capacity`.
    recent: VecDeque<String>,
}

/// A journal object found by listing.
#[derive(Debug, Clone)]
struct Stored {
    epoch: u64,
    compacted: bool,
    location: Path,
}

/// What [`AppendLog::compact`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compaction {
    /// Objects merged into the new one.
    pub merged: usize,
    /// Events in the new object.
    pub events: usize,
    /// Key of the new object; `None` when there was nothing to merge.
    pub written: Option<String>,
    /// Objects deleted: the merged ones and copies an interrupted compaction left.
    pub deleted: usize,
}

impl AppendLog {
    /// A journal under `prefix` (e.g. `journal/hnsw_trials/`) flushing every
    /// [`DEFAULT_FLUSH_THRESHOLD`] events and remembering [`DEFAULT_RING_CAPACITY`].
    pub fn new(bucket: Bucket, prefix: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        let trimmed = prefix.trim_matches('/');
        let invalid = |reason: String| Error::Journal {
            location: format!("prefix `{prefix}`"),
            reason: format!("{reason}; use a key prefix such as journal/hnsw_trials/"),
        };
        if trimmed.is_empty() {
            return Err(invalid("the prefix is empty".to_string()));
        }
        let dir = Path::parse(trimmed).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            bucket,
            dir,
            clock,
            flush_threshold: DEFAULT_FLUSH_THRESHOLD,
            ring_capacity: DEFAULT_RING_CAPACITY,
            memory: Mutex::new(Memory::default()),
            writer: tokio::sync::Mutex::new(None),
        })
    }

    /// Flush once this many events are buffered (at least 1).
    pub fn with_flush_threshold(mut self, events: usize) -> Self {
        self.flush_threshold = events.max(1);
        self
    }

    /// Keep this many recent events in memory for [`recent`](Self::recent) (0: none).
    pub fn with_ring_capacity(mut self, events: usize) -> Self {
        self.ring_capacity = events;
        self
    }

    /// The key prefix, ending in `/`.
    pub fn prefix(&self) -> String {
        format!("{}/", self.dir)
    }

    /// Buffers `event`, and flushes when the buffer reaches the threshold. If that
    /// flush fails the events stay buffered for the next flush and the error is returned.
    pub async fn append(&self, event: &impl Serialize) -> Result<()> {
        let line = serde_json::to_string(event)
            .map_err(|e| self.error(format!("cannot encode an event as JSON: {e}")))?;
        let full = {
            let mut memory = self.memory();
            if self.ring_capacity > 0 {
                if memory.recent.len() == self.ring_capacity {
                    memory.recent.pop_front();
                }
                memory.recent.push_back(line.clone());
            }
            memory.pending.push(line);
            memory.pending.len() >= self.flush_threshold
        };
        if full {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the buffered events as one new batch object and returns its key;
    /// `None` (and no write) when nothing is buffered.
    #[instrument(skip_all, fields(prefix = %self.dir))]
    pub async fn flush(&self) -> Result<Option<String>> {
        let mut newest = self.writer.lock().await;
        let events = std::mem::take(&mut self.memory().pending);
        if events.is_empty() {
            return Ok(None);
        }
        match self.write_batch(&mut newest, &events).await {
            Ok(key) => Ok(Some(key)),
            Err(e) => {
                // Back in front of what was appended meanwhile, so a retry keeps the order.
                let mut memory = self.memory();
                let later = std::mem::replace(&mut memory.pending, events);
                memory.pending.extend(later);
                Err(e)
            }
        }
    }

    /// The most recent events appended through this log (flushed or not), oldest first.
    pub fn recent<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        let lines: Vec<String> = self.memory().recent.iter().cloned().collect();
        lines
            .iter()
            .map(|line| {
                serde_json::from_str(line).map_err(|e| {
                    self.error(format!(
                        "a recent event does not decode as the type asked for: {e}"
                    ))
                })
            })
            .collect()
    }

    /// Every flushed event in the bucket, in order (batch epoch, then line).
    /// Events still buffered are not included; [`recent`](Self::recent) has them.
    #[instrument(skip_all, fields(prefix = %self.dir))]
    pub async fn read_all<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        for _ in 1..MAX_READ_ATTEMPTS {
            if let Some(events) = self.try_read_all().await? {
                return Ok(events);
            }
        }
        self.try_read_all().await?.ok_or_else(|| {
            self.error(format!(
                "batches kept disappearing while being read ({MAX_READ_ATTEMPTS} attempts); \
                 is another process compacting this prefix? Retry, or give it its own prefix"
            ))
        })
    }

    /// Merges every batch, in order, into one new object and then deletes the
    /// merged ones (see the module docs for its name). No object is rewritten.
    #[instrument(skip_all, fields(prefix = %self.dir))]
    pub async fn compact(&self) -> Result<Compaction> {
        let mut newest = self.writer.lock().await;
        let stored = self.list().await?;
        let (live, stale) = split_live(&stored);
        let mut report = Compaction::default();
        let doomed: Vec<&Stored> = match live.last() {
            Some(last) if live.len() > 1 => {
                let mut body = Vec::new();
                for object in &live {
                    let bytes = self.fetch(object).await?.ok_or_else(|| {
                        self.error(format!(
                            "{} disappeared during compaction; is another process compacting \
                             this prefix? Give each writer its own prefix",
                            object.location
                        ))
                    })?;
                    report.events += count_lines(&bytes);
                    body.extend_from_slice(&bytes);
                    if !body.is_empty() && !body.ends_with(b"\n") {
                        body.push(b'\n');
                    }
                }
                let location = self.object_path(last.epoch, true);
                self.put_new(&location, PutPayload::from(Bytes::from(body)))
                    .await
                    .map_err(|e| match e {
                        object_store::Error::AlreadyExists { .. } => self.error(format!(
                            "{location} exists already: another process compacted this prefix; \
                             give each writer its own prefix"
                        )),
                        e => self.bucket.storage_error(e),
                    })?;
                *newest = (*newest).max(Some(last.epoch));
                report.merged = live.len();
                report.written = Some(location.to_string());
                stored.iter().collect()
            }
            _ => stale,
        };
        for object in doomed {
            match self.bucket.store().delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => report.deleted += 1,
                Err(e) => return Err(self.bucket.storage_error(e)),
            }
        }
        info!(
            merged = report.merged,
            events = report.events,
            deleted = report.deleted,
            "journal compacted"
        );
        Ok(report)
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        // The guarded data stays consistent even if a holder panicked: every
        // critical section is a few pushes and pops.
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, reason: String) -> Error {
        Error::Journal {
            location: format!("{}/ in bucket `{}`", self.dir, self.bucket.name()),
            reason,
        }
    }

    fn object_path(&self, epoch: u64, compacted: bool) -> Path {
        let suffix = if compacted {
            COMPACTED_SUFFIX
        } else {
            BATCH_SUFFIX
        };
        self.dir
            .clone()
            .join(format!("{BATCH_PREFIX}{epoch}{suffix}"))
    }

    async fn put_new(&self, location: &Path, payload: PutPayload) -> object_store::Result<()> {
        self.bucket
            .store()
            .put_opts(location, payload, PutMode::Create.into())
            .await
            .map(|_| ())
    }

    /// Writes `events` under the first free epoch from max(now, newest + 1).
    async fn write_batch(&self, newest: &mut Option<u64>, events: &[String]) -> Result<String> {
        let floor = match *newest {
            Some(epoch) => Some(epoch),
            // Learn what an earlier run wrote, so a clock that went back still appends after it.
            None => self.list().await?.iter().map(|s| s.epoch).max(),
        };
        let now = u64::try_from(self.clock.now_us()).unwrap_or(0);
        let first = floor.map_or(now, |f| now.max(f.saturating_add(1)));
        let mut body = events.join("\n");
        body.push('\n');
        let payload = PutPayload::from(Bytes::from(body));
        for epoch in first..first.saturating_add(MAX_NAME_ATTEMPTS) {
            let location = self.object_path(epoch, false);
            match self.put_new(&location, payload.clone()).await {
                Ok(()) => {
                    *newest = Some(epoch);
                    debug!(key = %location, events = events.len(), "journal batch written");
                    return Ok(location.to_string());
                }
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(self.bucket.storage_error(e)),
            }
        }
        Err(self.error(format!(
            "{MAX_NAME_ATTEMPTS} batch names from epoch {first} on are all taken; \
             is another process writing to this prefix? Give each writer its own prefix"
        )))
    }

    /// Journal objects directly under the prefix, in epoch order; other keys are ignored.
    async fn list(&self) -> Result<Vec<Stored>> {
        let objects: Vec<_> = self
            .bucket
            .store()
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(|e| self.bucket.storage_error(e))?;
        let mut stored: Vec<Stored> = objects
            .into_iter()
            .filter_map(|meta| {
                let (epoch, compacted) = {
                    let mut rest = meta.location.prefix_match(&self.dir)?;
                    let name = rest.next()?;
                    if rest.next().is_some() {
                        return None;
                    }
                    parse_name(name.as_ref())?
                };
                Some(Stored {
                    epoch,
                    compacted,
                    location: meta.location,
                })
            })
            .collect();
        // A compacted object sorts before the plain batch of its epoch (which it contains).
        stored.sort_by_key(|s| (s.epoch, !s.compacted));
        Ok(stored)
    }

    /// The object's bytes, or `None` when it was deleted since it was listed.
    async fn fetch(&self, object: &Stored) -> Result<Option<Bytes>> {
        let result = match self.bucket.store().get(&object.location).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.bucket.storage_error(e)),
        }
    }

    /// All events, or `None` when a listed object vanished (a compaction deleted it).
    async fn try_read_all<T: DeserializeOwned>(&self) -> Result<Option<Vec<T>>> {
        let stored = self.list().await?;
        let (live, _) = split_live(&stored);
        let mut events = Vec::new();
        for object in live {
            let Some(bytes) = self.fetch(object).await? else {
                return Ok(None);
            };
            let text = std::str::from_utf8(&bytes).map_err(|e| {
                self.error(format!(
                    "{} is not UTF-8 text ({e}); move it out of the journal prefix",
                    object.location
                ))
            })?;
            for (number, line) in text.lines().enumerate() {
                if line.is_empty() {
                    continue;
                }
                let event = serde_json::from_str(line).map_err(|e| {
                    self.error(format!(
                        "{} line {} is not an event of the type asked for ({e}); \
                         move the object out of the journal prefix if another program wrote it",
                        object.location,
                        number + 1
                    ))
                })?;
                events.push(event);
            }
        }
        Ok(Some(events))
    }
}

/// `batch_{epoch}.jsonl` → `(epoch, false)`, `batch_{epoch}.compacted.jsonl` → `(epoch, true)`.
fn parse_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix(BATCH_PREFIX)?;
    let (digits, compacted) = match rest.strip_suffix(COMPACTED_SUFFIX) {
        Some(digits) => (digits, true),
        None => (rest.strip_suffix(BATCH_SUFFIX)?, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, compacted))
}

/// Splits objects (in epoch order) into the ones to read, in order, and the
/// merged copies the newest compacted object already contains.
fn split_live(stored: &[Stored]) -> (Vec<&Stored>, Vec<&Stored>) {
    let base = stored
        .iter()
        .filter(|s| s.compacted)
        .max_by_key(|s| s.epoch)
        .map(|s| s.epoch);
    match base {
        None => (stored.iter().collect(), Vec::new()),
        Some(base) => stored
            .iter()
            .partition(|s| s.epoch > base || (s.epoch == base && s.compacted)),
    }
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .count()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use object_store::ObjectStore;
    use serde::Deserialize;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::StorageConfig;
    use crate::storage::PRIMARY_BUCKET;

    const PREFIX: &str = "journal/hnsw_trials/";
    /// The manual clock's start, in ms (so batch epochs are START_MS * 1000 µs on).
    const START_MS: i64 = 1_700_000_000_000;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Event {
        n: u32,
    }

    fn events(range: std::ops::Range<u32>) -> Vec<Event> {
        range.map(|n| Event { n }).collect()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        bucket: Bucket,
        clock: Arc<ManualClock>,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let bucket = Bucket::open(
                PRIMARY_BUCKET,
                dir.path().to_str().unwrap(),
                &StorageConfig::default(),
            )
            .unwrap();
            Self {
                _dir: dir,
                bucket,
                clock: Arc::new(ManualClock::new(START_MS)),
            }
        }

        fn log(&self, threshold: usize) -> AppendLog {
            AppendLog::new(self.bucket.clone(), PREFIX, self.clock.clone())
                .unwrap()
                .with_flush_threshold(threshold)
        }

        /// Every object in the bucket: key → (e_tag, size, last_modified, content).
        async fn objects(&self) -> BTreeMap<String, (Option<String>, u64, String, Bytes)> {
            let store = self.bucket.store();
            let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
            let mut objects = BTreeMap::new();
            for meta in metas {
                let content = store.get(&meta.location).await.unwrap().bytes().await;
                objects.insert(
                    meta.location.to_string(),
                    (
                        meta.e_tag,
                        meta.size,
                        meta.last_modified.to_string(),
                        content.unwrap(),
                    ),
                );
            }
            objects
        }

        async fn keys(&self) -> Vec<String> {
            self.objects().await.into_keys().collect()
        }
    }

    async fn append_all(log: &AppendLog, events: &[Event]) {
        for event in events {
            log.append(event).await.unwrap();
        }
    }

    #[tokio::test]
    async fn flushes_at_the_threshold() {
        let f = Fixture::new();
        let log = f.log(3);
        append_all(&log, &events(0..2)).await;
        assert!(
            f.keys().await.is_empty(),
            "below the threshold nothing is written"
        );
        log.append(&Event { n: 2 }).await.unwrap();
        let epoch = START_MS * 1000;
        assert_eq!(
            f.keys().await,
            [format!("{PREFIX}batch_{epoch}.jsonl")],
            "one object per flush, named by the clock's microseconds"
        );
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..3));
        let body = &f.objects().await[&format!("{PREFIX}batch_{epoch}.jsonl")].3;
        assert_eq!(body.as_ref(), b"{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n");
    }

    #[tokio::test]
    async fn explicit_flush_and_empty_flush() {
        let f = Fixture::new();
        let log = f.log(100);
        assert_eq!(log.flush().await.unwrap(), None);
        assert!(f.keys().await.is_empty(), "an empty flush writes nothing");
        append_all(&log, &events(0..2)).await;
        let key = log.flush().await.unwrap().unwrap();
        assert_eq!(f.keys().await, [key]);
        assert_eq!(log.flush().await.unwrap(), None, "the buffer was emptied");
        assert_eq!(f.keys().await.len(), 1);
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..2));
    }

    #[tokio::test]
    async fn batches_read_back_in_order() {
        let f = Fixture::new();
        let log = f.log(2);
        // The clock stands still: later batches take the next microseconds.
        append_all(&log, &events(0..6)).await;
        f.clock.advance_ms(5);
        append_all(&log, &events(6..8)).await;
        let epoch = START_MS * 1000;
        assert_eq!(
            f.keys().await,
            [
                format!("{PREFIX}batch_{epoch}.jsonl"),
                format!("{PREFIX}batch_{}.jsonl", epoch + 1),
                format!("{PREFIX}batch_{}.jsonl", epoch + 2),
                format!("{PREFIX}batch_{}.jsonl", epoch + 5_000),
            ]
        );
        // A new writer whose clock went back still appends after what exists.
        let behind = Arc::new(ManualClock::new(START_MS - 60_000));
        let restarted = AppendLog::new(f.bucket.clone(), PREFIX, behind).unwrap();
        restarted.append(&Event { n: 8 }).await.unwrap();
        let key = restarted.flush().await.unwrap().unwrap();
        assert_eq!(key, format!("{PREFIX}batch_{}.jsonl", epoch + 5_001));
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..9));
        // Numeric, not lexical, epoch order: batch_9 before batch_10.
        let other = AppendLog::new(f.bucket.clone(), "journal/other", f.clock.clone()).unwrap();
        for (epoch, n) in [(10, 1), (9, 0)] {
            f.bucket
                .store()
                .put(
                    &Path::from(format!("journal/other/batch_{epoch}.jsonl")),
                    PutPayload::from(format!("{{\"n\":{n}}}\n")),
                )
                .await
                .unwrap();
        }
        assert_eq!(other.read_all::<Event>().await.unwrap(), events(0..2));
    }

    #[tokio::test]
    async fn compaction_keeps_order_and_later_batches_follow() {
        let f = Fixture::new();
        let log = f.log(2);
        append_all(&log, &events(0..6)).await;
        let newest = START_MS * 1000 + 2;
        let report = log.compact().await.unwrap();
        let compacted = format!("{PREFIX}batch_{newest}.compacted.jsonl");
        assert_eq!(
            report,
            Compaction {
                merged: 3,
                events: 6,
                written: Some(compacted.clone()),
                deleted: 3,
            }
        );
        assert_eq!(f.keys().await, [compacted]);
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..6));

        // Nothing to merge: one object.
        assert_eq!(log.compact().await.unwrap(), Compaction::default());

        append_all(&log, &events(6..10)).await;
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..10));
        let report = log.compact().await.unwrap();
        assert_eq!(report.merged, 3, "the compacted object and two new batches");
        assert_eq!(
            f.keys().await,
            [format!("{PREFIX}batch_{}.compacted.jsonl", newest + 2)]
        );
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..10));
        append_all(&log, &events(10..12)).await;
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..12));
    }

    #[tokio::test]
    async fn an_interrupted_compaction_reads_once_and_finishes() {
        let f = Fixture::new();
        let log = f.log(2);
        append_all(&log, &events(0..4)).await;
        // A compaction that wrote its object but died before deleting the batches.
        let store = f.bucket.store();
        let mut merged = Vec::new();
        for (_, (_, _, _, body)) in f.objects().await {
            merged.extend_from_slice(&body);
        }
        let newest = START_MS * 1000 + 1;
        store
            .put(
                &Path::from(format!("{PREFIX}batch_{newest}.compacted.jsonl")),
                PutPayload::from(merged),
            )
            .await
            .unwrap();
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..4));
        let report = log.compact().await.unwrap();
        assert_eq!((report.written, report.deleted), (None, 2));
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..4));
    }

    #[tokio::test]
    async fn no_object_is_ever_rewritten() {
        let f = Fixture::new();
        let log = f.log(2);
        // Another object already holds the name the first flush wants.
        let epoch = START_MS * 1000;
        let foreign = format!("{PREFIX}batch_{epoch}.jsonl");
        f.bucket
            .store()
            .put(
                &Path::from(foreign.as_str()),
                PutPayload::from_static(b"{\"n\":100}\n"),
            )
            .await
            .unwrap();
        let mut seen = f.objects().await;
        let mut check = |now: BTreeMap<_, _>| {
            for (key, before) in &seen {
                if let Some(after) = now.get(key) {
                    assert_eq!(before, after, "{key} was rewritten");
                }
            }
            seen = now;
        };
        let fresh = AppendLog::new(f.bucket.clone(), PREFIX, f.clock.clone())
            .unwrap()
            .with_flush_threshold(2);
        // This writer has not listed yet: its first put collides and moves on.
        fresh.append(&Event { n: 0 }).await.unwrap();
        fresh.append(&Event { n: 1 }).await.unwrap();
        check(f.objects().await);
        append_all(&log, &events(2..6)).await;
        check(f.objects().await);
        log.compact().await.unwrap();
        check(f.objects().await);
        append_all(&log, &events(6..8)).await;
        log.compact().await.unwrap();
        check(f.objects().await);
        let mut all = vec![Event { n: 100 }];
        all.extend(events(0..8));
        assert_eq!(log.read_all::<Event>().await.unwrap(), all);
    }

    #[tokio::test]
    async fn recent_events_come_from_memory() {
        let f = Fixture::new();
        let log = f.log(100).with_ring_capacity(3);
        append_all(&log, &events(0..5)).await;
        assert_eq!(log.recent::<Event>().unwrap(), events(2..5));
        assert!(
            log.read_all::<Event>().await.unwrap().is_empty(),
            "not flushed yet"
        );
        log.flush().await.unwrap();
        assert_eq!(log.read_all::<Event>().await.unwrap(), events(0..5));
        assert_eq!(log.recent::<Event>().unwrap(), events(2..5));
    }

    #[tokio::test]
    async fn bad_prefix_and_bad_lines_say_what_to_do() {
        let f = Fixture::new();
        let err = AppendLog::new(f.bucket.clone(), "/", f.clock.clone()).unwrap_err();
        assert!(err.to_string().contains("journal/hnsw_trials/"), "{err}");
        let log = f.log(1);
        log.append(&Event { n: 0 }).await.unwrap();
        f.bucket
            .store()
            .put(
                &Path::from(format!("{PREFIX}batch_{}.jsonl", u64::MAX)),
                PutPayload::from_static(b"{\"n\":1}\nnot json\n"),
            )
            .await
            .unwrap();
        let err = log.read_all::<Event>().await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("batch_{}.jsonl line 2", u64::MAX)),
            "{err}"
        );
        assert!(err.contains("move the object out"), "{err}");
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_name("batch_12.jsonl"), Some((12, false)));
        assert_eq!(parse_name("batch_12.compacted.jsonl"), Some((12, true)));
        assert_eq!(parse_name("batch_.jsonl"), None);
        assert_eq!(parse_name("batch_+1.jsonl"), None);
        assert_eq!(parse_name("other.jsonl"), None);
    }
}
