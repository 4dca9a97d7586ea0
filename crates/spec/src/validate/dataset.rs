//! `kind: Dataset`: source and format, schema, split and transform.

use super::{Ctx, trim_float};
use crate::model::*;
use crate::suggest::hint_among;
use crate::yaml::Span;
use std::collections::BTreeSet;

/// Checks one Dataset's ranges and cross-field rules and fills its defaults.
pub(super) fn check(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    name: &str,
    d: &mut DatasetSpec,
) {
    match (&d.source, &d.transform) {
        (None, None) if ctx.mistyped(&["source"]) || ctx.mistyped(&["transform"]) => {}
        (None, None) => {
            ctx.err("missing-field", file, at(&[]), format!("dataset `{}` needs a `source` or a `transform`", name))
                .hint = Some("set `source: data/file.csv` (or s3://, az://, https://), or derive it with `transform`".into());
        }
        (Some(_), Some(_)) => {
            ctx.err(
                "conflicting-fields",
                file,
                at(&["transform"]),
                "`source` and `transform` cannot both be set",
            )
            .hint = Some(
                "a derived dataset's source is its transform's output; remove `source`".into(),
            );
        }
        _ => {}
    }
    if let Some(src) = &d.source {
        let known = ["s3://", "az://", "https://", "http://", "gs://"];
        if src.contains("://") && !known.iter().any(|p| src.starts_with(p)) {
            ctx.err(
                "bad-value",
                file,
                at(&["source"]),
                format!("unsupported source scheme in `{src}`"),
            )
            .hint = Some("sources are project paths, s3://, az:// or https:// URLs".into());
        } else if src.starts_with("gs://") {
            ctx.err(
                "bad-value",
                file,
                at(&["source"]),
                "gs:// sources are not supported yet",
            )
            .hint = Some("copy the data to a project path, s3://, az:// or https://".into());
        }
        if d.format.is_none() && !ctx.mistyped(&["format"]) {
            let lower = src.to_ascii_lowercase();
            if lower.ends_with(".parquet") || lower.ends_with(".pq") {
                d.format = Some(DataFormat::Parquet);
            } else if lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
                d.format = Some(DataFormat::Csv);
            } else {
                ctx.err(
                    "missing-field",
                    file,
                    at(&["source"]),
                    format!("cannot tell the format of `{src}` from its name"),
                )
                .hint = Some("add `format: csv` or `format: parquet`".into());
            }
        }
    } else if d.format.is_none() {
        d.format = Some(DataFormat::Csv);
    }
    if let Some(digest) = &d.digest
        && (digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()))
    {
        ctx.err(
            "bad-value",
            file,
            at(&["digest"]),
            "digest must be a 64-character blake3 hex digest",
        )
        .hint = Some("run `mlctl data digest FILE` to compute it".into());
    }
    let columns: Vec<String> = d
        .schema
        .as_ref()
        .map(|s| s.columns.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    if let Some(schema) = &d.schema {
        let mut seen = BTreeSet::new();
        for (i, c) in schema.columns.iter().enumerate() {
            let idx = i.to_string();
            if !seen.insert(c.name.as_str()) {
                ctx.err(
                    "duplicate-name",
                    file,
                    at(&["schema", "columns", &idx, "name"]),
                    format!("column `{}` is declared twice", c.name),
                );
            }
            if let (Some(lo), Some(hi)) = (c.min, c.max)
                && lo > hi
            {
                ctx.err(
                    "out-of-range",
                    file,
                    at(&["schema", "columns", &idx, "min"]),
                    format!("column `{}`: min {lo} is greater than max {hi}", c.name),
                );
            }
            if (c.min.is_some() || c.max.is_some())
                && !matches!(c.ty, ColumnType::Float | ColumnType::Int)
            {
                ctx.err(
                    "conflicting-fields",
                    file,
                    at(&["schema", "columns", &idx, "min"]),
                    format!(
                        "column `{}`: min/max apply to float and int columns only",
                        c.name
                    ),
                );
            }
            match (&c.categories, c.ty) {
                (Some(_), ty) if !matches!(ty, ColumnType::Category | ColumnType::Int) => {
                    ctx.err(
                        "conflicting-fields",
                        file,
                        at(&["schema", "columns", &idx, "categories"]),
                        format!(
                            "column `{}`: categories apply to `type: category` and `type: int` columns only",
                            c.name
                        ),
                    )
                    .hint = Some(
                        "use `type: category` for a fixed set of text values, or `type: int` for coded numbers"
                            .into(),
                    );
                }
                (Some(cats), ColumnType::Int) if cats.iter().any(|v| v.parse::<i64>().is_err()) => {
                    let bad: Vec<&str> = cats
                        .iter()
                        .filter(|v| v.parse::<i64>().is_err())
                        .map(String::as_str)
                        .collect();
                    ctx.err(
                        "bad-value",
                        file,
                        at(&["schema", "columns", &idx, "categories"]),
                        format!(
                            "column `{}` is `type: int`, but its categories include {}",
                            c.name,
                            crate::suggest::list(&bad)
                        ),
                    )
                    .hint = Some("list whole numbers, or make the column `type: category`".into());
                }
                (Some(cats), _) if cats.is_empty() => {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&["schema", "columns", &idx, "categories"]),
                        format!("column `{}`: categories list is empty", c.name),
                    );
                }
                _ => {}
            }
        }
        check_roles(ctx, file, at, schema, d.target.as_deref());
        if let Some(f) = schema.max_missing_fraction
            && !(0.0..=1.0).contains(&f)
        {
            ctx.err(
                "out-of-range",
                file,
                at(&["schema", "maxMissingFraction"]),
                format!("maxMissingFraction must be between 0 and 1, got {f}"),
            );
        }
    }
    let check_column = |ctx: &mut Ctx, col: &str, path: &[&str], what: &str| {
        if !columns.is_empty() && !columns.iter().any(|c| c == col) {
            let known: Vec<&str> = columns.iter().map(String::as_str).collect();
            let hint = hint_among(col, &known, "columns");
            ctx.hint(
                "unknown-column",
                file,
                at(path),
                format!("{what} column `{col}` is not in the schema"),
                Some(hint),
            );
        }
    };
    if let Some(t) = &d.target {
        check_column(ctx, t, &["target"], "target");
    }
    if let Some(split) = &mut d.split {
        let parts = [
            ("train", Some(split.train)),
            ("validation", split.validation),
            ("test", split.test),
        ];
        let mut bad = false;
        for (name, v) in parts {
            if let Some(v) = v
                && (!(0.0..=1.0).contains(&v) || v.is_nan())
            {
                ctx.err(
                    "out-of-range",
                    file,
                    at(&["split", name]),
                    format!("split.{name} must be between 0 and 1, got {v}"),
                );
                bad = true;
            }
        }
        if split.train <= 0.0 && !bad {
            ctx.err(
                "out-of-range",
                file,
                at(&["split", "train"]),
                "split.train must be greater than 0",
            );
            bad = true;
        }
        let val = split.validation.unwrap_or(0.0);
        if !bad {
            match split.test {
                Some(test) => {
                    let sum = split.train + val + test;
                    if (sum - 1.0).abs() > 1e-9 {
                        ctx.err(
                            "out-of-range",
                            file,
                            at(&["split"]),
                            format!("split ratios must sum to 1, got {}", trim_float(sum)),
                        )
                        .hint = Some(format!(
                            "train {} + validation {} + test {} = {}",
                            split.train,
                            val,
                            test,
                            trim_float(sum)
                        ));
                    }
                }
                None => {
                    let rest = 1.0 - split.train - val;
                    if rest < -1e-9 {
                        ctx.err(
                            "out-of-range",
                            file,
                            at(&["split"]),
                            format!(
                                "split ratios must sum to 1, got {}",
                                trim_float(split.train + val)
                            ),
                        );
                    } else {
                        split.test = Some((rest * 1e9).round() / 1e9);
                    }
                }
            }
        }
        split.seed.get_or_insert(42);
        if let Some(s) = split.stratify.clone() {
            check_column(ctx, &s, &["split", "stratify"], "stratify");
        }
    }
    if let Some(limits) = &d.limits {
        for (field, value) in [
            ("maxLineBytes", limits.max_line_bytes),
            ("maxColumns", limits.max_columns),
            ("maxFileBytes", limits.max_file_bytes),
        ] {
            if value == Some(0) {
                ctx.err(
                    "bad-value",
                    file,
                    at(&["limits", field]),
                    format!("limits.{field} must be at least 1"),
                )
                .hint = Some(format!(
                    "leave `{field}` out for its default, or give the most the data needs"
                ));
            }
        }
    }
    if let Some(t) = &d.transform
        && t.command.trim().is_empty()
    {
        ctx.err(
            "bad-value",
            file,
            at(&["transform", "command"]),
            "transform.command is empty",
        );
    }
}

