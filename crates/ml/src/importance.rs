//! Global feature importance of a fitted model, per input column:
//!
//! - **gain**: the share of all split gain that splits on the column earned (boosted trees;
//!   a categorical column's one-hot features add up to the column), as LightGBM's
//!   `importance_type="gain"`, normalised to sum to 1;
//! - **permutation**: how much the model's score falls when the column's values are shuffled
//!   among the held-out rows, as scikit-learn's `permutation_importance` (accuracy for a
//!   classifier, R² for a regressor; the mean and standard deviation over a few shuffles).

use crate::algo::{Estimator, Task};
use crate::model::{PortableModel, Prediction};
use crate::rng::Rng;
use crate::table::Table;
use serde::{Deserialize, Serialize};

/// Shuffles per column.
pub const REPEATS: usize = 3;
/// Held-out rows that permutation importance is computed on, at most (a deterministic sample
/// beyond that).
pub const MAX_ROWS: usize = 10_000;

/// The importance of one input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Importance {
    /// The input column.
    pub feature: String,
    /// Its share of the split gain (boosted trees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gain: Option<f64>,
    /// The mean fall of the score when it is shuffled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permutation: Option<f64>,
    /// The standard deviation of that fall over the shuffles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permutation_std: Option<f64>,
}

/// The gain share of each input column, when the model records gains.
pub fn gain(model: &PortableModel) -> Option<Vec<(String, f64)>> {
    let Estimator::Boosting(b) = model.estimator() else {
        return None;
    };
    let inputs = &model.manifest().inputs;
    let width: usize = inputs.iter().map(|f| f.width()).sum();
    if b.gain.len() != width {
        return None;
    }
    let total: f64 = b.gain.iter().sum();
    let mut at = 0;
    Some(
        inputs
            .iter()
            .map(|f| {
                let g: f64 = b.gain[at..at + f.width()].iter().sum();
                at += f.width();
                (f.name.clone(), if total > 0.0 { g / total } else { 0.0 })
            })
            .collect(),
    )
}

/// The score permutation importance measures: accuracy or R² of `preds` on `labels`.
fn score(task: Task, preds: &[Prediction], labels: &Labels) -> f64 {
    match (task, labels) {
        (Task::Classification, Labels::Classes(y)) => {
            let mut hit = 0usize;
            for (p, y) in preds.iter().zip(y) {
                if let Prediction::Class { index, .. } = p {
                    hit += (Some(*index) == *y) as usize;
                }
            }
            hit as f64 / y.len().max(1) as f64
        }
        (Task::Regression, Labels::Values(y)) => {
            let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
            let (mut ss_res, mut ss_tot) = (0.0, 0.0);
            for (p, y) in preds.iter().zip(y) {
                let e = y - p.as_f64();
                ss_res += e * e;
                ss_tot += (y - mean) * (y - mean);
            }
            if ss_tot > 0.0 {
                1.0 - ss_res / ss_tot
            } else {
                0.0
            }
        }
        _ => 0.0,
    }
}

enum Labels {
    /// Class index per row (`None`: a class the model never saw).
    Classes(Vec<Option<usize>>),
    Values(Vec<f64>),
}

/// Permutation importance of every input column on `rows` (held-out rows with the label):
/// `(column, mean fall, standard deviation)`. `None` for a model with no label (clustering)
/// or rows without labelled values.
pub fn permutation(
    model: &PortableModel,
    rows: &Table,
    seed: u64,
) -> Option<Vec<(String, f64, f64)>> {
    let task = model.task();
    let label = model.manifest().output.name.clone()?;
    let col = rows.column(&label)?;
    // Rows with a label, sampled down to MAX_ROWS.
    let mut keep: Vec<usize> = (0..rows.n_rows()).filter(|&i| !col.is_missing(i)).collect();
    if keep.len() > MAX_ROWS {
        Rng::new(seed).shuffle(&mut keep);
        keep.truncate(MAX_ROWS);
        keep.sort_unstable();
    }
    if keep.is_empty() {
        return None;
    }
    let labels = match task {
        Task::Classification => {
            let classes = model.classes();
            Labels::Classes(
                keep.iter()
                    .map(|&i| {
                        let s = col.string_at(i)?;
                        classes.iter().position(|c| *c == s)
                    })
                    .collect(),
            )
        }
        Task::Regression => {
            let y: Vec<f64> = keep.iter().map(|&i| col.f64_at(i)).collect();
            if y.iter().any(|v| v.is_nan()) {
                return None;
            }
            Labels::Values(y)
        }
        Task::Clustering => return None,
    };
    let sample = rows.take(&keep);
    let raw = model.raw_matrix(&sample).ok()?;
    let (n, w) = (keep.len(), model.input_names().len());
    let baseline = score(task, &model.predict_f64(&raw, n).ok()?, &labels);
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(w);
    let mut shuffled = raw.clone();
    let mut order: Vec<usize> = (0..n).collect();
    for (j, name) in model.input_names().iter().enumerate() {
        let mut falls = Vec::with_capacity(REPEATS);
        for _ in 0..REPEATS {
            rng.shuffle(&mut order);
            for (i, &from) in order.iter().enumerate() {
                shuffled[i * w + j] = raw[from * w + j];
            }
            let preds = model.predict_f64(&shuffled, n).ok()?;
            falls.push(baseline - score(task, &preds, &labels));
        }
        for i in 0..n {
            shuffled[i * w + j] = raw[i * w + j];
        }
        let mean = falls.iter().sum::<f64>() / REPEATS as f64;
        let var = falls.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / REPEATS as f64;
        out.push((name.clone(), mean, var.sqrt()));
    }
    Some(out)
}

/// Gain and permutation importance together, most important first (by permutation, then
/// gain), one entry per input column. Empty when the model supports neither.
pub fn importance(model: &PortableModel, held_out: &Table, seed: u64) -> Vec<Importance> {
    let gain = gain(model);
    let perm = permutation(model, held_out, seed);
    if gain.is_none() && perm.is_none() {
        return Vec::new();
    }
    let mut out: Vec<Importance> = model
        .input_names()
        .iter()
        .enumerate()
        .map(|(j, name)| Importance {
            feature: name.clone(),
            gain: gain.as_ref().map(|g| g[j].1),
            permutation: perm.as_ref().map(|p| p[j].1),
            permutation_std: perm.as_ref().map(|p| p[j].2),
        })
        .collect();
    out.sort_by(|a, b| {
        let key = |i: &Importance| (i.permutation.unwrap_or(0.0), i.gain.unwrap_or(0.0));
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0)
            .then(kb.1.total_cmp(&ka.1))
            .then(a.feature.cmp(&b.feature))
    });
    out
}
