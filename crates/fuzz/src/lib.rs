//! Fuzz targets for the parsers that read what users and clients send, and a seeded mutation
//! driver that runs them on stable Rust.
//!
//! Each target takes arbitrary bytes and must return without panicking, whatever they are:
//!
//! | target        | what it parses                                                      |
//! |---------------|---------------------------------------------------------------------|
//! | `spec`        | a project: `mlctl.yaml` plus one manifest, parsed and validated     |
//! | `invocations` | an `/invocations` body, as JSON (every shape) and as CSV            |
//! | `csv`         | a data file, through mlctl-ml's CSV reader                          |
//! | `parquet`     | a data file, through mlctl-ml's Parquet reader                      |
//! | `capture`     | captured records (JSON lines, every target's format), judged by a Monitor |
//!
//! Two ways to run them:
//! - **Stable, in `cargo test`** (`tests/fuzz.rs`): every file of `fuzz/corpus/<target>/` is
//!   run as is, then [`mutate`]d with a fixed seed for `MLCTL_FUZZ_ITERS` iterations per target
//!   (a bounded number in CI; set it higher by hand). A panic is written to
//!   `fuzz/crashes/<target>-<hash>` and fails the test; fix it and move the file into the
//!   corpus, where it stays as a regression test.
//! - **Coverage-guided, by hand**: `fuzz/` is a `cargo fuzz` project over the same functions
//!   (`cargo +nightly fuzz run spec`; needs `cargo install cargo-fuzz`).

use mlctl_serve::parse::{self, Format};
use mlctl_serve::{Column, InputSchema};
use mlctl_spec::Files;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A fuzz target: any bytes, and it must return.
pub type Target = fn(&[u8]);

/// The fuzz targets by name.
pub const TARGETS: [(&str, Target); 5] = [
    ("spec", spec),
    ("invocations", invocations),
    ("csv", csv),
    ("parquet", parquet),
    ("capture", capture),
];

/// A project in memory, its files as bytes decoded the way the disk and git readers do.
struct Project(BTreeMap<String, Vec<u8>>);

impl Files for Project {
    fn read(&self, path: &str) -> std::io::Result<Option<String>> {
        match self.0.get(path) {
            Some(bytes) => Ok(Some(mlctl_spec::decode_utf8(path, bytes.clone())?)),
            None => Ok(None),
        }
    }

    fn list(&self, dir: &str) -> std::io::Result<Option<Vec<String>>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let found: Vec<String> = self
            .0
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        Ok((!found.is_empty()).then_some(found))
    }
}

/// The project every `spec` input is loaded into: the input is `ml/fuzz.yaml`, or all of
/// `mlctl.yaml` when it starts with `kind: Project`'s envelope.
const PROJECT: &str = "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: fuzz\nspec:\n  manifests: [ml/]\n  targets:\n    local:\n      provider: local\n";

/// Parses and validates a project made of these bytes, and renders every diagnostic.
pub fn spec(data: &[u8]) {
    let is_project = data.windows(13).any(|w| w == b"kind: Project");
    let files = if is_project {
        [("mlctl.yaml", data.to_vec()), ("ml/a.yaml", Vec::new())]
    } else {
        [
            ("mlctl.yaml", PROJECT.as_bytes().to_vec()),
            ("ml/fuzz.yaml", data.to_vec()),
        ]
    };
    let project = Project(files.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    let loaded = mlctl_spec::load(&project);
    // Rendering is part of the target: every position must land inside its file.
    for d in loaded.diagnostics.iter().take(50) {
        let _ = d.to_string();
    }
}

fn schema() -> &'static InputSchema {
    static SCHEMA: OnceLock<InputSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        InputSchema::new(vec![
            Column::number("a"),
            Column::number("b").nullable(),
            Column::category("c", ["x", "y", "z"]),
            Column::category("d", ["p", "q"]).nullable(),
        ])
    })
}

/// Parses an `/invocations` body as JSON and as CSV (with and without a declared header),
/// and checks what a successful parse returns.
pub fn invocations(data: &[u8]) {
    let schema = schema();
    let mut out = Vec::new();
    for format in [
        Format::Json,
        Format::Csv { header: None },
        Format::Csv { header: Some(true) },
        Format::Csv {
            header: Some(false),
        },
    ] {
        if let Ok(rows) = parse::parse(data, format, schema, &mut out) {
            assert!(rows >= 1, "a parsed body has at least one row");
            assert_eq!(out.len(), rows * schema.width(), "rows x columns values");
        }
    }
    let _ = parse::format_of(Some(data));
}

