//! Random forests: bootstrap samples, random feature subsets per split, trees grown in
//! parallel. Each tree's random stream derives from the seed and the tree's index, so the
//! forest is the same whatever the number of threads.

use super::tree::{self, Binned, CommonTree, Fit, MaxFeatures, Tree, TreeParams};
use super::{Matrix, ParamError, Params, Target, Task};
use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A fitted forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    /// The trees; the prediction is the mean of their leaf values.
    pub trees: Vec<Tree>,
}

impl Forest {
    /// Values per prediction (classes, or 1).
    pub fn n_out(&self) -> usize {
        self.trees.first().map_or(1, |t| t.n_out)
    }

    /// The mean of the trees' leaf values for row `x`.
    #[inline]
    pub fn predict(&self, x: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for t in &self.trees {
            for (o, v) in out.iter_mut().zip(t.leaf(x)) {
                *o += v;
            }
        }
        let n = self.trees.len().max(1) as f64;
        for o in out.iter_mut() {
            *o /= n;
        }
    }
}

/// Fits a random forest.
pub fn fit(
    x: Matrix<'_>,
    target: &Target,
    task: Task,
    p: &Params<'_>,
    seed: u64,
) -> Result<Forest, ParamError> {
    let n_estimators = p.usize_min("n_estimators", 100, 1)?;
    let default_mf = match task {
        Task::Classification => MaxFeatures::Sqrt,
        _ => MaxFeatures::All,
    };
    let common = CommonTree::read(p, default_mf)?;
    let bootstrap = p.bool("bootstrap", true)?;
    let n_jobs = match p.opt_f64("n_jobs")? {
        Some(v) if v >= 1.0 => Some(v as usize),
        _ => None,
    };
    let params = TreeParams {
        max_depth: common.max_depth,
        min_samples_split: common.min_samples_split,
        min_samples_leaf: common.min_samples_leaf,
        max_features: common.max_features.resolve(x.d),
        criterion: tree::criterion(p, task)?,
        parallel: false,
    };
    let run = || {
        let binned = Binned::new(x, common.max_bins);
        let fit = match target {
            Target::Classes { y, k } => Fit::Classes { y, k: *k },
            Target::Values(y) => Fit::Values(y),
            Target::None => Fit::Values(&[]),
        };
        let n = x.n;
        (0..n_estimators)
            .into_par_iter()
            .map(|t| {
                let mut rng = Rng::derive(seed, t as u64);
                if bootstrap {
                    let mut counts = vec![0.0f64; n];
                    for _ in 0..n {
                        counts[rng.index(n)] += 1.0;
                    }
                    let rows: Vec<u32> = (0..n as u32)
                        .filter(|&i| counts[i as usize] > 0.0)
                        .collect();
                    tree::grow(&binned, fit, Some(&counts), rows, &params, &mut rng)
                } else {
                    tree::grow(
                        &binned,
                        fit,
                        None,
                        (0..n as u32).collect(),
                        &params,
                        &mut rng,
                    )
                }
            })
            .collect::<Vec<Tree>>()
    };
    let trees = match n_jobs {
        Some(j) => match rayon::ThreadPoolBuilder::new().num_threads(j).build() {
            Ok(pool) => pool.install(run),
            Err(_) => run(),
        },
        None => run(),
    };
    Ok(Forest { trees })
}
