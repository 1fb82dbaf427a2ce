//! HNSW shard indexes for vector search (issue 6, ADR-018).
//!
//! [`ShardBuilder`] builds a graph with hnswlib's insert algorithm on several
//! threads (`insert.rs`) and freezes it into a [`FrozenHnsw`]: flat arrays
//! searched by a tight loop, the way Qdrant turns its `GraphLayersBuilder` into
//! `GraphLayers`. The frozen form is also the on-disk form: [`sidecar`] writes
//! and reads it through the object store.

mod builder;
mod distance;
mod error;
mod frozen;
mod insert;
pub mod lance_shard;
mod rng;
pub mod sidecar;
mod tune;

pub use builder::ShardBuilder;
pub use error::{Error, Result};
pub use frozen::{FrozenHnsw, IndexParams, Metric, MAX_K};
pub use lance_shard::{LanceParams, LanceShard};
pub use tune::{tune, Trial, TrialSettings};

#[cfg(test)]
mod tests;
