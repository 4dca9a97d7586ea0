//! Evaluating a Monitor: the live window of an endpoint's captured traffic judged against
//! the baseline dataset's profile, with the same code on every target.
//!
//! The target supplies two things through its components: the captured records
//! ([`crate::components::MonitorSink::captured`]) and the baseline's stored profile
//! ([`crate::components::DataStore::read_profile`]). Everything else happens here:
//!
//! - [`rows_of`] reads a captured record in any of the formats targets write: mlctl's own
//!   (`columns`/`rows`/`predictions`), a script-mode record (`request`/`response` bodies),
//!   and SageMaker's data-capture JSON lines (`captureData.endpointInput`, CSV or JSON,
//!   plain or base64). Rows without column names are matched to the features by position.
//! - [`Window`]: the last N records, or those of the last duration.
//! - [`evaluate`]: each part the spec configures is judged, and a breach of any is a breach
//!   of the monitor. `drift`: every feature column (never the label or an id) is checked with
//!   `mlctl_ml::drift`, and any drifted feature is a breach. `quality` ([`quality`]): missing
//!   and extra columns, type mismatches, completeness, values out of range and unseen
//!   categories, from the raw captured records. `slo` ([`slo`]): latency percentiles, error
//!   rate and throughput from the records' `status` and `latencyMs`. Below `minSamples` rows
//!   (drift, quality) or requests (SLOs) a part is [`Verdict::InsufficientData`], never
//!   healthy; the monitor is healthy only when every part is. Each feature's drift result
//!   keeps its chart data ([`bins`]: baseline and live proportions over the same bins), so a
//!   stored result can be drawn later ([`report`]).

pub mod bins;
pub mod quality;
pub mod report;
pub mod schedule;
pub mod slo;

pub use bins::Bins;

use crate::state::{FORMAT_VERSION, FormatVersion};
use mlctl_ml::drift::{Features, LiveSample, LiveValue, drift_sample};
use mlctl_ml::profile::{ColumnStats, Profile};
use mlctl_spec::MonitorSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Rows needed before drift is judged when the spec sets no `minSamples`.
pub const DEFAULT_MIN_SAMPLES: u64 = 100;

/// Which captured records a run judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The newest N records.
    Last(usize),
    /// The records of the last duration (at most [`Window::MAX_RECORDS`] of them).
    Since(Duration),
}

impl Window {
    /// The most records a time window reads.
    pub const MAX_RECORDS: usize = 1_000_000;

    /// Parses `--window`: a count (`5000`) or a duration (`1h`, `30m`).
    ///
    /// # Errors
    /// A message saying what is accepted.
    pub fn parse(s: &str) -> Result<Window, String> {
        if let Ok(n) = s.trim().parse::<usize>() {
            if n == 0 {
                return Err("--window 0 would judge nothing; give a count of records (1000) or a duration (1h)".into());
            }
            return Ok(Window::Last(n));
        }
        mlctl_spec::units::parse_duration(s)
            .map(Window::Since)
            .map_err(|e| {
                format!(
                    "--window `{s}`: give a count of records (1000) or a duration (1h, 30m): {e}"
                )
            })
    }

    /// How many records to ask the target for.
    pub fn limit(&self) -> usize {
        match self {
            Window::Last(n) => *n,
            Window::Since(_) => Self::MAX_RECORDS,
        }
    }

    fn describe(&self) -> String {
        match self {
            Window::Last(n) => format!("last {n} records"),
            Window::Since(d) => format!("last {}", humantime(*d)),
        }
    }
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Whether a record served at `time` (RFC 3339) is in `window`: a count window keeps every
/// record it was given, a record without a readable time is kept.
pub(crate) fn keeps(window: Window, time: Option<&str>, now: time::OffsetDateTime) -> bool {
    let Window::Since(d) = window else {
        return true;
    };
    let at = time.and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    at.is_none_or(|at| at >= now - d)
}

impl Window {
    /// Whether a captured record (in any capture format) is in this window at `now`: always
    /// for a count (the reader took the newest N), and for a duration when it was served
    /// since `now - duration` (a record without a time is kept).
    pub fn keeps_record(&self, record: &serde_json::Value, now: time::OffsetDateTime) -> bool {
        match self {
            Window::Last(_) => true,
            Window::Since(d) => record_time(record).is_none_or(|at| at >= now - *d),
        }
    }
}

/// When a captured record was served, in any capture format: `time`, or SageMaker's
/// `eventMetadata.inferenceTime`.
pub(crate) fn record_time(record: &serde_json::Value) -> Option<time::OffsetDateTime> {
    let t = record
        .get("time")
        .and_then(serde_json::Value::as_str)
        .or_else(|| record.get("eventMetadata")?.get("inferenceTime")?.as_str())?;
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
}

/// The verdict of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// Enough rows, and nothing drifted.
    Healthy,
    /// A check failed.
    Breached,
    /// Fewer rows than `minSamples`: nothing can be said.
    InsufficientData,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Healthy => "healthy",
            Verdict::Breached => "breached",
            Verdict::InsufficientData => "insufficient data",
        })
    }
}

