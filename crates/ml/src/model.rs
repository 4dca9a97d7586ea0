//! The portable model format and fast prediction.
//!
//! A model is a directory:
//!
//! ```text
//! model.json     manifest: format + version, algorithm, task, hyperparameters, inputs
//!                (ordered columns with types, categories, fill values), output (label name,
//!                class names), metrics, lineage (free-form strings)
//! weights.json   the fitted estimator (see `algo::Estimator`)
//! ```
//!
//! [`PortableModel::load`] precomputes everything prediction needs (category lookup tables,
//! class labels), so predicting a row allocates nothing but the output.
//!
//! Inputs come either as JSON values, one per input column in manifest order
//! ([`PortableModel::predict_rows`]), or as raw numbers ([`PortableModel::predict_f64`]):
//! one `f64` per input column, with a categorical column given as the index of its category
//! in [`Manifest::inputs`] and NaN for missing.

use crate::algo::{Estimator, Task, argmax};
use crate::preprocess::{EncodeError, Feature, FeatureKind, Preprocessor};
use crate::table::Table;
use mlctl_spec::Algorithm;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `format` in every manifest.
pub const FORMAT: &str = "mlctl-model";
/// The format version this crate writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name.
pub const MANIFEST_FILE: &str = "model.json";
/// The weights' file name.
pub const WEIGHTS_FILE: &str = "weights.json";

/// `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The built-in algorithm.
    pub algorithm: Algorithm,
    /// Classification, regression or clustering.
    pub task: Task,
    /// Hyperparameters as given.
    pub hyperparameters: BTreeMap<String, Value>,
    /// Input columns, in the order predictions take them.
    pub inputs: Vec<Feature>,
    /// Columns of the training data that are not inputs (`role: id`, `ignore`, `weight`):
    /// requests may carry them and the model ignores them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passthrough: Vec<Passthrough>,
    /// What the model predicts.
    pub output: Output,
    /// Evaluation metrics (held-out split), filled in after training.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Where the model came from: run id, dataset digest, commit, ... (free-form).
    #[serde(default)]
    pub lineage: BTreeMap<String, String>,
    /// File name of the weights, relative to the model directory.
    pub weights: String,
    /// The library that wrote the model.
    pub created_by: String,
}

/// A column of the training data the model does not take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passthrough {
    /// Column name.
    pub name: String,
    /// Its role in the Dataset schema: `id`, `ignore` or `weight`.
    pub role: String,
}

/// The model's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The label column (absent for clustering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Class names, in probability order (classification only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// The label column's type in the data (`int`, `float`, `bool`, `string`), so class
    /// names of a numeric or bool label are written back as numbers or bools (`0`, not
    /// `"0"`). Absent (models written before it): text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_type: Option<String>,
}

impl Output {
    /// Class `i` as a JSON literal: a number or bool for such a label, else a string.
    pub fn class_json(&self, i: usize) -> Option<String> {
        let c = self.classes.get(i)?;
        let typed = match self.label_type.as_deref() {
            Some("int" | "float") => c.parse::<f64>().is_ok_and(f64::is_finite),
            Some("bool") => c == "true" || c == "false",
            _ => false,
        };
        Some(if typed {
            c.clone()
        } else {
            serde_json::Value::String(c.clone()).to_string()
        })
    }
}

/// One prediction.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// A class: its index in [`Output::classes`] and its name.
    Class {
        /// Index into the class names.
        index: usize,
        /// The class name (shared, not copied per prediction).
        label: Arc<str>,
    },
    /// A regression value.
    Value(f64),
    /// A cluster index.
    Cluster(usize),
}

impl Prediction {
    /// The class name, for classifications.
    pub fn label(&self) -> Option<&str> {
        match self {
            Prediction::Class { label, .. } => Some(label),
            _ => None,
        }
    }

    /// The value as a number: class index, regression value or cluster index.
    pub fn as_f64(&self) -> f64 {
        match self {
            Prediction::Class { index, .. } => *index as f64,
            Prediction::Value(v) => *v,
            Prediction::Cluster(c) => *c as f64,
        }
    }
}

/// Serializes as the class name, the number, or the cluster index.
impl Serialize for Prediction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Prediction::Class { label, .. } => s.serialize_str(label),
            Prediction::Value(v) => s.serialize_f64(*v),
            Prediction::Cluster(c) => s.serialize_u64(*c as u64),
        }
    }
}

/// Bad prediction input. The message names the row, the column and the problem; an HTTP
/// server answers it with 400.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct InputError {
    /// 0-based row of the request.
    pub row: usize,
    /// The column, when the problem is in one.
    pub column: Option<String>,
    /// What is wrong.
    pub problem: InputProblem,
}

