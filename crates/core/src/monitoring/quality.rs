//! Data quality of the captured requests, as SageMaker Model Monitor's data-quality job
//! reports it: missing and extra columns, type mismatches, completeness, values out of range
//! and unseen categories (the checks, their fields and defaults: `mlctl_spec::quality::CHECKS`,
//! `docs/quality.md`).
//!
//! Computed from the captured records themselves, not from [`super::live_sample`]: the checks
//! need what typing loses (which columns a request named, a value that is not a number). A
//! record of mlctl's own capture names the columns the model ignored in `unknownColumns`;
//! rows without names are matched to the features by position, and values past them are
//! extra columns (`#5` for the fifth).
//!
//! Each check gives a rate and breaches when the rate is above its threshold; a feature
//! the baseline profile does not know as numeric or categorical is not checked for type,
//! range or categories.

use super::{Window, rows_of};
use mlctl_ml::profile::{ColumnStats, Profile};
use mlctl_spec::quality::{self as checks, Check};
use mlctl_spec::{DataSchema, Quality};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Distinct extra columns tracked; more are counted in one note.
pub const MAX_EXTRA_COLUMNS: usize = 50;
/// Example values kept per result.
pub const MAX_EXAMPLES: usize = 3;

/// One quality check of one column, as stored with the monitor's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QualityResult {
    /// The check (`missing_column`, `extra_column`, `data_type`, `completeness`,
    /// `out_of_range`, `unseen_category`).
    pub check: String,
    /// The column: a feature, or the extra column's name.
    pub column: String,
    /// The offending share (of the window's rows, or of the feature's present values).
    pub rate: f64,
    /// The rate it breaches above.
    pub threshold: f64,
    /// Whether it breached.
    pub breached: bool,
    /// What the rate is a share of (rows, or the feature's values).
    pub of: u64,
    /// A few offending values, quoted (at most [`MAX_EXAMPLES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// What the check compared with (`baseline 4.3..7.9`), or why it could not be done fully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the checks read beside the records.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The `quality` section.
    pub spec: &'a Quality,
    /// The baseline's profile (types, ranges, categories, missing shares).
    pub profile: &'a Profile,
    /// The feature columns.
    pub features: &'a [String],
    /// The baseline Dataset's label, which requests should not carry.
    pub label: Option<&'a str>,
    /// The baseline Dataset's schema, whose `min`, `max` and `categories` win over the profile's.
    pub schema: Option<&'a DataSchema>,
}

#[derive(Default)]
struct Tally {
    /// Rows that do not carry the column.
    absent: u64,
    /// Rows whose value is missing (absent, null, empty, NaN).
    missing: u64,
    /// Present values of the wrong type.
    mismatched: u64,
    /// Numbers (numeric features).
    numbers: u64,
    out_of_range: u64,
    /// Present values (categorical features).
    values: u64,
    unseen: u64,
    examples: BTreeMap<&'static str, BTreeSet<String>>,
}

impl Tally {
    fn example(&mut self, check: &'static str, v: &Value) {
        let set = self.examples.entry(check).or_default();
        if set.len() < MAX_EXAMPLES {
            let text = match v {
                Value::String(s) => format!("{:?}", mlctl_spec::suggest::quote(s)),
                other => mlctl_spec::suggest::quote(&other.to_string()).into_owned(),
            };
            set.insert(text);
        }
    }
}

enum Kind<'p> {
    Numeric { lo: Option<f64>, hi: Option<f64> },
    Categorical(Option<BTreeSet<&'p str>>),
    Unknown,
}

/// The quality checks of the window's rows; empty when it has none.
pub fn check(
    i: &Inputs<'_>,
    records: &[Value],
    window: Window,
    now: time::OffsetDateTime,
) -> Vec<QualityResult> {
    let mut acc = Counts::new(*i, window, now);
    for r in records {
        acc.push(r);
    }
    acc.check()
}

