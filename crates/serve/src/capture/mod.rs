//! Data capture: a sample of requests and responses as JSON lines, for monitoring.
//!
//! The request path only decides whether to sample (an atomic counter: exactly `percent` of
//! requests, evenly spread) and hands the already-parsed rows to a writer thread over a
//! bounded channel; when the writer falls behind, records are dropped and counted
//! (`mlctl_capture_dropped_total`), never waited for.
//!
//! Files: `<dir>/capture.jsonl` is written; past `max_bytes` it is renamed to
//! `capture-<unix millis>.jsonl` and the oldest rotated files beyond `max_files` are removed.
//! With [`CaptureConfig::per_process`], each server process writes the same files in its own
//! `<dir>/<pid>/` instead, so servers sharing a port and a capture directory never write to
//! one file; [`capture_streams`] lists every writer's files for a reader to merge.
//! One line per request:
//!
//! ```json
//! {"time":"2025-06-01T12:00:00.123Z","requestId":"5f1c9a7e-42","model":"iris","version":"3","variant":"v3","status":200,
//!  "latencyMs":0.08,"columns":["sepal_length",...],"rows":[[5.1,...]],"predictions":["setosa"]}
//! ```
//!
//! Script-mode variants have `"request"` and `"response"` (the JSON bodies as JSON, anything
//! else as a string) instead of `columns`/`rows`/`predictions`. A request that named columns
//! the model does not take lists them in `"unknownColumns"`; one the model could not answer
//! (4xx, 5xx) is captured too, with `"error"` (its message) instead of rows, so a monitor
//! judges error rates and latency over every request the sample took.

use crate::json::{push_number, push_string};
use crate::predictor::DynPredictor;
use crate::schema::{Column, ColumnKind, Output};
use axum::http::HeaderValue;
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

/// Where and how much to capture.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptureConfig {
    /// Directory of the capture files.
    pub dir: PathBuf,
    /// Share of requests captured, 0..=100.
    pub percent: f64,
    /// Rotate the file past this size.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (per process with `per_process`).
    #[serde(default = "default_max_files")]
    pub max_files: usize,
    /// Write into `dir/<pid>/` rather than `dir` itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_process: bool,
}

fn default_max_bytes() -> u64 {
    64 << 20
}
fn default_max_files() -> usize {
    8
}

impl CaptureConfig {
    /// Capture `percent` of requests into `dir` with the default rotation.
    pub fn new(dir: impl Into<PathBuf>, percent: f64) -> Self {
        CaptureConfig {
            dir: dir.into(),
            percent,
            max_bytes: default_max_bytes(),
            max_files: default_max_files(),
            per_process: false,
        }
    }

    /// The directory this process writes in.
    pub fn own_dir(&self) -> PathBuf {
        if self.per_process {
            self.dir.join(std::process::id().to_string())
        } else {
            self.dir.clone()
        }
    }
}

/// Who served a captured request.
#[derive(Clone)]
pub struct Source {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Variant name.
    pub variant: String,
    /// The model, to name columns, categories and classes (`None` for script mode).
    pub predictor: Option<DynPredictor>,
}

/// What was exchanged.
pub enum Payload {
    /// Parsed rows (raw layout) and the predictions.
    Rows {
        /// Raw rows.
        raw: Vec<f64>,
        /// Predictions (class indices or numbers).
        predictions: Vec<f64>,
        /// Columns the request named that the model does not take (it ignored them).
        unknown_columns: Vec<String>,
    },
    /// A request the model could not answer (a 4xx or 5xx), with the message it got.
    Failed {
        /// The error message answered.
        message: String,
    },
    /// Bodies passed through to a script-mode server.
    Raw {
        /// Request body.
        request: Bytes,
        /// Response body.
        response: Bytes,
    },
}

/// One captured exchange.
pub struct Record {
    /// When it was answered.
    pub time: SystemTime,
    /// The request's id (its `x-request-id`, sent back in the response), which joins
    /// ground truth to the prediction later (`mlctl monitor feedback`).
    pub request_id: HeaderValue,
    /// Who answered.
    pub source: Arc<Source>,
    /// HTTP status.
    pub status: u16,
    /// Time taken.
    pub latency: Duration,
    /// Bodies.
    pub payload: Payload,
}

