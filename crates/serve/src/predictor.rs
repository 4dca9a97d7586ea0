//! The boundary between the HTTP layer and a model.

use crate::ServeError;
use crate::schema::{InputSchema, Output};
use std::sync::Arc;

/// A loaded model the server can call.
///
/// # Contract
/// - `raw` holds `rows * schema().width()` values in the raw layout (see [`InputSchema`]),
///   already checked against the schema: numbers are finite or NaN only where the column is
///   nullable, category indices are in range.
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
}

/// A shared predictor.
pub type DynPredictor = Arc<dyn Predictor>;
