//! An in-memory columnar table, read from CSV or Parquet.
//!
//! A [`Table`] is a list of named, equally long columns. Numbers are kept as `f64` with NaN
//! for a missing cell ([`ColumnData::Float`]) or as `Option<i64>` ([`ColumnData::Int`]);
//! booleans as `Option<bool>`; text and categories as `Option<String>`.
//!
//! CSV columns get the narrowest type every present value fits: int, then float, then bool
//! (`true`/`false`, any case), else string. Empty cells and `NA`, `N/A`, `NaN`, `null`,
//! `None` (any case) are missing.
//!
//! A CSV file too large for memory is read in chunks of rows ([`read_csv_chunks`]), each
//! typed as the whole file would be.

use mlctl_spec::suggest::{list, quote, thousands};
use mlctl_spec::{ColumnType, DataFormat, DataLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// Floating point numbers; NaN marks a missing cell.
    Float(Vec<f64>),
    /// Integers.
    Int(Vec<Option<i64>>),
    /// Booleans.
    Bool(Vec<Option<bool>>),
    /// Text (free text or categories).
    Str(Vec<Option<String>>),
}

/// The type of a column as stored in a [`Table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// [`ColumnData::Float`].
    Float,
    /// [`ColumnData::Int`].
    Int,
    /// [`ColumnData::Bool`].
    Bool,
    /// [`ColumnData::Str`].
    Str,
}

impl ColumnKind {
    /// The name shown to users (the spec's type names).
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Float => "float",
            ColumnKind::Int => "int",
            ColumnKind::Bool => "bool",
            ColumnKind::Str => "string",
        }
    }

    /// Whether values convert to numbers without loss of meaning.
    pub fn is_numeric(self) -> bool {
        !matches!(self, ColumnKind::Str)
    }
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ColumnData {
    /// Number of cells.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Float(v) => v.len(),
            ColumnData::Int(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Str(v) => v.len(),
        }
    }

    /// Whether the column has no cells.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column's type.
    pub fn kind(&self) -> ColumnKind {
        match self {
            ColumnData::Float(_) => ColumnKind::Float,
            ColumnData::Int(_) => ColumnKind::Int,
            ColumnData::Bool(_) => ColumnKind::Bool,
            ColumnData::Str(_) => ColumnKind::Str,
        }
    }

    /// Whether cell `row` is missing.
    pub fn is_missing(&self, row: usize) -> bool {
        match self {
            ColumnData::Float(v) => v[row].is_nan(),
            ColumnData::Int(v) => v[row].is_none(),
            ColumnData::Bool(v) => v[row].is_none(),
            ColumnData::Str(v) => v[row].is_none(),
        }
    }

    /// Number of missing cells.
    pub fn missing_count(&self) -> usize {
        (0..self.len()).filter(|&i| self.is_missing(i)).count()
    }

    /// Cell `row` as a number (NaN when missing); strings are parsed, NaN when they do not parse.
    pub fn f64_at(&self, row: usize) -> f64 {
        match self {
            ColumnData::Float(v) => v[row],
            ColumnData::Int(v) => v[row].map_or(f64::NAN, |x| x as f64),
            ColumnData::Bool(v) => v[row].map_or(f64::NAN, |b| if b { 1.0 } else { 0.0 }),
            ColumnData::Str(v) => v[row]
                .as_deref()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN),
        }
    }

    /// The whole column as numbers, or `None` for a string column.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match self {
            ColumnData::Str(_) => None,
            ColumnData::Float(v) => Some(v.clone()),
            _ => Some((0..self.len()).map(|i| self.f64_at(i)).collect()),
        }
    }

    /// Cell `row` as text, `None` when missing. Floats print so that they read back as floats.
    pub fn string_at(&self, row: usize) -> Option<String> {
        match self {
            ColumnData::Float(v) => {
                let x = v[row];
                (!x.is_nan()).then(|| format_f64(x))
            }
            ColumnData::Int(v) => v[row].map(|x| x.to_string()),
            ColumnData::Bool(v) => v[row].map(|b| b.to_string()),
            ColumnData::Str(v) => v[row].clone(),
        }
    }

    /// The rows at `indices`, in that order.
    pub fn take(&self, indices: &[usize]) -> ColumnData {
        match self {
            ColumnData::Float(v) => ColumnData::Float(indices.iter().map(|&i| v[i]).collect()),
            ColumnData::Int(v) => ColumnData::Int(indices.iter().map(|&i| v[i]).collect()),
            ColumnData::Bool(v) => ColumnData::Bool(indices.iter().map(|&i| v[i]).collect()),
            ColumnData::Str(v) => ColumnData::Str(indices.iter().map(|&i| v[i].clone()).collect()),
        }
    }
}

/// Formats a float so that it parses back to the same value and reads as a float (`1.0`, not `1`).
pub fn format_f64(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// A table: named columns of equal length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    names: Vec<String>,
    columns: Vec<ColumnData>,
    rows: usize,
    lines: FileLines,
}

/// Which line of its file each row starts on, for messages ([`Table::file_line`]).
/// Provenance, not content: two tables with the same columns are equal wherever they came from.
#[derive(Debug, Clone, Default)]
enum FileLines {
    /// Not read from lines of text (Parquet, a table built or derived in memory).
    #[default]
    Unknown,
    /// Row `i` is on line `i + 2`: a header line, then one line per row.
    AfterHeader,
    /// Each row's line, where blank lines or quoted line breaks moved them.
    Listed(Vec<u64>),
}

impl PartialEq for FileLines {
    fn eq(&self, _other: &FileLines) -> bool {
        true
    }
}

/// Errors reading, writing or building a table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The CSV text is malformed (e.g. a row with the wrong number of fields).
    #[error("{}: line {line}: {message}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number, 0 when unknown.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The Parquet file could not be decoded or uses a feature not supported here.
    #[error("{}: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file breaks one of the [`ReadLimits`] (a line, the header's columns, the file's
    /// size): says which, where, and the Dataset setting that raises it.
    #[error(
        "{}: {}{what}; if the file is right, raise the Dataset's `limits.{setting}` (now {})",
        path.display(),
        line.map(|l| format!("line {l}: ")).unwrap_or_default(),
        thousands(*limit as usize)
    )]
    Limit {
        /// The file.
        path: PathBuf,
        /// 1-based line, when the limit is about one.
        line: Option<u64>,
        /// The Dataset setting (`maxLineBytes`, `maxColumns`, `maxFileBytes`).
        setting: &'static str,
        /// Its value.
        limit: u64,
        /// What broke it, in words.
        what: String,
    },
    /// Two columns have the same name.
    #[error("column `{}` appears twice", quote(.0))]
    DuplicateColumn(String),
    /// A column's length differs from the others'.
    #[error("column `{}` has {len} rows, expected {expected}", quote(name))]
    LengthMismatch {
        /// The column.
        name: String,
        /// Its length.
        len: usize,
        /// The other columns' length.
        expected: usize,
    },
    /// A column named in a request does not exist.
    #[error("no column `{}` (columns: {})", quote(name), list(available))]
    NoSuchColumn {
        /// The requested name.
        name: String,
        /// The table's columns.
        available: Vec<String>,
    },
}

