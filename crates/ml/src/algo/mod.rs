//! The built-in learning algorithms, written for this crate.
//!
//! Every trainer takes an encoded, row-major matrix (see [`crate::preprocess`]) and returns an
//! [`Estimator`]: the fitted weights, serializable, with a per-row prediction that allocates
//! nothing. Hyperparameters use scikit-learn's names; [`Params`] rejects unknown ones.

pub mod boosting;
pub mod forest;
pub mod kmeans;
pub mod leafwise;
pub mod linear;
pub mod logistic;
pub mod shap;
pub mod tree;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A hyperparameter problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// A name the algorithm does not know.
    #[error("unknown hyperparameter `{name}` for {algorithm}{hint} (valid: {})", valid.join(", "))]
    Unknown {
        /// The algorithm.
        algorithm: &'static str,
        /// The unknown name.
        name: String,
        /// ` (did you mean `x`?)` or empty.
        hint: String,
        /// The names it knows.
        valid: Vec<&'static str>,
    },
    /// A value of the wrong type or out of range.
    #[error("hyperparameter `{name}` of {algorithm}: {message}")]
    Invalid {
        /// The algorithm.
        algorithm: &'static str,
        /// The hyperparameter.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Typed access to a hyperparameter map, checked against the algorithm's known names.
pub struct Params<'a> {
    algorithm: &'static str,
    map: &'a BTreeMap<String, Value>,
}

impl<'a> Params<'a> {
    /// Checks that every name in `map` is in `valid`.
    pub fn new(
        algorithm: &'static str,
        map: &'a BTreeMap<String, Value>,
        valid: &[&'static str],
    ) -> Result<Self, ParamError> {
        for name in map.keys() {
            if !valid.contains(&name.as_str()) {
                let hint = closest(name, valid)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                return Err(ParamError::Unknown {
                    algorithm,
                    name: name.clone(),
                    hint,
                    valid: valid.to_vec(),
                });
            }
        }
        Ok(Params { algorithm, map })
    }

    fn invalid(&self, name: &str, message: impl Into<String>) -> ParamError {
        ParamError::Invalid {
            algorithm: self.algorithm,
            name: name.to_string(),
            message: message.into(),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// Whether `name` was given (and not null).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A number; numeric strings are accepted (SageMaker passes hyperparameters as strings).
    pub fn f64(&self, name: &str, default: f64) -> Result<f64, ParamError> {
        Ok(self.opt_f64(name)?.unwrap_or(default))
    }

    /// A number or `None` when absent / null.
    pub fn opt_f64(&self, name: &str) -> Result<Option<f64>, ParamError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|_| self.invalid(name, format!("expected a number, got {s:?}"))),
            Some(v) => Err(self.invalid(name, format!("expected a number, got {v}"))),
        }
    }

    /// A positive number.
    pub fn positive(&self, name: &str, default: f64) -> Result<f64, ParamError> {
        let v = self.f64(name, default)?;
        if v > 0.0 && v.is_finite() {
            Ok(v)
        } else {
            Err(self.invalid(name, format!("must be greater than 0, got {v}")))
        }
    }

    /// A non-negative integer or `None` when absent / null.
    pub fn opt_usize(&self, name: &str) -> Result<Option<usize>, ParamError> {
        match self.opt_f64(name)? {
            None => Ok(None),
            Some(v) if v >= 0.0 && v.fract() == 0.0 && v < 1e15 => Ok(Some(v as usize)),
            Some(v) => Err(self.invalid(name, format!("expected a whole number >= 0, got {v}"))),
        }
    }

    /// A non-negative integer.
    pub fn usize(&self, name: &str, default: usize) -> Result<usize, ParamError> {
        Ok(self.opt_usize(name)?.unwrap_or(default))
    }

    /// An integer at least `min`.
    pub fn usize_min(&self, name: &str, default: usize, min: usize) -> Result<usize, ParamError> {
        let v = self.usize(name, default)?;
        if v < min {
            return Err(self.invalid(name, format!("must be at least {min}, got {v}")));
        }
        Ok(v)
    }

    /// A boolean (`true`/`false`, or those strings).
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ParamError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(self.invalid(name, format!("expected true or false, got {v}"))),
        }
    }

    /// One of `choices` (a string).
    pub fn choice(
        &self,
        name: &str,
        default: &'static str,
        choices: &[&'static str],
    ) -> Result<&'static str, ParamError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::String(s)) => choices.iter().copied().find(|c| c == s).ok_or_else(|| {
                self.invalid(name, format!("{s:?} is not one of {}", choices.join(", ")))
            }),
            Some(v) => Err(self.invalid(
                name,
                format!("expected one of {}, got {v}", choices.join(", ")),
            )),
        }
    }

    /// The raw value (for parameters with mixed types, like `max_features`).
    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }

    /// An error about `name`.
    pub fn error(&self, name: &str, message: impl Into<String>) -> ParamError {
        self.invalid(name, message)
    }
}

