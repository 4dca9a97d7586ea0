//! `kind: Project` in `mlctl.yaml`: manifests, the default target and each target.
//!
//! A target is a [`Target`] tagged by `provider`: its fields are the provider's own struct's,
//! so a field another provider takes is reported as not applying, rather than kept and unused.

use super::files::{Doc, parse_file};
use super::{Ctx, and_list, point_at, valid_name};
use crate::model::*;
use crate::suggest::{did_you_mean, hint_among, list};
use crate::units;
use crate::yaml::{Node, Span, Value};
use crate::{Files, PROJECT_FILE, Project};
use std::collections::BTreeMap;

pub(super) fn load_project(files: &dyn Files, ctx: &mut Ctx) -> Option<Project> {
    if matches!(files.read(PROJECT_FILE), Ok(None)) {
        ctx.err(
            "no-project",
            PROJECT_FILE,
            None,
            format!("no {PROJECT_FILE} in the project directory"),
        )
        .hint = Some("run `mlctl init DIR` to scaffold a project, or pass --project DIR".into());
        return None;
    }
    let mut docs = parse_file(files, PROJECT_FILE, ctx, true);
    if docs.len() != 1 {
        if docs.len() > 1 {
            let span = docs[1].node.span;
            ctx.err(
                "many-projects",
                PROJECT_FILE,
                Some(span),
                format!("{PROJECT_FILE} must hold exactly one Project manifest"),
            );
        } else if !ctx.diags.iter().any(|d| d.file == PROJECT_FILE) {
            ctx.err(
                "no-project",
                PROJECT_FILE,
                None,
                format!("{PROJECT_FILE} holds no Project manifest"),
            )
            .hint = Some("start it with `apiVersion: mlctl/v1` and `kind: Project`".into());
        }
        return None;
    }
    let doc: Doc = docs.remove(0);
    let name = doc.metadata.name.clone();
    let spec_node = doc.node.get("spec")?;
    // Targets are read one by one below, by their provider's struct.
    let without_targets = Node {
        value: match &spec_node.value {
            Value::Map(entries) => Value::Map(
                entries
                    .iter()
                    .filter(|(k, _)| k.as_str() != Some("targets"))
                    .cloned()
                    .collect(),
            ),
            other => other.clone(),
        },
        span: spec_node.span,
    };
    let holder = |path: &[String]| {
        let mut full = vec!["spec"];
        full.extend(path.iter().map(String::as_str));
        point_at(&doc.node, &full)
    };
    let spec: ProjectSpec =
        ctx.typed_node(PROJECT_FILE, &without_targets, "Project spec", &holder)?;
    let manifests = spec
        .manifests
        .clone()
        .unwrap_or_else(|| vec!["ml/".to_string()]);
    let mut targets = BTreeMap::new();
    let mut all_read = true;
    if let Some(tnode) = spec_node.get("targets") {
        match tnode.as_map() {
            Some(entries) => {
                for (k, v) in entries {
                    let tname = k.as_str().unwrap_or_default().to_string();
                    match read_target(ctx, &tname, v, k.span) {
                        Some(t) => {
                            targets.insert(tname, t);
                        }
                        None => all_read = false,
                    }
                }
            }
            None if tnode.is_null() => {}
            None => {
                ctx.err(
                    "wrong-type",
                    PROJECT_FILE,
                    Some(tnode.span),
                    format!(
                        "expected a mapping for `targets`, found {}",
                        tnode.type_name()
                    ),
                )
                .hint = Some("write `targets: {local: {provider: local}}`".into());
                all_read = false;
            }
        }
    }
    if targets.is_empty() && all_read {
        targets.insert("local".into(), Target::local());
    }
    for (tname, target) in &targets {
        check_components(ctx, tname, target, spec_node, &targets);
    }
    let default_target = match &spec.default_target {
        Some(t) => {
            if !targets.contains_key(t) && all_read {
                let span = spec_node.get("defaultTarget").map(|n| n.span);
                let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                let hint = hint_among(t, &known, "defined targets");
                ctx.hint(
                    "unknown-target",
                    PROJECT_FILE,
                    span,
                    format!("default target `{t}` is not defined"),
                    Some(hint),
                );
            }
            t.clone()
        }
        None if targets.contains_key("local") || targets.len() != 1 => "local".to_string(),
        None => targets.keys().next().cloned().unwrap_or_default(),
    };
    if !valid_name(&name) {
        return None;
    }
    Some(Project {
        name,
        labels: doc.metadata.labels,
        manifests,
        default_target,
        targets,
        self_heal: spec.self_heal,
    })
}

