//! Multinomial logistic regression with an L2 penalty, scikit-learn's objective
//! (`mean log loss + ||W||^2 / (2 C n)`, intercept not penalised), minimised with L-BFGS on
//! internally standardised features. The fitted weights are mapped back to the original
//! feature scale, so prediction is one dot product per class.

use super::{Matrix, ParamError, Params, softmax};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A fitted multinomial logistic regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    /// `k x d` coefficients, row-major (one row per class).
    pub coef: Vec<f64>,
    /// One intercept per class.
    pub intercept: Vec<f64>,
    /// Iterations L-BFGS ran.
    #[serde(default)]
    pub n_iter: usize,
}

impl Logistic {
    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.intercept.len()
    }

    /// Class probabilities of row `x` into `out` (length k).
    #[inline]
    pub fn predict_proba(&self, x: &[f64], out: &mut [f64]) {
        let d = x.len();
        for (c, o) in out.iter_mut().enumerate() {
            let w = &self.coef[c * d..(c + 1) * d];
            *o = self.intercept[c] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
        }
        softmax(out);
    }
}

/// Fits a multinomial logistic regression on class indices `y` (`k` classes).
pub fn fit(x: Matrix<'_>, y: &[usize], k: usize, p: &Params<'_>) -> Result<Logistic, ParamError> {
    fit_weighted(x, y, k, None, p)
}

