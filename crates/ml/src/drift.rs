//! Drift: compares a baseline [`Profile`] with a sample of new data, feature by feature, and
//! the dataset as a whole.
//!
//! | method | numeric features | categorical features | drifted when |
//! |---|---|---|---|
//! | `ks` | two-sample KS p-value; F_base from the 101 percentiles (exact from the value counts of a column of few values), n = baseline rows | falls back to `chi_squared` | p-value < threshold |
//! | `chi_squared` | chi-squared test p-value over the bins | over the categories | p-value < threshold |
//! | `z_test` | two-proportion Z-test p-value (at most 2 values) | same; more values fall back to `chi_squared` | p-value < threshold |
//! | `wasserstein` | W1 between quantile functions / baseline std (population, >= 0.001) | falls back to `jensen_shannon` | statistic >= threshold |
//! | `jensen_shannon` | JS distance (natural log, 0..0.833) over the bins | over the categories | statistic >= threshold |
//! | `psi` | over the bins | over the categories | statistic >= threshold |
//! | `l_infinity` | max \|p_base - p_sample\| over the bins | over the categories | statistic >= threshold |
//!
//! "The bins" of a numeric feature are its values when the baseline has at most
//! [`MAX_LEVELS`](crate::profile::MAX_LEVELS) distinct ones (as Evidently does), else the
//! baseline histogram's bins (values outside its range count in the first or last). A
//! value the baseline never had is its own category.
//!
//! **Defaults.** A feature with no method configured gets Evidently's DataDriftPreset choice
//! ([`DriftMethod::default_for`]: by baseline rows, <= 1000 tests, > 1000 distances; a numeric
//! feature with <= 5 distinct values, baseline and sample together, counts as categorical;
//! a binary one gets `z_test` in small data) with that method's default threshold (0.05 for
//! tests, 0.1 for distances). The dataset drifts when at least `share` (default
//! [`DEFAULT_SHARE`]) of the checked features drift. The rules are on `docs/drift.md`,
//! verified against <https://docs-old.evidentlyai.com/reference/data-drift-algorithm>.
//!
//! Proportions are floored at 1e-4 for PSI, and a category the baseline never had is
//! expected at half a baseline row by the chi-squared test, so neither gives infinities (a
//! stray new value is not drift; many are).
//! Missing values are left out of every statistic. Cost: one sort of each sampled numeric
//! column; no allocation per row (features are checked in parallel).
//!
//! **Streaming.** The statistics need of a sample only its numeric values and its category
//! counts: a [`LiveSample`] accumulates those from chunks of a file (or single values) and
//! [`drift_sample`] judges it; [`drift_features`] is that over one table, so both give the
//! same report.

use crate::profile::{ColumnProfile, ColumnStats, Histogram, Level, Profile, quantile_sorted};
use crate::stats::{chi2_sf, ks_two_sample_p, normal_two_sided_p};
use crate::table::{ColumnData, Table, format_f64};
use mlctl_spec::{Drift, DriftMethod, FeatureKind};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

/// The share of checked features that must drift for the dataset to drift when `Drift.share`
/// is unset (Evidently's `drift_share`).
pub const DEFAULT_SHARE: f64 = 0.5;

/// Which columns of the baseline are features to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Features<'a> {
    /// Every baseline column.
    All,
    /// Only these (a name the baseline lacks is reported as drifted, with a note).
    Only(&'a [&'a str]),
    /// Every baseline column but these (the label, ids).
    Except(&'a [&'a str]),
}