/// What is wrong with an input.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InputProblem {
    /// A row with the wrong number of values.
    WrongLength {
        /// Values expected (the input columns).
        expected: Vec<String>,
        /// Values given.
        got: usize,
    },
    /// A raw buffer whose length is not rows x columns.
    WrongShape {
        /// Values given.
        len: usize,
        /// Rows claimed.
        rows: usize,
        /// Columns per row.
        width: usize,
    },
    /// A value that is not a number in a numeric column.
    NotANumber(String),
    /// A category not seen in training.
    UnknownCategory {
        /// The value.
        value: String,
        /// The known categories.
        known: Vec<String>,
    },
    /// A category index out of range (raw input).
    BadCategoryIndex {
        /// The value.
        value: f64,
        /// Number of categories.
        categories: usize,
    },
    /// A missing value (null, empty, NaN) where training had none.
    Missing,
    /// Probabilities asked of a model that is not a classifier.
    NotAClassifier,
    /// A record (JSON object) without an input column.
    MissingColumn,
    /// A record that is not a JSON object.
    NotARecord,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}", self.row)?;
        if let Some(c) = &self.column {
            write!(f, ", column `{c}`")?;
        }
        f.write_str(": ")?;
        match &self.problem {
            InputProblem::WrongLength { expected, got } => write!(
                f,
                "expected {} values ({}), got {got}",
                expected.len(),
                expected.join(", ")
            ),
            InputProblem::WrongShape { len, rows, width } => write!(
                f,
                "{len} values do not make {rows} rows of {width} columns"
            ),
            InputProblem::NotANumber(v) => write!(f, "expected a number, got {v}"),
            InputProblem::UnknownCategory { value, known } => write!(
                f,
                "unknown category {value:?} (known: {})",
                known.join(", ")
            ),
            InputProblem::BadCategoryIndex { value, categories } => write!(
                f,
                "category index {value} is not a whole number below {categories}"
            ),
            InputProblem::Missing => f.write_str(
                "missing value (null or NaN), but the model was trained without missing values in this column",
            ),
            InputProblem::NotAClassifier => {
                f.write_str("probabilities are only available from classifiers")
            }
            InputProblem::MissingColumn => f.write_str("the record has no value for this column"),
            InputProblem::NotARecord => f.write_str("expected an object of column: value pairs"),
        }
    }
}

/// Errors saving or loading a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid JSON of the expected shape.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The directory is not a model this version can read, or is inconsistent.
    #[error("{0}")]
    Format(String),
}

/// A loaded (or freshly trained) model, ready to predict.
#[derive(Debug, Clone)]
pub struct PortableModel {
    manifest: Manifest,
    estimator: Estimator,
    pre: Preprocessor,
    categories: Vec<HashMap<String, usize>>,
    labels: Vec<Arc<str>>,
    n_out: usize,
    input_names: Vec<String>,
}

/// Scratch buffers on the stack when small, on the heap otherwise.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    const STACK: usize = 256;
    if len <= STACK {
        let mut buf = [0.0f64; STACK];
        f(&mut buf[..len])
    } else {
        let mut buf = vec![0.0f64; len];
        f(&mut buf)
    }
}