/// Fits a multinomial logistic regression with sample weights (`None`: every row weighs 1),
/// as scikit-learn's `fit(X, y, sample_weight)`: each row's loss counts `weight` times.
pub fn fit_weighted(
    x: Matrix<'_>,
    y: &[usize],
    k: usize,
    weights: Option<&[f64]>,
    p: &Params<'_>,
) -> Result<Logistic, ParamError> {
    let c = p.positive("C", 1.0)?;
    let max_iter = p.usize_min("max_iter", 100, 1)?;
    let tol = p.positive("tol", 1e-4)?;
    let fit_intercept = p.bool("fit_intercept", true)?;
    let penalty = p.choice("penalty", "l2", &["l2", "none"])?;
    p.choice("solver", "lbfgs", &["lbfgs"])?;
    let (n, d) = (x.n, x.d);

    // Standardise.
    let mean = super::linear::column_means(x);
    let mut std = vec![0.0; d];
    for i in 0..n {
        for (j, v) in x.row(i).iter().enumerate() {
            std[j] += (v - mean[j]) * (v - mean[j]);
        }
    }
    for s in &mut std {
        *s = (*s / n.max(1) as f64).sqrt();
        if *s < 1e-12 {
            *s = 1.0;
        }
    }
    let mut z = vec![0.0; n * d];
    z.par_chunks_mut(d.max(1)).enumerate().for_each(|(i, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (x.data[i * d + j] - mean[j]) / std[j];
        }
    });

    let l2 = if penalty == "none" {
        0.0
    } else {
        1.0 / (c * n as f64)
    };
    let width = d + 1;
    let objective = |w: &[f64], grad: &mut [f64]| -> f64 {
        const CHUNK: usize = 2048;
        let (loss, g) = z
            .par_chunks(CHUNK * d.max(1))
            .enumerate()
            .map(|(ci, block)| {
                let mut g = vec![0.0; k * width];
                let mut logits = vec![0.0; k];
                let mut loss = 0.0;
                let start = ci * CHUNK;
                for (r, row) in block.chunks(d.max(1)).enumerate() {
                    let yi = y[start + r];
                    let wi = weights.map_or(1.0, |w| w[start + r]);
                    for (cl, lg) in logits.iter_mut().enumerate() {
                        let wc = &w[cl * width..cl * width + d];
                        *lg =
                            w[cl * width + d] + wc.iter().zip(row).map(|(a, b)| a * b).sum::<f64>();
                    }
                    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = logits.iter().map(|l| (l - m).exp()).sum();
                    let lse = m + s.ln();
                    loss += wi * (lse - logits[yi]);
                    for (cl, lg) in logits.iter().enumerate() {
                        let resid = wi * ((lg - lse).exp() - if cl == yi { 1.0 } else { 0.0 });
                        let gc = &mut g[cl * width..(cl + 1) * width];
                        for (gj, xj) in gc[..d].iter_mut().zip(row) {
                            *gj += resid * xj;
                        }
                        gc[d] += resid;
                    }
                }
                (loss, g)
            })
            // Added in chunk order, not in rayon's reduce tree (its shape follows work
            // stealing): the same floats on any number of threads.
            .collect::<Vec<(f64, Vec<f64>)>>()
            .into_iter()
            .fold((0.0, vec![0.0; k * width]), |(l1, mut g1), (l2, g2)| {
                g1.iter_mut().zip(&g2).for_each(|(a, b)| *a += b);
                (l1 + l2, g1)
            });
        let nf = n.max(1) as f64;
        let mut f = loss / nf;
        for cl in 0..k {
            for j in 0..width {
                let idx = cl * width + j;
                grad[idx] = g[idx] / nf;
                if j < d {
                    f += 0.5 * l2 * w[idx] * w[idx];
                    grad[idx] += l2 * w[idx];
                } else if !fit_intercept {
                    grad[idx] = 0.0;
                }
            }
        }
        f
    };

    let (w, n_iter) = lbfgs(k * width, max_iter, tol, objective);

    // Back to the original scale.
    let mut coef = vec![0.0; k * d];
    let mut intercept = vec![0.0; k];
    for cl in 0..k {
        let mut b = w[cl * width + d];
        for j in 0..d {
            let wj = w[cl * width + j] / std[j];
            coef[cl * d + j] = wj;
            b -= wj * mean[j];
        }
        intercept[cl] = b;
    }
    Ok(Logistic {
        coef,
        intercept,
        n_iter,
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f` (which writes its gradient) from zero with L-BFGS (memory 10) and a
/// backtracking Armijo line search. Stops when the largest gradient component is below
/// `gtol`, the relative decrease is below scipy's `ftol`, or after `max_iter` iterations.
pub(crate) fn lbfgs(
    dim: usize,
    max_iter: usize,
    gtol: f64,
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
) -> (Vec<f64>, usize) {
    const M: usize = 10;
    const FTOL: f64 = 64.0 * f64::EPSILON;
    let mut x = vec![0.0; dim];
    let mut g = vec![0.0; dim];
    let mut fx = f(&x, &mut g);
    let mut hist: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
    let mut dir = vec![0.0; dim];
    let mut x_new = vec![0.0; dim];
    let mut g_new = vec![0.0; dim];
    let mut iters = 0;
    for it in 0..max_iter {
        iters = it + 1;
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= gtol {
            iters = it;
            break;
        }
        // Two-loop recursion.
        dir.copy_from_slice(&g);
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * dot(s, &dir);
            dir.iter_mut().zip(y).for_each(|(d, yv)| *d -= a * yv);
            alphas.push(a);
        }
        let gamma = hist
            .back()
            .map_or(1.0 / dot(&g, &g).sqrt().max(1.0), |(s, y, _)| {
                dot(s, y) / dot(y, y)
            });
        dir.iter_mut().for_each(|d| *d *= gamma);
        for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &dir);
            dir.iter_mut().zip(s).for_each(|(d, sv)| *d += (a - b) * sv);
        }
        dir.iter_mut().for_each(|d| *d = -*d);
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            hist.clear();
            dir.iter_mut().zip(&g).for_each(|(d, gv)| *d = -gv);
            slope = -dot(&g, &g);
        }
        let mut t = 1.0;
        let mut f_new;
        let mut accepted = false;
        for _ in 0..50 {
            x_new
                .iter_mut()
                .zip(x.iter().zip(&dir))
                .for_each(|(n, (xv, dv))| *n = xv + t * dv);
            f_new = f(&x_new, &mut g_new);
            if f_new.is_finite() && f_new <= fx + 1e-4 * t * slope {
                let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 {
                    if hist.len() == M {
                        hist.pop_front();
                    }
                    hist.push_back((s, y, 1.0 / sy));
                }
                let rel = (fx - f_new) / fx.abs().max(f_new.abs()).max(1.0);
                x.copy_from_slice(&x_new);
                g.copy_from_slice(&g_new);
                fx = f_new;
                accepted = true;
                if rel <= FTOL {
                    return (x, iters);
                }
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    (x, iters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn lbfgs_minimises_a_quadratic() {
        let (x, _) = lbfgs(3, 100, 1e-10, |x, g| {
            let t = [1.0, -2.0, 3.0];
            let mut f = 0.0;
            for i in 0..3 {
                let w = (i + 1) as f64;
                f += w * (x[i] - t[i]).powi(2);
                g[i] = 2.0 * w * (x[i] - t[i]);
            }
            f
        });
        for (a, b) in x.iter().zip([1.0, -2.0, 3.0]) {
            assert!((a - b).abs() < 1e-6, "{x:?}");
        }
    }

    #[test]
    fn separates_three_blobs() {
        let mut data = Vec::new();
        let mut y = Vec::new();
        let mut r = crate::rng::Rng::new(3);
        for i in 0..300 {
            let c = i % 3;
            data.push(c as f64 * 3.0 + r.normal() * 0.5);
            data.push(100.0 + r.normal());
            y.push(c);
        }
        let x = Matrix {
            data: &data,
            n: 300,
            d: 2,
        };
        let map = BTreeMap::new();
        let p = Params::new(
            "logistic_regression",
            &map,
            mlctl_spec::builtins::names(mlctl_spec::Algorithm::LogisticRegression),
        )
        .unwrap();
        let m = fit(x, &y, 3, &p).unwrap();
        let mut out = [0.0; 3];
        let mut right = 0;
        for (i, &yi) in y.iter().enumerate() {
            m.predict_proba(x.row(i), &mut out);
            right += usize::from(super::super::argmax(&out) == yi);
            assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        assert!(right >= 290, "{right}");
    }

    #[test]
    fn a_fit_is_the_same_on_any_number_of_threads() {
        let mut r = crate::rng::Rng::new(9);
        let n = 20_000;
        let mut data = Vec::with_capacity(n * 3);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % 3;
            data.extend([c as f64 + r.normal(), r.normal() * 10.0, r.normal()]);
            y.push(c);
        }
        let x = Matrix {
            data: &data,
            n,
            d: 3,
        };
        let map = BTreeMap::new();
        let p = Params::new(
            "logistic_regression",
            &map,
            mlctl_spec::builtins::names(mlctl_spec::Algorithm::LogisticRegression),
        )
        .unwrap();
        let fits: Vec<Logistic> = [1, 2, 3]
            .map(|threads| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| fit(x, &y, 3, &p).unwrap())
            })
            .to_vec();
        assert_eq!(fits[0], fits[1]);
        assert_eq!(fits[0], fits[2]);
    }
}
