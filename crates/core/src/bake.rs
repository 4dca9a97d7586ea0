//! Judging a canary's bake: the one set of rules every deployer that judges a canary itself
//! applies (the local target from its servers' metrics, the mock from its simulated traffic),
//! so the targets cannot disagree on when a canary is promoted.
//!
//! A canary is promoted only when its bake has lasted `bakeTime`, the new version has served
//! at least `minRequests` requests since the bake started, and it stayed inside the rollback
//! thresholds. Short of traffic when the bake ends, it waits, up to `maxBakeTime`, then rolls
//! back saying how many requests it had. A threshold crossed rolls it back at once.

use mlctl_spec::Strategy;
use mlctl_spec::units::parse_duration;
use std::time::Duration;

/// What a canary's bake must show before it is promoted, from the spec's strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct BakeRules {
    /// `bakeTime`: the shortest bake.
    pub bake: Duration,
    /// `maxBakeTime`: the longest bake while waiting for traffic (at least `bake`).
    pub max_bake: Duration,
    /// `minRequests`: requests the new version must serve during the bake.
    pub min_requests: u64,
    /// `rollback.maxErrorRate`: largest share of server errors (0..1).
    pub max_error_rate: Option<f64>,
    /// `rollback.maxP99LatencyMs`.
    pub max_p99_ms: Option<f64>,
}

impl BakeRules {
    /// The rules of a canary `strategy`; `default_bake` is the target's bake when the spec
    /// gives no `bakeTime`.
    ///
    /// # Errors
    /// A duration that does not parse (validation refuses it first), as a message.
    pub fn of(strategy: &Strategy, default_bake: Duration) -> Result<BakeRules, String> {
        let duration = |field: &str, v: Option<&str>| {
            v.map(parse_duration)
                .transpose()
                .map_err(|e| format!("{field}: {e}"))
        };
        let bake = duration("bakeTime", strategy.bake_time.as_deref())?.unwrap_or(default_bake);
        let max_bake = duration("maxBakeTime", strategy.max_bake_time.as_deref())?
            .unwrap_or(bake)
            .max(bake);
        let rollback = strategy.rollback.as_ref();
        Ok(BakeRules {
            bake,
            max_bake,
            min_requests: strategy
                .min_requests
                .map_or(Strategy::DEFAULT_MIN_REQUESTS, |n| n.max(0) as u64),
            max_error_rate: rollback.and_then(|r| r.max_error_rate),
            max_p99_ms: rollback.and_then(|r| r.max_p99_latency_ms),
        })
    }
}

/// What the new version did since its bake started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BakeSample {
    /// Requests it answered (any status).
    pub requests: u64,
    /// Of which server errors (5xx).
    pub server_errors: u64,
    /// Its p99 latency in milliseconds (an upper bound: a histogram bucket's), `None`
    /// without requests.
    pub p99_ms: Option<f64>,
}

impl BakeSample {
    /// Server errors over requests (0 without requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.server_errors as f64 / self.requests as f64
        }
    }
}

/// What to do with a canary now.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Verdict {
    /// Shift all traffic to the new version.
    Promote,
    /// Keep baking; the message says what it waits for.
    Wait(String),
    /// Put the old version back; the reason says why.
    RollBack(String),
}

/// Judges a canary of `version` (as users see it: `v3`) that has baked for `elapsed`.
pub fn judge(rules: &BakeRules, sample: &BakeSample, elapsed: Duration, version: &str) -> Verdict {
    let n = sample.requests;
    if let Some(max) = rules.max_error_rate
        && n > 0
        && sample.error_rate() > max
    {
        return Verdict::RollBack(format!(
            "error rate {:.1}% of {n} requests to {version} is above maxErrorRate {:.1}%",
            sample.error_rate() * 100.0,
            max * 100.0
        ));
    }
    if let (Some(max), Some(p99)) = (rules.max_p99_ms, sample.p99_ms)
        && p99 > max
    {
        return Verdict::RollBack(format!(
            "p99 latency of {version} is above maxP99LatencyMs {max} ms (bucket up to {p99} ms) over {n} requests"
        ));
    }
    let enough = n >= rules.min_requests;
    if elapsed >= rules.bake && enough {
        return Verdict::Promote;
    }
    if elapsed >= rules.max_bake {
        return Verdict::RollBack(format!(
            "{version} had {n} of the {} requests minRequests asks for after baking {} (maxBakeTime); send it traffic during the bake, lower `minRequests`, or raise `maxBakeTime`",
            rules.min_requests,
            show_duration(rules.max_bake)
        ));
    }
    let p99 = sample
        .p99_ms
        .map_or("-".to_string(), |p| format!("<= {p} ms"));
    let waiting = if elapsed >= rules.bake {
        format!(
            "; waiting for {} more requests, up to {}",
            rules.min_requests - n,
            show_duration(rules.max_bake)
        )
    } else {
        String::new()
    };
    Verdict::Wait(format!(
        "{n} of {} requests, {:.1}% errors, p99 {p99}; baked {} of {}{waiting}",
        rules.min_requests,
        sample.error_rate() * 100.0,
        show_duration(elapsed),
        show_duration(rules.bake)
    ))
}

