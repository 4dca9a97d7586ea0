//! The contract of a Dataset `transform`, the same on every target: what the command is
//! given and what it must leave behind.
//!
//! - Each input Dataset is a file `<input dir>/<name>.<csv|parquet>`, named by
//!   `MLCTL_INPUT_<NAME>` (the name upper-cased, other characters `_`).
//! - The command writes `MLCTL_OUTPUT`, the file `transform.output` (default
//!   [`DEFAULT_OUTPUT`]) inside the directory `MLCTL_OUTPUT_DIR`; `MLCTL_DATASET` is the
//!   derived Dataset's name.
//! - It runs with `sh`, in the project directory (or, on a cloud target, in a directory
//!   holding `transform.code` at its project path), with [`child_env`]: never mlctl's
//!   credentials.
//!
//! The output is then registered like any dataset (digest, schema, target, split, limits).
//! Targets that run the command on this machine (local, mock, SageMaker in emulator mode)
//! share [`run`]; the local target runs it through its own supervisor (logs, cancel, strays).

use mlctl_spec::{DataFormat, Transform};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// The file a transform writes when `transform.output` is not set.
pub const DEFAULT_OUTPUT: &str = "output.csv";

/// Lines of stderr kept for a failure message.
pub const STDERR_TAIL: usize = 20;

/// The output file's name relative to the output directory: `transform.output` or
/// [`DEFAULT_OUTPUT`]. `Err` is the message for a path that leaves the directory (absolute,
/// `..`); `what` names the dataset (``dataset `x` ``).
pub fn output_name(t: &Transform, what: &str) -> Result<String, String> {
    let name = t
        .output
        .clone()
        .unwrap_or_else(|| DEFAULT_OUTPUT.to_string());
    let path = Path::new(&name);
    if name.is_empty()
        || path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "{what}: `transform.output` {name} must be a relative path inside the transform's output directory ($MLCTL_OUTPUT_DIR), without `..` (write e.g. `output: features.csv`)"
        ));
    }
    Ok(name)
}

/// Where `transform.code` (`code`) is in the project, and its path inside the directory a
/// cloud job runs in (its components joined with `/`). `what` names the dataset
/// (``dataset `x` ``); `provider` names the target in the error.
///
/// # Errors
/// An absolute path or one with `..` (Invalid), or a path the project does not have
/// (NotFound).
pub fn code_location(
    provider: &str,
    project_dir: &Path,
    code: &str,
    what: &str,
) -> Result<(PathBuf, String), crate::error::ProviderError> {
    use crate::error::{ErrorKind, ProviderError};
    use std::path::Component;
    let rel = Path::new(code);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ProviderError::new(
            ErrorKind::Invalid,
            provider,
            "transform",
            format!(
                "{what}: `transform.code` {code} must be a path inside the project, without `..`"
            ),
        ));
    }
    let at: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let path = project_dir.join(rel);
    if !path.exists() {
        return Err(ProviderError::new(
            ErrorKind::NotFound,
            provider,
            "transform",
            format!(
                "{what}: `transform.code` {code} does not exist in the project ({})",
                project_dir.display()
            ),
        ));
    }
    Ok((path, at.join("/")))
}

/// `my-data` -> `MY_DATA`, for environment variable names.
pub fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The file name of an input Dataset in the input directory: `<name>.csv` or `<name>.parquet`.
pub fn input_file(name: &str, format: DataFormat) -> String {
    let ext = match format {
        DataFormat::Csv => "csv",
        DataFormat::Parquet => "parquet",
    };
    format!("{name}.{ext}")
}

/// The format of stored table bytes: Parquet by its magic number, else CSV.
pub fn sniff(first_bytes: &[u8]) -> DataFormat {
    if first_bytes.starts_with(b"PAR1") {
        DataFormat::Parquet
    } else {
        DataFormat::Csv
    }
}

/// The variables the command gets (on top of [`child_env`]): its inputs (name, path), its
/// output directory and file, and the derived Dataset's name. Paths are given as the command
/// will see them (a container's `/opt/ml/processing/...` on SageMaker).
pub fn variables(
    dataset: &str,
    inputs: &[(String, String)],
    output_dir: &str,
    output: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = inputs
        .iter()
        .map(|(name, path)| (format!("MLCTL_INPUT_{}", env_name(name)), path.clone()))
        .collect();
    let dir = output_dir.trim_end_matches('/');
    env.push(("MLCTL_OUTPUT".into(), format!("{dir}/{output}")));
    env.push(("MLCTL_OUTPUT_DIR".into(), dir.to_string()));
    env.push(("MLCTL_DATASET".into(), dataset.to_string()));
    env
}

