//! Request bodies -> rows in the raw layout, checked against the model's input schema.
//!
//! JSON shapes (MLflow and SageMaker clients):
//! - `{"instances": [[...], ...]}` or `{"instances": [{"col": v, ...}, ...]}` (a bare top-level
//!   array means the same),
//! - `{"inputs": ...}`: rows as above, or columns `{"col": [v, ...], ...}`,
//! - `{"dataframe_split": {"columns": [...], "data": [[...]]}}` (also at the top level, the old
//!   `format=pandas-split`),
//! - `{"dataframe_records": [{"col": v}, ...]}`.
//!
//! CSV: one row per line, with or without a header line (detected, or set with the
//! `header=present|absent` media-type parameter).
//!
//! Values stream straight from the body into one `Vec<f64>`: nothing is built per value.
//! Every problem becomes an [`InputError`] that names the row and column.

use crate::schema::{Column, ColumnKind, InputSchema};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Why a request cannot be served. `status` is the HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    /// 400, 413 or 415.
    pub status: u16,
    /// What is wrong, for the client.
    pub message: String,
}

impl InputError {
    /// A 400.
    pub fn bad(message: impl Into<String>) -> InputError {
        InputError {
            status: 400,
            message: message.into(),
        }
    }
}

/// A body format the server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `text/csv`; `Some(true)` when the media type says `header=present`.
    Csv {
        /// Whether the first line is a header (`None`: detect).
        header: Option<bool>,
    },
}

/// The body format of a `Content-Type` header value; 415 for anything else.
pub fn format_of(content_type: Option<&[u8]>) -> Result<Format, InputError> {
    let unsupported = |what: &str| InputError {
        status: 415,
        message: format!(
            "unsupported content type {what}: send `Content-Type: application/json` or `Content-Type: text/csv` (curl: -H 'Content-Type: application/json')"
        ),
    };
    let Some(raw) = content_type else {
        return Err(unsupported("(none)"));
    };
    let Ok(ct) = std::str::from_utf8(raw) else {
        return Err(unsupported("(not text)"));
    };
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(Format::Json);
    }
    if essence.eq_ignore_ascii_case("text/csv") || essence.eq_ignore_ascii_case("application/csv") {
        let mut header = None;
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.trim().eq_ignore_ascii_case("header") {
                header = Some(v.trim().trim_matches('"').eq_ignore_ascii_case("present"));
            }
        }
        return Ok(Format::Csv { header });
    }
    Err(unsupported(&format!("`{essence}`")))
}

/// Parses a body into `out` (cleared first); returns the number of rows (at least one).
/// Every value that breaks the signature is an error (the endpoint's `enforce: strict`).
pub fn parse(
    body: &[u8],
    format: Format,
    schema: &InputSchema,
    out: &mut Vec<f64>,
) -> Result<usize, InputError> {
    parse_request(body, format, schema, false, out).map(|p| p.rows)
}

/// A parsed request, beyond its rows in `out`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Rows (at least one).
    pub rows: usize,
    /// Values that broke the signature and were taken as missing (lenient parsing only).
    pub warnings: usize,
    /// The first of them in words (row, column, value), for the response header.
    pub first_warning: Option<String>,
    /// `"params": {"predict_method": "predict_proba"}` (MLflow's inference parameter):
    /// the client asks for class probabilities.
    pub predict_proba: bool,
    /// The columns the body named that the model does not take (each once, in the order
    /// given, at most [`MAX_UNKNOWN_COLUMNS`]): what the parser ignored, which data capture
    /// records so a monitor sees requests carrying extra columns. Found while parsing, at no
    /// cost for bodies without names or without extra columns.
    pub unknown_columns: Vec<String>,
}

/// Adds `name` to `unknown` (trimmed), unless it is there or the list is full.
fn note_unknown(unknown: &mut Vec<String>, name: &str) {
    let name = name.trim();
    if unknown.len() < MAX_UNKNOWN_COLUMNS && !unknown.iter().any(|n| n == name) {
        unknown.push(name.to_string());
    }
}

/// Parses a body into `out` (cleared first). With `lenient` (the endpoint's `enforce: warn`
/// or `off`), a value that breaks the signature (an unknown category, a wrong type, a
/// missing value or column) becomes NaN, a missing value the model imputes, and is counted
/// in [`Parsed::warnings`]; a body whose shape cannot be read is an error either way.
pub fn parse_request(
    body: &[u8],
    format: Format,
    schema: &InputSchema,
    lenient: bool,
    out: &mut Vec<f64>,
) -> Result<Parsed, InputError> {
    out.clear();
    let mut parsed = match format {
        Format::Json => parse_json(body, schema, lenient, out)?,
        Format::Csv { header } => parse_csv(body, header, schema, lenient, out)?,
    };
    if parsed.rows == 0 {
        return Err(InputError::bad(format!(
            "the request has no rows; send at least one row with the columns {}",
            schema.names()
        )));
    }
    if let Some(w) = &mut parsed.first_warning
        && parsed.warnings > 1
    {
        w.push_str(&format!(" (and {} more)", parsed.warnings - 1));
    }
    debug_assert_eq!(out.len(), parsed.rows * schema.width());
    Ok(parsed)
}

// ---------------------------------------------------------------------------------------------
// JSON

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    instances: Option<&'a RawValue>,
    #[serde(borrow, default)]
    inputs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    dataframe_split: Option<SplitField<'a>>,
    #[serde(borrow, default)]
    dataframe_records: Option<&'a RawValue>,
    #[serde(borrow, default)]
    columns: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default, rename = "index")]
    _index: Option<IgnoredAny>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// The most unknown columns one captured record lists.
pub const MAX_UNKNOWN_COLUMNS: usize = 32;

/// `predict_method`: MLflow's documented inference parameter for scikit-learn style models.
const PREDICT_METHODS: &str = "`predict` (the default) or `predict_proba`";

