//! CART decision trees, grown on binned features (the histogram method of LightGBM and
//! scikit-learn's `HistGradientBoosting`).
//!
//! Each feature is cut into at most 256 bins at quantiles of its training values (every
//! distinct value gets its own bin when there are few). A node's best split is found from
//! per-bin sums, in time linear in the node's rows, instead of sorting at every node. Split
//! thresholds are real values halfway between neighbouring training values, so prediction
//! works on unbinned rows: `x[feature] <= threshold` goes left.
//!
//! The same builder grows classification trees (gini or entropy), regression trees (squared
//! error) and the Newton-step trees of gradient boosting.

use super::{Matrix, ParamError, Params, Target, Task};
use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Marks a leaf in [`Tree::feature`].
pub const LEAF: u32 = u32::MAX;

/// Most bins per feature.
pub const MAX_BINS: usize = 256;

/// A fitted tree, stored as parallel arrays (node 0 is the root).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Split feature per node, [`LEAF`] for leaves.
    pub feature: Vec<u32>,
    /// Split threshold per node (`x <= t` goes left); 0 for leaves.
    pub threshold: Vec<f64>,
    /// Left child per node; for a leaf, the index of its value block.
    pub left: Vec<u32>,
    /// Right child per node; 0 for leaves.
    pub right: Vec<u32>,
    /// Leaf values, `n_out` per leaf (class probabilities or a number).
    pub values: Vec<f64>,
    /// Values per leaf.
    pub n_out: usize,
    /// Training rows (weighted) that reached each node: what TreeSHAP averages the paths
    /// by. Empty in models written before mlctl recorded it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cover: Vec<f64>,
}

impl Tree {
    /// The leaf values reached by row `x`.
    #[inline]
    pub fn leaf(&self, x: &[f64]) -> &[f64] {
        let mut i = 0usize;
        loop {
            let f = self.feature[i];
            if f == LEAF {
                let o = self.left[i] as usize * self.n_out;
                return &self.values[o..o + self.n_out];
            }
            i = if x[f as usize] <= self.threshold[i] {
                self.left[i]
            } else {
                self.right[i]
            } as usize;
        }
    }

    /// Number of nodes.
    pub fn n_nodes(&self) -> usize {
        self.feature.len()
    }

    /// Number of leaves.
    pub fn n_leaves(&self) -> usize {
        self.feature.iter().filter(|&&f| f == LEAF).count()
    }
}

/// Features cut into bins: `bins[f * n + i]` is the bin of row `i` for feature `f`.
#[derive(Debug, Clone)]
pub struct Binned {
    /// Rows.
    pub n: usize,
    /// Features.
    pub d: usize,
    /// Feature-major bin indices.
    pub bins: Vec<u8>,
    /// Per feature, the increasing thresholds between bins (`bins - 1` values).
    pub edges: Vec<Vec<f64>>,
}

