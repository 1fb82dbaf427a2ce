//! Vector indexes as cluster work (issue 6, ADR-014/019, the design card's
//! "Embed / index build" and "Vector search"):
//!
//! - [`tasks`]: `EmbedExec`, `IndexBuildExec` and `VectorSearchExec`, leaf plans
//!   whose partitions Ballista hands to the executors as tasks;
//! - [`IndexCodec`]: how those plans travel to the executors;
//! - [`IndexRuntime`]: what a task finds on the node running it (bucket, models,
//!   loaded shards).

pub mod chunk;
mod codec;
mod error;
mod job_table;
mod jobs;
mod loaded;
mod runtime;
mod search_function;
pub mod shard_file;
pub mod tasks;
mod tune;

pub use codec::IndexCodec;
pub use error::{Error, Result};
pub use jobs::{CreateIndex, IndexService, IndexSettings, PreparedBuild, Progress};
pub use loaded::ShardRef;
pub use runtime::IndexRuntime;
pub use search_function::{SearchRequest, VectorSearchFunction, VectorSearchTable, FUNCTION_NAME};
pub use tune::{TrialEvent, TrialSource, TuneReport, DEFAULT_SAMPLE, TARGET_RECALL, TRIALS_PREFIX};
