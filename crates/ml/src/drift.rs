//! Drift: compares a baseline [`Profile`] with a sample of new data, feature by feature.
//!
//! | method | numeric features | categorical features | drifted when |
//! |---|---|---|---|
//! | `psi` | over the baseline's histogram bins | over the categories | statistic > threshold |
//! | `ks` | sup \|F_base - F_sample\|, F_base from the 101 percentiles | falls back to `jensen_shannon` | statistic > threshold |
//! | `wasserstein` | W1 between quantile functions / baseline std | falls back to `jensen_shannon` | statistic > threshold |
//! | `jensen_shannon` | JS distance (base 2, 0..1) over the histogram bins | over the categories | statistic > threshold |
//! | `chi_squared` | p-value of the chi-squared test over the histogram bins | over the categories | p-value < threshold |
//!
//! Proportions are floored at 1e-4 for PSI and smoothed (+0.5 per bin) for the chi-squared
//! expectation, so empty bins do not give infinities. Missing values are left out of every
//! statistic.

use crate::profile::{ColumnProfile, ColumnStats, Histogram, Profile, quantile_sorted};
use crate::stats::chi2_sf;
use crate::table::{ColumnData, Table};
use mlctl_spec::{Drift, DriftMethod};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The drift check of one feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureReport {
    /// Column name.
    pub feature: String,
    /// The method used (may differ from the configured one; see `note`).
    pub method: DriftMethod,
    /// The statistic (a p-value for `chi_squared`); NaN (`null`) when it could not be computed.
    pub statistic: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// Whether the feature drifted.
    pub drifted: bool,
    /// Rows of the sample with a value for this feature.
    pub sample_count: u64,
    /// Why the method changed or the statistic is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The drift check of a sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    /// Whether any feature drifted.
    pub drifted: bool,
    /// One entry per checked feature, in baseline order.
    pub features: Vec<FeatureReport>,
}

impl fmt::Display for DriftReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.features.iter().filter(|r| r.drifted).count();
        writeln!(f, "{n} of {} features drifted", self.features.len())?;
        for r in &self.features {
            let cmp = if r.method == DriftMethod::ChiSquared {
                "<"
            } else {
                ">"
            };
            write!(
                f,
                "  {} {}: {} = {:.4} (drift if {cmp} {})",
                if r.drifted { "!" } else { " " },
                r.feature,
                method_name(r.method),
                r.statistic,
                r.threshold
            )?;
            if let Some(note) = &r.note {
                write!(f, " [{note}]")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The name of a method as in YAML.
pub fn method_name(m: DriftMethod) -> &'static str {
    match m {
        DriftMethod::Psi => "psi",
        DriftMethod::Ks => "ks",
        DriftMethod::Wasserstein => "wasserstein",
        DriftMethod::JensenShannon => "jensen_shannon",
        DriftMethod::ChiSquared => "chi_squared",
    }
}

/// Compares `sample` with `baseline` for every baseline column not ignored in `config`.
/// A baseline column absent from the sample is reported as drifted with a note.
pub fn drift(baseline: &Profile, sample: &Table, config: &Drift) -> DriftReport {
    let mut features = Vec::new();
    for base in &baseline.columns {
        let over = config.features.get(&base.name);
        if over.and_then(|o| o.ignore).unwrap_or(false) {
            continue;
        }
        let method = over.and_then(|o| o.method).unwrap_or(config.method);
        let threshold = over.and_then(|o| o.threshold).unwrap_or(config.threshold);
        let report = match sample.column(&base.name) {
            None => FeatureReport {
                feature: base.name.clone(),
                method,
                statistic: f64::NAN,
                threshold,
                drifted: true,
                sample_count: 0,
                note: Some("column is missing from the sample".into()),
            },
            Some(data) => feature_drift(base, data, method, threshold),
        };
        features.push(report);
    }
    DriftReport {
        drifted: features.iter().any(|f| f.drifted),
        features,
    }
}

/// Compares one column of new data with its baseline profile.
pub fn feature_drift(
    base: &ColumnProfile,
    data: &ColumnData,
    method: DriftMethod,
    threshold: f64,
) -> FeatureReport {
    let mut note = None;
    let (method, statistic, sample_count) = match &base.stats {
        ColumnStats::Numeric {
            std,
            quantiles,
            histogram,
            ..
        } => {
            let mut values: Vec<f64> = (0..data.len())
                .map(|i| data.f64_at(i))
                .filter(|x| !x.is_nan())
                .collect();
            values.sort_unstable_by(f64::total_cmp);
            let n = values.len() as u64;
            let stat = if values.is_empty() || quantiles.is_empty() {
                note = Some("no values to compare".to_string());
                f64::NAN
            } else {
                match method {
                    DriftMethod::Psi => {
                        let (e, a) = binned(histogram, &values);
                        psi(&e, &a)
                    }
                    DriftMethod::JensenShannon => {
                        let (e, a) = binned(histogram, &values);
                        js_distance(&e, &a)
                    }
                    DriftMethod::ChiSquared => {
                        let expected: Vec<f64> =
                            histogram.counts.iter().map(|&c| c as f64).collect();
                        let observed: Vec<f64> = histogram
                            .count(values.iter().copied())
                            .into_iter()
                            .map(|c| c as f64)
                            .collect();
                        chi_squared_p(&expected, &observed)
                    }
                    DriftMethod::Ks => ks_vs_quantiles(quantiles, &values),
                    DriftMethod::Wasserstein => {
                        let w = wasserstein_vs_quantiles(quantiles, &values);
                        if *std > 0.0 { w / std } else { w }
                    }
                }
            };
            (method, stat, n)
        }
        ColumnStats::Categorical {
            frequencies, other, ..
        } => {
            let method = match method {
                DriftMethod::Ks | DriftMethod::Wasserstein => {
                    note = Some(format!(
                        "{} needs numbers; used jensen_shannon for this categorical feature",
                        method_name(method)
                    ));
                    DriftMethod::JensenShannon
                }
                m => m,
            };
            // Categories: the baseline's, then "other" (unlisted or new values).
            let index: BTreeMap<&str, usize> = frequencies
                .keys()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect();
            let k = frequencies.len() + 1;
            let mut expected: Vec<f64> = frequencies.values().map(|&c| c as f64).collect();
            expected.push(*other as f64);
            let mut observed = vec![0.0; k];
            let mut n = 0u64;
            for i in 0..data.len() {
                if let Some(v) = data.string_at(i) {
                    n += 1;
                    observed[index.get(v.as_str()).copied().unwrap_or(k - 1)] += 1.0;
                }
            }
            let stat = if n == 0 {
                note = Some("no values to compare".to_string());
                f64::NAN
            } else {
                match method {
                    DriftMethod::Psi => psi(&normalise(&expected), &normalise(&observed)),
                    DriftMethod::ChiSquared => chi_squared_p(&expected, &observed),
                    _ => js_distance(&normalise(&expected), &normalise(&observed)),
                }
            };
            (method, stat, n)
        }
    };
    let drifted = if statistic.is_nan() {
        false
    } else if method == DriftMethod::ChiSquared {
        statistic < threshold
    } else {
        statistic > threshold
    };
    FeatureReport {
        feature: base.name.clone(),
        method,
        statistic,
        threshold,
        drifted,
        sample_count,
        note,
    }
}

fn normalise(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    if total == 0.0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|c| c / total).collect()
}

