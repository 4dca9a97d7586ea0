//! Dataset transforms as SageMaker Processing jobs, with the contract of every target
//! (`mlctl_core::transform`).
//!
//! The job gets each input Dataset as the channel `/opt/ml/processing/input/<name>/<name>.csv`
//! (or `.parquet`), `transform.code` packed at its project path (a reproducible tar.gz stored
//! content-addressed, `objects/<blake3>`, like a training job's code) and unpacked into
//! `/opt/ml/processing/work`, where the command runs; it writes `MLCTL_OUTPUT` under
//! `/opt/ml/processing/output`, which SageMaker uploads to
//! `transforms/<job>/output/` when the job ends. The data store then reads that file back and
//! registers it like any dataset (digest, schema, target, split, limits), content-addressed.
//!
//! # Guarantees
//! - The job name is derived from the project, the Dataset and its fingerprint, and looked
//!   up before anything is created: a re-run after a crash finds the job (running, or done)
//!   instead of starting a second. A failed job is retried under the next attempt name
//!   (`-r2`, ...) by the next apply, as training jobs are; its `FailureReason` is the error.
//! - The command never sees mlctl's credentials: on SageMaker it runs with the job's role;
//!   in emulator mode with the scrubbed environment of `mlctl_core::transform::child_env`.
//!
//! # Caveats
//! moto accepts CreateProcessingJob and reports the job `Completed` at once without running
//! anything ([`crate::Features::run_processing_jobs`]). In emulator mode mlctl then runs the
//! job's own entry script on this machine, in a directory laid out as the container's
//! `/opt/ml/processing` (same inputs, code archive, variables), and uploads the output
//! directory to the job's output prefix, so the rest is what happens on AWS.

use crate::aws::{Aws, sm_tags};
use crate::data::{blob_key, put_blob};
use crate::error::{aws_err, is_not_found, provider_err};
use crate::names;
use aws_sdk_sagemaker::operation::describe_processing_job::DescribeProcessingJobOutput;
use aws_sdk_sagemaker::types::{
    AppSpecification, ProcessingClusterConfig, ProcessingInput, ProcessingInstanceType,
    ProcessingJobStatus, ProcessingOutput, ProcessingOutputConfig, ProcessingResources,
    ProcessingS3DataType, ProcessingS3Input, ProcessingS3InputMode, ProcessingS3Output,
    ProcessingS3UploadMode, ProcessingStoppingCondition,
};
use mlctl_core::error::Result;
use mlctl_core::{DatasetRequest, ErrorKind, OpContext, ProviderError};
use mlctl_spec::Transform;
use std::path::Path;

/// Where the container sees everything: SageMaker's processing directory.
pub(crate) const ROOT: &str = "/opt/ml/processing";
/// The script in the code archive that runs the command.
pub(crate) const ENTRY: &str = "mlctl_transform.sh";
/// The instance a transform runs on (the spec's `transform` has no `compute`).
pub(crate) const INSTANCE_TYPE: ProcessingInstanceType = ProcessingInstanceType::MlM5Large;
/// Its volume, in GB.
pub(crate) const VOLUME_GB: i32 = 30;
/// The longest a transform may run: 24 hours.
pub(crate) const MAX_RUNTIME_SECS: i32 = 24 * 3600;
/// Attempts of one transform (failed jobs keep their names) before mlctl gives up.
const MAX_ATTEMPTS: u32 = 20;
/// The ProcessingInput that carries the code (dataset inputs are named after the Dataset,
/// whose names never hold `_`).
const CODE_INPUT: &str = "mlctl_code";

/// What a Processing job is asked to do, built once and sent as is (AWS) or run here
/// (emulator mode).
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub name: String,
    pub image: String,
    /// Digest of the code archive (`objects/<digest>`).
    pub code: String,
    /// (Dataset name, S3 prefix of its named copy, file name in the channel).
    pub inputs: Vec<(String, String, String)>,
    /// `s3://bucket/<prefix>/transforms/<job>/output` (no trailing slash).
    pub output_uri: String,
    /// `transform.output`, relative to the output directory.
    pub output: String,
}

