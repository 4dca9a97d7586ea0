//! mlctl's drift statistics against scipy's and Evidently's on a fixed dataset.
//!
//! `tests/reference/make_reference.py` wrote `baseline.csv`, `sample.csv` and, from scipy and
//! Evidently 0.7 on the raw rows, `expected.json` (regenerate with the commands in its
//! docstring). Here the baseline is summarised by `profile()` first, as a Monitor's is, so:
//! - statistics over categories and over the values of a column of few values are exact
//!   (1e-9);
//! - the KS statistic of a wide numeric column is within 0.015 (the baseline CDF is
//!   interpolated from 101 percentiles) and its verdict at 0.05 is the same;
//! - the KS p-value from the exact statistic is within 5% of scipy's `ks_2samp(method='asymp')`
//!   (Stephens' approximation of the finite-n distribution);
//! - Wasserstein (normalised) is within 3%, or 0.01 (baseline std) for small distances;
//! - with no method configured, each feature gets Evidently's method, threshold and verdict,
//!   and the dataset verdict and drifted share are Evidently's.

use mlctl_ml::drift::{Features, drift_features, feature_drift};
use mlctl_ml::profile::{Profile, profile};
use mlctl_ml::table::{Table, read_csv};
use mlctl_spec::{Drift, DriftMethod};
use serde_json::Value;
use std::path::PathBuf;

const NOT_FEATURES: &[&str] = &["churned", "id"];

fn reference(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(file)
}

struct Case {
    label: &'static str,
    baseline: Profile,
    expected: Value,
}

fn cases() -> (Vec<Case>, Table) {
    let baseline = read_csv(reference("baseline.csv")).expect("baseline.csv");
    let sample = read_csv(reference("sample.csv")).expect("sample.csv");
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(reference("expected.json")).expect("expected.json"),
    )
    .expect("expected.json is JSON");
    let cases = [("full", baseline.n_rows()), ("small", 1000)]
        .into_iter()
        .map(|(label, rows)| Case {
            label,
            baseline: profile(&baseline.head(rows)),
            expected: json[label].clone(),
        })
        .collect();
    (cases, sample)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn method_of(evidently_name: &str) -> DriftMethod {
    match evidently_name {
        "K-S p_value" => DriftMethod::Ks,
        "chi-square p_value" => DriftMethod::ChiSquared,
        "Z-test p_value" => DriftMethod::ZTest,
        "Wasserstein distance (normed)" => DriftMethod::Wasserstein,
        "Jensen-Shannon distance" => DriftMethod::JensenShannon,
        other => panic!("no mlctl method for Evidently's {other:?}"),
    }
}

fn method_named(name: &str) -> DriftMethod {
    *DriftMethod::ALL
        .iter()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("unknown method {name}"))
}

#[test]
fn default_methods_and_verdicts_are_evidently_s() {
    let (cases, sample) = cases();
    let config = Drift {
        method: None,
        threshold: None,
        share: None,
        features: Default::default(),
    };
    for case in cases {
        let ev = &case.expected["evidently"];
        assert!(ev.is_object(), "expected.json has no Evidently results");
        let report = drift_features(
            &case.baseline,
            &sample,
            &config,
            Features::Except(NOT_FEATURES),
        );
        let columns = ev["columns"].as_object().unwrap();
        assert_eq!(
            report.features.len(),
            columns.len(),
            "{}:\n{report}",
            case.label
        );
        for r in &report.features {
            let e = &columns[&r.feature];
            let what = format!("{} {}:\n{report}", case.label, r.feature);
            assert_eq!(
                r.method,
                method_of(e["stattest"].as_str().unwrap()),
                "{what}"
            );
            assert_eq!(r.threshold, f(&e["threshold"]), "{what}");
            assert_eq!(r.drifted, e["drifted"].as_bool().unwrap(), "{what}");
        }
        assert_eq!(
            report.dataset_drifted,
            ev["dataset_drift"].as_bool().unwrap()
        );
        assert!((report.drifted_share - f(&ev["share_of_drifted_columns"])).abs() < 1e-12);
    }
}

#[test]
fn statistics_match_scipy() {
    let (cases, sample) = cases();
    for case in cases {
        let columns = case.expected["columns"].as_object().unwrap();
        for (name, methods) in columns {
            let base = case.baseline.column(name).unwrap();
            let data = sample.column(name).unwrap();
            let few_values = !matches!(name.as_str(), "age" | "income" | "tenure");
            for (method, want) in methods.as_object().unwrap() {
                let m = method_named(method);
                let got = feature_drift(base, data, Some(m), None);
                let what = format!("{} {name} {method}: {got:?} vs {want}", case.label);
                assert_eq!(got.method, m, "{what}");
                let stat = f(&want["statistic"]);
                match m {
                    DriftMethod::Ks => {
                        assert!((got.statistic - stat).abs() <= 0.015, "{what}");
                        let p = f(&want["p_value"]);
                        assert_eq!(got.drifted, p < 0.05, "{what}");
                    }
                    DriftMethod::Wasserstein => {
                        assert!(
                            (got.statistic - stat).abs() <= (0.03 * stat).max(0.01),
                            "{what}"
                        )
                    }
                    _ => {
                        assert!(few_values, "{what}");
                        assert!(
                            (got.statistic - stat).abs() <= 1e-9 * stat.abs().max(1.0),
                            "{what}"
                        );
                        if let Some(p) = want.get("p_value") {
                            let (p, got) = (f(p), got.p_value.unwrap());
                            assert!((got - p).abs() <= 1e-9 * p.max(1e-300) + 1e-300, "{what}");
                        }
                    }
                }
            }
        }
    }
}

/// The p-value of scipy's own statistic, so only the distribution is compared.
#[test]
fn ks_p_value_matches_scipy_asymptotic() {
    let (cases, sample) = cases();
    for case in cases {
        let columns = case.expected["columns"].as_object().unwrap();
        for name in ["age", "income", "tenure"] {
            let ks = &columns[name]["ks"];
            let (d, want) = (f(&ks["statistic"]), f(&ks["p_value"]));
            let n_sample = sample.n_rows() as u64;
            let got = mlctl_ml::drift::ks_p_value(d, case.baseline.rows, n_sample);
            let what = format!("{} {name}: {got} vs scipy {want}", case.label);
            if want > 1e-6 {
                assert!((got - want).abs() <= 0.05 * want, "{what}");
            } else {
                assert!(got < 1e-6, "{what}");
            }
        }
    }
}
