//! A YAML document model that keeps the source position of every node.
//!
//! `serde_yaml` and its forks only report positions for syntax errors, so mlctl parses YAML
//! with `yaml-rust2`'s event parser (which gives a marker for every event) into [`Node`]s, and
//! deserializes typed structs from those nodes with [`crate::de`]. Every value in a manifest can
//! then be pointed at: unknown fields, wrong types, bad references, out-of-range values.

use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a source file: 1-based line and column, plus a length in characters for the caret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// Length in characters of the highlighted text (at least 1 when rendered).
    pub len: usize,
}

impl Span {
    fn from_marker(m: &Marker, len: usize) -> Self {
        Span {
            line: m.line().max(1),
            col: m.col() + 1,
            len,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub value: Value,
    /// Where the node starts in the source.
    pub span: Span,
}

/// The value of a node. Scalars keep their text; their type is decided by what the reader asks
/// for (YAML 1.2 core schema for plain scalars when the reader takes anything).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar. `plain` is false for quoted and block scalars (always strings).
    Scalar {
        /// The scalar's text, after unquoting.
        text: String,
        /// Whether the scalar was written without quotes.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Node, Node)>),
}

/// The type a plain scalar resolves to under the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarType {
    /// `null`, `~` or empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A float (including `.inf`, `.nan`).
    Float(f64),
    /// Anything else.
    Str,
}

impl Node {
    /// The mapping entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The sequence items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Looks a key up in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node of `key` in a mapping (to point at the key rather than the value).
    pub fn key(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    /// Follows a path of mapping keys and sequence indexes (as decimal strings).
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match &node.value {
                Value::Map(_) => node.get(seg)?,
                Value::Seq(items) => items.get(seg.parse::<usize>().ok()?)?,
                Value::Scalar { .. } => return None,
            };
        }
        Some(node)
    }

    /// Whether this is a null scalar.
    pub fn is_null(&self) -> bool {
        matches!(self.scalar_type(), Some(ScalarType::Null))
    }

    /// Resolves a scalar's type (quoted scalars are always strings).
    pub fn scalar_type(&self) -> Option<ScalarType> {
        match &self.value {
            Value::Scalar { text, plain } => Some(if *plain {
                resolve_plain(text)
            } else {
                ScalarType::Str
            }),
            _ => None,
        }
    }

    /// A short description of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Map(_) => "a mapping",
            Value::Seq(_) => "a list",
            Value::Scalar { .. } => match self.scalar_type() {
                Some(ScalarType::Null) => "null",
                Some(ScalarType::Bool(_)) => "a boolean",
                Some(ScalarType::Int(_)) => "an integer",
                Some(ScalarType::Float(_)) => "a number",
                _ => "a string",
            },
        }
    }

    /// Converts to JSON (for canonical forms and schema checks).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Scalar { text, .. } => match self.scalar_type() {
                Some(ScalarType::Null) => J::Null,
                Some(ScalarType::Bool(b)) => J::Bool(b),
                Some(ScalarType::Int(i)) => J::from(i),
                Some(ScalarType::Float(f)) => serde_json::Number::from_f64(f)
                    .map(J::Number)
                    .unwrap_or(J::String(text.clone())),
                _ => J::String(text.clone()),
            },
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Visits every node, depth first, with its path.
    pub fn walk<'a>(&'a self, path: &mut Vec<String>, f: &mut dyn FnMut(&[String], &'a Node)) {
        f(path, self);
        match &self.value {
            Value::Scalar { .. } => {}
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    item.walk(path, f);
                    path.pop();
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    path.push(k.as_str().unwrap_or_default().to_string());
                    v.walk(path, f);
                    path.pop();
                }
            }
        }
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
pub fn resolve_plain(text: &str) -> ScalarType {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarType::Null,
        "true" | "True" | "TRUE" => return ScalarType::Bool(true),
        "false" | "False" | "FALSE" => return ScalarType::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return ScalarType::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return ScalarType::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return ScalarType::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return ScalarType::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return ScalarType::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return ScalarType::Int(i);
    }
    let looks_numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return ScalarType::Float(f);
    }
    ScalarType::Str
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub span: Span,
    /// What the parser said.
    pub message: String,
}

