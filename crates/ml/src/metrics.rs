//! Evaluation metrics, with scikit-learn's definitions and names.
//!
//! The names reported per task are listed once, with their meaning and direction, in
//! `mlctl_spec::metrics` (what gates and tuning objectives are validated against, and what
//! `docs/metrics.md` is generated from); `tests/spec_tables.rs` checks this module reports
//! exactly those:
//!
//! * classification: `accuracy`, `precision_macro`, `recall_macro`, `f1_macro`,
//!   `precision_weighted`, `recall_weighted`, `f1_weighted`, `roc_auc` (binary, or macro
//!   one-vs-rest), `log_loss`;
//! * regression: `rmse`, `mse`, `mae`, `r2`;
//! * clustering: `inertia`, `silhouette` (on a seeded sample of at most
//!   [`SILHOUETTE_SAMPLE`] rows).
//!
//! A test label never seen in training counts as an extra class that the model never predicts.
//! Rows whose label is missing are left out.

use crate::algo::{Estimator, Task};
use crate::model::PortableModel;
use crate::preprocess::EncodeError;
use crate::rng::Rng;
use crate::table::{Table, TableError};
use std::collections::{BTreeMap, HashMap};

/// Most rows used for the silhouette score.
pub const SILHOUETTE_SAMPLE: usize = 2000;

