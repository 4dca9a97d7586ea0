//! Reading the project's files: which manifests there are, their YAML, and each document's
//! envelope (`apiVersion`, `kind`, `metadata`, `spec`).

use super::{Ctx, Shadow, Source, secrets, valid_name};
use crate::diag::Diagnostic;
use crate::model::*;
use crate::suggest::{did_you_mean, list};
use crate::text::{InvalidUtf8, strip_bom};
use crate::yaml::{self, Node, Span};
use crate::{Files, Kind, PROJECT_FILE};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A manifest document after envelope checks.
pub(super) struct Doc {
    pub(super) file: String,
    pub(super) node: Arc<Node>,
    /// `None` for the Project.
    pub(super) kind: Option<Kind>,
    pub(super) metadata: Metadata,
}

pub(super) fn parse_file(
    files: &dyn Files,
    path: &str,
    ctx: &mut Ctx,
    is_project_file: bool,
) -> Vec<Doc> {
    const ENVELOPE: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "overrides"];
    let Some(text) = read(files, path, ctx) else {
        return Vec::new();
    };
    let parsed = yaml::parse(&text);
    // Kept once, for diagnostics and for `Spec::sources`.
    ctx.sources.insert(path.to_string(), Source::new(text));
    let nodes = match parsed {
        Ok(nodes) => nodes,
        Err(e) => {
            let (code, message) = if e.message.starts_with("duplicate key") {
                ("duplicate-key", e.message)
            } else {
                ("yaml-syntax", format!("invalid YAML: {}", e.message))
            };
            let hint = e.hint.unwrap_or_else(|| {
                "the YAML parser stopped here; the mistake is on this line or just before it".into()
            });
            ctx.hint(code, path, Some(e.span), message, Some(hint));
            // What this file declares is unknown: any reference may be to it.
            ctx.shadows.push(Shadow::default());
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for node in nodes {
        secrets::check_doc(ctx, path, &node);
        if node.as_map().is_none() {
            ctx.err(
                "not-a-manifest",
                path,
                Some(node.span),
                format!("expected a manifest (a mapping with apiVersion, kind, metadata, spec), found {}", node.type_name()),
            );
            continue;
        }
        let declared_name = node
            .at(&["metadata", "name"])
            .and_then(Node::as_str)
            .map(str::to_string);
        // Envelope checks, each independent so all are reported. An unknown key that is a
        // typo of a required one (`specs`) is reported once, not also as a missing field.
        let mut fine = true;
        let mut typo_of = BTreeSet::new();
        for (k, _) in node.as_map().unwrap_or_default() {
            let key = k.as_str().unwrap_or_default();
            if !ENVELOPE.contains(&key) {
                let suggestion = did_you_mean(key, ENVELOPE);
                typo_of.extend(suggestion);
                let hint = match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "a manifest has apiVersion, kind, metadata and spec".into(),
                };
                ctx.hint(
                    "unknown-field",
                    path,
                    Some(k.span),
                    format!("unknown field `{key}` in manifest"),
                    Some(hint),
                );
                fine = false;
            }
        }
        let missing = |field: &str| node.get(field).is_none() && !typo_of.contains(field);
        match node.get("apiVersion") {
            None => {
                if missing("apiVersion") {
                    ctx.err(
                        "missing-field",
                        path,
                        Some(node.span),
                        "missing required field `apiVersion` in manifest",
                    )
                    .hint = Some(format!("add `apiVersion: {API_VERSION}` as the first line"));
                }
                fine = false;
            }
            Some(v) if v.as_str() != Some(API_VERSION) => {
                let message = match v.as_str() {
                    Some(s) if !v.is_null() => format!("unsupported apiVersion `{s}`"),
                    _ => format!("expected an API version, found {}", v.describe()),
                };
                ctx.err("bad-api-version", path, Some(v.span), message).hint =
                    Some(format!("this mlctl reads `apiVersion: {API_VERSION}`"));
                fine = false;
            }
            _ => {}
        }
        let kind_node = node.get("kind");
        let kind_str = kind_node.and_then(Node::as_str).unwrap_or("");
        const KINDS: [&str; 6] = [
            "Project",
            "Dataset",
            "TrainingJob",
            "Model",
            "Endpoint",
            "Monitor",
        ];
        // `kind: [Model]`, `kind: {a: b}` or `kind:`: say what was found, not "unknown kind ``".
        if let Some(k) = kind_node.filter(|k| k.as_str().is_none() || k.is_null()) {
            let only = k.as_seq().and_then(|items| match items {
                [one] => one.as_str().filter(|s| KINDS.contains(s)),
                _ => None,
            });
            let (message, hint) = match only {
                Some(name) => (
                    format!("expected a kind name, found {}", k.describe()),
                    format!("write `kind: {name}`, without brackets"),
                ),
                None if k.is_null() => (
                    "`kind` is empty".to_string(),
                    format!("write one of: {}", list(KINDS)),
                ),
                None => (
                    format!("expected a kind name, found {}", k.describe()),
                    format!("write one of: {}", list(KINDS)),
                ),
            };
            ctx.hint("wrong-type", path, Some(k.span), message, Some(hint));
            ctx.shadows.push(Shadow {
                kind: only.and_then(Kind::parse),
                name: declared_name,
            });
            continue;
        }
        let kind = if kind_str == "Project" {
            if !is_project_file {
                ctx.err(
                    "misplaced-project",
                    path,
                    kind_node.map(|n| n.span),
                    "a Project manifest belongs in mlctl.yaml, not among resource manifests",
                )
                .hint =
                    Some("move it to mlctl.yaml at the project root, or delete this copy".into());
                continue;
            }
            None
        } else {
            match Kind::parse(kind_str) {
                Some(k) if !is_project_file => Some(k),
                Some(k) => {
                    ctx.err(
                        "misplaced-resource",
                        path,
                        kind_node.map(|n| n.span),
                        format!("{PROJECT_FILE} holds only the Project; put the {kind_str} in a manifest directory"),
                    )
                    .hint = Some("move it to a file under a directory listed in spec.manifests (default `ml/`)".into());
                    ctx.shadows.push(Shadow {
                        kind: Some(k),
                        name: declared_name,
                    });
                    continue;
                }
                None => {
                    let names = KINDS;
                    if kind_node.is_some() {
                        let hint = match did_you_mean(kind_str, names) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("kinds are: {}", list(names)),
                        };
                        let span = kind_node.map(|n| n.span);
                        ctx.hint(
                            "unknown-kind",
                            path,
                            span,
                            format!("unknown kind `{kind_str}`"),
                            Some(hint),
                        );
                    } else if missing("kind") {
                        let hint = format!("add `kind:` with one of: {}", list(names));
                        ctx.hint(
                            "missing-field",
                            path,
                            Some(node.span),
                            "missing required field `kind` in manifest",
                            Some(hint),
                        );
                    }
                    ctx.shadows.push(Shadow {
                        kind: None,
                        name: declared_name,
                    });
                    continue;
                }
            }
        };
        let shadow = Shadow {
            kind,
            name: declared_name,
        };
        if node.get("metadata").is_none() {
            if missing("metadata") {
                ctx.err(
                    "missing-field",
                    path,
                    Some(node.span),
                    "missing required field `metadata` in manifest",
                )
                .hint = Some("add `metadata: {name: ...}`".into());
            }
            ctx.shadows.push(shadow);
            continue;
        }
        let Some(metadata) = ctx.typed::<Metadata>(path, &node, "metadata", "metadata") else {
            ctx.shadows.push(shadow);
            continue;
        };
        if !valid_name(&metadata.name) {
            let span = node.at(&["metadata", "name"]).map(|n| n.span);
            ctx.err("bad-name", path, span, format!("invalid name `{}`", metadata.name)).hint = Some(
                "names use lowercase letters, digits and `-`, start with a letter, and are at most 63 characters".into(),
            );
            fine = false;
        }
        if node.get("spec").is_none() {
            if missing("spec") {
                ctx.err(
                    "missing-field",
                    path,
                    Some(node.span),
                    "missing required field `spec` in manifest",
                )
                .hint = Some("add the `spec:` mapping for this kind".into());
            }
            fine = false;
        }
        if kind.is_none()
            && let Some(k) = node.key("overrides")
        {
            ctx.err(
                "not-overridable",
                path,
                Some(k.span),
                "the Project has no `overrides`",
            )
            .hint = Some(
                "a target's own settings go under spec.targets.<name>; `overrides` is for resources"
                    .into(),
            );
            fine = false;
        }
        if !fine {
            ctx.shadows.push(shadow);
            continue;
        }
        let node = match kind {
            Some(kind) => super::overrides::apply(ctx, path, node, kind),
            None => node,
        };
        out.push(Doc {
            file: path.to_string(),
            node: Arc::new(node),
            kind,
            metadata,
        });
    }
    out
}

