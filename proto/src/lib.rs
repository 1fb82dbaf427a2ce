//! gRPC definitions shared by the catalog's nodes and clients and the
//! scheduler's status service, generated from `proto/*.proto` at build time. Every service name carries its version.

/// Node-to-node Raft transport (`lakehouse.raft.v1`).
pub mod raft {
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("lakehouse.raft.v1");
}

/// The catalog's client API (`lakehouse.catalog.v1`).
pub mod catalog {
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("lakehouse.catalog.v1");
}

/// The scheduler's status for `lakehouse status` (`lakehouse.scheduler.v1`).
pub mod scheduler {
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("lakehouse.scheduler.v1");
}
