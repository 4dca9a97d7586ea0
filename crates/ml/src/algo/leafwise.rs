//! Leaf-wise tree growth on gradient histograms: the tree builder of gradient boosting.
//!
//! The method is LightGBM's:
//!
//! - Features are binned once ([`Bins`], feature-major `u8` bins, so a histogram pass over
//!   one feature and a split's partition read one contiguous column).
//! - A node's histogram holds, per bin of every feature, the sum of gradients and hessians
//!   (and of rows, when `min_samples_leaf` needs counts). It is built over cache-sized blocks
//!   of rows whose gradients are gathered once, groups of features on several threads; every
//!   sum runs in row order, so the floats do not depend on the thread count.
//! - Histogram subtraction: when a leaf splits, only the smaller child's histogram is built
//!   from its rows; the larger child's is the parent's minus it.
//! - Leaf-wise growth: the leaf whose best split gains most is split next, until `max_leaves`
//!   leaves, `max_depth`, or no split gains.
//! - Each leaf owns a contiguous segment of the row array, partitioned stably (big segments
//!   in parallel blocks), so the raw scores are updated from the segments without walking
//!   the tree, and each node's row count is its TreeSHAP cover.

use super::Matrix;
use super::tree::{Binned, LEAF, Tree};
use crate::rng::Rng;
use rayon::prelude::*;

/// Features binned column by column: `cols[f * n + i]` is the bin of row `i` for feature `f`,
/// with each feature's place in a histogram.
#[derive(Debug, Clone)]
pub struct Bins {
    /// Rows.
    pub n: usize,
    /// Features.
    pub d: usize,
    /// Feature-major bins: a histogram pass over one feature and a split's partition read one
    /// contiguous column.
    pub cols: Vec<u8>,
    /// Per feature, where its bins start in a histogram (`d + 1` values).
    pub offsets: Vec<usize>,
    /// Per feature, the increasing thresholds between bins.
    pub edges: Vec<Vec<f64>>,
}

impl Bins {
    /// Bins every column of `x` into at most `max_bins` bins (quantiles, as [`Binned`]).
    pub fn new(x: Matrix<'_>, max_bins: usize) -> Bins {
        let cols = Binned::new(x, max_bins);
        let (n, d) = (cols.n, cols.d);
        let mut offsets = Vec::with_capacity(d + 1);
        let mut at = 0;
        for f in 0..d {
            offsets.push(at);
            at += cols.n_bins(f);
        }
        offsets.push(at);
        Bins {
            n,
            d,
            offsets,
            cols: cols.bins,
            edges: cols.edges,
        }
    }

    /// Histogram entries over all features.
    pub fn total_bins(&self) -> usize {
        self.offsets[self.d]
    }

    /// The bins of feature `f`, one per row.
    #[inline]
    pub fn col(&self, f: usize) -> &[u8] {
        &self.cols[f * self.n..(f + 1) * self.n]
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
    pub fn leaf_of(&self, bins: &Bins, i: usize) -> usize {
        let t = &self.tree;
        let mut node = 0usize;
        loop {
            let f = t.feature[node];
            if f == LEAF {
                return t.left[node] as usize;
            }
            node = if bins.cols[f as usize * bins.n + i] <= self.split_bin[node] {
                t.left[node]
            } else {
                t.right[node]
            } as usize;
        }
    }
}

/// Row-feature updates below which a histogram is built on one thread.
const PAR_MIN_UPDATES: usize = 1 << 16;
/// Rows whose gradients a histogram pass gathers at a time (64 KiB).
const HIST_BLOCK: usize = 4096;
/// Rows from which a histogram pass adds into interleaved copies.
const HIST_INTERLEAVE_ROWS: usize = 4096;
/// Interleaved copies of a histogram in a big pass.
const HIST_COPIES: usize = 8;

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
    bins: &'a Bins,
    g: &'a [f64],
    h: &'a [f64],
    p: &'a GrowParams,
    need_counts: bool,
}

