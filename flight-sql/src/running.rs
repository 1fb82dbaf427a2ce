//! Queries whose results are being streamed, by ticket, so CancelFlightInfo
//! (which names the ticket of the FlightInfo it cancels) can stop their
//! Ballista jobs. A cancel that arrives before the DoGet is remembered and
//! refuses that DoGet.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lakehouse_scheduler::JobHandle;
use tracing::warn;

/// Tickets cancelled before their DoGet are forgotten beyond this many.
const MAX_PRECANCELLED: usize = 1_024;

#[derive(Debug, Default)]
pub(crate) struct Query {
    cancelled: AtomicBool,
    jobs: Mutex<Vec<JobHandle>>,
}

impl Query {
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Follows a job of this query; one that starts after a cancel is cancelled at once.
    pub(crate) async fn track(&self, job: JobHandle) {
        lock(&self.jobs).push(job.clone());
        if self.is_cancelled() {
            cancel_job(&job).await;
        }
    }

    async fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        let jobs = lock(&self.jobs).clone();
        for job in jobs {
            cancel_job(&job).await;
        }
    }
}

async fn cancel_job(job: &JobHandle) {
    if let Err(e) = job.cancel().await {
        warn!(job_id = ?job.job_id(), error = %e, "cancelling a query's job failed");
    }
}

#[derive(Debug, Default)]
struct Inner {
    running: HashMap<Vec<u8>, Arc<Query>>,
    precancelled: HashSet<Vec<u8>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RunningQueries {
    inner: Arc<Mutex<Inner>>,
}

/// What a cancel found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// A running query: its jobs were told to stop.
    Running,
    /// Not running: its DoGet will be refused.
    BeforeStart,
}

impl RunningQueries {
    /// Registers the DoGet of `ticket`; `None` when it was cancelled before it started.
    pub(crate) fn begin(&self, ticket: &[u8]) -> Option<RunningGuard> {
        let mut inner = lock(&self.inner);
        if inner.precancelled.remove(ticket) {
            return None;
        }
        let query = Arc::new(Query::default());
        inner.running.insert(ticket.to_vec(), Arc::clone(&query));
        Some(RunningGuard {
            queries: self.clone(),
            ticket: ticket.to_vec(),
            query,
        })
    }

    /// Cancels the running query of `ticket`, or — when `not_started` says the
    /// ticket is known but its DoGet has not come — refuses that DoGet.
    /// A statement started ahead of its DoGet is both: its job is stopped and its DoGet refused.
    pub(crate) async fn cancel(&self, ticket: &[u8], not_started: bool) -> Option<Cancelled> {
        let running = {
            let mut inner = lock(&self.inner);
            if not_started {
                if inner.precancelled.len() >= MAX_PRECANCELLED {
                    inner.precancelled.clear();
                }
                inner.precancelled.insert(ticket.to_vec());
            }
            inner.running.get(ticket).cloned()
        };
        if let Some(query) = running {
            query.cancel().await;
            return Some(Cancelled::Running);
        }
        not_started.then_some(Cancelled::BeforeStart)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.inner).running.len()
    }
}

/// Held by the result stream of a DoGet; unregisters it when the stream ends or is dropped.
#[derive(Debug)]
pub(crate) struct RunningGuard {
    queries: RunningQueries,
    ticket: Vec<u8>,
    query: Arc<Query>,
}

impl RunningGuard {
    pub(crate) fn query(&self) -> &Arc<Query> {
        &self.query
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let mut inner = lock(&self.queries.inner);
        // A second DoGet of the same ticket may have replaced this entry.
        if inner
            .running
            .get(&self.ticket)
            .is_some_and(|q| Arc::ptr_eq(q, &self.query))
        {
            inner.running.remove(&self.ticket);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Maps of handles: a panic leaves nothing half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_before_the_doget_refuses_it_once() {
        let queries = RunningQueries::default();
        assert_eq!(queries.cancel(b"t", false).await, None);
        assert_eq!(
            queries.cancel(b"t", true).await,
            Some(Cancelled::BeforeStart)
        );
        assert!(queries.begin(b"t").is_none());
        assert!(queries.begin(b"t").is_some());
    }

    #[tokio::test]
    async fn a_running_query_is_cancelled_and_unregistered_when_its_stream_ends() {
        let queries = RunningQueries::default();
        let guard = queries.begin(b"t").unwrap();
        assert_eq!(queries.len(), 1);
        assert_eq!(queries.cancel(b"t", false).await, Some(Cancelled::Running));
        assert!(guard.query().is_cancelled());
        drop(guard);
        assert_eq!(queries.len(), 0);
        assert_eq!(queries.cancel(b"t", false).await, None);
    }
}
