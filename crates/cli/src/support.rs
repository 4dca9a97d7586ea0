//! Honoured or refused, for a target: every spec field its components will not act on,
//! reported as positioned diagnostics before anything is created.

use anyhow::Result;
use mlctl_core::Stack;
use mlctl_core::support::{self, FieldRefusal, FieldRules, TargetSupport};
use mlctl_spec::{Component, Diagnostic, Kind, Spec, Target};

/// The component that serves a kind.
pub fn component_of(kind: Kind) -> Component {
    match kind {
        Kind::Dataset => Component::DataStore,
        Kind::TrainingJob => Component::Trainer,
        Kind::Model => Component::Registry,
        Kind::Endpoint => Component::Deployer,
        Kind::Monitor => Component::MonitorSink,
    }
}

/// The target (name and settings) each component of `target` comes from: itself, or another
/// target named in `components:`.
fn source_of<'a>(
    spec: &'a Spec,
    name: &'a str,
    target: &'a Target,
    c: Component,
) -> (&'a str, &'a Target) {
    target
        .components()
        .get(&c)
        .and_then(|other| spec.project.target(Some(other)).ok())
        .unwrap_or((name, target))
}

/// A provider's declarations, read without opening the target (no credentials needed).
fn rules_of(target: &Target) -> Result<FieldRules> {
    Ok(match target {
        Target::Local(_) => mlctl_provider_local::field_rules(),
        Target::Mock(_) => mlctl_provider_mock::field_rules(),
        #[cfg(feature = "sagemaker")]
        Target::Sagemaker(_) => mlctl_provider_sagemaker::field_rules(),
        #[cfg(not(feature = "sagemaker"))]
        Target::Sagemaker(_) => anyhow::bail!(
            "this build of mlctl leaves out the sagemaker provider; build it in with `cargo build --release -p mlctl-cli` (the `sagemaker` feature is on by default)"
        ),
        #[cfg(feature = "azureml")]
        Target::Azureml(t) => mlctl_provider_azureml::field_rules_for(t),
        #[cfg(not(feature = "azureml"))]
        Target::Azureml(_) => anyhow::bail!(
            "this build of mlctl leaves out the azureml provider; build it in with `cargo build --release -p mlctl-cli` (the `azureml` feature is on by default)"
        ),
    })
}

/// What a target honours, from its providers' declarations (for `validate --target`).
pub fn for_config(spec: &Spec, name: &str, target: &Target) -> Result<TargetSupport> {
    let mut by_kind = Vec::new();
    for kind in Kind::ALL {
        let (_, t) = source_of(spec, name, target, component_of(kind));
        by_kind.push((kind, t.provider().as_str().to_string(), rules_of(t)?));
    }
    Ok(TargetSupport::new(by_kind))
}

/// What a target honours, from its open stack's components' capabilities (for plan and apply).
pub fn for_stack(spec: &Spec, name: &str, target: &Target, stack: &Stack) -> TargetSupport {
    let mut notes = Vec::new();
    let by_kind = Kind::ALL.map(|kind| {
        let (_, t) = source_of(spec, name, target, component_of(kind));
        let caps = match kind {
            Kind::Dataset => stack.data.capabilities(),
            Kind::TrainingJob => stack.trainer.capabilities(),
            Kind::Model => stack.registry.capabilities(),
            Kind::Endpoint => stack.deployer.capabilities(),
            Kind::Monitor => stack.monitor.capabilities(),
        };
        notes.extend(caps.notes);
        (kind, t.provider().as_str().to_string(), caps.fields)
    });
    TargetSupport::new(by_kind).with_notes(notes)
}

