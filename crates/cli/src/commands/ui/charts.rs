//! Charts as inline SVG, drawn on the server: they need no script and no network. Colours
//! come from classes in `app.css`; each chart's elements carry `data-*` attributes with the
//! values drawn, which the browser tests read.

use super::html::{esc, num};
use std::fmt::Write;

/// Series colours (`s0`..`s7` in app.css).
fn series_class(i: usize) -> String {
    format!("s{}", i % 8)
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    (lo, hi)
}

/// One point of a line chart: its position along x (0-based), its value, whether to flag it.
pub struct Point {
    pub x: usize,
    pub y: f64,
    pub flagged: bool,
    pub title: String,
}

/// A line chart over `x_labels.len()` steps: one line per series, an optional dashed
/// threshold, flagged points drawn as `point flagged`.
pub fn line_chart(
    attrs: &str,
    x_labels: &[String],
    series: &[(String, Vec<Point>)],
    threshold: Option<f64>,
    y_label: &str,
) -> String {
    let (w, h, l, r, t, b) = (560.0, 230.0, 56.0, 16.0, 26.0, 36.0);
    let (lo, hi) = bounds(
        series
            .iter()
            .flat_map(|(_, ps)| ps.iter().map(|p| p.y))
            .chain(threshold),
    );
    let (lo, hi) = (
        lo.min(0.0_f64.max(lo - (hi - lo) * 0.1)),
        hi + (hi - lo) * 0.1,
    );
    let steps = x_labels.len().max(2) - 1;
    let xs = |x: usize| l + (w - l - r) * x as f64 / steps as f64;
    let ys = |y: f64| t + (h - t - b) * (1.0 - (y - lo) / (hi - lo));
    let mut svg = format!(
        "<svg class=\"chart line\" {attrs} viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        esc(y_label)
    );
    // Axes and a few y ticks.
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
        h - b,
        w - r,
        h - b
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let y = ys(v);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{l}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - r,
            l - 4.0,
            y + 4.0,
            esc(&num((v * 1000.0).round() / 1000.0))
        );
    }
    // At most 6 x labels.
    let every = x_labels.len().div_ceil(6).max(1);
    for (i, label) in x_labels.iter().enumerate() {
        if i % every == 0 || i + 1 == x_labels.len() {
            let _ = write!(
                svg,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{}\">{}</text>",
                xs(i),
                h - b + 16.0,
                if i == 0 {
                    "start"
                } else if i + 1 == x_labels.len() {
                    "end"
                } else {
                    "middle"
                },
                esc(label)
            );
        }
    }
    if let Some(th) = threshold {
        let _ = write!(
            svg,
            "<line class=\"threshold\" data-threshold=\"{th}\" x1=\"{l}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"><title>threshold {}</title></line>",
            w - r,
            esc(&num(th)),
            y = ys(th)
        );
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let class = series_class(i);
        let d: Vec<String> = points
            .iter()
            .filter(|p| p.y.is_finite())
            .map(|p| format!("{:.1},{:.1}", xs(p.x), ys(p.y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline class=\"series {class}\" data-series=\"{}\" points=\"{}\"/>",
            esc(name),
            d.join(" ")
        );
        for p in points.iter().filter(|p| p.y.is_finite()) {
            let _ = write!(
                svg,
                "<circle class=\"point {class}{}\" data-value=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\"><title>{}</title></circle>",
                if p.flagged { " flagged" } else { "" },
                p.y,
                xs(p.x),
                ys(p.y),
                esc(&p.title)
            );
        }
    }
    let _ = write!(
        svg,
        "<text class=\"label\" x=\"4\" y=\"12\">{}</text></svg>",
        esc(y_label)
    );
    if series.len() > 1 {
        svg.push_str(&legend(series.iter().map(|(n, _)| n.as_str())));
    }
    svg
}

fn legend<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("<p class=\"legend\">");
    for (i, n) in names.enumerate() {
        let _ = write!(
            out,
            "<span><svg width=\"12\" height=\"12\"><rect class=\"{}\" width=\"12\" height=\"12\"/></svg> {}</span> ",
            series_class(i),
            esc(n)
        );
    }
    out.push_str("</p>");
    out
}