/// The drift check of one feature, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureResult {
    /// The column.
    pub feature: String,
    /// The method used (`psi`, `ks`, ...).
    pub method: String,
    /// Its statistic (KS D, chi-squared, Z, or the distance); `None` when not computable.
    pub statistic: Option<f64>,
    /// The p-value of a test (`ks`, `chi_squared`, `z_test`): it drifts when below the
    /// threshold. `None` for a distance, which drifts at or above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// Whether the feature drifted.
    pub drifted: bool,
    /// Rows of the window with a value for it.
    pub rows: u64,
    /// Why the method changed or the statistic is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The baseline's and the window's proportions over the same bins, for a chart; `None`
    /// in a result stored before mlctl kept them, for a feature the baseline lacks, and past
    /// the [`report::MAX_FEATURES`] features a report draws (drifted ones first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bins: Option<Bins>,
}

/// One evaluation of a monitor: what was judged and what came out, stored as a time series
/// in the target's state store ([`crate::state::StateStore::record_monitor_result`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorResult {
    /// [`FORMAT_VERSION`] when written.
    #[serde(default = "FormatVersion::legacy")]
    pub format_version: FormatVersion,
    /// The monitor.
    pub monitor: String,
    /// The endpoint watched.
    pub endpoint: String,
    /// When it was evaluated (RFC 3339).
    pub at: String,
    /// The commit of the spec it was evaluated with.
    pub commit: String,
    /// The window, in words (`last 1h`, `last 1000 records`).
    pub window: String,
    /// Rows in the window.
    pub rows: u64,
    /// Rows needed to judge.
    pub min_samples: u64,
    /// The baseline dataset (name and fingerprint).
    pub baseline: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The verdict in a sentence.
    pub summary: String,
    /// Per feature; empty with insufficient data.
    #[serde(default)]
    pub features: Vec<FeatureResult>,
    /// Whether the dataset as a whole drifted (Evidently's "dataset drift": at least `share`
    /// of the features drifted). A breach is any drifted feature; this says how widely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_drift: Option<DatasetDrift>,
    /// The data quality checks (`quality`), per check and column; empty without a `quality`
    /// section or with insufficient data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality: Vec<quality::QualityResult>,
    /// The SLOs (`slo`); `None` without an `slo` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<slo::SloResult>,
}

/// Drift of the dataset as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetDrift {
    /// At least `share` of the features drifted.
    pub drifted: bool,
    /// The share of checked features that drifted.
    pub drifted_share: f64,
    /// The share at which the dataset drifts (`drift.share`, default 0.5).
    pub share: f64,
}