/// Parses a (possibly multi-document) YAML text. Empty documents are skipped.
pub fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    match parser.load(&mut builder, true) {
        Ok(()) => {}
        Err(e) => {
            return Err(SyntaxError {
                span: Span::from_marker(e.marker(), 1),
                message: e.info().to_string(),
            });
        }
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.docs.into_iter().filter(|d| !d.is_null()).collect())
}

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<Frame>,
    anchors: Vec<(usize, Node)>,
    error: Option<SyntaxError>,
}

enum Frame {
    Seq {
        start: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: Option<Span>,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

impl Builder {
    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                start,
                entries,
                key,
                ..
            }) => {
                if start.is_none() {
                    *start = Some(node.span);
                }
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => {
                        if self.error.is_none()
                            && let Some(name) = k.as_str()
                            && entries.iter().any(|(e, _)| e.as_str() == Some(name))
                        {
                            self.error = Some(SyntaxError {
                                span: k.span,
                                message: format!("duplicate key `{name}` in this mapping"),
                            });
                        }
                        entries.push((k, node));
                    }
                }
            }
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                let quoted = matches!(
                    style,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                );
                let len = text.chars().count().max(1) + if quoted { 2 } else { 0 };
                let node = Node {
                    value: Value::Scalar { text, plain },
                    span: Span::from_marker(&mark, len),
                };
                self.remember(anchor, &node);
                self.push_node(node);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                start: Span::from_marker(&mark, 1),
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                start: None,
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    start,
                    anchor,
                    items,
                }) = self.stack.pop()
                {
                    let node = Node {
                        value: Value::Seq(items),
                        span: start,
                    };
                    self.remember(anchor, &node);
                    self.push_node(node);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    start,
                    anchor,
                    entries,
                    ..
                }) = self.stack.pop()
                {
                    let span = start.unwrap_or_else(|| Span::from_marker(&mark, 1));
                    let node = Node {
                        value: Value::Map(entries),
                        span,
                    };
                    self.remember(anchor, &node);
                    self.push_node(node);
                }
            }
            Event::Alias(id) => {
                let found = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone());
                match found {
                    Some(mut node) => {
                        node.span = Span::from_marker(&mark, 1);
                        self.push_node(node)
                    }
                    None => {
                        if self.error.is_none() {
                            self.error = Some(SyntaxError {
                                span: Span::from_marker(&mark, 1),
                                message: "alias refers to an unknown anchor".into(),
                            });
                        }
                    }
                }
            }
            Event::DocumentStart
            | Event::DocumentEnd
            | Event::StreamStart
            | Event::StreamEnd
            | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_every_node() {
        let docs = parse("a: 1\nb:\n  - x\n  - {c: 'd'}\n---\nk: v\n").unwrap();
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!(
            d.span,
            Span {
                line: 1,
                col: 1,
                len: 1
            }
        );
        assert_eq!(
            d.get("a").unwrap().span,
            Span {
                line: 1,
                col: 4,
                len: 1
            }
        );
        assert_eq!(
            d.at(&["b", "1", "c"]).unwrap().span,
            Span {
                line: 4,
                col: 9,
                len: 3
            }
        );
        assert_eq!(d.key("b").unwrap().span.line, 2);
    }

    #[test]
    fn scalar_resolution() {
        assert_eq!(resolve_plain("12"), ScalarType::Int(12));
        assert_eq!(resolve_plain("-1.5e3"), ScalarType::Float(-1500.0));
        assert_eq!(resolve_plain("true"), ScalarType::Bool(true));
        assert_eq!(resolve_plain("~"), ScalarType::Null);
        assert_eq!(resolve_plain("10m"), ScalarType::Str);
        assert_eq!(resolve_plain("1.2.3"), ScalarType::Str);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.span.line, 2);
        assert!(err.message.contains("duplicate key `a`"));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1\nb: 2").unwrap_err();
        assert_eq!(err.span.line, 2);
    }
}