/// Reads `params`: only `predict_method` means something to mlctl's models; anything else
/// is refused rather than ignored.
fn predict_proba_param(params: &RawValue) -> Result<bool, InputError> {
    let map: std::collections::BTreeMap<Cow<str>, serde_json::Value> =
        serde_json::from_str(params.get()).map_err(|e| {
            InputError::bad(format!(
                "invalid `params`: {e}; send an object such as {{\"predict_method\": \"predict_proba\"}}"
            ))
        })?;
    let mut proba = false;
    for (k, v) in &map {
        match (k.as_ref(), v.as_str()) {
            ("predict_method", Some("predict")) => proba = false,
            ("predict_method", Some("predict_proba")) => proba = true,
            ("predict_method", _) => {
                return Err(InputError::bad(format!(
                    "`params.predict_method` is {v}; use {PREDICT_METHODS}"
                )));
            }
            (other, _) => {
                return Err(InputError::bad(format!(
                    "unknown inference parameter `{other}`; mlctl models take `predict_method`: {PREDICT_METHODS}"
                )));
            }
        }
    }
    Ok(proba)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Split<'a> {
    #[serde(borrow, default)]
    columns: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default, rename = "index")]
    _index: Option<IgnoredAny>,
}

/// `dataframe_split`, read while the envelope is read (not skipped over, then read again),
/// with its own errors named as such.
struct SplitField<'a>(Split<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for SplitField<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Split::deserialize(d)
            .map(SplitField)
            .map_err(|e| de::Error::custom(format!("{SPLIT_ERROR}{e}")))
    }
}

const SPLIT_ERROR: &str = "invalid `dataframe_split`: ";

const SHAPES: &str = "`instances`, `inputs`, `dataframe_split` or `dataframe_records`";

fn json_error(e: serde_json::Error) -> InputError {
    InputError::bad(format!("invalid JSON: {e}"))
}

fn first_byte(v: &RawValue) -> u8 {
    v.get()
        .bytes()
        .find(|b| !b.is_ascii_whitespace())
        .unwrap_or(b' ')
}

fn parse_json(
    body: &[u8],
    schema: &InputSchema,
    lenient: bool,
    out: &mut Vec<f64>,
) -> Result<Parsed, InputError> {
    // The body is read once here (and the rows once more below): no pass that only checks
    // it is JSON first. Syntax errors are "invalid JSON" whichever reader meets them.
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'{')
        && !general_reader_only()
        && let Some(parsed) = one_pass_split(body, schema, lenient, out)
    {
        return Ok(parsed);
    }
    out.clear();
    let mut ctx = Ctx::new(schema, out);
    ctx.lenient = lenient;
    let mut predict_proba = false;
    match first {
        Some(b'[') => {
            let whole = std::str::from_utf8(body).map_err(|e| {
                InputError::bad(format!("invalid JSON: the body is not UTF-8 ({e})"))
            })?;
            ctx.run(whole, Mode::Rows { mapping: None })?
        }
        Some(b'{') => {
            let env: Envelope = serde_json::from_slice(body).map_err(|e| {
                let message = e.to_string();
                if e.is_syntax() || e.is_eof() || e.is_io() {
                    json_error(e)
                } else if message.starts_with(SPLIT_ERROR) {
                    InputError::bad(message)
                } else {
                    InputError::bad(format!("invalid request: {e}; expected one of {SHAPES}"))
                }
            })?;
            let given = [
                env.instances.is_some(),
                env.inputs.is_some(),
                env.dataframe_split.is_some(),
                env.dataframe_records.is_some(),
                env.data.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if given != 1 {
                let what = if given == 0 {
                    "has none of"
                } else {
                    "has more than one of"
                };
                return Err(InputError::bad(format!("the JSON body {what} {SHAPES}")));
            }
            if let Some(p) = env.params {
                predict_proba = predict_proba_param(p)?;
            }
            if let Some(v) = env.instances.or(env.dataframe_records) {
                ctx.run(v.get(), Mode::Rows { mapping: None })?;
            } else if let Some(v) = env.inputs {
                if first_byte(v) == b'{' {
                    ctx.run(v.get(), Mode::Columns)?;
                } else {
                    ctx.run(v.get(), Mode::Rows { mapping: None })?;
                }
            } else if let Some(SplitField(split)) = env.dataframe_split {
                split_rows(&mut ctx, split.columns.as_deref(), split.data)?;
            } else if let Some(data) = env.data {
                let columns: Option<Vec<Cow<str>>> = match env.columns {
                    Some(c) => Some(
                        serde_json::from_str(c.get())
                            .map_err(|e| InputError::bad(format!("invalid `columns`: {e}")))?,
                    ),
                    None => None,
                };
                split_rows(&mut ctx, columns.as_deref(), data)?;
            }
        }
        _ => {
            serde_json::from_slice::<IgnoredAny>(body).map_err(json_error)?;
            return Err(InputError::bad(format!(
                "the JSON body must be an object with one of {SHAPES}, or an array of rows"
            )));
        }
    }
    Ok(Parsed {
        rows: ctx.rows,
        warnings: ctx.warnings,
        first_warning: ctx.first_warning,
        predict_proba,
        unknown_columns: ctx.unknown,
    })
}

/// `{"dataframe_split": {"columns": [...], "data": [...]}}`, the body MLflow's clients send
/// (pandas' `orient="split"`: `index` and `columns` before `data`; `params` beside), read in
/// one pass: each row is parsed where the reader meets it, not skipped over to find the end
/// of `data` first and read again. `None` when the body is anything else or breaks anything
/// (a column, a value, a duplicate key): the general reader then reads it from the start and
/// says what is wrong in its own words.
fn one_pass_split(
    body: &[u8],
    schema: &InputSchema,
    lenient: bool,
    out: &mut Vec<f64>,
) -> Option<Parsed> {
    let mut ctx = Ctx::new(schema, out);
    ctx.lenient = lenient;
    let mut de = serde_json::Deserializer::from_slice(body);
    let params = OnePass { ctx: &mut ctx }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    let predict_proba = match params {
        Some(p) => predict_proba_param(p).ok()?,
        None => false,
    };
    Some(Parsed {
        rows: ctx.rows,
        warnings: ctx.warnings,
        first_warning: ctx.first_warning,
        predict_proba,
        unknown_columns: ctx.unknown,
    })
}

#[cfg(not(test))]
fn general_reader_only() -> bool {
    false
}