/// A captured record's rows: column names when the record has them, and each row's values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CapturedRows {
    /// When the request was served (RFC 3339), if the record says.
    pub time: Option<String>,
    /// Column names, when the record names them.
    pub columns: Option<Vec<String>>,
    /// The rows (each a list of values).
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// The rows of one captured record, in whichever format the target wrote it; `None` for a
/// record without request rows (a failed request, an unreadable body).
pub fn rows_of(record: &serde_json::Value) -> Option<CapturedRows> {
    use serde_json::Value;
    // mlctl's own format.
    if let Some(rows) = record.get("rows").and_then(Value::as_array) {
        let columns = record.get("columns").and_then(Value::as_array).map(|c| {
            c.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        });
        return Some(CapturedRows {
            time: record
                .get("time")
                .and_then(Value::as_str)
                .map(str::to_string),
            columns,
            rows: rows.iter().map(row_values).collect(),
        });
    }
    // A script-mode variant: the request body as JSON.
    if let Some(req) = record.get("request") {
        let mut out = body_rows(req)?;
        out.time = record
            .get("time")
            .and_then(Value::as_str)
            .map(str::to_string);
        return Some(out);
    }
    // SageMaker's data capture.
    let input = record.get("captureData")?.get("endpointInput")?;
    let data = input.get("data")?.as_str()?;
    let encoding = input
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_uppercase();
    let content_type = input
        .get("observedContentType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = if encoding == "BASE64" {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok()?;
        String::from_utf8(bytes).ok()?
    } else {
        data.to_string()
    };
    let mut out = if content_type.contains("json") || encoding == "JSON" {
        body_rows(&serde_json::from_str(&text).ok()?)?
    } else {
        // CSV without a header, one row a line.
        CapturedRows {
            time: None,
            columns: None,
            rows: text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.split(',').map(csv_value).collect())
                .collect(),
        }
    };
    out.time = record
        .get("eventMetadata")
        .and_then(|m| m.get("inferenceTime"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(out)
}

fn csv_value(cell: &str) -> serde_json::Value {
    let cell = cell.trim().trim_matches('"');
    match cell.parse::<f64>() {
        Ok(x) => serde_json::Number::from_f64(x)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Err(_) if cell.is_empty() => serde_json::Value::Null,
        Err(_) => serde_json::Value::String(cell.to_string()),
    }
}

fn row_values(row: &serde_json::Value) -> Vec<serde_json::Value> {
    match row {
        serde_json::Value::Array(values) => values.clone(),
        other => vec![other.clone()],
    }
}

/// Rows of a request body: `{"instances": [[...]]}`, `{"columns": [...], "data": [[...]]}`,
/// `{"instances": [{"name": value}]}` or a bare list of rows.
fn body_rows(body: &serde_json::Value) -> Option<CapturedRows> {
    use serde_json::Value;
    let (columns, rows) = match body {
        Value::Object(o) => {
            if let Some(data) = o.get("data").and_then(Value::as_array) {
                let columns = o.get("columns").and_then(Value::as_array).map(|c| {
                    c.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect::<Vec<_>>()
                });
                (columns, data.clone())
            } else {
                (
                    None,
                    o.get("instances")
                        .or_else(|| o.get("inputs"))
                        .and_then(Value::as_array)?
                        .clone(),
                )
            }
        }
        Value::Array(rows) => (None, rows.clone()),
        _ => return None,
    };
    // Rows given as objects name their columns.
    if columns.is_none()
        && let Some(Value::Object(first)) = rows.first()
    {
        let names: Vec<String> = first.keys().cloned().collect();
        let rows = rows
            .iter()
            .map(|r| {
                names
                    .iter()
                    .map(|n| r.get(n).cloned().unwrap_or(Value::Null))
                    .collect()
            })
            .collect();
        return Some(CapturedRows {
            time: None,
            columns: Some(names),
            rows,
        });
    }
    Some(CapturedRows {
        time: None,
        columns,
        rows: rows.iter().map(row_values).collect(),
    })
}

/// The rows of `records` within `window`, accumulated for drift as a [`LiveSample`] of the
/// `features` (each typed by the baseline's profile: numeric or categorical; a feature the
/// profile lacks is reported by the drift check, not accumulated). Rows without names are
/// matched to `features` by position. Returns the sample and the count of rows.
pub fn live_sample(
    records: &[serde_json::Value],
    window: Window,
    now: time::OffsetDateTime,
    profile: &Profile,
    features: &[String],
) -> (LiveSample, u64) {
    let mut rows = Rows::new(window, now, profile, features);
    for r in records {
        rows.push(r);
    }
    rows.finish()
}

/// Drift's side of the window: its rows accumulated as a [`LiveSample`], one record at a
/// time ([`live_sample`]).
pub struct Rows<'a> {
    features: &'a [String],
    since: Option<time::OffsetDateTime>,
    /// Each feature's place in the sample and whether it is numeric; `None` if not tracked.
    tracked: Vec<Option<(usize, bool)>>,
    sample: LiveSample,
    rows: u64,
}

