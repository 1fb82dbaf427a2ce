//! Integration tests: roles started in-process on loopback ports 0.

mod ballista;
mod cluster;
mod embeddings;
mod roles;
mod up;
