//! mlctl's built-in algorithms as SageMaker's: one table each for the hyperparameter names,
//! the tuning objectives and the metrics a job reports. The trainer builds its requests from
//! these tables and `support` refuses at plan time what they do not cover, so a job never
//! fails at CreateTrainingJob over a name or an objective.
//!
//! | mlctl | SageMaker |
//! |---|---|
//! | `linear_regression`, `logistic_regression` | linear-learner |
//! | `gradient_boosting`, `random_forest` | XGBoost (random forest: its random-forest mode) |
//! | `kmeans` | k-means |

use mlctl_spec::{Algorithm, ColumnType, Goal, Kind, Resource, Spec};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What a built-in learns, which decides the SageMaker settings and the metrics it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Shape {
    Regression,
    /// Two classes (or a numeric label for logistic regression).
    Binary,
    Multiclass,
    Clustering,
}

/// SageMaker's algorithm behind an mlctl built-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    LinearLearner,
    Xgboost,
    Kmeans,
}

impl Family {
    pub fn of(a: Algorithm) -> Option<Family> {
        match a {
            Algorithm::LinearRegression | Algorithm::LogisticRegression => {
                Some(Family::LinearLearner)
            }
            Algorithm::GradientBoosting | Algorithm::RandomForest => Some(Family::Xgboost),
            Algorithm::Kmeans => Some(Family::Kmeans),
            Algorithm::DecisionTree => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::LinearLearner => "linear-learner",
            Family::Xgboost => "XGBoost",
            Family::Kmeans => "k-means",
        }
    }
}

/// The shape of a job whose data is known: `classification` when the label is text or
/// boolean, with `classes` distinct values.
pub(crate) fn shape_of(a: Algorithm, classification: bool, classes: usize) -> Shape {
    match a {
        Algorithm::Kmeans => Shape::Clustering,
        Algorithm::LinearRegression => Shape::Regression,
        Algorithm::LogisticRegression if classes <= 2 => Shape::Binary,
        Algorithm::LogisticRegression => Shape::Multiclass,
        _ if !classification => Shape::Regression,
        _ if classes <= 2 => Shape::Binary,
        _ => Shape::Multiclass,
    }
}

/// The shapes a TrainingJob may train as, from what the spec says of its dataset's label
/// (all of them the algorithm allows when the schema does not say).
pub(crate) fn plan_shapes(spec: &Spec, job: &Resource, a: Algorithm) -> Vec<Shape> {
    let label = job
        .as_training_job()
        .and_then(|t| spec.find(Kind::Dataset, &t.dataset))
        .and_then(|d| d.as_dataset())
        .and_then(|d| {
            let target = d.target.as_deref()?;
            d.schema.as_ref()?.columns.iter().find(|c| c.name == target)
        });
    let all: &[Shape] = match a {
        Algorithm::Kmeans => &[Shape::Clustering],
        Algorithm::LinearRegression => &[Shape::Regression],
        Algorithm::LogisticRegression => &[Shape::Binary, Shape::Multiclass],
        _ => &[Shape::Regression, Shape::Binary, Shape::Multiclass],
    };
    let Some(col) = label else {
        return all.to_vec();
    };
    let known = match col.ty {
        ColumnType::Float | ColumnType::Int => Some(shape_of(a, false, 0)),
        ColumnType::Bool => Some(shape_of(a, true, 2)),
        ColumnType::Category => col.categories.as_ref().map(|c| shape_of(a, true, c.len())),
        ColumnType::String => None,
    };
    match known {
        Some(s) => vec![s],
        None => all
            .iter()
            .copied()
            .filter(|s| *s != Shape::Regression || a == Algorithm::LinearRegression)
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Hyperparameters

/// How an mlctl hyperparameter's value becomes the SageMaker one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Translate {
    /// Same value.
    Same,
    /// `1 / (value * n)`, n the training rows (scikit-learn's `C` -> linear-learner's
    /// per-sample weight decay `wd`).
    InversePerSample,
    /// `value / n` (ridge `alpha` -> per-sample `wd`).
    PerSample,
    /// scikit-learn's `max_features` (a fraction, a count, `sqrt`, `log2`) -> XGBoost's
    /// `colsample_bynode`, a fraction of the `d` features.
    FeatureFraction,
}

/// Facts of the data a translation needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DataFacts {
    /// Training rows.
    pub rows: usize,
    /// Feature columns.
    pub features: usize,
}