impl<'a> Rows<'a> {
    /// No row yet.
    pub fn new(
        window: Window,
        now: time::OffsetDateTime,
        profile: &Profile,
        features: &'a [String],
    ) -> Self {
        let since = match window {
            Window::Since(d) => Some(now - d),
            Window::Last(_) => None,
        };
        let names: Vec<&str> = features.iter().map(String::as_str).collect();
        let mut sample = LiveSample::new(profile, Features::Only(&names));
        let tracked: Vec<Option<(usize, bool)>> = features
            .iter()
            .map(|f| {
                let numeric = matches!(
                    profile.column(f).map(|c| &c.stats),
                    Some(ColumnStats::Numeric { .. })
                );
                sample.feature_index(f).map(|i| (i, numeric))
            })
            .collect();
        // A window of no rows still has every feature, without values.
        for &(i, _) in tracked.iter().flatten() {
            sample.mark_present(i);
        }
        Rows {
            features,
            since,
            tracked,
            sample,
            rows: 0,
        }
    }

    /// Adds the rows of one captured record (none when it is outside the window).
    pub fn push(&mut self, record: &serde_json::Value) {
        if let Some(captured) = rows_of(record) {
            self.push_rows(&captured);
        }
    }

    /// [`Rows::push`] with the record's rows already read.
    pub fn push_rows(&mut self, captured: &CapturedRows) {
        if let (Some(since), Some(t)) = (self.since, captured.time.as_deref()) {
            let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339);
            if at.is_ok_and(|at| at < since) {
                return;
            }
        }
        // Where each feature is in this record's rows.
        let at: Vec<Option<usize>> = match &captured.columns {
            Some(cols) => self
                .features
                .iter()
                .map(|f| cols.iter().position(|c| c == f))
                .collect(),
            None => (0..self.features.len()).map(Some).collect(),
        };
        let sample = &mut self.sample;
        for row in &captured.rows {
            self.rows += 1;
            for (pos, tracked) in at.iter().zip(&self.tracked) {
                let Some((i, numeric)) = *tracked else {
                    continue;
                };
                let v = pos.and_then(|p| row.get(p));
                if numeric {
                    sample.push_value(
                        i,
                        LiveValue::Number(match v {
                            Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(f64::NAN),
                            Some(serde_json::Value::Bool(b)) => f64::from(u8::from(*b)),
                            _ => f64::NAN,
                        }),
                    );
                } else {
                    match v {
                        Some(serde_json::Value::String(s)) => {
                            sample.push_value(i, LiveValue::Text(s))
                        }
                        Some(serde_json::Value::Null) | None => {
                            sample.push_value(i, LiveValue::Missing)
                        }
                        Some(other) => sample.push_value(i, LiveValue::Text(&other.to_string())),
                    }
                }
            }
        }
    }

    /// The sample and the count of rows.
    pub fn finish(self) -> (LiveSample, u64) {
        (self.sample, self.rows)
    }
}

/// The TrainingJobs monitors ask to train again (`onBreach.retrain`), each with the time of
/// the breach that asks: the first of the monitor's current run of breaches (a run ends at a
/// healthy evaluation), so a drift that persists retrains once, not at every evaluation.
/// `results` gives a monitor's evaluations, oldest first. The latest breach wins when
/// several monitors name one job.
pub fn retrain_requests(
    spec: &mlctl_spec::Spec,
    results: &mut dyn FnMut(&str) -> Vec<MonitorResult>,
) -> BTreeMap<mlctl_spec::ResourceId, String> {
    let mut out: BTreeMap<mlctl_spec::ResourceId, String> = BTreeMap::new();
    for r in &spec.resources {
        let mlctl_spec::ResourceSpec::Monitor(m) = &r.spec else {
            continue;
        };
        let Some(job) = m.on_breach.as_ref().and_then(|o| o.retrain.as_ref()) else {
            continue;
        };
        let mut start: Option<String> = None;
        let mut breached = false;
        for e in results(&r.id.name) {
            match e.verdict {
                Verdict::Breached if !breached => {
                    breached = true;
                    start = Some(e.at.clone());
                }
                Verdict::Breached => {}
                Verdict::Healthy => breached = false,
                Verdict::InsufficientData => {}
            }
        }
        if let Some(at) = start {
            let id = mlctl_spec::ResourceId::new(mlctl_spec::Kind::TrainingJob, job.clone());
            let keep = out.get(&id).is_none_or(|prev| *prev < at);
            if keep {
                out.insert(id, at);
            }
        }
    }
    out
}

