//! `mlcap`: the columnar capture format the writer thread writes by default.
//!
//! Formatting every captured number as JSON text cost the server a quarter of its throughput
//! at 100 rows a request (the writer shares the cores with the request threads). A block of
//! this format holds each field of its records as one column (times, statuses, latencies,
//! ids, predictions), and the feature values as the request bodies arrived: the server hands
//! the writer the body it already holds (a reference count, no copy), which is also the
//! smallest form of the values (`5.1,` is 4 bytes, the parsed f64 is 8), and the writer
//! copies bytes, it formats nothing. A reader parses the bodies again with the same parser
//! and the schema stored in the segment, so it gets the values the model got.
//!
//! A file is [`MAGIC`] then blocks, one per batch the writer took (at most
//! [`MAX_BLOCK_RECORDS`] records). All integers are little-endian.
//!
//! ```text
//! block    := "MBLK" u32:body_len u32:crc32(body) body
//! body     := u32:n_segments segment*
//! segment  := str:model str:version str:variant u8:kind u32:n
//!             i64[n]:time_micros u16[n]:status u64[n]:latency_nanos str[n]:request_id
//!             kind 0 (rows):   u32:n_columns column* output u8[n]:body_format
//!                              bytes[n]:body u32[n]:rows predictions
//!                              (R = sum of rows)
//!             kind 1 (failed): str[n]:message
//!             kind 2 (raw):    bytes[n]:request bytes[n]:response
//!             kind 3 (rows without a model to name them): nothing more
//! column   := str:name u8:flags [u32:k str[k] when a category]
//!             (flags: 1 category, 2 nullable, 4 integer)
//! output   := u8:0 (numbers) | u8:1 u32:k str[k] (class labels)
//! predictions := u8:0 f64[R] | u8:1 u8[R] (class indices, when every one is below 256)
//! body_format := 0 JSON | 1 CSV, header detected | 2 CSV with header | 3 CSV without
//! str, bytes := u32:len, then the bytes
//! ```
//!
//! A segment is the records of one model version and kind in the block, in the order they
//! were answered; readers order records by `time`. Class predictions are indices into the
//! segment's labels, as the server holds them.
//!
//! A block is written with one write; a reader that meets a block longer than what is left
//! of the file (the writer is writing it, or died while writing it) stops there, and one whose
//! checksum does not match is skipped and counted. A writer that opens a file ending in such
//! a torn block cuts it off first, so what it appends is read.
//!
//! `mlctl capture export` (and [`super::read_records`]) turn these files into the JSON lines
//! of the JSON-lines format, the same line for the same record.

use super::{Payload, Record, View, ViewPayload};
use crate::parse::Format;
use crate::schema::{Column, ColumnKind, InputSchema, Output};
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The first bytes of an mlcap file.
pub const MAGIC: &[u8; 8] = b"MLCAP01\n";
const BLOCK: &[u8; 4] = b"MBLK";
const BLOCK_HEADER: usize = 12;
/// Records in one block at most (a long stall's backlog is written as several blocks).
pub const MAX_BLOCK_RECORDS: usize = 1024;

const ROWS: u8 = 0;
const FAILED: u8 = 1;
const RAW: u8 = 2;
const UNNAMED: u8 = 3;

fn put_u32(o: &mut Vec<u8>, x: u32) {
    o.extend_from_slice(&x.to_le_bytes());
}

