//! The replicated catalog: tables, versions, metadata, views, writer leases and
//! vector index versions (ADR-014), kept in an openraft state machine with a
//! durable local log and mirrored to the bucket as versioned Parquet manifests
//! (the bucket is the source of truth, ADR-001/002).
//!
//! - [`Catalog`]: the API (leases, commits, reads, garbage collection), over a
//!   node's own log or, with [`Catalog::connect`], a catalog cluster over gRPC.
//! - [`model`]: what is recorded. [`Request`] / [`Response`]: what goes through the log.
//! - [`manifest`]: the manifest format in the bucket.
//! - [`CatalogNode`]: one node of a multi-node catalog (`lakehouse catalog`), Raft
//!   over gRPC; [`CatalogClient`]: its clients' side (writes, linearizable reads,
//!   membership changes, status).

mod catalog;
#[cfg(test)]
mod catalog_tests;
mod client;
mod cluster;
mod error;
mod gc;
mod handle;
mod lease;
pub mod manifest;
pub mod model;
mod network;
mod remote;
mod request;
mod server;
mod state;
mod store;

pub use catalog::CatalogMetrics;
pub use client::{CatalogClient, ClientReply, ClientRequest, ClusterStatus};
pub use cluster::{Member, NodeStatus};
pub use error::{Error, Refusal, Result};
pub use handle::Catalog;
pub use model::{
    CatalogState, Chunking, DataFile, HnswParams, IndexShard, IndexStatus, IndexVersion, Lease,
    ObjectKind, Sensitivity, ShardBackend, Table, TableCommit, TableMetadata, TableVersion,
    VectorIndex, View, WriteMode,
};
pub use network::{NetworkFactory, PeerClient};
pub use request::{NodeId, Request, Response, TypeConfig};
pub use server::CatalogNode;
pub use state::append_schema;
pub use store::{LogStore, SnapshotBuilder, StateMachineStore};
