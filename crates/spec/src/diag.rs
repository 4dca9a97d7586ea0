//! Diagnostics: what is wrong, where, and what to do, rendered like a compiler would.

use crate::yaml::Span;
use serde::Serialize;
use std::fmt;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The spec cannot be used.
    Error,
    /// The spec works but something looks wrong.
    Warning,
}

/// One problem in the spec, with its position. Serializes (for `--output json`) with
/// camelCase keys like the rest of mlctl's JSON, the span flattened to `line` and `column`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable machine-readable code (`unknown-field`, `unknown-reference`, ...).
    pub code: &'static str,
    /// What is wrong, in the user's words.
    pub message: String,
    /// The file, relative to the project directory.
    pub file: String,
    /// Where in the file (None for problems with no single place, such as a missing file).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
    /// The source line the span points into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_line: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Span", 2)?;
        st.serialize_field("line", &self.line)?;
        st.serialize_field("column", &self.col)?;
        st.end()
    }
}

impl Diagnostic {
    /// A new error at a position in `file` whose text is `source`.
    pub fn error(
        code: &'static str,
        file: &str,
        source: &str,
        span: Option<Span>,
        message: impl Into<String>,
    ) -> Self {
        let source_line = span
            .and_then(|s| source.lines().nth(s.line.saturating_sub(1)))
            .map(str::to_string);
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: file.to_string(),
            span,
            source_line,
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Makes this a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{sev}[{}]: {}", self.code, self.message)?;
        match (self.span, &self.source_line) {
            (Some(span), Some(line)) => {
                let num = span.line.to_string();
                let pad = " ".repeat(num.len());
                writeln!(f, "{pad}--> {}:{}:{}", self.file, span.line, span.col)?;
                writeln!(f, "{pad} |")?;
                writeln!(f, "{num} | {}", line.trim_end())?;
                let line_chars = line.chars().count();
                let start = span.col.saturating_sub(1).min(line_chars);
                let width = span.len.max(1).min(line_chars.saturating_sub(start).max(1));
                let indent: String = line
                    .chars()
                    .take(start)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                writeln!(f, "{pad} | {indent}{}", "^".repeat(width))?;
                if let Some(hint) = &self.hint {
                    writeln!(f, "{pad} = help: {hint}")?;
                }
            }
            (Some(span), None) => {
                writeln!(f, "  --> {}:{}:{}", self.file, span.line, span.col)?;
                if let Some(hint) = &self.hint {
                    writeln!(f, "  = help: {hint}")?;
                }
            }
            _ => {
                writeln!(f, "  --> {}", self.file)?;
                if let Some(hint) = &self.hint {
                    writeln!(f, "  = help: {hint}")?;
                }
            }
        }
        Ok(())
    }
}