/// What the quality checks read of the window's rows, one record at a time.
pub struct Counts<'p> {
    i: Inputs<'p>,
    window: Window,
    now: time::OffsetDateTime,
    kinds: Vec<Kind<'p>>,
    known: BTreeSet<&'p str>,
    tallies: Vec<Tally>,
    extra: BTreeMap<String, u64>,
    extra_untracked: u64,
    rows: u64,
}

impl<'p> Counts<'p> {
    /// Nothing counted yet.
    pub fn new(i: Inputs<'p>, window: Window, now: time::OffsetDateTime) -> Self {
        let kinds: Vec<Kind> = i.features.iter().map(|f| kind_of(&i, f)).collect();
        let known: BTreeSet<&str> = i
            .profile
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .chain(i.features.iter().map(String::as_str))
            .filter(|c| Some(*c) != i.label)
            .collect();
        Counts {
            i,
            window,
            now,
            kinds,
            known,
            tallies: i.features.iter().map(|_| Tally::default()).collect(),
            extra: BTreeMap::new(),
            extra_untracked: 0,
            rows: 0,
        }
    }

    /// Counts the rows of one captured record (none when it has no rows or is outside the
    /// window).
    pub fn push(&mut self, record: &Value) {
        if let Some(captured) = rows_of(record) {
            self.push_rows(record, &captured);
        }
    }

    /// [`Counts::push`] with the record's rows already read.
    pub fn push_rows(&mut self, record: &Value, captured: &super::CapturedRows) {
        if !super::keeps(self.window, captured.time.as_deref(), self.now) {
            return;
        }
        let i = self.i;
        let known = &self.known;
        let n = captured.rows.len() as u64;
        self.rows += n;
        // Where each feature is in this record's rows, and the extra columns it names.
        let (at, named_extra): (Vec<Option<usize>>, Vec<String>) = match &captured.columns {
            Some(cols) => (
                i.features
                    .iter()
                    .map(|f| cols.iter().position(|c| c == f))
                    .collect(),
                cols.iter()
                    .filter(|c| !known.contains(c.as_str()))
                    .cloned()
                    .collect(),
            ),
            None => ((0..i.features.len()).map(Some).collect(), Vec::new()),
        };
        let mut record_extra: BTreeSet<String> = named_extra.into_iter().collect();
        record_extra.extend(
            unknown_columns(record)
                .into_iter()
                .filter(|c| !known.contains(c.as_str())),
        );
        for row in &captured.rows {
            let mut row_extra = record_extra.clone();
            if captured.columns.is_none() {
                row_extra.extend((i.features.len()..row.len()).map(|p| format!("#{}", p + 1)));
            }
            for name in row_extra {
                if let Some(c) = self.extra.get_mut(&name) {
                    *c += 1;
                } else if self.extra.len() < MAX_EXTRA_COLUMNS {
                    self.extra.insert(name, 1);
                } else {
                    self.extra_untracked += 1;
                }
            }
            for (f, pos) in at.iter().enumerate() {
                let t = &mut self.tallies[f];
                let Some(v) = pos.and_then(|p| row.get(p)) else {
                    t.absent += 1;
                    t.missing += 1;
                    continue;
                };
                if is_missing(v) {
                    t.missing += 1;
                    continue;
                }
                match &self.kinds[f] {
                    Kind::Numeric { lo, hi } => match number(v) {
                        Some(x) => {
                            t.numbers += 1;
                            if lo.is_some_and(|lo| x < lo) || hi.is_some_and(|hi| x > hi) {
                                t.out_of_range += 1;
                                t.example(checks::OUT_OF_RANGE.name, v);
                            }
                        }
                        None => {
                            t.mismatched += 1;
                            t.example(checks::DATA_TYPE.name, v);
                        }
                    },
                    Kind::Categorical(known) => {
                        t.values += 1;
                        if let Some(known) = known
                            && !known.contains(category(v).as_str())
                        {
                            t.unseen += 1;
                            t.example(checks::UNSEEN_CATEGORY.name, v);
                        }
                    }
                    Kind::Unknown => {}
                }
            }
        }
    }