#[cfg(test)]
thread_local! {
    /// Tests compare [`one_pass_split`] with the general reader on the same bodies.
    static GENERAL_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn general_reader_only() -> bool {
    GENERAL_ONLY.with(std::cell::Cell::get)
}

/// Not the shape [`one_pass_split`] reads: the general reader takes over.
fn not_one_pass<E: de::Error>() -> E {
    E::custom("read by the general reader")
}

/// The envelope of [`one_pass_split`]; its value is `params`, when given.
struct OnePass<'c, 's, 'o> {
    ctx: &'c mut Ctx<'s, 'o>,
}

impl<'de> DeserializeSeed<'de> for OnePass<'_, '_, '_> {
    type Value = Option<&'de RawValue>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OnePass<'_, '_, '_> {
    type Value = Option<&'de RawValue>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut split, mut index, mut params) = (false, false, None);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "dataframe_split" if !split => {
                    split = true;
                    map.next_value_seed(OnePassSplit {
                        ctx: &mut *self.ctx,
                    })?;
                }
                "params" if params.is_none() => params = Some(map.next_value::<&RawValue>()?),
                "index" if !index => {
                    index = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => return Err(not_one_pass()),
            }
        }
        if !split {
            return Err(not_one_pass());
        }
        Ok(params)
    }
}

/// `dataframe_split` in [`one_pass_split`]: `columns` first, then `data`, read as rows.
struct OnePassSplit<'c, 's, 'o> {
    ctx: &'c mut Ctx<'s, 'o>,
}

impl<'de> DeserializeSeed<'de> for OnePassSplit<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OnePassSplit<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with `columns` and `data`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let (mut mapping, mut missing) = (None, Vec::new());
        let (mut data, mut index) = (false, false);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "columns" if mapping.is_none() && !data => {
                    let columns: Vec<&'de str> = map.next_value()?;
                    let (m, miss) = column_mapping(
                        ctx.schema,
                        columns.iter().copied(),
                        ctx.lenient,
                        &mut ctx.unknown,
                    )
                    .map_err(|_| not_one_pass::<A::Error>())?;
                    mapping = Some(m);
                    missing = miss;
                }
                "data" if mapping.is_some() && !data => {
                    data = true;
                    map.next_value_seed(RowsSeed {
                        ctx: &mut *ctx,
                        mapping: mapping.as_deref(),
                    })?;
                }
                "index" if !index => {
                    index = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => return Err(not_one_pass()),
            }
        }
        if !data {
            return Err(not_one_pass());
        }
        ctx.missing_columns(&missing);
        Ok(())
    }
}

fn split_rows(
    ctx: &mut Ctx,
    columns: Option<&[Cow<str>]>,
    data: &RawValue,
) -> Result<(), InputError> {
    match columns {
        None => ctx.run(data.get(), Mode::Rows { mapping: None }),
        Some(cols) => {
            let (mapping, missing) = column_mapping(
                ctx.schema,
                cols.iter().map(|c| c.as_ref()),
                ctx.lenient,
                &mut ctx.unknown,
            )?;
            ctx.run(
                data.get(),
                Mode::Rows {
                    mapping: Some(mapping),
                },
            )?;
            ctx.missing_columns(&missing);
            Ok(())
        }
    }
}

/// For each given column, its position in the schema (`None`: not an input, ignored), and
/// (`lenient` only; else an error) the inputs missing from them that take no missing value.
fn column_mapping<'a>(
    schema: &InputSchema,
    given: impl Iterator<Item = &'a str>,
    lenient: bool,
    unknown_out: &mut Vec<String>,
) -> Result<(Vec<Option<usize>>, Vec<usize>), InputError> {
    let mut seen = vec![false; schema.width()];
    let mut mapping = Vec::new();
    let mut unknown = Vec::new();
    for name in given {
        let p = schema.position(name.trim());
        if let Some(p) = p {
            if seen[p] {
                return Err(InputError::bad(format!("column `{name}` is given twice")));
            }
            seen[p] = true;
        } else {
            unknown.push(name.to_string());
        }
        mapping.push(p);
    }
    let missing: Vec<usize> = (0..schema.width())
        .filter(|&j| !seen[j] && !schema.columns()[j].nullable)
        .collect();
    if let Some(&j) = missing.first()
        && !lenient
    {
        return Err(missing_column(schema, j, &unknown));
    }
    for name in &unknown {
        note_unknown(unknown_out, name);
    }
    Ok((mapping, missing))
}

fn missing_column(schema: &InputSchema, j: usize, unknown: &[String]) -> InputError {
    let extra = if unknown.is_empty() {
        String::new()
    } else {
        format!(" (unknown columns given: {})", unknown.join(", "))
    };
    InputError::bad(format!(
        "missing column `{}`; the model takes {}{extra}",
        schema.columns()[j].name,
        schema.names()
    ))
}

enum Mode {
    /// A list of rows; positional rows follow `mapping` when given.
    Rows { mapping: Option<Vec<Option<usize>>> },
    /// `{"col": [values]}`.
    Columns,
}

/// Where values go, and the first error in words (serde's own error only says "custom").
struct Ctx<'s, 'o> {
    schema: &'s InputSchema,
    out: &'o mut Vec<f64>,
    /// For named rows: `stamp[j] == row + 1` once column `j` of this row is set.
    stamp: Vec<usize>,
    /// Breaks of the signature are counted, not errors.
    lenient: bool,
    warnings: usize,
    first_warning: Option<String>,
    rows: usize,
    error: Option<InputError>,
    /// Column names given that the schema does not take ([`Parsed::unknown_columns`]).
    unknown: Vec<String>,
}

impl<'s, 'o> Ctx<'s, 'o> {
    fn new(schema: &'s InputSchema, out: &'o mut Vec<f64>) -> Self {
        Ctx {
            schema,
            out,
            stamp: vec![0; schema.width()],
            rows: 0,
            error: None,
            unknown: Vec::new(),
            lenient: false,
            warnings: 0,
            first_warning: None,
        }
    }