/// What an evaluation needs.
pub struct Evaluation<'a> {
    /// The monitor's name.
    pub name: &'a str,
    /// Its spec (`${env:...}` resolved or not: only the checks are read).
    pub spec: &'a MonitorSpec,
    /// The baseline dataset, for the record (`name@fingerprint12`).
    pub baseline: String,
    /// The baseline's profile.
    pub profile: &'a Profile,
    /// The feature columns (the baseline's columns without the label and ids).
    pub features: &'a [String],
    /// The captured records, oldest first.
    pub records: &'a [serde_json::Value],
    /// The window judged.
    pub window: Window,
    /// Now.
    pub now: time::OffsetDateTime,
    /// The commit of the spec.
    pub commit: String,
    /// What the quality checks and SLOs read beside the profile.
    pub context: Context<'a>,
}

/// The baseline Dataset's label and schema, and the endpoint's sampling percent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The Dataset's `target`: not a feature, and a column requests should not carry.
    pub label: Option<&'a str>,
    /// The Dataset's schema (`min`, `max`, `categories` win over the profile's).
    pub schema: Option<&'a mlctl_spec::DataSchema>,
    /// The endpoint's `capture.samplingPercent` (throughput is scaled by it).
    pub sampling_percent: Option<f64>,
}

/// Judges the window (see the module docs): [`Judge`] over `e.records`.
pub fn evaluate(e: &Evaluation<'_>) -> MonitorResult {
    let mut judge = Judge::new(e);
    for r in e.records {
        judge.push(r);
    }
    judge.finish()
}

/// A window judged one captured record at a time, so a window of a million records is never
/// held in memory: what each part reads of a record (drift's values, the quality checks'
/// counts, the SLOs' latencies) is kept, the record is not. `e.records` is not read.
pub struct Judge<'e, 'a> {
    e: &'e Evaluation<'a>,
    rows: Rows<'a>,
    quality: Option<quality::Counts<'a>>,
    slo: Option<slo::Tally>,
    measured: Option<slo::Measured>,
    oldest: Option<time::OffsetDateTime>,
}

impl<'e, 'a> Judge<'e, 'a> {
    /// Nothing seen yet.
    pub fn new(e: &'e Evaluation<'a>) -> Self {
        Judge {
            e,
            rows: Rows::new(e.window, e.now, e.profile, e.features),
            quality: e.spec.quality.as_ref().map(|q| {
                quality::Counts::new(
                    quality::Inputs {
                        spec: q,
                        profile: e.profile,
                        features: e.features,
                        label: e.context.label,
                        schema: e.context.schema,
                    },
                    e.window,
                    e.now,
                )
            }),
            slo: e
                .spec
                .slo
                .as_ref()
                .map(|_| slo::Tally::new(e.window, e.now)),
            measured: None,
            oldest: None,
        }
    }

    /// Judges the SLOs on the endpoint's own metrics instead of the captured records.
    pub fn measured(&mut self, m: slo::Measured) {
        self.measured = Some(m);
    }

    /// The time of the oldest record read (where a count window starts).
    pub fn oldest(&self) -> Option<time::OffsetDateTime> {
        self.oldest
    }

    /// Reads one captured record (oldest first is not required).
    pub fn push(&mut self, record: &serde_json::Value) {
        if let Some(t) = record_time(record) {
            self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
        }
        // Its rows are read once for drift and the quality checks.
        if let Some(captured) = rows_of(record) {
            self.rows.push_rows(&captured);
            if let Some(q) = &mut self.quality {
                q.push_rows(record, &captured);
            }
        }
        if let Some(s) = &mut self.slo {
            s.push(record);
        }
    }

