//! A YAML document model that keeps the source position of every node.
//!
//! `serde_yaml` and its forks only report positions for syntax errors, so mlctl parses YAML
//! with `yaml-rust2`'s event parser (which gives a marker for every event) into [`Node`]s, and
//! deserializes typed structs from those nodes with [`crate::de`]. Every value in a manifest can
//! then be pointed at: unknown fields, wrong types, bad references, out-of-range values.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
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

    /// The node's type and a short rendering of it, for messages: "a list `[Model]`", "the
    /// string `abc`", "null". Long values are cut at 40 characters.
    pub fn describe(&self) -> String {
        if self.is_null() {
            return "null".into();
        }
        // Rendered well past the cut and masked before it, so a credential that straddles the
        // 40th character is still recognised.
        let mut text = String::new();
        self.flow(&mut text, 400);
        let mut text = crate::env::redact(&text).into_owned();
        if text.chars().count() > 40 {
            text = text.chars().take(39).collect::<String>() + "…";
        }
        let what = match self.type_name() {
            "a string" => "the string",
            "a number" | "an integer" => "the number",
            "a boolean" => "the boolean",
            other => other,
        };
        format!("{what} `{text}`")
    }

    /// Writes the node in YAML flow style into `out`, stopping soon after `out` has `max`
    /// characters (the caller cuts the rest).
    fn flow(&self, out: &mut String, max: usize) {
        let full = |out: &String| out.chars().count() >= max;
        match &self.value {
            Value::Scalar { text, .. } => {
                out.extend(text.lines().next().unwrap_or_default().chars().take(max))
            }
            Value::Seq(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if full(out) {
                        return;
                    }
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.flow(out, max);
                }
                out.push(']');
            }
            Value::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if full(out) {
                        return;
                    }
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.flow(out, max);
                    out.push_str(": ");
                    v.flow(out, max);
                }
                out.push('}');
            }
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
    /// What to do about it, when we can tell.
    pub hint: Option<String>,
}

/// The deepest nesting accepted. Manifests nest a handful of levels; the limit keeps every
/// recursive walk over a [`Node`] (serde, drop, diagnostics) far from the stack's end.
pub const MAX_DEPTH: usize = 64;

/// The most nodes one text may produce beyond what its length allows anyway, counting each
/// alias expansion in full (a few aliases to aliases would otherwise expand to billions of
/// nodes). Without aliases a text cannot hold more than one node per two bytes (`[a,a,...]`),
/// so the budget is this plus half the text's length: plain YAML is never refused however many
/// documents it has, and aliases can at most double what the text could hold. This bounds the
/// memory a parsed text takes to a multiple of its size.
pub const MAX_NODES: usize = 1_000_000;

/// The node budget of `text`: [`MAX_NODES`] plus one per two bytes.
pub fn node_budget(text: &str) -> usize {
    MAX_NODES.saturating_add(text.len() / 2)
}