/// The drift check of one feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[must_use]
pub struct FeatureReport {
    /// Column name.
    pub feature: String,
    /// The method used: the configured one, the default for this feature when none is, or its
    /// fallback (see `note`).
    pub method: DriftMethod,
    /// The statistic: KS D, the chi-squared statistic, Z, or the distance. NaN (`null`) when
    /// it could not be computed.
    pub statistic: f64,
    /// The p-value of a test (`ks`, `chi_squared`, `z_test`), compared with the threshold;
    /// `None` for a distance, whose `statistic` is compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
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

impl FeatureReport {
    /// The value compared with the threshold: the p-value of a test, else the statistic.
    pub fn score(&self) -> f64 {
        self.p_value.unwrap_or(self.statistic)
    }
}

/// The drift check of a sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[must_use]
pub struct DriftReport {
    /// Whether at least `share` of the checked features drifted (false with no features).
    pub dataset_drifted: bool,
    /// Drifted features / checked features (0 with no features).
    pub drifted_share: f64,
    /// The share it was compared with.
    pub share: f64,
    /// One entry per checked feature, in baseline order (then names of `Features::Only`
    /// missing from the baseline).
    pub features: Vec<FeatureReport>,
}

impl DriftReport {
    /// The features that drifted.
    pub fn drifted_features(&self) -> impl Iterator<Item = &FeatureReport> {
        self.features.iter().filter(|r| r.drifted)
    }
}

impl fmt::Display for DriftReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.drifted_features().count();
        writeln!(
            f,
            "{}: {n} of {} features drifted ({:.0}%; the dataset drifts at {:.0}%)",
            if self.dataset_drifted {
                "dataset drifted"
            } else {
                "no dataset drift"
            },
            self.features.len(),
            self.drifted_share * 100.0,
            self.share * 100.0
        )?;
        for r in &self.features {
            write!(
                f,
                "  {} {}: {} ",
                if r.drifted { "!" } else { " " },
                r.feature,
                r.method.name()
            )?;
            match r.p_value {
                Some(p) => write!(
                    f,
                    "p-value = {p:.4} (drift if < {}), statistic {:.4}",
                    r.threshold, r.statistic
                )?,
                None => write!(f, "= {:.4} (drift if >= {})", r.statistic, r.threshold)?,
            }
            if let Some(note) = &r.note {
                write!(f, " [{note}]")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The two-sided p-value of a two-sample KS statistic `d` between `n1` and `n2` values
/// (asymptotic, as scipy's `ks_2samp(method='asymp')`; see the crate's `stats`).
pub fn ks_p_value(d: f64, n1: u64, n2: u64) -> f64 {
    ks_two_sample_p(d, n1, n2)
}

/// The name of a method as in YAML.
pub fn method_name(m: DriftMethod) -> &'static str {
    m.name()
}

/// Compares `sample` with `baseline` for every baseline column not ignored in `config`
/// ([`drift_features`] with [`Features::All`]).
pub fn drift(baseline: &Profile, sample: &Table, config: &Drift) -> DriftReport {
    drift_features(baseline, sample, config, Features::All)
}

/// Compares `sample` with `baseline` for the baseline columns `features` selects and `config`
/// does not ignore. A feature absent from the sample (or, named in `Features::Only`, from the
/// baseline) is reported as drifted with a note.
///
/// The same as pushing `sample` into a [`LiveSample`] and calling [`drift_sample`], which is
/// what it does.
pub fn drift_features(
    baseline: &Profile,
    sample: &Table,
    config: &Drift,
    features: Features<'_>,
) -> DriftReport {
    let mut live = LiveSample::selecting(baseline, features, |name| ignored(config, name));
    live.push_table(sample);
    drift_sample(baseline, &mut live, config)
}

/// Compares a [`LiveSample`] with `baseline` (the profile it was made from) for the features
/// it tracks that `config` does not ignore, as [`drift_features`] compares a table.
///
/// Sorts the sample's numeric values in place (cheap when they already are), so pushing more
/// rows afterwards and comparing again is allowed.
pub fn drift_sample(baseline: &Profile, sample: &mut LiveSample, config: &Drift) -> DriftReport {
    use rayon::prelude::*;
    let mut reports: Vec<FeatureReport> = sample
        .features
        .par_iter_mut()
        .filter(|f| !ignored(config, &f.name))
        .map(|live| {
            let over = config.features.get(&live.name);
            let method = over.and_then(|o| o.method).or(config.method);
            let threshold = over.and_then(|o| o.threshold).or(config
                .threshold
                .filter(|_| over.and_then(|o| o.method).is_none()));
            match baseline.column(&live.name) {
                None => missing(&live.name, method, threshold, NOT_IN_BASELINE),
                Some(_) if !live.seen => missing(
                    &live.name,
                    method,
                    threshold,
                    "column is missing from the sample",
                ),
                Some(base) => {
                    live.values.sort();
                    judge(base, &live.values, method, threshold)
                }
            }
        })
        .collect();
    for name in &sample.not_in_baseline {
        if !ignored(config, name) {
            reports.push(missing(
                name,
                config.method,
                config.threshold,
                NOT_IN_BASELINE,
            ));
        }
    }
    let share = config.share.unwrap_or(DEFAULT_SHARE);
    let drifted = reports.iter().filter(|r| r.drifted).count();
    let drifted_share = if reports.is_empty() {
        0.0
    } else {
        drifted as f64 / reports.len() as f64
    };
    DriftReport {
        dataset_drifted: !reports.is_empty() && drifted_share >= share,
        drifted_share,
        share,
        features: reports,
    }
}

const NOT_IN_BASELINE: &str = "column is missing from the baseline profile: profile the \
                               baseline dataset again with this feature";

fn ignored(config: &Drift, name: &str) -> bool {
    config
        .features
        .get(name)
        .and_then(|o| o.ignore)
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// A live sample, accumulated without its rows

/// What the drift statistics need of a sample, accumulated table by table (chunks of a file)
/// or value by value, without keeping its rows: per numeric feature its values, per
/// categorical feature the count of each value; per feature the missing cells. Memory is
/// 8 bytes per numeric value and one entry per distinct category.
///
/// Each feature is typed by the baseline profile's column, whatever the type of what is
/// pushed, with the conversions [`drift_features`] makes of a table's columns: for a
/// numeric feature text is parsed (trimmed; a cell that does not parse is missing) and
/// booleans are 1 and 0; for a categorical feature numbers count as their text (`3`, and a
/// float as [`format_f64`] writes it: `3.0`) and booleans as `true` and `false`. So chunks
/// of one file whose types were inferred differently are accumulated alike, as long as the
/// cells convert alike (an integer column read as float counts `3.0`, not `3`).
#[derive(Debug, Clone)]
pub struct LiveSample {
    /// The features tracked, in baseline order.
    features: Vec<LiveFeature>,
    /// Names of `Features::Only` the baseline lacks, in the order given.
    not_in_baseline: Vec<String>,
}

/// One cell pushed into a [`LiveSample`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LiveValue<'a> {
    /// A missing cell.
    Missing,
    /// A number; NaN is missing.
    Number(f64),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// Text, a category or (for a numeric feature) a number to parse.
    Text(&'a str),
}

/// The accumulated values of one feature of a [`LiveSample`] ([`LiveSample::column`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LiveColumn<'a> {
    /// A numeric feature's values, missing ones left out; sorted once [`drift_sample`] has
    /// run, else in the order pushed.
    Numeric(&'a [f64]),
    /// A categorical feature's count of each value, in the order the values were first seen.
    Categorical(&'a [(String, u64)]),
}

#[derive(Debug, Clone)]
struct LiveFeature {
    name: String,
    /// Whether a pushed table had this column, or a value of it was pushed: a feature never
    /// seen is reported as missing from the sample.
    seen: bool,
    missing: u64,
    values: LiveValues,
}

#[derive(Debug, Clone)]
enum LiveValues {
    /// The values (no NaN), in pushed order until [`LiveValues::sort`].
    Numeric(Vec<f64>),
    /// The count of each value, in the order the values were first seen (the order in which
    /// the statistics meet new categories, so sums are the same as over the rows).
    Categorical {
        index: HashMap<String, usize, rustc_hash::FxBuildHasher>,
        counts: Vec<(String, u64)>,
    },
}

impl LiveValues {
    fn of(base: &ColumnProfile) -> LiveValues {
        match base.stats {
            ColumnStats::Numeric { .. } => LiveValues::Numeric(Vec::new()),
            ColumnStats::Categorical { .. } => LiveValues::Categorical {
                index: HashMap::default(),
                counts: Vec::new(),
            },
        }
    }

    fn sort(&mut self) {
        if let LiveValues::Numeric(v) = self {
            crate::sort::sort_floats(v);
        }
    }
}

/// Counts one more `t`, a category first seen is added at the end.
#[inline]
fn count_category(
    index: &mut HashMap<String, usize, rustc_hash::FxBuildHasher>,
    counts: &mut Vec<(String, u64)>,
    t: &str,
) {
    match index.get(t) {
        Some(&i) => counts[i].1 += 1,
        None => {
            index.insert(t.to_string(), counts.len());
            counts.push((t.to_string(), 1));
        }
    }
}

impl LiveFeature {
    fn push(&mut self, value: LiveValue<'_>) {
        self.seen = true;
        match &mut self.values {
            LiveValues::Numeric(values) => {
                let x = match value {
                    LiveValue::Missing => f64::NAN,
                    LiveValue::Number(x) => x,
                    LiveValue::Int(i) => i as f64,
                    LiveValue::Bool(b) => f64::from(u8::from(b)),
                    LiveValue::Text(s) => s.trim().parse::<f64>().unwrap_or(f64::NAN),
                };
                if x.is_nan() {
                    self.missing += 1;
                } else {
                    values.push(x);
                }
            }
            LiveValues::Categorical { index, counts } => {
                let owned;
                let text = match value {
                    LiveValue::Missing => None,
                    LiveValue::Number(x) if x.is_nan() => None,
                    LiveValue::Number(x) => {
                        owned = format_f64(x);
                        Some(owned.as_str())
                    }
                    LiveValue::Int(i) => {
                        owned = i.to_string();
                        Some(owned.as_str())
                    }
                    LiveValue::Bool(b) => Some(if b { "true" } else { "false" }),
                    LiveValue::Text(s) => Some(s),
                };
                match text {
                    None => self.missing += 1,
                    Some(t) => count_category(index, counts, t),
                }
            }
        }
    }

    fn push_column(&mut self, data: &ColumnData) {
        self.seen = true;
        // The common cases without a match per cell: floats into a numeric feature, text
        // into a categorical one.
        match (data, &mut self.values) {
            (ColumnData::Float(v), LiveValues::Numeric(values)) => {
                let before = values.len();
                values.extend(v.iter().copied().filter(|x| !x.is_nan()));
                self.missing += (v.len() - (values.len() - before)) as u64;
                return;
            }
            (ColumnData::Str(v), LiveValues::Categorical { index, counts }) => {
                for s in v {
                    match s.as_deref() {
                        None => self.missing += 1,
                        Some(t) => count_category(index, counts, t),
                    }
                }
                return;
            }
            _ => {}
        }
        match data {
            ColumnData::Float(v) => v.iter().for_each(|x| self.push(LiveValue::Number(*x))),
            ColumnData::Int(v) => v
                .iter()
                .for_each(|x| self.push(x.map_or(LiveValue::Missing, LiveValue::Int))),
            ColumnData::Bool(v) => v
                .iter()
                .for_each(|b| self.push(b.map_or(LiveValue::Missing, LiveValue::Bool))),
            ColumnData::Str(v) => v
                .iter()
                .for_each(|s| self.push(s.as_deref().map_or(LiveValue::Missing, LiveValue::Text))),
        }
    }
}

impl LiveSample {
    /// An empty sample of the baseline columns `features` selects (a name of
    /// `Features::Only` the baseline lacks is reported as drifted, with a note).
    pub fn new(baseline: &Profile, features: Features<'_>) -> LiveSample {
        LiveSample::selecting(baseline, features, |_| false)
    }

    /// [`LiveSample::new`] without the features `skip` names (those the config ignores,
    /// so they are not accumulated for nothing).
    fn selecting(
        baseline: &Profile,
        features: Features<'_>,
        skip: impl Fn(&str) -> bool,
    ) -> LiveSample {
        let selected = |name: &str| match features {
            Features::All => true,
            Features::Only(names) => names.contains(&name),
            Features::Except(names) => !names.contains(&name),
        };
        let tracked = baseline
            .columns
            .iter()
            .filter(|c| selected(&c.name) && !skip(&c.name))
            .map(|c| LiveFeature {
                name: c.name.clone(),
                seen: false,
                missing: 0,
                values: LiveValues::of(c),
            })
            .collect();
        let not_in_baseline = match features {
            Features::Only(names) => names
                .iter()
                .filter(|n| baseline.column(n).is_none())
                .map(|n| n.to_string())
                .collect(),
            _ => Vec::new(),
        };
        LiveSample {
            features: tracked,
            not_in_baseline,
        }
    }

    /// The features tracked, in baseline order; [`LiveSample::push_value`] takes a position
    /// in this list.
    pub fn features(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.name.as_str())
    }

    /// The position of feature `name` among [`LiveSample::features`].
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f.name == name)
    }

    /// Adds the rows of `table`: the columns of tracked features (others are left alone; a
    /// tracked feature the table lacks stays missing from the sample unless another table
    /// or a value brings it).
    pub fn push_table(&mut self, table: &Table) {
        use rayon::prelude::*;
        self.features.par_iter_mut().for_each(|f| {
            if let Some(data) = table.column(&f.name) {
                f.push_column(data);
            }
        });
    }

    /// Adds one cell of the feature at `feature` (its position among
    /// [`LiveSample::features`]).
    ///
    /// # Panics
    /// When `feature` is not such a position.
    pub fn push_value(&mut self, feature: usize, value: LiveValue<'_>) {
        self.features[feature].push(value);
    }

    /// Marks the feature at `feature` as a column of the sample even if no value of it is
    /// ever pushed (a window of no rows still has its columns): it is then judged as a
    /// feature without values, not reported as missing from the sample.
    ///
    /// # Panics
    /// When `feature` is not a position among [`LiveSample::features`].
    pub fn mark_present(&mut self, feature: usize) {
        self.features[feature].seen = true;
    }

    /// What has been accumulated of feature `name` (`None` when it is not tracked).
    pub fn column(&self, name: &str) -> Option<LiveColumn<'_>> {
        let f = self.features.iter().find(|f| f.name == name)?;
        Some(match &f.values {
            LiveValues::Numeric(v) => LiveColumn::Numeric(v),
            LiveValues::Categorical { counts, .. } => LiveColumn::Categorical(counts),
        })
    }

