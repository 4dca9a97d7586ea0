//! mlctl-ml: tabular data, validation, profiles, drift statistics, built-in trainers, metrics
//! and the portable model format.

pub mod digest;
pub mod drift;
pub mod preprocess;
pub mod profile;
pub mod rng;
pub mod split;
mod stats;
pub mod table;
pub mod validate;