    /// The verdict over what was read.
    pub fn finish(self) -> MonitorResult {
        let Judge {
            e,
            rows,
            quality: counts,
            slo: tally,
            measured,
            oldest: _,
        } = self;
        let (mut sample, rows) = rows.finish();
        let min_samples = e.spec.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES);
        let mut result = MonitorResult {
            format_version: FORMAT_VERSION,
            monitor: e.name.to_string(),
            endpoint: e.spec.endpoint.clone(),
            at: e
                .now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            commit: e.commit.clone(),
            window: e.window.describe(),
            rows,
            min_samples,
            baseline: e.baseline.clone(),
            verdict: Verdict::InsufficientData,
            summary: String::new(),
            features: Vec::new(),
            dataset_drift: None,
            quality: Vec::new(),
            slo: None,
        };
        // Each configured part: its breaches in words, or `None` when it lacks data.
        let mut breaches: Vec<String> = Vec::new();
        let mut short: Vec<String> = Vec::new();
        let enough_rows = rows >= min_samples;
        let rows_short = || {
            format!(
                "{rows} rows in the {}, fewer than minSamples {min_samples}",
                e.window.describe()
            )
        };
        if e.spec.drift.is_some() {
            if enough_rows {
                let (features, dataset) = drift_of(e.profile, &mut sample, e.spec);
                result.features = features;
                result.dataset_drift = Some(dataset);
                let drifted: Vec<&str> = result
                    .features
                    .iter()
                    .filter(|f| f.drifted)
                    .map(|f| f.feature.as_str())
                    .collect();
                if !drifted.is_empty() {
                    breaches.push(format!(
                        "drift in {} of {} features ({})",
                        drifted.len(),
                        result.features.len(),
                        drifted.join(", ")
                    ));
                }
            } else {
                short.push(format!("drift: {}", rows_short()));
            }
        }
        if e.spec.quality.is_some() {
            if enough_rows {
                result.quality = counts.map(quality::Counts::check).unwrap_or_default();
                let bad: Vec<String> = result
                    .quality
                    .iter()
                    .filter(|r| r.breached)
                    .map(|r| format!("{} {} {}%", r.check, r.column, percent(r.rate)))
                    .collect();
                if !bad.is_empty() {
                    breaches.push(format!("quality: {}", bad.join(", ")));
                }
            } else {
                short.push(format!("quality: {}", rows_short()));
            }
        }
        if let Some(s) = &e.spec.slo {
            let judged = match &measured {
                Some(m) => slo::judge_measured(s, m),
                None => tally
                    .unwrap_or_else(|| slo::Tally::new(e.window, e.now))
                    .judge(s, e.context.sampling_percent),
            };
            if judged.requests >= min_samples {
                let bad: Vec<String> = judged
                    .objectives
                    .iter()
                    .filter(|o| o.breached)
                    .map(|o| {
                        format!(
                            "{} {} (limit {})",
                            o.objective,
                            o.value.map_or("-".into(), figure),
                            o.limit
                        )
                    })
                    .collect();
                if !bad.is_empty() {
                    breaches.push(format!("slo: {}", bad.join(", ")));
                }
                let unmeasured: Vec<&str> = judged
                    .objectives
                    .iter()
                    .filter(|o| o.value.is_none())
                    .map(|o| o.objective.as_str())
                    .collect();
                if !unmeasured.is_empty() {
                    short.push(format!("slo: {} not measured", unmeasured.join(", ")));
                }
            } else {
                short.push(format!(
                "slo: {} requests with a status and a latency in the {}, fewer than minSamples {min_samples}",
                judged.requests,
                e.window.describe()
            ));
            }
            result.slo = Some(judged);
        }
        let over = format!("over {rows} rows ({})", result.window);
        if !breaches.is_empty() {
            result.verdict = Verdict::Breached;
            result.summary = format!("{} {over}", breaches.join("; "));
        } else if !short.is_empty() {
            result.verdict = Verdict::InsufficientData;
            result.summary = format!(
                "insufficient data: {}; send traffic (with capture on), or widen --window",
                short.join("; ")
            );
        } else {
            result.verdict = Verdict::Healthy;
            let mut parts = Vec::new();
            if e.spec.drift.is_some() {
                parts.push(format!("no drift in {} features", result.features.len()));
            }
            if e.spec.quality.is_some() {
                parts.push(format!("{} quality checks passed", result.quality.len()));
            }
            if let Some(s) = &result.slo {
                parts.push(format!("SLOs met over {} requests", s.requests));
            }
            result.summary = format!("healthy: {} {over}", parts.join(", "));
        }
        result
    }
}

/// A measured figure with at most four decimals.
fn figure(x: f64) -> String {
    format!("{}", (x * 1e4).round() / 1e4)
}