/// The fields a provider's target struct takes, and which of them are required: read from
/// the struct's own schema, so this list cannot drift from the struct.
/// The fields a provider's target takes and those it requires, from its JSON Schema (built
/// once per process: every target of every load asks).
fn target_fields(p: ProviderKind) -> &'static (Vec<String>, Vec<String>) {
    type Fields = (Vec<String>, Vec<String>);
    static FIELDS: std::sync::OnceLock<Vec<(ProviderKind, Fields)>> = std::sync::OnceLock::new();
    let all = FIELDS.get_or_init(|| {
        ProviderKind::ALL
            .iter()
            .map(|p| (*p, schema_fields(*p)))
            .collect()
    });
    all.iter()
        .find(|(q, _)| *q == p)
        .map(|(_, f)| f)
        .expect("every provider is in ProviderKind::ALL")
}

fn schema_fields(p: ProviderKind) -> (Vec<String>, Vec<String>) {
    let schema = match p {
        ProviderKind::Local => schemars::schema_for!(LocalTarget),
        ProviderKind::Mock => schemars::schema_for!(MockTarget),
        ProviderKind::Sagemaker => schemars::schema_for!(SagemakerTarget),
        ProviderKind::Azureml => schemars::schema_for!(AzuremlTarget),
    };
    let names = |key: &str| -> Vec<String> {
        match schema.get(key) {
            Some(serde_json::Value::Object(props)) => props.keys().cloned().collect(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    (names("properties"), names("required"))
}

/// Reads one target: a known provider, the fields it needs, none it does not take.
/// `key_span` is where the target's name is written.
fn read_target(ctx: &mut Ctx, name: &str, node: &Node, key_span: Span) -> Option<Target> {
    let Some(entries) = node.as_map() else {
        ctx.err(
            "wrong-type",
            PROJECT_FILE,
            Some(node.span),
            format!(
                "expected a mapping for target `{name}`, found {}",
                node.type_name()
            ),
        )
        .hint =
            Some("write `provider: local` (or mock, sagemaker, azureml) and its settings".into());
        return None;
    };
    let providers: Vec<&str> = ProviderKind::ALL.iter().map(|p| p.as_str()).collect();
    let Some(pnode) = node.get("provider") else {
        ctx.err(
            "missing-field",
            PROJECT_FILE,
            Some(key_span),
            format!("target `{name}` has no `provider`"),
        )
        .hint = Some(format!("add `provider:` with one of: {}", list(&providers)));
        return None;
    };
    let written = pnode.as_str().unwrap_or_default();
    let Some(provider) = ProviderKind::parse(written) else {
        let hint = hint_among(written, &providers, "providers are");
        ctx.hint(
            "unknown-provider",
            PROJECT_FILE,
            Some(pnode.span),
            format!("unknown provider `{written}` for target `{name}`"),
            Some(hint),
        );
        return None;
    };
    let (allowed, required) = target_fields(provider);
    let any_provider = ProviderKind::ALL
        .iter()
        .flat_map(|p| target_fields(*p).0.iter());
    let mut fine = true;
    let mut body = Vec::new();
    let mut typo_of = Vec::new();
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default();
        if key == "provider" {
            continue;
        }
        if allowed.iter().any(|a| a == key) {
            body.push((k.clone(), v.clone()));
        } else if any_provider.clone().any(|a| a == key) {
            ctx.err(
                "field-not-for-provider",
                PROJECT_FILE,
                Some(k.span),
                format!(
                    "field `{key}` does not apply to provider `{}` (target `{name}`)",
                    provider.as_str()
                ),
            )
            .hint = Some(format!(
                "{} targets take: provider, {}",
                provider.as_str(),
                list(allowed)
            ));
            fine = false;
        } else {
            let suggestion = did_you_mean(key, allowed.iter().map(String::as_str));
            typo_of.extend(suggestion.map(str::to_string));
            let hint = match suggestion {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "{} targets take: provider, {}",
                    provider.as_str(),
                    list(allowed)
                ),
            };
            ctx.hint(
                "unknown-field",
                PROJECT_FILE,
                Some(k.span),
                format!("unknown field `targets.{name}.{key}` in Project spec"),
                Some(hint),
            );
            fine = false;
        }
    }
    // A required field that an unknown key is a typo of was reported with that key.
    let missing: Vec<String> = required
        .iter()
        .filter(|f| node.get(f).is_none_or(Node::is_null) && !typo_of.contains(f))
        .map(|f| format!("`{f}`"))
        .collect();
    if !missing.is_empty() {
        let fields = if missing.len() == 1 {
            "field"
        } else {
            "fields"
        };
        ctx.err(
            "missing-field",
            PROJECT_FILE,
            Some(key_span),
            format!(
                "target `{name}` (provider {}) is missing required {fields} {}",
                provider.as_str(),
                and_list(&missing)
            ),
        )
        .hint = Some(format!(
            "{} targets need {}; write account values as `${{env:NAME}}`",
            provider.as_str(),
            and_list(
                &required
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
            )
        ));
        return None;
    }
    if !typo_of.is_empty() {
        return None;
    }
    let body = Node {
        value: Value::Map(body),
        span: node.span,
    };
    let what = format!("target `{name}`");
    let holder = |_: &[String]| Some(key_span);
    let target = match provider {
        ProviderKind::Local => ctx
            .typed_node::<LocalTarget>(PROJECT_FILE, &body, &what, &holder)
            .map(Target::Local),
        ProviderKind::Mock => ctx
            .typed_node::<MockTarget>(PROJECT_FILE, &body, &what, &holder)
            .map(Target::Mock),
        ProviderKind::Sagemaker => ctx
            .typed_node::<SagemakerTarget>(PROJECT_FILE, &body, &what, &holder)
            .map(Target::Sagemaker),
        ProviderKind::Azureml => ctx
            .typed_node::<AzuremlTarget>(PROJECT_FILE, &body, &what, &holder)
            .map(Target::Azureml),
    }?;
    let span_of = |f: &str| node.get(f).map(|n| n.span).or(Some(node.span));
    match &target {
        Target::Sagemaker(t) => {
            if !t.bucket.starts_with("s3://") && !t.bucket.starts_with("${env:") {
                ctx.err(
                    "bad-value",
                    PROJECT_FILE,
                    span_of("bucket"),
                    format!("bucket `{}` is not an s3:// URL", t.bucket),
                )
                .hint = Some("write `s3://bucket/prefix`".into());
                fine = false;
            }
        }
        Target::Mock(t) => {
            // `${env:...}` is resolved at apply time, so only a literal can be checked here.
            if let Some(l) = &t.latency
                && !l.contains("${env:")
                && let Err(e) = units::parse_duration(l)
            {
                ctx.err("bad-value", PROJECT_FILE, span_of("latency"), e);
                fine = false;
            }
            for (endpoint, t) in &t.traffic {
                let at = |field: &str| {
                    node.at(&["traffic", endpoint, field])
                        .map(|n| n.span)
                        .or(Some(node.span))
                };
                if let Some(r) = t.error_rate
                    && !(0.0..=1.0).contains(&r)
                {
                    ctx.err(
                        "out-of-range",
                        PROJECT_FILE,
                        at("errorRate"),
                        format!("errorRate must be between 0 and 1, got {r}"),
                    );
                    fine = false;
                }
                if let Some(l) = t.p99_latency_ms
                    && (l.is_nan() || l < 0.0)
                {
                    ctx.err(
                        "out-of-range",
                        PROJECT_FILE,
                        at("p99LatencyMs"),
                        format!("p99LatencyMs must be 0 or more, got {l}"),
                    );
                    fine = false;
                }
            }
        }
        Target::Azureml(t) => {
            let literal = |v: &str| !v.contains("${env:");
            if literal(&t.storage)
                && !(t.storage.starts_with("https://") || t.storage.starts_with("http://"))
            {
                ctx.err(
                    "bad-value",
                    PROJECT_FILE,
                    span_of("storage"),
                    "storage is not a Blob container URL".to_string(),
                )
                .hint = Some(
                    "write `https://ACCOUNT.blob.core.windows.net/CONTAINER[/prefix]`; a SAS token goes in `sas: ${env:NAME}`"
                        .into(),
                );
                fine = false;
            }
            if let Some(sas) = &t.sas
                && literal(sas)
            {
                ctx.err(
                    "literal-secret",
                    PROJECT_FILE,
                    span_of("sas"),
                    "sas must be an environment reference, not a literal token".to_string(),
                )
                .hint = Some("write `sas: ${env:NAME}` and set NAME where mlctl runs".into());
                fine = false;
            }
            if let Some(host) = &t.authority_host
                && literal(host)
                && !host.starts_with("https://")
            {
                ctx.err(
                    "bad-value",
                    PROJECT_FILE,
                    span_of("authorityHost"),
                    format!("authorityHost `{host}` is not an https URL; Entra ID is only reached over https"),
                )
                .hint = Some("write `https://login.microsoftonline.us` (say), or leave it out".into());
                fine = false;
            }
        }
        Target::Local(_) => {}
    }
    if let Some(tracking) = target.tracking() {
        fine &= check_tracking(ctx, tracking, node);
        if tracking.registry == Some(crate::TrackingRegistry::Source)
            && matches!(
                target.provider(),
                ProviderKind::Sagemaker | ProviderKind::Azureml
            )
        {
            ctx.err(
                "unsupported-value",
                PROJECT_FILE,
                node.at(&["tracking", "registry"]).map(|n| n.span),
                format!(
                    "`registry: source` keeps a version's files on the machine mlctl runs on, and {} endpoints serve from the cloud's own store",
                    target.provider().as_str()
                ),
            )
            .hint = Some(
                "use `registry: mirror` (the target's registry stays the source, MLflow shows a copy), or `source` on a local target".into(),
            );
            fine = false;
        }
    }
    fine.then_some(target)
}

/// `tracking:`: an http(s) URL, credentials only as references, one kind of auth.
fn check_tracking(ctx: &mut Ctx, t: &crate::Tracking, target: &Node) -> bool {
    let literal = |v: &str| !v.contains("${env:");
    let span_of = |f: &str| {
        target
            .at(&["tracking", f])
            .or_else(|| target.get("tracking"))
            .map(|n| n.span)
    };
    let mut fine = true;
    if literal(&t.uri) && !(t.uri.starts_with("http://") || t.uri.starts_with("https://")) {
        ctx.err(
            "bad-value",
            PROJECT_FILE,
            span_of("uri"),
            format!(
                "tracking uri `{}` is not an http(s) URL",
                crate::suggest::quote(&t.uri)
            ),
        )
        .hint = Some(
            "write the tracking server's URL, e.g. `uri: ${env:MLFLOW_TRACKING_URI}` with MLFLOW_TRACKING_URI=http://127.0.0.1:5000"
                .into(),
        );
        fine = false;
    }
    for (field, value) in [("token", &t.token), ("password", &t.password)] {
        if let Some(v) = value
            && literal(v)
        {
            ctx.err(
                "literal-secret",
                PROJECT_FILE,
                span_of(field),
                format!("tracking {field} must be an environment reference, not a literal"),
            )
            .hint = Some(format!(
                "write `{field}: ${{env:NAME}}` and set NAME where mlctl runs"
            ));
            fine = false;
        }
    }
    if t.token.is_some() && (t.username.is_some() || t.password.is_some()) {
        ctx.err(
            "conflicting-fields",
            PROJECT_FILE,
            span_of("token"),
            "tracking takes a bearer `token` or `username` + `password`, not both".to_string(),
        )
        .hint = Some("keep the one your server checks".into());
        fine = false;
    }
    if t.username.is_some() != t.password.is_some() {
        let (field, other) = if t.username.is_some() {
            ("username", "password")
        } else {
            ("password", "username")
        };
        ctx.err(
            "missing-field",
            PROJECT_FILE,
            span_of(field),
            format!("tracking `{field}` is given without `{other}`"),
        )
        .hint = Some(format!(
            "basic auth needs both: add `{other}: ${{env:NAME}}`"
        ));
        fine = false;
    }
    fine
}

/// `components:` names targets that exist and are plain (a component comes from a target
/// that does not itself borrow components).
fn check_components(
    ctx: &mut Ctx,
    name: &str,
    target: &Target,
    spec_node: &Node,
    targets: &BTreeMap<String, Target>,
) {
    let cnode = spec_node.at(&["targets", name, "components"]);
    for (component, from) in target.components() {
        let span = cnode
            .and_then(|c| c.get(component.as_str()))
            .map(|n| n.span);
        match targets.get(from) {
            None => {
                let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                let hint = hint_among(from, &known, "defined targets");
                ctx.hint(
                    "unknown-target",
                    PROJECT_FILE,
                    span,
                    format!(
                        "target `{name}` takes its {} from target `{from}`, which is not defined",
                        component.as_str()
                    ),
                    Some(hint),
                );
            }
            Some(other) if !other.components().is_empty() => {
                ctx.err(
                    "bad-value",
                    PROJECT_FILE,
                    span,
                    format!(
                        "target `{name}` takes its {} from `{from}`, which itself takes components from other targets",
                        component.as_str()
                    ),
                )
                .hint = Some("point at a plain target (one without `components`)".into());
            }
            Some(_) => {}
        }
    }
}
