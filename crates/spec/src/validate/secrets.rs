//! Every string value of every manifest: `${env:NAME}` syntax, references where mlctl does not
//! resolve them (the one list is [`env::resolvable_fields`]), and literal credentials, which
//! must never be written in a spec.
//!
//! Each document is walked once, right after it is parsed, whether or not it goes on to load:
//! a credential in a manifest with a typo in its `kind` is still a leaked credential.

use super::Ctx;
use crate::env;
use crate::yaml::{Node, Span, Value};

/// One step of the path to a value.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Checks every string in one parsed document of `file`.
pub(super) fn check_doc(ctx: &mut Ctx, file: &str, doc: &Node) {
    // Positions are only known for a manifest whose kind is known; a document with a bad kind
    // is reported as such, and its references would be noise on top.
    let kind = doc
        .get("kind")
        .and_then(Node::as_str)
        .filter(|k| *k == "Project" || crate::Kind::parse(k).is_some());
    let mut found = Vec::new();
    walk(doc, &mut Vec::new(), &mut |path, node| {
        let Some(s) = node.as_str() else { return };
        // Commands are shell: `${MLCTL_OUTPUT}` there is the shell's, not mlctl's.
        let is_command = matches!(path.last(), Some(Step::Key("command")));
        if is_command {
            if let (Some(kind), true) = (kind, s.contains("${env:")) {
                found.push(not_resolved(kind, path, node.span, true));
            }
        } else {
            match env::references(s) {
                Err(e) => found.push(("bad-env-reference", node.span, e.to_string(), None)),
                Ok(refs) => {
                    if let Some(kind) = kind
                        && !refs.is_empty()
                        && !env::is_resolvable(kind, &segments(path))
                    {
                        found.push(not_resolved(kind, path, node.span, false));
                    }
                }
            }
        }
        if let Some(what) = env::looks_like_credential(s) {
            found.push((
                "literal-secret",
                node.span,
                format!("this value looks like {what}; secrets must not be written in the spec"),
                Some("remove it from the file (and from git history), rotate it, and write `${env:NAME}` instead".to_string()),
            ));
        }
    });
    for (code, span, msg, hint) in found {
        let mut d = ctx.diagnostic(code, file, Some(span), msg);
        d.hint = hint;
        ctx.value_diags.push(d);
    }
}

type Found = (&'static str, Span, String, Option<String>);

fn not_resolved(kind: &str, path: &[Step<'_>], span: Span, is_command: bool) -> Found {
    let field = format!("{kind}.{}", dotted(path));
    let hint = if is_command {
        "commands are run by a shell, which does not read `${env:NAME}`: write `$NAME` (or `${NAME}`) to use the variable where the command runs".to_string()
    } else {
        format!(
            "mlctl resolves `${{env:NAME}}` only in {}; write the value itself here",
            crate::suggest::list(env::resolvable_fields())
        )
    };
    (
        "env-not-resolved",
        span,
        format!("`${{env:NAME}}` is not resolved in `{field}`"),
        Some(hint),
    )
}

/// The path as [`env::is_resolvable`] takes it.
fn segments(path: &[Step<'_>]) -> Vec<String> {
    // `overrides.<target>.auth.token` is `spec.auth.token` for that target.
    let path = match path {
        [Step::Key("overrides"), Step::Key(_), rest @ ..] => {
            let mut v = vec![Step::Key("spec")];
            v.extend_from_slice(rest);
            v
        }
        _ => path.to_vec(),
    };
    path.iter()
        .map(|s| match s {
            Step::Key(k) => k.to_string(),
            Step::Index(i) => i.to_string(),
        })
        .collect()
}

/// `spec.schema.columns[0].name`.
fn dotted(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Visits every value (not keys), depth first, with its path. Nesting is capped by the parser
/// ([`crate::yaml::MAX_DEPTH`]), so the recursion is shallow.
fn walk<'a>(node: &'a Node, path: &mut Vec<Step<'a>>, f: &mut dyn FnMut(&[Step<'a>], &'a Node)) {
    f(path, node);
    match &node.value {
        Value::Scalar { .. } => {}
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                walk(item, path, f);
                path.pop();
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                path.push(Step::Key(k.as_str().unwrap_or_default()));
                walk(v, path, f);
                path.pop();
            }
        }
    }
}
