//! `kind: TrainingJob`: algorithm or script mode, metrics, tuning and compute.

use super::Ctx;
use crate::builtins::{self, ParamKind};
use crate::model::*;
use crate::suggest::{did_you_mean, list};
use crate::units;
use crate::yaml::{Node, Span};

/// Checks one TrainingJob's ranges and cross-field rules and fills its defaults.
pub(super) fn check(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    name: &str,
    t: &mut TrainingJobSpec,
    node: &Node,
) {
    match (&t.algorithm, &t.command) {
        (None, None) if ctx.mistyped(&["algorithm"]) || ctx.mistyped(&["command"]) => {}
        (None, None) => {
            ctx.err(
                "missing-field",
                file,
                at(&[]),
                format!(
                    "training job `{}` needs an `algorithm` or a `command`",
                    name
                ),
            )
            .hint = Some(format!(
                "built-ins: {}; or script mode: `command: python train.py` with `code: train/`",
                list(Algorithm::ALL.map(|a| a.0))
            ));
        }
        (Some(_), Some(_)) => {
            ctx.err(
                "conflicting-fields",
                file,
                at(&["command"]),
                "`algorithm` and `command` cannot both be set",
            )
            .hint = Some(
                "use `algorithm` for a built-in, or `command` (+ `code`) for script mode".into(),
            );
        }
        _ => {}
    }
    if t.algorithm.is_some() {
        for f in ["code", "image"] {
            if node.at(&["spec", f]).is_some() {
                ctx.err(
                    "conflicting-fields",
                    file,
                    at(&[f]),
                    format!("`{f}` applies to script mode (`command`) only"),
                );
            }
        }
        if !t.metrics.is_empty() {
            ctx.err("conflicting-fields", file, at(&["metrics"]), "`metrics` regexes apply to script mode only; built-ins report their metrics themselves");
        }
    }
    for (i, m) in t.metrics.iter().enumerate() {
        if capture_groups(&m.regex) != 1 {
            ctx.err(
                "bad-value",
                file,
                at(&["metrics", &i.to_string(), "regex"]),
                format!(
                    "metric `{}`: the regex must have exactly one capture group for the value",
                    m.name
                ),
            )
            .hint = Some("e.g. `regex: 'rmse=([0-9.]+)'`".into());
        }
        check_metric_goal(ctx, file, at, i, m);
    }
    if let Some(algorithm) = t.algorithm {
        check_hyperparameters(ctx, file, node, algorithm, t);
    }
    if let Some(tuning) = &mut t.tuning {
        check_tuning(ctx, file, at, tuning);
        if let Some(algorithm) = t.algorithm {
            check_search_space(ctx, file, node, algorithm, tuning);
        }
    }
    if let Some(c) = &t.compute {
        check_compute(ctx, file, at, c);
    }
}

/// A script's metric says which way is better: a `maxRegression` gate compares by it, and
/// nothing is guessed from the name. A name in the vocabulary has its published direction.
fn check_metric_goal(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    i: usize,
    m: &MetricDefinition,
) {
    let idx = i.to_string();
    let known = crate::metrics::metric(&m.name);
    match (m.goal, known) {
        (None, None) if !ctx.mistyped(&["metrics", &idx, "goal"]) => {
            ctx.err(
                "missing-field",
                file,
                at(&["metrics", &idx]),
                format!(
                    "metric `{}` needs `goal: maximize` or `goal: minimize`: it is not in the metric vocabulary, so mlctl cannot tell which way is better",
                    m.name
                ),
            )
            .hint = Some(format!(
                "add `goal: maximize` if larger `{}` is better, `goal: minimize` if smaller is (the vocabulary: docs/metrics.md)",
                m.name
            ));
        }
        (Some(goal), Some(k)) => {
            let agrees = match goal {
                Goal::Maximize => k.direction == crate::metrics::Direction::HigherIsBetter,
                Goal::Minimize => k.direction == crate::metrics::Direction::LowerIsBetter,
            };
            if !agrees {
                ctx.err(
                    "bad-value",
                    file,
                    at(&["metrics", &idx, "goal"]),
                    format!(
                        "metric `{}`: `goal: {}` contradicts the metric vocabulary, where {} `{}` is better",
                        m.name,
                        match goal {
                            Goal::Maximize => "maximize",
                            Goal::Minimize => "minimize",
                        },
                        k.direction.as_str(),
                        m.name
                    ),
                )
                .hint = Some(format!(
                    "drop `goal` (the vocabulary decides), or rename the metric if it means something else than `{}`",
                    k.meaning
                ));
            }
        }
        _ => {}
    }
}

