//! Linear regression: ordinary least squares, or ridge with `alpha` (alias `l2`), solved
//! through the normal equations with a Cholesky factorisation. A tiny ridge is added when
//! the features are collinear (one-hot columns with an intercept), which gives the
//! minimum-norm-like solution instead of failing.

use super::{Matrix, ParamError, Params};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A fitted linear model `y = coef . x + intercept`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    /// One coefficient per encoded feature.
    pub coef: Vec<f64>,
    /// The intercept.
    pub intercept: f64,
}

impl Linear {
    /// The prediction for row `x`.
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.intercept + self.coef.iter().zip(x).map(|(c, v)| c * v).sum::<f64>()
    }
}

/// Column means of `x`.
pub(crate) fn column_means(x: Matrix<'_>) -> Vec<f64> {
    let mut m = vec![0.0; x.d];
    for i in 0..x.n {
        for (a, v) in m.iter_mut().zip(x.row(i)) {
            *a += v;
        }
    }
    let n = x.n.max(1) as f64;
    m.iter_mut().for_each(|a| *a /= n);
    m
}

/// Solves `a z = b` for symmetric positive definite `a` (d x d, row-major); `None` if not
/// positive definite.
pub(crate) fn cholesky_solve(a: &[f64], b: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    let mut z = b.to_vec();
    for i in 0..d {
        let mut s = z[i];
        for k in 0..i {
            s -= l[i * d + k] * z[k];
        }
        z[i] = s / l[i * d + i];
    }
    for i in (0..d).rev() {
        let mut s = z[i];
        for k in i + 1..d {
            s -= l[k * d + i] * z[k];
        }
        z[i] = s / l[i * d + i];
    }
    Some(z)
}

/// Fits a linear regression.
pub fn fit(x: Matrix<'_>, y: &[f64], p: &Params<'_>) -> Result<Linear, ParamError> {
    fit_weighted(x, y, None, p)
}

