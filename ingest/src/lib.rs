//! The one write path into tables (ADR-009): every writer — `lakehouse ingest`,
//! HTTP ingest and, later, Flight SQL writes — reads its rows through
//! [`source`], then [`TableWriter`] takes the table's lease, writes Parquet into
//! the bucket and commits the new version with the lease's fencing token.

mod error;
pub mod source;
mod writer;

pub use error::{Error, Result};
pub use source::{Format, SourceFile};
pub use writer::{TableWriter, WriteRequest, WriteSummary};
