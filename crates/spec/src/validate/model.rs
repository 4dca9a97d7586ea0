//! `kind: Model`: gates, stage and approval.

use super::Ctx;
use crate::model::*;
use crate::yaml::Span;

/// Checks one Model's ranges and cross-field rules and fills its defaults.
pub(super) fn check(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    m: &mut ModelSpec,
) {
    for (i, g) in m.gates.iter().enumerate() {
        let idx = i.to_string();
        let mistyped = ["min", "max", "maxRegression"]
            .iter()
            .any(|f| ctx.mistyped(&["gates", &idx, f]));
        if g.min.is_none() && g.max.is_none() && g.max_regression.is_none() && !mistyped {
            ctx.err(
                "missing-field",
                file,
                at(&["gates", &idx]),
                format!("gate on `{}` has no threshold", g.metric),
            )
            .hint = Some("add `min`, `max` or `maxRegression`".into());
        }
        if let (Some(lo), Some(hi)) = (g.min, g.max)
            && lo > hi
        {
            ctx.err(
                "out-of-range",
                file,
                at(&["gates", &idx, "min"]),
                format!("gate on `{}`: min {lo} is greater than max {hi}", g.metric),
            );
        }
        if g.require_baseline == Some(true) && g.max_regression.is_none() {
            ctx.err(
                "conflicting-fields",
                file,
                at(&["gates", &idx, "requireBaseline"]),
                format!(
                    "gate on `{}`: `requireBaseline` applies to a `maxRegression` gate",
                    g.metric
                ),
            )
            .hint = Some("add `maxRegression`, or drop `requireBaseline`".into());
        }
        if let Some(reg) = g.max_regression
            && reg < 0.0
        {
            ctx.err(
                "out-of-range",
                file,
                at(&["gates", &idx, "maxRegression"]),
                format!(
                    "gate on `{}`: maxRegression must be at least 0, got {reg}",
                    g.metric
                ),
            );
        }
    }
    match (&m.from, &m.mlflow) {
        (None, None) => {
            ctx.err(
                "missing-field",
                file,
                at(&[]),
                "a Model needs `from` (the TrainingJob that trains it) or `mlflow` (an MLflow model to import)",
            )
            .hint = Some(
                "write `from: <training job>`, or `mlflow: {path: models/my-model}` for a model made elsewhere"
                    .into(),
            );
        }
        (Some(_), Some(_)) => {
            ctx.err(
                "conflicting-fields",
                file,
                at(&["mlflow"]),
                "a Model comes from a TrainingJob (`from`) or from MLflow (`mlflow`), not both",
            )
            .hint = Some("keep one of them".into());
        }
        (None, Some(mf)) => check_mlflow(ctx, file, at, mf, !m.gates.is_empty()),
        (Some(_), None) => {}
    }
    if m.stage == Some(Stage::Archived) {
        ctx.err(
            "bad-value",
            file,
            at(&["stage"]),
            "a new model version cannot go straight to `archived`",
        )
        .hint = Some("use `staging` or `production`".into());
    }
    m.stage.get_or_insert(Stage::Staging);
    m.approval.get_or_insert(Approval::Auto);
}

/// `mlflow:`: one source, an immutable URI, no gates (an imported model brings no metrics
/// mlctl measured).
fn check_mlflow(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    m: &MlflowModel,
    has_gates: bool,
) {
    match (&m.path, &m.uri) {
        (None, None) => {
            ctx.err(
                "missing-field",
                file,
                at(&["mlflow"]),
                "`mlflow` needs a `path` (an MLflow model directory in the project) or a `uri` (`runs:/RUN_ID/PATH`, `models:/NAME/VERSION`)",
            );
        }
        (Some(_), Some(_)) => {
            ctx.err(
                "conflicting-fields",
                file,
                at(&["mlflow", "uri"]),
                "`mlflow` takes a `path` or a `uri`, not both",
            );
        }
        (None, Some(uri)) => {
            let pinned = match (uri.strip_prefix("runs:/"), uri.strip_prefix("models:/")) {
                (Some(rest), _) => rest
                    .split_once('/')
                    .is_some_and(|(run, path)| !run.is_empty() && !path.is_empty()),
                (_, Some(rest)) => rest
                    .rsplit_once('/')
                    .is_some_and(|(name, v)| !name.is_empty() && v.parse::<u32>().is_ok()),
                _ => false,
            };
            if !pinned {
                let alias = uri.starts_with("models:/") && uri.contains('@');
                ctx.err(
                    "bad-value",
                    file,
                    at(&["mlflow", "uri"]),
                    format!(
                        "`{}` is not a model URI mlctl can pin{}",
                        crate::suggest::quote(uri),
                        if alias {
                            ": an alias moves to another version without a commit, so the spec would not say what is served"
                        } else {
                            ""
                        }
                    ),
                )
                .hint = Some(
                    "write `runs:/RUN_ID/PATH` or `models:/NAME/VERSION` (a number), or a `path` in the project".into(),
                );
            }
        }
        (Some(_), None) => {}
    }
    if has_gates {
        ctx.err(
            "conflicting-fields",
            file,
            at(&["gates"]),
            "gates judge the metrics of a model mlctl trained; an imported MLflow model brings none it measured",
        )
        .hint = Some(
            "drop `gates`, or train the model with a TrainingJob (`from:`) so its held-out metrics are measured"
                .into(),
        );
    }
}
