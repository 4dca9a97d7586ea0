//! Data capture: a sample of requests and responses, for monitoring.
//!
//! The request path only decides whether to sample (an atomic counter: exactly `percent` of
//! requests, evenly spread) and hands the already-parsed rows to a writer thread over a
//! bounded channel; when the writer falls behind, records are dropped and counted
//! (`mlctl_capture_dropped_total`), never waited for.
//!
//! Two formats ([`CaptureFormat`]): the columnar [`mlcap`] (the default: the writer copies the
//! numbers the server already holds, it does not format them) and JSON lines (what people
//! read; `mlctl capture export` turns mlcap files into the same lines).
//!
//! Files: `<dir>/capture.mlcap` (or `capture.jsonl`) is written; past `max_bytes` it is
//! renamed to `capture-<unix millis>.mlcap` and the oldest rotated files beyond `max_files`
//! are removed.
//! With [`CaptureConfig::per_process`], each server process writes the same files in its own
//! `<dir>/<pid>/` instead, so servers sharing a port and a capture directory never write to
//! one file; [`capture_streams`] lists every writer's files for a reader to merge.
//! One JSON line per request (in mlcap, the same fields, column by column):
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

pub mod mdc;
pub mod mlcap;

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
    /// The file format.
    #[serde(default)]
    pub format: CaptureFormat,
    /// Send the records to Azure ML's data collector instead of writing files (`dir`,
    /// `percent` and the rotation are then unused: the collector's sampling decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdc: Option<mdc::MdcConfig>,
}

/// How captured records are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    /// Columnar blocks ([`mlcap`]): what costs the server least, and what drift reads fastest.
    #[default]
    Mlcap,
    /// One JSON object per line.
    Jsonl,
}

