//! Turns table columns into the numeric matrix the algorithms learn from.
//!
//! Two layouts are used:
//! * a **raw row** has one `f64` per input column, in the model's input order: the number for a
//!   numeric column, the category's index for a categorical one, NaN for missing;
//! * an **encoded row** expands each categorical column into one 0/1 value per category
//!   (one-hot) and replaces a missing number by the training mean.
//!
//! The [`Preprocessor`] is fitted on the training table and stored in the model manifest, so
//! serving encodes exactly as training did.

use crate::table::{ColumnData, ColumnKind, Table};
use mlctl_spec::{ColumnRole, ColumnType, DataSchema};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The kind of an input feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// A number (float, int or bool column).
    Float,
    /// One of `categories` (a text column).
    Category,
}

/// One input column of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    /// Column name.
    pub name: String,
    /// Number or category.
    #[serde(rename = "type")]
    pub kind: FeatureKind,
    /// The categories seen in training, sorted (categorical features only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Whether the training data had missing values, so missing input is accepted.
    pub nullable: bool,
    /// The value used for a missing number (the training mean).
    #[serde(default)]
    pub fill: f64,
    /// The column's type in the data (`float`, `int`, `bool`, `category`, `string`): an
    /// `int` input takes whole numbers only. Absent in models written before signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Smallest value the Dataset schema allows (shown with the signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value the Dataset schema allows (shown with the signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Feature {
    /// Width of this feature in an encoded row.
    pub fn width(&self) -> usize {
        match self.kind {
            FeatureKind::Float => 1,
            FeatureKind::Category => self.categories.len(),
        }
    }
}

/// The fitted encoding of a model's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    /// Input columns, in order.
    pub features: Vec<Feature>,
}

/// Why a table cannot be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An input column is absent from the table.
    #[error("the data has no column `{0}`, which the model needs")]
    MissingColumn(String),
    /// A categorical value was not seen in training.
    #[error("column `{column}`, row {row}: unknown category {value:?} (known: {known})")]
    UnknownCategory {
        /// Column name.
        column: String,
        /// Row index.
        row: usize,
        /// The value.
        value: String,
        /// The known categories, comma-separated.
        known: String,
    },
    /// A value is missing in a column that had no missing values in training.
    #[error(
        "column `{column}`, row {row}: missing value, and the model was trained without missing values in this column"
    )]
    Missing {
        /// Column name.
        column: String,
        /// Row index.
        row: usize,
    },
    /// A text value in a numeric column.
    #[error("column `{column}`, row {row}: {value:?} is not a number")]
    NotANumber {
        /// Column name.
        column: String,
        /// Row index.
        row: usize,
        /// The value.
        value: String,
    },
}

impl Preprocessor {
    /// Fits on every column of `table` except `exclude` (the label).
    pub fn fit(table: &Table, exclude: Option<&str>) -> Preprocessor {
        Preprocessor::fit_schema(table, exclude, None)
    }

