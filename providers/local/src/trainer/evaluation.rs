//! Which rows a job trains on, compares tuning candidates on, and is judged on.
//!
//! The test rows are held out: gates judge metrics on them, and a tuned job scores only its
//! chosen candidate there. Tuning compares candidates on validation rows.
//!
//! | dataset parts         | untuned: scored on     | tuned: compared on / scored on                 |
//! |-----------------------|------------------------|------------------------------------------------|
//! | train, validation, test | test                 | validation / test                              |
//! | train, test           | test                   | 20% carved from train / test                   |
//! | train, validation     | validation             | validation / 20% carved from train             |
//! | none (whole table)    | 20% carved             | 20% carved from the rest / 20% carved          |
//!
//! Untuned, nothing is selected on the validation rows, so they are an honest held-out set.
//! Every carve is seeded and stratified as the dataset's `split` says (seed 42 and no
//! stratification without one), and the run records what was carved ([`Evaluation`]).

use super::JobRequest;
use crate::PROVIDER;
use crate::fsutil::sniff_format;
use mlctl_core::components::Evaluation;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_ml::Table;
use mlctl_ml::table;
use mlctl_spec::Split;
use std::path::Path;

/// The share of rows carved off for validation or testing when the dataset has no such part.
pub(crate) const CARVE: f64 = 0.2;
/// The seed of every carve when the dataset's `split` names none.
pub(crate) const SEED: u64 = 42;

/// The rows of one job.
pub(crate) struct Rows {
    /// What trials and the final model train on.
    pub train: Table,
    /// What tuning candidates are compared on (tuned jobs only).
    pub validation: Option<Table>,
    /// Held out: what the reported metrics are scored on.
    pub test: Table,
    /// What the run records (`scored_on` is `test`; a trial's copy says `validation`).
    pub record: Evaluation,
}

fn invalid(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, PROVIDER, "training", message)
}

fn read(uri: &str) -> Result<Table> {
    let p = Path::new(uri);
    table::read(p, sniff_format(p)).map_err(|e| {
        ProviderError::new(
            ErrorKind::Other,
            PROVIDER,
            "training",
            format!("cannot read training data: {e}"),
        )
    })
}

/// The seed and stratification of the job's carves.
fn carving(job: &JobRequest) -> (u64, Option<String>) {
    let split = job.split.as_ref();
    (
        split.and_then(|s| s.seed).unwrap_or(SEED),
        split.and_then(|s| s.stratify.clone()),
    )
}

/// Splits `CARVE` of `t`'s rows off: (the rest, the carved rows), and how, for the record.
fn carve(
    t: &Table,
    from: &str,
    seed: u64,
    stratify: Option<&str>,
) -> Result<(Table, Table, String)> {
    let split = Split {
        train: 1.0 - CARVE,
        validation: None,
        test: Some(CARVE),
        seed: Some(seed),
        stratify: stratify.map(str::to_string),
    };
    let parts = mlctl_ml::split::split(t, &split)
        .map_err(|e| invalid(format!("cannot carve held-out rows from {from}: {e}")))?;
    let how = format!(
        "carved: {:.0}% of {from}, seed {seed}{}",
        CARVE * 100.0,
        stratify
            .map(|c| format!(", stratified by `{c}`"))
            .unwrap_or_default()
    );
    Ok((parts.train, parts.test, how))
}

/// The rows of `job`; `tuned` asks for validation rows too.
pub(crate) fn rows(job: &JobRequest, tuned: bool) -> Result<Rows> {
    let splits = &job.dataset.splits;
    let (seed, stratify) = carving(job);
    let stratify = stratify.as_deref();
    let (mut train, train_from) = match splits.get("train") {
        Some(uri) => (read(uri)?, "the train split"),
        None => (read(&job.dataset.uri)?, "the table"),
    };
    let given_validation = splits.get("validation").map(|u| read(u)).transpose()?;
    let (test, test_from, given_validation) = match (splits.get("test"), given_validation) {
        (Some(uri), v) => (read(uri)?, "test split".to_string(), v),
        // Nothing is selected on the validation rows of an untuned job: they are held out.
        (None, Some(v)) if !tuned => (v, "validation split (no test split)".to_string(), None),
        (None, v) => {
            let (rest, carved, how) = carve(&train, train_from, seed, stratify)?;
            train = rest;
            (carved, how, v)
        }
    };
    let (validation, validation_from) = match (tuned, given_validation) {
        (false, _) => (None, None),
        (true, Some(v)) => (Some(v), Some("validation split".to_string())),
        (true, None) => {
            let from = if train_from == "the table" {
                "the rest of the table"
            } else {
                "the rest of the train split"
            };
            let (rest, carved, how) = carve(&train, from, seed, stratify)?;
            train = rest;
            (Some(carved), Some(how))
        }
    };
    let record = Evaluation {
        data_digest: job.dataset.digest.clone(),
        train_rows: train.n_rows() as u64,
        validation_rows: validation.as_ref().map(|v| v.n_rows() as u64),
        validation_from,
        test_rows: test.n_rows() as u64,
        test_from,
        seed,
        scored_on: "test".into(),
    };
    Ok(Rows {
        train,
        validation,
        test,
        record,
    })
}

impl Rows {
    /// A tuning trial's record: its metrics are on the validation rows.
    pub(crate) fn trial_record(&self) -> Evaluation {
        Evaluation {
            scored_on: "validation".into(),
            ..self.record.clone()
        }
    }
}