fn check_tuning(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    tuning: &mut Tuning,
) {
    if let Some(0) = tuning.max_trials {
        ctx.err(
            "out-of-range",
            file,
            at(&["tuning", "maxTrials"]),
            "maxTrials must be at least 1",
        );
    }
    if let Some(0) = tuning.parallelism {
        ctx.err(
            "out-of-range",
            file,
            at(&["tuning", "parallelism"]),
            "parallelism must be at least 1",
        );
    }
    if tuning.search_space.is_empty() && !ctx.mistyped(&["tuning", "searchSpace"]) {
        ctx.err("missing-field", file, at(&["tuning", "searchSpace"]), "tuning.searchSpace is empty")
            .hint = Some("name at least one hyperparameter to search, e.g. `C: {min: 0.01, max: 10, scale: log}`".into());
    }
    for (name, p) in &tuning.search_space {
        let path = ["tuning", "searchSpace", name.as_str()];
        match (&p.values, p.min, p.max) {
            (Some(v), None, None) => {
                if v.is_empty() {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&path),
                        format!("search space `{name}`: values is empty"),
                    );
                }
            }
            (Some(_), _, _) => {
                ctx.err(
                    "conflicting-fields",
                    file,
                    at(&path),
                    format!("search space `{name}`: give `values` or `min`/`max`, not both"),
                );
            }
            (None, Some(lo), Some(hi)) => {
                if lo >= hi {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&path),
                        format!("search space `{name}`: min {lo} must be less than max {hi}"),
                    );
                }
                if p.scale == Some(Scale::Log) && lo <= 0.0 {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&path),
                        format!("search space `{name}`: a log scale needs min > 0, got {lo}"),
                    );
                }
                if tuning.strategy == TuningStrategy::Grid
                    && p.step.is_none()
                    && p.ty != Some(ParamType::Int)
                    && !ctx.mistyped(&["tuning", "searchSpace", name, "step"])
                {
                    ctx.err("missing-field", file, at(&path), format!("search space `{name}`: a grid over a float range needs `step` (or `values`)"));
                }
                if let Some(s) = p.step
                    && s <= 0.0
                {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&path),
                        format!("search space `{name}`: step must be greater than 0"),
                    );
                }
            }
            _ if ["values", "min", "max"]
                .iter()
                .any(|f| ctx.mistyped(&["tuning", "searchSpace", name, f])) => {}
            _ => {
                ctx.err(
                    "missing-field",
                    file,
                    at(&path),
                    format!("search space `{name}` needs `values` or both `min` and `max`"),
                );
            }
        }
        if p.ty == Some(ParamType::Categorical)
            && p.values.is_none()
            && !ctx.mistyped(&["tuning", "searchSpace", name, "values"])
        {
            ctx.err(
                "missing-field",
                file,
                at(&path),
                format!("search space `{name}`: categorical parameters need `values`"),
            );
        }
    }
    tuning.max_trials.get_or_insert(10);
    tuning.parallelism.get_or_insert(1);
    tuning.seed.get_or_insert(42);
}

