//! Gradient-boosted trees: squared error for regression, log loss for binary and multiclass
//! classification (one tree per class and round), Newton-step leaves grown leaf-wise on
//! gradient histograms ([`super::leafwise`]), optional row subsampling, sample and class
//! weights, and early stopping on a validation set. Leaf values already include the learning
//! rate.

use super::leafwise::{self, Bins, GrowParams};
use super::tree::{CommonTree, MaxFeatures, Tree};
use super::{Matrix, ParamError, Params, Target, Task, softmax};
use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The loss a boosted model was fitted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Regression.
    SquaredError,
    /// Two classes, one model (log-odds of class 1).
    Binary,
    /// `k` classes, one model per class (softmax).
    Multiclass,
}

/// A fitted boosted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Boosting {
    /// The loss.
    pub loss: Loss,
    /// Number of classes (1 for regression).
    pub n_classes: usize,
    /// Starting raw score per model.
    pub init: Vec<f64>,
    /// Trees, round by round, `init.len()` per round.
    pub trees: Vec<Tree>,
    /// How early stopping ended, when it was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Total split gain per encoded feature over the kept trees (the "gain" importance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gain: Vec<f64>,
}

/// The outcome of early stopping on the validation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EarlyStopping {
    /// Rounds kept (the best round, counted from 1).
    pub best_round: usize,
    /// Rounds trained before stopping.
    pub rounds_trained: usize,
    /// Rounds without improvement that stop training (`early_stopping_rounds`).
    pub patience: usize,
    /// The validation loss of the kept model (log loss, or mean squared error).
    pub best_loss: f64,
}

impl Boosting {
    /// Rounds in the model.
    pub fn rounds(&self) -> usize {
        self.trees.len() / self.init.len().max(1)
    }

    /// Values per prediction: class probabilities, or 1.
    pub fn n_outputs(&self) -> usize {
        match self.loss {
            Loss::SquaredError => 1,
            _ => self.n_classes,
        }
    }

    /// Predicts row `x` into `out`.
    #[inline]
    pub fn predict(&self, x: &[f64], out: &mut [f64]) {
        let m = self.init.len();
        match self.loss {
            Loss::SquaredError | Loss::Binary => {
                let mut raw = self.init[0];
                for t in &self.trees {
                    raw += t.leaf(x)[0];
                }
                if self.loss == Loss::SquaredError {
                    out[0] = raw;
                } else {
                    let p = 1.0 / (1.0 + (-raw).exp());
                    out[0] = 1.0 - p;
                    out[1] = p;
                }
            }
            Loss::Multiclass => {
                out[..m].copy_from_slice(&self.init);
                for (i, t) in self.trees.iter().enumerate() {
                    out[i % m] += t.leaf(x)[0];
                }
                softmax(&mut out[..m]);
            }
        }
    }
}

/// Rows and weights that boosting is fitted on, and an optional validation set for early
/// stopping.
pub struct BoostData<'a> {
    /// Encoded training rows.
    pub x: Matrix<'a>,
    /// Their labels.
    pub target: &'a Target,
    /// Per-row sample weights (the `role: weight` column).
    pub weights: Option<&'a [f64]>,
    /// Class names, in class-index order (to read a `class_weight` mapping).
    pub classes: &'a [String],
    /// Encoded validation rows and labels.
    pub validation: Option<(Matrix<'a>, &'a Target)>,
}

/// The per-class weights of `class_weight`: `balanced` (n / (k * count)) or a mapping from
/// class name to weight (classes not named weigh 1).
fn class_weights(
    p: &Params<'_>,
    y: &[usize],
    k: usize,
    classes: &[String],
) -> Result<Option<Vec<f64>>, ParamError> {
    match p.raw("class_weight") {
        None => Ok(None),
        Some(Value::String(s)) if s == "balanced" => {
            let mut counts = vec![0.0; k];
            for &c in y {
                counts[c] += 1.0;
            }
            let n = y.len() as f64;
            Ok(Some(
                counts
                    .iter()
                    .map(|&c| if c > 0.0 { n / (k as f64 * c) } else { 1.0 })
                    .collect(),
            ))
        }
        Some(Value::Object(map)) => {
            let mut w = vec![1.0; k];
            for (name, v) in map {
                let Some(i) = classes.iter().position(|c| c == name) else {
                    let some: Vec<&str> = classes.iter().take(5).map(String::as_str).collect();
                    return Err(p.error(
                        "class_weight",
                        format!(
                            "names class {name:?}, which the label does not have (classes: {}{})",
                            some.join(", "),
                            if classes.len() > 5 { ", ..." } else { "" }
                        ),
                    ));
                };
                let x = match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                match x {
                    Some(x) if x >= 0.0 && x.is_finite() => w[i] = x,
                    _ => {
                        return Err(p.error(
                            "class_weight",
                            format!("the weight of class {name:?} must be a number >= 0, got {v}"),
                        ));
                    }
                }
            }
            Ok(Some(w))
        }
        Some(v) => Err(p.error(
            "class_weight",
            format!("expected `balanced` or a mapping from class to weight, got {v}"),
        )),
    }
}

