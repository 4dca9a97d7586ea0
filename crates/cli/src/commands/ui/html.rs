//! HTML pieces: escaping, the page frame, badges, pagination.

use std::fmt::Write;

/// Escapes text for HTML content and attribute values (the monitor report's escaping).
pub use mlctl_core::monitoring::report::escape as esc;

/// The pages of the navigation bar: (path, label).
const NAV: [(&str, &str); 7] = [
    ("/", "Overview"),
    ("/graph", "Graph"),
    ("/runs", "Runs"),
    ("/models", "Models"),
    ("/endpoints", "Endpoints"),
    ("/monitors", "Monitors"),
    ("/plan", "Plan"),
];

/// What the frame says about the project.
pub struct Frame<'a> {
    pub project: &'a str,
    pub target: &'a str,
    pub provider: &'a str,
    pub commit: &'a str,
    pub summary: &'a str,
    pub allow_actions: bool,
}

/// A whole page: the navigation bar (`active` highlighted), the project line, `body`.
pub fn page(frame: &Frame<'_>, active: &str, title: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in NAV {
        let _ = write!(
            nav,
            "<a href=\"{href}\"{}>{label}</a>",
            if href == active {
                " class=\"active\" aria-current=\"page\""
            } else {
                ""
            }
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · {p} · mlctl</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/assets/app.css\">\
<script src=\"/assets/app.js\" defer></script></head><body>\
<header><span class=\"brand\">mlctl</span><nav>{nav}</nav>\
<span class=\"where\" id=\"where\">project <b>{p}</b> · target <b>{tg}</b> ({pv}) · HEAD <code title=\"{sm}\">{c}</code> · \
<span class=\"mode {mc}\">{m}</span></span></header>\
<main><h1>{t}</h1>{body}</main></body></html>\n",
        t = esc(title),
        p = esc(frame.project),
        tg = esc(frame.target),
        pv = esc(frame.provider),
        sm = esc(frame.summary),
        c = esc(&frame.commit[..frame.commit.len().min(7)]),
        mc = if frame.allow_actions {
            "actions"
        } else {
            "readonly"
        },
        m = if frame.allow_actions {
            "actions allowed"
        } else {
            "read-only"
        },
    )
}

/// A status word as a coloured badge (`sync-…`/`health-…` classes).
pub fn badge(class: &str, word: &str) -> String {
    format!(
        "<span class=\"badge {} {}\">{}</span>",
        esc(class),
        esc(&format!(
            "{class}-{}",
            word.to_lowercase().replace(' ', "-")
        )),
        esc(word)
    )
}

/// Argo CD's sync words for mlctl's.
pub fn sync_word(sync: &str) -> &'static str {
    match sync {
        "synced" => "Synced",
        "missing" => "OutOfSync",
        _ => "OutOfSync",
    }
}

/// A health word, capitalised as Argo CD writes it.
pub fn health_word(health: &str) -> String {
    let mut c = health.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => "Unknown".into(),
    }
}

/// A number for a table: up to 4 decimals, trailing zeros dropped.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == v.trunc() && v.abs() < 1e12 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A JSON value for a table cell.
pub fn value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), num),
        other => other.to_string(),
    }
}

/// Page `page` (1-based) of `total` items, `per` a page: the range to show.
pub fn window(total: usize, per: usize, page: usize) -> std::ops::Range<usize> {
    let start = (page.max(1) - 1) * per;
    start.min(total)..(start + per).min(total)
}

/// Previous/next links for a paginated list; `link(page)` makes a page's address.
pub fn pager(total: usize, per: usize, page: usize, link: &dyn Fn(usize) -> String) -> String {
    let pages = total.div_ceil(per).max(1);
    let page = page.clamp(1, pages);
    if pages == 1 {
        return format!("<p class=\"pager\">{total} in all</p>");
    }
    let mut out = String::from("<p class=\"pager\">");
    if page > 1 {
        let _ = write!(
            out,
            "<a rel=\"prev\" href=\"{}\">← previous</a> ",
            esc(&link(page - 1))
        );
    }
    let _ = write!(out, "page {page} of {pages} ({total} in all)");
    if page < pages {
        let _ = write!(
            out,
            " <a rel=\"next\" href=\"{}\">next →</a>",
            esc(&link(page + 1))
        );
    }
    out.push_str("</p>");
    out
}

/// An action form (POST to `action`, the CSRF token and `fields` hidden), or, on a read-only
/// dashboard, the command that does it.
pub fn action(
    allow: bool,
    csrf: &str,
    action: &str,
    fields: &[(&str, &str)],
    label: &str,
    cli: &str,
) -> String {
    if !allow {
        return format!(
            "<span class=\"cli\" title=\"read-only dashboard: run this, or start mlctl ui --allow-actions\"><code>{}</code></span>",
            esc(cli)
        );
    }
    let mut hidden = String::new();
    for (k, v) in fields {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        );
    }
    format!(
        "<form method=\"post\" action=\"{}\" class=\"action\" data-confirm=\"{}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">{hidden}<button type=\"submit\">{}</button></form>",
        esc(action),
        esc(&format!("{label}: {cli}?")),
        esc(csrf),
        esc(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_what_breaks_out_of_text_and_attributes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn pages_are_windows_of_the_list() {
        assert_eq!(window(120, 50, 1), 0..50);
        assert_eq!(window(120, 50, 3), 100..120);
        assert_eq!(window(120, 50, 9), 120..120);
        let p = pager(120, 50, 2, &|n| format!("/runs?page={n}"));
        assert!(p.contains("page 2 of 3") && p.contains("page=1") && p.contains("page=3"));
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.953_333_3), "0.9533");
        assert_eq!(num(0.5), "0.5");
    }
}
