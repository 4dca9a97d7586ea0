//! Which rows a job trains on, compares tuning candidates on, and is judged on: one rule for
//! every target (the local trainer, SageMaker's script mode and its tuned jobs).
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

use crate::components::Evaluation;
use mlctl_ml::Table;
use mlctl_spec::Split;

/// The share of rows carved off for validation or testing when the dataset has no such part.
pub const CARVE: f64 = 0.2;
/// The seed of every carve when the dataset's `split` names none.
pub const SEED: u64 = 42;

/// The rows of one job.
#[derive(Debug, Clone)]
pub struct Rows {
    /// What trials and the final model train on.
    pub train: Table,
    /// What tuning candidates are compared on (tuned jobs only).
    pub validation: Option<Table>,
    /// Held out: what the reported metrics are scored on.
    pub test: Table,
    /// What the run records (`scored_on` is `test`; a trial's copy says `validation`).
    pub record: Evaluation,
}

impl Rows {
    /// A tuning trial's record: its metrics are on the validation rows.
    pub fn trial_record(&self) -> Evaluation {
        Evaluation {
            scored_on: "validation".into(),
            ..self.record.clone()
        }
    }
}

/// A dataset version's data as a job reads it: its split parts, or the whole table.
#[derive(Debug, Clone)]
pub struct Parts {
    /// The train split, or the whole table when `split_train` is false.
    pub train: Table,
    /// Whether `train` is the dataset's train split (else the whole table).
    pub split_train: bool,
    /// The validation split, if any.
    pub validation: Option<Table>,
    /// The test split, if any.
    pub test: Option<Table>,
}

/// A dataset version's parts as a store holds them (CSV, or Parquet by its magic number):
/// what a cloud trainer fetches before carving.
#[derive(Debug, Clone)]
pub struct StoredParts {
    /// The train split, or the whole table when `split_train` is false.
    pub train: Vec<u8>,
    /// Whether `train` is the dataset's train split.
    pub split_train: bool,
    /// The validation split, if any.
    pub validation: Option<Vec<u8>>,
    /// The test split, if any.
    pub test: Option<Vec<u8>>,
}

impl StoredParts {
    /// Fetches `dataset`'s parts with `fetch` (a part's URI to its bytes): its train split,
    /// or the whole table without one, then its validation and test splits.
    ///
    /// # Errors
    /// `fetch`'s.
    pub async fn fetch<E, Fut>(
        dataset: &crate::DatasetVersion,
        fetch: impl Fn(String) -> Fut,
    ) -> Result<StoredParts, E>
    where
        Fut: std::future::Future<Output = Result<Vec<u8>, E>>,
    {
        let splits = &dataset.splits;
        let (train, split_train) = match splits.get("train") {
            Some(uri) => (fetch(uri.clone()).await?, true),
            None => (fetch(dataset.uri.clone()).await?, false),
        };
        let validation = match splits.get("validation") {
            Some(uri) => Some(fetch(uri.clone()).await?),
            None => None,
        };
        let test = match splits.get("test") {
            Some(uri) => Some(fetch(uri.clone()).await?),
            None => None,
        };
        Ok(StoredParts {
            train,
            split_train,
            validation,
            test,
        })
    }

    /// The parts as tables.
    ///
    /// # Errors
    /// A part that is not a readable table, as a sentence.
    pub fn read(&self) -> Result<Parts, String> {
        let read = |b: &[u8]| mlctl_ml::table::read_bytes_sniffed(b).map_err(|e| e.to_string());
        Ok(Parts {
            train: read(&self.train)?,
            split_train: self.split_train,
            validation: self.validation.as_deref().map(read).transpose()?,
            test: self.test.as_deref().map(read).transpose()?,
        })
    }
}

/// The seed and stratification of a job's carves, from the dataset's `split`.
pub fn carving(split: Option<&Split>) -> (u64, Option<String>) {
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
) -> Result<(Table, Table, String), String> {
    let split = Split {
        train: 1.0 - CARVE,
        validation: None,
        test: Some(CARVE),
        seed: Some(seed),
        stratify: stratify.map(str::to_string),
    };
    let parts = mlctl_ml::split::split(t, &split)
        .map_err(|e| format!("cannot carve held-out rows from {from}: {e}"))?;
    let how = format!(
        "carved: {:.0}% of {from}, seed {seed}{}",
        CARVE * 100.0,
        stratify
            .map(|c| format!(", stratified by `{c}`"))
            .unwrap_or_default()
    );
    Ok((parts.train, parts.test, how))
}

/// The rows of a job on `parts` of the dataset version `data_digest`; `tuned` asks for
/// validation rows too. `split` is the dataset's (its seed and stratification).
///
/// # Errors
/// What cannot be carved (too few rows, a stratification column that is missing), as a
/// sentence.
pub fn rows(
    parts: Parts,
    split: Option<&Split>,
    data_digest: &str,
    tuned: bool,
) -> Result<Rows, String> {
    let (seed, stratify) = carving(split);
    let stratify = stratify.as_deref();
    let train_from = if parts.split_train {
        "the train split"
    } else {
        "the table"
    };
    let mut train = parts.train;
    let (test, test_from, given_validation) = match (parts.test, parts.validation) {
        (Some(t), v) => (t, "test split".to_string(), v),
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
            let from = if parts.split_train {
                "the rest of the train split"
            } else {
                "the rest of the table"
            };
            let (rest, carved, how) = carve(&train, from, seed, stratify)?;
            train = rest;
            (Some(carved), Some(how))
        }
    };
    let record = Evaluation {
        data_digest: data_digest.to_string(),
        train_rows: train.n_rows() as u64,
        validation_rows: validation.as_ref().map(|v| v.n_rows() as u64),
        validation_from,
        test_rows: test.n_rows() as u64,
        test_from,
        seed,
        scored_on: "test".into(),
        early_stopping: None,
        importance: Vec::new(),
    };
    Ok(Rows {
        train,
        validation,
        test,
        record,
    })
}

/// The metrics of a `metrics.json` a training run wrote (SageMaker's script contract, read on
/// every target): its numbers, nested objects flattened with `.` (`{"test": {"auc": 0.9}}` is
/// `test.auc`); anything else is left out.
pub fn flatten_metrics(v: &serde_json::Value, into: &mut std::collections::BTreeMap<String, f64>) {
    fn walk(
        prefix: &str,
        v: &serde_json::Value,
        into: &mut std::collections::BTreeMap<String, f64>,
    ) {
        match v {
            serde_json::Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    into.insert(prefix.to_string(), x);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, into);
                }
            }
            _ => {}
        }
    }
    walk("", v, into);
}