/// The sampling front of the capture writer.
pub struct Capture {
    shared: Arc<Queue>,
    seen: AtomicU64,
    /// Percent in hundredths (10000 = all).
    per10k: u64,
    dropped: Arc<AtomicU64>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Records waiting for the writer. The writer takes the whole batch every [`BATCH_EVERY`], so
/// a request never wakes a thread (a wake-up per request costs more than the record).
struct Queue {
    records: Mutex<Vec<Record>>,
    closed: AtomicBool,
}

/// How often the writer takes the queued records.
const BATCH_EVERY: Duration = Duration::from_millis(20);
/// Records queued at most; more are dropped (and counted) until the writer catches up.
const MAX_QUEUED: usize = 1 << 16;

impl Capture {
    /// Starts the writer thread. `dropped` counts records lost to back-pressure.
    pub fn start(config: &CaptureConfig, dropped: Arc<AtomicU64>) -> std::io::Result<Capture> {
        let config = &CaptureConfig {
            dir: config.own_dir(),
            per_process: false,
            ..config.clone()
        };
        fs::create_dir_all(&config.dir)?;
        let shared = Arc::new(Queue {
            records: Mutex::new(Vec::with_capacity(1024)),
            closed: AtomicBool::new(false),
        });
        let writer = Writer::open(config.clone())?;
        let queue = shared.clone();
        let handle = std::thread::Builder::new()
            .name("mlctl-capture".into())
            .spawn(move || writer.run(&queue))?;
        let per10k = (config.percent.clamp(0.0, 100.0) * 100.0).round() as u64;
        Ok(Capture {
            shared,
            seen: AtomicU64::new(0),
            per10k,
            dropped,
            writer: Some(handle),
        })
    }

    /// Whether to capture this request (exactly `percent` of calls, evenly spread).
    #[inline]
    pub fn sample(&self) -> bool {
        if self.per10k == 0 {
            return false;
        }
        if self.per10k >= 10_000 {
            return true;
        }
        let n = self.seen.fetch_add(1, Relaxed);
        (n + 1) * self.per10k / 10_000 != n * self.per10k / 10_000
    }

    /// Queues a record for the writer, or drops it when the writer is behind.
    #[inline]
    pub fn send(&self, record: Record) {
        let mut q = self
            .shared
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if q.len() < MAX_QUEUED {
            q.push(record);
        } else {
            drop(q);
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // The writer writes what is queued, then exits.
        self.shared.closed.store(true, Relaxed);
        // Wait for it, so a server that stops loses nothing it had answered.
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

struct Writer {
    config: CaptureConfig,
    out: BufWriter<File>,
    size: u64,
    line: String,
    clock: Clock,
}

/// RFC 3339 times, formatting the date part once per second.
#[derive(Default)]
struct Clock {
    second: u64,
    prefix: String,
}

impl Clock {
    fn push(&mut self, o: &mut String, t: SystemTime) {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if self.prefix.is_empty() || d.as_secs() != self.second {
            self.second = d.as_secs();
            let dt = time::OffsetDateTime::from_unix_timestamp(d.as_secs() as i64)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            self.prefix = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                dt.year(),
                dt.month() as u8,
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            );
        }
        o.push_str(&self.prefix);
        let _ = std::fmt::Write::write_fmt(o, format_args!(".{:06}Z", d.subsec_micros()));
    }
}

const CURRENT: &str = "capture.jsonl";

impl Writer {
    fn open(config: CaptureConfig) -> std::io::Result<Writer> {
        let path = config.dir.join(CURRENT);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            config,
            out: BufWriter::with_capacity(64 << 10, file),
            size,
            line: String::with_capacity(1024),
            clock: Clock::default(),
        })
    }

    fn run(mut self, queue: &Queue) {
        // Linux nice values are per thread: below the request threads, so a burst of
        // formatting never delays an answer (when it falls behind, records are dropped).
        let _ = rustix::process::setpriority_process(None, 10);
        let mut batch = Vec::with_capacity(1024);
        loop {
            let closed = queue.closed.load(Relaxed);
            std::mem::swap(
                &mut batch,
                &mut *queue.records.lock().unwrap_or_else(|e| e.into_inner()),
            );
            for rec in batch.drain(..) {
                self.write(&rec);
            }
            // Visible to readers within a batch period.
            let _ = self.out.flush();
            if closed {
                break;
            }
            std::thread::sleep(BATCH_EVERY);
        }
    }

