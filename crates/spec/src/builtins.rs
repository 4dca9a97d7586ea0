//! The built-in algorithms' hyperparameters: one table per algorithm, with each
//! hyperparameter's type, valid values, default and meaning.
//!
//! This is the one list. The validator checks `hyperparameters` and `tuning.searchSpace` of a
//! built-in job against it, and mlctl-ml's trainers accept exactly these names
//! (`mlctl_ml::hyperparameter_names` reads [`names`]). The ranges are those the trainers
//! accept, made stricter where a value the trainer takes cannot be meant (a negative
//! `l2_regularization`, `max_depth: 0`, `max_bins` above the 256 a trainer caps it at).
//!
//! A hyperparameter given as a string is read the way the trainers read it: `"0.5"` is a number
//! and `"true"` a boolean (SageMaker passes every hyperparameter as a string), and a string with
//! `${env:NAME}` is checked only once resolved, at apply time.

use crate::Algorithm;
use crate::metrics::Family;
use crate::suggest::{did_you_mean, list};
use serde_json::Value;
use std::sync::OnceLock;

/// One end of a number's valid range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// No limit.
    None,
    /// The value may equal this.
    Inclusive(f64),
    /// The value must be strictly beyond this.
    Exclusive(f64),
}

/// What values a hyperparameter takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    /// A number between `min` and `max`.
    Float {
        /// Lower end.
        min: Bound,
        /// Upper end.
        max: Bound,
    },
    /// A whole number (`3`, `3.0` or `"3"`) from `min`, up to `max` when set.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value, if any.
        max: Option<i64>,
    },
    /// `true` or `false`.
    Bool,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// How many features each split considers: `sqrt`, `log2` (`auto` is `sqrt`), a count
    /// of at least 1, or a fraction in (0, 1] of the features.
    Features,
    /// Per-class weights: `balanced`, or a mapping from class to a weight of at least 0.
    ClassWeight,
}

/// One hyperparameter of a built-in algorithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyperparameter {
    /// Its name (scikit-learn's).
    pub name: &'static str,
    /// The values it takes.
    pub kind: ParamKind,
    /// Its default, as written in docs (`1.0`, `none`, `the job's seed`).
    pub default: &'static str,
    /// What it does, in one line.
    pub meaning: &'static str,
}

/// A hyperparameter value that the algorithm would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue {
    /// Whether the value is of the wrong type (rather than of the right type, out of range).
    pub wrong_type: bool,
    /// What is wrong, quoting the value ("must be greater than 0, got -1").
    pub message: String,
}

impl Bound {
    fn admits_low(self, v: f64) -> bool {
        match self {
            Bound::None => true,
            Bound::Inclusive(b) => v >= b,
            Bound::Exclusive(b) => v > b,
        }
    }

    fn admits_high(self, v: f64) -> bool {
        match self {
            Bound::None => true,
            Bound::Inclusive(b) => v <= b,
            Bound::Exclusive(b) => v < b,
        }
    }
}

/// `0.1`, `1e-4`, `10`: a bound as a person writes it.
fn num(f: f64) -> String {
    if f != 0.0 && f.abs() < 1e-3 {
        format!("{f:e}")
    } else {
        format!("{f}")
    }
}

impl ParamKind {
    /// The values it takes, in words: "a number greater than 0", "a whole number from 1 to
    /// 256", "one of l2, none".
    pub fn describe(&self) -> String {
        match *self {
            ParamKind::Float { min, max } => {
                let low = match min {
                    Bound::None => None,
                    Bound::Inclusive(b) => Some(format!("at least {}", num(b))),
                    Bound::Exclusive(b) => Some(format!("greater than {}", num(b))),
                };
                let high = match max {
                    Bound::None => None,
                    Bound::Inclusive(b) => Some(format!("at most {}", num(b))),
                    Bound::Exclusive(b) => Some(format!("less than {}", num(b))),
                };
                match (low, high) {
                    (None, None) => "a number".into(),
                    (Some(l), None) => format!("a number {l}"),
                    (None, Some(h)) => format!("a number {h}"),
                    (Some(l), Some(h)) => format!("a number {l} and {h}"),
                }
            }
            ParamKind::Int { min, max: None } => format!("a whole number of at least {min}"),
            ParamKind::Int { min, max: Some(m) } => format!("a whole number from {min} to {m}"),
            ParamKind::Bool => "true or false".into(),
            ParamKind::Choice(values) => format!("one of {}", list(values)),
            ParamKind::Features => {
                "sqrt, log2, a count of at least 1, or a fraction in (0, 1] of the features".into()
            }
            ParamKind::ClassWeight => {
                "balanced, or a mapping from class to a weight of at least 0".into()
            }
        }
    }

