//! serde deserialization from position-keeping [`Node`]s.
//!
//! Guarantees: every error carries the position of the node it is about, and its path from the
//! node deserialized (tracked on the way down, so no error costs a search of the tree). Unknown
//! fields of a struct are not fatal: each one is recorded (with a "did you mean") and skipped,
//! so one pass reports all of them. Type errors stop the document they are in. A number that
//! is not finite (`.nan`, `.inf`) is a type error wherever a number is read: nothing in a spec
//! means "not a number", and serde_json would silently turn it into null.

use crate::suggest::{did_you_mean, hint_among, list};
use crate::yaml::{Node, ScalarType, Span, Value};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use std::cell::RefCell;
use std::fmt;

/// A deserialization problem at a position.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// What kind of problem, with its details (for callers that word their own message).
    pub kind: DeErrorKind,
    /// Where (filled in by the innermost node the error passes through).
    pub span: Option<Span>,
    /// The path from the node deserialized to the node `span` points at (for an unknown
    /// field, ending with that field).
    pub path: Box<[PathSeg]>,
    /// What to do about it.
    pub hint: Option<String>,
}

/// One step of a path into a YAML tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

impl fmt::Display for PathSeg {
    /// The form [`Node::at`] takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSeg::Key(k) => f.write_str(k),
            PathSeg::Index(i) => write!(f, "{i}"),
        }
    }
}

/// Where a deserializer is: a path kept as links to its parent's, so going down costs nothing
/// and only an error turns it into a [`PathSeg`] list.
#[derive(Clone, Copy)]
struct Trail<'t> {
    parent: Option<&'t Trail<'t>>,
    seg: Option<Seg<'t>>,
}

#[derive(Clone, Copy)]
enum Seg<'t> {
    Key(&'t str),
    Index(usize),
}

impl<'t> Trail<'t> {
    const ROOT: Trail<'static> = Trail {
        parent: None,
        seg: None,
    };

    fn child(&'t self, seg: Seg<'t>) -> Trail<'t> {
        Trail {
            parent: Some(self),
            seg: Some(seg),
        }
    }

    fn path(&self) -> Vec<PathSeg> {
        let mut out = Vec::new();
        let mut at = Some(self);
        while let Some(t) = at {
            match t.seg {
                Some(Seg::Key(k)) => out.push(PathSeg::Key(k.to_string())),
                Some(Seg::Index(i)) => out.push(PathSeg::Index(i)),
                None => {}
            }
            at = t.parent;
        }
        out.reverse();
        out
    }
}

/// The kinds of [`DeError`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DeErrorKind {
    /// A mapping key the struct does not have (`span` points at the key).
    UnknownField {
        /// The key as written.
        field: String,
        /// The valid field it is likely a typo of, if any.
        suggestion: Option<&'static str>,
    },
    /// A required key is absent (`span` points at the mapping).
    MissingField {
        /// The key.
        field: String,
    },
    /// A name that is not one of an enum's values.
    UnknownValue {
        /// The name as written.
        value: String,
    },
    /// A value of the wrong type, or out of the type's range.
    WrongType {
        /// What was expected, in words ("an integer").
        expected: String,
        /// What was found, in words ("the string \"two\"").
        found: String,
    },
    /// Anything else serde reports.
    Other {
        /// serde's message.
        message: String,
    },
}

impl DeError {
    fn new(kind: DeErrorKind, hint: Option<String>) -> Self {
        DeError {
            kind,
            span: None,
            path: Box::default(),
            hint,
        }
    }

