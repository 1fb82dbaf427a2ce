//! Job counters fed by Ballista's `SchedulerMetricsCollector` hook, plus the
//! set of running jobs the job-timeout watchdog looks at.
//!
//! Ballista 54.1's `create_scheduler` always installs its default collector
//! (a no-op without the `prometheus` feature), so `start` builds the
//! `SchedulerServer` itself to install this one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ballista_core::JobId;
use ballista_scheduler::metrics::SchedulerMetricsCollector;
use tokio::sync::mpsc;

/// Totals since the scheduler started; rendered on /metrics as
/// `lakehouse_scheduler_jobs_<field>_total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Jobs planned and handed to executors (a job that fails planning is
    /// counted as failed only).
    pub submitted: u64,
    /// Jobs that finished successfully.
    pub completed: u64,
    /// Jobs that failed in planning or while running.
    pub failed: u64,
    /// Jobs cancelled by a client or by the job timeout.
    pub cancelled: u64,
}

/// Counts job events, remembers when each running job was queued, and
/// defers cancellations that arrive before a job is planned.
///
/// Ballista drops a cancel that arrives while the job is still being
/// planned (it only logs "Fail to find job in the cache") and then runs the
/// job anyway. A cancel requested through us for a job that is not running
/// yet is kept and sent to the returned channel once the job is submitted.
#[derive(Debug)]
pub(crate) struct JobCounter {
    submitted: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    jobs: Mutex<Jobs>,
    deferred_cancels: mpsc::UnboundedSender<String>,
}

#[derive(Debug, Default)]
struct Jobs {
    /// Job id → queued_at (ms since the epoch, Ballista's clock) and whether
    /// the timeout already cancelled it.
    running: HashMap<String, (u64, bool)>,
    /// Job id → when its cancel was requested (ms since the epoch).
    cancel_requested: HashMap<String, u64>,
}

impl JobCounter {
    /// The counter, and the receiver of cancels to issue now that their job runs.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (deferred_cancels, rx) = mpsc::unbounded_channel();
        let counter = Self {
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            jobs: Mutex::default(),
            deferred_cancels,
        };
        (counter, rx)
    }

    pub(crate) fn counts(&self) -> JobCounts {
        JobCounts {
            submitted: self.submitted.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
        }
    }

    /// Notes a cancel request; if the job is not running yet, it is cancelled
    /// again once it is submitted.
    pub(crate) fn request_cancel(&self, job_id: &str, now_ms: u64) {
        let mut jobs = self.jobs();
        if !jobs.running.contains_key(job_id) {
            jobs.cancel_requested.insert(job_id.to_owned(), now_ms);
        }
    }

    /// Forgets cancel requests older than `max_age` (their job finished or never existed).
    pub(crate) fn forget_stale_cancels(&self, now_ms: u64, max_age: Duration) {
        let limit = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        self.jobs()
            .cancel_requested
            .retain(|_, requested| now_ms.saturating_sub(*requested) <= limit);
    }

    /// Returns the jobs queued more than `timeout` before `now_ms`, each once.
    pub(crate) fn take_overdue(&self, now_ms: u64, timeout: Duration) -> Vec<String> {
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.jobs()
            .running
            .iter_mut()
            .filter(|(_, (queued_at, taken))| !*taken && now_ms.saturating_sub(*queued_at) > limit)
            .map(|(job_id, (_, taken))| {
                *taken = true;
                job_id.clone()
            })
            .collect()
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        // Plain maps; a panic elsewhere cannot leave them inconsistent.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SchedulerMetricsCollector for JobCounter {
    fn record_submitted(&self, job_id: &JobId, queued_at: u64, _submitted_at: u64) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let mut jobs = self.jobs();
        jobs.running
            .insert(job_id.as_str().to_owned(), (queued_at, false));
        if jobs.cancel_requested.remove(job_id.as_str()).is_some() {
            // Only fails once the scheduler is shut down.
            let _ = self.deferred_cancels.send(job_id.as_str().to_owned());
        }
    }

    fn record_completed(&self, job_id: &JobId, _queued_at: u64, _completed_at: u64) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.jobs().running.remove(job_id.as_str());
    }

    fn record_failed(&self, job_id: &JobId, _queued_at: u64, _failed_at: u64) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut jobs = self.jobs();
        jobs.running.remove(job_id.as_str());
        jobs.cancel_requested.remove(job_id.as_str());
    }

    /// Ballista calls this for every cancel request, also for jobs it then
    /// does not cancel (not yet planned, already finished); only running
    /// jobs are counted.
    fn record_cancelled(&self, job_id: &JobId) {
        let was_running = self.jobs().running.remove(job_id.as_str()).is_some();
        if was_running {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn set_pending_tasks_queue_size(&self, _value: u64) {}

    fn gather_metrics(&self) -> ballista_core::error::Result<Option<(Vec<u8>, String)>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn counts_each_outcome_and_forgets_finished_jobs() {
        let (c, _) = JobCounter::new();
        for id in ["a", "b", "c", "d"] {
            c.record_submitted(&id.into(), 0, 0);
        }
        c.record_completed(&"a".into(), 0, 0);
        c.record_failed(&"b".into(), 0, 0);
        c.record_cancelled(&"c".into());
        assert_eq!(
            c.counts(),
            JobCounts {
                submitted: 4,
                completed: 1,
                failed: 1,
                cancelled: 1
            }
        );
        assert_eq!(
            c.take_overdue(u64::MAX, Duration::ZERO),
            vec!["d".to_owned()]
        );
    }

    #[test]
    fn only_jobs_older_than_the_timeout_are_overdue_and_taken_once() {
        let (c, _) = JobCounter::new();
        c.record_submitted(&"old".into(), 1_000, 1_000);
        c.record_submitted(&"new".into(), 9_000, 9_000);
        let timeout = Duration::from_secs(5);
        assert_eq!(c.take_overdue(10_000, timeout), vec!["old".to_owned()]);
        assert!(c.take_overdue(10_000, timeout).is_empty());
        assert_eq!(c.take_overdue(20_000, timeout), vec!["new".to_owned()]);
        c.record_cancelled(&"old".into());
        assert_eq!(c.counts().cancelled, 1);
    }

    #[test]
    fn a_cancel_before_submission_is_issued_on_submission_and_counted_once() {
        let (c, mut deferred) = JobCounter::new();
        c.request_cancel("j", 0);
        // Ballista reports the cancel it then drops: not counted.
        c.record_cancelled(&"j".into());
        assert!(deferred.try_recv().is_err());
        c.record_submitted(&"j".into(), 0, 0);
        assert_eq!(deferred.try_recv().unwrap(), "j");
        c.record_cancelled(&"j".into());
        assert_eq!(c.counts().cancelled, 1);
        // A cancel of a running job is not deferred.
        c.record_submitted(&"k".into(), 0, 0);
        c.request_cancel("k", 0);
        c.record_cancelled(&"k".into());
        c.record_submitted(&"k2".into(), 0, 0);
        assert!(deferred.try_recv().is_err());
        assert_eq!(c.counts().cancelled, 2);
    }

    #[test]
    fn stale_cancel_requests_are_forgotten() {
        let (c, mut deferred) = JobCounter::new();
        c.request_cancel("gone", 0);
        c.forget_stale_cancels(60_000, Duration::from_secs(10));
        c.record_submitted(&"gone".into(), 0, 0);
        assert!(deferred.try_recv().is_err());
    }
}
