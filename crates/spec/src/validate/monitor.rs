//! `kind: Monitor`: schedule, drift, SLOs and breach actions.

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
        if d.threshold < 0.0 {
            ctx.err(
                "out-of-range",
                file,
                at(&["drift", "threshold"]),
                format!("drift threshold must be at least 0, got {}", d.threshold),
            );
        }
        for (feat, fd) in &d.features {
            if let Some(t) = fd.threshold
                && t < 0.0
            {
                ctx.err(
                    "out-of-range",
                    file,
                    at(&["drift", "features", feat, "threshold"]),
                    format!("drift threshold for `{feat}` must be at least 0, got {t}"),
                );
            }
        }
    }
    if let Some(slo) = &m.slo
        && let Some(er) = slo.max_error_rate
        && !(0.0..=1.0).contains(&er)
    {
        ctx.err(
            "out-of-range",
            file,
            at(&["slo", "maxErrorRate"]),
            format!("maxErrorRate must be between 0 and 1, got {er}"),
        );
    }
    if m.drift.is_none() && m.slo.is_none() && !ctx.mistyped(&["drift"]) && !ctx.mistyped(&["slo"])
    {
        ctx.err(
            "missing-field",
            file,
            at(&[]),
            format!("monitor `{}` checks nothing", name),
        )
        .hint = Some("add `drift` and/or `slo`".into());
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
