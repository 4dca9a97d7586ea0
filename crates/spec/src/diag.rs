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
    /// The source line the span points into, credentials masked. A line longer than
    /// [`MAX_SHOWN_LINE`] characters is shown as a window around the span, with `…` where text
    /// is left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_line: Option<String>,
    /// How many characters of the line come before `source_line`'s first one (non-zero only for
    /// a windowed long line): the caret goes under column `span.col - source_offset`. In JSON
    /// only when non-zero, so a reader can place a windowed line's column.
    #[serde(skip_serializing_if = "is_zero")]
    pub source_offset: usize,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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

/// The longest source line a diagnostic shows whole, in characters.
pub const MAX_SHOWN_LINE: usize = 200;

/// The longest message or hint a diagnostic keeps, in characters (a message quoting a
/// megabyte-long value must not print a megabyte).
pub const MAX_TEXT: usize = 1000;

impl Diagnostic {
    /// A new error at a position in `file` whose text is `source`.
    pub fn error(
        code: &'static str,
        file: &str,
        source: &str,
        span: Option<Span>,
        message: impl Into<String>,
    ) -> Self {
        let line = span.and_then(|s| source.lines().nth(s.line.saturating_sub(1)));
        Self::error_on_line(code, file, line, span, message)
    }

    /// A new error at a position in `file`, given the text of the line `span` points into
    /// (for callers that index lines rather than scan the file for each diagnostic).
    pub fn error_on_line(
        code: &'static str,
        file: &str,
        line: Option<&str>,
        span: Option<Span>,
        message: impl Into<String>,
    ) -> Self {
        let (source_line, source_offset) = match (line, span) {
            (Some(line), Some(span)) => {
                let (shown, offset) = window(&crate::env::redact(line), span);
                (Some(shown), offset)
            }
            _ => (None, 0),
        };
        Diagnostic {
            severity: Severity::Error,
            code,
            message: truncate(message.into()),
            file: file.to_string(),
            span,
            source_line,
            source_offset,
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(truncate(hint.into()));
        self
    }

    /// Masks credentials in the message and hint and caps them at [`MAX_TEXT`] characters (for
    /// text set after construction).
    pub fn bound(&mut self) {
        self.message = truncate(std::mem::take(&mut self.message));
        self.hint = self.hint.take().map(truncate);
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

/// `text` cut to [`MAX_TEXT`] characters, saying how much was left out.
/// Masks credential shapes, then caps at [`MAX_TEXT`] characters: in that order, so a secret
/// that straddles the cut is still recognised and masked whole.
fn truncate(text: String) -> String {
    let text = match crate::env::redact(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(masked) => masked,
    };
    match text.char_indices().nth(MAX_TEXT) {
        None => text,
        Some((cut, _)) => {
            let rest = text[cut..].chars().count();
            format!("{}… ({rest} more characters)", &text[..cut])
        }
    }
}

/// The part of `line` to show for `span`: the whole line when short, else a window of
/// [`MAX_SHOWN_LINE`] characters that holds the span's start, with `…` at a cut end. Returns
/// the shown text and how many characters of the line come before its first one.
fn window(line: &str, span: Span) -> (String, usize) {
    let chars = line.chars().count();
    if chars <= MAX_SHOWN_LINE {
        return (line.to_string(), 0);
    }
    let col = span.col.saturating_sub(1).min(chars);
    let start = col.saturating_sub(MAX_SHOWN_LINE / 3);
    let end = (start + MAX_SHOWN_LINE).min(chars);
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(start).take(end - start));
    if end < chars {
        shown.push('…');
    }
    // The `…` in front takes the place of one left-out character.
    (shown, start.saturating_sub(1))
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
                let start = span
                    .col
                    .saturating_sub(1 + self.source_offset)
                    .min(line_chars);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A credential that straddles the cap is masked whole before the text is cut, so not even
    /// its first characters are shown.
    #[test]
    fn a_secret_at_the_cut_is_masked_not_halved() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let text = format!("{} {secret} tail", "x".repeat(MAX_TEXT - 20));
        let d = Diagnostic::error("c", "f.yaml", "", None, text.clone()).with_hint(text);
        for shown in [&d.message, d.hint.as_ref().expect("hint")] {
            assert!(!shown.contains(&secret[..12]), "{shown}");
            assert!(shown.contains("more characters"), "{shown}");
        }
    }

    /// A diagnostic on a very long line shows a window around the caret, and the caret still
    /// lands under the text it points at.
    #[test]
    fn long_lines_are_windowed() {
        let line = format!("{}needle{}", "x".repeat(5000), "y".repeat(5000));
        let span = Span {
            line: 1,
            col: 5001,
            len: 6,
        };
        let d = Diagnostic::error("c", "f.yaml", &line, Some(span), "m");
        let shown = d.source_line.as_deref().unwrap();
        assert!(shown.chars().count() <= MAX_SHOWN_LINE + 2, "{shown}");
        let rendered = d.to_string();
        let lines: Vec<&str> = rendered.lines().collect();
        let text = lines.iter().find(|l| l.contains("needle")).unwrap();
        let caret = lines.iter().find(|l| l.contains('^')).unwrap();
        assert_eq!(
            text.chars().position(|c| c == 'n'),
            caret.chars().position(|c| c == '^'),
            "{rendered}"
        );
        assert!(rendered.len() < 1000, "{rendered}");
        // In JSON, the offset places the column in the shown window.
        let json = serde_json::to_value(&d).unwrap();
        let offset = json["sourceOffset"].as_u64().unwrap() as usize;
        let window = json["sourceLine"].as_str().unwrap();
        let col = json["column"].as_u64().unwrap() as usize;
        assert!(
            window
                .chars()
                .skip(col - 1 - offset)
                .collect::<String>()
                .starts_with("needle"),
            "{json}"
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let d =
            Diagnostic::error("c", "f", "", None, "v".repeat(10_000)).with_hint("h".repeat(10_000));
        assert!(d.message.len() < MAX_TEXT + 50);
        assert!(
            d.message.ends_with("(9000 more characters)"),
            "{}",
            d.message
        );
        assert!(d.hint.unwrap().len() < MAX_TEXT + 50);
    }
}