    /// The cells of feature `name` pushed so far with a value (`None` when it is not tracked).
    pub fn count(&self, name: &str) -> Option<u64> {
        Some(match self.column(name)? {
            LiveColumn::Numeric(v) => v.len() as u64,
            LiveColumn::Categorical(counts) => counts.iter().map(|c| c.1).sum(),
        })
    }

    /// The missing cells of feature `name` pushed so far (`None` when it is not tracked).
    pub fn missing(&self, name: &str) -> Option<u64> {
        Some(self.features.iter().find(|f| f.name == name)?.missing)
    }
}

fn missing(
    name: &str,
    method: Option<DriftMethod>,
    threshold: Option<f64>,
    note: &str,
) -> FeatureReport {
    let method = method.unwrap_or(DriftMethod::JensenShannon);
    FeatureReport {
        feature: name.to_string(),
        method,
        statistic: f64::NAN,
        p_value: None,
        threshold: threshold.unwrap_or(method.default_threshold()),
        drifted: true,
        sample_count: 0,
        note: Some(note.into()),
    }
}

/// Compares one column of new data with its baseline profile, with `method` (default: the
/// one Evidently would choose for it) and `threshold` (default: the method's).
pub fn feature_drift(
    base: &ColumnProfile,
    data: &ColumnData,
    method: Option<DriftMethod>,
    threshold: Option<f64>,
) -> FeatureReport {
    let mut live = LiveFeature {
        name: base.name.clone(),
        seen: false,
        missing: 0,
        values: LiveValues::of(base),
    };
    live.push_column(data);
    live.values.sort();
    judge(base, &live.values, method, threshold)
}