/// Parses a (possibly multi-document) YAML text. Empty documents are skipped.
///
/// Guarantees: never panics and never recurses deeper than [`MAX_DEPTH`], whatever the
/// input; time and memory grow linearly with the text (a mapping of 100,000 keys is checked
/// for duplicates with a hash index, not by scanning its keys for every key). yaml-rust2's own
/// `Parser::load` recurses once per nesting level (a line of 5000 `- ` overflows the stack), so
/// events are pulled one at a time from its iterative state machine instead.
pub fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::new(text);
    let mut parser = Parser::new_from_str(text);
    loop {
        let (ev, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(e) => {
                let span = Span::from_marker(e.marker(), 1);
                let message = e.info().to_string();
                let hint = syntax_hint(text, span, &message);
                return Err(SyntaxError {
                    span,
                    message,
                    hint,
                });
            }
        };
        if ev == Event::StreamEnd {
            break;
        }
        builder.on_event(ev, mark);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    Ok(builder.docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// A hint for the parser's terse messages, from what the text around the error looks like.
fn syntax_hint(text: &str, at: Span, message: &str) -> Option<String> {
    // The scanner reports a tab where the token around it started, often a line early.
    if message.contains("tab") {
        let tabbed = text
            .lines()
            .enumerate()
            .skip(at.line.saturating_sub(1))
            .take(2)
            .find(|(_, l)| {
                let indent = &l[..l.len() - l.trim_start().len()];
                indent.contains('\t')
            });
        if let Some((i, _)) = tabbed {
            return Some(format!(
                "line {} is indented with a tab; YAML indents with spaces only",
                i + 1
            ));
        }
    }
    if message.contains("unknown anchor") {
        return Some("an alias (`*name`) must refer to an anchor (`&name`) defined earlier in the same document".into());
    }
    if let Some((open, line_no, col)) = unclosed_bracket(text, at.line) {
        let close = if open == '[' { ']' } else { '}' };
        return Some(format!(
            "the `{open}` at line {line_no}, column {col} is not closed; add `{close}`"
        ));
    }
    if message.contains("mapping values are not allowed") {
        return Some("check this line's indentation against the lines above, or quote a value that contains `: `".into());
    }
    if message.contains("did not find expected key") || message.contains("block mapping") {
        return Some("check the indentation of this line and the lines above".into());
    }
    None
}

/// The innermost flow bracket still open before line `before` (1-based), with its line and
/// column. Skips quoted text and comments; good enough to point at a forgotten `]` or `}`.
fn unclosed_bracket(text: &str, before: usize) -> Option<(char, usize, usize)> {
    let mut open: Vec<(char, usize, usize)> = Vec::new();
    for (i, line) in text.lines().take(before.saturating_sub(1)).enumerate() {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (col, c) in line.chars().enumerate() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if prev == ' ' || prev == '\t' => break,
                    '"' | '\'' if matches!(prev, ' ' | '[' | '{' | ',' | ':') => quote = Some(c),
                    '[' | '{' => open.push((c, i + 1, col + 1)),
                    ']' | '}' => {
                        open.pop();
                    }
                    _ => {}
                },
            }
            prev = c;
        }
    }
    open.pop()
}

struct Builder<'t> {
    /// The source, to tell flow collections (`[`, `{`) from block ones by their first character.
    text: &'t str,
    /// A position in `text` as (character index, byte offset): markers count characters, and
    /// collections start in text order, so moving forward from the last one is linear overall.
    cursor: (usize, usize),
    docs: Vec<Node>,
    stack: Vec<Frame>,
    /// Anchored nodes of the current document: (id, node, node count, height).
    anchors: Vec<(usize, Node, usize, usize)>,
    /// Nodes produced so far, alias expansions included.
    nodes: usize,
    /// The most nodes this text may produce: [`node_budget`].
    budget: usize,
    error: Option<SyntaxError>,
}

enum Frame {
    Seq {
        start: Marker,
        flow: bool,
        anchor: usize,
        items: Vec<Node>,
        height: usize,
    },
    Map {
        start: Marker,
        flow: bool,
        first_key: Option<Span>,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// Built once the mapping is large enough for scanning its keys to cost more than
        /// hashing them.
        index: Option<KeyIndex>,
        height: usize,
    },
}

/// Mappings with fewer entries than this find duplicate keys by scanning them.
const INDEX_FROM: usize = 16;

/// The string keys of one mapping, by hash: entry positions, so each key is stored once.
#[derive(Default)]
struct KeyIndex {
    by_hash: HashMap<u64, Vec<usize>>,
}

impl KeyIndex {
    fn hash(key: &str) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        h.finish()
    }

    fn insert(&mut self, key: &str, at: usize) {
        self.by_hash.entry(Self::hash(key)).or_default().push(at);
    }

    /// The position of the entry whose key is `key`.
    fn find(&self, key: &str, entries: &[(Node, Node)]) -> Option<usize> {
        self.by_hash
            .get(&Self::hash(key))?
            .iter()
            .copied()
            .find(|&i| entries[i].0.as_str() == Some(key))
    }
}