/// Where `entry` is written in mlctl.yaml's `spec.manifests`.
pub(super) fn manifest_entry_span(ctx: &Ctx, entry: &str) -> Option<Span> {
    let docs = yaml::parse(ctx.source(PROJECT_FILE)?).ok()?;
    let list = docs.first()?.at(&["spec", "manifests"])?;
    list.as_seq()?
        .iter()
        .find(|n| n.as_str() == Some(entry))
        .map(|n| n.span)
}

pub(super) fn manifest_files(
    files: &dyn Files,
    manifests: &[String],
    ctx: &mut Ctx,
) -> Vec<String> {
    let mut out = BTreeSet::new();
    for m in manifests {
        let dir = m.trim_end_matches('/');
        match files.list(dir) {
            Ok(Some(list)) => out.extend(
                list.into_iter()
                    .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml")),
            ),
            Ok(None) => match files.read(dir) {
                Ok(Some(_)) => {
                    out.insert(dir.to_string());
                }
                // It exists; reading it reports where it is not UTF-8.
                Err(e) if InvalidUtf8::in_io_error(&e).is_some() => {
                    out.insert(dir.to_string());
                }
                // It exists but cannot be read: a link out of the project, no permission.
                Err(e) => {
                    let span = manifest_entry_span(ctx, m);
                    ctx.err(
                        "io",
                        PROJECT_FILE,
                        span,
                        format!("cannot read manifest `{m}`: {e}"),
                    );
                    // What it declares is unknown: any reference may be to it.
                    ctx.shadows.push(Shadow::default());
                }
                Ok(None) => {
                    let span = manifest_entry_span(ctx, m);
                    ctx.err(
                        "missing-manifests",
                        PROJECT_FILE,
                        span,
                        format!("manifest path `{m}` does not exist"),
                    )
                    .hint = Some("create it, or fix spec.manifests in mlctl.yaml".into());
                }
            },
            Err(e) => {
                ctx.err("io", PROJECT_FILE, None, format!("cannot list {m}: {e}"));
            }
        }
    }
    out.into_iter().collect()
}

