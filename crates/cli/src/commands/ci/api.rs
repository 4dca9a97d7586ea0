//! The comments of one pull request (GitHub) or merge request (GitLab) over the platform's
//! REST API: list them all (every page), create one, edit one.
//!
//! The token goes in one header, marked sensitive, and nowhere else: never in a URL, a
//! message or a log line. A `next` page link is followed only when it points into the API
//! the context names, so a token is never sent to another host.

use anyhow::{Result, anyhow, bail};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use std::time::Duration;

/// Which platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// GitHub (and GitHub Enterprise Server): pull-request comments.
    Github,
    /// GitLab (gitlab.com and self-managed): merge-request notes.
    Gitlab,
}

impl Provider {
    /// The platform's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Github => "GitHub",
            Provider::Gitlab => "GitLab",
        }
    }

    /// The longest comment the platform takes, in characters.
    pub fn max_body(self) -> usize {
        match self {
            Provider::Github => 65_536,
            Provider::Gitlab => 1_000_000,
        }
    }

    /// "pull request #4" or "merge request !4".
    pub fn request(self, number: u64) -> String {
        match self {
            Provider::Github => format!("pull request #{number}"),
            Provider::Gitlab => format!("merge request !{number}"),
        }
    }
}

/// A token, which no `Debug` or `Display` shows.
pub struct Token {
    value: String,
    /// The variable it came from, for messages.
    pub var: &'static str,
}

impl Token {
    pub fn new(value: String, var: &'static str) -> Self {
        Token { value, var }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(from {}, redacted)", self.var)
    }
}

/// Where the comment goes, read from the environment the platform sets (`context.rs`).
#[derive(Debug)]
pub struct Context {
    pub provider: Provider,
    /// The API root, without a trailing `/` (`https://api.github.com`,
    /// `https://gitlab.example.com/api/v4`).
    pub api: String,
    pub token: Token,
    /// GitHub: `owner/repo`; GitLab: the project id (or its path).
    pub repo: String,
    /// The pull request's number or the merge request's iid.
    pub number: u64,
}

/// A comment as the API returns it.
#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    /// Where people see it (GitHub's `html_url`); none on GitLab, whose notes lack it.
    pub url: Option<String>,
}

/// Pages read at most when listing (100 comments each): a bound on a hostile or broken API.
const MAX_PAGES: usize = 200;