/// The most similar name (edit distance at most 3), for "did you mean".
fn closest<'v>(name: &str, valid: &[&'v str]) -> Option<&'v str> {
    fn distance(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.to_lowercase().chars().collect();
        let b: Vec<char> = b.to_lowercase().chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for i in 1..=a.len() {
            let mut cur = vec![i; b.len() + 1];
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            }
            prev = cur;
        }
        prev[b.len()]
    }
    valid
        .iter()
        .map(|v| (distance(name, v), *v))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, v)| v)
}

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// A class from a fixed set.
    Classification,
    /// A number.
    Regression,
    /// A cluster index.
    Clustering,
}

/// Training targets, aligned with the matrix rows.
#[derive(Debug, Clone)]
pub enum Target {
    /// Class indices `0..k`.
    Classes {
        /// Class of each row.
        y: Vec<usize>,
        /// Number of classes.
        k: usize,
    },
    /// Numbers.
    Values(Vec<f64>),
    /// No target (clustering).
    None,
}

/// A row-major matrix view.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    /// `n * d` values.
    pub data: &'a [f64],
    /// Rows.
    pub n: usize,
    /// Columns.
    pub d: usize,
}

impl<'a> Matrix<'a> {
    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

/// A fitted model's weights, serialized as `{"type": "...", "weights": {...}}` (tag first, so
/// large forests load without buffering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "weights", rename_all = "snake_case")]
pub enum Estimator {
    /// Linear regression.
    Linear(linear::Linear),
    /// Multinomial logistic regression.
    Logistic(logistic::Logistic),
    /// One decision tree.
    Tree(tree::Tree),
    /// A random forest.
    Forest(forest::Forest),
    /// Gradient-boosted trees.
    Boosting(boosting::Boosting),
    /// k-means centroids.
    Kmeans(kmeans::KMeans),
}

impl Estimator {
    /// Values written by [`Estimator::predict_row`]: class probabilities (classifiers), one
    /// number (regressors) or the cluster index (k-means).
    pub fn n_outputs(&self) -> usize {
        match self {
            Estimator::Linear(_) => 1,
            Estimator::Logistic(m) => m.n_classes(),
            Estimator::Tree(t) => t.n_out,
            Estimator::Forest(f) => f.n_out(),
            Estimator::Boosting(b) => b.n_outputs(),
            Estimator::Kmeans(_) => 1,
        }
    }

    /// Predicts one encoded row into `out` (length [`Estimator::n_outputs`]).
    #[inline]
    pub fn predict_row(&self, x: &[f64], out: &mut [f64]) {
        match self {
            Estimator::Linear(m) => out[0] = m.predict(x),
            Estimator::Logistic(m) => m.predict_proba(x, out),
            Estimator::Tree(t) => out.copy_from_slice(t.leaf(x)),
            Estimator::Forest(f) => f.predict(x, out),
            Estimator::Boosting(b) => b.predict(x, out),
            Estimator::Kmeans(k) => out[0] = k.nearest(x).0 as f64,
        }
    }
}

/// Rows per block of a parallel sum ([`row_blocks`]).
pub(crate) const ROW_BLOCK: usize = 1024;

/// `0..n` in blocks of [`ROW_BLOCK`] rows, `(start, end)`: a parallel sum computes one
/// partial per block and adds them in block order, so its floats are the same whatever the
/// threads or their scheduling (rayon's `fold`/`reduce` splits follow work stealing).
pub(crate) fn row_blocks(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .step_by(ROW_BLOCK)
        .map(|lo| (lo, (lo + ROW_BLOCK).min(n)))
        .collect()
}

/// Index of the largest value (first on ties).
#[inline]
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// In-place softmax.
#[inline]
pub fn softmax(v: &mut [f64]) {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    for x in v.iter_mut() {
        *x /= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_names_are_errors_naming_valid_ones() {
        let map: BTreeMap<String, Value> = [("max_iters".to_string(), json!(10))].into();
        let e = Params::new("logistic_regression", &map, &["C", "max_iter"])
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "unknown hyperparameter `max_iters` for logistic_regression (did you mean `max_iter`?) (valid: C, max_iter)"
        );
    }

    #[test]
    fn typed_access() {
        let map: BTreeMap<String, Value> = [
            ("a".to_string(), json!("0.5")),
            ("b".to_string(), json!(3)),
            ("c".to_string(), json!(null)),
            ("d".to_string(), json!("x")),
        ]
        .into();
        let p = Params::new("t", &map, &["a", "b", "c", "d"]).unwrap();
        assert_eq!(p.f64("a", 1.0).unwrap(), 0.5);
        assert_eq!(p.usize("b", 1).unwrap(), 3);
        assert_eq!(p.opt_usize("c").unwrap(), None);
        assert!(p.usize("a", 1).is_err());
        assert!(
            p.f64("d", 1.0)
                .unwrap_err()
                .to_string()
                .contains("expected a number, got \"x\"")
        );
        assert_eq!(p.choice("zz", "gini", &["gini"]).unwrap(), "gini");
    }
}
