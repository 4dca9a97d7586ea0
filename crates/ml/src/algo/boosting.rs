//! Gradient-boosted trees: squared error for regression, log loss for binary and multiclass
//! classification (one tree per class and round), Newton-step leaves, optional row
//! subsampling. Leaf values already include the learning rate.

use super::tree::{self, Binned, CommonTree, Criterion, Fit, MaxFeatures, Tree, TreeParams};
use super::{Matrix, ParamError, Params, Target, Task, softmax};
use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

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
}

impl Boosting {
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

/// Fits gradient-boosted trees.
pub fn fit(
    x: Matrix<'_>,
    target: &Target,
    task: Task,
    p: &Params<'_>,
    seed: u64,
) -> Result<Boosting, ParamError> {
    let n_estimators = p.usize_min("n_estimators", 100, 1)?;
    let lr = p.positive("learning_rate", 0.1)?;
    let subsample = p.positive("subsample", 1.0)?;
    if subsample > 1.0 {
        return Err(p.error("subsample", format!("must be in (0, 1], got {subsample}")));
    }
    let lambda = p.f64("l2_regularization", 0.0)?;
    match task {
        Task::Classification => p.choice("loss", "log_loss", &["log_loss"])?,
        _ => p.choice("loss", "squared_error", &["squared_error"])?,
    };
    let mut common = CommonTree::read(p, MaxFeatures::All)?;
    if !p.has("max_depth") {
        common.max_depth = Some(3);
    }
    let params = TreeParams {
        max_depth: common.max_depth,
        min_samples_split: common.min_samples_split,
        min_samples_leaf: common.min_samples_leaf,
        max_features: common.max_features.resolve(x.d),
        criterion: Criterion::Newton { lambda },
        parallel: true,
    };
    let binned = Binned::new(x, common.max_bins);
    let n = x.n;
    let (loss, k, init): (Loss, usize, Vec<f64>) = match target {
        Target::Values(y) => {
            let mean = y.iter().sum::<f64>() / n.max(1) as f64;
            (Loss::SquaredError, 1, vec![mean])
        }
        Target::Classes { y, k } => {
            let mut counts = vec![0.0; *k];
            for &c in y {
                counts[c] += 1.0;
            }
            let prior: Vec<f64> = counts
                .iter()
                .map(|c| (c / n as f64).clamp(1e-12, 1.0 - 1e-12))
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
    let mut raw: Vec<f64> = (0..n).flat_map(|_| init.iter().copied()).collect();
    let mut trees = Vec::with_capacity(n_estimators * m);
    let mut rng = Rng::new(seed);
    let mut g = vec![vec![0.0; n]; m];
    let mut h = vec![vec![0.0; n]; m];
    let mut prob = vec![0.0; m.max(2)];
    // scikit-learn's multiclass leaf scaling.
    let scale = if loss == Loss::Multiclass {
        (k as f64 - 1.0) / k as f64
    } else {
        1.0
    };
    for _round in 0..n_estimators {
        for i in 0..n {
            match (loss, target) {
                (Loss::SquaredError, Target::Values(y)) => {
                    g[0][i] = raw[i] - y[i];
                    h[0][i] = 1.0;
                }
                (Loss::Binary, Target::Classes { y, .. }) => {
                    let p = 1.0 / (1.0 + (-raw[i]).exp());
                    g[0][i] = p - (y[i] == 1) as u8 as f64;
                    h[0][i] = (p * (1.0 - p)).max(1e-16);
                }
                (Loss::Multiclass, Target::Classes { y, .. }) => {
                    prob[..m].copy_from_slice(&raw[i * m..(i + 1) * m]);
                    softmax(&mut prob[..m]);
                    for c in 0..m {
                        g[c][i] = prob[c] - (y[i] == c) as u8 as f64;
                        h[c][i] = (prob[c] * (1.0 - prob[c])).max(1e-16);
                    }
                }
                _ => {
                    g[0][i] = 0.0;
                    h[0][i] = 1.0;
                }
            }
        }
        let rows: Vec<u32> = if subsample < 1.0 {
            let mut all: Vec<u32> = (0..n as u32).collect();
            rng.shuffle(&mut all);
            all.truncate(((n as f64 * subsample).round() as usize).max(1));
            all.sort_unstable();
            all
        } else {
            (0..n as u32).collect()
        };
        let round_seed = rng.next_u64();
        let mut round: Vec<Tree> = (0..m)
            .into_par_iter()
            .map(|c| {
                let mut r = Rng::derive(round_seed, c as u64);
                tree::grow(
                    &binned,
                    Fit::Gradients { g: &g[c], h: &h[c] },
                    None,
                    rows.clone(),
                    &params,
                    &mut r,
                )
            })
            .collect();
        for t in &mut round {
            for v in &mut t.values {
                *v *= lr * scale;
            }
        }
        raw.par_chunks_mut(m).enumerate().for_each(|(i, r)| {
            let xi = x.row(i);
            for (c, t) in round.iter().enumerate() {
                r[c] += t.leaf(xi)[0];
            }
        });
        trees.extend(round);
    }
    Ok(Boosting {
        loss,
        n_classes: k,
        init,
        trees,
    })
}
