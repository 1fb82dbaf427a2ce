//! Statements started by GetFlightInfo, kept for the DoGet that follows. The job
//! starts as soon as the statement is planned, so it runs while the FlightInfo
//! travels to the client and the client turns round with its DoGet. The ticket
//! carries `key ‖ SQL`: a DoGet that reaches another server, or comes after its
//! statement expired or was evicted, plans and runs the SQL again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY_LEN: usize = 16;
/// Statements whose DoGet never came are evicted oldest-first beyond this many.
const MAX_PLANNED: usize = 1_024;
/// A statement whose DoGet has not come this long after its GetFlightInfo is
/// dropped (its job cancelled, its buffered results freed).
const UNCLAIMED_TTL: Duration = Duration::from_secs(60);

type Key = [u8; KEY_LEN];

struct Inner<T> {
    kept: HashMap<Key, T>,
    order: VecDeque<(Key, Instant)>,
}

impl<T> Default for Inner<T> {
    fn default() -> Self {
        Self {
            kept: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T> Inner<T> {
    fn remove(&mut self, key: &Key) -> Option<T> {
        let kept = self.kept.remove(key)?;
        self.order.retain(|(k, _)| k != key);
        Some(kept)
    }
}

pub(crate) struct PlannedStatements<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

impl<T> Clone for PlannedStatements<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Default for PlannedStatements<T> {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
        }
    }
}

impl<T> PlannedStatements<T> {
    /// Keeps `statement` and returns the ticket handle for it.
    pub(crate) fn insert(&self, sql: &str, statement: T) -> Vec<u8> {
        let key = *uuid::Uuid::new_v4().as_bytes();
        self.keep(key, statement);
        let mut handle = key.to_vec();
        handle.extend_from_slice(sql.as_bytes());
        handle
    }

    /// Keeps the run of a prepared statement under its handle, replacing an
    /// earlier run whose DoGet never came; false for a malformed handle.
    pub(crate) fn insert_prepared(&self, prepared_handle: &[u8], run: T) -> bool {
        match <Key>::try_from(prepared_handle) {
            Ok(key) => {
                self.keep(key, run);
                true
            }
            Err(_) => false,
        }
    }

    fn keep(&self, key: Key, statement: T) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.remove(&key);
        while let Some(&(oldest, at)) = inner.order.front() {
            if inner.kept.len() < MAX_PLANNED && now.duration_since(at) < UNCLAIMED_TTL {
                break;
            }
            inner.order.pop_front();
            inner.kept.remove(&oldest);
        }
        inner.kept.insert(key, statement);
        inner.order.push_back((key, now));
    }

    /// The kept statement (each is used once) or, failing that, the SQL to plan again.
    pub(crate) fn take(&self, handle: &[u8]) -> Result<T, Option<String>> {
        if handle.len() < KEY_LEN {
            return Err(None);
        }
        let (key, sql) = handle.split_at(KEY_LEN);
        let kept = <Key>::try_from(key)
            .ok()
            .and_then(|key| self.lock().remove(&key));
        kept.ok_or_else(|| String::from_utf8(sql.to_vec()).ok())
    }

    /// Drops the kept statement of `handle` (a cancel before its DoGet); true if there was one.
    pub(crate) fn forget(&self, handle: &[u8]) -> bool {
        let Some(key) = handle.get(..KEY_LEN).and_then(|k| <Key>::try_from(k).ok()) else {
            return false;
        };
        let removed = self.lock().remove(&key);
        removed.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_used_once_then_the_sql_is_planned_again() {
        let planned = PlannedStatements::default();
        let handle = planned.insert("SELECT 1", "started");
        assert_eq!(planned.take(&handle), Ok("started"));
        assert_eq!(planned.take(&handle), Err(Some("SELECT 1".to_string())));
        assert_eq!(planned.take(b"short"), Err(None));
    }

    #[test]
    fn a_prepared_run_replaces_the_one_before() {
        let planned = PlannedStatements::default();
        let handle = *uuid::Uuid::new_v4().as_bytes();
        assert!(planned.insert_prepared(&handle, 1));
        assert!(planned.insert_prepared(&handle, 2));
        assert_eq!(planned.take(&handle), Ok(2));
        assert!(planned.take(&handle).is_err());
        assert!(!planned.insert_prepared(b"short", 3));
    }

    #[test]
    fn a_forgotten_statement_is_gone() {
        let planned = PlannedStatements::default();
        let handle = planned.insert("SELECT 1", ());
        assert!(planned.forget(&handle));
        assert!(!planned.forget(&handle));
        assert!(planned.take(&handle).is_err());
    }

    #[test]
    fn the_oldest_statements_are_evicted_beyond_the_limit() {
        let planned = PlannedStatements::default();
        let first = planned.insert("SELECT 0", 0);
        let handles: Vec<_> = (1..=MAX_PLANNED)
            .map(|i| planned.insert("SELECT i", i))
            .collect();
        assert!(planned.take(&first).is_err());
        assert_eq!(planned.take(&handles[0]), Ok(1));
        assert_eq!(planned.take(&handles[MAX_PLANNED - 1]), Ok(MAX_PLANNED));
    }
}