impl Table {
    /// An empty table (no columns, no rows).
    pub fn new() -> Self {
        Table::default()
    }

    /// A table from `(name, column)` pairs; names must be unique and lengths equal.
    pub fn from_columns(
        columns: impl IntoIterator<Item = (impl Into<String>, ColumnData)>,
    ) -> Result<Self, TableError> {
        let mut t = Table::new();
        for (name, col) in columns {
            t.push_column(name, col)?;
        }
        Ok(t)
    }

    /// Appends a column.
    pub fn push_column(
        &mut self,
        name: impl Into<String>,
        column: ColumnData,
    ) -> Result<(), TableError> {
        let name = name.into();
        if self.names.contains(&name) {
            return Err(TableError::DuplicateColumn(name));
        }
        if !self.columns.is_empty() && column.len() != self.rows {
            return Err(TableError::LengthMismatch {
                name,
                len: column.len(),
                expected: self.rows,
            });
        }
        self.rows = column.len();
        self.names.push(name);
        self.columns.push(column);
        Ok(())
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn n_cols(&self) -> usize {
        self.columns.len()
    }

    /// Column names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `(name, column)` pairs, in order.
    pub fn columns(&self) -> impl Iterator<Item = (&str, &ColumnData)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.columns.iter())
    }

    /// The position of column `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Column `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnData> {
        self.index_of(name).map(|i| &self.columns[i])
    }

    /// Column `name`, or an error listing the table's columns.
    pub fn require(&self, name: &str) -> Result<&ColumnData, TableError> {
        self.column(name).ok_or_else(|| TableError::NoSuchColumn {
            name: name.to_string(),
            available: self.names.clone(),
        })
    }

    /// The column at position `i`.
    pub fn column_at(&self, i: usize) -> &ColumnData {
        &self.columns[i]
    }

    /// The 1-based line of the file that 0-based `row` starts on, header counted (CSV);
    /// `None` when the table was not read from lines of text.
    pub fn file_line(&self, row: usize) -> Option<u64> {
        match &self.lines {
            FileLines::Unknown => None,
            FileLines::AfterHeader => Some(row as u64 + 2),
            FileLines::Listed(lines) => lines.get(row).copied(),
        }
    }

    /// The rows at `indices` (in that order), all columns.
    pub fn take(&self, indices: &[usize]) -> Table {
        Table {
            names: self.names.clone(),
            columns: self.columns.iter().map(|c| c.take(indices)).collect(),
            rows: indices.len(),
            lines: FileLines::Unknown,
        }
    }

    /// The first `n` rows.
    pub fn head(&self, n: usize) -> Table {
        let idx: Vec<usize> = (0..n.min(self.rows)).collect();
        self.take(&idx)
    }

    /// The table without column `name` (unchanged when absent).
    pub fn without(&self, name: &str) -> Table {
        let mut t = Table::new();
        for (n, c) in self.columns() {
            if n != name {
                // Names are unique and lengths equal: cannot fail.
                t.names.push(n.to_string());
                t.columns.push(c.clone());
            }
        }
        t.rows = self.rows;
        t.lines = self.lines.clone();
        t
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Options for [`read_csv_with`].
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Field delimiter (default `,`).
    pub delimiter: u8,
    /// Types forced per column instead of inferred (e.g. a category coded as digits).
    pub types: BTreeMap<String, ColumnKind>,
    /// What the reader accepts (default: none, for files mlctl wrote itself).
    pub limits: ReadLimits,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            types: BTreeMap::new(),
            limits: ReadLimits::NONE,
        }
    }
}

/// The most a reader takes from a data file, so a malformed file (no line breaks, a header
/// of millions of fields, a huge file) fails early with an error naming the setting, instead
/// of filling memory and every message with its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Bytes of one line of CSV text (`limits.maxLineBytes`).
    pub max_line_bytes: u64,
    /// Columns of a table (`limits.maxColumns`).
    pub max_columns: u64,
    /// Bytes of the file (`limits.maxFileBytes`).
    pub max_file_bytes: u64,
}

impl ReadLimits {
    /// No limits: for files mlctl wrote itself (splits, captures).
    pub const NONE: ReadLimits = ReadLimits {
        max_line_bytes: u64::MAX,
        max_columns: u64::MAX,
        max_file_bytes: u64::MAX,
    };

    /// A Dataset's `limits`, with the defaults of [`DataLimits`] for what it leaves out.
    pub fn of(limits: Option<&DataLimits>) -> ReadLimits {
        let d = DataLimits::default();
        let l = limits.unwrap_or(&d);
        ReadLimits {
            max_line_bytes: l.line_bytes(),
            max_columns: l.columns(),
            max_file_bytes: l.file_bytes(),
        }
    }

    /// The error for a file of `size` bytes, when that is more than allowed (for a reader
    /// that checks the size before it reads).
    pub fn check_size(&self, path: &Path, size: u64) -> Result<(), TableError> {
        if size > self.max_file_bytes {
            return Err(TableError::Limit {
                path: path.to_path_buf(),
                line: None,
                setting: "maxFileBytes",
                limit: self.max_file_bytes,
                what: format!("the file has {} bytes", thousands(size as usize)),
            });
        }
        Ok(())
    }

    /// The error for a table of `n` columns, when that is more than allowed.
    fn check_columns(&self, path: &Path, line: Option<u64>, n: usize) -> Result<(), TableError> {
        if n as u64 > self.max_columns {
            return Err(TableError::Limit {
                path: path.to_path_buf(),
                line,
                setting: "maxColumns",
                limit: self.max_columns,
                what: format!("the header has {} columns", thousands(n)),
            });
        }
        Ok(())
    }
}

