//! Checks a [`Table`] against a declared [`DataSchema`], collecting every failure.
//!
//! Rules: declared columns present, no undeclared columns (unless `allowExtraColumns`),
//! value types, `min`/`max`, `categories`, nullability and `maxMissingFraction`, `minRows`.
//! Each [`Failure`] names the column and rule and carries up to five [`Example`]s, each with
//! its 0-based row index (as pandas counts) and, for a CSV file, the file line it is on
//! (header counted, so data row 6 is usually line 7). Messages say both, and which they
//! count: "line 7 of data/iris.csv (data row 6)", or "data row 6" where a file has no lines
//! (Parquet).

use crate::table::{ColumnData, ColumnKind, Table};
use mlctl_spec::suggest::{list, quote, thousands};
use mlctl_spec::{Column, ColumnType, DataSchema};
use serde::Serialize;
use std::collections::HashSet;
use std::fmt;

/// Most example rows kept per failure.
pub const MAX_EXAMPLES: usize = 5;

/// Most failures a report writes out; the rest are counted (a file of 10,000 undeclared
/// columns says so in a few lines, not 10,000).
pub const MAX_SHOWN_FAILURES: usize = 20;

/// The rule a failure broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A declared column is absent.
    MissingColumn,
    /// A column is present but not declared.
    ExtraColumn,
    /// Values do not have the declared type.
    Type,
    /// Values below `min`.
    Min,
    /// Values above `max`.
    Max,
    /// Values outside `categories`.
    Categories,
    /// Missing values in a non-nullable column.
    Nullable,
    /// More missing values than `maxMissingFraction`.
    MaxMissingFraction,
    /// Fewer rows than `minRows`.
    MinRows,
}

impl Rule {
    /// The rule's name as in the schema (`min`, `categories`, `minRows`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::MissingColumn => "missing column",
            Rule::ExtraColumn => "allowExtraColumns",
            Rule::Type => "type",
            Rule::Min => "min",
            Rule::Max => "max",
            Rule::Categories => "categories",
            Rule::Nullable => "nullable",
            Rule::MaxMissingFraction => "maxMissingFraction",
            Rule::MinRows => "minRows",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The column, or `None` for table-wide rules (`minRows`).
    pub column: Option<String>,
    /// The rule.
    pub rule: Rule,
    /// What is wrong, in words.
    pub message: String,
    /// Up to [`MAX_EXAMPLES`] offending rows.
    pub examples: Vec<Example>,
    /// How many rows break the rule (0 for rules about columns).
    pub count: usize,
}

/// One offending row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// 0-based index among the data rows (the header is not a row).
    pub row: usize,
    /// 1-based line of the file the row starts on, header counted; `None` when the table
    /// was not read from lines of text (Parquet, a derived table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The value as written (empty for a missing cell).
    pub value: String,
}

impl fmt::Display for Example {
    /// `line 7 (data row 6): "x"`, or `data row 6: (missing)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(None))
    }
}

impl Example {
    /// `line 7 of data/iris.csv (data row 6): "x"` with `file`, else without the file.
    pub fn describe(&self, file: Option<&str>) -> String {
        let data_row = self.row + 1;
        let at = match (self.line, file) {
            (Some(line), Some(file)) => format!("line {line} of {file} (data row {data_row})"),
            (Some(line), None) => format!("line {line} (data row {data_row})"),
            (None, _) => format!("data row {data_row}"),
        };
        if self.value.is_empty() {
            format!("{at}: (missing)")
        } else {
            format!("{at}: {:?}", self.value)
        }
    }
}

