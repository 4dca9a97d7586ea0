//! The data a chart of one feature needs, stored with every [`super::FeatureResult`]: the
//! baseline's and the live window's proportions over the same bins, so any stored result can
//! be drawn later (and drift over time comes from the history alone).
//!
//! - A numeric feature uses the baseline histogram's bins (`Histogram` of its profile, 20
//!   equal-width bins between the baseline's min and max). A live value outside that range is
//!   not folded into an edge bin: it counts in `below` or `above`, so a shift past the
//!   baseline's range shows as such.
//! - A categorical feature uses the baseline's [`MAX_BINS`] - 1 most frequent categories;
//!   the rest of the baseline, and every live value not among them (one the baseline never
//!   had included), is `other`.
//!
//! Proportions are of the values present (missing ones left out), rounded to 6 decimals.

use mlctl_ml::drift::LiveColumn;
use mlctl_ml::profile::{ColumnProfile, ColumnStats, Histogram};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Most bins of a chart (`other`, `below` and `above` not counted).
pub const MAX_BINS: usize = 24;

/// A feature's baseline and live proportions over the same bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Bins {
    /// Bin `i` holds `edges[i] <= x < edges[i + 1]`, the last one its upper edge too.
    #[serde(rename_all = "camelCase")]
    Numeric {
        /// `bins + 1` increasing edges (the baseline's min to its max).
        edges: Vec<f64>,
        /// The baseline's proportion in each bin.
        baseline: Vec<f64>,
        /// The live window's proportion in each bin.
        live: Vec<f64>,
        /// The live proportion below the baseline's min (the baseline has none there).
        below: f64,
        /// The live proportion above the baseline's max.
        above: f64,
    },
    /// Categories in decreasing baseline frequency.
    #[serde(rename_all = "camelCase")]
    Categorical {
        /// The baseline's most frequent categories.
        categories: Vec<String>,
        /// The baseline's proportion of each.
        baseline: Vec<f64>,
        /// The live window's proportion of each.
        live: Vec<f64>,
        /// The baseline's proportion of every other value.
        baseline_other: f64,
        /// The live proportion of every other value (new ones included).
        live_other: f64,
    },
}

/// The bins of one feature: its baseline profile against the live column. `None` when the
/// baseline has nothing to bin (no values).
pub fn bins_of(base: &ColumnProfile, live: Option<LiveColumn<'_>>) -> Option<Bins> {
    match &base.stats {
        ColumnStats::Numeric { histogram, .. } => numeric(histogram, live),
        ColumnStats::Categorical {
            frequencies, other, ..
        } => {
            let mut by_freq: Vec<(&String, u64)> =
                frequencies.iter().map(|(k, v)| (k, *v)).collect();
            if by_freq.is_empty() && *other == 0 {
                return None;
            }
            by_freq.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let kept = by_freq.len().min(MAX_BINS - 1);
            let base_total = (by_freq.iter().map(|(_, c)| c).sum::<u64>() + other) as f64;
            let baseline_other =
                (by_freq[kept..].iter().map(|(_, c)| c).sum::<u64>() + other) as f64;
            let index: HashMap<&str, usize> = by_freq[..kept]
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.as_str(), i))
                .collect();
            let mut counts = vec![0u64; kept + 1];
            if let Some(LiveColumn::Categorical(live)) = live {
                for (v, c) in live {
                    counts[index.get(v.as_str()).copied().unwrap_or(kept)] += c;
                }
            }
            let live_total = counts.iter().sum::<u64>() as f64;
            let live_other = counts.pop().unwrap_or(0) as f64;
            Some(Bins::Categorical {
                categories: by_freq[..kept].iter().map(|(k, _)| (*k).clone()).collect(),
                baseline: by_freq[..kept]
                    .iter()
                    .map(|(_, c)| share(*c as f64, base_total))
                    .collect(),
                live: counts
                    .iter()
                    .map(|c| share(*c as f64, live_total))
                    .collect(),
                baseline_other: share(baseline_other, base_total),
                live_other: share(live_other, live_total),
            })
        }
    }
}

fn numeric(histogram: &Histogram, live: Option<LiveColumn<'_>>) -> Option<Bins> {
    let (edges, base_counts) = merged(histogram)?;
    let (lo, hi) = (edges[0], edges[edges.len() - 1]);
    let over = Histogram {
        edges: edges.clone(),
        counts: base_counts.clone(),
    };
    let mut counts = vec![0u64; base_counts.len()];
    let (mut below, mut above) = (0u64, 0u64);
    if let Some(LiveColumn::Numeric(live)) = live {
        for &x in live {
            if x < lo {
                below += 1;
            } else if x > hi {
                above += 1;
            } else {
                counts[over.bin_of(x)] += 1;
            }
        }
    }
    let base_total = base_counts.iter().sum::<u64>() as f64;
    let live_total = (counts.iter().sum::<u64>() + below + above) as f64;
    Some(Bins::Numeric {
        baseline: base_counts
            .iter()
            .map(|c| share(*c as f64, base_total))
            .collect(),
        live: counts
            .iter()
            .map(|c| share(*c as f64, live_total))
            .collect(),
        below: share(below as f64, live_total),
        above: share(above as f64, live_total),
        edges,
    })
}