/// Column roles: one weight column at most, numeric and not the label; the label is a feature
/// column as far as roles go (it is the model's output, not an input).
fn check_roles(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    schema: &DataSchema,
    target: Option<&str>,
) {
    let mut weight: Option<&str> = None;
    for (i, c) in schema.columns.iter().enumerate() {
        let idx = i.to_string();
        let path = ["schema", "columns", idx.as_str(), "role"];
        let role = c.role();
        if role != ColumnRole::Feature && target == Some(c.name.as_str()) {
            ctx.err(
                "conflicting-fields",
                file,
                at(&path),
                format!(
                    "column `{}` is the dataset's `target`, so it cannot have `role: {}`",
                    c.name,
                    role_name(role)
                ),
            )
            .hint = Some("remove `role` from the label column, or choose another `target`".into());
        }
        if role != ColumnRole::Weight {
            continue;
        }
        if let Some(first) = weight {
            ctx.err(
                "conflicting-fields",
                file,
                at(&path),
                format!(
                    "column `{}` is a second `role: weight` column (`{first}` is the first)",
                    c.name
                ),
            )
            .hint = Some(
                "a dataset has one sample weight: keep one, make the others `role: ignore`".into(),
            );
        }
        weight.get_or_insert(c.name.as_str());
        if !matches!(c.ty, ColumnType::Float | ColumnType::Int) || c.categories.is_some() {
            ctx.err(
                "conflicting-fields",
                file,
                at(&path),
                format!(
                    "column `{}` is a sample weight, so it must be a number column without categories",
                    c.name
                ),
            )
            .hint = Some("make it `type: float` (or `int`), or give it another role".into());
        }
        if c.min.is_some_and(|m| m < 0.0) {
            ctx.err(
                "out-of-range",
                file,
                at(&["schema", "columns", &idx, "min"]),
                format!(
                    "column `{}` is a sample weight; weights cannot be negative",
                    c.name
                ),
            )
            .hint = Some("set `min: 0`".into());
        }
        if c.nullable == Some(true) {
            ctx.err(
                "conflicting-fields",
                file,
                at(&["schema", "columns", &idx, "nullable"]),
                format!(
                    "column `{}` is a sample weight; every row needs one",
                    c.name
                ),
            )
            .hint =
                Some("remove `nullable: true` (fill missing weights with 1 in a transform)".into());
        }
    }
}

/// A role as written in YAML.
pub(crate) fn role_name(role: ColumnRole) -> &'static str {
    match role {
        ColumnRole::Feature => "feature",
        ColumnRole::Id => "id",
        ColumnRole::Ignore => "ignore",
        ColumnRole::Weight => "weight",
    }
}
