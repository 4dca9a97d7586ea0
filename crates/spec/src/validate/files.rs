//! Reading the project's files: which manifests there are, their YAML, and each document's
//! envelope (`apiVersion`, `kind`, `metadata`, `spec`).

use super::{Ctx, Shadow, valid_name};
use crate::model::*;
use crate::suggest::did_you_mean;
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
    const ENVELOPE: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];
    let Some(text) = read(files, path, ctx) else {
        return Vec::new();
    };
    let nodes = match yaml::parse(&text) {
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
                ctx.err(
                    "bad-api-version",
                    path,
                    Some(v.span),
                    format!("unsupported apiVersion `{}`", v.as_str().unwrap_or("?")),
                )
                .hint = Some(format!("this mlctl reads `apiVersion: {API_VERSION}`"));
                fine = false;
            }
            _ => {}
        }
        let kind_node = node.get("kind");
        let kind_str = kind_node.and_then(Node::as_str).unwrap_or("");
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
                    let names = [
                        "Project",
                        "Dataset",
                        "TrainingJob",
                        "Model",
                        "Endpoint",
                        "Monitor",
                    ];
                    if kind_node.is_some() {
                        let hint = match did_you_mean(kind_str, names) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("kinds are: {}", names.join(", ")),
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
                        let hint = format!("add `kind:` with one of: {}", names.join(", "));
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
        if !fine {
            ctx.shadows.push(shadow);
            continue;
        }
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
    let docs = yaml::parse(ctx.sources.get(PROJECT_FILE)?).ok()?;
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
                _ => {
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

pub(super) fn read(files: &dyn Files, path: &str, ctx: &mut Ctx) -> Option<String> {
    match files.read(path) {
        Ok(Some(text)) => {
            ctx.sources.insert(path.to_string(), text.clone());
            Some(text)
        }
        Ok(None) => None,
        Err(e) => {
            ctx.err("io", path, None, format!("cannot read {path}: {e}"));
            None
        }
    }
}