impl Binned {
    /// Bins every column of `x` (in parallel) into at most `max_bins` (<= 256) bins.
    pub fn new(x: Matrix<'_>, max_bins: usize) -> Binned {
        let max_bins = max_bins.clamp(2, MAX_BINS);
        let (n, d) = (x.n, x.d);
        // Columns are copied out eight at a time (a cache line of a row), so the rows are
        // read once per group rather than once per feature.
        const GROUP: usize = 8;
        let groups: Vec<(usize, usize)> = (0..d)
            .step_by(GROUP)
            .map(|lo| (lo, (lo + GROUP).min(d)))
            .collect();
        let per_feature: Vec<(Vec<f64>, Vec<u8>)> = groups
            .into_par_iter()
            .flat_map_iter(|(lo, hi)| {
                let mut cols: Vec<Vec<f64>> = (lo..hi).map(|_| Vec::with_capacity(n)).collect();
                for row in x.data.chunks_exact(d.max(1)).take(n) {
                    for (c, v) in cols.iter_mut().zip(&row[lo..hi]) {
                        c.push(*v);
                    }
                }
                cols.into_par_iter()
                    .map(|col| {
                        let edges = bin_edges(&col, max_bins);
                        let bins = col
                            .iter()
                            .map(|v| edges.partition_point(|e| e < v) as u8)
                            .collect();
                        (edges, bins)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut bins = Vec::with_capacity(n * d);
        let mut edges = Vec::with_capacity(d);
        for (e, b) in per_feature {
            bins.extend_from_slice(&b);
            edges.push(e);
        }
        Binned { n, d, bins, edges }
    }

    /// Bins of feature `f`.
    #[inline]
    pub fn n_bins(&self, f: usize) -> usize {
        self.edges[f].len() + 1
    }
}

/// Thresholds cutting `col` into at most `max_bins` bins of about equal counts.
fn bin_edges(col: &[f64], max_bins: usize) -> Vec<f64> {
    // A sample is enough to place quantiles.
    const SAMPLE: usize = 200_000;
    let mut sorted: Vec<f64> = if col.len() > SAMPLE {
        let mut r = Rng::new(col.len() as u64);
        (0..SAMPLE).map(|_| col[r.index(col.len())]).collect()
    } else {
        col.to_vec()
    };
    sorted.retain(|v| !v.is_nan());
    crate::sort::sort_floats(&mut sorted);
    let mut distinct = sorted.clone();
    distinct.dedup();
    let mid = |a: f64, b: f64| a + (b - a) / 2.0;
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| mid(w[0], w[1])).collect();
    }
    let m = sorted.len();
    let mut edges: Vec<f64> = Vec::with_capacity(max_bins - 1);
    for b in 1..max_bins {
        let q = sorted[b * m / max_bins];
        let p = sorted.partition_point(|v| *v < q);
        if p == 0 {
            continue;
        }
        let e = mid(sorted[p - 1], q);
        if edges.last().is_none_or(|&last| e > last) {
            edges.push(e);
        }
    }
    edges
}

/// How a split is scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Criterion {
    /// Gini impurity (classification).
    Gini,
    /// Entropy / information gain (classification).
    Entropy,
    /// Squared error (regression).
    SquaredError,
    /// Second-order gain `G^2 / (H + lambda)` (gradient boosting).
    Newton {
        /// L2 regularisation of leaf values.
        lambda: f64,
    },
}

/// What the rows of a tree are fitted to.
#[derive(Debug, Clone, Copy)]
pub enum Fit<'a> {
    /// Class indices (`k` classes); leaves hold class probabilities.
    Classes {
        /// Class per row.
        y: &'a [usize],
        /// Number of classes.
        k: usize,
    },
    /// Numbers; leaves hold the mean.
    Values(&'a [f64]),
    /// Gradients and hessians; leaves hold `-G / (H + lambda)`.
    Gradients {
        /// First derivatives.
        g: &'a [f64],
        /// Second derivatives.
        h: &'a [f64],
    },
}

/// Growth limits.
#[derive(Debug, Clone)]
pub struct TreeParams {
    /// Deepest level (root = 0); `None` grows until leaves are pure.
    pub max_depth: Option<usize>,
    /// Fewest rows (weighted) a node needs to be split.
    pub min_samples_split: usize,
    /// Fewest rows (weighted) in a leaf.
    pub min_samples_leaf: usize,
    /// Features considered per split (all when >= the number of features).
    pub max_features: usize,
    /// Split score.
    pub criterion: Criterion,
    /// Evaluate features of big nodes on several threads.
    pub parallel: bool,
}

struct Builder<'a> {
    binned: &'a Binned,
    fit: Fit<'a>,
    w: Option<&'a [f64]>,
    p: &'a TreeParams,
    stride: usize,
}

#[derive(Clone, Copy)]
struct Best {
    gain: f64,
    feature: usize,
    bin: usize,
}