/// Why a model could not be evaluated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The test table does not fit the model's inputs.
    #[error(transparent)]
    Input(#[from] EncodeError),
    /// The label column is absent.
    #[error("test data: {0}")]
    Label(#[from] TableError),
    /// A regression label that is not a number.
    #[error("test data: label column `{column}`, row {row}: {value:?} is not a number")]
    NotANumber {
        /// The label column.
        column: String,
        /// The row.
        row: usize,
        /// The value.
        value: String,
    },
    /// No rows to evaluate.
    #[error("the test data has no rows with a label")]
    Empty,
}

/// Computes the metrics of `model` on `test` (which must hold the input columns and, unless
/// clustering, the label column).
pub fn evaluate(model: &PortableModel, test: &Table) -> Result<BTreeMap<String, f64>, EvalError> {
    let (preds, scores) = model.predict_table(test)?;
    let k = model.n_outputs();
    match model.task() {
        Task::Classification => {
            let name = model.manifest().output.name.clone().unwrap_or_default();
            let col = test.require(&name)?;
            let index: HashMap<&str, usize> = model
                .classes()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect();
            let mut unseen: BTreeMap<String, usize> = BTreeMap::new();
            let (mut y_true, mut y_pred, mut proba) = (Vec::new(), Vec::new(), Vec::new());
            for (i, p) in preds.iter().enumerate() {
                let Some(label) = col.string_at(i) else {
                    continue;
                };
                let t = match index.get(label.as_str()) {
                    Some(&t) => t,
                    None => {
                        let next = k + unseen.len();
                        *unseen.entry(label).or_insert(next)
                    }
                };
                y_true.push(t);
                y_pred.push(p.as_f64() as usize);
                proba.extend_from_slice(&scores[i * k..(i + 1) * k]);
            }
            if y_true.is_empty() {
                return Err(EvalError::Empty);
            }
            Ok(classification(&y_true, &y_pred, &proba, k))
        }
        Task::Regression => {
            let name = model.manifest().output.name.clone().unwrap_or_default();
            let col = test.require(&name)?;
            let (mut y, mut p) = (Vec::new(), Vec::new());
            for (i, pr) in preds.iter().enumerate() {
                if col.is_missing(i) {
                    continue;
                }
                let v = col.f64_at(i);
                if v.is_nan() {
                    return Err(EvalError::NotANumber {
                        column: name,
                        row: i,
                        value: col.string_at(i).unwrap_or_default(),
                    });
                }
                y.push(v);
                p.push(pr.as_f64());
            }
            if y.is_empty() {
                return Err(EvalError::Empty);
            }
            Ok(regression(&y, &p))
        }
        Task::Clustering => {
            let mut m = BTreeMap::new();
            if let Estimator::Kmeans(km) = model.estimator() {
                let raw = model.raw_matrix(test)?;
                let w_in = model.input_names().len();
                let pre = crate::preprocess::Preprocessor {
                    features: model.manifest().inputs.clone(),
                };
                let d = pre.encoded_width();
                let n = test.n_rows();
                let mut x = vec![0.0; n * d];
                for i in 0..n {
                    pre.encode_raw_row(&raw[i * w_in..(i + 1) * w_in], &mut x[i * d..(i + 1) * d]);
                }
                let labels: Vec<usize> = preds.iter().map(|p| p.as_f64() as usize).collect();
                let inertia: f64 = (0..n).map(|i| km.nearest(&x[i * d..(i + 1) * d]).1).sum();
                m.insert("inertia".into(), inertia);
                if let Some(s) = silhouette(&x, d, &labels, SILHOUETTE_SAMPLE, 0) {
                    m.insert("silhouette".into(), s);
                }
            }
            Ok(m)
        }
    }
}

/// Classification metrics. `y_true` may hold indices >= `k` (classes unseen in training);
/// `proba` is row-major `n x k`.
pub fn classification(
    y_true: &[usize],
    y_pred: &[usize],
    proba: &[f64],
    k: usize,
) -> BTreeMap<String, f64> {
    let n = y_true.len();
    let mut m = BTreeMap::new();
    let n_labels = y_true
        .iter()
        .chain(y_pred)
        .copied()
        .max()
        .map_or(0, |x| x + 1);
    let mut tp = vec![0.0; n_labels];
    let mut fp = vec![0.0; n_labels];
    let mut fnn = vec![0.0; n_labels];
    let mut present = vec![false; n_labels];
    let mut correct = 0.0;
    for (&t, &p) in y_true.iter().zip(y_pred) {
        present[t] = true;
        present[p] = true;
        if t == p {
            tp[t] += 1.0;
            correct += 1.0;
        } else {
            fp[p] += 1.0;
            fnn[t] += 1.0;
        }
    }
    m.insert("accuracy".into(), correct / n as f64);
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let labels: Vec<usize> = (0..n_labels).filter(|&c| present[c]).collect();
    let (mut pm, mut rm, mut fm, mut pw, mut rw, mut fw) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for &c in &labels {
        let p = div(tp[c], tp[c] + fp[c]);
        let r = div(tp[c], tp[c] + fnn[c]);
        let f = div(2.0 * p * r, p + r);
        let support = (tp[c] + fnn[c]) / n as f64;
        pm += p;
        rm += r;
        fm += f;
        pw += p * support;
        rw += r * support;
        fw += f * support;
    }
    let nl = labels.len().max(1) as f64;
    m.insert("precision_macro".into(), pm / nl);
    m.insert("recall_macro".into(), rm / nl);
    m.insert("f1_macro".into(), fm / nl);
    m.insert("precision_weighted".into(), pw);
    m.insert("recall_weighted".into(), rw);
    m.insert("f1_weighted".into(), fw);
    if proba.len() == n * k && k >= 2 {
        let ll: f64 = y_true
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let p = if t < k { proba[i * k + t] } else { 0.0 };
                -p.clamp(1e-15, 1.0).ln()
            })
            .sum::<f64>()
            / n as f64;
        m.insert("log_loss".into(), ll);
        let auc = if k == 2 {
            let scores: Vec<f64> = (0..n).map(|i| proba[i * k + 1]).collect();
            let pos: Vec<bool> = y_true.iter().map(|&t| t == 1).collect();
            roc_auc(&scores, &pos)
        } else {
            let aucs: Vec<f64> = (0..k)
                .filter_map(|c| {
                    let scores: Vec<f64> = (0..n).map(|i| proba[i * k + c]).collect();
                    let pos: Vec<bool> = y_true.iter().map(|&t| t == c).collect();
                    roc_auc(&scores, &pos)
                })
                .collect();
            (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
        };
        if let Some(a) = auc {
            m.insert("roc_auc".into(), a);
        }
    }
    m
}

/// Area under the ROC curve (ties count half); `None` unless both classes are present.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            if positive[o] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let np = n_pos as f64;
    Some((rank_sum_pos - np * (np + 1.0) / 2.0) / (np * n_neg as f64))
}

/// Regression metrics.
pub fn regression(y: &[f64], pred: &[f64]) -> BTreeMap<String, f64> {
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let (mut se, mut ae, mut tot) = (0.0, 0.0, 0.0);
    for (t, p) in y.iter().zip(pred) {
        se += (t - p) * (t - p);
        ae += (t - p).abs();
        tot += (t - mean) * (t - mean);
    }
    let mut m = BTreeMap::new();
    m.insert("mse".into(), se / n);
    m.insert("rmse".into(), (se / n).sqrt());
    m.insert("mae".into(), ae / n);
    m.insert(
        "r2".into(),
        if tot > 0.0 {
            1.0 - se / tot
        } else if se == 0.0 {
            1.0
        } else {
            0.0
        },
    );
    m
}