/// The result of [`validate`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationReport {
    /// Whether every rule holds.
    pub ok: bool,
    /// The file the table was read from, as the user wrote it (named in each example's
    /// line); see [`ValidationReport::in_file`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Rows checked.
    pub rows: usize,
    /// Every broken rule, in column order.
    pub failures: Vec<Failure>,
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ok {
            return write!(f, "data is valid ({} rows)", self.rows);
        }
        writeln!(
            f,
            "data does not match the schema: {} problem{} in {} rows",
            thousands(self.failures.len()),
            if self.failures.len() == 1 { "" } else { "s" },
            thousands(self.rows)
        )?;
        // Undeclared columns are one line however many (a file of 10,000 columns says so in
        // a line, not 10,000); other failures are shown up to MAX_SHOWN_FAILURES and counted.
        let is_extra = |x: &&Failure| x.rule == Rule::ExtraColumn;
        let grouped = self.failures.iter().filter(is_extra).count() > 1;
        let (extra, other): (Vec<&Failure>, Vec<&Failure>) =
            self.failures.iter().partition(|x| grouped && is_extra(x));
        for fail in other.iter().take(MAX_SHOWN_FAILURES) {
            match &fail.column {
                Some(c) => write!(
                    f,
                    "  column `{}` [{}]: {}",
                    quote(c),
                    fail.rule,
                    fail.message
                )?,
                None => write!(f, "  [{}]: {}", fail.rule, fail.message)?,
            }
            writeln!(f)?;
            if !fail.examples.is_empty() {
                let ex: Vec<String> = fail
                    .examples
                    .iter()
                    .map(|e| e.describe(self.file.as_deref()))
                    .collect();
                let more = fail.count.saturating_sub(fail.examples.len());
                write!(f, "      e.g. {}", ex.join(", "))?;
                if more > 0 {
                    write!(f, " and {more} more")?;
                }
                writeln!(f)?;
            }
        }
        if other.len() > MAX_SHOWN_FAILURES {
            writeln!(
                f,
                "  … and {} more problems",
                thousands(other.len() - MAX_SHOWN_FAILURES)
            )?;
        }
        if !extra.is_empty() {
            let names = extra.iter().filter_map(|x| x.column.as_deref());
            writeln!(
                f,
                "  {} column{} [{}]: not declared in the schema (set allowExtraColumns: true to allow them): {}",
                thousands(extra.len()),
                plural(extra.len()),
                Rule::ExtraColumn,
                list(names)
            )?;
        }
        Ok(())
    }
}

impl ValidationReport {
    /// Names the file the table came from, so examples say "line 7 of data/iris.csv".
    #[must_use]
    pub fn in_file(mut self, file: impl Into<String>) -> ValidationReport {
        self.file = Some(file.into());
        self
    }
}

/// Collects offending rows for one rule.
struct Offenders {
    examples: Vec<(usize, String)>,
    count: usize,
}

impl Offenders {
    fn new() -> Self {
        Offenders {
            examples: Vec::new(),
            count: 0,
        }
    }

    fn add(&mut self, row: usize, value: impl FnOnce() -> String) {
        if self.examples.len() < MAX_EXAMPLES {
            let value = value();
            self.examples.push((row, quote(&value).into_owned()));
        }
        self.count += 1;
    }
}

/// Checks `table` against `schema`; see the module docs for the rules.
pub fn validate(table: &Table, schema: &DataSchema) -> ValidationReport {
    let mut failures = Vec::new();
    let rows = table.n_rows();
    if let Some(min_rows) = schema.min_rows
        && (rows as u64) < min_rows
    {
        failures.push(Failure {
            column: None,
            rule: Rule::MinRows,
            message: format!("the table has {rows} rows, at least {min_rows} are required"),
            examples: Vec::new(),
            count: 0,
        });
    }
    for col in &schema.columns {
        match table.column(&col.name) {
            None => failures.push(Failure {
                column: Some(col.name.clone()),
                rule: Rule::MissingColumn,
                message: format!(
                    "declared column is not in the data (columns: {})",
                    list(table.names())
                ),
                examples: Vec::new(),
                count: 0,
            }),
            Some(data) => check_column(col, data, schema, &mut failures),
        }
    }
    if !schema.allow_extra_columns.unwrap_or(false) {
        let declared: HashSet<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        for name in table.names() {
            if !declared.contains(name.as_str()) {
                failures.push(Failure {
                    column: Some(name.clone()),
                    rule: Rule::ExtraColumn,
                    message: "column is not declared in the schema (set allowExtraColumns: true to allow it)".into(),
                    examples: Vec::new(),
                    count: 0,
                });
            }
        }
    }
    for f in &mut failures {
        for e in &mut f.examples {
            e.line = table.file_line(e.row);
        }
    }
    ValidationReport {
        ok: failures.is_empty(),
        file: None,
        rows,
        failures,
    }
}

