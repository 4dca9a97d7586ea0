//! The HTML report of a monitor: its latest evaluation and its drift over time, as one
//! self-contained page (inline CSS and SVG drawn here; no script, no network, no fonts to
//! fetch; a Content-Security-Policy forbids all three in case anything slipped through).
//!
//! Everything drawn comes from stored [`MonitorResult`]s: the bars from the latest result's
//! [`Bins`], the trend lines from the history. Every string that came from a user (monitor,
//! endpoint, feature and category names, notes, summaries) is HTML-escaped and clipped, and
//! the page is bounded: at most [`MAX_FEATURES`] features drawn (drifted ones first) and the
//! last [`MAX_HISTORY`] evaluations.

use super::{Bins, FeatureResult, MonitorResult, Verdict};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Most features drawn (the drifted ones first); the rest are counted.
pub const MAX_FEATURES: usize = 100;
/// Most evaluations a trend line shows (the newest).
pub const MAX_HISTORY: usize = 200;
/// Longest user text shown in full (longer is clipped with its size).
const MAX_TEXT: usize = 200;
/// Longest category label under a bar.
const MAX_LABEL: usize = 16;

const CHART_W: f64 = 640.0;
const BARS_H: f64 = 200.0;
const TREND_H: f64 = 150.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 44.0;

macro_rules! w {
    ($out:expr, $($t:tt)*) => {{
        // Writing to a String cannot fail.
        let _ = write!($out, $($t)*);
    }};
}

/// The report of `history`'s last result (the latest evaluation) with the drift over time of
/// each of its features; `None` when `history` is empty.
pub fn html(history: &[MonitorResult]) -> Option<String> {
    let latest = history.last()?;
    let history = &history[history.len().saturating_sub(MAX_HISTORY)..];
    let mut out = String::with_capacity(64 * 1024);
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Monitor {}: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        text(&latest.monitor),
        latest.verdict
    );
    header(&mut out, latest, history.len());
    out.push_str(&slo_panel(latest));
    out.push_str(&quality_panel(latest));
    features(&mut out, latest, history);
    w!(
        out,
        "<footer>mlctl {} · monitor report · the latest of {} stored evaluations shown; \
         <code>mlctl monitor history {}</code> lists them all.</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        history.len(),
        text(&latest.monitor)
    );
    Some(out)
}

