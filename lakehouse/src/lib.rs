//! The `lakehouse` binary's library half: CLI parsing and role wiring, so
//! integration tests can start `up` in-process.

mod catalog;
pub mod cli;
pub mod up;
