//! Dataset transforms as Azure ML command jobs, with the contract of every target
//! (`mlctl_core::transform`).
//!
//! The job's code is `transform.code` at its project path plus an entry script,
//! `mlctl_transform.sh`, registered as a code version like a training job's. The job gets each
//! input Dataset's stored table as a `uri_file` input; the entry script copies it to
//! `.mlctl-inputs/<name>.csv` (or `.parquet`, by its magic number), sets `MLCTL_INPUT_<NAME>`,
//! `MLCTL_OUTPUT`, `MLCTL_OUTPUT_DIR` (the job's `output` folder) and `MLCTL_DATASET`, and runs
//! the command with `sh` in the code folder. Azure ML uploads the output folder to
//! `transforms/<job>/output/` when the job ends; the data store then reads the output file back
//! and registers it like any dataset (digest, schema, target, split, limits),
//! content-addressed.
//!
//! # Guarantees
//! - The job name comes from the project, the Dataset and its fingerprint, and is looked up
//!   before anything is created: a re-run after a crash waits for the job it finds instead of
//!   starting a second. A failed job is retried under the next attempt name (`-r2`, ...) by the
//!   next apply, as training jobs are; Azure ML's error and the log's last lines are the error.
//! - The command runs in the job's container with the job's identity: never mlctl's
//!   credentials, which stay on this machine.

use crate::azure::Azure;
use crate::code::{self, CodeFiles};
use crate::trainer::{self, JobPlan, Status};
use mlctl_core::error::Result;
use mlctl_core::{DatasetRequest, ErrorKind, OpContext, ProviderError};
use mlctl_spec::Transform;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

/// The script in the code that runs the command.
pub(crate) const ENTRY: &str = "mlctl_transform.sh";
/// Attempts of one transform (failed jobs keep their names) before mlctl gives up.
const MAX_ATTEMPTS: u32 = 20;
/// The longest a transform may run: 24 hours (a training job's default).
const TIMEOUT: &str = "PT24H";

fn err(kind: ErrorKind, op: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, "azureml", op, message)
}

/// The entry script: the inputs (given as arguments, in `t.inputs` order, then the output
/// folder) copied and named as the contract says, the variables set, then the command.
pub(crate) fn entry_script(
    dataset: &str,
    inputs: &[String],
    output: &str,
    command: &str,
) -> String {
    let q = trainer::shell_quote;
    let mut s = String::from(
        "#!/bin/sh\n# Written by mlctl: the Dataset's transform, run by an Azure ML command job in a directory\n# that holds `transform.code` at its project path.\nset -e\ninputs=\"$PWD/.mlctl-inputs\"\nmkdir -p \"$inputs\"\n",
    );
    s.push_str(
        "take() { # name variable path\n  if [ \"$(head -c 4 \"$3\")\" = PAR1 ]; then f=\"$inputs/$1.parquet\"; else f=\"$inputs/$1.csv\"; fi\n  cp \"$3\" \"$f\"\n  export \"$2=$f\"\n}\n",
    );
    for name in inputs {
        s.push_str(&format!(
            "take {} MLCTL_INPUT_{} \"$1\"; shift\n",
            q(name),
            mlctl_core::transform::env_name(name)
        ));
    }
    s.push_str(&format!(
        "export MLCTL_OUTPUT_DIR=\"${{1%/}}\"\nexport MLCTL_OUTPUT=\"$MLCTL_OUTPUT_DIR\"/{}\nexport MLCTL_DATASET={}\nmkdir -p \"$(dirname \"$MLCTL_OUTPUT\")\"\nshift\n{command}\n",
        q(output),
        q(dataset),
    ));
    s
}

/// The job's command: the entry script on the inputs' and the output's paths.
pub(crate) fn job_command(inputs: &[String]) -> String {
    let mut c = format!("sh ./{ENTRY}");
    for name in inputs {
        c.push_str(&format!(" ${{{{inputs.{}}}}}", input_name(name)));
    }
    c.push_str(" ${{outputs.output}}");
    c
}

/// A job input's name for Dataset `name` (Azure's input names are identifiers).
fn input_name(name: &str) -> String {
    format!(
        "in_{}",
        mlctl_core::transform::env_name(name).to_ascii_lowercase()
    )
}

