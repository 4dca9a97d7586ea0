//! `mlctl export --format kfp`: the project's DAG at a commit as a Kubeflow Pipelines v2
//! pipeline (the IR YAML that `kfp.compiler` writes, `schemaVersion: 2.1.0`).
//!
//! One component and executor per resource. Each step runs the mlctl image: it clones the
//! pipeline's `repo` parameter, checks out the exported commit and runs `mlctl reconcile
//! --target T --rev SHA --only Kind/name`, so a step does exactly what `mlctl apply` does for
//! that resource, with the same lock, state and gates. The graph's edges are the tasks'
//! `dependentTasks`. A step's cache key is the resource's fingerprint at that commit, for the
//! kinds whose result is immutable per fingerprint (Dataset, TrainingJob, Model) when it can
//! be computed here (no remote data source, no secret, none of either upstream); Endpoint
//! and Monitor steps always run, because reconciling them is what repairs drift.

use anyhow::{Context, Result, anyhow, bail};
use mlctl_core::plan::Desired;
use mlctl_spec::{Kind, Spec};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

/// The image steps run by default: the one `Dockerfile` builds, at this version.
pub fn default_image() -> String {
    format!("ghcr.io/mlctl/mlctl:{}", env!("CARGO_PKG_VERSION"))
}

/// The digest of content that cannot be known without the target (a remote source).
const UNKNOWN: &str = "unknown-offline";

/// What one step runs: `sh -ec SCRIPT mlctl-step REPO DIR REV TARGET RESOURCE`.
const STEP_SCRIPT: &str = r#"repo="$1"; dir="$2"; rev="$3"; target="$4"; resource="$5"
work="$(mktemp -d)"
git clone --quiet "$repo" "$work/src"
cd "$work/src"
git checkout --quiet --detach "$rev"
cd "./$dir"
exec mlctl reconcile --target "$target" --rev "$rev" --only "$resource""#;

/// The options of one export.
pub struct KfpOptions<'a> {
    /// Target name (default: the project's default target).
    pub target: Option<&'a str>,
    /// Revision exported.
    pub rev: &'a str,
    /// Image steps run.
    pub image: &'a str,
    /// The git URL steps clone (default: `origin`'s URL, else a required parameter).
    pub repo: Option<&'a str>,
}

/// `mlctl export --format kfp`: the pipeline's YAML.
pub fn export(project: &Path, opts: &KfpOptions<'_>) -> Result<String> {
    let repo = mlctl_git::Repo::discover(project).map_err(|e| anyhow!("{e}"))?;
    if opts.rev == "HEAD" {
        // The steps check the commit out: what is not committed would not be in the pipeline.
        repo.ensure_clean(false).map_err(|e| anyhow!("{e}"))?;
    }
    let (commit, loaded) = repo
        .load_at_for(opts.rev, opts.target)
        .map_err(|e| anyhow!("{e}"))?;
    crate::commands::validate::print_diagnostics(&loaded.diagnostics);
    let Some(spec) = loaded.spec else {
        bail!(
            "the spec at {} has errors (shown above); nothing was exported",
            commit.short_sha
        );
    };
    let (target_name, target) = spec.project.target(opts.target).map_err(|e| anyhow!(e))?;
    if matches!(
        target.provider(),
        mlctl_spec::ProviderKind::Local | mlctl_spec::ProviderKind::Mock
    ) && !target.root().is_some_and(|r| r.starts_with('/'))
    {
        bail!(
            "target `{target_name}` ({}) keeps its state in the project directory, and every Kubeflow step runs in a fresh container, so the steps would not see each other's work; export a target whose state is in the cloud (sagemaker, azureml), or give `{target_name}` an absolute `root:` that every step mounts (a PersistentVolumeClaim)",
            target.provider().as_str()
        );
    }
    let dest = crate::revision::snapshot_dir(repo.project_dir(), &commit);
    let source_dir = if repo.head_commit().is_ok_and(|h| h.sha == commit.sha) {
        repo.project_dir().to_path_buf()
    } else {
        let untracked =
            crate::revision::snapshot(&repo, &spec, &commit, &dest).map_err(|e| anyhow!("{e}"))?;
        if !untracked.paths.is_empty() {
            bail!(
                "{} file(s) the spec at {} reads are not tracked in git at that commit: {}",
                untracked.paths.len(),
                commit.short_sha,
                mlctl_spec::suggest::list(&untracked.paths)
            );
        }
        dest
    };
    let digest = |rel: &str| -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        if rel.contains("://") || rel.contains("${env:") {
            return Ok(UNKNOWN.to_string());
        }
        let path = source_dir.join(rel);
        mlctl_ml::digest::digest_path(&path, None)
            .map_err(|e| format!("{}: {e}", path.display()).into())
    };
    let desired =
        Desired::new(&spec, &commit.sha, &digest).context("cannot compute fingerprints")?;
    let repo_url = match opts.repo {
        Some(r) => Some(r.to_string()),
        None => origin_url(repo.workdir()),
    };
    let pipeline = pipeline(
        &spec,
        &desired,
        &Export {
            target: target_name,
            commit: &commit.sha,
            image: opts.image,
            repo: repo_url.as_deref(),
            dir: repo.project_prefix(),
        },
    );
    Ok(to_yaml(&pipeline))
}

/// `git remote get-url origin`, when there is one.
fn origin_url(workdir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(workdir)
        .args(["remote", "get-url", "origin"])
        .output()
        .ok()?;
    let url = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !url.is_empty()).then_some(url)
}

