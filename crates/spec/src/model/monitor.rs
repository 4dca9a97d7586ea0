//! `kind: Monitor`: checks on a live endpoint.

use super::*;

/// `kind: Monitor` — checks a live endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MonitorSpec {
    /// The Endpoint watched.
    pub endpoint: String,
    /// The Dataset whose profile is the reference (default: the training dataset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Data drift checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// Data quality checks of the captured requests (see `docs/quality.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Service-level objectives, judged from the captured requests (see `docs/quality.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// How often: `every 1h` style or a 5-field cron expression (default `every 1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Fewest captured rows before drift is judged (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// What happens on a breach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_breach: Option<OnBreach>,
}

/// Drift configuration.
///
/// Without a `method`, each feature gets the method Evidently's DataDriftPreset would pick
/// (by the baseline's row count and the feature's type and distinct values; see
/// `docs/drift.md`), with that method's default threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Drift {
    /// Method for every feature (default: chosen per feature, see `docs/drift.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<DriftMethod>,
    /// Threshold for `method` (default: the method's own, see `docs/drift.md`); needs `method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The dataset drifts when at least this share of the checked features drift (0 < share <= 1,
    /// default 0.5 as Evidently's `drift_share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub share: Option<f64>,
    /// Per-feature overrides, by column name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, FeatureDrift>,
}

/// Drift statistics. [`DriftMethod::ALL`] lists them; `docs/drift.md` is generated from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    /// Population stability index.
    Psi,
    /// Two-sample Kolmogorov–Smirnov test p-value (numeric features).
    Ks,
    /// Wasserstein-1 distance normalised by the baseline's standard deviation (numeric features).
    Wasserstein,
    /// Jensen–Shannon distance (natural log, 0 to sqrt(ln 2)).
    JensenShannon,
    /// Chi-squared test p-value.
    ChiSquared,
    /// L-infinity distance: the largest absolute difference of category or bin proportions.
    LInfinity,
    /// Two-proportion Z-test p-value (binary features).
    ZTest,
}

impl DriftMethod {
    /// Every method, in the order `docs/drift.md` lists them.
    pub const ALL: &'static [DriftMethod] = &[
        DriftMethod::Ks,
        DriftMethod::ChiSquared,
        DriftMethod::ZTest,
        DriftMethod::Wasserstein,
        DriftMethod::JensenShannon,
        DriftMethod::Psi,
        DriftMethod::LInfinity,
    ];

    /// The name written in YAML.
    pub fn name(self) -> &'static str {
        match self {
            DriftMethod::Psi => "psi",
            DriftMethod::Ks => "ks",
            DriftMethod::Wasserstein => "wasserstein",
            DriftMethod::JensenShannon => "jensen_shannon",
            DriftMethod::ChiSquared => "chi_squared",
            DriftMethod::LInfinity => "l_infinity",
            DriftMethod::ZTest => "z_test",
        }
    }

    /// Whether the threshold is a significance level (drift when the p-value is below it)
    /// rather than a distance (drift when the statistic is at least the threshold).
    pub fn is_test(self) -> bool {
        matches!(
            self,
            DriftMethod::Ks | DriftMethod::ChiSquared | DriftMethod::ZTest
        )
    }

    /// The threshold used when the spec gives none (Evidently's defaults).
    pub fn default_threshold(self) -> f64 {
        if self.is_test() { 0.05 } else { 0.1 }
    }

    /// What the method computes, for `docs/drift.md`.
    pub fn meaning(self) -> &'static str {
        match self {
            DriftMethod::Ks => {
                "p-value of the two-sample Kolmogorov–Smirnov test (asymptotic distribution, as \
                 scipy's `ks_2samp(method='asymp')`); the baseline CDF is interpolated from its 101 \
                 stored percentiles, with n = its rows. Categorical features use `chi_squared`"
            }
            DriftMethod::ChiSquared => {
                "p-value of the chi-squared goodness-of-fit test of the sample's counts against \
                 the baseline's proportions (categories, or histogram bins of a numeric feature)"
            }
            DriftMethod::ZTest => {
                "p-value of the two-sided two-proportion Z-test (pooled variance); for features \
                 with at most 2 values, else `chi_squared`"
            }
            DriftMethod::Wasserstein => {
                "Wasserstein-1 distance between the baseline's quantile function and the \
                 sample's, divided by the baseline's standard deviation (population, at least \
                 0.001). Categorical features use `jensen_shannon`"
            }
            DriftMethod::JensenShannon => {
                "Jensen–Shannon distance (square root of the divergence, natural log: 0 to \
                 0.833) of category or bin proportions"
            }
            DriftMethod::Psi => {
                "population stability index of category or bin proportions (each floored at \
                 1e-4)"
            }
            DriftMethod::LInfinity => {
                "largest absolute difference between the baseline's and the sample's proportion \
                 of one category or bin (0 to 1)"
            }
        }
    }
}

/// What a feature holds, for choosing its default drift method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// Numbers (float or int columns).
    Numeric,
    /// Categories (text or bool columns).
    Categorical,
}

/// Baselines with more rows than this get distances by default, smaller ones tests
/// (Evidently's rule).
pub const DEFAULT_METHOD_LARGE_BASELINE: u64 = 1000;
/// A numeric feature with at most this many distinct values (baseline and sample together) is
/// treated as categorical when choosing its default method (Evidently's rule).
pub const DEFAULT_METHOD_FEW_VALUES: u64 = 5;