    /// A value that breaks the signature: an error, or (lenient) a missing value and a warning.
    #[cold]
    fn soft<E: de::Error>(&mut self, j: usize, message: String) -> Result<(), E> {
        if !self.lenient {
            return Err(self.fail(message));
        }
        self.warn(message);
        self.set(j, f64::NAN);
        Ok(())
    }

    #[cold]
    fn warn(&mut self, message: String) {
        self.warnings += 1;
        self.first_warning.get_or_insert(message);
    }

    /// Lenient only: every row lacked these columns (they are NaN already).
    fn missing_columns(&mut self, missing: &[usize]) {
        for &j in missing {
            let name = &self.schema.columns()[j].name;
            self.warnings += self.rows.saturating_sub(1);
            self.warn(format!("missing column `{name}`"));
        }
    }

    fn fail<E: de::Error>(&mut self, message: String) -> E {
        let e = E::custom(&message);
        self.error.get_or_insert(InputError::bad(message));
        e
    }

    fn run(&mut self, v: &str, mode: Mode) -> Result<(), InputError> {
        let mut de = serde_json::Deserializer::from_str(v);
        let r = match &mode {
            Mode::Rows { mapping } => RowsSeed {
                ctx: self,
                mapping: mapping.as_deref(),
            }
            .deserialize(&mut de),
            Mode::Columns => ColumnsSeed { ctx: self }.deserialize(&mut de),
        }
        .and_then(|()| de.end());
        match r {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error.take().unwrap_or_else(|| json_error(e))),
        }
    }

    /// Sets value `j` of the current row from a number.
    #[inline]
    fn number<E: de::Error>(&mut self, j: usize, x: f64) -> Result<(), E> {
        let col = &self.schema.columns()[j];
        match &col.kind {
            ColumnKind::Number if x.is_finite() && (!col.integer || x.fract() == 0.0) => {
                self.set(j, x);
                Ok(())
            }
            ColumnKind::Number if x.is_finite() => {
                let msg = format!(
                    "row {}, column `{}`: expected an int, got {x}",
                    self.rows, col.name
                );
                self.soft(j, msg)
            }
            ColumnKind::Number => {
                let msg = format!(
                    "row {}, column `{}`: {x} is not a finite number",
                    self.rows, col.name
                );
                self.soft(j, msg)
            }
            ColumnKind::Category(_) => {
                // Categories that look like numbers ("2") are still matched.
                let text = crate::json::number_text(x);
                self.category(j, &text)
            }
        }
    }

    #[inline]
    fn category<E: de::Error>(&mut self, j: usize, value: &str) -> Result<(), E> {
        let col = &self.schema.columns()[j];
        match &col.kind {
            ColumnKind::Category(cats) => match col.category_index(value) {
                Some(k) => {
                    self.set(j, k as f64);
                    Ok(())
                }
                None => {
                    let msg = format!(
                        "row {}, column `{}`: unknown category {value:?} (known: {})",
                        self.rows,
                        col.name,
                        crate::schema::known(cats)
                    );
                    self.soft(j, msg)
                }
            },
            ColumnKind::Number => {
                let msg = format!(
                    "row {}, column `{}`: expected a number, got the string {value:?}",
                    self.rows, col.name
                );
                self.soft(j, msg)
            }
        }
    }

    #[inline]
    fn missing<E: de::Error>(&mut self, j: usize) -> Result<(), E> {
        let col = &self.schema.columns()[j];
        if col.nullable {
            self.set(j, f64::NAN);
            Ok(())
        } else {
            let msg = format!(
                "row {}, column `{}`: missing value, and the model takes no missing values there",
                self.rows, col.name
            );
            self.soft(j, msg)
        }
    }

    #[inline]
    fn set(&mut self, j: usize, x: f64) {
        let w = self.schema.width();
        self.out[self.rows * w + j] = x;
        self.stamp[j] = self.rows + 1;
    }

    fn begin_row(&mut self) {
        let w = self.schema.width();
        self.out.resize((self.rows + 1) * w, f64::NAN);
    }

    /// Checks that every column of the current row was given (named rows).
    fn end_named_row<E: de::Error>(&mut self) -> Result<(), E> {
        for j in 0..self.schema.width() {
            if self.stamp[j] != self.rows + 1 {
                let col = &self.schema.columns()[j];
                if !col.nullable {
                    let msg = format!(
                        "row {} has no column `{}`; the model takes {}",
                        self.rows,
                        col.name,
                        self.schema.names()
                    );
                    if !self.lenient {
                        return Err(self.fail(msg));
                    }
                    self.warn(msg);
                }
            }
        }
        self.rows += 1;
        Ok(())
    }
}

struct RowsSeed<'c, 's, 'o> {
    ctx: &'c mut Ctx<'s, 'o>,
    mapping: Option<&'c [Option<usize>]>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(RowSeed {
                ctx: &mut *self.ctx,
                mapping: self.mapping,
            })?
            .is_some()
        {}
        Ok(())
    }
}

struct RowSeed<'c, 's, 'o> {
    ctx: &'c mut Ctx<'s, 'o>,
    mapping: Option<&'c [Option<usize>]>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.ctx.begin_row();
        d.deserialize_any(self)
    }
}

