//! [`train`]: one call from a table to a [`PortableModel`].

use crate::algo::{
    Estimator, Matrix, ParamError, Params, Target, Task, boosting, forest, kmeans, linear,
    logistic, tree,
};
use crate::model::{FORMAT, FORMAT_VERSION, Manifest, Output, PortableModel, WEIGHTS_FILE};
use crate::preprocess::{EncodeError, Preprocessor, encode_classes};
use crate::rng::Rng;
use crate::table::{ColumnData, Table, TableError};
use crate::tune::{self, Candidate, TuneError, TuningOutcome};
use mlctl_spec::{Algorithm, ColumnRole, DataSchema, Tuning};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Integer labels with at most this many distinct values are classes (unless `criterion` or
/// `loss` says otherwise); with more they are numbers to regress.
pub const MAX_INT_CLASSES: usize = 20;

/// What to train.
#[derive(Debug, Clone, Copy)]
pub struct TrainRequest<'a> {
    /// The built-in algorithm.
    pub algorithm: Algorithm,
    /// Hyperparameters by scikit-learn name.
    pub hyperparameters: &'a BTreeMap<String, Value>,
    /// Training rows: the features and (unless k-means) the label column.
    pub train: &'a Table,
    /// Validation rows, which early stopping (`early_stopping_rounds`) watches; never the
    /// held-out test rows.
    pub validation: Option<&'a Table>,
    /// The label column (required except for k-means, where it is left out of the features).
    pub target: Option<&'a str>,
    /// Seed for every random choice (overridden by a `random_state` hyperparameter).
    pub seed: u64,
    /// The Dataset's schema: which columns are features (`role`), which are categorical
    /// (`categories`, int columns included), the sample weight, and the signature's types
    /// and ranges. Without one, every column but the target is a feature.
    pub schema: Option<&'a DataSchema>,
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A hyperparameter is unknown or invalid.
    #[error(transparent)]
    Hyperparameter(#[from] ParamError),
    /// The training table is empty.
    #[error("the training data has no rows")]
    NoRows,
    /// A supervised algorithm without a target.
    #[error("{algorithm} needs a label column: set `target` on the dataset")]
    TargetRequired {
        /// The algorithm's name.
        algorithm: &'static str,
    },
    /// The target column does not exist.
    #[error("label column: {0}")]
    NoSuchTarget(TableError),
    /// The label column cannot be used (missing values, one class, text for regression).
    #[error("{0}")]
    Label(String),
    /// Nothing to learn from.
    #[error("the training data has no feature columns besides the label")]
    NoFeatures,
    /// The features could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The sample weight column cannot be used (missing, negative, or the algorithm takes none).
    #[error("sample weights: {0}")]
    Weight(String),
    /// The tuning search space is invalid.
    #[error(transparent)]
    Tuning(#[from] TuneError),
    /// No trial reported the tuning objective's metric.
    #[error("no trial reported the objective metric `{metric}` (metrics: {})", available.join(", "))]
    Objective {
        /// The objective's metric.
        metric: String,
        /// The metrics trials did report.
        available: Vec<String>,
    },
    /// Every tuning trial failed; the first failure.
    #[error("every tuning trial failed; the first: {0}")]
    AllTrialsFailed(String),
}

/// A tuning run of a built-in algorithm.
#[derive(Debug, Clone, Copy)]
pub struct TuneRequest<'a> {
    /// The built-in algorithm.
    pub algorithm: Algorithm,
    /// Fixed hyperparameters; each candidate's values are merged over them.
    pub hyperparameters: &'a BTreeMap<String, Value>,
    /// Search space, strategy, objective, trials, parallelism, seed.
    pub tuning: &'a Tuning,
    /// Rows to fit each trial on.
    pub train: &'a Table,
    /// Rows each trial is scored on (the validation split; the test split if there is none).
    pub validation: &'a Table,
    /// The label column.
    pub target: Option<&'a str>,
    /// Seed for training (each trial uses the same).
    pub seed: u64,
    /// The Dataset's schema (see [`TrainRequest::schema`]).
    pub schema: Option<&'a DataSchema>,
}

/// The fixed hyperparameters with a candidate's values merged over them.
pub fn merge_hyperparameters(
    fixed: &BTreeMap<String, Value>,
    candidate: &Candidate,
) -> BTreeMap<String, Value> {
    let mut hp = fixed.clone();
    hp.extend(candidate.params.iter().map(|(k, v)| (k.clone(), v.clone())));
    hp
}

/// Tunes a built-in: trains every candidate on `train` (successive-halving rungs with a budget
/// below 1 train on that share of the rows, a seeded sample), scores it with
/// [`crate::metrics::evaluate`] on `validation`, and returns every trial and the best.
/// Train the final model with [`merge_hyperparameters`] of the best trial.
pub fn tune(req: TuneRequest<'_>) -> Result<TuningOutcome, TrainError> {
    // Check names once, up front, rather than failing every trial the same way.
    let valid = names(req.algorithm);
    for name in req.tuning.search_space.keys() {
        if !valid.contains(&name.as_str()) {
            let mut all = req.hyperparameters.clone();
            all.insert(name.clone(), Value::Null);
            Params::new(req.algorithm.as_str(), &all, valid)?;
        }
    }
    let n = req.train.n_rows();
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(req.seed).shuffle(&mut order);
    let outcome = tune::run(req.tuning, |c: &Candidate| {
        let hp = merge_hyperparameters(req.hyperparameters, c);
        let subset;
        let rows = if c.budget < 1.0 {
            let m = ((n as f64 * c.budget).ceil() as usize).clamp(1, n);
            let mut idx = order[..m].to_vec();
            idx.sort_unstable();
            subset = req.train.take(&idx);
            &subset
        } else {
            req.train
        };
        let model = train(TrainRequest {
            algorithm: req.algorithm,
            hyperparameters: &hp,
            train: rows,
            validation: Some(req.validation),
            target: req.target,
            seed: req.seed,
            schema: req.schema,
        })
        .map_err(|e| e.to_string())?;
        crate::metrics::evaluate(&model, req.validation).map_err(|e| e.to_string())
    })?;
    if outcome.best.is_none() {
        if let Some(ok) = outcome.trials.iter().find_map(|t| t.metrics.as_ref()) {
            return Err(TrainError::Objective {
                metric: req.tuning.objective.metric.clone(),
                available: ok.keys().cloned().collect(),
            });
        }
        if let Some(e) = outcome.trials.iter().find_map(|t| t.error.clone()) {
            return Err(TrainError::AllTrialsFailed(e));
        }
    }
    Ok(outcome)
}

/// The one list of what each built-in takes is mlctl-spec's (`mlctl_spec::builtins`), which the
/// validator checks specs against; the trainers read only those names.
fn names(algorithm: Algorithm) -> &'static [&'static str] {
    mlctl_spec::builtins::names(algorithm)
}