impl CaptureFormat {
    fn extension(self) -> &'static str {
        match self {
            CaptureFormat::Mlcap => "mlcap",
            CaptureFormat::Jsonl => "jsonl",
        }
    }

    /// The file a writer of this format appends to.
    pub fn current_file(self) -> &'static str {
        match self {
            CaptureFormat::Mlcap => "capture.mlcap",
            CaptureFormat::Jsonl => "capture.jsonl",
        }
    }
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
            format: CaptureFormat::default(),
            mdc: None,
        }
    }

    /// Capture through Azure ML's data collector (its sampling rate, no files).
    pub fn to_data_collector(config: mdc::MdcConfig) -> Self {
        CaptureConfig {
            percent: config.percent,
            mdc: Some(config),
            ..CaptureConfig::new(PathBuf::new(), 100.0)
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
    /// A request the model answered: its body as it arrived, the parsed rows (raw layout)
    /// and the predictions. The mlcap writer keeps the body (it holds the values in fewer
    /// bytes than the parsed numbers, and costs a reference count); the JSON-lines writer
    /// formats the parsed rows, which the server leaves empty for an mlcap writer.
    Rows {
        /// The request body.
        body: Bytes,
        /// Its format.
        format: crate::parse::Format,
        /// Rows in it.
        rows: usize,
        /// Raw rows (empty when the writer does not need them: [`Capture::wants_values`]).
        raw: Vec<f64>,
        /// Predictions (class indices or numbers).
        predictions: Predictions,
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

/// Predictions kept for the writer, as little-endian `f64`s ([`keep`]).
#[derive(Clone, Default)]
pub struct Predictions(Bytes);

impl Predictions {
    /// Copies `values` into this thread's capture arena.
    pub fn keep(values: &[f64]) -> Predictions {
        Predictions(keep_with(values.len() * 8, |b| {
            for v in values {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    /// None.
    pub fn is_empty(&self) -> bool {
        self.0.len() < 8
    }

    pub(crate) fn view(&self) -> PredictionsView<'_> {
        PredictionsView::Le(&self.0)
    }
}

impl From<&[f64]> for Predictions {
    fn from(values: &[f64]) -> Self {
        Predictions::keep(values)
    }
}

impl From<Vec<f64>> for Predictions {
    fn from(values: Vec<f64>) -> Self {
        Predictions::keep(&values)
    }
}

/// Predictions as the formatter reads them: the server's (bytes) or a decoded file's.
#[derive(Clone, Copy)]
pub(crate) enum PredictionsView<'a> {
    /// Little-endian `f64`s.
    Le(&'a [u8]),
    /// Values.
    Values(&'a [f64]),
}

impl PredictionsView<'_> {
    pub(crate) fn len(self) -> usize {
        match self {
            PredictionsView::Le(b) => b.len() / 8,
            PredictionsView::Values(v) => v.len(),
        }
    }

    /// Prediction `i` (NaN past the end).
    pub(crate) fn get(self, i: usize) -> f64 {
        match self {
            PredictionsView::Le(b) => b
                .get(i * 8..i * 8 + 8)
                .and_then(|c| <[u8; 8]>::try_from(c).ok())
                .map_or(f64::NAN, f64::from_le_bytes),
            PredictionsView::Values(v) => v.get(i).copied().unwrap_or(f64::NAN),
        }
    }
}

/// Bytes a captured record keeps are copied into a per-thread arena of [`ARENA_CHUNK`]s,
/// not held where they came from: a body held by reference keeps hyper's read buffer from
/// being reused (so every next request allocated a new one), and a value allocated per
/// record is freed by the writer thread, a cross-thread free. A chunk goes back to the
/// allocator once the writer has dropped every record cut from it.
const ARENA_CHUNK: usize = 64 << 10;

thread_local! {
    static ARENA: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::new());
}

/// `len` bytes written by `fill` into this thread's arena, as their own [`Bytes`].
pub fn keep_with(len: usize, fill: impl FnOnce(&mut bytes::BytesMut)) -> Bytes {
    ARENA.with_borrow_mut(|a| {
        if a.capacity() < len {
            *a = bytes::BytesMut::with_capacity(ARENA_CHUNK.max(len));
        }
        fill(a);
        a.split().freeze()
    })
}

/// A copy of `bytes` in this thread's arena ([`keep_with`]).
pub fn keep(bytes: &[u8]) -> Bytes {
    keep_with(bytes.len(), |b| b.extend_from_slice(bytes))
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
    format: CaptureFormat,
}

/// Records waiting for the writer. The writer takes the whole batch every [`BATCH_EVERY`], so
/// a request never wakes a thread (a wake-up per request costs more than the record). Each
/// request thread queues in its own shard ([`SHARDS`], by thread), so two threads answering
/// at once do not wait for one lock.
struct Queue {
    shards: Box<[Mutex<Vec<Record>>]>,
    closed: AtomicBool,
}

/// Queue shards: more than the request threads of a server on most machines.
const SHARDS: usize = 8;

impl Queue {
    fn new() -> Queue {
        Queue {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Vec::with_capacity(256)))
                .collect(),
            closed: AtomicBool::new(false),
        }
    }

    /// This thread's shard.
    fn shard(&self) -> &Mutex<Vec<Record>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Relaxed) as usize;
        }
        &self.shards[SHARD.with(|s| *s) % self.shards.len()]
    }

    /// Moves every queued record into `batch`, in the order they were answered.
    fn take(&self, batch: &mut Vec<Record>) {
        let mut from = 0;
        for shard in &self.shards {
            let mut q = shard.lock().unwrap_or_else(|e| e.into_inner());
            if !q.is_empty() {
                from += 1;
                batch.append(&mut q);
            }
        }
        if from > 1 {
            // Each shard is in order already: a stable sort merges them.
            batch.sort_by_key(|r| r.time);
        }
    }
}

/// How often the writer takes the queued records.
const BATCH_EVERY: Duration = Duration::from_millis(20);
/// Records queued at most per shard (a request thread's queue: as many as one queue held
/// before there were shards); more are dropped (and counted) until the writer catches up.
const MAX_QUEUED: usize = 1 << 16;

impl Capture {
    /// Starts the writer thread. `dropped` counts records lost to back-pressure.
    pub fn start(config: &CaptureConfig, dropped: Arc<AtomicU64>) -> std::io::Result<Capture> {
        let per10k = (config.percent.clamp(0.0, 100.0) * 100.0).round() as u64;
        let shared = Arc::new(Queue::new());
        let queue = shared.clone();
        let thread = std::thread::Builder::new().name("mlctl-capture".into());
        let (handle, format) = match &config.mdc {
            Some(m) => {
                let (m, lost) = (m.clone(), dropped.clone());
                let handle = thread.spawn(move || mdc::run(m, &queue, lost))?;
                // The collector's payloads are the parsed rows, as JSON lines have them.
                (handle, CaptureFormat::Jsonl)
            }
            None => {
                let config = CaptureConfig {
                    dir: config.own_dir(),
                    per_process: false,
                    ..config.clone()
                };
                fs::create_dir_all(&config.dir)?;
                let format = config.format;
                let writer = Writer::open(config)?;
                (thread.spawn(move || writer.run(&queue))?, format)
            }
        };
        Ok(Capture {
            shared,
            seen: AtomicU64::new(0),
            per10k,
            dropped,
            writer: Some(handle),
            format,
        })
    }

    /// Whether the writer needs each record's parsed values ([`Payload::Rows`] `raw`): the
    /// JSON-lines writer formats them; the mlcap writer keeps the body instead.
    #[inline]
    pub fn wants_values(&self) -> bool {
        self.format == CaptureFormat::Jsonl
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
            .shard()
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
    block: Vec<u8>,
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

/// Opens the file a writer appends to: an mlcap file gets its magic when new, and loses a
/// torn last block (a crash in the middle of a write) so what is appended is read.
fn open_current(config: &CaptureConfig) -> std::io::Result<(File, u64)> {
    let path = config.dir.join(config.format.current_file());
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)?;
    let mut size = file.metadata()?.len();
    if config.format == CaptureFormat::Mlcap {
        let complete = mlcap::complete_length(&mut file)?;
        if complete == 0 && size > 0 {
            // Not an mlcap file (or its magic was torn): keep it aside, start afresh.
            drop(file);
            fs::rename(&path, path.with_extension("mlcap.unreadable"))?;
            return open_current(config);
        }
        if complete < size {
            file.set_len(complete)?;
            size = complete;
        }
        if size == 0 {
            file.write_all(mlcap::MAGIC)?;
            size = mlcap::MAGIC.len() as u64;
        }
    }
    Ok((file, size))
}

impl Writer {
    fn open(config: CaptureConfig) -> std::io::Result<Writer> {
        let (file, size) = open_current(&config)?;
        Ok(Writer {
            config,
            out: BufWriter::with_capacity(64 << 10, file),
            size,
            line: String::with_capacity(1024),
            block: Vec::with_capacity(64 << 10),
            clock: Clock::default(),
        })
    }

    fn run(mut self, queue: &Queue) {
        // Linux nice values are per thread: below the request threads, so a burst of
        // writing never delays an answer (when it falls behind, records are dropped).
        let _ = rustix::process::setpriority_process(None, 10);
        let mut batch = Vec::with_capacity(1024);
        loop {
            let closed = queue.closed.load(Relaxed);
            queue.take(&mut batch);
            match self.config.format {
                CaptureFormat::Jsonl => {
                    for rec in &batch {
                        self.line.clear();
                        format_record(&mut self.line, &rec.view(), &mut self.clock);
                        self.line.push('\n');
                        let line = std::mem::take(&mut self.line);
                        self.append(line.as_bytes());
                        self.line = line;
                    }
                }
                CaptureFormat::Mlcap => {
                    for chunk in batch.chunks(mlcap::MAX_BLOCK_RECORDS) {
                        let mut block = std::mem::take(&mut self.block);
                        block.clear();
                        mlcap::encode_block(chunk, &mut block);
                        self.append(&block);
                        // Written whole: a reader never meets half a block it must wait for
                        // longer than this write.
                        let _ = self.out.flush();
                        self.block = block;
                    }
                }
            }
            batch.clear();
            // Visible to readers within a batch period.
            let _ = self.out.flush();
            if closed {
                break;
            }
            std::thread::sleep(BATCH_EVERY);
        }
    }

    /// Appends one line or block, rotating first when it would pass `max_bytes`.
    fn append(&mut self, bytes: &[u8]) {
        let header = match self.config.format {
            CaptureFormat::Mlcap => mlcap::MAGIC.len() as u64,
            CaptureFormat::Jsonl => 0,
        };
        if self.size > header
            && self.size + bytes.len() as u64 > self.config.max_bytes
            && let Err(e) = self.rotate()
        {
            tracing::warn!("capture: cannot rotate {}: {e}", self.config.dir.display());
        }
        if self.out.write_all(bytes).is_ok() {
            self.size += bytes.len() as u64;
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let ext = self.config.format.extension();
        let mut to = self.config.dir.join(format!("capture-{millis:015}.{ext}"));
        let mut n = 0;
        while to.exists() {
            n += 1;
            to = self
                .config
                .dir
                .join(format!("capture-{millis:015}-{n}.{ext}"));
        }
        fs::rename(self.config.dir.join(self.config.format.current_file()), &to)?;
        let rotated = rotated_files(&self.config.dir)?;
        let excess = rotated.len().saturating_sub(self.config.max_files);
        for old in &rotated[..excess] {
            let _ = fs::remove_file(old);
        }
        let (file, size) = open_current(&self.config)?;
        self.out = BufWriter::with_capacity(64 << 10, file);
        self.size = size;
        Ok(())
    }
}

fn rotated_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("capture-") && (n.ends_with(".jsonl") || n.ends_with(".mlcap"))
            })
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The files of one writer in `dir`, oldest first (rotated ones, then the current one).
fn stream_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = rotated_files(dir).unwrap_or_default();
    for format in [CaptureFormat::Jsonl, CaptureFormat::Mlcap] {
        let current = dir.join(format.current_file());
        if current.exists() {
            v.push(current);
        }
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

/// Calls `line` with each record of one capture file as its JSON line (no newline), in file
/// order: a JSON-lines file's lines as they are, an mlcap file's records formatted as the
/// JSON-lines writer formats them. Returns the records an mlcap file could not give (corrupt
/// blocks are skipped, a block being written is left for the next read).
///
/// # Errors
/// The file cannot be read, or is neither format.
pub fn for_each_line(path: &Path, mut line: impl FnMut(&str)) -> std::io::Result<ReadStats> {
    let bytes = fs::read(path)?;
    let mut stats = ReadStats::default();
    if is_mlcap(path, &bytes) {
        let mut clock = Clock::default();
        let mut text = String::with_capacity(1024);
        let (corrupt, _) = mlcap::for_each_block(&bytes, |block| {
            for r in block {
                text.clear();
                format_record(&mut text, &r.view(), &mut clock);
                line(&text);
                stats.records += 1;
            }
        })
        .map_err(|e| not_mlcap(path, e))?;
        stats.corrupt_blocks = corrupt;
    } else {
        for l in String::from_utf8_lossy(&bytes).lines() {
            if !l.trim().is_empty() {
                line(l);
                stats.records += 1;
            }
        }
    }
    Ok(stats)
}

fn is_mlcap(path: &Path, bytes: &[u8]) -> bool {
    bytes.starts_with(mlcap::MAGIC) || path.extension().is_some_and(|e| e == "mlcap")
}

fn not_mlcap(path: &Path, e: mlcap::NotMlcap) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

/// Calls `each` with the newest `limit` records under a capture directory (every writer's
/// files, [`capture_streams`]), as JSON objects, one at a time and writer by writer (not
/// merged by time): a window of a million records is never held, only when each record was
/// answered (8 bytes a record, read first to find which records are the newest). Records
/// that tie at the oldest kept time are taken last-written first, as a merge by time would
/// keep them. Lines that are not JSON (a torn last line while a server writes) are left
/// out; a file rotated away between the two reads is missed. Returns the records given.
///
/// # Errors
/// A file cannot be read (other than gone), or is neither format.
pub fn for_each_newest(
    dir: &Path,
    limit: usize,
    mut each: impl FnMut(serde_json::Value),
) -> std::io::Result<u64> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut times: Vec<i64> = Vec::new();
    for file in capture_files(dir) {
        match for_each_time(&file, |t| times.push(t.unwrap_or(i64::MIN))) {
            Err(e) if !gone(&e) => return Err(e),
            _ => {}
        }
    }
    if limit == 0 {
        return Ok(0);
    }
    // Every record newer than `cutoff` is kept, and the last `tied` of those at `cutoff`.
    let (cutoff, mut skip) = if times.len() <= limit {
        (i64::MIN, 0)
    } else {
        let k = times.len() - limit;
        let cutoff = *times.select_nth_unstable(k).1;
        let newer = times.iter().filter(|&&t| t > cutoff).count();
        let tied = times.iter().filter(|&&t| t == cutoff).count();
        (cutoff, tied - (limit - newer))
    };
    drop(times);
    let mut given = 0u64;
    for file in capture_files(dir) {
        let keep = |at: Option<i64>| {
            let at = at.unwrap_or(i64::MIN);
            if at < cutoff {
                return false;
            }
            if at == cutoff && skip > 0 {
                skip -= 1;
                return false;
            }
            true
        };
        let read = for_each_kept(&file, keep, |v| {
            each(v);
            given += 1;
        });
        match read {
            Err(e) if !gone(&e) => return Err(e),
            _ => {}
        }
    }
    Ok(given)
}

/// The records of one file that `keep` (given when each was answered, [`for_each_time`])
/// keeps, each as the JSON object [`for_each_line`] would give: an mlcap record built as a
/// value directly ([`record_value`]: no text formatted and parsed again), a JSON line parsed.
fn for_each_kept(
    path: &Path,
    mut keep: impl FnMut(Option<i64>) -> bool,
    mut each: impl FnMut(serde_json::Value),
) -> std::io::Result<()> {
    let bytes = fs::read(path)?;
    if is_mlcap(path, &bytes) {
        let mut clock = Clock::default();
        mlcap::for_each_block(&bytes, |block| {
            for r in block {
                if keep(Some(micros_of(r.time))) {
                    each(record_value(&r.view(), &mut clock));
                }
            }
        })
        .map_err(|e| not_mlcap(path, e))?;
    } else {
        for l in String::from_utf8_lossy(&bytes).lines() {
            if let Some(at) = line_time(l)
                && keep(at)
                && let Ok(v) = serde_json::from_str(l)
            {
                each(v);
            }
        }
    }
    Ok(())
}

/// A number as [`push_number`] writes it and a JSON reader reads it back: `null` when not
/// finite, an integer when whole (below 1e15), else the float.
fn number_value(x: f64) -> serde_json::Value {
    if !x.is_finite() {
        serde_json::Value::Null
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        let i = x as i64;
        if i >= 0 {
            serde_json::Value::from(i as u64)
        } else {
            serde_json::Value::from(i)
        }
    } else {
        serde_json::Value::from(x)
    }
}

/// A body as [`push_body`] writes it, read back: its JSON when it is JSON, else a string.
fn body_value(body: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(body) {
        Ok(s) => serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.into())),
        Err(_) => serde_json::Value::String(String::from_utf8_lossy(body).into_owned()),
    }
}