/// Baseline and sample proportions over the baseline histogram's bins.
fn binned(h: &Histogram, sorted: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let e: Vec<f64> = h.counts.iter().map(|&c| c as f64).collect();
    let a: Vec<f64> = h
        .count(sorted.iter().copied())
        .into_iter()
        .map(|c| c as f64)
        .collect();
    (normalise(&e), normalise(&a))
}

/// Population stability index of proportions `actual` against `expected`.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    const FLOOR: f64 = 1e-4;
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(FLOOR), a.max(FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Jensen–Shannon distance (square root of the divergence, base 2; between 0 and 1).
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).max(0.0).sqrt()
}

/// p-value of the chi-squared goodness-of-fit test of `observed` counts against the
/// proportions of `expected` counts (smoothed by +0.5 per cell).
pub fn chi_squared_p(expected: &[f64], observed: &[f64]) -> f64 {
    let n_obs: f64 = observed.iter().sum();
    let smoothed: Vec<f64> = expected.iter().map(|e| e + 0.5).collect();
    let total: f64 = smoothed.iter().sum();
    // Cells empty in both are not evidence of anything.
    let cells: Vec<(f64, f64)> = smoothed
        .iter()
        .zip(observed)
        .zip(expected)
        .filter(|((_, o), e)| **o > 0.0 || **e > 0.0)
        .map(|((s, o), _)| (s / total * n_obs, *o))
        .collect();
    if cells.len() < 2 || n_obs == 0.0 {
        return 1.0;
    }
    let stat: f64 = cells.iter().map(|(e, o)| (o - e) * (o - e) / e).sum();
    chi2_sf(stat, (cells.len() - 1) as f64)
}

/// The baseline CDF at `x` from its percentiles (piecewise linear, right-continuous at ties).
fn cdf_from_quantiles(q: &[f64], x: f64) -> f64 {
    let last = q.len() - 1;
    if x < q[0] {
        return 0.0;
    }
    if x >= q[last] {
        return 1.0;
    }
    // Largest i with q[i] <= x.
    let i = q.partition_point(|&v| v <= x) - 1;
    let frac = if q[i + 1] > q[i] {
        (x - q[i]) / (q[i + 1] - q[i])
    } else {
        0.0
    };
    (i as f64 + frac) / last as f64
}

