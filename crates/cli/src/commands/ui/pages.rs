//! The dashboard's pages. Each opens the project at HEAD as a command does and reads through
//! the component traits (`Stack`), so every provider shows.

use super::charts::{self, Point};
use super::html::{self, Frame, badge, esc, num, value};
use super::{Page, Req, Ui, encode};
use crate::cli::RevArgs;
use crate::session::{self, Session};
use anyhow::{Result, anyhow};
use axum::http::StatusCode;
use mlctl_core::apply::ApplyOptions;
use mlctl_core::plan::{self as planner, Action, PlanOptions};
use mlctl_core::{
    ApprovalStatus, EndpointStatus, ModelVersion, ObservedResource, RunRecord, outputs,
};
use mlctl_spec::{Kind, ResourceId, ResourceSpec, Stage};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Rows a list shows at once.
const PER_PAGE: usize = 50;
/// Resources the overview shows at once.
const PER_OVERVIEW: usize = 100;
/// Columns of params (and of metrics) the runs table shows.
const MAX_COLUMNS: usize = 8;
/// Features a monitor page charts.
const MAX_FEATURE_CHARTS: usize = 12;

/// A page that is not there (404), not a failure.
#[derive(Debug)]
struct NotFound(String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

fn not_found(what: String) -> anyhow::Error {
    anyhow::Error::new(NotFound(what))
}

/// Renders the page at `req.path`.
pub fn route(ui: &Ui, req: &Req) -> Page {
    let p: Vec<&str> = req.path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["assets", "app.css"] => {
            return asset("text/css; charset=utf-8", include_str!("assets/app.css"));
        }
        ["assets", "app.js"] => {
            return asset(
                "text/javascript; charset=utf-8",
                include_str!("assets/app.js"),
            );
        }
        ["favicon.ico"] => return super::plain(StatusCode::NOT_FOUND, "no icon".into()),
        _ => {}
    }
    let s = match open(ui) {
        Ok(s) => s,
        Err(e) => {
            return error_page(
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot open the project: {e:#}"),
            );
        }
    };
    let result = match p.as_slice() {
        [] => overview(ui, &s, req),
        ["graph"] => graph(ui, &s),
        ["runs"] => runs(ui, &s, req),
        ["runs", "compare"] => compare(ui, &s, req),
        ["runs", id] => run_page(ui, &s, id),
        ["models"] => models(ui, &s),
        ["models", name] => model(ui, &s, name, req),
        ["endpoints"] => endpoints(ui, &s),
        ["endpoints", name] => endpoint(ui, &s, name),
        ["monitors"] => monitors(ui, &s),
        ["monitors", name] => monitor(ui, &s, name, req),
        ["monitors", name, "report"] => report(&s, name),
        ["plan"] => plan(ui, &s),
        ["resource", kind, name] => resource(ui, &s, kind, name),
        _ => Err(not_found(format!(
            "no page at /{}; the pages are in the bar above",
            req.path.join("/")
        ))),
    };
    result.unwrap_or_else(|e| {
        let status = if e.downcast_ref::<NotFound>().is_some() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        error_page(Some((ui, &s)), status, &format!("{e:#}"))
    })
}

fn asset(content_type: &'static str, body: &str) -> Page {
    Page {
        status: StatusCode::OK,
        content_type,
        body: body.to_string(),
        location: None,
        frameable: false,
    }
}

/// The project at HEAD: the committed spec (read from the commit when the work tree has
/// uncommitted changes, as the target's sync is judged against git, not the work tree).
fn open(ui: &Ui) -> Result<Session> {
    let mut rev = "HEAD".to_string();
    if crate::agent::config(&ui.project).is_none() {
        let repo = mlctl_git::Repo::discover(&ui.project).map_err(|e| anyhow!("{e}"))?;
        if repo.ensure_clean(false).is_err() {
            rev = repo.head_commit().map_err(|e| anyhow!("{e}"))?.sha;
        }
    }
    session::open(
        &ui.project,
        &ui.target,
        &RevArgs {
            rev,
            allow_dirty: false,
        },
    )
}

/// The project for an action's result page (its frame only).
pub(super) fn open_for_frame(ui: &Ui) -> Option<Session> {
    open(ui).ok()
}

pub(super) fn frame(s: &Session, allow: bool) -> Frame<'_> {
    Frame {
        project: &s.spec.project.name,
        target: &s.target_name,
        provider: &s.stack.provider,
        commit: &s.commit.sha,
        summary: &s.commit.summary,
        allow_actions: allow,
    }
}

fn error_page(at: Option<(&Ui, &Session)>, status: StatusCode, message: &str) -> Page {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p>",
        esc(&mlctl_spec::suggest::clip(message, 4000))
    );
    let mut page = Page::html(match at {
        Some((ui, s)) => html::page(&frame(s, ui.allow_actions), "", "Error", &body),
        None => format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mlctl: error</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head><body><main><h1>mlctl ui</h1>{body}</main></body></html>"
        ),
    });
    page.status = status;
    page
}

fn done(ui: &Ui, s: &Session, active: &str, title: &str, body: &str) -> Result<Page> {
    Ok(Page::html(html::page(
        &frame(s, ui.allow_actions),
        active,
        title,
        body,
    )))
}