/// The JSON object of a record, equal to its line ([`format_record`]) parsed.
fn record_value(r: &View<'_>, clock: &mut Clock) -> serde_json::Value {
    use serde_json::Value;
    let mut time = String::with_capacity(32);
    clock.push(&mut time, r.time);
    let mut o = serde_json::Map::new();
    o.insert("time".into(), Value::String(time));
    o.insert("requestId".into(), Value::from(r.request_id));
    o.insert("model".into(), Value::from(r.model));
    o.insert("version".into(), Value::from(r.version));
    o.insert("variant".into(), Value::from(r.variant));
    o.insert("status".into(), number_value(f64::from(r.status)));
    o.insert(
        "latencyMs".into(),
        number_value((r.latency.as_nanos() as f64 / 1e6 * 1e4).round() / 1e4),
    );
    match &r.payload {
        ViewPayload::Rows {
            columns: cols,
            output,
            raw,
            predictions,
            unknown_columns,
        } => {
            o.insert(
                "columns".into(),
                Value::Array(cols.iter().map(|c| Value::from(c.name.as_str())).collect()),
            );
            let rows = raw
                .chunks(cols.len().max(1))
                .map(|row| {
                    Value::Array(
                        row.iter()
                            .zip(cols.iter())
                            .map(|(x, c)| match &c.kind {
                                ColumnKind::Category(cats) if x.is_finite() => {
                                    Value::from(cats.get(*x as usize).map_or("", |s| s.as_str()))
                                }
                                _ => number_value(*x),
                            })
                            .collect(),
                    )
                })
                .collect();
            o.insert("rows".into(), Value::Array(rows));
            let predictions = (0..predictions.len())
                .map(|i| predictions.get(i))
                .map(|y| match output {
                    Output::Classes(labels) => {
                        Value::from(labels.get(y as usize).map_or("", |s| s.as_str()))
                    }
                    Output::Number => number_value(y),
                })
                .collect();
            o.insert("predictions".into(), Value::Array(predictions));
            if !unknown_columns.is_empty() {
                o.insert(
                    "unknownColumns".into(),
                    Value::Array(
                        unknown_columns
                            .iter()
                            .map(|c| Value::from(c.as_str()))
                            .collect(),
                    ),
                );
            }
        }
        ViewPayload::Failed { message } => {
            o.insert("error".into(), Value::from(*message));
        }
        ViewPayload::Raw { request, response } => {
            o.insert("request".into(), body_value(request));
            o.insert("response".into(), body_value(response));
        }
        ViewPayload::Unnamed => {}
    }
    Value::Object(o)
}

