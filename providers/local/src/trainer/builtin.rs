//! Built-in algorithms, trained in-process with mlctl-ml and evaluated on the held-out split.
//!
//! Training rows: the dataset's `train` part (the whole table without a split). Evaluation
//! rows: `test`, else `validation`, else a seeded 80/20 split of the training rows, so a
//! model always has held-out metrics for its gates. The artifact is mlctl-ml's portable model
//! directory (`model.json` manifest with metrics and lineage, plus weights).

use super::{TrialOutput, TrialRun};
use crate::PROVIDER;
use crate::compute::Limits;
use crate::fsutil::sniff_format;
use crate::process::note;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_ml::Table;
use mlctl_ml::rng::Rng;
use mlctl_ml::table;
use mlctl_spec::{Algorithm, Split};
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
    let splits = &job.dataset.splits;
    let (mut train, test, held_out) = match (
        splits.get("train"),
        splits.get("test").or_else(|| splits.get("validation")),
    ) {
        (Some(train), Some(test)) => (
            read(train)?,
            read(test)?,
            if splits.contains_key("test") {
                "test split"
            } else {
                "validation split"
            },
        ),
        (train, _) => {
            let whole = read(train.unwrap_or(&job.dataset.uri))?;
            let split = Split {
                train: 0.8,
                validation: None,
                test: Some(0.2),
                seed: Some(SEED),
                stratify: None,
            };
            let parts =
                mlctl_ml::split::split(&whole, &split).map_err(|e| invalid(e.to_string()))?;
            (
                parts.train,
                parts.test,
                "20% of the training rows (the dataset has no test split)",
            )
        }
    };
    if let Some(b) = t.budget {
        train = subsample(&train, b);
    }
    note(
        &t.log,
        &format!(
            "mlctl: {} on {} rows, held out: {} rows ({held_out}); hyperparameters {}",
            algorithm.as_str(),
            train.n_rows(),
            test.n_rows(),
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
        let metrics = mlctl_ml::metrics::evaluate(&model, &test)
            .map_err(|e| invalid(format!("evaluation on the held-out rows: {e}")))?;
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
            "mlctl: fitted in {fit_secs:.3}s; held-out metrics {}",
            crate::db::json(&metrics)
        ),
    );
    Ok(TrialOutput {
        metrics,
        model_dir: dir,
    })
}