/// [`feature_drift`] of accumulated values (numeric ones sorted).
fn judge(
    base: &ColumnProfile,
    live: &LiveValues,
    method: Option<DriftMethod>,
    threshold: Option<f64>,
) -> FeatureReport {
    let baseline_rows = base.count;
    let mut note = None;
    let (method, statistic, p_value, sample_count) = match &base.stats {
        ColumnStats::Numeric {
            std,
            quantiles,
            histogram,
            distinct,
            levels,
            ..
        } => {
            let values: &[f64] = match live {
                LiveValues::Numeric(v) => v,
                LiveValues::Categorical { .. } => &[],
            };
            let n = values.len() as u64;
            let union = match distinct {
                // Distinct values of baseline and sample together.
                Some(_) if !levels.is_empty() => levels.len() as u64 + new_values(levels, values),
                Some(d) => *d,
                // A profile stored before distinct values were counted: numeric as before.
                None => u64::MAX,
            };
            let method = method.unwrap_or_else(|| {
                DriftMethod::default_for(baseline_rows, FeatureKind::Numeric, union)
            });
            if values.is_empty() || quantiles.is_empty() {
                note = Some("no values to compare".to_string());
                (method, f64::NAN, None, n)
            } else {
                let (stat, p) = match method {
                    DriftMethod::Ks => {
                        let d = if levels.is_empty() {
                            ks_vs_quantiles(quantiles, values)
                        } else {
                            ks_vs_levels(levels, values)
                        };
                        (d, Some(ks_two_sample_p(d, baseline_rows, n)))
                    }
                    DriftMethod::Wasserstein => {
                        let w = if levels.is_empty() {
                            wasserstein_vs_quantiles(quantiles, values)
                        } else {
                            wasserstein_vs_levels(levels, values)
                        };
                        (w / population_std(*std, baseline_rows).max(0.001), None)
                    }
                    m => {
                        let (e, o) = if levels.is_empty() {
                            histogram_counts(histogram, values)
                        } else {
                            level_counts(levels, values)
                        };
                        let (stat, p, fallback) = compare_counts(m, &e, &o);
                        note = fallback;
                        (stat, p)
                    }
                };
                (method, stat, p, n)
            }
        }
        ColumnStats::Categorical {
            frequencies, other, ..
        } => {
            let counts: &[(String, u64)] = match live {
                LiveValues::Categorical { counts, .. } => counts,
                LiveValues::Numeric(_) => &[],
            };
            let (e, o, n) = category_counts(frequencies, *other, counts);
            let distinct = e
                .iter()
                .zip(&o)
                .filter(|(a, b)| **a > 0.0 || **b > 0.0)
                .count() as u64;
            let method = match method {
                Some(m @ (DriftMethod::Ks | DriftMethod::Wasserstein)) => {
                    let instead = if m == DriftMethod::Ks {
                        DriftMethod::ChiSquared
                    } else {
                        DriftMethod::JensenShannon
                    };
                    note = Some(format!(
                        "{} needs numbers; used {} for this categorical feature",
                        m.name(),
                        instead.name()
                    ));
                    instead
                }
                Some(m) => m,
                None => DriftMethod::default_for(baseline_rows, FeatureKind::Categorical, distinct),
            };
            if n == 0 || baseline_rows == 0 {
                note = Some("no values to compare".to_string());
                (method, f64::NAN, None, n)
            } else {
                let (stat, p, fallback) = compare_counts(method, &e, &o);
                note = note.or(fallback);
                (method, stat, p, n)
            }
        }
    };
    // A z_test on more than two values ran as chi_squared (see compare_counts).
    let method = match (&note, method) {
        (Some(n), DriftMethod::ZTest) if n.starts_with("z_test") => DriftMethod::ChiSquared,
        _ => method,
    };
    let threshold = threshold.unwrap_or(method.default_threshold());
    let drifted = match p_value {
        Some(p) => p < threshold,
        None => statistic >= threshold,
    };
    FeatureReport {
        feature: base.name.clone(),
        method,
        statistic,
        p_value,
        threshold,
        drifted,
        sample_count,
        note,
    }
}

/// The statistic, p-value (tests only) and a note of a method that compares counts per
/// category or bin. `expected` are baseline counts, `observed` sample counts, cell by cell.
fn compare_counts(
    method: DriftMethod,
    expected: &[f64],
    observed: &[f64],
) -> (f64, Option<f64>, Option<String>) {
    let (e, o) = (normalise(expected), normalise(observed));
    match method {
        DriftMethod::Psi => (psi(&e, &o), None, None),
        DriftMethod::JensenShannon => (js_distance(&e, &o), None, None),
        DriftMethod::LInfinity => (l_infinity(&e, &o), None, None),
        DriftMethod::ZTest => {
            let cells: Vec<(f64, f64)> = expected
                .iter()
                .zip(observed)
                .filter(|(a, b)| **a > 0.0 || **b > 0.0)
                .map(|(a, b)| (*a, *b))
                .collect();
            if cells.len() > 2 {
                let (stat, p) = chi_squared(expected, observed);
                return (
                    stat,
                    Some(p),
                    Some(format!(
                        "z_test compares two values; this feature has {}, so chi_squared was used",
                        cells.len()
                    )),
                );
            }
            let (z, p) = z_test(&cells);
            (z, Some(p), None)
        }
        // Ks and Wasserstein never get here (numeric ones are computed from the sorted
        // values, categorical ones fall back before).
        _ => {
            let (stat, p) = chi_squared(expected, observed);
            (stat, Some(p), None)
        }
    }
}