impl CsvOptions {
    /// Options that read each column with the type a schema declares for it (`category` and
    /// `string` as text, `int`, `float`, `bool` as such).
    pub fn from_schema(schema: &mlctl_spec::DataSchema) -> Self {
        let types = schema
            .columns
            .iter()
            .map(|c| {
                let kind = match c.ty {
                    ColumnType::Float => ColumnKind::Float,
                    ColumnType::Int => ColumnKind::Int,
                    ColumnType::Bool => ColumnKind::Bool,
                    ColumnType::Category | ColumnType::String => ColumnKind::Str,
                };
                (c.name.clone(), kind)
            })
            .collect();
        CsvOptions {
            types,
            ..CsvOptions::default()
        }
    }

    /// These options with `limits`.
    #[must_use]
    pub fn with_limits(mut self, limits: ReadLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// Reads a table in `format`.
pub fn read(path: impl AsRef<Path>, format: DataFormat) -> Result<Table, TableError> {
    match format {
        DataFormat::Csv => read_csv(path),
        DataFormat::Parquet => read_parquet(path),
    }
}

/// Reads a table in `format` that a user supplied (a Dataset's source), within `limits`.
pub fn read_limited(
    path: impl AsRef<Path>,
    format: DataFormat,
    limits: ReadLimits,
) -> Result<Table, TableError> {
    let path = path.as_ref();
    let size = std::fs::metadata(path)
        .map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    limits.check_size(path, size)?;
    match format {
        DataFormat::Csv => read_csv_with(path, &CsvOptions::default().with_limits(limits)),
        DataFormat::Parquet => {
            let t = read_parquet(path)?;
            limits.check_columns(path, None, t.n_cols())?;
            Ok(t)
        }
    }
}

/// [`read_bytes`] within `limits`; errors name `file`.
pub fn read_bytes_limited(
    bytes: &[u8],
    format: DataFormat,
    file: &str,
    limits: ReadLimits,
) -> Result<Table, TableError> {
    let path = Path::new(file);
    limits.check_size(path, bytes.len() as u64)?;
    match format {
        DataFormat::Csv => csv_from_reader(bytes, path, &CsvOptions::default().with_limits(limits)),
        DataFormat::Parquet => {
            let t = parquet_from(bytes::Bytes::copy_from_slice(bytes), path)?;
            limits.check_columns(path, None, t.n_cols())?;
            Ok(t)
        }
    }
}

/// The format implied by a file name's extension (`.csv`, `.tsv`, `.parquet`, `.pq`).
pub fn format_from_path(path: impl AsRef<Path>) -> Option<DataFormat> {
    let ext = path.as_ref().extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" | "txt" => Some(DataFormat::Csv),
        "parquet" | "pq" => Some(DataFormat::Parquet),
        _ => None,
    }
}

/// Reads a CSV file with a header row, inferring column types.
pub fn read_csv(path: impl AsRef<Path>) -> Result<Table, TableError> {
    read_csv_with(path, &CsvOptions::default())
}

/// Whether a CSV cell means "missing".
fn is_na(s: &str) -> bool {
    matches!(
        s,
        "" | "NA"
            | "N/A"
            | "na"
            | "n/a"
            | "NaN"
            | "nan"
            | "NAN"
            | "null"
            | "NULL"
            | "Null"
            | "None"
            | "none"
            | "-nan"
    )
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The raw cells of one CSV column: concatenated bytes and end offsets.
struct RawColumn {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl RawColumn {
    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        // Validated as UTF-8 when pushed.
        std::str::from_utf8(&self.bytes[start..self.ends[i]]).unwrap_or("")
    }
}

/// Reads a CSV file with a header row, with [`CsvOptions`].
pub fn read_csv_with(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Table, TableError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    csv_from_reader(file, path, options)
}

/// The name errors give to in-memory data.
const IN_MEMORY: &str = "<in-memory data>";

/// Reads a table from bytes in memory (e.g. an object fetched from a store). Errors name
/// `<in-memory data>` as the file.
pub fn read_bytes(bytes: &[u8], format: DataFormat) -> Result<Table, TableError> {
    match format {
        DataFormat::Csv => csv_from_reader(bytes, Path::new(IN_MEMORY), &CsvOptions::default()),
        DataFormat::Parquet => {
            parquet_from(bytes::Bytes::copy_from_slice(bytes), Path::new(IN_MEMORY))
        }
    }
}

/// A reader that notes where every line break is, so a record's byte offset (which csv
/// reports) becomes the line it is on, whatever the line endings.
///
/// It also stops at a line longer than `max_line` bytes (an I/O error for csv; `too_long`
/// says which line), so a file without line breaks is never buffered whole.
struct LineIndex<R> {
    inner: R,
    offset: u64,
    breaks: Vec<u64>,
    /// Line breaks dropped from the front of `breaks`.
    forgotten: u64,
    max_line: u64,
    line_len: u64,
    too_long: Option<u64>,
}

impl<R> LineIndex<R> {
    /// The 1-based line of the byte at `offset` (not before the last [`LineIndex::forget_before`]).
    fn line_of(&self, offset: u64) -> u64 {
        self.forgotten + self.breaks.partition_point(|b| *b < offset) as u64 + 1
    }

    /// Forgets the line breaks before `offset`, which no later record can start before, so
    /// a file read in chunks keeps only the current chunk's.
    fn forget_before(&mut self, offset: u64) {
        let k = self.breaks.partition_point(|b| *b < offset);
        self.breaks.drain(..k);
        self.forgotten += k as u64;
    }
}

impl<R: io::Read> io::Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.too_long.is_some() {
            return Err(io::Error::other("line too long"));
        }
        let n = self.inner.read(buf)?;
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                self.breaks.push(self.offset + i as u64);
                self.line_len = 0;
            } else {
                self.line_len += 1;
                if self.line_len > self.max_line {
                    self.too_long = Some(self.breaks.len() as u64 + 1);
                    return Err(io::Error::other("line too long"));
                }
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

fn csv_from_reader(
    file: impl io::Read,
    path: &Path,
    options: &CsvOptions,
) -> Result<Table, TableError> {
    let mut records = CsvRecords::open(file, path, options)?;
    let chunk = records.next_chunk(usize::MAX)?;
    records.check_duplicates()?;
    let chunk = chunk.expect("the first chunk of a file is there, if without rows");
    Ok(records.table(chunk, 0, &options.types))
}

/// Reads a CSV file with a header row in tables of at most `rows_per_chunk` rows (at least
/// one), calling `each` with each in file order, so a file larger than memory can be
/// summarised ([`drift::LiveSample`](crate::drift::LiveSample)). Memory is that of one chunk.
///
/// # Guarantees
/// Every chunk has every column, with the type a whole read ([`read_csv_with`]) gives it:
/// the types `options` does not force are inferred over the whole file in a first pass, so
/// the file is read twice unless every column's type is forced. [`Table::file_line`] of a
/// chunk's row is its line in the file.
///
/// A file without rows gives one table without rows, so `each` sees its columns.
///
/// # Errors
/// Those of [`read_csv_with`]; chunks before the failing line have been passed to `each`.
pub fn read_csv_chunks(
    path: impl AsRef<Path>,
    options: &CsvOptions,
    rows_per_chunk: usize,
    mut each: impl FnMut(Table),
) -> Result<(), TableError> {
    let path = path.as_ref();
    let open = || {
        File::open(path).map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let rows_per_chunk = rows_per_chunk.max(1);
    let mut records = CsvRecords::open(open()?, path, options)?;
    records.check_duplicates()?;
    let mut types = options.types.clone();
    if records.headers.iter().any(|h| !types.contains_key(h)) {
        let mut inferred: Vec<Inference> = vec![Inference::default(); records.headers.len()];
        while let Some(chunk) = records.next_chunk(rows_per_chunk)? {
            for (inference, col) in inferred.iter_mut().zip(&chunk.raw) {
                (0..col.ends.len()).for_each(|i| inference.observe(col.get(i)));
            }
        }
        for (h, inference) in records.headers.iter().zip(&inferred) {
            types.entry(h.clone()).or_insert_with(|| inference.kind());
        }
        records = CsvRecords::open(open()?, path, options)?;
    }
    let mut first_row = 0;
    while let Some(chunk) = records.next_chunk(rows_per_chunk)? {
        let n = chunk.lines.len();
        each(records.table(chunk, first_row, &types));
        first_row += n;
    }
    Ok(())
}

/// The raw cells of some rows of a CSV file, and the line each row is on.
struct RawChunk {
    raw: Vec<RawColumn>,
    lines: Vec<u64>,
}

/// A CSV reader past its header, that gives its records chunk by chunk.
struct CsvRecords<'a, R: io::Read> {
    reader: csv::Reader<LineIndex<R>>,
    headers: Vec<String>,
    path: &'a Path,
    limits: ReadLimits,
    record: csv::StringRecord,
    done: bool,
    /// Chunks given so far.
    chunks: usize,
}

impl<'a, R: io::Read> CsvRecords<'a, R> {
    fn open(file: R, path: &'a Path, options: &CsvOptions) -> Result<Self, TableError> {
        let reader = csv::ReaderBuilder::new()
            .delimiter(options.delimiter)
            .has_headers(true)
            .buffer_capacity(1 << 20)
            .from_reader(LineIndex {
                inner: file,
                offset: 0,
                breaks: Vec::new(),
                forgotten: 0,
                max_line: options.limits.max_line_bytes,
                line_len: 0,
                too_long: None,
            });
        let mut records = CsvRecords {
            reader,
            headers: Vec::new(),
            path,
            limits: options.limits,
            record: csv::StringRecord::new(),
            done: false,
            chunks: 0,
        };
        records.headers = match records.reader.headers() {
            Ok(h) => h
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
                .collect(),
            Err(e) => return Err(records.fail(e)),
        };
        options
            .limits
            .check_columns(path, Some(1), records.headers.len())?;
        Ok(records)
    }

    /// The error for `e`; a line over the limit shows as an I/O error of csv's, so say which
    /// limit instead.
    fn fail(&self, e: csv::Error) -> TableError {
        let path = self.path.to_path_buf();
        if let Some(line) = self.reader.get_ref().too_long {
            return TableError::Limit {
                path,
                line: Some(line),
                setting: "maxLineBytes",
                limit: self.limits.max_line_bytes,
                what: format!(
                    "longer than {} bytes",
                    thousands(self.limits.max_line_bytes as usize)
                ),
            };
        }
        let line = e.position().map_or(0, |p| p.line());
        let message = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("row has {len} fields, the header has {expected_len}"),
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
            _ => e.to_string(),
        };
        TableError::Csv {
            path,
            line,
            message,
        }
    }

    fn check_duplicates(&self) -> Result<(), TableError> {
        let mut seen = std::collections::HashSet::new();
        for h in &self.headers {
            if !seen.insert(h) {
                return Err(TableError::DuplicateColumn(h.clone()));
            }
        }
        Ok(())
    }

    /// The next at most `max_rows` records (`None` past the last; the first chunk of a file
    /// without rows is empty, not `None`, so a whole read still gets its columns).
    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<RawChunk>, TableError> {
        if self.done {
            return Ok(None);
        }
        let at = self.reader.position().byte();
        self.reader.get_mut().forget_before(at);
        let mut raw: Vec<RawColumn> = self
            .headers
            .iter()
            .map(|_| RawColumn {
                bytes: Vec::new(),
                ends: Vec::new(),
            })
            .collect();
        let mut lines: Vec<u64> = Vec::new();
        while lines.len() < max_rows {
            match self.reader.read_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Err(e) => return Err(self.fail(e)),
            }
            for (col, field) in raw.iter_mut().zip(self.record.iter()) {
                col.bytes.extend_from_slice(field.trim().as_bytes());
                col.ends.push(col.bytes.len());
            }
            // The record's last byte is just before where the reader is now (its line
            // break, a `\r` of `\r\n`, or the end of the input); its first line is that line
            // less the line breaks inside quoted fields. Blank lines before it are not its
            // own.
            let end = self.reader.position().byte().saturating_sub(1);
            let breaks: u64 = self
                .record
                .iter()
                .map(|f| f.bytes().filter(|b| *b == b'\n').count() as u64)
                .sum();
            lines.push(self.reader.get_ref().line_of(end).saturating_sub(breaks));
        }
        if lines.is_empty() && self.chunks > 0 {
            return Ok(None);
        }
        self.chunks += 1;
        Ok(Some(RawChunk { raw, lines }))
    }