fn put_len(o: &mut Vec<u8>, n: usize) {
    put_u32(o, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_bytes(o: &mut Vec<u8>, b: &[u8]) {
    // A body over 4 GiB is not captured whole (the server's body limit is far below).
    let b = &b[..b.len().min(u32::MAX as usize)];
    put_len(o, b.len());
    o.extend_from_slice(b);
}

fn put_str(o: &mut Vec<u8>, s: &str) {
    put_bytes(o, s.as_bytes());
}

fn kind_of(r: &Record) -> u8 {
    match (&r.payload, &r.source.predictor) {
        (Payload::Rows { .. }, Some(_)) => ROWS,
        (Payload::Rows { .. }, None) => UNNAMED,
        (Payload::Failed { .. }, _) => FAILED,
        (Payload::Raw { .. }, _) => RAW,
    }
}

fn format_code(f: Format) -> u8 {
    match f {
        Format::Json => 0,
        Format::Csv { header: None } => 1,
        Format::Csv { header: Some(true) } => 2,
        Format::Csv {
            header: Some(false),
        } => 3,
    }
}

fn format_of_code(c: u8) -> Option<Format> {
    Some(match c {
        0 => Format::Json,
        1 => Format::Csv { header: None },
        2 => Format::Csv { header: Some(true) },
        3 => Format::Csv {
            header: Some(false),
        },
        _ => return None,
    })
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Appends one block of `records` (at most [`MAX_BLOCK_RECORDS`] are meant to be passed) to
/// `out`.
pub(crate) fn encode_block(records: &[Record], out: &mut Vec<u8>) {
    // Segments: the records of one source and kind, in order.
    let mut segments: Vec<(*const super::Source, u8, Vec<&Record>)> = Vec::new();
    for r in records {
        let key = (Arc::as_ptr(&r.source), kind_of(r));
        match segments.iter_mut().find(|(s, k, _)| (*s, *k) == key) {
            Some((_, _, v)) => v.push(r),
            None => segments.push((key.0, key.1, vec![r])),
        }
    }
    let start = out.len();
    out.extend_from_slice(BLOCK);
    out.extend_from_slice(&[0; 8]);
    let body = out.len();
    put_len(out, segments.len());
    for (_, kind, recs) in &segments {
        encode_segment(*kind, recs, out);
    }
    let len = u32::try_from(out.len() - body).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(&out[body..]);
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

fn encode_segment(kind: u8, recs: &[&Record], o: &mut Vec<u8>) {
    let first = recs[0];
    put_str(o, &first.source.model);
    put_str(o, &first.source.version);
    put_str(o, &first.source.variant);
    o.push(kind);
    put_len(o, recs.len());
    for r in recs {
        o.extend_from_slice(&micros(r.time).to_le_bytes());
    }
    for r in recs {
        o.extend_from_slice(&r.status.to_le_bytes());
    }
    for r in recs {
        let nanos = u64::try_from(r.latency.as_nanos()).unwrap_or(u64::MAX);
        o.extend_from_slice(&nanos.to_le_bytes());
    }
    for r in recs {
        put_bytes(o, r.request_id.as_bytes());
    }
    match kind {
        ROWS => {
            let Some(p) = &first.source.predictor else {
                return;
            };
            let cols = p.schema().columns();
            put_len(o, cols.len());
            for c in cols {
                put_str(o, &c.name);
                let flags = u8::from(c.nullable) * 2 + u8::from(c.integer) * 4;
                match &c.kind {
                    ColumnKind::Number => o.push(flags),
                    ColumnKind::Category(cats) => {
                        o.push(flags | 1);
                        put_len(o, cats.len());
                        for c in cats {
                            put_str(o, c);
                        }
                    }
                }
            }
            match p.output() {
                Output::Number => o.push(0),
                Output::Classes(labels) => {
                    o.push(1);
                    put_len(o, labels.len());
                    for l in labels {
                        put_str(o, l);
                    }
                }
            }
            let rows_of = |r: &Record| match &r.payload {
                Payload::Rows { rows, .. } => *rows,
                _ => 0,
            };
            for r in recs {
                o.push(match &r.payload {
                    Payload::Rows { format, .. } => format_code(*format),
                    _ => 0,
                });
            }
            for r in recs {
                match &r.payload {
                    Payload::Rows { body, .. } => put_bytes(o, body),
                    _ => put_u32(o, 0),
                }
            }
            for r in recs {
                put_len(o, rows_of(r));
            }
            // As many predictions as rows, so the column stays aligned with the rows.
            let predictions = || {
                recs.iter().flat_map(|r| {
                    let (n, p) = match &r.payload {
                        Payload::Rows {
                            rows, predictions, ..
                        } => (*rows, predictions.view()),
                        _ => (0, super::PredictionsView::Values(&[])),
                    };
                    (0..n).map(move |i| p.get(i))
                })
            };
            let small = matches!(p.output(), Output::Classes(_))
                && predictions().all(|y| y.fract() == 0.0 && (0.0..256.0).contains(&y));
            if small {
                o.push(1);
                o.extend(predictions().map(|y| y as u8));
            } else {
                o.push(0);
                for y in predictions() {
                    o.extend_from_slice(&y.to_le_bytes());
                }
            }
        }
        FAILED => {
            for r in recs {
                match &r.payload {
                    Payload::Failed { message } => put_str(o, message),
                    _ => put_u32(o, 0),
                }
            }
        }
        RAW => {
            for side in [true, false] {
                for r in recs {
                    match &r.payload {
                        Payload::Raw { request, response } => {
                            put_bytes(o, if side { request } else { response })
                        }
                        _ => put_u32(o, 0),
                    }
                }
            }
        }
        _ => {}
    }
}

/// A record read back from an mlcap file.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// When it was answered.
    pub time: SystemTime,
    /// Its request id.
    pub request_id: String,
    /// Model, version and variant.
    pub source: Arc<DecodedSource>,
    /// HTTP status.
    pub status: u16,
    /// Time taken.
    pub latency: Duration,
    /// What was exchanged.
    pub body: DecodedBody,
}

/// Who served a decoded record, and the names of its columns and classes.
#[derive(Debug, Clone)]
pub struct DecodedSource {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Variant name.
    pub variant: String,
    /// Input columns (rows records).
    pub columns: Vec<Column>,
    /// What predictions are (rows records).
    pub output: Output,
}

/// What a decoded record exchanged.
#[derive(Debug, Clone)]
pub enum DecodedBody {
    /// Rows (row-major, the server's raw layout) and their predictions.
    Rows {
        /// Row-major values.
        raw: Vec<f64>,
        /// One per row.
        predictions: Vec<f64>,
        /// Columns the request named that the model does not take.
        unknown_columns: Vec<String>,
    },
    /// An error answer's message.
    Failed(String),
    /// A script-mode exchange.
    Raw {
        /// Request body.
        request: Vec<u8>,
        /// Response body.
        response: Vec<u8>,
    },
    /// Rows without names (nothing but the common fields was kept).
    Unnamed,
}

impl Decoded {
    pub(crate) fn view(&self) -> View<'_> {
        let payload = match &self.body {
            DecodedBody::Rows {
                raw,
                predictions,
                unknown_columns,
            } => ViewPayload::Rows {
                columns: &self.source.columns,
                output: &self.source.output,
                raw,
                predictions: super::PredictionsView::Values(predictions),
                unknown_columns,
            },
            DecodedBody::Failed(message) => ViewPayload::Failed { message },
            DecodedBody::Raw { request, response } => ViewPayload::Raw { request, response },
            DecodedBody::Unnamed => ViewPayload::Unnamed,
        };
        View {
            time: self.time,
            request_id: &self.request_id,
            model: &self.source.model,
            version: &self.source.version,
            variant: &self.source.variant,
            status: self.status,
            latency: self.latency,
            payload,
        }
    }
}

/// What reading an mlcap file found.
#[derive(Debug, Default)]
pub struct DecodedFile {
    /// The records, block by block, segment by segment.
    pub records: Vec<Decoded>,
    /// Blocks skipped because their checksum or layout was wrong.
    pub corrupt_blocks: usize,
    /// Whether the file ends in a block that is not complete (being written, or torn).
    pub torn_tail: bool,
}

/// Why an mlcap file cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error(
    "not an mlcap capture file (it does not start with {:?})",
    String::from_utf8_lossy(MAGIC)
)]
pub struct NotMlcap;