/// Gradients and hessians of every row for the current raw scores, class-major
/// (`g[c * n + i]`), weighted.
fn gradients(
    loss: Loss,
    target: &Target,
    raw: &[f64],
    m: usize,
    w: Option<&[f64]>,
    g: &mut [f64],
    h: &mut [f64],
) {
    let n = raw.len() / m;
    if m == 1 {
        g.par_chunks_mut(4096)
            .zip(h.par_chunks_mut(4096))
            .enumerate()
            .for_each(|(b, (g, h))| {
                let lo = b * 4096;
                for k in 0..g.len() {
                    let i = lo + k;
                    let (gi, hi) = match (loss, target) {
                        (Loss::SquaredError, Target::Values(y)) => (raw[i] - y[i], 1.0),
                        (Loss::Binary, Target::Classes { y, .. }) => {
                            let p = 1.0 / (1.0 + (-raw[i]).exp());
                            (p - (y[i] == 1) as u8 as f64, (p * (1.0 - p)).max(1e-16))
                        }
                        _ => (0.0, 1.0),
                    };
                    let wi = w.map_or(1.0, |w| w[i]);
                    g[k] = wi * gi;
                    h[k] = wi * hi;
                }
            });
        return;
    }
    let Target::Classes { y, .. } = target else {
        return;
    };
    // Row blocks in parallel; each block writes its rows of every class's slice.
    const B: usize = 2048;
    let mut blocks: Vec<Vec<(&mut [f64], &mut [f64])>> =
        (0..n.div_ceil(B)).map(|_| Vec::with_capacity(m)).collect();
    for (gc, hc) in g.chunks_mut(n).zip(h.chunks_mut(n)) {
        for (b, pair) in gc.chunks_mut(B).zip(hc.chunks_mut(B)).enumerate() {
            blocks[b].push(pair);
        }
    }
    blocks
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut cols)| {
            let mut prob = vec![0.0; m];
            let lo = b * B;
            let len = cols.first().map_or(0, |c| c.0.len());
            for k in 0..len {
                let i = lo + k;
                prob.copy_from_slice(&raw[i * m..(i + 1) * m]);
                softmax(&mut prob);
                let wi = w.map_or(1.0, |w| w[i]);
                for (c, (gc, hc)) in cols.iter_mut().enumerate() {
                    let p = prob[c];
                    gc[k] = wi * (p - (y[i] == c) as u8 as f64);
                    hc[k] = wi * (p * (1.0 - p)).max(1e-16);
                }
            }
        });
}

/// The mean loss of raw scores `raw` (`m` per row) on `target`: log loss or squared error.
fn mean_loss(loss: Loss, target: &Target, raw: &[f64], m: usize) -> f64 {
    let n = raw.len() / m.max(1);
    if n == 0 {
        return 0.0;
    }
    let total: f64 = match (loss, target) {
        (Loss::SquaredError, Target::Values(y)) => {
            raw.iter().zip(y).map(|(r, y)| (r - y) * (r - y)).sum()
        }
        (Loss::Binary, Target::Classes { y, .. }) => raw
            .iter()
            .zip(y)
            .map(|(&r, &c)| {
                // log(1 + e^-z) for the true class's margin z, computed stably.
                let z = if c == 1 { r } else { -r };
                if z > 0.0 {
                    (-z).exp().ln_1p()
                } else {
                    -z + z.exp().ln_1p()
                }
            })
            .sum(),
        (Loss::Multiclass, Target::Classes { y, .. }) => raw
            .chunks(m)
            .zip(y)
            .map(|(r, &c)| {
                let mx = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = mx + r.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
                lse - r[c]
            })
            .sum(),
        _ => 0.0,
    };
    total / n as f64
}

