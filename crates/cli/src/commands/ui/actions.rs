//! The dashboard's actions. Each runs the `mlctl` command a user would type, as a child of
//! this binary: the same code, the same target lock (taken at once, as the CLI's default
//! `--lock-timeout 0s`) and the same messages. The page shows what it printed.

use super::html::{self, esc};
use super::{Page, Req, Ui, encode};
use axum::http::StatusCode;
use std::fmt::Write;

/// An action's command line (without the binary), and the page to go back to.
fn command(ui: &Ui, req: &Req) -> Result<(Vec<String>, String), String> {
    let what = req.path.get(1).map(String::as_str);
    let field = |k: &str| {
        req.get(k)
            .map(str::to_string)
            .ok_or_else(|| format!("the form has no `{k}`"))
    };
    match (req.path.first().map(String::as_str), what) {
        (Some("actions"), Some(d @ ("approve" | "reject"))) => {
            let model = field("model")?;
            let version = field("version")?;
            if version.parse::<u32>().is_err() {
                return Err(format!(
                    "version `{}` is not a number",
                    mlctl_spec::suggest::clip(&version, 20)
                ));
            }
            let back = format!("/models/{}", encode(&model));
            Ok((
                with_target(ui, vec!["models".into(), d.into(), model, version]),
                back,
            ))
        }
        (Some("actions"), Some("rollback")) => {
            let endpoint = field("endpoint")?;
            let back = format!("/endpoints/{}", encode(&endpoint));
            let mut a = vec!["rollback".to_string(), endpoint];
            if let Some(to) = req.get("to") {
                a.extend(["--to".into(), to.to_string()]);
            }
            Ok((with_target(ui, a), back))
        }
        (Some("actions"), Some("monitor-run")) => {
            let monitor = field("monitor")?;
            let back = format!("/monitors/{}", encode(&monitor));
            Ok((
                with_target(ui, vec!["monitor".into(), "run".into(), monitor]),
                back,
            ))
        }
        _ => Err(format!(
            "no action at /{}; the actions are approve, reject, rollback and monitor-run",
            req.path.join("/")
        )),
    }
}

fn with_target(ui: &Ui, mut args: Vec<String>) -> Vec<String> {
    if let Some(t) = &ui.target.target {
        args.extend(["--target".into(), t.clone()]);
    }
    args
}

/// Runs the action of a POST (the CSRF check has passed) and shows its result.
pub fn run(ui: &Ui, req: &Req) -> Page {
    let (args, back) = match command(ui, req) {
        Ok(c) => c,
        Err(e) => return super::plain(StatusCode::BAD_REQUEST, e),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return super::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot find the mlctl binary to run the action: {e}"),
            );
        }
    };
    let out = std::process::Command::new(exe)
        .arg("-C")
        .arg(&ui.project)
        .args(&args)
        .env("NO_COLOR", "1")
        .env_remove("MLCTL_PROJECT")
        .stdin(std::process::Stdio::null())
        .output();
    let shown = format!("mlctl {}", args.join(" "));
    let (ok, text) = match out {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot run it: {e}")),
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<p class=\"{}\" id=\"action-result\" role=\"status\">{} <code>{}</code></p><pre>{}</pre><p><a id=\"back\" href=\"{}\">Back</a></p>",
        if ok { "ok" } else { "error" },
        if ok { "Done:" } else { "Failed:" },
        esc(&shown),
        esc(&mlctl_spec::suggest::clip(&text, 8000)),
        esc(&back)
    );
    let page = match super::pages::open_for_frame(ui) {
        Some(s) => html::page(
            &super::pages::frame(&s, ui.allow_actions),
            "",
            "Action",
            &body,
        ),
        None => format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mlctl: action</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head><body><main><h1>Action</h1>{body}</main></body></html>"
        ),
    };
    let mut p = Page::html(page);
    if !ok {
        p.status = StatusCode::CONFLICT;
    }
    p
}