fn micros_of(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The `time` of a JSON line, in microseconds since the Unix epoch (`Some(None)` when it has
/// no readable one); `None` when the line is not a JSON object (a torn last line), which
/// readers leave out.
fn line_time(l: &str) -> Option<Option<i64>> {
    #[derive(serde::Deserialize)]
    struct Timed<'a> {
        #[serde(borrow, default)]
        time: Option<&'a serde_json::value::RawValue>,
    }
    let timed = serde_json::from_str::<Timed>(l).ok()?;
    let at = timed
        .time
        .and_then(|t| serde_json::from_str::<std::borrow::Cow<str>>(t.get()).ok())
        .and_then(|t| {
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX));
    Some(at)
}

/// Calls `time` with when each record of one capture file was answered (microseconds since
/// the Unix epoch; `None` for a JSON line without a readable `time`; a line that is not
/// JSON is not a record), in file order, without formatting them: what a reader scans first to find
/// which records a window of the newest N keeps.
///
/// # Errors
/// As [`for_each_line`].
pub fn for_each_time(path: &Path, mut time: impl FnMut(Option<i64>)) -> std::io::Result<usize> {
    let bytes = fs::read(path)?;
    let mut n = 0;
    if is_mlcap(path, &bytes) {
        mlcap::for_each_block(&bytes, |block| {
            for r in block {
                time(Some(micros_of(r.time)));
                n += 1;
            }
        })
        .map_err(|e| not_mlcap(path, e))?;
    } else {
        for l in String::from_utf8_lossy(&bytes).lines() {
            if let Some(at) = line_time(l) {
                time(at);
                n += 1;
            }
        }
    }
    Ok(n)
}

/// What [`for_each_line`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Records given.
    pub records: usize,
    /// mlcap blocks skipped because their checksum or layout was wrong.
    pub corrupt_blocks: usize,
}

