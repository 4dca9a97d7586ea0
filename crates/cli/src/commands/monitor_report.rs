//! The HTML report of a monitor: written after every `mlctl monitor run` (one file per
//! monitor, the latest replacing the last) and on demand by `mlctl monitor report`.
//!
//! The page is `mlctl_core::monitoring::report::html` of the monitor's stored results (the
//! latest and its history), so it is the same on every target and can be rebuilt at any time
//! from the target's state store.

use crate::cli::{MonitorReportArgs, Output};
use crate::session::{self, Session};
use anyhow::{Context, Result, anyhow, bail};
use mlctl_core::monitoring::report;
use mlctl_spec::ResourceSpec;
use std::path::{Path, PathBuf};

/// Where reports go unless told: under the project's `.mlctl/`, which git ignores.
fn default_dir(s: &Session) -> PathBuf {
    s.project_dir.join(".mlctl").join("reports")
}

/// Writes the report of each monitor `run` evaluated (`names`, or every Monitor of the spec)
/// into `dir` (default [`default_dir`]) and says where. A report that cannot be written is a
/// warning, not a failure: the evaluation is recorded either way.
pub fn after_run(s: &Session, names: &[String], dir: Option<&Path>, output: Output) {
    let dir = dir.map_or_else(|| default_dir(s), Path::to_path_buf);
    let monitors: Vec<&str> = s
        .spec
        .resources
        .iter()
        .filter(|r| matches!(r.spec, ResourceSpec::Monitor(_)))
        .map(|r| r.id.name.as_str())
        .filter(|n| names.is_empty() || names.iter().any(|x| x == n))
        .collect();
    for name in monitors {
        let path = dir.join(format!("{name}.html"));
        match render(s, name).and_then(|page| write(&path, &page)) {
            // JSON on stdout stays parseable.
            Ok(()) if output == Output::Json => eprintln!("Report: {}", path.display()),
            Ok(()) => println!("Report: {}", path.display()),
            Err(e) => eprintln!(
                "{} monitor `{name}`: no report written: {e:#}. The result is recorded \
                 (`mlctl monitor history {name}`); give `--report` a writable directory, or \
                 write it later with `mlctl monitor report {name} --out FILE`.",
                crate::style::yellow("warning:")
            ),
        }
    }
}

/// `mlctl monitor report MONITOR [--out FILE] [--open]`.
pub fn report(project: &Path, args: MonitorReportArgs) -> Result<u8> {
    let s = session::open_target(project, &args.target)?;
    let page = render(&s, &args.monitor)?;
    let path = match args.out {
        Some(path) => path,
        None => default_dir(&s).join(format!("{}.html", file_stem(&args.monitor)?)),
    };
    write(&path, &page)?;
    println!("Report: {}", path.display());
    if args.open {
        open(&path);
    }
    Ok(0)
}

/// The page of `monitor`'s stored results, or an error saying how to get some.
pub(crate) fn render(s: &Session, monitor: &str) -> Result<String> {
    let results =
        s.rt.block_on(s.stack.state.monitor_results(&s.ctx.project, monitor))
            .map_err(|e| {
                anyhow!(
                    "cannot read the results of monitor `{}` on target `{}`: {e}",
                    mlctl_spec::suggest::quote(monitor),
                    s.target_name
                )
            })?;
    report::html(&results).ok_or_else(|| {
        let known: Vec<&str> = s
            .spec
            .resources
            .iter()
            .filter(|r| matches!(r.spec, ResourceSpec::Monitor(_)))
            .map(|r| r.id.name.as_str())
            .collect();
        let in_spec = known.contains(&monitor);
        let monitor = mlctl_spec::suggest::quote(monitor);
        if in_spec {
            anyhow!(
                "monitor `{monitor}` was never evaluated on target `{}`, so there is nothing to report; `mlctl monitor run {monitor}` evaluates it (and writes the report)",
                s.target_name
            )
        } else {
            anyhow!(
                "no results for monitor `{monitor}` on target `{}`, and the spec at {} has no such Monitor (it has {})",
                s.target_name,
                s.commit.short_sha,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    mlctl_spec::suggest::list(known.iter().map(|k| format!("`{k}`")))
                }
            )
        }
    })
}

/// A monitor's name as a file name: names are DNS labels, but one typed on the command line
/// is not checked before this.
fn file_stem(monitor: &str) -> Result<&str> {
    if monitor.is_empty()
        || !monitor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "monitor `{}` cannot name a file; give the report's path with --out FILE",
            mlctl_spec::suggest::quote(monitor)
        );
    }
    Ok(monitor)
}

/// Writes `page` to `path` through a temporary file beside it, so a browser reloading the
/// report never reads half of one.
fn write(path: &Path, page: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, page).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}", path.display())
    })
}

/// Opens `path` with the desktop's opener, or says it could not (the path is printed already).
fn open(path: &Path) {
    let openers: &[&str] = if cfg!(target_os = "macos") {
        &["open"]
    } else {
        &["xdg-open", "open"]
    };
    for opener in openers {
        match std::process::Command::new(opener)
            .arg(path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Ok(st) if st.success() => return,
            Ok(st) => {
                eprintln!(
                    "could not open the report: `{opener}` exited with {st}; open {} in a browser",
                    path.display()
                );
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                eprintln!(
                    "could not open the report: cannot run `{opener}`: {e}; open {} in a browser",
                    path.display()
                );
                return;
            }
        }
    }
    eprintln!(
        "could not open the report: no {} on PATH; open {} in a browser",
        openers.join(" or "),
        path.display()
    );
}