fn page_no(req: &Req) -> usize {
    req.get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn resource_href(id: &ResourceId) -> String {
    format!("/resource/{}/{}", id.kind.as_str(), encode(&id.name))
}

fn short(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn row_str<'a>(row: &'a serde_json::Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------------------
// Overview

fn overview(ui: &Ui, s: &Session, req: &Req) -> Result<Page> {
    let data = crate::commands::state::status_data(s)?;
    let rows = &data.rows;
    let synced = rows.iter().filter(|r| r["sync"] == "synced").count();
    let mut health: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows {
        *health
            .entry(html::health_word(row_str(r, "health")))
            .or_default() += 1;
    }
    let mut body = String::new();
    let _ = write!(
        body,
        "<section class=\"cards\"><div class=\"card\" id=\"card-resources\"><b>{}</b> resources</div>\
<div class=\"card sync-synced\" id=\"card-synced\"><b>{synced}</b> Synced</div>\
<div class=\"card sync-outofsync\" id=\"card-outofsync\"><b>{}</b> OutOfSync</div>",
        rows.len(),
        rows.len() - synced
    );
    for (h, n) in &health {
        let _ = write!(
            body,
            "<div class=\"card health-{}\"><b>{n}</b> {}</div>",
            esc(&h.to_lowercase()),
            esc(h)
        );
    }
    if s.stack.trainer.capabilities().runs {
        match s.rt.block_on(s.stack.trainer.runs(&s.ctx, None)) {
            Ok(runs) => {
                let _ = write!(
                    body,
                    "<div class=\"card\" id=\"card-runs\"><a href=\"/runs\"><b>{}</b> runs</a></div>",
                    runs.len()
                );
            }
            Err(e) => {
                let _ = write!(
                    body,
                    "<div class=\"card error\">runs: {}</div>",
                    esc(&e.to_string())
                );
            }
        }
    }
    body.push_str("</section>");
    let lock =
        s.rt.block_on(s.stack.state.lock_holder(&s.ctx.project))
            .ok()
            .flatten();
    if let Some(l) = lock {
        let _ = write!(
            body,
            "<p class=\"note\" id=\"lock\">An apply holds the target's lock: {}</p>",
            esc(&serde_json::to_string(&l).unwrap_or_default())
        );
    }
    let page = page_no(req);
    let shown = html::window(rows.len(), PER_OVERVIEW, page);
    body.push_str(
        "<table class=\"list\" id=\"resources\"><thead><tr><th>Resource</th><th>Kind</th><th>Sync</th><th>Health</th><th>Last applied commit</th><th>Updated</th><th>Detail</th></tr></thead><tbody>",
    );
    for r in &rows[shown] {
        let id = row_str(r, "resource");
        let (kind, name) = id.split_once('/').unwrap_or(("", id));
        let sync = html::sync_word(row_str(r, "sync"));
        let health = html::health_word(row_str(r, "health"));
        let detail = r["lastError"]
            .as_str()
            .or_else(|| r["message"].as_str())
            .map(str::to_string)
            .or_else(|| {
                r["reasons"]
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let missing = row_str(r, "sync") == "missing";
        let _ = write!(
            body,
            "<tr data-resource=\"{}\" data-sync=\"{sync}\" data-health=\"{}\"><td><a href=\"/resource/{}/{}\">{}</a></td><td>{}</td><td>{}{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"detail\">{}</td></tr>",
            esc(id),
            esc(&health),
            esc(kind),
            encode(name),
            esc(name),
            esc(kind),
            badge("sync", sync),
            if missing {
                " <small>(not on the target)</small>"
            } else {
                ""
            },
            badge("health", &health),
            esc(short(r["lastAppliedCommit"].as_str().unwrap_or("—"), 7)),
            esc(r["updatedAt"].as_str().unwrap_or("")),
            esc(&mlctl_spec::suggest::clip(&detail, 300))
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(&html::pager(rows.len(), PER_OVERVIEW, page, &|n| {
        format!("/?page={n}")
    }));
    if !data.plan.orphans.is_empty() {
        let _ = write!(
            body,
            "<p class=\"note\" id=\"orphans\">On the target but no longer in the spec ({}): {}. <code>mlctl plan --prune</code> shows their removal.</p>",
            data.plan.orphans.len(),
            esc(&data
                .plan
                .orphans
                .iter()
                .take(10)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "))
        );
    }
    done(ui, s, "/", "Overview", &body)
}

// ---------------------------------------------------------------------------------------
// Graph

fn graph(ui: &Ui, s: &Session) -> Result<Page> {
    let data = crate::commands::state::status_data(s)?;
    let status: BTreeMap<&str, &serde_json::Value> = data
        .rows
        .iter()
        .map(|r| (row_str(r, "resource"), r))
        .collect();
    let index: BTreeMap<&ResourceId, usize> = s
        .spec
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.id, i))
        .collect();
    let nodes: Vec<charts::Node> = s
        .spec
        .resources
        .iter()
        .map(|r| {
            let id = r.id.to_string();
            let row = status.get(id.as_str());
            let sync = html::sync_word(row.map_or("", |r| row_str(r, "sync")));
            let health = html::health_word(row.map_or("unknown", |r| row_str(r, "health")));
            charts::Node {
                kind: r.id.kind.as_str().to_string(),
                name: r.id.name.clone(),
                href: resource_href(&r.id),
                class: format!(
                    "health-{} sync-{}",
                    health.to_lowercase(),
                    sync.to_lowercase()
                ),
                status: format!("{health} · {sync}"),
                id,
            }
        })
        .collect();
    let mut edges = Vec::new();
    for (to, r) in s.spec.resources.iter().enumerate() {
        for dep in &r.depends_on {
            if let Some(&from) = index.get(dep) {
                edges.push((from, to));
            }
        }
    }
    let body = format!(
        "<p>Each resource after what it needs, coloured by health; click one to open it. {} resources, {} edges.</p><div class=\"scroll\">{}</div>",
        nodes.len(),
        edges.len(),
        charts::dag(&nodes, &edges)
    );
    done(ui, s, "/graph", "Resource graph", &body)
}

// ---------------------------------------------------------------------------------------
// Runs

fn all_runs(s: &Session, job: Option<&str>) -> Result<Vec<RunRecord>> {
    if !s.stack.trainer.capabilities().runs {
        return Err(anyhow!(
            "the trainer of target `{}` ({}) does not track runs; the registry (Models) still has each version's metrics and lineage",
            s.target_name,
            s.stack.provider
        ));
    }
    s.rt.block_on(s.stack.trainer.runs(&s.ctx, job))
        .map_err(|e| anyhow!("{e}"))
}

/// A number from a param or metric value (numbers, and strings that read as one).
fn as_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn sort_runs(runs: &mut [RunRecord], key: &str, asc: bool) {
    use std::cmp::Ordering;
    let num_key = |r: &RunRecord| -> Option<f64> {
        if let Some(m) = key.strip_prefix("metric:") {
            r.metrics.get(m).copied()
        } else if let Some(p) = key.strip_prefix("param:") {
            r.params.get(p).and_then(as_number)
        } else if key == "duration" {
            Some(r.duration_secs)
        } else {
            None
        }
    };
    let text_key = |r: &RunRecord| -> String {
        match key {
            "status" => r.status.clone(),
            "resource" => r.resource.clone(),
            "id" => r.id.clone(),
            k if k.starts_with("param:") => r
                .params
                .get(&k["param:".len()..])
                .map(value)
                .unwrap_or_default(),
            _ => r.started_at.clone(),
        }
    };
    let numeric = key.starts_with("metric:") || key == "duration" || key.starts_with("param:");
    runs.sort_by(|a, b| {
        let o = if numeric {
            match (num_key(a), num_key(b)) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                // Missing values last, whichever the direction.
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => text_key(a).cmp(&text_key(b)),
            }
        } else {
            text_key(a).cmp(&text_key(b))
        };
        if asc { o } else { o.reverse() }
    });
}

fn runs(ui: &Ui, s: &Session, req: &Req) -> Result<Page> {
    let job = req.get("job");
    let mut runs = all_runs(s, job)?;
    let q = req.get("q").map(str::to_lowercase);
    if let Some(q) = &q {
        runs.retain(|r| {
            r.id.to_lowercase().contains(q)
                || r.resource.to_lowercase().contains(q)
                || r.status.to_lowercase().contains(q)
                || r.commit.starts_with(q.as_str())
                || r.params
                    .iter()
                    .any(|(k, v)| format!("{k}={}", value(v)).to_lowercase().contains(q))
        });
    }
    let sort = req.get("sort").unwrap_or("started");
    let asc = req.get("dir") == Some("asc");
    sort_runs(&mut runs, sort, asc);
    let page = page_no(req);
    let shown = &runs[html::window(runs.len(), PER_PAGE, page)];
    let params: Vec<String> = shown
        .iter()
        .flat_map(|r| r.params.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_COLUMNS)
        .collect();
    let metrics: Vec<String> = shown
        .iter()
        .flat_map(|r| r.metrics.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_COLUMNS)
        .collect();
    let link = |sort: &str, dir: &str, page: usize| {
        let mut parts = vec![format!("sort={}", encode(sort)), format!("dir={dir}")];
        if let Some(j) = job {
            parts.push(format!("job={}", encode(j)));
        }
        if let Some(q) = req.get("q") {
            parts.push(format!("q={}", encode(q)));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        format!("/runs?{}", parts.join("&"))
    };
    let th = |key: &str, label: &str| {
        let (dir, mark) = if key == sort {
            if asc {
                ("desc", " ▲")
            } else {
                ("asc", " ▼")
            }
        } else {
            ("desc", "")
        };
        format!(
            "<th data-sort=\"{}\"><a href=\"{}\">{}{mark}</a></th>",
            esc(key),
            esc(&link(key, dir, 1)),
            esc(label)
        )
    };
    let jobs: Vec<&str> = s
        .spec
        .resources
        .iter()
        .filter(|r| r.id.kind == Kind::TrainingJob)
        .map(|r| r.id.name.as_str())
        .collect();
    let mut body = String::new();
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/runs\" class=\"filter\"><label>Filter <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"id, job, status, commit, param=value\"></label> \
<label>Job <select name=\"job\"><option value=\"\">all</option>{}</select></label> <button type=\"submit\">Show</button></form>",
        esc(req.get("q").unwrap_or("")),
        jobs.iter()
            .map(|j| format!(
                "<option{}>{}</option>",
                if Some(*j) == job { " selected" } else { "" },
                esc(j)
            ))
            .collect::<String>()
    );
    body.push_str("<form method=\"get\" action=\"/runs/compare\" id=\"compare-form\"><p><button type=\"submit\" id=\"compare\">Compare selected</button> <small>pick two or more</small></p>");
    body.push_str("<table class=\"list\" id=\"runs\"><thead><tr><th></th>");
    body.push_str(&th("id", "Run"));
    body.push_str(&th("resource", "Job"));
    body.push_str(&th("status", "Status"));
    body.push_str("<th>Commit</th>");
    body.push_str(&th("started", "Started"));
    body.push_str(&th("duration", "Seconds"));
    for p in &params {
        body.push_str(&th(&format!("param:{p}"), p));
    }
    for m in &metrics {
        body.push_str(&th(&format!("metric:{m}"), m));
    }
    body.push_str("</tr></thead><tbody>");
    for r in shown {
        let _ = write!(
            body,
            "<tr data-run=\"{}\"><td><input type=\"checkbox\" name=\"id\" value=\"{}\" aria-label=\"select run {}\"></td><td><a href=\"/runs/{}\"><code>{}</code></a>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td>",
            esc(&r.id),
            esc(&r.id),
            esc(short(&r.id, 12)),
            encode(&r.id),
            esc(short(&r.id, 12)),
            if r.parent.is_some() {
                " <small>trial</small>"
            } else {
                ""
            },
            esc(&r.resource),
            badge("status", &r.status),
            esc(short(&r.commit, 7)),
            esc(&r.started_at),
            num((r.duration_secs * 100.0).round() / 100.0)
        );
        for p in &params {
            let _ = write!(
                body,
                "<td class=\"num\">{}</td>",
                esc(&r.params.get(p).map(value).unwrap_or_default())
            );
        }
        for m in &metrics {
            let _ = write!(
                body,
                "<td class=\"num\" data-metric=\"{}\">{}</td>",
                esc(m),
                r.metrics.get(m).map(|v| num(*v)).unwrap_or_default()
            );
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table></form>");
    body.push_str(&html::pager(runs.len(), PER_PAGE, page, &|n| {
        link(sort, if asc { "asc" } else { "desc" }, n)
    }));
    done(ui, s, "/runs", "Runs", &body)
}

fn find_run<'a>(runs: &'a [RunRecord], id: &str) -> Result<&'a RunRecord> {
    if let Some(r) = runs.iter().find(|r| r.id == id) {
        return Ok(r);
    }
    let matching: Vec<&RunRecord> = runs.iter().filter(|r| r.id.starts_with(id)).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(not_found(format!(
            "no run `{}` on this target ({} runs)",
            mlctl_spec::suggest::clip(id, 60),
            runs.len()
        ))),
        many => Err(not_found(format!(
            "`{}` starts {} run ids; give more of it",
            mlctl_spec::suggest::clip(id, 60),
            many.len()
        ))),
    }
}

/// The metric a TrainingJob's tuning optimises.
fn objective_of(s: &Session, job: &str) -> Option<(String, bool)> {
    s.spec.resources.iter().find_map(|r| match &r.spec {
        ResourceSpec::TrainingJob(t) if r.id.name == job => t.tuning.as_ref().map(|tu| {
            (
                tu.objective.metric.clone(),
                format!("{:?}", tu.objective.goal)
                    .to_lowercase()
                    .contains("min"),
            )
        }),
        _ => None,
    })
}

fn kv_table(id: &str, rows: &[(String, String)]) -> String {
    let mut out = format!("<table class=\"kv\" id=\"{}\"><tbody>", esc(id));
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</tbody></table>");
    out
}

fn run_page(ui: &Ui, s: &Session, id: &str) -> Result<Page> {
    let runs = all_runs(s, None)?;
    let r = find_run(&runs, id)?;
    let mut body = String::new();
    let mut facts = vec![
        ("Run".to_string(), r.id.clone()),
        (
            "Job".to_string(),
            format!("{} ({})", r.resource, r.job_name),
        ),
        ("Status".to_string(), r.status.clone()),
        ("Commit".to_string(), r.commit.clone()),
        ("Started".to_string(), r.started_at.clone()),
        ("Seconds".to_string(), num(r.duration_secs)),
        ("Data digest".to_string(), r.data_digest.clone()),
    ];
    if let Some(c) = &r.code_digest {
        facts.push(("Code digest".into(), c.clone()));
    }
    for a in &r.artifacts {
        facts.push(("Artifact".into(), a.clone()));
    }
    body.push_str(&kv_table("run-facts", &facts));
    if let Some(p) = &r.parent {
        let _ = write!(
            body,
            "<p>A trial of <a href=\"/runs/{}\"><code>{}</code></a>.</p>",
            encode(p),
            esc(short(p, 12))
        );
    }
    body.push_str("<div class=\"two\"><section><h2>Params</h2>");
    body.push_str(&kv_table(
        "run-params",
        &r.params
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect::<Vec<_>>(),
    ));
    body.push_str("</section><section><h2>Metrics</h2>");
    body.push_str(&kv_table(
        "run-metrics",
        &r.metrics
            .iter()
            .map(|(k, v)| (k.clone(), num(*v)))
            .collect::<Vec<_>>(),
    ));
    body.push_str("</section></div>");
    if let Some(e) = &r.evaluation {
        body.push_str(&training_section(e));
    }
    let trials: Vec<&RunRecord> = runs
        .iter()
        .filter(|t| t.parent.as_deref() == Some(r.id.as_str()))
        .collect();
    if !trials.is_empty() {
        let (objective, minimize) = objective_of(s, &r.resource).unwrap_or_else(|| {
            (
                trials
                    .iter()
                    .find_map(|t| t.metrics.keys().next().cloned())
                    .unwrap_or_default(),
                false,
            )
        });
        body.push_str(&trials_section(&trials, &objective, minimize));
    }
    done(ui, s, "/runs", &format!("Run {}", short(&r.id, 12)), &body)
}

/// What training reported beyond metrics: early stopping's rounds, and feature importance as
/// a table with a bar per column.
fn training_section(e: &mlctl_core::components::Evaluation) -> String {
    let mut out = String::new();
    if e.early_stopping.is_none() && e.importance.is_empty() {
        return out;
    }
    out.push_str("<section id=\"training\"><h2>Training</h2>");
    if let Some(es) = &e.early_stopping {
        out.push_str(&kv_table(
            "run-early-stopping",
            &[
                ("Rounds kept".to_string(), es.best_round.to_string()),
                ("Rounds trained".to_string(), es.rounds_trained.to_string()),
                ("Patience".to_string(), es.patience.to_string()),
                ("Validation loss".to_string(), num(es.best_loss)),
            ],
        ));
    }
    if !e.importance.is_empty() {
        let top = |f: fn(&mlctl_ml::importance::Importance) -> Option<f64>| {
            e.importance
                .iter()
                .filter_map(f)
                .fold(0.0f64, |a, v| a.max(v))
        };
        let (gmax, pmax) = (top(|i| i.gain), top(|i| i.permutation));
        let bar = |v: Option<f64>, max: f64| match v {
            Some(v) => format!(
                "<td class=\"num\">{}<span class=\"bar\" style=\"display:inline-block;height:0.7em;margin-left:0.4em;background:#4a7bd0;width:{:.0}px\"></span></td>",
                num(v),
                if max > 0.0 {
                    (v.max(0.0) / max * 120.0).round()
                } else {
                    0.0
                }
            ),
            None => "<td class=\"num\">-</td>".to_string(),
        };
        let _ = write!(
            out,
            "<h3>Feature importance</h3><p>Gain: the column's share of the split gain. Permutation: how much the score falls when the column is shuffled in the {} rows (mean of {} shuffles).</p><table class=\"list\" id=\"run-importance\"><thead><tr><th>Feature</th><th>Gain</th><th>Permutation</th></tr></thead><tbody>",
            esc(&e.scored_on),
            mlctl_ml::importance::REPEATS
        );
        for i in &e.importance {
            let _ = write!(
                out,
                "<tr><td>{}</td>{}{}</tr>",
                esc(&i.feature),
                bar(i.gain, gmax),
                bar(i.permutation, pmax)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
    out
}

/// Tuning trials: the objective by trial (the best flagged), and a parallel-coordinates
/// chart of their hyperparameters against it.
fn trials_section(trials: &[&RunRecord], objective: &str, minimize: bool) -> String {
    let values: Vec<Option<f64>> = trials
        .iter()
        .map(|t| t.metrics.get(objective).copied())
        .collect();
    let best = values
        .iter()
        .copied()
        .flatten()
        .fold(None::<f64>, |acc, v| {
            Some(match acc {
                None => v,
                Some(a) if minimize => a.min(v),
                Some(a) => a.max(v),
            })
        });
    let labels: Vec<String> = (1..=trials.len()).map(|i| format!("#{i}")).collect();
    let points: Vec<Point> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            v.map(|y| Point {
                x: i,
                y,
                flagged: Some(y) == best,
                title: format!("trial {}: {objective} {}", i + 1, num(y)),
            })
        })
        .collect();
    let mut out = format!(
        "<section id=\"trials\"><h2>Tuning trials ({})</h2><p>Objective <code>{}</code> ({}); the best trial is marked.</p>",
        trials.len(),
        esc(objective),
        if minimize { "minimised" } else { "maximised" }
    );
    out.push_str(&charts::line_chart(
        "id=\"trials-chart\"",
        &labels,
        &[(objective.to_string(), points)],
        None,
        objective,
    ));
    out.push_str(&parallel_of(
        "id=\"trials-parallel\"",
        trials,
        objective,
        &|i| format!("trial {}", i + 1),
    ));
    out.push_str("</section>");
    out
}

/// Parallel coordinates of `runs`: an axis per numeric hyperparameter, then the objective.
fn parallel_of(
    attrs: &str,
    runs: &[&RunRecord],
    objective: &str,
    label: &dyn Fn(usize) -> String,
) -> String {
    let axes: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.params
                .iter()
                .filter(|(_, v)| as_number(v).is_some())
                .map(|(k, _)| k.clone())
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(12)
        .collect();
    let mut all = axes.clone();
    all.push(objective.to_string());
    let lines: Vec<(String, Vec<Option<f64>>)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut vs: Vec<Option<f64>> = axes
                .iter()
                .map(|a| r.params.get(a).and_then(as_number))
                .collect();
            vs.push(r.metrics.get(objective).copied());
            (label(i), vs)
        })
        .collect();
    charts::parallel(attrs, &all, &lines)
}

fn compare(ui: &Ui, s: &Session, req: &Req) -> Result<Page> {
    let runs = all_runs(s, None)?;
    let mut chosen = Vec::new();
    for id in req.all("id") {
        let r = find_run(&runs, id)?;
        if !chosen.iter().any(|c: &&RunRecord| c.id == r.id) {
            chosen.push(r);
        }
    }
    let mut body = String::new();
    if chosen.len() < 2 {
        body.push_str("<p class=\"note\">Pick two or more runs on the <a href=\"/runs\">Runs</a> page to compare them.</p>");
        if chosen.is_empty() {
            return done(ui, s, "/runs", "Compare runs", &body);
        }
    }
    let names: Vec<String> = chosen
        .iter()
        .map(|r| short(&r.id, 12).to_string())
        .collect();
    let params: BTreeSet<&String> = chosen.iter().flat_map(|r| r.params.keys()).collect();
    let metrics: BTreeSet<&String> = chosen.iter().flat_map(|r| r.metrics.keys()).collect();
    body.push_str("<table class=\"list compare\" id=\"compare-table\"><thead><tr><th></th>");
    for (r, n) in chosen.iter().zip(&names) {
        let _ = write!(
            body,
            "<th><a href=\"/runs/{}\"><code>{}</code></a></th>",
            encode(&r.id),
            esc(n)
        );
    }
    body.push_str("</tr></thead><tbody>");
    let row = |body: &mut String, label: &str, cells: Vec<String>| {
        let differs = cells.windows(2).any(|w| w[0] != w[1]);
        let _ = write!(
            body,
            "<tr{}><th>{}</th>{}</tr>",
            if differs { " class=\"differs\"" } else { "" },
            esc(label),
            cells
                .iter()
                .map(|c| format!("<td>{}</td>", esc(c)))
                .collect::<String>()
        );
    };
    row(
        &mut body,
        "job",
        chosen.iter().map(|r| r.resource.clone()).collect(),
    );
    row(
        &mut body,
        "status",
        chosen.iter().map(|r| r.status.clone()).collect(),
    );
    row(
        &mut body,
        "commit",
        chosen
            .iter()
            .map(|r| short(&r.commit, 7).to_string())
            .collect(),
    );
    for p in &params {
        row(
            &mut body,
            p,
            chosen
                .iter()
                .map(|r| r.params.get(*p).map(value).unwrap_or_default())
                .collect(),
        );
    }
    for m in &metrics {
        row(
            &mut body,
            m,
            chosen
                .iter()
                .map(|r| r.metrics.get(*m).map(|v| num(*v)).unwrap_or_default())
                .collect(),
        );
    }
    body.push_str("</tbody></table><h2>Metrics</h2><div class=\"charts\">");
    for m in metrics.iter().take(MAX_COLUMNS) {
        let data: Vec<(String, f64)> = chosen
            .iter()
            .zip(&names)
            .filter_map(|(r, n)| r.metrics.get(*m).map(|v| (n.clone(), *v)))
            .collect();
        body.push_str(&charts::bars(
            &format!("data-metric=\"{}\"", esc(m)),
            m,
            &data,
        ));
    }
    body.push_str("</div>");
    let objective = req
        .get("objective")
        .map(str::to_string)
        .or_else(|| {
            chosen
                .first()
                .and_then(|r| objective_of(s, &r.resource).map(|(m, _)| m))
        })
        .or_else(|| metrics.iter().next().map(|m| (*m).clone()));
    if let Some(objective) = objective {
        let _ = write!(
            body,
            "<h2>Hyperparameters against <code>{}</code></h2>",
            esc(&objective)
        );
        body.push_str(&parallel_of(
            "id=\"compare-parallel\"",
            &chosen,
            &objective,
            &|i| names[i].clone(),
        ));
    }
    done(ui, s, "/runs", "Compare runs", &body)
}

// ---------------------------------------------------------------------------------------
// Models

fn versions(s: &Session, model: &str) -> Result<Vec<ModelVersion>> {
    s.rt.block_on(s.stack.registry.versions(&s.ctx, model))
        .map_err(|e| anyhow!("{e}"))
}

fn models(ui: &Ui, s: &Session) -> Result<Page> {
    let names = crate::commands::registry::model_names(s);
    let mut body = String::from(
        "<table class=\"list\" id=\"models\"><thead><tr><th>Model</th><th>Versions</th><th>Latest</th><th>Production</th><th>Waiting for approval</th></tr></thead><tbody>",
    );
    for n in &names {
        let vs = versions(s, n)?;
        let latest = vs.iter().max_by_key(|v| v.version);
        let prod: Vec<String> = vs
            .iter()
            .filter(|v| v.stage == Stage::Production)
            .map(|v| format!("v{}", v.version))
            .collect();
        let pending = vs
            .iter()
            .filter(|v| v.approval == ApprovalStatus::PendingManualApproval)
            .count();
        let _ = write!(
            body,
            "<tr data-model=\"{}\"><td><a href=\"/models/{}\">{}</a></td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(n),
            encode(n),
            esc(n),
            vs.len(),
            latest
                .map(|v| format!("v{} ({})", v.version, v.stage.as_str()))
                .unwrap_or_default(),
            esc(&prod.join(", ")),
            pending
        );
    }
    body.push_str("</tbody></table>");
    if names.is_empty() {
        body.push_str("<p class=\"note\">No registered models on this target yet.</p>");
    }
    done(ui, s, "/models", "Model registry", &body)
}

fn epoch(at: &str) -> Option<f64> {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
}

fn model(ui: &Ui, s: &Session, name: &str, req: &Req) -> Result<Page> {
    let mut vs = versions(s, name)?;
    if vs.is_empty() {
        return Err(not_found(format!(
            "model `{}` has no versions on target `{}`",
            mlctl_spec::suggest::clip(name, 60),
            s.target_name
        )));
    }
    vs.sort_by_key(|v| std::cmp::Reverse(v.version));
    let mut body = String::new();
    let latest = &vs[0];
    if let Some(m) = crate::commands::registry::signature_of(&latest.artifact_uri) {
        let sig = crate::commands::registry::signature_json(&m);
        body.push_str("<section id=\"signature\"><h2>Input signature (latest version)</h2><table class=\"list\"><thead><tr><th>Input</th><th>Type</th><th>Detail</th></tr></thead><tbody>");
        for f in sig["inputs"].as_array().into_iter().flatten() {
            let mut rest = f.clone();
            let name = rest
                .as_object_mut()
                .and_then(|o| o.remove("name"))
                .map(|v| value(&v))
                .unwrap_or_default();
            let ty = rest
                .as_object_mut()
                .and_then(|o| o.remove("type"))
                .map(|v| value(&v))
                .unwrap_or_default();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td><small>{}</small></td></tr>",
                esc(&name),
                esc(&ty),
                esc(&mlctl_spec::suggest::clip(&rest.to_string(), 200))
            );
        }
        let _ = write!(
            body,
            "</tbody></table><p>Output: <code>{}</code></p></section>",
            esc(&mlctl_spec::suggest::clip(&sig["output"].to_string(), 300))
        );
    }
    let page = page_no(req);
    body.push_str("<section><h2>Versions</h2><table class=\"list\" id=\"versions\"><thead><tr><th>Version</th><th>Stage</th><th>Approval</th><th>Created</th><th>Metrics</th><th>Commit</th><th>Run</th><th>Gates</th><th></th></tr></thead><tbody>");
    for v in &vs[html::window(vs.len(), PER_PAGE, page)] {
        let metrics: Vec<String> = v
            .metrics
            .iter()
            .map(|(k, m)| format!("{k} {}", num(*m)))
            .collect();
        let not_measured = v.lineage.get(mlctl_core::METRICS_ORIGIN);
        let commit = v.lineage.get("commit").map(String::as_str).unwrap_or("");
        let run = v.lineage.get("run");
        let gates = v.lineage.get("gates").map(String::as_str).unwrap_or("");
        let version = v.version.to_string();
        let actions = if v.approval == ApprovalStatus::PendingManualApproval {
            let cli_a = format!("mlctl models approve {name} {version}");
            let cli_r = format!("mlctl models reject {name} {version}");
            html::action(
                ui.allow_actions,
                &ui.csrf,
                "/actions/approve",
                &[("model", name), ("version", &version)],
                "Approve",
                &cli_a,
            ) + &html::action(
                ui.allow_actions,
                &ui.csrf,
                "/actions/reject",
                &[("model", name), ("version", &version)],
                "Reject",
                &cli_r,
            )
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr data-version=\"{}\" data-stage=\"{}\" data-approval=\"{}\"><td>v{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td><code>{}</code></td><td>{}</td><td class=\"detail\">{}</td><td class=\"actions\">{}</td></tr>",
            v.version,
            v.stage.as_str(),
            v.approval.as_str(),
            v.version,
            badge("stage", v.stage.as_str()),
            badge("approval", v.approval.as_str()),
            esc(&v.created_at),
            esc(&metrics.join(", ")),
            not_measured
                .map(|o| format!(" <small class=\"warn\">NOT MEASURED: {}</small>", esc(o)))
                .unwrap_or_default(),
            esc(short(commit, 7)),
            run.map(|r| format!(
                "<a href=\"/runs/{}\"><code>{}</code></a>",
                encode(r),
                esc(short(r, 12))
            ))
            .unwrap_or_default(),
            esc(&mlctl_spec::suggest::clip(gates, 400)),
            actions
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(&html::pager(vs.len(), PER_PAGE, page, &|n| {
        format!("/models/{}?page={n}", encode(name))
    }));
    body.push_str("</section>");
    if s.stack.registry.capabilities().stage_history {
        let history =
            s.rt.block_on(s.stack.registry.stage_history(&s.ctx, name))
                .map_err(|e| anyhow!("{e}"))?;
        body.push_str(&production_timeline(&vs, &history));
        body.push_str("<table class=\"list\" id=\"stage-history\"><thead><tr><th>At</th><th>Version</th><th>From</th><th>To</th></tr></thead><tbody>");
        for h in history.iter().rev().take(20) {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>v{}</td><td>{}</td><td>{}</td></tr>",
                esc(&h.at),
                h.version,
                h.from.map_or("(new)", |f| f.as_str()),
                h.to.as_str()
            );
        }
        body.push_str("</tbody></table>");
    } else {
        let _ = write!(
            body,
            "<p class=\"note\">Target `{}` keeps no stage history, so who was in production when is not known.</p>",
            esc(&s.target_name)
        );
    }
    done(ui, s, "/models", &format!("Model {name}"), &body)
}

/// Who was in production when, from the stage transitions.
fn production_timeline(vs: &[ModelVersion], history: &[mlctl_core::StageTransition]) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let mut sorted: Vec<&mlctl_core::StageTransition> = history.iter().collect();
    sorted.sort_by(|a, b| {
        epoch(&a.at)
            .partial_cmp(&epoch(&b.at))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut open: BTreeMap<u32, f64> = BTreeMap::new();
    let mut spans: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    for h in &sorted {
        let Some(t) = epoch(&h.at) else { continue };
        if h.to == Stage::Production {
            open.entry(h.version).or_insert(t);
        } else if let Some(start) = open.remove(&h.version) {
            spans.entry(h.version).or_default().push((start, t));
        }
    }
    for v in vs.iter().filter(|v| v.stage == Stage::Production) {
        if !open.contains_key(&v.version) && !spans.contains_key(&v.version) {
            open.insert(v.version, epoch(&v.created_at).unwrap_or(now));
        }
    }
    for (v, start) in open {
        spans.entry(v).or_default().push((start, now));
    }
    if spans.is_empty() {
        return "<section id=\"timeline\"><h2>Production timeline</h2><p class=\"note\">No version has been in production yet.</p></section>".into();
    }
    let t0 = spans
        .values()
        .flatten()
        .map(|s| s.0)
        .fold(f64::INFINITY, f64::min);
    let rows: Vec<(String, Vec<(f64, f64)>)> = spans
        .into_iter()
        .rev()
        .map(|(v, s)| (format!("v{v}"), s))
        .collect();
    let label = |t: f64| {
        time::OffsetDateTime::from_unix_timestamp(t as i64)
            .ok()
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    format!(
        "<section id=\"timeline\"><h2>Production timeline</h2>{}</section>",
        charts::timeline(&rows, t0, now, (&label(t0), "now"))
    )
}

// ---------------------------------------------------------------------------------------
// Endpoints

fn observed_of<'a>(
    observed: &'a [ObservedResource],
    id: &ResourceId,
) -> Option<&'a ObservedResource> {
    observed.iter().find(|o| &o.id == id)
}

fn endpoints(ui: &Ui, s: &Session) -> Result<Page> {
    let data = crate::commands::state::status_data(s)?;
    let mut body = String::from(
        "<table class=\"list\" id=\"endpoints\"><thead><tr><th>Endpoint</th><th>Health</th><th>Traffic</th><th>URL</th></tr></thead><tbody>",
    );
    let mut any = false;
    for r in data
        .rows
        .iter()
        .filter(|r| row_str(r, "resource").starts_with("Endpoint/"))
    {
        any = true;
        let name = &row_str(r, "resource")["Endpoint/".len()..];
        let st = observed_of(
            &data.observed,
            &ResourceId::new(Kind::Endpoint, name.to_string()),
        )
        .and_then(outputs::<EndpointStatus>);
        let traffic = st
            .as_ref()
            .map(|e| {
                e.variants
                    .iter()
                    .map(|v| format!("v{} {}%", v.version, v.weight))
                    .collect::<Vec<_>>()
                    .join(" · ")
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr data-endpoint=\"{}\"><td><a href=\"/endpoints/{}\">{}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(name),
            encode(name),
            esc(name),
            badge("health", &html::health_word(row_str(r, "health"))),
            esc(&traffic),
            esc(r["url"].as_str().unwrap_or(""))
        );
    }
    body.push_str("</tbody></table>");
    if !any {
        body.push_str("<p class=\"note\">The spec has no Endpoints.</p>");
    }
    done(ui, s, "/endpoints", "Endpoints", &body)
}

fn endpoint(ui: &Ui, s: &Session, name: &str) -> Result<Page> {
    let id = ResourceId::new(Kind::Endpoint, name.to_string());
    let data = crate::commands::state::status_data(s)?;
    let row = data
        .rows
        .iter()
        .find(|r| row_str(r, "resource") == id.to_string())
        .ok_or_else(|| {
            not_found(format!(
                "no Endpoint `{}` in the spec or on the target",
                mlctl_spec::suggest::clip(name, 60)
            ))
        })?;
    let st = observed_of(&data.observed, &id).and_then(outputs::<EndpointStatus>);
    let mut body = String::new();
    let health = html::health_word(row_str(row, "health"));
    let _ = write!(
        body,
        "<p>{} {} · URL <code id=\"endpoint-url\">{}</code></p>",
        badge("health", &health),
        badge("sync", html::sync_word(row_str(row, "sync"))),
        esc(row["url"].as_str().unwrap_or("—"))
    );
    let strategy = s.spec.resources.iter().find_map(|r| match &r.spec {
        ResourceSpec::Endpoint(e) if r.id == id => e
            .strategy
            .as_ref()
            .map(|st| serde_json::to_value(st).unwrap_or_default()),
        _ => None,
    });
    if let Some(st) = &st {
        let _ = write!(
            body,
            "<section id=\"traffic\"><h2>Traffic split</h2>{}<p>{} instance{}</p>",
            charts::split(
                &st.variants
                    .iter()
                    .map(|v| (format!("v{}", v.version), v.weight))
                    .collect::<Vec<_>>()
            ),
            st.instances,
            if st.instances == 1 { "" } else { "s" }
        );
        if st.variants.len() > 1 {
            let newest = st.variants.iter().max_by_key(|v| v.version);
            if let Some(n) = newest {
                let total: u32 = st.variants.iter().map(|v| v.weight).sum();
                let _ = write!(
                    body,
                    "<p id=\"rollout\" class=\"note\">Rollout in progress: v{} takes {}% of the traffic{}.</p>",
                    n.version,
                    (n.weight * 100).checked_div(total).unwrap_or(0),
                    strategy
                        .as_ref()
                        .map(|s| format!(" (strategy {})", esc(&s.to_string())))
                        .unwrap_or_default()
                );
            }
        }
        if let Some(m) = &st.message {
            let _ = write!(
                body,
                "<p class=\"detail\" id=\"endpoint-message\">{}</p>",
                esc(m)
            );
        }
        body.push_str("</section>");
    } else {
        body.push_str("<p class=\"note\">Not on the target yet: apply creates it.</p>");
    }
    if let Some(st) = &strategy {
        let _ = write!(
            body,
            "<p>Rollout strategy in the spec: <code>{}</code></p>",
            esc(&st.to_string())
        );
    }
    body.push_str(&live_metrics(ui, s, name, st.as_ref()));
    let rollback = html::action(
        ui.allow_actions,
        &ui.csrf,
        "/actions/rollback",
        &[("endpoint", name)],
        "Roll back to the previous version",
        &format!("mlctl rollback {name}"),
    );
    let _ = write!(
        body,
        "<section id=\"endpoint-actions\"><h2>Actions</h2>{rollback}</section>"
    );
    body.push_str(&history_section(s, &id, None)?);
    done(ui, s, "/endpoints", &format!("Endpoint {name}"), &body)
}

/// The endpoint's live figures: its own `/metrics` (an mlctl server: local), else what the
/// target's monitoring sink reads from the cloud's metrics over the last hour.
fn live_metrics(ui: &Ui, s: &Session, name: &str, st: Option<&EndpointStatus>) -> String {
    let mut out = String::from("<section id=\"live\"><h2>Live metrics</h2>");
    let scraped = st.and_then(|e| e.url.clone()).and_then(|url| {
        let url = format!("{}/metrics", url.trim_end_matches('/'));
        s.rt.block_on(async {
            mlctl_serve::client::Client::new()
                .get(&url, &[], std::time::Duration::from_secs(3))
                .await
        })
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| mlctl_serve::metrics::Scrape::parse(&r.text()))
        .filter(|sc| !sc.variants.is_empty())
    });
    if let Some(scrape) = scraped {
        let now = std::time::Instant::now();
        let previous = ui
            .scrapes
            .lock()
            .ok()
            .and_then(|mut m| m.insert(name.to_string(), (now, scrape.clone())));
        out.push_str("<table class=\"list\" id=\"live-metrics\"><thead><tr><th>Variant</th><th>Requests</th><th>Requests/s</th><th>Error rate (5xx)</th><th>4xx</th><th>p50 ms</th><th>p99 ms</th></tr></thead><tbody>");
        for (variant, v) in &scrape.variants {
            let rate = previous.as_ref().and_then(|(at, old)| {
                let dt = now.duration_since(*at).as_secs_f64();
                let before = old.variants.get(variant).map_or(0, |o| o.requests());
                (dt > 0.0).then(|| v.requests().saturating_sub(before) as f64 / dt)
            });
            let _ = write!(
                out,
                "<tr data-variant=\"{}\" data-requests=\"{}\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(variant),
                v.requests(),
                esc(variant),
                v.requests(),
                rate.map_or("— (reload to measure)".into(), |r| num((r * 100.0)
                    .round()
                    / 100.0)),
                if v.requests() == 0 {
                    "—".into()
                } else {
                    format!("{:.2}%", v.error_rate() * 100.0)
                },
                v.client_errors,
                v.quantile_ms(0.5).map_or("—".into(), num),
                v.quantile_ms(0.99).map_or("—".into(), num)
            );
        }
        out.push_str("</tbody></table><p><small>From the endpoint's own <code>/metrics</code>, counted since its server started; the rate is since the last view of this page.</small></p></section>");
        return out;
    }
    let all = mlctl_spec::Slo {
        p50_latency_ms: Some(f64::MAX),
        p99_latency_ms: Some(f64::MAX),
        max_error_rate: Some(1.0),
        min_throughput: Some(0.0),
    };
    let to = time::OffsetDateTime::now_utc();
    let from = to - time::Duration::hours(1);
    match s.rt.block_on(
        s.stack
            .monitor
            .endpoint_metrics(&s.ctx, name, &all, from, to),
    ) {
        Ok(Some(m)) => {
            let _ = write!(
                out,
                "<table class=\"kv\" id=\"live-metrics\"><tbody><tr><th>Requests (last hour)</th><td>{}</td></tr><tr><th>Requests/s</th><td>{}</td></tr><tr><th>Error rate (5xx)</th><td>{}</td></tr><tr><th>p50 ms</th><td>{}</td></tr><tr><th>p99 ms</th><td>{}</td></tr></tbody></table><p><small>{}</small></p>",
                m.requests,
                num(if m.seconds > 0.0 {
                    m.requests as f64 / m.seconds
                } else {
                    0.0
                }),
                if m.requests == 0 {
                    "—".into()
                } else {
                    format!("{:.2}%", m.server_errors as f64 * 100.0 / m.requests as f64)
                },
                m.p50_ms.map_or("—".into(), num),
                m.p99_ms.map_or("—".into(), num),
                esc(&m.source)
            );
        }
        Ok(None) => {
            let _ = write!(
                out,
                "<p class=\"note\">Target `{}` ({}) gives no live figures for this endpoint: it is not serving, or its provider keeps none outside the captured traffic (see Monitors).</p>",
                esc(&s.target_name),
                esc(&s.stack.provider)
            );
        }
        Err(e) => {
            let _ = write!(
                out,
                "<p class=\"error\">cannot read the endpoint's metrics: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    out.push_str("</section>");
    out
}

/// The last entries of a resource's history (only `action` ones when given), newest first.
fn history_section(s: &Session, id: &ResourceId, action: Option<&str>) -> Result<String> {
    let entries =
        s.rt.block_on(s.stack.state.history(&s.ctx.project, id))
            .map_err(|e| anyhow!("{e}"))?;
    let entries: Vec<_> = entries
        .iter()
        .filter(|e| action.is_none_or(|a| e.action == a))
        .collect();
    let title = if action == Some("on-breach") {
        "Breach actions"
    } else {
        "History"
    };
    let mut out = format!(
        "<section id=\"{}\"><h2>{title}</h2>",
        if action.is_some() {
            "breach-actions"
        } else {
            "history"
        }
    );
    if entries.is_empty() {
        out.push_str("<p class=\"note\">None yet.</p></section>");
        return Ok(out);
    }
    out.push_str("<table class=\"list\"><thead><tr><th>At</th><th>Action</th><th>Commit</th><th>Detail</th></tr></thead><tbody>");
    for e in entries.iter().rev().take(10) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"detail\">{}</td></tr>",
            esc(&e.at),
            esc(&e.action),
            esc(short(&e.commit, 7)),
            esc(&mlctl_spec::suggest::clip(&e.detail, 500))
        );
    }
    let _ = write!(
        out,
        "</tbody></table><p><small>The newest {} of {}.</small></p></section>",
        entries.len().min(10),
        entries.len()
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Monitors

fn monitor_names(s: &Session) -> Vec<(String, String)> {
    s.spec
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            ResourceSpec::Monitor(m) => Some((r.id.name.clone(), m.endpoint.clone())),
            _ => None,
        })
        .collect()
}

fn results(s: &Session, name: &str) -> Result<Vec<mlctl_core::monitoring::MonitorResult>> {
    s.rt.block_on(s.stack.state.monitor_results(&s.ctx.project, name))
        .map_err(|e| anyhow!("cannot read the results of monitor `{name}`: {e}"))
}

fn monitors(ui: &Ui, s: &Session) -> Result<Page> {
    let mut body = String::from(
        "<table class=\"list\" id=\"monitors\"><thead><tr><th>Monitor</th><th>Endpoint</th><th>Last verdict</th><th>At</th><th>Rows</th><th>Summary</th></tr></thead><tbody>",
    );
    let names = monitor_names(s);
    for (name, endpoint) in &names {
        let last = results(s, name)?.pop();
        let _ = write!(
            body,
            "<tr data-monitor=\"{}\"><td><a href=\"/monitors/{}\">{}</a></td><td><a href=\"/endpoints/{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"detail\">{}</td></tr>",
            esc(name),
            encode(name),
            esc(name),
            encode(endpoint),
            esc(endpoint),
            last.as_ref().map_or_else(
                || badge("verdict", "never evaluated"),
                |r| badge("verdict", &r.verdict.to_string())
            ),
            esc(last.as_ref().map_or("", |r| r.at.as_str())),
            last.as_ref().map_or(String::new(), |r| r.rows.to_string()),
            esc(last.as_ref().map_or("", |r| r.summary.as_str()))
        );
    }
    body.push_str("</tbody></table>");
    if names.is_empty() {
        body.push_str("<p class=\"note\">The spec has no Monitors.</p>");
    }
    done(ui, s, "/monitors", "Monitors", &body)
}

fn monitor(ui: &Ui, s: &Session, name: &str, req: &Req) -> Result<Page> {
    let Some((_, endpoint)) = monitor_names(s).into_iter().find(|(n, _)| n == name) else {
        return Err(not_found(format!(
            "the spec at {} has no Monitor `{}`",
            s.commit.short_sha,
            mlctl_spec::suggest::clip(name, 60)
        )));
    };
    let results = results(s, name)?;
    let mut body = String::new();
    let run_now = html::action(
        ui.allow_actions,
        &ui.csrf,
        "/actions/monitor-run",
        &[("monitor", name)],
        "Run now",
        &format!("mlctl monitor run {name}"),
    );
    let _ = write!(
        body,
        "<p>Watches endpoint <a href=\"/endpoints/{}\">{}</a>. {run_now}</p>",
        encode(&endpoint),
        esc(&endpoint)
    );
    let Some(last) = results.last() else {
        body.push_str("<p class=\"note\" id=\"never\">Never evaluated on this target: <code>mlctl monitor run</code> evaluates it.</p>");
        body.push_str(&history_section(
            s,
            &ResourceId::new(Kind::Monitor, name.to_string()),
            Some("on-breach"),
        )?);
        return done(ui, s, "/monitors", &format!("Monitor {name}"), &body);
    };
    let _ = write!(
        body,
        "<section id=\"latest\"><h2>Latest verdict</h2><p>{} at {} on {} rows ({}): {}</p></section>",
        badge("verdict", &last.verdict.to_string()),
        esc(&last.at),
        last.rows,
        esc(&last.window),
        esc(&last.summary)
    );
    // Drift per feature over time: the statistic each evaluation compared with its threshold.
    let labels: Vec<String> = results
        .iter()
        .map(|r| r.at.get(5..16).unwrap_or(&r.at).replace('T', " "))
        .collect();
    let mut features: Vec<String> = Vec::new();
    for r in &results {
        for f in &r.features {
            if !features.contains(&f.feature) {
                features.push(f.feature.clone());
            }
        }
    }
    // Drifted ones first (in the latest result), as the report orders them.
    features.sort_by_key(|f| !last.features.iter().any(|x| &x.feature == f && x.drifted));
    body.push_str(
        "<section id=\"drift\"><h2>Drift per feature over time</h2><div class=\"charts\">",
    );
    for f in features.iter().take(MAX_FEATURE_CHARTS) {
        let mut threshold = None;
        let mut method = String::new();
        let mut test = false;
        let points: Vec<Point> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let x = r.features.iter().find(|x| &x.feature == f)?;
                threshold = Some(x.threshold);
                method.clone_from(&x.method);
                test = x.p_value.is_some();
                let y = x.p_value.or(x.statistic)?;
                Some(Point {
                    x: i,
                    y,
                    flagged: x.drifted,
                    title: format!(
                        "{}: {} {} {}{}",
                        r.at,
                        x.method,
                        if x.p_value.is_some() {
                            "p-value"
                        } else {
                            "distance"
                        },
                        num(y),
                        if x.drifted { " (drifted)" } else { "" }
                    ),
                })
            })
            .collect();
        let drifted_now = last.features.iter().any(|x| &x.feature == f && x.drifted);
        let _ = write!(
            body,
            "<figure class=\"feature{}\"><figcaption>{}{}</figcaption>{}</figure>",
            if drifted_now { " drifted" } else { "" },
            esc(f),
            if drifted_now { " — drifted" } else { "" },
            charts::line_chart(
                &format!("data-feature=\"{}\"", esc(f)),
                &labels,
                &[(f.clone(), points)],
                threshold,
                &format!(
                    "{method} {}",
                    if test {
                        "p-value (drift below the line)"
                    } else {
                        "distance (drift above the line)"
                    }
                ),
            )
        );
    }
    body.push_str("</div>");
    if features.len() > MAX_FEATURE_CHARTS {
        let _ = write!(
            body,
            "<p><small>{} more features are in the report below.</small></p>",
            features.len() - MAX_FEATURE_CHARTS
        );
    }
    body.push_str("</section>");
    body.push_str(&history_section(
        s,
        &ResourceId::new(Kind::Monitor, name.to_string()),
        Some("on-breach"),
    )?);
    let page = page_no(req);
    body.push_str("<section id=\"evaluations\"><h2>Evaluations</h2><table class=\"list\"><thead><tr><th>At</th><th>Commit</th><th>Verdict</th><th>Rows</th><th>Summary</th></tr></thead><tbody>");
    let newest_first: Vec<_> = results.iter().rev().collect();
    for r in &newest_first[html::window(newest_first.len(), PER_PAGE, page)] {
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td class=\"detail\">{}</td></tr>",
            esc(&r.at),
            esc(short(&r.commit, 7)),
            badge("verdict", &r.verdict.to_string()),
            r.rows,
            esc(&r.summary)
        );
    }
    body.push_str("</tbody></table>");
    body.push_str(&html::pager(newest_first.len(), PER_PAGE, page, &|n| {
        format!("/monitors/{}?page={n}", encode(name))
    }));
    let _ = write!(
        body,
        "</section><section><h2>Latest report</h2><iframe class=\"report\" id=\"report\" title=\"drift report of {}\" src=\"/monitors/{}/report\"></iframe></section>",
        esc(name),
        encode(name)
    );
    done(ui, s, "/monitors", &format!("Monitor {name}"), &body)
}