    /// The checks' results over what was counted; empty when no row was.
    pub fn check(self) -> Vec<QualityResult> {
        let Counts {
            i,
            kinds,
            mut tallies,
            extra,
            extra_untracked,
            rows,
            ..
        } = self;
        let mut out = Vec::new();
        if rows == 0 {
            return out;
        }
        let judge = |check: &Check, column: &str, bad: u64, of: u64, threshold: f64| {
            let rate = if of == 0 { 0.0 } else { bad as f64 / of as f64 };
            QualityResult {
                check: check.name.to_string(),
                column: column.to_string(),
                rate,
                threshold,
                breached: rate > threshold,
                of,
                examples: Vec::new(),
                note: None,
            }
        };
        let on = |c: &Check| c.threshold(i.spec);
        for (f, name) in i.features.iter().enumerate() {
            let t = &mut tallies[f];
            let mut take = |check: &Check, mut r: QualityResult| {
                r.examples = t
                    .examples
                    .remove(check.name)
                    .map(|s| s.into_iter().collect())
                    .unwrap_or_default();
                r
            };
            let wholly_absent = t.absent == rows;
            if let Some(th) = on(&checks::MISSING_COLUMN) {
                out.push(judge(&checks::MISSING_COLUMN, name, t.absent, rows, th));
            }
            if let Some(drop) = on(&checks::COMPLETENESS)
                && !(wholly_absent && on(&checks::MISSING_COLUMN).is_some())
            {
                let base = baseline_missing_share(i.profile, name);
                let mut r = judge(
                    &checks::COMPLETENESS,
                    name,
                    t.missing,
                    rows,
                    (base + drop).min(1.0),
                );
                r.note = Some(format!("baseline missing share {}", round(base)));
                out.push(r);
            }
            match &kinds[f] {
                Kind::Numeric { lo, hi } => {
                    if let Some(th) = on(&checks::DATA_TYPE) {
                        let r = judge(
                            &checks::DATA_TYPE,
                            name,
                            t.mismatched,
                            t.numbers + t.mismatched,
                            th,
                        );
                        out.push(take(&checks::DATA_TYPE, r));
                    }
                    if let Some(th) = on(&checks::OUT_OF_RANGE)
                        && (lo.is_some() || hi.is_some())
                    {
                        let mut r =
                            judge(&checks::OUT_OF_RANGE, name, t.out_of_range, t.numbers, th);
                        r.note = Some(format!(
                            "allowed {}..{}",
                            lo.map_or("".into(), |x| x.to_string()),
                            hi.map_or("".into(), |x| x.to_string())
                        ));
                        out.push(take(&checks::OUT_OF_RANGE, r));
                    }
                }
                Kind::Categorical(known) => {
                    if let Some(th) = on(&checks::UNSEEN_CATEGORY) {
                        let mut r = judge(&checks::UNSEEN_CATEGORY, name, t.unseen, t.values, th);
                        if known.is_none() {
                            r.note = Some(
                                "not checked: the baseline profile lists only its most frequent categories; give the schema's `categories`".into(),
                            );
                        }
                        out.push(take(&checks::UNSEEN_CATEGORY, r));
                    }
                }
                Kind::Unknown => {}
            }
        }
        if let Some(th) = on(&checks::EXTRA_COLUMN) {
            for (name, n) in &extra {
                out.push(judge(
                    &checks::EXTRA_COLUMN,
                    &mlctl_spec::suggest::quote(name),
                    *n,
                    rows,
                    th,
                ));
            }
            if extra_untracked > 0
                && let Some(last) = out.last_mut()
            {
                last.note = Some(format!(
                    "more extra columns than the {MAX_EXTRA_COLUMNS} listed ({extra_untracked} more sightings)"
                ));
            }
        }
        out
    }
}

