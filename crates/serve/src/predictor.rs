//! The boundary between the HTTP layer and a model.

use crate::ServeError;
use crate::schema::{InputSchema, Output};
use std::sync::Arc;

/// A loaded model the server can call.
///
/// # Contract
/// - `raw` holds `rows * schema().width()` values in the raw layout (see [`InputSchema`]),
///   already checked against the schema: numbers are finite, category indices are in range,
///   and NaN (missing) appears only where the column is nullable, unless the endpoint does
///   not enforce the signature (`enforce: warn` or `off`): then NaN may be in any column
///   and the model takes it as missing (imputes it) instead of failing.
/// - `predict` appends exactly `rows` values to `out`: class indices for
///   [`Output::Classes`], numbers for [`Output::Number`].
/// - It must not panic on any checked input; an `Err` becomes a 500 for that request.
pub trait Predictor: Send + Sync + 'static {
    /// The input columns.
    fn schema(&self) -> &InputSchema;
    /// What predictions are.
    fn output(&self) -> &Output;
    /// Predicts `rows` rows.
    fn predict(&self, raw: &[f64], rows: usize, out: &mut Vec<f64>) -> Result<(), ServeError>;
    /// Whether [`Predictor::predict_proba`] gives class probabilities (classifiers).
    fn has_probabilities(&self) -> bool {
        false
    }
    /// Appends the class probabilities of `rows` rows to `out`: one per class of
    /// [`Output::Classes`], in that order, per row. Same input contract as `predict`.
    fn predict_proba(
        &self,
        _raw: &[f64],
        _rows: usize,
        _out: &mut Vec<f64>,
    ) -> Result<(), ServeError> {
        Err(ServeError::Predict(
            "this model gives no class probabilities".into(),
        ))
    }
    /// Whether [`Predictor::explain`] works for this model, or why not in words (what a
    /// request asking for explanations is answered, as a 400).
    fn explainable(&self) -> Result<(), String> {
        Err("this model gives no explanations".into())
    }
    /// Per-prediction contributions of each input column (TreeSHAP for tree models). Same
    /// input contract as `predict`.
    fn explain(
        &self,
        _raw: &[f64],
        _rows: usize,
    ) -> Result<mlctl_ml::explain::Explanation, ServeError> {
        Err(ServeError::Predict(
            "this model gives no explanations".into(),
        ))
    }
    /// The classes as JSON literals, typed as the training label was (`0`, not `"0"`, for
    /// an int label). `None`: the labels of [`Output::Classes`] as JSON strings.
    fn class_literals(&self) -> Option<Vec<String>> {
        None
    }
}

/// A shared predictor.
pub type DynPredictor = Arc<dyn Predictor>;
