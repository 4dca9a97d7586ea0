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
