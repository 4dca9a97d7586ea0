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
    /// Service-level objectives.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Drift {
    /// Default method for every feature.
    pub method: DriftMethod,
    /// Default threshold.
    pub threshold: f64,
    /// Per-feature overrides, by column name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, FeatureDrift>,
}

/// Drift statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    /// Population stability index.
    Psi,
    /// Kolmogorov–Smirnov statistic.
    Ks,
    /// Wasserstein-1 distance (normalised by the baseline's std).
    Wasserstein,
    /// Jensen–Shannon distance.
    JensenShannon,
    /// Chi-squared test p-value (categories).
    ChiSquared,
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

/// Service-level objectives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Slo {
    /// p99 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency_ms: Option<f64>,
    /// Largest error fraction (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_error_rate: Option<f64>,
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
    /// Make `mlctl monitor check` exit non-zero.
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
