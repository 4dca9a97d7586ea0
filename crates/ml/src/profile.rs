//! Per-column statistics of a table: the dataset summary users read, and the baseline that
//! [`crate::drift`] compares live data with.
//!
//! Numeric columns (float, int) get count, missing, mean, std, min, max, the 101 percentiles
//! (0, 1, ..., 100, linear interpolation like numpy's default) and a histogram of
//! [`HISTOGRAM_BINS`] equal-width bins between min and max, their number of distinct values,
//! and the count of each value when there are at most [`MAX_LEVELS`] (so drift can compare a
//! column of few values value by value). Bool and text columns get category
//! frequencies (the [`MAX_CATEGORIES`] most frequent; the rest are summed in `other`).

use crate::table::{ColumnData, Table};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Bins of a numeric histogram.
pub const HISTOGRAM_BINS: usize = 20;
/// Most distinct values of a numeric column whose counts are kept (Evidently compares a
/// numeric column with at most 20 distinct reference values value by value).
pub const MAX_LEVELS: usize = 20;
/// Most categories listed per column.
pub const MAX_CATEGORIES: usize = 1000;

/// The profile of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Rows profiled.
    pub rows: u64,
    /// One entry per column, in table order.
    pub columns: Vec<ColumnProfile>,
}

impl Profile {
    /// The profile of column `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The profile of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// Column name.
    pub name: String,
    /// Present (non-missing) values.
    pub count: u64,
    /// Missing values.
    pub missing: u64,
    /// Type-specific statistics.
    #[serde(flatten)]
    pub stats: ColumnStats,
}

/// Type-specific statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ColumnStats {
    /// A numeric column (all fields NaN, i.e. `null` in JSON, when no value is present).
    Numeric {
        /// Mean.
        mean: f64,
        /// Sample standard deviation (n - 1).
        std: f64,
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
        /// Percentiles 0 to 100 (101 values).
        quantiles: Vec<f64>,
        /// Equal-width histogram between min and max.
        histogram: Histogram,
        /// Number of distinct values; `None` in a profile stored before mlctl counted them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        distinct: Option<u64>,
        /// Each value and its count, in increasing order, when there are at most
        /// [`MAX_LEVELS`]; empty otherwise.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        levels: Vec<Level>,
    },
    /// A categorical (text or bool) column.
    Categorical {
        /// Number of distinct values.
        distinct: u64,
        /// Count per value (at most [`MAX_CATEGORIES`] values).
        frequencies: BTreeMap<String, u64>,
        /// Count of values not listed in `frequencies`.
        other: u64,
    },
}

/// One value of a numeric column with few values, and how often it occurs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// The value.
    pub value: f64,
    /// Rows holding it.
    pub count: u64,
}

/// A histogram with fixed bin edges: bin `i` holds `edges[i] <= x < edges[i + 1]` (the last bin
/// includes its upper edge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// `bins + 1` increasing edges.
    pub edges: Vec<f64>,
    /// Count per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// The bin of `x`, clamping values outside the edges into the first or last bin (so a
    /// histogram of new data over a baseline's edges counts every value).
    pub fn bin_of(&self, x: f64) -> usize {
        let bins = self.counts.len();
        if bins <= 1 {
            return 0;
        }
        // Edges are few (21): a partition point search is enough.
        let i = self.edges[1..bins].partition_point(|&e| e <= x);
        i.min(bins - 1)
    }

    /// Counts of `values` (NaN skipped) over these edges.
    pub fn count(&self, values: impl IntoIterator<Item = f64>) -> Vec<u64> {
        let mut counts = vec![0u64; self.counts.len()];
        for x in values {
            if !x.is_nan() {
                counts[self.bin_of(x)] += 1;
            }
        }
        counts
    }
}

/// The profile of every column of `table`.
pub fn profile(table: &Table) -> Profile {
    use rayon::prelude::*;
    let cols: Vec<(&str, &ColumnData)> = table.columns().collect();
    Profile {
        rows: table.n_rows() as u64,
        columns: cols
            .par_iter()
            .map(|(name, data)| profile_column(name, data))
            .collect(),
    }
}

/// The profile of one column.
pub fn profile_column(name: &str, data: &ColumnData) -> ColumnProfile {
    match data {
        ColumnData::Float(_) | ColumnData::Int(_) => {
            let mut values: Vec<f64> = (0..data.len())
                .map(|i| data.f64_at(i))
                .filter(|x| !x.is_nan())
                .collect();
            let missing = (data.len() - values.len()) as u64;
            ColumnProfile {
                name: name.to_string(),
                count: values.len() as u64,
                missing,
                stats: numeric_stats(&mut values),
            }
        }
        ColumnData::Bool(_) | ColumnData::Str(_) => {
            let mut counts: HashMap<String, u64, rustc_hash::FxBuildHasher> = HashMap::default();
            let mut missing = 0u64;
            match data {
                // Text cells counted by reference: a String is made per category, not per row.
                ColumnData::Str(v) => {
                    for cell in v {
                        match cell {
                            Some(s) => match counts.get_mut(s.as_str()) {
                                Some(n) => *n += 1,
                                None => {
                                    counts.insert(s.clone(), 1);
                                }
                            },
                            None => missing += 1,
                        }
                    }
                }
                _ => {
                    for i in 0..data.len() {
                        match data.string_at(i) {
                            Some(v) => *counts.entry(v).or_default() += 1,
                            None => missing += 1,
                        }
                    }
                }
            }
            let distinct = counts.len() as u64;
            let count: u64 = counts.values().sum();
            let mut by_freq: Vec<(String, u64)> = counts.into_iter().collect();
            by_freq.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let other: u64 = by_freq.iter().skip(MAX_CATEGORIES).map(|(_, c)| c).sum();
            by_freq.truncate(MAX_CATEGORIES);
            ColumnProfile {
                name: name.to_string(),
                count,
                missing,
                stats: ColumnStats::Categorical {
                    distinct,
                    frequencies: by_freq.into_iter().collect(),
                    other,
                },
            }
        }
    }
}