/// What a pipeline is made for.
pub struct Export<'a> {
    /// Target name.
    pub target: &'a str,
    /// Commit SHA.
    pub commit: &'a str,
    /// Image.
    pub image: &'a str,
    /// The default of the `repo` parameter.
    pub repo: Option<&'a str>,
    /// The project's directory inside the repository (`""` at its root).
    pub dir: &'a str,
}

/// A KFP name: lowercase letters, digits and `-`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The pipeline as a JSON value in the key order `kfp` writes.
pub fn pipeline(spec: &Spec, desired: &Desired, e: &Export<'_>) -> Value {
    let task_of = |id: &mlctl_spec::ResourceId| slug(&format!("{}-{}", id.kind.as_str(), id.name));
    // A cache key is only as good as what went into it: not for what reads remote data or
    // secrets, nor anything downstream of it.
    let mut uncached: HashSet<String> = HashSet::new();
    let mut env_names: BTreeSet<String> = BTreeSet::new();
    for d in &desired.resources {
        let r = &d.resource;
        let secrets = mlctl_core::secrets::referenced(r);
        env_names.extend(secrets.iter().cloned());
        let unknowable = !secrets.is_empty()
            || d.inputs.values().any(|v| v == UNKNOWN)
            || r.depends_on
                .iter()
                .any(|dep| uncached.contains(&dep.to_string()));
        if unknowable {
            uncached.insert(r.id.to_string());
        }
    }
    let mut components = serde_json::Map::new();
    let mut executors = serde_json::Map::new();
    let mut tasks = serde_json::Map::new();
    for d in &desired.resources {
        let id = &d.resource.id;
        let name = task_of(id);
        components.insert(
            format!("comp-{name}"),
            json!({
                "executorLabel": format!("exec-{name}"),
                "inputDefinitions": {"parameters": {
                    "fingerprint": {"parameterType": "STRING"},
                    "repo": {"parameterType": "STRING"},
                }},
            }),
        );
        executors.insert(
            format!("exec-{name}"),
            json!({"container": {
                "args": [
                    "{{$.inputs.parameters['repo']}}",
                    if e.dir.is_empty() { "." } else { e.dir },
                    e.commit,
                    e.target,
                    id.to_string(),
                ],
                "command": ["sh", "-ec", STEP_SCRIPT, "mlctl-step"],
                "image": e.image,
            }}),
        );
        let immutable = matches!(id.kind, Kind::Dataset | Kind::TrainingJob | Kind::Model);
        let cache = immutable && !uncached.contains(&id.to_string());
        let mut caching = json!({"enableCache": cache});
        if cache {
            caching["cacheKey"] = json!(d.fingerprint.0);
        }
        let mut task = json!({
            "cachingOptions": caching,
            "componentRef": {"name": format!("comp-{name}")},
        });
        let deps: Vec<String> = spec
            .get(id)
            .map(|r| r.depends_on.iter().map(task_of).collect())
            .unwrap_or_default();
        if !deps.is_empty() {
            task["dependentTasks"] = json!(deps);
        }
        task["inputs"] = json!({"parameters": {
            "fingerprint": {"runtimeValue": {"constant": d.fingerprint.0}},
            "repo": {"componentInputParameter": "repo"},
        }});
        task["taskInfo"] = json!({"name": id.to_string()});
        tasks.insert(name, task);
    }
    let mut repo_param = json!({"parameterType": "STRING"});
    if let Some(url) = e.repo {
        repo_param["defaultValue"] = json!(url);
        repo_param["isOptional"] = json!(true);
    }
    let mut description = format!(
        "mlctl project {} on target {} at commit {}: each step runs `mlctl reconcile --only` for one resource.",
        spec.project.name, e.target, e.commit
    );
    if !env_names.is_empty() {
        description.push_str(&format!(
            " Steps read these environment variables (give them from a Kubernetes secret): {}.",
            env_names.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    json!({
        "components": components,
        "deploymentSpec": {"executors": executors},
        "pipelineInfo": {
            "description": description,
            "displayName": format!("{} ({})", spec.project.name, e.target),
            "name": slug(&format!("{}-{}", spec.project.name, e.target)),
        },
        "root": {
            "dag": {"tasks": tasks},
            "inputDefinitions": {"parameters": {"repo": repo_param}},
        },
        "schemaVersion": "2.1.0",
        "sdkVersion": format!("mlctl-{}", env!("CARGO_PKG_VERSION")),
    })
}

/// YAML in block style, every string double-quoted with JSON's escapes (valid YAML).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::from("# PIPELINE DEFINITION (written by mlctl export --format kfp)\n");
    write_yaml(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn write_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let key = if k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    k.clone()
                } else {
                    Value::String(k.clone()).to_string()
                };
                if is_block(child) {
                    out.push_str(&format!("{pad}{key}:\n"));
                    let next = if child.is_array() { indent } else { indent + 2 };
                    write_yaml(child, next, out);
                } else {
                    out.push_str(&format!("{pad}{key}: {}\n", scalar(child)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                if is_block(item) {
                    out.push_str(&format!("{pad}-\n"));
                    write_yaml(item, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kfp_names() {
        assert_eq!(slug("TrainingJob-iris_train"), "trainingjob-iris-train");
        assert_eq!(slug("Model--Iris.v2"), "model-iris-v2");
    }

    #[test]
    fn yaml_is_block_style_with_quoted_strings() {
        let v = json!({"a": {"b": ["x", "it's \"q\"\n"], "c": 1, "d": {}}, "e": [{"f": true}]});
        assert_eq!(
            to_yaml(&v),
            "# PIPELINE DEFINITION (written by mlctl export --format kfp)\na:\n  b:\n  - \"x\"\n  - \"it's \\\"q\\\"\\n\"\n  c: 1\n  d: {}\ne:\n-\n  f: true\n"
        );
    }
}
