//! k-means: greedy k-means++ initialisation (scikit-learn's: `2 + ln k` candidates per
//! centre), then Lloyd iterations in parallel, keeping the best of `n_init` seeded runs.

use super::{Matrix, ParamError, Params};
use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Fitted centroids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeans {
    /// `k x d` centres, row-major.
    pub centers: Vec<f64>,
    /// Features per centre.
    pub d: usize,
    /// Sum of squared distances of the training rows to their centres.
    pub inertia: f64,
}

impl KMeans {
    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.centers.len() / self.d.max(1)
    }

    /// The nearest centre to `x` and the squared distance to it.
    #[inline]
    pub fn nearest(&self, x: &[f64]) -> (usize, f64) {
        nearest(&self.centers, self.d, x)
    }
}

#[inline]
fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn nearest(centers: &[f64], d: usize, x: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, ctr) in centers.chunks(d.max(1)).enumerate() {
        let dd = dist2(ctr, x);
        if dd < best.1 {
            best = (c, dd);
        }
    }
    best
}

/// Fits k-means.
pub fn fit(x: Matrix<'_>, p: &Params<'_>, seed: u64) -> Result<KMeans, ParamError> {
    if p.has("k") && p.has("n_clusters") {
        return Err(p.error("k", "give either `k` or `n_clusters`, not both"));
    }
    let k = if p.has("k") {
        p.usize_min("k", 8, 1)?
    } else {
        p.usize_min("n_clusters", 8, 1)?
    };
    if k > x.n {
        return Err(p.error(
            if p.has("k") { "k" } else { "n_clusters" },
            format!("{k} clusters need at least {k} rows, the data has {}", x.n),
        ));
    }
    let max_iter = p.usize_min("max_iter", 300, 1)?;
    let tol = p.f64("tol", 1e-4)?;
    let n_init = p.usize_min("n_init", 1, 1)?;
    // scikit-learn scales tol by the mean feature variance.
    let means = super::linear::column_means(x);
    let mut var = 0.0;
    for i in 0..x.n {
        var += dist2(x.row(i), &means);
    }
    let tol = tol * var / (x.n.max(1) * x.d.max(1)) as f64;
    let mut best: Option<KMeans> = None;
    for run in 0..n_init {
        let mut rng = Rng::derive(seed, run as u64);
        let m = lloyd(x, plus_plus(x, k, &mut rng), max_iter, tol);
        if best.as_ref().is_none_or(|b| m.inertia < b.inertia) {
            best = Some(m);
        }
    }
    Ok(best.unwrap_or(KMeans {
        centers: Vec::new(),
        d: x.d,
        inertia: 0.0,
    }))
}

fn plus_plus(x: Matrix<'_>, k: usize, rng: &mut Rng) -> Vec<f64> {
    let (n, d) = (x.n, x.d);
    let trials = 2 + (k as f64).ln() as usize;
    let mut centers = Vec::with_capacity(k * d);
    centers.extend_from_slice(x.row(rng.index(n)));
    let mut closest: Vec<f64> = (0..n).map(|i| dist2(x.row(i), &centers[..d])).collect();
    let mut pot: f64 = closest.iter().sum();
    let sample = |rng: &mut Rng, closest: &[f64], pot: f64| -> usize {
        let mut r = rng.next_f64() * pot;
        for (i, c) in closest.iter().enumerate() {
            r -= c;
            if r <= 0.0 {
                return i;
            }
        }
        n - 1
    };
    for _ in 1..k {
        let mut best: Option<(usize, f64, Vec<f64>)> = None;
        for _ in 0..trials {
            let cand = if pot > 0.0 {
                sample(rng, &closest, pot)
            } else {
                rng.index(n)
            };
            let cx = x.row(cand);
            let new_closest: Vec<f64> = closest
                .par_iter()
                .enumerate()
                .map(|(i, &c)| c.min(dist2(x.row(i), cx)))
                .collect();
            let new_pot: f64 = new_closest.iter().sum();
            if best.as_ref().is_none_or(|b| new_pot < b.1) {
                best = Some((cand, new_pot, new_closest));
            }
        }
        if let Some((c, p, cl)) = best {
            centers.extend_from_slice(x.row(c));
            pot = p;
            closest = cl;
        }
    }
    centers
}

fn lloyd(x: Matrix<'_>, mut centers: Vec<f64>, max_iter: usize, tol: f64) -> KMeans {
    let d = x.d;
    let k = centers.len() / d.max(1);
    let mut inertia = 0.0;
    for _ in 0..max_iter {
        // Partial sums per block of rows, added in block order (`row_blocks`).
        let partials: Vec<(Vec<f64>, Vec<usize>, f64)> = super::row_blocks(x.n)
            .into_par_iter()
            .map(|(lo, hi)| {
                let (mut s, mut c, mut inert) = (vec![0.0; k * d], vec![0usize; k], 0.0);
                for i in lo..hi {
                    let row = x.row(i);
                    let (best, dd) = nearest(&centers, d, row);
                    for (a, v) in s[best * d..(best + 1) * d].iter_mut().zip(row) {
                        *a += v;
                    }
                    c[best] += 1;
                    inert += dd;
                }
                (s, c, inert)
            })
            .collect();
        let (mut sums, mut counts, mut inert) = (vec![0.0; k * d], vec![0usize; k], 0.0);
        for (s, c, i) in &partials {
            sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
            inert += i;
        }
        inertia = inert;
        let mut shift = 0.0;
        for c in 0..k {
            if counts[c] == 0 {
                continue; // An empty cluster keeps its centre.
            }
            for j in 0..d {
                let v = sums[c * d + j] / counts[c] as f64;
                shift += (v - centers[c * d + j]).powi(2);
                centers[c * d + j] = v;
            }
        }
        if shift <= tol {
            break;
        }
    }
    // Inertia for the final centres.
    let final_inertia: f64 = super::row_blocks(x.n)
        .into_par_iter()
        .map(|(lo, hi)| {
            (lo..hi)
                .map(|i| nearest(&centers, d, x.row(i)).1)
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    KMeans {
        centers,
        d,
        inertia: if final_inertia.is_finite() {
            final_inertia
        } else {
            inertia
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn finds_three_blobs_deterministically() {
        let mut r = Rng::new(5);
        let mut data = Vec::new();
        for i in 0..300 {
            let c = (i % 3) as f64 * 10.0;
            data.push(c + r.normal());
            data.push(-c + r.normal());
        }
        let x = Matrix {
            data: &data,
            n: 300,
            d: 2,
        };
        let map: BTreeMap<String, serde_json::Value> =
            [("k".to_string(), serde_json::json!(3))].into();
        let p = Params::new(
            "kmeans",
            &map,
            mlctl_spec::builtins::names(mlctl_spec::Algorithm::Kmeans),
        )
        .unwrap();
        let m = fit(x, &p, 1).unwrap();
        assert_eq!(m.k(), 3);
        assert_eq!(m, fit(x, &p, 1).unwrap());
        // The same floats on one thread or many: the sums do not follow the scheduling.
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            assert_eq!(
                pool.install(|| fit(x, &p, 1).unwrap()),
                m,
                "{threads} threads"
            );
        }
        // Rows of the same blob share a cluster.
        for i in 0..300 {
            assert_eq!(m.nearest(x.row(i)).0, m.nearest(x.row(i % 3)).0);
        }
        assert!(m.inertia / 300.0 < 3.0, "{}", m.inertia);
    }
}
