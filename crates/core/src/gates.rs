//! Evaluation gates: checks a new model version must pass before it is registered.

use crate::components::ModelVersion;
use mlctl_spec::Gate;
use serde::Serialize;
use std::collections::BTreeMap;

/// Whether larger values of a metric are better: as the built-ins' metric table says for the
/// metrics it lists (docs/metrics.md), else guessed from the name of a script's own metric
/// (losses and errors are smaller-is-better).
pub fn higher_is_better(metric: &str) -> bool {
    if let Some(known) = mlctl_spec::metrics::higher_is_better(metric) {
        return known;
    }
    let m = metric.to_ascii_lowercase();
    ![
        "loss", "rmse", "mse", "mae", "error", "inertia", "latency", "mape",
    ]
    .iter()
    .any(|k| m.contains(k))
}

/// One gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    /// Metric name.
    pub metric: String,
    /// The rule, e.g. `>= 0.9` or `not worse than production (0.95) by more than 0.02`.
    pub rule: String,
    /// The candidate's value (None when the metric is missing).
    pub value: Option<f64>,
    /// Whether it passed.
    pub passed: bool,
}

/// Every gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateReport {
    /// One per rule (a gate with min and max gives two).
    pub results: Vec<GateResult>,
}

impl GateReport {
    /// Whether every gate passed.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }
}

impl std::fmt::Display for GateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.results.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let value = r
                .value
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "missing".into());
            write!(
                f,
                "{} {} {} (got {value})",
                if r.passed { "PASS" } else { "FAIL" },
                r.metric,
                r.rule
            )?;
        }
        Ok(())
    }
}

/// Evaluates gates against a candidate's metrics and the current production version.
pub fn evaluate(
    gates: &[Gate],
    metrics: &BTreeMap<String, f64>,
    production: Option<&ModelVersion>,
) -> GateReport {
    let mut results = Vec::new();
    for g in gates {
        let value = metrics.get(&g.metric).copied();
        let missing = |rule: String| GateResult {
            metric: g.metric.clone(),
            rule: format!("{rule} (metric not reported by training)"),
            value: None,
            passed: false,
        };
        if let Some(min) = g.min {
            results.push(match value {
                Some(v) => GateResult {
                    metric: g.metric.clone(),
                    rule: format!(">= {min}"),
                    value,
                    passed: v >= min,
                },
                None => missing(format!(">= {min}")),
            });
        }
        if let Some(max) = g.max {
            results.push(match value {
                Some(v) => GateResult {
                    metric: g.metric.clone(),
                    rule: format!("<= {max}"),
                    value,
                    passed: v <= max,
                },
                None => missing(format!("<= {max}")),
            });
        }
        if let Some(reg) = g.max_regression {
            let prod =
                production.and_then(|p| p.metrics.get(&g.metric).copied().map(|m| (p.version, m)));
            results.push(match (value, prod) {
                (None, _) => missing(format!("not worse than production by more than {reg}")),
                (Some(_), None) => GateResult {
                    metric: g.metric.clone(),
                    rule: format!(
                        "not worse than production by more than {reg} (no production version yet)"
                    ),
                    value,
                    passed: true,
                },
                (Some(v), Some((pv, p))) => {
                    let worse_by = if higher_is_better(&g.metric) {
                        p - v
                    } else {
                        v - p
                    };
                    GateResult {
                        metric: g.metric.clone(),
                        rule: format!(
                            "not worse than production v{pv} ({p:.4}) by more than {reg}"
                        ),
                        value,
                        passed: worse_by <= reg + 1e-12,
                    }
                }
            });
        }
    }
    GateReport { results }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_comes_from_the_metric_table_then_the_name() {
        // The table: every built-in metric.
        for m in mlctl_spec::metrics::METRICS {
            assert_eq!(
                higher_is_better(m.name),
                m.direction == mlctl_spec::metrics::Direction::HigherIsBetter,
                "{}",
                m.name
            );
        }
        // A script's own metrics, by name.
        assert!(higher_is_better("val_auc"));
        assert!(!higher_is_better("val_loss"));
        assert!(!higher_is_better("p99_latency_ms"));
    }
    use mlctl_spec::Stage;

    fn prod(acc: f64) -> ModelVersion {
        ModelVersion {
            model: "m".into(),
            version: 3,
            stage: Stage::Production,
            approval: crate::components::ApprovalStatus::Approved,
            artifact_uri: String::new(),
            metrics: BTreeMap::from([("accuracy".into(), acc), ("log_loss".into(), 0.2)]),
            fingerprint: String::new(),
            lineage: BTreeMap::new(),
            created_at: String::new(),
        }
    }

    #[test]
    fn thresholds_and_regression() {
        let gates = vec![
            Gate {
                metric: "accuracy".into(),
                min: Some(0.9),
                max: None,
                max_regression: Some(0.02),
            },
            Gate {
                metric: "log_loss".into(),
                min: None,
                max: None,
                max_regression: Some(0.05),
            },
        ];
        let m = BTreeMap::from([("accuracy".into(), 0.93), ("log_loss".into(), 0.3)]);
        let r = evaluate(&gates, &m, Some(&prod(0.96)));
        assert_eq!(
            r.results.iter().map(|r| r.passed).collect::<Vec<_>>(),
            vec![true, false, false]
        );
        let r = evaluate(&gates, &m, None);
        assert!(r.passed());
        let missing = evaluate(&gates[..1], &BTreeMap::new(), None);
        assert!(!missing.passed());
    }
}
