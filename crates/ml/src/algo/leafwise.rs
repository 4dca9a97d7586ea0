//! Leaf-wise tree growth on gradient histograms: the tree builder of gradient boosting.
//!
//! The method is LightGBM's:
//!
//! - Features are binned once ([`RowBins`], row-major `u8` bins, so one pass over a node's rows
//!   reads each row's bins from one cache line).
//! - A node's histogram holds, per bin of every feature, the sum of gradients and hessians
//!   (and of rows, when `min_samples_leaf` needs counts). Big nodes build it over fixed blocks
//!   of rows on several threads and add the blocks in order, so the floats do not depend on the
//!   thread count.
//! - Histogram subtraction: when a leaf splits, only the smaller child's histogram is built
//!   from its rows; the larger child's is the parent's minus it.
//! - Leaf-wise growth: the leaf whose best split gains most is split next, until `max_leaves`
//!   leaves, `max_depth`, or no split gains.
//! - Each leaf owns a contiguous segment of the row array, partitioned stably in place, so
//!   the raw scores are updated from the segments without walking the tree.

use super::Matrix;
use super::tree::{Binned, LEAF, Tree};
use crate::rng::Rng;
use rayon::prelude::*;

/// Features binned row by row: `bins[i * d + f]` is the bin of row `i` for feature `f`.
#[derive(Debug, Clone)]
pub struct RowBins {
    /// Rows.
    pub n: usize,
    /// Features.
    pub d: usize,
    /// Row-major bins.
    pub bins: Vec<u8>,
    /// Per feature, where its bins start in a histogram (`d + 1` values).
    pub offsets: Vec<usize>,
    /// Per feature, the increasing thresholds between bins.
    pub edges: Vec<Vec<f64>>,
}

impl RowBins {
    /// Bins every column of `x` into at most `max_bins` bins (quantiles, as [`Binned`]).
    pub fn new(x: Matrix<'_>, max_bins: usize) -> RowBins {
        let cols = Binned::new(x, max_bins);
        let (n, d) = (cols.n, cols.d);
        let mut bins = vec![0u8; n * d];
        bins.par_chunks_mut(d.max(1) * 4096)
            .enumerate()
            .for_each(|(block, out)| {
                let lo = block * 4096;
                for (k, row) in out.chunks_mut(d.max(1)).enumerate() {
                    let i = lo + k;
                    for (f, b) in row.iter_mut().enumerate() {
                        *b = cols.bins[f * n + i];
                    }
                }
            });
        let mut offsets = Vec::with_capacity(d + 1);
        let mut at = 0;
        for f in 0..d {
            offsets.push(at);
            at += cols.n_bins(f);
        }
        offsets.push(at);
        RowBins {
            n,
            d,
            bins,
            offsets,
            edges: cols.edges,
        }
    }

    /// Histogram entries over all features.
    pub fn total_bins(&self) -> usize {
        self.offsets[self.d]
    }

    /// Bins of row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[u8] {
        &self.bins[i * self.d..(i + 1) * self.d]
    }
}

/// Growth limits of one tree.
#[derive(Debug, Clone)]
pub struct GrowParams {
    /// Deepest level (root = 0); `None` for no limit.
    pub max_depth: Option<usize>,
    /// Most leaves.
    pub max_leaves: usize,
    /// Fewest rows a node needs to be split.
    pub min_samples_split: usize,
    /// Fewest rows in a leaf.
    pub min_samples_leaf: usize,
    /// Smallest hessian sum in a leaf.
    pub min_child_weight: f64,
    /// L2 regularisation of leaf values.
    pub lambda: f64,
    /// Features considered per split (all when >= the number of features).
    pub max_features: usize,
}

