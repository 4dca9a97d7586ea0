//! Built-in algorithms, trained in-process with mlctl-ml and evaluated on the held-out split.
//!
//! The rows come from [`super::evaluation`]: a tuning trial is scored on validation rows, the
//! job's model on held-out test rows (for a tuned job, only the chosen candidate, by
//! [`hold_out`]). The artifact is mlctl-ml's portable model directory (`model.json` manifest
//! with metrics and lineage, plus weights).

use super::evaluation::Rows;
use super::{TrialOutput, TrialRun};
use crate::PROVIDER;
use crate::builtin::SEED;
use crate::compute::Limits;
use crate::process::note;
use mlctl_core::components::Evaluation;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_ml::Table;
use mlctl_ml::rng::Rng;
use mlctl_spec::Algorithm;
use std::collections::BTreeMap;
use std::path::Path;
use tokio::sync::watch;

/// The built-ins this target runs (YAML names).
pub(crate) fn algorithms() -> Vec<Algorithm> {
    Algorithm::ALL.iter().map(|(_, a)| *a).collect()
}

fn invalid(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, PROVIDER, "training", message)
}

/// The first `fraction` of the rows in a seeded shuffle (successive halving's small budgets).
fn subsample(t: &Table, fraction: f64) -> Table {
    let n = t.n_rows();
    let keep = ((n as f64 * fraction).ceil() as usize).clamp(1.min(n), n);
    let mut idx: Vec<usize> = (0..n).collect();
    Rng::new(SEED).shuffle(&mut idx);
    idx.truncate(keep);
    idx.sort_unstable();
    t.take(&idx)
}

/// Trains and evaluates one built-in model.
pub(crate) fn run(t: &TrialRun<'_>, cancel: &watch::Receiver<bool>) -> Result<TrialOutput> {
    let job = t.job;
    let Some(algorithm) = job.spec.algorithm else {
        return Err(invalid("no algorithm".into()));
    };
    if *cancel.borrow() {
        return Err(ProviderError::new(
            ErrorKind::Failed,
            PROVIDER,
            "training",
            "cancelled",
        ));
    }
    let Some(rows) = t.rows.as_deref() else {
        return Err(invalid("no training rows were prepared".into()));
    };
    // A tuning trial is compared on the validation rows; only the chosen candidate is
    // scored on the held-out test rows (`hold_out`).
    let (eval, held_out, record) = crate::builtin::scored_on(rows, t.trial)?;
    let mut train = rows.train.clone();
    if let Some(b) = t.budget {
        train = subsample(&train, b);
    }
    note(
        &t.log,
        &format!(
            "mlctl: {} on {} rows, scored on {} {held_out} ({}); hyperparameters {}",
            algorithm.as_str(),
            train.n_rows(),
            eval.n_rows(),
            if t.trial {
                record.validation_from.as_deref().unwrap_or("")
            } else {
                record.test_from.as_str()
            },
            crate::db::json(t.params)
        ),
    );
    let lineage = BTreeMap::from([
        ("run".to_string(), t.run_id.clone()),
        ("trainingJob".to_string(), job.job_name.clone()),
        ("dataset".to_string(), job.dataset.name.clone()),
        ("datasetDigest".to_string(), job.dataset.digest.clone()),
        ("commit".to_string(), job.commit.clone()),
    ]);
    let dir = t.run_dir.join("model");
    // `compute.cpu` and `overrides.local.threads`: the built-in's threads.
    let fitted = crate::builtin::fit_and_save(
        crate::builtin::Fit {
            algorithm,
            hyperparameters: t.params,
            train: &train,
            validation: rows.validation.as_ref(),
            eval,
            eval_name: held_out,
            target: job.target_column.as_deref(),
            schema: job.schema.as_ref(),
            threads: Limits::of(job.spec.compute.as_ref()).threads,
            lineage,
            importance: !t.trial,
        },
        &dir,
    )?;
    let (metrics, fit_secs) = (fitted.metrics, fitted.fit_secs);
    let mut record = record;
    record.early_stopping = fitted.early_stopping;
    record.importance = fitted.importance;
    note(
        &t.log,
        &format!(
            "mlctl: fitted in {fit_secs:.3}s; metrics on the {held_out} {}",
            crate::db::json(&metrics)
        ),
    );
    Ok(TrialOutput {
        metrics,
        model_dir: dir,
        evaluation: Some(record),
    })
}

/// Scores a tuning search's chosen model on the held-out test rows, as the job's model in
/// `dir`: the metrics gates judge. The trial's own copy keeps its validation metrics.
pub(crate) fn hold_out(
    rows: &Rows,
    chosen: &TrialOutput,
    dir: &Path,
    log: &Path,
) -> Result<TrialOutput> {
    let dir = dir.join("model");
    let fitted = crate::builtin::hold_out(rows, &chosen.model_dir, &dir)?;
    let metrics = fitted.metrics;
    note(
        log,
        &format!(
            "mlctl: the chosen model on {} held-out test rows ({}): {}",
            rows.test.n_rows(),
            rows.record.test_from,
            crate::db::json(&metrics)
        ),
    );
    Ok(TrialOutput {
        metrics,
        model_dir: dir,
        evaluation: Some(Evaluation {
            early_stopping: fitted.early_stopping,
            importance: fitted.importance,
            ..rows.record.clone()
        }),
    })
}