    /// Whether a range (`min`/`max` in a search space) is numeric for this kind: `Some(true)`
    /// for whole numbers only, `Some(false)` for any number, `None` for no range at all.
    pub fn range_is_integer(&self) -> Option<bool> {
        match self {
            ParamKind::Float { .. } => Some(false),
            ParamKind::Int { .. } => Some(true),
            ParamKind::Features => Some(false),
            ParamKind::Bool | ParamKind::Choice(_) | ParamKind::ClassWeight => None,
        }
    }

    /// Example `values` for a search over this kind, e.g. `[true, false]`.
    pub fn example_values(&self) -> String {
        match self {
            ParamKind::Bool => "[true, false]".into(),
            ParamKind::Choice(values) => format!("[{}]", list(*values)),
            ParamKind::Features => "[sqrt, log2, 0.5]".into(),
            ParamKind::ClassWeight => "[balanced]".into(),
            ParamKind::Int { min, .. } => format!("[{min}, {}]", min + 1),
            ParamKind::Float { .. } => "[0.1, 1.0]".into(),
        }
    }

    /// Checks one number (a search range's end, or a value) against the kind's range.
    pub fn check_number(&self, v: f64) -> Result<(), BadValue> {
        let out = |message: String| {
            Err(BadValue {
                wrong_type: false,
                message,
            })
        };
        if !v.is_finite() {
            return out(format!("must be {}, got {v}", self.describe()));
        }
        match *self {
            ParamKind::Float { min, max } => {
                if !min.admits_low(v) || !max.admits_high(v) {
                    return out(format!("must be {}, got {}", self.describe(), num(v)));
                }
            }
            ParamKind::Int { min, max } => {
                if v.fract() != 0.0 {
                    return Err(BadValue {
                        wrong_type: true,
                        message: format!("must be a whole number, got {}", num(v)),
                    });
                }
                if v < min as f64 || max.is_some_and(|m| v > m as f64) {
                    return out(format!("must be {}, got {}", self.describe(), num(v)));
                }
            }
            ParamKind::Features => {
                if !(v > 0.0 && (v <= 1.0 || v.fract() == 0.0)) {
                    return out(format!("must be {}, got {}", self.describe(), num(v)));
                }
            }
            ParamKind::Bool | ParamKind::Choice(_) | ParamKind::ClassWeight => {
                return Err(BadValue {
                    wrong_type: true,
                    message: format!("must be {}, got {}", self.describe(), num(v)),
                });
            }
        }
        Ok(())
    }
}