/// A built-in's hyperparameters: names it takes, values of the type and in the range its
/// trainer accepts (the table is [`builtins`]). Walks the written mapping, so each problem
/// points at its key or value without a lookup per entry.
fn check_hyperparameters(
    ctx: &mut Ctx,
    file: &str,
    node: &Node,
    algorithm: Algorithm,
    t: &TrainingJobSpec,
) {
    let Some(entries) = node.at(&["spec", "hyperparameters"]).and_then(Node::as_map) else {
        return;
    };
    let alg = algorithm.as_str();
    for (k, v) in entries {
        let name = k.as_str().unwrap_or_default();
        let Some(h) = builtins::hyperparameter(algorithm, name) else {
            unknown_hyperparameter(ctx, file, k.span, algorithm, name, "");
            continue;
        };
        let Some(value) = t.hyperparameters.get(name) else {
            continue;
        };
        if let Err(bad) = h.check(value) {
            let code = if bad.wrong_type {
                "wrong-type"
            } else {
                "out-of-range"
            };
            ctx.err(
                code,
                file,
                Some(v.span),
                format!("hyperparameter `{name}` of {alg} {}", bad.message),
            )
            .hint = Some(format!("`{name}`: {}; default {}", h.meaning, h.default));
        }
    }
    for (a, b) in builtins::aliases(algorithm) {
        if let (Some(_), Some(second)) = (
            entries.iter().position(|(k, _)| k.as_str() == Some(a)),
            entries.iter().find(|(k, _)| k.as_str() == Some(b)),
        ) {
            ctx.err(
                "conflicting-fields",
                file,
                Some(second.0.span),
                format!("`{a}` and `{b}` are two names for one setting of {alg}"),
            )
            .hint = Some(format!("give `{a}` or `{b}`, not both"));
        }
    }
}

fn unknown_hyperparameter(
    ctx: &mut Ctx,
    file: &str,
    span: Span,
    algorithm: Algorithm,
    name: &str,
    where_: &str,
) {
    let names = builtins::names(algorithm);
    let takes = format!("{} takes: {}", algorithm.as_str(), list(names));
    let hint = match did_you_mean(name, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? {takes}"),
        None => format!(
            "{takes}; for other settings, use script mode (`command`), which takes any hyperparameters"
        ),
    };
    ctx.hint(
        "unknown-hyperparameter",
        file,
        Some(span),
        format!(
            "unknown hyperparameter `{name}` {where_}for {}",
            algorithm.as_str()
        ),
        Some(hint),
    );
}

/// A built-in's search space: names it takes, and values and ranges inside what it accepts.
fn check_search_space(
    ctx: &mut Ctx,
    file: &str,
    node: &Node,
    algorithm: Algorithm,
    tuning: &Tuning,
) {
    let Some(entries) = node
        .at(&["spec", "tuning", "searchSpace"])
        .and_then(Node::as_map)
    else {
        return;
    };
    let alg = algorithm.as_str();
    for (k, pnode) in entries {
        let name = k.as_str().unwrap_or_default();
        let Some(h) = builtins::hyperparameter(algorithm, name) else {
            unknown_hyperparameter(ctx, file, k.span, algorithm, name, "in the search space ");
            continue;
        };
        let Some(p) = tuning.search_space.get(name) else {
            continue;
        };
        let takes = format!(
            "`{name}` of {alg} takes {}; default {}",
            h.kind.describe(),
            h.default
        );
        let span_of = |field: &str| pnode.get(field).map(|n| n.span).or(Some(pnode.span));
        if let Some(values) = &p.values {
            let items = pnode
                .get("values")
                .and_then(Node::as_seq)
                .unwrap_or_default();
            for (i, v) in values.iter().enumerate() {
                if let Err(bad) = h.check(v) {
                    let span = items.get(i).map(|n| n.span).or(span_of("values"));
                    ctx.err(
                        if bad.wrong_type {
                            "wrong-type"
                        } else {
                            "out-of-range"
                        },
                        file,
                        span,
                        format!("search space `{name}`: a value {}", bad.message),
                    )
                    .hint = Some(takes.clone());
                }
            }
            continue;
        }
        match h.kind.range_is_integer() {
            None => {
                if p.min.is_some() || p.max.is_some() {
                    ctx.err(
                        "bad-value",
                        file,
                        span_of("min"),
                        format!("search space `{name}`: {alg}'s `{name}` is not a number, so it has no range"),
                    )
                    .hint = Some(format!(
                        "search it over `values` instead: `{name}: {{values: {}}}`; it takes {}",
                        h.kind.example_values(),
                        h.kind.describe()
                    ));
                }
            }
            Some(integer) => {
                let ints = p.ty == Some(ParamType::Int);
                if integer && !ints && (p.min.is_some() || p.max.is_some()) {
                    ctx.err(
                        "bad-value",
                        file,
                        span_of("type"),
                        format!("search space `{name}`: {alg}'s `{name}` takes whole numbers, but this range is searched as floats"),
                    )
                    .hint = Some("add `type: int` to search whole numbers".into());
                }
                // An int search over `max_features` is a count (at least 1), a float one a
                // fraction (at most 1).
                let kind = match (h.kind, ints) {
                    (ParamKind::Features, true) => ParamKind::Int { min: 1, max: None },
                    (ParamKind::Features, false) => ParamKind::Float {
                        min: builtins::Bound::Exclusive(0.0),
                        max: builtins::Bound::Inclusive(1.0),
                    },
                    (k, _) => k,
                };
                for (field, v) in [("min", p.min), ("max", p.max)] {
                    let Some(v) = v else { continue };
                    // Reported already: a log scale needs min > 0.
                    if field == "min" && p.scale == Some(Scale::Log) && v <= 0.0 {
                        continue;
                    }
                    if let Err(bad) = kind.check_number(v) {
                        ctx.err(
                            "out-of-range",
                            file,
                            span_of(field),
                            format!("search space `{name}`: `{field}` {}", bad.message),
                        )
                        .hint = Some(takes.clone());
                    }
                }
            }
        }
    }
}