impl DriftMethod {
    /// The method Evidently's DataDriftPreset picks for a feature when none is configured
    /// (<https://docs-old.evidentlyai.com/reference/data-drift-algorithm>, and
    /// `_get_default_stattest` in Evidently 0.7): by the baseline's rows, the feature's kind,
    /// and its distinct values in baseline and sample together.
    ///
    /// | baseline rows | numeric, > 5 values | numeric, <= 5 values | categorical |
    /// |---|---|---|---|
    /// | <= 1000 | `ks` | `chi_squared` (`z_test` if <= 2 values) | `chi_squared` (`z_test` if <= 2 values) |
    /// | > 1000 | `wasserstein` | `jensen_shannon` | `jensen_shannon` |
    pub fn default_for(baseline_rows: u64, kind: FeatureKind, distinct: u64) -> DriftMethod {
        let categorical = kind == FeatureKind::Categorical || distinct <= DEFAULT_METHOD_FEW_VALUES;
        match (baseline_rows <= DEFAULT_METHOD_LARGE_BASELINE, categorical) {
            (true, false) => DriftMethod::Ks,
            (true, true) if distinct <= 2 => DriftMethod::ZTest,
            (true, true) => DriftMethod::ChiSquared,
            (false, false) => DriftMethod::Wasserstein,
            (false, true) => DriftMethod::JensenShannon,
        }
    }
}

/// A per-feature drift override.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FeatureDrift {
    /// Method for this feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<DriftMethod>,
    /// Threshold for this feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Skip this feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<bool>,
}

/// Data quality of the captured requests, as SageMaker Model Monitor's data-quality job
/// checks it (its violation types: `missing_column_check`, `extra_column_check`,
/// `data_type_check`, `completeness_check`, `categorical_values_check`), plus values out of
/// range. Every check is on unless turned off; each rate is a share of the window's rows and
/// breaches when above its maximum. Defaults: [`crate::quality::CHECKS`], `docs/quality.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Quality {
    /// A feature that no request of the window carries is a breach (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_columns: Option<bool>,
    /// A request column that is not a column of the baseline Dataset (its label included) is a
    /// breach (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_columns: Option<bool>,
    /// Largest share of a numeric feature's values that are not numbers (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_type_mismatch_rate: Option<f64>,
    /// How far a feature's completeness (its share of non-missing values) may fall below the
    /// baseline's (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_completeness_drop: Option<f64>,
    /// Largest share of a numeric feature's values outside the schema's `min`..`max`, or the
    /// baseline's smallest..largest value (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_out_of_range_rate: Option<f64>,
    /// Largest share of a categorical feature's values that are not among the schema's
    /// `categories`, or the baseline's (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_unseen_category_rate: Option<f64>,
}

/// Service-level objectives over the window, from the captured requests' status and latency.
/// Capture samples requests (`samplingPercent`), so rates and percentiles are estimates from
/// the sample, and throughput is the captured count scaled by the sampling percent. Where the
/// capture has no status or latency (SageMaker, Azure ML), the endpoint's own metrics are
/// judged instead (CloudWatch, Azure Monitor): every request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Slo {
    /// Largest median latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_latency_ms: Option<f64>,
    /// Largest p99 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency_ms: Option<f64>,
    /// Largest share of requests answered with a 5xx status (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_error_rate: Option<f64>,
    /// Fewest requests per second over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_throughput: Option<f64>,
}

/// Breach actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OnBreach {
    /// POST a JSON report to this webhook (`${env:NAME}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// Retrain this TrainingJob (and what depends on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<String>,
    /// Put the endpoint back on the version it served before (as `mlctl rollback` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
    /// Make `mlctl monitor run` exit non-zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<bool>,
}

/// Webhook notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notify {
    /// Webhook URL, always `${env:NAME}`.
    pub webhook: String,
}

impl MonitorSpec {
    /// Fields of this kind (under `spec`) that change what it carries, not what it produces:
    /// a change to one updates the resource in place and never reconfigures the checks. Every other field
    /// is part of the fingerprint. (`metadata.labels` is in place on every kind.)
    pub const IN_PLACE: &'static [&'static str] = &[];

    /// Fields (under `spec`) a resource's `overrides.<target>` may set: every threshold and
    /// what a breach does, how often it runs and how many samples it needs.
    pub const OVERRIDABLE: &'static [&'static str] = &[
        "drift",
        "quality",
        "slo",
        "schedule",
        "minSamples",
        "onBreach",
    ];

    /// The endpoint watched, the baseline dataset, and the job a breach retrains (which it
    /// does not wait for).
    pub fn references(&self) -> Vec<Reference> {
        let mut out = vec![Reference::to(
            crate::Kind::Endpoint,
            &self.endpoint,
            &["endpoint"],
            true,
        )];
        if let Some(b) = &self.baseline {
            out.push(Reference::to(crate::Kind::Dataset, b, &["baseline"], true));
        }
        if let Some(t) = self.on_breach.as_ref().and_then(|o| o.retrain.as_deref()) {
            out.push(Reference::to(
                crate::Kind::TrainingJob,
                t,
                &["onBreach", "retrain"],
                false,
            ));
        }
        out
    }

    /// A Monitor reads no files of its own.
    pub fn content_inputs(&self) -> Vec<ContentInput> {
        Vec::new()
    }
}