    /// Sets the position (and path) unless an inner node already did.
    fn at(mut self, span: Span, trail: &Trail<'_>) -> Self {
        if self.span.is_none() {
            self.span = Some(span);
            self.path = trail.path().into();
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DeErrorKind::UnknownField { field, .. } => write!(f, "unknown field `{field}`"),
            DeErrorKind::MissingField { field } => write!(f, "missing required field `{field}`"),
            DeErrorKind::UnknownValue { value } => write!(f, "unknown value `{value}`"),
            DeErrorKind::WrongType { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            DeErrorKind::Other { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for DeError {}

/// Rust type names that serde puts in "expected ..." become words a YAML author uses.
fn expected_words(exp: &str) -> String {
    match exp {
        "f32" | "f64" => "a number".into(),
        "u8" => "an integer from 0 to 255".into(),
        "u16" => "an integer from 0 to 65535".into(),
        "u32" => "an integer from 0 to 4294967295".into(),
        "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "a boolean" | "a string" => exp.into(),
        other if other.starts_with("struct ") => "a mapping".into(),
        other if other.starts_with("a sequence") => "a list".into(),
        other if other.starts_with("a map") => "a mapping".into(),
        other => other.into(),
    }
}

fn unexpected_words(unexp: de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Map => "a mapping".into(),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Unit => "null".into(),
        de::Unexpected::Str(s) => format!("the string \"{s}\""),
        de::Unexpected::Signed(i) => format!("the integer {i}"),
        de::Unexpected::Unsigned(i) => format!("the integer {i}"),
        de::Unexpected::Float(f) => format!("the number {f}"),
        de::Unexpected::Bool(b) => format!("the boolean {b}"),
        other => other.to_string(),
    }
}

fn wrong_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> DeError {
    let expected = expected_words(&exp.to_string());
    let found = unexpected_words(unexp);
    DeError::new(DeErrorKind::WrongType { expected, found }, None)
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(
            DeErrorKind::Other {
                message: msg.to_string(),
            },
            None,
        )
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        wrong_type(unexp, exp)
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        wrong_type(unexp, exp)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = hint_among(variant, expected, "expected one of");
        DeError::new(
            DeErrorKind::UnknownValue {
                value: variant.to_string(),
            },
            Some(hint),
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(
            DeErrorKind::UnknownField {
                field: field.to_string(),
                suggestion: did_you_mean(field, expected.iter().copied()),
            },
            field_hint(field, expected),
        )
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(
            DeErrorKind::MissingField {
                field: field.to_string(),
            },
            Some(format!("add `{field}:` to this mapping")),
        )
    }
}

fn field_hint(field: &str, expected: &[&str]) -> Option<String> {
    match did_you_mean(field, expected.iter().copied()) {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None if expected.is_empty() => Some("this mapping takes no fields".into()),
        None => Some(format!("valid fields here: {}", list(expected))),
    }
}

/// Deserializes `T` from `node`. Unknown-field problems are pushed to `issues` (and skipped);
/// the first fatal problem is returned as `Err`.
pub fn from_node<T: DeserializeOwned>(
    node: &Node,
    issues: &RefCell<Vec<DeError>>,
) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        issues,
        trail: Trail::ROOT,
    })
}

/// A serde deserializer over one node.
pub struct NodeDe<'a, 't> {
    node: &'a Node,
    issues: &'t RefCell<Vec<DeError>>,
    trail: Trail<'t>,
}

/// The error for a number that is not finite.
fn not_finite(text: &str) -> DeError {
    DeError::new(
        DeErrorKind::WrongType {
            expected: "a finite number".into(),
            found: format!("`{text}`"),
        },
        Some("write a number; to leave a setting unset, leave the field out".into()),
    )
}

impl<'a, 't> NodeDe<'a, 't> {
    fn scalar(&self) -> Option<(&'a str, ScalarType)> {
        match &self.node.value {
            Value::Scalar { text, .. } => Some((
                text.as_str(),
                self.node.scalar_type().unwrap_or(ScalarType::Str),
            )),
            _ => None,
        }
    }

    fn any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span;
        let r = match &self.node.value {
            Value::Scalar { text, .. } => {
                match self.node.scalar_type().unwrap_or(ScalarType::Str) {
                    ScalarType::Null => visitor.visit_unit(),
                    ScalarType::Bool(b) => visitor.visit_bool(b),
                    ScalarType::Int(i) => visitor.visit_i64(i),
                    ScalarType::Float(f) if !f.is_finite() => Err(not_finite(text)),
                    ScalarType::Float(f) => visitor.visit_f64(f),
                    ScalarType::Str => visitor.visit_str(text),
                }
            }
            Value::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter().enumerate(),
                issues: self.issues,
                trail: &self.trail,
            }),
            Value::Map(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                value: None,
                issues: self.issues,
                fields: None,
                trail: &self.trail,
            }),
        };
        r.map_err(|e| e.at(span, &self.trail))
    }
}

