//! `kind: Dataset`: a versioned table.

use super::*;

/// `kind: Dataset` — a versioned table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatasetSpec {
    /// Where the data is: a path relative to the project, `s3://`, `az://` or `https://`.
    /// Not allowed with `transform` (the transform's output is the source). A project file is
    /// versioned by its content; a URL by what the target reads at plan time (an S3
    /// VersionId or ETag, an HTTP ETag or Last-Modified), so a change upstream retrains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `csv` or `parquet`; default from the source's extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    /// Expected blake3 digest of a remote source: pins a download, and is its version (an
    /// `https://` source whose server sends neither ETag nor Last-Modified needs one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The label column (supervised learning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Columns and rules the data must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<DataSchema>,
    /// Train/validation/test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Derive this dataset from others with a command (like a DVC stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
    /// The most the target reads from the data file (a line, columns, the file's size); a
    /// file past one fails with an error naming it. Raise one for data that is right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<DataLimits>,
}

/// How much a reader takes from a Dataset's file before refusing it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataLimits {
    /// Bytes of one line of a CSV file (default 1 MiB: 1048576).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_line_bytes: Option<u64>,
    /// Columns of the table (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_columns: Option<u64>,
    /// Bytes of the file (default 16 GiB: 17179869184).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_file_bytes: Option<u64>,
}

impl DataLimits {
    /// `maxLineBytes` when not given.
    pub const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;
    /// `maxColumns` when not given.
    pub const DEFAULT_MAX_COLUMNS: u64 = 10_000;
    /// `maxFileBytes` when not given.
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 30;

    /// `maxLineBytes`, or its default.
    pub fn line_bytes(&self) -> u64 {
        self.max_line_bytes.unwrap_or(Self::DEFAULT_MAX_LINE_BYTES)
    }

    /// `maxColumns`, or its default.
    pub fn columns(&self) -> u64 {
        self.max_columns.unwrap_or(Self::DEFAULT_MAX_COLUMNS)
    }

    /// `maxFileBytes`, or its default.
    pub fn file_bytes(&self) -> u64 {
        self.max_file_bytes.unwrap_or(Self::DEFAULT_MAX_FILE_BYTES)
    }
}

/// File formats for tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

/// The declared shape of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataSchema {
    /// Columns, in order.
    pub columns: Vec<Column>,
    /// Fewest rows accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u64>,
    /// Largest fraction of missing cells per column (0..1). Default 0 for non-nullable columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_missing_fraction: Option<f64>,
    /// Whether columns not listed are allowed (default false). Columns not listed are never
    /// features: a model trains on declared `role: feature` columns only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_extra_columns: Option<bool>,
}

impl DataSchema {
    /// The declared column `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The column with `role: weight`, if any (validation allows at most one).
    pub fn weight_column(&self) -> Option<&Column> {
        self.columns.iter().find(|c| c.role() == ColumnRole::Weight)
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Column {
    /// Column name as in the file header.
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Smallest allowed value (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed value (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Allowed values (categories), on `category` and `int` columns. A column with
    /// categories is categorical to the model (one-hot encoded over exactly these values),
    /// whatever its storage type: `term_months: [12, 24, 36, 60]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// Whether missing values are allowed (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<bool>,
    /// What the column is to a model (default `feature`): only features are trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ColumnRole>,
}

impl Column {
    /// The role, `feature` when not given.
    pub fn role(&self) -> ColumnRole {
        self.role.unwrap_or(ColumnRole::Feature)
    }
}

/// What a column is to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnRole {
    /// An input the model trains on and predicts from.
    Feature,
    /// An identifier: kept in the data (and in captured requests, to join predictions to
    /// labels), never trained on; an endpoint accepts and ignores it.
    Id,
    /// Kept in the data, never trained on.
    Ignore,
    /// A sample weight (a number >= 0) for training; not a feature. At most one per dataset.
    Weight,
}

/// Column value types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// 64-bit float.
    Float,
    /// 64-bit integer.
    Int,
    /// true/false.
    Bool,
    /// One of a fixed set of strings.
    Category,
    /// Free text.
    String,
}

/// How rows are split into train / validation / test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Split {
    /// Fraction of rows for training.
    #[schemars(range(min = 0, max = 1))]
    pub train: f64,
    /// Fraction for validation (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub validation: Option<f64>,
    /// Fraction for testing (default: the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub test: Option<f64>,
    /// Random seed (default 42): the same seed gives the same split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Keep class proportions of this column in every part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stratify: Option<String>,
}

/// A derived dataset: run `command` with the inputs, read `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Transform {
    /// Shell command, run in the project directory with `MLCTL_INPUT_<NAME>` and `MLCTL_OUTPUT` set.
    pub command: String,
    /// Datasets read by the command.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Code directory or file whose content is part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// File the command writes (relative to its output directory), default `output.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Container image the command runs in on cloud targets (default: SageMaker's
    /// scikit-learn image of the target's region); targets that run it on this machine use
    /// the tools on its PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl DatasetSpec {
    /// Fields of this kind (under `spec`) that change what it carries, not what it produces:
    /// a change to one updates the resource in place and never re-reads, re-validates or re-splits the data. Every other field
    /// is part of the fingerprint. (`metadata.labels` is in place on every kind.) `limits`
    /// decide whether a file is read, never what is read from it.
    pub const IN_PLACE: &'static [&'static str] = &["limits"];

    /// Fields (under `spec`) a resource's `overrides.<target>` may set: how much of a file
    /// a machine reads. The data itself is the same on every target, so a version promoted
    /// from one is trained on what the next one has.
    pub const OVERRIDABLE: &'static [&'static str] = &["limits"];

    /// The datasets a `transform` reads.
    pub fn references(&self) -> Vec<Reference> {
        self.transform
            .iter()
            .flat_map(|t| {
                t.inputs.iter().enumerate().map(|(i, n)| {
                    Reference::to(
                        crate::Kind::Dataset,
                        n,
                        &["transform", "inputs", &i.to_string()],
                        true,
                    )
                })
            })
            .collect()
    }

    /// A project-path source (URLs are read by the target, not digested here) and the
    /// transform's code.
    pub fn content_inputs(&self) -> Vec<ContentInput> {
        let mut out = Vec::new();
        if let Some(src) = self.source.as_deref().filter(|s| !s.contains("://")) {
            out.push(ContentInput::new(ContentRole::Data, src, &["source"]));
        }
        if let Some(code) = self.transform.as_ref().and_then(|t| t.code.as_deref()) {
            out.push(ContentInput::new(
                ContentRole::Code,
                code,
                &["transform", "code"],
            ));
        }
        out
    }
}
