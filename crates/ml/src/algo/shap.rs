//! TreeSHAP: exact Shapley values of one tree's prediction, in polynomial time (Lundberg,
//! Erion & Lee, "Consistent Individualized Feature Attribution for Tree Ensembles", 2018,
//! Algorithm 2; the path-dependent form, as `shap.TreeExplainer` computes by default).
//!
//! A feature outside the coalition is integrated out along the tree: at its splits, both
//! children are followed, weighted by the training rows that reached each (the node
//! [`Tree::cover`]). The contributions of every feature plus the tree's expected value (its
//! leaves averaged by cover) add up to the tree's prediction.

use super::tree::{LEAF, Tree};

#[derive(Clone, Copy, Default)]
struct PathElem {
    feature: usize,
    zero: f64,
    one: f64,
    weight: f64,
}

/// The expected value of `t` over its training rows (`n_out` values), or `None` when it has
/// no node covers.
pub fn expected_value(t: &Tree) -> Option<Vec<f64>> {
    if t.cover.len() != t.feature.len() || t.cover[0] <= 0.0 {
        return None;
    }
    let mut out = vec![0.0; t.n_out];
    for node in 0..t.feature.len() {
        if t.feature[node] == LEAF {
            let share = t.cover[node] / t.cover[0];
            let o = t.left[node] as usize * t.n_out;
            for (a, v) in out.iter_mut().zip(&t.values[o..o + t.n_out]) {
                *a += share * v;
            }
        }
    }
    Some(out)
}

/// Adds the SHAP values of `t` at row `x` (encoded features) to `phi`, laid out
/// `phi[feature * n_out + output]`. Returns false (and adds nothing) when the tree has no
/// node covers.
pub fn shap(t: &Tree, x: &[f64], phi: &mut [f64]) -> bool {
    if t.cover.len() != t.feature.len() || t.cover[0] <= 0.0 {
        return false;
    }
    recurse(t, x, phi, 0, &[], 1.0, 1.0, usize::MAX);
    true
}

fn extend(path: &mut [PathElem], depth: usize, zero: f64, one: f64, feature: usize) {
    path[depth] = PathElem {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let d1 = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / d1;
        path[i].weight = zero * path[i].weight * (depth - i) as f64 / d1;
    }
}

fn unwind(path: &mut [PathElem], depth: usize, index: usize) {
    let (one, zero) = (path[index].one, path[index].zero);
    let d1 = (depth + 1) as f64;
    let mut next = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].weight;
            path[i].weight = next * d1 / ((i + 1) as f64 * one);
            next = tmp - path[i].weight * zero * (depth - i) as f64 / d1;
        } else {
            path[i].weight = path[i].weight * d1 / (zero * (depth - i) as f64);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

fn unwound_sum(path: &[PathElem], depth: usize, index: usize) -> f64 {
    let (one, zero) = (path[index].one, path[index].zero);
    let d1 = (depth + 1) as f64;
    let mut total = 0.0;
    let mut next = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = next * d1 / ((i + 1) as f64 * one);
            total += tmp;
            next = path[i].weight - tmp * zero * (depth - i) as f64 / d1;
        } else if zero != 0.0 {
            total += path[i].weight / zero / ((depth - i) as f64 / d1);
        }
    }
    total
}