/// Z statistic and two-sided p-value of the two-proportion Z-test (pooled variance) of at
/// most two cells of (baseline count, sample count); the proportion compared is the second
/// cell's. One cell (a single value on both sides) gives Z = 0 and p = 1.
pub fn z_test(cells: &[(f64, f64)]) -> (f64, f64) {
    let n1: f64 = cells.iter().map(|c| c.0).sum();
    let n2: f64 = cells.iter().map(|c| c.1).sum();
    if cells.len() < 2 || n1 == 0.0 || n2 == 0.0 {
        return (0.0, 1.0);
    }
    let (p1, p2) = (cells[1].0 / n1, cells[1].1 / n2);
    let pooled = (cells[1].0 + cells[1].1) / (n1 + n2);
    let var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    if var <= 0.0 {
        return (0.0, 1.0);
    }
    let z = (p1 - p2) / var.sqrt();
    (z, normal_two_sided_p(z))
}

fn normalise(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    if total == 0.0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|c| c / total).collect()
}

/// The standard deviation with n rather than n - 1 (numpy's `np.std`, which Evidently
/// normalises Wasserstein by) from the profile's sample standard deviation.
fn population_std(sample_std: f64, n: u64) -> f64 {
    if n < 2 || sample_std.is_nan() {
        return 0.0;
    }
    sample_std * ((n - 1) as f64 / n as f64).sqrt()
}

/// Baseline and sample counts over the baseline histogram's bins.
fn histogram_counts(h: &Histogram, sorted: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let e = h.counts.iter().map(|&c| c as f64).collect();
    let o = h
        .count(sorted.iter().copied())
        .into_iter()
        .map(|c| c as f64)
        .collect();
    (e, o)
}

/// Sample values (distinct) that are not among the baseline's levels.
fn new_values(levels: &[Level], sorted: &[f64]) -> u64 {
    let mut new = 0;
    let mut i = 0;
    while i < sorted.len() {
        let x = sorted[i];
        let run = sorted[i..].partition_point(|&v| v == x);
        if levels.binary_search_by(|l| l.value.total_cmp(&x)).is_err() {
            new += 1;
        }
        i += run;
    }
    new
}

/// Baseline and sample counts per value: the baseline's levels, then each new sample value.
fn level_counts(levels: &[Level], sorted: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut e: Vec<f64> = levels.iter().map(|l| l.count as f64).collect();
    let mut o = vec![0.0; levels.len()];
    let mut i = 0;
    while i < sorted.len() {
        let x = sorted[i];
        let run = sorted[i..].partition_point(|&v| v == x);
        match levels.binary_search_by(|l| l.value.total_cmp(&x)) {
            Ok(k) => o[k] += run as f64,
            Err(_) => {
                e.push(0.0);
                o.push(run as f64);
            }
        }
        i += run;
    }
    (e, o)
}

/// Baseline and sample counts per category: the baseline's, its `other` (categories past
/// the profile's limit), then each category only the sample has, in the order `counts` has
/// them. With a baseline `other`, unlisted sample values count there (they may be among
/// those categories).
fn category_counts(
    frequencies: &std::collections::BTreeMap<String, u64>,
    other: u64,
    counts: &[(String, u64)],
) -> (Vec<f64>, Vec<f64>, u64) {
    let index: HashMap<&str, usize> = frequencies
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let k = frequencies.len();
    let mut e: Vec<f64> = frequencies.values().map(|&c| c as f64).collect();
    e.push(other as f64);
    let mut o = vec![0.0; k + 1];
    let mut n = 0u64;
    for (v, c) in counts {
        n += c;
        match index.get(v.as_str()) {
            Some(&i) => o[i] += *c as f64,
            None if other > 0 => o[k] += *c as f64,
            None => {
                e.push(0.0);
                o.push(*c as f64);
            }
        }
    }
    (e, o, n)
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

/// Jensen–Shannon distance: the square root of the divergence, natural log (scipy's
/// `jensenshannon` default, which Evidently uses), between 0 and sqrt(ln 2) = 0.833.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).ln())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).max(0.0).sqrt()
}

