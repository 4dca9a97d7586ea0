//! Per-prediction explanations of tree models: the TreeSHAP contribution of every input
//! column ([`crate::algo::shap`]), so that for each output
//! `base_values[o] + sum over columns of contributions[row][column][o]` is exactly what the
//! model computed for that row, in the explanation's [`Explanation::space`]:
//!
//! - gradient boosting: the raw margin (log-odds of the second class for two classes, one
//!   score per class before the softmax for more, the value for a regression);
//! - a decision tree or random forest: the class probabilities, or the value.
//!
//! A categorical column's one-hot features are summed into the column (Shapley values add).

use crate::algo::boosting::Loss;
use crate::algo::shap;
use crate::algo::{Estimator, Task};
use crate::model::{InputError, PortableModel};

/// Contributions of the inputs to `rows` predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// What base value plus contributions add up to: `margin`, `probability` or `value`.
    pub space: &'static str,
    /// The outputs explained: class names, or the label's name for a value.
    pub outputs: Vec<String>,
    /// The input columns, in contribution order.
    pub features: Vec<String>,
    /// The model's expected output over its training rows, per output.
    pub base_values: Vec<f64>,
    /// `rows x features x outputs`, row-major.
    pub contributions: Vec<f64>,
}

impl Explanation {
    /// Contribution of input `f` to output `o` of row `r`.
    pub fn get(&self, r: usize, f: usize, o: usize) -> f64 {
        let (nf, no) = (self.features.len(), self.outputs.len());
        self.contributions[(r * nf + f) * no + o]
    }
}

/// Why a model cannot explain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExplainError {
    /// A row the signature refuses.
    #[error("{0}")]
    Input(InputError),
    /// Not a tree model, or one written before mlctl recorded node covers.
    #[error("{0}")]
    Unsupported(String),
}

/// Algorithms [`explain`] explains.
pub const EXPLAINED: &str = "decision_tree, random_forest and gradient_boosting";

/// Explains `n_rows` raw rows (row-major, one value per input; already checked).
///
/// # Errors
/// [`ExplainError::Unsupported`] for a model that is not a tree model with node covers.
pub fn explain(
    model: &PortableModel,
    raw: &[f64],
    n_rows: usize,
) -> Result<Explanation, ExplainError> {
    let algorithm = model.manifest().algorithm.as_str();
    let no_cover = || {
        ExplainError::Unsupported(format!(
            "this {algorithm} model has no node covers (it was trained before mlctl recorded them, or imported); train it again to explain its predictions"
        ))
    };
    let pre = model.preprocessor();
    let d_enc = pre.encoded_width();
    let w_in = pre.features.len();
    let classes = model.classes();
    let label = model.manifest().output.name.clone().unwrap_or_default();
    // Trees, each with the output it adds to and its weight, the outputs and the space.
    let (trees, outputs, space, mut base): (Vec<(&crate::algo::tree::Tree, usize, f64)>, _, _, _) =
        match model.estimator() {
            Estimator::Tree(t) => (
                vec![(t, usize::MAX, 1.0)],
                tree_outputs(model.task(), classes, &label),
                tree_space(model.task()),
                vec![0.0; t.n_out],
            ),
            Estimator::Forest(f) => {
                let w = 1.0 / f.trees.len().max(1) as f64;
                (
                    f.trees.iter().map(|t| (t, usize::MAX, w)).collect(),
                    tree_outputs(model.task(), classes, &label),
                    tree_space(model.task()),
                    vec![0.0; f.n_out()],
                )
            }
            Estimator::Boosting(b) => {
                let m = b.init.len().max(1);
                let outputs = match b.loss {
                    Loss::SquaredError => vec![label.clone()],
                    Loss::Binary => vec![classes.get(1).cloned().unwrap_or_default()],
                    Loss::Multiclass => classes.to_vec(),
                };
                (
                    b.trees
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (t, i % m, 1.0))
                        .collect(),
                    outputs,
                    if b.loss == Loss::SquaredError {
                        "value"
                    } else {
                        "margin"
                    },
                    b.init.clone(),
                )
            }
            _ => {
                return Err(ExplainError::Unsupported(format!(
                    "explanations are computed for tree models ({EXPLAINED}); this model is {algorithm}"
                )));
            }
        };
    let n_out = base.len();
    if outputs.len() != n_out {
        return Err(ExplainError::Unsupported(format!(
            "this {algorithm} model has {n_out} outputs but {} classes",
            outputs.len()
        )));
    }
    for &(t, o, w) in &trees {
        let e = shap::expected_value(t).ok_or_else(no_cover)?;
        if o == usize::MAX {
            for (b, v) in base.iter_mut().zip(&e) {
                *b += w * v;
            }
        } else {
            base[o] += w * e[0];
        }
    }
    let mut contributions = vec![0.0; n_rows * w_in * n_out];
    let mut enc = vec![0.0; d_enc];
    let mut phi = vec![0.0; d_enc * n_out];
    let mut one = vec![0.0; d_enc];
    for r in 0..n_rows {
        pre.encode_raw_row(&raw[r * w_in..(r + 1) * w_in], &mut enc);
        phi.fill(0.0);
        for &(t, o, w) in &trees {
            if o == usize::MAX {
                // A tree with a value per output.
                let mut tp = vec![0.0; d_enc * t.n_out];
                shap::shap(t, &enc, &mut tp);
                for (a, v) in phi.iter_mut().zip(&tp) {
                    *a += w * v;
                }
            } else {
                one.fill(0.0);
                shap::shap(t, &enc, &mut one);
                for (f, v) in one.iter().enumerate() {
                    phi[f * n_out + o] += w * v;
                }
            }
        }
        // Encoded features back to input columns.
        let mut at = 0;
        for (j, f) in pre.features.iter().enumerate() {
            for e in at..at + f.width() {
                for o in 0..n_out {
                    contributions[(r * w_in + j) * n_out + o] += phi[e * n_out + o];
                }
            }
            at += f.width();
        }
    }
    Ok(Explanation {
        space,
        outputs,
        features: model.input_names().to_vec(),
        base_values: base,
        contributions,
    })
}