impl Translate {
    /// The SageMaker value of a number (`count`: a count of features, for `max_features`).
    pub fn apply(self, v: f64, count: bool, facts: DataFacts) -> f64 {
        let n = facts.rows.max(1) as f64;
        let d = facts.features.max(1) as f64;
        match self {
            Translate::Same => v,
            Translate::InversePerSample => 1.0 / (v * n).max(f64::MIN_POSITIVE),
            Translate::PerSample => v / n,
            Translate::FeatureFraction if count => (v.round().clamp(1.0, d)) / d,
            Translate::FeatureFraction => v.clamp(f64::MIN_POSITIVE, 1.0),
        }
    }

    /// The SageMaker value of a JSON value; `Err` says why it has none.
    pub fn apply_value(self, v: &Value, facts: DataFacts) -> Result<String, String> {
        if self == Translate::Same {
            return Ok(match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        if self == Translate::FeatureFraction {
            let d = facts.features.max(1) as f64;
            let fraction = match v {
                Value::String(s) if s == "sqrt" || s == "auto" => (d.sqrt().floor().max(1.0)) / d,
                Value::String(s) if s == "log2" => (d.log2().floor().max(1.0)) / d,
                Value::String(s) => match s.parse::<f64>() {
                    Ok(x) if x.fract() == 0.0 && x >= 1.0 => self.apply(x, true, facts),
                    Ok(x) if x > 0.0 && x < 1.0 => x,
                    _ => return Err(format!("{s:?} is not sqrt, log2, a count or a fraction")),
                },
                Value::Number(n) => {
                    let x = n.as_f64().unwrap_or(0.0);
                    if n.is_u64() && x >= 1.0 {
                        self.apply(x, true, facts)
                    } else if x > 0.0 && x <= 1.0 {
                        x
                    } else {
                        return Err(format!(
                            "must be a count >= 1 or a fraction in (0, 1], got {x}"
                        ));
                    }
                }
                other => {
                    return Err(format!(
                        "expected sqrt, log2, a count or a fraction, got {other}"
                    ));
                }
            };
            return Ok(format!("{fraction}"));
        }
        let x = v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| format!("must be a number, got {v}"))?;
        if x <= 0.0 && self == Translate::InversePerSample {
            return Err(format!("must be > 0, got {x}"));
        }
        Ok(format!("{}", self.apply(x, false, facts)))
    }
}

/// What happens to one mlctl hyperparameter of a built-in on SageMaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Hp {
    /// Becomes SageMaker's hyperparameter of that name.
    To(&'static str, Translate),
    /// SageMaker's algorithm has nothing that means the same: why, and what to do instead.
    Refused(&'static str, &'static str),
}

use Translate::{FeatureFraction, InversePerSample, PerSample, Same};

const NO_SEED_LL: Hp = Hp::Refused(
    "SageMaker's linear-learner takes no seed",
    "remove it for this target",
);
const NO_LEAF_WISE: Hp = Hp::Refused(
    "mlctl grows at most this many leaves best-first, with no depth limit unless `max_depth` is set; XGBoost's `max_leaves` depends on its `grow_policy` and its own default `max_depth` of 6",
    "remove it for this target and bound the trees with `max_depth`, or set XGBoost's own `max_leaves` and `grow_policy`",
);
const NO_MIN_SAMPLES: Hp = Hp::Refused(
    "XGBoost has no minimum sample count per split or leaf (its `min_child_weight` is a sum of hessians, not a count)",
    "remove it, or set XGBoost's own `min_child_weight`",
);

/// Every mlctl hyperparameter of each SageMaker-backed built-in
/// (`mlctl_ml::hyperparameter_names`), with what it becomes on SageMaker.
pub(crate) const HYPERPARAMETERS: &[(Algorithm, &str, Hp)] = &[
    (
        Algorithm::LinearRegression,
        "alpha",
        Hp::To("wd", PerSample),
    ),
    (Algorithm::LinearRegression, "l2", Hp::To("wd", PerSample)),
    (
        Algorithm::LinearRegression,
        "fit_intercept",
        Hp::To("use_bias", Same),
    ),
    (
        Algorithm::LogisticRegression,
        "C",
        Hp::To("wd", InversePerSample),
    ),
    (
        Algorithm::LogisticRegression,
        "max_iter",
        Hp::To("epochs", Same),
    ),
    (
        Algorithm::LogisticRegression,
        "tol",
        Hp::Refused(
            "linear-learner stops on a relative improvement of the loss between epochs, not scikit-learn's solver tolerance",
            "remove it, or set linear-learner's own `early_stopping_tolerance`",
        ),
    ),
    (
        Algorithm::LogisticRegression,
        "fit_intercept",
        Hp::To("use_bias", Same),
    ),
    (
        Algorithm::LogisticRegression,
        "penalty",
        Hp::Refused(
            "linear-learner takes the strength of each penalty, not its name",
            "remove it, and set `C` (L2) or linear-learner's own `l1`",
        ),
    ),
    (
        Algorithm::LogisticRegression,
        "solver",
        Hp::Refused(
            "linear-learner trains with stochastic gradient descent, not scikit-learn's solvers",
            "remove it, or set linear-learner's own `optimizer` (sgd, adam, rmsprop, auto)",
        ),
    ),
    (Algorithm::LogisticRegression, "random_state", NO_SEED_LL),
    (
        Algorithm::GradientBoosting,
        "n_estimators",
        Hp::To("num_round", Same),
    ),
    (
        Algorithm::GradientBoosting,
        "learning_rate",
        Hp::To("eta", Same),
    ),
    (
        Algorithm::GradientBoosting,
        "loss",
        Hp::Refused(
            "this target chooses XGBoost's objective from the label (binary:logistic, multi:softprob or reg:squarederror)",
            "remove it, or set XGBoost's own `objective`",
        ),
    ),
    (
        Algorithm::GradientBoosting,
        "max_depth",
        Hp::To("max_depth", Same),
    ),
    (
        Algorithm::GradientBoosting,
        "min_samples_split",
        NO_MIN_SAMPLES,
    ),
    (
        Algorithm::GradientBoosting,
        "min_samples_leaf",
        NO_MIN_SAMPLES,
    ),
    (
        Algorithm::GradientBoosting,
        "max_features",
        Hp::To("colsample_bynode", FeatureFraction),
    ),
    (
        Algorithm::GradientBoosting,
        "subsample",
        Hp::To("subsample", Same),
    ),
    (
        Algorithm::GradientBoosting,
        "l2_regularization",
        Hp::To("lambda", Same),
    ),
    (
        Algorithm::GradientBoosting,
        "max_bins",
        Hp::To("max_bin", Same),
    ),
    (
        Algorithm::GradientBoosting,
        "random_state",
        Hp::To("seed", Same),
    ),
    (Algorithm::GradientBoosting, "max_leaf_nodes", NO_LEAF_WISE),
    (Algorithm::GradientBoosting, "num_leaves", NO_LEAF_WISE),
    (
        Algorithm::GradientBoosting,
        "min_child_weight",
        Hp::To("min_child_weight", Same),
    ),
    (
        Algorithm::GradientBoosting,
        "early_stopping_rounds",
        Hp::Refused(
            "SageMaker's XGBoost stops early on its `validation` channel, which this target fills with the held-out rows that also score the job's gates, so the round would be chosen on the test rows",
            "remove it for this target and set `n_estimators`, or tune `n_estimators` with `tuning` (trials are compared on validation rows)",
        ),
    ),
    (
        Algorithm::GradientBoosting,
        "class_weight",
        Hp::Refused(
            "SageMaker's XGBoost takes no per-class weights (its `scale_pos_weight` weighs the positive class of a binary label only)",
            "remove it for this target, or set XGBoost's own `scale_pos_weight` for a binary label",
        ),
    ),
    (
        Algorithm::RandomForest,
        "n_estimators",
        Hp::To("num_parallel_tree", Same),
    ),
    (
        Algorithm::RandomForest,
        "criterion",
        Hp::Refused(
            "XGBoost grows its trees on gradient statistics, not on gini or entropy",
            "remove it for this target",
        ),
    ),
    (
        Algorithm::RandomForest,
        "max_depth",
        Hp::To("max_depth", Same),
    ),
    (Algorithm::RandomForest, "min_samples_split", NO_MIN_SAMPLES),
    (Algorithm::RandomForest, "min_samples_leaf", NO_MIN_SAMPLES),
    (
        Algorithm::RandomForest,
        "max_features",
        Hp::To("colsample_bynode", FeatureFraction),
    ),
    (
        Algorithm::RandomForest,
        "bootstrap",
        Hp::Refused(
            "XGBoost's random forests sample rows without replacement (`subsample`, 0.8 here), never by bootstrap",
            "remove it, or set XGBoost's own `subsample`",
        ),
    ),
    (Algorithm::RandomForest, "max_bins", Hp::To("max_bin", Same)),
    (Algorithm::RandomForest, "n_jobs", Hp::To("nthread", Same)),
    (
        Algorithm::RandomForest,
        "random_state",
        Hp::To("seed", Same),
    ),
    (Algorithm::Kmeans, "n_clusters", Hp::To("k", Same)),
    (Algorithm::Kmeans, "k", Hp::To("k", Same)),
    (Algorithm::Kmeans, "max_iter", Hp::To("epochs", Same)),
    (
        Algorithm::Kmeans,
        "tol",
        Hp::Refused(
            "SageMaker's k-means runs a fixed number of epochs with no convergence tolerance",
            "remove it, and bound the work with `max_iter` (epochs)",
        ),
    ),
    (
        Algorithm::Kmeans,
        "n_init",
        Hp::To("local_lloyd_num_trials", Same),
    ),
    (
        Algorithm::Kmeans,
        "random_state",
        Hp::Refused(
            "SageMaker's k-means takes no seed",
            "remove it for this target",
        ),
    ),
];

/// SageMaker's own hyperparameters of each algorithm, passed through as written.
pub(crate) fn native_names(f: Family) -> &'static [&'static str] {
    match f {
        Family::LinearLearner => &[
            "accuracy_top_k",
            "balance_multiclass_weights",
            "beta_1",
            "beta_2",
            "bias_lr_mult",
            "bias_wd_mult",
            "binary_classifier_model_selection_criteria",
            "early_stopping_patience",
            "early_stopping_tolerance",
            "epochs",
            "f_beta",
            "feature_dim",
            "huber_delta",
            "init_bias",
            "init_method",
            "init_scale",
            "init_sigma",
            "l1",
            "learning_rate",
            "loss",
            "loss_insensitivity",
            "lr_scheduler_factor",
            "lr_scheduler_minimum_lr",
            "lr_scheduler_step",
            "margin",
            "mini_batch_size",
            "momentum",
            "normalize_data",
            "normalize_label",
            "num_calibration_samples",
            "num_classes",
            "num_models",
            "num_point_for_scaler",
            "optimizer",
            "positive_example_weight_mult",
            "predictor_type",
            "quantile",
            "target_precision",
            "target_recall",
            "unbias_data",
            "unbias_label",
            "use_bias",
            "use_lr_scheduler",
            "wd",
        ],
        Family::Xgboost => &[
            "alpha",
            "base_score",
            "booster",
            "colsample_bylevel",
            "colsample_bynode",
            "colsample_bytree",
            "csv_weights",
            "deterministic_histogram",
            "early_stopping_rounds",
            "eta",
            "eval_metric",
            "gamma",
            "grow_policy",
            "interaction_constraints",
            "lambda",
            "lambda_bias",
            "max_bin",
            "max_delta_step",
            "max_depth",
            "max_leaves",
            "min_child_weight",
            "monotone_constraints",
            "normalize_type",
            "nthread",
            "num_class",
            "num_parallel_tree",
            "num_round",
            "objective",
            "one_drop",
            "process_type",
            "rate_drop",
            "refresh_leaf",
            "sample_type",
            "scale_pos_weight",
            "seed",
            "single_precision_histogram",
            "sketch_eps",
            "skip_drop",
            "subsample",
            "tree_method",
            "tweedie_variance_power",
            "updater",
            "verbosity",
        ],
        Family::Kmeans => &[
            "epochs",
            "eval_metrics",
            "extra_center_factor",
            "feature_dim",
            "half_life_time_size",
            "init_method",
            "k",
            "local_lloyd_init_method",
            "local_lloyd_max_iter",
            "local_lloyd_num_trials",
            "local_lloyd_tol",
            "mini_batch_size",
        ],
    }
}