/// The `q`-quantile (0..=1) of sorted values, linear interpolation (numpy's default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

fn numeric_stats(values: &mut [f64]) -> ColumnStats {
    let n = values.len();
    if n == 0 {
        return ColumnStats::Numeric {
            mean: f64::NAN,
            std: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
            quantiles: Vec::new(),
            histogram: Histogram {
                edges: Vec::new(),
                counts: Vec::new(),
            },
            distinct: Some(0),
            levels: Vec::new(),
        };
    }
    crate::sort::sort_floats(values);
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let (min, max) = (values[0], values[n - 1]);
    let quantiles = (0..=100)
        .map(|p| quantile_sorted(values, p as f64 / 100.0))
        .collect();
    let edges: Vec<f64> = if max > min {
        (0..=HISTOGRAM_BINS)
            .map(|i| min + (max - min) * i as f64 / HISTOGRAM_BINS as f64)
            .collect()
    } else {
        vec![min, max]
    };
    let mut histogram = Histogram {
        counts: vec![0; edges.len() - 1],
        edges,
    };
    histogram.counts = histogram.count(values.iter().copied());
    let (distinct, levels) = levels_of_sorted(values, MAX_LEVELS);
    ColumnStats::Numeric {
        mean,
        std: var.sqrt(),
        min,
        max,
        quantiles,
        histogram,
        distinct: Some(distinct),
        levels,
    }
}

/// The number of distinct values of sorted, NaN-free `values`, and each value with its count
/// when there are at most `max_levels` (else no levels).
pub fn levels_of_sorted(values: &[f64], max_levels: usize) -> (u64, Vec<Level>) {
    let mut distinct = 0u64;
    let mut levels = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let x = values[i];
        let run = values[i..].partition_point(|&v| v == x);
        distinct += 1;
        if levels.len() <= max_levels {
            levels.push(Level {
                value: x,
                count: run as u64,
            });
        }
        i += run;
    }
    if levels.len() > max_levels {
        levels.clear();
    }
    (distinct, levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_profile() {
        let t = Table::from_columns([(
            "x",
            ColumnData::Float((1..=100).map(f64::from).chain([f64::NAN]).collect()),
        )])
        .unwrap();
        let p = profile(&t);
        let c = p.column("x").unwrap();
        assert_eq!((c.count, c.missing), (100, 1));
        let ColumnStats::Numeric {
            mean,
            std,
            min,
            max,
            quantiles,
            histogram,
            distinct,
            levels,
        } = &c.stats
        else {
            panic!("not numeric")
        };
        assert_eq!((*mean, *min, *max), (50.5, 1.0, 100.0));
        assert!((std - 29.011491975882016).abs() < 1e-9);
        assert_eq!(quantiles.len(), 101);
        assert!((quantiles[50] - 50.5).abs() < 1e-12);
        assert_eq!(histogram.counts.len(), HISTOGRAM_BINS);
        assert_eq!(histogram.counts.iter().sum::<u64>(), 100);
        assert_eq!(histogram.counts[0], 5);
        // 100 distinct values: too many to keep each one's count.
        assert_eq!((*distinct, levels.len()), (Some(100), 0));
        // Serializes and reads back (the drift baseline is stored as JSON).
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"kind\":\"numeric\""), "{json}");
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn a_numeric_column_of_few_values_keeps_each_count() {
        let t = Table::from_columns([(
            "x",
            ColumnData::Int(vec![Some(3), Some(1), Some(3), None, Some(3)]),
        )])
        .unwrap();
        let ColumnStats::Numeric {
            distinct, levels, ..
        } = &profile(&t).columns[0].stats
        else {
            panic!("not numeric")
        };
        assert_eq!(*distinct, Some(2));
        assert_eq!(
            levels,
            &[
                Level {
                    value: 1.0,
                    count: 1
                },
                Level {
                    value: 3.0,
                    count: 3
                }
            ]
        );
    }

    /// A baseline stored before mlctl counted distinct values still reads.
    #[test]
    fn a_profile_without_distinct_counts_reads() {
        let json = r#"{"rows":1,"columns":[{"name":"x","count":1,"missing":0,"kind":"numeric","mean":1.0,"std":0.0,"min":1.0,"max":1.0,"quantiles":[1.0],"histogram":{"edges":[1.0,1.0],"counts":[1]}}]}"#;
        let p: Profile = serde_json::from_str(json).unwrap();
        assert!(matches!(
            p.columns[0].stats,
            ColumnStats::Numeric { distinct: None, .. }
        ));
    }

    #[test]
    fn categorical_profile() {
        let t = Table::from_columns([(
            "c",
            ColumnData::Str(vec![
                Some("a".into()),
                Some("b".into()),
                Some("a".into()),
                None,
            ]),
        )])
        .unwrap();
        let c = profile(&t).columns.remove(0);
        assert_eq!((c.count, c.missing), (3, 1));
        match c.stats {
            ColumnStats::Categorical {
                distinct,
                frequencies,
                other,
            } => {
                assert_eq!(distinct, 2);
                assert_eq!(frequencies["a"], 2);
                assert_eq!(other, 0);
            }
            _ => panic!("not categorical"),
        }
    }

    #[test]
    fn histogram_clamps_outside_values() {
        let h = Histogram {
            edges: vec![0.0, 1.0, 2.0],
            counts: vec![0, 0],
        };
        assert_eq!(h.count([-5.0, 0.5, 1.0, 2.0, 9.0, f64::NAN]), vec![2, 3]);
    }
}