/// The refusals as diagnostics, each at the field's position with what to do instead.
pub fn diagnostics(spec: &Spec, target_name: &str, refusals: &[FieldRefusal]) -> Vec<Diagnostic> {
    refusals
        .iter()
        .map(|r| {
            let source = spec
                .sources
                .get(&r.location.file)
                .map(String::as_str)
                .unwrap_or("");
            Diagnostic::error(
                "refused-by-target",
                &r.location.file,
                source,
                Some(r.location.span),
                format!(
                    "target `{target_name}` ({}) does not honour `{}` of {}: {}",
                    r.provider, r.field, r.subject, r.refusal.why
                ),
            )
            .with_hint(r.refusal.instead.clone())
        })
        .collect()
}

/// Every refusal of `spec` on the target, as diagnostics (empty when it honours everything).
pub fn refusals(spec: &Spec, target_name: &str, ts: &TargetSupport) -> Vec<Diagnostic> {
    diagnostics(spec, target_name, &support::check(spec, ts))
}

/// `docs/support-matrix.md`: every leaf field of the spec, and what each provider does with
/// it, from the same declarations plan enforces.
pub fn matrix() -> String {
    use std::fmt::Write as _;
    let providers: Vec<(&str, Option<FieldRules>)> = vec![
        ("local", Some(mlctl_provider_local::field_rules())),
        ("mock", Some(mlctl_provider_mock::field_rules())),
        ("sagemaker", sagemaker_rules()),
        ("azureml", azureml_rules()),
    ];
    let mut out = String::from(
        "# Support matrix\n\n\
         What each provider does with every field of the spec. Generated from the declarations\n\
         that `mlctl plan` enforces (`mlctl support-matrix`); a test fails when this file is stale:\n\
         `UPDATE_SUPPORT_MATRIX=1 cargo test -p mlctl-cli --test e2e support_matrix` rewrites it.\n\n\
         - **honoured**: the target acts on it (a note says how, where that is not obvious);\n\
         - **simulated**: the mock target records it and reflects it in its observed state, with\n\
         \x20 nothing real behind it;\n\
         - **refused**: `mlctl plan` (and `mlctl validate --target NAME`) stops with the field's\n\
         \x20 file:line:col, the reason and what to do instead, before anything is created;\n\
         - **n/a**: the field is for another provider and this one never reads it.\n\n\
         Fields the spec loader itself acts on for every target (`apiVersion`, `kind`,\n\
         `metadata.name`) are left out.\n",
    );
    let engine = mlctl_core::support::engine::rules();
    let leaves = mlctl_core::support::fields::leaf_fields();
    out.push_str(&project_section(&providers));
    let mut sections: Vec<(&str, Vec<&String>)> =
        Kind::ALL.iter().map(|k| (k.as_str(), Vec::new())).collect();
    for l in leaves {
        let kind = l.split('.').next().unwrap_or("");
        if kind == "Project" {
            continue;
        }
        let field = l.split_once('.').map(|(_, f)| f).unwrap_or("");
        if mlctl_core::support::fields::ENVELOPE.contains(&field) {
            continue;
        }
        match sections.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, v)) => v.push(l),
            None => sections.push((kind, vec![l])),
        }
    }
    for (kind, fields) in sections {
        let _ = writeln!(out, "\n## {kind}\n");
        let _ = writeln!(
            out,
            "| field | {} |",
            providers
                .iter()
                .map(|(p, _)| *p)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|---|{}", "---|".repeat(providers.len()));
        let mut notes: Vec<String> = Vec::new();
        for f in fields {
            let mut row = format!("| `{}` |", mlctl_core::support::fields::user_path(f));
            for (_, rules) in &providers {
                let cell = match rules {
                    None => cell(
                        &support::Support::refused(
                            "this build of mlctl leaves the provider out",
                            "build mlctl with its default features",
                        ),
                        &mut notes,
                    ),
                    Some(r) => {
                        let s = r.get(f).or_else(|| engine.get(f));
                        match s {
                            None => "**undeclared**".to_string(),
                            Some(s) => cell(s, &mut notes),
                        }
                    }
                };
                let _ = write!(row, " {cell} |");
            }
            let _ = writeln!(out, "{row}");
        }
        if !notes.is_empty() {
            let _ = writeln!(out);
            for (i, n) in notes.iter().enumerate() {
                let _ = writeln!(out, "{}. {n}", i + 1);
            }
        }
    }
    out
}