/// One node of the recursion: `parent` is the path of unique features above it, extended
/// here with the feature of the split that led to `node` (`zero`, `one`: the fractions of
/// the coalitions without and with it that flow this way).
#[allow(clippy::too_many_arguments)]
fn recurse(
    t: &Tree,
    x: &[f64],
    phi: &mut [f64],
    node: usize,
    parent: &[PathElem],
    zero: f64,
    one: f64,
    feature: usize,
) {
    let depth = parent.len();
    let mut path = Vec::with_capacity(depth + 1);
    path.extend_from_slice(parent);
    path.push(PathElem::default());
    extend(&mut path, depth, zero, one, feature);
    let n_out = t.n_out;
    if t.feature[node] == LEAF {
        let o = t.left[node] as usize * n_out;
        for i in 1..=depth {
            let w = unwound_sum(&path, depth, i);
            let scale = w * (path[i].one - path[i].zero);
            let f = path[i].feature;
            for (k, v) in t.values[o..o + n_out].iter().enumerate() {
                phi[f * n_out + k] += scale * v;
            }
        }
        return;
    }
    let split = t.feature[node] as usize;
    let (l, r) = (t.left[node] as usize, t.right[node] as usize);
    let (hot, cold) = if x[split] <= t.threshold[node] {
        (l, r)
    } else {
        (r, l)
    };
    // A feature met again on the path: undo its earlier extension and carry its fractions.
    let (mut iz, mut io) = (1.0, 1.0);
    let mut depth = depth;
    if let Some(k) = (1..=depth).find(|&i| path[i].feature == split) {
        iz = path[k].zero;
        io = path[k].one;
        unwind(&mut path, depth, k);
        depth -= 1;
    }
    let path = &path[..depth + 1];
    let cover = t.cover[node];
    recurse(t, x, phi, hot, path, iz * t.cover[hot] / cover, io, split);
    recurse(
        t,
        x,
        phi,
        cold,
        path,
        iz * t.cover[cold] / cover,
        0.0,
        split,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path-dependent Shapley values by brute force: v(S) follows the row for features
    /// in S and averages both children by cover for the others; phi_i is the weighted sum
    /// of v(S + i) - v(S) over every S without i.
    fn brute_force(t: &Tree, x: &[f64], d: usize) -> Vec<f64> {
        fn value(t: &Tree, x: &[f64], s: u32, node: usize) -> f64 {
            if t.feature[node] == LEAF {
                return t.values[t.left[node] as usize];
            }
            let f = t.feature[node] as usize;
            let (l, r) = (t.left[node] as usize, t.right[node] as usize);
            if s & (1 << f) != 0 {
                value(t, x, s, if x[f] <= t.threshold[node] { l } else { r })
            } else {
                (t.cover[l] * value(t, x, s, l) + t.cover[r] * value(t, x, s, r)) / t.cover[node]
            }
        }
        let fact = |n: usize| (1..=n).map(|v| v as f64).product::<f64>();
        (0..d)
            .map(|i| {
                let mut phi = 0.0;
                for s in 0u32..(1 << d) {
                    if s & (1 << i) != 0 {
                        continue;
                    }
                    let k = s.count_ones() as usize;
                    let w = fact(k) * fact(d - k - 1) / fact(d);
                    phi += w * (value(t, x, s | (1 << i), 0) - value(t, x, s, 0));
                }
                phi
            })
            .collect()
    }

    /// A depth-4 tree over 4 features with a feature repeated on a path.
    fn tree() -> Tree {
        // node: (feature, threshold, left, right) or leaf (value index)
        let nodes: &[(u32, f64, u32, u32)] = &[
            (0, 0.5, 1, 2),
            (1, 0.5, 3, 4),
            (2, 0.5, 5, 6),
            (LEAF, 0.0, 0, 0),
            (0, 0.2, 7, 8),
            (3, 0.5, 9, 10),
            (LEAF, 0.0, 1, 0),
            (LEAF, 0.0, 2, 0),
            (LEAF, 0.0, 3, 0),
            (LEAF, 0.0, 4, 0),
            (1, 0.7, 11, 12),
            (LEAF, 0.0, 5, 0),
            (LEAF, 0.0, 6, 0),
        ];
        let cover = vec![
            100.0, 60.0, 40.0, 25.0, 35.0, 30.0, 10.0, 15.0, 20.0, 12.0, 18.0, 8.0, 10.0,
        ];
        Tree {
            feature: nodes.iter().map(|n| n.0).collect(),
            threshold: nodes.iter().map(|n| n.1).collect(),
            left: nodes.iter().map(|n| n.2).collect(),
            right: nodes.iter().map(|n| n.3).collect(),
            values: vec![1.0, -2.0, 0.5, 3.0, -1.0, 2.5, 4.0],
            n_out: 1,
            cover,
        }
    }

    #[test]
    fn tree_shap_equals_the_shapley_values_by_brute_force_and_sums_to_the_prediction() {
        let t = tree();
        let base = expected_value(&t).unwrap()[0];
        for x in [
            [0.1, 0.6, 0.9, 0.2],
            [0.3, 0.6, 0.1, 0.9],
            [0.9, 0.1, 0.9, 0.9],
            [0.9, 0.9, 0.1, 0.1],
            [0.1, 0.1, 0.1, 0.1],
            [f64::NAN, 0.8, 0.3, 0.6],
        ] {
            let mut phi = vec![0.0; 4];
            assert!(shap(&t, &x, &mut phi));
            let want = brute_force(&t, &x, 4);
            for (a, b) in phi.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "{x:?}: {phi:?} vs {want:?}");
            }
            let sum: f64 = phi.iter().sum::<f64>() + base;
            assert!((sum - t.leaf(&x)[0]).abs() < 1e-12, "{x:?}");
        }
    }

    #[test]
    fn a_tree_without_covers_is_not_explained() {
        let mut t = tree();
        t.cover.clear();
        assert!(expected_value(&t).is_none());
        assert!(!shap(&t, &[0.0; 4], &mut [0.0; 4]));
    }
}
