//! The embedded local target: content-addressed blobs under `.mlctl/`, metadata in SQLite,
//! training in-process (built-ins) or as child processes (script mode), endpoints as
//! supervised `mlctl serve` processes on 127.0.0.1.

pub mod deployer;
pub mod monitor;
