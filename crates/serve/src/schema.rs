//! What a model takes and what it returns, as the server checks and writes it.

use std::collections::HashMap;

/// The type of one input column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    /// A number (bools are accepted as 0/1).
    Number,
    /// One of these categories; the raw value is the category's index.
    Category(Vec<String>),
}

/// One input column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Name, as clients send it.
    pub name: String,
    /// Number or category.
    pub kind: ColumnKind,
    /// Whether a missing value (null, empty CSV field, NaN) is accepted.
    pub nullable: bool,
    /// A number column that takes whole numbers only (an `int` column in training).
    pub integer: bool,
}

impl Column {
    /// A numeric column.
    pub fn number(name: impl Into<String>) -> Column {
        Column {
            name: name.into(),
            kind: ColumnKind::Number,
            nullable: false,
            integer: false,
        }
    }

    /// A categorical column.
    pub fn category(
        name: impl Into<String>,
        categories: impl IntoIterator<Item = impl Into<String>>,
    ) -> Column {
        Column {
            name: name.into(),
            kind: ColumnKind::Category(categories.into_iter().map(Into::into).collect()),
            nullable: false,
            integer: false,
        }
    }

    /// The same column, taking whole numbers only.
    pub fn integer(mut self) -> Column {
        self.integer = true;
        self
    }

    /// The same column, accepting missing values.
    pub fn nullable(mut self) -> Column {
        self.nullable = true;
        self
    }

    /// The index of a category value (`None` for numbers and unknown values).
    #[inline]
    pub fn category_index(&self, value: &str) -> Option<usize> {
        match &self.kind {
            ColumnKind::Category(cats) => cats.iter().position(|c| c == value),
            ColumnKind::Number => None,
        }
    }

    /// A value as the model gets it (raw layout: number, category index, NaN when missing).
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ColumnKind::Number => "number",
            ColumnKind::Category(_) => "category",
        }
    }
}

/// The input columns of a model, in the order the model takes them.
///
/// Rows cross the [`crate::Predictor`] boundary in the *raw layout*: row-major, one `f64` per
/// column, the number itself, the category's index, or NaN for a missing value.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSchema {
    columns: Vec<Column>,
    index: HashMap<String, usize>,
}

impl InputSchema {
    /// A schema from its columns, in model order.
    pub fn new(columns: Vec<Column>) -> InputSchema {
        let index = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        InputSchema { columns, index }
    }

    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Number of columns (the width of a raw row).
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// The position of a column by name.
    #[inline]
    pub fn position(&self, name: &str) -> Option<usize> {
        // Small schemas: a scan beats hashing.
        if self.columns.len() <= 8 {
            self.columns.iter().position(|c| c.name == name)
        } else {
            self.index.get(name).copied()
        }
    }

    /// `a, b, c` for messages.
    pub fn names(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The known categories for a message: the first ten and a count of the rest.
pub(crate) fn known(categories: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = categories
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if categories.len() > SHOWN {
        s.push_str(&format!(", and {} more", categories.len() - SHOWN));
    }
    s
}

/// What a model's predictions are.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Class indices into these labels (written as the labels).
    Classes(Vec<String>),
    /// Numbers (regression, cluster ids), written as numbers.
    Number,
}
