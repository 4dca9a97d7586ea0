#![warn(missing_docs)]
//! mlctl-ml: tabular data, validation, profiles, drift statistics, built-in trainers, metrics
//! and the portable model format.
//!
//! The data path of a Dataset: [`table::read`] a CSV or Parquet file, [`digest::digest_path`]
//! it (cached), [`validate::validate`] it against the declared schema, [`profile::profile`] it
//! (the drift baseline), [`split::split`] it. The training path: [`train`] a built-in
//! algorithm into a [`model::PortableModel`], [`metrics::evaluate`] it on the held-out part,
//! [`model::PortableModel::save`] it for serving. [`tune`] generates and runs hyperparameter
//! trials for anything (script mode too); [`tune_builtin`] runs them for a built-in.
//! [`drift::drift`] compares live data with a baseline profile.
//!
//! Architecture invariant: this crate knows nothing about targets, providers or HTTP; it
//! reads and writes only the paths it is given.

pub mod algo;
pub mod digest;
pub mod drift;
pub mod explain;
pub mod guard;
pub mod importance;
pub mod metrics;
pub mod model;
pub mod preprocess;
pub mod profile;
pub mod rng;
pub mod sort;
pub mod split;
mod stats;
pub mod table;
mod train;
pub mod tune;
pub mod validate;

pub use algo::Task;
pub use model::{InputError, PortableModel, Prediction};
pub use table::{ColumnData, Table};
pub use train::{
    TrainError, TrainRequest, TuneRequest, hyperparameter_names, merge_hyperparameters, train,
    tune as tune_builtin,
};
