//! Evaluation gates: checks a new model version must pass before it is registered.

use crate::components::ModelVersion;
use mlctl_spec::metrics::Direction;
use mlctl_spec::{Gate, Stage};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a `maxRegression` gate compares against: the version in production for the Model,
/// else its newest approved version.
#[derive(Debug, Clone, Copy)]
pub struct Baseline<'a> {
    /// The version.
    pub version: &'a ModelVersion,
    /// `production` or `newest approved`.
    pub why: &'static str,
}

impl<'a> Baseline<'a> {
    /// The baseline among a Model's versions, if it has one.
    pub fn among(versions: &'a [ModelVersion]) -> Option<Self> {
        if let Some(v) = versions.iter().find(|v| v.stage == Stage::Production) {
            return Some(Baseline {
                version: v,
                why: "production",
            });
        }
        versions
            .iter()
            .filter(|v| v.approved() && v.stage != Stage::Archived)
            .max_by_key(|v| v.version)
            .map(|v| Baseline {
                version: v,
                why: "newest approved",
            })
    }
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
    /// False when the gate could not be judged (no baseline) and was let through.
    pub evaluated: bool,
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

    /// The report on metrics no model produced (`origin`: an emulator's made-up figures,
    /// `TrainingResult::metrics_origin`): a gate whose metric such a run does not report
    /// cannot be judged, so it is NOT EVALUATED and lets the version through, as a gate
    /// without a baseline does. It is never a pass, and on real metrics a missing one fails.
    pub fn on_unmeasured(mut self, origin: Option<&str>) -> Self {
        if let Some(origin) = origin {
            for r in &mut self.results {
                if r.value.is_none() {
                    let rule = r
                        .rule
                        .strip_suffix(" (metric not reported by training)")
                        .unwrap_or(&r.rule);
                    r.rule = format!("{rule} (not reported: metrics {origin})");
                    r.passed = true;
                    r.evaluated = false;
                }
            }
        }
        self
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
            let verdict = match (r.evaluated, r.passed) {
                (false, _) => "NOT EVALUATED",
                (true, true) => "PASS",
                (true, false) => "FAIL",
            };
            write!(f, "{verdict} {} {} (got {value})", r.metric, r.rule)?;
        }
        Ok(())
    }
}

/// Evaluates gates against a candidate's metrics and the Model's baseline. `direction`
/// says which way each metric is better, as the spec declares it (validation refuses a
/// `maxRegression` gate whose metric has none; an undeclared one here fails the gate).
pub fn evaluate(
    gates: &[Gate],
    metrics: &BTreeMap<String, f64>,
    baseline: Option<Baseline<'_>>,
    direction: &dyn Fn(&str) -> Option<Direction>,
) -> GateReport {
    let mut results = Vec::new();
    for g in gates {
        let value = metrics.get(&g.metric).copied();
        let result = |rule: String, passed: bool| GateResult {
            metric: g.metric.clone(),
            rule,
            value,
            passed,
            evaluated: true,
        };
        let missing = |rule: String| GateResult {
            metric: g.metric.clone(),
            rule: format!("{rule} (metric not reported by training)"),
            value: None,
            passed: false,
            evaluated: true,
        };
        if let Some(min) = g.min {
            results.push(match value {
                Some(v) => result(format!(">= {min}"), v >= min),
                None => missing(format!(">= {min}")),
            });
        }
        if let Some(max) = g.max {
            results.push(match value {
                Some(v) => result(format!("<= {max}"), v <= max),
                None => missing(format!("<= {max}")),
            });
        }
        if let Some(reg) = g.max_regression {
            let base = baseline.and_then(|b| {
                b.version
                    .metrics
                    .get(&g.metric)
                    .copied()
                    .map(|m| (b.version.version, b.why, m))
            });
            let required = g.require_baseline == Some(true);
            results.push(match (value, base, direction(&g.metric)) {
                (None, _, _) => missing(format!("not worse than the baseline by more than {reg}")),
                (Some(_), None, _) => {
                    let why = match baseline {
                        Some(b) => format!(
                            "no baseline: v{} ({}) has no `{}`",
                            b.version.version, b.why, g.metric
                        ),
                        None => "no baseline: no version in production or approved".to_string(),
                    };
                    GateResult {
                        metric: g.metric.clone(),
                        rule: if required {
                            format!("not worse than the baseline by more than {reg} ({why}, and `requireBaseline` is set)")
                        } else {
                            format!("not worse than the baseline by more than {reg} ({why}: gate not evaluated)")
                        },
                        value,
                        passed: !required,
                        evaluated: required,
                    }
                }
                (Some(_), Some(_), None) => result(
                    format!("not worse than the baseline by more than {reg} (the spec does not say whether larger `{}` is better)", g.metric),
                    false,
                ),
                (Some(v), Some((bv, why, b)), Some(dir)) => {
                    let worse_by = match dir {
                        Direction::HigherIsBetter => b - v,
                        Direction::LowerIsBetter => v - b,
                    };
                    result(
                        format!("not worse than v{bv} ({why}, {b:.4}) by more than {reg}"),
                        worse_by <= reg + 1e-12,
                    )
                }
            });
        }
    }
    GateReport { results }
}

#[cfg(test)]
mod tests {

    use super::*;

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