    /// Fits on the feature columns: with a schema, the declared columns with `role: feature`
    /// (undeclared extra columns, ids, ignored and weight columns are not features) and a
    /// column with declared `categories` is categorical over exactly those, whatever its
    /// storage type; without one, every column of `table` except `exclude` (the label).
    pub fn fit_schema(
        table: &Table,
        exclude: Option<&str>,
        schema: Option<&DataSchema>,
    ) -> Preprocessor {
        let mut features = Vec::new();
        for (name, col) in table.columns() {
            if Some(name) == exclude {
                continue;
            }
            let declared = match schema {
                Some(s) => match s.column(name) {
                    Some(c) if c.role() == ColumnRole::Feature => Some(c),
                    _ => continue,
                },
                None => None,
            };
            let nullable = col.missing_count() > 0;
            let storage = Some(
                declared
                    .map(|c| type_name(c.ty))
                    .unwrap_or(col.kind().as_str())
                    .to_string(),
            );
            let (min, max) = declared.map_or((None, None), |c| (c.min, c.max));
            if let Some(cats) = declared.and_then(|c| c.categories.as_ref()) {
                features.push(Feature {
                    name: name.to_string(),
                    kind: FeatureKind::Category,
                    categories: cats.clone(),
                    nullable,
                    fill: 0.0,
                    storage,
                    min,
                    max,
                });
                continue;
            }
            let f = match col.kind() {
                ColumnKind::Str => {
                    let mut cats = BTreeSet::new();
                    for i in 0..col.len() {
                        if let Some(v) = col.string_at(i) {
                            cats.insert(v);
                        }
                    }
                    Feature {
                        name: name.to_string(),
                        kind: FeatureKind::Category,
                        categories: cats.into_iter().collect(),
                        nullable,
                        fill: 0.0,
                        storage,
                        min,
                        max,
                    }
                }
                _ => {
                    let (mut sum, mut n) = (0.0, 0usize);
                    for i in 0..col.len() {
                        let x = col.f64_at(i);
                        if !x.is_nan() {
                            sum += x;
                            n += 1;
                        }
                    }
                    Feature {
                        name: name.to_string(),
                        kind: FeatureKind::Float,
                        categories: Vec::new(),
                        nullable,
                        fill: if n > 0 { sum / n as f64 } else { 0.0 },
                        storage,
                        min,
                        max,
                    }
                }
            };
            features.push(f);
        }
        Preprocessor { features }
    }

    /// Width of an encoded row.
    pub fn encoded_width(&self) -> usize {
        self.features.iter().map(Feature::width).sum()
    }

    /// Names of the encoded columns (`col` or `col=category`).
    pub fn encoded_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.features {
            match f.kind {
                FeatureKind::Float => out.push(f.name.clone()),
                FeatureKind::Category => {
                    out.extend(f.categories.iter().map(|c| format!("{}={c}", f.name)))
                }
            }
        }
        out
    }

    /// The raw rows (row-major, one value per input column) of `table`'s input columns.
    pub fn raw_matrix(&self, table: &Table) -> Result<Vec<f64>, EncodeError> {
        let n = table.n_rows();
        let w = self.features.len();
        let mut out = vec![0.0; n * w];
        for (j, f) in self.features.iter().enumerate() {
            let col = table
                .column(&f.name)
                .ok_or_else(|| EncodeError::MissingColumn(f.name.clone()))?;
            match f.kind {
                FeatureKind::Float => {
                    for i in 0..n {
                        let x = col.f64_at(i);
                        if x.is_nan() && !col.is_missing(i) {
                            return Err(EncodeError::NotANumber {
                                column: f.name.clone(),
                                row: i,
                                value: col.string_at(i).unwrap_or_default(),
                            });
                        }
                        if x.is_nan() && !f.nullable {
                            return Err(EncodeError::Missing {
                                column: f.name.clone(),
                                row: i,
                            });
                        }
                        out[i * w + j] = x;
                    }
                }
                FeatureKind::Category => {
                    let index: HashMap<&str, usize> = f
                        .categories
                        .iter()
                        .enumerate()
                        .map(|(k, c)| (c.as_str(), k))
                        .collect();
                    for i in 0..n {
                        out[i * w + j] = match col.string_at(i) {
                            None if f.nullable => f64::NAN,
                            None => {
                                return Err(EncodeError::Missing {
                                    column: f.name.clone(),
                                    row: i,
                                });
                            }
                            Some(v) => match index.get(v.as_str()) {
                                Some(&k) => k as f64,
                                None => {
                                    return Err(EncodeError::UnknownCategory {
                                        column: f.name.clone(),
                                        row: i,
                                        value: v,
                                        known: f.categories.join(", "),
                                    });
                                }
                            },
                        };
                    }
                }
            }
        }
        Ok(out)
    }

    /// Encodes one raw row into `out` (length [`Preprocessor::encoded_width`]). Raw values
    /// must already be checked (category indices in range).
    #[inline]
    pub fn encode_raw_row(&self, raw: &[f64], out: &mut [f64]) {
        let mut k = 0;
        for (f, &x) in self.features.iter().zip(raw) {
            match f.kind {
                FeatureKind::Float => {
                    out[k] = if x.is_nan() { f.fill } else { x };
                    k += 1;
                }
                FeatureKind::Category => {
                    let w = f.categories.len();
                    out[k..k + w].fill(0.0);
                    if !x.is_nan() {
                        out[k + x as usize] = 1.0;
                    }
                    k += w;
                }
            }
        }
    }

    /// The encoded matrix (row-major) of `table`.
    pub fn encode(&self, table: &Table) -> Result<Vec<f64>, EncodeError> {
        let raw = self.raw_matrix(table)?;
        let w = self.features.len();
        let d = self.encoded_width();
        let n = table.n_rows();
        let mut out = vec![0.0; n * d];
        for i in 0..n {
            self.encode_raw_row(&raw[i * w..(i + 1) * w], &mut out[i * d..(i + 1) * d]);
        }
        Ok(out)
    }
}