/// The code: `transform.code` at its project path, and the entry script.
fn code_files(ctx: &OpContext, t: &Transform, what: &str, entry: &str) -> Result<CodeFiles> {
    let mut files = CodeFiles::default();
    if let Some(code) = t.code.as_deref() {
        let (path, at) =
            mlctl_core::transform::code_location("azureml", &ctx.project_dir, code, what)?;
        if path.is_dir() {
            for (name, bytes) in code::pack_dir(&path)?.0 {
                files.0.insert(format!("{at}/{name}"), bytes);
            }
        } else {
            let bytes = std::fs::read(&path).map_err(|e| {
                err(
                    ErrorKind::Other,
                    "transform",
                    format!("{what}: cannot read `transform.code` {code}: {e}"),
                )
            })?;
            files.0.insert(at, bytes);
        }
    }
    files.0.insert(ENTRY.to_string(), entry.as_bytes().to_vec());
    Ok(files)
}

/// Runs the transform of `req` as an Azure ML command job (or finds the one a previous run
/// started) and returns the blob key (in the target's storage container) of its output file,
/// which the data store reads and registers.
///
/// # Errors
/// A code path outside the project, an input without a version, a failed job (with Azure ML's
/// reason and the log's tail), or an output file the command did not write.
pub(crate) async fn run(
    az: &Azure,
    ctx: &OpContext,
    req: &DatasetRequest,
    t: &Transform,
) -> Result<String> {
    let op = "transform";
    let what = format!("dataset `{}`", req.name);
    let output =
        mlctl_core::transform::output_name(t, &what).map_err(|m| err(ErrorKind::Invalid, op, m))?;
    let mut inputs: BTreeMap<String, String> = BTreeMap::new();
    for input in &t.inputs {
        let Some(v) = req.inputs.get(input) else {
            return Err(err(
                ErrorKind::Precondition,
                op,
                format!("{what}: input `{input}` has no registered version; apply it first"),
            ));
        };
        let url = if v.uri.starts_with("https://") || v.uri.starts_with("http://") {
            v.uri.clone()
        } else {
            az.blob.url(&v.uri)
        };
        inputs.insert(input_name(input), url);
    }
    let entry = entry_script(&req.name, &t.inputs, &output, &t.command);
    let files = {
        let (ctx, t, what, entry) = (ctx.clone(), t.clone(), what.clone(), entry.clone());
        tokio::task::spawn_blocking(move || code_files(&ctx, &t, &what, &entry))
            .await
            .map_err(|e| err(ErrorKind::Other, "pack code", e.to_string()))??
    };
    let code_id = code::ensure_code(
        az,
        &code::asset_name(&["mlctl", &ctx.project, &req.name, "transform"]),
        &files,
        &format!(
            "code of the transform of Dataset {} (project {})",
            req.name, ctx.project
        ),
        &req.tags,
    )
    .await?;
    let image = t
        .image
        .clone()
        .unwrap_or_else(|| code::CURATED_SCRIPT_ENVIRONMENT.to_string());
    let environment_id = code::ensure_environment(az, &image, &req.tags).await?;
    let base = trainer::job_name(&mlctl_core::fingerprint::deterministic_name(
        &ctx.project,
        &format!("{}-transform", req.name),
        &mlctl_core::Fingerprint(req.fingerprint.clone()),
        48,
    ));
    for attempt in 1..=MAX_ATTEMPTS {
        let name = if attempt == 1 {
            base.clone()
        } else {
            format!("{base}-r{attempt}")
        };
        let path = format!("jobs/{name}");
        let found = az.arm.get(&path).await?;
        if found.as_ref().is_some_and(|j| {
            matches!(
                trainer::status(
                    j.pointer("/properties/status")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
                Status::Failed | Status::Canceled
            )
        }) {
            continue;
        }
        let output_dir = az.blob.key(&format!("transforms/{name}/output/"));
        if found.is_none() {
            let mut tags = req.tags.to_map();
            tags.insert("mlctl:dataset".into(), req.name.clone());
            let plan = JobPlan {
                name: name.clone(),
                command: job_command(&t.inputs),
                code_id: code_id.clone(),
                environment_id: environment_id.clone(),
                compute_id: az
                    .target
                    .compute
                    .as_deref()
                    .map(|c| az.arm.id(&format!("computes/{c}"))),
                resources: None,
                inputs: inputs.clone(),
                outputs: [
                    ("output".to_string(), az.blob.url(&output_dir)),
                    (
                        "logs".to_string(),
                        az.blob
                            .url(&az.blob.key(&format!("transforms/{name}/logs/"))),
                    ),
                ]
                .into(),
                environment: BTreeMap::new(),
                timeout: TIMEOUT.to_string(),
                experiment: ctx.project.clone(),
                display_name: format!("{} (transform)", req.name),
                tags,
                properties: [
                    ("mlctl.dataset".to_string(), req.name.clone()),
                    ("mlctl.fingerprint".to_string(), req.fingerprint.clone()),
                ]
                .into(),
            };
            az.arm.put(&path, &trainer::command_job_body(&plan)).await?;
        }
        let done = wait(az, &path).await?;
        match trainer::status(
            done.pointer("/properties/status")
                .and_then(Value::as_str)
                .unwrap_or(""),
        ) {
            Status::Completed => {}
            state => {
                let log = az
                    .blob
                    .get(&az.blob.key(&format!("transforms/{name}/logs/std_log.txt")))
                    .await
                    .ok()
                    .flatten()
                    .map(|b| trainer::tail(&String::from_utf8_lossy(&b), 20))
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("; the log ends:\n{l}"))
                    .unwrap_or_default();
                return Err(err(
                    ErrorKind::Failed,
                    op,
                    format!(
                        "{what}: the transform `{}` ended {state:?} as Azure ML job {name}: {}{log}; fix the cause and apply again (the next attempt is a new job)",
                        t.command,
                        trainer::job_error(&done)
                            .unwrap_or_else(|| "Azure ML gave no reason".into())
                    ),
                ));
            }
        }
        let key = format!("{output_dir}{output}");
        if !az.blob.exists(&key).await? {
            return Err(err(
                ErrorKind::Failed,
                op,
                format!(
                    "{what}: the transform `{}` succeeded (Azure ML job {name}) but did not write $MLCTL_OUTPUT ({})",
                    t.command,
                    az.blob.url(&key)
                ),
            ));
        }
        return Ok(key);
    }
    Err(err(
        ErrorKind::Failed,
        op,
        format!(
            "{what}: the transform's Azure ML job {base} failed {MAX_ATTEMPTS} times; fix the cause and change the Dataset (a new fingerprint gets a new name)"
        ),
    ))
}