impl Builder<'_> {
    fn count(&self, s: &[f64]) -> f64 {
        match self.fit {
            Fit::Classes { .. } => s.iter().sum(),
            Fit::Values(_) => s[0],
            Fit::Gradients { .. } => s[2],
        }
    }

    fn score(&self, s: &[f64]) -> f64 {
        match self.p.criterion {
            Criterion::Gini => {
                let n: f64 = s.iter().sum();
                if n <= 0.0 {
                    0.0
                } else {
                    s.iter().map(|c| c * c).sum::<f64>() / n
                }
            }
            Criterion::Entropy => {
                let n: f64 = s.iter().sum();
                s.iter()
                    .filter(|&&c| c > 0.0)
                    .map(|&c| c * (c / n).ln())
                    .sum()
            }
            Criterion::SquaredError => {
                if s[0] <= 0.0 {
                    0.0
                } else {
                    s[1] * s[1] / s[0]
                }
            }
            Criterion::Newton { lambda } => s[0] * s[0] / (s[1] + lambda).max(1e-12),
        }
    }

    /// Whether a node cannot be improved: one class, or constant values.
    fn is_pure(&self, s: &[f64]) -> bool {
        match self.fit {
            Fit::Classes { .. } => s.iter().filter(|&&c| c > 0.0).count() <= 1,
            Fit::Values(_) => s[0] * s[2] - s[1] * s[1] <= 1e-12 * s[0] * s[2].abs().max(1e-300),
            Fit::Gradients { .. } => false,
        }
    }

    fn leaf_value(&self, s: &[f64], out: &mut Vec<f64>) {
        match (self.fit, self.p.criterion) {
            (Fit::Classes { .. }, _) => {
                let n: f64 = s.iter().sum();
                out.extend(s.iter().map(|c| if n > 0.0 { c / n } else { 0.0 }));
            }
            (Fit::Values(_), _) => out.push(if s[0] > 0.0 { s[1] / s[0] } else { 0.0 }),
            (Fit::Gradients { .. }, Criterion::Newton { lambda }) => {
                out.push(-s[0] / (s[1] + lambda).max(1e-12))
            }
            (Fit::Gradients { .. }, _) => out.push(0.0),
        }
    }

    fn totals(&self, rows: &[u32]) -> Vec<f64> {
        let mut s = vec![0.0; self.stride];
        for &r in rows {
            self.add(r as usize, &mut s);
        }
        s
    }

    #[inline]
    fn add(&self, i: usize, acc: &mut [f64]) {
        let w = self.w.map_or(1.0, |w| w[i]);
        match self.fit {
            Fit::Classes { y, .. } => acc[y[i]] += w,
            Fit::Values(y) => {
                acc[0] += w;
                acc[1] += w * y[i];
                acc[2] += w * y[i] * y[i];
            }
            Fit::Gradients { g, h } => {
                acc[0] += w * g[i];
                acc[1] += w * h[i];
                acc[2] += w;
            }
        }
    }

    /// Fills `hist` (bins x stride) for feature `f` over `rows`.
    fn histogram(&self, f: usize, rows: &[u32], hist: &mut [f64]) {
        let n = self.binned.n;
        let col = &self.binned.bins[f * n..(f + 1) * n];
        let st = self.stride;
        hist.fill(0.0);
        match (self.fit, self.w) {
            (Fit::Classes { y, .. }, None) => {
                for &r in rows {
                    let r = r as usize;
                    hist[col[r] as usize * st + y[r]] += 1.0;
                }
            }
            (Fit::Classes { y, .. }, Some(w)) => {
                for &r in rows {
                    let r = r as usize;
                    hist[col[r] as usize * st + y[r]] += w[r];
                }
            }
            (Fit::Gradients { g, h }, None) => {
                for &r in rows {
                    let r = r as usize;
                    let b = col[r] as usize * 3;
                    hist[b] += g[r];
                    hist[b + 1] += h[r];
                    hist[b + 2] += 1.0;
                }
            }
            _ => {
                for &r in rows {
                    let r = r as usize;
                    let b = col[r] as usize * st;
                    self.add(r, &mut hist[b..b + st]);
                }
            }
        }
    }

    /// The best split of feature `f`: `(gain over the parent, bin)`, and whether the feature
    /// varies in the node at all.
    fn best_for_feature(
        &self,
        f: usize,
        rows: &[u32],
        total: &[f64],
        parent_score: f64,
        hist: &mut Vec<f64>,
    ) -> (Option<(f64, usize)>, bool) {
        let nb = self.binned.n_bins(f);
        let st = self.stride;
        hist.resize(nb * st, 0.0);
        self.histogram(f, rows, &mut hist[..nb * st]);
        let mut left = vec![0.0; st];
        let mut right = vec![0.0; st];
        let min_leaf = self.p.min_samples_leaf.max(1) as f64;
        let total_count = self.count(total);
        let mut best: Option<(f64, usize)> = None;
        let mut nonempty = 0;
        for b in 0..nb {
            let bin = &hist[b * st..(b + 1) * st];
            let c = self.count(bin);
            if c > 0.0 {
                nonempty += 1;
            }
            if b + 1 == nb {
                break;
            }
            for k in 0..st {
                left[k] += bin[k];
            }
            if c == 0.0 {
                continue;
            }
            let lc = self.count(&left);
            if lc < min_leaf {
                continue;
            }
            if total_count - lc < min_leaf {
                break;
            }
            for k in 0..st {
                right[k] = total[k] - left[k];
            }
            let gain = self.score(&left) + self.score(&right) - parent_score;
            if best.is_none_or(|(g, _)| gain > g) {
                best = Some((gain, b));
            }
        }
        (best, nonempty > 1)
    }

    fn build(&self, mut rows: Vec<u32>, rng: &mut Rng) -> Tree {
        let d = self.binned.d;
        let mut tree = Tree {
            feature: vec![LEAF],
            threshold: vec![0.0],
            left: vec![0],
            right: vec![0],
            values: Vec::new(),
            n_out: match self.fit {
                Fit::Classes { k, .. } => k,
                _ => 1,
            },
            cover: vec![0.0],
        };
        let mut n_leaves = 0u32;
        let total = self.totals(&rows);
        // (node, start, end, depth, totals)
        let mut stack = vec![(0usize, 0usize, rows.len(), 0usize, total)];
        let mut hist = Vec::new();
        let mut order: Vec<usize> = (0..d).collect();
        let min_gain = match self.p.criterion {
            Criterion::Newton { .. } => 1e-12,
            _ => -1e-9,
        };
        while let Some((node, start, end, depth, total)) = stack.pop() {
            let count = self.count(&total);
            tree.cover[node] = count;
            let can_split = self.p.max_depth.is_none_or(|m| depth < m)
                && count >= self.p.min_samples_split.max(2) as f64
                && count >= 2.0 * self.p.min_samples_leaf.max(1) as f64
                && !self.is_pure(&total);
            let best = if can_split {
                self.find_split(&rows[start..end], &total, &mut order, &mut hist, rng)
                    .filter(|b| b.gain > min_gain)
            } else {
                None
            };
            let Some(best) = best else {
                tree.feature[node] = LEAF;
                tree.left[node] = n_leaves;
                n_leaves += 1;
                self.leaf_value(&total, &mut tree.values);
                continue;
            };
            // Partition rows: bin <= best.bin to the left.
            let n = self.binned.n;
            let col = &self.binned.bins[best.feature * n..(best.feature + 1) * n];
            let seg = &mut rows[start..end];
            let mut i = 0;
            let mut j = seg.len();
            while i < j {
                if col[seg[i] as usize] as usize <= best.bin {
                    i += 1;
                } else {
                    j -= 1;
                    seg.swap(i, j);
                }
            }
            let mid = start + i;
            let left_total = self.totals(&rows[start..mid]);
            let right_total: Vec<f64> = total.iter().zip(&left_total).map(|(t, l)| t - l).collect();
            let l = tree.feature.len();
            for _ in 0..2 {
                tree.feature.push(LEAF);
                tree.threshold.push(0.0);
                tree.left.push(0);
                tree.right.push(0);
                tree.cover.push(0.0);
            }
            tree.feature[node] = best.feature as u32;
            tree.threshold[node] = self.binned.edges[best.feature][best.bin];
            tree.left[node] = l as u32;
            tree.right[node] = (l + 1) as u32;
            stack.push((l + 1, mid, end, depth + 1, right_total));
            stack.push((l, start, mid, depth + 1, left_total));
        }
        tree
    }

    fn find_split(
        &self,
        rows: &[u32],
        total: &[f64],
        order: &mut [usize],
        hist: &mut Vec<f64>,
        rng: &mut Rng,
    ) -> Option<Best> {
        let d = order.len();
        let parent = self.score(total);
        let mtry = self.p.max_features.clamp(1, d);
        let mut best: Option<Best> = None;
        let consider = |b: &mut Option<Best>, f: usize, r: Option<(f64, usize)>| {
            if let Some((gain, bin)) = r
                && b.is_none_or(|x| gain > x.gain)
            {
                *b = Some(Best {
                    gain,
                    feature: f,
                    bin,
                });
            }
        };
        // Draw features without replacement; keep drawing past `mtry` until a valid split
        // is found (as scikit-learn does).
        for i in 0..d {
            let j = i + rng.index(d - i);
            order.swap(i, j);
        }
        let first = &order[..mtry];
        if self.p.parallel && rows.len() * first.len() >= 400_000 {
            let results: Vec<(usize, Option<(f64, usize)>)> = first
                .par_iter()
                .map_init(Vec::new, |h, &f| {
                    (f, self.best_for_feature(f, rows, total, parent, h).0)
                })
                .collect();
            for (f, r) in results {
                consider(&mut best, f, r);
            }
        } else {
            for &f in first {
                let (r, _) = self.best_for_feature(f, rows, total, parent, hist);
                consider(&mut best, f, r);
            }
        }
        if best.is_none() {
            for &f in &order[mtry..] {
                let (r, _) = self.best_for_feature(f, rows, total, parent, hist);
                consider(&mut best, f, r);
                if best.is_some() {
                    break;
                }
            }
        }
        best
    }
}