/// The spec's name of a column type.
fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Float => "float",
        ColumnType::Int => "int",
        ColumnType::Bool => "bool",
        ColumnType::Category => "category",
        ColumnType::String => "string",
    }
}

/// The label column of a classification task as class indices plus sorted class names.
pub fn encode_classes(col: &ColumnData, name: &str) -> Result<(Vec<usize>, Vec<String>), String> {
    let mut names = BTreeSet::new();
    for i in 0..col.len() {
        match col.string_at(i) {
            Some(v) => {
                names.insert(v);
            }
            None => {
                return Err(format!(
                    "the label column `{name}` has a missing value in row {i}"
                ));
            }
        }
    }
    let names: Vec<String> = match col {
        // Numeric labels sort numerically (2 before 10).
        ColumnData::Int(_) | ColumnData::Float(_) => {
            let mut v: Vec<String> = names.into_iter().collect();
            v.sort_by(|a, b| {
                let (x, y) = (
                    a.parse::<f64>().unwrap_or(0.0),
                    b.parse::<f64>().unwrap_or(0.0),
                );
                x.total_cmp(&y)
            });
            v
        }
        _ => names.into_iter().collect(),
    };
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let y = (0..col.len())
        .map(|i| index[col.string_at(i).unwrap_or_default().as_str()])
        .collect();
    Ok((y, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_and_encode() {
        let t = Table::from_columns([
            ("x", ColumnData::Float(vec![1.0, f64::NAN, 3.0])),
            (
                "c",
                ColumnData::Str(vec![Some("b".into()), Some("a".into()), Some("b".into())]),
            ),
            ("y", ColumnData::Int(vec![Some(0), Some(1), Some(0)])),
        ])
        .unwrap();
        let p = Preprocessor::fit(&t, Some("y"));
        assert_eq!(p.features.len(), 2);
        assert!(p.features[0].nullable);
        assert_eq!(p.features[0].fill, 2.0);
        assert_eq!(p.features[1].categories, vec!["a", "b"]);
        assert_eq!(p.encoded_names(), vec!["x", "c=a", "c=b"]);
        let m = p.encode(&t).unwrap();
        assert_eq!(m, vec![1.0, 0.0, 1.0, 2.0, 1.0, 0.0, 3.0, 0.0, 1.0]);

        let bad = Table::from_columns([
            ("x", ColumnData::Float(vec![1.0])),
            ("c", ColumnData::Str(vec![Some("zzz".into())])),
        ])
        .unwrap();
        let e = p.encode(&bad).unwrap_err().to_string();
        assert!(
            e.contains("column `c`, row 0: unknown category \"zzz\" (known: a, b)"),
            "{e}"
        );
        let e = p.encode(&bad.without("x")).unwrap_err();
        assert_eq!(e, EncodeError::MissingColumn("x".into()));
    }

    #[test]
    fn classes_sort_numerically() {
        let col = ColumnData::Int(vec![Some(10), Some(2), Some(10)]);
        let (y, names) = encode_classes(&col, "y").unwrap();
        assert_eq!(names, vec!["2", "10"]);
        assert_eq!(y, vec![1, 0, 1]);
        assert!(encode_classes(&ColumnData::Int(vec![None]), "y").is_err());
    }
}
