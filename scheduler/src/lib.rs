//! The Lakehouse scheduler role and the client side of distributed queries.
//!
//! [`start`] runs Ballista 54.1's scheduler with push-staged scheduling,
//! served by tonic with TCP_NODELAY on our own listener (port 0 works), with
//! a job counter and a job timeout installed. [`remote_context`] gives a
//! `SessionContext` whose queries run as jobs on it, reusing connections.
//! [`scheduler_status`] asks a running scheduler for its jobs and executors.

mod client;
mod error;
mod executor_loss;
mod grpc;
mod in_process;
mod job;
mod metrics;
mod planned_scan;
mod result_partitions;
mod server;
mod status;
mod useful_file_ranges;

pub use client::{
    ballista_session_config, cancel_remote_job, remote_context, remote_context_with_pool,
    with_physical_codec, ConnectionPool, RemoteQueryExec,
};
pub use error::{Error, Result};
pub use in_process::LocalExecutor;
pub use job::JobHandle;
pub use lakehouse_proto::scheduler::{
    Executor as ExecutorStatus, StatusResponse as SchedulerStatus,
};
pub use metrics::JobCounts;
pub use planned_scan::{plan_temporary_scans, PlannedScan, PlannedScanCodec};
pub use server::{start, SchedulerHandle, SchedulerOptions};
pub use status::scheduler_status;