/// Grows one tree on `rows` (indices into `binned`), with optional per-row weights.
pub fn grow(
    binned: &Binned,
    fit: Fit<'_>,
    weights: Option<&[f64]>,
    rows: Vec<u32>,
    params: &TreeParams,
    rng: &mut Rng,
) -> Tree {
    let stride = match fit {
        Fit::Classes { k, .. } => k,
        Fit::Values(_) | Fit::Gradients { .. } => 3,
    };
    let b = Builder {
        binned,
        fit,
        w: weights,
        p: params,
        stride,
    };
    b.build(rows, rng)
}

/// Hyperparameters shared by the tree-based algorithms.
pub(crate) struct CommonTree {
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: MaxFeatures,
    pub max_bins: usize,
}

/// `max_features` as scikit-learn takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MaxFeatures {
    All,
    Sqrt,
    Log2,
    Count(usize),
    Fraction(f64),
}

impl MaxFeatures {
    pub fn resolve(self, d: usize) -> usize {
        let v = match self {
            MaxFeatures::All => d,
            MaxFeatures::Sqrt => (d as f64).sqrt() as usize,
            MaxFeatures::Log2 => (d as f64).log2() as usize,
            MaxFeatures::Count(c) => c,
            MaxFeatures::Fraction(f) => (f * d as f64) as usize,
        };
        v.clamp(1, d.max(1))
    }
}