impl Job {
    /// The container's entry point under `root` (`/opt/ml/processing`, or a directory of
    /// this machine in emulator mode): unpack the code into `work/` and run the command there.
    pub(crate) fn entrypoint(&self, root: &str) -> String {
        format!(
            "set -e; mkdir -p {work}; cd {work}; tar -xzf {code}; exec sh ./{ENTRY}",
            work = quote(&format!("{root}/work")),
            code = quote(&format!("{root}/code/{}", self.code)),
        )
    }

    /// The command's variables (`mlctl_core::transform::variables`) under `root`.
    pub(crate) fn variables(&self, dataset: &str, root: &str) -> Vec<(String, String)> {
        let inputs: Vec<(String, String)> = self
            .inputs
            .iter()
            .map(|(name, _, file)| (name.clone(), format!("{root}/input/{name}/{file}")))
            .collect();
        mlctl_core::transform::variables(dataset, &inputs, &format!("{root}/output"), &self.output)
    }

    /// The S3 URI of the output file.
    pub(crate) fn output_file(&self) -> String {
        format!("{}/{}", self.output_uri, self.output)
    }
}

/// `s` in single quotes for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs the transform of `req` as a Processing job (or finds the one a previous run
/// started) and returns the S3 URI of its output file, which the data store reads and
/// registers.
///
/// # Errors
/// A code path outside the project, an input without a version, a failed job (with
/// SageMaker's reason), or an output file the command did not write.
pub(crate) async fn run(
    aws: &Aws,
    ctx: &OpContext,
    req: &DatasetRequest,
    t: &Transform,
) -> Result<String> {
    let op = "transform";
    let what = format!("dataset `{}`", req.name);
    let output = mlctl_core::transform::output_name(t, &what)
        .map_err(|m| provider_err(ErrorKind::Invalid, op, m))?;
    let base = names::job(
        &mlctl_core::fingerprint::deterministic_name(
            &ctx.project,
            &req.name,
            &mlctl_core::Fingerprint(req.fingerprint.clone()),
            names::MAX,
        ),
        names::MAX,
    );
    for attempt in 1..=MAX_ATTEMPTS {
        let name = if attempt == 1 {
            base.clone()
        } else {
            names::with_suffix(&base, &format!("r{attempt}"), names::MAX)
        };
        let found = find(aws, &name).await?;
        if found.as_ref().is_some_and(failed) {
            continue;
        }
        let mut job = definition(aws, ctx, req, t, &name, &output).await?;
        match found {
            // The job writes where it was told when it was created (a target whose prefix
            // in the bucket moved since still reads it there).
            Some(d) => {
                if let Some(uri) = output_uri(&d).filter(|u| key_of(aws, u).is_ok()) {
                    job.output_uri = uri;
                }
            }
            None => create(aws, req, &job).await?,
        }
        let done = wait(aws, &name).await?;
        if failed(&done) {
            return Err(provider_err(
                ErrorKind::Failed,
                "DescribeProcessingJob",
                format!(
                    "{what}: the transform `{}` failed as SageMaker Processing job {name}: {}{}; fix the cause and apply again (the next attempt is a new job)",
                    t.command,
                    done.failure_reason().unwrap_or("SageMaker gave no reason"),
                    done.exit_message()
                        .filter(|m| !m.is_empty())
                        .map(|m| format!(" (exit message: {})", bounded(m, 1000)))
                        .unwrap_or_default()
                ),
            ));
        }
        let file = job.output_file();
        let key = key_of(aws, &file)?;
        if !aws.exists(&key).await? {
            if !aws.features.run_processing_jobs {
                run_here(aws, req, &job, &t.command).await?;
            }
            if !aws.exists(&key).await? {
                return Err(provider_err(
                    ErrorKind::Failed,
                    op,
                    format!(
                        "{what}: the transform `{}` succeeded (Processing job {name}) but did not write $MLCTL_OUTPUT ({file})",
                        t.command
                    ),
                ));
            }
        }
        return Ok(file);
    }
    Err(provider_err(
        ErrorKind::Failed,
        "CreateProcessingJob",
        format!(
            "{what}: the transform's Processing job {base} failed {MAX_ATTEMPTS} times; fix the cause and change the Dataset (a new fingerprint gets a new name)"
        ),
    ))
}

fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

fn key_of(aws: &Aws, uri: &str) -> Result<String> {
    crate::aws::parse_s3_uri(uri)
        .filter(|(b, _)| *b == aws.bucket)
        .map(|(_, k)| k)
        .ok_or_else(|| {
            provider_err(
                ErrorKind::Other,
                "transform",
                format!("{uri} is not in the target's bucket"),
            )
        })
}

fn failed(d: &DescribeProcessingJobOutput) -> bool {
    matches!(
        d.processing_job_status(),
        Some(ProcessingJobStatus::Failed | ProcessingJobStatus::Stopped)
    )
}

/// The job by name (`None` when SageMaker does not know it).
async fn find(aws: &Aws, name: &str) -> Result<Option<DescribeProcessingJobOutput>> {
    match aws
        .sm
        .describe_processing_job()
        .processing_job_name(name)
        .send()
        .await
    {
        Ok(d) => Ok(Some(d)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(aws_err("DescribeProcessingJob", e)),
    }
}

/// Polls the job until it ends.
async fn wait(aws: &Aws, name: &str) -> Result<DescribeProcessingJobOutput> {
    loop {
        let d = find(aws, name).await?.ok_or_else(|| {
            provider_err(
                ErrorKind::Transient,
                "DescribeProcessingJob",
                format!("Processing job {name} was created but cannot be read yet"),
            )
        })?;
        if matches!(
            d.processing_job_status(),
            Some(
                ProcessingJobStatus::Completed
                    | ProcessingJobStatus::Failed
                    | ProcessingJobStatus::Stopped
            )
        ) {
            return Ok(d);
        }
        tokio::time::sleep(aws.settings.poll_interval).await;
    }
}

/// The S3 URI a job's output goes to, as SageMaker has it.
fn output_uri(d: &DescribeProcessingJobOutput) -> Option<String> {
    d.processing_output_config()?
        .outputs()
        .first()?
        .s3_output()?
        .s3_uri()
        .map(|u| u.trim_end_matches('/').to_string())
}

/// The job's definition, with the code archive and the inputs' named copies put in the
/// bucket (both content-addressed, so a re-run writes nothing new: a few HeadObjects).
async fn definition(
    aws: &Aws,
    ctx: &OpContext,
    req: &DatasetRequest,
    t: &Transform,
    name: &str,
    output: &str,
) -> Result<Job> {
    let op = "transform";
    let what = format!("dataset `{}`", req.name);
    let image = match &t.image {
        Some(i) => i.clone(),
        None => crate::images::default_framework_image(&aws.region).ok_or_else(|| {
            provider_err(
                ErrorKind::Invalid,
                "CreateProcessingJob",
                format!(
                    "{what}: no default transform image is known for region {}: set `transform.image`",
                    aws.region
                ),
            )
        })?,
    };
    let packed = pack(ctx, t, &what)?;
    let code = put_blob(aws, packed, "application/gzip").await?;
    let mut inputs = Vec::new();
    for input in &t.inputs {
        let Some(v) = req.inputs.get(input) else {
            return Err(provider_err(
                ErrorKind::Precondition,
                op,
                format!("{what}: input `{input}` has no registered version; apply it first"),
            ));
        };
        let format = format_of(aws, &v.uri).await?;
        let file = mlctl_core::transform::input_file(input, format);
        let prefix = aws.key(&format!("transform-inputs/{input}/{}/", v.digest));
        let dest = format!("{prefix}{file}");
        if !aws.exists(&dest).await? {
            let (bucket, key) = crate::aws::parse_s3_uri(&v.uri).ok_or_else(|| {
                provider_err(
                    ErrorKind::Invalid,
                    op,
                    format!("{what}: input `{input}` is at `{}`, not on S3", v.uri),
                )
            })?;
            aws.s3
                .copy_object()
                .bucket(&aws.bucket)
                .key(&dest)
                .copy_source(format!("{bucket}/{key}"))
                .send()
                .await
                .map_err(|e| aws_err("CopyObject", e))?;
        }
        inputs.push((input.clone(), aws.uri(&prefix), file));
    }
    Ok(Job {
        name: name.to_string(),
        image,
        code,
        inputs,
        output_uri: aws.uri(&aws.key(&format!("transforms/{name}/output"))),
        output: output.to_string(),
    })
}

/// CSV or Parquet, from the first bytes of a stored table.
async fn format_of(aws: &Aws, uri: &str) -> Result<mlctl_spec::DataFormat> {
    let (bucket, key) = crate::aws::parse_s3_uri(uri).ok_or_else(|| {
        provider_err(
            ErrorKind::Invalid,
            "transform",
            format!("`{uri}` is not an s3:// URI"),
        )
    })?;
    let out = aws
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .range("bytes=0-3")
        .send()
        .await
        .map_err(|e| aws_err("GetObject", e))?;
    let bytes = out.body.collect().await.map_err(|e| {
        provider_err(
            ErrorKind::Transient,
            "GetObject",
            format!("reading {uri}: {e}"),
        )
    })?;
    Ok(mlctl_core::transform::sniff(&bytes.into_bytes()))
}

/// The code archive: `transform.code` at its project path, and the entry script that runs
/// the command.
fn pack(ctx: &OpContext, t: &Transform, what: &str) -> Result<Vec<u8>> {
    let entry = format!(
        "#!/bin/sh\n# Written by mlctl: the Dataset's transform, run in a directory that holds `transform.code` at its project path.\n{}\n",
        t.command
    );
    let Some(code) = t.code.as_deref() else {
        return crate::trainer::pack(None, "", ENTRY, &entry);
    };
    let (path, at) =
        mlctl_core::transform::code_location("sagemaker", &ctx.project_dir, code, what)?;
    crate::trainer::pack(Some(&path), &at, ENTRY, &entry)
}

/// CreateProcessingJob.
async fn create(aws: &Aws, req: &DatasetRequest, job: &Job) -> Result<()> {
    let mut inputs: Vec<ProcessingInput> = job
        .inputs
        .iter()
        .map(|(name, prefix, _)| {
            ProcessingInput::builder()
                .input_name(name)
                .s3_input(s3_input(prefix, &format!("{ROOT}/input/{name}")))
                .build()
        })
        .collect();
    inputs.push(
        ProcessingInput::builder()
            .input_name(CODE_INPUT)
            .s3_input(s3_input(
                &aws.uri(&blob_key(aws, &job.code)),
                &format!("{ROOT}/code"),
            ))
            .build(),
    );
    let res = aws
        .sm
        .create_processing_job()
        .processing_job_name(&job.name)
        .role_arn(&aws.role_arn)
        .app_specification(
            AppSpecification::builder()
                .image_uri(&job.image)
                .container_entrypoint("/bin/sh")
                .container_entrypoint("-c")
                .container_entrypoint(job.entrypoint(ROOT))
                .build(),
        )
        .set_environment(Some(job.variables(&req.name, ROOT).into_iter().collect()))
        .set_processing_inputs(Some(inputs))
        .processing_output_config(
            ProcessingOutputConfig::builder()
                .outputs(
                    ProcessingOutput::builder()
                        .output_name("output")
                        .s3_output(
                            ProcessingS3Output::builder()
                                .s3_uri(&job.output_uri)
                                .local_path(format!("{ROOT}/output"))
                                .s3_upload_mode(ProcessingS3UploadMode::EndOfJob)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .processing_resources(
            ProcessingResources::builder()
                .cluster_config(
                    ProcessingClusterConfig::builder()
                        .instance_count(1)
                        .instance_type(INSTANCE_TYPE)
                        .volume_size_in_gb(VOLUME_GB)
                        .build(),
                )
                .build(),
        )
        .stopping_condition(
            ProcessingStoppingCondition::builder()
                .max_runtime_in_seconds(MAX_RUNTIME_SECS)
                .build(),
        )
        .set_tags(Some(sm_tags(&req.tags, &[])))
        .send()
        .await;
    match res {
        Ok(_) => Ok(()),
        // Another runner created it between our lookup and our create: it is the same job.
        Err(e) => match aws_err("CreateProcessingJob", e) {
            err if err.kind == ErrorKind::AlreadyExists => Ok(()),
            err => Err(err),
        },
    }
}

fn s3_input(uri: &str, local: &str) -> ProcessingS3Input {
    ProcessingS3Input::builder()
        .s3_uri(uri)
        .local_path(local)
        .s3_data_type(ProcessingS3DataType::S3Prefix)
        .s3_input_mode(ProcessingS3InputMode::File)
        .build()
}

// ---------------------------------------------------------------------------------------------
// Emulator mode

/// Does what the Processing container would (emulator mode only): downloads the inputs and
/// the code archive into a directory laid out as `/opt/ml/processing`, runs the job's entry
/// point there with the scrubbed environment and the job's variables, and uploads the output
/// directory to the job's output prefix.
async fn run_here(aws: &Aws, req: &DatasetRequest, job: &Job, command: &str) -> Result<()> {
    let op = "transform";
    let io = |e: std::io::Error| ProviderError::io("sagemaker", op, e);
    let tmp = tempfile::Builder::new()
        .prefix("mlctl-processing-")
        .tempdir()
        .map_err(io)?;
    let root = tmp.path().join("opt/ml/processing");
    let root_s = root.to_string_lossy().into_owned();
    for (name, prefix, file) in &job.inputs {
        let dir = root.join("input").join(name);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let key = key_of(aws, &format!("{prefix}{file}"))?;
        download(aws, &key, &dir.join(file)).await?;
    }
    let code_dir = root.join("code");
    std::fs::create_dir_all(&code_dir).map_err(io)?;
    download(aws, &blob_key(aws, &job.code), &code_dir.join(&job.code)).await?;
    let out_dir = root.join("output");
    std::fs::create_dir_all(&out_dir).map_err(io)?;
    if let Some(parent) = out_dir.join(&job.output).parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let log = tmp.path().join("transform.log");
    let exit = mlctl_core::transform::run(&mlctl_core::transform::Command {
        command: job.entrypoint(&root_s),
        cwd: tmp.path().to_path_buf(),
        env: job.variables(&req.name, &root_s),
        log: log.clone(),
    })
    .await
    .map_err(|e| {
        provider_err(
            ErrorKind::Failed,
            op,
            format!(
                "dataset `{}`: could not run the transform on this machine (emulator mode): {e}",
                req.name
            ),
        )
    })?;
    if !exit.success() {
        return Err(provider_err(
            ErrorKind::Failed,
            op,
            format!(
                "dataset `{}`: {} (Processing job {}, run on this machine in emulator mode)",
                req.name,
                exit.describe(&format!("the transform `{command}`")),
                job.name
            ),
        ));
    }
    let out_key = key_of(aws, &job.output_uri)?;
    upload_dir(aws, &out_dir, "", &out_key).await
}

async fn download(aws: &Aws, key: &str, dest: &Path) -> Result<()> {
    let bytes = aws.get(key).await?.ok_or_else(|| {
        provider_err(
            ErrorKind::NotFound,
            "transform",
            format!("s3://{}/{key} is gone", aws.bucket),
        )
    })?;
    std::fs::write(dest, bytes).map_err(|e| ProviderError::io("sagemaker", "transform", e))
}

/// Uploads the regular files under `dir` (links are not followed: what is read is the
/// command's own output) to `<key>/<rel>`, as SageMaker's end-of-job upload does.
async fn upload_dir(aws: &Aws, dir: &Path, rel: &str, key: &str) -> Result<()> {
    let io = |e: std::io::Error| ProviderError::io("sagemaker", "transform", e);
    let here = if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(rel)
    };
    let mut entries = std::fs::read_dir(&here)
        .map_err(io)?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let sub = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(e.path()).map_err(io)?;
        if meta.is_dir() {
            Box::pin(upload_dir(aws, dir, &sub, key)).await?;
        } else if meta.is_file() {
            aws.upload_file(
                &e.path(),
                &format!("{key}/{sub}"),
                "application/octet-stream",
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The Processing calls against SDK mocks: what moto cannot show (a job that runs, one
    //! still running when mlctl comes back, one that fails).
    use super::*;
    use crate::aws::Features;
    use crate::tests::{ROLE, aws, not_found, tags};
    use aws_sdk_s3::operation::copy_object::CopyObjectOutput;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::head_object::HeadObjectOutput;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_sagemaker::Client as Sm;
    use aws_sdk_sagemaker::operation::create_processing_job::{
        CreateProcessingJobInput, CreateProcessingJobOutput,
    };
    use aws_smithy_mocks::{Rule, mock};
    use mlctl_core::DatasetVersion;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    const FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const JOB: &str = "proj-features-0123456789ab";

    fn raw_digest() -> String {
        "a".repeat(64)
    }

    fn transform() -> Transform {
        Transform {
            command: "python3 prep/run.py".into(),
            inputs: vec!["raw".into()],
            code: Some("prep".into()),
            output: None,
            image: None,
        }
    }

    fn request() -> DatasetRequest {
        DatasetRequest {
            name: "features".into(),
            spec: mlctl_spec::DatasetSpec {
                source: None,
                format: None,
                digest: None,
                target: None,
                schema: None,
                split: None,
                transform: Some(transform()),
                limits: None,
            },
            fingerprint: FP.into(),
            tags: tags("Dataset/features"),
            inputs: BTreeMap::from([(
                "raw".to_string(),
                DatasetVersion {
                    name: "raw".into(),
                    fingerprint: "rawfp".into(),
                    digest: raw_digest(),
                    uri: format!("s3://bkt/p/objects/{}", raw_digest()),
                    rows: 2,
                    columns: vec!["a".into(), "b".into()],
                    splits: BTreeMap::new(),
                    profile_uri: None,
                },
            )]),
            source_version: None,
        }
    }

    /// A project with the transform's code, `prep/run.py`.
    fn project() -> (tempfile::TempDir, OpContext) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("prep")).unwrap();
        std::fs::write(dir.path().join("prep/run.py"), "print('hi')\n").unwrap();
        let ctx = OpContext {
            project: "proj".into(),
            project_dir: dir.path().to_path_buf(),
            target: "staging".into(),
            commit: "c0ffee".into(),
        };
        (dir, ctx)
    }

    fn status(name: &str, s: ProcessingJobStatus) -> DescribeProcessingJobOutput {
        DescribeProcessingJobOutput::builder()
            .processing_job_name(name)
            .processing_job_arn(format!(
                "arn:aws:sagemaker:us-east-1:123456789012:processing-job/{name}"
            ))
            .processing_job_status(s)
            .build()
    }

    /// HeadObject: present when `present(key)`, else 404.
    fn heads(present: fn(&str) -> bool) -> [Rule; 2] {
        [
            mock!(aws_sdk_s3::Client::head_object)
                .match_requests(move |r| r.key().is_some_and(present))
                .then_output(|| HeadObjectOutput::builder().build()),
            mock!(aws_sdk_s3::Client::head_object)
                .match_requests(move |r| !r.key().is_some_and(present))
                .sequence()
                .http_status(404, None)
                .repeatedly()
                .build(),
        ]
    }

    /// The first bytes of the raw input: CSV.
    fn sniffed() -> Rule {
        mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| r.range() == Some("bytes=0-3"))
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(b"a,b\n"))
                    .build()
            })
    }

    #[tokio::test]
    async fn a_transform_runs_as_a_processing_job_with_its_inputs_code_and_output() {
        let (_dir, ctx) = project();
        let t = transform();
        let code = blake3::hash(&pack(&ctx, &t, "d").unwrap())
            .to_hex()
            .to_string();
        let [present, absent] = heads(|k| k.ends_with("/output/output.csv"));
        let sniff = sniffed();
        let code_key = format!("p/objects/{code}");
        let put_code = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(move |r| r.key() == Some(code_key.as_str()))
            .then_output(|| PutObjectOutput::builder().build());
        let copy_input = mock!(aws_sdk_s3::Client::copy_object)
            .match_requests(|r| {
                r.copy_source() == Some(&format!("bkt/p/objects/{}", raw_digest()))
                    && r.key() == Some(&format!("p/transform-inputs/raw/{}/raw.csv", raw_digest()))
            })
            .then_output(|| CopyObjectOutput::builder().build());
        let describe = mock!(Sm::describe_processing_job)
            .match_requests(|r| r.processing_job_name() == Some(JOB))
            .sequence()
            .http_status(400, not_found("processing job"))
            .output(|| status(JOB, ProcessingJobStatus::InProgress))
            .output(|| status(JOB, ProcessingJobStatus::Completed))
            .build();
        let sent: Arc<Mutex<Option<CreateProcessingJobInput>>> = Arc::default();
        let seen = sent.clone();
        let create = mock!(Sm::create_processing_job)
            .match_requests(move |r| {
                *seen.lock().unwrap() = Some(r.clone());
                true
            })
            .then_output(|| CreateProcessingJobOutput::builder().build());
        let aws = aws(
            &[&present, &absent, &sniff, &put_code, &copy_input],
            &[&describe, &create],
            Features::AWS,
        );

        let uri = run(&aws, &ctx, &request(), &t).await.expect("transform");

        assert_eq!(
            uri,
            format!("s3://bkt/p/transforms/{JOB}/output/output.csv")
        );
        assert_eq!(create.num_calls(), 1, "one job is created");
        assert_eq!(put_code.num_calls(), 1, "the code is uploaded once");
        assert_eq!(
            copy_input.num_calls(),
            1,
            "the input gets its channel's name"
        );
        assert_eq!(describe.num_calls(), 3, "looked up, then polled to the end");
        let r = sent.lock().unwrap().clone().unwrap();
        assert_eq!(r.processing_job_name(), Some(JOB));
        assert_eq!(r.role_arn(), Some(ROLE));
        let app = r.app_specification().unwrap();
        assert_eq!(
            app.image_uri(),
            Some(
                "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
            ),
            "the default image is SageMaker's scikit-learn image of the region"
        );
        let entry = app.container_entrypoint();
        assert_eq!(&entry[..2], ["/bin/sh", "-c"]);
        assert!(
            entry[2].contains(&format!("tar -xzf '/opt/ml/processing/code/{code}'"))
                && entry[2].contains("cd '/opt/ml/processing/work'")
                && entry[2].ends_with("exec sh ./mlctl_transform.sh"),
            "{}",
            entry[2]
        );
        let inputs: Vec<(&str, &str, &str)> = r
            .processing_inputs()
            .iter()
            .map(|i| {
                let s3 = i.s3_input().unwrap();
                (
                    i.input_name().unwrap(),
                    s3.s3_uri().unwrap(),
                    s3.local_path().unwrap(),
                )
            })
            .collect();
        let raw_prefix = format!("s3://bkt/p/transform-inputs/raw/{}/", raw_digest());
        let code_uri = format!("s3://bkt/p/objects/{code}");
        assert_eq!(
            inputs,
            vec![
                ("raw", raw_prefix.as_str(), "/opt/ml/processing/input/raw"),
                ("mlctl_code", code_uri.as_str(), "/opt/ml/processing/code"),
            ]
        );
        let env = r.environment().unwrap();
        for (k, v) in [
            ("MLCTL_INPUT_RAW", "/opt/ml/processing/input/raw/raw.csv"),
            ("MLCTL_OUTPUT", "/opt/ml/processing/output/output.csv"),
            ("MLCTL_OUTPUT_DIR", "/opt/ml/processing/output"),
            ("MLCTL_DATASET", "features"),
        ] {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        let out = &r.processing_output_config().unwrap().outputs()[0];
        let s3 = out.s3_output().unwrap();
        assert_eq!(
            s3.s3_uri(),
            Some(format!("s3://bkt/p/transforms/{JOB}/output").as_str())
        );
        assert_eq!(s3.local_path(), Some("/opt/ml/processing/output"));
        assert_eq!(s3.s3_upload_mode(), Some(&ProcessingS3UploadMode::EndOfJob));
        let cluster = r.processing_resources().unwrap().cluster_config().unwrap();
        assert_eq!(
            cluster.instance_type(),
            Some(&ProcessingInstanceType::MlM5Large)
        );
        assert_eq!(cluster.instance_count(), Some(1));
        let tags: BTreeMap<&str, &str> = r
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(tags.get("mlctl:project"), Some(&"proj"));
        assert_eq!(tags.get("mlctl:resource"), Some(&"Dataset/features"));
    }

    #[tokio::test]
    async fn a_re_run_finds_the_running_job_instead_of_starting_a_second() {
        let (_dir, ctx) = project();
        let [present, absent] = heads(|_| true);
        let sniff = sniffed();
        // Created when the target's prefix in the bucket was `old`: it writes there.
        let written_to = |s| {
            let mut d = status(JOB, s);
            d.processing_output_config = Some(
                ProcessingOutputConfig::builder()
                    .outputs(
                        ProcessingOutput::builder()
                            .output_name("output")
                            .s3_output(
                                ProcessingS3Output::builder()
                                    .s3_uri(format!("s3://bkt/old/transforms/{JOB}/output"))
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            );
            d
        };
        let describe = mock!(Sm::describe_processing_job)
            .match_requests(|r| r.processing_job_name() == Some(JOB))
            .sequence()
            .output(move || written_to(ProcessingJobStatus::InProgress))
            .output(move || written_to(ProcessingJobStatus::Completed))
            .build();
        let create = mock!(Sm::create_processing_job)
            .then_output(|| CreateProcessingJobOutput::builder().build());
        let aws = aws(
            &[&present, &absent, &sniff],
            &[&describe, &create],
            Features::AWS,
        );
        let uri = run(&aws, &ctx, &request(), &transform()).await.unwrap();
        assert_eq!(
            uri,
            format!("s3://bkt/old/transforms/{JOB}/output/output.csv"),
            "the output is read where the job writes it"
        );
        assert_eq!(
            create.num_calls(),
            0,
            "the job that runs is the one waited for"
        );
    }

    #[tokio::test]
    async fn a_failed_job_stays_failed_and_the_next_attempt_reports_its_failure_reason() {
        let (_dir, ctx) = project();
        let retry = format!("{JOB}-r2");
        let [present, absent] = heads(|_| true);
        let sniff = sniffed();
        let first = mock!(Sm::describe_processing_job)
            .match_requests(|r| r.processing_job_name() == Some(JOB))
            .then_output(|| {
                let mut d = status(JOB, ProcessingJobStatus::Failed);
                d.failure_reason = Some("an earlier cause".into());
                d
            });
        let r2 = retry.clone();
        let second = mock!(Sm::describe_processing_job)
            .match_requests(move |r| r.processing_job_name() == Some(&r2))
            .sequence()
            .http_status(400, not_found("processing job"))
            .output(|| {
                DescribeProcessingJobOutput::builder()
                    .processing_job_name("proj-features-0123456789ab-r2")
                    .processing_job_status(ProcessingJobStatus::Failed)
                    .failure_reason("AlgorithmError: See job logs for more information")
                    .exit_message("ModuleNotFoundError: No module named 'pyarrow'")
                    .build()
            })
            .build();
        let r2 = retry.clone();
        let create = mock!(Sm::create_processing_job)
            .match_requests(move |r| r.processing_job_name() == Some(&r2))
            .then_output(|| CreateProcessingJobOutput::builder().build());
        let aws = aws(
            &[&present, &absent, &sniff],
            &[&first, &second, &create],
            Features::AWS,
        );
        let err = run(&aws, &ctx, &request(), &transform()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Failed);
        assert_eq!(create.num_calls(), 1, "a failed job's name is never reused");
        for want in [
            retry.as_str(),
            "AlgorithmError: See job logs",
            "No module named 'pyarrow'",
            "python3 prep/run.py",
        ] {
            assert!(err.message.contains(want), "{want}: {err}");
        }
        assert!(!err.message.contains("an earlier cause"), "{err}");
    }

    #[test]
    fn the_code_is_packed_at_its_project_path_with_the_entry_script() {
        let (_dir, ctx) = project();
        let packed = pack(&ctx, &transform(), "d").unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&packed[..]));
        let mut names = Vec::new();
        let mut entry = String::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name == ENTRY {
                std::io::Read::read_to_string(&mut e, &mut entry).unwrap();
            }
            names.push(name);
        }
        assert_eq!(names, vec!["prep/run.py", ENTRY]);
        assert!(entry.ends_with("\npython3 prep/run.py\n"), "{entry}");
        let mut outside = transform();
        outside.code = Some("../elsewhere".into());
        let err = pack(&ctx, &outside, "dataset `d`").unwrap_err();
        assert!(err.message.contains("inside the project"), "{err}");
    }
}
