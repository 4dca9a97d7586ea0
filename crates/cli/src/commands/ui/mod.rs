//! `mlctl ui`: the web dashboard over any target.
//!
//! Server-rendered HTML (charts are SVG drawn here, so nothing is fetched from a network), one
//! small embedded script and stylesheet. Every page opens the project as a command does
//! (`session::open` at HEAD) and reads through the component traits, so it shows what the CLI
//! shows on every provider. Pages are rendered on a thread of their own (a `Session` owns a
//! runtime, which cannot run inside the server's).
//!
//! Safety: it binds 127.0.0.1 unless told otherwise, and any other address needs a token; it
//! is read-only unless started with `--allow-actions`, and each action runs the `mlctl`
//! command a user would type (the same code, the same lock), from a form that carries the
//! server's CSRF token.

mod actions;
mod charts;
mod html;
mod pages;

use crate::cli::TargetArgs;
use anyhow::{Context, Result, anyhow, bail};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// `mlctl ui` flags.
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Address to listen on. Anything but a loopback address also needs `--token`.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the URL is printed).
    #[arg(long, default_value_t = 4141)]
    pub port: u16,
    /// Allow the actions: approve or reject a model version, roll an endpoint back, run a
    /// monitor now. Without it the dashboard is read-only.
    #[arg(long)]
    pub allow_actions: bool,
    /// A token every request must carry (`Authorization: Bearer TOKEN`, or `?token=TOKEN`
    /// once, which sets a cookie); required when listening beyond loopback. At least 16
    /// characters.
    #[arg(long, env = "MLCTL_UI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// What every request shares.
pub(crate) struct Ui {
    pub project: PathBuf,
    pub target: TargetArgs,
    pub allow_actions: bool,
    token: Option<String>,
    /// Put in every action form and checked on every POST.
    pub csrf: String,
    /// The port it listens on (Host headers are checked against it).
    port: u16,
    /// The last `/metrics` page read from each endpoint, for its request rate.
    pub scrapes: Mutex<HashMap<String, (Instant, mlctl_serve::metrics::Scrape)>>,
}

/// A rendered page or an error page.
pub(crate) struct Page {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
    /// Where to send the browser instead (303).
    pub location: Option<String>,
    /// Framing allowed from the dashboard itself (the embedded monitor report).
    pub frameable: bool,
}

impl Page {
    pub fn html(body: String) -> Page {
        Page {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            body,
            location: None,
            frameable: false,
        }
    }
    pub fn redirect(to: String) -> Page {
        Page {
            status: StatusCode::SEE_OTHER,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
            location: Some(to),
            frameable: false,
        }
    }
}

/// `mlctl ui`.
pub fn run(project: &Path, args: UiArgs) -> Result<u8> {
    let ip: IpAddr = args.host.parse().map_err(|_| {
        anyhow!(
            "--host `{}` is not an IP address; give one, e.g. 127.0.0.1 (the default) or 0.0.0.0 with --token",
            mlctl_spec::suggest::clip(&args.host, 80)
        )
    })?;
    if let Some(t) = &args.token
        && t.chars().count() < 16
    {
        bail!(
            "the dashboard token is {} characters long; use at least 16 (e.g. `openssl rand -hex 16`)",
            t.chars().count()
        );
    }
    if !ip.is_loopback() && args.token.is_none() {
        bail!(
            "listening on {ip} would open the dashboard to other machines without a token; set one with --token or MLCTL_UI_TOKEN (every request must then carry it), or keep the default --host 127.0.0.1"
        );
    }
    // The project must open now, so a mistake is said once here rather than on every page.
    let project = crate::session::open_target(project, &args.target)
        .map(|s| s.project_dir.clone())
        .context("mlctl ui: cannot open the project")?;
    let rt = crate::session::runtime()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind((ip, args.port)))
        .with_context(|| format!("cannot listen on {ip}:{}", args.port))?;
    let addr = listener.local_addr()?;
    let ui = Arc::new(Ui {
        project,
        target: args.target.clone(),
        allow_actions: args.allow_actions,
        token: args.token.clone(),
        csrf: random_token(),
        port: addr.port(),
        scrapes: Mutex::new(HashMap::new()),
    });
    let shown = if ip.is_unspecified() {
        format!("http://127.0.0.1:{}/", addr.port())
    } else {
        format!("http://{addr}/")
    };
    println!(
        "mlctl ui: serving {} on {shown} ({}{}); Ctrl-C stops it",
        ui.project.display(),
        if ui.allow_actions {
            "actions allowed"
        } else {
            "read-only"
        },
        if ui.token.is_some() {
            "; open it once with ?token=<your token>"
        } else {
            ""
        }
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let app = axum::Router::new().fallback(handle).with_state(ui);
    rt.block_on(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
    .context("the dashboard's server stopped")?;
    Ok(0)
}

/// 32 random bytes, hex: from the kernel, else from the clock and the process.
fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    let from_kernel = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !from_kernel {
        let seed = format!(
            "{:?}{}{:p}",
            std::time::SystemTime::now(),
            std::process::id(),
            &bytes
        );
        bytes = *blake3::hash(seed.as_bytes()).as_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal without saying where they differ by how long it took.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `a=b&c=d`, percent-decoded.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value or path segment.
pub(crate) use mlctl_core::url::percent_encode as encode;

/// The request, as the pages read it.
pub(crate) struct Req {
    pub path: Vec<String>,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
}

impl Req {
    /// The first value of `key` in the query (or the form, for a POST).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(&self.form)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    /// Every value of `key` in the query.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn plain(status: StatusCode, text: String) -> Page {
    Page {
        status,
        content_type: "text/plain; charset=utf-8",
        body: text + "\n",
        location: None,
        frameable: false,
    }
}

/// Every request: checks where it comes from and its token, then renders on a thread.
async fn handle(
    axum::extract::State(ui): axum::extract::State<Arc<Ui>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t0 = Instant::now();
    let page = match gate(&ui, &method, &uri, &headers, &body) {
        Err(page) => page,
        Ok(req) => {
            let ui2 = ui.clone();
            let post = method == Method::POST;
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let page = if post {
                    actions::run(&ui2, &req)
                } else {
                    pages::route(&ui2, &req)
                };
                let _ = tx.send(page);
            });
            rx.await.unwrap_or_else(|_| {
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render (see the dashboard's stderr)".into(),
                )
            })
        }
    };
    respond(page, t0)
}

