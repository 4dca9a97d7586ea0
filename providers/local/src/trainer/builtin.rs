//! Built-in algorithms, trained in-process with mlctl-ml and evaluated on the held-out split.
//!
//! The rows come from [`super::evaluation`]: a tuning trial is scored on validation rows, the
//! job's model on held-out test rows (for a tuned job, only the chosen candidate, by
//! [`hold_out`]). The artifact is mlctl-ml's portable model directory (`model.json` manifest
//! with metrics and lineage, plus weights).

use super::evaluation::Rows;
use super::{TrialOutput, TrialRun};
use crate::PROVIDER;
use crate::compute::Limits;
use crate::process::note;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_ml::Table;
use mlctl_ml::rng::Rng;
use mlctl_spec::Algorithm;
use std::path::Path;
use std::time::Instant;
use tokio::sync::watch;

/// Seed of every random choice of a built-in (unless `random_state` is set).
const SEED: u64 = 42;

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
    let (eval, held_out, record) = match (t.trial, &rows.validation) {
        (true, Some(v)) => (v, "validation rows", rows.trial_record()),
        (true, None) => return Err(invalid("a tuning trial needs validation rows".into())),
        (false, _) => (&rows.test, "held-out test rows", rows.record.clone()),
    };
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
    let t0 = Instant::now();
    let req = mlctl_ml::TrainRequest {
        algorithm,
        hyperparameters: t.params,
        train: &train,
        target: job.target_column.as_deref(),
        seed: SEED,
        schema: job.schema.as_ref(),
    };
    // `compute.cpu` and `overrides.local.threads`: the built-in's threads.
    let fit = || {
        let mut model =
            mlctl_ml::train(req).map_err(|e| invalid(format!("{}: {e}", algorithm.as_str())))?;
        let fit_secs = t0.elapsed().as_secs_f64();
        let metrics = mlctl_ml::metrics::evaluate(&model, eval)
            .map_err(|e| invalid(format!("evaluation on the {held_out}: {e}")))?;
        model.set_metrics(metrics.clone());
        Ok::<_, ProviderError>((model, metrics, fit_secs))
    };
    let (mut model, metrics, fit_secs) = match Limits::of(job.spec.compute.as_ref()).threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| invalid(format!("cannot start {n} training threads: {e}")))?
            .install(fit)?,
        None => fit()?,
    };
    let lineage = model.lineage_mut();
    lineage.insert("run".into(), t.run_id.clone());
    lineage.insert("trainingJob".into(), job.job_name.clone());
    lineage.insert("dataset".into(), job.dataset.name.clone());
    lineage.insert("datasetDigest".into(), job.dataset.digest.clone());
    lineage.insert("commit".into(), job.commit.clone());
    let dir = t.run_dir.join("model");
    model.save(&dir).map_err(|e| {
        ProviderError::new(
            ErrorKind::Other,
            PROVIDER,
            "training",
            format!("cannot save the model: {e}"),
        )
    })?;
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
    let saving = |e: mlctl_ml::model::ModelError| {
        ProviderError::new(
            ErrorKind::Other,
            PROVIDER,
            "training",
            format!("cannot save the chosen model: {e}"),
        )
    };
    let mut model = mlctl_ml::model::PortableModel::load(&chosen.model_dir).map_err(saving)?;
    let metrics = mlctl_ml::metrics::evaluate(&model, &rows.test)
        .map_err(|e| invalid(format!("evaluation on the held-out test rows: {e}")))?;
    model.set_metrics(metrics.clone());
    let dir = dir.join("model");
    model.save(&dir).map_err(saving)?;
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
        evaluation: Some(rows.record.clone()),
    })
}
