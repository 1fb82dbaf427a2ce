//! The `lakehouse` binary's library half: CLI parsing and role wiring, so
//! integration tests can start `up` in-process. The roles' wiring is in `roles`.

mod catalog;
pub mod cli;
mod index;
mod roles;
mod status;
pub mod up;