impl PortableModel {
    /// A model from its manifest and weights; checks that they fit together.
    pub fn new(manifest: Manifest, estimator: Estimator) -> Result<Self, ModelError> {
        if manifest.format != FORMAT {
            return Err(ModelError::Format(format!(
                "not an mlctl model (format is {:?}, expected {FORMAT:?})",
                manifest.format
            )));
        }
        if manifest.format_version > FORMAT_VERSION {
            return Err(ModelError::Format(format!(
                "model format version {} is newer than this mlctl reads ({FORMAT_VERSION}); upgrade mlctl",
                manifest.format_version
            )));
        }
        let pre = Preprocessor {
            features: manifest.inputs.clone(),
        };
        let n_out = estimator.n_outputs();
        if manifest.task == Task::Classification && manifest.output.classes.len() != n_out {
            return Err(ModelError::Format(format!(
                "the manifest lists {} classes but the weights predict {n_out}",
                manifest.output.classes.len()
            )));
        }
        let width = pre.encoded_width();
        let expected_width = match &estimator {
            Estimator::Linear(m) => Some(m.coef.len()),
            Estimator::Logistic(m) => Some(m.coef.len() / m.n_classes().max(1)),
            Estimator::Kmeans(k) => Some(k.d),
            _ => None,
        };
        if let Some(w) = expected_width
            && w != width
        {
            return Err(ModelError::Format(format!(
                "the inputs encode to {width} values but the weights expect {w}"
            )));
        }
        let categories = manifest
            .inputs
            .iter()
            .map(|f| {
                f.categories
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), i))
                    .collect()
            })
            .collect();
        let labels = manifest
            .output
            .classes
            .iter()
            .map(|c| Arc::from(c.as_str()))
            .collect();
        let input_names = manifest.inputs.iter().map(|f| f.name.clone()).collect();
        Ok(PortableModel {
            manifest,
            estimator,
            pre,
            categories,
            labels,
            n_out,
            input_names,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The fitted estimator.
    pub fn estimator(&self) -> &Estimator {
        &self.estimator
    }

    /// Input column names, in the order rows give them.
    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }

    /// The position of input column `name`.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.input_names.iter().position(|n| n == name)
    }

    /// Class names (empty unless a classifier).
    pub fn classes(&self) -> &[String] {
        &self.manifest.output.classes
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.manifest.task
    }

    /// Replaces the recorded metrics.
    pub fn set_metrics(&mut self, metrics: BTreeMap<String, f64>) {
        self.manifest.metrics = metrics;
    }

    /// The lineage map, to add entries to.
    pub fn lineage_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.manifest.lineage
    }

    /// Writes the model into directory `dir` (created if needed).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), ModelError> {
        let dir = dir.as_ref();
        let io = |path: PathBuf| move |source| ModelError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let weights_path = dir.join(&self.manifest.weights);
        let w = serde_json::to_vec(&self.estimator).map_err(|source| ModelError::Json {
            path: weights_path.clone(),
            source,
        })?;
        std::fs::write(&weights_path, w).map_err(io(weights_path.clone()))?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let mut m =
            serde_json::to_vec_pretty(&self.manifest).map_err(|source| ModelError::Json {
                path: manifest_path.clone(),
                source,
            })?;
        m.push(b'\n');
        std::fs::write(&manifest_path, m).map_err(io(manifest_path.clone()))
    }

    /// Reads a model directory written by [`PortableModel::save`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, ModelError> {
        let dir = dir.as_ref();
        let read = |path: PathBuf| -> Result<Vec<u8>, ModelError> {
            std::fs::read(&path).map_err(|source| ModelError::Io { path, source })
        };
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest: Manifest =
            serde_json::from_slice(&read(manifest_path.clone())?).map_err(|source| {
                ModelError::Json {
                    path: manifest_path,
                    source,
                }
            })?;
        if manifest.weights.contains("..") || Path::new(&manifest.weights).is_absolute() {
            return Err(ModelError::Format(format!(
                "weights file {:?} must be inside the model directory",
                manifest.weights
            )));
        }
        let weights_path = dir.join(&manifest.weights);
        let estimator: Estimator =
            serde_json::from_slice(&read(weights_path.clone())?).map_err(|source| {
                ModelError::Json {
                    path: weights_path,
                    source,
                }
            })?;
        PortableModel::new(manifest, estimator)
    }

    fn make_prediction(&self, out: &[f64]) -> Prediction {
        match self.manifest.task {
            Task::Classification => {
                let i = argmax(out);
                Prediction::Class {
                    index: i,
                    label: self.labels[i].clone(),
                }
            }
            Task::Regression => Prediction::Value(out[0]),
            Task::Clustering => Prediction::Cluster(out[0] as usize),
        }
    }

    /// Converts one JSON value of input `j` into its raw number.
    fn raw_value(&self, row: usize, j: usize, v: &Value) -> Result<f64, InputError> {
        let f = &self.pre.features[j];
        let err = |problem| InputError {
            row,
            column: Some(f.name.clone()),
            problem,
        };
        let x = match f.kind {
            FeatureKind::Float => match v {
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                Value::Null => f64::NAN,
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::String(s) => {
                    let t = s.trim();
                    if t.is_empty() {
                        f64::NAN
                    } else {
                        t.parse::<f64>()
                            .map_err(|_| err(InputProblem::NotANumber(format!("{s:?}"))))?
                    }
                }
                other => return Err(err(InputProblem::NotANumber(other.to_string()))),
            },
            FeatureKind::Category => {
                let lookup = |s: &str| {
                    self.categories[j].get(s).map(|&i| i as f64).ok_or_else(|| {
                        err(InputProblem::UnknownCategory {
                            value: s.to_string(),
                            known: f.categories.clone(),
                        })
                    })
                };
                match v {
                    Value::String(s) => lookup(s)?,
                    Value::Null => f64::NAN,
                    Value::Number(n) => lookup(&n.to_string())?,
                    Value::Bool(b) => lookup(if *b { "true" } else { "false" })?,
                    other => lookup(&other.to_string())?,
                }
            }
        };
        if x.is_nan() && !f.nullable {
            return Err(err(InputProblem::Missing));
        }
        Ok(x)
    }

    /// Checks one raw number of input `j`.
    #[inline]
    fn check_raw(&self, row: usize, j: usize, x: f64) -> Result<(), InputError> {
        let f = &self.pre.features[j];
        let problem = if x.is_nan() {
            if f.nullable {
                return Ok(());
            }
            InputProblem::Missing
        } else if f.kind == FeatureKind::Category {
            let n = f.categories.len();
            if x >= 0.0 && x.fract() == 0.0 && (x as usize) < n {
                return Ok(());
            }
            InputProblem::BadCategoryIndex {
                value: x,
                categories: n,
            }
        } else {
            return Ok(());
        };
        Err(InputError {
            row,
            column: Some(f.name.clone()),
            problem,
        })
    }

    /// Runs `each(row, scores)` over rows given as JSON values.
    fn run_rows<R: AsRef<[Value]>>(
        &self,
        rows: &[R],
        mut each: impl FnMut(&[f64]),
    ) -> Result<(), InputError> {
        let w_in = self.pre.features.len();
        let w_enc = self.pre.encoded_width();
        with_scratch(w_in + w_enc + self.n_out, |buf| {
            let (raw, rest) = buf.split_at_mut(w_in);
            let (enc, out) = rest.split_at_mut(w_enc);
            for (r, row) in rows.iter().enumerate() {
                let row = row.as_ref();
                if row.len() != w_in {
                    return Err(InputError {
                        row: r,
                        column: None,
                        problem: InputProblem::WrongLength {
                            expected: self.input_names.clone(),
                            got: row.len(),
                        },
                    });
                }
                for (j, v) in row.iter().enumerate() {
                    raw[j] = self.raw_value(r, j, v)?;
                }
                self.pre.encode_raw_row(raw, enc);
                self.estimator.predict_row(enc, out);
                each(out);
            }
            Ok(())
        })
    }

    /// Runs `each(row, scores)` over raw row-major numbers.
    fn run_f64(
        &self,
        features: &[f64],
        n_rows: usize,
        check: bool,
        mut each: impl FnMut(&[f64]),
    ) -> Result<(), InputError> {
        let w_in = self.pre.features.len();
        if features.len() != n_rows * w_in {
            return Err(InputError {
                row: 0,
                column: None,
                problem: InputProblem::WrongShape {
                    len: features.len(),
                    rows: n_rows,
                    width: w_in,
                },
            });
        }
        let w_enc = self.pre.encoded_width();
        with_scratch(w_enc + self.n_out, |buf| {
            let (enc, out) = buf.split_at_mut(w_enc);
            for r in 0..n_rows {
                let raw = &features[r * w_in..(r + 1) * w_in];
                if check {
                    for (j, &x) in raw.iter().enumerate() {
                        self.check_raw(r, j, x)?;
                    }
                }
                self.pre.encode_raw_row(raw, enc);
                self.estimator.predict_row(enc, out);
                each(out);
            }
            Ok(())
        })
    }

    /// Predicts rows of JSON values, one per input column in [`PortableModel::input_names`]
    /// order. Numbers may also come as numeric strings (CSV); null or `""` is missing.
    pub fn predict_rows<R: AsRef<[Value]>>(
        &self,
        rows: &[R],
    ) -> Result<Vec<Prediction>, InputError> {
        let mut preds = Vec::with_capacity(rows.len());
        self.run_rows(rows, |out| preds.push(self.make_prediction(out)))?;
        Ok(preds)
    }

    /// Predicts records (JSON objects keyed by column name, as in `dataframe_records`); keys
    /// that are not inputs are ignored, a missing input is an error.
    pub fn predict_records(&self, records: &[Value]) -> Result<Vec<Prediction>, InputError> {
        let mut rows: Vec<Vec<Value>> = Vec::with_capacity(records.len());
        for (r, rec) in records.iter().enumerate() {
            let Value::Object(map) = rec else {
                return Err(InputError {
                    row: r,
                    column: None,
                    problem: InputProblem::NotARecord,
                });
            };
            let mut row = Vec::with_capacity(self.input_names.len());
            for name in &self.input_names {
                match map.get(name) {
                    Some(v) => row.push(v.clone()),
                    None => {
                        return Err(InputError {
                            row: r,
                            column: Some(name.clone()),
                            problem: InputProblem::MissingColumn,
                        });
                    }
                }
            }
            rows.push(row);
        }
        self.predict_rows(&rows)
    }

    /// The fitted encoding of the inputs.
    pub(crate) fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// Per-prediction contributions of raw rows (see [`crate::explain`]), checked as
    /// [`PortableModel::predict_f64`] checks them.
    ///
    /// # Errors
    /// A value the signature refuses, or a model that is not a tree model with node covers.
    pub fn explain_f64(
        &self,
        features: &[f64],
        n_rows: usize,
    ) -> Result<crate::explain::Explanation, crate::explain::ExplainError> {
        self.run_f64(features, n_rows, true, |_| ())
            .map_err(crate::explain::ExplainError::Input)?;
        crate::explain::explain(self, features, n_rows)
    }

    /// Predicts raw rows: `features` is row-major, `n_rows` x inputs (see the module docs).
    pub fn predict_f64(
        &self,
        features: &[f64],
        n_rows: usize,
    ) -> Result<Vec<Prediction>, InputError> {
        let mut preds = Vec::with_capacity(n_rows);
        self.run_f64(features, n_rows, true, |out| {
            preds.push(self.make_prediction(out))
        })?;
        Ok(preds)
    }

    fn require_classifier(&self) -> Result<(), InputError> {
        if self.manifest.task == Task::Classification {
            Ok(())
        } else {
            Err(InputError {
                row: 0,
                column: None,
                problem: InputProblem::NotAClassifier,
            })
        }
    }

    /// Class probabilities of JSON rows: one vector per row, in [`PortableModel::classes`] order.
    pub fn predict_proba(&self, rows: &[impl AsRef<[Value]>]) -> Result<Vec<Vec<f64>>, InputError> {
        self.require_classifier()?;
        let mut probs = Vec::with_capacity(rows.len());
        self.run_rows(rows, |out| probs.push(out.to_vec()))?;
        Ok(probs)
    }

    /// Class probabilities of raw rows, row-major (`n_rows` x classes).
    pub fn predict_proba_f64(
        &self,
        features: &[f64],
        n_rows: usize,
    ) -> Result<Vec<f64>, InputError> {
        self.require_classifier()?;
        let mut probs = Vec::with_capacity(n_rows * self.n_out);
        self.run_f64(features, n_rows, true, |out| probs.extend_from_slice(out))?;
        Ok(probs)
    }

    /// Scores of raw rows (probabilities for a classifier, else the value or cluster),
    /// appended to `out`, `n_outputs` per row. Unlike [`PortableModel::predict_f64`], NaN is
    /// accepted in every column and imputed as a missing value (the training mean of a
    /// number, no category of a categorical): what an endpoint that does not enforce the
    /// signature sends for a value it could not read. Category indices must be in range.
    pub fn scores_f64(
        &self,
        features: &[f64],
        n_rows: usize,
        out: &mut Vec<f64>,
    ) -> Result<(), InputError> {
        let w_in = self.pre.features.len();
        if w_in > 0 && features.len() == n_rows * w_in {
            // Nullability aside, the checks of strict input: a category index in range.
            for (r, row) in features.chunks_exact(w_in).enumerate() {
                for (j, (f, &x)) in self.pre.features.iter().zip(row).enumerate() {
                    if f.kind == FeatureKind::Category && !x.is_nan() {
                        self.check_raw(r, j, x)?;
                    }
                }
            }
        }
        out.reserve(n_rows * self.n_out);
        self.run_f64(features, n_rows, false, |s| out.extend_from_slice(s))
    }

    /// Raw input rows (see the module docs) of `table`'s input columns.
    pub fn raw_matrix(&self, table: &Table) -> Result<Vec<f64>, EncodeError> {
        self.pre.raw_matrix(table)
    }

    /// Predictions and scores (probabilities, value or cluster; row-major, `n_outputs` per
    /// row) for every row of `table`.
    pub fn predict_table(&self, table: &Table) -> Result<(Vec<Prediction>, Vec<f64>), EncodeError> {
        let raw = self.pre.raw_matrix(table)?;
        let n = table.n_rows();
        let mut preds = Vec::with_capacity(n);
        let mut scores = Vec::with_capacity(n * self.n_out);
        // `raw_matrix` has checked every value: nothing left to fail.
        let checked = self.run_f64(&raw, n, false, |out| {
            preds.push(self.make_prediction(out));
            scores.extend_from_slice(out);
        });
        debug_assert!(checked.is_ok());
        Ok((preds, scores))
    }

    /// Values per row in the scores of [`PortableModel::predict_table`].
    pub fn n_outputs(&self) -> usize {
        self.n_out
    }
}