impl Grower<'_> {
    /// Adds the gradients of `rows` to the histogram `hist` of features `feats` (`hist`
    /// starts at the first one's offset), and row counts to `counts` when they are needed.
    ///
    /// Rows go in blocks small enough for the cache: a block's gradients are gathered once,
    /// then each feature's pass reads them and one contiguous column. Consecutive rows often
    /// share a bin, so big passes add into [`HIST_COPIES`] interleaved copies of a feature's histogram
    /// to keep neighbouring adds independent. The order of every sum is fixed by the rows
    /// alone, never by the threads.
    fn hist_features(
        &self,
        feats: std::ops::Range<usize>,
        rows: &[u32],
        hist: &mut [[f64; 2]],
        counts: &mut [u32],
    ) {
        let off = &self.bins.offsets;
        let base = off[feats.start];
        const K: usize = HIST_COPIES;
        let copies = if rows.len() >= HIST_INTERLEAVE_ROWS {
            K
        } else {
            1
        };
        // A copy's stride is padded so copies of one bin never share an address modulo 4 KiB.
        let stride = |nb: usize| nb + 3;
        let mut sub = if copies > 1 {
            let total: usize = feats.clone().map(|f| stride(off[f + 1] - off[f]) * K).sum();
            vec![[0.0f64; 2]; total]
        } else {
            Vec::new()
        };
        let mut gh: Vec<[f64; 2]> = Vec::with_capacity(HIST_BLOCK.min(rows.len()));
        for block in rows.chunks(HIST_BLOCK) {
            gh.clear();
            gh.extend(
                block
                    .iter()
                    .map(|&r| [self.g[r as usize], self.h[r as usize]]),
            );
            let mut at = 0;
            for f in feats.clone() {
                let col = self.bins.col(f);
                let (lo, hi) = (off[f] - base, off[f + 1] - base);
                let st = stride(hi - lo);
                if copies > 1 {
                    let s = &mut sub[at..at + st * K];
                    at += st * K;
                    let mut pairs = block.chunks_exact(K).zip(gh.chunks_exact(K));
                    for (r, e) in &mut pairs {
                        for k in 0..K {
                            let x = &mut s[k * st + col[r[k] as usize] as usize];
                            x[0] += e[k][0];
                            x[1] += e[k][1];
                        }
                    }
                    let tail = block.len() / K * K;
                    for (&r, e) in block[tail..].iter().zip(&gh[tail..]) {
                        let x = &mut s[col[r as usize] as usize];
                        x[0] += e[0];
                        x[1] += e[1];
                    }
                } else {
                    let hf = &mut hist[lo..hi];
                    for (&r, e) in block.iter().zip(&gh) {
                        let x = &mut hf[col[r as usize] as usize];
                        x[0] += e[0];
                        x[1] += e[1];
                    }
                }
                if self.need_counts {
                    let cf = &mut counts[lo..hi];
                    for &r in block {
                        cf[col[r as usize] as usize] += 1;
                    }
                }
            }
        }
        if copies > 1 {
            let mut at = 0;
            for f in feats {
                let (lo, hi) = (off[f] - base, off[f + 1] - base);
                let st = stride(hi - lo);
                let s = &sub[at..at + st * K];
                at += st * K;
                for (b, x) in hist[lo..hi].iter_mut().enumerate() {
                    for k in 0..K {
                        x[0] += s[k * st + b][0];
                        x[1] += s[k * st + b][1];
                    }
                }
            }
        }
    }

    /// The histogram of `rows`, groups of features in parallel when the node is big.
    fn histogram(&self, rows: &[u32], hist: &mut Vec<[f64; 2]>, counts: &mut Vec<u32>) {
        let nb = self.bins.total_bins();
        hist.clear();
        hist.resize(nb, [0.0; 2]);
        counts.clear();
        if self.need_counts {
            counts.resize(nb, 0);
        }
        let d = self.bins.d;
        if d == 0 {
            return;
        }
        if rows.len() * d < PAR_MIN_UPDATES {
            self.hist_features(0..d, rows, hist, counts);
            return;
        }
        // About two groups per thread, so the threads stay busy.
        let per = d.div_ceil(2 * rayon::current_num_threads()).max(1);
        let off = &self.bins.offsets;
        let mut parts = Vec::with_capacity(d.div_ceil(per));
        let (mut hrest, mut crest) = (&mut hist[..], &mut counts[..]);
        for lo in (0..d).step_by(per) {
            let hi = (lo + per).min(d);
            let len = off[hi] - off[lo];
            let (hf, hr) = std::mem::take(&mut hrest).split_at_mut(len);
            let (cf, cr) = if self.need_counts {
                std::mem::take(&mut crest).split_at_mut(len)
            } else {
                (&mut [][..], &mut [][..])
            };
            hrest = hr;
            crest = cr;
            parts.push((lo..hi, hf, cf));
        }
        parts
            .into_par_iter()
            .for_each(|(feats, hf, cf)| self.hist_features(feats, rows, hf, cf));
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

/// Rows per block of a parallel partition.
const PARTITION_BLOCK: usize = 16_384;

/// Reorders `seg` stably so that rows whose bin in `col` is `<= bin` come first; returns how
/// many do. Big segments are split in blocks on several threads and joined in block order.
fn partition(seg: &mut [u32], col: &[u8], bin: u8, scratch: &mut Vec<u32>) -> usize {
    if seg.len() < 2 * PARTITION_BLOCK {
        scratch.clear();
        let mut k = 0;
        for i in 0..seg.len() {
            let r = seg[i];
            if col[r as usize] <= bin {
                seg[k] = r;
                k += 1;
            } else {
                scratch.push(r);
            }
        }
        seg[k..].copy_from_slice(scratch);
        return k;
    }
    // Each block moves its left rows to its front and reports the count; the blocks' lefts
    // and rights are then gathered in order.
    let counts: Vec<usize> = seg
        .par_chunks_mut(PARTITION_BLOCK)
        .map(|block| {
            let mut right = Vec::with_capacity(block.len());
            let mut k = 0;
            for i in 0..block.len() {
                let r = block[i];
                if col[r as usize] <= bin {
                    block[k] = r;
                    k += 1;
                } else {
                    right.push(r);
                }
            }
            block[k..].copy_from_slice(&right);
            k
        })
        .collect();
    scratch.clear();
    scratch.reserve(seg.len());
    for (block, &k) in seg.chunks(PARTITION_BLOCK).zip(&counts) {
        scratch.extend_from_slice(&block[..k]);
    }
    let left = scratch.len();
    for (block, &k) in seg.chunks(PARTITION_BLOCK).zip(&counts) {
        scratch.extend_from_slice(&block[k..]);
    }
    seg.copy_from_slice(scratch);
    left
}

/// Grows one tree on `rows` (sorted row indices into `bins`), fitted to gradients `g` and
/// hessians `h`. `rows` is reordered: each leaf's rows end up contiguous ([`Grown::segments`]).
pub fn grow(
    bins: &Bins,
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
        cover: vec![rows.len() as f64],
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
        let k = partition(seg, bins.col(s.feature), s.bin as u8, &mut scratch);
        let mid = parent.start + k;
        gain[s.feature] += s.gain;

        let l = tree.feature.len();
        for _ in 0..2 {
            tree.feature.push(LEAF);
            tree.threshold.push(0.0);
            tree.left.push(0);
            tree.right.push(0);
            tree.cover.push(0.0);
            split_bin.push(0);
        }
        tree.cover[l] = (mid - parent.start) as f64;
        tree.cover[l + 1] = (parent.end - mid) as f64;
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
        let bins = Bins::new(x, 256);
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
        let bins = Bins::new(x, 256);
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
    fn the_parallel_partition_is_stable_like_the_serial_one() {
        let n = 5 * PARTITION_BLOCK + 123;
        let mut r = Rng::new(9);
        let col: Vec<u8> = (0..n).map(|_| r.index(10) as u8).collect();
        let rows: Vec<u32> = (0..n as u32).filter(|i| i % 3 != 1).collect();
        let mut want: Vec<u32> = rows
            .iter()
            .copied()
            .filter(|&i| col[i as usize] <= 4)
            .collect();
        let k = want.len();
        want.extend(rows.iter().copied().filter(|&i| col[i as usize] > 4));
        let mut big = rows.clone();
        assert_eq!(partition(&mut big, &col, 4, &mut Vec::new()), k);
        assert_eq!(big, want);
        let mut small = rows[..1000].to_vec();
        let k = partition(&mut small, &col, 4, &mut Vec::new());
        assert!(small[..k].iter().all(|&i| col[i as usize] <= 4));
        assert!(small[..k].windows(2).all(|w| w[0] < w[1]));
        assert!(small[k..].windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn histograms_equal_the_sums_of_their_rows_on_every_path() {
        // Big enough for the parallel and interleaved paths, then a small subset.
        let n = 70_000;
        let mut r = Rng::new(3);
        let data: Vec<f64> = (0..n * 3)
            .map(|i| {
                if i % 3 == 2 {
                    r.index(3) as f64
                } else {
                    r.next_f64()
                }
            })
            .collect();
        let g: Vec<f64> = (0..n).map(|_| r.next_f64() - 0.5).collect();
        let h: Vec<f64> = (0..n).map(|_| r.next_f64()).collect();
        let x = Matrix {
            data: &data,
            n,
            d: 3,
        };
        let bins = Bins::new(x, 64);
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
        let all: Vec<u32> = (0..n as u32).collect();
        let some: Vec<u32> = (0..n as u32).filter(|i| i % 7 == 3).take(500).collect();
        for rows in [all, some] {
            let (mut a, mut ac) = (Vec::new(), Vec::new());
            gr.histogram(&rows, &mut a, &mut ac);
            let mut b = vec![[0.0; 2]; bins.total_bins()];
            let mut bc = vec![0u32; bins.total_bins()];
            for &i in &rows {
                let i = i as usize;
                for f in 0..3 {
                    let e = bins.offsets[f] + bins.cols[f * n + i] as usize;
                    b[e][0] += g[i];
                    b[e][1] += h[i];
                    bc[e] += 1;
                }
            }
            assert_eq!(ac, bc);
            for (x, y) in a.iter().zip(&b) {
                assert!((x[0] - y[0]).abs() < 1e-9 && (x[1] - y[1]).abs() < 1e-9);
            }
            assert_eq!(
                ac.iter().map(|c| *c as usize).sum::<usize>(),
                3 * rows.len()
            );
        }
    }
}