/// Mean silhouette coefficient over a seeded sample of at most `sample` rows; `None` with
/// fewer than two clusters.
pub fn silhouette(x: &[f64], d: usize, labels: &[usize], sample: usize, seed: u64) -> Option<f64> {
    let n = labels.len();
    let mut idx: Vec<usize> = (0..n).collect();
    if n > sample {
        Rng::new(seed).shuffle(&mut idx);
        idx.truncate(sample);
    }
    let k = labels.iter().copied().max().map_or(0, |m| m + 1);
    let distinct = {
        let mut seen = vec![false; k];
        idx.iter().for_each(|&i| seen[labels[i]] = true);
        seen.iter().filter(|&&s| s).count()
    };
    if distinct < 2 {
        return None;
    }
    use rayon::prelude::*;
    let total: f64 = idx
        .par_iter()
        .map(|&i| {
            let xi = &x[i * d..(i + 1) * d];
            let mut sums = vec![0.0; k];
            let mut counts = vec![0usize; k];
            for &j in &idx {
                if j == i {
                    continue;
                }
                let xj = &x[j * d..(j + 1) * d];
                let dist = xi
                    .iter()
                    .zip(xj)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt();
                sums[labels[j]] += dist;
                counts[labels[j]] += 1;
            }
            let own = labels[i];
            if counts[own] == 0 {
                return 0.0;
            }
            let a = sums[own] / counts[own] as f64;
            let b = (0..k)
                .filter(|&c| c != own && counts[c] > 0)
                .map(|c| sums[c] / counts[c] as f64)
                .fold(f64::INFINITY, f64::min);
            if !b.is_finite() {
                return 0.0;
            }
            (b - a) / a.max(b).max(1e-300)
        })
        // Summed in row order, not in rayon's (scheduling-dependent) order.
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    Some(total / idx.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn classification_matches_sklearn() {
        // sklearn: y_true=[0,1,2,2,1,0], y_pred=[0,2,2,2,1,1]
        let y_true = [0, 1, 2, 2, 1, 0];
        let y_pred = [0, 2, 2, 2, 1, 1];
        let m = classification(&y_true, &y_pred, &[], 3);
        assert!(close(m["accuracy"], 4.0 / 6.0));
        // precision per class: 1, 0.5, 2/3 ; recall: 0.5, 0.5, 1
        assert!(close(m["precision_macro"], (1.0 + 0.5 + 2.0 / 3.0) / 3.0));
        assert!(close(m["recall_macro"], (0.5 + 0.5 + 1.0) / 3.0));
        let f = [2.0 / 3.0, 0.5, 0.8];
        assert!(close(m["f1_macro"], f.iter().sum::<f64>() / 3.0));
        assert!(close(m["f1_weighted"], f.iter().sum::<f64>() / 3.0));
    }

    #[test]
    fn auc_and_log_loss() {
        // sklearn.metrics.roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75
        assert!(close(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
            0.75
        ));
        assert!(close(roc_auc(&[0.5, 0.5], &[false, true]).unwrap(), 0.5));
        assert_eq!(roc_auc(&[0.5], &[true]), None);
        let proba = [0.9, 0.1, 0.2, 0.8];
        let m = classification(&[0, 1], &[0, 1], &proba, 2);
        assert!(close(m["log_loss"], -(0.9f64.ln() + 0.8f64.ln()) / 2.0));
        assert!(close(m["roc_auc"], 1.0));
    }

    #[test]
    fn regression_metrics() {
        let m = regression(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]);
        // sklearn: mse 0.375, mae 0.5, r2 0.9486081370449679
        assert!(close(m["mse"], 0.375));
        assert!(close(m["mae"], 0.5));
        assert!(close(m["r2"], 0.948_608_137_044_967_9));
        assert!(close(m["rmse"], 0.375f64.sqrt()));
    }

    #[test]
    fn silhouette_of_separated_clusters_is_high() {
        let x = [0.0, 0.1, 0.2, 10.0, 10.1, 10.2];
        let s = silhouette(&x, 1, &[0, 0, 0, 1, 1, 1], 100, 0).unwrap();
        assert!(s > 0.95, "{s}");
        assert_eq!(silhouette(&x, 1, &[0; 6], 100, 0), None);
    }
}
