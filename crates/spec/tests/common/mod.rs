//! Helpers shared by this crate's integration tests.

#![allow(dead_code)]

use mlctl_spec::{Diagnostic, Files};
use std::collections::BTreeMap;

/// A project held in memory: file path to text.
pub struct MemFiles(pub BTreeMap<String, String>);

impl MemFiles {
    /// A project from `(path, text)` pairs.
    pub fn new<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        MemFiles(
            files
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Files for MemFiles {
    fn read(&self, path: &str) -> std::io::Result<Option<String>> {
        Ok(self.0.get(path).cloned())
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

/// Asserts a diagnostic's position points into the file it names, so the caret lands on
/// real text (a column one past the end is allowed: "expected more here").
#[track_caller]
pub fn assert_position_in_file(d: &Diagnostic, files: &BTreeMap<String, String>) {
    let Some(span) = d.span else { return };
    let text = files
        .get(&d.file)
        .unwrap_or_else(|| panic!("diagnostic names unknown file {}: {d}", d.file));
    let lines = text.lines().count();
    assert!(
        span.line >= 1 && span.line <= lines.max(1) + 1,
        "line {} outside {} ({lines} lines): {d}",
        span.line,
        d.file
    );
    if let Some(line) = text.lines().nth(span.line - 1) {
        assert!(
            span.col >= 1 && span.col <= line.chars().count() + 1,
            "column {} outside line {line:?}: {d}",
            span.col
        );
    }
}
