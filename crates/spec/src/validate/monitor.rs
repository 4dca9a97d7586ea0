//! `kind: Monitor`: schedule, drift, data quality, SLOs and breach actions.

use super::Ctx;
use crate::model::*;
use crate::yaml::Span;
use crate::{env, units};

/// Checks one Monitor's ranges and cross-field rules and fills its defaults.
pub(super) fn check(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    name: &str,
    m: &mut MonitorSpec,
) {
    if let Some(s) = &m.schedule
        && let Err(msg) = units::parse_schedule(s)
    {
        ctx.err("bad-value", file, at(&["schedule"]), msg);
    }
    m.schedule.get_or_insert_with(|| "every 1h".into());
    m.min_samples.get_or_insert(100);
    if let Some(d) = &m.drift {
        check_threshold(
            ctx,
            file,
            at(&["drift", "threshold"]),
            "drift threshold",
            d.method,
            d.threshold,
        );
        if d.threshold.is_some() && d.method.is_none() {
            ctx.err(
                "missing-field",
                file,
                at(&["drift", "threshold"]),
                "drift.threshold is set without drift.method",
            )
            .hint = Some(format!(
                "name the method it is for (`method: ks`, a p-value, or `method: wasserstein`, a \
                 distance), or remove the threshold: without a method each feature's is chosen \
                 from the data and uses its own default threshold ({})",
                crate::drift::defaults_hint()
            ));
        }
        if let Some(share) = d.share
            && !(share > 0.0 && share <= 1.0)
        {
            ctx.err(
                "out-of-range",
                file,
                at(&["drift", "share"]),
                format!(
                    "drift share must be more than 0 and at most 1 (the share of checked \
                     features that must drift), got {share}"
                ),
            )
            .hint = Some("write a share such as 0.5 (the default, as Evidently's `drift_share`), or remove `share`".into());
        }
        for (feat, fd) in &d.features {
            let method = fd.method.or(d.method);
            check_threshold(
                ctx,
                file,
                at(&["drift", "features", feat, "threshold"]),
                &format!("drift threshold for `{feat}`"),
                method,
                fd.threshold,
            );
            if fd.threshold.is_some() && method.is_none() {
                ctx.err(
                    "missing-field",
                    file,
                    at(&["drift", "features", feat, "threshold"]),
                    format!("drift threshold for `{feat}` is set without a method"),
                )
                .hint = Some(format!(
                    "add `method:` next to it (or to `drift`), or remove the threshold to use \
                     the default method's own ({})",
                    crate::drift::defaults_hint()
                ));
            }
        }
    }
    if let Some(q) = &m.quality {
        for c in crate::quality::CHECKS {
            if let crate::quality::Configured::Max(Some(rate)) = (c.read)(q)
                && !(0.0..=1.0).contains(&rate)
            {
                ctx.err(
                    "out-of-range",
                    file,
                    at(&["quality", c.field]),
                    format!(
                        "quality.{} is a share of rows and must be between 0 and 1, got {rate}",
                        c.field
                    ),
                )
                .hint = Some(format!(
                    "write a share such as {} (the default); 1 turns the check off",
                    c.default_text()
                ));
            }
        }
    }
    if let Some(slo) = &m.slo {
        if let Some(er) = slo.max_error_rate
            && !(0.0..=1.0).contains(&er)
        {
            ctx.err(
                "out-of-range",
                file,
                at(&["slo", "maxErrorRate"]),
                format!("maxErrorRate must be between 0 and 1, got {er}"),
            )
            .hint = Some("a share of requests: 0.01 allows one in a hundred to fail".into());
        }
        for (field, value, unit) in [
            ("p50LatencyMs", slo.p50_latency_ms, "milliseconds"),
            ("p99LatencyMs", slo.p99_latency_ms, "milliseconds"),
            ("minThroughput", slo.min_throughput, "requests per second"),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                ctx.err(
                    "out-of-range",
                    file,
                    at(&["slo", field]),
                    format!("slo.{field} must be a number of {unit} above 0, got {v}"),
                )
                .hint = Some(format!("write {unit} above 0, or remove `{field}`"));
            }
        }
        if slo.p50_latency_ms.is_none()
            && slo.p99_latency_ms.is_none()
            && slo.max_error_rate.is_none()
            && slo.min_throughput.is_none()
        {
            ctx.err(
                "missing-field",
                file,
                at(&["slo"]),
                "slo sets no objective",
            )
            .hint = Some(
                "give at least one of p50LatencyMs, p99LatencyMs, maxErrorRate, minThroughput, or remove `slo`".into(),
            );
        }
    }
    if m.drift.is_none()
        && m.slo.is_none()
        && m.quality.is_none()
        && !ctx.mistyped(&["drift"])
        && !ctx.mistyped(&["slo"])
        && !ctx.mistyped(&["quality"])
    {
        ctx.err(
            "missing-field",
            file,
            at(&[]),
            format!("monitor `{}` checks nothing", name),
        )
        .hint = Some("add `drift`, `quality` and/or `slo`".into());
    }
    if let Some(ob) = &m.on_breach
        && let Some(n) = &ob.notify
        && !env::is_single_reference(&n.webhook)
    {
        let at = at(&["onBreach", "notify", "webhook"]);
        let url = ["https://", "http://"]
            .iter()
            .any(|p| n.webhook.to_ascii_lowercase().starts_with(p));
        if url {
            ctx.err(
                "literal-secret",
                file,
                at,
                "onBreach.notify.webhook must be an environment reference, not a literal URL",
            )
            .hint = Some("webhook URLs carry tokens: write `webhook: ${env:ALERT_WEBHOOK}`".into());
        } else {
            ctx.err(
                "bad-value",
                file,
                at,
                "onBreach.notify.webhook is neither a URL nor an environment reference",
            )
            .hint = Some(
                "write `webhook: ${env:ALERT_WEBHOOK}` and export ALERT_WEBHOOK=https://... (the URL mlctl POSTs the breach report to) where mlctl runs".into(),
            );
        }
    }
}

/// A threshold is at least 0, and a test's (a p-value) at most 1.
fn check_threshold(
    ctx: &mut Ctx,
    file: &str,
    at: Option<Span>,
    what: &str,
    method: Option<DriftMethod>,
    threshold: Option<f64>,
) {
    let Some(t) = threshold else { return };
    if t < 0.0 {
        ctx.err(
            "out-of-range",
            file,
            at,
            format!("{what} must be at least 0, got {t}"),
        );
    } else if let Some(m) = method
        && m.is_test()
        && t > 1.0
    {
        ctx.err(
            "out-of-range",
            file,
            at,
            format!(
                "{what} must be at most 1: `{}` compares a p-value with it, got {t}",
                m.name()
            ),
        )
        .hint = Some(format!(
            "a significance level such as {} (drift when the p-value is below it)",
            m.default_threshold()
        ));
    }
}