impl CommonTree {
    pub fn read(p: &Params<'_>, default_max_features: MaxFeatures) -> Result<Self, ParamError> {
        let max_features = match p.raw("max_features") {
            None => default_max_features,
            Some(serde_json::Value::String(s)) => match s.as_str() {
                "sqrt" | "auto" => MaxFeatures::Sqrt,
                "log2" => MaxFeatures::Log2,
                other => match other.parse::<f64>() {
                    Ok(v) if v.fract() == 0.0 && v >= 1.0 => MaxFeatures::Count(v as usize),
                    Ok(v) if v > 0.0 && v < 1.0 => MaxFeatures::Fraction(v),
                    _ => {
                        return Err(p.error(
                            "max_features",
                            format!("{other:?} is not sqrt, log2, a count or a fraction"),
                        ));
                    }
                },
            },
            Some(serde_json::Value::Number(n)) => {
                let v = n.as_f64().unwrap_or(0.0);
                if n.is_u64() && v >= 1.0 {
                    MaxFeatures::Count(v as usize)
                } else if v > 0.0 && v <= 1.0 {
                    MaxFeatures::Fraction(v)
                } else {
                    return Err(p.error(
                        "max_features",
                        format!("must be a count >= 1 or a fraction in (0, 1], got {v}"),
                    ));
                }
            }
            Some(v) => {
                return Err(p.error(
                    "max_features",
                    format!("expected sqrt, log2, a count or a fraction, got {v}"),
                ));
            }
        };
        Ok(CommonTree {
            max_depth: p.opt_usize("max_depth")?,
            min_samples_split: p.usize_min("min_samples_split", 2, 2)?,
            min_samples_leaf: p.usize_min("min_samples_leaf", 1, 1)?,
            max_features,
            max_bins: p.usize_min("max_bins", 255, 2)?.min(MAX_BINS),
        })
    }
}