/// A grown tree, its leaves' row segments and (for rows outside the sample) each node's split
/// bin.
pub struct Grown {
    /// The tree, leaf values `-G / (H + lambda)` (unscaled).
    pub tree: Tree,
    /// Per node, the bin a row's bin is compared with (`<=` goes left); 0 for leaves.
    pub split_bin: Vec<u8>,
    /// `(start, end, leaf index)` of each leaf's rows in the row array.
    pub segments: Vec<(usize, usize, usize)>,
    /// Gain of each split, by feature (the "gain" importance).
    pub gain: Vec<f64>,
}

impl Grown {
    /// Leaf index that row `i` of `bins` reaches.
    #[inline]
    pub fn leaf_of(&self, bins: &RowBins, i: usize) -> usize {
        let row = bins.row(i);
        let t = &self.tree;
        let mut node = 0usize;
        loop {
            let f = t.feature[node];
            if f == LEAF {
                return t.left[node] as usize;
            }
            node = if row[f as usize] <= self.split_bin[node] {
                t.left[node]
            } else {
                t.right[node]
            } as usize;
        }
    }
}

/// Rows per block of a parallel histogram.
const HIST_BLOCK: usize = 16_384;

#[derive(Clone, Copy, Debug)]
struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    left_g: f64,
    left_h: f64,
}

struct Leaf {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    g: f64,
    h: f64,
    hist: Vec<[f64; 2]>,
    counts: Vec<u32>,
    best: Option<Split>,
}

struct Grower<'a> {
    bins: &'a RowBins,
    g: &'a [f64],
    h: &'a [f64],
    p: &'a GrowParams,
    need_counts: bool,
}

impl Grower<'_> {
    fn hist_serial(&self, rows: &[u32], hist: &mut [[f64; 2]], counts: &mut [u32]) {
        let d = self.bins.d;
        let off = &self.bins.offsets[..d];
        let bins = &self.bins.bins;
        for &r in rows {
            let r = r as usize;
            let (gr, hr) = (self.g[r], self.h[r]);
            let row = &bins[r * d..r * d + d];
            for (o, &b) in off.iter().zip(row) {
                let e = &mut hist[o + b as usize];
                e[0] += gr;
                e[1] += hr;
            }
        }
        if self.need_counts {
            for &r in rows {
                let r = r as usize;
                let row = &bins[r * d..r * d + d];
                for (o, &b) in off.iter().zip(row) {
                    counts[o + b as usize] += 1;
                }
            }
        }
    }

    /// The histogram of `rows`, block by block in parallel when there are many.
    fn histogram(&self, rows: &[u32], hist: &mut Vec<[f64; 2]>, counts: &mut Vec<u32>) {
        let nb = self.bins.total_bins();
        hist.clear();
        hist.resize(nb, [0.0; 2]);
        counts.clear();
        if self.need_counts {
            counts.resize(nb, 0);
        }
        if rows.len() < 2 * HIST_BLOCK {
            self.hist_serial(rows, hist, counts);
            return;
        }
        let parts: Vec<(Vec<[f64; 2]>, Vec<u32>)> = rows
            .par_chunks(HIST_BLOCK)
            .map(|chunk| {
                let mut hh = vec![[0.0; 2]; nb];
                let mut cc = if self.need_counts {
                    vec![0u32; nb]
                } else {
                    Vec::new()
                };
                self.hist_serial(chunk, &mut hh, &mut cc);
                (hh, cc)
            })
            .collect();
        for (hh, cc) in parts {
            for (a, b) in hist.iter_mut().zip(&hh) {
                a[0] += b[0];
                a[1] += b[1];
            }
            for (a, b) in counts.iter_mut().zip(&cc) {
                *a += b;
            }
        }
    }

    fn score(&self, g: f64, h: f64) -> f64 {
        g * g / (h + self.p.lambda).max(1e-300)
    }

    fn can_split(&self, leaf: &Leaf) -> bool {
        let n = leaf.end - leaf.start;
        self.p.max_depth.is_none_or(|m| leaf.depth < m)
            && n >= self.p.min_samples_split.max(2)
            && n >= 2 * self.p.min_samples_leaf.max(1)
    }

    /// The best split of a leaf over `features`.
    fn best_split(&self, leaf: &Leaf, features: &[usize]) -> Option<Split> {
        let parent = self.score(leaf.g, leaf.h);
        let n = leaf.end - leaf.start;
        let min_leaf = self.p.min_samples_leaf.max(1);
        let min_h = self.p.min_child_weight;
        let mut best: Option<Split> = None;
        for &f in features {
            let (lo, hi) = (self.bins.offsets[f], self.bins.offsets[f + 1]);
            let (mut gl, mut hl, mut nl) = (0.0, 0.0, 0usize);
            for b in lo..hi - 1 {
                let e = leaf.hist[b];
                gl += e[0];
                hl += e[1];
                if self.need_counts {
                    nl += leaf.counts[b] as usize;
                    if nl < min_leaf {
                        continue;
                    }
                    if n - nl < min_leaf {
                        break;
                    }
                } else if e[1] == 0.0 && e[0] == 0.0 {
                    // An empty bin gives the same split as the one before it.
                    continue;
                }
                let hr = leaf.h - hl;
                if hl <= 0.0 || hl < min_h {
                    continue;
                }
                if hr <= 0.0 || hr < min_h {
                    break;
                }
                let gr = leaf.g - gl;
                let gain = self.score(gl, hl) + self.score(gr, hr) - parent;
                if best.is_none_or(|s| gain > s.gain) {
                    best = Some(Split {
                        gain,
                        feature: f,
                        bin: b - lo,
                        left_g: gl,
                        left_h: hl,
                    });
                }
            }
        }
        best.filter(|s| s.gain > 1e-12 * parent.abs().max(1e-300))
    }

    fn features(&self, order: &mut [usize], rng: &mut Rng) -> usize {
        let d = order.len();
        let mtry = self.p.max_features.clamp(1, d.max(1));
        if mtry < d {
            for i in 0..mtry {
                let j = i + rng.index(d - i);
                order.swap(i, j);
            }
        }
        mtry
    }
}

