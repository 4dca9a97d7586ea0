//! Where a comment goes, from the variables GitHub Actions and GitLab CI set: the API, the
//! repository or project, the pull or merge request, the token.
//!
//! Every missing piece is reported at once, each with the variable that carries it and what
//! to do. The token's value is never part of a message.

use super::api::{Context, Provider, Token};
use anyhow::{Result, anyhow};

/// Reads the context of `provider` from `env` (the process environment, or a table in tests);
/// `pr` is `--pr`, which wins over what the environment says.
pub fn from_env(
    provider: Provider,
    pr: Option<u64>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Context> {
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut problems: Vec<String> = Vec::new();
    let ctx = match provider {
        Provider::Github => {
            let token = match (get("GITHUB_TOKEN"), get("GH_TOKEN")) {
                (Some(t), _) => Some(Token::new(t, "GITHUB_TOKEN")),
                (None, Some(t)) => Some(Token::new(t, "GH_TOKEN")),
                (None, None) => {
                    problems.push(
                        "GITHUB_TOKEN is not set: in the workflow, give the step `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` and the job `permissions: pull-requests: write`; elsewhere, set it to a token that may write pull-request comments"
                            .into(),
                    );
                    None
                }
            };
            let api = api_url(
                get("GITHUB_API_URL"),
                "GITHUB_API_URL",
                "GitHub Actions sets it; elsewhere set it to https://api.github.com (or your GitHub Enterprise Server's https://HOST/api/v3)",
                &mut problems,
            );
            let repo = match get("GITHUB_REPOSITORY") {
                Some(r)
                    if r.split('/').count() == 2 && !r.starts_with('/') && !r.ends_with('/') =>
                {
                    Some(r)
                }
                Some(r) => {
                    problems.push(format!(
                        "GITHUB_REPOSITORY is `{}`, not `owner/repo`",
                        mlctl_spec::suggest::quote(&r)
                    ));
                    None
                }
                None => {
                    problems.push(
                        "GITHUB_REPOSITORY is not set: GitHub Actions sets it; elsewhere set it to `owner/repo`"
                            .into(),
                    );
                    None
                }
            };
            let number = pr.or_else(|| github_pr(get("GITHUB_EVENT_PATH"), &mut problems));
            (token, api, repo, number)
        }
        Provider::Gitlab => {
            let token = match get("GITLAB_TOKEN") {
                Some(t) => Some(Token::new(t, "GITLAB_TOKEN")),
                None if get("CI_JOB_TOKEN").is_some() => {
                    problems.push(
                        "GITLAB_TOKEN is not set, and CI_JOB_TOKEN (which the job has) cannot write merge request notes: create a project access token with the `api` scope and the Reporter role, and store it as a masked CI/CD variable GITLAB_TOKEN"
                            .into(),
                    );
                    None
                }
                None => {
                    problems.push(
                        "GITLAB_TOKEN is not set: set it to a project access token with the `api` scope (a masked CI/CD variable in GitLab)"
                            .into(),
                    );
                    None
                }
            };
            let api = api_url(
                get("CI_API_V4_URL"),
                "CI_API_V4_URL",
                "GitLab CI sets it; elsewhere set it to https://HOST/api/v4",
                &mut problems,
            );
            let repo = get("CI_PROJECT_ID");
            if repo.is_none() {
                problems.push(
                    "CI_PROJECT_ID is not set: GitLab CI sets it; elsewhere set it to the project's id or `group/project` path"
                        .into(),
                );
            }
            let number = pr.or_else(|| match get("CI_MERGE_REQUEST_IID") {
                Some(n) => match n.trim().parse() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        problems.push(format!(
                            "CI_MERGE_REQUEST_IID is `{}`, not a number",
                            mlctl_spec::suggest::quote(&n)
                        ));
                        None
                    }
                },
                None => {
                    problems.push(
                        "no merge request: CI_MERGE_REQUEST_IID is not set; run the job in a merge request pipeline (`rules: - if: $CI_PIPELINE_SOURCE == \"merge_request_event\"`), or pass --pr N"
                            .into(),
                    );
                    None
                }
            });
            (token, api, repo, number)
        }
    };
    match ctx {
        (Some(token), Some(api), Some(repo), Some(number)) if problems.is_empty() => Ok(Context {
            provider,
            api,
            token,
            repo,
            number,
        }),
        _ => Err(anyhow!(
            "cannot comment on {}:\n{}",
            provider.name(),
            problems
                .iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
    }
}

/// The API root from `value`: `https://`, or `http://` to this machine only (a token is not
/// sent in the clear across a network).
fn api_url(
    value: Option<String>,
    var: &str,
    unset: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    let Some(value) = value else {
        problems.push(format!("{var} is not set: {unset}"));
        return None;
    };
    let value = value.trim().trim_end_matches('/').to_string();
    let Ok(url) = reqwest::Url::parse(&value) else {
        problems.push(format!(
            "{var} is `{}`, not a URL",
            mlctl_spec::suggest::quote(&value)
        ));
        return None;
    };
    let loopback = matches!(
        url.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    match url.scheme() {
        "https" => Some(value),
        "http" if loopback => Some(value),
        "http" => {
            problems.push(format!(
                "{var} is `{}`: mlctl sends the token only over https (http only to 127.0.0.1)",
                mlctl_spec::suggest::quote(&value)
            ));
            None
        }
        other => {
            problems.push(format!("{var} has scheme `{other}`; use https"));
            None
        }
    }
}

/// The pull request's number from the event that started the workflow: `pull_request.number`
/// (`pull_request`, `pull_request_target`), or `issue.number` of an issue comment on a pull
/// request.
fn github_pr(path: Option<String>, problems: &mut Vec<String>) -> Option<u64> {
    const WHAT: &str = "run this step on a `pull_request` event, or pass --pr N";
    let Some(path) = path else {
        problems.push(format!(
            "no pull request number: GITHUB_EVENT_PATH is not set; {WHAT}"
        ));
        return None;
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!(
                "no pull request number: cannot read GITHUB_EVENT_PATH ({path}): {e}; {WHAT}"
            ));
            return None;
        }
    };
    let event: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let number = event["pull_request"]["number"].as_u64().or_else(|| {
        event["issue"]["pull_request"]
            .is_object()
            .then(|| event["issue"]["number"].as_u64())
            .flatten()
    });
    if number.is_none() {
        problems.push(format!(
            "no pull request number: the event in GITHUB_EVENT_PATH is not about a pull request; {WHAT}"
        ));
    }
    number
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn github_context_reads_the_event_and_every_missing_piece_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event.json");
        std::fs::write(&event, r#"{"pull_request": {"number": 7}}"#).unwrap();
        let ctx = from_env(
            Provider::Github,
            None,
            &env(&[
                ("GITHUB_TOKEN", "ghs_x"),
                ("GITHUB_API_URL", "https://api.github.com/"),
                ("GITHUB_REPOSITORY", "acme/iris"),
                ("GITHUB_EVENT_PATH", event.to_str().unwrap()),
            ]),
        )
        .unwrap();
        assert_eq!(
            (ctx.api.as_str(), ctx.repo.as_str(), ctx.number),
            ("https://api.github.com", "acme/iris", 7)
        );
        let err = from_env(Provider::Github, None, &env(&[]))
            .unwrap_err()
            .to_string();
        for var in [
            "GITHUB_TOKEN",
            "GITHUB_API_URL",
            "GITHUB_REPOSITORY",
            "GITHUB_EVENT_PATH",
        ] {
            assert!(err.contains(var), "{err}");
        }
    }

    #[test]
    fn a_token_goes_over_http_only_to_this_machine() {
        let e = env(&[
            ("GITLAB_TOKEN", "glpat-secret-value"),
            ("CI_API_V4_URL", "http://gitlab.example.com/api/v4"),
            ("CI_PROJECT_ID", "42"),
            ("CI_MERGE_REQUEST_IID", "3"),
        ]);
        let err = from_env(Provider::Gitlab, None, &e)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only over https"), "{err}");
        assert!(!err.contains("glpat-secret-value"), "{err}");
    }

    #[test]
    fn the_job_token_alone_is_refused_with_what_to_create_instead() {
        let e = env(&[
            ("CI_JOB_TOKEN", "job-token-value"),
            ("CI_API_V4_URL", "https://gitlab.example.com/api/v4"),
            ("CI_PROJECT_ID", "42"),
            ("CI_MERGE_REQUEST_IID", "3"),
        ]);
        let err = from_env(Provider::Gitlab, None, &e)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CI_JOB_TOKEN (which the job has) cannot write merge request notes"),
            "{err}"
        );
        assert!(!err.contains("job-token-value"), "{err}");
    }
}