/// Fits gradient-boosted trees.
pub fn fit(
    data: &BoostData<'_>,
    task: Task,
    p: &Params<'_>,
    seed: u64,
) -> Result<Boosting, ParamError> {
    let (x, target) = (data.x, data.target);
    let n_estimators = p.usize_min("n_estimators", 100, 1)?;
    let lr = p.positive("learning_rate", 0.1)?;
    let subsample = p.positive("subsample", 1.0)?;
    if subsample > 1.0 {
        return Err(p.error("subsample", format!("must be in (0, 1], got {subsample}")));
    }
    let lambda = p.f64("l2_regularization", 0.0)?;
    let min_child_weight = p.f64("min_child_weight", 1e-3)?;
    if min_child_weight.is_nan() || min_child_weight < 0.0 {
        return Err(p.error(
            "min_child_weight",
            format!("must be >= 0, got {min_child_weight}"),
        ));
    }
    match task {
        Task::Classification => p.choice("loss", "log_loss", &["log_loss"])?,
        _ => p.choice("loss", "squared_error", &["squared_error"])?,
    };
    if p.has("max_leaf_nodes") && p.has("num_leaves") {
        return Err(p.error(
            "num_leaves",
            "is another name for `max_leaf_nodes`: give one of them",
        ));
    }
    let max_leaves = match p
        .opt_usize("max_leaf_nodes")?
        .or(p.opt_usize("num_leaves")?)
    {
        Some(v) if v < 2 => {
            return Err(p.error("max_leaf_nodes", format!("must be at least 2, got {v}")));
        }
        v => v,
    };
    let patience = p.opt_usize("early_stopping_rounds")?;
    if patience == Some(0) {
        return Err(p.error("early_stopping_rounds", "must be at least 1"));
    }
    let mut common = CommonTree::read(p, MaxFeatures::All)?;
    if !p.has("max_depth") && max_leaves.is_none() {
        common.max_depth = Some(3);
    }
    let params = GrowParams {
        max_depth: common.max_depth,
        max_leaves: max_leaves.unwrap_or_else(|| match common.max_depth {
            Some(depth) if depth < 30 => 1 << depth,
            _ => 31,
        }),
        min_samples_split: common.min_samples_split,
        min_samples_leaf: common.min_samples_leaf,
        min_child_weight,
        lambda,
        max_features: common.max_features.resolve(x.d),
    };
    let n = x.n;
    // Row weights: sample weights times class weights.
    let cw = match target {
        Target::Classes { y, k } => class_weights(p, y, *k, data.classes)?,
        _ => {
            if p.has("class_weight") {
                return Err(p.error(
                    "class_weight",
                    "is for classification; this is a regression",
                ));
            }
            None
        }
    };
    let weights: Option<Vec<f64>> = match (data.weights, &cw, target) {
        (None, None, _) => None,
        (sw, Some(cw), Target::Classes { y, .. }) => Some(
            (0..n)
                .map(|i| sw.map_or(1.0, |w| w[i]) * cw[y[i]])
                .collect(),
        ),
        (Some(sw), _, _) => Some(sw.to_vec()),
        (None, Some(_), _) => None,
    };
    let w = weights.as_deref();
    let wsum = w.map_or(n as f64, |w| w.iter().sum());
    let (loss, k, init): (Loss, usize, Vec<f64>) = match target {
        Target::Values(y) => {
            let mean = match w {
                Some(w) => y.iter().zip(w).map(|(y, w)| y * w).sum::<f64>() / wsum.max(1e-300),
                None => y.iter().sum::<f64>() / n.max(1) as f64,
            };
            (Loss::SquaredError, 1, vec![mean])
        }
        Target::Classes { y, k } => {
            let mut counts = vec![0.0; *k];
            for (i, &c) in y.iter().enumerate() {
                counts[c] += w.map_or(1.0, |w| w[i]);
            }
            let prior: Vec<f64> = counts
                .iter()
                .map(|c| (c / wsum.max(1e-300)).clamp(1e-12, 1.0 - 1e-12))
                .collect();
            if *k == 2 {
                (Loss::Binary, 2, vec![(prior[1] / prior[0]).ln()])
            } else {
                (Loss::Multiclass, *k, prior.iter().map(|p| p.ln()).collect())
            }
        }
        Target::None => (Loss::SquaredError, 1, vec![0.0]),
    };
    let m = init.len();
    let bins = Bins::new(x, common.max_bins);
    let mut raw: Vec<f64> = (0..n).flat_map(|_| init.iter().copied()).collect();
    let mut g = vec![0.0; n * m];
    let mut h = vec![0.0; n * m];
    let mut trees = Vec::with_capacity(n_estimators * m);
    let mut gains: Vec<Vec<f64>> = Vec::with_capacity(n_estimators);
    let mut rng = Rng::new(seed);
    // scikit-learn's multiclass leaf scaling.
    let scale = if loss == Loss::Multiclass {
        (k as f64 - 1.0) / k as f64
    } else {
        1.0
    };
    let valid = match (patience, data.validation) {
        (Some(_), Some((vx, vt))) if vx.n > 0 => Some((vx, vt)),
        (Some(_), _) => {
            return Err(p.error(
                "early_stopping_rounds",
                "needs validation rows: give the Dataset a `validation` split",
            ));
        }
        _ => None,
    };
    let mut val_raw: Vec<f64> = valid
        .map(|(vx, _)| (0..vx.n).flat_map(|_| init.iter().copied()).collect())
        .unwrap_or_default();
    let (mut best_loss, mut best_round, mut rounds_trained) = (f64::INFINITY, 0usize, 0usize);
    let mut sample: Vec<u32> = Vec::new();
    for round in 0..n_estimators {
        gradients(loss, target, &raw, m, w, &mut g, &mut h);
        sample.clear();
        if subsample < 1.0 {
            sample.extend(0..n as u32);
            rng.shuffle(&mut sample);
            sample.truncate(((n as f64 * subsample).round() as usize).max(1));
            sample.sort_unstable();
        } else {
            sample.extend(0..n as u32);
        }
        let round_seed = rng.next_u64();
        let grown: Vec<(leafwise::Grown, Vec<u32>)> = (0..m)
            .into_par_iter()
            .map(|c| {
                let mut r = Rng::derive(round_seed, c as u64);
                let mut rows = sample.clone();
                let t = leafwise::grow(
                    &bins,
                    &g[c * n..(c + 1) * n],
                    &h[c * n..(c + 1) * n],
                    &mut rows,
                    &params,
                    &mut r,
                );
                (t, rows)
            })
            .collect();
        let mut round_gain = vec![0.0; x.d];
        for (c, (t, rows)) in grown.into_iter().enumerate() {
            let mut t = t;
            for v in &mut t.tree.values {
                *v *= lr * scale;
            }
            for (a, b) in round_gain.iter_mut().zip(&t.gain) {
                *a += b;
            }
            if subsample < 1.0 {
                raw.par_chunks_mut(m).enumerate().for_each(|(i, r)| {
                    r[c] += t.tree.values[t.leaf_of(&bins, i)];
                });
            } else {
                for &(s, e, leaf) in &t.segments {
                    let v = t.tree.values[leaf];
                    for &r in &rows[s..e] {
                        raw[r as usize * m + c] += v;
                    }
                }
            }
            if let Some((vx, _)) = valid {
                val_raw.par_chunks_mut(m).enumerate().for_each(|(i, r)| {
                    r[c] += t.tree.leaf(vx.row(i))[0];
                });
            }
            trees.push(t.tree);
        }
        gains.push(round_gain);
        rounds_trained = round + 1;
        if let (Some((_, vt)), Some(patience)) = (valid, patience) {
            let l = mean_loss(loss, vt, &val_raw, m);
            if best_round == 0 || l < best_loss - 1e-12 * best_loss.abs() {
                best_loss = l;
                best_round = round + 1;
            } else if round + 1 - best_round >= patience {
                break;
            }
        }
    }
    let early_stopping = patience.filter(|_| valid.is_some()).map(|patience| {
        trees.truncate(best_round * m);
        gains.truncate(best_round);
        EarlyStopping {
            best_round,
            rounds_trained,
            patience,
            best_loss,
        }
    });
    let mut gain = vec![0.0; x.d];
    for r in &gains {
        for (a, b) in gain.iter_mut().zip(r) {
            *a += b;
        }
    }
    Ok(Boosting {
        loss,
        n_classes: k,
        init,
        trees,
        early_stopping,
        gain,
    })
}
