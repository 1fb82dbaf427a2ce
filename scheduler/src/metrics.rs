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

/// Counts job events and remembers when each running job was queued.
#[derive(Debug, Default)]
pub(crate) struct JobCounter {
    submitted: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    /// Job id → queued_at (ms since the epoch, Ballista's clock).
    running: Mutex<HashMap<String, u64>>,
}

impl JobCounter {
    pub(crate) fn counts(&self) -> JobCounts {
        JobCounts {
            submitted: self.submitted.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
        }
    }

    /// Removes and returns the jobs queued more than `timeout` before `now_ms`.
    pub(crate) fn take_overdue(&self, now_ms: u64, timeout: Duration) -> Vec<String> {
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut running = self.running();
        let overdue: Vec<String> = running
            .iter()
            .filter(|(_, queued_at)| now_ms.saturating_sub(**queued_at) > limit)
            .map(|(job_id, _)| job_id.clone())
            .collect();
        for job_id in &overdue {
            running.remove(job_id);
        }
        overdue
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // The map holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finished(&self, job_id: &JobId) {
        self.running().remove(job_id.as_str());
    }
}

impl SchedulerMetricsCollector for JobCounter {
    fn record_submitted(&self, job_id: &JobId, queued_at: u64, _submitted_at: u64) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.running().insert(job_id.as_str().to_owned(), queued_at);
    }

    fn record_completed(&self, job_id: &JobId, _queued_at: u64, _completed_at: u64) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.finished(job_id);
    }

    fn record_failed(&self, job_id: &JobId, _queued_at: u64, _failed_at: u64) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.finished(job_id);
    }

    fn record_cancelled(&self, job_id: &JobId) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
        self.finished(job_id);
    }

    fn set_pending_tasks_queue_size(&self, _value: u64) {}

    fn gather_metrics(&self) -> ballista_core::error::Result<Option<(Vec<u8>, String)>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_outcome_and_forgets_finished_jobs() {
        let c = JobCounter::default();
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
        assert_eq!(c.take_overdue(u64::MAX, Duration::ZERO), vec!["d".to_owned()]);
    }

    #[test]
    fn only_jobs_older_than_the_timeout_are_overdue_and_taken_once() {
        let c = JobCounter::default();
        c.record_submitted(&"old".into(), 1_000, 1_000);
        c.record_submitted(&"new".into(), 9_000, 9_000);
        let timeout = Duration::from_secs(5);
        assert_eq!(c.take_overdue(10_000, timeout), vec!["old".to_owned()]);
        assert!(c.take_overdue(10_000, timeout).is_empty());
        assert_eq!(c.take_overdue(20_000, timeout), vec!["new".to_owned()]);
    }
}
