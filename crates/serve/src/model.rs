//! Loading model directories: the portable model format of `mlctl-ml`.

use crate::ServeError;
use crate::predictor::{DynPredictor, Predictor};
use crate::schema::{Column, ColumnKind, InputSchema, Output};
use crate::server::Loader;
use mlctl_ml::algo::argmax;
use mlctl_ml::model::PortableModel;
use mlctl_ml::preprocess::FeatureKind;
use std::path::Path;
use std::sync::Arc;

/// A portable model behind the [`Predictor`] boundary.
pub struct Portable {
    model: PortableModel,
    schema: InputSchema,
    output: Output,
    /// Whether the model explains its predictions, or why not (found once, at load).
    explainable: Result<(), String>,
}

impl Portable {
    /// Wraps a loaded model.
    pub fn new(model: PortableModel) -> Portable {
        let columns = model
            .manifest()
            .inputs
            .iter()
            .map(|f| Column {
                name: f.name.clone(),
                kind: match f.kind {
                    FeatureKind::Float => ColumnKind::Number,
                    FeatureKind::Category => ColumnKind::Category(f.categories.clone()),
                },
                nullable: f.nullable,
                integer: f.kind == FeatureKind::Float && f.storage.as_deref() == Some("int"),
            })
            .collect();
        let output = if model.task() != mlctl_ml::Task::Classification || model.classes().is_empty()
        {
            Output::Number
        } else {
            Output::Classes(model.classes().to_vec())
        };
        let explainable = mlctl_ml::explain::explain(&model, &[], 0)
            .map(|_| ())
            .map_err(|e| e.to_string());
        Portable {
            schema: InputSchema::new(columns),
            output,
            model,
            explainable,
        }
    }

    /// The model.
    pub fn model(&self) -> &PortableModel {
        &self.model
    }
}

impl Predictor for Portable {
    fn schema(&self) -> &InputSchema {
        &self.schema
    }

    fn output(&self) -> &Output {
        &self.output
    }

    fn predict(&self, raw: &[f64], rows: usize, out: &mut Vec<f64>) -> Result<(), ServeError> {
        let fail = |e: mlctl_ml::model::InputError| ServeError::Predict(e.to_string());
        if let Output::Classes(labels) = &self.output {
            // Probabilities and the model's own argmax: no per-row label handles, whose shared
            // reference counts would bounce between cores.
            let mut probs = Vec::new();
            self.model.scores_f64(raw, rows, &mut probs).map_err(fail)?;
            out.extend(probs.chunks(labels.len().max(1)).map(|p| argmax(p) as f64));
        } else {
            // Regression values and cluster indices are the scores themselves.
            self.model.scores_f64(raw, rows, out).map_err(fail)?;
        }
        Ok(())
    }

    fn has_probabilities(&self) -> bool {
        matches!(self.output, Output::Classes(_))
    }

    fn predict_proba(
        &self,
        raw: &[f64],
        rows: usize,
        out: &mut Vec<f64>,
    ) -> Result<(), ServeError> {
        if !self.has_probabilities() {
            return Err(ServeError::Predict(
                "probabilities are only available from classifiers".into(),
            ));
        }
        self.model
            .scores_f64(raw, rows, out)
            .map_err(|e| ServeError::Predict(e.to_string()))
    }

    fn explainable(&self) -> Result<(), String> {
        self.explainable.clone()
    }

    fn explain(
        &self,
        raw: &[f64],
        rows: usize,
    ) -> Result<mlctl_ml::explain::Explanation, ServeError> {
        mlctl_ml::explain::explain(&self.model, raw, rows)
            .map_err(|e| ServeError::Predict(e.to_string()))
    }

    fn class_literals(&self) -> Option<Vec<String>> {
        let out = &self.model.manifest().output;
        (0..out.classes.len()).map(|i| out.class_json(i)).collect()
    }
}

/// Loads a portable model directory (`model.json` + weights).
///
/// # Errors
/// Why the model cannot be read (the caller names the variant).
pub fn load(dir: &Path) -> Result<DynPredictor, Box<dyn std::error::Error + Send + Sync>> {
    let model = PortableModel::load(dir)?;
    Ok(Arc::new(Portable::new(model)))
}

/// The loader used by `mlctl serve`.
pub fn default_loader() -> Loader {
    Arc::new(load)
}
