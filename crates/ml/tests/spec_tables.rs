//! mlctl-spec's tables of built-in hyperparameters and metrics (`mlctl_spec::builtins`,
//! `mlctl_spec::metrics`) are what the trainers here take and report: the validator accepts
//! a spec because of them, so a disagreement is a job that validates and then fails.

use mlctl_ml::metrics::evaluate;
use mlctl_ml::{ColumnData, Table, TrainRequest, hyperparameter_names, train};
use mlctl_spec::builtins::{self, Bound, Hyperparameter, ParamKind};
use mlctl_spec::metrics::{self, Family};
use mlctl_spec::{Algorithm, ColumnType};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn iris() -> Table {
    mlctl_ml::table::read_csv(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/iris.csv"))
        .expect("iris.csv")
}

/// y = 1 + 2a - 3b, with a float label.
fn numbers() -> Table {
    let mut rng = mlctl_ml::rng::Rng::new(7);
    let a: Vec<f64> = (0..120).map(|_| rng.normal()).collect();
    let b: Vec<f64> = (0..120).map(|_| rng.normal()).collect();
    let y = a
        .iter()
        .zip(&b)
        .map(|(a, b)| 1.0 + 2.0 * a - 3.0 * b)
        .collect();
    Table::from_columns([
        ("a", ColumnData::Float(a)),
        ("b", ColumnData::Float(b)),
        ("y", ColumnData::Float(y)),
    ])
    .expect("table")
}

/// Data and label for a job of `algorithm` that trains a model of `family`.
fn data_for(algorithm: Algorithm, family: Family) -> (Table, Option<&'static str>) {
    match (algorithm, family) {
        (Algorithm::Kmeans, _) => (numbers(), None),
        (_, Family::Regression) => (numbers(), Some("y")),
        _ => (iris(), Some("species")),
    }
}

/// The family a hyperparameter setting makes `algorithm` train (criterion/loss decide it for
/// tree-based built-ins), else the first the algorithm may train.
fn family_of(algorithm: Algorithm, name: &str, value: &Value) -> Family {
    let from_value = (builtins::task_hyperparameter(algorithm) == Some(name))
        .then(|| value.as_str().and_then(builtins::family_of_task_value))
        .flatten();
    from_value.unwrap_or(builtins::families(algorithm)[0])
}

fn fit(algorithm: Algorithm, hp: &BTreeMap<String, Value>, family: Family) -> Result<(), String> {
    let (table, target) = data_for(algorithm, family);
    train(TrainRequest {
        algorithm,
        hyperparameters: hp,
        train: &table,
        validation: Some(&table),
        target,
        seed: 1,
        schema: None,
    })
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Values the table says are valid: the ends of its range and a value inside.
fn valid_values(h: &Hyperparameter) -> Vec<Value> {
    let near = |b: Bound, above: bool| match b {
        Bound::None => None,
        Bound::Inclusive(v) => Some(v),
        Bound::Exclusive(v) => Some(if above { v + 1e-3 } else { v - 1e-3 }),
    };
    match h.kind {
        ParamKind::Float { min, max } => {
            let mut out: Vec<f64> = [near(min, true), near(max, false)]
                .into_iter()
                .flatten()
                .collect();
            out.push(match (near(min, true), near(max, false)) {
                (Some(lo), Some(hi)) => (lo + hi) / 2.0,
                (Some(lo), None) => lo + 1.0,
                (None, Some(hi)) => hi - 1.0,
                (None, None) => 1.0,
            });
            out.into_iter().map(|v| json!(v)).collect()
        }
        ParamKind::Int { min, max } => {
            let mut out = vec![json!(min), json!(min + 2)];
            out.extend(max.map(|m| json!(m)));
            out
        }
        ParamKind::Bool => vec![json!(true), json!(false), json!("false")],
        ParamKind::Choice(values) => values.iter().map(|v| json!(v)).collect(),
        ParamKind::ClassWeight => vec![json!("balanced")],
        ParamKind::Features => vec![
            json!("sqrt"),
            json!("log2"),
            json!("auto"),
            json!(1),
            json!(0.5),
            json!(1.0),
        ],
    }
}

/// Every value the spec's table accepts, at the ends of each range, the trainer accepts too.
#[test]
fn every_value_the_spec_accepts_trains() {
    for (_, algorithm) in Algorithm::ALL {
        for h in builtins::hyperparameters(algorithm) {
            for value in valid_values(h) {
                assert!(h.check(&value).is_ok(), "the table rejects its own {value}");
                let hp = BTreeMap::from([(h.name.to_string(), value.clone())]);
                let family = family_of(algorithm, h.name, &value);
                if let Err(e) = fit(algorithm, &hp, family) {
                    panic!(
                        "{}: the spec accepts `{}: {value}`, the trainer refuses it: {e}",
                        algorithm.as_str(),
                        h.name
                    );
                }
            }
        }
    }
}

/// Every name in the table is one the trainer reads (a value it cannot use is an error naming
/// it), and the trainer takes no name outside the table.
#[test]
fn the_trainer_takes_exactly_the_names_the_spec_lists() {
    for (_, algorithm) in Algorithm::ALL {
        let listed: Vec<&str> = builtins::hyperparameters(algorithm)
            .iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(hyperparameter_names(algorithm), listed.as_slice());
        for name in &listed {
            let hp = BTreeMap::from([(name.to_string(), json!("not-a-value"))]);
            let family = builtins::families(algorithm)[0];
            let e = fit(algorithm, &hp, family).expect_err(&format!(
                "{}: `{name}: not-a-value` trained, so the trainer never reads `{name}`",
                algorithm.as_str()
            ));
            assert!(e.contains(&format!("`{name}`")), "{e}");
        }
        let hp = BTreeMap::from([("not_a_hyperparameter".to_string(), json!(1))]);
        let e = fit(algorithm, &hp, builtins::families(algorithm)[0]).unwrap_err();
        assert!(e.contains("unknown hyperparameter"), "{e}");
    }
}

/// The metrics evaluation reports for each family are the ones the spec's table lists for it
/// (`roc_auc` and `silhouette` included: this data has both classes and clusters).
#[test]
fn evaluation_reports_the_metrics_the_spec_lists() {
    for (algorithm, family) in [
        (Algorithm::LogisticRegression, Family::Classification),
        (Algorithm::RandomForest, Family::Classification),
        (Algorithm::LinearRegression, Family::Regression),
        (Algorithm::GradientBoosting, Family::Regression),
        (Algorithm::Kmeans, Family::Clustering),
    ] {
        let (table, target) = data_for(algorithm, family);
        let hp = match algorithm {
            Algorithm::Kmeans => BTreeMap::from([("k".to_string(), json!(3))]),
            _ => BTreeMap::new(),
        };
        let model = train(TrainRequest {
            algorithm,
            hyperparameters: &hp,
            train: &table,
            validation: None,
            target,
            seed: 1,
            schema: None,
        })
        .expect("trains");
        let reported: BTreeSet<String> = evaluate(&model, &table)
            .expect("evaluates")
            .into_keys()
            .collect();
        let listed: BTreeSet<String> = metrics::reported_by(family)
            .map(|m| m.name.to_string())
            .collect();
        assert_eq!(reported, listed, "{algorithm:?} ({family:?})");
    }
}

/// The spec decides a tree-based built-in's family from its label's declared type as the
/// trainer does from the data.
#[test]
fn label_types_decide_the_family_as_the_trainer_does() {
    let cases = [
        (ColumnType::Float, numbers(), "y"),
        (ColumnType::Category, iris(), "species"),
    ];
    for (ty, table, target) in cases {
        let model = train(TrainRequest {
            algorithm: Algorithm::DecisionTree,
            hyperparameters: &BTreeMap::new(),
            train: &table,
            validation: None,
            target: Some(target),
            seed: 1,
            schema: None,
        })
        .expect("trains");
        let family = match model.task() {
            mlctl_ml::Task::Classification => Family::Classification,
            mlctl_ml::Task::Regression => Family::Regression,
            mlctl_ml::Task::Clustering => Family::Clustering,
        };
        assert_eq!(metrics::families_for_label(Some(ty)), [family], "{ty:?}");
    }
}
