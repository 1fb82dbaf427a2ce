//! Prepared statements live on the server that created them, keyed by a
//! random handle; parameters bound over DoPut are kept with them until closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
/// An opaque prepared-statement handle.
type Handle = Vec<u8>;

#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub sql: String,
    /// How many parameters the statement takes, known from planning it once.
    pub parameter_count: usize,
    /// Bound parameter rows; each row runs the statement once.
    pub parameters: Option<RecordBatch>,
}

/// Statements a client forgot to close are dropped beyond this many.
const MAX_PREPARED: usize = 10_000;

#[derive(Debug, Clone, Default)]
pub(crate) struct PreparedStatements {
    inner: Arc<Mutex<HashMap<Handle, Prepared>>>,
}

impl PreparedStatements {
    pub(crate) fn insert(&self, sql: String, parameter_count: usize) -> Handle {
        let handle = uuid::Uuid::new_v4().as_bytes().to_vec();
        let mut map = self.lock();
        if map.len() >= MAX_PREPARED {
            // Leaked statements must not grow memory without bound.
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(
            handle.clone(),
            Prepared {
                sql,
                parameter_count,
                parameters: None,
            },
        );
        handle
    }

    pub(crate) fn get(&self, handle: &[u8]) -> Option<Prepared> {
        self.lock().get(handle).cloned()
    }

    pub(crate) fn bind(&self, handle: &[u8], parameters: RecordBatch) -> bool {
        match self.lock().get_mut(handle) {
            Some(p) => {
                p.parameters = Some(parameters);
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove(&self, handle: &[u8]) -> bool {
        self.lock().remove(handle).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Handle, Prepared>> {
        // A panic while holding the lock leaves the map intact; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