/// Reads every record of an mlcap file's bytes.
///
/// # Errors
/// [`NotMlcap`] when the bytes do not start with [`MAGIC`] (an empty file has no records).
pub fn decode(bytes: &[u8]) -> Result<DecodedFile, NotMlcap> {
    let mut records = Vec::new();
    let (corrupt_blocks, torn_tail) =
        for_each_block(bytes, |block| records.extend(block.iter().cloned()))?;
    Ok(DecodedFile {
        records,
        corrupt_blocks,
        torn_tail,
    })
}

/// Calls `each` with the records of each readable block of an mlcap file, in file order, one
/// block at a time (so a reader holds one block's records, not the file's). Returns the
/// blocks skipped as corrupt and whether the file ends in a block that is not complete.
///
/// # Errors
/// The bytes are not an mlcap file.
pub fn for_each_block(
    bytes: &[u8],
    mut each: impl FnMut(&[Decoded]),
) -> Result<(usize, bool), NotMlcap> {
    let (mut corrupt, mut torn) = (0, false);
    if bytes.is_empty() {
        return Ok((corrupt, torn));
    }
    if !bytes.starts_with(MAGIC) {
        return Err(NotMlcap);
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let Some((body, next)) = block_at(bytes, at) else {
            torn = true;
            break;
        };
        at = next;
        let Some(body) = body else {
            corrupt += 1;
            continue;
        };
        let mut r = Reader { b: body, at: 0 };
        records.clear();
        if decode_body(&mut r, &mut records).is_none() {
            corrupt += 1;
            continue;
        }
        each(&records);
    }
    Ok((corrupt, torn))
}