/// L-infinity distance: the largest absolute difference of two proportion vectors.
pub fn l_infinity(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// Statistic and p-value of the chi-squared goodness-of-fit test of `observed` counts against
/// the proportions of `expected` counts. Cells empty in both are left out; a cell only the
/// sample has is expected at half a baseline row, so the statistic stays finite.
pub fn chi_squared(expected: &[f64], observed: &[f64]) -> (f64, f64) {
    let cells: Vec<(f64, f64)> = expected
        .iter()
        .zip(observed)
        .filter(|(e, o)| **e > 0.0 || **o > 0.0)
        .map(|(e, o)| (if *e > 0.0 { *e } else { 0.5 }, *o))
        .collect();
    let n_obs: f64 = observed.iter().sum();
    let total: f64 = cells.iter().map(|c| c.0).sum();
    if cells.len() < 2 || n_obs == 0.0 {
        return (0.0, 1.0);
    }
    let stat: f64 = cells
        .iter()
        .map(|(e, o)| {
            let e = e / total * n_obs;
            (o - e) * (o - e) / e
        })
        .sum();
    (stat, chi2_sf(stat, (cells.len() - 1) as f64))
}

/// p-value of [`chi_squared`].
pub fn chi_squared_p(expected: &[f64], observed: &[f64]) -> f64 {
    chi_squared(expected, observed).1
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

/// The two step CDFs (baseline levels, sorted sample) at every point either jumps, as
/// (x, F_base(x), F_sample(x)), in increasing x.
fn merged_steps(levels: &[Level], sorted: &[f64]) -> Vec<(f64, f64, f64)> {
    let nb: f64 = levels.iter().map(|l| l.count as f64).sum();
    let ns = sorted.len() as f64;
    let mut out = Vec::with_capacity(levels.len() + 16);
    let (mut li, mut si) = (0, 0);
    let (mut cb, mut cs) = (0.0, 0.0);
    while li < levels.len() || si < sorted.len() {
        let x = match (levels.get(li), sorted.get(si)) {
            (Some(l), Some(&s)) => l.value.min(s),
            (Some(l), None) => l.value,
            (None, Some(&s)) => s,
            (None, None) => unreachable!(),
        };
        while li < levels.len() && levels[li].value <= x {
            cb += levels[li].count as f64;
            li += 1;
        }
        let run = sorted[si..].partition_point(|&v| v <= x);
        cs += run as f64;
        si += run;
        out.push((x, cb / nb, cs / ns));
    }
    out
}

/// Kolmogorov–Smirnov statistic of a sorted sample against a baseline of few values (exact).
pub fn ks_vs_levels(levels: &[Level], sorted: &[f64]) -> f64 {
    merged_steps(levels, sorted)
        .iter()
        .map(|(_, b, s)| (b - s).abs())
        .fold(0.0, f64::max)
}

/// Wasserstein-1 distance between a baseline of few values and a sorted sample (exact: the
/// integral of |F_base - F_sample|).
pub fn wasserstein_vs_levels(levels: &[Level], sorted: &[f64]) -> f64 {
    let steps = merged_steps(levels, sorted);
    steps
        .windows(2)
        .map(|w| (w[0].1 - w[0].2).abs() * (w[1].0 - w[0].0))
        .sum()
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
    use std::collections::BTreeMap;

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
            method: Some(method),
            threshold: Some(threshold),
            share: None,
            features: BTreeMap::new(),
        }
    }

    fn defaults() -> Drift {
        Drift {
            method: None,
            threshold: None,
            share: None,
            features: BTreeMap::new(),
        }
    }

    fn strings(values: &[&str]) -> ColumnData {
        ColumnData::Str(values.iter().map(|v| Some(v.to_string())).collect())
    }

    #[test]
    fn same_distribution_does_not_drift_shifted_one_does() {
        let base = profile(&normal_table(5000, 0.0, 1, &["a", "b", "d"]));
        let same = normal_table(2000, 0.0, 2, &["a", "b", "d"]);
        let moved = normal_table(2000, 1.0, 3, &["a", "b", "c"]);
        for (method, threshold) in [
            (DriftMethod::Psi, 0.2),
            (DriftMethod::Ks, 0.01),
            (DriftMethod::Wasserstein, 0.3),
            (DriftMethod::JensenShannon, 0.1),
            (DriftMethod::ChiSquared, 0.01),
            (DriftMethod::LInfinity, 0.05),
        ] {
            let r = drift(&base, &same, &config(method, threshold));
            assert!(
                r.drifted_features().next().is_none(),
                "{method:?} on same data:\n{r}"
            );
            let r = drift(&base, &moved, &config(method, threshold));
            assert!(r.features[0].drifted, "{method:?} on shifted data:\n{r}");
            assert!(
                r.features[1].drifted,
                "{method:?} with a new category:\n{r}"
            );
            assert!(r.dataset_drifted, "{r}");
        }
    }

    #[test]
    fn ks_reports_the_statistic_and_its_p_value() {
        let base = profile(&normal_table(20000, 0.0, 1, &["a"]));
        let moved = normal_table(20000, 0.5, 2, &["a"]);
        let r = drift(&base, &moved, &config(DriftMethod::Ks, 0.05));
        // KS between N(0,1) and N(0.5,1) is 2*Phi(0.25)-1 = 0.1974.
        assert!((r.features[0].statistic - 0.1974).abs() < 0.02, "{r}");
        assert!(r.features[0].p_value.unwrap() < 1e-10, "{r}");
        let same = normal_table(20000, 0.0, 3, &["a"]);
        let r = drift(&base, &same, &config(DriftMethod::Ks, 0.05));
        assert!(r.features[0].p_value.unwrap() > 0.05, "{r}");
        // A categorical feature cannot be KS-tested: the chi-squared test is used instead.
        assert_eq!(r.features[1].method, DriftMethod::ChiSquared);
        assert!(r.features[1].note.is_some());
    }

    #[test]
    fn wasserstein_is_normalised_by_the_baseline_std() {
        let base = profile(&normal_table(20000, 0.0, 1, &["a"]));
        let moved = normal_table(20000, 0.5, 2, &["a"]);
        let r = drift(&base, &moved, &config(DriftMethod::Wasserstein, 0.1));
        // W1 between N(0,1) and N(0.5,1) is 0.5 (std 1).
        assert!((r.features[0].statistic - 0.5).abs() < 0.05, "{r}");
        assert_eq!(r.features[0].p_value, None);
        assert_eq!(r.features[1].method, DriftMethod::JensenShannon);
        assert!(r.features[1].note.is_some());
    }

    /// Hand-computed: baseline (0.5, 0.3, 0.2), sample (0.3, 0.3, 0.4):
    /// PSI = (0.3-0.5) ln(0.3/0.5) + 0 + (0.4-0.2) ln(0.4/0.2) = 0.1022 + 0.1386 = 0.2408.
    #[test]
    fn psi_and_l_infinity_by_hand() {
        let base = [0.5, 0.3, 0.2];
        let sample = [0.3, 0.3, 0.4];
        let expected = -0.2 * (0.6f64).ln() + 0.2 * 2f64.ln();
        assert!((psi(&base, &sample) - expected).abs() < 1e-12);
        assert!((psi(&base, &sample) - 0.2408).abs() < 1e-4);
        assert!((l_infinity(&base, &sample) - 0.2).abs() < 1e-12);
        // Disjoint distributions are as far apart as JS (natural log) allows: sqrt(ln 2).
        assert!((js_distance(&[1.0, 0.0], &[0.0, 1.0]) - 2f64.ln().sqrt()).abs() < 1e-12);
    }

    /// Through `drift`, on categories: 50/30/20 baseline rows, 30/30/40 sample rows.
    #[test]
    fn psi_on_categories_is_over_their_proportions() {
        let mut rows = vec!["a"; 50];
        rows.extend(["b"; 30]);
        rows.extend(["c"; 20]);
        let base = profile(&Table::from_columns([("c", strings(&rows))]).unwrap());
        let mut rows = vec!["a"; 30];
        rows.extend(["b"; 30]);
        rows.extend(["c"; 40]);
        let sample = Table::from_columns([("c", strings(&rows))]).unwrap();
        let r = drift(&base, &sample, &config(DriftMethod::Psi, 0.2));
        assert!((r.features[0].statistic - 0.2408).abs() < 1e-4, "{r}");
        assert!(r.features[0].drifted);
        let r = drift(&base, &sample, &config(DriftMethod::LInfinity, 0.25));
        assert!((r.features[0].statistic - 0.2).abs() < 1e-12, "{r}");
        assert!(!r.features[0].drifted);
    }

    /// 40/100 vs 55/100 (pooled p = 0.475): z = -0.15 / sqrt(0.475 * 0.525 * 0.02)
    /// = -2.12398, p = 2 * scipy.stats.norm.sf(|z|) = 0.0336721.
    #[test]
    fn z_test_by_hand() {
        let (z, p) = z_test(&[(60.0, 45.0), (40.0, 55.0)]);
        assert!((z - (-2.123_976_976_214_366_5)).abs() < 1e-12, "{z}");
        assert!((p - 0.033_672_068_856_345_77).abs() < 1e-12, "{p}");
        assert_eq!(z_test(&[(10.0, 7.0)]), (0.0, 1.0));
    }

    /// A value the baseline never had is expected at half a baseline row: one stray value is
    /// not drift, many are, and neither is infinite.
    #[test]
    fn a_new_category_counts_without_making_chi_squared_infinite() {
        let (stat, p) = chi_squared(&[50.0, 50.0, 0.0], &[50.0, 49.0, 1.0]);
        assert!(stat.is_finite() && p > 0.05, "{stat} {p}");
        let (stat, p) = chi_squared(&[50.0, 50.0, 0.0], &[40.0, 40.0, 20.0]);
        assert!(stat.is_finite() && p < 1e-10, "{stat} {p}");
    }

    /// Evidently's rule: <= 1000 baseline rows get tests, more get distances; a numeric
    /// feature of <= 5 values is categorical, a binary one gets the Z-test in small data.
    #[test]
    fn default_methods_follow_evidently() {
        let table = |n: usize, seed: u64| {
            let mut r = Rng::new(seed);
            let x: Vec<f64> = (0..n).map(|_| r.normal()).collect();
            let few: Vec<Option<i64>> = (0..n).map(|_| Some(r.index(4) as i64)).collect();
            let flag: Vec<Option<bool>> = (0..n).map(|_| Some(r.index(2) == 1)).collect();
            let c: Vec<Option<String>> = (0..n)
                .map(|_| Some(["a", "b", "c"][r.index(3)].to_string()))
                .collect();
            Table::from_columns([
                ("x", ColumnData::Float(x)),
                ("few", ColumnData::Int(few)),
                ("flag", ColumnData::Bool(flag)),
                ("c", ColumnData::Str(c)),
            ])
            .unwrap()
        };
        let methods = |rows: usize| -> Vec<(DriftMethod, f64)> {
            let r = drift(&profile(&table(rows, 1)), &table(500, 2), &defaults());
            r.features.iter().map(|f| (f.method, f.threshold)).collect()
        };
        use DriftMethod::*;
        assert_eq!(
            methods(1000),
            [
                (Ks, 0.05),
                (ChiSquared, 0.05),
                (ZTest, 0.05),
                (ChiSquared, 0.05)
            ]
        );
        assert_eq!(
            methods(1001),
            [
                (Wasserstein, 0.1),
                (JensenShannon, 0.1),
                (JensenShannon, 0.1),
                (JensenShannon, 0.1)
            ]
        );
    }

    /// Six distinct values in baseline and sample together make a numeric feature numeric.
    #[test]
    fn distinct_values_are_counted_over_baseline_and_sample() {
        let ints = |v: &[i64]| {
            Table::from_columns([("x", ColumnData::Int(v.iter().map(|&x| Some(x)).collect()))])
                .unwrap()
        };
        let base = profile(&ints(&[1, 2, 3, 4, 5, 1, 2, 3]));
        let r = drift(&base, &ints(&[1, 2, 3, 4, 5]), &defaults());
        assert_eq!(r.features[0].method, DriftMethod::ChiSquared);
        let r = drift(&base, &ints(&[1, 2, 3, 4, 6]), &defaults());
        assert_eq!(r.features[0].method, DriftMethod::Ks);
    }

    #[test]
    fn dataset_drifts_at_the_configured_share() {
        let base = profile(&normal_table(2000, 0.0, 1, &["a", "b"]));
        // x moves, c does not: half the features drift.
        let sample = normal_table(2000, 1.0, 2, &["a", "b"]);
        let r = drift(&base, &sample, &defaults());
        assert_eq!(r.drifted_share, 0.5, "{r}");
        assert!(r.dataset_drifted, "at least the default share of 0.5:\n{r}");
        let mut cfg = defaults();
        cfg.share = Some(0.6);
        let r = drift(&base, &sample, &cfg);
        assert!(!r.dataset_drifted, "{r}");
        assert!(
            r.to_string()
                .starts_with("no dataset drift: 1 of 2 features drifted"),
            "{r}"
        );
    }

    #[test]
    fn only_the_selected_features_are_checked() {
        let base = profile(&normal_table(1000, 0.0, 1, &["a"]));
        let sample = normal_table(100, 5.0, 2, &["a"]);
        let r = drift_features(&base, &sample, &defaults(), Features::Except(&["x"]));
        let names: Vec<&str> = r.features.iter().map(|f| f.feature.as_str()).collect();
        assert_eq!(names, ["c"]);
        assert!(!r.dataset_drifted, "x moved, but it is not a feature:\n{r}");
        let r = drift_features(&base, &sample, &defaults(), Features::Only(&["x", "age"]));
        let names: Vec<&str> = r.features.iter().map(|f| f.feature.as_str()).collect();
        assert_eq!(names, ["x", "age"]);
        assert!(r.features[1].drifted);
        assert!(
            r.features[1]
                .note
                .as_deref()
                .unwrap()
                .contains("baseline profile"),
            "{r}"
        );
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
        assert!(r.dataset_drifted);
        assert_eq!(
            r.features[0].note.as_deref(),
            Some("column is missing from the sample")
        );
        assert!(r.to_string().contains("1 of 1 features drifted"));
    }

    /// A table of a numeric feature `x`, a categorical `c` and a categorical `code` whose
    /// values are digits (a baseline read as text, a sample read as numbers).
    fn mixed_table(n: usize, shift: f64, seed: u64) -> Table {
        let mut r = Rng::new(seed);
        let x: Vec<f64> = (0..n)
            .map(|i| {
                if i % 7 == 0 {
                    f64::NAN
                } else {
                    r.normal() + shift
                }
            })
            .collect();
        let c: Vec<Option<String>> = (0..n)
            .map(|i| (i % 11 != 0).then(|| ["a", "b", "c", "d"][r.index(4)].to_string()))
            .collect();
        let code: Vec<Option<i64>> = (0..n).map(|_| Some(r.index(3) as i64 + 1)).collect();
        Table::from_columns([
            ("x", ColumnData::Float(x)),
            ("c", ColumnData::Str(c)),
            ("code", ColumnData::Int(code)),
        ])
        .unwrap()
    }

    fn as_text(data: &ColumnData) -> ColumnData {
        ColumnData::Str((0..data.len()).map(|i| data.string_at(i)).collect())
    }

    /// Chunks of a file may be typed differently from the whole (a numeric column read as
    /// text in one); each is converted by the baseline's kind, so the report is the one of
    /// the whole table, exactly, whatever the methods.
    #[test]
    fn a_sample_pushed_in_chunks_of_any_type_gives_the_report_of_the_whole_table() {
        let base_table = mixed_table(3000, 0.0, 1);
        let base_table = Table::from_columns([
            ("x", base_table.column("x").unwrap().clone()),
            ("c", base_table.column("c").unwrap().clone()),
            ("code", as_text(base_table.column("code").unwrap())),
        ])
        .unwrap();
        let base = profile(&base_table);
        let whole = mixed_table(2500, 0.3, 2);
        for method in [
            None,
            Some(DriftMethod::Ks),
            Some(DriftMethod::Wasserstein),
            Some(DriftMethod::Psi),
            Some(DriftMethod::ChiSquared),
            Some(DriftMethod::JensenShannon),
        ] {
            let config = Drift {
                method,
                ..defaults()
            };
            let expected = drift(&base, &whole, &config);
            let mut live = LiveSample::new(&base, Features::All);
            for (k, start) in (0..whole.n_rows()).step_by(700).enumerate() {
                let rows: Vec<usize> = (start..(start + 700).min(whole.n_rows())).collect();
                let chunk = whole.take(&rows);
                let chunk = if k % 2 == 1 {
                    let text = |name| as_text(chunk.column(name).unwrap());
                    Table::from_columns([
                        ("x", text("x")),
                        ("c", text("c")),
                        ("code", text("code")),
                    ])
                    .unwrap()
                } else {
                    chunk
                };
                live.push_table(&chunk);
            }
            assert_eq!(
                drift_sample(&base, &mut live, &config),
                expected,
                "{method:?}"
            );
        }
    }

    /// `push_value` converts as `push_table` does: a categorical feature counts a number as
    /// its text, a numeric one parses text; NaN and unparsable text are missing.
    #[test]
    fn values_are_converted_by_the_baselines_kind() {
        let base = profile(
            &Table::from_columns([
                ("code", strings(&["1", "2", "2"])),
                ("x", ColumnData::Float(vec![1.5, 2.0, 3.0])),
            ])
            .unwrap(),
        );
        let mut live = LiveSample::new(&base, Features::All);
        let code = live.feature_index("code").unwrap();
        let x = live.feature_index("x").unwrap();
        for v in [LiveValue::Int(1), LiveValue::Text("1"), LiveValue::Missing] {
            live.push_value(code, v);
        }
        for v in [
            LiveValue::Text(" 2.5 "),
            LiveValue::Bool(true),
            LiveValue::Number(f64::NAN),
            LiveValue::Text("n/a"),
        ] {
            live.push_value(x, v);
        }
        assert_eq!(
            (live.count("code"), live.missing("code")),
            (Some(2), Some(1))
        );
        assert_eq!((live.count("x"), live.missing("x")), (Some(2), Some(2)));
        let r = drift_sample(&base, &mut live, &config(DriftMethod::LInfinity, 0.5));
        // code: sample all "1" (2 of 2) against 1 of 3: |1 - 1/3| = 2/3.
        assert!((r.features[0].statistic - 2.0 / 3.0).abs() < 1e-12, "{r}");
        assert_eq!(r.features[1].sample_count, 2);
    }

    /// A feature no table or value brought is missing from the sample; a name of
    /// `Features::Only` the baseline lacks is reported last, as `drift_features` does.
    #[test]
    fn a_live_sample_reports_missing_features_like_a_table() {
        let base = profile(&normal_table(1000, 0.0, 1, &["a"]));
        let only_x = normal_table(100, 0.0, 2, &["a"]).without("c");
        let features = Features::Only(&["c", "age", "x"]);
        let expected = drift_features(&base, &only_x, &defaults(), features);
        let mut live = LiveSample::new(&base, features);
        assert_eq!(live.features().collect::<Vec<_>>(), ["x", "c"]);
        live.push_table(&only_x);
        let r = drift_sample(&base, &mut live, &defaults());
        assert_eq!(
            r.features
                .iter()
                .map(|f| f.note.as_deref())
                .collect::<Vec<_>>(),
            [
                None,
                Some("column is missing from the sample"),
                Some(NOT_IN_BASELINE)
            ]
        );
        assert_eq!(r.to_string(), expected.to_string());
        let mut live = LiveSample::new(&base, features);
        live.mark_present(live.feature_index("c").unwrap());
        let r = drift_sample(&base, &mut live, &defaults());
        assert_eq!(r.features[1].note.as_deref(), Some("no values to compare"));
        assert_eq!(live.column("c"), Some(LiveColumn::Categorical(&[])));
    }

    /// A feature's own method does not take the threshold written for `drift.method`.
    #[test]
    fn a_feature_method_uses_its_own_default_threshold() {
        let base = profile(&normal_table(1000, 0.0, 1, &["a"]));
        let mut cfg = config(DriftMethod::Psi, 0.2);
        cfg.features.insert(
            "x".into(),
            FeatureDrift {
                method: Some(DriftMethod::Ks),
                threshold: None,
                ignore: None,
            },
        );
        let r = drift(&base, &normal_table(100, 0.0, 2, &["a"]), &cfg);
        assert_eq!(
            (r.features[0].method, r.features[0].threshold),
            (DriftMethod::Ks, 0.05)
        );
        assert_eq!(
            (r.features[1].method, r.features[1].threshold),
            (DriftMethod::Psi, 0.2)
        );
    }
}