/// The `criterion` hyperparameter for a task.
pub(crate) fn criterion(p: &Params<'_>, task: Task) -> Result<Criterion, ParamError> {
    match task {
        Task::Classification => {
            match p.choice("criterion", "gini", &["gini", "entropy", "log_loss"])? {
                "gini" => Ok(Criterion::Gini),
                _ => Ok(Criterion::Entropy),
            }
        }
        _ => {
            p.choice("criterion", "squared_error", &["squared_error"])?;
            Ok(Criterion::SquaredError)
        }
    }
}

/// Fits a single decision tree.
pub fn fit(
    x: Matrix<'_>,
    target: &Target,
    task: Task,
    p: &Params<'_>,
    seed: u64,
) -> Result<Tree, ParamError> {
    let common = CommonTree::read(p, MaxFeatures::All)?;
    let params = TreeParams {
        max_depth: common.max_depth,
        min_samples_split: common.min_samples_split,
        min_samples_leaf: common.min_samples_leaf,
        max_features: common.max_features.resolve(x.d),
        criterion: criterion(p, task)?,
        parallel: true,
    };
    let binned = Binned::new(x, common.max_bins);
    let rows: Vec<u32> = (0..x.n as u32).collect();
    let mut rng = Rng::new(seed);
    let fit = match target {
        Target::Classes { y, k } => Fit::Classes { y, k: *k },
        Target::Values(y) => Fit::Values(y),
        Target::None => Fit::Values(&[]),
    };
    Ok(grow(&binned, fit, None, rows, &params, &mut rng))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(criterion: Criterion) -> TreeParams {
        TreeParams {
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: usize::MAX,
            criterion,
            parallel: false,
        }
    }

    #[test]
    fn bins_split_between_values() {
        let col = [3.0, 1.0, 2.0, 2.0];
        assert_eq!(bin_edges(&col, 256), vec![1.5, 2.5]);
        let many: Vec<f64> = (0..1000).map(f64::from).collect();
        let e = bin_edges(&many, 10);
        assert_eq!(e.len(), 9);
        assert_eq!(e[0], 99.5);
    }

    #[test]
    fn classification_tree_separates_classes() {
        // y = 1 when x0 > 5 xor x1 > 5: needs two levels.
        let mut data = Vec::new();
        let mut y = Vec::new();
        for a in 0..10 {
            for b in 0..10 {
                data.push(a as f64);
                data.push(b as f64);
                y.push(usize::from((a > 5) ^ (b > 5)));
            }
        }
        let x = Matrix {
            data: &data,
            n: 100,
            d: 2,
        };
        let binned = Binned::new(x, 256);
        let t = grow(
            &binned,
            Fit::Classes { y: &y, k: 2 },
            None,
            (0..100).collect(),
            &params(Criterion::Gini),
            &mut Rng::new(1),
        );
        for i in 0..100 {
            let p = t.leaf(x.row(i));
            assert_eq!(p[y[i]], 1.0);
        }
        assert_eq!(t.n_leaves(), 4);
    }

    #[test]
    fn regression_tree_depth_limit_and_min_leaf() {
        let data: Vec<f64> = (0..64).map(f64::from).collect();
        let y: Vec<f64> = data.iter().map(|v| v * 2.0).collect();
        let x = Matrix {
            data: &data,
            n: 64,
            d: 1,
        };
        let binned = Binned::new(x, 256);
        let mut p = params(Criterion::SquaredError);
        p.max_depth = Some(2);
        let t = grow(
            &binned,
            Fit::Values(&y),
            None,
            (0..64).collect(),
            &p,
            &mut Rng::new(1),
        );
        assert_eq!(t.n_leaves(), 4);
        assert_eq!(t.leaf(&[0.0])[0], 15.0); // mean of 0, 2, ..., 30
        let mut p = params(Criterion::SquaredError);
        p.min_samples_leaf = 20;
        let t = grow(
            &binned,
            Fit::Values(&y),
            None,
            (0..64).collect(),
            &p,
            &mut Rng::new(1),
        );
        assert!(t.n_leaves() <= 3);
        // Unlimited: fits every point.
        let t = grow(
            &binned,
            Fit::Values(&y),
            None,
            (0..64).collect(),
            &params(Criterion::SquaredError),
            &mut Rng::new(1),
        );
        assert_eq!(t.leaf(&[17.0])[0], 34.0);
    }
}