impl RowSeed<'_, '_, '_> {
    /// A bare value as a row: only for one-column models.
    fn scalar<E: de::Error>(self, set: impl FnOnce(&mut Ctx) -> Result<(), E>) -> Result<(), E> {
        let w = self.ctx.schema.width();
        if w != 1 || self.mapping.is_some() {
            let names = self.ctx.schema.names();
            return Err(self.ctx.fail(format!(
                "row {}: expected a list of {w} values or an object with the columns {names}",
                self.ctx.rows
            )));
        }
        set(self.ctx)?;
        self.ctx.rows += 1;
        Ok(())
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row (a list of values or an object of columns)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let expected = self.mapping.map_or(ctx.schema.width(), <[_]>::len);
        let mut k = 0;
        loop {
            let target = if k < expected {
                Some(self.mapping.map_or(Some(k), |m| m[k]))
            } else {
                None
            };
            let got = match target {
                Some(Some(j)) => seq.next_element_seed(ValueSeed { ctx: &mut *ctx, j })?,
                _ => seq.next_element::<IgnoredAny>()?.map(|_| ()),
            };
            if got.is_none() {
                break;
            }
            k += 1;
        }
        if k != expected {
            let names = match self.mapping {
                Some(_) => "the given `columns`".to_string(),
                None => ctx.schema.names(),
            };
            return Err(ctx.fail(format!(
                "row {} has {k} values; the model takes {expected} ({names})",
                ctx.rows
            )));
        }
        ctx.rows += 1;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        while let Some(pos) = map.next_key_seed(KeySeed {
            schema: ctx.schema,
            unknown: &mut ctx.unknown,
        })? {
            match pos {
                Some(j) => map.next_value_seed(ValueSeed { ctx: &mut *ctx, j })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        ctx.end_named_row()
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(|c| c.number(0, v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(|c| c.number(0, v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(|c| c.number(0, v as f64))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(|c| bool_value(c, 0, v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(|c| c.category(0, v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(|c| c.missing(0))
    }
}

fn bool_value<E: de::Error>(ctx: &mut Ctx, j: usize, v: bool) -> Result<(), E> {
    match ctx.schema.columns()[j].kind {
        ColumnKind::Number => ctx.number(j, if v { 1.0 } else { 0.0 }),
        ColumnKind::Category(_) => ctx.category(j, if v { "true" } else { "false" }),
    }
}

/// A column name -> its position (without allocating for unescaped names); a name the schema
/// does not take is noted in `unknown` ([`Parsed::unknown_columns`]).
struct KeySeed<'s, 'u> {
    schema: &'s InputSchema,
    unknown: &'u mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = Option<usize>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        let p = self.schema.position(v);
        if p.is_none() {
            note_unknown(self.unknown, v);
        }
        Ok(p)
    }
}

/// One value of column `j` of the current row.
struct ValueSeed<'c, 's, 'o> {
    ctx: &'c mut Ctx<'s, 'o>,
    j: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a string or null")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.ctx.number(self.j, v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.ctx.number(self.j, v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.ctx.number(self.j, v as f64)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        bool_value(self.ctx, self.j, v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.ctx.category(self.j, v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.ctx.missing(self.j)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.ctx.missing(self.j)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<(), A::Error> {
        Err(self.nested("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        Err(self.nested("an object"))
    }
}

impl ValueSeed<'_, '_, '_> {
    fn nested<E: de::Error>(self, what: &str) -> E {
        let col: &Column = &self.ctx.schema.columns()[self.j];
        let msg = format!(
            "row {}, column `{}`: expected a {}, got {what}",
            self.ctx.rows,
            col.name,
            col.type_name()
        );
        self.ctx.fail(msg)
    }
}

/// `{"col": [v, ...], ...}`.
struct ColumnsSeed<'c, 's, 'o> {
    ctx: &'c mut Ctx<'s, 'o>,
}

impl<'de> DeserializeSeed<'de> for ColumnsSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ColumnsSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of columns")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let w = ctx.schema.width();
        // Length of each given column; usize::MAX = not given.
        let mut lens = vec![usize::MAX; w];
        while let Some(pos) = map.next_key_seed(KeySeed {
            schema: ctx.schema,
            unknown: &mut ctx.unknown,
        })? {
            match pos {
                Some(j) => {
                    let n = map.next_value_seed(ColumnSeed { ctx: &mut *ctx, j })?;
                    lens[j] = n;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let n = lens
            .iter()
            .copied()
            .filter(|&l| l != usize::MAX)
            .max()
            .unwrap_or(0);
        for (j, &l) in lens.iter().enumerate() {
            let col = &ctx.schema.columns()[j];
            if l == usize::MAX && !col.nullable {
                let msg = format!(
                    "missing column `{}`; the model takes {}",
                    col.name,
                    ctx.schema.names()
                );
                if !ctx.lenient {
                    ctx.rows = 0;
                    return Err(ctx.fail(msg));
                }
                ctx.warnings += n.saturating_sub(1);
                ctx.warn(msg);
            }
            if l != usize::MAX && l != n {
                return Err(ctx.fail(format!("column `{}` has {l} values but another column has {n}; columns must have the same length", col.name)));
            }
        }
        ctx.out.resize(n * w, f64::NAN);
        ctx.rows = n;
        Ok(())
    }
}

/// One column's values: row `i` goes to `out[i * w + j]`.
struct ColumnSeed<'c, 's, 'o> {
    ctx: &'c mut Ctx<'s, 'o>,
    j: usize,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_, '_, '_> {
    type Value = usize;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_, '_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let ctx = self.ctx;
        let w = ctx.schema.width();
        let mut i = 0;
        loop {
            // `rows` doubles as the current row index for messages and `set`.
            ctx.rows = i;
            if ctx.out.len() < (i + 1) * w {
                ctx.out.resize((i + 1) * w, f64::NAN);
            }
            if seq
                .next_element_seed(ValueSeed {
                    ctx: &mut *ctx,
                    j: self.j,
                })?
                .is_none()
            {
                break;
            }
            i += 1;
        }
        Ok(i)
    }
}

// ---------------------------------------------------------------------------------------------
// CSV

fn parse_csv(
    body: &[u8],
    header: Option<bool>,
    schema: &InputSchema,
    lenient: bool,
    out: &mut Vec<f64>,
) -> Result<Parsed, InputError> {
    let mut parsed = Parsed::default();
    let mut missing = Vec::new();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(body.len().clamp(64, 64 * 1024))
        .from_reader(body);
    let mut rec = csv::ByteRecord::new();
    let w = schema.width();
    let mut mapping: Option<Vec<Option<usize>>> = None;
    let mut first = true;
    let mut rows = 0;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(InputError::bad(format!("invalid CSV: {e}"))),
        }
        if first {
            first = false;
            if header.unwrap_or_else(|| looks_like_header(&rec, schema)) {
                let names: Vec<&str> = rec
                    .iter()
                    .map(|f| std::str::from_utf8(f).unwrap_or(""))
                    .collect();
                let (m, gone) = column_mapping(
                    schema,
                    names.into_iter(),
                    lenient,
                    &mut parsed.unknown_columns,
                )?;
                mapping = Some(m);
                missing = gone;
                continue;
            }
        }
        let expected = mapping.as_ref().map_or(w, Vec::len);
        if rec.len() != expected {
            let what = if mapping.is_some() {
                "the header has"
            } else {
                "the model takes"
            };
            return Err(InputError::bad(format!(
                "CSV row {rows} has {} values; {what} {expected} ({})",
                rec.len(),
                schema.names()
            )));
        }
        out.resize((rows + 1) * w, f64::NAN);
        let base = rows * w;
        for (k, field) in rec.iter().enumerate() {
            let j = match &mapping {
                Some(m) => match m[k] {
                    Some(j) => j,
                    None => continue,
                },
                None => k,
            };
            out[base + j] = match csv_value(&schema.columns()[j], field, rows) {
                Ok(x) => x,
                Err(e) if lenient && e.status == 400 => {
                    parsed.warnings += 1;
                    parsed.first_warning.get_or_insert(e.message);
                    f64::NAN
                }
                Err(e) => return Err(e),
            };
        }
        rows += 1;
    }
    for &j in &missing {
        parsed.warnings += rows;
        parsed
            .first_warning
            .get_or_insert_with(|| format!("missing column `{}`", schema.columns()[j].name));
    }
    parsed.rows = rows;
    Ok(parsed)
}

fn is_missing_text(s: &str) -> bool {
    s.is_empty() || matches!(s, "NaN" | "nan" | "NA" | "N/A" | "null" | "NULL" | "None")
}

#[inline]
fn csv_value(col: &Column, field: &[u8], row: usize) -> Result<f64, InputError> {
    let text = std::str::from_utf8(field)
        .map_err(|_| {
            InputError::bad(format!(
                "CSV row {row}, column `{}`: not UTF-8 text",
                col.name
            ))
        })?
        .trim();
    if is_missing_text(text) {
        return if col.nullable {
            Ok(f64::NAN)
        } else {
            Err(InputError::bad(format!(
                "CSV row {row}, column `{}`: missing value, and the model takes no missing values there",
                col.name
            )))
        };
    }
    match &col.kind {
        ColumnKind::Number => match text.parse::<f64>() {
            Ok(x) if x.is_finite() && col.integer && x.fract() != 0.0 => {
                Err(InputError::bad(format!(
                    "CSV row {row}, column `{}`: expected an int, got {text}",
                    col.name
                )))
            }
            Ok(x) if x.is_finite() => Ok(x),
            Ok(_) => Err(InputError::bad(format!(
                "CSV row {row}, column `{}`: {text:?} is not a finite number",
                col.name
            ))),
            Err(_) => match text {
                "true" | "True" | "TRUE" => Ok(1.0),
                "false" | "False" | "FALSE" => Ok(0.0),
                _ => Err(InputError::bad(format!(
                    "CSV row {row}, column `{}`: expected a number, got {text:?}",
                    col.name
                ))),
            },
        },
        ColumnKind::Category(cats) => match col.category_index(text) {
            Some(k) => Ok(k as f64),
            None => Err(InputError::bad(format!(
                "CSV row {row}, column `{}`: unknown category {text:?} (known: {})",
                col.name,
                crate::schema::known(cats)
            ))),
        },
    }
}

/// A first line is a header when it names a column and holds no number.
fn looks_like_header(rec: &csv::ByteRecord, schema: &InputSchema) -> bool {
    let mut names_a_column = false;
    for f in rec.iter() {
        let Ok(s) = std::str::from_utf8(f) else {
            return false;
        };
        let s = s.trim();
        if s.parse::<f64>().is_ok() {
            return false;
        }
        names_a_column |= schema.position(s).is_some();
    }
    names_a_column
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Column;

    fn iris() -> InputSchema {
        InputSchema::new(vec![
            Column::number("a"),
            Column::number("b"),
            Column::category("c", ["x", "y"]),
            Column::number("d").nullable(),
        ])
    }

    /// Parses and returns the rows, or the error message.
    fn check(format: Format, body: &str) -> Result<Vec<Vec<f64>>, String> {
        let mut out = Vec::new();
        let s = iris();
        match parse(body.as_bytes(), format, &s, &mut out) {
            Ok(n) => {
                assert_eq!(out.len(), n * 4);
                Ok(out
                    .chunks(4)
                    .map(|r| {
                        r.iter()
                            .map(|x| if x.is_nan() { -1.0 } else { *x })
                            .collect()
                    })
                    .collect())
            }
            Err(e) => Err(e.message),
        }
    }

    fn ok(format: Format, body: &str) -> Vec<Vec<f64>> {
        check(format, body).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn err(format: Format, body: &str) -> String {
        check(format, body).expect_err(body)
    }

    const J: Format = Format::Json;
    const C: Format = Format::Csv { header: None };
    const TWO: [[f64; 4]; 2] = [[1.0, 2.0, 1.0, 3.0], [4.0, 5.0, 0.0, -1.0]];

    /// What a body parses to (rows as bits, so NaN compares), or its error.
    fn outcome(body: &str, lenient: bool) -> Result<(Parsed, Vec<u64>), (u16, String)> {
        let mut out = vec![7.0; 3];
        parse_request(body.as_bytes(), J, &iris(), lenient, &mut out)
            .map(|p| (p, out.iter().map(|x| x.to_bits()).collect()))
            .map_err(|e| (e.status, e.message))
    }

    #[test]
    fn the_one_pass_reader_agrees_with_the_general_one() {
        let bodies = [
            // What MLflow's clients send: pandas' orient="split", `index` first.
            r#"{"dataframe_split": {"index": [0, 1], "columns": ["a", "b", "c", "d"], "data": [[1, 2, "y", 3], [4, 5.0, "x", null]]}}"#,
            r#"{"dataframe_split": {"columns": ["b", "a", "c", "d", "extra"], "data": [[2, 1, "y", 3, "z"], [5, 4, "x", null, 0]]}, "params": {"predict_method": "predict_proba"}}"#,
            r#" {"params": {}, "dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, "x"]], "index": [9]}} "#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": []}}"#,
            // Bodies the general reader takes over.
            r#"{"dataframe_split": {"data": [[1, 2, "y", 3]], "columns": ["a", "b", "c", "d"]}}"#,
            r#"{"dataframe_split": {"data": [[1, 2, "y", 3]]}}"#,
            r#"{"dataframe_split": {"columns": ["\u0061", "b", "c", "d"], "data": [[1, 2, "y", 3]]}}"#,
            // ... and the errors it words.
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "q", 3]]}}"#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "y"]]}}"#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, "y"]]}}"#,
            r#"{"dataframe_split": {"columns": ["a", "a", "c", "d"], "data": [[1, 2, "y", 3]]}}"#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "y", 3]], "data": []}}"#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "y", 3]], "extra": 1}}"#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "y", 3]]}, "instances": [[1, 2, "y", 3]]}"#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "y", 3]]}, "index": [], "index": []}"#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "y", 3]]}, "params": {"k": 1}}"#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "y", 3]]}} x"#,
            r#"{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, "y", 3]"#,
        ];
        let general = |body: &str, lenient: bool| {
            GENERAL_ONLY.with(|g| g.set(true));
            let r = outcome(body, lenient);
            GENERAL_ONLY.with(|g| g.set(false));
            r
        };
        let mut read_in_one_pass = 0;
        for body in bodies {
            for lenient in [false, true] {
                assert_eq!(
                    outcome(body, lenient),
                    general(body, lenient),
                    "{body} (lenient: {lenient})"
                );
                let mut out = Vec::new();
                if one_pass_split(body.as_bytes(), &iris(), lenient, &mut out).is_some() {
                    read_in_one_pass += 1;
                }
            }
        }
        // The first four in both modes, the unknown category when lenient (a missing value
        // and a warning), and the nullable column left out in both.
        assert_eq!(read_in_one_pass, 11);
    }

    #[test]
    fn json_shapes_agree() {
        let bodies = [
            r#"{"instances": [[1, 2, "y", 3], [4, 5.0, "x", null]]}"#,
            r#"[[1, 2, "y", 3], [4, 5.0, "x", null]]"#,
            r#"{"instances": [{"a": 1, "b": 2, "c": "y", "d": 3}, {"c": "x", "b": 5, "a": 4}]}"#,
            r#"{"inputs": [[1, 2, "y", 3], [4, 5.0, "x", null]]}"#,
            r#"{"inputs": {"a": [1, 4], "b": [2, 5], "c": ["y", "x"], "d": [3, null]}}"#,
            r#"{"dataframe_split": {"columns": ["b", "a", "c", "d", "extra"], "data": [[2, 1, "y", 3, "z"], [5, 4, "x", null, 0]]}}"#,
            r#"{"dataframe_split": {"data": [[1, 2, "y", 3], [4, 5.0, "x", null]], "index": [0, 1]}}"#,
            r#"{"columns": ["a", "b", "c", "d"], "data": [[1, 2, "y", 3], [4, 5, "x", null]]}"#,
            r#"{"dataframe_records": [{"a": 1, "b": 2, "c": "y", "d": 3, "species": "q"}, {"a": 4, "b": 5, "c": "x", "d": null}], "params": {}}"#,
        ];
        for b in bodies {
            assert_eq!(ok(J, b), TWO, "{b}");
        }
    }

    #[test]
    fn csv_with_and_without_header() {
        assert_eq!(ok(C, "1,2,y,3\n4,5,x,\n"), TWO);
        assert_eq!(ok(C, "a,b,c,d\n1,2,y,3\r\n4,5,x,NaN"), TWO);
        assert_eq!(ok(C, "b, a,c,d,species\n2,1,y,3,s\n5,4,x,,s\n"), TWO);
        assert_eq!(
            ok(
                Format::Csv {
                    header: Some(false)
                },
                "1,2,y,3"
            ),
            vec![TWO[0].to_vec()]
        );
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        let cases = [
            (J, "", "invalid JSON"),
            (J, "{", "invalid JSON"),
            (J, "{\"instances\": [[1,2,\"y\",NaN]]}", "invalid JSON"),
            (J, "{\"rows\": []}", "unknown field `rows`"),
            (J, "{}", "has none of"),
            (J, "{\"instances\": []}", "no rows"),
            (
                J,
                "{\"instances\": [[1,2,\"y\"]]}",
                "row 0 has 3 values; the model takes 4 (a, b, c, d)",
            ),
            (
                J,
                "{\"instances\": [[1,2,\"y\",1,5]]}",
                "row 0 has 5 values",
            ),
            (
                J,
                "{\"instances\": [[1,2,\"y\",1],[1,\"b\",\"y\",1]]}",
                "row 1, column `b`: expected a number, got the string \"b\"",
            ),
            (
                J,
                "{\"instances\": [[1,2,\"z\",1]]}",
                "row 0, column `c`: unknown category \"z\" (known: x, y)",
            ),
            (
                J,
                "{\"instances\": [[null,2,\"x\",1]]}",
                "row 0, column `a`: missing value",
            ),
            (
                J,
                "{\"instances\": [[[1],2,\"x\",1]]}",
                "row 0, column `a`: expected a number, got a list",
            ),
            (
                J,
                "{\"instances\": [{\"a\":1,\"bb\":2,\"c\":\"x\"}]}",
                "row 0 has no column `b`",
            ),
            (
                J,
                "{\"instances\": [1, 2]}",
                "row 0: expected a list of 4 values",
            ),
            (J, "{\"instances\": [[1e999,2,\"x\",1]]}", "invalid JSON"),
            (
                J,
                "{\"inputs\": {\"a\": [1], \"b\": [1,2], \"c\": [\"x\"]}}",
                "column `a` has 1 values but another column has 2",
            ),
            (
                J,
                "{\"dataframe_split\": {\"columns\": [\"a\", \"b\"], \"data\": [[1,2]]}}",
                "missing column `c`",
            ),
            (J, "\"hello\"", "must be an object"),
            (C, "1,2,y", "CSV row 0 has 3 values; the model takes 4"),
            (
                C,
                "1,2,y,x",
                "CSV row 0, column `d`: expected a number, got \"x\"",
            ),
            (C, "1,inf,y,1", "not a finite number"),
            (C, ",2,y,1", "CSV row 0, column `a`: missing value"),
            (C, "a,b,d\n1,2,3", "missing column `c`"),
            (C, "", "no rows"),
            (C, "a,b,c,d\n", "no rows"),
        ];
        for (f, body, want) in cases {
            let e = err(f, body);
            assert!(
                e.contains(want),
                "{body:?}: {e:?} does not contain {want:?}"
            );
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            format_of(Some(b"application/json; charset=utf-8")),
            Ok(Format::Json)
        );
        assert_eq!(
            format_of(Some(b"text/csv; header=present")),
            Ok(Format::Csv { header: Some(true) })
        );
        assert_eq!(
            format_of(Some(b"text/csv")),
            Ok(Format::Csv { header: None })
        );
        assert_eq!(
            format_of(Some(b"application/x-www-form-urlencoded"))
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(format_of(None).unwrap_err().status, 415);
    }

    /// Parses leniently (`enforce: warn`): rows with NaN for -1, and the warnings.
    fn lenient(format: Format, body: &str) -> Result<(Vec<Vec<f64>>, Parsed), String> {
        let mut out = Vec::new();
        let s = iris();
        let p =
            parse_request(body.as_bytes(), format, &s, true, &mut out).map_err(|e| e.message)?;
        let rows = out
            .chunks(4)
            .map(|r| {
                r.iter()
                    .map(|x| if x.is_nan() { -1.0 } else { *x })
                    .collect()
            })
            .collect();
        Ok((rows, p))
    }

    #[test]
    fn lenient_parsing_takes_a_broken_value_as_missing_and_counts_it() {
        // An unknown category, a string in a number column, a missing column.
        let (rows, p) = lenient(
            Format::Json,
            r#"{"dataframe_records": [{"a": 1, "b": 2, "c": "zzz"}, {"a": "x", "c": "y"}]}"#,
        )
        .unwrap();
        assert_eq!(rows, [[1.0, 2.0, -1.0, -1.0], [-1.0, -1.0, 1.0, -1.0]]);
        assert_eq!(p.warnings, 3);
        assert_eq!(
            p.first_warning.as_deref(),
            Some("row 0, column `c`: unknown category \"zzz\" (known: x, y) (and 2 more)")
        );
        // The same body is a 400 when the signature is enforced.
        let e = check(
            Format::Json,
            r#"{"dataframe_records": [{"a": 1, "b": 2, "c": "zzz"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "row 0, column `c`: unknown category \"zzz\" (known: x, y)"
        );
        // A missing column in a header, leniently: every row counts.
        let (_, p) = lenient(Format::Csv { header: Some(true) }, "a,c\n1,x\n2,y\n").unwrap();
        assert_eq!(p.warnings, 2);
        assert_eq!(
            p.first_warning.as_deref(),
            Some("missing column `b` (and 1 more)")
        );
        // A shape that cannot be read is an error either way.
        assert!(lenient(Format::Json, r#"{"instances": [[1, 2]]}"#).is_err());
    }

    #[test]
    fn an_int_column_takes_whole_numbers_only() {
        let s = InputSchema::new(vec![Column::number("n").integer()]);
        let mut out = Vec::new();
        assert!(parse(br#"{"instances": [[3]]}"#, Format::Json, &s, &mut out).is_ok());
        let e = parse(br#"{"instances": [[2.5]]}"#, Format::Json, &s, &mut out).unwrap_err();
        assert_eq!(e.message, "row 0, column `n`: expected an int, got 2.5");
        let e = parse(b"2.5\n", Format::Csv { header: None }, &s, &mut out).unwrap_err();
        assert_eq!(e.message, "CSV row 0, column `n`: expected an int, got 2.5");
    }

    #[test]
    fn mlflow_params_ask_for_probabilities() {
        let s = iris();
        let mut out = Vec::new();
        let body =
            |params: &str| format!(r#"{{"instances": [[1, 2, "x", null]], "params": {params}}}"#);
        let p = |params: &str, out: &mut Vec<f64>| {
            parse_request(body(params).as_bytes(), Format::Json, &s, false, out)
        };
        assert!(
            p(r#"{"predict_method": "predict_proba"}"#, &mut out)
                .unwrap()
                .predict_proba
        );
        assert!(
            !p(r#"{"predict_method": "predict"}"#, &mut out)
                .unwrap()
                .predict_proba
        );
        let e = p(r#"{"temperature": 0.5}"#, &mut out).unwrap_err();
        assert!(
            e.message
                .contains("unknown inference parameter `temperature`"),
            "{e}"
        );
        let e = p(r#"{"predict_method": "transform"}"#, &mut out).unwrap_err();
        assert!(
            e.message
                .contains("use `predict` (the default) or `predict_proba`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_columns_are_the_names_a_body_gives_that_the_model_does_not_take() {
        let schema = iris();
        // What the parser noted while it parsed (leniently: the missing ones are no error).
        let names = |b: &[u8], f: Format| {
            parse_request(b, f, &schema, true, &mut Vec::new())
                .map(|p| p.unknown_columns)
                .unwrap_or_default()
        };
        let json = |b: &str| names(b.as_bytes(), Format::Json);
        assert_eq!(
            json(
                r#"{"instances": [{"a": 1, "colour": "red"}, {"a": 2, "size": 3, "colour": "x"}]}"#
            ),
            ["colour", "size"]
        );
        assert_eq!(
            json(r#"{"dataframe_split": {"columns": ["a", "extra"], "data": [[1, 2]]}}"#),
            ["extra"]
        );
        assert_eq!(json(r#"{"columns": ["a", "z"], "data": [[1, 2]]}"#), ["z"]);
        assert_eq!(json(r#"{"inputs": {"a": [1], "q": [2]}}"#), ["q"]);
        // Rows without names, and bodies that do not parse, name none.
        assert!(json(r#"{"instances": [[1, 2, 3]]}"#).is_empty());
        assert!(json("{not json").is_empty());
        let csv = names(b"a,b,zz\n1,2,3\n", Format::Csv { header: Some(true) });
        assert_eq!(csv, ["zz"]);
    }
}