macro_rules! forward_any {
    ($($name:ident)*) => {
        $(fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> { self.any(visitor) })*
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de, '_> {
    type Error = DeError;

    forward_any! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32 deserialize_f64
        deserialize_char deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_seq
        deserialize_map deserialize_ignored_any
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Any non-null scalar reads as a string: `version: 1.0` means "1.0" to its author.
        match self.scalar() {
            Some((text, st)) if st != ScalarType::Null => visitor
                .visit_str(text)
                .map_err(|e: DeError| e.at(self.node.span, &self.trail)),
            _ => self.any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            let (span, trail) = (self.node.span, self.trail);
            visitor.visit_some(self).map_err(|e| e.at(span, &trail))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (span, trail) = (self.node.span, self.trail);
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(span, &trail))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let span = self.node.span;
        match &self.node.value {
            Value::Map(entries) => visitor
                .visit_map(Map {
                    entries: entries.iter(),
                    value: None,
                    issues: self.issues,
                    fields: Some(fields),
                    trail: &self.trail,
                })
                .map_err(|e| e.at(span, &self.trail)),
            _ => self.any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let span = self.node.span;
        match &self.node.value {
            Value::Scalar { text, .. } => visitor
                .visit_enum(text.as_str().into_deserializer())
                .map_err(|e: DeError| e.at(span, &self.trail)),
            Value::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                visitor
                    .visit_enum(Enum {
                        key: k,
                        value: v,
                        issues: self.issues,
                        trail: &self.trail,
                    })
                    .map_err(|e| e.at(span, &self.trail))
            }
            _ => {
                let (expected, found) = ("a name".to_string(), self.node.type_name().to_string());
                Err(
                    DeError::new(DeErrorKind::WrongType { expected, found }, None)
                        .at(span, &self.trail),
                )
            }
        }
    }
}

struct Seq<'a, 't> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    issues: &'t RefCell<Vec<DeError>>,
    trail: &'t Trail<'t>,
}

impl<'de> SeqAccess<'de> for Seq<'de, '_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, node)) => seed
                .deserialize(NodeDe {
                    node,
                    issues: self.issues,
                    trail: self.trail.child(Seg::Index(i)),
                })
                .map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a, 't> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    /// The value of the key just read, and the key's text (for the value's path).
    value: Option<(&'a Node, &'a str)>,
    issues: &'t RefCell<Vec<DeError>>,
    fields: Option<&'static [&'static str]>,
    trail: &'t Trail<'t>,
}

impl<'de> MapAccess<'de> for Map<'de, '_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for (k, v) in self.entries.by_ref() {
            let name = k.as_str().unwrap_or_default();
            if let Some(fields) = self.fields
                && !fields.contains(&name)
            {
                let mut e = DeError::new(
                    DeErrorKind::UnknownField {
                        field: name.to_string(),
                        suggestion: did_you_mean(name, fields.iter().copied()),
                    },
                    field_hint(name, fields),
                );
                e.span = Some(k.span);
                e.path = self.trail.child(Seg::Key(name)).path().into();
                self.issues.borrow_mut().push(e);
                continue;
            }
            self.value = Some((v, name));
            return seed
                .deserialize(NodeDe {
                    node: k,
                    issues: self.issues,
                    trail: self.trail.child(Seg::Key(name)),
                })
                .map(Some);
        }
        Ok(None)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, name) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value without a key"))?;
        seed.deserialize(NodeDe {
            node,
            issues: self.issues,
            trail: self.trail.child(Seg::Key(name)),
        })
    }
}

struct Enum<'a, 't> {
    key: &'a Node,
    value: &'a Node,
    issues: &'t RefCell<Vec<DeError>>,
    trail: &'t Trail<'t>,
}

impl<'de, 't> de::EnumAccess<'de> for Enum<'de, 't> {
    type Error = DeError;
    type Variant = NodeDe<'de, 't>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let v = seed
            .deserialize(NodeDe {
                node: self.key,
                issues: self.issues,
                trail: *self.trail,
            })
            .map_err(|e| e.at(self.key.span, self.trail))?;
        Ok((
            v,
            NodeDe {
                node: self.value,
                issues: self.issues,
                trail: *self.trail,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'de, '_> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        // `algorithm: {kmeans: 3}` names a value that takes no settings: the `3` is a mistake.
        if self.node.is_null() {
            return Ok(());
        }
        // No span: `deserialize_enum` points at the whole `{name: ...}` mapping.
        let (expected, found) = ("a name".to_string(), "a mapping".to_string());
        Err(DeError::new(
            DeErrorKind::WrongType { expected, found },
            None,
        ))
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.any(visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}