    /// The table of `chunk`, whose first row is row `first_row` of the file.
    fn table(
        &self,
        chunk: RawChunk,
        first_row: usize,
        types: &BTreeMap<String, ColumnKind>,
    ) -> Table {
        use rayon::prelude::*;
        let columns: Vec<ColumnData> = chunk
            .raw
            .par_iter()
            .zip(self.headers.par_iter())
            .map(|(col, name)| convert_column(col, types.get(name).copied()))
            .collect();
        let mut table = Table::from_columns(self.headers.iter().cloned().zip(columns))
            .expect("CSV columns are named once (checked) and of equal length");
        let lines = chunk.lines;
        let after_header =
            first_row == 0 && lines.iter().enumerate().all(|(i, l)| *l == i as u64 + 2);
        table.lines = if after_header {
            FileLines::AfterHeader
        } else {
            FileLines::Listed(lines)
        };
        table
    }
}

/// The narrowest type every present cell of a column fits (see the module docs), cell by
/// cell, so it can be inferred over a file read in chunks.
#[derive(Debug, Clone, Copy)]
struct Inference {
    can_int: bool,
    can_float: bool,
    can_bool: bool,
    any_present: bool,
}

impl Default for Inference {
    fn default() -> Self {
        Inference {
            can_int: true,
            can_float: true,
            can_bool: true,
            any_present: false,
        }
    }
}