/// The histogram's edges and counts, adjacent bins merged so there are at most [`MAX_BINS`];
/// `None` for an empty or malformed histogram.
fn merged(h: &Histogram) -> Option<(Vec<f64>, Vec<u64>)> {
    let bins = h.counts.len();
    if bins == 0 || h.edges.len() != bins + 1 || h.edges.iter().any(|e| !e.is_finite()) {
        return None;
    }
    let per = bins.div_ceil(MAX_BINS);
    let counts = h.counts.chunks(per).map(|c| c.iter().sum()).collect();
    let mut edges: Vec<f64> = h.edges.iter().step_by(per).copied().collect();
    if !bins.is_multiple_of(per) {
        edges.push(h.edges[bins]);
    }
    Some((edges, counts))
}

fn share(count: f64, total: f64) -> f64 {
    if total > 0.0 {
        (count / total * 1e6).round() / 1e6
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlctl_ml::drift::{Features, LiveSample};
    use mlctl_ml::profile::{Profile, profile_column};
    use mlctl_ml::table::{ColumnData, Table};

    /// The bins of `base` against a live column of its name.
    fn bins(base: &ColumnProfile, live: &ColumnData) -> Option<Bins> {
        let profile = Profile {
            rows: base.count,
            columns: vec![base.clone()],
        };
        let mut sample = LiveSample::new(&profile, Features::All);
        sample.push_table(&Table::from_columns([(base.name.as_str(), live.clone())]).unwrap());
        bins_of(base, sample.column(&base.name))
    }

    fn floats(v: &[f64]) -> ColumnData {
        ColumnData::Float(v.to_vec())
    }

    fn strs(v: &[&str]) -> ColumnData {
        ColumnData::Str(v.iter().map(|s| Some(s.to_string())).collect())
    }

    #[test]
    fn a_numeric_feature_is_binned_over_the_baseline_histogram_with_outside_values_apart() {
        let base: Vec<f64> = (0..=100).map(f64::from).collect();
        let base = profile_column("x", &floats(&base));
        // Two values inside, one below the baseline's min, one above its max, one missing.
        let live = floats(&[0.0, 100.0, -5.0, 250.0, f64::NAN]);
        let Some(Bins::Numeric {
            edges,
            baseline,
            live,
            below,
            above,
        }) = bins(&base, &live)
        else {
            panic!("a numeric feature has numeric bins");
        };
        assert_eq!(edges.len(), 21);
        assert_eq!((edges[0], edges[20]), (0.0, 100.0));
        assert_eq!(baseline.len(), 20);
        assert!((baseline.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        assert_eq!((below, above), (0.25, 0.25));
        assert_eq!(live[0], 0.25, "0 is in the first bin");
        assert_eq!(live[19], 0.25, "the last bin holds its upper edge");
    }

    #[test]
    fn a_categorical_feature_keeps_the_most_frequent_categories_and_folds_the_rest_into_other() {
        let mut values: Vec<String> = Vec::new();
        for i in 0..40 {
            // Category `c<i>` occurs 41 - i times: c0 most often.
            values.extend(std::iter::repeat_n(format!("c{i:02}"), 41 - i));
        }
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let base = profile_column("colour", &strs(&refs));
        let live = strs(&["c00", "c00", "never-seen", "c39"]);
        let Some(Bins::Categorical {
            categories,
            live,
            baseline_other,
            live_other,
            ..
        }) = bins(&base, &live)
        else {
            panic!("a categorical feature has categorical bins");
        };
        assert_eq!(categories.len(), MAX_BINS - 1);
        assert_eq!(categories[0], "c00");
        assert_eq!(live[0], 0.5);
        assert_eq!(live_other, 0.5, "a new value and a rare one are `other`");
        assert!(baseline_other > 0.0);
    }

    #[test]
    fn a_histogram_with_many_bins_is_merged_to_at_most_max_bins() {
        let h = Histogram {
            edges: (0..=50).map(f64::from).collect(),
            counts: vec![1; 50],
        };
        let (edges, counts) = merged(&h).unwrap();
        assert!(counts.len() <= MAX_BINS);
        assert_eq!(edges.len(), counts.len() + 1);
        assert_eq!(counts.iter().sum::<u64>(), 50);
        assert_eq!(edges[edges.len() - 1], 50.0);
    }

    #[test]
    fn stored_bins_round_trip_through_json() {
        let base = profile_column("x", &floats(&[1.0, 2.0, 3.0]));
        let bins = bins(&base, &floats(&[2.0])).unwrap();
        let json = serde_json::to_value(&bins).unwrap();
        assert_eq!(json["kind"], "numeric");
        assert_eq!(serde_json::from_value::<Bins>(json).unwrap(), bins);
    }
}
