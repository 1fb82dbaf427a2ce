//! lakehouse-tests
