//! `mlcap`: the columnar capture format the writer thread writes by default.
//!
//! Formatting every captured number as JSON text cost the server a quarter of its throughput
//! at 100 rows a request (the writer shares the cores with the request threads). A block of
//! this format is the records' own bytes, column by column: the writer copies numbers, it
//! does not format them, and a reader of one feature reads one contiguous array.
//!
//! A file is [`MAGIC`] then blocks, one per batch the writer took (at most
//! [`MAX_BLOCK_RECORDS`] records). All integers are little-endian.
//!
//! ```text
//! block    := "MBLK" u32:body_len u32:crc32(body) body
//! body     := u32:n_segments segment*
//! segment  := str:model str:version str:variant u8:kind u32:n
//!             i64[n]:time_micros u16[n]:status u64[n]:latency_nanos str[n]:request_id
//!             kind 0 (rows):   u32:n_columns column* output u32[n]:rows
//!                              (f64[R] per column, R = sum of rows) f64[R]:predictions
//!                              (u32:m str[m]) [n]:unknown_columns
//!             kind 1 (failed): str[n]:message
//!             kind 2 (raw):    bytes[n]:request bytes[n]:response
//!             kind 3 (rows without a model to name them): nothing more
//! column   := str:name u8:0 (number) | str:name u8:1 u32:k str[k] (categories)
//! output   := u8:0 (numbers) | u8:1 u32:k str[k] (class labels)
//! str, bytes := u32:len, then the bytes
//! ```
//!
//! A segment is the records of one model version and kind in the block, in the order they
//! were answered; readers order records by `time`. Category values and class predictions are
//! indices into the segment's lists (a missing or unseen category is NaN), as the server
//! holds them.
//!
//! A block is written with one write; a reader that meets a block longer than what is left
//! of the file (the writer is writing it, or died while writing it) stops there, and one whose
//! checksum does not match is skipped and counted. A writer that opens a file ending in such
//! a torn block cuts it off first, so what it appends is read.
//!
//! `mlctl capture export` (and [`super::read_records`]) turn these files into the JSON lines
//! of the JSON-lines format, the same line for the same record.

use super::{Payload, Record, View, ViewPayload};
use crate::schema::{Column, ColumnKind, Output};
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
                match &c.kind {
                    ColumnKind::Number => o.push(0),
                    ColumnKind::Category(cats) => {
                        o.push(1);
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
            let width = cols.len().max(1);
            let rows = |r: &Record| match &r.payload {
                Payload::Rows { raw, .. } => raw.len() / width,
                _ => 0,
            };
            for r in recs {
                put_len(o, rows(r));
            }
            // Column by column: each feature's values of the whole segment are one array.
            for j in 0..cols.len() {
                for r in recs {
                    if let Payload::Rows { raw, .. } = &r.payload {
                        for row in raw.chunks_exact(width) {
                            o.extend_from_slice(&row[j].to_le_bytes());
                        }
                    }
                }
            }
            for r in recs {
                if let Payload::Rows {
                    raw, predictions, ..
                } = &r.payload
                {
                    // As many predictions as rows, so the columns stay aligned.
                    let n = raw.len() / width;
                    for i in 0..n {
                        let y = predictions.get(i).copied().unwrap_or(f64::NAN);
                        o.extend_from_slice(&y.to_le_bytes());
                    }
                }
            }
            for r in recs {
                match &r.payload {
                    Payload::Rows {
                        unknown_columns, ..
                    } => {
                        put_len(o, unknown_columns.len());
                        for c in unknown_columns {
                            put_str(o, c);
                        }
                    }
                    _ => put_u32(o, 0),
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
                predictions,
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
    let mut out = DecodedFile::default();
    if bytes.is_empty() {
        return Ok(out);
    }
    if !bytes.starts_with(MAGIC) {
        return Err(NotMlcap);
    }
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let Some((body, next)) = block_at(bytes, at) else {
            out.torn_tail = true;
            break;
        };
        at = next;
        let Some(body) = body else {
            out.corrupt_blocks += 1;
            continue;
        };
        let mut r = Reader { b: body, at: 0 };
        let before = out.records.len();
        if decode_body(&mut r, &mut out.records).is_none() {
            out.records.truncate(before);
            out.corrupt_blocks += 1;
        }
    }
    Ok(out)
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
                columns.push(match r.u8()? {
                    0 => Column::number(name),
                    1 => Column::category(name, r.strings()?),
                    _ => return None,
                });
            }
            output = match r.u8()? {
                0 => Output::Number,
                1 => Output::Classes(r.strings()?),
                _ => return None,
            };
            let rows: Vec<usize> = (0..n).map(|_| r.count(0)).collect::<Option<_>>()?;
            let total = rows.iter().try_fold(0usize, |a, b| a.checked_add(*b))?;
            let width = ncols;
            // Every value of the segment, row-major per record.
            let cells = total.checked_mul(width + 1)?.checked_mul(8)?;
            if cells > r.b.len() - r.at {
                return None;
            }
            let mut raws: Vec<Vec<f64>> = rows.iter().map(|k| vec![0.0; k * width]).collect();
            for j in 0..width {
                for (i, k) in rows.iter().enumerate() {
                    for row in 0..*k {
                        raws[i][row * width + j] = r.f64()?;
                    }
                }
            }
            let mut preds: Vec<Vec<f64>> = Vec::with_capacity(n);
            for k in &rows {
                preds.push((0..*k).map(|_| r.f64()).collect::<Option<_>>()?);
            }
            for (raw, predictions) in raws.into_iter().zip(preds) {
                bodies.push(DecodedBody::Rows {
                    raw,
                    predictions,
                    unknown_columns: r.strings()?,
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
