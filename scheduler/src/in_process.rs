//! Schedulers running in this process, found by their URL.
//!
//! A session whose scheduler lives in the same process (`lakehouse up`, the
//! tests) hands each job over directly: the physical plan it has already
//! built and a status channel. Over gRPC the logical plan is serialised,
//! decoded by the scheduler, optimised and planned a second time, and the
//! status comes back as another stream: on a point query that was about a
//! millisecond of a ~10 ms job. The job itself is the same Ballista job —
//! staged by the scheduler, run by the executors, counted, cancellable.
//!
//! Executors in this process are listed with their work directory: a job's
//! result partitions they wrote are read from the file instead of fetched
//! back over Flight (a gRPC round trip and a copy per partition).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::client::lock;

pub(crate) type Server = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

fn registry() -> &'static Mutex<HashMap<String, Server>> {
    static SCHEDULERS: OnceLock<Mutex<HashMap<String, Server>>> = OnceLock::new();
    SCHEDULERS.get_or_init(Mutex::default)
}

/// The scheduler serving `url` in this process, if there is one.
pub(crate) fn find(url: &str) -> Option<Server> {
    lock(registry()).get(url).cloned()
}

/// Listed while alive: dropping it (the scheduler stops) unlists the URL.
#[derive(Debug)]
pub(crate) struct Listing {
    url: String,
}

impl Listing {
    pub(crate) fn new(url: &str, server: Server) -> Self {
        lock(registry()).insert(url.to_owned(), server);
        Self {
            url: url.to_owned(),
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        lock(registry()).remove(&self.url);
    }
}

fn executors() -> &'static Mutex<HashMap<String, PathBuf>> {
    static EXECUTORS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    EXECUTORS.get_or_init(Mutex::default)
}

/// The work directory of executor `id` when it runs in this process.
pub(crate) fn executor_work_dir(id: &str) -> Option<PathBuf> {
    lock(executors()).get(id).cloned()
}

/// An executor of this process, listed while alive so its result files are read in place.
#[derive(Debug)]
pub struct LocalExecutor {
    id: String,
}

impl LocalExecutor {
    /// Lists executor `id`, which writes its shuffle and result files under `work_dir`.
    pub fn list(id: &str, work_dir: &Path) -> Self {
        lock(executors()).insert(id.to_owned(), work_dir.to_owned());
        Self { id: id.to_owned() }
    }
}

impl Drop for LocalExecutor {
    fn drop(&mut self) {
        lock(executors()).remove(&self.id);
    }
}