/// Reads a data file as CSV.
pub fn csv(data: &[u8]) {
    if let Ok(t) = mlctl_ml::table::read_bytes(data, mlctl_spec::DataFormat::Csv) {
        let _ = t.n_rows();
    }
}

/// Reads a data file as Parquet.
pub fn parquet(data: &[u8]) {
    if let Ok(t) = mlctl_ml::table::read_bytes(data, mlctl_spec::DataFormat::Parquet) {
        let _ = t.n_rows();
    }
}

/// Reads capture files: each line a captured record in any target's format (mlctl's,
/// script mode's, SageMaker's data capture), judged by a Monitor with drift, data quality
/// and SLOs against the iris profile, as `mlctl monitor run` does.
pub fn capture(data: &[u8]) {
    use mlctl_core::monitoring::{Evaluation, Window, evaluate};
    static BASELINE: OnceLock<(mlctl_ml::profile::Profile, Vec<String>)> = OnceLock::new();
    let (profile, features) = BASELINE.get_or_init(|| {
        let iris = mlctl_ml::table::read_bytes(IRIS.as_bytes(), mlctl_spec::DataFormat::Csv)
            .expect("the iris sample reads");
        let profile = mlctl_ml::profile::profile(&iris);
        let features = iris
            .names()
            .iter()
            .filter(|n| *n != "species")
            .cloned()
            .collect();
        (profile, features)
    });
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for r in &records {
        let _ = mlctl_core::monitoring::rows_of(r);
    }
    static SPEC: OnceLock<mlctl_spec::MonitorSpec> = OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        serde_json::from_value(serde_json::json!({
            "endpoint": "iris", "minSamples": 1, "drift": {}, "quality": {},
            "slo": {"p99LatencyMs": 100, "maxErrorRate": 0.1}
        }))
        .expect("a Monitor spec")
    });
    let _ = evaluate(&Evaluation {
        name: "fuzz",
        spec,
        baseline: "iris".into(),
        profile,
        features,
        records: &records,
        window: Window::Last(records.len().max(1)),
        now: time::OffsetDateTime::UNIX_EPOCH,
        commit: "c".into(),
        context: Default::default(),
    });
}

/// The first rows of iris: the baseline the `capture` target judges against.
const IRIS: &str = "sepal_length,sepal_width,petal_length,petal_width,species
5.1,3.5,1.4,0.2,setosa
4.9,3.0,1.4,0.2,setosa
7.0,3.2,4.7,1.4,versicolor
6.4,3.2,4.5,1.5,versicolor
6.3,3.3,6.0,2.5,virginica
5.8,2.7,5.1,1.9,virginica
";

/// A small seeded generator (xorshift64*), so a run is the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is moved off the fixed point).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Byte strings the parsers give meaning to: spliced in, they reach deeper than random bytes.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b": ",
    b"- ",
    b"  ",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"\"",
    b"'",
    b"&a ",
    b"*a",
    b"!!",
    b"---\n",
    b"...",
    b"~",
    b"null",
    b"true",
    b"NaN",
    b"-1e309",
    b"1e400",
    b"0x",
    b"\\u0000",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"${env:X}",
    b"apiVersion: mlctl/v1\n",
    b"kind: ",
    b"metadata:\n  name: ",
    b"spec:\n",
    b"dataframe_split",
    b"instances",
    b"inputs",
    b"columns",
    b"data",
    b"index",
    b"\"a\"",
    b"\r\n",
    b"PAR1",
    b"\t",
    b"#",
    b"|\n",
    b">\n",
    b"<<: *a\n",
];

/// One seeded mutation of `input`: flips, inserts, deletes, duplicates or splices bytes and
/// tokens, a few times over, never growing past `max` bytes.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], max: usize) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next_u64() as u8;
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 if !v.is_empty() => {
                // Repeat a slice: deep nesting, long lines, many columns.
                let start = rng.below(v.len());
                let end = (start + 1 + rng.below(32)).min(v.len());
                let piece = v[start..end].to_vec();
                for _ in 0..1 + rng.below(64) {
                    v.splice(at..at, piece.iter().copied());
                }
            }
            5 if !corpus.is_empty() => {
                // Splice in part of another input.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(256)).min(other.len());
                    v.splice(at..at, other[start..end].iter().copied());
                }
            }
            6 => v.truncate(at),
            _ => v.insert(at, rng.next_u64() as u8),
        }
    }
    v.truncate(max);
    v
}