impl Hyperparameter {
    /// Checks a value as the trainer would read it. `null` (the default) and strings holding
    /// `${env:NAME}` (resolved at apply time) are accepted.
    pub fn check(&self, value: &Value) -> Result<(), BadValue> {
        let wrong = |what: String| {
            Err(BadValue {
                wrong_type: true,
                message: format!("must be {}, got {what}", self.kind.describe()),
            })
        };
        if self.kind == ParamKind::ClassWeight {
            return match value {
                Value::Null => Ok(()),
                Value::String(s) if s == "balanced" || s.contains("${env:") => Ok(()),
                Value::Object(map) => {
                    for (class, w) in map {
                        let v = match w {
                            Value::Number(n) => n.as_f64(),
                            Value::String(s) => s.trim().parse::<f64>().ok(),
                            _ => None,
                        };
                        if !v.is_some_and(|v| v.is_finite() && v >= 0.0) {
                            return Err(BadValue {
                                wrong_type: !matches!(w, Value::Number(_)),
                                message: format!(
                                    "the weight of class `{class}` must be a number of at least 0, got {}",
                                    show(w)
                                ),
                            });
                        }
                    }
                    Ok(())
                }
                other => wrong(show(other)),
            };
        }
        match value {
            Value::Null => Ok(()),
            Value::String(s) if s.contains("${env:") => Ok(()),
            Value::Array(_) => wrong("a list".into()),
            Value::Object(_) => wrong("a mapping".into()),
            _ => match self.kind {
                ParamKind::Bool => match value {
                    Value::Bool(_) => Ok(()),
                    Value::String(s)
                        if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
                    {
                        Ok(())
                    }
                    other => wrong(show(other)),
                },
                ParamKind::Choice(values) => match value {
                    Value::String(s) if values.contains(&s.as_str()) => Ok(()),
                    Value::String(s) => {
                        let mean = did_you_mean(s, values.iter().copied())
                            .map(|m| format!(" (did you mean `{m}`?)"))
                            .unwrap_or_default();
                        Err(BadValue {
                            wrong_type: false,
                            message: format!("must be {}, got \"{s}\"{mean}", self.kind.describe()),
                        })
                    }
                    other => wrong(show(other)),
                },
                ParamKind::Features => match value {
                    Value::String(s) if ["sqrt", "auto", "log2"].contains(&s.as_str()) => Ok(()),
                    Value::String(s) => match s.trim().parse::<f64>() {
                        Ok(v) => self.kind.check_number(v),
                        Err(_) => wrong(show(value)),
                    },
                    // The trainer reads a number written with a fraction (`2.0`) as a fraction.
                    Value::Number(n) if !(n.is_u64() || n.is_i64()) => {
                        let v = n.as_f64().unwrap_or(f64::NAN);
                        if v > 0.0 && v <= 1.0 {
                            Ok(())
                        } else {
                            Err(BadValue {
                                wrong_type: false,
                                message: format!(
                                    "must be {}, got {}",
                                    self.kind.describe(),
                                    num(v)
                                ),
                            })
                        }
                    }
                    Value::Number(n) => self.kind.check_number(n.as_f64().unwrap_or(f64::NAN)),
                    other => wrong(show(other)),
                },
                ParamKind::ClassWeight => wrong(show(value)),
                ParamKind::Float { .. } | ParamKind::Int { .. } => {
                    let v = match value {
                        Value::Number(n) => n.as_f64(),
                        Value::String(s) => s.trim().parse::<f64>().ok(),
                        _ => None,
                    };
                    match v {
                        Some(v) => self.kind.check_number(v),
                        None => wrong(show(value)),
                    }
                }
            },
        }
    }
}

/// A value in an error message.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The tables

const SEED: Hyperparameter = Hyperparameter {
    name: "random_state",
    kind: ParamKind::Int { min: 0, max: None },
    default: "the job's seed",
    meaning: "seed for every random choice the algorithm makes",
};

const MAX_ITER: Hyperparameter = Hyperparameter {
    name: "max_iter",
    kind: ParamKind::Int { min: 1, max: None },
    default: "100",
    meaning: "most iterations of the solver",
};

const FIT_INTERCEPT: Hyperparameter = Hyperparameter {
    name: "fit_intercept",
    kind: ParamKind::Bool,
    default: "true",
    meaning: "whether to learn a constant term",
};

const MAX_DEPTH: Hyperparameter = Hyperparameter {
    name: "max_depth",
    kind: ParamKind::Int { min: 1, max: None },
    default: "none (grow until leaves are pure or too small)",
    meaning: "deepest a tree may grow",
};

const MIN_SAMPLES_SPLIT: Hyperparameter = Hyperparameter {
    name: "min_samples_split",
    kind: ParamKind::Int { min: 2, max: None },
    default: "2",
    meaning: "fewest rows a node needs to be split",
};

const MIN_SAMPLES_LEAF: Hyperparameter = Hyperparameter {
    name: "min_samples_leaf",
    kind: ParamKind::Int { min: 1, max: None },
    default: "1",
    meaning: "fewest rows each leaf keeps",
};

const MAX_FEATURES: Hyperparameter = Hyperparameter {
    name: "max_features",
    kind: ParamKind::Features,
    default: "all features",
    meaning: "features considered at each split",
};

const MAX_BINS: Hyperparameter = Hyperparameter {
    name: "max_bins",
    kind: ParamKind::Int {
        min: 2,
        max: Some(256),
    },
    default: "255",
    meaning: "histogram bins per feature when searching splits",
};

const CRITERION: Hyperparameter = Hyperparameter {
    name: "criterion",
    kind: ParamKind::Choice(&["gini", "entropy", "log_loss", "squared_error"]),
    default: "gini (classification), squared_error (regression)",
    meaning: "split quality measure; gini, entropy and log_loss make a classifier, squared_error a regressor",
};