/// The records of one capture file as JSON objects, in file order; lines that are not JSON
/// (a torn last line while a server writes) are left out.
///
/// # Errors
/// As [`for_each_line`].
pub fn read_records(path: &Path) -> std::io::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for_each_line(path, |l| {
        if let Ok(v) = serde_json::from_str(l) {
            out.push(v);
        }
    })?;
    Ok(out)
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
        predictions: PredictionsView<'a>,
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
                    ..
                },
                Some(p),
            ) => ViewPayload::Rows {
                columns: p.schema().columns(),
                output: p.output(),
                raw,
                predictions: predictions.view(),
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
            for (i, y) in (0..predictions.len())
                .map(|i| predictions.get(i))
                .enumerate()
            {
                if i > 0 {
                    o.push(',');
                }
                match output {
                    Output::Classes(labels) => {
                        push_string(o, labels.get(y as usize).map_or("", |s| s.as_str()))
                    }
                    Output::Number => push_number(o, y),
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
    fn kept_bytes_are_a_copy_and_predictions_read_back() {
        let body = Bytes::from(b"{\"instances\": [[1, 2]]}".to_vec());
        let kept = keep(&body);
        assert_eq!(kept, body);
        // Not a view of the request's buffer, which must be free to reuse.
        let range = body.as_ptr_range();
        assert!(!range.contains(&kept.as_ptr()));
        let big = vec![7u8; ARENA_CHUNK * 2];
        assert_eq!(keep(&big).len(), big.len());
        let p = Predictions::keep(&[1.0, 2.5, f64::NAN]);
        let v = p.view();
        assert_eq!((p.len(), v.get(0), v.get(1)), (3, 1.0, 2.5));
        assert!(v.get(2).is_nan() && v.get(3).is_nan());
    }

    #[test]
    fn records_queued_by_several_threads_are_taken_in_the_order_they_were_answered() {
        let queue = Arc::new(Queue::new());
        let source = Arc::new(Source {
            model: "m".into(),
            version: "1".into(),
            variant: "v1".into(),
            predictor: None,
        });
        let at = |n: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(n);
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                let (queue, source) = (queue.clone(), source.clone());
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        queue.shard().lock().unwrap().push(Record {
                            time: at(i * 3 + t),
                            request_id: HeaderValue::from_static("r"),
                            source: source.clone(),
                            status: 200,
                            latency: Duration::ZERO,
                            payload: Payload::Failed {
                                message: String::new(),
                            },
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut batch = Vec::new();
        queue.take(&mut batch);
        let times: Vec<SystemTime> = batch.iter().map(|r| r.time).collect();
        assert_eq!(times, (0..150).map(at).collect::<Vec<_>>());
        queue.take(&mut batch);
        assert_eq!(batch.len(), 150, "taken once");
    }

    #[test]
    fn sampling_is_exact_and_spread() {
        let c = Capture {
            shared: Arc::new(Queue::new()),
            seen: AtomicU64::new(0),
            per10k: 2500,
            dropped: Arc::default(),
            writer: None,
            format: CaptureFormat::Mlcap,
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
        let current = CaptureFormat::Mlcap.current_file();
        assert!(!dir.path().join(current).exists());
        assert_eq!(capture_streams(dir.path()), vec![vec![own.join(current)]]);
        assert_eq!(capture_files(dir.path()), vec![own.join(current)]);
        assert_eq!(read_records(&own.join(current)).unwrap().len(), 1);
    }

    #[test]
    fn rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = CaptureConfig::new(dir.path(), 100.0);
        cfg.max_bytes = 300;
        cfg.max_files = 2;
        cfg.format = CaptureFormat::Jsonl;
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

    /// A model with a numeric and a categorical column that answers class labels.
    struct Fixed {
        schema: crate::schema::InputSchema,
        output: Output,
    }

    impl crate::Predictor for Fixed {
        fn schema(&self) -> &crate::schema::InputSchema {
            &self.schema
        }
        fn output(&self) -> &Output {
            &self.output
        }
        fn predict(
            &self,
            _raw: &[f64],
            rows: usize,
            out: &mut Vec<f64>,
        ) -> Result<(), crate::ServeError> {
            out.extend((0..rows).map(|i| (i % 2) as f64));
            Ok(())
        }
    }

    fn source(model: &str, output: Output) -> Arc<Source> {
        Arc::new(Source {
            model: model.into(),
            version: "3".into(),
            variant: "v3".into(),
            predictor: Some(Arc::new(Fixed {
                schema: crate::schema::InputSchema::new(vec![
                    Column::number("income"),
                    Column::category("region", ["north", "south \"quoted\""]),
                ]),
                output,
            })),
        })
    }

    /// A record of a request the model answered, as the server makes it: the body parsed
    /// by the server's parser, then predicted.
    fn answered(
        time: SystemTime,
        source: &Arc<Source>,
        format: crate::parse::Format,
        body: &'static str,
    ) -> Payload {
        let p = source.predictor.as_ref().unwrap();
        let mut raw = Vec::new();
        let parsed =
            crate::parse::parse_request(body.as_bytes(), format, p.schema(), true, &mut raw)
                .unwrap();
        let mut predictions = Vec::new();
        p.predict(&raw, parsed.rows, &mut predictions).unwrap();
        let _ = time;
        Payload::Rows {
            body: Bytes::from_static(body.as_bytes()),
            format,
            rows: parsed.rows,
            raw,
            predictions: predictions.into(),
            unknown_columns: parsed.unknown_columns,
        }
    }

    /// Every kind of record, from two models, interleaved as a server answers them.
    fn every_kind() -> Vec<Record> {
        use crate::parse::Format;
        let classes = source("churn", Output::Classes(vec!["no".into(), "yes".into()]));
        let numbers = source("price", Output::Number);
        let at =
            |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456 + ms);
        let rec = |t: u64, source: &Arc<Source>, status: u16, payload: Payload| Record {
            time: at(t),
            request_id: HeaderValue::from_str(&format!("req-{t}")).unwrap(),
            source: source.clone(),
            status,
            latency: Duration::from_nanos(81_234 + t),
            payload,
        };
        let script = Arc::new(Source {
            model: "script".into(),
            version: "1".into(),
            variant: "v1".into(),
            predictor: None,
        });
        let split = r#"{"dataframe_split": {"columns": ["income", "region", "extra"],
            "data": [[52000.5, "north", 1], [36000, "south \"quoted\"", 2], [null, null, 3]]}}"#;
        vec![
            rec(
                1,
                &classes,
                200,
                answered(at(1), &classes, Format::Json, split),
            ),
            rec(
                2,
                &numbers,
                200,
                answered(
                    at(2),
                    &numbers,
                    Format::Json,
                    r#"[[1e-7, "south \"quoted\""]]"#,
                ),
            ),
            rec(
                3,
                &classes,
                400,
                Payload::Failed {
                    message: "column `income` is missing".into(),
                },
            ),
            rec(
                4,
                &script,
                200,
                Payload::Raw {
                    request: Bytes::from_static(b"{\"a\": [1, 2]}"),
                    response: Bytes::from_static(b"plain text"),
                },
            ),
            rec(
                5,
                &script,
                200,
                Payload::Rows {
                    body: Bytes::from_static(b"[[1]]"),
                    format: Format::Json,
                    rows: 1,
                    raw: vec![1.0],
                    predictions: vec![1.0].into(),
                    unknown_columns: vec![],
                },
            ),
            rec(
                6,
                &classes,
                200,
                answered(
                    at(6),
                    &classes,
                    Format::Csv { header: None },
                    "income,region\n10,\"south \"\"quoted\"\"\"\n",
                ),
            ),
        ]
    }

    fn lines_of(format: CaptureFormat) -> Vec<serde_json::Value> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CaptureConfig {
            format,
            ..CaptureConfig::new(dir.path(), 100.0)
        };
        let cap = Capture::start(&cfg, Arc::default()).unwrap();
        for r in every_kind() {
            cap.send(r);
        }
        drop(cap);
        let mut v = read_records(&dir.path().join(format.current_file())).unwrap();
        v.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
        v
    }

    #[test]
    fn an_mlcap_record_reads_back_as_the_json_line_of_the_same_record() {
        let (mlcap, jsonl) = (
            lines_of(CaptureFormat::Mlcap),
            lines_of(CaptureFormat::Jsonl),
        );
        assert_eq!(jsonl.len(), 6);
        assert_eq!(mlcap, jsonl);
        // Spot checks of what the lines say.
        assert_eq!(
            jsonl[0]["rows"],
            serde_json::json!([
                [52000.5, "north"],
                [36000, "south \"quoted\""],
                [null, null]
            ])
        );
        assert_eq!(
            jsonl[0]["predictions"],
            serde_json::json!(["no", "yes", "no"])
        );
        assert_eq!(jsonl[0]["unknownColumns"], serde_json::json!(["extra"]));
        assert_eq!(jsonl[0]["requestId"], "req-1");
        assert_eq!(
            jsonl[1]["rows"],
            serde_json::json!([[1e-7, "south \"quoted\""]])
        );
        assert_eq!(
            jsonl[5]["rows"],
            serde_json::json!([[10, "south \"quoted\""]])
        );
        assert_eq!(jsonl[2]["error"], "column `income` is missing");
        assert_eq!(jsonl[3]["request"], serde_json::json!({"a": [1, 2]}));
    }

    #[test]
    fn a_record_built_as_a_value_is_its_json_line_read_back() {
        let mut records: Vec<Record> = every_kind();
        // Values a line writes in other shapes: a negative whole number, a huge one, NaN.
        let source = records[1].source.clone();
        records.push(Record {
            time: records[0].time,
            request_id: HeaderValue::from_static("req-x"),
            source,
            status: 200,
            latency: Duration::from_nanos(1),
            payload: Payload::Rows {
                body: Bytes::new(),
                format: crate::parse::Format::Json,
                rows: 1,
                raw: vec![-3.0, f64::NAN],
                predictions: vec![1e300].into(),
                unknown_columns: vec!["a\"b".into()],
            },
        });
        let (mut a, mut b) = (Clock::default(), Clock::default());
        for r in &records {
            let mut line = String::new();
            format_record(&mut line, &r.view(), &mut a);
            let read: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(record_value(&r.view(), &mut b), read, "{line}");
        }
        // And through an mlcap file, as the reader decodes it.
        let mut block = Vec::new();
        mlcap::encode_block(&records, &mut block);
        let mut file = mlcap::MAGIC.to_vec();
        file.extend_from_slice(&block);
        for d in mlcap::decode(&file).unwrap().records {
            let mut line = String::new();
            format_record(&mut line, &d.view(), &mut a);
            let read: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(record_value(&d.view(), &mut b), read, "{line}");
        }
    }

    #[test]
    fn the_newest_records_of_every_writer_are_given_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        // Two writers (per process) in mlcap, one of them rotated, and JSON lines beside.
        let write = |sub: &str, records: Vec<Record>, rotate: bool| {
            let mut cfg = CaptureConfig::new(dir.path().join(sub), 100.0);
            if rotate {
                cfg.max_bytes = 1;
            }
            let cap = Capture::start(&cfg, Arc::default()).unwrap();
            for r in records {
                cap.send(r);
            }
        };
        let kinds = every_kind();
        let at = |r: &Record| r.time;
        // every_kind's records are 1..=6 ms apart; writer b's are 10 ms later.
        let later = |r: &Record| {
            let mut r = clone_record(r);
            r.time += Duration::from_millis(10);
            r
        };
        write("a", kinds.iter().map(clone_record).collect(), true);
        write("b", kinds.iter().map(later).collect(), false);
        let mut times = Vec::new();
        for_each_newest(dir.path(), 100, |v| {
            times.push(v["time"].as_str().unwrap().to_string())
        })
        .unwrap();
        assert_eq!(times.len(), 12);
        let newest = |limit: usize| {
            let mut got = Vec::new();
            let n = for_each_newest(dir.path(), limit, |v| {
                got.push(v["requestId"].as_str().unwrap().to_string())
            })
            .unwrap();
            assert_eq!(n as usize, got.len());
            // Given block by block, segment by segment: not in the order answered.
            got.sort();
            got
        };
        // The newest four are writer b's last four.
        assert_eq!(newest(4), ["req-3", "req-4", "req-5", "req-6"]);
        assert_eq!(newest(0), Vec::<String>::new());
        assert_eq!(newest(12).len(), 12);
        assert!(at(&kinds[0]) < at(&later(&kinds[0])));
    }

    #[test]
    fn a_torn_block_is_left_out_and_cut_off_before_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CaptureConfig::new(dir.path(), 100.0);
        let file = dir.path().join(CaptureFormat::Mlcap.current_file());
        let write = |records: Vec<Record>| {
            let cap = Capture::start(&cfg, Arc::default()).unwrap();
            for r in records {
                cap.send(r);
            }
        };
        write(every_kind());
        let whole = fs::read(&file).unwrap();
        assert_eq!(read_records(&file).unwrap().len(), 6);
        // A crash in the middle of the next block: its first 20 bytes reached the file.
        let mut block = Vec::new();
        mlcap::encode_block(&every_kind()[..2], &mut block);
        let mut torn = whole.clone();
        torn.extend_from_slice(&block[..20]);
        fs::write(&file, &torn).unwrap();
        let read = mlcap::decode(&torn).unwrap();
        assert!(read.torn_tail);
        assert_eq!((read.records.len(), read.corrupt_blocks), (6, 0));
        // The next server cuts the torn block off, so what it writes is read.
        write(every_kind()[..1].iter().map(clone_record).collect());
        assert_eq!(read_records(&file).unwrap().len(), 7);
        // A block whose bytes changed is skipped and counted, the ones after it are read.
        let mut bad = fs::read(&file).unwrap();
        bad[mlcap::MAGIC.len() + 30] ^= 0xff;
        let read = mlcap::decode(&bad).unwrap();
        assert_eq!(
            (read.records.len(), read.corrupt_blocks, read.torn_tail),
            (1, 1, false)
        );
    }

    fn clone_record(r: &Record) -> Record {
        Record {
            time: r.time,
            request_id: r.request_id.clone(),
            source: r.source.clone(),
            status: r.status,
            latency: r.latency,
            payload: match &r.payload {
                Payload::Rows {
                    body,
                    format,
                    rows,
                    raw,
                    predictions,
                    unknown_columns,
                } => Payload::Rows {
                    body: body.clone(),
                    format: *format,
                    rows: *rows,
                    raw: raw.clone(),
                    predictions: predictions.clone(),
                    unknown_columns: unknown_columns.clone(),
                },
                Payload::Failed { message } => Payload::Failed {
                    message: message.clone(),
                },
                Payload::Raw { request, response } => Payload::Raw {
                    request: request.clone(),
                    response: response.clone(),
                },
            },
        }
    }

    #[test]
    fn garbage_is_never_a_panic() {
        let mut block = Vec::new();
        mlcap::encode_block(&every_kind(), &mut block);
        let mut file = mlcap::MAGIC.to_vec();
        file.extend_from_slice(&block);
        // Every truncation, and every single-byte change with a fixed-up checksum (so the
        // layout checks, not the checksum, must catch it).
        for n in 0..file.len() {
            let _ = mlcap::decode(&file[..n]);
        }
        let body = mlcap::MAGIC.len() + 12;
        for i in body..file.len() {
            for x in [0x00, 0x7f, 0xff] {
                let mut f = file.clone();
                f[i] = x;
                let crc = crc32fast::hash(&f[body..]);
                f[body - 4..body].copy_from_slice(&crc.to_le_bytes());
                let _ = mlcap::decode(&f);
            }
        }
        assert!(mlcap::decode(b"{\"time\": 1}").is_err());
    }
}