fn report(s: &Session, name: &str) -> Result<Page> {
    let html = crate::commands::monitor_report::render(s, name)?;
    let mut page = Page::html(html);
    page.frameable = true;
    Ok(page)
}

// ---------------------------------------------------------------------------------------
// Plan

fn plan(ui: &Ui, s: &Session) -> Result<Page> {
    let mut body = String::new();
    let notes = match s.ensure_supported() {
        Ok(n) => n,
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\" id=\"plan-refused\">Plan refuses the spec at {} on this target:</p><pre>{}</pre>",
                esc(&s.commit.short_sha),
                esc(&mlctl_spec::suggest::clip(&format!("{e:#}"), 4000))
            );
            return done(ui, s, "/plan", "Plan for HEAD", &body);
        }
    };
    let desired = s.desired()?;
    let observed =
        s.rt.block_on(mlctl_core::observe(
            &s.stack,
            &s.ctx,
            &ApplyOptions::default(),
        ))
        .map_err(|e| anyhow!("cannot read the state of target `{}`: {e}", s.target_name))?;
    let mut plan = planner::plan(&desired, &observed, &s.target_name, PlanOptions::default());
    plan.notes.extend(notes);
    let changes: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();
    let _ = write!(
        body,
        "<p id=\"plan-summary\">{}</p>",
        if changes.is_empty() {
            "No changes: the target matches the spec at HEAD.".to_string()
        } else {
            format!(
                "{} change{} would be made by <code>mlctl apply</code>.",
                changes.len(),
                if changes.len() == 1 { "" } else { "s" }
            )
        }
    );
    if !changes.is_empty() {
        body.push_str("<table class=\"list\" id=\"plan-changes\"><thead><tr><th></th><th>Resource</th><th>Action</th><th>Why</th></tr></thead><tbody>");
        for c in &changes {
            let action = serde_json::to_value(c.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = write!(
                body,
                "<tr data-resource=\"{}\" data-action=\"{}\"><td class=\"symbol action-{}\">{}</td><td><a href=\"{}\">{}</a></td><td>{}</td><td class=\"detail\">{}</td></tr>",
                esc(&c.id.to_string()),
                esc(&action),
                esc(&action),
                esc(c.action.symbol()),
                esc(&resource_href(&c.id)),
                esc(&c.id.to_string()),
                esc(&action),
                esc(&c.reasons.join("; "))
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        "<h2>As <code>mlctl plan</code> prints it</h2><pre id=\"plan-text\">{}</pre>",
        esc(&plan.render_human(&|_, t: &str| t.to_string()))
    );
    done(ui, s, "/plan", "Plan for HEAD", &body)
}

// ---------------------------------------------------------------------------------------
// Any resource

fn resource(ui: &Ui, s: &Session, kind: &str, name: &str) -> Result<Page> {
    let Some(kind) = [
        Kind::Dataset,
        Kind::TrainingJob,
        Kind::Model,
        Kind::Endpoint,
        Kind::Monitor,
    ]
    .into_iter()
    .find(|k| k.as_str() == kind) else {
        return Err(not_found(format!(
            "no kind `{}`; the kinds are Dataset, TrainingJob, Model, Endpoint and Monitor",
            mlctl_spec::suggest::clip(kind, 40)
        )));
    };
    match kind {
        Kind::Model => return Ok(Page::redirect(format!("/models/{}", encode(name)))),
        Kind::Endpoint => return Ok(Page::redirect(format!("/endpoints/{}", encode(name)))),
        Kind::Monitor => return Ok(Page::redirect(format!("/monitors/{}", encode(name)))),
        _ => {}
    }
    let id = ResourceId::new(kind, name.to_string());
    let data = crate::commands::state::status_data(s)?;
    let row = data
        .rows
        .iter()
        .find(|r| row_str(r, "resource") == id.to_string())
        .ok_or_else(|| not_found(format!("no {id} in the spec or on the target")))?;
    let mut body = format!(
        "<p>{} {} · last applied commit <code>{}</code></p>",
        badge("sync", html::sync_word(row_str(row, "sync"))),
        badge("health", &html::health_word(row_str(row, "health"))),
        esc(short(row["lastAppliedCommit"].as_str().unwrap_or("—"), 7))
    );
    if kind == Kind::TrainingJob {
        let _ = write!(
            body,
            "<p><a href=\"/runs?job={}\">Its runs</a></p>",
            encode(name)
        );
    }
    if let Some(o) = observed_of(&data.observed, &id) {
        let _ = write!(
            body,
            "<h2>Outputs</h2><pre>{}</pre>",
            esc(&mlctl_spec::suggest::clip(
                &serde_json::to_string_pretty(&o.outputs).unwrap_or_default(),
                4000
            ))
        );
    }
    body.push_str(&history_section(s, &id, None)?);
    done(ui, s, "/graph", &id.to_string(), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(id: &str, c: f64, accuracy: f64) -> RunRecord {
        RunRecord {
            id: id.into(),
            job_name: "j".into(),
            resource: "t".into(),
            status: "completed".into(),
            params: BTreeMap::from([
                ("C".to_string(), serde_json::json!(c)),
                ("solver".to_string(), serde_json::json!("lbfgs")),
            ]),
            metrics: BTreeMap::from([("accuracy".to_string(), accuracy)]),
            artifacts: Vec::new(),
            data_digest: String::new(),
            code_digest: None,
            commit: "abc".into(),
            started_at: "2026-12-03T00:00:00Z".into(),
            duration_secs: 1.0,
            parent: Some("p".into()),
            evaluation: None,
        }
    }

    #[test]
    fn tuning_trials_are_plotted_with_the_best_marked_for_the_objectives_direction() {
        let runs = [
            trial("a", 0.1, 0.8),
            trial("b", 1.0, 0.95),
            trial("c", 10.0, 0.9),
        ];
        let refs: Vec<&RunRecord> = runs.iter().collect();
        let max = trials_section(&refs, "accuracy", false);
        assert_eq!(max.matches("<circle").count(), 3);
        assert_eq!(max.matches("flagged").count(), 1);
        assert!(max.contains("data-value=\"0.95\"") && max.contains("trial 2: accuracy 0.95"));
        let flagged = &max[max.find("flagged").unwrap()..];
        assert!(
            flagged.starts_with("flagged\" data-value=\"0.95\""),
            "{flagged}"
        );
        // Minimised, the lowest is the best.
        let min = trials_section(&refs, "accuracy", true);
        let flagged = &min[min.find("flagged").unwrap()..];
        assert!(
            flagged.starts_with("flagged\" data-value=\"0.8\""),
            "{flagged}"
        );
        // Parallel coordinates: the numeric hyperparameter, then the objective; a line each.
        assert!(max.contains("data-axis=\"C\"") && max.contains("data-axis=\"accuracy\""));
        assert!(
            !max.contains("data-axis=\"solver\""),
            "strings are not an axis"
        );
        assert_eq!(max.matches("class=\"pline").count(), 3);
    }

    #[test]
    fn the_training_section_shows_the_kept_rounds_and_a_bar_per_feature() {
        let imp = |feature: &str, gain: f64, permutation: f64| mlctl_ml::importance::Importance {
            feature: feature.into(),
            gain: Some(gain),
            permutation: Some(permutation),
            permutation_std: Some(0.01),
        };
        let e = mlctl_core::components::Evaluation {
            data_digest: String::new(),
            train_rows: 90,
            validation_rows: Some(30),
            validation_from: Some("validation split".into()),
            test_rows: 30,
            test_from: "test split".into(),
            seed: 0,
            scored_on: "test".into(),
            early_stopping: Some(mlctl_ml::algo::boosting::EarlyStopping {
                best_round: 17,
                rounds_trained: 22,
                patience: 5,
                best_loss: 0.25,
            }),
            importance: vec![imp("petal_width", 0.75, 0.4), imp("<b>", 0.25, 0.0)],
        };
        let html = training_section(&e);
        assert!(html.contains("<th>Rounds kept</th><td>17</td>"), "{html}");
        assert!(
            html.contains("<th>Rounds trained</th><td>22</td>"),
            "{html}"
        );
        // The top feature's bars are full width; a zero permutation draws none.
        assert_eq!(html.matches("width:120px").count(), 2, "{html}");
        assert!(
            html.contains("width:40px") && html.contains("width:0px"),
            "{html}"
        );
        assert!(
            html.contains("<td>&lt;b&gt;</td>"),
            "names are escaped: {html}"
        );
        let none = mlctl_core::components::Evaluation {
            early_stopping: None,
            importance: Vec::new(),
            ..e
        };
        assert_eq!(training_section(&none), "");
    }

    #[test]
    fn runs_sort_by_a_metric_with_missing_values_last_either_way() {
        let mut runs = vec![
            trial("a", 0.1, 0.8),
            trial("b", 1.0, 0.95),
            trial("c", 10.0, 0.9),
        ];
        runs[2].metrics.clear();
        sort_runs(&mut runs, "metric:accuracy", false);
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
        sort_runs(&mut runs, "metric:accuracy", true);
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        sort_runs(&mut runs, "param:C", false);
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
    }
}
