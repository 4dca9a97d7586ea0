//! Helpers shared by the azureml provider's integration tests.
//!
//! `sas`: SAS tokens for Azurite. The fake ARM server's harness (`fake.rs`, `pub mod fake;`)
//! is added here by the part that builds it.

#![allow(dead_code)]

pub mod sas;