/// The table's entry for an mlctl hyperparameter.
pub(crate) fn mlctl_hp(a: Algorithm, name: &str) -> Option<Hp> {
    HYPERPARAMETERS
        .iter()
        .find(|(alg, n, _)| *alg == a && *n == name)
        .map(|(_, _, hp)| *hp)
}

/// What a hyperparameter name written for built-in `a` becomes on SageMaker: its translation,
/// or why it is refused (and what to do instead).
pub(crate) fn resolve(a: Algorithm, name: &str) -> Result<(String, Translate), (String, String)> {
    let family = Family::of(a).ok_or_else(|| {
        (
            format!("`{}` has no SageMaker built-in", a.as_str()),
            "run it in script mode".to_string(),
        )
    })?;
    match mlctl_hp(a, name) {
        Some(Hp::To(sm, t)) => Ok((sm.to_string(), t)),
        Some(Hp::Refused(why, instead)) => Err((format!("`{name}`: {why}"), instead.to_string())),
        None if native_names(family).contains(&name) => Ok((name.to_string(), Same)),
        None => Err((
            format!(
                "`{name}` is neither a hyperparameter of mlctl's `{}` ({}) nor one of SageMaker's {}",
                a.as_str(),
                mlctl_ml::hyperparameter_names(a).join(", "),
                family.name()
            ),
            "check the spelling, or use the name SageMaker's algorithm documents".to_string(),
        )),
    }
}

