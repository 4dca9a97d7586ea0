//! `mlctl ci comment`: one plan comment per project and target on a pull request (GitHub) or
//! merge request (GitLab), found again by a hidden marker and edited in place on every push,
//! as tfcmt and Atlantis do.
//!
//! The plan is `mlctl plan --output markdown` run as a child process (this same binary), so
//! the comment shows exactly what that command prints, and when it fails, the error output it
//! printed. `--body-file` posts a body made elsewhere instead.

pub mod api;
mod body;
mod context;

use crate::cli::CommentArgs;
use anyhow::{Context as _, Result, anyhow, bail};
use api::{Api, Comment};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// Variables holding a platform token: the plan's child process does not get them.
const TOKEN_VARS: [&str; 3] = ["GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN"];

/// One comment's content, before the marker is put on it.
struct Content {
    target: String,
    text: String,
    /// The plan ran and found nothing to change.
    no_changes: bool,
    /// The plan failed (its error output is the text).
    failed: bool,
}

/// `mlctl ci comment`.
pub fn comment(project: &Path, args: &CommentArgs) -> Result<u8> {
    if args.body_file.is_some() && args.targets.len() > 1 {
        bail!(
            "--body-file is one target's comment, and {} targets were given; run `mlctl ci comment` once per target",
            args.targets.len()
        );
    }
    // The context first, so a pipeline without a token fails before it plans.
    let api = if args.dry_run {
        None
    } else {
        let ctx = context::from_env(args.provider, args.pr, &|k| std::env::var(k).ok())?;
        Some(Api::new(ctx)?)
    };
    let head = ProjectHead::read(project)?;
    let targets = if args.targets.is_empty() {
        vec![head.default_target.clone().ok_or_else(|| {
            anyhow!(
                "{} names no `spec.defaultTarget`; pass --target NAME (once per target)",
                head.file
            )
        })?]
    } else {
        args.targets.clone()
    };
    let mut contents = Vec::new();
    for target in &targets {
        contents.push(match &args.body_file {
            Some(file) => Content {
                target: target.clone(),
                text: read_body(file)?,
                no_changes: false,
                failed: false,
            },
            None => run_plan(project, &head.name, target, args)?,
        });
    }
    let mut failed = false;
    for c in &contents {
        let marker = body::marker(&head.name, &c.target);
        let text = c
            .text
            .strip_prefix(&format!("{marker}\n"))
            .unwrap_or(&c.text);
        let body = body::compose(&marker, text, args.provider.max_body(), &c.target);
        println!("{body}");
        failed |= c.failed;
        let Some(api) = &api else {
            eprintln!(
                "mlctl ci comment: --dry-run: nothing was posted for target `{}` (its comment is the one marked `{marker}`)",
                c.target
            );
            continue;
        };
        upsert(api, &marker, &body, c, args.skip_no_changes)?;
    }
    Ok(if failed { 1 } else { 0 })
}

/// Edits the comment carrying `marker`, or posts one.
fn upsert(api: &Api, marker: &str, body: &str, c: &Content, skip_no_changes: bool) -> Result<()> {
    let ctx = api.context();
    let on = ctx.provider.request(ctx.number);
    let comments = api.list()?;
    let mut mine = comments.iter().filter(|x| x.body.contains(marker));
    let found: Option<&Comment> = mine.next();
    let others = mine.count();
    if others > 0 {
        eprintln!(
            "mlctl ci comment: {others} more comment(s) on {on} carry the marker of target `{}`; the oldest is the one kept up to date, the others can be deleted",
            c.target
        );
    }
    let done = match found {
        Some(old) if old.body == body => {
            eprintln!(
                "mlctl ci comment: the comment for target `{}` on {on} is up to date ({})",
                c.target,
                place(old)
            );
            return Ok(());
        }
        Some(old) => {
            let new = api.update(old.id, body)?;
            format!("updated the comment for target `{}` on {on}", c.target) + &at(&new)
        }
        None if skip_no_changes && c.no_changes => {
            eprintln!(
                "mlctl ci comment: no changes on target `{}`: no comment posted on {on} (--skip-no-changes)",
                c.target
            );
            return Ok(());
        }
        None => {
            let new = api.create(body)?;
            format!("commented on {on} for target `{}`", c.target) + &at(&new)
        }
    };
    eprintln!("mlctl ci comment: {done}");
    Ok(())
}

fn place(c: &Comment) -> String {
    c.url.clone().unwrap_or_else(|| format!("comment {}", c.id))
}

fn at(c: &Comment) -> String {
    format!(": {}", place(c))
}

/// The body in `file` (`-`: standard input).
fn read_body(file: &Path) -> Result<String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the comment's body from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the comment's body from {}", file.display()))
}

/// `mlctl plan --output markdown --detailed-exitcode` on `target`, as a child process of this
/// binary; its error output is passed on to ours (the job log) and, when it fails, becomes
/// the comment.
fn run_plan(
    project: &Path,
    project_name: &str,
    target: &str,
    args: &CommentArgs,
) -> Result<Content> {
    let exe = std::env::current_exe().context("cannot find the mlctl binary to run the plan")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--project")
        .arg(project)
        .args(["plan", "--output", "markdown", "--detailed-exitcode"])
        .args(["--target", target, "--rev", &args.rev.rev])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if args.rev.allow_dirty {
        cmd.arg("--allow-dirty");
    }
    if args.prune {
        cmd.arg("--prune");
    }
    for var in TOKEN_VARS {
        cmd.env_remove(var);
    }
    let out = cmd.output().context("cannot run `mlctl plan`")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprint!("{stderr}");
    let code = out.status.code().unwrap_or(-1);
    Ok(match code {
        0 | 2 => Content {
            target: target.to_string(),
            text: stdout,
            no_changes: code == 0,
            failed: false,
        },
        _ => {
            let commit = mlctl_git::Repo::discover(project)
                .and_then(|r| r.resolve(&args.rev.rev))
                .map(|c| c.short_sha)
                .unwrap_or_else(|_| args.rev.rev.clone());
            Content {
                target: target.to_string(),
                text: body::failure(project_name, target, &commit, code, &stderr),
                no_changes: false,
                failed: true,
            }
        }
    })
}

/// What the marker needs from `mlctl.yaml`, read without validating the spec: a pull request
/// that breaks the spec still gets its comment, saying why the plan failed.
struct ProjectHead {
    file: String,
    name: String,
    default_target: Option<String>,
}

impl ProjectHead {
    fn read(project: &Path) -> Result<Self> {
        let path = project.join("mlctl.yaml");
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {file}: is --project the project directory?"))?;
        let nodes = mlctl_spec::yaml::parse(&text).map_err(|e| {
            anyhow!(
                "{file}:{}:{} is not YAML: {}; run `mlctl validate` for the details",
                e.span.line,
                e.span.col,
                e.message
            )
        })?;
        let project_doc = nodes
            .iter()
            .find(|n| n.get("kind").and_then(|k| k.as_str()) == Some("Project"))
            .or(nodes.first());
        let name = project_doc
            .and_then(|n| n.at(&["metadata", "name"]))
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "{file} has no `metadata.name`, which names the comment; run `mlctl validate`"
                )
            })?;
        let default_target = project_doc
            .and_then(|n| n.at(&["spec", "defaultTarget"]))
            .and_then(|n| n.as_str())
            .map(str::to_string);
        Ok(ProjectHead {
            file,
            name,
            default_target,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn providers_name_their_requests_as_the_platforms_do() {
        assert_eq!(super::api::Provider::Github.request(4), "pull request #4");
        assert_eq!(super::api::Provider::Gitlab.request(4), "merge request !4");
    }
}
