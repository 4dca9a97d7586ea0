//! One built-in algorithm fitted, scored and saved as mlctl-ml's portable model directory:
//! what the local trainer runs in-process, and what `mlctl __train-builtin` runs inside a
//! cloud job (Azure ML), so both targets train the same model and report the same metrics
//! for the same rows and seed.
//!
//! Which rows are trained, compared and scored on is [`mlctl_core::evaluation`]'s one rule;
//! [`scored_on`] picks the rows a run is judged on (a tuning trial: validation; the job's
//! model: the held-out test rows).

use crate::PROVIDER;
use crate::fsutil::sniff_format;
use mlctl_core::components::Evaluation;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_core::evaluation::Rows;
use mlctl_ml::Table;
use mlctl_spec::{Algorithm, DataSchema};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Seed of every random choice of a built-in (unless `random_state` is set).
pub const SEED: u64 = 42;

/// The file of the model directory that holds its metrics as one flat JSON object, as a
/// script-mode job writes them.
pub const METRICS_FILE: &str = "metrics.json";
/// The file of the model directory that holds the [`Evaluation`] (the rows behind the
/// metrics).
pub const EVALUATION_FILE: &str = "evaluation.json";

fn invalid(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, PROVIDER, "training", message)
}

fn saving(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(
        ErrorKind::Other,
        PROVIDER,
        "training",
        format!("cannot save {what}: {e}"),
    )
}

/// Reads a table (CSV, or Parquet by its magic bytes).
///
/// # Errors
/// A file that is missing or not a table, naming it.
pub fn read_table(path: &Path) -> Result<Table> {
    mlctl_ml::table::read(path, sniff_format(path)).map_err(|e| {
        ProviderError::new(
            ErrorKind::Invalid,
            PROVIDER,
            "training",
            format!("cannot read training data {}: {e}", path.display()),
        )
    })
}

/// The rows a run is scored on, what they are called in messages, and the record of the
/// run: a tuning trial's validation rows, else the held-out test rows.
///
/// # Errors
/// A trial of rows without validation rows.
pub fn scored_on(rows: &Rows, trial: bool) -> Result<(&Table, &'static str, Evaluation)> {
    match (trial, &rows.validation) {
        (true, Some(v)) => Ok((v, "validation rows", rows.trial_record())),
        (true, None) => Err(invalid("a tuning trial needs validation rows".into())),
        (false, _) => Ok((&rows.test, "held-out test rows", rows.record.clone())),
    }
}

/// One built-in fit.
#[derive(Debug, Clone)]
pub struct Fit<'a> {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Its hyperparameters (a trial's values already merged in).
    pub hyperparameters: &'a BTreeMap<String, serde_json::Value>,
    /// The rows it learns from.
    pub train: &'a Table,
    /// The validation rows early stopping watches (never the test rows).
    pub validation: Option<&'a Table>,
    /// The rows its metrics are on.
    pub eval: &'a Table,
    /// What `eval` is, for messages (`held-out test rows`).
    pub eval_name: &'a str,
    /// The label column (none for clustering).
    pub target: Option<&'a str>,
    /// Column roles and the signature the model carries.
    pub schema: Option<&'a DataSchema>,
    /// Training threads (`None`: every core).
    pub threads: Option<usize>,
    /// Lineage written into the model's manifest (`run`, `trainingJob`, `dataset`, ...).
    pub lineage: BTreeMap<String, String>,
    /// Whether to compute permutation importance on `eval` (not for tuning trials, whose
    /// models are compared, not kept).
    pub importance: bool,
}

/// What a fit produced.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The metrics on the `eval` rows, in the vocabulary's names.
    pub metrics: BTreeMap<String, f64>,
    /// Seconds spent fitting.
    pub fit_secs: f64,
    /// How early stopping ended, when it was on.
    pub early_stopping: Option<mlctl_ml::algo::boosting::EarlyStopping>,
    /// Gain and permutation importance (permutation on `eval`), when asked for.
    pub importance: Vec<mlctl_ml::importance::Importance>,
}