/// The hyperparameter names `algorithm` accepts: those of `mlctl_spec::builtins`'s table.
pub fn hyperparameter_names(algorithm: Algorithm) -> &'static [&'static str] {
    names(algorithm)
}

fn task_of(
    algorithm: Algorithm,
    p: &Params<'_>,
    label: Option<&ColumnData>,
) -> Result<Task, TrainError> {
    let explicit = |name: &str| match p.raw(name) {
        Some(Value::String(s)) if s == "squared_error" => Some(Task::Regression),
        Some(Value::String(s)) if ["gini", "entropy", "log_loss"].contains(&s.as_str()) => {
            Some(Task::Classification)
        }
        _ => None,
    };
    Ok(match algorithm {
        Algorithm::LinearRegression => Task::Regression,
        Algorithm::LogisticRegression => Task::Classification,
        Algorithm::Kmeans => Task::Clustering,
        Algorithm::DecisionTree | Algorithm::RandomForest | Algorithm::GradientBoosting => {
            let key = if algorithm == Algorithm::GradientBoosting {
                "loss"
            } else {
                "criterion"
            };
            if let Some(t) = explicit(key) {
                return Ok(t);
            }
            match label {
                Some(ColumnData::Float(_)) => Task::Regression,
                Some(c @ ColumnData::Int(_)) => {
                    let distinct: BTreeSet<String> =
                        (0..c.len()).filter_map(|i| c.string_at(i)).collect();
                    if distinct.len() <= MAX_INT_CLASSES {
                        Task::Classification
                    } else {
                        Task::Regression
                    }
                }
                _ => Task::Classification,
            }
        }
    })
}

/// Trains a built-in algorithm. Every column but the target is a feature; text columns are
/// one-hot encoded, missing numbers filled with the training mean.
pub fn train(req: TrainRequest<'_>) -> Result<PortableModel, TrainError> {
    let algo_name = req.algorithm.as_str();
    let p = Params::new(algo_name, req.hyperparameters, names(req.algorithm))?;
    let table = req.train;
    if table.n_rows() == 0 {
        return Err(TrainError::NoRows);
    }
    let label = match req.target {
        Some(t) => Some(table.require(t).map_err(TrainError::NoSuchTarget)?),
        None if req.algorithm == Algorithm::Kmeans => None,
        None => {
            return Err(TrainError::TargetRequired {
                algorithm: algo_name,
            });
        }
    };
    let task = task_of(req.algorithm, &p, label)?;
    let seed = match p.opt_f64("random_state")? {
        Some(v) if v >= 0.0 => v as u64,
        _ => req.seed,
    };
    let pre = Preprocessor::fit_schema(table, req.target, req.schema);
    if pre.encoded_width() == 0 {
        return Err(TrainError::NoFeatures);
    }
    let weights = sample_weights(req.algorithm, table, req.schema)?;
    let data = pre.encode(table)?;
    let x = Matrix {
        data: &data,
        n: table.n_rows(),
        d: pre.encoded_width(),
    };
    let target_name = req.target.unwrap_or_default();
    let (target, classes) = match (task, label) {
        (Task::Classification, Some(col)) => {
            let (y, classes) = encode_classes(col, target_name).map_err(TrainError::Label)?;
            if classes.len() < 2 {
                return Err(TrainError::Label(format!(
                    "the label column `{target_name}` has a single class ({}); a classifier needs at least two",
                    classes.first().map_or("", String::as_str)
                )));
            }
            let k = classes.len();
            (Target::Classes { y, k }, classes)
        }
        (Task::Regression, Some(col)) => {
            if col.kind() == crate::table::ColumnKind::Str {
                return Err(TrainError::Label(format!(
                    "{algo_name} predicts numbers, but the label column `{target_name}` holds text"
                )));
            }
            let y = col.to_f64().unwrap_or_default();
            if let Some(i) = y.iter().position(|v| v.is_nan()) {
                return Err(TrainError::Label(format!(
                    "the label column `{target_name}` has a missing value in row {i}"
                )));
            }
            (Target::Values(y), Vec::new())
        }
        _ => (Target::None, Vec::new()),
    };
    let estimator = match (req.algorithm, &target) {
        (Algorithm::LinearRegression, Target::Values(y)) => {
            Estimator::Linear(linear::fit_weighted(x, y, weights.as_deref(), &p)?)
        }
        (Algorithm::LogisticRegression, Target::Classes { y, k }) => {
            Estimator::Logistic(logistic::fit_weighted(x, y, *k, weights.as_deref(), &p)?)
        }
        (Algorithm::DecisionTree, _) => Estimator::Tree(tree::fit(x, &target, task, &p, seed)?),
        (Algorithm::RandomForest, _) => Estimator::Forest(forest::fit(x, &target, task, &p, seed)?),
        (Algorithm::GradientBoosting, _) => {
            let val_data;
            let val_target;
            let validation = match (req.validation, p.has("early_stopping_rounds")) {
                (Some(v), true) if v.n_rows() > 0 => {
                    val_data = pre.encode(v).map_err(|e| {
                        TrainError::Label(format!("the validation rows (early stopping): {e}"))
                    })?;
                    val_target = validation_target(v, &target, &classes, target_name)?;
                    Some((
                        Matrix {
                            data: &val_data,
                            n: v.n_rows(),
                            d: x.d,
                        },
                        &val_target,
                    ))
                }
                _ => None,
            };
            let data = boosting::BoostData {
                x,
                target: &target,
                weights: weights.as_deref(),
                classes: &classes,
                validation,
            };
            Estimator::Boosting(boosting::fit(&data, task, &p, seed)?)
        }
        (Algorithm::Kmeans, _) => Estimator::Kmeans(kmeans::fit(x, &p, seed)?),
        _ => return Err(TrainError::Label("label does not fit the algorithm".into())),
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        algorithm: req.algorithm,
        task,
        hyperparameters: req.hyperparameters.clone(),
        inputs: pre.features,
        passthrough: passthrough(table, req.target, req.schema),
        output: Output {
            name: req.target.map(String::from),
            label_type: match (task, label) {
                (Task::Classification, Some(col)) => Some(col.kind().as_str().to_string()),
                _ => None,
            },
            classes,
        },
        metrics: BTreeMap::new(),
        lineage: BTreeMap::new(),
        weights: WEIGHTS_FILE.into(),
        created_by: concat!("mlctl-ml ", env!("CARGO_PKG_VERSION")).into(),
    };
    PortableModel::new(manifest, estimator)
        .map_err(|e| TrainError::Label(format!("internal error building the model: {e}")))
}

