//! Plans made by GetFlightInfo, kept for the DoGet that follows so a query is
//! planned once. The ticket carries `key ‖ SQL`: a DoGet that reaches another
//! server, or comes after eviction, plans the SQL again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use datafusion::prelude::DataFrame;

const KEY_LEN: usize = 16;
/// Plans whose DoGet never came are evicted oldest-first beyond this many.
const MAX_PLANNED: usize = 1_024;

type Key = [u8; KEY_LEN];

#[derive(Default)]
struct Inner {
    plans: HashMap<Key, DataFrame>,
    order: VecDeque<Key>,
}

#[derive(Clone, Default)]
pub(crate) struct PlannedStatements {
    inner: Arc<Mutex<Inner>>,
}

impl PlannedStatements {
    /// Keeps `frame` and returns the ticket handle for it.
    pub(crate) fn insert(&self, sql: &str, frame: DataFrame) -> Vec<u8> {
        let key = *uuid::Uuid::new_v4().as_bytes();
        let mut inner = self.lock();
        if inner.plans.len() >= MAX_PLANNED {
            if let Some(oldest) = inner.order.pop_front() {
                inner.plans.remove(&oldest);
            }
        }
        inner.plans.insert(key, frame);
        inner.order.push_back(key);
        let mut handle = key.to_vec();
        handle.extend_from_slice(sql.as_bytes());
        handle
    }

    /// The kept plan (each is used once) or, failing that, the SQL to plan again.
    pub(crate) fn take(&self, handle: &[u8]) -> Result<DataFrame, Option<String>> {
        if handle.len() < KEY_LEN {
            return Err(None);
        }
        let (key, sql) = handle.split_at(KEY_LEN);
        let mut inner = self.lock();
        let frame = <Key>::try_from(key).ok().and_then(|k| {
            inner.order.retain(|o| *o != k);
            inner.plans.remove(&k)
        });
        drop(inner);
        frame.ok_or_else(|| String::from_utf8(sql.to_vec()).ok())
    }

    /// Drops the kept plan of `handle` (a cancel before its DoGet); true if there was one.
    pub(crate) fn forget(&self, handle: &[u8]) -> bool {
        let Some(key) = handle.get(..KEY_LEN).and_then(|k| <Key>::try_from(k).ok()) else {
            return false;
        };
        let mut inner = self.lock();
        inner.order.retain(|o| *o != key);
        inner.plans.remove(&key).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn a_plan_is_used_once_then_the_sql_is_planned_again() {
        let frame = SessionContext::new().sql("SELECT 1").await.unwrap();
        let planned = PlannedStatements::default();
        let handle = planned.insert("SELECT 1", frame);
        assert!(planned.take(&handle).is_ok());
        assert_eq!(
            planned.take(&handle).err(),
            Some(Some("SELECT 1".to_string()))
        );
        assert_eq!(planned.take(b"short").err(), Some(None));
    }
}