    fn version(v: u32, stage: Stage, approved: bool, acc: f64) -> ModelVersion {
        ModelVersion {
            version: v,
            stage,
            approval: if approved {
                crate::components::ApprovalStatus::Approved
            } else {
                crate::components::ApprovalStatus::PendingManualApproval
            },
            metrics: BTreeMap::from([("accuracy".into(), acc)]),
            ..prod(0.0)
        }
    }

    fn gate(metric: &str, max_regression: f64) -> Gate {
        Gate {
            metric: metric.into(),
            min: None,
            max: None,
            max_regression: Some(max_regression),
            require_baseline: None,
        }
    }

    fn vocabulary(m: &str) -> Option<Direction> {
        mlctl_spec::metrics::metric(m).map(|m| m.direction)
    }

    #[test]
    fn a_metric_an_emulator_does_not_report_is_not_evaluated_never_passed() {
        let gates = [Gate {
            metric: "accuracy".into(),
            min: Some(0.9),
            max: None,
            max_regression: None,
            require_baseline: None,
        }];
        let none = BTreeMap::new();
        let real = evaluate(&gates, &none, None, &|_| None);
        assert!(
            !real.passed(),
            "on real metrics a missing one fails: {real}"
        );
        let emulated =
            evaluate(&gates, &none, None, &|_| None).on_unmeasured(Some("emulated by moto"));
        assert!(emulated.passed());
        assert!(!emulated.results[0].evaluated);
        assert!(
            emulated.to_string().starts_with(
                "NOT EVALUATED accuracy >= 0.9 (not reported: metrics emulated by moto)"
            ),
            "{emulated}"
        );
        // A figure the emulator does report is judged as it is.
        let low = BTreeMap::from([("accuracy".to_string(), 0.5)]);
        let judged =
            evaluate(&gates, &low, None, &|_| None).on_unmeasured(Some("emulated by moto"));
        assert!(!judged.passed());
    }

    #[test]
    fn thresholds_and_regression_against_production() {
        let gates = vec![
            Gate {
                min: Some(0.9),
                ..gate("accuracy", 0.02)
            },
            gate("log_loss", 0.05),
        ];
        let m = BTreeMap::from([("accuracy".into(), 0.93), ("log_loss".into(), 0.3)]);
        let versions = [prod(0.96)];
        let r = evaluate(&gates, &m, Baseline::among(&versions), &vocabulary);
        assert_eq!(
            r.results.iter().map(|r| r.passed).collect::<Vec<_>>(),
            vec![true, false, false],
            "{r}"
        );
        let missing = evaluate(&gates[..1], &BTreeMap::new(), None, &vocabulary);
        assert!(!missing.passed());
    }

    /// Production first; without it the newest approved version (a rejected or unapproved
    /// newer one does not count); with neither the gate says it was not evaluated.
    #[test]
    fn the_baseline_is_production_else_the_newest_approved_version() {
        let staged = [
            version(1, Stage::Staging, true, 0.80),
            version(2, Stage::Staging, true, 0.95),
            version(3, Stage::Staging, false, 0.50),
        ];
        let b = Baseline::among(&staged).unwrap();
        assert_eq!((b.version.version, b.why), (2, "newest approved"));
        let with_prod = [staged[1].clone(), version(4, Stage::Production, true, 0.85)];
        let b = Baseline::among(&with_prod).unwrap();
        assert_eq!((b.version.version, b.why), (4, "production"));

        let m = BTreeMap::from([("accuracy".into(), 0.90)]);
        let g = [gate("accuracy", 0.02)];
        // 0.90 vs the newest approved 0.95: a regression of 0.05.
        assert!(!evaluate(&g, &m, Baseline::among(&staged), &vocabulary).passed());
        // Against production (0.85) it is an improvement.
        assert!(evaluate(&g, &m, Baseline::among(&with_prod), &vocabulary).passed());

        let none = [version(1, Stage::Staging, false, 0.99)];
        let r = evaluate(&g, &m, Baseline::among(&none), &vocabulary);
        assert!(r.passed() && !r.results[0].evaluated, "{r}");
        assert!(r.to_string().starts_with("NOT EVALUATED accuracy"), "{r}");
        assert!(r.to_string().contains("no baseline"), "{r}");
        let required = [Gate {
            require_baseline: Some(true),
            ..gate("accuracy", 0.02)
        }];
        let r = evaluate(&required, &m, None, &vocabulary);
        assert!(!r.passed(), "{r}");
        assert!(r.to_string().contains("requireBaseline"), "{r}");
    }

    /// The direction is what the spec declares, never the name: a script's `val_loss`
    /// declared `maximize` is judged as larger-is-better.
    #[test]
    fn regression_follows_the_declared_direction() {
        let g = [gate("val_loss", 0.01)];
        let mut base = prod(0.0);
        base.metrics = BTreeMap::from([("val_loss".into(), 0.50)]);
        let versions = [base];
        let m = BTreeMap::from([("val_loss".into(), 0.40)]);
        let maximize = |_: &str| Some(Direction::HigherIsBetter);
        let minimize = |_: &str| Some(Direction::LowerIsBetter);
        assert!(!evaluate(&g, &m, Baseline::among(&versions), &maximize).passed());
        assert!(evaluate(&g, &m, Baseline::among(&versions), &minimize).passed());
        let undeclared = |_: &str| None;
        assert!(!evaluate(&g, &m, Baseline::among(&versions), &undeclared).passed());
    }
}