/// A rate as a percentage with at most two decimals.
fn percent(rate: f64) -> String {
    let p = (rate * 10_000.0).round() / 100.0;
    format!("{p}")
}

/// The drift of every feature in `features`, as the spec configures it (without a `drift`
/// section: each feature gets the method Evidently's DataDriftPreset would pick).
fn drift_of(
    profile: &Profile,
    sample: &mut LiveSample,
    spec: &MonitorSpec,
) -> (Vec<FeatureResult>, DatasetDrift) {
    let config = spec.drift.clone().unwrap_or(mlctl_spec::Drift {
        method: None,
        threshold: None,
        share: None,
        features: BTreeMap::new(),
    });
    let report = drift_sample(profile, sample, &config);
    let dataset = DatasetDrift {
        drifted: report.dataset_drifted,
        drifted_share: report.drifted_share,
        share: report.share,
    };
    // Chart data for the features a report draws (drifted ones first), so a result of many
    // features stays small.
    let mut charted: Vec<&str> = report
        .features
        .iter()
        .filter(|f| f.drifted)
        .chain(report.features.iter().filter(|f| !f.drifted))
        .map(|f| f.feature.as_str())
        .collect();
    charted.truncate(report::MAX_FEATURES);
    let charted: std::collections::HashSet<String> =
        charted.into_iter().map(str::to_string).collect();
    let features = report
        .features
        .into_iter()
        .map(|f| FeatureResult {
            bins: profile
                .column(&f.feature)
                .filter(|_| charted.contains(&f.feature))
                .and_then(|base| bins::bins_of(base, sample.column(&f.feature))),
            feature: f.feature,
            method: f.method.name().to_string(),
            statistic: f.statistic.is_finite().then_some(f.statistic),
            p_value: f.p_value.filter(|p| p.is_finite()),
            threshold: f.threshold,
            drifted: f.drifted,
            rows: f.sample_count,
            note: f.note,
        })
        .collect();
    (features, dataset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlctl_ml::table::{ColumnData, Table};
    use mlctl_spec::DriftMethod;
    use serde_json::json;

    #[test]
    fn every_capture_format_gives_its_rows() {
        let mlctl = json!({"time": "2026-01-01T00:00:00Z", "columns": ["a", "b"], "rows": [[1.0, "x"]], "predictions": [0]});
        let r = rows_of(&mlctl).unwrap();
        assert_eq!(
            r.columns.as_deref(),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert_eq!(r.rows, vec![vec![json!(1.0), json!("x")]]);
        assert_eq!(r.time.as_deref(), Some("2026-01-01T00:00:00Z"));

        let script =
            json!({"time": "t", "request": {"instances": [{"a": 2.0, "b": "y"}]}, "response": {}});
        let r = rows_of(&script).unwrap();
        assert_eq!(
            r.columns.as_deref(),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert_eq!(r.rows, vec![vec![json!(2.0), json!("y")]]);

        let sm_csv = json!({"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "5.1,3.5\n6.0,2.9", "encoding": "CSV"}, "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0\n1", "encoding": "CSV"}}, "eventMetadata": {"eventId": "e", "inferenceTime": "2026-01-01T00:00:01Z"}, "eventVersion": "0"});
        let r = rows_of(&sm_csv).unwrap();
        assert_eq!(r.columns, None);
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[1], vec![json!(6.0), json!(2.9)]);
        assert_eq!(r.time.as_deref(), Some("2026-01-01T00:00:01Z"));

        use base64::Engine as _;
        let body =
            base64::engine::general_purpose::STANDARD.encode(br#"{"instances": [[1.5, 2.5]]}"#);
        let sm_json = json!({"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "data": body, "encoding": "BASE64"}}, "eventMetadata": {"inferenceTime": "t"}});
        assert_eq!(
            rows_of(&sm_json).unwrap().rows,
            vec![vec![json!(1.5), json!(2.5)]]
        );

        assert_eq!(rows_of(&json!({"status": 500})), None);
    }

    #[test]
    fn chart_data_is_kept_for_the_features_a_report_draws_drifted_ones_first() {
        let n = report::MAX_FEATURES + 50;
        let names: Vec<String> = (0..n).map(|i| format!("f{i:03}")).collect();
        let base = Table::from_columns(
            names
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        ColumnData::Float((0..200).map(f64::from).collect()),
                    )
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let profile = mlctl_ml::profile::profile(&base);
        // The last feature, past the cap in column order, is shifted.
        let rows: Vec<Vec<f64>> = (0..200)
            .map(|r| {
                let mut row = vec![f64::from(r); n];
                row[n - 1] += 1000.0;
                row
            })
            .collect();
        let records = [json!({"columns": names, "rows": rows})];
        let spec: MonitorSpec =
            serde_json::from_value(json!({"endpoint": "e", "minSamples": 1, "drift": {}})).unwrap();
        let result = evaluate(&Evaluation {
            name: "m",
            spec: &spec,
            baseline: "b".into(),
            profile: &profile,
            features: &names,
            records: &records,
            window: Window::Last(10),
            now: time::OffsetDateTime::UNIX_EPOCH,
            commit: "c".into(),
            context: Default::default(),
        });
        assert_eq!(result.features.len(), n);
        let charted = result.features.iter().filter(|f| f.bins.is_some()).count();
        assert_eq!(charted, report::MAX_FEATURES);
        let shifted = &result.features[n - 1];
        assert!(shifted.drifted);
        let Some(Bins::Numeric { above, .. }) = shifted.bins else {
            panic!("the drifted feature keeps its chart data: {shifted:?}");
        };
        assert_eq!(above, 1.0, "every live value is past the baseline's max");
    }

    /// Issue 12: drift reads the captured rows into a `LiveSample`, not a table, with the
    /// conversions the table had: a numeric feature parses text (untrimmed) and takes a
    /// boolean as 0 or 1, a categorical one takes a JSON number or boolean as its text. The
    /// report is the one of that table.
    #[test]
    fn drift_of_captured_rows_is_that_of_the_table_they_make() {
        let base = Table::from_columns([
            ("x", ColumnData::Float((0..50).map(f64::from).collect())),
            (
                "c",
                ColumnData::Str(
                    (0..50)
                        .map(|i| Some(["1", "2.5", "a"][i % 3].into()))
                        .collect(),
                ),
            ),
        ])
        .unwrap();
        let profile = mlctl_ml::profile::profile(&base);
        let features = ["x".to_string(), "c".to_string(), "age".to_string()];
        let records = [
            json!({"columns": ["c", "x"], "rows": [["a", 1.5], [1, "2.5"], [true, null], [null, " 3"], [2.5, true]]}),
            json!({"rows": [[4.0, "a", 30]]}),
        ];
        let (mut sample, rows) = live_sample(
            &records,
            Window::Last(10),
            time::OffsetDateTime::UNIX_EPOCH,
            &profile,
            &features,
        );
        assert_eq!(rows, 6);
        let table = Table::from_columns([
            (
                "x",
                ColumnData::Float(vec![1.5, 2.5, f64::NAN, f64::NAN, 1.0, 4.0]),
            ),
            (
                "c",
                ColumnData::Str(
                    [
                        Some("a"),
                        Some("1"),
                        Some("true"),
                        None,
                        Some("2.5"),
                        Some("a"),
                    ]
                    .map(|v| v.map(str::to_string))
                    .to_vec(),
                ),
            ),
        ])
        .unwrap();
        for method in [None, Some(DriftMethod::Psi), Some(DriftMethod::Ks)] {
            let config = mlctl_spec::Drift {
                method,
                threshold: None,
                share: None,
                features: BTreeMap::new(),
            };
            let expected = mlctl_ml::drift::drift_features(
                &profile,
                &table,
                &config,
                Features::Only(&["x", "c", "age"]),
            );
            // Debug, as NaN (of the feature the baseline lacks) is not equal to itself.
            assert_eq!(
                format!("{:?}", drift_sample(&profile, &mut sample, &config)),
                format!("{expected:?}"),
                "{method:?}"
            );
        }
    }

    #[test]
    fn a_window_is_a_count_or_a_duration() {
        assert_eq!(Window::parse("500"), Ok(Window::Last(500)));
        assert_eq!(
            Window::parse("1h"),
            Ok(Window::Since(Duration::from_secs(3600)))
        );
        assert!(Window::parse("0").is_err());
        assert!(Window::parse("soon").unwrap_err().contains("1h"));
    }
}