/// Grows one tree on `rows` (sorted row indices into `bins`), fitted to gradients `g` and
/// hessians `h`. `rows` is reordered: each leaf's rows end up contiguous ([`Grown::segments`]).
pub fn grow(
    bins: &RowBins,
    g: &[f64],
    h: &[f64],
    rows: &mut [u32],
    p: &GrowParams,
    rng: &mut Rng,
) -> Grown {
    let d = bins.d;
    let gr = Grower {
        bins,
        g,
        h,
        p,
        need_counts: p.min_samples_leaf > 1,
    };
    let mut tree = Tree {
        feature: vec![LEAF],
        threshold: vec![0.0],
        left: vec![0],
        right: vec![0],
        values: Vec::new(),
        n_out: 1,
    };
    let mut split_bin = vec![0u8];
    let mut gain = vec![0.0; d];
    let mut order: Vec<usize> = (0..d).collect();
    let mut scratch: Vec<u32> = Vec::with_capacity(rows.len());

    let mut root = Leaf {
        node: 0,
        start: 0,
        end: rows.len(),
        depth: 0,
        g: 0.0,
        h: 0.0,
        hist: Vec::new(),
        counts: Vec::new(),
        best: None,
    };
    gr.histogram(rows, &mut root.hist, &mut root.counts);
    if d > 0 {
        // Every row falls in one bin of feature 0: its bins sum to the node's totals.
        for e in &root.hist[bins.offsets[0]..bins.offsets[1]] {
            root.g += e[0];
            root.h += e[1];
        }
    }
    if gr.can_split(&root) {
        let m = gr.features(&mut order, rng);
        root.best = gr.best_split(&root, &order[..m]);
    }
    let mut leaves = vec![root];
    let max_leaves = p.max_leaves.max(1);
    while leaves.len() < max_leaves {
        let Some(pick) = leaves
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.best.map(|s| (i, s.gain)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i)
        else {
            break;
        };
        let mut parent = leaves.swap_remove(pick);
        let s = parent.best.expect("picked a leaf with a split");
        // Stable partition of the parent's rows: bin <= s.bin to the left.
        let seg = &mut rows[parent.start..parent.end];
        scratch.clear();
        let mut k = 0;
        for i in 0..seg.len() {
            let r = seg[i];
            if bins.bins[r as usize * d + s.feature] as usize <= s.bin {
                seg[k] = r;
                k += 1;
            } else {
                scratch.push(r);
            }
        }
        seg[k..].copy_from_slice(&scratch);
        let mid = parent.start + k;
        gain[s.feature] += s.gain;

        let l = tree.feature.len();
        for _ in 0..2 {
            tree.feature.push(LEAF);
            tree.threshold.push(0.0);
            tree.left.push(0);
            tree.right.push(0);
            split_bin.push(0);
        }
        tree.feature[parent.node] = s.feature as u32;
        tree.threshold[parent.node] = bins.edges[s.feature][s.bin];
        tree.left[parent.node] = l as u32;
        tree.right[parent.node] = (l + 1) as u32;
        split_bin[parent.node] = s.bin as u8;

        let mut left = Leaf {
            node: l,
            start: parent.start,
            end: mid,
            depth: parent.depth + 1,
            g: s.left_g,
            h: s.left_h,
            hist: Vec::new(),
            counts: Vec::new(),
            best: None,
        };
        let mut right = Leaf {
            node: l + 1,
            start: mid,
            end: parent.end,
            depth: parent.depth + 1,
            g: parent.g - s.left_g,
            h: parent.h - s.left_h,
            hist: std::mem::take(&mut parent.hist),
            counts: std::mem::take(&mut parent.counts),
            best: None,
        };
        let left_smaller = mid - parent.start <= parent.end - mid;
        let any_split = gr.can_split(&left) || gr.can_split(&right);
        if any_split {
            // The smaller child's histogram from its rows, the larger's by subtraction.
            let (small, large) = if left_smaller {
                (&mut left, &mut right)
            } else {
                std::mem::swap(&mut left.hist, &mut right.hist);
                std::mem::swap(&mut left.counts, &mut right.counts);
                (&mut right, &mut left)
            };
            gr.histogram(
                &rows[small.start..small.end],
                &mut small.hist,
                &mut small.counts,
            );
            for (a, b) in large.hist.iter_mut().zip(&small.hist) {
                a[0] -= b[0];
                a[1] -= b[1];
            }
            for (a, b) in large.counts.iter_mut().zip(&small.counts) {
                *a -= b;
            }
            for child in [&mut left, &mut right] {
                if gr.can_split(child) {
                    let m = gr.features(&mut order, rng);
                    child.best = gr.best_split(child, &order[..m]);
                }
                if child.best.is_none() {
                    child.hist = Vec::new();
                    child.counts = Vec::new();
                }
            }
        } else {
            right.hist = Vec::new();
            right.counts = Vec::new();
        }
        leaves.push(left);
        leaves.push(right);
    }
    // Leaves in node order, so the values are laid out as the tree is.
    leaves.sort_by_key(|l| l.node);
    let mut segments = Vec::with_capacity(leaves.len());
    for (i, leaf) in leaves.iter().enumerate() {
        tree.left[leaf.node] = i as u32;
        tree.values.push(-leaf.g / (leaf.h + p.lambda).max(1e-12));
        segments.push((leaf.start, leaf.end, i));
    }
    Grown {
        tree,
        split_bin,
        segments,
        gain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GrowParams {
        GrowParams {
            max_depth: None,
            max_leaves: 64,
            min_samples_split: 2,
            min_samples_leaf: 1,
            min_child_weight: 0.0,
            lambda: 0.0,
            max_features: usize::MAX,
        }
    }

    #[test]
    fn a_step_function_is_fitted_exactly_and_segments_cover_the_rows() {
        // y = 1 when x0 > 5 xor x1 > 5; gradients of squared error from 0 are -y.
        let mut data = Vec::new();
        let mut g = Vec::new();
        for a in 0..10 {
            for b in 0..10 {
                data.push(a as f64);
                data.push(b as f64);
                g.push(-(((a > 5) ^ (b > 5)) as u8 as f64));
            }
        }
        let x = Matrix {
            data: &data,
            n: 100,
            d: 2,
        };
        let bins = RowBins::new(x, 256);
        let h = vec![1.0; 100];
        let mut rows: Vec<u32> = (0..100).collect();
        let t = grow(&bins, &g, &h, &mut rows, &params(), &mut Rng::new(1));
        assert_eq!(t.tree.n_leaves(), 4);
        let mut seen = [false; 100];
        for &(s, e, leaf) in &t.segments {
            for &r in &rows[s..e] {
                let r = r as usize;
                assert!(!seen[r]);
                seen[r] = true;
                assert_eq!(t.leaf_of(&bins, r), leaf);
                assert_eq!(t.tree.leaf(x.row(r))[0], -g[r]);
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn max_leaves_and_min_samples_leaf_bound_the_tree() {
        let data: Vec<f64> = (0..200).map(f64::from).collect();
        let g: Vec<f64> = data.iter().map(|v| -(v * v)).collect();
        let h = vec![1.0; 200];
        let x = Matrix {
            data: &data,
            n: 200,
            d: 1,
        };
        let bins = RowBins::new(x, 256);
        let mut p = params();
        p.max_leaves = 5;
        let mut rows: Vec<u32> = (0..200).collect();
        let t = grow(&bins, &g, &h, &mut rows, &p, &mut Rng::new(1));
        assert_eq!(t.tree.n_leaves(), 5);
        let mut p = params();
        p.min_samples_leaf = 30;
        let mut rows: Vec<u32> = (0..200).collect();
        let t = grow(&bins, &g, &h, &mut rows, &p, &mut Rng::new(1));
        assert!(t.segments.iter().all(|(s, e, _)| e - s >= 30));
        let mut p = params();
        p.max_depth = Some(2);
        let mut rows: Vec<u32> = (0..200).collect();
        let t = grow(&bins, &g, &h, &mut rows, &p, &mut Rng::new(1));
        assert_eq!(t.tree.n_leaves(), 4);
    }

    #[test]
    fn a_parallel_histogram_equals_the_serial_one() {
        let n = 3 * HIST_BLOCK + 17;
        let mut r = Rng::new(3);
        let data: Vec<f64> = (0..n * 3).map(|_| r.next_f64()).collect();
        let g: Vec<f64> = (0..n).map(|_| r.next_f64() - 0.5).collect();
        let h: Vec<f64> = (0..n).map(|_| r.next_f64()).collect();
        let bins = RowBins::new(
            Matrix {
                data: &data,
                n,
                d: 3,
            },
            64,
        );
        let p = GrowParams {
            min_samples_leaf: 2,
            ..params()
        };
        let gr = Grower {
            bins: &bins,
            g: &g,
            h: &h,
            p: &p,
            need_counts: true,
        };
        let rows: Vec<u32> = (0..n as u32).collect();
        let (mut a, mut ac) = (Vec::new(), Vec::new());
        gr.histogram(&rows, &mut a, &mut ac);
        let mut b = vec![[0.0; 2]; bins.total_bins()];
        let mut bc = vec![0u32; bins.total_bins()];
        gr.hist_serial(&rows, &mut b, &mut bc);
        assert_eq!(ac, bc);
        for (x, y) in a.iter().zip(&b) {
            assert!((x[0] - y[0]).abs() < 1e-9 && (x[1] - y[1]).abs() < 1e-9);
        }
        assert_eq!(ac.iter().map(|c| *c as usize).sum::<usize>(), 3 * n);
    }
}
