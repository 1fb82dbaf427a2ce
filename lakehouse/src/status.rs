//! `lakehouse status`, scheduler part: presentation only; the scheduler
//! serves what it knows in `lakehouse-scheduler`'s status service.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::BoxError;

/// How long `lakehouse status` waits for the scheduler.
const TIMEOUT: Duration = Duration::from_secs(2);

/// `lakehouse status`, scheduler part: its jobs and the executors registered
/// with it, with their task slots and last heartbeat.
pub(crate) async fn scheduler(endpoint: &str) -> Result<(), BoxError> {
    let status = match lakehouse_scheduler::scheduler_status(endpoint, TIMEOUT).await {
        Ok(status) => status,
        Err(e) => {
            println!("scheduler: unreachable at {endpoint}: {e}");
            return Err(format!("the scheduler at {endpoint} is unreachable").into());
        }
    };
    println!(
        "scheduler: {endpoint}, serving; jobs running {}, queued {}; since start submitted {}, completed {}, failed {}, cancelled {}",
        status.running_jobs,
        status.queued_jobs,
        status.jobs_submitted,
        status.jobs_completed,
        status.jobs_failed,
        status.jobs_cancelled
    );
    if status.executors.is_empty() {
        println!("executors: none registered (queries wait until one is)");
        return Ok(());
    }
    println!(
        "{:<38} {:<22} {:>6} {:>5} {:<11} last heartbeat",
        "executor", "flight", "grpc", "slots", "state"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for e in &status.executors {
        let heartbeat = match e.last_heartbeat_unix_secs {
            0 => "none yet".to_string(),
            at => format!("{} s ago", now.saturating_sub(at)),
        };
        println!(
            "{:<38} {:<22} {:>6} {:>5} {:<11} {heartbeat}",
            e.id,
            format!("{}:{}", e.host, e.flight_port),
            e.grpc_port,
            e.task_slots,
            e.state,
        );
    }
    Ok(())
}
