//! A handle on one running Ballista job: its id once the scheduler accepts
//! it, and a cancel that works whenever it is called — before the id is
//! known (issued as soon as it is), while the job runs, or from a dropped
//! result stream (a client that went away must not keep executor slots busy).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};

use crate::client::{lock, send_cancel, ConnectionPool};

#[derive(Debug)]
struct Inner {
    scheduler_url: String,
    pool: Arc<ConnectionPool>,
    job_id: Mutex<Option<String>>,
    cancel_requested: AtomicBool,
    /// The job reached a final state: nothing left to cancel.
    ended: AtomicBool,
}

/// Cheap to clone; every clone refers to the same job.
#[derive(Debug, Clone)]
pub struct JobHandle {
    inner: Arc<Inner>,
}

impl JobHandle {
    pub(crate) fn new(scheduler_url: String, pool: Arc<ConnectionPool>) -> Self {
        Self {
            inner: Arc::new(Inner {
                scheduler_url,
                pool,
                job_id: Mutex::new(None),
                cancel_requested: AtomicBool::new(false),
                ended: AtomicBool::new(false),
            }),
        }
    }

    /// The scheduler's job id, once the job has been accepted.
    pub fn job_id(&self) -> Option<String> {
        lock(&self.inner.job_id).clone()
    }

    pub fn is_cancel_requested(&self) -> bool {
        self.inner.cancel_requested.load(Ordering::Acquire)
    }

    /// Asks the scheduler to cancel the job. Before the job id is known the
    /// request is remembered and sent when the id arrives.
    pub async fn cancel(&self) -> crate::Result<()> {
        self.inner.cancel_requested.store(true, Ordering::Release);
        match self.job_id() {
            Some(id) if !self.inner.ended.load(Ordering::Acquire) => {
                send_cancel(&self.inner.pool, &self.inner.scheduler_url, &id).await
            }
            _ => Ok(()),
        }
    }

    /// Records the id from the job's first status; cancels at once when a
    /// cancel came first.
    pub(crate) async fn accepted(&self, job_id: &str) {
        let first = {
            let mut slot = lock(&self.inner.job_id);
            let first = slot.is_none();
            slot.get_or_insert_with(|| job_id.to_owned());
            first
        };
        if first && self.is_cancel_requested() {
            if let Err(e) = self.cancel().await {
                warn!(job_id, error = %e, "cancel of a job accepted after its cancel request failed");
            }
        }
    }

    pub(crate) fn ended(&self) {
        self.inner.ended.store(true, Ordering::Release);
    }

    /// Cancels the job in the background if it has not ended: for a result
    /// stream dropped before the job finished.
    pub(crate) fn cancel_if_running(&self) {
        if self.inner.ended.load(Ordering::Acquire) || self.is_cancel_requested() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let handle = self.clone();
        runtime.spawn(async move {
            debug!(job_id = ?handle.job_id(), "result stream dropped before the job ended: cancelling it");
            if let Err(e) = handle.cancel().await {
                warn!(job_id = ?handle.job_id(), error = %e, "cancelling the abandoned job failed");
            }
        });
    }
}

/// Held by a result stream: dropping the stream early cancels the job.
#[derive(Debug)]
pub(crate) struct CancelOnDrop(pub(crate) JobHandle);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel_if_running();
    }
}