/// The request as pages read it, or the page that refuses it.
fn gate(
    ui: &Ui,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> std::result::Result<Req, Page> {
    let query = parse_query(uri.query().unwrap_or(""));
    // DNS rebinding: on loopback without a token, only loopback names may reach it.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if ui.token.is_none() {
        let name = host
            .rsplit_once(':')
            .map_or(host, |(n, _)| n)
            .trim_matches(['[', ']']);
        if !matches!(name, "127.0.0.1" | "localhost" | "::1") {
            return Err(plain(
                StatusCode::FORBIDDEN,
                format!(
                    "this dashboard answers only to 127.0.0.1:{0} or localhost:{0} (the request named host `{1}`); to reach it from elsewhere, start it with --host and --token",
                    ui.port,
                    mlctl_spec::suggest::clip(host, 80)
                ),
            ));
        }
    }
    if let Some(token) = &ui.token {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let given = query
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str());
        if let Some(t) = given {
            if !same(t, token) {
                return Err(plain(
                    StatusCode::UNAUTHORIZED,
                    "the token in the address is not this dashboard's token".into(),
                ));
            }
            // Into a cookie, and out of the address (and so of the history and Referer).
            let rest: Vec<String> = query
                .iter()
                .filter(|(k, _)| k != "token")
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            let to = if rest.is_empty() {
                uri.path().to_string()
            } else {
                format!("{}?{}", uri.path(), rest.join("&"))
            };
            let mut page = Page::redirect(to);
            page.body = format!("mlctl_ui_token={}", encode(t));
            page.content_type = "set-cookie";
            return Err(page);
        }
        let ok = bearer.is_some_and(|b| same(b, token))
            || cookie(headers, "mlctl_ui_token").is_some_and(|c| same(&decode(c), token));
        if !ok {
            return Err(plain(
                StatusCode::UNAUTHORIZED,
                "this dashboard needs its token: open it once with ?token=<the token it was started with>, or send `Authorization: Bearer <token>`".into(),
            ));
        }
    }
    let path: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    if *method == Method::GET || *method == Method::HEAD {
        return Ok(Req {
            path,
            query,
            form: Vec::new(),
        });
    }
    if *method != Method::POST {
        return Err(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{method} is not something the dashboard answers; it takes GET, and POST for actions"
            ),
        ));
    }
    if !ui.allow_actions {
        return Err(plain(
            StatusCode::FORBIDDEN,
            "the dashboard is read-only; restart it with `mlctl ui --allow-actions` to approve, reject, roll back or run monitors from it (or use the CLI)".into(),
        ));
    }
    // CSRF: the form's token, and the browser's word that the form is the dashboard's own.
    let cross = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != "same-origin" && v != "none");
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                == Some(host)
        });
    let form = parse_query(&String::from_utf8_lossy(body));
    let csrf_ok = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .is_some_and(|(_, v)| same(v, &ui.csrf));
    if cross || !origin_ok || !csrf_ok {
        return Err(plain(
            StatusCode::FORBIDDEN,
            "the action was refused: it did not come from a form of this dashboard (CSRF check); reload the page and try again".into(),
        ));
    }
    Ok(Req { path, query, form })
}

fn respond(page: Page, t0: Instant) -> Response {
    let mut resp = if page.content_type == "set-cookie" {
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) =
            HeaderValue::from_str(&format!("{}; HttpOnly; SameSite=Strict; Path=/", page.body))
        {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    } else {
        let mut r = (page.status, page.body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(page.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    if let Some(to) = page.location
        && let Ok(v) = HeaderValue::from_str(&to)
    {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if page.frameable {
        h.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    } else {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'",
            ),
        );
    }
    // The server's own time for the page: what bench/ui.sh reads.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "render;dur={:.3}",
        t0.elapsed().as_secs_f64() * 1000.0
    )) {
        h.insert("server-timing", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_percent_and_plus_and_survive_bad_escapes() {
        assert_eq!(
            parse_query("q=a+b%3Dc&id=1&id=2&bad=%zz%4"),
            [
                ("q".to_string(), "a b=c".to_string()),
                ("id".to_string(), "1".to_string()),
                ("id".to_string(), "2".to_string()),
                ("bad".to_string(), "%zz%4".to_string()),
            ]
        );
        assert_eq!(decode(&encode("metric:f1 macro/ü")), "metric:f1 macro/ü");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abcdef", "abcdef"));
        assert!(!same("abcdef", "abcdeg"));
        assert!(!same("abc", "abcdef"));
        assert_eq!(random_token().len(), 64);
        assert_ne!(random_token(), random_token());
    }
}
