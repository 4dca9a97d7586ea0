//! `kind: TrainingJob`: algorithm or script mode, metrics, tuning and compute.

use super::Ctx;
use crate::model::*;
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
                Algorithm::ALL.map(|a| a.0).join(", ")
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
    if let Some(code) = &t.code
        && (code.starts_with('/') || code.split('/').any(|p| p == ".."))
    {
        ctx.err(
            "bad-value",
            file,
            at(&["code"]),
            format!("code `{code}` is outside the project"),
        );
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
    }
    if let Some(tuning) = &mut t.tuning {
        check_tuning(ctx, file, at, tuning);
    }
    if let Some(c) = &t.compute {
        check_compute(ctx, file, at, c);
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
    if tuning.search_space.is_empty() {
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
            _ => {
                ctx.err(
                    "missing-field",
                    file,
                    at(&path),
                    format!("search space `{name}` needs `values` or both `min` and `max`"),
                );
            }
        }
        if p.ty == Some(ParamType::Categorical) && p.values.is_none() {
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
