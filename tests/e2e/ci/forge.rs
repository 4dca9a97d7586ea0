//! Fake GitHub and GitLab REST APIs on 127.0.0.1: the comments of one pull request (GitHub:
//! `acme/iris` #7) or merge request (GitLab: project 42, !7), kept in memory.
//!
//! Each checks the token header as its platform does, and pages as its platform does, with
//! at most [`PER_PAGE`] comments per page whatever the client asks for, so a client that
//! does not follow `Link: rel="next"` (GitHub) or `X-Next-Page` (GitLab) misses comments.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Comments per page, at most.
pub const PER_PAGE: usize = 3;
/// The pull / merge request the fakes hold.
pub const NUMBER: u64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Github,
    Gitlab,
}

/// One comment (a GitLab note).
#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub author: String,
    pub body: String,
    /// A GitLab system note ("added 1 commit").
    pub system: bool,
}

#[derive(Default)]
struct State {
    comments: Vec<Comment>,
    next_id: u64,
    /// `METHOD path?query` of every request, in order.
    requests: Vec<String>,
    /// Requests refused for a missing or wrong token.
    refused: usize,
}

/// A fake API, serving until dropped.
pub struct Forge {
    pub platform: Platform,
    port: u16,
    token: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forge {
    /// A fake of `platform` that accepts `token`.
    pub fn start(platform: Platform, token: &str) -> Forge {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            next_id: 1_000,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp, tok) = (state.clone(), stop.clone(), token.to_string());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stp.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve(platform, port, &tok, &st, conn);
                }
            }
        });
        Forge {
            platform,
            port,
            token: token.to_string(),
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The API root, as the platform's CI announces it (`GITHUB_API_URL`, `CI_API_V4_URL`).
    pub fn api_url(&self) -> String {
        match self.platform {
            Platform::Github => format!("http://127.0.0.1:{}", self.port),
            Platform::Gitlab => format!("http://127.0.0.1:{}/api/v4", self.port),
        }
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A comment written by `author` (a person, or a bot other than mlctl).
    pub fn add(&self, author: &str, body: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = s.next_id;
        s.comments.push(Comment {
            id,
            author: author.into(),
            body: body.into(),
            system: false,
        });
        id
    }

    /// A GitLab system note.
    pub fn add_system_note(&self, body: &str) {
        let id = self.add("gitlab", body);
        let mut s = self.state.lock().unwrap();
        s.comments.iter_mut().find(|c| c.id == id).unwrap().system = true;
    }

    /// Every comment, oldest first.
    pub fn comments(&self) -> Vec<Comment> {
        self.state.lock().unwrap().comments.clone()
    }

    /// The comments whose body carries `marker`.
    pub fn marked(&self, marker: &str) -> Vec<Comment> {
        self.comments()
            .into_iter()
            .filter(|c| c.body.contains(marker))
            .collect()
    }

    /// `METHOD path?query` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests starting with `prefix` (e.g. `"PATCH "`) were made.
    pub fn count(&self, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    }

    /// Requests refused for their token.
    pub fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }
}

impl Drop for Forge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    Some(Request {
        method,
        path: path.to_string(),
        query,
        headers,
        body,
    })
}

fn respond(mut conn: TcpStream, status: u16, extra: &[(String, String)], body: &serde_json::Value) {
    let text = body.to_string();
    let reason = match status {
        200 => "OK",
        201 => "Created",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let _ = conn.write_all(format!("{head}\r\n{text}").as_bytes());
}

fn serve(platform: Platform, port: u16, token: &str, state: &Mutex<State>, conn: TcpStream) {
    let Some(req) = read_request(&conn) else {
        return;
    };
    let mut s = state.lock().unwrap();
    let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    s.requests
        .push(format!("{} {}?{}", req.method, req.path, query.join("&")));
    let authorized = match platform {
        Platform::Github => req.header("authorization") == Some(&format!("Bearer {token}")),
        Platform::Gitlab => req.header("private-token") == Some(token),
    };
    if !authorized {
        s.refused += 1;
        let message = match platform {
            Platform::Github => "Bad credentials",
            Platform::Gitlab => "401 Unauthorized",
        };
        return respond(conn, 401, &[], &serde_json::json!({ "message": message }));
    }
    let (list, one) = match platform {
        Platform::Github => (
            format!("/repos/acme/iris/issues/{NUMBER}/comments"),
            "/repos/acme/iris/issues/comments/".to_string(),
        ),
        Platform::Gitlab => (
            format!("/api/v4/projects/42/merge_requests/{NUMBER}/notes"),
            format!("/api/v4/projects/42/merge_requests/{NUMBER}/notes/"),
        ),
    };
    let json = |c: &Comment| match platform {
        Platform::Github => serde_json::json!({
            "id": c.id,
            "body": c.body,
            "user": {"login": c.author},
            "html_url": format!("https://github.example/acme/iris/pull/{NUMBER}#issuecomment-{}", c.id),
        }),
        Platform::Gitlab => serde_json::json!({
            "id": c.id, "body": c.body, "author": {"username": c.author}, "system": c.system,
        }),
    };
    let new_body = || {
        serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v["body"].as_str().map(str::to_string))
    };
    // GitHub refuses a comment over 65,536 characters.
    if platform == Platform::Github && new_body().is_some_and(|b| b.chars().count() > 65_536) {
        return respond(
            conn,
            422,
            &[],
            &serde_json::json!({"message": "Validation Failed", "errors": [{"message": "Body is too long (maximum is 65536 characters)"}]}),
        );
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", p) if p == list => {
            let per_page = req
                .query("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30usize)
                .min(PER_PAGE);
            let page: usize = req.query("page").and_then(|v| v.parse().ok()).unwrap_or(1);
            let items: Vec<_> = s
                .comments
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(json)
                .collect();
            let more = s.comments.len() > page * per_page;
            let mut extra = Vec::new();
            match platform {
                Platform::Github if more => extra.push((
                    "Link".into(),
                    format!(
                        "<http://127.0.0.1:{port}{list}?per_page={per_page}&page={}>; rel=\"next\", <http://127.0.0.1:{port}{list}?per_page={per_page}&page=1>; rel=\"first\"",
                        page + 1
                    ),
                )),
                Platform::Github => {}
                Platform::Gitlab => extra.push((
                    "X-Next-Page".into(),
                    if more { (page + 1).to_string() } else { String::new() },
                )),
            }
            respond(conn, 200, &extra, &serde_json::Value::Array(items))
        }
        ("POST", p) if p == list => {
            let Some(body) = new_body() else {
                return respond(conn, 400, &[], &serde_json::json!({"message": "no body"}));
            };
            s.next_id += 1;
            let c = Comment {
                id: s.next_id,
                author: "ci-bot".into(),
                body,
                system: false,
            };
            let out = json(&c);
            s.comments.push(c);
            respond(conn, 201, &[], &out)
        }
        (m, p)
            if p.starts_with(&one)
                && (m == "PATCH" && platform == Platform::Github
                    || m == "PUT" && platform == Platform::Gitlab) =>
        {
            let id: u64 = p[one.len()..].parse().unwrap_or(0);
            let body = new_body();
            match (s.comments.iter_mut().find(|c| c.id == id), body) {
                (Some(c), Some(body)) => {
                    c.body = body;
                    let out = json(c);
                    respond(conn, 200, &[], &out)
                }
                _ => respond(conn, 404, &[], &serde_json::json!({"message": "Not Found"})),
            }
        }
        _ => respond(conn, 404, &[], &serde_json::json!({"message": "Not Found"})),
    }
}
