//! `kind: Endpoint`: version, strategy, capture, auth and compute.

use super::Ctx;
use crate::model::*;
use crate::yaml::Span;
use crate::{env, units};

/// Checks one Endpoint's ranges and cross-field rules and fills its defaults.
pub(super) fn check(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    e: &mut EndpointSpec,
) {
    if let Some(n) = e.instances
        && n < 1
    {
        ctx.err(
            "out-of-range",
            file,
            at(&["instances"]),
            format!("instances must be at least 1, got {n}"),
        );
    }
    e.instances.get_or_insert(1);
    if e.version == Some(0) {
        ctx.err(
            "out-of-range",
            file,
            at(&["version"]),
            "registry versions start at 1",
        );
    }
    if e.port == Some(0) {
        ctx.err(
            "out-of-range",
            file,
            at(&["port"]),
            "port 0 is not a port an endpoint can listen on",
        )
        .hint = Some("leave `port` out to let mlctl pick a free one".into());
    }
    if let Some(s) = &e.strategy {
        match s.ty {
            StrategyType::Canary => match s.percent {
                None if ctx.mistyped(&["strategy", "percent"]) => {}
                None => {
                    ctx.err("missing-field", file, at(&["strategy"]), "a canary strategy needs `percent`")
                        .hint = Some("e.g. `percent: 10` sends 10% of traffic to the new version during the bake".into());
                }
                Some(p) if !(1..=99).contains(&p) => {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&["strategy", "percent"]),
                        format!("canary percent must be between 1 and 99, got {p}"),
                    )
                    .hint = Some("a canary sends part of the traffic to the new version; to switch all of it at once, use `type: all-at-once`".into());
                }
                _ => {}
            },
            _ => {
                if s.percent.is_some() {
                    ctx.err(
                        "conflicting-fields",
                        file,
                        at(&["strategy", "percent"]),
                        format!(
                            "`percent` applies to the canary strategy only, not to `{}`",
                            s.ty.as_str()
                        ),
                    )
                    .hint = Some("remove `percent`, or use `type: canary`".into());
                }
            }
        }
        if let Some(b) = &s.bake_time {
            if let Err(msg) = units::parse_duration(b) {
                ctx.err("bad-value", file, at(&["strategy", "bakeTime"]), msg);
            }
        } else if s.ty == StrategyType::AllAtOnce
            && s.rollback.is_some()
            && !ctx.mistyped(&["strategy", "bakeTime"])
        {
            ctx.err(
                "conflicting-fields",
                file,
                at(&["strategy", "rollback"]),
                "automatic rollback needs a bake: use `canary` or `blue-green` with `bakeTime`",
            );
        }
        check_traffic_rules(ctx, file, at, s);
        if let Some(rb) = &s.rollback {
            if let Some(er) = rb.max_error_rate
                && !(0.0..=1.0).contains(&er)
            {
                ctx.err(
                    "out-of-range",
                    file,
                    at(&["strategy", "rollback", "maxErrorRate"]),
                    format!("maxErrorRate must be between 0 and 1, got {er}"),
                );
            }
            if let Some(l) = rb.max_p99_latency_ms
                && l <= 0.0
            {
                ctx.err(
                    "out-of-range",
                    file,
                    at(&["strategy", "rollback", "maxP99LatencyMs"]),
                    format!("maxP99LatencyMs must be greater than 0, got {l}"),
                );
            }
        }
    }
    if let Some(c) = &e.capture
        && !(0.0..=100.0).contains(&c.sampling_percent)
    {
        ctx.err(
            "out-of-range",
            file,
            at(&["capture", "samplingPercent"]),
            format!(
                "samplingPercent must be between 0 and 100, got {}",
                c.sampling_percent
            ),
        );
    }
    if let Some(a) = &e.auth
        && !env::is_single_reference(&a.token)
    {
        ctx.err(
            "literal-secret",
            file,
            at(&["auth", "token"]),
            "auth.token must be an environment reference, not a literal",
        )
        .hint = Some(
            "write `token: ${env:MY_ENDPOINT_TOKEN}` and export the variable where mlctl runs"
                .into(),
        );
    }
    if let Some(c) = &e.compute {
        super::training::check_compute(ctx, file, at, c);
    }
    if let Some(srv) = &e.server {
        check_server(ctx, file, at, srv);
    }
}