/// A client for one pull or merge request's comments.
pub struct Api {
    ctx: Context,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    pub fn new(ctx: Context) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
        let mut headers = HeaderMap::new();
        let mut auth = match ctx.provider {
            Provider::Github => HeaderValue::from_str(&format!("Bearer {}", ctx.token.value)),
            Provider::Gitlab => HeaderValue::from_str(&ctx.token.value),
        }
        .map_err(|_| {
            anyhow!(
                "{} holds characters an HTTP header cannot carry; set it to the token alone",
                ctx.token.var
            )
        })?;
        auth.set_sensitive(true);
        match ctx.provider {
            Provider::Github => {
                headers.insert(AUTHORIZATION, auth);
                headers.insert(
                    ACCEPT,
                    HeaderValue::from_static("application/vnd.github+json"),
                );
                headers.insert(
                    HeaderName::from_static("x-github-api-version"),
                    HeaderValue::from_static("2022-11-28"),
                );
            }
            Provider::Gitlab => {
                headers.insert(HeaderName::from_static("private-token"), auth);
            }
        }
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("mlctl/", env!("CARGO_PKG_VERSION"))),
        );
        let _guard = rt.enter();
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow!("cannot make an HTTP client: {e}"))?;
        Ok(Api { ctx, client, rt })
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    fn comments_url(&self) -> String {
        let c = &self.ctx;
        match c.provider {
            Provider::Github => format!("{}/repos/{}/issues/{}/comments", c.api, c.repo, c.number),
            Provider::Gitlab => format!(
                "{}/projects/{}/merge_requests/{}/notes",
                c.api,
                path_segment(&c.repo),
                c.number
            ),
        }
    }

    fn comment_url(&self, id: u64) -> String {
        let c = &self.ctx;
        match c.provider {
            Provider::Github => format!("{}/repos/{}/issues/comments/{id}", c.api, c.repo),
            Provider::Gitlab => format!("{}/{id}", self.comments_url()),
        }
    }

    /// Every comment, oldest first, following the pages (GitHub's `Link: rel="next"`,
    /// GitLab's `X-Next-Page`). GitLab's system notes ("added 1 commit") are left out.
    pub fn list(&self) -> Result<Vec<Comment>> {
        let first = match self.ctx.provider {
            Provider::Github => format!("{}?per_page=100", self.comments_url()),
            Provider::Gitlab => format!(
                "{}?per_page=100&sort=asc&order_by=created_at",
                self.comments_url()
            ),
        };
        let mut url = Some(first);
        let mut out = Vec::new();
        let mut pages = 0;
        while let Some(u) = url.take() {
            pages += 1;
            if pages > MAX_PAGES {
                bail!(
                    "{} has more than {} pages of comments; mlctl stopped reading them rather than post a second plan comment",
                    self.ctx.provider.request(self.ctx.number),
                    MAX_PAGES
                );
            }
            let (headers, value) = self.send(Method::GET, &u, None, "list the comments of")?;
            let items = value.as_array().ok_or_else(|| {
                anyhow!(
                    "{} answered the list of comments with something other than a JSON array",
                    self.ctx.provider.name()
                )
            })?;
            for item in items {
                if item["system"].as_bool() == Some(true) {
                    continue;
                }
                out.push(self.comment(item)?);
            }
            url = self.next_page(&headers, &u)?;
        }
        Ok(out)
    }

    fn next_page(&self, headers: &HeaderMap, current: &str) -> Result<Option<String>> {
        match self.ctx.provider {
            Provider::Github => {
                let Some(next) = headers
                    .get_all("link")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(next_link)
                else {
                    return Ok(None);
                };
                if !within(&next, &self.ctx.api) {
                    bail!(
                        "GitHub's next page of comments is outside {} (the API in GITHUB_API_URL); mlctl does not send the token there",
                        self.ctx.api
                    );
                }
                Ok(Some(next))
            }
            Provider::Gitlab => {
                let next = headers
                    .get("x-next-page")
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .unwrap_or("");
                if next.is_empty() {
                    return Ok(None);
                }
                let page: u64 = next.parse().map_err(|_| {
                    anyhow!("GitLab answered with a next page that is not a number: X-Next-Page")
                })?;
                let base = current.split("&page=").next().unwrap_or(current);
                Ok(Some(format!("{base}&page={page}")))
            }
        }
    }

    /// Posts a new comment.
    pub fn create(&self, body: &str) -> Result<Comment> {
        let (_, value) = self.send(Method::POST, &self.comments_url(), Some(body), "comment on")?;
        self.comment(&value)
    }

    /// Replaces comment `id`'s body (GitHub `PATCH`, GitLab `PUT`).
    pub fn update(&self, id: u64, body: &str) -> Result<Comment> {
        let method = match self.ctx.provider {
            Provider::Github => Method::PATCH,
            Provider::Gitlab => Method::PUT,
        };
        let (_, value) = self.send(
            method,
            &self.comment_url(id),
            Some(body),
            "edit a comment on",
        )?;
        self.comment(&value)
    }

    fn comment(&self, v: &serde_json::Value) -> Result<Comment> {
        let id = v["id"].as_u64().ok_or_else(|| {
            anyhow!(
                "{} answered with a comment without a numeric `id`",
                self.ctx.provider.name()
            )
        })?;
        Ok(Comment {
            id,
            body: v["body"].as_str().unwrap_or_default().to_string(),
            url: v["html_url"].as_str().map(str::to_string),
        })
    }

    /// One request, retried on a connection failure, 429 or 5xx with backoff (1 s, 2 s); a
    /// POST only when it was never sent, so a retry cannot post twice.
    fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&str>,
        what: &str,
    ) -> Result<(HeaderMap, serde_json::Value)> {
        let target = self.ctx.provider.request(self.ctx.number);
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=3 {
            let mut req = self.client.request(method.clone(), url);
            if let Some(body) = body {
                req = req.json(&serde_json::json!({ "body": body }));
            }
            let last = attempt == 3;
            // `send` starts the timeout's timer: it must run inside the runtime.
            match self.rt.block_on(async { req.send().await }) {
                Err(e) => {
                    let sent = !(e.is_connect() || e.is_builder());
                    if last || (sent && method == Method::POST) {
                        bail!(
                            "cannot {what} {target}: {} at {} {}; check the API URL, or try again",
                            kind(&e),
                            self.ctx.provider.name(),
                            self.ctx.api
                        );
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let text = self
                        .rt
                        .block_on(async { resp.text().await })
                        .unwrap_or_default();
                    if status.is_success() {
                        let value = serde_json::from_str(&text).map_err(|_| {
                            anyhow!(
                                "cannot {what} {target}: {} answered HTTP {} with a body that is not JSON",
                                self.ctx.provider.name(),
                                status.as_u16()
                            )
                        })?;
                        return Ok((headers, value));
                    }
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if last || !retryable {
                        return Err(self.refusal(what, status, &text));
                    }
                }
            }
            std::thread::sleep(delay);
            delay *= 2;
        }
        unreachable!("the last attempt returns")
    }

    /// What a refused request means, and what to do, in the platform's terms.
    fn refusal(&self, what: &str, status: StatusCode, text: &str) -> anyhow::Error {
        let c = &self.ctx;
        let said = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| {
                v["message"]
                    .as_str()
                    .or(v["error"].as_str())
                    .map(str::to_string)
                    .or_else(|| v.get("message").map(|m| m.to_string()))
            })
            .map(|m| format!(" ({})", mlctl_spec::suggest::quote(&m)))
            .unwrap_or_default();
        let target = c.provider.request(c.number);
        let hint = match (c.provider, status.as_u16()) {
            (_, 401) => format!(
                "the token in {} was refused: it is wrong or expired",
                c.token.var
            ),
            (Provider::Github, 403) => {
                "the token may not write comments: give the job `permissions: pull-requests: write` (a fine-grained token needs Pull requests: Read and write)".to_string()
            }
            (Provider::Gitlab, 403) => format!(
                "the token in {} may not write notes: it needs the `api` scope and at least the Reporter role on the project",
                c.token.var
            ),
            (Provider::Github, 404) => format!(
                "{target} of {} was not found, or the token cannot see it (check GITHUB_REPOSITORY and the number)",
                c.repo
            ),
            (Provider::Gitlab, 404) => format!(
                "{target} of project {} was not found, or the token cannot see it (check CI_PROJECT_ID and CI_MERGE_REQUEST_IID)",
                c.repo
            ),
            (_, 422) => "the platform refused the comment's body".to_string(),
            (_, 429) => "rate limited: try again later".to_string(),
            _ => format!("{} had a problem: try again", c.provider.name()),
        };
        anyhow!(
            "cannot {what} {target}: {} answered HTTP {}{said}; {hint}",
            c.provider.name(),
            status.as_u16()
        )
    }
}