impl Inference {
    fn is_str(&self) -> bool {
        !self.can_int && !self.can_float && !self.can_bool
    }

    fn observe(&mut self, s: &str) {
        if self.is_str() || is_na(s) {
            return;
        }
        self.any_present = true;
        if self.can_int && s.parse::<i64>().is_err() {
            self.can_int = false;
        }
        if self.can_float && !self.can_int && s.parse::<f64>().is_err() {
            self.can_float = false;
        }
        if self.can_bool && parse_bool(s).is_none() {
            self.can_bool = false;
        }
    }

    fn kind(&self) -> ColumnKind {
        if self.can_int && !self.can_bool {
            ColumnKind::Int
        } else if self.can_float && !self.can_bool {
            ColumnKind::Float
        } else if self.can_bool {
            // All cells missing: bool would be a guess; call it float.
            if self.any_present {
                ColumnKind::Bool
            } else {
                ColumnKind::Float
            }
        } else {
            ColumnKind::Str
        }
    }
}

fn infer_kind(col: &RawColumn) -> ColumnKind {
    let mut inference = Inference::default();
    for i in 0..col.ends.len() {
        inference.observe(col.get(i));
        if inference.is_str() {
            break;
        }
    }
    inference.kind()
}

fn convert_column(col: &RawColumn, forced: Option<ColumnKind>) -> ColumnData {
    let n = col.ends.len();
    let kind = forced.unwrap_or_else(|| infer_kind(col));
    match kind {
        ColumnKind::Int => ColumnData::Int(
            (0..n)
                .map(|i| {
                    let s = col.get(i);
                    s.parse::<i64>().ok().or_else(|| {
                        // Forced int: accept integral floats like `3.0`.
                        s.parse::<f64>()
                            .ok()
                            .filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15)
                            .map(|x| x as i64)
                    })
                })
                .collect(),
        ),
        ColumnKind::Float => ColumnData::Float(
            (0..n)
                .map(|i| {
                    let s = col.get(i);
                    if is_na(s) {
                        f64::NAN
                    } else {
                        fast_parse_f64(s)
                    }
                })
                .collect(),
        ),
        ColumnKind::Bool => ColumnData::Bool(
            (0..n)
                .map(|i| {
                    let s = col.get(i);
                    parse_bool(s).or(match s {
                        "1" => Some(true),
                        "0" => Some(false),
                        _ => None,
                    })
                })
                .collect(),
        ),
        ColumnKind::Str => ColumnData::Str(
            (0..n)
                .map(|i| {
                    let s = col.get(i);
                    (!is_na(s)).then(|| s.to_string())
                })
                .collect(),
        ),
    }
}

fn fast_parse_f64(s: &str) -> f64 {
    s.parse::<f64>().unwrap_or(f64::NAN)
}

/// Reads a Parquet file (flat schema; uncompressed, snappy, zstd, gzip or lz4). Integers of 32 or 64 bits become
/// [`ColumnData::Int`], floats and doubles [`ColumnData::Float`], booleans
/// [`ColumnData::Bool`], byte arrays [`ColumnData::Str`]. Nested columns are refused.
pub fn read_parquet(path: impl AsRef<Path>) -> Result<Table, TableError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parquet_from(file, path)
}

/// Decodes a Parquet file. The `parquet` crate panics on some corrupt pages (a dictionary
/// page shorter than it says, a data page before its dictionary): those are a corrupt file
/// here, not a crash (found by `crates/fuzz`).
fn parquet_from<R: parquet::file::reader::ChunkReader + 'static>(
    file: R,
    path: &Path,
) -> Result<Table, TableError> {
    crate::guard::catch_quietly(|| parquet_unguarded(file, path)).unwrap_or_else(|message| {
        Err(TableError::Parquet {
            path: path.to_path_buf(),
            message: format!("the file is corrupt (the Parquet decoder failed: {message})"),
        })
    })
}