/// The text of `path` (without a byte-order mark), or `None` after reporting why it cannot be
/// read. A file that is not UTF-8 is reported at its first bad byte, and what it may declare is
/// unknown, so references to anything are not reported as undefined.
pub(super) fn read(files: &dyn Files, path: &str, ctx: &mut Ctx) -> Option<String> {
    match files.read(path) {
        Ok(Some(text)) => Some(strip_bom(text)),
        Ok(None) => None,
        Err(e) => {
            match InvalidUtf8::in_io_error(&e) {
                Some(bad) => {
                    let span = Span {
                        line: bad.line,
                        col: bad.col,
                        len: 1,
                    };
                    let d = Diagnostic::error_on_line(
                        "not-utf8",
                        path,
                        Some(&bad.line_text),
                        Some(span),
                        format!("{path} is not valid UTF-8 (byte 0x{:02X} here)", bad.byte),
                    )
                    .with_hint(
                        "mlctl reads manifests as UTF-8; this file looks saved in another encoding (Latin-1, Windows-1252): save it as UTF-8",
                    );
                    ctx.diags.push(d);
                }
                None => {
                    ctx.err("io", path, None, format!("cannot read {path}: {e}"));
                }
            }
            // What the file declares is unknown: any reference may be to it.
            ctx.shadows.push(Shadow::default());
            None
        }
    }
}