/// The kind of a transport error (its text names the URL, which carries no token, but the
/// kind is what a user can act on).
fn kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "no answer within 30 s"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "a redirect, which mlctl does not follow with a token"
    } else {
        "the request failed"
    }
}

/// The URL of `rel="next"` in one `Link` header value.
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_string())
    })
}

/// Whether `url` is under the API root `api` (same scheme, host, port and path prefix).
fn within(url: &str, api: &str) -> bool {
    url.strip_prefix(api)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

/// A GitLab project id or `group/project` path as one URL path segment.
fn path_segment(id: &str) -> String {
    mlctl_core::url::percent_encode(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_the_others() {
        let v = r#"<https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=3>; rel="next", <https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=5>; rel="last""#;
        assert_eq!(
            next_link(v).as_deref(),
            Some("https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=3")
        );
        assert_eq!(next_link(r#"<https://x/y?page=1>; rel="prev""#), None);
    }

    #[test]
    fn a_next_page_outside_the_api_is_not_followed() {
        assert!(within(
            "https://api.github.com/repos/a/b",
            "https://api.github.com"
        ));
        assert!(!within(
            "https://api.github.com.evil.example/x",
            "https://api.github.com"
        ));
        assert!(!within("http://127.0.0.1:9/x", "http://127.0.0.1:8"));
    }

    #[test]
    fn a_gitlab_project_path_is_one_segment() {
        assert_eq!(path_segment("42"), "42");
        assert_eq!(path_segment("group/sub/project"), "group%2Fsub%2Fproject");
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let t = Token::new("glpat-very-secret".into(), "GITLAB_TOKEN");
        assert_eq!(format!("{t:?}"), "Token(from GITLAB_TOKEN, redacted)");
    }
}