/// The block starting at `at`: its body (`None` when its checksum is wrong) and where the
/// next block starts; `None` when the block is not complete or is not a block.
fn block_at(bytes: &[u8], at: usize) -> Option<(Option<&[u8]>, usize)> {
    let head = bytes.get(at..at + BLOCK_HEADER)?;
    if &head[..4] != BLOCK {
        return None;
    }
    let len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[8..12].try_into().ok()?);
    let start = at + BLOCK_HEADER;
    let body = bytes.get(start..start.checked_add(len)?)?;
    let ok = crc32fast::hash(body) == crc;
    Some((ok.then_some(body), start + len))
}

/// The length of the complete blocks at the start of an mlcap file (what a writer keeps when
/// it appends to a file a crash left torn). Only block headers are read.
pub(crate) fn complete_length(file: &mut std::fs::File) -> std::io::Result<u64> {
    let size = file.metadata()?.len();
    let mut magic = [0u8; 8];
    file.seek(SeekFrom::Start(0))?;
    if size < MAGIC.len() as u64 || file.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Ok(0);
    }
    let mut at = MAGIC.len() as u64;
    let mut head = [0u8; BLOCK_HEADER];
    while at + BLOCK_HEADER as u64 <= size {
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut head)?;
        if &head[..4] != BLOCK {
            break;
        }
        let len = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
        if at + BLOCK_HEADER as u64 + len > size {
            break;
        }
        at += BLOCK_HEADER as u64 + len;
    }
    Ok(at)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
    /// A count of items of at least `min_size` bytes each: never more than what is left, so
    /// a corrupt count cannot allocate more than the block holds.
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.saturating_mul(min_size.max(1)) <= self.b.len() - self.at).then_some(n)
    }
    /// `n` items of `size` bytes, when that many are left.
    fn count_of(&self, n: usize, size: usize) -> Option<usize> {
        (n.checked_mul(size)? <= self.b.len() - self.at).then_some(n)
    }
    fn strings(&mut self) -> Option<Vec<String>> {
        let k = self.count(4)?;
        (0..k).map(|_| self.string()).collect()
    }
}

fn decode_body(r: &mut Reader<'_>, out: &mut Vec<Decoded>) -> Option<()> {
    let segments = r.count(1)?;
    for _ in 0..segments {
        decode_segment(r, out)?;
    }
    (r.at == r.b.len()).then_some(())
}