/// The data-quality panel: each check of the latest evaluation (breached ones first), its
/// rate against its threshold, and a few offending values.
pub fn quality_panel(result: &MonitorResult) -> String {
    let mut out =
        String::from("<section class=\"panel quality\" id=\"quality\">\n<h2>Data quality</h2>\n");
    if result.quality.is_empty() {
        out.push_str("<p class=\"muted\">no quality checks in this evaluation</p>\n</section>\n");
        return out;
    }
    let breached = result.quality.iter().filter(|q| q.breached).count();
    w!(
        out,
        "<p class=\"muted\">{} checks, {breached} breached</p>\n<table>\n<tr><th>check</th><th>column</th><th>rate</th><th>threshold</th><th>verdict</th><th>examples</th></tr>\n",
        result.quality.len()
    );
    let mut rows: Vec<_> = result.quality.iter().collect();
    rows.sort_by_key(|q| !q.breached);
    for q in rows.iter().take(MAX_FEATURES) {
        w!(
            out,
            "<tr data-check=\"{}\" data-column=\"{}\"><td>{}</td><td><code>{}</code></td><td>{:.2}%</td><td>{:.2}%</td><td class=\"{}\">{}</td><td>{}</td></tr>\n",
            text(&q.check),
            text(&q.column),
            text(&q.check),
            text(&q.column),
            q.rate * 100.0,
            q.threshold * 100.0,
            if q.breached { "breached" } else { "ok" },
            if q.breached { "breached" } else { "ok" },
            text_max(&q.examples.join(", "), MAX_TEXT)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// The SLO panel: each objective the spec sets, what the window measured, its bound and
/// verdict, and the note that the figures are estimates from the captured sample.
pub fn slo_panel(result: &MonitorResult) -> String {
    let Some(slo) = &result.slo else {
        return "<section class=\"panel slo\" id=\"slo\">\n<h2>SLOs</h2>\n\
                <p class=\"muted\">no SLO configured</p>\n</section>\n"
            .to_string();
    };
    let mut out = String::from("<section class=\"panel slo\" id=\"slo\">\n<h2>SLOs</h2>\n");
    w!(
        out,
        "<p class=\"muted\">{} requests judged{}</p>\n<table>\n<tr><th>objective</th><th>measured</th><th>bound</th><th>verdict</th></tr>\n",
        slo.requests,
        slo.sampling_percent
            .map(|p| format!(", capture sampling {p}%"))
            .unwrap_or_default()
    );
    for o in &slo.objectives {
        w!(
            out,
            "<tr data-objective=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>\n",
            text(&o.objective),
            text(&o.objective),
            o.value
                .map_or("not measured".to_string(), |v| format!("{v:.4}")),
            o.limit,
            if o.breached { "breached" } else { "ok" },
            if o.breached { "breached" } else { "ok" }
        );
    }
    out.push_str("</table>\n");
    if let Some(n) = &slo.note {
        w!(
            out,
            "<p class=\"muted\">{}</p>\n",
            text_max(n, 4 * MAX_TEXT)
        );
    }
    out.push_str("</section>\n");
    out
}

fn header(out: &mut String, r: &MonitorResult, evaluations: usize) {
    w!(
        out,
        "<header class=\"panel\">\n<h1>Monitor <code>{}</code> \
         <span class=\"verdict {}\">{}</span></h1>\n<p class=\"summary\">{}</p>\n<dl>\n",
        text(&r.monitor),
        verdict_class(r.verdict),
        r.verdict,
        text_max(&r.summary, 4 * MAX_TEXT)
    );
    let mut row = |k: &str, v: String| w!(out, "<dt>{k}</dt><dd>{v}</dd>\n");
    row("endpoint", format!("<code>{}</code>", text(&r.endpoint)));
    row("window", text(&r.window));
    row("rows", format!("{} (minSamples {})", r.rows, r.min_samples));
    row("baseline", format!("<code>{}</code>", text(&r.baseline)));
    row("evaluated at", text(&r.at));
    row("commit", format!("<code>{}</code>", text(&r.commit)));
    if let Some(d) = &r.dataset_drift {
        row(
            "dataset drift",
            format!(
                "{}: {:.0}% of features drifted (the dataset drifts at {:.0}%)",
                if d.drifted { "yes" } else { "no" },
                d.drifted_share * 100.0,
                d.share * 100.0
            ),
        );
    }
    row("evaluations", evaluations.to_string());
    out.push_str("</dl>\n</header>\n");
}

fn features(out: &mut String, latest: &MonitorResult, history: &[MonitorResult]) {
    out.push_str("<section class=\"features\">\n<h2>Features</h2>\n");
    if latest.features.is_empty() {
        out.push_str(
            "<p class=\"muted\">No feature was judged in this evaluation (too few rows); \
             the trends below are from earlier ones.</p>\n",
        );
    }
    // The features of the latest evaluation; with none judged, those of the newest that had.
    let source = std::iter::once(latest)
        .chain(history.iter().rev())
        .find(|r| !r.features.is_empty());
    let mut shown: Vec<&FeatureResult> = source
        .map(|r| r.features.iter().collect())
        .unwrap_or_default();
    // Drifted first, so a cap never hides one.
    shown.sort_by_key(|f| !f.drifted);
    let hidden = shown.len().saturating_sub(MAX_FEATURES);
    shown.truncate(MAX_FEATURES);
    // Each evaluation's features by name: every drawn feature looks itself up in each.
    let index: Vec<Index<'_>> = history
        .iter()
        .map(|r| {
            let by_name = r.features.iter().map(|f| (f.feature.as_str(), f)).collect();
            (r.at.as_str(), by_name)
        })
        .collect();
    let latest_index: HashMap<&str, &FeatureResult> = latest
        .features
        .iter()
        .map(|f| (f.feature.as_str(), f))
        .collect();
    for f in shown {
        let current = latest_index.get(f.feature.as_str()).copied();
        feature(out, f, current, &index);
    }
    if hidden > 0 {
        w!(
            out,
            "<p class=\"muted\">{hidden} more features are not drawn (at most {MAX_FEATURES}); \
             <code>mlctl monitor history {} -o json</code> has them.</p>\n",
            text(&latest.monitor)
        );
    }
    out.push_str("</section>\n");
}

/// An evaluation's time and its features by name.
type Index<'a> = (&'a str, HashMap<&'a str, &'a FeatureResult>);

fn feature(
    out: &mut String,
    f: &FeatureResult,
    current: Option<&FeatureResult>,
    history: &[Index<'_>],
) {
    let name = text(&f.feature);
    let (class, badge) = match current {
        Some(c) if c.drifted => ("drifted", "drift"),
        Some(_) => ("ok", "ok"),
        None => ("unjudged", "not judged"),
    };
    w!(
        out,
        "<article class=\"panel feature {class}\" data-feature=\"{name}\">\n\
         <h3><code>{name}</code> <span class=\"badge {class}\">{badge}</span></h3>\n"
    );
    match current {
        Some(c) => {
            let judged = match (c.p_value, c.statistic) {
                (Some(p), stat) => format!(
                    "p-value {} (drift if &lt; {}), statistic {}",
                    num(p),
                    num(c.threshold),
                    stat.map_or("–".to_string(), num)
                ),
                (None, Some(s)) => format!("{} (drift if ≥ {})", num(s), num(c.threshold)),
                (None, None) => "not computable".to_string(),
            };
            w!(
                out,
                "<p class=\"figures\"><span class=\"method\">{}</span>: {judged} over {} rows</p>\n",
                text(&c.method),
                c.rows
            );
            if let Some(note) = &c.note {
                w!(out, "<p class=\"muted\">{}</p>\n", text(note));
            }
            match &c.bins {
                Some(bins) => out.push_str(&bars(&c.feature, bins)),
                None => out.push_str(
                    "<p class=\"muted\">No chart data in this result (a result stored before \
                     mlctl kept bins, or a feature the baseline lacks).</p>\n",
                ),
            }
        }
        None => out.push_str("<p class=\"muted\">Not judged in the latest evaluation.</p>\n"),
    }
    out.push_str(&trend(&f.feature, current.unwrap_or(f), history));
    out.push_str("</article>\n");
}

/// One group of bars: its label and the baseline's and live proportions (text unescaped).
struct Group {
    label: String,
    title: String,
    baseline: f64,
    live: f64,
}

fn groups_of(bins: &Bins) -> Vec<Group> {
    match bins {
        Bins::Numeric {
            edges,
            baseline,
            live,
            below,
            above,
        } => {
            let mut groups = Vec::new();
            let n = baseline
                .len()
                .min(live.len())
                .min(edges.len().saturating_sub(1));
            if *below > 0.0 {
                groups.push(Group {
                    label: format!("< {}", num(edges[0])),
                    title: format!("below the baseline's min {}", num(edges[0])),
                    baseline: 0.0,
                    live: *below,
                });
            }
            for i in 0..n {
                let close = if i + 1 == n { "]" } else { ")" };
                groups.push(Group {
                    label: num(edges[i]),
                    title: format!("[{}, {}{close}", num(edges[i]), num(edges[i + 1])),
                    baseline: baseline[i],
                    live: live[i],
                });
            }
            if *above > 0.0 {
                let max = edges.last().copied().unwrap_or(f64::NAN);
                groups.push(Group {
                    label: format!("> {}", num(max)),
                    title: format!("above the baseline's max {}", num(max)),
                    baseline: 0.0,
                    live: *above,
                });
            }
            groups
        }
        Bins::Categorical {
            categories,
            baseline,
            live,
            baseline_other,
            live_other,
        } => {
            let mut groups: Vec<Group> = categories
                .iter()
                .zip(baseline.iter().zip(live))
                .take(super::bins::MAX_BINS)
                .map(|(c, (b, l))| Group {
                    label: clipped(c, MAX_LABEL),
                    title: clipped(c, MAX_TEXT),
                    baseline: *b,
                    live: *l,
                })
                .collect();
            if *baseline_other > 0.0 || *live_other > 0.0 {
                groups.push(Group {
                    label: "(other)".to_string(),
                    title: "every other value".to_string(),
                    baseline: *baseline_other,
                    live: *live_other,
                });
            }
            groups
        }
    }
}

/// Side-by-side bars of the baseline's and the live proportions per bin.
fn bars(feature: &str, bins: &Bins) -> String {
    let groups = groups_of(bins);
    let mut svg = String::new();
    let kind = match bins {
        Bins::Numeric { .. } => "numeric",
        Bins::Categorical { .. } => "categorical",
    };
    w!(
        svg,
        "<svg class=\"bars\" data-feature=\"{f}\" data-kind=\"{kind}\" viewBox=\"0 0 {CHART_W} {BARS_H}\" \
         width=\"{CHART_W}\" height=\"{BARS_H}\" role=\"img\" \
         aria-label=\"baseline and live proportions of {f}\">\n",
        f = text(feature)
    );
    legend(
        &mut svg,
        &[("baseline", "baseline"), ("live", "live window")],
    );
    let top = groups
        .iter()
        .map(|g| g.baseline.max(g.live))
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top } else { 1.0 };
    let plot_h = BARS_H - TOP - BOTTOM;
    let plot_w = CHART_W - LEFT - RIGHT;
    axes(&mut svg, BARS_H);
    w!(
        svg,
        "<text class=\"tick\" x=\"{x}\" y=\"{y}\" text-anchor=\"end\">{p}</text>\n\
         <text class=\"tick\" x=\"{x}\" y=\"{y0}\" text-anchor=\"end\">0%</text>\n",
        x = LEFT - 4.0,
        y = TOP + 4.0,
        y0 = BARS_H - BOTTOM,
        p = percent(top)
    );
    let n = groups.len().max(1) as f64;
    let step = plot_w / n;
    let bar = step * 0.4;
    let every = (groups.len() / 8).max(1);
    for (i, g) in groups.iter().enumerate() {
        let x0 = LEFT + step * i as f64 + step * 0.1;
        for (j, (class, value)) in [("baseline", g.baseline), ("live", g.live)]
            .into_iter()
            .enumerate()
        {
            let h = value / top * plot_h;
            w!(
                svg,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" \
                 data-bin=\"{}\" data-value=\"{value}\"><title>{class} {}: {}</title></rect>\n",
                x0 + bar * j as f64,
                BARS_H - BOTTOM - h,
                escape(&g.label),
                escape(&g.title),
                percent(value)
            );
        }
        if i % every == 0 || (i + 1 == groups.len() && matches!(bins, Bins::Categorical { .. })) {
            w!(
                svg,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" \
                 transform=\"rotate(-35 {:.1} {:.1})\">{}</text>\n",
                x0 + bar,
                BARS_H - BOTTOM + 14.0,
                x0 + bar,
                BARS_H - BOTTOM + 14.0,
                escape(&g.label)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// The feature's score (p-value of a test, else its statistic) per evaluation, with the
/// threshold as a dashed line. A test's p-values are on a log scale.
fn trend(feature: &str, current: &FeatureResult, history: &[Index<'_>]) -> String {
    let is_test = current.p_value.is_some();
    let points: Vec<(usize, &str, Option<f64>, bool)> = history
        .iter()
        .enumerate()
        .map(|(i, (at, by_name))| {
            let f = by_name.get(feature);
            let score = f.and_then(|f| if is_test { f.p_value } else { f.statistic });
            (
                i,
                *at,
                score.filter(|s| s.is_finite()),
                f.is_some_and(|f| f.drifted),
            )
        })
        .collect();
    let values: Vec<f64> = points.iter().filter_map(|p| p.2).collect();
    let threshold = current.threshold;
    // Maps a score to a height fraction (0 bottom, 1 top).
    let (lo, hi, scale): (f64, f64, Box<dyn Fn(f64) -> f64>) = if is_test {
        const FLOOR: f64 = 1e-16;
        let min = values
            .iter()
            .copied()
            .chain([threshold / 10.0])
            .fold(1.0, f64::min)
            .max(FLOOR);
        let lo = min.log10().floor();
        (
            10f64.powf(lo),
            1.0,
            Box::new(move |v: f64| (v.max(FLOOR).log10() - lo) / -lo),
        )
    } else {
        let hi = values
            .iter()
            .copied()
            .chain([threshold])
            .fold(0.0, f64::max)
            * 1.15;
        let hi = if hi > 0.0 { hi } else { 1.0 };
        (0.0, hi, Box::new(move |v: f64| v / hi))
    };
    let label = if is_test { "p-value" } else { "statistic" };
    let plot_h = TREND_H - TOP - BOTTOM;
    let plot_w = CHART_W - LEFT - RIGHT;
    let y = |v: f64| TOP + plot_h * (1.0 - scale(v).clamp(0.0, 1.0));
    let n = points.len();
    let x = |i: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let mut svg = String::new();
    w!(
        svg,
        "<svg class=\"trend\" data-feature=\"{f}\" data-score=\"{label}\" viewBox=\"0 0 {CHART_W} {TREND_H}\" \
         width=\"{CHART_W}\" height=\"{TREND_H}\" role=\"img\" aria-label=\"{label} of {f} per evaluation\">\n",
        f = text(feature)
    );
    legend(&mut svg, &[("point", label), ("threshold", "threshold")]);
    axes(&mut svg, TREND_H);
    for (v, anchor) in [(hi, TOP + 4.0), (lo, TREND_H - BOTTOM)] {
        w!(
            svg,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{anchor:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 4.0,
            num(v)
        );
    }
    w!(
        svg,
        "<line class=\"threshold\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" \
         data-value=\"{threshold}\"><title>threshold {t}</title></line>\n\
         <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{t}</text>\n",
        CHART_W - RIGHT,
        CHART_W - RIGHT,
        y(threshold) - 3.0,
        t = num(threshold),
        ty = y(threshold)
    );
    // The line, broken where an evaluation has no score (too few rows).
    let mut segment: Vec<String> = Vec::new();
    let flush = |segment: &mut Vec<String>, svg: &mut String| {
        if segment.len() > 1 {
            w!(
                svg,
                "<polyline class=\"line\" points=\"{}\"/>\n",
                segment.join(" ")
            );
        }
        segment.clear();
    };
    for &(i, _, score, _) in &points {
        match score {
            Some(v) => segment.push(format!("{:.1},{:.1}", x(i), y(v))),
            None => flush(&mut segment, &mut svg),
        }
    }
    flush(&mut segment, &mut svg);
    for &(i, at, score, drifted) in &points {
        if let Some(v) = score {
            w!(
                svg,
                "<circle class=\"point{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" data-at=\"{}\" \
                 data-value=\"{v}\"><title>{}: {label} {}</title></circle>\n",
                if drifted { " drifted" } else { "" },
                x(i),
                y(v),
                text(at),
                text(at),
                num(v)
            );
        }
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        w!(
            svg,
            "<text class=\"tick\" x=\"{LEFT}\" y=\"{b:.1}\">{}</text>\n\
             <text class=\"tick\" x=\"{:.1}\" y=\"{b:.1}\" text-anchor=\"end\">{}</text>\n",
            text(short_time(first.1)),
            CHART_W - RIGHT,
            text(short_time(last.1)),
            b = TREND_H - BOTTOM + 16.0
        );
    }
    if values.is_empty() {
        w!(
            svg,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no {label} yet</text>\n",
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn axes(svg: &mut String, height: f64) {
    w!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{b}\"/>\n\
         <line class=\"axis\" x1=\"{LEFT}\" x2=\"{r}\" y1=\"{b}\" y2=\"{b}\"/>\n",
        b = height - BOTTOM,
        r = CHART_W - RIGHT
    );
}

fn legend(svg: &mut String, entries: &[(&str, &str)]) {
    let mut x = CHART_W - RIGHT - 200.0;
    for (class, label) in entries {
        w!(
            svg,
            "<rect class=\"{class} key\" x=\"{x}\" y=\"4\" width=\"10\" height=\"10\"/>\
             <text class=\"tick\" x=\"{}\" y=\"13\">{label}</text>\n",
            x + 14.0
        );
        x += 100.0;
    }
}

/// An RFC 3339 time to the second (`2026-01-02T03:04:05`); anything else as it is.
fn short_time(at: &str) -> &str {
    let b = at.as_bytes();
    if b.len() >= 19 && b[10] == b'T' && at.is_char_boundary(19) {
        &at[..19]
    } else {
        at
    }
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Healthy => "healthy",
        Verdict::Breached => "breached",
        Verdict::InsufficientData => "insufficient",
    }
}

/// A number as a person reads it: 4 significant digits, scientific when tiny or huge.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".to_string();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{x:.2e}");
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// `s` escaped for HTML text and attribute values, clipped at [`MAX_TEXT`] bytes.
fn text(s: &str) -> String {
    text_max(s, MAX_TEXT)
}

fn text_max(s: &str, max: usize) -> String {
    escape(&mlctl_spec::suggest::clip(s, max))
}

/// `s` clipped at `max` characters with `…` (not escaped).
fn clipped(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// Escapes the five characters that matter in HTML text and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:720px;padding:16px;color:#1d2430;background:#f6f7f9}
.panel{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 16px;margin:12px 0}
h1{font-size:1.35em;margin:0 0 8px} h2{font-size:1.1em;margin:16px 0 4px} h3{font-size:1em;margin:0 0 6px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:8px 0 0} dt{color:#5b6575} dd{margin:0}
.verdict,.badge{font-size:.8em;padding:2px 8px;border-radius:10px;color:#fff;vertical-align:middle}
.healthy,.badge.ok{background:#2e7d32} .breached,.badge.drifted{background:#c0392b}
.insufficient,.badge.unjudged{background:#7a8391}
.feature.drifted{border-left:4px solid #c0392b}
.muted{color:#5b6575;font-size:.9em} .method{font-family:ui-monospace,monospace}
svg{display:block;max-width:100%;height:auto;margin:6px 0}
svg .baseline{fill:#8aa4c8} svg .live{fill:#e8833a}
svg .axis{stroke:#9aa3af;stroke-width:1}
svg .tick{font-size:10px;fill:#5b6575}
svg .threshold{stroke:#c0392b;stroke-dasharray:4 3;stroke-width:1}
svg rect.threshold{fill:#c0392b;stroke:none}
svg .line{fill:none;stroke:#3b6fb6;stroke-width:1.5}
svg .point{fill:#3b6fb6} svg .point.drifted{fill:#c0392b}
footer{color:#5b6575;font-size:.8em;margin-top:16px}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::{DatasetDrift, FeatureResult};
    use crate::state::FORMAT_VERSION;

    fn feature(name: &str, drifted: bool, p: f64, bins: Bins) -> FeatureResult {
        FeatureResult {
            feature: name.to_string(),
            method: "ks".into(),
            statistic: Some(0.3),
            p_value: Some(p),
            threshold: 0.05,
            drifted,
            rows: 300,
            note: None,
            bins: Some(bins),
        }
    }

    fn numeric(live_first: f64) -> Bins {
        Bins::Numeric {
            edges: vec![1.0, 2.0, 3.0],
            baseline: vec![0.5, 0.5],
            live: vec![live_first, 1.0 - live_first - 0.125],
            below: 0.0,
            above: 0.125,
        }
    }

    fn result(at: &str, features: Vec<FeatureResult>) -> MonitorResult {
        let breached = features.iter().any(|f| f.drifted);
        MonitorResult {
            format_version: FORMAT_VERSION,
            monitor: "iris-drift".into(),
            endpoint: "iris".into(),
            at: at.into(),
            commit: "abc1234".into(),
            window: "last 300 records".into(),
            rows: 300,
            min_samples: 100,
            baseline: "iris@0123456789ab".into(),
            verdict: if breached {
                Verdict::Breached
            } else {
                Verdict::Healthy
            },
            summary: "drift in 1 of 2 features (petal_length)".into(),
            quality: Vec::new(),
            slo: None,
            features,
            dataset_drift: Some(DatasetDrift {
                drifted: false,
                drifted_share: 0.5,
                share: 0.5,
            }),
        }
    }

    /// The opening tag of the `class` SVG of `feature`, and everything up to its end.
    fn svg_of<'a>(page: &'a str, class: &str, feature: &str) -> &'a str {
        let open = format!("<svg class=\"{class}\" data-feature=\"{feature}\"");
        let start = page
            .find(&open)
            .unwrap_or_else(|| panic!("no {open} in the page"));
        let end = start + page[start..].find("</svg>").unwrap();
        &page[start..end]
    }

    #[test]
    fn every_feature_gets_a_bar_chart_with_its_proportions_and_a_trend_of_its_p_value() {
        let history = vec![
            result(
                "2026-01-01T00:00:00Z",
                vec![
                    feature("sepal_width", false, 0.8, numeric(0.5)),
                    feature("petal_length", false, 0.6, numeric(0.4)),
                ],
            ),
            result(
                "2026-01-02T00:00:00Z",
                vec![
                    feature("sepal_width", false, 0.7, numeric(0.5)),
                    feature("petal_length", true, 1e-9, numeric(0.25)),
                ],
            ),
        ];
        let page = html(&history).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<span class=\"verdict breached\">breached</span>"));
        for needle in [
            "iris-drift",
            "iris@0123456789ab",
            "abc1234",
            "last 300 records",
        ] {
            assert!(page.contains(needle), "the header names {needle}");
        }

        let bars = svg_of(&page, "bars", "petal_length");
        assert!(bars.contains("class=\"baseline\""));
        assert!(
            bars.contains("data-value=\"0.25\""),
            "the live share: {bars}"
        );
        assert!(
            bars.contains("data-value=\"0.5\""),
            "the baseline share: {bars}"
        );
        assert!(
            bars.contains("data-bin=\"&gt; 3\""),
            "values above the baseline: {bars}"
        );
        assert_eq!(bars.matches("<rect class=\"live\"").count(), 3);

        let trend = svg_of(&page, "trend", "petal_length");
        assert!(trend.contains("data-score=\"p-value\""));
        assert_eq!(
            trend.matches("<circle").count(),
            2,
            "one point per evaluation"
        );
        assert!(trend.contains("class=\"point drifted\""));
        assert!(trend.contains("class=\"threshold\""));
        assert!(trend.contains("data-value=\"0.05\""));
        svg_of(&page, "bars", "sepal_width");
        // The drifted feature comes first.
        assert!(
            page.find("data-feature=\"petal_length\"") < page.find("data-feature=\"sepal_width\"")
        );
        assert!(page.contains("no SLO configured"));
    }

    #[test]
    fn the_slo_panel_shows_each_objective_measured_against_its_bound() {
        let mut r = result("2026-12-01T10:00:00Z", Vec::new());
        assert!(slo_panel(&r).contains("no SLO configured"));
        r.slo = Some(crate::monitoring::slo::SloResult {
            requests: 250,
            sampling_percent: Some(100.0),
            objectives: vec![crate::monitoring::slo::Objective {
                objective: "p99LatencyMs".into(),
                value: Some(3.5),
                limit: 1.0,
                breached: true,
                note: None,
            }],
            note: Some("estimated from the captured sample".into()),
        });
        let panel = slo_panel(&r);
        assert!(
            panel.contains("<tr data-objective=\"p99LatencyMs\">"),
            "{panel}"
        );
        assert!(
            panel.contains("<td>3.5000</td><td>1</td><td class=\"breached\">breached</td>"),
            "{panel}"
        );
        assert!(panel.contains("250 requests judged"), "{panel}");
    }

    #[test]
    fn the_quality_panel_lists_breached_checks_first_with_their_examples() {
        let mut r = result("2026-12-01T10:00:00Z", Vec::new());
        assert!(quality_panel(&r).contains("no quality checks"));
        let check =
            |check: &str, column: &str, breached: bool| crate::monitoring::quality::QualityResult {
                check: check.into(),
                column: column.into(),
                rate: if breached { 0.5 } else { 0.0 },
                threshold: 0.01,
                breached,
                of: 100,
                examples: if breached {
                    vec!["<red>".into()]
                } else {
                    Vec::new()
                },
                note: None,
            };
        r.quality = vec![
            check("completeness", "a", false),
            check("extra_column", "colour", true),
        ];
        let panel = quality_panel(&r);
        let extra = panel.find("data-check=\"extra_column\"").unwrap();
        let complete = panel.find("data-check=\"completeness\"").unwrap();
        assert!(extra < complete, "breached first: {panel}");
        assert!(
            panel.contains("<td>50.00%</td><td>1.00%</td><td class=\"breached\">"),
            "{panel}"
        );
        assert!(
            panel.contains("&lt;red&gt;") && !panel.contains("<red>"),
            "{panel}"
        );
    }

    #[test]
    fn hostile_names_are_escaped_everywhere() {
        let evil = "<script>alert('x')</script>\"&";
        let cats = Bins::Categorical {
            categories: vec![evil.to_string()],
            baseline: vec![1.0],
            live: vec![0.5],
            baseline_other: 0.0,
            live_other: 0.5,
        };
        let mut r = result(
            "<img src=x onerror=alert(1)>",
            vec![feature(evil, true, 0.01, cats)],
        );
        r.monitor = evil.into();
        r.endpoint = evil.into();
        r.summary = evil.into();
        let page = html(&[r]).unwrap();
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
        assert!(page.contains("data-feature=\"&lt;script&gt;"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = html(&[result(
            "2026-01-01T00:00:00Z",
            vec![feature("x", false, 0.5, numeric(0.5))],
        )])
        .unwrap();
        for banned in ["<script", "http://", "https://", "@import", "<link", "url("] {
            assert!(!page.contains(banned), "the page has {banned}");
        }
        assert!(page.contains("Content-Security-Policy"));
    }

    #[test]
    fn the_page_is_bounded_in_features_and_history() {
        let many: Vec<FeatureResult> = (0..150)
            .map(|i| feature(&format!("f{i}"), i == 149, 0.5, numeric(0.5)))
            .collect();
        let history: Vec<MonitorResult> = (0..300)
            .map(|i| result(&format!("t{i}"), many.clone()))
            .collect();
        let page = html(&history).unwrap();
        assert_eq!(page.matches("<svg class=\"bars\"").count(), MAX_FEATURES);
        assert!(
            page.contains("data-feature=\"f149\""),
            "a drifted feature is never cut"
        );
        assert!(page.contains("50 more features are not drawn"));
        let trend = svg_of(&page, "trend", "f0");
        assert_eq!(trend.matches("<circle").count(), MAX_HISTORY);
        assert!(trend.contains("data-at=\"t299\"") && !trend.contains("data-at=\"t99\""));
    }

    #[test]
    fn a_result_with_too_few_rows_still_shows_the_trends_of_earlier_ones() {
        let mut latest = result("t1", Vec::new());
        latest.verdict = Verdict::InsufficientData;
        let history = vec![
            result("t0", vec![feature("x", false, 0.5, numeric(0.5))]),
            latest,
        ];
        let page = html(&history).unwrap();
        assert!(page.contains("No feature was judged"));
        assert!(page.contains("Not judged in the latest evaluation"));
        assert_eq!(svg_of(&page, "trend", "x").matches("<circle").count(), 1);
        assert!(html(&[]).is_none());
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(num(0.05), "0.05");
        assert_eq!(num(4.3), "4.3");
        assert_eq!(num(1e-9), "1.00e-9");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(f64::NAN), "–");
        assert_eq!(
            short_time("2026-01-02T03:04:05.123456Z"),
            "2026-01-02T03:04:05"
        );
        assert_eq!(short_time("t1"), "t1");
    }
}