const N_ESTIMATORS: Hyperparameter = Hyperparameter {
    name: "n_estimators",
    kind: ParamKind::Int { min: 1, max: None },
    default: "100",
    meaning: "number of trees",
};

const LINEAR_REGRESSION: &[Hyperparameter] = &[
    Hyperparameter {
        name: "alpha",
        kind: ParamKind::Float {
            min: Bound::Inclusive(0.0),
            max: Bound::None,
        },
        default: "0",
        meaning: "L2 (ridge) penalty; 0 is ordinary least squares",
    },
    Hyperparameter {
        name: "l2",
        kind: ParamKind::Float {
            min: Bound::Inclusive(0.0),
            max: Bound::None,
        },
        default: "0",
        meaning: "another name for `alpha` (give one of them)",
    },
    FIT_INTERCEPT,
];

const LOGISTIC_REGRESSION: &[Hyperparameter] = &[
    Hyperparameter {
        name: "C",
        kind: ParamKind::Float {
            min: Bound::Exclusive(0.0),
            max: Bound::None,
        },
        default: "1.0",
        meaning: "inverse of the L2 penalty: smaller is stronger regularisation",
    },
    MAX_ITER,
    Hyperparameter {
        name: "tol",
        kind: ParamKind::Float {
            min: Bound::Exclusive(0.0),
            max: Bound::None,
        },
        default: "1e-4",
        meaning: "stop when the improvement is smaller than this",
    },
    FIT_INTERCEPT,
    Hyperparameter {
        name: "penalty",
        kind: ParamKind::Choice(&["l2", "none"]),
        default: "l2",
        meaning: "regularisation: l2, or none",
    },
    Hyperparameter {
        name: "solver",
        kind: ParamKind::Choice(&["lbfgs"]),
        default: "lbfgs",
        meaning: "optimiser (only lbfgs)",
    },
    SEED,
];

const DECISION_TREE: &[Hyperparameter] = &[
    CRITERION,
    MAX_DEPTH,
    MIN_SAMPLES_SPLIT,
    MIN_SAMPLES_LEAF,
    MAX_FEATURES,
    MAX_BINS,
    SEED,
];

const RANDOM_FOREST: &[Hyperparameter] = &[
    N_ESTIMATORS,
    CRITERION,
    MAX_DEPTH,
    MIN_SAMPLES_SPLIT,
    MIN_SAMPLES_LEAF,
    Hyperparameter {
        default: "sqrt (classification), all features (regression)",
        ..MAX_FEATURES
    },
    Hyperparameter {
        name: "bootstrap",
        kind: ParamKind::Bool,
        default: "true",
        meaning: "whether each tree trains on a bootstrap sample of the rows",
    },
    MAX_BINS,
    Hyperparameter {
        name: "n_jobs",
        kind: ParamKind::Int { min: -1, max: None },
        default: "all cores",
        meaning: "trees trained at once; -1 (or 0) is all cores",
    },
    SEED,
];