fn check_column(col: &Column, data: &ColumnData, schema: &DataSchema, out: &mut Vec<Failure>) {
    let n = data.len();
    let name = &col.name;
    let fail = |rule, message: String, o: Offenders| Failure {
        column: Some(name.clone()),
        rule,
        message,
        examples: o
            .examples
            .into_iter()
            .map(|(row, value)| Example {
                row,
                line: None,
                value,
            })
            .collect(),
        count: o.count,
    };
    let value = |i: usize| data.string_at(i).unwrap_or_default();

    // Missing values.
    let mut missing = Offenders::new();
    for i in 0..n {
        if data.is_missing(i) {
            missing.add(i, String::new);
        }
    }
    let nullable = col.nullable.unwrap_or(false);
    let fraction = if n == 0 {
        0.0
    } else {
        missing.count as f64 / n as f64
    };
    match (nullable, schema.max_missing_fraction) {
        (_, Some(max)) if fraction > max => out.push(fail(
            Rule::MaxMissingFraction,
            format!(
                "{} of {n} values are missing ({:.1}%), at most {:.1}% allowed",
                missing.count,
                fraction * 100.0,
                max * 100.0
            ),
            missing,
        )),
        (false, None) if missing.count > 0 => out.push(fail(
            Rule::Nullable,
            format!(
                "{} missing value{} in a column that is not nullable",
                missing.count,
                if missing.count == 1 { "" } else { "s" }
            ),
            missing,
        )),
        _ => {}
    }

    // Types.
    let mut bad_type = Offenders::new();
    let kind = data.kind();
    match col.ty {
        ColumnType::Float => {
            if kind == ColumnKind::Str {
                for i in 0..n {
                    if !data.is_missing(i) && data.f64_at(i).is_nan() {
                        bad_type.add(i, || value(i));
                    }
                }
            }
        }
        ColumnType::Int => match kind {
            ColumnKind::Int | ColumnKind::Bool => {}
            ColumnKind::Float | ColumnKind::Str => {
                for i in 0..n {
                    if data.is_missing(i) {
                        continue;
                    }
                    let x = data.f64_at(i);
                    if x.is_nan() || x.fract() != 0.0 {
                        bad_type.add(i, || value(i));
                    }
                }
            }
        },
        ColumnType::Bool => {
            if kind != ColumnKind::Bool {
                for i in 0..n {
                    if data.is_missing(i) {
                        continue;
                    }
                    let v = value(i);
                    if !matches!(
                        v.to_ascii_lowercase().as_str(),
                        "true" | "false" | "0" | "1"
                    ) {
                        bad_type.add(i, || v);
                    }
                }
            }
        }
        ColumnType::Category | ColumnType::String => {}
    }
    if bad_type.count > 0 {
        out.push(fail(
            Rule::Type,
            format!(
                "{} value{} not of type {}",
                bad_type.count,
                if bad_type.count == 1 { " is" } else { "s are" },
                type_name(col.ty)
            ),
            bad_type,
        ));
    }

    // Ranges.
    if col.min.is_some() || col.max.is_some() {
        let mut below = Offenders::new();
        let mut above = Offenders::new();
        for i in 0..n {
            let x = data.f64_at(i);
            if x.is_nan() {
                continue;
            }
            if let Some(min) = col.min
                && x < min
            {
                below.add(i, || value(i));
            }
            if let Some(max) = col.max
                && x > max
            {
                above.add(i, || value(i));
            }
        }
        if let (Some(min), true) = (col.min, below.count > 0) {
            out.push(fail(
                Rule::Min,
                format!(
                    "{} value{} below the minimum {min}",
                    below.count,
                    plural(below.count)
                ),
                below,
            ));
        }
        if let (Some(max), true) = (col.max, above.count > 0) {
            out.push(fail(
                Rule::Max,
                format!(
                    "{} value{} above the maximum {max}",
                    above.count,
                    plural(above.count)
                ),
                above,
            ));
        }
    }

    // Categories.
    if let Some(categories) = &col.categories {
        let allowed: HashSet<&str> = categories.iter().map(String::as_str).collect();
        let mut outside = Offenders::new();
        for i in 0..n {
            if let Some(v) = data.string_at(i)
                && !allowed.contains(v.as_str())
            {
                outside.add(i, || v);
            }
        }
        if outside.count > 0 {
            out.push(fail(
                Rule::Categories,
                format!(
                    "{} value{} not among the allowed categories ({})",
                    outside.count,
                    plural(outside.count),
                    list(categories)
                ),
                outside,
            ));
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Float => "float",
        ColumnType::Int => "int",
        ColumnType::Bool => "bool",
        ColumnType::Category => "category",
        ColumnType::String => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: ColumnType) -> Column {
        Column {
            name: name.into(),
            ty,
            min: None,
            max: None,
            categories: None,
            nullable: None,
            role: None,
        }
    }

    fn schema(columns: Vec<Column>) -> DataSchema {
        DataSchema {
            columns,
            min_rows: None,
            max_missing_fraction: None,
            allow_extra_columns: None,
        }
    }

    fn table() -> Table {
        Table::from_columns([
            (
                "sepal_length",
                ColumnData::Float(vec![5.1, -1.0, 4.9, f64::NAN, 60.0]),
            ),
            (
                "species",
                ColumnData::Str(vec![
                    Some("setosa".into()),
                    Some("setosa".into()),
                    Some("daisy".into()),
                    Some("virginica".into()),
                    None,
                ]),
            ),
            (
                "count",
                ColumnData::Str(vec![
                    Some("1".into()),
                    Some("x".into()),
                    Some("2.5".into()),
                    Some("3".into()),
                    Some("4".into()),
                ]),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn valid_table_passes() {
        let t = table().take(&[0]);
        let mut s = schema(vec![
            col("sepal_length", ColumnType::Float),
            col("species", ColumnType::Category),
            col("count", ColumnType::Int),
        ]);
        s.min_rows = Some(1);
        let r = validate(&t, &s);
        assert!(r.ok, "{r}");
        assert_eq!(r.to_string(), "data is valid (1 rows)");
    }

    #[test]
    fn every_failure_is_reported_with_examples() {
        let mut sl = col("sepal_length", ColumnType::Float);
        sl.min = Some(0.0);
        sl.max = Some(10.0);
        let mut sp = col("species", ColumnType::Category);
        sp.categories = Some(vec!["setosa".into(), "virginica".into()]);
        let mut s = schema(vec![
            sl,
            sp,
            col("count", ColumnType::Int),
            col("petal_width", ColumnType::Float),
        ]);
        s.min_rows = Some(10);
        let r = validate(&table(), &s);
        assert!(!r.ok);
        let got: Vec<(Option<&str>, Rule, usize)> = r
            .failures
            .iter()
            .map(|f| (f.column.as_deref(), f.rule, f.count))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, Rule::MinRows, 0),
                (Some("sepal_length"), Rule::Nullable, 1),
                (Some("sepal_length"), Rule::Min, 1),
                (Some("sepal_length"), Rule::Max, 1),
                (Some("species"), Rule::Nullable, 1),
                (Some("species"), Rule::Categories, 1),
                (Some("count"), Rule::Type, 2),
                (Some("petal_width"), Rule::MissingColumn, 0),
            ]
        );
        let cats = &r.failures[5];
        assert_eq!(
            cats.examples,
            vec![Example {
                row: 2,
                line: None,
                value: "daisy".to_string()
            }]
        );
        let text = r.to_string();
        assert!(text.contains("column `species` [categories]"), "{text}");
        // Built in memory: no file lines, so the data row (1-based) and only that.
        assert!(text.contains("data row 3: \"daisy\""), "{text}");
        assert!(
            text.contains("data row 2: \"x\", data row 3: \"2.5\""),
            "{text}"
        );
        assert!(text.contains("[minRows]: the table has 5 rows"), "{text}");
    }

    #[test]
    fn extra_columns_and_missing_fraction() {
        let t = table();
        let mut c = col("sepal_length", ColumnType::Float);
        c.nullable = Some(true);
        let mut s = schema(vec![c]);
        s.max_missing_fraction = Some(0.1);
        let r = validate(&t, &s);
        let rules: Vec<Rule> = r.failures.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            vec![
                Rule::MaxMissingFraction,
                Rule::ExtraColumn,
                Rule::ExtraColumn
            ]
        );
        s.allow_extra_columns = Some(true);
        s.max_missing_fraction = Some(0.5);
        assert!(validate(&t, &s).ok);
    }

    /// Issue 11: 10,000 undeclared columns of 10 KB names each made a report of megabytes.
    #[test]
    fn a_report_stays_short_however_many_columns_and_however_long_the_values() {
        let long = "v".repeat(10_000);
        let names: Vec<String> = (0..10_000)
            .map(|i| format!("{}{i}", &long[..300]))
            .collect();
        let t = Table::from_columns(
            names
                .iter()
                .map(|n| (n.as_str(), ColumnData::Str(vec![Some(long.clone())]))),
        )
        .unwrap();
        let mut c = col(&names[0], ColumnType::Float);
        c.min = Some(0.0);
        let s = schema(vec![c, col("absent", ColumnType::Float)]);
        let text = validate(&t, &s).to_string();
        assert!(text.len() < 16 * 1024, "{} bytes", text.len());
        assert!(text.contains("value truncated: 10,000 bytes"), "{text}");
        assert!(
            text.contains("9,999 columns [allowExtraColumns]: not declared in the schema"),
            "{text}"
        );
        assert!(text.ends_with(" and 9,989 more\n"), "{text}");
    }

    #[test]
    fn examples_are_capped_at_five() {
        let t = Table::from_columns([("x", ColumnData::Float(vec![-1.0; 12]))]).unwrap();
        let mut c = col("x", ColumnType::Float);
        c.min = Some(0.0);
        let r = validate(&t, &schema(vec![c]));
        assert_eq!(r.failures[0].examples.len(), 5);
        assert_eq!(r.failures[0].count, 12);
        assert!(r.to_string().contains("and 7 more"));
    }

    /// Data errors say which they count: the file line, header counted, and the data row.
    #[test]
    fn examples_from_a_csv_name_the_file_line_with_the_header_counted() {
        let csv = "x,y\n1,a\n2,b\n3,c\n4,d\n5,e\n-6,f\n";
        let t = crate::table::read_bytes(csv.as_bytes(), mlctl_spec::DataFormat::Csv).unwrap();
        let mut c = col("x", ColumnType::Float);
        c.min = Some(0.0);
        let mut s = schema(vec![c, col("y", ColumnType::Category)]);
        s.allow_extra_columns = Some(true);
        let r = validate(&t, &s).in_file("data/iris.csv");
        let text = r.to_string();
        assert!(
            text.contains("line 7 of data/iris.csv (data row 6): \"-6.0\"")
                || text.contains("line 7 of data/iris.csv (data row 6): \"-6\""),
            "{text}"
        );
    }

    /// A blank line or a quoted line break moves the rows after it down the file; the last
    /// row is on its line with or without a final line break.
    #[test]
    fn file_lines_follow_blank_lines_and_quoted_line_breaks() {
        for csv in [
            "x,note\n1,\"two\nlines\"\n\n-3,c\n",
            "x,note\n1,\"two\nlines\"\n\n-3,c",
            "x,note\r\n1,\"two\r\nlines\"\r\n\r\n-3,c\r\n",
        ] {
            let t = crate::table::read_bytes(csv.as_bytes(), mlctl_spec::DataFormat::Csv).unwrap();
            assert_eq!(
                (t.file_line(0), t.file_line(1)),
                (Some(2), Some(5)),
                "{csv:?}"
            );
        }
        let plain = crate::table::read_bytes(b"x\n1\n2", mlctl_spec::DataFormat::Csv).unwrap();
        assert_eq!((plain.file_line(0), plain.file_line(1)), (Some(2), Some(3)));
        let csv = "x,note\n1,\"two\nlines\"\n\n-3,c\n";
        let t = crate::table::read_bytes(csv.as_bytes(), mlctl_spec::DataFormat::Csv).unwrap();
        let mut c = col("x", ColumnType::Float);
        c.min = Some(0.0);
        let mut s = schema(vec![c]);
        s.allow_extra_columns = Some(true);
        let text = validate(&t, &s).to_string();
        assert!(text.contains("line 5 (data row 2)"), "{text}");
    }
}
