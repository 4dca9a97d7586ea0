//! A tuned job's chosen candidate (script mode or built-in), trained again and scored on rows
//! the tuning never saw: the same contract as the local target (`mlctl_core::evaluation`).
//!
//! # Guarantees
//! - Trials of the HyperParameterTuningJob get the `train` and `validation` channels only;
//!   the test rows are not in S3 under any channel they read.
//! - When the tuning job completes, one training job `<tuning job>-final` runs the best
//!   trial's hyperparameters with `train` and `test`. Its metrics are what the job reports,
//!   so gates judge rows held out from the selection. Its name is deterministic: a re-run
//!   (or a crash between two polls) finds it instead of starting a second.
//! - What the refit needs beyond the tuning job's own definition (its channels, the rows
//!   record, the tags) is written to S3 before the tuning job is created
//!   (`.mlctl/refit/<tuning job>.json`), so polling needs nothing else.

use crate::aws::Aws;
use mlctl_core::components::Evaluation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the chosen candidate's final job reads and records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefitPlan {
    /// Channel name -> S3 location: a script's `train` and `test`; a built-in's `train` and
    /// the test rows under the channel its algorithm scores (`validation`, k-means `test`).
    pub channels: BTreeMap<String, String>,
    /// The channels' content type: `text/csv` for a built-in's encoded rows, none for a
    /// script's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The rows: trained on, compared on, scored on (recorded with the result).
    pub evaluation: Evaluation,
    /// AWS tags of the final job (the TrainingJob's labels and mlctl's own).
    pub tags: Vec<(String, String)>,
}

/// Where the plan of tuning job `tuning` is kept.
pub(crate) fn plan_key(aws: &Aws, tuning: &str) -> String {
    aws.key(&format!(".mlctl/refit/{tuning}.json"))
}

/// The final job's name: the tuning job's (at most 32 characters) and `-final`.
pub(crate) fn job_name(tuning: &str) -> String {
    format!("{tuning}-final")
}

/// What the final job says while it runs.
pub(crate) const RUNNING: &str = "training the chosen candidate again with the test channel (trials saw train and validation only)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_job_name_fits_sagemaker() {
        let tuning = "a".repeat(crate::names::MAX_TUNING);
        assert!(job_name(&tuning).len() <= crate::names::MAX);
    }
}