/// Polls `jobs/<name>` until it ends (no time limit of its own: the job's is 24 h).
async fn wait(az: &Azure, path: &str) -> Result<Value> {
    let started = Instant::now();
    loop {
        let Some(job) = az.arm.get(path).await? else {
            return Err(err(
                ErrorKind::NotFound,
                "transform",
                format!("{path} disappeared while mlctl waited for it"),
            ));
        };
        let state = trainer::status(
            job.pointer("/properties/status")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        if matches!(state, Status::Completed | Status::Failed | Status::Canceled) {
            return Ok(job);
        }
        tracing::debug!("{path}: {state:?} after {} s", started.elapsed().as_secs());
        tokio::time::sleep(az.settings.poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_script_follows_the_transform_contract() {
        let inputs = vec!["churn-raw".to_string(), "b".to_string()];
        let script = entry_script("churn", &inputs, "out/features.csv", "python3 prep.py");
        assert!(script.contains("take churn-raw MLCTL_INPUT_CHURN_RAW \"$1\"; shift\n"));
        assert!(script.contains("take b MLCTL_INPUT_B \"$1\"; shift\n"));
        assert!(script.contains("export MLCTL_OUTPUT=\"$MLCTL_OUTPUT_DIR\"/out/features.csv\n"));
        assert!(script.ends_with("python3 prep.py\n"));
        assert_eq!(
            job_command(&inputs),
            "sh ./mlctl_transform.sh ${{inputs.in_churn_raw}} ${{inputs.in_b}} ${{outputs.output}}"
        );
        // Run as the job would: the inputs copied and named, the output written where asked.
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw-blob");
        std::fs::write(&raw, "a\n1\n").unwrap();
        let par = dir.path().join("par-blob");
        std::fs::write(&par, "PAR1....").unwrap();
        let out = dir.path().join("out-folder");
        let script = entry_script(
            "churn",
            &inputs,
            "out/features.csv",
            "cat \"$MLCTL_INPUT_CHURN_RAW\" > \"$MLCTL_OUTPUT\"; echo \"$MLCTL_INPUT_B $MLCTL_DATASET\" >> \"$MLCTL_OUTPUT\"",
        );
        std::fs::write(dir.path().join(ENTRY), script).unwrap();
        let status = std::process::Command::new("sh")
            .arg(ENTRY)
            .args([&raw, &par, &out])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let written = std::fs::read_to_string(out.join("out/features.csv")).unwrap();
        let want = format!(
            "a\n1\n{} churn\n",
            dir.path().join(".mlctl-inputs/b.parquet").display()
        );
        assert_eq!(written, want);
    }
}