/// `45s`, `2m 5s`, `1h 0m 0s`: whole seconds.
fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(min_requests: u64) -> BakeRules {
        BakeRules {
            bake: Duration::from_secs(60),
            max_bake: Duration::from_secs(300),
            min_requests,
            max_error_rate: Some(0.05),
            max_p99_ms: Some(100.0),
        }
    }

    fn healthy(requests: u64) -> BakeSample {
        BakeSample {
            requests,
            server_errors: 0,
            p99_ms: (requests > 0).then_some(10.0),
        }
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_canary_without_traffic_waits_then_rolls_back_saying_how_many_requests_it_had() {
        let r = rules(100);
        assert!(
            matches!(judge(&r, &healthy(0), 61 * SEC, "v2"), Verdict::Wait(m) if m.contains("waiting for 100 more requests"))
        );
        let Verdict::RollBack(why) = judge(&r, &healthy(7), 300 * SEC, "v2") else {
            panic!("a canary short of traffic at maxBakeTime must roll back")
        };
        assert!(why.contains("v2 had 7 of the 100 requests"), "{why}");
        assert!(why.contains("5m 0s (maxBakeTime)"), "{why}");
    }

    #[test]
    fn a_canary_with_enough_healthy_traffic_is_promoted_when_the_bake_ends_not_before() {
        let r = rules(100);
        assert!(matches!(
            judge(&r, &healthy(500), 59 * SEC, "v2"),
            Verdict::Wait(_)
        ));
        assert_eq!(judge(&r, &healthy(100), 60 * SEC, "v2"), Verdict::Promote);
        // Traffic that arrives late, within maxBakeTime, still promotes it.
        assert_eq!(judge(&r, &healthy(100), 200 * SEC, "v2"), Verdict::Promote);
    }

    #[test]
    fn min_requests_zero_promotes_without_traffic() {
        assert_eq!(
            judge(&rules(0), &healthy(0), 60 * SEC, "v2"),
            Verdict::Promote
        );
    }

    #[test]
    fn a_slow_canary_rolls_back_on_p99_at_once() {
        let slow = BakeSample {
            requests: 3,
            server_errors: 0,
            p99_ms: Some(250.0),
        };
        let Verdict::RollBack(why) = judge(&rules(100), &slow, SEC, "v2") else {
            panic!("a p99 above the threshold must roll back")
        };
        assert!(
            why.contains("p99 latency of v2 is above maxP99LatencyMs 100 ms"),
            "{why}"
        );
    }

    #[test]
    fn a_failing_canary_rolls_back_on_its_error_rate_at_once() {
        let failing = BakeSample {
            requests: 10,
            server_errors: 1,
            p99_ms: Some(1.0),
        };
        let Verdict::RollBack(why) = judge(&rules(100), &failing, SEC, "v2") else {
            panic!("an error rate above the threshold must roll back")
        };
        assert!(
            why.contains("error rate 10.0% of 10 requests to v2"),
            "{why}"
        );
    }

    #[test]
    fn rules_default_to_100_requests_and_a_max_bake_of_the_bake() {
        let s: Strategy = serde_json::from_value(serde_json::json!({
            "type": "canary", "percent": 10, "bakeTime": "30s"
        }))
        .unwrap();
        let r = BakeRules::of(&s, Duration::from_secs(60)).unwrap();
        assert_eq!(
            (r.bake, r.max_bake, r.min_requests),
            (30 * SEC, 30 * SEC, 100)
        );
        let s: Strategy = serde_json::from_value(serde_json::json!({
            "type": "canary", "percent": 10, "minRequests": 5, "maxBakeTime": "2m"
        }))
        .unwrap();
        let r = BakeRules::of(&s, Duration::from_secs(60)).unwrap();
        assert_eq!(
            (r.bake, r.max_bake, r.min_requests),
            (60 * SEC, 120 * SEC, 5)
        );
    }
}