fn tree_outputs(task: Task, classes: &[String], label: &str) -> Vec<String> {
    match task {
        Task::Classification => classes.to_vec(),
        _ => vec![label.to_string()],
    }
}

fn tree_space(task: Task) -> &'static str {
    match task {
        Task::Classification => "probability",
        _ => "value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{ColumnData, Table};
    use crate::train::{TrainRequest, train};
    use mlctl_spec::Algorithm;
    use serde_json::json;

    /// Numbers, a category with four values and a missing value, and a label that depends
    /// on both (a class for `kind: class`, else a number).
    fn table(n: usize, classes: usize) -> Table {
        let mut r = crate::rng::Rng::new(11);
        let a: Vec<f64> = (0..n)
            .map(|i| {
                if i % 17 == 0 {
                    f64::NAN
                } else {
                    r.next_f64() * 10.0
                }
            })
            .collect();
        let b: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let c: Vec<Option<String>> = (0..n)
            .map(|_| Some(["north", "south", "east", "west"][r.index(4)].to_string()))
            .collect();
        let score: Vec<f64> = (0..n)
            .map(|i| {
                let a = if a[i].is_nan() { 5.0 } else { a[i] };
                a * 0.3
                    + b[i]
                    + if c[i].as_deref() == Some("east") {
                        1.5
                    } else {
                        0.0
                    }
            })
            .collect();
        let mut t = Table::from_columns([
            ("a", ColumnData::Float(a)),
            ("b", ColumnData::Float(b)),
            ("c", ColumnData::Str(c)),
        ])
        .unwrap();
        let y = if classes == 0 {
            ColumnData::Float(score.iter().map(|s| s + r.normal() * 0.1).collect())
        } else {
            ColumnData::Str(
                score
                    .iter()
                    .map(|s| {
                        Some(format!(
                            "k{}",
                            ((s + 1.0).max(0.0) as usize / 2).min(classes - 1)
                        ))
                    })
                    .collect(),
            )
        };
        t.push_column("y", y).unwrap();
        t
    }

    fn fit(algorithm: Algorithm, hp: serde_json::Value, t: &Table) -> PortableModel {
        let hp = serde_json::from_value(hp).unwrap();
        train(TrainRequest {
            algorithm,
            hyperparameters: &hp,
            train: t,
            validation: None,
            target: Some("y"),
            seed: 1,
            schema: None,
        })
        .unwrap()
    }

    /// What the explanation must add up to: the model's own output for row `r`.
    fn output(m: &PortableModel, raw: &[f64], r: usize) -> Vec<f64> {
        let pre = m.preprocessor();
        let w = pre.features.len();
        let mut enc = vec![0.0; pre.encoded_width()];
        pre.encode_raw_row(&raw[r * w..(r + 1) * w], &mut enc);
        match m.estimator() {
            Estimator::Boosting(b) => {
                let mut out = b.init.clone();
                for (i, t) in b.trees.iter().enumerate() {
                    out[i % b.init.len()] += t.leaf(&enc)[0];
                }
                out
            }
            e => {
                let mut out = vec![0.0; e.n_outputs()];
                e.predict_row(&enc, &mut out);
                out
            }
        }
    }

    #[test]
    fn contributions_add_up_to_every_tree_models_output() {
        let cases = [
            (
                Algorithm::GradientBoosting,
                json!({"n_estimators": 30}),
                0,
                "value",
            ),
            (
                Algorithm::GradientBoosting,
                json!({"n_estimators": 30}),
                2,
                "margin",
            ),
            (
                Algorithm::GradientBoosting,
                json!({"n_estimators": 20, "max_leaf_nodes": 12}),
                3,
                "margin",
            ),
            (
                Algorithm::RandomForest,
                json!({"n_estimators": 10}),
                3,
                "probability",
            ),
            (
                Algorithm::RandomForest,
                json!({"n_estimators": 10}),
                0,
                "value",
            ),
            (
                Algorithm::DecisionTree,
                json!({"max_depth": 6}),
                3,
                "probability",
            ),
        ];
        for (algorithm, hp, classes, space) in cases {
            let t = table(400, classes);
            let m = fit(algorithm, hp, &t);
            let raw = m.raw_matrix(&t.head(40)).unwrap();
            let e = m.explain_f64(&raw, 40).unwrap();
            assert_eq!(e.space, space);
            assert_eq!(e.features, ["a", "b", "c"]);
            let no = e.outputs.len();
            for r in 0..40 {
                let want = output(&m, &raw, r);
                assert_eq!(want.len(), no, "{algorithm:?}");
                for (o, want) in want.iter().enumerate() {
                    let sum = e.base_values[o] + (0..3).map(|f| e.get(r, f, o)).sum::<f64>();
                    assert!(
                        (sum - want).abs() < 1e-9,
                        "{algorithm:?} {classes} classes, row {r} output {o}: {sum} vs {want}"
                    );
                }
            }
            // The numeric columns, which move the label most, carry weight.
            let mean_abs = |f: usize| (0..40).map(|r| e.get(r, f, 0).abs()).sum::<f64>();
            assert!(
                mean_abs(0) + mean_abs(1) > mean_abs(2) * 0.5,
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn a_model_that_is_not_a_tree_model_or_has_no_covers_is_refused_in_words() {
        let t = table(200, 2);
        let m = fit(Algorithm::LogisticRegression, json!({}), &t);
        let raw = m.raw_matrix(&t.head(2)).unwrap();
        let e = m.explain_f64(&raw, 2).unwrap_err();
        assert!(
            e.to_string().contains(
                "explanations are computed for tree models (decision_tree, random_forest and gradient_boosting); this model is logistic_regression"
            ),
            "{e}"
        );
        // A boosted model saved before covers were recorded.
        let m = fit(Algorithm::GradientBoosting, json!({"n_estimators": 3}), &t);
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        let weights = dir.path().join("weights.json");
        let mut w: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&weights).unwrap()).unwrap();
        strip_covers(&mut w);
        std::fs::write(&weights, w.to_string()).unwrap();
        let old = PortableModel::load(dir.path()).unwrap();
        let e = old.explain_f64(&raw, 2).unwrap_err();
        assert!(e.to_string().contains("has no node covers"), "{e}");
    }

    fn strip_covers(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("cover");
                m.values_mut().for_each(strip_covers);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_covers),
            _ => {}
        }
    }
}
