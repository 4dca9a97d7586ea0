//! mlctl-ml: tabular data, validation, profiles, drift statistics, built-in trainers, metrics
//! and the portable model format.

pub mod digest;
pub mod rng;
pub mod table;