    fn write(&mut self, rec: &Record) {
        self.line.clear();
        format_record(&mut self.line, &rec.view(), &mut self.clock);
        self.line.push('\n');
        if self.size > 0
            && self.size + self.line.len() as u64 > self.config.max_bytes
            && let Err(e) = self.rotate()
        {
            tracing::warn!("capture: cannot rotate {}: {e}", self.config.dir.display());
        }
        if self.out.write_all(self.line.as_bytes()).is_ok() {
            self.size += self.line.len() as u64;
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut to = self.config.dir.join(format!("capture-{millis:015}.jsonl"));
        let mut n = 0;
        while to.exists() {
            n += 1;
            to = self
                .config
                .dir
                .join(format!("capture-{millis:015}-{n}.jsonl"));
        }
        fs::rename(self.config.dir.join(CURRENT), &to)?;
        let rotated = rotated_files(&self.config.dir)?;
        let excess = rotated.len().saturating_sub(self.config.max_files);
        for old in &rotated[..excess] {
            let _ = fs::remove_file(old);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.config.dir.join(CURRENT))?;
        self.out = BufWriter::with_capacity(64 << 10, file);
        self.size = 0;
        Ok(())
    }
}

fn rotated_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("capture-") && n.ends_with(".jsonl"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The files of one writer in `dir`, oldest first (rotated ones, then the current one).
fn stream_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = rotated_files(dir).unwrap_or_default();
    let current = dir.join(CURRENT);
    if current.exists() {
        v.push(current);
    }
    v
}

/// Every writer's files under a capture directory: the files in `dir` itself (a server
/// without `per_process`), then each `dir/<pid>/`; each list oldest first, empty ones left
/// out. Records of different writers interleave in time: merge them by their `time`.
pub fn capture_streams(dir: &Path) -> Vec<Vec<PathBuf>> {
    let mut out = vec![stream_files(dir)];
    let mut subdirs: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    subdirs.sort();
    out.extend(subdirs.iter().map(|d| stream_files(d)));
    out.retain(|files| !files.is_empty());
    out
}

/// Every capture file under `dir`, writer by writer ([`capture_streams`]), each writer's
/// oldest first.
pub fn capture_files(dir: &Path) -> Vec<PathBuf> {
    capture_streams(dir).into_iter().flatten().collect()
}

/// A record as the formatter reads it: borrowed, so a record decoded from a columnar capture
/// file is written as the same JSON line as the record the server queued.
pub(crate) struct View<'a> {
    pub time: SystemTime,
    pub request_id: &'a str,
    pub model: &'a str,
    pub version: &'a str,
    pub variant: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub payload: ViewPayload<'a>,
}

/// What a [`View`] exchanged.
pub(crate) enum ViewPayload<'a> {
    Rows {
        columns: &'a [Column],
        output: &'a Output,
        /// Row-major.
        raw: &'a [f64],
        predictions: &'a [f64],
        unknown_columns: &'a [String],
    },
    Failed {
        message: &'a str,
    },
    Raw {
        request: &'a [u8],
        response: &'a [u8],
    },
    /// Rows without a model to name them (nothing beyond the common fields is written).
    Unnamed,
}

impl Record {
    pub(crate) fn view(&self) -> View<'_> {
        let payload = match (&self.payload, &self.source.predictor) {
            (
                Payload::Rows {
                    raw,
                    predictions,
                    unknown_columns,
                },
                Some(p),
            ) => ViewPayload::Rows {
                columns: p.schema().columns(),
                output: p.output(),
                raw,
                predictions,
                unknown_columns,
            },
            (Payload::Rows { .. }, None) => ViewPayload::Unnamed,
            (Payload::Failed { message }, _) => ViewPayload::Failed { message },
            (Payload::Raw { request, response }, _) => ViewPayload::Raw { request, response },
        };
        View {
            time: self.time,
            request_id: self.request_id.to_str().unwrap_or_default(),
            model: &self.source.model,
            version: &self.source.version,
            variant: &self.source.variant,
            status: self.status,
            latency: self.latency,
            payload,
        }
    }
}

fn format_record(o: &mut String, r: &View<'_>, clock: &mut Clock) {
    o.push_str("{\"time\":\"");
    clock.push(o, r.time);
    o.push('"');
    o.push_str(",\"requestId\":");
    push_string(o, r.request_id);
    o.push_str(",\"model\":");
    push_string(o, r.model);
    o.push_str(",\"version\":");
    push_string(o, r.version);
    o.push_str(",\"variant\":");
    push_string(o, r.variant);
    o.push_str(",\"status\":");
    push_number(o, r.status as f64);
    o.push_str(",\"latencyMs\":");
    push_number(o, (r.latency.as_nanos() as f64 / 1e6 * 1e4).round() / 1e4);
    match &r.payload {
        ViewPayload::Rows {
            columns: cols,
            output,
            raw,
            predictions,
            unknown_columns,
        } => {
            o.push_str(",\"columns\":[");
            for (j, c) in cols.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                push_string(o, &c.name);
            }
            o.push_str("],\"rows\":[");
            for (i, row) in raw.chunks(cols.len().max(1)).enumerate() {
                if i > 0 {
                    o.push(',');
                }
                o.push('[');
                for (j, (x, c)) in row.iter().zip(cols.iter()).enumerate() {
                    if j > 0 {
                        o.push(',');
                    }
                    match &c.kind {
                        ColumnKind::Category(cats) if x.is_finite() => {
                            push_string(o, cats.get(*x as usize).map_or("", |s| s.as_str()))
                        }
                        _ => push_number(o, *x),
                    }
                }
                o.push(']');
            }
            o.push_str("],\"predictions\":[");
            for (i, y) in predictions.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                match output {
                    Output::Classes(labels) => {
                        push_string(o, labels.get(*y as usize).map_or("", |s| s.as_str()))
                    }
                    Output::Number => push_number(o, *y),
                }
            }
            o.push(']');
            if !unknown_columns.is_empty() {
                o.push_str(",\"unknownColumns\":[");
                for (i, c) in unknown_columns.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    push_string(o, c);
                }
                o.push(']');
            }
        }
        ViewPayload::Failed { message } => {
            o.push_str(",\"error\":");
            push_string(o, message);
        }
        ViewPayload::Raw { request, response } => {
            o.push_str(",\"request\":");
            push_body(o, request);
            o.push_str(",\"response\":");
            push_body(o, response);
        }
        ViewPayload::Unnamed => {}
    }
    o.push('}');
}