const GRADIENT_BOOSTING: &[Hyperparameter] = &[
    N_ESTIMATORS,
    Hyperparameter {
        name: "learning_rate",
        kind: ParamKind::Float {
            min: Bound::Exclusive(0.0),
            max: Bound::None,
        },
        default: "0.1",
        meaning: "shrinkage applied to each tree's contribution",
    },
    Hyperparameter {
        name: "loss",
        kind: ParamKind::Choice(&["log_loss", "squared_error"]),
        default: "log_loss (classification), squared_error (regression)",
        meaning: "what boosting minimises; log_loss makes a classifier, squared_error a regressor",
    },
    Hyperparameter {
        default: "3",
        ..MAX_DEPTH
    },
    MIN_SAMPLES_SPLIT,
    MIN_SAMPLES_LEAF,
    MAX_FEATURES,
    Hyperparameter {
        name: "subsample",
        kind: ParamKind::Float {
            min: Bound::Exclusive(0.0),
            max: Bound::Inclusive(1.0),
        },
        default: "1.0",
        meaning: "fraction of rows each tree trains on",
    },
    Hyperparameter {
        name: "l2_regularization",
        kind: ParamKind::Float {
            min: Bound::Inclusive(0.0),
            max: Bound::None,
        },
        default: "0",
        meaning: "L2 penalty on leaf values",
    },
    MAX_BINS,
    Hyperparameter {
        name: "max_leaf_nodes",
        kind: ParamKind::Int { min: 2, max: None },
        default: "2^max_depth (8); 31 when max_depth is not set",
        meaning: "most leaves per tree, grown leaf-wise (best split first); with it and no max_depth, depth is unlimited",
    },
    Hyperparameter {
        name: "num_leaves",
        kind: ParamKind::Int { min: 2, max: None },
        default: "see max_leaf_nodes",
        meaning: "LightGBM's name for `max_leaf_nodes` (give one of them)",
    },
    Hyperparameter {
        name: "min_child_weight",
        kind: ParamKind::Float {
            min: Bound::Inclusive(0.0),
            max: Bound::None,
        },
        default: "0.001",
        meaning: "smallest sum of hessians in a leaf (LightGBM's min_sum_hessian_in_leaf)",
    },
    Hyperparameter {
        name: "early_stopping_rounds",
        kind: ParamKind::Int { min: 1, max: None },
        default: "none (no early stopping)",
        meaning: "stop when the validation loss has not improved for this many rounds and keep the best round; the job then gets validation rows (the split's, or 20% carved from train), never the test rows",
    },
    Hyperparameter {
        name: "class_weight",
        kind: ParamKind::ClassWeight,
        default: "none (every class weighs 1)",
        meaning: "`balanced` (n / (classes x count)) or a mapping from class to weight; multiplies the sample weights",
    },
    SEED,
];

const KMEANS: &[Hyperparameter] = &[
    Hyperparameter {
        name: "n_clusters",
        kind: ParamKind::Int { min: 1, max: None },
        default: "8",
        meaning: "number of clusters",
    },
    Hyperparameter {
        name: "k",
        kind: ParamKind::Int { min: 1, max: None },
        default: "8",
        meaning: "another name for `n_clusters` (give one of them)",
    },
    Hyperparameter {
        default: "300",
        ..MAX_ITER
    },
    Hyperparameter {
        name: "tol",
        kind: ParamKind::Float {
            min: Bound::Inclusive(0.0),
            max: Bound::None,
        },
        default: "1e-4",
        meaning: "stop when centroids move less than this (relative to the data's variance)",
    },
    Hyperparameter {
        name: "n_init",
        kind: ParamKind::Int { min: 1, max: None },
        default: "1",
        meaning: "runs from different starting centroids; the best is kept",
    },
    SEED,
];

/// Every hyperparameter `algorithm` takes, in the order docs list them.
pub fn hyperparameters(algorithm: Algorithm) -> &'static [Hyperparameter] {
    match algorithm {
        Algorithm::LinearRegression => LINEAR_REGRESSION,
        Algorithm::LogisticRegression => LOGISTIC_REGRESSION,
        Algorithm::DecisionTree => DECISION_TREE,
        Algorithm::RandomForest => RANDOM_FOREST,
        Algorithm::GradientBoosting => GRADIENT_BOOSTING,
        Algorithm::Kmeans => KMEANS,
    }
}

/// The hyperparameter `name` of `algorithm`.
pub fn hyperparameter(algorithm: Algorithm, name: &str) -> Option<&'static Hyperparameter> {
    hyperparameters(algorithm).iter().find(|h| h.name == name)
}

/// The names of [`hyperparameters`] (what the trainers accept).
pub fn names(algorithm: Algorithm) -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<Vec<&'static str>>> = OnceLock::new();
    let all = NAMES.get_or_init(|| {
        Algorithm::ALL
            .iter()
            .map(|(_, a)| hyperparameters(*a).iter().map(|h| h.name).collect())
            .collect()
    });
    let i = Algorithm::ALL
        .iter()
        .position(|(_, a)| *a == algorithm)
        .unwrap_or(0);
    &all[i]
}

/// Pairs of names for the same setting: giving both is an error.
pub fn aliases(algorithm: Algorithm) -> &'static [(&'static str, &'static str)] {
    match algorithm {
        Algorithm::LinearRegression => &[("alpha", "l2")],
        Algorithm::Kmeans => &[("n_clusters", "k")],
        _ => &[],
    }
}

/// The hyperparameter whose value decides whether a tree-based built-in classifies or
/// regresses (`criterion` or `loss`), if the algorithm has one.
pub fn task_hyperparameter(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::DecisionTree | Algorithm::RandomForest => Some("criterion"),
        Algorithm::GradientBoosting => Some("loss"),
        _ => None,
    }
}