/// Whether a value counts as missing: `null`, an empty string, or a NaN written as text.
fn is_missing(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => {
            let s = s.trim();
            s.is_empty() || s.eq_ignore_ascii_case("nan")
        }
        _ => false,
    }
}

/// A value as a number: a JSON number, or text that parses as a finite one.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

/// A value as a category: text as it is, anything else as JSON (`12`, `true`).
fn category(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn kind_of<'p>(i: &Inputs<'p>, feature: &str) -> Kind<'p> {
    let column = i
        .schema
        .and_then(|s| s.columns.iter().find(|c| c.name == feature));
    match i.profile.column(feature).map(|c| &c.stats) {
        Some(ColumnStats::Numeric { min, max, .. }) => {
            let (smin, smax) = (column.and_then(|c| c.min), column.and_then(|c| c.max));
            if smin.is_some() || smax.is_some() {
                Kind::Numeric { lo: smin, hi: smax }
            } else {
                Kind::Numeric {
                    lo: min.is_finite().then_some(*min),
                    hi: max.is_finite().then_some(*max),
                }
            }
        }
        Some(ColumnStats::Categorical {
            frequencies, other, ..
        }) => {
            let known = match column.and_then(|c| c.categories.as_ref()) {
                Some(cats) => Some(cats.iter().map(String::as_str).collect()),
                None if *other == 0 => Some(frequencies.keys().map(String::as_str).collect()),
                None => None,
            };
            Kind::Categorical(known)
        }
        None => Kind::Unknown,
    }
}

fn baseline_missing_share(profile: &Profile, feature: &str) -> f64 {
    profile
        .column(feature)
        .map(|c| {
            let all = c.count + c.missing;
            if all == 0 {
                0.0
            } else {
                c.missing as f64 / all as f64
            }
        })
        .unwrap_or(0.0)
}

fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The columns a request named that the model does not take, as mlctl's capture lists them.
fn unknown_columns(record: &Value) -> Vec<String> {
    record
        .get("unknownColumns")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlctl_ml::table::{ColumnData, Table};
    use serde_json::json;

    /// A baseline of 100 rows: `x` numeric in 0..=99 with no missing values, `colour`
    /// red/blue, and the label `y`.
    fn baseline() -> Profile {
        let t = Table::from_columns(vec![
            ("x", ColumnData::Float((0..100).map(f64::from).collect())),
            (
                "colour",
                ColumnData::Str(
                    (0..100)
                        .map(|i| Some(if i % 2 == 0 { "red" } else { "blue" }.to_string()))
                        .collect(),
                ),
            ),
            ("y", ColumnData::Float(vec![0.0; 100])),
        ])
        .unwrap();
        mlctl_ml::profile::profile(&t)
    }

    fn features() -> Vec<String> {
        vec!["x".into(), "colour".into()]
    }

    /// The results of the checks on `records` (mlctl's capture format), with `quality`.
    fn check_with(quality: &Quality, records: &[Value]) -> Vec<QualityResult> {
        let profile = baseline();
        let features = features();
        check(
            &Inputs {
                spec: quality,
                profile: &profile,
                features: &features,
                label: Some("y"),
                schema: None,
            },
            records,
            Window::Last(1000),
            time::OffsetDateTime::now_utc(),
        )
    }

    fn rows(columns: &[&str], rows: Vec<Value>) -> Value {
        json!({"time": "2026-01-01T00:00:00Z", "status": 200, "latencyMs": 1.0, "columns": columns, "rows": rows})
    }

    fn find<'r>(rs: &'r [QualityResult], check: &str, column: &str) -> &'r QualityResult {
        rs.iter()
            .find(|r| r.check == check && r.column == column)
            .unwrap_or_else(|| panic!("no {check} result for {column}: {rs:#?}"))
    }

    fn breached(rs: &[QualityResult]) -> Vec<(String, String)> {
        rs.iter()
            .filter(|r| r.breached)
            .map(|r| (r.check.clone(), r.column.clone()))
            .collect()
    }

    #[test]
    fn rows_like_the_baseline_pass_every_check() {
        let good = rows(
            &["x", "colour"],
            (0..50)
                .map(|i| json!([i, if i % 2 == 0 { "red" } else { "blue" }]))
                .collect(),
        );
        let rs = check_with(&Quality::default(), &[good]);
        assert_eq!(breached(&rs), [], "{rs:#?}");
        // Per feature: missing column and completeness; x: type and range; colour: categories.
        assert_eq!(rs.len(), 7, "{rs:#?}");
    }

    #[test]
    fn a_feature_no_request_carries_is_a_missing_column_and_not_also_incomplete() {
        let rs = check_with(
            &Quality::default(),
            &[rows(&["x"], vec![json!([1]), json!([2])])],
        );
        assert_eq!(breached(&rs), [("missing_column".into(), "colour".into())]);
        assert_eq!(find(&rs, "missing_column", "colour").rate, 1.0);
        assert!(
            !rs.iter()
                .any(|r| r.check == "completeness" && r.column == "colour")
        );
    }

    #[test]
    fn a_column_that_is_not_in_the_baseline_or_is_its_label_is_extra() {
        let rec = rows(
            &["x", "colour", "y", "shoe_size"],
            vec![json!([1, "red", 0, 44])],
        );
        let mut own = rows(&["x", "colour"], vec![json!([2, "red"])]);
        // mlctl's capture lists the columns a model ignored.
        own["unknownColumns"] = json!(["session"]);
        let rs = check_with(&Quality::default(), &[rec, own]);
        assert_eq!(
            breached(&rs),
            [
                ("extra_column".into(), "session".into()),
                ("extra_column".into(), "shoe_size".into()),
                ("extra_column".into(), "y".into()),
            ]
        );
        assert_eq!(find(&rs, "extra_column", "y").rate, 0.5);
        // Turned off, none is reported.
        let off = Quality {
            extra_columns: Some(false),
            ..Quality::default()
        };
        let rec = rows(&["x", "colour", "z"], vec![json!([1, "red", 0])]);
        assert_eq!(breached(&check_with(&off, &[rec])), []);
    }

    #[test]
    fn rows_without_names_are_matched_by_position_and_values_past_the_features_are_extra() {
        let rec = json!({"rows": [[1, "red", 9], [2, "blue"]]});
        let rs = check_with(&Quality::default(), &[rec]);
        assert_eq!(breached(&rs), [("extra_column".into(), "#3".into())]);
        assert_eq!(find(&rs, "extra_column", "#3").rate, 0.5);
    }

    #[test]
    fn non_numbers_in_a_numeric_feature_are_type_mismatches_and_numeric_text_is_not() {
        let rec = rows(
            &["x", "colour"],
            vec![
                json!(["abc", "red"]),
                json!([true, "red"]),
                json!([[1, 2], "red"]),
                json!(["5", "red"]),
                json!([5, "red"]),
            ],
        );
        let rs = check_with(&Quality::default(), &[rec]);
        let r = find(&rs, "data_type", "x");
        assert!(r.breached);
        assert_eq!((r.rate, r.of), (0.6, 5));
        assert_eq!(r.examples, ["\"abc\"", "[1,2]", "true"]);
        let tolerant = Quality {
            max_type_mismatch_rate: Some(0.6),
            ..Quality::default()
        };
        let rec = rows(
            &["x", "colour"],
            vec![json!(["abc", "red"]), json!([1, "red"])],
        );
        assert!(!find(&check_with(&tolerant, &[rec]), "data_type", "x").breached);
    }

    #[test]
    fn completeness_is_judged_against_the_baselines_missing_share() {
        // 10 rows, 1 null and 1 empty: 20% missing, the baseline 0%, allowed 5%.
        let mut r: Vec<Value> = (0..8).map(|i| json!([i, "red"])).collect();
        r.push(json!([null, "red"]));
        r.push(json!(["", "red"]));
        let rs = check_with(&Quality::default(), &[rows(&["x", "colour"], r.clone())]);
        let c = find(&rs, "completeness", "x");
        assert!(c.breached);
        assert_eq!((c.rate, c.threshold), (0.2, 0.05));
        let loose = Quality {
            max_completeness_drop: Some(0.25),
            ..Quality::default()
        };
        assert!(
            !find(
                &check_with(&loose, &[rows(&["x", "colour"], r)]),
                "completeness",
                "x"
            )
            .breached
        );
    }

    #[test]
    fn numbers_outside_the_baselines_range_or_the_schemas_are_out_of_range() {
        let rec = rows(
            &["x", "colour"],
            vec![
                json!([-1, "red"]),
                json!([50, "red"]),
                json!([1e9, "red"]),
                json!([99, "red"]),
            ],
        );
        let rs = check_with(&Quality::default(), std::slice::from_ref(&rec));
        let r = find(&rs, "out_of_range", "x");
        assert!(r.breached);
        assert_eq!(r.rate, 0.5);
        assert_eq!(r.note.as_deref(), Some("allowed 0..99"));
        // The schema's bounds win: 0..=60 makes 99 out of range too; a lower bound alone
        // leaves the upper side open.
        let profile = baseline();
        let features = features();
        let schema: mlctl_spec::DataSchema = serde_json::from_value(json!({
            "columns": [{"name": "x", "type": "float", "min": -5}]
        }))
        .unwrap();
        let rs = check(
            &Inputs {
                spec: &Quality::default(),
                profile: &profile,
                features: &features,
                label: None,
                schema: Some(&schema),
            },
            &[rec],
            Window::Last(10),
            time::OffsetDateTime::now_utc(),
        );
        let r = find(&rs, "out_of_range", "x");
        assert_eq!(r.rate, 0.0, "{r:?}");
        assert_eq!(r.note.as_deref(), Some("allowed -5.."));
    }

    #[test]
    fn categories_the_baseline_never_had_are_unseen() {
        let rec = rows(
            &["x", "colour"],
            vec![
                json!([1, "red"]),
                json!([1, "green"]),
                json!([1, 7]),
                json!([1, null]),
            ],
        );
        let rs = check_with(&Quality::default(), &[rec]);
        let r = find(&rs, "unseen_category", "colour");
        assert!(r.breached);
        // Of the 3 present values, `green` and 7.
        assert_eq!((r.of, r.examples.len()), (3, 2));
    }

    #[test]
    fn hostile_records_are_counted_not_trusted() {
        let long = "c".repeat(100_000);
        let mut recs = vec![
            json!("not an object"),
            json!({"rows": "not a list"}),
            json!({"columns": [1, null], "rows": [[1, 2]]}),
            rows(&["x", "colour", &long], vec![json!([1, "red", 1])]),
        ];
        // More distinct extra columns than are tracked.
        for i in 0..(MAX_EXTRA_COLUMNS + 10) {
            recs.push(rows(
                &["x", "colour", &format!("e{i}")],
                vec![json!([1, "red", 1])],
            ));
        }
        let rs = check_with(&Quality::default(), &recs);
        let extras = rs.iter().filter(|r| r.check == "extra_column").count();
        assert_eq!(extras, MAX_EXTRA_COLUMNS);
        assert!(rs.iter().all(|r| r.column.len() < 300), "names are clipped");
        assert!(rs.iter().any(|r| {
            r.note
                .as_deref()
                .is_some_and(|n| n.contains("more extra columns"))
        }));
        // No rows at all: nothing to judge.
        assert_eq!(
            check_with(&Quality::default(), &[json!({"status": 500})]),
            []
        );
    }
}