/// How many nodes a tree holds, and how deep it is.
fn measure(node: &Node) -> (usize, usize) {
    match &node.value {
        Value::Scalar { .. } => (1, 1),
        Value::Seq(items) => items
            .iter()
            .map(measure)
            .fold((1, 1), |(n, h), (cn, ch)| (n + cn, h.max(ch + 1))),
        Value::Map(entries) => entries
            .iter()
            .flat_map(|(k, v)| [measure(k), measure(v)])
            .fold((1, 1), |(n, h), (cn, ch)| (n + cn, h.max(ch + 1))),
    }
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Self {
        Builder {
            text,
            cursor: (0, 0),
            docs: Vec::new(),
            stack: Vec::new(),
            anchors: Vec::new(),
            nodes: 0,
            budget: node_budget(text),
            error: None,
        }
    }

    fn fail(&mut self, span: Span, message: String, hint: Option<String>) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                span,
                message,
                hint,
            });
        }
    }

    /// The span of a collection from its start and end markers: one character for a block
    /// collection (it spans lines), the whole `[...]` or `{...}` for a flow one on one line.
    fn collection_span(start: &Marker, flow: bool, end: &Marker) -> Span {
        let len = if flow && end.line() == start.line() && end.col() >= start.col() {
            end.col() - start.col() + 1
        } else {
            1
        };
        Span::from_marker(start, len)
    }

    fn is_flow_start(&mut self, mark: &Marker) -> bool {
        let want = mark.index();
        if want < self.cursor.0 {
            self.cursor = (0, 0);
        }
        let (mut chars, mut bytes) = self.cursor;
        let text = self.text;
        let mut rest = text[bytes..].chars();
        while chars < want {
            match rest.next() {
                Some(c) => {
                    chars += 1;
                    bytes += c.len_utf8();
                }
                None => break,
            }
        }
        self.cursor = (chars, bytes);
        matches!(rest.next(), Some('[' | '{'))
    }

    fn push_node(&mut self, node: Node, height: usize) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq {
                items, height: h, ..
            }) => {
                *h = (*h).max(height + 1);
                items.push(node);
            }
            Some(Frame::Map {
                first_key,
                entries,
                key,
                index,
                height: h,
                ..
            }) => {
                *h = (*h).max(height + 1);
                if first_key.is_none() {
                    *first_key = Some(node.span);
                }
                let Some(k) = key.take() else {
                    *key = Some(node);
                    return;
                };
                let first = k.as_str().and_then(|name| {
                    let at = match index {
                        Some(ix) => ix.find(name, entries),
                        None => entries.iter().position(|(e, _)| e.as_str() == Some(name)),
                    }?;
                    Some((name.to_string(), entries[at].0.span))
                });
                if let Some((name, first)) = first {
                    let span = k.span;
                    self.fail(
                        span,
                        format!("duplicate key `{name}` in this mapping"),
                        Some(format!(
                            "`{name}` is already set at line {}, column {}; keep only one",
                            first.line, first.col
                        )),
                    );
                    return;
                }
                entries.push((k, node));
                let n = entries.len();
                match index {
                    Some(ix) => {
                        if let Some(name) = entries[n - 1].0.as_str() {
                            ix.insert(name, n - 1);
                        }
                    }
                    None if n >= INDEX_FROM => {
                        let mut ix = KeyIndex::default();
                        for (i, (e, _)) in entries.iter().enumerate() {
                            if let Some(name) = e.as_str() {
                                ix.insert(name, i);
                            }
                        }
                        *index = Some(ix);
                    }
                    None => {}
                }
            }
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            let (count, height) = measure(node);
            self.anchors.push((anchor, node.clone(), count, height));
        }
    }

    /// Counts `n` more nodes; false (and an error) past the budget.
    fn count(&mut self, n: usize, at: Span) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.budget {
            let budget = self.budget;
            self.fail(
                at,
                format!(
                    "this YAML expands to more than {} values",
                    crate::suggest::thousands(budget)
                ),
                Some("aliases (`*name`) repeat whole subtrees; use fewer of them".into()),
            );
            return false;
        }
        true
    }

    /// Opens a collection; false (and an error) past [`MAX_DEPTH`].
    fn deeper(&mut self, mark: &Marker) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(
                Span::from_marker(mark, 1),
                format!("nesting deeper than {MAX_DEPTH} levels"),
                Some("manifests nest a few levels; check for a runaway `- - -` or `[[[`".into()),
            );
            return false;
        }
        true
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(mut text, style, anchor, _tag) => {
                // The scanner grows scalars a character at a time; a parsed manifest keeps
                // every one, so spare capacity would add up.
                text.shrink_to_fit();
                let plain = matches!(style, TScalarStyle::Plain);
                let quoted = matches!(
                    style,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                );
                // A scalar's text may span lines; the caret covers its first line only.
                let first_line = text.lines().next().unwrap_or("");
                let len = first_line.chars().count().max(1) + if quoted { 2 } else { 0 };
                let node = Node {
                    value: Value::Scalar { text, plain },
                    span: Span::from_marker(&mark, len),
                };
                if !self.count(1, node.span) {
                    return;
                }
                self.remember(anchor, &node);
                self.push_node(node, 1);
            }
            Event::SequenceStart(anchor, _) => {
                if self.deeper(&mark) && self.count(1, Span::from_marker(&mark, 1)) {
                    let flow = self.is_flow_start(&mark);
                    self.stack.push(Frame::Seq {
                        start: mark,
                        flow,
                        anchor,
                        items: Vec::new(),
                        height: 1,
                    });
                }
            }
            Event::MappingStart(anchor, _) => {
                if self.deeper(&mark) && self.count(1, Span::from_marker(&mark, 1)) {
                    let flow = self.is_flow_start(&mark);
                    self.stack.push(Frame::Map {
                        start: mark,
                        flow,
                        first_key: None,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                        index: None,
                        height: 1,
                    });
                }
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    start,
                    flow,
                    anchor,
                    items,
                    height,
                }) = self.stack.pop()
                {
                    let node = Node {
                        value: Value::Seq({
                            let mut items = items;
                            items.shrink_to_fit();
                            items
                        }),
                        span: Self::collection_span(&start, flow, &mark),
                    };
                    self.remember(anchor, &node);
                    self.push_node(node, height);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    start,
                    flow,
                    first_key,
                    anchor,
                    entries,
                    height,
                    ..
                }) = self.stack.pop()
                {
                    // A block mapping has no character of its own: it starts at its first key.
                    let span = match first_key {
                        Some(key) if !flow => key,
                        _ => Self::collection_span(&start, flow, &mark),
                    };
                    let node = Node {
                        value: Value::Map({
                            let mut entries = entries;
                            entries.shrink_to_fit();
                            entries
                        }),
                        span,
                    };
                    self.remember(anchor, &node);
                    self.push_node(node, height);
                }
            }
            Event::Alias(id) => {
                let at = Span::from_marker(&mark, 1);
                let found = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, ..)| *a == id)
                    .map(|(_, n, c, h)| (n.clone(), *c, *h));
                match found {
                    Some((mut node, count, height)) => {
                        if self.stack.len() + height > MAX_DEPTH {
                            self.fail(
                                at,
                                format!("this alias nests deeper than {MAX_DEPTH} levels"),
                                None,
                            );
                            return;
                        }
                        if !self.count(count, at) {
                            return;
                        }
                        node.span = at;
                        self.push_node(node, height)
                    }
                    None => self.fail(
                        at,
                        "alias refers to an unknown anchor".into(),
                        Some("define the anchor (`&name`) earlier in the same document".into()),
                    ),
                }
            }
            Event::DocumentStart => self.anchors.clear(),
            Event::DocumentEnd | Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
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

    /// Past a handful of keys, duplicates are found through a hash index: still found, still
    /// pointing at the second key and naming the first.
    #[test]
    fn duplicate_keys_in_a_large_mapping() {
        let mut text: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        text.push_str("k7: again\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.span.line, 101);
        assert!(
            err.message.contains("duplicate key `k7`"),
            "{}",
            err.message
        );
        assert!(err.hint.unwrap().contains("line 8, column 1"));
        let distinct: String = (0..1000).map(|i| format!("k{i}: {i}\n")).collect();
        assert_eq!(parse(&distinct).unwrap()[0].as_map().unwrap().len(), 1000);
    }

    /// Flow collections are told from block ones by their first character, found by character
    /// index: text before them with multi-byte characters must not shift the lookup.
    #[test]
    fn flow_collections_after_multibyte_text() {
        let docs = parse("é: ü\nlist: [a, b]\nmap: {c: d}\nblock:\n  - x\n").unwrap();
        let d = &docs[0];
        assert_eq!(d.get("list").unwrap().span.len, 6);
        assert_eq!(d.get("map").unwrap().span.len, 6);
        assert_eq!(d.get("block").unwrap().span.len, 1);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1\nb: 2").unwrap_err();
        assert_eq!(err.span.line, 2);
    }
}