fn parquet_unguarded<R: parquet::file::reader::ChunkReader + 'static>(
    file: R,
    path: &Path,
) -> Result<Table, TableError> {
    use parquet::column::reader::ColumnReader;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let perr = |e: parquet::errors::ParquetError| TableError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let reader = SerializedFileReader::new(file).map_err(perr)?;
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr_ptr();
    let n_cols = schema.num_columns();
    let mut columns: Vec<ColumnData> = Vec::with_capacity(n_cols);
    let mut names = Vec::with_capacity(n_cols);
    for c in 0..n_cols {
        let descr = schema.column(c);
        if descr.max_rep_level() > 0 {
            return Err(TableError::Parquet {
                path: path.to_path_buf(),
                message: format!(
                    "column `{}` is nested (a list or map); only flat tables are supported",
                    descr.path()
                ),
            });
        }
        names.push(descr.name().to_string());
        columns.push(match descr.physical_type() {
            parquet::basic::Type::BOOLEAN => ColumnData::Bool(Vec::new()),
            parquet::basic::Type::INT32 | parquet::basic::Type::INT64 => {
                ColumnData::Int(Vec::new())
            }
            parquet::basic::Type::FLOAT | parquet::basic::Type::DOUBLE => {
                ColumnData::Float(Vec::new())
            }
            parquet::basic::Type::BYTE_ARRAY | parquet::basic::Type::FIXED_LEN_BYTE_ARRAY => {
                ColumnData::Str(Vec::new())
            }
            parquet::basic::Type::INT96 => {
                return Err(TableError::Parquet {
                    path: path.to_path_buf(),
                    message: format!(
                        "column `{}` is an INT96 timestamp, which is not supported",
                        descr.name()
                    ),
                });
            }
        });
    }
    const BATCH: usize = 64 * 1024;
    for g in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(g).map_err(perr)?;
        let rows = rg.metadata().num_rows() as usize;
        for (c, out) in columns.iter_mut().enumerate() {
            let max_def = schema.column(c).max_def_level();
            let mut defs: Vec<i16> = Vec::new();
            let col_reader = rg.get_column_reader(c).map_err(perr)?;
            // Reads all records of the chunk; `push` receives (values, def levels or empty).
            macro_rules! read_all {
                ($r:expr, $push:expr) => {{
                    let mut r = $r;
                    let mut read = 0;
                    while read < rows {
                        let mut values = Vec::new();
                        defs.clear();
                        let (recs, _, _) = r
                            .read_records(
                                BATCH.min(rows - read),
                                (max_def > 0).then_some(&mut defs),
                                None,
                                &mut values,
                            )
                            .map_err(perr)?;
                        if recs == 0 {
                            break;
                        }
                        read += recs;
                        let mut it = values.into_iter();
                        if max_def > 0 {
                            for &d in &defs {
                                $push(if d == max_def { it.next() } else { None });
                            }
                        } else {
                            for v in it {
                                $push(Some(v));
                            }
                        }
                    }
                }};
            }
            match (col_reader, out) {
                (ColumnReader::BoolColumnReader(r), ColumnData::Bool(v)) => {
                    read_all!(r, |x: Option<bool>| v.push(x))
                }
                (ColumnReader::Int32ColumnReader(r), ColumnData::Int(v)) => {
                    read_all!(r, |x: Option<i32>| v.push(x.map(i64::from)))
                }
                (ColumnReader::Int64ColumnReader(r), ColumnData::Int(v)) => {
                    read_all!(r, |x: Option<i64>| v.push(x))
                }
                (ColumnReader::FloatColumnReader(r), ColumnData::Float(v)) => {
                    read_all!(r, |x: Option<f32>| v.push(x.map_or(f64::NAN, f64::from)))
                }
                (ColumnReader::DoubleColumnReader(r), ColumnData::Float(v)) => {
                    read_all!(r, |x: Option<f64>| v.push(x.unwrap_or(f64::NAN)))
                }
                (ColumnReader::ByteArrayColumnReader(r), ColumnData::Str(v)) => {
                    read_all!(r, |x: Option<parquet::data_type::ByteArray>| v
                        .push(x.map(|b| String::from_utf8_lossy(b.data()).into_owned())))
                }
                (ColumnReader::FixedLenByteArrayColumnReader(r), ColumnData::Str(v)) => {
                    read_all!(r, |x: Option<parquet::data_type::FixedLenByteArray>| v
                        .push(x.map(|b| String::from_utf8_lossy(b.data()).into_owned())))
                }
                _ => {
                    return Err(TableError::Parquet {
                        path: path.to_path_buf(),
                        message: format!("column {c}: unexpected physical type"),
                    });
                }
            }
        }
    }
    // pandas writes its index as a column; it is not data.
    let mut t = Table::from_columns(names.into_iter().zip(columns))?;
    if t.index_of("__index_level_0__").is_some() {
        t = t.without("__index_level_0__");
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes `table` as CSV with a header row; missing cells are empty.
pub fn write_csv(table: &Table, path: impl AsRef<Path>) -> Result<(), TableError> {
    let path = path.as_ref();
    let file = File::create(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    write_csv_to(table, BufWriter::with_capacity(1 << 20, file), path)
}

/// `table` as CSV bytes with a header row, as [`write_csv`] writes it.
pub fn csv_bytes(table: &Table) -> Result<Vec<u8>, TableError> {
    let mut out = Vec::new();
    write_csv_to(table, &mut out, Path::new(IN_MEMORY))?;
    Ok(out)
}

/// Reads a table from bytes in memory: Parquet when they start with its magic number, else
/// CSV.
pub fn read_bytes_sniffed(bytes: &[u8]) -> Result<Table, TableError> {
    let format = if bytes.starts_with(b"PAR1") {
        DataFormat::Parquet
    } else {
        DataFormat::Csv
    };
    read_bytes(bytes, format)
}

fn write_csv_to(table: &Table, out: impl Write, path: &Path) -> Result<(), TableError> {
    let io_err = |source| TableError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_writer(out);
    let to_table_err = |e: csv::Error| TableError::Csv {
        path: path.to_path_buf(),
        line: 0,
        message: e.to_string(),
    };
    w.write_record(table.names()).map_err(to_table_err)?;
    let mut fields: Vec<String> = vec![String::new(); table.n_cols()];
    for row in 0..table.n_rows() {
        for (f, (_, col)) in fields.iter_mut().zip(table.columns()) {
            *f = col.string_at(row).unwrap_or_default();
        }
        w.write_record(&fields).map_err(to_table_err)?;
    }
    let mut inner = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    inner.flush().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn csv_types_are_inferred_and_missing_cells_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "a.csv",
            "i,f,b,s,empty\n1,1.5,true,x,\n2,NA,False,,\n,3,TRUE,y z,\n",
        );
        let t = read_csv(&p).unwrap();
        assert_eq!(t.n_rows(), 3);
        assert_eq!(
            t.column("i").unwrap(),
            &ColumnData::Int(vec![Some(1), Some(2), None])
        );
        let f = t.column("f").unwrap().to_f64().unwrap();
        assert_eq!(f[0], 1.5);
        assert!(f[1].is_nan());
        assert_eq!(
            t.column("b").unwrap(),
            &ColumnData::Bool(vec![Some(true), Some(false), Some(true)])
        );
        assert_eq!(
            t.column("s").unwrap(),
            &ColumnData::Str(vec![Some("x".into()), None, Some("y z".into())])
        );
        assert_eq!(t.column("empty").unwrap().kind(), ColumnKind::Float);
    }

    #[test]
    fn csv_round_trips_through_write_csv() {
        let dir = tempfile::tempdir().unwrap();
        let t = Table::from_columns([
            ("x", ColumnData::Float(vec![1.0, f64::NAN, -2.25])),
            ("n", ColumnData::Int(vec![Some(3), None, Some(-1)])),
            (
                "c",
                ColumnData::Str(vec![Some("a,b".into()), Some("\"q\"".into()), None]),
            ),
        ])
        .unwrap();
        let p = dir.path().join("out.csv");
        write_csv(&t, &p).unwrap();
        let back = read_csv(&p).unwrap();
        assert_eq!(back.names(), t.names());
        assert_eq!(back.column("n"), t.column("n"));
        assert_eq!(back.column("c"), t.column("c"));
        let x = back.column("x").unwrap().to_f64().unwrap();
        assert_eq!((x[0], x[2]), (1.0, -2.25));
        assert!(x[1].is_nan());
        // The same bytes in memory, read back without a file.
        let bytes = csv_bytes(&t).unwrap();
        assert_eq!(bytes, std::fs::read(&p).unwrap());
        assert_eq!(
            read_bytes_sniffed(&bytes).unwrap().column("c"),
            t.column("c")
        );
    }

    /// Chunks read by `read_csv_chunks`, with their first lines.
    fn chunks_of(path: &Path, options: &CsvOptions, rows: usize) -> Vec<Table> {
        let mut chunks = Vec::new();
        read_csv_chunks(path, options, rows, |t| chunks.push(t)).unwrap();
        chunks
    }

    /// The first rows alone would make `n` an int and `flag` a bool; the whole file makes
    /// them float and string, and so does every chunk. Blank lines and a quoted line break
    /// move the lines, which chunks keep.
    #[test]
    fn chunks_have_the_types_and_lines_of_a_whole_read() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "n,flag,c,empty\n1,true,a,\n2,false,\"b\nb\",NA\n\n3,true,c,\n4.5,maybe,d,\n5,true,,\n";
        let p = write(dir.path(), "t.csv", text);
        let whole = read_csv(&p).unwrap();
        for rows in [1, 2, 3, 5, 100] {
            let chunks = chunks_of(&p, &CsvOptions::default(), rows);
            assert_eq!(
                chunks.len(),
                whole.n_rows().div_ceil(rows),
                "{rows} a chunk"
            );
            let mut row = 0;
            for chunk in &chunks {
                assert!(chunk.n_rows() <= rows);
                let range: Vec<usize> = (row..row + chunk.n_rows()).collect();
                // Cells as text, as NaN is not equal to itself.
                let cells = |t: &Table| -> Vec<(ColumnKind, Vec<Option<String>>)> {
                    t.columns()
                        .map(|(_, c)| (c.kind(), (0..c.len()).map(|i| c.string_at(i)).collect()))
                        .collect()
                };
                assert_eq!(cells(chunk), cells(&whole.take(&range)), "rows {range:?}");
                for (i, r) in range.iter().enumerate() {
                    assert_eq!(chunk.file_line(i), whole.file_line(*r), "row {r}");
                }
                row += chunk.n_rows();
            }
            assert_eq!(row, whole.n_rows());
        }
        assert_eq!(whole.column("n").unwrap().kind(), ColumnKind::Float);
        assert_eq!(whole.column("flag").unwrap().kind(), ColumnKind::Str);
        assert_eq!(whole.file_line(2), Some(6));
    }

    /// Forced types are kept, and a file without rows still shows its columns once.
    #[test]
    fn chunks_take_forced_types_and_an_empty_file_gives_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.csv", "code,x\n1,2\n2,3\n");
        let mut options = CsvOptions::default();
        options.types.insert("code".into(), ColumnKind::Str);
        let chunks = chunks_of(&p, &options, 1);
        assert_eq!(
            chunks[1].column("code"),
            Some(&ColumnData::Str(vec![Some("2".into())]))
        );
        assert_eq!(chunks[1].column("x"), Some(&ColumnData::Int(vec![Some(3)])));
        let p = write(dir.path(), "empty.csv", "a,b\n");
        let chunks = chunks_of(&p, &CsvOptions::default(), 10);
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            (chunks[0].n_rows(), chunks[0].names()),
            (0, &["a".to_string(), "b".to_string()][..])
        );
    }

    /// A bad row fails the read with its line, after the chunks before it.
    #[test]
    fn a_ragged_row_in_a_later_chunk_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "bad.csv", "a,b\n1,2\n3,4\n5\n");
        let mut options = CsvOptions::default();
        // Forced types: no inference pass, so the first chunk is given before the error.
        options.types.insert("a".into(), ColumnKind::Int);
        options.types.insert("b".into(), ColumnKind::Int);
        let mut given = 0;
        let e = read_csv_chunks(&p, &options, 2, |_| given += 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 4") && e.contains("1 fields, the header has 2"),
            "{e}"
        );
        assert_eq!(given, 1);
        let e = read_csv_chunks(&p, &CsvOptions::default(), 2, |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn ragged_csv_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "bad.csv", "a,b\n1,2\n3\n");
        let e = read_csv(&p).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("1 fields, the header has 2"), "{e}");
    }

    /// Issue 11: a file without line breaks was buffered whole and quoted in every message.
    #[test]
    fn read_limits_name_the_file_the_line_and_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReadLimits {
            max_line_bytes: 64,
            max_columns: 3,
            max_file_bytes: 1000,
        };
        let long = write(
            dir.path(),
            "long.csv",
            &format!("a,b\n1,2\n{}\n", "9".repeat(100)),
        );
        let e = read_limited(&long, DataFormat::Csv, limits)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("long.csv: line 3: longer than 64 bytes; if the file is right, raise the Dataset's `limits.maxLineBytes` (now 64)"),
            "{e}"
        );
        let wide = write(dir.path(), "wide.csv", "a,b,c,d\n1,2,3,4\n");
        let e = read_limited(&wide, DataFormat::Csv, limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("wide.csv: line 1: the header has 4 columns; if the file is right, raise the Dataset's `limits.maxColumns` (now 3)"), "{e}");
        let big = write(dir.path(), "big.csv", &"a\n1\n".repeat(400));
        let e = read_limited(&big, DataFormat::Csv, limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("big.csv: the file has 1,600 bytes; if the file is right, raise the Dataset's `limits.maxFileBytes` (now 1,000)"), "{e}");
        let e = read_bytes_limited(b"a,b,c,d\n", DataFormat::Csv, "data/x.csv", limits)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("data/x.csv: line 1: the header has 4"), "{e}");
        let ok = read_limited(
            &wide,
            DataFormat::Csv,
            ReadLimits {
                max_columns: 4,
                ..limits
            },
        );
        assert_eq!(ok.unwrap().n_cols(), 4);
    }

    #[test]
    fn forced_types_keep_digit_categories_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c.csv", "zip,v\n01234,1\n99999,2\n");
        let mut o = CsvOptions::default();
        o.types.insert("zip".into(), ColumnKind::Str);
        let t = read_csv_with(&p, &o).unwrap();
        assert_eq!(
            t.column("zip").unwrap().string_at(0).as_deref(),
            Some("01234")
        );
    }

    #[test]
    fn parquet_codecs() {
        use parquet::basic::{Compression, GzipLevel, ZstdLevel};
        use parquet::data_type::DoubleType;
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        for codec in [
            Compression::ZSTD(ZstdLevel::default()),
            Compression::GZIP(GzipLevel::default()),
            Compression::LZ4_RAW,
            Compression::UNCOMPRESSED,
        ] {
            let p = dir.path().join("c.parquet");
            let schema = Arc::new(
                parquet::schema::parser::parse_message_type("message t { required double x; }")
                    .unwrap(),
            );
            let props = Arc::new(WriterProperties::builder().set_compression(codec).build());
            let mut w =
                SerializedFileWriter::new(File::create(&p).unwrap(), schema, props).unwrap();
            let mut rg = w.next_row_group().unwrap();
            let mut c = rg.next_column().unwrap().unwrap();
            let xs: Vec<f64> = (0..1000).map(f64::from).collect();
            c.typed::<DoubleType>()
                .write_batch(&xs, None, None)
                .unwrap();
            c.close().unwrap();
            rg.close().unwrap();
            w.close().unwrap();
            let t = read_parquet(&p).unwrap();
            assert_eq!(t.column("x").unwrap(), &ColumnData::Float(xs), "{codec:?}");
        }
    }

    #[test]
    fn parquet_is_read_with_nulls() {
        use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type(
                "message t { required double x; optional int64 n; optional binary s (UTF8); }",
            )
            .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build(),
        );
        let mut w = SerializedFileWriter::new(File::create(&p).unwrap(), schema, props).unwrap();
        let mut rg = w.next_row_group().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<DoubleType>()
            .write_batch(&[1.0, 2.0, 3.0], None, None)
            .unwrap();
        c.close().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<Int64Type>()
            .write_batch(&[7, 9], Some(&[1, 0, 1]), None)
            .unwrap();
        c.close().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(
                &[ByteArray::from("a"), ByteArray::from("b")],
                Some(&[1, 1, 0]),
                None,
            )
            .unwrap();
        c.close().unwrap();
        rg.close().unwrap();
        w.close().unwrap();

        let t = read(&p, DataFormat::Parquet).unwrap();
        assert_eq!(t.n_rows(), 3);
        assert_eq!(
            t.column("x").unwrap(),
            &ColumnData::Float(vec![1.0, 2.0, 3.0])
        );
        assert_eq!(
            t.column("n").unwrap(),
            &ColumnData::Int(vec![Some(7), None, Some(9)])
        );
        assert_eq!(
            t.column("s").unwrap(),
            &ColumnData::Str(vec![Some("a".into()), Some("b".into()), None])
        );
    }

    #[test]
    fn parquet_written_by_pandas_is_read() {
        // pandas 3 + pyarrow, snappy: doubles, nullable ints, bools, strings, a categorical
        // (dictionary) column, int32, and the index column pandas adds.
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pandas.parquet");
        let t = read_parquet(&p).unwrap();
        assert_eq!(t.names(), ["x", "n", "b", "s", "cat", "i32"]);
        let x = t.column("x").unwrap().to_f64().unwrap();
        assert_eq!((x[0], x[2], x[3]), (1.5, 3.25, 4.0));
        assert!(x[1].is_nan());
        assert_eq!(
            t.column("n").unwrap(),
            &ColumnData::Int(vec![Some(1), None, Some(3), Some(4)])
        );
        assert_eq!(
            t.column("b").unwrap(),
            &ColumnData::Bool(vec![Some(true), Some(false), None, Some(true)])
        );
        assert_eq!(
            t.column("s").unwrap(),
            &ColumnData::Str(vec![
                Some("a".into()),
                None,
                Some("c".into()),
                Some("a".into())
            ])
        );
        assert_eq!(
            t.column("cat").unwrap(),
            &ColumnData::Str(vec![
                Some("red".into()),
                Some("blue".into()),
                Some("red".into()),
                None
            ])
        );
        assert_eq!(
            t.column("i32").unwrap(),
            &ColumnData::Int(vec![Some(1), Some(2), Some(3), Some(4)])
        );
    }

    #[test]
    fn tables_are_read_from_memory() {
        let t = read_bytes(b"a,b\n1,x\n", DataFormat::Csv).unwrap();
        assert_eq!(t.names(), ["a", "b"]);
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pandas.parquet");
        let bytes = std::fs::read(&p).unwrap();
        // Debug output, because NaN != NaN.
        assert_eq!(
            format!("{:?}", read_bytes(&bytes, DataFormat::Parquet).unwrap()),
            format!("{:?}", read_parquet(&p).unwrap())
        );
        let e = read_bytes(b"not parquet", DataFormat::Parquet).unwrap_err();
        assert!(e.to_string().starts_with("<in-memory data>: "), "{e}");
    }

    /// Files the fuzzer found the `parquet` crate panicking on: a corrupt file is an error.
    #[test]
    fn a_corrupt_parquet_file_is_an_error_not_a_crash() {
        for name in [
            "corrupt-dictionary.parquet",
            "short-dictionary-page.parquet",
        ] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(name);
            let e = read_parquet(&p).unwrap_err();
            assert!(e.to_string().contains("the file is corrupt"), "{name}: {e}");
        }
    }

    #[test]
    fn take_and_without() {
        let t = Table::from_columns([
            ("a", ColumnData::Int(vec![Some(1), Some(2), Some(3)])),
            ("b", ColumnData::Float(vec![1.0, 2.0, 3.0])),
        ])
        .unwrap();
        let s = t.take(&[2, 0]);
        assert_eq!(
            s.column("a").unwrap(),
            &ColumnData::Int(vec![Some(3), Some(1)])
        );
        assert_eq!(t.without("a").names(), &["b".to_string()]);
        assert!(matches!(
            Table::from_columns([
                ("a", ColumnData::Float(vec![1.0])),
                ("b", ColumnData::Float(vec![]))
            ]),
            Err(TableError::LengthMismatch { .. })
        ));
        assert!(t.require("zz").unwrap_err().to_string().contains("a, b"));
    }
}