/// A body as JSON when it is JSON, else as a string.
fn push_body(o: &mut String, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(s) if serde_json::from_str::<&serde_json::value::RawValue>(s).is_ok() => {
            // Compact: capture lines must stay one line.
            match serde_json::from_str::<serde_json::Value>(s) {
                Ok(v) => o.push_str(&v.to_string()),
                Err(_) => push_string(o, s),
            }
        }
        Ok(s) => push_string(o, s),
        Err(_) => push_string(o, &String::from_utf8_lossy(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_exact_and_spread() {
        let c = Capture {
            shared: Arc::new(Queue {
                records: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
            seen: AtomicU64::new(0),
            per10k: 2500,
            dropped: Arc::default(),
            writer: None,
        };
        let picks: Vec<bool> = (0..8).map(|_| c.sample()).collect();
        assert_eq!(
            picks,
            [false, false, false, true, false, false, false, true]
        );
    }

    #[test]
    fn per_process_capture_writes_in_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CaptureConfig {
            per_process: true,
            ..CaptureConfig::new(dir.path(), 100.0)
        };
        let own = dir.path().join(std::process::id().to_string());
        assert_eq!(cfg.own_dir(), own);
        let cap = Capture::start(&cfg, Arc::default()).unwrap();
        cap.send(Record {
            time: SystemTime::now(),
            request_id: HeaderValue::from_static("r-1"),
            source: Arc::new(Source {
                model: "m".into(),
                version: "1".into(),
                variant: "v".into(),
                predictor: None,
            }),
            status: 200,
            latency: Duration::from_micros(1),
            payload: Payload::Raw {
                request: Bytes::from_static(b"{}"),
                response: Bytes::from_static(b"{}"),
            },
        });
        // Dropping it writes what is queued.
        drop(cap);
        assert!(!dir.path().join(CURRENT).exists());
        assert_eq!(capture_streams(dir.path()), vec![vec![own.join(CURRENT)]]);
        assert_eq!(capture_files(dir.path()), vec![own.join(CURRENT)]);
    }

    #[test]
    fn rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = CaptureConfig::new(dir.path(), 100.0);
        cfg.max_bytes = 300;
        cfg.max_files = 2;
        let dropped = Arc::new(AtomicU64::new(0));
        let cap = Capture::start(&cfg, dropped.clone()).unwrap();
        let source = Arc::new(Source {
            model: "m".into(),
            version: "1".into(),
            variant: "v".into(),
            predictor: None,
        });
        for i in 0..20 {
            cap.send(Record {
                time: SystemTime::now(),
                request_id: HeaderValue::from_static("r-1"),
                source: source.clone(),
                status: 200,
                latency: Duration::from_micros(i),
                payload: Payload::Raw {
                    request: Bytes::from_static(b"{\"a\": [1, 2]}"),
                    response: Bytes::from_static(b"plain text"),
                },
            });
        }
        drop(cap);
        // The writer drains and exits once the sender is gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let files = capture_files(dir.path());
            let lines: usize = files
                .iter()
                .map(|f| fs::read_to_string(f).unwrap().lines().count())
                .sum();
            if files.len() == 3
                && lines > 0
                && fs::read_to_string(files.last().unwrap())
                    .unwrap()
                    .lines()
                    .count()
                    > 0
            {
                let last = fs::read_to_string(files.last().unwrap()).unwrap();
                let v: serde_json::Value =
                    serde_json::from_str(last.lines().next().unwrap()).unwrap();
                assert_eq!(v["request"], serde_json::json!({"a": [1, 2]}));
                assert_eq!(v["response"], "plain text");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "files: {files:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(dropped.load(Relaxed), 0);
    }
}
