//! `mlctl validate`.

use crate::cli::Output;
use crate::style;
use anyhow::{Result, anyhow};
use mlctl_spec::{Diagnostic, DirFiles, Kind, Spec};
use std::path::Path;

/// Prints diagnostics to stderr, coloured when allowed.
pub fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        let text = d.to_string();
        let text = if style::enabled() {
            let (head, rest) = text.split_once('\n').unwrap_or((&text, ""));
            let head = match head.split_once(':') {
                Some((sev, msg)) if sev.starts_with("error") => {
                    format!("{}:{}", style::red(sev), style::bold(msg))
                }
                Some((sev, msg)) => format!("{}:{}", style::yellow(sev), style::bold(msg)),
                None => head.to_string(),
            };
            format!("{head}\n{rest}")
        } else {
            text
        };
        eprintln!("{text}");
    }
}

/// "1 dataset, 1 training job, ..." for a spec.
pub fn summary(spec: &Spec) -> String {
    Kind::ALL
        .iter()
        .filter_map(|k| {
            let n = spec.resources.iter().filter(|r| r.id.kind == *k).count();
            (n > 0).then(|| format!("{n} {}", if n == 1 { k.noun() } else { k.plural() }))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(project: &Path, output: Output, target: Option<&str>) -> Result<u8> {
    // The spec as `target` sees it (its overrides merged; every target's are checked).
    let mut loaded = mlctl_spec::load_for(&DirFiles::new(project), target);
    if let Some(spec) = &loaded.spec {
        let escapes = crate::paths::escapes(spec, project);
        loaded.diagnostics.extend(escapes);
    }
    if let (Some(name), Some(spec)) = (target, &loaded.spec) {
        let (name, t) = spec.project.target(Some(name)).map_err(|e| anyhow!(e))?;
        let ts = crate::support::for_config(spec, name, t)?;
        let refusals = crate::support::refusals(spec, name, &ts);
        loaded.diagnostics.extend(refusals);
    }
    let errors = loaded.errors().count();
    // Refusals make the spec unusable on that target, like any error.
    if errors > 0 {
        loaded.spec = None;
    }
    match output {
        Output::Json => {
            let out = serde_json::json!({
                "formatVersion": 1,
                "valid": errors == 0,
                "errorCount": errors,
                "warningCount": loaded.diagnostics.len() - errors,
                "diagnostics": loaded.diagnostics,
                "resources": loaded.spec.as_ref().map(|s| s.resources.iter().map(|r| r.id.to_string()).collect::<Vec<_>>()),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        _ => {
            print_diagnostics(&loaded.diagnostics);
            match &loaded.spec {
                Some(spec) => println!(
                    "{} project `{}` is valid: {}; targets: {}",
                    style::green("ok:"),
                    spec.project.name,
                    summary(spec),
                    spec.project
                        .targets
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => eprintln!(
                    "{} the spec has {errors} error{}; nothing was changed",
                    style::red("error:"),
                    if errors == 1 { "" } else { "s" }
                ),
            }
        }
    }
    Ok(if errors == 0 { 0 } else { 1 })
}
