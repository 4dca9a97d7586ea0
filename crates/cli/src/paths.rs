//! No path field reaches outside the project: every file or directory a resource reads
//! (`source`, `code`, `transform.code`, `serve.code`: each spec's `content_inputs()`) is
//! checked after resolving symlinks, and so is every symlink inside a directory it names.
//! The validator already refuses `..` and absolute paths as written; this catches a symlink
//! that leads out (a `creds` link to `~/.aws/credentials` in a code directory).

use mlctl_spec::{Diagnostic, Resource, Spec};
use std::path::{Path, PathBuf};

/// Links reported per input before the rest are counted.
const SHOWN: usize = 10;

/// A diagnostic for every input of `spec` that resolves outside `project_dir`.
pub fn escapes(spec: &Spec, project_dir: &Path) -> Vec<Diagnostic> {
    let Ok(root) = project_dir.canonicalize() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in &spec.resources {
        for input in r.spec.content_inputs() {
            // A `${env:...}` path is checked where it points; an unset one is reported apart.
            let Ok(resolved_path) =
                mlctl_spec::env::resolve(&input.path, |n| std::env::var(n).ok())
            else {
                continue;
            };
            let path = project_dir.join(&resolved_path);
            // A missing input is reported where it is read, with its own message.
            let Ok(resolved) = path.canonicalize() else {
                continue;
            };
            let field = input.field.join(".");
            if !resolved.starts_with(&root) {
                out.push(diag(
                    spec,
                    r,
                    &input.field,
                    format!(
                        "`{field}` of {} is `{}`, which resolves to {}, outside the project",
                        r.id,
                        input.path,
                        resolved.display()
                    ),
                ));
                continue;
            }
            if resolved.is_dir() {
                let mut links = Vec::new();
                outside_links(&path, &root, &mut links, 0);
                if !links.is_empty() {
                    let shown: Vec<String> = links
                        .iter()
                        .take(SHOWN)
                        .map(|(l, t)| format!("{} -> {}", rel(project_dir, l), t.display()))
                        .collect();
                    let more = if links.len() > SHOWN {
                        format!(" and {} more", links.len() - SHOWN)
                    } else {
                        String::new()
                    };
                    out.push(diag(
                        spec,
                        r,
                        &input.field,
                        format!(
                            "`{field}` of {} (`{}`) holds links to paths outside the project: {}{more}",
                            r.id,
                            input.path,
                            shown.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// Symlinks under `dir` (not followed) whose targets resolve outside `root`.
fn outside_links(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, PathBuf)>, depth: usize) {
    if depth > 64 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            match p.canonicalize() {
                Ok(t) if !t.starts_with(root) => out.push((p, t)),
                // A dangling link, or one that stays inside: nothing leaves the project.
                _ => {}
            }
        } else if meta.is_dir() {
            outside_links(&p, root, out, depth + 1);
        }
    }
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

fn diag(spec: &Spec, r: &Resource, field: &[String], message: String) -> Diagnostic {
    let mut path = vec!["spec"];
    path.extend(field.iter().map(String::as_str));
    let span = r.node.at(&path).map(|n| n.span).or(Some(r.location.span));
    let source = spec
        .sources
        .get(&r.location.file)
        .map(String::as_str)
        .unwrap_or("");
    Diagnostic::error("path-outside-project", &r.location.file, source, span, message).with_hint(
        "keep what a resource reads inside the project directory, without links that lead out of it (copy the file in instead)",
    )
}