/// Checks compute resources (TrainingJobs and Endpoints share them).
pub(super) fn check_compute(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    c: &Compute,
) {
    if let Some(cpu) = c.cpu
        && cpu <= 0.0
    {
        ctx.err(
            "out-of-range",
            file,
            at(&["compute", "cpu"]),
            format!("compute.cpu must be greater than 0, got {cpu}"),
        );
    }
    if let Some(m) = &c.memory
        && let Err(e) = units::parse_memory(m)
    {
        ctx.err("bad-value", file, at(&["compute", "memory"]), e);
    }
    if let Some(t) = &c.timeout
        && let Err(e) = units::parse_duration(t)
    {
        ctx.err("bad-value", file, at(&["compute", "timeout"]), e);
    }
}

/// The capture groups of a regex: `(` not escaped, not in a `[...]` class, and not `(?...)`
/// unless named (`(?P<x>` or `(?<x>`).
fn capture_groups(regex: &str) -> usize {
    let chars: Vec<char> = regex.chars().collect();
    let (mut i, mut count, mut in_class) = (0, 0, false);
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '[' => {
                in_class = true;
                // `[]...]` and `[^]...]`: a `]` first in a class is literal.
                if chars.get(i + 1) == Some(&'^') {
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    i += 1;
                }
            }
            '(' => {
                let named = match (chars.get(i + 2), chars.get(i + 3)) {
                    (Some('P'), Some('<')) => true,
                    (Some('<'), next) => !matches!(next, Some('=' | '!')),
                    _ => false,
                };
                if chars.get(i + 1) != Some(&'?') || named {
                    count += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_capture_groups() {
        assert_eq!(capture_groups(r"rmse=([0-9.]+)"), 1);
        assert_eq!(capture_groups(r"(?:loss|rmse)=([0-9.]+)"), 1);
        assert_eq!(capture_groups(r"\(?x=([0-9]+)"), 1);
        assert_eq!(capture_groups(r"(?P<v>[0-9]+)"), 1);
        assert_eq!(capture_groups(r"(?<v>[0-9]+) (?<=a)"), 1);
        assert_eq!(capture_groups(r"[(]x=([0-9]+)"), 1);
        assert_eq!(capture_groups(r"[]()]"), 0);
        assert_eq!(capture_groups(r"(a)(b)"), 2);
        assert_eq!(capture_groups(r"\(?"), 0);
    }
}
