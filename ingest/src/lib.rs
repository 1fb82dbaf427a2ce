//! The one write path into tables (ADR-009): every writer — `lakehouse ingest`,
//! HTTP ingest, Flight SQL statements (`CREATE TABLE AS`, `INSERT`, `DROP TABLE`)
//! and Flight SQL bulk ingest — hands its rows (read from a file through
//! [`source`], or any stream of Arrow batches) to [`TableWriter`], which takes the
//! table's lease, writes Parquet into the bucket and commits the new version with
//! the lease's fencing token.

mod error;
mod layout;
pub mod source;
mod writer;

pub use error::{Error, Result};
pub use source::{Format, SourceFile};
pub use writer::{Prepared, TableWriter, WriteRequest, WriteSummary};