/// `server`: timeouts between 1 ms and an hour, a connection cap in range.
fn check_server(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    s: &ServerSettings,
) {
    let timeouts = [
        ("headerTimeout", &s.header_timeout),
        ("idleTimeout", &s.idle_timeout),
        ("bodyTimeout", &s.body_timeout),
    ];
    for (field, value) in timeouts {
        let Some(v) = value else { continue };
        match units::parse_duration(v) {
            Err(msg) => {
                ctx.err("bad-value", file, at(&["server", field]), msg);
            }
            Ok(d) if d.is_zero() || d > ServerSettings::MAX_TIMEOUT => {
                ctx.err(
                    "out-of-range",
                    file,
                    at(&["server", field]),
                    format!("{field} must be longer than 0s and at most 1h, got `{v}`"),
                )
                .hint = Some(format!(
                    "leave `{field}` out for the default, or give e.g. `30s`"
                ));
            }
            Ok(_) => {}
        }
    }
    if let Some(n) = s.max_connections
        && !(1..=ServerSettings::MAX_CONNECTIONS).contains(&n)
    {
        ctx.err(
            "out-of-range",
            file,
            at(&["server", "maxConnections"]),
            format!(
                "maxConnections must be between 1 and {}, got {n}",
                ServerSettings::MAX_CONNECTIONS
            ),
        );
    }
}

/// `minRequests` and `maxBakeTime`: a canary's traffic requirement and how long it may wait
/// for it.
fn check_traffic_rules(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    s: &Strategy,
) {
    if s.ty != StrategyType::Canary {
        for (field, set) in [
            ("minRequests", s.min_requests.is_some()),
            ("maxBakeTime", s.max_bake_time.is_some()),
        ] {
            if set {
                ctx.err(
                    "conflicting-fields",
                    file,
                    at(&["strategy", field]),
                    format!(
                        "`{field}` applies to the canary strategy only, not to `{}`",
                        s.ty.as_str()
                    ),
                )
                .hint = Some(format!("remove `{field}`, or use `type: canary`"));
            }
        }
        return;
    }
    if let Some(n) = s.min_requests
        && n < 0
    {
        ctx.err(
            "out-of-range",
            file,
            at(&["strategy", "minRequests"]),
            format!("minRequests must be 0 or more, got {n}"),
        )
        .hint = Some("0 promotes the canary at the end of the bake whatever traffic it had".into());
    }
    let Some(max) = &s.max_bake_time else {
        return;
    };
    let max_at = at(&["strategy", "maxBakeTime"]);
    let max = match units::parse_duration(max) {
        Ok(d) => d,
        Err(msg) => {
            ctx.err("bad-value", file, max_at, msg);
            return;
        }
    };
    if s.min_requests == Some(0) {
        ctx.err(
            "conflicting-fields",
            file,
            max_at,
            "maxBakeTime is how long a canary waits for `minRequests`; with `minRequests: 0` it never waits",
        )
        .hint = Some("remove `maxBakeTime`, or ask for traffic with `minRequests`".into());
        return;
    }
    match s.bake_time.as_deref().map(units::parse_duration) {
        None if ctx.mistyped(&["strategy", "bakeTime"]) => {}
        None => {
            ctx.err(
                "missing-field",
                file,
                max_at,
                "maxBakeTime extends the bake while the canary waits for traffic, and there is no `bakeTime`",
            )
            .hint = Some("give `bakeTime` too, e.g. `bakeTime: 10m` with `maxBakeTime: 1h`".into());
        }
        Some(Ok(bake)) if max < bake => {
            ctx.err(
                "out-of-range",
                file,
                max_at,
                format!(
                    "maxBakeTime ({}) is shorter than bakeTime ({})",
                    s.max_bake_time.as_deref().unwrap_or_default(),
                    s.bake_time.as_deref().unwrap_or_default()
                ),
            )
            .hint = Some(
                "a canary bakes at least `bakeTime`; make maxBakeTime at least as long".into(),
            );
        }
        _ => {}
    }
}