/// The labels of validation rows, in the training classes' indices.
fn validation_target(
    v: &Table,
    target: &Target,
    classes: &[String],
    name: &str,
) -> Result<Target, TrainError> {
    let col = v.require(name).map_err(TrainError::NoSuchTarget)?;
    match target {
        Target::Classes { k, .. } => {
            let index: BTreeMap<&str, usize> = classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect();
            let mut y = Vec::with_capacity(col.len());
            let mut unseen: BTreeSet<String> = BTreeSet::new();
            for i in 0..col.len() {
                let label = col.string_at(i).ok_or_else(|| {
                    TrainError::Label(format!(
                        "the label column `{name}` has a missing value in validation row {i}"
                    ))
                })?;
                match index.get(label.as_str()) {
                    Some(&c) => y.push(c),
                    None => {
                        unseen.insert(label);
                    }
                }
            }
            if !unseen.is_empty() {
                let some: Vec<String> = unseen.iter().take(5).cloned().collect();
                return Err(TrainError::Label(format!(
                    "the validation rows have {} class(es) the training rows lack ({}); early stopping cannot score them: stratify the split (`split.stratify: {name}`) or merge rare classes",
                    unseen.len(),
                    some.join(", ")
                )));
            }
            Ok(Target::Classes { y, k: *k })
        }
        _ => {
            let y = col.to_f64().unwrap_or_default();
            if let Some(i) = y.iter().position(|v| v.is_nan()) {
                return Err(TrainError::Label(format!(
                    "the label column `{name}` has a missing value in validation row {i}"
                )));
            }
            Ok(Target::Values(y))
        }
    }
}

/// The `role: weight` column's values, for an algorithm that takes them (the validator
/// refuses the others; this is the same rule, for callers that skip it).
fn sample_weights(
    algorithm: Algorithm,
    table: &Table,
    schema: Option<&DataSchema>,
) -> Result<Option<Vec<f64>>, TrainError> {
    let Some(w) = schema.and_then(DataSchema::weight_column) else {
        return Ok(None);
    };
    if !mlctl_spec::builtins::takes_sample_weights(algorithm) {
        return Err(TrainError::Weight(format!(
            "{} cannot train with sample weights (column `{}` has `role: weight`)",
            algorithm.as_str(),
            w.name
        )));
    }
    let col = table
        .column(&w.name)
        .ok_or_else(|| TrainError::Weight(format!("the data has no column `{}`", w.name)))?;
    let values = col.to_f64().unwrap_or_default();
    if let Some(i) = values.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(TrainError::Weight(format!(
            "column `{}`, row {i}: {} is not a weight (a number >= 0)",
            w.name,
            col.string_at(i).unwrap_or_else(|| "a missing value".into())
        )));
    }
    if values.iter().all(|v| *v == 0.0) {
        return Err(TrainError::Weight(format!(
            "every row of column `{}` has weight 0",
            w.name
        )));
    }
    Ok(Some(values))
}