/// The Project's fields: the same for every provider, but a target's settings, which belong to
/// their provider (the tagged `Target` refuses another provider's field at validate time).
fn project_section(providers: &[(&str, Option<FieldRules>)]) -> String {
    use std::fmt::Write as _;
    let schema: serde_json::Value =
        serde_json::from_str(&mlctl_spec::schema::json_schema()).unwrap_or_default();
    let takes = |provider: &str| -> Vec<String> {
        schema
            .pointer("/$defs/Target/oneOf")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .find(|v| {
                v.pointer("/properties/provider/const")
                    .and_then(|c| c.as_str())
                    == Some(provider)
            })
            .and_then(|v| v.get("properties").and_then(|p| p.as_object()))
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut out = String::from(
        "
## Project

",
    );
    let _ = writeln!(
        out,
        "| field | {} |",
        providers
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---|".repeat(providers.len()));
    let every = |label: &str| format!("| `{label}` |{}", " honoured |".repeat(providers.len()));
    for f in [
        "metadata.labels",
        "spec.manifests",
        "spec.defaultTarget",
        "spec.selfHeal",
    ] {
        let _ = writeln!(out, "{}", every(f));
    }
    let mut fields: Vec<String> = mlctl_core::support::fields::leaf_fields()
        .iter()
        .filter_map(|l| l.strip_prefix("Project.spec.targets.*."))
        .map(|f| f.split('.').next().unwrap_or(f).to_string())
        .collect();
    fields.dedup();
    for f in fields {
        let mut row = format!("| `targets.*.{f}` |");
        for (p, _) in providers {
            let cell = if takes(p).contains(&f) {
                "honoured"
            } else {
                "n/a<sup>1</sup>"
            };
            let _ = write!(row, " {cell} |");
        }
        let _ = writeln!(out, "{row}");
    }
    out.push_str(
        "
1. a setting of another provider's targets; written in this provider's target it is an error at validate time
",
    );
    out.push_str(
        "
Project `metadata.labels` are put on every resource with the resource's own labels.
Project `spec.selfHeal` is what `mlctl watch` does with an out-of-band change on every target
(repair it on the next cycle, or report OutOfSync); plan and apply do not read it.
",
    );
    out
}

/// A cell: a short word, with the detail as a numbered note below the table (notes with the
/// same text share a number).
fn cell(s: &support::Support, notes: &mut Vec<String>) -> String {
    use support::Support;
    let mut note = |text: String| {
        let n = match notes.iter().position(|x| *x == text) {
            Some(i) => i + 1,
            None => {
                notes.push(text);
                notes.len()
            }
        };
        format!("<sup>{n}</sup>")
    };
    match s {
        Support::Honoured => "honoured".into(),
        Support::HonouredAs(how) => format!("honoured{}", note(how.to_string())),
        Support::Simulated => "simulated".into(),
        Support::NotApplicable(why) => format!("n/a{}", note(why.to_string())),
        Support::Refused(r) => format!(
            "refused{}",
            note(format!("refused: {} ({})", r.why, r.instead))
        ),
        Support::Check { note: n, .. } => format!("honoured{}", note(n.to_string())),
    }
}

#[cfg(feature = "sagemaker")]
fn sagemaker_rules() -> Option<FieldRules> {
    Some(mlctl_provider_sagemaker::field_rules())
}

#[cfg(not(feature = "sagemaker"))]
fn sagemaker_rules() -> Option<FieldRules> {
    None
}

#[cfg(feature = "azureml")]
fn azureml_rules() -> Option<FieldRules> {
    Some(mlctl_provider_azureml::field_rules())
}

#[cfg(not(feature = "azureml"))]
fn azureml_rules() -> Option<FieldRules> {
    None
}
