//! Integration tests: roles started in-process on loopback ports 0.

mod ballista;
mod cluster;
mod embeddings;
mod index_bad_input;
mod indexes;
mod lance_indexes;
mod leases;
mod roles;
mod tuning;
mod up;