/// The columns of `table` that the schema declares as not features (ids, ignored, weight).
fn passthrough(
    table: &Table,
    target: Option<&str>,
    schema: Option<&DataSchema>,
) -> Vec<crate::model::Passthrough> {
    let Some(schema) = schema else {
        return Vec::new();
    };
    table
        .names()
        .iter()
        .filter(|n| Some(n.as_str()) != target)
        .filter_map(|n| {
            let role = match schema.column(n)?.role() {
                ColumnRole::Feature => return None,
                ColumnRole::Id => "id",
                ColumnRole::Ignore => "ignore",
                ColumnRole::Weight => "weight",
            };
            Some(crate::model::Passthrough {
                name: n.clone(),
                role: role.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::evaluate;
    use crate::model::{InputProblem, Prediction};
    use crate::split::split;
    use mlctl_spec::Split;
    use serde_json::json;
    use std::path::Path;

    fn iris() -> Table {
        crate::table::read_csv(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/iris.csv"))
            .unwrap()
    }

    fn iris_split() -> (Table, Table) {
        let s = split(
            &iris(),
            &Split {
                train: 0.8,
                validation: None,
                test: Some(0.2),
                seed: Some(42),
                stratify: Some("species".into()),
            },
        )
        .unwrap();
        (s.train, s.test)
    }

    fn hp(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    fn fit(
        algorithm: Algorithm,
        h: &BTreeMap<String, Value>,
        t: &Table,
        target: Option<&str>,
    ) -> PortableModel {
        train(TrainRequest {
            algorithm,
            hyperparameters: h,
            train: t,
            validation: None,
            target,
            seed: 42,
            schema: None,
        })
        .unwrap()
    }

    #[test]
    fn every_classifier_learns_iris() {
        let (tr, te) = iris_split();
        for (algo, h, min_acc) in [
            (
                Algorithm::LogisticRegression,
                json!({"C": 1.0, "max_iter": 200}),
                0.93,
            ),
            (Algorithm::DecisionTree, json!({"max_depth": 4}), 0.9),
            (Algorithm::RandomForest, json!({"n_estimators": 30}), 0.9),
            (
                Algorithm::GradientBoosting,
                json!({"n_estimators": 30}),
                0.9,
            ),
        ] {
            let m = fit(algo, &hp(h), &tr, Some("species"));
            let metrics = evaluate(&m, &te).unwrap();
            assert!(metrics["accuracy"] >= min_acc, "{algo:?}: {metrics:?}");
            assert!(metrics["roc_auc"] > 0.95, "{algo:?}: {metrics:?}");
            assert_eq!(m.classes(), ["setosa", "versicolor", "virginica"]);
        }
    }

    #[test]
    fn logistic_regression_matches_sklearn_on_iris() {
        // sklearn: LogisticRegression(C=1.0, max_iter=200).fit(X, y).score(X, y) == 0.9733
        let t = iris();
        let m = fit(
            Algorithm::LogisticRegression,
            &hp(json!({"C": 1.0, "max_iter": 200})),
            &t,
            Some("species"),
        );
        let acc = evaluate(&m, &t).unwrap()["accuracy"];
        assert!(acc >= 0.97, "{acc}");
    }

    #[test]
    fn save_load_predict_round_trip() {
        let (tr, te) = iris_split();
        let mut m = fit(
            Algorithm::LogisticRegression,
            &BTreeMap::new(),
            &tr,
            Some("species"),
        );
        m.set_metrics(evaluate(&m, &te).unwrap());
        m.lineage_mut()
            .insert("dataset".into(), "blake3:abc".into());
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        let back = PortableModel::load(dir.path()).unwrap();
        assert_eq!(back.manifest(), m.manifest());
        assert_eq!(back.manifest().lineage["dataset"], "blake3:abc");
        let rows = vec![
            vec![json!(5.1), json!(3.5), json!(1.4), json!(0.2)],
            vec![json!("6.7"), json!(3.0), json!(5.2), json!(2.3)],
        ];
        let p = back.predict_rows(&rows).unwrap();
        assert_eq!(p[0].label(), Some("setosa"));
        assert_eq!(p[1].label(), Some("virginica"));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"["setosa","virginica"]"#
        );
        let fast = back
            .predict_f64(&[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3], 2)
            .unwrap();
        assert_eq!(fast, p);
        let proba = back.predict_proba_f64(&[5.1, 3.5, 1.4, 0.2], 1).unwrap();
        assert_eq!(proba.len(), 3);
        assert!(proba[0] > 0.8);
        // Same predictions as the model before saving.
        assert_eq!(
            m.predict_table(&te).unwrap().1,
            back.predict_table(&te).unwrap().1
        );
        let manifest = std::fs::read_to_string(dir.path().join("model.json")).unwrap();
        assert!(
            manifest.contains("\"algorithm\": \"logistic_regression\""),
            "{manifest}"
        );
    }

    #[test]
    fn input_errors_name_row_column_and_problem() {
        let t = Table::from_columns([
            ("x", ColumnData::Float(vec![1.0, 2.0, 3.0, 4.0])),
            (
                "color",
                ColumnData::Str(vec![
                    Some("red".into()),
                    Some("blue".into()),
                    Some("red".into()),
                    Some("blue".into()),
                ]),
            ),
            (
                "y",
                ColumnData::Str(vec![
                    Some("a".into()),
                    Some("b".into()),
                    Some("a".into()),
                    Some("b".into()),
                ]),
            ),
        ])
        .unwrap();
        let m = fit(Algorithm::DecisionTree, &BTreeMap::new(), &t, Some("y"));
        let check = |rows: Vec<Vec<Value>>, want: &str| {
            let e = m.predict_rows(&rows).unwrap_err();
            assert_eq!(e.to_string(), want);
        };
        check(
            vec![vec![json!(1.0)]],
            "row 0: expected 2 values (x, color), got 1",
        );
        check(
            vec![
                vec![json!(1.0), json!("red")],
                vec![json!("abc"), json!("red")],
            ],
            "row 1, column `x`: expected a number, got \"abc\"",
        );
        check(
            vec![vec![json!(1.0), json!("green")]],
            "row 0, column `color`: unknown category \"green\" (known: blue, red)",
        );
        check(
            vec![vec![json!(null), json!("red")]],
            "row 0, column `x`: missing value (null or NaN), but the model was trained without missing values in this column",
        );
        let e = m.predict_f64(&[1.0, 5.0], 1).unwrap_err();
        assert!(
            matches!(e.problem, InputProblem::BadCategoryIndex { .. }),
            "{e}"
        );
        let e = m.predict_f64(&[1.0, f64::NAN], 1).unwrap_err();
        assert_eq!(e.problem, InputProblem::Missing);
        assert!(m.predict_f64(&[1.0], 1).is_err());
        // Category index 0 is `blue`.
        assert_eq!(m.predict_f64(&[2.0, 0.0], 1).unwrap()[0].label(), Some("b"));
    }

    #[test]
    fn regression_and_clustering() {
        let n = 200;
        let mut r = crate::rng::Rng::new(1);
        let a: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let b: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let y: Vec<f64> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| 1.0 + 2.0 * a - 3.0 * b)
            .collect();
        let t = Table::from_columns([
            ("a", ColumnData::Float(a)),
            ("b", ColumnData::Float(b)),
            ("y", ColumnData::Float(y)),
        ])
        .unwrap();
        let m = fit(Algorithm::LinearRegression, &BTreeMap::new(), &t, Some("y"));
        let metrics = evaluate(&m, &t).unwrap();
        assert!(metrics["r2"] > 0.999_999, "{metrics:?}");
        for (algo, min_r2) in [
            (Algorithm::GradientBoosting, 0.9),
            (Algorithm::RandomForest, 0.8),
            (Algorithm::DecisionTree, 0.8),
        ] {
            let m = fit(algo, &BTreeMap::new(), &t, Some("y"));
            assert_eq!(m.task(), Task::Regression);
            let metrics = evaluate(&m, &t).unwrap();
            assert!(metrics["r2"] > min_r2, "{algo:?} {metrics:?}");
            assert!(matches!(
                m.predict_f64(&[0.0, 0.0], 1).unwrap()[0],
                Prediction::Value(_)
            ));
        }
        let m = fit(Algorithm::Kmeans, &hp(json!({"k": 3})), &t, Some("y"));
        assert_eq!(m.input_names(), ["a", "b"]);
        let metrics = evaluate(&m, &t).unwrap();
        assert!(metrics.contains_key("inertia") && metrics.contains_key("silhouette"));
    }

    #[test]
    fn request_errors_are_in_the_users_words() {
        let t = iris();
        let err = |algorithm, h: Value, target: Option<&str>| {
            train(TrainRequest {
                algorithm,
                hyperparameters: &hp(h),
                train: &t,
                validation: None,
                target,
                seed: 1,
                schema: None,
            })
            .unwrap_err()
            .to_string()
        };
        assert!(
            err(
                Algorithm::RandomForest,
                json!({"n_trees": 3}),
                Some("species")
            )
            .contains("unknown hyperparameter `n_trees` for random_forest")
        );
        assert_eq!(
            err(Algorithm::LogisticRegression, json!({}), None),
            "logistic_regression needs a label column: set `target` on the dataset"
        );
        assert!(
            err(Algorithm::LogisticRegression, json!({}), Some("kind"))
                .contains("no column `kind`")
        );
        assert!(
            err(Algorithm::LinearRegression, json!({}), Some("species")).contains("holds text")
        );
        assert!(
            err(
                Algorithm::LogisticRegression,
                json!({"C": -1}),
                Some("species")
            )
            .contains("`C` of logistic_regression: must be greater than 0")
        );
        let one_class = t.head(10);
        let e = train(TrainRequest {
            algorithm: Algorithm::LogisticRegression,
            hyperparameters: &BTreeMap::new(),
            train: &one_class,
            validation: None,
            target: Some("species"),
            seed: 1,
            schema: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("single class (setosa)"), "{e}");
    }

    #[test]
    fn tuning_a_builtin_picks_the_best_trial() {
        let (tr, te) = iris_split();
        let tuning: Tuning = serde_json::from_value(json!({
            "strategy": "grid",
            "objective": {"metric": "accuracy", "goal": "maximize"},
            "parallelism": 2,
            "searchSpace": {"max_depth": {"values": [1, 3]}}
        }))
        .unwrap();
        let fixed = BTreeMap::new();
        let req = TuneRequest {
            algorithm: Algorithm::DecisionTree,
            hyperparameters: &fixed,
            tuning: &tuning,
            train: &tr,
            validation: &te,
            target: Some("species"),
            seed: 1,
            schema: None,
        };
        let out = tune(req).unwrap();
        assert_eq!(out.trials.len(), 2);
        let best = out.best_trial().unwrap();
        assert_eq!(best.candidate.params["max_depth"], json!(3));
        assert!(best.metrics.as_ref().unwrap()["accuracy"] > 0.9);

        let mut halving = tuning.clone();
        halving.strategy = mlctl_spec::TuningStrategy::Halving;
        halving.max_trials = Some(3);
        halving.search_space =
            serde_json::from_value(json!({"max_depth": {"type": "int", "min": 1, "max": 4}}))
                .unwrap();
        let out = tune(TuneRequest {
            tuning: &halving,
            ..req
        })
        .unwrap();
        assert_eq!(out.trials.len(), 4);
        assert_eq!(out.best_trial().unwrap().candidate.budget, 1.0);

        let mut wrong = tuning.clone();
        wrong.objective.metric = "rmse".into();
        let e = tune(TuneRequest {
            tuning: &wrong,
            ..req
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("no trial reported the objective metric `rmse` (metrics: accuracy"),
            "{e}"
        );
        let mut bad = tuning.clone();
        bad.search_space = serde_json::from_value(json!({"depth": {"values": [1]}})).unwrap();
        let e = tune(TuneRequest {
            tuning: &bad,
            ..req
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown hyperparameter `depth` for decision_tree"),
            "{e}"
        );
    }

    #[test]
    fn training_is_deterministic() {
        let (tr, _) = iris_split();
        let h = hp(json!({"n_estimators": 5}));
        let a = fit(Algorithm::RandomForest, &h, &tr, Some("species"));
        let b = fit(Algorithm::RandomForest, &h, &tr, Some("species"));
        assert_eq!(a.estimator(), b.estimator());
    }

    // -----------------------------------------------------------------------------------------
    // Column roles, categorical ints, sample weights.

    fn schema(yaml_columns: serde_json::Value) -> DataSchema {
        serde_json::from_value(json!({ "columns": yaml_columns })).unwrap()
    }

    /// A loan table: an id (unique text), an int code with declared categories, a text
    /// category, a number, a weight and an int 0/1 label.
    fn loans() -> Table {
        let n = 40;
        let id = (0..n).map(|i| Some(format!("L{i:03}"))).collect();
        let term = (0..n).map(|i| Some([12, 24, 36][i % 3])).collect();
        let grade = (0..n)
            .map(|i| Some(["a", "b"][(i / 3) % 2].to_string()))
            .collect();
        let income = (0..n).map(|i| (i % 7) as f64).collect();
        let w = (0..n).map(|i| 1.0 + (i % 2) as f64).collect();
        let y = (0..n).map(|i| Some(i64::from(i % 3 == 0))).collect();
        Table::from_columns([
            ("id", ColumnData::Str(id)),
            ("term", ColumnData::Int(term)),
            ("grade", ColumnData::Str(grade)),
            ("income", ColumnData::Float(income)),
            ("w", ColumnData::Float(w)),
            ("y", ColumnData::Int(y)),
            ("extra", ColumnData::Float(vec![0.0; n])),
        ])
        .unwrap()
    }

    fn loan_schema() -> DataSchema {
        schema(json!([
            {"name": "id", "type": "string", "role": "id"},
            {"name": "term", "type": "int", "categories": ["12", "24", "36", "60"]},
            {"name": "grade", "type": "category"},
            {"name": "income", "type": "float", "min": 0, "max": 10},
            {"name": "w", "type": "float", "role": "weight"},
            {"name": "y", "type": "int"},
        ]))
    }

    fn fit_loans(algorithm: Algorithm, s: &DataSchema) -> Result<PortableModel, TrainError> {
        let h = BTreeMap::new();
        train(TrainRequest {
            algorithm,
            hyperparameters: &h,
            train: &loans(),
            validation: None,
            target: Some("y"),
            seed: 42,
            schema: Some(s),
        })
    }

    #[test]
    fn only_declared_feature_columns_are_inputs() {
        let m = fit_loans(Algorithm::LogisticRegression, &loan_schema()).unwrap();
        // `id` (role id), `w` (role weight) and `extra` (undeclared) are not inputs.
        assert_eq!(m.input_names(), ["term", "grade", "income"]);
        let passthrough: Vec<(&str, &str)> = m
            .manifest()
            .passthrough
            .iter()
            .map(|p| (p.name.as_str(), p.role.as_str()))
            .collect();
        assert_eq!(passthrough, [("id", "id"), ("w", "weight")]);
    }

    #[test]
    fn an_int_column_with_categories_is_categorical_over_the_declared_values() {
        let m = fit_loans(Algorithm::LogisticRegression, &loan_schema()).unwrap();
        let term = &m.manifest().inputs[0];
        assert_eq!(term.kind, crate::preprocess::FeatureKind::Category);
        // 60 never occurs in training, but it is declared: it is a category all the same.
        assert_eq!(term.categories, ["12", "24", "36", "60"]);
        assert_eq!(term.storage.as_deref(), Some("int"));
        assert!(
            m.predict_rows(&[vec![json!(60), json!("a"), json!(3.0)]])
                .is_ok()
        );
        let e = m
            .predict_rows(&[vec![json!(48), json!("a"), json!(3.0)]])
            .unwrap_err();
        assert!(
            matches!(e.problem, InputProblem::UnknownCategory { .. }),
            "{e}"
        );
        let income = &m.manifest().inputs[2];
        assert_eq!((income.min, income.max), (Some(0.0), Some(10.0)));
    }

    #[test]
    fn an_int_label_keeps_its_type() {
        let m = fit_loans(Algorithm::LogisticRegression, &loan_schema()).unwrap();
        let out = &m.manifest().output;
        assert_eq!(out.label_type.as_deref(), Some("int"));
        assert_eq!(out.class_json(1).as_deref(), Some("1"));
        let iris = fit(
            Algorithm::DecisionTree,
            &BTreeMap::new(),
            &iris(),
            Some("species"),
        );
        assert_eq!(
            iris.manifest().output.class_json(0).as_deref(),
            Some("\"setosa\"")
        );
    }

    #[test]
    fn sample_weights_change_the_fit() {
        // y = 2x, plus one outlier row; with weight 0 on the outlier the fit is exact.
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let mut y: Vec<f64> = x.iter().map(|v| 2.0 * v).collect();
        y[9] = 100.0;
        let w: Vec<f64> = (0..10).map(|i| if i == 9 { 0.0 } else { 1.0 }).collect();
        let t = Table::from_columns([
            ("x", ColumnData::Float(x)),
            ("w", ColumnData::Float(w)),
            ("y", ColumnData::Float(y)),
        ])
        .unwrap();
        let s = schema(json!([
            {"name": "x", "type": "float"},
            {"name": "w", "type": "float", "role": "weight"},
            {"name": "y", "type": "float"},
        ]));
        let h = BTreeMap::new();
        let mut ignored = s.clone();
        ignored.columns[1].role = Some(ColumnRole::Ignore);
        let predict_9 = |schema: Option<&DataSchema>| {
            let m = train(TrainRequest {
                algorithm: Algorithm::LinearRegression,
                hyperparameters: &h,
                train: &t,
                validation: None,
                target: Some("y"),
                seed: 42,
                schema,
            })
            .unwrap();
            m.predict_rows(&[vec![json!(9.0)]]).unwrap()[0].as_f64()
        };
        assert!((predict_9(Some(&s)) - 18.0).abs() < 1e-6);
        // With `w` ignored, the outlier pulls the fit.
        let unweighted = predict_9(Some(&ignored));
        assert!((unweighted - 18.0).abs() > 1.0, "{unweighted}");
    }

    #[test]
    fn weights_are_refused_for_an_algorithm_that_takes_none() {
        let e = fit_loans(Algorithm::DecisionTree, &loan_schema()).unwrap_err();
        assert!(
            e.to_string()
                .contains("decision_tree cannot train with sample weights (column `w`"),
            "{e}"
        );
        let mut s = loan_schema();
        s.columns[4].role = Some(ColumnRole::Ignore);
        assert!(fit_loans(Algorithm::DecisionTree, &s).is_ok());
    }

    #[test]
    fn a_weight_of_two_counts_a_row_twice_in_logistic_regression() {
        // Weighting row i by 2 fits what duplicating it fits (no penalty, so the number of
        // rows does not move the optimum).
        let x: Vec<f64> = (0..30)
            .map(|i| f64::from(i % 10) + f64::from(i / 10) * 0.1)
            .collect();
        // Not separable (every fifth label flipped), so the optimum is finite.
        let y: Vec<i64> = (0..30)
            .map(|i| i64::from((i % 10 >= 4) != (i % 5 == 0)))
            .collect();
        let w: Vec<f64> = (0..30)
            .map(|i| if i % 7 == 0 { 2.0 } else { 1.0 })
            .collect();
        let weighted = Table::from_columns([
            ("x", ColumnData::Float(x.clone())),
            ("w", ColumnData::Float(w.clone())),
            ("y", ColumnData::Int(y.iter().map(|v| Some(*v)).collect())),
        ])
        .unwrap();
        let dup: Vec<usize> = (0..30).flat_map(|i| vec![i; w[i] as usize]).collect();
        let duplicated = weighted.take(&dup);
        let s = schema(json!([
            {"name": "x", "type": "float"},
            {"name": "w", "type": "float", "role": "weight"},
            {"name": "y", "type": "int"},
        ]));
        let mut ignored = s.clone();
        ignored.columns[1].role = Some(ColumnRole::Ignore);
        let h = hp(json!({"penalty": "none", "max_iter": 500, "tol": 1e-8}));
        let proba = |t: &Table, schema: &DataSchema| {
            let m = train(TrainRequest {
                algorithm: Algorithm::LogisticRegression,
                hyperparameters: &h,
                train: t,
                validation: None,
                target: Some("y"),
                seed: 42,
                schema: Some(schema),
            })
            .unwrap();
            m.predict_proba(&[vec![json!(3.7)]]).unwrap()[0][1]
        };
        let (a, b) = (proba(&weighted, &s), proba(&duplicated, &ignored));
        assert!((a - b).abs() < 1e-3, "weighted {a} vs duplicated {b}");
        assert!(
            (a - proba(&weighted, &ignored)).abs() > 1e-3,
            "the weights changed nothing"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Gradient boosting: weights, class weights, early stopping, importance.

    /// A noisy two-class table: `x0` decides the label (with 20% flipped), `x1` and `x2` are
    /// noise, `w` a weight column, all on a grid of values (so weighting and duplicating bin
    /// alike).
    fn noisy(n: usize, seed: u64) -> Table {
        let mut r = crate::rng::Rng::new(seed);
        let x0: Vec<f64> = (0..n).map(|_| r.index(40) as f64).collect();
        let x1: Vec<f64> = (0..n).map(|_| r.index(30) as f64).collect();
        let x2: Vec<f64> = (0..n).map(|_| r.index(20) as f64).collect();
        let y: Vec<Option<String>> = x0
            .iter()
            .map(|&v| {
                let c = (v >= 20.0) != (r.next_f64() < 0.2);
                Some(if c { "yes" } else { "no" }.to_string())
            })
            .collect();
        let w: Vec<f64> = (0..n).map(|i| if i % 5 == 0 { 2.0 } else { 1.0 }).collect();
        Table::from_columns([
            ("x0", ColumnData::Float(x0)),
            ("x1", ColumnData::Float(x1)),
            ("x2", ColumnData::Float(x2)),
            ("w", ColumnData::Float(w)),
            ("y", ColumnData::Str(y)),
        ])
        .unwrap()
    }

    fn boost(
        h: &BTreeMap<String, Value>,
        t: &Table,
        validation: Option<&Table>,
        schema: &DataSchema,
    ) -> Result<PortableModel, TrainError> {
        train(TrainRequest {
            algorithm: Algorithm::GradientBoosting,
            hyperparameters: h,
            train: t,
            validation,
            target: Some("y"),
            seed: 42,
            schema: Some(schema),
        })
    }

    fn noisy_schema(weight: bool) -> DataSchema {
        schema(json!([
            {"name": "x0", "type": "float"},
            {"name": "x1", "type": "float"},
            {"name": "x2", "type": "float"},
            {"name": "w", "type": "float", "role": if weight { "weight" } else { "ignore" }},
            {"name": "y", "type": "string"},
        ]))
    }

    fn proba_yes(m: &PortableModel, t: &Table) -> Vec<f64> {
        let (_, scores) = m.predict_table(t).unwrap();
        let yes = m.classes().iter().position(|c| c == "yes").unwrap();
        scores.chunks(2).map(|s| s[yes]).collect()
    }

    #[test]
    fn a_weight_of_two_counts_a_row_twice_in_gradient_boosting() {
        let t = noisy(300, 1);
        let Some(ColumnData::Float(w)) = t.column("w").cloned() else {
            unreachable!()
        };
        let dup: Vec<usize> = (0..300).flat_map(|i| vec![i; w[i] as usize]).collect();
        let h = hp(json!({"n_estimators": 20, "max_depth": 3}));
        let weighted = boost(&h, &t, None, &noisy_schema(true)).unwrap();
        let duplicated = boost(&h, &t.take(&dup), None, &noisy_schema(false)).unwrap();
        let unweighted = boost(&h, &t, None, &noisy_schema(false)).unwrap();
        let (a, b, c) = (
            proba_yes(&weighted, &t),
            proba_yes(&duplicated, &t),
            proba_yes(&unweighted, &t),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-9, "weighted {x} vs duplicated {y}");
        }
        assert!(
            a.iter().zip(&c).any(|(x, y)| (x - y).abs() > 1e-6),
            "the weights changed nothing"
        );
    }

    #[test]
    fn a_class_weight_is_a_weight_on_every_row_of_its_class() {
        let t = noisy(300, 2);
        let Some(ColumnData::Str(y)) = t.column("y").cloned() else {
            unreachable!()
        };
        // The same rows with a weight column of 3 on "yes" and 1 elsewhere.
        let mut with_w = t.without("w");
        with_w
            .push_column(
                "w",
                ColumnData::Float(
                    y.iter()
                        .map(|c| {
                            if c.as_deref() == Some("yes") {
                                3.0
                            } else {
                                1.0
                            }
                        })
                        .collect(),
                ),
            )
            .unwrap();
        let by_class = boost(
            &hp(json!({"n_estimators": 15, "class_weight": {"yes": 3}})),
            &t,
            None,
            &noisy_schema(false),
        )
        .unwrap();
        let by_rows = boost(
            &hp(json!({"n_estimators": 15})),
            &with_w,
            None,
            &noisy_schema(true),
        )
        .unwrap();
        for (a, b) in proba_yes(&by_class, &t)
            .iter()
            .zip(&proba_yes(&by_rows, &t))
        {
            assert!((a - b).abs() < 1e-9, "class weight {a} vs row weight {b}");
        }
        let e = boost(
            &hp(json!({"class_weight": {"maybe": 2}})),
            &t,
            None,
            &noisy_schema(false),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains(
                "names class \"maybe\", which the label does not have (classes: no, yes)"
            ),
            "{e}"
        );
    }

    #[test]
    fn balanced_class_weights_raise_a_rare_class() {
        // "yes" on 10% of rows: balanced weights lift its predicted probability.
        let t = noisy(600, 3);
        let keep: Vec<usize> = {
            let Some(ColumnData::Str(y)) = t.column("y") else {
                unreachable!()
            };
            let mut yes = 0;
            (0..600)
                .filter(|&i| {
                    if y[i].as_deref() == Some("yes") {
                        yes += 1;
                        yes % 6 == 0
                    } else {
                        true
                    }
                })
                .collect()
        };
        let rare = t.take(&keep);
        let h = hp(json!({"n_estimators": 20}));
        let plain = boost(&h, &rare, None, &noisy_schema(false)).unwrap();
        let balanced = boost(
            &hp(json!({"n_estimators": 20, "class_weight": "balanced"})),
            &rare,
            None,
            &noisy_schema(false),
        )
        .unwrap();
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        let (p, b) = (
            mean(proba_yes(&plain, &rare)),
            mean(proba_yes(&balanced, &rare)),
        );
        assert!(p < 0.2 && b > 0.3, "plain {p}, balanced {b}");
    }

    #[test]
    fn early_stopping_keeps_the_round_with_the_lowest_validation_loss() {
        // A fast learner on noisy labels overfits within a few dozen rounds.
        let (t, v) = (noisy(400, 4), noisy(300, 5));
        let schema = noisy_schema(false);
        let h = hp(
            json!({"n_estimators": 300, "learning_rate": 0.5, "max_depth": 4, "early_stopping_rounds": 5}),
        );
        let m = boost(&h, &t, Some(&v), &schema).unwrap();
        let Estimator::Boosting(b) = m.estimator() else {
            unreachable!()
        };
        let es = b.early_stopping.clone().expect("early stopping recorded");
        assert!(es.best_round < 60, "{es:?}");
        assert_eq!(b.rounds(), es.best_round);
        assert_eq!(es.rounds_trained, es.best_round + 5);
        // The kept model's validation log loss is what was recorded, and below the loss of
        // the same model trained through every round.
        let log_loss = |m: &PortableModel| {
            let Some(ColumnData::Str(y)) = v.column("y") else {
                unreachable!()
            };
            let p = proba_yes(m, &v);
            p.iter()
                .zip(y)
                .map(|(p, y)| {
                    let q = if y.as_deref() == Some("yes") {
                        *p
                    } else {
                        1.0 - p
                    };
                    -q.max(1e-15).ln()
                })
                .sum::<f64>()
                / p.len() as f64
        };
        assert!(
            (log_loss(&m) - es.best_loss).abs() < 1e-9,
            "{} vs {es:?}",
            log_loss(&m)
        );
        let mut all = h.clone();
        all.remove("early_stopping_rounds");
        let full = boost(&all, &t, None, &schema).unwrap();
        assert!(log_loss(&full) > es.best_loss + 0.05);
        // No validation rows: an error that says what to give.
        let e = boost(&h, &t, None, &schema).unwrap_err();
        assert!(
            e.to_string().contains("early_stopping_rounds") && e.to_string().contains("validation"),
            "{e}"
        );
    }

    #[test]
    fn importance_ranks_the_column_that_decides_the_label_first() {
        let (t, test) = (noisy(400, 6), noisy(300, 7));
        let m = boost(
            &hp(json!({"n_estimators": 30})),
            &t,
            None,
            &noisy_schema(false),
        )
        .unwrap();
        let imp = crate::importance::importance(&m, &test, 1);
        assert_eq!(imp.len(), 3, "{imp:?}");
        assert_eq!(imp[0].feature, "x0");
        let gain_sum: f64 = imp.iter().filter_map(|i| i.gain).sum();
        assert!((gain_sum - 1.0).abs() < 1e-9);
        assert!(
            imp[0].gain.unwrap() > 0.5 && imp[0].permutation.unwrap() > 0.2,
            "{imp:?}"
        );
        for i in &imp[1..] {
            assert!(i.permutation.unwrap().abs() < 0.05, "{imp:?}");
        }
    }
}