/// Every hyperparameter of `hps` that cannot be given to SageMaker's built-in, at once:
/// names that do not translate and values that do not (`max_features: sqrt2`).
pub(crate) fn hyperparameter_refusals(
    a: Algorithm,
    hps: &BTreeMap<String, Value>,
) -> Vec<(String, String)> {
    let facts = DataFacts {
        rows: 100,
        features: 10,
    };
    let mut out = Vec::new();
    for (name, value) in hps {
        match resolve(a, name) {
            Err(r) => out.push(r),
            Ok((_, t)) => {
                if let Err(e) = t.apply_value(value, facts) {
                    out.push((
                        format!("`{name}` {e}"),
                        "give a value the algorithm takes".into(),
                    ));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Metrics and objectives

/// XGBoost's `eval_metric` as the job sets it: the user's, else mlctl's for the shape.
fn xgboost_eval_metrics(shape: Shape, hps: &BTreeMap<String, Value>) -> Vec<String> {
    if let Some(v) = hps.get("eval_metric") {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        return text
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
    }
    xgboost_default_metrics(shape)
        .split(',')
        .map(str::to_string)
        .collect()
}

/// mlctl's XGBoost `eval_metric` for a shape.
pub(crate) fn xgboost_default_metrics(shape: Shape) -> &'static str {
    match shape {
        Shape::Binary => "error,logloss,auc",
        Shape::Multiclass => "merror,mlogloss",
        _ => "rmse,mae",
    }
}

/// The metrics SageMaker reports for a job of `a` in `shape` as mlctl configures it (a
/// `train` and a `validation` channel; k-means: `train` and `test`), by SageMaker's names.
pub(crate) fn reported(a: Algorithm, shape: Shape, hps: &BTreeMap<String, Value>) -> Vec<String> {
    let Some(family) = Family::of(a) else {
        return Vec::new();
    };
    let with = |channel: &str, names: &[&str]| -> Vec<String> {
        names.iter().map(|n| format!("{channel}:{n}")).collect()
    };
    match family {
        Family::LinearLearner => {
            let mut out = vec!["train:objective_loss".to_string()];
            out.extend(with(
                "validation",
                match shape {
                    Shape::Regression => &["objective_loss", "mse", "rmse", "absolute_loss"],
                    Shape::Binary => &[
                        "objective_loss",
                        "binary_classification_accuracy",
                        "binary_f_beta",
                        "precision",
                        "recall",
                        "roc_auc_score",
                    ],
                    _ => &[
                        "objective_loss",
                        "multiclass_accuracy",
                        "multiclass_top_k_accuracy",
                        "macro_f_beta",
                        "macro_precision",
                        "macro_recall",
                        "dcg",
                    ],
                },
            ));
            out
        }
        Family::Xgboost => {
            let metrics = xgboost_eval_metrics(shape, hps);
            let names: Vec<&str> = metrics.iter().map(String::as_str).collect();
            let mut out = with("train", &names);
            out.extend(with("validation", &names));
            out
        }
        Family::Kmeans => with("test", &["msd", "ssd"]),
    }
}

/// The metric names a gate can use for such a job: the vocabulary's names among what the job
/// reports (see `trainer::normalize_metrics`; the spec refuses any other name on a built-in).
pub(crate) fn gate_metrics(
    a: Algorithm,
    shape: Shape,
    hps: &BTreeMap<String, Value>,
) -> BTreeSet<String> {
    let raw: Vec<(String, f64)> = reported(a, shape, hps)
        .into_iter()
        .map(|m| (m, 0.0))
        .collect();
    let sm_hps = sagemaker_hps(a, shape, hps);
    crate::trainer::normalize_metrics(&raw, crate::trainer::Reporter::Builtin(&sm_hps))
        .into_keys()
        .filter(|m| mlctl_spec::metrics::metric(m).is_some())
        .collect()
}

/// The hyperparameters that decide what a built-in's metrics measure, by SageMaker's names
/// and as SageMaker will be given them: linear-learner's `predictor_type` (from the shape),
/// `loss` and `f_beta` when written.
fn sagemaker_hps(
    a: Algorithm,
    shape: Shape,
    hps: &BTreeMap<String, Value>,
) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    if Family::of(a) == Some(Family::LinearLearner) {
        let predictor = match shape {
            Shape::Binary => "binary_classifier",
            Shape::Multiclass => "multiclass_classifier",
            _ => "regressor",
        };
        out.insert("predictor_type".to_string(), predictor.to_string());
    }
    for k in ["loss", "f_beta"] {
        if let Some(v) = hps.get(k) {
            out.insert(
                k.to_string(),
                v.as_str().map(str::to_string).unwrap_or(v.to_string()),
            );
        }
    }
    out
}

/// The metric vocabulary (`mlctl_spec::metrics`, docs/metrics.md), as SageMaker's algorithm
/// optimises it: (family, shape, vocabulary name, SageMaker metric, whether the goal flips).
/// One spec tunes and gates on `roc_auc` on every target; SageMaker's own names (`validation:auc`)
/// are this provider's business.
const OBJECTIVES: &[(Family, Shape, &str, &str, bool)] = &[
    (
        Family::Xgboost,
        Shape::Binary,
        "accuracy",
        "validation:error",
        true,
    ),
    (
        Family::Xgboost,
        Shape::Binary,
        "roc_auc",
        "validation:auc",
        false,
    ),
    (
        Family::Xgboost,
        Shape::Binary,
        "log_loss",
        "validation:logloss",
        false,
    ),
    (
        Family::Xgboost,
        Shape::Multiclass,
        "accuracy",
        "validation:merror",
        true,
    ),
    (
        Family::Xgboost,
        Shape::Multiclass,
        "log_loss",
        "validation:mlogloss",
        false,
    ),
    (
        Family::Xgboost,
        Shape::Regression,
        "rmse",
        "validation:rmse",
        false,
    ),
    (
        Family::Xgboost,
        Shape::Regression,
        "mae",
        "validation:mae",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Binary,
        "accuracy",
        "validation:binary_classification_accuracy",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Binary,
        "roc_auc",
        "validation:roc_auc_score",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Binary,
        "log_loss",
        "validation:objective_loss",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Multiclass,
        "accuracy",
        "validation:multiclass_accuracy",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Multiclass,
        "f1_macro",
        "validation:macro_f_beta",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Multiclass,
        "precision_macro",
        "validation:macro_precision",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Multiclass,
        "recall_macro",
        "validation:macro_recall",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Multiclass,
        "log_loss",
        "validation:objective_loss",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Regression,
        "rmse",
        "validation:rmse",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Regression,
        "mse",
        "validation:mse",
        false,
    ),
    (
        Family::LinearLearner,
        Shape::Regression,
        "mae",
        "validation:absolute_loss",
        false,
    ),
    (
        Family::Kmeans,
        Shape::Clustering,
        "inertia",
        "test:ssd",
        false,
    ),
];

/// Whether SageMaker's `sm` metric measures the vocabulary's `name` for these
/// hyperparameters: linear-learner's `objective_loss` is the log loss only with its default
/// classification losses (`auto`, `logistic`, `softmax_loss`), and `macro_f_beta` is F1 only
/// with `beta` 1.
fn measures(name: &str, sm: &str, hps: &BTreeMap<String, Value>) -> bool {
    let hp = |k: &str| {
        hps.get(k)
            .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
    };
    match (name, sm) {
        ("log_loss", "validation:objective_loss") => {
            hp("loss").is_none_or(|l| matches!(l.as_str(), "auto" | "logistic" | "softmax_loss"))
        }
        ("f1_macro", _) => hp("f_beta").is_none_or(|b| b.parse::<f64>() == Ok(1.0)),
        _ => true,
    }
}

fn flip(g: Goal) -> Goal {
    match g {
        Goal::Maximize => Goal::Minimize,
        Goal::Minimize => Goal::Maximize,
    }
}

/// The SageMaker objective of a tuning job of `a` in `shape` that optimises `metric` with
/// `goal`: mlctl's plain name mapped, or SageMaker's own name (`validation:rmse`) when the job
/// reports it on a held-out channel. `None`: SageMaker cannot optimise it.
pub(crate) fn objective(
    a: Algorithm,
    shape: Shape,
    metric: &str,
    goal: Goal,
    hps: &BTreeMap<String, Value>,
) -> Option<(String, Goal)> {
    let family = Family::of(a)?;
    let reported = reported(a, shape, hps);
    let held_out = |m: &str| {
        (m.starts_with("validation:") || m.starts_with("test:")) && reported.iter().any(|r| r == m)
    };
    if metric.contains(':') {
        return held_out(metric).then(|| (metric.to_string(), goal));
    }
    OBJECTIVES
        .iter()
        .find(|(f, s, name, sm, _)| {
            *f == family
                && *s == shape
                && *name == metric
                && held_out(sm)
                && measures(name, sm, hps)
        })
        .map(|(_, _, _, sm, flips)| (sm.to_string(), if *flips { flip(goal) } else { goal }))
}

/// What a tuning job of `a` in `shape` can optimise, in the metric vocabulary.
pub(crate) fn objectives(a: Algorithm, shape: Shape, hps: &BTreeMap<String, Value>) -> Vec<String> {
    let Some(family) = Family::of(a) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for (_, _, name, _, _) in OBJECTIVES
        .iter()
        .filter(|(f, s, _, _, _)| *f == family && *s == shape)
    {
        if objective(a, shape, name, Goal::Maximize, hps).is_some()
            && !out.iter().any(|o| o == name)
        {
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mlctl_hyperparameter_of_a_sagemaker_builtin_is_translated_or_refused() {
        for (_, a) in Algorithm::ALL {
            let Some(family) = Family::of(a) else {
                continue;
            };
            for name in mlctl_ml::hyperparameter_names(a) {
                let hp = mlctl_hp(a, name)
                    .unwrap_or_else(|| panic!("{}: `{name}` is not in the table", a.as_str()));
                if let Hp::To(sm, _) = hp {
                    assert!(
                        native_names(family).contains(&sm),
                        "{}: `{name}` -> `{sm}`, which {} does not take",
                        a.as_str(),
                        family.name()
                    );
                }
            }
        }
        // And nothing in the table that mlctl does not know.
        for (a, name, _) in HYPERPARAMETERS {
            assert!(
                mlctl_ml::hyperparameter_names(*a).contains(name),
                "{}: `{name}`",
                a.as_str()
            );
        }
    }

    #[test]
    fn names_translate_pass_through_or_are_refused() {
        assert_eq!(
            resolve(Algorithm::LinearRegression, "fit_intercept"),
            Ok(("use_bias".into(), Same))
        );
        assert_eq!(
            resolve(Algorithm::LinearRegression, "alpha"),
            Ok(("wd".into(), PerSample))
        );
        assert_eq!(
            resolve(Algorithm::Kmeans, "n_clusters"),
            Ok(("k".into(), Same))
        );
        assert_eq!(
            resolve(Algorithm::GradientBoosting, "gamma"),
            Ok(("gamma".into(), Same))
        );
        let (why, instead) = resolve(Algorithm::GradientBoosting, "min_samples_split").unwrap_err();
        assert!(
            why.contains("`min_samples_split`") && instead.contains("min_child_weight"),
            "{why}"
        );
        let (why, _) = resolve(Algorithm::LogisticRegression, "nonsense").unwrap_err();
        assert!(
            why.contains("`nonsense`")
                && why.contains("linear-learner")
                && why.contains("C, max_iter"),
            "{why}"
        );
    }

    #[test]
    fn max_features_becomes_a_fraction_of_the_features() {
        let facts = DataFacts {
            rows: 100,
            features: 16,
        };
        let t = FeatureFraction;
        assert_eq!(
            t.apply_value(&serde_json::json!("sqrt"), facts).unwrap(),
            "0.25"
        );
        assert_eq!(t.apply_value(&serde_json::json!(8), facts).unwrap(), "0.5");
        assert_eq!(
            t.apply_value(&serde_json::json!(0.3), facts).unwrap(),
            "0.3"
        );
        assert!(t.apply_value(&serde_json::json!("most"), facts).is_err());
        let refused = hyperparameter_refusals(
            Algorithm::RandomForest,
            &BTreeMap::from([
                ("max_features".to_string(), serde_json::json!("most")),
                ("n_estimators".to_string(), serde_json::json!(50)),
            ]),
        );
        assert_eq!(refused.len(), 1, "{refused:?}");
    }

    #[test]
    fn objectives_map_the_vocabulary_per_shape_and_only_to_reported_metrics() {
        let none = BTreeMap::new();
        let o = |a, s, m| objective(a, s, m, Goal::Maximize, &none);
        assert_eq!(
            o(Algorithm::GradientBoosting, Shape::Multiclass, "accuracy"),
            Some(("validation:merror".into(), Goal::Minimize))
        );
        // One name for the ROC AUC on every target; each algorithm's own metric behind it.
        assert_eq!(
            o(Algorithm::GradientBoosting, Shape::Binary, "roc_auc"),
            Some(("validation:auc".into(), Goal::Maximize))
        );
        assert_eq!(
            o(Algorithm::LogisticRegression, Shape::Binary, "roc_auc"),
            Some(("validation:roc_auc_score".into(), Goal::Maximize))
        );
        assert_eq!(o(Algorithm::GradientBoosting, Shape::Binary, "auc"), None);
        assert_eq!(
            o(Algorithm::LogisticRegression, Shape::Multiclass, "f1_macro"),
            Some(("validation:macro_f_beta".into(), Goal::Maximize))
        );
        assert_eq!(
            o(Algorithm::LogisticRegression, Shape::Multiclass, "f1"),
            None
        );
        assert_eq!(
            o(
                Algorithm::LinearRegression,
                Shape::Regression,
                "validation:rmse"
            ),
            Some(("validation:rmse".into(), Goal::Maximize))
        );
        assert_eq!(
            o(
                Algorithm::LinearRegression,
                Shape::Regression,
                "train:objective_loss"
            ),
            None
        );
        assert_eq!(
            o(Algorithm::Kmeans, Shape::Clustering, "inertia").map(|x| x.0),
            Some("test:ssd".into())
        );
        // The user's own eval_metric decides what XGBoost reports.
        let hps = BTreeMap::from([("eval_metric".to_string(), serde_json::json!("mlogloss"))]);
        assert_eq!(
            objective(
                Algorithm::GradientBoosting,
                Shape::Multiclass,
                "accuracy",
                Goal::Maximize,
                &hps
            ),
            None
        );
        // A hinge loss is no log loss.
        let hinge = BTreeMap::from([("loss".to_string(), serde_json::json!("hinge_loss"))]);
        assert_eq!(
            objective(
                Algorithm::LogisticRegression,
                Shape::Binary,
                "log_loss",
                Goal::Minimize,
                &hinge
            ),
            None
        );
        // What can be optimised is listed in the vocabulary only.
        for a in [Algorithm::GradientBoosting, Algorithm::LogisticRegression] {
            for name in objectives(a, Shape::Binary, &none) {
                assert!(mlctl_spec::metrics::metric(&name).is_some(), "{name}");
            }
        }
    }

    #[test]
    fn gates_use_the_vocabulary() {
        let m = gate_metrics(
            Algorithm::LogisticRegression,
            Shape::Multiclass,
            &BTreeMap::new(),
        );
        for want in ["accuracy", "f1_macro", "precision_macro", "log_loss"] {
            assert!(m.contains(want), "{want}: {m:?}");
        }
        assert!(!m.contains("f1") && !m.contains("objective_loss"), "{m:?}");
        let m = gate_metrics(Algorithm::GradientBoosting, Shape::Binary, &BTreeMap::new());
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            ["accuracy", "log_loss", "roc_auc"]
        );
        let m = gate_metrics(Algorithm::Kmeans, Shape::Clustering, &BTreeMap::new());
        assert!(m.contains("inertia"), "{m:?}");
    }
}
