//! The replicated catalog: tables, versions, metadata and writer leases, kept in
//! an openraft state machine with a durable local log and mirrored to the bucket
//! as versioned Parquet manifests (the bucket is the source of truth, ADR-001/002).

pub mod model;