/// The family a value of [`task_hyperparameter`] makes the model.
pub fn family_of_task_value(value: &str) -> Option<Family> {
    match value {
        "gini" | "entropy" | "log_loss" => Some(Family::Classification),
        "squared_error" => Some(Family::Regression),
        _ => None,
    }
}

/// The families of model `algorithm` may train: one for linear and logistic regression and
/// k-means, and for tree-based built-ins whichever the label decides (see
/// [`crate::metrics::families_for_label`]).
pub fn families(algorithm: Algorithm) -> &'static [Family] {
    match algorithm {
        Algorithm::LinearRegression => &[Family::Regression],
        Algorithm::LogisticRegression => &[Family::Classification],
        Algorithm::Kmeans => &[Family::Clustering],
        Algorithm::DecisionTree | Algorithm::RandomForest | Algorithm::GradientBoosting => {
            &[Family::Classification, Family::Regression]
        }
    }
}

/// The built-ins that train with sample weights (a Dataset column with `role: weight`); the
/// others are refused at validation. The one list both the validator and `mlctl-ml` read.
pub const WEIGHTED: &[Algorithm] = &[
    Algorithm::LinearRegression,
    Algorithm::LogisticRegression,
    Algorithm::GradientBoosting,
];

/// Whether hyperparameters turn early stopping on (`early_stopping_rounds` set): training
/// then picks its round on validation rows.
pub fn stops_early(hyperparameters: &std::collections::BTreeMap<String, Value>) -> bool {
    hyperparameters
        .get("early_stopping_rounds")
        .is_some_and(|v| !v.is_null())
}

/// Whether `algorithm` trains with sample weights (see [`WEIGHTED`]).
pub fn takes_sample_weights(algorithm: Algorithm) -> bool {
    WEIGHTED.contains(&algorithm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_table() {
        assert_eq!(
            names(Algorithm::LogisticRegression),
            [
                "C",
                "max_iter",
                "tol",
                "fit_intercept",
                "penalty",
                "solver",
                "random_state"
            ]
        );
        for (_, a) in Algorithm::ALL {
            let mut n = names(a).to_vec();
            n.sort();
            n.dedup();
            assert_eq!(
                n.len(),
                hyperparameters(a).len(),
                "{a:?} lists a name twice"
            );
        }
    }

    #[test]
    fn values_are_checked_as_the_trainers_read_them() {
        let c = hyperparameter(Algorithm::LogisticRegression, "C").unwrap();
        assert!(c.check(&json!(0.5)).is_ok());
        assert!(c.check(&json!("0.5")).is_ok());
        assert!(c.check(&json!(null)).is_ok());
        assert!(c.check(&json!("${env:C}")).is_ok());
        let e = c.check(&json!(0)).unwrap_err();
        assert_eq!(e.message, "must be a number greater than 0, got 0");
        assert!(!e.wrong_type);
        assert!(c.check(&json!("abc")).unwrap_err().wrong_type);
        assert!(c.check(&json!("nan")).is_err());
        let depth = hyperparameter(Algorithm::DecisionTree, "max_depth").unwrap();
        assert!(depth.check(&json!(3)).is_ok());
        assert!(depth.check(&json!(3.0)).is_ok());
        assert!(depth.check(&json!(0)).is_err());
        assert!(depth.check(&json!(2.5)).unwrap_err().wrong_type);
        let mf = hyperparameter(Algorithm::RandomForest, "max_features").unwrap();
        for ok in [
            json!("sqrt"),
            json!(3),
            json!(0.5),
            json!(1.0),
            json!("0.3"),
        ] {
            assert!(mf.check(&ok).is_ok(), "{ok}");
        }
        for bad in [json!("all"), json!(0), json!(2.5), json!(-1), json!(2.0)] {
            assert!(mf.check(&bad).is_err(), "{bad}");
        }
        let penalty = hyperparameter(Algorithm::LogisticRegression, "penalty").unwrap();
        assert!(
            penalty
                .check(&json!("l1"))
                .unwrap_err()
                .message
                .contains("one of l2, none")
        );
        let fit = hyperparameter(Algorithm::LinearRegression, "fit_intercept").unwrap();
        assert!(fit.check(&json!("TRUE")).is_ok());
        assert!(fit.check(&json!(1)).is_err());
    }
}
