//! Seeded, optionally stratified train / validation / test split.
//!
//! The same seed gives the same split on every platform ([`crate::rng`]). With `stratify`,
//! each class (value of that column, missing values forming their own class) is shuffled and
//! cut separately, so every part keeps the class proportions. Rows keep their original order
//! inside each part.

use crate::rng::Rng;
use crate::table::{Table, TableError};
use mlctl_spec::Split;
use std::collections::BTreeMap;

/// The default seed when a split gives none.
pub const DEFAULT_SEED: u64 = 42;

/// Row indices of each part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows (empty when no validation fraction is set).
    pub validation: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
}

/// The parts of a split table.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training rows.
    pub train: Table,
    /// Validation rows (no rows when no validation fraction is set).
    pub validation: Table,
    /// Test rows.
    pub test: Table,
}

/// Errors in a split specification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// Fractions out of range or summing to more than 1.
    #[error("invalid split: {0}")]
    Fractions(String),
    /// The `stratify` column does not exist.
    #[error("cannot stratify: {0}")]
    Stratify(#[from] TableError),
}

fn fractions(split: &Split) -> Result<(f64, f64, f64), SplitError> {
    let train = split.train;
    let validation = split.validation.unwrap_or(0.0);
    let test = split.test.unwrap_or((1.0 - train - validation).max(0.0));
    for (name, f) in [("train", train), ("validation", validation), ("test", test)] {
        if !(0.0..=1.0).contains(&f) {
            return Err(SplitError::Fractions(format!(
                "{name} is {f}, it must be between 0 and 1"
            )));
        }
    }
    if train + validation + test > 1.0 + 1e-9 {
        return Err(SplitError::Fractions(format!(
            "train + validation + test is {}, more than 1",
            train + validation + test
        )));
    }
    Ok((train, validation, test))
}

/// The row indices of each part for `n` rows; `classes` (one key per row) stratifies.
pub fn split_indices(
    n: usize,
    classes: Option<&[String]>,
    split: &Split,
) -> Result<SplitIndices, SplitError> {
    let (ftrain, fval, ftest) = fractions(split)?;
    let mut rng = Rng::new(split.seed.unwrap_or(DEFAULT_SEED));
    let groups: Vec<Vec<usize>> = match classes {
        None => vec![(0..n).collect()],
        Some(keys) => {
            let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                by.entry(k.as_str()).or_default().push(i);
            }
            by.into_values().collect()
        }
    };
    let mut out = SplitIndices {
        train: Vec::new(),
        validation: Vec::new(),
        test: Vec::new(),
    };
    for mut g in groups {
        rng.shuffle(&mut g);
        let m = g.len() as f64;
        let n_train = (m * ftrain).round() as usize;
        let n_val = ((m * fval).round() as usize).min(g.len() - n_train);
        let n_test = if split.test.is_none() && fval + ftrain <= 1.0 {
            g.len() - n_train - n_val
        } else {
            ((m * ftest).round() as usize).min(g.len() - n_train - n_val)
        };
        out.train.extend_from_slice(&g[..n_train]);
        out.validation
            .extend_from_slice(&g[n_train..n_train + n_val]);
        out.test
            .extend_from_slice(&g[n_train + n_val..n_train + n_val + n_test]);
    }
    out.train.sort_unstable();
    out.validation.sort_unstable();
    out.test.sort_unstable();
    Ok(out)
}

/// Splits `table` as `split` says.
pub fn split(table: &Table, split: &Split) -> Result<Splits, SplitError> {
    let keys: Option<Vec<String>> = match &split.stratify {
        None => None,
        Some(col) => {
            let c = table.require(col)?;
            Some(
                (0..c.len())
                    .map(|i| c.string_at(i).unwrap_or_else(|| "\u{0}missing".into()))
                    .collect(),
            )
        }
    };
    let idx = split_indices(table.n_rows(), keys.as_deref(), split)?;
    Ok(Splits {
        train: table.take(&idx.train),
        validation: table.take(&idx.validation),
        test: table.take(&idx.test),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::ColumnData;

    fn spec(train: f64, validation: Option<f64>, stratify: Option<&str>) -> Split {
        Split {
            train,
            validation,
            test: None,
            seed: Some(7),
            stratify: stratify.map(String::from),
        }
    }

    #[test]
    fn deterministic_and_disjoint() {
        let s = spec(0.6, Some(0.2), None);
        let a = split_indices(100, None, &s).unwrap();
        assert_eq!(a, split_indices(100, None, &s).unwrap());
        assert_eq!(
            (a.train.len(), a.validation.len(), a.test.len()),
            (60, 20, 20)
        );
        let mut all: Vec<usize> = a
            .train
            .iter()
            .chain(&a.validation)
            .chain(&a.test)
            .copied()
            .collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let mut other = s.clone();
        other.seed = Some(8);
        assert_ne!(a, split_indices(100, None, &other).unwrap());
        // Pinned: a change here changes every user's split.
        assert_eq!(&a.test[..5], &[5, 9, 10, 12, 13]);
    }

    #[test]
    fn stratified_keeps_proportions() {
        let labels: Vec<Option<String>> = (0..100)
            .map(|i| Some(if i < 90 { "a" } else { "b" }.to_string()))
            .collect();
        let t = Table::from_columns([("y", ColumnData::Str(labels))]).unwrap();
        let s = split(&t, &spec(0.8, None, Some("y"))).unwrap();
        let count_b = |t: &Table| {
            let c = t.column("y").unwrap();
            (0..c.len())
                .filter(|&i| c.string_at(i).as_deref() == Some("b"))
                .count()
        };
        assert_eq!((s.train.n_rows(), s.test.n_rows()), (80, 20));
        assert_eq!((count_b(&s.train), count_b(&s.test)), (8, 2));
        assert_eq!(s.validation.n_rows(), 0);
    }

    #[test]
    fn bad_fractions_and_columns_are_errors() {
        assert!(split_indices(10, None, &spec(0.9, Some(0.3), None)).is_err());
        assert!(split_indices(10, None, &spec(1.5, None, None)).is_err());
        let t = Table::from_columns([("y", ColumnData::Float(vec![1.0]))]).unwrap();
        let e = split(&t, &spec(0.5, None, Some("label"))).unwrap_err();
        assert!(e.to_string().contains("no column `label`"), "{e}");
    }
}