/// Fits a linear regression with sample weights (`None`: every row weighs 1), as
/// scikit-learn's `fit(X, y, sample_weight)`: weighted least squares, weighted means for the
/// intercept.
pub fn fit_weighted(
    x: Matrix<'_>,
    y: &[f64],
    weights: Option<&[f64]>,
    p: &Params<'_>,
) -> Result<Linear, ParamError> {
    if p.has("alpha") && p.has("l2") {
        return Err(p.error("l2", "give either `alpha` or `l2`, not both"));
    }
    let alpha = if p.has("l2") {
        p.f64("l2", 0.0)?
    } else {
        p.f64("alpha", 0.0)?
    };
    if alpha < 0.0 {
        return Err(p.error("alpha", format!("must be >= 0, got {alpha}")));
    }
    let fit_intercept = p.bool("fit_intercept", true)?;
    let d = x.d;
    let n = x.n;
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let (mx, my) = match (fit_intercept, weights) {
        (false, _) => (vec![0.0; d], 0.0),
        (true, None) => (column_means(x), y.iter().sum::<f64>() / n.max(1) as f64),
        (true, Some(ws)) => {
            let total: f64 = ws.iter().sum::<f64>().max(f64::MIN_POSITIVE);
            let mut m = vec![0.0; d];
            for (i, wi) in ws.iter().enumerate().take(n) {
                for (a, v) in m.iter_mut().zip(x.row(i)) {
                    *a += wi * v;
                }
            }
            m.iter_mut().for_each(|a| *a /= total);
            let my = ws.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() / total;
            (m, my)
        }
    };
    // X'X and X'y over centred data, one partial per block of rows, added in block order
    // (`row_blocks`: the same floats on any number of threads).
    let partials: Vec<(Vec<f64>, Vec<f64>)> = super::row_blocks(n)
        .into_par_iter()
        .map(|(lo, hi)| {
            let (mut a, mut b, mut row) = (vec![0.0; d * d], vec![0.0; d], vec![0.0; d]);
            for (i, yv) in (lo..hi).zip(&y[lo..hi]) {
                for (r, (v, m)) in row.iter_mut().zip(x.row(i).iter().zip(&mx)) {
                    *r = v - m;
                }
                let wi = w(i);
                let yi = (yv - my) * wi;
                for j in 0..d {
                    let rj = row[j];
                    if rj == 0.0 {
                        continue;
                    }
                    b[j] += rj * yi;
                    let wrj = wi * rj;
                    for k in 0..=j {
                        a[j * d + k] += wrj * row[k];
                    }
                }
            }
            (a, b)
        })
        .collect();
    let (mut xtx, mut xty) = (vec![0.0; d * d], vec![0.0; d]);
    for (a, b) in &partials {
        xtx.iter_mut().zip(a).for_each(|(p, q)| *p += q);
        xty.iter_mut().zip(b).for_each(|(p, q)| *p += q);
    }
    let mut a = xtx;
    for j in 0..d {
        for k in 0..j {
            a[k * d + j] = a[j * d + k];
        }
        a[j * d + j] += alpha;
    }
    let mean_diag = (0..d).map(|j| a[j * d + j]).sum::<f64>() / d.max(1) as f64;
    let mut jitter = 0.0;
    let coef = loop {
        if let Some(z) = cholesky_solve(&a, &xty, d) {
            break z;
        }
        let step = if jitter == 0.0 {
            1e-10 * mean_diag.max(1e-12)
        } else {
            jitter * 9.0
        };
        for j in 0..d {
            a[j * d + j] += step;
        }
        jitter += step;
        if jitter > mean_diag.max(1.0) * 10.0 {
            break vec![0.0; d];
        }
    };
    let intercept = my - coef.iter().zip(&mx).map(|(c, m)| c * m).sum::<f64>();
    Ok(Linear { coef, intercept })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn recovers_exact_coefficients_and_handles_collinearity() {
        // y = 3 + 2 a - b, plus a duplicated column (collinear).
        let mut data = Vec::new();
        let mut y = Vec::new();
        for i in 0..50 {
            let a = i as f64 * 0.1;
            let b = ((i * 7) % 11) as f64;
            data.extend([a, b, a]);
            y.push(3.0 + 2.0 * a - b);
        }
        let x = Matrix {
            data: &data,
            n: 50,
            d: 3,
        };
        let map = BTreeMap::new();
        let p = Params::new(
            "linear_regression",
            &map,
            mlctl_spec::builtins::names(mlctl_spec::Algorithm::LinearRegression),
        )
        .unwrap();
        let m = fit(x, &y, &p).unwrap();
        for (i, yi) in y.iter().enumerate() {
            assert!((m.predict(x.row(i)) - yi).abs() < 1e-6);
        }
        assert!((m.coef[0] + m.coef[2] - 2.0).abs() < 1e-6);
        assert!((m.coef[1] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_fit_is_the_same_on_any_number_of_threads() {
        let mut r = crate::rng::Rng::new(3);
        let (n, d) = (5_000, 4);
        let data: Vec<f64> = (0..n * d).map(|_| r.normal() * 1e3).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| data[i * d] * 0.3 - data[i * d + 2] + r.normal())
            .collect();
        let x = Matrix { data: &data, n, d };
        let map = BTreeMap::new();
        let p = Params::new(
            "linear_regression",
            &map,
            mlctl_spec::builtins::names(mlctl_spec::Algorithm::LinearRegression),
        )
        .unwrap();
        let fits: Vec<Linear> = [1, 2, 3]
            .map(|threads| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| fit(x, &y, &p).unwrap())
            })
            .to_vec();
        assert_eq!(fits[0], fits[1]);
        assert_eq!(fits[0], fits[2]);
    }

    #[test]
    fn ridge_shrinks() {
        let data: Vec<f64> = (0..20).map(f64::from).collect();
        let y: Vec<f64> = data.iter().map(|v| 2.0 * v).collect();
        let x = Matrix {
            data: &data,
            n: 20,
            d: 1,
        };
        let map = [("alpha".to_string(), serde_json::json!(1000.0))].into();
        let p = Params::new(
            "linear_regression",
            &map,
            mlctl_spec::builtins::names(mlctl_spec::Algorithm::LinearRegression),
        )
        .unwrap();
        let m = fit(x, &y, &p).unwrap();
        assert!(m.coef[0] < 1.5 && m.coef[0] > 0.0, "{m:?}");
    }
}
