//! Shared building blocks of every Lakehouse role: layered configuration, the
//! error vocabulary the edges map to status codes, object-store buckets, the clock
//! and write-once journals.

pub mod access;
pub mod clock;
pub mod committed_objects;
pub mod config;
pub mod error;
pub mod journal;
pub mod names;
pub mod storage;

pub use access::{Access, Principal};
pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use journal::AppendLog;
pub use storage::{Bucket, ObjectRef};