/// Variables a command inherits from mlctl's environment, by name; `LC_*` too. Everything
/// else (AWS_*, AZURE_*, tokens, `${env:...}` secrets of the spec) stays out.
pub const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TMP",
    "TEMP",
    "TERM",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "LD_LIBRARY_PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The part of this process's environment a child command inherits ([`INHERITED`] and
/// `LC_*`).
pub fn child_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| INHERITED.contains(&k.as_str()) || k.starts_with("LC_"))
        .collect()
}

/// A command for [`run`].
#[derive(Debug, Clone)]
pub struct Command {
    /// Run with `sh -c`.
    pub command: String,
    /// Working directory.
    pub cwd: PathBuf,
    /// Set on top of [`child_env`] (see [`variables`]).
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go (created; replaced when it exists).
    pub log: PathBuf,
}

/// How a command ended.
#[derive(Debug, Clone)]
#[must_use]
pub struct Exit {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// The last [`STDERR_TAIL`] lines of its output.
    pub tail: Vec<String>,
}

impl Exit {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "`what` exited with code 2; last lines of its output: ..." for a failure message.
    pub fn describe(&self, what: &str) -> String {
        let how = match self.code {
            Some(c) => format!("exited with code {c}"),
            None => "was killed by a signal".to_string(),
        };
        if self.tail.is_empty() {
            format!("{what} {how} (no output)")
        } else {
            format!(
                "{what} {how}; last lines of its output:\n{}",
                self.tail
                    .iter()
                    .map(|l| format!("  | {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        }
    }
}

/// Runs `cmd` to its end with a scrubbed environment ([`child_env`] plus `cmd.env`), stdin
/// closed, stdout and stderr into `cmd.log`.
///
/// # Errors
/// The command could not be started, or the log could not be written or read back.
pub async fn run(cmd: &Command) -> std::io::Result<Exit> {
    if let Some(dir) = cmd.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::File::create(&cmd.log)?;
    let err = log.try_clone()?;
    let mut child = tokio::process::Command::new("sh");
    child
        .arg("-c")
        .arg(&cmd.command)
        .env_clear()
        .envs(child_env())
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cmd.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .kill_on_drop(true);
    let status = child.spawn()?.wait().await?;
    let text = std::fs::read(&cmd.log)?;
    let mut tail: VecDeque<String> = VecDeque::new();
    for line in String::from_utf8_lossy(&text).lines() {
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(500).collect());
    }
    Ok(Exit {
        code: status.code(),
        tail: tail.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transform(output: Option<&str>) -> Transform {
        Transform {
            command: "true".into(),
            inputs: vec![],
            code: None,
            output: output.map(str::to_string),
            image: None,
        }
    }

    #[test]
    fn the_output_stays_inside_the_output_directory() {
        assert_eq!(output_name(&transform(None), "d").unwrap(), "output.csv");
        assert_eq!(
            output_name(&transform(Some("a/b.parquet")), "d").unwrap(),
            "a/b.parquet"
        );
        for bad in ["/etc/x.csv", "../x.csv", "a/../../x", ""] {
            let e = output_name(&transform(Some(bad)), "dataset `d`").unwrap_err();
            assert!(
                e.contains("dataset `d`") && e.contains("MLCTL_OUTPUT_DIR"),
                "{e}"
            );
        }
    }

    #[test]
    fn variables_name_inputs_output_and_dataset() {
        let env = variables(
            "feat",
            &[("raw-data".into(), "/in/raw-data/raw-data.csv".into())],
            "/out/",
            "f.csv",
        );
        assert_eq!(
            env,
            vec![
                (
                    "MLCTL_INPUT_RAW_DATA".to_string(),
                    "/in/raw-data/raw-data.csv".to_string()
                ),
                ("MLCTL_OUTPUT".into(), "/out/f.csv".into()),
                ("MLCTL_OUTPUT_DIR".into(), "/out".into()),
                ("MLCTL_DATASET".into(), "feat".into()),
            ]
        );
        assert_eq!(sniff(b"PAR1...."), DataFormat::Parquet);
        assert_eq!(sniff(b"a,b\n"), DataFormat::Csv);
    }

    #[tokio::test]
    async fn commands_get_only_the_inherited_environment() {
        let dir = std::env::temp_dir().join(format!("mlctl-transform-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cmd = Command {
            // AWS_SECRET_ACCESS_KEY is never inherited, whatever the parent has.
            command: "echo \"x=$X secret=${AWS_SECRET_ACCESS_KEY:-none}\"; exit 3".into(),
            cwd: dir.clone(),
            env: vec![("X".into(), "1".into())],
            log: dir.join("log"),
        };
        let exit = run(&cmd).await.unwrap();
        assert_eq!(exit.code, Some(3));
        assert_eq!(exit.tail, vec!["x=1 secret=none".to_string()]);
        assert!(exit.describe("t").contains("exited with code 3"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