fn decode_segment(r: &mut Reader<'_>, out: &mut Vec<Decoded>) -> Option<()> {
    let (model, version, variant) = (r.string()?, r.string()?, r.string()?);
    let kind = r.u8()?;
    // Each record takes at least its time, status, latency and id length.
    let n = r.count(8 + 2 + 8 + 4)?;
    let times: Vec<i64> = (0..n).map(|_| r.i64()).collect::<Option<_>>()?;
    let status: Vec<u16> = (0..n).map(|_| r.u16()).collect::<Option<_>>()?;
    let latency: Vec<u64> = (0..n).map(|_| r.u64()).collect::<Option<_>>()?;
    let ids: Vec<String> = (0..n).map(|_| r.string()).collect::<Option<_>>()?;
    let mut columns = Vec::new();
    let mut output = Output::Number;
    let mut bodies: Vec<DecodedBody> = Vec::with_capacity(n);
    match kind {
        ROWS => {
            let ncols = r.count(5)?;
            for _ in 0..ncols {
                let name = r.string()?;
                let flags = r.u8()?;
                let mut c = if flags & 1 == 1 {
                    Column::category(name, r.strings()?)
                } else {
                    Column::number(name)
                };
                c.nullable = flags & 2 != 0;
                c.integer = flags & 4 != 0;
                columns.push(c);
            }
            output = match r.u8()? {
                0 => Output::Number,
                1 => Output::Classes(r.strings()?),
                _ => return None,
            };
            let formats: Vec<Format> = (0..n)
                .map(|_| r.u8().and_then(format_of_code))
                .collect::<Option<_>>()?;
            let bodies_in: Vec<&[u8]> = (0..n).map(|_| r.bytes()).collect::<Option<_>>()?;
            let rows: Vec<usize> = (0..n).map(|_| r.count(1)).collect::<Option<_>>()?;
            let total = rows.iter().try_fold(0usize, |a, b| a.checked_add(*b))?;
            let mut predictions: Vec<f64> = match r.u8()? {
                0 => (0..r.count_of(total, 8)?)
                    .map(|_| r.f64())
                    .collect::<Option<Vec<f64>>>()?,
                1 => r
                    .take(r.count_of(total, 1)?)?
                    .iter()
                    .map(|y| f64::from(*y))
                    .collect(),
                _ => return None,
            };
            // Taken from the end, so first ones first.
            predictions.reverse();
            let schema = InputSchema::new(columns.clone());
            for (i, body) in bodies_in.into_iter().enumerate() {
                let mut raw = Vec::new();
                // The server answered this body, so it parses; leniently, as the values are
                // what matters here, not the warnings it got.
                let parsed =
                    crate::parse::parse_request(body, formats[i], &schema, true, &mut raw).ok()?;
                if parsed.rows != rows[i] {
                    return None;
                }
                let preds: Vec<f64> = (0..rows[i]).filter_map(|_| predictions.pop()).collect();
                bodies.push(DecodedBody::Rows {
                    raw,
                    predictions: preds,
                    unknown_columns: parsed.unknown_columns,
                });
            }
        }
        FAILED => {
            for _ in 0..n {
                bodies.push(DecodedBody::Failed(r.string()?));
            }
        }
        RAW => {
            let requests: Vec<Vec<u8>> = (0..n)
                .map(|_| r.bytes().map(<[u8]>::to_vec))
                .collect::<Option<_>>()?;
            for request in requests {
                bodies.push(DecodedBody::Raw {
                    request,
                    response: r.bytes()?.to_vec(),
                });
            }
        }
        UNNAMED => bodies.extend((0..n).map(|_| DecodedBody::Unnamed)),
        _ => return None,
    }
    let source = Arc::new(DecodedSource {
        model,
        version,
        variant,
        columns,
        output,
    });
    for (i, body) in bodies.into_iter().enumerate() {
        let t = u64::try_from(times[i]).unwrap_or(0);
        out.push(Decoded {
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(t),
            request_id: ids[i].clone(),
            source: source.clone(),
            status: status[i],
            latency: Duration::from_nanos(latency[i]),
            body,
        });
    }
    Some(())
}