/// How early stopping ended in `model`, when it was on.
pub fn early_stopping(
    model: &mlctl_ml::PortableModel,
) -> Option<mlctl_ml::algo::boosting::EarlyStopping> {
    match model.estimator() {
        mlctl_ml::algo::Estimator::Boosting(b) => b.early_stopping.clone(),
        _ => None,
    }
}

/// Fits `fit.algorithm`, scores it on `fit.eval` and saves the model (manifest with metrics
/// and lineage, plus weights) into `dir`.
///
/// # Errors
/// Data the algorithm cannot learn from or be scored on (`Invalid`, naming the algorithm or
/// the rows), or a directory that cannot be written.
pub fn fit_and_save(fit: Fit<'_>, dir: &Path) -> Result<Fitted> {
    let algorithm = fit.algorithm;
    let t0 = Instant::now();
    let req = mlctl_ml::TrainRequest {
        algorithm,
        hyperparameters: fit.hyperparameters,
        train: fit.train,
        validation: fit.validation,
        target: fit.target,
        seed: SEED,
        schema: fit.schema,
    };
    let eval_name = fit.eval_name;
    let run = || {
        let mut model =
            mlctl_ml::train(req).map_err(|e| invalid(format!("{}: {e}", algorithm.as_str())))?;
        let fit_secs = t0.elapsed().as_secs_f64();
        let metrics = mlctl_ml::metrics::evaluate(&model, fit.eval)
            .map_err(|e| invalid(format!("evaluation on the {eval_name}: {e}")))?;
        model.set_metrics(metrics.clone());
        let importance = if fit.importance {
            mlctl_ml::importance::importance(&model, fit.eval, SEED)
        } else {
            Vec::new()
        };
        Ok::<_, ProviderError>((model, metrics, fit_secs, importance))
    };
    let (mut model, metrics, fit_secs, importance) = match fit.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| invalid(format!("cannot start {n} training threads: {e}")))?
            .install(run)?,
        None => run()?,
    };
    model.lineage_mut().extend(fit.lineage);
    model.save(dir).map_err(|e| saving("the model", e))?;
    Ok(Fitted {
        metrics,
        fit_secs,
        early_stopping: early_stopping(&model),
        importance,
    })
}

/// Scores the model saved in `from` on the held-out test rows and saves it, with those
/// metrics, into `dir`: a tuning search's chosen model as the job's model.
///
/// # Errors
/// A model that cannot be read, scored or saved.
pub fn hold_out(rows: &Rows, from: &Path, dir: &Path) -> Result<Fitted> {
    let mut model =
        mlctl_ml::model::PortableModel::load(from).map_err(|e| saving("the chosen model", e))?;
    let metrics = mlctl_ml::metrics::evaluate(&model, &rows.test)
        .map_err(|e| invalid(format!("evaluation on the held-out test rows: {e}")))?;
    model.set_metrics(metrics.clone());
    model.save(dir).map_err(|e| saving("the chosen model", e))?;
    Ok(Fitted {
        metrics,
        fit_secs: 0.0,
        early_stopping: early_stopping(&model),
        importance: mlctl_ml::importance::importance(&model, &rows.test, SEED),
    })
}

/// Writes [`METRICS_FILE`] (flat metric values) and [`EVALUATION_FILE`] into `dir`, the
/// files a cloud trainer reads back from a job's model output.
///
/// # Errors
/// A directory that cannot be written.
pub fn write_results(
    dir: &Path,
    metrics: &BTreeMap<String, f64>,
    evaluation: &Evaluation,
) -> Result<()> {
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| saving(name, e))
    };
    write(
        METRICS_FILE,
        serde_json::to_string_pretty(metrics).map_err(|e| saving(METRICS_FILE, e))?,
    )?;
    write(
        EVALUATION_FILE,
        serde_json::to_string_pretty(evaluation).map_err(|e| saving(EVALUATION_FILE, e))?,
    )
}
