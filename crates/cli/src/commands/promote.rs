//! `mlctl promote MODEL[:VERSION] --from A --to B`: the version's files, metrics and lineage
//! from A's registry into B's, verified by digest, and B's TrainingJob and Model recorded as
//! up to date (`mlctl_core::promote`).

use crate::cli::{Output, RevArgs, TargetArgs};
use crate::session::{self, Session};
use anyhow::{Result, anyhow, bail};
use mlctl_core::components::{ModelVersion, TrainingResult, outputs};
use mlctl_core::promote::{self, Source};
use mlctl_spec::{Kind, ResourceId};
use std::path::Path;

/// Splits `MODEL[:VERSION]`.
fn parse_model(arg: &str) -> Result<(String, Option<u32>)> {
    match arg.split_once(':') {
        None => Ok((arg.to_string(), None)),
        Some((m, v)) => {
            let n = v.trim_start_matches('v').parse::<u32>().map_err(|_| {
                anyhow!("`{arg}`: the version after `:` is a number (`{m}:3`), not `{v}`")
            })?;
            Ok((m.to_string(), Some(n)))
        }
    }
}

fn open(project: &Path, target: &str, rev: &RevArgs) -> Result<Session> {
    session::open(
        project,
        &TargetArgs {
            target: Some(target.to_string()),
        },
        rev,
    )
}

pub fn run(
    project: &Path,
    model_arg: &str,
    (from, to): (&str, &str),
    rev: &RevArgs,
    lock_timeout: &str,
    output: Output,
) -> Result<u8> {
    let (model, asked) = parse_model(model_arg)?;
    if from == to {
        bail!("--from and --to are both `{from}`; promote between two targets");
    }
    let a = open(project, from, rev)?;
    let b = open(project, to, rev)?;
    let b_notes = b.ensure_supported()?;
    for (s, role) in [(&a, "from"), (&b, "to")] {
        if !s.stack.registry.capabilities().artifacts {
            bail!(
                "target `{}` (--{role}) has a registry ({}) that cannot hand over or take model files; promote between local, mock and sagemaker targets",
                s.target_name,
                s.stack.provider
            );
        }
    }
    // The version, read from the source's registry.
    let versions: Vec<ModelVersion> = a
        .rt
        .block_on(a.stack.registry.versions(&a.ctx, &model))
        .map_err(|e| anyhow!("cannot read the versions of `{model}` on target `{from}`: {e}"))?;
    let version = promote::choose_version(&versions, asked, &model, from)
        .map_err(|e| anyhow!("{}", e.message))?;
    let a_desired = a.desired()?;
    let a_observed =
        a.rt.block_on(a.stack.state.observe(&a.ctx.project))
            .map_err(|e| anyhow!("cannot read the state of target `{from}`: {e}"))?;
    let b_desired = b.desired()?;
    promote::check_same_model((from, &a_desired, &a_observed), (to, &b_desired), &version)
        .map_err(|e| anyhow!("{}", e.message))?;
    let artifact =
        a.rt.block_on(a.stack.registry.read_artifact(&a.ctx, &version))
            .map_err(|e| {
                anyhow!(
                    "cannot read the files of {model} v{} on target `{from}`: {e}",
                    version.version
                )
            })?;
    let job = a_desired
        .get(&ResourceId::new(Kind::Model, model.clone()))
        .and_then(|m| m.resource.as_model())
        .and_then(|m| m.from.clone())
        .map(|from| ResourceId::new(Kind::TrainingJob, from));
    let training = a_observed
        .iter()
        .find(|o| Some(&o.id) == job.as_ref())
        .and_then(outputs::<TrainingResult>)
        .filter(|t| version.lineage.get("trainingJob") == Some(&t.job_name));
    let source = Source {
        target: from.to_string(),
        version: version.clone(),
        artifact,
        training,
    };
    let promoted = crate::commands::plan::with_lock(&b, lock_timeout, |_| {
        let observed =
            b.rt.block_on(b.stack.state.observe(&b.ctx.project))
                .map_err(|e| anyhow!("cannot read the state of target `{to}`: {e}"))?;
        b.rt.block_on(promote::promote(
            &b.stack, &b.ctx, &b_desired, &observed, &source,
        ))
        .map_err(|e| anyhow!("{}", e.message))
    })?;
    let files = source.artifact.files.len();
    let bytes = source.artifact.size();
    let v = &promoted.version;
    match output {
        Output::Json => {
            let json = serde_json::json!({
                "model": model,
                "from": {"target": from, "version": version.version},
                "to": {
                    "target": to,
                    "version": v.version,
                    "stage": v.stage.as_str(),
                    "approvalStatus": v.approval.as_str(),
                    "artifactUri": v.artifact_uri,
                },
                "digest": promoted.digest,
                "files": files,
                "bytes": bytes,
                "alreadyPromoted": promoted.already,
                "pendingApproval": promoted.pending,
                "recorded": promoted.recorded.iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        _ => {
            for n in &b_notes {
                eprintln!("note: {n}");
            }
            if promoted.already {
                println!(
                    "{model} v{} on `{from}` was promoted to `{to}` before, as v{} ({}); nothing to do.",
                    version.version, v.version, promoted.digest
                );
            } else {
                println!(
                    "Promoted {model} v{} from `{from}` to `{to}` as v{} ({}): {files} file{}, {bytes} bytes, verified on arrival.",
                    version.version,
                    v.version,
                    promoted.digest,
                    if files == 1 { "" } else { "s" },
                );
                println!(
                    "  Recorded on `{to}` as applied: {}",
                    promoted
                        .recorded
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            println!(
                "  {} v{} on `{to}`: {}, {}",
                model,
                v.version,
                v.stage.as_str(),
                v.approval.as_str()
            );
            if promoted.pending {
                println!(
                    "  `{to}` requires manual approval: run `mlctl models approve {model} {} -t {to}` (or `mlctl models reject {model} {} -t {to}`)",
                    v.version, v.version
                );
            }
            println!(
                "  Next: `mlctl plan -t {to}` shows it deployed where the spec says; `mlctl apply -t {to}` deploys it."
            );
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_and_version_are_split_at_the_colon() {
        assert_eq!(parse_model("iris").unwrap(), ("iris".into(), None));
        assert_eq!(parse_model("iris:3").unwrap(), ("iris".into(), Some(3)));
        assert_eq!(parse_model("iris:v3").unwrap(), ("iris".into(), Some(3)));
        let e = parse_model("iris:latest").unwrap_err().to_string();
        assert!(e.contains("is a number"), "{e}");
    }
}
