//! The request of a cloud job that runs one of mlctl's built-in algorithms with mlctl's own
//! trainer (`mlctl __train-builtin --request request.json`), so a built-in trains on a cloud
//! target exactly as on the local one: same fitting, same rows ([`crate::evaluation`]), same
//! artifact, same metrics.
//!
//! A trainer writes it into the job's code folder; the job passes the dataset parts as files
//! (`--data train=PATH ...`) and, for a tuning trial, the sampled values (`--hp name=value`).
//!
//! # Serialization
//! Stored in a target (inside the job's code). [`BuiltinJob::VERSION`] changes when a field
//! changes meaning; a reader refuses a version it does not know.

use crate::error::{ErrorKind, ProviderError, Result};
use mlctl_spec::{Algorithm, DataSchema, Split};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a built-in job trains, on which rows, and which rows it is judged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuiltinJob {
    /// The format's version ([`BuiltinJob::VERSION`]).
    pub version: u32,
    /// The job's name (the model's `trainingJob` lineage).
    pub job_name: String,
    /// `metadata.name` of the TrainingJob.
    pub resource: String,
    /// The built-in.
    pub algorithm: Algorithm,
    /// Hyperparameters; a tuning trial's sampled values (`--hp`) win over them.
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// Hyperparameters whose sampled values must be whole numbers (a sweep may pass `3.0`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub integers: BTreeSet<String>,
    /// The dataset's label column (none for clustering).
    #[serde(default)]
    pub target_column: Option<String>,
    /// The dataset's schema: column roles and the signature the model carries.
    #[serde(default)]
    pub schema: Option<DataSchema>,
    /// The dataset's `split`: the seed and stratification of carved rows.
    #[serde(default)]
    pub split: Option<Split>,
    /// The dataset's name.
    pub dataset: String,
    /// blake3 digest of the dataset version.
    pub data_digest: String,
    /// The commit being applied.
    pub commit: String,
    /// The parts the job is given (`--data NAME=PATH`): `train`, `validation`, `test` (the
    /// dataset's split parts), or `table` alone (a dataset without parts).
    pub parts: Vec<String>,
    /// Whether the TrainingJob is tuned: validation rows are then set apart (carved when
    /// the dataset has none), as for every tuned job.
    #[serde(default)]
    pub tuned: bool,
    /// The rows the metrics are on: `validation` (a tuning trial) or `test` (the job's
    /// model, and a tuned job's final refit).
    pub scored_on: ScoredOn,
}

/// Which rows a run's metrics are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoredOn {
    /// The held-out test rows: what gates judge.
    Test,
    /// The validation rows: what tuning candidates are compared by.
    Validation,
}

impl BuiltinJob {
    /// The version this build writes and reads.
    pub const VERSION: u32 = 1;
    /// The part name of a dataset that has no split parts.
    pub const TABLE: &'static str = "table";
    /// The file name of the request in a job's code folder.
    pub const FILE: &'static str = "request.json";

    /// Reads a request, refusing a version this build does not know.
    ///
    /// # Errors
    /// `Invalid` for text that is not a request of a known version.
    pub fn from_json(text: &str) -> Result<BuiltinJob> {
        let invalid =
            |m: String| ProviderError::new(ErrorKind::Invalid, "mlctl", "built-in job", m);
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
        match v.get("version").and_then(|v| v.as_u64()) {
            Some(n) if n == u64::from(Self::VERSION) => {}
            Some(n) => {
                return Err(invalid(format!(
                    "request version {n}; this mlctl reads version {} (use the mlctl image of the version that wrote it)",
                    Self::VERSION
                )));
            }
            None => return Err(invalid("no `version`".into())),
        }
        serde_json::from_value(v).map_err(|e| invalid(format!("not a built-in job request: {e}")))
    }

    /// The hyperparameters of the run: the request's, with `overrides` (a trial's sampled
    /// values, as text) parsed as JSON where they parse (else kept as text), and whole numbers
    /// for [`BuiltinJob::integers`].
    ///
    /// # Errors
    /// An integer hyperparameter given a value with a fraction.
    pub fn hyperparameters_with(
        &self,
        overrides: &[(String, String)],
    ) -> Result<BTreeMap<String, serde_json::Value>> {
        let mut out = self.hyperparameters.clone();
        for (name, text) in overrides {
            let mut v = serde_json::from_str::<serde_json::Value>(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.clone()));
            if self.integers.contains(name)
                && let Some(x) = v.as_f64().filter(|_| !v.is_i64() && !v.is_u64())
            {
                if x.fract() != 0.0 {
                    return Err(ProviderError::new(
                        ErrorKind::Invalid,
                        "mlctl",
                        "built-in job",
                        format!("hyperparameter `{name}` must be a whole number, got {text}"),
                    ));
                }
                v = serde_json::Value::from(x as i64);
            }
            out.insert(name.clone(), v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> BuiltinJob {
        BuiltinJob {
            version: BuiltinJob::VERSION,
            job_name: "j".into(),
            resource: "r".into(),
            algorithm: Algorithm::DecisionTree,
            hyperparameters: [("max_depth".to_string(), serde_json::json!(2))].into(),
            integers: ["max_depth".to_string()].into(),
            target_column: Some("species".into()),
            schema: None,
            split: None,
            dataset: "d".into(),
            data_digest: "x".into(),
            commit: "c".into(),
            parts: vec!["table".into()],
            tuned: false,
            scored_on: ScoredOn::Test,
        }
    }

    #[test]
    fn a_request_round_trips_and_an_unknown_version_is_refused() {
        let text = serde_json::to_string(&job()).unwrap();
        assert_eq!(BuiltinJob::from_json(&text).unwrap(), job());
        let future = text.replace("\"version\":1", "\"version\":9");
        let e = BuiltinJob::from_json(&future).unwrap_err();
        assert!(e.message.contains("request version 9"), "{}", e.message);
    }

    #[test]
    fn sampled_values_are_json_or_text_and_integers_are_whole() {
        let hp = job()
            .hyperparameters_with(&[
                ("max_depth".into(), "3.0".into()),
                ("criterion".into(), "gini".into()),
                ("lr".into(), "0.5".into()),
            ])
            .unwrap();
        assert_eq!(hp["max_depth"], serde_json::json!(3));
        assert_eq!(hp["criterion"], serde_json::json!("gini"));
        assert_eq!(hp["lr"], serde_json::json!(0.5));
        let e = job()
            .hyperparameters_with(&[("max_depth".into(), "2.5".into())])
            .unwrap_err();
        assert!(e.message.contains("whole number"), "{}", e.message);
    }
}