/// Kolmogorov–Smirnov statistic of a sorted sample against the baseline percentiles.
pub fn ks_vs_quantiles(quantiles: &[f64], sorted: &[f64]) -> f64 {
    let n = sorted.len() as f64;
    let mut d: f64 = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let x = sorted[i];
        let mut j = i;
        while j < sorted.len() && sorted[j] == x {
            j += 1;
        }
        let f = cdf_from_quantiles(quantiles, x);
        // Just below x (the baseline CDF is continuous between distinct percentiles).
        let f_left = cdf_from_quantiles(quantiles, x - x.abs() * 1e-12 - 1e-300);
        d = d
            .max((j as f64 / n - f).abs())
            .max((i as f64 / n - f_left).abs());
        i = j;
    }
    // Also where the baseline jumps or bends.
    for &x in quantiles {
        let fs = sorted.partition_point(|&v| v <= x) as f64 / n;
        d = d.max((fs - cdf_from_quantiles(quantiles, x)).abs());
    }
    d
}

/// Wasserstein-1 distance between the baseline (percentiles) and a sorted sample.
pub fn wasserstein_vs_quantiles(quantiles: &[f64], sorted: &[f64]) -> f64 {
    const STEPS: usize = 1000;
    let mut total = 0.0;
    for k in 0..STEPS {
        let p = (k as f64 + 0.5) / STEPS as f64;
        let qb = quantile_sorted(quantiles, p);
        let qs = quantile_sorted(sorted, p);
        total += (qb - qs).abs();
    }
    total / STEPS as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::profile;
    use crate::rng::Rng;
    use mlctl_spec::FeatureDrift;

    fn normal_table(n: usize, shift: f64, seed: u64, cats: &[&str]) -> Table {
        let mut r = Rng::new(seed);
        let x: Vec<f64> = (0..n).map(|_| r.normal() + shift).collect();
        let c: Vec<Option<String>> = (0..n)
            .map(|_| Some(cats[r.index(cats.len())].to_string()))
            .collect();
        Table::from_columns([("x", ColumnData::Float(x)), ("c", ColumnData::Str(c))]).unwrap()
    }

    fn config(method: DriftMethod, threshold: f64) -> Drift {
        Drift {
            method,
            threshold,
            features: BTreeMap::new(),
        }
    }

    #[test]
    fn same_distribution_does_not_drift_shifted_one_does() {
        let base = profile(&normal_table(5000, 0.0, 1, &["a", "b"]));
        let same = normal_table(2000, 0.0, 2, &["a", "b"]);
        let moved = normal_table(2000, 1.0, 3, &["a", "b", "c"]);
        for (method, threshold) in [
            (DriftMethod::Psi, 0.2),
            (DriftMethod::Ks, 0.1),
            (DriftMethod::Wasserstein, 0.3),
            (DriftMethod::JensenShannon, 0.1),
            (DriftMethod::ChiSquared, 0.01),
        ] {
            let r = drift(&base, &same, &config(method, threshold));
            assert!(!r.drifted, "{method:?} on same data:\n{r}");
            let r = drift(&base, &moved, &config(method, threshold));
            assert!(r.features[0].drifted, "{method:?} on shifted data:\n{r}");
            assert!(
                r.features[1].drifted,
                "{method:?} with a new category:\n{r}"
            );
        }
    }

    #[test]
    fn ks_and_wasserstein_match_their_definitions() {
        let base = profile(&normal_table(20000, 0.0, 1, &["a"]));
        let moved = normal_table(20000, 0.5, 2, &["a"]);
        let r = drift(&base, &moved, &config(DriftMethod::Ks, 0.1));
        // KS between N(0,1) and N(0.5,1) is 2*Phi(0.25)-1 = 0.1974.
        assert!((r.features[0].statistic - 0.1974).abs() < 0.02, "{r}");
        let r = drift(&base, &moved, &config(DriftMethod::Wasserstein, 0.1));
        // W1 between N(0,1) and N(0.5,1) is 0.5 (std 1).
        assert!((r.features[0].statistic - 0.5).abs() < 0.05, "{r}");
        assert_eq!(r.features[1].method, DriftMethod::JensenShannon);
        assert!(r.features[1].note.is_some());
    }

    #[test]
    fn overrides_ignore_and_missing_columns() {
        let base = profile(&normal_table(1000, 0.0, 1, &["a"]));
        let mut cfg = config(DriftMethod::Psi, 0.2);
        cfg.features.insert(
            "c".into(),
            FeatureDrift {
                method: None,
                threshold: None,
                ignore: Some(true),
            },
        );
        let only_c = normal_table(100, 0.0, 1, &["a"]).without("x");
        let r = drift(&base, &only_c, &cfg);
        assert_eq!(r.features.len(), 1);
        assert!(r.drifted);
        assert_eq!(
            r.features[0].note.as_deref(),
            Some("column is missing from the sample")
        );
        assert!(r.to_string().contains("1 of 1 features drifted"));
    }
}