/// Horizontal bars, one per `(label, value)`.
pub fn bars(attrs: &str, title: &str, data: &[(String, f64)]) -> String {
    let (w, row, l) = (420.0, 22.0, 120.0);
    let h = row * data.len() as f64 + 24.0;
    let (lo, hi) = bounds(data.iter().map(|(_, v)| *v));
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
    let x = |v: f64| l + (w - l - 60.0) * (v - lo) / span;
    let mut svg = format!(
        "<svg class=\"chart bars\" {attrs} viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\"><text class=\"label\" x=\"4\" y=\"14\">{}</text>",
        esc(title),
        esc(title)
    );
    for (i, (label, v)) in data.iter().enumerate() {
        let y = 22.0 + row * i as f64;
        let (x0, x1) = (x(0.0_f64.max(lo)), x(*v));
        let _ = write!(
            svg,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
<rect class=\"bar {}\" data-label=\"{}\" data-value=\"{v}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {}</title></rect>\
<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            l - 6.0,
            y + 13.0,
            esc(label),
            series_class(i),
            esc(label),
            x0.min(x1),
            (x1 - x0).abs().max(1.0),
            row - 6.0,
            esc(label),
            esc(&num(*v)),
            x0.max(x1) + 4.0,
            y + 13.0,
            esc(&num(*v))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A parallel-coordinates chart: one vertical axis per name, one line per item through its
/// values (a missing value breaks the line there). The last axis is the objective.
pub fn parallel(attrs: &str, axes: &[String], lines: &[(String, Vec<Option<f64>>)]) -> String {
    let (w, h, t, b) = (640.0, 260.0, 24.0, 30.0);
    let n = axes.len().max(2);
    let ax = |i: usize| 40.0 + (w - 80.0) * i as f64 / (n - 1) as f64;
    let ranges: Vec<(f64, f64)> = (0..axes.len())
        .map(|i| {
            bounds(
                lines
                    .iter()
                    .filter_map(|(_, vs)| vs.get(i).copied().flatten()),
            )
        })
        .collect();
    let y = |i: usize, v: f64| {
        let (lo, hi) = ranges[i];
        t + (h - t - b) * (1.0 - (v - lo) / (hi - lo))
    };
    let mut svg = format!(
        "<svg class=\"chart parallel\" {attrs} viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"parallel coordinates\">"
    );
    for (i, name) in axes.iter().enumerate() {
        let (lo, hi) = ranges[i];
        let _ = write!(
            svg,
            "<line class=\"axis\" data-axis=\"{}\" x1=\"{x:.1}\" y1=\"{t}\" x2=\"{x:.1}\" y2=\"{}\"/>\
<text class=\"label\" x=\"{x:.1}\" y=\"14\" text-anchor=\"middle\">{}</text>\
<text class=\"tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            esc(name),
            h - b,
            esc(name),
            h - b + 14.0,
            esc(&format!("{}…{}", num(lo), num(hi))),
            x = ax(i)
        );
    }
    for (k, (label, values)) in lines.iter().enumerate() {
        let mut d = String::new();
        let mut pen = false;
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) if v.is_finite() => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen { "L" } else { "M" },
                        ax(i),
                        y(i, *v)
                    );
                    pen = true;
                }
                _ => pen = false,
            }
        }
        let _ = write!(
            svg,
            "<path class=\"pline {}\" data-label=\"{}\" d=\"{}\"><title>{}</title></path>",
            series_class(k),
            esc(label),
            d.trim_end(),
            esc(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A node of the resource graph.
pub struct Node {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub href: String,
    /// `health-…` and `sync-…` classes.
    pub class: String,
    pub status: String,
}

/// The resource DAG, left to right by depth: a node's column is one past its deepest
/// dependency's. `edges` are (from, to) indexes into `nodes`, from a dependency to its user.
pub fn dag(nodes: &[Node], edges: &[(usize, usize)]) -> String {
    let mut depth = vec![0usize; nodes.len()];
    // Longest path from a root; at most n rounds on an acyclic graph (the spec refuses cycles).
    for _ in 0..nodes.len() {
        let mut changed = false;
        for &(a, b) in edges {
            if depth[b] < depth[a] + 1 {
                depth[b] = depth[a] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows = vec![0usize; nodes.len()];
    let mut used = std::collections::BTreeMap::<usize, usize>::new();
    for (i, d) in depth.iter().enumerate() {
        let r = used.entry(*d).or_default();
        rows[i] = *r;
        *r += 1;
    }
    let (nw, nh, gx, gy) = (190.0, 48.0, 70.0, 22.0);
    let cols = depth.iter().max().map_or(1, |m| m + 1);
    let tallest = used.values().max().copied().unwrap_or(1);
    let w = cols as f64 * (nw + gx) + 20.0;
    let h = tallest as f64 * (nh + gy) + 20.0;
    let pos = |i: usize| {
        (
            10.0 + depth[i] as f64 * (nw + gx),
            10.0 + rows[i] as f64 * (nh + gy),
        )
    };
    let mut svg = format!(
        "<svg class=\"dag\" id=\"dag\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"resource graph\">\
<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" class=\"arrowhead\"/></marker></defs>"
    );
    for &(a, b) in edges {
        let ((ax, ay), (bx, by)) = (pos(a), pos(b));
        let (x1, y1, x2, y2) = (ax + nw, ay + nh / 2.0, bx, by + nh / 2.0);
        let mid = (x1 + x2) / 2.0;
        let _ = write!(
            svg,
            "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}\" marker-end=\"url(#arrow)\"/>",
            esc(&nodes[a].id),
            esc(&nodes[b].id)
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let name: String = if n.name.chars().count() > 22 {
            n.name.chars().take(21).collect::<String>() + "…"
        } else {
            n.name.clone()
        };
        let _ = write!(
            svg,
            "<a href=\"{}\"><g class=\"node {}\" data-id=\"{}\"><title>{} — {}</title>\
<rect x=\"{x:.1}\" y=\"{y:.1}\" rx=\"6\" width=\"{nw}\" height=\"{nh}\"/>\
<text class=\"kind\" x=\"{:.1}\" y=\"{:.1}\">{}</text><text class=\"name\" x=\"{:.1}\" y=\"{:.1}\">{}</text>\
<text class=\"status\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text></g></a>",
            esc(&n.href),
            esc(&n.class),
            esc(&n.id),
            esc(&n.id),
            esc(&n.status),
            x + 10.0,
            y + 17.0,
            esc(&n.kind),
            x + 10.0,
            y + 36.0,
            esc(&name),
            x + nw - 8.0,
            y + 17.0,
            esc(&n.status)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A traffic split as one stacked bar: `(label, weight)` per variant.
pub fn split(variants: &[(String, u32)]) -> String {
    let total: u32 = variants.iter().map(|(_, w)| *w).sum();
    let (w, h) = (480.0, 34.0);
    let mut svg = format!(
        "<svg class=\"chart split\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"traffic split\">"
    );
    let mut x = 0.0;
    for (i, (label, weight)) in variants.iter().enumerate() {
        let share = if total == 0 {
            0.0
        } else {
            f64::from(*weight) / f64::from(total)
        };
        let width = w * share;
        let _ = write!(
            svg,
            "<rect class=\"bar {}\" data-label=\"{}\" data-share=\"{:.4}\" x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"{h}\"><title>{}: {:.0}%</title></rect>",
            series_class(i),
            esc(label),
            share,
            esc(label),
            share * 100.0
        );
        if width > 60.0 {
            let _ = write!(
                svg,
                "<text class=\"inbar\" x=\"{:.1}\" y=\"22\">{} {:.0}%</text>",
                x + 8.0,
                esc(label),
                share * 100.0
            );
        }
        x += width;
    }
    svg.push_str("</svg>");
    svg
}

/// Who was in production when: one row per version, a bar per interval, over [t0, t1]
/// (seconds since the epoch).
pub fn timeline(
    rows: &[(String, Vec<(f64, f64)>)],
    t0: f64,
    t1: f64,
    labels: (&str, &str),
) -> String {
    let (w, row, l) = (640.0, 24.0, 60.0);
    let h = row * rows.len() as f64 + 30.0;
    let span = if t1 > t0 { t1 - t0 } else { 1.0 };
    let x = |t: f64| l + (w - l - 10.0) * (t - t0) / span;
    let mut svg = format!(
        "<svg class=\"chart timeline\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"production timeline\">"
    );
    for (i, (label, spans)) in rows.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let _ = write!(
            svg,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            l - 6.0,
            y + 14.0,
            esc(label)
        );
        for (a, b) in spans {
            let _ = write!(
                svg,
                "<rect class=\"bar {}\" data-label=\"{}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{} in production</title></rect>",
                series_class(i),
                esc(label),
                x(*a),
                (x(*b) - x(*a)).max(2.0),
                row - 6.0,
                esc(label)
            );
        }
    }
    let _ = write!(
        svg,
        "<text class=\"tick\" x=\"{l}\" y=\"{:.1}\">{}</text><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text></svg>",
        h - 6.0,
        esc(labels.0),
        w - 10.0,
        h - 6.0,
        esc(labels.1)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_puts_each_resource_one_column_past_its_deepest_dependency() {
        let node = |id: &str| Node {
            id: id.into(),
            kind: id.split('/').next().unwrap().into(),
            name: id.split('/').nth(1).unwrap().into(),
            href: "/".into(),
            class: String::new(),
            status: String::new(),
        };
        let nodes = [
            node("Dataset/d"),
            node("TrainingJob/t"),
            node("Model/m"),
            node("Endpoint/e"),
        ];
        // d -> t -> m -> e, and d -> e directly: e still sits in the fourth column.
        let svg = dag(&nodes, &[(0, 1), (1, 2), (2, 3), (0, 3)]);
        assert_eq!(svg.matches("class=\"edge\"").count(), 4);
        let x_of = |id: &str| {
            let at = svg.find(&format!("data-id=\"{id}\"")).unwrap();
            let rest = &svg[at..];
            let x = rest.find("x=\"").unwrap() + 3;
            rest[x..x + rest[x..].find('"').unwrap()]
                .parse::<f64>()
                .unwrap()
        };
        assert!(x_of("Dataset/d") < x_of("TrainingJob/t"));
        assert!(x_of("Model/m") < x_of("Endpoint/e"));
        assert!((x_of("Endpoint/e") - 3.0 * 260.0 - 10.0).abs() < 1e-6);
    }

    #[test]
    fn a_split_gives_each_variant_its_share() {
        let svg = split(&[("v1".into(), 90), ("v2".into(), 10)]);
        assert!(svg.contains("data-label=\"v1\" data-share=\"0.9000\""));
        assert!(svg.contains("data-label=\"v2\" data-share=\"0.1000\""));
    }
}
